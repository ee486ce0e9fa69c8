//! OpenAI Responses API (`POST /v1/responses`) <-> IR: Codex CLI and the
//! openai SDK's `client.responses` as clients, and upstreams whose base URL
//! ends in `/v1/responses`.
//!
//! Mapping decisions:
//! - llmux keeps no server-side state: a request with `previous_response_id`
//!   or `conversation` (or an `item_reference` input item) is rejected with
//!   [`ConvertError::Unsupported`] whose text is one of the `*_UNSUPPORTED`
//!   constants ([`requires_stored_state`] recognises them; the gateway should
//!   answer 400). Requests sent upstream always carry `store: false`.
//! - `instructions` and the system/developer messages before the first
//!   other item become [`ChatRequest::system`]; later ones stay in
//!   `messages` as [`Role::System`]. Going out, the first system part becomes
//!   `instructions` and each further part a `developer` message.
//! - A `function_call` joins the assistant turn it follows (one IR assistant
//!   message holds the turn's reasoning, text and calls); `call_id` is the IR
//!   tool-call id. Consecutive `function_call_output`s form one
//!   [`Role::Tool`] message.
//! - A `reasoning` item becomes one [`Part::Reasoning`] per summary entry
//!   followed by [`Part::RedactedReasoning`] for its `encrypted_content`.
//!   Going upstream, reasoning is only replayed when it has encrypted
//!   content (with `store: false` nothing else lets the API use it, and
//!   other providers' thinking cannot be replayed to OpenAI), and
//!   `include: ["reasoning.encrypted_content"]` is requested whenever
//!   reasoning is replayed or configured, so the next turn can replay it.
//! - Request fields the IR has no slot for are kept in
//!   [`ChatRequest::extra`] and re-emitted only towards a Responses
//!   upstream: unknown top-level fields as they are, non-function `tools`
//!   under `tools`, a non-function `tool_choice` under `tool_choice`, and
//!   the leftover members of `reasoning` (`summary` other than `auto`,
//!   `generate_summary`, ...) and `text` (`verbosity`, `format.description`)
//!   as partial objects under `reasoning` / `text`, merged back into the
//!   generated ones.
//! - Function tools go upstream with an explicit `strict` (`false` when the
//!   IR leaves it open), because the Responses API defaults it to `true`.
//! - Output ids are derived from the response id (`msg_<base>_<n>`,
//!   `rs_<base>_<n>`, `fc_<base>_<n>`, `n` = output index), so the stream
//!   encoder and [`response_from_ir`] agree and tests are stable.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::convert::{ConvertError, DecodeStream, EncodeStream};
use crate::ir::{
    self, ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource,
    Message, Part, ResponseFormat, Role, StreamEvent, ToolChoice, Usage,
};
use crate::sse::{SseEvent, encode_data};
use crate::wire::responses::{
    self as wire, ArgumentsDeltaEvent, ArgumentsDoneEvent, Content, ContentDeltaEvent, ContentPart,
    ContentPartEvent, ContentTextDoneEvent, IncompleteDetails, Item, OutputItemEvent, OutputText,
    RefusalDoneEvent, ResponseEvent, SummaryDeltaEvent, SummaryPartEvent, SummaryText,
    SummaryTextDoneEvent,
};

/// [`ConvertError::Unsupported`] text for a request with
/// `previous_response_id`: the history lives in a store llmux does not have.
pub const PREVIOUS_RESPONSE_ID_UNSUPPORTED: &str =
    "previous_response_id (llmux does not store responses)";
/// Same for `conversation`.
pub const CONVERSATION_UNSUPPORTED: &str = "conversation (llmux does not store conversations)";
/// Same for `item_reference` input items.
pub const ITEM_REFERENCE_UNSUPPORTED: &str =
    "item_reference input items (llmux does not store responses)";

/// Whether `err` rejects a request that needs server-side state (see the
/// module docs); the gateway answers those with a 400 telling the client to
/// send the full conversation.
pub fn requires_stored_state(err: &ConvertError) -> bool {
    matches!(err, ConvertError::Unsupported(what)
        if what == PREVIOUS_RESPONSE_ID_UNSUPPORTED
            || what == CONVERSATION_UNSUPPORTED
            || what == ITEM_REFERENCE_UNSUPPORTED)
}

const ENCRYPTED_REASONING: &str = "reasoning.encrypted_content";

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// Parses a Responses request body into the IR.
pub fn request_to_ir(body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let req: wire::CreateRequest = serde_json::from_slice(body)?;
    if req
        .previous_response_id
        .as_deref()
        .is_some_and(|id| !id.is_empty())
    {
        return Err(ConvertError::Unsupported(
            PREVIOUS_RESPONSE_ID_UNSUPPORTED.to_owned(),
        ));
    }
    if req.extra.get("conversation").is_some_and(|c| !c.is_null()) {
        return Err(ConvertError::Unsupported(
            CONVERSATION_UNSUPPORTED.to_owned(),
        ));
    }
    let stream = req.stream.unwrap_or(false);
    let mut out = ChatRequest {
        model: req.model,
        parallel_tool_calls: req.parallel_tool_calls,
        max_tokens: req.max_output_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream,
        // Responses streams always end with usage.
        include_usage: stream,
        user: req.user,
        extra_format: Some(Format::OpenAiResponses),
        ..ChatRequest::default()
    };
    let mut extra = req.extra;

    if let Some(instructions) = req.instructions.filter(|i| !i.is_empty()) {
        out.system.push(Part::text(instructions));
    }
    match req.input {
        None => {}
        Some(wire::Input::Text(text)) => out.messages.push(Message::text(Role::User, text)),
        Some(wire::Input::Items(items)) => items_to_ir(items, &mut out)?,
    }

    let mut other_tools = Vec::new();
    for tool in req.tools.unwrap_or_default() {
        match tool {
            wire::Tool::Function(f) => out.tools.push(ir::Tool {
                name: f.name,
                description: f.description,
                parameters: f
                    .parameters
                    .filter(|p| !p.is_null())
                    .unwrap_or_else(|| json!({"type": "object"})),
                strict: f.strict,
                cache_control: None,
            }),
            wire::Tool::Other(raw) => other_tools.push(raw),
        }
    }
    if !other_tools.is_empty() {
        extra.insert("tools".to_owned(), Value::Array(other_tools));
    }

    out.tool_choice = match req.tool_choice {
        None => None,
        Some(wire::ToolChoice::Mode(mode)) => Some(match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            _ => {
                return Err(ConvertError::invalid(
                    "tool_choice",
                    format!("unknown mode `{mode}` (expected none, auto or required)"),
                ));
            }
        }),
        Some(wire::ToolChoice::Function { name }) => Some(ToolChoice::Named(name)),
        Some(wire::ToolChoice::Other(raw)) => {
            // The closest IR choice; the exact one goes back to Responses.
            let required = raw.get("type").and_then(Value::as_str) == Some("allowed_tools")
                && raw.get("mode").and_then(Value::as_str) == Some("required");
            extra.insert("tool_choice".to_owned(), raw);
            Some(if required {
                ToolChoice::Required
            } else {
                ToolChoice::Auto
            })
        }
    };

    if let Some(reasoning) = req.reasoning {
        let mut leftover = reasoning.extra;
        if let Some(summary) = reasoning.summary.as_deref().filter(|s| *s != "auto") {
            leftover.insert("summary".to_owned(), Value::String(summary.to_owned()));
        }
        out.reasoning = Some(ir::Reasoning {
            enabled: (reasoning.effort.as_deref() == Some("none")).then_some(false),
            effort: reasoning.effort,
            budget_tokens: None,
            include_thoughts: reasoning.summary.map(|_| true),
        });
        if !leftover.is_empty() {
            extra.insert("reasoning".to_owned(), Value::Object(leftover));
        }
    }

    if let Some(text) = req.text {
        let mut leftover = text.extra;
        out.response_format = text.format.map(|format| match format {
            wire::TextFormat::Text => ResponseFormat::Text,
            wire::TextFormat::JsonObject => ResponseFormat::JsonObject,
            wire::TextFormat::JsonSchema(schema) => {
                if let Some(description) = schema.description {
                    leftover.insert("format".to_owned(), json!({"description": description}));
                }
                ResponseFormat::JsonSchema {
                    name: schema.name,
                    schema: schema.schema,
                    strict: schema.strict,
                }
            }
        });
        if !leftover.is_empty() {
            extra.insert("text".to_owned(), Value::Object(leftover));
        }
    }

    if let Some(include) = req.include.filter(|i| !i.is_empty()) {
        extra.insert("include".to_owned(), json!(include));
    }
    if let Some(metadata) = req.metadata {
        extra.insert("metadata".to_owned(), Value::Object(metadata));
    }
    if let Some(truncation) = req.truncation {
        extra.insert("truncation".to_owned(), Value::String(truncation));
    }
    out.extra = extra;
    Ok(out)
}

