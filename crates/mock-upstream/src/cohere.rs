//! Cohere's Chat API v2: `POST /v2/chat`, buffered and streamed (SSE with
//! `event:` names), with tools, tool plans and thinking, answered by the
//! shared rules of [`crate::convo`]. Errors are `{"id": ..., "message": ...}`.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;

use crate::FaultKind;
use crate::body::{self, Body};
use crate::convo::{self, Call, Choice, Convo, Plan, Stop, ToolDef};
use crate::server::{Ctx, TokenUsage};
use crate::stream::{self, Events, arg_pieces};
use crate::util::{Json, alnum_id, hex_chars, obj, tokens_for_chars, word_pieces};

/// Tokens Cohere's own preamble adds to `usage.tokens.input_tokens` (they
/// are not billed: `billed_units.input_tokens` is the prompt rule alone).
pub(crate) const PREAMBLE_TOKENS: u64 = 10;
const CONTEXT_WINDOW: u64 = 256_000;

/// A v4-style UUID derived from `seed` (Cohere's response and error ids).
fn uuid(seed: u64) -> String {
    let h = hex_chars("", seed, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        h.get(0..8).unwrap_or(""),
        h.get(8..12).unwrap_or(""),
        h.get(13..16).unwrap_or(""),
        h.get(17..20).unwrap_or(""),
        h.get(20..32).unwrap_or("")
    )
}

pub(crate) fn error(status: StatusCode, seed: u64, message: &str) -> Response<Body> {
    body::json(status, obj! {"id": uuid(seed), "message": message}.to_vec())
}

fn invalid(seed: u64, message: &str) -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        seed,
        &format!("invalid request: {message}"),
    )
}

pub(crate) fn missing_key(seed: u64) -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, seed, "no api key supplied")
}

pub(crate) fn invalid_key(seed: u64) -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, seed, "invalid api token")
}

pub(crate) fn rate_limited(seed: u64) -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        seed,
        "You are past the per minute request limit, please wait and try again later.",
    )
}

pub(crate) fn exhausted(seed: u64) -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        seed,
        "You are using a Trial key, which is limited to 1000 API calls / month. You can continue to use the Trial key for free or upgrade to a Production key with higher rate limits at 'https://dashboard.cohere.com/api-keys'. Contact us on 'https://discord.gg/XW44jPfYJu' or email us at support@cohere.com with any questions",
    )
}

pub(crate) fn overloaded(seed: u64) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        seed,
        "service unavailable: the model is overloaded, please try again later",
    )
}

pub(crate) fn bad_json(seed: u64) -> Response<Body> {
    invalid(seed, "failed to decode JSON body")
}

/// A scripted fault in Cohere's words.
pub(crate) fn fault(kind: FaultKind, seed: u64, body: &Bytes) -> Response<Body> {
    match kind {
        FaultKind::InsufficientQuota => exhausted(seed),
        FaultKind::InvalidKey => invalid_key(seed),
        FaultKind::Overloaded => overloaded(seed),
        FaultKind::BadRequest { message } => invalid(seed, &message),
        FaultKind::ContextLengthExceeded => {
            let prompt = serde_json::from_slice::<Value>(body)
                .map(|v| prompt_tokens_of(&v))
                .unwrap_or(1);
            invalid(
                seed,
                &format!(
                    "too many tokens: total number of tokens in the prompt cannot exceed {CONTEXT_WINDOW} - received {}. Try using a shorter prompt, or enabling prompt truncating. See https://docs.cohere.com/reference/chat for more details.",
                    CONTEXT_WINDOW + prompt
                ),
            )
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            seed,
            "internal server error, this has been reported to our developers",
        ),
    }
}

