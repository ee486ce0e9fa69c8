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
//! Key-pool scenarios: quota scopes shared by several keys, a provider's
//! limit semantics, and a virtual clock for exact assertions.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use mock_upstream::{LimitFlavor, MockOptions, MockServer, ScopeSpec};
//!
//! let server = MockServer::start(MockOptions {
//!     flavor: LimitFlavor::OpenAi,
//!     scopes: vec![ScopeSpec::new("org-alpha", &["sk-a1", "sk-a2"]).rpm(60).tpm(40_000)],
//!     ..MockOptions::default()
//! })
//! .await?;
//! let now = Arc::new(AtomicU64::new(0));
//! let hand = Arc::clone(&now);
//! server.set_clock(Some(Arc::new(move || hand.load(Ordering::SeqCst))));
//! // ... traffic; then move time and look at what each key saw:
//! now.store(60_000, Ordering::SeqCst);
//! server.revoke_key("sk-a2");
//! let stats = server.key_stats();
//! # let _ = stats;
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
//! `POST /moderations`, and a minimal Anthropic `POST /messages` (buffered,
//! text only, any model; there so the Anthropic side of the limiter can be
//! exercised). Anything else gets OpenAI's
//! `404 {"error":{"message":"Invalid URL (POST /v1/xyz)",...}}`. Image `url`
//! results point back at the mock (`GET /mock-files/...`, no auth) and serve a
//! 1×1 PNG. With [`MockOptions::admin`], control routes live under `/mock/`.
//!
//! The key is read from `Authorization: Bearer`, else `x-api-key`
//! (Anthropic), `api-key` (Azure), `x-goog-api-key` or `?key=` (Gemini).
//!
//! # Request pipeline
//!
//! Each request, in order: is counted (and recorded when `record` is on);
//! waits `latency`; is routed (unknown → 404); is authenticated (missing key →
//! 401 with OpenAI's "You didn't provide an API key..." and `code: null`;
//! a key not in a non-empty `api_keys` (scoped and runtime-flagged keys count
//! as listed), or a revoked key → the flavour's invalid-key answer, for
//! OpenAI 401 `invalid_api_key` with the key masked as first 8 + `*`… + last
//! 4 characters); is answered "out of credit" if the key is exhausted; is
//! shed if the provider is overloaded; takes the first queued [`Fault`] that
//! matches its model and key; is counted against its quota scope (all
//! dimensions, all or nothing); then the fault (if any), the 429, or the
//! endpoint answers; finally an admitted request's token charge is
//! reconciled with its real `usage`, and the key's counters are updated.
//! Malformed JSON gets OpenAI's 400 "We could not parse the JSON body of your
//! request...". Faults always answer OpenAI-shaped.
//!
//! Every OpenAI-dialect response carries `x-request-id` (unique),
//! `openai-organization` (the key's scope, else `org-mock`),
//! `openai-processing-ms`, `openai-version: 2020-10-01` and rate-limit
//! headers (see below). Gemini-flavour responses carry only `x-request-id`;
//! `/v1/messages` responses carry `request-id`, `anthropic-organization-id`
//! and the `anthropic-ratelimit-*` headers.
//!
//! # Rate limits
//!
//! A [`ScopeSpec`] is a quota scope: its keys drain one budget (requests per
//! minute, tokens per minute, requests per day; `None` = not enforced, and
//! reported as 10,000 RPM / 1,000,000 TPM). Keys outside every scope are
//! unlimited (no state, no lock) unless `rpm_per_key` is set, in which case
//! each such key is a scope of its own named `org-mock`. Time comes from the
//! wall clock or from [`MockServer::set_clock`], anchored at
//! [`MockOptions::clock_origin`]; all arithmetic is exact integer
//! milliseconds, so a test can assert every number. Token costs use the same
//! counts the endpoints report in `usage` (chat: ceil(content chars / 4);
//! embeddings: per input; other endpoints: ceil(body bytes / 4)).
//!
//! Every flavour answers a refused request with the provider's own body and
//! headers, and its "retry in" hint is exact: waiting that long (with no
//! other traffic) succeeds, a millisecond less does not.
//!
//! **OpenAI** ([`LimitFlavor::OpenAi`], the default). Continuous token
//! buckets: RPM refills at RPM/60 per second, TPM at TPM/60, RPD at RPD/86400.
//! A request is charged `max(max_completion_tokens or max_tokens, prompt
//! tokens)` at admission (OpenAI: "the maximum of max_tokens and the estimated
//! number of tokens based on the character count"), and the charge is
//! replaced by the real `prompt + completion` once the answer is built.
//! Admitted requests count whatever their outcome (400s, faults); refused
//! ones also do with [`MockOptions::refused_requests_count`]. Headers:
//! `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, resets as Go
//! durations (`20s`, `1m0s`, `12.36s`, `14m24s`), showing the state after
//! the admission charge. 429: `type` `requests` or `tokens`, `code`
//! `rate_limit_exceeded`, "Rate limit reached for MODEL in organization ORG
//! on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again
//! in 20s. Visit <https://platform.openai.com/account/rate-limits> to learn
//! more." (`tokens per min (TPM)`, `requests per day (RPD)`; MODEL is the
//! request's `model` or `default`), with `retry-after` (seconds, rounded up)
//! and `retry-after-ms`. A request larger than the whole TPM gets "Request
//! too large for MODEL in organization ORG on tokens per min (TPM): Limit L,
//! Requested R. The input or output tokens must be reduced in order to run
//! successfully. Visit ..." and no `retry-after`. Out of credit: 429
//! `insufficient_quota`. Overload: 503 "The engine is currently overloaded,
//! please try again later".
//!
//! **Groq** ([`LimitFlavor::Groq`]). OpenAI's buckets and bodies in Groq's
//! words: "Rate limit reached for model \`MODEL\` in organization \`ORG\`
//! service tier \`on_demand\` on requests per minute (RPM): Limit 2, Used 2,
//! Requested 1. Please try again in 30s. Need more tokens? Upgrade to Dev
//! Tier today at <https://console.groq.com/settings/billing>" (no `param`);
//! too large is a 413 "Request too large for model ..., please reduce your
//! message size and try again. ..."; invalid key is 401 "Invalid API Key".
//! `x-ratelimit-*-requests` report the daily budget (RPD; RPM when no RPD is
//! set), `*-tokens` the TPM; `retry-after` (seconds) only on 429, no
//! `retry-after-ms`.
//!
//! **Azure** ([`LimitFlavor::Azure`]). Requests in fixed 10-second windows
//! of RPM/6 (at least 1), tokens in fixed minute windows charged `prompt +
//! max_tokens` on arrival and never reconciled; windows align to absolute
//! time. Headers `x-ratelimit-{limit,remaining}-{requests,tokens}` (per
//! minute, no resets). 429 `{"error":{"code":"429","message":"Requests to the
//! ChatCompletions_Create Operation under Azure OpenAI API version V have
//! exceeded call rate limit of your current OpenAI S0 pricing tier. Please
//! retry after N seconds. Please go here: https://aka.ms/oai/quotaincrease if
//! you would like to further increase the default rate limit."}}` ("token
//! rate limit" for tokens; V is the `api-version` query parameter, default
//! 2024-10-21; the operation follows the route; a request over the whole TPM
//! is told 86400 seconds), with `retry-after` and `retry-after-ms`. Invalid
//! key: 401 `{"error":{"code":"401","message":"Access denied due to invalid
//! subscription key or wrong API endpoint. ..."}}`.
//!
//! **Gemini** ([`LimitFlavor::Gemini`]). Fixed minute windows starting at
//! second :00 for requests and input tokens, and a daily request window
//! ending at midnight America/Los_Angeles (US DST rules, so the days around
//! the switches last 23 and 25 hours). No rate-limit headers at all. 429
//! (Google's field order, two-space indentation):
//! `{"error":{"code":429,"message":"You exceeded your current quota, please
//! check your plan and billing details. For more information on this error,
//! head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor
//! your current usage, head to: https://ai.dev/usage?tab=rate-limit. \n*
//! Quota exceeded for metric: generativelanguage.googleapis.com/
//! generate_content_free_tier_requests, limit: 15, model: MODEL\nPlease retry
//! in 20.045s.","status":"RESOURCE_EXHAUSTED","details":[QuotaFailure
//! {violations:[{quotaMetric, quotaId, quotaDimensions{location:"global",
//! model}, quotaValue:"15"}]}, Help{links}, RetryInfo{retryDelay:"20s"}]}}`;
//! quotaIds `GenerateRequestsPerMinutePerProjectPerModel-FreeTier`,
//! `GenerateContentInputTokensPerModelPerMinute-FreeTier` and
//! `GenerateRequestsPerDayPerProjectPerModel-FreeTier`; the message has
//! millisecond precision, `retryDelay` whole seconds (truncated). Invalid
//! key: 400 `INVALID_ARGUMENT` with `ErrorInfo.reason` `API_KEY_INVALID`.
//! Out of credit: the 429 with "limit: 0" violations. Overload: 503
//! `UNAVAILABLE` "The model is overloaded. Please try again later.".
//!
//! **Anthropic** ([`LimitFlavor::Anthropic`]). Token buckets for RPM, input
//! tokens (ITPM = `tpm`, charged the prompt) and output tokens (OTPM = `tpm`,
//! charged `max_tokens` at admission and reconciled to the real output).
//! On `/v1/messages` (in every flavour) the headers are
//! `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,
//! remaining,reset}` with RFC 3339 resets (`tokens` = the more restrictive of
//! input and output; other flavours report their one token bucket in all
//! three), and errors are Anthropic's: 429 `rate_limit_error` "This request
//! would exceed the rate limit for your organization (ORG) of 20,000 input
//! tokens per minute. ..." with `retry-after`, 401 `authentication_error`
//! "invalid x-api-key", 400 "Your credit balance is too low to access the
//! Anthropic API. ...", 529 `overloaded_error` "Overloaded".
//!
//! # Key health and counters
//!
//! `revoked_keys` / [`MockServer::revoke_key`] and `exhausted_keys` /
//! [`MockServer::exhaust_key`] flip keys at runtime (and back with
//! `restore_key` / `replenish_key`); [`MockServer::set_overloaded`] and
//! [`MockServer::overload_next`] start provider-wide overload storms, which
//! do not count against any limit. [`MockServer::key_stats`] counts, per key,
//! requests received and answered 2xx / 429 / 401 (or Gemini's 400
//! `API_KEY_INVALID`) / other.
//!
//! # Pacing
//!
//! `latency` is slept before every response (time to first token);
//! `token_delay` adds generation time per output token: a buffered chat or
//! messages answer waits `completion tokens of one choice × token_delay`, a
//! stream waits it before each token-bearing event (on top of
//! `chunk_delay`).
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
mod clock;
mod embeddings;
mod errors;
mod flavor;
mod images;
mod keystate;
mod messages;
mod models;
mod moderations;
mod multipart;
mod ratelimit;
mod server;
mod util;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::Shared;

