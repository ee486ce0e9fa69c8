//! `POST /v1/chat/completions`, buffered and streamed (SSE), with tool calls.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::{Ctx, Streamed, TokenUsage};
use crate::util::{alnum_id, tokens_for_chars, truncate_words, unix_now, word_ends, word_pieces};

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
pub(crate) const FINGERPRINT: &str = "fp_mock";
/// The echoed part of the default reply is capped so big prompts stay cheap.
pub(crate) const MAX_ECHO_WORDS: usize = 32;
pub(crate) const DEFAULT_REPLY: &str = "Hello! This is a mock reply.";

/// The default reply when none is scripted: `"You said: "` followed by the
/// first 32 whitespace-separated words of the last user message, or
/// [`DEFAULT_REPLY`] when there is no user text.
pub(crate) fn derive_reply(last_user: Option<&str>) -> String {
    let words: Vec<&str> = last_user
        .unwrap_or("")
        .split_whitespace()
        .take(MAX_ECHO_WORDS)
        .collect();
    if words.is_empty() {
        DEFAULT_REPLY.to_owned()
    } else {
        format!("You said: {}", words.join(" "))
    }
}

struct Request<'a> {
    model: &'a str,
    n: usize,
    max_tokens: Option<usize>,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
    last_user: Option<String>,
    last_is_user: bool,
}

/// Character count and joined text of a message's `content` (string or parts).
fn content_text(content: &Value) -> (usize, String) {
    match content {
        Value::String(s) => (s.chars().count(), s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (
                texts.iter().map(|t| t.chars().count()).sum(),
                texts.join(" "),
            )
        }
        _ => (0, String::new()),
    }
}

/// Prompt tokens of a chat request, exactly as its `usage` will report them.
pub(crate) fn prompt_tokens_of(v: &Value) -> u64 {
    let chars = v
        .get("messages")
        .and_then(Value::as_array)
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| m.get("content"))
                .map(|c| content_text(c).0)
                .sum::<usize>()
        })
        .unwrap_or(0);
    tokens_for_chars(chars)
}

/// `max_completion_tokens`, else `max_tokens` (positive integers only).
pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|name| v.get(*name).and_then(Value::as_u64).filter(|m| *m > 0))
}

/// Prompt tokens for a chat body, for errors that quote the prompt size.
pub(crate) fn prompt_tokens_of_body(body: &Bytes) -> u64 {
    serde_json::from_slice::<Value>(body)
        .map(|v| prompt_tokens_of(&v))
        .unwrap_or_else(|_| tokens_for_chars(0))
}

fn int_param(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(other) => Err(ApiError::invalid_type(name, "an integer", other)),
    }
}

fn bool_param(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::invalid_type(name, "a boolean", other)),
    }
}

