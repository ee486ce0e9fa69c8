//! The attempt loop: try candidates in order, each with a key its pool chooses; every upstream
//! outcome is classified and fed back to the pool; rate limits, server errors, overload,
//! timeouts and network errors move on to another key or channel, while bad requests and
//! context-length errors are returned at once. Before the first byte reaches the client an
//! attempt may be retried elsewhere; after it, never. When no key can serve now, the request
//! waits (within its deadline) for the earliest one, or gets a 429 with `Retry-After`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use protocol::body::{Edit, RequestPeek};
use protocol::convert::dispatch::{self, EncodeCtx};
use protocol::ir::{ChatRequest, Format};

use crate::app::App;
use crate::config::schema::AutoRetry;
use crate::error::ApiError;
use crate::keypool::classify::{self, Classified, ErrorClass};
use crate::keypool::limits::Cost;
use crate::keypool::{Acquire, Lease, Observed, Observer, Ticket, ratelimit_headers};
use crate::providers::client::UpstreamBody;
use crate::providers::demo;
use crate::providers::engine::Engine;
use crate::providers::upstream::Wire;
use crate::providers::urls::Endpoint;
use crate::providers::{media, suffixes, upstream};
use crate::routing::answer::{self, Verdict};
use crate::routing::plan::{self, PlanInput};
use crate::routing::timeouts::{AttemptFacts, Timeouts};
use crate::runtime::{Candidate, Channel, ClientKey, Runtime};
use crate::server::body::{RespBody, full};
use crate::server::relay::Relay;
use crate::server::transcode::{Conversion, StreamTranscoder, convert_body};
use crate::usage::{AttemptOutcome, RequestLog, Tokens};

/// Largest upstream error body read (the rest is dropped).
const MAX_ERROR_BODY: usize = 256 * 1024;
/// Largest first stream event held back for validation.
const MAX_FIRST_EVENT: usize = 1024 * 1024;
/// Largest upstream answer converted to another format in one piece.
const MAX_CONVERTED_BODY: usize = 64 * 1024 * 1024;
/// Completion tokens reserved when the client sets no max_tokens.
const DEFAULT_OUTPUT_RESERVE: u64 = 1024;

/// A JSON request to forward: its bytes and what was peeked from them.
pub struct JsonRequest {
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub peek: RequestPeek,
    /// The API format the client speaks (errors and answers are rendered in it).
    pub client: Format,
    /// The client's request headers (`passthrough_request_headers` copies some upstream).
    pub headers: HeaderMap,
    /// Client headers passed on to upstreams of the client's own format (`anthropic-version`,
    /// `anthropic-beta`).
    pub forward_headers: Vec<(HeaderName, HeaderValue)>,
    /// Gemini clients calling `streamGenerateContent` without `alt=sse` get a JSON array.
    pub json_array: bool,
    /// The client request's usage record (off for llmux's own requests).
    pub log: RequestLog,
}

impl JsonRequest {
    pub fn new(endpoint: Endpoint, body: Bytes, peek: RequestPeek, client: Format) -> Self {
        JsonRequest {
            endpoint,
            body,
            peek,
            client,
            headers: HeaderMap::new(),
            forward_headers: Vec::new(),
            json_array: false,
            log: RequestLog::off(),
        }
    }
}

/// What the attempt loop needs to know about the request beyond its candidates.
pub struct RequestCtx<'a> {
    pub endpoint: Endpoint,
    /// The client asked for a stream.
    pub stream: bool,
    /// Body size, when known (a streamed upload is not).
    pub body_len: Option<u64>,
    pub headers: &'a HeaderMap,
    /// The request's usage record: attempts, tokens, status (and so the key's credits).
    pub log: RequestLog,
}

/// The path the client called, as `exclude_endpoints` names it.
pub fn client_path(endpoint: Endpoint, client: Format) -> &'static str {
    match (endpoint, client) {
        (Endpoint::ChatCompletions, Format::Anthropic) => "/v1/messages",
        (Endpoint::ChatCompletions, Format::OpenAiResponses) => "/v1/responses",
        (Endpoint::ChatCompletions, Format::Gemini) => "/v1beta/models",
        (e, _) => e.path(),
    }
}

/// Why one attempt did not produce an answer the client can have.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    /// How the pool classified it (None: not an upstream answer, e.g. an engine not served).
    class: Option<ErrorClass>,
    message: String,
    /// The upstream's own error body, relayed verbatim when it is the only attempt.
    body: Option<Bytes>,
    /// The format `body` is in.
    format: Option<Format>,
    /// The upstream's HTTP status, when it answered (a `200` whose content failed included).
    upstream: Option<u16>,
}

enum Outcome {
    /// The client's answer; with the error class when it is an upstream error not retried.
    Done(Response<RespBody>, Option<ErrorClass>),
    Retry(Failure),
}

/// What the loop does for one candidate: answer in process, send upstream, or pass on it.
pub enum Prepared {
    Answer(Response<RespBody>),
    Upstream(Send),
    /// This candidate cannot serve the request (say why); the loop moves on.
    Unserved(String),
}

/// What one attempt sends.
pub struct Send {
    pub endpoint: Endpoint,
    pub body: RespBody,
    pub content_type: HeaderValue,
    /// The client asked for an event stream.
    pub wants_stream: bool,
    /// The wire format the upstream answers in.
    pub upstream: Wire,
    /// Set when the upstream's format differs from the client's.
    pub convert: Option<Conversion>,
    /// Extra request headers (before the provider's own `headers`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// A Gemini upstream streams a JSON array instead of SSE (passed through to a Gemini
    /// client that asked for one).
    pub json_array: bool,
    /// The body bytes, kept for request signing (AWS SigV4).
    pub sign_payload: Option<Bytes>,
    /// llmux added `stream_options.include_usage`: drop the usage chunk from the answer.
    pub strip_usage: bool,
}

impl Send {
    /// Bytes forwarded to an upstream of the client's own format.
    pub fn same_format(
        endpoint: Endpoint,
        body: RespBody,
        wants_stream: bool,
        format: Format,
    ) -> Self {
        Send {
            endpoint,
            body,
            content_type: HeaderValue::from_static("application/json"),
            wants_stream,
            upstream: Wire::Api(format),
            convert: None,
            headers: Vec::new(),
            json_array: false,
            sign_payload: None,
            strip_usage: false,
        }
    }
}

/// Upper bound of attempts for one request, as uni-api: `#candidates + min(10, 2·Σkeys)` (a
/// single provider with a single key gets three tries), or `AUTO_RETRY: N` + 1.
fn attempt_budget(rt: &Runtime, candidates: &[Candidate], auto_retry: AutoRetry) -> usize {
    let total_keys: usize = candidates
        .iter()
        .map(|c| rt.channels[c.channel].keys.len().max(1))
        .sum();
    match auto_retry {
        AutoRetry::Enabled(false) => 1,
        AutoRetry::Attempts(n) => (n as usize).saturating_add(1),
        AutoRetry::Enabled(true) => candidates.len() + (2 * total_keys).min(10),
    }
}

