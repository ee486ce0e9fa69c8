//! Connection handling and the per-request pipeline shared by every endpoint:
//! record → route → auth → fault → rate limit → latency → handler → headers.

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
use crate::errors::{ApiError, ORGANIZATION};
use crate::multipart::{self, Form};
use crate::ratelimit::{Decision, Limiter, RateHeaders};
use crate::util::{ceil_ms, go_duration, hex_id};
use crate::{Fault, FaultKind, MockOptions, RecordedRequest};
use crate::{audio, chat, embeddings, images, models, moderations};

pub(crate) struct Shared {
    pub models: Vec<String>,
    api_keys: Vec<String>,
    limiter: Option<Limiter>,
    latency: Duration,
    pub chunk_delay: Duration,
    default_reply: Option<Arc<str>>,
    record: bool,
    reply_overridden: AtomicBool,
    reply_override: Mutex<Option<Arc<str>>>,
    pending_faults: AtomicUsize,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<Vec<RecordedRequest>>,
    pub count: AtomicUsize,
    pub id_seed: u64,
    pub addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not wedge the server for the others.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(opts: MockOptions, addr: SocketAddr) -> Shared {
        let id_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ (u64::from(addr.port()) << 48);
        Shared {
            models: opts.models,
            api_keys: opts.api_keys,
            limiter: opts.rpm_per_key.map(Limiter::new),
            latency: opts.latency,
            chunk_delay: opts.chunk_delay,
            default_reply: opts.reply.map(Arc::from),
            record: opts.record,
            reply_overridden: AtomicBool::new(false),
            reply_override: Mutex::new(None),
            pending_faults: AtomicUsize::new(0),
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
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

    fn rate_peek(&self, key: Option<&str>, est: u64) -> RateHeaders {
        match (&self.limiter, key) {
            (Some(l), Some(k)) => l.peek(k),
            (Some(l), None) => RateHeaders {
                limit_requests: l.rpm(),
                remaining_requests: l.rpm(),
                reset_requests: Duration::ZERO,
                ..RateHeaders::unlimited(est)
            },
            (None, _) => RateHeaders::unlimited(est),
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
            "/v1/models" if get => Route::Models,
            p if get && p.starts_with("/v1/models/") && p.len() > "/v1/models/".len() => {
                Route::Model
            }
            p if get && p.starts_with(images::FILES_PREFIX) => Route::File,
            _ => Route::NotFound,
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
        Route::Chat | Route::Embeddings | Route::Images | Route::Speech | Route::Moderations => {
            match serde_json::from_slice::<Value>(body) {
                Ok(v @ Value::Object(_)) => Input::Json(v),
                _ => Input::BadJson,
            }
        }
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

async fn handle(
    shared: Arc<Shared>,
    req: hyper::Request<Incoming>,
) -> Result<Response<Body>, BoxError> {
    let started = Instant::now();
    let seq = shared.count.fetch_add(1, Ordering::SeqCst) as u64;
    let (parts, incoming) = req.into_parts();
    let body = incoming.collect().await?.to_bytes();
    if shared.record {
        shared.record(&parts, &body);
    }
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    let (mut resp, rate) = match process(&shared, seq, &parts, &body).await {
        Some(done) => done,
        // Returning an error makes hyper close the socket without answering.
        None => return Err(Box::new(ResetByFault)),
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::try_from(hex_id(
        "req_",
        shared.id_seed ^ seq.wrapping_mul(0x9E37_79B9),
    )) {
        h.insert(HeaderName::from_static("x-request-id"), v);
    }
    h.insert(
        HeaderName::from_static("openai-organization"),
        HeaderValue::from_static(ORGANIZATION),
    );
    h.insert(
        HeaderName::from_static("openai-processing-ms"),
        HeaderValue::from(started.elapsed().as_millis() as u64),
    );
    h.insert(
        HeaderName::from_static("openai-version"),
        HeaderValue::from_static("2020-10-01"),
    );
    rate.apply(h);
    Ok(resp)
}

/// `None` means "reset the connection".
async fn process(
    shared: &Shared,
    seq: u64,
    parts: &Parts,
    body: &Bytes,
) -> Option<(Response<Body>, RateHeaders)> {
    let est = u64::try_from(body.len().div_ceil(4).max(1)).unwrap_or(u64::MAX);
    let path = parts.uri.path();
    let route = Route::of(&parts.method, path);
    let key = bearer(&parts.headers);
    match route {
        Route::NotFound => {
            let err = ApiError::invalid_url(&parts.method, path);
            return Some((err.into_response(), shared.rate_peek(key, est)));
        }
        // Image URLs are fetched without credentials, like OpenAI's blob URLs.
        Route::File => return Some((images::file(), shared.rate_peek(key, est))),
        _ => {}
    }
    let key = match key {
        None => {
            return Some((
                ApiError::missing_key().into_response(),
                shared.rate_peek(None, est),
            ));
        }
        Some(k) if !shared.api_keys.is_empty() && !shared.api_keys.iter().any(|a| a == k) => {
            return Some((
                ApiError::invalid_key(k).into_response(),
                shared.rate_peek(None, est),
            ));
        }
        Some(k) => k,
    };

    let input = parse_input(route, parts, body);
    let model_for_route = match route {
        Route::Model => path.strip_prefix("/v1/models/"),
        _ => input.model(),
    };
    let fault = shared.take_fault(model_for_route, Some(key));

    let (rate, denied) = match &shared.limiter {
        None => (RateHeaders::unlimited(est), None),
        Some(l) => match l.check(key, est) {
            Decision::Allowed(h) => (h, None),
            Decision::Denied {
                headers,
                retry_after,
                used,
            } => (headers, Some((retry_after, used))),
        },
    };

    let mut mode = Mode::default();
    if let Some(kind) = fault {
        match kind {
            FaultKind::Delay(d) => tokio::time::sleep(d).await,
            FaultKind::ResetConnection => return None,
            FaultKind::DropMidStream { after_chunks } => mode.drop_after = Some(after_chunks),
            FaultKind::EmptyReply => mode.empty_reply = true,
            other => return Some(fault_response(other, model_for_route, key, body, rate)),
        }
    }

    if let Some((retry_after, used)) = denied {
        let limit = rate.limit_requests;
        let model = model_for_route.unwrap_or("default");
        let err = ApiError::rate_limited(model, limit, used, &go_duration(ceil_ms(retry_after)));
        let mut resp = err.into_response();
        retry_headers(resp.headers_mut(), retry_after);
        return Some((resp, rate));
    }

    let ctx = Ctx { shared, seq, mode };
    let result = match (route, input) {
        (_, Input::BadJson) => Err(ApiError::parse_error()),
        (_, Input::BadForm(e)) => Err(e),
        (Route::Models, _) => Ok(models::list(shared)),
        (Route::Model, _) => models::get(shared, path.strip_prefix("/v1/models/").unwrap_or("")),
        (Route::Chat, Input::Json(v)) => chat::handle(&ctx, &v),
        (Route::Embeddings, Input::Json(v)) => embeddings::handle(&ctx, &v),
        (Route::Images, Input::Json(v)) => images::handle(&ctx, &v),
        (Route::Speech, Input::Json(v)) => audio::speech(&ctx, &v),
        (Route::Moderations, Input::Json(v)) => moderations::handle(&ctx, &v),
        (Route::Transcriptions, Input::Form(f)) => audio::transcription(&ctx, &f, false),
        (Route::Translations, Input::Form(f)) => audio::transcription(&ctx, &f, true),
        _ => Err(ApiError::invalid_url(&parts.method, path)),
    };
    let resp = result.unwrap_or_else(ApiError::into_response);
    Some((maybe_drop(resp, mode), rate))
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

fn retry_headers(h: &mut HeaderMap, retry_after: Duration) {
    let ms = ceil_ms(retry_after).as_millis() as u64;
    h.insert(header::RETRY_AFTER, HeaderValue::from(ms.div_ceil(1000)));
    h.insert(
        HeaderName::from_static("retry-after-ms"),
        HeaderValue::from(ms),
    );
}

fn fault_response(
    kind: FaultKind,
    model: Option<&str>,
    key: &str,
    body: &Bytes,
    mut rate: RateHeaders,
) -> (Response<Body>, RateHeaders) {
    let resp = match kind {
        FaultKind::RateLimited { retry_after_secs } => {
            let limit = rate.limit_requests;
            let retry = Duration::from_secs(retry_after_secs);
            let err = ApiError::rate_limited(
                model.unwrap_or("default"),
                limit,
                limit,
                &go_duration(retry),
            );
            let mut resp = err.into_response();
            retry_headers(resp.headers_mut(), retry);
            rate.remaining_requests = 0;
            rate.reset_requests = retry;
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
    };
    (resp, rate)
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
