//! Classification of upstream outcomes for the key pool: every non-2xx answer (or broken 2xx, or
//! transport failure) becomes an [`ErrorClass`], the wait the provider states, and what the key
//! pool needs to act at the right granularity. The spec is table (a) of
//! `shared/reference/keys.md`; the class names are that table's.
//!
//! Precedence (keys.md (a)): `x-should-retry: false` is recorded first; structured fields
//! (`error.code`, `error.type`, `error.status`, Google `details[].@type` + `reason` /
//! `violations[].quotaId`, Anthropic `error.details.error_code`) decide before message text; a 429
//! is classified by *what* is exhausted, never by the status alone. Pure functions: the clock is
//! the caller's `now_unix_ms`.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use serde_json::{Map, Value};

mod vendor_codes;

use super::limits::Dim;
use super::ratelimit_headers::{
    self, DimSnapshot, LimitSnapshot, civil_from_days, days_from_civil, parse_go_duration,
    parse_rfc3339_unix_ms, weekday,
};

/// Which provider family answered (decides how bodies and headers are read).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    OpenAi,
    Azure,
    Groq,
    Anthropic,
    /// Gemini API (AI Studio keys).
    Gemini,
    /// Vertex AI.
    Vertex,
    /// DeepSeek, xAI, OpenRouter, Mistral, vLLM, ... (OpenAI wire format, own error habits).
    OpenAiCompatible,
    /// Amazon Bedrock: the exception name (`x-amzn-ErrorType`) says what happened.
    Bedrock,
    /// Cloudflare Workers AI: the envelope's `errors[].code` says what happened.
    WorkersAi,
}

/// What an upstream outcome means for the key pool (keys.md table (a), rows 1-15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Row 1: transient window exhausted (scope x model).
    RateLimited,
    /// Row 2: request bigger than the key's limit (no cooldown).
    RequestTooLarge,
    /// Row 3: per-day quota exhausted until the provider's reset.
    DailyQuota,
    /// Row 4: insufficient_quota / credit exhausted / spend limit / 402.
    Billing,
    /// Row 5: invalid/revoked/expired key (incl. Gemini 400 API_KEY_INVALID).
    AuthInvalid,
    /// Row 6: 403 / key-specific 404 for this model.
    Permission,
    /// Row 7: 500/502/504, empty or malformed 200.
    ServerError,
    /// Row 8: 529, 503, OpenAI "engine is currently overloaded", Vertex 429 without QuotaFailure.
    Overloaded,
    /// Row 9: connect/DNS/TLS failure before the request was sent.
    TransportPreSend,
    /// Row 10: read timeout / reset after sending, before the first byte.
    Timeout,
    /// Row 11: stream broke after bytes reached the client.
    StreamInterrupted,
    /// Row 12: 400/422/413 body too large/content policy.
    BadRequest,
    /// Row 13: prompt (+ max_tokens) over the model's context window.
    ContextTooLong,
    /// Row 14: the client went away.
    ClientCancelled,
    /// Row 15: any other 4xx.
    UnknownClientError,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 15] = [
        ErrorClass::RateLimited,
        ErrorClass::RequestTooLarge,
        ErrorClass::DailyQuota,
        ErrorClass::Billing,
        ErrorClass::AuthInvalid,
        ErrorClass::Permission,
        ErrorClass::ServerError,
        ErrorClass::Overloaded,
        ErrorClass::TransportPreSend,
        ErrorClass::Timeout,
        ErrorClass::StreamInterrupted,
        ErrorClass::BadRequest,
        ErrorClass::ContextTooLong,
        ErrorClass::ClientCancelled,
        ErrorClass::UnknownClientError,
    ];

    /// May another key/channel be tried for this request? (table (a), "Retry?" column; the
    /// conditions there — another *scope*, a scope whose limit fits, once, within the deadline —
    /// are the caller's.)
    pub fn retry_elsewhere(self) -> bool {
        use ErrorClass::*;
        match self {
            RateLimited | RequestTooLarge | DailyQuota | Billing | AuthInvalid | Permission
            | ServerError | Overloaded | TransportPreSend | Timeout => true,
            // Other keys of the same model return the same; a stream already reached the client;
            // nobody is waiting; unknown 4xx are not retried unless whitelisted.
            StreamInterrupted | BadRequest | ContextTooLong | ClientCancelled
            | UnknownClientError => false,
        }
    }

    /// Is it the key's (or its scope's) fault, i.e. does the key pool act on it? Server errors,
    /// overload and transport trouble go to provider x model breakers instead.
    pub fn penalises_key(self) -> bool {
        use ErrorClass::*;
        matches!(
            self,
            RateLimited | RequestTooLarge | DailyQuota | Billing | AuthInvalid | Permission
        )
    }

    /// The class name of keys.md table (a).
    pub fn as_str(self) -> &'static str {
        use ErrorClass::*;
        match self {
            RateLimited => "rate_limited_transient",
            RequestTooLarge => "request_exceeds_key_limit",
            DailyQuota => "quota_exhausted_daily",
            Billing => "quota_exhausted_billing",
            AuthInvalid => "auth_invalid",
            Permission => "permission_denied",
            ServerError => "server_error",
            Overloaded => "overloaded",
            TransportPreSend => "transport_pre_send",
            Timeout => "timeout",
            StreamInterrupted => "stream_interrupted",
            BadRequest => "bad_request_non_retryable",
            ContextTooLong => "context_too_long",
            ClientCancelled => "client_cancelled",
            UnknownClientError => "unknown_client_error",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The classification of one upstream outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub class: ErrorClass,
    /// The wait the provider states for this condition (most specific source: headers per
    /// `retry_after()`, then Gemini RetryInfo.retryDelay / ErrorInfo quotaResetDelay, then the reset
    /// header of the exhausted dimension, then "try again in Xs/Xms" / "Please retry in X" text).
    /// When `reset_at_unix_ms` is known it is never shorter than the time until then.
    pub retry_after: Option<Duration>,
    /// For DailyQuota/Billing with a known absolute reset (Gemini per-day: next midnight
    /// America/Los_Angeles; Anthropic spend limit: 00:00 UTC on the 1st of next month): unix ms.
    pub reset_at_unix_ms: Option<u64>,
    /// RequestTooLarge: the key's limit from "Limit L, Requested R".
    pub limit_tokens: Option<u64>,
    /// Gemini "limit: 0" / quota value 0 for this model: the key can never serve this model
    /// (Billing at key x model granularity).
    pub model_unavailable: bool,
    /// `x-should-retry` as sent (`Some(false)`: never retry this key/scope).
    pub should_retry: Option<bool>,
    /// RateLimited: the per-minute limit the body names (Gemini QuotaFailure quotaId, OpenAI
    /// `error.type`), and its value when stated (Gemini `quotaValue`). What a provider without
    /// rate-limit headers teaches about its limits.
    pub limit_dim: Option<Dim>,
    pub limit_value: Option<u64>,
    /// Human-readable upstream message (from the error body), for logs/the client.
    pub message: String,
}

impl Classified {
    /// A bare classification, for outcomes only the caller can see (stream cut after bytes were
    /// sent, client gone).
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Classified {
        Classified {
            class,
            retry_after: None,
            reset_at_unix_ms: None,
            limit_tokens: None,
            model_unavailable: false,
            should_retry: None,
            limit_dim: None,
            limit_value: None,
            message: message.into(),
        }
    }

    /// `class.retry_elsewhere()` with `x-should-retry` applied: `false` forbids any retry of a
    /// condition that is not tied to the key (server error, overload, ...) and, for key/scope
    /// conditions, leaves only a *different* scope (the caller never re-sends on the same key);
    /// `true` lets an otherwise unknown 4xx (e.g. Anthropic 409) be tried once more.
    pub fn may_retry_elsewhere(&self) -> bool {
        match self.should_retry {
            Some(false) => self.class.penalises_key() && self.class.retry_elsewhere(),
            Some(true) if self.class == ErrorClass::UnknownClientError => true,
            _ => self.class.retry_elsewhere(),
        }
    }
}

/// Classify a non-2xx response (or a 2xx whose body is an error / empty — the caller passes
/// `status` 200 and the body only when it already found it empty/malformed; then return
/// ServerError, unless the body is an OpenRouter-style error whose `error.code` carries the real
/// status, which is then classified as that status).
pub fn classify_response(
    flavor: Flavor,
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    now_unix_ms: u64,
) -> Classified {
    let parsed = parse_body(body);
    let should_retry = should_retry_header(headers);
    let mut status = status;
    if (200..300).contains(&status) {
        match parsed.code_num {
            // openrouter.ai/docs/errors: errors after routing come in a 200 with error.code set.
            Some(code) if (400..600).contains(&code) => status = code,
            _ => {
                let message = if parsed.message.is_empty() {
                    format!("upstream returned an empty or malformed HTTP {status} response")
                } else {
                    parsed.message
                };
                return Classified {
                    should_retry,
                    ..Classified::new(ErrorClass::ServerError, message)
                };
            }
        }
    }
    let limits = ratelimit_headers::parse_limits(headers, flavor, now_unix_ms);
    let lc = parsed.message.to_lowercase();
    let header_wait = ratelimit_headers::retry_after(headers, now_unix_ms);
    let exception = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .filter(|_| flavor == Flavor::Bedrock);
    let up = Upstream {
        flavor,
        status,
        body: &parsed,
        lc: &lc,
        limits: &limits,
        stated_wait: header_wait.or_else(|| text_wait(&lc)),
        now: now_unix_ms,
        exception,
    };
    let decision = decide(&up);

    let windowed = matches!(
        decision.class,
        ErrorClass::RateLimited | ErrorClass::DailyQuota
    );
    // "Please try again in Xs" is when *this request* fits; a reset header is when the bucket
    // is full again (often ~a minute): waiting for it wastes the scope's capacity.
    let stated = header_wait
        .or(parsed.retry_delay)
        .or(parsed.quota_reset_delay)
        .or_else(|| text_wait(&lc))
        .or_else(|| {
            if windowed {
                exhausted_dimension_reset(&parsed, &lc, &limits)
            } else {
                None
            }
        });
    let retry_after = match decision.reset_at {
        Some(at) => {
            // A daily/billing reset is the real end of the condition, whatever shorter retry
            // hint came with it (Gemini sends RetryInfo "5s" on per-day quotas).
            let until = Duration::from_millis(at.saturating_sub(now_unix_ms));
            Some(stated.map_or(until, |s| s.max(until)))
        }
        None => stated,
    };
    let message = if parsed.message.is_empty() {
        if body.is_empty() {
            format!("upstream returned HTTP {status} with an empty body")
        } else {
            format!("upstream returned HTTP {status}")
        }
    } else {
        parsed.message
    };
    let (limit_dim, limit_value) = if decision.class == ErrorClass::RateLimited {
        match parsed.minute_quota {
            Some((dim, value)) => (Some(dim), value),
            None if is(&parsed.kind, "tokens") => (Some(Dim::Tokens), None),
            None if is(&parsed.kind, "requests") => (Some(Dim::Requests), None),
            None => (None, None),
        }
    } else {
        (None, None)
    };
    Classified {
        class: decision.class,
        retry_after,
        reset_at_unix_ms: decision.reset_at,
        limit_tokens: decision.limit_tokens,
        model_unavailable: decision.model_unavailable,
        should_retry,
        limit_dim,
        limit_value,
        message,
    }
}

/// An exception event inside a Bedrock event stream (`:exception-type` `throttlingException`,
/// `modelStreamErrorException`, ...; payload `{"message":...}`): classified like the same
/// exception answered as an HTTP error. Unknown exceptions are server errors.
pub fn classify_stream_exception(
    exception_type: &str,
    payload: &[u8],
    now_unix_ms: u64,
) -> Classified {
    let mut headers = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(exception_type) {
        headers.insert("x-amzn-errortype", v);
    }
    classify_response(Flavor::Bedrock, 500, &headers, payload, now_unix_ms)
}

/// Transport failures: `sent` = whether the request was (possibly) sent before it failed;
/// `timed_out` = our timeout fired. Failures whose message shows they happened while connecting
/// (DNS, refused, TLS) are pre-send even when the caller could not rule out sending.
pub fn classify_transport(sent: bool, timed_out: bool, message: &str) -> Classified {
    const CONNECT_PHASE: [&str; 11] = [
        "error trying to connect",
        "dns error",
        "failed to lookup address",
        "connection refused",
        "no route to host",
        "network is unreachable",
        "tcp connect error",
        "invalid peer certificate",
        "certificate verify failed",
        "tls handshake",
        "handshake failure",
    ];
    let lc = message.to_lowercase();
    let class = if !sent || CONNECT_PHASE.iter().any(|p| lc.contains(p)) {
        ErrorClass::TransportPreSend
    } else {
        ErrorClass::Timeout
    };
    let message = match message.trim() {
        "" if timed_out => "upstream timed out".to_owned(),
        "" => "upstream connection failed".to_owned(),
        m => m.to_owned(),
    };
    Classified::new(class, message)
}

