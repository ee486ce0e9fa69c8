//! Amazon Bedrock Runtime's Converse API: `POST /model/{modelId}/converse`
//! (JSON) and `/converse-stream` (AWS event stream), validated as Bedrock
//! validates (its messages are quoted from real responses where known) and
//! answered by the shared rules of [`crate::convo`]. Errors are AWS REST-JSON
//! errors: the status, an `x-amzn-ErrorType` header and `{"message": ...}`.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde_json::{Map, Value};

use crate::FaultKind;
use crate::body::{self, Body};
use crate::convo::{self, Call, Choice, Convo, Plan, Stop, ToolDef};
use crate::eventstream;
use crate::server::{Ctx, TokenUsage};
use crate::sigv4::SigError;
use crate::stream::{Events, arg_pieces};
use crate::util::{Json, alnum_id, base64_decode, fnv1a64, obj, tokens_for_chars, word_pieces};

/// SigV4 service name of Bedrock Runtime.
pub(crate) const SERVICE: &str = "bedrock";
/// Label of the reasoning signatures the mock issues and verifies (the same
/// scheme as Anthropic's thinking signatures).
const SIGNATURE_LABEL: &str = "mock-thinking-signature";
const CORAL_BEDROCK: &str = "http://internal.amazon.com/coral/com.amazon.bedrock/";
const CORAL_SERVICE: &str = "http://internal.amazon.com/coral/com.amazon.coral.service/";
const INTERNAL: &str =
    "The system encountered an unexpected error during processing. Try your request again.";
/// Padding characters for the `p` field Bedrock adds to stream payloads.
const PADDING: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

fn error_with(status: StatusCode, kind: &str, namespace: &str, message: &str) -> Response<Body> {
    let mut resp = body::json(status, obj! {"message": message}.to_vec());
    if let Ok(v) = HeaderValue::try_from(format!("{kind}:{namespace}")) {
        resp.headers_mut()
            .insert(HeaderName::from_static("x-amzn-errortype"), v);
    }
    resp
}

/// A modeled Bedrock error (`ValidationException`, `ThrottlingException`, ...).
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response<Body> {
    error_with(status, kind, CORAL_BEDROCK, message)
}

pub(crate) fn validation(message: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// The front door's answers to bad credentials.
pub(crate) fn auth_error(e: &SigError) -> Response<Body> {
    let forbidden = StatusCode::FORBIDDEN;
    match e {
        SigError::Missing => error_with(
            forbidden,
            "MissingAuthenticationTokenException",
            CORAL_SERVICE,
            "Missing Authentication Token",
        ),
        SigError::Incomplete(m) => {
            error_with(forbidden, "IncompleteSignatureException", CORAL_SERVICE, m)
        }
        SigError::UnknownKey => invalid_key(),
        SigError::Mismatch => error_with(
            forbidden,
            "InvalidSignatureException",
            CORAL_SERVICE,
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ),
        SigError::Invalid(m) => {
            error_with(forbidden, "InvalidSignatureException", CORAL_SERVICE, m)
        }
    }
}

/// An unknown access key, or an unknown Bedrock API key (bearer).
pub(crate) fn invalid_key() -> Response<Body> {
    error_with(
        StatusCode::FORBIDDEN,
        "UnrecognizedClientException",
        CORAL_SERVICE,
        "The security token included in the request is invalid.",
    )
}

pub(crate) fn throttled() -> Response<Body> {
    error(
        StatusCode::TOO_MANY_REQUESTS,
        "ThrottlingException",
        "Too many requests, please wait before trying again.",
    )
}

pub(crate) fn access_denied() -> Response<Body> {
    error(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        "You don't have access to the model with the specified model ID.",
    )
}

pub(crate) fn unavailable() -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailableException",
        "Bedrock is unable to process your request.",
    )
}

pub(crate) fn bad_json() -> Response<Body> {
    error(
        StatusCode::BAD_REQUEST,
        "SerializationException",
        "Unexpected character: was expecting a JSON value",
    )
}

/// A scripted fault in Bedrock's words (rate limits and raw statuses are
/// handled by the caller).
pub(crate) fn fault(kind: FaultKind) -> Response<Body> {
    match kind {
        FaultKind::InsufficientQuota => access_denied(),
        FaultKind::InvalidKey => invalid_key(),
        FaultKind::Overloaded => unavailable(),
        FaultKind::BadRequest { message } => validation(&message),
        FaultKind::ContextLengthExceeded => validation("Input is too long for requested model."),
        _ => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerException",
            INTERNAL,
        ),
    }
}

