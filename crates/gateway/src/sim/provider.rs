//! The provider, in process: per quota scope the buckets a real OpenAI-flavoured provider
//! enforces, and for every attempt the status, headers and JSON body it would send, so the real
//! `classify_response` and `parse_limits` read them.
//!
//! Enforcement (keys.md §5.1, §b.6): continuous token buckets for requests and tokens per
//! minute; tokens charged at admission as `max(max_tokens, prompt estimate)` and reconciled with
//! the real usage when the answer completes (the bucket may go into debt); a rejected request
//! still spends one request of the minute ("unsuccessful requests contribute to your per-minute
//! limit"), floored at an empty bucket. Headers `x-ratelimit-{limit,remaining,reset}-{requests,
//! tokens}` with Go-duration resets ("time until the limit resets to its initial state") and
//! `openai-organization` name the scope. Faults: revoked keys (401 `invalid_api_key`), scopes
//! out of credit (429 `insufficient_quota`), per-day quota (429 RPD), provider-wide 503 storms.
//!
//! Gemini dialect (keys.md §5.3): fixed minute windows that reset at second :00 of the wall
//! clock, requests and *input* tokens per minute, rejected requests not counted; **no** rate-limit
//! or scope headers; 429 `RESOURCE_EXHAUSTED` with `QuotaFailure` (`...PerMinute...` quota ids)
//! and `RetryInfo.retryDelay` up to the next minute; invalid key 400 `API_KEY_INVALID`; 503
//! `UNAVAILABLE` "The model is overloaded".

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::keypool::classify::Flavor;
use crate::keypool::clock::Nanos;

pub const SECOND: Nanos = 1_000_000_000;
pub const MINUTE: Nanos = 60 * SECOND;

/// The model every simulated request asks for.
pub const MODEL: &str = "gpt-4o-mini";
const GEMINI_MODEL: &str = "gemini-2.0-flash";

/// Which provider's enforcement and wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Gemini,
    /// Gemini whose 429s do not state the limit's value (no `quotaValue`, no "limit: N"), as
    /// some of Google's answers and most header-less vendors: the limit must be estimated.
    GeminiUnstated,
}

impl Dialect {
    pub fn flavor(self) -> Flavor {
        match self {
            Dialect::OpenAi => Flavor::OpenAi,
            Dialect::Gemini | Dialect::GeminiUnstated => Flavor::Gemini,
        }
    }

    pub fn is_gemini(self) -> bool {
        self.flavor() == Flavor::Gemini
    }
}

/// Limits of one quota scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScopeLimits {
    pub rpm: u64,
    pub tpm: u64,
}

/// Something that goes wrong on a schedule (virtual time).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The key is rejected with 401 `invalid_api_key` in `[from, to)`.
    Revoked { key: usize, from: Nanos, to: Nanos },
    /// The key's scope is out of credit from `from` on (429 `insufficient_quota`).
    Billing { key: usize, from: Nanos },
    /// The key's scope has used its requests per day from `from` on (429 RPD).
    DailyQuota { key: usize, from: Nanos },
    /// Provider-wide: a `share` of all attempts in `[from, to)` get 503.
    Overload { from: Nanos, to: Nanos, share: f64 },
}

/// What the client sends, as far as the provider's accounting goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// The provider's character-based token estimate of the prompt.
    pub prompt_est: u64,
    pub max_tokens: Option<u64>,
}

/// One answer: what the gateway receives (status, headers, body) and, when the request was
/// admitted, the tokens charged so far (reconciled by [`Provider::settle`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub charged: Option<u64>,
}

#[derive(Debug, Clone)]
struct ScopeState {
    limits: ScopeLimits,
    org: String,
    /// Requests left (continuous).
    req: f64,
    /// Tokens left (continuous; negative = debt).
    tok: f64,
    at: Nanos,
    /// Gemini: the wall-clock minute of the counters, and what it used.
    window: u64,
    window_req: u64,
    window_tok: u64,
}

impl ScopeState {
    fn refill(&mut self, now: Nanos) {
        if now > self.at {
            let minutes = (now - self.at) as f64 / MINUTE as f64;
            self.req = (self.req + minutes * self.limits.rpm as f64).min(self.limits.rpm as f64);
            self.tok = (self.tok + minutes * self.limits.tpm as f64).min(self.limits.tpm as f64);
            self.at = now;
        }
    }

    /// Seconds until `need` requests / tokens are there.
    fn wait_requests(&self, need: f64) -> f64 {
        ((need - self.req).max(0.0)) * 60.0 / self.limits.rpm as f64
    }

