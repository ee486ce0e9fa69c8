//! How long one attempt may take, and when a silent stream gets keep-alive comments.
//!
//! `model_timeout` and `keepalive_interval` follow uni-api's six steps: the provider's table
//! with the request alias (exact key, then the first key contained in the model), the
//! provider's `default`, the provider's table with the upstream name, then the global table
//! with the alias, with the upstream name, its `default`, and finally `TIMEOUT` (timeouts) or
//! nothing (keep-alive). `timeout_policy` (global `default`, provider `default`, the most
//! specific global rule, the most specific provider rule, each overriding the previous) then
//! refines it: the time to the first answer is `first_byte`, else `total`, else `idle`, else
//! the model timeout; the silence allowed between stream chunks is `idle`, else that value.

use std::time::Duration;

use serde_json::Value;

use crate::config::schema::PerModel;

/// The values one attempt runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From sending the request to the first meaningful answer (headers, then for a stream the
    /// first chunk with content).
    pub first_answer: Duration,
    /// Longest silence between two chunks of a stream.
    pub idle: Duration,
    /// Keep-alive comment interval for a stream (only when shorter than `first_answer`).
    pub keepalive: Option<Duration>,
}

/// The first entry of `table` for `model`: exact key (the model lower-cased, as uni-api), else
/// the first key contained in the model; `default` is not consulted here.
fn lookup(table: &PerModel<f64>, model: &str) -> Option<f64> {
    match table {
        PerModel::All(v) => Some(*v),
        PerModel::Map(entries) => {
            let lower = model.to_ascii_lowercase();
            entries
                .iter()
                .find(|(k, _)| k != "default" && (*k == lower || k == model))
                .or_else(|| {
                    entries.iter().find(|(k, _)| {
                        k != "default" && !k.is_empty() && lower.contains(k.as_str())
                    })
                })
                .map(|(_, v)| *v)
        }
    }
}

fn default_of(table: &PerModel<f64>) -> Option<f64> {
    match table {
        PerModel::All(v) => Some(*v),
        PerModel::Map(entries) => entries
            .iter()
            .find(|(k, _)| k == "default")
            .map(|(_, v)| *v),
    }
}

/// uni-api's six-step resolution (see the module doc); `None` when no table says anything.
pub fn resolve(
    provider: Option<&PerModel<f64>>,
    global: Option<&PerModel<f64>>,
    alias: &str,
    upstream: &str,
) -> Option<f64> {
    let usable = |v: f64| (v.is_finite() && v > 0.0).then_some(v);
    provider
        .and_then(|t| {
            lookup(t, alias)
                .or_else(|| default_of(t))
                .or_else(|| lookup(t, upstream))
        })
        .or_else(|| {
            global.and_then(|t| {
                lookup(t, alias)
                    .or_else(|| lookup(t, upstream))
                    .or_else(|| default_of(t))
            })
        })
        .and_then(usable)
}

/// The timeouts a `timeout_policy` sets (seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyFields {
    pub connect: Option<f64>,
    pub first_byte: Option<f64>,
    pub idle: Option<f64>,
    pub total: Option<f64>,
}

impl PolicyFields {
    fn from_json(v: &Value) -> Self {
        let f = |k: &str| {
            v.get(k)
                .and_then(Value::as_f64)
                .filter(|s| s.is_finite() && *s > 0.0)
        };
        PolicyFields {
            connect: f("connect"),
            first_byte: f("first_byte"),
            idle: f("idle"),
            total: f("total"),
        }
    }

    fn overlay(&mut self, top: &PolicyFields) {
        self.connect = top.connect.or(self.connect);
        self.first_byte = top.first_byte.or(self.first_byte);
        self.idle = top.idle.or(self.idle);
        self.total = top.total.or(self.total);
    }
}

/// One `timeout_policy` (global or a provider's), compiled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeoutPolicy {
    default: PolicyFields,
    rules: Vec<(Vec<(String, Value)>, PolicyFields)>,
}

/// What a rule's `match` may test.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFacts<'a> {
    pub endpoint: &'a str,
    pub stream: bool,
    pub engine: &'a str,
    pub provider: &'a str,
    pub request_model: &'a str,
    pub upstream_model: &'a str,
    pub role: Option<&'a str>,
}