fn validate<'a>(ctx: &Ctx<'_>, obj: &'a Map<String, Value>) -> Result<Request<'a>, ApiError> {
    let model = match obj.get("model") {
        None | Some(Value::Null) => return Err(ApiError::no_model()),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    let messages = match obj.get("messages") {
        None | Some(Value::Null) => return Err(ApiError::missing("messages")),
        Some(Value::Array(a)) if a.is_empty() => return Err(ApiError::empty_array("messages")),
        Some(Value::Array(a)) => a,
        Some(other) => return Err(ApiError::invalid_type("messages", "an array", other)),
    };
    let mut chars = 0usize;
    let mut last_user = None;
    let mut last_is_user = false;
    for (i, msg) in messages.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Some(m) = msg.as_object() else {
            return Err(ApiError::invalid_type(&at, "an object", msg));
        };
        let role = match m.get("role") {
            None | Some(Value::Null) => return Err(ApiError::missing(&format!("{at}.role"))),
            Some(Value::String(r)) => r.as_str(),
            Some(other) => {
                return Err(ApiError::invalid_type(
                    &format!("{at}.role"),
                    "a string",
                    other,
                ));
            }
        };
        if !ROLES.contains(&role) {
            return Err(ApiError::invalid_value(&format!("{at}.role"), role, &ROLES));
        }
        match m.get("content") {
            None | Some(Value::Null) => {
                // Assistant turns may carry only tool calls.
                if role != "assistant" && role != "function" {
                    return Err(ApiError::missing(&format!("{at}.content")));
                }
            }
            Some(c @ (Value::String(_) | Value::Array(_))) => {
                let (n, text) = content_text(c);
                chars += n;
                if role == "user" {
                    last_user = Some(text);
                }
            }
            Some(other) => {
                return Err(ApiError::invalid_type(
                    &format!("{at}.content"),
                    "one of a string or array of objects",
                    other,
                ));
            }
        }
        if role == "tool" && m.get("tool_call_id").and_then(Value::as_str).is_none() {
            return Err(ApiError::missing(&format!("{at}.tool_call_id")));
        }
        last_is_user = role == "user";
    }

    let stream = bool_param(obj, "stream")?.unwrap_or(false);
    let include_usage = match obj.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(opts) => {
            if !stream {
                return Err(ApiError::invalid(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    Some("stream_options"),
                    None,
                ));
            }
            opts.get("include_usage")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        }
    };
    let n = match int_param(obj, "n")? {
        None => 1,
        Some(n) if n < 1 => return Err(ApiError::below_min("n", 1, n)),
        Some(n) if n > 128 => return Err(ApiError::above_max("n", 128, n)),
        Some(n) => n as usize,
    };
    let mut max_tokens = None;
    for name in ["max_tokens", "max_completion_tokens"] {
        match int_param(obj, name)? {
            Some(m) if m < 1 => return Err(ApiError::below_min(name, 1, m)),
            Some(m) => max_tokens = Some(m as usize),
            None => {}
        }
    }
    if let Some(tools) = obj.get("tools")
        && !tools.is_null()
        && !tools.is_array()
    {
        return Err(ApiError::invalid_type("tools", "an array", tools));
    }
    if !ctx.shared.has_model(model) {
        return Err(ApiError::model_not_found(model));
    }
    Ok(Request {
        model,
        n,
        max_tokens,
        stream,
        include_usage,
        prompt_tokens: tokens_for_chars(chars),
        last_user,
        last_is_user,
    })
}

struct PlannedCall {
    id: String,
    name: String,
    arguments: String,
}

/// Placeholder arguments that satisfy the tool's JSON schema shape.
fn fake_arguments(parameters: Option<&Value>) -> String {
    let mut args = Map::new();
    if let Some(props) = parameters
        .and_then(|p| p.get("properties"))
        .and_then(Value::as_object)
    {
        for (name, schema) in props {
            let value = if let Some(first) = schema
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                first.clone()
            } else {
                match schema.get("type").and_then(Value::as_str) {
                    Some("string") => json!("mock"),
                    Some("integer" | "number") => json!(1),
                    Some("boolean") => json!(true),
                    Some("array") => json!([]),
                    Some("object") => json!({}),
                    _ => Value::Null,
                }
            };
            args.insert(name.clone(), value);
        }
    }
    Value::Object(args).to_string()
}

