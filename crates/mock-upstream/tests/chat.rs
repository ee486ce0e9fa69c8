//! `POST /v1/chat/completions` against the field names of the official SDK's
//! `ChatCompletion`, `ChatCompletionChunk` and `CompletionUsage` types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::Method;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn assert_usage(usage: &Value, prompt: u64, completion: u64) {
    assert_eq!(usage["prompt_tokens"], prompt, "{usage}");
    assert_eq!(usage["completion_tokens"], completion, "{usage}");
    assert_eq!(usage["total_tokens"], prompt + completion, "{usage}");
    assert_eq!(
        usage["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
    assert_eq!(
        usage["completion_tokens_details"],
        json!({"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0})
    );
}

#[tokio::test]
async fn non_stream_completion_has_every_sdk_field() {
    let s = server().await;
    let r = post(
        &s,
        "/chat/completions",
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "abcd"},
                {"role": "user", "content": "Hello   world"},
            ],
        }),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["service_tier"], "default");
    assert!(v["system_fingerprint"].as_str().unwrap().starts_with("fp_"));
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(
        choices[0],
        json!({
            "index": 0,
            "message": {"role": "assistant", "content": "You said: Hello world", "refusal": null, "annotations": []},
            "logprobs": null,
            "finish_reason": "stop",
        })
    );
    // prompt: ceil((4 + 13) / 4) = 5; completion: 4 words.
    assert_usage(&v["usage"], 5, 4);
}

#[tokio::test]
async fn ids_differ_between_requests() {
    let s = server().await;
    let a = post(&s, "/chat/completions", chat_body("x")).await.json();
    let b = post(&s, "/chat/completions", chat_body("x")).await.json();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["choices"], b["choices"]);
}

#[tokio::test]
async fn default_reply_without_user_text_and_array_content() {
    let s = server().await;
    let r = post(
        &s,
        "/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "developer", "content": "be brief"}]}),
    )
    .await
    .json();
    assert_eq!(
        r["choices"][0]["message"]["content"],
        "Hello! This is a mock reply."
    );

    let r = post(
        &s,
        "/chat/completions",
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "abc"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "def"},
        ]}]}),
    )
    .await
    .json();
    assert_eq!(r["choices"][0]["message"]["content"], "You said: abc def");
    assert_usage(&r["usage"], 2, 4);
}