/// Token cost for admission: the prompt estimated from the body size, plus the completion the
/// client allows (providers charge `max_tokens` at admission too).
pub fn estimate_cost(body: &[u8], peek: Option<&RequestPeek>) -> Cost {
    let input = (body.len() as u64).div_ceil(4);
    let output = peek
        .and_then(|p| {
            ["max_completion_tokens", "max_tokens", "max_output_tokens"]
                .iter()
                .find_map(|k| p.view.raw(body, k))
                .and_then(|raw| std::str::from_utf8(raw).ok()?.trim().parse::<u64>().ok())
        })
        .unwrap_or(DEFAULT_OUTPUT_RESERVE);
    Cost {
        requests: 1,
        tokens: input + output,
        input_tokens: input,
    }
}

/// Route one JSON request: client policies (credits, rate limits, moderation), then the
/// attempt loop. A stream request whose first answer takes longer than the keep-alive
/// interval is committed as a `200` event stream carrying keep-alive comments while the
/// attempts go on (failing over is still possible: the client has seen no content yet).
pub async fn forward_json(
    app: &Arc<App>,
    rt: &Arc<Runtime>,
    key: &Arc<ClientKey>,
    req: JsonRequest,
    candidates: Arc<[Candidate]>,
) -> Response<RespBody> {
    let client = req.client;
    let now = std::time::Instant::now();
    if let Err(e) =
        crate::routing::policy::admit(rt, &app.routing, app.ledger(), key, &req.peek.model, now)
    {
        return e.into_response(client);
    }
    if key.prefs.enable_moderation && req.endpoint == Endpoint::ChatCompletions {
        // Boxed as `Send` where its lifetimes are concrete (see `server::admin::reload`).
        let checking: std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), ApiError>> + std::marker::Send + '_>,
        > = Box::pin(crate::routing::moderation::check(app, rt, key, &req.body));
        if let Err(e) = checking.await {
            return e.into_response(client);
        }
    }
    let keepalive = if req.peek.stream {
        keepalive_interval(rt, key, &req, &candidates)
    } else {
        None
    };
    let log = req.log.clone();
    let run = run_json(
        Arc::clone(app),
        Arc::clone(rt),
        Arc::clone(key),
        req,
        candidates,
    );
    // The answer's status is the request's, also when a keep-alive stream went out as `200`
    // before it was known.
    let Some(every) = keepalive else {
        let resp = run.await;
        log.set_status(resp.status().as_u16());
        return resp;
    };
    let run: crate::server::keepalive::PendingAnswer = Box::pin(async move {
        let resp = run.await;
        log.set_status(resp.status().as_u16());
        resp
    });
    crate::server::keepalive::race(run, every, client).await
}

/// The shortest keep-alive interval among the candidates (each resolved for its provider and
/// model); `None` when none has one.
fn keepalive_interval(
    rt: &Runtime,
    key: &ClientKey,
    req: &JsonRequest,
    candidates: &[Candidate],
) -> Option<Duration> {
    candidates
        .iter()
        .filter_map(|c| {
            let ch = &rt.channels[c.channel];
            timeouts_for(rt, ch, c, req.endpoint, true, key).keepalive
        })
        .min()
}

fn timeouts_for(
    rt: &Runtime,
    channel: &Channel,
    cand: &Candidate,
    endpoint: Endpoint,
    stream: bool,
    key: &ClientKey,
) -> Timeouts {
    let facts = AttemptFacts {
        endpoint: endpoint.path(),
        stream,
        engine: cand.engine.name(),
        provider: &channel.name,
        request_model: &cand.alias,
        upstream_model: &cand.upstream_model,
        role: key.role.as_deref(),
    };
    rt.timeouts(channel, &facts)
}

/// The attempt loop for a JSON request, without client policies (also used for the internal
/// moderation request, whose `log` is off: it is neither recorded nor charged).
pub async fn run_json(
    app: Arc<App>,
    rt: Arc<Runtime>,
    key: Arc<ClientKey>,
    req: JsonRequest,
    candidates: Arc<[Candidate]>,
) -> Response<RespBody> {
    let (app, rt, key) = (&*app, &rt, &*key);
    let model = req.peek.model.clone();
    let cost = |cand: &Candidate| {
        if rt.channels[cand.channel]
            .keys
            .needs_tokens(&cand.upstream_model)
        {
            estimate_cost(&req.body, Some(&req.peek))
        } else {
            Cost {
                requests: 1,
                ..Cost::default()
            }
        }
    };
    // The client's request in canonical form, parsed at most once and only when some
    // candidate speaks another format.
    let mut ir: Option<ChatRequest> = None;
    let client = req.client;
    if needs_inlined_images(rt, &req, &candidates) {
        match Box::pin(inline_images(app, rt, &req)).await {
            Ok(parsed) => ir = parsed,
            Err(resp) => return *resp,
        }
    }
    let ctx = RequestCtx {
        endpoint: req.endpoint,
        stream: req.peek.stream,
        body_len: Some(req.body.len() as u64),
        headers: &req.headers,
        log: req.log.clone(),
    };
    run_attempts(app, rt, key, &model, &candidates, client, &ctx, cost, |cand| {
        if cand.engine == Engine::Demo {
            return Some(Prepared::Answer(demo::respond(&req, &cand.upstream_model)));
        }
        if !upstream::serves(cand.engine, req.endpoint) {
            return Some(Prepared::Unserved(format!(
                "the `{}` engine does not serve {}",
                cand.engine.name(),
                req.endpoint.path()
            )));
        }
        let channel = &rt.channels[cand.channel];
        if let Some(why) = &channel.auth_problem {
            return Some(Prepared::Unserved(why.clone()));
        }
        let upstream_format = if req.endpoint == Endpoint::ChatCompletions {
            match upstream::format_for(cand.engine, &channel.base_url, client) {
                Some(f) => f,
                None => {
                    return Some(Prepared::Unserved(format!(
                        "provider `{}` uses the `{}` engine, which this llmux build does not serve yet",
                        channel.name,
                        cand.engine.name()
                    )));
                }
            }
        } else {
            Wire::Api(client)
        };
        // Same format: bytes pass through, unless the conversation carries reasoning signed by
        // other providers, which only the IR path can leave out.
        if upstream_format == Wire::Api(client) && !protocol::ir::provenance::body_has_tags(&req.body) {
            // llmux accounts every stream's tokens: ask an OpenAI upstream for the usage chunk
            // the client did not request, and drop it from the client's stream.
            let strip_usage = client == Format::OpenAiChat
                && req.endpoint == Endpoint::ChatCompletions
                && req.peek.stream
                && req.peek.include_usage != Some(true);
            let body = json_body_for(&req, cand, channel, strip_usage);
            let body = with_overrides(channel, cand, req.endpoint, body);
            let mut send = Send::same_format(
                req.endpoint,
                full(upstream::patch_body(cand.engine, body)),
                req.peek.stream,
                client,
            );
            send.headers.clone_from(&req.forward_headers);
            send.json_array = req.json_array;
            send.strip_usage = strip_usage;
            return Some(Prepared::Upstream(send));
        }
        if ir.is_none() {
            match parse_ir(&req) {
                Ok(parsed) => ir = Some(parsed),
                Err(e) => {
                    return Some(Prepared::Answer(
                        ApiError::bad_request(e.to_string()).into_response(client),
                    ));
                }
            }
        }
        let canonical = ir.as_ref()?;
        Some(converted_send(
            channel,
            req.endpoint,
            canonical,
            cand,
            upstream_format,
            client,
            req.json_array,
        ))
    })
    .await
}

