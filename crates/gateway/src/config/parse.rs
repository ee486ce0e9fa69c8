//! Positioned YAML tree → typed [`Config`], collecting every problem instead of stopping.
//!
//! Coercions follow uni-api (pydantic, lenient): names and keys may be numbers, numbers may be
//! quoted, `api`/`project_id` take one value or a list. Where uni-api would crash on load or
//! silently do something absurd, this is an error or a warning with the position.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use super::diag::{Sink, index_path, key_path, quote};
use super::schema::{
    ApiKeyConfig, ApiKeyPreferences, AutoRetry, ChannelSchedule, Config, GlobalPreferences,
    KeyOptions, KeySchedule, ModelEntry, ModelRule, PerModel, Pos, Price, ProviderConfig,
    ProviderPreferences, RateLimit, RateLimitSpec, RatePeriod,
};
use super::yaml::{Entry, Node, Value};

const TOP_KEYS: &[&str] = &["providers", "api_keys", "preferences", "video_providers"];

const PROVIDER_KEYS: &[&str] = &[
    "provider",
    "base_url",
    "api",
    "model",
    "engine",
    "tools",
    "image",
    "project_id",
    "private_key",
    "client_email",
    "token_uri",
    "region",
    "cf_account_id",
    "aws_access_key",
    "aws_secret_key",
    "notes",
    "exclude_endpoints",
    "only_request_types",
    "exclude_request_types",
    "exclude_request_rules",
    "preferences",
];

/// Written into api.yaml by uni-api itself when it saves discovered models.
const PROVIDER_INTERNAL_KEYS: &[&str] = &["_model_dict_cache"];

const PROVIDER_PREF_KEYS: &[&str] = &[
    "api_key_rate_limit",
    "api_key_schedule_algorithm",
    "api_key_cooldown_period",
    "api_key_rate_limit_cooldown_period",
    "api_key_quota_cooldown_period",
    "model_timeout",
    "keepalive_interval",
    "timeout_policy",
    "cooldown_period",
    "proxy",
    "headers",
    "passthrough_request_headers",
    "post_body_parameter_overrides",
    "max_request_body_bytes",
    "exclude_endpoints",
    "only_request_types",
    "exclude_request_types",
    "exclude_request_rules",
    "responses_stream_commit_policy",
    "search_defaults",
    "oaix_routing_attempt_id",
    // llmux extensions
    "key_max_inflight",
    "key_wait_timeout",
    "quota_scope",
];

const API_KEY_KEYS: &[&str] = &["api", "model", "role", "preferences"];

const API_KEY_PREF_KEYS: &[&str] = &[
    "SCHEDULING_ALGORITHM",
    "AUTO_RETRY",
    "rate_limit",
    "RATE_LIMIT",
    "ENABLE_MODERATION",
    "credits",
    "created_at",
];

const GLOBAL_PREF_KEYS: &[&str] = &[
    "model_timeout",
    "keepalive_interval",
    "timeout_policy",
    "cooldown_period",
    "rate_limit",
    "error_triggers",
    "proxy",
    "model_price",
    "hedging",
    "max_request_body_bytes",
];

/// Engines uni-api knows (`engine:` overrides detection); anything else fails at request time.
const ENGINES: &[&str] = &[
    "gpt",
    "codex",
    "gemini",
    "vertex",
    "vertex-gemini",
    "claude",
    "vertex-claude",
    "aws",
    "azure",
    "azure-databricks",
    "openrouter",
    "cloudflare",
    "cohere",
    "doubao-translation",
    "dalle",
    "tts",
    "whisper",
    "moderation",
    "embedding",
    "search",
    "content-generation",
];

const RATE_UNITS: &[(&str, u64)] = &[
    ("s", 1),
    ("sec", 1),
    ("second", 1),
    ("m", 60),
    ("min", 60),
    ("minute", 60),
    ("h", 3600),
    ("hr", 3600),
    ("hour", 3600),
    ("d", 86_400),
    ("day", 86_400),
    ("mo", 2_592_000),
    ("month", 2_592_000),
    ("y", 31_536_000),
    ("year", 31_536_000),
    // llmux extensions, named like the providers' own limits
    ("rpm", 60),
    ("rph", 3600),
    ("rpd", 86_400),
];

/// llmux extension: token budgets (`40000/tpm`).
const TOKEN_UNITS: &[(&str, u64)] = &[("tpm", 60), ("tph", 3600), ("tpd", 86_400)];

const REQUEST_RULE_FIELDS: &[&str] = &[
    "endpoint",
    "request_model",
    "upstream_model",
    "reasoning_effort",
    "request_type",
];

const VERTEX_BASE_URL: &str = "https://aiplatform.googleapis.com/";
const CLOUDFLARE_BASE_URL: &str = "https://api.cloudflare.com/";

pub(crate) fn config(root: &Node, sink: &mut Sink) -> Config {
    let mut cfg = Config::default();
    let entries: &[Entry] = match &root.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        other => {
            sink.error(
                root.pos,
                "",
                format!(
                    "the file must be a mapping with `providers`, `api_keys` and `preferences` \
                     at the top level, found {}",
                    describe(other)
                ),
            );
            return cfg;
        }
    };
    warn_unknown(sink, entries, "", TOP_KEYS, |key| {
        if GLOBAL_PREF_KEYS.contains(&key) {
            Some(format!("`{key}` belongs under `preferences`"))
        } else if PROVIDER_KEYS.contains(&key) {
            Some(format!(
                "`{key}` is a provider setting; put it in an item of `providers`"
            ))
        } else if API_KEY_PREF_KEYS.contains(&key) {
            Some(format!(
                "`{key}` is a client-key setting; put it under an `api_keys` item's `preferences`"
            ))
        } else {
            None
        }
    });

    let mut provider_index = Vec::new();
    if let Some(node) = value(entries, "providers") {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(p) = provider(item, &index_path("providers", i), sink) {
                        cfg.providers.push(p);
                        provider_index.push(i);
                    }
                }
            }
            other => sink.error(
                node.pos,
                "providers",
                format!(
                    "expected a list of providers (items starting with `- provider: name`), found {}",
                    describe(other)
                ),
            ),
        }
    }
    check_unique(
        sink,
        cfg.providers
            .iter()
            .zip(&provider_index)
            .map(|(p, i)| (p.provider.as_str(), p.pos, *i)),
        "providers",
        "provider name",
        true,
        "names must be unique because key pools and `provider/model` rules refer to them",
    );

    let mut key_index = Vec::new();
    if let Some(node) = value(entries, "api_keys") {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(k) = api_key(item, &index_path("api_keys", i), sink) {
                        cfg.api_keys.push(k);
                        key_index.push(i);
                    }
                }
            }
            other => sink.error(
                node.pos,
                "api_keys",
                format!(
                    "expected a list of client keys (items starting with `- api: sk-...`), found {}",
                    describe(other)
                ),
            ),
        }
    }
    check_unique(
        sink,
        cfg.api_keys
            .iter()
            .zip(&key_index)
            .map(|(k, i)| (k.api.as_str(), k.pos, *i)),
        "api_keys",
        "client key",
        false,
        "each key must appear once so its rules and limits are unambiguous",
    );

    if let Some(node) = value(entries, "preferences")
        && let Some(prefs) = map_of(node, "preferences", sink, "a mapping of global settings")
    {
        cfg.preferences = global_preferences(prefs, "preferences", sink);
    }

    if let Some(node) = value(entries, "video_providers") {
        match &node.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if !matches!(item.value, Value::Map(_)) {
                        sink.error(
                            item.pos,
                            &index_path("video_providers", i),
                            format!(
                                "expected a video provider mapping, found {}",
                                describe(&item.value)
                            ),
                        );
                    }
                }
                cfg.video_providers = Some(to_json(node));
            }
            other => sink.error(
                node.pos,
                "video_providers",
                format!(
                    "expected a list of video provider mappings, found {}",
                    describe(other)
                ),
            ),
        }
    }

    let first = Pos { line: 1, col: 1 };
    match (cfg.providers.is_empty(), cfg.api_keys.is_empty()) {
        (true, true) => sink.warn(
            first,
            "",
            "empty configuration: no providers and no api_keys; every request will be rejected",
        ),
        (_, true) => sink.warn(
            field(entries, "api_keys").map_or(first, |e| e.key_pos),
            "api_keys",
            "no api_keys: every request will be rejected",
        ),
        (true, false) => sink.warn(
            field(entries, "providers").map_or(first, |e| e.key_pos),
            "providers",
            "no providers: no model can be served (except through API-key channels)",
        ),
        (false, false) => {}
    }
    cfg
}

