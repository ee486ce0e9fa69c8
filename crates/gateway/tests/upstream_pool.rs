//! The upstream connection pool against real sockets: HTTP/1.1 connections reused once an
//! answer's body ends and never when it is dropped unread, the origin-form request line and
//! Host header HTTP/1.1 needs, connections the upstream closed while idle replaced, connect
//! failures told apart, HTTP/2 negotiated over TLS and shared by concurrent requests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llmux::providers::pool::{ConnectError, Pool, UpstreamBody};
use llmux::server::body::full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type TestPool = Pool<HttpsConnector<HttpConnector>>;

const CERT: &[u8] = include_bytes!("fixtures/tls/localhost.crt");
// A throwaway key for the certificate above, made for these tests only.
const KEY: &[u8] = include_bytes!("fixtures/tls/localhost.key");

fn pool_with(tls: rustls::ClientConfig) -> TestPool {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Pool::new(https)
}

fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Trusts only the test certificate.
fn test_roots_client() -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    install_crypto();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(CERT) {
        roots.add(cert.expect("test cert")).expect("add test cert");
    }
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn plain_pool() -> TestPool {
    pool_with(test_roots_client())
}

fn get(url: &str) -> Request<llmux::server::body::RespBody> {
    Request::get(url).body(full(Bytes::new())).expect("request")
}

async fn fetch(pool: &TestPool, url: &str) -> Response<UpstreamBody> {
    pool.send(get(url)).await.expect("answer")
}

async fn body_text(resp: Response<UpstreamBody>) -> String {
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// An HTTP/1.1 and HTTP/2 server (plain, or TLS when `alpn` is given) answering every request
/// with `<version> <path>`, or a long slow body on `/slow`; counts accepted connections.
async fn server(alpn: Option<Vec<Vec<u8>>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let tls = alpn.map(|alpn| {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        install_crypto();
        let certs = CertificateDer::pem_slice_iter(CERT)
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(KEY).expect("key");
        let mut cfg = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        cfg.alpn_protocols = alpn;
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                    }
                }
            });
        }
    });
    (addr.to_string(), accepted)
}

async fn answer(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
    if req.uri().path() == "/slow" {
        // A body that takes a second to end: the client drops it long before.
        let chunks = futures_util::stream::unfold(0u32, |n| async move {
            if n >= 10 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let frame: Result<_, Infallible> =
                Ok(hyper::body::Frame::data(Bytes::from(vec![b'x'; 1024])));
            Some((frame, n + 1))
        });
        let body = http_body_util::StreamBody::new(chunks);
        return Ok(Response::new(BodyExt::boxed(body)));
    }
    if req.uri().path() == "/empty" {
        let mut resp = Response::new(BodyExt::boxed(Full::new(Bytes::new())));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        return Ok(resp);
    }
    let text = format!("{:?} {}", req.version(), req.uri().path());
    Ok(Response::new(BodyExt::boxed(Full::new(Bytes::from(text)))))
}

