//! Cloudflare Workers AI text generation (upstream only): IR -> `POST
//! /client/v4/accounts/{account_id}/ai/run/{model}` input, response and
//! SSE stream -> IR, error envelopes. The model is in the URL, not the body.
//!
//! The whole conversation is sent as `messages` (system prompt first), with
//! assistant tool calls (`tool_calls`, OpenAI shape) and `tool` messages
//! (`tool_call_id`, `name`) so multi-turn tool use keeps its history.
//!
//! Output arrives in two shapes, both handled: the classic `{response,
//! tool_calls, usage}` (tool calls without ids get `call_<n>`; it has no
//! finish reason, so `tool_calls` when there are calls, else `stop`), and
//! OpenAI chat completions (`choices`) from newer models. Responses come in
//! the v4 envelope `{result, success, errors, messages}`; streams are SSE
//! chunks of either shape ending with `data: [DONE]`. A `response` that is
//! JSON rather than text (JSON mode on some models) becomes its JSON text.
//!
//! What Workers AI cannot say:
//! - `Unsupported`: `n > 1`, `stop` sequences, `tool_choice` `required` or
//!   named, audio and file parts, non-text system content or tool results.
//! - `tool_choice: none` is honoured by sending no tools.
//! - Dropped (hints without a field): `user`, `parallel_tool_calls`,
//!   reasoning settings, image `detail`, `strict` on tools, `is_error` on
//!   tool results (the result text still says what failed); reasoning parts
//!   of earlier assistant turns (Workers AI takes no reasoning input).
//!   Reasoning models that write `<think>` tags into `response` are passed
//!   through as text.

use serde_json::Value;

use crate::convert::{ConvertError, DecodeStream};
use crate::ir::{
    self, ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Part, ResponseFormat, Role,
    StreamEvent, ToolChoice, Usage,
};
use crate::openai::parse_error_body;
use crate::sse::SseEvent;
use crate::wire::cloudflare as wire;

/// The `ai/run` input for `req`.
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::Unsupported("n > 1".into()));
    }
    if !req.stop.is_empty() {
        return Err(ConvertError::Unsupported("stop sequences".into()));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(system_message(&req.system)?);
    }
    for msg in &req.messages {
        match msg.role {
            Role::System => messages.push(system_message(&msg.content)?),
            Role::User | Role::Tool => user_messages(req, &msg.content, &mut messages)?,
            Role::Assistant => messages.push(assistant_message(&msg.content)),
        }
    }

    let tools = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => req.tools.as_slice(),
        // No tools offered: the model cannot call one.
        Some(ToolChoice::None) => &[],
        Some(ToolChoice::Required | ToolChoice::Named(_)) => {
            return Err(ConvertError::Unsupported(
                "forcing a tool call (tool_choice required or named)".into(),
            ));
        }
    };
    let tools = tools
        .iter()
        .map(|t| wire::Tool {
            name: t.name.clone(),
            description: t.description.clone().unwrap_or_default(),
            parameters: t.parameters.clone(),
        })
        .collect();

    let response_format = match &req.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(wire::ResponseFormat {
            r#type: "json_object".into(),
            json_schema: None,
        }),
        Some(ResponseFormat::JsonSchema { schema, .. }) => Some(wire::ResponseFormat {
            r#type: "json_schema".into(),
            json_schema: Some(schema.clone()),
        }),
    };

    let body = wire::RunRequest {
        messages,
        tools,
        response_format,
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        seed: req.seed,
        repetition_penalty: None,
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        stream: req.stream,
        extra: serde_json::Map::new(),
    };
    Ok(serde_json::to_vec(&body)?)
}

fn text_message(role: &str, text: String) -> wire::Message {
    wire::Message {
        role: role.to_owned(),
        content: wire::Content::Text(text),
        ..wire::Message::default()
    }
}

fn only_text(parts: &[Part], what: &str) -> Result<String, ConvertError> {
    if parts.iter().all(|p| matches!(p, Part::Text { .. })) {
        Ok(ir::joined_text(parts))
    } else {
        Err(ConvertError::Unsupported(format!(
            "non-text {what} on Workers AI"
        )))
    }
}