// ---------------------------------------------------------------------------------------------
// providers

fn provider(node: &Node, path: &str, sink: &mut Sink) -> Option<ProviderConfig> {
    let Value::Map(entries) = &node.value else {
        sink.error(
            node.pos,
            path,
            format!(
                "expected a provider mapping (`- provider: name` followed by `base_url`, `api`, ...), found {}",
                describe(&node.value)
            ),
        );
        return None;
    };
    let known: Vec<&str> = PROVIDER_KEYS
        .iter()
        .chain(PROVIDER_INTERNAL_KEYS)
        .copied()
        .collect();
    warn_unknown(sink, entries, path, &known, |key| {
        PROVIDER_PREF_KEYS
            .contains(&key)
            .then(|| format!("`{key}` belongs under this provider's `preferences`"))
    });

    let mut p = ProviderConfig {
        pos: node.pos,
        tools: true,
        image: true,
        ..ProviderConfig::default()
    };
    match value(entries, "provider") {
        None => sink.error(
            node.pos,
            path,
            "missing `provider`: every provider needs a name, e.g. `- provider: openai`",
        ),
        Some(n) => {
            if let Some(name) = string(n, &key_path(path, "provider"), sink, "a provider name") {
                if name.trim().is_empty() {
                    sink.error(
                        n.pos,
                        &key_path(path, "provider"),
                        "the provider name is empty",
                    );
                } else if name.contains('/') {
                    sink.warn(
                        n.pos,
                        &key_path(path, "provider"),
                        format!(
                            "the name {} contains `/`, so `provider/model` rules cannot address it",
                            quote(&name)
                        ),
                    );
                }
                p.provider = name;
            }
        }
    }
    let base_url = value(entries, "base_url")
        .and_then(|n| string(n, &key_path(path, "base_url"), sink, "a URL").map(|s| (s, n.pos)));
    if let Some(n) = value(entries, "api") {
        (p.api, p.key_options) = provider_keys(n, &key_path(path, "api"), sink);
    }
    if let Some(n) = value(entries, "model") {
        p.model = model_entries(n, &key_path(path, "model"), sink);
    }
    if let Some(n) = value(entries, "engine") {
        let kp = key_path(path, "engine");
        if let Some(engine) = string(n, &kp, sink, "an engine name") {
            if !ENGINES.contains(&engine.as_str()) {
                sink.warn(
                    n.pos,
                    &kp,
                    format!(
                        "unknown engine {}{}; known engines: {}",
                        quote(&engine),
                        did_you_mean(&engine, ENGINES),
                        ENGINES.join(", ")
                    ),
                );
            }
            p.engine = Some(engine);
        }
    }
    if let Some(n) = value(entries, "tools") {
        p.tools = boolean(n, &key_path(path, "tools"), sink).unwrap_or(true);
    }
    if let Some(n) = value(entries, "image") {
        p.image = boolean(n, &key_path(path, "image"), sink).unwrap_or(true);
    }
    if let Some(n) = value(entries, "project_id") {
        p.project_id = string_list(n, &key_path(path, "project_id"), sink, "a project id");
    }
    let text = |key: &str, sink: &mut Sink| {
        value(entries, key).and_then(|n| string(n, &key_path(path, key), sink, "a string"))
    };
    p.private_key = text("private_key", sink);
    p.client_email = text("client_email", sink);
    p.token_uri = text("token_uri", sink);
    p.cf_account_id = text("cf_account_id", sink);
    p.aws_access_key = text("aws_access_key", sink);
    p.aws_secret_key = text("aws_secret_key", sink);
    p.notes = text("notes", sink);
    if let Some(n) = value(entries, "region") {
        match &n.value {
            Value::Str(s) => p.region = Some(s.clone()),
            other => sink.error(
                n.pos,
                &key_path(path, "region"),
                format!(
                    "expected a region name like `us-central1` (uni-api requires a single string), found {}",
                    describe(other)
                ),
            ),
        }
    }
    request_filters(entries, path, sink, &mut p);

    if let Some(n) = value(entries, "preferences") {
        let pp = key_path(path, "preferences");
        if let Some(prefs) = map_of(n, &pp, sink, "a mapping of provider settings") {
            p.preferences = provider_preferences(prefs, &pp, sink);
            request_filters(prefs, &pp, sink, &mut p);
        }
    }

    resolve_base_url(&mut p, base_url, path, sink);

    if p.aws_access_key.is_some() != p.aws_secret_key.is_some() {
        sink.warn(
            node.pos,
            path,
            "AWS Bedrock needs both `aws_access_key` and `aws_secret_key`",
        );
    }
    let vertex_service_account = p.private_key.is_some() || p.client_email.is_some();
    if vertex_service_account && (p.private_key.is_none() || p.client_email.is_none()) {
        sink.warn(
            node.pos,
            path,
            "a Vertex service account needs both `private_key` and `client_email`",
        );
    }
    Some(p)
}

/// uni-api derives (and overwrites) base_url for Vertex and Cloudflare; everything else needs one.
fn resolve_base_url(
    p: &mut ProviderConfig,
    given: Option<(String, Pos)>,
    path: &str,
    sink: &mut Sink,
) {
    let kp = key_path(path, "base_url");
    let has_project = p.project_id.iter().any(|s| !s.is_empty());
    let has_cf = p.cf_account_id.as_deref().is_some_and(|s| !s.is_empty());
    let given_url = given.as_ref().map(|(s, _)| s.as_str()).unwrap_or("");
    let derived = if has_cf {
        Some((CLOUDFLARE_BASE_URL, "cf_account_id"))
    } else if has_project && !given_url.contains("google-vertex-ai") {
        Some((VERTEX_BASE_URL, "project_id"))
    } else {
        None
    };
    if let Some((url, because)) = derived {
        if let Some((text, pos)) = &given
            && text.trim_end_matches('/') != url.trim_end_matches('/')
        {
            sink.warn(
                *pos,
                &kp,
                format!(
                    "ignored: because `{because}` is set, the base URL is {url} (uni-api does the same)"
                ),
            );
        }
        p.base_url = Some(url.to_owned());
        return;
    }
    match given {
        None => sink.error(
            p.pos,
            path,
            "missing `base_url`: only providers with `project_id` (Vertex) or `cf_account_id` \
             (Cloudflare) can omit it",
        ),
        Some((text, pos)) => {
            let lower = text.to_ascii_lowercase();
            if text.trim().is_empty() {
                sink.error(pos, &kp, "the base URL is empty");
            } else if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                sink.error(
                    pos,
                    &kp,
                    format!(
                        "expected an http:// or https:// URL, found {}",
                        quote(&text)
                    ),
                );
            } else {
                p.base_url = Some(text);
            }
        }
    }
}

/// `api: key`, `api: 123` or a list of them; empty entries are dropped. A list item may also be
/// a mapping `{key, scope, max_inflight}` (llmux extension).
fn provider_keys(node: &Node, path: &str, sink: &mut Sink) -> (Vec<String>, Vec<KeyOptions>) {
    let mut keys = Vec::new();
    let mut options = Vec::new();
    match &node.value {
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let ip = index_path(path, i);
                match &item.value {
                    Value::Map(entries) => {
                        warn_unknown(
                            sink,
                            entries,
                            &ip,
                            &["key", "scope", "max_inflight"],
                            |_| None,
                        );
                        let key = value(entries, "key")
                            .and_then(|n| string(n, &key_path(&ip, "key"), sink, "a key string"));
                        let Some(key) = key.filter(|k| !k.is_empty()) else {
                            sink.error(
                                item.pos,
                                &ip,
                                "a key written as a mapping needs `key: <the key>`",
                            );
                            continue;
                        };
                        let scope = value(entries, "scope")
                            .and_then(|n| string(n, &key_path(&ip, "scope"), sink, "a scope name"));
                        let max_inflight = value(entries, "max_inflight").and_then(|n| {
                            let p = key_path(&ip, "max_inflight");
                            let v = number(n, &p, sink, "a whole number of requests")?;
                            if v >= 1.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) {
                                Some(v as u32)
                            } else {
                                sink.error(n.pos, &p, format!("expected a whole number of requests of at least 1, found {v}"));
                                None
                            }
                        });
                        keys.push(key);
                        options.push(KeyOptions {
                            scope,
                            max_inflight,
                        });
                    }
                    Value::Seq(_) => sink.error(
                        item.pos,
                        &ip,
                        format!("expected a key string, found {}", describe(&item.value)),
                    ),
                    _ => match scalar_text(&item.value) {
                        Some(k) if !k.is_empty() => {
                            keys.push(k);
                            options.push(KeyOptions::default());
                        }
                        _ => sink.warn(item.pos, &ip, "empty key ignored"),
                    },
                }
            }
        }
        Value::Map(_) => sink.error(
            node.pos,
            path,
            "expected a list of keys or a single key string, found a mapping",
        ),
        other => {
            if let Some(k) = scalar_text(other).filter(|k| !k.is_empty()) {
                keys.push(k);
                options.push(KeyOptions::default());
            }
        }
    }
    (keys, options)
}

