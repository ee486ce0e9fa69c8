//! Same-format fast path: validate a JSON object body once, peek at a few
//! top-level fields and patch them in place without re-serializing the rest.
//!
//! [`ObjectView::parse`] runs a single validating pass over the body (UTF-8 +
//! full JSON grammar, the same language `serde_json` accepts) and records the
//! byte spans of the top-level members. Everything else is left as bytes:
//! [`rewrite`] copies untouched members verbatim.

use std::ops::Range;

/// Why a request body was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("request body is empty")]
    Empty,
    #[error("request body is not valid JSON: {detail}")]
    Json { detail: String },
    #[error("request body must be a JSON object")]
    NotObject,
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
}

/// One top-level member of a JSON object: byte spans into the original body.
#[derive(Debug, Clone)]
pub struct Member {
    /// The key with JSON escapes resolved (lone surrogates become U+FFFD).
    pub key: String,
    /// The key including its quotes.
    pub key_span: Range<usize>,
    /// The value, without surrounding whitespace.
    pub value_span: Range<usize>,
}

/// Validated top-level view of a JSON object body.
#[derive(Debug, Clone)]
pub struct ObjectView {
    /// Members in body order; duplicates are kept (lookups use the last one).
    pub members: Vec<Member>,
    /// Offset of the object's closing `}`.
    pub close_brace: usize,
}

impl ObjectView {
    /// Validates `body` (UTF-8, JSON syntax, top-level object) and records the
    /// spans of its top-level members. A body of only whitespace is `Empty`.
    pub fn parse(body: &[u8]) -> Result<ObjectView, BodyError> {
        let text = std::str::from_utf8(body).map_err(|e| BodyError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut sc = Scanner { b: body, pos: 0 };
        sc.skip_ws();
        if sc.pos == body.len() {
            return Err(BodyError::Empty);
        }
        let result = if sc.peek() == Some(b'{') {
            sc.top_object(text).map(Some)
        } else {
            sc.value().map(|()| None)
        };
        let view = match result {
            Ok(view) => {
                sc.skip_ws();
                if sc.pos != body.len() {
                    return Err(json_error(body, sc.pos));
                }
                view
            }
            Err(Fail) => return Err(json_error(body, sc.pos)),
        };
        view.ok_or(BodyError::NotObject)
    }

    /// The member for `key`; with duplicate keys the last one wins, like serde.
    pub fn get(&self, key: &str) -> Option<&Member> {
        self.members.iter().rev().find(|m| m.key == key)
    }

    /// The raw JSON bytes of the value of `key`.
    pub fn raw<'b>(&self, body: &'b [u8], key: &str) -> Option<&'b [u8]> {
        self.get(key).and_then(|m| body.get(m.value_span.clone()))
    }

    /// The unescaped string value of `key`; absent or `null` is `Ok(None)`.
    pub fn str_value(&self, body: &[u8], key: &'static str) -> Result<Option<String>, BodyError> {
        match self.raw(body, key) {
            None | Some(b"null") => Ok(None),
            Some(raw) => match string_contents(raw) {
                Some(inner) => Ok(Some(unescape(inner))),
                None => Err(BodyError::WrongType {
                    field: key,
                    expected: "a string",
                }),
            },
        }
    }

    /// The boolean value of `key`; absent or `null` is `Ok(None)`.
    pub fn bool_value(&self, body: &[u8], key: &'static str) -> Result<Option<bool>, BodyError> {
        match self.raw(body, key) {
            None | Some(b"null") => Ok(None),
            Some(b"true") => Ok(Some(true)),
            Some(b"false") => Ok(Some(false)),
            Some(_) => Err(BodyError::WrongType {
                field: key,
                expected: "a boolean",
            }),
        }
    }
}

/// One change to a top-level member, for [`rewrite`].
#[derive(Debug, Clone, Copy)]
pub enum Edit<'a> {
    /// Set `key` to `raw_json`, which must be one valid JSON value.
    Set {
        key: &'a str,
        raw_json: &'a [u8],
    },
    Remove {
        key: &'a str,
    },
}

impl Edit<'_> {
    fn key(&self) -> &str {
        match self {
            Edit::Set { key, .. } | Edit::Remove { key } => key,
        }
    }
}

