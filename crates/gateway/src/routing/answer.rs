//! Reading what an upstream answered, before the client sees it: does a stream event carry
//! content yet, is a whole answer empty, does it contain one of `error_triggers`, and what token
//! usage it reports. Each wire format says these things its own way; all are read from the JSON
//! alone (no full conversion), so the checks cost little on the hot path.
//!
//! uni-api turns an empty answer (no text, tool call, reasoning, audio or refusal) and an answer
//! containing an error trigger into a 502 that is retried elsewhere; so does llmux, and for a
//! stream it holds everything back until the first event with content has been checked.

use protocol::ir::Format;
use protocol::skim::{Malformed, Reader};
use serde_json::Value;

/// What one stream event says about the answer so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Content has started: the stream may be committed to the client.
    Content,
    /// Nothing substantive yet (role announcement, ping, usage, metadata).
    Nothing,
    /// The upstream failed, or the event contains an error trigger.
    Failed(String),
}

/// The message uni-api gives for empty answers (and error triggers).
pub const EMPTY: &str = "Upstream server returned an empty response.";

/// The first error trigger contained in `text` (also after decoding `\uXXXX` escapes, which
/// JSON encoders use for non-ASCII text).
pub fn trigger_in<'t>(text: &str, triggers: &'t [String]) -> Option<&'t str> {
    if triggers.is_empty() {
        return None;
    }
    if let Some(t) = triggers.iter().find(|t| text.contains(t.as_str())) {
        return Some(t);
    }
    if text.contains("\\u") {
        let decoded = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string(&v).ok())?;
        return triggers
            .iter()
            .find(|t| decoded.contains(t.as_str()))
            .map(String::as_str);
    }
    None
}

fn nonempty_str(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

fn nonempty_array(v: Option<&Value>) -> bool {
    v.and_then(Value::as_array).is_some_and(|a| !a.is_empty())
}

fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

fn error_message(v: &Value) -> Option<String> {
    let err = v.get("error").filter(|e| !e.is_null())?;
    Some(
        err.get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| err.as_str().map(str::to_string))
            .unwrap_or_else(|| err.to_string()),
    )
}

/// An OpenAI chat message or delta with something in it.
fn openai_has_content(m: &Value) -> bool {
    let content = m.get("content");
    nonempty_str(content)
        || nonempty_array(content)
        || nonempty_array(m.get("tool_calls"))
        || present(m.get("function_call"))
        || nonempty_str(m.get("reasoning_content"))
        || nonempty_str(m.get("reasoning"))
        || present(m.get("audio"))
        || nonempty_str(m.get("refusal"))
}

fn gemini_has_content(v: &Value) -> bool {
    v.get("candidates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("content")?.get("parts")?.as_array())
        .flatten()
        .any(|p| {
            nonempty_str(p.get("text"))
                || present(p.get("functionCall"))
                || present(p.get("inlineData"))
                || present(p.get("executableCode"))
        })
}

const CHOICES_KEY: &[u8] = b"\"choices\":";
const DELTA_KEY: &[u8] = b"\"delta\":";
static CHOICES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(CHOICES_KEY));
static DELTA: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(DELTA_KEY));

/// The usual OpenAI chat chunks, judged without walking them: `Some(true)` for the text chunk
/// `{…,"choices":[{…,"delta":{"content":"x…`, `Some(false)` for a first chunk that only
/// announces the role (`"delta":{"role":"assistant","content":""…}`) and ends as OpenAI's
/// do; `None` when not certain (the walk decides): an `"error"` anywhere, an object or array
/// before `choices` or before the first choice's `delta`, any other delta or ending.
///
/// Why it is exact: `"choices":` cannot match inside a string (its quotes would be escaped),
/// and with no `{` or `[` between the event's opening brace and it, it is a member of the
/// top-level object; likewise `delta` is a member of the first choice. An empty delta is
/// taken only with the one ending that leaves no room for another choice or member with
/// text. Bytes before `choices` that are not JSON the walk would take as content; the
/// shortcut takes them as what the rest of the chunk says (a malformed role chunk is waited
/// past, not relayed as the answer).
fn openai_shortcut(data: &[u8]) -> Option<bool> {
    static ERROR: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\""));
    let body = data.strip_prefix(b"{")?;
    let choices = CHOICES.find(body)?;
    let (before, rest) = body.split_at(choices);
    let first_choice = rest
        .get(CHOICES_KEY.len()..)
        .and_then(|r| r.trim_ascii_start().strip_prefix(b"["))
        .and_then(|r| r.trim_ascii_start().strip_prefix(b"{"))?;
    let delta = DELTA.find(first_choice)?;
    let (members, value) = first_choice.split_at(delta);
    if memchr::memchr2(b'{', b'[', before).is_some()
        || memchr::memchr3(b'{', b'[', b'}', members).is_some()
    {
        return None;
    }
    let value = value.get(DELTA_KEY.len()..)?;
    let verdict = if let Some(text) = value.strip_prefix(b"{\"content\":\"") {
        // Non-empty text; `""` is one of the empty deltas below.
        text.first().is_some_and(|&c| c != b'"').then_some(true)
    } else {
        None
    };
    let verdict = verdict.or_else(|| {
        let after = EMPTY_DELTAS
            .iter()
            .find_map(|empty| value.strip_prefix(*empty))?;
        openai_chunk_end(after).then_some(false)
    })?;
    ERROR.find(data).is_none().then_some(verdict)
}

/// Deltas without content that OpenAI and compatible servers send first.
const EMPTY_DELTAS: [&[u8]; 4] = [
    b"{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}",
    b"{\"role\":\"assistant\",\"content\":\"\"}",
    b"{\"role\":\"assistant\"}",
    b"{\"content\":\"\"}",
];

/// The end of a chat chunk after its only choice's delta: `null` logprobs and finish reason,
/// the closing brackets, and at most a `null` usage.
fn openai_chunk_end(mut rest: &[u8]) -> bool {
    while let Some(r) = rest
        .strip_prefix(b",\"logprobs\":null")
        .or_else(|| rest.strip_prefix(b",\"finish_reason\":null"))
    {
        rest = r;
    }
    let Some(rest) = rest.strip_prefix(b"}]") else {
        return false;
    };
    let rest = rest.strip_prefix(b",\"usage\":null").unwrap_or(rest);
    rest.trim_ascii_end() == b"}"
}

/// Judges one stream event of an upstream speaking `format`: its `event` name and `data`.
pub fn stream_event(
    format: Format,
    event: Option<&str>,
    data: &str,
    triggers: &[String],
) -> Verdict {
    let data = data.trim();
    if let Some(t) = trigger_in(data, triggers) {
        return Verdict::Failed(format!("{EMPTY} (error trigger `{t}`)"));
    }
    if data.is_empty() || data == "[DONE]" {
        return if event == Some("error") {
            Verdict::Failed("error event".into())
        } else {
            Verdict::Nothing
        };
    }
    if format == Format::OpenAiChat
        && event.is_none()
        && let Some(content) = openai_shortcut(data.as_bytes())
    {
        return if content {
            Verdict::Content
        } else {
            Verdict::Nothing
        };
    }
    if format == Format::OpenAiChat
        && event.is_none()
        && let Some((content, _)) = fast::openai_str(data)
    {
        return if content {
            Verdict::Content
        } else {
            Verdict::Nothing
        };
    }
    let Ok(v) = serde_json::from_str::<Value>(data) else {
        // Not JSON: something the client would see as content.
        return Verdict::Content;
    };
    let kind = v
        .get("type")
        .and_then(Value::as_str)
        .or(event)
        .unwrap_or("");
    if event == Some("error") || kind == "error" || kind == "response.failed" {
        let msg = error_message(&v)
            .or_else(|| v.get("response").and_then(error_message))
            .or_else(|| v.get("message").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| data.to_string());
        return Verdict::Failed(format!("error event: {msg}"));
    }
    if let Some(msg) = error_message(&v) {
        return Verdict::Failed(format!("error event: {msg}"));
    }
    let content = match format {
        Format::OpenAiChat => v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c.get("delta").is_some_and(openai_has_content) || nonempty_str(c.get("text"))),
        Format::Anthropic => match kind {
            "content_block_start" => v.get("content_block").is_some_and(|b| {
                match b.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => nonempty_str(b.get("text")),
                    "thinking" => nonempty_str(b.get("thinking")),
                    _ => true,
                }
            }),
            "content_block_delta" => v.get("delta").is_some_and(|d| {
                nonempty_str(d.get("text"))
                    || nonempty_str(d.get("thinking"))
                    || nonempty_str(d.get("partial_json"))
                    || nonempty_str(d.get("signature"))
            }),
            _ => false,
        },
        Format::Gemini => gemini_has_content(&v),
        Format::OpenAiResponses => match kind {
            "response.output_item.added" => v
                .get("item")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str)
                .is_some_and(|t| t != "message" && t != "reasoning"),
            k if k.ends_with(".delta") => nonempty_str(v.get("delta")),
            "response.output_text.done" | "response.refusal.done" => true,
            _ => false,
        },
    };
    if content {
        Verdict::Content
    } else {
        Verdict::Nothing
    }
}

