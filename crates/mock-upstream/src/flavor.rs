//! What each provider says when it limits, rejects or sheds a request: the
//! exact error bodies and rate-limit headers, per wire dialect.
//!
//! Sources (real responses quoted in public issue trackers, and the
//! providers' docs; see the crate docs for the full list):
//! * OpenAI: "Rate limit reached for gpt-4o in organization org-… on tokens
//!   per min (TPM): Limit 30000, Used 29937, Requested 385. Please try again
//!   in 644ms. Visit <https://platform.openai.com/account/rate-limits> to learn
//!   more." and "Request too large for gpt-4o in organization org-… on tokens
//!   per min (TPM): Limit 30000, Requested 31538. The input or output tokens
//!   must be reduced in order to run successfully. …" (TheR1D/shell_gpt#653,
//!   Aider-AI/aider#1880).
//! * Groq: "Rate limit reached for model `llama-3.1-8b-instant` in
//!   organization `org_…` service tier `on_demand` on tokens per minute
//!   (TPM): Limit 6000, Used 5034, Requested 1443. Please try again in 4.77s.
//!   Need more tokens? Upgrade to Dev Tier today at
//!   <https://console.groq.com/settings/billing>" (elizaOS/eliza#4040), 413
//!   "Request too large for model …, please reduce your message size and try
//!   again. …" (HunorLaczko/ha-groq-cloud-api#27), 401 "Invalid API Key"
//!   (`content-length: 96`, no `param`), header semantics from Groq's docs.
//! * Azure OpenAI: `{"error":{"code":"429","message":"Requests to the
//!   ChatCompletions_Create Operation under Azure OpenAI API version … have
//!   exceeded call rate limit of your current OpenAI S0 pricing tier. Please
//!   retry after N seconds. Please go here: https://aka.ms/oai/quotaincrease
//!   if you would like to further increase the default rate limit."}}`
//!   ("token rate limit" for TPM; "86400 seconds" when it can never fit).
//! * Gemini: `RESOURCE_EXHAUSTED` with `QuotaFailure`, `Help` and
//!   `RetryInfo` details (google-gemini/gemini-cli#8437, RooCodeInc/Roo-Code#3883,
//!   wuchalejs/wuchale#218), 400 `API_KEY_INVALID` (continuedev/continue#9330),
//!   503 `UNAVAILABLE` "The model is overloaded. Please try again later.".
//! * Anthropic: `{"type":"error","error":{"type":"rate_limit_error","message":
//!   "This request would exceed the rate limit for your organization (…) of
//!   20,000 input tokens per minute. …"},"request_id":"req_…"}`, 529
//!   `overloaded_error` "Overloaded", 401 `authentication_error` "invalid
//!   x-api-key", 400 "Your credit balance is too low to access the Anthropic
//!   API. …".

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::LimitFlavor;
use crate::body::{self, Body};
use crate::clock::rfc3339;
use crate::errors::ApiError;
use crate::ratelimit::{Denial, Dim, RateView, Reading};
use crate::util::{Json, ceil_ms, go_duration, obj};

/// The shape of errors and headers a response takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Groq,
    Azure,
    Gemini,
    Anthropic,
    /// Amazon Bedrock Runtime (AWS REST-JSON errors).
    Bedrock,
    /// Cohere's v2 API (`{"id", "message"}` errors).
    Cohere,
    /// Cloudflare's API envelope.
    Cloudflare,
    /// Databricks' `{"error_code", "message"}` envelope.
    Databricks,
}

/// A stable per-request seed for error ids (Cohere's error bodies carry one).
fn seed_of(request_id: &str) -> u64 {
    crate::util::fnv1a64(request_id.as_bytes())
}

impl Dialect {
    /// The dialect of the OpenAI-shaped routes under a flavour (the
    /// Anthropic flavour's OpenAI routes speak OpenAI). The native routes
    /// speak their provider's: see `Endpoint::dialect`.
    pub fn of(flavor: LimitFlavor) -> Dialect {
        match flavor {
            LimitFlavor::OpenAi | LimitFlavor::Anthropic => Dialect::OpenAi,
            LimitFlavor::Groq => Dialect::Groq,
            LimitFlavor::Azure => Dialect::Azure,
            LimitFlavor::Gemini => Dialect::Gemini,
        }
    }

    /// Whether responses carry `openai-organization` and friends.
    pub fn openai_headers(self) -> bool {
        matches!(self, Dialect::OpenAi | Dialect::Groq | Dialect::Azure)
    }
}

