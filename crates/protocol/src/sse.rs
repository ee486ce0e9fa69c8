//! Bounded Server-Sent Events framing and decoding, following the WHATWG
//! `EventSource` rules: `\n`, `\r\n` and `\r` line ends, `data:` lines joined
//! with `\n`, one optional space after the colon, `:` comments, a UTF-8 BOM
//! at stream start, and dispatch on a blank line.
//!
//! [`SseFramer`] cuts a byte stream into the exact original bytes of each
//! event (for passthrough with inspection); [`parse_frame`] interprets one
//! frame; [`SseDecoder`] combines both.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE event exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits a byte stream into complete raw event frames.
///
/// Each frame is the exact original bytes of one event including the line
/// end of its terminating blank line, so concatenating all frames and
/// [`take_rest`](Self::take_rest) reproduces the input (minus a leading BOM,
/// which is dropped). Framing does not depend on how the input was chunked:
/// a frame whose blank line ends in a bare `\r` at the end of the buffered
/// data is held back until the next byte shows whether a `\n` follows.
///
/// Each byte is scanned once, so framing is linear in the stream length, and
/// only as far as frames are asked for: [`next_frame`](Self::next_frame) scans
/// up to the next frame's end, so a reader that stops after the first few
/// events of a large read does not scan the rest. A chunk pushed with
/// [`push_bytes`](Self::push_bytes) while nothing is held is not copied: its
/// frames are slices of it, and only an unfinished event at its end is copied
/// when the next chunk arrives.
#[derive(Debug)]
pub struct SseFramer {
    held: Held,
    limit: usize,
    /// Stream offset of the first held byte.
    base: usize,
    /// Where complete frames end (stream offsets), not yet handed out.
    ends: VecDeque<FrameEnd>,
    /// Where the current frame's first line ends, once it has.
    first_line_end: Option<usize>,
    /// The current frame has more than one line.
    more_lines: bool,
    /// Stream offset where the current (incomplete) frame starts.
    frame_start: usize,
    /// Stream offset where the current line starts.
    line_start: usize,
    /// Stream offset up to which bytes have been scanned.
    scan: usize,
    bom_checked: bool,
    failed: bool,
}

/// Where a frame ends, and where its line ends when it has only one (the usual `data: …`
/// event): offsets into the slice [`SseFramer::take_frame_ends`] returns (stream offsets
/// inside the framer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameEnd {
    pub end: usize,
    /// The end of the frame's only line (before its line end): with [`line_data`], the
    /// frame's data without a second scan for line ends.
    pub only_line_end: Option<usize>,
}

/// The bytes a framer holds: its own buffer, or a chunk it was handed whole.
#[derive(Debug)]
enum Held {
    Owned(BytesMut),
    Shared(Bytes),
}

impl Held {
    fn bytes(&self) -> &[u8] {
        match self {
            Held::Owned(b) => b,
            Held::Shared(b) => b,
        }
    }

    fn split_to(&mut self, at: usize) -> Bytes {
        match self {
            Held::Owned(b) => b.split_to(at).freeze(),
            Held::Shared(b) => b.split_to(at),
        }
    }

    fn take(&mut self) -> Bytes {
        match self {
            Held::Owned(b) => b.split().freeze(),
            Held::Shared(b) => std::mem::take(b),
        }
    }

    /// Appends a copy of `chunk`; a shared chunk still held becomes owned first.
    fn extend(&mut self, chunk: &[u8]) {
        if let Held::Shared(b) = self {
            let mut owned = BytesMut::with_capacity(b.len() + chunk.len());
            owned.extend_from_slice(b);
            *self = Held::Owned(owned);
        }
        if let Held::Owned(b) = self {
            b.extend_from_slice(chunk);
        }
    }
}

