//! OpenAI Responses API wire types (`POST /v1/responses`), named and shaped
//! like the official SDK's `openai.types.responses`. Objects keep unknown
//! fields in `extra`. Unions with members the IR cannot express (hosted
//! tools, MCP, shell calls, item references, ...) keep the raw JSON in an
//! `Other` variant, so an unknown member is reported by its `type` rather
//! than failing as a parse error, and is re-emitted verbatim.
//!
//! Unions are read through a [`Value`] and dispatched on `type` (instead of
//! `#[serde(untagged)]`), so a malformed known member reports the field that
//! is wrong rather than "did not match any variant".

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The body of `POST /v1/responses` (`ResponseCreateParams`). Fields the
/// gateway does not interpret (`conversation`, `prompt_cache_key`,
/// `service_tier`, `stream_options`, ...) travel in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CreateRequest {
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input`: a plain string (one user message) or a list of items.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Items(Vec<Item>),
}

impl Serialize for Input {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Input::Text(t) => t.serialize(s),
            Input::Items(items) => items.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(t) => Ok(Input::Text(t)),
            Value::Array(items) => items
                .into_iter()
                .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
                .collect::<Result<_, _>>()
                .map(Input::Items),
            _ => Err(D::Error::custom(
                "input must be a string or an array of items",
            )),
        }
    }
}

/// One conversation item, in `input` or in a response's `output`.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// `type: "message"` (also an `EasyInputMessage` without `type`).
    Message(Message),
    FunctionCall(FunctionCall),
    FunctionCallOutput(FunctionCallOutput),
    Reasoning(Reasoning),
    /// Any other item type, verbatim.
    Other(Value),
}

impl Item {
    /// The item's `type` as it appears on the wire.
    pub fn type_name(&self) -> &str {
        match self {
            Item::Message(_) => "message",
            Item::FunctionCall(_) => "function_call",
            Item::FunctionCallOutput(_) => "function_call_output",
            Item::Reasoning(_) => "reasoning",
            Item::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ItemRef<'a> {
    Message(&'a Message),
    FunctionCall(&'a FunctionCall),
    FunctionCallOutput(&'a FunctionCallOutput),
    Reasoning(&'a Reasoning),
}

impl Serialize for Item {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Item::Message(m) => ItemRef::Message(m).serialize(s),
            Item::FunctionCall(f) => ItemRef::FunctionCall(f).serialize(s),
            Item::FunctionCallOutput(f) => ItemRef::FunctionCallOutput(f).serialize(s),
            Item::Reasoning(r) => ItemRef::Reasoning(r).serialize(s),
            Item::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let (kind, value) = take_type(value, Some("role"), "message").map_err(D::Error::custom)?;
        let item = match kind.as_deref() {
            Some("message") => Item::Message(from_value(value)?),
            Some("function_call") => Item::FunctionCall(from_value(value)?),
            Some("function_call_output") => Item::FunctionCallOutput(from_value(value)?),
            Some("reasoning") => Item::Reasoning(from_value(value)?),
            _ => Item::Other(restore_type(value, kind)),
        };
        Ok(item)
    }
}

/// Removes `type` from an object so the rest can be read into its struct.
/// An object without `type` that has `implied_by` is taken as `implied`
/// (`EasyInputMessage` may omit its `type`).
fn take_type(
    mut value: Value,
    implied_by: Option<&str>,
    implied: &str,
) -> Result<(Option<String>, Value), String> {
    let Some(obj) = value.as_object_mut() else {
        return Err(format!("expected an object, got {value}"));
    };
    let kind = match obj.remove("type") {
        Some(Value::String(t)) => Some(t),
        Some(other) => {
            obj.insert("type".to_owned(), other);
            None
        }
        None if implied_by.is_some_and(|k| obj.contains_key(k)) => Some(implied.to_owned()),
        None => None,
    };
    Ok((kind, value))
}

fn restore_type(mut value: Value, kind: Option<String>) -> Value {
    if let (Some(kind), Some(obj)) = (kind, value.as_object_mut()) {
        obj.insert("type".to_owned(), Value::String(kind));
    }
    value
}

fn from_value<T: DeserializeOwned, E: serde::de::Error>(value: Value) -> Result<T, E> {
    serde_json::from_value(value).map_err(E::custom)
}

/// A message item: input (`user`/`system`/`developer`, or an `assistant`
/// turn sent back as history) or an output message (`assistant`, with `id`
/// and `status`). `phase` and other additions travel in `extra`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub role: String,
    pub content: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Message content (and `function_call_output.output`): a string or a list
/// of content parts.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(t) => t.serialize(s),
            Content::Parts(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(t) => Ok(Content::Text(t)),
            Value::Array(parts) => parts
                .into_iter()
                .map(|v| serde_json::from_value(v).map_err(D::Error::custom))
                .collect::<Result<_, _>>()
                .map(Content::Parts),
            _ => Err(D::Error::custom(
                "expected a string or an array of content parts",
            )),
        }
    }
}

/// One content part of a message, a tool output or a stream `part`.
#[derive(Debug, Clone, PartialEq)]
pub enum ContentPart {
    InputText(TextPart),
    InputImage(InputImage),
    InputFile(InputFile),
    /// Defined by the SDK (`ResponseInputAudio`) although the message
    /// content union of the API reference lists only text, image and file.
    InputAudio(InputAudio),
    OutputText(OutputText),
    Refusal(Refusal),
    /// Raw reasoning text (`reasoning_text`, sent by open-weight models).
    ReasoningText(TextPart),
    Other(Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ContentPartRef<'a> {
    InputText(&'a TextPart),
    InputImage(&'a InputImage),
    InputFile(&'a InputFile),
    InputAudio(&'a InputAudio),
    OutputText(&'a OutputText),
    Refusal(&'a Refusal),
    ReasoningText(&'a TextPart),
}

impl ContentPart {
    pub fn type_name(&self) -> &str {
        match self {
            ContentPart::InputText(_) => "input_text",
            ContentPart::InputImage(_) => "input_image",
            ContentPart::InputFile(_) => "input_file",
            ContentPart::InputAudio(_) => "input_audio",
            ContentPart::OutputText(_) => "output_text",
            ContentPart::Refusal(_) => "refusal",
            ContentPart::ReasoningText(_) => "reasoning_text",
            ContentPart::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or(""),
        }
    }
}

impl Serialize for ContentPart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ContentPart::InputText(p) => ContentPartRef::InputText(p).serialize(s),
            ContentPart::InputImage(p) => ContentPartRef::InputImage(p).serialize(s),
            ContentPart::InputFile(p) => ContentPartRef::InputFile(p).serialize(s),
            ContentPart::InputAudio(p) => ContentPartRef::InputAudio(p).serialize(s),
            ContentPart::OutputText(p) => ContentPartRef::OutputText(p).serialize(s),
            ContentPart::Refusal(p) => ContentPartRef::Refusal(p).serialize(s),
            ContentPart::ReasoningText(p) => ContentPartRef::ReasoningText(p).serialize(s),
            ContentPart::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let (kind, value) = take_type(value, None, "").map_err(D::Error::custom)?;
        let part = match kind.as_deref() {
            Some("input_text") => ContentPart::InputText(from_value(value)?),
            Some("input_image") => ContentPart::InputImage(from_value(value)?),
            Some("input_file") => ContentPart::InputFile(from_value(value)?),
            Some("input_audio") => ContentPart::InputAudio(from_value(value)?),
            Some("output_text") => ContentPart::OutputText(from_value(value)?),
            Some("refusal") => ContentPart::Refusal(from_value(value)?),
            Some("reasoning_text") => ContentPart::ReasoningText(from_value(value)?),
            _ => ContentPart::Other(restore_type(value, kind)),
        };
        Ok(part)
    }
}

/// `input_text` / `reasoning_text`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextPart {
    pub text: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input_image`: a URL (`https:` or `data:`) or an uploaded file id.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InputImage {
    /// Required by the API (`low`/`high`/`auto`); lenient when reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `input_file`: inline `file_data` (a `data:` URL), a `file_url` or a
/// `file_id`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InputFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InputAudio {
    pub input_audio: AudioData,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct AudioData {
    /// Base64 audio.
    pub data: String,
    /// `mp3` or `wav`.
    pub format: String,
}

/// `output_text`. The API always sends `annotations` (and `logprobs` in
/// streams); history sent back by clients often omits both.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputText {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Value>>,
    pub text: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Refusal {
    pub refusal: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `function_call`: `call_id` pairs it with its `function_call_output`;
/// `id` (`fc_...`) names the output item and is optional in input.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// JSON text as generated by the model.
    #[serde(default)]
    pub arguments: String,
    pub call_id: String,
    pub name: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub call_id: String,
    pub output: Content,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `reasoning`: summaries the model chose to show, and (with `include:
/// ["reasoning.encrypted_content"]`) the opaque state that lets a stateless
/// client send the reasoning back on the next turn. `id` is required by the
/// API reference but clients replaying with `store: false` (Codex) omit it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub summary: Vec<SummaryText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<ContentPart>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `{"type":"summary_text","text":..}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryText {
    #[serde(rename = "type", default = "summary_text")]
    pub kind: String,
    pub text: String,
}

impl SummaryText {
    pub fn new(text: impl Into<String>) -> Self {
        SummaryText {
            kind: summary_text(),
            text: text.into(),
        }
    }
}

fn summary_text() -> String {
    "summary_text".to_owned()
}

/// An entry of `tools`: a function tool, or any other tool type (web
/// search, MCP, custom, ...) verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum Tool {
    Function(FunctionTool),
    Other(Value),
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ToolRef<'a> {
    Function(&'a FunctionTool),
}

impl Serialize for Tool {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tool::Function(f) => ToolRef::Function(f).serialize(s),
            Tool::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        let (kind, value) = take_type(value, None, "").map_err(D::Error::custom)?;
        Ok(match kind.as_deref() {
            Some("function") => Tool::Function(from_value(value)?),
            _ => Tool::Other(restore_type(value, kind)),
        })
    }
}