/// `None` when absent or empty: uni-api then discovers the models from the upstream.
fn model_entries(node: &Node, path: &str, sink: &mut Sink) -> Option<Vec<ModelEntry>> {
    let items: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Str(_) | Value::Int(..) | Value::Float(..) | Value::Bool(..) => {
            sink.warn(
                node.pos,
                path,
                "a single model name; uni-api expects a list here, write it as `- name`",
            );
            vec![node]
        }
        other => {
            sink.error(
                node.pos,
                path,
                format!(
                    "expected a list of model names (`- gpt-4o` or `- upstream-name: alias`), found {}",
                    describe(other)
                ),
            );
            return None;
        }
    };
    let is_list = matches!(node.value, Value::Seq(_));
    let mut out: Vec<ModelEntry> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ip = if is_list {
            index_path(path, i)
        } else {
            path.to_owned()
        };
        match &item.value {
            Value::Map(pairs) => {
                // uni-api's get_model_dict takes every pair of such a mapping.
                for e in pairs {
                    let ep = key_path(&ip, &e.key);
                    if e.key.is_empty() {
                        sink.error(e.key_pos, &ip, "empty upstream model name");
                        continue;
                    }
                    let alias = match &e.value.value {
                        Value::Null => {
                            sink.error(
                                e.value.pos,
                                &ep,
                                format!(
                                    "no alias after `{}:`; write `- {}` to use the name as is, or `- {}: alias`",
                                    e.key, e.key, e.key
                                ),
                            );
                            continue;
                        }
                        Value::Seq(_) | Value::Map(_) => {
                            sink.error(
                                e.value.pos,
                                &ep,
                                format!(
                                    "expected the alias clients use (a string), found {}",
                                    describe(&e.value.value)
                                ),
                            );
                            continue;
                        }
                        v => scalar_text(v).unwrap_or_default(),
                    };
                    if alias.is_empty() {
                        sink.error(e.value.pos, &ep, "the alias is empty");
                        continue;
                    }
                    out.push(ModelEntry {
                        upstream: e.key.clone(),
                        alias,
                        pos: e.key_pos,
                    });
                }
            }
            Value::Seq(_) => sink.error(
                item.pos,
                &ip,
                "expected a model name or `upstream-name: alias`, found a list",
            ),
            Value::Null => sink.error(item.pos, &ip, "empty model entry"),
            v => match scalar_text(v) {
                Some(name) if !name.is_empty() => out.push(ModelEntry {
                    upstream: name.clone(),
                    alias: name,
                    pos: item.pos,
                }),
                _ => sink.error(item.pos, &ip, "empty model name"),
            },
        }
    }
    let mut seen: HashMap<&str, (&str, Pos)> = HashMap::new();
    for m in &out {
        if let Some((upstream, first)) = seen.get(m.alias.as_str()) {
            if *upstream != m.upstream {
                sink.warn(
                    m.pos,
                    path,
                    format!(
                        "alias {} already maps to {} (line {}:{}); the later entry wins, as in uni-api",
                        quote(&m.alias),
                        quote(upstream),
                        first.line,
                        first.col
                    ),
                );
            }
        } else {
            seen.insert(&m.alias, (&m.upstream, m.pos));
        }
    }
    if out.is_empty() && is_list {
        None
    } else {
        Some(out)
    }
}

/// `exclude_endpoints` & co. are accepted both on the provider and in its preferences (merged).
fn request_filters(entries: &[Entry], path: &str, sink: &mut Sink, p: &mut ProviderConfig) {
    if let Some(n) = value(entries, "exclude_endpoints") {
        for e in string_list(
            n,
            &key_path(path, "exclude_endpoints"),
            sink,
            "an endpoint path",
        ) {
            let e = normalize_endpoint(&e);
            if !e.is_empty() && !p.exclude_endpoints.contains(&e) {
                p.exclude_endpoints.push(e);
            }
        }
    }
    for (key, list) in [
        ("only_request_types", &mut p.only_request_types),
        ("exclude_request_types", &mut p.exclude_request_types),
    ] {
        if let Some(n) = value(entries, key) {
            for t in string_list(n, &key_path(path, key), sink, "a request type") {
                let t = t.trim().to_lowercase();
                if !t.is_empty() && !list.contains(&t) {
                    list.push(t);
                }
            }
        }
    }
    if let Some(n) = value(entries, "exclude_request_rules") {
        let kp = key_path(path, "exclude_request_rules");
        match &n.value {
            Value::Map(_) => {
                if let Some(rule) = request_rule(n, &kp, sink) {
                    p.exclude_request_rules.push(rule);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(rule) = request_rule(item, &index_path(&kp, i), sink) {
                        p.exclude_request_rules.push(rule);
                    }
                }
            }
            other => sink.error(
                n.pos,
                &kp,
                format!(
                    "expected a list of `{{match: {{...}}, reason: ...}}` rules, found {}",
                    describe(other)
                ),
            ),
        }
    }
}

/// uni-api silently disables rules it cannot match; we drop them with a warning saying why.
fn request_rule(node: &Node, path: &str, sink: &mut Sink) -> Option<Json> {
    let Value::Map(entries) = &node.value else {
        sink.warn(
            node.pos,
            path,
            format!(
                "ignored: a rule must be a mapping `{{match: {{...}}, reason: ...}}`, found {}",
                describe(&node.value)
            ),
        );
        return None;
    };
    warn_unknown(sink, entries, path, &["match", "reason"], |_| None);
    let Some(m) = field(entries, "match") else {
        sink.warn(node.pos, path, "ignored: the rule has no `match`");
        return None;
    };
    let mp = key_path(path, "match");
    match &m.value.value {
        Value::Map(fields) if !fields.is_empty() => {
            if let Some(bad) = fields
                .iter()
                .find(|f| !REQUEST_RULE_FIELDS.contains(&f.key.as_str()))
            {
                sink.warn(
                    bad.key_pos,
                    &key_path(&mp, &bad.key),
                    format!(
                        "the whole rule is ignored: unknown match field `{}`{} (known: {})",
                        bad.key,
                        did_you_mean(&bad.key, REQUEST_RULE_FIELDS),
                        REQUEST_RULE_FIELDS.join(", ")
                    ),
                );
                return None;
            }
        }
        other => {
            sink.warn(
                m.value.pos,
                &mp,
                format!(
                    "the whole rule is ignored: `match` must be a non-empty mapping, found {}",
                    describe(other)
                ),
            );
            return None;
        }
    }
    Some(to_json(node))
}

fn normalize_endpoint(s: &str) -> String {
    let s = s.trim().trim_end_matches('/');
    if s.is_empty() {
        String::new()
    } else if s.starts_with('/') {
        s.to_owned()
    } else {
        format!("/{s}")
    }
}