impl SseFramer {
    /// A framer that rejects any event longer than `max_event_bytes`.
    pub fn new(max_event_bytes: usize) -> Self {
        SseFramer {
            held: Held::Owned(BytesMut::new()),
            limit: max_event_bytes,
            base: 0,
            // A read often holds a whole short answer (a dozen events): one allocation
            // instead of growing through 4, 8 and 16.
            ends: VecDeque::with_capacity(16),
            first_line_end: None,
            more_lines: false,
            frame_start: 0,
            line_start: 0,
            scan: 0,
            bom_checked: false,
            failed: false,
        }
    }

    /// Appends stream bytes (copied). After `TooLarge` the framer stays failed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if self.failed {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        self.held.extend(chunk);
        self.check_limit()
    }

    /// As [`push`](Self::push), keeping `chunk` itself when nothing is held, so the frames
    /// cut from it share its memory.
    pub fn push_bytes(&mut self, chunk: Bytes) -> Result<(), SseError> {
        if self.failed {
            return Err(SseError::TooLarge { limit: self.limit });
        }
        if self.is_empty() {
            self.held = Held::Shared(chunk);
        } else {
            self.held.extend(&chunk);
        }
        self.check_limit()
    }

    /// The next complete frame, if one has been received.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        if self.ends.is_empty() {
            // Cannot fail: `push` checked the held bytes against the limit.
            let _ = self.scan_frames(true);
        }
        let end = self.ends.pop_front()?.end;
        let frame = self.held.split_to(end - self.base);
        self.base = end;
        Some(frame)
    }

    /// Every complete frame received so far as one slice, with the end offset of each frame
    /// in it appended to `ends`; `None` when no frame is complete.
    pub fn take_frames(&mut self, ends: &mut Vec<usize>) -> Option<Bytes> {
        let base = self.base;
        let frames = self.take_all()?;
        ends.extend(self.ends.drain(..).map(|e| e.end - base));
        Some(frames)
    }

    /// As [`take_frames`](Self::take_frames), with where each frame's only line ends.
    pub fn take_frame_ends(&mut self, ends: &mut Vec<FrameEnd>) -> Option<Bytes> {
        let base = self.base;
        let frames = self.take_all()?;
        ends.extend(self.ends.drain(..).map(|e| FrameEnd {
            end: e.end - base,
            only_line_end: e.only_line_end.map(|l| l - base),
        }));
        Some(frames)
    }

    /// Every complete frame, as one slice (their ends still queued).
    fn take_all(&mut self) -> Option<Bytes> {
        // Cannot fail: `push` checked the held bytes against the limit.
        let _ = self.scan_frames(false);
        let last = self.ends.back()?.end;
        let frames = self.held.split_to(last - self.base);
        self.base = last;
        Some(frames)
    }

    /// No bytes are held (every pushed byte was handed out in a frame).
    pub fn is_empty(&self) -> bool {
        self.held.bytes().is_empty()
    }

    /// Bytes left without a terminating blank line (the stream ended
    /// mid-event), plus any frames not yet taken. Resets the framer.
    pub fn take_rest(&mut self) -> Bytes {
        let rest = self.held.take();
        let end = self.base + rest.len();
        self.ends.clear();
        self.first_line_end = None;
        self.more_lines = false;
        self.base = end;
        self.frame_start = end;
        self.line_start = end;
        self.scan = end;
        rest
    }

    /// Push's size check: an event over the limit fails the push that brings its bytes.
    /// Unscanned bytes all lie after `frame_start`, so unless there are more of them than
    /// the limit, no event among them can be too large and scanning waits until frames are
    /// asked for.
    fn check_limit(&mut self) -> Result<(), SseError> {
        let buf_end = self.base + self.held.bytes().len();
        if buf_end - self.frame_start <= self.limit {
            return Ok(());
        }
        self.scan_frames(false)
    }

    /// Scans for frame ends: all of the held bytes, or (`one`) up to the next frame end.
    fn scan_frames(&mut self, one: bool) -> Result<(), SseError> {
        if !self.bom_checked {
            let buf = self.held.bytes();
            let n = buf.len().min(BOM.len());
            if buf[..n] != BOM[..n] {
                self.bom_checked = true;
            } else if n == BOM.len() {
                let _ = self.held.split_to(BOM.len());
                self.bom_checked = true;
            } else {
                // Could still become a BOM.
                return Ok(());
            }
        }
        let buf = self.held.bytes();
        let buf_end = self.base + buf.len();
        while self.scan < buf_end {
            let from = self.scan - self.base;
            // A line end right where the scan resumes (the blank line after an event) needs
            // no search.
            let found = match buf.get(from) {
                Some(b'\n' | b'\r') => Some(0),
                _ => memchr::memchr2(b'\n', b'\r', &buf[from..]),
            };
            let Some(i) = found else {
                self.scan = buf_end;
                break;
            };
            let at = from + i;
            let term_len = if buf[at] == b'\r' {
                match buf.get(at + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => {
                        // `\r` may be the first half of `\r\n`: wait.
                        self.scan = self.base + at;
                        break;
                    }
                }
            } else {
                1
            };
            let line_end = self.base + at;
            let next = line_end + term_len;
            if line_end == self.line_start {
                if next - self.frame_start > self.limit {
                    return self.fail();
                }
                let only_line_end = self.first_line_end.take().filter(|_| !self.more_lines);
                self.more_lines = false;
                self.ends.push_back(FrameEnd {
                    end: next,
                    only_line_end,
                });
                self.frame_start = next;
                if one {
                    self.line_start = next;
                    self.scan = next;
                    return Ok(());
                }
            } else if self.first_line_end.is_none() {
                self.first_line_end = Some(line_end);
            } else {
                self.more_lines = true;
            }
            self.line_start = next;
            self.scan = next;
        }
        if buf_end - self.frame_start > self.limit {
            return self.fail();
        }
        Ok(())
    }

    fn fail(&mut self) -> Result<(), SseError> {
        self.failed = true;
        Err(SseError::TooLarge { limit: self.limit })
    }
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub event: Option<String>,
    /// All `data` lines joined with `\n`.
    pub data: String,
    pub id: Option<String>,
    pub retry: Option<u64>,
}