/// Characters of a message's `content`: a string, or its text parts.
fn content_chars(content: Option<&Value>) -> usize {
    match content {
        Some(Value::String(s)) => s.chars().count(),
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p.get("type").and_then(Value::as_str) {
                Some("text") => p
                    .get("text")
                    .and_then(Value::as_str)
                    .map_or(0, |t| t.chars().count()),
                Some("document") => p.get("document").map_or(0, convo::string_chars),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

fn messages(v: &Value) -> &[Value] {
    v.get("messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn role_of(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// Prompt tokens (the billed ones): ceil(characters of every message's
/// text, tool results included / 4), at least 1.
pub(crate) fn prompt_tokens_of(v: &Value) -> u64 {
    tokens_for_chars(
        messages(v)
            .iter()
            .map(|m| content_chars(m.get("content")))
            .sum(),
    )
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("max_tokens").and_then(Value::as_u64)
}

fn known_model(ctx: &Ctx<'_>, model: &str) -> bool {
    ["command", "c4ai-", "north-"]
        .iter()
        .any(|p| model.starts_with(p))
        || ctx.shared.has_model(model)
}

struct Parsed<'a> {
    stream: bool,
    thinking: bool,
    stops: Vec<String>,
    convo: Convo<'a>,
}

fn check_user_content(i: usize, content: Option<&Value>) -> Result<(), String> {
    match content {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, p) in parts.iter().enumerate() {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") if p.get("text").and_then(Value::as_str).is_some() => {}
                    Some("image_url")
                        if p.get("image_url")
                            .and_then(|u| u.get("url"))
                            .and_then(Value::as_str)
                            .is_some() => {}
                    Some("document") => {}
                    _ => {
                        return Err(format!(
                            "messages[{i}].content[{j}]: content must be a text, image_url or document block"
                        ));
                    }
                }
            }
            Ok(())
        }
        _ => Err(format!("messages[{i}].content: field is required")),
    }
}

/// Roles, content shapes, and tool calls answered by tool messages (every
/// call of an assistant message must get a `tool` message with its id
/// before the next user or assistant message).
fn check_messages(msgs: &[Value]) -> Result<(), String> {
    if msgs.is_empty() {
        return Err("messages: at least one message is required".to_owned());
    }
    let mut pending: Vec<(usize, String)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let role = role_of(m);
        match role {
            "user" | "system" => check_user_content(i, m.get("content"))?,
            "assistant" => {
                let calls = m.get("tool_calls").and_then(Value::as_array);
                if m.get("content").is_none() && calls.is_none_or(Vec::is_empty) {
                    return Err(format!(
                        "messages[{i}]: assistant message must have content or tool_calls"
                    ));
                }
                for (k, c) in calls.into_iter().flatten().enumerate() {
                    let id = c.get("id").and_then(Value::as_str).unwrap_or("");
                    let args = c
                        .get("function")
                        .and_then(|f| f.get("arguments"))
                        .and_then(Value::as_str);
                    if id.is_empty() {
                        return Err(format!(
                            "messages[{i}].tool_calls[{k}].id: field is required"
                        ));
                    }
                    if args.is_none_or(|a| serde_json::from_str::<Value>(a).is_err()) {
                        return Err(format!(
                            "messages[{i}].tool_calls[{k}].function.arguments: must be a JSON string"
                        ));
                    }
                }
            }
            "tool" => {}
            other => {
                return Err(format!(
                    "messages[{i}].role: unknown role '{other}', expected one of: user, assistant, system, tool"
                ));
            }
        }
        if role != "tool"
            && let Some((at, id)) = pending.first()
        {
            return Err(format!(
                "messages[{at}]: tool call '{id}' has no tool result message"
            ));
        }
        match role {
            "assistant" => {
                pending = m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.get("id").and_then(Value::as_str))
                    .map(|id| (i, id.to_owned()))
                    .collect();
            }
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).unwrap_or("");
                match pending.iter().position(|(_, p)| p == id) {
                    Some(pos) => {
                        pending.remove(pos);
                    }
                    None => {
                        return Err(format!(
                            "messages[{i}].tool_call_id: '{id}' does not match any tool call of the preceding assistant message"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    match pending.first() {
        Some((at, id)) => Err(format!(
            "messages[{at}]: tool call '{id}' has no tool result message"
        )),
        None => Ok(()),
    }
}

fn parse<'a>(ctx: &Ctx<'_>, v: &'a Value) -> Result<Parsed<'a>, Box<Response<Body>>> {
    let seed = ctx.seed();
    let bad = |m: String| Box::new(invalid(seed, &m));
    let model = match v.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        _ => return Err(bad("model: field is required".to_owned())),
    };
    match v.get("messages") {
        Some(Value::Array(_)) => {}
        _ => return Err(bad("messages: field is required".to_owned())),
    }
    let msgs = messages(v);
    check_messages(msgs).map_err(bad)?;
    let mut tools = Vec::new();
    for (k, t) in v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = t.get("function");
        let name = f.and_then(|f| f.get("name")).and_then(Value::as_str);
        match (t.get("type").and_then(Value::as_str), name) {
            (Some("function"), Some(name)) => tools.push(ToolDef {
                name,
                params: f.and_then(|f| f.get("parameters")),
            }),
            _ => {
                return Err(bad(format!(
                    "tools[{k}]: a tool must be {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}"
                )));
            }
        }
    }
    let choice = match v.get("tool_choice").and_then(Value::as_str) {
        None => Choice::Auto,
        Some("REQUIRED") => Choice::Required,
        Some("NONE") => Choice::None,
        Some(other) => {
            return Err(bad(format!(
                "tool_choice: invalid value '{other}', expected one of: REQUIRED, NONE"
            )));
        }
    };
    let thinking = match v.get("thinking") {
        None | Some(Value::Null) => false,
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("enabled") => true,
            Some("disabled") => false,
            _ => {
                return Err(bad(
                    "thinking.type: invalid value, expected one of: enabled, disabled".to_owned(),
                ));
            }
        },
    };
    if let Some(m) = v.get("max_tokens")
        && m.as_u64().is_none_or(|n| n == 0)
    {
        return Err(bad("max_tokens: must be a positive integer".to_owned()));
    }
    if !known_model(ctx, model) {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            seed,
            &format!(
                "model '{model}' not found, make sure the correct model ID was used and that you have access to the model."
            ),
        )));
    }
    let mut last_user = None;
    let mut last_is_user = false;
    for m in msgs {
        match role_of(m) {
            "user" => {
                last_user = Some(match m.get("content") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(parts)) => parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                });
                last_is_user = true;
            }
            "system" => {}
            _ => last_is_user = false,
        }
    }
    Ok(Parsed {
        stream: v.get("stream").and_then(Value::as_bool).unwrap_or(false),
        thinking,
        stops: v
            .get("stop_sequences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        convo: Convo {
            last_user,
            last_is_user,
            tools,
            choice,
            parallel: true,
        },
    })
}

