//! OpenAI Chat Completions <-> IR, both directions, streaming included.
//!
//! This pair carries most cross-format traffic: OpenAI clients talking to
//! Anthropic/Gemini upstreams (`request_to_ir`, [`StreamEncoder`]) and
//! Anthropic/Gemini clients talking to OpenAI-compatible vendors
//! (`request_from_ir`, [`StreamDecoder`]). Ingress is lenient about the
//! shapes real clients send (Anthropic-style `cache_control` and
//! `thinking`, DeepSeek `reasoning_content`, legacy `functions`); egress
//! sticks to what the widest range of OpenAI-compatible servers accept,
//! with [`OpenAiOptions`] for the vendor differences.
//!
//! Lossy spots, by design:
//! - Leading `system`/`developer` messages become IR `system` parts; they
//!   are sent back as one `system` message (string content), because
//!   several vendors (Groq, many chat templates) accept only one system
//!   message with string content and reject `developer`.
//! - `n > 1`: only choice 0 is read from responses and streams.
//! - Uploaded-file references (`file_id`) and custom tools cannot be
//!   expressed in other formats and are rejected with a 400.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{ConvertError, DecodeStream, EncodeStream};
use crate::body::write_json_string;
use crate::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use crate::sse::{DONE_FRAME, SseEvent};
use crate::wire::openai as wire;

// ---------------------------------------------------------------------------
// Field paths for error messages

/// Where a value sits in the request body, rendered only on error
/// (`messages[2].content[0].image_url.url`).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'static str),
    Index(&'a Path<'a>, usize),
}

const ROOT: Path<'static> = Path::Root;

impl<'a> Path<'a> {
    fn key(&'a self, key: &'static str) -> Path<'a> {
        Path::Key(self, key)
    }

    fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    fn err(&self, message: impl Into<String>) -> ConvertError {
        ConvertError::invalid(self.to_string(), message)
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

type Object = Map<String, Value>;

/// Removes `key`; an explicit `null` counts as absent (the SDK's
/// `Optional` fields).
fn take(obj: &mut Object, key: &str) -> Option<Value> {
    match obj.remove(key) {
        Some(Value::Null) | None => None,
        v => v,
    }
}

fn take_str(
    obj: &mut Object,
    key: &'static str,
    at: &Path,
) -> Result<Option<String>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(at.key(key).err("expected a string")),
    }
}

fn need_str(obj: &mut Object, key: &'static str, at: &Path) -> Result<String, ConvertError> {
    take_str(obj, key, at)?.ok_or_else(|| at.key(key).err("required"))
}

fn take_f64(obj: &mut Object, key: &'static str, at: &Path) -> Result<Option<f64>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| at.key(key).err("expected a number")),
    }
}

/// A non-negative integer; `512.0` is accepted (some clients serialize
/// every number as a float).
fn take_u64(obj: &mut Object, key: &'static str, at: &Path) -> Result<Option<u64>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(v) => as_u64(&v)
            .map(Some)
            .ok_or_else(|| at.key(key).err("expected a non-negative integer")),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        let f = v.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64).then_some(f as u64)
    })
}

fn take_i64(obj: &mut Object, key: &'static str, at: &Path) -> Result<Option<i64>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| at.key(key).err("expected an integer")),
    }
}

fn take_bool(obj: &mut Object, key: &'static str, at: &Path) -> Result<Option<bool>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(at.key(key).err("expected a boolean")),
    }
}

fn take_object(
    obj: &mut Object,
    key: &'static str,
    at: &Path,
) -> Result<Option<Object>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(at.key(key).err("expected an object")),
    }
}

fn need_object(obj: &mut Object, key: &'static str, at: &Path) -> Result<Object, ConvertError> {
    take_object(obj, key, at)?.ok_or_else(|| at.key(key).err("required"))
}

fn take_array(
    obj: &mut Object,
    key: &'static str,
    at: &Path,
) -> Result<Option<Vec<Value>>, ConvertError> {
    match take(obj, key) {
        None => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(_) => Err(at.key(key).err("expected an array")),
    }
}

fn into_object(v: Value, at: &Path) -> Result<Object, ConvertError> {
    match v {
        Value::Object(o) => Ok(o),
        _ => Err(at.err("expected an object")),
    }
}

// ---------------------------------------------------------------------------
// Request: OpenAI -> IR

/// Top-level fields read into the IR (everything else goes to `extra`).
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "stream",
    "stream_options",
    "response_format",
    "reasoning_effort",
    "user",
    "thinking",
    "functions",
    "function_call",
];

/// Parses a Chat Completions request body.
///
/// Besides the documented fields it reads the extensions clients send to
/// OpenAI-compatible vendors: `top_k`, Anthropic-style `thinking`
/// (`{type, budget_tokens}`), `cache_control` on content parts and tools,
/// `reasoning_content`/`reasoning` on assistant history, and the legacy
/// `functions`/`function_call`/`function` role. Unknown top-level fields
/// land in `extra` (`extra_format` = OpenAI Chat).
pub fn request_to_ir(body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let value: Value = serde_json::from_slice(body)?;
    let Value::Object(mut obj) = value else {
        return Err(ConvertError::Json("expected a JSON object".to_owned()));
    };
    let at = &ROOT;
    let mut req = ChatRequest {
        model: need_str(&mut obj, "model", at)?,
        ..ChatRequest::default()
    };

    let messages =
        take_array(&mut obj, "messages", at)?.ok_or_else(|| at.key("messages").err("required"))?;
    read_messages(messages, &mut req)?;

    if let Some(tools) = take_array(&mut obj, "tools", at)? {
        let at = at.key("tools");
        for (i, tool) in tools.into_iter().enumerate() {
            req.tools.push(read_tool(tool, &at.index(i))?);
        }
    }
    if let Some(functions) = take_array(&mut obj, "functions", at)? {
        let at = at.key("functions");
        for (i, f) in functions.into_iter().enumerate() {
            let at = at.index(i);
            req.tools
                .push(read_function(into_object(f, &at)?, None, &at)?);
        }
    }
    let legacy_choice = take(&mut obj, "function_call");
    match take(&mut obj, "tool_choice") {
        Some(choice) => req.tool_choice = read_tool_choice(choice, &mut req.tools, at)?,
        None => {
            if let Some(choice) = legacy_choice {
                req.tool_choice = Some(read_function_call_choice(choice)?);
            }
        }
    }
    req.parallel_tool_calls = take_bool(&mut obj, "parallel_tool_calls", at)?;

    let max_tokens = take_u64(&mut obj, "max_tokens", at)?;
    req.max_tokens = take_u64(&mut obj, "max_completion_tokens", at)?.or(max_tokens);
    req.temperature = take_f64(&mut obj, "temperature", at)?;
    req.top_p = take_f64(&mut obj, "top_p", at)?;
    req.top_k = take_u64(&mut obj, "top_k", at)?;
    req.stop = match take(&mut obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => {
            let at = at.key("stop");
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    _ => Err(at.index(i).err("expected a string")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => {
            return Err(at
                .key("stop")
                .err("expected a string or an array of strings"));
        }
    };
    req.seed = take_i64(&mut obj, "seed", at)?;
    req.presence_penalty = take_f64(&mut obj, "presence_penalty", at)?;
    req.frequency_penalty = take_f64(&mut obj, "frequency_penalty", at)?;
    req.n = match take_u64(&mut obj, "n", at)? {
        None => None,
        Some(n) => Some(u32::try_from(n).map_err(|_| at.key("n").err("too large"))?),
    };
    req.stream = take_bool(&mut obj, "stream", at)?.unwrap_or(false);
    if let Some(mut opts) = take_object(&mut obj, "stream_options", at)? {
        req.include_usage =
            take_bool(&mut opts, "include_usage", &at.key("stream_options"))?.unwrap_or(false);
    }
    if let Some(format) = take_object(&mut obj, "response_format", at)? {
        req.response_format = Some(read_response_format(format, &at.key("response_format"))?);
    }
    req.reasoning = read_reasoning(&mut obj)?;
    req.user = take_str(&mut obj, "user", at)?;

    for key in KNOWN_FIELDS {
        obj.remove(*key);
    }
    req.extra = obj;
    req.extra_format = Some(Format::OpenAiChat);
    Ok(req)
}

/// Legacy `function_call` calls have no ids: they get `call_<n>` and the
/// `function` messages answering them are matched by name, in order.
#[derive(Default)]
struct LegacyCalls {
    pending: Vec<(String, String)>,
    next: usize,
}

impl LegacyCalls {
    fn call(&mut self, name: &str) -> String {
        let id = format!("call_{}", self.next);
        self.next += 1;
        self.pending.push((id.clone(), name.to_owned()));
        id
    }

    fn result(&mut self, name: &str) -> String {
        match self.pending.iter().position(|(_, n)| n == name) {
            Some(i) => self.pending.remove(i).0,
            None => {
                let id = format!("call_{}", self.next);
                self.next += 1;
                id
            }
        }
    }
}

fn read_messages(messages: Vec<Value>, req: &mut ChatRequest) -> Result<(), ConvertError> {
    let list = ROOT.key("messages");
    let mut leading = true;
    let mut legacy = LegacyCalls::default();
    for (i, m) in messages.into_iter().enumerate() {
        let at = list.index(i);
        let mut m = into_object(m, &at)?;
        let role = need_str(&mut m, "role", &at)?;
        let name = take_str(&mut m, "name", &at)?;
        let content_at = at.key("content");
        match role.as_str() {
            "system" | "developer" => {
                let content = read_content(take(&mut m, "content"), &content_at)?;
                if leading {
                    req.system.extend(content);
                } else {
                    req.messages.push(Message {
                        role: Role::System,
                        content,
                        name,
                    });
                }
                continue;
            }
            "user" => {
                let content = read_content(take(&mut m, "content"), &content_at)?;
                req.messages.push(Message {
                    role: Role::User,
                    content,
                    name,
                });
            }
            "assistant" => {
                let content = read_assistant(&mut m, &at, &mut legacy)?;
                req.messages.push(Message {
                    role: Role::Assistant,
                    content,
                    name,
                });
            }
            "tool" => {
                let call_id = need_str(&mut m, "tool_call_id", &at)?;
                let content = read_content(take(&mut m, "content"), &content_at)?;
                req.messages
                    .push(tool_result_message(call_id, None, content));
            }
            "function" => {
                let name = name.ok_or_else(|| at.key("name").err("required"))?;
                let content = match take(&mut m, "content") {
                    None => Vec::new(),
                    Some(Value::String(s)) => text_parts(s),
                    Some(_) => return Err(content_at.err("expected a string")),
                };
                let call_id = legacy.result(&name);
                req.messages
                    .push(tool_result_message(call_id, Some(name), content));
            }
            other => {
                return Err(at.key("role").err(format!(
                    "unknown role {other:?}; expected system, developer, user, assistant, tool or function"
                )));
            }
        }
        leading = false;
    }
    Ok(())
}

fn tool_result_message(call_id: String, name: Option<String>, content: Vec<Part>) -> Message {
    Message {
        role: Role::Tool,
        content: vec![Part::ToolResult {
            call_id,
            name,
            content,
            is_error: false,
            cache_control: None,
        }],
        name: None,
    }
}

/// A non-empty string as one text part (empty text blocks are rejected by
/// Anthropic, and carry nothing).
fn text_parts(s: String) -> Vec<Part> {
    if s.is_empty() {
        Vec::new()
    } else {
        vec![Part::text(s)]
    }
}

fn read_content(content: Option<Value>, at: &Path) -> Result<Vec<Part>, ConvertError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(text_parts(s)),
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (j, item) in items.into_iter().enumerate() {
                if let Some(part) = read_part(item, &at.index(j))? {
                    parts.push(part);
                }
            }
            Ok(parts)
        }
        Some(_) => Err(at.err("expected a string or an array")),
    }
}

