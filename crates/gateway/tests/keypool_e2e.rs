//! The key pool end to end: llmux ↔ mock-upstream enforcing per-key and per-scope limits the
//! way the providers do (headers, 429 bodies, revocation).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer, ScopeSpec};

const KEY: &str = "sk-admin-client-000000";

fn config(mock: &MockServer, keys: &[&str], prefs: &str) -> String {
    let keys: String = keys.iter().map(|k| format!("      - {k}\n")).collect();
    format!(
        "providers:\n  - provider: openai\n    base_url: {}/chat/completions\n    api:\n{keys}    model: [gpt-4o-mini]\n    preferences:\n      model_timeout: 10\n{prefs}api_keys:\n  - api: {KEY}\n    role: admin\n",
        mock.base_url()
    )
}

async fn chat(gw: &Gateway) -> Reply {
    post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body("gpt-4o-mini", "hi", false),
    )
    .await
}

fn admin_keys(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["providers"][0]["keys"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_key_out_of_requests_is_skipped_before_it_answers_429() {
    let m = MockServer::start(MockOptions {
        scopes: vec![ScopeSpec::new("org-small", &["sk-small-1111111111"]).rpm(2)],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start(&config(
        &m,
        &["sk-small-1111111111", "sk-big-22222222222"],
        "",
    ))
    .await;
    for i in 0..12 {
        let r = chat(&gw).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let stats = m.key_stats();
    let small = stats
        .get("sk-small-1111111111")
        .cloned()
        .unwrap_or_default();
    // Its headers said "remaining 0": at most one 429 before the pool knew.
    assert!(small.rate_limited <= 1, "{stats:?}");
    assert!(small.ok >= 1, "{stats:?}");
}

#[tokio::test]
async fn nothing_free_answers_429_with_retry_after_naming_the_limit() {
    let m = MockServer::start(MockOptions {
        scopes: vec![ScopeSpec::new("org-one", &["sk-only-1111111111"]).rpm(1)],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start(&config(
        &m,
        &["sk-only-1111111111"],
        "      key_wait_timeout: 1\n",
    ))
    .await;
    assert_eq!(chat(&gw).await.status, 200);
    let before = m.request_count();
    let r = chat(&gw).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    // One request per minute: the next token is a minute away (plus up to 10 % jitter).
    assert!(
        (55..=67).contains(&retry_after),
        "{retry_after}: {}",
        r.text()
    );
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("requests") && msg.contains("sk-...1111"),
        "{msg}"
    );
    assert!(
        !msg.contains("sk-only-1111111111"),
        "secret in an error: {msg}"
    );
    // Known from the headers: answered without spending another upstream request.
    assert_eq!(m.request_count(), before);
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out_instead_of_failing() {
    let m = MockServer::start(MockOptions::default()).await.unwrap();
    let gw = start(&config(
        &m,
        &["sk-only-1111111111"],
        "      key_wait_timeout: 5\n",
    ))
    .await;
    m.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 1,
    }));
    let started = Instant::now();
    let r = chat(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "did not wait: {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(m.request_count(), 2);
}

#[tokio::test]
async fn a_revoked_key_gets_no_more_traffic_and_admin_keys_says_why() {
    let m = MockServer::start(MockOptions {
        revoked_keys: vec!["sk-revoked-00000000".into()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start(&config(
        &m,
        &["sk-revoked-00000000", "sk-good-1111111111"],
        "      api_key_schedule_algorithm: round_robin\n",
    ))
    .await;
    for _ in 0..8 {
        assert_eq!(chat(&gw).await.status, 200);
    }
    let stats = m.key_stats();
    assert_eq!(
        stats.get("sk-revoked-00000000").map(|s| s.received),
        Some(1),
        "{stats:?}"
    );
    let r = get(&gw.url("/admin/keys"), Some(KEY)).await;
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(
        !body.contains("sk-revoked-00000000") && !body.contains("sk-good-1111111111"),
        "secret: {body}"
    );
    let keys = admin_keys(&r.json());
    let revoked = keys.iter().find(|k| k["key"] == "sk-...0000").unwrap();
    assert_eq!(revoked["state"], "disabled");
    assert_eq!(revoked["why"], "auth_invalid");
    assert!(revoked["until_unix_ms"].as_u64().is_some());
    let good = keys.iter().find(|k| k["key"] == "sk-...1111").unwrap();
    assert_eq!(good["state"], "healthy");
    assert_eq!(good["requests_ok"], 8);
}

#[tokio::test]
async fn keys_of_one_organization_are_learned_as_one_scope() {
    let m = MockServer::start(MockOptions {
        scopes: vec![
            ScopeSpec::new("org-shared", &["sk-shared-a-111111", "sk-shared-b-222222"]).rpm(100),
            ScopeSpec::new("org-solo", &["sk-solo-c-33333333"]).rpm(100),
        ],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = start(&config(
        &m,
        &[
            "sk-shared-a-111111",
            "sk-shared-b-222222",
            "sk-solo-c-33333333",
        ],
        "      api_key_schedule_algorithm: round_robin\n",
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(chat(&gw).await.status, 200);
    }
    let keys = admin_keys(&get(&gw.url("/admin/keys"), Some(KEY)).await.json());
    let scope = |k: &str| {
        keys.iter().find(|x| x["key"] == k).unwrap()["scope"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(scope("sk-...1111"), scope("sk-...2222"));
    assert_ne!(scope("sk-...1111"), scope("sk-...3333"));
    assert!(scope("sk-...1111").contains("org-shared"));
    // The learned limit is visible with its headroom.
    let limits = keys[0]["limits"].as_array().unwrap();
    assert!(
        limits
            .iter()
            .any(|l| l["dim"] == "requests" && l["capacity"] == 100 && l["source"] == "learned"),
        "{limits:?}"
    );
}

#[tokio::test]
async fn admin_keys_needs_an_admin() {
    let m = MockServer::start(MockOptions::default()).await.unwrap();
    let yaml = config(&m, &["sk-x-1111111111"], "") + "  - api: sk-plain-user-0000\n";
    let gw = start(&yaml).await;
    let r = get(&gw.url("/admin/keys"), Some("sk-plain-user-0000")).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.openai_error()["code"], "admin_required");
}
