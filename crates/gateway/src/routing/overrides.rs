//! `post_body_parameter_overrides`: a provider's edits to every upstream request body, applied
//! as uni-api does. First the keys that are not one of the provider's model names (objects are
//! deep-merged into objects, anything else replaces), then that level's `__remove__`, then the
//! entry named by the request's model alias (its values, then its `__remove__`).
//!
//! `__remove__` is a key, a list of keys, or structured removals
//! `{path: "a.b", where: {field: value}, where_any: [...], drop_empty: true}`: without a
//! condition the dotted path is deleted; with one, matching items of the list at `path` are
//! dropped (the field itself when `drop_empty` and nothing is left), or a non-list value when it
//! matches.

use serde_json::{Map, Value};

const REMOVE: &str = "__remove__";

/// Applies `overrides` to `body` (an object; anything else is left alone).
/// `is_model_name` tells the provider's model names (aliases and upstream names) apart from
/// body fields.
pub fn apply(
    body: &mut Value,
    overrides: &Map<String, Value>,
    is_model_name: &dyn Fn(&str) -> bool,
    alias: &str,
) {
    let Value::Object(payload) = body else {
        return;
    };
    for (key, value) in overrides {
        if key != REMOVE && !is_model_name(key) {
            merge_field(payload, key, value);
        }
    }
    remove(payload, overrides.get(REMOVE));
    if let Some(Value::Object(per_model)) = overrides.get(alias) {
        for (key, value) in per_model {
            if key != REMOVE {
                merge_field(payload, key, value);
            }
        }
        remove(payload, per_model.get(REMOVE));
    }
}

fn merge_field(target: &mut Map<String, Value>, key: &str, value: &Value) {
    match (target.get_mut(key), value) {
        (Some(Value::Object(current)), Value::Object(add)) => {
            for (k, v) in add {
                if k != REMOVE {
                    merge_field(current, k, v);
                }
            }
        }
        _ => {
            target.insert(key.to_string(), value.clone());
        }
    }
}

fn remove(payload: &mut Map<String, Value>, spec: Option<&Value>) {
    let items: Vec<&Value> = match spec {
        None => return,
        Some(Value::Array(list)) => list.iter().collect(),
        Some(v) => vec![v],
    };
    for item in items {
        match item {
            Value::String(key) => {
                let key = key.trim();
                if !key.is_empty() {
                    payload.remove(key);
                }
            }
            Value::Object(rule) => structured(payload, rule),
            _ => {}
        }
    }
}

fn parts(path: &str) -> Vec<&str> {
    path.split('.')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn get_path<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    parts(path)
        .into_iter()
        .try_fold(value, |cur, part| cur.as_object()?.get(part))
}

/// The object holding the last segment of `path`, and that segment.
fn parent_mut<'v>(
    payload: &'v mut Map<String, Value>,
    path: &'v str,
) -> Option<(&'v mut Map<String, Value>, &'v str)> {
    let ps = parts(path);
    let (last, init) = ps.split_last()?;
    let mut cur = payload;
    for p in init {
        cur = cur.get_mut(*p)?.as_object_mut()?;
    }
    Some((cur, last))
}

fn matches(value: &Value, condition: &Value) -> bool {
    match condition {
        Value::String(s) => value.as_str() == Some(s.as_str()),
        Value::Object(fields) => fields
            .iter()
            .all(|(k, want)| get_path(value, k) == Some(want)),
        _ => false,
    }
}

