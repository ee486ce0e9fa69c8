//! Cloudflare Workers AI text generation: the API envelope, SSE stream,
//! both tool-call shapes and Cloudflare's errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use mock_upstream::{Endpoint, Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

const MODEL: &str = "@cf/meta/llama-3.1-8b-instruct";

async fn run(server: &MockServer, model: &str, body: Value) -> Resp {
    call(
        server,
        Method::POST,
        &format!("/client/v4/accounts/acc123/ai/run/{model}"),
        &[
            ("authorization", "Bearer cf-token"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

#[tokio::test]
async fn answers_in_the_result_envelope() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let r = run(
        &server,
        MODEL,
        json!({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({
            "result": {"response": "You said: Hello there", "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}},
            "success": true, "errors": [], "messages": [],
        })
    );
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::CloudflareRun);
    assert_eq!(rec.model().as_deref(), Some(MODEL));
    assert_eq!(rec.bearer(), Some("cf-token"));
}

#[tokio::test]
async fn streams_responses_then_usage_then_done() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let r = run(
        &server,
        MODEL,
        json!({"stream": true, "messages": [{"role": "user", "content": "one two three"}]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = r.sse();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .map(|c| c["response"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "You said: one two three");
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9})
    );
}

#[tokio::test]
async fn tool_calls_come_back_in_the_shape_the_tools_were_offered() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let classic = json!([
        {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "description": "Time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": []}}
    ]);
    let ask = json!([{"role": "user", "content": "weather and time in parallel"}]);
    let v = run(&server, MODEL, json!({"messages": ask, "tools": classic}))
        .await
        .json();
    assert_eq!(v["result"]["response"], Value::Null);
    assert_eq!(
        v["result"]["tool_calls"],
        json!([
            {"name": "get_weather", "arguments": {"city": "mock"}},
            {"name": "get_time", "arguments": {"tz": "mock"}},
        ])
    );
    let openai: Vec<Value> = classic
        .as_array()
        .unwrap()
        .iter()
        .map(|t| json!({"type": "function", "function": t}))
        .collect();
    let v = run(&server, MODEL, json!({"messages": ask, "tools": openai}))
        .await
        .json();
    let calls = v["result"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"mock"}"#);
    assert!(calls[0]["id"].is_string());
    // Streamed, the calls come in one event before the usage.
    let r = run(
        &server,
        MODEL,
        json!({"messages": ask, "tools": classic, "stream": true}),
    )
    .await;
    let events = r.sse();
    let calls: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
    assert_eq!(calls["tool_calls"][1]["name"], "get_time");
}

#[tokio::test]
async fn errors_use_the_cloudflare_envelope() {
    let server = MockServer::start(MockOptions {
        api_keys: vec!["cf-token".to_owned()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let r = call(
        &server,
        Method::POST,
        &format!("/client/v4/accounts/acc123/ai/run/{MODEL}"),
        &[("authorization", "Bearer nope")],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"result": null, "success": false, "errors": [{"code": 10000, "message": "Authentication error"}], "messages": []})
    );
    let r = run(&server, "llama-3", body.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["errors"][0],
        json!({"code": 5007, "message": "No such model llama-3 or task"})
    );
    let r = run(&server, MODEL, json!({"messages": []})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errors"][0]["code"], 5006);
    server.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 1,
    }));
    let r = run(&server, MODEL, body).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["success"], false);
}
