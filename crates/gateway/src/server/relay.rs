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
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::keypool::Lease;
use crate::routing::answer;
use crate::server::body::BoxError;
use crate::server::transcode::StreamTranscoder;
use crate::usage::{RequestLog, Tokens};

pin_project_lite::pin_project! {
    pub struct Relay {
        #[pin]
        inner: Incoming,
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
        // Set when llmux asked an OpenAI upstream for the usage chunk the client did not.
        strip: Option<UsageStrip>,
    }
}

/// Drops the usage-only chunk (`"choices":[]` with `usage`) of an OpenAI stream, after reading
/// it: llmux asked for it for its own accounting, the client did not. Frames are handed on as
/// zero-copy slices of what arrived.
struct UsageStrip {
    framer: protocol::sse::SseFramer,
    pending: std::collections::VecDeque<Bytes>,
    usage: Option<protocol::openai::Usage>,
}

impl UsageStrip {
    fn feed(&mut self, data: &[u8]) {
        if self.framer.push(data).is_err() {
            // An oversized event: pass everything on untouched from here.
            self.pending.push_back(self.framer.take_rest());
            return;
        }
        // Frames that arrived together leave together (one write, not one per event).
        let mut kept: Vec<Bytes> = Vec::new();
        while let Some(frame) = self.framer.next_frame() {
            static EMPTY_CHOICES: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
                std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"choices\":[]"));
            if EMPTY_CHOICES.find(&frame).is_some()
                && let Some(ev) = protocol::sse::parse_frame(&frame)
                && let Some(u) = protocol::openai::usage_from_chunk(ev.data.as_bytes())
            {
                self.usage = Some(u);
                continue;
            }
            kept.push(frame);
        }
        match kept.len() {
            0 => {}
            1 => self.pending.extend(kept),
            _ => {
                let mut joined = Vec::with_capacity(kept.iter().map(Bytes::len).sum());
                for f in &kept {
                    joined.extend_from_slice(f);
                }
                self.pending.push_back(Bytes::from(joined));
            }
        }
    }

    /// The stream ended: whatever is left goes out, and the usage goes to the tap.
    fn finish(&mut self, tap: Option<&mut UsageTap>) {
        let rest = self.framer.take_rest();
        if !rest.is_empty() {
            self.pending.push_back(rest);
        }
        if let (Some(tap), Some(u)) = (tap, self.usage.as_ref()) {
            tap.tokens = Some(openai_tokens(u));
            if u.total_tokens > 0 {
                tap.total = Some(u.total_tokens);
            }
        }
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
/// `usageMetadata`), so the key's token reservation can be settled and the answer recorded.
struct UsageTap {
    framer: Option<protocol::sse::SseFramer>,
    /// Non-stream: the last bytes of the body, where `usage` sits.
    tail: Vec<u8>,
    tokens: Option<Tokens>,
    /// OpenAI's own total, when it says one.
    total: Option<u64>,
    /// Generated text seen in stream events (for an estimate when no usage comes); counted
    /// only when the answer is recorded.
    text_chars: Option<u64>,
}

const USAGE_TAIL: usize = 4096;

impl UsageTap {
    fn new(sse: bool) -> Self {
        UsageTap {
            framer: sse.then(|| protocol::sse::SseFramer::new(1024 * 1024)),
            tail: Vec::new(),
            tokens: None,
            total: None,
            text_chars: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        match &mut self.framer {
            Some(framer) => {
                if framer.push(data).is_err() {
                    self.framer = None;
                    return;
                }
                while let Some(frame) = framer.next_frame() {
                    let Some(ev) = protocol::sse::parse_frame(&frame) else {
                        continue;
                    };
                    if let Some(t) = answer::tokens_in_bytes(ev.data.as_bytes()) {
                        self.tokens.get_or_insert_with(Tokens::default).merge(t);
                    }
                    if let Some(chars) = self.text_chars.as_mut() {
                        *chars += answer::generated_chars(ev.data.as_bytes());
                    }
                    if let Some(u) = protocol::openai::usage_from_chunk(ev.data.as_bytes())
                        && u.total_tokens > 0
                    {
                        self.total = Some(u.total_tokens);
                    }
                }
            }
            None => {
                self.tail.extend_from_slice(data);
                if self.tail.len() > 2 * USAGE_TAIL {
                    self.tail.drain(..self.tail.len() - USAGE_TAIL);
                }
            }
        }
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
        inner: Incoming,
        prefix: Option<Bytes>,
        idle_timeout: Duration,
        sse: bool,
        lease: Option<Lease>,
        transcode: Option<StreamTranscoder>,
    ) -> Self {
        let now = Instant::now();
        let usage = lease
            .as_ref()
            .filter(|l| transcode.is_none() && l.reserved_tokens() > 0)
            .map(|_| UsageTap::new(sse));
        let mut usage = usage;
        if let (Some(tap), Some(p)) = (usage.as_mut(), prefix.as_ref()) {
            tap.feed(p);
        }
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
            strip: None,
        }
    }

    /// Drop the usage-only chunk from the stream (see [`UsageStrip`]).
    pub fn strip_usage_chunk(mut self) -> Self {
        self.strip = Some(UsageStrip {
            framer: protocol::sse::SseFramer::new(8 * 1024 * 1024),
            pending: std::collections::VecDeque::new(),
            usage: None,
        });
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
            // A fresh tap that sees the whole answer: nothing was relayed yet (the prefix is
            // still unsent), so replacing a tap that only saw the prefix loses nothing.
            let mut tap = UsageTap::new(self.sse);
            if self.sse && estimate_from.is_some() {
                tap.text_chars = Some(0);
            }
            if let Some(p) = &self.prefix {
                tap.feed(p);
            }
            self.usage = Some(tap);
        }
        self.meter = Some(Meter {
            log: log.clone(),
            request_len: estimate_from,
            relayed: self.prefix.as_ref().map_or(0, |p| p.len() as u64),
            text_chars: match &self.transcode {
                // A converted stream's first event is already in `prefix`, converted.
                Some(_) => {
                    estimate_from.map(|_| self.prefix.as_deref().map_or(0, answer::generated_chars))
                }
                None => self.usage.as_ref().and_then(|u| u.text_chars),
            },
            tokens: self.usage.as_ref().and_then(|u| u.tokens),
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
            match this.strip.as_mut() {
                Some(strip) => strip.feed(&prefix),
                None => return Poll::Ready(Some(Ok(Frame::data(prefix)))),
            }
        }
        loop {
            if let Some(frame) = this.strip.as_mut().and_then(|s| s.pending.pop_front()) {
                if let Some(tap) = this.usage.as_mut() {
                    tap.feed(&frame);
                }
                track(this.meter, this.usage, this.transcode, &frame);
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.last_activity = Instant::now();
                    *this.last_sent = *this.last_activity;
                    if let (Some(strip), Some(data)) = (this.strip.as_mut(), frame.data_ref()) {
                        strip.feed(data);
                        continue;
                    }
                    let Some(t) = this.transcode.as_mut() else {
                        if let (Some(tap), Some(data)) = (this.usage.as_mut(), frame.data_ref()) {
                            tap.feed(data);
                        }
                        let sent = frame.data_ref().map_or(&[][..], |d| &d[..]);
                        track(this.meter, this.usage, this.transcode, sent);
                        if this.inner.is_end_stream() {
                            // The last frame (a sized body): hyper drops the relay without
                            // polling again, so settle now, while the tail can still be read.
                            *this.done = true;
                            settle(this.lease, this.usage, this.transcode, this.meter);
                            this.lease.take();
                        }
                        return Poll::Ready(Some(Ok(frame)));
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
                    if let Some(strip) = this.strip.as_mut() {
                        strip.finish(this.usage.as_mut());
                    }
                    settle(this.lease, this.usage, this.transcode, this.meter);
                    this.lease.take();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    // Frames still held by the strip go out on the next turns of the loop.
                    continue;
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
            && self.strip.as_ref().is_none_or(|s| s.pending.is_empty())
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
