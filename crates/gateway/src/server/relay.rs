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

use crate::keypool::KeyLease;
use crate::server::body::BoxError;

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
        lease: Option<KeyLease>,
    }
}

impl Relay {
    /// `prefix`: bytes already read from `inner` (the validated first event of a stream).
    pub fn new(
        inner: Incoming,
        prefix: Option<Bytes>,
        idle_timeout: Duration,
        sse: bool,
        lease: Option<KeyLease>,
    ) -> Self {
        let now = Instant::now();
        Relay {
            inner,
            prefix,
            idle: tokio::time::sleep_until(now + idle_timeout),
            idle_timeout,
            last_activity: now,
            sse,
            done: false,
            lease,
        }
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
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                *this.last_activity = Instant::now();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                this.lease.take();
                if *this.sse {
                    let msg = format!("upstream stream failed: {e}");
                    Poll::Ready(Some(Ok(Frame::data(stream_error_event(
                        &msg,
                        "upstream_stream_error",
                    )))))
                } else {
                    Poll::Ready(Some(Err(BoxError::from(e))))
                }
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.lease.take();
                Poll::Ready(None)
            }
            Poll::Pending => {
                // The deadline moves lazily: a timer reset per chunk would cost more than a
                // clock read.
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

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && (self.done || self.inner.is_end_stream())
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
