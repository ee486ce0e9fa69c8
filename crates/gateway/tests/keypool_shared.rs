//! Several llmux instances sharing one key pool through a real Redis (`redis-server` on a
//! spare port, nothing saved, stopped at the end): health facts travel, configured limits hold
//! across instances, Redis going away fails open, and no secret ever reaches Redis.
//!
//! Without `redis-server` these tests print SKIP and pass, unless `LLMUX_REQUIRE_REDIS` is set
//! (CI sets it, so they cannot silently skip there).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use llmux::config::schema::{RateLimit, RateLimitSpec, RatePeriod};
use llmux::keypool::classify::{Classified, ErrorClass};
use llmux::keypool::clock::{Clock, ManualClock, SystemClock};
use llmux::keypool::limits::Cost;
use llmux::keypool::shared::Link;
use llmux::keypool::{Acquire, Algorithm, KeyPool, KeySpec, Lease, PoolSettings};
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer, ScopeSpec};

const REQ: Cost = Cost {
    requests: 1,
    tokens: 0,
    input_tokens: 0,
};

/// A throw-away `redis-server`.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// `None` (after printing why) when redis-server is not installed and not required.
    fn start() -> Option<RedisServer> {
        let bin = std::env::var("LLMUX_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let installed = Command::new(&bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            if std::env::var_os("LLMUX_REQUIRE_REDIS").is_some() {
                panic!("LLMUX_REQUIRE_REDIS is set but `{bin}` cannot be run");
            }
            eprintln!("SKIP: `{bin}` not installed (apt-get install redis-server)");
            return None;
        }
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let dir =
                std::env::temp_dir().join(format!("llmux-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut server = RedisServer {
                child: None,
                port,
                dir,
            };
            if server.launch() {
                return Some(server);
            }
        }
        panic!("redis-server did not start");
    }

    fn launch(&mut self) -> bool {
        let child = Command::new(
            std::env::var("LLMUX_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        )
        .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&self.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            if let Some(c) = self.child.as_mut()
                && c.try_wait().unwrap().is_some()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stop();
        false
    }

    /// Freeze / thaw the server (connections stay open, nothing answers).
    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port (after `stop`).
    fn restart(&mut self) {
        assert!(self.launch(), "redis-server did not come back");
    }

    async fn client(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Every key name and string value in the database.
    async fn dump(&self) -> Vec<String> {
        let mut conn = self.client().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .unwrap();
        let mut out = keys.clone();
        for k in keys {
            if let Ok(Some(v)) = redis::cmd("GET")
                .arg(&k)
                .query_async::<Option<String>>(&mut conn)
                .await
            {
                out.push(v);
            }
        }
        out
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn secret(i: usize) -> String {
    format!("sk-shared-test-{i:04}-topsecretvalue")
}

fn pool(name: &str, n_keys: usize, settings: PoolSettings, clock: Arc<dyn Clock>) -> KeyPool {
    let keys = (0..n_keys)
        .map(|i| KeySpec {
            secret: secret(i),
            scope: None,
            max_inflight: None,
        })
        .collect();
    KeyPool::new(
        keys,
        PoolSettings {
            name: name.into(),
            ..settings
        },
        clock,
    )
}

fn rr() -> PoolSettings {
    PoolSettings {
        algorithm: Algorithm::RoundRobin,
        ..PoolSettings::default()
    }
}

fn per_minute(count: u64) -> PoolSettings {
    PoolSettings {
        limits: Some(RateLimitSpec::All(vec![RateLimit {
            count,
            period: RatePeriod::Window(60),
        }])),
        ..rr()
    }
}

/// An instance: its link to Redis with its pools attached and loaded.
async fn instance(redis: &RedisServer, pools: &[&KeyPool]) -> Arc<Link> {
    let link = Link::connect(&redis.url(), "test").unwrap();
    link.attach(pools.iter().copied());
    assert!(
        link.wait_loaded(Duration::from_secs(10)).await,
        "{:?}",
        link.stats()
    );
    link
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn grant(p: &KeyPool, tried: &[usize]) -> Lease {
    match p.acquire("m", REQ, tried) {
        Acquire::Granted(l) => l,
        other => panic!("expected a key, got {other:?}"),
    }
}

fn picks(p: &KeyPool, n: usize) -> Vec<usize> {
    (0..n)
        .filter_map(|_| match p.acquire("m", REQ, &[]) {
            Acquire::Granted(l) => Some(l.index()),
            _ => None,
        })
        .collect()
}

fn fail(mut l: Lease, class: ErrorClass, retry_after: Option<Duration>) {
    let mut c = Classified::new(class, "test");
    c.retry_after = retry_after;
    l.failure(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_seen_by_a_holds_the_key_on_b_until_the_reset() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let a = pool("openai", 2, rr(), clock.clone());
    let b = pool("openai", 2, rr(), clock.clone());
    let la = instance(&redis, &[&a]).await;
    let lb = instance(&redis, &[&b]).await;

    let l = grant(&a, &[]);
    let k = l.index();
    fail(l, ErrorClass::RateLimited, Some(Duration::from_secs(30)));
    eventually("B learns the block", || {
        b.status()[k].limits.iter().any(|l| l.dim == "blocked")
    })
    .await;
    // B may have learned it from its load, with A's message still on the way: wait for that
    // too. Applied after the virtual clock jumps below, the fact would be read as 30 s from
    // then (remote facts hold for their TTL from arrival), which no real clock can produce.
    eventually("A's message reaches B", || lb.stats().received >= 1).await;
    assert!(!picks(&b, 10).contains(&k));
    // An instance started later loads the block from Redis.
    let c = pool("openai", 2, rr(), clock.clone());
    let _lc = instance(&redis, &[&c]).await;
    assert!(!picks(&c, 10).contains(&k));
    // After the reset (30 s + jitter) every instance uses the key again.
    clock.advance(Duration::from_secs(34));
    for p in [&a, &b, &c] {
        assert!(picks(p, 4).contains(&k));
    }
    assert!(la.stats().published >= 1, "{:?}", la.stats());
    assert!(lb.stats().applied >= 1, "{:?}", lb.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_seen_by_a_is_never_sent_by_b() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = pool("openai", 3, rr(), Arc::new(SystemClock::new()));
    let b = pool("openai", 3, rr(), Arc::new(SystemClock::new()));
    let _la = instance(&redis, &[&a]).await;
    let _lb = instance(&redis, &[&b]).await;
    let l = grant(&a, &[]);
    let k = l.index();
    fail(l, ErrorClass::AuthInvalid, None);
    eventually("B disables the key", || b.status()[k].state == "disabled").await;
    assert!(!picks(&b, 60).contains(&k));
    // Re-validated on A and probed successfully: B hears it and uses the key again.
    a.revalidated(k, true);
    let others: Vec<usize> = (0..3).filter(|i| *i != k).collect();
    let mut probe = grant(&a, &others);
    assert_eq!(probe.index(), k);
    probe.success();
    drop(probe);
    eventually("B takes the key back", || b.status()[k].state == "healthy").await;
    assert!(picks(&b, 6).contains(&k));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifteen_per_minute_holds_across_two_instances() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = pool("openai", 1, per_minute(15), Arc::new(SystemClock::new()));
    let b = pool("openai", 1, per_minute(15), Arc::new(SystemClock::new()));
    let la = instance(&redis, &[&a]).await;
    let lb = instance(&redis, &[&b]).await;
    let mut tasks = Vec::new();
    for i in 0..30 {
        let p = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            match p.acquire_shared("m", REQ, &[], None).await {
                // Held to the end, as requests in flight would be.
                Acquire::Granted(l) => Some(l),
                Acquire::Wait { .. } => None,
                other => panic!("{other:?}"),
            }
        }));
    }
    let mut leases = Vec::new();
    for t in tasks {
        if let Some(l) = t.await.unwrap() {
            leases.push(l);
        }
    }
    assert_eq!(leases.len(), 15, "{:?} {:?}", la.stats(), lb.stats());
    assert_eq!(la.stats().admitted + lb.stats().admitted, 15);
    assert!(la.stats().refused + lb.stats().refused >= 1);
    assert_eq!(la.stats().failed_open + lb.stats().failed_open, 0);
    // A refusal is no failure of the key.
    assert_eq!(a.status()[0].state, "healthy");
    assert_eq!(b.status()[0].state, "healthy");
    // Either instance now waits for the next token (one every 4 s), not for a minute.
    match a.acquire_shared("m", REQ, &[], None).await {
        Acquire::Wait { until, .. } => {
            let wait = until.saturating_sub(a.clock().now());
            assert!(wait <= 4_100_000_000, "{wait}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reservations_are_settled_in_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let settings = PoolSettings {
        limits: Some(RateLimitSpec::All(vec![RateLimit {
            count: 10_000,
            period: RatePeriod::TokenWindow(60),
        }])),
        ..rr()
    };
    let a = pool("openai", 1, settings.clone(), Arc::new(SystemClock::new()));
    let b = pool("openai", 1, settings.clone(), Arc::new(SystemClock::new()));
    let _la = instance(&redis, &[&a]).await;
    let _lb = instance(&redis, &[&b]).await;
    let cost = Cost {
        requests: 1,
        tokens: 8_000,
        input_tokens: 4_000,
    };
    // A reserves 8000 of 10000 tokens a minute: B's 8000 do not fit.
    let Acquire::Granted(l) = a.acquire_shared("m", cost, &[], None).await else {
        panic!()
    };
    assert!(matches!(
        b.acquire_shared("m", cost, &[], None).await,
        Acquire::Wait { .. }
    ));
    // A's answer used 1000: Redis is settled to that (1000 tokens = 6 s of the bucket).
    l.settle_tokens(1_000);
    drop(l);
    let mut conn = redis.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let used = bucket_usage(&mut conn).await;
        if used <= Duration::from_millis(6_100) {
            assert!(used >= Duration::from_secs(5), "{used:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not settled: {used:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A third instance now fits its 8000.
    let c = pool("openai", 1, settings, Arc::new(SystemClock::new()));
    let _lc = instance(&redis, &[&c]).await;
    assert!(matches!(
        c.acquire_shared("m", cost, &[], None).await,
        Acquire::Granted(_)
    ));
}

/// How far the only bucket's TAT is ahead of Redis' clock.
async fn bucket_usage(conn: &mut redis::aio::MultiplexedConnection) -> Duration {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("test:v1:rl:*")
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(conn).await.unwrap();
    let tat: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(conn)
        .await
        .unwrap();
    let tat: u64 = tat.parse().unwrap();
    Duration::from_micros(tat.saturating_sub(secs * 1_000_000 + micros))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_open_and_is_counted_then_sharing_resumes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    // Five keys: two invalid ones in a minute stay below the "suspect our request" guard.
    let a = pool("openai", 5, per_minute(100), Arc::new(SystemClock::new()));
    let b = pool("openai", 5, per_minute(100), Arc::new(SystemClock::new()));
    let la = instance(&redis, &[&a]).await;
    let lb = instance(&redis, &[&b]).await;
    for p in [&a, &b] {
        assert!(matches!(
            p.acquire_shared("m", REQ, &[], None).await,
            Acquire::Granted(_)
        ));
    }
    redis.stop();
    // Both keep serving on their own limits, quickly.
    let started = Instant::now();
    for _ in 0..20 {
        for p in [&a, &b] {
            assert!(matches!(
                p.acquire_shared("m", REQ, &[], None).await,
                Acquire::Granted(_)
            ));
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for l in [&la, &lb] {
        let s = l.stats();
        assert!(s.errors >= 1 && s.failed_open >= 1, "{s:?}");
    }
    // Local health keeps working meanwhile.
    let l = grant(&a, &[]);
    let k = l.index();
    fail(l, ErrorClass::AuthInvalid, None);
    assert!(!picks(&a, 10).contains(&k));
    // Redis comes back: the links reconnect, and facts travel again.
    redis.restart();
    for l in [&la, &lb] {
        eventually("re-subscribed", || l.stats().subscribed).await;
    }
    let l = grant(&a, &[k]);
    let k2 = l.index();
    fail(l, ErrorClass::AuthInvalid, None);
    let waited = Instant::now();
    while b.status()[k2].state != "disabled" {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "B did not hear of the second key: {:?} {:?}",
            la.stats(),
            lb.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(matches!(
        b.acquire_shared("m", REQ, &[], None).await,
        Acquire::Granted(_)
    ));
    assert!(lb.stats().admitted >= 2, "{:?}", lb.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_costs_one_admission_timeout_not_one_per_request() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a = pool("openai", 2, per_minute(1_000), Arc::new(SystemClock::new()));
    let la = instance(&redis, &[&a]).await;
    assert!(matches!(
        a.acquire_shared("m", REQ, &[], None).await,
        Acquire::Granted(_)
    ));
    redis.signal("-STOP");
    let started = Instant::now();
    for _ in 0..40 {
        assert!(matches!(
            a.acquire_shared("m", REQ, &[], None).await,
            Acquire::Granted(_)
        ));
    }
    let took = started.elapsed();
    redis.signal("-CONT");
    // One admission waits out the timeout (250 ms); the breaker lets the rest through at once.
    assert!(
        took >= Duration::from_millis(240) && took < Duration::from_millis(1_500),
        "{took:?}"
    );
    let s = la.stats();
    assert_eq!(s.failed_open, 40, "{s:?}");
    assert!(s.errors >= 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // Everything published, as another instance would receive it.
    let mut sub = redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    sub.subscribe("test:v1:events").await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&seen);
    let listener = tokio::spawn(async move {
        let mut messages = sub.on_message();
        while let Some(m) = messages.next().await {
            sink.lock()
                .unwrap()
                .push(String::from_utf8_lossy(m.get_payload_bytes()).into_owned());
        }
    });
    let settings = PoolSettings {
        limits: Some(RateLimitSpec::All(vec![
            RateLimit {
                count: 100,
                period: RatePeriod::Window(60),
            },
            RateLimit {
                count: 100_000,
                period: RatePeriod::TokenWindow(60),
            },
        ])),
        ..rr()
    };
    let a = pool("openai", 6, settings.clone(), Arc::new(SystemClock::new()));
    let b = pool("openai", 6, settings, Arc::new(SystemClock::new()));
    let _la = instance(&redis, &[&a]).await;
    let _lb = instance(&redis, &[&b]).await;
    let cost = Cost {
        requests: 1,
        tokens: 900,
        input_tokens: 400,
    };
    let mut tried = Vec::new();
    let classes = [
        ErrorClass::RateLimited,
        ErrorClass::AuthInvalid,
        ErrorClass::Permission,
        ErrorClass::Billing,
        ErrorClass::DailyQuota,
        ErrorClass::Overloaded,
    ];
    for (i, class) in classes.into_iter().enumerate() {
        let Acquire::Granted(mut l) = a.acquire_shared("m", cost, &tried, None).await else {
            panic!("no key for {class:?}")
        };
        tried.push(l.index());
        l.observe(&llmux::keypool::Observed {
            scope_id: Some(format!("org-{i}").into()),
            ..Default::default()
        });
        l.settle_tokens(300);
        // Upstream messages may name the key: it must not travel.
        let mut c = Classified::new(class, format!("key {} refused", secret(l.index())));
        c.retry_after = Some(Duration::from_secs(120));
        l.failure(&c);
    }
    eventually("B hears every fact", || {
        b.status().iter().any(|k| k.state == "disabled")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut everything = redis.dump().await;
    everything.extend(seen.lock().unwrap().iter().cloned());
    listener.abort();
    assert!(everything.len() >= 10, "{everything:?}");
    let all = everything.join("\n");
    for i in 0..6 {
        let s = secret(i);
        assert!(!all.contains(&s), "secret {i} in Redis: {all}");
        // Not even the part a mask hides.
        assert!(
            !all.contains(&s[3..s.len() - 4]),
            "secret {i} in Redis: {all}"
        );
    }
    // What did travel names keys by fingerprint.
    assert!(all.contains("sk-...alue#"), "{all}");
}

/// Two llmux servers in one process against one mock upstream, sharing their key pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_answered_to_instance_a_is_never_repeated_by_instance_b() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let keys = ["sk-first-1111111111", "sk-second-2222222222"];
    // One organization per key (the mock puts unlisted keys in one): a 429 on one says
    // nothing about the other.
    let m = MockServer::start(MockOptions {
        scopes: vec![
            ScopeSpec::new("org-first", &keys[..1]),
            ScopeSpec::new("org-second", &keys[1..]),
        ],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let yaml = format!(
        "providers:\n  - provider: openai\n    base_url: {}/chat/completions\n    api:\n      - {}\n      - {}\n    model: [gpt-4o-mini]\n    preferences:\n      model_timeout: 10\napi_keys:\n  - api: sk-client-000000000\n    role: admin\n",
        m.base_url(),
        keys[0],
        keys[1]
    );
    let gw_a = start(&yaml).await;
    let gw_b = start(&yaml).await;
    let la = Link::connect(&redis.url(), "test").unwrap();
    gw_a.app.share_key_pools(Arc::clone(&la));
    let lb = Link::connect(&redis.url(), "test").unwrap();
    gw_b.app.share_key_pools(Arc::clone(&lb));
    for l in [&la, &lb] {
        assert!(l.wait_loaded(Duration::from_secs(10)).await);
    }
    let chat = |gw: &Gateway| {
        let url = gw.url("/v1/chat/completions");
        async move {
            post_json(
                &url,
                Some("sk-client-000000000"),
                &chat_body("gpt-4o-mini", "hi", false),
            )
            .await
        }
    };
    m.push_fault(Fault::new(FaultKind::RateLimited {
        retry_after_secs: 60,
    }));
    let r = chat(&gw_a).await;
    assert_eq!(r.status, 200, "A retries on the other key: {}", r.text());
    let rt_a = gw_a.app.runtime();
    let limited = rt_a.channels[0]
        .keys
        .status()
        .iter()
        .position(|k| k.limits.iter().any(|l| l.dim == "blocked"))
        .expect("A blocked the key that answered 429");
    let rt_b = gw_b.app.runtime();
    eventually("B learns the 429", || {
        rt_b.channels[0].keys.status()[limited]
            .limits
            .iter()
            .any(|l| l.dim == "blocked")
    })
    .await;
    for i in 0..10 {
        let r = chat(&gw_b).await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let stats = m.key_stats();
    assert_eq!(
        stats.get(keys[limited]).map(|s| s.received),
        Some(1),
        "{stats:?}"
    );
    assert_eq!(
        stats.get(keys[1 - limited]).map(|s| s.received),
        Some(11),
        "{stats:?}"
    );
}

/// `api_key_rate_limit` through the whole request path of two servers: 3 a minute in total.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_limit_holds_across_two_servers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let m = MockServer::start(MockOptions::default()).await.unwrap();
    let yaml = format!(
        "providers:\n  - provider: openai\n    base_url: {}/chat/completions\n    api: sk-only-1111111111\n    model: [gpt-4o-mini]\n    preferences:\n      api_key_rate_limit: 3/min\n      key_wait_timeout: 1\napi_keys:\n  - api: sk-client-000000000\n    role: admin\n",
        m.base_url()
    );
    let gws = [start(&yaml).await, start(&yaml).await];
    for gw in &gws {
        let link = Link::connect(&redis.url(), "test").unwrap();
        gw.app.share_key_pools(Arc::clone(&link));
        assert!(link.wait_loaded(Duration::from_secs(10)).await);
    }
    let mut statuses = Vec::new();
    for i in 0..6 {
        let r = post_json(
            &gws[i % 2].url("/v1/chat/completions"),
            Some("sk-client-000000000"),
            &chat_body("gpt-4o-mini", "hi", false),
        )
        .await;
        if r.status == 429 {
            let retry_after: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            // One request every 20 s.
            assert!((1..=21).contains(&retry_after), "{retry_after}");
        }
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429, 429]);
    assert_eq!(m.request_count(), 3);
    let shared = gws[0].app.shared().unwrap().stats();
    assert!(shared.admitted >= 1 && shared.refused >= 1, "{shared:?}");
}
