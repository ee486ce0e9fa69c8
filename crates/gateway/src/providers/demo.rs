//! The built-in demo provider behind `llmux serve --demo`: answers in process, deterministically,
//! so a newcomer can try every client without any real key or network.

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};

use crate::config::schema::{ApiKeyConfig, Config, ModelEntry, ModelRule, Pos, ProviderConfig};
use crate::error::ApiError;
use crate::providers::urls::Endpoint;
use crate::routing::attempt::JsonRequest;
use crate::server::body::{BoxError, RespBody};
use crate::server::transcode::{Conversion, StreamTranscoder, convert_body};
use protocol::convert::dispatch::{self, EncodeCtx};
use protocol::ir::Format;

pub const DEMO_CLIENT_KEY: &str = "sk-llmux-demo";
pub const DEMO_CHAT_MODEL: &str = "demo-chat";
pub const DEMO_EMBED_MODEL: &str = "demo-embed";

/// A config with one demo channel and one client key allowed everything.
pub fn demo_config() -> Config {
    let entry = |name: &str| ModelEntry {
        upstream: name.to_string(),
        alias: name.to_string(),
        pos: Pos::default(),
    };
    let provider = ProviderConfig {
        provider: "demo".into(),
        base_url: Some("demo://local/v1".into()),
        engine: Some("demo".into()),
        model: Some(vec![
            entry(DEMO_CHAT_MODEL),
            entry(DEMO_EMBED_MODEL),
            entry("omni-moderation-latest"),
        ]),
        tools: true,
        image: true,
        ..ProviderConfig::default()
    };
    Config {
        providers: vec![provider],
        api_keys: vec![ApiKeyConfig {
            api: DEMO_CLIENT_KEY.into(),
            model: vec![ModelRule {
                rule: "all".into(),
                weight: None,
                pos: Pos::default(),
            }],
            ..ApiKeyConfig::default()
        }],
        ..Config::default()
    }
}

pub fn respond(req: &JsonRequest, model: &str) -> Response<RespBody> {
    if req.client != Format::OpenAiChat {
        return respond_converted(req, model);
    }
    let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
        return ApiError::bad_request("request body is not valid JSON").into_openai_response();
    };
    match req.endpoint {
        Endpoint::ChatCompletions => chat(
            &body,
            model,
            req.peek.stream,
            req.peek.include_usage == Some(true),
        ),
        Endpoint::Embeddings => embeddings(&body, model),
        Endpoint::Moderations => moderations(&body, model),
        other => ApiError::bad_request(format!(
            "the demo provider does not implement {}",
            other.path()
        ))
        .into_openai_response(),
    }
}

fn last_user_text(body: &Value) -> String {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return String::new();
    };
    let Some(msg) = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
    else {
        return String::new();
    };
    match msg.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The deterministic reply: a greeting that echoes (the start of) the last user message.
pub fn demo_reply(user_text: &str) -> String {
    let echo: String = user_text.chars().take(200).collect();
    if echo.trim().is_empty() {
        "Hello from the llmux demo provider!".to_string()
    } else {
        format!(
            "Hello from the llmux demo provider! You said: {}",
            echo.trim()
        )
    }
}

fn count_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4).max(1)
}

/// Anthropic, Gemini and Responses clients: the demo answers in OpenAI's format, converted
/// through the IR like any other upstream's answer.
fn respond_converted(req: &JsonRequest, model: &str) -> Response<RespBody> {
    let client = req.client;
    let mut ir = match dispatch::request_to_ir(client, &req.body) {
        Ok(ir) => ir,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(client),
    };
    let include_usage = ir.include_usage;
    ir.model = model.to_string();
    ir.stream = req.peek.stream;
    ir.include_usage = true;
    let body = match protocol::convert::openai_chat::request_from_ir(&ir)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|e| e.to_string()))
    {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(e).into_response(client),
    };
    let conv = Conversion {
        upstream: crate::providers::upstream::Wire::Api(Format::OpenAiChat),
        client,
        ctx: EncodeCtx {
            id: format!("demo{:016x}", fastrand::u64(..)),
            model: req.peek.model.clone(),
            created: unix_now(),
            include_usage,
            json_array: req.json_array,
        },
    };
    match chat_output(&body, model, req.peek.stream, true) {
        ChatOutput::Whole(v) => {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            match convert_body(&conv, &bytes) {
                Ok((out, _)) => crate::error::json_response(StatusCode::OK, Bytes::from(out), None),
                Err(e) => ApiError::internal(e).into_response(client),
            }
        }
        ChatOutput::Frames(frames) => {
            let mut t = StreamTranscoder::new(&conv);
            let mut out = Vec::new();
            for f in &frames {
                t.feed(f, &mut out);
            }
            t.finish(&mut out);
            let content_type = if req.json_array {
                "application/json; charset=utf-8"
            } else {
                "text/event-stream; charset=utf-8"
            };
            let mut resp = Response::new(crate::server::body::full(Bytes::from(out)));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            resp
        }
    }
}