fn provider_preferences(entries: &[Entry], path: &str, sink: &mut Sink) -> ProviderPreferences {
    warn_unknown(sink, entries, path, PROVIDER_PREF_KEYS, |key| {
        if PROVIDER_KEYS.contains(&key) {
            Some(format!(
                "`{key}` belongs at the provider level, next to `preferences`"
            ))
        } else if API_KEY_PREF_KEYS.contains(&key) || key == "rate_limit" {
            Some(format!(
                "`{key}` is a client-key setting; for this provider's keys use `api_key_rate_limit`"
            ))
        } else {
            None
        }
    });
    let mut pp = ProviderPreferences::default();
    let kp = |key: &str| key_path(path, key);
    if let Some(n) = value(entries, "api_key_rate_limit") {
        pp.api_key_rate_limit = rate_limit_spec(n, &kp("api_key_rate_limit"), sink, true);
    }
    if let Some(n) = value(entries, "api_key_schedule_algorithm") {
        pp.api_key_schedule_algorithm =
            Some(key_schedule(n, &kp("api_key_schedule_algorithm"), sink));
    }
    for (key, slot) in [
        ("api_key_cooldown_period", &mut pp.api_key_cooldown_period),
        (
            "api_key_rate_limit_cooldown_period",
            &mut pp.api_key_rate_limit_cooldown_period,
        ),
        (
            "api_key_quota_cooldown_period",
            &mut pp.api_key_quota_cooldown_period,
        ),
        ("cooldown_period", &mut pp.cooldown_period),
    ] {
        if let Some(n) = value(entries, key) {
            *slot = seconds(n, &kp(key), sink, false);
        }
    }
    if let Some(n) = value(entries, "model_timeout") {
        pp.model_timeout = per_model_seconds(n, &kp("model_timeout"), sink);
    }
    if let Some(n) = value(entries, "keepalive_interval") {
        pp.keepalive_interval = per_model_seconds(n, &kp("keepalive_interval"), sink);
    }
    if let Some(n) = value(entries, "timeout_policy") {
        pp.timeout_policy = timeout_policy(n, &kp("timeout_policy"), sink);
    }
    if let Some(n) = value(entries, "proxy") {
        pp.proxy = proxy(n, &kp("proxy"), sink);
    }
    if let Some(n) = value(entries, "headers") {
        pp.headers = headers(n, &kp("headers"), sink);
    }
    if let Some(n) = value(entries, "passthrough_request_headers") {
        let hp = kp("passthrough_request_headers");
        pp.passthrough_request_headers = string_list(n, &hp, sink, "a header name");
        for name in &pp.passthrough_request_headers {
            if !is_header_name(name) {
                sink.error(
                    n.pos,
                    &hp,
                    format!("{} is not a valid HTTP header name", quote(name)),
                );
            }
        }
    }
    if let Some(n) = value(entries, "post_body_parameter_overrides")
        && let Some(Json::Object(map)) = json_mapping(n, &kp("post_body_parameter_overrides"), sink)
    {
        pp.post_body_parameter_overrides = Some(map);
    }
    if let Some(n) = value(entries, "max_request_body_bytes") {
        pp.max_request_body_bytes = body_size(n, &kp("max_request_body_bytes"), sink);
    }
    if let Some(n) = value(entries, "responses_stream_commit_policy") {
        pp.responses_stream_commit_policy = string(
            n,
            &kp("responses_stream_commit_policy"),
            sink,
            "a policy name like `real_output`",
        );
    }
    if let Some(n) = value(entries, "search_defaults") {
        pp.search_defaults = json_mapping(n, &kp("search_defaults"), sink);
    }
    if let Some(n) = value(entries, "oaix_routing_attempt_id") {
        pp.oaix_routing_attempt_id = boolean(n, &kp("oaix_routing_attempt_id"), sink);
    }
    if let Some(n) = value(entries, "key_max_inflight") {
        let p = kp("key_max_inflight");
        if let Some(v) = number(n, &p, sink, "a whole number of requests") {
            if v >= 1.0 && v.fract() == 0.0 && v <= f64::from(u32::MAX) {
                pp.key_max_inflight = Some(v as u32);
            } else {
                sink.error(
                    n.pos,
                    &p,
                    format!("expected a whole number of requests of at least 1, found {v}"),
                );
            }
        }
    }
    if let Some(n) = value(entries, "key_wait_timeout") {
        pp.key_wait_timeout = seconds(n, &kp("key_wait_timeout"), sink, false);
    }
    if let Some(n) = value(entries, "quota_scope") {
        let p = kp("quota_scope");
        match string(n, &p, sink, "`shared` or `per_key`").as_deref() {
            Some("shared") => pp.quota_scope = Some("shared".into()),
            Some("per_key") | None => {}
            Some(other) => sink.error(
                n.pos,
                &p,
                format!("expected `shared` or `per_key`, found {}", quote(other)),
            ),
        }
    }
    pp
}

fn key_schedule(node: &Node, path: &str, sink: &mut Sink) -> KeySchedule {
    const NAMES: &[&str] = &[
        "round_robin",
        "random",
        "fixed_priority",
        "smart_round_robin",
    ];
    let Some(name) = string(node, path, sink, "a scheduling algorithm name") else {
        return KeySchedule::RoundRobin;
    };
    match name.as_str() {
        "round_robin" => KeySchedule::RoundRobin,
        "random" => KeySchedule::Random,
        "fixed_priority" => KeySchedule::FixedPriority,
        "smart_round_robin" => KeySchedule::SmartRoundRobin,
        _ => {
            sink.warn(
                node.pos,
                path,
                format!(
                    "unknown algorithm {}{}; using round_robin like uni-api (known: {})",
                    quote(&name),
                    did_you_mean(&name, NAMES),
                    NAMES.join(", ")
                ),
            );
            KeySchedule::RoundRobin
        }
    }
}

// ---------------------------------------------------------------------------------------------
// api_keys

fn api_key(node: &Node, path: &str, sink: &mut Sink) -> Option<ApiKeyConfig> {
    let Value::Map(entries) = &node.value else {
        sink.error(
            node.pos,
            path,
            format!(
                "expected a client key mapping (`- api: sk-...`), found {}",
                describe(&node.value)
            ),
        );
        return None;
    };
    warn_unknown(sink, entries, path, API_KEY_KEYS, |key| {
        if key == "weights" {
            Some(
                "`weights` is computed by uni-api from `model`; write weights as `- provider/*: 5` entries"
                    .to_owned(),
            )
        } else if API_KEY_PREF_KEYS.contains(&key) {
            Some(format!("`{key}` belongs under this key's `preferences`"))
        } else {
            None
        }
    });
    let mut k = ApiKeyConfig {
        pos: node.pos,
        ..ApiKeyConfig::default()
    };
    match value(entries, "api") {
        None => sink.error(
            node.pos,
            path,
            "missing `api`: every client key entry needs the key itself, e.g. `- api: sk-...`",
        ),
        Some(n) => {
            let kp = key_path(path, "api");
            if let Some(api) = string(n, &kp, sink, "the client key string") {
                if api.is_empty() {
                    sink.error(n.pos, &kp, "the client key is empty");
                }
                k.api = api;
            }
        }
    }
    k.model = model_rules(
        field(entries, "model"),
        node.pos,
        &key_path(path, "model"),
        sink,
    );
    if let Some(n) = value(entries, "role") {
        k.role = string(n, &key_path(path, "role"), sink, "a role label");
    }
    if let Some(n) = value(entries, "preferences") {
        let pp = key_path(path, "preferences");
        if let Some(prefs) = map_of(n, &pp, sink, "a mapping of client-key settings") {
            k.preferences = api_key_preferences(prefs, &pp, sink);
        }
    }
    Some(k)
}

