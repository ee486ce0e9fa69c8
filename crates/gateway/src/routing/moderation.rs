//! `ENABLE_MODERATION`: before a chat request is routed, the last user message is sent to
//! `/v1/moderations` (model `omni-moderation-latest`, routed through the key's own rules), and
//! flagged content is refused with uni-api's 400 message. uni-api's version of this is broken
//! (it calls its moderation route with its arguments in the wrong order). A moderation
//! provider that cannot be reached does not block traffic: the failure is logged and the
//! request goes through (the config check warns when a key cannot route the model at all).

use std::sync::Arc;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use protocol::ir::Format;
use serde_json::Value;

use crate::app::App;
use crate::error::ApiError;
use crate::providers::urls::Endpoint;
use crate::routing::attempt::{JsonRequest, run_json};
use crate::runtime::{ClientKey, Runtime};

/// The moderation model uni-api asks for.
pub const MODEL: &str = "omni-moderation-latest";
/// uni-api's answer to flagged content.
pub const FLAGGED: &str = "Content did not pass the moral check, please modify and try again.";
/// Largest moderation answer read.
const MAX_ANSWER: usize = 1024 * 1024;

fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of the last user turn of a chat request in any of the supported formats (OpenAI
/// and Anthropic `messages`, Gemini `contents`, Responses `input`).
pub fn last_user_text(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let text = if let Some(messages) = v.get("messages").and_then(Value::as_array) {
        let m = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
        text_of(m.get("content")?)
    } else if let Some(contents) = v.get("contents").and_then(Value::as_array) {
        let c = contents.iter().rev().find(|c| {
            c.get("role")
                .and_then(Value::as_str)
                .is_none_or(|r| r == "user")
        })?;
        text_of(c.get("parts")?)
    } else {
        match v.get("input")? {
            Value::String(s) => s.clone(),
            Value::Array(items) => {
                let m = items
                    .iter()
                    .rev()
                    .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))?;
                text_of(m.get("content")?)
            }
            _ => return None,
        }
    };
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// `Err` with the 400 the client gets when the content is flagged.
pub async fn check(
    app: &Arc<App>,
    rt: &Arc<Runtime>,
    key: &Arc<ClientKey>,
    body: &[u8],
) -> Result<(), ApiError> {
    let Some(text) = last_user_text(body) else {
        return Ok(());
    };
    let Some(candidates) = key.candidates(MODEL).filter(|c| !c.is_empty()).cloned() else {
        tracing::warn!(
            key = %key.masked,
            "ENABLE_MODERATION is on but this key cannot route `{MODEL}`; not moderated"
        );
        return Ok(());
    };
    let request = serde_json::json!({ "model": MODEL, "input": text });
    let Ok(bytes) = serde_json::to_vec(&request) else {
        return Ok(());
    };
    let bytes = Bytes::from(bytes);
    let Ok(peek) = protocol::body::peek_request(&bytes) else {
        return Ok(());
    };
    let req = JsonRequest::new(Endpoint::Moderations, bytes, peek, Format::OpenAiChat);
    let resp = run_json(
        Arc::clone(app),
        Arc::clone(rt),
        Arc::clone(key),
        req,
        candidates,
    )
    .await;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut answer = Vec::new();
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    answer.extend_from_slice(d);
                }
                if answer.len() > MAX_ANSWER {
                    complete = false;
                    break;
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let flagged = match (complete, status.is_success()) {
        (true, true) => serde_json::from_slice::<Value>(&answer).ok().and_then(|v| {
            let results = v.get("results")?.as_array()?;
            Some(
                results
                    .iter()
                    .any(|r| r.get("flagged").and_then(Value::as_bool) == Some(true)),
            )
        }),
        _ => None,
    };
    match flagged {
        Some(true) => Err(
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", FLAGGED)
                .code("content_policy_violation"),
        ),
        Some(false) => Ok(()),
        None => {
            tracing::warn!(
                key = %key.masked,
                status = status.as_u16(),
                "moderation check failed; the request is not moderated"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_user_text_in_every_format() {
        let openai = br#"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"kill"},{"type":"image_url","image_url":{"url":"u"}}]}]}"#;
        assert_eq!(last_user_text(openai).as_deref(), Some("kill"));
        let gemini = br#"{"contents":[{"role":"user","parts":[{"text":"a"},{"text":"b"}]}]}"#;
        assert_eq!(last_user_text(gemini).as_deref(), Some("a b"));
        let responses = br#"{"input":"hello"}"#;
        assert_eq!(last_user_text(responses).as_deref(), Some("hello"));
        let none = br#"{"messages":[{"role":"system","content":"s"}]}"#;
        assert_eq!(last_user_text(none), None);
    }
}