fn items_to_ir(items: Vec<Item>, out: &mut ChatRequest) -> Result<(), ConvertError> {
    // System/developer messages before anything else are the system prompt.
    let mut leading = true;
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Item::Message(m) => {
                let role = match m.role.as_str() {
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    "system" | "developer" => Role::System,
                    other => {
                        return Err(ConvertError::invalid(
                            format!("input[{i}].role"),
                            format!("unknown role `{other}`"),
                        ));
                    }
                };
                let parts = content_to_ir(m.content, i)?;
                if role == Role::System && leading {
                    out.system.extend(parts);
                    continue;
                }
                leading = false;
                // The reasoning item that precedes a message belongs to its turn.
                if role == Role::Assistant
                    && let Some(last) = out.messages.last_mut()
                    && last.role == Role::Assistant
                    && last.content.iter().all(is_reasoning)
                {
                    last.content.extend(parts);
                    continue;
                }
                out.messages.push(Message {
                    role,
                    content: parts,
                    name: None,
                });
            }
            Item::FunctionCall(call) => {
                leading = false;
                push_assistant(
                    out,
                    [Part::ToolCall {
                        id: call.call_id,
                        name: call.name,
                        arguments: call.arguments,
                        signature: None,
                    }],
                );
            }
            Item::FunctionCallOutput(result) => {
                leading = false;
                let name = result
                    .extra
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let content = match result.output {
                    Content::Text(text) => vec![Part::text(text)],
                    parts @ Content::Parts(_) => content_to_ir(parts, i)?,
                };
                let part = Part::ToolResult {
                    call_id: result.call_id,
                    name,
                    content,
                    is_error: false,
                    cache_control: None,
                };
                match out.messages.last_mut() {
                    Some(last) if last.role == Role::Tool => last.content.push(part),
                    _ => out.messages.push(Message {
                        role: Role::Tool,
                        content: vec![part],
                        name: None,
                    }),
                }
            }
            Item::Reasoning(reasoning) => {
                leading = false;
                let parts = reasoning_to_ir(reasoning);
                if !parts.is_empty() {
                    push_assistant(out, parts);
                }
            }
            Item::Other(raw) => {
                let kind = raw.get("type").and_then(Value::as_str).unwrap_or("");
                if kind == "item_reference" {
                    return Err(ConvertError::Unsupported(
                        ITEM_REFERENCE_UNSUPPORTED.to_owned(),
                    ));
                }
                return Err(ConvertError::Unsupported(format!(
                    "input[{i}]: input item type `{kind}`"
                )));
            }
        }
    }
    Ok(())
}

fn is_reasoning(part: &Part) -> bool {
    matches!(
        part,
        Part::Reasoning { .. } | Part::RedactedReasoning { .. }
    )
}

/// Appends to the current assistant turn, opening one if needed.
fn push_assistant(out: &mut ChatRequest, parts: impl IntoIterator<Item = Part>) {
    match out.messages.last_mut() {
        Some(m) if m.role == Role::Assistant => m.content.extend(parts),
        _ => out.messages.push(Message {
            role: Role::Assistant,
            content: parts.into_iter().collect(),
            name: None,
        }),
    }
}

fn reasoning_to_ir(reasoning: wire::Reasoning) -> Vec<Part> {
    let mut parts: Vec<Part> = reasoning
        .summary
        .into_iter()
        .map(|s| Part::Reasoning {
            text: s.text,
            signature: None,
        })
        .collect();
    // Open-weight models send their raw reasoning as `content` instead.
    if parts.is_empty() {
        for part in reasoning.content.unwrap_or_default() {
            if let ContentPart::ReasoningText(t) = part {
                parts.push(Part::Reasoning {
                    text: t.text,
                    signature: None,
                });
            }
        }
    }
    if let Some(data) = reasoning.encrypted_content.filter(|d| !d.is_empty()) {
        parts.push(Part::RedactedReasoning { data });
    }
    parts
}

fn content_to_ir(content: Content, item: usize) -> Result<Vec<Part>, ConvertError> {
    let parts = match content {
        Content::Text(text) => return Ok(vec![Part::text(text)]),
        Content::Parts(parts) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        out.push(match part {
            ContentPart::InputText(t) => Part::text(t.text),
            ContentPart::OutputText(t) => Part::text(t.text),
            ContentPart::Refusal(r) => Part::text(r.refusal),
            ContentPart::InputImage(image) => match image.image_url {
                Some(url) => Part::Image {
                    source: MediaSource::from_url(&url),
                    detail: image.detail,
                    cache_control: None,
                },
                None if image.file_id.is_some() => {
                    return Err(ConvertError::Unsupported(
                        "input_image.file_id (OpenAI file references)".to_owned(),
                    ));
                }
                None => {
                    return Err(ConvertError::invalid(
                        format!("input[{item}].content[{j}]"),
                        "input_image needs image_url",
                    ));
                }
            },
            ContentPart::InputFile(file) => {
                let source = if let Some(data) = file.file_data {
                    file_data_source(data, file.filename.as_deref())
                } else if let Some(url) = file.file_url {
                    MediaSource::Url { url }
                } else if file.file_id.is_some() {
                    return Err(ConvertError::Unsupported(
                        "input_file.file_id (OpenAI file references)".to_owned(),
                    ));
                } else {
                    return Err(ConvertError::invalid(
                        format!("input[{item}].content[{j}]"),
                        "input_file needs file_data or file_url",
                    ));
                };
                Part::File {
                    source,
                    filename: file.filename,
                    cache_control: None,
                }
            }
            ContentPart::InputAudio(audio) => Part::Audio {
                data: audio.input_audio.data,
                format: audio.input_audio.format,
            },
            other => {
                return Err(ConvertError::invalid(
                    format!("input[{item}].content[{j}].type"),
                    format!("unsupported content part type `{}`", other.type_name()),
                ));
            }
        });
    }
    Ok(out)
}

/// `file_data` is documented as a `data:` URL; bare base64 is accepted with
/// a media type guessed from the file name.
fn file_data_source(data: String, filename: Option<&str>) -> MediaSource {
    if data.starts_with("data:") {
        return MediaSource::from_url(&data);
    }
    let media_type = match filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, ext)| ext)
    {
        Some(ext) if ext.eq_ignore_ascii_case("pdf") => "application/pdf",
        _ => "application/octet-stream",
    };
    MediaSource::Base64 {
        media_type: media_type.to_owned(),
        data,
    }
}

