//! `POST /v1/messages`: a minimal, buffered stand-in for Anthropic's Messages
//! API, there so the Anthropic side of the limiter (headers, 429/529 bodies,
//! `x-api-key`) can be exercised. Text only: no streaming, no tools, any
//! model name accepted. The reply and token rules are the chat endpoint's.

use http::{Response, StatusCode};
use serde_json::Value;

use crate::body::{self, Body};
use crate::chat::derive_reply;
use crate::flavor::anthropic as error;
use crate::server::{Ctx, TokenUsage};
use crate::util::{Json, alnum_id, obj, tokens_for_chars, truncate_words, word_ends};

fn invalid(message: &str, request_id: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        request_id,
    )
}

pub(crate) fn missing_key(request_id: &str) -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "x-api-key header is required",
        request_id,
    )
}

pub(crate) fn bad_json(request_id: &str) -> Response<Body> {
    invalid(
        "There was an issue with the request body: invalid JSON",
        request_id,
    )
}

/// Characters and joined text of a string or an array of content blocks.
fn text_of(content: &Value) -> (usize, String) {
    match content {
        Value::String(s) => (s.chars().count(), s.clone()),
        Value::Array(blocks) => {
            let texts: Vec<&str> = blocks
                .iter()
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            (
                texts.iter().map(|t| t.chars().count()).sum(),
                texts.join(" "),
            )
        }
        _ => (0, String::new()),
    }
}

/// Input tokens: ceil(characters of `system` and every message / 4), at least 1.
pub(crate) fn input_tokens_of(v: &Value) -> u64 {
    let system = v.get("system").map_or(0, |s| text_of(s).0);
    let msgs: usize = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|m| m.get("content"))
                .map(|c| text_of(c).0)
                .sum()
        })
        .unwrap_or(0);
    tokens_for_chars(system + msgs)
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("max_tokens").and_then(Value::as_u64)
}

pub(crate) fn handle(ctx: &Ctx<'_>, v: &Value, request_id: &str) -> Response<Body> {
    let Some(model) = v.get("model").and_then(Value::as_str) else {
        return invalid("model: Field required", request_id);
    };
    let Some(max_tokens) = max_tokens_of(v) else {
        return invalid("max_tokens: Field required", request_id);
    };
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return invalid("messages: Field required", request_id);
    };
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return invalid(
            "mock-upstream: streaming is not implemented on /v1/messages",
            request_id,
        );
    }
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(|c| text_of(c).1);
    let full = if ctx.mode.empty_reply {
        String::new()
    } else {
        match ctx.shared.reply() {
            Some(r) => r.to_string(),
            None => derive_reply(last_user.as_deref()),
        }
    };
    let (text, cut) = truncate_words(&full, usize::try_from(max_tokens).unwrap_or(usize::MAX));
    let input = input_tokens_of(v);
    let output = word_ends(text).len() as u64;
    let seed = ctx.shared.id_seed ^ ctx.seq.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let out = obj! {
        "id": alnum_id("msg_01", seed, 22),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": Json::Arr(vec![obj! {"type": "text", "text": text}]),
        "stop_reason": if cut { "max_tokens" } else { "end_turn" },
        "stop_sequence": Json::Null,
        "usage": obj! {
            "input_tokens": input,
            "cache_creation_input_tokens": 0u64,
            "cache_read_input_tokens": 0u64,
            "output_tokens": output,
        },
    };
    let mut resp = body::json(StatusCode::OK, out.to_vec());
    resp.extensions_mut().insert(TokenUsage {
        input,
        output,
        output_per_choice: output,
    });
    resp
}
