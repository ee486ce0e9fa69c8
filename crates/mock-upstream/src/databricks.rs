//! Databricks Model Serving: `POST /serving-endpoints/{name}/invocations` (the REST API,
//! "Query a serving endpoint") and `POST /serving-endpoints/chat/completions` (what the OpenAI
//! client calls with `base_url` `{workspace}/serving-endpoints`, naming the endpoint in
//! `model`), answered in Databricks' OpenAI-compatible chat shape by the shared rules of
//! [`crate::convo`].
//!
//! Credentials: a personal access token as `Authorization: Bearer <token>`, or as HTTP Basic
//! with the user `token` (`curl -u token:$DATABRICKS_TOKEN`). Without either: 401; a token the
//! workspace does not know: 403 `{"error_code":403,"message":"Invalid access token."}`.
//!
//! Endpoints named `databricks-*` (the pay-per-token foundation models) and the configured
//! models exist; others are 404 `RESOURCE_DOES_NOT_EXIST`. Claude endpoints are hybrid
//! reasoning models: Anthropic's `thinking` object (`budget_tokens` ≥ 1024 and below
//! `max_tokens`) turns thinking on, `reasoning_effort` is refused, and the answer carries the
//! thinking as a signed `{"type":"reasoning","summary":[{"type":"summary_text",...}]}` content
//! block before the text (streams: one such block per delta, the signature in the last). A
//! reasoning block sent back in history must carry the signature the mock issued. Other
//! errors use Databricks' envelope `{"error_code": "...", "message": "..."}`.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::FaultKind;
use crate::body::{self, Body};
use crate::convo::{self, Convo, Plan, Stop};
use crate::server::{Ctx, TokenUsage};
use crate::stream::{self, Events, arg_pieces};
use crate::util::{Json, alnum_id, obj, tokens_for_chars, unix_now, word_pieces};

const PREFIX: &str = "/serving-endpoints/";
/// Same scheme as the Anthropic and Bedrock routes' thinking signatures.
const SIGNATURE_LABEL: &str = "mock-thinking-signature";
const MIN_BUDGET: u64 = 1024;
const INTERNAL: &str = "The server encountered an internal error. Please try again later.";

/// The endpoint name of an invocations path.
pub(crate) fn invocations_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix(PREFIX)?.strip_suffix("/invocations")?;
    (!name.is_empty() && !name.contains('/')).then_some(name)
}

/// The token of `Authorization: Basic base64("token:<token>")` (how `curl -u token:...` and
/// `.netrc` send a personal access token).
pub(crate) fn basic_token(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, creds) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = crate::util::base64_decode(creds.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let token = text.strip_prefix("token:")?;
    (!token.is_empty()).then(|| token.to_owned())
}

/// Databricks' error envelope.
fn error(status: StatusCode, code: Json, message: &str) -> Response<Body> {
    body::json(
        status,
        obj! {"error_code": code, "message": message}.to_vec(),
    )
}

fn bad_request(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, Json::from("BAD_REQUEST"), message)
}

/// No credentials, or not a bearer token nor `token:` basic credentials.
pub(crate) fn missing_key() -> Response<Body> {
    error(
        StatusCode::UNAUTHORIZED,
        Json::Num(401),
        "Credential was not sent or was of an unsupported type for this API.",
    )
}

/// An unknown or revoked token (databricks-sdk-go#873: numeric `error_code`, and the reason
/// in `X-Databricks-Reason-Phrase`).
pub(crate) fn invalid_key() -> Response<Body> {
    let mut resp = error(
        StatusCode::FORBIDDEN,
        Json::Num(403),
        "Invalid access token.",
    );
    resp.headers_mut().insert(
        HeaderName::from_static("x-databricks-reason-phrase"),
        HeaderValue::from_static("Invalid access token."),
    );
    resp
}

pub(crate) fn rate_limited() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        Json::from("REQUEST_LIMIT_EXCEEDED"),
        "REQUEST_LIMIT_EXCEEDED: Too many requests were received for this endpoint. Please wait and try again.",
    )
}

/// A model the workspace may not use (community.databricks.com: "The endpoint is temporarily
/// disabled due to a Databricks-set rate limit of 0").
pub(crate) fn exhausted() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        Json::from("PERMISSION_DENIED"),
        "PERMISSION_DENIED: The endpoint is temporarily disabled due to a Databricks-set rate limit of 0.",
    )
}

