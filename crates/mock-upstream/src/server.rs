//! Connection handling and the per-request pipeline shared by every endpoint:
//! record → latency → route → auth → key health → overload → fault → rate
//! limit → handler → token reconciliation → headers → key stats.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::admin::{ADMIN_PREFIX, admin};
use crate::body::{self, Body, BoxError};
use crate::clock::Clock;
use crate::errors::{ApiError, ORGANIZATION};
use crate::flavor::{self, Dialect, ErrCtx};
use crate::google_auth::{self, GoogleAuth, TokenProblem};
use crate::keystate::{KeyState, Outcome};
use crate::multipart::{self, Form};
use crate::ratelimit::{Cost, Limiter, RateView};
use crate::route::{Endpoint, model_in_path};
use crate::util::{alnum_id, ceil_ms, go_duration, hex_id, tokens_for_chars};
use crate::{Fault, FaultKind, LimitFlavor, MockOptions, RecordedRequest};
use crate::{
    anthropic, audio, azure, bedrock, chat, cloudflare, cohere, databricks, embeddings, gemini,
    images, models, moderations, responses, sigv4,
};

pub(crate) struct Shared {
    pub admin: bool,
    pub models: Vec<String>,
    api_keys: Vec<String>,
    limiter: Option<Limiter>,
    flavor: LimitFlavor,
    pub latency: Duration,
    pub chunk_delay: Duration,
    pub token_delay: Duration,
    default_reply: Option<Arc<str>>,
    record: bool,
    reply_overridden: AtomicBool,
    reply_override: Mutex<Option<Arc<str>>>,
    pending_faults: AtomicUsize,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    pub keys: KeyState,
    pub clock: Clock,
    pub count: AtomicUsize,
    pub id_seed: u64,
    pub addr: SocketAddr,
    /// Anthropic prompt-cache prefixes seen so far.
    pub prompt_cache: anthropic::PromptCache,
    /// Stored Responses API responses (`store: true`).
    pub stored: responses::Store,
    /// Bedrock: access key id → secret access key, for SigV4.
    pub aws_secrets: HashMap<String, String>,
    pub aws_region: String,
    /// Vertex AI: service accounts and the OAuth tokens issued to them.
    pub google: GoogleAuth,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Token counts an endpoint reports in its `usage`, attached to its response
/// for reconciliation and generation pacing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TokenUsage {
    pub input: u64,
    pub output: u64,
    /// Output tokens of one choice (what a buffered answer "generates").
    pub output_per_choice: u64,
}

impl TokenUsage {
    /// A single-answer usage.
    pub fn single(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            output_per_choice: output,
        }
    }
}