impl TimeoutPolicy {
    pub fn from_json(v: &Value) -> Self {
        let default = v
            .get("default")
            .map(PolicyFields::from_json)
            .unwrap_or_default();
        let rules = v
            .get("rules")
            .and_then(Value::as_array)
            .map(|rules| {
                rules
                    .iter()
                    .filter_map(|r| {
                        let m = r.get("match")?.as_object()?;
                        let fields = PolicyFields::from_json(r.get("timeout")?);
                        let conds = m
                            .iter()
                            .filter(|(_, v)| !v.is_null())
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        Some((conds, fields))
                    })
                    .collect()
            })
            .unwrap_or_default();
        TimeoutPolicy { default, rules }
    }

    /// The matching rule with the most conditions (the first of equals).
    fn best_rule(&self, facts: &AttemptFacts<'_>) -> Option<&PolicyFields> {
        let mut best: Option<(usize, &PolicyFields)> = None;
        for (conds, fields) in &self.rules {
            if conds.iter().all(|(k, v)| condition(k, v, facts))
                && best.is_none_or(|(n, _)| conds.len() > n)
            {
                best = Some((conds.len(), fields));
            }
        }
        best.map(|(_, f)| f)
    }
}

fn condition(key: &str, want: &Value, facts: &AttemptFacts<'_>) -> bool {
    let any = |f: &dyn Fn(&Value) -> bool| match want {
        Value::Array(items) => items.iter().any(f),
        v => f(v),
    };
    let text = |actual: &str| any(&|v: &Value| v.as_str().is_some_and(|p| wildcard(p, actual)));
    match key {
        "endpoint" => text(facts.endpoint),
        "stream" => any(&|v: &Value| match v {
            Value::Bool(b) => *b == facts.stream,
            Value::String(s) => s.eq_ignore_ascii_case(if facts.stream { "true" } else { "false" }),
            _ => false,
        }),
        "method" => text("POST"),
        "engine" => text(facts.engine),
        "provider" => text(facts.provider),
        "request_model" => text(facts.request_model),
        "upstream_model" => text(facts.upstream_model),
        "model" => text(facts.request_model) || text(facts.upstream_model),
        "role" => facts.role.is_some_and(text),
        // Request types other than the default (uni-api: `compaction`) are never served here.
        "request_type" => text("default"),
        _ => false,
    }
}

/// `*` matches anything, `prefix*` a prefix; otherwise equality, ignoring case.
fn wildcard(pattern: &str, actual: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), actual.to_ascii_lowercase());
    match p.strip_suffix('*') {
        Some(prefix) => a.starts_with(prefix),
        None => p == a,
    }
}

/// Everything the resolution reads.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutInputs<'a> {
    pub provider_timeout: Option<&'a PerModel<f64>>,
    pub global_timeout: Option<&'a PerModel<f64>>,
    pub provider_keepalive: Option<&'a PerModel<f64>>,
    pub global_keepalive: Option<&'a PerModel<f64>>,
    pub provider_policy: Option<&'a TimeoutPolicy>,
    pub global_policy: Option<&'a TimeoutPolicy>,
    /// `TIMEOUT`.
    pub env_default: Duration,
}

