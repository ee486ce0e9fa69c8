//! End-to-end: channel routing (scheduling, weights, retries, cooling, the 403/404 breaker,
//! timeouts, keep-alive, error triggers, empty answers) and per-provider request options
//! (overrides, headers, proxies, endpoint and size filters), counting which upstream served
//! which attempt.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};

const KEY: &str = "sk-client-routing-aaaaaaaa";

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

async fn mock_with(opts: MockOptions) -> MockServer {
    MockServer::start(opts).await.unwrap()
}

fn chat(stream: bool) -> String {
    chat_body("gpt-4o-mini", "hello there", stream)
}

/// One provider per mock, named p0, p1, ..., each serving gpt-4o-mini; `provider_prefs[i]` is
/// YAML under the provider's `preferences` (may be empty); `key_yaml` is the client key's
/// `model` and `preferences`.
fn config(mocks: &[&MockServer], provider_prefs: &[&str], key_yaml: &str, global: &str) -> String {
    let mut y = String::from("providers:\n");
    for (i, m) in mocks.iter().enumerate() {
        y.push_str(&format!(
            "  - provider: p{i}\n    base_url: {}/chat/completions\n    api: sk-up-{i}-0000000000\n    model: [gpt-4o-mini, gpt-4o, text-embedding-3-small]\n",
            m.base_url()
        ));
        if let Some(p) = provider_prefs.get(i).filter(|p| !p.is_empty()) {
            y.push_str("    preferences:\n");
            for line in p.lines() {
                y.push_str(&format!("      {line}\n"));
            }
        }
    }
    y.push_str(&format!("api_keys:\n  - api: {KEY}\n"));
    for line in key_yaml.lines() {
        y.push_str(&format!("    {line}\n"));
    }
    if !global.is_empty() {
        y.push_str("preferences:\n");
        for line in global.lines() {
            y.push_str(&format!("  {line}\n"));
        }
    }
    y
}

fn counts(mocks: &[&MockServer]) -> Vec<usize> {
    mocks.iter().map(|m| m.request_count()).collect()
}

async fn post(gw: &Gateway, body: &str) -> Reply {
    post_json(&gw.url("/v1/chat/completions"), Some(KEY), body).await
}

// ---------------------------------------------------------------------------------------------
// Scheduling

#[tokio::test]
async fn weights_5_3_2_give_5_3_2_over_ten_requests() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let key = "model:\n  - p0/*: 5\n  - p1/*: 3\n  - p2/*: 2\npreferences:\n  SCHEDULING_ALGORITHM: weighted_round_robin";
    let gw = start(&config(&[&a, &b, &c], &[], key, "")).await;
    for _ in 0..10 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![5, 3, 2]);
    // The next ten repeat the cycle.
    for _ in 0..10 {
        assert_eq!(post(&gw, &chat(true)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![10, 6, 4]);
}

#[tokio::test]
async fn round_robin_rotates_fixed_priority_does_not_and_unweighted_channels_drop_out() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let rr = start(&config(
        &[&a, &b, &c],
        &[],
        "preferences:\n  SCHEDULING_ALGORITHM: round_robin",
        "",
    ))
    .await;
    for _ in 0..6 {
        assert_eq!(post(&rr, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![2, 2, 2]);

    let (a, b, c) = (mock().await, mock().await, mock().await);
    let fixed = start(&config(&[&a, &b, &c], &[], "", "")).await;
    for _ in 0..4 {
        assert_eq!(post(&fixed, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![4, 0, 0]);

    // Two weighted candidates: the unweighted third is not used at all.
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let key = "model:\n  - p0/*: 1\n  - p1/*: 1\n  - p2/*\npreferences:\n  SCHEDULING_ALGORITHM: weighted_round_robin";
    let gw = start(&config(&[&a, &b, &c], &[], key, "")).await;
    for _ in 0..6 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![3, 3, 0]);

    // One weighted candidate: weights are ignored, everyone rotates.
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let key = "model:\n  - p0/*: 7\n  - p1/*\n  - p2/*\npreferences:\n  SCHEDULING_ALGORITHM: weighted_round_robin";
    let gw = start(&config(&[&a, &b, &c], &[], key, "")).await;
    for _ in 0..6 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b, &c]), vec![2, 2, 2]);
}