/// Which function tools get called (empty = answer with text).
fn choose_tools<'v>(
    obj: &'v Map<String, Value>,
    req: &Request<'_>,
) -> Vec<(&'v str, Option<&'v Value>)> {
    let tools: Vec<(&str, Option<&Value>)> = obj
        .get("tools")
        .and_then(Value::as_array)
        .map(|tools| {
            tools
                .iter()
                .filter(|t| {
                    t.get("type").and_then(Value::as_str).unwrap_or("function") == "function"
                })
                .filter_map(|t| {
                    let f = t.get("function")?;
                    Some((f.get("name")?.as_str()?, f.get("parameters")))
                })
                .collect()
        })
        .unwrap_or_default();
    if tools.is_empty() {
        return Vec::new();
    }
    let user = req.last_user.as_deref().unwrap_or("").to_lowercase();
    let choice = obj.get("tool_choice");
    let named = choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    if let Some(name) = named {
        let params = tools.iter().find(|(n, _)| *n == name).and_then(|(_, p)| *p);
        return vec![(name, params)];
    }
    let forced = match choice.and_then(Value::as_str) {
        Some("none") => return Vec::new(),
        Some("required") => true,
        _ => false,
    };
    let asked = req.last_is_user && user.contains("weather");
    if !(forced || asked) {
        return Vec::new();
    }
    let parallel = obj.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false);
    if parallel && user.contains("parallel") {
        tools
    } else {
        tools.into_iter().take(1).collect()
    }
}

#[derive(Serialize, Clone, Copy)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

impl Usage {
    fn new(prompt: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: 0,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct FunctionOut<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallOut<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionOut<'a>,
}

#[derive(Serialize)]
struct MessageOut<'a> {
    role: &'static str,
    content: Option<&'a str>,
    refusal: Option<()>,
    annotations: &'static [u8],
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallOut<'a>>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: usize,
    message: MessageOut<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChoiceOut<'a>>,
    usage: Usage,
    service_tier: &'static str,
    system_fingerprint: &'static str,
}

/// A delta field that may be absent, `null`, or a string.
#[derive(Clone, Copy, Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Str(&'a str),
}

impl Field<'_> {
    fn is_absent(&self) -> bool {
        matches!(self, Field::Absent)
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Str(v) => s.serialize_str(v),
            Field::Absent | Field::Null => s.serialize_none(),
        }
    }
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

/// Field order follows OpenAI's own streams.
#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    content: Field<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
    #[serde(skip_serializing_if = "Field::is_absent")]
    refusal: Field<'a>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'static str,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

