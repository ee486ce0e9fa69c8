//! The response body that relays an upstream answer to the client: forwards frames untouched,
//! bounds the silence between chunks (sending keep-alive comments while it waits, when asked),
//! holds the upstream key until the end (or until the client goes away and hyper drops the
//! body), ends an event stream that fails midway with an explicit error event rather than a
//! silent truncation, and settles the usage it saw (key-pool token reservations, and the tokens
//! of the request's usage record, which charges the client key — also when the client leaves
//! early).

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::keypool::Lease;
use crate::providers::client::UpstreamBody;
use crate::routing::answer;
use crate::server::body::BoxError;
use crate::server::transcode::StreamTranscoder;
use crate::usage::{RequestLog, Tokens};

pin_project_lite::pin_project! {
    pub struct Relay {
        #[pin]
        inner: UpstreamBody,
        prefix: Option<Bytes>,
        #[pin]
        idle: Sleep,
        idle_timeout: Duration,
        last_activity: Instant,
        sse: bool,
        done: bool,
        lease: Option<Lease>,
        usage: Option<UsageTap>,
        // Set when the upstream speaks another format than the client.
        transcode: Option<StreamTranscoder>,
        keepalive: Option<Duration>,
        #[pin]
        keepalive_timer: Sleep,
        last_sent: Instant,
        meter: Option<Meter>,
    }
}

/// An OpenAI `usage` object as token counts.
fn openai_tokens(u: &protocol::openai::Usage) -> Tokens {
    Tokens {
        prompt: u.prompt_tokens,
        completion: u.completion_tokens,
        cached: u
            .prompt_tokens_details
            .as_ref()
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0),
        reasoning: u
            .completion_tokens_details
            .as_ref()
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0),
        estimated: false,
    }
}

/// Watches the relayed bytes for the provider's token usage (any format's `usage` /
/// `usageMetadata`), so the key's token reservation can be settled and the answer recorded;
/// and, when llmux asked an OpenAI upstream for the usage chunk the client did not, drops that
/// chunk (`"choices":[]` with `usage`) after reading it. One pass: each event is framed and
/// looked at once, and what goes on is a zero-copy slice of what arrived.
struct UsageTap {
    /// Stream: cuts events apart; `None` for a whole body, or after an oversized event.
    framer: Option<protocol::sse::SseFramer>,
    /// Drop the usage-only chunk: only complete events go on, so the framer holds the rest.
    strip: bool,
    /// Non-stream: the last bytes of the body, where `usage` sits.
    tail: Vec<u8>,
    /// Where each frame of one read ends (reused from read to read).
    ends: Vec<protocol::sse::FrameEnd>,
    tokens: Option<Tokens>,
    /// OpenAI's own total, when it says one.
    total: Option<u64>,
    /// Generated text seen in stream events (for an estimate when no usage comes); counted
    /// only when the answer is recorded.
    text_chars: Option<u64>,
    events: answer::EventReader,
}

const USAGE_TAIL: usize = 4096;

impl UsageTap {
    fn new(sse: bool) -> Self {
        UsageTap {
            framer: sse.then(|| protocol::sse::SseFramer::new(8 * 1024 * 1024)),
            strip: false,
            tail: Vec::new(),
            ends: Vec::new(),
            tokens: None,
            total: None,
            text_chars: None,
            events: answer::EventReader::default(),
        }
    }

