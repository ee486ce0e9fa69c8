//! The Gemini API (v1beta): `models/{model}:generateContent`,
//! `:streamGenerateContent` (SSE with `?alt=sse`, else a streamed JSON
//! array), `:countTokens`, and the model list, validated as Google does
//! and answered by the shared rules of [`crate::convo`].

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::Value;

use crate::FaultKind;
use crate::body::Body;
use crate::convo::{self, Choice, Convo, Plan, Stop, ToolDef};
use crate::flavor::{self, Dialect, ErrCtx, google, google_error};
use crate::gemini_fields::{self, Violation};
use crate::ordered_json::OValue;
use crate::server::{Ctx, Shared, TokenUsage};
use crate::stream::Events;
use crate::util::{Json, alnum_id, obj, tokens_for_chars, word_ends, word_pieces};

/// Label of the thought signatures the mock attaches to function calls.
const SIGNATURE_LABEL: &str = "mock-thought-signature";
/// Words per streamed chunk.
const WORDS_PER_CHUNK: usize = 3;
/// Context window quoted by `ContextLengthExceeded`.
const CONTEXT_WINDOW: u64 = 1_048_576;
const INTERNAL: &str = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting";

/// Models listed by `GET /v1beta/models` besides the `gemini-*`/`gemma-*`
/// entries of `MockOptions::models`.
const CATALOGUE: [&str; 4] = [
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
    "gemini-3-pro-preview",
];

fn invalid(message: &str) -> Response<Body> {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// No `x-goog-api-key` / `?key=`: a bearer token is taken for an OAuth
/// token and refused as such; nothing at all is an unregistered caller.
pub(crate) fn missing_key(bearer: bool) -> Response<Body> {
    if bearer {
        google(
            StatusCode::UNAUTHORIZED,
            &obj! {"error": obj! {
                "code": 401u64,
                "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "status": "UNAUTHENTICATED",
                "details": Json::Arr(vec![obj! {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "domain": "googleapis.com",
                    "metadata": obj! {"service": "generativelanguage.googleapis.com"},
                }]),
            }},
        )
    } else {
        google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        )
    }
}

pub(crate) fn bad_json() -> Response<Body> {
    invalid("Invalid JSON payload received. Unexpected token.")
}

pub(crate) fn not_found(path: &str) -> Response<Body> {
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("Method not found: {path}"),
    )
}

/// `v1beta` or `v1`, as the request path says.
fn api_version(ctx: &Ctx<'_>) -> &'static str {
    if ctx.parts.uri.path().starts_with("/v1beta/") {
        "v1beta"
    } else {
        "v1"
    }
}

fn model_not_found(model: &str, version: &str) -> Response<Body> {
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!(
            "models/{model} is not found for API version {version}, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods."
        ),
    )
}

/// A scripted fault in Google's words (rate limits and raw statuses are
/// handled by the caller).
pub(crate) fn fault(kind: FaultKind, ctx: &ErrCtx<'_>, key: &str, body: &Bytes) -> Response<Body> {
    match kind {
        FaultKind::InsufficientQuota => flavor::exhausted(Dialect::Gemini, ctx),
        FaultKind::InvalidKey => flavor::invalid_key(Dialect::Gemini, key, ctx.request_id),
        FaultKind::Overloaded => flavor::overloaded(Dialect::Gemini, ctx.request_id),
        FaultKind::BadRequest { message } => invalid(&message),
        FaultKind::ContextLengthExceeded => {
            let prompt = serde_json::from_slice::<Value>(body)
                .map(|v| prompt_tokens_of(&v))
                .unwrap_or(1);
            invalid(&format!(
                "The input token count ({}) exceeds the maximum number of tokens allowed ({CONTEXT_WINDOW}).",
                CONTEXT_WINDOW + prompt
            ))
        }
        _ => google_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", INTERNAL),
    }
}

fn parts_of(content: &Value) -> &[Value] {
    content
        .get("parts")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `part.name` or `part.snake_name` (Google accepts both spellings).
fn field<'a>(v: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    v.get(camel)
        .or_else(|| v.get(snake))
        .filter(|x| !x.is_null())
}

fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
}

