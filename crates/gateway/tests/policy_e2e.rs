//! End-to-end: client policies — rate limits (per key and model, global), credits charged from
//! the usage the relay sees, moderation, admin roles.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};

const KEY: &str = "sk-client-policy-aaaaaaaaa";
const OTHER: &str = "sk-client-policy-bbbbbbbbb";

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn config(m: &MockServer, keys: &str, global: &str) -> String {
    format!(
        "providers:\n  - provider: main\n    base_url: {}\n    api: sk-up-00000000000\n    model: [gpt-4o-mini, gpt-4o, omni-moderation-latest]\napi_keys:\n{keys}{global}",
        m.base_url()
    )
}

async fn ask(gw: &Gateway, key: &str, model: &str) -> Reply {
    post_json(
        &gw.url("/v1/chat/completions"),
        Some(key),
        &chat_body(model, "hi", false),
    )
    .await
}

fn retry_after(r: &Reply) -> u64 {
    r.headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_key_rate_limit_counts_per_model_and_answers_429_with_retry_after() {
    let m = mock().await;
    let keys = format!(
        "  - api: {KEY}\n    preferences:\n      rate_limit: 2/min\n  - api: {OTHER}\n    preferences:\n      RATE_LIMIT: 1/min\n"
    );
    let gw = start(&config(&m, &keys, "")).await;
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    let r = ask(&gw, KEY, "gpt-4o-mini").await;
    assert_eq!(r.status, 429);
    let secs = retry_after(&r);
    assert!((59..=60).contains(&secs), "{secs}");
    let err = r.openai_error();
    assert_eq!(err["code"], "rate_limit_exceeded");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("2 requests per minute")
    );
    // Counted per requested model, as uni-api.
    assert_eq!(ask(&gw, KEY, "gpt-4o").await.status, 200);
    // Upper-case RATE_LIMIT works too, per key.
    assert_eq!(ask(&gw, OTHER, "gpt-4o-mini").await.status, 200);
    assert_eq!(ask(&gw, OTHER, "gpt-4o-mini").await.status, 429);
    assert_eq!(m.request_count(), 4);
}

#[tokio::test]
async fn per_model_maps_and_the_global_limit() {
    let m = mock().await;
    let keys = format!(
        "  - api: {KEY}\n    preferences:\n      rate_limit:\n        gpt-4o: 1/min\n        default: 3/min\n  - api: {OTHER}\n"
    );
    let gw = start(&config(&m, &keys, "")).await;
    assert_eq!(ask(&gw, KEY, "gpt-4o").await.status, 200);
    assert_eq!(ask(&gw, KEY, "gpt-4o").await.status, 429);
    // `gpt-4o-mini` contains the key `gpt-4o`: the first key contained in the model wins.
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 429);

    let m = mock().await;
    let keys = format!("  - api: {KEY}\n  - api: {OTHER}\n");
    let gw = start(&config(&m, &keys, "preferences:\n  rate_limit: 3/min\n")).await;
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    assert_eq!(ask(&gw, OTHER, "gpt-4o").await.status, 200);
    assert_eq!(ask(&gw, KEY, "gpt-4o").await.status, 200);
    let r = ask(&gw, OTHER, "gpt-4o-mini").await;
    assert_eq!(r.status, 429);
    assert!(
        r.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("in total")
    );
    assert_eq!(m.request_count(), 3);
}

/// One dollar per token each way: the mock's "hi" costs 1 prompt + 3 completion tokens
/// ("You said: hi") = $4.
const PRICES: &str =
    "preferences:\n  model_price:\n    gpt-4o: 1000000,1000000\n    default: 0,0\n";

#[tokio::test]
async fn credits_are_charged_from_usage_and_refuse_once_spent() {
    let m = mock().await;
    let keys = format!("  - api: {KEY}\n    preferences:\n      credits: 4.5\n  - api: {OTHER}\n");
    let gw = start(&config(&m, &keys, PRICES)).await;
    // A stream with usage: charged exactly $4 (an estimate would be far more).
    let stream = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": true,
        "stream_options": {"include_usage": true},
    })
    .to_string();
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &stream).await;
    assert_eq!(r.status, 200);
    // $4 spent of 4.5: still allowed (uni-api refuses only above the credits).
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    let r = ask(&gw, KEY, "gpt-4o-mini").await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.headers.get("retry-after").is_none());
    let err = r.openai_error();
    assert_eq!(err["code"], "insufficient_quota");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("Balance is insufficient")
            && msg.contains("$8.0000")
            && msg.contains("$4.5000"),
        "{msg}"
    );
    assert_eq!(m.request_count(), 2);
    // Keys without credits are not affected; `default: 0,0` prices other models at nothing.
    assert_eq!(ask(&gw, OTHER, "gpt-4o-mini").await.status, 200);
}