/// The client's request in canonical form.
fn parse_ir(req: &JsonRequest) -> Result<ChatRequest, protocol::convert::ConvertError> {
    let mut parsed = dispatch::request_to_ir(req.client, &req.body)?;
    // Gemini names the model and the streaming method in the URL.
    if req.client == Format::Gemini {
        parsed.model.clone_from(&req.peek.model);
        parsed.stream = req.peek.stream;
    }
    Ok(parsed)
}

/// Some candidate converts to a format that needs image bytes, and the body may hold a URL.
fn needs_inlined_images(rt: &Runtime, req: &JsonRequest, candidates: &[Candidate]) -> bool {
    static URL: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"http"));
    req.endpoint == Endpoint::ChatCompletions
        && URL.find(&req.body).is_some()
        && candidates.iter().any(|c| {
            let channel = &rt.channels[c.channel];
            upstream::format_for(c.engine, &channel.base_url, req.client)
                .is_some_and(|w| w != Wire::Api(req.client) && upstream::needs_inline_media(w))
        })
}

/// Parses the request and fetches its image URLs; the error is the client's answer.
async fn inline_images(
    app: &App,
    rt: &Runtime,
    req: &JsonRequest,
) -> Result<Option<ChatRequest>, Box<Response<RespBody>>> {
    let bad = |msg: String| Box::new(ApiError::bad_request(msg).into_response(req.client));
    let mut parsed = parse_ir(req).map_err(|e| bad(e.to_string()))?;
    if !media::has_remote_images(&parsed) {
        return Ok(Some(parsed));
    }
    media::inline_remote_images(&mut parsed, &app.client, &rt.settings.media)
        .await
        .map_err(bad)?;
    Ok(Some(parsed))
}

/// `stream_options` with `include_usage: true` (other stream options kept), from the
/// request's raw value; `None` when that value is not an object (the body is left alone).
fn usage_requested(raw: Option<&[u8]>) -> Option<std::borrow::Cow<'static, [u8]>> {
    match raw {
        None | Some(b"null") => Some(std::borrow::Cow::Borrowed(br#"{"include_usage":true}"#)),
        Some(raw) => match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(serde_json::Value::Object(mut map)) => {
                map.insert("include_usage".into(), serde_json::Value::Bool(true));
                serde_json::to_vec(&map).ok().map(std::borrow::Cow::Owned)
            }
            _ => None,
        },
    }
}

/// The body with the provider's `post_body_parameter_overrides` applied (chat requests only,
/// as uni-api); untouched when the provider has none.
fn with_overrides(channel: &Channel, cand: &Candidate, endpoint: Endpoint, body: Bytes) -> Bytes {
    let Some(overrides) = channel
        .config
        .preferences
        .post_body_parameter_overrides
        .as_ref()
        .filter(|o| !o.is_empty() && endpoint == Endpoint::ChatCompletions)
    else {
        return body;
    };
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return body;
    };
    crate::routing::overrides::apply(
        &mut value,
        overrides,
        &|name| channel.has_model_name(name),
        &cand.alias,
    );
    serde_json::to_vec(&value).map_or(body, Bytes::from)
}

/// The request re-encoded for an upstream of another format.
fn converted_send(
    channel: &Channel,
    endpoint: Endpoint,
    canonical: &ChatRequest,
    cand: &Candidate,
    upstream_format: Wire,
    client: Format,
    json_array: bool,
) -> Prepared {
    let mut req = canonical.clone();
    protocol::ir::provenance::for_upstream(&mut req, upstream_format.issuer());
    suffixes::apply(&mut req, cand.engine, &cand.alias, &cand.upstream_model);
    req.model = suffixes::upstream_model(cand.engine, &cand.upstream_model).to_string();
    let encoded = match upstream_format {
        Wire::Api(Format::OpenAiChat) | Wire::Databricks => {
            let opts = upstream::openai_options(cand.engine, &channel.base_url, &req.model);
            protocol::convert::openai_chat::request_from_ir_with(&req, &opts)
        }
        Wire::Api(f) => dispatch::request_from_ir(f, &req),
        Wire::Bedrock => protocol::convert::bedrock::request_from_ir(&req),
        Wire::Cohere => protocol::convert::cohere::request_from_ir(&req),
        Wire::Cloudflare => protocol::convert::cloudflare::request_from_ir(&req),
    };
    let body = match encoded {
        Ok(b) => with_overrides(channel, cand, endpoint, Bytes::from(b)),
        Err(e) => return Prepared::Unserved(format!("cannot convert the request: {e}")),
    };
    let body = upstream::patch_body(cand.engine, body);
    let sign_payload = (upstream_format == Wire::Bedrock).then(|| body.clone());
    let ctx = EncodeCtx {
        id: response_id(client),
        model: canonical.model.clone(),
        created: unix_ms() / 1000,
        include_usage: canonical.include_usage,
        json_array,
    };
    Prepared::Upstream(Send {
        endpoint,
        body: full(body),
        content_type: HeaderValue::from_static("application/json"),
        wants_stream: canonical.stream,
        upstream: upstream_format,
        convert: Some(Conversion {
            upstream: upstream_format,
            client,
            ctx,
        }),
        headers: Vec::new(),
        json_array: false,
        sign_payload,
        strip_usage: false,
    })
}

