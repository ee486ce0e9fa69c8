//! One client request's usage record in the making. The server opens it when a model request
//! is authenticated; the attempt loop, the relay and the response body fill it in; it is
//! finished exactly once — when the client has the last byte, when the response body is
//! dropped (the client went away), or when the request itself is dropped before answering —
//! and then handed to the [`UsageSink`] (which also charges the key's credits) and counted in
//! the [`Metrics`]. Cheap to clone (one `Arc`); every method is a short lock, never I/O.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::schema::Price;
use crate::store::UsageSink;

use super::metrics::{Api, Metrics};
use super::record::{AttemptRecord, InlineAttempt, Tokens, UsageRecord};

/// The status recorded for a request whose client left before any answer (nginx's "client
/// closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// What is known when the request arrives.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// Unix milliseconds of arrival.
    pub at_ms: i64,
    pub request_id: Arc<str>,
    /// [`super::key_id`] of the client key.
    pub client_key: Arc<str>,
    /// `"POST /v1/chat/completions"`: method and path, never the query (it may carry a key).
    pub endpoint: Arc<str>,
    pub api: Api,
    pub client_ip: Option<Arc<str>>,
}

/// One finished upstream attempt.
#[derive(Debug, Clone, Copy)]
pub struct AttemptOutcome<'a> {
    pub provider: &'a Arc<str>,
    pub upstream_model: &'a Arc<str>,
    pub key_fingerprint: Option<&'a Arc<str>>,
    pub success: bool,
    /// The upstream's HTTP status, when it answered.
    pub status: Option<u16>,
    /// The key pool's class of a failure.
    pub error_class: Option<&'static str>,
    pub latency: Duration,
}

#[derive(Debug)]
struct Draft {
    rec: UsageRecord,
    api: Api,
    /// Set by the attempt loop (the answer's status); else the response's.
    status: Option<u16>,
    tokens: Option<Tokens>,
    /// The latest attempt's row, held until the next attempt or the end: the request's only
    /// attempt, when it succeeded, goes into the request's row instead ([`InlineAttempt`]).
    held: Option<AttemptRecord>,
    finished: bool,
}

#[derive(Debug)]
struct Inner {
    sink: UsageSink,
    metrics: Arc<Metrics>,
    started: Instant,
    draft: Mutex<Draft>,
}

impl Inner {
    fn draft(&self) -> MutexGuard<'_, Draft> {
        self.draft.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, end: Instant, fallback_status: u16) {
        let (rec, attempt_row) = {
            let mut d = self.draft();
            if d.finished {
                return;
            }
            d.finished = true;
            d.rec.status = d.status.unwrap_or(fallback_status);
            d.rec.latency_ms = millis(end.saturating_duration_since(self.started));
            if let Some(t) = d.tokens {
                d.rec.tokens = t;
            }
            let mut held = d.held.take();
            if d.rec.attempts == 1
                && let Some(a) = held.take_if(|a| a.success)
            {
                d.rec.inline_attempt = Some(InlineAttempt {
                    status: a.status,
                    latency_ms: a.latency_ms,
                });
            }
            self.metrics.observe(d.api, &d.rec);
            let id = Arc::clone(&d.rec.request_id);
            (std::mem::replace(&mut d.rec, blank(0, id)), held)
        };
        self.sink.record(rec);
        if let Some(row) = attempt_row {
            self.sink.record_attempt(row);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Nobody finished it: the request was dropped before an answer went out. (Looked at
        // first, so a finished request reads no clock here.)
        let finished = match self.draft.get_mut() {
            Ok(d) => d.finished,
            Err(poisoned) => poisoned.into_inner().finished,
        };
        if !finished {
            self.finish(Instant::now(), CLIENT_CLOSED);
        }
    }
}

/// The empty text of fields not known yet, shared (no allocation per request).
fn empty() -> Arc<str> {
    static EMPTY: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from(""));
    Arc::clone(&EMPTY)
}