/// A group of keys draining one budget (an OpenAI organization, an Anthropic
/// organization, a Gemini project, an Azure deployment).
///
/// `None` limits are not enforced (headers then report 10,000 RPM and
/// 1,000,000 TPM). A key listed in several scopes belongs to the first.
#[derive(Clone, Debug)]
pub struct ScopeSpec {
    /// E.g. `"org-alpha"`; sent as `openai-organization` (OpenAI, Groq and
    /// Azure flavours) or `anthropic-organization-id` (`/v1/messages`), and
    /// quoted in 429 messages.
    pub name: String,
    pub keys: Vec<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens per minute (Gemini: input tokens; Anthropic flavour: both the
    /// input and the output token limit).
    pub tpm: Option<u64>,
    /// Requests per day.
    pub rpd: Option<u32>,
}

impl ScopeSpec {
    /// A scope with no limits yet; see [`ScopeSpec::rpm`] and friends.
    pub fn new(name: &str, keys: &[&str]) -> ScopeSpec {
        ScopeSpec {
            name: name.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
            rpm: None,
            tpm: None,
            rpd: None,
        }
    }

    pub fn rpm(mut self, n: u32) -> ScopeSpec {
        self.rpm = Some(n);
        self
    }

    pub fn tpm(mut self, n: u64) -> ScopeSpec {
        self.tpm = Some(n);
        self
    }