/// A fresh response id in the client format's style.
fn response_id(client: Format) -> String {
    let prefix = match client {
        Format::OpenAiChat => "chatcmpl-",
        Format::OpenAiResponses => "resp_",
        Format::Anthropic => "msg_",
        Format::Gemini => "",
    };
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

/// Why a candidate cannot be tried now.
enum Blocked {
    /// Its pool has a key free at this instant.
    Until(crate::keypool::clock::Nanos, String),
    Never(String),
    TooLarge(String),
}

/// Walk the candidates (first pass: each once; later passes: their further keys) within the
/// attempt budget and the request's deadline, until one answers.
#[allow(clippy::too_many_arguments)]
pub async fn run_attempts(
    app: &App,
    rt: &Arc<Runtime>,
    key: &ClientKey,
    model: &str,
    candidates: &[Candidate],
    client: Format,
    ctx: &RequestCtx<'_>,
    cost_of: impl Fn(&Candidate) -> Cost,
    mut prepare: impl FnMut(&Candidate) -> Option<Prepared>,
) -> Response<RespBody> {
    let input = PlanInput {
        model,
        path: client_path(ctx.endpoint, client),
        body_len: ctx.body_len,
    };
    let planned = match plan::plan(
        rt,
        &app.routing,
        key,
        candidates,
        &input,
        std::time::Instant::now(),
    ) {
        Ok(p) => p,
        Err(e) => return e.into_response(client),
    };
    let candidates = planned.as_slice();
    let budget = attempt_budget(rt, candidates, key.prefs.auto_retry).max(1);
    let started = tokio::time::Instant::now();
    let deadline = started + rt.settings.default_timeout;
    let mut state: Vec<CandidateState> = candidates
        .iter()
        .map(|_| CandidateState::default())
        .collect();
    let mut attempts = 0usize;
    let mut last: Option<Failure> = None;
    loop {
        let mut progressed = false;
        let mut blocked: Vec<Blocked> = Vec::new();
        for (pos, cand) in candidates.iter().enumerate() {
            if attempts >= budget {
                break;
            }
            if state[pos].done {
                continue;
            }
            let channel = &rt.channels[cand.channel];
            let lease = if channel.keys.is_empty() {
                // Keyless upstream (Ollama, vLLM, the demo): one attempt per candidate.
                state[pos].done = true;
                None
            } else {
                let ticket = state[pos].ticket.take();
                match channel
                    .keys
                    .acquire_shared(
                        &cand.upstream_model,
                        cost_of(cand),
                        &state[pos].tried,
                        ticket,
                    )
                    .await
                {
                    Acquire::Granted(lease) => {
                        if attempts > 0 && !channel.keys.allow_retry() {
                            tracing::warn!(provider = %channel.name, "retry budget exhausted; not retrying");
                            return final_error(model, attempts, last, client);
                        }
                        state[pos].tried.push(lease.index());
                        Some(lease)
                    }
                    Acquire::Wait { until, why, ticket } => {
                        state[pos].ticket = ticket;
                        blocked.push(Blocked::Until(until, why));
                        continue;
                    }
                    Acquire::Exhausted { why, .. } => {
                        if state[pos].transient
                            && !state[pos].reopened
                            && !state[pos].tried.is_empty()
                        {
                            state[pos].reopened = true;
                            state[pos].tried.clear();
                            blocked.push(Blocked::Until(rt.key_clock.now(), why));
                            continue;
                        }
                        state[pos].done = true;
                        blocked.push(Blocked::Never(why));
                        continue;
                    }
                    Acquire::TooLarge { why } => {
                        state[pos].done = true;
                        blocked.push(Blocked::TooLarge(why));
                        continue;
                    }
                }
            };
            let Some(prepared) = prepare(cand) else {
                return final_error(model, attempts, last, client);
            };
            attempts += 1;
            progressed = true;
            let attempt_started = std::time::Instant::now();
            let fingerprint = lease
                .as_ref()
                .filter(|_| ctx.log.is_on())
                .map(|l| Arc::clone(l.fingerprint()));
            let (outcome, reached) = match prepared {
                Prepared::Answer(resp) => (Outcome::Done(resp, None), true),
                Prepared::Upstream(send) => (
                    attempt(app, rt, channel, cand, send, lease, key, ctx).await,
                    true,
                ),
                Prepared::Unserved(message) => {
                    // No key of this channel would do better.
                    state[pos].done = true;
                    let f = Failure {
                        status: StatusCode::NOT_IMPLEMENTED,
                        class: None,
                        message,
                        body: None,
                        format: None,
                        upstream: None,
                    };
                    (Outcome::Retry(f), false)
                }
            };
            if reached {
                let (success, status, class) = match &outcome {
                    Outcome::Done(resp, class) => (
                        resp.status().is_success(),
                        Some(resp.status().as_u16()),
                        *class,
                    ),
                    Outcome::Retry(f) => (false, f.upstream, f.class),
                };
                ctx.log.attempt(AttemptOutcome {
                    provider: &channel.name,
                    upstream_model: &cand.upstream_model,
                    key_fingerprint: fingerprint.as_ref(),
                    success,
                    status,
                    error_class: class.map(ErrorClass::as_str),
                    latency: attempt_started.elapsed(),
                });
            }
            match outcome {
                Outcome::Done(resp, _) => {
                    if resp.status().is_success() {
                        app.routing
                            .health
                            .succeeded(&channel.name, &cand.upstream_model);
                    }
                    return resp;
                }
                Outcome::Retry(f) => {
                    let channel_out = channel_failed(app, rt, channel, cand, &f, candidates.len());
                    state[pos].transient = matches!(
                        f.class,
                        Some(
                            ErrorClass::RateLimited
                                | ErrorClass::Overloaded
                                | ErrorClass::ServerError
                                | ErrorClass::Timeout
                                | ErrorClass::TransportPreSend
                        )
                    );
                    if channel.keys.is_empty() && state[pos].transient && !state[pos].reopened {
                        state[pos].reopened = true;
                        state[pos].done = false;
                    }
                    if channel_out {
                        state[pos].done = true;
                    }
                    tracing::warn!(
                        provider = %channel.name,
                        model = %cand.upstream_model,
                        status = f.status.as_u16(),
                        "attempt failed: {}",
                        f.message
                    );
                    last = Some(f);
                }
            }
        }
        if attempts >= budget {
            break;
        }
        if progressed {
            continue;
        }
        // Nothing could be tried now: wait for the earliest key if it frees within the
        // candidates' wait allowance and the request's deadline; otherwise answer now.
        let earliest = blocked
            .iter()
            .filter_map(|b| match b {
                Blocked::Until(t, why) => Some((*t, why)),
                _ => None,
            })
            .min_by_key(|(t, _)| *t);
        let Some((until, why)) = earliest else {
            if attempts > 0 {
                break;
            }
            let too_large = blocked.iter().find_map(|b| match b {
                Blocked::TooLarge(w) => Some(w.clone()),
                _ => None,
            });
            if let Some(why) = too_large {
                return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", why)
                    .code("request_too_large")
                    .into_response(client);
            }
            let why = blocked
                .iter()
                .find_map(|b| match b {
                    Blocked::Never(w) => Some(w.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| format!("No available providers at the moment: {model}"));
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", why)
                .code("no_available_keys")
                .into_response(client);
        };
        // Keep only the slot this request wakes for; the others go back to other waiters.
        for c in &mut state {
            if c.ticket.as_ref().is_some_and(|t| t.until() != Some(until)) {
                c.ticket = None;
            }
        }
        let clock_now = rt.key_clock.now();
        let wait = Duration::from_nanos(until.saturating_sub(clock_now));
        let allowance = candidates
            .iter()
            .map(|c| rt.channels[c.channel].key_wait)
            .max()
            .unwrap_or_default();
        let now = tokio::time::Instant::now();
        if now + wait <= deadline && now + wait <= started + allowance {
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            continue;
        }
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        if attempts > 0 {
            // The keys that failed are known to free at `until`: say so.
            let mut resp = final_error(model, attempts, last, client);
            if resp.status() == StatusCode::TOO_MANY_REQUESTS {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            return resp;
        }
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("{why}; retry in {secs}s"),
        )
        .code("rate_limit_exceeded");
        err.retry_after = Some(secs);
        return err.into_response(client);
    }
    final_error(model, attempts, last, client)
}

fn final_error(
    model: &str,
    attempts: usize,
    last: Option<Failure>,
    client: Format,
) -> Response<RespBody> {
    let Some(f) = last else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("No available providers at the moment: {model}"),
        )
        .code("no_available_providers")
        .into_response(client);
    };
    if attempts == 1
        && f.format == Some(client)
        && let Some(body) = f.body.as_ref().filter(|b| is_json(b))
    {
        return crate::error::json_response(f.status, body.clone(), None);
    }
    let message = if attempts == 1 {
        f.message
    } else {
        format!("All {model} error: {}", f.message)
    };
    ApiError::new(f.status, error_type(f.status), message)
        .code("upstream_error")
        .into_response(client)
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "authentication_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "upstream_error",
    }
}