    /// Look at bytes on their way to the client; returns what goes on now: all of `data`,
    /// or, when stripping, the complete events other than the usage chunk (`None`: nothing
    /// yet).
    fn pass(&mut self, data: Bytes) -> Option<Bytes> {
        let Some(framer) = self.framer.as_mut() else {
            self.tail.extend_from_slice(&data);
            if self.tail.len() > 2 * USAGE_TAIL {
                self.tail.drain(..self.tail.len() - USAGE_TAIL);
            }
            return Some(data);
        };
        if framer.push_bytes(data.clone()).is_err() {
            // An oversized event: stop looking; what the framer held goes on untouched.
            let held = framer.take_rest();
            self.framer = None;
            return Some(if self.strip { held } else { data });
        }
        self.ends.clear();
        let Some(frames) = framer.take_frame_ends(&mut self.ends) else {
            return (!self.strip).then_some(data);
        };
        // Frames that arrived together leave together (one write, not one per event): as a
        // slice of what arrived, copied only around a dropped usage chunk.
        let mut dropped: Option<std::ops::Range<usize>> = None;
        let mut joined: Option<Vec<u8>> = None;
        let mut start = 0;
        for e in &self.ends {
            let end = e.end;
            let frame = frames.get(start..end).unwrap_or_default();
            let usage_chunk = look(
                frame,
                e.only_line_end.map(|l| l - start),
                &mut self.events,
                &mut self.tokens,
                &mut self.total,
                &mut self.text_chars,
            );
            // A second usage chunk in one read: keep what lies between the two.
            if self.strip
                && usage_chunk
                && let Some(first) = dropped.replace(start..end)
            {
                let kept = joined
                    .get_or_insert_with(|| frames.get(..first.start).unwrap_or_default().to_vec());
                kept.extend_from_slice(frames.get(first.end..start).unwrap_or_default());
            }
            start = end;
        }
        if !self.strip {
            return Some(data);
        }
        let Some(cut) = dropped else {
            return Some(frames);
        };
        let out = match joined {
            Some(mut kept) => {
                kept.extend_from_slice(frames.get(cut.end..).unwrap_or_default());
                Bytes::from(kept)
            }
            None if cut.start == 0 => frames.slice(cut.end..),
            None if cut.end == frames.len() => frames.slice(..cut.start),
            None => {
                let mut kept = Vec::with_capacity(frames.len() - cut.len());
                kept.extend_from_slice(&frames[..cut.start]);
                kept.extend_from_slice(&frames[cut.end..]);
                Bytes::from(kept)
            }
        };
        (!out.is_empty()).then_some(out)
    }

    /// The stream ended: bytes held without a closing blank line (stripping only) go on.
    fn finish_stream(&mut self) -> Option<Bytes> {
        let framer = self.framer.as_mut()?;
        let rest = framer.take_rest();
        look(
            &rest,
            None,
            &mut self.events,
            &mut self.tokens,
            &mut self.total,
            &mut self.text_chars,
        );
        (self.strip && !rest.is_empty()).then_some(rest)
    }

    /// Bytes received but not yet passed on.
    fn holds_bytes(&self) -> bool {
        self.strip && self.framer.as_ref().is_some_and(|f| !f.is_empty())
    }

    /// Prompt/completion tokens seen, and the total to settle reservations with.
    fn finish(&mut self) -> (Option<Tokens>, Option<u64>) {
        if self.tokens.is_none() && !self.tail.is_empty() {
            let parsed = memchr::memmem::rfind(&self.tail, b"\"usage\"").and_then(|at| {
                let rest = self.tail.get(at + 7..)?;
                let colon = rest.iter().position(|b| *b == b':')?;
                let mut de = serde_json::Deserializer::from_slice(rest.get(colon + 1..)?)
                    .into_iter::<protocol::openai::Usage>();
                de.next()?.ok()
            });
            if let Some(u) = parsed {
                self.tokens = Some(openai_tokens(&u));
                if u.total_tokens > 0 {
                    self.total = Some(u.total_tokens);
                }
            }
        }
        let total = self.total.or(self.tokens.map(|t| t.total()));
        (self.tokens, total)
    }
}

