//! End-to-end: live configuration. Reloads through the admin endpoint, the file watcher and
//! SIGHUP; an invalid config changes nothing; a removed provider gets no new traffic while its
//! streams in flight finish; key-pool state and client counters survive.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};

const KEY: &str = "sk-client-reload-aaaaaaaaa";

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

fn two_providers(a: &MockServer, b: &MockServer, extra_key_prefs: &str) -> String {
    format!(
        "providers:\n  - provider: a\n    base_url: {}\n    api: [sk-a1-0000000000, sk-a2-0000000000]\n    model: [gpt-4o-mini]\n    preferences:\n      api_key_schedule_algorithm: fixed_priority\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model: [gpt-4o-mini]\napi_keys:\n  - api: {KEY}\n    preferences:\n      AUTO_RETRY: true\n{extra_key_prefs}",
        a.base_url(),
        b.base_url()
    )
}

fn only_b(b: &MockServer, extra_key_prefs: &str) -> String {
    format!(
        "providers:\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model: [gpt-4o-mini, gpt-4o]\napi_keys:\n  - api: {KEY}\n    preferences:\n      AUTO_RETRY: true\n{extra_key_prefs}",
        b.base_url()
    )
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and config managers do.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn ask(gw: &Gateway, model: &str) -> Reply {
    post_json(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &chat_body(model, "hi", false),
    )
    .await
}

async fn reload(gw: &Gateway) -> Reply {
    post_json(&gw.url("/admin/reload"), Some(KEY), "").await
}

#[tokio::test]
async fn a_reload_that_breaks_the_yaml_changes_nothing() {
    let (a, b) = (mock().await, mock().await);
    let dir = temp_dir("broken");
    let path = dir.join("api.yaml");
    write(&path, &two_providers(&a, &b, ""));
    let gw = start_file(&path).await;
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);

    write(
        &path,
        "providers:\n  - provider: a\n    base_url: [unclosed\n",
    );
    let r = reload(&gw).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"], "invalid_config");
    assert!(!v["errors"].as_array().unwrap().is_empty());
    // Valid YAML, invalid config (a client key cycle): rejected too.
    write(
        &path,
        &format!(
            "providers: []\napi_keys:\n  - api: {KEY}\n    model: [sk-other/*]\n  - api: sk-other\n    model: ['{KEY}/*']\n"
        ),
    );
    let r = reload(&gw).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("cycle"), "{}", r.text());
    // The old config keeps serving, on the same channels.
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);
    assert_eq!((a.request_count(), b.request_count()), (2, 0));
    assert_eq!(gw.app.runtime().channels.len(), 2);
}

#[tokio::test]
async fn a_reload_that_removes_a_provider_keeps_its_streams_in_flight() {
    let a = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(120),
        reply: Some("one two three four five six seven eight".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let b = mock().await;
    let dir = temp_dir("remove");
    let path = dir.join("api.yaml");
    write(&path, &two_providers(&a, &b, ""));
    let gw = start_file(&path).await;
    let url = gw.url("/v1/chat/completions");
    let streaming = tokio::spawn(async move {
        post_json(&url, Some(KEY), &chat_body("gpt-4o-mini", "hi", true)).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    write(&path, &only_b(&b, ""));
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["providers"], 1);
    // New traffic goes to `b` only (and the new model exists).
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);
    assert_eq!(ask(&gw, "gpt-4o").await.status, 200);
    assert_eq!((a.request_count(), b.request_count()), (1, 2));
    // The stream that started on `a` finished whole.
    let s = streaming.await.unwrap();
    assert_eq!(s.status, 200);
    let text = s.text();
    assert!(text.contains(" eight"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("error"), "{text}");
}

#[tokio::test]
async fn the_watcher_reloads_changed_files_and_skips_broken_ones() {
    let (a, b) = (mock().await, mock().await);
    let dir = temp_dir("watch");
    let path = dir.join("api.yaml");
    write(&path, &two_providers(&a, &b, ""));
    let gw = start_file(&path).await;
    let watcher = tokio::spawn(llmux::reload::watch(
        std::sync::Arc::clone(&gw.app),
        path.clone(),
        Duration::from_millis(50),
    ));
    assert_eq!(ask(&gw, "gpt-4o").await.status, 404);
    write(&path, "providers: [\n");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gw.app.runtime().channels.len(), 2);
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);
    write(&path, &only_b(&b, ""));
    let mut reloaded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if gw.app.runtime().channels.len() == 1 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded, "the watcher did not pick up the change");
    assert_eq!(ask(&gw, "gpt-4o").await.status, 200);
    watcher.abort();
}