/// What an error body needs to know about the request.
pub(crate) struct ErrCtx<'a> {
    pub model: &'a str,
    pub org: &'a str,
    /// Azure's operation name for the route (`ChatCompletions_Create`, ...).
    pub azure_operation: &'a str,
    /// Azure's `api-version` query parameter.
    pub api_version: &'a str,
    /// Anthropic's `request_id`.
    pub request_id: &'a str,
    /// Unix milliseconds now (for Gemini's minute windows).
    pub unix_ms: u64,
}

fn with_content_type(
    status: StatusCode,
    content_type: &'static str,
    bytes: Vec<u8>,
) -> Response<Body> {
    body::response(status, content_type, body::full(bytes))
}

pub(crate) fn google(status: StatusCode, v: &Json) -> Response<Body> {
    // Google pretty-prints with two spaces and a trailing newline.
    let mut bytes = v.to_vec_google_pretty();
    bytes.push(b'\n');
    with_content_type(status, "application/json; charset=UTF-8", bytes)
}

/// Google's plain error: `{"error":{"code","message","status"}}`.
pub(crate) fn google_error(status: StatusCode, state: &str, message: &str) -> Response<Body> {
    google(
        status,
        &obj! {"error": obj! {
            "code": u64::from(status.as_u16()),
            "message": message,
            "status": state,
        }},
    )
}

/// A scripted "requests per minute exceeded" (the `RateLimited` fault) in
/// the Anthropic or Gemini dialect.
pub(crate) fn requests_exceeded(
    dialect: Dialect,
    ctx: &ErrCtx<'_>,
    limit: u64,
    retry_ms: u64,
) -> Response<Body> {
    let denial = Denial {
        dim: Dim::Rpm,
        limit,
        used: i64::try_from(limit).unwrap_or(i64::MAX),
        requested: 1,
        retry_ms: Some(retry_ms),
    };
    rate_limited(dialect, ctx, &denial)
}

fn groq(status: StatusCode, message: &str, kind: &str, code: &str) -> Response<Body> {
    let v = obj! {"error": obj! {"message": message, "type": kind, "code": code}};
    let mut bytes = v.to_vec();
    bytes.push(b'\n');
    with_content_type(status, "application/json", bytes)
}

pub(crate) fn anthropic(
    status: StatusCode,
    kind: &str,
    message: &str,
    request_id: &str,
) -> Response<Body> {
    let v = obj! {
        "type": "error",
        "error": obj! {"type": kind, "message": message},
        "request_id": request_id,
    };
    with_content_type(status, "application/json", v.to_vec())
}

fn azure(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let v = obj! {"error": obj! {"code": code, "message": message}};
    with_content_type(status, "application/json", v.to_vec())
}

fn set(h: &mut HeaderMap, name: &'static str, value: HeaderValue) {
    h.insert(HeaderName::from_static(name), value);
}

fn text(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or(HeaderValue::from_static("0s"))
}

/// `retry-after` in whole seconds (rounded up), optionally with `retry-after-ms`.
pub(crate) fn retry_headers(h: &mut HeaderMap, ms: u64, with_ms: bool) {
    h.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
    if with_ms {
        set(h, "retry-after-ms", HeaderValue::from(ms));
    }
}

fn go_ms(ms: u64) -> String {
    go_duration(ceil_ms(std::time::Duration::from_millis(ms)))
}

/// `20.045s`: seconds with up to millisecond precision, as Gemini words its
/// "Please retry in" (the real API prints nanoseconds).
pub(crate) fn decimal_secs(ms: u64) -> String {
    let frac = ms % 1000;
    if frac == 0 {
        format!("{}s", ms / 1000)
    } else {
        let f = format!("{frac:03}");
        format!("{}.{}s", ms / 1000, f.trim_end_matches('0'))
    }
}

/// `1,000,000`, as Anthropic formats limits.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

const GEMINI_QUOTA_HEAD: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. ";
const GEMINI_REQUESTS_METRIC: &str =
    "generativelanguage.googleapis.com/generate_content_free_tier_requests";
const GEMINI_TOKENS_METRIC: &str =
    "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count";