    fn wait_tokens(&self, need: f64) -> f64 {
        ((need - self.tok).max(0.0)) * 60.0 / self.limits.tpm as f64
    }

    fn rate_headers(&self, h: &mut HeaderMap) {
        let l = self.limits;
        put(h, "x-ratelimit-limit-requests", l.rpm.to_string());
        put(h, "x-ratelimit-limit-tokens", l.tpm.to_string());
        put(
            h,
            "x-ratelimit-remaining-requests",
            (self.req.max(0.0).floor() as u64).to_string(),
        );
        put(
            h,
            "x-ratelimit-remaining-tokens",
            (self.tok.max(0.0).floor() as u64).to_string(),
        );
        put(
            h,
            "x-ratelimit-reset-requests",
            go_duration(self.wait_requests(l.rpm as f64)),
        );
        put(
            h,
            "x-ratelimit-reset-tokens",
            go_duration(self.wait_tokens(l.tpm as f64)),
        );
    }
}

/// The provider: keys, the scopes they drain, and the fault schedule.
#[derive(Debug, Clone)]
pub struct Provider {
    dialect: Dialect,
    key_scope: Vec<usize>,
    scopes: Vec<ScopeState>,
    faults: Vec<Fault>,
    origin_unix_ms: u64,
}

impl Provider {
    pub fn new(
        dialect: Dialect,
        scopes: &[ScopeLimits],
        key_scope: &[usize],
        faults: &[Fault],
        origin_unix_ms: u64,
    ) -> Provider {
        Provider {
            dialect,
            key_scope: key_scope.to_vec(),
            scopes: scopes
                .iter()
                .enumerate()
                .map(|(i, l)| ScopeState {
                    limits: *l,
                    org: format!("org-sim{i:02}q7RvKx3mZ"),
                    req: l.rpm as f64,
                    tok: l.tpm as f64,
                    at: 0,
                    window: 0,
                    window_req: 0,
                    window_tok: 0,
                })
                .collect(),
            faults: faults.to_vec(),
            origin_unix_ms,
        }
    }

    pub fn scope_of(&self, key: usize) -> usize {
        self.key_scope[key]
    }

    pub fn revoked(&self, key: usize, now: Nanos) -> bool {
        self.faults.iter().any(|f| {
            matches!(*f, Fault::Revoked { key: k, from, to } if k == key && from <= now && now < to)
        })
    }

    fn scope_fault(&self, key: usize, now: Nanos, billing: bool) -> bool {
        let scope = self.key_scope[key];
        self.faults.iter().any(|f| match *f {
            Fault::Billing { key: k, from } if billing => self.key_scope[k] == scope && from <= now,
            Fault::DailyQuota { key: k, from } if !billing => {
                self.key_scope[k] == scope && from <= now
            }
            _ => false,
        })
    }

    fn overload_share(&self, now: Nanos) -> f64 {
        self.faults
            .iter()
            .filter_map(|f| match *f {
                Fault::Overload { from, to, share } if from <= now && now < to => Some(share),
                _ => None,
            })
            .fold(0.0, f64::max)
    }

    /// `GET /models` with this key: 200 unless the key is rejected.
    pub fn list_models(&self, key: usize, now: Nanos) -> u16 {
        if self.revoked(key, now) { 401 } else { 200 }
    }

