//! OpenAI ingress: JSON endpoints (chat, embeddings, images, speech, moderations) and the
//! multipart transcription upload.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use protocol::body::{BodyError, Edit};
use protocol::ir::Format;

use crate::app::App;
use crate::error::ApiError;
use crate::providers::engine::Engine;
use crate::providers::upstream;
use crate::providers::urls::Endpoint;
use crate::routing::attempt::{self, JsonRequest, Prepared, Send};
use crate::runtime::{ClientKey, Runtime};
use crate::server::body::{ReadError, RespBody, full, read_whole_within};
use crate::server::multipart::{self, FieldScan, PrefixedBody};
use crate::usage::RequestLog;

/// A client that stops sending its body for this long is cut off (slow-client protection).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

pub async fn json_endpoint(
    app: &Arc<App>,
    rt: &Arc<Runtime>,
    key: &Arc<ClientKey>,
    endpoint: Endpoint,
    req: Request<Incoming>,
    log: RequestLog,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, rt.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_openai_response(),
    };
    let (body, peek) = match protocol::body::peek_request(&body) {
        Ok(peek) => (body, peek),
        Err(BodyError::Missing("model")) if endpoint == Endpoint::Moderations => {
            match with_default_model(&body, DEFAULT_MODERATION_MODEL) {
                Ok(pair) => pair,
                Err(e) => return body_error(e).into_openai_response(),
            }
        }
        Err(e) => return body_error(e).into_openai_response(),
    };
    log.set_model(
        &peek.model,
        rt.settings.prices.lookup(&peek.model),
        peek.stream,
    );
    let candidates = match crate::routing::candidates(rt, key, &peek.model) {
        Ok(c) => c,
        Err(e) => return e.into_openai_response(),
    };
    let mut req = JsonRequest::new(endpoint, body, peek, Format::OpenAiChat);
    req.headers = parts.headers;
    req.log = log;
    attempt::forward_json(app, rt, key, req, candidates).await
}

fn with_default_model(
    body: &Bytes,
    model: &str,
) -> Result<(Bytes, protocol::body::RequestPeek), BodyError> {
    let view = protocol::body::ObjectView::parse(body)?;
    let raw = protocol::body::json_string(model);
    let patched = Bytes::from(protocol::body::rewrite(
        body,
        &view,
        &[Edit::Set {
            key: "model",
            raw_json: &raw,
        }],
    ));
    let peek = protocol::body::peek_request(&patched)?;
    Ok((patched, peek))
}

pub(crate) fn body_error(e: BodyError) -> ApiError {
    let err = ApiError::bad_request(e.to_string());
    match e {
        BodyError::Missing(field) | BodyError::WrongType { field, .. } => err.param(field),
        BodyError::NotUtf8 { .. }
        | BodyError::Json { .. }
        | BodyError::NotObject
        | BodyError::Empty => err.code("invalid_json"),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("request body exceeds the limit of {limit} bytes"),
    )
    .code("request_too_large")
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pub(crate) async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: u64,
) -> Result<Bytes, ApiError> {
    if declared_length(headers).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let limit_bytes = usize::try_from(limit).unwrap_or(usize::MAX);
    match read_whole_within(body, limit_bytes, BODY_READ_TIMEOUT).await {
        None => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "timed out reading the request body",
        )),
        Some(Err(ReadError::TooLarge)) => Err(too_large(limit)),
        Some(Err(ReadError::Body(e))) => Err(ApiError::bad_request(format!(
            "could not read the request body: {e}"
        ))),
        Some(Ok(body)) => Ok(body),
    }
}

