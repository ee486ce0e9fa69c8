//! End-to-end: every client request leaves one usage row (and one row per upstream attempt) in
//! the usage store, through llmux over real HTTP against mock-upstream — non-stream, stream,
//! a stream cut by the client, failures, failover, converted formats; the uni-api statistics
//! endpoints and `/metrics`; smart_round_robin fed from the store; SIGTERM under load writes
//! every completed request; no configured key ever reaches the database or the logs.
//! SQLite always; PostgreSQL too when `LLMUX_TEST_PG_URL` is set (scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod store_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use llmux::app::App;
use llmux::providers::client::UpstreamClient;
use llmux::store::{Backend, StoreConfig, UsageService, WriterConfig};
use llmux::usage::key_id;
use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};
use serde_json::{Value, json};
use sqlx::Row;
use store_common::{PgServer, TempDir, pg, pg_database, pg_url};

const ADMIN: &str = "sk-usage-admin-aaaaaaaaaaaa";
const USER: &str = "sk-usage-user-bbbbbbbbbbbbb";
const UP1: &str = "sk-upstream-one-1111111111";
const UP2: &str = "sk-upstream-two-2222222222";
/// One dollar per token each way: "hi" costs 1 prompt + 3 completion tokens ("You said: hi").
const PRICES: &str =
    "preferences:\n  model_price:\n    gpt-4o: 1000000,1000000\n    default: 0,0\n";

// ---------------------------------------------------------------------------------------------
// Harness: llmux with a real usage store, and a reader of its rows.

/// Where the rows are read back from (a second connection, as an operator's would be).
enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Every column as text (both backends cast alike), so one reader serves both.
    async fn fetch(&self, sql: &'static str) -> Vec<Vec<Option<String>>> {
        fn cells<R: Row>(r: &R) -> Vec<Option<String>>
        where
            for<'a> Option<String>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            (0..r.len()).map(|i| r.try_get(i).unwrap()).collect()
        }
        match self {
            Db::Sqlite(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(cells)
                .collect(),
            Db::Postgres(p) => sqlx::query(sql)
                .fetch_all(p)
                .await
                .unwrap()
                .iter()
                .map(cells)
                .collect(),
        }
    }
}

#[derive(Debug, Clone)]
struct ReqRow {
    request_id: String,
    client_key: String,
    endpoint: String,
    model: String,
    provider: Option<String>,
    upstream_model: Option<String>,
    key_fingerprint: Option<String>,
    status: u16,
    attempts: u32,
    stream: bool,
    latency_ms: u64,
    ttft_ms: Option<u64>,
    prompt: u64,
    completion: u64,
    cached: u64,
    reasoning: u64,
    estimated: bool,
    prompt_price: f64,
    cost: f64,
    client_ip: Option<String>,
}

#[derive(Debug, Clone)]
struct AttemptRow {
    request_id: String,
    provider: String,
    key_fingerprint: Option<String>,
    success: bool,
    status: Option<u16>,
    error_class: Option<String>,
}

fn text(c: &Option<String>) -> String {
    c.clone().unwrap_or_default()
}

