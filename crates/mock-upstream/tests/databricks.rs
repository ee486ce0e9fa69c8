//! Databricks Model Serving: both chat routes, both ways of sending the token, Claude's
//! reasoning blocks (buffered and streamed) and Databricks' error envelope.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use mock_upstream::{Endpoint, Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};

const CLAUDE: &str = "databricks-claude-sonnet-4";
const TOKEN: &str = "dapi0123456789abcdef";

async fn invoke(server: &MockServer, endpoint: &str, auth: &str, body: Value) -> Resp {
    call(
        server,
        Method::POST,
        &format!("/serving-endpoints/{endpoint}/invocations"),
        &[
            ("authorization", auth),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn hello() -> Value {
    json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]})
}

#[tokio::test]
async fn answers_chat_on_both_routes_with_either_credential() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let r = invoke(&server, CLAUDE, &bearer(), hello()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], CLAUDE);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "You said: Hello there"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9})
    );
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::DatabricksInvocations);
    assert_eq!(rec.model().as_deref(), Some(CLAUDE));

    // `curl -u token:$DATABRICKS_TOKEN`.
    // base64("token:dapi0123456789abcdef")
    let basic = "Basic dG9rZW46ZGFwaTAxMjM0NTY3ODlhYmNkZWY=";
    let r = invoke(&server, CLAUDE, basic, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The OpenAI client's route names the endpoint in `model`.
    let mut body = hello();
    body["model"] = json!(CLAUDE);
    let r = call(
        &server,
        Method::POST,
        "/serving-endpoints/chat/completions",
        &[("authorization", &bearer())],
        body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = server.requests().pop().unwrap();
    assert_eq!(rec.endpoint, Endpoint::DatabricksChatCompletions);
    assert_eq!(rec.model().as_deref(), Some(CLAUDE));
}

#[tokio::test]
async fn credentials_and_endpoints_are_checked() {
    let server = MockServer::start(MockOptions {
        api_keys: vec![TOKEN.to_owned()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let r = call(
        &server,
        Method::POST,
        &format!("/serving-endpoints/{CLAUDE}/invocations"),
        &[],
        hello(),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error_code"], 401);
    // Basic credentials must name the user `token`.
    // base64("me:dapi0123456789abcdef")
    let wrong_user = "Basic bWU6ZGFwaTAxMjM0NTY3ODlhYmNkZWY=";
    assert_eq!(
        invoke(&server, CLAUDE, wrong_user, hello()).await.status,
        401
    );
    let r = invoke(&server, CLAUDE, "Bearer dapi-unknown", hello()).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"error_code": 403, "message": "Invalid access token."})
    );
    assert_eq!(
        r.header("x-databricks-reason-phrase"),
        Some("Invalid access token.")
    );
    let r = invoke(&server, "my-endpoint", &bearer(), hello()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error_code"], "RESOURCE_DOES_NOT_EXIST");
}

#[tokio::test]
async fn claude_thinks_with_a_thinking_budget_only() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let mut body = hello();
    body["reasoning_effort"] = json!("low");
    let r = invoke(&server, CLAUDE, &bearer(), body).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error_code"], "BAD_REQUEST");

    let mut body = hello();
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});
    let r = invoke(&server, CLAUDE, &bearer(), body.clone()).await;
    assert_eq!(r.status, 400, "budget without max_tokens: {}", r.text());

    body["max_tokens"] = json!(4096);
    let r = invoke(&server, CLAUDE, &bearer(), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let content = &v["choices"][0]["message"]["content"];
    assert_eq!(content[0]["type"], "reasoning");
    let summary = &content[0]["summary"][0];
    assert_eq!(summary["type"], "summary_text");
    assert_eq!(summary["text"], "Let me think about how to answer this.");
    let signature = summary["signature"].as_str().unwrap().to_owned();
    assert_eq!(
        content[1],
        json!({"type": "text", "text": "You said: Hello there"})
    );
    assert_eq!(v["usage"]["completion_tokens"], 12);

    // The reasoning goes back with its signature; a forged one is refused.
    let mut next = body.clone();
    let history = json!([
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": [content[0].clone(), content[1].clone()]},
        {"role": "user", "content": "And again"},
    ]);
    next["messages"] = history.clone();
    assert_eq!(
        invoke(&server, CLAUDE, &bearer(), next.clone())
            .await
            .status,
        200
    );
    next["messages"][1]["content"][0]["summary"][0]["signature"] = json!(format!("{signature}x"));
    let r = invoke(&server, CLAUDE, &bearer(), next).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Invalid `signature`")
    );

    // Streamed: one reasoning block per word, then the signature, then the text.
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = invoke(&server, CLAUDE, &bearer(), body).await;
    assert_eq!(r.status, 200);
    let chunks = r.chunks();
    let mut thinking = String::new();
    let mut text = String::new();
    let mut streamed_sig = None;
    for c in &chunks {
        match &c["choices"][0]["delta"]["content"] {
            Value::String(s) => text.push_str(s),
            Value::Array(blocks) => {
                for s in blocks[0]["summary"].as_array().unwrap() {
                    thinking.push_str(s["text"].as_str().unwrap());
                    if let Some(sig) = s["signature"].as_str() {
                        streamed_sig = Some(sig.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(thinking, "Let me think about how to answer this.");
    assert_eq!(text, "You said: Hello there");
    assert_eq!(streamed_sig, Some(signature));
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 12);
}

#[tokio::test]
async fn faults_use_the_databricks_envelope() {
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let cases = [
        (
            FaultKind::RateLimited {
                retry_after_secs: 1,
            },
            429,
            json!("REQUEST_LIMIT_EXCEEDED"),
        ),
        (
            FaultKind::BadRequest {
                message: "no".into(),
            },
            400,
            json!("BAD_REQUEST"),
        ),
        (FaultKind::InvalidKey, 403, json!(403)),
        (FaultKind::Overloaded, 503, json!("TEMPORARILY_UNAVAILABLE")),
        (FaultKind::ServerError, 500, json!("INTERNAL_ERROR")),
    ];
    for (kind, status, code) in cases {
        server.push_fault(Fault::new(kind));
        let r = invoke(&server, CLAUDE, &bearer(), hello()).await;
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error_code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
}