/// One content part; `None` for an empty text part without a cache marker.
fn read_part(item: Value, at: &Path) -> Result<Option<Part>, ConvertError> {
    let mut p = into_object(item, at)?;
    let kind = need_str(&mut p, "type", at)?;
    let cache_control = take(&mut p, "cache_control");
    let part = match kind.as_str() {
        "text" => {
            let text = need_str(&mut p, "text", at)?;
            if text.is_empty() && cache_control.is_none() {
                return Ok(None);
            }
            Part::Text {
                text,
                cache_control,
            }
        }
        // Assistant history only; the words the model said.
        "refusal" => Part::text(need_str(&mut p, "refusal", at)?),
        "image_url" => {
            let image_at = at.key("image_url");
            let (url, detail) = match take(&mut p, "image_url") {
                // Accepted by several vendors and older SDKs.
                Some(Value::String(url)) => (url, None),
                Some(Value::Object(mut img)) => (
                    need_str(&mut img, "url", &image_at)?,
                    take_str(&mut img, "detail", &image_at)?,
                ),
                Some(_) => return Err(image_at.err("expected an object")),
                None => return Err(image_at.err("required")),
            };
            Part::Image {
                source: MediaSource::from_url(&url),
                detail,
                cache_control,
            }
        }
        "input_audio" => {
            let audio_at = at.key("input_audio");
            let mut audio = need_object(&mut p, "input_audio", at)?;
            Part::Audio {
                data: need_str(&mut audio, "data", &audio_at)?,
                format: need_str(&mut audio, "format", &audio_at)?,
            }
        }
        "file" => {
            let file_at = at.key("file");
            let mut file = need_object(&mut p, "file", at)?;
            let filename = take_str(&mut file, "filename", &file_at)?;
            match take_str(&mut file, "file_data", &file_at)? {
                Some(data) => Part::File {
                    source: file_source(data, filename.as_deref()),
                    filename,
                    cache_control,
                },
                None if take_str(&mut file, "file_id", &file_at)?.is_some() => {
                    return Err(file_at.key("file_id").err(
                        "uploaded file references cannot be sent to this model's API; send the content as file_data",
                    ));
                }
                None => return Err(file_at.key("file_data").err("required")),
            }
        }
        other => {
            return Err(at
                .key("type")
                .err(format!("unsupported content part type {other:?}")));
        }
    };
    Ok(Some(part))
}

/// `file_data` is documented as base64 and sent by the SDK examples as a
/// `data:` URL; bare base64 gets its type from the file name.
fn file_source(data: String, filename: Option<&str>) -> MediaSource {
    if data.starts_with("data:") {
        return MediaSource::from_url(&data);
    }
    let ext = filename
        .and_then(|f| f.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase());
    let media_type = match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("md") => "text/markdown",
        Some("csv") => "text/csv",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        // PDF is what Chat Completions file inputs are for.
        _ => "application/pdf",
    };
    MediaSource::Base64 {
        media_type: media_type.to_owned(),
        data,
    }
}

/// Assistant history: reasoning first, then text, then tool calls.
fn read_assistant(
    m: &mut Object,
    at: &Path,
    legacy: &mut LegacyCalls,
) -> Result<Vec<Part>, ConvertError> {
    let mut parts = Vec::new();
    let reasoning_content = take_str(m, "reasoning_content", at)?;
    let reasoning = take_str(m, "reasoning", at)?;
    if let Some(text) = reasoning_content.or(reasoning).filter(|t| !t.is_empty()) {
        parts.push(Part::Reasoning {
            text,
            signature: None,
        });
    }
    parts.extend(read_content(take(m, "content"), &at.key("content"))?);
    if let Some(refusal) = take_str(m, "refusal", at)? {
        parts.extend(text_parts(refusal));
    }
    if let Some(calls) = take_array(m, "tool_calls", at)? {
        let calls_at = at.key("tool_calls");
        for (k, call) in calls.into_iter().enumerate() {
            let at = calls_at.index(k);
            let mut call = into_object(call, &at)?;
            let id = need_str(&mut call, "id", &at)?;
            let kind = take_str(&mut call, "type", &at)?;
            match kind.as_deref() {
                None | Some("function") => {}
                Some("custom") => {
                    return Err(
                        at.err("custom tool calls cannot be converted to other API formats")
                    );
                }
                Some(other) => {
                    return Err(at
                        .key("type")
                        .err(format!("unknown tool call type {other:?}")));
                }
            }
            let f_at = at.key("function");
            let mut f = need_object(&mut call, "function", &at)?;
            parts.push(Part::ToolCall {
                id,
                name: need_str(&mut f, "name", &f_at)?,
                arguments: read_arguments(take(&mut f, "arguments"), &f_at)?,
                signature: None,
            });
        }
    }
    if let Some(mut f) = take_object(m, "function_call", at)? {
        let f_at = at.key("function_call");
        let name = need_str(&mut f, "name", &f_at)?;
        parts.push(Part::ToolCall {
            id: legacy.call(&name),
            arguments: read_arguments(take(&mut f, "arguments"), &f_at)?,
            name,
            signature: None,
        });
    }
    Ok(parts)
}

