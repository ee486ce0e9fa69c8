//! The response body that relays an upstream answer to the client: forwards frames untouched,
//! bounds the silence between chunks, holds the upstream key until the end (or until the client
//! goes away and hyper drops the body), and ends an event stream that fails midway with an
//! explicit error event rather than a silent truncation.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::keypool::Lease;
use crate::server::body::BoxError;
use crate::server::transcode::StreamTranscoder;

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
        while let Some(frame) = self.framer.next_frame() {
            if memchr::memmem::find(&frame, b"\"choices\":[]").is_some()
                && let Some(ev) = protocol::sse::parse_frame(&frame)
                && let Some(u) = protocol::openai::usage_from_chunk(ev.data.as_bytes())
            {
                self.usage = Some(u);
                continue;
            }
            self.pending.push_back(frame);
        }
    }
}

/// Watches the relayed bytes for the provider's token usage, so the key's token reservation
/// can be settled; only when something was reserved.
struct UsageTap {
    framer: Option<protocol::sse::SseFramer>,
    /// Non-stream: the last bytes of the body, where `usage` sits.
    tail: Vec<u8>,
    total: Option<u64>,
}

const USAGE_TAIL: usize = 4096;

impl UsageTap {
    fn feed(&mut self, data: &[u8]) {
        match &mut self.framer {
            Some(framer) => {
                if framer.push(data).is_err() {
                    self.framer = None;
                    return;
                }
                while let Some(frame) = framer.next_frame() {
                    if let Some(ev) = protocol::sse::parse_frame(&frame)
                        && let Some(u) = protocol::openai::usage_from_chunk(ev.data.as_bytes())
                    {
                        self.total = Some(total_tokens(&u));
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

    fn finish(&mut self) -> Option<u64> {
        if self.total.is_none() && !self.tail.is_empty() {
            let at = memchr::memmem::rfind(&self.tail, b"\"usage\"")?;
            let rest = &self.tail[at + 7..];
            let colon = rest.iter().position(|b| *b == b':')?;
            let mut de = serde_json::Deserializer::from_slice(&rest[colon + 1..])
                .into_iter::<protocol::openai::Usage>();
            if let Some(Ok(u)) = de.next() {
                self.total = Some(total_tokens(&u));
            }
        }
        self.total
    }
}

fn total_tokens(u: &protocol::openai::Usage) -> u64 {
    if u.total_tokens > 0 {
        u.total_tokens
    } else {
        u.prompt_tokens + u.completion_tokens
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
            .map(|_| UsageTap {
                framer: sse.then(|| protocol::sse::SseFramer::new(1024 * 1024)),
                tail: Vec::new(),
                total: None,
            });
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
}

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

/// Settles the key's token reservation with the usage the upstream reported.
fn settle(
    lease: &Option<Lease>,
    usage: &mut Option<UsageTap>,
    transcode: &Option<StreamTranscoder>,
) {
    let Some(lease) = lease.as_ref() else {
        return;
    };
    let total = match transcode {
        Some(t) => t.usage().map(|u| u.total()),
        None => usage.as_mut().and_then(UsageTap::finish),
    };
    if let Some(total) = total
        && lease.reserved_tokens() > 0
    {
        lease.settle_tokens(total);
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
                return Poll::Ready(Some(Ok(Frame::data(frame))));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.last_activity = Instant::now();
                    if let (Some(strip), Some(data)) = (this.strip.as_mut(), frame.data_ref()) {
                        strip.feed(data);
                        continue;
                    }
                    let Some(t) = this.transcode.as_mut() else {
                        if let (Some(tap), Some(data)) = (this.usage.as_mut(), frame.data_ref()) {
                            tap.feed(data);
                        }
                        return Poll::Ready(Some(Ok(frame)));
                    };
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    let mut out = Vec::new();
                    t.feed(data, &mut out);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.done = true;
                    settle(this.lease, this.usage, this.transcode);
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
                        let rest = strip.framer.take_rest();
                        if !rest.is_empty() {
                            strip.pending.push_back(rest);
                        }
                        if let (Some(tap), Some(u)) = (this.usage.as_mut(), strip.usage.as_ref()) {
                            tap.total = Some(crate::server::relay::total_tokens(u));
                        }
                    }
                    settle(this.lease, this.usage, this.transcode);
                    this.lease.take();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                    // Frames still pending in the strip are handed out by the next polls.
                    continue;
                }
                Poll::Pending => {
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
                        this.lease.take();
                        let msg = format!(
                            "upstream sent nothing for {}s; the stream was ended",
                            this.idle_timeout.as_secs()
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