fn system_message(parts: &[Part]) -> Result<wire::Message, ConvertError> {
    Ok(text_message("system", only_text(parts, "system content")?))
}

/// Tool results become `tool` messages (in order), the rest one `user`
/// message after them.
fn user_messages(
    req: &ChatRequest,
    parts: &[Part],
    out: &mut Vec<wire::Message>,
) -> Result<(), ConvertError> {
    let mut content = Vec::new();
    let mut has_image = false;
    for part in parts {
        match part {
            Part::ToolResult {
                call_id,
                name,
                content: result,
                ..
            } => out.push(wire::Message {
                tool_call_id: Some(call_id.clone()),
                name: name
                    .clone()
                    .or_else(|| req.tool_name_for(call_id).map(str::to_owned)),
                ..text_message("tool", only_text(result, "tool results")?)
            }),
            Part::Text { text, .. } => content.push(wire::ContentPart {
                r#type: "text".into(),
                text: Some(text.clone()),
                image_url: None,
            }),
            Part::Image { source, .. } => {
                has_image = true;
                content.push(wire::ContentPart {
                    r#type: "image_url".into(),
                    text: None,
                    image_url: Some(wire::ImageUrl {
                        url: source.to_url(),
                    }),
                });
            }
            Part::Audio { .. } => {
                return Err(ConvertError::Unsupported(
                    "audio input on Workers AI".into(),
                ));
            }
            Part::File { .. } => {
                return Err(ConvertError::Unsupported("file input on Workers AI".into()));
            }
            Part::ToolCall { .. } | Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
        }
    }
    if content.is_empty() {
        return Ok(());
    }
    // Text-only models accept only string content.
    let content = if has_image {
        wire::Content::Parts(content)
    } else {
        wire::Content::Text(content.into_iter().filter_map(|p| p.text).collect())
    };
    out.push(wire::Message {
        role: "user".into(),
        content,
        ..wire::Message::default()
    });
    Ok(())
}

fn assistant_message(parts: &[Part]) -> wire::Message {
    let mut msg = text_message("assistant", ir::joined_text(parts));
    for part in parts {
        if let Part::ToolCall {
            id,
            name,
            arguments,
            ..
        } = part
        {
            msg.tool_calls.push(wire::MessageToolCall {
                id: id.clone(),
                r#type: "function".into(),
                function: wire::MessageFunction {
                    name: name.clone(),
                    arguments: if arguments.trim().is_empty() {
                        "{}".into()
                    } else {
                        arguments.clone()
                    },
                },
            });
        }
    }
    msg
}

fn count(v: Option<f64>) -> u64 {
    v.filter(|n| n.is_finite() && *n > 0.0)
        .map_or(0, |n| n.round() as u64)
}

fn detail(map: Option<&serde_json::Map<String, Value>>, key: &str) -> u64 {
    map.and_then(|m| m.get(key))
        .and_then(Value::as_f64)
        .map_or(0, |n| count(Some(n)))
}

fn usage(u: &wire::Usage) -> Usage {
    Usage {
        input_tokens: count(u.prompt_tokens),
        output_tokens: count(u.completion_tokens),
        cache_read_tokens: detail(u.prompt_tokens_details.as_ref(), "cached_tokens"),
        cache_write_tokens: 0,
        reasoning_tokens: detail(u.completion_tokens_details.as_ref(), "reasoning_tokens"),
    }
}

/// JSON text of tool-call arguments given as an object or as text.
fn arguments_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Text of a classic `response`: a string, or JSON in JSON mode.
fn response_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn call_name(call: &wire::ToolCall) -> String {
    call.function
        .as_ref()
        .and_then(|f| f.name.clone())
        .or_else(|| call.name.clone())
        .unwrap_or_default()
}

/// Arguments of either tool-call shape (`function.arguments` or
/// `arguments`).
fn call_arguments(call: &wire::ToolCall) -> String {
    match &call.function {
        Some(f) if f.arguments.is_some() => arguments_text(f.arguments.as_ref()),
        _ => arguments_text(call.arguments.as_ref()),
    }
}

