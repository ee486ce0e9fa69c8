//! Process counters for `GET /metrics`, fed by the same finished records the usage store gets
//! (so they hold with or without a database): requests by endpoint and status class, upstream
//! errors by key-pool class, latency and time-to-first-byte histograms, tokens and cost. All
//! relaxed atomics in fixed arrays: counting never locks or allocates.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::keypool::classify::ErrorClass;

use super::record::UsageRecord;

/// The client APIs a request is counted under (a fixed set: a label per model name would be
/// unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Messages,
    Responses,
    GeminiGenerate,
    GeminiStream,
    Embeddings,
    ImagesGenerations,
    AudioSpeech,
    AudioTranscriptions,
    Moderations,
}

impl Api {
    const ALL: [Api; 10] = [
        Api::ChatCompletions,
        Api::Messages,
        Api::Responses,
        Api::GeminiGenerate,
        Api::GeminiStream,
        Api::Embeddings,
        Api::ImagesGenerations,
        Api::AudioSpeech,
        Api::AudioTranscriptions,
        Api::Moderations,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Messages => "/v1/messages",
            Api::Responses => "/v1/responses",
            Api::GeminiGenerate => "/v1beta/models/{model}:generateContent",
            Api::GeminiStream => "/v1beta/models/{model}:streamGenerateContent",
            Api::Embeddings => "/v1/embeddings",
            Api::ImagesGenerations => "/v1/images/generations",
            Api::AudioSpeech => "/v1/audio/speech",
            Api::AudioTranscriptions => "/v1/audio/transcriptions",
            Api::Moderations => "/v1/moderations",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Upper bounds in seconds (Prometheus `le`), from a fast cached answer to a long generation.
const BUCKETS: [f64; 12] = [
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative), plus the `+Inf` overflow.
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_ms: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn observe_ms(&self, ms: u64) {
        // Milliseconds to seconds for the bucket test: exact for any real duration.
        #[allow(clippy::cast_precision_loss)]
        let secs = ms as f64 / 1000.0;
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            match BUCKETS.get(i) {
                Some(b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let sum = self.sum_ms.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {}", self.count.load(Ordering::Relaxed));
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; Api::ALL.len()],
    upstream_errors: [AtomicU64; ErrorClass::ALL.len()],
    latency: Histogram,
    ttft: Histogram,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    reasoning_tokens: AtomicU64,
    estimated: AtomicU64,
    /// Dollars in units of 1e-9 (a counter must not lose the cost of tiny requests).
    cost_nanos: AtomicU64,
}

impl Metrics {
    /// A finished client request.
    pub fn observe(&self, api: Api, rec: &UsageRecord) {
        if let Some(c) = self
            .requests
            .get(api.index())
            .and_then(|row| row.get(status_class(rec.status)))
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe_ms(rec.latency_ms);
        if let Some(t) = rec.ttft_ms {
            self.ttft.observe_ms(t);
        }
        let t = &rec.tokens;
        self.prompt_tokens.fetch_add(t.prompt, Ordering::Relaxed);
        self.completion_tokens
            .fetch_add(t.completion, Ordering::Relaxed);
        self.cached_tokens.fetch_add(t.cached, Ordering::Relaxed);
        self.reasoning_tokens
            .fetch_add(t.reasoning, Ordering::Relaxed);
        if t.estimated {
            self.estimated.fetch_add(1, Ordering::Relaxed);
        }
        let cost = rec.cost();
        if cost.is_finite() && cost > 0.0 {
            // Rounded to whole nanodollars; far below u64::MAX for any real request.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let nanos = (cost * 1e9).round() as u64;
            self.cost_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// A failed upstream attempt, by the key pool's class name ([`ErrorClass::as_str`]).
    pub fn upstream_error(&self, class: &str) {
        if let Some(i) = ErrorClass::ALL.iter().position(|c| c.as_str() == class)
            && let Some(c) = self.upstream_errors.get(i)
        {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Prometheus text exposition, appended to `out`.
    pub fn render(&self, out: &mut String) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str(
            "# HELP llmux_requests_total Client model requests, by API and HTTP status class.\n\
             # TYPE llmux_requests_total counter\n",
        );
        for api in Api::ALL {
            for (ci, class) in STATUS_CLASSES.iter().enumerate() {
                let n = self
                    .requests
                    .get(api.index())
                    .and_then(|row| row.get(ci))
                    .map_or(0, get);
                if n > 0 || ci == 1 {
                    let _ = writeln!(
                        out,
                        "llmux_requests_total{{endpoint=\"{}\",status=\"{class}\"}} {n}",
                        api.label()
                    );
                }
            }
        }
        out.push_str(
            "# HELP llmux_upstream_errors_total Failed upstream attempts, by key-pool error class.\n\
             # TYPE llmux_upstream_errors_total counter\n",
        );
        for (class, c) in ErrorClass::ALL.iter().zip(&self.upstream_errors) {
            let _ = writeln!(
                out,
                "llmux_upstream_errors_total{{class=\"{}\"}} {}",
                class.as_str(),
                get(c)
            );
        }
        self.latency.render(
            out,
            "llmux_request_duration_seconds",
            "Arrival to last byte sent, per client model request.",
        );
        self.ttft.render(
            out,
            "llmux_time_to_first_byte_seconds",
            "Arrival to the first byte of the answer sent to the client (keep-alive comments excluded).",
        );
        let _ = write!(
            out,
            "# HELP llmux_tokens_total Tokens of finished requests (as reported, else estimated); cached is part of prompt, reasoning part of completion.\n\
             # TYPE llmux_tokens_total counter\n\
             llmux_tokens_total{{kind=\"prompt\"}} {}\n\
             llmux_tokens_total{{kind=\"completion\"}} {}\n\
             llmux_tokens_total{{kind=\"cached\"}} {}\n\
             llmux_tokens_total{{kind=\"reasoning\"}} {}\n\
             # HELP llmux_requests_estimated_total Requests whose tokens were estimated (the upstream reported none).\n\
             # TYPE llmux_requests_estimated_total counter\n\
             llmux_requests_estimated_total {}\n",
            get(&self.prompt_tokens),
            get(&self.completion_tokens),
            get(&self.cached_tokens),
            get(&self.reasoning_tokens),
            get(&self.estimated),
        );
        #[allow(clippy::cast_precision_loss)]
        let dollars = get(&self.cost_nanos) as f64 / 1e9;
        let _ = write!(
            out,
            "# HELP llmux_cost_dollars_total Cost of finished requests at the model_price in force.\n\
             # TYPE llmux_cost_dollars_total counter\n\
             llmux_cost_dollars_total {dollars}\n"
        );
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::default();
        h.observe_ms(20);
        h.observe_ms(700);
        h.observe_ms(500_000);
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.025\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"0.5\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"120\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 500.72\n"), "{out}");
        assert!(out.contains("x_count 3\n"), "{out}");
    }

    #[test]
    fn status_classes() {
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(499), 3);
        assert_eq!(status_class(503), 4);
        assert_eq!(status_class(0), 0);
        assert_eq!(status_class(999), 4);
    }

    #[test]
    fn errors_by_class() {
        let m = Metrics::default();
        m.upstream_error("timeout");
        m.upstream_error("timeout");
        m.upstream_error("no such class");
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("llmux_upstream_errors_total{class=\"timeout\"} 2\n"));
        assert!(out.contains("llmux_upstream_errors_total{class=\"rate_limited_transient\"} 0\n"));
    }
}