impl Shared {
    /// Fails when a registered service account's public key does not parse.
    pub fn new(opts: MockOptions, addr: SocketAddr) -> std::io::Result<Shared> {
        let mut accounts = HashMap::new();
        for sa in &opts.google_service_accounts {
            let key = google_auth::parse_public_key(&sa.key).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("service account {}: {e}", sa.email),
                )
            })?;
            accounts.insert(sa.email.clone(), key);
        }
        let aws_secrets = opts
            .aws_credentials
            .iter()
            .map(|c| (c.access_key_id.clone(), c.secret_access_key.clone()))
            .collect();
        let id_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(addr.port()) << 48);
        let limiter = Limiter::new(
            opts.flavor,
            &opts.scopes,
            opts.rpm_per_key,
            opts.refused_requests_count,
        );
        let stats_on = opts.record || limiter.is_some();
        Ok(Shared {
            admin: opts.admin,
            models: opts.models,
            api_keys: opts.api_keys,
            limiter,
            flavor: opts.flavor,
            latency: opts.latency,
            chunk_delay: opts.chunk_delay,
            token_delay: opts.token_delay,
            default_reply: opts.reply.map(Arc::from),
            record: opts.record,
            reply_overridden: AtomicBool::new(false),
            reply_override: Mutex::new(None),
            pending_faults: AtomicUsize::new(0),
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            keys: KeyState::new(&opts.revoked_keys, &opts.exhausted_keys, stats_on),
            clock: Clock::new(opts.clock_origin),
            count: AtomicUsize::new(0),
            id_seed,
            addr,
            prompt_cache: anthropic::PromptCache::default(),
            stored: responses::Store::default(),
            aws_secrets,
            aws_region: opts.aws_region,
            google: GoogleAuth::new(accounts),
        })
    }

    pub fn has_model(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// The scripted reply, if any (`None` = derive from the conversation).
    pub fn reply(&self) -> Option<Arc<str>> {
        // The flag keeps the lock off the hot path until a test calls set_reply.
        if self.reply_overridden.load(Ordering::Acquire) {
            lock(&self.reply_override).clone()
        } else {
            self.default_reply.clone()
        }
    }

    pub fn set_reply(&self, text: Option<String>) {
        *lock(&self.reply_override) = text.map(Arc::from);
        self.reply_overridden.store(true, Ordering::Release);
    }

    pub fn push_fault(&self, fault: Fault) {
        let mut q = lock(&self.faults);
        q.push_back(fault);
        self.pending_faults.store(q.len(), Ordering::SeqCst);
    }

    fn take_fault(&self, model: Option<&str>, key: Option<&str>) -> Option<FaultKind> {
        if self.pending_faults.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut q = lock(&self.faults);
        let pos = q.iter().position(|f| {
            f.only_model.as_deref().is_none_or(|m| Some(m) == model)
                && f.only_key.as_deref().is_none_or(|k| Some(k) == key)
        })?;
        let fault = q.remove(pos);
        self.pending_faults.store(q.len(), Ordering::SeqCst);
        fault.map(|f| f.kind)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    fn record(&self, parts: &Parts, body: &Bytes, endpoint: Endpoint) {
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let req = RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: body.clone(),
            endpoint,
        };
        lock(&self.requests).push(req);
    }

    /// Whether a key passes the `api_keys` check: configured keys, scoped
    /// keys and keys with runtime flags are all known to the provider.
    fn accepts(&self, key: &str) -> bool {
        self.api_keys.is_empty()
            || self.api_keys.iter().any(|a| a == key)
            || self.limiter.as_ref().is_some_and(|l| l.in_scope(key))
            || self.keys.is_flagged(key)
    }

    /// The key's current limits without counting a request, and its scope's
    /// organization (`None` for unlimited keys).
    fn peek(&self, key: Option<&str>, est: u64) -> (RateView, Option<Arc<str>>) {
        match (&self.limiter, key) {
            (Some(l), Some(k)) => match l.peek(k, self.clock.unix_ms()) {
                Some(view) => (view, l.org_of(k)),
                None => (RateView::unlimited(est), None),
            },
            (Some(l), None) => (l.fresh_view(est), None),
            (None, _) => (RateView::unlimited(est), None),
        }
    }
}

/// Accepts connections until the task is aborted; the `JoinSet` makes the
/// abort take every open connection (and any in-flight stream) down with it.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Typically EMFILE under load: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Streaming tests measure per-chunk timing; Nagle would batch the chunks.
    let _ = stream.set_nodelay(true);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    let svc = service_fn(move |req| handle(Arc::clone(&shared), req));
    // Errors here are client disconnects or deliberate aborts; nothing to report.
    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
}

#[derive(Debug)]
struct ResetByFault;

impl std::fmt::Display for ResetByFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock-upstream: connection reset on purpose")
    }
}

impl std::error::Error for ResetByFault {}

/// How a normal response should misbehave (set by faults).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mode {
    pub drop_after: Option<usize>,
    pub empty_reply: bool,
    /// Streams: this many events, then the format's in-stream error.
    pub error_after: Option<usize>,
}

pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub seq: u64,
    pub mode: Mode,
    pub endpoint: Endpoint,
    pub request_id: &'a str,
    pub parts: &'a Parts,
}

impl Ctx<'_> {
    /// A per-request seed for generated ids.
    pub fn seed(&self) -> u64 {
        self.shared.id_seed ^ self.seq.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A query parameter of the request URL.
    pub fn query(&self, name: &str) -> Option<&str> {
        query_param(self.parts, name)
    }
}

enum Input {
    None,
    Json(Value),
    BadJson,
    Form(Form),
    BadForm(ApiError),
}

impl Input {
    fn model(&self) -> Option<&str> {
        match self {
            Input::Json(v) => v.get("model").and_then(Value::as_str),
            Input::Form(f) => f.text("model"),
            _ => None,
        }
    }
}

fn parse_input(endpoint: Endpoint, parts: &Parts, body: &Bytes) -> Input {
    match endpoint {
        Endpoint::Transcriptions | Endpoint::Translations => {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match multipart::parse(ct, body) {
                Ok(form) => Input::Form(form),
                Err(e) => Input::BadForm(e),
            }
        }
        e if e.takes_json() => match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => Input::Json(v),
            _ => Input::BadJson,
        },
        _ => Input::None,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

fn header_key<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The key of an OpenAI-shaped request: `Authorization: Bearer`, else
/// Anthropic's `x-api-key`, Azure's `api-key`, Gemini's `x-goog-api-key` or
/// `?key=` (one server models any provider's OpenAI-compatible endpoint).
fn request_key(parts: &Parts) -> Option<&str> {
    if let Some(k) = bearer(&parts.headers) {
        return Some(k);
    }
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(k) = header_key(parts, name) {
            return Some(k);
        }
    }
    query_param(parts, "key").filter(|k| !k.is_empty())
}

