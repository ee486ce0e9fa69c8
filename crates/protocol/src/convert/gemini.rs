//! Gemini API (`generateContent` / `streamGenerateContent`) <-> IR.
//!
//! Used both ways: as the UPSTREAM format (any client -> Gemini) and as the
//! INGRESS format (google-genai SDK, Gemini CLI -> any upstream). Wire types
//! are in [`crate::wire::gemini`].
//!
//! # Requests (IR -> Gemini)
//! - `system` becomes `systemInstruction` (text only); a system message in
//!   the middle of the conversation is folded into the user turn as text.
//! - Roles: assistant -> `model`; user, tool and system messages -> `user`.
//!   Consecutive contents of the same role are merged, so parallel tool
//!   results land in one user turn right after the calls, as Gemini expects.
//! - Tool calls become `functionCall` parts carrying the call's
//!   `thoughtSignature`. Gemini 3 rejects a turn whose calls lost their
//!   signature; for a `gemini-3`+ model, a model turn with calls but no
//!   signature at all (history from another model) gets Google's documented
//!   placeholder `skip_thought_signature_validator` on its first call.
//! - `functionCall.id` / `functionResponse.id` are never sent: the API
//!   rejects them in requests ("Unknown name \"id\""); Gemini pairs results
//!   with calls by name and order. A result without a name gets it from the
//!   nearest earlier assistant call with its id (unknown id -> error).
//! - A tool result becomes `functionResponse.response`: a text that is a
//!   JSON object is sent as that object; any other text is wrapped as
//!   `{"result": text}` (`{"error": text}` when the result is an error).
//!   Images/files in a result follow the `functionResponse` as sibling parts.
//! - Images: data URLs -> `inlineData`; other URLs (http(s), `gs://`, Files
//!   API) -> `fileData` with the MIME type guessed from the extension
//!   (`image/jpeg` when unknown). Audio -> `inlineData` `audio/wav` /
//!   `audio/mp3`. Files: base64 -> `inlineData`, URL -> `fileData` (MIME
//!   guessed, omitted when unknown so the Files API's own type applies).
//! - Tools use `parametersJsonSchema` (plain JSON Schema, Gemini 2.5+), so
//!   schemas pass unchanged (`additionalProperties`, `$ref`, `anyOf` all
//!   work) instead of being lossily rewritten into the OpenAPI `parameters`
//!   subset; only the root `$schema` marker is dropped. `strict` has no
//!   equivalent and is dropped.
//! - `tool_choice`: none -> `NONE`, auto -> `AUTO`, required -> `ANY`, named
//!   -> `ANY` + `allowedFunctionNames`.
//! - `response_format`: json_object -> `responseMimeType:
//!   application/json`; json_schema -> that plus `responseJsonSchema`.
//! - Reasoning: an explicit budget -> `thinkingBudget`. Otherwise, for
//!   `gemini-3`+ models `effort` -> `thinkingLevel` (minimal/none ->
//!   `MINIMAL`, low/medium/high/xhigh as named) and `enabled: false` ->
//!   `LOW` (Gemini 3 cannot turn thinking off); for older models `effort` ->
//!   a budget (none 0, minimal 512, low 1024, medium 8192, high/xhigh
//!   24576) and `enabled: false` -> `thinkingBudget: 0` (128, the least
//!   allowed, for `-pro` models, which cannot turn thinking off).
//!   `include_thoughts` -> `includeThoughts`.
//! - Reasoning parts of earlier assistant turns: the text is dropped (Gemini
//!   ignores replayed thoughts); a signature is kept by moving it onto the
//!   next part of the same turn (the text or call it preceded), where Gemini
//!   put it; with no such part it is dropped.
//! - `user`, `parallel_tool_calls` and `cache_control` have no Gemini
//!   equivalent and are dropped. The model goes in the URL
//!   ([`request_path`]), not the body.
//!
//! # Requests (Gemini -> IR)
//! Model turns follow the response rules below. Calls get `functionCall.id`
//! when present, else `call_<n>` numbered over the whole request; each
//! `functionResponse` is matched to the earliest unanswered call with its
//! id, else with its name (none -> error naming it). A user turn's results
//! become one tool message placed before the turn's text and media, since
//! other formats need results right after the calls. `response` objects
//! `{"result"|"output": x}` and `{"error": x}` unwrap to x's text (an error
//! result for the latter); other objects become their JSON text. OpenAPI
//! `parameters` / `responseSchema` are turned into JSON Schema (lower-case
//! types, `nullable` as a `"null"` type). Gemini-only settings
//! (`safetySettings`, `cachedContent`, built-in tools, unmapped
//! `generationConfig` fields, unknown fields) go to `extra` and are merged
//! back only when the request is re-encoded for a Gemini upstream.
//!
//! # Responses
//! Model parts map to IR parts: a run of `thought: true` parts becomes one
//! `Reasoning` (a thought part carrying a signature closes the run with it);
//! a `thoughtSignature` on a text (or media) part becomes a signature-only
//! `Reasoning` placed just before that part, so re-encoding puts it back
//! where Gemini sent it; `functionCall` -> `ToolCall`
//! (id from `functionCall.id` or `call_<n>`, arguments = JSON text of
//! `args`, signature = `thoughtSignature`). Only candidate 0 is read.
//! Finish reasons: `STOP` -> stop, `MAX_TOKENS` -> length, safety-like
//! (`SAFETY`, `RECITATION`, `BLOCKLIST`, `PROHIBITED_CONTENT`, `SPII`,
//! `IMAGE_*`, ...) -> content_filter, anything else -> stop; any function
//! call -> tool_calls; a blocked prompt (`promptFeedback.blockReason`, no
//! candidates) -> content_filter with no content. Usage: input = prompt +
//! tool-use prompt, output = candidates + thoughts, cache read = cached
//! content, reasoning = thoughts. Going back to Gemini the reverse split is
//! made (tool-use prompt tokens stay inside `promptTokenCount`) and zero
//! counts are omitted, as proto3 JSON does.
//!
//! # Streams
//! Upstream streams use `:streamGenerateContent?alt=sse`; every SSE `data`
//! is a whole `GenerateContentResponse` chunk (see [`StreamDecoder`]). The
//! [`StreamEncoder`] writes the same shape as SSE, or as the JSON array a
//! client gets without `alt=sse`.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::{ConvertError, DecodeStream, EncodeStream};
use crate::ir::{
    ApiError, ChatRequest, ChatResponse, ErrorKind, FinishReason, Format, MediaSource, Message,
    Part, Reasoning, ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use crate::sse::{SseEvent, encode_data};
use crate::wire::gemini as g;

/// Google's placeholder that makes Gemini 3 accept a function call whose
/// real signature is unknown (history written by another model).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

// ---------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------

/// The Gemini method an ingress path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    GenerateContent,
    StreamGenerateContent,
    CountTokens,
}

/// Parses `/v1beta/models/{model}:{method}` (also `/v1/`, `/v1alpha/` and
/// Vertex `/v1/projects/../publishers/google/models/{model}:{method}`); a
/// query string is ignored. `None` for anything else.
pub fn model_from_path(path: &str) -> Option<(&str, Method)> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let (prefix, rest) = path.rsplit_once("/models/")?;
    let known = matches!(prefix, "/v1beta" | "/v1" | "/v1alpha")
        || (prefix.starts_with("/v1") && prefix.contains("/publishers/"));
    if !known {
        return None;
    }
    let (model, method) = rest.split_once(':')?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    let method = match method {
        "generateContent" => Method::GenerateContent,
        "streamGenerateContent" => Method::StreamGenerateContent,
        "countTokens" => Method::CountTokens,
        _ => return None,
    };
    Some((model, method))
}

/// The upstream path for `model` (a leading `models/` is accepted):
/// `/v1beta/models/{model}:generateContent`, or
/// `:streamGenerateContent?alt=sse` when streaming (the SSE form
/// [`StreamDecoder`] reads).
pub fn request_path(model: &str, stream: bool) -> String {
    let model = model.strip_prefix("models/").unwrap_or(model);
    if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    }
}