    pub fn rpd(mut self, n: u32) -> ScopeSpec {
        self.rpd = Some(n);
        self
    }
}

/// Whose rate-limit semantics, headers and error bodies the mock reproduces.
/// See the crate docs ("Rate limits") for each one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitFlavor {
    /// Continuous token buckets (RPM/60 per second), TPM charged at admission
    /// and reconciled, failed requests count, `x-ratelimit-*` headers.
    #[default]
    OpenAi,
    /// Like OpenAI, but `x-ratelimit-*-requests` report the daily budget and
    /// `retry-after` comes only with a 429.
    Groq,
    /// 10-second RPM sub-windows, minute token windows, Azure bodies.
    Azure,
    /// Minute windows starting at :00, daily window ending at midnight
    /// America/Los_Angeles, no rate-limit headers, `RESOURCE_EXHAUSTED`.
    Gemini,
    /// Token buckets for RPM, input and output tokens per minute.
    Anthropic,
}

impl std::str::FromStr for LimitFlavor {
    type Err = String;

    fn from_str(s: &str) -> Result<LimitFlavor, String> {
        match s.to_ascii_lowercase().as_str() {
            "openai" => Ok(LimitFlavor::OpenAi),
            "groq" => Ok(LimitFlavor::Groq),
            "azure" => Ok(LimitFlavor::Azure),
            "gemini" => Ok(LimitFlavor::Gemini),
            "anthropic" => Ok(LimitFlavor::Anthropic),
            other => Err(format!(
                "unknown flavor {other:?} (expected openai, groq, azure, gemini or anthropic)"
            )),
        }
    }
}

