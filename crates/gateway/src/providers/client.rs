//! The pooled upstream HTTP client: HTTP/1.1 and HTTP/2 (ALPN) over rustls with bundled web PKI
//! roots (a static binary must not depend on the host's CA store), TCP_NODELAY, keep-alive.
//! Providers behind a proxy get a client of their own per proxy URL (connections through a
//! tunnel are pooled separately from direct ones).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::providers::proxy::{ProxyConnector, ProxySpec};
use crate::server::body::{BoxError, RespBody, full};

/// Request bodies sent upstream: buffered JSON, or a client's multipart stream relayed.
pub type ReqBody = RespBody;

type ProxiedClient = Client<HttpsConnector<ProxyConnector>, ReqBody>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct UpstreamClient {
    inner: Client<HttpsConnector<HttpConnector>, ReqBody>,
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
        // One process-wide crypto provider; "already installed" is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(https);
        Ok(UpstreamClient {
            inner,
            proxied: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub async fn send(&self, req: Request<ReqBody>) -> Result<Response<Incoming>, BoxError> {
        self.inner.request(req).await.map_err(BoxError::from)
    }

    /// Send through `proxy` (a proxy URL) when given, else directly.
    pub async fn send_via(
        &self,
        proxy: Option<&str>,
        req: Request<ReqBody>,
    ) -> Result<Response<Incoming>, BoxError> {
        let Some(url) = proxy else {
            return self.send(req).await;
        };
        let client = self.proxied_client(url)?;
        client.request(req).await.map_err(BoxError::from)
    }

    fn proxied_client(&self, url: &str) -> Result<ProxiedClient, BoxError> {
        let mut map = self.proxied.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(url) {
            return Ok(c.clone());
        }
        let spec = ProxySpec::parse(url)
            .map_err(|why| BoxError::from(format!("error trying to connect: proxy: {why}")))?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(spec, CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .build(https);
        map.insert(url.to_string(), client.clone());
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
