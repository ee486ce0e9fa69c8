//! Several llmux instances sharing one set of upstream keys through Redis (`REDIS_URL`).
//!
//! * **Health** (cool-downs, disabled keys, exhausted scopes, excluded models, paused models,
//!   learned scopes): every change a pool makes is written as a record with the fact's own TTL
//!   (`<prefix>:v1:h:<provider>:<kind>:<key fingerprint>[:<model>]`) and published on
//!   `<prefix>:v1:events`. Every instance applies what the others publish to its own pools and
//!   loads the records when it (re)connects, so reads stay local: no request waits on Redis
//!   for health.
//! * **Configured limits** (`api_key_rate_limit`) hold across instances: after a local grant,
//!   one Lua GCRA script admits the request against all of the key's buckets at once on Redis
//!   server time, and token estimates are settled afterwards.
//! * **Redis unreachable**: fail open. Requests are served on each instance's local state and
//!   limits (N instances may then admit up to N times a configured limit); errors are counted
//!   and logged at most once a minute. Facts learned meanwhile are not replayed later.
//!
//! Keys appear only as fingerprints (`persist` uses the same), never as secrets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::limits::Dim;
use super::pool::{
    Admission, AdmitFuture, Admitted, Event, Fact, KeyPool, Peers, Reservation, SharedBucket,
};

/// Longest a request waits for an admission before it is let through on local limits.
const ADMIT_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest a background write, a connection attempt or a full load may take.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// After an error, Redis is left alone this long (requests fail open at once).
const BREAKER: Duration = Duration::from_secs(2);
const WARN_EVERY: Duration = Duration::from_secs(60);
/// A load that failed while the subscription is up is tried again this soon.
const LOAD_RETRY: Duration = Duration::from_secs(2);
/// Facts waiting to be written; beyond this they are dropped (and counted).
const QUEUE: usize = 4096;
/// Wire and record format version (also in every name).
const VERSION: u32 = 1;

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SharedStats {
    /// Admissions the shared limits granted / refused.
    pub admitted: u64,
    pub refused: u64,
    /// Admissions let through without asking Redis (unreachable, slow, or just failed).
    pub failed_open: u64,
    /// Redis errors and timeouts.
    pub errors: u64,
    /// Facts written and published / dropped (Redis unreachable or the queue full).
    pub published: u64,
    pub dropped: u64,
    /// Facts received from other instances / that changed a local pool.
    pub received: u64,
    pub applied: u64,
    /// Completed loads of all recorded facts (at every (re)connection and attach).
    pub loads: u64,
    /// Whether the event subscription is up.
    pub subscribed: bool,
}

#[derive(Debug, Default)]
struct Counters {
    admitted: AtomicU64,
    refused: AtomicU64,
    failed_open: AtomicU64,
    errors: AtomicU64,
    published: AtomicU64,
    dropped: AtomicU64,
    received: AtomicU64,
    applied: AtomicU64,
    loads: AtomicU64,
    subscribed: AtomicBool,
}

/// `$body` (an awaited Redis call on `$conn`), once more if the connection was stale (Redis
/// restarted, a connection reset): the manager reconnects on such errors, and the second try
/// uses the new connection. (A macro: async closures would not be `Send` here.)
macro_rules! retrying {
    ($self:expr, |$conn:ident| $body:expr) => {{
        let mut first = true;
        loop {
            #[allow(unused_mut)]
            let mut $conn = $self.conn.clone();
            match $body {
                Err(e) if first && stale(&e) => first = false,
                done => break done,
            }
        }
    }};
}