/// `gemini-3`, `gemini-3.5-flash`, ... (and later majors): models that take
/// `thinkingLevel` and validate thought signatures.
fn is_gemini3_plus(model: &str) -> bool {
    let Some(at) = model.find("gemini-") else {
        return false;
    };
    let digits: String = model
        .get(at + "gemini-".len()..)
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u32>().is_ok_and(|major| major >= 3)
}

// ---------------------------------------------------------------------------
// Media helpers
// ---------------------------------------------------------------------------

/// MIME type from a URL's file extension (query and fragment ignored).
fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let (_, ext) = name.rsplit_once('.')?;
    let mime = match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        "md" => "text/markdown",
        "html" | "htm" => "text/html",
        "csv" => "text/csv",
        "xml" => "text/xml",
        "json" => "application/json",
        "wav" => "audio/wav",
        "mp3" => "audio/mp3",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        "aiff" => "audio/aiff",
        "mp4" => "video/mp4",
        "mpeg" | "mpg" => "video/mpeg",
        "mov" => "video/mov",
        "webm" => "video/webm",
        _ => return None,
    };
    Some(mime)
}

fn audio_mime(format: &str) -> String {
    match format {
        "wav" => "audio/wav".to_owned(),
        "mp3" => "audio/mp3".to_owned(),
        other => format!("audio/{other}"),
    }
}

fn inline(mime_type: &str, data: &str) -> g::Part {
    g::Part {
        inline_data: Some(g::Blob {
            mime_type: mime_type.to_owned(),
            data: data.to_owned(),
            extra: Map::new(),
        }),
        ..g::Part::default()
    }
}

fn file_uri(mime_type: Option<String>, uri: &str) -> g::Part {
    g::Part {
        file_data: Some(g::FileData {
            mime_type,
            file_uri: uri.to_owned(),
            extra: Map::new(),
        }),
        ..g::Part::default()
    }
}

/// IR media -> Gemini part; `None` for non-media parts.
fn media_to_gemini(part: &Part) -> Option<g::Part> {
    match part {
        Part::Image { source, .. } => Some(match source {
            MediaSource::Base64 { media_type, data } => inline(media_type, data),
            MediaSource::Url { url } => file_uri(
                Some(mime_from_extension(url).unwrap_or("image/jpeg").to_owned()),
                url,
            ),
        }),
        Part::Audio { data, format } => Some(inline(&audio_mime(format), data)),
        Part::File { source, .. } => Some(match source {
            MediaSource::Base64 { media_type, data } => inline(media_type, data),
            MediaSource::Url { url } => file_uri(mime_from_extension(url).map(str::to_owned), url),
        }),
        _ => None,
    }
}

/// Gemini inline/file data -> IR media; `None` when the part has neither.
fn media_to_ir(part: &g::Part) -> Option<Part> {
    if let Some(blob) = &part.inline_data {
        let mime = blob.mime_type.to_ascii_lowercase();
        let audio_format = match mime.as_str() {
            "audio/wav" | "audio/x-wav" | "audio/wave" => Some("wav"),
            "audio/mp3" | "audio/mpeg" => Some("mp3"),
            _ => None,
        };
        if let Some(format) = audio_format {
            return Some(Part::Audio {
                data: blob.data.clone(),
                format: format.to_owned(),
            });
        }
        let source = MediaSource::Base64 {
            media_type: blob.mime_type.clone(),
            data: blob.data.clone(),
        };
        return Some(if mime.starts_with("image/") {
            Part::Image {
                source,
                detail: None,
                cache_control: None,
            }
        } else {
            Part::File {
                source,
                filename: display_name(&blob.extra),
                cache_control: None,
            }
        });
    }
    if let Some(file) = &part.file_data {
        let mime = file
            .mime_type
            .clone()
            .or_else(|| mime_from_extension(&file.file_uri).map(str::to_owned))
            .unwrap_or_default();
        let source = MediaSource::Url {
            url: file.file_uri.clone(),
        };
        return Some(if mime.starts_with("image/") {
            Part::Image {
                source,
                detail: None,
                cache_control: None,
            }
        } else {
            Part::File {
                source,
                filename: display_name(&file.extra),
                cache_control: None,
            }
        });
    }
    None
}

