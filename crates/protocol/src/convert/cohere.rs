//! Cohere Chat v2 (upstream only): IR -> `POST /v2/chat` request, response
//! and SSE stream -> IR, error bodies.
//!
//! Mapping choices:
//! - `tool_plan` (the text Cohere writes before its tool calls) is visible
//!   assistant text, like the text Claude writes before `tool_use`: it is
//!   read as [`Part::Text`] / [`StreamEvent::TextDelta`], and assistant text
//!   sent back alongside tool calls is written as `tool_plan`.
//! - Thinking is `content` blocks of type `thinking`; Cohere has no
//!   signatures, so signatures are dropped and redacted reasoning is not
//!   sent back (it belongs to another provider).
//! - `tool_choice` named: Cohere can only force "some tool", so the tool
//!   list is narrowed to the named tool and `REQUIRED` is sent — the same
//!   constraint. `none` -> `NONE`, `required` -> `REQUIRED`.
//! - JSON schema output is `json_object` with `json_schema` (Cohere's
//!   schema mode is always strict; the schema name is dropped).
//! - Dropped (no Cohere field, hints only): `user`, `parallel_tool_calls`,
//!   `is_error` on tool results, reasoning effort levels (thinking is
//!   switched on without a budget), citations and logprobs in responses.
//! - `Unsupported`: `n > 1`, audio and file parts, images in system
//!   messages or tool results.
//! - Finish reasons: `ERROR` and `TIMEOUT` end a stream with
//!   [`StreamEvent::Error`]; in a complete response (which has no error
//!   slot) they read as `stop`.

use serde_json::Value;

use crate::convert::{ConvertError, DecodeStream};
use crate::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Part, ResponseFormat, Role,
    StreamEvent, ToolChoice, Usage,
};
use crate::sse::SseEvent;
use crate::wire::cohere as wire;

/// The `/v2/chat` request body for `req`.
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::Unsupported("n > 1".into()));
    }
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(system_message(&req.system)?);
    }
    for msg in &req.messages {
        match msg.role {
            Role::System => messages.push(system_message(&msg.content)?),
            Role::User | Role::Tool => user_messages(&msg.content, &mut messages)?,
            Role::Assistant => messages.push(assistant_message(&msg.content)),
        }
    }

    let mut tools: Vec<&crate::ir::Tool> = req.tools.iter().collect();
    let tool_choice = match &req.tool_choice {
        None | Some(ToolChoice::Auto) => None,
        Some(ToolChoice::None) => Some("NONE"),
        Some(ToolChoice::Required) => Some("REQUIRED"),
        Some(ToolChoice::Named(name)) => {
            tools.retain(|t| &t.name == name);
            if tools.is_empty() {
                return Err(ConvertError::invalid(
                    "tool_choice",
                    format!("names `{name}`, which is not among the tools"),
                ));
            }
            Some("REQUIRED")
        }
    };
    let strict_tools =
        (!tools.is_empty() && tools.iter().all(|t| t.strict == Some(true))).then_some(true);
    let tools = tools
        .into_iter()
        .map(|t| wire::Tool {
            r#type: "function".into(),
            function: wire::FunctionDef {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: t.parameters.clone(),
            },
        })
        .collect::<Vec<_>>();

    let thinking = req.reasoning.as_ref().and_then(|r| {
        if r.enabled == Some(false) {
            Some(wire::Thinking {
                r#type: "disabled".into(),
                token_budget: None,
            })
        } else if r.budget_tokens.is_some() || r.enabled == Some(true) || r.effort.is_some() {
            Some(wire::Thinking {
                r#type: "enabled".into(),
                token_budget: r.budget_tokens,
            })
        } else {
            None
        }
    });

    let response_format = req.response_format.as_ref().map(|f| match f {
        ResponseFormat::Text => wire::ResponseFormat {
            r#type: "text".into(),
            json_schema: None,
        },
        ResponseFormat::JsonObject => wire::ResponseFormat {
            r#type: "json_object".into(),
            json_schema: None,
        },
        ResponseFormat::JsonSchema { schema, .. } => wire::ResponseFormat {
            r#type: "json_object".into(),
            json_schema: Some(schema.clone()),
        },
    });

    let body = wire::ChatRequest {
        model: req.model.clone(),
        messages,
        tool_choice: tool_choice.filter(|_| !tools.is_empty()).map(str::to_owned),
        tools,
        strict_tools,
        response_format,
        max_tokens: req.max_tokens,
        stop_sequences: req.stop.clone(),
        temperature: req.temperature,
        seed: req.seed,
        frequency_penalty: req.frequency_penalty,
        presence_penalty: req.presence_penalty,
        k: req.top_k,
        p: req.top_p,
        thinking,
        stream: req.stream,
        extra: serde_json::Map::new(),
    };
    Ok(serde_json::to_vec(&body)?)
}

fn system_message(parts: &[Part]) -> Result<wire::ChatMessage, ConvertError> {
    let mut texts = Vec::with_capacity(parts.len());
    for part in parts {
        match part {
            Part::Text { text, .. } => texts.push(text.clone()),
            _ => {
                return Err(ConvertError::Unsupported(
                    "non-text system content on Cohere".into(),
                ));
            }
        }
    }
    Ok(message("system", Some(text_content(texts))))
}

