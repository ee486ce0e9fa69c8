//! The upstream HTTP client: HTTP/1.1 and HTTP/2 (ALPN) over rustls with bundled web PKI
//! roots (a static binary must not depend on the host's CA store), TCP_NODELAY, keep-alive
//! connections pooled by [`crate::providers::pool`].
//! Providers behind a proxy get a client of their own per proxy URL (connections through a
//! tunnel are pooled separately from direct ones).
//!
//! With several server workers (one single-threaded runtime per core, see
//! [`crate::server::listen::serve_workers`]) each worker has its own connection pool: a pooled
//! connection's task lives on the runtime that opened it, and a request from another worker would
//! have to wake that thread on every read and write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::providers::pool::Pool;
pub use crate::providers::pool::{ReqBody, UpstreamBody};
use crate::providers::proxy::{ProxyConnector, ProxySpec};
use crate::server::body::{BoxError, full};

type ProxiedClient = Arc<Pool<HttpsConnector<ProxyConnector>>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type DirectClient = Pool<HttpsConnector<HttpConnector>>;

thread_local! {
    /// Which server worker this thread is; 0 outside the workers.
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark the current thread as server worker `index` (its upstream connections use pool `index`).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index));
}

#[derive(Clone)]
pub struct UpstreamClient {
    /// One pool per server worker, indexed by the calling thread's worker index.
    direct: Arc<[DirectClient]>,
    tls: Arc<rustls::ClientConfig>,
    /// One client per proxy URL, built on first use.
    proxied: Arc<Mutex<HashMap<String, ProxiedClient>>>,
}

impl std::fmt::Debug for UpstreamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UpstreamClient")
    }
}

impl UpstreamClient {
    pub fn new() -> Result<Self, BoxError> {
        Self::with_workers(1)
    }

    /// A client with one connection pool per server worker.
    pub fn with_workers(workers: usize) -> Result<Self, BoxError> {
        // One process-wide crypto provider; "already installed" is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        // Built once: the root store is the largest part of a TLS client's memory.
        let tls = Arc::new(tls_config());
        let direct = (0..workers.max(1))
            .map(|_| {
                let mut http = HttpConnector::new();
                http.set_nodelay(true);
                http.enforce_http(false);
                http.set_connect_timeout(Some(CONNECT_TIMEOUT));
                http.set_keepalive(Some(Duration::from_secs(60)));
                Pool::new(https_over(&tls, http))
            })
            .collect();
        Ok(UpstreamClient {
            direct,
            tls,
            proxied: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub async fn send(&self, req: Request<ReqBody>) -> Result<Response<UpstreamBody>, BoxError> {
        let index = WORKER.with(|w| w.get());
        let client = self.direct.get(index).or_else(|| self.direct.first());
        match client {
            Some(c) => c.send(req).await,
            None => Err(BoxError::from("no HTTP client")),
        }
    }

    /// Send through `proxy` (a proxy URL) when given, else directly.
    pub async fn send_via(
        &self,
        proxy: Option<&str>,
        req: Request<ReqBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        let Some(url) = proxy else {
            return self.send(req).await;
        };
        let client = self.proxied_client(url)?;
        // Boxed: the proxied pool's future is as large as the direct one's, and inline it
        // would double the size of every request's future.
        Box::pin(client.send(req)).await
    }

    /// Close idle connections past their time and forget hosts no longer used (run
    /// periodically; a connection is otherwise only looked at when it is taken or given back).
    pub fn expire_idle(&self) {
        for pool in self.direct.iter() {
            pool.expire_idle();
        }
        let proxied: Vec<ProxiedClient> = {
            let map = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        for pool in proxied {
            pool.expire_idle();
        }
    }

    fn proxied_client(&self, url: &str) -> Result<ProxiedClient, BoxError> {
        let mut map = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let spec = ProxySpec::parse(url)
            .map_err(|why| BoxError::from(format!("error trying to connect: proxy: {why}")))?;
        let client = Arc::new(Pool::new(https_over(
            &self.tls,
            ProxyConnector::new(spec, CONNECT_TIMEOUT),
        )));
        map.insert(url.to_string(), Arc::clone(&client));
        Ok(client)
    }

    /// GET a small document (config from CONFIG_URL, model discovery) with a total timeout.
    pub async fn get_text(
        &self,
        url: &str,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(u16, Bytes), BoxError> {
        self.get_text_via(None, url, headers, timeout).await
    }

    /// As [`UpstreamClient::get_text`], through a provider's proxy when it has one.
    pub async fn get_text_via(
        &self,
        proxy: Option<&str>,
        url: &str,
        headers: &[(&str, String)],
        timeout: Duration,
    ) -> Result<(u16, Bytes), BoxError> {
        use http_body_util::BodyExt;
        let mut builder =
            Request::get(url).header("user-agent", concat!("llmux/", env!("CARGO_PKG_VERSION")));
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let req = builder.body(full(Bytes::new()))?;
        let fut = async {
            let resp = self.send_via(proxy, req).await?;
            let status = resp.status().as_u16();
            let body = http_body_util::Limited::new(resp.into_body(), 16 * 1024 * 1024)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, BoxError>((status, body))
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| BoxError::from(format!("timed out after {}s", timeout.as_secs())))?
    }
}

/// TLS for upstreams: bundled web PKI roots (ALPN is filled in by the connector builder).
/// Clones share the certificate verifier, so every pool uses one copy of the roots.
fn tls_config() -> rustls::ClientConfig {
    use hyper_rustls::ConfigBuilderExt;
    rustls::ClientConfig::builder()
        .with_webpki_roots()
        .with_no_client_auth()
}

fn https_over<C>(tls: &rustls::ClientConfig, connector: C) -> HttpsConnector<C> {
    hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(connector)
}
