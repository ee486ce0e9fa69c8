//! The statistics and credit endpoints of uni-api, as functions returning serde structs whose
//! JSON is field-for-field uni-api's. The HTTP side (routing, auth, admin checks, query-string
//! parsing) belongs to the server; errors come back as [`EndpointError`] with the status and
//! the `detail` text uni-api puts in `{"message": ...}`.
//!
//! Deliberate differences from uni-api (its bugs, ★ in the reference):
//! * keys are never shown in clear: `api_key_prefix`, ranking `api_key` and all filters use
//!   key ids ([`crate::usage::keys`]), and the `api_key_filter` detail shows the masked form;
//! * credits added with `/v1/add_credits` are persisted (uni-api keeps them in memory);
//! * an admin viewing all keys gets `credits`/`total_cost`/`balance` as `null`, not `"$None"`;
//!   `balance` is shown whenever the key has limited credits (uni-api hides it when the cost
//!   is exactly 0);
//! * an `end_datetime` given as a bare date covers that whole day; a date-time end is exact
//!   (uni-api adds a day to every end bound of `/v1/token_usage`).
//! * every request is counted in `/v1/stats` and `request_count`, failed ones included.

use serde::Serialize;

use super::{KeyCounts, NameCount, StoreError, SuccessCount, UsageFilter, UsageRow, UsageStore};
use crate::usage::CostLedger;
use crate::usage::keys::{self, display};
use crate::usage::time::{DAY_MS, HOUR_MS, format_iso, parse_datetime};

/// An endpoint failure: HTTP status and uni-api's `detail` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct EndpointError {
    pub status: u16,
    pub message: String,
}

impl EndpointError {
    fn new(status: u16, message: impl Into<String>) -> EndpointError {
        EndpointError {
            status,
            message: message.into(),
        }
    }

    /// What every store-backed endpoint answers under `DISABLE_DATABASE` (uni-api: 503).
    pub fn disabled() -> EndpointError {
        EndpointError::new(503, "Database is disabled.")
    }

    /// `/v1/add_credits` for a key without `credits` (uni-api's 404).
    pub fn unknown_paid_key(paid_key: &str) -> EndpointError {
        EndpointError::new(
            404,
            format!("API key '{paid_key}' not found in paid API keys states."),
        )
    }
}

impl From<StoreError> for EndpointError {
    fn from(e: StoreError) -> EndpointError {
        tracing::warn!("usage endpoint: {e}");
        EndpointError::new(503, "Usage database unavailable.")
    }
}

/// Python's `str(float)`: `10.0`, `0.5`, `3e-05`, so `"$" + ...` strings read as uni-api's.
pub fn py_float(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let e = format!("{v:e}");
        let (mant, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.unsigned_abs());
    }
    if v.fract() == 0.0 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------------------------------------
// Time ranges

/// The resolved range of a query plus the `start_datetime` / `end_datetime` details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRange {
    pub start_ms: Option<i64>,
    /// Exclusive.
    pub end_ms: Option<i64>,
    pub start_detail: Option<String>,
    pub end_detail: Option<String>,
}

/// uni-api's `resolve_time_range`: `last_n_days` (positive, not with explicit bounds), else
/// explicit `start_datetime` / `end_datetime` (ISO 8601 or unix seconds), else the last
/// `default_days`.
pub fn resolve_time_range(
    default_days: i64,
    last_n_days: Option<i64>,
    start: Option<&str>,
    end: Option<&str>,
    now_ms: i64,
) -> Result<TimeRange, EndpointError> {
    let start = start.filter(|s| !s.is_empty());
    let end = end.filter(|s| !s.is_empty());
    let whole = |days: i64| TimeRange {
        start_ms: Some(now_ms - days * DAY_MS),
        end_ms: Some(now_ms),
        start_detail: Some(format_iso(now_ms - days * DAY_MS)),
        end_detail: Some(format_iso(now_ms)),
    };
    if let Some(days) = last_n_days {
        if start.is_some() || end.is_some() {
            return Err(EndpointError::new(
                400,
                "Cannot use last_n_days with start_datetime or end_datetime.",
            ));
        }
        if days <= 0 {
            return Err(EndpointError::new(400, "last_n_days must be positive."));
        }
        return Ok(whole(days.min(365_000)));
    }
    if start.is_none() && end.is_none() {
        return Ok(whole(default_days));
    }
    let parse = |s: Option<&str>| {
        s.map(parse_datetime)
            .transpose()
            .map_err(|e| EndpointError::new(400, e))
    };
    let (s, e) = (parse(start)?, parse(end)?);
    if let (Some(s), Some(e)) = (s, e)
        && e.ms < s.ms
    {
        return Err(EndpointError::new(
            400,
            "end_datetime cannot be before start_datetime.",
        ));
    }
    Ok(TimeRange {
        start_ms: s.map(|p| p.ms),
        end_ms: e.map(|p| if p.date_only { p.ms + DAY_MS } else { p.ms }),
        start_detail: s.map(|p| format_iso(p.ms)),
        end_detail: e.map(|p| format_iso(p.ms)),
    })
}