/// The OpenAI chat shapes read on the hot path, walked with [`protocol::skim::Reader`] instead
/// of deserialized: whether a choice's `message` or `delta` has content (the same reading as
/// [`openai_has_content`]) and the usage. A body with an `error` member, or one the reader
/// cannot follow, is left to the general path.
mod fast {
    use protocol::skim::{Malformed, Reader};

    use super::Tokens;

    /// `(has content, usage)`, or `None` for the general path.
    pub fn openai(body: &[u8]) -> Option<(bool, Option<Tokens>)> {
        read(Reader::new(body).ok()?).ok().flatten()
    }

    /// As [`openai`], for text already checked to be UTF-8.
    pub fn openai_str(text: &str) -> Option<(bool, Option<Tokens>)> {
        read(Reader::new_str(text)).ok().flatten()
    }

    fn read(mut r: Reader<'_>) -> Result<Option<(bool, Option<Tokens>)>, Malformed> {
        r.begin_object()?;
        let mut content = false;
        let mut tokens = None;
        while let Some(key) = r.next_key()? {
            match key {
                b"choices" if r.peek() == Some(b'[') => {
                    r.begin_array()?;
                    while r.next_item()? {
                        content |= choice(&mut r)?;
                    }
                }
                b"usage" => tokens = super::read_usage(&mut r)?.map(|u| u.tokens().0),
                b"error" => {
                    if r.raw()? != b"null" {
                        return Ok(None);
                    }
                }
                _ => r.skip()?,
            }
        }
        r.end()?;
        Ok(Some((content, tokens)))
    }

    /// One element of `choices`.
    fn choice(r: &mut Reader<'_>) -> Result<bool, Malformed> {
        if !r.enter_object()? {
            return Ok(false);
        }
        let mut content = false;
        while let Some(key) = r.next_key()? {
            content |= match key {
                b"message" | b"delta" => message(r)?,
                b"text" => nonempty_str(r.raw()?),
                _ => r.skip().map(|()| false)?,
            };
        }
        Ok(content)
    }

    /// A `message` or `delta` with something in it.
    fn message(r: &mut Reader<'_>) -> Result<bool, Malformed> {
        if !r.enter_object()? {
            return Ok(false);
        }
        let mut content = false;
        while let Some(key) = r.next_key()? {
            let raw = r.raw()?;
            content |= match key {
                b"content" => protocol::skim::filled(raw),
                b"tool_calls" => raw.starts_with(b"[") && protocol::skim::filled(raw),
                b"function_call" | b"audio" => raw != b"null",
                b"reasoning_content" | b"reasoning" | b"refusal" => nonempty_str(raw),
                _ => false,
            };
        }
        Ok(content)
    }

    fn nonempty_str(raw: &[u8]) -> bool {
        raw.starts_with(b"\"") && raw.len() > 2
    }
}

/// Checks a whole (non-stream) chat answer: `Err` when it is an error, empty, or contains an
/// error trigger; `Ok` carries the usage it reports.
pub fn whole_answer(
    format: Format,
    body: &[u8],
    triggers: &[String],
) -> Result<Option<Tokens>, String> {
    if !triggers.is_empty() {
        let text = protocol::sse::utf8_lossy(body);
        if let Some(t) = trigger_in(&text, triggers) {
            return Err(format!("{EMPTY} (error trigger `{t}`)"));
        }
    }
    if format == Format::OpenAiChat
        && let Some((content, tokens)) = fast::openai(body)
    {
        return if content {
            Ok(tokens)
        } else {
            Err(EMPTY.to_string())
        };
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Err(format!("{EMPTY} (not JSON)"));
    };
    if let Some(msg) = error_message(&v) {
        return Err(msg);
    }
    let content = match format {
        Format::OpenAiChat => v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| {
                c.get("message").is_some_and(openai_has_content) || nonempty_str(c.get("text"))
            }),
        Format::Anthropic => v
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(
                |b| match b.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text" => nonempty_str(b.get("text")),
                    "thinking" => nonempty_str(b.get("thinking")),
                    _ => true,
                },
            ),
        Format::Gemini => gemini_has_content(&v),
        Format::OpenAiResponses => {
            nonempty_str(v.get("output_text"))
                || v.get("output")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(
                        |item| match item.get("type").and_then(Value::as_str).unwrap_or("") {
                            "message" => item
                                .get("content")
                                .and_then(Value::as_array)
                                .into_iter()
                                .flatten()
                                .any(|p| {
                                    nonempty_str(p.get("text")) || nonempty_str(p.get("refusal"))
                                }),
                            "reasoning" => nonempty_array(item.get("summary")),
                            _ => true,
                        },
                    )
        }
    };
    if content {
        Ok(tokens_in(&v))
    } else {
        Err(EMPTY.to_string())
    }
}

/// Token counts an answer reports (streams report cumulatively: merged field-wise by maximum).
pub use crate::usage::Tokens;

fn count(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn nested(v: &Value, object: &str, key: &str) -> u64 {
    v.get(object).map_or(0, |o| count(o, key))
}

fn usage_object(u: &Value) -> Option<Tokens> {
    if !u.is_object() {
        return None;
    }
    // OpenAI chat: prompt/completion; Responses and Anthropic: input/output (Anthropic reports
    // cache reads and writes apart from input_tokens).
    let cache_read = count(u, "cache_read_input_tokens");
    let prompt = count(u, "prompt_tokens")
        .max(count(u, "input_tokens") + cache_read + count(u, "cache_creation_input_tokens"));
    let completion = count(u, "completion_tokens").max(count(u, "output_tokens"));
    let cached = nested(u, "prompt_tokens_details", "cached_tokens")
        .max(nested(u, "input_tokens_details", "cached_tokens"))
        .max(cache_read);
    let reasoning = nested(u, "completion_tokens_details", "reasoning_tokens").max(nested(
        u,
        "output_tokens_details",
        "reasoning_tokens",
    ));
    Some(Tokens {
        prompt,
        completion,
        cached,
        reasoning,
        estimated: false,
    })
}

/// The usage an upstream JSON object (whole answer or stream event) reports, in any format.
pub fn tokens_in(v: &Value) -> Option<Tokens> {
    usage_in_value(v).map(|(t, _)| t)
}

/// As [`tokens_in`], with OpenAI's `total_tokens` when one says it.
fn usage_in_value(v: &Value) -> Option<(Tokens, Option<u64>)> {
    if let Some(m) = v.get("usageMetadata").filter(|m| m.is_object()) {
        return Some((gemini_tokens(m), None));
    }
    let nested = |key: &str| v.get(key).and_then(|m| m.get("usage"));
    usage_objects([v.get("usage"), nested("message"), nested("response")])
}

fn gemini_tokens(m: &Value) -> Tokens {
    Tokens {
        prompt: count(m, "promptTokenCount"),
        completion: count(m, "candidatesTokenCount") + count(m, "thoughtsTokenCount"),
        cached: count(m, "cachedContentTokenCount"),
        reasoning: count(m, "thoughtsTokenCount"),
        estimated: false,
    }
}

/// The `usage` objects found (top level, in `message`, in `response`) merged, and OpenAI's own
/// `total_tokens` when one says it.
fn usage_objects(found: [Option<&Value>; 3]) -> Option<(Tokens, Option<u64>)> {
    let mut tokens: Option<Tokens> = None;
    let mut total = None;
    for u in found.into_iter().flatten() {
        if let Some(t) = usage_object(u) {
            tokens.get_or_insert_with(Tokens::default).merge(t);
            total = total.or(u
                .get("total_tokens")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0));
        }
    }
    tokens.map(|t| (t, total))
}