#[tokio::test]
async fn scripted_reply_option_and_set_reply() {
    let s = MockServer::start(MockOptions {
        reply: Some("Fixed answer here".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let r = post(&s, "/chat/completions", chat_body("anything"))
        .await
        .json();
    assert_eq!(r["choices"][0]["message"]["content"], "Fixed answer here");
    assert_eq!(r["usage"]["completion_tokens"], 3);

    s.set_reply(Some("Other".into()));
    let r = post(&s, "/chat/completions", chat_body("anything"))
        .await
        .json();
    assert_eq!(r["choices"][0]["message"]["content"], "Other");

    s.set_reply(None);
    let r = post(&s, "/chat/completions", chat_body("anything"))
        .await
        .json();
    assert_eq!(r["choices"][0]["message"]["content"], "You said: anything");
}

#[tokio::test]
async fn n_choices_and_max_tokens_truncate_with_length() {
    let s = server().await;
    s.set_reply(Some("one two three four".into()));
    for limit in ["max_tokens", "max_completion_tokens"] {
        let mut body = chat_body("hi");
        body["n"] = json!(3);
        body[limit] = json!(2);
        let v = post(&s, "/chat/completions", body).await.json();
        let choices = v["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 3);
        for (i, c) in choices.iter().enumerate() {
            assert_eq!(c["index"], i);
            assert_eq!(c["message"]["content"], "one two");
            assert_eq!(c["finish_reason"], "length");
        }
        assert_usage(&v["usage"], 1, 6);
    }
    // A limit that is not hit keeps "stop".
    let mut body = chat_body("hi");
    body["max_tokens"] = json!(10);
    let v = post(&s, "/chat/completions", body).await.json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["message"]["content"], "one two three four");
}

#[tokio::test]
async fn stream_with_usage_follows_openai_event_sequence() {
    let s = server().await;
    let mut body = chat_body("Hi there");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&s, "/chat/completions", body).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = r.sse();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks = r.chunks();
    // role, 4 words ("You said: Hi there"), finish, usage.
    assert_eq!(chunks.len(), 7, "{events:#?}");

    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert_eq!(c["created"], chunks[0]["created"]);
        assert!(c["system_fingerprint"].is_string());
        assert!(c.as_object().unwrap().contains_key("usage"));
    }
    let (usage_chunk, body_chunks) = chunks.split_last().unwrap();
    for c in body_chunks {
        assert!(c["usage"].is_null());
        let choice = &c["choices"][0];
        assert_eq!(choice["index"], 0);
        assert!(choice["logprobs"].is_null());
    }
    assert_eq!(
        body_chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": "", "refusal": null})
    );
    assert!(body_chunks[0]["choices"][0]["finish_reason"].is_null());
    let text: String = body_chunks[1..5]
        .iter()
        .map(|c| {
            let d = c["choices"][0]["delta"].as_object().unwrap();
            assert_eq!(d.len(), 1, "content-only delta: {d:?}");
            d["content"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "You said: Hi there");
    assert_eq!(body_chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(body_chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_usage(&usage_chunk["usage"], 2, 4);
}

#[tokio::test]
async fn stream_without_usage_has_no_usage_field() {
    let s = server().await;
    let mut body = chat_body("x");
    body["stream"] = json!(true);
    let r = post(&s, "/chat/completions", body).await;
    let chunks = r.chunks();
    assert!(!chunks.is_empty());
    for c in &chunks {
        assert!(!c.as_object().unwrap().contains_key("usage"), "{c}");
        assert_eq!(c["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(r.sse().last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn stream_with_n_choices_covers_every_index() {
    let s = server().await;
    s.set_reply(Some("a b".into()));
    let mut body = chat_body("x");
    body["stream"] = json!(true);
    body["n"] = json!(2);
    let chunks = post(&s, "/chat/completions", body).await.chunks();
    for idx in 0..2 {
        let mine: Vec<&Value> = chunks
            .iter()
            .filter(|c| c["choices"][0]["index"] == idx)
            .collect();
        let text: String = mine
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "a b");
        assert_eq!(mine.last().unwrap()["choices"][0]["finish_reason"], "stop");
    }
}

fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {
                "location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            }, "required": ["location"]},
        }},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
    ])
}

fn tool_request(text: &str) -> Value {
    json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}],
        "tools": weather_tools(),
    })
}

