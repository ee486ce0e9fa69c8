//! Anthropic's Messages API: `POST /v1/messages` (buffered and streamed)
//! and `POST /v1/messages/count_tokens`, validated the way the real API
//! validates (its error messages are quoted from real responses), answered
//! by the shared rules of [`crate::convo`].

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::{Map, Value};

use crate::FaultKind;
use crate::body::{self, Body};
use crate::convo::{self, Call, Choice, Convo, Plan, Stop, ToolDef};
use crate::flavor::{self, ErrCtx};
use crate::server::{Ctx, TokenUsage, lock};
use crate::stream::{self, Events, arg_pieces};
use crate::util::{Json, alnum_id, fnv1a64, obj, tokens_for_chars, word_ends, word_pieces};

const DOCS_THINKING: &str = "https://docs.claude.com/en/docs/build-with-claude/extended-thinking";
/// Label of the thinking signatures the mock issues and verifies.
const SIGNATURE_LABEL: &str = "mock-thinking-signature";
/// Context window quoted by `ContextLengthExceeded`.
const CONTEXT_WINDOW: u64 = 200_000;

fn error(status: StatusCode, kind: &str, message: &str, request_id: &str) -> Response<Body> {
    flavor::anthropic(status, kind, message, request_id)
}

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

/// Every request must say which API version it speaks.
pub(crate) fn require_version(parts: &Parts, request_id: &str) -> Option<Response<Body>> {
    let present = parts
        .headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty());
    (!present).then(|| invalid("anthropic-version: header is required", request_id))
}

/// A scripted fault in Anthropic's words (rate limits and raw statuses are
/// handled by the caller).
pub(crate) fn fault(kind: FaultKind, ctx: &ErrCtx<'_>, _key: &str, body: &Bytes) -> Response<Body> {
    let rid = ctx.request_id;
    match kind {
        FaultKind::InsufficientQuota => flavor::exhausted(flavor::Dialect::Anthropic, ctx),
        FaultKind::InvalidKey => flavor::invalid_key(flavor::Dialect::Anthropic, "", rid),
        FaultKind::Overloaded => flavor::overloaded(flavor::Dialect::Anthropic, rid),
        FaultKind::BadRequest { message } => invalid(&message, rid),
        FaultKind::ContextLengthExceeded => {
            let prompt = serde_json::from_slice::<Value>(body)
                .map(|v| input_tokens_of(&v))
                .unwrap_or(1);
            invalid(
                &format!(
                    "prompt is too long: {} tokens > {CONTEXT_WINDOW} maximum",
                    CONTEXT_WINDOW + prompt
                ),
                rid,
            )
        }
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
            rid,
        ),
    }
}

/// Prompt prefixes seen with `cache_control`, for the cache-read rule.
#[derive(Default)]
pub(crate) struct PromptCache {
    seen: Mutex<HashSet<u64>>,
}

/// Bound on remembered prefixes (a long load test forgets, it does not grow).
const CACHE_CAPACITY: usize = 65_536;

impl PromptCache {
    /// Records `prefix` and says whether it was already cached.
    pub(crate) fn hit(&self, prefix: u64) -> bool {
        let mut seen = lock(&self.seen);
        if seen.contains(&prefix) {
            return true;
        }
        if seen.len() >= CACHE_CAPACITY {
            seen.clear();
        }
        seen.insert(prefix);
        false
    }
}

/// Characters the prompt rule counts in a content block: `text` blocks, and
/// the text of `tool_result` blocks (string content or its text blocks).
fn block_chars(block: &Value) -> usize {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => block
            .get("text")
            .and_then(Value::as_str)
            .map_or(0, |t| t.chars().count()),
        Some("tool_result") => match block.get("content") {
            Some(Value::String(s)) => s.chars().count(),
            Some(Value::Array(parts)) => parts.iter().map(block_chars).sum(),
            _ => 0,
        },
        _ => 0,
    }
}

/// Characters of a message's `content` (string or blocks).
fn content_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(blocks) => blocks.iter().map(block_chars).sum(),
        _ => 0,
    }
}

/// Input tokens: ceil(characters of `system` and of every message's text
/// and tool results / 4), at least 1.
pub(crate) fn input_tokens_of(v: &Value) -> u64 {
    let system = v.get("system").map_or(0, content_chars);
    let msgs: usize = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .filter_map(|m| m.get("content"))
                .map(content_chars)
                .sum()
        })
        .unwrap_or(0);
    tokens_for_chars(system + msgs)
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("max_tokens").and_then(Value::as_u64)
}

