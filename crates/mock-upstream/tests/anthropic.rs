//! Anthropic's Messages API: validation with Anthropic's messages, the
//! shared reply and tool rules, thinking with verifiable signatures, the
//! exact streaming event sequence, prompt caching, faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn body(content: &str) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": content}],
    })
}

fn weather_tools() -> Value {
    json!([
        {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}},
        {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
    ])
}

fn assert_invalid(r: &Resp, message: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["message"], message);
    assert!(v["request_id"].as_str().unwrap().starts_with("req_011C"));
}

#[tokio::test]
async fn text_reply_with_usage_and_headers() {
    let s = server().await;
    let mut b = body("Hello   there");
    b["system"] = json!([{"type": "text", "text": "Be brief"}]);
    let r = anthropic(&s, b).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("request-id").unwrap().starts_with("req_011C"));
    let v = r.json();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("msg_01") && id.len() == 28, "{id}");
    assert_eq!(
        v,
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "You said: Hello there"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            // ceil((8 + 13) / 4) = 6 input tokens, 4 words out.
            "usage": {
                "input_tokens": 6,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
                "output_tokens": 4,
                "service_tier": "standard",
            },
        })
    );
}

#[tokio::test]
async fn stop_sequences_and_max_tokens() {
    let s = server().await;
    let mut b = body("Hi there friend");
    b["stop_sequences"] = json!(["nope", "there"]);
    let v = anthropic(&s, b).await.json();
    assert_eq!(v["content"][0]["text"], "You said: Hi ");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "there");
    assert_eq!(v["usage"]["output_tokens"], 3);

    let mut b = body("Hi there friend");
    b["max_tokens"] = json!(2);
    let v = anthropic(&s, b).await.json();
    assert_eq!(v["content"][0]["text"], "You said:");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 2);

    // max_tokens 0 (cache pre-warming) generates nothing.
    let mut b = body("Hi");
    b["max_tokens"] = json!(0);
    let v = anthropic(&s, b).await.json();
    assert_eq!(v["content"], json!([]));
    assert_eq!(v["stop_reason"], "max_tokens");
}

#[tokio::test]
async fn validation_errors_use_anthropics_messages() {
    let s = server().await;
    let user = json!([{"role": "user", "content": "hi"}]);
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"max_tokens": 5, "messages": user}),
            "model: Field required",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "messages": user}),
            "max_tokens: Field required",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}),
            "messages: at least one message is required",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": ""}]}),
            "messages.0: all messages must have non-empty content except for the optional final assistant message",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}),
            "messages: text content blocks must be non-empty",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": user, "stream_options": {}}),
            "stream_options: Extra inputs are not permitted",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": user, "system": 5}),
            "system: Input should be a valid string",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5000, "messages": user, "thinking": {"type": "enabled", "budget_tokens": 512}}),
            "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": user, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-window-size",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5000, "messages": user, "temperature": 0.2, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#important-considerations-when-using-extended-thinking",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5000, "messages": user, "tools": weather_tools(), "tool_choice": {"type": "any"}, "thinking": {"type": "enabled", "budget_tokens": 1024}}),
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}},
                    {"type": "tool_use", "id": "toolu_B", "name": "get_time", "input": {}},
                ]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_A", "content": "sunny"}]},
            ]}),
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_B. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
        ),
        (
            json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_Z", "content": "x"}]},
            ]}),
            "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_Z. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
        ),
    ];
    for (b, message) in cases {
        let r = anthropic(&s, b.clone()).await;
        assert_invalid(&r, message);
    }

    // Consecutive user messages merge into one turn, so a tool result may
    // sit in the second of them.
    let merged = json!({"model": "claude-sonnet-4-5", "max_tokens": 50, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": "here it is"},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_A", "content": "sunny"}]},
    ]});
    assert_eq!(anthropic(&s, merged).await.status, 200);

    let r = anthropic(
        &s,
        json!({"model": "gpt-4", "max_tokens": 5, "messages": user}),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"],
        json!({"type": "not_found_error", "message": "model: gpt-4"})
    );

    let url = "/v1/messages";
    let r = call(&s, Method::POST, url, &[("x-api-key", KEY)], body("hi")).await;
    assert_invalid(&r, "anthropic-version: header is required");
    let r = call(
        &s,
        Method::POST,
        url,
        &[("anthropic-version", "2023-06-01")],
        body("hi"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json()["error"],
        json!({"type": "authentication_error", "message": "x-api-key header is required"})
    );
    let r = call(
        &s,
        Method::POST,
        url,
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        Value::Null,
    )
    .await;
    assert_invalid(&r, "There was an issue with the request body: invalid JSON");
}

