//! Quota scopes, limit flavours, key health and per-key counters, on a
//! virtual clock so every number is exact.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use http::Method;
use mock_upstream::{KeyStats, LimitFlavor, MockOptions, MockServer, ScopeSpec};
use serde_json::{Value, json};

/// 2025-01-01T00:00:00Z.
const NEW_YEAR_2025: u64 = 1_735_689_600_000;
/// 2025-03-08T20:00:00Z = 12:00 PST, the day before DST starts.
const MARCH_8_NOON_PST: u64 = 1_741_464_000_000;
/// 2025-11-02T07:00:00Z = 00:00 PDT, the day DST ends.
const NOV_2_MIDNIGHT_PDT: u64 = 1_762_066_800_000;
const HOUR: u64 = 3_600_000;

fn at(unix_ms: u64) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_millis(unix_ms))
}

/// Installs a virtual clock starting at 0 and returns its hand.
fn vclock(s: &MockServer) -> Arc<AtomicU64> {
    let t = Arc::new(AtomicU64::new(0));
    let hand = Arc::clone(&t);
    s.set_clock(Some(Arc::new(move || hand.load(Ordering::SeqCst))));
    t
}

async fn start(opts: MockOptions) -> MockServer {
    MockServer::start(opts).await.unwrap()
}

fn body(content: &str, max_tokens: Option<u64>) -> Value {
    let mut b = chat_body(content);
    if let Some(m) = max_tokens {
        b["max_tokens"] = json!(m);
    }
    b
}

async fn chat(s: &MockServer, key: &str, content: &str, max_tokens: Option<u64>) -> Resp {
    post_as(s, "/chat/completions", Some(key), body(content, max_tokens)).await
}

/// Go duration (`1h2m3.5s`, `17ms`) to milliseconds.
fn go_ms(s: &str) -> u64 {
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().unwrap_or_else(|_| panic!("bad duration {s:?}"));
        num.clear();
        total += match c {
            'h' => n * 3_600_000.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                n
            }
            'm' => n * 60_000.0,
            's' => n * 1000.0,
            _ => panic!("bad duration {s:?}"),
        };
    }
    total.round() as u64
}

/// (Limit, Used, Requested, "try again in") of an OpenAI/Groq 429 message.
fn parse_reached(msg: &str) -> (u64, u64, u64, String) {
    let num = |label: &str| -> u64 {
        let rest = &msg[msg
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {msg}"))
            + label.len()..];
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    };
    let rest = &msg[msg.find("Please try again in ").unwrap() + "Please try again in ".len()..];
    let wait = rest[..rest.find(". ").unwrap()].to_owned();
    (num("Limit "), num("Used "), num("Requested "), wait)
}

fn header_u64(r: &Resp, name: &str) -> u64 {
    r.header(name)
        .unwrap_or_else(|| panic!("missing {name}"))
        .parse()
        .unwrap()
}

fn assert_no_rate_headers(r: &Resp) {
    for (name, _) in &r.headers {
        assert!(
            !name.as_str().starts_with("x-ratelimit") && !name.as_str().starts_with("openai-"),
            "unexpected header {name}"
        );
    }
    assert!(r.header("retry-after").is_none());
}

// ---------------------------------------------------------------- OpenAI

#[tokio::test]
async fn openai_rpm_bucket_is_shared_by_the_scope_and_refills_on_the_virtual_clock() {
    let s = start(MockOptions {
        scopes: vec![ScopeSpec::new("org-alpha", &["sk-a1", "sk-a2"]).rpm(3)],
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    for (key, remaining, reset) in [
        ("sk-a1", 2, "20s"),
        ("sk-a2", 1, "40s"),
        ("sk-a1", 0, "1m0s"),
    ] {
        let r = chat(&s, key, "hi", None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("openai-organization"), Some("org-alpha"));
        assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 3);
        assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), remaining);
        assert_eq!(r.header("x-ratelimit-reset-requests"), Some(reset));
        // TPM not configured: reported, never enforced.
        assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 1_000_000);
        assert!(r.header("retry-after").is_none());
    }

    // The scope is drained for both keys.
    let r = chat(&s, "sk-a2", "hi", None).await;
    assert_openai_error(&r, 429, "requests", Some("rate_limit_exceeded"));
    let msg = r.error()["message"].as_str().unwrap().to_owned();
    assert_eq!(
        msg,
        "Rate limit reached for gpt-4o-mini in organization org-alpha on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more."
    );
    let (limit, used, requested, wait) = parse_reached(&msg);
    assert_eq!((limit, used, requested), (3, 3, 1));
    assert_eq!(go_ms(&wait), header_u64(&r, "retry-after-ms"));
    assert_eq!(header_u64(&r, "retry-after"), 20);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 0);
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("1m0s"));

    // The hint is exact: 1 ms early is still refused, on time succeeds.
    t.store(19_999, Ordering::SeqCst);
    let r = chat(&s, "sk-a1", "hi", None).await;
    assert_eq!(r.status, 429);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("Please try again in 1ms.")
    );
    assert_eq!(header_u64(&r, "retry-after-ms"), 1);
    t.store(20_000, Ordering::SeqCst);
    let r = chat(&s, "sk-a1", "hi", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 0);
    t.store(100_000, Ordering::SeqCst);
    let r = chat(&s, "sk-a1", "hi", None).await;
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 2);

    // Keys outside every scope keep today's behaviour: unlimited, org-mock.
    let r = chat(&s, "sk-free", "hi", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openai-organization"), Some("org-mock"));
    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 10_000);

    let stats = s.key_stats();
    assert_eq!(
        stats["sk-a1"],
        KeyStats {
            received: 5,
            ok: 4,
            rate_limited: 1,
            ..KeyStats::default()
        }
    );
    assert_eq!(
        stats["sk-a2"],
        KeyStats {
            received: 2,
            ok: 1,
            rate_limited: 1,
            ..KeyStats::default()
        }
    );
    assert_eq!(stats["sk-free"].ok, 1);
}

