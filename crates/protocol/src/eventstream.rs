//! The AWS event stream binary framing (`application/vnd.amazon.eventstream`),
//! which Bedrock uses for `ConverseStream` and `InvokeModelWithResponseStream`.
//!
//! A message is: total length (u32 BE), headers length (u32 BE), CRC32 of
//! those 8 bytes, the headers, the payload, then the CRC32 of everything
//! before it. Each header is a name (u8 length + UTF-8), a type byte and a
//! typed value. [`Decoder`] reassembles messages from arbitrarily split
//! chunks and checks both checksums; [`Message::encode`] writes them (for the
//! mock upstream and tests).
//!
//! Any framing error is fatal: once a length or checksum is wrong the
//! message boundaries are lost, so the decoder reports the error once and
//! then yields nothing more.

use bytes::{Buf, Bytes, BytesMut};

/// Prelude: total length, headers length, prelude CRC.
const PRELUDE_LEN: usize = 12;
/// Prelude plus the trailing message CRC: the size of an empty message.
const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + 4;
/// Largest headers section the AWS SDKs accept.
pub const MAX_HEADERS_LEN: usize = 128 * 1024;
/// Default bound on one message: the AWS SDKs accept payloads up to 24 MiB
/// plus headers.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 24 * 1024 * 1024 + MAX_HEADERS_LEN + MIN_MESSAGE_LEN;

/// Why a stream could not be decoded (or a message encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    #[error(
        "event stream prelude checksum mismatch (expected {expected:#010x}, computed {computed:#010x})"
    )]
    PreludeChecksum { expected: u32, computed: u32 },
    #[error(
        "event stream message checksum mismatch (expected {expected:#010x}, computed {computed:#010x})"
    )]
    MessageChecksum { expected: u32, computed: u32 },
    #[error("event stream message of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("invalid event stream lengths (total {total}, headers {headers})")]
    InvalidLength { total: usize, headers: usize },
    #[error("invalid event stream header: {0}")]
    InvalidHeader(String),
    #[error("event stream ended inside a message ({0} bytes left over)")]
    Truncated(usize),
}

/// A typed header value; the discriminant is the wire type byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false): no value bytes.
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6 (u16 length prefix).
    Bytes(Bytes),
    /// Type 7 (u16 length prefix, UTF-8).
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

impl HeaderValue {
    fn type_byte(&self) -> u8 {
        match self {
            HeaderValue::Bool(true) => 0,
            HeaderValue::Bool(false) => 1,
            HeaderValue::Byte(_) => 2,
            HeaderValue::Short(_) => 3,
            HeaderValue::Int(_) => 4,
            HeaderValue::Long(_) => 5,
            HeaderValue::Bytes(_) => 6,
            HeaderValue::String(_) => 7,
            HeaderValue::Timestamp(_) => 8,
            HeaderValue::Uuid(_) => 9,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            HeaderValue::String(s) => Some(s),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: HeaderValue,
}

impl Header {
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: HeaderValue::String(value.into()),
        }
    }
}

/// One decoded message. Header names are unique (duplicates are rejected,
/// as the AWS SDKs do).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub headers: Vec<Header>,
    pub payload: Bytes,
}