/// The key as the endpoint's provider reads it: Anthropic `x-api-key` (or an
/// `Authorization: Bearer` token), Gemini `x-goog-api-key` or `?key=` only,
/// Azure `api-key` (or a bearer token); OpenAI routes: [`request_key`].
fn endpoint_key(endpoint: Endpoint, parts: &Parts) -> Option<&str> {
    let google_key = || {
        header_key(parts, "x-goog-api-key")
            .or_else(|| query_param(parts, "key").filter(|k| !k.is_empty()))
    };
    match endpoint {
        Endpoint::GoogleToken => return None,
        e if e.is_vertex_project() => return bearer(&parts.headers),
        Endpoint::VertexExpressGenerateContent | Endpoint::VertexExpressStreamGenerateContent => {
            return google_key();
        }
        Endpoint::BedrockConverse | Endpoint::BedrockConverseStream => {
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())?;
            return sigv4::access_key(auth).or_else(|| bearer(&parts.headers));
        }
        Endpoint::CohereChat
        | Endpoint::CloudflareRun
        | Endpoint::DatabricksInvocations
        | Endpoint::DatabricksChatCompletions => return bearer(&parts.headers),
        _ => {}
    }
    match endpoint.dialect(LimitFlavor::OpenAi) {
        Dialect::Anthropic => header_key(parts, "x-api-key").or_else(|| bearer(&parts.headers)),
        Dialect::Gemini => header_key(parts, "x-goog-api-key")
            .or_else(|| query_param(parts, "key").filter(|k| !k.is_empty())),
        Dialect::Azure => header_key(parts, "api-key").or_else(|| bearer(&parts.headers)),
        Dialect::OpenAi | Dialect::Groq => request_key(parts),
        Dialect::Bedrock | Dialect::Cohere | Dialect::Cloudflare | Dialect::Databricks => {
            bearer(&parts.headers)
        }
    }
}

fn query_param<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Azure's `api-version` when the request names none.
const AZURE_API_VERSION: &str = "2024-10-21";

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let started = Instant::now();
    if shared.admin && req.uri().path().starts_with(ADMIN_PREFIX) {
        return Ok(admin(&shared, req.method(), req.uri()));
    }
    let seq = shared.count.fetch_add(1, Ordering::SeqCst) as u64;
    let (parts, incoming) = req.into_parts();
    let body = incoming.collect().await?.to_bytes();
    let google_key = bearer(&parts.headers).is_none()
        && (header_key(&parts, "x-goog-api-key").is_some() || query_param(&parts, "key").is_some());
    let endpoint = Endpoint::of(&parts.method, parts.uri.path(), google_key);
    if shared.record {
        shared.record(&parts, &body, endpoint);
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let dialect = endpoint.dialect(shared.flavor);
    let id_seed = shared.id_seed ^ seq.wrapping_mul(0x9E37_79B9);
    let request_id = if dialect == Dialect::Anthropic {
        alnum_id("req_011C", id_seed, 20)
    } else {
        hex_id("req_", id_seed)
    };
    // Databricks also takes its token as `token:<token>` basic credentials.
    let basic = (dialect == Dialect::Databricks)
        .then(|| databricks::basic_token(&parts.headers))
        .flatten();
    let key = basic.as_deref().or_else(|| endpoint_key(endpoint, &parts));
    let req = Req {
        shared: &shared,
        seq,
        parts: &parts,
        body: &body,
        endpoint,
        dialect,
        key,
        request_id: &request_id,
    };
    let Some(reply) = process(&req).await else {
        if let Some(k) = key {
            shared.keys.count(k, Outcome::Other);
        }
        // Returning an error makes hyper close the socket without answering.
        return Err(Box::new(ResetByFault));
    };
    let Reply {
        mut resp,
        view,
        org,
        auth_failed,
    } = reply;
    if let Some(k) = key {
        let outcome = if auth_failed {
            Outcome::Unauthorized
        } else {
            Outcome::of_status(resp.status().as_u16())
        };
        shared.keys.count(k, outcome);
    }
    let org = org.as_deref().unwrap_or(ORGANIZATION);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::try_from(request_id) {
        let name = match dialect {
            Dialect::Anthropic => "request-id",
            Dialect::Bedrock => "x-amzn-requestid",
            _ => "x-request-id",
        };
        h.insert(HeaderName::from_static(name), v);
    }
    if dialect.openai_headers() {
        if let Ok(v) = HeaderValue::try_from(org) {
            h.insert(HeaderName::from_static("openai-organization"), v);
        }
        h.insert(
            HeaderName::from_static("openai-processing-ms"),
            HeaderValue::from(started.elapsed().as_millis() as u64),
        );
        h.insert(
            HeaderName::from_static("openai-version"),
            HeaderValue::from_static("2020-10-01"),
        );
    }
    let unix_ms = if dialect == Dialect::Anthropic {
        if let Ok(v) = HeaderValue::try_from(org) {
            h.insert(HeaderName::from_static("anthropic-organization-id"), v);
        }
        shared.clock.unix_ms()
    } else {
        0
    };
    flavor::apply_rate_headers(dialect, &view, unix_ms, h);
    Ok(resp)
}