fn structured(payload: &mut Map<String, Value>, rule: &Map<String, Value>) {
    let Some(path) = rule.get("path").and_then(Value::as_str) else {
        return;
    };
    let where_ = rule.get("where");
    let where_any = rule.get("where_any");
    let drop_empty = rule.get("drop_empty").and_then(Value::as_bool) == Some(true);
    let Some((parent, last)) = parent_mut(payload, path) else {
        return;
    };
    if where_.is_none() && where_any.is_none() {
        parent.remove(last);
        return;
    }
    let hit = |v: &Value| {
        where_.is_some_and(|c| matches(v, c))
            || where_any.is_some_and(|c| match c {
                Value::Array(cs) => cs.iter().any(|c| matches(v, c)),
                c => matches(v, c),
            })
    };
    match parent.get_mut(last) {
        Some(Value::Array(list)) => {
            let before = list.len();
            list.retain(|item| !hit(item));
            if list.len() != before && list.is_empty() && drop_empty {
                parent.remove(last);
            }
        }
        Some(v) if hit(v) => {
            parent.remove(last);
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(body: Value, overrides: Value, alias: &str) -> Value {
        let mut body = body;
        let Value::Object(o) = overrides else {
            unreachable!()
        };
        apply(
            &mut body,
            &o,
            &|k| k == "gemini-2.5-flash" || k == "gpt-4o",
            alias,
        );
        body
    }

    #[test]
    fn global_values_deep_merge_objects_and_replace_the_rest() {
        let got = run(
            json!({"model": "m", "metadata": {"a": 1, "b": {"c": 2}}, "stop": ["x"], "n": 1}),
            json!({"metadata": {"b": {"d": 3}}, "stop": ["y"], "temperature": 0.2}),
            "m",
        );
        assert_eq!(
            got,
            json!({"model": "m", "metadata": {"a": 1, "b": {"c": 2, "d": 3}}, "stop": ["y"], "n": 1, "temperature": 0.2})
        );
    }

    #[test]
    fn model_entries_apply_after_global_ones_and_only_to_their_alias() {
        let overrides = json!({
            "temperature": 0.5,
            "gpt-4o": {"temperature": 0.9, "__remove__": "top_p"},
            "gemini-2.5-flash": {"tools": [{"google_search": {}}]}
        });
        let got = run(json!({"top_p": 1}), overrides.clone(), "gpt-4o");
        assert_eq!(got, json!({"temperature": 0.9}));
        let got = run(json!({"top_p": 1}), overrides, "other");
        assert_eq!(got, json!({"top_p": 1, "temperature": 0.5}));
    }

    #[test]
    fn remove_keys_and_structured_paths() {
        let got = run(
            json!({"response_format": {"type": "json"}, "a": {"b": {"c": 1, "d": 2}}, "keep": 1}),
            json!({"__remove__": ["response_format", {"path": "a.b.c"}]}),
            "m",
        );
        assert_eq!(got, json!({"a": {"b": {"d": 2}}, "keep": 1}));
    }

    #[test]
    fn where_filters_list_items_and_drop_empty_removes_the_field() {
        let body = json!({"tools": [
            {"type": "function", "function": {"name": "a"}},
            {"type": "web_search"},
            {"type": "function", "function": {"name": "b"}}
        ]});
        let got = run(
            body.clone(),
            json!({"__remove__": {"path": "tools", "where": {"type": "web_search"}}}),
            "m",
        );
        assert_eq!(got["tools"].as_array().unwrap().len(), 2);
        let got = run(
            body.clone(),
            json!({"__remove__": {"path": "tools", "where_any": [{"function.name": "a"}, {"function.name": "b"}, {"type": "web_search"}], "drop_empty": true}}),
            "m",
        );
        assert_eq!(got, json!({}));
        let got = run(
            body,
            json!({"__remove__": {"path": "tools", "where_any": [{"type": "function"}, {"type": "web_search"}]}}),
            "m",
        );
        assert_eq!(got, json!({"tools": []}));
    }

    #[test]
    fn missing_paths_and_odd_values_are_ignored() {
        let got = run(
            json!({"a": 1}),
            json!({"__remove__": [{"path": "x.y"}, 5, {"where": {}}, "  "]}),
            "m",
        );
        assert_eq!(got, json!({"a": 1}));
    }
}
