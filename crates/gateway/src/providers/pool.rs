//! Keep-alive connections to upstreams, per (scheme, authority), built on hyper's connection
//! API. Replaces hyper-util's pooled `Client`, which per request hashed the pool key with
//! SipHash, parsed the authority again, and spawned a task that waits for the connection to
//! become idle (10.8k instructions a request, `scripts/instructions.sh`; this pool 2.2k); here an
//! HTTP/1.1 connection goes back to its host's idle list the moment its answer's body ends —
//! the body wrapper carries it — so nothing waits or is spawned per request.
//!
//! HTTP/2 (negotiated by ALPN) connections are shared: one per host, cloned for each request.
//! An HTTP/1.1 connection whose answer is dropped unread is closed, never reused.
//!
//! A reused connection that turns out closed before the request went out is retried on the next
//! one (or a new one), as hyper-util's client did; a failure after the request may have been
//! written is the caller's to judge.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HOST;
use http::uri::{Parts, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::Connection;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::server::body::BoxError;

/// Request bodies sent upstream: buffered JSON, or a client's multipart stream relayed.
pub type ReqBody = crate::server::body::RespBody;

/// An idle connection older than this is closed rather than reused (upstreams close theirs
/// after 60–120 s; reusing one they are closing fails the request).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const IDLE_SECS: u64 = IDLE_TIMEOUT.as_secs();
/// Idle HTTP/1.1 connections kept per host; more are closed when they come back.
const MAX_IDLE_PER_HOST: usize = 1024;

/// Idle ages are whole seconds of a coarse clock that [`Pool::expire_idle`] (the upkeep tick,
/// every few seconds) moves on: a 90-second limit needs no finer time, and the request path
/// then reads no clock for its connection (it read two a request).
static COARSE_SECS: AtomicU64 = AtomicU64::new(0);
static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

fn coarse_secs() -> u64 {
    COARSE_SECS.load(Ordering::Relaxed)
}

fn advance_coarse_clock() -> u64 {
    let now = ORIGIN.elapsed().as_secs();
    COARSE_SECS.fetch_max(now, Ordering::Relaxed).max(now)
}

/// A connection could not be opened (DNS, TCP, proxy tunnel, TLS, HTTP/2 handshake): nothing
/// was sent, so another key or channel can take the request.
#[derive(Debug)]
pub struct ConnectError(BoxError);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("error trying to connect")
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// The connections of one pool (one server worker's, or one proxy's) to every host it has
/// talked to; `C` opens new ones (TCP or a proxy tunnel, then TLS when the scheme says so).
pub struct Pool<C> {
    connector: C,
    hosts: Mutex<hashbrown::HashMap<HostKey, Arc<Host>>>,
}

#[derive(PartialEq, Eq)]
struct HostKey {
    https: bool,
    authority: Box<str>,
}

/// The borrowed form of [`HostKey`], so a lookup allocates nothing.
struct HostRef<'a> {
    https: bool,
    authority: &'a str,
}

// Both hash as (bool, str), so a `HostRef` finds its `HostKey`.
impl Hash for HostKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.authority.hash(state);
    }
}

impl Hash for HostRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.authority.hash(state);
    }
}

impl hashbrown::Equivalent<HostKey> for HostRef<'_> {
    fn equivalent(&self, key: &HostKey) -> bool {
        self.https == key.https && self.authority == &*key.authority
    }
}

/// One upstream host: where to connect, its `Host` header, its idle connections.
struct Host {
    /// `scheme://authority`, what the connector is called with.
    target: Uri,
    /// For HTTP/1.1 requests that carry none: the host, with the port when not the default.
    host_header: HeaderValue,
    idle: Mutex<Idle>,
}

#[derive(Default)]
struct Idle {
    /// Oldest first; taken from the back (the warmest connection).
    h1: VecDeque<(http1::SendRequest<ReqBody>, u64)>,
    /// The shared HTTP/2 connection, with its number (see [`Host::forget_h2`]).
    h2: Option<(u64, http2::SendRequest<ReqBody>)>,
}

enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(u64, http2::SendRequest<ReqBody>),
}

/// Numbers HTTP/2 connections, so a request can tell whether the shared one is still the one
/// that refused it.
static H2_CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Host {
    fn idle(&self) -> MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A live connection to send on, if one is idle (or shared, for HTTP/2).
    fn checkout(&self, now: u64) -> Option<Sender> {
        let mut idle = self.idle();
        if let Some((id, h2)) = &idle.h2 {
            if !h2.is_closed() {
                return Some(Sender::H2(*id, h2.clone()));
            }
            idle.h2 = None;
        }
        while let Some((sender, since)) = idle.h1.pop_back() {
            if now.saturating_sub(since) >= IDLE_SECS {
                // The rest are older still.
                idle.h1.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(Sender::H1(sender));
            }
        }
        None
    }

    /// Drop the shared HTTP/2 connection if it is still `sender`'s (another request may have
    /// replaced it already).
    fn forget_h2(&self, id: u64) {
        let mut idle = self.idle();
        if idle.h2.as_ref().is_some_and(|(shared, _)| *shared == id) {
            idle.h2 = None;
        }
    }

    /// An HTTP/1.1 connection whose answer has ended.
    fn give_back(&self, sender: http1::SendRequest<ReqBody>) {
        if sender.is_closed() {
            return;
        }
        let now = coarse_secs();
        let mut idle = self.idle();
        expire(&mut idle, now);
        if idle.h1.len() < MAX_IDLE_PER_HOST {
            idle.h1.push_back((sender, now));
        }
    }
}