#[tokio::test]
async fn tool_calls_non_stream() {
    let s = server().await;
    let v = post(
        &s,
        "/chat/completions",
        tool_request("What's the Weather in Paris?"),
    )
    .await
    .json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let msg = &choice["message"];
    assert_eq!(msg["role"], "assistant");
    assert!(msg["content"].is_null());
    assert!(msg["refusal"].is_null());
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let id = call["id"].as_str().unwrap();
    assert!(id.starts_with("call_") && id.len() == 29, "{id}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args_str = call["function"]["arguments"].as_str().unwrap();
    let args: Value = serde_json::from_str(args_str).unwrap();
    assert_eq!(args, json!({"location": "mock", "unit": "celsius"}));
    let completion = (args_str.chars().count() as u64).div_ceil(4);
    assert_eq!(v["usage"]["completion_tokens"], completion);
}

#[tokio::test]
async fn tool_call_selection_rules() {
    let s = server().await;
    let names = |v: &Value| -> Vec<String> {
        v["choices"][0]["message"]["tool_calls"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["function"]["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // "parallel" → one call per tool.
    let v = post(
        &s,
        "/chat/completions",
        tool_request("weather and time in parallel"),
    )
    .await
    .json();
    assert_eq!(names(&v), ["get_weather", "get_time"]);
    let ids: Vec<&str> = v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_ne!(ids[0], ids[1]);
    // ...unless parallel_tool_calls is false.
    let mut body = tool_request("weather in parallel");
    body["parallel_tool_calls"] = json!(false);
    assert_eq!(
        names(&post(&s, "/chat/completions", body).await.json()),
        ["get_weather"]
    );
    // No trigger word → plain text.
    let v = post(&s, "/chat/completions", tool_request("hello"))
        .await
        .json();
    assert!(names(&v).is_empty());
    assert_eq!(v["choices"][0]["message"]["content"], "You said: hello");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    // "required" forces a call.
    let mut body = tool_request("hello");
    body["tool_choice"] = json!("required");
    assert_eq!(
        names(&post(&s, "/chat/completions", body).await.json()),
        ["get_weather"]
    );
    // A named function is called.
    let mut body = tool_request("hello");
    body["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    assert_eq!(
        names(&post(&s, "/chat/completions", body).await.json()),
        ["get_time"]
    );
    // "none" wins over the trigger word.
    let mut body = tool_request("weather");
    body["tool_choice"] = json!("none");
    assert!(names(&post(&s, "/chat/completions", body).await.json()).is_empty());
    // A tool result as last message → text.
    let body = json!({
        "model": "gpt-4o",
        "tools": weather_tools(),
        "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
    });
    let v = post(&s, "/chat/completions", body).await.json();
    assert!(names(&v).is_empty());
    assert_eq!(v["choices"][0]["message"]["content"], "You said: weather?");
}

#[tokio::test]
async fn tool_call_streaming_deltas() {
    let s = server().await;
    let mut body = tool_request("weather in parallel please");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&s, "/chat/completions", body).await;
    let chunks = r.chunks();
    let reference = post(
        &s,
        "/chat/completions",
        tool_request("weather in parallel please"),
    )
    .await
    .json();
    let expected = reference["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap()
        .clone();

    // Accumulate exactly as the SDK's stream helpers do.
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut finish = None;
    for (n, c) in chunks.iter().enumerate() {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        let delta = &choice["delta"];
        if n == 0 {
            assert_eq!(delta["role"], "assistant");
            assert!(delta["content"].is_null() && delta.get("content").is_some());
        }
        if let Some(tcs) = delta["tool_calls"].as_array() {
            assert_eq!(tcs.len(), 1);
            let tc = &tcs[0];
            let idx = tc["index"].as_u64().unwrap() as usize;
            if idx == calls.len() {
                // First delta of a call: index, id, type, name, empty arguments.
                assert_eq!(tc["type"], "function");
                assert_eq!(tc["function"]["arguments"], "");
                calls.push((
                    tc["id"].as_str().unwrap().to_owned(),
                    tc["function"]["name"].as_str().unwrap().to_owned(),
                    String::new(),
                ));
            } else {
                assert_eq!(idx + 1, calls.len());
                let obj = tc.as_object().unwrap();
                assert_eq!(
                    obj.len(),
                    2,
                    "later deltas carry only index + function: {tc}"
                );
                assert_eq!(tc["function"].as_object().unwrap().len(), 1);
                calls[idx]
                    .2
                    .push_str(tc["function"]["arguments"].as_str().unwrap());
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_owned());
        }
    }
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert_eq!(calls.len(), expected.len());
    for ((id, name, args), want) in calls.iter().zip(&expected) {
        assert!(id.starts_with("call_"));
        assert_eq!(name, want["function"]["name"].as_str().unwrap());
        assert_eq!(args, want["function"]["arguments"].as_str().unwrap());
    }
    assert_eq!(chunks.last().unwrap()["usage"], reference["usage"]);
}

#[tokio::test]
async fn validation_errors_match_openai() {
    let s = server().await;
    // (body, status, param, code, message)
    type Case = (
        Value,
        u16,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            json!({"messages": [{"role": "user", "content": "x"}]}),
            400,
            None,
            None,
            "you must provide a model parameter",
        ),
        (
            json!({"model": "gpt-4o"}),
            400,
            Some("messages"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'messages'.",
        ),
        (
            json!({"model": "gpt-4o", "messages": []}),
            400,
            Some("messages"),
            Some("empty_array"),
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "robot", "content": "x"}]}),
            400,
            Some("messages[0].role"),
            Some("invalid_value"),
            "Invalid value: 'robot'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'.",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"content": "x"}]}),
            400,
            Some("messages[0].role"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'messages[0].role'.",
        ),
        (
            json!({"model": "gpt-4o", "messages": ["hi"]}),
            400,
            Some("messages[0]"),
            Some("invalid_type"),
            "Invalid type for 'messages[0]': expected an object, but got a string instead.",
        ),
        (
            json!({"model": 5, "messages": [{"role": "user", "content": "x"}]}),
            400,
            Some("model"),
            Some("invalid_type"),
            "Invalid type for 'model': expected a string, but got an integer instead.",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "n": 0}),
            400,
            Some("n"),
            Some("integer_below_min_value"),
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": true}}),
            400,
            Some("stream_options"),
            None,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ),
        (
            json!({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}),
            400,
            Some("messages[0].tool_call_id"),
            Some("missing_required_parameter"),
            "Missing required parameter: 'messages[0].tool_call_id'.",
        ),
        (
            json!({"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]}),
            404,
            None,
            Some("model_not_found"),
            "The model `gpt-9` does not exist or you do not have access to it.",
        ),
    ];
    for (body, status, param, code, message) in cases {
        let r = post(&s, "/chat/completions", body.clone()).await;
        assert_openai_error(&r, status, "invalid_request_error", code);
        let e = r.error();
        assert_eq!(e["message"], message, "for {body}");
        assert_eq!(e["param"].as_str(), param, "for {body}");
    }
}