#[tokio::test]
async fn refused_requests_can_spend_the_bucket_like_a_retry_storm() {
    let s = start(MockOptions {
        scopes: vec![ScopeSpec::new("org-storm", &["sk-s"]).rpm(3)],
        refused_requests_count: true,
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    for _ in 0..3 {
        assert_eq!(chat(&s, "sk-s", "hi", None).await.status, 200);
    }
    // The refusal spends a request, and the hint says so: 40 s, not 20 s.
    let r = chat(&s, "sk-s", "hi", None).await;
    let (limit, used, _, wait) = parse_reached(r.error()["message"].as_str().unwrap());
    assert_eq!((limit, used, wait.as_str()), (3, 3, "40s"));
    assert_eq!(header_u64(&r, "retry-after-ms"), 40_000);
    // Retrying after the "usual" 20 s fails and pushes the slot out again.
    t.store(20_000, Ordering::SeqCst);
    let r = chat(&s, "sk-s", "hi", None).await;
    assert_eq!(header_u64(&r, "retry-after-ms"), 40_000);
    t.store(59_999, Ordering::SeqCst);
    assert_eq!(chat(&s, "sk-s", "hi", None).await.status, 429);
    // A client that honoured the last hint (20.001 s) gets through.
    t.store(80_000, Ordering::SeqCst);
    assert_eq!(chat(&s, "sk-s", "hi", None).await.status, 200);
}

#[tokio::test]
async fn openai_tpm_charges_the_estimate_then_reconciles_to_usage() {
    let s = start(MockOptions {
        scopes: vec![ScopeSpec::new("org-t", &["sk-t"]).tpm(1000)],
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    // 1600 characters = 400 prompt tokens; the reply "You said: aaa…" is 3
    // completion tokens, so each request really costs 403.
    let big = "a".repeat(1600);
    let r = chat(&s, "sk-t", &big, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["usage"]["total_tokens"], 403);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 600);
    assert_eq!(r.header("x-ratelimit-reset-tokens"), Some("24s"));
    // Headers go out before generation ends: they show the admission charge.
    let r = chat(&s, "sk-t", &big, None).await;
    assert_eq!(
        header_u64(&r, "x-ratelimit-remaining-tokens"),
        1000 - 403 - 400
    );

    let r = chat(&s, "sk-t", &big, None).await;
    assert_openai_error(&r, 429, "tokens", Some("rate_limit_exceeded"));
    let msg = r.error()["message"].as_str().unwrap().to_owned();
    assert_eq!(
        msg,
        "Rate limit reached for gpt-4o-mini in organization org-t on tokens per min (TPM): Limit 1000, Used 806, Requested 400. Please try again in 12.36s. Visit https://platform.openai.com/account/rate-limits to learn more."
    );
    let (_, used, requested, wait) = parse_reached(&msg);
    // Exactly the time to refill what is missing at 1000/60 tokens per second.
    assert_eq!(go_ms(&wait), (used + requested - 1000) * 60);
    assert_eq!(header_u64(&r, "retry-after-ms"), 12_360);
    assert_eq!(header_u64(&r, "retry-after"), 13);

    t.store(12_359, Ordering::SeqCst);
    let r = chat(&s, "sk-t", &big, None).await;
    assert_eq!(r.status, 429);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .contains("Please try again in 1ms.")
    );
    t.store(12_360, Ordering::SeqCst);
    assert_eq!(chat(&s, "sk-t", &big, None).await.status, 200);

    // R > L: no wait will ever help, so no retry-after.
    let r = chat(&s, "sk-t", "hi", Some(1001)).await;
    assert_openai_error(&r, 429, "tokens", Some("rate_limit_exceeded"));
    assert_eq!(
        r.error()["message"],
        "Request too large for gpt-4o-mini in organization org-t on tokens per min (TPM): Limit 1000, Requested 1001. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
    );
    assert!(r.header("retry-after").is_none());

    // max_tokens is charged at admission when it exceeds the prompt...
    t.store(500_000, Ordering::SeqCst);
    let r = chat(&s, "sk-t", "hi", Some(500)).await;
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 500);
    assert_eq!(r.json()["usage"]["total_tokens"], 4);
    // ...and refunded once the real usage (4 tokens) is known.
    let r = chat(&s, "sk-t", "hi", None).await;
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 1000 - 4 - 1);
}

