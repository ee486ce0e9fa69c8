//! Recording, counting, keep-alive, HTTP/2 and shutdown on drop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mock_upstream::{MockOptions, MockServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn records_requests_in_order() {
    let s = MockServer::start(MockOptions::default()).await.unwrap();
    assert_eq!(
        s.base_url(),
        format!("http://127.0.0.1:{}/v1", s.addr().port())
    );
    post(&s, "/chat/completions", chat_body("first")).await;
    send(
        Method::GET,
        &format!("{}/models?limit=2", s.base_url()),
        Some(KEY),
        None,
        Bytes::new(),
    )
    .await;
    post_as(&s, "/nowhere", None, json!({"a": 1})).await;

    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(s.request_count(), 3);
    let first = &reqs[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/v1/chat/completions");
    assert_eq!(first.query, None);
    assert_eq!(first.bearer(), Some(KEY));
    assert_eq!(
        first.header("Authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert!(first.headers.iter().all(|(k, _)| *k == k.to_lowercase()));
    assert_eq!(first.json().unwrap()["messages"][0]["content"], "first");

    assert_eq!(reqs[1].method, "GET");
    assert_eq!(reqs[1].query.as_deref(), Some("limit=2"));
    assert!(reqs[1].body.is_empty());
    assert!(reqs[1].json().is_none());

    assert_eq!(reqs[2].path, "/v1/nowhere");
    assert_eq!(reqs[2].bearer(), None);
}

#[tokio::test]
async fn counts_without_recording() {
    let s = MockServer::start(MockOptions {
        record: false,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    for _ in 0..5 {
        assert_eq!(get(&s, "/models").await.status, 200);
    }
    assert_eq!(s.request_count(), 5);
    assert!(s.requests().is_empty());
}

#[tokio::test]
async fn keep_alive_serves_many_requests_per_connection() {
    let s = MockServer::start(MockOptions::default()).await.unwrap();
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    let req = format!("GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\n\r\n");
    for _ in 0..3 {
        tcp.write_all(req.as_bytes()).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while got.windows(15).filter(|w| *w == b"HTTP/1.1 200 OK").count() < 3 {
        let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(s.request_count(), 3);
}

#[tokio::test]
async fn speaks_http2_prior_knowledge() {
    let s = MockServer::start(MockOptions::default()).await.unwrap();
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = Request::post(url(&s, "/chat/completions"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(Full::new(Bytes::from(chat_body("h2").to_string())))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "You said: h2");
}

#[tokio::test]
async fn dropping_the_server_stops_it() {
    let s = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(200),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let addr = s.addr();
    // An in-flight slow stream must be cut when the server goes away.
    let mut body = chat_body("a b c d e f g h");
    body["stream"] = json!(true);
    let resp = send_raw(
        Method::POST,
        &url(&s, "/chat/completions"),
        Some(KEY),
        Some("application/json"),
        body.to_string(),
    )
    .await
    .unwrap();
    drop(s);
    let (_, errored) = tokio::time::timeout(TIMEOUT, frames_timed(resp))
        .await
        .unwrap();
    assert!(errored, "stream should be aborted");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener should be closed"
    );
}

#[tokio::test]
async fn start_on_a_given_address() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let s = MockServer::start_on(addr, MockOptions::default())
        .await
        .unwrap();
    assert_eq!(s.addr(), addr);
    assert_eq!(get(&s, "/models").await.status, 200);
}
