//! The attempt loop: try candidates in order, each with a key from its pool; fall over to the
//! next on rate limits, server errors, timeouts and network errors; return client errors
//! (400/413) at once. Before the first byte reaches the client an attempt may be retried
//! elsewhere; after it, never.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use protocol::body::{Edit, RequestPeek};

use crate::app::App;
use crate::config::schema::AutoRetry;
use crate::error::ApiError;
use crate::keypool::KeyLease;
use crate::providers::demo;
use crate::providers::engine::Engine;
use crate::providers::urls::Endpoint;
use crate::runtime::{Candidate, Channel, ClientKey, Runtime};
use crate::server::body::{RespBody, full};
use crate::server::relay::Relay;

/// Largest upstream error body read (the rest is dropped).
const MAX_ERROR_BODY: usize = 256 * 1024;
/// Largest first stream event held back for validation.
const MAX_FIRST_EVENT: usize = 1024 * 1024;

/// A JSON request to forward: its bytes and what was peeked from them.
pub struct JsonRequest {
    pub endpoint: Endpoint,
    pub body: Bytes,
    pub peek: RequestPeek,
}

/// Why one attempt did not produce an answer the client can have.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    message: String,
    /// The upstream's own error body, relayed verbatim when it is the only attempt.
    body: Option<Bytes>,
}

enum Outcome {
    Done(Response<RespBody>),
    Retry(Failure),
}

/// Upper bound of attempts for one request: every candidate once, plus further keys of
/// multi-key channels, bounded like uni-api (`#candidates + min(10, 2·Σkeys)`).
fn attempt_budget(rt: &Runtime, candidates: &[Candidate], auto_retry: AutoRetry) -> usize {
    let total_keys: usize = candidates
        .iter()
        .map(|c| rt.channels[c.channel].keys.len().max(1))
        .sum();
    match auto_retry {
        AutoRetry::Enabled(false) => 1,
        AutoRetry::Attempts(n) => (n as usize).saturating_add(1).min(total_keys.max(1)),
        AutoRetry::Enabled(true) => total_keys.min(candidates.len() + (2 * total_keys).min(10)),
    }
}

/// What the loop does for one candidate: answer in process, or send upstream. `None` when
/// the request body cannot be sent again (a streamed upload already consumed).
pub enum Prepared {
    Answer(Response<RespBody>),
    Upstream(Send),
}

pub async fn forward_json(
    app: &App,
    rt: &Arc<Runtime>,
    key: &ClientKey,
    req: JsonRequest,
    candidates: Arc<[Candidate]>,
) -> Response<RespBody> {
    let model = req.peek.model.clone();
    run_attempts(app, rt, key, &model, &candidates, |cand| {
        Some(if cand.engine == Engine::Demo {
            Prepared::Answer(demo::respond(&req, &cand.upstream_model))
        } else {
            Prepared::Upstream(Send {
                endpoint: req.endpoint,
                body: full(json_body_for(&req, cand)),
                content_type: HeaderValue::from_static("application/json"),
                wants_stream: req.peek.stream,
            })
        })
    })
    .await
}