/// Applies edits to top-level members, copying every other byte unchanged.
///
/// `view` must come from `ObjectView::parse(body)`. `Set` replaces the value
/// of an existing key in place or appends `,"key":raw` after the last member;
/// when a key occurs several times, `Set` keeps only the last occurrence and
/// `Remove` drops all of them, so no parser can see the old value. When
/// several edits name the same key, the last one wins.
pub fn rewrite(body: &[u8], view: &ObjectView, edits: &[Edit]) -> Vec<u8> {
    let effective = |key: &str| edits.iter().rev().find(|e| e.key() == key);
    let added: usize = edits
        .iter()
        .map(|e| match e {
            Edit::Set { key, raw_json } => key.len() + raw_json.len() + 8,
            Edit::Remove { .. } => 0,
        })
        .sum();
    let mut out = Vec::with_capacity(body.len() + added);
    let members = &view.members;
    let first_start = members
        .first()
        .map_or(view.close_brace, |m| m.key_span.start);
    out.extend_from_slice(span(body, 0..first_start));

    let mut emitted = false;
    for (i, m) in members.iter().enumerate() {
        let value = match effective(&m.key) {
            None => span(body, m.value_span.clone()),
            Some(Edit::Remove { .. }) => continue,
            Some(Edit::Set { raw_json, .. }) => {
                if members[i + 1..].iter().any(|later| later.key == m.key) {
                    continue;
                }
                raw_json
            }
        };
        if emitted && let Some(prev) = i.checked_sub(1).and_then(|p| members.get(p)) {
            // The gap before this member keeps its original comma and indentation.
            out.extend_from_slice(span(body, prev.value_span.end..m.key_span.start));
        }
        out.extend_from_slice(span(body, m.key_span.start..m.value_span.start));
        out.extend_from_slice(value);
        emitted = true;
    }

    for (j, edit) in edits.iter().enumerate() {
        let Edit::Set { key, raw_json } = edit else {
            continue;
        };
        let superseded = edits[j + 1..].iter().any(|e| e.key() == *key);
        if superseded || view.get(key).is_some() {
            continue;
        }
        if emitted {
            out.push(b',');
        }
        write_json_string(&mut out, key);
        out.push(b':');
        out.extend_from_slice(raw_json);
        emitted = true;
    }

    let suffix_start = members
        .last()
        .map_or(view.close_brace, |m| m.value_span.end);
    out.extend_from_slice(span(body, suffix_start..body.len()));
    out
}

/// What routing needs from a chat/embeddings/images request.
#[derive(Debug, Clone)]
pub struct RequestPeek {
    pub view: ObjectView,
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`, when present and not null.
    pub include_usage: Option<bool>,
}

/// Validates a request body and extracts `model`, `stream` and
/// `stream_options.include_usage`. A `null` model counts as missing.
pub fn peek_request(body: &[u8]) -> Result<RequestPeek, BodyError> {
    let view = ObjectView::parse(body)?;
    let model = view
        .str_value(body, "model")?
        .ok_or(BodyError::Missing("model"))?;
    let stream = view.bool_value(body, "stream")?.unwrap_or(false);
    let include_usage = match view.raw(body, "stream_options") {
        None | Some(b"null") => None,
        Some(raw) if raw.first() == Some(&b'{') => {
            // Already validated, so this only re-walks a few bytes.
            let opts = ObjectView::parse(raw)?;
            opts.bool_value(raw, "include_usage")
                .map_err(|_| BodyError::WrongType {
                    field: "stream_options.include_usage",
                    expected: "a boolean",
                })?
        }
        Some(_) => {
            return Err(BodyError::WrongType {
                field: "stream_options",
                expected: "an object",
            });
        }
    };
    Ok(RequestPeek {
        view,
        model,
        stream,
        include_usage,
    })
}

/// JSON-encodes a string (with quotes), e.g. for `Edit::Set { raw_json }`.
pub fn json_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_json_string(&mut out, s);
    out
}

/// Appends `s` as a JSON string literal, escaping like `serde_json`.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Bounds-checked slice: a view that does not match its body yields empty
/// pieces instead of a panic (release builds abort on panic).
fn span(body: &[u8], r: Range<usize>) -> &[u8] {
    debug_assert!(
        r.start <= r.end && r.end <= body.len(),
        "view does not match body"
    );
    body.get(r).unwrap_or_default()
}

/// The text between the quotes of a validated JSON string literal.
fn string_contents(raw: &[u8]) -> Option<&str> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    std::str::from_utf8(inner).ok()
}

/// Resolves the escapes of validated JSON string contents.
pub(crate) fn unescape(inner: &str) -> String {
    let Some(first) = memchr::memchr(b'\\', inner.as_bytes()) else {
        return inner.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    out.push_str(&inner[..first]);
    let mut rest = &inner[first..];
    loop {
        // `rest` starts at a backslash here.
        let b = rest.as_bytes();
        let consumed = match b.get(1) {
            Some(b'n') => push(&mut out, '\n'),
            Some(b't') => push(&mut out, '\t'),
            Some(b'r') => push(&mut out, '\r'),
            Some(b'b') => push(&mut out, '\u{8}'),
            Some(b'f') => push(&mut out, '\u{c}'),
            Some(b'u') => {
                let hi = hex4(b.get(2..6));
                match hi {
                    Some(hi @ 0xD800..=0xDBFF) => {
                        let lo = match b.get(6..8) {
                            Some(b"\\u") => hex4(b.get(8..12)),
                            _ => None,
                        };
                        match lo {
                            Some(lo @ 0xDC00..=0xDFFF) => {
                                let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                                12
                            }
                            _ => push(&mut out, '\u{FFFD}') + 4,
                        }
                    }
                    Some(cp) => push(&mut out, char::from_u32(cp).unwrap_or('\u{FFFD}')) + 4,
                    None => push(&mut out, '\u{FFFD}'),
                }
            }
            // `"`, `\` and `/` stand for themselves.
            Some(&c) => push(&mut out, char::from(c)),
            None => 1,
        };
        rest = rest.get(consumed..).unwrap_or_default();
        match memchr::memchr(b'\\', rest.as_bytes()) {
            Some(next) => {
                out.push_str(&rest[..next]);
                rest = &rest[next..];
            }
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// Pushes `c` and returns the length of a two-byte escape.
fn push(out: &mut String, c: char) -> usize {
    out.push(c);
    2
}

fn hex4(digits: Option<&[u8]>) -> Option<u32> {
    let digits = digits?;
    let mut v = 0u32;
    for &d in digits {
        v = v * 16 + char::from(d).to_digit(16)?;
    }
    Some(v)
}

/// Builds the error for invalid JSON. The validator only says *that* the body
/// is invalid; serde_json (cold path) supplies its usual message with line
/// and column.
fn json_error(body: &[u8], fail_pos: usize) -> BodyError {
    let detail = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        Err(e) => e.to_string(),
        Ok(_) => {
            let (line, column) = line_column(body, fail_pos);
            format!("unexpected input at line {line} column {column}")
        }
    };
    BodyError::Json { detail }
}

