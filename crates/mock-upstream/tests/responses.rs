//! OpenAI's Responses API: the response object, the numbered `response.*`
//! event stream, reasoning items, function calls chained with
//! `previous_response_id`, stored responses, validation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn tools() -> Value {
    json!([
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
        {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
    ])
}

fn is_hex_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|h| h.len() == 48 && h.chars().all(|c| c.is_ascii_hexdigit()))
}

#[tokio::test]
async fn text_response_object() {
    let s = server().await;
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "instructions": "Be brief", "input": "Hello there", "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-ratelimit-limit-requests").is_some());
    let v = r.json();
    assert!(is_hex_id(v["id"].as_str().unwrap(), "resp_"));
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["instructions"], "Be brief");
    assert_eq!(v["metadata"], json!({"k": "v"}));
    assert_eq!(v["store"], true);
    assert_eq!(v["output"].as_array().unwrap().len(), 1);
    let msg = &v["output"][0];
    assert!(is_hex_id(msg["id"].as_str().unwrap(), "msg_"));
    assert_eq!(
        msg,
        &json!({
            "id": msg["id"],
            "type": "message",
            "status": "completed",
            "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "You said: Hello there"}],
            "role": "assistant",
        })
    );
    // ceil((8 + 11) / 4) = 5 in, 4 out.
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 9,
        })
    );

    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "one two three", "max_output_tokens": 2}),
    )
    .await;
    let v = r.json();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["output"][0]["content"][0]["text"], "You said:");
}

#[tokio::test]
async fn stream_event_sequence_with_reasoning() {
    let s = server().await;
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "Hi there", "stream": true,
               "reasoning": {"effort": "low", "summary": "auto"}}),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let events = named_events(&r.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
    ];
    expected.extend(std::iter::repeat_n(
        "response.reasoning_summary_text.delta",
        8,
    ));
    expected.extend([
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
    ]);
    expected.extend(std::iter::repeat_n("response.output_text.delta", 4));
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected);
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str());
        assert_eq!(data["sequence_number"], i, "{name}");
    }
    let created = &events[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert!(created["usage"].is_null());

    let reasoning_added = &events[2].1;
    assert_eq!(reasoning_added["output_index"], 0);
    assert_eq!(reasoning_added["item"]["type"], "reasoning");
    assert_eq!(reasoning_added["item"]["summary"], json!([]));
    let summary: String = events[4..12]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(summary, "Let me think about how to answer this.");

    let msg_added = &events[15].1;
    assert_eq!(msg_added["output_index"], 1);
    assert_eq!(msg_added["item"]["status"], "in_progress");
    assert_eq!(msg_added["item"]["content"], json!([]));
    let text: String = events[17..21]
        .iter()
        .map(|(_, d)| {
            assert_eq!(d["item_id"], msg_added["item"]["id"]);
            assert_eq!(d["content_index"], 0);
            d["delta"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "You said: Hi there");
    assert_eq!(events[21].1["text"], "You said: Hi there");

    let done = &events[24].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["summary"][0]["text"], summary.as_str());
    assert_eq!(
        done["output"][1]["content"][0]["text"],
        "You said: Hi there"
    );
    assert_eq!(done["usage"]["output_tokens"], 8 + 4);
    assert_eq!(
        done["usage"]["output_tokens_details"]["reasoning_tokens"],
        8
    );
    assert_eq!(
        done["reasoning"],
        json!({"effort": "low", "summary": "auto"})
    );
}

#[tokio::test]
async fn function_calls_chain_with_previous_response_id() {
    let s = server().await;
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "weather in parallel", "tools": tools(), "stream": true}),
    )
    .await;
    let events = named_events(&r.body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let first = &events[2].1["item"];
    assert_eq!(first["type"], "function_call");
    assert_eq!(first["arguments"], "");
    assert_eq!(first["status"], "in_progress");
    assert!(is_hex_id(first["id"].as_str().unwrap(), "fc_"));
    assert!(first["call_id"].as_str().unwrap().starts_with("call_"));
    // Arguments stream in pieces of 8 characters.
    assert_eq!(events[3].1["delta"], "{\"city\":");
    assert_eq!(events[4].1["delta"], "\"mock\"}");
    assert_eq!(events[5].1["arguments"], r#"{"city":"mock"}"#);
    assert_eq!(events[7].1["output_index"], 1);
    assert_eq!(events[7].1["item"]["name"], "get_time");
    assert_eq!(events[9].1["arguments"], "{}");
    let done = &events[11].1["response"];
    let call_ids: Vec<&str> = done["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["call_id"].as_str().unwrap())
        .collect();

    // Answer both calls on top of the stored response.
    let follow = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "previous_response_id": done["id"], "tools": tools(), "input": [
            {"type": "function_call_output", "call_id": call_ids[0], "output": "sunny"},
            {"type": "function_call_output", "call_id": call_ids[1], "output": "noon"},
        ]}),
    )
    .await;
    assert_eq!(follow.status, 200, "{}", follow.text());
    let v = follow.json();
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "You said: weather in parallel"
    );
    // The stored conversation counts: ceil((19 + 5 + 4) / 4) = 7.
    assert_eq!(v["usage"]["input_tokens"], 7);
    assert_eq!(v["previous_response_id"], done["id"]);

    let got = get(&s, &format!("/responses/{}", v["id"].as_str().unwrap())).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), v);

    // Half-answered calls are refused.
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "previous_response_id": done["id"], "input": [
            {"type": "function_call_output", "call_id": call_ids[0], "output": "sunny"},
        ]}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(
        r.error()["message"],
        format!("No tool output found for function call {}.", call_ids[1])
    );

    // `store: false` responses cannot be chained or fetched.
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "hi", "store": false}),
    )
    .await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["store"], false);
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "x", "previous_response_id": id}),
    )
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("previous_response_not_found"),
    );
    assert_eq!(
        r.error()["message"],
        format!("Previous response with id '{id}' not found.")
    );
    assert_eq!(r.error()["param"], "previous_response_id");
    let r = get(&s, &format!("/responses/{id}")).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn reasoning_items_and_encrypted_content() {
    let s = server().await;
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "hi", "store": false,
               "reasoning": {"effort": "medium"}, "include": ["reasoning.encrypted_content"]}),
    )
    .await;
    let v = r.json();
    let item = v["output"][0].clone();
    assert_eq!(item["type"], "reasoning");
    assert_eq!(item["summary"], json!([]));
    let encrypted = item["encrypted_content"].as_str().unwrap();
    assert!(!encrypted.is_empty());
    assert!(is_hex_id(item["id"].as_str().unwrap(), "rs_"));

    // Stateless replay: the reasoning item goes back as input, verbatim.
    let replay = |item: Value| {
        json!({"model": "gpt-4o", "store": false, "input": [
            {"role": "user", "content": "hi"},
            item,
            {"role": "assistant", "content": [{"type": "output_text", "text": "You said: hi"}]},
            {"role": "user", "content": [{"type": "input_text", "text": "again"}]},
        ]})
    };
    let r = post(&s, "/responses", replay(item.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["output"][0]["content"][0]["text"],
        "You said: again"
    );
    let mut forged = item.clone();
    forged["encrypted_content"] = json!("gAAAAAforged");
    let r = post(&s, "/responses", replay(forged)).await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(
        r.error()["message"],
        format!(
            "The encrypted content for item {} could not be verified.",
            item["id"].as_str().unwrap()
        )
    );
}

