//! AWS Bedrock (upstream only): the Converse API <-> IR, the ConverseStream
//! decoder, Bedrock error bodies, and helpers for Anthropic models called
//! through `InvokeModel`.
//!
//! Gateway contract:
//! - Request: `POST /model/{modelId}/converse` with [`request_from_ir`]'s
//!   body, or `/converse-stream` when `req.stream` (the body is the same;
//!   the model id and streaming live in the URL). Responses carry no id or
//!   model: the gateway fills them (e.g. from `x-amzn-RequestId`).
//! - Images and documents must be inline: an `http(s)` URL is
//!   [`ConvertError::Unsupported`], so the gateway fetches URLs and replaces
//!   them with base64 data *before* converting. `s3://` URLs are sent as
//!   `s3Location`.
//! - Streaming: the response body is an AWS event stream, not SSE. Feed body
//!   chunks to [`StreamDecoder::push_bytes`] (or already decoded messages to
//!   [`StreamDecoder::push_message`]) and call [`StreamDecoder::finish`] at
//!   the end of the body.
//! - Errors: [`parse_error`] reads the JSON body (`{"message":..}`); the
//!   exception name is in the `x-amzn-ErrorType` header, which the gateway
//!   passes to [`parse_error_typed`] when it has it.
//!
//! What Converse cannot say, and what happens to it:
//! - `n > 1`, `tool_choice: none` when the conversation already holds tool
//!   calls (Bedrock then requires `toolConfig`, which cannot forbid calls),
//!   http(s) media URLs and media types Bedrock lacks: `Unsupported`.
//! - `seed`, `presence_penalty`, `frequency_penalty`, `user`,
//!   `parallel_tool_calls`, image `detail`, Gemini thought signatures on
//!   tool calls: dropped (sampling hints and metadata; no Converse field).
//! - `top_k` and reasoning go to `additionalModelRequestFields` under the
//!   names Claude on Bedrock reads (`top_k`, `thinking`); other model
//!   families ignore or reject them as Bedrock decides.
//! - System messages after the first non-system message are appended to
//!   the top-level `system` list (Converse has one system prompt).
//! - Consecutive messages of the same role are merged (tool results become
//!   `user` content), and empty text blocks are skipped, because Bedrock
//!   rejects both.
//! - A conversation holding tool calls but no `tools` is sent as it is;
//!   Bedrock answers 400 (it requires `toolConfig` then).

use serde_json::{Map, Value, json};

use crate::body::{Edit, ObjectView, json_string, rewrite};
use crate::convert::ConvertError;
use crate::eventstream::{self, EventStreamError};
use crate::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, MediaSource, Part,
    ResponseFormat, Role, StreamEvent, ToolChoice, Usage,
};
use crate::sse::SseEvent;
use crate::wire::bedrock as wire;

/// `anthropic_version` for Claude models called through `InvokeModel`.
pub const ANTHROPIC_BEDROCK_VERSION: &str = "bedrock-2023-05-31";