fn line_column(body: &[u8], pos: usize) -> (usize, usize) {
    let before = body.get(..pos).unwrap_or(body);
    let line = 1 + memchr::memchr_iter(b'\n', before).count();
    let line_start = memchr::memrchr(b'\n', before).map_or(0, |p| p + 1);
    (line, pos - line_start + 1)
}

/// Marker for a syntax error at `Scanner::pos`.
pub(crate) struct Fail;

/// Validating JSON scanner over bytes already known to be UTF-8.
pub(crate) struct Scanner<'a> {
    pub(crate) b: &'a [u8],
    pub(crate) pos: usize,
}

impl Scanner<'_> {
    #[inline]
    pub(crate) fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    pub(crate) fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    pub(crate) fn expect(&mut self, byte: u8) -> Result<(), Fail> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Fail)
        }
    }

    /// The top-level object, recording member spans. `pos` is at `{`.
    fn top_object(&mut self, text: &str) -> Result<ObjectView, Fail> {
        self.pos += 1;
        let mut members = Vec::with_capacity(16);
        self.skip_ws();
        if self.peek() == Some(b'}') {
            let close_brace = self.pos;
            self.pos += 1;
            return Ok(ObjectView {
                members,
                close_brace,
            });
        }
        loop {
            let key_start = self.pos;
            if self.peek() != Some(b'"') {
                return Err(Fail);
            }
            let escaped = self.string()?;
            let key_span = key_start..self.pos;
            let inner = text.get(key_start + 1..self.pos - 1).unwrap_or_default();
            let key = if escaped {
                unescape(inner)
            } else {
                inner.to_owned()
            };
            self.skip_ws();
            self.expect(b':')?;
            self.skip_ws();
            let value_start = self.pos;
            self.value()?;
            members.push(Member {
                key,
                key_span,
                value_span: value_start..self.pos,
            });
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    let close_brace = self.pos;
                    self.pos += 1;
                    return Ok(ObjectView {
                        members,
                        close_brace,
                    });
                }
                _ => return Err(Fail),
            }
        }
    }

    /// Any JSON value, iteratively so deep nesting cannot overflow the stack.
    pub(crate) fn value(&mut self) -> Result<(), Fail> {
        let mut stack = Stack::default();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'{') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack.push(true);
                        self.member_key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => return Err(Fail),
            }
            // A value is complete: close containers until one wants more.
            loop {
                let Some(in_object) = stack.top() else {
                    return Ok(());
                };
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        if in_object {
                            self.skip_ws();
                            self.member_key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    Some(b']') if !in_object => {
                        self.pos += 1;
                        stack.pop();
                    }
                    _ => return Err(Fail),
                }
            }
        }
    }

    /// `"key"` followed by `:`; `pos` is at the expected opening quote.
    #[inline(always)]
    fn member_key(&mut self) -> Result<(), Fail> {
        if self.peek() != Some(b'"') {
            return Err(Fail);
        }
        self.string()?;
        self.skip_ws();
        self.expect(b':')
    }

    /// A string literal at `pos`; returns whether it contains escapes.
    #[inline(always)]
    pub(crate) fn string(&mut self) -> Result<bool, Fail> {
        // Most strings hold no escape: one word scan to the closing quote, inlined into the
        // caller; the rest of the grammar out of line.
        let end = skip_plain(self.b, self.pos + 1);
        if self.b.get(end) == Some(&b'"') {
            self.pos = end + 1;
            return Ok(false);
        }
        self.pos = end;
        self.string_rest()
    }

    /// [`Scanner::string`] from an escape (or an error) at `pos`.
    #[cold]
    #[inline(never)]
    fn string_rest(&mut self) -> Result<bool, Fail> {
        let mut escaped = false;
        loop {
            self.pos = skip_plain(self.b, self.pos);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {}
                // A control character, or the end of input.
                _ => return Err(Fail),
            }
            escaped = true;
            match self.b.get(self.pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                Some(b'u') => {
                    let hex = self.b.get(self.pos + 2..self.pos + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return Err(Fail);
                    }
                    self.pos += 6;
                }
                _ => return Err(Fail),
            }
        }
    }

    pub(crate) fn literal(&mut self, lit: &[u8]) -> Result<(), Fail> {
        if self.b.get(self.pos..self.pos + lit.len()) == Some(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            Err(Fail)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    pub(crate) fn number(&mut self) -> Result<(), Fail> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(Fail);
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Fail),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), Fail> {
        let start = self.pos;
        self.digits();
        if self.pos == start { Err(Fail) } else { Ok(()) }
    }
}