#[tokio::test]
async fn openai_daily_bucket() {
    let s = start(MockOptions {
        scopes: vec![ScopeSpec::new("org-d", &["sk-d"]).rpd(2)],
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    assert_eq!(chat(&s, "sk-d", "hi", None).await.status, 200);
    assert_eq!(chat(&s, "sk-d", "hi", None).await.status, 200);
    let r = chat(&s, "sk-d", "hi", None).await;
    assert_openai_error(&r, 429, "requests", Some("rate_limit_exceeded"));
    let err = r.error();
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains(
            "on requests per day (RPD): Limit 2, Used 2, Requested 1. Please try again in 12h0m0s."
        ),
        "{msg}"
    );
    assert_eq!(header_u64(&r, "retry-after"), 12 * 3600);
    t.store(12 * HOUR, Ordering::SeqCst);
    assert_eq!(chat(&s, "sk-d", "hi", None).await.status, 200);
}

#[tokio::test]
async fn scopes_are_independent_and_rpm_per_key_still_applies_outside_them() {
    let s = start(MockOptions {
        scopes: vec![
            ScopeSpec::new("org-1", &["k1"]).rpm(1),
            ScopeSpec::new("org-2", &["k2"]).rpm(1),
        ],
        rpm_per_key: Some(2),
        ..MockOptions::default()
    })
    .await;
    vclock(&s);
    assert_eq!(chat(&s, "k1", "x", None).await.status, 200);
    assert_eq!(chat(&s, "k1", "x", None).await.status, 429);
    let r = chat(&s, "k2", "x", None).await;
    assert_eq!(
        (r.status, r.header("openai-organization")),
        (200, Some("org-2"))
    );
    // Unscoped keys: a scope of their own per key, named org-mock.
    for key in ["u1", "u2"] {
        for _ in 0..2 {
            let r = chat(&s, key, "x", None).await;
            assert_eq!(
                (r.status, r.header("openai-organization")),
                (200, Some("org-mock"))
            );
        }
        let r = chat(&s, key, "x", None).await;
        assert_eq!(r.status, 429);
        assert!(
            r.error()["message"]
                .as_str()
                .unwrap()
                .contains("in organization org-mock on requests per min (RPM): Limit 2, Used 2")
        );
    }
}

// ---------------------------------------------------------------- Groq

#[tokio::test]
async fn groq_headers_report_the_daily_budget_and_retry_after_only_on_429() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Groq,
        scopes: vec![
            ScopeSpec::new("org_01groq", &["gsk-1"])
                .rpm(2)
                .rpd(100)
                .tpm(10_000),
        ],
        revoked_keys: vec!["gsk-dead".into()],
        ..MockOptions::default()
    })
    .await;
    vclock(&s);
    let r = chat(&s, "gsk-1", "hello", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("openai-organization"), Some("org_01groq"));
    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 100);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 99);
    // One request of a 100/day bucket comes back in 864 s.
    assert_eq!(r.header("x-ratelimit-reset-requests"), Some("14m24s"));
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 10_000);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 9_998);
    assert_eq!(r.header("x-ratelimit-reset-tokens"), Some("12ms"));
    assert!(r.header("retry-after").is_none());

    assert_eq!(chat(&s, "gsk-1", "hello", None).await.status, 200);
    let r = chat(&s, "gsk-1", "hello", None).await;
    assert_eq!(r.status, 429);
    let err = r.error();
    assert_eq!(
        err,
        json!({
            "message": "Rate limit reached for model `gpt-4o-mini` in organization `org_01groq` service tier `on_demand` on requests per minute (RPM): Limit 2, Used 2, Requested 1. Please try again in 30s. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
            "type": "requests",
            "code": "rate_limit_exceeded",
        })
    );
    let (_, _, _, wait) = parse_reached(err["message"].as_str().unwrap());
    assert_eq!(go_ms(&wait), 1000 * header_u64(&r, "retry-after"));
    assert!(r.header("retry-after-ms").is_none());
    // Still the daily figures: the refused request did not count per day.
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 98);

    let r = chat(&s, "gsk-1", "hello", Some(10_001)).await;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.error()["message"],
        "Request too large for model `gpt-4o-mini` in organization `org_01groq` service tier `on_demand` on tokens per minute (TPM): Limit 10000, Requested 10001, please reduce your message size and try again. Need more tokens? Upgrade to Dev Tier today at https://console.groq.com/settings/billing"
    );
    assert_eq!(r.error()["type"], "tokens");

    let r = chat(&s, "gsk-dead", "hello", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.text(),
        "{\"error\":{\"message\":\"Invalid API Key\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}\n"
    );
}

