//! The non-OpenAI ingress APIs: Anthropic Messages, Gemini generateContent and the OpenAI
//! Responses API. Each reaches any upstream through the same attempt loop as chat completions:
//! bytes pass through when the upstream speaks the client's format, and go through the IR
//! otherwise. Errors are rendered in the client's own error shape.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode};
use hyper::body::Incoming;
use protocol::body::{ObjectView, RequestPeek};
use protocol::convert::dispatch;
use protocol::ir::{Format, estimate};
use serde_json::json;

use crate::app::App;
use crate::error::{ApiError, json_response};
use crate::providers::urls::Endpoint;
use crate::routing::attempt::{self, JsonRequest};
use crate::runtime::{ClientKey, Runtime};
use crate::server::body::RespBody;
use crate::server::openai::{body_error, read_body};
use crate::usage::RequestLog;

/// Anthropic headers a client may send that mean something to an Anthropic upstream.
const ANTHROPIC_FORWARDED: [&str; 2] = ["anthropic-version", "anthropic-beta"];

/// What a Gemini path asks for: `/v1beta/models/{model}:{method}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeminiCall {
    pub model: String,
    pub method: GeminiMethod,
}

pub use protocol::convert::gemini::Method as GeminiMethod;

pub fn gemini_call(path: &str) -> Option<GeminiCall> {
    protocol::convert::gemini::model_from_path(path).map(|(model, method)| GeminiCall {
        model: model.to_string(),
        method,
    })
}

/// `POST /v1/messages` and `POST /v1/responses`: the model and `stream` are in the body.
pub async fn body_model(
    app: &Arc<App>,
    rt: &Arc<Runtime>,
    key: &Arc<ClientKey>,
    client: Format,
    req: Request<Incoming>,
    log: RequestLog,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, rt.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(client),
    };
    let peek = match protocol::body::peek_request(&body) {
        Ok(p) => p,
        Err(e) => return body_error(e).into_response(client),
    };
    log.set_model(
        &peek.model,
        rt.settings.prices.lookup(&peek.model),
        peek.stream,
    );
    if client == Format::OpenAiResponses
        && let Some(raw) = peek.view.raw(&body, "previous_response_id")
        && raw != b"null"
    {
        return ApiError::bad_request(
            "previous_response_id is not supported: llmux does not store responses; send the \
             whole conversation in `input` instead",
        )
        .param("previous_response_id")
        .into_response(client);
    }
    let candidates = match crate::routing::candidates(rt, key, &peek.model) {
        Ok(c) => c,
        Err(e) => return e.into_response(client),
    };
    let mut jr = JsonRequest::new(Endpoint::ChatCompletions, body, peek, client);
    jr.headers = parts.headers.clone();
    jr.log = log;
    if client == Format::Anthropic {
        for name in ANTHROPIC_FORWARDED {
            if let Some(v) = parts.headers.get(name) {
                jr.forward_headers
                    .push((HeaderName::from_static(name), v.clone()));
            }
        }
    }
    attempt::forward_json(app, rt, key, jr, candidates).await
}

/// `POST /v1beta/models/{model}:generateContent|streamGenerateContent`.
pub async fn gemini(
    app: &Arc<App>,
    rt: &Arc<Runtime>,
    key: &Arc<ClientKey>,
    call: GeminiCall,
    req: Request<Incoming>,
    log: RequestLog,
) -> Response<RespBody> {
    let client = Format::Gemini;
    let stream = call.method == GeminiMethod::StreamGenerateContent;
    log.set_model(&call.model, rt.settings.prices.lookup(&call.model), stream);
    let sse = req
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, rt.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(client),
    };
    let view = match ObjectView::parse(&body) {
        Ok(v) => v,
        Err(e) => return body_error(e).into_response(client),
    };
    let peek = RequestPeek {
        view,
        model: call.model,
        stream,
        include_usage: None,
    };
    let candidates = match crate::routing::candidates(rt, key, &peek.model) {
        Ok(c) => c,
        Err(e) => return e.into_response(client),
    };
    let mut jr = JsonRequest::new(Endpoint::ChatCompletions, body, peek, client);
    jr.headers = parts.headers;
    jr.json_array = stream && !sse;
    jr.log = log;
    attempt::forward_json(app, rt, key, jr, candidates).await
}

/// Counting endpoints answer from the local estimate (see `protocol::ir::estimate`), after
/// checking the key may use the model.
pub async fn count_tokens(
    rt: &Arc<Runtime>,
    key: &ClientKey,
    client: Format,
    model_from_path: Option<String>,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, rt.settings.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.into_response(client),
    };
    // Gemini's countTokens may wrap a whole request: {"generateContentRequest": {...}}.
    let inner = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("generateContentRequest").cloned())
        .and_then(|v| serde_json::to_vec(&v).ok())
        .map(Bytes::from);
    let source = inner.as_ref().unwrap_or(&body);
    let ir = match dispatch::request_to_ir(client, source) {
        Ok(ir) => ir,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(client),
    };
    let model = model_from_path.unwrap_or_else(|| ir.model.clone());
    if let Err(e) = crate::routing::candidates(rt, key, &model) {
        return e.into_response(client);
    }
    let costs = match client {
        Format::Anthropic => &estimate::ANTHROPIC,
        Format::Gemini => &estimate::GEMINI,
        Format::OpenAiChat | Format::OpenAiResponses => &estimate::OPENAI,
    };
    let tokens = estimate::input_tokens(&ir, costs);
    let out = match client {
        Format::Anthropic => json!({ "input_tokens": tokens }),
        Format::Gemini => json!({ "totalTokens": tokens }),
        Format::OpenAiChat | Format::OpenAiResponses => json!({
            "model": model,
            "prompt_tokens": tokens,
            "estimated": true,
        }),
    };
    json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&out).unwrap_or_default()),
        None,
    )
}

/// `GET /v1/providers`: the channels this key can reach, their engines and the aliases each
/// serves; never a secret (keys are counted, base_url query strings dropped).
pub fn providers(rt: &Runtime, key: &ClientKey) -> Response<RespBody> {
    let mut by_channel: Vec<Vec<String>> = vec![Vec::new(); rt.channels.len()];
    for alias in &key.model_ids {
        if let Some(cands) = key.candidates(alias) {
            for c in cands.iter() {
                if let Some(list) = by_channel.get_mut(c.channel)
                    && !list.contains(alias)
                {
                    list.push(alias.clone());
                }
            }
        }
    }
    let data: Vec<serde_json::Value> = rt
        .channels
        .iter()
        .zip(by_channel)
        .filter(|(_, models)| !models.is_empty())
        .map(|(ch, models)| {
            let engine =
                crate::providers::engine::detect(&ch.base_url, ch.forced_engine, "gpt").name();
            let base_url = ch.base_url.split('?').next().unwrap_or_default();
            json!({
                "provider": &*ch.name,
                "engine": engine,
                "base_url": base_url,
                "models": models,
                "keys": ch.keys.len(),
            })
        })
        .collect();
    json_response(
        StatusCode::OK,
        Bytes::from(
            serde_json::to_vec(&json!({"object": "list", "data": data})).unwrap_or_default(),
        ),
        None,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn gemini_paths() {
        assert_eq!(
            gemini_call("/v1beta/models/gemini-2.5-flash:streamGenerateContent"),
            Some(GeminiCall {
                model: "gemini-2.5-flash".into(),
                method: GeminiMethod::StreamGenerateContent
            })
        );
        assert_eq!(gemini_call("/v1beta/models/m:embedContent"), None);
    }
}