fn num<T: std::str::FromStr>(c: &Option<String>) -> T {
    let s = text(c);
    s.parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

fn flag(c: &Option<String>) -> bool {
    matches!(text(c).as_str(), "1" | "true")
}

const REQUESTS_SQL: &str = "SELECT request_id, client_key, endpoint, model, provider, upstream_model, \
    key_fingerprint, CAST(status AS TEXT), CAST(attempts AS TEXT), CAST(stream AS TEXT), \
    CAST(latency_ms AS TEXT), CAST(ttft_ms AS TEXT), CAST(prompt_tokens AS TEXT), \
    CAST(completion_tokens AS TEXT), CAST(cached_tokens AS TEXT), CAST(reasoning_tokens AS TEXT), \
    CAST(tokens_estimated AS TEXT), CAST(prompt_price AS TEXT), CAST(cost AS TEXT), client_ip \
    FROM llmux_requests ORDER BY id";

/// Every attempt, as the stats read them: rows of `llmux_attempts` and the attempts kept inline
/// in request rows. Within a request, failures come first (every failover ends in its success).
const ATTEMPTS_SQL: &str = "SELECT request_id, provider, key_fingerprint, CAST(success AS TEXT), \
    CAST(status AS TEXT), error_class FROM llmux_all_attempts \
    ORDER BY at_ms, request_id, CAST(success AS INTEGER)";

/// Rows of the attempts table alone (failed attempts and those of requests that failed over).
const ATTEMPT_TABLE_SQL: &str = "SELECT request_id FROM llmux_attempts";

impl Db {
    async fn requests(&self) -> Vec<ReqRow> {
        self.fetch(REQUESTS_SQL)
            .await
            .iter()
            .map(|c| ReqRow {
                request_id: text(&c[0]),
                client_key: text(&c[1]),
                endpoint: text(&c[2]),
                model: text(&c[3]),
                provider: c[4].clone(),
                upstream_model: c[5].clone(),
                key_fingerprint: c[6].clone(),
                status: num(&c[7]),
                attempts: num(&c[8]),
                stream: flag(&c[9]),
                latency_ms: num(&c[10]),
                ttft_ms: c[11].as_ref().map(|_| num(&c[11])),
                prompt: num(&c[12]),
                completion: num(&c[13]),
                cached: num(&c[14]),
                reasoning: num(&c[15]),
                estimated: flag(&c[16]),
                prompt_price: num(&c[17]),
                cost: num(&c[18]),
                client_ip: c[19].clone(),
            })
            .collect()
    }

    async fn attempts(&self) -> Vec<AttemptRow> {
        self.fetch(ATTEMPTS_SQL)
            .await
            .iter()
            .map(|c| AttemptRow {
                request_id: text(&c[0]),
                provider: text(&c[1]),
                key_fingerprint: c[2].clone(),
                success: flag(&c[3]),
                status: c[4].as_ref().map(|_| num(&c[4])),
                error_class: c[5].clone(),
            })
            .collect()
    }

    async fn attempt_table_rows(&self) -> usize {
        self.fetch(ATTEMPT_TABLE_SQL).await.len()
    }

    /// The request rows once `n` are written (the writer flushes every few milliseconds here).
    async fn wait_requests(&self, n: usize) -> Vec<ReqRow> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rows = self.requests().await;
            if rows.len() >= n {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} request rows written: {rows:#?}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A usage store for one test: SQLite in a temp dir, or a fresh PostgreSQL database.
struct Store {
    _dir: TempDir,
    service: Option<UsageService>,
    db: Db,
}

fn fast_writer() -> WriterConfig {
    WriterConfig {
        flush_interval: Duration::from_millis(10),
        ..WriterConfig::default()
    }
}

async fn sqlite_store() -> Store {
    let dir = TempDir::new();
    let path = dir.path("stats.db");
    let service = UsageService::start(StoreConfig {
        backend: Backend::Sqlite { path: path.clone() },
        retention_days: 0,
        writer: fast_writer(),
    })
    .await
    .unwrap();
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    Store {
        _dir: dir,
        service: Some(service),
        db: Db::Sqlite(pool),
    }
}

async fn pg_store(url: &str) -> Store {
    let opts = pg_database(url).await;
    let service = UsageService::start(StoreConfig {
        backend: Backend::Postgres(Box::new(opts.clone())),
        retention_days: 0,
        writer: fast_writer(),
    })
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect_with(opts).await.unwrap();
    // The writer creates the tables on its first connection; wait for them.
    let deadline = Instant::now() + Duration::from_secs(15);
    while sqlx::query("SELECT 1 FROM llmux_requests LIMIT 1")
        .fetch_optional(&pool)
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "tables not created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Store {
        _dir: TempDir::new(),
        service: Some(service),
        db: Db::Postgres(pool),
    }
}

async fn gateway(yaml: &str, store: &Store) -> Gateway {
    let app = App::with_source(
        compile(yaml),
        UpstreamClient::new().unwrap(),
        None,
        store.service.as_ref(),
    );
    serve_app(app).await
}

fn config(m: &MockServer, extra_providers: &str, keys: &str, global: &str) -> String {
    format!(
        "providers:\n  - provider: main\n    base_url: {}\n    api: {UP1}\n    model: [gpt-4o-mini, gpt-4o, text-embedding-3-small]\n{extra_providers}api_keys:\n{keys}{global}",
        m.base_url()
    )
}

fn two_keys() -> String {
    format!(
        "  - api: {ADMIN}\n    role: admin\n  - api: {USER}\n    preferences:\n      credits: 100\n"
    )
}

fn request_id(r: &Reply) -> String {
    r.headers
        .get("x-request-id")
        .expect("x-request-id")
        .to_str()
        .unwrap()
        .to_owned()
}

fn row<'a>(rows: &'a [ReqRow], id: &str) -> &'a ReqRow {
    rows.iter()
        .find(|r| r.request_id == id)
        .unwrap_or_else(|| panic!("no row for {id}: {rows:#?}"))
}

/// `hi` to `gpt-4o-mini`, not streamed.
async fn hi(url: &str, key: &str) -> Reply {
    post_json(url, Some(key), &chat_body("gpt-4o-mini", "hi", false)).await
}

async fn mock() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// Records