fn model_rules(entry: Option<&Entry>, key_pos: Pos, path: &str, sink: &mut Sink) -> Vec<ModelRule> {
    let all = |pos| {
        vec![ModelRule {
            rule: "all".to_owned(),
            weight: None,
            pos,
        }]
    };
    let Some(entry) = entry else {
        return all(key_pos);
    };
    let node = &entry.value;
    let items: Vec<&Node> = match &node.value {
        Value::Null => {
            sink.warn(
                entry.key_pos,
                path,
                "no rules listed: this key may use every model (as with `all`)",
            );
            return all(entry.key_pos);
        }
        Value::Seq(items) if items.is_empty() => {
            sink.warn(
                node.pos,
                path,
                "an empty list allows every model (uni-api treats it like `all`)",
            );
            return all(entry.key_pos);
        }
        Value::Seq(items) => items.iter().collect(),
        Value::Map(_) => {
            sink.error(
                node.pos,
                path,
                "expected a list of rules (`- gpt-4o`, `- provider/*`, `- provider/*: 5`), found a mapping",
            );
            return Vec::new();
        }
        _ => {
            sink.warn(
                node.pos,
                path,
                "a single rule; uni-api expects a list here, write it as `- rule`",
            );
            vec![node]
        }
    };
    let is_list = matches!(node.value, Value::Seq(_));
    let mut rules = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let ip = if is_list {
            index_path(path, i)
        } else {
            path.to_owned()
        };
        match &item.value {
            Value::Map(pairs) => {
                let Some(first) = pairs.first() else {
                    sink.error(item.pos, &ip, "empty rule");
                    continue;
                };
                if let Some(extra) = pairs.get(1) {
                    sink.warn(
                        extra.key_pos,
                        &ip,
                        "only the first `rule: weight` pair of an item is used (as in uni-api); \
                         start each rule with its own `- `",
                    );
                }
                let wp = key_path(&ip, &first.key);
                let weight = parse_weight(&first.value, &wp, sink);
                if !first.key.contains('/') {
                    sink.error(
                        first.key_pos,
                        &wp,
                        format!(
                            "a weight needs a `provider/model` or `provider/*` rule, found {} \
                             (uni-api fails to load this)",
                            quote(&first.key)
                        ),
                    );
                    continue;
                }
                if let Some(weight) = weight {
                    rules.push(ModelRule {
                        rule: first.key.clone(),
                        weight: Some(weight),
                        pos: first.key_pos,
                    });
                }
            }
            Value::Seq(_) => sink.error(
                item.pos,
                &ip,
                "expected a rule string or `provider/*: weight`, found a list",
            ),
            Value::Null => sink.error(item.pos, &ip, "empty rule"),
            v => match scalar_text(v) {
                Some(rule) if !rule.is_empty() => rules.push(ModelRule {
                    rule,
                    weight: None,
                    pos: item.pos,
                }),
                _ => sink.error(item.pos, &ip, "empty rule"),
            },
        }
    }
    rules
}