/// A `usage` object of OpenAI (chat and Responses) or Anthropic shape, as numbers (a member
/// that is not a non-negative integer reads as 0, as [`usage_object`] reads it).
#[derive(Default, Debug, PartialEq, Eq)]
struct UsageNumbers {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation_input_tokens: u64,
    prompt_tokens_details: Option<UsageDetails>,
    completion_tokens_details: Option<UsageDetails>,
    input_tokens_details: Option<UsageDetails>,
    output_tokens_details: Option<UsageDetails>,
}

#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct UsageDetails {
    cached_tokens: u64,
    reasoning_tokens: u64,
}

/// The `usage` value at the reader: its numbers when it is an object, `None` otherwise
/// (`null`, or a shape no format uses).
fn read_usage(r: &mut Reader<'_>) -> Result<Option<UsageNumbers>, Malformed> {
    if let Some((u, len)) = openai_usage_verbatim(r.rest()) {
        r.consume(len);
        return Ok(Some(u));
    }
    read_usage_walked(r)
}

/// OpenAI's chat usage object byte for byte as OpenAI writes it: its members in its order,
/// plain integers, no whitespace — the numbers and the object's length, read by comparing its
/// fixed bytes (about a fifth of the walk's work, for the one object every answer and stream
/// of the most common upstream ends with). `None` for anything else, which the walk reads.
///
/// Why it reads what the walk reads: the bytes matched are one JSON object with exactly these
/// members, each value an integer the walk's [`Reader::u64`] takes (1–19 digits, no leading
/// zero, followed by `,` or `}`), and the members the walk skips (`audio_tokens`, the
/// prediction counts) are skipped here too.
fn openai_usage_verbatim(b: &[u8]) -> Option<(UsageNumbers, usize)> {
    let mut v = Verbatim { b, at: 0 };
    let mut u = UsageNumbers::default();
    v.text(b"{\"prompt_tokens\":")?;
    u.prompt_tokens = v.count()?;
    v.text(b",\"completion_tokens\":")?;
    u.completion_tokens = v.count()?;
    v.text(b",\"total_tokens\":")?;
    u.total_tokens = v.count()?;
    if v.text(b",\"prompt_tokens_details\":{\"cached_tokens\":")
        .is_some()
    {
        let cached_tokens = v.count()?;
        v.text(b",\"audio_tokens\":")?;
        v.count()?;
        v.text(b"}")?;
        u.prompt_tokens_details = Some(UsageDetails {
            cached_tokens,
            reasoning_tokens: 0,
        });
    }
    if v.text(b",\"completion_tokens_details\":{\"reasoning_tokens\":")
        .is_some()
    {
        let reasoning_tokens = v.count()?;
        for member in [
            &b",\"audio_tokens\":"[..],
            b",\"accepted_prediction_tokens\":",
            b",\"rejected_prediction_tokens\":",
        ] {
            v.text(member)?;
            v.count()?;
        }
        v.text(b"}")?;
        u.completion_tokens_details = Some(UsageDetails {
            cached_tokens: 0,
            reasoning_tokens,
        });
    }
    v.text(b"}")?;
    Some((u, v.at))
}

/// A cursor for [`openai_usage_verbatim`].
struct Verbatim<'a> {
    b: &'a [u8],
    at: usize,
}

impl Verbatim<'_> {
    /// Past `expected` when the bytes at the cursor are it; the cursor stays otherwise.
    #[inline(always)]
    fn text(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.at + expected.len();
        (self.b.get(self.at..end)? == expected).then(|| self.at = end)
    }

    /// A plain integer as [`Reader::u64`] takes it, when the next byte ends it.
    #[inline(always)]
    fn count(&mut self) -> Option<u64> {
        let (n, end) = protocol::skim::plain_u64(self.b, self.at)?;
        self.at = end;
        matches!(self.b.get(end), Some(b',' | b'}')).then_some(n)
    }
}

/// [`read_usage`] by walking the object, whatever its shape.
fn read_usage_walked(r: &mut Reader<'_>) -> Result<Option<UsageNumbers>, Malformed> {
    if !r.enter_object()? {
        return Ok(None);
    }
    let mut u = UsageNumbers::default();
    while let Some(key) = r.next_key()? {
        let n = match key {
            b"prompt_tokens" => &mut u.prompt_tokens,
            b"completion_tokens" => &mut u.completion_tokens,
            b"total_tokens" => &mut u.total_tokens,
            b"input_tokens" => &mut u.input_tokens,
            b"output_tokens" => &mut u.output_tokens,
            b"cache_read_input_tokens" => &mut u.cache_read_input_tokens,
            b"cache_creation_input_tokens" => &mut u.cache_creation_input_tokens,
            // One arm each: a second match on the key to pick the field cost as much as
            // reading the details.
            b"prompt_tokens_details" => {
                u.prompt_tokens_details = read_details(r)?;
                continue;
            }
            b"completion_tokens_details" => {
                u.completion_tokens_details = read_details(r)?;
                continue;
            }
            b"input_tokens_details" => {
                u.input_tokens_details = read_details(r)?;
                continue;
            }
            b"output_tokens_details" => {
                u.output_tokens_details = read_details(r)?;
                continue;
            }
            _ => {
                r.skip()?;
                continue;
            }
        };
        *n = r.u64()?.unwrap_or(0);
    }
    Ok(Some(u))
}

fn read_details(r: &mut Reader<'_>) -> Result<Option<UsageDetails>, Malformed> {
    if !r.enter_object()? {
        return Ok(None);
    }
    let mut d = UsageDetails::default();
    while let Some(key) = r.next_key()? {
        match key {
            b"cached_tokens" => d.cached_tokens = r.u64()?.unwrap_or(0),
            b"reasoning_tokens" => d.reasoning_tokens = r.u64()?.unwrap_or(0),
            _ => r.skip()?,
        }
    }
    Ok(Some(d))
}

impl UsageNumbers {
    /// The same reading as [`usage_object`], and OpenAI's total.
    fn tokens(&self) -> (Tokens, Option<u64>) {
        let d = |x: Option<UsageDetails>| x.unwrap_or_default();
        let tokens = Tokens {
            prompt: self.prompt_tokens.max(
                self.input_tokens + self.cache_read_input_tokens + self.cache_creation_input_tokens,
            ),
            completion: self.completion_tokens.max(self.output_tokens),
            cached: d(self.prompt_tokens_details)
                .cached_tokens
                .max(d(self.input_tokens_details).cached_tokens)
                .max(self.cache_read_input_tokens),
            reasoning: d(self.completion_tokens_details)
                .reasoning_tokens
                .max(d(self.output_tokens_details).reasoning_tokens),
            estimated: false,
        };
        (tokens, Some(self.total_tokens).filter(|n| *n > 0))
    }
}

/// As [`tokens_in`], for raw bytes, with OpenAI's `total_tokens` when present; cheap for the
/// common event without usage (a byte search), and for the one with usage a read of only the
/// `usage` members: where the search found it when it is the top-level object's last member
/// (OpenAI's usage chunk, Anthropic's `message_delta`), else a walk of the object (bytes the
/// reader cannot follow are parsed the general way).
pub fn usage_in_bytes(data: &[u8]) -> Option<(Tokens, Option<u64>)> {
    usage_in_bytes_from(data, 0)
}

/// As [`usage_in_bytes`], for `data` whose bytes before `from` hold no `"usage`.
fn usage_in_bytes_from(data: &[u8], from: usize) -> Option<(Tokens, Option<u64>)> {
    let key = first_usage_value(data, from)?;
    if let Some(last) = last_member_usage(data, &key) {
        return last;
    }
    match usage_walk(data) {
        Ok(Walked::Usage(found)) => found,
        Ok(Walked::Gemini) | Err(Malformed) => {
            usage_in_value(&serde_json::from_slice::<Value>(data).ok()?)
        }
    }
}

/// The first `"usage…"` key (`usage`, `usageMetadata`) with a value other than `null`.
struct UsageKey {
    /// Offset of the key's opening quote.
    quote: usize,
    /// The key is exactly `usage`.
    exact: bool,
    /// Offset of the value.
    value: usize,
}