/// The model id of a Converse path, percent-decoded (`anthropic.claude-v2%3A1`
/// → `anthropic.claude-v2:1`).
pub(crate) fn model_in_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    if model.is_empty() || !(op == "converse" || op == "converse-stream") {
        return None;
    }
    let bytes = model.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(v) = model
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Model ids Bedrock would know: a `provider.model` id (optionally with a
/// cross-region prefix such as `us.`), an ARN, or one of `MockOptions::models`.
fn known_model(ctx: &Ctx<'_>, model: &str) -> bool {
    if ctx.shared.has_model(model) || model.starts_with("arn:aws") {
        return true;
    }
    let Some((provider, rest)) = model.split_once('.') else {
        return false;
    };
    let provider = match provider {
        "us" | "eu" | "apac" | "global" | "us-gov" | "jp" | "au" => {
            rest.split_once('.').map_or("", |(p, _)| p)
        }
        p => p,
    };
    !provider.is_empty()
        && provider.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && model
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
}

fn text_chars(block: &Value) -> usize {
    if let Some(t) = block.get("text").and_then(Value::as_str) {
        return t.chars().count();
    }
    if let Some(r) = block.get("toolResult") {
        return r
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|c| match (c.get("text"), c.get("json")) {
                (Some(Value::String(t)), _) => t.chars().count(),
                (_, Some(j)) => convo::string_chars(j),
                _ => 0,
            })
            .sum();
    }
    0
}

fn blocks(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn messages(v: &Value) -> &[Value] {
    v.get("messages").map_or(&[], blocks)
}

/// Input tokens: ceil(characters of the system texts, message texts and
/// tool results / 4), at least 1.
pub(crate) fn prompt_tokens_of(v: &Value) -> u64 {
    let system: usize = v
        .get("system")
        .map_or(&[][..], blocks)
        .iter()
        .map(text_chars)
        .sum();
    let msgs: usize = messages(v)
        .iter()
        .flat_map(|m| m.get("content").map_or(&[][..], blocks))
        .map(text_chars)
        .sum();
    tokens_for_chars(system + msgs)
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    v.get("inferenceConfig")
        .and_then(|c| c.get("maxTokens"))
        .and_then(Value::as_u64)
}

/// The one member a union object sets (`None` for zero or several).
fn member(block: &Value) -> Option<&str> {
    let obj = block.as_object()?;
    let mut keys = obj
        .keys()
        .filter(|k| !obj.get(*k).is_some_and(Value::is_null));
    let first = keys.next()?;
    keys.next().is_none().then_some(first.as_str())
}

fn constraint(value: &Value, at: &str, rule: &str) -> String {
    let shown = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "1 validation error detected: Value '{shown}' at '{at}' failed to satisfy constraint: {rule}"
    )
}

/// Does `bytes` start the way an image of `format` does?
fn image_matches(format: &str, bytes: &[u8]) -> bool {
    match format {
        "png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "gif" => bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a"),
        "webp" => {
            bytes.len() >= 12 && bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP")
        }
        _ => false,
    }
}