// ---------------------------------------------------------------- Azure

#[tokio::test]
async fn azure_ten_second_sub_windows_and_minute_token_windows() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Azure,
        scopes: vec![
            ScopeSpec::new("aoai-eastus-gpt4o", &["az-1"])
                .rpm(12)
                .tpm(100),
        ],
        clock_origin: at(NEW_YEAR_2025),
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    let r = chat(&s, "az-1", "hi", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-requests"), 12);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 11);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 100);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 99);
    assert!(r.header("x-ratelimit-reset-requests").is_none());
    t.store(1_000, Ordering::SeqCst);
    assert_eq!(
        header_u64(
            &chat(&s, "az-1", "hi", None).await,
            "x-ratelimit-remaining-requests"
        ),
        10
    );

    // RPM 12 = 2 per 10-second window.
    t.store(2_000, Ordering::SeqCst);
    let r = chat(&s, "az-1", "hi", None).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        json!({"error": {
            "code": "429",
            "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 8 seconds. Please go here: https://aka.ms/oai/quotaincrease if you would like to further increase the default rate limit.",
        }})
    );
    assert_eq!(header_u64(&r, "retry-after"), 8);
    assert_eq!(header_u64(&r, "retry-after-ms"), 8_000);
    assert!(
        r.text()
            .starts_with(r#"{"error":{"code":"429","message":"Requests to the"#)
    );

    t.store(2_500, Ordering::SeqCst);
    let r = request(
        Method::POST,
        &format!("{}/embeddings?api-version=2024-06-01", s.base_url()),
        &[("api-key", "az-1"), ("content-type", "application/json")],
        json!({"model": "text-embedding-3-small", "input": "x"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Requests to the Embeddings_Create Operation under Azure OpenAI API version 2024-06-01 have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 8 seconds.")
    );
    assert_eq!(header_u64(&r, "retry-after-ms"), 7_500);

    // Next window; refused requests did not count.
    t.store(10_000, Ordering::SeqCst);
    let r = chat(&s, "az-1", "hi", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 9);
    // Tokens: prompt + max_tokens is charged on arrival (1 + 95).
    let r = chat(&s, "az-1", "hi", Some(95)).await;
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 1);
    t.store(20_000, Ordering::SeqCst);
    let r = chat(&s, "az-1", "hi", Some(1)).await;
    assert_eq!(r.status, 429);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        msg.contains("have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 40 seconds."),
        "{msg}"
    );
    t.store(60_000, Ordering::SeqCst);
    let r = chat(&s, "az-1", "hi", Some(1)).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-tokens"), 98);
    // Larger than the deployment's TPM: Azure's "retry after 86400 seconds".
    let r = chat(&s, "az-1", "hi", Some(200)).await;
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Please retry after 86400 seconds.")
    );

    s.revoke_key("az-1");
    let r = chat(&s, "az-1", "hi", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["code"], "401");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Access denied due to invalid subscription key or wrong API endpoint.")
    );
}

// ---------------------------------------------------------------- Gemini

fn gemini_violation(r: &Resp) -> (Value, String, String) {
    assert_eq!(r.status, 429);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    let err = r.json()["error"].clone();
    assert_eq!(err["code"], 429);
    assert_eq!(err["status"], "RESOURCE_EXHAUSTED");
    let details = err["details"].as_array().unwrap();
    assert_eq!(
        details[0]["@type"],
        "type.googleapis.com/google.rpc.QuotaFailure"
    );
    assert_eq!(details[1]["@type"], "type.googleapis.com/google.rpc.Help");
    assert_eq!(
        details[2]["@type"],
        "type.googleapis.com/google.rpc.RetryInfo"
    );
    (
        details[0]["violations"].clone(),
        err["message"].as_str().unwrap().to_owned(),
        details[2]["retryDelay"].as_str().unwrap().to_owned(),
    )
}

const GEMINI_HEAD: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/usage?tab=rate-limit. ";