/// Thinking budgets used when the client gave only an effort level (Claude
/// on Bedrock needs a budget; 1024 is its minimum).
fn budget_for_effort(effort: &str) -> Option<u64> {
    match effort {
        "minimal" => Some(1024),
        "low" => Some(2048),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

/// The Converse request body for `req`.
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(ConvertError::Unsupported("n > 1".into()));
    }
    let mut out = wire::ConverseRequest::default();
    let mut docs = DocNamer::default();

    for part in &req.system {
        push_system(&mut out.system, part)?;
    }
    let mut has_tool_blocks = false;
    for msg in &req.messages {
        let role = match msg.role {
            Role::System => {
                // Converse has one system prompt; later system messages join it.
                for part in &msg.content {
                    push_system(&mut out.system, part)?;
                }
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
        };
        let mut blocks = Vec::new();
        for part in &msg.content {
            has_tool_blocks |= matches!(part, Part::ToolCall { .. } | Part::ToolResult { .. });
            push_content(&mut blocks, part, &mut docs)?;
        }
        if blocks.is_empty() {
            continue;
        }
        match out.messages.last_mut() {
            Some(prev) if prev.role == role => prev.content.extend(blocks),
            _ => out.messages.push(wire::Message {
                role: role.to_owned(),
                content: blocks,
            }),
        }
    }

    let inference = wire::InferenceConfiguration {
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop_sequences: req.stop.clone(),
    };
    if inference != wire::InferenceConfiguration::default() {
        out.inference_config = Some(inference);
    }

    out.tool_config = tool_config(req, has_tool_blocks)?;

    let mut additional = Map::new();
    if let Some(k) = req.top_k {
        additional.insert("top_k".into(), json!(k));
    }
    if let Some(thinking) = thinking(req) {
        additional.insert("thinking".into(), thinking);
    }
    if !additional.is_empty() {
        out.additional_model_request_fields = Some(additional);
    }

    out.output_config = output_config(req.response_format.as_ref())?;
    Ok(serde_json::to_vec(&out)?)
}

fn tool_config(
    req: &ChatRequest,
    has_tool_blocks: bool,
) -> Result<Option<wire::ToolConfiguration>, ConvertError> {
    if req.tools.is_empty() {
        return Ok(None);
    }
    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::None) if has_tool_blocks => {
            return Err(ConvertError::Unsupported(
                "tool_choice `none` in a conversation that contains tool calls".into(),
            ));
        }
        // Without a toolConfig the model cannot call tools: exactly `none`.
        Some(ToolChoice::None) => return Ok(None),
        Some(ToolChoice::Auto) => Some(wire::ToolChoice {
            auto: Some(Map::new()),
            ..wire::ToolChoice::default()
        }),
        Some(ToolChoice::Required) => Some(wire::ToolChoice {
            any: Some(Map::new()),
            ..wire::ToolChoice::default()
        }),
        Some(ToolChoice::Named(name)) => Some(wire::ToolChoice {
            tool: Some(wire::SpecificToolChoice { name: name.clone() }),
            ..wire::ToolChoice::default()
        }),
    };
    let mut tools = Vec::with_capacity(req.tools.len());
    for tool in &req.tools {
        tools.push(wire::Tool {
            tool_spec: Some(wire::ToolSpecification {
                name: tool.name.clone(),
                description: tool.description.clone().filter(|d| !d.is_empty()),
                input_schema: wire::ToolInputSchema {
                    json: tool.parameters.clone(),
                },
                strict: tool.strict,
            }),
            ..wire::Tool::default()
        });
        if let Some(cc) = &tool.cache_control {
            tools.push(wire::Tool {
                cache_point: Some(cache_point(cc)),
                ..wire::Tool::default()
            });
        }
    }
    Ok(Some(wire::ToolConfiguration {
        tools,
        tool_choice: choice,
    }))
}

/// Claude's `thinking` parameter, as Bedrock passes it through.
fn thinking(req: &ChatRequest) -> Option<Value> {
    let r = req.reasoning.as_ref()?;
    if r.enabled == Some(false) {
        return Some(json!({"type": "disabled"}));
    }
    let budget = match r.budget_tokens {
        Some(b) => b,
        None => {
            let derived = r.effort.as_deref().and_then(budget_for_effort);
            let derived = match (derived, r.enabled) {
                (Some(b), _) => b,
                (None, Some(true)) => 1024,
                (None, _) => return None,
            };
            // Claude requires budget < max_tokens.
            match req.max_tokens {
                Some(max) if max <= derived => max.saturating_sub(1).max(1024),
                _ => derived,
            }
        }
    };
    Some(json!({"type": "enabled", "budget_tokens": budget}))
}

fn output_config(
    format: Option<&ResponseFormat>,
) -> Result<Option<wire::OutputConfig>, ConvertError> {
    let (schema, name) = match format {
        None | Some(ResponseFormat::Text) => return Ok(None),
        // JSON mode is a schema that admits any object.
        Some(ResponseFormat::JsonObject) => (json!({"type": "object"}), None),
        Some(ResponseFormat::JsonSchema { name, schema, .. }) => {
            (schema.clone(), Some(name.clone()).filter(|n| !n.is_empty()))
        }
    };
    Ok(Some(wire::OutputConfig {
        text_format: Some(wire::OutputFormat {
            r#type: "json_schema".into(),
            structure: wire::OutputFormatStructure {
                json_schema: Some(wire::JsonSchemaDefinition {
                    schema: serde_json::to_string(&schema)?,
                    name,
                    description: None,
                }),
            },
        }),
    }))
}