struct Req<'a> {
    shared: &'a Shared,
    seq: u64,
    parts: &'a Parts,
    body: &'a Bytes,
    endpoint: Endpoint,
    dialect: Dialect,
    key: Option<&'a str>,
    request_id: &'a str,
}

impl Req<'_> {
    fn err_ctx<'a>(&'a self, model: Option<&'a str>, org: Option<&'a str>) -> ErrCtx<'a> {
        ErrCtx {
            model: model.unwrap_or("default"),
            org: org.unwrap_or(ORGANIZATION),
            azure_operation: self.endpoint.azure_operation(),
            api_version: query_param(self.parts, "api-version").unwrap_or(AZURE_API_VERSION),
            request_id: self.request_id,
            unix_ms: self.shared.clock.unix_ms(),
        }
    }

    /// The answer to a request without usable credentials, in the
    /// endpoint's own words.
    fn missing_key(&self) -> Response<Body> {
        if self.endpoint.is_vertex_project() {
            return google_auth::unauthenticated(TokenProblem::Missing);
        }
        match self.endpoint.dialect(LimitFlavor::OpenAi) {
            Dialect::Bedrock => bedrock::auth_error(&sigv4::SigError::Missing),
            Dialect::Cohere => cohere::missing_key(self.shared.id_seed ^ self.seq),
            Dialect::Cloudflare => cloudflare::auth_error(),
            Dialect::Databricks => databricks::missing_key(),
            Dialect::Anthropic => anthropic::missing_key(self.request_id),
            Dialect::Gemini => gemini::missing_key(bearer(&self.parts.headers).is_some()),
            Dialect::Azure => azure::missing_key(),
            Dialect::OpenAi | Dialect::Groq => ApiError::missing_key().into_response(),
        }
    }
}

struct Reply {
    resp: Response<Body>,
    view: RateView,
    /// The key's scope, for `openai-organization`.
    org: Option<Arc<str>>,
    /// Counts as `unauthorized` whatever the status (Gemini answers 400).
    auth_failed: bool,
}

impl Reply {
    fn new(resp: Response<Body>, (view, org): (RateView, Option<Arc<str>>)) -> Reply {
        Reply {
            resp,
            view,
            org,
            auth_failed: false,
        }
    }
}

