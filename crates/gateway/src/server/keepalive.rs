//! Keep-alive for stream requests whose first answer is slow (uni-api `keepalive_interval`).
//! If the attempts have not produced an answer within the interval, the client gets a `200`
//! event stream at once, carrying `: keepalive` comments every interval while the attempts go
//! on; failing over to another channel still works, since the client has seen no content. The
//! stream then continues with the answer, or — when every attempt failed or timed out — ends
//! with an explicit error event in the client's format, never as an empty `200` (uni-api #171).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use protocol::ir::Format;
use tokio::time::{Instant, Sleep};

/// Tells nginx-style proxies in front not to buffer a stream. Made once: a name given as
/// `&str` is parsed and classified on every insert.
pub static X_ACCEL_BUFFERING: http::HeaderName = http::HeaderName::from_static("x-accel-buffering");

use crate::server::body::{BoxError, RespBody};

pub type PendingAnswer = Pin<Box<dyn Future<Output = Response<RespBody>> + Send>>;

/// The attempts' answer if it comes within `every`; otherwise a keep-alive stream that
/// carries it.
pub async fn race(
    mut answer: PendingAnswer,
    every: Duration,
    client: Format,
) -> Response<RespBody> {
    tokio::select! {
        resp = &mut answer => resp,
        () = tokio::time::sleep(every) => {
            let body = KeepAlive {
                answer: Some(answer),
                inner: None,
                error: None,
                // The first comment goes out at once: the interval has already passed.
                timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
                every,
                client,
            };
            let mut resp = Response::new(body.boxed_unsync());
            *resp.status_mut() = StatusCode::OK;
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
            resp
        }
    }
}

struct KeepAlive {
    answer: Option<PendingAnswer>,
    /// The answer's stream, once it came.
    inner: Option<RespBody>,
    /// A failed answer's body being read, with its status.
    error: Option<(StatusCode, RespBody, Vec<u8>)>,
    timer: Pin<Box<Sleep>>,
    every: Duration,
    client: Format,
}

/// The error event ending a committed stream, in the client's format.
fn error_event(client: Format, status: StatusCode, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 32);
    match client {
        Format::OpenAiChat | Format::Gemini => {
            // OpenAI's SDKs raise `{"error":...}` data as an APIError; Gemini streams errors
            // as a data line too.
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(body);
            out.extend_from_slice(b"\n\n");
        }
        Format::Anthropic | Format::OpenAiResponses => {
            let err = protocol::convert::dispatch::parse_error(client, status.as_u16(), body);
            let ctx = protocol::convert::dispatch::EncodeCtx {
                id: String::new(),
                model: String::new(),
                created: 0,
                include_usage: false,
                json_array: false,
            };
            let mut enc = protocol::convert::dispatch::encoder(client, &ctx);
            enc.push(&protocol::ir::StreamEvent::Error(err), &mut out);
            if out.is_empty() {
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(body);
                out.extend_from_slice(b"\n\n");
            }
        }
    }
    Bytes::from(out)
}

impl Body for KeepAlive {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if let Some(inner) = this.inner.as_mut() {
                return Pin::new(inner).poll_frame(cx);
            }
            if let Some((status, body, buf)) = this.error.as_mut() {
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(d) = frame.data_ref() {
                            buf.extend_from_slice(d);
                        }
                        continue;
                    }
                    Poll::Ready(_) => {
                        let event = error_event(this.client, *status, buf);
                        this.error = None;
                        this.inner = Some(
                            http_body_util::Empty::new()
                                .map_err(|n| match n {})
                                .boxed_unsync(),
                        );
                        return Poll::Ready(Some(Ok(Frame::data(event))));
                    }
                }
            }
            let Some(answer) = this.answer.as_mut() else {
                return Poll::Ready(None);
            };
            match answer.as_mut().poll(cx) {
                Poll::Ready(resp) => {
                    this.answer = None;
                    let (parts, body) = resp.into_parts();
                    if parts.status.is_success() {
                        this.inner = Some(body);
                    } else {
                        this.error = Some((parts.status, body, Vec::new()));
                    }
                    continue;
                }
                Poll::Pending => {
                    if this.timer.as_mut().poll(cx).is_ready() {
                        let next = Instant::now() + this.every;
                        this.timer.as_mut().reset(next);
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                            crate::server::relay::KEEPALIVE,
                        )))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