/// Encodes an IR request as a Responses body for an upstream.
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::Unsupported(
            "n > 1 (several choices)".to_owned(),
        ));
    }
    let extra = (req.extra_format == Some(Format::OpenAiResponses)).then_some(&req.extra);
    let mut builder = InputBuilder::default();

    let mut system = req.system.iter().peekable();
    let instructions = match system.peek() {
        Some(Part::Text { text, .. }) => {
            system.next();
            Some(text.clone())
        }
        _ => None,
    };
    for part in system {
        builder.message("developer", std::slice::from_ref(part))?;
    }
    for message in &req.messages {
        let role = match message.role {
            Role::System => "developer",
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        builder.message(role, &message.content)?;
    }

    let mut tools: Vec<wire::Tool> = req
        .tools
        .iter()
        .map(|t| {
            wire::Tool::Function(wire::FunctionTool {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters: Some(t.parameters.clone()),
                strict: Some(t.strict.unwrap_or(false)),
                extra: Map::new(),
            })
        })
        .collect();
    if let Some(Value::Array(raw)) = extra.and_then(|e| e.get("tools")) {
        tools.extend(raw.iter().cloned().map(wire::Tool::Other));
    }

    let tool_choice = match extra.and_then(|e| e.get("tool_choice")) {
        Some(raw) => Some(wire::ToolChoice::Other(raw.clone())),
        None => req.tool_choice.as_ref().map(|choice| match choice {
            ToolChoice::None => wire::ToolChoice::Mode("none".to_owned()),
            ToolChoice::Auto => wire::ToolChoice::Mode("auto".to_owned()),
            ToolChoice::Required => wire::ToolChoice::Mode("required".to_owned()),
            ToolChoice::Named(name) => wire::ToolChoice::Function { name: name.clone() },
        }),
    };

    let reasoning = reasoning_from_ir(
        req.reasoning.as_ref(),
        extra.and_then(|e| e.get("reasoning")),
    );
    let reasoning_on = reasoning
        .as_ref()
        .and_then(|r| r.effort.as_deref())
        .is_some_and(|e| e != "none");

    let mut include: Vec<String> = match extra.and_then(|e| e.get("include")) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if (builder.replays_reasoning || reasoning_on)
        && !include.iter().any(|i| i == ENCRYPTED_REASONING)
    {
        include.push(ENCRYPTED_REASONING.to_owned());
    }

    let mut body_extra = Map::new();
    if let Some(extra) = extra {
        for (key, value) in extra {
            let handled = matches!(
                key.as_str(),
                "tools" | "tool_choice" | "reasoning" | "text" | "include" | "store"
            );
            if !handled {
                body_extra.insert(key.clone(), value.clone());
            }
        }
    }

    let body = wire::CreateRequest {
        model: req.model.clone(),
        input: Some(wire::Input::Items(builder.items)),
        instructions,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        max_output_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stream: Some(req.stream),
        reasoning,
        text: text_from_ir(
            req.response_format.as_ref(),
            extra.and_then(|e| e.get("text")),
        ),
        previous_response_id: None,
        store: Some(false),
        include: (!include.is_empty()).then_some(include),
        user: req.user.clone(),
        metadata: None,
        truncation: None,
        extra: body_extra,
    };
    Ok(serde_json::to_vec(&body)?)
}

fn reasoning_from_ir(
    reasoning: Option<&ir::Reasoning>,
    leftover: Option<&Value>,
) -> Option<wire::ReasoningConfig> {
    let mut config = wire::ReasoningConfig::default();
    if let Some(r) = reasoning {
        config.effort = r.effort.clone().or_else(|| {
            // Token budgets (Anthropic, Gemini) map onto effort levels.
            let budget = r.budget_tokens.filter(|_| r.enabled != Some(false))?;
            Some(budget_effort(budget).to_owned())
        });
        if r.include_thoughts == Some(true) {
            config.summary = Some("auto".to_owned());
        }
    }
    if let Some(Value::Object(leftover)) = leftover {
        for (key, value) in leftover {
            match (key.as_str(), value) {
                ("summary", Value::String(s)) => config.summary = Some(s.clone()),
                _ => {
                    config.extra.insert(key.clone(), value.clone());
                }
            }
        }
    }
    let empty = config.effort.is_none() && config.summary.is_none() && config.extra.is_empty();
    (!empty || reasoning.is_some_and(|r| r.enabled == Some(true))).then_some(config)
}

/// Effort for a thinking budget: up to 2k tokens is `low`, up to 8k
/// `medium`, more `high`.
fn budget_effort(budget: u64) -> &'static str {
    match budget {
        0..=2048 => "low",
        2049..=8192 => "medium",
        _ => "high",
    }
}

fn text_from_ir(
    format: Option<&ResponseFormat>,
    leftover: Option<&Value>,
) -> Option<wire::TextConfig> {
    let mut config = wire::TextConfig {
        format: format.map(|f| match f {
            ResponseFormat::Text => wire::TextFormat::Text,
            ResponseFormat::JsonObject => wire::TextFormat::JsonObject,
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => wire::TextFormat::JsonSchema(wire::JsonSchemaFormat {
                name: name.clone(),
                schema: schema.clone(),
                description: None,
                strict: *strict,
            }),
        }),
        extra: Map::new(),
    };
    if let Some(Value::Object(leftover)) = leftover {
        for (key, value) in leftover {
            if key == "format" {
                if let Some(wire::TextFormat::JsonSchema(schema)) = &mut config.format
                    && let Some(description) = value.get("description").and_then(Value::as_str)
                {
                    schema.description = Some(description.to_owned());
                }
            } else {
                config.extra.insert(key.clone(), value.clone());
            }
        }
    }
    (config.format.is_some() || !config.extra.is_empty()).then_some(config)
}

/// Accumulates `input` items from IR messages.
#[derive(Default)]
struct InputBuilder {
    items: Vec<Item>,
    /// A reasoning item with `encrypted_content` was written.
    replays_reasoning: bool,
}

impl InputBuilder {
    fn message(&mut self, role: &str, parts: &[Part]) -> Result<(), ConvertError> {
        let assistant = role == "assistant";
        let mut content: Vec<ContentPart> = Vec::new();
        let mut summary: Vec<SummaryText> = Vec::new();
        for part in parts {
            match part {
                Part::Text { text, .. } => {
                    self.flush_reasoning(&mut summary, None);
                    if text.is_empty() {
                        continue;
                    }
                    content.push(if assistant {
                        ContentPart::OutputText(OutputText {
                            text: text.clone(),
                            ..OutputText::default()
                        })
                    } else {
                        ContentPart::InputText(wire::TextPart {
                            text: text.clone(),
                            extra: Map::new(),
                        })
                    });
                }
                Part::Image { .. } | Part::File { .. } | Part::Audio { .. } => {
                    self.flush_reasoning(&mut summary, None);
                    if assistant {
                        return Err(ConvertError::Unsupported(
                            "media in an assistant message".to_owned(),
                        ));
                    }
                    content.push(media_to_wire(part)?);
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                    ..
                } => {
                    self.flush_message(role, &mut content);
                    self.flush_reasoning(&mut summary, None);
                    self.items.push(Item::FunctionCall(wire::FunctionCall {
                        arguments: if arguments.is_empty() {
                            "{}".to_owned()
                        } else {
                            arguments.clone()
                        },
                        call_id: id.clone(),
                        name: name.clone(),
                        ..wire::FunctionCall::default()
                    }));
                }
                Part::ToolResult {
                    call_id,
                    content: result,
                    ..
                } => {
                    self.flush_message(role, &mut content);
                    self.flush_reasoning(&mut summary, None);
                    self.items
                        .push(Item::FunctionCallOutput(wire::FunctionCallOutput {
                            id: None,
                            status: None,
                            call_id: call_id.clone(),
                            output: tool_output(result)?,
                            extra: Map::new(),
                        }));
                }
                Part::Reasoning { text, .. } => {
                    self.flush_message(role, &mut content);
                    summary.push(SummaryText::new(text.clone()));
                }
                Part::RedactedReasoning { data } => {
                    self.flush_message(role, &mut content);
                    self.flush_reasoning(&mut summary, Some(data));
                }
            }
        }
        self.flush_message(role, &mut content);
        self.flush_reasoning(&mut summary, None);
        Ok(())
    }

    fn flush_message(&mut self, role: &str, content: &mut Vec<ContentPart>) {
        if content.is_empty() {
            return;
        }
        self.items.push(Item::Message(wire::Message {
            id: None,
            status: None,
            role: role.to_owned(),
            content: Content::Parts(std::mem::take(content)),
            extra: Map::new(),
        }));
    }

    /// Writes the pending reasoning as an item if it can be replayed (it
    /// has encrypted content); summaries alone are dropped.
    fn flush_reasoning(&mut self, summary: &mut Vec<SummaryText>, encrypted: Option<&String>) {
        match encrypted {
            Some(data) => {
                self.items.push(Item::Reasoning(wire::Reasoning {
                    summary: std::mem::take(summary),
                    encrypted_content: Some(data.clone()),
                    ..wire::Reasoning::default()
                }));
                self.replays_reasoning = true;
            }
            None => summary.clear(),
        }
    }
}

