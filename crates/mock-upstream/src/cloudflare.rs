//! Cloudflare Workers AI text generation: `POST
//! /client/v4/accounts/{account}/ai/run/{model}`, answered in the Cloudflare
//! API envelope (`{"result", "success", "errors", "messages"}`) or, with
//! `stream: true`, as SSE `data: {"response": ...}` events ending with
//! `data: [DONE]`, by the shared rules of [`crate::convo`]. The model never
//! thinks, and there is no finish reason in this API.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;

use crate::FaultKind;
use crate::body::{self, Body};
use crate::convo::{self, Choice, Convo, ToolDef};
use crate::server::{Ctx, TokenUsage};
use crate::stream::{self, Events};
use crate::util::{Json, alnum_id, obj, word_pieces};

const PREFIX: &str = "/client/v4/accounts/";
const CONTEXT_WINDOW: u64 = 128_000;
/// Padding characters for the `p` field Workers AI adds to stream events.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyz0123456789";

/// `(account, model)` of a run path; the model keeps its slashes
/// (`@cf/meta/llama-3.1-8b-instruct`).
pub(crate) fn split_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix(PREFIX)?;
    let (account, rest) = rest.split_once('/')?;
    let model = rest.strip_prefix("ai/run/")?;
    (!account.is_empty() && !model.is_empty()).then_some((account, model))
}

/// The Cloudflare API's error envelope.
pub(crate) fn error(status: StatusCode, code: u64, message: &str) -> Response<Body> {
    let v = obj! {
        "result": Json::Null,
        "success": false,
        "errors": Json::Arr(vec![obj! {"code": code, "message": message}]),
        "messages": Json::Arr(Vec::new()),
    };
    body::json(status, v.to_vec())
}

fn bad_input(message: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        5006,
        &format!("AiError: Bad input: {message}"),
    )
}

/// A missing or unknown API token.
pub(crate) fn auth_error() -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, 10000, "Authentication error")
}

pub(crate) fn rate_limited() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        971,
        "Please wait and consider throttling your request speed",
    )
}

pub(crate) fn exhausted() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        3036,
        "You have used up your daily free allocation of 10,000 neurons. Please upgrade to Cloudflare's Workers Paid plan if you would like to continue usage.",
    )
}

pub(crate) fn overloaded() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        3040,
        "No more data centers to forward the request to",
    )
}

pub(crate) fn bad_json() -> Response<Body> {
    bad_input("Error: the request body is not valid JSON")
}

/// A scripted fault in Cloudflare's words.
pub(crate) fn fault(kind: FaultKind, body: &Bytes) -> Response<Body> {
    match kind {
        FaultKind::InsufficientQuota => exhausted(),
        FaultKind::InvalidKey => auth_error(),
        FaultKind::Overloaded => overloaded(),
        FaultKind::BadRequest { message } => bad_input(&message),
        FaultKind::ContextLengthExceeded => {
            let prompt = serde_json::from_slice::<Value>(body)
                .map(|v| prompt_tokens_of(&v))
                .unwrap_or(1);
            // Workers AI answers 413 for this (users' reports quote the message with code
            // 5021).
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                5021,
                &format!(
                    "The estimated number of input and maximum output tokens ({}) exceeded this model context window limit ({CONTEXT_WINDOW}).",
                    CONTEXT_WINDOW + prompt
                ),
            )
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            3043,
            "Internal server error",
        ),
    }
}

fn messages(v: &Value) -> &[Value] {
    v.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Text of a message's `content`: a string, or the text parts of a list.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Prompt tokens: ceil(characters of every message's text (or of `prompt`)
/// / 4), at least 1.
pub(crate) fn prompt_tokens_of(v: &Value) -> u64 {
    let chars: usize = match v.get("prompt").and_then(Value::as_str) {
        Some(p) => p.chars().count(),
        None => messages(v)
            .iter()
            .map(|m| content_text(m.get("content")).chars().count())
            .sum(),
    };
    crate::util::tokens_for_chars(chars)
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("max_tokens").and_then(Value::as_u64)
}

fn known_model(ctx: &Ctx<'_>, model: &str) -> bool {
    model.starts_with("@cf/") || model.starts_with("@hf/") || ctx.shared.has_model(model)
}

/// How tools were offered decides how calls come back: classic tools
/// (`{"name", "description", "parameters"}`) get classic calls (`{"name",
/// "arguments": {...}}`), OpenAI-style tools (`{"type": "function",
/// "function": {...}}`) get OpenAI-style calls (`{"id", "type",
/// "function": {"name", "arguments": "..."}}`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum ToolStyle {
    Classic,
    OpenAi,
}

fn tools(v: &Value) -> Result<(Vec<ToolDef<'_>>, ToolStyle), String> {
    let mut defs = Vec::new();
    let mut style = ToolStyle::Classic;
    for (k, t) in v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (f, s) = match t.get("function") {
            Some(f) if t.get("type").and_then(Value::as_str) == Some("function") => {
                (f, ToolStyle::OpenAi)
            }
            _ => (t, ToolStyle::Classic),
        };
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            return Err(format!(
                "Error: Required properties missing at '/tools/{k}': name"
            ));
        };
        style = s;
        defs.push(ToolDef {
            name,
            params: f.get("parameters"),
        });
    }
    Ok((defs, style))
}