#[tokio::test]
async fn an_http1_connection_is_reused_once_the_answer_has_been_read() {
    let (addr, accepted) = server(None).await;
    let pool = plain_pool();
    for i in 0..5 {
        let resp = fetch(&pool, &format!("http://{addr}/n/{i}")).await;
        assert_eq!(resp.version(), Version::HTTP_11);
        assert_eq!(body_text(resp).await, format!("HTTP/1.1 /n/{i}"));
        assert_eq!(
            pool.idle_count(),
            1,
            "the connection is idle again after request {i}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "five requests, one connection"
    );
}

#[tokio::test]
async fn an_answer_without_a_body_gives_its_connection_back_at_once() {
    let (addr, accepted) = server(None).await;
    let pool = plain_pool();
    let resp = fetch(&pool, &format!("http://{addr}/empty")).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        pool.idle_count(),
        1,
        "idle before the empty body is even looked at"
    );
    drop(resp);
    let resp = fetch(&pool, &format!("http://{addr}/again")).await;
    assert_eq!(body_text(resp).await, "HTTP/1.1 /again");
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_connection_whose_answer_is_dropped_unread_is_not_reused() {
    let (addr, accepted) = server(None).await;
    let pool = plain_pool();
    let resp = fetch(&pool, &format!("http://{addr}/slow")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    drop(resp);
    assert_eq!(
        pool.idle_count(),
        0,
        "a half-read connection never goes back"
    );
    let resp = fetch(&pool, &format!("http://{addr}/next")).await;
    assert_eq!(body_text(resp).await, "HTTP/1.1 /next");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the next request opened a new connection"
    );
}

/// A raw HTTP/1.1 upstream: records each request head, answers `ok` with keep-alive, and
/// closes the connection after `answers_per_connection` answers.
async fn raw_server(
    answers_per_connection: usize,
) -> (
    String,
    Arc<AtomicUsize>,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let (heads_tx, heads) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let heads_tx = heads_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..answers_per_connection {
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        match tcp.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let _ = heads_tx.send(head);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(reply).await.is_err() {
                        return;
                    }
                }
                // Close while the client holds the connection idle.
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, accepted, heads)
}