/// Arguments are JSON text; some clients send the object itself.
fn read_arguments(v: Option<Value>, at: &Path) -> Result<String, ConvertError> {
    match v {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(v @ Value::Object(_)) => Ok(v.to_string()),
        Some(_) => Err(at.key("arguments").err("expected a string")),
    }
}

fn read_tool(tool: Value, at: &Path) -> Result<Tool, ConvertError> {
    let mut tool = into_object(tool, at)?;
    match take_str(&mut tool, "type", at)?.as_deref() {
        None | Some("function") => {}
        Some("custom") => {
            return Err(at.err("custom tools cannot be converted to other API formats"));
        }
        Some(other) => return Err(at.key("type").err(format!("unknown tool type {other:?}"))),
    }
    let cache_control = take(&mut tool, "cache_control");
    let f = need_object(&mut tool, "function", at)?;
    read_function(f, cache_control, &at.key("function"))
}

fn read_function(
    mut f: Object,
    cache_control: Option<Value>,
    at: &Path,
) -> Result<Tool, ConvertError> {
    let parameters = match take(&mut f, "parameters") {
        None => serde_json::json!({"type": "object"}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(at.key("parameters").err("expected an object")),
    };
    Ok(Tool {
        name: need_str(&mut f, "name", at)?,
        description: take_str(&mut f, "description", at)?,
        parameters,
        strict: take_bool(&mut f, "strict", at)?,
        cache_control,
    })
}

/// `allowed_tools` narrows the tool list for this turn; the IR has no such
/// notion, so the list itself is narrowed (same effect on the model).
fn read_tool_choice(
    choice: Value,
    tools: &mut Vec<Tool>,
    at: &Path,
) -> Result<Option<ToolChoice>, ConvertError> {
    let at = at.key("tool_choice");
    let mut obj = match choice {
        Value::String(s) => return mode(&s).map(Some).ok_or_else(|| bad_choice(&at)),
        Value::Object(obj) => obj,
        _ => return Err(bad_choice(&at)),
    };
    match need_str(&mut obj, "type", &at)?.as_str() {
        "function" => {
            let mut f = need_object(&mut obj, "function", &at)?;
            let name = need_str(&mut f, "name", &at.key("function"))?;
            Ok(Some(ToolChoice::Named(name)))
        }
        "allowed_tools" => {
            let allowed_at = at.key("allowed_tools");
            let mut allowed = need_object(&mut obj, "allowed_tools", &at)?;
            let mode_str = need_str(&mut allowed, "mode", &allowed_at)?;
            let choice = mode(&mode_str)
                .ok_or_else(|| allowed_at.key("mode").err("expected auto or required"))?;
            let list_at = allowed_at.key("tools");
            let list = take_array(&mut allowed, "tools", &allowed_at)?
                .ok_or_else(|| list_at.err("required"))?;
            let mut names = Vec::with_capacity(list.len());
            for (i, t) in list.into_iter().enumerate() {
                let t_at = list_at.index(i);
                let mut t = into_object(t, &t_at)?;
                let mut f = need_object(&mut t, "function", &t_at)?;
                names.push(need_str(&mut f, "name", &t_at.key("function"))?);
            }
            tools.retain(|t| names.contains(&t.name));
            Ok(Some(choice))
        }
        "custom" => Err(at.err("custom tools cannot be converted to other API formats")),
        _ => Err(bad_choice(&at)),
    }
}

fn mode(s: &str) -> Option<ToolChoice> {
    match s {
        "none" => Some(ToolChoice::None),
        "auto" => Some(ToolChoice::Auto),
        "required" => Some(ToolChoice::Required),
        _ => None,
    }
}

fn bad_choice(at: &Path) -> ConvertError {
    at.err(
        "expected \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}",
    )
}

fn read_function_call_choice(choice: Value) -> Result<ToolChoice, ConvertError> {
    let at = ROOT.key("function_call");
    match choice {
        Value::String(s) if s == "none" => Ok(ToolChoice::None),
        Value::String(s) if s == "auto" => Ok(ToolChoice::Auto),
        Value::Object(mut obj) => Ok(ToolChoice::Named(need_str(&mut obj, "name", &at)?)),
        _ => Err(at.err("expected \"none\", \"auto\" or {\"name\":...}")),
    }
}

fn read_response_format(mut f: Object, at: &Path) -> Result<ResponseFormat, ConvertError> {
    match need_str(&mut f, "type", at)?.as_str() {
        "text" => Ok(ResponseFormat::Text),
        "json_object" => Ok(ResponseFormat::JsonObject),
        "json_schema" => {
            let s_at = at.key("json_schema");
            let mut s = need_object(&mut f, "json_schema", at)?;
            Ok(ResponseFormat::JsonSchema {
                name: need_str(&mut s, "name", &s_at)?,
                schema: take(&mut s, "schema").unwrap_or_else(|| Value::Object(Map::new())),
                strict: take_bool(&mut s, "strict", &s_at)?,
            })
        }
        other => Err(at.key("type").err(format!(
            "unknown response format {other:?}; expected text, json_object or json_schema"
        ))),
    }
}

/// `reasoning_effort` plus the Anthropic-style `thinking` object some
/// clients send to OpenAI-compatible endpoints.
fn read_reasoning(obj: &mut Object) -> Result<Option<Reasoning>, ConvertError> {
    let at = &ROOT;
    let effort = take_str(obj, "reasoning_effort", at)?;
    let thinking = take_object(obj, "thinking", at)?;
    if effort.is_none() && thinking.is_none() {
        return Ok(None);
    }
    let mut r = Reasoning {
        enabled: (effort.as_deref() == Some("none")).then_some(false),
        effort,
        ..Reasoning::default()
    };
    if let Some(mut t) = thinking {
        let t_at = at.key("thinking");
        match take_str(&mut t, "type", &t_at)?.as_deref() {
            Some("enabled") => r.enabled = Some(true),
            Some("disabled") => r.enabled = Some(false),
            _ => {}
        }
        r.budget_tokens = take_u64(&mut t, "budget_tokens", &t_at)?;
    }
    Ok(Some(r))
}

// ---------------------------------------------------------------------------
// Request: IR -> OpenAI

/// Which field carries the output-token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxTokensField {
    /// `max_tokens`: understood by nearly every OpenAI-compatible vendor,
    /// rejected by OpenAI's reasoning models.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: what OpenAI itself wants.
    MaxCompletionTokens,
}

/// Upstream differences among OpenAI-compatible vendors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiOptions {
    /// Send assistant reasoning back as `reasoning_content`. DeepSeek needs
    /// it on tool-call turns in thinking mode; OpenAI rejects the field.
    pub send_reasoning_content: bool,
    pub max_tokens_field: MaxTokensField,
    /// Ask for `stream_options.include_usage` on every streamed request,
    /// so usage is known even when the client did not ask for it.
    pub stream_include_usage: bool,
    /// Keep Anthropic-style `cache_control` markers on content parts (for
    /// vendors such as OpenRouter that forward them to Anthropic); OpenAI
    /// rejects them.
    pub send_cache_control: bool,
    /// Leave out `presence_penalty`, `frequency_penalty` and `stop`: xAI's
    /// reasoning models answer 400 to them.
    pub omit_penalties_and_stop: bool,
    /// Leave out `reasoning_effort`: xAI models without an effort setting
    /// answer 400 to it.
    pub omit_reasoning_effort: bool,
    /// Databricks: signed assistant reasoning goes back as a `reasoning`
    /// content block (Claude needs its thinking with the signature).
    pub send_reasoning_blocks: bool,
    /// Ask for reasoning with Anthropic's `thinking` object instead of
    /// `reasoning_effort` (Claude models on Databricks take only that).
    pub thinking_object: bool,
}

impl Default for OpenAiOptions {
    fn default() -> Self {
        OpenAiOptions {
            send_reasoning_content: false,
            max_tokens_field: MaxTokensField::MaxTokens,
            stream_include_usage: true,
            send_cache_control: false,
            omit_penalties_and_stop: false,
            omit_reasoning_effort: false,
            send_reasoning_blocks: false,
            thinking_object: false,
        }
    }
}

impl OpenAiOptions {
    /// Top-level request fields this vendor must not receive: what a
    /// same-format body (passed through byte for byte) has removed.
    pub fn omitted_fields(&self) -> impl Iterator<Item = &'static str> + '_ {
        const PENALTIES_AND_STOP: [&str; 3] = ["presence_penalty", "frequency_penalty", "stop"];
        let penalties = PENALTIES_AND_STOP
            .iter()
            .filter(|_| self.omit_penalties_and_stop);
        let effort = ["reasoning_effort"]
            .into_iter()
            .filter(|_| self.omit_reasoning_effort);
        penalties.copied().chain(effort)
    }
}