/// Next midnight America/Los_Angeles strictly after `now_unix_ms` (Gemini daily reset,
/// ai.google.dev/gemini-api/docs/rate-limits), DST-correct for the US rules in force since 2007:
/// PDT (UTC-7) from the second Sunday of March 02:00 PST to the first Sunday of November
/// 02:00 PDT, PST (UTC-8) otherwise.
pub fn next_pacific_midnight_unix_ms(now_unix_ms: u64) -> u64 {
    const DAY_MS: i64 = 86_400_000;
    const HOUR_MS: i64 = 3_600_000;
    let now = i64::try_from(now_unix_ms.min(MAX_UNIX_MS)).unwrap_or(0);
    let offset = if pacific_dst_at(now) { 7 } else { 8 };
    let local_day = (now - offset * HOUR_MS).div_euclid(DAY_MS);
    let next_day = local_day + 1;
    // Midnight never falls inside the 02:00 switch hour, so the day alone decides its offset:
    // midnight of the March switch day is still PST, of the November switch day still PDT.
    let (year, _, _) = civil_from_days(next_day);
    let (start, end) = (nth_sunday(year, 3, 2), nth_sunday(year, 11, 1));
    let next_offset = if next_day > start && next_day <= end {
        7
    } else {
        8
    };
    u64::try_from(next_day * DAY_MS + next_offset * HOUR_MS).unwrap_or(u64::MAX)
}

/// 9999-12-31T23:59:59Z: clocks beyond are nonsense; clamping keeps the date arithmetic in range.
const MAX_UNIX_MS: u64 = 253_402_300_799_000;

/// 00:00 UTC on the 1st of the month after `now_unix_ms` (Anthropic spend-limit reset).
pub fn first_of_next_month_utc_ms(now_unix_ms: u64) -> u64 {
    let days = i64::try_from(now_unix_ms.min(MAX_UNIX_MS) / 86_400_000).unwrap_or(0);
    let (year, month, _) = civil_from_days(days);
    let (y, m) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    u64::try_from(days_from_civil(y, m, 1) * 86_400_000).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Decision.

/// OpenAI codes for billing dead ends (help.openai.com troubleshooting 429, spend-limits guide),
/// plus vendors' spellings of the same.
const BILLING_CODES: [&str; 9] = [
    "insufficient_quota",
    "credit_balance_exhausted",
    "organization_usage_limit_exceeded",
    "organization_spend_limit_exceeded",
    "project_spend_limit_exceeded",
    "billing_hard_limit_reached",
    "billing_not_active",
    "insufficient_balance",
    "billing_error",
];

const AUTH_CODES: [&str; 4] = [
    "invalid_api_key",
    "account_deactivated",
    "authentication_error",
    "api_key_invalid",
];

/// Anthropic `overloaded_error`; Moonshot and others `engine_overloaded_error`.
const OVERLOAD_CODES: [&str; 3] = [
    "overloaded_error",
    "engine_overloaded",
    "engine_overloaded_error",
];

/// Dead-key wording without a structured field (Gemini 403s carry only PERMISSION_DENIED).
const AUTH_TEXT: [&str; 12] = [
    "api key not valid",
    "api key not found",
    "api key expired",
    "reported as leaked",
    "has been suspended",
    "project has been denied access",
    "incorrect api key",
    "invalid api key",
    "api key is invalid",
    "invalid x-api-key",
    "authentication fails",
    // Databricks 403 {"error_code":403,"message":"Invalid access token."}
    // (databricks/databricks-sdk-go#873).
    "invalid access token",
];

/// Billing wording. Deliberately not "exceeded your current quota" / "billing details": Gemini
/// uses that sentence for per-minute windows (keys.md §0.7).
const BILLING_TEXT: [&str; 15] = [
    "insufficient balance",
    "insufficient_balance",
    "insufficient account balance",
    "balance is insufficient",
    "insufficient credits",
    "insufficient funds",
    "out of credits",
    "credit balance is too low",
    "insufficient_quota",
    "reached your specified api usage limits",
    "reached your specified workspace api usage limits",
    "spend limit",
    "spending limit",
    "billing hard limit",
    "payment required",
];

struct Decision {
    class: ErrorClass,
    reset_at: Option<u64>,
    limit_tokens: Option<u64>,
    model_unavailable: bool,
}

impl Decision {
    fn of(class: ErrorClass) -> Decision {
        Decision {
            class,
            reset_at: None,
            limit_tokens: None,
            model_unavailable: false,
        }
    }

    fn until(class: ErrorClass, reset_at: Option<u64>) -> Decision {
        Decision {
            reset_at,
            ..Decision::of(class)
        }
    }
}

/// What `decide` looks at.
struct Upstream<'a> {
    flavor: Flavor,
    status: u16,
    body: &'a ErrorBody,
    /// The message, lowercased.
    lc: &'a str,
    limits: &'a LimitSnapshot,
    /// Retry headers, else the message's "try again in".
    stated_wait: Option<Duration>,
    now: u64,
    /// Bedrock: the exception name, from `x-amzn-ErrorType` or the stream's `:exception-type`.
    exception: Option<&'a str>,
}

fn decide(up: &Upstream<'_>) -> Decision {
    use ErrorClass::*;
    // 0. Vendors whose own code names the condition (Bedrock exceptions, Workers AI codes).
    if let Some(d) = vendor_codes::decide(up) {
        return d;
    }
    let (flavor, status, b, lc, now) = (up.flavor, up.status, up.body, up.lc, up.now);
    let code = |x: &str| is(&b.code, x) || is(&b.kind, x);
    let client_error = (400..500).contains(&status);

    // 1. Structured fields name the condition whatever the status.
    if is(&b.detail_code, "enforced_spend_limit_reached") {
        // Anthropic: usage pauses until 00:00 UTC on the 1st of next month.
        return Decision::until(Billing, Some(first_of_next_month_utc_ms(now)));
    }
    if status == 402
        || BILLING_CODES.iter().any(|c| code(c))
        || b.has_reason("INSUFFICIENT_G1_CREDITS_BALANCE")
    {
        return Decision::of(Billing);
    }
    if status == 401 || AUTH_CODES.iter().any(|c| code(c)) || b.has_reason("API_KEY_INVALID") {
        return Decision::of(AuthInvalid);
    }
    if status != 429 && code("context_length_exceeded") {
        return Decision::of(ContextTooLong);
    }
    if OVERLOAD_CODES.iter().any(|c| code(c)) {
        return Decision::of(Overloaded);
    }
    if code("content_filter")
        || code("content_policy_violation")
        || is(&b.inner_code, "ResponsibleAIPolicyViolation")
    {
        return Decision::of(BadRequest);
    }

    // 2. Wording, for vendors and conditions without a structured field.
    if client_error {
        if AUTH_TEXT.iter().any(|t| lc.contains(t)) {
            return Decision::of(AuthInvalid);
        }
        if BILLING_TEXT.iter().any(|t| lc.contains(t)) {
            // Anthropic 400 "You will regain access on 2026-04-01 at 00:00 UTC."
            return Decision::until(Billing, regain_access_at(lc));
        }
        if status != 429 && is_context_text(lc) {
            return Decision::of(ContextTooLong);
        }
    }

    // 3. Rate limits, classified by what is exhausted (Groq answers "Request too large" with 413
    //    and code rate_limit_exceeded, hence the code check).
    if status == 429
        || code("rate_limit_exceeded")
        || is(&b.kind, "rate_limit_error")
        || is(&b.status, "RESOURCE_EXHAUSTED")
    {
        return rate_limited(up);
    }

    // 4. The status code.
    let class = match status {
        // openrouter.ai/docs/errors: 403 = "your input was flagged" by moderation.
        403 if flavor == Flavor::OpenAiCompatible
            && (lc.contains("flagged") || lc.contains("moderation")) =>
        {
            BadRequest
        }
        403 | 404 => Permission,
        400 if lc.contains("location is not supported")
            || lc.contains("not available in your country") =>
        {
            Permission
        }
        400 | 413 | 422 => BadRequest,
        408 => Timeout,
        503 | 529 => Overloaded,
        500..=599 if lc.contains("overloaded") || lc.contains("high demand") => Overloaded,
        500..=599 => ServerError,
        400..=499 => UnknownClientError,
        // 1xx/3xx: nothing usable came back.
        _ => ServerError,
    };
    Decision::of(class)
}

/// A 429 (or equivalent): which window, or is it not a window at all?
fn rate_limited(up: &Upstream<'_>) -> Decision {
    use ErrorClass::*;
    let (flavor, b, lc, limits, now) = (up.flavor, up.body, up.lc, up.limits, up.now);
    // Capacity, not your limit: OpenAI "The engine is currently overloaded" (help center error
    // guide), "That model is currently overloaded", Gemini/Moonshot "high demand".
    if lc.contains("overloaded") || lc.contains("high demand") {
        return Decision::of(Overloaded);
    }
    // "Limit L, [Used U,] Requested R" with R > L: no wait makes this request fit this key.
    if let Some((limit, requested)) = limit_and_requested(lc)
        && requested > limit
    {
        return Decision {
            limit_tokens: Some(limit),
            ..Decision::of(RequestTooLarge)
        };
    }
    // Azure states no limit but answers a request that can never fit with "Please retry after
    // 86400 seconds" (DrShushen/climb#13: fixed by raising the deployment's TPM).
    if flavor == Flavor::Azure
        && up
            .stated_wait
            .is_some_and(|d| d >= Duration::from_secs(86_400))
    {
        return Decision::of(RequestTooLarge);
    }
    if matches!(flavor, Flavor::Gemini | Flavor::Vertex)
        || b.quota_failure
        || is(&b.status, "RESOURCE_EXHAUSTED")
    {
        return google_quota(flavor, b, lc, now);
    }
    if is_per_day_text(lc) {
        // OpenRouter free-models-per-day names its reset in metadata.headers / the headers.
        let header_reset = limits
            .requests
            .filter(|d| flavor == Flavor::OpenAiCompatible && d.remaining == Some(0))
            .and_then(|d| d.reset_after)
            .map(|d| now.saturating_add(duration_ms(d)));
        let reset_at = b.meta_reset_ms.filter(|&t| t > now).or(header_reset);
        return Decision::until(DailyQuota, reset_at);
    }
    // Groq's request headers count per day: none left and a reset hours away is the RPD.
    if flavor == Flavor::Groq
        && let Some(DimSnapshot {
            remaining: Some(0),
            reset_after: Some(reset),
            ..
        }) = limits.requests
        && reset >= Duration::from_secs(3600)
    {
        return Decision::until(DailyQuota, Some(now.saturating_add(duration_ms(reset))));
    }
    Decision::of(RateLimited)
}

/// Google RESOURCE_EXHAUSTED: decided by QuotaFailure quotaId (PerDay vs PerMinute), ErrorInfo
/// reason (Cloud Code QUOTA_EXHAUSTED / RATE_LIMIT_EXCEEDED, as gemini-cli's
/// googleQuotaErrors.ts reads them) and "limit: 0".
fn google_quota(flavor: Flavor, b: &ErrorBody, lc: &str, now: u64) -> Decision {
    use ErrorClass::*;
    if b.quota_zero || has_limit_zero(lc) {
        // The model is not in this key's tier at all: permanent for key x model.
        return Decision {
            model_unavailable: true,
            ..Decision::of(Billing)
        };
    }
    let ids: Vec<String> = b.quota_ids.iter().map(|s| s.to_lowercase()).collect();
    let per_day = ids
        .iter()
        .any(|id| id.contains("perday") || id.contains("per_day") || id.contains("daily"));
    if per_day || b.has_reason("QUOTA_EXHAUSTED") || lc.contains("quota will reset after") {
        let explicit = [b.retry_delay, b.quota_reset_delay, text_wait(lc)]
            .into_iter()
            .flatten()
            .map(|d| now.saturating_add(duration_ms(d)))
            .max();
        let reset_at = if per_day {
            // Per-day quotas reset at midnight Pacific; a stated delay ending later wins.
            let midnight = next_pacific_midnight_unix_ms(now);
            Some(explicit.map_or(midnight, |e| e.max(midnight)))
        } else {
            explicit.or(Some(next_pacific_midnight_unix_ms(now)))
        };
        return Decision::until(DailyQuota, reset_at);
    }
    if b.quota_failure
        || b.has_reason("RATE_LIMIT_EXCEEDED")
        || ids
            .iter()
            .any(|id| id.contains("perminute") || id.contains("per_minute"))
    {
        return Decision::of(RateLimited);
    }
    // No QuotaFailure. Vertex names a project quota in the message ("Quota exceeded for
    // aiplatform.googleapis.com/generate_content_requests_per_minute_..."); otherwise its 429
    // "Resource exhausted. Please try again later." is shared capacity (keys.md §5.3).
    if lc.contains("quota exceeded for") {
        if lc.contains("per_day") || lc.contains("per day") {
            return Decision::until(DailyQuota, Some(next_pacific_midnight_unix_ms(now)));
        }
        return Decision::of(RateLimited);
    }
    if flavor == Flavor::Vertex
        || lc.contains("resource has been exhausted")
        || lc.contains("resource exhausted")
    {
        return Decision::of(Overloaded);
    }
    Decision::of(RateLimited)
}