    /// One chat completion attempt arriving now; `draw` is uniform in [0, 1) (storm lottery).
    pub fn request(&mut self, key: usize, shape: Shape, now: Nanos, draw: f64) -> Answer {
        if self.dialect.is_gemini() {
            return self.gemini(key, shape, now, draw);
        }
        let mut headers = HeaderMap::new();
        put(&mut headers, "content-type", "application/json".to_string());
        if self.revoked(key, now) {
            let msg = format!(
                "Incorrect API key provided: sk-proj-****{key:04}. You can find your API key at https://platform.openai.com/account/api-keys."
            );
            return Answer {
                status: 401,
                headers,
                body: error_body(&msg, "invalid_request_error", Some("invalid_api_key")),
                charged: None,
            };
        }
        if draw < self.overload_share(now) {
            return Answer {
                status: 503,
                headers,
                body: error_body(
                    "The server is overloaded or not ready yet.",
                    "server_error",
                    None,
                ),
                charged: None,
            };
        }
        let scope_index = self.key_scope[key];
        let billing = self.scope_fault(key, now, true);
        let daily = self.scope_fault(key, now, false);
        let origin = self.origin_unix_ms;
        let s = &mut self.scopes[scope_index];
        put(&mut headers, "openai-organization", s.org.clone());
        if billing {
            return Answer {
                status: 429,
                headers,
                body: error_body(
                    "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
                    "insufficient_quota",
                    Some("insufficient_quota"),
                ),
                charged: None,
            };
        }
        s.refill(now);
        if daily {
            let unix_ms = origin + now / 1_000_000;
            let day = 86_400_000;
            let wait = ((unix_ms / day + 1) * day - unix_ms) as f64 / 1000.0;
            let msg = format!(
                "Rate limit reached for {MODEL} in organization {} on requests per day (RPD): Limit 10000, Used 10000, Requested 1. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                s.org,
                go_duration(wait)
            );
            return Answer {
                status: 429,
                headers,
                body: error_body(&msg, "requests", Some("rate_limit_exceeded")),
                charged: None,
            };
        }
        let charge = shape.max_tokens.unwrap_or(0).max(shape.prompt_est);
        if s.req < 1.0 {
            let wait = s.wait_requests(1.0);
            s.req = (s.req - 1.0).max(0.0);
            s.rate_headers(&mut headers);
            let msg = format!(
                "Rate limit reached for {MODEL} in organization {} on requests per min (RPM): Limit {}, Used {}, Requested 1. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                s.org,
                s.limits.rpm,
                s.limits.rpm,
                go_duration(wait)
            );
            return Answer {
                status: 429,
                headers,
                body: error_body(&msg, "requests", Some("rate_limit_exceeded")),
                charged: None,
            };
        }
        if s.tok < charge as f64 {
            let too_large = charge > s.limits.tpm;
            let used = (s.limits.tpm as f64 - s.tok).max(0.0).ceil() as u64;
            let wait = s.wait_tokens(charge as f64);
            s.req -= 1.0;
            s.rate_headers(&mut headers);
            let msg = if too_large {
                format!(
                    "Request too large for {MODEL} in organization {} on tokens per min (TPM): Limit {}, Requested {charge}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    s.org, s.limits.tpm
                )
            } else {
                format!(
                    "Rate limit reached for {MODEL} in organization {} on tokens per min (TPM): Limit {}, Used {used}, Requested {charge}. Please try again in {}. Visit https://platform.openai.com/account/rate-limits to learn more.",
                    s.org,
                    s.limits.tpm,
                    go_duration(wait)
                )
            };
            return Answer {
                status: 429,
                headers,
                body: error_body(&msg, "tokens", Some("rate_limit_exceeded")),
                charged: None,
            };
        }
        s.req -= 1.0;
        s.tok -= charge as f64;
        s.rate_headers(&mut headers);
        Answer {
            status: 200,
            headers,
            body: Vec::new(),
            charged: Some(charge),
        }
    }