/// The usage when `key` is `"usage"`, a member of the object that closes at the end of
/// `data`, with an object value; `None` when that is not so (the walk decides).
///
/// Why it is that member: the key's quote follows `{` or `,`, so it is not an escaped quote
/// inside a string, and a quote followed by a letter opens a string: the key is a key. The
/// object it belongs to closes right after its value, at the end of `data`: the outermost
/// one. No other usage key can count: the search found none (non-null) before this one, and
/// nothing follows it but the closing brace. The bytes before the key are not checked: an
/// event malformed there, which the walk would give up on, still has its usage read (the
/// provider's count, where the walk would leave an estimate).
fn last_member_usage(data: &[u8], key: &UsageKey) -> Option<Option<(Tokens, Option<u64>)>> {
    if !key.exact
        || !matches!(
            data.get(..key.quote)?.trim_ascii_end().last(),
            Some(b'{' | b',')
        )
    {
        return None;
    }
    let mut r = Reader::at(data, key.value);
    if r.peek() != Some(b'{') {
        return None;
    }
    let usage = read_usage(&mut r).ok()??;
    if data.get(r.position()..)?.trim_ascii() != b"}" {
        return None;
    }
    Some(Some(usage.tokens()))
}

enum Walked {
    Usage(Option<(Tokens, Option<u64>)>),
    /// Gemini's `usageMetadata`, read from a parsed value.
    Gemini,
}

/// The `usage` members (top level, in `message`, in `response`) merged in that order.
fn usage_walk(data: &[u8]) -> Result<Walked, Malformed> {
    let mut r = Reader::new(data)?;
    r.begin_object()?;
    let mut found: [Option<UsageNumbers>; 3] = [None, None, None];
    let mut gemini = false;
    while let Some(key) = r.next_key()? {
        match key {
            b"usage" => found[0] = read_usage(&mut r)?,
            b"message" | b"response" if r.peek() == Some(b'{') => {
                let slot = usize::from(key == b"response") + 1;
                r.begin_object()?;
                while let Some(inner) = r.next_key()? {
                    if inner == b"usage" {
                        found[slot] = read_usage(&mut r)?;
                    } else {
                        r.skip()?;
                    }
                }
            }
            b"usageMetadata" => gemini |= r.raw()?.starts_with(b"{"),
            _ => r.skip()?,
        }
    }
    r.end()?;
    if gemini {
        return Ok(Walked::Gemini);
    }
    let mut tokens: Option<Tokens> = None;
    let mut total = None;
    for (t, said) in found.iter().flatten().map(UsageNumbers::tokens) {
        tokens.get_or_insert_with(Tokens::default).merge(t);
        total = total.or(said);
    }
    Ok(Walked::Usage(tokens.map(|t| (t, total))))
}

/// As [`usage_in_bytes`], tokens only.
pub fn tokens_in_bytes(data: &[u8]) -> Option<Tokens> {
    usage_in_bytes(data).map(|(t, _)| t)
}

static USAGE: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage"));

/// Where the first `"usage…"` key at or after `from` with a value other than `null` is (a
/// byte search: it may also stop at such text inside a string, which the reading after it
/// rejects).
fn first_usage_value(data: &[u8], from: usize) -> Option<UsageKey> {
    // `find` in a loop: `find_iter` copies the searcher for every event.
    let mut pos = from;
    while let Some(at) = USAGE.find(data.get(pos..).unwrap_or_default()) {
        let quote = pos + at;
        let name_end = quote + 6;
        // No quote left, so no later `"usage` either.
        let close = name_end + memchr::memchr(b'"', data.get(name_end..).unwrap_or_default())?;
        let after = data.get(close + 1..).unwrap_or_default();
        let colon = after.trim_ascii_start();
        if let Some(value) = colon.strip_prefix(b":") {
            let value = value.trim_ascii_start();
            let at = data.len() - value.len();
            if !value.starts_with(b"null") {
                return Some(UsageKey {
                    quote,
                    exact: close == name_end,
                    value: at,
                });
            }
            // On past the `null` (OpenAI's `"usage":null` ends most chunks that ask for usage:
            // the search then has nothing left to look at).
            pos = at + 4;
            continue;
        }
        pos = name_end;
    }
    None
}

/// Characters of generated text in one stream event of any format (text, reasoning, refusal,
/// tool-call arguments), for a usage estimate when the upstream reports none. A scan of the raw
/// JSON rather than a parse: it runs on every event of every stream, so it must stay cheap. An
/// escape sequence counts as one character. A plain byte walk: events are short and full of
/// short strings, where calling memchr per string (or iterating memchr hits) measured slower
/// (`cargo bench -p llmux --bench stream_events`: 105 ns per OpenAI chunk, against 294 and
/// 171 ns). An OpenAI chat chunk is walked only inside its `delta` objects, found with one
/// vectorised search, which halves that again.
pub fn generated_chars(data: &[u8]) -> u64 {
    chars_and_plain_text(data, CHOICES.find(data)).0
}

/// [`generated_chars`] with the first `"choices":` of `data` already found, and where the
/// text is when it is all in one delta of the usual shape (see [`plain_content`]) and no
/// other delta follows.
fn chars_and_plain_text(
    data: &[u8],
    choices: Option<usize>,
) -> (u64, Option<std::ops::Range<usize>>) {
    // `"choices":` or `"delta":` cannot occur inside a string (its quotes would be escaped):
    // a walk starting at one starts outside any string.
    let Some(choices) = choices else {
        return (text_chars(data, 0, false), None);
    };
    let rest = |at: usize| data.get(at..).unwrap_or_default();
    if rest(choices + CHOICES_KEY.len())
        .trim_ascii_start()
        .starts_with(b"[]")
    {
        // The usage-only chunk.
        return (0, None);
    }
    // A chat chunk's text is in `choices[].delta`; the members around it (id, model, index,
    // finish_reason, usage) hold none. (`find` in a loop: `find_iter` copies the searcher.)
    let mut total = 0;
    let mut deltas = 0;
    let mut plain = None;
    let mut pos = choices;
    while let Some(at) = DELTA.find(rest(pos)) {
        deltas += 1;
        pos += at + DELTA_KEY.len();
        total += match plain_content(rest(pos)) {
            Some((chars, len)) => {
                let start = pos + PLAIN_HEAD.len();
                plain = Some(start..start + len);
                chars
            }
            None => {
                plain = None;
                text_chars(data, pos, true)
            }
        };
    }
    match deltas {
        // Legacy completions (`choices[].text`).
        0 => (text_chars(data, choices, false), None),
        1 => (total, plain),
        _ => (total, None),
    }
}

/// Reads the events of one stream: their generated characters and usage. OpenAI chat chunks
/// of one stream repeat themselves: the same `id`, `object`, `created`, `model`, … up to
/// `"choices":` (about two thirds of a text chunk), and, with most providers, the same bytes
/// around the delta's text too. What earlier events taught spares the searches for what
/// cannot have changed, at two levels:
/// - the template: an event that is the last plain text chunk with other text (no quote or
///   escape in it) has that text's characters and no usage — two comparisons and a count
///   instead of four searches;
/// - the head: an event that begins with the bytes its predecessor began with has its
///   `choices` where that one had, and no usage before it.
///
/// Each level is learned from an event read in full and only ever spares a search whose
/// answer the shared bytes fix (see the test `an_event_reader_reads_each_event_as_alone`).
#[derive(Debug, Default)]
pub struct EventReader {
    /// The last chunk's bytes through `"choices":`, holding no `"usage`; empty when unknown.
    prefix: Vec<u8>,
    /// Events that did not begin with `prefix`: after a few, this stream's chunks differ
    /// from one another and no more are learned.
    misses: u8,
    /// The last plain text chunk before its text (ending with `{"content":"`, holding no
    /// `"usage`) and after it (starting with `"}`, holding no other delta and no usage);
    /// `before` is empty when unknown.
    before: Vec<u8>,
    after: Vec<u8>,
    /// Templates learned: a stream whose text chunks differ elsewhere too (a random member
    /// in each) stops learning after a few.
    templates: u8,
}