fn media_to_wire(part: &Part) -> Result<ContentPart, ConvertError> {
    Ok(match part {
        Part::Image { source, detail, .. } => ContentPart::InputImage(wire::InputImage {
            // Required by the API; `auto` is its default behaviour.
            detail: Some(detail.clone().unwrap_or_else(|| "auto".to_owned())),
            file_id: None,
            image_url: Some(source.to_url()),
            extra: Map::new(),
        }),
        Part::File {
            source, filename, ..
        } => ContentPart::InputFile(match source {
            MediaSource::Base64 { media_type, .. } => wire::InputFile {
                file_data: Some(source.to_url()),
                // The API requires a name with inline data.
                filename: Some(
                    filename
                        .clone()
                        .unwrap_or_else(|| default_filename(media_type)),
                ),
                ..wire::InputFile::default()
            },
            MediaSource::Url { url } => wire::InputFile {
                file_url: Some(url.clone()),
                filename: filename.clone(),
                ..wire::InputFile::default()
            },
        }),
        Part::Audio { .. } => {
            return Err(ConvertError::Unsupported(
                "audio input (the Responses API takes text, images and files)".to_owned(),
            ));
        }
        Part::Text { text, .. } => ContentPart::InputText(wire::TextPart {
            text: text.clone(),
            extra: Map::new(),
        }),
        _ => {
            return Err(ConvertError::Unsupported(
                "this content inside a tool result".to_owned(),
            ));
        }
    })
}

fn default_filename(media_type: &str) -> String {
    match media_type.rsplit_once('/') {
        Some((_, ext)) if !ext.is_empty() => format!("document.{ext}"),
        _ => "document".to_owned(),
    }
}