/// What a request charges at admission, per flavour (the same token counts
/// the endpoints report in `usage`):
/// OpenAI/Groq `max(max_tokens, prompt)`; Azure `prompt + max_tokens`;
/// Gemini `prompt`; Anthropic input `prompt`, output `max_tokens`. Token
/// counting endpoints charge no tokens.
fn admission_cost(flavor: LimitFlavor, endpoint: Endpoint, input: &Input, body_len: usize) -> Cost {
    let by_bytes = tokens_for_chars(body_len);
    let (prompt, max_out) = match (endpoint, input) {
        (Endpoint::AnthropicCountTokens | Endpoint::GeminiCountTokens, _) => (0, None),
        (
            Endpoint::ChatCompletions
            | Endpoint::AzureChatCompletions
            | Endpoint::AzureV1ChatCompletions
            | Endpoint::FoundryChatCompletions
            | Endpoint::DatabricksInvocations
            | Endpoint::DatabricksChatCompletions,
            Input::Json(v),
        ) => (chat::prompt_tokens_of(v), chat::max_tokens_of(v)),
        (Endpoint::AnthropicMessages, Input::Json(v)) => {
            (anthropic::input_tokens_of(v), anthropic::max_tokens_of(v))
        }
        (e, Input::Json(v)) if e.is_gemini_generate() => {
            (gemini::prompt_tokens_of(v), gemini::max_tokens_of(v))
        }
        (Endpoint::VertexRawPredict | Endpoint::VertexStreamRawPredict, Input::Json(v)) => {
            (anthropic::input_tokens_of(v), anthropic::max_tokens_of(v))
        }
        (Endpoint::BedrockConverse | Endpoint::BedrockConverseStream, Input::Json(v)) => {
            (bedrock::prompt_tokens_of(v), bedrock::max_tokens_of(v))
        }
        (Endpoint::CohereChat, Input::Json(v)) => {
            (cohere::prompt_tokens_of(v), cohere::max_tokens_of(v))
        }
        (Endpoint::CloudflareRun, Input::Json(v)) => (
            cloudflare::prompt_tokens_of(v),
            cloudflare::max_tokens_of(v),
        ),
        (Endpoint::Responses | Endpoint::AzureV1Responses, Input::Json(v)) => {
            (responses::input_tokens_of(v), responses::max_tokens_of(v))
        }
        (
            Endpoint::Embeddings
            | Endpoint::AzureEmbeddings
            | Endpoint::AzureV1Embeddings
            | Endpoint::FoundryEmbeddings,
            Input::Json(v),
        ) => (embeddings::prompt_tokens_of(v).unwrap_or(by_bytes), None),
        _ => (by_bytes, None),
    };
    let out = max_out.unwrap_or(0);
    match flavor {
        LimitFlavor::OpenAi | LimitFlavor::Groq => Cost {
            tokens: prompt.max(out),
            output: 0,
        },
        LimitFlavor::Azure => Cost {
            tokens: prompt.saturating_add(out),
            output: 0,
        },
        LimitFlavor::Gemini => Cost {
            tokens: prompt,
            output: 0,
        },
        LimitFlavor::Anthropic => Cost {
            tokens: prompt,
            output: out,
        },
    }
}

/// How a request's credentials were checked.
enum Auth {
    /// An API key, checked against `api_keys` by the caller.
    ByKey,
    /// A signature or token the provider verified itself.
    Verified,
    Refused(Response<Body>),
}

/// Credentials that are not plain API keys: Bedrock's SigV4 signatures and
/// Vertex's OAuth tokens.
fn authenticate(req: &Req<'_>) -> Auth {
    let shared = req.shared;
    let parts = req.parts;
    match req.endpoint {
        Endpoint::BedrockConverse | Endpoint::BedrockConverseStream => {
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            if auth.is_some_and(|a| sigv4::parse(a).is_none()) {
                // `Authorization: Bearer`: a Bedrock API key.
                return Auth::ByKey;
            }
            let verifier = sigv4::Verifier {
                secrets: &shared.aws_secrets,
                region: &shared.aws_region,
                service: bedrock::SERVICE,
                now_unix: shared.clock.unix_ms() / 1000,
            };
            let signed = sigv4::Signed::from_parts(parts, req.body);
            match verifier.verify(auth, &signed) {
                Ok(_) => Auth::Verified,
                Err(e) => Auth::Refused(bedrock::auth_error(&e)),
            }
        }
        e if e.is_vertex_project() => {
            let Some(token) = bearer(&parts.headers) else {
                return Auth::Refused(google_auth::unauthenticated(TokenProblem::Missing));
            };
            match shared.google.check(token, shared.clock.unix_ms()) {
                Ok(_) => Auth::Verified,
                Err(problem) => Auth::Refused(google_auth::unauthenticated(problem)),
            }
        }
        _ => Auth::ByKey,
    }
}

fn root_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Checks some providers make before looking at the credentials.
fn precheck(req: &Req<'_>) -> Option<Response<Body>> {
    match req.endpoint {
        Endpoint::AzureChatCompletions | Endpoint::AzureEmbeddings => {
            azure::require_api_version(query_param(req.parts, "api-version"), false)
        }
        Endpoint::FoundryChatCompletions | Endpoint::FoundryEmbeddings => {
            azure::require_api_version(query_param(req.parts, "api-version"), true)
        }
        _ => None,
    }
}

/// Checks made once the key is known to be good.
fn postcheck(req: &Req<'_>) -> Option<Response<Body>> {
    match req.endpoint {
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => {
            anthropic::require_version(req.parts, req.request_id)
        }
        _ => None,
    }
}