/// (quotaMetric, quotaId) of a Gemini dimension.
fn gemini_quota(dim: Dim) -> (&'static str, &'static str) {
    match dim {
        Dim::Rpd => (
            GEMINI_REQUESTS_METRIC,
            "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        ),
        Dim::Tpm | Dim::Otpm => (
            GEMINI_TOKENS_METRIC,
            "GenerateContentInputTokensPerModelPerMinute-FreeTier",
        ),
        Dim::Rpm | Dim::Rp10s => (
            GEMINI_REQUESTS_METRIC,
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        ),
    }
}

/// Gemini's 429: one violation per (dimension, limit), the retry delay in the
/// message (fractional) and in `RetryInfo` (whole seconds, truncated).
fn gemini_quota_error(model: &str, violations: &[(Dim, u64)], retry_ms: u64) -> Response<Body> {
    let mut message = GEMINI_QUOTA_HEAD.to_owned();
    let mut list = Vec::new();
    for (dim, limit) in violations {
        let (metric, id) = gemini_quota(*dim);
        message.push_str(&format!(
            "\n* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}"
        ));
        list.push(obj! {
            "quotaMetric": metric,
            "quotaId": id,
            "quotaDimensions": obj! {"location": "global", "model": model},
            "quotaValue": limit.to_string(),
        });
    }
    message.push_str(&format!("\nPlease retry in {}.", decimal_secs(retry_ms)));
    let v = obj! {"error": obj! {
        "code": 429u64,
        "message": message,
        "status": "RESOURCE_EXHAUSTED",
        "details": Json::Arr(vec![
            obj! {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": Json::Arr(list),
            },
            obj! {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": Json::Arr(vec![obj! {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }]),
            },
            obj! {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{}s", retry_ms / 1000),
            },
        ]),
    }};
    google(StatusCode::TOO_MANY_REQUESTS, &v)
}

fn openai_what(dim: Dim) -> (&'static str, &'static str) {
    match dim {
        Dim::Tpm | Dim::Otpm => ("tokens per min (TPM)", "tokens"),
        Dim::Rpd => ("requests per day (RPD)", "requests"),
        Dim::Rpm | Dim::Rp10s => ("requests per min (RPM)", "requests"),
    }
}

fn groq_what(dim: Dim) -> (&'static str, &'static str) {
    match dim {
        Dim::Tpm | Dim::Otpm => ("tokens per minute (TPM)", "tokens"),
        Dim::Rpd => ("requests per day (RPD)", "requests"),
        Dim::Rpm | Dim::Rp10s => ("requests per minute (RPM)", "requests"),
    }
}

const GROQ_UPSELL: &str =
    "Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing";

/// The response to a request the limiter refused.
pub(crate) fn rate_limited(dialect: Dialect, ctx: &ErrCtx<'_>, d: &Denial) -> Response<Body> {
    let model = ctx.model;
    let org = ctx.org;
    match dialect {
        Dialect::Bedrock => crate::bedrock::throttled(),
        Dialect::Cohere => crate::cohere::rate_limited(seed_of(ctx.request_id)),
        Dialect::Cloudflare => crate::cloudflare::rate_limited(),
        Dialect::Databricks => crate::databricks::rate_limited(),
        Dialect::OpenAi => match d.retry_ms {
            None => ApiError::request_too_large(model, org, d.limit, d.requested).into_response(),
            Some(ms) => {
                let (what, kind) = openai_what(d.dim);
                let err = ApiError::rate_limit_reached(
                    model,
                    org,
                    what,
                    kind,
                    d.limit,
                    d.used,
                    d.requested,
                    &go_ms(ms),
                );
                let mut resp = err.into_response();
                retry_headers(resp.headers_mut(), ms, true);
                resp
            }
        },
        Dialect::Groq => {
            let (what, kind) = groq_what(d.dim);
            match d.retry_ms {
                None => groq(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "Request too large for model `{model}` in organization `{org}` service tier `on_demand` on {what}: Limit {}, Requested {}, please reduce your message size and try again. {GROQ_UPSELL}",
                        d.limit, d.requested
                    ),
                    kind,
                    "rate_limit_exceeded",
                ),
                Some(ms) => {
                    let mut resp = groq(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!(
                            "Rate limit reached for model `{model}` in organization `{org}` service tier `on_demand` on {what}: Limit {}, Used {}, Requested {}. Please try again in {}. {GROQ_UPSELL}",
                            d.limit,
                            d.used,
                            d.requested,
                            go_ms(ms)
                        ),
                        kind,
                        "rate_limit_exceeded",
                    );
                    // Groq: "retry-after is only set if you hit the rate limit".
                    retry_headers(resp.headers_mut(), ms, false);
                    resp
                }
            }
        }
        Dialect::Azure => {
            let ms = d.retry_ms.unwrap_or(86_400_000);
            let what = match d.dim {
                Dim::Tpm | Dim::Otpm => "token rate limit",
                _ => "call rate limit",
            };
            let mut resp = azure(
                StatusCode::TOO_MANY_REQUESTS,
                "429",
                &format!(
                    "Requests to the {} Operation under Azure OpenAI API version {} have exceeded {what} of your current OpenAI S0 pricing tier. Please retry after {} seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
                    ctx.azure_operation,
                    ctx.api_version,
                    ms.div_ceil(1000)
                ),
            );
            retry_headers(resp.headers_mut(), ms, true);
            resp
        }
        Dialect::Gemini => {
            // A request over the whole minute limit waits for the next
            // minute like any other (and fails again): Gemini does not
            // distinguish.
            let ms = d.retry_ms.unwrap_or_else(|| 60_000 - ctx.unix_ms % 60_000);
            gemini_quota_error(model, &[(d.dim, d.limit)], ms)
        }
        Dialect::Anthropic => {
            let what = match d.dim {
                Dim::Tpm => "input tokens per minute",
                Dim::Otpm => "output tokens per minute",
                Dim::Rpd => "requests per day",
                Dim::Rpm | Dim::Rp10s => "requests per minute",
            };
            let message = format!(
                "This request would exceed the rate limit for your organization ({org}) of {} {what}. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
                thousands(d.limit)
            );
            let mut resp = anthropic(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                &message,
                ctx.request_id,
            );
            if let Some(ms) = d.retry_ms {
                retry_headers(resp.headers_mut(), ms, false);
            }
            resp
        }
    }
}