/// A single text result is sent as a string (the common form); anything
/// else as a list of input parts, which loses nothing.
fn tool_output(parts: &[Part]) -> Result<Content, ConvertError> {
    match parts {
        [] => Ok(Content::Text(String::new())),
        [Part::Text { text, .. }] => Ok(Content::Text(text.clone())),
        _ => parts
            .iter()
            .map(media_to_wire)
            .collect::<Result<_, _>>()
            .map(Content::Parts),
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

/// Parses a non-streaming Responses body. A `failed` response is an error.
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let resp: wire::Response = serde_json::from_slice(body)?;
    if resp.status.as_deref() == Some("failed") {
        let message = resp
            .error
            .map(|e| match e.code {
                Some(code) => format!("{code}: {}", e.message),
                None => e.message,
            })
            .unwrap_or_else(|| "no error details".to_owned());
        return Err(ConvertError::invalid(
            "error",
            format!("upstream response failed: {message}"),
        ));
    }
    let mut out = ChatResponse {
        id: resp.id,
        model: resp.model,
        created: resp.created_at,
        usage: resp.usage.as_ref().map(usage_to_ir).unwrap_or_default(),
        ..ChatResponse::default()
    };
    for item in resp.output {
        match item {
            Item::Message(m) => {
                let parts = match m.content {
                    Content::Text(text) => vec![ContentPart::OutputText(OutputText {
                        text,
                        ..OutputText::default()
                    })],
                    Content::Parts(parts) => parts,
                };
                for part in parts {
                    match part {
                        ContentPart::OutputText(t) => out.content.push(Part::text(t.text)),
                        ContentPart::Refusal(r) => {
                            out.refusal
                                .get_or_insert_with(String::new)
                                .push_str(&r.refusal);
                        }
                        _ => {}
                    }
                }
            }
            Item::FunctionCall(call) => out.content.push(Part::ToolCall {
                id: call.call_id,
                name: call.name,
                arguments: call.arguments,
                signature: None,
            }),
            Item::Reasoning(reasoning) => out.content.extend(reasoning_to_ir(reasoning)),
            // Hosted-tool items (web search, ...) have no IR form.
            Item::FunctionCallOutput(_) | Item::Other(_) => {}
        }
    }
    let calls = out
        .content
        .iter()
        .any(|p| matches!(p, Part::ToolCall { .. }));
    out.finish_reason = finish_reason(resp.incomplete_details.as_ref(), calls);
    Ok(out)
}

fn finish_reason(incomplete: Option<&IncompleteDetails>, tool_calls: bool) -> FinishReason {
    match incomplete.and_then(|d| d.reason.as_deref()) {
        Some("max_output_tokens") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        _ if tool_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn incomplete_reason(reason: FinishReason) -> Option<&'static str> {
    match reason {
        FinishReason::Length => Some("max_output_tokens"),
        FinishReason::ContentFilter => Some("content_filter"),
        FinishReason::Stop | FinishReason::ToolCalls => None,
    }
}

fn usage_to_ir(u: &wire::ResponseUsage) -> Usage {
    let input = u.input_tokens_details.as_ref();
    Usage {
        input_tokens: u.input_tokens,
        output_tokens: u.output_tokens,
        cache_read_tokens: input.map_or(0, |d| d.cached_tokens),
        cache_write_tokens: input.and_then(|d| d.cache_write_tokens).unwrap_or(0),
        reasoning_tokens: u
            .output_tokens_details
            .as_ref()
            .map_or(0, |d| d.reasoning_tokens),
    }
}

fn usage_from_ir(u: &Usage) -> wire::ResponseUsage {
    wire::ResponseUsage {
        input_tokens: u.input_tokens,
        input_tokens_details: Some(wire::InputTokensDetails {
            cached_tokens: u.cache_read_tokens,
            cache_write_tokens: (u.cache_write_tokens > 0).then_some(u.cache_write_tokens),
            extra: Map::new(),
        }),
        output_tokens: u.output_tokens,
        output_tokens_details: Some(wire::OutputTokensDetails {
            reasoning_tokens: u.reasoning_tokens,
            extra: Map::new(),
        }),
        total_tokens: u.total(),
        extra: Map::new(),
    }
}

/// The `resp_` id for an IR response id from any upstream.
fn response_id(id: &str) -> String {
    if id.starts_with("resp_") {
        id.to_owned()
    } else {
        format!("resp_{id}")
    }
}

fn item_id(prefix: &str, response_id: &str, index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{prefix}_{base}_{index}")
}

fn output_text(text: String) -> ContentPart {
    ContentPart::OutputText(OutputText {
        annotations: Some(Vec::new()),
        logprobs: Some(Vec::new()),
        text,
        extra: Map::new(),
    })
}

fn message_item(id: String, status: &str, content: Vec<ContentPart>) -> Item {
    Item::Message(wire::Message {
        id: Some(id),
        status: Some(status.to_owned()),
        role: "assistant".to_owned(),
        content: Content::Parts(content),
        extra: Map::new(),
    })
}

fn call_item(id: String, status: &str, call_id: &str, name: &str, arguments: String) -> Item {
    Item::FunctionCall(wire::FunctionCall {
        id: Some(id),
        status: Some(status.to_owned()),
        arguments,
        call_id: call_id.to_owned(),
        name: name.to_owned(),
        extra: Map::new(),
    })
}

fn reasoning_item(id: String, summary: Vec<SummaryText>, encrypted: Option<String>) -> Item {
    Item::Reasoning(wire::Reasoning {
        id: Some(id),
        summary,
        encrypted_content: encrypted,
        ..wire::Reasoning::default()
    })
}

/// A response object as the API returns it, without output or usage yet.
/// Request settings llmux does not know at this point are reported with the
/// API's defaults.
fn response_object(id: &str, model: &str, created: u64, status: &str) -> wire::Response {
    wire::Response {
        id: id.to_owned(),
        object: "response".to_owned(),
        created_at: created,
        status: Some(status.to_owned()),
        error: None,
        incomplete_details: None,
        instructions: None,
        max_output_tokens: None,
        model: model.to_owned(),
        output: Vec::new(),
        parallel_tool_calls: true,
        previous_response_id: None,
        reasoning: None,
        store: Some(false),
        temperature: None,
        text: Some(json!({"format": {"type": "text"}})),
        tool_choice: Some(json!("auto")),
        tools: Vec::new(),
        top_p: None,
        truncation: Some("disabled".to_owned()),
        usage: None,
        user: None,
        metadata: Some(Map::new()),
        extra: Map::new(),
    }
}

fn incomplete_details(reason: Option<&str>) -> Option<IncompleteDetails> {
    reason.map(|r| IncompleteDetails {
        reason: Some(r.to_owned()),
    })
}

/// Encodes an IR response as a Responses body: output items in IR order
/// (consecutive text parts share a message item; reasoning parts and the
/// encrypted reasoning after them form one reasoning item), the refusal in
/// the last message item.
pub fn response_from_ir(resp: &ChatResponse) -> Vec<u8> {
    let id = response_id(&resp.id);
    let incomplete = incomplete_reason(resp.finish_reason);
    let mut output: Vec<Item> = Vec::new();
    let mut text: Vec<ContentPart> = Vec::new();
    let mut summary: Vec<SummaryText> = Vec::new();
    let mut reasoning_open = false;

    fn flush_text(id: &str, output: &mut Vec<Item>, text: &mut Vec<ContentPart>) {
        if !text.is_empty() {
            let item_id = item_id("msg", id, output.len());
            output.push(message_item(item_id, "completed", std::mem::take(text)));
        }
    }
    fn flush_reasoning(
        id: &str,
        output: &mut Vec<Item>,
        summary: &mut Vec<SummaryText>,
        open: &mut bool,
        encrypted: Option<String>,
    ) {
        if *open || encrypted.is_some() {
            let item_id = item_id("rs", id, output.len());
            output.push(reasoning_item(item_id, std::mem::take(summary), encrypted));
        }
        *open = false;
    }

    for part in &resp.content {
        match part {
            Part::Text { text: t, .. } => {
                flush_reasoning(&id, &mut output, &mut summary, &mut reasoning_open, None);
                text.push(output_text(t.clone()));
            }
            Part::Reasoning { text: t, .. } => {
                flush_text(&id, &mut output, &mut text);
                summary.push(SummaryText::new(t.clone()));
                reasoning_open = true;
            }
            Part::RedactedReasoning { data } => {
                flush_text(&id, &mut output, &mut text);
                flush_reasoning(
                    &id,
                    &mut output,
                    &mut summary,
                    &mut reasoning_open,
                    Some(data.clone()),
                );
            }
            Part::ToolCall {
                id: call_id,
                name,
                arguments,
                ..
            } => {
                flush_text(&id, &mut output, &mut text);
                flush_reasoning(&id, &mut output, &mut summary, &mut reasoning_open, None);
                let item_id = item_id("fc", &id, output.len());
                output.push(call_item(
                    item_id,
                    "completed",
                    call_id,
                    name,
                    arguments.clone(),
                ));
            }
            _ => {}
        }
    }
    flush_reasoning(&id, &mut output, &mut summary, &mut reasoning_open, None);
    if let Some(refusal) = &resp.refusal {
        flush_text(&id, &mut output, &mut text);
        let refusal = ContentPart::Refusal(wire::Refusal {
            refusal: refusal.clone(),
            extra: Map::new(),
        });
        match output.iter_mut().rev().find_map(|item| match item {
            Item::Message(m) => Some(m),
            _ => None,
        }) {
            Some(wire::Message {
                content: Content::Parts(parts),
                ..
            }) => parts.push(refusal),
            _ => {
                let item_id = item_id("msg", &id, output.len());
                output.push(message_item(item_id, "completed", vec![refusal]));
            }
        }
    } else {
        flush_text(&id, &mut output, &mut text);
    }
    if incomplete.is_some() {
        mark_incomplete(output.last_mut());
    }
    let status = if incomplete.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let mut body = response_object(&id, &resp.model, resp.created, status);
    body.output = output;
    body.usage = Some(usage_from_ir(&resp.usage));
    body.incomplete_details = incomplete_details(incomplete);
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The item generation stopped in is `incomplete`, as the API reports it.
fn mark_incomplete(item: Option<&mut Item>) {
    match item {
        Some(Item::Message(m)) => m.status = Some("incomplete".to_owned()),
        Some(Item::FunctionCall(c)) => c.status = Some("incomplete".to_owned()),
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The OpenAI error body: `{"error":{"message","type","param","code"}}`.
pub fn error_body(err: &ApiError) -> Vec<u8> {
    let (kind, code) = match err.kind {
        ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::RequestTooLarge => {
            ("invalid_request_error", None)
        }
        ErrorKind::Authentication => ("invalid_request_error", Some("invalid_api_key")),
        ErrorKind::Permission => ("invalid_request_error", None),
        // OpenAI names the exhausted limit (`requests`/`tokens`) as the type.
        ErrorKind::RateLimit => ("requests", Some("rate_limit_exceeded")),
        ErrorKind::Api | ErrorKind::Overloaded | ErrorKind::Timeout => ("server_error", None),
    };
    crate::openai::error_body(&err.message, kind, code, None).to_vec()
}

/// Reads an upstream error body (OpenAI shape or a lenient variant).
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let info = crate::openai::parse_error_body(body);
    let (code, kind, message) = match info {
        Some(info) => (info.code, info.error_type, info.message),
        None => (None, None, fallback_message(status, body)),
    };
    let mut err = api_error(code.as_deref(), kind.as_deref(), message);
    if (400..600).contains(&status) {
        err.status = status;
        let from_status = ErrorKind::from_status(status);
        // A status that only says "bad request" or "server error" defers to
        // the code; otherwise the status decides.
        if !matches!(from_status, ErrorKind::InvalidRequest | ErrorKind::Api)
            || err.kind == ErrorKind::Api
        {
            err.kind = from_status;
        }
    }
    err
}

fn fallback_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("upstream returned HTTP {status}");
    }
    text.chars().take(1000).collect()
}

/// An [`ApiError`] from the `code`/`type` of a Responses error object.
fn api_error(code: Option<&str>, kind: Option<&str>, message: String) -> ApiError {
    let error_kind = match (code, kind) {
        (Some("rate_limit_exceeded" | "insufficient_quota"), _) => ErrorKind::RateLimit,
        (Some("invalid_api_key"), _) => ErrorKind::Authentication,
        (Some("server_is_overloaded" | "overloaded"), _) => ErrorKind::Overloaded,
        (Some("vector_store_timeout" | "timeout"), _) => ErrorKind::Timeout,
        (Some("server_error"), _) => ErrorKind::Api,
        (Some(c), _)
            if c.starts_with("invalid_")
                || c.contains("image")
                || matches!(
                    c,
                    "context_length_exceeded" | "bio_policy" | "data_residency_mismatch"
                ) =>
        {
            ErrorKind::InvalidRequest
        }
        (_, Some("invalid_request_error")) => ErrorKind::InvalidRequest,
        (_, Some("requests" | "tokens" | "rate_limit_error")) => ErrorKind::RateLimit,
        _ => ErrorKind::Api,
    };
    let status = match error_kind {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::Authentication => 401,
        ErrorKind::Permission => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::RequestTooLarge => 413,
        ErrorKind::RateLimit => 429,
        ErrorKind::Api => 500,
        ErrorKind::Overloaded => 503,
        ErrorKind::Timeout => 504,
    };
    let message = if message.is_empty() {
        code.unwrap_or("upstream error").to_owned()
    } else {
        message
    };
    ApiError {
        status,
        kind: error_kind,
        message,
    }
}

fn response_error_to_api(err: Option<wire::ResponseError>) -> ApiError {
    match err {
        Some(e) => api_error(e.code.as_deref(), e.kind.as_deref(), e.message),
        None => api_error(None, None, "upstream response failed".to_owned()),
    }
}

/// The `code` a client (Codex) acts on for an IR error.
fn response_error_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RateLimit => "rate_limit_exceeded",
        ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "invalid_prompt",
        _ => "server_error",
    }
}

// ---------------------------------------------------------------------------
// Stream decoding
// ---------------------------------------------------------------------------

/// What a text key counts: the bytes already emitted for one content part,
/// so a `.done` (or `output_item.done`) carrying text whose deltas never
/// came still yields it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum TextKind {
    Output,
    Refusal,
    Summary,
    Reasoning,
}

#[derive(Debug)]
struct CallState {
    item_id: String,
    output_index: u32,
    /// Argument bytes already emitted.
    sent: usize,
}

