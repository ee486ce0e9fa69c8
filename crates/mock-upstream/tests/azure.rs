//! Azure OpenAI's deployment routes, its v1 routes and Azure AI Foundry:
//! `api-key` auth, `api-version` routing, deployments as models, content
//! filter annotations, Azure's error and rate-limit bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use mock_upstream::{Endpoint, LimitFlavor, MockOptions, MockServer, ScopeSpec};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

const CHAT: &str = "/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21";

async fn azure(s: &MockServer, path: &str, body: Value) -> Resp {
    call(s, Method::POST, path, &[("api-key", "az-key")], body).await
}

fn messages(text: &str) -> Value {
    json!({"messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn deployment_is_the_model_and_answers_carry_filter_results() {
    let s = server().await;
    let r = azure(&s, CHAT, messages("Hi Azure")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "gpt-4o");
    assert_eq!(v["choices"][0]["message"]["content"], "You said: Hi Azure");
    assert_eq!(
        v["prompt_filter_results"][0]["content_filter_results"]["jailbreak"],
        json!({"filtered": false, "detected": false})
    );
    assert_eq!(
        v["choices"][0]["content_filter_results"]["violence"],
        json!({"filtered": false, "severity": "safe"})
    );
    // A `model` in the body does not override the deployment.
    let mut b = messages("x");
    b["model"] = json!("gpt-4o-mini");
    assert_eq!(azure(&s, CHAT, b).await.json()["model"], "gpt-4o");

    let mut b = messages("Hi Azure");
    b["stream"] = json!(true);
    let r = azure(&s, CHAT, b).await;
    let chunks = r.chunks();
    // Azure opens the stream with a choice-less filter chunk.
    assert_eq!(chunks[0]["choices"], json!([]));
    assert_eq!(chunks[0]["id"], "");
    assert!(chunks[0]["prompt_filter_results"].is_array());
    let text: String = chunks[1..]
        .iter()
        .flat_map(|c| c["choices"].as_array().unwrap().clone())
        .filter_map(|c| c["delta"]["content"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "You said: Hi Azure");
    assert_eq!(r.sse().last().unwrap(), "[DONE]");

    let r = azure(
        &s,
        "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
        json!({"input": "abc"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "text-embedding-3-small");
    assert_eq!(
        r.json()["data"][0]["embedding"].as_array().unwrap().len(),
        1536
    );

    let recorded = s.requests();
    assert_eq!(recorded[0].endpoint, Endpoint::AzureChatCompletions);
    assert_eq!(recorded[0].model().as_deref(), Some("gpt-4o"));
    assert_eq!(recorded[2].endpoint, Endpoint::AzureChatCompletions);
    assert!(recorded[2].is_stream());
    assert_eq!(recorded[3].endpoint, Endpoint::AzureEmbeddings);
}

#[tokio::test]
async fn azure_errors() {
    let s = server().await;
    let r = azure(
        &s,
        "/openai/deployments/gpt-4o/chat/completions",
        messages("x"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error": {"code": "404", "message": "Resource not found"}})
    );

    let r = azure(
        &s,
        "/openai/deployments/nope/chat/completions?api-version=2024-10-21",
        messages("x"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "DeploymentNotFound");

    let r = call(&s, Method::POST, CHAT, &[], messages("x")).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": {"code": "401", "message": "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."}})
    );
    // Entra ID tokens come as bearer tokens.
    let bearer = format!("Bearer {KEY}");
    let r = call(
        &s,
        Method::POST,
        CHAT,
        &[("authorization", &bearer)],
        messages("x"),
    )
    .await;
    assert_eq!(r.status, 200);

    // OpenAI-shaped validation errors, as Azure relays them.
    let r = azure(&s, CHAT, json!({"messages": []})).await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("empty_array"));
}

#[tokio::test]
async fn v1_and_foundry_routes() {
    let s = server().await;
    let mut b = messages("Hi v1");
    b["model"] = json!("gpt-4o-mini");
    let r = azure(&s, "/openai/v1/chat/completions", b.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "gpt-4o-mini");
    assert!(r.json()["prompt_filter_results"].is_array());

    let r = azure(
        &s,
        "/openai/v1/responses",
        json!({"model": "gpt-4o", "input": "Hi responses"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["output"][0]["content"][0]["text"],
        "You said: Hi responses"
    );

    let r = azure(&s, "/models/chat/completions", b.clone()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "MissingApiVersionParameter");
    let r = azure(
        &s,
        "/models/chat/completions?api-version=2024-05-01-preview",
        b,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["choices"][0]["message"]["content"],
        "You said: Hi v1"
    );
    let ends: Vec<Endpoint> = s.requests().iter().map(|r| r.endpoint).collect();
    assert_eq!(
        ends,
        [
            Endpoint::AzureV1ChatCompletions,
            Endpoint::AzureV1Responses,
            Endpoint::FoundryChatCompletions,
            Endpoint::FoundryChatCompletions,
        ]
    );
}

#[tokio::test]
async fn azure_rate_limits_name_the_operation_and_version() {
    let s = MockServer::start(MockOptions {
        flavor: LimitFlavor::Azure,
        scopes: vec![ScopeSpec::new("aoai", &["az-key"]).rpm(6)],
        // 2025-01-01T00:00:00Z, so the 10-second windows start at t = 0.
        clock_origin: Some(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_735_689_600_000),
        ),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    s.set_clock(Some(std::sync::Arc::new(|| 0)));
    assert_eq!(azure(&s, CHAT, messages("x")).await.status, 200);
    let r = azure(&s, CHAT, messages("x")).await;
    assert_eq!(r.status, 429);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit"),
        "{message}"
    );
    assert_eq!(r.header("retry-after"), Some("10"));
    assert_eq!(r.header("retry-after-ms"), Some("10000"));
}
