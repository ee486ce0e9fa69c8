//! `POST /v1/chat/completions`, buffered and streamed (SSE), with tool calls;
//! also Azure's deployment-scoped and v1 chat routes, which add Azure's
//! content-filter annotations.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::azure;
use crate::body::{self, Body};
use crate::convo::{self, Choice, Convo, Stop, ToolDef};
use crate::errors::ApiError;
use crate::server::{Ctx, TokenUsage};
use crate::stream::{self, Events, arg_pieces};
use crate::util::{alnum_id, tokens_for_chars, unix_now, word_ends, word_pieces};

/// Which flavour of the chat endpoint is answering.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Variant<'a> {
    OpenAi,
    /// Azure: the deployment (from the path, if any) is the model, unknown
    /// ones get `DeploymentNotFound`, and answers carry content-filter
    /// results.
    Azure {
        deployment: Option<&'a str>,
    },
}

const ROLES: [&str; 6] = [
    "system",
    "assistant",
    "user",
    "function",
    "tool",
    "developer",
];
pub(crate) const FINGERPRINT: &str = "fp_mock";

struct Request<'a> {
    model: &'a str,
    n: usize,
    max_tokens: Option<usize>,
    stream: bool,
    include_usage: bool,
    prompt_tokens: u64,
    last_user: Option<String>,
    last_is_user: bool,
    stop: Vec<String>,
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

fn validate<'a>(
    ctx: &Ctx<'_>,
    obj: &'a Map<String, Value>,
    variant: Variant<'a>,
) -> Result<Request<'a>, ApiError> {
    let model = match (variant, obj.get("model")) {
        (
            Variant::Azure {
                deployment: Some(d),
            },
            _,
        ) => d,
        (_, None | Some(Value::Null)) => return Err(ApiError::no_model()),
        (_, Some(Value::String(m))) => m.as_str(),
        (_, Some(other)) => return Err(ApiError::invalid_type("model", "a string", other)),
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
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(other) => {
            return Err(ApiError::invalid_type(
                "stop",
                "one of a string or array of strings",
                other,
            ));
        }
    };
    if !ctx.shared.has_model(model) {
        return Err(match variant {
            Variant::Azure { .. } => azure::deployment_not_found(),
            Variant::OpenAi => ApiError::model_not_found(model),
        });
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
        stop,
    })
}

struct PlannedCall {
    id: String,
    name: String,
    arguments: String,
}

/// The conversation as the shared rules see it.
fn convo<'v>(obj: &'v Map<String, Value>, req: &Request<'_>) -> Convo<'v> {
    openai_convo(obj, req.last_user.clone(), req.last_is_user)
}

/// The rules' view of an OpenAI-shaped chat body (also Databricks'): its function tools,
/// `tool_choice` and `parallel_tool_calls`, with the last user turn already found.
pub(crate) fn openai_convo(
    obj: &Map<String, Value>,
    last_user: Option<String>,
    last_is_user: bool,
) -> Convo<'_> {
    let tools: Vec<ToolDef<'_>> = obj
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
                    Some(ToolDef {
                        name: f.get("name")?.as_str()?,
                        params: f.get("parameters"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let choice = obj.get("tool_choice");
    let named = choice
        .and_then(|c| c.get("function"))
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str);
    let choice = match (named, choice.and_then(Value::as_str)) {
        (Some(name), _) => Choice::Named(name),
        (None, Some("none")) => Choice::None,
        (None, Some("required")) => Choice::Required,
        _ => Choice::Auto,
    };
    Convo {
        last_user,
        last_is_user,
        tools,
        choice,
        parallel: obj.get("parallel_tool_calls").and_then(Value::as_bool) != Some(false),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    content_filter_results: Option<Value>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_filter_results: Option<Value>,
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

enum Answer {
    Text { text: String, finish: &'static str },
    Tools(Vec<Vec<PlannedCall>>),
}

pub(crate) fn handle(
    ctx: &Ctx<'_>,
    v: &Value,
    variant: Variant<'_>,
) -> Result<Response<Body>, ApiError> {
    let Some(obj) = v.as_object() else {
        return Err(ApiError::parse_error());
    };
    let req = validate(ctx, obj, variant)?;
    let seed = ctx.seed();
    let id = alnum_id("chatcmpl-", seed, 29);
    let created = unix_now();

    let limits = convo::Limits {
        max_tokens: req.max_tokens.map(|m| m as u64),
        thinking: false,
        stop_sequences: &req.stop,
    };
    let plan = convo::plan(ctx, &convo(obj, &req), limits);
    let answer = if plan.calls.is_empty() {
        Answer::Text {
            finish: if plan.stop == Stop::MaxTokens {
                "length"
            } else {
                "stop"
            },
            text: plan.text,
        }
    } else {
        let per_choice = (0..req.n)
            .map(|c| {
                plan.calls
                    .iter()
                    .enumerate()
                    .map(|(i, call)| PlannedCall {
                        id: alnum_id(
                            "call_",
                            seed ^ (((c as u64) << 32) | i as u64).wrapping_add(1),
                            24,
                        ),
                        name: call.name.clone(),
                        arguments: call.arguments.clone(),
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
    let azure = matches!(variant, Variant::Azure { .. });

    if req.stream {
        let mut resp = stream_response(ctx, &req, &id, created, &answer, usage, azure);
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
                    content_filter_results: azure.then(azure::completion_filter_results),
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
                    content_filter_results: azure.then(azure::completion_filter_results),
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
            prompt_filter_results: azure.then(azure::prompt_filter_results),
        };
        let bytes = serde_json::to_vec(&completion).map_err(|_| ApiError::server_error())?;
        let mut resp = body::json(StatusCode::OK, bytes);
        resp.extensions_mut().insert(tokens);
        Ok(resp)
    }
}

/// OpenAI's in-stream failure: an `error` object where a chunk would be.
fn stream_error() -> Bytes {
    let err = ApiError::server_error();
    let v = serde_json::json!({"error": {
        "message": err.message,
        "type": err.kind,
        "param": null,
        "code": null,
    }});
    stream::data(v.to_string().as_bytes())
}

fn stream_response(
    ctx: &Ctx<'_>,
    req: &Request<'_>,
    id: &str,
    created: u64,
    answer: &Answer,
    usage: Usage,
    azure: bool,
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

    let mut events = Events::new();
    if azure {
        // Azure opens every stream with the prompt's filter verdict in a
        // chunk that has no choices (and empty id, model and object).
        events.push(azure::prompt_filter_chunk());
    }
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
                    // The n choices are generated side by side: one token of
                    // time per step.
                    events.push_generated(one(i, delta, None), u64::from(i == 0));
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
                        events.push_generated(
                            one(i, delta, None),
                            tokens_for_chars(piece.chars().count()),
                        );
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
    events.into_response(ctx, "text/event-stream; charset=utf-8", |_| {
        vec![stream_error()]
    })
}