    /// Gemini: fixed wall-clock minute windows, no headers, errors in Google's shape.
    fn gemini(&mut self, key: usize, shape: Shape, now: Nanos, draw: f64) -> Answer {
        let mut headers = HeaderMap::new();
        put(&mut headers, "content-type", "application/json".to_string());
        let reject = |status: u16, body: serde_json::Value| Answer {
            status,
            headers: headers.clone(),
            body: body.to_string().into_bytes(),
            charged: None,
        };
        if self.revoked(key, now) {
            return reject(
                400,
                serde_json::json!({"error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [{
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"}
                    }]
                }}),
            );
        }
        if draw < self.overload_share(now) {
            return reject(
                503,
                serde_json::json!({"error": {
                    "code": 503,
                    "message": "The model is overloaded. Please try again later.",
                    "status": "UNAVAILABLE"
                }}),
            );
        }
        let unix_ms = self.origin_unix_ms + now / 1_000_000;
        let minute = unix_ms / 60_000;
        let to_next_minute = ((minute + 1) * 60_000 - unix_ms) as f64 / 1000.0;
        let daily = self.scope_fault(key, now, false);
        let billing = self.scope_fault(key, now, true);
        let s = &mut self.scopes[self.key_scope[key]];
        if s.window != minute {
            s.window = minute;
            s.window_req = 0;
            s.window_tok = 0;
        }
        let exhausted = if billing {
            Some((
                "generate_content_free_tier_requests",
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                0,
                to_next_minute,
            ))
        } else if daily {
            let day_ms = 86_400_000;
            let to_midnight = ((unix_ms / day_ms + 1) * day_ms - unix_ms) as f64 / 1000.0;
            Some((
                "generate_requests_per_model_per_day",
                "GenerateRequestsPerDayPerProjectPerModel",
                1500,
                to_midnight,
            ))
        } else if s.window_req + 1 > s.limits.rpm {
            Some((
                "generate_requests_per_model",
                "GenerateRequestsPerMinutePerProjectPerModel",
                s.limits.rpm,
                to_next_minute,
            ))
        } else if s.window_tok + shape.prompt_est > s.limits.tpm {
            Some((
                "generate_content_paid_tier_input_token_count",
                "GenerateContentPaidTierInputTokensPerModelPerMinute",
                s.limits.tpm,
                to_next_minute,
            ))
        } else {
            None
        };
        if let Some((metric, quota_id, limit, wait)) = exhausted {
            let delay = format!("{wait:.3}s");
            let mut violation = serde_json::json!({
                "quotaMetric": format!("generativelanguage.googleapis.com/{metric}"),
                "quotaId": quota_id,
                "quotaDimensions": {"location": "global", "model": GEMINI_MODEL},
            });
            // A zero limit (model not in the tier) is always stated; per-minute values only
            // in the `Gemini` dialect.
            let stated = limit == 0 || self.dialect == Dialect::Gemini;
            let named = if stated {
                violation["quotaValue"] = serde_json::Value::from(limit.to_string());
                format!(", limit: {limit}")
            } else {
                String::new()
            };
            return reject(
                429,
                serde_json::json!({"error": {
                    "code": 429,
                    "message": format!("You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n* Quota exceeded for metric: generativelanguage.googleapis.com/{metric}{named}, model: {GEMINI_MODEL}\nPlease retry in {delay}."),
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [violation]
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.Help",
                            "links": [{"description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]
                        },
                        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
                    ]
                }}),
            );
        }
        s.window_req += 1;
        s.window_tok += shape.prompt_est;
        Answer {
            status: 200,
            headers,
            body: Vec::new(),
            charged: Some(shape.prompt_est),
        }
    }

    /// The admitted request finished having used `actual` tokens: reconcile the charge.
    pub fn settle(&mut self, key: usize, charged: u64, actual: u64, now: Nanos) {
        if self.dialect.is_gemini() {
            // Input tokens were counted at admission; the window is not reconciled.
            return;
        }
        let s = &mut self.scopes[self.key_scope[key]];
        s.refill(now);
        s.tok = (s.tok + charged as f64 - actual as f64).min(s.limits.tpm as f64);
    }
}

fn put(h: &mut HeaderMap, name: &'static str, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    })
    .to_string()
    .into_bytes()
}