fn finish_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::End => "COMPLETE",
        Stop::MaxTokens => "MAX_TOKENS",
        Stop::Sequence(_) => "STOP_SEQUENCE",
        Stop::ToolUse => "TOOL_CALL",
    }
}

/// The tool plan Cohere writes before its calls: "I will call NAME." (names
/// joined with ", " and " and ").
fn tool_plan(calls: &[Call]) -> String {
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    let list = match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    };
    format!("I will call {list}.")
}

/// `{name}_` + 12 lowercase alphanumerics, like Cohere's call ids.
fn call_id(seed: u64, i: usize, name: &str) -> String {
    let id = alnum_id(
        "",
        seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        12,
    );
    format!("{name}_{}", id.to_ascii_lowercase())
}

fn usage(prompt: u64, output: u64) -> Json {
    obj! {
        "billed_units": obj! {"input_tokens": prompt, "output_tokens": output},
        "tokens": obj! {"input_tokens": prompt + PREAMBLE_TOKENS, "output_tokens": output},
    }
}

fn call_json(seed: u64, i: usize, call: &Call) -> Json {
    obj! {
        "id": call_id(seed, i, &call.name),
        "type": "function",
        "function": obj! {"name": call.name.as_str(), "arguments": call.arguments.as_str()},
    }
}

fn event(name: &str, v: &Json) -> Bytes {
    stream::named(name, &v.to_vec())
}

/// `POST /v2/chat`.
pub(crate) fn chat(ctx: &Ctx<'_>, v: &Value) -> Response<Body> {
    let req = match parse(ctx, v) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let limits = convo::Limits {
        max_tokens: max_tokens_of(v),
        thinking: req.thinking,
        stop_sequences: &req.stops,
    };
    let plan = convo::plan(ctx, &req.convo, limits);
    let prompt = prompt_tokens_of(v);
    let output = plan.output_tokens();
    let seed = ctx.seed();
    let id = uuid(seed);
    let mut resp = if req.stream {
        stream_response(ctx, &plan, &id, prompt, seed)
    } else {
        let mut message = vec![("role", Json::from("assistant"))];
        if plan.calls.is_empty() {
            let mut content = Vec::new();
            if let Some(t) = &plan.thinking {
                content.push(obj! {"type": "thinking", "thinking": t.as_str()});
            }
            content.push(obj! {"type": "text", "text": plan.text.as_str()});
            message.push(("content", Json::Arr(content)));
        } else {
            if let Some(t) = &plan.thinking {
                message.push((
                    "content",
                    Json::Arr(vec![obj! {"type": "thinking", "thinking": t.as_str()}]),
                ));
            }
            message.push(("tool_plan", Json::from(tool_plan(&plan.calls))));
            message.push((
                "tool_calls",
                Json::Arr(
                    plan.calls
                        .iter()
                        .enumerate()
                        .map(|(i, c)| call_json(seed, i, c))
                        .collect(),
                ),
            ));
        }
        let out = obj! {
            "id": id,
            "message": Json::Obj(message),
            "finish_reason": finish_reason(plan.stop),
            "usage": usage(prompt, output),
        };
        body::json(StatusCode::OK, out.to_vec())
    };
    resp.extensions_mut()
        .insert(TokenUsage::single(prompt, output));
    resp
}