/// Characters the prompt rule counts in one part: text (not thoughts), and
/// every string inside a function response.
fn part_chars(part: &Value) -> usize {
    if let Some(t) = part.get("text").and_then(Value::as_str) {
        return if is_thought(part) {
            0
        } else {
            t.chars().count()
        };
    }
    field(part, "functionResponse", "function_response")
        .and_then(|r| r.get("response"))
        .map_or(0, convo::string_chars)
}

fn contents_chars(contents: Option<&Value>) -> usize {
    contents
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(parts_of)
        .map(part_chars)
        .sum()
}

/// Prompt tokens: ceil(characters of the system instruction's and every
/// content's text parts and function responses / 4), at least 1.
pub(crate) fn prompt_tokens_of(v: &Value) -> u64 {
    let system = field(v, "systemInstruction", "system_instruction")
        .map_or(0, |s| parts_of(s).iter().map(part_chars).sum());
    tokens_for_chars(system + contents_chars(v.get("contents")))
}

fn generation_config(v: &Value) -> Option<&Value> {
    field(v, "generationConfig", "generation_config")
}

pub(crate) fn max_tokens_of(v: &Value) -> Option<u64> {
    generation_config(v)
        .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
        .and_then(Value::as_u64)
}

fn role(content: &Value) -> &str {
    content
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user")
}

fn has(content: &Value, camel: &str, snake: &str) -> bool {
    parts_of(content)
        .iter()
        .any(|p| field(p, camel, snake).is_some())
}

fn is_call_turn(content: &Value) -> bool {
    role(content) == "model" && has(content, "functionCall", "function_call")
}

fn is_response_turn(content: &Value) -> bool {
    role(content) != "model" && has(content, "functionResponse", "function_response")
}

fn names(content: &Value, camel: &str, snake: &str) -> Vec<String> {
    let mut out: Vec<String> = parts_of(content)
        .iter()
        .filter_map(|p| field(p, camel, snake))
        .filter_map(|f| f.get("name").and_then(Value::as_str).map(str::to_owned))
        .collect();
    out.sort();
    out
}

/// The `* GenerateContentRequest...` checks Google reports together.
fn check_shape(contents: Option<&Value>) -> Option<String> {
    let Some(contents) = contents.and_then(Value::as_array).filter(|c| !c.is_empty()) else {
        return Some("* GenerateContentRequest.contents: contents is not specified\n".to_owned());
    };
    let mut message = String::new();
    for (i, c) in contents.iter().enumerate() {
        let parts = parts_of(c);
        if parts.is_empty() {
            message.push_str(&format!(
                "* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.\n"
            ));
        }
        for (j, p) in parts.iter().enumerate() {
            let data = [
                ("text", "text"),
                ("inlineData", "inline_data"),
                ("fileData", "file_data"),
                ("functionCall", "function_call"),
                ("functionResponse", "function_response"),
                ("executableCode", "executable_code"),
                ("codeExecutionResult", "code_execution_result"),
            ];
            if !data.iter().any(|(c, s)| field(p, c, s).is_some()) {
                message.push_str(&format!(
                    "* GenerateContentRequest.contents[{i}].parts[{j}].data: required oneof field 'data' must have one initialized field\n"
                ));
            }
        }
    }
    (!message.is_empty()).then_some(message)
}

/// Roles, function call/response pairing and (for Gemini 3 models) the
/// thought signatures of the current turn's function calls.
fn check_turns(contents: &[Value], model: &str) -> Option<String> {
    for c in contents {
        if !matches!(role(c), "user" | "model") {
            return Some("Please use a valid role: user, model.".to_owned());
        }
    }
    for (i, c) in contents.iter().enumerate() {
        let prev = i.checked_sub(1).and_then(|p| contents.get(p));
        if is_response_turn(c) {
            let Some(call) = prev.filter(|p| is_call_turn(p)) else {
                return Some(
                    "Please ensure that function response turn comes immediately after a function call turn."
                        .to_owned(),
                );
            };
            let calls = names(call, "functionCall", "function_call");
            let responses = names(c, "functionResponse", "function_response");
            if calls.len() != responses.len() {
                return Some("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".to_owned());
            }
            if calls != responses {
                return Some("Please ensure that the function response names match the function call names of the function call turn.".to_owned());
            }
        }
        if is_call_turn(c) {
            let after_user_or_response = prev.is_some_and(|p| role(p) == "user");
            if !after_user_or_response {
                return Some("Please ensure that function call turn comes immediately after a user turn or after a function response turn.".to_owned());
            }
        }
    }
    if !model.starts_with("gemini-3") {
        return None;
    }
    // The current turn starts after the last user content that is not a
    // function response.
    let start = contents
        .iter()
        .rposition(|c| role(c) == "user" && !is_response_turn(c))
        .map_or(0, |p| p + 1);
    for (i, c) in contents.iter().enumerate().skip(start) {
        if !is_call_turn(c) {
            continue;
        }
        let Some(first) = parts_of(c)
            .iter()
            .find(|p| field(p, "functionCall", "function_call").is_some())
        else {
            continue;
        };
        let signed = field(first, "thoughtSignature", "thought_signature")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty());
        if !signed {
            let name = field(first, "functionCall", "function_call")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            return Some(format!(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.",
                i + 1
            ));
        }
    }
    None
}

