//! End-to-end: OpenAI clients → llmux → mock-upstream over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};

const KEY: &str = "sk-client-aaaaaaaaaaaaaaaa";

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn one_provider(mock: &MockServer, extra_models: &str) -> String {
    format!(
        r#"
providers:
  - provider: main
    base_url: {}/chat/completions
    api: sk-upstream-111111111111
    model:
      - gpt-4o-mini
      - gpt-4o-mini: mini-alias
      - text-embedding-3-small
      - whisper-1
      - tts-1
      - dall-e-3
      - omni-moderation-latest
{extra_models}
api_keys:
  - api: {KEY}
"#,
        mock.base_url()
    )
}

#[tokio::test]
async fn chat_non_stream_is_forwarded_with_only_the_model_patched() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let body = r#"{"model":"mini-alias","messages":[{"role":"user","content":"hi there"}],"temperature":0.5,"custom_field":{"x":[1,2]}}"#;
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    let usage = &v["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        )
    );
    let reqs = m.requests();
    assert_eq!(reqs.len(), 1);
    let sent = &reqs[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.bearer(), Some("sk-upstream-111111111111"));
    // Only the model changed; every other byte is the client's.
    let expected = body.replace("\"mini-alias\"", "\"gpt-4o-mini\"");
    assert_eq!(std::str::from_utf8(&sent.body).unwrap(), expected);
}

#[tokio::test]
async fn chat_stream_ends_with_usage_and_done() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "tell me something"}],
        "stream": true,
        "stream_options": {"include_usage": true}
    })
    .to_string();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let usage_chunk: serde_json::Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"].as_array().map(Vec::len), Some(0));
    assert!(usage_chunk["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let text: String = data[..data.len() - 2]
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    // The same prompt without streaming gives the same (deterministic) text.
    let plain = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "tell me something", false),
    )
    .await;
    assert_eq!(
        plain.json()["choices"][0]["message"]["content"]
            .as_str()
            .unwrap(),
        text
    );
}

#[tokio::test]
async fn a_stream_without_include_usage_is_accounted_but_shows_no_usage_chunk() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "count my tokens"}],
        "stream": true,
        "stream_options": {"include_obfuscation": false}
    })
    .to_string();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty())),
        "a usage-only chunk reached the client: {data:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: count my tokens");
    // The upstream was asked for usage, and the client's other stream options were kept.
    let sent: serde_json::Value = serde_json::from_slice(&m.requests()[0].body).unwrap();
    assert_eq!(
        sent["stream_options"],
        serde_json::json!({"include_obfuscation": false, "include_usage": true})
    );
}