/// `None` means "reset the connection".
async fn process(req: &Req<'_>) -> Option<Reply> {
    let shared = req.shared;
    let parts = req.parts;
    let body = req.body;
    let dialect = req.dialect;
    let est = u64::try_from(body.len().div_ceil(4).max(1)).unwrap_or(u64::MAX);
    let path = parts.uri.path();
    let endpoint = req.endpoint;
    match endpoint {
        Endpoint::NotFound => {
            let resp = if path.starts_with("/v1beta/") {
                gemini::not_found(path)
            } else {
                ApiError::invalid_url(&parts.method, path).into_response()
            };
            return Some(Reply::new(resp, shared.peek(req.key, est)));
        }
        // Image URLs are fetched without credentials, like OpenAI's blob URLs.
        Endpoint::File => return Some(Reply::new(images::file(), shared.peek(req.key, est))),
        Endpoint::GoogleToken => {
            let tctx = google_auth::TokenCtx {
                auth: &shared.google,
                own_uri: &format!("{}/token", root_url(shared.addr)),
                now_unix_ms: shared.clock.unix_ms(),
                seed: shared.id_seed ^ req.seq,
            };
            let resp = google_auth::token(&tctx, body);
            return Some(Reply::new(resp, shared.peek(None, est)));
        }
        _ => {}
    }
    if let Some(resp) = precheck(req) {
        return Some(Reply::new(resp, shared.peek(req.key, est)));
    }
    let verified = match authenticate(req) {
        Auth::ByKey => false,
        Auth::Verified => true,
        Auth::Refused(resp) => {
            let mut reply = Reply::new(resp, shared.peek(None, est));
            reply.auth_failed = true;
            return Some(reply);
        }
    };
    let Some(key) = req.key else {
        return Some(Reply::new(req.missing_key(), shared.peek(None, est)));
    };
    let (revoked, exhausted) = shared.keys.status(key);
    if revoked || !(verified || shared.accepts(key)) {
        let mut reply = Reply::new(
            flavor::invalid_key(dialect, key, req.request_id),
            shared.peek(None, est),
        );
        reply.auth_failed = true;
        return Some(reply);
    }
    if let Some(resp) = postcheck(req) {
        return Some(Reply::new(resp, shared.peek(Some(key), est)));
    }

    let input = parse_input(endpoint, parts, body);
    let bedrock_model = bedrock::model_in_path(path);
    let model_for_route = bedrock_model
        .as_deref()
        .or_else(|| model_in_path(endpoint, path))
        .or_else(|| input.model());
    if exhausted {
        let peeked = shared.peek(Some(key), est);
        let resp = flavor::exhausted(dialect, &req.err_ctx(model_for_route, None));
        return Some(Reply::new(resp, peeked));
    }
    if shared.keys.take_overload() {
        let resp = flavor::overloaded(dialect, req.request_id);
        return Some(Reply::new(resp, shared.peek(Some(key), est)));
    }
    let fault = shared.take_fault(model_for_route, Some(key));

    let mut ticket = None;
    let mut denied = None;
    let (mut view, org) = match &shared.limiter {
        None => (RateView::unlimited(est), None),
        Some(l) => {
            let cost = admission_cost(l.flavor(), endpoint, &input, body.len());
            match l.admit(key, cost, shared.clock.unix_ms()) {
                None => (RateView::unlimited(est), None),
                Some(admission) => {
                    match admission.result {
                        Ok(t) => ticket = Some(t),
                        Err(d) => denied = Some(d),
                    }
                    (admission.view, l.org_of(key))
                }
            }
        }
    };

    let mut mode = Mode::default();
    if let Some(kind) = fault {
        match kind {
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
            FaultKind::ResetConnection => return None,
            FaultKind::DropMidStream { after_chunks } => mode.drop_after = Some(after_chunks),
            FaultKind::EmptyReply => mode.empty_reply = true,
            FaultKind::ErrorMidStream { after_events } => mode.error_after = Some(after_events),
            other => {
                let org_name = org.as_deref().unwrap_or(ORGANIZATION);
                let ectx = req.err_ctx(model_for_route, Some(org_name));
                let resp = fault_response(other, dialect, &ectx, key, body, &mut view);
                return Some(Reply {
                    resp,
                    view,
                    org,
                    auth_failed: false,
                });
            }
        }
    }

    if let Some(denial) = denied {
        let resp = flavor::rate_limited(
            dialect,
            &req.err_ctx(model_for_route, org.as_deref()),
            &denial,
        );
        return Some(Reply {
            resp,
            view,
            org,
            auth_failed: false,
        });
    }

    let ctx = Ctx {
        shared,
        seq: req.seq,
        mode,
        endpoint,
        request_id: req.request_id,
        parts,
    };
    let path_model = model_in_path(endpoint, path);
    // Only the `ErrorMidStream` fallback needs the model after dispatch.
    let error_model = mode.error_after.and(model_for_route).map(str::to_owned);
    let result = match (endpoint, input) {
        (_, Input::BadJson) => match dialect {
            Dialect::Anthropic => Ok(anthropic::bad_json(req.request_id)),
            Dialect::Gemini => Ok(gemini::bad_json()),
            Dialect::Bedrock => Ok(bedrock::bad_json()),
            Dialect::Cohere => Ok(cohere::bad_json(ctx.seed())),
            Dialect::Cloudflare => Ok(cloudflare::bad_json()),
            Dialect::Databricks => Ok(databricks::bad_json()),
            _ => Err(ApiError::parse_error()),
        },
        (_, Input::BadForm(e)) => Err(e),
        (Endpoint::Models, _) => Ok(models::list(shared)),
        (Endpoint::Model, _) => models::get(shared, path_model.unwrap_or("")),
        (Endpoint::ChatCompletions, Input::Json(v)) => {
            chat::handle(&ctx, &v, chat::Variant::OpenAi)
        }
        (
            Endpoint::AzureChatCompletions
            | Endpoint::AzureV1ChatCompletions
            | Endpoint::FoundryChatCompletions,
            Input::Json(v),
        ) => chat::handle(
            &ctx,
            &v,
            chat::Variant::Azure {
                deployment: path_model,
            },
        ),
        (Endpoint::Responses | Endpoint::AzureV1Responses, Input::Json(v)) => {
            responses::create(&ctx, &v)
        }
        (Endpoint::ResponseGet, _) => {
            responses::get(shared, path.strip_prefix("/v1/responses/").unwrap_or(""))
        }
        (Endpoint::Embeddings, Input::Json(v)) => embeddings::handle(&ctx, &v, None),
        (
            Endpoint::AzureEmbeddings | Endpoint::AzureV1Embeddings | Endpoint::FoundryEmbeddings,
            Input::Json(v),
        ) => embeddings::handle(&ctx, &v, Some(path_model)),
        (Endpoint::Images, Input::Json(v)) => images::handle(&ctx, &v),
        (Endpoint::Speech, Input::Json(v)) => audio::speech(&ctx, &v),
        (Endpoint::Moderations, Input::Json(v)) => moderations::handle(&ctx, &v),
        (Endpoint::AnthropicMessages, Input::Json(v)) => Ok(anthropic::messages(&ctx, &v)),
        (Endpoint::AnthropicCountTokens, Input::Json(v)) => Ok(anthropic::count_tokens(&ctx, &v)),
        (e, Input::Json(v)) if e.is_gemini_generate() => {
            Ok(gemini::generate(&ctx, &v, body, path_model.unwrap_or("")))
        }
        (Endpoint::VertexRawPredict | Endpoint::VertexStreamRawPredict, Input::Json(v)) => {
            Ok(anthropic::vertex(
                &ctx,
                &v,
                path_model.unwrap_or(""),
                endpoint == Endpoint::VertexStreamRawPredict,
            ))
        }
        (Endpoint::BedrockConverse | Endpoint::BedrockConverseStream, Input::Json(v)) => {
            Ok(bedrock::converse(
                &ctx,
                &v,
                bedrock_model.as_deref().unwrap_or(""),
                endpoint == Endpoint::BedrockConverseStream,
            ))
        }
        (Endpoint::CohereChat, Input::Json(v)) => Ok(cohere::chat(&ctx, &v)),
        (Endpoint::CloudflareRun, Input::Json(v)) => {
            Ok(cloudflare::run(&ctx, &v, path_model.unwrap_or("")))
        }
        (Endpoint::DatabricksInvocations | Endpoint::DatabricksChatCompletions, Input::Json(v)) => {
            Ok(databricks::handle(&ctx, &v, path_model))
        }
        (Endpoint::GeminiCountTokens, Input::Json(v)) => Ok(gemini::count_tokens(
            &ctx,
            &v,
            body,
            path_model.unwrap_or(""),
        )),
        (Endpoint::GeminiModels, _) => Ok(gemini::list_models(shared)),
        (Endpoint::GeminiModel, _) => Ok(gemini::get_model(&ctx, path_model.unwrap_or(""))),
        (Endpoint::Transcriptions, Input::Form(f)) => audio::transcription(&ctx, &f, false),
        (Endpoint::Translations, Input::Form(f)) => audio::transcription(&ctx, &f, true),
        _ => Err(ApiError::invalid_url(&parts.method, path)),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    let streamed = resp.extensions().get::<Streamed>().is_some();
    if mode.error_after.is_some() && !streamed && resp.status().is_success() {
        // A buffered answer cannot fail half-way: it fails as a whole.
        let ectx = req.err_ctx(error_model.as_deref(), org.as_deref());
        resp = fault_response(FaultKind::ServerError, dialect, &ectx, key, body, &mut view);
    }
    let usage = resp.extensions().get::<TokenUsage>().copied();
    if let (Some(l), Some(t), Some(u)) = (&shared.limiter, &ticket, usage) {
        l.reconcile(t, u.input + u.output, u.output, shared.clock.unix_ms());
    }
    // A buffered answer is sent once it is fully "generated".
    if let Some(u) = usage
        && !shared.token_delay.is_zero()
        && !streamed
    {
        let n = u32::try_from(u.output_per_choice).unwrap_or(u32::MAX);
        tokio::time::sleep(shared.token_delay.saturating_mul(n)).await;
    }
    Some(Reply {
        resp: maybe_drop(resp, mode),
        view,
        org,
        auth_failed: false,
    })
}

/// `DropMidStream` on a buffered response: send the first half, then abort.
/// Streaming handlers apply it themselves and mark the response so it is not
/// cut twice.
fn maybe_drop(resp: Response<Body>, mode: Mode) -> Response<Body> {
    if mode.drop_after.is_none() || resp.extensions().get::<Streamed>().is_some() {
        return resp;
    }
    let (parts, full) = resp.into_parts();
    let Some(bytes) = futures_util::FutureExt::now_or_never(full.collect())
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
    else {
        return Response::from_parts(parts, body::full(Bytes::new()));
    };
    let half = bytes.slice(..bytes.len() / 2);
    let mut parts = parts;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body::paced(vec![half], Duration::ZERO, Some(1)))
}