/// Google's answer to a body that does not parse into the request message.
fn field_violations(violations: &[Violation]) -> Response<Body> {
    let message: Vec<&str> = violations.iter().map(|v| v.description.as_str()).collect();
    let list = violations
        .iter()
        .map(|v| {
            if v.field.is_empty() {
                obj! {"description": v.description.as_str()}
            } else {
                obj! {"field": v.field.as_str(), "description": v.description.as_str()}
            }
        })
        .collect();
    google(
        StatusCode::BAD_REQUEST,
        &obj! {"error": obj! {
            "code": 400u64,
            "message": message.join("\n"),
            "status": "INVALID_ARGUMENT",
            "details": Json::Arr(vec![obj! {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": Json::Arr(list),
            }]),
        }},
    )
}

fn known_model(shared: &Shared, model: &str) -> bool {
    model.starts_with("gemini-") || model.starts_with("gemma-") || shared.has_model(model)
}

/// The conversation as the shared rules see it.
fn convo(v: &Value) -> Convo<'_> {
    let contents = v
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut last_user = None;
    let mut last_is_user = false;
    for c in contents {
        last_is_user = false;
        if role(c) == "user" && !is_response_turn(c) {
            let texts: Vec<&str> = parts_of(c)
                .iter()
                .filter(|p| !is_thought(p))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            last_user = Some(texts.join(" "));
            last_is_user = true;
        }
    }
    let mut tools: Vec<ToolDef<'_>> = v
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|f| {
            Some(ToolDef {
                name: f.get("name")?.as_str()?,
                params: field(f, "parameters", "parameters")
                    .or_else(|| field(f, "parametersJsonSchema", "parameters_json_schema")),
            })
        })
        .collect();
    let config = field(v, "toolConfig", "tool_config")
        .and_then(|t| field(t, "functionCallingConfig", "function_calling_config"));
    let mode = config
        .and_then(|c| c.get("mode"))
        .and_then(Value::as_str)
        .map(str::to_ascii_uppercase);
    let allowed: Vec<&str> = config
        .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let choice = match mode.as_deref() {
        Some("NONE") => Choice::None,
        Some("ANY") => {
            if !allowed.is_empty() {
                tools.retain(|t| allowed.contains(&t.name));
            }
            match allowed.as_slice() {
                [only] => Choice::Named(only),
                _ => Choice::Required,
            }
        }
        _ => Choice::Auto,
    };
    Convo {
        last_user,
        last_is_user,
        tools,
        choice,
        parallel: true,
    }
}

/// `(thinking happens, thoughts are returned)`: thinking is on when the
/// request's `thinkingConfig` asks for thoughts, a non-zero budget or a
/// thinking level.
fn thinking(v: &Value) -> (bool, bool) {
    let Some(t) = generation_config(v).and_then(|g| field(g, "thinkingConfig", "thinking_config"))
    else {
        return (false, false);
    };
    let include =
        field(t, "includeThoughts", "include_thoughts").and_then(Value::as_bool) == Some(true);
    let budget = field(t, "thinkingBudget", "thinking_budget")
        .and_then(Value::as_i64)
        .is_some_and(|b| b != 0);
    let level = field(t, "thinkingLevel", "thinking_level").is_some();
    (include || budget || level, include)
}