#[tokio::test]
async fn http1_requests_go_out_in_origin_form_with_a_host_header() {
    let (addr, _, mut heads) = raw_server(4).await;
    let pool = plain_pool();
    let resp = fetch(&pool, &format!("http://{addr}/v1/chat/completions?x=1&y=2")).await;
    assert_eq!(body_text(resp).await, "ok");
    let head = heads.recv().await.expect("request head");
    let mut lines = head.lines();
    assert_eq!(
        lines.next(),
        Some("GET /v1/chat/completions?x=1&y=2 HTTP/1.1")
    );
    let host = lines
        .find_map(|l| l.strip_prefix("host: "))
        .expect("a host header");
    assert_eq!(host, addr, "non-default port kept");

    // A Host header the request brings is left as it is.
    let mut req = get(&format!("http://{addr}/"));
    req.headers_mut().insert(
        http::header::HOST,
        "api.example.com".parse().expect("value"),
    );
    let resp = pool.send(req).await.expect("answer");
    assert_eq!(body_text(resp).await, "ok");
    let head = heads.recv().await.expect("request head");
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    let hosts: Vec<&str> = head
        .lines()
        .filter_map(|l| l.strip_prefix("host: "))
        .collect();
    assert_eq!(hosts, ["api.example.com"]);

    // Credentials in the URL never reach the Host header or the request line.
    let resp = fetch(&pool, &format!("http://user:s3cret@{addr}/v1/models")).await;
    assert_eq!(body_text(resp).await, "ok");
    let head = heads.recv().await.expect("request head");
    assert!(head.starts_with("GET /v1/models HTTP/1.1\r\n"), "{head}");
    assert!(head.lines().any(|l| l == format!("host: {addr}")), "{head}");
    assert!(!head.contains("s3cret"), "{head}");
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_replaced() {
    let (addr, accepted, _heads) = raw_server(1).await;
    let pool = plain_pool();
    for i in 0..3 {
        let resp = pool
            .send(get(&format!("http://{addr}/{i}")))
            .await
            .unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(body_text(resp).await, "ok");
        // Let the connection task see the upstream's close.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per answer"
    );
    pool.expire_idle();
    assert_eq!(pool.idle_count(), 0, "closed connections are not kept");
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error() {
    // Bind and drop: nothing listens on the port afterwards.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let pool = plain_pool();
    let err = pool
        .send(get(&format!("http://{addr}/")))
        .await
        .expect_err("nothing listens");
    assert!(err.is::<ConnectError>(), "{err:?}");
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert!(chain.starts_with("error trying to connect: "), "{chain}");
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
}

#[tokio::test]
async fn a_url_without_a_usable_scheme_is_refused_without_connecting() {
    let pool = plain_pool();
    let err = pool
        .send(get("ftp://127.0.0.1:1/x"))
        .await
        .expect_err("ftp");
    assert!(
        err.to_string().contains("unsupported URL scheme `ftp`"),
        "{err}"
    );
}

#[tokio::test]
async fn tls_with_http1_alpn_reuses_one_connection() {
    let (addr, accepted) = server(Some(vec![b"http/1.1".to_vec()])).await;
    let port = addr.rsplit(':').next().expect("port");
    let pool = plain_pool();
    for i in 0..3 {
        let resp = pool
            .send(get(&format!("https://localhost:{port}/t/{i}")))
            .await
            .expect("answer over TLS");
        assert_eq!(resp.version(), Version::HTTP_11);
        assert_eq!(body_text(resp).await, format!("HTTP/1.1 /t/{i}"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn http2_negotiated_over_tls_is_shared_by_concurrent_requests() {
    let (addr, accepted) = server(Some(vec![b"h2".to_vec(), b"http/1.1".to_vec()])).await;
    let port = addr.rsplit(':').next().expect("port");
    let pool = Arc::new(plain_pool());
    // The first request opens the connection; the rest share it, eight at a time.
    let first = fetch(&pool, &format!("https://localhost:{port}/first")).await;
    assert_eq!(first.version(), Version::HTTP_2);
    assert_eq!(body_text(first).await, "HTTP/2.0 /first");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let pool = Arc::clone(&pool);
        let url = format!("https://localhost:{port}/c/{i}");
        tasks.push(tokio::spawn(async move {
            let resp = pool.send(get(&url)).await.expect("answer");
            (resp.version(), body_text(resp).await)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (version, text) = task.await.expect("task");
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(text, format!("HTTP/2.0 /c/{i}"));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one HTTP/2 connection for all"
    );
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_connect_error() {
    let (addr, _) = server(Some(vec![b"http/1.1".to_vec()])).await;
    let port = addr.rsplit(':').next().expect("port");
    install_crypto();
    // The web PKI roots do not include the test certificate.
    use hyper_rustls::ConfigBuilderExt;
    let pool = pool_with(
        rustls::ClientConfig::builder()
            .with_webpki_roots()
            .with_no_client_auth(),
    );
    let err = pool
        .send(get(&format!("https://localhost:{port}/")))
        .await
        .expect_err("untrusted");
    assert!(err.is::<ConnectError>(), "{err:?}");
}

/// First connection: answers 413 as soon as the request head is in, without reading the body,
/// and stays open; later connections answer `ok`.
async fn early_answer_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let first = count.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut answered_early = false;
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        answered_early = first;
                        let reply: &[u8] = if first {
                            b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if tcp.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        // Once answered, the first connection's upload is read and thrown away.
                        Ok(_) if answered_early => buf.clear(),
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn a_connection_still_sending_an_upload_the_upstream_answered_early_is_not_waited_for() {
    let (addr, accepted) = early_answer_server().await;
    let pool = plain_pool();
    // An upload that never ends (a client's multipart body that stalls).
    let part: Result<hyper::body::Frame<Bytes>, llmux::server::body::BoxError> =
        Ok(hyper::body::Frame::data(Bytes::from_static(b"part")));
    let stalled = futures_util::StreamExt::chain(
        futures_util::stream::iter([part]),
        futures_util::stream::pending(),
    );
    let req = Request::post(format!("http://{addr}/v1/audio/transcriptions"))
        .body(BodyExt::boxed_unsync(http_body_util::StreamBody::new(
            stalled,
        )))
        .expect("request");
    let resp = tokio::time::timeout(Duration::from_secs(5), pool.send(req))
        .await
        .expect("the early answer arrives while the upload goes on")
        .expect("early answer");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_text(resp).await, "");
    // The next request does not wait for the upload: it gets a connection of its own.
    let next = tokio::time::timeout(
        Duration::from_secs(5),
        fetch(&pool, &format!("http://{addr}/v1/models")),
    )
    .await
    .expect("the next request is not held behind the stalled upload");
    assert_eq!(body_text(next).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}
