//! Anthropic Messages API wire types (`POST /v1/messages`, API version
//! `2023-06-01`), named and shaped like the official SDK's types.
//!
//! Objects keep unknown fields in `extra`. Content blocks, deltas and tools
//! the gateway has no use for (server tools, `server_tool_use`,
//! `web_search_tool_result`, `search_result`, ...) are kept as raw JSON
//! ([`ContentBlock::Other`], [`Tool::Server`], [`BlockDelta::Other`]) so a
//! newer API revision never makes a body unreadable.
//! `cache_control` markers are kept verbatim as JSON values.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// `POST /v1/messages` body (`MessageCreateParams`). Also reads
/// `/v1/messages/count_tokens` bodies, which omit `max_tokens`.
///
/// `temperature`/`top_p`/`top_k` are stable-API parameters that newer models
/// (Claude Opus 4.7 and later) reject; they stay typed here because older
/// models and compatible vendors accept them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    pub messages: Vec<MessageParam>,
    /// Required by the API for `/v1/messages`; absent in count-tokens bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemPrompt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<ThinkingConfig>,
    /// `{effort, format}`: effort level and structured-output schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<OutputConfig>,
    /// `service_tier`, `container`, `mcp_servers`, top-level `cache_control`,
    /// `context_management`, `inference_geo`, `speed`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `system`: a string or an array of text blocks (which can carry
/// `cache_control`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SystemPrompt {
    Text(String),
    Blocks(Vec<SystemBlock>),
}

/// A `system` block; only text blocks are allowed there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SystemBlock {
    Text(TextBlock),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// Mid-conversation system message (recent API revisions only).
    System,
}

/// One input message (`MessageParam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageParam {
    pub role: Role,
    pub content: MessageContent,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A string is shorthand for one text block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

/// A content block, in requests and responses alike.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentBlock {
    Text(TextBlock),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
    /// Any other block type (server tool blocks, `search_result`,
    /// `container_upload`, ...), kept verbatim including its `type`.
    Other(Value),
}

