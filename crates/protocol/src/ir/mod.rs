//! The canonical intermediate representation every API format converts
//! through. When the ingress and upstream formats differ, the gateway does
//! `ingress wire -> IR -> upstream wire` for the request and the reverse for
//! the response and each stream event; same-format traffic never touches it
//! (see [`crate::body`]).
//!
//! The IR is a superset of what the supported formats can say: anything one
//! format can express and another cannot (Anthropic `cache_control`, Gemini
//! thought signatures, reasoning signatures) has a slot here so that a
//! round trip through the same family loses nothing. Format-specific fields
//! without a slot travel in `extra` maps and are only re-emitted by the
//! format they came from (`extra_format` names it).
//!
//! Conventions every converter keeps:
//! - Token counts follow OpenAI semantics: `input_tokens` includes cached
//!   (read and written) prompt tokens, `output_tokens` includes reasoning.
//! - Tool-call arguments are JSON text (as OpenAI sends them); converters for
//!   formats that carry a JSON object parse/serialize at the boundary, and an
//!   empty string means `{}`.
//! - Every tool call has an id; converters for formats without ids (Gemini)
//!   synthesize stable ones (`call_<n>` in order of appearance in the
//!   request or response) and match results by name and order.

use serde_json::{Map, Value};

pub mod estimate;
pub mod provenance;
mod stream;
mod usage;

pub use stream::StreamEvent;
pub use usage::Usage;

/// Which wire format a value or an `extra` map came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    OpenAiChat,
    OpenAiResponses,
    Anthropic,
    Gemini,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenAiChat => "openai",
            Format::OpenAiResponses => "openai-responses",
            Format::Anthropic => "anthropic",
            Format::Gemini => "gemini",
        }
    }
}

