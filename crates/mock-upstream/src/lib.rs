//! A faithful, scriptable fake of the OpenAI REST API, for llmux's end-to-end
//! tests and load benchmarks.
//!
//! The wire format (field names, error bodies, headers, SSE framing) follows
//! OpenAI's API reference and the official SDK's types; everything the mock
//! *invents* (reply text, token counts, vectors, audio bytes) is
//! deterministic and documented below, so tests can assert exact values.
//!
//! # Quick start
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
//!
//! let server = MockServer::start(MockOptions::default()).await?;
//! let base = server.base_url(); // "http://127.0.0.1:PORT/v1"
//! server.push_fault(Fault::new(FaultKind::ServerError).for_model("gpt-4o"));
//! // ... point the gateway at `base`, send traffic ...
//! assert_eq!(server.request_count(), server.requests().len());
//! # Ok(()) }
//! ```
//!
//! Dropping the [`MockServer`] stops it and closes every open connection.
//!
//! # Endpoints
//!
//! All under `/v1`: `GET /models`, `GET /models/{id}`, `POST /chat/completions`
//! (buffered and `stream: true`), `POST /embeddings`, `POST /images/generations`,
//! `POST /audio/transcriptions`, `POST /audio/translations`, `POST /audio/speech`,
//! `POST /moderations`. Anything else gets OpenAI's
//! `404 {"error":{"message":"Invalid URL (POST /v1/xyz)",...}}`. Image `url`
//! results point back at the mock (`GET /mock-files/...`, no auth) and serve a
//! 1×1 PNG.
//!
//! # Request pipeline
//!
//! Each request, in order: is counted (and recorded when `record` is on);
//! waits `latency`; is routed (unknown → 404); is authenticated (missing key →
//! 401 with OpenAI's "You didn't provide an API key..." and `code: null`;
//! a key not in a non-empty `api_keys` → 401 `invalid_api_key`, key masked as
//! first 8 + `*`… + last 4 characters); takes the first queued [`Fault`]
//! that matches its model and key; is counted against the per-key rate limit;
//! then the fault (if any) or the endpoint answers. Malformed JSON gets
//! OpenAI's 400 "We could not parse the JSON body of your request...".
//!
//! Every response carries `x-request-id` (unique), `openai-organization:
//! org-mock`, `openai-processing-ms`, `openai-version: 2020-10-01` and the six
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers (resets as
//! Go durations such as `17ms`, `1.5s`, `6m0s`).
//!
//! # Rate limits
//!
//! With `rpm_per_key: Some(n)` each bearer key has a bucket of `n` requests
//! that refills continuously at `n`/60 per second (OpenAI's model). A request
//! that finds the bucket empty gets 429 with `type: "requests"`, `code:
//! "rate_limit_exceeded"`, the message "Rate limit reached for MODEL in
//! organization org-mock on requests per min (RPM): Limit n, Used n,
//! Requested 1. Please try again in 20s. Visit ..." (MODEL is the request's
//! `model`, or `default` when it has none), and `retry-after` (whole seconds,
//! rounded up) and `retry-after-ms` headers. Headers report the bucket:
//! `remaining-requests` counts down, `reset-requests` is the time to refill
//! completely. Without `rpm_per_key` nothing is tracked (no lock on the hot
//! path): headers always say limit 10000, remaining 9999, reset `6ms`. The
//! token headers report a never-enforced 1,000,000 tokens/minute, charging
//! each request ceil(body bytes / 4) tokens.
//!
//! # Deterministic rules
//!
//! **Reply text.** The scripted reply ([`MockOptions::reply`], overridden at
//! runtime by [`MockServer::set_reply`]) if set. Otherwise `"You said: "`
//! followed by the first 32 whitespace-separated words of the *last* `user`
//! message (text parts of array content joined by a space), re-joined with
//! single spaces — e.g. `"Hi   there"` → `"You said: Hi there"`. With no user
//! text the reply is `"Hello! This is a mock reply."`. Every one of the `n`
//! choices carries the same text.
//!
//! **Tokens.** `prompt_tokens` = ceil(total characters of all message
//! contents / 4), at least 1 (Unicode scalar values; for array content only
//! the `text` parts count). `completion_tokens` = number of whitespace
//! separated words in the returned content, times `n`. With tool calls,
//! `completion_tokens` = ceil(characters of all argument strings of one
//! choice / 4) (at least 1), times `n`. `total_tokens` = the sum; all detail
//! fields are 0. `max_tokens` / `max_completion_tokens` cut the reply to that
//! many words (`finish_reason: "length"`).
//!
//! **Streaming.** Events are `data: {json}\n\n`: first a chunk whose delta is
//! `{"role":"assistant","content":"","refusal":null}`, then one chunk per word
//! (a word plus the whitespace before it, so the deltas concatenate to exactly
//! the reply), then an empty delta with the `finish_reason`, then — only with
//! `stream_options.include_usage` — a chunk with `"choices":[]` and the usage
//! (every earlier chunk then has `"usage":null`), then `data: [DONE]`.
//! `chunk_delay` is slept between events, each event being its own HTTP
//! chunk (with no delay the whole stream is written as one chunk, which no
//! client can tell apart). With `n > 1` each step is emitted once per choice
//! index. Content type `text/event-stream; charset=utf-8`.
//!
//! **Tool calls.** When the request has function `tools`, `tool_choice` is not
//! `"none"`, and either the last message is a user message containing
//! "weather" (any case) or `tool_choice` is `"required"` or names a function:
//! a named `tool_choice` calls that function; otherwise, if the user text
//! contains "parallel" and `parallel_tool_calls` is not `false`, every function
//! tool is called; otherwise only the first. Content is `null`,
//! `finish_reason` is `"tool_calls"`, ids are `call_` + 24 alphanumerics, and
//! `arguments` is a JSON object with one entry per schema property: the first
//! `enum` value if any, else `"mock"` (string), `1` (integer/number), `true`,
//! `[]`, `{}` or `null`. Streamed, the first delta of each call carries
//! `index`, `id`, `type`, `function{name, arguments:""}` (the first call's
//! delta also has `role`, `content:null`, `refusal:null`); the arguments follow
//! in 8-character pieces as `{index, function{arguments}}` deltas.
//!
//! **Embeddings.** Each input (string, or token-id array) seeds a SplitMix64
//! generator with its FNV-1a hash; the vector is unit length, 1536 wide
//! (3072 for `*-3-large`), and `dimensions: d` returns the first `d`
//! components renormalised. `prompt_tokens` = ceil(chars / 4) per string
//! (at least 1) or the number of token ids. `encoding_format: "base64"` gives
//! little-endian f32 bytes in standard base64.
//!
//! **Images.** `n` results; `url` (default for DALL·E) or `b64_json` (always
//! for `gpt-image-*`), both the same 1×1 PNG; `revised_prompt` (= the prompt)
//! only for `dall-e-3`.
//!
//! **Transcriptions/translations.** Multipart `file` and `model` are required.
//! `text` is `"mock transcription of FILENAME (N bytes) by MODEL"`
//! (`translation` for `/audio/translations`), where N is the uploaded file's
//! exact byte length. `duration` = N / 16000 seconds (2 decimals).
//! `response_format` `json` (default; `{"text", "usage"}`), `text`, `srt`,
//! `vtt` or `verbose_json` (`task`, `language`, `duration`, `text`, one segment,
//! `usage`, and `words` when `timestamp_granularities[]=word`).
//!
//! **Speech.** Body length = min(1000 × input characters, 1 MiB); byte `i`
//! is `i % 251`; sent as a stream of 4096-byte chunks (with `chunk_delay`
//! between them). Content type by `response_format`: `audio/mpeg` (mp3,
//! default), `audio/opus`, `audio/aac`, `audio/flac`, `audio/wav`, `audio/pcm`.
//!
//! **Moderations.** One result per input string (a multi-modal part array is
//! one input). An input is flagged iff its text contains `"kill"` in any case
//! or `"FLAG_ME"` exactly; flagged inputs have `categories.violence = true`
//! and `category_scores.violence = 0.98`. All 13 OpenAI categories
//! (including slashed ones such as `self-harm/intent`) are always present.
//!
//! **Models.** Unknown models get 404 `model_not_found` ("The model `x` does
//! not exist or you do not have access to it.") on every endpoint that takes
//! one; `GET /v1/models` lists [`MockOptions::models`].
//!
//! # Faults
//!
//! [`MockServer::push_fault`] queues a [`Fault`]; each request takes the
//! *first queued fault that matches it* (`only_model` compares with the
//! request's `model`, `only_key` with its bearer key), so non-matching faults
//! wait for their request. See [`FaultKind`] for what each does.

mod audio;
mod body;
mod chat;
mod embeddings;
mod errors;
mod images;
mod models;
mod moderations;
mod multipart;
mod ratelimit;
mod server;
mod util;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::Shared;

/// How a [`MockServer`] behaves.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Served by `GET /v1/models`; requests naming any other model get 404.
    pub models: Vec<String>,
    /// Accepted bearer keys; empty accepts any non-empty key.
    pub api_keys: Vec<String>,
    /// Per-key requests-per-minute limit, enforced with real 429s.
    pub rpm_per_key: Option<u32>,
    /// Delay before every response's headers.
    pub latency: Duration,
    /// Delay between streamed chunks (SSE events, speech chunks).
    pub chunk_delay: Duration,
    /// Fixed assistant reply; `None` derives it from the last user message.
    pub reply: Option<String>,
    /// Keep every request for [`MockServer::requests`].
    pub record: bool,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            models: [
                "gpt-4o-mini",
                "gpt-4o",
                "text-embedding-3-small",
                "whisper-1",
                "tts-1",
                "dall-e-3",
                "omni-moderation-latest",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            api_keys: Vec::new(),
            rpm_per_key: None,
            latency: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            reply: None,
            record: true,
        }
    }
}