fn push_system(out: &mut Vec<wire::SystemContentBlock>, part: &Part) -> Result<(), ConvertError> {
    let Part::Text {
        text,
        cache_control,
    } = part
    else {
        return Err(ConvertError::Unsupported(
            "non-text system content on Bedrock".into(),
        ));
    };
    if !text.is_empty() {
        out.push(wire::SystemContentBlock {
            text: Some(text.clone()),
            ..wire::SystemContentBlock::default()
        });
    }
    if let Some(cc) = cache_control {
        out.push(wire::SystemContentBlock {
            cache_point: Some(cache_point(cc)),
            ..wire::SystemContentBlock::default()
        });
    }
    Ok(())
}

/// A cache point equivalent to an Anthropic `cache_control` marker.
fn cache_point(cache_control: &Value) -> wire::CachePointBlock {
    let ttl = cache_control
        .get("ttl")
        .and_then(Value::as_str)
        .filter(|t| matches!(*t, "5m" | "1h"))
        .map(str::to_owned);
    wire::CachePointBlock {
        r#type: "default".into(),
        ttl,
    }
}

fn push_content(
    out: &mut Vec<wire::ContentBlock>,
    part: &Part,
    docs: &mut DocNamer,
) -> Result<(), ConvertError> {
    let cache = match part {
        Part::Text {
            text,
            cache_control,
        } => {
            if !text.is_empty() {
                out.push(wire::ContentBlock {
                    text: Some(text.clone()),
                    ..wire::ContentBlock::default()
                });
            }
            cache_control
        }
        Part::Image {
            source,
            cache_control,
            ..
        } => {
            out.push(wire::ContentBlock {
                image: Some(image_block(source)?),
                ..wire::ContentBlock::default()
            });
            cache_control
        }
        Part::File {
            source,
            filename,
            cache_control,
        } => {
            out.push(wire::ContentBlock {
                document: Some(document_block(source, filename.as_deref(), docs)?),
                ..wire::ContentBlock::default()
            });
            cache_control
        }
        Part::Audio { data, format } => {
            out.push(wire::ContentBlock {
                audio: Some(wire::AudioBlock {
                    format: audio_format(format)?,
                    source: wire::MediaSource {
                        bytes: Some(data.clone()),
                        s3_location: None,
                    },
                }),
                ..wire::ContentBlock::default()
            });
            &None
        }
        Part::ToolCall {
            id,
            name,
            arguments,
            ..
        } => {
            out.push(wire::ContentBlock {
                tool_use: Some(wire::ToolUseBlock {
                    tool_use_id: id.clone(),
                    name: name.clone(),
                    input: parse_arguments(arguments)?,
                }),
                ..wire::ContentBlock::default()
            });
            &None
        }
        Part::ToolResult {
            call_id,
            content,
            is_error,
            cache_control,
            ..
        } => {
            let mut blocks = Vec::with_capacity(content.len());
            for inner in content {
                blocks.push(tool_result_content(inner, docs)?);
            }
            out.push(wire::ContentBlock {
                tool_result: Some(wire::ToolResultBlock {
                    tool_use_id: call_id.clone(),
                    content: blocks,
                    status: is_error.then(|| "error".to_owned()),
                }),
                ..wire::ContentBlock::default()
            });
            cache_control
        }
        Part::Reasoning { text, signature } => {
            out.push(wire::ContentBlock {
                reasoning_content: Some(wire::ReasoningContentBlock {
                    reasoning_text: Some(wire::ReasoningTextBlock {
                        text: text.clone(),
                        signature: signature.clone(),
                    }),
                    redacted_content: None,
                }),
                ..wire::ContentBlock::default()
            });
            &None
        }
        Part::RedactedReasoning { data } => {
            out.push(wire::ContentBlock {
                reasoning_content: Some(wire::ReasoningContentBlock {
                    reasoning_text: None,
                    redacted_content: Some(data.clone()),
                }),
                ..wire::ContentBlock::default()
            });
            &None
        }
    };
    if let Some(cc) = cache {
        out.push(wire::ContentBlock {
            cache_point: Some(cache_point(cc)),
            ..wire::ContentBlock::default()
        });
    }
    Ok(())
}