fn parse_weight(node: &Node, path: &str, sink: &mut Sink) -> Option<u32> {
    let parsed = match &node.value {
        Value::Int(i, _) => Some(*i),
        Value::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match parsed {
        Some(w) if w >= 1 => match u32::try_from(w) {
            Ok(w) => Some(w),
            Err(_) => {
                sink.error(node.pos, path, format!("weight {w} is too large"));
                None
            }
        },
        Some(w) => {
            sink.error(
                node.pos,
                path,
                format!("a weight must be a positive whole number, found {w}"),
            );
            None
        }
        None => {
            sink.error(
                node.pos,
                path,
                format!(
                    "a weight must be a positive whole number like 5, found {}",
                    describe(&node.value)
                ),
            );
            None
        }
    }
}

fn api_key_preferences(entries: &[Entry], path: &str, sink: &mut Sink) -> ApiKeyPreferences {
    warn_unknown(sink, entries, path, API_KEY_PREF_KEYS, |key| {
        PROVIDER_PREF_KEYS.contains(&key).then(|| {
            format!("`{key}` is a provider setting; put it under a provider's `preferences`")
        })
    });
    let kp = |key: &str| key_path(path, key);
    let mut pp = ApiKeyPreferences::default();
    if let Some(n) = value(entries, "SCHEDULING_ALGORITHM") {
        pp.scheduling_algorithm = Some(channel_schedule(n, &kp("SCHEDULING_ALGORITHM"), sink));
    }
    if let Some(n) = value(entries, "AUTO_RETRY")
        && let Some(r) = auto_retry(n, &kp("AUTO_RETRY"), sink)
    {
        pp.auto_retry = r;
    }
    let lower = value(entries, "rate_limit");
    let upper = value(entries, "RATE_LIMIT");
    if let (Some(_), Some(u)) = (lower, upper) {
        sink.warn(
            u.pos,
            &kp("RATE_LIMIT"),
            "ignored because `rate_limit` is also set (uni-api only reads `rate_limit`)",
        );
    }
    if let Some(n) = lower {
        pp.rate_limit = rate_limit_spec(n, &kp("rate_limit"), sink, false);
    } else if let Some(n) = upper {
        pp.rate_limit = rate_limit_spec(n, &kp("RATE_LIMIT"), sink, false);
    }
    if let Some(n) = value(entries, "ENABLE_MODERATION") {
        pp.enable_moderation = boolean(n, &kp("ENABLE_MODERATION"), sink).unwrap_or(false);
    }
    if let Some(n) = value(entries, "credits") {
        let cp = kp("credits");
        if let Some(c) = number(n, &cp, sink, "an amount of dollars like 10") {
            if c == -1.0 {
                // uni-api's sentinel for "unlimited"
                pp.credits = None;
            } else {
                if c < 0.0 {
                    sink.warn(
                        n.pos,
                        &cp,
                        "negative credits: this key is rejected on every request (omit `credits` or use -1 for unlimited)",
                    );
                }
                pp.credits = Some(c);
            }
        }
    }
    if let Some(n) = value(entries, "created_at") {
        let cp = kp("created_at");
        match &n.value {
            Value::Str(s) => match check_timestamp(s.trim()) {
                Ok(()) => pp.created_at = Some(s.trim().to_owned()),
                Err(why) => sink.error(
                    n.pos,
                    &cp,
                    format!(
                        "expected a date-time like 2024-01-01T00:00:00+08:00, found {} ({why})",
                        quote(s)
                    ),
                ),
            },
            other => sink.error(
                n.pos,
                &cp,
                format!(
                    "expected a date-time like 2024-01-01T00:00:00+08:00, found {}",
                    describe(other)
                ),
            ),
        }
    }
    pp
}

fn channel_schedule(node: &Node, path: &str, sink: &mut Sink) -> ChannelSchedule {
    const NAMES: &[&str] = &[
        "fixed_priority",
        "round_robin",
        "weighted_round_robin",
        "lottery",
        "random",
        "smart_round_robin",
    ];
    let Some(name) = string(node, path, sink, "a scheduling algorithm name") else {
        return ChannelSchedule::FixedPriority;
    };
    match name.as_str() {
        "fixed_priority" => ChannelSchedule::FixedPriority,
        "round_robin" => ChannelSchedule::RoundRobin,
        "weighted_round_robin" => ChannelSchedule::WeightedRoundRobin,
        "lottery" => ChannelSchedule::Lottery,
        "random" => ChannelSchedule::Random,
        "smart_round_robin" => ChannelSchedule::SmartRoundRobin,
        _ => {
            sink.warn(
                node.pos,
                path,
                format!(
                    "unknown algorithm {}{}; it behaves like round_robin, as in uni-api (known: {})",
                    quote(&name),
                    did_you_mean(&name, NAMES),
                    NAMES.join(", ")
                ),
            );
            ChannelSchedule::RoundRobin
        }
    }
}

/// uni-api only looks at truthiness, so `0` means off; a positive count is kept for later use.
fn auto_retry(node: &Node, path: &str, sink: &mut Sink) -> Option<AutoRetry> {
    let count = match &node.value {
        Value::Int(i, _) => Some(*i),
        Value::Str(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    match count {
        Some(0) => Some(AutoRetry::Enabled(false)),
        Some(n) if n > 0 => match u32::try_from(n) {
            Ok(n) => Some(AutoRetry::Attempts(n)),
            Err(_) => {
                sink.error(node.pos, path, format!("{n} retries is too many"));
                None
            }
        },
        Some(n) => {
            sink.error(
                node.pos,
                path,
                format!("expected true, false or a number of retries (0 or more), found {n}"),
            );
            None
        }
        None => boolean(node, path, sink).map(AutoRetry::Enabled),
    }
}

// ---------------------------------------------------------------------------------------------
// global preferences

fn global_preferences(entries: &[Entry], path: &str, sink: &mut Sink) -> GlobalPreferences {
    warn_unknown(sink, entries, path, GLOBAL_PREF_KEYS, |key| {
        if PROVIDER_PREF_KEYS.contains(&key) {
            Some(format!(
                "`{key}` is a per-provider setting; put it under a provider's `preferences`"
            ))
        } else if API_KEY_PREF_KEYS.contains(&key) {
            Some(format!(
                "`{key}` is a client-key setting; put it under an `api_keys` item's `preferences`"
            ))
        } else {
            None
        }
    });
    let kp = |key: &str| key_path(path, key);
    let mut g = GlobalPreferences::default();
    if let Some(n) = value(entries, "model_timeout") {
        g.model_timeout = per_model_seconds(n, &kp("model_timeout"), sink);
    }
    if let Some(n) = value(entries, "keepalive_interval") {
        g.keepalive_interval = per_model_seconds(n, &kp("keepalive_interval"), sink);
    }
    if let Some(n) = value(entries, "timeout_policy") {
        g.timeout_policy = timeout_policy(n, &kp("timeout_policy"), sink);
    }
    if let Some(n) = value(entries, "cooldown_period") {
        g.cooldown_period = seconds(n, &kp("cooldown_period"), sink, false);
    }
    if let Some(n) = value(entries, "rate_limit") {
        g.rate_limit = rate_limit_spec(n, &kp("rate_limit"), sink, false);
    }
    if let Some(n) = value(entries, "error_triggers") {
        g.error_triggers = string_list(n, &kp("error_triggers"), sink, "a trigger string");
        if g.error_triggers.iter().any(String::is_empty) {
            sink.warn(
                n.pos,
                &kp("error_triggers"),
                "an empty trigger matches every answer and would fail every request; ignored",
            );
            g.error_triggers.retain(|t| !t.is_empty());
        }
    }
    if let Some(n) = value(entries, "proxy") {
        g.proxy = proxy(n, &kp("proxy"), sink);
    }
    if let Some(n) = value(entries, "model_price") {
        let pp = kp("model_price");
        match &n.value {
            Value::Map(prices) => {
                for e in prices {
                    let ep = key_path(&pp, &e.key);
                    if let Some(price) = price(&e.value, &ep, sink) {
                        g.model_price.push((e.key.clone(), price));
                    }
                }
            }
            other => sink.error(
                n.pos,
                &pp,
                format!(
                    "expected a mapping of `model-prefix: \"input,output\"` dollars per million tokens, found {}",
                    describe(other)
                ),
            ),
        }
    }
    if let Some(n) = value(entries, "hedging") {
        g.hedging = json_mapping(n, &kp("hedging"), sink);
    }
    if let Some(n) = value(entries, "max_request_body_bytes") {
        g.max_request_body_bytes = body_size(n, &kp("max_request_body_bytes"), sink);
    }
    g
}

/// `"in,out"` in dollars per million tokens. Like uni-api, a missing output price means 1.
fn price(node: &Node, path: &str, sink: &mut Sink) -> Option<Price> {
    let text = match &node.value {
        Value::Seq(_) | Value::Map(_) | Value::Null => {
            sink.error(
                node.pos,
                path,
                format!(
                    "expected \"input,output\" dollars per million tokens like \"1,2\", found {}",
                    describe(&node.value)
                ),
            );
            return None;
        }
        v => scalar_text(v).unwrap_or_default(),
    };
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let parse = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0 && s.bytes().any(|b| b.is_ascii_digit()))
    };
    let bad = |sink: &mut Sink, why: &str| {
        sink.error(
            node.pos,
            path,
            format!(
                "expected \"input,output\" dollars per million tokens like \"1,2\", found {} ({why})",
                quote(&text)
            ),
        );
    };
    match parts.as_slice() {
        [input, output] => match (parse(input), parse(output)) {
            (Some(i), Some(o)) => Some(Price {
                input_per_million: i,
                output_per_million: o,
            }),
            _ => {
                bad(sink, "both prices must be non-negative numbers");
                None
            }
        },
        [input] => match parse(input) {
            Some(i) => {
                sink.warn(
                    node.pos,
                    path,
                    format!(
                        "only one price given: input {i} $/M, output 1 $/M (uni-api's default); write \"{i},<output>\""
                    ),
                );
                Some(Price {
                    input_per_million: i,
                    output_per_million: 1.0,
                })
            }
            None => {
                bad(sink, "not a number");
                None
            }
        },
        _ => {
            bad(sink, "more than two values");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// value parsers

/// `15/min,10/day` or `{model_substring: "...", default: "..."}`.
fn rate_limit_spec(
    node: &Node,
    path: &str,
    sink: &mut Sink,
    tpr_allowed: bool,
) -> Option<RateLimitSpec> {
    let one = |n: &Node, p: &str, sink: &mut Sink| -> Option<Vec<RateLimit>> {
        let Value::Str(text) = &n.value else {
            sink.error(
                n.pos,
                p,
                format!(
                    "expected a rate limit like \"15/min\" or \"15/min,500/day\", found {}",
                    describe(&n.value)
                ),
            );
            return None;
        };
        match parse_rate_limit(text) {
            Ok(mut limits) => {
                if !tpr_allowed
                    && limits
                        .iter()
                        .any(|l| l.period == RatePeriod::TokensPerRequest)
                {
                    sink.warn(
                        n.pos,
                        p,
                        "`tpr` (tokens per request) only applies to a provider's api_key_rate_limit; ignored here",
                    );
                    limits.retain(|l| l.period != RatePeriod::TokensPerRequest);
                }
                Some(limits)
            }
            Err(why) => {
                sink.error(
                    n.pos,
                    p,
                    format!("invalid rate limit {}: {why}", quote(text)),
                );
                None
            }
        }
    };
    match &node.value {
        Value::Map(entries) => {
            let mut per_model = Vec::new();
            for e in entries {
                if let Some(limits) = one(&e.value, &key_path(path, &e.key), sink) {
                    per_model.push((e.key.clone(), limits));
                }
            }
            Some(RateLimitSpec::PerModel(per_model))
        }
        Value::Seq(_) => {
            sink.error(
                node.pos,
                path,
                "expected a rate limit like \"15/min,500/day\" (one string, comma-separated) or a per-model mapping, found a list",
            );
            None
        }
        _ => one(node, path, sink).map(RateLimitSpec::All),
    }
}

/// uni-api's `parse_rate_limit`: comma-separated `^(\d+)/(\w+)$`, exact unit names.
pub(crate) fn parse_rate_limit(text: &str) -> Result<Vec<RateLimit>, String> {
    let mut limits = Vec::new();
    for item in text.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(
                "an empty part (a stray comma?); write limits as \"15/min,500/day\"".into(),
            );
        }
        let Some((count, unit)) = item.split_once('/') else {
            return Err(format!("`{item}` has no unit; write it like `{item}/min`"));
        };
        if count.trim() != count || unit.trim() != unit {
            let compact: String = item.split_whitespace().collect();
            return Err(format!(
                "no spaces allowed inside `{item}`; write `{compact}`"
            ));
        }
        if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "`{item}`: the part before `/` must be a whole number of requests"
            ));
        }
        let count: u64 = count
            .parse()
            .map_err(|_| format!("`{item}`: the count is too large"))?;
        if count == 0 {
            return Err(format!("`{item}`: the count must be at least 1"));
        }
        let period = if unit == "tpr" {
            RatePeriod::TokensPerRequest
        } else if let Some((_, secs)) = TOKEN_UNITS.iter().find(|(u, _)| *u == unit) {
            RatePeriod::TokenWindow(*secs)
        } else if let Some((_, secs)) = RATE_UNITS.iter().find(|(u, _)| *u == unit) {
            RatePeriod::Window(*secs)
        } else {
            let names: Vec<&str> = RATE_UNITS
                .iter()
                .chain(TOKEN_UNITS)
                .map(|(u, _)| *u)
                .chain(["tpr"])
                .collect();
            let lower = unit.to_ascii_lowercase();
            let hint = if let Some(singular) = unit.strip_suffix('s').filter(|s| names.contains(s))
            {
                format!("units are singular: write `{count}/{singular}`")
            } else if names.contains(&lower.as_str()) {
                format!("units are lower-case: write `{count}/{lower}`")
            } else if let Some(k) = closest(unit, &names) {
                format!("did you mean `{count}/{k}`?")
            } else {
                format!("units: {}", names.join(", "))
            };
            return Err(format!("unknown unit `{unit}` ({hint})"));
        };
        limits.push(RateLimit { count, period });
    }
    Ok(limits)
}

/// Seconds: a number or a numeric string; `positive` rejects 0 too.
fn seconds(node: &Node, path: &str, sink: &mut Sink, positive: bool) -> Option<f64> {
    let v = number(node, path, sink, "a number of seconds")?;
    if v < 0.0 || (positive && v == 0.0) {
        let need = if positive {
            "greater than 0"
        } else {
            "0 or more"
        };
        sink.error(node.pos, path, format!("must be {need} seconds, found {v}"));
        return None;
    }
    Some(v)
}