impl ContentBlock {
    /// The block's `type` tag.
    pub fn type_name(&self) -> &str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Image(_) => "image",
            ContentBlock::Document(_) => "document",
            ContentBlock::ToolUse(_) => "tool_use",
            ContentBlock::ToolResult(_) => "tool_result",
            ContentBlock::Thinking(_) => "thinking",
            ContentBlock::RedactedThinking(_) => "redacted_thinking",
            ContentBlock::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownBlockRef<'a> {
    Text(&'a TextBlock),
    Image(&'a ImageBlock),
    Document(&'a DocumentBlock),
    ToolUse(&'a ToolUseBlock),
    ToolResult(&'a ToolResultBlock),
    Thinking(&'a ThinkingBlock),
    RedactedThinking(&'a RedactedThinkingBlock),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum KnownBlock {
    Text(TextBlock),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    Thinking(ThinkingBlock),
    RedactedThinking(RedactedThinkingBlock),
}

impl Serialize for ContentBlock {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentBlock::Text(b) => KnownBlockRef::Text(b).serialize(s),
            ContentBlock::Image(b) => KnownBlockRef::Image(b).serialize(s),
            ContentBlock::Document(b) => KnownBlockRef::Document(b).serialize(s),
            ContentBlock::ToolUse(b) => KnownBlockRef::ToolUse(b).serialize(s),
            ContentBlock::ToolResult(b) => KnownBlockRef::ToolResult(b).serialize(s),
            ContentBlock::Thinking(b) => KnownBlockRef::Thinking(b).serialize(s),
            ContentBlock::RedactedThinking(b) => KnownBlockRef::RedactedThinking(b).serialize(s),
            ContentBlock::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ContentBlock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let known = matches!(
            value.get("type").and_then(Value::as_str),
            Some(
                "text"
                    | "image"
                    | "document"
                    | "tool_use"
                    | "tool_result"
                    | "thinking"
                    | "redacted_thinking"
            )
        );
        if !known {
            return Ok(ContentBlock::Other(value));
        }
        let block = serde_json::from_value::<KnownBlock>(value).map_err(D::Error::custom)?;
        Ok(match block {
            KnownBlock::Text(b) => ContentBlock::Text(b),
            KnownBlock::Image(b) => ContentBlock::Image(b),
            KnownBlock::Document(b) => ContentBlock::Document(b),
            KnownBlock::ToolUse(b) => ContentBlock::ToolUse(b),
            KnownBlock::ToolResult(b) => ContentBlock::ToolResult(b),
            KnownBlock::Thinking(b) => ContentBlock::Thinking(b),
            KnownBlock::RedactedThinking(b) => ContentBlock::RedactedThinking(b),
        })
    }
}

/// `{"type":"text"}`. `citations` (responses, and documents cited back in
/// requests) travel in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextBlock {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TextBlock {
    pub fn new(text: impl Into<String>) -> Self {
        TextBlock {
            text: text.into(),
            ..TextBlock::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageBlock {
    pub source: ImageSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ImageSource {
    /// `image/jpeg`, `image/png`, `image/gif` or `image/webp`.
    Base64 {
        media_type: String,
        data: String,
    },
    Url {
        url: String,
    },
    /// An uploaded file (Files API).
    File {
        file_id: String,
    },
}

/// A document (PDF, plain text, or custom content) the model can read and
/// cite. `citations` config and `context` travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentBlock {
    pub source: DocumentSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DocumentSource {
    /// Base64 PDF (`application/pdf`).
    Base64 {
        media_type: String,
        data: String,
    },
    /// Plain text (`text/plain`), given inline.
    Text {
        media_type: String,
        data: String,
    },
    /// A PDF by URL.
    Url {
        url: String,
    },
    /// Custom content: a string or text/image blocks.
    Content {
        content: MessageContent,
    },
    File {
        file_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUseBlock {
    pub id: String,
    pub name: String,
    /// The arguments object.
    pub input: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    /// A string or text/image/document blocks; may be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ThinkingBlock {
    pub thinking: String,
    /// Must be sent back unchanged with the block.
    #[serde(default)]
    pub signature: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RedactedThinkingBlock {
    /// Opaque, encrypted; passed back unchanged.
    pub data: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool definition: a custom (client) tool, or a server / Anthropic-defined
/// tool (`web_search_20250305`, `bash_20250124`, `text_editor_*`, ...) kept
/// verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Custom(CustomTool),
    Server(Value),
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tool::Custom(t) => t.serialize(s),
            Tool::Server(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match value.get("type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) if t == "custom" => {}
            Some(_) => return Ok(Tool::Server(value)),
        }
        serde_json::from_value(value)
            .map(Tool::Custom)
            .map_err(D::Error::custom)
    }
}

/// A client tool (`ToolParam`). `defer_loading`, `input_examples`,
/// `eager_input_streaming`, `allowed_callers` travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomTool {
    /// `"custom"` or absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the `input` object.
    pub input_schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    Auto {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must use some tool.
    Any {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    /// The model must use tool `name`.
    Tool {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        disable_parallel_tool_use: Option<bool>,
    },
    None,
}

/// `thinking`: `{"type":"enabled","budget_tokens":N}`, `{"type":"disabled"}`,
/// `{"type":"adaptive"}` (the model decides; Claude 4.6 and later) or newer
/// types, kept as a string so unknown ones still parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkingConfig {
    #[serde(rename = "type")]
    pub r#type: String,
    /// With `enabled`: at least 1024 and less than `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// `summarized` | `omitted` (recent models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ThinkingConfig {
    pub fn enabled(budget_tokens: u64) -> Self {
        Self::of_type("enabled", Some(budget_tokens))
    }

    pub fn adaptive() -> Self {
        Self::of_type("adaptive", None)
    }

    pub fn disabled() -> Self {
        Self::of_type("disabled", None)
    }

    fn of_type(t: &str, budget_tokens: Option<u64>) -> Self {
        ThinkingConfig {
            r#type: t.to_owned(),
            budget_tokens,
            display: None,
            extra: Map::new(),
        }
    }
}

/// `output_config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputConfig {
    /// `low` | `medium` | `high` | `xhigh` | `max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// `{"type":"json_schema","schema":{..}}` (structured outputs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<OutputFormat>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OutputConfig {
    pub fn is_empty(&self) -> bool {
        self.effort.is_none() && self.format.is_none() && self.extra.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputFormat {
    /// `json_schema`.
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A complete response (`Message`, `type: "message"`), fields in the order
/// the API sends them. Missing fields read as their defaults (lenient with
/// compatible vendors).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    pub id: String,
    #[serde(rename = "type")]
    pub r#type: String,
    pub role: String,
    pub model: String,
    pub content: Vec<ContentBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence`, `tool_use`, `pause_turn`,
    /// `refusal`, `model_context_window_exceeded`; `null` only in
    /// `message_start`.
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// `stop_details`, `container`, `diagnostics`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            id: String::new(),
            r#type: "message".to_owned(),
            role: "assistant".to_owned(),
            model: String::new(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: Usage::default(),
            extra: Map::new(),
        }
    }
}

/// Token usage. `input_tokens` excludes cache reads and writes (the total
/// prompt is the sum of the three). In `message_delta` every count is
/// cumulative and the optional ones may be absent, meaning "unchanged".
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens_details: Option<OutputTokensDetails>,
    /// `cache_creation` (by TTL), `server_tool_use`, `service_tier`, ...
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default, deserialize_with = "count")]
    pub thinking_tokens: u64,
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

/// One streamed event; the SSE `event:` name equals `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The message with empty `content` and the usage known so far.
    MessageStart {
        message: Message,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    /// Stop reason and cumulative usage, once at the end.
    MessageDelta {
        delta: MessageDeltaBody,
        usage: Usage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorObject,
    },
}

impl StreamEvent {
    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    pub stop_reason: Option<String>,
    pub stop_sequence: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The delta of a `content_block_delta` event.
#[derive(Debug, Clone, PartialEq)]
pub enum BlockDelta {
    Text {
        text: String,
    },
    InputJson {
        partial_json: String,
    },
    Thinking {
        thinking: String,
    },
    /// Sent just before the thinking block's `content_block_stop`.
    Signature {
        signature: String,
    },
    Citations {
        citation: Value,
    },
    /// A delta type this crate does not know, kept verbatim.
    Other(Value),
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum KnownDelta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(rename = "signature_delta")]
    Signature { signature: String },
    #[serde(rename = "citations_delta")]
    Citations { citation: Value },
}

impl Serialize for BlockDelta {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let known = match self {
            BlockDelta::Text { text } => KnownDelta::Text { text: text.clone() },
            BlockDelta::InputJson { partial_json } => KnownDelta::InputJson {
                partial_json: partial_json.clone(),
            },
            BlockDelta::Thinking { thinking } => KnownDelta::Thinking {
                thinking: thinking.clone(),
            },
            BlockDelta::Signature { signature } => KnownDelta::Signature {
                signature: signature.clone(),
            },
            BlockDelta::Citations { citation } => KnownDelta::Citations {
                citation: citation.clone(),
            },
            BlockDelta::Other(v) => return v.serialize(s),
        };
        known.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BlockDelta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let known = matches!(
            value.get("type").and_then(Value::as_str),
            Some(
                "text_delta"
                    | "input_json_delta"
                    | "thinking_delta"
                    | "signature_delta"
                    | "citations_delta"
            )
        );
        if !known {
            return Ok(BlockDelta::Other(value));
        }
        Ok(
            match serde_json::from_value::<KnownDelta>(value).map_err(D::Error::custom)? {
                KnownDelta::Text { text } => BlockDelta::Text { text },
                KnownDelta::InputJson { partial_json } => BlockDelta::InputJson { partial_json },
                KnownDelta::Thinking { thinking } => BlockDelta::Thinking { thinking },
                KnownDelta::Signature { signature } => BlockDelta::Signature { signature },
                KnownDelta::Citations { citation } => BlockDelta::Citations { citation },
            },
        )
    }
}

/// `{"type":"error","error":{"type":..,"message":..},"request_id":..}`,
/// the body of every non-2xx response and of the `error` stream event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorResponse {
    #[serde(rename = "type")]
    pub r#type: String,
    pub error: ErrorObject,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ErrorResponse {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorResponse {
            r#type: "error".to_owned(),
            error: ErrorObject {
                r#type: error_type.into(),
                message: message.into(),
                extra: Map::new(),
            },
            request_id: None,
        }
    }
}

/// `type` is one of `invalid_request_error`, `authentication_error`,
/// `billing_error`, `permission_error`, `not_found_error`,
/// `request_too_large`, `rate_limit_error`, `timeout_error`, `api_error`,
/// `overloaded_error` (and newer ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default)]
    pub message: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_blocks_and_server_tools_survive_verbatim() {
        let raw = json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "x"}});
        let block: ContentBlock = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(block.type_name(), "server_tool_use");
        assert_eq!(serde_json::to_value(&block).unwrap(), raw);

        let tool = json!({"type": "web_search_20250305", "name": "web_search", "max_uses": 5});
        let parsed: Tool = serde_json::from_value(tool.clone()).unwrap();
        assert!(matches!(parsed, Tool::Server(_)));
        assert_eq!(serde_json::to_value(&parsed).unwrap(), tool);
    }

    #[test]
    fn a_malformed_known_block_is_an_error_not_an_unknown_block() {
        let err = serde_json::from_value::<ContentBlock>(json!({"type": "tool_use", "name": "x"}));
        assert!(err.is_err());
    }

    #[test]
    fn known_blocks_serialize_with_their_tag_and_extras() {
        let block: ContentBlock = serde_json::from_value(json!({
            "type": "text", "text": "hi", "citations": [{"type": "char_location"}]
        }))
        .unwrap();
        let ContentBlock::Text(t) = &block else {
            unreachable!("parsed as {block:?}")
        };
        assert!(t.extra.contains_key("citations"));
        assert!(!t.extra.contains_key("type"));
        assert_eq!(
            serde_json::to_value(&block).unwrap(),
            json!({"type": "text", "text": "hi", "citations": [{"type": "char_location"}]})
        );
    }
}