/// What one event says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EventRead {
    /// Generated characters (0 when not counted).
    pub chars: u64,
    /// Its usage, and OpenAI's total when it says one.
    pub usage: Option<(Tokens, Option<u64>)>,
}

impl EventReader {
    const MAX_MISSES: u8 = 4;
    const MAX_TEMPLATES: u8 = 4;

    /// [`generated_chars`] (when `count`) and [`usage_in_bytes`] of one event's data.
    pub fn read(&mut self, data: &[u8], count: bool) -> EventRead {
        if let Some(chars) = self.template_text(data) {
            return EventRead {
                chars: if count { chars } else { 0 },
                usage: None,
            };
        }
        let known = !self.prefix.is_empty() && data.starts_with(&self.prefix);
        let (choices, usage_from) = if known {
            (
                Some(self.prefix.len() - CHOICES_KEY.len()),
                self.prefix.len(),
            )
        } else {
            (CHOICES.find(data), 0)
        };
        let (chars, plain) = if count {
            chars_and_plain_text(data, choices)
        } else {
            (0, None)
        };
        let usage = usage_in_bytes_from(data, usage_from);
        if !known {
            self.learn_head(data, choices);
        }
        if let Some(text) = plain.filter(|_| usage.is_none()) {
            self.learn_template(data, text);
        }
        EventRead { chars, usage }
    }

    /// The characters of an event that is the template with other text.
    ///
    /// Why the answer is the same as a full reading: the bytes before the text fix where
    /// `choices` and the delta are, and hold no usage; the text holds no quote, so no key
    /// starts in it (a `"usage` starting at its opening quote ends at its closing one, which
    /// a `}` follows, not a colon); after the text, the bytes are the ones that held no delta
    /// and no usage before.
    fn template_text(&self, data: &[u8]) -> Option<u64> {
        if self.before.is_empty() {
            return None;
        }
        let text = data
            .strip_prefix(self.before.as_slice())?
            .strip_suffix(self.after.as_slice())?;
        if memchr::memchr2(b'"', b'\\', text).is_some() {
            return None;
        }
        Some(utf8_chars(text))
    }

    fn learn_head(&mut self, data: &[u8], choices: Option<usize>) {
        if !self.prefix.is_empty() {
            self.prefix.clear();
            self.misses += 1;
        }
        if self.misses >= Self::MAX_MISSES {
            return;
        }
        let Some(end) = choices.map(|c| c + CHOICES_KEY.len()) else {
            return;
        };
        if let Some(prefix) = data.get(..end)
            && USAGE.find(prefix).is_none()
        {
            self.prefix.extend_from_slice(prefix);
        }
    }

    /// Learns the bytes around `text`, the plain text of an event's one delta (an event
    /// without usage).
    fn learn_template(&mut self, data: &[u8], text: std::ops::Range<usize>) {
        if self.templates >= Self::MAX_TEMPLATES {
            return;
        }
        self.templates += 1;
        self.before.clear();
        self.after.clear();
        let (Some(before), Some(after)) = (data.get(..text.start), data.get(text.end..)) else {
            return;
        };
        if USAGE.find(before).is_none() {
            self.before.extend_from_slice(before);
            self.after.extend_from_slice(after);
        }
    }
}

const PLAIN_HEAD: &[u8] = b"{\"content\":\"";

/// UTF-8 lead bytes: one per character.
fn utf8_chars(text: &[u8]) -> u64 {
    text.iter().map(|&b| u64::from(b & 0xC0 != 0x80)).sum()
}

/// The usual delta, exactly `{"content":"…"}` with no escape in the text: its characters
/// (counted without the general walk) and the text's length in bytes. `None` for any other
/// shape.
fn plain_content(value: &[u8]) -> Option<(u64, usize)> {
    let text = value.strip_prefix(PLAIN_HEAD)?;
    let end = memchr::memchr2(b'"', b'\\', text)?;
    if text.get(end..end + 2) != Some(b"\"}") {
        return None;
    }
    Some((utf8_chars(text.get(..end)?), end))
}