/// [`request_from_ir_with`] the default [`OpenAiOptions`].
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    request_from_ir_with(req, &OpenAiOptions::default())
}

/// Encodes a request for an OpenAI-compatible upstream.
///
/// All system instructions become one leading `system` message; tool
/// results become `tool` messages (one per result, in order), and media
/// inside tool results, which `tool` messages cannot carry, follows them in
/// a `user` message. `top_k` and `extra` are sent only when the request
/// came from an OpenAI-format client (`extra_format`), since OpenAI itself
/// rejects unknown fields.
pub fn request_from_ir_with(
    req: &ChatRequest,
    opts: &OpenAiOptions,
) -> Result<Vec<u8>, ConvertError> {
    let from_openai = req.extra_format == Some(Format::OpenAiChat);
    let mut out = wire::ChatCompletionRequest {
        model: req.model.clone(),
        messages: encode_messages(req, opts)?,
        ..wire::ChatCompletionRequest::default()
    };
    if !req.tools.is_empty() {
        out.tools = Some(req.tools.iter().map(encode_tool).collect());
        out.tool_choice = req.tool_choice.as_ref().map(|c| match c {
            ToolChoice::None => wire::ToolChoiceOption::Mode("none".to_owned()),
            ToolChoice::Auto => wire::ToolChoiceOption::Mode("auto".to_owned()),
            ToolChoice::Required => wire::ToolChoiceOption::Mode("required".to_owned()),
            ToolChoice::Named(name) => {
                wire::ToolChoiceOption::Named(wire::NamedToolChoice::function(name.clone()))
            }
        });
        // OpenAI rejects `parallel_tool_calls` without `tools`.
        out.parallel_tool_calls = req.parallel_tool_calls;
    }
    match opts.max_tokens_field {
        MaxTokensField::MaxTokens => out.max_tokens = req.max_tokens,
        MaxTokensField::MaxCompletionTokens => out.max_completion_tokens = req.max_tokens,
    }
    out.temperature = req.temperature;
    out.top_p = req.top_p;
    if from_openai {
        out.top_k = req.top_k;
    }
    out.stop = match req.stop.as_slice() {
        [] => None,
        [one] => Some(wire::Stop::One(one.clone())),
        many => Some(wire::Stop::Many(many.to_vec())),
    };
    if opts.omit_penalties_and_stop {
        out.stop = None;
    } else {
        out.presence_penalty = req.presence_penalty;
        out.frequency_penalty = req.frequency_penalty;
    }
    out.seed = req.seed;
    out.n = req.n;
    if req.stream {
        out.stream = Some(true);
        if req.include_usage || opts.stream_include_usage {
            out.stream_options = Some(wire::StreamOptions {
                include_usage: Some(true),
                ..wire::StreamOptions::default()
            });
        }
    }
    out.response_format = req.response_format.as_ref().map(|f| match f {
        ResponseFormat::Text => wire::ResponseFormat::Text,
        ResponseFormat::JsonObject => wire::ResponseFormat::JsonObject,
        ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        } => wire::ResponseFormat::JsonSchema {
            json_schema: wire::JsonSchemaFormat {
                name: name.clone(),
                description: None,
                schema: Some(schema.clone()),
                strict: *strict,
            },
        },
    });
    if !opts.thinking_object && !opts.omit_reasoning_effort {
        out.reasoning_effort = req.reasoning.as_ref().and_then(|r| r.effort.clone());
    }
    out.user = req.user.clone();
    if from_openai {
        out.extra = req
            .extra
            .iter()
            .filter(|(k, _)| !KNOWN_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    if opts.thinking_object
        && let Some(budget) = req.reasoning.as_ref().and_then(thinking_budget)
    {
        out.extra.insert(
            "thinking".to_owned(),
            serde_json::json!({"type": "enabled", "budget_tokens": budget}),
        );
        // The budget must be below `max_tokens`: room for the answer on top of it.
        let max = match req.max_tokens {
            Some(m) if m > budget => m,
            Some(m) => budget + m,
            None => super::anthropic::default_max_tokens(&req.model).max(budget + 1),
        };
        match opts.max_tokens_field {
            MaxTokensField::MaxTokens => out.max_tokens = Some(max),
            MaxTokensField::MaxCompletionTokens => out.max_completion_tokens = Some(max),
        }
    }
    Ok(serde_json::to_vec(&out)?)
}

/// The `thinking.budget_tokens` for an IR reasoning setting, or `None` when
/// it does not turn thinking on: the IR budget, else the effort's budget as
/// the Anthropic converter maps it, at least Anthropic's minimum.
fn thinking_budget(r: &Reasoning) -> Option<u64> {
    let effort = r.effort.as_deref().filter(|e| *e != "none");
    let off = r.enabled == Some(false)
        || r.effort.as_deref() == Some("none")
        || r.budget_tokens == Some(0);
    let wanted = r.enabled == Some(true) || r.budget_tokens.is_some() || effort.is_some();
    if off || !wanted {
        return None;
    }
    let budget = r
        .budget_tokens
        .or_else(|| effort.and_then(super::anthropic::effort_budget))
        .unwrap_or(super::anthropic::DEFAULT_THINKING_BUDGET);
    Some(budget.max(super::anthropic::MIN_THINKING_BUDGET))
}

fn encode_tool(t: &Tool) -> wire::ChatTool {
    wire::ChatTool {
        function: Some(wire::FunctionDefinition {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: Some(t.parameters.clone()),
            strict: t.strict,
        }),
        ..wire::ChatTool::default()
    }
}

/// Separator when several text parts must become one string.
const TEXT_JOIN: &str = "\n\n";

fn encode_messages(
    req: &ChatRequest,
    opts: &OpenAiOptions,
) -> Result<Vec<wire::RequestMessage>, ConvertError> {
    let mut out = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        out.push(wire::RequestMessage::System(wire::InstructionMessage {
            content: instruction_content(&req.system, opts, "system")?,
            name: None,
            extra: Map::new(),
        }));
    }
    // Media from tool results, waiting for the next `user` message.
    let mut media: Vec<&Part> = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System => {
                flush_media(&mut media, &mut out, opts)?;
                out.push(wire::RequestMessage::System(wire::InstructionMessage {
                    content: instruction_content(&m.content, opts, "system message")?,
                    name: m.name.clone(),
                    extra: Map::new(),
                }));
            }
            Role::Assistant => {
                flush_media(&mut media, &mut out, opts)?;
                out.push(wire::RequestMessage::Assistant(encode_assistant(
                    m, i, opts,
                )?));
            }
            Role::User | Role::Tool => encode_user_or_tool(m, i, opts, &mut media, &mut out)?,
        }
    }
    flush_media(&mut media, &mut out, opts)?;
    Ok(out)
}

fn has_cache_control(p: &Part) -> bool {
    matches!(
        p,
        Part::Text {
            cache_control: Some(_),
            ..
        } | Part::Image {
            cache_control: Some(_),
            ..
        } | Part::File {
            cache_control: Some(_),
            ..
        }
    )
}

/// Text-only content. A string unless cache markers must be kept, since
/// several vendors (Groq among them) accept only strings for system,
/// assistant and tool messages.
fn text_only_content(parts: &[&Part], opts: &OpenAiOptions) -> wire::MessageContent {
    if opts.send_cache_control && parts.iter().any(|p| has_cache_control(p)) {
        return wire::MessageContent::Parts(
            parts
                .iter()
                .filter_map(|p| match p {
                    Part::Text {
                        text,
                        cache_control,
                    } => Some(wire::ContentPart::Text(wire::TextPart {
                        text: text.clone(),
                        cache_control: cache_control.clone(),
                        extra: Map::new(),
                    })),
                    _ => None,
                })
                .collect(),
        );
    }
    let mut text = String::new();
    for (k, p) in parts.iter().enumerate() {
        if let Part::Text { text: t, .. } = p {
            if k > 0 {
                text.push_str(TEXT_JOIN);
            }
            text.push_str(t);
        }
    }
    wire::MessageContent::Text(text)
}

fn instruction_content(
    parts: &[Part],
    opts: &OpenAiOptions,
    what: &str,
) -> Result<wire::MessageContent, ConvertError> {
    let mut texts = Vec::with_capacity(parts.len());
    for p in parts {
        match p {
            Part::Text { .. } => texts.push(p),
            Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
            other => {
                return Err(ConvertError::Unsupported(format!(
                    "{} in a {what}",
                    part_kind(other)
                )));
            }
        }
    }
    Ok(text_only_content(&texts, opts))
}