fn tool_result_content(
    part: &Part,
    docs: &mut DocNamer,
) -> Result<wire::ToolResultContentBlock, ConvertError> {
    let mut block = wire::ToolResultContentBlock::default();
    match part {
        Part::Text { text, .. } => block.text = Some(text.clone()),
        Part::Image { source, .. } => block.image = Some(image_block(source)?),
        Part::File {
            source, filename, ..
        } => block.document = Some(document_block(source, filename.as_deref(), docs)?),
        _ => {
            return Err(ConvertError::Unsupported(
                "tool results other than text, images and documents on Bedrock".into(),
            ));
        }
    }
    Ok(block)
}

/// Tool-call arguments as a JSON document; empty text means `{}`.
fn parse_arguments(arguments: &str) -> Result<Value, ConvertError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_str(arguments)
        .map_err(|e| ConvertError::invalid("tool_calls.arguments", format!("not valid JSON: {e}")))
}

fn media_source(
    source: &MediaSource,
    what: &str,
) -> Result<(String, wire::MediaSource), ConvertError> {
    match source {
        MediaSource::Base64 { media_type, data } => Ok((
            media_type.to_ascii_lowercase(),
            wire::MediaSource {
                bytes: Some(data.clone()),
                s3_location: None,
            },
        )),
        MediaSource::Url { url } if url.starts_with("s3://") => Ok((
            String::new(),
            wire::MediaSource {
                bytes: None,
                s3_location: Some(wire::S3Location {
                    uri: url.clone(),
                    bucket_owner: None,
                }),
            },
        )),
        MediaSource::Url { .. } => Err(ConvertError::Unsupported(format!(
            "{what} URLs (Bedrock needs the bytes inline; fetch the URL first)"
        ))),
    }
}

fn image_block(source: &MediaSource) -> Result<wire::ImageBlock, ConvertError> {
    let (media_type, src) = media_source(source, "image")?;
    let format = match media_type.as_str() {
        "image/png" => "png",
        "image/jpeg" | "image/jpg" => "jpeg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        // An S3 object has no media type here: guess from the key.
        "" => match extension(source).as_deref() {
            Some("png") => "png",
            Some("jpg" | "jpeg") => "jpeg",
            Some("gif") => "gif",
            Some("webp") => "webp",
            _ => {
                return Err(ConvertError::Unsupported(
                    "S3 images without a png/jpeg/gif/webp extension".into(),
                ));
            }
        },
        other => {
            return Err(ConvertError::Unsupported(format!(
                "image type `{other}` on Bedrock"
            )));
        }
    };
    Ok(wire::ImageBlock {
        format: format.into(),
        source: src,
    })
}

fn extension(source: &MediaSource) -> Option<String> {
    let MediaSource::Url { url } = source else {
        return None;
    };
    let (_, ext) = url.rsplit_once('.')?;
    Some(ext.to_ascii_lowercase())
}