/// Per-key counters, by the status the mock answered (see
/// [`MockServer::key_stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyStats {
    /// Requests that carried this key.
    pub received: u64,
    /// Answered 2xx.
    pub ok: u64,
    /// Answered 429 (rate limits, but also `insufficient_quota`).
    pub rate_limited: u64,
    /// Answered 401, or Gemini's 400 `API_KEY_INVALID`.
    pub unauthorized: u64,
    /// Anything else, including connection resets.
    pub other_errors: u64,
}

/// How a [`MockServer`] behaves.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Served by `GET /v1/models`; requests naming any other model get 404.
    pub models: Vec<String>,
    /// Accepted keys; empty accepts any non-empty key. Keys of `scopes`,
    /// `revoked_keys` and `exhausted_keys` (and runtime-flagged keys) are
    /// known to the provider too.
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
    /// Quota scopes; keys outside every scope follow `rpm_per_key`.
    pub scopes: Vec<ScopeSpec>,
    /// Whose limit semantics, headers and bodies to reproduce.
    pub flavor: LimitFlavor,
    /// Keys answered 401 `invalid_api_key` (Gemini flavour: 400
    /// `INVALID_ARGUMENT`, reason `API_KEY_INVALID`).
    pub revoked_keys: Vec<String>,
    /// Keys out of credit: 429 `insufficient_quota` (Gemini: 429 with
    /// "limit: 0"; `/v1/messages`: 400 "Your credit balance is too low").
    pub exhausted_keys: Vec<String>,
    /// Generation time per output token: buffered chat answers wait
    /// `completion tokens × token_delay` (per choice) before their headers;
    /// streams wait it before each token-bearing event (on top of
    /// `chunk_delay`). `latency` is the time to first token.
    pub token_delay: Duration,
    /// OpenAI: "unsuccessful requests contribute to your per-minute limit".
    /// Requests the limiter admitted always count, whatever their outcome;
    /// with this on, refused ones (429) also spend one request of their
    /// scope's RPM bucket (OpenAI and Groq flavours), so a retry storm keeps
    /// a scope locked. The retry hint then includes that spend. Off by
    /// default, which matches the observed hints ("Limit 3, Used 3,
    /// Requested 1. Please try again in 20s").
    pub refused_requests_count: bool,
    /// Serve control routes under `/mock/` (not counted, recorded or
    /// limited), so a running binary can be driven like the methods of
    /// [`MockServer`]: `POST /mock/keys/{key}/revoke` (also `restore`,
    /// `exhaust`, `replenish`), `POST /mock/overload?on=true|false`,
    /// `POST /mock/overload?next=N`, `GET /mock/key-stats` (`{"keys":[{"key",
    /// "received","ok","rate_limited","unauthorized","other_errors"}]}`).
    pub admin: bool,
    /// The wall-clock instant that clock value 0 stands for (see
    /// [`MockServer::set_clock`]); it places Gemini's minute and Pacific-day
    /// windows and Anthropic's RFC 3339 resets. Default: when the server
    /// started.
    pub clock_origin: Option<SystemTime>,
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
            scopes: Vec::new(),
            flavor: LimitFlavor::OpenAi,
            revoked_keys: Vec::new(),
            exhausted_keys: Vec::new(),
            token_delay: Duration::ZERO,
            refused_requests_count: false,
            admin: false,
            clock_origin: None,
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

    /// From now on `key` is answered as revoked (401; Gemini: 400).
    pub fn revoke_key(&self, key: &str) {
        self.shared.keys.set_revoked(key, true);
    }

    /// Undoes [`MockServer::revoke_key`] (and `revoked_keys`).
    pub fn restore_key(&self, key: &str) {
        self.shared.keys.set_revoked(key, false);
    }

    /// From now on `key` is out of credit (429 `insufficient_quota`).
    pub fn exhaust_key(&self, key: &str) {
        self.shared.keys.set_exhausted(key, true);
    }

    /// Undoes [`MockServer::exhaust_key`] (and `exhausted_keys`).
    pub fn replenish_key(&self, key: &str) {
        self.shared.keys.set_exhausted(key, false);
    }

    /// Provider-wide overload storm: while on, every authenticated request is
    /// answered 503 "The engine is currently overloaded, please try again
    /// later" (Gemini: 503 `UNAVAILABLE`; `/v1/messages`: 529
    /// `overloaded_error`), without counting against any limit. Turning it
    /// off also cancels [`MockServer::overload_next`].
    pub fn set_overloaded(&self, on: bool) {
        self.shared.keys.set_overloaded(on);
    }

    /// Overloads only the next `count` authenticated requests.
    pub fn overload_next(&self, count: u64) {
        self.shared.keys.overload_next(count);
    }

    /// Per-key counters: requests received, answered 2xx, 429, 401, other.
    ///
    /// Counting is on when `record` is, when anything key-related is
    /// configured (scopes, `rpm_per_key`, revoked or exhausted keys), or after
    /// the first runtime key change; a bare load-test server (`record: false`,
    /// nothing configured) counts nothing and takes no lock.
    pub fn key_stats(&self) -> BTreeMap<String, KeyStats> {
        self.shared.keys.snapshot()
    }

    /// Virtual time for deterministic limit tests: when set, the limiter reads
    /// this clock (milliseconds since [`MockOptions::clock_origin`]) instead of
    /// the wall clock. Set it before traffic: switching clocks mid-run moves
    /// time by the difference. `None` goes back to the wall clock.
    pub fn set_clock(&self, clock: Option<Arc<dyn Fn() -> u64 + Send + Sync>>) {
        self.shared.clock.set(clock);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