/// A function tool. Unlike Chat Completions, the Responses API treats an
/// absent `strict` as `true`, so writers should always set it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `tool_choice`: `"none"`/`"auto"`/`"required"`, a named function, or
/// another form (`allowed_tools`, hosted tool types, MCP, custom) verbatim.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Mode(String),
    Function { name: String },
    Other(Value),
}

impl Serialize for ToolChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Named<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            name: &'a str,
        }
        match self {
            ToolChoice::Mode(m) => m.serialize(s),
            ToolChoice::Function { name } => Named {
                kind: "function",
                name,
            }
            .serialize(s),
            ToolChoice::Other(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        if let Value::String(mode) = value {
            return Ok(ToolChoice::Mode(mode));
        }
        if value.get("type").and_then(Value::as_str) == Some("function")
            && let Some(name) = value.get("name").and_then(Value::as_str)
        {
            return Ok(ToolChoice::Function {
                name: name.to_owned(),
            });
        }
        Ok(ToolChoice::Other(value))
    }
}

/// `reasoning` request settings. `generate_summary` (deprecated), `mode`,
/// `context` travel in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ReasoningConfig {
    /// `none`/`minimal`/`low`/`medium`/`high`/`xhigh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    /// `auto`/`concise`/`detailed`: ask for reasoning summaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text` settings; `verbosity` travels in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TextConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema(JsonSchemaFormat),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: String,
    pub schema: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// A response object (`object: "response"`), returned by non-streaming