fn stop_sequences(v: &Value) -> Vec<String> {
    generation_config(v)
        .and_then(|g| field(g, "stopSequences", "stop_sequences"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The pieces of one answer.
struct Answer<'a> {
    model: &'a str,
    response_id: String,
    prompt: u64,
    plan: Plan,
    show_thoughts: bool,
    /// Function calls carry a thought signature (Gemini 3, or thinking on).
    sign_calls: bool,
}

impl Answer<'_> {
    fn thoughts(&self) -> Option<u64> {
        self.plan
            .thinking
            .as_ref()
            .map(|_| self.plan.thinking_tokens())
    }

    fn usage(&self, candidates: u64) -> Json {
        let thoughts = self.thoughts();
        let mut fields = vec![
            ("promptTokenCount", Json::Num(self.prompt)),
            ("candidatesTokenCount", Json::Num(candidates)),
            (
                "totalTokenCount",
                Json::Num(self.prompt + candidates + thoughts.unwrap_or(0)),
            ),
            (
                "promptTokensDetails",
                Json::Arr(vec![obj! {"modality": "TEXT", "tokenCount": self.prompt}]),
            ),
        ];
        if let Some(t) = thoughts {
            fields.push(("thoughtsTokenCount", Json::Num(t)));
        }
        Json::Obj(fields)
    }

    fn call_parts(&self) -> Vec<Json> {
        self.plan
            .calls
            .iter()
            .enumerate()
            .map(|(i, call)| {
                let mut part = vec![(
                    "functionCall",
                    obj! {"name": call.name.as_str(), "args": call.args.clone()},
                )];
                if i == 0 && self.sign_calls {
                    let sig = convo::signature(
                        SIGNATURE_LABEL,
                        &format!("{}{}", call.name, call.arguments),
                    );
                    part.push(("thoughtSignature", Json::Str(sig)));
                }
                Json::Obj(part)
            })
            .collect()
    }

    fn finish(&self) -> &'static str {
        if self.plan.stop == Stop::MaxTokens {
            "MAX_TOKENS"
        } else {
            "STOP"
        }
    }

    /// One `GenerateContentResponse`.
    fn chunk(&self, parts: Vec<Json>, finish: bool, candidates: u64) -> Json {
        let mut candidate = vec![("content", obj! {"parts": Json::Arr(parts), "role": "model"})];
        if finish {
            candidate.push(("finishReason", Json::from(self.finish())));
        }
        candidate.push(("index", Json::Num(0)));
        if finish && !self.plan.calls.is_empty() {
            candidate.push((
                "finishMessage",
                Json::from("Model generated function call(s)."),
            ));
        }
        obj! {
            "candidates": Json::Arr(vec![Json::Obj(candidate)]),
            "usageMetadata": self.usage(candidates),
            "modelVersion": self.model,
            "responseId": self.response_id.as_str(),
        }
    }

    fn whole(&self) -> Json {
        let mut parts = Vec::new();
        if let (Some(t), true) = (&self.plan.thinking, self.show_thoughts) {
            parts.push(obj! {"text": t.as_str(), "thought": true});
        }
        if self.plan.calls.is_empty() {
            parts.push(obj! {"text": self.plan.text.as_str()});
        }
        parts.extend(self.call_parts());
        self.chunk(parts, true, self.plan.answer_tokens())
    }
}

/// `:generateContent` and `:streamGenerateContent`.
pub(crate) fn generate(ctx: &Ctx<'_>, v: &Value, raw: &Bytes, model: &str) -> Response<Body> {
    if let Some(ordered) = OValue::parse(raw) {
        let violations = gemini_fields::check_generate(&ordered);
        if !violations.is_empty() {
            return field_violations(&violations);
        }
    }
    if !known_model(ctx.shared, model) {
        if let Some(vp) = crate::route::vertex_split(ctx.parts.uri.path()) {
            let name = match (vp.project, vp.location) {
                (Some(p), Some(l)) => {
                    format!("projects/{p}/locations/{l}/publishers/google/models/{model}")
                }
                _ => format!("publishers/google/models/{model}"),
            };
            return google_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!(
                    "Publisher Model `{name}` was not found or your project does not have access to it. Please ensure you are using a valid model version. For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions"
                ),
            );
        }
        return model_not_found(model, api_version(ctx));
    }
    if let Some(message) = check_shape(v.get("contents")) {
        return invalid(&message);
    }
    let contents = v
        .get("contents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if let Some(message) = check_turns(contents, model) {
        return invalid(&message);
    }
    let (thinking, show_thoughts) = thinking(v);
    let stops = stop_sequences(v);
    let limits = convo::Limits {
        max_tokens: max_tokens_of(v),
        thinking,
        stop_sequences: &stops,
    };
    let plan = convo::plan(ctx, &convo(v), limits);
    let answer = Answer {
        model,
        response_id: alnum_id("", ctx.seed(), 23),
        prompt: prompt_tokens_of(v),
        show_thoughts,
        sign_calls: model.starts_with("gemini-3") || thinking,
        plan,
    };
    let tokens = TokenUsage::single(answer.prompt, answer.plan.output_tokens());
    let mut resp = if ctx.endpoint.streams() {
        stream(ctx, &answer, ctx.query("alt") == Some("sse"))
    } else {
        let mut bytes = answer.whole().to_vec_google_pretty();
        bytes.push(b'\n');
        crate::body::response(
            StatusCode::OK,
            "application/json; charset=UTF-8",
            crate::body::full(bytes),
        )
    };
    resp.extensions_mut().insert(tokens);
    resp
}

