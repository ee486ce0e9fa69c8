//! Cohere Chat API v2 (`POST /v2/chat`): answers, SSE events, tools,
//! thinking and errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use mock_upstream::{Endpoint, Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

async fn chat(server: &MockServer, body: Value) -> Resp {
    call(
        server,
        Method::POST,
        "/v2/chat",
        &[
            ("authorization", "Bearer co-key"),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

fn tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
    ])
}

#[tokio::test]
async fn text_answer_with_billed_and_total_usage() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let r = chat(&server, json!({
        "model": "command-a-03-2025",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}],
    }))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"].as_str().unwrap().len(), 36);
    assert_eq!(v["finish_reason"], "COMPLETE");
    assert_eq!(
        v["message"],
        json!({"role": "assistant", "content": [{"type": "text", "text": "You said: Hello there"}]})
    );
    assert_eq!(
        v["usage"],
        json!({
            "billed_units": {"input_tokens": 5, "output_tokens": 4},
            "tokens": {"input_tokens": 15, "output_tokens": 4},
        })
    );
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::CohereChat);
    assert_eq!(rec.model().as_deref(), Some("command-a-03-2025"));
}

#[tokio::test]
async fn stream_events_are_named_and_typed() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let r = chat(
        &server,
        json!({
            "model": "command-r-plus",
            "stream": true,
            "thinking": {"type": "enabled", "token_budget": 100},
            "messages": [{"role": "user", "content": "one two three"}],
        }),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = named_events(&r.body);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message-start");
    assert_eq!(names[1], "content-start");
    assert_eq!(
        events[1].1["delta"]["message"]["content"]["type"],
        "thinking"
    );
    assert_eq!(names.last(), Some(&"message-end"));
    let thinking: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["message"]["content"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Let me think about how to answer this.");
    let text: String = events
        .iter()
        .filter(|(n, d)| n == "content-delta" && d["index"] == 1)
        .map(|(_, d)| {
            d["delta"]["message"]["content"]["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "You said: one two three");
    let end = &events.last().unwrap().1["delta"];
    assert_eq!(end["finish_reason"], "COMPLETE");
    // 8 thinking + 5 reply tokens.
    assert_eq!(end["usage"]["billed_units"]["output_tokens"], 13);
}

#[tokio::test]
async fn parallel_tool_calls_with_a_plan_and_results_by_id() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let ask = json!({"role": "user", "content": "weather and time in parallel"});
    let v = chat(
        &server,
        json!({"model": "command-a-03-2025", "tools": tools(), "messages": [ask]}),
    )
    .await
    .json();
    assert_eq!(v["finish_reason"], "TOOL_CALL");
    assert_eq!(
        v["message"]["tool_plan"],
        "I will call get_weather and get_time."
    );
    let calls = v["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert!(calls[0]["id"].as_str().unwrap().starts_with("get_weather_"));
    assert_eq!(calls[0]["function"]["arguments"], r#"{"city":"mock"}"#);
    assert_eq!(calls[1]["function"]["name"], "get_time");
    // Streamed: the plan, then each call's start, argument pieces and end.
    let r = chat(
        &server,
        json!({"model": "command-a-03-2025", "tools": tools(), "stream": true, "messages": [ask]}),
    )
    .await;
    let events = named_events(&r.body);
    let plan: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["message"]["tool_plan"].as_str())
        .collect();
    assert_eq!(plan, "I will call get_weather and get_time.");
    let starts: Vec<&Value> = events
        .iter()
        .filter(|(n, _)| n == "tool-call-start")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[1]["index"], 1);
    assert_eq!(
        starts[1]["delta"]["message"]["tool_calls"]["function"]["name"],
        "get_time"
    );
    let args: String = events
        .iter()
        .filter(|(n, d)| n == "tool-call-delta" && d["index"] == 0)
        .map(|(_, d)| {
            d["delta"]["message"]["tool_calls"]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(args, r#"{"city":"mock"}"#);
    assert_eq!(
        events.last().unwrap().1["delta"]["finish_reason"],
        "TOOL_CALL"
    );
    // Results go back as tool messages, one per call id.
    let history = json!([
        ask,
        {"role": "assistant", "tool_plan": v["message"]["tool_plan"], "tool_calls": v["message"]["tool_calls"]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
        {"role": "tool", "tool_call_id": calls[1]["id"], "content": [{"type": "text", "text": "noon"}]},
    ]);
    let r = chat(
        &server,
        json!({"model": "command-a-03-2025", "tools": tools(), "messages": history}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["finish_reason"], "COMPLETE");
    let mut partial = history.clone();
    partial.as_array_mut().unwrap().pop();
    let r = chat(
        &server,
        json!({"model": "command-a-03-2025", "tools": tools(), "messages": partial}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        format!(
            "invalid request: messages[1]: tool call '{}' has no tool result message",
            calls[1]["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn errors_are_cohere_shaped() {
    let server = MockServer::start(MockOptions {
        api_keys: vec!["co-key".to_owned()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let body =
        json!({"model": "command-a-03-2025", "messages": [{"role": "user", "content": "hi"}]});
    let r = call(&server, Method::POST, "/v2/chat", &[], body.clone()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "no api key supplied");
    let r = call(
        &server,
        Method::POST,
        "/v2/chat",
        &[("authorization", "Bearer wrong")],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "invalid api token");
    let r = chat(
        &server,
        json!({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["message"],
        "model 'gpt-4' not found, make sure the correct model ID was used and that you have access to the model."
    );
    let r = chat(
        &server,
        json!({"model": "command-a-03-2025", "messages": [{"role": "bot", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid request: messages[0].role")
    );
    server.push_fault(Fault::new(FaultKind::ServerError));
    let r = chat(&server, body.clone()).await;
    assert_eq!(r.status, 500);
    assert!(r.json()["id"].is_string());
    server.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 1,
    }));
    assert_eq!(chat(&server, body.clone()).await.status, 429);
    // A failure mid-stream is a message-end with an error.
    server.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 2 }));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = chat(&server, streamed).await;
    let events = named_events(&r.body);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].1["delta"]["finish_reason"], "ERROR");
    assert!(events[2].1["delta"]["error"].is_string());
}