pub fn for_attempt(inputs: &TimeoutInputs<'_>, facts: &AttemptFacts<'_>) -> Timeouts {
    let base = resolve(
        inputs.provider_timeout,
        inputs.global_timeout,
        facts.request_model,
        facts.upstream_model,
    )
    .map_or(inputs.env_default, Duration::from_secs_f64);
    let mut fields = PolicyFields::default();
    for layer in [
        inputs.global_policy.map(|p| &p.default),
        inputs.provider_policy.map(|p| &p.default),
        inputs.global_policy.and_then(|p| p.best_rule(facts)),
        inputs.provider_policy.and_then(|p| p.best_rule(facts)),
    ]
    .into_iter()
    .flatten()
    {
        fields.overlay(layer);
    }
    let first_answer = fields
        .first_byte
        .or(fields.total)
        .or(fields.idle)
        .map_or(base, Duration::from_secs_f64);
    let idle = fields.idle.map_or(first_answer, Duration::from_secs_f64);
    let keepalive = resolve(
        inputs.provider_keepalive,
        inputs.global_keepalive,
        facts.request_model,
        facts.upstream_model,
    )
    .map(Duration::from_secs_f64)
    .filter(|k| facts.stream && *k <= first_answer.max(idle));
    Timeouts {
        first_answer,
        idle,
        keepalive,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(entries: &[(&str, f64)]) -> PerModel<f64> {
        PerModel::Map(entries.iter().map(|(k, v)| (k.to_string(), *v)).collect())
    }

    #[test]
    fn six_steps_in_uni_api_order() {
        let provider = map(&[("gpt-4", 10.0), ("upstream-x", 20.0)]);
        let global = map(&[("claude", 30.0), ("default", 40.0), ("real", 50.0)]);
        // 1-2: provider table, alias, substring match.
        assert_eq!(
            resolve(Some(&provider), Some(&global), "gpt-4o", "u"),
            Some(10.0)
        );
        // 3: provider table, upstream name.
        assert_eq!(
            resolve(Some(&provider), Some(&global), "alias", "upstream-x-1"),
            Some(20.0)
        );
        // 4: global alias, then global upstream before the global default.
        assert_eq!(
            resolve(Some(&provider), Some(&global), "claude-3", "u"),
            Some(30.0)
        );
        assert_eq!(
            resolve(None, Some(&global), "alias", "real-model"),
            Some(50.0)
        );
        assert_eq!(resolve(None, Some(&global), "alias", "u"), Some(40.0));
        // Nothing: the caller uses TIMEOUT.
        assert_eq!(resolve(None, None, "a", "u"), None);
    }

    #[test]
    fn a_provider_default_beats_a_provider_key_matching_only_the_upstream_name() {
        let provider = map(&[("upstream", 5.0), ("default", 7.0)]);
        assert_eq!(
            resolve(Some(&provider), None, "alias", "upstream"),
            Some(7.0)
        );
    }

    #[test]
    fn exact_keys_match_the_lower_cased_model() {
        let t = map(&[("GPT-4O", 1.0), ("gpt-4o", 2.0)]);
        assert_eq!(resolve(Some(&t), None, "GPT-4O", "x"), Some(1.0));
        assert_eq!(resolve(Some(&t), None, "Gpt-4o", "x"), Some(2.0));
    }

    fn facts<'a>(stream: bool) -> AttemptFacts<'a> {
        AttemptFacts {
            endpoint: "/v1/chat/completions",
            stream,
            engine: "gpt",
            provider: "openai",
            request_model: "gpt-4o",
            upstream_model: "gpt-4o-2024",
            role: Some("team-a"),
        }
    }

    #[test]
    fn policy_rules_override_model_timeout_most_specific_first() {
        let global = TimeoutPolicy::from_json(&json!({
            "default": {"total": 60},
            "rules": [
                {"match": {"stream": true}, "timeout": {"first_byte": 9}},
                {"match": {"stream": true, "model": "gpt-*"}, "timeout": {"first_byte": 4, "idle": 30}},
                {"match": {"provider": "other"}, "timeout": {"first_byte": 1}}
            ]
        }));
        let t = map(&[("gpt-4o", 100.0)]);
        let inputs = TimeoutInputs {
            provider_timeout: Some(&t),
            global_timeout: None,
            provider_keepalive: None,
            global_keepalive: Some(&PerModel::All(2.0)),
            provider_policy: None,
            global_policy: Some(&global),
            env_default: Duration::from_secs(100),
        };
        let got = for_attempt(&inputs, &facts(true));
        assert_eq!(got.first_answer, Duration::from_secs(4));
        assert_eq!(got.idle, Duration::from_secs(30));
        assert_eq!(got.keepalive, Some(Duration::from_secs(2)));
        // Not a stream: only the default applies (total), and no keep-alive.
        let got = for_attempt(&inputs, &facts(false));
        assert_eq!(got.first_answer, Duration::from_secs(60));
        assert_eq!(got.keepalive, None);
    }

    #[test]
    fn keepalive_longer_than_the_timeout_is_ignored() {
        let inputs = TimeoutInputs {
            provider_timeout: Some(&PerModel::All(5.0)),
            global_timeout: None,
            provider_keepalive: Some(&PerModel::All(50.0)),
            global_keepalive: None,
            provider_policy: None,
            global_policy: None,
            env_default: Duration::from_secs(100),
        };
        let got = for_attempt(&inputs, &facts(true));
        assert_eq!(got.first_answer, Duration::from_secs(5));
        assert_eq!(got.keepalive, None);
        let inputs = TimeoutInputs {
            provider_timeout: None,
            ..inputs
        };
        assert_eq!(
            for_attempt(&inputs, &facts(true)).keepalive,
            Some(Duration::from_secs(50))
        );
    }
}