fn part_kind(p: &Part) -> &'static str {
    match p {
        Part::Text { .. } => "text",
        Part::Image { .. } => "an image",
        Part::Audio { .. } => "audio",
        Part::File { .. } => "a file",
        Part::ToolCall { .. } => "a tool call",
        Part::ToolResult { .. } => "a tool result",
        Part::Reasoning { .. } => "reasoning",
        Part::RedactedReasoning { .. } => "redacted reasoning",
    }
}

fn encode_assistant(
    m: &Message,
    i: usize,
    opts: &OpenAiOptions,
) -> Result<wire::AssistantMessage, ConvertError> {
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let mut blocks = Vec::new();
    for p in &m.content {
        match p {
            Part::Text { .. } => texts.push(p),
            Part::Reasoning {
                text,
                signature: Some(sig),
            } if opts.send_reasoning_blocks => {
                blocks.push(wire::ContentPart::Reasoning(wire::ReasoningPart {
                    summary: vec![wire::SummaryText {
                        kind: "summary_text".to_owned(),
                        text: text.clone(),
                        signature: Some(sig.clone()),
                    }],
                }));
            }
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => calls.push(wire::ToolCall {
                id: id.clone(),
                function: wire::FunctionCall {
                    name: name.clone(),
                    arguments: if arguments.is_empty() {
                        "{}".to_owned()
                    } else {
                        arguments.clone()
                    },
                },
                ..wire::ToolCall::default()
            }),
            Part::Reasoning { text, .. } => reasoning.push_str(text),
            Part::RedactedReasoning { .. } => {}
            other => {
                return Err(ConvertError::Unsupported(format!(
                    "{} in an assistant message (messages[{i}])",
                    part_kind(other)
                )));
            }
        }
    }
    let content = if !blocks.is_empty() {
        // Reasoning first, as the answer had it; then the text as parts.
        blocks.extend(texts.iter().filter_map(|p| match p {
            Part::Text { text, .. } => Some(wire::ContentPart::Text(wire::TextPart {
                text: text.clone(),
                cache_control: None,
                extra: Map::new(),
            })),
            _ => None,
        }));
        Some(wire::MessageContent::Parts(blocks))
    } else if !texts.is_empty() {
        Some(text_only_content(&texts, opts))
    } else if calls.is_empty() {
        Some(wire::MessageContent::Text(String::new()))
    } else {
        None
    };
    Ok(wire::AssistantMessage {
        content,
        name: m.name.clone(),
        tool_calls: (!calls.is_empty()).then_some(calls),
        reasoning_content: (opts.send_reasoning_content && !reasoning.is_empty())
            .then_some(reasoning),
        ..wire::AssistantMessage::default()
    })
}

/// User content and tool results, split into `user` and `tool` messages in
/// order of appearance (Anthropic puts tool results inside user turns).
fn encode_user_or_tool<'a>(
    m: &'a Message,
    i: usize,
    opts: &OpenAiOptions,
    media: &mut Vec<&'a Part>,
    out: &mut Vec<wire::RequestMessage>,
) -> Result<(), ConvertError> {
    let mut user: Vec<&Part> = Vec::new();
    let mut any_result = false;
    for p in &m.content {
        match p {
            Part::ToolResult {
                call_id, content, ..
            } => {
                if !user.is_empty() {
                    push_user(std::mem::take(&mut user), m, media, out, opts)?;
                }
                any_result = true;
                let mut texts = Vec::new();
                for c in content {
                    match c {
                        Part::Text { .. } => texts.push(c),
                        Part::Image { .. } | Part::Audio { .. } | Part::File { .. } => {
                            media.push(c)
                        }
                        Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
                        other => {
                            return Err(ConvertError::Unsupported(format!(
                                "{} inside a tool result (messages[{i}])",
                                part_kind(other)
                            )));
                        }
                    }
                }
                out.push(wire::RequestMessage::Tool(wire::ToolMessage {
                    content: text_only_content(&texts, opts),
                    tool_call_id: call_id.clone(),
                    extra: Map::new(),
                }));
            }
            Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
            Part::ToolCall { .. } => {
                return Err(ConvertError::Unsupported(format!(
                    "a tool call in a user message (messages[{i}])"
                )));
            }
            _ => user.push(p),
        }
    }
    if !user.is_empty() || (!any_result && m.role == Role::User) {
        push_user(user, m, media, out, opts)?;
    }
    Ok(())
}

/// A `user` message: pending tool-result media first, then `parts`.
fn push_user(
    parts: Vec<&Part>,
    m: &Message,
    media: &mut Vec<&Part>,
    out: &mut Vec<wire::RequestMessage>,
    opts: &OpenAiOptions,
) -> Result<(), ConvertError> {
    let mut all = std::mem::take(media);
    all.extend(parts);
    out.push(wire::RequestMessage::User(wire::UserMessage {
        content: user_content(&all, opts)?,
        name: m.name.clone(),
        extra: Map::new(),
    }));
    Ok(())
}

fn flush_media(
    media: &mut Vec<&Part>,
    out: &mut Vec<wire::RequestMessage>,
    opts: &OpenAiOptions,
) -> Result<(), ConvertError> {
    if media.is_empty() {
        return Ok(());
    }
    let parts = std::mem::take(media);
    out.push(wire::RequestMessage::User(wire::UserMessage {
        content: user_content(&parts, opts)?,
        name: None,
        extra: Map::new(),
    }));
    Ok(())
}

/// A single plain text part stays a string; anything else is an array.
fn user_content(
    parts: &[&Part],
    opts: &OpenAiOptions,
) -> Result<wire::MessageContent, ConvertError> {
    let cache = |c: &Option<Value>| c.clone().filter(|_| opts.send_cache_control);
    match parts {
        [] => return Ok(wire::MessageContent::Text(String::new())),
        [
            Part::Text {
                text,
                cache_control,
            },
        ] if cache(cache_control).is_none() => {
            return Ok(wire::MessageContent::Text(text.clone()));
        }
        _ => {}
    }
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        out.push(match p {
            Part::Text {
                text,
                cache_control,
            } => wire::ContentPart::Text(wire::TextPart {
                text: text.clone(),
                cache_control: cache(cache_control),
                extra: Map::new(),
            }),
            Part::Image {
                source,
                detail,
                cache_control,
            } => wire::ContentPart::ImageUrl(wire::ImagePart {
                image_url: wire::ImageUrl {
                    url: source.to_url(),
                    detail: detail.clone(),
                },
                cache_control: cache(cache_control),
                extra: Map::new(),
            }),
            Part::Audio { data, format } => wire::ContentPart::InputAudio(wire::AudioPart {
                input_audio: wire::InputAudio {
                    data: data.clone(),
                    format: format.clone(),
                },
                extra: Map::new(),
            }),
            Part::File {
                source: source @ MediaSource::Base64 { .. },
                filename,
                cache_control,
            } => wire::ContentPart::File(wire::FilePart {
                file: wire::FileData {
                    file_data: Some(source.to_url()),
                    file_id: None,
                    filename: filename.clone(),
                },
                cache_control: cache(cache_control),
                extra: Map::new(),
            }),
            Part::File {
                source: MediaSource::Url { .. },
                ..
            } => {
                return Err(ConvertError::Unsupported(
                    "a file given by URL (OpenAI file inputs need inline data)".to_owned(),
                ));
            }
            other => {
                return Err(ConvertError::Unsupported(format!(
                    "{} in a user message",
                    part_kind(other)
                )));
            }
        });
    }
    Ok(wire::MessageContent::Parts(out))
}

// ---------------------------------------------------------------------------
// Responses

