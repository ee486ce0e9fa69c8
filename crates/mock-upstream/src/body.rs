//! Response bodies: fixed buffers and paced chunk streams that can be told to
//! abort the connection part-way (for `DropMidStream`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

pub(crate) fn json(status: StatusCode, data: impl Into<Bytes>) -> Response<Body> {
    response(status, "application/json", full(data))
}

#[derive(Debug)]
struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock-upstream: connection dropped mid-stream on purpose")
    }
}

impl std::error::Error for Aborted {}

const ABORT_GRACE: Duration = Duration::from_millis(10);

enum Delays {
    Uniform(Duration),
    /// Slept before each chunk (the first one's too, if non-zero).
    Each(std::vec::IntoIter<Duration>),
}

struct Paced {
    chunks: std::vec::IntoIter<Bytes>,
    sent: usize,
    delays: Delays,
    abort_after: Option<usize>,
    done: bool,
}

/// Streams `chunks` one frame each, sleeping `delay` between them. With
/// `abort_after: Some(n)` the body fails after `n` chunks (or at the end, if
/// there are fewer), which makes hyper drop the connection without finishing
/// the response — exactly what a client sees when an upstream dies.
pub(crate) fn paced(chunks: Vec<Bytes>, delay: Duration, abort_after: Option<usize>) -> Body {
    paced_with(chunks, Delays::Uniform(delay), abort_after)
}

/// Like [`paced`], but sleeping `delays[i]` before chunk `i` (missing
/// entries are zero).
pub(crate) fn paced_each(
    chunks: Vec<Bytes>,
    delays: Vec<Duration>,
    abort_after: Option<usize>,
) -> Body {
    paced_with(chunks, Delays::Each(delays.into_iter()), abort_after)
}

fn paced_with(chunks: Vec<Bytes>, delays: Delays, abort_after: Option<usize>) -> Body {
    let state = Paced {
        chunks: chunks.into_iter(),
        sent: 0,
        delays,
        abort_after,
        done: false,
    };
    let frames = stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let next = if st.abort_after.is_some_and(|n| st.sent >= n) {
            None
        } else {
            st.chunks.next()
        };
        match next {
            Some(chunk) => {
                let delay = match &mut st.delays {
                    Delays::Uniform(d) if st.sent > 0 => *d,
                    Delays::Uniform(_) => Duration::ZERO,
                    Delays::Each(it) => it.next().unwrap_or(Duration::ZERO),
                };
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                st.sent += 1;
                Some((Ok(Frame::data(chunk)), st))
            }
            None if st.abort_after.is_some() => {
                st.done = true;
                // Pausing lets hyper flush what was sent; an error while data is
                // still buffered would discard it along with the connection.
                let delay = match &st.delays {
                    Delays::Uniform(d) => *d,
                    Delays::Each(_) => Duration::ZERO,
                };
                tokio::time::sleep(delay.max(ABORT_GRACE)).await;
                Some((Err(BoxError::from(Aborted)), st))
            }
            None => None,
        }
    });
    StreamBody::new(frames).boxed_unsync()
}

/// Splits `data` into `size`-byte slices without copying.
pub(crate) fn split(data: &Bytes, size: usize) -> Vec<Bytes> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(data.len().div_ceil(size));
    let mut start = 0;
    while start < data.len() {
        let end = (start + size).min(data.len());
        out.push(data.slice(start..end));
        start = end;
    }
    out
}