/// A request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// In arrival order, names lower-case.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl RecordedRequest {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The key from `Authorization: Bearer <key>`.
    pub fn bearer(&self) -> Option<&str> {
        let (scheme, key) = self.header("authorization")?.split_once(' ')?;
        let key = key.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
    }
}

/// A scripted misbehaviour for one upcoming request.
#[derive(Clone, Debug)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only a request whose `model` is this.
    pub only_model: Option<String>,
    /// Only a request authenticated with this bearer key.
    pub only_key: Option<String>,
}

/// What a [`Fault`] does to the request that takes it.
#[derive(Clone, Debug)]
pub enum FaultKind {
    /// 429 `rate_limit_exceeded` (type `requests`), `retry-after` /
    /// `retry-after-ms`, `x-ratelimit-remaining-requests: 0`.
    RateLimited { retry_after_secs: u64 },
    /// 429 with type and code `insufficient_quota`.
    InsufficientQuota,
    /// 401 `invalid_api_key` for the key that was sent.
    InvalidKey,
    /// 500 "The server had an error while processing your request. Sorry about that!"
    ServerError,
    /// 503 "The engine is currently overloaded, please try again later".
    Overloaded,
    /// 400 `invalid_request_error` with this message.
    BadRequest { message: String },
    /// 400 `context_length_exceeded` (param `messages`).
    ContextLengthExceeded,
    /// Any raw response.
    Status {
        status: u16,
        body: String,
        content_type: String,
    },
    /// Answer normally, but only after this extra delay.
    Delay(Duration),
    /// Close the connection without any response.
    ResetConnection,
    /// Streams (chat SSE, speech): send this many chunks, then drop the
    /// connection. Buffered responses: send the headers and the first half
    /// of the body, then drop the connection.
    DropMidStream { after_chunks: usize },
    /// Chat: 200 with empty assistant content, no tool calls,
    /// `completion_tokens: 0`. Other endpoints answer normally.
    EmptyReply,
}

