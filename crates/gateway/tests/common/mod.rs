//! Test harness: llmux in process on 127.0.0.1:0 against mock-upstream, driven over real HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use llmux::app::App;
use llmux::providers::client::UpstreamClient;
use llmux::runtime::Runtime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct Gateway {
    pub addr: std::net::SocketAddr,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signal shutdown (as SIGTERM would) and return the server task to await.
    pub fn shutdown(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.take().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn compile(yaml: &str) -> Runtime {
    let loaded = llmux::config::parse_config(yaml, "test.yaml", &|_| None)
        .unwrap_or_else(|e| panic!("config errors: {e:?}"));
    let (rt, _) = Runtime::compile(&loaded.config, "test.yaml", Duration::from_secs(100))
        .unwrap_or_else(|e| panic!("compile errors: {e:?}"));
    rt
}

pub async fn start(yaml: &str) -> Gateway {
    start_runtime(compile(yaml)).await
}

pub async fn start_runtime(rt: Runtime) -> Gateway {
    let app = App::new(rt, UpstreamClient::new().unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(llmux::server::listen::serve(
        Arc::clone(&app),
        listener,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));
    Gateway {
        addr,
        app,
        stop: Some(tx),
        task: Some(task),
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `data:` payloads of an SSE body, in order (`event:` lines skipped).
    pub fn sse_data(&self) -> Vec<String> {
        self.text()
            .split("\n\n")
            .filter_map(|ev| {
                let data: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                (!data.is_empty()).then(|| data.join("\n"))
            })
            .collect()
    }
    /// Assert the OpenAI error shape and return the error object.
    pub fn openai_error(&self) -> serde_json::Value {
        let v = self.json();
        let err = v
            .get("error")
            .unwrap_or_else(|| panic!("no error object: {v}"))
            .clone();
        assert!(err.get("message").and_then(|m| m.as_str()).is_some(), "{v}");
        assert!(err.get("type").and_then(|m| m.as_str()).is_some(), "{v}");
        assert!(err.get("code").is_some(), "{v}");
        err
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let resp = client().request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn post_json(url: &str, key: Option<&str>, body: &str) -> Reply {
    let mut b = Request::post(url).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    send(b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}

pub async fn get(url: &str, key: Option<&str>) -> Reply {
    let mut b = Request::get(url);
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

pub fn chat_body(model: &str, text: &str, stream: bool) -> String {
    serde_json::json!({
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    })
    .to_string()
}

/// A raw HTTP/1.1 exchange over TCP (for malformed requests no client library would send).
pub async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// llmux started from a config file (reloadable: the admin endpoint and `reload::reload` read
/// it again).
pub async fn start_file(path: &std::path::Path) -> Gateway {
    let yaml = std::fs::read_to_string(path).unwrap();
    let rt = compile(&yaml);
    let app = App::with_source(
        rt,
        UpstreamClient::new().unwrap(),
        Some(llmux::app::ConfigSource::File(path.to_path_buf())),
        None,
    );
    serve_app(app).await
}

pub async fn serve_app(app: Arc<App>) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(llmux::server::listen::serve(
        Arc::clone(&app),
        listener,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));
    Gateway {
        addr,
        app,
        stop: Some(tx),
        task: Some(task),
    }
}

/// A fresh temporary directory for config files (removed by the OS eventually; names are
/// unique per test run).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "llmux-test-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn post_json_with(
    url: &str,
    key: Option<&str>,
    body: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut b = Request::post(url).header("content-type", "application/json");
    if let Some(k) = key {
        b = b.header("authorization", format!("Bearer {k}"));
    }
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
}