/// Reads a `chat.completion`. With `n > 1` only choice 0 is kept: the IR
/// holds one answer. Read as leniently as stream chunks (the same input
/// types): `id` may be `null` and `content` an array of parts (Databricks
/// sends its reasoning as `{"type":"reasoning","summary":[...]}` blocks
/// before the text).
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let c: ChunkIn = serde_json::from_slice(body)?;
    let mut resp = ChatResponse {
        id: c.id.unwrap_or_default(),
        model: c.model.unwrap_or_default(),
        created: c.created.unwrap_or(0),
        usage: c.usage.as_ref().map(usage_to_ir).unwrap_or_default(),
        ..ChatResponse::default()
    };
    let first = c
        .choices
        .iter()
        .position(|ch| ch.index.unwrap_or(0) == 0)
        .unwrap_or(0);
    let Some(choice) = c.choices.into_iter().nth(first) else {
        return Ok(resp);
    };
    let msg = choice.message.unwrap_or_default();
    if let Some(text) = msg
        .reasoning_content
        .or(msg.reasoning)
        .filter(|t| !t.is_empty())
    {
        resp.content.push(Part::Reasoning {
            text,
            signature: None,
        });
    }
    match msg.content {
        Some(ContentIn::Text(text)) if !text.is_empty() => resp.content.push(Part::text(text)),
        Some(ContentIn::Parts(parts)) => {
            for p in &parts {
                match content_block(p) {
                    Some(Block::Text(t)) if !t.is_empty() => resp.content.push(Part::text(t)),
                    Some(Block::Reasoning { text, signature }) => {
                        resp.content.push(Part::Reasoning { text, signature });
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    resp.refusal = msg.refusal;
    for call in msg.tool_calls {
        if call.kind.as_deref().is_none_or(|k| k == "function") {
            let f = call.function.unwrap_or_default();
            resp.content.push(Part::ToolCall {
                id: call.id.unwrap_or_default(),
                name: f.name.unwrap_or_default(),
                arguments: arguments_text(f.arguments),
                signature: None,
            });
        }
    }
    if let Some(f) = msg.function_call {
        resp.content.push(Part::ToolCall {
            id: "call_0".to_owned(),
            name: f.name.unwrap_or_default(),
            arguments: arguments_text(f.arguments),
            signature: None,
        });
    }
    let has_calls = resp
        .content
        .iter()
        .any(|p| matches!(p, Part::ToolCall { .. }));
    resp.finish_reason = finish_reason(choice.finish_reason.as_deref(), has_calls);
    resp.stop_sequence = choice.stop_reason;
    Ok(resp)
}

/// Arguments as JSON text (a few vendors send the finished object).
fn arguments_text(arguments: Option<Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s,
        Some(v @ Value::Object(_)) => v.to_string(),
        _ => String::new(),
    }
}

/// `content` of an answer or a delta: a string, or parts (anything else is
/// no content).
enum ContentIn {
    Text(String),
    Parts(Vec<Value>),
}

fn lenient_content<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ContentIn>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(ContentIn::Text(s)),
        Value::Array(parts) => Some(ContentIn::Parts(parts)),
        _ => None,
    })
}

/// One content part of an answer, as far as the IR can carry it.
enum Block {
    Text(String),
    /// Databricks' reasoning block: its summary texts joined, and the
    /// signature of the last one that has one.
    Reasoning {
        text: String,
        signature: Option<String>,
    },
}

fn content_block(p: &Value) -> Option<Block> {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match p.get("type").and_then(Value::as_str)? {
        "text" => str_of(p, "text").map(Block::Text),
        "reasoning" => {
            let mut text = String::new();
            let mut signature = None;
            for s in p
                .get("summary")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(t) = s.get("text").and_then(Value::as_str) {
                    text.push_str(t);
                }
                if let Some(sig) = str_of(s, "signature").filter(|s| !s.is_empty()) {
                    signature = Some(sig);
                }
            }
            (!text.is_empty() || signature.is_some())
                .then_some(Block::Reasoning { text, signature })
        }
        _ => None,
    }
}

/// Some vendors (Gemini's OpenAI endpoint, some vLLM models) end a
/// tool-calling turn with `stop`; clients of other formats need to be told
/// it is a tool-call turn.
fn finish_reason(reason: Option<&str>, has_calls: bool) -> FinishReason {
    match reason.map(FinishReason::from_openai) {
        Some(FinishReason::Stop) | None if has_calls => FinishReason::ToolCalls,
        Some(r) => r,
        None => FinishReason::Stop,
    }
}

fn usage_to_ir(u: &wire::Usage) -> Usage {
    let prompt = u.prompt_tokens_details.as_ref();
    // DeepSeek reports cache hits at the top level.
    let deepseek_hits = u.extra.get("prompt_cache_hit_tokens").and_then(as_u64);
    Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
        cache_read_tokens: prompt
            .and_then(|d| d.cached_tokens)
            .or(deepseek_hits)
            .unwrap_or(0),
        cache_write_tokens: prompt.and_then(|d| d.cache_write_tokens).unwrap_or(0),
        reasoning_tokens: u
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
    }
}

/// OpenAI's shape, details included with zeros as OpenAI sends them.
fn usage_from_ir(u: &Usage) -> wire::Usage {
    wire::Usage {
        prompt_tokens: u.input_tokens,
        completion_tokens: u.output_tokens,
        total_tokens: u.total(),
        prompt_tokens_details: Some(wire::PromptTokensDetails {
            cached_tokens: Some(u.cache_read_tokens),
            audio_tokens: Some(0),
            cache_write_tokens: (u.cache_write_tokens > 0).then_some(u.cache_write_tokens),
            ..wire::PromptTokensDetails::default()
        }),
        completion_tokens_details: Some(wire::CompletionTokensDetails {
            reasoning_tokens: Some(u.reasoning_tokens),
            audio_tokens: Some(0),
            accepted_prediction_tokens: Some(0),
            rejected_prediction_tokens: Some(0),
            ..wire::CompletionTokensDetails::default()
        }),
        extra: Map::new(),
    }
}

/// Renders a `chat.completion`. `created` is taken as is: the caller fills
/// it when the upstream format has none. Reasoning goes out as
/// `reasoning_content` (what OpenAI-compatible clients read).
pub fn response_from_ir(resp: &ChatResponse) -> Vec<u8> {
    let mut text: Option<String> = None;
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in &resp.content {
        match p {
            Part::Text { text: t, .. } => text.get_or_insert_with(String::new).push_str(t),
            Part::Reasoning { text: t, .. } => reasoning.push_str(t),
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => calls.push(wire::ToolCall {
                id: id.clone(),
                function: wire::FunctionCall {
                    name: name.clone(),
                    arguments: if arguments.is_empty() {
                        "{}".to_owned()
                    } else {
                        arguments.clone()
                    },
                },
                ..wire::ToolCall::default()
            }),
            _ => {}
        }
    }
    if text.is_none() && calls.is_empty() && resp.refusal.is_none() {
        text = Some(String::new());
    }
    let mut message = wire::ChatMessage {
        content: text,
        refusal: resp.refusal.clone(),
        tool_calls: (!calls.is_empty()).then_some(calls),
        ..wire::ChatMessage::default()
    };
    if !reasoning.is_empty() {
        message
            .extra
            .insert("reasoning_content".to_owned(), Value::String(reasoning));
    }
    let id = if resp.id.is_empty() {
        synthetic_id(resp)
    } else {
        resp.id.clone()
    };
    let completion = wire::ChatCompletion {
        id,
        created: resp.created,
        model: resp.model.clone(),
        choices: vec![wire::Choice {
            index: 0,
            message,
            logprobs: None,
            finish_reason: Some(resp.finish_reason.as_openai().to_owned()),
            extra: Map::new(),
        }],
        usage: Some(usage_from_ir(&resp.usage)),
        ..wire::ChatCompletion::default()
    };
    serde_json::to_vec(&completion).unwrap_or_default()
}

/// Deterministic (the crate does no I/O and has no randomness), so equal
/// responses share an id; upstreams nearly always supply one anyway.
fn synthetic_id(resp: &ChatResponse) -> String {
    let mut h = DefaultHasher::new();
    resp.model.hash(&mut h);
    resp.created.hash(&mut h);
    for p in &resp.content {
        match p {
            Part::Text { text, .. } | Part::Reasoning { text, .. } => text.hash(&mut h),
            Part::ToolCall { id, arguments, .. } => {
                id.hash(&mut h);
                arguments.hash(&mut h);
            }
            _ => {}
        }
    }
    format!("chatcmpl-{:016x}", h.finish())
}

// ---------------------------------------------------------------------------
// Stream decoding: OpenAI chunks -> IR