/// calls and carried by the lifecycle stream events. Fields the API always
/// sends are serialized even when `null`. The echoed request settings
/// (`reasoning`, `text`, `tools`, ...) are kept loosely typed: only the
/// generated parts matter to the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, deserialize_with = "null_default")]
    pub id: String,
    #[serde(default = "response_object")]
    pub object: String,
    /// Unix seconds (the SDK types it as a float; the API sends integers).
    #[serde(default, deserialize_with = "unix_seconds")]
    pub created_at: u64,
    /// `completed`/`incomplete`/`failed`/`in_progress`/`queued`/`cancelled`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub error: Option<ResponseError>,
    #[serde(default)]
    pub incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    pub instructions: Option<Value>,
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "null_default")]
    pub model: String,
    #[serde(default, deserialize_with = "null_default")]
    pub output: Vec<Item>,
    #[serde(default = "yes", deserialize_with = "null_yes")]
    pub parallel_tool_calls: bool,
    #[serde(default)]
    pub previous_response_id: Option<String>,
    #[serde(default)]
    pub reasoning: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub text: Option<Value>,
    #[serde(default)]
    pub tool_choice: Option<Value>,
    #[serde(default, deserialize_with = "null_default")]
    pub tools: Vec<Value>,
    #[serde(default)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub truncation: Option<String>,
    #[serde(default)]
    pub usage: Option<ResponseUsage>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn response_object() -> String {
    "response".to_owned()
}