/// A record with nothing known yet but its arrival and request id.
fn blank(at_ms: i64, request_id: Arc<str>) -> UsageRecord {
    UsageRecord {
        at_ms,
        request_id,
        client_key: empty(),
        endpoint: empty(),
        model: empty(),
        provider: None,
        upstream_model: None,
        key_fingerprint: None,
        status: 0,
        attempts: 0,
        stream: false,
        latency_ms: 0,
        ttft_ms: None,
        tokens: Tokens::default(),
        price: super::cost::FALLBACK_PRICE,
        client_ip: None,
        inline_attempt: None,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The handle every stage of a request shares. [`RequestLog::off`] (the default) records
/// nothing: llmux's own internal requests (moderation) are not client requests.
#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    inner: Option<Arc<Inner>>,
}

impl RequestLog {
    pub fn off() -> RequestLog {
        RequestLog::default()
    }

    /// Open the record of a request that arrived at `started`.
    pub fn start(
        sink: &UsageSink,
        metrics: &Arc<Metrics>,
        started: Instant,
        info: RequestInfo,
    ) -> RequestLog {
        let rec = UsageRecord {
            client_key: info.client_key,
            endpoint: info.endpoint,
            client_ip: info.client_ip,
            ..blank(info.at_ms, info.request_id)
        };
        RequestLog {
            inner: Some(Arc::new(Inner {
                sink: sink.clone(),
                metrics: Arc::clone(metrics),
                started,
                draft: Mutex::new(Draft {
                    rec,
                    api: info.api,
                    status: None,
                    tokens: None,
                    held: None,
                    finished: false,
                }),
            })),
        }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    fn with(&self, f: impl FnOnce(&mut Draft)) {
        if let Some(inner) = &self.inner {
            f(&mut inner.draft());
        }
    }

    /// The model the client asked for, its price now (a snapshot: later price changes do not
    /// rewrite history) and whether it asked for a stream.
    pub fn set_model(&self, model: &str, price: Price, stream: bool) {
        self.with(|d| {
            if *d.rec.model != *model {
                d.rec.model = Arc::from(model);
            }
            d.rec.price = price;
            d.rec.stream = stream;
        });
    }

    /// One upstream attempt ended (before any byte reached the client): record it, and name
    /// it as the one that answered — the last attempt is. Its row is held until the next
    /// attempt or the end of the request ([`InlineAttempt`]).
    pub fn attempt(&self, a: AttemptOutcome<'_>) {
        let Some(inner) = &self.inner else {
            return;
        };
        let earlier = {
            let mut d = inner.draft();
            d.rec.attempts = d.rec.attempts.saturating_add(1);
            d.rec.provider = Some(Arc::clone(a.provider));
            d.rec.upstream_model = Some(Arc::clone(a.upstream_model));
            d.rec.key_fingerprint = a.key_fingerprint.cloned();
            let row = AttemptRecord {
                at_ms: d.rec.at_ms,
                request_id: Arc::clone(&d.rec.request_id),
                client_key: Arc::clone(&d.rec.client_key),
                provider: Arc::clone(a.provider),
                model: Arc::clone(&d.rec.model),
                upstream_model: Arc::clone(a.upstream_model),
                key_fingerprint: a.key_fingerprint.cloned(),
                success: a.success,
                status: a.status,
                error_class: a.error_class,
                latency_ms: millis(a.latency),
            };
            d.held.replace(row)
        };
        if let Some(class) = a.error_class {
            inner.metrics.upstream_error(class);
        }
        if let Some(row) = earlier {
            inner.sink.record_attempt(row);
        }
    }

    /// The status of the answer (overrides the status of the response that carried it: a
    /// keep-alive stream is committed as `200` before its answer is known).
    pub fn set_status(&self, status: u16) {
        self.with(|d| d.status = Some(status));
    }

    /// The tokens of the answer, reported or estimated.
    pub fn set_tokens(&self, tokens: Tokens) {
        self.with(|d| d.tokens = Some(tokens));
    }

    /// A byte of the answer reached the client (the first call counts).
    pub fn first_byte(&self, at: Instant) {
        if let Some(inner) = &self.inner {
            let ttft = millis(at.saturating_duration_since(inner.started));
            let mut d = inner.draft();
            if d.rec.ttft_ms.is_none() {
                d.rec.ttft_ms = Some(ttft);
            }
        }
    }

    /// The answer is over: record it (once). `status` counts unless the attempt loop set one.
    pub fn finish(&self, end: Instant, status: u16) {
        if let Some(inner) = &self.inner {
            inner.finish(end, status);
        }
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::usage::CostLedger;
    use crate::usage::CreditsView;

    fn info() -> RequestInfo {
        RequestInfo {
            at_ms: 1_714_564_800_000,
            request_id: "req_1".into(),
            client_key: "sk-...abcd#0000000000000001".into(),
            endpoint: "POST /v1/chat/completions".into(),
            api: Api::ChatCompletions,
            client_ip: Some("10.0.0.1".into()),
        }
    }

    #[test]
    fn a_finished_request_charges_once_and_counts_once() {
        let ledger = Arc::new(CostLedger::new());
        let sink = UsageSink::disabled(Arc::clone(&ledger));
        let metrics = Arc::new(Metrics::default());
        let t0 = Instant::now();
        let log = RequestLog::start(&sink, &metrics, t0, info());
        let price = Price {
            input_per_million: 1_000_000.0,
            output_per_million: 1_000_000.0,
        };
        log.set_model("gpt-4o", price, true);
        let (provider, upstream_model, fp) = (
            Arc::from("p"),
            Arc::from("gpt-4o-2024"),
            Arc::from("sk-...up01#02"),
        );
        log.attempt(AttemptOutcome {
            provider: &provider,
            upstream_model: &upstream_model,
            key_fingerprint: Some(&fp),
            success: true,
            status: Some(200),
            error_class: None,
            latency: Duration::from_millis(5),
        });
        log.set_tokens(Tokens {
            prompt: 1,
            completion: 3,
            ..Tokens::default()
        });
        log.first_byte(t0 + Duration::from_millis(7));
        let clone = log.clone();
        clone.finish(t0 + Duration::from_millis(9), 200);
        log.finish(t0 + Duration::from_millis(50), 500);
        drop(log);
        drop(clone);
        assert_eq!(ledger.spent_since("sk-...abcd#0000000000000001", 0), 4.0);
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(
            text.contains(
                "llmux_requests_total{endpoint=\"/v1/chat/completions\",status=\"2xx\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("llmux_tokens_total{kind=\"completion\"} 3\n"));
    }

    #[test]
    fn a_dropped_request_is_recorded_as_client_closed() {
        let ledger = Arc::new(CostLedger::new());
        let sink = UsageSink::disabled(ledger);
        let metrics = Arc::new(Metrics::default());
        let log = RequestLog::start(&sink, &metrics, Instant::now(), info());
        drop(log);
        let mut text = String::new();
        metrics.render(&mut text);
        assert!(
            text.contains(
                "llmux_requests_total{endpoint=\"/v1/chat/completions\",status=\"4xx\"} 1\n"
            ),
            "{text}"
        );
        // Off records nothing and never panics.
        let off = RequestLog::off();
        off.set_status(200);
        off.finish(Instant::now(), 200);
        assert!(!off.is_on());
    }
}