/// Only what decoding needs, leniently: vendors omit `object`, `index` or
/// `created`, send `null` for lists, or numbers as floats.
#[derive(Deserialize)]
struct ChunkIn {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    created: Option<u64>,
    #[serde(default, deserialize_with = "null_as_default")]
    choices: Vec<ChoiceIn>,
    #[serde(default)]
    usage: Option<wire::Usage>,
    #[serde(default)]
    error: Option<Value>,
    /// vLLM reports errors as `{"object":"error","message":..}`.
    #[serde(default, deserialize_with = "lenient_str")]
    object: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceIn {
    #[serde(default, deserialize_with = "lenient_u64")]
    index: Option<u64>,
    #[serde(default)]
    delta: Option<DeltaIn>,
    /// A whole answer's message (same fields as a delta).
    #[serde(default)]
    message: Option<DeltaIn>,
    #[serde(default, deserialize_with = "lenient_str")]
    finish_reason: Option<String>,
    /// vLLM: the stop string that ended generation (or a token id).
    #[serde(default, deserialize_with = "lenient_str")]
    stop_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct DeltaIn {
    #[serde(default, deserialize_with = "lenient_content")]
    content: Option<ContentIn>,
    #[serde(default, deserialize_with = "lenient_str")]
    reasoning_content: Option<String>,
    #[serde(default, deserialize_with = "lenient_str")]
    reasoning: Option<String>,
    #[serde(default, deserialize_with = "lenient_str")]
    refusal: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    tool_calls: Vec<ToolCallIn>,
    #[serde(default)]
    function_call: Option<FunctionIn>,
}

#[derive(Deserialize)]
struct ToolCallIn {
    #[serde(default, deserialize_with = "lenient_u64")]
    index: Option<u64>,
    #[serde(default, deserialize_with = "lenient_str")]
    id: Option<String>,
    /// `function`, or `custom` (which the IR cannot carry).
    #[serde(default, rename = "type", deserialize_with = "lenient_str")]
    kind: Option<String>,
    #[serde(default)]
    function: Option<FunctionIn>,
}

#[derive(Deserialize, Default)]
struct FunctionIn {
    #[serde(default, deserialize_with = "lenient_str")]
    name: Option<String>,
    /// A string fragment; a few vendors send the finished object.
    #[serde(default)]
    arguments: Option<Value>,
}

fn lenient_str<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(as_u64(&Value::deserialize(d)?))
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One tool call seen in the stream.
struct CallSlot {
    /// The vendor's `index` (absent for some vendors).
    upstream: Option<u64>,
    id: String,
    /// The vendor sent no id, so one was made up; a later id for the same
    /// index belongs to this call.
    synthetic: bool,
}

/// Decodes `chat.completion.chunk` events (choice 0 only).
///
/// Tool calls are numbered in order of appearance. A delta starts a new
/// call when its `index` is new or when it carries an `id` different from
/// the call at that index: some vendors send every call with index 0,
/// each complete in one delta.
#[derive(Default)]
pub struct StreamDecoder {
    started: bool,
    finished: bool,
    failed: bool,
    calls: Vec<CallSlot>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn tool_delta(
        &mut self,
        index: Option<u64>,
        id: Option<String>,
        f: FunctionIn,
        out: &mut Vec<StreamEvent>,
    ) {
        let id = id.filter(|s| !s.is_empty());
        let current = match index {
            Some(ix) => self.calls.iter().rposition(|c| c.upstream == Some(ix)),
            None => self.calls.len().checked_sub(1),
        };
        let slot = match (current, &id) {
            (Some(c), None) => c,
            (Some(c), Some(id))
                if self
                    .calls
                    .get(c)
                    .is_some_and(|s| s.synthetic || s.id == *id) =>
            {
                c
            }
            _ => {
                let slot = self.calls.len();
                let synthetic = id.is_none();
                let id = id.unwrap_or_else(|| format!("call_{slot}"));
                out.push(StreamEvent::ToolCallStart {
                    index: ir_index(slot),
                    id: id.clone(),
                    name: f.name.clone().unwrap_or_default(),
                    signature: None,
                });
                self.calls.push(CallSlot {
                    upstream: index,
                    id,
                    synthetic,
                });
                slot
            }
        };
        let arguments = arguments_text(f.arguments);
        if !arguments.is_empty() {
            out.push(StreamEvent::ToolCallDelta {
                index: ir_index(slot),
                arguments,
            });
        }
    }