async fn records_non_stream_and_stream(store: Store) {
    let m = mock().await;
    let gw = gateway(&config(&m, "", &two_keys(), PRICES), &store).await;
    let url = gw.url("/v1/chat/completions");
    let plain = post_json_with(
        &url,
        Some(USER),
        &chat_body("gpt-4o-mini", "hi", false),
        &[("x-forwarded-for", "203.0.113.9, 10.0.0.1")],
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    // The client does not ask for usage: llmux asks the upstream and hides it.
    let streamed = post_json(&url, Some(USER), &chat_body("gpt-4o-mini", "hi", true)).await;
    assert_eq!(streamed.status, 200);
    assert!(
        !streamed.text().contains("\"choices\":[]"),
        "{}",
        streamed.text()
    );
    let embed = post_json(
        &gw.url("/v1/embeddings"),
        Some(USER),
        &json!({"model": "text-embedding-3-small", "input": "hello there"}).to_string(),
    )
    .await;
    assert_eq!(embed.status, 200);

    let rows = store.db.wait_requests(3).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let r = row(&rows, &request_id(&plain));
    assert_eq!(r.client_key, key_id(USER));
    assert_eq!(r.endpoint, "POST /v1/chat/completions");
    assert_eq!(r.model, "gpt-4o-mini");
    assert_eq!(r.provider.as_deref(), Some("main"));
    assert_eq!(r.upstream_model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(r.key_fingerprint, Some(key_id(UP1)));
    assert_eq!((r.status, r.attempts, r.stream), (200, 1, false));
    assert_eq!((r.prompt, r.completion, r.estimated), (1, 3, false));
    // The mock reports its (zero) cached and reasoning details; they are stored as reported.
    assert_eq!((r.cached, r.reasoning), (0, 0));
    // Priced by the `gpt-4o` prefix, snapshotted in the row.
    assert_eq!(r.prompt_price, 1_000_000.0);
    assert!((r.cost - 4.0).abs() < 1e-9, "{}", r.cost);
    assert_eq!(r.client_ip.as_deref(), Some("203.0.113.9"));
    assert!(r.ttft_ms.is_some_and(|t| t <= r.latency_ms), "{r:?}");

    let s = row(&rows, &request_id(&streamed));
    assert!(s.stream);
    assert_eq!(
        (s.prompt, s.completion, s.estimated),
        (1, 3, false),
        "{s:?}"
    );
    assert_eq!(s.client_ip.as_deref(), Some("127.0.0.1"));
    assert!(s.ttft_ms.is_some());

    let e = row(&rows, &request_id(&embed));
    assert_eq!(e.endpoint, "POST /v1/embeddings");
    assert!(e.prompt > 0 && !e.estimated, "{e:?}");
    // `default: 0,0` prices it at nothing.
    assert_eq!(e.cost, 0.0);

    let attempts = store.db.attempts().await;
    assert_eq!(attempts.len(), 3, "{attempts:#?}");
    // Each was answered at the first try: its attempt lives in the request's own row.
    assert_eq!(store.db.attempt_table_rows().await, 0);
    assert!(attempts.iter().all(|a| a.success
        && a.status == Some(200)
        && a.provider == "main"
        && a.key_fingerprint == Some(key_id(UP1))));
    assert!(
        attempts
            .iter()
            .any(|a| a.request_id == request_id(&streamed))
    );
    // The credits ledger saw the same spending: $4 per chat.
    let spent = llmux::usage::CreditsView::spent_since(&**gw.app.ledger(), &key_id(USER), 0);
    assert!((spent - 8.0).abs() < 1e-9, "{spent}");
}

#[tokio::test]
async fn records_non_stream_and_stream_requests_sqlite() {
    records_non_stream_and_stream(sqlite_store().await).await;
}

#[tokio::test]
async fn records_non_stream_and_stream_requests_postgres() {
    let Some(url) = pg_url("records_non_stream_and_stream_requests_postgres") else {
        return;
    };
    records_non_stream_and_stream(pg_store(&url).await).await;
}

#[tokio::test]
async fn a_stream_cut_by_the_client_still_records_its_usage() {
    let store = sqlite_store().await;
    let m = MockServer::start(MockOptions {
        chunk_delay: Duration::from_millis(100),
        reply: Some("one two three four five six seven eight nine ten eleven twelve".into()),
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let gw = gateway(&config(&m, "", &two_keys(), PRICES), &store).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = Request::post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {USER}"))
        .body(Full::new(Bytes::from(chat_body("gpt-4o-mini", "hi", true))))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = resp
        .headers()
        .get("x-request-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let mut body = resp.into_body();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("one") {
        let frame = body.frame().await.unwrap().unwrap();
        if let Some(d) = frame.data_ref() {
            seen.extend_from_slice(d);
        }
    }
    // The client leaves mid-stream.
    drop(body);
    drop(client);
    let rows = store.db.wait_requests(1).await;
    let r = row(&rows, &id);
    assert_eq!(r.status, 200);
    assert!(r.stream && r.ttft_ms.is_some());
    // The usage chunk never came: estimated from the request and the text relayed so far,
    // and charged.
    assert!(r.estimated, "{r:?}");
    assert!(r.prompt > 0 && r.completion > 0, "{r:?}");
    assert!(r.cost > 0.0);
    assert!(
        r.latency_ms < 1000,
        "recorded when the client left, not when the upstream ended: {r:?}"
    );
}

#[tokio::test]
async fn failures_and_failover_are_recorded_with_one_row_per_attempt() {
    let store = sqlite_store().await;
    let m = mock().await;
    let second = format!(
        "  - provider: backup\n    base_url: {}\n    api: {UP2}\n    model: [gpt-4o-mini]\n",
        m.base_url()
    );
    let gw = gateway(&config(&m, &second, &two_keys(), ""), &store).await;
    let url = gw.url("/v1/chat/completions");
    // `main` fails with a server error; `backup` answers.
    m.push_fault(Fault::new(FaultKind::ServerError).for_key(UP1));
    let failover = hi(&url, USER).await;
    assert_eq!(failover.status, 200, "{}", failover.text());
    // A request error the upstream refuses: relayed at once, not retried.
    m.push_fault(Fault::new(FaultKind::BadRequest {
        message: "bad temperature".into(),
    }));
    let refused = post_json(&url, Some(USER), &chat_body("gpt-4o", "hi", false)).await;
    assert_eq!(refused.status, 400);
    // Refused before routing: unknown model, broken JSON.
    let unknown = post_json(&url, Some(USER), &chat_body("no-such-model", "hi", false)).await;
    assert_eq!(unknown.status, 404);
    let broken = post_json(&url, Some(USER), "{not json").await;
    assert_eq!(broken.status, 400);

    let rows = store.db.wait_requests(4).await;
    let f = row(&rows, &request_id(&failover));
    assert_eq!((f.status, f.attempts), (200, 2));
    assert_eq!(f.provider.as_deref(), Some("backup"));
    assert_eq!(f.key_fingerprint, Some(key_id(UP2)));
    let r = row(&rows, &request_id(&refused));
    assert_eq!((r.status, r.attempts), (400, 1));
    assert_eq!((r.prompt, r.completion, r.cost), (0, 0, 0.0));
    let u = row(&rows, &request_id(&unknown));
    assert_eq!(
        (u.status, u.attempts, u.model.as_str()),
        (404, 0, "no-such-model")
    );
    assert_eq!(u.provider, None);
    let b = row(&rows, &request_id(&broken));
    assert_eq!((b.status, b.model.as_str()), (400, ""));

    let attempts = store.db.attempts().await;
    let of = |id: &str| -> Vec<AttemptRow> {
        attempts
            .iter()
            .filter(|a| a.request_id == id)
            .cloned()
            .collect()
    };
    let fo = of(&request_id(&failover));
    assert_eq!(fo.len(), 2, "{attempts:#?}");
    assert_eq!(
        (fo[0].provider.as_str(), fo[0].success, fo[0].status),
        ("main", false, Some(500))
    );
    assert_eq!(fo[0].error_class.as_deref(), Some("server_error"));
    assert_eq!((fo[1].provider.as_str(), fo[1].success), ("backup", true));
    assert_eq!(fo[1].error_class, None);
    let re = of(&request_id(&refused));
    assert_eq!(re.len(), 1);
    assert_eq!((re[0].success, re[0].status), (false, Some(400)));
    assert_eq!(
        re[0].error_class.as_deref(),
        Some("bad_request_non_retryable")
    );
    assert!(of(&request_id(&unknown)).is_empty());

    // /metrics counts the same.
    let metrics = get(&gw.url("/metrics"), Some(ADMIN)).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in [
        "llmux_requests_total{endpoint=\"/v1/chat/completions\",status=\"2xx\"} 1\n",
        "llmux_requests_total{endpoint=\"/v1/chat/completions\",status=\"4xx\"} 3\n",
        "llmux_upstream_errors_total{class=\"server_error\"} 1\n",
        "llmux_upstream_errors_total{class=\"bad_request_non_retryable\"} 1\n",
        "llmux_request_duration_seconds_count 4\n",
        "llmux_tokens_total{kind=\"completion\"} 3\n",
        "llmux_upstream_keys{provider=\"main\",state=\"healthy\"} 1\n",
        "llmux_usage_queue_capacity 16384\n",
        "llmux_usage_dropped_total{reason=\"queue_full\"} 0\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
    assert_eq!(
        metrics.headers.get("content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

async fn post_anthropic(url: &str, body: &Value) -> Reply {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .header("x-api-key", USER)
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    send(req).await
}

#[tokio::test]
async fn converted_formats_record_the_upstream_usage() {
    let store = sqlite_store().await;
    let mut opts = MockOptions::default();
    opts.models.push("claude-sonnet-4-5".into());
    let m = MockServer::start(opts).await.unwrap();
    let claude = format!(
        "  - provider: claude\n    base_url: {}/v1/messages\n    api: {UP2}\n    model: [claude-sonnet-4-5]\n",
        m.root_url()
    );
    let keys = format!("  - api: {USER}\n");
    let gw = gateway(&config(&m, &claude, &keys, ""), &store).await;
    // Anthropic client -> OpenAI upstream, whole and streamed.
    let body = json!({"model": "gpt-4o", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]});
    let a = post_anthropic(&gw.url("/v1/messages"), &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let a_stream = post_anthropic(&gw.url("/v1/messages"), &streamed).await;
    assert_eq!(a_stream.status, 200);
    // OpenAI client -> Anthropic upstream, whole and streamed.
    let url = gw.url("/v1/chat/completions");
    let o = post_json(
        &url,
        Some(USER),
        &chat_body("claude-sonnet-4-5", "hi", false),
    )
    .await;
    assert_eq!(o.status, 200, "{}", o.text());
    let o_stream = post_json(
        &url,
        Some(USER),
        &chat_body("claude-sonnet-4-5", "hi", true),
    )
    .await;
    assert_eq!(o_stream.status, 200);
    // Gemini client (the key in the query string) -> OpenAI upstream.
    let g = post_json(
        &gw.url(&format!("/v1beta/models/gpt-4o:generateContent?key={USER}")),
        None,
        &json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).to_string(),
    )
    .await;
    assert_eq!(g.status, 200, "{}", g.text());

    let rows = store.db.wait_requests(5).await;
    for (reply, endpoint, stream, provider) in [
        (&a, "POST /v1/messages", false, "main"),
        (&a_stream, "POST /v1/messages", true, "main"),
        (&o, "POST /v1/chat/completions", false, "claude"),
        (&o_stream, "POST /v1/chat/completions", true, "claude"),
        (
            &g,
            "POST /v1beta/models/gpt-4o:generateContent",
            false,
            "main",
        ),
    ] {
        let r = row(&rows, &request_id(reply));
        assert_eq!(
            r.endpoint, endpoint,
            "the query (and its key) is never stored"
        );
        assert_eq!((r.stream, r.status), (stream, 200), "{r:?}");
        assert_eq!(r.provider.as_deref(), Some(provider));
        assert!(
            r.prompt > 0 && r.completion > 0 && !r.estimated,
            "reported usage expected: {r:?}"
        );
        assert_eq!(r.client_key, key_id(USER));
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints

#[tokio::test]
async fn statistics_endpoints_answer_uni_api_shapes_to_the_right_keys() {
    let store = sqlite_store().await;
    let m = mock().await;
    let keys = format!(
        "  - api: {ADMIN}\n    role: admin\n  - api: {USER}\n    preferences:\n      credits: 4.5\n"
    );
    let gw = gateway(&config(&m, "", &keys, PRICES), &store).await;
    let url = gw.url("/v1/chat/completions");
    let ask = |key: &'static str| hi(&url, key);
    assert_eq!(ask(USER).await.status, 200);
    assert_eq!(ask(USER).await.status, 200);
    // $8 of $4.5 spent: refused.
    assert_eq!(ask(USER).await.status, 429);
    assert_eq!(ask(ADMIN).await.status, 200);
    store.db.wait_requests(4).await;

    // Admin-only endpoints refuse a plain key with uni-api's answer.
    for (method, path) in [
        ("GET", "/v1/stats"),
        ("GET", "/v1/channel_key_rankings?provider_name=main"),
        ("GET", "/v1/api_keys_states"),
        ("POST", "/v1/add_credits?paid_key=x&amount=1"),
        ("GET", "/v1/generate-api-key"),
    ] {
        let r = if method == "GET" {
            get(&gw.url(path), Some(USER)).await
        } else {
            post_json(&gw.url(path), Some(USER), "").await
        };
        assert_eq!(r.status, 403, "{path}");
        assert_eq!(r.json(), json!({"message": "Permission denied"}), "{path}");
    }
    let r = get(&gw.url("/metrics"), Some(USER)).await;
    assert_eq!(r.status, 403);
    assert_eq!(get(&gw.url("/metrics"), None).await.status, 401);

    let stats = get(&gw.url("/v1/stats?hours=48"), Some(ADMIN)).await.json();
    assert_eq!(stats["time_range"], "Last 48 hours");
    assert_eq!(
        stats["channel_success_rates"],
        json!([{"provider": "main", "success_rate": 1.0, "total_requests": 3}])
    );
    assert_eq!(
        stats["channel_model_success_rates"],
        json!([{"provider": "main", "model": "gpt-4o-mini", "success_rate": 1.0, "total_requests": 3}])
    );
    assert_eq!(
        stats["model_request_counts"],
        json!([{"model": "gpt-4o-mini", "count": 4}])
    );
    assert_eq!(
        stats["endpoint_request_counts"],
        json!([{"endpoint": "POST /v1/chat/completions", "count": 4}])
    );
    assert_eq!(
        stats["ip_request_counts"],
        json!([{"ip": "127.0.0.1", "count": 4}])
    );
    let bad = get(&gw.url("/v1/stats?hours=0"), Some(ADMIN)).await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.json(),
        json!({"message": "hours must be between 1 and 720."})
    );

    // A plain key sees only itself, with its credits.
    let mine = get(&gw.url("/v1/token_usage"), Some(USER)).await.json();
    assert_eq!(
        mine["usage"],
        json!([{"api_key_prefix": "sk-...bbbb", "model": "gpt-4o-mini", "total_prompt_tokens": 2,
                "total_completion_tokens": 6, "total_tokens": 8, "request_count": 3}])
    );
    let d = &mine["query_details"];
    assert_eq!(d["api_key_filter"], "self");
    assert_eq!(d["credits"], "$4.5");
    assert_eq!(d["total_cost"], "$8.0");
    assert_eq!(d["balance"], "$-3.5");
    // ... even when it names another key.
    let sneaky = get(
        &gw.url(&format!("/v1/token_usage?api_key_param={ADMIN}")),
        Some(USER),
    )
    .await
    .json();
    assert_eq!(sneaky["query_details"]["api_key_filter"], "self");
    let all = get(&gw.url("/v1/token_usage"), Some(ADMIN)).await.json();
    assert_eq!(all["usage"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(all["query_details"]["api_key_filter"], "all");

    let rankings = get(
        &gw.url("/v1/channel_key_rankings?provider_name=main"),
        Some(ADMIN),
    )
    .await
    .json();
    assert_eq!(
        rankings["rankings"],
        json!([{"api_key": key_id(UP1), "success_count": 3, "total_requests": 3, "success_rate": 1.0}])
    );
    assert_eq!(rankings["query_details"]["api_key_filter"], "main");

    let states = get(&gw.url("/v1/api_keys_states"), Some(ADMIN))
        .await
        .json();
    let s = &states["api_keys_states"]["sk-...bbbb"];
    assert_eq!(
        (s["credits"].as_f64(), s["enabled"].as_bool()),
        (Some(4.5), Some(false))
    );
    assert_eq!(s["total_cost"].as_f64(), Some(8.0));

    // Credits added are persisted and the credit check sees them at once.
    let added = post_json(
        &gw.url(&format!("/v1/add_credits?paid_key={USER}&amount=10")),
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!(added.status, 200, "{}", added.text());
    assert_eq!(
        added.json(),
        json!({"message": "Successfully added 10.0 credits to API key 'sk-...bbbb'.",
               "paid_key": "sk-...bbbb", "new_credits": 14.5, "enabled": true})
    );
    assert_eq!(ask(USER).await.status, 200);
    let unknown = post_json(
        &gw.url("/v1/add_credits?paid_key=sk-not-configured-zzzz&amount=1"),
        Some(ADMIN),
        "",
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(
        !unknown.text().contains("not-configured"),
        "{}",
        unknown.text()
    );

    let k = get(&gw.url("/v1/generate-api-key"), Some(ADMIN))
        .await
        .json();
    assert_eq!(k["api_key"].as_str().map(str::len), Some(51));
}

#[tokio::test]
async fn without_a_database_stats_are_empty_and_the_rest_says_disabled() {
    let m = mock().await;
    let gw = start(&config(&m, "", &two_keys(), "")).await;
    let r = hi(&gw.url("/v1/chat/completions"), USER).await;
    assert_eq!(r.status, 200);
    assert_eq!(request_id(&r).len(), 32);
    let stats = get(&gw.url("/v1/stats"), Some(ADMIN)).await;
    assert_eq!(
        (stats.status.as_u16(), stats.json()),
        (200, json!({"stats": {}}))
    );
    let usage = get(&gw.url("/v1/token_usage"), Some(USER)).await;
    assert_eq!(usage.status, 503);
    assert_eq!(usage.json(), json!({"message": "Database is disabled."}));
    // /metrics still counts (the records feed it with or without a database).
    let text = get(&gw.url("/metrics"), Some(ADMIN)).await.text();
    assert!(
        text.contains("llmux_requests_total{endpoint=\"/v1/chat/completions\",status=\"2xx\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("llmux_usage_written_total 0\n"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// smart_round_robin

#[tokio::test]
async fn smart_round_robin_orders_keys_by_the_stores_success_rates() {
    let store = sqlite_store().await;
    let m = mock().await;
    let keys3 = [
        "sk-smart-key-0-aaaaaaaa",
        "sk-smart-key-1-bbbbbbbb",
        "sk-smart-key-2-cccccccc",
    ];
    let yaml = format!(
        "providers:\n  - provider: smart\n    base_url: {}\n    api: [{}, {}, {}]\n    model: [gpt-4o-mini]\n    preferences:\n      api_key_schedule_algorithm: smart_round_robin\napi_keys:\n  - api: {USER}\n",
        m.base_url(),
        keys3[0],
        keys3[1],
        keys3[2]
    );
    let gw = gateway(&yaml, &store).await;
    // History: key 2 always succeeds, key 0 half the time, key 1 has no data.
    let sink = &gw.app.usage;
    let now = llmux::usage::time::now_ms();
    for (k, ok) in [(2, true), (2, true), (0, true), (0, false)] {
        sink.record_attempt(llmux::usage::AttemptRecord {
            at_ms: now - 3_600_000,
            request_id: "history".into(),
            client_key: key_id(USER).into(),
            provider: "smart".into(),
            model: "gpt-4o-mini".into(),
            upstream_model: "gpt-4o-mini".into(),
            key_fingerprint: Some(key_id(keys3[k]).into()),
            success: ok,
            status: Some(if ok { 200 } else { 429 }),
            error_class: (!ok).then_some("rate_limited_transient"),
            latency_ms: 10,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.db.attempts().await.len() < 4 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    llmux::upkeep::refresh_rankings(&gw.app, gw.app.store.as_deref().unwrap()).await;
    let url = gw.url("/v1/chat/completions");
    for _ in 0..9 {
        let r = hi(&url, USER).await;
        assert_eq!(r.status, 200);
    }
    let used: Vec<usize> = m
        .requests()
        .iter()
        .map(|r| keys3.iter().position(|k| Some(*k) == r.bearer()).unwrap())
        .collect();
    // The first cycle in configuration order, then the store's ranking: 2, 0, 1.
    assert_eq!(used, vec![0, 1, 2, 2, 0, 1, 2, 0, 1]);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL stopped under load

/// A counter's value in `/metrics` text (summed over its label sets).
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_clients_still_get_answers_and_drops_are_reported() {
    if pg_url("postgres_stopped_under_load_clients_still_get_answers_and_drops_are_reported")
        .is_none()
    {
        return;
    }
    let server = PgServer(TempDir::new());
    let url = pg("start", &server.0);
    let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let usage = UsageService::start(StoreConfig {
        backend: Backend::Postgres(Box::new(opts.clone())),
        retention_days: 0,
        writer: WriterConfig {
            capacity: 64,
            batch_size: 16,
            flush_interval: Duration::from_millis(10),
            retries: 1,
            write_timeout: Duration::from_millis(500),
            ..WriterConfig::default()
        },
    })
    .await
    .unwrap();
    let m = mock().await;
    let app = App::with_source(
        compile(&config(&m, "", &two_keys(), "")),
        UpstreamClient::new().unwrap(),
        None,
        Some(&usage),
    );
    let gw = serve_app(app).await;
    let url_chat = gw.url("/v1/chat/completions");
    let metrics_url = gw.url("/metrics");
    // Polls `/metrics` until `ok` holds for `name`'s value.
    let wait_metric = |name: &'static str, ok: fn(u64) -> bool, secs: u64| {
        let url = metrics_url.clone();
        async move {
            let until = Instant::now() + Duration::from_secs(secs);
            loop {
                let text = get(&url, Some(ADMIN)).await.text();
                if ok(metric(&text, name)) {
                    return;
                }
                assert!(Instant::now() < until, "{name} never as expected:\n{text}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // Healthy: 10 requests, 10 rows (each answered at the first try, its attempt inline).
    for _ in 0..10 {
        let r = hi(&url_chat, USER).await;
        assert_eq!(r.status, 200);
    }
    wait_metric("llmux_usage_written_total", |n| n >= 10, 15).await;

    // Stopped: 8 clients for 3 s; every request is answered, none waits on the database.
    pg("stop", &server.0);
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let url = url_chat.clone();
        clients.push(tokio::spawn(async move {
            let (mut answered, mut worst) = (0u32, Duration::ZERO);
            while started.elapsed() < Duration::from_secs(3) {
                let t = Instant::now();
                let r = hi(&url, USER).await;
                assert_eq!(r.status, 200, "{}", r.text());
                worst = worst.max(t.elapsed());
                answered += 1;
            }
            (answered, worst)
        }));
    }
    let mut answered = 0;
    for c in clients {
        let (n, worst) = c.await.unwrap();
        answered += n;
        assert!(
            worst < Duration::from_millis(500),
            "a request took {worst:?}"
        );
    }
    assert!(answered > 100, "only {answered} answered in 3 s");
    wait_metric("llmux_usage_dropped_total", |n| n > 0, 15).await;

    // Back up: the writer reconnects and what comes now is written.
    pg("start", &server.0);
    wait_metric("llmux_usage_queue_depth", |n| n == 0, 30).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = hi(&url_chat, USER).await;
        assert_eq!(r.status, 200);
        ids.push(request_id(&r));
    }
    drop(gw);
    let end = usage.shutdown(Duration::from_secs(30)).await;
    assert!(end.dropped() > 0 && end.queue_depth == 0, "{end:?}");
    let pool = sqlx::PgPool::connect_with(opts).await.unwrap();
    let rows = Db::Postgres(pool).requests().await;
    for id in &ids {
        assert!(
            rows.iter().any(|r| &r.request_id == id),
            "{id} not written after the restart"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary: SIGTERM under load, and no secret in the database or the logs.

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_writes_every_completed_request_and_no_secret_is_stored_or_logged() {
    let m = MockServer::start(MockOptions {
        latency: Duration::from_millis(20),
        revoked_keys: vec![UP2.to_owned()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let dir = TempDir::new();
    let db_path = dir.path("stats.db");
    let cfg = dir.path("api.yaml");
    // Two upstream keys, one revoked (its failures are logged), two client keys.
    let yaml = format!(
        "providers:\n  - provider: main\n    base_url: {}\n    api: [{UP1}, {UP2}]\n    model: [gpt-4o-mini]\n    preferences:\n      api_key_schedule_algorithm: round_robin\napi_keys:\n{}",
        m.base_url(),
        two_keys()
    );
    std::fs::write(&cfg, yaml).unwrap();
    let port = free_port();
    let stderr_path = dir.path("stderr.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .env("DB_PATH", &db_path)
        .env("DEBUG", "true")
        .env("LLMUX_STATE_FILE", dir.path("keypool.json"))
        .env_remove("DISABLE_DATABASE")
        .env_remove("DATABASE_URL")
        .env_remove("DB_TYPE")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let child = Child(child);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "llmux did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&format!("{base}/healthz"), None).await.status, 200);

    // Load: clients loop until the server stops answering; each keeps the ids of its answers.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..16 {
        let url = format!("{base}/v1/chat/completions");
        let gemini = format!("{base}/v1beta/models/gpt-4o-mini:generateContent?key={USER}");
        let stop = Arc::clone(&stop);
        clients.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            let mut done = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (uri, key, body) = if (c + i).is_multiple_of(4) {
                    (
                        gemini.clone(),
                        None,
                        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
                            .to_string(),
                    )
                } else {
                    (
                        url.clone(),
                        Some(if c % 2 == 0 { USER } else { ADMIN }),
                        chat_body("gpt-4o-mini", "hi", (c + i).is_multiple_of(3)),
                    )
                };
                let mut b = Request::post(uri).header("content-type", "application/json");
                if let Some(k) = key {
                    b = b.header("authorization", format!("Bearer {k}"));
                }
                let Ok(resp) = client
                    .request(b.body(Full::new(Bytes::from(body))).unwrap())
                    .await
                else {
                    break;
                };
                let status = resp.status();
                let id = resp
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned());
                if resp.into_body().collect().await.is_ok()
                    && let Some(id) = id
                {
                    done.push((id, status.as_u16()));
                }
            }
            done
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = child.0.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.0.wait().unwrap()
    });
    let exit = tokio::time::timeout(Duration::from_secs(30), exit)
        .await
        .expect("llmux did not exit after SIGTERM")
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(exit.success(), "{exit:?}");
    let mut completed = Vec::new();
    for c in clients {
        completed.extend(c.await.unwrap());
    }
    assert!(completed.len() > 50, "too little load: {}", completed.len());

    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db_path)
        .read_only(true);
    let db = Db::Sqlite(sqlx::SqlitePool::connect_with(opts).await.unwrap());
    let rows = db.requests().await;
    let stored: std::collections::HashMap<&str, &ReqRow> =
        rows.iter().map(|r| (r.request_id.as_str(), r)).collect();
    let missing: Vec<_> = completed
        .iter()
        .filter(|(id, _)| !stored.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed requests not written, e.g. {:?}",
        missing.len(),
        completed.len(),
        missing.first()
    );
    for (id, status) in &completed {
        assert_eq!(stored[id.as_str()].status, *status, "{id}");
    }
    assert!(db.attempts().await.len() >= completed.len());

    // No configured key, client or upstream, in the database file or the logs.
    let logs = std::fs::read(&stderr_path).unwrap();
    assert!(
        String::from_utf8_lossy(&logs).contains("usage store: shut down"),
        "{}",
        String::from_utf8_lossy(&logs)
    );
    let mut files = vec![("stderr", logs)];
    for entry in std::fs::read_dir(&dir.0).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("stats.db") {
            files.push(("database", std::fs::read(&path).unwrap()));
        }
    }
    for (what, bytes) in &files {
        for secret in [ADMIN, USER, UP1, UP2] {
            assert!(
                memchr::memmem::find(bytes, secret.as_bytes()).is_none(),
                "{secret} found in the {what}"
            );
        }
    }
}