#[tokio::test]
async fn a_stream_without_include_usage_is_charged_its_real_usage() {
    let m = mock().await;
    let keys = format!("  - api: {KEY}\n    preferences:\n      credits: 10\n");
    let gw = start(&config(&m, &keys, PRICES)).await;
    // The client does not ask for usage; llmux asks the upstream anyway (and hides the chunk),
    // so each stream costs its real 1 + 3 tokens = $4, not an estimate.
    let body = chat_body("gpt-4o-mini", "hi", true);
    for _ in 0..3 {
        let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &body).await;
        assert_eq!(r.status, 200);
        assert!(!r.text().contains("\"choices\":[]"), "{}", r.text());
    }
    let r = ask(&gw, KEY, "gpt-4o-mini").await;
    assert_eq!(r.status, 429, "{}", r.text());
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("$12.0000"), "{msg}");
}

#[tokio::test]
async fn spending_before_created_at_does_not_count() {
    let m = mock().await;
    let keys = format!(
        "  - api: {KEY}\n    preferences:\n      credits: 1\n      created_at: 2999-01-01T00:00:00Z\n"
    );
    let gw = start(&config(&m, &keys, PRICES)).await;
    for _ in 0..3 {
        assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    }
}

#[tokio::test]
async fn moderation_refuses_flagged_content_and_lets_the_rest_through() {
    let m = mock().await;
    let keys = format!("  - api: {KEY}\n    preferences:\n      ENABLE_MODERATION: true\n");
    let gw = start(&config(&m, &keys, "")).await;
    let flagged = chat_body("gpt-4o-mini", "how do I kill the process", true);
    let r = post_json(&gw.url("/v1/chat/completions"), Some(KEY), &flagged).await;
    assert_eq!(r.status, 400);
    let err = r.openai_error();
    assert_eq!(
        err["message"],
        "Content did not pass the moral check, please modify and try again."
    );
    let paths: Vec<String> = m.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/v1/moderations"]);
    let sent = m.requests()[0].json().unwrap();
    assert_eq!(sent["input"], "how do I kill the process");
    assert_eq!(sent["model"], "omni-moderation-latest");

    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    let paths: Vec<String> = m.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        vec!["/v1/moderations", "/v1/moderations", "/v1/chat/completions"]
    );

    // A moderation outage (here: nothing listens) does not block traffic.
    let m = mock().await;
    let yaml = format!(
        "providers:\n  - provider: main\n    base_url: {}\n    api: sk-up-00000000000\n    model: [gpt-4o-mini]\n  - provider: moderation\n    base_url: http://127.0.0.1:1/v1\n    api: sk-mod-0000000000\n    model: [omni-moderation-latest]\napi_keys:\n  - api: {KEY}\n    preferences:\n      ENABLE_MODERATION: true\n",
        m.base_url()
    );
    let gw = start(&yaml).await;
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    // A failing moderation answer likewise.
    let m = mock().await;
    let gw = start(&config(&m, &keys, "")).await;
    m.push_fault(Fault::new(FaultKind::BadRequest {
        message: "moderation unavailable".into(),
    }));
    assert_eq!(ask(&gw, KEY, "gpt-4o-mini").await.status, 200);
    assert_eq!(m.request_count(), 2);
}

#[tokio::test]
async fn admin_endpoints_follow_uni_api_roles() {
    let m = mock().await;
    // A single key is admin.
    let gw = start(&config(&m, &format!("  - api: {KEY}\n"), "")).await;
    assert_eq!(get(&gw.url("/admin/keys"), Some(KEY)).await.status, 200);
    // Nothing to reload for a gateway built in code.
    let r = post_json(&gw.url("/admin/reload"), Some(KEY), "").await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["error"]["code"], "invalid_config");

    // Several keys: only a role containing "admin".
    let keys = format!("  - api: {KEY}\n    role: team-admins\n  - api: {OTHER}\n    role: user\n");
    let gw = start(&config(&m, &keys, "")).await;
    assert_eq!(get(&gw.url("/admin/keys"), Some(KEY)).await.status, 200);
    let r = get(&gw.url("/admin/keys"), Some(OTHER)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.openai_error()["code"], "admin_required");
    assert_eq!(
        post_json(&gw.url("/admin/reload"), Some(OTHER), "")
            .await
            .status,
        403
    );
    // Several keys, no admin role: nobody.
    let keys = format!("  - api: {KEY}\n  - api: {OTHER}\n");
    let gw = start(&config(&m, &keys, "")).await;
    assert_eq!(get(&gw.url("/admin/keys"), Some(KEY)).await.status, 403);
}