/// A number, or `{model_substring: number, default: number}` kept in file order.
fn per_model_seconds(node: &Node, path: &str, sink: &mut Sink) -> Option<PerModel<f64>> {
    match &node.value {
        Value::Map(entries) => {
            let mut out = Vec::new();
            for e in entries {
                if let Some(v) = seconds(&e.value, &key_path(path, &e.key), sink, true) {
                    out.push((e.key.clone(), v));
                }
            }
            Some(PerModel::Map(out))
        }
        Value::Seq(_) => {
            sink.error(
                node.pos,
                path,
                "expected a number of seconds or a mapping `model: seconds`, found a list",
            );
            None
        }
        _ => seconds(node, path, sink, true).map(PerModel::All),
    }
}

/// Bytes: an integer, or a size like `20MB` (10^6), `20MiB` (2^20), `512KB`, `1GB`.
fn body_size(node: &Node, path: &str, sink: &mut Sink) -> Option<u64> {
    let result = match &node.value {
        Value::Int(i, _) => u64::try_from(*i).map_err(|_| "must not be negative".to_owned()),
        Value::Float(f, _) if f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19 => {
            Ok(*f as u64)
        }
        Value::Str(s) => parse_size(s),
        other => Err(format!("found {}", describe(other))),
    };
    match result {
        Ok(0) => {
            sink.error(node.pos, path, "must be greater than 0 bytes");
            None
        }
        Ok(n) => Some(n),
        Err(why) => {
            sink.error(
                node.pos,
                path,
                format!("expected a size in bytes like 1048576, \"20MB\" or \"20MiB\": {why}"),
            );
            None
        }
    }
}

pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim();
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "{} has an unknown unit `{unit}` (use B, KB, MB, GB, KiB, MiB or GiB)",
                quote(text)
            ));
        }
    };
    let value: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && num.bytes().any(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("{} does not start with a number", quote(text)))?;
    let bytes = (value * factor as f64).floor();
    if bytes >= 1.8e19 {
        return Err(format!("{} is too large", quote(text)));
    }
    Ok(bytes as u64)
}

fn proxy(node: &Node, path: &str, sink: &mut Sink) -> Option<String> {
    let url = string(node, path, sink, "a proxy URL")?;
    let lower = url.to_ascii_lowercase();
    // Only the scheme is checked: the README's placeholder `socks5://[user]:[pass]@[ip]:[port]`
    // must load.
    if ["http://", "https://", "socks5://", "socks5h://"]
        .iter()
        .any(|s| lower.starts_with(s))
    {
        Some(url)
    } else {
        sink.error(
            node.pos,
            path,
            format!(
                "expected a proxy URL starting with http://, https://, socks5:// or socks5h://, found {}",
                quote(&url)
            ),
        );
        None
    }
}

fn headers(node: &Node, path: &str, sink: &mut Sink) -> Vec<(String, String)> {
    let Value::Map(entries) = &node.value else {
        sink.error(
            node.pos,
            path,
            format!(
                "expected a mapping of `Header-Name: value`, found {}",
                describe(&node.value)
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries {
        let hp = key_path(path, &e.key);
        if !is_header_name(&e.key) {
            sink.error(
                e.key_pos,
                &hp,
                format!("{} is not a valid HTTP header name", quote(&e.key)),
            );
            continue;
        }
        let v = match &e.value.value {
            Value::Null => {
                sink.error(e.value.pos, &hp, "the header has no value");
                continue;
            }
            Value::Seq(_) | Value::Map(_) => {
                sink.error(
                    e.value.pos,
                    &hp,
                    format!(
                        "expected a header value string, found {}",
                        describe(&e.value.value)
                    ),
                );
                continue;
            }
            v => scalar_text(v).unwrap_or_default(),
        };
        if v.contains(['\r', '\n', '\0']) {
            sink.error(
                e.value.pos,
                &hp,
                "a header value cannot contain line breaks",
            );
            continue;
        }
        out.push((e.key.clone(), v));
    }
    out
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks a YAML timestamp / RFC 3339 / ISO 8601 date or date-time (the text is kept as written).
pub(crate) fn check_timestamp(s: &str) -> Result<(), String> {
    let mut c = Cursor {
        s: s.as_bytes(),
        i: 0,
    };
    let year = c
        .digits(4, 4)
        .ok_or("the date must start with a 4-digit year")?;
    c.expect(b'-').ok_or("expected `-` after the year")?;
    let month = c.digits(1, 2).ok_or("expected a month")?;
    c.expect(b'-').ok_or("expected `-` after the month")?;
    let day = c.digits(1, 2).ok_or("expected a day")?;
    if !(1..=12).contains(&month) {
        return Err(format!("month {month} does not exist"));
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return Err(format!("day {day} does not exist in month {month}"));
    }
    if c.done() {
        return Ok(());
    }
    if !(c.expect(b'T').is_some() || c.expect(b't').is_some() || c.spaces()) {
        return Err("expected `T` or a space between the date and the time".into());
    }
    let hour = c.digits(1, 2).ok_or("expected an hour")?;
    c.expect(b':').ok_or("expected `:` after the hour")?;
    let minute = c.digits(2, 2).ok_or("expected two-digit minutes")?;
    let mut second = 0;
    if c.expect(b':').is_some() {
        second = c.digits(2, 2).ok_or("expected two-digit seconds")?;
        if c.expect(b'.').is_some() || c.expect(b',').is_some() {
            c.digits(1, 9)
                .ok_or("expected digits after the decimal point")?;
            while c.digits(1, 1).is_some() {}
        }
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(format!(
            "{hour}:{minute:02}:{second:02} is not a valid time"
        ));
    }
    c.spaces();
    let zulu = c.expect(b'Z').is_some() || c.expect(b'z').is_some();
    if !zulu && (c.expect(b'+').is_some() || c.expect(b'-').is_some()) {
        let oh = c.digits(1, 2).ok_or("expected the UTC offset hours")?;
        let om = if c.expect(b':').is_some() {
            c.digits(2, 2).ok_or("expected the UTC offset minutes")?
        } else {
            c.digits(2, 2).unwrap_or(0)
        };
        if oh > 23 || om > 59 {
            return Err("the UTC offset is out of range".into());
        }
    }
    if c.done() {
        Ok(())
    } else {
        Err("unexpected text after the time".into())
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        while self.i < self.s.len() && self.i - start < max && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        self.s[start..self.i].iter().try_fold(0u32, |acc, b| {
            acc.checked_mul(10)?.checked_add(u32::from(b - b'0'))
        })
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn spaces(&mut self) -> bool {
        let start = self.i;
        while matches!(self.s.get(self.i), Some(b' ' | b'\t')) {
            self.i += 1;
        }
        self.i > start
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }
}

// ---------------------------------------------------------------------------------------------
// generic helpers

fn field<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Entry> {
    entries.iter().find(|e| e.key == key)
}

/// The value of `key`, or `None` when absent or null (uni-api's `.get()` treats both alike).
fn value<'n>(entries: &'n [Entry], key: &str) -> Option<&'n Node> {
    field(entries, key)
        .map(|e| &e.value)
        .filter(|n| n.value != Value::Null)
}

fn map_of<'n>(node: &'n Node, path: &str, sink: &mut Sink, what: &str) -> Option<&'n [Entry]> {
    match &node.value {
        Value::Map(entries) => Some(entries),
        Value::Null => Some(&[]),
        other => {
            sink.error(
                node.pos,
                path,
                format!("expected {what}, found {}", describe(other)),
            );
            None
        }
    }
}

/// The text of a scalar as a string value: strings as is, numbers and booleans as written.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Bool(_, raw) | Value::Int(_, raw) | Value::Float(_, raw) => Some(raw.clone()),
        Value::Null | Value::Seq(_) | Value::Map(_) => None,
    }
}

fn string(node: &Node, path: &str, sink: &mut Sink, what: &str) -> Option<String> {
    match &node.value {
        Value::Seq(_) | Value::Map(_) => {
            sink.error(
                node.pos,
                path,
                format!("expected {what}, found {}", describe(&node.value)),
            );
            None
        }
        v => scalar_text(v),
    }
}

