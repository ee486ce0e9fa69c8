//! Small deterministic helpers shared by the endpoint handlers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// JSON with object keys in the order given (the workspace's `serde_json`
/// sorts `Value` maps), for bodies that must match a provider byte for byte.
#[derive(Clone, Debug)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
    /// Request data echoed back as sent.
    Val(serde_json::Value),
}

impl Json {
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Two-space indentation, as Google's APIs answer.
    pub fn to_vec_pretty(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Google's one-line stream framing: `{"a": 1,"b": [2]}` (a space after
    /// each colon, none after commas), with `<`, `>` and `&` escaped.
    pub fn to_vec_google_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, GoogleLine);
        if self.serialize(&mut ser).is_err() {
            out.clear();
        }
        html_escape(out)
    }

    /// Google's pretty printing: two spaces, `<`, `>` and `&` escaped.
    pub fn to_vec_google_pretty(&self) -> Vec<u8> {
        html_escape(self.to_vec_pretty())
    }
}

/// Formatter for [`Json::to_vec_google_line`].
struct GoogleLine;

impl serde_json::ser::Formatter for GoogleLine {
    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// Google's JSON escapes HTML-significant characters as `\u003c` & co. They
/// only ever occur inside strings, so a byte-level rewrite is exact.
fn html_escape(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&')) {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + 32);
    for b in bytes {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            other => out.push(other),
        }
    }
    out
}

/// `obj!{"a": x, "b": y}`: an ordered [`Json`] object.
macro_rules! obj {
    ($($k:literal : $v:expr),* $(,)?) => {
        $crate::util::Json::Obj(vec![$(($k, $crate::util::Json::from($v))),*])
    };
}
pub(crate) use obj;

impl From<&str> for Json {
    fn from(s: &str) -> Json {
        Json::Str(s.to_owned())
    }
}

impl From<String> for Json {
    fn from(s: String) -> Json {
        Json::Str(s)
    }
}

impl From<u64> for Json {
    fn from(n: u64) -> Json {
        Json::Num(n)
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

impl From<serde_json::Value> for Json {
    fn from(v: serde_json::Value) -> Json {
        Json::Val(v)
    }
}

impl From<Option<String>> for Json {
    fn from(v: Option<String>) -> Json {
        v.map_or(Json::Null, Json::Str)
    }
}

impl From<Vec<Json>> for Json {
    fn from(items: Vec<Json>) -> Json {
        Json::Arr(items)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Num(n) => s.serialize_u64(*n),
            Json::Str(v) => s.serialize_str(v),
            Json::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Json::Val(v) => v.serialize(s),
        }
    }
}

/// One step of SplitMix64: cheap, good enough for ids and fake vectors.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, used so that the same input text always yields the same embedding.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

const ALNUM: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `prefix` followed by `len` alphanumeric characters derived from `seed`.
pub(crate) fn alnum_id(prefix: &str, seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + len);
    out.push_str(prefix);
    let mut state = seed;
    let mut bits = 0u64;
    let mut avail = 0;
    for _ in 0..len {
        if avail == 0 {
            bits = splitmix64(&mut state);
            // 62^10 < 2^64, so ten digits per draw stay unbiased enough for ids.
            avail = 10;
        }
        out.push(char::from(ALNUM[(bits % 62) as usize]));
        bits /= 62;
        avail -= 1;
    }
    out
}

/// 32 lowercase hex characters derived from `seed`.
pub(crate) fn hex_id(prefix: &str, seed: u64) -> String {
    hex_chars(prefix, seed, 32)
}

/// `prefix` followed by `len` lowercase hex characters derived from `seed`.
pub(crate) fn hex_chars(prefix: &str, seed: u64, len: usize) -> String {
    let mut out = String::with_capacity(prefix.len() + len + 16);
    out.push_str(prefix);
    let mut state = seed;
    while out.len() < prefix.len() + len {
        out.push_str(&format!("{:016x}", splitmix64(&mut state)));
    }
    out.truncate(prefix.len() + len);
    out
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Formats a duration the way Go's `time.Duration.String()` does (OpenAI's
/// `x-ratelimit-reset-*` headers use it), at millisecond precision:
/// `0s`, `17ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`.
pub(crate) fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let hours = ms / 3_600_000;
    let minutes = (ms / 60_000) % 60;
    let sec_ms = ms % 60_000;
    let secs = sec_ms / 1000;
    let frac = sec_ms % 1000;
    let mut s = if frac == 0 {
        format!("{secs}s")
    } else {
        let f = format!("{frac:03}");
        format!("{secs}.{}s", f.trim_end_matches('0'))
    };
    if hours > 0 {
        s = format!("{hours}h{minutes}m{s}");
    } else if minutes > 0 {
        s = format!("{minutes}m{s}");
    }
    s
}