/// (A refusal may be the cached result of a reconnection attempt made while Redis was down.)
fn stale(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error()
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A fact as published and recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wire {
    v: u32,
    /// Instance that sent it (instances skip their own).
    origin: String,
    pool: String,
    event: Event,
}

enum Op {
    Publish { pool: String, event: Event },
    Settle { keys: Vec<String>, args: Vec<i64> },
}

struct Scripts {
    admit: redis::Script,
    settle: redis::Script,
    put: redis::Script,
    healthy: redis::Script,
}

struct Inner {
    me: Weak<Inner>,
    /// `<prefix>:v1`.
    ns: String,
    instance: String,
    /// `host:port` for logs (the URL may carry a password).
    addr: String,
    client: redis::Client,
    conn: ConnectionManager,
    ops: mpsc::Sender<Op>,
    scripts: Scripts,
    pools: Mutex<HashMap<String, KeyPool>>,
    stats: Counters,
    origin: Instant,
    breaker_until_ms: AtomicU64,
    last_warn_ms: AtomicU64,
    /// Loads asked for (attach) and done, so callers can wait for one that covers their pools.
    load_requested: AtomicU64,
    load_wanted: Notify,
    load_done: watch::Sender<u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("redis", &self.addr)
            .field("namespace", &self.ns)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// This instance's link to the others. Dropping it stops its tasks.
#[derive(Debug)]
pub struct Link {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The pools hold the link as their peers: let go of them so both can be freed.
        self.inner.pools().clear();
    }
}

impl Link {
    /// From `REDIS_URL` (and `LLMUX_REDIS_PREFIX`, default `llmux`): `Ok(None)` when unset.
    /// Must run inside the tokio runtime; does not wait for Redis.
    pub fn from_env() -> Result<Option<Arc<Link>>, String> {
        let Some(url) = std::env::var("REDIS_URL")
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(None);
        };
        let prefix = std::env::var("LLMUX_REDIS_PREFIX")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "llmux".to_string());
        Link::connect(url.trim(), &prefix).map(Some)
    }

    /// Start sharing through the Redis at `url` (`redis://` or `rediss://`). Connections are
    /// made (and remade) in the background; until Redis answers, everything fails open.
    pub fn connect(url: &str, prefix: &str) -> Result<Arc<Link>, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("REDIS_URL is not a usable Redis URL: {e}"))?;
        let addr = client.get_connection_info().addr().to_string();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("cannot set up the Redis connection to {addr}: {e}"))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            ns: format!("{prefix}:v{VERSION}"),
            instance: random_id(),
            addr,
            client,
            conn,
            ops: tx,
            scripts: Scripts {
                admit: redis::Script::new(include_str!("shared/admit.lua")),
                settle: redis::Script::new(include_str!("shared/settle.lua")),
                put: redis::Script::new(include_str!("shared/put.lua")),
                healthy: redis::Script::new(include_str!("shared/healthy.lua")),
            },
            pools: Mutex::new(HashMap::new()),
            stats: Counters::default(),
            origin: Instant::now(),
            breaker_until_ms: AtomicU64::new(0),
            last_warn_ms: AtomicU64::new(0),
            load_requested: AtomicU64::new(0),
            load_wanted: Notify::new(),
            load_done: watch::Sender::new(0),
        });
        let tasks = vec![
            tokio::spawn(writer(Arc::clone(&inner), rx)),
            tokio::spawn(subscriber(Arc::clone(&inner))),
        ];
        tracing::info!(
            redis = %inner.addr,
            namespace = %inner.ns,
            instance = %inner.instance,
            "key pools shared with other llmux instances through Redis"
        );
        Ok(Arc::new(Link { inner, tasks }))
    }

    /// Share these pools (all of a runtime's: the previous set is replaced), and load what
    /// the other instances recorded into them.
    pub fn attach<'a>(&self, pools: impl IntoIterator<Item = &'a KeyPool>) {
        let peers: Arc<dyn Peers> = Arc::clone(&self.inner) as Arc<dyn Peers>;
        let mut map = HashMap::new();
        for pool in pools {
            if pool.is_empty() {
                continue;
            }
            pool.set_peers(Arc::clone(&peers));
            map.insert(pool.name().to_string(), pool.clone());
        }
        *self.inner.pools() = map;
        self.inner.load_requested.fetch_add(1, Ordering::SeqCst);
        self.inner.load_wanted.notify_one();
    }

    pub fn attach_runtime(&self, rt: &crate::runtime::Runtime) {
        self.attach(rt.channels.iter().map(|c| &c.keys));
    }

    /// Wait until a load that includes the last attached pools is done (false on timeout).
    pub async fn wait_loaded(&self, timeout: Duration) -> bool {
        let want = self.inner.load_requested.load(Ordering::SeqCst);
        let mut rx = self.inner.load_done.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|done| *done >= want))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    pub fn stats(&self) -> SharedStats {
        let c = &self.inner.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SharedStats {
            admitted: get(&c.admitted),
            refused: get(&c.refused),
            failed_open: get(&c.failed_open),
            errors: get(&c.errors),
            published: get(&c.published),
            dropped: get(&c.dropped),
            received: get(&c.received),
            applied: get(&c.applied),
            loads: get(&c.loads),
            subscribed: c.subscribed.load(Ordering::Relaxed),
        }
    }

    /// This instance's id in published facts.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Where Redis is (`host:port`, never the URL: it may carry a password).
    pub fn address(&self) -> &str {
        &self.inner.addr
    }
}