pub(crate) fn overloaded() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        Json::from("TEMPORARILY_UNAVAILABLE"),
        "TEMPORARILY_UNAVAILABLE: The service is temporarily unavailable. Please try again later.",
    )
}

pub(crate) fn bad_json() -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        Json::from("MALFORMED_REQUEST"),
        "Malformed request: the body is not valid JSON.",
    )
}

/// A scripted fault in Databricks' words (rate limits and raw statuses are handled by the
/// caller).
pub(crate) fn fault(kind: FaultKind, body: &Bytes) -> Response<Body> {
    match kind {
        FaultKind::InsufficientQuota => exhausted(),
        FaultKind::InvalidKey => invalid_key(),
        FaultKind::Overloaded => overloaded(),
        FaultKind::BadRequest { message } => bad_request(&message),
        FaultKind::ContextLengthExceeded => {
            let prompt = crate::chat::prompt_tokens_of_body(body);
            bad_request(&format!(
                "Bad request: prompt is too long: {} tokens > 200000 maximum",
                prompt + 200_000
            ))
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            Json::from("INTERNAL_ERROR"),
            INTERNAL,
        ),
    }
}

/// Whether the workspace serves an endpoint of this name.
fn exists(ctx: &Ctx<'_>, name: &str) -> bool {
    name.starts_with("databricks-") || ctx.shared.has_model(name)
}

/// What the answer needs from a validated request.
struct Request<'a> {
    model: &'a str,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u64>,
    thinking: bool,
    stop: Vec<String>,
}

fn check_reasoning_blocks(messages: &[Value]) -> Result<(), String> {
    for (i, m) in messages.iter().enumerate() {
        let Some(parts) = m.get("content").and_then(Value::as_array) else {
            continue;
        };
        for (j, p) in parts.iter().enumerate() {
            if p.get("type").and_then(Value::as_str) != Some("reasoning") {
                continue;
            }
            for s in p
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = s.get("text").and_then(Value::as_str).unwrap_or("");
                let sig = s.get("signature").and_then(Value::as_str).unwrap_or("");
                if sig != convo::signature(SIGNATURE_LABEL, text) {
                    return Err(format!(
                        "Bad request: messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn validate<'a>(
    obj: &'a Map<String, Value>,
    path_name: Option<&'a str>,
) -> Result<Request<'a>, String> {
    let model = match (path_name, obj.get("model").and_then(Value::as_str)) {
        (Some(name), _) => name,
        (None, Some(m)) => m,
        (None, None) => return Err("Bad request: the endpoint name is required in `model`".into()),
    };
    let messages = match obj.get("messages").and_then(Value::as_array) {
        Some(m) if !m.is_empty() => m,
        _ => return Err("Bad request: `messages` must be a non-empty array".into()),
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "user" | "assistant" | "tool") {
            return Err(format!(
                "Bad request: messages[{i}].role {role:?} is not supported"
            ));
        }
        if role == "tool" && m.get("tool_call_id").and_then(Value::as_str).is_none() {
            return Err(format!(
                "Bad request: messages[{i}].tool_call_id is required"
            ));
        }
    }
    check_reasoning_blocks(messages)?;
    let claude = model.contains("claude");
    if claude && obj.get("reasoning_effort").is_some_and(|v| !v.is_null()) {
        return Err(format!(
            "Bad request: reasoning_effort is not supported by the endpoint {model}; use thinking"
        ));
    }
    let max_tokens = ["max_tokens", "max_completion_tokens"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_u64));
    let thinking = match obj.get("thinking").filter(|t| !t.is_null()) {
        None => false,
        Some(t) => match t.get("type").and_then(Value::as_str) {
            Some("enabled") => {
                let budget = t.get("budget_tokens").and_then(Value::as_u64).unwrap_or(0);
                if budget < MIN_BUDGET {
                    return Err(format!(
                        "Bad request: thinking.budget_tokens must be at least {MIN_BUDGET}"
                    ));
                }
                if max_tokens.is_none_or(|m| m <= budget) {
                    return Err("Bad request: budget_tokens must be less than max_tokens".into());
                }
                claude
            }
            Some("disabled") => false,
            _ => return Err("Bad request: thinking.type must be enabled or disabled".into()),
        },
    };
    let stream = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = stream
        && obj
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let stop = match obj.get("stop") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Ok(Request {
        model,
        stream,
        include_usage,
        max_tokens,
        thinking,
        stop,
    })
}

/// The conversation as the shared rules see it (OpenAI chat shape).
fn convo(obj: &Map<String, Value>) -> Convo<'_> {
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let text_of = |c: Option<&Value>| match c {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| text_of(m.get("content")));
    let last_is_user = messages
        .last()
        .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("user"));
    crate::chat::openai_convo(obj, last_user, last_is_user)
}