/// The first offset at or after `pos` holding `"`, `\\` or a control
/// character (or `b.len()`). Eight bytes at a time, as serde_json does.
#[inline(always)]
fn skip_plain(b: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    while let Some(word) = b.get(pos..pos + 8) {
        let Ok(word) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let w = u64::from_le_bytes(word);
        // `"` ^ 2 is 0x20 and control bytes stay below 0x20: one "byte below 0x21" test
        // finds both; a second finds `\\`. The lowest flagged byte is exact.
        let quote_or_control = w ^ (ONES * 2);
        let backslash = w ^ (ONES * u64::from(b'\\'));
        let hits = (quote_or_control.wrapping_sub(ONES * 0x21) & !quote_or_control)
            | (backslash.wrapping_sub(ONES) & !backslash);
        let hits = hits & HIGH;
        if hits != 0 {
            return pos + (hits.trailing_zeros() / 8) as usize;
        }
        pos += 8;
    }
    while let Some(&c) = b.get(pos) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return pos;
        }
        pos += 1;
    }
    pos
}

/// Container stack: one bit per level (1 = object), spilling to a Vec only
/// for unusually deep documents.
#[derive(Default)]
struct Stack {
    bits: u64,
    depth: usize,
    spill: Vec<u64>,
}

impl Stack {
    #[inline]
    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.spill.push(self.bits);
            self.bits = 0;
        }
        let bit = self.depth % 64;
        self.bits = (self.bits & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    #[inline]
    fn top(&self) -> Option<bool> {
        let top = self.depth.checked_sub(1)?;
        Some(self.bits >> (top % 64) & 1 == 1)
    }

    #[inline]
    fn pop(&mut self) {
        if self.depth == 0 {
            return;
        }
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.bits = self.spill.pop().unwrap_or(0);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn skip_plain_matches_scalar(
            bytes in prop::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(0x7f), Just(0x80), Just(b'!')],
                0..80,
            ),
            start in any::<prop::sample::Index>(),
        ) {
            let pos = start.index(bytes.len() + 1);
            let want = bytes[pos..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                .map_or(bytes.len(), |i| pos + i);
            prop_assert_eq!(skip_plain(&bytes, pos), want);
        }
    }

    #[test]
    fn stack_spills_and_restores() {
        let mut s = Stack::default();
        let pattern = |i: usize| i.is_multiple_of(3) || i.is_multiple_of(7);
        for i in 0..300 {
            s.push(pattern(i));
            assert_eq!(s.top(), Some(pattern(i)));
        }
        for i in (0..300).rev() {
            assert_eq!(s.top(), Some(pattern(i)), "level {i}");
            s.pop();
        }
        assert_eq!(s.top(), None);
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column(b"ab\ncd", 4), (2, 2));
        assert_eq!(line_column(b"ab", 0), (1, 1));
    }
}