/// Close idle connections past [`IDLE_TIMEOUT`] and forget a closed HTTP/2 connection.
fn expire(idle: &mut Idle, now: u64) {
    while idle
        .h1
        .front()
        .is_some_and(|(s, since)| s.is_closed() || now.saturating_sub(*since) >= IDLE_SECS)
    {
        idle.h1.pop_front();
    }
    if idle.h2.as_ref().is_some_and(|(_, s)| s.is_closed()) {
        idle.h2 = None;
    }
}

impl<C> Pool<C>
where
    C: tower_service::Service<Uri> + Clone + Send + Sync + 'static,
    C::Response: Connection + hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
    C::Future: Send,
    C::Error: Into<BoxError>,
{
    pub fn new(connector: C) -> Self {
        Pool {
            connector,
            hosts: Mutex::new(hashbrown::HashMap::new()),
        }
    }

    /// Send `req` (an absolute URI) on an idle connection to its host, or a new one.
    pub async fn send(
        &self,
        mut req: Request<ReqBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let host = self.host(req.uri())?;
        let now = coarse_secs();
        while let Some(sender) = host.checkout(now) {
            match sender {
                Sender::H2(id, mut s) => match send_h2(&mut s, req, &host).await {
                    Ok(resp) => return Ok(resp),
                    Err(Retry::Again(r)) => {
                        // It refused the request: not offered again, whatever it says of itself.
                        host.forget_h2(id);
                        req = *r;
                    }
                    Err(Retry::Fail(e)) => return Err(e),
                },
                Sender::H1(mut s) => {
                    if !s.is_ready() && !ready_soon(&mut s).await {
                        continue;
                    }
                    match send_h1(s, req, &host).await {
                        Ok(resp) => return Ok(resp),
                        Err(Retry::Again(r)) => req = *r,
                        Err(Retry::Fail(e)) => return Err(e),
                    }
                }
            }
        }
        // Boxed: connecting (TCP, TLS, the HTTP/2 handshake) is a large future that the usual
        // request, on a pooled connection, never runs; inline it would be carried (and copied)
        // by every request's future.
        let fresh = Box::pin(self.connect(&host)).await?;
        let sent = match fresh {
            Sender::H2(_, mut s) => send_h2(&mut s, req, &host).await,
            Sender::H1(s) => send_h1(s, req, &host).await,
        };
        sent.map_err(|e| match e {
            // A new connection that fails before sending has nothing better to retry on.
            Retry::Again(_) => {
                BoxError::from("the new upstream connection closed before the request was sent")
            }
            Retry::Fail(e) => e,
        })
    }

    /// The host entry for `uri`, created on first use.
    fn host(&self, uri: &Uri) -> Result<Arc<Host>, BoxError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("unsupported URL scheme `{other}`").into()),
            None => return Err("the upstream URL has no scheme".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| BoxError::from("the upstream URL has no host"))?;
        let key = HostRef {
            https,
            authority: authority.as_str(),
        };
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(host) = hosts.get(&key) {
            return Ok(Arc::clone(host));
        }
        let host = Arc::new(new_host(https, authority)?);
        hosts.insert(
            HostKey {
                https,
                authority: authority.as_str().into(),
            },
            Arc::clone(&host),
        );
        Ok(host)
    }

    async fn connect(&self, host: &Arc<Host>) -> Result<Sender, BoxError> {
        let mut connector = self.connector.clone();
        let io = async {
            poll_fn(|cx| connector.poll_ready(cx))
                .await
                .map_err(Into::into)?;
            connector
                .call(host.target.clone())
                .await
                .map_err(Into::into)
        }
        .await
        .map_err(|e| BoxError::from(ConnectError(e)))?;
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| BoxError::from(ConnectError(e.into())))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("upstream HTTP/2 connection ended: {e}");
                }
            });
            let id = H2_CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            host.idle().h2 = Some((id, sender.clone()));
            Ok(Sender::H2(id, sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| BoxError::from(ConnectError(e.into())))?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("upstream connection ended: {e}");
                }
            });
            Ok(Sender::H1(sender))
        }
    }

    /// Close idle connections past [`IDLE_TIMEOUT`]; forget hosts with nothing idle and
    /// nothing in flight (image URLs from clients would otherwise add hosts without end).
    pub fn expire_idle(&self) {
        let now = advance_coarse_clock();
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts.retain(|_, host| {
            let mut idle = host.idle();
            expire(&mut idle, now);
            let empty = idle.h1.is_empty() && idle.h2.is_none();
            drop(idle);
            !(empty && Arc::strong_count(host) == 1)
        });
    }

    /// Idle HTTP/1.1 connections and shared HTTP/2 ones (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .values()
            .map(|h| {
                let idle = h.idle();
                idle.h1.len() + usize::from(idle.h2.is_some())
            })
            .sum()
    }
}