fn finish_reason(plan: &Plan) -> &'static str {
    match plan.stop {
        Stop::ToolUse => "tool_calls",
        Stop::MaxTokens => "length",
        Stop::End | Stop::Sequence(_) => "stop",
    }
}

fn usage(prompt: u64, completion: u64) -> Json {
    obj! {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
}

fn reasoning_block(text: &str, signature: Option<String>) -> Json {
    let mut item = vec![
        ("type", Json::from("summary_text")),
        ("text", Json::from(text)),
    ];
    item.push(("signature", Json::from(signature)));
    obj! {"type": "reasoning", "summary": Json::Arr(vec![Json::Obj(item)])}
}

pub(crate) fn handle(ctx: &Ctx<'_>, v: &Value, path_name: Option<&str>) -> Response<Body> {
    let Some(obj) = v.as_object() else {
        return bad_json();
    };
    let req = match validate(obj, path_name) {
        Ok(r) => r,
        Err(message) => return bad_request(&message),
    };
    if !exists(ctx, req.model) {
        return error(
            StatusCode::NOT_FOUND,
            Json::from("RESOURCE_DOES_NOT_EXIST"),
            &format!("Endpoint with name '{}' does not exist.", req.model),
        );
    }
    let limits = convo::Limits {
        max_tokens: req.max_tokens,
        thinking: req.thinking,
        stop_sequences: &req.stop,
    };
    let plan = convo::plan(ctx, &convo(obj), limits);
    let seed = ctx.seed();
    let id = alnum_id("chatcmpl_", seed, 32);
    let created = unix_now();
    let prompt = crate::chat::prompt_tokens_of(v);
    let output = plan.output_tokens();
    let calls: Vec<(String, &convo::Call)> = plan
        .calls
        .iter()
        .enumerate()
        .map(|(i, c)| (alnum_id("call_", seed ^ (i as u64 + 1), 24), c))
        .collect();
    let tokens = TokenUsage {
        input: prompt,
        output,
        output_per_choice: output,
    };
    let mut resp = if req.stream {
        stream_answer(
            ctx,
            &req,
            &id,
            created,
            &plan,
            &calls,
            usage(prompt, output),
        )
    } else {
        let content = match &plan.thinking {
            Some(t) => {
                let sig = convo::signature(SIGNATURE_LABEL, t);
                let mut blocks = vec![reasoning_block(t, Some(sig))];
                if !plan.text.is_empty() {
                    blocks.push(obj! {"type": "text", "text": plan.text.as_str()});
                }
                Json::Arr(blocks)
            }
            None if calls.is_empty() => Json::from(plan.text.as_str()),
            None => Json::Null,
        };
        let mut message = vec![("role", Json::from("assistant")), ("content", content)];
        if !calls.is_empty() {
            let tool_calls = calls
                .iter()
                .map(|(id, c)| {
                    obj! {
                        "id": id.as_str(),
                        "type": "function",
                        "function": obj! {"name": c.name.as_str(), "arguments": c.arguments.as_str()},
                    }
                })
                .collect();
            message.push(("tool_calls", Json::Arr(tool_calls)));
        }
        let out = obj! {
            "id": id.as_str(),
            "object": "chat.completion",
            "created": created,
            "model": req.model,
            "choices": Json::Arr(vec![obj! {
                "index": 0u64,
                "message": Json::Obj(message),
                "finish_reason": finish_reason(&plan),
            }]),
            "usage": usage(prompt, output),
        };
        body::json(StatusCode::OK, out.to_vec())
    };
    resp.extensions_mut().insert(tokens);
    resp
}

fn stream_answer(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    id: &str,
    created: u64,
    plan: &Plan,
    calls: &[(String, &convo::Call)],
    usage: Json,
) -> Response<Body> {
    let chunk = |delta: Json, finish: Option<&'static str>| {
        let v = obj! {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": Json::Arr(vec![obj! {
                "index": 0u64,
                "delta": delta,
                "finish_reason": finish.map(str::to_owned),
            }]),
        };
        stream::data(&v.to_vec())
    };
    let mut events = Events::new();
    events.push(chunk(obj! {"role": "assistant", "content": ""}, None));
    if let Some(t) = &plan.thinking {
        for piece in word_pieces(t) {
            let block = reasoning_block(piece, None);
            events.push_generated(chunk(obj! {"content": Json::Arr(vec![block])}, None), 1);
        }
        let sig = convo::signature(SIGNATURE_LABEL, t);
        let block = reasoning_block("", Some(sig));
        events.push(chunk(obj! {"content": Json::Arr(vec![block])}, None));
    }
    for piece in word_pieces(&plan.text) {
        events.push_generated(chunk(obj! {"content": piece}, None), 1);
    }
    for (k, (call_id, call)) in calls.iter().enumerate() {
        let header = obj! {
            "index": k as u64,
            "id": call_id.as_str(),
            "type": "function",
            "function": obj! {"name": call.name.as_str(), "arguments": ""},
        };
        events.push(chunk(obj! {"tool_calls": Json::Arr(vec![header])}, None));
        for piece in arg_pieces(&call.arguments) {
            let args = obj! {"index": k as u64, "function": obj! {"arguments": piece}};
            events.push_generated(
                chunk(obj! {"tool_calls": Json::Arr(vec![args])}, None),
                tokens_for_chars(piece.chars().count()),
            );
        }
    }
    events.push(chunk(obj! {}, Some(finish_reason(plan))));
    if req.include_usage {
        let v = obj! {
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": req.model,
            "choices": Json::Arr(Vec::new()),
            "usage": usage,
        };
        events.push(stream::data(&v.to_vec()));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events.into_response(ctx, "text/event-stream", |_| {
        // The OpenAI-compatible in-stream failure: an `error` object where a chunk would be.
        let e = obj! {"error": obj! {"message": INTERNAL, "type": "server_error", "code": "INTERNAL_ERROR"}};
        vec![stream::data(&e.to_vec())]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            invocations_name("/serving-endpoints/databricks-claude-sonnet-4/invocations"),
            Some("databricks-claude-sonnet-4")
        );
        assert_eq!(invocations_name("/serving-endpoints//invocations"), None);
        assert_eq!(invocations_name("/serving-endpoints/a/b/invocations"), None);
        assert_eq!(
            invocations_name("/serving-endpoints/chat/completions"),
            None
        );
    }

    #[test]
    fn thinking_rules() {
        let req = |v: Value| {
            let obj = v.as_object().cloned().unwrap_or_default();
            validate(&obj, Some("databricks-claude-sonnet-4"))
                .map(|r| r.thinking)
                .map_err(|e| e.to_string())
        };
        let msgs = serde_json::json!([{"role": "user", "content": "hi"}]);
        assert_eq!(
            req(
                serde_json::json!({"messages": msgs, "max_tokens": 2048, "thinking": {"type": "enabled", "budget_tokens": 1024}})
            ),
            Ok(true)
        );
        assert!(req(serde_json::json!({"messages": msgs, "thinking": {"type": "enabled", "budget_tokens": 1024}})).is_err());
        assert!(req(serde_json::json!({"messages": msgs, "max_tokens": 9000, "thinking": {"type": "enabled", "budget_tokens": 512}})).is_err());
        assert!(req(serde_json::json!({"messages": msgs, "reasoning_effort": "low"})).is_err());
        let forged = serde_json::json!([
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "reasoning", "summary": [{"type": "summary_text", "text": "x", "signature": "forged"}]}, {"type": "text", "text": "y"}]},
            {"role": "user", "content": "again"},
        ]);
        assert!(req(serde_json::json!({"messages": forged})).is_err());
    }
}
