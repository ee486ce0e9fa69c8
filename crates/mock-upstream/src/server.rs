//! Connection handling and the per-request pipeline shared by every endpoint:
//! record → latency → route → auth → key health → overload → fault → rate
//! limit → handler → token reconciliation → headers → key stats.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::body::{self, Body, BoxError};
use crate::clock::Clock;
use crate::errors::{ApiError, ORGANIZATION};
use crate::flavor::{self, Dialect, ErrCtx};
use crate::keystate::{KeyState, Outcome};
use crate::multipart::{self, Form};
use crate::ratelimit::{Cost, Limiter, RateView};
use crate::util::{alnum_id, ceil_ms, go_duration, hex_id, tokens_for_chars};
use crate::{Fault, FaultKind, LimitFlavor, MockOptions, RecordedRequest};
use crate::{audio, chat, embeddings, images, messages, models, moderations};

pub(crate) struct Shared {
    admin: bool,
    pub models: Vec<String>,
    api_keys: Vec<String>,
    limiter: Option<Limiter>,
    flavor: LimitFlavor,
    latency: Duration,
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
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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

impl Shared {
    pub fn new(opts: MockOptions, addr: SocketAddr) -> Shared {
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
        Shared {
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
        }
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

    fn record(&self, parts: &Parts, body: &Bytes) {
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
}

pub(crate) struct Ctx<'a> {
    pub shared: &'a Shared,
    pub seq: u64,
    pub mode: Mode,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Models,
    Model,
    Chat,
    Embeddings,
    Images,
    Transcriptions,
    Translations,
    Speech,
    Moderations,
    Messages,
    File,
    NotFound,
}

impl Route {
    fn of(method: &Method, path: &str) -> Route {
        let post = method == Method::POST;
        let get = method == Method::GET;
        match path {
            "/v1/chat/completions" if post => Route::Chat,
            "/v1/embeddings" if post => Route::Embeddings,
            "/v1/images/generations" if post => Route::Images,
            "/v1/audio/transcriptions" if post => Route::Transcriptions,
            "/v1/audio/translations" if post => Route::Translations,
            "/v1/audio/speech" if post => Route::Speech,
            "/v1/moderations" if post => Route::Moderations,
            "/v1/messages" if post => Route::Messages,
            "/v1/models" if get => Route::Models,
            p if get && p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => {
                Route::Model
            }
            p if get && p.starts_with(images::FILES_PREFIX) => Route::File,
            _ => Route::NotFound,
        }
    }