/// Responses SSE events -> IR events. Tool calls are streamed as they
/// arrive: `output_item.added` of a `function_call` yields `ToolCallStart`
/// and each `function_call_arguments.delta` a `ToolCallDelta`.
/// `response.completed`/`.incomplete` yield `Usage` then `Finish`;
/// `response.failed` and `error` yield `Error`. Summary parts after the
/// first are separated by a blank line (`"\n\n"` reasoning delta).
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    finished: bool,
    calls: Vec<CallState>,
    sent: HashMap<(TextKind, u32, u32), usize>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn start(&mut self, resp: Option<&wire::Response>, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        out.push(match resp {
            Some(r) => StreamEvent::Start {
                id: r.id.clone(),
                model: r.model.clone(),
                created: r.created_at,
            },
            None => StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                created: 0,
            },
        });
    }

    fn call_index(&self, item_id: &str, output_index: u32) -> Option<usize> {
        if !item_id.is_empty()
            && let Some(i) = self.calls.iter().position(|c| c.item_id == item_id)
        {
            return Some(i);
        }
        self.calls
            .iter()
            .position(|c| c.output_index == output_index)
    }

    fn start_call(
        &mut self,
        item_id: Option<&str>,
        output_index: u32,
        call: &wire::FunctionCall,
        out: &mut Vec<StreamEvent>,
    ) -> usize {
        let index = self.calls.len();
        self.calls.push(CallState {
            item_id: item_id.unwrap_or_default().to_owned(),
            output_index,
            sent: 0,
        });
        out.push(StreamEvent::ToolCallStart {
            index: index as u32,
            id: call.call_id.clone(),
            name: call.name.clone(),
            signature: None,
        });
        index
    }

    /// Emits the part of `full` arguments not yet sent for call `index`.
    fn catch_up_call(&mut self, index: usize, full: &str, out: &mut Vec<StreamEvent>) {
        let Some(call) = self.calls.get_mut(index) else {
            return;
        };
        if let Some(rest) = full.get(call.sent..).filter(|r| !r.is_empty()) {
            out.push(StreamEvent::ToolCallDelta {
                index: index as u32,
                arguments: rest.to_owned(),
            });
            call.sent = full.len();
        }
    }

    fn text(&mut self, key: (TextKind, u32, u32), delta: &str, out: &mut Vec<StreamEvent>) {
        if delta.is_empty() {
            return;
        }
        *self.sent.entry(key).or_default() += delta.len();
        out.push(text_event(key.0, delta.to_owned()));
    }

    fn catch_up_text(&mut self, key: (TextKind, u32, u32), full: &str, out: &mut Vec<StreamEvent>) {
        let sent = self.sent.get(&key).copied().unwrap_or(0);
        if let Some(rest) = full.get(sent..).filter(|r| !r.is_empty()) {
            out.push(text_event(key.0, rest.to_owned()));
            self.sent.insert(key, full.len());
        }
    }

    fn handle(&mut self, event: wire::StreamEvent, out: &mut Vec<StreamEvent>) {
        use wire::StreamEvent as E;
        match event {
            E::Created(e) | E::Queued(e) | E::InProgress(e) => self.start(Some(&e.response), out),
            E::OutputItemAdded(e) => {
                self.start(None, out);
                if let Item::FunctionCall(call) = &e.item
                    && self
                        .call_index(call.id.as_deref().unwrap_or(""), e.output_index)
                        .is_none()
                {
                    let index = self.start_call(call.id.as_deref(), e.output_index, call, out);
                    self.catch_up_call(index, &call.arguments, out);
                }
            }
            E::OutputTextDelta(e) => {
                self.start(None, out);
                self.text(
                    (TextKind::Output, e.output_index, e.content_index),
                    &e.delta,
                    out,
                );
            }
            E::OutputTextDone(e) => {
                self.start(None, out);
                self.catch_up_text(
                    (TextKind::Output, e.output_index, e.content_index),
                    &e.text,
                    out,
                );
            }
            E::RefusalDelta(e) => {
                self.start(None, out);
                self.text(
                    (TextKind::Refusal, e.output_index, e.content_index),
                    &e.delta,
                    out,
                );
            }
            E::RefusalDone(e) => {
                self.start(None, out);
                self.catch_up_text(
                    (TextKind::Refusal, e.output_index, e.content_index),
                    &e.refusal,
                    out,
                );
            }
            E::ReasoningSummaryPartAdded(e) => {
                self.start(None, out);
                if e.summary_index > 0 {
                    out.push(StreamEvent::ReasoningDelta("\n\n".to_owned()));
                }
            }
            E::ReasoningSummaryTextDelta(e) => {
                self.start(None, out);
                self.text(
                    (TextKind::Summary, e.output_index, e.summary_index),
                    &e.delta,
                    out,
                );
            }
            E::ReasoningSummaryTextDone(e) => {
                self.start(None, out);
                self.catch_up_text(
                    (TextKind::Summary, e.output_index, e.summary_index),
                    &e.text,
                    out,
                );
            }
            E::ReasoningTextDelta(e) => {
                self.start(None, out);
                self.text(
                    (TextKind::Reasoning, e.output_index, e.content_index),
                    &e.delta,
                    out,
                );
            }
            E::ReasoningTextDone(e) => {
                self.start(None, out);
                self.catch_up_text(
                    (TextKind::Reasoning, e.output_index, e.content_index),
                    &e.text,
                    out,
                );
            }
            E::FunctionCallArgumentsDelta(e) => {
                if let Some(index) = self.call_index(&e.item_id, e.output_index)
                    && !e.delta.is_empty()
                    && let Some(call) = self.calls.get_mut(index)
                {
                    call.sent += e.delta.len();
                    out.push(StreamEvent::ToolCallDelta {
                        index: index as u32,
                        arguments: e.delta,
                    });
                }
            }
            E::FunctionCallArgumentsDone(e) => {
                if let Some(index) = self.call_index(&e.item_id, e.output_index) {
                    self.catch_up_call(index, &e.arguments, out);
                }
            }
            E::OutputItemDone(e) => {
                self.start(None, out);
                self.item_done(e, out);
            }
            E::Completed(e) | E::Incomplete(e) => {
                self.start(Some(&e.response), out);
                let resp = e.response;
                if let Some(usage) = &resp.usage {
                    out.push(StreamEvent::Usage(usage_to_ir(usage)));
                }
                let calls = !self.calls.is_empty()
                    || resp
                        .output
                        .iter()
                        .any(|i| matches!(i, Item::FunctionCall(_)));
                out.push(StreamEvent::Finish {
                    reason: finish_reason(resp.incomplete_details.as_ref(), calls),
                    stop_sequence: None,
                });
                self.finished = true;
            }
            E::Failed(e) => {
                out.push(StreamEvent::Error(response_error_to_api(e.response.error)));
                self.finished = true;
            }
            E::Error(e) => {
                let err = match e.error {
                    Some(nested) if e.message.is_empty() => response_error_to_api(Some(nested)),
                    _ => api_error(e.code.as_deref(), None, e.message),
                };
                out.push(StreamEvent::Error(err));
                self.finished = true;
            }
            E::ContentPartAdded(_) | E::ContentPartDone(_) | E::ReasoningSummaryPartDone(_) => {}
            E::Unknown => {}
        }
    }

    fn item_done(&mut self, e: OutputItemEvent, out: &mut Vec<StreamEvent>) {
        let oi = e.output_index;
        match e.item {
            Item::FunctionCall(call) => {
                let index = match self.call_index(call.id.as_deref().unwrap_or(""), oi) {
                    Some(index) => index,
                    None => self.start_call(call.id.as_deref(), oi, &call, out),
                };
                self.catch_up_call(index, &call.arguments, out);
            }
            Item::Message(m) => {
                if let Content::Parts(parts) = m.content {
                    for (ci, part) in parts.iter().enumerate() {
                        let ci = ci as u32;
                        match part {
                            ContentPart::OutputText(t) => {
                                self.catch_up_text((TextKind::Output, oi, ci), &t.text, out);
                            }
                            ContentPart::Refusal(r) => {
                                self.catch_up_text((TextKind::Refusal, oi, ci), &r.refusal, out);
                            }
                            _ => {}
                        }
                    }
                }
            }
            Item::Reasoning(r) => {
                for (si, summary) in r.summary.iter().enumerate() {
                    self.catch_up_text((TextKind::Summary, oi, si as u32), &summary.text, out);
                }
                if let Some(data) = r.encrypted_content.filter(|d| !d.is_empty()) {
                    out.push(StreamEvent::RedactedReasoning(data));
                }
            }
            Item::FunctionCallOutput(_) | Item::Other(_) => {}
        }
    }
}