#[tokio::test]
async fn malformed_and_non_object_bodies() {
    let s = server().await;
    for raw in ["{not json", "[1,2]", ""] {
        let r = send(
            Method::POST,
            &url(&s, "/chat/completions"),
            Some(KEY),
            Some("application/json"),
            raw.to_owned(),
        )
        .await;
        assert_openai_error(&r, 400, "invalid_request_error", None);
        assert!(
            r.error()["message"]
                .as_str()
                .unwrap()
                .starts_with("We could not parse the JSON body of your request. (HINT:")
        );
        // OpenAI pretty-prints error bodies.
        assert!(r.text().starts_with("{\n    \"error\": {\n"));
    }
}

#[tokio::test]
async fn chunk_delay_paces_the_stream() {
    let delay = Duration::from_millis(60);
    let s = MockServer::start(MockOptions {
        chunk_delay: delay,
        reply: Some("one two three".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
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
    let headers_at = Instant::now();
    let (frames, errored) = frames_timed(resp).await;
    assert!(!errored);
    // role + 3 words + finish + [DONE] = 6 events, 5 gaps.
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(sse_events(&all).len(), 6);
    assert!(
        frames.len() >= 4,
        "events must arrive separately, got {} frames",
        frames.len()
    );
    let spread = frames.last().unwrap().0 - frames.first().unwrap().0;
    assert!(spread >= delay * 4, "stream took only {spread:?}");
    // Headers came first, not after the whole (paced) body was produced.
    assert!(frames.last().unwrap().0 - headers_at >= delay * 4);
}

#[tokio::test]
async fn empty_reply_fault() {
    let s = server().await;
    s.push_fault(Fault::new(FaultKind::EmptyReply));
    let v = post(&s, "/chat/completions", tool_request("weather"))
        .await
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "");
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 0);

    s.push_fault(Fault::new(FaultKind::EmptyReply));
    let mut body = chat_body("hello there");
    body["stream"] = json!(true);
    let chunks = post(&s, "/chat/completions", body).await.chunks();
    assert_eq!(chunks.len(), 2);
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
}