    /// Azure's operation name, as its 429 messages quote it.
    fn azure_operation(self) -> &'static str {
        match self {
            Route::Chat => "ChatCompletions_Create",
            Route::Embeddings => "Embeddings_Create",
            Route::Images => "ImageGenerations_Create",
            Route::Transcriptions => "Transcriptions_Create",
            Route::Translations => "Translations_Create",
            Route::Speech => "Speech_Create",
            Route::Moderations => "Moderations_Create",
            Route::Messages => "Messages_Create",
            Route::Models => "Models_List",
            Route::Model | Route::File | Route::NotFound => "Models_Get",
        }
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

fn parse_input(route: Route, parts: &Parts, body: &Bytes) -> Input {
    match route {
        Route::Chat
        | Route::Embeddings
        | Route::Images
        | Route::Speech
        | Route::Moderations
        | Route::Messages => match serde_json::from_slice::<Value>(body) {
            Ok(v @ Value::Object(_)) => Input::Json(v),
            _ => Input::BadJson,
        },
        Route::Transcriptions | Route::Translations => {
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
        _ => Input::None,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The request's key: `Authorization: Bearer`, else Anthropic's `x-api-key`,
/// Azure's `api-key`, Gemini's `x-goog-api-key` or `?key=`.
fn request_key(parts: &Parts) -> Option<&str> {
    if let Some(k) = bearer(&parts.headers) {
        return Some(k);
    }
    for name in ["x-api-key", "api-key", "x-goog-api-key"] {
        if let Some(k) = parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
        {
            return Some(k);
        }
    }
    parts
        .uri
        .query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("key="))
        .filter(|k| !k.is_empty())
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
    if shared.record {
        shared.record(&parts, &body);
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let route = Route::of(&parts.method, parts.uri.path());
    let dialect = Dialect::of(shared.flavor, route == Route::Messages);
    let id_seed = shared.id_seed ^ seq.wrapping_mul(0x9E37_79B9);
    let request_id = if dialect == Dialect::Anthropic {
        alnum_id("req_011C", id_seed, 20)
    } else {
        hex_id("req_", id_seed)
    };
    let key = request_key(&parts);
    let req = Req {
        shared: &shared,
        seq,
        parts: &parts,
        body: &body,
        route,
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
        let name = if dialect == Dialect::Anthropic {
            "request-id"
        } else {
            "x-request-id"
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

const ADMIN_PREFIX: &str = "/mock/";

/// The control routes (`MockOptions::admin`), for driving a running binary:
/// `POST /mock/keys/{key}/{revoke|restore|exhaust|replenish}`,
/// `POST /mock/overload?on=true|false` or `?next=N`, `GET /mock/key-stats`.
/// Not counted, recorded or limited.
fn admin(shared: &Shared, method: &Method, uri: &http::Uri) -> Response<Body> {
    let path = uri.path().strip_prefix(ADMIN_PREFIX).unwrap_or("");
    let query = uri.query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then_some(v)
        })
    };
    let done = || {
        let mut resp = Response::new(body::full(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    };
    let not_found = || ApiError::invalid_url(method, uri.path()).into_response();
    if method == Method::GET && path == "key-stats" {
        let entries: Vec<crate::util::Json> = shared
            .keys
            .snapshot()
            .into_iter()
            .map(|(k, s)| {
                crate::util::obj! {
                    "key": k,
                    "received": s.received,
                    "ok": s.ok,
                    "rate_limited": s.rate_limited,
                    "unauthorized": s.unauthorized,
                    "other_errors": s.other_errors,
                }
            })
            .collect();
        let v = crate::util::obj! {"keys": crate::util::Json::Arr(entries)};
        return body::json(StatusCode::OK, v.to_vec());
    }
    if method != Method::POST {
        return not_found();
    }
    if path == "overload" {
        if let Some(n) = param("next").and_then(|n| n.parse().ok()) {
            shared.keys.overload_next(n);
            return done();
        }
        return match param("on") {
            Some("true") => {
                shared.keys.set_overloaded(true);
                done()
            }
            Some("false") => {
                shared.keys.set_overloaded(false);
                done()
            }
            _ => not_found(),
        };
    }
    let Some((key, action)) = path.strip_prefix("keys/").and_then(|r| r.rsplit_once('/')) else {
        return not_found();
    };
    if key.is_empty() {
        return not_found();
    }
    match action {
        "revoke" => shared.keys.set_revoked(key, true),
        "restore" => shared.keys.set_revoked(key, false),
        "exhaust" => shared.keys.set_exhausted(key, true),
        "replenish" => shared.keys.set_exhausted(key, false),
        _ => return not_found(),
    }
    done()
}

struct Req<'a> {
    shared: &'a Shared,
    seq: u64,
    parts: &'a Parts,
    body: &'a Bytes,
    route: Route,
    dialect: Dialect,
    key: Option<&'a str>,
    request_id: &'a str,
}

impl Req<'_> {
    fn err_ctx<'a>(&'a self, model: Option<&'a str>, org: Option<&'a str>) -> ErrCtx<'a> {
        ErrCtx {
            model: model.unwrap_or("default"),
            org: org.unwrap_or(ORGANIZATION),
            azure_operation: self.route.azure_operation(),
            api_version: query_param(self.parts, "api-version").unwrap_or(AZURE_API_VERSION),
            request_id: self.request_id,
            unix_ms: self.shared.clock.unix_ms(),
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
/// Gemini `prompt`; Anthropic input `prompt`, output `max_tokens`.
fn admission_cost(flavor: LimitFlavor, route: Route, input: &Input, body_len: usize) -> Cost {
    let by_bytes = tokens_for_chars(body_len);
    let (prompt, max_out) = match (route, input) {
        (Route::Chat, Input::Json(v)) => (chat::prompt_tokens_of(v), chat::max_tokens_of(v)),
        (Route::Messages, Input::Json(v)) => {
            (messages::input_tokens_of(v), messages::max_tokens_of(v))
        }
        (Route::Embeddings, Input::Json(v)) => {
            (embeddings::prompt_tokens_of(v).unwrap_or(by_bytes), None)
        }
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

/// `None` means "reset the connection".
async fn process(req: &Req<'_>) -> Option<Reply> {
    let shared = req.shared;
    let parts = req.parts;
    let body = req.body;
    let dialect = req.dialect;
    let est = u64::try_from(body.len().div_ceil(4).max(1)).unwrap_or(u64::MAX);
    let path = parts.uri.path();
    let route = req.route;
    match route {
        Route::NotFound => {
            let err = ApiError::invalid_url(&parts.method, path);
            return Some(Reply::new(err.into_response(), shared.peek(req.key, est)));
        }
        // Image URLs are fetched without credentials, like OpenAI's blob URLs.
        Route::File => return Some(Reply::new(images::file(), shared.peek(req.key, est))),
        _ => {}
    }
    let key = match req.key {
        None => {
            let resp = if dialect == Dialect::Anthropic {
                messages::missing_key(req.request_id)
            } else {
                ApiError::missing_key().into_response()
            };
            return Some(Reply::new(resp, shared.peek(None, est)));
        }
        Some(k) => k,
    };
    let (revoked, exhausted) = shared.keys.status(key);
    if revoked || !shared.accepts(key) {
        let mut reply = Reply::new(
            flavor::invalid_key(dialect, key, req.request_id),
            shared.peek(None, est),
        );
        reply.auth_failed = true;
        return Some(reply);
    }

    let input = parse_input(route, parts, body);
    let model_for_route = match route {
        Route::Model => path.strip_prefix("/v1/models/"),
        _ => input.model(),
    };
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
            let cost = admission_cost(l.flavor(), route, &input, body.len());
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
            other => {
                let org_name = org.as_deref().unwrap_or(ORGANIZATION);
                let resp = fault_response(other, model_for_route, key, org_name, body, &mut view);
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
    };
    let result = match (route, input) {
        (Route::Messages, Input::BadJson) => Ok(messages::bad_json(req.request_id)),
        (_, Input::BadJson) => Err(ApiError::parse_error()),
        (_, Input::BadForm(e)) => Err(e),
        (Route::Models, _) => Ok(models::list(shared)),
        (Route::Model, _) => models::get(shared, path.strip_prefix("/v1/models/").unwrap_or("")),
        (Route::Chat, Input::Json(v)) => chat::handle(&ctx, &v),
        (Route::Embeddings, Input::Json(v)) => embeddings::handle(&ctx, &v),
        (Route::Images, Input::Json(v)) => images::handle(&ctx, &v),
        (Route::Speech, Input::Json(v)) => audio::speech(&ctx, &v),
        (Route::Moderations, Input::Json(v)) => moderations::handle(&ctx, &v),
        (Route::Messages, Input::Json(v)) => Ok(messages::handle(&ctx, &v, req.request_id)),
        (Route::Transcriptions, Input::Form(f)) => audio::transcription(&ctx, &f, false),
        (Route::Translations, Input::Form(f)) => audio::transcription(&ctx, &f, true),
        _ => Err(ApiError::invalid_url(&parts.method, path)),
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    let usage = resp.extensions().get::<TokenUsage>().copied();
    if let (Some(l), Some(t), Some(u)) = (&shared.limiter, &ticket, usage) {
        l.reconcile(t, u.input + u.output, u.output, shared.clock.unix_ms());
    }
    // A buffered answer is sent once it is fully "generated".
    if let Some(u) = usage
        && !shared.token_delay.is_zero()
        && resp.extensions().get::<Streamed>().is_none()
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

fn fault_response(
    kind: FaultKind,
    model: Option<&str>,
    key: &str,
    org: &str,
    body: &Bytes,
    view: &mut RateView,
) -> Response<Body> {
    match kind {
        FaultKind::RateLimited { retry_after_secs } => {
            let limit = view.requests.limit;
            let retry = Duration::from_secs(retry_after_secs);
            let err = ApiError::rate_limited(
                model.unwrap_or("default"),
                org,
                limit,
                limit,
                &go_duration(retry),
            );
            let mut resp = err.into_response();
            let ms = u64::try_from(ceil_ms(retry).as_millis()).unwrap_or(u64::MAX);
            flavor::retry_headers(resp.headers_mut(), ms, true);
            view.requests.remaining = 0;
            view.requests.reset_ms = ms;
            resp
        }
        FaultKind::InsufficientQuota => ApiError::insufficient_quota().into_response(),
        FaultKind::InvalidKey => ApiError::invalid_key(key).into_response(),
        FaultKind::ServerError => ApiError::server_error().into_response(),
        FaultKind::Overloaded => ApiError::overloaded().into_response(),
        FaultKind::BadRequest { message } => ApiError::invalid(message, None, None).into_response(),
        FaultKind::ContextLengthExceeded => {
            let prompt = chat::prompt_tokens_of_body(body);
            ApiError::context_length_exceeded(prompt).into_response()
        }
        FaultKind::Status {
            status,
            body: raw,
            content_type,
        } => {
            let mut resp = Response::new(body::full(raw));
            *resp.status_mut() =
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if let Ok(ct) = HeaderValue::try_from(content_type) {
                resp.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            resp
        }
        // Handled by the caller; kept exhaustive so new kinds are not forgotten.
        FaultKind::Delay(_)
        | FaultKind::ResetConnection
        | FaultKind::DropMidStream { .. }
        | FaultKind::EmptyReply => ApiError::server_error().into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            Route::of(&Method::POST, "/v1/chat/completions"),
            Route::Chat
        );
        assert_eq!(
            Route::of(&Method::GET, "/v1/chat/completions"),
            Route::NotFound
        );
        assert_eq!(Route::of(&Method::GET, "/v1/models/gpt-4o"), Route::Model);
        assert_eq!(Route::of(&Method::GET, "/v1/models/"), Route::NotFound);
        assert_eq!(Route::of(&Method::POST, "/v1/xyz"), Route::NotFound);
    }

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