const DOCUMENT_FORMATS: &[(&str, &str)] = &[
    ("application/pdf", "pdf"),
    ("text/csv", "csv"),
    ("application/msword", "doc"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    ("application/vnd.ms-excel", "xls"),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    ("text/html", "html"),
    ("text/plain", "txt"),
    ("text/markdown", "md"),
];

fn document_block(
    source: &MediaSource,
    filename: Option<&str>,
    docs: &mut DocNamer,
) -> Result<wire::DocumentBlock, ConvertError> {
    let (media_type, src) = media_source(source, "document")?;
    let format = if media_type.is_empty() {
        let ext = extension(source);
        DOCUMENT_FORMATS
            .iter()
            .find(|(_, f)| Some(*f) == ext.as_deref())
            .map(|(_, f)| *f)
    } else {
        DOCUMENT_FORMATS
            .iter()
            .find(|(m, _)| *m == media_type)
            .map(|(_, f)| *f)
    };
    let Some(format) = format else {
        return Err(ConvertError::Unsupported(format!(
            "document type `{media_type}` on Bedrock"
        )));
    };
    Ok(wire::DocumentBlock {
        format: Some(format.into()),
        name: docs.name(filename),
        source: src,
    })
}

/// Bedrock document names: alphanumerics, single spaces, hyphens,
/// parentheses and square brackets, unique within a request.
#[derive(Default)]
struct DocNamer {
    used: Vec<String>,
}

impl DocNamer {
    fn name(&mut self, filename: Option<&str>) -> String {
        let stem = filename
            .map(|f| f.rsplit_once('.').map_or(f, |(stem, _)| stem))
            .unwrap_or_default();
        let mut clean = String::with_capacity(stem.len());
        for c in stem.chars() {
            let c = if c.is_ascii_alphanumeric() || matches!(c, '-' | '(' | ')' | '[' | ']') {
                c
            } else if c.is_whitespace() {
                ' '
            } else {
                '-'
            };
            if !(c == ' ' && clean.ends_with(' ')) {
                clean.push(c);
            }
        }
        let clean = clean.trim().to_owned();
        let base = if clean.is_empty() {
            "document".to_owned()
        } else {
            clean
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.used.contains(&name) {
            name = format!("{base} ({n})");
            n += 1;
        }
        self.used.push(name.clone());
        name
    }
}

fn audio_format(format: &str) -> Result<String, ConvertError> {
    const FORMATS: &[&str] = &[
        "mp3", "opus", "wav", "aac", "flac", "mp4", "ogg", "mkv", "mka", "x-aac", "m4a", "mpeg",
        "mpga", "pcm", "webm",
    ];
    let f = format.to_ascii_lowercase();
    if FORMATS.contains(&f.as_str()) {
        Ok(f)
    } else {
        Err(ConvertError::Unsupported(format!(
            "audio format `{format}` on Bedrock"
        )))
    }
}

/// Converse `stopReason` in IR terms.
fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// IR usage from Converse `usage`. Bedrock counts cache reads and writes
/// apart from `inputTokens` (`totalTokens` includes them); the IR counts
/// them in. A `totalTokens` equal to input + output means the cache counts
/// were already included, and they are not added twice.
fn usage(u: &wire::TokenUsage) -> Usage {
    let read = u.cache_read_input_tokens.unwrap_or(0);
    let write = u.cache_write_input_tokens.unwrap_or(0);
    let included = read + write > 0 && u.total_tokens == u.input_tokens + u.output_tokens;
    Usage {
        input_tokens: if included {
            u.input_tokens
        } else {
            u.input_tokens + read + write
        },
        output_tokens: u.output_tokens,
        cache_read_tokens: read,
        cache_write_tokens: write,
        reasoning_tokens: 0,
    }
}

/// A Converse response body in IR form (`id`, `model` empty; see the
/// module docs).
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let resp: wire::ConverseResponse = serde_json::from_slice(body)?;
    let mut content = Vec::new();
    if let Some(msg) = &resp.output.message {
        for block in &msg.content {
            content_to_ir(block, &mut content);
        }
    }
    let stop_sequence = resp
        .additional_model_response_fields
        .as_ref()
        .and_then(|f| f.get("stop_sequence"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(ChatResponse {
        content,
        finish_reason: finish_reason(&resp.stop_reason),
        stop_sequence,
        usage: usage(&resp.usage),
        ..ChatResponse::default()
    })
}

fn content_to_ir(block: &wire::ContentBlock, out: &mut Vec<Part>) {
    if let Some(r) = &block.reasoning_content {
        if let Some(t) = &r.reasoning_text {
            out.push(Part::Reasoning {
                text: t.text.clone(),
                signature: t.signature.clone(),
            });
        }
        if let Some(data) = &r.redacted_content {
            out.push(Part::RedactedReasoning { data: data.clone() });
        }
    }
    if let Some(text) = &block.text {
        out.push(Part::text(text.clone()));
    }
    if let Some(img) = &block.image
        && let Some(data) = &img.source.bytes
    {
        out.push(Part::Image {
            source: MediaSource::Base64 {
                media_type: format!("image/{}", img.format),
                data: data.clone(),
            },
            detail: None,
            cache_control: None,
        });
    }
    if let Some(tu) = &block.tool_use {
        out.push(Part::ToolCall {
            id: tu.tool_use_id.clone(),
            name: tu.name.clone(),
            arguments: tu.input.to_string(),
            signature: None,
        });
    }
}

/// Converse-stream decoder: AWS event-stream messages -> IR events.
///
/// `Start` carries an empty id and model (ConverseStream has neither; the
/// client encoder's context supplies them). Tool calls are numbered in order
/// of their `contentBlockStart`, whatever their `contentBlockIndex`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    frames: eventstream::Decoder,
    started: bool,
    finished: bool,
    failed: bool,
    /// `(contentBlockIndex, IR tool index)` of the tool-use blocks seen.
    tools: Vec<(u32, u32)>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    /// A decoder whose frame reader rejects messages above
    /// `max_message_len` bytes.
    pub fn with_max_message_len(max_message_len: usize) -> Self {
        StreamDecoder {
            frames: eventstream::Decoder::new(max_message_len),
            ..StreamDecoder::default()
        }
    }

    /// Consumes a chunk of the raw response body. A framing or checksum
    /// error is returned (and the stream cannot continue).
    pub fn push_bytes(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ConvertError> {
        self.frames.push(chunk);
        while let Some(msg) = self.frames.next_message() {
            let msg = msg.map_err(|e| {
                // Message boundaries are lost: `finish` must not invent a
                // normal ending.
                self.failed = true;
                framing_error(e)
            })?;
            self.push_message(&msg, out)?;
        }
        Ok(())
    }

    /// Consumes one decoded event-stream message: an `event` (by its
    /// `:event-type`), an `exception` (by `:exception-type`; becomes
    /// [`StreamEvent::Error`]) or an `error` (`:error-code`,
    /// `:error-message`).
    pub fn push_message(
        &mut self,
        msg: &eventstream::Message,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ConvertError> {
        match msg.header_str(":message-type").unwrap_or("event") {
            "exception" => {
                let kind = msg.header_str(":exception-type").unwrap_or("exception");
                self.fail(exception_error(kind, &msg.payload), out);
                Ok(())
            }
            "error" => {
                let code = msg.header_str(":error-code").unwrap_or("error");
                let message = msg.header_str(":error-message").unwrap_or(code);
                self.fail(
                    ApiError {
                        status: 500,
                        kind: ErrorKind::Api,
                        message: format!("{code}: {message}"),
                    },
                    out,
                );
                Ok(())
            }
            _ => {
                let event_type = msg.header_str(":event-type").unwrap_or_default();
                self.push_event(event_type, &msg.payload, out)
            }
        }
    }

    fn push_event(
        &mut self,
        event_type: &str,
        payload: &[u8],
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), ConvertError> {
        match event_type {
            "messageStart" => {
                let _: wire::MessageStartEvent = parse(payload, event_type)?;
                self.start(out);
            }
            "contentBlockStart" => {
                let ev: wire::ContentBlockStartEvent = parse(payload, event_type)?;
                self.start(out);
                if let Some(tu) = ev.start.tool_use {
                    let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                    self.tools.push((ev.content_block_index, index));
                    out.push(StreamEvent::ToolCallStart {
                        index,
                        id: tu.tool_use_id,
                        name: tu.name,
                        signature: None,
                    });
                }
            }
            "contentBlockDelta" => {
                let ev: wire::ContentBlockDeltaEvent = parse(payload, event_type)?;
                self.start(out);
                let d = ev.delta;
                if let Some(text) = d.text
                    && !text.is_empty()
                {
                    out.push(StreamEvent::TextDelta(text));
                }
                if let Some(tu) = d.tool_use {
                    let Some(&(_, index)) = self
                        .tools
                        .iter()
                        .find(|(block, _)| *block == ev.content_block_index)
                    else {
                        return Err(ConvertError::invalid(
                            "contentBlockDelta.toolUse",
                            format!(
                                "no tool use started at content block {}",
                                ev.content_block_index
                            ),
                        ));
                    };
                    if !tu.input.is_empty() {
                        out.push(StreamEvent::ToolCallDelta {
                            index,
                            arguments: tu.input,
                        });
                    }
                }
                if let Some(r) = d.reasoning_content {
                    if let Some(text) = r.text
                        && !text.is_empty()
                    {
                        out.push(StreamEvent::ReasoningDelta(text));
                    }
                    if let Some(sig) = r.signature {
                        out.push(StreamEvent::ReasoningSignature(sig));
                    }
                    if let Some(data) = r.redacted_content {
                        out.push(StreamEvent::RedactedReasoning(data));
                    }
                }
            }
            "messageStop" => {
                let ev: wire::MessageStopEvent = parse(payload, event_type)?;
                self.start(out);
                let stop_sequence = ev
                    .additional_model_response_fields
                    .as_ref()
                    .and_then(|f| f.get("stop_sequence"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.finished = true;
                out.push(StreamEvent::Finish {
                    reason: finish_reason(&ev.stop_reason),
                    stop_sequence,
                });
            }
            "metadata" => {
                let ev: wire::MetadataEvent = parse(payload, event_type)?;
                self.start(out);
                out.push(StreamEvent::Usage(usage(&ev.usage)));
            }
            // `contentBlockStop`, and event types added after this was written.
            _ => {}
        }
        Ok(())
    }

    /// The body ended: a cut-off frame becomes an error; a stream without
    /// `messageStop` gets a `Finish`.
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if let Err(e) = self.frames.finish() {
            self.fail(
                ApiError {
                    status: 502,
                    kind: ErrorKind::Api,
                    message: format!("upstream stream ended early: {e}"),
                },
                out,
            );
        }
        if !self.finished && !self.failed {
            self.start(out);
            self.finished = true;
            out.push(StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None,
            });
        }
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                created: 0,
            });
        }
    }

    fn fail(&mut self, err: ApiError, out: &mut Vec<StreamEvent>) {
        if !self.failed {
            self.failed = true;
            out.push(StreamEvent::Error(err));
        }
    }
}

fn parse<'a, T: serde::Deserialize<'a>>(payload: &'a [u8], event: &str) -> Result<T, ConvertError> {
    serde_json::from_slice(payload)
        .map_err(|e| ConvertError::invalid(event, format!("invalid event payload: {e}")))
}

fn framing_error(e: EventStreamError) -> ConvertError {
    ConvertError::invalid("event stream", e.to_string())
}

/// Kind and client status for a Bedrock exception name (`ThrottlingException`,
/// or the stream's `throttlingException`), `None` for unknown names.
fn exception_kind(name: &str) -> Option<(ErrorKind, u16)> {
    // `x-amzn-ErrorType` may carry a namespace and a URL suffix.
    let name = name.split(':').next().unwrap_or(name);
    let name = name.rsplit('#').next().unwrap_or(name);
    let kind = match name.to_ascii_lowercase().as_str() {
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            (ErrorKind::RateLimit, 429)
        }
        "validationexception" => (ErrorKind::InvalidRequest, 400),
        "accessdeniedexception" => (ErrorKind::Permission, 403),
        "unrecognizedclientexception"
        | "expiredtokenexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "missingauthenticationtokenexception" => (ErrorKind::Authentication, 401),
        "resourcenotfoundexception" => (ErrorKind::NotFound, 404),
        "modeltimeoutexception" => (ErrorKind::Timeout, 504),
        "serviceunavailableexception" | "modelnotreadyexception" => (ErrorKind::Overloaded, 503),
        "internalserverexception" => (ErrorKind::Api, 500),
        "modelerrorexception" | "modelstreamerrorexception" => (ErrorKind::Api, 502),
        _ => return None,
    };
    Some(kind)
}