impl Message {
    /// An `event` message as AWS services send them: `:event-type`,
    /// `:content-type: application/json`, `:message-type: event`.
    pub fn event(event_type: &str, payload: impl Into<Bytes>) -> Self {
        Message {
            headers: vec![
                Header::string(":event-type", event_type),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "event"),
            ],
            payload: payload.into(),
        }
    }

    /// An `exception` message (a modeled error inside the stream, e.g.
    /// `throttlingException`) with a JSON payload `{"message":..}`.
    pub fn exception(exception_type: &str, payload: impl Into<Bytes>) -> Self {
        Message {
            headers: vec![
                Header::string(":exception-type", exception_type),
                Header::string(":content-type", "application/json"),
                Header::string(":message-type", "exception"),
            ],
            payload: payload.into(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|h| h.name == name)
            .map(|h| &h.value)
    }

    /// A string header's value (`None` when absent or not a string).
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(HeaderValue::as_str)
    }

    /// The wire bytes of this message.
    pub fn encode(&self) -> Result<Vec<u8>, EventStreamError> {
        let mut headers = Vec::new();
        for h in &self.headers {
            encode_header(&mut headers, h)?;
        }
        if headers.len() > MAX_HEADERS_LEN {
            return Err(EventStreamError::InvalidHeader(format!(
                "headers take {} bytes, more than {MAX_HEADERS_LEN}",
                headers.len()
            )));
        }
        let total = MIN_MESSAGE_LEN + headers.len() + self.payload.len();
        let total_u32 = u32::try_from(total).map_err(|_| EventStreamError::TooLarge {
            len: total,
            limit: u32::MAX as usize,
        })?;
        // Bounded by MAX_HEADERS_LEN above.
        let headers_u32 = headers.len() as u32;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&total_u32.to_be_bytes());
        out.extend_from_slice(&headers_u32.to_be_bytes());
        let prelude_crc = crc32(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&self.payload);
        let message_crc = crc32(&out);
        out.extend_from_slice(&message_crc.to_be_bytes());
        Ok(out)
    }
}