fn check_block(i: usize, j: usize, role: &str, block: &Value) -> Result<(), String> {
    let at = format!("messages.{i}.content.{j}");
    let Some(kind) = member(block) else {
        return Err(format!(
            "The ContentBlock object at {at} must set exactly one of the following keys: text, image, document, video, audio, toolUse, toolResult, guardContent, cachePoint, reasoningContent, citationsContent, searchResult."
        ));
    };
    match kind {
        "text" => match block.get("text") {
            Some(Value::String(t)) if t.trim().is_empty() => Err(format!(
                "The text field in the ContentBlock object at {at} is blank. Add text to the text field, and try again."
            )),
            Some(Value::String(_)) => Ok(()),
            _ => Err(format!(
                "The text field in the ContentBlock object at {at} must be a string."
            )),
        },
        "image" => {
            if role != "user" {
                return Err(format!(
                    "The ContentBlock object at {at} contains an image, which is only supported in user messages."
                ));
            }
            let image = block.get("image").unwrap_or(&Value::Null);
            let format = image.get("format").unwrap_or(&Value::Null);
            let fmt = format.as_str().unwrap_or("");
            if !matches!(fmt, "png" | "jpeg" | "gif" | "webp") {
                return Err(constraint(
                    format,
                    &format!("messages.{i}.member.content.{j}.member.image.format"),
                    "Member must satisfy enum value set: [png, jpeg, gif, webp]",
                ));
            }
            match image
                .get("source")
                .and_then(|s| s.get("bytes"))
                .and_then(Value::as_str)
            {
                Some(b64) => match base64_decode(b64) {
                    Some(bytes) if image_matches(fmt, &bytes) => Ok(()),
                    Some(_) => Err(
                        "The model returned the following errors: Could not process image"
                            .to_owned(),
                    ),
                    None => Err(format!("Invalid base64 in {at}.image.source.bytes.")),
                },
                None if image
                    .get("source")
                    .and_then(|s| s.get("s3Location"))
                    .is_some() =>
                {
                    Ok(())
                }
                None => Err(format!(
                    "The image source at {at} must set bytes or s3Location."
                )),
            }
        }
        "toolUse" => {
            let tu = block.get("toolUse").unwrap_or(&Value::Null);
            for field in ["toolUseId", "name", "input"] {
                if tu.get(field).is_none() {
                    return Err(format!("The toolUse field at {at} is missing {field}."));
                }
            }
            Ok(())
        }
        "toolResult" => {
            let tr = block.get("toolResult").unwrap_or(&Value::Null);
            if tr.get("toolUseId").and_then(Value::as_str).is_none() {
                return Err(format!(
                    "The toolResult field at {at} is missing toolUseId."
                ));
            }
            if !tr.get("content").is_some_and(Value::is_array) {
                return Err(format!("The toolResult field at {at} is missing content."));
            }
            Ok(())
        }
        "reasoningContent" => {
            let r = block.get("reasoningContent").unwrap_or(&Value::Null);
            match member(r) {
                Some("reasoningText") => {
                    if r.get("reasoningText")
                        .and_then(|t| t.get("text"))
                        .and_then(Value::as_str)
                        .is_none()
                    {
                        return Err(format!("The reasoningText field at {at} is missing text."));
                    }
                    Ok(())
                }
                Some("redactedContent") => Ok(()),
                _ => Err(format!(
                    "The reasoningContent field at {at} must set reasoningText or redactedContent."
                )),
            }
        }
        "document" | "video" | "audio" | "guardContent" | "cachePoint" | "citationsContent"
        | "searchResult" => Ok(()),
        other => Err(format!("Unknown ContentBlock member '{other}' at {at}.")),
    }
}

fn ids<'a>(content: &'a [Value], kind: &str) -> Vec<&'a str> {
    content
        .iter()
        .filter_map(|b| b.get(kind))
        .filter_map(|t| t.get("toolUseId").and_then(Value::as_str))
        .collect()
}

fn content_of(m: &Value) -> &[Value] {
    m.get("content").map_or(&[], blocks)
}

fn role_of(m: &Value) -> &str {
    m.get("role").and_then(Value::as_str).unwrap_or("")
}