fn error_message(body: &[u8]) -> (String, Option<String>) {
    match serde_json::from_slice::<wire::ErrorBody>(body) {
        Ok(b) => {
            let mut message = b.message.unwrap_or_default();
            if let Some(orig) = b.original_message.filter(|m| !message.contains(m.as_str())) {
                if message.is_empty() {
                    message = orig;
                } else {
                    message = format!("{message} ({orig})");
                }
            }
            (message, b.error_type)
        }
        Err(_) => (String::from_utf8_lossy(body).trim().to_owned(), None),
    }
}

fn exception_error(exception_type: &str, payload: &[u8]) -> ApiError {
    let (message, _) = error_message(payload);
    let (kind, status) = exception_kind(exception_type).unwrap_or((ErrorKind::Api, 500));
    ApiError {
        status,
        kind,
        message: if message.is_empty() {
            exception_type.to_owned()
        } else {
            message
        },
    }
}

/// An error response body (`{"message":..}`), keeping the upstream status.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    parse_error_typed(status, None, body)
}

/// Like [`parse_error`], with the `x-amzn-ErrorType` header value (e.g.
/// `ThrottlingException:http://internal.amazon.com/...`), which names the
/// error when the status alone is ambiguous (a 400 may be a validation
/// error or an exhausted quota).
pub fn parse_error_typed(status: u16, error_type: Option<&str>, body: &[u8]) -> ApiError {
    let (message, body_type) = error_message(body);
    let kind = error_type
        .or(body_type.as_deref())
        .and_then(exception_kind)
        .map_or_else(|| ErrorKind::from_status(status), |(kind, _)| kind);
    ApiError {
        status,
        kind,
        message: if message.is_empty() {
            format!("Bedrock returned HTTP {status}")
        } else {
            message
        },
    }
}