#[tokio::test]
async fn validation_errors() {
    let s = server().await;
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "x", "messages": []}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("unknown_parameter"));
    assert_eq!(r.error()["message"], "Unknown parameter: 'messages'.");
    assert_eq!(r.error()["param"], "messages");

    let r = post(&s, "/responses", json!({"input": "x"})).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );

    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": [{"role": "robot", "content": "x"}]}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("invalid_value"));
    assert_eq!(r.error()["param"], "input[0].role");

    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": [{"type": "function_call_output", "call_id": "call_x", "output": "1"}]}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(
        r.error()["message"],
        "No tool call found for function call output with call_id call_x."
    );
    assert_eq!(r.error()["param"], "input");

    // Chat Completions-style tools are not Responses tools.
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]}),
    )
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
    assert_eq!(r.error()["param"], "tools[0].name");

    let r = post(&s, "/responses", json!({"model": "gpt-9", "input": "x"})).await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("model_not_found"));
    assert_eq!(
        r.error()["message"],
        "The requested model 'gpt-9' does not exist."
    );
}

#[tokio::test]
async fn tool_choice_and_faults() {
    let s = server().await;
    let kinds = |v: &Value| -> Vec<String> {
        v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let v = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "weather", "tools": tools(), "tool_choice": "none"}),
    )
    .await
    .json();
    assert_eq!(kinds(&v), ["message"]);
    let v = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "hi", "tools": tools(), "tool_choice": "required"}),
    )
    .await
    .json();
    assert_eq!(kinds(&v), ["function_call"]);
    let v = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "weather in parallel", "tools": tools(), "parallel_tool_calls": false}),
    )
    .await
    .json();
    assert_eq!(kinds(&v), ["function_call"]);
    assert_eq!(v["parallel_tool_calls"], false);
    let v = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "hi", "tools": tools(), "tool_choice": {"type": "function", "name": "get_time"}}),
    )
    .await
    .json();
    assert_eq!(v["output"][0]["name"], "get_time");

    s.push_fault(Fault::new(FaultKind::ErrorMidStream { after_events: 2 }));
    let r = post(
        &s,
        "/responses",
        json!({"model": "gpt-4o", "input": "hi", "stream": true}),
    )
    .await;
    let events = named_events(&r.body);
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].0, "error");
    assert_eq!(
        events[2].1,
        json!({"type": "error", "sequence_number": 2, "code": "server_error",
               "message": "The server had an error while processing your request. Sorry about that!", "param": null})
    );

    s.push_fault(Fault::new(FaultKind::EmptyReply));
    let v = post(&s, "/responses", json!({"model": "gpt-4o", "input": "hi"}))
        .await
        .json();
    assert_eq!(v["output"][0]["content"][0]["text"], "");
    assert_eq!(v["usage"]["output_tokens"], 0);
}