#[tokio::test]
async fn gemini_minute_windows_reset_at_second_zero_without_headers() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Gemini,
        scopes: vec![
            ScopeSpec::new("projects/alpha", &["AIza-1", "AIza-2"])
                .rpm(3)
                .tpm(1000),
        ],
        clock_origin: at(NEW_YEAR_2025),
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    t.store(30_000, Ordering::SeqCst);
    for _ in 0..2 {
        let r = chat(&s, "AIza-1", "hi", None).await;
        assert_eq!(r.status, 200);
        assert_no_rate_headers(&r);
    }
    // Gemini's own ways of sending the key are accepted too.
    let r = request(
        Method::POST,
        &format!("{}/chat/completions", s.base_url()),
        &[
            ("x-goog-api-key", "AIza-2"),
            ("content-type", "application/json"),
        ],
        chat_body("hi").to_string(),
    )
    .await;
    assert_eq!(r.status, 200);

    t.store(59_123, Ordering::SeqCst);
    let r = request(
        Method::POST,
        &format!("{}/chat/completions?key=AIza-1", s.base_url()),
        &[("content-type", "application/json")],
        chat_body("hi").to_string(),
    )
    .await;
    assert_no_rate_headers(&r);
    // Google's field order and two-space indentation.
    assert!(
        r.text()
            .starts_with("{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"You exceeded"),
        "{}",
        r.text()
    );
    assert!(r.text().ends_with("\n  }\n}\n"));
    let (violations, message, delay) = gemini_violation(&r);
    assert_eq!(
        message,
        format!(
            "{GEMINI_HEAD}\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 3, model: gpt-4o-mini\nPlease retry in 0.877s."
        )
    );
    assert_eq!(
        violations,
        json!([{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gpt-4o-mini"},
            "quotaValue": "3",
        }])
    );
    assert_eq!(delay, "0s");

    // The window ends at :00, not 60 s after the first request.
    t.store(60_000, Ordering::SeqCst);
    assert_eq!(chat(&s, "AIza-2", "hi", None).await.status, 200);

    // Input tokens per minute: 999 + 1 fit, one more does not.
    t.store(120_000, Ordering::SeqCst);
    assert_eq!(
        chat(&s, "AIza-1", &"a".repeat(3996), None).await.status,
        200
    );
    t.store(120_500, Ordering::SeqCst);
    assert_eq!(chat(&s, "AIza-2", "hi", None).await.status, 200);
    let (violations, message, delay) = gemini_violation(&chat(&s, "AIza-2", "hi", None).await);
    assert_eq!(
        violations[0]["quotaId"],
        "GenerateContentInputTokensPerModelPerMinute-FreeTier"
    );
    assert_eq!(
        violations[0]["quotaMetric"],
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
    );
    assert_eq!(violations[0]["quotaValue"], "1000");
    assert!(
        message.ends_with("limit: 1000, model: gpt-4o-mini\nPlease retry in 59.5s."),
        "{message}"
    );
    assert_eq!(delay, "59s");
}

#[tokio::test]
async fn gemini_daily_window_ends_at_pacific_midnight_across_dst() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Gemini,
        scopes: vec![ScopeSpec::new("projects/daily", &["AIza-d"]).rpd(2)],
        clock_origin: at(MARCH_8_NOON_PST),
        ..MockOptions::default()
    })
    .await;
    let t = vclock(&s);
    let drain = |expected_retry_secs: u64| {
        let s = &s;
        async move {
            assert_eq!(chat(s, "AIza-d", "hi", None).await.status, 200);
            assert_eq!(chat(s, "AIza-d", "hi", None).await.status, 200);
            let (violations, message, delay) =
                gemini_violation(&chat(s, "AIza-d", "hi", None).await);
            assert_eq!(
                violations[0]["quotaId"],
                "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
            );
            assert_eq!(violations[0]["quotaValue"], "2");
            assert!(
                message.ends_with(&format!("Please retry in {expected_retry_secs}s.")),
                "{message}"
            );
            assert_eq!(delay, format!("{expected_retry_secs}s"));
        }
    };
    // Saturday noon PST: the day ends at 08:00 UTC, 12 h later.
    drain(12 * 3600).await;
    t.store(12 * HOUR - 1, Ordering::SeqCst);
    let (_, message, delay) = gemini_violation(&chat(&s, "AIza-d", "hi", None).await);
    assert!(message.ends_with("Please retry in 0.001s."));
    assert_eq!(delay, "0s");
    // Sunday 9 March starts at 00:00 PST and lasts 23 hours (02:00 → 03:00 PDT).
    t.store(12 * HOUR, Ordering::SeqCst);
    drain(23 * 3600).await;
    t.store(35 * HOUR - 1, Ordering::SeqCst);
    assert_eq!(chat(&s, "AIza-d", "hi", None).await.status, 429);
    t.store(35 * HOUR, Ordering::SeqCst);
    assert_eq!(chat(&s, "AIza-d", "hi", None).await.status, 200);
    // Sunday 2 November starts at 00:00 PDT and lasts 25 hours.
    t.store(NOV_2_MIDNIGHT_PDT - MARCH_8_NOON_PST, Ordering::SeqCst);
    drain(25 * 3600).await;
}

