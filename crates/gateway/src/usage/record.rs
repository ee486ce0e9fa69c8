//! What the request path hands to the usage store: one [`UsageRecord`] per client request and
//! one [`AttemptRecord`] per upstream attempt. Owned data, built after the fact, so recording
//! never borrows from the request. Text is `Arc<str>`: names come shared from the runtime
//! config (provider, upstream model, key ids) or are made once per request and shared by its
//! rows, and the SQLite writer binds them without copying.

use std::sync::Arc;

use crate::config::schema::Price;

use super::cost;

/// Token counts of one request. `prompt` includes cached prompt tokens and `completion`
/// includes reasoning tokens (OpenAI semantics, as in the protocol IR).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
    pub reasoning: u64,
    /// The upstream reported no usage and these counts were estimated (see [`Tokens::estimate`]).
    pub estimated: bool,
}

impl Tokens {
    /// Counts as the upstream reported them.
    pub fn reported(u: &protocol::ir::Usage) -> Tokens {
        Tokens {
            prompt: u.input_tokens,
            completion: u.output_tokens,
            cached: u.cache_read_tokens,
            reasoning: u.reasoning_tokens,
            estimated: false,
        }
    }

    /// For an upstream that reports no usage: about four characters per token (the heuristic
    /// uni-api uses for its `tpr` limit), rounded up, and the row is marked estimated.
    pub fn estimate(prompt_chars: usize, completion_chars: usize) -> Tokens {
        let t = |chars: usize| u64::try_from(chars.div_ceil(4)).unwrap_or(u64::MAX);
        Tokens {
            prompt: t(prompt_chars),
            completion: t(completion_chars),
            cached: 0,
            reasoning: 0,
            estimated: true,
        }
    }

    pub fn total(&self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// Field-wise maximum: streams report usage cumulatively, sometimes split over events
    /// (Anthropic's prompt in `message_start`, completion in `message_delta`).
    pub fn merge(&mut self, other: Tokens) {
        self.prompt = self.prompt.max(other.prompt);
        self.completion = self.completion.max(other.completion);
        self.cached = self.cached.max(other.cached);
        self.reasoning = self.reasoning.max(other.reasoning);
        self.estimated &= other.estimated;
    }
}

/// One client request, written when it has finished (stream included).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// When the request arrived, unix milliseconds ([`super::time::now_ms`]).
    pub at_ms: i64,
    pub request_id: Arc<str>,
    /// The client key's id ([`super::keys::key_id`]), never the secret.
    pub client_key: Arc<str>,
    /// `"POST /v1/chat/completions"` (uni-api's form).
    pub endpoint: Arc<str>,
    /// The model alias the client asked for.
    pub model: Arc<str>,
    /// Provider, upstream model and upstream key of the attempt that answered (or the last one
    /// tried); `None` when no upstream was reached.
    pub provider: Option<Arc<str>>,
    pub upstream_model: Option<Arc<str>>,
    /// [`super::keys::key_id`] of the upstream key.
    pub key_fingerprint: Option<Arc<str>>,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Upstream attempts made (0 when rejected before routing).
    pub attempts: u32,
    pub stream: bool,
    /// Arrival to last byte.
    pub latency_ms: u64,
    /// Arrival to the first byte sent to the client; `None` when nothing was sent.
    pub ttft_ms: Option<u64>,
    pub tokens: Tokens,
    /// The `model_price` entry in force for `model` ([`super::cost::PriceTable::lookup`]),
    /// stored with the row so later price changes do not rewrite history.
    pub price: Price,
    /// X-Forwarded-For first hop, else X-Real-IP, else the peer (uni-api's order).
    pub client_ip: Option<Arc<str>>,
    /// The request's only attempt, when it succeeded: stored in the request's own row rather
    /// than a row of its own (see [`InlineAttempt`]).
    pub inline_attempt: Option<InlineAttempt>,
}

/// The one successful attempt of a request answered at the first try — the common case —
/// kept in the request's row: its provider, upstream model, key, time and alias are the
/// request's, so only its status and latency need columns. The store's `llmux_all_attempts`
/// view gives these back as attempt rows next to those of `llmux_attempts` (failed attempts,
/// and every attempt of a request that failed over), so success rates still count one row per
/// attempt while the common request costs one insert instead of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineAttempt {
    /// Upstream HTTP status.
    pub status: Option<u16>,
    pub latency_ms: u64,
}

impl UsageRecord {
    /// Dollars, from the snapshotted price.
    pub fn cost(&self) -> f64 {
        cost::cost(&self.tokens, self.price)
    }

    pub fn success(&self) -> bool {
        self.status < 400
    }
}

/// One upstream attempt: what channel and key success rates (`/v1/stats`,
/// `/v1/channel_key_rankings`, smart key ordering) are computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub at_ms: i64,
    pub request_id: Arc<str>,
    pub client_key: Arc<str>,
    pub provider: Arc<str>,
    /// The alias requested (what `/v1/stats` groups by, with the provider).
    pub model: Arc<str>,
    pub upstream_model: Arc<str>,
    pub key_fingerprint: Option<Arc<str>>,
    pub success: bool,
    /// Upstream HTTP status; `None` when no response came (connect error, timeout).
    pub status: Option<u16>,
    /// The key pool's error class name (`rate_limit`, `timeout`, ...) for failures.
    pub error_class: Option<&'static str>,
    pub latency_ms: u64,
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn reported_usage_keeps_openai_semantics() {
        let u = protocol::ir::Usage {
            input_tokens: 100,
            output_tokens: 40,
            cache_read_tokens: 30,
            cache_write_tokens: 5,
            reasoning_tokens: 12,
        };
        let t = Tokens::reported(&u);
        assert_eq!(
            (t.prompt, t.completion, t.cached, t.reasoning),
            (100, 40, 30, 12)
        );
        assert_eq!(t.total(), 140);
        assert!(!t.estimated);
    }

    #[test]
    fn estimates_round_up_and_are_marked() {
        let t = Tokens::estimate(9, 0);
        assert_eq!((t.prompt, t.completion), (3, 0));
        assert!(t.estimated);
    }
}