enum ChatOutput {
    Whole(Value),
    /// SSE frames, `[DONE]` included.
    Frames(Vec<Bytes>),
}

fn chat(body: &Value, model: &str, stream: bool, include_usage: bool) -> Response<RespBody> {
    match chat_output(body, model, stream, include_usage) {
        ChatOutput::Whole(v) => json_ok(v),
        ChatOutput::Frames(frames) => {
            let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                frames.into_iter().map(|f| Ok(Frame::data(f))).collect();
            let mut resp = Response::new(StreamBody::new(stream::iter(frames)).boxed_unsync());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
    }
}

fn chat_output(body: &Value, model: &str, stream: bool, include_usage: bool) -> ChatOutput {
    let prompt: String = body
        .get("messages")
        .and_then(Value::as_array)
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m.get("content").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let reply = demo_reply(&last_user_text(body));
    let usage = json!({
        "prompt_tokens": count_tokens(&prompt),
        "completion_tokens": reply.split_whitespace().count(),
        "total_tokens": count_tokens(&prompt) + reply.split_whitespace().count() as u64,
    });
    let id = format!("chatcmpl-demo{:016x}", fastrand::u64(..));
    let created = unix_now();
    if !stream {
        let out = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply, "refusal": null},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        });
        return ChatOutput::Whole(out);
    }
    let chunk = |delta: Value, finish: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if include_usage {
            c["usage"] = Value::Null;
        }
        c
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    let words: Vec<&str> = reply.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        let piece = if i == 0 {
            (*w).to_string()
        } else {
            format!(" {w}")
        };
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    events.push(chunk(json!({}), json!("stop")));
    if include_usage {
        events.push(
            json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": usage}),
        );
    }
    let mut frames: Vec<Bytes> = events
        .iter()
        .map(|e| protocol::sse::encode_data(&serde_json::to_vec(e).unwrap_or_default()))
        .collect();
    frames.push(Bytes::from_static(protocol::sse::DONE_FRAME));
    ChatOutput::Frames(frames)
}

fn embeddings(body: &Value, model: &str) -> Response<RespBody> {
    let inputs: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().map(|v| v.to_string()).collect(),
        _ => {
            return ApiError::bad_request("`input` must be a string or an array")
                .param("input")
                .into_openai_response();
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            // A stable pseudo-embedding: 8 dimensions seeded from the text's bytes.
            let mut seed: u64 = 1469598103934665603;
            for b in text.bytes() {
                seed = (seed ^ u64::from(b)).wrapping_mul(1099511628211);
            }
            let v: Vec<f64> = (0..8)
                .map(|d| {
                    let x = seed.rotate_left(d * 8) % 2000;
                    (x as f64 / 1000.0) - 1.0
                })
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|s| count_tokens(s)).sum();
    json_ok(json!({"object": "list", "data": data, "model": model,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
}

fn moderations(body: &Value, model: &str) -> Response<RespBody> {
    let text = body.get("input").map(|v| v.to_string()).unwrap_or_default();
    let flagged = text.to_ascii_lowercase().contains("flag_me");
    json_ok(
        json!({"id": format!("modr-demo{:x}", fastrand::u64(..)), "model": model,
                   "results": [{"flagged": flagged, "categories": {"violence": flagged},
                                "category_scores": {"violence": if flagged { 0.99 } else { 0.0 }}}]}),
    )
}

fn json_ok(v: Value) -> Response<RespBody> {
    crate::error::json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
        None,
    )
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
