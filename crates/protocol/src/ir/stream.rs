//! Canonical stream events. A stream decoder turns one upstream format's
//! events into these; a stream encoder turns them into the client's format.

use super::{ApiError, FinishReason, Usage};

/// One step of a streamed response. A well-formed sequence is:
/// `Start`, then any mix of deltas (tool calls numbered from 0 in order of
/// appearance, each `ToolCallStart` before its `ToolCallDelta`s), then
/// `Usage` (possibly several, cumulative) and `Finish`, in either order.
/// `Error` may end the stream at any point.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The response begins. `created` is Unix seconds (0 = unknown).
    Start {
        id: String,
        model: String,
        created: u64,
    },
    /// Visible text appended to the answer.
    TextDelta(String),
    /// Reasoning ("thinking") text appended.
    ReasoningDelta(String),
    /// The signature that closes the reasoning streamed so far.
    ReasoningSignature(String),
    /// An opaque encrypted reasoning block.
    RedactedReasoning(String),
    /// Refusal text appended (OpenAI `refusal`).
    RefusalDelta(String),
    /// Tool call number `index` begins.
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
        /// Gemini thought signature of the functionCall part.
        signature: Option<String>,
    },
    /// A fragment of tool call `index`'s JSON arguments.
    ToolCallDelta { index: u32, arguments: String },
    /// Usage so far (cumulative; the last one is final).
    Usage(Usage),
    /// Generation ended.
    Finish {
        reason: FinishReason,
        stop_sequence: Option<String>,
    },
    /// The upstream reported an error inside the stream.
    Error(ApiError),
}