/// The `InvokeModel` body for an Anthropic model: the Anthropic Messages
/// body with `anthropic_version` set and `model` and `stream` removed (the
/// model and streaming are in the URL: `/model/{id}/invoke` or
/// `/invoke-with-response-stream`). Beta flags go in the body as
/// `anthropic_beta`, which the Anthropic body may already carry.
pub fn anthropic_invoke_body(anthropic_body: &[u8]) -> Result<Vec<u8>, ConvertError> {
    let view = ObjectView::parse(anthropic_body).map_err(|e| ConvertError::Json(e.to_string()))?;
    let version = json_string(ANTHROPIC_BEDROCK_VERSION);
    Ok(rewrite(
        anthropic_body,
        &view,
        &[
            Edit::Remove { key: "model" },
            Edit::Remove { key: "stream" },
            Edit::Set {
                key: "anthropic_version",
                raw_json: &version,
            },
        ],
    ))
}

/// [`anthropic_invoke_body`] of the Anthropic request for `req`. The
/// Anthropic encoder is passed in (the gateway gives
/// `convert::anthropic::request_from_ir`) so this module does not depend on
/// it.
pub fn invoke_body_from_ir(
    req: &ChatRequest,
    anthropic_request_from_ir: impl FnOnce(&ChatRequest) -> Result<Vec<u8>, ConvertError>,
) -> Result<Vec<u8>, ConvertError> {
    anthropic_invoke_body(&anthropic_request_from_ir(req)?)
}

