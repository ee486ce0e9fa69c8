//! Anthropic, Gemini and Responses clients reaching OpenAI-format upstreams (and OpenAI clients
//! reaching other formats) through the IR, against mock-upstream over real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

const KEY: &str = "sk-client";

fn yaml_for(base_url: &str, model: &str) -> String {
    format!(
        "providers:\n  - provider: up\n    base_url: {base_url}\n    api: sk-upstream\n    model:\n      - {model}\napi_keys:\n  - api: {KEY}\n"
    )
}

async fn post_anthropic(url: &str, body: &Value) -> Reply {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(req).await
}

/// Anthropic SSE: (event name, data JSON) pairs.
fn anthropic_events(reply: &Reply) -> Vec<(String, Value)> {
    reply
        .text()
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let mut name = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, serde_json::from_str(&data).unwrap_or(Value::Null))
        })
        .collect()
}

#[tokio::test]
async fn anthropic_client_gets_a_messages_answer_from_an_openai_upstream() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "Hello there"}],
    });
    let reply = post_anthropic(&gw.url("/v1/messages"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], "You said: Hello there");
    assert_eq!(v["stop_reason"], "end_turn");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["usage"]["output_tokens"], 4);
    // The upstream received an OpenAI chat body with the system prompt first.
    let sent = mock.requests();
    let up: Value = serde_json::from_slice(&sent.last().unwrap().body).unwrap();
    assert_eq!(up["messages"][0]["role"], "system");
    assert_eq!(up["messages"][0]["content"], "Be brief.");
    assert_eq!(up["messages"][1]["content"], "Hello there");
    assert_eq!(up["max_tokens"], 100);
}

#[tokio::test]
async fn anthropic_client_streams_with_the_exact_event_sequence() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 100,
        "stream": true,
        "messages": [{"role": "user", "content": "one two three"}],
    });
    let reply = post_anthropic(&gw.url("/v1/messages"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = anthropic_events(&reply);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert_eq!(names[names.len() - 2], "message_delta", "{names:?}");
    assert!(names.contains(&"content_block_start"));
    assert!(names.contains(&"content_block_stop"));
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(text, "You said: one two three");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert_eq!(delta["usage"]["output_tokens"], 5, "{delta}");
    // The upstream was asked for usage although the Anthropic client could not ask.
    let up: Value = serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
    assert_eq!(up["stream_options"]["include_usage"], true, "{up}");
}

#[tokio::test]
async fn anthropic_client_runs_a_parallel_tool_round_trip_against_an_openai_upstream() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    let tools = json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        {"name": "get_time", "description": "Time", "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}}}
    ]);
    let first = json!({
        "model": "gpt-4o", "max_tokens": 200, "tools": tools,
        "messages": [{"role": "user", "content": "weather and time, in parallel please"}],
    });
    let reply = post_anthropic(&gw.url("/v1/messages"), &first).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["stop_reason"], "tool_use", "{v}");
    let calls: Vec<&Value> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(calls.len(), 2, "{v}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[1]["name"], "get_time");
    assert_eq!(calls[0]["input"]["city"], "mock");
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    // Second turn: both results go back; the upstream sees two tool messages with the ids.
    let second = json!({
        "model": "gpt-4o", "max_tokens": 200, "tools": tools,
        "messages": [
            {"role": "user", "content": "weather and time, in parallel please"},
            {"role": "assistant", "content": v["content"]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": calls[0]["id"], "content": "sunny"},
                {"type": "tool_result", "tool_use_id": calls[1]["id"], "content": "noon"}
            ]}
        ],
    });
    let reply = post_anthropic(&gw.url("/v1/messages"), &second).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let up: Value = serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
    let msgs = up["messages"].as_array().unwrap();
    let tool_msgs: Vec<&Value> = msgs.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(tool_msgs.len(), 2, "{up}");
    assert_eq!(tool_msgs[0]["tool_call_id"], calls[0]["id"]);
    assert_eq!(tool_msgs[1]["tool_call_id"], calls[1]["id"]);
    let assistant = msgs.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn anthropic_errors_come_back_in_anthropic_shape() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    // Unknown model: 404 in Anthropic's error shape.
    let reply = post_anthropic(
        &gw.url("/v1/messages"),
        &json!({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(reply.status, 404);
    let v = reply.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "not_found_error", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));
    // Wrong key: 401 authentication_error.
    let req = Request::post(gw.url("/v1/messages"))
        .header("x-api-key", "sk-wrong")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let reply = send(req).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["type"], "authentication_error");
    // An upstream 400 (OpenAI-shaped) is re-shaped for the Anthropic client, status and
    // message kept, and not retried.
    mock.push_fault(Fault::new(FaultKind::BadRequest {
        message: "messages: bad shape".into(),
    }));
    let before = mock.request_count();
    let reply = post_anthropic(
        &gw.url("/v1/messages"),
        &json!({"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["message"], "messages: bad shape", "{v}");
    assert_eq!(mock.request_count(), before + 1);
    // A malformed Anthropic body: 400 naming the problem, before any upstream call.
    let reply = post_anthropic(
        &gw.url("/v1/messages"),
        &json!({"model": "gpt-4o", "max_tokens": 5, "messages": "not a list"}),
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("messages"), "{v}");
    assert_eq!(mock.request_count(), before + 1);
}