#[tokio::test]
async fn models_lists_exactly_the_aliases_a_key_may_use() {
    let m = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: alpha
    base_url: {base}/chat/completions
    api: sk-up-aaaaaaaaaaaa
    model: [gpt-4o-mini, {{gpt-4o: four}}]
  - provider: beta
    base_url: {base}
    api: sk-up-bbbbbbbbbbbb
    model: [gpt-4o-mini, "org/model-x", text-embedding-3-small]
api_keys:
  - api: sk-all-000000000000
  - api: sk-some-11111111111
    model:
      - alpha/*
      - <org/model-x>
  - api: sk-one-222222222222
    model: [beta/gpt-4o-mini]
  - api: sk-nested-33333333
    model: [sk-one-222222222222/*, text-embedding-3-small]
"#,
        base = m.base_url()
    );
    let gw = start(&yaml).await;
    let ids = |r: Reply| -> Vec<String> {
        let v = r.json();
        assert_eq!(v["object"], "list");
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                assert_eq!(m["object"], "model");
                m["id"].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(
        ids(get(&gw.url("/v1/models"), Some("sk-all-000000000000")).await),
        vec![
            "gpt-4o-mini",
            "four",
            "org/model-x",
            "text-embedding-3-small"
        ]
    );
    assert_eq!(
        ids(get(&gw.url("/v1/models"), Some("sk-some-11111111111")).await),
        vec!["gpt-4o-mini", "four", "org/model-x"]
    );
    assert_eq!(
        ids(get(&gw.url("/v1/models"), Some("sk-one-222222222222")).await),
        vec!["gpt-4o-mini"]
    );
    assert_eq!(
        ids(get(&gw.url("/v1/models"), Some("sk-nested-33333333")).await),
        vec!["gpt-4o-mini", "text-embedding-3-small"]
    );
    // beta/gpt-4o-mini: only beta serves it for sk-one, even though alpha has the alias too.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some("sk-one-222222222222"),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(m.requests()[0].bearer(), Some("sk-up-bbbbbbbbbbbb"));
    // The nested key reaches beta in process (the mock sees beta's key, not a client key).
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some("sk-nested-33333333"),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(m.requests()[1].bearer(), Some("sk-up-bbbbbbbbbbbb"));
    // A literal-slash model.
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some("sk-some-11111111111"),
        &chat_body("org/model-x", "x", false),
    )
    .await;
    assert_eq!(m.requests().len(), 3, "{}", r.text());
    assert_eq!(m.requests()[2].json().unwrap()["model"], "org/model-x");
}

#[tokio::test]
async fn auth_errors_are_openai_shaped_401() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        None,
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.openai_error()["code"], "missing_api_key");
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some("sk-wrong-key-123456789"),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 401);
    let err = r.openai_error();
    assert_eq!(err["code"], "invalid_api_key");
    assert!(
        !err["message"]
            .as_str()
            .unwrap()
            .contains("sk-wrong-key-123456789"),
        "key echoed in clear"
    );
    let r = get(&gw.url("/v1/models"), Some("sk-client-aaaaaaaaaaaaaaab")).await;
    assert_eq!(r.status, 401);
    // x-api-key works too.
    let req = http::Request::get(gw.url("/v1/models"))
        .header("x-api-key", KEY)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(req).await.status, 200);
    // healthz needs no key.
    let r = get(&gw.url("/healthz"), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert_eq!(m.request_count(), 0);
}

#[tokio::test]
async fn model_not_allowed_is_403_and_unknown_is_404_naming_the_model() {
    let m = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: p
    base_url: {}/chat/completions
    api: sk-up-aaaaaaaaaaaa
    model: [gpt-4o-mini, gpt-4o]
api_keys:
  - api: {KEY}
    model: [gpt-4o-mini]
"#,
        m.base_url()
    );
    let gw = start(&yaml).await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o", "x", false),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4o")
    );
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("no-such-model", "x", false),
    )
    .await;
    assert_eq!(r.status, 404);
    let err = r.openai_error();
    assert_eq!(err["code"], "model_not_found");
    assert!(err["message"].as_str().unwrap().contains("no-such-model"));
    assert_eq!(m.request_count(), 0);
}

#[tokio::test]
async fn bad_bodies_get_clear_400_413_404_405() {
    let m = mock().await;
    let yaml = one_provider(&m, "") + "preferences:\n  max_request_body_bytes: 4096\n";
    let gw = start(&yaml).await;
    let url = gw.url("/v1/chat/completions");
    let r = post_json(
        &url,
        Some(KEY),
        r#"{"model":"gpt-4o-mini","messages":[{"role":"user""#,
    )
    .await;
    assert_eq!(r.status, 400);
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("not valid JSON") && msg.contains("line 1"),
        "{msg}"
    );
    let r = post_json(&url, Some(KEY), "[1,2]").await;
    assert_eq!(r.status, 400);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );
    let r = post_json(&url, Some(KEY), r#"{"messages":[]}"#).await;
    assert_eq!(r.status, 400);
    let err = r.openai_error();
    assert!(err["message"].as_str().unwrap().contains("model"));
    assert_eq!(err["param"], "model");
    let r = post_json(&url, Some(KEY), r#"{"model":42}"#).await;
    assert_eq!(r.status, 400);
    let req = http::Request::post(&url)
        .header("authorization", format!("Bearer {KEY}"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"{\"model\":\"\xff\xfe\"}",
        )))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 400);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    let big = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a".repeat(5000)
    );
    let r = post_json(&url, Some(KEY), &big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.openai_error()["code"], "request_too_large");
    let r = post_json(&gw.url("/v1/nope"), Some(KEY), "{}").await;
    assert_eq!(r.status, 404);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("/v1/nope")
    );
    let r = get(&url, Some(KEY)).await;
    assert_eq!(r.status, 405);
    r.openai_error();
    assert_eq!(m.request_count(), 0);
}

async fn two_channels() -> (MockServer, MockServer, Gateway) {
    let a = mock().await;
    let b = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: first
    base_url: {}/chat/completions
    api: sk-first-1111111111
    model: [gpt-4o-mini]
    preferences:
      model_timeout: 1
  - provider: second
    base_url: {}/chat/completions
    api: sk-second-222222222
    model: [gpt-4o-mini]
api_keys:
  - api: {KEY}
"#,
        a.base_url(),
        b.base_url()
    );
    let gw = start(&yaml).await;
    (a, b, gw)
}

#[tokio::test]
async fn fails_over_on_429_5xx_and_timeouts_but_not_on_400() {
    let body = chat_body("gpt-4o-mini", "hello", false);
    for kind in [
        FaultKind::RateLimited {
            retry_after_secs: 7,
        },
        FaultKind::ServerError,
        FaultKind::Overloaded,
        FaultKind::InvalidKey,
        FaultKind::ResetConnection,
    ] {
        let (a, b, gw) = two_channels().await;
        a.push_fault(Fault::new(kind.clone()));
        let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
        assert_eq!(r.status, 200, "{kind:?}: {}", r.text());
        assert_eq!(
            (a.request_count(), b.request_count()),
            (1, 1),
            "{kind:?} did not fail over"
        );
    }
    // A slow first channel (beyond its 1 s model_timeout) fails over within the timeout.
    let (a, _b, gw) = two_channels().await;
    a.push_fault(Fault::new(FaultKind::Delay(Duration::from_secs(5))));
    let started = std::time::Instant::now();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    // A bad request is the client's fault: returned as is, not retried.
    let (a, b, gw) = two_channels().await;
    a.push_fault(Fault::new(FaultKind::BadRequest {
        message: "Invalid 'messages[0]'".into(),
    }));
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("messages[0]")
    );
    assert_eq!(b.request_count(), 0);
    // So is a context-length error.
    a.push_fault(Fault::new(FaultKind::ContextLengthExceeded));
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.openai_error()["code"], "context_length_exceeded");
    assert_eq!(b.request_count(), 0);
}

#[tokio::test]
async fn all_channels_failing_names_the_model_with_the_last_status() {
    let (a, b, gw) = two_channels().await;
    for _ in 0..5 {
        a.push_fault(Fault::new(FaultKind::ServerError));
    }
    b.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 60,
    }));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    // The server error cools the first channel (uni-api's `cooldown_period`, 300 s by default),
    // which leaves this request too; the rate-limited key is a minute away.
    assert_eq!((a.request_count(), b.request_count()), (1, 1));
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("All gpt-4o-mini error"), "{msg}");
}

#[tokio::test]
async fn a_single_failed_attempt_relays_the_upstream_error_verbatim() {
    let m = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: only
    base_url: {}/chat/completions
    api: sk-only-11111111111
    model: [gpt-4o-mini]
api_keys:
  - api: {KEY}
    preferences:
      AUTO_RETRY: false
"#,
        m.base_url()
    );
    let gw = start(&yaml).await;
    m.push_fault(Fault::new(FaultKind::InsufficientQuota));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 429);
    assert_eq!(r.openai_error()["code"], "insufficient_quota");
    assert_eq!(m.request_count(), 1);
}

#[tokio::test]
async fn a_failing_key_is_skipped_for_another_key_of_the_same_channel() {
    let m = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: pool
    base_url: {}/chat/completions
    api: [sk-key-one-1111111111, sk-key-two-2222222222]
    model: [gpt-4o-mini]
api_keys:
  - api: {KEY}
"#,
        m.base_url()
    );
    let gw = start(&yaml).await;
    for _ in 0..4 {
        m.push_fault(Fault::new(FaultKind::InvalidKey).for_key("sk-key-one-1111111111"));
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &chat_body("gpt-4o-mini", "x", false),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[tokio::test]
async fn stream_failing_before_the_first_event_fails_over() {
    let (a, b, gw) = two_channels().await;
    a.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 0 }));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "hey", true),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(b.request_count(), 1);
}

#[tokio::test]
async fn stream_cut_midway_ends_with_an_error_event() {
    // Chunks spaced out so they reach llmux before the connection reset does.
    let m = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(20),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start(&one_provider(&m, "")).await;
    m.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 3 }));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "a b c d e f g", true),
    )
    .await;
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    let last: serde_json::Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].as_str().is_some(), "{data:?}");
}

#[tokio::test]
async fn embeddings_images_moderations_speech_are_forwarded() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        r#"{"model":"text-embedding-3-small","input":["a","b"]}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(m.requests().last().unwrap().path, "/v1/embeddings");

    let r = post_json(
        &gw.url("/v1/images/generations"),
        Some(KEY),
        r#"{"model":"dall-e-3","prompt":"a cat","n":1,"response_format":"b64_json"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["b64_json"].is_string());
    assert_eq!(m.requests().last().unwrap().path, "/v1/images/generations");

    // No model: the OpenAI default moderation model is filled in.
    let r = post_json(
        &gw.url("/v1/moderations"),
        Some(KEY),
        r#"{"input":"I will kill the process"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"][0]["flagged"], true);
    let sent = m.requests().last().unwrap().json().unwrap();
    assert_eq!(sent["model"], "omni-moderation-latest");

    let r = post_json(
        &gw.url("/v1/audio/speech"),
        Some(KEY),
        r#"{"model":"tts-1","input":"hello","voice":"alloy"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "audio/mpeg");
    assert!(r.body.len() >= 1000, "{} bytes", r.body.len());
}

fn multipart(model: &str, file: &[u8], model_first: bool) -> (String, Vec<u8>) {
    let boundary = "llmuxTestBoundary42";
    let model_part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n"
    );
    let mut file_part = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n"
    )
    .into_bytes();
    file_part.extend_from_slice(file);
    file_part.extend_from_slice(b"\r\n");
    let mut body = Vec::new();
    if model_first {
        body.extend_from_slice(model_part.as_bytes());
        body.extend_from_slice(&file_part);
    } else {
        body.extend_from_slice(&file_part);
        body.extend_from_slice(model_part.as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn transcription_uploads_stream_through_with_the_model_renamed() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "      - whisper-1: stt")).await;
    let file: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for (model, model_first) in [("whisper-1", true), ("stt", true), ("stt", false)] {
        let (ct, body) = multipart(model, &file, model_first);
        let req = http::Request::post(gw.url("/v1/audio/transcriptions"))
            .header("authorization", format!("Bearer {KEY}"))
            .header("content-type", ct)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let r = send(req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.json()["text"].as_str().unwrap().to_string();
        assert!(
            text.contains("300000 bytes")
                && text.contains("speech.mp3")
                && text.contains("whisper-1"),
            "{text}"
        );
    }
    let req = http::Request::post(gw.url("/v1/audio/transcriptions"))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(send(req).await.status, 400);
}

#[tokio::test]
async fn garbage_huge_headers_and_slow_clients_do_not_hurt_the_next_request() {
    let m = mock().await;
    let gw = start(&one_provider(&m, "")).await;
    let garbage = raw(
        gw.addr,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    )
    .await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let reply = raw(gw.addr, huge.as_bytes()).await;
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 431") || reply.starts_with("HTTP/1.1 400"),
        "{}",
        &reply[..reply.len().min(100)]
    );
    let truncated = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\n{{\"model\":"
    );
    // A client that sends half a body and stalls: others must still be served meanwhile.
    let slow = tokio::spawn({
        let addr = gw.addr;
        async move {
            use tokio::io::AsyncWriteExt;
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(truncated.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(s);
        }
    });
    let slowloris = tokio::spawn({
        let addr = gw.addr;
        async move {
            use tokio::io::AsyncWriteExt;
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            for b in b"GET /healthz HTTP/1.1\r\nHo" {
                s.write_all(&[*b]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    for _ in 0..3 {
        let r = post_json(
            &gw.url("/v1/chat/completions"),
            Some(KEY),
            &chat_body("gpt-4o-mini", "still alive?", false),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    slow.await.unwrap();
    slowloris.await.unwrap();
    let r = get(&gw.url("/healthz"), None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish() {
    let m = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(100),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let mut gw = start(&one_provider(&m, "")).await;
    let url = gw.url("/v1/chat/completions");
    let in_flight = tokio::spawn(async move {
        post_json(
            &url,
            Some(KEY),
            &chat_body("gpt-4o-mini", "one two three four five", true),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let server = gw.shutdown();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    // New connections are refused once shut down.
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err());
}

#[tokio::test]
async fn demo_provider_answers_without_network() {
    let rt = llmux::runtime::Runtime::compile(
        &llmux::providers::demo::demo_config(),
        "<demo>",
        Duration::from_secs(100),
    )
    .unwrap()
    .0;
    let gw = start_runtime(rt).await;
    let key = llmux::providers::demo::DEMO_CLIENT_KEY;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(key),
        &chat_body("demo-chat", "ping", false),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(content, llmux::providers::demo::demo_reply("ping"));
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(key),
        r#"{"model":"demo-chat","messages":[{"role":"user","content":"ping"}],"stream":true,"stream_options":{"include_usage":true}}"#,
    )
    .await;
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(streamed, content);
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(key),
        r#"{"model":"demo-embed","input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn providers_without_models_discover_them_and_survive_failures() {
    let m = mock().await;
    let yaml = format!(
        r#"
providers:
  - provider: discovered
    base_url: {}/chat/completions
    api: sk-disc-1111111111
  - provider: unreachable
    base_url: http://127.0.0.1:9/v1
    api: sk-gone-2222222222
api_keys:
  - api: {KEY}
"#,
        m.base_url()
    );
    let text = llmux::cli::ConfigText {
        name: "disc.yaml".into(),
        text: yaml,
        source: llmux::app::ConfigSource::File("disc.yaml".into()),
    };
    let client = llmux::providers::client::UpstreamClient::new().unwrap();
    let (rt, _warnings) = llmux::cli::build_runtime(&text, &client, true, None)
        .await
        .unwrap();
    let models = &rt.channels[0].models;
    assert!(
        models.iter().any(|e| e.alias == "gpt-4o-mini"),
        "{models:?}"
    );
    assert!(rt.channels[1].models.is_empty());
    let discovery = &m.requests()[0];
    assert_eq!(
        (discovery.method.as_str(), discovery.path.as_str()),
        ("GET", "/v1/models")
    );
    assert_eq!(discovery.bearer(), Some("sk-disc-1111111111"));
    let gw = start_runtime(rt).await;
    let r = post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "x", false),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn workers_share_the_port_and_stop_together() {
    use llmux::server::listen::{accepted_per_worker, bind_workers, serve_workers};
    let m = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(100),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let app = llmux::app::App::new(
        compile(&one_provider(&m, "")),
        llmux::providers::client::UpstreamClient::with_workers(3).unwrap(),
    );
    let listeners = bind_workers("127.0.0.1", 0, 3).await.unwrap();
    let addr = listeners[0].local_addr().unwrap();
    assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr));
    // The port is taken: a second gateway (or anything else) cannot bind it.
    assert!(bind_workers("127.0.0.1", addr.port(), 3).await.is_err());
    assert!(bind_workers("127.0.0.1", addr.port(), 1).await.is_err());
    let others = || -> u64 {
        accepted_per_worker()
            .iter()
            .filter(|(w, _)| (1..3).contains(w))
            .map(|(_, n)| n)
            .sum()
    };
    let before = others();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_workers(
        app,
        listeners,
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    // Every stream on a connection of its own, made from another thread so that no worker is
    // busy connecting when the accepts are raced for.
    let url = format!("http://{addr}/v1/chat/completions");
    let clients = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let streams: Vec<_> = (0..24)
                .map(|_| {
                    let url = url.clone();
                    tokio::spawn(async move {
                        post_json(
                            &url,
                            Some(KEY),
                            &chat_body("gpt-4o-mini", "one two three four five six", true),
                        )
                        .await
                    })
                })
                .collect();
            let mut replies = Vec::new();
            for s in streams {
                replies.push(s.await.unwrap());
            }
            replies
        })
    });
    // Shut down only once all 24 are in flight upstream.
    tokio::time::timeout(Duration::from_secs(20), async {
        while m.request_count() < 24 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all streams reach the upstream");
    stop.send(()).unwrap();
    let replies = tokio::task::spawn_blocking(move || clients.join().unwrap())
        .await
        .unwrap();
    for r in replies {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.sse_data().last().map(String::as_str), Some("[DONE]"));
    }
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("every worker stops after its in-flight requests")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    assert!(
        others() > before,
        "workers 1 and 2 accepted none of 24 connections: {:?}",
        accepted_per_worker()
    );
}