fn sse<T: Serialize>(value: &T) -> Bytes {
    let mut out = Vec::with_capacity(320);
    out.extend_from_slice(b"data: ");
    // Serializing these plain structs cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Argument strings are streamed in pieces of this many characters.
const ARG_PIECE_CHARS: usize = 8;

fn arg_pieces(args: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in args.char_indices().enumerate() {
        if count > 0 && count % ARG_PIECE_CHARS == 0 {
            pieces.push(&args[start..i]);
            start = i;
        }
    }
    if start < args.len() {
        pieces.push(&args[start..]);
    }
    pieces
}

enum Answer {
    Text { text: String, finish: &'static str },
    Tools(Vec<Vec<PlannedCall>>),
}

pub(crate) fn handle(ctx: &Ctx<'_>, v: &Value) -> Result<Response<Body>, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::parse_error());
    };
    let req = validate(ctx, obj)?;
    let seed = ctx.shared.id_seed ^ ctx.seq.wrapping_mul(0x2545_F491_4F6C_DD1D);
    let id = alnum_id("chatcmpl-", seed, 29);
    let created = unix_now();

    let tools = if ctx.mode.empty_reply {
        Vec::new()
    } else {
        choose_tools(obj, &req)
    };
    let answer = if tools.is_empty() {
        let full = if ctx.mode.empty_reply {
            String::new()
        } else {
            match ctx.shared.reply() {
                Some(r) => r.to_string(),
                None => derive_reply(req.last_user.as_deref()),
            }
        };
        match req.max_tokens {
            Some(max) => {
                let (cut, truncated) = truncate_words(&full, max);
                Answer::Text {
                    text: cut.to_owned(),
                    finish: if truncated { "length" } else { "stop" },
                }
            }
            None => Answer::Text {
                text: full,
                finish: "stop",
            },
        }
    } else {
        let per_choice = (0..req.n)
            .map(|c| {
                tools
                    .iter()
                    .enumerate()
                    .map(|(i, (name, params))| PlannedCall {
                        id: alnum_id(
                            "call_",
                            seed ^ (((c as u64) << 32) | i as u64).wrapping_add(1),
                            24,
                        ),
                        name: (*name).to_owned(),
                        arguments: fake_arguments(*params),
                    })
                    .collect()
            })
            .collect();
        Answer::Tools(per_choice)
    };

    let completion_per_choice = match &answer {
        Answer::Text { text, .. } => word_ends(text).len() as u64,
        Answer::Tools(calls) => calls.first().map_or(0, |cs| {
            tokens_for_chars(cs.iter().map(|c| c.arguments.chars().count()).sum())
        }),
    };
    let usage = Usage::new(req.prompt_tokens, completion_per_choice * req.n as u64);
    let tokens = TokenUsage {
        input: usage.prompt_tokens,
        output: usage.completion_tokens,
        output_per_choice: completion_per_choice,
    };

    if req.stream {
        let mut resp = stream_response(ctx, &req, &id, created, &answer, usage);
        resp.extensions_mut().insert(tokens);
        Ok(resp)
    } else {
        let choices = (0..req.n)
            .map(|index| match &answer {
                Answer::Text { text, finish } => ChoiceOut {
                    index,
                    message: MessageOut {
                        role: "assistant",
                        content: Some(text),
                        refusal: None,
                        annotations: &[],
                        tool_calls: None,
                    },
                    logprobs: None,
                    finish_reason: finish,
                },
                Answer::Tools(calls) => ChoiceOut {
                    index,
                    message: MessageOut {
                        role: "assistant",
                        content: None,
                        refusal: None,
                        annotations: &[],
                        tool_calls: calls.get(index).map(|cs| {
                            cs.iter()
                                .map(|c| ToolCallOut {
                                    id: &c.id,
                                    kind: "function",
                                    function: FunctionOut {
                                        name: &c.name,
                                        arguments: &c.arguments,
                                    },
                                })
                                .collect()
                        }),
                    },
                    logprobs: None,
                    finish_reason: "tool_calls",
                },
            })
            .collect();
        let completion = Completion {
            id: &id,
            object: "chat.completion",
            created,
            model: req.model,
            choices,
            usage,
            service_tier: "default",
            system_fingerprint: FINGERPRINT,
        };
        let bytes = serde_json::to_vec(&completion).map_err(|_| ApiError::server_error())?;
        let mut resp = body::json(StatusCode::OK, bytes);
        resp.extensions_mut().insert(tokens);
        Ok(resp)
    }
}

fn stream_response(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    id: &str,
    created: u64,
    answer: &Answer,
    usage: Usage,
) -> Response<Body> {
    let per_chunk_usage = req.include_usage.then_some(None);
    let chunk = |choices: Vec<ChunkChoice<'_>>, usage: Option<Option<Usage>>| {
        sse(&Chunk {
            id,
            object: "chat.completion.chunk",
            created,
            model: req.model,
            service_tier: "default",
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        })
    };
    let one = |index: usize, delta: Delta<'_>, finish: Option<&'static str>| {
        chunk(
            vec![ChunkChoice {
                index,
                delta,
                logprobs: None,
                finish_reason: finish,
            }],
            per_chunk_usage,
        )
    };

    let mut events = Vec::new();
    // Tokens "generated" before each event, for `token_delay` pacing.
    let mut tokens_before: Vec<u64> = Vec::new();
    let mut mark = |events: &Vec<Bytes>, tokens: u64| {
        tokens_before.resize(events.len(), 0);
        if let Some(last) = tokens_before.last_mut() {
            *last = tokens;
        }
    };
    match answer {
        Answer::Text { text, finish } => {
            for i in 0..req.n {
                let delta = Delta {
                    role: Some("assistant"),
                    content: Field::Str(""),
                    refusal: Field::Null,
                    ..Delta::default()
                };
                events.push(one(i, delta, None));
            }
            for piece in word_pieces(text) {
                for i in 0..req.n {
                    let delta = Delta {
                        content: Field::Str(piece),
                        ..Delta::default()
                    };
                    events.push(one(i, delta, None));
                    // The n choices are generated side by side: one token of
                    // time per step.
                    if i == 0 {
                        mark(&events, 1);
                    }
                }
            }
            for i in 0..req.n {
                events.push(one(i, Delta::default(), Some(finish)));
            }
        }
        Answer::Tools(per_choice) => {
            for (i, calls) in per_choice.iter().enumerate() {
                for (k, call) in calls.iter().enumerate() {
                    let header = ToolCallDelta {
                        index: k,
                        id: Some(&call.id),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(&call.name),
                            arguments: "",
                        },
                    };
                    let delta = if k == 0 {
                        Delta {
                            role: Some("assistant"),
                            content: Field::Null,
                            tool_calls: Some([header]),
                            refusal: Field::Null,
                        }
                    } else {
                        Delta {
                            tool_calls: Some([header]),
                            ..Delta::default()
                        }
                    };
                    events.push(one(i, delta, None));
                    for piece in arg_pieces(&call.arguments) {
                        let args = ToolCallDelta {
                            index: k,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: piece,
                            },
                        };
                        let delta = Delta {
                            tool_calls: Some([args]),
                            ..Delta::default()
                        };
                        events.push(one(i, delta, None));
                        mark(&events, tokens_for_chars(piece.chars().count()));
                    }
                }
                events.push(one(i, Delta::default(), Some("tool_calls")));
            }
        }
    }
    if req.include_usage {
        events.push(chunk(Vec::new(), Some(Some(usage))));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));

    let chunk_delay = ctx.shared.chunk_delay;
    let token_delay = ctx.shared.token_delay;
    // Unpaced streams go out as one frame (still chunked, still SSE): the
    // split would be invisible to clients anyway and costs throughput.
    let body = if chunk_delay.is_zero() && token_delay.is_zero() && ctx.mode.drop_after.is_none() {
        body::paced(vec![Bytes::from(events.concat())], Duration::ZERO, None)
    } else if token_delay.is_zero() {
        body::paced(events, chunk_delay, ctx.mode.drop_after)
    } else {
        tokens_before.resize(events.len(), 0);
        let delays = tokens_before
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let base = if i == 0 { Duration::ZERO } else { chunk_delay };
                base + token_delay.saturating_mul(u32::try_from(*t).unwrap_or(u32::MAX))
            })
            .collect();
        body::paced_each(events, delays, ctx.mode.drop_after)
    };
    let mut resp = body::response(StatusCode::OK, "text/event-stream; charset=utf-8", body);
    resp.extensions_mut().insert(Streamed);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reply_rules() {
        assert_eq!(derive_reply(None), DEFAULT_REPLY);
        assert_eq!(derive_reply(Some("  ")), DEFAULT_REPLY);
        assert_eq!(
            derive_reply(Some("Hi   there\nfriend")),
            "You said: Hi there friend"
        );
        let long = "w ".repeat(100);
        assert_eq!(
            word_ends(&derive_reply(Some(&long))).len(),
            MAX_ECHO_WORDS + 2
        );
    }

    #[test]
    fn argument_pieces_roundtrip() {
        let args = r#"{"location":"mock","unit":"celsius"}"#;
        assert_eq!(arg_pieces(args).concat(), args);
        assert!(arg_pieces(args).len() > 1);
    }

    #[test]
    fn fake_arguments_follow_schema() {
        let params = json!({"type":"object","properties":{
            "location":{"type":"string"},
            "unit":{"type":"string","enum":["celsius","fahrenheit"]},
            "days":{"type":"integer"}}});
        let v: Value = serde_json::from_str(&fake_arguments(Some(&params))).unwrap_or_default();
        assert_eq!(v, json!({"location":"mock","unit":"celsius","days":1}));
    }
}
