//! OpenAI wire types (Chat Completions requests, responses and chunks,
//! Models, usage, errors), named and shaped like the official SDK's types. Objects keep unknown fields in
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
    static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    let candidate = USAGE.find_iter(data).any(|at| {
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

// ---------------------------------------------------------------------------
// Request side (`POST /v1/chat/completions`), named after the SDK's
// `completion_create_params` and `chat_completion_*_param` types.

/// A Chat Completions request body. Unknown fields (`metadata`, `store`,
/// `logprobs`, `prediction`, vendor extensions...) travel in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    pub model: String,
    pub messages: Vec<RequestMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoiceOption>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Deprecated by OpenAI in favour of `max_completion_tokens` (and
    /// rejected by its reasoning models), but the field most
    /// OpenAI-compatible vendors understand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Not an OpenAI parameter; vLLM, OpenRouter, Together and others take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// `none` | `minimal` | `low` | `medium` | `high` | `xhigh` ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One input message, tagged by `role` (`ChatCompletionMessageParam`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum RequestMessage {
    System(InstructionMessage),
    /// Replaces `system` for OpenAI's o1-and-later models; many other
    /// vendors reject it.
    Developer(InstructionMessage),
    User(UserMessage),
    Assistant(AssistantMessage),
    Tool(ToolMessage),
    /// Deprecated result of a legacy `function_call`.
    Function(FunctionMessage),
}

/// A `system` or `developer` message (text parts only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionMessage {
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserMessage {
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// An earlier assistant turn sent back as history. `audio` and other
/// extras travel in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AssistantMessage {
    /// Serialized as `null` when absent: OpenAI accepts it with
    /// `tool_calls`, and some vendors insist on the key.
    #[serde(default)]
    pub content: Option<MessageContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// Deprecated single call (replaced by `tool_calls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCall>,
    /// Reasoning text of this turn: a DeepSeek extension (OpenRouter and
    /// others call it `reasoning`) that OpenAI itself rejects.
    #[serde(default, alias = "reasoning", skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolMessage {
    pub content: MessageContent,
    pub tool_call_id: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionMessage {
    #[serde(default)]
    pub content: Option<String>,
    pub name: String,
}

/// Message content: a plain string or an array of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One content part, tagged by `type`. Which parts a role may carry:
/// system/developer/tool text only; user text, image, audio and file;
/// assistant text and refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text(TextPart),
    ImageUrl(ImagePart),
    InputAudio(AudioPart),
    File(FilePart),
    Refusal(RefusalPart),
    /// Not an OpenAI part: Databricks' reasoning block in assistant turns
    /// (answers carry it, and Claude models need it sent back with its
    /// signature).
    Reasoning(ReasoningPart),
}

/// `{"type":"reasoning","summary":[{"type":"summary_text","text","signature"}]}`
/// (Databricks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningPart {
    pub summary: Vec<SummaryText>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryText {
    /// Always `summary_text`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `cache_control` is not an OpenAI field: clients of OpenRouter and
/// similar Anthropic-backed vendors put Anthropic's marker here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePart {
    pub image_url: ImageUrl,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// An `http(s)` URL or a `data:<type>;base64,<data>` URL.
    pub url: String,
    /// `auto` | `low` | `high` | `original`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudioPart {
    pub input_audio: InputAudio,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputAudio {
    /// Base64 audio bytes (no `data:` prefix).
    pub data: String,
    /// `wav` | `mp3`.
    pub format: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilePart {
    pub file: FileData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Either inline data (`file_data`, a `data:` URL, with `filename`) or a
/// reference to an uploaded file (`file_id`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusalPart {
    pub refusal: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A tool the model may call. Function tools have `type: "function"`; a
/// custom tool (`type: "custom"`) has no `function` and keeps `custom` in
/// `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub r#type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionDefinition>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ChatTool {
    fn default() -> Self {
        ChatTool {
            r#type: "function".to_owned(),
            function: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the arguments; omitted means no parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `"none"` | `"auto"` | `"required"`, a named function, or
/// another object form (`allowed_tools`, named `custom`) kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoiceOption {
    Mode(String),
    Named(NamedToolChoice),
    Other(Value),
}

/// `{"type":"function","function":{"name":..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    #[serde(rename = "type")]
    pub r#type: String,
    pub function: NamedFunction,
}

impl NamedToolChoice {
    pub fn function(name: impl Into<String>) -> Self {
        NamedToolChoice {
            r#type: "function".to_owned(),
            function: NamedFunction { name: name.into() },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

/// `stop`: one sequence or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StreamOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_obfuscation: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `response_format`, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}