/// Reads one stream event: its usage (merged into `tokens`, OpenAI's total into `total`) and,
/// when counted, its generated characters. True when it is OpenAI's usage-only chunk.
/// `only_line_end`: where the frame's only line ends, when the framer saw it has one.
fn look(
    frame: &[u8],
    only_line_end: Option<usize>,
    events: &mut answer::EventReader,
    tokens: &mut Option<Tokens>,
    total: &mut Option<u64>,
    text_chars: &mut Option<u64>,
) -> bool {
    static EMPTY_CHOICES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"choices\":[]"));
    let data = match only_line_end {
        Some(end) => frame
            .get(..end)
            .and_then(protocol::sse::line_data)
            .map(std::borrow::Cow::Borrowed),
        None => protocol::sse::frame_data(frame),
    };
    // OpenAI's end marker holds neither text nor usage.
    let Some(data) = data.filter(|d| **d != *b"[DONE]") else {
        return false;
    };
    let read = events.read(&data, text_chars.is_some());
    if let Some(chars) = text_chars.as_mut() {
        *chars += read.chars;
    }
    let Some((seen, said_total)) = read.usage else {
        return false;
    };
    tokens.get_or_insert_with(Tokens::default).merge(seen);
    if said_total.is_some() {
        *total = said_total;
    }
    EMPTY_CHOICES.find(&data).is_some()
}

/// Hands the answer's tokens to the request's usage record exactly once: when the answer ends,
/// or when the body is dropped first (the client went away; the provider has billed the tokens
/// anyway, and the key is charged for them).
struct Meter {
    log: RequestLog,
    /// Request size, for an estimate when the upstream reports no usage (`None`: no usage, no
    /// tokens — as uni-api for non-chat answers).
    request_len: Option<u64>,
    /// Bytes relayed, and generated characters seen in stream events (when counted).
    relayed: u64,
    text_chars: Option<u64>,
    tokens: Option<Tokens>,
    settled: bool,
}

impl Meter {
    fn settle(&mut self, tokens: Option<Tokens>) {
        if self.settled {
            return;
        }
        self.settled = true;
        let chars = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let estimate = self.request_len.map(|len| {
            Tokens::estimate(chars(len), chars(self.text_chars.unwrap_or(self.relayed)))
        });
        if let Some(t) = tokens.or(self.tokens).or(estimate) {
            self.log.set_tokens(t);
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.settle(None);
    }
}

impl Relay {
    /// `prefix`: bytes already read from `inner` (the validated first event of a stream).
    pub fn new(
        inner: UpstreamBody,
        prefix: Option<Bytes>,
        idle_timeout: Duration,
        sse: bool,
        lease: Option<Lease>,
        transcode: Option<StreamTranscoder>,
    ) -> Self {
        let now = Instant::now();
        // The prefix is looked at with the rest of the answer, when it is sent.
        let usage = lease
            .as_ref()
            .filter(|l| transcode.is_none() && l.reserved_tokens() > 0)
            .map(|_| UsageTap::new(sse));
        let mut transcode = transcode;
        let prefix = match (transcode.as_mut(), prefix) {
            (Some(t), Some(p)) => {
                let mut out = Vec::new();
                t.feed(&p, &mut out);
                (!out.is_empty()).then(|| Bytes::from(out))
            }
            (_, p) => p,
        };
        Relay {
            inner,
            prefix,
            idle: tokio::time::sleep_until(now + idle_timeout),
            idle_timeout,
            last_activity: now,
            sse,
            done: false,
            lease,
            usage,
            transcode,
            keepalive: None,
            keepalive_timer: tokio::time::sleep_until(now + idle_timeout),
            last_sent: now,
            meter: None,
        }
    }

    /// Drop the usage-only chunk from the stream (see [`UsageTap`]).
    pub fn strip_usage_chunk(mut self) -> Self {
        let sse = self.sse;
        self.usage.get_or_insert_with(|| UsageTap::new(sse)).strip = true;
        self
    }

    /// Send an SSE comment (`: keepalive`) whenever the upstream has been silent this long, so
    /// proxies and clients in front keep the connection open.
    pub fn with_keepalive(mut self, every: Option<Duration>) -> Self {
        if let Some(every) = every.filter(|d| !d.is_zero() && self.sse) {
            self.keepalive = Some(every);
            self.keepalive_timer = tokio::time::sleep_until(Instant::now() + every);
        }
        self
    }

