//! Auth, unknown URLs, OpenAI headers, per-key rate limits and scripted faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

const RATE_HEADERS: [&str; 6] = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

fn is_go_duration(s: &str) -> bool {
    !s.is_empty() && s.ends_with('s') && s.chars().next().is_some_and(|c| c.is_ascii_digit())
}

fn assert_openai_headers(r: &Resp) {
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
    assert_eq!(r.header("openai-organization"), Some("org-mock"));
    assert!(
        r.header("openai-processing-ms")
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert_eq!(r.header("openai-version"), Some("2020-10-01"));
    for h in RATE_HEADERS {
        let v = r.header(h).unwrap_or_else(|| panic!("missing {h}"));
        if h.contains("reset") {
            assert!(is_go_duration(v), "{h}: {v}");
        } else {
            assert!(v.parse::<u64>().is_ok(), "{h}: {v}");
        }
    }
}

#[tokio::test]
async fn missing_key_is_401_with_openai_message() {
    let s = server().await;
    let r = post_as(&s, "/chat/completions", None, chat_body("x")).await;
    assert_openai_error(&r, 401, "invalid_request_error", None);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth")
    );
    assert_openai_headers(&r);
    // An empty bearer token counts as missing, on every endpoint.
    let r = send(Method::GET, &url(&s, "/models"), Some(""), None, "").await;
    assert_openai_error(&r, 401, "invalid_request_error", None);
}

#[tokio::test]
async fn wrong_key_is_401_invalid_api_key_masked() {
    let s = MockServer::start(MockOptions {
        api_keys: vec![KEY.into()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let bad = "sk-wrong-key-1234567890wxyz";
    let r = post_as(
        &s,
        "/embeddings",
        Some(bad),
        json!({"model": "text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_openai_error(&r, 401, "invalid_request_error", Some("invalid_api_key"));
    let msg = r.error()["message"].as_str().unwrap().to_owned();
    let masked = format!("sk-wrong{}wxyz", "*".repeat(bad.len() - 12));
    assert_eq!(
        msg,
        format!(
            "Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
        )
    );
    assert!(!msg.contains(bad));
    // The configured key works.
    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        200
    );
}

#[tokio::test]
async fn unknown_urls_are_404() {
    let s = server().await;
    let r = post(&s, "/xyz", json!({})).await;
    assert_openai_error(&r, 404, "invalid_request_error", None);
    assert_eq!(r.error()["message"], "Invalid URL (POST /v1/xyz)");
    assert!(r.error()["param"].is_null());
    let r = get(&s, "/chat/completions").await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.error()["message"],
        "Invalid URL (GET /v1/chat/completions)"
    );
    assert_openai_headers(&r);
}

#[tokio::test]
async fn every_response_has_openai_headers_and_unique_request_ids() {
    let s = server().await;
    let a = post(&s, "/chat/completions", chat_body("x")).await;
    let b = get(&s, "/models").await;
    assert_openai_headers(&a);
    assert_openai_headers(&b);
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    assert_eq!(a.header("x-ratelimit-limit-requests"), Some("10000"));
}

#[tokio::test]
async fn rpm_limit_yields_real_429s_per_key() {
    let s = MockServer::start(MockOptions {
        rpm_per_key: Some(2),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let r1 = post(&s, "/chat/completions", chat_body("x")).await;
    assert_eq!(r1.status, 200);
    assert_eq!(r1.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r1.header("x-ratelimit-remaining-requests"), Some("1"));
    let r2 = post(&s, "/chat/completions", chat_body("x")).await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.header("x-ratelimit-remaining-requests"), Some("0"));
    let reset = r2.header("x-ratelimit-reset-requests").unwrap();
    assert!(
        reset.ends_with('s') && (reset.starts_with("59") || reset.starts_with("1m")),
        "{reset}"
    );

    let r3 = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&r3, 429, "requests", Some("rate_limit_exceeded"));
    let msg = r3.error()["message"].as_str().unwrap().to_owned();
    assert!(
        msg.starts_with("Rate limit reached for gpt-4o-mini in organization org-mock on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in "),
        "{msg}"
    );
    assert!(
        msg.ends_with(". Visit https://platform.openai.com/account/rate-limits to learn more.")
    );
    let retry: u64 = r3.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{retry}");
    let retry_ms: u64 = r3.header("retry-after-ms").unwrap().parse().unwrap();
    assert!((29_000..=30_000).contains(&retry_ms), "{retry_ms}");
    assert_eq!(r3.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_openai_headers(&r3);

    // Another key has its own window.
    let other = post_as(&s, "/chat/completions", Some("sk-other"), chat_body("x")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("x-ratelimit-remaining-requests"), Some("1"));
}

#[tokio::test]
async fn rpm_bucket_refills_over_time() {
    // 600 rpm = one request back every 100ms.
    let s = MockServer::start(MockOptions {
        rpm_per_key: Some(600),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut limited = None;
    for i in 0..2000 {
        if get(&s, "/models").await.status == 429 {
            limited = Some(i);
            break;
        }
    }
    assert!(limited.is_some_and(|i| i >= 600), "{limited:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(get(&s, "/models").await.status, 200);
}

#[tokio::test]
async fn faults_are_fifo_and_one_shot() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ServerError));
    s.push_fault(Fault::new(FaultKind::Overloaded));
    let a = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&a, 500, "server_error", None);
    assert_eq!(
        a.error()["message"],
        "The server had an error while processing your request. Sorry about that!"
    );
    assert_openai_headers(&a);
    let b = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&b, 503, "server_error", None);
    assert_eq!(
        b.error()["message"],
        "The engine is currently overloaded, please try again later"
    );
    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        200
    );
}

#[tokio::test]
async fn faults_filter_by_model_and_key() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ServerError).for_model("gpt-4o"));
    s.push_fault(Fault::new(FaultKind::Overloaded));
    s.push_fault(Fault::new(FaultKind::InvalidKey).for_key("sk-special"));

    // gpt-4o-mini skips the gpt-4o fault and takes the unfiltered one.
    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        503
    );
    // Only the key-filtered fault is left besides the gpt-4o one: our key passes.
    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        200
    );
    let mut body = chat_body("x");
    body["model"] = json!("gpt-4o");
    assert_eq!(
        post(&s, "/chat/completions", body.clone()).await.status,
        500
    );
    assert_eq!(post(&s, "/chat/completions", body).await.status, 200);

    let r = post_as(&s, "/chat/completions", Some("sk-special"), chat_body("x")).await;
    assert_openai_error(&r, 401, "invalid_request_error", Some("invalid_api_key"));
    assert_eq!(
        post_as(&s, "/chat/completions", Some("sk-special"), chat_body("x"))
            .await
            .status,
        200
    );

    // Model filters also match non-chat endpoints.
    s.push_fault(Fault::new(FaultKind::ServerError).for_model("text-embedding-3-small"));
    let r = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": "x"}),
    )
    .await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn error_fault_bodies() {
    let s = server().await;

    s.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 7,
    }));
    let r = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&r, 429, "requests", Some("rate_limit_exceeded"));
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("retry-after-ms"), Some("7000"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("7s"));
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("Limit 10000, Used 10000, Requested 1. Please try again in 7s.")
    );

    s.push_fault(Fault::new(FaultKind::InsufficientQuota));
    let r = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&r, 429, "insufficient_quota", Some("insufficient_quota"));
    assert!(r.error()["message"].as_str().unwrap().starts_with(
        "You exceeded your current quota, please check your plan and billing details."
    ));

    s.push_fault(Fault::new(FaultKind::BadRequest {
        message: "nope".into(),
    }));
    let r = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(r.error()["message"], "nope");

    s.push_fault(Fault::new(FaultKind::ContextLengthExceeded));
    let r = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("context_length_exceeded"),
    );
    assert_eq!(r.error()["param"], "messages");
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .starts_with("This model's maximum context length is 128000 tokens.")
    );

    s.push_fault(Fault::new(FaultKind::Status {
        status: 418,
        body: "short and stout".into(),
        content_type: "text/plain".into(),
    }));
    let r = get(&s, "/models").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.text(), "short and stout");
    assert_openai_headers(&r);
}