/// `/v1/audio/transcriptions`: read only until the `model` field, then stream the upload.
pub async fn multipart_endpoint(
    app: &App,
    rt: &Arc<Runtime>,
    key: &ClientKey,
    endpoint: Endpoint,
    req: Request<Incoming>,
    log: RequestLog,
) -> Response<RespBody> {
    let limit = rt.settings.max_body_bytes;
    let (parts, mut body) = req.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let Some(boundary) = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary)
    else {
        return ApiError::bad_request("expected a multipart/form-data body with a boundary")
            .code("invalid_content_type")
            .into_openai_response();
    };
    if declared_length(&parts.headers).is_some_and(|n| n > limit) {
        return too_large(limit).into_openai_response();
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut ended = false;
    let span = loop {
        match multipart::find_field(&buf, &boundary, "model") {
            FieldScan::Found(span) => break Some(span),
            FieldScan::Absent => break None,
            FieldScan::NeedMore if ended => break None,
            FieldScan::NeedMore => {}
        }
        match tokio::time::timeout(BODY_READ_TIMEOUT, body.frame()).await {
            Err(_) => {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    "timed out reading the upload",
                )
                .into_openai_response();
            }
            Ok(None) => ended = true,
            Ok(Some(Err(e))) => {
                return ApiError::bad_request(format!("could not read the upload: {e}"))
                    .into_openai_response();
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                    if buf.len() as u64 > limit {
                        return too_large(limit).into_openai_response();
                    }
                }
            }
        }
    };
    let Some(span) = span else {
        return ApiError::bad_request("missing required field `model`")
            .param("model")
            .into_openai_response();
    };
    let model = String::from_utf8_lossy(&buf[span.clone()])
        .trim()
        .to_string();
    log.set_model(&model, rt.settings.prices.lookup(&model), false);
    let candidates = match crate::routing::candidates(rt, key, &model) {
        Ok(c) => c,
        Err(e) => return e.into_openai_response(),
    };
    let now = std::time::Instant::now();
    if let Err(e) = crate::routing::policy::admit(rt, &app.routing, app.ledger(), key, &model, now)
    {
        return e.into_openai_response();
    }
    let content_type = content_type.unwrap_or(HeaderValue::from_static("multipart/form-data"));
    let renamed = |upstream: &str| -> Bytes {
        if upstream == model {
            return Bytes::copy_from_slice(&buf);
        }
        let mut out = Vec::with_capacity(buf.len() + upstream.len());
        out.extend_from_slice(&buf[..span.start]);
        out.extend_from_slice(upstream.as_bytes());
        out.extend_from_slice(&buf[span.end..]);
        Bytes::from(out)
    };
    // A fully read upload can be sent again to another channel; a streamed one only once.
    let mut rest = if ended { None } else { Some(body) };
    let mut sent_once = false;
    let cost = |_: &crate::runtime::Candidate| crate::keypool::limits::Cost {
        requests: 1,
        ..Default::default()
    };
    let client = Format::OpenAiChat;
    let ctx = attempt::RequestCtx {
        endpoint,
        stream: false,
        body_len: if ended { Some(buf.len() as u64) } else { None },
        headers: &parts.headers,
        log,
    };
    attempt::run_attempts(
        app,
        rt,
        key,
        &model,
        &candidates,
        client,
        &ctx,
        cost,
        |cand| {
            if !upstream::serves(cand.engine, endpoint) {
                return Some(Prepared::Unserved(format!(
                    "the `{}` engine does not serve {}",
                    cand.engine.name(),
                    endpoint.path()
                )));
            }
            if cand.engine == Engine::Demo {
                return Some(Prepared::Answer(
                    ApiError::bad_request(
                        "the demo provider does not implement /v1/audio/transcriptions",
                    )
                    .into_openai_response(),
                ));
            }
            let prefix = renamed(&cand.upstream_model);
            let body = if ended {
                full(prefix)
            } else if let Some(rest) = rest.take() {
                PrefixedBody::new(prefix, rest, limit).boxed_unsync()
            } else {
                return None;
            };
            if sent_once && !ended {
                return None;
            }
            sent_once = true;
            Some(Prepared::Upstream(Send {
                endpoint,
                body,
                content_type: content_type.clone(),
                wants_stream: false,
                upstream: upstream::Wire::Api(client),
                convert: None,
                headers: Vec::new(),
                json_array: false,
                sign_payload: None,
                strip_usage: false,
            }))
        },
    )
    .await
}
