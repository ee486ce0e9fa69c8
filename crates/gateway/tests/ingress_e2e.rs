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
    assert!(
        v["error"]["message"].as_str().unwrap().contains("messages"),
        "{v}"
    );
    assert_eq!(mock.request_count(), before + 1);
}

async fn post_with(url: &str, headers: &[(&str, &str)], body: &Value) -> Reply {
    let mut b = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

#[tokio::test]
async fn gemini_client_generates_and_streams_from_an_openai_upstream() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    let body = json!({
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi gemini"}]}],
        "generationConfig": {"maxOutputTokens": 50},
    });
    let reply = post_with(
        &gw.url("/v1beta/models/gpt-4o:generateContent"),
        &[("x-goog-api-key", KEY)],
        &body,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["candidates"][0]["content"]["role"], "model", "{v}");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"],
        "You said: Hi gemini"
    );
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 4, "{v}");
    let up: Value = serde_json::from_slice(&mock.requests().last().unwrap().body).unwrap();
    assert_eq!(up["model"], "gpt-4o", "{up}");
    assert_eq!(up["messages"][0]["content"], "Be brief.");
    assert_eq!(up["max_tokens"], 50);

    // Streaming with alt=sse, key in the query string.
    let url = gw.url(&format!(
        "/v1beta/models/gpt-4o:streamGenerateContent?alt=sse&key={KEY}"
    ));
    let reply = post_with(&url, &[], &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let chunks: Vec<Value> = reply
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.len() >= 2, "{chunks:?}");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: Hi gemini");
    let last = chunks.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP", "{last}");
    assert!(
        last["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0,
        "{last}"
    );

    // Without alt=sse google-genai expects one JSON array.
    let url = gw.url("/v1beta/models/gpt-4o:streamGenerateContent");
    let reply = post_with(&url, &[("x-goog-api-key", KEY)], &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let arr: Vec<Value> =
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{e}: {}", reply.text()));
    let text: String = arr
        .iter()
        .filter_map(|c| c["candidates"][0]["content"]["parts"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "You said: Hi gemini");

    // Errors in Google's shape.
    let reply = post_with(
        &gw.url("/v1beta/models/unknown-model:generateContent"),
        &[("x-goog-api-key", KEY)],
        &body,
    )
    .await;
    assert_eq!(reply.status, 404);
    let v = reply.json();
    assert_eq!(v["error"]["code"], 404, "{v}");
    assert_eq!(v["error"]["status"], "NOT_FOUND", "{v}");
    let reply = post_with(
        &gw.url("/v1beta/models/gpt-4o:generateContent"),
        &[("x-goog-api-key", "wrong")],
        &body,
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["status"], "UNAUTHENTICATED");
}

#[tokio::test]
async fn responses_client_gets_answers_and_streams_from_a_chat_upstream() {
    let mock = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&yaml_for(&mock.base_url(), "gpt-4o")).await;
    let auth = format!("Bearer {KEY}");
    let body = json!({
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": "Hello responses",
    });
    let reply = post_with(&gw.url("/v1/responses"), &[("authorization", &auth)], &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let v = reply.json();
    assert_eq!(v["object"], "response", "{v}");
    assert_eq!(v["status"], "completed");
    let msg = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["type"] == "message")
        .unwrap();
    assert_eq!(msg["content"][0]["type"], "output_text");
    assert_eq!(msg["content"][0]["text"], "You said: Hello responses");
    assert_eq!(v["usage"]["output_tokens"], 4);

    // Stream: the documented event sequence, ending with response.completed.
    let mut sbody = body.clone();
    sbody["stream"] = json!(true);
    let reply = post_with(
        &gw.url("/v1/responses"),
        &[("authorization", &auth)],
        &sbody,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let events: Vec<Value> = reply
        .sse_data()
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "response.created", "{types:?}");
    assert_eq!(*types.last().unwrap(), "response.completed", "{types:?}");
    assert!(types.contains(&"response.output_text.delta"), "{types:?}");
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..seq.len() as u64).collect::<Vec<_>>());
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "You said: Hello responses");

    // previous_response_id cannot be honoured without a store: a clear 400.
    let reply = post_with(
        &gw.url("/v1/responses"),
        &[("authorization", &auth)],
        &json!({"model": "gpt-4o", "input": "x", "previous_response_id": "resp_123"}),
    )
    .await;
    assert_eq!(reply.status, 400);
    let err = reply.openai_error();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("previous_response_id"),
        "{err}"
    );
}

#[tokio::test]
async fn the_demo_answers_every_ingress_format() {
    let gw = start_runtime(
        llmux::runtime::Runtime::compile(
            &llmux::providers::demo::demo_config(),
            "demo",
            std::time::Duration::from_secs(100),
        )
        .unwrap()
        .0,
    )
    .await;
    let key = llmux::providers::demo::DEMO_CLIENT_KEY;
    let reply = post_with(
        &gw.url("/v1/messages"),
        &[("x-api-key", key)],
        &json!({"model": "demo-chat", "max_tokens": 50, "messages": [{"role": "user", "content": "ping"}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json()["content"][0]["text"],
        "Hello from the llmux demo provider! You said: ping"
    );
    let reply = post_with(
        &gw.url("/v1beta/models/demo-chat:streamGenerateContent?alt=sse"),
        &[("x-goog-api-key", key)],
        &json!({"contents": [{"role": "user", "parts": [{"text": "ping"}]}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let text: String = reply
        .sse_data()
        .iter()
        .filter_map(|d| {
            serde_json::from_str::<Value>(d).ok()?["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "Hello from the llmux demo provider! You said: ping");
    let reply = post_with(
        &gw.url("/v1/responses"),
        &[("authorization", &format!("Bearer {key}"))],
        &json!({"model": "demo-chat", "input": "ping"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["status"], "completed");
    // Token counting, locally.
    let reply = post_with(
        &gw.url("/v1/messages/count_tokens"),
        &[("x-api-key", key)],
        &json!({"model": "demo-chat", "messages": [{"role": "user", "content": "12345678"}]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["input_tokens"], 2 + 4);
    let reply = get(&gw.url("/v1/providers"), Some(key)).await;
    assert_eq!(reply.status, 200);
    let v = reply.json();
    assert_eq!(v["data"][0]["provider"], "demo", "{v}");
    assert!(!reply.text().contains(key));
}