#[tokio::test]
async fn tool_use_follows_the_shared_triggers() {
    let s = server().await;
    let with_tools = |content: &str, choice: Option<Value>| {
        let mut b = body(content);
        b["tools"] = weather_tools();
        if let Some(c) = choice {
            b["tool_choice"] = c;
        }
        b
    };
    let names = |v: &Value| -> Vec<String> {
        v["content"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| b["name"].as_str().unwrap().to_owned())
            .collect()
    };

    let v = anthropic(&s, with_tools("hello", None)).await.json();
    assert!(names(&v).is_empty());
    assert_eq!(v["stop_reason"], "end_turn");

    let v = anthropic(&s, with_tools("What's the WEATHER?", None))
        .await
        .json();
    assert_eq!(names(&v), ["get_weather"]);
    assert_eq!(v["stop_reason"], "tool_use");
    let call = &v["content"][0];
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("toolu_01") && id.len() == 6 + 24, "{id}");
    assert!(id[6..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(call["input"], json!({"city": "mock", "unit": "c"}));
    // ceil(len(`{"city":"mock","unit":"c"}`) / 4) = 7.
    assert_eq!(v["usage"]["output_tokens"], 7);

    let v = anthropic(&s, with_tools("weather in parallel", None))
        .await
        .json();
    assert_eq!(names(&v), ["get_weather", "get_time"]);
    assert_ne!(v["content"][0]["id"], v["content"][1]["id"]);

    let v = anthropic(
        &s,
        with_tools(
            "weather in parallel",
            Some(json!({"type": "auto", "disable_parallel_tool_use": true})),
        ),
    )
    .await
    .json();
    assert_eq!(names(&v), ["get_weather"]);

    let v = anthropic(&s, with_tools("weather", Some(json!({"type": "none"}))))
        .await
        .json();
    assert!(names(&v).is_empty());
    let v = anthropic(&s, with_tools("hi", Some(json!({"type": "any"}))))
        .await
        .json();
    assert_eq!(names(&v), ["get_weather"]);
    let v = anthropic(
        &s,
        with_tools("hi", Some(json!({"type": "tool", "name": "get_time"}))),
    )
    .await
    .json();
    assert_eq!(names(&v), ["get_time"]);
    assert_eq!(v["content"][0]["input"], json!({}));

    // Answering the call ends the loop: the last turn is a tool result, so
    // the reply is text again.
    let mut b = with_tools("weather?", None);
    b["messages"] = json!([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "22C"}]},
    ]);
    let v = anthropic(&s, b).await.json();
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "You said: weather?"}])
    );
}

fn event_names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test]
async fn stream_event_sequence_for_text() {
    let s = server().await;
    let mut b = body("Hi there");
    b["stream"] = json!(true);
    let r = anthropic(&s, b).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    assert!(
        r.text()
            .contains("event: ping\ndata: {\"type\": \"ping\"}\n\n")
    );
    let events = named_events(&r.body);
    assert_eq!(
        event_names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["input_tokens"], 2);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert_eq!(
        events[2].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    let deltas: Vec<&str> = events[3..7]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "text_delta");
            d["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, ["You", " said:", " Hi", " there"]);
    assert_eq!(
        events[7].1,
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[8].1,
        json!({"type": "message_delta",
               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"input_tokens": 2, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0, "output_tokens": 4}})
    );
    assert_eq!(events[9].1, json!({"type": "message_stop"}));
}