fn random_id() -> String {
    let mut rng = fastrand::Rng::new();
    (0..16)
        .map(|_| char::from_digit(rng.u32(..16), 16).unwrap_or('0'))
        .collect()
}

impl Inner {
    fn pools(&self) -> MutexGuard<'_, HashMap<String, KeyPool>> {
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn breaker_open(&self) -> bool {
        self.elapsed_ms() < self.breaker_until_ms.load(Ordering::Relaxed)
    }

    /// Count an error, leave Redis alone for a moment, and say so at most once a minute.
    fn failed(&self, what: &str, err: &dyn std::fmt::Display) {
        bump(&self.stats.errors);
        let now = self.elapsed_ms();
        self.breaker_until_ms
            .store(now + BREAKER.as_millis() as u64, Ordering::Relaxed);
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64;
        if due
            && self
                .last_warn_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                redis = %self.addr,
                errors = self.stats.errors.load(Ordering::Relaxed),
                "shared key-pool state: {what} failed ({err}); serving on this instance's own state and limits until Redis answers"
            );
        }
    }

    fn channel(&self) -> String {
        format!("{}:events", self.ns)
    }

    fn record(&self, pool: &str, ev: &Event) -> Option<String> {
        let kind = ev.fact.kind();
        let subject = match (&ev.key, ev.fact.model()) {
            (Some(fp), Some(model)) => format!("{fp}:{model}"),
            (Some(fp), None) => fp.clone(),
            (None, Some(model)) => model.to_string(),
            (None, None) => return None,
        };
        Some(format!("{}:h:{pool}:{kind}:{subject}", self.ns))
    }

    fn bucket(&self, a: &Admission, b: &SharedBucket) -> String {
        format!(
            "{}:rl:{}:{}:{}:{}:{}/{}ms",
            self.ns,
            a.pool,
            a.key,
            a.model,
            b.dim.as_str(),
            b.capacity,
            b.period.as_millis()
        )
    }

    async fn publish_now(&self, pool: String, event: Event) -> redis::RedisResult<()> {
        let channel = self.channel();
        let key = event.key.clone();
        let wire = Wire {
            v: VERSION,
            origin: self.instance.clone(),
            pool,
            event,
        };
        let message = serde_json::to_string(&wire).unwrap_or_default();
        if matches!(wire.event.fact, Fact::Healthy) {
            let Some(fp) = key else { return Ok(()) };
            // What a healthy key leaves behind: its cool-down and its disabled record.
            let cooling = Fact::KeyCooling {
                class: String::new(),
            };
            let disabled = Fact::KeyDisabled {
                class: String::new(),
                attempt: 0,
            };
            let mut call = self.scripts.healthy.prepare_invoke();
            for kind in [cooling.kind(), disabled.kind()] {
                call.key(format!("{}:h:{}:{kind}:{fp}", self.ns, wire.pool));
            }
            call.arg(&channel).arg(&message);
            return retrying!(self, |conn| call.invoke_async::<i64>(&mut conn).await).map(drop);
        }
        let Some(record) = self.record(&wire.pool, &wire.event) else {
            return Ok(());
        };
        let mode = if matches!(wire.event.fact, Fact::ScopeLearned { .. }) {
            "set"
        } else {
            "max"
        };
        let mut call = self.scripts.put.key(record);
        call.arg(&message)
            .arg(wire.event.ttl_ms.max(1))
            .arg(mode)
            .arg(&channel)
            .arg(&message);
        retrying!(self, |conn| call.invoke_async::<i64>(&mut conn).await).map(drop)
    }

    async fn settle_now(&self, keys: Vec<String>, args: Vec<i64>) -> redis::RedisResult<()> {
        let mut call = self.scripts.settle.prepare_invoke();
        for k in keys {
            call.key(k);
        }
        for a in args {
            call.arg(a);
        }
        retrying!(self, |conn| call.invoke_async::<i64>(&mut conn).await).map(drop)
    }

    /// A fact from another instance (or a record at load).
    fn apply(&self, wire: &Wire) {
        let pool = self.pools().get(&wire.pool).cloned();
        if let Some(pool) = pool
            && pool.apply_remote(&wire.event)
        {
            bump(&self.stats.applied);
        }
    }

    fn on_message(&self, payload: &[u8]) {
        let Ok(wire) = serde_json::from_slice::<Wire>(payload) else {
            return;
        };
        if wire.v != VERSION || wire.origin == self.instance {
            return;
        }
        self.apply(&wire);
        // Counted once applied, so that a count seen means the pools have it.
        bump(&self.stats.received);
    }

    /// Apply every recorded fact, with its remaining TTL, to the attached pools.
    async fn load(&self) -> redis::RedisResult<()> {
        let pattern = format!("{}:h:*", self.ns);
        let mut cursor: u64 = 0;
        // A stale connection shows on the first command; the rest use the fresh one.
        let mut conn = retrying!(self, |conn| redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| conn.clone()))?;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                let values: Vec<Option<String>> =
                    redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("PTTL").arg(k);
                }
                let ttls: Vec<i64> = pipe.query_async(&mut conn).await?;
                for (value, ttl) in values.iter().zip(ttls) {
                    let (Some(value), Ok(ttl_ms)) = (value, u64::try_from(ttl)) else {
                        continue;
                    };
                    if let Ok(mut wire) = serde_json::from_str::<Wire>(value)
                        && wire.v == VERSION
                        && ttl_ms > 0
                    {
                        wire.event.ttl_ms = ttl_ms;
                        self.apply(&wire);
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(());
            }
        }
    }

    /// An attach asked for a load no completed load has served yet.
    fn load_pending(&self) -> bool {
        self.load_requested.load(Ordering::SeqCst) > *self.load_done.borrow()
    }

    /// Load, and mark every attach that asked before it as served.
    async fn load_all(&self) -> bool {
        let want = self.load_requested.load(Ordering::SeqCst);
        match tokio::time::timeout(IO_TIMEOUT, self.load()).await {
            Ok(Ok(())) => {
                bump(&self.stats.loads);
                self.load_done.send_if_modified(|done| {
                    let changed = *done < want;
                    *done = (*done).max(want);
                    changed
                });
                true
            }
            Ok(Err(e)) => {
                self.failed("loading the recorded state", &e);
                false
            }
            Err(_) => {
                self.failed("loading the recorded state", &"timed out");
                false
            }
        }
    }
}