fn encode_header(out: &mut Vec<u8>, h: &Header) -> Result<(), EventStreamError> {
    let name_len = u8::try_from(h.name.len())
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            EventStreamError::InvalidHeader(format!(
                "header name must be 1 to 255 bytes, got {}",
                h.name.len()
            ))
        })?;
    out.push(name_len);
    out.extend_from_slice(h.name.as_bytes());
    out.push(h.value.type_byte());
    match &h.value {
        HeaderValue::Bool(_) => {}
        HeaderValue::Byte(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Short(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Int(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Long(v) | HeaderValue::Timestamp(v) => out.extend_from_slice(&v.to_be_bytes()),
        HeaderValue::Bytes(b) => put_var(out, &h.name, b)?,
        HeaderValue::String(s) => put_var(out, &h.name, s.as_bytes())?,
        HeaderValue::Uuid(u) => out.extend_from_slice(u),
    }
    Ok(())
}

fn put_var(out: &mut Vec<u8>, name: &str, value: &[u8]) -> Result<(), EventStreamError> {
    let len = u16::try_from(value.len()).map_err(|_| {
        EventStreamError::InvalidHeader(format!("value of `{name}` exceeds 65535 bytes"))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}

/// Incremental decoder: [`push`](Self::push) bytes as they arrive, then
/// call [`next_message`](Self::next_message) until it returns `None`.
///
/// A message's declared length is checked against the limit as soon as its
/// prelude has arrived, so an oversized frame is rejected before it is
/// buffered. Memory use is bounded by the limit plus the largest chunk.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    limit: usize,
    failed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_MAX_MESSAGE_LEN)
    }
}

impl Decoder {
    /// A decoder that rejects messages longer than `max_message_len` bytes
    /// (whole frame, prelude and checksums included).
    pub fn new(max_message_len: usize) -> Self {
        Decoder {
            buf: BytesMut::new(),
            limit: max_message_len,
            failed: false,
        }
    }

    /// Appends stream bytes. Ignored after a decoding error.
    pub fn push(&mut self, chunk: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The next complete message; `None` when more bytes are needed. After
    /// an error has been returned the decoder stays failed and returns
    /// `None`.
    pub fn next_message(&mut self) -> Option<Result<Message, EventStreamError>> {
        if self.failed {
            return None;
        }
        match self.try_next() {
            Ok(Some(msg)) => Some(Ok(msg)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                self.buf.clear();
                Some(Err(e))
            }
        }
    }

    /// At end of stream: an error if a message was cut off.
    pub fn finish(&self) -> Result<(), EventStreamError> {
        if self.failed || self.buf.is_empty() {
            Ok(())
        } else {
            Err(EventStreamError::Truncated(self.buf.len()))
        }
    }

    fn try_next(&mut self) -> Result<Option<Message>, EventStreamError> {
        let Some(prelude) = self.buf.get(..PRELUDE_LEN) else {
            return Ok(None);
        };
        let total = be_u32(prelude, 0) as usize;
        let headers_len = be_u32(prelude, 4) as usize;
        let expected = be_u32(prelude, 8);
        let computed = crc32(&prelude[..8]);
        if expected != computed {
            return Err(EventStreamError::PreludeChecksum { expected, computed });
        }
        if total > self.limit {
            return Err(EventStreamError::TooLarge {
                len: total,
                limit: self.limit,
            });
        }
        if total < MIN_MESSAGE_LEN || headers_len > total - MIN_MESSAGE_LEN {
            return Err(EventStreamError::InvalidLength {
                total,
                headers: headers_len,
            });
        }
        if headers_len > MAX_HEADERS_LEN {
            return Err(EventStreamError::InvalidHeader(format!(
                "headers take {headers_len} bytes, more than {MAX_HEADERS_LEN}"
            )));
        }
        let Some(frame) = self.buf.get(..total) else {
            return Ok(None);
        };
        let body_end = total - 4;
        let expected = be_u32(frame, body_end);
        let computed = crc32(&frame[..body_end]);
        if expected != computed {
            return Err(EventStreamError::MessageChecksum { expected, computed });
        }
        let headers_end = PRELUDE_LEN + headers_len;
        let headers = parse_headers(&frame[PRELUDE_LEN..headers_end])?;
        let mut frame = self.buf.split_to(total);
        frame.truncate(body_end);
        frame.advance(headers_end);
        Ok(Some(Message {
            headers,
            payload: frame.freeze(),
        }))
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = b.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

fn parse_headers(mut rest: &[u8]) -> Result<Vec<Header>, EventStreamError> {
    let mut headers: Vec<Header> = Vec::new();
    while !rest.is_empty() {
        let name_len = usize::from(take::<1>(&mut rest, "name length")?[0]);
        if name_len == 0 {
            return Err(bad("empty header name"));
        }
        let name = take_slice(&mut rest, name_len, "name")?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("header name is not UTF-8"))?
            .to_owned();
        let value = match take::<1>(&mut rest, "value type")?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(take::<1>(&mut rest, "byte")?)),
            3 => HeaderValue::Short(i16::from_be_bytes(take::<2>(&mut rest, "short")?)),
            4 => HeaderValue::Int(i32::from_be_bytes(take::<4>(&mut rest, "int")?)),
            5 => HeaderValue::Long(i64::from_be_bytes(take::<8>(&mut rest, "long")?)),
            6 => {
                let len = usize::from(u16::from_be_bytes(take::<2>(&mut rest, "length")?));
                HeaderValue::Bytes(Bytes::copy_from_slice(take_slice(&mut rest, len, "bytes")?))
            }
            7 => {
                let len = usize::from(u16::from_be_bytes(take::<2>(&mut rest, "length")?));
                let raw = take_slice(&mut rest, len, "string")?;
                HeaderValue::String(
                    std::str::from_utf8(raw)
                        .map_err(|_| bad(&format!("value of `{name}` is not UTF-8")))?
                        .to_owned(),
                )
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(take::<8>(&mut rest, "timestamp")?)),
            9 => HeaderValue::Uuid(take::<16>(&mut rest, "uuid")?),
            other => return Err(bad(&format!("unknown value type {other} for `{name}`"))),
        };
        if headers.iter().any(|h| h.name == name) {
            return Err(bad(&format!("duplicate header `{name}`")));
        }
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn bad(what: &str) -> EventStreamError {
    EventStreamError::InvalidHeader(what.to_owned())
}

fn take_slice<'a>(rest: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], EventStreamError> {
    if rest.len() < n {
        return Err(bad(&format!("headers end inside a {what}")));
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

fn take<const N: usize>(rest: &mut &[u8], what: &str) -> Result<[u8; N], EventStreamError> {
    let mut out = [0u8; N];
    out.copy_from_slice(take_slice(rest, N, what)?);
    Ok(out)
}

/// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as the event stream
/// prelude and message checksums use.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
        assert_eq!(crc32(&[0u8; 32]), 0x190A_55AD);
    }
}