/// A key the provider does not (or no longer) accept.
pub(crate) fn invalid_key(dialect: Dialect, key: &str, request_id: &str) -> Response<Body> {
    match dialect {
        Dialect::Bedrock => crate::bedrock::invalid_key(),
        Dialect::Cohere => crate::cohere::invalid_key(seed_of(request_id)),
        Dialect::Cloudflare => crate::cloudflare::auth_error(),
        Dialect::Databricks => crate::databricks::invalid_key(),
        Dialect::OpenAi => ApiError::invalid_key(key).into_response(),
        Dialect::Groq => groq(
            StatusCode::UNAUTHORIZED,
            "Invalid API Key",
            "invalid_request_error",
            "invalid_api_key",
        ),
        Dialect::Azure => azure(
            StatusCode::UNAUTHORIZED,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        ),
        Dialect::Gemini => {
            let message = "API key not valid. Please pass a valid API key.";
            google(
                StatusCode::BAD_REQUEST,
                &obj! {"error": obj! {
                    "code": 400u64,
                    "message": message,
                    "status": "INVALID_ARGUMENT",
                    "details": Json::Arr(vec![
                        obj! {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                            "domain": "googleapis.com",
                            "metadata": obj! {"service": "generativelanguage.googleapis.com"},
                        },
                        obj! {
                            "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                            "locale": "en-US",
                            "message": message,
                        },
                    ]),
                }},
            )
        }
        Dialect::Anthropic => anthropic(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
            request_id,
        ),
    }
}

/// A key whose account is out of credit.
pub(crate) fn exhausted(dialect: Dialect, ctx: &ErrCtx<'_>) -> Response<Body> {
    match dialect {
        Dialect::Bedrock => crate::bedrock::access_denied(),
        Dialect::Cohere => crate::cohere::exhausted(seed_of(ctx.request_id)),
        Dialect::Cloudflare => crate::cloudflare::exhausted(),
        Dialect::Databricks => crate::databricks::exhausted(),
        Dialect::OpenAi | Dialect::Azure => ApiError::insufficient_quota().into_response(),
        Dialect::Groq => groq(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            "insufficient_quota",
        ),
        Dialect::Gemini => {
            // "limit: 0": the model is not in this project's tier at all.
            let ms = 60_000 - ctx.unix_ms % 60_000;
            gemini_quota_error(ctx.model, &[(Dim::Rpd, 0), (Dim::Rpm, 0)], ms)
        }
        Dialect::Anthropic => anthropic(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            ctx.request_id,
        ),
    }
}