/// Roles, alternation, content blocks and toolUse/toolResult pairing.
fn check_messages(msgs: &[Value], has_tool_config: bool, claude: bool) -> Result<(), String> {
    if msgs.is_empty() {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned());
    }
    for (i, m) in msgs.iter().enumerate() {
        let role = m.get("role").unwrap_or(&Value::Null);
        if !matches!(role.as_str(), Some("user" | "assistant")) {
            return Err(constraint(
                role,
                &format!("messages.{i}.member.role"),
                "Member must satisfy enum value set: [user, assistant]",
            ));
        }
        let content = content_of(m);
        if content.is_empty() {
            return Err(format!(
                "The content field in the Message object at messages.{i} is empty. Add a ContentBlock object to the content field and try again."
            ));
        }
        for (j, b) in content.iter().enumerate() {
            check_block(i, j, role_of(m), b)?;
        }
    }
    if msgs.first().map(role_of) != Some("user") {
        return Err("A conversation must start with a user message. Try again with a conversation that starts with a user message.".to_owned());
    }
    if msgs.windows(2).any(|w| role_of(&w[0]) == role_of(&w[1])) {
        return Err("A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again.".to_owned());
    }
    let uses_tools = msgs
        .iter()
        .flat_map(content_of)
        .any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some());
    if uses_tools && !has_tool_config {
        return Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".to_owned());
    }
    for (i, m) in msgs.iter().enumerate() {
        let asked = ids(content_of(m), "toolUse");
        let next = msgs.get(i + 1).map_or(&[][..], content_of);
        if role_of(m) == "assistant" {
            let answered = ids(next, "toolResult");
            let missing: Vec<&str> = asked
                .iter()
                .copied()
                .filter(|id| !answered.contains(id))
                .collect();
            if !missing.is_empty() && i + 1 < msgs.len() {
                return Err(format!(
                    "Expected toolResult blocks at messages.{}.content for the following Ids: {}",
                    i + 1,
                    missing.join(", ")
                ));
            }
            if claude {
                for (j, b) in content_of(m).iter().enumerate() {
                    let Some(t) = b
                        .get("reasoningContent")
                        .and_then(|r| r.get("reasoningText"))
                    else {
                        continue;
                    };
                    let text = t.get("text").and_then(Value::as_str).unwrap_or("");
                    let sig = t.get("signature").and_then(Value::as_str).unwrap_or("");
                    if sig != convo::signature(SIGNATURE_LABEL, text) {
                        return Err(format!(
                            "The model returned the following errors: messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                        ));
                    }
                }
            }
        } else {
            let previous = i
                .checked_sub(1)
                .and_then(|p| msgs.get(p))
                .map_or(&[][..], content_of);
            let offered = ids(previous, "toolUse");
            let results = ids(content_of(m), "toolResult");
            if results.iter().any(|id| !offered.contains(id)) {
                return Err(format!(
                    "The number of toolResult blocks at messages.{i}.content exceeds the number of toolUse blocks of previous turn."
                ));
            }
        }
    }
    Ok(())
}

/// With Claude's thinking on, a tool loop in progress must replay the
/// reasoning first (Anthropic's rule, surfaced by Bedrock).
fn check_reasoning_replay(msgs: &[Value]) -> Result<(), String> {
    let Some(last) = msgs.last() else {
        return Ok(());
    };
    if role_of(last) != "user" || ids(content_of(last), "toolResult").is_empty() {
        return Ok(());
    }
    let Some((i, assistant)) = msgs
        .iter()
        .enumerate()
        .rev()
        .find(|(_, m)| role_of(m) == "assistant")
    else {
        return Ok(());
    };
    let first = content_of(assistant).first().and_then(member).unwrap_or("");
    if first == "reasoningContent" {
        return Ok(());
    }
    let found = match first {
        "toolUse" => "tool_use",
        "text" => "text",
        other => other,
    };
    Err(format!(
        "The model returned the following errors: messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
    ))
}

fn check_system(system: Option<&Value>) -> Result<(), String> {
    let Some(system) = system else {
        return Ok(());
    };
    let Some(list) = system.as_array() else {
        return Err("system: expected a list of SystemContentBlock objects.".to_owned());
    };
    for (j, b) in list.iter().enumerate() {
        match member(b) {
            Some("text") => {
                if b.get("text")
                    .and_then(Value::as_str)
                    .is_none_or(|t| t.trim().is_empty())
                {
                    return Err(format!(
                        "The text field in the SystemContentBlock object at system.{j} is blank. Add text to the text field, and try again."
                    ));
                }
            }
            Some("cachePoint" | "guardContent") => {}
            _ => {
                return Err(format!(
                    "The SystemContentBlock object at system.{j} must set exactly one of the following keys: text, guardContent, cachePoint."
                ));
            }
        }
    }
    Ok(())
}

fn check_inference(config: Option<&Value>) -> Result<(), String> {
    let Some(c) = config else {
        return Ok(());
    };
    if let Some(v) = c.get("maxTokens")
        && v.as_i64().is_none_or(|n| n < 1)
    {
        return Err(constraint(
            v,
            "inferenceConfig.maxTokens",
            "Member must have value greater than or equal to 1",
        ));
    }
    for name in ["temperature", "topP"] {
        if let Some(v) = c.get(name) {
            match v.as_f64() {
                Some(x) if x < 0.0 => {
                    return Err(constraint(
                        v,
                        &format!("inferenceConfig.{name}"),
                        "Member must have value greater than or equal to 0",
                    ));
                }
                Some(x) if x > 1.0 => {
                    return Err(constraint(
                        v,
                        &format!("inferenceConfig.{name}"),
                        "Member must have value less than or equal to 1",
                    ));
                }
                Some(_) => {}
                None => return Err(format!("inferenceConfig.{name} must be a number.")),
            }
        }
    }
    if let Some(v) = c.get("stopSequences") {
        let ok = v
            .as_array()
            .is_some_and(|a| a.iter().all(|s| s.as_str().is_some_and(|s| !s.is_empty())));
        if !ok {
            return Err(constraint(
                v,
                "inferenceConfig.stopSequences",
                "Member must satisfy constraint: [Member must have length greater than or equal to 1]",
            ));
        }
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn tools(config: Option<&Value>) -> Result<(Vec<ToolDef<'_>>, Choice<'_>), String> {
    let Some(c) = config else {
        return Ok((Vec::new(), Choice::Auto));
    };
    let list = c.get("tools").and_then(Value::as_array);
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Err(constraint(
            c.get("tools").unwrap_or(&Value::Null),
            "toolConfig.tools",
            "Member must have length greater than or equal to 1",
        ));
    };
    let mut defs = Vec::new();
    for (k, t) in list.iter().enumerate() {
        match member(t) {
            Some("toolSpec") => {
                let spec = t.get("toolSpec").unwrap_or(&Value::Null);
                let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
                if !valid_tool_name(name) {
                    return Err(constraint(
                        spec.get("name").unwrap_or(&Value::Null),
                        &format!("toolConfig.tools.{}.member.toolSpec.name", k + 1),
                        "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+",
                    ));
                }
                let Some(schema) = spec.get("inputSchema").and_then(|s| s.get("json")) else {
                    return Err(format!(
                        "The toolSpec at toolConfig.tools.{k} is missing inputSchema.json."
                    ));
                };
                defs.push(ToolDef {
                    name,
                    params: Some(schema),
                });
            }
            Some("cachePoint" | "systemTool") => {}
            _ => {
                return Err(format!(
                    "The Tool object at toolConfig.tools.{k} must set exactly one of the following keys: toolSpec, systemTool, cachePoint."
                ));
            }
        }
    }
    let choice = match c.get("toolChoice").map(|tc| (member(tc), tc)) {
        None => Choice::Auto,
        Some((Some("auto"), _)) => Choice::Auto,
        Some((Some("any"), _)) => Choice::Required,
        Some((Some("tool"), tc)) => match tc
            .get("tool")
            .and_then(|t| t.get("name"))
            .and_then(Value::as_str)
        {
            Some(name) => Choice::Named(name),
            None => return Err("toolConfig.toolChoice.tool is missing name.".to_owned()),
        },
        Some(_) => return Err(
            "The ToolChoice object must set exactly one of the following keys: auto, any, tool."
                .to_owned(),
        ),
    };
    Ok((defs, choice))
}

/// Reasoning is on when `additionalModelRequestFields` asks for it: Claude's
/// `thinking` (`enabled` or `adaptive`) or a `reasoningConfig` /
/// `reasoning_config` with `type: "enabled"`.
fn thinking_requested(extra: Option<&Value>) -> bool {
    let Some(e) = extra else {
        return false;
    };
    let thinking = e
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "enabled" || t == "adaptive");
    let reasoning = ["reasoningConfig", "reasoning_config"].iter().any(|k| {
        e.get(*k)
            .and_then(|r| r.get("type"))
            .and_then(Value::as_str)
            == Some("enabled")
    });
    thinking || reasoning
}

/// The conversation as the shared rules see it: a user message holding only
/// tool results is a tool turn.
fn convo_of<'a>(msgs: &'a [Value], tools: Vec<ToolDef<'a>>, choice: Choice<'a>) -> Convo<'a> {
    let mut last_user = None;
    let mut last_is_user = false;
    for m in msgs {
        last_is_user = false;
        if role_of(m) != "user" {
            continue;
        }
        let content = content_of(m);
        let texts: Vec<&str> = content
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect();
        let tool_only = texts.is_empty() && content.iter().any(|b| b.get("toolResult").is_some());
        if !tool_only {
            last_user = Some(texts.join(" "));
            last_is_user = true;
        }
    }
    Convo {
        last_user,
        last_is_user,
        tools,
        choice,
        parallel: true,
    }
}