/// Marker extension for responses whose body already honours `Mode`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Streamed;

/// A scripted failure, in the endpoint's dialect: the native Anthropic and
/// Gemini routes answer in their provider's words, every other route
/// OpenAI-shaped.
fn fault_response(
    kind: FaultKind,
    dialect: Dialect,
    ectx: &ErrCtx<'_>,
    key: &str,
    body: &Bytes,
    view: &mut RateView,
) -> Response<Body> {
    if let FaultKind::RateLimited { retry_after_secs } = kind {
        let ms = u64::try_from(ceil_ms(Duration::from_secs(retry_after_secs)).as_millis())
            .unwrap_or(u64::MAX);
        let limit = view.requests.limit;
        view.requests.remaining = 0;
        view.requests.reset_ms = ms;
        return match dialect {
            Dialect::Anthropic
            | Dialect::Gemini
            | Dialect::Bedrock
            | Dialect::Cohere
            | Dialect::Cloudflare
            | Dialect::Databricks => flavor::requests_exceeded(dialect, ectx, limit, ms),
            _ => {
                let err = ApiError::rate_limited(
                    ectx.model,
                    ectx.org,
                    limit,
                    limit,
                    &go_duration(Duration::from_millis(ms)),
                );
                let mut resp = err.into_response();
                flavor::retry_headers(resp.headers_mut(), ms, true);
                resp
            }
        };
    }
    if let FaultKind::Status {
        status,
        body: raw,
        content_type,
    } = kind
    {
        let mut resp = Response::new(body::full(raw));
        *resp.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(ct) = HeaderValue::try_from(content_type) {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return resp;
    }
    match dialect {
        Dialect::Anthropic => anthropic::fault(kind, ectx, key, body),
        Dialect::Gemini => gemini::fault(kind, ectx, key, body),
        Dialect::Bedrock => bedrock::fault(kind),
        Dialect::Cohere => {
            cohere::fault(kind, crate::util::fnv1a64(ectx.request_id.as_bytes()), body)
        }
        Dialect::Cloudflare => cloudflare::fault(kind, body),
        Dialect::Databricks => databricks::fault(kind, body),
        _ => match kind {
            FaultKind::InsufficientQuota => ApiError::insufficient_quota().into_response(),
            FaultKind::InvalidKey => ApiError::invalid_key(key).into_response(),
            FaultKind::Overloaded => ApiError::overloaded().into_response(),
            FaultKind::BadRequest { message } => {
                ApiError::invalid(message, None, None).into_response()
            }
            FaultKind::ContextLengthExceeded => {
                let prompt = chat::prompt_tokens_of_body(body);
                ApiError::context_length_exceeded(prompt).into_response()
            }
            // ServerError, and the kinds handled by the caller.
            _ => ApiError::server_error().into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-1"),
        );
        assert_eq!(bearer(&h), Some("sk-1"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