fn yes() -> bool {
    true
}

/// OpenAI-compatible servers send `null` where the API always has a value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn null_yes<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(true))
}

fn unix_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let secs = Option::<f64>::deserialize(d)?.unwrap_or(0.0);
    // `as` saturates; negative and NaN become 0.
    Ok(secs as u64)
}

/// `Response.error` of a failed response (also in `response.failed`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseError {
    #[serde(default, deserialize_with = "opt_text")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_text"
    )]
    pub kind: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IncompleteDetails {
    /// `max_output_tokens`/`content_filter`/`max_messages`/`steered`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `ResponseUsage`. Counts follow OpenAI semantics (input includes cached,
/// output includes reasoning); missing or `null` counts read as 0.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ResponseUsage {
    #[serde(default, deserialize_with = "count")]
    pub input_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: Option<InputTokensDetails>,
    #[serde(default, deserialize_with = "count")]
    pub output_tokens: u64,
    #[serde(default)]
    pub output_tokens_details: Option<OutputTokensDetails>,
    #[serde(default, deserialize_with = "count")]
    pub total_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    #[serde(default, deserialize_with = "count")]
    pub cached_tokens: u64,
    /// Newer API versions report prompt-cache writes here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_tokens: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    #[serde(default, deserialize_with = "count")]
    pub reasoning_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

fn count<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    Ok(Option::<u64>::deserialize(d)?.unwrap_or(0))
}

/// Error codes arrive as strings, but some vendors send numbers.
fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// One server-sent event of a streamed response; `type` is both the SSE
/// `event:` name and the tag inside `data`. Every event carries the
/// `sequence_number` the API assigns (read as 0 when a vendor omits it).
/// Event types the gateway does not use (hosted-tool progress, annotations,
/// audio, ...) read as [`StreamEvent::Unknown`]. Per-event additions such as
/// `obfuscation` are not kept: events are consumed, never re-emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum StreamEvent {
    #[serde(rename = "response.created")]
    Created(ResponseEvent),
    #[serde(rename = "response.queued")]
    Queued(ResponseEvent),
    #[serde(rename = "response.in_progress")]
    InProgress(ResponseEvent),
    #[serde(rename = "response.completed")]
    Completed(ResponseEvent),
    #[serde(rename = "response.incomplete")]
    Incomplete(ResponseEvent),
    #[serde(rename = "response.failed")]
    Failed(ResponseEvent),
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded(OutputItemEvent),
    #[serde(rename = "response.output_item.done")]
    OutputItemDone(OutputItemEvent),
    #[serde(rename = "response.content_part.added")]
    ContentPartAdded(ContentPartEvent),
    #[serde(rename = "response.content_part.done")]
    ContentPartDone(ContentPartEvent),
    #[serde(rename = "response.output_text.delta")]
    OutputTextDelta(ContentDeltaEvent),
    #[serde(rename = "response.output_text.done")]
    OutputTextDone(ContentTextDoneEvent),
    #[serde(rename = "response.refusal.delta")]
    RefusalDelta(ContentDeltaEvent),
    #[serde(rename = "response.refusal.done")]
    RefusalDone(RefusalDoneEvent),
    #[serde(rename = "response.function_call_arguments.delta")]
    FunctionCallArgumentsDelta(ArgumentsDeltaEvent),
    #[serde(rename = "response.function_call_arguments.done")]
    FunctionCallArgumentsDone(ArgumentsDoneEvent),
    #[serde(rename = "response.reasoning_summary_part.added")]
    ReasoningSummaryPartAdded(SummaryPartEvent),
    #[serde(rename = "response.reasoning_summary_part.done")]
    ReasoningSummaryPartDone(SummaryPartEvent),
    #[serde(rename = "response.reasoning_summary_text.delta")]
    ReasoningSummaryTextDelta(SummaryDeltaEvent),
    #[serde(rename = "response.reasoning_summary_text.done")]
    ReasoningSummaryTextDone(SummaryTextDoneEvent),
    #[serde(rename = "response.reasoning_text.delta")]
    ReasoningTextDelta(ContentDeltaEvent),
    #[serde(rename = "response.reasoning_text.done")]
    ReasoningTextDone(ContentTextDoneEvent),
    #[serde(rename = "error")]
    Error(ErrorEvent),
    #[serde(other)]
    Unknown,
}