    /// Record the answer's tokens in the request's usage record. `estimate_from`: the request
    /// size, to record an estimate when the upstream reports no usage (a quarter token per
    /// request byte, and per generated character of a stream or byte of a whole answer);
    /// `None` records no tokens then.
    pub fn with_log(mut self, log: &RequestLog, estimate_from: Option<u64>) -> Self {
        if !log.is_on() {
            return self;
        }
        if self.transcode.is_none() {
            let sse = self.sse;
            let tap = self.usage.get_or_insert_with(|| UsageTap::new(sse));
            if sse && estimate_from.is_some() {
                tap.text_chars = Some(0);
            }
        }
        self.meter = Some(Meter {
            log: log.clone(),
            request_len: estimate_from,
            relayed: 0,
            // A converted stream has no tap: its text is counted in what the client gets.
            text_chars: self.transcode.as_ref().and(estimate_from).map(|_| 0),
            tokens: None,
            settled: false,
        });
        self
    }
}

/// An SSE comment line; every SSE client ignores it.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// The event an OpenAI client receives when the upstream stream breaks after the response
/// started; the official SDKs raise it as an APIError.
fn stream_error_event(message: &str, code: &str) -> Bytes {
    let body = protocol::openai::error_body(message, "upstream_error", Some(code), None);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Settles the key's token reservation and the request's record with the usage the upstream
/// reported.
fn settle(
    lease: &Option<Lease>,
    usage: &mut Option<UsageTap>,
    transcode: &Option<StreamTranscoder>,
    meter: &mut Option<Meter>,
) {
    let (tokens, total) = match transcode {
        Some(t) => {
            let u = t.usage();
            (u.as_ref().map(Tokens::reported), u.map(|u| u.total()))
        }
        None => usage.as_mut().map_or((None, None), UsageTap::finish),
    };
    if let Some(m) = meter.as_mut() {
        m.settle(tokens);
    }
    let Some(lease) = lease.as_ref() else {
        return;
    };
    if let Some(total) = total
        && lease.reserved_tokens() > 0
    {
        lease.settle_tokens(total);
    }
}

/// Keeps the meter's running view current, so a dropped body is charged what was seen.
fn track(
    meter: &mut Option<Meter>,
    usage: &Option<UsageTap>,
    transcode: &Option<StreamTranscoder>,
    sent: &[u8],
) {
    if let Some(m) = meter.as_mut() {
        m.relayed += sent.len() as u64;
        match transcode {
            Some(t) => {
                // No tap on a converted stream: count the generated text in what the client
                // gets (the same text, in the client's format).
                if m.request_len.is_some() {
                    *m.text_chars.get_or_insert(0) += answer::generated_chars(sent);
                }
                m.tokens = t.usage().as_ref().map(Tokens::reported);
            }
            None => {
                m.text_chars = usage.as_ref().and_then(|u| u.text_chars);
                m.tokens = usage.as_ref().and_then(|u| u.tokens);
            }
        }
    }
}

impl Body for Relay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take() {
            *this.last_activity = Instant::now();
            *this.last_sent = *this.last_activity;
            let out = match this.usage.as_mut() {
                Some(tap) => tap.pass(prefix),
                None => Some(prefix),
            };
            track(
                this.meter,
                this.usage,
                this.transcode,
                out.as_deref().unwrap_or_default(),
            );
            if let Some(out) = out {
                return Poll::Ready(Some(Ok(Frame::data(out))));
            }
        }
        loop {
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.last_activity = Instant::now();
                    *this.last_sent = *this.last_activity;
                    let Some(t) = this.transcode.as_mut() else {
                        let out = match frame.into_data() {
                            Ok(data) => match this.usage.as_mut() {
                                Some(tap) => tap.pass(data).map(Frame::data),
                                None => Some(Frame::data(data)),
                            },
                            Err(other) => Some(other),
                        };
                        let sent = out.as_ref().and_then(Frame::data_ref);
                        track(
                            this.meter,
                            this.usage,
                            this.transcode,
                            sent.map_or(&[][..], |d| &d[..]),
                        );
                        if this.inner.is_end_stream()
                            && !this.usage.as_ref().is_some_and(UsageTap::holds_bytes)
                        {
                            // The last frame (a sized body): hyper drops the relay without
                            // polling again, so settle now, while the tail can still be read.
                            *this.done = true;
                            if let Some(tap) = this.usage.as_mut() {
                                tap.finish_stream();
                            }
                            settle(this.lease, this.usage, this.transcode, this.meter);
                            this.lease.take();
                        }
                        match out {
                            Some(frame) => return Poll::Ready(Some(Ok(frame))),
                            // Held back (an incomplete event) or dropped (the usage chunk).
                            None => continue,
                        }
                    };
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    let mut out = Vec::new();
                    t.feed(data, &mut out);
                    track(this.meter, this.usage, this.transcode, &out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    settle(this.lease, this.usage, this.transcode, this.meter);
                    this.lease.take();
                    let msg = format!("upstream stream failed: {e}");
                    if let Some(t) = this.transcode.as_mut() {
                        let mut out = Vec::new();
                        t.fail(msg, &mut out);
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    return if *this.sse {
                        Poll::Ready(Some(Ok(Frame::data(stream_error_event(
                            &msg,
                            "upstream_stream_error",
                        )))))
                    } else {
                        Poll::Ready(Some(Err(BoxError::from(e))))
                    };
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    let mut out = Vec::new();
                    if let Some(t) = this.transcode.as_mut() {
                        t.finish(&mut out);
                    }
                    // An event cut off by the end: looked at, and sent when it was held.
                    let held = this.usage.as_mut().and_then(UsageTap::finish_stream);
                    settle(this.lease, this.usage, this.transcode, this.meter);
                    this.lease.take();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    if let Some(held) = held {
                        track(this.meter, this.usage, this.transcode, &held);
                        return Poll::Ready(Some(Ok(Frame::data(held))));
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if let Some(every) = *this.keepalive {
                        loop {
                            let due = *this.last_sent + every;
                            if Instant::now() < due {
                                this.keepalive_timer.as_mut().reset(due);
                                if this.keepalive_timer.as_mut().poll(cx).is_pending() {
                                    break;
                                }
                                continue;
                            }
                            if Instant::now() < *this.last_activity + *this.idle_timeout {
                                *this.last_sent = Instant::now();
                                return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                                    KEEPALIVE,
                                )))));
                            }
                            break;
                        }
                    }
                    // The deadline moves lazily: a timer reset per chunk would cost more than
                    // a clock read.
                    loop {
                        ready!(this.idle.as_mut().poll(cx));
                        let deadline = *this.last_activity + *this.idle_timeout;
                        if Instant::now() < deadline {
                            this.idle.as_mut().reset(deadline);
                            continue;
                        }
                        *this.done = true;
                        settle(this.lease, this.usage, this.transcode, this.meter);
                        this.lease.take();
                        let msg = format!(
                            "upstream sent nothing for {}s; the stream was ended",
                            this.idle_timeout.as_secs_f64()
                        );
                        if let Some(t) = this.transcode.as_mut() {
                            let mut out = Vec::new();
                            t.fail(msg, &mut out);
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                        return if *this.sse {
                            Poll::Ready(Some(Ok(Frame::data(stream_error_event(
                                &msg,
                                "upstream_timeout",
                            )))))
                        } else {
                            Poll::Ready(Some(Err(BoxError::from(msg))))
                        };
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none()
            && !self.usage.as_ref().is_some_and(UsageTap::holds_bytes)
            && (self.done || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.prefix {
            None => self.inner.size_hint(),
            Some(p) => {
                let inner = self.inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + p.len() as u64);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + p.len() as u64);
                }
                hint
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const STREAM: &[u8] = concat!(
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo!\"}}],\"usage\":null}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
        "data: [DONE]\n\n",
    )
    .as_bytes();

    /// Everything `tap` passes on when `input` arrives cut at `cuts`, and the tokens it saw.
    fn run(mut tap: UsageTap, input: &[u8], cuts: &[usize]) -> (Vec<u8>, UsageTap) {
        let mut out = Vec::new();
        let mut prev = 0;
        for &cut in cuts.iter().chain([&input.len()]) {
            if let Some(b) = tap.pass(Bytes::copy_from_slice(&input[prev..cut])) {
                out.extend_from_slice(&b);
            }
            prev = cut;
        }
        if let Some(b) = tap.finish_stream() {
            out.extend_from_slice(&b);
        }
        (out, tap)
    }

    fn counting(strip: bool) -> UsageTap {
        let mut tap = UsageTap::new(true);
        tap.strip = strip;
        tap.text_chars = Some(0);
        tap
    }

    #[test]
    fn a_watched_stream_goes_on_unchanged_and_its_usage_is_read_once() {
        for cuts in [vec![], vec![1, 70, 71, 200], (1..STREAM.len()).collect()] {
            let (out, mut tap) = run(counting(false), STREAM, &cuts);
            assert_eq!(out, STREAM);
            assert_eq!(tap.text_chars, Some(6), "cuts {cuts:?}");
            let (tokens, total) = tap.finish();
            let tokens = tokens.unwrap();
            assert_eq!((tokens.prompt, tokens.completion, total), (9, 3, Some(12)));
        }
    }

    #[test]
    fn the_usage_chunk_is_dropped_wherever_the_stream_is_cut() {
        let want: Vec<u8> = String::from_utf8_lossy(STREAM)
            .replace(
                "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
                "",
            )
            .into_bytes();
        for cuts in [vec![], vec![5, 90, 91, 180], (1..STREAM.len()).collect()] {
            let (out, mut tap) = run(counting(true), STREAM, &cuts);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&want)
            );
            assert_eq!(tap.text_chars, Some(6));
            assert_eq!(tap.finish().1, Some(12));
        }
    }