fn call_id(call: &wire::ToolCall, n: usize) -> String {
    call.id
        .clone()
        .filter(|id| !id.is_empty() && id != "null")
        .unwrap_or_else(|| format!("call_{n}"))
}

/// The result of a text-generation run in IR form. Accepts the v4 envelope
/// or a bare result (as the Workers binding returns it).
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let value: Value = serde_json::from_slice(body)?;
    let is_envelope = value
        .as_object()
        .is_some_and(|o| o.contains_key("result") || o.contains_key("success"));
    let result = if is_envelope {
        let env: wire::Envelope = serde_json::from_value(value)?;
        match env.result {
            Some(result) if env.success != Some(false) && !result.is_null() => result,
            _ => {
                return Err(ConvertError::invalid(
                    "errors",
                    error_text(&env.errors).unwrap_or_else(|| "the run failed".into()),
                ));
            }
        }
    } else {
        value
    };
    if let Value::String(text) = result {
        return Ok(ChatResponse {
            content: vec![Part::text(text)],
            ..ChatResponse::default()
        });
    }
    let out: wire::Output = serde_json::from_value(result)?;
    let mut resp = ChatResponse {
        id: out.id.clone().unwrap_or_default(),
        model: out.model.clone().unwrap_or_default(),
        created: out.created.unwrap_or(0),
        usage: out.usage.as_ref().map(usage).unwrap_or_default(),
        ..ChatResponse::default()
    };
    let (text, reasoning, calls, finish) = match &out.choices {
        Some(choices) => {
            let choice = choices.first().cloned().unwrap_or_default();
            let msg = choice.message.unwrap_or_default();
            (
                msg.content,
                msg.reasoning_content,
                msg.tool_calls.unwrap_or_default(),
                choice.finish_reason,
            )
        }
        None => (
            response_text(out.response.as_ref()),
            None,
            out.tool_calls.clone().unwrap_or_default(),
            None,
        ),
    };
    if let Some(r) = reasoning.filter(|r| !r.is_empty()) {
        resp.content.push(Part::Reasoning {
            text: r,
            signature: None,
        });
    }
    if let Some(t) = text.filter(|t| !t.is_empty()) {
        resp.content.push(Part::text(t));
    }
    for (n, call) in calls.iter().enumerate() {
        resp.content.push(Part::ToolCall {
            id: call_id(call, n),
            name: call_name(call),
            arguments: call_arguments(call),
            signature: None,
        });
    }
    resp.finish_reason = match finish {
        Some(f) => FinishReason::from_openai(&f),
        None if calls.is_empty() => FinishReason::Stop,
        None => FinishReason::ToolCalls,
    };
    Ok(resp)
}