#[tokio::test]
async fn gemini_invalid_exhausted_and_overloaded_keys() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Gemini,
        revoked_keys: vec!["AIza-revoked".into()],
        exhausted_keys: vec!["AIza-free".into()],
        clock_origin: at(NEW_YEAR_2025 + 25_000),
        ..MockOptions::default()
    })
    .await;
    vclock(&s);
    let r = chat(&s, "AIza-revoked", "hi", None).await;
    assert_eq!(r.status, 400);
    assert_no_rate_headers(&r);
    assert_eq!(
        r.json(),
        json!({"error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key.",
                },
            ],
        }})
    );

    let (violations, message, delay) = gemini_violation(&chat(&s, "AIza-free", "hi", None).await);
    assert_eq!(violations.as_array().unwrap().len(), 2);
    assert!(
        violations
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["quotaValue"] == "0")
    );
    assert_eq!(message.matches(", limit: 0, model: gpt-4o-mini").count(), 2);
    assert!(message.ends_with("Please retry in 35s."), "{message}");
    assert_eq!(delay, "35s");

    s.set_overloaded(true);
    let r = chat(&s, "AIza-ok", "hi", None).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}})
    );
    s.set_overloaded(false);
    assert_eq!(chat(&s, "AIza-ok", "hi", None).await.status, 200);

    let stats = s.key_stats();
    assert_eq!(stats["AIza-revoked"].unauthorized, 1);
    assert_eq!(stats["AIza-free"].rate_limited, 1);
    assert_eq!(
        stats["AIza-ok"],
        KeyStats {
            received: 2,
            ok: 1,
            other_errors: 1,
            ..KeyStats::default()
        }
    );
}

// ---------------------------------------------------------------- Anthropic

async fn message(s: &MockServer, key: Option<&str>, max_tokens: u64) -> Resp {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("anthropic-version", "2023-06-01"),
    ];
    if let Some(k) = key {
        headers.push(("x-api-key", k));
    }
    request(
        Method::POST,
        &format!("{}/messages", s.base_url()),
        &headers,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello there"}],
        })
        .to_string(),
    )
    .await
}

fn assert_anthropic_error(r: &Resp, status: u16, kind: &str, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], kind);
    assert_eq!(v["error"]["message"], message);
    assert!(v["request_id"].as_str().unwrap().starts_with("req_011C"));
    assert_eq!(v["request_id"].as_str(), r.header("request-id"));
}

