//! Where a client request's usage record starts and ends. At arrival: a request id (returned
//! as `x-request-id`), the client's address, the endpoint. At the end: the response body is
//! wrapped so that the first byte of the answer sent marks the time to first token, and the
//! record is finished when the last byte has gone — or when hyper drops the body because the
//! client left (the relay inside settles the tokens it saw first).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::app::App;
use crate::runtime::ClientKey;
use crate::server::body::{BoxError, RespBody};
use crate::server::relay::KEEPALIVE;
use crate::usage::{Api, RequestInfo, RequestLog};

/// A header name made once: `entry("x-request-id")` would parse and classify the name on
/// every response (~480 instructions, callgrind).
pub static REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A fresh request id: 32 hex digits, shared by the request's usage rows.
pub fn new_request_id() -> Arc<str> {
    // Two digits per byte from a table (a nibble loop cost ~300 instructions per request).
    static PAIRS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut t = [[0u8; 2]; 256];
        let mut i = 0;
        while i < 256 {
            t[i] = [HEX[i >> 4], HEX[i & 15]];
            i += 1;
        }
        t
    };
    let mut digits = [0u8; 32];
    for (pair, byte) in digits
        .chunks_exact_mut(2)
        .zip(fastrand::u128(..).to_be_bytes())
    {
        pair.copy_from_slice(&PAIRS[usize::from(byte)]);
    }
    // ASCII digits: always UTF-8.
    Arc::from(std::str::from_utf8(&digits).unwrap_or_default())
}

/// `"POST /v1/chat/completions"`. The fixed-path endpoints are made once and shared.
fn endpoint(method: &Method, path: &str) -> Arc<str> {
    static FIXED: LazyLock<Vec<Arc<str>>> = LazyLock::new(|| {
        [
            "/v1/chat/completions",
            "/v1/responses",
            "/v1/messages",
            "/v1/embeddings",
            "/v1/images/generations",
            "/v1/audio/speech",
            "/v1/audio/transcriptions",
            "/v1/moderations",
        ]
        .iter()
        .map(|p| Arc::from(format!("POST {p}")))
        .collect()
    });
    if method == Method::POST
        && let Some(e) = FIXED.iter().find(|e| e.strip_prefix("POST ") == Some(path))
    {
        return Arc::clone(e);
    }
    Arc::from(format!("{method} {path}"))
}

/// The client's address as uni-api takes it: the first hop of `X-Forwarded-For`, else
/// `X-Real-IP`, `CF-Connecting-IP`, `True-Client-IP`, else the peer. Header values are
/// client-chosen: bounded in length and kept only when they are printable text.
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<Arc<str>> {
    static FORWARDING: [http::HeaderName; 4] = [
        http::HeaderName::from_static("x-forwarded-for"),
        http::HeaderName::from_static("x-real-ip"),
        http::HeaderName::from_static("cf-connecting-ip"),
        http::HeaderName::from_static("true-client-ip"),
    ];
    crate::server::first_values(headers, &FORWARDING)
        .iter()
        .flatten()
        .find_map(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.len() <= 64)
                .map(Arc::from)
        })
        .or_else(|| peer.map(|p| peer_text(p.ip())))
}

/// The peer address as text. A client sends many requests from one address (keep-alive, a
/// pool of connections), so each worker thread remembers the last one it wrote out.
fn peer_text(ip: std::net::IpAddr) -> Arc<str> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(std::net::IpAddr, Arc<str>)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match last.as_ref() {
            Some((seen, text)) if *seen == ip => Arc::clone(text),
            _ => {
                let text: Arc<str> = Arc::from(ip.to_string());
                *last = Some((ip, Arc::clone(&text)));
                text
            }
        }
    })
}

/// Open the usage record of a model request.
#[allow(clippy::too_many_arguments)]
pub fn open(
    app: &App,
    key: &ClientKey,
    api: Api,
    request_id: Arc<str>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    started: Instant,
) -> RequestLog {
    RequestLog::start(
        &app.usage,
        &app.metrics,
        started,
        RequestInfo {
            at_ms: crate::usage::time::now_ms(),
            request_id,
            client_key: Arc::clone(&key.id),
            endpoint: endpoint(method, path),
            api,
            client_ip: client_ip(headers, peer),
        },
    )
}

/// The response, carrying `request_id` and a body that finishes `log`.
pub fn finish(resp: Response<RespBody>, log: RequestLog, request_id: &str) -> Response<RespBody> {
    let status = resp.status().as_u16();
    let (mut parts, body) = resp.into_parts();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        parts.headers.entry(REQUEST_ID.clone()).or_insert(v);
    }
    let body = Recorded {
        inner: Some(body),
        log,
        status,
        first_sent: false,
    };
    Response::from_parts(parts, body.boxed_unsync())
}

struct Recorded {
    inner: Option<RespBody>,
    log: RequestLog,
    /// The status sent (the record keeps the attempt loop's own when it set one).
    status: u16,
    first_sent: bool,
}

impl Recorded {
    /// Once: `inner` is `None` from here on.
    fn end(&mut self, now: Instant) {
        // Dropped first: a relay settles the tokens it saw into the record when it goes.
        self.inner = None;
        // The record is written (and charged) once the answer has gone out.
        crate::server::after_reply::defer(Finish {
            log: std::mem::replace(&mut self.log, RequestLog::off()),
            at: now,
            status: self.status,
        });
    }
}

/// Finishes a usage record when dropped (see [`crate::server::after_reply`]).
struct Finish {
    log: RequestLog,
    at: Instant,
    status: u16,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.log.finish(self.at, self.status);
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        // The clock only for a body dropped before its end (the client went away).
        if self.inner.is_some() {
            self.end(Instant::now());
        }
    }
}

impl Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(frame))) => {
                // A whole answer's one frame is its first byte and its end: one reading.
                let mut now = None;
                if !this.first_sent
                    && frame
                        .data_ref()
                        .is_some_and(|d| !d.is_empty() && d.as_ref() != KEEPALIVE)
                {
                    this.first_sent = true;
                    this.log.first_byte(*now.insert(Instant::now()));
                }
                if this.inner.as_ref().is_some_and(Body::is_end_stream) {
                    this.end(now.unwrap_or_else(Instant::now));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => {
                this.end(Instant::now());
                Poll::Ready(other)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn client_ip_prefers_forwarding_headers() {
        let peer: SocketAddr = "192.0.2.7:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("192.0.2.7"));
        h.insert("x-real-ip", HeaderValue::from_static("198.51.100.2"));
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("198.51.100.2"));
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static(" 203.0.113.9 , 10.0.0.1"),
        );
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("203.0.113.9"));
        assert_eq!(client_ip(&HeaderMap::new(), None), None);
        // Priority is by name, not by order; the first value of a name counts; an unusable
        // value gives way to the next name.
        let mut h = HeaderMap::new();
        h.append("true-client-ip", HeaderValue::from_static("192.0.2.50"));
        h.append("x-forwarded-for", HeaderValue::from_static(" , 10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.1"));
        h.append("cf-connecting-ip", HeaderValue::from_static("192.0.2.40"));
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("192.0.2.40"));
        // The remembered peer text follows the peer.
        let other: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let h = HeaderMap::new();
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("192.0.2.7"));
        assert_eq!(client_ip(&h, Some(other)).as_deref(), Some("2001:db8::1"));
        assert_eq!(client_ip(&h, Some(peer)).as_deref(), Some("192.0.2.7"));
    }

    #[test]
    fn request_ids_are_distinct_hex() {
        let a = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a, new_request_id());
    }
}