    fn error(&mut self, body: &[u8], out: &mut Vec<StreamEvent>) {
        self.failed = true;
        out.push(StreamEvent::Error(stream_error(body)));
    }
}

/// An error sent inside a stream has no HTTP status of its own: a numeric
/// `code` (some vendors send one) or the kind supplies it.
fn stream_error(body: &[u8]) -> ApiError {
    let status = wire::parse_error_body(body)
        .and_then(|i| i.code)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (400..=599).contains(c))
        .unwrap_or(0);
    let mut e = parse_error(status, body);
    if e.status == 0 {
        e.status = status_for(e.kind);
    }
    e
}

fn ir_index(slot: usize) -> u32 {
    u32::try_from(slot).unwrap_or(u32::MAX)
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let data = event.data.trim();
        if data.is_empty() || data == "[DONE]" {
            return Ok(());
        }
        if event.event.as_deref() == Some("error") {
            self.error(data.as_bytes(), out);
            return Ok(());
        }
        let chunk: ChunkIn = serde_json::from_str(data)?;
        if chunk.error.is_some() || chunk.object.as_deref() == Some("error") {
            self.error(data.as_bytes(), out);
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.unwrap_or_default(),
                model: chunk.model.unwrap_or_default(),
                created: chunk.created.unwrap_or(0),
            });
        }
        for choice in chunk.choices {
            if choice.index.unwrap_or(0) != 0 {
                continue;
            }
            let delta = choice.delta.unwrap_or_default();
            let reasoning = delta
                .reasoning_content
                .filter(|s| !s.is_empty())
                .or(delta.reasoning);
            if let Some(r) = reasoning.filter(|s| !s.is_empty()) {
                out.push(StreamEvent::ReasoningDelta(r));
            }
            match delta.content {
                Some(ContentIn::Text(text)) if !text.is_empty() => {
                    out.push(StreamEvent::TextDelta(text));
                }
                Some(ContentIn::Parts(parts)) => {
                    for p in &parts {
                        match content_block(p) {
                            Some(Block::Text(t)) if !t.is_empty() => {
                                out.push(StreamEvent::TextDelta(t));
                            }
                            Some(Block::Reasoning { text, signature }) => {
                                if !text.is_empty() {
                                    out.push(StreamEvent::ReasoningDelta(text));
                                }
                                if let Some(sig) = signature {
                                    out.push(StreamEvent::ReasoningSignature(sig));
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            if let Some(refusal) = delta.refusal.filter(|s| !s.is_empty()) {
                out.push(StreamEvent::RefusalDelta(refusal));
            }
            for call in delta.tool_calls {
                self.tool_delta(call.index, call.id, call.function.unwrap_or_default(), out);
            }
            if let Some(f) = delta.function_call {
                // Legacy: one call per response, never with an id.
                let index = Some(0);
                let id = self.calls.is_empty().then(|| "call_0".to_owned());
                self.tool_delta(index, id, f, out);
            }
            if let Some(reason) = choice.finish_reason.filter(|s| !s.is_empty())
                && !self.finished
            {
                self.finished = true;
                out.push(StreamEvent::Finish {
                    reason: finish_reason(Some(&reason), !self.calls.is_empty()),
                    stop_sequence: choice.stop_reason,
                });
            }
        }
        if let Some(u) = &chunk.usage {
            out.push(StreamEvent::Usage(usage_to_ir(u)));
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started && !self.finished && !self.failed {
            self.finished = true;
            out.push(StreamEvent::Finish {
                reason: finish_reason(None, !self.calls.is_empty()),
                stop_sequence: None,
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Stream encoding: IR -> OpenAI chunks

/// Encodes canonical events as OpenAI sends them: a first chunk with
/// `{"role":"assistant","content":""}`, one chunk per delta, a finish chunk
/// with an empty delta, then (with `include_usage`) a chunk with empty
/// `choices` and the usage, every earlier chunk carrying `"usage":null`,
/// and `data: [DONE]`.
///
/// The constructor's id, model and created are used for every chunk; an
/// empty id/model or a zero created is taken from the `Start` event.
pub struct StreamEncoder {
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    /// `{"id":..,"object":..,"created":..,"model":..,"choices":[`
    prefix: Vec<u8>,
    started: bool,
    finished: bool,
    failed: bool,
    done: bool,
    /// Tool calls started, and whether any argument text was sent for each.
    calls: Vec<(u32, bool)>,
    usage: Usage,
}

impl StreamEncoder {
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        created: u64,
        include_usage: bool,
    ) -> Self {
        StreamEncoder {
            id: id.into(),
            model: model.into(),
            created,
            include_usage,
            prefix: Vec::new(),
            started: false,
            finished: false,
            failed: false,
            done: false,
            calls: Vec::new(),
            usage: Usage::default(),
        }
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let mut p = Vec::with_capacity(96 + self.id.len() + self.model.len());
        p.extend_from_slice(b"{\"id\":");
        write_json_string(&mut p, &self.id);
        p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
        p.extend_from_slice(self.created.to_string().as_bytes());
        p.extend_from_slice(b",\"model\":");
        write_json_string(&mut p, &self.model);
        p.extend_from_slice(b",\"choices\":[");
        self.prefix = p;
        self.chunk(out, None, |d| {
            d.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"\"}");
        });
    }

    /// One `data:` frame with a single choice-0 entry.
    fn chunk(&self, out: &mut Vec<u8>, finish: Option<&str>, delta: impl FnOnce(&mut Vec<u8>)) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(b"{\"index\":0,\"delta\":");
        delta(out);
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(r) => write_json_string(out, r),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    fn text_chunk(&self, out: &mut Vec<u8>, field: &str, text: &str) {
        self.chunk(out, None, |d| {
            d.push(b'{');
            write_json_string(d, field);
            d.push(b':');
            write_json_string(d, text);
            d.push(b'}');
        });
    }

    fn args_chunk(&self, out: &mut Vec<u8>, index: u32, arguments: &str) {
        self.chunk(out, None, |d| {
            d.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
            d.extend_from_slice(index.to_string().as_bytes());
            d.extend_from_slice(b",\"function\":{\"arguments\":");
            write_json_string(d, arguments);
            d.extend_from_slice(b"}}]}");
        });
    }

    /// Calls that got no argument text get `{}`: OpenAI clients parse the
    /// accumulated arguments as JSON, and `""` is not JSON.
    fn finish_chunk(&mut self, out: &mut Vec<u8>, reason: FinishReason) {
        self.finished = true;
        for (index, _) in self.calls.iter().filter(|(_, sent)| !sent) {
            self.args_chunk(out, *index, "{}");
        }
        self.chunk(out, Some(reason.as_openai()), |d| {
            d.extend_from_slice(b"{}")
        });
    }
}

impl EncodeStream for StreamEncoder {
    fn push(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.done || self.failed {
            return;
        }
        match event {
            StreamEvent::Start { id, model, created } => {
                if self.id.is_empty() {
                    self.id.clone_from(id);
                }
                if self.model.is_empty() {
                    self.model.clone_from(model);
                }
                if self.created == 0 {
                    self.created = *created;
                }
                self.start(out);
            }
            StreamEvent::Error(err) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&error_body(err));
                out.extend_from_slice(b"\n\n");
                self.failed = true;
            }
            StreamEvent::Usage(u) => self.usage.merge_max(u),
            // No OpenAI shape for these.
            StreamEvent::ReasoningSignature(_) | StreamEvent::RedactedReasoning(_) => {}
            StreamEvent::Finish { reason, .. } => {
                self.start(out);
                if !self.finished {
                    self.finish_chunk(out, *reason);
                }
            }
            StreamEvent::TextDelta(t) if !t.is_empty() => {
                self.start(out);
                self.text_chunk(out, "content", t);
            }
            StreamEvent::ReasoningDelta(t) if !t.is_empty() => {
                self.start(out);
                self.text_chunk(out, "reasoning_content", t);
            }
            StreamEvent::RefusalDelta(t) if !t.is_empty() => {
                self.start(out);
                self.text_chunk(out, "refusal", t);
            }
            StreamEvent::ToolCallStart {
                index, id, name, ..
            } => {
                self.start(out);
                self.calls.push((*index, false));
                self.chunk(out, None, |d| {
                    d.extend_from_slice(b"{\"tool_calls\":[{\"index\":");
                    d.extend_from_slice(index.to_string().as_bytes());
                    d.extend_from_slice(b",\"id\":");
                    write_json_string(d, id);
                    d.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json_string(d, name);
                    d.extend_from_slice(b",\"arguments\":\"\"}}]}");
                });
            }
            StreamEvent::ToolCallDelta { index, arguments } if !arguments.is_empty() => {
                self.start(out);
                if let Some(call) = self.calls.iter_mut().find(|(i, _)| i == index) {
                    call.1 = true;
                }
                self.args_chunk(out, *index, arguments);
            }
            StreamEvent::TextDelta(_)
            | StreamEvent::ReasoningDelta(_)
            | StreamEvent::RefusalDelta(_)
            | StreamEvent::ToolCallDelta { .. } => {}
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        if self.started && !self.failed {
            if !self.finished {
                let reason = if !self.calls.is_empty() {
                    FinishReason::ToolCalls
                } else {
                    FinishReason::Stop
                };
                self.finish_chunk(out, reason);
            }
            if self.include_usage {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&self.prefix);
                out.extend_from_slice(b"],\"usage\":");
                match serde_json::to_vec(&usage_from_ir(&self.usage)) {
                    Ok(u) => out.extend_from_slice(&u),
                    Err(_) => out.extend_from_slice(b"null"),
                }
                out.extend_from_slice(b"}\n\n");
            }
        }
        out.extend_from_slice(DONE_FRAME);
    }
}

// ---------------------------------------------------------------------------
// Errors

/// OpenAI's `error.type` (and `code`) for each kind.
fn error_type(kind: ErrorKind) -> (&'static str, Option<&'static str>) {
    match kind {
        ErrorKind::InvalidRequest => ("invalid_request_error", None),
        ErrorKind::Authentication => ("authentication_error", Some("invalid_api_key")),
        ErrorKind::Permission => ("permission_error", None),
        ErrorKind::NotFound => ("not_found_error", None),
        ErrorKind::RequestTooLarge => ("invalid_request_error", Some("request_too_large")),
        ErrorKind::RateLimit => ("rate_limit_error", Some("rate_limit_exceeded")),
        ErrorKind::Api => ("api_error", None),
        ErrorKind::Overloaded => ("api_error", Some("overloaded")),
        ErrorKind::Timeout => ("timeout", None),
    }
}

/// The kind an OpenAI-family `code` names, if it names one.
fn kind_from_code(code: &str) -> Option<ErrorKind> {
    Some(match code {
        "invalid_api_key" => ErrorKind::Authentication,
        "model_not_found" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_exceeded" | "insufficient_quota" => ErrorKind::RateLimit,
        "overloaded" => ErrorKind::Overloaded,
        "timeout" => ErrorKind::Timeout,
        _ => return None,
    })
}

fn kind_from_type(error_type: &str) -> Option<ErrorKind> {
    Some(match error_type {
        "invalid_request_error" | "invalid_request" | "bad_request" => ErrorKind::InvalidRequest,
        "authentication_error" => ErrorKind::Authentication,
        "permission_error" | "permission_denied" | "request_forbidden" => ErrorKind::Permission,
        "not_found_error" | "not_found" => ErrorKind::NotFound,
        "request_too_large" => ErrorKind::RequestTooLarge,
        "rate_limit_error" | "requests" | "tokens" | "insufficient_quota" => ErrorKind::RateLimit,
        "api_error" | "server_error" | "internal_error" => ErrorKind::Api,
        "overloaded_error" | "overloaded" => ErrorKind::Overloaded,
        "timeout" | "timeout_error" => ErrorKind::Timeout,
        _ => return None,
    })
}

/// The HTTP status an error kind implies (for errors inside a stream).
fn status_for(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InvalidRequest => 400,
        ErrorKind::Authentication => 401,
        ErrorKind::Permission => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::RequestTooLarge => 413,
        ErrorKind::RateLimit => 429,
        ErrorKind::Api => 500,
        ErrorKind::Overloaded => 503,
        ErrorKind::Timeout => 504,
    }
}

/// `{"error":{"message","type","param":null,"code"}}`.
pub fn error_body(err: &ApiError) -> Vec<u8> {
    let (error_type, code) = error_type(err.kind);
    wire::error_body(&err.message, error_type, code, None).to_vec()
}

/// Reads an upstream error. A specific status (401, 403, 404, 413, 429,
/// 503...) decides the kind; for generic ones (400, 500, or 0 for an error
/// inside a stream) the body's `code`, then `type`, does.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let info = wire::parse_error_body(body);
    let by_status = ErrorKind::from_status(status);
    let generic = status == 0 || matches!(by_status, ErrorKind::InvalidRequest | ErrorKind::Api);
    let named = info.as_ref().and_then(|i| {
        i.code
            .as_deref()
            .and_then(kind_from_code)
            .or_else(|| i.error_type.as_deref().and_then(kind_from_type))
    });
    let kind = match named {
        Some(k) if generic => k,
        _ => by_status,
    };
    let message = match info {
        Some(i) if !i.message.is_empty() => i.message,
        _ => fallback_message(status, body),
    };
    ApiError {
        status,
        kind,
        message,
    }
}

/// A short excerpt of a body that is not an OpenAI error (an HTML page
/// from a proxy, plain text).
fn fallback_message(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("upstream returned HTTP {status}");
    }
    let excerpt: String = text.chars().take(200).collect();
    format!("upstream returned HTTP {status}: {excerpt}")
}