#[tokio::test]
async fn messages_route_speaks_anthropic_headers_and_errors() {
    let s = start(MockOptions {
        scopes: vec![
            ScopeSpec::new("8f3b2c1a-org", &["sk-ant-1"])
                .rpm(2)
                .tpm(1000),
        ],
        clock_origin: at(NEW_YEAR_2025),
        ..MockOptions::default()
    })
    .await;
    vclock(&s);
    let r = message(&s, Some("sk-ant-1"), 100).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"], "message");
    assert_eq!(v["content"][0]["text"], "You said: hello there");
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(v["usage"]["output_tokens"], 4);
    assert_eq!(r.header("anthropic-organization-id"), Some("8f3b2c1a-org"));
    assert!(r.header("request-id").unwrap().starts_with("req_011C"));
    assert!(r.header("openai-organization").is_none());
    assert!(r.header("x-ratelimit-limit-requests").is_none());
    let expect = [
        ("anthropic-ratelimit-requests-limit", "2"),
        ("anthropic-ratelimit-requests-remaining", "1"),
        ("anthropic-ratelimit-requests-reset", "2025-01-01T00:00:30Z"),
        // OpenAI flavour: one token bucket, charged max(max_tokens, prompt).
        ("anthropic-ratelimit-tokens-limit", "1000"),
        ("anthropic-ratelimit-tokens-remaining", "900"),
        ("anthropic-ratelimit-tokens-reset", "2025-01-01T00:00:06Z"),
        ("anthropic-ratelimit-input-tokens-remaining", "900"),
        ("anthropic-ratelimit-output-tokens-remaining", "900"),
    ];
    for (name, value) in expect {
        assert_eq!(r.header(name), Some(value), "{name}");
    }

    assert_eq!(message(&s, Some("sk-ant-1"), 100).await.status, 200);
    let r = message(&s, Some("sk-ant-1"), 100).await;
    assert_anthropic_error(
        &r,
        429,
        "rate_limit_error",
        "This request would exceed the rate limit for your organization (8f3b2c1a-org) of 2 requests per minute. For details, refer to: https://docs.anthropic.com/en/api/rate-limits. You can see the response headers for current usage. Please reduce the prompt length or the maximum tokens requested, or try again later. You may also contact sales at https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase.",
    );
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(
        r.header("anthropic-ratelimit-requests-remaining"),
        Some("0")
    );
    assert!(
        r.text()
            .starts_with(r#"{"type":"error","error":{"type":"rate_limit_error","message":"#)
    );
    assert!(r.text().contains(r#""},"request_id":"req_011C"#));

    assert_anthropic_error(
        &message(&s, None, 10).await,
        401,
        "authentication_error",
        "x-api-key header is required",
    );
    s.revoke_key("sk-ant-2");
    assert_anthropic_error(
        &message(&s, Some("sk-ant-2"), 10).await,
        401,
        "authentication_error",
        "invalid x-api-key",
    );
    s.exhaust_key("sk-ant-3");
    assert_anthropic_error(
        &message(&s, Some("sk-ant-3"), 10).await,
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
    );
    s.overload_next(1);
    assert_anthropic_error(
        &message(&s, Some("sk-ant-4"), 10).await,
        529,
        "overloaded_error",
        "Overloaded",
    );
    assert_eq!(message(&s, Some("sk-ant-4"), 10).await.status, 200);
    assert_eq!(s.key_stats()["sk-ant-2"].unauthorized, 1);
}

#[tokio::test]
async fn anthropic_flavor_has_separate_input_and_output_buckets() {
    let s = start(MockOptions {
        flavor: LimitFlavor::Anthropic,
        scopes: vec![ScopeSpec::new("org-ant", &["sk-ant"]).tpm(100)],
        clock_origin: at(NEW_YEAR_2025),
        ..MockOptions::default()
    })
    .await;
    vclock(&s);
    let r = message(&s, Some("sk-ant"), 80).await;
    assert_eq!(r.status, 200);
    // Input: the 3 prompt tokens. Output: max_tokens, charged on admission.
    assert_eq!(
        r.header("anthropic-ratelimit-input-tokens-remaining"),
        Some("97")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-output-tokens-remaining"),
        Some("20")
    );
    assert_eq!(
        r.header("anthropic-ratelimit-output-tokens-reset"),
        Some("2025-01-01T00:00:48Z")
    );
    // "tokens" is the most restrictive of the two.
    assert_eq!(r.header("anthropic-ratelimit-tokens-remaining"), Some("20"));
    // The real output was 4 tokens: 96 left, so 97 needs 600 ms more.
    let r = message(&s, Some("sk-ant"), 97).await;
    assert_eq!(r.status, 429);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of 100 output tokens per minute.")
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    // Larger than the limit: no retry-after.
    let r = message(&s, Some("sk-ant"), 101).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_none());
    // OpenAI routes of the Anthropic flavour answer with OpenAI headers.
    let r = chat(&s, "sk-ant", "hi", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-limit-tokens"), 100);
}

// ---------------------------------------------------------------- key health

#[tokio::test]
async fn revoke_restore_exhaust_replenish_overload_and_key_stats() {
    let s = start(MockOptions {
        revoked_keys: vec!["sk-dead".into()],
        exhausted_keys: vec!["sk-broke".into()],
        ..MockOptions::default()
    })
    .await;
    let r = chat(&s, "sk-dead", "x", None).await;
    assert_openai_error(&r, 401, "invalid_request_error", Some("invalid_api_key"));
    s.restore_key("sk-dead");
    assert_eq!(chat(&s, "sk-dead", "x", None).await.status, 200);

    let r = chat(&s, "sk-broke", "x", None).await;
    assert_openai_error(&r, 429, "insufficient_quota", Some("insufficient_quota"));
    s.replenish_key("sk-broke");
    assert_eq!(chat(&s, "sk-broke", "x", None).await.status, 200);

    s.revoke_key("sk-live");
    assert_eq!(chat(&s, "sk-live", "x", None).await.status, 401);
    s.restore_key("sk-live");
    s.exhaust_key("sk-live");
    assert_eq!(chat(&s, "sk-live", "x", None).await.status, 429);
    s.replenish_key("sk-live");
    assert_eq!(chat(&s, "sk-live", "x", None).await.status, 200);

    s.set_overloaded(true);
    for key in ["sk-live", "sk-other"] {
        let r = chat(&s, key, "x", None).await;
        assert_openai_error(&r, 503, "server_error", None);
        assert_eq!(
            r.error()["message"],
            "The engine is currently overloaded, please try again later"
        );
    }
    s.set_overloaded(false);
    s.overload_next(2);
    assert_eq!(chat(&s, "sk-other", "x", None).await.status, 503);
    assert_eq!(chat(&s, "sk-other", "x", None).await.status, 503);
    assert_eq!(chat(&s, "sk-other", "x", None).await.status, 200);
    // Requests without a key are not attributed to anyone.
    assert_eq!(
        post_as(&s, "/chat/completions", None, chat_body("x"))
            .await
            .status,
        401
    );

    let stats = s.key_stats();
    let ks = |received, ok, rate_limited, unauthorized, other_errors| KeyStats {
        received,
        ok,
        rate_limited,
        unauthorized,
        other_errors,
    };
    assert_eq!(stats.len(), 4);
    assert_eq!(stats["sk-dead"], ks(2, 1, 0, 1, 0));
    assert_eq!(stats["sk-broke"], ks(2, 1, 1, 0, 0));
    assert_eq!(stats["sk-live"], ks(4, 1, 1, 1, 1));
    assert_eq!(stats["sk-other"], ks(4, 1, 0, 0, 3));
}

#[tokio::test]
async fn bare_load_test_server_tracks_nothing() {
    let s = start(MockOptions {
        record: false,
        ..MockOptions::default()
    })
    .await;
    let r = chat(&s, "sk-1", "x", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(header_u64(&r, "x-ratelimit-remaining-requests"), 9_999);
    assert!(s.key_stats().is_empty());
    // The first runtime key change turns counting on.
    s.revoke_key("sk-2");
    assert_eq!(chat(&s, "sk-2", "x", None).await.status, 401);
    assert_eq!(s.key_stats()["sk-2"].unauthorized, 1);
}

#[tokio::test]
async fn token_delay_paces_buffered_and_streamed_answers() {
    let s = start(MockOptions {
        token_delay: Duration::from_millis(40),
        reply: Some("a b c d".into()),
        ..MockOptions::default()
    })
    .await;
    let t0 = Instant::now();
    let r = chat(&s, KEY, "x", None).await;
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    assert!(
        t0.elapsed() >= Duration::from_millis(160),
        "{:?}",
        t0.elapsed()
    );

    let mut b = chat_body("x");
    b["stream"] = json!(true);
    let resp = send_raw(
        Method::POST,
        &url(&s, "/chat/completions"),
        Some(KEY),
        Some("application/json"),
        b.to_string(),
    )
    .await
    .unwrap();
    let (frames, errored) = frames_timed(resp).await;
    assert!(!errored);
    // Each word waited for its token; the role chunk went out at once.
    let first = frames[0].0;
    let last_word = frames
        .iter()
        .find(|(_, b)| String::from_utf8_lossy(b).contains(r#""content":" d""#))
        .unwrap()
        .0;
    assert!(
        last_word - first >= Duration::from_millis(160),
        "{:?}",
        last_word - first
    );
    assert!(frames.len() >= 5, "{}", frames.len());
}

#[tokio::test]
async fn admin_routes_drive_a_running_server() {
    let s = start(MockOptions {
        admin: true,
        record: false,
        ..MockOptions::default()
    })
    .await;
    let admin = |method: Method, path: &str| {
        let url = format!("http://{}/mock/{path}", s.addr());
        async move { request(method, &url, &[], "").await }
    };
    assert_eq!(admin(Method::POST, "keys/sk-x/revoke").await.status, 204);
    assert_eq!(chat(&s, "sk-x", "x", None).await.status, 401);
    assert_eq!(admin(Method::POST, "keys/sk-x/restore").await.status, 204);
    assert_eq!(admin(Method::POST, "keys/sk-x/exhaust").await.status, 204);
    assert_eq!(chat(&s, "sk-x", "x", None).await.status, 429);
    assert_eq!(admin(Method::POST, "keys/sk-x/replenish").await.status, 204);
    assert_eq!(admin(Method::POST, "overload?next=1").await.status, 204);
    assert_eq!(chat(&s, "sk-x", "x", None).await.status, 503);
    assert_eq!(admin(Method::POST, "overload?on=true").await.status, 204);
    assert_eq!(chat(&s, "sk-x", "x", None).await.status, 503);
    assert_eq!(admin(Method::POST, "overload?on=false").await.status, 204);
    assert_eq!(chat(&s, "sk-x", "x", None).await.status, 200);
    assert_eq!(admin(Method::POST, "keys/sk-x/bogus").await.status, 404);
    assert_eq!(admin(Method::GET, "keys/sk-x/revoke").await.status, 404);
    let r = admin(Method::GET, "key-stats").await;
    assert_eq!(
        r.json(),
        json!({"keys": [{"key": "sk-x", "received": 5, "ok": 1, "rate_limited": 1, "unauthorized": 1, "other_errors": 2}]})
    );
    // Control requests are not traffic.
    assert_eq!(s.request_count(), 5);
    // Without `admin` the routes do not exist.
    let plain = start(MockOptions::default()).await;
    let r = request(
        Method::POST,
        &format!("http://{}/mock/overload?on=true", plain.addr()),
        &[],
        "",
    )
    .await;
    assert_eq!(r.status, 404);
}