#[tokio::test]
async fn key_pool_state_and_client_counters_survive_a_reload() {
    let (a, b) = (mock().await, mock().await);
    let dir = temp_dir("state");
    let path = dir.join("api.yaml");
    write(&path, &two_providers(&a, &b, "      rate_limit: 2/min\n"));
    let gw = start_file(&path).await;
    // The first key of `a` is revoked: disabled after one 401.
    a.push_fault(Fault::new(FaultKind::InvalidKey).for_key("sk-a1-0000000000"));
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);
    // Reload with `a` unchanged and `b` changed (a new model).
    let mut text = two_providers(&a, &b, "      rate_limit: 2/min\n");
    text = text.replacen(
        "model: [gpt-4o-mini]\napi_keys",
        "model: [gpt-4o-mini, gpt-4o]\napi_keys",
        1,
    );
    write(&path, &text);
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(ask(&gw, "gpt-4o").await.status, 200);
    // The revoked key stays out: `a` (fixed priority, first key first) is used through its
    // second key only. A rebuilt pool would have tried the first key again.
    assert_eq!(ask(&gw, "gpt-4o-mini").await.status, 200);
    let stats = a.key_stats();
    assert_eq!(stats.get("sk-a1-0000000000").map(|s| s.received), Some(1));
    assert_eq!(stats.get("sk-a2-0000000000").map(|s| s.received), Some(1));
    let keys = get(&gw.url("/admin/keys"), Some(KEY)).await.json();
    let a_keys = &keys["providers"][0]["keys"];
    assert_eq!(a_keys[0]["state"], "disabled", "{keys}");
    // The client's rate-limit window (2/min per model) carried over: one gpt-4o-mini request
    // before the reload and one after, so the next one is refused.
    let r = ask(&gw, "gpt-4o-mini").await;
    assert_eq!(r.status, 429, "{}", r.text());
    // A provider whose keys change gets a new pool, which inherits what is known about the
    // keys it keeps.
    let text = text.replace(
        "api: [sk-a1-0000000000, sk-a2-0000000000]",
        "api: [sk-a1-0000000000, sk-a2-0000000000, sk-a3-0000000000]",
    );
    write(&path, &text);
    assert_eq!(reload(&gw).await.status, 200);
    let keys = get(&gw.url("/admin/keys"), Some(KEY)).await.json();
    let a_keys = keys["providers"][0]["keys"].as_array().unwrap().clone();
    assert_eq!(a_keys.len(), 3);
    assert_eq!(a_keys[0]["state"], "disabled", "{keys}");
    assert_eq!(a_keys[2]["state"], "healthy", "{keys}");
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads() {
    let b = mock().await;
    let a = mock().await;
    let dir = temp_dir("hup");
    let path = dir.join("api.yaml");
    write(&path, &two_providers(&a, &b, ""));
    let gw = start_file(&path).await;
    let listener = tokio::spawn(llmux::reload::on_sighup(std::sync::Arc::clone(&gw.app)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(&path, &only_b(&b, ""));
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reloaded = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if gw.app.runtime().channels.len() == 1 {
            reloaded = true;
            break;
        }
    }
    assert!(reloaded);
    listener.abort();
}