/// The reset header of the dimension that ran out: OpenAI/Groq name it in `error.type`
/// (`tokens`/`requests`); otherwise the dimension at 0 remaining (the longest reset if several),
/// else the one the message names (Anthropic "input tokens per minute").
fn exhausted_dimension_reset(b: &ErrorBody, lc: &str, limits: &LimitSnapshot) -> Option<Duration> {
    let reset = |d: Option<DimSnapshot>| d.and_then(|d| d.reset_after);
    if is(&b.kind, "tokens")
        && let Some(r) = reset(limits.tokens)
    {
        return Some(r);
    }
    if is(&b.kind, "requests")
        && let Some(r) = reset(limits.requests)
    {
        return Some(r);
    }
    let dims = [
        limits.requests,
        limits.tokens,
        limits.input_tokens,
        limits.output_tokens,
    ];
    let at_zero = dims
        .iter()
        .flatten()
        .filter(|d| d.remaining == Some(0))
        .filter_map(|d| d.reset_after)
        .max();
    if at_zero.is_some() {
        return at_zero;
    }
    if lc.contains("input tokens") {
        return reset(limits.input_tokens);
    }
    if lc.contains("output tokens") {
        return reset(limits.output_tokens);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Message text.

fn is_context_text(lc: &str) -> bool {
    lc.contains("maximum context length")
        || lc.contains("context_length_exceeded")
        || lc.contains("prompt is too long")
        || lc.contains("exceed context limit")
        || lc.contains("context window")
        || (lc.contains("input token count") && lc.contains("exceeds the maximum"))
        // Bedrock ValidationException "Input is too long for requested model."
        || lc.contains("input is too long")
        // Amazon Nova on Bedrock: "... number of input tokens exceeds maximum length ..."
        || lc.contains("input tokens exceeds maximum")
}

fn is_per_day_text(lc: &str) -> bool {
    lc.contains("per day")
        || lc.contains("per-day")
        || lc.contains("(rpd)")
        || lc.contains("(tpd)")
        || lc.contains("daily")
}

/// "limit: 0" as a whole number (Gemini "Quota exceeded for metric: ..., limit: 0, model: ...").
fn has_limit_zero(lc: &str) -> bool {
    lc.match_indices("limit: 0").any(|(i, m)| {
        !lc[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
    })
}

/// OpenAI/Groq "... Limit 30000, Used 29937, Requested 385" / "Limit 7000, Used 0, Requested
/// ~12903" (lowercased).
fn limit_and_requested(lc: &str) -> Option<(u64, u64)> {
    let (limit, end) = number_after(lc, "limit ")?;
    let (requested, _) = number_after(&lc[end..], "requested ")?;
    Some((limit, requested))
}

/// The first `key` followed (after spaces and `~`) by a number with optional thousands commas:
/// the number and the index just past it.
fn number_after(s: &str, key: &str) -> Option<(u64, usize)> {
    for (i, _) in s.match_indices(key) {
        let start = i + key.len();
        let rest = &s[start..];
        let trimmed = rest.trim_start_matches([' ', '~']);
        let skipped = rest.len() - trimmed.len();
        let len = trimmed
            .find(|c: char| !c.is_ascii_digit() && c != ',')
            .unwrap_or(trimmed.len());
        let digits: String = trimmed[..len]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse() {
            return Some((n, start + skipped + len));
        }
    }
    None
}

/// The wait a message states: "Please try again in 644ms." / "1m26.4s" (OpenAI, Groq), "Please
/// retry in 51.638674421s." (Gemini), "Try again in 2 seconds." / "Please retry after 86400
/// seconds." (Azure), "Your quota will reset after 12h34m16s." (Cloud Code).
fn text_wait(lc: &str) -> Option<Duration> {
    const PHRASES: [&str; 4] = ["try again in ", "retry in ", "retry after ", "reset after "];
    PHRASES.iter().find_map(|p| {
        lc.match_indices(p)
            .find_map(|(i, m)| wait_at(&lc[i + m.len()..]))
    })
}

fn wait_at(s: &str) -> Option<Duration> {
    const TRAILING: [char; 6] = ['.', ',', ';', ')', '"', '\''];
    let mut words = s.split_whitespace();
    let first = words.next()?.trim_end_matches(TRAILING);
    if let Some(d) = parse_go_duration(first) {
        return Some(d);
    }
    let n: f64 = first.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let unit = words.next().unwrap_or("").trim_end_matches(TRAILING);
    let scale = if unit.starts_with("ms") || unit.starts_with("millisecond") {
        0.001
    } else if unit.starts_with("sec") || unit == "s" {
        1.0
    } else if unit.starts_with("min") {
        60.0
    } else if unit.starts_with("hour") {
        3600.0
    } else {
        return None;
    };
    Duration::try_from_secs_f64(n * scale).ok()
}

/// Anthropic: "You will regain access on 2026-04-01 at 00:00 UTC." (lowercased).
fn regain_access_at(lc: &str) -> Option<u64> {
    let (_, rest) = lc.split_once("regain access on ")?;
    let mut words = rest.split_whitespace();
    let date = words.next()?;
    if words.next()? != "at" {
        return None;
    }
    let time = words.next()?;
    if !words.next()?.starts_with("utc") {
        return None;
    }
    parse_rfc3339_unix_ms(&format!("{date}T{time}:00Z"))
}

// ---------------------------------------------------------------------------------------------
// Body parsing.

/// What an error body says, across the providers' envelopes.
#[derive(Debug, Default)]
struct ErrorBody {
    message: String,
    /// `error.code` as a string (OpenAI `invalid_api_key`, Azure `"429"`, DeepSeek ...).
    code: Option<String>,
    /// `error.code` as a number (Google, OpenRouter) or a numeric string.
    code_num: Option<u16>,
    /// `error.type` (OpenAI `tokens`/`requests`/`insufficient_quota`, Anthropic `*_error`).
    kind: Option<String>,
    /// Google canonical status (`RESOURCE_EXHAUSTED`, `INVALID_ARGUMENT`, ...).
    status: Option<String>,
    /// Anthropic `error.details.error_code`.
    detail_code: Option<String>,
    /// Azure `error.innererror.code`.
    inner_code: Option<String>,
    /// Google ErrorInfo.reason and legacy `errors[].reason`.
    reasons: Vec<String>,
    quota_failure: bool,
    /// QuotaFailure quotaId / quotaMetric and ErrorInfo.metadata.quota_limit.
    quota_ids: Vec<String>,
    /// A quota whose value is 0 for this model.
    quota_zero: bool,
    /// The first per-minute QuotaFailure violation: its dimension and `quotaValue`.
    minute_quota: Option<(Dim, Option<u64>)>,
    retry_delay: Option<Duration>,
    quota_reset_delay: Option<Duration>,
    /// OpenRouter `error.metadata.headers.X-RateLimit-Reset` (unix ms).
    meta_reset_ms: Option<u64>,
    /// Cloudflare API envelope `errors[].code` (Workers AI 3036, 3040, 10000, ...).
    error_codes: Vec<i64>,
}

impl ErrorBody {
    fn has_reason(&self, reason: &str) -> bool {
        self.reasons.iter().any(|r| r.eq_ignore_ascii_case(reason))
    }

    /// Fields of a body found wrapped inside this one's message win over the wrapper's.
    fn overlay(&mut self, inner: ErrorBody) {
        self.message = inner.message;
        self.code = inner.code.or(self.code.take());
        self.code_num = inner.code_num.or(self.code_num);
        self.kind = inner.kind.or(self.kind.take());
        self.status = inner.status.or(self.status.take());
        self.detail_code = inner.detail_code.or(self.detail_code.take());
        self.inner_code = inner.inner_code.or(self.inner_code.take());
        self.reasons.extend(inner.reasons);
        self.quota_failure |= inner.quota_failure;
        self.quota_ids.extend(inner.quota_ids);
        self.quota_zero |= inner.quota_zero;
        self.minute_quota = inner.minute_quota.or(self.minute_quota);
        self.retry_delay = inner.retry_delay.or(self.retry_delay);
        self.quota_reset_delay = inner.quota_reset_delay.or(self.quota_reset_delay);
        self.meta_reset_ms = inner.meta_reset_ms.or(self.meta_reset_ms);
        self.error_codes.extend(inner.error_codes);
    }
}

fn parse_body(body: &[u8]) -> ErrorBody {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out = ErrorBody::default();
    match serde_json::from_str::<Value>(text) {
        Ok(v) => read_envelope(&v, &mut out, 0),
        // HTML from a load balancer, plain text from a vendor: keep it for the logs.
        Err(_) => out.message = clip(text),
    }
    out
}

/// `{"error":{...}}` (OpenAI, Gemini, Azure, OpenRouter), `{"type":"error","error":{...}}`
/// (Anthropic), `[{"error":{...}}]` (Gemini streaming), `{"error":"text"}`, or a flat
/// `{"message","type","code"}` object (Mistral and others).
fn read_envelope(v: &Value, out: &mut ErrorBody, depth: u8) {
    let v = match v {
        Value::Array(items) => match items.first() {
            Some(first) => first,
            None => return,
        },
        other => other,
    };
    let Value::Object(top) = v else {
        if let Value::String(s) = v {
            out.message = clip(s);
        }
        return;
    };
    match top.get("error") {
        Some(Value::Object(err)) => read_error(err, out, depth),
        Some(Value::String(s)) => out.message = clip(s),
        _ => read_error(top, out, depth),
    }
}

fn read_error(err: &Map<String, Value>, out: &mut ErrorBody, depth: u8) {
    let str_field = |k: &str| err.get(k).and_then(Value::as_str).map(str::to_owned);
    // `detail`: FastAPI-based servers (vLLM and friends) answer {"detail": "..."}.
    out.message = ["message", "detail"]
        .iter()
        .find_map(|k| err.get(*k).and_then(Value::as_str))
        .map(clip)
        .unwrap_or_default();
    match err.get("code") {
        Some(Value::String(s)) => {
            out.code_num = s.trim().parse().ok();
            out.code = Some(s.clone());
        }
        Some(Value::Number(n)) => out.code_num = n.as_u64().and_then(|n| u16::try_from(n).ok()),
        _ => {}
    }
    out.kind = str_field("type");
    out.status = str_field("status");
    out.inner_code = err
        .get("innererror")
        .and_then(|i| i.get("code"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    match err.get("details") {
        Some(Value::Object(d)) => {
            out.detail_code = d
                .get("error_code")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        Some(Value::Array(items)) => items.iter().for_each(|d| read_google_detail(d, out)),
        _ => {}
    }
    if let Some(Value::Array(errors)) = err.get("errors") {
        out.reasons.extend(
            errors
                .iter()
                .filter_map(|e| e.get("reason").and_then(Value::as_str))
                .map(str::to_owned),
        );
        // Cloudflare's v4 envelope: `{"errors":[{"code":3036,"message":...}],"success":false}`.
        out.error_codes.extend(
            errors
                .iter()
                .filter_map(|e| e.get("code").and_then(Value::as_i64)),
        );
        if out.message.is_empty() {
            let messages: Vec<&str> = errors
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .filter(|m| !m.is_empty())
                .collect();
            out.message = clip(&messages.join("; "));
        }
    }
    if let Some(Value::Object(h)) = err.get("metadata").and_then(|m| m.get("headers")) {
        out.meta_reset_ms = h
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-ratelimit-reset"))
            .and_then(|(_, v)| match v {
                Value::String(s) => s.trim().parse::<u64>().ok(),
                Value::Number(n) => n.as_u64(),
                _ => None,
            })
            .map(|t| if t < 100_000_000_000 { t * 1000 } else { t });
    }
    // Gateways (LiteLLM, gemini-cli, another llmux) pass an upstream body on as a JSON string in
    // `message`: read it once.
    if depth == 0 {
        let m = out.message.trim();
        if (m.starts_with('{') || m.starts_with('['))
            && let Ok(v) = serde_json::from_str::<Value>(m)
        {
            let mut inner = ErrorBody::default();
            read_envelope(&v, &mut inner, depth + 1);
            if !inner.message.is_empty() {
                out.overlay(inner);
            }
        }
    }
}

/// One entry of Google's `error.details` (google.rpc.* types).
fn read_google_detail(d: &Value, out: &mut ErrorBody) {
    let kind = d.get("@type").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("google.rpc.QuotaFailure") {
        out.quota_failure = true;
        for v in d
            .get("violations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for k in ["quotaId", "quotaMetric"] {
                if let Some(s) = v.get(k).and_then(Value::as_str) {
                    out.quota_ids.push(s.to_owned());
                }
            }
            out.quota_zero |= v.get("quotaValue").is_some_and(is_zero);
            if out.minute_quota.is_none()
                && let Some(id) = v.get("quotaId").and_then(Value::as_str)
            {
                let value = v.get("quotaValue").and_then(|q| match q {
                    Value::String(s) => s.trim().parse().ok(),
                    other => other.as_u64(),
                });
                out.minute_quota = per_minute_dim(id).map(|dim| (dim, value));
            }
        }
    } else if kind.ends_with("google.rpc.RetryInfo") {
        out.retry_delay = d
            .get("retryDelay")
            .and_then(Value::as_str)
            .and_then(parse_go_duration);
    } else if kind.ends_with("google.rpc.ErrorInfo") {
        if let Some(r) = d.get("reason").and_then(Value::as_str) {
            out.reasons.push(r.to_owned());
        }
        if let Some(meta) = d.get("metadata") {
            if let Some(delay) = meta.get("quotaResetDelay").and_then(Value::as_str) {
                out.quota_reset_delay = parse_go_duration(delay);
            }
            if let Some(limit) = meta.get("quota_limit").and_then(Value::as_str) {
                out.quota_ids.push(limit.to_owned());
            }
            out.quota_zero |= meta.get("quota_limit_value").is_some_and(is_zero);
        }
    }
}

/// The dimension of a per-minute Google quota id ("GenerateRequestsPerMinutePerProjectPerModel",
/// "GenerateContentInputTokensPerModelPerMinute-FreeTier").
fn per_minute_dim(quota_id: &str) -> Option<Dim> {
    let id = quota_id.to_ascii_lowercase();
    if !id.contains("perminute") {
        return None;
    }
    Some(if id.contains("inputtoken") {
        Dim::InputTokens
    } else if id.contains("outputtoken") {
        Dim::OutputTokens
    } else if id.contains("token") {
        Dim::Tokens
    } else {
        Dim::Requests
    })
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.trim() == "0",
        Value::Number(n) => n.as_u64() == Some(0),
        _ => false,
    }
}

fn is(field: &Option<String>, value: &str) -> bool {
    field
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case(value))
}

fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    let v = headers.get("x-should-retry")?.to_str().ok()?.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Upstream messages go to logs and clients: bound them.
fn clip(s: &str) -> String {
    const MAX: usize = 2000;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Is `utc_ms` inside US daylight saving time as observed in Los Angeles?
fn pacific_dst_at(utc_ms: i64) -> bool {
    const HOUR_MS: i64 = 3_600_000;
    let (year, _, _) = civil_from_days((utc_ms - 8 * HOUR_MS).div_euclid(86_400_000));
    // 02:00 PST = 10:00 UTC; 02:00 PDT = 09:00 UTC.
    let start = nth_sunday(year, 3, 2) * 86_400_000 + 10 * HOUR_MS;
    let end = nth_sunday(year, 11, 1) * 86_400_000 + 9 * HOUR_MS;
    (start..end).contains(&utc_ms)
}

/// Day number (since 1970-01-01) of the n-th Sunday of a month.
fn nth_sunday(year: i64, month: u32, n: i64) -> i64 {
    let first = days_from_civil(year, month, 1);
    let first_sunday = first + i64::from((7 - weekday(first)) % 7);
    first_sunday + 7 * (n - 1)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// 2025-09-14T18:40:00Z = 11:40 PDT.
    const NOW: u64 = 1_757_875_200_000;
    /// 2025-09-15T00:00 PDT = 07:00Z: the Gemini per-day reset after NOW.
    const PT_MIDNIGHT: u64 = 1_757_919_600_000;

    use crate::keypool::ratelimit_headers::tests::{hm, ms};

    /// One real-shaped upstream answer and what it must classify as.
    struct Case {
        name: &'static str,
        /// Where the body/header shape comes from (doc page or issue).
        source: &'static str,
        flavor: Flavor,
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: &'static str,
        class: ErrorClass,
        wait: Option<Duration>,
        reset_at: Option<u64>,
        limit_tokens: Option<u64>,
        model_unavailable: bool,
    }

    fn case(
        name: &'static str,
        source: &'static str,
        flavor: Flavor,
        status: u16,
        body: &'static str,
        class: ErrorClass,
    ) -> Case {
        Case {
            name,
            source,
            flavor,
            status,
            headers: Vec::new(),
            body,
            class,
            wait: None,
            reset_at: None,
            limit_tokens: None,
            model_unavailable: false,
        }
    }

    impl Case {
        fn headers(mut self, h: &[(&'static str, &'static str)]) -> Case {
            self.headers = h.to_vec();
            self
        }
        fn wait(mut self, d: Duration) -> Case {
            self.wait = Some(d);
            self
        }
        fn reset(mut self, at: u64) -> Case {
            self.reset_at = Some(at);
            self.wait = Some(ms(at - NOW));
            self
        }
        fn limit(mut self, l: u64) -> Case {
            self.limit_tokens = Some(l);
            self
        }
        fn unavailable(mut self) -> Case {
            self.model_unavailable = true;
            self
        }
    }

    fn check(cases: Vec<Case>) {
        let mut failures = Vec::new();
        for c in &cases {
            let got =
                classify_response(c.flavor, c.status, &hm(&c.headers), c.body.as_bytes(), NOW);
            let want = (
                c.class,
                c.wait,
                c.reset_at,
                c.limit_tokens,
                c.model_unavailable,
            );
            let have = (
                got.class,
                got.retry_after,
                got.reset_at_unix_ms,
                got.limit_tokens,
                got.model_unavailable,
            );
            if want != have {
                failures.push(format!(
                    "{} ({}):\n  want {want:?}\n  got  {have:?}\n  message {:?}",
                    c.name, c.source, got.message
                ));
            }
            assert!(!got.message.is_empty(), "{}: empty message", c.name);
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn openai() {
        use ErrorClass::*;
        use Flavor::OpenAi;
        check(vec![
            case(
                "429 TPM: the text (when this request fits) beats the tokens reset header (when the bucket is full)",
                "BuilderIO/micro-agent#86 body; headers per OpenAI rate-limits guide",
                OpenAi,
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-uOtiSEwvUnroadaOnJJquBEC on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                RateLimited,
            )
            .headers(&[
                ("openai-organization", "org-uotisewvunroadaonjjqubec"),
                ("x-ratelimit-limit-requests", "500"),
                ("x-ratelimit-remaining-requests", "499"),
                ("x-ratelimit-reset-requests", "120ms"),
                ("x-ratelimit-limit-tokens", "30000"),
                ("x-ratelimit-remaining-tokens", "63"),
                ("x-ratelimit-reset-tokens", "770ms"),
            ])
            .wait(ms(644)),
            case(
                "429 TPM without headers: the text",
                "BuilderIO/micro-agent#86",
                OpenAi,
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-uOtiSEwvUnroadaOnJJquBEC on tokens per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again in 644ms. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                RateLimited,
            )
            .wait(ms(644)),
            case(
                "429 RPM",
                "crates/mock-upstream/src/errors.rs rate_limited(), modelled on the OpenAI API",
                OpenAi,
                429,
                r#"{
    "error": {
        "message": "Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.",
        "type": "requests",
        "param": null,
        "code": "rate_limit_exceeded"
    }
}"#,
                RateLimited,
            )
            .wait(ms(20_000)),
            case(
                "429 RPD is daily",
                "MSU-AI-Agents/fall-2025-course#76",
                OpenAi,
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-3.5-turbo in organization org-pR2Z3LP86Rl3jvVG0S9Kv3IT on requests per day (RPD): Limit 10000, Used 10000, Requested 1. Please try again in 8.64s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                DailyQuota,
            )
            .wait(ms(8_640)),
            case(
                "429 RPD with a minutes-long wait",
                "feder-cr/invisible_playwright_mcp#109",
                OpenAi,
                429,
                r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-xxxxxxxxx on requests per day (RPD): Limit 200, Used 200, Requested 1. Please try again in 7m12s. Visit https://platform.openai.com/account/rate-limits to learn more. You can increase your rate limit by adding a payment method to your account at https://platform.openai.com/account/billing.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
                DailyQuota,
            )
            .wait(ms(432_000)),
            case(
                "429 request too large",
                "TheR1D/shell_gpt#653",
                OpenAi,
                429,
                r#"{"error":{"message":"Request too large for gpt-4o in organization org-78asdf87asdf9aaa8976 on tokens per min (TPM): Limit 30000, Requested 31538. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
                RequestTooLarge,
            )
            .limit(30_000),
            case(
                "429 insufficient_quota is billing",
                "ChatGPTNextWeb/NextChat#3664",
                OpenAi,
                429,
                r#"{
  "error": {
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
    "type": "insufficient_quota",
    "param": null,
    "code": "insufficient_quota"
  }
}"#,
                Billing,
            ),
            case(
                "429 insufficient_quota with code null",
                "ChatGPTNextWeb/NextChat#1792",
                OpenAi,
                429,
                r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":null}}"#,
                Billing,
            ),
            case(
                "429 project spend limit",
                "developers.openai.com/api/docs/guides/spend-limits (code); message illustrative",
                OpenAi,
                429,
                r#"{"error":{"message":"You have reached the hard spend limit configured for this project.","type":"insufficient_quota","param":null,"code":"project_spend_limit_exceeded"}}"#,
                Billing,
            ),
            case(
                "401 invalid_api_key",
                "crates/mock-upstream/src/errors.rs invalid_key(); OpenAI error-codes guide",
                OpenAi,
                401,
                r#"{"error":{"message":"Incorrect API key provided: sk-abcde********wxyz. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                AuthInvalid,
            ),
            case(
                "401 with no code is still auth",
                "crates/mock-upstream/src/errors.rs missing_key()",
                OpenAi,
                401,
                r#"{"error":{"message":"You didn't provide an API key.","type":"invalid_request_error","param":null,"code":null}}"#,
                AuthInvalid,
            ),
            case(
                "400 context_length_exceeded",
                "chathub-dev/chathub#126",
                OpenAi,
                400,
                r#"{"error":{"message":"This model's maximum context length is 4097 tokens. However, your messages resulted in 4294 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
                ContextTooLong,
            ),
            case(
                "503 engine overloaded",
                "help.openai.com error guide; crates/mock-upstream/src/errors.rs overloaded()",
                OpenAi,
                503,
                r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#,
                Overloaded,
            ),
            case(
                "429 engine overloaded is capacity, not a limit",
                "help.openai.com error guide (429 'The engine is currently overloaded')",
                OpenAi,
                429,
                r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","param":null,"code":null}}"#,
                Overloaded,
            ),
            case(
                "model overloaded with other requests",
                "agi-merge/waggle-dance#53",
                OpenAi,
                429,
                r#"{"error":{"message":"That model is currently overloaded with other requests. You can retry your request, or contact us through our help center at help.openai.com if the error persists. (Please include the request ID ba26ecc19b891d51c802fd1bf379d34a in your message.)","type":"server_error","param":null,"code":null}}"#,
                Overloaded,
            ),
            case(
                "404 model_not_found",
                "crates/mock-upstream/src/errors.rs model_not_found()",
                OpenAi,
                404,
                r#"{"error":{"message":"The model `gpt-5-turbo` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
                Permission,
            ),
            case(
                "403 unsupported region",
                "OpenAI error-codes guide (403 Country, region, or territory not supported)",
                OpenAi,
                403,
                r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}"#,
                Permission,
            ),
            case(
                "500 server_error",
                "crates/mock-upstream/src/errors.rs server_error()",
                OpenAi,
                500,
                r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#,
                ServerError,
            ),
        ]);
    }

    #[test]
    fn anthropic() {
        use ErrorClass::*;
        use Flavor::Anthropic;
        const ITPM_429: &str = r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (a22cf6e6-a940-4fff-8c4c-1580816ac7be) of 1,000,000 input tokens per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
        check(vec![
            case(
                "429 with retry-after",
                "stackblitz/bolt.new#8589 message; headers per docs.anthropic.com/en/api/rate-limits",
                Anthropic,
                429,
                ITPM_429,
                RateLimited,
            )
            .headers(&[
                ("retry-after", "23"),
                ("anthropic-organization-id", "a22cf6e6-a940-4fff-8c4c-1580816ac7be"),
                ("anthropic-ratelimit-requests-limit", "4000"),
                ("anthropic-ratelimit-requests-remaining", "3999"),
                ("anthropic-ratelimit-requests-reset", "2025-09-14T18:40:01Z"),
                ("anthropic-ratelimit-input-tokens-limit", "1000000"),
                ("anthropic-ratelimit-input-tokens-remaining", "0"),
                ("anthropic-ratelimit-input-tokens-reset", "2025-09-14T18:40:37Z"),
            ])
            .wait(ms(23_000)),
            case(
                "429 without retry-after: reset of the exhausted dimension",
                "anthropics/anthropic-sdk-typescript#357 (synthesise from *-reset); bolt.new#8589",
                Anthropic,
                429,
                ITPM_429,
                RateLimited,
            )
            .headers(&[
                ("anthropic-ratelimit-requests-remaining", "3999"),
                ("anthropic-ratelimit-requests-reset", "2025-09-14T18:40:01Z"),
                ("anthropic-ratelimit-input-tokens-remaining", "0"),
                ("anthropic-ratelimit-input-tokens-reset", "2025-09-14T18:40:37Z"),
            ])
            .wait(ms(37_000)),
            case(
                "429 naming the dimension, none at zero",
                "stackblitz/bolt.new#8589 (input tokens per minute)",
                Anthropic,
                429,
                ITPM_429,
                RateLimited,
            )
            .headers(&[
                ("anthropic-ratelimit-output-tokens-reset", "2025-09-14T18:40:05Z"),
                ("anthropic-ratelimit-input-tokens-reset", "2025-09-14T18:40:09Z"),
            ])
            .wait(ms(9_000)),
            case(
                "529 overloaded_error",
                "docs.llmgateway.io/troubleshooting/anthropic-529-overloaded; Anthropic errors doc",
                Anthropic,
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
                Overloaded,
            ),
            case(
                "402 billing_error",
                "Anthropic errors doc (402 billing_error)",
                Anthropic,
                402,
                r#"{"type":"error","error":{"type":"billing_error","message":"There is an issue with your billing or payment information."}}"#,
                Billing,
            ),
            case(
                "429 enforced_spend_limit_reached: 1st of next month",
                "learn.microsoft.com dev-proxy anthropic-529-overloaded-error (error.details.error_code)",
                Anthropic,
                429,
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"Your organization has reached its monthly usage limit.","details":{"error_code":"enforced_spend_limit_reached"}},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
                Billing,
            )
            .reset(1_759_276_800_000),
            case(
                "400 credit balance too low",
                "anthropics/claude-code#4684, anthropics/claude-quickstarts#229",
                Anthropic,
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."},"request_id":"req_011CbrFTcXhtiMzr3s6EocF7"}"#,
                Billing,
            ),
            case(
                "400 specified usage limit, with its regain date",
                "anthropics/claude-code#38035",
                Anthropic,
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2026-04-01 at 00:00 UTC."},"request_id":"req_011CZLrUfBVkVHn5T6EqQaf7"}"#,
                Billing,
            )
            .reset(1_775_001_600_000),
            case(
                "401 authentication_error",
                "Anthropic errors doc (401 authentication_error)",
                Anthropic,
                401,
                r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
                AuthInvalid,
            ),
            case(
                "403 permission_error",
                "Anthropic errors doc (403 permission_error)",
                Anthropic,
                403,
                r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
                Permission,
            ),
            case(
                "404 not_found_error model",
                "Anthropic errors doc (404 not_found_error)",
                Anthropic,
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-3-opus-20990101"}}"#,
                Permission,
            ),
            case(
                "400 prompt is too long",
                "boldsoftware/exe.dev#62",
                Anthropic,
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 200251 tokens > 200000 maximum"},"request_id":"req_011CWdepJvA2D819tdYYq4h7"}"#,
                ContextTooLong,
            ),
            case(
                "400 input length and max_tokens exceed context limit",
                "docker/docker-agent#569 (keys.md §5.2)",
                Anthropic,
                400,
                r#"{"type":"error","error":{"type":"invalid_request_error","message":"input length and `max_tokens` exceed context limit: 178959 + 64000 > 200000, decrease input length or `max_tokens` and try again"}}"#,
                ContextTooLong,
            ),
            case(
                "413 request_too_large is a bad request",
                "Anthropic errors doc (413 request_too_large)",
                Anthropic,
                413,
                r#"{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}"#,
                BadRequest,
            ),
            case(
                "500 api_error",
                "Anthropic errors doc (500 api_error)",
                Anthropic,
                500,
                r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
                ServerError,
            ),
            case(
                "409 conflict_error",
                "keys.md table (a) row 15",
                Anthropic,
                409,
                r#"{"type":"error","error":{"type":"conflict_error","message":"Conflict"}}"#,
                UnknownClientError,
            ),
        ]);
    }

    #[test]
    fn gemini() {
        use ErrorClass::*;
        use Flavor::Gemini;
        check(vec![
            case(
                "429 per-minute quota with RetryInfo",
                "keys.md §5.3 (retryDelay 45.837906927s); violation shape google-gemini/gemini-cli#8437",
                Gemini,
                429,
                r#"{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
            "quotaValue": "15"
          }
        ]
      },
      {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]
      },
      {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "45.837906927s"
      }
    ]
  }
}"#,
                RateLimited,
            )
            .wait(Duration::new(45, 837_906_927)),
            case(
                "429 per-day quota: next Pacific midnight, not RetryInfo 5s",
                "voideditor/void#557",
                Gemini,
                429,
                r#"{
 "error": {
 "code": 429,
 "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
 "status": "RESOURCE_EXHAUSTED",
 "details": [
 {
 "@type": "type.googleapis.com/google.rpc.QuotaFailure",
 "violations": [
 {
 "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
 "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
 "quotaDimensions": {
 "model": "gemini-2.0-pro-exp",
 "location": "global"
 },
 "quotaValue": "25"
 }
 ]
 },
 {
 "@type": "type.googleapis.com/google.rpc.Help",
 "links": [
 {
 "description": "Learn more about Gemini API quotas",
 "url": "https://ai.google.dev/gemini-api/docs/rate-limits"
 }
 ]
 },
 {
 "@type": "type.googleapis.com/google.rpc.RetryInfo",
 "retryDelay": "5s"
 }
 ]
 }
}"#,
                DailyQuota,
            )
            .reset(PT_MIDNIGHT),
            case(
                "429 listing per-minute and per-day violations: the day wins",
                "google-gemini/gemini-cli#8437",
                Gemini,
                429,
                r#"{"error": {"code": 429, "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count", "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier", "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-preview-image"}}, {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash-preview-image"}}, {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier", "quotaDimensions": {"model": "gemini-2.5-flash-preview-image", "location": "global"}}]}, {"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]}]}}"#,
                DailyQuota,
            )
            .reset(PT_MIDNIGHT),
            case(
                "429 paid-tier per-day quota",
                "langgenius/dify#19838",
                Gemini,
                429,
                r#"{"error": {"code": 429, "message": "You exceeded your current quota. Go to https://aistudio.google.com/apikey to upgrade your quota tier, or submit a quota increase request in https://ai.google.dev/gemini-api/docs/rate-limits#request-rate-limit-increase", "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model_per_day", "quotaId": "GenerateRequestsPerDayPerProjectPerModel"}]}]}}"#,
                DailyQuota,
            )
            .reset(PT_MIDNIGHT),
            case(
                "429 limit: 0 means this key can never use the model",
                "continuedev/continue#10468",
                Gemini,
                429,
                r#"{
    "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. \n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, limit: 0, model: gemini-2.5-pro\nPlease retry in 51.638674421s.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.Help",
        "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]
      }
    ]
  }
}"#,
                Billing,
            )
            .unavailable()
            .wait(Duration::new(51, 638_674_421)),
            case(
                "429 quotaValue 0 in QuotaFailure",
                "keys.md §5.3 ('limit: 0' is permanent for key x model); violation shape voideditor/void#557",
                Gemini,
                429,
                r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaDimensions":{"model":"gemini-2.5-pro","location":"global"},"quotaValue":"0"}]}]}}"#,
                Billing,
            )
            .unavailable(),
            case(
                "400 API_KEY_INVALID",
                "continuedev/continue#8516",
                Gemini,
                400,
                r#"{
  "error": {
    "code": 400,
    "message": "API key not valid. Please pass a valid API key.",
    "status": "INVALID_ARGUMENT",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {
          "service": "generativelanguage.googleapis.com"
        }
      },
      {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": "API key not valid. Please pass a valid API key."
      }
    ]
  }
}"#,
                AuthInvalid,
            ),
            case(
                "400 API key expired, wrapped in a client library's envelope",
                "continuedev/continue#11336",
                Gemini,
                400,
                r#"{"error":{"message":"{\n  \"error\": {\n    \"code\": 400,\n    \"message\": \"API key expired. Please renew the API key.\",\n    \"status\": \"INVALID_ARGUMENT\",\n    \"details\": [\n      {\n        \"@type\": \"type.googleapis.com/google.rpc.ErrorInfo\",\n        \"reason\": \"API_KEY_INVALID\",\n        \"domain\": \"googleapis.com\",\n        \"metadata\": {\n          \"service\": \"generativelanguage.googleapis.com\"\n        }\n      },\n      {\n        \"@type\": \"type.googleapis.com/google.rpc.LocalizedMessage\",\n        \"locale\": \"en-US\",\n        \"message\": \"API key expired. Please renew the API key.\"\n      }\n    ]\n  }\n}\n","code":400,"status":"Bad Request"}}"#,
                AuthInvalid,
            ),
            case(
                "400 API key not found, no details",
                "google-gemini/gemini-cli#25198",
                Gemini,
                400,
                r#"{"error":{"code":400,"message":"API Key not found. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}"#,
                AuthInvalid,
            ),
            case(
                "403 leaked key",
                "continuedev/continue#11541",
                Gemini,
                403,
                r#"{
  "error": {
    "code": 403,
    "message": "Your API key was reported as leaked. Please use another API key.",
    "status": "PERMISSION_DENIED"
  }
}"#,
                AuthInvalid,
            ),
            case(
                "403 suspended consumer",
                "coaidev/coai#67",
                Gemini,
                403,
                r#"{"error":{"code":403,"message":"Permission denied: Consumer 'api_key:AIzaSyXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX' has been suspended.","status":"PERMISSION_DENIED"}}"#,
                AuthInvalid,
            ),
            case(
                "403 project denied access",
                "poenl/gemini-api#8",
                Gemini,
                403,
                r#"{"error": {"code": 403, "message": "Your project has been denied access. Please contact support.", "status": "PERMISSION_DENIED"}}"#,
                AuthInvalid,
            ),
            case(
                "403 plain permission",
                "google-gemini/gemini-cli#25607",
                Gemini,
                403,
                r#"{"error":{"code":403,"message":"The caller does not have permission","errors":[{"message":"The caller does not have permission","domain":"global","reason":"forbidden"}],"status":"PERMISSION_DENIED"}}"#,
                Permission,
            ),
            case(
                "400 input token count exceeds the maximum",
                "google-gemini/gemini-cli#4231",
                Gemini,
                400,
                r#"{
  "error": {
    "code": 400,
    "message": "The input token count (3475108) exceeds the maximum number of tokens allowed (1048576).",
    "status": "INVALID_ARGUMENT"
  }
}"#,
                ContextTooLong,
            ),
            case(
                "503 model overloaded",
                "google-gemini/gemini-cli#5191",
                Gemini,
                503,
                r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
                Overloaded,
            ),
            case(
                "503 high demand",
                "continuedev/continue#10639",
                Gemini,
                503,
                r#"{"error":{"code":503,"message":"This model is currently experiencing high demand. Spikes in demand are usually temporary. Please try again later.","status":"UNAVAILABLE"}}"#,
                Overloaded,
            ),
            case(
                "429 without details: shared capacity",
                "googleapis/python-genai#2065",
                Gemini,
                429,
                r#"{"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).", "status": "RESOURCE_EXHAUSTED"}}"#,
                Overloaded,
            ),
            case(
                "429 quota message with only a Help detail",
                "gke-labs/gemini-for-kubernetes-development#1215",
                Gemini,
                429,
                r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. ","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.Help","links":[{"description":"Learn more about Gemini API quotas","url":"https://ai.google.dev/gemini-api/docs/rate-limits"}]}]}}"#,
                RateLimited,
            ),
            case(
                "streaming array envelope",
                "google-gemini/gemini-cli#14811 ([{ \"error\": ... }] as the REST stream answers)",
                Gemini,
                429,
                r#"[{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateContentInputTokensPerModelPerMinute-FreeTier"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"38s"}]}}]"#,
                RateLimited,
            )
            .wait(ms(38_000)),
            case(
                "500 INTERNAL",
                "ai.google.dev/gemini-api/docs/troubleshooting (500 INTERNAL)",
                Gemini,
                500,
                r#"{"error":{"code":500,"message":"An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting","status":"INTERNAL"}}"#,
                ServerError,
            ),
            case(
                "404 model not found",
                "ai.google.dev/gemini-api/docs/troubleshooting (404 NOT_FOUND)",
                Gemini,
                404,
                r#"{"error":{"code":404,"message":"models/gemini-1.0-pro is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}"#,
                Permission,
            ),
            case(
                "400 user location not supported",
                "keys.md table (a) row 6; ai.google.dev troubleshooting (FAILED_PRECONDITION)",
                Gemini,
                400,
                r#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#,
                Permission,
            ),
            case(
                "Cloud Code QUOTA_EXHAUSTED with quotaResetDelay",
                "keys.md §5.3; gemini-cli packages/core/src/utils/googleQuotaErrors.ts",
                Gemini,
                429,
                r#"{"error":{"code":429,"message":"You have exhausted your capacity on this model. Your quota will reset after 12h34m16s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"QUOTA_EXHAUSTED","domain":"cloudcode-pa.googleapis.com","metadata":{"uiMessage":"true","model":"gemini-2.5-pro","quotaResetDelay":"12h34m16s","quotaResetTimeStamp":"2025-09-15T07:14:16Z"}},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"45256s"}]}}"#,
                DailyQuota,
            )
            .reset(1_757_920_456_000),
            case(
                "Cloud Code RATE_LIMIT_EXCEEDED with a sub-second delay",
                "keys.md §5.3 (quotaResetDelay 373.801628ms); googleQuotaErrors.ts",
                Gemini,
                429,
                r#"{"error":{"code":429,"message":"You have exhausted your capacity on this model.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"RATE_LIMIT_EXCEEDED","domain":"cloudcode-pa.googleapis.com","metadata":{"quotaResetDelay":"373.801628ms"}}]}}"#,
                RateLimited,
            )
            .wait(Duration::new(0, 373_801_628)),
        ]);
    }

    #[test]
    fn vertex() {
        use ErrorClass::*;
        use Flavor::Vertex;
        check(vec![
            case(
                "429 without QuotaFailure is shared capacity",
                "google-gemini/gemini-cli#14831",
                Vertex,
                429,
                r#"{
      "error": {
        "code": 429,
        "message": "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
        "errors": [
          {
            "message": "Resource exhausted. Please try again later. Please refer to https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details.",
            "domain": "global",
            "reason": "rateLimitExceeded"
          }
        ],
        "status": "RESOURCE_EXHAUSTED"
      }
    }"#,
                Overloaded,
            ),
            case(
                "429 bare RESOURCE_EXHAUSTED",
                "google-gemini/gemini-cli#14811",
                Vertex,
                429,
                r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
                Overloaded,
            ),
            case(
                "429 naming a per-minute project quota",
                "felixbinder/introspection_self_prediction#66",
                Vertex,
                429,
                r#"{"error":{"code":429,"message":"Quota exceeded for aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model with base model: gemini-pro. Please submit a quota increase request. https://cloud.google.com/vertex-ai/docs/generative-ai/quotas-genai.","status":"RESOURCE_EXHAUSTED"}}"#,
                RateLimited,
            ),
        ]);
    }

    #[test]
    fn azure() {
        use ErrorClass::*;
        use Flavor::Azure;
        const BODY_429: &str = r#"{"error":{"code":"429","message": "Rate limit is exceeded. Try again in 2 seconds."}}"#;
        check(vec![
            case(
                "429 with retry-after-ms",
                "microsoft/copilot-camp#551 body and headers; retry-after-ms per keys.md §5.4",
                Azure,
                429,
                BODY_429,
                RateLimited,
            )
            .headers(&[
                ("date", "Thu, 03 Apr 2025 14:12:23 GMT"),
                ("retry-after", "2"),
                ("retry-after-ms", "1500"),
                ("x-ms-region", "North Central US"),
                ("x-ratelimit-limit-requests", "8"),
                ("x-ratelimit-limit-tokens", "8000"),
                ("x-ratelimit-remaining-requests", "7"),
                ("x-ratelimit-remaining-tokens", "1014"),
            ])
            .wait(ms(1500)),
            case(
                "429 with x-ms-retry-after-ms",
                "microsoft/copilot-camp#551; x-ms-retry-after-ms per keys.md §5.6",
                Azure,
                429,
                BODY_429,
                RateLimited,
            )
            .headers(&[("x-ms-retry-after-ms", "2000")])
            .wait(ms(2000)),
            case(
                "429 without headers: the text",
                "microsoft/copilot-camp#551",
                Azure,
                429,
                BODY_429,
                RateLimited,
            )
            .wait(ms(2000)),
            case(
                "429 'Please retry after N seconds'",
                "microsoft/action-python#12",
                Azure,
                429,
                r#"{"error":{"code":"429","message":"Requests to the Creates a completion for the chat message Operation under Azure OpenAI API version 2023-03-15-preview have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 3 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#,
                RateLimited,
            )
            .wait(ms(3000)),
            case(
                "429 retry after a day: the request can never fit the deployment",
                "alex-wolf-ps/dbchatprov2#2, DrShushen/climb#13 (fixed by raising TPM); crates/mock-upstream flavor.rs",
                Azure,
                429,
                r#"{"error":{"code":"429","message":"Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-05-01-preview have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 86400 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit."}}"#,
                RequestTooLarge,
            )
            .headers(&[("retry-after", "86400")])
            .wait(ms(86_400_000)),
            case(
                "400 content_filter",
                "vibrantlabsai/ragas#649",
                Azure,
                400,
                r#"{"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry. To learn more about our content filtering policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766", "type": null, "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"hate": {"filtered": false, "severity": "safe"}, "self_harm": {"filtered": false, "severity": "safe"}, "sexual": {"filtered": false, "severity": "safe"}, "violence": {"filtered": true, "severity": "medium"}}}}}"#,
                BadRequest,
            ),
            case(
                "404 DeploymentNotFound",
                "learn.microsoft.com Azure OpenAI troubleshooting (DeploymentNotFound)",
                Azure,
                404,
                r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
                Permission,
            ),
            case(
                "401 invalid subscription key",
                "learn.microsoft.com Azure OpenAI troubleshooting (401 Access denied)",
                Azure,
                401,
                r#"{"error":{"code":"401","message":"Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#,
                AuthInvalid,
            ),
        ]);
    }

    #[test]
    fn groq() {
        use ErrorClass::*;
        use Flavor::Groq;
        check(vec![
            case(
                "429 TPM with retry-after and reset headers",
                "ago19800/HomeMind#29 message; headers per console.groq.com/docs/rate-limits",
                Groq,
                429,
                r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01kes94v04f9ramd2n1vj4gjnc` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Used 4437, Requested 9854. Please try again in 11.455s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing","type":"tokens","code":"rate_limit_exceeded"}}"#,
                RateLimited,
            )
            .headers(&[
                ("retry-after", "12"),
                ("x-ratelimit-limit-requests", "1000"),
                ("x-ratelimit-limit-tokens", "12000"),
                ("x-ratelimit-remaining-requests", "870"),
                ("x-ratelimit-remaining-tokens", "7563"),
                ("x-ratelimit-reset-requests", "3h7m12s"),
                ("x-ratelimit-reset-tokens", "22.185s"),
            ])
            .wait(ms(12_000)),
            case(
                "429 TPM: the text wait beats the tokens reset header",
                "ago19800/HomeMind#29; console.groq.com/docs/rate-limits",
                Groq,
                429,
                r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01kes94v04f9ramd2n1vj4gjnc` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Used 2542, Requested 9855. Please try again in 1.984999999s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing","type":"tokens","code":"rate_limit_exceeded"}}"#,
                RateLimited,
            )
            .headers(&[
                ("x-ratelimit-remaining-requests", "870"),
                ("x-ratelimit-reset-requests", "3h7m12s"),
                ("x-ratelimit-remaining-tokens", "9458"),
                ("x-ratelimit-reset-tokens", "12.71s"),
            ])
            .wait(Duration::from_nanos(1_984_999_999)),
            case(
                "429 TPD is daily",
                "continuedev/continue#10920",
                Groq,
                429,
                r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01kjh7p9n8f1qs6nz2bz77vy6b` service tier `on_demand` on tokens per day (TPD): Limit 100000, Used 97050, Requested 3619. Please try again in 9m38.016s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing","type":"tokens","code":"rate_limit_exceeded"}}"#,
                DailyQuota,
            )
            .wait(ms(578_016)),
            case(
                "413 request too large",
                "HunorLaczko/ha-groq-cloud-api#27",
                Groq,
                413,
                r#"{"error":{"message":"Request too large for model `llama-3.1-8b-instant` in organization `org_xxxxxxx` service tier `on_demand` on tokens per minute (TPM): Limit 6000, Requested 12328, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing","type":"tokens","code":"rate_limit_exceeded"}}"#,
                RequestTooLarge,
            )
            .limit(6000),
            case(
                "429 'Used 0, Requested ~R' over the limit",
                "danielmiessler/Fabric#364",
                Groq,
                429,
                r#"{"error":{"message":"Rate limit reached for model `llama3-70b-8192` in organization `org_01hrsvc1b8ey0anvbgha0xckf2` on tokens per minute (TPM): Limit 7000, Used 0, Requested ~12903. Please try again in 50.597142857s. Visit https://console.groq.com/docs/rate-limits for more information.","type":"tokens","code":"rate_limit_exceeded"}}"#,
                RequestTooLarge,
            )
            .limit(7000)
            .wait(Duration::new(50, 597_142_857)),
            case(
                "429 with no requests left and a reset hours away: RPD",
                "console.groq.com/docs/rate-limits headers (requests = RPD); keys.md table (a) row 3; message illustrative",
                Groq,
                429,
                r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01kjh7p9n8f1qs6nz2bz77vy6b` service tier `on_demand`. Please try again in 1m26.4s.","type":"requests","code":"rate_limit_exceeded"}}"#,
                DailyQuota,
            )
            .headers(&[
                ("retry-after", "87"),
                ("x-ratelimit-limit-requests", "1000"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "23h59m17.28s"),
                ("x-ratelimit-remaining-tokens", "12000"),
                ("x-ratelimit-reset-tokens", "0s"),
            ])
            .reset(1_757_961_557_280),
        ]);
    }

    #[test]
    fn openai_compatible_vendors() {
        use ErrorClass::*;
        use Flavor::OpenAiCompatible;
        check(vec![
            case(
                "DeepSeek 402 Insufficient Balance",
                "Aider-AI/aider#4851; DeepSeek error-codes doc (402 Insufficient Balance)",
                OpenAiCompatible,
                402,
                r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
                Billing,
            ),
            case(
                "DeepSeek 400 insufficient balance without the 402",
                "Aider-AI/aider#4851 (litellm surfaced it as BadRequestError)",
                OpenAiCompatible,
                400,
                r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#,
                Billing,
            ),
            case(
                "DeepSeek context overflow with a generic code",
                "evalstate/fast-agent#621",
                OpenAiCompatible,
                400,
                r#"{"error":{"message":"This model's maximum context length is 131072 tokens. However, you requested 131134 tokens (122942 in the messages, 8192 in the completion). Please reduce the length of the messages or completion.","type":"invalid_request_error","param":null,"code":"invalid_request_error"}}"#,
                ContextTooLong,
            ),
            case(
                "Moonshot engine_overloaded_error",
                "MoonshotAI/MoonshotAI-Cookbook#16",
                OpenAiCompatible,
                429,
                r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"engine_overloaded_error"}}"#,
                Overloaded,
            ),
            case(
                "OpenRouter free-models-per-day with the reset in metadata",
                "Gitlawb/openclaude#936 (X-RateLimit-Reset value illustrative: next 00:00 UTC)",
                OpenAiCompatible,
                429,
                r#"{
  "error": {
    "message": "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day",
    "code": 429,
    "metadata": {
      "headers": {
        "X-RateLimit-Limit": "50",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1757894400000"
      },
      "provider_name": null
    }
  },
  "user_id": "user_2abc"
}"#,
                DailyQuota,
            )
            .reset(1_757_894_400_000),
            case(
                "OpenRouter per-day limit typed as rate_limit_error",
                "Gitlawb/openclaude#1549",
                OpenAiCompatible,
                429,
                r#"{"error":{"message":"Rate limit exceeded: free-models-per-day-high-balance.","type":"rate_limit_error","code":"429"}}"#,
                DailyQuota,
            ),
            case(
                "OpenRouter 402",
                "openrouter.ai/docs/api/reference/errors-and-debugging (402)",
                OpenAiCompatible,
                402,
                r#"{"error":{"code":402,"message":"This request requires more credits, or fewer max_tokens. You requested up to 8192 tokens, but can only afford 1543."}}"#,
                Billing,
            ),
            case(
                "OpenRouter 403 moderation flag",
                "openrouter.ai/docs/api/reference/errors-and-debugging (moderation errors)",
                OpenAiCompatible,
                403,
                r#"{"error":{"code":403,"message":"meta-llama/llama-guard requires moderation on OpenRouter. Your input was flagged for \"violence\"","metadata":{"reasons":["violence"],"flagged_input":"...","provider_name":"OpenAI","model_slug":"openai/gpt-4o"}}}"#,
                BadRequest,
            ),
            case(
                "OpenRouter error inside a 200: upstream down",
                "openrouter.ai/docs/api/reference/errors-and-debugging (errors after routing come with 200)",
                OpenAiCompatible,
                200,
                r#"{"error":{"code":502,"message":"Provider returned error","metadata":{"provider_name":"Together","raw":"upstream connect error"}}}"#,
                ServerError,
            ),
            case(
                "OpenRouter error inside a 200: rate limited upstream",
                "openrouter.ai/docs/api/reference/errors-and-debugging",
                OpenAiCompatible,
                200,
                r#"{"error":{"code":429,"message":"Provider returned error","metadata":{"provider_name":"Google AI Studio","raw":"gemini-2.0-flash-exp:free is temporarily rate-limited upstream. Please retry shortly."}}}"#,
                RateLimited,
            ),
            case(
                "Mistral-style flat error object",
                "tempfileserver.knowledge.yunwoai.com/mistral_ocr_resp_after_restart.json",
                OpenAiCompatible,
                429,
                r#"{"object":"error","message":"Rate limit exceeded","type":"rate_limited","param":null,"code":"1300","raw_status_code":429}"#,
                RateLimited,
            ),
            case(
                "vLLM/FastAPI detail body",
                "FastAPI HTTPException default shape {\"detail\": ...}",
                OpenAiCompatible,
                404,
                r#"{"detail":"Not Found"}"#,
                Permission,
            ),
            case(
                "plain-text 401",
                "openrouter.ai/docs errors (401 invalid credentials); body illustrative",
                OpenAiCompatible,
                401,
                "Unauthorized",
                AuthInvalid,
            ),
        ]);
    }

    /// The exception name decides (`x-amzn-ErrorType`), not the status: Bedrock answers a model
    /// that is still loading with 429 and an account quota with 400.
    #[test]
    fn bedrock() {
        use ErrorClass::*;
        use Flavor::Bedrock;
        const THROTTLING: &str =
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/";
        check(vec![
            case(
                "ThrottlingException: too many tokens (per minute)",
                "aws-samples/amazon-bedrock-client-for-mac#99 (status, header and body)",
                Bedrock,
                429,
                r#"{"message":"Too many tokens, please wait before trying again."}"#,
                RateLimited,
            )
            .headers(&[("x-amzn-errortype", THROTTLING)]),
            case(
                "ThrottlingException: too many requests",
                "Bedrock API reference, ThrottlingException (429); crates/mock-upstream/src/bedrock.rs throttled()",
                Bedrock,
                429,
                r#"{"message":"Too many requests, please wait before trying again."}"#,
                RateLimited,
            )
            .headers(&[("x-amzn-errortype", THROTTLING)]),
            case(
                "ThrottlingException: tokens per day is the daily quota",
                "minorun365/agent-book#29, Ivy-Interactive/Ivy-Tendril#1756 (429 Too many tokens per day)",
                Bedrock,
                429,
                r#"{"message":"Too many tokens per day, please wait before trying again."}"#,
                DailyQuota,
            )
            .headers(&[("x-amzn-errortype", THROTTLING)]),
            case(
                "ServiceQuotaExceededException comes with 400 but is a quota to wait for",
                "Bedrock API reference, ServiceQuotaExceededException (400, \"You can resubmit your request later\")",
                Bedrock,
                400,
                r#"{"message":"Your request exceeds the service quota for your account. You can view your quotas at Viewing service quotas. You can resubmit your request later."}"#,
                RateLimited,
            )
            .headers(&[("x-amzn-errortype", "ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ModelNotReadyException comes with 429 but is capacity, not the key",
                "Bedrock API reference, ModelNotReadyException (429, the SDK retries it)",
                Bedrock,
                429,
                r#"{"message":"The model specified in the request is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times."}"#,
                Overloaded,
            )
            .headers(&[("x-amzn-errortype", "ModelNotReadyException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ServiceUnavailableException",
                "Bedrock API reference (503); crates/mock-upstream/src/bedrock.rs unavailable()",
                Bedrock,
                503,
                r#"{"message":"Bedrock is unable to process your request."}"#,
                Overloaded,
            )
            .headers(&[("x-amzn-errortype", "ServiceUnavailableException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ModelTimeoutException",
                "Bedrock API reference, ModelTimeoutException (408)",
                Bedrock,
                408,
                r#"{"message":"The request took too long to process. Processing time exceeded the model timeout length."}"#,
                Timeout,
            )
            .headers(&[("x-amzn-errortype", "ModelTimeoutException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ModelErrorException comes with 424 but is the provider's failure",
                "Bedrock API reference, ModelErrorException (424, originalStatusCode and resourceName)",
                Bedrock,
                424,
                r#"{"message":"The request failed due to an error while processing the model.","originalStatusCode":500,"resourceName":"anthropic.claude-3-7-sonnet-20250219-v1:0"}"#,
                ServerError,
            )
            .headers(&[("x-amzn-errortype", "ModelErrorException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "AccessDeniedException: no access to this model",
                "Bedrock API reference, AccessDeniedException (403); crates/mock-upstream/src/bedrock.rs access_denied()",
                Bedrock,
                403,
                r#"{"message":"You don't have access to the model with the specified model ID."}"#,
                Permission,
            )
            .headers(&[("x-amzn-errortype", "AccessDeniedException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ResourceNotFoundException",
                "Bedrock API reference, ResourceNotFoundException (404)",
                Bedrock,
                404,
                r#"{"message":"The specified resource ARN was not found. Check the ARN and try your request again."}"#,
                Permission,
            )
            .headers(&[("x-amzn-errortype", "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "UnrecognizedClientException comes with 403 but is a dead key",
                "AWS common errors (UnrecognizedClient); crates/mock-upstream/src/bedrock.rs invalid_key()",
                Bedrock,
                403,
                r#"{"message":"The security token included in the request is invalid."}"#,
                AuthInvalid,
            )
            .headers(&[("x-amzn-errortype", "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/")]),
            case(
                "InvalidSignatureException: the wrong secret",
                "AWS common errors (InvalidSignatureException); crates/gateway/tests/matrix_e2e.rs wrong-secret test",
                Bedrock,
                403,
                r#"{"message":"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."}"#,
                AuthInvalid,
            )
            .headers(&[("x-amzn-errortype", "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/")]),
            case(
                "ValidationException: the prompt is over the context window",
                "Bedrock ValidationException \"Input is too long for requested model.\" (crates/mock-upstream/src/bedrock.rs fault())",
                Bedrock,
                400,
                r#"{"message":"Input is too long for requested model."}"#,
                ContextTooLong,
            )
            .headers(&[("x-amzn-errortype", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ValidationException: a model id that needs an inference profile",
                "anthropics/claude-code#1466",
                Bedrock,
                400,
                r#"{"message":"Invocation of model ID anthropic.claude-sonnet-4-20250514-v1:0 with on-demand throughput isn’t supported. Retry your request with the ID or ARN of an inference profile that contains this model."}"#,
                Permission,
            )
            .headers(&[("x-amzn-errortype", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "ValidationException: a bad request",
                "RooCodeInc/Roo-Code#248 (max tokens over the model limit)",
                Bedrock,
                400,
                r#"{"message":"The maximum tokens you requested exceed the model limit of 4096. Try again with a maximum tokens value lower than 4096."}"#,
                BadRequest,
            )
            .headers(&[("x-amzn-errortype", "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/")]),
            case(
                "no header: the status decides",
                "generic fallback (a proxy in front of Bedrock)",
                Bedrock,
                429,
                r#"{"message":"Too many requests, please wait before trying again."}"#,
                RateLimited,
            ),
        ]);
    }

    /// ConverseStream reports failures as exception events (`:exception-type`), named in lower
    /// camel case.
    #[test]
    fn bedrock_stream_exceptions() {
        use ErrorClass::*;
        let cases = [
            (
                "throttlingException",
                r#"{"message":"Too many tokens, please wait before trying again."}"#,
                RateLimited,
            ),
            (
                "serviceUnavailableException",
                r#"{"message":"Bedrock is unable to process your request."}"#,
                Overloaded,
            ),
            (
                "modelStreamErrorException",
                r#"{"message":"The model stream failed.","originalStatusCode":500}"#,
                ServerError,
            ),
            (
                "internalServerException",
                r#"{"message":"The system encountered an unexpected error during processing. Try your request again."}"#,
                ServerError,
            ),
            (
                "validationException",
                r#"{"message":"Input Tokens Exceeded: The number of input tokens exceeds maximum length."}"#,
                ContextTooLong,
            ),
            ("somethingNewException", r#"{"message":"?"}"#, ServerError),
        ];
        for (kind, payload, class) in cases {
            let c = classify_stream_exception(kind, payload.as_bytes(), NOW);
            assert_eq!(c.class, class, "{kind}");
            assert!(!c.message.is_empty(), "{kind}");
        }
    }

    /// Workers AI answers both a spent daily allocation and a full data centre with 429: the
    /// envelope's `errors[].code` tells them apart (developers.cloudflare.com/workers-ai/platform/errors).
    #[test]
    fn workers_ai() {
        use ErrorClass::*;
        use Flavor::WorkersAi;
        check(vec![
            case(
                "3036 daily free allocation used up",
                "Workers AI errors table (3036 Account limited, 429)",
                WorkersAi,
                429,
                r#"{"result":null,"success":false,"errors":[{"code":3036,"message":"You have used up your daily free allocation of 10,000 neurons. Please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage."}],"messages":[]}"#,
                DailyQuota,
            ),
            case(
                "3040 out of capacity",
                "Workers AI errors table (3040 Out of capacity, 429); answeroverflow.com/m/1349849373210574900",
                WorkersAi,
                429,
                r#"{"result":null,"success":false,"errors":[{"code":3040,"message":"No more data centers to forward the request to"}],"messages":[]}"#,
                Overloaded,
            ),
            case(
                "3007 timeout",
                "Workers AI errors table (3007 Timeout, 408)",
                WorkersAi,
                408,
                r#"{"result":null,"success":false,"errors":[{"code":3007,"message":"Request timeout"}],"messages":[]}"#,
                Timeout,
            ),
            case(
                "3008 aborted",
                "Workers AI errors table (3008 Aborted, 408)",
                WorkersAi,
                408,
                r#"{"result":null,"success":false,"errors":[{"code":3008,"message":"Request was aborted"}],"messages":[]}"#,
                Timeout,
            ),
            case(
                "10000 authentication error with 403 is a dead token, not a permission",
                "cloudflare/workers-sdk#4522 (httpCode 403)",
                WorkersAi,
                403,
                r#"{"success":false,"errors":[{"code":10000,"message":"Authentication error"}]}"#,
                AuthInvalid,
            ),
            case(
                "3023 account blocked",
                "Workers AI errors table (3023 Account blocked, 403)",
                WorkersAi,
                403,
                r#"{"result":null,"success":false,"errors":[{"code":3023,"message":"Service unavailable for account"}],"messages":[]}"#,
                AuthInvalid,
            ),
            case(
                "5016 model terms not agreed: this model only",
                "Workers AI errors table (5016 Model agreement, 403)",
                WorkersAi,
                403,
                r#"{"result":null,"success":false,"errors":[{"code":5016,"message":"User has not agreed to Llama3.2 model terms"}],"messages":[]}"#,
                Permission,
            ),
            case(
                "5007 no such model comes with 400 but another channel may have it",
                "Workers AI errors table (5007 No such model, 400)",
                WorkersAi,
                400,
                r#"{"result":null,"success":false,"errors":[{"code":5007,"message":"No such model @cf/meta/llama-9 or task"}],"messages":[]}"#,
                Permission,
            ),
            case(
                "7003 the account id does not route",
                "Ikalus1988/MisakaNet#1489 (7003 = wrong path); Cloudflare API \"Could not route to ..., perhaps your object identifier is invalid?\"",
                WorkersAi,
                400,
                r#"{"result":null,"success":false,"errors":[{"code":7003,"message":"Could not route to /client/v4/accounts/acc123/ai/run/@cf/meta/llama-3.1-8b-instruct, perhaps your object identifier is invalid?"}],"messages":[]}"#,
                Permission,
            ),
            case(
                "5021 over the context window, with 413",
                "sourced message (\"5021: The estimated number of input and maximum output tokens (155740) exceeded this model context window limit (128000).\"), 413 per Workers AI users' reports",
                WorkersAi,
                413,
                r#"{"result":null,"success":false,"errors":[{"code":5021,"message":"The estimated number of input and maximum output tokens (155740) exceeded this model context window limit (128000)."}],"messages":[]}"#,
                ContextTooLong,
            ),
            case(
                "3006 request too large",
                "Workers AI errors table (3006 Request too large, 413)",
                WorkersAi,
                413,
                r#"{"result":null,"success":false,"errors":[{"code":3006,"message":"Request is too large"}],"messages":[]}"#,
                BadRequest,
            ),
            case(
                "971 Cloudflare API throttling",
                "crates/mock-upstream/src/cloudflare.rs rate_limited() (Cloudflare API code 971)",
                WorkersAi,
                429,
                r#"{"result":null,"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}],"messages":[]}"#,
                RateLimited,
            ),
            case(
                "an unknown code: the status decides",
                "generic fallback",
                WorkersAi,
                500,
                r#"{"result":null,"success":false,"errors":[{"code":3043,"message":"Internal server error"}],"messages":[]}"#,
                ServerError,
            ),
        ]);
    }

    #[test]
    fn databricks_invalid_token_is_a_dead_key() {
        // databricks/databricks-sdk-go#873: 403 with a numeric error_code.
        check(vec![case(
            "403 Invalid access token",
            "databricks/databricks-sdk-go#873",
            Flavor::OpenAiCompatible,
            403,
            r#"{"error_code":403,"message":"Invalid access token."}"#,
            ErrorClass::AuthInvalid,
        )]);
    }

    #[test]
    fn generic_statuses() {
        use ErrorClass::*;
        use Flavor::OpenAi;
        check(vec![
            case(
                "empty 200",
                "keys.md table (a) row 7",
                OpenAi,
                200,
                "",
                ServerError,
            ),
            case(
                "malformed 200",
                "keys.md table (a) row 7",
                OpenAi,
                200,
                r#"{"id":"chatcmpl-1","choices":[]}"#,
                ServerError,
            ),
            case(
                "502 HTML from a load balancer",
                "nginx default 502 page",
                OpenAi,
                502,
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>",
                ServerError,
            ),
            case(
                "504 empty",
                "keys.md table (a) row 7",
                OpenAi,
                504,
                "",
                ServerError,
            ),
            case(
                "503 empty",
                "keys.md table (a) row 8",
                OpenAi,
                503,
                "",
                Overloaded,
            )
            .headers(&[("retry-after", "30")])
            .wait(ms(30_000)),
            case(
                "529 empty",
                "keys.md table (a) row 8",
                Flavor::Anthropic,
                529,
                "",
                Overloaded,
            ),
            case(
                "408",
                "openrouter.ai/docs errors (408 timed out)",
                OpenAi,
                408,
                "",
                Timeout,
            ),
            case(
                "422",
                "keys.md table (a) row 12",
                OpenAi,
                422,
                r#"{"error":{"message":"Unprocessable entity","type":"invalid_request_error"}}"#,
                BadRequest,
            ),
            case(
                "413 body too large",
                "keys.md table (a) row 12",
                OpenAi,
                413,
                "<html><body>413 Request Entity Too Large</body></html>",
                BadRequest,
            ),
            case(
                "400 unsupported parameter",
                "crates/mock-upstream/src/errors.rs invalid_value()",
                OpenAi,
                400,
                r#"{"error":{"message":"Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.","type":"invalid_request_error","param":"messages[0].role","code":"invalid_value"}}"#,
                BadRequest,
            ),
            case(
                "409",
                "keys.md table (a) row 15",
                OpenAi,
                409,
                "{}",
                UnknownClientError,
            ),
            case(
                "424",
                "keys.md table (a) row 15",
                OpenAi,
                424,
                "",
                UnknownClientError,
            ),
            case("301", "not an answer", OpenAi, 301, "", ServerError),
        ]);
    }

    #[test]
    fn messages_are_kept_and_bounded() {
        let c = classify_response(
            Flavor::Anthropic,
            529,
            &HeaderMap::new(),
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            NOW,
        );
        assert_eq!(c.message, "Overloaded");
        let c = classify_response(Flavor::OpenAi, 504, &HeaderMap::new(), b"", NOW);
        assert_eq!(c.message, "upstream returned HTTP 504 with an empty body");
        let c = classify_response(Flavor::OpenAi, 200, &HeaderMap::new(), b"", NOW);
        assert!(c.message.contains("empty or malformed"), "{}", c.message);
        let long = format!(r#"{{"error":{{"message":"{}"}}}}"#, "é".repeat(3000));
        let c = classify_response(Flavor::OpenAi, 500, &HeaderMap::new(), long.as_bytes(), NOW);
        assert!(c.message.len() <= 2000 + '…'.len_utf8());
        assert!(c.message.ends_with('…'));
        // The wrapped Gemini body yields the inner message, not the JSON string.
        let wrapped = r#"{"error":{"message":"{\"error\":{\"code\":403,\"message\":\"Your API key was reported as leaked. Please use another API key.\",\"status\":\"PERMISSION_DENIED\"}}","code":403,"status":"Forbidden"}}"#;
        let c = classify_response(
            Flavor::Gemini,
            403,
            &HeaderMap::new(),
            wrapped.as_bytes(),
            NOW,
        );
        assert_eq!(c.class, ErrorClass::AuthInvalid);
        assert_eq!(
            c.message,
            "Your API key was reported as leaked. Please use another API key."
        );
    }

    #[test]
    fn should_retry_header() {
        let h = hm(&[("x-should-retry", "false")]);
        let body =
            br#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#;
        let c = classify_response(Flavor::Anthropic, 500, &h, body, NOW);
        assert_eq!(c.class, ErrorClass::ServerError);
        assert_eq!(c.should_retry, Some(false));
        assert!(c.class.retry_elsewhere());
        assert!(!c.may_retry_elsewhere());
        // A key/scope condition may still go to a different scope, never the same key.
        let body = br#"{"type":"error","error":{"type":"rate_limit_error","message":"Your account has hit a rate limit."}}"#;
        let c = classify_response(Flavor::Anthropic, 429, &h, body, NOW);
        assert_eq!(c.class, ErrorClass::RateLimited);
        assert!(c.may_retry_elsewhere());
        // `true` lets a 409 through once.
        let h = hm(&[("x-should-retry", "TRUE")]);
        let body = br#"{"type":"error","error":{"type":"conflict_error","message":"Conflict"}}"#;
        let c = classify_response(Flavor::Anthropic, 409, &h, body, NOW);
        assert_eq!(c.class, ErrorClass::UnknownClientError);
        assert_eq!(c.should_retry, Some(true));
        assert!(c.may_retry_elsewhere());
        // Absent or junk: no opinion.
        let c = classify_response(
            Flavor::OpenAi,
            500,
            &hm(&[("x-should-retry", "maybe")]),
            b"",
            NOW,
        );
        assert_eq!(c.should_retry, None);
        assert!(c.may_retry_elsewhere());
    }

    #[test]
    fn class_table() {
        use ErrorClass::*;
        let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "rate_limited_transient",
                "request_exceeds_key_limit",
                "quota_exhausted_daily",
                "quota_exhausted_billing",
                "auth_invalid",
                "permission_denied",
                "server_error",
                "overloaded",
                "transport_pre_send",
                "timeout",
                "stream_interrupted",
                "bad_request_non_retryable",
                "context_too_long",
                "client_cancelled",
                "unknown_client_error",
            ]
        );
        assert_eq!(Billing.to_string(), "quota_exhausted_billing");
        let retry: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.retry_elsewhere())
            .collect();
        assert_eq!(
            retry,
            [
                RateLimited,
                RequestTooLarge,
                DailyQuota,
                Billing,
                AuthInvalid,
                Permission,
                ServerError,
                Overloaded,
                TransportPreSend,
                Timeout,
            ]
        );
        let penal: Vec<ErrorClass> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.penalises_key())
            .collect();
        assert_eq!(
            penal,
            [
                RateLimited,
                RequestTooLarge,
                DailyQuota,
                Billing,
                AuthInvalid,
                Permission
            ]
        );
        let c = Classified::new(StreamInterrupted, "stream cut");
        assert!(!c.may_retry_elsewhere());
        assert_eq!(c.retry_after, None);
    }

    #[test]
    fn transport() {
        use ErrorClass::*;
        let cases: &[(bool, bool, &str, ErrorClass)] = &[
            (
                false,
                false,
                "client error (Connect): dns error: failed to lookup address information",
                TransportPreSend,
            ),
            (false, true, "connect timeout", TransportPreSend),
            (
                true,
                false,
                "client error (Connect): tcp connect error: Connection refused (os error 111)",
                TransportPreSend,
            ),
            (
                true,
                false,
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                TransportPreSend,
            ),
            (true, true, "operation timed out", Timeout),
            (
                true,
                false,
                "connection closed before message completed",
                Timeout,
            ),
            (
                true,
                false,
                "Connection reset by peer (os error 104)",
                Timeout,
            ),
        ];
        for (sent, timed_out, msg, want) in cases {
            let c = classify_transport(*sent, *timed_out, msg);
            assert_eq!(c.class, *want, "{msg}");
            assert_eq!(c.message, *msg);
        }
        assert_eq!(
            classify_transport(true, true, "").message,
            "upstream timed out"
        );
        assert_eq!(
            classify_transport(false, false, " ").message,
            "upstream connection failed"
        );
    }

    #[test]
    fn pacific_midnight_across_dst() {
        // Expected values computed with Python zoneinfo America/Los_Angeles.
        let cases: &[(&str, u64, u64)] = &[
            (
                "Sat before spring-forward, noon PST",
                1_741_464_000_000,
                1_741_507_200_000,
            ),
            (
                "last ms before midnight PST",
                1_741_507_199_999,
                1_741_507_200_000,
            ),
            (
                "exactly midnight: the next one",
                1_741_507_200_000,
                1_741_590_000_000,
            ),
            (
                "01:30 PST on switch day",
                1_741_512_600_000,
                1_741_590_000_000,
            ),
            (
                "03:30 PDT on switch day",
                1_741_516_200_000,
                1_741_590_000_000,
            ),
            (
                "Sat before fall-back, noon PDT",
                1_762_023_600_000,
                1_762_066_800_000,
            ),
            (
                "23:59:59 PDT before fall-back",
                1_762_066_799_000,
                1_762_066_800_000,
            ),
            (
                "first 01:30 (PDT) on fall-back day",
                1_762_072_200_000,
                1_762_156_800_000,
            ),
            (
                "second 01:30 (PST) on fall-back day",
                1_762_075_800_000,
                1_762_156_800_000,
            ),
            ("new year's eve", 1_767_222_000_000, 1_767_254_400_000),
            ("leap day", 1_709_121_600_000, 1_709_193_600_000),
            (
                "2026 spring-forward eve",
                1_772_884_800_000,
                1_772_956_800_000,
            ),
            ("2026 fall-back day", 1_793_534_400_000, 1_793_606_400_000),
            ("NOW", NOW, PT_MIDNIGHT),
        ];
        for (name, now, want) in cases {
            assert_eq!(next_pacific_midnight_unix_ms(*now), *want, "{name}");
        }
        // Absurd clocks neither panic nor go backwards.
        assert!(next_pacific_midnight_unix_ms(u64::MAX) > MAX_UNIX_MS);
        assert_eq!(next_pacific_midnight_unix_ms(0), 28_800_000);
    }

    #[test]
    fn next_month_utc() {
        assert_eq!(first_of_next_month_utc_ms(NOW), 1_759_276_800_000);
        // December rolls the year; the 1st itself goes to the following month.
        let dec = parse_rfc3339_unix_ms("2025-12-31T23:59:59Z").unwrap();
        assert_eq!(
            first_of_next_month_utc_ms(dec),
            parse_rfc3339_unix_ms("2026-01-01T00:00:00Z").unwrap()
        );
        assert!(first_of_next_month_utc_ms(u64::MAX) > MAX_UNIX_MS);
        let first = parse_rfc3339_unix_ms("2026-02-01T00:00:00Z").unwrap();
        assert_eq!(
            first_of_next_month_utc_ms(first),
            parse_rfc3339_unix_ms("2026-03-01T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn rate_limits_name_their_dimension_and_value() {
        let c = |flavor, body: &str| classify_response(flavor, 429, &hm(&[]), body.as_bytes(), NOW);
        // Gemini: the first per-minute violation, with its quotaValue (string or number).
        let g = c(
            Flavor::Gemini,
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateContentInputTokensPerModelPerMinute-FreeTier","quotaValue":"250000"},{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":10}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"21s"}]}}"#,
        );
        assert_eq!(g.class, ErrorClass::RateLimited);
        assert_eq!(
            (g.limit_dim, g.limit_value),
            (Some(Dim::InputTokens), Some(250_000))
        );
        let g = c(
            Flavor::Gemini,
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel"}]}]}}"#,
        );
        assert_eq!((g.limit_dim, g.limit_value), (Some(Dim::Requests), None));
        // OpenAI names the dimension in error.type; a daily quota is no per-minute limit.
        let o = c(
            Flavor::OpenAi,
            r#"{"error":{"message":"Rate limit reached on tokens per min (TPM). Please try again in 1.2s.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!((o.limit_dim, o.limit_value), (Some(Dim::Tokens), None));
        let d = c(
            Flavor::Gemini,
            r#"{"error":{"code":429,"status":"RESOURCE_EXHAUSTED","message":"quota","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerDayPerProjectPerModel","quotaValue":"1500"}]}]}}"#,
        );
        assert_eq!(d.class, ErrorClass::DailyQuota);
        assert_eq!((d.limit_dim, d.limit_value), (None, None));
    }

    #[test]
    fn text_helpers() {
        assert_eq!(text_wait("please try again in 644ms. visit"), Some(ms(644)));
        assert_eq!(text_wait("please try again in 1m26.4s."), Some(ms(86_400)));
        assert_eq!(text_wait("try again in 30 seconds."), Some(ms(30_000)));
        assert_eq!(
            text_wait("please retry after 86400 seconds."),
            Some(ms(86_400_000))
        );
        assert_eq!(text_wait("retry in 1.5 minutes"), Some(ms(90_000)));
        assert_eq!(
            text_wait("your quota will reset after 12h34m16s."),
            Some(ms(45_256_000))
        );
        assert_eq!(
            text_wait("please try again later. try again in 5s"),
            Some(ms(5_000))
        );
        assert_eq!(text_wait("please try again later."), None);
        assert_eq!(text_wait("try again in a bit"), None);

        assert_eq!(
            limit_and_requested("limit 30000, used 29937, requested 385."),
            Some((30_000, 385))
        );
        assert_eq!(
            limit_and_requested("limit 7000, used 0, requested ~12903."),
            Some((7_000, 12_903))
        );
        assert_eq!(
            limit_and_requested("limit 1,000,000, requested 1,200,000"),
            Some((1_000_000, 1_200_000))
        );
        assert_eq!(limit_and_requested("the rate limit of 60 / min"), None);
        assert_eq!(limit_and_requested("limit: 0, model: x"), None);

        assert!(has_limit_zero("metric: x, limit: 0, model: y"));
        assert!(has_limit_zero("limit: 0"));
        assert!(!has_limit_zero("limit: 05"));
        assert!(!has_limit_zero("limit: 0.5 per second"));

        assert_eq!(
            regain_access_at("you will regain access on 2026-04-01 at 00:00 utc."),
            Some(1_775_001_600_000)
        );
        assert_eq!(regain_access_at("you will regain access soon"), None);
    }
}