/// Prompt caching: the prefix up to the last `cachePoint` (system blocks,
/// then message blocks in order) is written the first time its exact text
/// is seen for this model and read afterwards; `(write, read)` tokens.
fn cache_use(ctx: &Ctx<'_>, v: &Value, model: &str) -> Option<(u64, u64)> {
    let mut items: Vec<&Value> = v.get("system").map_or(&[][..], blocks).iter().collect();
    for m in messages(v) {
        items.extend(content_of(m));
    }
    let end = items.iter().rposition(|b| b.get("cachePoint").is_some())?;
    let prefix = items.get(..end).unwrap_or_default();
    let chars: usize = prefix.iter().map(|b| text_chars(b)).sum();
    if chars == 0 {
        return Some((0, 0));
    }
    let mut key = format!("bedrock\u{0}{model}");
    for b in prefix {
        key.push('\u{0}');
        key.push_str(&b.to_string());
    }
    let tokens = tokens_for_chars(chars);
    Some(if ctx.shared.prompt_cache.hit(fnv1a64(key.as_bytes())) {
        (0, tokens)
    } else {
        (tokens, 0)
    })
}

struct Usage {
    input: u64,
    output: u64,
    /// `(cacheWriteInputTokens, cacheReadInputTokens)` when caching was asked for.
    cache: Option<(u64, u64)>,
}