/// Why a request is refused.
enum Reject {
    Invalid(String),
    NotFound(String),
}

impl Reject {
    fn into_response(self, request_id: &str) -> Response<Body> {
        match self {
            Reject::Invalid(m) => invalid(&m, request_id),
            Reject::NotFound(m) => error(StatusCode::NOT_FOUND, "not_found_error", &m, request_id),
        }
    }
}

fn bad(message: impl Into<String>) -> Reject {
    Reject::Invalid(message.into())
}

/// Top-level fields of `POST /v1/messages` (beta fields included).
const MESSAGE_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "metadata",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "inference_geo",
    "cache_control",
    "speed",
    "diagnostics",
    "user_profile_id",
    "workspace_id",
];

/// Top-level fields of `POST /v1/messages/count_tokens`.
const COUNT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "system",
    "thinking",
    "tool_choice",
    "tools",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "cache_control",
    "speed",
];

const BLOCK_TYPES: &[&str] = &[
    "text",
    "image",
    "document",
    "search_result",
    "thinking",
    "redacted_thinking",
    "tool_use",
    "tool_result",
    "server_tool_use",
    "web_search_tool_result",
    "web_fetch_tool_result",
    "code_execution_tool_result",
    "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result",
    "tool_search_tool_result",
    "mcp_tool_use",
    "mcp_tool_result",
    "container_upload",
];

/// A validated request.
struct Parsed<'a> {
    model: &'a str,
    max_tokens: u64,
    stream: bool,
    thinking: bool,
    /// `display: "omitted"`: thinking text is withheld, signature kept.
    thinking_omitted: bool,
    convo: Convo<'a>,
    stops: Vec<String>,
}