fn check(v: &Value) -> Result<(), String> {
    let prompt = v.get("prompt");
    let msgs = v.get("messages");
    match (prompt, msgs) {
        (Some(Value::String(_)), None) => return Ok(()),
        (None, Some(Value::Array(m))) if !m.is_empty() => {}
        _ => {
            return Err(
                "Error: oneOf at '/' not met, 1 matches required (a non-empty 'messages' list or a 'prompt' string)"
                    .to_owned(),
            );
        }
    }
    for (i, m) in messages(v).iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "user" | "assistant" | "tool") {
            return Err(format!(
                "Error: Value '{role}' at '/messages/{i}/role' is not one of: system, user, assistant, tool"
            ));
        }
        let has_calls = m
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|c| !c.is_empty());
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts))
                if parts.iter().all(|p| {
                    matches!(
                        p.get("type").and_then(Value::as_str),
                        Some("text" | "image_url")
                    )
                }) => {}
            None | Some(Value::Null) if role == "assistant" && has_calls => {}
            _ => {
                return Err(format!(
                    "Error: Type mismatch of '/messages/{i}/content', expected a string"
                ));
            }
        }
    }
    if let Some(m) = v.get("max_tokens")
        && m.as_u64().is_none_or(|n| n == 0)
    {
        return Err("Error: Value at '/max_tokens' must be a positive integer".to_owned());
    }
    Ok(())
}

fn usage(prompt: u64, output: u64) -> Json {
    obj! {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
}

/// `POST /client/v4/accounts/{account}/ai/run/{model}`.
pub(crate) fn run(ctx: &Ctx<'_>, v: &Value, model: &str) -> Response<Body> {
    if !known_model(ctx, model) {
        return error(
            StatusCode::BAD_REQUEST,
            5007,
            &format!("No such model {model} or task"),
        );
    }
    if let Err(m) = check(v) {
        return bad_input(&m);
    }
    let (defs, style) = match tools(v) {
        Ok(t) => t,
        Err(m) => return bad_input(&m),
    };
    let msgs = messages(v);
    let (last_user, last_is_user) = match v.get("prompt").and_then(Value::as_str) {
        Some(p) => (Some(p.to_owned()), true),
        None => {
            let last_user = msgs
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(|m| content_text(m.get("content")));
            let last_is_user = msgs
                .last()
                .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("user"));
            (last_user, last_is_user)
        }
    };
    let convo = Convo {
        last_user,
        last_is_user,
        tools: defs,
        choice: Choice::Auto,
        parallel: true,
    };
    let limits = convo::Limits {
        max_tokens: max_tokens_of(v),
        thinking: false,
        stop_sequences: &[],
    };
    let plan = convo::plan(ctx, &convo, limits);
    let prompt = prompt_tokens_of(v);
    let output = plan.output_tokens();
    let seed = ctx.seed();
    let calls: Vec<Json> = plan
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| match style {
            ToolStyle::Classic => obj! {"name": c.name.as_str(), "arguments": c.args.clone()},
            ToolStyle::OpenAi => obj! {
                "id": alnum_id("chatcmpl-tool-", seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15), 32).to_ascii_lowercase(),
                "type": "function",
                "function": obj! {"name": c.name.as_str(), "arguments": c.arguments.as_str()},
            },
        })
        .collect();
    let streaming = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut resp = if streaming {
        let mut events = Events::new();
        let pad = |n: usize| {
            PADDING
                .get(..1 + (n * 5) % PADDING.len())
                .unwrap_or(PADDING)
        };
        for (n, piece) in word_pieces(&plan.text).into_iter().enumerate() {
            let e = obj! {"response": piece, "p": pad(n)};
            events.push_generated(stream::data(&e.to_vec()), 1);
        }
        if !calls.is_empty() {
            let e = obj! {"response": "", "tool_calls": Json::Arr(calls)};
            events.push_generated(stream::data(&e.to_vec()), output);
        }
        let last = obj! {"response": "", "usage": usage(prompt, output)};
        events.push(stream::data(&last.to_vec()));
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events.into_response(ctx, "text/event-stream", |_| {
            let e = obj! {"errors": Json::Arr(vec![obj! {"code": 3043u64, "message": "Internal server error"}])};
            vec![stream::data(&e.to_vec())]
        })
    } else {
        let mut result = vec![];
        if calls.is_empty() {
            result.push(("response", Json::from(plan.text.as_str())));
        } else {
            result.push(("response", Json::Null));
            result.push(("tool_calls", Json::Arr(calls)));
        }
        result.push(("usage", usage(prompt, output)));
        let out = obj! {
            "result": Json::Obj(result),
            "success": true,
            "errors": Json::Arr(Vec::new()),
            "messages": Json::Arr(Vec::new()),
        };
        body::json(StatusCode::OK, out.to_vec())
    };
    resp.extensions_mut()
        .insert(TokenUsage::single(prompt, output));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/client/v4/accounts/acc1/ai/run/@cf/meta/llama-3.1-8b-instruct"),
            Some(("acc1", "@cf/meta/llama-3.1-8b-instruct"))
        );
        assert_eq!(split_path("/client/v4/accounts/acc1/ai/models"), None);
        assert_eq!(split_path("/client/v4/accounts//ai/run/x"), None);
    }
}