/// One string or a list of them.
fn string_list(node: &Node, path: &str, sink: &mut Sink, what: &str) -> Vec<String> {
    match &node.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                if item.value == Value::Null {
                    sink.warn(item.pos, &index_path(path, i), "empty entry ignored");
                    return None;
                }
                string(item, &index_path(path, i), sink, what)
            })
            .collect(),
        Value::Map(_) => {
            sink.error(
                node.pos,
                path,
                format!("expected {what} or a list of them, found a mapping"),
            );
            Vec::new()
        }
        v => scalar_text(v).into_iter().collect(),
    }
}

fn number(node: &Node, path: &str, sink: &mut Sink, what: &str) -> Option<f64> {
    let parsed = match &node.value {
        Value::Null => return None,
        Value::Int(i, _) => Some(*i as f64),
        Value::Float(f, _) => Some(*f).filter(|f| f.is_finite()),
        Value::Str(s) => {
            let t = s.trim();
            t.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite() && t.bytes().any(|b| b.is_ascii_digit()))
        }
        Value::Bool(..) | Value::Seq(_) | Value::Map(_) => None,
    };
    if parsed.is_none() {
        sink.error(
            node.pos,
            path,
            format!("expected {what}, found {}", describe(&node.value)),
        );
    }
    parsed
}

/// YAML 1.2 core booleans (true/True/TRUE...), 0/1, and quoted "true"/"false". YAML 1.1's
/// yes/no/on/off are strings for uni-api (and therefore truthy, even `no`); we read them as
/// meant and warn.
fn boolean(node: &Node, path: &str, sink: &mut Sink) -> Option<bool> {
    match &node.value {
        Value::Bool(b, _) => Some(*b),
        Value::Int(0, _) => Some(false),
        Value::Int(1, _) => Some(true),
        Value::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            word @ ("yes" | "on" | "no" | "off") => {
                let b = matches!(word, "yes" | "on");
                sink.warn(
                    node.pos,
                    path,
                    format!(
                        "{} is a string in YAML 1.2 (uni-api treats any non-empty string as true); \
                         read as {b} here, write `{b}` to be unambiguous",
                        quote(s)
                    ),
                );
                Some(b)
            }
            _ => {
                sink.error(
                    node.pos,
                    path,
                    format!("expected true or false, found {}", describe(&node.value)),
                );
                None
            }
        },
        Value::Null => None,
        other => {
            sink.error(
                node.pos,
                path,
                format!("expected true or false, found {}", describe(other)),
            );
            None
        }
    }
}

/// `{default: {connect, write, pool, first_byte, idle, total}, rules: [{match: {...}, timeout:
/// {...}}]}`: checked for unknown keys and non-numeric timeouts, then kept as JSON.
fn timeout_policy(node: &Node, path: &str, sink: &mut Sink) -> Option<Json> {
    const TIMEOUTS: &[&str] = &["connect", "write", "pool", "first_byte", "idle", "total"];
    const MATCH: &[&str] = &[
        "endpoint",
        "stream",
        "request_type",
        "method",
        "engine",
        "provider",
        "model",
        "request_model",
        "upstream_model",
        "role",
    ];
    let json = json_mapping(node, path, sink)?;
    let Value::Map(entries) = &node.value else {
        return Some(json);
    };
    let timeouts = |n: &Node, p: &str, sink: &mut Sink| {
        let Some(fields) = map_of(n, p, sink, "a mapping of timeouts in seconds") else {
            return;
        };
        warn_unknown(sink, fields, p, TIMEOUTS, |_| None);
        for f in fields.iter().filter(|f| TIMEOUTS.contains(&f.key.as_str())) {
            if f.value.value != Value::Null {
                seconds(&f.value, &key_path(p, &f.key), sink, true);
            }
        }
    };
    warn_unknown(sink, entries, path, &["default", "rules"], |_| None);
    if let Some(d) = value(entries, "default") {
        timeouts(d, &key_path(path, "default"), sink);
    }
    if let Some(r) = value(entries, "rules") {
        let rp = key_path(path, "rules");
        match &r.value {
            Value::Seq(rules) => {
                for (i, rule) in rules.iter().enumerate() {
                    let ip = index_path(&rp, i);
                    let Some(fields) = map_of(rule, &ip, sink, "a `{match, timeout}` rule") else {
                        continue;
                    };
                    warn_unknown(sink, fields, &ip, &["match", "timeout"], |_| None);
                    if let Some(m) = value(fields, "match") {
                        let mp = key_path(&ip, "match");
                        if let Some(mf) = map_of(m, &mp, sink, "a mapping of match fields") {
                            warn_unknown(sink, mf, &mp, MATCH, |_| None);
                        }
                    }
                    if let Some(t) = value(fields, "timeout") {
                        timeouts(t, &key_path(&ip, "timeout"), sink);
                    }
                }
            }
            other => sink.error(
                r.pos,
                &rp,
                format!("expected a list of rules, found {}", describe(other)),
            ),
        }
    }
    Some(json)
}

/// A mapping kept as JSON (free-form settings interpreted elsewhere).
fn json_mapping(node: &Node, path: &str, sink: &mut Sink) -> Option<Json> {
    match &node.value {
        Value::Map(_) => Some(to_json(node)),
        other => {
            sink.error(
                node.pos,
                path,
                format!("expected a mapping, found {}", describe(other)),
            );
            None
        }
    }
}

/// YAML → JSON, faithfully: integers stay integers, floats floats, keys as written.
pub(crate) fn to_json(node: &Node) -> Json {
    match &node.value {
        Value::Null => Json::Null,
        Value::Bool(b, _) => Json::Bool(*b),
        Value::Int(i, _) => Json::from(*i),
        Value::Float(f, raw) => {
            serde_json::Number::from_f64(*f).map_or_else(|| Json::String(raw.clone()), Json::Number)
        }
        Value::Str(s) => Json::String(s.clone()),
        Value::Seq(items) => Json::Array(items.iter().map(to_json).collect()),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect::<Map<String, Json>>(),
        ),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(_, raw) => format!("the boolean `{raw}`"),
        Value::Int(_, raw) => format!("the integer `{raw}`"),
        Value::Float(_, raw) => format!("the number `{raw}`"),
        Value::Str(s) => {
            let shown: String = s.chars().take(60).collect();
            let more = if shown.len() < s.len() { "..." } else { "" };
            format!("the string {}{more}", quote(&shown))
        }
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

fn warn_unknown(
    sink: &mut Sink,
    entries: &[Entry],
    path: &str,
    known: &[&str],
    hint: impl Fn(&str) -> Option<String>,
) {
    for e in entries {
        if known.contains(&e.key.as_str()) {
            continue;
        }
        let dym = did_you_mean(&e.key, known);
        let help = match hint(&e.key) {
            Some(h) => format!("; {h}"),
            None if dym.is_empty() && known.len() <= 6 => {
                format!("; known keys here: {}", known.join(", "))
            }
            None => String::new(),
        };
        let msg = format!("unknown key `{}` is ignored{dym}{help}", e.key);
        sink.warn(e.key_pos, &key_path(path, &e.key), msg);
    }
}

/// `" (did you mean `x`?)"` for a close known name, else empty.
fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known).map_or_else(String::new, |k| format!(" (did you mean `{k}`?)"))
}

/// The known name closest to `word` (ignoring case), if it is plausibly a typo of it.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = word.to_ascii_lowercase();
    known
        .iter()
        .map(|k| (edit_distance(&lower, &k.to_ascii_lowercase()), *k))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= (word.chars().count() / 4).max(1))
        .map(|(_, k)| k)
}

/// Optimal string alignment distance: edits plus swaps of neighbours (`gtp` → `gpt` is 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// Errors on the second and later uses of a name. Secrets (`show` false) are not printed.
fn check_unique<'a>(
    sink: &mut Sink,
    items: impl Iterator<Item = (&'a str, Pos, usize)>,
    path: &str,
    what: &str,
    show: bool,
    why: &str,
) {
    let mut seen: HashMap<&str, (usize, Pos)> = HashMap::new();
    for (name, pos, i) in items {
        if name.is_empty() {
            continue;
        }
        match seen.get(name) {
            Some((first_i, first)) => {
                let shown = if show {
                    format!(" {}", quote(name))
                } else {
                    String::new()
                };
                sink.error(
                    pos,
                    &index_path(path, i),
                    format!(
                        "duplicate {what}{shown}, already used by {} at line {}:{}; {why}",
                        index_path(path, *first_i),
                        first.line,
                        first.col,
                    ),
                );
            }
            None => {
                seen.insert(name, (i, pos));
            }
        }
    }
}