fn stream_response(ctx: &Ctx<'_>, plan: &Plan, id: &str, prompt: u64, seed: u64) -> Response<Body> {
    let mut events = Events::new();
    events.push(event(
        "message-start",
        &obj! {"id": id, "type": "message-start", "delta": obj! {"message": obj! {
            "role": "assistant",
            "content": Json::Arr(Vec::new()),
            "tool_plan": "",
            "tool_calls": Json::Arr(Vec::new()),
            "citations": Json::Arr(Vec::new()),
        }}},
    ));
    let mut index = 0u64;
    let content_start = |index: u64, content: Json| {
        event(
            "content-start",
            &obj! {"type": "content-start", "index": index, "delta": obj! {"message": obj! {"content": content}}},
        )
    };
    let content_delta = |index: u64, content: Json| {
        event(
            "content-delta",
            &obj! {"type": "content-delta", "index": index, "delta": obj! {"message": obj! {"content": content}}},
        )
    };
    let content_end =
        |index: u64| event("content-end", &obj! {"type": "content-end", "index": index});
    if let Some(t) = &plan.thinking {
        events.push(content_start(
            index,
            obj! {"type": "thinking", "thinking": ""},
        ));
        for piece in word_pieces(t) {
            events.push_generated(content_delta(index, obj! {"thinking": piece}), 1);
        }
        events.push(content_end(index));
        index += 1;
    }
    if plan.calls.is_empty() {
        events.push(content_start(index, obj! {"type": "text", "text": ""}));
        for piece in word_pieces(&plan.text) {
            events.push_generated(content_delta(index, obj! {"text": piece}), 1);
        }
        events.push(content_end(index));
    } else {
        for piece in word_pieces(&tool_plan(&plan.calls)) {
            events.push(event(
                "tool-plan-delta",
                &obj! {"type": "tool-plan-delta", "delta": obj! {"message": obj! {"tool_plan": piece}}},
            ));
        }
        for (i, call) in plan.calls.iter().enumerate() {
            let at = i as u64;
            events.push(event(
                "tool-call-start",
                &obj! {"type": "tool-call-start", "index": at, "delta": obj! {"message": obj! {"tool_calls": obj! {
                    "id": call_id(seed, i, &call.name),
                    "type": "function",
                    "function": obj! {"name": call.name.as_str(), "arguments": ""},
                }}}},
            ));
            for piece in arg_pieces(&call.arguments) {
                events.push_generated(
                    event(
                        "tool-call-delta",
                        &obj! {"type": "tool-call-delta", "index": at, "delta": obj! {"message": obj! {"tool_calls": obj! {
                            "function": obj! {"arguments": piece},
                        }}}},
                    ),
                    tokens_for_chars(piece.chars().count()),
                );
            }
            events.push(event(
                "tool-call-end",
                &obj! {"type": "tool-call-end", "index": at},
            ));
        }
    }
    events.push(event(
        "message-end",
        &obj! {"type": "message-end", "delta": obj! {
            "finish_reason": finish_reason(plan.stop),
            "usage": usage(prompt, plan.output_tokens()),
        }},
    ));
    events.into_response(ctx, "text/event-stream", |_| {
        vec![event(
            "message-end",
            &obj! {"type": "message-end", "delta": obj! {
                "error": "internal server error, this has been reported to our developers",
                "finish_reason": "ERROR",
            }},
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_messages_must_answer_calls() {
        let call = json!({"role": "assistant", "tool_plan": "x", "tool_calls": [
            {"id": "a_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
            {"id": "b_2", "type": "function", "function": {"name": "b", "arguments": "{}"}}]});
        let user = json!({"role": "user", "content": "weather"});
        let ra = json!({"role": "tool", "tool_call_id": "a_1", "content": "x"});
        let rb = json!({"role": "tool", "tool_call_id": "b_2", "content": [{"type": "text", "text": "y"}]});
        assert_eq!(
            check_messages(&[user.clone(), call.clone(), ra.clone(), rb.clone()]),
            Ok(())
        );
        assert!(
            check_messages(&[user.clone(), call.clone(), ra.clone(), user.clone()])
                .is_err_and(|m| m == "messages[1]: tool call 'b_2' has no tool result message")
        );
        assert!(check_messages(&[user.clone(), rb]).is_err_and(|m| m.contains("does not match")));
        assert_eq!(tool_plan(&[]), "I will call .");
        assert!(uuid(1).len() == 36);
    }
}