// ---------------------------------------------------------------------------------------------
// GET /v1/stats

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelModelRate {
    pub provider: String,
    pub model: String,
    pub success_rate: f64,
    pub total_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelRate {
    pub provider: String,
    pub success_rate: f64,
    pub total_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelCount {
    pub model: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointCount {
    pub endpoint: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpCount {
    pub ip: Option<String>,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsResponse {
    pub time_range: String,
    pub channel_model_success_rates: Vec<ChannelModelRate>,
    pub channel_success_rates: Vec<ChannelRate>,
    pub model_request_counts: Vec<ModelCount>,
    pub endpoint_request_counts: Vec<EndpointCount>,
    pub ip_request_counts: Vec<IpCount>,
}

/// `/v1/stats` under `DISABLE_DATABASE`: `{"stats": {}}`.
pub fn stats_disabled() -> serde_json::Value {
    serde_json::json!({ "stats": {} })
}

fn rate(c: &SuccessCount) -> f64 {
    KeyCounts {
        key_fingerprint: String::new(),
        total: c.total,
        success: c.success,
    }
    .success_rate()
}

fn by_count(mut v: Vec<NameCount>) -> Vec<NameCount> {
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v
}

/// `GET /v1/stats?hours=` (1..=720, default 24 — the server parses the query).
pub async fn stats<S: UsageStore>(
    store: &S,
    hours: u32,
    now_ms: i64,
) -> Result<StatsResponse, EndpointError> {
    if !(1..=720).contains(&hours) {
        return Err(EndpointError::new(422, "hours must be between 1 and 720."));
    }
    let s = store.summary(now_ms - i64::from(hours) * HOUR_MS).await?;
    let mut cm = s.channel_model;
    cm.sort_by(|a, b| {
        rate(b)
            .total_cmp(&rate(a))
            .then(b.total.cmp(&a.total))
            .then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)))
    });
    let mut ch = s.channel;
    ch.sort_by(|a, b| {
        rate(b)
            .total_cmp(&rate(a))
            .then(b.total.cmp(&a.total))
            .then_with(|| a.provider.cmp(&b.provider))
    });
    Ok(StatsResponse {
        time_range: format!("Last {hours} hours"),
        channel_model_success_rates: cm
            .iter()
            .map(|c| ChannelModelRate {
                provider: c.provider.clone(),
                model: c.model.clone().unwrap_or_default(),
                success_rate: rate(c),
                total_requests: c.total,
            })
            .collect(),
        channel_success_rates: ch
            .iter()
            .map(|c| ChannelRate {
                provider: c.provider.clone(),
                success_rate: rate(c),
                total_requests: c.total,
            })
            .collect(),
        model_request_counts: by_count(s.models)
            .into_iter()
            .map(|n| ModelCount {
                model: n.name,
                count: n.count,
            })
            .collect(),
        endpoint_request_counts: by_count(s.endpoints)
            .into_iter()
            .map(|n| EndpointCount {
                endpoint: n.name,
                count: n.count,
            })
            .collect(),
        ip_request_counts: by_count(s.ips)
            .into_iter()
            .map(|n| IpCount {
                ip: n.name,
                count: n.count,
            })
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// GET /v1/token_usage

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenUsageEntry {
    pub api_key_prefix: String,
    pub model: String,
    pub total_prompt_tokens: i64,
    pub total_completion_tokens: i64,
    pub total_tokens: i64,
    pub request_count: i64,
}

impl From<UsageRow> for TokenUsageEntry {
    fn from(r: UsageRow) -> TokenUsageEntry {
        TokenUsageEntry {
            api_key_prefix: display(&r.client_key).to_owned(),
            model: r.model,
            total_prompt_tokens: r.prompt_tokens,
            total_completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            request_count: r.requests,
        }
    }
}

/// Shared by `/v1/token_usage` and `/v1/channel_key_rankings`; absent values are `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryDetails {
    pub start_datetime: Option<String>,
    pub end_datetime: Option<String>,
    pub api_key_filter: Option<String>,
    pub model_filter: Option<String>,
    pub credits: Option<String>,
    pub total_cost: Option<String>,
    pub balance: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenUsageResponse {
    pub usage: Vec<TokenUsageEntry>,
    pub query_details: QueryDetails,
}

/// A client key's credit terms from the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreditTerms {
    /// `preferences.credits`; `None` = unlimited.
    pub credits: Option<f64>,
    /// Start of cost accounting ([`crate::usage::window_start`]).
    pub since_ms: i64,
}

/// The query string of `/v1/token_usage`, plus who asks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUsageQuery {
    /// Key id of the calling key.
    pub caller: String,
    pub caller_is_admin: bool,
    /// `api_key_param` as given: a client key (converted to its id here) or a key id.
    pub api_key_param: Option<String>,
    pub model: Option<String>,
    pub start_datetime: Option<String>,
    pub end_datetime: Option<String>,
    pub last_n_days: Option<i64>,
}

/// A key id from what an admin typed: a stored id passes through, a secret is fingerprinted.
fn id_of_param(param: &str) -> String {
    if param.contains('#') {
        param.to_owned()
    } else {
        keys::key_id(param)
    }
}

/// `GET /v1/token_usage`. Non-admins always see only their own key; an admin sees all keys or
/// the one in `api_key_param`. `terms` gives the credit terms of a key id (`None` for keys
/// not in the config).
pub async fn token_usage<S: UsageStore>(
    store: &S,
    ledger: &CostLedger,
    q: &TokenUsageQuery,
    terms: impl Fn(&str) -> Option<CreditTerms>,
    now_ms: i64,
) -> Result<TokenUsageResponse, EndpointError> {
    let param = q.api_key_param.as_deref().filter(|p| !p.is_empty());
    let (filter_key, filter_detail) = match (q.caller_is_admin, param) {
        (true, Some(p)) => {
            let id = id_of_param(p);
            let shown = display(&id).to_owned();
            (Some(id), shown)
        }
        (true, None) => (None, "all".to_owned()),
        (false, _) => (Some(q.caller.clone()), "self".to_owned()),
    };
    let range = resolve_time_range(
        30,
        q.last_n_days,
        q.start_datetime.as_deref(),
        q.end_datetime.as_deref(),
        now_ms,
    )?;
    let model = q.model.clone().filter(|m| !m.is_empty());
    let rows = store
        .token_usage(&UsageFilter {
            client_key: filter_key.clone(),
            model: model.clone(),
            start_ms: range.start_ms,
            end_ms: range.end_ms,
        })
        .await?;
    let (mut credits, mut total_cost, mut balance) = (None, None, None);
    if let Some(key) = &filter_key {
        let t = terms(key);
        let since = t.map_or(now_ms - 30 * DAY_MS, |t| t.since_ms);
        let cost = store.cost_since(key, since).await?;
        total_cost = Some(format!("${}", py_float(cost)));
        match t.and_then(|t| t.credits) {
            Some(c) => {
                let c = c + crate::usage::CreditsView::granted(ledger, key);
                credits = Some(format!("${}", py_float(c)));
                balance = Some(format!("${}", py_float(c - cost)));
            }
            None => credits = Some("$-1".to_owned()),
        }
    }
    Ok(TokenUsageResponse {
        usage: rows.into_iter().map(TokenUsageEntry::from).collect(),
        query_details: QueryDetails {
            start_datetime: range.start_detail,
            end_datetime: range.end_detail,
            api_key_filter: Some(filter_detail),
            model_filter: Some(model.unwrap_or_else(|| "all".to_owned())),
            credits,
            total_cost,
            balance,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// GET /v1/channel_key_rankings

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelKeyRanking {
    /// The upstream key's id (`sk-...abcd#<hash>`), never the key.
    pub api_key: String,
    pub success_count: i64,
    pub total_requests: i64,
    pub success_rate: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChannelKeyRankingsResponse {
    pub rankings: Vec<ChannelKeyRanking>,
    pub query_details: QueryDetails,
}

/// `GET /v1/channel_key_rankings?provider_name=&last_n_days=&start_datetime=&end_datetime=`
/// (default: the last day).
pub async fn channel_key_rankings<S: UsageStore>(
    store: &S,
    provider_name: &str,
    last_n_days: Option<i64>,
    start_datetime: Option<&str>,
    end_datetime: Option<&str>,
    now_ms: i64,
) -> Result<ChannelKeyRankingsResponse, EndpointError> {
    let range = resolve_time_range(1, last_n_days, start_datetime, end_datetime, now_ms)?;
    let start = range.start_ms.unwrap_or(now_ms - DAY_MS);
    let rows = store
        .key_rankings(provider_name, start, range.end_ms)
        .await?;
    Ok(ChannelKeyRankingsResponse {
        rankings: rows
            .into_iter()
            .map(|k| ChannelKeyRanking {
                success_rate: k.success_rate(),
                api_key: k.key_fingerprint,
                success_count: k.success,
                total_requests: k.total,
            })
            .collect(),
        query_details: QueryDetails {
            start_datetime: range.start_detail,
            end_datetime: range.end_detail,
            api_key_filter: Some(provider_name.to_owned()),
            ..QueryDetails::default()
        },
    })
}

// ---------------------------------------------------------------------------------------------
// GET /v1/api_keys_states, POST /v1/add_credits

/// A client key with `credits` configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PaidKey {
    /// How the key is named in the answer (the server's choice; the masked key is advised).
    pub label: String,
    pub key_id: String,
    /// Configured `credits` (dollars).
    pub credits: f64,
    /// Start of cost accounting ([`crate::usage::window_start`]).
    pub since_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeyState {
    /// Configured plus granted credits.
    pub credits: f64,
    pub created_at: String,
    pub all_tokens_info: Vec<TokenUsageEntry>,
    pub total_cost: f64,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiKeysStatesResponse {
    /// By label, in the order given (serde_json keeps insertion order only with
    /// `preserve_order`; a sorted map keeps the output stable).
    pub api_keys_states: std::collections::BTreeMap<String, ApiKeyState>,
}

/// `GET /v1/api_keys_states`.
pub async fn api_keys_states<S: UsageStore>(
    store: &S,
    ledger: &CostLedger,
    keys: &[PaidKey],
) -> Result<ApiKeysStatesResponse, EndpointError> {
    let mut out = std::collections::BTreeMap::new();
    for k in keys {
        let total_cost = store.cost_since(&k.key_id, k.since_ms).await?;
        let rows = store
            .token_usage(&UsageFilter {
                client_key: Some(k.key_id.clone()),
                model: None,
                start_ms: Some(k.since_ms),
                end_ms: None,
            })
            .await?;
        let credits = k.credits + crate::usage::CreditsView::granted(ledger, &k.key_id);
        out.insert(
            k.label.clone(),
            ApiKeyState {
                credits,
                created_at: format_iso(k.since_ms),
                all_tokens_info: rows.into_iter().map(TokenUsageEntry::from).collect(),
                total_cost,
                enabled: total_cost <= credits,
            },
        );
    }
    Ok(ApiKeysStatesResponse {
        api_keys_states: out,
    })
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddCreditsResponse {
    pub message: String,
    pub paid_key: String,
    pub new_credits: f64,
    pub enabled: bool,
}

/// `POST /v1/add_credits?paid_key=&amount=`: persisted, then reflected in the ledger (so the
/// credit check sees it at once).
pub async fn add_credits<S: UsageStore>(
    store: &S,
    ledger: &CostLedger,
    key: &PaidKey,
    amount: f64,
    now_ms: i64,
) -> Result<AddCreditsResponse, EndpointError> {
    if !(amount.is_finite() && amount > 0.0) {
        return Err(EndpointError::new(422, "amount must be greater than 0."));
    }
    let granted = store.add_credits(&key.key_id, amount, now_ms).await?;
    ledger.set_granted(&key.key_id, granted);
    let new_credits = key.credits + granted;
    let total_cost = store.cost_since(&key.key_id, key.since_ms).await?;
    Ok(AddCreditsResponse {
        message: format!(
            "Successfully added {} credits to API key '{}'.",
            py_float(amount),
            key.label
        ),
        paid_key: key.label.clone(),
        new_credits,
        enabled: new_credits >= total_cost,
    })
}

// ---------------------------------------------------------------------------------------------
// GET /v1/generate-api-key

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GenerateApiKeyResponse {
    pub api_key: String,
}

/// `GET /v1/generate-api-key` (★ admin only: the server checks). Nothing is stored.
pub fn generate_api_key() -> Result<GenerateApiKeyResponse, EndpointError> {
    keys::generate_api_key()
        .map(|api_key| GenerateApiKeyResponse { api_key })
        .map_err(|_| EndpointError::new(500, "No randomness available to generate a key."))
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const NOW: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z

    #[test]
    fn python_float_strings() {
        assert_eq!(py_float(10.0), "10.0");
        assert_eq!(py_float(-1.0), "-1.0");
        assert_eq!(py_float(0.5), "0.5");
        assert_eq!(py_float(0.000123), "0.000123");
        assert_eq!(py_float(3e-5), "3e-05");
        assert_eq!(py_float(1.25e-7), "1.25e-07");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn time_range_default_and_last_n_days() {
        let r = resolve_time_range(30, None, None, None, NOW).expect("range");
        assert_eq!(r.start_ms, Some(NOW - 30 * DAY_MS));
        assert_eq!(r.end_ms, Some(NOW));
        assert_eq!(r.start_detail.as_deref(), Some("2024-04-01T12:00:00+00:00"));
        assert_eq!(r.end_detail.as_deref(), Some("2024-05-01T12:00:00+00:00"));
        let r = resolve_time_range(30, Some(2), None, None, NOW).expect("range");
        assert_eq!(r.start_ms, Some(NOW - 2 * DAY_MS));
    }

    #[test]
    fn time_range_errors_are_uni_api_messages() {
        let e = resolve_time_range(30, Some(1), Some("2024-01-01"), None, NOW).expect_err("both");
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                400,
                "Cannot use last_n_days with start_datetime or end_datetime."
            )
        );
        let e = resolve_time_range(30, Some(0), None, None, NOW).expect_err("zero");
        assert_eq!(e.message, "last_n_days must be positive.");
        let e = resolve_time_range(30, None, Some("2024-02-01"), Some("2024-01-01"), NOW)
            .expect_err("reversed");
        assert_eq!(e.message, "end_datetime cannot be before start_datetime.");
        let e = resolve_time_range(30, None, Some("soon"), None, NOW).expect_err("bad");
        assert_eq!(e.status, 400);
        assert!(e.message.starts_with("Invalid datetime format: soon."));
    }

    #[test]
    fn a_bare_end_date_covers_the_whole_day() {
        let r = resolve_time_range(30, None, Some("2024-04-01"), Some("2024-04-30"), NOW)
            .expect("range");
        assert_eq!(r.start_ms, Some(1_711_929_600_000));
        assert_eq!(r.end_ms, Some(1_714_435_200_000 + DAY_MS));
        assert_eq!(r.end_detail.as_deref(), Some("2024-04-30T00:00:00+00:00"));
        let r = resolve_time_range(30, None, None, Some("1714435200"), NOW).expect("range");
        assert_eq!((r.start_ms, r.end_ms), (None, Some(1_714_435_200_000)));
        assert_eq!(r.start_detail, None);
    }

    #[test]
    fn query_details_serialize_nulls_like_pydantic() {
        let d = QueryDetails {
            api_key_filter: Some("p".into()),
            ..QueryDetails::default()
        };
        assert_eq!(
            serde_json::to_string(&d).expect("json"),
            r#"{"start_datetime":null,"end_datetime":null,"api_key_filter":"p","model_filter":null,"credits":null,"total_cost":null,"balance":null}"#
        );
        assert_eq!(stats_disabled().to_string(), r#"{"stats":{}}"#);
    }

    #[test]
    fn generated_key_response() {
        let r = generate_api_key().expect("key");
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(v["api_key"].as_str().map(str::len), Some(51));
    }
}