impl Fault {
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            only_model: None,
            only_key: None,
        }
    }

    /// Restrict to requests for model `m`.
    pub fn for_model(mut self, m: &str) -> Fault {
        self.only_model = Some(m.to_owned());
        self
    }

    /// Restrict to requests authenticated with key `k`.
    pub fn for_key(mut self, k: &str) -> Fault {
        self.only_key = Some(k.to_owned());
        self
    }
}

impl From<FaultKind> for Fault {
    fn from(kind: FaultKind) -> Fault {
        Fault::new(kind)
    }
}

/// A running mock; dropping it shuts the server and its connections down.
pub struct MockServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Starts on `127.0.0.1` with an ephemeral port.
    pub async fn start(opts: MockOptions) -> std::io::Result<MockServer> {
        MockServer::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), opts).await
    }

    /// Starts on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, opts: MockOptions) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts, addr));
        let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared)));
        Ok(MockServer { shared, addr, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        let ip = self.addr.ip();
        if ip.is_unspecified() {
            format!("http://127.0.0.1:{}/v1", self.addr.port())
        } else {
            format!("http://{}/v1", self.addr)
        }
    }

    /// Recorded requests in arrival order (empty when `record` is off).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Requests received so far, recorded or not.
    pub fn request_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Queues a fault for the next request that matches it.
    pub fn push_fault(&self, fault: Fault) {
        self.shared.push_fault(fault);
    }

    /// Replaces the reply text (`None` = derive from the last user message).
    pub fn set_reply(&self, text: Option<String>) {
        self.shared.set_reply(text);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