#[tokio::test]
async fn stream_with_thinking_and_tool_use() {
    let s = server().await;
    let mut b = body("weather please");
    b["max_tokens"] = json!(4096);
    b["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    b["tools"] = weather_tools();
    let buffered = anthropic(&s, b.clone()).await.json();
    b["stream"] = json!(true);
    let events = named_events(&anthropic(&s, b).await.body);
    let names = event_names(&events);
    let thinking_deltas = 8; // "Let me think about how to answer this."
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n(
        "content_block_delta",
        thinking_deltas + 1,
    ));
    expected.extend(["content_block_stop", "content_block_start"]);
    expected.extend(std::iter::repeat_n("content_block_delta", 1 + 4));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected);

    assert_eq!(
        events[2].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    let thinking: String = events[3..3 + thinking_deltas]
        .iter()
        .map(|(_, d)| d["delta"]["thinking"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(thinking, "Let me think about how to answer this.");
    let sig = &events[3 + thinking_deltas].1["delta"];
    assert_eq!(sig["type"], "signature_delta");
    // The same thinking gets the same signature, streamed or not.
    assert_eq!(buffered["content"][0]["signature"], sig["signature"]);
    assert_eq!(buffered["content"][0]["thinking"], thinking.as_str());

    let tool_start = &events[13].1;
    assert_eq!(tool_start["index"], 1);
    assert_eq!(tool_start["content_block"]["type"], "tool_use");
    assert_eq!(tool_start["content_block"]["name"], "get_weather");
    assert_eq!(tool_start["content_block"]["input"], json!({}));
    let partial: Vec<&str> = events[14..19]
        .iter()
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap())
        .collect();
    assert_eq!(partial[0], "", "the first input_json_delta is empty");
    assert_eq!(partial.concat(), r#"{"city":"mock","unit":"c"}"#);
    let delta = &events[20].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 8 + 7);
    assert_eq!(buffered["usage"]["output_tokens"], 8 + 7);
}

#[tokio::test]
async fn thinking_signatures_are_verified_on_replay() {
    let s = server().await;
    let mut b = body("weather please");
    b["max_tokens"] = json!(4096);
    b["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    b["tools"] = weather_tools();
    let first = anthropic(&s, b.clone()).await.json();
    let call_id = first["content"][1]["id"].clone();
    let replay = |assistant: Value| {
        let mut next = b.clone();
        next["messages"] = json!([
            {"role": "user", "content": "weather please"},
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny"}]},
        ]);
        next
    };
    let ok = anthropic(&s, replay(first["content"].clone())).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(
        ok.json()["content"][1],
        json!({"type": "text", "text": "You said: weather please"})
    );

    let mut tampered = first["content"].clone();
    tampered[0]["thinking"] = json!("Something else entirely.");
    assert_invalid(
        &anthropic(&s, replay(tampered)).await,
        "messages.1.content.0: Invalid `signature` in `thinking` block",
    );

    let without_thinking = json!([first["content"][1].clone()]);
    assert_invalid(
        &anthropic(&s, replay(without_thinking)).await,
        "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found `tool_use`. When `thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
    );

    // Adaptive thinking with `display: omitted` keeps the signature only.
    let mut b = body("hi");
    b["thinking"] = json!({"type": "adaptive", "display": "omitted"});
    let v = anthropic(&s, b).await.json();
    assert_eq!(v["content"][0]["type"], "thinking");
    assert_eq!(v["content"][0]["thinking"], "");
    assert!(!v["content"][0]["signature"].as_str().unwrap().is_empty());
    assert_eq!(v["usage"]["output_tokens"], 8 + 3);
}

#[tokio::test]
async fn prompt_cache_creation_then_read() {
    let s = server().await;
    let system = "You are a helpful assistant with a long shared preamble."; // 56 chars
    let b = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "abcd"}],
    });
    let first = anthropic(&s, b.clone()).await.json();
    // Prompt ceil(60 / 4) = 15; the cached prefix is ceil(56 / 4) = 14.
    assert_eq!(first["usage"]["cache_creation_input_tokens"], 14);
    assert_eq!(first["usage"]["cache_read_input_tokens"], 0);
    assert_eq!(first["usage"]["input_tokens"], 1);
    assert_eq!(
        first["usage"]["cache_creation"]["ephemeral_5m_input_tokens"],
        14
    );
    let second = anthropic(&s, b.clone()).await.json();
    assert_eq!(second["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(second["usage"]["cache_read_input_tokens"], 14);
    assert_eq!(second["usage"]["input_tokens"], 1);

    // A different prefix is a new cache entry; a 1h TTL lands in its bucket.
    let mut other = b.clone();
    other["system"][0]["text"] = json!("Another preamble.");
    other["system"][0]["cache_control"]["ttl"] = json!("1h");
    let v = anthropic(&s, other).await.json();
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 5);
    assert_eq!(v["usage"]["cache_creation"]["ephemeral_1h_input_tokens"], 5);

    // Without cache_control nothing is cached.
    let v = anthropic(&s, body("abcd")).await.json();
    assert_eq!(v["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(v["usage"]["cache_read_input_tokens"], 0);
}

#[tokio::test]
async fn count_tokens_route() {
    let s = server().await;
    let r = call(
        &s,
        Method::POST,
        "/v1/messages/count_tokens",
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        json!({"model": "claude-sonnet-4-5", "system": "abcd", "messages": [{"role": "user", "content": "abcdefgh"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"input_tokens": 3}));
    let r = call(
        &s,
        Method::POST,
        "/v1/messages/count_tokens",
        &[("x-api-key", KEY), ("anthropic-version", "2023-06-01")],
        json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_invalid(&r, "max_tokens: Extra inputs are not permitted");
}

#[tokio::test]
async fn faults_answer_in_anthropics_words() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::ServerError));
    let r = anthropic(&s, body("x")).await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.json()["error"],
        json!({"type": "api_error", "message": "Internal server error"})
    );

    s.push_fault(Fault::new(FaultKind::Overloaded));
    let r = anthropic(&s, body("x")).await;
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");

    s.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 7,
    }));
    let r = anthropic(&s, body("x")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );

    s.push_fault(Fault::new(FaultKind::ContextLengthExceeded));
    let r = anthropic(&s, body("abcdefgh")).await;
    assert_invalid(&r, "prompt is too long: 200002 tokens > 200000 maximum");

    s.push_fault(Fault::new(FaultKind::EmptyReply));
    let v = anthropic(&s, body("x")).await.json();
    assert_eq!(v["content"], json!([]));
    assert_eq!(v["usage"]["output_tokens"], 0);

    // Mid-stream: three events, then Anthropic's `error` event, then the end.
    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 3 }));
    let mut b = body("Hi there");
    b["stream"] = json!(true);
    let events = named_events(&anthropic(&s, b.clone()).await.body);
    assert_eq!(
        event_names(&events),
        ["message_start", "ping", "content_block_start", "error"]
    );
    assert_eq!(
        events[3].1,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    // A buffered request fails as a whole.
    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 3 }));
    assert_eq!(anthropic(&s, body("x")).await.status, 500);
}
