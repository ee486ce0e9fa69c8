//! Typed wire structs per API format. Objects keep unknown fields in an
//! `extra` map (`#[serde(flatten)]`) so vendor additions survive.

pub mod anthropic;
pub mod bedrock;
pub mod cloudflare;
pub mod cohere;
pub mod gemini;
pub mod openai;
pub mod responses;