    #[test]
    fn several_usage_chunks_in_one_read_are_all_dropped() {
        let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n";
        let text = "data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\n";
        let input = format!("{usage}{text}{usage}{text}{usage}data: [DONE]\n\n");
        let want = format!("{text}{text}data: [DONE]\n\n");
        for cuts in [vec![], vec![usage.len()], (1..input.len()).collect()] {
            let (out, mut tap) = run(counting(true), input.as_bytes(), &cuts);
            assert_eq!(String::from_utf8_lossy(&out), want, "cuts {cuts:?}");
            assert_eq!(tap.text_chars, Some(4));
            assert_eq!(tap.finish().1, Some(12));
        }
        // A read that is only the usage chunk passes nothing on.
        let mut tap = counting(true);
        assert_eq!(tap.pass(Bytes::from(usage)), None);
        assert!(!tap.holds_bytes());
    }

    #[test]
    fn a_stream_cut_mid_event_keeps_its_last_bytes() {
        let cut = b"data: {\"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\ndata: {\"choi";
        for strip in [false, true] {
            let (out, tap) = run(counting(strip), cut, &[10]);
            assert_eq!(out, cut, "strip {strip}");
            assert!(!tap.holds_bytes());
        }
        // While the event is incomplete a stripping tap holds it, and says so.
        let mut tap = counting(true);
        assert_eq!(tap.pass(Bytes::from_static(b"data: {\"a\"")), None);
        assert!(tap.holds_bytes());
    }

    #[test]
    fn a_whole_body_is_read_from_its_tail() {
        let body = br#"{"id":"x","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#;
        let (out, mut tap) = run(UsageTap::new(false), body, &[30]);
        assert_eq!(out, body);
        let (tokens, total) = tap.finish();
        assert_eq!((tokens.unwrap().prompt, total), (4, Some(6)));
    }
}
