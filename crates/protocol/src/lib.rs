//! Pure wire-format code for the llmux gateway: no async runtime, no network,
//! no I/O, so everything here is deterministic and unit-testable.
//!
//! - [`body`]: the same-format fast path. Validate a JSON request body in one
//!   pass, peek at `model`/`stream`/`stream_options`, and patch top-level
//!   fields by splicing bytes instead of parsing and re-serializing.
//! - [`sse`]: bounded Server-Sent Events framing (raw frames for passthrough),
//!   decoding (WHATWG `EventSource` rules) and encoding.
//! - [`skim`]: a pull reader that walks JSON answers it only inspects (content present,
//!   usage numbers) without building them.
//! - [`ir`]: the canonical request/response/stream representation every
//!   format converts through; [`convert`]: each format <-> IR.
//! - [`wire`]: typed wire structs per format. [`openai`]: OpenAI wire types (chat completions, chunks, usage, models),
//!   cheap usage extraction from stream chunks, and error bodies.

pub mod base64;
pub mod body;
pub mod convert;
pub mod eventstream;
pub mod ir;
pub mod skim;
pub mod sse;
pub mod wire;

/// Kept at the crate root: the gateway's same-format fast path uses it.
pub use wire::openai;