/// The walk of [`generated_chars`] from `from` (outside any string): to the end of `data`, or
/// with `one_value` to the end of the value starting there.
fn text_chars(data: &[u8], from: usize, one_value: bool) -> u64 {
    const TEXT: &[&[u8]] = &[
        b"content",
        b"text",
        b"reasoning_content",
        b"reasoning",
        b"refusal",
        b"arguments",
        b"partial_json",
        b"thinking",
        b"delta",
    ];
    let at = |i: usize| data.get(i).copied();
    let skip_space = |mut i: usize| {
        while at(i).is_some_and(|c| c.is_ascii_whitespace()) {
            i += 1;
        }
        i
    };
    let mut total = 0u64;
    // The next string is the value of a text key.
    let mut counted = false;
    // Containers open since `from` (for `one_value`).
    let mut depth = 0u32;
    let mut i = from;
    while let Some(c) = at(i) {
        if c != b'"' {
            if one_value {
                match c {
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' | b',' if depth == 0 => break,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
            }
            i += 1;
            continue;
        }
        // A string: find its end, counting characters (UTF-8 lead bytes, escapes as one).
        let start = i + 1;
        let mut j = start;
        let mut chars = 0u64;
        while let Some(b) = at(j) {
            match b {
                b'"' => break,
                b'\\' => {
                    j += if at(j + 1) == Some(b'u') { 6 } else { 2 };
                    chars += 1;
                }
                _ => {
                    if b & 0xC0 != 0x80 {
                        chars += 1;
                    }
                    j += 1;
                }
            }
        }
        let end = j.min(data.len());
        i = end + 1;
        if counted {
            total += chars;
            counted = false;
            continue;
        }
        // A key is followed by `:`; its value counts when it is a string and the key names text.
        let after = skip_space(i);
        if at(after) == Some(b':') {
            let key = data.get(start..end).unwrap_or_default();
            let value = skip_space(after + 1);
            counted = at(value) == Some(b'"') && TEXT.contains(&key);
            i = value;
        }
    }
    total
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    /// Some `"usage…"` key (`usage`, `usageMetadata`) in `data` has a value other than `null`.
    fn has_usage_value(data: &[u8]) -> bool {
        super::first_usage_value(data, 0).is_some()
    }

    #[test]
    fn usage_members_that_are_null_are_skipped() {
        assert!(!has_usage_value(br#"{"choices":[],"usage":null}"#));
        assert!(!has_usage_value(br#"{"usage" :  null}"#));
        assert!(has_usage_value(br#"{"usage":{"prompt_tokens":1}}"#));
        assert!(has_usage_value(
            br#"{"usageMetadata": {"promptTokenCount": 2}}"#
        ));
        assert!(!has_usage_value(br#"{"content":"no"}"#));
        assert_eq!(
            super::tokens_in_bytes(br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#),
            Some(super::Tokens {
                prompt: 3,
                completion: 4,
                ..super::Tokens::default()
            })
        );
    }

    use super::*;

    #[test]
    fn openai_role_chunks_are_not_content_but_deltas_and_tool_calls_are() {
        let f = Format::OpenAiChat;
        let t: Vec<String> = vec![];
        let role =
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}"#;
        assert_eq!(stream_event(f, None, role, &t), Verdict::Nothing);
        let text = r#"{"choices":[{"index":0,"delta":{"content":"Hi"}}]}"#;
        assert_eq!(stream_event(f, None, text, &t), Verdict::Content);
        let tool = r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c"}]}}]}"#;
        assert_eq!(stream_event(f, None, tool, &t), Verdict::Content);
        let reasoning = r#"{"choices":[{"delta":{"reasoning_content":"hmm"}}]}"#;
        assert_eq!(stream_event(f, None, reasoning, &t), Verdict::Content);
        let usage = r#"{"choices":[],"usage":{"prompt_tokens":1}}"#;
        assert_eq!(stream_event(f, None, usage, &t), Verdict::Nothing);
        assert_eq!(stream_event(f, None, "[DONE]", &t), Verdict::Nothing);
        let err = r#"{"error":{"message":"boom"}}"#;
        assert_eq!(
            stream_event(f, None, err, &t),
            Verdict::Failed("error event: boom".into())
        );
    }

    #[test]
    fn triggers_match_raw_and_unescaped_text() {
        let f = Format::OpenAiChat;
        let t = vec!["当前分组".to_string(), "upstream_error".to_string()];
        let escaped = r#"{"choices":[{"delta":{"content":"\u5f53\u524d\u5206\u7ec4 busy"}}]}"#;
        assert!(matches!(
            stream_event(f, None, escaped, &t),
            Verdict::Failed(m) if m.contains("当前分组")
        ));
        assert!(whole_answer(f, br#"{"x":"upstream_error"}"#, &t).is_err());
    }

    #[test]
    fn anthropic_gemini_and_responses_events() {
        let t: Vec<String> = vec![];
        let a = Format::Anthropic;
        let start = r#"{"type":"message_start","message":{"usage":{"input_tokens":5}}}"#;
        assert_eq!(
            stream_event(a, Some("message_start"), start, &t),
            Verdict::Nothing
        );
        let block =
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#;
        assert_eq!(stream_event(a, None, block, &t), Verdict::Nothing);
        let tool = r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"t","name":"f","input":{}}}"#;
        assert_eq!(stream_event(a, None, tool, &t), Verdict::Content);
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert_eq!(stream_event(a, None, delta, &t), Verdict::Content);
        let overloaded =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(matches!(
            stream_event(a, Some("error"), overloaded, &t),
            Verdict::Failed(_)
        ));
        let g = Format::Gemini;
        let chunk = r#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"}}]}"#;
        assert_eq!(stream_event(g, None, chunk, &t), Verdict::Content);
        let empty = r#"{"candidates":[{"content":{"parts":[{"text":""}]},"finishReason":"STOP"}]}"#;
        assert_eq!(stream_event(g, None, empty, &t), Verdict::Nothing);
        let r = Format::OpenAiResponses;
        let created = r#"{"type":"response.created","response":{}}"#;
        assert_eq!(stream_event(r, None, created, &t), Verdict::Nothing);
        let d = r#"{"type":"response.output_text.delta","delta":"Hi"}"#;
        assert_eq!(stream_event(r, None, d, &t), Verdict::Content);
    }

    /// The walked reading of OpenAI chat bodies agrees with the parsed one (content in a
    /// `message` or `delta`, usage as `usage_object` reads it), and leaves bodies with an
    /// error, malformed JSON or escaped keys to the general path.
    #[test]
    fn the_walked_openai_reading_agrees_with_the_parsed_one() {
        let general = |body: &str| {
            let v: Value = serde_json::from_str(body).unwrap();
            let content = v
                .get("choices")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("message").is_some_and(openai_has_content)
                        || c.get("delta").is_some_and(openai_has_content)
                        || nonempty_str(c.get("text"))
                });
            (content, v.get("usage").and_then(usage_object))
        };
        let bodies = [
            r#"{"choices":[{"message":{"role":"assistant","content":"hi","refusal":null}}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":null}}}"#,
            r#"{"choices":[{"message":{"content":""}}],"usage":null}"#,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#,
            r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c"}]}}]}"#,
            r#"{"choices":[{"message":{"content":[{"type":"text","text":"x"}]}}]}"#,
            r#"{"choices":[{"message":{"content":[]}},{"delta":{"reasoning_content":"r"}}]}"#,
            r#"{"choices":[{"delta":{"function_call":null,"audio":{"id":"a"}}}]}"#,
            r#"{"choices":[{"text":"legacy"}],"usage":{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":1}}"#,
            r#"{"choices":null,"usage":{"prompt_tokens":1.5,"completion_tokens":"2"}}"#,
            r#"{"choices":[1,"x",{"message":"text"}],"usage":[]}"#,
            r#" { "choices" : [ { "delta" : { "refusal" : "no" } } ] , "error" : null } "#,
        ];
        for body in bodies {
            let (content, usage) = general(body);
            assert_eq!(fast::openai_str(body), fast::openai(body.as_bytes()));
            assert_eq!(
                fast::openai(body.as_bytes()),
                Some((content, usage)),
                "{body}"
            );
        }
        for general_only in [
            r#"{"error":{"message":"boom"}}"#,
            r#"{"choices":[{"message":{"content":"hi"}}]"#,
            r#"{"choices":[],"\u0075sage":{"prompt_tokens":1}}"#,
            "{\"choices\":[{\"message\":{\"content\":\"\u{0}\"}}]}",
        ] {
            assert_eq!(fast::openai_str(general_only), None, "{general_only}");
            assert_eq!(
                fast::openai(general_only.as_bytes()),
                None,
                "{general_only}"
            );
        }
    }

    #[test]
    fn usage_is_read_from_any_format_without_a_full_parse() {
        /// (prompt, completion, OpenAI's total)
        type Read = Option<(u64, u64, Option<u64>)>;
        let cases: [(&str, Read); 5] = [
            (
                r#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#,
                Some((9, 3, Some(12))),
            ),
            (r#"{"choices":[{"delta":{}}],"usage":null}"#, None),
            (
                r#"{"type":"message_start","message":{"id":"m","usage":{"input_tokens":7,"output_tokens":1}}}"#,
                Some((7, 1, None)),
            ),
            (
                r#"{"type":"response.completed","response":{"usage":{"input_tokens":4,"output_tokens":6,"total_tokens":10}}}"#,
                Some((4, 6, Some(10))),
            ),
            (
                r#"{"candidates":[],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":2}}"#,
                Some((5, 2, None)),
            ),
        ];
        for (data, want) in cases {
            let got =
                usage_in_bytes(data.as_bytes()).map(|(t, total)| (t.prompt, t.completion, total));
            assert_eq!(got, want, "{data}");
        }
    }

    #[test]
    fn whole_answers_empty_or_not() {
        let t: Vec<String> = vec![];
        let f = Format::OpenAiChat;
        let empty = br#"{"choices":[{"message":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#;
        assert_eq!(whole_answer(f, empty, &t), Err(EMPTY.to_string()));
        let tool = br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c"}]}}]}"#;
        assert!(whole_answer(f, tool, &t).is_ok());
        let a = Format::Anthropic;
        assert!(
            whole_answer(
                a,
                br#"{"content":[{"type":"thinking","thinking":"x"}]}"#,
                &t
            )
            .is_ok()
        );
        assert!(whole_answer(a, br#"{"content":[]}"#, &t).is_err());
        let g = Format::Gemini;
        assert!(
            whole_answer(
                g,
                br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f"}}]}}]}"#,
                &t
            )
            .is_ok()
        );
        let r = Format::OpenAiResponses;
        assert!(
            whole_answer(
                r,
                br#"{"output":[{"type":"message","content":[{"type":"output_text","text":"x"}]}]}"#,
                &t
            )
            .is_ok()
        );
        assert!(whole_answer(r, br#"{"output":[]}"#, &t).is_err());
    }

    #[test]
    fn generated_text_is_counted_without_metadata() {
        let chunk = br#"{"id":"chatcmpl-123","model":"gpt-4o","choices":[{"delta":{"role":"assistant","content":"Hello","tool_calls":[{"id":"call_1","function":{"name":"f","arguments":"{}"}}]}}]}"#;
        assert_eq!(generated_chars(chunk), 7);
        let anthropic = r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"héllo"}}"#;
        assert_eq!(generated_chars(anthropic.as_bytes()), 5);
        // Escapes count as one character; keys inside strings and non-string values do not count.
        let escaped =
            br#"{"choices":[{"delta":{"content":"a\"b\u00e9\n"}}],"x":"\"content\": \"no\""}"#;
        assert_eq!(generated_chars(escaped), 5);
        let spaced = br#"{ "text" : "abc", "content": null, "delta": {"text": "de"} }"#;
        assert_eq!(generated_chars(spaced), 5);
        let gemini = br#"{"candidates":[{"content":{"parts":[{"text":"Hi there"}],"role":"model"}}],"usageMetadata":{"promptTokenCount":2}}"#;
        assert_eq!(generated_chars(gemini), 8);
        assert_eq!(generated_chars(b""), 0);
        assert_eq!(generated_chars(br#"{"text":"unterminated"#), 12);
        // Chat chunks: every choice's delta, nothing around them; legacy `text` choices.
        let two = br#"{"choices":[{"index":0,"delta":{"content":"ab","tool_calls":[{"index":0,"function":{"arguments":"{\"x\":1}"}}]},"finish_reason":null},{"index":1,"delta":{"reasoning_content":"cd"}}],"usage":null,"note":{"text":"not generated"}}"#;
        assert_eq!(generated_chars(two), 11);
        assert_eq!(
            generated_chars(br#"{"choices":[{"index":0,"delta":{}}]}"#),
            0
        );
        assert_eq!(
            generated_chars(br#"{"object":"text_completion","choices":[{"text":"legacy"}]}"#),
            6
        );
        // Cut short inside a delta: what is there counts.
        assert_eq!(
            generated_chars(br#"{"choices":[{"delta":{"content":"abc"#),
            3
        );
    }

    #[test]
    fn plain_content_deltas_count_as_the_walk_does() {
        let chunks: [&str; 7] = [
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":" said: é😀"},"logprobs":null}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"ab"}},{"index":1,"delta":{"content":"cde"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":""}}]}"#,
            // Shapes the fast path leaves to the walk: escapes, more members, other keys.
            r#"{"choices":[{"delta":{"content":"a\"b"}}]}"#,
            r#"{"choices":[{"delta":{"content":"ab","refusal":null}}]}"#,
            r#"{"choices":[{"delta":{"role":"assistant","content":"xy"}},{"delta":{"content":"z"}}]}"#,
            r#"{"choices":[{"delta":{"content":"unterminated"#,
        ];
        for (i, chunk) in chunks.iter().enumerate() {
            let chunk = chunk.as_bytes();
            let walked = text_chars(chunk, 0, false);
            assert_eq!(generated_chars(chunk), walked, "chunk {i}");
            let delta = memchr::memmem::find(chunk, b"\"delta\":").unwrap() + 8;
            assert_eq!(
                plain_content(&chunk[delta..]).is_some(),
                i < 3,
                "chunk {i}: only the plain shape is read without the walk"
            );
        }
        let usage_only = br#"{"choices": [ ],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(generated_chars(usage_only), 0);
        assert_eq!(generated_chars(chunks[0].as_bytes()), 9);
        assert_eq!(generated_chars(chunks[1].as_bytes()), 5);
        // `a\"b`: the escape counts as one character.
        assert_eq!(generated_chars(chunks[3].as_bytes()), 3);
    }

    #[test]
    fn generated_chars_counts_escapes_and_multibyte_text_once() {
        let chunk =
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi \"x\" \u00e9t\u00e9 😀"}}]}"#;
        assert_eq!(generated_chars(chunk.as_bytes()), 12);
        // Keys that only look like text keys, and text keys with non-string values, count nothing.
        assert_eq!(
            generated_chars(br#"{"contents":"abc","text":null,"x":"content"}"#),
            0
        );
    }

    #[test]
    fn usage_in_every_shape() {
        let t = |prompt, completion, cached, reasoning| {
            Some(Tokens {
                prompt,
                completion,
                cached,
                reasoning,
                estimated: false,
            })
        };
        let openai = br#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(tokens_in_bytes(openai), t(3, 4, 2, 1));
        let start = br#"{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_read_input_tokens":2,"output_tokens":1}}}"#;
        assert_eq!(tokens_in_bytes(start), t(7, 1, 2, 0));
        let gemini = br#"{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":3,"thoughtsTokenCount":1,"cachedContentTokenCount":1}}"#;
        assert_eq!(tokens_in_bytes(gemini), t(2, 4, 1, 1));
        let responses = br#"{"type":"response.completed","response":{"usage":{"input_tokens":9,"output_tokens":8,"input_tokens_details":{"cached_tokens":4},"output_tokens_details":{"reasoning_tokens":5}}}}"#;
        assert_eq!(tokens_in_bytes(responses), t(9, 8, 4, 5));
        assert_eq!(tokens_in_bytes(br#"{"usage":null}"#), None);
        assert_eq!(tokens_in_bytes(br#"{"choices":[], "usage" : null }"#), None);
        assert_eq!(tokens_in_bytes(br#"{"text":"\"usage"}"#), None);
        assert!(has_usage_value(br#"{"usage": {"prompt_tokens":1}}"#));
        assert!(has_usage_value(
            br#"{"usageMetadata":{"promptTokenCount":2}}"#
        ));
        assert!(!has_usage_value(br#"{"usage":null,"x":1}"#));
        assert_eq!(tokens_in_bytes(br#"{"choices":[]}"#), None);
        // Shapes the typed reading refuses (a fraction, details that are not objects) are read
        // the general way; OpenAI's total comes along.
        let odd = br#"{"usage":{"prompt_tokens":3,"completion_tokens":2.0,"total_tokens":5,"prompt_tokens_details":"n/a"}}"#;
        assert_eq!(usage_in_bytes(odd), Some((t(3, 0, 0, 0).unwrap(), Some(5))));
        assert_eq!(
            usage_in_bytes(openai).map(|(_, total)| total),
            Some(Some(7))
        );
        assert_eq!(usage_in_bytes(br#"{"usage":7}"#), None);
    }

    /// A stream's events read with what earlier ones taught read as each alone would.
    #[test]
    fn an_event_reader_reads_each_event_as_alone() {
        let head = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","#;
        let chunk = |delta: &str| format!(r#"{head}"choices":[{{"index":0,"delta":{delta}}}]}}"#);
        let usage = r#"{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}"#;
        let mut events = vec![
            chunk(r#"{"role":"assistant","content":""}"#),
            chunk(r#"{"content":"Hé"}"#),
            chunk(r#"{"content":"llo \"x\""}"#),
            format!(r#"{head}"choices":[],"usage":{usage}}}"#),
            // The same head, then the usage first: it is not skipped.
            format!(r#"{head}"usage":{usage},"choices":[]}}"#),
            chunk(r#"{"content":"a"}"#),
            // A head that differs (another id), and one with usage in it.
            r#"{"id":"c2","choices":[{"delta":{"content":"bc"}}]}"#.to_string(),
            format!(r#"{{"usage":{usage},"choices":[{{"delta":{{"content":"d"}}}}]}}"#),
            format!(r#"{{"usage":{usage},"choices":[{{"delta":{{"content":"e"}}}}]}}"#),
            r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"hi"}}"#
                .to_string(),
            r#"[DONE]"#.to_string(),
            String::new(),
        ];
        // Heads that change every event: the reader gives up learning and stays right.
        for i in 0..8 {
            events.push(format!(
                r#"{{"id":"x{i}","choices":[{{"delta":{{"content":"{i}"}}}}]}}"#
            ));
        }
        events.push(chunk(r#"{"content":"z"}"#));
        events.push(chunk(r#"{"content":"z"}"#));
        let reader = read_alike(&events);
        assert!(reader.prefix.is_empty() && reader.misses >= EventReader::MAX_MISSES);
        // A stream of the usual chunks is read with what the first one taught.
        let mut reader = EventReader::default();
        for e in &events[..4] {
            reader.read(e.as_bytes(), true);
        }
        assert_eq!(reader.prefix, format!(r#"{head}"choices":"#).as_bytes());
        assert_eq!(reader.misses, 0);

        // The template: text chunks that differ only in their text, among others.
        let text = |t: &str| {
            format!(
                r#"{head}"choices":[{{"index":0,"delta":{{"content":"{t}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )
        };
        let events = [
            chunk(r#"{"role":"assistant","content":""}"#),
            text("Hello"),
            text(" usage"),
            text("usage"),
            text("delta"),
            text(""),
            text("é😀 ok"),
            text(r#"\"usage\":{\"prompt_tokens\":9}"#),
            text(r#"a\nb"#),
            format!(
                r#"{head}"choices":[{{"index":0,"delta":{{"content":"x"}},"logprobs":null,"finish_reason":null}}],"usage":{usage}}}"#
            ),
            format!(
                r#"{head}"choices":[{{"index":0,"delta":{{"content":"x"}},"logprobs":null,"finish_reason":null}},{{"index":1,"delta":{{"content":"yz"}}}}],"usage":null}}"#
            ),
            text("again"),
            chunk("{}"),
            format!(r#"{head}"choices":[],"usage":{usage}}}"#),
        ];
        let reader = read_alike(&events);
        // Learned once (from `Hello`): every later plain text chunk matched it.
        assert_eq!(reader.templates, 1);
        assert!(reader.before.ends_with(br#""delta":{"content":""#));
        assert!(reader.after.starts_with(br#""},"logprobs""#));

        // A member that changes in every chunk (as OpenAI's `obfuscation`): no template
        // matches; after a few the reader stops learning them, and stays right.
        let events: Vec<String> = (0..10)
            .map(|i| {
                format!(
                    r#"{head}"choices":[{{"index":0,"delta":{{"content":"t{i}"}}}}],"obfuscation":"{}"}}"#,
                    "x".repeat(i)
                )
            })
            .collect();
        let reader = read_alike(&events);
        assert_eq!(reader.templates, EventReader::MAX_TEMPLATES);
        assert!(!reader.prefix.is_empty());
    }

    /// Reads `events` as one stream, each as [`generated_chars`] and [`usage_in_bytes`] read
    /// it alone (counting and not).
    fn read_alike(events: &[String]) -> EventReader {
        let mut reader = EventReader::default();
        for (i, e) in events.iter().enumerate() {
            let alone = EventRead {
                chars: generated_chars(e.as_bytes()),
                usage: usage_in_bytes(e.as_bytes()),
            };
            assert_eq!(reader.read(e.as_bytes(), true), alone, "event {i}: {e}");
            assert_eq!(
                reader.read(e.as_bytes(), false).usage,
                alone.usage,
                "event {i}"
            );
        }
        reader
    }

    /// OpenAI's usage object read byte for byte gives what the walk gives, and leaves the
    /// reader where the walk leaves it; any other shape is left to the walk.
    #[test]
    fn the_verbatim_usage_reading_agrees_with_the_walk() {
        let openai = r#"{"prompt_tokens":8,"completion_tokens":8,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":3,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":5,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#;
        let cases: [(&str, bool); 14] = [
            (openai, true),
            (
                r#"{"prompt_tokens":1234567,"completion_tokens":0,"total_tokens":1234567}"#,
                true,
            ),
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"completion_tokens_details":{"reasoning_tokens":9,"audio_tokens":1,"accepted_prediction_tokens":2,"rejected_prediction_tokens":3}}"#,
                true,
            ),
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1,"audio_tokens":0}}"#,
                true,
            ),
            // Whitespace, another order, other members, odd numbers: the walk reads them.
            (
                r#"{ "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3 }"#,
                false,
            ),
            (
                r#"{"completion_tokens":2,"prompt_tokens":1,"total_tokens":3}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":null}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"prompt_tokens_details":{"cached_tokens":1}}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":01,"completion_tokens":2,"total_tokens":3}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":1.5,"completion_tokens":2,"total_tokens":3}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":12345678901234567890,"completion_tokens":2,"total_tokens":3}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":-1,"completion_tokens":2,"total_tokens":3}"#,
                false,
            ),
            (
                r#"{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3,"cost":0.5}"#,
                false,
            ),
            (r#"{"input_tokens":5,"output_tokens":7}"#, false),
        ];
        for (usage, verbatim) in cases {
            // As the usage member of a larger object, so the reader's position after it shows.
            let event = format!(r#"{{"choices":[],"usage":{usage},"x":1}}"#);
            let at = event.find(usage).unwrap();
            assert_eq!(
                openai_usage_verbatim(&event.as_bytes()[at..]).is_some(),
                verbatim,
                "{usage}"
            );
            let mut fast = Reader::at(event.as_bytes(), at);
            let mut walked = Reader::at(event.as_bytes(), at);
            assert_eq!(
                read_usage(&mut fast).ok(),
                read_usage_walked(&mut walked).ok(),
                "{usage}"
            );
            if serde_json::from_str::<Value>(&event).is_ok() {
                assert_eq!(fast.position(), walked.position(), "{usage}");
                assert_eq!(fast.next_key().unwrap(), Some(&b"x"[..]), "{usage}");
            }
        }
    }

    /// The first-content shortcut answers only where the walk (and the general parse) answers
    /// the same, and is taken for the usual text chunk and the usual role chunk.
    #[test]
    fn the_first_content_shortcut_agrees_with_the_walk() {
        let cases = [
            (
                r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}"#,
                Some(true),
            ),
            (
                r#"{"choices":[ { "delta":{"content":"\"quoted\""}}]}"#,
                Some(true),
            ),
            (
                r#"{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","service_tier":"default","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#,
                Some(false),
            ),
            (
                r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
                Some(false),
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}"#,
                Some(false),
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"content":""}}]}"#,
                Some(false),
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant"}}]} "#,
                Some(false),
            ),
            // A second choice, a member after the delta, a finish reason, a tool call, usage,
            // an error: the walk decides.
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}},{"index":1,"delta":{"content":"x"}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"text":"x"}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":"stop"}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":""}}]}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":{"prompt_tokens":1}}"#,
                None,
            ),
            (
                r#"{"error":"quota","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{"content":"x"}}],"error":{"message":"boom"}}"#,
                None,
            ),
            (
                r#"{"meta":{"choices":[{"delta":{"content":"x"}}]},"choices":[]}"#,
                None,
            ),
            (
                r#"{"choices":[{"extra":{"delta":{"content":"x"}},"delta":{}}]}"#,
                None,
            ),
            (
                r#"{"choices":[{"index":0,"delta":{}},{"delta":{"content":"x"}}]}"#,
                None,
            ),
            (
                r#"{"model":"a{b","choices":[{"delta":{"content":"x"}}]}"#,
                None,
            ),
            (r#"{"choices":[],"usage":{"prompt_tokens":1}}"#, None),
        ];
        for (event, shortcut) in cases {
            assert_eq!(openai_shortcut(event.as_bytes()), shortcut, "{event}");
            let walked = fast::openai_str(event).map(|(content, _)| content);
            if shortcut.is_some() {
                assert_eq!(walked, shortcut, "{event}");
            }
            // The general reading (what the walk stands for) agrees with the verdict.
            let verdict = stream_event(Format::OpenAiChat, None, event, &[]);
            match walked {
                Some(true) => assert_eq!(verdict, Verdict::Content, "{event}"),
                Some(false) => assert_eq!(verdict, Verdict::Nothing, "{event}"),
                None => assert!(matches!(verdict, Verdict::Failed(_)), "{event}"),
            }
        }
    }

    /// Reading the usage from where the search found it agrees with parsing the whole event,
    /// also where that shortcut must not be taken (usage nested, not last, or inside text).
    #[test]
    fn the_last_member_shortcut_reads_what_a_full_parse_reads() {
        let u = r#"{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":2}}"#;
        let events = [
            format!(r#"{{"id":"c","choices":[],"usage":{u}}}"#),
            format!(r#" {{ "choices" : [ ] ,"usage" :{u} }} "#),
            format!(r#"{{"usage":{u}}}"#),
            format!(r#"{{"usage":null,"usage":{u}}}"#),
            format!(r#"{{"usage":{u},"usage":{{"prompt_tokens":9}}}}"#),
            format!(r#"{{"usage":{u},"model":"m"}}"#),
            format!(r#"{{"message":{{"usage":{u}}}}}"#),
            format!(r#"{{"message":{{"usage":{{"input_tokens":5}}}},"usage":{u}}}"#),
            format!(r#"{{"response":{{"usage":{u},"x":1}}}}"#),
            format!(r#"{{"text":"\"usage\":{{\"prompt_tokens\":9}}}}","usage":{u}}}"#),
            r#"{"text":"\"usage\":{\"prompt_tokens\":9}}"}"#.to_string(),
            format!(r#"{{"usageMetadata":{{"promptTokenCount":2}},"usage":{u}}}"#),
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}"#
                .to_string(),
            r#"{"usage":{"prompt_tokens":2,"extra":{"usage":{"prompt_tokens":8}}}}"#.to_string(),
        ];
        for event in &events {
            let parsed = serde_json::from_str::<Value>(event).unwrap();
            let want = usage_in_value(&parsed);
            assert_eq!(usage_in_bytes(event.as_bytes()), want, "{event}");
        }
        // The shortcut was taken where it applies (and only there).
        let shortcut = |e: &str| {
            first_usage_value(e.as_bytes(), 0)
                .and_then(|k| last_member_usage(e.as_bytes(), &k))
                .is_some()
        };
        let taken: Vec<bool> = events.iter().map(|e| shortcut(e)).collect();
        assert_eq!(
            taken,
            [
                true, true, true, true, false, false, false, false, false, false, false, false,
                true, true
            ]
        );
    }
}