fn display_name(extra: &Map<String, Value>) -> Option<String> {
    extra
        .get("displayName")
        .or_else(|| extra.get("display_name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Model parts <-> IR parts
// ---------------------------------------------------------------------------

/// Hands out `call_<n>` ids for calls that carry none, and keeps ids unique:
/// `call_<n>` ids echoed back from earlier responses repeat across turns
/// (each response numbers from 0), and some formats reject duplicates, so a
/// repeated id is replaced by a fresh `call_<n>`.
#[derive(Debug, Default)]
struct CallIds {
    next: usize,
    used: HashSet<String>,
    /// Stem for synthesized ids (see [`response_call_stem`]); empty in requests.
    stem: String,
}

/// Ids synthesized for a response's calls must not repeat the ids of earlier turns (a client
/// sends the whole conversation back, and Anthropic rejects duplicate `tool_use` ids), so they
/// are derived from the response's own id: `call_<hash of responseId>_<n>`. Deterministic, so a
/// stream and its chunks agree.
fn response_call_stem(response_id: &str) -> String {
    if response_id.is_empty() {
        return String::new();
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in response_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:012x}_").chars().skip(4).collect()
}

impl CallIds {
    fn for_response(response_id: &str) -> Self {
        CallIds {
            stem: response_call_stem(response_id),
            ..CallIds::default()
        }
    }

    fn id_for(&mut self, given: Option<&str>) -> String {
        let n = self.next;
        self.next += 1;
        let mut id = match given {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => format!("call_{}{n}", self.stem),
        };
        let mut k = n;
        while self.used.contains(&id) {
            id = format!("call_{k}");
            k += 1;
        }
        self.used.insert(id.clone());
        id
    }
}

/// The part's `thoughtSignature`; Gemini 2.x-era clients put it inside
/// `functionCall`, which is read as a fallback.
fn signature_of(part: &g::Part) -> Option<String> {
    part.thought_signature.clone().or_else(|| {
        let call = part.function_call.as_ref()?;
        call.extra
            .get("thoughtSignature")
            .or_else(|| call.extra.get("thought_signature"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

fn args_text(args: Option<&Value>) -> String {
    match args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(v) => v.to_string(),
    }
}

/// Folds a model turn's parts into IR parts (see the module doc for the
/// thought-run and signature rules).
fn model_parts_to_ir(parts: &[g::Part], ids: &mut CallIds) -> Vec<Part> {
    let mut out = Vec::new();
    let mut run: Option<String> = None;
    fn close(run: &mut Option<String>, out: &mut Vec<Part>) {
        if let Some(text) = run.take()
            && !text.is_empty()
        {
            out.push(Part::Reasoning {
                text,
                signature: None,
            });
        }
    }
    for part in parts {
        if part.is_thought() {
            let text = run.get_or_insert_with(String::new);
            text.push_str(part.text.as_deref().unwrap_or(""));
            if let Some(sig) = &part.thought_signature {
                out.push(Part::Reasoning {
                    text: run.take().unwrap_or_default(),
                    signature: Some(sig.clone()),
                });
            }
            continue;
        }
        if let Some(call) = &part.function_call {
            close(&mut run, &mut out);
            out.push(Part::ToolCall {
                id: ids.id_for(call.id.as_deref()),
                name: call.name.clone(),
                arguments: args_text(call.args.as_ref()),
                signature: signature_of(part),
            });
            continue;
        }
        close(&mut run, &mut out);
        if let Some(sig) = &part.thought_signature {
            out.push(Part::Reasoning {
                text: String::new(),
                signature: Some(sig.clone()),
            });
        }
        if let Some(text) = &part.text {
            if !text.is_empty() {
                out.push(Part::text(text.clone()));
            }
        } else if let Some(media) = media_to_ir(part) {
            out.push(media);
        }
    }
    close(&mut run, &mut out);
    out
}

fn tool_call_part(id: &str, name: &str, args: Value, signature: Option<String>) -> g::Part {
    g::Part {
        thought_signature: signature,
        function_call: Some(g::FunctionCall {
            id: (!id.is_empty()).then(|| id.to_owned()),
            name: name.to_owned(),
            args: Some(args),
            extra: Map::new(),
        }),
        ..g::Part::default()
    }
}

/// Arguments text -> the JSON object Gemini wants, leniently: what is not a
/// JSON object becomes `{}` (used for responses, where failing is no option).
fn args_object_lenient(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// IR response content -> Gemini model parts. Reasoning text is kept (as
/// thought parts); a signature-only reasoning part is put back on the text
/// part that follows it, as Gemini sent it.
fn response_parts_from_ir(content: &[Part], refusal: Option<&str>) -> Vec<g::Part> {
    let mut out = Vec::new();
    let mut iter = content.iter().peekable();
    while let Some(part) = iter.next() {
        match part {
            Part::Reasoning { text, signature } => {
                if text.is_empty()
                    && let Some(sig) = signature
                {
                    if let Some(Part::Text { text: next, .. }) = iter.peek() {
                        out.push(g::Part {
                            text: Some(next.clone()),
                            thought_signature: Some(sig.clone()),
                            ..g::Part::default()
                        });
                        iter.next();
                        continue;
                    }
                } else if text.is_empty() {
                    continue;
                }
                out.push(g::Part {
                    text: Some(text.clone()),
                    thought: Some(true),
                    thought_signature: signature.clone(),
                    ..g::Part::default()
                });
            }
            Part::Text { text, .. } => out.push(g::Part::text(text.clone())),
            Part::ToolCall {
                id,
                name,
                arguments,
                signature,
            } => out.push(tool_call_part(
                id,
                name,
                args_object_lenient(arguments),
                signature.clone(),
            )),
            Part::RedactedReasoning { .. } | Part::ToolResult { .. } => {}
            media => out.extend(media_to_gemini(media)),
        }
    }
    if let Some(refusal) = refusal
        && !refusal.is_empty()
    {
        out.push(g::Part::text(refusal));
    }
    out
}

// ---------------------------------------------------------------------------
// Requests: Gemini -> IR
// ---------------------------------------------------------------------------

/// A Gemini `generateContent` body -> IR. The model comes from the path
/// ([`model_from_path`]); `model` is filled only when the body repeats it.
/// `stream` is left false (the method decides) and `include_usage` is true
/// (Gemini always reports usage).
pub fn request_to_ir(body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let req: g::GenerateContentRequest = serde_json::from_slice(body)?;
    wire_request_to_ir(req)
}

/// A `countTokens` body (`contents` or a whole `generateContentRequest`) ->
/// IR, for [`estimate_input_tokens`] or an upstream's own counter.
pub fn count_tokens_request_to_ir(body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let req: g::CountTokensRequest = serde_json::from_slice(body)?;
    match req.generate_content_request {
        Some(inner) => wire_request_to_ir(inner),
        None => wire_request_to_ir(g::GenerateContentRequest {
            contents: req.contents,
            ..g::GenerateContentRequest::default()
        }),
    }
}

/// A call from an earlier model turn, waiting for its result.
struct PendingCall {
    /// The IR id.
    id: String,
    /// `functionCall.id` as the client sent it (results name this one).
    wire_id: Option<String>,
    name: String,
    answered: bool,
}

fn wire_request_to_ir(req: g::GenerateContentRequest) -> Result<ChatRequest, ConvertError> {
    let mut ir = ChatRequest {
        model: req
            .model
            .as_deref()
            .map(|m| m.strip_prefix("models/").unwrap_or(m).to_owned())
            .unwrap_or_default(),
        include_usage: true,
        extra: req.extra,
        extra_format: Some(Format::Gemini),
        ..ChatRequest::default()
    };

    if let Some(system) = &req.system_instruction {
        for part in &system.parts {
            if let Some(text) = &part.text {
                ir.system.push(Part::text(text.clone()));
            } else if let Some(media) = media_to_ir(part) {
                ir.system.push(media);
            }
        }
    }

    let mut ids = CallIds::default();
    let mut pending: Vec<PendingCall> = Vec::new();
    for (ci, content) in req.contents.iter().enumerate() {
        match content.role.as_deref() {
            Some("model") => {
                let parts = model_parts_to_ir(&content.parts, &mut ids);
                // One ToolCall per functionCall part, in order.
                let wire_ids = content
                    .parts
                    .iter()
                    .filter_map(|p| p.function_call.as_ref())
                    .map(|c| c.id.clone());
                let calls = parts.iter().filter_map(|p| match p {
                    Part::ToolCall { id, name, .. } => Some((id, name)),
                    _ => None,
                });
                for ((id, name), wire_id) in calls.zip(wire_ids) {
                    pending.push(PendingCall {
                        id: id.clone(),
                        wire_id,
                        name: name.clone(),
                        answered: false,
                    });
                }
                if !parts.is_empty() {
                    ir.messages.push(Message {
                        role: Role::Assistant,
                        content: parts,
                        name: None,
                    });
                }
            }
            None | Some("user") | Some("") | Some("function") | Some("tool") => {
                user_content_to_ir(ci, content, &mut pending, &mut ir.messages)?;
            }
            Some(other) => {
                return Err(ConvertError::invalid(
                    format!("contents[{ci}].role"),
                    format!("must be \"user\" or \"model\", not {other:?}"),
                ));
            }
        }
    }

    let mut builtin_tools = Vec::new();
    for tool in req.tools {
        for decl in &tool.function_declarations {
            ir.tools.push(Tool {
                name: decl.name.clone(),
                description: decl.description.clone(),
                parameters: decl
                    .parameters_json_schema
                    .clone()
                    .or_else(|| decl.parameters.as_ref().map(openapi_to_json_schema))
                    .unwrap_or_else(|| serde_json::json!({"type": "object"})),
                strict: None,
                cache_control: None,
            });
        }
        if tool.has_builtin() {
            let mut builtin = tool;
            builtin.function_declarations.clear();
            builtin_tools.push(serde_json::to_value(builtin)?);
        }
    }
    if !builtin_tools.is_empty() {
        ir.extra
            .insert("tools".to_owned(), Value::Array(builtin_tools));
    }

    if let Some(config) = req.tool_config {
        if let Some(fc) = &config.function_calling_config {
            ir.tool_choice = tool_choice_to_ir(fc);
        }
        if !config.extra.is_empty() {
            ir.extra
                .insert("toolConfig".to_owned(), Value::Object(config.extra));
        }
    }

    if let Some(gen_config) = req.generation_config {
        generation_config_to_ir(gen_config, &mut ir)?;
    }
    if let Some(safety) = req.safety_settings {
        ir.extra
            .insert("safetySettings".to_owned(), Value::Array(safety));
    }
    if let Some(cached) = req.cached_content {
        ir.extra
            .insert("cachedContent".to_owned(), Value::String(cached));
    }
    Ok(ir)
}

/// A user turn: `functionResponse`s become one tool message (matched to
/// pending calls), then text and media one user message. Results go first
/// whatever their place in the turn, because other formats need them right
/// after the calls.
fn user_content_to_ir(
    ci: usize,
    content: &g::Content,
    pending: &mut [PendingCall],
    messages: &mut Vec<Message>,
) -> Result<(), ConvertError> {
    let mut results: Vec<Part> = Vec::new();
    let mut user_parts: Vec<Part> = Vec::new();
    for (pi, part) in content.parts.iter().enumerate() {
        if let Some(response) = &part.function_response {
            let call_id = match_response(pending, response).ok_or_else(|| {
                ConvertError::invalid(
                    format!("contents[{ci}].parts[{pi}].functionResponse"),
                    format!(
                        "no earlier functionCall named {:?} is waiting for a response",
                        response.name
                    ),
                )
            })?;
            let (mut content, is_error) = function_response_content(&response.response);
            content.extend(function_response_media(&response.extra));
            results.push(Part::ToolResult {
                call_id,
                name: Some(response.name.clone()),
                content,
                is_error,
                cache_control: None,
            });
        } else if part.function_call.is_some() {
            return Err(ConvertError::invalid(
                format!("contents[{ci}].parts[{pi}].functionCall"),
                "function calls belong in \"model\" turns",
            ));
        } else if part.is_thought() {
            continue;
        } else if let Some(text) = &part.text {
            user_parts.push(Part::text(text.clone()));
        } else if let Some(media) = media_to_ir(part) {
            user_parts.push(media);
        }
    }
    if !results.is_empty() {
        match messages.last_mut() {
            Some(last) if last.role == Role::Tool => last.content.extend(results),
            _ => messages.push(Message {
                role: Role::Tool,
                content: results,
                name: None,
            }),
        }
    }
    if !user_parts.is_empty() {
        messages.push(Message {
            role: Role::User,
            content: user_parts,
            name: None,
        });
    }
    Ok(())
}

fn match_response(pending: &mut [PendingCall], response: &g::FunctionResponse) -> Option<String> {
    let by_id = response.id.as_deref().and_then(|id| {
        pending
            .iter_mut()
            .find(|p| !p.answered && p.wire_id.as_deref() == Some(id))
    });
    let call = match by_id {
        Some(call) => call,
        None => pending
            .iter_mut()
            .find(|p| !p.answered && p.name == response.name)?,
    };
    call.answered = true;
    Some(call.id.clone())
}

/// `{"result"|"output": x}` -> x's text, `{"error": x}` -> x's text as an
/// error; any other response -> its JSON text.
fn function_response_content(response: &Value) -> (Vec<Part>, bool) {
    fn text_of(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let (text, is_error) = match response {
        Value::Null => (String::new(), false),
        Value::Object(map) if map.len() == 1 => match map.iter().next() {
            Some((key, v)) if key == "result" || key == "output" => (text_of(v), false),
            Some((key, v)) if key == "error" => (text_of(v), true),
            _ => (response.to_string(), false),
        },
        other => (other.to_string(), false),
    };
    let content = if text.is_empty() {
        Vec::new()
    } else {
        vec![Part::text(text)]
    };
    (content, is_error)
}

/// Media of a multimodal function response (`functionResponse.parts`).
fn function_response_media(extra: &Map<String, Value>) -> Vec<Part> {
    let Some(Value::Array(parts)) = extra.get("parts") else {
        return Vec::new();
    };
    parts
        .iter()
        .filter_map(|p| serde_json::from_value::<g::Part>(p.clone()).ok())
        .filter_map(|p| media_to_ir(&p))
        .collect()
}

/// Google's OpenAPI-subset `Schema` -> JSON Schema: lower-case `type`s and
/// `nullable: true` as a `"null"` type, recursively.
fn openapi_to_json_schema(schema: &Value) -> Value {
    let Value::Object(map) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    let nullable = map.get("nullable").and_then(Value::as_bool) == Some(true);
    for (key, value) in map {
        let converted = match key.as_str() {
            "nullable" => continue,
            "type" => match value {
                Value::String(t) => {
                    let t = Value::String(t.to_ascii_lowercase());
                    if nullable {
                        Value::Array(vec![t, Value::String("null".to_owned())])
                    } else {
                        t
                    }
                }
                other => other.clone(),
            },
            "properties" => match value {
                Value::Object(props) => Value::Object(
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), openapi_to_json_schema(v)))
                        .collect(),
                ),
                other => other.clone(),
            },
            "items" => openapi_to_json_schema(value),
            "anyOf" | "any_of" => match value {
                Value::Array(items) => {
                    Value::Array(items.iter().map(openapi_to_json_schema).collect())
                }
                other => other.clone(),
            },
            _ => value.clone(),
        };
        let key = if key == "any_of" { "anyOf" } else { key };
        out.insert(key.to_owned(), converted);
    }
    Value::Object(out)
}

fn tool_choice_to_ir(fc: &g::FunctionCallingConfig) -> Option<ToolChoice> {
    let mode = fc.mode.as_deref()?.to_ascii_uppercase();
    match mode.as_str() {
        "NONE" => Some(ToolChoice::None),
        "AUTO" | "VALIDATED" => Some(ToolChoice::Auto),
        "ANY" => match fc.allowed_function_names.as_deref() {
            Some([only]) => Some(ToolChoice::Named(only.clone())),
            _ => Some(ToolChoice::Required),
        },
        _ => None,
    }
}

fn generation_config_to_ir(
    config: g::GenerationConfig,
    ir: &mut ChatRequest,
) -> Result<(), ConvertError> {
    let mut leftover = config.extra;
    ir.temperature = config.temperature;
    ir.top_p = config.top_p;
    ir.top_k = config.top_k;
    ir.n = config.candidate_count;
    ir.max_tokens = config.max_output_tokens;
    ir.stop = config.stop_sequences.unwrap_or_default();
    ir.seed = config.seed;
    ir.presence_penalty = config.presence_penalty;
    ir.frequency_penalty = config.frequency_penalty;

    let mime = config.response_mime_type.as_deref();
    match mime {
        Some("application/json") => {
            ir.response_format = Some(
                match (config.response_json_schema, config.response_schema) {
                    (Some(schema), _) => ResponseFormat::JsonSchema {
                        name: "response".to_owned(),
                        schema,
                        strict: None,
                    },
                    (None, Some(schema)) => ResponseFormat::JsonSchema {
                        name: "response".to_owned(),
                        schema: openapi_to_json_schema(&schema),
                        strict: None,
                    },
                    (None, None) => ResponseFormat::JsonObject,
                },
            );
        }
        Some("text/plain") | None => {
            if mime.is_some() {
                ir.response_format = Some(ResponseFormat::Text);
            }
            // A schema without a JSON MIME type is Gemini-specific.
            if let Some(s) = config.response_json_schema {
                leftover.insert("responseJsonSchema".to_owned(), s);
            }
            if let Some(s) = config.response_schema {
                leftover.insert("responseSchema".to_owned(), s);
            }
        }
        Some(other) => {
            // `text/x.enum` and the like: only Gemini can honour them.
            leftover.insert(
                "responseMimeType".to_owned(),
                Value::String(other.to_owned()),
            );
            if let Some(s) = config.response_json_schema {
                leftover.insert("responseJsonSchema".to_owned(), s);
            }
            if let Some(s) = config.response_schema {
                leftover.insert("responseSchema".to_owned(), s);
            }
        }
    }

    if let Some(thinking) = config.thinking_config {
        let mut reasoning = Reasoning {
            include_thoughts: thinking.include_thoughts,
            ..Reasoning::default()
        };
        match thinking.thinking_budget {
            Some(0) => reasoning.enabled = Some(false),
            Some(b) if b > 0 => reasoning.budget_tokens = u64::try_from(b).ok(),
            Some(_) => reasoning.enabled = Some(true), // -1: dynamic
            None => {}
        }
        if let Some(level) = thinking.thinking_level {
            let level = level.to_ascii_lowercase();
            if level != "thinking_level_unspecified" {
                reasoning.effort = Some(level);
            }
        }
        if reasoning != Reasoning::default() {
            ir.reasoning = Some(reasoning);
        }
    }
    if let Some(modalities) = config.response_modalities {
        leftover.insert(
            "responseModalities".to_owned(),
            serde_json::to_value(modalities)?,
        );
    }
    if !leftover.is_empty() {
        ir.extra
            .insert("generationConfig".to_owned(), Value::Object(leftover));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Requests: IR -> Gemini
// ---------------------------------------------------------------------------

/// IR -> a Gemini `generateContent` body (the model goes in the URL, see
/// [`request_path`]).
pub fn request_from_ir(req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    let wire = request_to_wire(req)?;
    let mut value = serde_json::to_value(&wire)?;
    if req.extra_format == Some(Format::Gemini) {
        merge_extra(&mut value, &req.extra);
    }
    Ok(serde_json::to_vec(&value)?)
}

/// IR -> the typed Gemini request, without the Gemini-only `extra` fields.
pub fn request_to_wire(req: &ChatRequest) -> Result<g::GenerateContentRequest, ConvertError> {
    let mut out = g::GenerateContentRequest::default();

    let mut system_parts = Vec::new();
    for part in &req.system {
        match part {
            Part::Text { text, .. } => system_parts.push(g::Part::text(text.clone())),
            _ => {
                return Err(ConvertError::Unsupported(
                    "non-text system content".to_owned(),
                ));
            }
        }
    }
    if !system_parts.is_empty() {
        out.system_instruction = Some(g::Content {
            role: None,
            parts: system_parts,
            extra: Map::new(),
        });
    }

    for (mi, message) in req.messages.iter().enumerate() {
        let (role, parts) = match message.role {
            Role::Assistant => ("model", assistant_parts(mi, message)?),
            Role::User | Role::Tool | Role::System => ("user", user_parts(req, mi, message)?),
        };
        if parts.is_empty() {
            continue;
        }
        match out.contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => out.contents.push(g::Content {
                role: Some(role.to_owned()),
                parts,
                extra: Map::new(),
            }),
        }
    }
    if is_gemini3_plus(&req.model) {
        for content in &mut out.contents {
            if content.role.as_deref() != Some("model") {
                continue;
            }
            let calls = || content.parts.iter().filter(|p| p.function_call.is_some());
            if calls().any(|p| p.thought_signature.is_some()) {
                continue;
            }
            if let Some(first) = content.parts.iter_mut().find(|p| p.function_call.is_some()) {
                first.thought_signature = Some(SKIP_SIGNATURE.to_owned());
            }
        }
    }

    if !req.tools.is_empty() {
        out.tools.push(g::Tool {
            function_declarations: req
                .tools
                .iter()
                .map(|t| g::FunctionDeclaration {
                    name: t.name.clone(),
                    description: t.description.clone(),
                    parameters_json_schema: Some(without_schema_marker(&t.parameters)),
                    ..g::FunctionDeclaration::default()
                })
                .collect(),
            ..g::Tool::default()
        });
        if let Some(choice) = &req.tool_choice {
            let (mode, allowed) = match choice {
                ToolChoice::None => ("NONE", None),
                ToolChoice::Auto => ("AUTO", None),
                ToolChoice::Required => ("ANY", None),
                ToolChoice::Named(name) => ("ANY", Some(vec![name.clone()])),
            };
            out.tool_config = Some(g::ToolConfig {
                function_calling_config: Some(g::FunctionCallingConfig {
                    mode: Some(mode.to_owned()),
                    allowed_function_names: allowed,
                    extra: Map::new(),
                }),
                extra: Map::new(),
            });
        }
    }

    let mut config = g::GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        candidate_count: req.n,
        max_output_tokens: req.max_tokens,
        stop_sequences: (!req.stop.is_empty()).then(|| req.stop.clone()),
        seed: req.seed,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        ..g::GenerationConfig::default()
    };
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            config.response_mime_type = Some("application/json".to_owned());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            config.response_mime_type = Some("application/json".to_owned());
            config.response_json_schema = Some(without_schema_marker(schema));
        }
        Some(ResponseFormat::Text) | None => {}
    }
    if let Some(reasoning) = &req.reasoning {
        config.thinking_config = thinking_config(reasoning, &req.model)?;
    }
    if config != g::GenerationConfig::default() {
        out.generation_config = Some(config);
    }
    Ok(out)
}

/// Drops the root `$schema` marker, which Gemini's schema fields reject.
fn without_schema_marker(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(map) = &mut schema {
        map.remove("$schema");
    }
    schema
}

/// Gemini 2.5 Pro cannot turn thinking off; 128 is its smallest budget.
const PRO_MIN_BUDGET: i64 = 128;

/// The nearest budget the model accepts: 2.5 Pro 128..=32768 (thinking cannot be off), Flash-Lite
/// 0 or 512..=24576, other models 0..=24576; -1 (dynamic) passes through.
pub fn clamp_thinking_budget(model: &str, budget: i64) -> i64 {
    let model = model.to_ascii_lowercase();
    if budget == -1 {
        return -1;
    }
    let (min, max, can_disable) = if model.contains("-pro") {
        (PRO_MIN_BUDGET, 32_768, false)
    } else if model.contains("flash-lite") {
        (512, 24_576, true)
    } else {
        (1, 24_576, true)
    };
    if budget <= 0 {
        return if can_disable { 0 } else { min };
    }
    budget.clamp(min, max)
}

fn thinking_config(
    reasoning: &Reasoning,
    model: &str,
) -> Result<Option<g::ThinkingConfig>, ConvertError> {
    let gemini3 = is_gemini3_plus(model);
    let off_budget = if model.contains("-pro") {
        PRO_MIN_BUDGET
    } else {
        0
    };
    let mut config = g::ThinkingConfig {
        // A client that turned thinking on explicitly (Anthropic `thinking`) expects to see it.
        include_thoughts: reasoning
            .include_thoughts
            .or((reasoning.enabled == Some(true)
                || reasoning.effort.as_deref().is_some_and(|e| e != "none"))
            .then_some(true)),
        ..g::ThinkingConfig::default()
    };
    if let Some(budget) = reasoning.budget_tokens {
        let budget = i64::try_from(budget).unwrap_or(i64::MAX);
        config.thinking_budget = Some(clamp_thinking_budget(model, budget));
    } else if reasoning.enabled == Some(false) {
        if gemini3 {
            config.thinking_level = Some("LOW".to_owned());
        } else {
            config.thinking_budget = Some(off_budget);
        }
    } else if let Some(effort) = &reasoning.effort {
        let unknown = || {
            ConvertError::invalid(
                "reasoning_effort",
                format!("{effort:?} is not none, minimal, low, medium, high or xhigh"),
            )
        };
        if gemini3 {
            let level = match effort.as_str() {
                "none" | "minimal" => "MINIMAL",
                "low" => "LOW",
                "medium" => "MEDIUM",
                "high" => "HIGH",
                "xhigh" => "XHIGH",
                _ => return Err(unknown()),
            };
            config.thinking_level = Some(level.to_owned());
        } else {
            let budget = match effort.as_str() {
                "none" => off_budget,
                "minimal" => 512,
                "low" => 1024,
                "medium" => 8192,
                "high" | "xhigh" => 24576,
                _ => return Err(unknown()),
            };
            config.thinking_budget = Some(budget);
        }
    } else if reasoning.enabled == Some(true) && !gemini3 {
        config.thinking_budget = Some(-1);
    }
    Ok((config != g::ThinkingConfig::default()).then_some(config))
}

fn assistant_parts(mi: usize, message: &Message) -> Result<Vec<g::Part>, ConvertError> {
    let mut out = Vec::new();
    // A reasoning signature waiting for the part it belongs to.
    let mut pending_sig: Option<String> = None;
    for part in &message.content {
        match part {
            Part::Reasoning { signature, .. } => {
                if let Some(sig) = signature {
                    pending_sig = Some(sig.clone());
                }
            }
            Part::RedactedReasoning { .. } => {}
            Part::Text { text, .. } => {
                if text.is_empty() {
                    continue;
                }
                out.push(g::Part {
                    text: Some(text.clone()),
                    thought_signature: pending_sig.take(),
                    ..g::Part::default()
                });
            }
            Part::ToolCall {
                name,
                arguments,
                signature,
                ..
            } => {
                let args = call_args(mi, name, arguments)?;
                // A call's own signature wins over one that preceded it.
                let preceding = pending_sig.take();
                let sig = signature.clone().or(preceding);
                out.push(tool_call_part("", name, args, sig));
            }
            Part::ToolResult { .. } => {
                return Err(ConvertError::invalid(
                    format!("messages[{mi}]"),
                    "tool results cannot be sent by the assistant",
                ));
            }
            media => {
                if let Some(mut p) = media_to_gemini(media) {
                    p.thought_signature = pending_sig.take();
                    out.push(p);
                }
            }
        }
    }
    Ok(out)
}

/// A call's arguments as the JSON object Gemini requires.
fn call_args(mi: usize, name: &str, arguments: &str) -> Result<Value, ConvertError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ConvertError::invalid(
            format!("messages[{mi}].tool_calls({name}).arguments"),
            "must be a JSON object",
        )),
    }
}

fn user_parts(
    req: &ChatRequest,
    mi: usize,
    message: &Message,
) -> Result<Vec<g::Part>, ConvertError> {
    let mut out = Vec::new();
    for part in &message.content {
        match part {
            Part::Text { text, .. } => {
                if !text.is_empty() {
                    out.push(g::Part::text(text.clone()));
                }
            }
            Part::ToolResult {
                call_id,
                name,
                content,
                is_error,
                ..
            } => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => tool_name_before(req, mi, call_id)
                        .ok_or_else(|| {
                            ConvertError::invalid(
                                format!("messages[{mi}].tool_call_id"),
                                format!("no earlier tool call has id {call_id:?}"),
                            )
                        })?
                        .to_owned(),
                };
                out.push(g::Part {
                    function_response: Some(g::FunctionResponse {
                        id: None,
                        name,
                        response: function_response_value(content, *is_error),
                        extra: Map::new(),
                    }),
                    ..g::Part::default()
                });
                out.extend(content.iter().filter_map(media_to_gemini));
            }
            Part::ToolCall { .. } => {
                return Err(ConvertError::invalid(
                    format!("messages[{mi}]"),
                    "tool calls belong in assistant messages",
                ));
            }
            Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
            media => out.extend(media_to_gemini(media)),
        }
    }
    Ok(out)
}