#[tokio::test]
async fn lottery_and_random_spread_the_first_attempt() {
    let (a, b) = (mock().await, mock().await);
    let key = "model:\n  - p0/*: 3\n  - p1/*: 1\npreferences:\n  SCHEDULING_ALGORITHM: lottery";
    let gw = start(&config(&[&a, &b], &[], key, "")).await;
    for _ in 0..80 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    let (na, nb) = (a.request_count(), b.request_count());
    assert_eq!(na + nb, 80);
    assert!((45..=75).contains(&na), "lottery 3:1 gave {na}:{nb}");

    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(
        &[&a, &b],
        &[],
        "preferences:\n  SCHEDULING_ALGORITHM: random",
        "",
    ))
    .await;
    for _ in 0..60 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    let (na, nb) = (a.request_count(), b.request_count());
    assert!(na > 10 && nb > 10, "random gave {na}:{nb}");
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn auto_retry_false_returns_the_first_failure_and_a_number_bounds_the_attempts() {
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(
        &[&a, &b],
        &[],
        "preferences:\n  AUTO_RETRY: false",
        "",
    ))
    .await;
    a.push_fault(Fault::new(FaultKind::ServerError));
    let r = post(&gw, &chat(false)).await;
    assert_eq!(r.status, 500);
    assert_eq!(counts(&[&a, &b]), vec![1, 0]);

    // AUTO_RETRY: 2 = three attempts at most, even with more keys to try.
    let m = mock().await;
    let yaml = format!(
        "providers:\n  - provider: many\n    base_url: {}\n    api: [sk-k1-00000000, sk-k2-00000000, sk-k3-00000000, sk-k4-00000000, sk-k5-00000000]\n    model: [gpt-4o-mini]\napi_keys:\n  - api: {KEY}\n    preferences:\n      AUTO_RETRY: 2\n",
        m.base_url()
    );
    let gw = start(&yaml).await;
    for _ in 0..10 {
        m.push_fault(Fault::new(FaultKind::ServerError));
    }
    let r = post(&gw, &chat(false)).await;
    assert_eq!(r.status, 500);
    assert_eq!(m.request_count(), 3);
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(msg.starts_with("All gpt-4o-mini error"), "{msg}");
}

#[tokio::test]
async fn request_too_large_413_is_returned_without_retry() {
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(&[&a, &b], &[], "", "")).await;
    a.push_fault(Fault::new(FaultKind::Status {
        status: 413,
        body: r#"{"error":{"message":"Request too large","type":"invalid_request_error","param":null,"code":null}}"#.into(),
        content_type: "application/json".into(),
    }));
    let r = post(&gw, &chat(false)).await;
    assert_eq!(r.status, 413);
    assert_eq!(counts(&[&a, &b]), vec![1, 0]);
}

// ---------------------------------------------------------------------------------------------
// Channel cooling and the 403/404 breaker

#[tokio::test]
async fn a_failed_channel_cools_for_cooldown_period() {
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(&[&a, &b], &[], "", "cooldown_period: 1")).await;
    a.push_fault(Fault::new(FaultKind::ServerError));
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![1, 1]);
    // Cooling: the first channel is skipped (fixed priority would pick it).
    for _ in 0..3 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b]), vec![1, 4]);
    // Only for that model: gpt-4o still goes to the first channel.
    let r = post(&gw, &chat_body("gpt-4o", "x", false)).await;
    assert_eq!(r.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![2, 4]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![3, 4]);
}

#[tokio::test]
async fn cooldown_zero_on_a_provider_and_a_single_channel_are_never_cooled() {
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(&[&a, &b], &["cooldown_period: 0"], "", "")).await;
    a.push_fault(Fault::new(FaultKind::ServerError));
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    // The second request went to the first channel again.
    assert_eq!(counts(&[&a, &b]), vec![2, 1]);

    let single = mock().await;
    let gw = start(&config(&[&single], &[], "", "")).await;
    single.push_fault(Fault::new(FaultKind::ServerError));
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(single.request_count(), 3);
}