impl Usage {
    fn json(&self) -> Json {
        let (write, read) = self.cache.unwrap_or((0, 0));
        let mut fields = vec![
            ("inputTokens", Json::Num(self.input)),
            ("outputTokens", Json::Num(self.output)),
            (
                "totalTokens",
                Json::Num(self.input + self.output + write + read),
            ),
        ];
        if self.cache.is_some() {
            fields.push(("cacheReadInputTokens", Json::Num(read)));
            fields.push(("cacheWriteInputTokens", Json::Num(write)));
        }
        Json::Obj(fields)
    }
}

fn stop_reason(stop: Stop) -> &'static str {
    match stop {
        Stop::End => "end_turn",
        Stop::MaxTokens => "max_tokens",
        Stop::Sequence(_) => "stop_sequence",
        Stop::ToolUse => "tool_use",
    }
}

fn tool_id(seed: u64, i: usize) -> String {
    alnum_id(
        "tooluse_",
        seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        22,
    )
}

struct Answer<'a> {
    plan: Plan,
    usage: Usage,
    seed: u64,
    stops: &'a [String],
    latency_ms: u64,
}

impl Answer<'_> {
    fn tool_block(&self, i: usize, call: &Call) -> Json {
        obj! {"toolUse": obj! {
            "toolUseId": tool_id(self.seed, i),
            "name": call.name.as_str(),
            "input": call.args.clone(),
        }}
    }

    fn stop_extra(&self) -> Option<Json> {
        match self.plan.stop {
            Stop::Sequence(i) => self
                .stops
                .get(i)
                .map(|s| obj! {"stop_sequence": s.as_str()}),
            _ => None,
        }
    }

    fn whole(&self) -> Json {
        let mut content = Vec::new();
        if let Some(t) = &self.plan.thinking {
            content.push(obj! {"reasoningContent": obj! {"reasoningText": obj! {
                "text": t.as_str(),
                "signature": convo::signature(SIGNATURE_LABEL, t),
            }}});
        }
        if self.plan.calls.is_empty() {
            content.push(obj! {"text": self.plan.text.as_str()});
        }
        for (i, call) in self.plan.calls.iter().enumerate() {
            content.push(self.tool_block(i, call));
        }
        let mut fields = vec![
            ("metrics", obj! {"latencyMs": self.latency_ms}),
            (
                "output",
                obj! {"message": obj! {"content": Json::Arr(content), "role": "assistant"}},
            ),
            ("stopReason", Json::from(stop_reason(self.plan.stop))),
            ("usage", self.usage.json()),
        ];
        if let Some(extra) = self.stop_extra() {
            fields.push(("additionalModelResponseFields", extra));
        }
        Json::Obj(fields)
    }
}