/// The name of call `call_id` in the nearest earlier message (ids from
/// id-less formats repeat across turns, so the nearest one is the right
/// one), else anywhere in the conversation.
fn tool_name_before<'a>(req: &'a ChatRequest, mi: usize, call_id: &str) -> Option<&'a str> {
    req.messages
        .get(..mi)
        .unwrap_or(&[])
        .iter()
        .rev()
        .find_map(|m| {
            m.content.iter().find_map(|p| match p {
                Part::ToolCall { id, name, .. } if id == call_id => Some(name.as_str()),
                _ => None,
            })
        })
        .or_else(|| req.tool_name_for(call_id))
}

fn function_response_value(content: &[Part], is_error: bool) -> Value {
    let text = crate::ir::joined_text(content);
    if !is_error && let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(&text) {
        return v;
    }
    let key = if is_error { "error" } else { "result" };
    let mut map = Map::new();
    map.insert(key.to_owned(), Value::String(text));
    Value::Object(map)
}

/// Merges Gemini-only fields kept from a Gemini ingress body: absent
/// top-level keys are added, `tools` entries appended, and
/// `generationConfig` / `toolConfig` keys added where absent.
fn merge_extra(body: &mut Value, extra: &Map<String, Value>) {
    let Value::Object(body) = body else {
        return;
    };
    for (key, value) in extra {
        match (key.as_str(), value) {
            ("tools", Value::Array(tools)) => {
                let entry = body
                    .entry("tools")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = entry {
                    list.extend(tools.iter().cloned());
                }
            }
            ("generationConfig" | "toolConfig", Value::Object(fields)) => {
                let entry = body
                    .entry(key.as_str())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(target) = entry {
                    for (k, v) in fields {
                        target.entry(k.as_str()).or_insert_with(|| v.clone());
                    }
                }
            }
            _ => {
                body.entry(key.as_str()).or_insert_with(|| value.clone());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

const CONTENT_FILTER_REASONS: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "MODEL_ARMOR",
];

fn finish_to_ir(reason: &str) -> FinishReason {
    if reason == "MAX_TOKENS" {
        FinishReason::Length
    } else if CONTENT_FILTER_REASONS.contains(&reason) {
        FinishReason::ContentFilter
    } else {
        FinishReason::Stop
    }
}

fn finish_from_ir(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop | FinishReason::ToolCalls => "STOP",
        FinishReason::Length => "MAX_TOKENS",
        FinishReason::ContentFilter => "SAFETY",
    }
}

fn usage_to_ir(u: &g::UsageMetadata) -> Usage {
    let thoughts = u.thoughts_token_count.unwrap_or(0);
    Usage {
        input_tokens: u.prompt_token_count.unwrap_or(0)
            + u.tool_use_prompt_token_count.unwrap_or(0),
        output_tokens: u.candidates_token_count.unwrap_or(0) + thoughts,
        cache_read_tokens: u.cached_content_token_count.unwrap_or(0),
        cache_write_tokens: 0,
        reasoning_tokens: thoughts,
    }
}

fn usage_from_ir(u: &Usage) -> g::UsageMetadata {
    let nonzero = |n: u64| (n > 0).then_some(n);
    g::UsageMetadata {
        prompt_token_count: nonzero(u.input_tokens),
        candidates_token_count: nonzero(u.output_tokens.saturating_sub(u.reasoning_tokens)),
        total_token_count: nonzero(u.total()),
        cached_content_token_count: nonzero(u.cache_read_tokens),
        thoughts_token_count: nonzero(u.reasoning_tokens),
        ..g::UsageMetadata::default()
    }
}

/// Candidate 0 (the one without an index counts as 0).
fn first_candidate(resp: &g::GenerateContentResponse) -> Option<&g::Candidate> {
    resp.candidates.iter().find(|c| c.index.unwrap_or(0) == 0)
}

/// A Gemini `GenerateContentResponse` -> IR.
pub fn response_to_ir(body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let resp: g::GenerateContentResponse = serde_json::from_slice(body)?;
    let mut out = ChatResponse {
        id: resp.response_id.clone().unwrap_or_default(),
        model: resp.model_version.clone().unwrap_or_default(),
        usage: resp
            .usage_metadata
            .as_ref()
            .map(usage_to_ir)
            .unwrap_or_default(),
        ..ChatResponse::default()
    };
    match first_candidate(&resp) {
        Some(candidate) => {
            if let Some(content) = &candidate.content {
                let mut ids = CallIds::for_response(resp.response_id.as_deref().unwrap_or(""));
                out.content = model_parts_to_ir(&content.parts, &mut ids);
            }
            out.finish_reason = candidate
                .finish_reason
                .as_deref()
                .map(finish_to_ir)
                .unwrap_or_default();
            if out
                .content
                .iter()
                .any(|p| matches!(p, Part::ToolCall { .. }))
            {
                out.finish_reason = FinishReason::ToolCalls;
            }
        }
        None => {
            if resp
                .prompt_feedback
                .as_ref()
                .is_some_and(|f| f.block_reason.is_some())
            {
                out.finish_reason = FinishReason::ContentFilter;
            }
        }
    }
    Ok(out)
}

/// IR -> a Gemini `GenerateContentResponse` (refusal text, if any, is
/// appended as a text part; Gemini has no refusal field).
pub fn response_from_ir(resp: &ChatResponse) -> Vec<u8> {
    let parts = response_parts_from_ir(&resp.content, resp.refusal.as_deref());
    let wire = g::GenerateContentResponse {
        candidates: vec![g::Candidate {
            content: (!parts.is_empty()).then(|| model_content(parts)),
            finish_reason: Some(finish_from_ir(resp.finish_reason).to_owned()),
            index: Some(0),
            ..g::Candidate::default()
        }],
        usage_metadata: Some(usage_from_ir(&resp.usage)),
        model_version: (!resp.model.is_empty()).then(|| resp.model.clone()),
        response_id: (!resp.id.is_empty()).then(|| resp.id.clone()),
        ..g::GenerateContentResponse::default()
    };
    serde_json::to_vec(&wire).unwrap_or_default()
}

fn model_content(parts: Vec<g::Part>) -> g::Content {
    g::Content {
        role: Some("model".to_owned()),
        parts,
        extra: Map::new(),
    }
}

// ---------------------------------------------------------------------------
// Stream decoding (upstream Gemini SSE -> IR)
// ---------------------------------------------------------------------------

/// Decodes `:streamGenerateContent?alt=sse`. Each SSE `data` is a whole
/// `GenerateContentResponse`: the first one yields `Start` (id =
/// `responseId`, model = `modelVersion`, both possibly empty); text and
/// thought parts yield deltas, signatures `ReasoningSignature` (before the
/// text they ride on); every `functionCall` (several may share a chunk) a
/// `ToolCallStart` with a running index plus one `ToolCallDelta` holding
/// all arguments, as Gemini never splits a call. Usage is cumulative on
/// every chunk; the latest is emitted just before `Finish` (and again if a
/// later chunk changes it). `{"error": ...}` chunks yield `Error`.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    started: bool,
    /// See [`response_call_stem`].
    call_stem: String,
    next_index: u32,
    saw_tool_call: bool,
    usage: Option<Usage>,
    usage_sent: Option<Usage>,
    finished: bool,
    failed: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder::default()
    }

    fn emit_usage(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(u) = self.usage
            && self.usage_sent != Some(u)
        {
            out.push(StreamEvent::Usage(u));
            self.usage_sent = Some(u);
        }
    }

    fn emit_finish(&mut self, reason: FinishReason, out: &mut Vec<StreamEvent>) {
        self.emit_usage(out);
        let reason = if self.saw_tool_call {
            FinishReason::ToolCalls
        } else {
            reason
        };
        out.push(StreamEvent::Finish {
            reason,
            stop_sequence: None,
        });
        self.finished = true;
    }

    fn push_part(&mut self, part: &g::Part, out: &mut Vec<StreamEvent>) {
        if let Some(call) = &part.function_call {
            let index = self.next_index;
            self.next_index += 1;
            self.saw_tool_call = true;
            out.push(StreamEvent::ToolCallStart {
                index,
                id: match &call.id {
                    Some(id) if !id.is_empty() => id.clone(),
                    _ => format!("call_{}{index}", self.call_stem),
                },
                name: call.name.clone(),
                signature: signature_of(part),
            });
            out.push(StreamEvent::ToolCallDelta {
                index,
                arguments: args_text(call.args.as_ref()),
            });
            return;
        }
        let text = part.text.as_deref().unwrap_or("");
        if part.is_thought() {
            if !text.is_empty() {
                out.push(StreamEvent::ReasoningDelta(text.to_owned()));
            }
            if let Some(sig) = &part.thought_signature {
                out.push(StreamEvent::ReasoningSignature(sig.clone()));
            }
            return;
        }
        if let Some(sig) = &part.thought_signature {
            out.push(StreamEvent::ReasoningSignature(sig.clone()));
        }
        if !text.is_empty() {
            out.push(StreamEvent::TextDelta(text.to_owned()));
        }
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let data = event.data.trim();
        if data.is_empty() || self.failed {
            return Ok(());
        }
        let value: Value = serde_json::from_str(data)?;
        if let Some(error) = value.get("error") {
            out.push(StreamEvent::Error(api_error_from_value(error, 500)));
            self.failed = true;
            return Ok(());
        }
        let chunk: g::GenerateContentResponse = serde_json::from_value(value)?;
        if !self.started {
            self.started = true;
            self.call_stem = response_call_stem(chunk.response_id.as_deref().unwrap_or(""));
            out.push(StreamEvent::Start {
                id: chunk.response_id.clone().unwrap_or_default(),
                model: chunk.model_version.clone().unwrap_or_default(),
                created: 0,
            });
        }
        if let Some(u) = &chunk.usage_metadata {
            self.usage = Some(usage_to_ir(u));
        }
        let mut finish = None;
        match first_candidate(&chunk) {
            Some(candidate) => {
                if let Some(content) = &candidate.content {
                    for part in &content.parts {
                        self.push_part(part, out);
                    }
                }
                finish = candidate.finish_reason.as_deref().map(finish_to_ir);
            }
            None => {
                if chunk
                    .prompt_feedback
                    .as_ref()
                    .is_some_and(|f| f.block_reason.is_some())
                {
                    finish = Some(FinishReason::ContentFilter);
                }
            }
        }
        match finish {
            Some(reason) if !self.finished => self.emit_finish(reason, out),
            _ if self.finished => self.emit_usage(out),
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        if self.failed || !self.started || self.finished {
            return;
        }
        self.emit_finish(FinishReason::Stop, out);
    }
}

// ---------------------------------------------------------------------------
// Stream encoding (IR -> Gemini client)
// ---------------------------------------------------------------------------

/// A tool call being collected: Gemini sends whole calls, so deltas are
/// buffered until the call is complete.
#[derive(Debug)]
struct BufferedCall {
    index: u32,
    id: String,
    name: String,
    signature: Option<String>,
    arguments: String,
}

/// Encodes IR events as a Gemini stream: one `GenerateContentResponse`
/// chunk per text/reasoning delta (a reasoning signature becomes an empty
/// `thought` part carrying it), buffered tool calls emitted as whole
/// `functionCall` parts (all open calls in one chunk, at the next non-tool
/// content event or at the end), and a final chunk with `finishReason` and
/// `usageMetadata`. Every chunk repeats `modelVersion` and `responseId`
/// from `Start`.
///
/// Two framings: SSE (`data: {...}\n\n`, what `alt=sse` clients such as
/// google-genai read) from [`StreamEncoder::new`], and the JSON array a
/// client gets from `:streamGenerateContent` without `alt=sse`
/// (`[{...}\n,{...}\n]`, written incrementally) from
/// [`StreamEncoder::json_array`].
#[derive(Debug, Default)]
pub struct StreamEncoder {
    json_array: bool,
    chunks: usize,
    id: String,
    model: String,
    calls: Vec<BufferedCall>,
    usage: Option<Usage>,
    finish: Option<FinishReason>,
    errored: bool,
    closed: bool,
}

impl StreamEncoder {
    /// SSE framing.
    pub fn new() -> Self {
        StreamEncoder::default()
    }

    /// JSON-array framing (no `alt=sse`).
    pub fn json_array() -> Self {
        StreamEncoder {
            json_array: true,
            ..StreamEncoder::default()
        }
    }

    fn write(&mut self, json: &[u8], out: &mut Vec<u8>) {
        if self.json_array {
            out.push(if self.chunks == 0 { b'[' } else { b',' });
            out.extend_from_slice(json);
            out.push(b'\n');
        } else {
            out.extend_from_slice(&encode_data(json));
        }
        self.chunks += 1;
    }

    fn write_chunk(&mut self, chunk: &g::GenerateContentResponse, out: &mut Vec<u8>) {
        if let Ok(json) = serde_json::to_vec(chunk) {
            self.write(&json, out);
        }
    }

    fn chunk(&self, parts: Vec<g::Part>) -> g::GenerateContentResponse {
        g::GenerateContentResponse {
            candidates: vec![g::Candidate {
                content: Some(model_content(parts)),
                index: Some(0),
                ..g::Candidate::default()
            }],
            model_version: (!self.model.is_empty()).then(|| self.model.clone()),
            response_id: (!self.id.is_empty()).then(|| self.id.clone()),
            ..g::GenerateContentResponse::default()
        }
    }

    fn take_call_parts(&mut self) -> Vec<g::Part> {
        self.calls
            .drain(..)
            .map(|c| {
                tool_call_part(
                    &c.id,
                    &c.name,
                    args_object_lenient(&c.arguments),
                    c.signature,
                )
            })
            .collect()
    }

    fn flush_calls(&mut self, out: &mut Vec<u8>) {
        if self.calls.is_empty() {
            return;
        }
        let parts = self.take_call_parts();
        let chunk = self.chunk(parts);
        self.write_chunk(&chunk, out);
    }

    fn emit_parts(&mut self, parts: Vec<g::Part>, out: &mut Vec<u8>) {
        self.flush_calls(out);
        let chunk = self.chunk(parts);
        self.write_chunk(&chunk, out);
    }
}

impl EncodeStream for StreamEncoder {
    fn push(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        if self.errored || self.closed {
            return;
        }
        match event {
            StreamEvent::Start { id, model, .. } => {
                self.id.clone_from(id);
                self.model.clone_from(model);
            }
            StreamEvent::TextDelta(text) | StreamEvent::RefusalDelta(text) => {
                if !text.is_empty() {
                    self.emit_parts(vec![g::Part::text(text.clone())], out);
                }
            }
            StreamEvent::ReasoningDelta(text) => {
                if !text.is_empty() {
                    let part = g::Part {
                        text: Some(text.clone()),
                        thought: Some(true),
                        ..g::Part::default()
                    };
                    self.emit_parts(vec![part], out);
                }
            }
            StreamEvent::ReasoningSignature(sig) => {
                let part = g::Part {
                    text: Some(String::new()),
                    thought: Some(true),
                    thought_signature: Some(sig.clone()),
                    ..g::Part::default()
                };
                self.emit_parts(vec![part], out);
            }
            StreamEvent::RedactedReasoning(_) => {}
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                signature,
            } => self.calls.push(BufferedCall {
                index: *index,
                id: id.clone(),
                name: name.clone(),
                signature: signature.clone(),
                arguments: String::new(),
            }),
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = self.calls.iter_mut().find(|c| c.index == *index) {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::Usage(u) => {
                let merged = self.usage.get_or_insert_with(Usage::default);
                merged.merge_max(u);
            }
            StreamEvent::Finish { reason, .. } => self.finish = Some(*reason),
            StreamEvent::Error(err) => {
                self.flush_calls(out);
                let json = error_body(err);
                self.write(&json, out);
                self.errored = true;
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.closed = true;
        if !self.errored {
            let mut parts = self.take_call_parts();
            if parts.is_empty() {
                parts.push(g::Part::text(""));
            }
            let mut chunk = self.chunk(parts);
            if let Some(candidate) = chunk.candidates.first_mut() {
                candidate.finish_reason =
                    Some(finish_from_ir(self.finish.unwrap_or_default()).to_owned());
            }
            chunk.usage_metadata = self.usage.as_ref().map(usage_from_ir);
            self.write_chunk(&chunk, out);
        }
        if self.json_array {
            if self.chunks == 0 {
                out.push(b'[');
            }
            out.push(b']');
        }
    }
}

/// A whole event sequence as the JSON-array stream (`[{...}\n,{...}\n]`)
/// google-genai reads from `:streamGenerateContent` without `alt=sse`.
pub fn encode_json_array_stream(events: &[StreamEvent]) -> Vec<u8> {
    let mut encoder = StreamEncoder::json_array();
    let mut out = Vec::new();
    for event in events {
        encoder.push(event, &mut out);
    }
    encoder.finish(&mut out);
    out
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The canonical `google.rpc.Code` name for an HTTP status, falling back to
/// the error kind for statuses Google does not use.
pub fn google_status(status: u16, kind: ErrorKind) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => match kind {
            ErrorKind::InvalidRequest | ErrorKind::RequestTooLarge => "INVALID_ARGUMENT",
            ErrorKind::Authentication => "UNAUTHENTICATED",
            ErrorKind::Permission => "PERMISSION_DENIED",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::RateLimit => "RESOURCE_EXHAUSTED",
            ErrorKind::Api => "INTERNAL",
            ErrorKind::Overloaded => "UNAVAILABLE",
            ErrorKind::Timeout => "DEADLINE_EXCEEDED",
        },
    }
}

fn kind_from_google_status(status: &str) -> Option<ErrorKind> {
    Some(match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => ErrorKind::InvalidRequest,
        "UNAUTHENTICATED" => ErrorKind::Authentication,
        "PERMISSION_DENIED" => ErrorKind::Permission,
        "NOT_FOUND" => ErrorKind::NotFound,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimit,
        "UNAVAILABLE" => ErrorKind::Overloaded,
        "DEADLINE_EXCEEDED" => ErrorKind::Timeout,
        "INTERNAL" | "UNKNOWN" | "DATA_LOSS" | "UNIMPLEMENTED" | "ABORTED" => ErrorKind::Api,
        _ => return None,
    })
}

/// `{"error":{"code":..,"message":..,"status":..}}`.
pub fn error_body(err: &ApiError) -> Vec<u8> {
    let body = g::ErrorResponse {
        error: g::ErrorBody {
            code: err.status,
            message: err.message.clone(),
            status: google_status(err.status, err.kind).to_owned(),
            details: Vec::new(),
        },
    };
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Reads Google's error envelope (also the one-element array a JSON-array
/// stream ends with). The kind follows `error.status`; an invalid API key
/// (Gemini answers 400 with reason `API_KEY_INVALID`) is an authentication
/// error. Non-JSON bodies keep (a bounded prefix of) their text.
pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    let value: Option<Value> = serde_json::from_slice(body).ok();
    let value = match value {
        Some(Value::Array(items)) => items.into_iter().next(),
        other => other,
    };
    if let Some(error) = value.as_ref().and_then(|v| v.get("error")) {
        let mut err = api_error_from_value(error, status);
        err.status = status;
        return err;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("upstream returned HTTP {status}")
    } else {
        text.chars().take(1000).collect()
    };
    ApiError {
        status,
        kind: ErrorKind::from_status(status),
        message,
    }
}

/// The `error` object -> ApiError; `code` gives the status when it is a
/// valid HTTP status, else `fallback_status`.
fn api_error_from_value(error: &Value, fallback_status: u16) -> ApiError {
    let status = error
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..=599).contains(c))
        .unwrap_or(fallback_status);
    let google = error.get("status").and_then(Value::as_str).unwrap_or("");
    let key_invalid = error
        .get("details")
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details
                .iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        });
    let kind = if key_invalid {
        ErrorKind::Authentication
    } else if status == 413 {
        // Google has no status name for it; INVALID_ARGUMENT would hide it.
        ErrorKind::RequestTooLarge
    } else {
        kind_from_google_status(google).unwrap_or_else(|| ErrorKind::from_status(status))
    };
    let message = error
        .get("message")
        .or(Some(error).filter(|e| e.is_string()))
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("upstream returned HTTP {status}"));
    ApiError {
        status,
        kind,
        message,
    }
}

// ---------------------------------------------------------------------------
// Token counting
// ---------------------------------------------------------------------------

/// A rough prompt size for `countTokens` when the upstream cannot count (see
/// [`crate::ir::estimate`] for the rule and [`crate::ir::estimate::GEMINI`] for the costs).
pub fn estimate_input_tokens(req: &ChatRequest) -> u64 {
    crate::ir::estimate::input_tokens(req, &crate::ir::estimate::GEMINI)
}

/// A `countTokens` response body: `{"totalTokens": n}`.
pub fn count_tokens_body(total_tokens: u64) -> Vec<u8> {
    let body = g::CountTokensResponse {
        total_tokens,
        ..g::CountTokensResponse::default()
    };
    serde_json::to_vec(&body).unwrap_or_default()
}