#[tokio::test]
async fn renamed_models_are_cooled_and_all_cooled_is_503() {
    let (a, b) = (mock().await, mock().await);
    let yaml = format!(
        "providers:\n  - provider: a\n    base_url: {}\n    api: sk-a-000000000\n    model:\n      - gpt-4o-mini: fast\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model:\n      - gpt-4o-mini: fast\napi_keys:\n  - api: {KEY}\npreferences:\n  cooldown_period: 1\n",
        a.base_url(),
        b.base_url()
    );
    let gw = start(&yaml).await;
    let fast = chat_body("fast", "x", false);
    a.push_fault(Fault::new(FaultKind::ServerError));
    assert_eq!(post(&gw, &fast).await.status, 200);
    assert_eq!(post(&gw, &fast).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![1, 2]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Both fail within one request: both cool, and the next request finds nobody.
    a.push_fault(Fault::new(FaultKind::ServerError));
    b.push_fault(Fault::new(FaultKind::ServerError));
    let r = post(&gw, &fast).await;
    assert_eq!(r.status, 500);
    let r = post(&gw, &fast).await;
    assert_eq!(r.status, 503, "{}", r.text());
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("No available providers at the moment: fast"),
        "{msg}"
    );
    assert_eq!(counts(&[&a, &b]), vec![2, 3]);
}

#[tokio::test]
async fn three_403s_open_the_breaker_for_the_route() {
    let (a, b) = (mock().await, mock().await);
    let yaml = format!(
        "providers:\n  - provider: a\n    base_url: {}\n    api: [sk-a1-00000000, sk-a2-00000000, sk-a3-00000000, sk-a4-00000000]\n    model: [gpt-4o-mini]\n    preferences:\n      cooldown_period: 0\n      api_key_schedule_algorithm: fixed_priority\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model: [gpt-4o-mini]\napi_keys:\n  - api: {KEY}\n",
        a.base_url(),
        b.base_url()
    );
    let gw = start(&yaml).await;
    let denied = || {
        Fault::new(FaultKind::Status {
            status: 403,
            body: r#"{"error":{"message":"You are not allowed to use this model","type":"invalid_request_error","param":null,"code":"model_not_allowed"}}"#.into(),
            content_type: "application/json".into(),
        })
    };
    for i in 1..=3 {
        a.push_fault(denied());
        let r = post(&gw, &chat(false)).await;
        assert_eq!(r.status, 200);
        assert_eq!(counts(&[&a, &b]), vec![i, i]);
    }
    // The fourth key of `a` is healthy, but the route is open-circuited.
    for _ in 0..2 {
        assert_eq!(post(&gw, &chat(false)).await.status, 200);
    }
    assert_eq!(counts(&[&a, &b]), vec![3, 5]);
}

// ---------------------------------------------------------------------------------------------
// Timeouts and keep-alive

#[tokio::test]
async fn a_slow_stream_fails_over_within_its_model_timeout() {
    // Headers come at once, but the first content chunk only after 3 s.
    let slow = mock_with(MockOptions {
        chunk_delay: Duration::from_secs(3),
        ..MockOptions::default()
    })
    .await;
    let fast = mock().await;
    let gw = start(&config(&[&slow, &fast], &["model_timeout: 1"], "", "")).await;
    let started = Instant::now();
    let r = post(&gw, &chat(true)).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    assert!(r.text().contains("You said: hello there") || r.text().contains("hello"));
    assert!(r.text().ends_with("data: [DONE]\n\n"), "{}", r.text());
    assert_eq!(counts(&[&slow, &fast]), vec![1, 1]);
}

