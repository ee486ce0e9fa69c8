//! Typed form of a uni-api `api.yaml` (plus llmux extensions). Every key of uni-api's schema is
//! represented, even where the behaviour comes in a later issue, so any real config loads.
//! Values are already `${VAR}`-interpolated. Positions point into the source file so later
//! validation (routing rules, cycles) can name file:line:col.

use serde_json::{Map, Value};

/// 1-based position of a node in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub providers: Vec<ProviderConfig>,
    pub api_keys: Vec<ApiKeyConfig>,
    pub preferences: GlobalPreferences,
    /// Parsed but not interpreted yet (video adapters).
    pub video_providers: Option<Value>,
}

#[derive(Debug, Clone, Default)]
pub struct ProviderConfig {
    pub pos: Pos,
    /// Channel name (ints coerced to string).
    pub provider: String,
    pub base_url: Option<String>,
    /// `api`: one key or a list of keys (empty for keyless local servers).
    pub api: Vec<String>,
    /// llmux extension, one entry per `api` key: a key may be written as a mapping
    /// `{key: sk-..., scope: org-a, max_inflight: 4}`.
    pub key_options: Vec<KeyOptions>,
    /// `None` when `model` is absent: the list is discovered from the upstream at start-up.
    pub model: Option<Vec<ModelEntry>>,
    pub engine: Option<String>,
    /// default true
    pub tools: bool,
    /// default true (undocumented `image: false` drops image parts)
    pub image: bool,
    /// Vertex: one project id, or one per key (Vertex Express).
    pub project_id: Vec<String>,
    pub private_key: Option<String>,
    pub client_email: Option<String>,
    /// llmux extension (the service-account JSON's field): OAuth token endpoint.
    pub token_uri: Option<String>,
    pub region: Option<String>,
    pub cf_account_id: Option<String>,
    pub aws_access_key: Option<String>,
    pub aws_secret_key: Option<String>,
    pub notes: Option<String>,
    /// Merged from provider level and `preferences` level.
    pub exclude_endpoints: Vec<String>,
    pub only_request_types: Vec<String>,
    pub exclude_request_types: Vec<String>,
    pub exclude_request_rules: Vec<Value>,
    pub preferences: ProviderPreferences,
}

/// Per-key settings (llmux extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// Keys with the same scope drain one quota bucket (an org, a project, a deployment).
    pub scope: Option<String>,
    /// Most requests this key may have in flight at once.
    pub max_inflight: Option<u32>,
}

/// `- name` or `- upstream_name: alias`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Name sent to the provider.
    pub upstream: String,
    /// Name clients use (equal to `upstream` when not renamed).
    pub alias: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub struct ProviderPreferences {
    pub api_key_rate_limit: Option<RateLimitSpec>,
    pub api_key_schedule_algorithm: Option<KeySchedule>,
    pub api_key_cooldown_period: Option<f64>,
    pub api_key_rate_limit_cooldown_period: Option<f64>,
    pub api_key_quota_cooldown_period: Option<f64>,
    pub model_timeout: Option<PerModel<f64>>,
    pub keepalive_interval: Option<PerModel<f64>>,
    pub timeout_policy: Option<Value>,
    pub cooldown_period: Option<f64>,
    pub proxy: Option<String>,
    /// Extra upstream request headers, in file order.
    pub headers: Vec<(String, String)>,
    pub passthrough_request_headers: Vec<String>,
    pub post_body_parameter_overrides: Option<Map<String, Value>>,
    pub max_request_body_bytes: Option<u64>,
    pub responses_stream_commit_policy: Option<String>,
    pub search_defaults: Option<Value>,
    pub oaix_routing_attempt_id: Option<bool>,
    /// llmux extension: default in-flight cap per key.
    pub key_max_inflight: Option<u32>,
    /// llmux extension: how long a request may wait for a key of this provider to free up
    /// (seconds; default 10, bounded by the request's timeout).
    pub key_wait_timeout: Option<f64>,
    /// llmux extension: `shared` = all keys of this provider drain one quota (one org/project).
    pub quota_scope: Option<String>,
}

/// uni-api `api_key_schedule_algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySchedule {
    #[default]
    RoundRobin,
    Random,
    FixedPriority,
    SmartRoundRobin,
}

/// A value given once for all models, or per model (`{model_or_substring: v, default: v}`),
/// kept in file order because uni-api matches the first substring key in dict order.
#[derive(Debug, Clone, PartialEq)]
pub enum PerModel<T> {
    All(T),
    Map(Vec<(String, T)>),
}

/// `15/min,10/day` or a per-model map of such lists.
#[derive(Debug, Clone, PartialEq)]
pub enum RateLimitSpec {
    All(Vec<RateLimit>),
    PerModel(Vec<(String, Vec<RateLimit>)>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub count: u64,
    pub period: RatePeriod,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RatePeriod {
    /// A sliding window of this many seconds.
    Window(u64),
    /// `N/tpr`: tokens per request.
    TokensPerRequest,
    /// llmux extension `N/tpm`, `N/tph`, `N/tpd`: a token budget over this many seconds.
    TokenWindow(u64),
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeyConfig {
    pub pos: Pos,
    pub api: String,
    /// Routing rules in priority order; `["all"]` when `model` is absent.
    pub model: Vec<ModelRule>,
    pub role: Option<String>,
    pub preferences: ApiKeyPreferences,
}

/// One entry of `api_keys[].model`: `rule` or `{rule: weight}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRule {
    pub rule: String,
    pub weight: Option<u32>,
    pub pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeyPreferences {
    pub scheduling_algorithm: Option<ChannelSchedule>,
    pub auto_retry: AutoRetry,
    /// `rate_limit` (uni-api) or `RATE_LIMIT` (accepted too).
    pub rate_limit: Option<RateLimitSpec>,
    pub enable_moderation: bool,
    /// Dollars; `None` = unlimited.
    pub credits: Option<f64>,
    /// RFC 3339 / ISO 8601 text as written.
    pub created_at: Option<String>,
}

/// uni-api `SCHEDULING_ALGORITHM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelSchedule {
    #[default]
    FixedPriority,
    RoundRobin,
    WeightedRoundRobin,
    Lottery,
    Random,
    SmartRoundRobin,
}

/// `AUTO_RETRY: true|false|N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRetry {
    Enabled(bool),
    Attempts(u32),
}

impl Default for AutoRetry {
    fn default() -> Self {
        AutoRetry::Enabled(true)
    }
}

#[derive(Debug, Clone, Default)]
pub struct GlobalPreferences {
    pub model_timeout: Option<PerModel<f64>>,
    pub keepalive_interval: Option<PerModel<f64>>,
    pub timeout_policy: Option<Value>,
    /// Channel cooldown seconds (uni-api default 300).
    pub cooldown_period: Option<f64>,
    pub rate_limit: Option<RateLimitSpec>,
    pub error_triggers: Vec<String>,
    pub proxy: Option<String>,
    /// `{model_prefix: (input $/M, output $/M)}` in file order.
    pub model_price: Vec<(String, Price)>,
    pub hedging: Option<Value>,
    /// llmux extension: maximum request body in bytes (default 64 MiB).
    pub max_request_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input_per_million: f64,
    pub output_per_million: f64,
}
