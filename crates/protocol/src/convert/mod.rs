//! Conversions between each wire format and the canonical IR ([`crate::ir`]).
//!
//! Every format module offers the same surface, so the gateway can pair any
//! ingress with any upstream:
//! - `request_to_ir(&[u8]) -> Result<ChatRequest, ConvertError>` and
//!   `request_from_ir(&ChatRequest) -> Result<Vec<u8>, ConvertError>`
//! - `response_to_ir(&[u8]) -> Result<ChatResponse, ConvertError>` and
//!   `response_from_ir(&ChatResponse) -> Vec<u8>`
//! - a `StreamDecoder` ([`DecodeStream`]) and a `StreamEncoder` ([`EncodeStream`])
//! - `error_body(&ApiError) -> Vec<u8>` (the format's own error shape) and
//!   `parse_error(status, &[u8]) -> ApiError`

use crate::ir::StreamEvent;
use crate::sse::SseEvent;

pub mod anthropic;
pub mod bedrock;
pub mod cloudflare;
pub mod cohere;
pub mod dispatch;
pub mod gemini;
pub mod openai_chat;
pub mod responses;

/// Why a body could not be converted. The message names the field, and is
/// shown to the client in a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// The body is not valid JSON or not the expected shape.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// A field has a value this conversion cannot accept.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The request uses something the target format cannot express.
    #[error("{0} is not supported by this upstream format")]
    Unsupported(String),
}

impl ConvertError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConvertError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Deserializes a body, naming the offending field in the error (`messages[2].content: invalid
/// type ...`), so a client can see what to fix.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ConvertError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            ConvertError::Json(inner.to_string())
        } else {
            ConvertError::Invalid {
                field: path,
                message: inner.to_string(),
            }
        }
    })
}

impl From<serde_json::Error> for ConvertError {
    fn from(e: serde_json::Error) -> Self {
        ConvertError::Json(e.to_string())
    }
}

/// Turns one upstream format's SSE events into canonical events.
pub trait DecodeStream {
    /// Consumes one SSE event; appends the canonical events it implies.
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError>;
    /// The upstream stream ended; emits whatever a well-formed sequence
    /// still lacks (e.g. `Finish` when the upstream closed without one).
    fn finish(&mut self, out: &mut Vec<StreamEvent>);
}

/// Turns canonical events into the client format's SSE bytes.
pub trait EncodeStream {
    /// Appends the bytes (whole SSE frames) for one canonical event.
    fn push(&mut self, event: &StreamEvent, out: &mut Vec<u8>);
    /// The stream ended; appends the closing frames (`[DONE]`,
    /// `message_stop`, ...).
    fn finish(&mut self, out: &mut Vec<u8>);
}