/// How the chunks of a stream are framed.
#[derive(Clone, Copy)]
struct Framing {
    sse: bool,
}

impl Framing {
    fn frame(self, first: bool, v: &Json) -> Bytes {
        let mut out = Vec::new();
        if self.sse {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(&v.to_vec_google_line());
            out.extend_from_slice(b"\r\n\r\n");
        } else {
            out.extend_from_slice(if first { b"[" } else { b"\n,\r\n" });
            out.extend_from_slice(&v.to_vec_google_pretty());
        }
        Bytes::from(out)
    }

    fn close(self) -> Option<Bytes> {
        (!self.sse).then(|| Bytes::from_static(b"\n]"))
    }
}

fn stream(ctx: &Ctx<'_>, answer: &Answer<'_>, sse: bool) -> Response<Body> {
    let framing = Framing { sse };
    let mut events = Events::new();
    let mut emitted = 0u64;
    if let (Some(t), true) = (&answer.plan.thinking, answer.show_thoughts) {
        for group in word_pieces(t).chunks(WORDS_PER_CHUNK) {
            let text = group.concat();
            let chunk = answer.chunk(
                vec![obj! {"text": text.as_str(), "thought": true}],
                false,
                0,
            );
            events.push_generated(framing.frame(events.len() == 0, &chunk), group.len() as u64);
        }
    }
    if answer.plan.calls.is_empty() {
        let pieces = word_pieces(&answer.plan.text);
        let groups: Vec<&[&str]> = pieces.chunks(WORDS_PER_CHUNK).collect();
        if groups.is_empty() {
            let chunk = answer.chunk(vec![obj! {"text": ""}], true, 0);
            events.push(framing.frame(events.len() == 0, &chunk));
        }
        let last = groups.len().saturating_sub(1);
        for (i, group) in groups.iter().enumerate() {
            let text = group.concat();
            emitted += word_ends(&text).len() as u64;
            let chunk = answer.chunk(vec![obj! {"text": text.as_str()}], i == last, emitted);
            events.push_generated(framing.frame(events.len() == 0, &chunk), group.len() as u64);
        }
    } else {
        let chunk = answer.chunk(answer.call_parts(), true, answer.plan.answer_tokens());
        events.push_generated(
            framing.frame(events.len() == 0, &chunk),
            answer.plan.answer_tokens(),
        );
    }
    if let Some(close) = framing.close() {
        events.push(close);
    }
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json; charset=UTF-8"
    };
    events.into_response(ctx, content_type, move |kept| {
        let err = obj! {"error": obj! {"code": 500u64, "message": INTERNAL, "status": "INTERNAL"}};
        let mut tail = vec![framing.frame(kept == 0, &err)];
        tail.extend(framing.close());
        tail
    })
}

/// `:countTokens`: `{"totalTokens": N}` by the prompt rule, for `contents`
/// or a whole `generateContentRequest`.
pub(crate) fn count_tokens(ctx: &Ctx<'_>, v: &Value, raw: &Bytes, model: &str) -> Response<Body> {
    if let Some(ordered) = OValue::parse(raw) {
        let violations = gemini_fields::check_count_tokens(&ordered);
        if !violations.is_empty() {
            return field_violations(&violations);
        }
    }
    if !known_model(ctx.shared, model) {
        return model_not_found(model, api_version(ctx));
    }
    let request = field(v, "generateContentRequest", "generate_content_request").unwrap_or(v);
    if let Some(message) = check_shape(request.get("contents")) {
        return invalid(&message);
    }
    let n = prompt_tokens_of(request);
    google(
        StatusCode::OK,
        &obj! {
            "totalTokens": n,
            "promptTokensDetails": Json::Arr(vec![obj! {"modality": "TEXT", "tokenCount": n}]),
        },
    )
}