#[tokio::test]
async fn timeout_policy_and_the_global_timeout_apply() {
    // Global model_timeout map (substring), refined for streams by timeout_policy.
    let a = mock().await;
    let b = mock().await;
    let global = "cooldown_period: 0\nmodel_timeout:\n  gpt-4o: 10\ntimeout_policy:\n  rules:\n    - match: {stream: true, model: gpt-4o*}\n      timeout: {first_byte: 1}";
    let gw = start(&config(&[&a, &b], &[], "", global)).await;
    a.push_fault(Fault::new(FaultKind::Delay(Duration::from_secs(3))));
    let started = Instant::now();
    assert_eq!(post(&gw, &chat(true)).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(counts(&[&a, &b]), vec![1, 1]);
    // Not a stream: the 10 s model timeout holds, so the slow answer is waited for.
    a.push_fault(Fault::new(FaultKind::Delay(Duration::from_millis(1500))));
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![2, 1]);

    // TIMEOUT (the compile-time default) is the last step.
    let a = mock().await;
    let b = mock().await;
    let loaded =
        llmux::config::parse_config(&config(&[&a, &b], &[], "", ""), "t.yaml", &|_| None).unwrap();
    let (rt, _) =
        llmux::runtime::Runtime::compile(&loaded.config, "t.yaml", Duration::from_secs(1)).unwrap();
    let gw = start_runtime(rt).await;
    a.push_fault(Fault::new(FaultKind::Delay(Duration::from_secs(3))));
    let started = Instant::now();
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(counts(&[&a, &b]), vec![1, 1]);
}