/// Rounds a duration up to whole milliseconds so that "try again in" never reads 0.
pub(crate) fn ceil_ms(d: Duration) -> Duration {
    let ms = d.as_micros().div_ceil(1000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard, padded base64 (RFC 4648), as OpenAI uses for `b64_json` and
/// `encoding_format: "base64"`.
pub(crate) fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = u32::from(chunk[0]);
        let b1 = chunk.get(1).copied().map_or(0, u32::from);
        let b2 = chunk.get(2).copied().map_or(0, u32::from);
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(char::from(B64[(n >> 18) as usize & 63]));
        out.push(char::from(B64[(n >> 12) as usize & 63]));
        if chunk.len() > 1 {
            out.push(char::from(B64[(n >> 6) as usize & 63]));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(char::from(B64[n as usize & 63]));
        } else {
            out.push('=');
        }
    }
    out
}

/// Decodes base64 the way protobuf's JSON mapping accepts `bytes`: the
/// standard or the URL-safe alphabet, padding optional. `None` if malformed.
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    };
    let trimmed = s.trim_end_matches('=');
    if s.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in trimmed.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Deterministic prompt-token estimate: ceil(chars / 4), at least 1.
pub(crate) fn tokens_for_chars(chars: usize) -> u64 {
    u64::try_from(chars.div_ceil(4).max(1)).unwrap_or(u64::MAX)
}

/// Splits `text` into pieces that each hold one word plus the whitespace before
/// it, so the pieces concatenate back to exactly `text`. Trailing whitespace
/// stays on the last piece. Returns the byte offsets where each piece ends.
pub(crate) fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                ends.push(i);
                in_word = false;
            }
        } else {
            in_word = true;
        }
    }
    if in_word {
        ends.push(text.len());
    }
    ends
}

/// Splits `text` into per-word stream pieces (see [`word_ends`]).
pub(crate) fn word_pieces(text: &str) -> Vec<&str> {
    let ends = word_ends(text);
    if ends.is_empty() {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![text]
        };
    }
    let mut pieces = Vec::with_capacity(ends.len());
    let mut start = 0;
    let last = ends.len() - 1;
    for (i, &end) in ends.iter().enumerate() {
        let end = if i == last { text.len() } else { end };
        pieces.push(&text[start..end]);
        start = end;
    }
    pieces
}

/// The first `max_words` words of `text` (no trailing whitespace), and whether
/// anything was cut.
pub(crate) fn truncate_words(text: &str, max_words: usize) -> (&str, bool) {
    let ends = word_ends(text);
    if ends.len() <= max_words {
        return (text, false);
    }
    match max_words.checked_sub(1).and_then(|i| ends.get(i)) {
        Some(&end) => (&text[..end], true),
        None => ("", true),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(17)), "17ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_millis(18_642)), "18.642s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(3723)), "1h2m3s");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn base64_decoding_accepts_both_alphabets() {
        assert_eq!(base64_decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(base64_decode(&base64(b"mock")).unwrap(), b"mock");
        assert!(base64_decode("data:image/png;base64,AAAA").is_none());
        assert!(base64_decode("A").is_none());
    }

    #[test]
    fn google_framing() {
        let v = obj! {"a": "<b>", "c": Json::Arr(vec![Json::Num(1)])};
        assert_eq!(
            String::from_utf8(v.to_vec_google_line()).unwrap(),
            r#"{"a": "\u003cb\u003e","c": [1]}"#
        );
        assert_eq!(hex_chars("resp_", 3, 48).len(), 53);
    }

    #[test]
    fn word_pieces_roundtrip() {
        for text in ["", "one", "  lead", "a b  c", "trail  ", "x\ny\tz ", "   "] {
            assert_eq!(word_pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(word_pieces("a b  c"), vec!["a", " b", "  c"]);
        assert_eq!(word_pieces("trail  "), vec!["trail  "]);
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate_words("a b c", 2), ("a b", true));
        assert_eq!(truncate_words("a b c", 3), ("a b c", false));
        assert_eq!(truncate_words("a b c", 0), ("", true));
    }

    #[test]
    fn ids_are_deterministic_and_shaped() {
        let a = alnum_id("chatcmpl-", 7, 29);
        assert_eq!(a, alnum_id("chatcmpl-", 7, 29));
        assert_eq!(a.len(), 9 + 29);
        assert!(a[9..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, alnum_id("chatcmpl-", 8, 29));
        assert_eq!(hex_id("req_", 1).len(), 36);
    }
}