/// The client's body for a same-format upstream: the model renamed for this candidate, the
/// top-level fields the vendor refuses for this model dropped (xAI), and (`request_usage`) the
/// stream's usage chunk asked for, in one rewrite over the view parsed when the request came
/// in; the original bytes when nothing changes (the common case costs no copy).
fn json_body_for(
    req: &JsonRequest,
    cand: &Candidate,
    channel: &Channel,
    request_usage: bool,
) -> Bytes {
    // Gemini names the model in the URL, never in the body.
    let rename = *cand.upstream_model != *req.peek.model && req.client != Format::Gemini;
    let refused = req.client == Format::OpenAiChat
        && req.endpoint == Endpoint::ChatCompletions
        && upstream::may_refuse_fields(&channel.base_url);
    let stream_options = request_usage
        .then(|| usage_requested(req.peek.view.raw(&req.body, "stream_options")))
        .flatten();
    if !rename && !refused && stream_options.is_none() {
        return req.body.clone();
    }
    let model = if rename {
        protocol::body::json_string(&cand.upstream_model)
    } else {
        Vec::new()
    };
    let mut edits: smallvec::SmallVec<[Edit<'_>; 4]> = smallvec::SmallVec::new();
    if rename {
        edits.push(Edit::Set {
            key: "model",
            raw_json: &model,
        });
    }
    if refused {
        let opts = upstream::openai_options(cand.engine, &channel.base_url, &cand.upstream_model);
        edits.extend(
            opts.omitted_fields()
                .filter(|key| req.peek.view.raw(&req.body, key).is_some())
                .map(|key| Edit::Remove { key }),
        );
    }
    if let Some(options) = &stream_options {
        edits.push(Edit::Set {
            key: "stream_options",
            raw_json: options,
        });
    }
    if edits.is_empty() {
        return req.body.clone();
    }
    Bytes::from(protocol::body::rewrite(&req.body, &req.peek.view, &edits))
}

fn observed<'h>(channel: &Channel, headers: &'h http::HeaderMap, unix_ms: u64) -> Observed<'h> {
    ratelimit_headers::observation(headers, channel.flavor, unix_ms)
}

/// Learns a key's limits from a successful answer's headers, once the answer has gone out
/// (see [`crate::server::after_reply`]); a failed one is learned from at once, before the
/// next key is chosen.
struct LearnLimits {
    observer: Observer,
    headers: HeaderMap,
    flavor: classify::Flavor,
}

