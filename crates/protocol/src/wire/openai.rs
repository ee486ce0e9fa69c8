//! OpenAI wire types (Chat Completions, Models, usage, errors), named and
//! shaped like the official SDK's types. Objects keep unknown fields in
//! `extra` so vendor additions survive a round trip. `Default` fills the
//! constant fields (`object`, `role`, `type`) with their OpenAI values.
//!
//! Where OpenAI always sends an explicit `null` (`content`, `refusal`,
//! `logprobs`, `finish_reason`) it is serialized; other `None`s are omitted.

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::body::write_json_string;

/// Token accounting (`CompletionUsage` in the SDK).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Missing or `null` counts are read as 0 (embeddings report no
    /// completion tokens; some vendors send nulls).
    #[serde(default, deserialize_with = "count")]
    pub prompt_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub completion_tokens: u64,
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompletionTokensDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_prediction_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected_prediction_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_tokens: Option<u64>,
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

/// A non-streaming chat completion (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<Choice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ChatCompletion {
    fn default() -> Self {
        ChatCompletion {
            id: String::new(),
            object: "chat.completion".to_owned(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            service_tier: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Choice {
    pub index: u32,
    pub message: ChatMessage,
    /// `ChoiceLogprobs`, kept as raw JSON.
    #[serde(default)]
    pub logprobs: Option<Value>,
    /// Required by the SDK (`stop`, `length`, `tool_calls`, `content_filter`,
    /// `function_call`); optional here to accept lenient vendors.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An assistant message in a response (`ChatCompletionMessage`).
/// `annotations`, `audio` and `function_call` travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default)]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ChatMessage {
    fn default() -> Self {
        ChatMessage {
            role: "assistant".to_owned(),
            content: None,
            refusal: None,
            tool_calls: None,
            extra: Map::new(),
        }
    }
}

/// A tool call in a response message. Function calls have `type:
/// "function"`; a custom tool call (`type: "custom"`) has no `function`
/// (it reads as empty and is not written back) and keeps `custom` in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "FunctionCall::is_empty")]
    pub function: FunctionCall,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ToolCall {
    fn default() -> Self {
        ToolCall {
            id: String::new(),
            r#type: "function".to_owned(),
            function: FunctionCall::default(),
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text as generated by the model (not necessarily valid JSON).
    pub arguments: String,
}

impl FunctionCall {
    fn is_empty(&self) -> bool {
        self.name.is_empty() && self.arguments.is_empty()
    }
}

/// One streamed chunk (`object: "chat.completion.chunk"`). With
/// `stream_options.include_usage` the last chunk has empty `choices` and a
/// `usage`; `obfuscation` and other extras travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ChatCompletionChunk {
    fn default() -> Self {
        ChatCompletionChunk {
            id: String::new(),
            object: "chat.completion.chunk".to_owned(),
            created: 0,
            model: String::new(),
            choices: Vec::new(),
            usage: None,
            system_fingerprint: None,
            service_tier: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChunkChoice {
    pub index: u32,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ChoiceDelta`: every field optional and omitted when `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ToolCallDelta {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// One entry of `GET /v1/models` (`object: "model"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub object: String,
    /// Unix seconds; some vendors omit it.
    #[serde(default)]
    pub created: u64,
    #[serde(default)]
    pub owned_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_date: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            id: String::new(),
            object: "model".to_owned(),
            created: 0,
            owned_by: String::new(),
            shutdown_date: None,
            extra: Map::new(),
        }
    }
}

/// `GET /v1/models` response (`object: "list"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}

impl ModelList {
    pub fn new(data: Vec<Model>) -> Self {
        ModelList {
            object: "list".to_owned(),
            data,
        }
    }
}

impl Default for ModelList {
    fn default() -> Self {
        ModelList::new(Vec::new())
    }
}

/// A non-null top-level `usage` in one chunk's JSON, if any. Chunks that
/// cannot carry one (no `"usage"` key followed by a non-null value) are
/// rejected by a byte search without parsing.
pub fn usage_from_chunk(data: &[u8]) -> Option<Usage> {
    let candidate = memchr::memmem::find_iter(data, b"\"usage\"").any(|at| {
        let after = data.get(at + 7..).unwrap_or_default();
        let mut rest = after.trim_ascii_start();
        if rest.first() != Some(&b':') {
            return false;
        }
        rest = rest.get(1..).unwrap_or_default().trim_ascii_start();
        !rest.starts_with(b"null")
    });
    if !candidate {
        return None;
    }
    #[derive(Deserialize)]
    struct UsageOnly {
        #[serde(default)]
        usage: Option<Usage>,
    }
    serde_json::from_slice::<UsageOnly>(data).ok()?.usage
}

/// An OpenAI error body: `{"error":{"message":..,"type":..,"param":..,"code":..}}`
/// with `null` for absent `code`/`param`.
pub fn error_body(
    message: &str,
    error_type: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Bytes {
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"error\":{\"message\":");
    write_json_string(&mut out, message);
    out.extend_from_slice(b",\"type\":");
    write_json_string(&mut out, error_type);
    out.extend_from_slice(b",\"param\":");
    write_opt(&mut out, param);
    out.extend_from_slice(b",\"code\":");
    write_opt(&mut out, code);
    out.extend_from_slice(b"}}");
    Bytes::from(out)
}

fn write_opt(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(s) => write_json_string(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// The parts of an upstream error body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorInfo {
    pub message: String,
    pub error_type: Option<String>,
    /// Numeric codes are turned into strings, as the SDK does.
    pub code: Option<String>,
    pub param: Option<String>,
}

/// Reads an error body from OpenAI or an OpenAI-compatible vendor. Accepts
/// `{"error":{..}}` (also with a numeric `code` or a `status` instead of
/// `type`), `{"error":"text"}`, a top-level `{"message":..}` (vLLM style),
/// `{"detail":"text"}` (FastAPI style) and a one-element array of any of
/// these. `None` when nothing looks like an error message.
pub fn parse_error_body(body: &[u8]) -> Option<ErrorInfo> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let obj = match &value {
        Value::Array(items) => items.first()?.as_object()?,
        Value::Object(obj) => obj,
        _ => return None,
    };
    match obj.get("error") {
        Some(Value::Object(err)) => Some(info_from(err, true)),
        Some(Value::String(msg)) => Some(ErrorInfo {
            message: msg.clone(),
            error_type: text(obj.get("type")).filter(|t| t != "error"),
            code: text(obj.get("code")),
            param: text(obj.get("param")),
        }),
        _ if obj.contains_key("message") => Some(info_from(obj, false)),
        _ => match obj.get("detail") {
            Some(Value::String(msg)) => Some(ErrorInfo {
                message: msg.clone(),
                ..ErrorInfo::default()
            }),
            _ => None,
        },
    }
}

fn info_from(err: &Map<String, Value>, nested: bool) -> ErrorInfo {
    let message = match err.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None if nested => Value::Object(err.clone()).to_string(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    // Top-level `"object":"error"`/`"type":"error"` mark the envelope, not a kind.
    let error_type = text(err.get("type"))
        .filter(|t| nested || t != "error")
        .or_else(|| text(err.get("status")));
    ErrorInfo {
        message,
        error_type,
        code: text(err.get("code")),
        param: text(err.get("param")),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
