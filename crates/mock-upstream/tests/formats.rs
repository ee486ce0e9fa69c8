//! One conversation, four wire formats: the shared rules give the same
//! reply, tool calls and token counts whichever format carries it, and the
//! recording says which endpoint received what.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mock_upstream::{Endpoint, Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

/// (reply text, prompt tokens, output tokens) of each format's answer.
struct Seen {
    text: String,
    prompt: u64,
    output: u64,
}

async fn chat_seen(s: &MockServer, body: Value) -> Seen {
    let v = post(s, "/chat/completions", body).await.json();
    Seen {
        text: v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("")
            .to_owned(),
        prompt: v["usage"]["prompt_tokens"].as_u64().unwrap(),
        output: v["usage"]["completion_tokens"].as_u64().unwrap(),
    }
}

async fn anthropic_seen(s: &MockServer, body: Value) -> Seen {
    let v = anthropic(s, body).await.json();
    let text = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .map(|b| b["text"].as_str().unwrap())
        .collect();
    Seen {
        text,
        prompt: v["usage"]["input_tokens"].as_u64().unwrap(),
        output: v["usage"]["output_tokens"].as_u64().unwrap(),
    }
}

async fn gemini_seen(s: &MockServer, body: Value) -> Seen {
    let v = gemini(s, "gemini-2.5-flash", "generateContent", body)
        .await
        .json();
    let text = v["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str())
        .collect();
    let u = &v["usageMetadata"];
    Seen {
        text,
        prompt: u["promptTokenCount"].as_u64().unwrap(),
        output: u["candidatesTokenCount"].as_u64().unwrap()
            + u["thoughtsTokenCount"].as_u64().unwrap_or(0),
    }
}

async fn responses_seen(s: &MockServer, body: Value) -> Seen {
    let v = post(s, "/responses", body).await.json();
    let text = v["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["type"] == "message")
        .map(|o| o["content"][0]["text"].as_str().unwrap())
        .collect();
    Seen {
        text,
        prompt: v["usage"]["input_tokens"].as_u64().unwrap(),
        output: v["usage"]["output_tokens"].as_u64().unwrap(),
    }
}

#[tokio::test]
async fn a_tool_round_trip_reads_the_same_in_every_format() {
    let s = server().await;
    let chat = json!({"model": "gpt-4o", "messages": [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "22C sunny"},
        {"role": "user", "content": "Thanks! Tomorrow?"},
    ]});
    let messages = json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief", "messages": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "22C sunny"}]},
        {"role": "user", "content": "Thanks! Tomorrow?"},
    ]});
    let gemini_body = json!({"systemInstruction": {"parts": [{"text": "Be brief"}]}, "contents": [
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"result": "22C sunny"}}}]},
        {"role": "user", "parts": [{"text": "Thanks! Tomorrow?"}]},
    ]});
    let responses = json!({"model": "gpt-4o", "instructions": "Be brief", "input": [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "22C sunny"},
        {"role": "user", "content": "Thanks! Tomorrow?"},
    ]});
    let all = [
        chat_seen(&s, chat).await,
        anthropic_seen(&s, messages).await,
        gemini_seen(&s, gemini_body).await,
        responses_seen(&s, responses).await,
    ];
    for seen in &all {
        assert_eq!(seen.text, "You said: Thanks! Tomorrow?");
        // ceil((8 + 29 + 9 + 17) / 4) = 16.
        assert_eq!(seen.prompt, 16);
        assert_eq!(seen.output, 4);
    }
}

#[tokio::test]
async fn tool_calls_and_arguments_match_across_formats() {
    let s = server().await;
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}});
    let text = "weather in parallel please";
    let chat = post(
        &s,
        "/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}], "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": schema}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
        ]}),
    )
    .await
    .json();
    let from_chat: Vec<(String, Value)> = chat["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let args = serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap();
            (c["function"]["name"].as_str().unwrap().to_owned(), args)
        })
        .collect();

    let ant = anthropic(
        &s,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": text}], "tools": [
            {"name": "get_weather", "input_schema": schema},
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ]}),
    )
    .await
    .json();
    let from_anthropic: Vec<(String, Value)> = ant["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["name"].as_str().unwrap().to_owned(), b["input"].clone()))
        .collect();

    let gem = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        json!({"contents": [{"role": "user", "parts": [{"text": text}]}], "tools": [{"functionDeclarations": [
            {"name": "get_weather", "parametersJsonSchema": schema},
            {"name": "get_time", "parameters": {"type": "OBJECT", "properties": {}}},
        ]}]}),
    )
    .await
    .json();
    let from_gemini: Vec<(String, Value)> = gem["candidates"][0]["content"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let f = &p["functionCall"];
            (f["name"].as_str().unwrap().to_owned(), f["args"].clone())
        })
        .collect();

    let resp = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": text, "tools": [
            {"type": "function", "name": "get_weather", "parameters": schema},
            {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
        ]}),
    )
    .await
    .json();
    let from_responses: Vec<(String, Value)> = resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let args = serde_json::from_str(o["arguments"].as_str().unwrap()).unwrap();
            (o["name"].as_str().unwrap().to_owned(), args)
        })
        .collect();

    let expected = vec![
        (
            "get_weather".to_owned(),
            json!({"city": "mock", "unit": "c"}),
        ),
        ("get_time".to_owned(), json!({})),
    ];
    assert_eq!(from_chat, expected);
    assert_eq!(from_anthropic, expected);
    assert_eq!(from_gemini, expected);
    assert_eq!(from_responses, expected);
    // ceil((26 + 2) / 4) = 7 output tokens everywhere.
    assert_eq!(chat["usage"]["completion_tokens"], 7);
    assert_eq!(ant["usage"]["output_tokens"], 7);
    assert_eq!(gem["usageMetadata"]["candidatesTokenCount"], 7);
    assert_eq!(resp["usage"]["output_tokens"], 7);
}