impl Peers for Inner {
    fn publish(&self, pool: &str, event: Event) {
        let op = Op::Publish {
            pool: pool.to_string(),
            event,
        };
        if self.ops.try_send(op).is_err() {
            bump(&self.stats.dropped);
        }
    }

    fn admit(&self, admission: Admission) -> AdmitFuture<'_> {
        Box::pin(async move {
            if self.breaker_open() {
                bump(&self.stats.failed_open);
                return Admitted::Yes(None);
            }
            let keys: Vec<String> = admission
                .buckets
                .iter()
                .map(|b| self.bucket(&admission, b))
                .collect();
            let mut call = self.scripts.admit.prepare_invoke();
            for (k, b) in keys.iter().zip(&admission.buckets) {
                call.key(k)
                    .arg(b.capacity)
                    .arg(micros(b.period))
                    .arg(b.cost);
            }
            let answer = tokio::time::timeout(ADMIT_TIMEOUT, async {
                retrying!(self, |conn| call
                    .invoke_async::<(i64, i64, i64)>(&mut conn)
                    .await)
            })
            .await;
            match answer {
                Ok(Ok((1, _, _))) => {
                    bump(&self.stats.admitted);
                    match self.me.upgrade() {
                        Some(inner) => Admitted::Yes(Some(Box::new(SharedReservation {
                            inner: Arc::downgrade(&inner),
                            keys,
                            buckets: admission.buckets,
                        }))),
                        None => Admitted::Yes(None),
                    }
                }
                Ok(Ok((_, wait_us, index))) => {
                    bump(&self.stats.refused);
                    Admitted::No {
                        wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0)),
                        bucket: usize::try_from(index - 1).unwrap_or(0),
                    }
                }
                Ok(Err(e)) => {
                    self.failed("admission", &e);
                    bump(&self.stats.failed_open);
                    Admitted::Yes(None)
                }
                Err(_) => {
                    self.failed("admission", &"timed out");
                    bump(&self.stats.failed_open);
                    Admitted::Yes(None)
                }
            }
        })
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
struct SharedReservation {
    inner: Weak<Inner>,
    keys: Vec<String>,
    buckets: Vec<SharedBucket>,
}