/// The Anthropic stream event JSON inside an `InvokeModelWithResponseStream`
/// `chunk` payload (`{"bytes":"<base64>"}`).
pub fn anthropic_invoke_chunk(payload: &[u8]) -> Result<Vec<u8>, ConvertError> {
    #[derive(serde::Deserialize)]
    struct Chunk {
        bytes: String,
    }
    let chunk: Chunk = serde_json::from_slice(payload)?;
    crate::base64::decode(&chunk.bytes)
        .ok_or_else(|| ConvertError::invalid("chunk.bytes", "not valid base64"))
}

/// The `chunk` payload wrapping one Anthropic event JSON (the mock
/// upstream's side of [`anthropic_invoke_chunk`]).
pub fn anthropic_invoke_chunk_payload(event_json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(event_json.len() * 4 / 3 + 16);
    out.extend_from_slice(b"{\"bytes\":\"");
    out.extend_from_slice(crate::base64::encode(event_json).as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

/// What one `InvokeModelWithResponseStream` message means.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeStreamItem {
    /// An Anthropic stream event, shaped as the SSE event the Anthropic
    /// decoder expects (`event` = the JSON's `type`).
    Event(SseEvent),
    /// An in-stream exception.
    Error(ApiError),
}

/// Interprets one decoded `InvokeModelWithResponseStream` message for an
/// Anthropic model. `None` for message kinds without meaning here.
pub fn anthropic_invoke_event(
    msg: &eventstream::Message,
) -> Result<Option<InvokeStreamItem>, ConvertError> {
    match msg.header_str(":message-type").unwrap_or("event") {
        "exception" => {
            let kind = msg.header_str(":exception-type").unwrap_or("exception");
            Ok(Some(InvokeStreamItem::Error(exception_error(
                kind,
                &msg.payload,
            ))))
        }
        "error" => {
            let code = msg.header_str(":error-code").unwrap_or("error");
            let message = msg.header_str(":error-message").unwrap_or(code);
            Ok(Some(InvokeStreamItem::Error(ApiError {
                status: 500,
                kind: ErrorKind::Api,
                message: format!("{code}: {message}"),
            })))
        }
        _ if msg.header_str(":event-type") == Some("chunk") => {
            let inner = anthropic_invoke_chunk(&msg.payload)?;
            let data = String::from_utf8(inner)
                .map_err(|_| ConvertError::invalid("chunk.bytes", "not UTF-8"))?;
            let event = serde_json::from_str::<Value>(&data)?
                .get("type")
                .and_then(Value::as_str)
                .map(str::to_owned);
            Ok(Some(InvokeStreamItem::Event(SseEvent {
                event,
                data,
                id: None,
                retry: None,
            })))
        }
        _ => Ok(None),
    }
}