#[tokio::test]
async fn thinking_and_scripted_replies_are_shared() {
    let s = server().await;
    s.set_reply(Some("Scripted answer here".into()));
    let thinking = [
        anthropic_seen(
            &s,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024},
                   "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await,
        gemini_seen(
            &s,
            json!({"contents": [{"parts": [{"text": "hi"}]}],
                   "generationConfig": {"thinkingConfig": {"includeThoughts": true}}}),
        )
        .await,
        responses_seen(
            &s,
            json!({"model": "gpt-4o", "input": "hi", "reasoning": {"effort": "high"}}),
        )
        .await,
    ];
    for seen in &thinking {
        assert_eq!(seen.text, "Scripted answer here");
        assert_eq!(seen.output, 8 + 3);
    }
    assert_eq!(
        chat_seen(&s, chat_body("hi")).await.text,
        "Scripted answer here"
    );
}

#[tokio::test]
async fn recordings_name_the_endpoint_model_and_streaming() {
    let s = server().await;
    post(&s, "/chat/completions", chat_body("a")).await;
    let mut b = json!({"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "b"}]});
    b["stream"] = json!(true);
    anthropic(&s, b).await;
    call(
        &s,
        Method::POST,
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        json!({"contents": [{"parts": [{"text": "c"}]}]}),
    )
    .await;
    post(&s, "/responses", json!({"model": "gpt-4o", "input": "d"})).await;
    post(&s, "/nowhere", json!({})).await;

    let recorded = s.requests();
    let summary: Vec<(Endpoint, Option<String>, bool)> = recorded
        .iter()
        .map(|r| (r.endpoint, r.model(), r.is_stream()))
        .collect();
    assert_eq!(
        summary,
        [
            (Endpoint::ChatCompletions, Some("gpt-4o-mini".into()), false),
            (
                Endpoint::AnthropicMessages,
                Some("claude-haiku-4-5".into()),
                true
            ),
            (
                Endpoint::GeminiStreamGenerateContent,
                Some("gemini-2.5-pro".into()),
                true
            ),
            (Endpoint::Responses, Some("gpt-4o".into()), false),
            (Endpoint::NotFound, None, false),
        ]
    );
    let sent = recorded[1].json().unwrap();
    assert_eq!(sent["messages"][0]["content"], "b");
    assert_eq!(recorded[1].header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(recorded[2].query.as_deref(), Some("alt=sse"));
}

/// Streams a request and returns its frames and whether the body failed.
async fn stream_frames(
    s: &MockServer,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (Vec<(std::time::Instant, Bytes)>, bool) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", s.root_url()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    frames_timed(resp).await
}

const ANTHROPIC_HEADERS: [(&str, &str); 2] =
    [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];

#[tokio::test]
async fn native_streams_are_paced_and_can_be_dropped() {
    let delay = Duration::from_millis(40);
    let s = MockServer::start(MockOptions {
        chunk_delay: delay,
        reply: Some("one two three".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let messages = json!({"model": "claude-haiku-4-5", "max_tokens": 50, "stream": true,
                          "messages": [{"role": "user", "content": "x"}]});
    let (frames, errored) =
        stream_frames(&s, "/v1/messages", &ANTHROPIC_HEADERS, messages.clone()).await;
    assert!(!errored);
    // start, ping, block start, 3 deltas, block stop, message_delta, stop.
    assert_eq!(frames.len(), 9);
    assert!(frames[8].0 - frames[0].0 >= delay * 8);

    let gemini_path = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse";
    let gemini_body = json!({"contents": [{"parts": [{"text": "x"}]}]});
    let goog = [("x-goog-api-key", "AIza-test")];
    let (frames, errored) = stream_frames(&s, gemini_path, &goog, gemini_body.clone()).await;
    assert!(!errored);
    assert_eq!(frames.len(), 1, "three words fit one chunk");

    // DropMidStream cuts every format after that many events.
    s.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 2 }));
    let (frames, errored) = stream_frames(&s, "/v1/messages", &ANTHROPIC_HEADERS, messages).await;
    assert!(errored, "the connection must drop");
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let names: Vec<String> = named_events(&all).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["message_start", "ping"]);

    s.push_fault(Fault::new(FaultKind::DropMidStream { after_chunks: 2 }));
    let responses = json!({"model": "gpt-4o", "input": "x", "stream": true});
    let bearer = format!("Bearer {KEY}");
    let (frames, errored) = stream_frames(
        &s,
        "/v1/responses",
        &[("authorization", &bearer)],
        responses,
    )
    .await;
    assert!(errored);
    assert_eq!(frames.len(), 2);
}

#[tokio::test]
async fn token_delay_paces_generation_in_every_format() {
    let per_token = Duration::from_millis(30);
    let s = MockServer::start(MockOptions {
        token_delay: per_token,
        reply: Some("a b c d".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    // Buffered answers wait for all 4 tokens before their headers.
    let started = std::time::Instant::now();
    let r = anthropic(&s, json!({"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= per_token * 4,
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let r = gemini(
        &s,
        "gemini-2.5-flash",
        "generateContent",
        json!({"contents": [{"parts": [{"text": "x"}]}]}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() >= per_token * 4,
        "{:?}",
        started.elapsed()
    );
    // Streams spread the same time over their token-bearing events.
    let (frames, _) = stream_frames(
        &s,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
        &[("x-goog-api-key", "AIza-test")],
        json!({"contents": [{"parts": [{"text": "x"}]}]}),
    )
    .await;
    assert_eq!(frames.len(), 2);
    assert!(frames[1].0 - frames[0].0 >= per_token);
}