/// Whether an idle HTTP/1.1 connection takes a request now. Its task may not have asked for the
/// next one since the last answer ended; letting it run once is enough for that. One still
/// busy after that is sending the body of a request the upstream answered before reading it
/// all (an early 413): let go (it closes when done) rather than waited for.
async fn ready_soon(sender: &mut http1::SendRequest<ReqBody>) -> bool {
    for _ in 0..2 {
        match poll_fn(|cx| Poll::Ready(sender.poll_ready(cx))).await {
            Poll::Ready(ready) => return ready.is_ok(),
            Poll::Pending => tokio::task::yield_now().await,
        }
    }
    false
}

fn new_host(https: bool, authority: &http::uri::Authority) -> Result<Host, BoxError> {
    let scheme = if https { Scheme::HTTPS } else { Scheme::HTTP };
    let default_port = if https { 443 } else { 80 };
    let mut parts = Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(PathAndQuery::from_static("/"));
    let target = Uri::from_parts(parts)?;
    // Never the authority as written: it may carry `user:password@`.
    let host_header = match authority.port_u16() {
        Some(port) if port != default_port => {
            HeaderValue::from_str(&format!("{}:{port}", authority.host()))?
        }
        _ => HeaderValue::from_str(authority.host())?,
    };
    Ok(Host {
        target,
        host_header,
        idle: Mutex::new(Idle::default()),
    })
}

enum Retry {
    /// Not sent: the connection was closed first; the request comes back to try elsewhere.
    Again(Box<Request<ReqBody>>),
    Fail(BoxError),
}

async fn send_h1(
    mut sender: http1::SendRequest<ReqBody>,
    mut req: Request<ReqBody>,
    host: &Arc<Host>,
) -> Result<Response<UpstreamBody>, Retry> {
    // HTTP/1.1 wants the origin form (`/path?query`) and a Host header.
    if req.uri().scheme().is_some() {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = Parts::default();
        parts.path_and_query = Some(path);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| Retry::Fail(e.into()))?;
    }
    req.headers_mut()
        .entry(HOST)
        .or_insert_with(|| host.host_header.clone());
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp.map(|inner| {
            let mut body = UpstreamBody {
                inner,
                reuse: Some((sender, Arc::clone(host))),
            };
            // An answer without a body (204, 304) is over already.
            if body.inner.is_end_stream() {
                body.give_back();
            }
            body
        })),
        Err(mut e) => match e.take_message() {
            // Back as it is: `send_h2` makes it absolute again if an HTTP/2 connection takes it.
            Some(req) => Err(Retry::Again(Box::new(req))),
            None => Err(Retry::Fail(e.into_error().into())),
        },
    }
}

async fn send_h2(
    sender: &mut http2::SendRequest<ReqBody>,
    req: Request<ReqBody>,
    host: &Arc<Host>,
) -> Result<Response<UpstreamBody>, Retry> {
    let req = absolute(req, host);
    match sender.try_send_request(req).await {
        Ok(resp) => Ok(resp.map(|inner| UpstreamBody { inner, reuse: None })),
        Err(mut e) => match e.take_message() {
            Some(req) => Err(Retry::Again(Box::new(req))),
            None => Err(Retry::Fail(e.into_error().into())),
        },
    }
}

/// HTTP/2 needs the scheme and authority, which an HTTP/1.1 try may have dropped (origin form).
fn absolute(mut req: Request<ReqBody>, host: &Host) -> Request<ReqBody> {
    if req.uri().scheme().is_none() {
        let mut parts = Parts::default();
        parts.scheme = host.target.scheme().cloned();
        parts.authority = host.target.authority().cloned();
        parts.path_and_query = req.uri().path_and_query().cloned();
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// An upstream answer's body. For HTTP/1.1 it carries its connection, which goes back to the
/// host's idle list when the body ends; dropped before the end, the connection is closed.
pub struct UpstreamBody {
    inner: Incoming,
    reuse: Option<(http1::SendRequest<ReqBody>, Arc<Host>)>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        if let Some((sender, host)) = self.reuse.take() {
            host.give_back(sender);
        }
    }
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("reusable", &self.reuse.is_some())
            .finish()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            Poll::Ready(Some(Err(_))) => self.reuse = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