fn text_event(kind: TextKind, text: String) -> StreamEvent {
    match kind {
        TextKind::Output => StreamEvent::TextDelta(text),
        TextKind::Refusal => StreamEvent::RefusalDelta(text),
        TextKind::Summary | TextKind::Reasoning => StreamEvent::ReasoningDelta(text),
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let data = event.data.trim();
        if self.finished || data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        let parsed = match serde_json::from_str::<wire::StreamEvent>(data) {
            Ok(parsed) => parsed,
            Err(err) => {
                // A server that names the event only in `event:`.
                let mut value: Value = serde_json::from_str(data)?;
                match (value.as_object_mut(), &event.event) {
                    (Some(obj), Some(name)) if !obj.contains_key("type") => {
                        obj.insert("type".to_owned(), Value::String(name.clone()));
                        serde_json::from_value(value)?
                    }
                    _ => return Err(err.into()),
                }
            }
        };
        self.handle(parsed, out);
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started && !self.finished {
            out.push(StreamEvent::Finish {
                reason: if self.calls.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                },
                stop_sequence: None,
            });
        }
        self.finished = true;
    }
}

// ---------------------------------------------------------------------------
// Stream encoding
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum OpenPart {
    Text(String),
    Refusal(String),
}

/// The output item being streamed; its output index is `output.len()`.
#[derive(Debug)]
enum OpenItem {
    Message {
        id: String,
        parts: Vec<ContentPart>,
        part: Option<OpenPart>,
    },
    Reasoning {
        id: String,
        /// The summary part streamed so far, once it has been opened.
        text: Option<String>,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// IR events -> the event sequence the Responses API sends:
/// `response.created`, `response.in_progress`, then per output item
/// `output_item.added`, its part/delta/done events and `output_item.done`,
/// and finally `response.completed` (or `response.incomplete` for a length
/// or content-filter finish) carrying the whole response with its usage.
/// An IR `Error` ends the stream with `response.failed`.
///
/// Reasoning text is streamed as one summary part; a `RedactedReasoning`
/// becomes the `encrypted_content` of the reasoning item it closes (or of a
/// reasoning item of its own). Reasoning signatures of other providers have
/// no Responses form and are dropped. A `ToolCallDelta` for a call whose
/// item was already closed (only possible when an upstream interleaves
/// calls) is still sent and included in the final response.
#[derive(Debug)]
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    sequence: u64,
    started: bool,
    ended: bool,
    output: Vec<Item>,
    open: Option<OpenItem>,
    /// IR tool-call index -> output index of its item.
    calls: HashMap<u32, usize>,
    usage: Usage,
    finish: Option<FinishReason>,
}

impl StreamEncoder {
    /// `id` is the response id shown to the client (`resp_` is prefixed when
    /// missing), `model` the client-facing model name, `created` Unix
    /// seconds. Empty values are taken from the IR `Start` event.
    pub fn new(id: impl Into<String>, model: impl Into<String>, created: u64) -> Self {
        let id = id.into();
        StreamEncoder {
            id: if id.is_empty() { id } else { response_id(&id) },
            model: model.into(),
            created,
            sequence: 0,
            started: false,
            ended: false,
            output: Vec::new(),
            open: None,
            calls: HashMap::new(),
            usage: Usage::default(),
            finish: None,
        }
    }

    fn emit(&mut self, event: wire::StreamEvent, out: &mut Vec<u8>) {
        let Ok(json) = serde_json::to_vec(&event) else {
            return;
        };
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.type_name().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(&encode_data(&json));
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.sequence;
        self.sequence += 1;
        seq
    }

    fn snapshot(&self, status: &str) -> wire::Response {
        response_object(&self.id, &self.model, self.created, status)
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if self.id.is_empty() {
            self.id = "resp_".to_owned();
        }
        let created = wire::StreamEvent::Created(ResponseEvent {
            sequence_number: self.next_seq(),
            response: self.snapshot("in_progress"),
        });
        self.emit(created, out);
        let in_progress = wire::StreamEvent::InProgress(ResponseEvent {
            sequence_number: self.next_seq(),
            response: self.snapshot("in_progress"),
        });
        self.emit(in_progress, out);
    }

    fn index(&self) -> u32 {
        self.output.len() as u32
    }

    fn open_message(&mut self, out: &mut Vec<u8>) {
        if matches!(self.open, Some(OpenItem::Message { .. })) {
            return;
        }
        self.close_item("completed", None, out);
        let id = item_id("msg", &self.id, self.output.len());
        let added = wire::StreamEvent::OutputItemAdded(OutputItemEvent {
            sequence_number: self.next_seq(),
            output_index: self.index(),
            item: message_item(id.clone(), "in_progress", Vec::new()),
        });
        self.emit(added, out);
        self.open = Some(OpenItem::Message {
            id,
            parts: Vec::new(),
            part: None,
        });
    }

    /// Opens an output text (`refusal == false`) or refusal part in the
    /// open message, closing a part of the other kind.
    fn open_part(&mut self, refusal: bool, out: &mut Vec<u8>) {
        let current = match &self.open {
            Some(OpenItem::Message { part, .. }) => {
                part.as_ref().map(|p| matches!(p, OpenPart::Refusal(_)))
            }
            _ => return,
        };
        if current == Some(refusal) {
            return;
        }
        self.close_part(out);
        let seq = self.next_seq();
        let index = self.index();
        let Some(OpenItem::Message { id, parts, part }) = &mut self.open else {
            return;
        };
        let (wire_part, open) = if refusal {
            (
                ContentPart::Refusal(wire::Refusal {
                    refusal: String::new(),
                    extra: Map::new(),
                }),
                OpenPart::Refusal(String::new()),
            )
        } else {
            (output_text(String::new()), OpenPart::Text(String::new()))
        };
        *part = Some(open);
        let event = wire::StreamEvent::ContentPartAdded(ContentPartEvent {
            sequence_number: seq,
            item_id: id.clone(),
            output_index: index,
            content_index: parts.len() as u32,
            part: wire_part,
        });
        self.emit(event, out);
    }

    fn close_part(&mut self, out: &mut Vec<u8>) {
        let index = self.index();
        let (item_id, content_index, finished) = {
            let Some(OpenItem::Message { id, parts, part }) = &mut self.open else {
                return;
            };
            let Some(open) = part.take() else {
                return;
            };
            let finished = match open {
                OpenPart::Text(text) => output_text(text),
                OpenPart::Refusal(refusal) => ContentPart::Refusal(wire::Refusal {
                    refusal,
                    extra: Map::new(),
                }),
            };
            parts.push(finished.clone());
            (id.clone(), parts.len() as u32 - 1, finished)
        };
        let done = match &finished {
            ContentPart::Refusal(r) => wire::StreamEvent::RefusalDone(RefusalDoneEvent {
                sequence_number: self.next_seq(),
                item_id: item_id.clone(),
                output_index: index,
                content_index,
                refusal: r.refusal.clone(),
            }),
            other => wire::StreamEvent::OutputTextDone(ContentTextDoneEvent {
                sequence_number: self.next_seq(),
                item_id: item_id.clone(),
                output_index: index,
                content_index,
                text: match other {
                    ContentPart::OutputText(t) => t.text.clone(),
                    _ => String::new(),
                },
                logprobs: Some(Vec::new()),
            }),
        };
        self.emit(done, out);
        let part_done = wire::StreamEvent::ContentPartDone(ContentPartEvent {
            sequence_number: self.next_seq(),
            item_id,
            output_index: index,
            content_index,
            part: finished,
        });
        self.emit(part_done, out);
    }

    fn open_reasoning(&mut self, out: &mut Vec<u8>) {
        if matches!(self.open, Some(OpenItem::Reasoning { .. })) {
            return;
        }
        self.close_item("completed", None, out);
        let id = item_id("rs", &self.id, self.output.len());
        let added = wire::StreamEvent::OutputItemAdded(OutputItemEvent {
            sequence_number: self.next_seq(),
            output_index: self.index(),
            item: reasoning_item(id.clone(), Vec::new(), None),
        });
        self.emit(added, out);
        self.open = Some(OpenItem::Reasoning { id, text: None });
    }