fn catalogue(shared: &Shared) -> Vec<String> {
    let mut out: Vec<String> = CATALOGUE.iter().map(|m| (*m).to_owned()).collect();
    for m in &shared.models {
        if (m.starts_with("gemini-") || m.starts_with("gemma-")) && !out.contains(m) {
            out.push(m.clone());
        }
    }
    out
}

/// "gemini-2.5-flash" → "Gemini 2.5 Flash".
fn display_name(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<String>>()
        .join(" ")
}

fn model_entry(id: &str) -> Json {
    obj! {
        "name": format!("models/{id}"),
        "version": "001",
        "displayName": display_name(id),
        "description": format!("Mock {}", display_name(id)),
        "inputTokenLimit": CONTEXT_WINDOW,
        "outputTokenLimit": 65_536u64,
        "supportedGenerationMethods": Json::Arr(
            ["generateContent", "countTokens", "createCachedContent", "batchGenerateContent"]
                .into_iter()
                .map(Json::from)
                .collect(),
        ),
        "temperature": 1u64,
        "topP": Json::Val(serde_json::json!(0.95)),
        "topK": 64u64,
        "maxTemperature": 2u64,
        "thinking": !id.starts_with("gemini-2.0") && !id.starts_with("gemma-"),
    }
}

/// `GET /v1beta/models`.
pub(crate) fn list_models(shared: &Shared) -> Response<Body> {
    let models = catalogue(shared).iter().map(|m| model_entry(m)).collect();
    google(StatusCode::OK, &obj! {"models": Json::Arr(models)})
}

/// `GET /v1beta/models/{model}`.
pub(crate) fn get_model(ctx: &Ctx<'_>, model: &str) -> Response<Body> {
    if catalogue(ctx.shared).iter().any(|m| m == model) {
        google(StatusCode::OK, &model_entry(model))
    } else {
        model_not_found(model, api_version(ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_text_and_function_responses() {
        let v = json!({
            "systemInstruction": {"parts": [{"text": "abcd"}]},
            "contents": [
                {"role": "user", "parts": [{"text": "abcd"}, {"text": "ignored thought", "thought": true}]},
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": "not counted"}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"result": "abcd", "n": 5}}}]},
            ],
        });
        assert_eq!(prompt_tokens_of(&v), 3);
    }

    #[test]
    fn turn_rules() {
        let call = json!({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]});
        let resp =
            json!({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]});
        let user = json!({"role": "user", "parts": [{"text": "hi"}]});
        assert_eq!(
            check_turns(
                &[user.clone(), call.clone(), resp.clone()],
                "gemini-2.5-flash"
            ),
            None
        );
        assert!(
            check_turns(&[user.clone(), resp.clone()], "gemini-2.5-flash")
                .is_some_and(|m| m.contains("function response turn comes immediately after"))
        );
        assert!(
            check_turns(std::slice::from_ref(&call), "gemini-2.5-flash")
                .is_some_and(|m| m.contains("function call turn comes immediately after"))
        );
        assert!(
            check_turns(
                &[user.clone(), call.clone(), resp.clone()],
                "gemini-3-pro-preview"
            )
            .is_some_and(|m| m.contains("`default_api:f` , position 2."))
        );
        let signed = json!({"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}]});
        assert_eq!(
            check_turns(&[user.clone(), signed, resp], "gemini-3-pro-preview"),
            None
        );
        // An earlier turn's calls are not checked.
        let later = json!({"role": "user", "parts": [{"text": "thanks"}]});
        let unsigned_resp =
            json!({"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]});
        assert_eq!(
            check_turns(&[user, call, unsigned_resp, later], "gemini-3-pro-preview"),
            None
        );
        let bad_role = json!({"role": "assistant", "parts": [{"text": "x"}]});
        assert_eq!(
            check_turns(&[bad_role], "gemini-2.5-flash").as_deref(),
            Some("Please use a valid role: user, model.")
        );
    }

    #[test]
    fn names() {
        assert_eq!(display_name("gemini-2.5-flash"), "Gemini 2.5 Flash");
    }
}