/// A chat/generation request in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// Model name as the client sent it (the gateway replaces it with the
    /// upstream name before encoding).
    pub model: String,
    /// System / developer instructions that precede the conversation, in
    /// order. (A system message in the middle of an OpenAI conversation
    /// stays in `messages` with [`Role::System`].)
    pub system: Vec<Part>,
    pub messages: Vec<Message>,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)` forbids parallel tool calls.
    pub parallel_tool_calls: Option<bool>,
    /// Upper bound on generated tokens (OpenAI `max_completion_tokens` /
    /// `max_tokens`, Anthropic `max_tokens`, Gemini `maxOutputTokens`).
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<u64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    /// Number of choices; only OpenAI-family upstreams honour `n > 1`.
    pub n: Option<u32>,
    pub stream: bool,
    /// The client asked for usage in the stream (OpenAI
    /// `stream_options.include_usage`). Other formats always report usage.
    pub include_usage: bool,
    pub reasoning: Option<Reasoning>,
    pub response_format: Option<ResponseFormat>,
    /// End-user identifier (OpenAI `user`, Anthropic `metadata.user_id`).
    pub user: Option<String>,
    /// Unknown top-level fields of the ingress body, re-emitted only when
    /// encoding to `extra_format`.
    pub extra: Map<String, Value>,
    pub extra_format: Option<Format>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
    /// A message carrying only [`Part::ToolResult`]s.
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
    /// Optional participant name (OpenAI `name`).
    pub name: Option<String>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: vec![Part::text(text)],
            name: None,
        }
    }

    /// Concatenated text of the text parts (reasoning excluded).
    pub fn joined_text(&self) -> String {
        joined_text(&self.content)
    }
}

/// Concatenated text of the [`Part::Text`] parts.
pub fn joined_text(parts: &[Part]) -> String {
    let mut out = String::new();
    for part in parts {
        if let Part::Text { text, .. } = part {
            out.push_str(text);
        }
    }
    out
}

/// One piece of message content, in the order it appears.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text {
        text: String,
        /// Anthropic prompt-cache marker, kept verbatim.
        cache_control: Option<Value>,
    },
    Image {
        source: MediaSource,
        /// OpenAI `detail` (`auto`/`low`/`high`).
        detail: Option<String>,
        cache_control: Option<Value>,
    },
    /// Audio input (OpenAI `input_audio`: base64 data plus `wav`/`mp3`).
    Audio { data: String, format: String },
    /// A document / file (PDF and the like).
    File {
        source: MediaSource,
        filename: Option<String>,
        cache_control: Option<Value>,
    },
    /// A tool call made by the assistant.
    ToolCall {
        id: String,
        name: String,
        /// JSON text of the arguments object.
        arguments: String,
        /// Gemini `thoughtSignature` attached to the functionCall part; it
        /// must be sent back with the call on the next turn.
        signature: Option<String>,
    },
    /// The result of a tool call, sent back by the client.
    ToolResult {
        call_id: String,
        /// Name of the called tool when the format carries it (Gemini
        /// needs it; use [`ChatRequest::tool_name_for`] to recover it).
        name: Option<String>,
        content: Vec<Part>,
        is_error: bool,
        cache_control: Option<Value>,
    },
    /// Model reasoning ("thinking") text with its integrity signature.
    Reasoning {
        text: String,
        signature: Option<String>,
    },
    /// Encrypted reasoning the upstream returned (Anthropic
    /// `redacted_thinking`, OpenAI `encrypted_content`); opaque, passed back.
    RedactedReasoning { data: String },
}

impl Part {
    pub fn text(text: impl Into<String>) -> Self {
        Part::Text {
            text: text.into(),
            cache_control: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum MediaSource {
    Base64 { media_type: String, data: String },
    Url { url: String },
}

impl MediaSource {
    /// Parses `data:<type>;base64,<data>`; any other string is a URL.
    pub fn from_url(url: &str) -> Self {
        if let Some(rest) = url.strip_prefix("data:")
            && let Some((meta, data)) = rest.split_once(',')
            && let Some(media_type) = meta.strip_suffix(";base64")
        {
            return MediaSource::Base64 {
                media_type: media_type.to_owned(),
                data: data.to_owned(),
            };
        }
        MediaSource::Url {
            url: url.to_owned(),
        }
    }

    /// The `data:` URL (or plain URL) form OpenAI uses.
    pub fn to_url(&self) -> String {
        match self {
            MediaSource::Base64 { media_type, data } => {
                format!("data:{media_type};base64,{data}")
            }
            MediaSource::Url { url } => url.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the parameters object (`{"type":"object"}` when the
    /// client gave none).
    pub parameters: Value,
    pub strict: Option<bool>,
    pub cache_control: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    None,
    Auto,
    /// The model must call some tool (OpenAI `required`, Anthropic `any`,
    /// Gemini mode `ANY`).
    Required,
    /// The model must call this tool.
    Named(String),
}

/// Reasoning / extended-thinking settings.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reasoning {
    /// `minimal` | `low` | `medium` | `high` (OpenAI `reasoning_effort`).
    pub effort: Option<String>,
    /// Token budget (Anthropic `thinking.budget_tokens`, Gemini
    /// `thinkingBudget`).
    pub budget_tokens: Option<u64>,
    /// `Some(false)` turns thinking off explicitly.
    pub enabled: Option<bool>,
    /// Ask the upstream to return its thoughts (Gemini `includeThoughts`).
    pub include_thoughts: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        schema: Value,
        strict: Option<bool>,
    },
}

impl ChatRequest {
    /// The tool name of the call `call_id`, found in earlier assistant
    /// messages (formats whose tool results carry only the call id).
    pub fn tool_name_for(&self, call_id: &str) -> Option<&str> {
        self.messages.iter().rev().find_map(|m| {
            m.content.iter().find_map(|p| match p {
                Part::ToolCall { id, name, .. } if id == call_id => Some(name.as_str()),
                _ => None,
            })
        })
    }
}

/// Why generation stopped, normalised to OpenAI's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinishReason {
    #[default]
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
}

impl FinishReason {
    pub fn as_openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::ContentFilter => "content_filter",
        }
    }

    pub fn from_openai(s: &str) -> Self {
        match s {
            "length" => FinishReason::Length,
            "tool_calls" | "function_call" => FinishReason::ToolCalls,
            "content_filter" => FinishReason::ContentFilter,
            _ => FinishReason::Stop,
        }
    }
}

/// A complete (non-stream) response in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Unix seconds; 0 when the upstream format has no timestamp (encoders
    /// then use the current time supplied by the caller).
    pub created: u64,
    /// Assistant output in order: reasoning, text, tool calls...
    pub content: Vec<Part>,
    pub finish_reason: FinishReason,
    /// The stop sequence that ended generation, when the upstream says.
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// Refusal text (OpenAI `refusal`).
    pub refusal: Option<String>,
}

/// An error in canonical form, rendered by each format's error shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status the client receives.
    pub status: u16,
    pub kind: ErrorKind,
    pub message: String,
}

/// Error categories every format can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RequestTooLarge,
    RateLimit,
    Api,
    Overloaded,
    Timeout,
}

impl ErrorKind {
    /// The kind a status code implies when the body says nothing better.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            402 | 403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            408 | 504 => ErrorKind::Timeout,
            413 => ErrorKind::RequestTooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            _ => ErrorKind::Api,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_round_trip_and_plain_urls_stay_urls() {
        let src = MediaSource::from_url("data:image/png;base64,iVBORw0");
        assert_eq!(
            src,
            MediaSource::Base64 {
                media_type: "image/png".into(),
                data: "iVBORw0".into()
            }
        );
        assert_eq!(src.to_url(), "data:image/png;base64,iVBORw0");
        let url = MediaSource::from_url("https://x.test/cat.png");
        assert_eq!(
            url,
            MediaSource::Url {
                url: "https://x.test/cat.png".into()
            }
        );
        // `data:` without base64 is not something we can inline: keep as URL.
        assert!(matches!(
            MediaSource::from_url("data:text/plain,hello"),
            MediaSource::Url { .. }
        ));
    }

    #[test]
    fn tool_names_are_found_by_call_id() {
        let req = ChatRequest {
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![Part::ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: "{}".into(),
                    signature: None,
                }],
                name: None,
            }],
            ..ChatRequest::default()
        };
        assert_eq!(req.tool_name_for("call_1"), Some("get_weather"));
        assert_eq!(req.tool_name_for("call_2"), None);
    }
}