/// Provider-wide overload.
pub(crate) fn overloaded(dialect: Dialect, request_id: &str) -> Response<Body> {
    match dialect {
        Dialect::Bedrock => crate::bedrock::unavailable(),
        Dialect::Cohere => crate::cohere::overloaded(seed_of(request_id)),
        Dialect::Cloudflare => crate::cloudflare::overloaded(),
        Dialect::Databricks => crate::databricks::overloaded(),
        Dialect::OpenAi | Dialect::Groq | Dialect::Azure => ApiError::overloaded().into_response(),
        Dialect::Gemini => google(
            StatusCode::SERVICE_UNAVAILABLE,
            &obj! {"error": obj! {
                "code": 503u64,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }},
        ),
        Dialect::Anthropic => anthropic(
            // 529 is not in the IANA registry, but always valid for `http`.
            StatusCode::from_u16(529).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            "overloaded_error",
            "Overloaded",
            request_id,
        ),
    }
}

fn openai_triplet(h: &mut HeaderMap, what: &'static [&'static str; 3], r: &Reading) {
    set(h, what[0], HeaderValue::from(r.limit));
    set(h, what[1], HeaderValue::from(r.remaining));
    set(h, what[2], text(&go_ms(r.reset_ms)));
}

const OPENAI_REQUESTS: [&str; 3] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
];
const OPENAI_TOKENS: [&str; 3] = [
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
];

fn anthropic_triplet(
    h: &mut HeaderMap,
    what: &'static [&'static str; 3],
    r: &Reading,
    unix_ms: u64,
) {
    set(h, what[0], HeaderValue::from(r.limit));
    set(h, what[1], HeaderValue::from(r.remaining));
    set(
        h,
        what[2],
        text(&rfc3339(unix_ms.saturating_add(r.reset_ms))),
    );
}

/// The rate-limit headers of a response.
pub(crate) fn apply_rate_headers(
    dialect: Dialect,
    view: &RateView,
    unix_ms: u64,
    h: &mut HeaderMap,
) {
    match dialect {
        Dialect::OpenAi => {
            openai_triplet(h, &OPENAI_REQUESTS, &view.requests);
            openai_triplet(h, &OPENAI_TOKENS, &view.tokens);
        }
        Dialect::Groq => {
            // "x-ratelimit-*-requests: Always refers to Requests Per Day (RPD)".
            openai_triplet(
                h,
                &OPENAI_REQUESTS,
                view.daily.as_ref().unwrap_or(&view.requests),
            );
            openai_triplet(h, &OPENAI_TOKENS, &view.tokens);
        }
        Dialect::Azure => {
            set(
                h,
                "x-ratelimit-limit-requests",
                HeaderValue::from(view.requests.limit),
            );
            set(
                h,
                "x-ratelimit-limit-tokens",
                HeaderValue::from(view.tokens.limit),
            );
            set(
                h,
                "x-ratelimit-remaining-requests",
                HeaderValue::from(view.requests.remaining),
            );
            set(
                h,
                "x-ratelimit-remaining-tokens",
                HeaderValue::from(view.tokens.remaining),
            );
        }
        Dialect::Gemini
        | Dialect::Bedrock
        | Dialect::Cohere
        | Dialect::Cloudflare
        | Dialect::Databricks => {}
        Dialect::Anthropic => {
            let input = view.tokens;
            let output = view.output.unwrap_or(input);
            // "tokens": the most restrictive of the input and output limits.
            let tokens = if output.remaining < input.remaining {
                output
            } else {
                input
            };
            anthropic_triplet(
                h,
                &[
                    "anthropic-ratelimit-requests-limit",
                    "anthropic-ratelimit-requests-remaining",
                    "anthropic-ratelimit-requests-reset",
                ],
                &view.requests,
                unix_ms,
            );
            anthropic_triplet(
                h,
                &[
                    "anthropic-ratelimit-tokens-limit",
                    "anthropic-ratelimit-tokens-remaining",
                    "anthropic-ratelimit-tokens-reset",
                ],
                &tokens,
                unix_ms,
            );
            anthropic_triplet(
                h,
                &[
                    "anthropic-ratelimit-input-tokens-limit",
                    "anthropic-ratelimit-input-tokens-remaining",
                    "anthropic-ratelimit-input-tokens-reset",
                ],
                &input,
                unix_ms,
            );
            anthropic_triplet(
                h,
                &[
                    "anthropic-ratelimit-output-tokens-limit",
                    "anthropic-ratelimit-output-tokens-remaining",
                    "anthropic-ratelimit-output-tokens-reset",
                ],
                &output,
                unix_ms,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(decimal_secs(20_045), "20.045s");
        assert_eq!(decimal_secs(20_000), "20s");
        assert_eq!(decimal_secs(1_500), "1.5s");
        assert_eq!(decimal_secs(7), "0.007s");
    }
}