/// `String::from_utf8_lossy`, fast for valid UTF-8 (the normal case): `from_utf8` checks
/// ASCII a word at a time where the lossy decoder walks every byte (measured ~10x on an
/// OpenAI chunk).
pub fn utf8_lossy(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => std::borrow::Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Interprets one frame. `None` when it holds no `data` or `event` field
/// (comments, keep-alives, or a bare `retry:`/`id:` that browsers would not
/// dispatch either). Parsing stops at the first
/// blank line after a field; a final line without a line end still counts.
/// Invalid UTF-8 is replaced with U+FFFD, as the spec decodes.
pub fn parse_frame(frame: &[u8]) -> Option<SseEvent> {
    let text = utf8_lossy(frame);
    let mut ev = SseEvent::default();
    let mut data_lines = 0usize;
    let mut any = false;
    let mut rest = text.as_ref();
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr2(b'\n', b'\r', rest.as_bytes()) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, ""),
        };
        rest = next;
        if line.is_empty() {
            if any {
                break;
            }
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match name {
            "data" => {
                if data_lines > 0 {
                    ev.data.push('\n');
                }
                ev.data.push_str(value);
                data_lines += 1;
                any = true;
            }
            "event" => {
                ev.event = Some(value.to_owned());
                any = true;
            }
            "id" if !value.contains('\0') => {
                ev.id = Some(value.to_owned());
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                if let Ok(ms) = value.parse() {
                    ev.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    any.then_some(ev)
}

/// The `data` of one frame as raw bytes, without decoding the rest: the lines joined with
/// `\n` as [`parse_frame`] joins them, borrowed from the frame when it has a single `data`
/// line (the usual case). For inspecting a relayed stream cheaply; `None` when the frame has
/// no `data` line. Bytes are not checked for UTF-8 (a JSON parser checks what it reads).
pub fn frame_data(frame: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    frame_view(frame)?.data
}

/// The data of a frame whose only line is `line` (without its line end), as [`frame_data`]
/// reads it: `None` unless it is a `data` field.
pub fn line_data(line: &[u8]) -> Option<&[u8]> {
    // The usual line, without a search for its colon.
    if let Some(value) = line.strip_prefix(b"data:") {
        return Some(value.strip_prefix(b" ").unwrap_or(value));
    }
    let (name, value) = match memchr::memchr(b':', line) {
        Some(0) => return None,
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &[][..]),
    };
    (name == b"data").then(|| value.strip_prefix(b" ").unwrap_or(value))
}

/// The fields of one frame that say what it is, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameView<'a> {
    /// The last `event` field's value.
    pub event: Option<&'a [u8]>,
    /// The `data` lines joined with `\n` (see [`frame_data`]).
    pub data: Option<std::borrow::Cow<'a, [u8]>>,
}

/// As [`parse_frame`], without copying: `None` when the frame holds no `data` or `event` field.
pub fn frame_view(frame: &[u8]) -> Option<FrameView<'_>> {
    let mut view = FrameView {
        event: None,
        data: None,
    };
    let mut any = false;
    let mut rest = frame;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
                (&rest[..i], &rest[i + skip..])
            }
            None => (rest, &[][..]),
        };
        rest = next;
        if line.is_empty() {
            if any {
                break;
            }
            continue;
        }
        // The field name ends at the first colon: where a line starts with `data:`, that
        // is its name (found without a search).
        let colon = if line.starts_with(b"data:") {
            Some(4)
        } else {
            memchr::memchr(b':', line)
        };
        let (name, value) = match colon {
            Some(0) => continue,
            Some(i) => (
                &line[..i],
                line[i + 1..].strip_prefix(b" ").unwrap_or(&line[i + 1..]),
            ),
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                view.data = Some(match view.data.take() {
                    None => std::borrow::Cow::Borrowed(value),
                    Some(prev) => {
                        let mut joined = prev.into_owned();
                        joined.push(b'\n');
                        joined.extend_from_slice(value);
                        std::borrow::Cow::Owned(joined)
                    }
                });
                any = true;
            }
            b"event" => {
                view.event = Some(value);
                any = true;
            }
            _ => {}
        }
    }
    any.then_some(view)
}