impl SharedReservation {
    fn send(&self, delta: impl Fn(&SharedBucket) -> i64) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut keys = Vec::new();
        let mut args = Vec::new();
        for (k, b) in self.keys.iter().zip(&self.buckets) {
            let d = delta(b);
            if d != 0 {
                keys.push(k.clone());
                args.extend([
                    i64::try_from(b.capacity).unwrap_or(i64::MAX),
                    i64::try_from(micros(b.period)).unwrap_or(i64::MAX),
                    d,
                ]);
            }
        }
        if keys.is_empty() {
            return;
        }
        if inner.ops.try_send(Op::Settle { keys, args }).is_err() {
            bump(&inner.stats.dropped);
        }
    }
}

impl Reservation for SharedReservation {
    fn settle(&self, reserved: u64, actual: u64) {
        let delta = i64::try_from(actual)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(reserved).unwrap_or(i64::MAX));
        self.send(|b| if b.dim == Dim::Tokens { delta } else { 0 });
    }

    fn refund(&self) {
        self.send(|b| -i64::try_from(b.cost).unwrap_or(i64::MAX));
    }
}

/// Writes facts and settlements in the background, in order.
async fn writer(inner: Arc<Inner>, mut rx: mpsc::Receiver<Op>) {
    while let Some(op) = rx.recv().await {
        if inner.breaker_open() {
            bump(&inner.stats.dropped);
            continue;
        }
        let (what, done) = match op {
            Op::Publish { pool, event } => (
                "publishing a key-pool fact",
                tokio::time::timeout(IO_TIMEOUT, inner.publish_now(pool, event)).await,
            ),
            Op::Settle { keys, args } => (
                "settling a reservation",
                tokio::time::timeout(IO_TIMEOUT, inner.settle_now(keys, args)).await,
            ),
        };
        match done {
            Ok(Ok(())) => {
                if what.starts_with("publishing") {
                    bump(&inner.stats.published);
                }
            }
            Ok(Err(e)) => {
                bump(&inner.stats.dropped);
                inner.failed(what, &e);
            }
            Err(_) => {
                bump(&inner.stats.dropped);
                inner.failed(what, &"timed out");
            }
        }
    }
}

/// Follows the other instances' facts; on every (re)connection, and when pools are attached,
/// loads the recorded ones (which also covers whatever was published while disconnected).
async fn subscriber(inner: Arc<Inner>) {
    let mut delay = Duration::from_millis(100);
    let channel = inner.channel();
    loop {
        match tokio::time::timeout(IO_TIMEOUT, inner.client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => {
                match tokio::time::timeout(IO_TIMEOUT, pubsub.subscribe(&channel)).await {
                    Ok(Ok(())) => {
                        inner.stats.subscribed.store(true, Ordering::Relaxed);
                        // Redis answers again: stop failing open.
                        inner.breaker_until_ms.store(0, Ordering::Relaxed);
                        let mut loaded = inner.load_all().await;
                        if loaded {
                            delay = Duration::from_millis(100);
                        }
                        let retry = tokio::time::sleep(LOAD_RETRY);
                        tokio::pin!(retry);
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                msg = messages.next() => match msg {
                                    Some(msg) => inner.on_message(msg.get_payload_bytes()),
                                    None => break,
                                },
                                () = inner.load_wanted.notified() => {
                                    // The permit an attach leaves asks for nothing new when
                                    // the load at (re)connection already covered it: a second
                                    // load would re-apply every fact later than it arrived.
                                    if inner.load_pending() {
                                        loaded = inner.load_all().await;
                                        retry.as_mut().reset(tokio::time::Instant::now() + LOAD_RETRY);
                                    }
                                }
                                () = &mut retry, if !loaded => {
                                    loaded = inner.load_all().await;
                                    retry.as_mut().reset(tokio::time::Instant::now() + LOAD_RETRY);
                                }
                            }
                        }
                        inner.stats.subscribed.store(false, Ordering::Relaxed);
                        inner.failed("the event subscription", &"connection closed");
                    }
                    Ok(Err(e)) => inner.failed("subscribing to events", &e),
                    Err(_) => inner.failed("subscribing to events", &"timed out"),
                }
            }
            Ok(Err(e)) => inner.failed("connecting for events", &e),
            Err(_) => inner.failed("connecting for events", &"timed out"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