fn message(role: &str, content: Option<wire::Content>) -> wire::ChatMessage {
    wire::ChatMessage {
        role: role.to_owned(),
        content,
        ..wire::ChatMessage::default()
    }
}

/// One text part as a plain string, several as text blocks.
fn text_content(mut texts: Vec<String>) -> wire::Content {
    if texts.len() == 1
        && let Some(text) = texts.pop()
    {
        return wire::Content::Text(text);
    }
    wire::Content::Blocks(
        texts
            .into_iter()
            .map(|text| wire::ContentBlock::Text { text })
            .collect(),
    )
}

/// A user (or tool) turn: each tool result becomes a `tool` message, in
/// order, and the remaining content one `user` message after them.
fn user_messages(parts: &[Part], out: &mut Vec<wire::ChatMessage>) -> Result<(), ConvertError> {
    let mut blocks = Vec::new();
    for part in parts {
        match part {
            Part::ToolResult {
                call_id, content, ..
            } => {
                let mut texts = Vec::with_capacity(content.len());
                for inner in content {
                    match inner {
                        Part::Text { text, .. } => texts.push(text.clone()),
                        _ => {
                            return Err(ConvertError::Unsupported(
                                "non-text tool results on Cohere".into(),
                            ));
                        }
                    }
                }
                let content = if texts.is_empty() {
                    wire::Content::Text(String::new())
                } else {
                    text_content(texts)
                };
                out.push(wire::ChatMessage {
                    tool_call_id: Some(call_id.clone()),
                    ..message("tool", Some(content))
                });
            }
            Part::Text { text, .. } => blocks.push(wire::ContentBlock::Text { text: text.clone() }),
            Part::Image { source, detail, .. } => blocks.push(wire::ContentBlock::ImageUrl {
                image_url: wire::ImageUrl {
                    url: source.to_url(),
                    detail: detail.clone(),
                },
            }),
            Part::Audio { .. } => {
                return Err(ConvertError::Unsupported("audio input on Cohere".into()));
            }
            Part::File { .. } => {
                return Err(ConvertError::Unsupported("file input on Cohere".into()));
            }
            // Assistant-only parts in a user turn carry nothing Cohere can take.
            Part::ToolCall { .. } | Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
        }
    }
    if blocks.is_empty() {
        return Ok(());
    }
    let content = match blocks.as_slice() {
        [wire::ContentBlock::Text { text }] => wire::Content::Text(text.clone()),
        _ => wire::Content::Blocks(blocks),
    };
    out.push(message("user", Some(content)));
    Ok(())
}

fn assistant_message(parts: &[Part]) -> wire::ChatMessage {
    let mut text = String::new();
    let mut thinking = Vec::new();
    let mut tool_calls = Vec::new();
    for part in parts {
        match part {
            Part::Text { text: t, .. } => text.push_str(t),
            Part::Reasoning { text: t, .. } => thinking.push(wire::ContentBlock::Thinking {
                thinking: t.clone(),
            }),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => tool_calls.push(wire::ToolCall {
                id: id.clone(),
                r#type: "function".into(),
                function: wire::FunctionCall {
                    name: name.clone(),
                    arguments: if arguments.trim().is_empty() {
                        "{}".into()
                    } else {
                        arguments.clone()
                    },
                },
            }),
            _ => {}
        }
    }
    let mut msg = message("assistant", None);
    if tool_calls.is_empty() {
        msg.content = if thinking.is_empty() {
            Some(wire::Content::Text(text))
        } else {
            if !text.is_empty() {
                thinking.push(wire::ContentBlock::Text { text });
            }
            Some(wire::Content::Blocks(thinking))
        };
    } else {
        msg.tool_plan = Some(text).filter(|t| !t.is_empty());
        msg.content = (!thinking.is_empty()).then_some(wire::Content::Blocks(thinking));
        msg.tool_calls = tool_calls;
    }
    msg
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "TOOL_CALL" => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn count(v: Option<f64>) -> u64 {
    v.filter(|n| n.is_finite() && *n > 0.0)
        .map_or(0, |n| n.round() as u64)
}

/// IR usage: actual token counts (`tokens`) when present, else the billed
/// ones.
fn usage(u: &wire::Usage) -> Usage {
    let counts = u.tokens.as_ref().or(u.billed_units.as_ref());
    Usage {
        input_tokens: count(counts.and_then(|c| c.input_tokens)),
        output_tokens: count(counts.and_then(|c| c.output_tokens)),
        cache_read_tokens: count(u.cached_tokens),
        ..Usage::default()
    }
}

/// A `/v2/chat` response body in IR form (`model` is empty: Cohere does not
/// echo it).
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let resp: wire::ChatResponse = serde_json::from_slice(body)?;
    let mut content = Vec::new();
    for block in &resp.message.content {
        match block {
            wire::ContentBlock::Thinking { thinking } => content.push(Part::Reasoning {
                text: thinking.clone(),
                signature: None,
            }),
            wire::ContentBlock::Text { text } => content.push(Part::text(text.clone())),
            _ => {}
        }
    }
    if let Some(plan) = resp.message.tool_plan.as_ref().filter(|p| !p.is_empty()) {
        content.push(Part::text(plan.clone()));
    }
    for call in &resp.message.tool_calls {
        content.push(Part::ToolCall {
            id: call.id.clone(),
            name: call.function.name.clone(),
            arguments: call.function.arguments.clone(),
            signature: None,
        });
    }
    Ok(ChatResponse {
        id: resp.id,
        content,
        finish_reason: finish_reason(&resp.finish_reason),
        usage: resp.usage.as_ref().map(usage).unwrap_or_default(),
        ..ChatResponse::default()
    })
}