/// Walk the candidates (first pass: each once; later passes: their further keys) within the
/// attempt budget, until one answers.
pub async fn run_attempts(
    app: &App,
    rt: &Arc<Runtime>,
    key: &ClientKey,
    model: &str,
    candidates: &[Candidate],
    mut prepare: impl FnMut(&Candidate) -> Option<Prepared>,
) -> Response<RespBody> {
    let budget = attempt_budget(rt, candidates, key.prefs.auto_retry).max(1);
    // keys already tried, per candidate position
    let mut tried: Vec<Vec<usize>> = vec![Vec::new(); candidates.len()];
    let mut attempts = 0usize;
    let mut last: Option<Failure> = None;
    'passes: loop {
        let mut progressed = false;
        for (pos, cand) in candidates.iter().enumerate() {
            if attempts >= budget {
                break 'passes;
            }
            let channel = &rt.channels[cand.channel];
            let Some(lease) = channel.keys.lease(&tried[pos]) else {
                continue;
            };
            tried[pos].push(lease.index());
            let Some(prepared) = prepare(cand) else {
                break 'passes;
            };
            attempts += 1;
            progressed = true;
            let outcome = match prepared {
                Prepared::Answer(resp) => Outcome::Done(resp),
                Prepared::Upstream(send) => attempt(app, rt, channel, cand, send, lease).await,
            };
            match outcome {
                Outcome::Done(resp) => return resp,
                Outcome::Retry(f) => {
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
        if !progressed {
            break;
        }
    }
    final_error(model, attempts, last)
}

fn final_error(model: &str, attempts: usize, last: Option<Failure>) -> Response<RespBody> {
    let Some(f) = last else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("No available providers at the moment: {model}"),
        )
        .code("no_available_providers")
        .into_openai_response();
    };
    if attempts == 1
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
        .into_openai_response()
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

/// The request body with the model renamed for this candidate; the original bytes when the
/// alias is the upstream name (the common case costs no copy).
fn json_body_for(req: &JsonRequest, cand: &Candidate) -> Bytes {
    if *cand.upstream_model == *req.peek.model {
        return req.body.clone();
    }
    let model = protocol::body::json_string(&cand.upstream_model);
    Bytes::from(protocol::body::rewrite(
        &req.body,
        &req.peek.view,
        &[Edit::Set {
            key: "model",
            raw_json: &model,
        }],
    ))
}

/// What one attempt sends.
pub struct Send {
    pub endpoint: Endpoint,
    pub body: RespBody,
    pub content_type: HeaderValue,
    /// The client asked for an event stream.
    pub wants_stream: bool,
}

async fn attempt(
    app: &App,
    rt: &Runtime,
    channel: &Channel,
    cand: &Candidate,
    send: Send,
    lease: KeyLease,
) -> Outcome {
    match cand.engine {
        e if e.speaks_openai() => {}
        other => {
            return Outcome::Retry(Failure {
                status: StatusCode::NOT_IMPLEMENTED,
                message: format!(
                    "provider `{}` uses the `{}` engine, which this llmux build does not serve yet",
                    channel.name,
                    other.name()
                ),
                body: None,
            });
        }
    }
    let url = channel.endpoint_url(send.endpoint);
    let mut builder = Request::post(&url)
        .header(header::CONTENT_TYPE, send.content_type)
        .header(
            header::ACCEPT,
            if send.wants_stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    if let Some(key) = lease.key() {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {}", key.secret()));
    }
    let mut upstream_req = match builder.body(send.body) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Retry(Failure {
                status: StatusCode::BAD_GATEWAY,
                message: format!("cannot build the request for `{}`: {e}", channel.name),
                body: None,
            });
        }
    };
    for (name, value) in &channel.headers {
        upstream_req
            .headers_mut()
            .insert(name.clone(), value.clone());
    }
    let timeout = rt.timeout_for(channel, &cand.alias, &cand.upstream_model);
    let resp = match tokio::time::timeout(timeout, app.client.send(upstream_req)).await {
        Err(_) => {
            return Outcome::Retry(Failure {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!(
                    "provider `{}` did not answer within {}s",
                    channel.name,
                    timeout.as_secs_f64()
                ),
                body: None,
            });
        }
        Ok(Err(e)) => {
            return Outcome::Retry(Failure {
                status: StatusCode::BAD_GATEWAY,
                message: format!(
                    "provider `{}` unreachable: {}",
                    channel.name,
                    error_chain(&*e)
                ),
                body: None,
            });
        }
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    if !status.is_success() {
        let body = read_limited(resp.into_body(), MAX_ERROR_BODY, timeout).await;
        let message = body
            .as_deref()
            .and_then(protocol::openai::parse_error_body)
            .map(|e| e.message)
            .unwrap_or_else(|| {
                format!(
                    "provider `{}` answered HTTP {}",
                    channel.name,
                    status.as_u16()
                )
            });
        let failure = Failure {
            status,
            message,
            body,
        };
        // The request itself is at fault: another channel would refuse it too.
        if status == StatusCode::BAD_REQUEST || status == StatusCode::PAYLOAD_TOO_LARGE {
            return Outcome::Done(relay_error(failure));
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
    if is_sse {
        match first_event(incoming, timeout).await {
            Ok((prefix, incoming)) => {
                let relay = Relay::new(incoming, Some(prefix), timeout, true, Some(lease));
                Outcome::Done(client_response(status, content_type, relay, true))
            }
            Err(message) => Outcome::Retry(Failure {
                status: StatusCode::BAD_GATEWAY,
                message: format!("provider `{}`: {message}", channel.name),
                body: None,
            }),
        }
    } else {
        let relay = Relay::new(incoming, None, timeout, false, Some(lease));
        Outcome::Done(client_response(status, content_type, relay, false))
    }
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
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    }
    resp
}

fn relay_error(f: Failure) -> Response<RespBody> {
    match f.body {
        Some(body) if is_json(&body) => crate::error::json_response(f.status, body, None),
        _ => ApiError::new(f.status, error_type(f.status), f.message)
            .code("upstream_error")
            .into_openai_response(),
    }
}

/// Read until the first complete SSE event and check it is not an error; return the bytes
/// read so far (to send first) and the rest of the stream.
async fn first_event(
    mut incoming: Incoming,
    timeout: Duration,
) -> Result<(Bytes, Incoming), String> {
    let mut framer = protocol::sse::SseFramer::new(MAX_FIRST_EVENT);
    let mut seen = Vec::new();
    let read = async {
        loop {
            match incoming.frame().await {
                None => return Err("stream ended before the first event".to_string()),
                Some(Err(e)) => return Err(format!("stream failed before the first event: {e}")),
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    seen.extend_from_slice(&data);
                    framer.push(&data).map_err(|e| e.to_string())?;
                    while let Some(frame) = framer.next_frame() {
                        match protocol::sse::parse_frame(&frame) {
                            None => continue,
                            Some(ev)
                                if ev.data.starts_with("{\"error\"")
                                    || ev.event.as_deref() == Some("error") =>
                            {
                                let msg = protocol::openai::parse_error_body(ev.data.as_bytes())
                                    .map(|e| e.message)
                                    .unwrap_or(ev.data);
                                return Err(format!("error event: {msg}"));
                            }
                            Some(_) => return Ok(()),
                        }
                    }
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(format!("no stream event within {}s", timeout.as_secs_f64())),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok((Bytes::from(seen), incoming)),
    }
}

async fn read_limited(body: Incoming, limit: usize, timeout: Duration) -> Option<Bytes> {
    let collect = http_body_util::Limited::new(body, limit).collect();
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(c)) => Some(c.to_bytes()),
        _ => None,
    }
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