/// Workers AI SSE chunks (either shape) -> IR events.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    finished: bool,
    failed: bool,
    /// `(upstream index, IR index)` of index-keyed (streamed) tool calls.
    indexed: Vec<(u32, u32)>,
    /// Tool calls started so far.
    calls: u32,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>, chunk: &wire::Output) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.clone().unwrap_or_default(),
                model: chunk.model.clone().unwrap_or_default(),
                created: chunk.created.unwrap_or(0),
            });
        }
    }

    fn new_call(&mut self, call: &wire::ToolCall, out: &mut Vec<StreamEvent>) -> u32 {
        let index = self.calls;
        self.calls += 1;
        out.push(StreamEvent::ToolCallStart {
            index,
            id: call_id(call, index as usize),
            name: call_name(call),
            signature: None,
        });
        index
    }

    fn tool_calls(&mut self, calls: &[wire::ToolCall], out: &mut Vec<StreamEvent>) {
        for call in calls {
            let index = match call.index {
                // A fragment of a streamed call.
                Some(key) => match self.indexed.iter().find(|(k, _)| *k == key) {
                    Some(&(_, index)) => index,
                    None => {
                        let index = self.new_call(call, out);
                        self.indexed.push((key, index));
                        index
                    }
                },
                // A complete call.
                None => self.new_call(call, out),
            };
            let arguments = call_arguments(call);
            if !arguments.is_empty() {
                out.push(StreamEvent::ToolCallDelta { index, arguments });
            }
        }
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" || self.failed {
            return Ok(());
        }
        let chunk: wire::Output = serde_json::from_str(data)?;
        if chunk.error.is_some() || chunk.errors.as_ref().is_some_and(|e| !e.is_empty()) {
            let message = match &chunk.error {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Object(o)) => o
                    .get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| Value::Object(o.clone()).to_string(), str::to_owned),
                _ => error_text(chunk.errors.as_deref().unwrap_or_default())
                    .unwrap_or_else(|| "stream error".into()),
            };
            self.failed = true;
            out.push(StreamEvent::Error(ApiError {
                status: 500,
                kind: ErrorKind::Api,
                message,
            }));
            return Ok(());
        }
        self.start(out, &chunk);
        match &chunk.choices {
            Some(choices) => {
                for choice in choices {
                    if let Some(delta) = &choice.delta {
                        if let Some(r) = delta.reasoning_content.clone().filter(|r| !r.is_empty()) {
                            out.push(StreamEvent::ReasoningDelta(r));
                        }
                        if let Some(t) = delta.content.clone().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta(t));
                        }
                        if let Some(calls) = &delta.tool_calls {
                            self.tool_calls(calls, out);
                        }
                    }
                    if let Some(reason) = &choice.finish_reason
                        && !self.finished
                    {
                        self.finished = true;
                        out.push(StreamEvent::Finish {
                            reason: FinishReason::from_openai(reason),
                            stop_sequence: None,
                        });
                    }
                }
            }
            None => {
                if let Some(text) = response_text(chunk.response.as_ref()).filter(|t| !t.is_empty())
                {
                    out.push(StreamEvent::TextDelta(text));
                }
                if let Some(calls) = &chunk.tool_calls {
                    self.tool_calls(calls, out);
                }
            }
        }
        if let Some(u) = &chunk.usage {
            out.push(StreamEvent::Usage(usage(u)));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.finished && !self.failed {
            self.start(out, &wire::Output::default());
            self.finished = true;
            out.push(StreamEvent::Finish {
                reason: if self.calls > 0 {
                    FinishReason::ToolCalls
                } else {
                    FinishReason::Stop
                },
                stop_sequence: None,
            });
        }
    }
}

fn error_text(errors: &[wire::ApiMessage]) -> Option<String> {
    let parts: Vec<&str> = errors
        .iter()
        .map(|e| e.message.as_str())
        .filter(|m| !m.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Kind for a Workers AI / Cloudflare API error code, per the Workers AI
/// error table.
fn code_kind(code: i64) -> Option<ErrorKind> {
    Some(match code {
        3036 => ErrorKind::RateLimit,
        3040 => ErrorKind::Overloaded,
        3007 | 3008 => ErrorKind::Timeout,
        3006 => ErrorKind::RequestTooLarge,
        5007 | 3042 => ErrorKind::NotFound,
        5016 | 5018 | 3023 | 3041 => ErrorKind::Permission,
        10000 => ErrorKind::Authentication,
        3003 | 3039 | 5004 => ErrorKind::InvalidRequest,
        _ => return None,
    })
}

/// An error response: the v4 envelope (`{"errors":[{"code","message"}],
/// "success":false}`), an OpenAI-style body, or text. Keeps the status.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let fallback = ErrorKind::from_status(status);
    if let Ok(env) = serde_json::from_slice::<wire::Envelope>(body)
        && let Some(message) = error_text(&env.errors)
    {
        let kind = env
            .errors
            .iter()
            .find_map(|e| e.code.and_then(code_kind))
            .unwrap_or(fallback);
        return ApiError {
            status,
            kind,
            message,
        };
    }
    let message = match parse_error_body(body) {
        Some(info) if !info.message.is_empty() => info.message,
        _ => String::from_utf8_lossy(body).trim().to_owned(),
    };
    ApiError {
        status,
        kind: fallback,
        message: if message.is_empty() {
            format!("Workers AI returned HTTP {status}")
        } else {
            message
        },
    }
}
