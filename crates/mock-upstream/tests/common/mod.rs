//! Minimal HTTP/1.1 client helpers for talking to the mock over real sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mock_upstream::MockServer;
use serde_json::Value;

pub const KEY: &str = "sk-test-0123456789abcdef";

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body, in order.
    pub fn sse(&self) -> Vec<String> {
        sse_events(&self.body)
    }

    /// The SSE payloads before `[DONE]`, parsed.
    pub fn chunks(&self) -> Vec<Value> {
        self.sse()
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    /// The `error` object of an OpenAI error body.
    pub fn error(&self) -> Value {
        self.json()["error"].clone()
    }
}

pub fn sse_events(body: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "SSE must end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_owned()
        })
        .collect()
}

pub fn url(server: &MockServer, path: &str) -> String {
    format!("{}{}", server.base_url(), path)
}

pub async fn send_raw(
    method: Method,
    url: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
}

pub async fn send(
    method: Method,
    url: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Resp {
    let resp = send_raw(method, url, key, content_type, body)
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// Any request, with arbitrary headers.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

pub async fn post(server: &MockServer, path: &str, body: Value) -> Resp {
    post_as(server, path, Some(KEY), body).await
}

pub async fn post_as(server: &MockServer, path: &str, key: Option<&str>, body: Value) -> Resp {
    send(
        Method::POST,
        &url(server, path),
        key,
        Some("application/json"),
        body.to_string(),
    )
    .await
}

pub async fn get(server: &MockServer, path: &str) -> Resp {
    send(
        Method::GET,
        &url(server, path),
        Some(KEY),
        None,
        Bytes::new(),
    )
    .await
}

/// Reads a streamed body frame by frame, noting when each frame arrived.
/// Returns the frames and whether the body ended with an error.
pub async fn frames_timed(
    resp: hyper::Response<hyper::body::Incoming>,
) -> (Vec<(Instant, Bytes)>, bool) {
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    loop {
        match body.frame().await {
            None => return (frames, false),
            Some(Err(_)) => return (frames, true),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    frames.push((Instant::now(), data));
                }
            }
        }
    }
}

pub fn chat_body(content: &str) -> Value {
    serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
    })
}

pub fn assert_openai_error(resp: &Resp, status: u16, kind: &str, code: Option<&str>) {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let err = resp.error();
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(err["type"], kind);
    assert!(
        err.get("param").is_some(),
        "param must be present (maybe null)"
    );
    match code {
        Some(c) => assert_eq!(err["code"], c),
        None => assert!(err["code"].is_null()),
    }
}

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Standard base64 decoding (test-side, independent of the mock's encoder).
pub fn b64decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("bad base64 char {c}"),
        }
    };
    let bytes = s.as_bytes();
    assert_eq!(bytes.len() % 4, 0);
    let mut out = Vec::new();
    for quad in bytes.chunks(4) {
        let pad = quad.iter().filter(|&&c| c == b'=').count();
        let n = quad
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |acc, v| (acc << 6) | v);
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
    }
    out
}

/// A multipart/form-data body: (name, filename, bytes) parts.
pub fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// `(event name, data)` of an SSE body whose events carry `event:` lines
/// (Anthropic, Responses).
pub fn named_events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.ends_with("\n\n"),
        "SSE must end with a blank line: {text:?}"
    );
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e
                .strip_prefix("event: ")
                .and_then(|r| r.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not a named event: {e:?}"));
            let data = serde_json::from_str(data).unwrap_or_else(|err| panic!("{err}: {data}"));
            (name.to_owned(), data)
        })
        .collect()
}

/// The JSON payloads of a Gemini `?alt=sse` body (events end in `\r\n\r\n`).
pub fn gemini_sse(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).unwrap();
    assert!(
        text.ends_with("\r\n\r\n"),
        "events end with CRLF CRLF: {text:?}"
    );
    text.split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let data = e
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"));
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

/// A request to the server root (`http://127.0.0.1:PORT{path}`).
pub async fn call(
    server: &MockServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> Resp {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    request(
        method,
        &format!("{}{path}", server.root_url()),
        headers,
        body,
    )
    .await
}

/// `POST /v1/messages` with Anthropic's headers.
pub async fn anthropic(server: &MockServer, body: Value) -> Resp {
    call(
        server,
        Method::POST,
        "/v1/messages",
        &[
            ("x-api-key", KEY),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

/// `POST /v1beta/models/{model}:{action}` with `x-goog-api-key`.
pub async fn gemini(server: &MockServer, model: &str, action: &str, body: Value) -> Resp {
    call(
        server,
        Method::POST,
        &format!("/v1beta/models/{model}:{action}"),
        &[
            ("x-goog-api-key", "AIza-test"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}