/// A stream payload with Bedrock's `p` padding field appended.
fn padded(fields: Vec<(&'static str, Json)>, n: usize) -> Vec<u8> {
    let mut fields = fields;
    let len = 1 + (n * 7) % PADDING.len();
    fields.push(("p", Json::from(PADDING.get(..len).unwrap_or(PADDING))));
    Json::Obj(fields).to_vec()
}

fn stream(ctx: &Ctx<'_>, a: &Answer<'_>) -> Response<Body> {
    let mut events = Events::new();
    let mut n = 0usize;
    let mut ev =
        |events: &mut Events, kind: &str, fields: Vec<(&'static str, Json)>, tokens: u64| {
            n += 1;
            events.push_generated(eventstream::event(kind, &padded(fields, n)), tokens);
        };
    ev(
        &mut events,
        "messageStart",
        vec![("role", Json::from("assistant"))],
        0,
    );
    let mut index = 0u64;
    let delta = |index: u64, d: Json| vec![("contentBlockIndex", Json::Num(index)), ("delta", d)];
    if let Some(t) = &a.plan.thinking {
        for piece in word_pieces(t) {
            ev(
                &mut events,
                "contentBlockDelta",
                delta(index, obj! {"reasoningContent": obj! {"text": piece}}),
                1,
            );
        }
        let sig = convo::signature(SIGNATURE_LABEL, t);
        ev(
            &mut events,
            "contentBlockDelta",
            delta(index, obj! {"reasoningContent": obj! {"signature": sig}}),
            0,
        );
        ev(
            &mut events,
            "contentBlockStop",
            vec![("contentBlockIndex", Json::Num(index))],
            0,
        );
        index += 1;
    }
    if a.plan.calls.is_empty() {
        let pieces = word_pieces(&a.plan.text);
        if pieces.is_empty() {
            ev(
                &mut events,
                "contentBlockDelta",
                delta(index, obj! {"text": ""}),
                0,
            );
        }
        for piece in pieces {
            ev(
                &mut events,
                "contentBlockDelta",
                delta(index, obj! {"text": piece}),
                1,
            );
        }
        ev(
            &mut events,
            "contentBlockStop",
            vec![("contentBlockIndex", Json::Num(index))],
            0,
        );
    }
    for (i, call) in a.plan.calls.iter().enumerate() {
        ev(
            &mut events,
            "contentBlockStart",
            vec![
                ("contentBlockIndex", Json::Num(index)),
                (
                    "start",
                    obj! {"toolUse": obj! {"toolUseId": tool_id(a.seed, i), "name": call.name.as_str()}},
                ),
            ],
            0,
        );
        for piece in arg_pieces(&call.arguments) {
            ev(
                &mut events,
                "contentBlockDelta",
                delta(index, obj! {"toolUse": obj! {"input": piece}}),
                tokens_for_chars(piece.chars().count()),
            );
        }
        ev(
            &mut events,
            "contentBlockStop",
            vec![("contentBlockIndex", Json::Num(index))],
            0,
        );
        index += 1;
    }
    let mut stop = vec![("stopReason", Json::from(stop_reason(a.plan.stop)))];
    if let Some(extra) = a.stop_extra() {
        stop.push(("additionalModelResponseFields", extra));
    }
    ev(&mut events, "messageStop", stop, 0);
    ev(
        &mut events,
        "metadata",
        vec![
            ("usage", a.usage.json()),
            ("metrics", obj! {"latencyMs": a.latency_ms}),
        ],
        0,
    );
    events.into_response(ctx, "application/vnd.amazon.eventstream", |_| {
        vec![eventstream::exception(
            "internalServerException",
            &obj! {"message": INTERNAL}.to_vec(),
        )]
    })
}

/// `POST /model/{modelId}/converse` and `/converse-stream`.
pub(crate) fn converse(ctx: &Ctx<'_>, v: &Value, model: &str, streaming: bool) -> Response<Body> {
    let Some(obj) = v.as_object() else {
        return bad_json();
    };
    if let Some(refusal) = validate(ctx, obj, v, model) {
        return refusal;
    }
    let msgs = messages(v);
    let Ok((tool_defs, choice)) = tools(v.get("toolConfig")) else {
        return validation("invalid toolConfig");
    };
    let convo = convo_of(msgs, tool_defs, choice);
    let stops: Vec<String> = v
        .get("inferenceConfig")
        .and_then(|c| c.get("stopSequences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let limits = convo::Limits {
        max_tokens: max_tokens_of(v),
        thinking: thinking_requested(v.get("additionalModelRequestFields")),
        stop_sequences: &stops,
    };
    let plan = convo::plan(ctx, &convo, limits);
    let prompt = prompt_tokens_of(v);
    let cache = cache_use(ctx, v, model);
    let cached = cache.map_or(0, |(w, r)| w + r);
    let output = plan.output_tokens();
    let token_ms = u64::try_from(ctx.shared.token_delay.as_millis()).unwrap_or(0);
    let answer = Answer {
        usage: Usage {
            input: prompt.saturating_sub(cached),
            output,
            cache,
        },
        seed: ctx.seed(),
        stops: &stops,
        latency_ms: u64::try_from(ctx.shared.latency.as_millis()).unwrap_or(0) + token_ms * output,
        plan,
    };
    let tokens = TokenUsage::single(prompt, output);
    let mut resp = if streaming {
        stream(ctx, &answer)
    } else {
        body::json(StatusCode::OK, answer.whole().to_vec())
    };
    resp.extensions_mut().insert(tokens);
    resp
}

/// The refusal of an invalid request, if it is one.
fn validate(
    ctx: &Ctx<'_>,
    obj: &Map<String, Value>,
    v: &Value,
    model: &str,
) -> Option<Response<Body>> {
    check(ctx, obj, v, model).err().map(|m| validation(&m))
}

fn check(ctx: &Ctx<'_>, obj: &Map<String, Value>, v: &Value, model: &str) -> Result<(), String> {
    if !known_model(ctx, model) {
        return Err("The provided model identifier is invalid.".to_owned());
    }
    let claude = model.contains("anthropic.");
    let tool_config = obj.get("toolConfig").filter(|t| !t.is_null());
    match obj.get("messages") {
        None | Some(Value::Array(_)) => {}
        Some(_) => return Err("messages: expected a list of Message objects.".to_owned()),
    }
    let checks = check_messages(messages(v), tool_config.is_some(), claude)
        .and_then(|()| check_system(obj.get("system")))
        .and_then(|()| check_inference(obj.get("inferenceConfig")))
        .and_then(|()| tools(tool_config).map(|_| ()));
    checks?;
    if claude && thinking_requested(obj.get("additionalModelRequestFields")) {
        if let Some(budget) = obj
            .get("additionalModelRequestFields")
            .and_then(|e| e.get("thinking"))
            .and_then(|t| t.get("budget_tokens"))
        {
            let budget = budget.as_u64().unwrap_or(0);
            if budget < 1024 {
                return Err("The model returned the following errors: thinking.enabled.budget_tokens: Input should be greater than or equal to 1024".to_owned());
            }
            if max_tokens_of(v).is_some_and(|m| budget >= m) {
                return Err("The model returned the following errors: `max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size".to_owned());
            }
        }
        check_reasoning_replay(messages(v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn path_models() {
        assert_eq!(
            model_in_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse").as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        assert_eq!(
            model_in_path("/model/us.amazon.nova-lite-v1:0/converse-stream").as_deref(),
            Some("us.amazon.nova-lite-v1:0")
        );
        assert_eq!(model_in_path("/model//converse"), None);
        assert_eq!(model_in_path("/model/x/invoke"), None);
    }

    #[test]
    fn message_rules() {
        let user = json!({"role": "user", "content": [{"text": "hi"}]});
        let asst = json!({"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}]});
        let result = json!({"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}]}}]});
        assert_eq!(
            check_messages(&[user.clone(), asst.clone(), result.clone()], true, false),
            Ok(())
        );
        assert_eq!(
            check_messages(&[user.clone(), asst.clone(), result.clone()], false, false),
            Err("The toolConfig field must be defined when using toolUse and toolResult content blocks.".to_owned())
        );
        assert!(check_messages(&[user.clone(), asst.clone(), user.clone()], true, false)
            .is_err_and(|m| m == "Expected toolResult blocks at messages.2.content for the following Ids: t1"));
        assert!(
            check_messages(std::slice::from_ref(&result), true, false)
                .is_err_and(|m| m
                    .starts_with("The number of toolResult blocks at messages.0.content exceeds"))
        );
        assert!(
            check_messages(&[user.clone(), user.clone()], false, false)
                .is_err_and(|m| m.starts_with("A conversation must alternate"))
        );
        assert!(
            check_messages(&[asst], true, false)
                .is_err_and(|m| m.starts_with("A conversation must start with a user message"))
        );
        let blank = json!({"role": "user", "content": [{"text": " "}]});
        assert!(
            check_messages(&[blank], false, false).is_err_and(|m| m.starts_with(
                "The text field in the ContentBlock object at messages.0.content.0 is blank."
            ))
        );
    }
}
