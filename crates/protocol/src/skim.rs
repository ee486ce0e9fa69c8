//! A pull reader over JSON bytes for answers the gateway only inspects: walk an object's keys,
//! read the few values it needs (a number, whether a string or array is empty) and skip the
//! rest without building them. It validates what it passes over with the same grammar as
//! [`crate::body::ObjectView`] (the language `serde_json` accepts), so a body it accepts is
//! one `serde_json` accepts (save a number too large for an `f64`, `1e400`, which it skips as
//! the grammar allows and `serde_json` refuses), and anything it cannot read plainly
//! (malformed JSON, a key written with escapes) is [`Malformed`]: the caller falls back to a
//! full parse.
//!
//! Measured with `cargo bench -p llmux --bench stream_events`: the OpenAI content check and the
//! usage read are several times cheaper than deserializing the same bytes with `serde_json`.

use crate::body::Scanner;

/// The bytes are not JSON this reader can follow; parse them the general way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// Forward-only reader. Objects and arrays are entered with [`Reader::begin_object`] /
/// [`Reader::begin_array`] and walked with [`Reader::next_key`] / [`Reader::next_item`]; every
/// member value and array item must then be consumed (read, entered and walked to its end,
/// or skipped) before the next key or item is asked for.
///
/// Its steps are inlined into the walks that use them, so a walk keeps its position in a
/// register instead of passing it through a call per key (the whole-answer check 7.6k -> 6.1k
/// instructions).
pub struct Reader<'a> {
    sc: Scanner<'a>,
    /// Just entered a container: the next key/item needs no separating comma.
    fresh: bool,
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, which must be UTF-8.
    pub fn new(bytes: &'a [u8]) -> Result<Self, Malformed> {
        std::str::from_utf8(bytes).map_err(|_| Malformed)?;
        Ok(Self::of_str(bytes))
    }

    /// A reader over text already known to be UTF-8 (no second check).
    pub fn new_str(text: &'a str) -> Self {
        Self::of_str(text.as_bytes())
    }

    /// A reader at offset `pos` of `bytes`, for the one value a search found there. Nothing
    /// before `pos` is looked at, and no UTF-8 check is made: what it reads (numbers, keys)
    /// does not depend on the bytes of the strings it skips.
    pub fn at(bytes: &'a [u8], pos: usize) -> Self {
        Reader {
            sc: Scanner { b: bytes, pos },
            fresh: false,
        }
    }

    /// The offset the reader has reached.
    pub fn position(&self) -> usize {
        self.sc.pos
    }

    /// The bytes from the next value on (whitespace skipped), for a caller that recognises a
    /// value of a shape it knows by comparing bytes; [`Reader::consume`] then moves past it.
    #[inline(always)]
    pub fn rest(&mut self) -> &'a [u8] {
        self.sc.skip_ws();
        self.sc.b.get(self.sc.pos..).unwrap_or_default()
    }

    /// Moves past the first `n` bytes of [`Reader::rest`], which the caller read as one whole
    /// value.
    #[inline(always)]
    pub fn consume(&mut self, n: usize) {
        self.sc.pos += n;
        self.fresh = false;
    }

    fn of_str(bytes: &'a [u8]) -> Self {
        Reader {
            sc: Scanner { b: bytes, pos: 0 },
            fresh: false,
        }
    }

    /// The first byte of the next value (after whitespace), without consuming it.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        self.sc.skip_ws();
        self.sc.peek()
    }

    /// Enters the object at the reader.
    #[inline(always)]
    pub fn begin_object(&mut self) -> Result<(), Malformed> {
        self.begin(b'{')
    }

    /// Enters the value at the reader when it is an object (`true`); skips it otherwise
    /// (`false`), for members whose other shapes carry nothing to read.
    #[inline(always)]
    pub fn enter_object(&mut self) -> Result<bool, Malformed> {
        if self.peek() == Some(b'{') {
            self.begin_object().map(|()| true)
        } else {
            self.skip().map(|()| false)
        }
    }

    /// Enters the array at the reader.
    #[inline(always)]
    pub fn begin_array(&mut self) -> Result<(), Malformed> {
        self.begin(b'[')
    }

    #[inline(always)]
    fn begin(&mut self, open: u8) -> Result<(), Malformed> {
        self.sc.skip_ws();
        self.sc.expect(open).map_err(|_| Malformed)?;
        self.fresh = true;
        Ok(())
    }

    /// The next member's key, with the reader left at its value; `None` when the object
    /// closes. A key holding escapes is `Malformed` (it could spell any name).
    #[inline(always)]
    pub fn next_key(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        if !self.more(b'}')? {
            return Ok(None);
        }
        let start = self.sc.pos;
        if self.sc.peek() != Some(b'"') || self.sc.string().map_err(|_| Malformed)? {
            return Err(Malformed);
        }
        let key = self.sc.b.get(start + 1..self.sc.pos - 1).ok_or(Malformed)?;
        self.sc.skip_ws();
        self.sc.expect(b':').map_err(|_| Malformed)?;
        Ok(Some(key))
    }

    /// Whether another item follows (the reader is at it), or the array closed.
    #[inline(always)]
    pub fn next_item(&mut self) -> Result<bool, Malformed> {
        self.more(b']')
    }

    /// Past the separator before the next entry of the current container: `false` when
    /// `close` ends it instead.
    #[inline(always)]
    fn more(&mut self, close: u8) -> Result<bool, Malformed> {
        self.sc.skip_ws();
        let fresh = std::mem::replace(&mut self.fresh, false);
        match self.sc.peek() {
            Some(c) if c == close => {
                self.sc.pos += 1;
                Ok(false)
            }
            Some(b',') if !fresh => {
                self.sc.pos += 1;
                self.sc.skip_ws();
                Ok(true)
            }
            Some(_) if fresh => Ok(true),
            _ => Err(Malformed),
        }
    }

    /// Skips the value at the reader, checking its syntax.
    #[inline(always)]
    pub fn skip(&mut self) -> Result<(), Malformed> {
        self.raw().map(|_| ())
    }

    /// The value at the reader as raw JSON (checked), consumed.
    #[inline(always)]
    pub fn raw(&mut self) -> Result<&'a [u8], Malformed> {
        self.sc.skip_ws();
        let start = self.sc.pos;
        // Scalars directly; containers through the general (iterative) walk.
        let read = match self.sc.peek() {
            Some(b'"') => self.sc.string().map(|_| ()),
            Some(b'1'..=b'9') => {
                // Counts, indexes, timestamps: plain digits, read inline; a fraction or an
                // exponent goes on through the general grammar.
                let b = self.sc.b;
                let mut i = start + 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                self.sc.pos = i;
                if matches!(b.get(i), Some(b'.' | b'e' | b'E')) {
                    self.sc.pos = start;
                    self.sc.number()
                } else {
                    Ok(())
                }
            }
            Some(b'-' | b'0'..=b'9') => self.sc.number(),
            Some(b'n') => self.sc.literal(b"null"),
            _ => self.sc.value(),
        };
        read.map_err(|_| Malformed)?;
        self.fresh = false;
        self.sc.b.get(start..self.sc.pos).ok_or(Malformed)
    }

    /// A non-negative integer value; anything else (`null`, a fraction, a string) is `None`,
    /// as `serde_json::Value::as_u64` reads it.
    #[inline(always)]
    pub fn u64(&mut self) -> Result<Option<u64>, Malformed> {
        // Usage counts are plain integers: read their digits in one pass (at most 19 cannot
        // overflow; no leading zero; no fraction or exponent after them).
        self.sc.skip_ws();
        if let Some((n, end)) = plain_u64(self.sc.b, self.sc.pos)
            && !matches!(self.sc.b.get(end), Some(b'.' | b'e' | b'E'))
        {
            self.sc.pos = end;
            self.fresh = false;
            return Ok(Some(n));
        }
        let raw = self.raw()?;
        // Digits only (no sign, fraction or exponent), without overflow.
        if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
            return Ok(None);
        }
        Ok(raw.iter().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        }))
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<(), Malformed> {
        self.sc.skip_ws();
        if self.sc.pos == self.sc.b.len() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

/// The plain integer at `at` of `b` (1–19 digits, no leading zero: it cannot overflow) and
/// where its digits end; `None` for anything else. The caller checks what may follow it (a
/// fraction or exponent makes it no integer).
#[inline(always)]
pub fn plain_u64(b: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut i = at;
    let mut n = 0u64;
    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
        n = n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    let digits = i - at;
    ((1..=19).contains(&digits) && (digits == 1 || b.get(at) != Some(&b'0'))).then_some((n, i))
}

/// A raw value that holds something: a non-empty string, or an array with an item.
pub fn filled(raw: &[u8]) -> bool {
    match raw.first() {
        Some(b'"') => raw.len() > 2,
        Some(b'[') => raw.get(1..).unwrap_or_default().trim_ascii_start() != b"]",
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every member of the top-level object as (key, raw value), or `Malformed`.
    fn members(json: &str) -> Result<Vec<(String, String)>, Malformed> {
        let mut r = Reader::new(json.as_bytes())?;
        r.begin_object()?;
        let mut out = Vec::new();
        while let Some(k) = r.next_key()? {
            let v = r.raw()?;
            out.push((
                String::from_utf8(k.to_vec()).unwrap(),
                String::from_utf8(v.to_vec()).unwrap(),
            ));
        }
        r.end()?;
        Ok(out)
    }

    /// Walks any value entering every container, returning the number of scalars seen.
    fn walk(r: &mut Reader<'_>) -> Result<usize, Malformed> {
        match r.peek() {
            Some(b'{') => {
                r.begin_object()?;
                let mut n = 0;
                while r.next_key()?.is_some() {
                    n += walk(r)?;
                }
                Ok(n)
            }
            Some(b'[') => {
                r.begin_array()?;
                let mut n = 0;
                while r.next_item()? {
                    n += walk(r)?;
                }
                Ok(n)
            }
            _ => r.skip().map(|()| 1),
        }
    }

    fn walk_all(json: &str) -> Result<usize, Malformed> {
        let mut r = Reader::new(json.as_bytes())?;
        let n = walk(&mut r)?;
        r.end()?;
        Ok(n)
    }

    #[test]
    fn reads_members_and_skips_values() {
        let got = members(r#" { "a" : 1 , "b":[1,{"x":"}"}], "c":"q\"uote" ,"d":null} "#).unwrap();
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c", "d"]);
        assert_eq!(got[1].1, r#"[1,{"x":"}"}]"#);
        assert_eq!(got[2].1, r#""q\"uote""#);
        assert_eq!(members("{}").unwrap(), vec![]);
    }

    #[test]
    fn rejects_what_serde_rejects() {
        for bad in [
            "",
            "{",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{,"a":1}"#,
            r#"{"a":01}"#,
            r#"{"a":tru}"#,
            r#"{"a":"unterminated}"#,
            r#"{"a":1}x"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[,1]}"#,
        ] {
            assert_eq!(members(bad), Err(Malformed), "{bad:?}");
            assert_eq!(walk_all(bad), Err(Malformed), "{bad:?}");
        }
        // Not UTF-8.
        assert!(Reader::new(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn escaped_keys_are_not_read_plainly() {
        assert_eq!(members(r#"{"\u0075sage":1}"#), Err(Malformed));
    }

    #[test]
    fn numbers_read_as_serde_value_as_u64() {
        let mut r = Reader::new(br#"[12, 1.5, -3, null, "7", 18446744073709551615, 1e2]"#).unwrap();
        r.begin_array().unwrap();
        let mut got = Vec::new();
        while r.next_item().unwrap() {
            got.push(r.u64().unwrap());
        }
        assert_eq!(
            got,
            [Some(12), None, None, None, None, Some(u64::MAX), None]
        );
        // The one-pass digit read and the general path agree at their borders.
        let one = |json: &str| {
            let mut r = Reader::new(json.as_bytes()).unwrap();
            let n = r.u64();
            n.and_then(|n| r.end().map(|()| n))
        };
        assert_eq!(one("0"), Ok(Some(0)));
        assert_eq!(one(" 7 "), Ok(Some(7)));
        assert_eq!(
            one("9999999999999999999"),
            Ok(Some(9_999_999_999_999_999_999))
        );
        assert_eq!(one("18446744073709551616"), Ok(None));
        assert_eq!(one("100000000000000000000"), Ok(None));
        assert_eq!(one("0.5"), Ok(None));
        assert_eq!(one("12E3"), Ok(None));
        assert_eq!(one("3e-1"), Ok(None));
        assert_eq!(one("01"), Err(Malformed));
        assert_eq!(one("1."), Err(Malformed));
        assert_eq!(one("-0"), Ok(None));
    }

    #[test]
    fn filled_values() {
        assert!(filled(br#""x""#));
        assert!(!filled(br#""""#));
        assert!(filled(b"[1]"));
        assert!(!filled(b"[ ]"));
        assert!(!filled(b"null"));
        assert!(!filled(b"{\"a\":1}"));
    }

    /// Small JSON-ish texts, valid or not.
    fn jsonish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("{"),
                Just("}"),
                Just("["),
                Just("]"),
                Just(","),
                Just(":"),
                Just("\"k\""),
                Just("\"a\\\"b\""),
                Just("1"),
                Just("-2.5e3"),
                Just("25"),
                Just(".5"),
                Just("e2"),
                Just("null"),
                Just("true"),
                Just(" "),
                Just("\"\\u00e9\""),
            ],
            0..24,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// The reader accepts exactly what serde_json accepts, and sees the same scalars.
        #[test]
        fn agrees_with_serde(text in jsonish()) {
            let serde = serde_json::from_str::<serde_json::Value>(&text);
            // Keys with escapes are the reader's one deliberate refusal.
            prop_assume!(!text.contains("\"a\\\"b\":") && !text.contains("\"\\u00e9\":"));
            match (walk_all(&text), serde) {
                (Ok(n), Ok(v)) => {
                    fn scalars(v: &serde_json::Value) -> usize {
                        match v {
                            serde_json::Value::Array(a) => a.iter().map(scalars).sum(),
                            serde_json::Value::Object(o) => o.values().map(scalars).sum(),
                            _ => 1,
                        }
                    }
                    // Duplicate keys collapse in a serde map: the reader sees at least as many.
                    prop_assert!(n >= scalars(&v), "{text:?}");
                }
                (Err(_), Err(_)) => {}
                // The grammar's numbers have no size limit; serde_json's floats do.
                (Ok(_), Err(e)) if e.to_string().starts_with("number out of range") => {}
                (ours, theirs) => prop_assert!(false, "{text:?}: reader {ours:?}, serde {theirs:?}"),
            }
        }
    }
}