/// Incremental decoder: [`SseFramer`] plus [`parse_frame`].
#[derive(Debug)]
pub struct SseDecoder {
    framer: SseFramer,
}

impl SseDecoder {
    pub fn new(max_event_bytes: usize) -> Self {
        SseDecoder {
            framer: SseFramer::new(max_event_bytes),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        self.framer.push(chunk)
    }

    /// The next complete event; comment-only frames are skipped.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(frame) = self.framer.next_frame() {
            if let Some(ev) = parse_frame(&frame) {
                return Some(ev);
            }
        }
        None
    }

    /// At end of stream: returns the remaining complete events one by one,
    /// then a trailing event that lacked its blank line (as most clients
    /// dispatch it), then `None`.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if let Some(ev) = self.next_event() {
            return Some(ev);
        }
        let rest = self.framer.take_rest();
        parse_frame(&rest)
    }
}

/// `data: {json}\n\n`. A payload containing line breaks is split over
/// several `data:` lines, which a decoder joins back with `\n`.
pub fn encode_data(json: &[u8]) -> Bytes {
    encode_lines(b"data: ", json)
}

/// The OpenAI end-of-stream marker.
pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

/// `: text\n\n` (a comment, e.g. a keep-alive); multi-line text stays a
/// comment on every line.
pub fn encode_comment(text: &str) -> Bytes {
    encode_lines(b": ", text.as_bytes())
}

fn encode_lines(prefix: &[u8], payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(prefix.len() + payload.len() + 2);
    let mut rest = payload;
    loop {
        out.extend_from_slice(prefix);
        match memchr::memchr2(b'\n', b'\r', rest) {
            Some(i) => {
                out.extend_from_slice(&rest[..i]);
                out.push(b'\n');
                let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => {
                out.extend_from_slice(rest);
                out.extend_from_slice(b"\n\n");
                return Bytes::from(out);
            }
        }
    }
}