/// A duration the way Go's `time.Duration.String()` prints it, to the millisecond:
/// `0s`, `644ms`, `1.234s`, `6m0s`, `1h2m3.5s`.
pub fn go_duration(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let h = ms / 3_600_000;
    let m = (ms / 60_000) % 60;
    let rest = ms % 60_000;
    let s = if rest.is_multiple_of(1000) {
        format!("{}", rest / 1000)
    } else {
        let frac = format!("{:03}", rest % 1000);
        format!("{}.{}", rest / 1000, frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keypool::classify::{ErrorClass, Flavor, classify_response};
    use crate::keypool::ratelimit_headers::{parse_go_duration, parse_limits, scope_id};

    #[test]
    fn go_durations_round_trip() {
        for (secs, text) in [
            (0.0, "0s"),
            (0.644, "644ms"),
            (1.234, "1.234s"),
            (360.0, "6m0s"),
            (3723.5, "1h2m3.5s"),
        ] {
            assert_eq!(go_duration(secs), text);
            let back = parse_go_duration(text).map(|d| d.as_secs_f64());
            assert_eq!(back, Some(secs));
        }
    }

    #[test]
    fn answers_classify_as_the_table_says() {
        let origin = 1_767_225_600_000;
        let limits = [ScopeLimits { rpm: 2, tpm: 1000 }];
        let faults = [
            Fault::Revoked {
                key: 1,
                from: 0,
                to: MINUTE,
            },
            Fault::Billing { key: 2, from: 0 },
        ];
        let two = [limits[0], limits[0]];
        let mut p = Provider::new(Dialect::OpenAi, &two, &[0, 0, 1], &faults, origin);
        let shape = Shape {
            prompt_est: 100,
            max_tokens: Some(200),
        };
        let ok = p.request(0, shape, 0, 0.5);
        assert_eq!(ok.status, 200);
        assert_eq!(ok.charged, Some(200));
        let snap = parse_limits(&ok.headers, Flavor::OpenAi, origin);
        assert_eq!(snap.tokens.and_then(|d| d.remaining), Some(800));
        assert_eq!(snap.requests.and_then(|d| d.remaining), Some(1));
        assert_eq!(scope_id(&ok.headers).as_deref(), Some("org-sim00q7RvKx3mZ"));
        let classify =
            |a: &Answer| classify_response(Flavor::OpenAi, a.status, &a.headers, &a.body, origin);
        // Tokens: 800 left, 900 asked.
        let big = Shape {
            prompt_est: 900,
            max_tokens: None,
        };
        let c = classify(&p.request(0, big, 0, 0.5));
        assert_eq!(c.class, ErrorClass::RateLimited);
        // Requests: the rejected one spent the last request of the minute.
        let c = classify(&p.request(0, shape, 0, 0.5));
        assert_eq!(c.class, ErrorClass::RateLimited);
        assert!(c.retry_after.is_some());
        let c = classify(&p.request(
            0,
            Shape {
                prompt_est: 5000,
                max_tokens: None,
            },
            MINUTE,
            0.5,
        ));
        assert_eq!(c.class, ErrorClass::RequestTooLarge);
        assert_eq!(
            classify(&p.request(1, shape, 0, 0.5)).class,
            ErrorClass::AuthInvalid
        );
        assert_eq!(p.list_models(1, 0), 401);
        assert_eq!(p.list_models(1, MINUTE), 200);
        assert_eq!(
            classify(&p.request(2, shape, 0, 0.5)).class,
            ErrorClass::Billing
        );
        let storm = Provider::new(
            Dialect::OpenAi,
            &limits,
            &[0],
            &[Fault::Overload {
                from: 0,
                to: MINUTE,
                share: 0.25,
            }],
            origin,
        )
        .request(0, shape, 0, 0.1);
        assert_eq!(classify(&storm).class, ErrorClass::Overloaded);
        let daily = Provider::new(
            Dialect::OpenAi,
            &limits,
            &[0],
            &[Fault::DailyQuota { key: 0, from: 0 }],
            origin,
        )
        .request(0, shape, 0, 0.5);
        let c = classify(&daily);
        assert_eq!(c.class, ErrorClass::DailyQuota);
        assert!(c.retry_after.is_some_and(|d| d.as_secs() > 3600));
    }

    #[test]
    fn gemini_windows_reset_at_the_minute_and_answer_without_headers() {
        // 2026-01-01T00:00:50Z: the window ends in 10 s.
        let origin = 1_767_225_650_000;
        let limits = [ScopeLimits { rpm: 2, tpm: 1000 }];
        let faults = [
            Fault::Revoked {
                key: 1,
                from: 0,
                to: MINUTE,
            },
            Fault::DailyQuota { key: 2, from: 0 },
        ];
        let mut p = Provider::new(Dialect::Gemini, &limits, &[0, 0, 0], &[], origin);
        let shape = Shape {
            prompt_est: 100,
            max_tokens: None,
        };
        let classify =
            |a: &Answer| classify_response(Flavor::Gemini, a.status, &a.headers, &a.body, origin);
        for _ in 0..2 {
            let ok = p.request(0, shape, 0, 0.5);
            assert_eq!(ok.status, 200);
            assert!(parse_limits(&ok.headers, Flavor::Gemini, origin).is_empty());
            assert_eq!(scope_id(&ok.headers), None);
        }
        let c = classify(&p.request(0, shape, 0, 0.5));
        assert_eq!(c.class, ErrorClass::RateLimited);
        assert_eq!(c.retry_after.map(|d| d.as_millis()), Some(10_000));
        // The next minute: a fresh window.
        assert_eq!(p.request(0, shape, 10 * SECOND, 0.5).status, 200);
        let big = Shape {
            prompt_est: 950,
            max_tokens: None,
        };
        let c = classify(&p.request(0, big, 10 * SECOND, 0.5));
        assert_eq!(c.class, ErrorClass::RateLimited);
        let limits3 = [limits[0]; 3];
        let mut p = Provider::new(Dialect::Gemini, &limits3, &[0, 1, 2], &faults, origin);
        assert_eq!(
            classify(&p.request(1, shape, 0, 0.5)).class,
            ErrorClass::AuthInvalid
        );
        let c = classify(&p.request(2, shape, 0, 0.5));
        assert_eq!(c.class, ErrorClass::DailyQuota);
        let storm = Provider::new(
            Dialect::Gemini,
            &limits,
            &[0],
            &[Fault::Overload {
                from: 0,
                to: MINUTE,
                share: 1.0,
            }],
            origin,
        )
        .request(0, shape, 0, 0.5);
        assert_eq!(classify(&storm).class, ErrorClass::Overloaded);
    }
}