    /// Closes the open item; `encrypted` is a reasoning item's
    /// `encrypted_content`.
    fn close_item(&mut self, status: &str, encrypted: Option<String>, out: &mut Vec<u8>) {
        self.close_part(out);
        let index = self.index();
        let Some(open) = self.open.take() else {
            return;
        };
        let item = match open {
            OpenItem::Message { id, parts, .. } => message_item(id, status, parts),
            OpenItem::Reasoning { id, text } => {
                let mut summary = Vec::new();
                if let Some(text) = text {
                    let done = wire::StreamEvent::ReasoningSummaryTextDone(SummaryTextDoneEvent {
                        sequence_number: self.next_seq(),
                        item_id: id.clone(),
                        output_index: index,
                        summary_index: 0,
                        text: text.clone(),
                    });
                    self.emit(done, out);
                    let part_done = wire::StreamEvent::ReasoningSummaryPartDone(SummaryPartEvent {
                        sequence_number: self.next_seq(),
                        item_id: id.clone(),
                        output_index: index,
                        summary_index: 0,
                        part: SummaryText::new(text.clone()),
                    });
                    self.emit(part_done, out);
                    summary.push(SummaryText::new(text));
                }
                reasoning_item(id, summary, encrypted)
            }
            OpenItem::Call {
                id,
                call_id,
                name,
                arguments,
            } => {
                let done = wire::StreamEvent::FunctionCallArgumentsDone(ArgumentsDoneEvent {
                    sequence_number: self.next_seq(),
                    item_id: id.clone(),
                    output_index: index,
                    arguments: arguments.clone(),
                });
                self.emit(done, out);
                call_item(id, status, &call_id, &name, arguments)
            }
        };
        let done = wire::StreamEvent::OutputItemDone(OutputItemEvent {
            sequence_number: self.next_seq(),
            output_index: index,
            item: item.clone(),
        });
        self.emit(done, out);
        self.output.push(item);
    }

    fn text_delta(&mut self, refusal: bool, delta: &str, out: &mut Vec<u8>) {
        self.open_message(out);
        self.open_part(refusal, out);
        let seq = self.next_seq();
        let index = self.index();
        let Some(OpenItem::Message { id, parts, part }) = &mut self.open else {
            return;
        };
        let event = ContentDeltaEvent {
            sequence_number: seq,
            item_id: id.clone(),
            output_index: index,
            content_index: parts.len() as u32,
            delta: delta.to_owned(),
            logprobs: (!refusal).then(Vec::new),
        };
        match part {
            Some(OpenPart::Text(text) | OpenPart::Refusal(text)) => text.push_str(delta),
            None => {}
        }
        let event = if refusal {
            wire::StreamEvent::RefusalDelta(event)
        } else {
            wire::StreamEvent::OutputTextDelta(event)
        };
        self.emit(event, out);
    }

    fn reasoning_delta(&mut self, delta: &str, out: &mut Vec<u8>) {
        self.open_reasoning(out);
        let index = self.index();
        let Some(OpenItem::Reasoning { id, text }) = &mut self.open else {
            return;
        };
        let id = id.clone();
        let opened = text.is_none();
        text.get_or_insert_with(String::new).push_str(delta);
        if opened {
            let added = wire::StreamEvent::ReasoningSummaryPartAdded(SummaryPartEvent {
                sequence_number: self.next_seq(),
                item_id: id.clone(),
                output_index: index,
                summary_index: 0,
                part: SummaryText::new(""),
            });
            self.emit(added, out);
        }
        let event = wire::StreamEvent::ReasoningSummaryTextDelta(SummaryDeltaEvent {
            sequence_number: self.next_seq(),
            item_id: id,
            output_index: index,
            summary_index: 0,
            delta: delta.to_owned(),
        });
        self.emit(event, out);
    }

    fn tool_start(&mut self, index: u32, call_id: &str, name: &str, out: &mut Vec<u8>) {
        if self.calls.contains_key(&index) {
            return;
        }
        self.close_item("completed", None, out);
        let id = item_id("fc", &self.id, self.output.len());
        self.calls.insert(index, self.output.len());
        let added = wire::StreamEvent::OutputItemAdded(OutputItemEvent {
            sequence_number: self.next_seq(),
            output_index: self.index(),
            item: call_item(id.clone(), "in_progress", call_id, name, String::new()),
        });
        self.emit(added, out);
        self.open = Some(OpenItem::Call {
            id,
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: String::new(),
        });
    }

    fn tool_delta(&mut self, index: u32, delta: &str, out: &mut Vec<u8>) {
        let Some(&output_index) = self.calls.get(&index) else {
            return;
        };
        let item_id = if output_index == self.output.len() {
            match &mut self.open {
                Some(OpenItem::Call { id, arguments, .. }) => {
                    arguments.push_str(delta);
                    id.clone()
                }
                _ => return,
            }
        } else {
            match self.output.get_mut(output_index) {
                Some(Item::FunctionCall(call)) => {
                    call.arguments.push_str(delta);
                    call.id.clone().unwrap_or_default()
                }
                _ => return,
            }
        };
        let event = wire::StreamEvent::FunctionCallArgumentsDelta(ArgumentsDeltaEvent {
            sequence_number: self.next_seq(),
            item_id,
            output_index: output_index as u32,
            delta: delta.to_owned(),
        });
        self.emit(event, out);
    }
}

impl EncodeStream for StreamEncoder {
    fn push(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        match event {
            StreamEvent::Start { id, model, created } => {
                if !self.started {
                    if self.id.is_empty() && !id.is_empty() {
                        self.id = response_id(id);
                    }
                    if self.model.is_empty() {
                        self.model.clone_from(model);
                    }
                    if self.created == 0 {
                        self.created = *created;
                    }
                }
                self.ensure_started(out);
            }
            StreamEvent::TextDelta(delta) => {
                self.ensure_started(out);
                if !delta.is_empty() {
                    self.text_delta(false, delta, out);
                }
            }
            StreamEvent::RefusalDelta(delta) => {
                self.ensure_started(out);
                if !delta.is_empty() {
                    self.text_delta(true, delta, out);
                }
            }
            StreamEvent::ReasoningDelta(delta) => {
                self.ensure_started(out);
                if !delta.is_empty() {
                    self.reasoning_delta(delta, out);
                }
            }
            StreamEvent::ReasoningSignature(_) => {}
            StreamEvent::RedactedReasoning(data) => {
                self.ensure_started(out);
                self.open_reasoning(out);
                self.close_item("completed", Some(data.clone()), out);
            }
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => {
                self.ensure_started(out);
                self.tool_start(*index, id, name, out);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                self.ensure_started(out);
                if !arguments.is_empty() {
                    self.tool_delta(*index, arguments, out);
                }
            }
            StreamEvent::Usage(usage) => self.usage = *usage,
            StreamEvent::Finish { reason, .. } => self.finish = Some(*reason),
            StreamEvent::Error(err) => {
                self.ensure_started(out);
                let error = wire::ResponseError {
                    code: Some(response_error_code(err.kind).to_owned()),
                    message: err.message.clone(),
                    ..wire::ResponseError::default()
                };
                let mut response = self.snapshot("failed");
                response.output = self.output.clone();
                response.usage = Some(usage_from_ir(&self.usage));
                response.error = Some(error);
                let failed = wire::StreamEvent::Failed(ResponseEvent {
                    sequence_number: self.next_seq(),
                    response,
                });
                self.emit(failed, out);
                self.ended = true;
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.ended {
            return;
        }
        self.ensure_started(out);
        let incomplete = self.finish.and_then(incomplete_reason);
        let status = if incomplete.is_some() {
            "incomplete"
        } else {
            "completed"
        };
        self.close_item(status, None, out);
        let mut response = self.snapshot(status);
        response.output = std::mem::take(&mut self.output);
        response.usage = Some(usage_from_ir(&self.usage));
        response.incomplete_details = incomplete_details(incomplete);
        let event = ResponseEvent {
            sequence_number: self.next_seq(),
            response,
        };
        let event = if incomplete.is_some() {
            wire::StreamEvent::Incomplete(event)
        } else {
            wire::StreamEvent::Completed(event)
        };
        self.emit(event, out);
        self.ended = true;
    }
}