impl StreamEvent {
    /// The `type` tag (the SSE event name).
    pub fn type_name(&self) -> &'static str {
        match self {
            StreamEvent::Created(_) => "response.created",
            StreamEvent::Queued(_) => "response.queued",
            StreamEvent::InProgress(_) => "response.in_progress",
            StreamEvent::Completed(_) => "response.completed",
            StreamEvent::Incomplete(_) => "response.incomplete",
            StreamEvent::Failed(_) => "response.failed",
            StreamEvent::OutputItemAdded(_) => "response.output_item.added",
            StreamEvent::OutputItemDone(_) => "response.output_item.done",
            StreamEvent::ContentPartAdded(_) => "response.content_part.added",
            StreamEvent::ContentPartDone(_) => "response.content_part.done",
            StreamEvent::OutputTextDelta(_) => "response.output_text.delta",
            StreamEvent::OutputTextDone(_) => "response.output_text.done",
            StreamEvent::RefusalDelta(_) => "response.refusal.delta",
            StreamEvent::RefusalDone(_) => "response.refusal.done",
            StreamEvent::FunctionCallArgumentsDelta(_) => "response.function_call_arguments.delta",
            StreamEvent::FunctionCallArgumentsDone(_) => "response.function_call_arguments.done",
            StreamEvent::ReasoningSummaryPartAdded(_) => "response.reasoning_summary_part.added",
            StreamEvent::ReasoningSummaryPartDone(_) => "response.reasoning_summary_part.done",
            StreamEvent::ReasoningSummaryTextDelta(_) => "response.reasoning_summary_text.delta",
            StreamEvent::ReasoningSummaryTextDone(_) => "response.reasoning_summary_text.done",
            StreamEvent::ReasoningTextDelta(_) => "response.reasoning_text.delta",
            StreamEvent::ReasoningTextDone(_) => "response.reasoning_text.done",
            StreamEvent::Error(_) => "error",
            StreamEvent::Unknown => "unknown",
        }
    }
}

/// `response.created`/`.in_progress`/`.completed`/`.incomplete`/`.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEvent {
    #[serde(default)]
    pub sequence_number: u64,
    pub response: Response,
}

/// `response.output_item.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputItemEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub output_index: u32,
    pub item: Item,
}

/// `response.content_part.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContentPartEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    pub part: ContentPart,
}

/// `response.output_text.delta`, `response.refusal.delta`,
/// `response.reasoning_text.delta`. Only text deltas carry `logprobs`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContentDeltaEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    pub delta: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Value>>,
}

/// `response.output_text.done`, `response.reasoning_text.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContentTextDoneEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Value>>,
}

/// `response.refusal.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RefusalDoneEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub content_index: u32,
    pub refusal: String,
}

/// `response.function_call_arguments.delta`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArgumentsDeltaEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    pub delta: String,
}

/// `response.function_call_arguments.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ArgumentsDoneEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    pub arguments: String,
}

/// `response.reasoning_summary_part.added` / `.done`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryPartEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub summary_index: u32,
    pub part: SummaryText,
}

/// `response.reasoning_summary_text.delta`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SummaryDeltaEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub summary_index: u32,
    pub delta: String,
}

/// `response.reasoning_summary_text.done`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SummaryTextDoneEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default)]
    pub item_id: String,
    #[serde(default)]
    pub output_index: u32,
    #[serde(default)]
    pub summary_index: u32,
    pub text: String,
}

/// The `error` event: `code`/`message`/`param` at the top level per the API
/// reference; some servers nest them in an `error` object instead.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ErrorEvent {
    #[serde(default)]
    pub sequence_number: u64,
    #[serde(default, deserialize_with = "opt_text")]
    pub code: Option<String>,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ResponseError>,
}