#[tokio::test]
async fn a_slow_first_answer_gets_keepalive_comments_then_the_answer() {
    let slow = mock_with(MockOptions {
        latency: Duration::from_millis(1300),
        ..MockOptions::default()
    })
    .await;
    let gw = start(&config(
        &[&slow],
        &["keepalive_interval: 0.3\nmodel_timeout: 10"],
        "",
        "",
    ))
    .await;
    let r = post(&gw, &chat(true)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with(": keepalive\n\n"), "{text}");
    assert!(text.matches(": keepalive").count() >= 3, "{text}");
    let first_data = text.find("data: ").unwrap();
    assert!(!text[first_data..].contains(": keepalive"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("hello"), "{text}");
}

#[tokio::test]
async fn a_stream_that_times_out_after_keepalive_ends_with_an_error_event() {
    let slow = mock_with(MockOptions {
        latency: Duration::from_secs(4),
        ..MockOptions::default()
    })
    .await;
    let gw = start(&config(
        &[&slow],
        &["keepalive_interval: 0.3\nmodel_timeout: 1"],
        "preferences:\n  AUTO_RETRY: false",
        "",
    ))
    .await;
    let started = Instant::now();
    let r = post(&gw, &chat(true)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with(": keepalive\n\n"), "{text}");
    let data = r.sse_data();
    assert_eq!(data.len(), 1, "{text}");
    let err: serde_json::Value = serde_json::from_str(&data[0]).unwrap();
    let msg = err["error"]["message"].as_str().unwrap();
    assert!(msg.contains("did not answer within"), "{msg}");
    assert!(!text.contains("[DONE]"));
}

#[tokio::test]
async fn failover_still_works_after_keepalive_started() {
    let slow = mock_with(MockOptions {
        latency: Duration::from_secs(4),
        ..MockOptions::default()
    })
    .await;
    let fast = mock().await;
    let gw = start(&config(
        &[&slow, &fast],
        &["keepalive_interval: 0.2\nmodel_timeout: 1"],
        "",
        "",
    ))
    .await;
    let r = post(&gw, &chat(true)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.starts_with(": keepalive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(counts(&[&slow, &fast]), vec![1, 1]);
}

#[tokio::test]
async fn keepalive_comments_fill_long_gaps_between_chunks_and_long_intervals_are_ignored() {
    let gappy = mock_with(MockOptions {
        chunk_delay: Duration::from_millis(700),
        reply: Some("one two".into()),
        ..MockOptions::default()
    })
    .await;
    let gw = start(&config(
        &[&gappy],
        &["keepalive_interval: 0.25\nmodel_timeout: 5"],
        "",
        "",
    ))
    .await;
    let r = post(&gw, &chat(true)).await;
    let text = r.text();
    let after_first_data = &text[text.find("data: ").unwrap()..];
    assert!(after_first_data.contains(": keepalive"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // keepalive_interval above the timeout is ignored.
    let slow = mock_with(MockOptions {
        latency: Duration::from_millis(1500),
        ..MockOptions::default()
    })
    .await;
    let gw = start(&config(
        &[&slow],
        &["keepalive_interval: 5\nmodel_timeout: 3"],
        "",
        "",
    ))
    .await;
    let r = post(&gw, &chat(true)).await;
    assert!(r.text().starts_with("data: "), "{}", r.text());
}

// ---------------------------------------------------------------------------------------------
// Error triggers and empty answers

/// One "word" of the mock's reply, so it is whole in one stream chunk (a Chinese relay's
/// "this group is saturated" message, as such relays send).
const TRIGGER: &str = "当前分组上游负载已饱和";

#[tokio::test]
async fn an_error_trigger_in_the_first_chunk_fails_over_before_any_byte_reaches_the_client() {
    let (a, b) = (mock().await, mock().await);
    a.set_reply(Some(format!("{TRIGGER}，请稍后再试 Sorry")));
    let global = format!("error_triggers:\n  - {TRIGGER}");
    let gw = start(&config(&[&a, &b], &[], "", &global)).await;
    let r = post(&gw, &chat(true)).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(!text.contains("当前分组"), "{text}");
    assert!(!text.contains("Sorry"), "{text}");
    // Exactly one answer: one role chunk, the second upstream's words, one [DONE].
    assert_eq!(text.matches("\"role\":\"assistant\"").count(), 1, "{text}");
    assert_eq!(text.matches("[DONE]").count(), 1);
    assert!(text.contains("hello"), "{text}");
    assert_eq!(counts(&[&a, &b]), vec![1, 1]);
    // Whole answers too.
    let r = post(&gw, &chat(false)).await;
    assert_eq!(r.status, 200);
    assert!(!r.text().contains("Sorry"));
    assert_eq!(
        counts(&[&a, &b]),
        vec![1, 2],
        "the first channel is cooling now"
    );
}

#[tokio::test]
async fn empty_answers_fail_over_and_all_empty_is_502() {
    for stream in [false, true] {
        let (a, b) = (mock().await, mock().await);
        let gw = start(&config(&[&a, &b], &[], "", "")).await;
        a.push_fault(Fault::new(FaultKind::EmptyReply));
        let r = post(&gw, &chat(stream)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("hello"), "{}", r.text());
        assert_eq!(counts(&[&a, &b]), vec![1, 1]);
    }
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(&[&a, &b], &[], "preferences:\n  AUTO_RETRY: 1", "")).await;
    a.push_fault(Fault::new(FaultKind::EmptyReply));
    b.push_fault(Fault::new(FaultKind::EmptyReply));
    let r = post(&gw, &chat(true)).await;
    assert_eq!(r.status, 502);
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(
        msg.starts_with("All gpt-4o-mini error") && msg.contains("empty response"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// Per-provider request options

#[tokio::test]
async fn body_overrides_headers_and_passthrough_headers_reach_the_upstream() {
    let m = mock().await;
    let prefs = r#"headers:
  X-Custom: from-config
passthrough_request_headers: [X-Trace-Id, OpenAI-Organization]
post_body_parameter_overrides:
  temperature: 0.25
  metadata: {team: blue}
  __remove__: [top_p, {path: tools, where: {type: web_search}, drop_empty: true}]
  gpt-4o-mini:
    max_tokens: 7
    __remove__: presence_penalty
  gpt-4o:
    max_tokens: 99"#;
    let gw = start(&config(&[&m], &[prefs], "", "")).await;
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "top_p": 0.5,
        "presence_penalty": 1,
        "metadata": {"user": "u1"},
        "tools": [{"type": "web_search"}],
    })
    .to_string();
    let r = post_json_with(
        &gw.url("/v1/chat/completions"),
        Some(KEY),
        &body,
        &[("x-trace-id", "trace-123"), ("x-other", "not-copied")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let req = m.requests().pop().unwrap();
    let sent = req.json().unwrap();
    assert_eq!(sent["temperature"], 0.25);
    assert_eq!(sent["max_tokens"], 7);
    assert_eq!(
        sent["metadata"],
        serde_json::json!({"user": "u1", "team": "blue"})
    );
    assert!(sent.get("top_p").is_none(), "{sent}");
    assert!(sent.get("presence_penalty").is_none(), "{sent}");
    assert!(sent.get("tools").is_none(), "{sent}");
    assert_eq!(req.header("x-custom"), Some("from-config"));
    assert_eq!(req.header("x-trace-id"), Some("trace-123"));
    assert_eq!(req.header("x-other"), None);
    // Embeddings are not chat: no overrides (as uni-api).
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        r#"{"model":"text-embedding-3-small","input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 200);
    let sent = m.requests().pop().unwrap().json().unwrap();
    assert!(sent.get("temperature").is_none(), "{sent}");
}

#[tokio::test]
async fn exclude_endpoints_and_max_request_body_bytes_filter_providers() {
    let (a, b) = (mock().await, mock().await);
    let gw = start(&config(
        &[&a, &b],
        &["exclude_endpoints: [/v1/embeddings]\nmax_request_body_bytes: 300"],
        "",
        "",
    ))
    .await;
    let emb = r#"{"model":"text-embedding-3-small","input":"x"}"#;
    assert_eq!(
        post_json(&gw.url("/v1/embeddings"), Some(KEY), emb)
            .await
            .status,
        200
    );
    assert_eq!(counts(&[&a, &b]), vec![0, 1]);
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![1, 1]);
    let big = chat_body("gpt-4o-mini", &"word ".repeat(100), false);
    assert_eq!(post(&gw, &big).await.status, 200);
    assert_eq!(counts(&[&a, &b]), vec![1, 2]);

    // Only providers that are too small: 413.
    let only = mock().await;
    let gw = start(&config(&[&only], &["max_request_body_bytes: 300"], "", "")).await;
    let r = post(&gw, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.openai_error()["code"], "request_too_large");
    assert_eq!(only.request_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Proxies: a tiny HTTP CONNECT proxy and a tiny SOCKS5 proxy, counting what they carried.

#[derive(Default)]
struct ProxyLog {
    connections: AtomicUsize,
    targets: std::sync::Mutex<Vec<String>>,
}

async fn read_head(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).await.unwrap() == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

async fn connect_proxy(auth: Option<&'static str>) -> (std::net::SocketAddr, Arc<ProxyLog>) {
    use tokio::io::AsyncWriteExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(ProxyLog::default());
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let log = Arc::clone(&log2);
            tokio::spawn(async move {
                let head = read_head(&mut s).await;
                let target = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                if let Some(want) = auth {
                    let expected = format!("proxy-authorization: basic {want}");
                    if !head
                        .to_ascii_lowercase()
                        .contains(&expected.to_ascii_lowercase())
                    {
                        let _ = s
                            .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                            .await;
                        return;
                    }
                }
                log.connections.fetch_add(1, Ordering::SeqCst);
                log.targets.lock().unwrap().push(target.clone());
                let mut up = tokio::net::TcpStream::connect(&target).await.unwrap();
                s.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (addr, log)
}

async fn socks5_proxy(
    auth: Option<(&'static str, &'static str)>,
) -> (std::net::SocketAddr, Arc<ProxyLog>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(ProxyLog::default());
    let log2 = Arc::clone(&log);
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let log = Arc::clone(&log2);
            tokio::spawn(async move {
                let mut hdr = [0u8; 2];
                s.read_exact(&mut hdr).await.unwrap();
                let mut methods = vec![0u8; hdr[1] as usize];
                s.read_exact(&mut methods).await.unwrap();
                if let Some((user, pass)) = auth {
                    if !methods.contains(&2) {
                        s.write_all(&[5, 0xff]).await.unwrap();
                        return;
                    }
                    s.write_all(&[5, 2]).await.unwrap();
                    let mut v = [0u8; 2];
                    s.read_exact(&mut v).await.unwrap();
                    let mut u = vec![0u8; v[1] as usize];
                    s.read_exact(&mut u).await.unwrap();
                    let mut pl = [0u8; 1];
                    s.read_exact(&mut pl).await.unwrap();
                    let mut p = vec![0u8; pl[0] as usize];
                    s.read_exact(&mut p).await.unwrap();
                    let ok = u == user.as_bytes() && p == pass.as_bytes();
                    s.write_all(&[1, if ok { 0 } else { 1 }]).await.unwrap();
                    if !ok {
                        return;
                    }
                } else {
                    s.write_all(&[5, 0]).await.unwrap();
                }
                let mut req = [0u8; 4];
                s.read_exact(&mut req).await.unwrap();
                let host = match req[3] {
                    1 => {
                        let mut ip = [0u8; 4];
                        s.read_exact(&mut ip).await.unwrap();
                        std::net::Ipv4Addr::from(ip).to_string()
                    }
                    3 => {
                        let mut n = [0u8; 1];
                        s.read_exact(&mut n).await.unwrap();
                        let mut name = vec![0u8; n[0] as usize];
                        s.read_exact(&mut name).await.unwrap();
                        format!("name:{}", String::from_utf8(name).unwrap())
                    }
                    _ => panic!("unexpected address type"),
                };
                let mut port = [0u8; 2];
                s.read_exact(&mut port).await.unwrap();
                let port = u16::from_be_bytes(port);
                log.connections.fetch_add(1, Ordering::SeqCst);
                log.targets.lock().unwrap().push(format!("{host}:{port}"));
                let dial = host.strip_prefix("name:").unwrap_or(&host).to_string();
                let mut up = tokio::net::TcpStream::connect((dial.as_str(), port))
                    .await
                    .unwrap();
                s.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut s, &mut up).await;
            });
        }
    });
    (addr, log)
}

#[tokio::test]
async fn providers_reach_their_upstream_through_http_and_socks5_proxies() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    // "user:secret" in base64
    let (http_addr, http_log) = connect_proxy(Some("dXNlcjpzZWNyZXQ=")).await;
    let (socks_addr, socks_log) = socks5_proxy(Some(("sockuser", "sockpass"))).await;
    let (global_addr, global_log) = socks5_proxy(None).await;
    let c_url = c.base_url().replace("127.0.0.1", "localhost");
    let yaml = format!(
        "providers:\n  - provider: a\n    base_url: {}\n    api: sk-a-000000000\n    model: [gpt-4o-mini]\n    preferences:\n      proxy: http://user:secret@{http_addr}\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model: [gpt-4o]\n    preferences:\n      proxy: socks5://sockuser:sockpass@{socks_addr}\n  - provider: c\n    base_url: {c_url}\n    api: sk-c-000000000\n    model: [text-embedding-3-small]\napi_keys:\n  - api: {KEY}\npreferences:\n  proxy: socks5h://{global_addr}\n",
        a.base_url(),
        b.base_url(),
    );
    let gw = start(&yaml).await;
    assert_eq!(post(&gw, &chat(true)).await.status, 200);
    assert_eq!(
        post(&gw, &chat_body("gpt-4o", "x", false)).await.status,
        200
    );
    let r = post_json(
        &gw.url("/v1/embeddings"),
        Some(KEY),
        r#"{"model":"text-embedding-3-small","input":"x"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(counts(&[&a, &b, &c]), vec![1, 1, 1]);
    assert_eq!(http_log.connections.load(Ordering::SeqCst), 1);
    assert_eq!(http_log.targets.lock().unwrap()[0], a.addr().to_string());
    assert_eq!(socks_log.connections.load(Ordering::SeqCst), 1);
    assert_eq!(socks_log.targets.lock().unwrap()[0], b.addr().to_string());
    // socks5h: the proxy resolves the name.
    assert_eq!(
        global_log.targets.lock().unwrap()[0],
        format!("name:localhost:{}", c.addr().port())
    );
    // Connections through a proxy are reused like direct ones.
    assert_eq!(post(&gw, &chat(false)).await.status, 200);
    assert_eq!(http_log.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_proxy_that_refuses_fails_over_and_says_why() {
    let (a, b) = (mock().await, mock().await);
    let (http_addr, log) = connect_proxy(Some("right")).await;
    let yaml = format!(
        "providers:\n  - provider: a\n    base_url: {}\n    api: sk-a-000000000\n    model: [gpt-4o-mini]\n    preferences:\n      proxy: http://wrong:creds@{http_addr}\n  - provider: b\n    base_url: {}\n    api: sk-b-000000000\n    model: [gpt-4o-mini]\napi_keys:\n  - api: {KEY}\n    preferences:\n      AUTO_RETRY: false\n",
        a.base_url(),
        b.base_url(),
    );
    let gw = start(&yaml).await;
    let r = post(&gw, &chat(false)).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let msg = r.openai_error()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("407"), "{msg}");
    assert_eq!(log.connections.load(Ordering::SeqCst), 0);
    assert_eq!(counts(&[&a, &b]), vec![0, 0]);
}