/// Cohere SSE events -> IR events. Tool calls are numbered in order of
/// their `tool-call-start`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    finished: bool,
    failed: bool,
    /// `(Cohere index, IR index)` of the tool calls started so far.
    tools: Vec<(u32, u32)>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn start(&mut self, id: Option<String>, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: id.unwrap_or_default(),
                model: String::new(),
                created: 0,
            });
        }
    }

    fn tool_index(&self, index: Option<u32>) -> Option<u32> {
        match index {
            Some(i) => self.tools.iter().find(|(c, _)| *c == i).map(|(_, ir)| *ir),
            None => self.tools.last().map(|(_, ir)| *ir),
        }
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let mut ev: wire::StreamEvent = serde_json::from_str(data)?;
        if ev.r#type.is_empty() {
            ev.r#type = event.event.clone().unwrap_or_default();
        }
        let delta = ev.delta.unwrap_or_default();
        let msg = delta.message.unwrap_or_default();
        match ev.r#type.as_str() {
            "message-start" => self.start(ev.id, out),
            "content-start" | "content-delta" => {
                self.start(None, out);
                if let Some(c) = msg.content {
                    if let Some(t) = c.thinking.filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::ReasoningDelta(t));
                    }
                    if let Some(t) = c.text.filter(|t| !t.is_empty()) {
                        out.push(StreamEvent::TextDelta(t));
                    }
                }
            }
            "tool-plan-delta" => {
                self.start(None, out);
                if let Some(plan) = msg.tool_plan.filter(|p| !p.is_empty()) {
                    out.push(StreamEvent::TextDelta(plan));
                }
            }
            "tool-call-start" => {
                self.start(None, out);
                let call = msg.tool_calls.unwrap_or_default();
                let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                self.tools.push((ev.index.unwrap_or(index), index));
                let function = call.function.unwrap_or_default();
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: call.id.unwrap_or_default(),
                    name: function.name.unwrap_or_default(),
                    signature: None,
                });
                if let Some(args) = function.arguments.filter(|a| !a.is_empty()) {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args,
                    });
                }
            }
            "tool-call-delta" => {
                let Some(index) = self.tool_index(ev.index) else {
                    return Err(ConvertError::invalid(
                        "tool-call-delta",
                        "no tool call has started at this index",
                    ));
                };
                let args = msg
                    .tool_calls
                    .and_then(|c| c.function)
                    .and_then(|f| f.arguments)
                    .unwrap_or_default();
                if !args.is_empty() {
                    out.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: args,
                    });
                }
            }
            "message-end" => {
                self.start(ev.id, out);
                if let Some(u) = &delta.usage {
                    out.push(StreamEvent::Usage(usage(u)));
                }
                let reason = delta.finish_reason.unwrap_or_default();
                if matches!(reason.as_str(), "ERROR" | "TIMEOUT") || delta.error.is_some() {
                    let timeout = reason == "TIMEOUT";
                    self.failed = true;
                    out.push(StreamEvent::Error(ApiError {
                        status: if timeout { 504 } else { 500 },
                        kind: if timeout {
                            ErrorKind::Timeout
                        } else {
                            ErrorKind::Api
                        },
                        message: delta
                            .error
                            .unwrap_or_else(|| format!("generation ended with {reason}")),
                    }));
                } else {
                    self.finished = true;
                    out.push(StreamEvent::Finish {
                        reason: finish_reason(&reason),
                        stop_sequence: None,
                    });
                }
            }
            // content-end, tool-call-end, citation-start/end, debug, and
            // event types added later.
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.finished && !self.failed {
            self.start(None, out);
            self.finished = true;
            out.push(StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            });
        }
    }
}

/// A Cohere error body (`{"id":..,"message":..}`), keeping the status.
/// Cohere's own 498 (invalid token) is an authentication error.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let message = match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(wire::ErrorBody {
            message: Some(m), ..
        }) => m,
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(Value::String(s)) => s,
            _ => String::from_utf8_lossy(body).trim().to_owned(),
        },
    };
    let kind = match status {
        498 => ErrorKind::Authentication,
        _ => ErrorKind::from_status(status),
    };
    ApiError {
        status,
        kind,
        message: if message.is_empty() {
            format!("Cohere returned HTTP {status}")
        } else {
            message
        },
    }
}