impl Drop for LearnLimits {
    fn drop(&mut self) {
        let obs = ratelimit_headers::observation(&self.headers, self.flavor, unix_ms());
        self.observer.observe(&obs);
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A failed attempt to try elsewhere; `upstream`: the upstream's status when it answered.
fn retry_failure(
    lease: &mut Option<Lease>,
    c: Classified,
    status: StatusCode,
    upstream: Option<StatusCode>,
) -> Outcome {
    if let Some(l) = lease.as_mut() {
        l.failure(&c);
    }
    Outcome::Retry(Failure {
        status,
        class: Some(c.class),
        message: c.message,
        body: None,
        format: None,
        upstream: upstream.map(|s| s.as_u16()),
    })
}

fn build_request(
    channel: &Channel,
    cand: &Candidate,
    send: Send,
    lease: Option<&Lease>,
    bearer: Option<&str>,
    client_headers: &HeaderMap,
) -> Result<Request<RespBody>, String> {
    let uri = upstream::uri(
        channel,
        cand.engine,
        send.upstream,
        send.endpoint,
        &cand.upstream_model,
        match (send.wants_stream, send.json_array) {
            (false, _) => upstream::Streaming::No,
            (true, false) => upstream::Streaming::Sse,
            (true, true) => upstream::Streaming::JsonArray,
        },
    );
    let accept = if send.wants_stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let extra = send.headers;
    let sign_payload = send.sign_payload;
    let uri = uri.map_err(|e| format!("cannot build the request for `{}`: {e}", channel.name))?;
    // Built in place (the builder re-checks every part it is given).
    let mut req = Request::new(send.body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    let headers = req.headers_mut();
    headers.reserve(4 + extra.len() + channel.headers.len());
    headers.insert(header::CONTENT_TYPE, send.content_type);
    headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
    let mut auth = Vec::with_capacity(2);
    match (lease, bearer) {
        (Some(l), _) => upstream::auth_headers(cand.engine, l.credential(), &mut auth),
        (None, Some(token)) => {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
                auth.push((header::AUTHORIZATION, v));
            }
        }
        (None, None) => upstream::keyless_headers(cand.engine, &mut auth),
    }
    for (name, value) in extra {
        headers.insert(name, value);
    }
    for (name, value) in auth {
        headers.insert(name, value);
    }
    // The provider's own `headers` come next: they may override the defaults (e.g.
    // `anthropic-version`).
    for (name, value) in &channel.headers {
        headers.insert(name.clone(), value.clone());
    }
    // Then the client headers this provider passes through, replacing same-named ones.
    for name in &channel.passthrough_headers {
        let mut values = client_headers.get_all(name).iter().peekable();
        if values.peek().is_some() {
            headers.remove(name);
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
    }
    // Signing covers the final headers, so it comes after everything else.
    if let (Some((creds, region)), Some(payload)) = (&channel.aws, &sign_payload) {
        let uri = req.uri().clone();
        let now = unix_ms() / 1000;
        crate::auth::sigv4::sign(
            creds,
            &crate::auth::sigv4::SignRequest {
                method: &http::Method::POST,
                uri: &uri,
                payload,
                region,
                service: "bedrock",
                now,
                double_encode_path: true,
            },
            req.headers_mut(),
        );
    }
    Ok(req)
}

/// Channel-level consequences of a failed attempt: a 403/404 feeds the circuit breaker; a
/// server error or timeout cools the channel for this model when the request had other
/// candidates (key-level failures are the key pool's business). True when the channel is out
/// of the running for this request.
fn channel_failed(
    app: &App,
    rt: &Runtime,
    channel: &Channel,
    cand: &Candidate,
    f: &Failure,
    plan_len: usize,
) -> bool {
    let now = std::time::Instant::now();
    if matches!(f.status.as_u16(), 403 | 404) && f.class.is_some() {
        app.routing.health.denied(
            &channel.name,
            &cand.upstream_model,
            &rt.settings.breaker,
            now,
        );
        if app
            .routing
            .health
            .breaker_open(&channel.name, &cand.upstream_model, now)
            .is_some()
        {
            return true;
        }
    }
    let channel_fault = matches!(f.class, Some(ErrorClass::ServerError | ErrorClass::Timeout));
    if channel_fault && plan_len > 1 && !channel.cooldown.is_zero() {
        tracing::info!(
            provider = %channel.name,
            model = %cand.upstream_model,
            "channel cooled for {}s",
            channel.cooldown.as_secs_f64()
        );
        app.routing
            .health
            .cool(&channel.name, &cand.upstream_model, channel.cooldown, now);
        return true;
    }
    false
}

#[allow(clippy::too_many_arguments)]
async fn attempt(
    app: &App,
    rt: &Runtime,
    channel: &Channel,
    cand: &Candidate,
    send: Send,
    mut lease: Option<Lease>,
    key: &ClientKey,
    ctx: &RequestCtx<'_>,
) -> Outcome {
    let upstream_format = send.upstream;
    let convert = send.convert.clone();
    let strip_usage = send.strip_usage;
    let endpoint = send.endpoint;
    let wants_stream = send.wants_stream;
    let times = timeouts_for(rt, channel, cand, endpoint, wants_stream, key);
    let timeout = times.first_answer;
    let started = tokio::time::Instant::now();
    let answer_by = started + timeout;
    // A service account (Vertex) signs in with a cached OAuth token instead of a key.
    let bearer = match (&channel.google, &lease) {
        // Boxed here and below: paths only some providers take; inline, their futures would
        // be laid out beside the usual path's and copied with every request.
        (Some(google), None) => match Box::pin(google.token(&app.client)).await {
            Ok(token) => Some(token),
            Err(message) => {
                return Outcome::Retry(Failure {
                    status: StatusCode::BAD_GATEWAY,
                    class: None,
                    message: format!("provider `{}`: {message}", channel.name),
                    body: None,
                    format: None,
                    upstream: None,
                });
            }
        },
        _ => None,
    };
    let upstream_req = match build_request(
        channel,
        cand,
        send,
        lease.as_ref(),
        bearer.as_deref(),
        ctx.headers,
    ) {
        Ok(r) => r,
        Err(message) => {
            return Outcome::Retry(Failure {
                status: StatusCode::BAD_GATEWAY,
                class: None,
                message,
                body: None,
                format: None,
                upstream: None,
            });
        }
    };
    let sending = app.client.send_via(channel.proxy.as_deref(), upstream_req);
    let resp = match tokio::time::timeout_at(answer_by, sending).await {
        Err(_) => {
            let msg = format!(
                "provider `{}` did not answer within {}s",
                channel.name,
                timeout.as_secs_f64()
            );
            let c = classify::classify_transport(true, true, &msg);
            return retry_failure(&mut lease, c, StatusCode::GATEWAY_TIMEOUT, None);
        }
        Ok(Err(e)) => {
            let msg = format!(
                "provider `{}` unreachable: {}",
                channel.name,
                error_chain(&*e)
            );
            let c = classify::classify_transport(!is_connect_error(&*e), false, &msg);
            return retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, None);
        }
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED
        && let Some(google) = &channel.google
    {
        google.invalidate();
    }
    if !status.is_success() {
        // Learned from before the next key is chosen (a success's headers after the reply).
        let now_ms = unix_ms();
        if let Some(l) = &lease {
            l.observe(&observed(channel, resp.headers(), now_ms));
        }
        let headers = resp.headers().clone();
        let body = Box::pin(read_limited(resp.into_body(), MAX_ERROR_BODY, times.idle)).await;
        let mut c = classify::classify_response(
            channel.flavor,
            status.as_u16(),
            &headers,
            body.as_deref().unwrap_or_default(),
            now_ms,
        );
        // Upstream-only formats: their own error envelope says what went wrong.
        if let Some(body) = body.as_deref() {
            let own = match upstream_format {
                Wire::Api(_) => None,
                Wire::Bedrock => Some(protocol::convert::bedrock::parse_error_typed(
                    status.as_u16(),
                    headers
                        .get("x-amzn-errortype")
                        .and_then(|v| v.to_str().ok()),
                    body,
                )),
                Wire::Cohere => Some(protocol::convert::cohere::parse_error(
                    status.as_u16(),
                    body,
                )),
                Wire::Cloudflare => Some(protocol::convert::cloudflare::parse_error(
                    status.as_u16(),
                    body,
                )),
                Wire::Databricks => Some(protocol::convert::openai_chat::parse_error(
                    status.as_u16(),
                    body,
                )),
            };
            if let Some(e) = own.filter(|e| !e.message.is_empty()) {
                c.message = e.message;
            }
        }
        if c.message.is_empty() {
            c.message = format!(
                "provider `{}` answered HTTP {}",
                channel.name,
                status.as_u16()
            );
        }
        let retry = c.may_retry_elsewhere();
        if let Some(l) = lease.as_mut() {
            l.failure(&c);
        }
        let class = c.class;
        let failure = Failure {
            status,
            class: Some(class),
            message: c.message,
            body,
            format: upstream_format.api(),
            upstream: Some(status.as_u16()),
        };
        // The request itself is at fault (or the provider says not to retry): another key
        // or channel would refuse it too.
        if !retry {
            let client = convert
                .as_ref()
                .map(|c| c.client)
                .or(upstream_format.api())
                .unwrap_or(Format::OpenAiChat);
            return Outcome::Done(relay_error(failure, client), Some(class));
        }
        return Outcome::Retry(failure);
    }
    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let (parts, incoming) = resp.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    if let Some(l) = &lease {
        crate::server::after_reply::defer(LearnLimits {
            observer: l.observer(),
            headers: parts.headers,
            flavor: channel.flavor,
        });
    }
    let is_event_stream = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/vnd.amazon.eventstream"));
    if let Some(conv) = convert.as_ref().filter(|_| is_event_stream) {
        // Bedrock's binary stream: held until its first event past `messageStart`, so an
        // exception there (throttling, capacity) fails over like an HTTP error; then decoded
        // (and checksummed) frame by frame by the relay.
        let (prefix, incoming) = match Box::pin(first_bedrock_event(incoming, answer_by)).await {
            Ok(held) => held,
            Err(mut c) => {
                c.message = format!("provider `{}`: {}", channel.name, c.message);
                let status = match c.class {
                    ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    ErrorClass::RateLimited | ErrorClass::DailyQuota => {
                        StatusCode::TOO_MANY_REQUESTS
                    }
                    _ => StatusCode::BAD_GATEWAY,
                };
                return retry_failure(&mut lease, c, status, Some(StatusCode::OK));
            }
        };
        if let Some(l) = lease.as_mut() {
            l.success();
        }
        let transcode = Some(StreamTranscoder::new(conv));
        let relay = Relay::new(incoming, Some(prefix), times.idle, true, lease, transcode)
            .with_keepalive(times.keepalive)
            .with_log(&ctx.log, estimate_basis(ctx));
        return Outcome::Done(
            client_response(status, Some(stream_content_type(conv)), relay, true),
            None,
        );
    }
    if is_sse {
        let triggers = &rt.settings.error_triggers;
        match first_content(
            incoming,
            answer_by,
            upstream_format.content_format(),
            triggers,
        )
        .await
        {
            Ok((prefix, incoming)) => {
                if let Some(l) = lease.as_mut() {
                    l.success();
                }
                let transcode = convert.as_ref().map(StreamTranscoder::new);
                let keepalive = match &convert {
                    Some(c) if c.client == Format::Gemini && c.ctx.json_array => None,
                    _ => times.keepalive,
                };
                let content_type = match &convert {
                    Some(c) => Some(stream_content_type(c)),
                    None => content_type,
                };
                let mut relay =
                    Relay::new(incoming, Some(prefix), times.idle, true, lease, transcode)
                        .with_keepalive(keepalive)
                        .with_log(&ctx.log, estimate_basis(ctx));
                if strip_usage {
                    relay = relay.strip_usage_chunk();
                }
                Outcome::Done(client_response(status, content_type, relay, true), None)
            }
            Err((class, message)) => {
                let message = format!("provider `{}`: {message}", channel.name);
                let status = if class == ErrorClass::Timeout {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                let c = Classified::new(class, message);
                retry_failure(&mut lease, c, status, Some(StatusCode::OK))
            }
        }
    } else if let Some(conv) = convert {
        let checks = AnswerChecks {
            triggers: &rt.settings.error_triggers,
            log: &ctx.log,
            request_len: ctx.body_len,
        };
        Box::pin(converted_answer(
            channel, status, incoming, times.idle, lease, &conv, &checks,
        ))
        .await
    } else if endpoint == Endpoint::ChatCompletions {
        // A whole chat answer is checked (empty, error triggers) before the client sees it.
        let Some(body) = read_limited(incoming, MAX_CONVERTED_BODY, times.idle).await else {
            let msg = format!("provider `{}`: the answer could not be read", channel.name);
            let c = Classified::new(ErrorClass::ServerError, msg);
            return retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, Some(status));
        };
        let checked = match upstream_format.api() {
            Some(format) => answer::whole_answer(format, &body, &rt.settings.error_triggers),
            None => Ok(answer::tokens_in_bytes(&body)),
        };
        let tokens = match checked {
            Ok(tokens) => tokens,
            Err(why) => {
                let c = Classified::new(
                    ErrorClass::ServerError,
                    format!("provider `{}`: {why}", channel.name),
                );
                return retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, Some(status));
            }
        };
        if let Some(l) = lease.as_mut() {
            let reserved = l.reserved_tokens() > 0;
            l.success_settled(
                tokens
                    .map(|t| t.total())
                    .filter(|total| reserved && *total > 0),
            );
        }
        if ctx.log.is_on() {
            ctx.log.set_tokens(tokens.unwrap_or_else(|| {
                Tokens::estimate(to_usize(ctx.body_len.unwrap_or(0)), body.len())
            }));
        }
        // The upstream's own content type when it sent one (one header insert, not two).
        let mut resp = Response::new(crate::server::body::full(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            content_type.unwrap_or(HeaderValue::from_static("application/json")),
        );
        Outcome::Done(resp, None)
    } else {
        if let Some(l) = lease.as_mut() {
            l.success();
        }
        let relay = Relay::new(incoming, None, times.idle, false, lease, None)
            .with_log(&ctx.log, estimate_basis(ctx));
        Outcome::Done(client_response(status, content_type, relay, false), None)
    }
}

/// Where one candidate of a request stands in the attempt loop.
#[derive(Default)]
struct CandidateState {
    /// Keys already tried.
    tried: Vec<usize>,
    /// Out of the running.
    done: bool,
    /// Its keys all failed transiently (rate limit, overload, server error): it may use them
    /// again once, after the pool says they are free.
    transient: bool,
    reopened: bool,
    /// The slot booked for this request while it waits (at most one kept between passes).
    ticket: Option<Ticket>,
}

/// Chat answers without usage are recorded (and charged) with an estimate from the request
/// size; other answers without usage count no tokens (uni-api charges only answers with
/// tokens).
fn estimate_basis(ctx: &RequestCtx<'_>) -> Option<u64> {
    (ctx.endpoint == Endpoint::ChatCompletions).then_some(ctx.body_len.unwrap_or(0))
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// What a whole answer is checked against and recorded in.
struct AnswerChecks<'a> {
    triggers: &'a [String],
    log: &'a RequestLog,
    /// Request size, for an estimate when the answer reports no usage.
    request_len: Option<u64>,
}

fn stream_content_type(conv: &Conversion) -> HeaderValue {
    if conv.client == Format::Gemini && conv.ctx.json_array {
        HeaderValue::from_static("application/json; charset=utf-8")
    } else {
        HeaderValue::from_static("text/event-stream; charset=utf-8")
    }
}

/// A whole upstream answer in another format: read it, convert it, settle usage.
async fn converted_answer(
    channel: &Channel,
    status: StatusCode,
    incoming: UpstreamBody,
    timeout: Duration,
    mut lease: Option<Lease>,
    conv: &Conversion,
    checks: &AnswerChecks<'_>,
) -> Outcome {
    let Some(body) = read_limited(incoming, MAX_CONVERTED_BODY, timeout).await else {
        let msg = format!("provider `{}`: the answer could not be read", channel.name);
        let c = Classified::new(ErrorClass::ServerError, msg);
        return retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, Some(status));
    };
    if let Some(format) = conv.upstream.content_format()
        && let Err(why) = answer::whole_answer(format, &body, checks.triggers)
    {
        let c = Classified::new(
            ErrorClass::ServerError,
            format!("provider `{}`: {why}", channel.name),
        );
        return retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, Some(status));
    }
    match convert_body(conv, &body) {
        Ok((converted, usage)) => {
            if let Some(l) = lease.as_mut() {
                let reserved = l.reserved_tokens() > 0;
                l.success_settled(Some(usage.total()).filter(|total| reserved && *total > 0));
            }
            if checks.log.is_on() {
                checks.log.set_tokens(if usage.total() > 0 {
                    Tokens::reported(&usage)
                } else {
                    Tokens::estimate(to_usize(checks.request_len.unwrap_or(0)), converted.len())
                });
            }
            Outcome::Done(
                crate::error::json_response(status, Bytes::from(converted), None),
                None,
            )
        }
        Err(message) => {
            let message = format!("provider `{}`: {message}", channel.name);
            let c = Classified::new(ErrorClass::ServerError, message);
            retry_failure(&mut lease, c, StatusCode::BAD_GATEWAY, Some(status))
        }
    }
}

fn is_connect_error(e: &(dyn std::error::Error + 'static)) -> bool {
    e.is::<crate::providers::pool::ConnectError>()
}

fn client_response(
    status: StatusCode,
    content_type: Option<HeaderValue>,
    relay: Relay,
    sse: bool,
) -> Response<RespBody> {
    let mut resp = Response::new(BodyExt::boxed_unsync(relay));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if sse {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            crate::server::keepalive::X_ACCEL_BUFFERING.clone(),
            HeaderValue::from_static("no"),
        );
    }
    resp
}

fn relay_error(f: Failure, client: Format) -> Response<RespBody> {
    match (f.body, f.format) {
        (Some(body), Some(format)) if format == client && is_json(&body) => {
            crate::error::json_response(f.status, body, None)
        }
        (Some(body), Some(format)) => {
            // Another format's error: keep its status and message, in the client's shape.
            let err = dispatch::parse_error(format, f.status.as_u16(), &body);
            let rendered = dispatch::error_body(client, &err);
            crate::error::json_response(f.status, Bytes::from(rendered), None)
        }
        _ => ApiError::new(f.status, error_type(f.status), f.message)
            .code("upstream_error")
            .into_response(client),
    }
}

/// Read until the first SSE event with content (or a failure); hold everything read so far so
/// the client receives it whole, or nothing when the attempt fails over. An error event, an
/// error trigger, or a stream that ends without content (uni-api's "empty response") is a
/// failure. Bounded by `deadline` (the attempt's time to first answer).
async fn first_content(
    mut incoming: UpstreamBody,
    deadline: tokio::time::Instant,
    format: Option<Format>,
    triggers: &[String],
) -> Result<(Bytes, UpstreamBody), (ErrorClass, String)> {
    // Formats without a content check (Cohere, Workers AI) are taken as they come.
    let judge = |frame: &[u8]| {
        // Comments and keep-alives say nothing.
        let Some(view) = protocol::sse::frame_view(frame) else {
            return Verdict::Nothing;
        };
        let Some(f) = format else {
            return Verdict::Content;
        };
        let data = view.data.as_deref().unwrap_or_default();
        let data = protocol::sse::utf8_lossy(data);
        let event = view.event.map(protocol::sse::utf8_lossy);
        answer::stream_event(f, event.as_deref(), &data, triggers)
    };
    let mut framer = protocol::sse::SseFramer::new(MAX_FIRST_EVENT);
    // What was read, replayed to the client: the first read as it came (no copy), later
    // reads appended to a copy.
    let mut seen = Seen::default();
    let read = async {
        loop {
            match incoming.frame().await {
                None => {
                    // The last event may lack its blank line.
                    let rest = framer.take_rest();
                    if !rest.is_empty() {
                        match judge(&rest) {
                            Verdict::Content => return Ok(()),
                            Verdict::Failed(why) => return Err(why),
                            Verdict::Nothing => {}
                        }
                    }
                    return Err(format!(
                        "{} (the stream ended without content)",
                        answer::EMPTY
                    ));
                }
                Some(Err(e)) => return Err(format!("stream failed before any content: {e}")),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    seen.add(&data);
                    if seen.len() > MAX_FIRST_EVENT {
                        // Nothing to judge by within a megabyte: let the client have it.
                        return Ok(());
                    }
                    framer.push_bytes(data).map_err(|e| e.to_string())?;
                    while let Some(frame) = framer.next_frame() {
                        match judge(&frame) {
                            Verdict::Content => return Ok(()),
                            Verdict::Failed(why) => return Err(why),
                            Verdict::Nothing => {}
                        }
                    }
                }
            }
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Err(_) => Err((
            ErrorClass::Timeout,
            "no content within the model's timeout".to_string(),
        )),
        Ok(Err(e)) => Err((ErrorClass::ServerError, e)),
        Ok(Ok(())) => Ok((seen.into_bytes(), incoming)),
    }
}

/// The bytes of a stream read so far: one read kept as it came, several joined.
#[derive(Default)]
enum Seen {
    #[default]
    Nothing,
    One(Bytes),
    Joined(Vec<u8>),
}

impl Seen {
    fn add(&mut self, data: &Bytes) {
        *self = match std::mem::take(self) {
            Seen::Nothing => Seen::One(data.clone()),
            Seen::One(first) => {
                let mut joined = Vec::with_capacity(first.len() + data.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(data);
                Seen::Joined(joined)
            }
            Seen::Joined(mut joined) => {
                joined.extend_from_slice(data);
                Seen::Joined(joined)
            }
        };
    }

    fn len(&self) -> usize {
        match self {
            Seen::Nothing => 0,
            Seen::One(b) => b.len(),
            Seen::Joined(v) => v.len(),
        }
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Seen::Nothing => Bytes::new(),
            Seen::One(b) => b,
            Seen::Joined(v) => Bytes::from(v),
        }
    }
}

/// Read a Bedrock event stream until its first message past `messageStart`, holding the bytes
/// (see `first_content`). An exception message there is classified by its `:exception-type`
/// (`throttlingException`, `serviceUnavailableException`, ...); framing errors are left to the
/// relay, which reports them to the client.
async fn first_bedrock_event(
    mut incoming: UpstreamBody,
    deadline: tokio::time::Instant,
) -> Result<(Bytes, UpstreamBody), Classified> {
    let mut frames = protocol::eventstream::Decoder::new(MAX_FIRST_EVENT);
    let mut seen = Vec::new();
    let read = async {
        loop {
            let data = match incoming.frame().await {
                None => {
                    let why = format!("{} (the stream ended without content)", answer::EMPTY);
                    return Err(Classified::new(ErrorClass::ServerError, why));
                }
                Some(Err(e)) => {
                    let why = format!("stream failed before any content: {e}");
                    return Err(Classified::new(ErrorClass::ServerError, why));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            seen.extend_from_slice(&data);
            if seen.len() > MAX_FIRST_EVENT {
                return Ok(());
            }
            frames.push(&data);
            while let Some(msg) = frames.next_message() {
                let Ok(msg) = msg else { return Ok(()) };
                match msg.header_str(":message-type").unwrap_or("event") {
                    "exception" => {
                        let kind = msg.header_str(":exception-type").unwrap_or("exception");
                        return Err(classify::classify_stream_exception(
                            kind,
                            &msg.payload,
                            unix_ms(),
                        ));
                    }
                    "event" if msg.header_str(":event-type") == Some("messageStart") => {}
                    _ => return Ok(()),
                }
            }
        }
    };
    match tokio::time::timeout_at(deadline, read).await {
        Err(_) => Err(Classified::new(
            ErrorClass::Timeout,
            "no content within the model's timeout",
        )),
        Ok(Err(c)) => Err(c),
        Ok(Ok(())) => Ok((Bytes::from(seen), incoming)),
    }
}

async fn read_limited(body: UpstreamBody, limit: usize, timeout: Duration) -> Option<Bytes> {
    crate::server::body::read_whole_within(body, limit, timeout)
        .await?
        .ok()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