#[tokio::test]
async fn delay_fault_and_latency_option() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::Delay(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(300));

    let slow = MockServer::start(MockOptions {
        latency: Duration::from_millis(200),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let t = Instant::now();
    let r = get(&slow, "/models").await;
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert!(
        r.header("openai-processing-ms")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 200
    );
}

#[tokio::test]
async fn reset_connection_closes_without_response() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ResetConnection));
    let mut tcp = TcpStream::connect(s.addr()).await.unwrap();
    let body = chat_body("x").to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut got))
        .await
        .unwrap();
    assert!(
        read.is_err() || got.is_empty(),
        "expected no response, got {:?}",
        String::from_utf8_lossy(&got)
    );
    // The client library sees a connection error; the next request is fine.
    s.push_fault(Fault::new(FaultKind::ResetConnection));
    let err = send_raw(Method::GET, &url(&s, "/models"), Some(KEY), None, "").await;
    assert!(err.is_err());
    assert_eq!(get(&s, "/models").await.status, 200);
    assert_eq!(s.request_count(), 3);
}

#[tokio::test]
async fn drop_mid_stream_sends_n_events_then_aborts() {
    let s = server().await;
    s.set_reply(Some("a b c d e f".into()));
    s.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 3 }));
    let mut body = chat_body("x");
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
    assert_eq!(resp.status(), 200);
    let (frames, errored) = frames_timed(resp).await;
    assert!(errored, "body must end with an error");
    let data: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_events(&data);
    assert_eq!(events.len(), 3);
    assert!(!events.iter().any(|e| e == "[DONE]"));

    // Buffered responses are cut in half.
    s.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 1 }));
    let resp = send_raw(
        Method::POST,
        &url(&s, "/chat/completions"),
        Some(KEY),
        Some("application/json"),
        chat_body("x").to_string(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let (frames, errored) = frames_timed(resp).await;
    assert!(errored);
    let data: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert!(serde_json::from_slice::<serde_json::Value>(&data).is_err());

    assert_eq!(
        post(&s, "/chat/completions", chat_body("x")).await.status,
        200
    );
}

#[tokio::test]
async fn error_mid_stream_ends_chat_streams_with_an_error_event() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 2 }));
    let mut b = chat_body("one two three");
    b["stream"] = json!(true);
    let r = post(&s, "/chat/completions", b).await;
    assert_eq!(r.status, 200);
    let events = r.sse();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(!events.contains(&"[DONE]".to_owned()));
    let err: serde_json::Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(
        err,
        json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null,
        }})
    );
    // Buffered, the same fault is a plain 500.
    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 2 }));
    let r = post(&s, "/chat/completions", chat_body("x")).await;
    assert_openai_error(&r, 500, "server_error", None);
}

#[tokio::test]
async fn chat_stop_sequences_cut_the_reply() {
    let s = server().await;
    let mut b = chat_body("alpha beta gamma");
    b["stop"] = json!(["gamma"]);
    let v = post(&s, "/chat/completions", b).await.json();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "You said: alpha beta "
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 4);
    let mut b = chat_body("x");
    b["stop"] = json!(5);
    let r = post(&s, "/chat/completions", b).await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("invalid_type"));
}