fn role_of(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// The content blocks of a message (a string is one text block).
fn blocks(m: &Value) -> Vec<&Value> {
    match m.get("content") {
        Some(Value::Array(b)) => b.iter().collect(),
        _ => Vec::new(),
    }
}

fn block_type(b: &Value) -> &str {
    b.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Shape checks on `messages`, in the API's order.
fn check_messages(messages: &[Value]) -> Result<(), Reject> {
    if messages.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    let last = messages.len() - 1;
    for (i, m) in messages.iter().enumerate() {
        if !m.is_object() {
            return Err(bad(format!(
                "messages.{i}: Input should be a valid dictionary or object to extract fields from"
            )));
        }
        match m.get("role") {
            None => return Err(bad(format!("messages.{i}.role: Field required"))),
            Some(Value::String(r)) if r == "user" || r == "assistant" => {}
            Some(_) => {
                return Err(bad(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
        }
        let empty_ok = i == last && role_of(m) == "assistant";
        match m.get("content") {
            None => return Err(bad(format!("messages.{i}.content: Field required"))),
            Some(Value::String(s)) if s.is_empty() && !empty_ok => {
                return Err(bad(format!(
                    "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                )));
            }
            Some(Value::String(_)) => {}
            Some(Value::Array(b)) if b.is_empty() && !empty_ok => {
                return Err(bad(format!(
                    "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                )));
            }
            Some(Value::Array(b)) => {
                for (j, block) in b.iter().enumerate() {
                    check_block(i, j, block)?;
                }
            }
            Some(_) => {
                return Err(bad(format!(
                    "messages.{i}.content: Input should be a valid string"
                )));
            }
        }
    }
    Ok(())
}

fn check_block(i: usize, j: usize, block: &Value) -> Result<(), Reject> {
    let at = format!("messages.{i}.content.{j}");
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        return Err(bad(format!(
            "{at}: Unable to extract tag using discriminator 'type'"
        )));
    };
    if !BLOCK_TYPES.contains(&kind) {
        let expected: Vec<String> = BLOCK_TYPES.iter().map(|t| format!("'{t}'")).collect();
        return Err(bad(format!(
            "{at}: Input tag '{kind}' found using 'type' does not match any of the expected tags: {}",
            expected.join(", ")
        )));
    }
    let need = |field: &str| -> Result<(), Reject> {
        if block.get(field).is_none() {
            Err(bad(format!("{at}.{kind}.{field}: Field required")))
        } else {
            Ok(())
        }
    };
    match kind {
        "text" => {
            need("text")?;
            if block.get("text").and_then(Value::as_str) == Some("") {
                return Err(bad("messages: text content blocks must be non-empty"));
            }
        }
        "tool_use" => {
            need("id")?;
            need("name")?;
            need("input")?;
        }
        "tool_result" => need("tool_use_id")?,
        "thinking" => {
            need("thinking")?;
            need("signature")?;
        }
        "redacted_thinking" => need("data")?,
        _ => {}
    }
    Ok(())
}

/// Tool-use pairing: every `tool_use` must be answered by a `tool_result`
/// in the next (merged) user turn, every `tool_result` must answer a
/// `tool_use` of the previous (merged) assistant turn; thinking signatures
/// must be the ones the mock issued for their text.
fn check_pairing(messages: &[Value]) -> Result<(), Reject> {
    // Consecutive messages of one role form one turn.
    let mut turns: Vec<(usize, usize)> = Vec::new();
    let mut prev_role = "";
    for (i, m) in messages.iter().enumerate() {
        match turns.last_mut() {
            Some((_, end)) if prev_role == role_of(m) => *end = i,
            _ => turns.push((i, i)),
        }
        prev_role = role_of(m);
    }
    let ids_in = |turn: Option<&(usize, usize)>, kind: &str, field: &str| -> Vec<String> {
        let Some(&(a, b)) = turn else {
            return Vec::new();
        };
        messages
            .get(a..=b)
            .unwrap_or_default()
            .iter()
            .flat_map(blocks)
            .filter(|bl| block_type(bl) == kind)
            .filter_map(|bl| bl.get(field).and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    for (t, turn) in turns.iter().enumerate() {
        let (a, b) = *turn;
        if messages.get(a).map(role_of) == Some("user") {
            let asked = if t > 0 {
                ids_in(turns.get(t - 1), "tool_use", "id")
            } else {
                Vec::new()
            };
            for (i, m) in messages.iter().enumerate().take(b + 1).skip(a) {
                for (j, bl) in blocks(m).iter().enumerate() {
                    if block_type(bl) != "tool_result" {
                        continue;
                    }
                    let id = bl.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                    if !asked.iter().any(|x| x == id) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        )));
                    }
                }
            }
        } else {
            let answered = ids_in(turns.get(t + 1), "tool_result", "tool_use_id");
            for (i, m) in messages.iter().enumerate().take(b + 1).skip(a) {
                let missing: Vec<&str> = blocks(m)
                    .iter()
                    .filter(|bl| block_type(bl) == "tool_use")
                    .filter_map(|bl| bl.get("id").and_then(Value::as_str))
                    .filter(|id| !answered.iter().any(|x| x == id))
                    .collect();
                if !missing.is_empty() {
                    return Err(bad(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                        missing.join(", ")
                    )));
                }
                for (j, bl) in blocks(m).iter().enumerate() {
                    if block_type(bl) != "thinking" {
                        continue;
                    }
                    let text = bl.get("thinking").and_then(Value::as_str).unwrap_or("");
                    let sig = bl.get("signature").and_then(Value::as_str).unwrap_or("");
                    if sig != convo::signature(SIGNATURE_LABEL, text) {
                        return Err(bad(format!(
                            "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// With thinking on, a tool-use loop in progress (the conversation ends
/// with tool results) must replay the assistant's thinking first.
fn check_thinking_replay(messages: &[Value]) -> Result<(), Reject> {
    let Some(last) = messages.last() else {
        return Ok(());
    };
    let answering =
        role_of(last) == "user" && blocks(last).iter().any(|b| block_type(b) == "tool_result");
    if !answering {
        return Ok(());
    }
    let Some((i, assistant)) = messages
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| role_of(m) == "assistant")
    else {
        return Ok(());
    };
    let first = match assistant.get("content") {
        Some(Value::String(_)) => "text",
        Some(Value::Array(b)) => b.first().map_or("", block_type),
        _ => "",
    };
    if first == "thinking" || first == "redacted_thinking" {
        return Ok(());
    }
    Err(bad(format!(
        "messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at {DOCS_THINKING}"
    )))
}

fn check_system(system: Option<&Value>) -> Result<(), Reject> {
    match system {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(blocks)) => {
            for (j, b) in blocks.iter().enumerate() {
                if block_type(b) != "text" {
                    return Err(bad(format!("system.{j}.type: Input should be 'text'")));
                }
                if b.get("text").and_then(Value::as_str).is_none() {
                    return Err(bad(format!("system.{j}.text: Field required")));
                }
            }
            Ok(())
        }
        Some(_) => Err(bad("system: Input should be a valid string")),
    }
}

/// `(thinking on, display omitted)`, checking the budget rules.
fn check_thinking(
    obj: &Map<String, Value>,
    max_tokens: Option<u64>,
) -> Result<(bool, bool), Reject> {
    let Some(t) = obj.get("thinking").filter(|t| !t.is_null()) else {
        return Ok((false, false));
    };
    let omitted = t.get("display").and_then(Value::as_str) == Some("omitted");
    match t.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok((false, false)),
        Some("adaptive") => Ok((true, omitted)),
        Some("enabled") => {
            let Some(budget) = t.get("budget_tokens") else {
                return Err(bad("thinking.enabled.budget_tokens: Field required"));
            };
            let Some(budget) = budget.as_i64() else {
                return Err(bad(
                    "thinking.enabled.budget_tokens: Input should be a valid integer",
                ));
            };
            if budget < 1024 {
                return Err(bad(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                ));
            }
            if let Some(max) = max_tokens
                && u64::try_from(budget).unwrap_or(0) >= max
            {
                return Err(bad(format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at {DOCS_THINKING}#max-tokens-and-context-window-size"
                )));
            }
            Ok((true, omitted))
        }
        Some(other) => Err(bad(format!(
            "thinking: Input tag '{other}' found using 'type' does not match any of the expected tags: 'adaptive', 'disabled', 'enabled'"
        ))),
        None => Err(bad(
            "thinking: Unable to extract tag using discriminator 'type'",
        )),
    }
}

fn tool_defs(obj: &Map<String, Value>) -> Result<Vec<ToolDef<'_>>, Reject> {
    let Some(tools) = obj.get("tools").filter(|t| !t.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(tools) = tools.as_array() else {
        return Err(bad("tools: Input should be a valid list"));
    };
    let mut defs = Vec::new();
    for (k, t) in tools.iter().enumerate() {
        // Server tools (`web_search_20250305`, ...) are run by Anthropic.
        let custom = matches!(t.get("type").and_then(Value::as_str), None | Some("custom"));
        if !custom {
            continue;
        }
        let Some(name) = t.get("name").and_then(Value::as_str) else {
            return Err(bad(format!("tools.{k}.custom.name: Field required")));
        };
        let Some(schema) = t.get("input_schema") else {
            return Err(bad(format!(
                "tools.{k}.custom.input_schema: Field required"
            )));
        };
        defs.push(ToolDef {
            name,
            params: Some(schema),
        });
    }
    Ok(defs)
}

fn tool_choice(obj: &Map<String, Value>) -> Result<(Choice<'_>, bool), Reject> {
    let Some(c) = obj.get("tool_choice").filter(|c| !c.is_null()) else {
        return Ok((Choice::Auto, true));
    };
    let parallel = c.get("disable_parallel_tool_use").and_then(Value::as_bool) != Some(true);
    let choice = match c.get("type").and_then(Value::as_str) {
        Some("auto") => Choice::Auto,
        Some("any") => Choice::Required,
        Some("none") => Choice::None,
        Some("tool") => match c.get("name").and_then(Value::as_str) {
            Some(name) => Choice::Named(name),
            None => return Err(bad("tool_choice.tool.name: Field required")),
        },
        Some(other) => {
            return Err(bad(format!(
                "tool_choice: Input tag '{other}' found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'"
            )));
        }
        None => {
            return Err(bad(
                "tool_choice: Unable to extract tag using discriminator 'type'",
            ));
        }
    };
    Ok((choice, parallel))
}

/// The conversation's user side, as the shared rules see it: a user
/// message holding only tool results is a tool turn, not a user turn.
fn user_side(messages: &[Value]) -> (Option<String>, bool) {
    let text_of = |m: &Value| -> Option<String> {
        match m.get("content") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(b)) => {
                let texts: Vec<&str> = b
                    .iter()
                    .filter(|bl| block_type(bl) == "text")
                    .filter_map(|bl| bl.get("text").and_then(Value::as_str))
                    .collect();
                let tool_only =
                    texts.is_empty() && b.iter().any(|bl| block_type(bl) == "tool_result");
                (!tool_only).then(|| texts.join(" "))
            }
            _ => None,
        }
    };
    let mut last_user = None;
    let mut last_is_user = false;
    for m in messages {
        last_is_user = false;
        if role_of(m) == "user"
            && let Some(text) = text_of(m)
        {
            last_user = Some(text);
            last_is_user = true;
        }
    }
    (last_user, last_is_user)
}

fn known_model(ctx: &Ctx<'_>, model: &str) -> bool {
    model.starts_with("claude-") || ctx.shared.has_model(model)
}

/// Which API the body was sent to.
#[derive(Clone, Copy)]
enum Api<'a> {
    Messages,
    CountTokens,
    /// Vertex AI's `rawPredict` / `streamRawPredict`: the model is in the
    /// path, and the body carries `anthropic_version` instead of `model`.
    Vertex {
        model: &'a str,
    },
}

/// The `anthropic_version` Vertex AI requires in the body.
pub(crate) const VERTEX_VERSION: &str = "vertex-2023-10-16";

fn parse<'a>(
    ctx: &Ctx<'_>,
    obj: &'a Map<String, Value>,
    api: Api<'a>,
) -> Result<Parsed<'a>, Reject> {
    let count_only = matches!(api, Api::CountTokens);
    let allowed = |k: &str| match api {
        Api::Messages => MESSAGE_FIELDS.contains(&k),
        Api::CountTokens => COUNT_FIELDS.contains(&k),
        Api::Vertex { .. } => {
            k == "anthropic_version" || (k != "model" && MESSAGE_FIELDS.contains(&k))
        }
    };
    if let Some(extra) = obj.keys().find(|k| !allowed(k.as_str())) {
        return Err(bad(format!("{extra}: Extra inputs are not permitted")));
    }
    let model = match (api, obj.get("model")) {
        (Api::Vertex { model }, _) => {
            match obj.get("anthropic_version") {
                None => return Err(bad("anthropic_version: Field required")),
                Some(Value::String(v)) if v == VERTEX_VERSION => {}
                Some(_) => {
                    return Err(bad(format!(
                        "anthropic_version: Input should be '{VERTEX_VERSION}'"
                    )));
                }
            }
            model
        }
        (_, None) => return Err(bad("model: Field required")),
        (_, Some(Value::String(m))) => m.as_str(),
        (_, Some(_)) => return Err(bad("model: Input should be a valid string")),
    };
    let max_tokens = if count_only {
        None
    } else {
        match obj.get("max_tokens") {
            None => return Err(bad("max_tokens: Field required")),
            Some(v) => match v.as_i64() {
                None => return Err(bad("max_tokens: Input should be a valid integer")),
                Some(n) if n < 0 => {
                    return Err(bad(
                        "max_tokens: Input should be greater than or equal to 0",
                    ));
                }
                Some(n) => Some(n as u64),
            },
        }
    };
    let messages = match obj.get("messages") {
        None => return Err(bad("messages: Field required")),
        Some(Value::Array(m)) => m.as_slice(),
        Some(_) => return Err(bad("messages: Input should be a valid list")),
    };
    check_messages(messages)?;
    check_system(obj.get("system"))?;
    let (thinking, thinking_omitted) = check_thinking(obj, max_tokens)?;
    let tools = tool_defs(obj)?;
    let (choice, parallel) = tool_choice(obj)?;
    if thinking {
        if let Some(t) = obj.get("temperature").and_then(Value::as_f64)
            && t != 1.0
        {
            return Err(bad(format!(
                "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at {DOCS_THINKING}#important-considerations-when-using-extended-thinking"
            )));
        }
        if matches!(choice, Choice::Required | Choice::Named(_)) {
            return Err(bad(
                "Thinking may not be enabled when tool_choice forces tool use.",
            ));
        }
    }
    check_pairing(messages)?;
    if thinking {
        check_thinking_replay(messages)?;
    }
    let stops = match obj.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(s)) => s
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => return Err(bad("stop_sequences: Input should be a valid list")),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream: Input should be a valid boolean")),
    };
    if !known_model(ctx, model) {
        return Err(Reject::NotFound(format!("model: {model}")));
    }
    let (last_user, last_is_user) = user_side(messages);
    Ok(Parsed {
        model,
        max_tokens: max_tokens.unwrap_or(0),
        stream,
        thinking,
        thinking_omitted,
        convo: Convo {
            last_user,
            last_is_user,
            tools,
            choice,
            parallel,
        },
        stops,
    })
}

/// A counted piece of the prompt: (characters, text, its `cache_control`).
type CacheItem<'a> = (usize, &'a str, Option<&'a Value>);

fn push_content<'a>(content: &'a Value, items: &mut Vec<CacheItem<'a>>) {
    match content {
        Value::String(s) => items.push((s.chars().count(), s.as_str(), None)),
        Value::Array(bl) => {
            for b in bl {
                let text = b.get("text").and_then(Value::as_str).unwrap_or("");
                let control = b.get("cache_control").filter(|c| !c.is_null());
                items.push((block_chars(b), text, control));
            }
        }
        _ => {}
    }
}

/// Prompt-cache accounting: (cache creation tokens, cache read tokens, of
/// which in the 1-hour bucket).
struct CacheUse {
    creation: u64,
    read: u64,
    one_hour: bool,
}

/// The prefix up to the last `cache_control` breakpoint (system blocks,
/// then message blocks, in order; a top-level `cache_control` marks the last
/// block) is cached: its tokens, ceil(characters / 4), count as cache
/// creation the first time this model sees that exact prefix, as cache
/// reads afterwards.
fn cache_use(ctx: &Ctx<'_>, obj: &Map<String, Value>, model: &str) -> CacheUse {
    let none = CacheUse {
        creation: 0,
        read: 0,
        one_hour: false,
    };
    let mut items: Vec<CacheItem<'_>> = Vec::new();
    if let Some(system) = obj.get("system") {
        push_content(system, &mut items);
    }
    for m in obj
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(c) = m.get("content") {
            push_content(c, &mut items);
        }
    }
    let top = obj.get("cache_control").filter(|c| !c.is_null());
    let marker = match top {
        Some(c) if !items.is_empty() => Some((items.len() - 1, c)),
        _ => items
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, (_, _, c))| c.map(|c| (i, c))),
    };
    let Some((end, control)) = marker else {
        return none;
    };
    let prefix = items.get(..=end).unwrap_or_default();
    let chars: usize = prefix.iter().map(|(n, _, _)| n).sum();
    if chars == 0 {
        return none;
    }
    let mut key = String::from(model);
    for (_, text, _) in prefix {
        key.push('\u{0}');
        key.push_str(text);
    }
    let tokens = tokens_for_chars(chars);
    let one_hour = control.get("ttl").and_then(Value::as_str) == Some("1h");
    if ctx.shared.prompt_cache.hit(fnv1a64(key.as_bytes())) {
        CacheUse {
            creation: 0,
            read: tokens,
            one_hour,
        }
    } else {
        CacheUse {
            creation: tokens,
            read: 0,
            one_hour,
        }
    }
}

struct Usage {
    input: u64,
    cache: CacheUse,
    output: u64,
}

impl Usage {
    fn json(&self) -> Json {
        let (five_min, hour) = if self.cache.one_hour {
            (0, self.cache.creation)
        } else {
            (self.cache.creation, 0)
        };
        obj! {
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache.creation,
            "cache_read_input_tokens": self.cache.read,
            "cache_creation": obj! {
                "ephemeral_5m_input_tokens": five_min,
                "ephemeral_1h_input_tokens": hour,
            },
            "output_tokens": self.output,
            "service_tier": "standard",
        }
    }

    /// `message_delta`'s cumulative usage.
    fn delta_json(&self) -> Json {
        obj! {
            "input_tokens": self.input,
            "cache_creation_input_tokens": self.cache.creation,
            "cache_read_input_tokens": self.cache.read,
            "output_tokens": self.output,
        }
    }
}

fn stop_reason(stop: Stop, stops: &[String]) -> (&'static str, Json) {
    match stop {
        Stop::End => ("end_turn", Json::Null),
        Stop::MaxTokens => ("max_tokens", Json::Null),
        Stop::ToolUse => ("tool_use", Json::Null),
        Stop::Sequence(i) => (
            "stop_sequence",
            stops.get(i).cloned().map_or(Json::Null, Json::Str),
        ),
    }
}

fn tool_id(seed: u64, i: usize) -> String {
    alnum_id(
        "toolu_01",
        seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        22,
    )
}

fn tool_block(call: &Call, id: String) -> Json {
    obj! {"type": "tool_use", "id": id, "name": call.name.as_str(), "input": call.args.clone()}
}

/// `POST /v1/messages`.
pub(crate) fn messages(ctx: &Ctx<'_>, v: &Value) -> Response<Body> {
    answer(ctx, v, Api::Messages, false)
}

/// Vertex AI's `:rawPredict` / `:streamRawPredict` for the model in the
/// path (the stream method streams whatever the body's `stream` says).
pub(crate) fn vertex(ctx: &Ctx<'_>, v: &Value, model: &str, stream_method: bool) -> Response<Body> {
    answer(ctx, v, Api::Vertex { model }, stream_method)
}

fn answer(ctx: &Ctx<'_>, v: &Value, api: Api<'_>, force_stream: bool) -> Response<Body> {
    let rid = ctx.request_id;
    let Some(obj) = v.as_object() else {
        return bad_json(rid);
    };
    let mut req = match parse(ctx, obj, api) {
        Ok(r) => r,
        Err(e) => return e.into_response(rid),
    };
    req.stream |= force_stream;
    let limits = convo::Limits {
        max_tokens: Some(req.max_tokens),
        thinking: req.thinking,
        stop_sequences: &req.stops,
    };
    let plan = convo::plan(ctx, &req.convo, limits);
    let prompt = input_tokens_of(v);
    let cache = cache_use(ctx, obj, req.model);
    let cached = cache.creation + cache.read;
    let usage = Usage {
        input: prompt.saturating_sub(cached),
        cache,
        output: plan.output_tokens(),
    };
    let seed = ctx.seed();
    let id = alnum_id("msg_01", seed, 22);
    let tokens = TokenUsage::single(prompt, usage.output);
    let mut resp = if req.stream {
        stream_response(ctx, &req, &plan, &id, &usage, seed)
    } else {
        let mut content = Vec::new();
        if let Some(thinking) = &plan.thinking {
            content.push(thinking_block(thinking, req.thinking_omitted));
        }
        if !plan.text.is_empty() {
            content.push(obj! {"type": "text", "text": plan.text.as_str()});
        }
        for (i, call) in plan.calls.iter().enumerate() {
            content.push(tool_block(call, tool_id(seed, i)));
        }
        let (reason, sequence) = stop_reason(plan.stop, &req.stops);
        let out = obj! {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": Json::Arr(content),
            "stop_reason": reason,
            "stop_sequence": sequence,
            "usage": usage.json(),
        };
        body::json(StatusCode::OK, out.to_vec())
    };
    resp.extensions_mut().insert(tokens);
    resp
}

fn thinking_block(thinking: &str, omitted: bool) -> Json {
    obj! {
        "type": "thinking",
        "thinking": if omitted { "" } else { thinking },
        "signature": convo::signature(SIGNATURE_LABEL, if omitted { "" } else { thinking }),
    }
}

fn event(name: &str, v: &Json) -> Bytes {
    stream::named(name, &v.to_vec())
}

fn stream_response(
    ctx: &Ctx<'_>,
    req: &Parsed<'_>,
    plan: &Plan,
    id: &str,
    usage: &Usage,
    seed: u64,
) -> Response<Body> {
    let mut events = Events::new();
    let start_usage = Usage {
        input: usage.input,
        cache: CacheUse {
            creation: usage.cache.creation,
            read: usage.cache.read,
            one_hour: usage.cache.one_hour,
        },
        output: 1,
    };
    events.push(event(
        "message_start",
        &obj! {"type": "message_start", "message": obj! {
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": Json::Arr(Vec::new()),
            "stop_reason": Json::Null,
            "stop_sequence": Json::Null,
            "usage": start_usage.json(),
        }},
    ));
    events.push(Bytes::from_static(
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
    ));
    let mut index = 0u64;
    let start = |index: u64, block: Json| {
        event(
            "content_block_start",
            &obj! {"type": "content_block_start", "index": index, "content_block": block},
        )
    };
    let delta = |index: u64, d: Json| {
        event(
            "content_block_delta",
            &obj! {"type": "content_block_delta", "index": index, "delta": d},
        )
    };
    let stop = |index: u64| {
        event(
            "content_block_stop",
            &obj! {"type": "content_block_stop", "index": index},
        )
    };
    if let Some(thinking) = &plan.thinking {
        let shown = if req.thinking_omitted {
            ""
        } else {
            thinking.as_str()
        };
        events.push(start(
            index,
            obj! {"type": "thinking", "thinking": "", "signature": ""},
        ));
        if req.thinking_omitted {
            // The thinking still takes its time, but nothing is shown.
            events.push_generated(
                delta(index, obj! {"type": "thinking_delta", "thinking": ""}),
                word_ends(thinking).len() as u64,
            );
        } else {
            for piece in word_pieces(shown) {
                events.push_generated(
                    delta(index, obj! {"type": "thinking_delta", "thinking": piece}),
                    1,
                );
            }
        }
        events.push(delta(
            index,
            obj! {"type": "signature_delta", "signature": convo::signature(SIGNATURE_LABEL, shown)},
        ));
        events.push(stop(index));
        index += 1;
    }
    if !plan.text.is_empty() {
        events.push(start(index, obj! {"type": "text", "text": ""}));
        for piece in word_pieces(&plan.text) {
            events.push_generated(delta(index, obj! {"type": "text_delta", "text": piece}), 1);
        }
        events.push(stop(index));
        index += 1;
    }
    for (i, call) in plan.calls.iter().enumerate() {
        events.push(start(
            index,
            obj! {
                "type": "tool_use",
                "id": tool_id(seed, i),
                "name": call.name.as_str(),
                "input": obj! {},
            },
        ));
        events.push(delta(
            index,
            obj! {"type": "input_json_delta", "partial_json": ""},
        ));
        for piece in arg_pieces(&call.arguments) {
            events.push_generated(
                delta(
                    index,
                    obj! {"type": "input_json_delta", "partial_json": piece},
                ),
                tokens_for_chars(piece.chars().count()),
            );
        }
        events.push(stop(index));
        index += 1;
    }
    let (reason, sequence) = stop_reason(plan.stop, &req.stops);
    events.push(event(
        "message_delta",
        &obj! {
            "type": "message_delta",
            "delta": obj! {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage.delta_json(),
        },
    ));
    events.push(event("message_stop", &obj! {"type": "message_stop"}));
    events.into_response(ctx, "text/event-stream; charset=utf-8", |_| {
        vec![event(
            "error",
            &obj! {"type": "error", "error": obj! {"type": "overloaded_error", "message": "Overloaded"}},
        )]
    })
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}` by the prompt
/// rule (tool definitions are not counted).
pub(crate) fn count_tokens(ctx: &Ctx<'_>, v: &Value) -> Response<Body> {
    let rid = ctx.request_id;
    let Some(obj) = v.as_object() else {
        return bad_json(rid);
    };
    if let Err(e) = parse(ctx, obj, Api::CountTokens) {
        return e.into_response(rid);
    }
    let out = obj! {"input_tokens": input_tokens_of(v)};
    body::json(StatusCode::OK, out.to_vec())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_text_and_tool_results() {
        let v = json!({
            "system": [{"type": "text", "text": "abcd"}],
            "messages": [
                {"role": "user", "content": "abcd"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "n", "input": {"x": "long ignored"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "abcd"}]}]},
            ],
        });
        assert_eq!(input_tokens_of(&v), 3);
    }

    #[test]
    fn pairing_rules() {
        let ok = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]},
        ]);
        assert!(check_pairing(ok.as_array().unwrap()).is_ok());
        let unanswered = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}]},
            {"role": "user", "content": "and?"},
        ]);
        match check_pairing(unanswered.as_array().unwrap()) {
            Err(Reject::Invalid(m)) => assert!(m.starts_with("messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1."), "{m}"),
            _ => panic!("expected a rejection"),
        }
        let stray = json!([
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "x"}]},
        ]);
        match check_pairing(stray.as_array().unwrap()) {
            Err(Reject::Invalid(m)) => assert!(
                m.starts_with("messages.0.content.0: unexpected `tool_use_id`"),
                "{m}"
            ),
            _ => panic!("expected a rejection"),
        }
    }

    #[test]
    fn user_side_skips_tool_turns() {
        let m = json!([
            {"role": "user", "content": "what is the weather"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "w", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "sunny"}]},
        ]);
        let (last, is_user) = user_side(m.as_array().unwrap());
        assert_eq!(last.as_deref(), Some("what is the weather"));
        assert!(!is_user);
    }
}
