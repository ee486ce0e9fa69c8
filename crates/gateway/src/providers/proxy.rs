//! Upstream proxies (`preferences.proxy`, per provider or global): HTTP CONNECT for `http://`
//! proxies, SOCKS5 for `socks5://` (names resolved here) and `socks5h://` (names resolved by the
//! proxy), with optional `user:password@`. hyper's client has no proxy support; this connector
//! opens the tunnel and hands hyper a plain TCP stream, on which rustls then speaks TLS to the
//! upstream itself, so the proxy never sees the traffic. Written here rather than taken from a
//! crate: the two handshakes are small, and hyper-util's own proxy connectors need a crate
//! (`ipnet`) this offline build does not have.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest CONNECT response head read from an HTTP proxy.
const MAX_CONNECT_RESPONSE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    HttpConnect,
    Socks5 { remote_dns: bool },
}

/// A parsed proxy URL.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxySpec {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for ProxySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySpec")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth", &self.auth.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl ProxySpec {
    /// `http://[user:pass@]host[:port]`, `socks5://...`, `socks5h://...`; the error says why a
    /// URL cannot be used (without repeating a password).
    pub fn parse(url: &str) -> Result<ProxySpec, String> {
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            "a proxy URL needs a scheme (http://, socks5://, socks5h://)".to_string()
        })?;
        let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyKind::HttpConnect, 80),
            "socks5" => (ProxyKind::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (ProxyKind::Socks5 { remote_dns: true }, 1080),
            "https" => {
                return Err(
                    "proxies reached over TLS (https://) are not supported; use http:// (the tunnel to an https upstream is still encrypted end to end)"
                        .into(),
                );
            }
            other => return Err(format!("unsupported proxy scheme `{other}`")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (auth, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hp)) => {
                let (u, p) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                (Some((percent_decode(u)?, percent_decode(p)?)), hp)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| "unclosed `[` in the proxy host".to_string())?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => default_port,
                None => return Err("unexpected text after the proxy host".into()),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p)?),
                None => (hostport.to_string(), default_port),
            }
        };
        let valid_host = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !valid_host {
            return Err("the proxy URL has no usable host".into());
        }
        if let Some((u, p)) = &auth
            && (u.len() > 255 || p.len() > 255)
            && kind != ProxyKind::HttpConnect
        {
            return Err("SOCKS5 user names and passwords are limited to 255 bytes".into());
        }
        Ok(ProxySpec {
            kind,
            host,
            port,
            auth,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("`{p}` is not a port number"))
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad %-escape in the proxy credentials".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "proxy credentials are not UTF-8".to_string())
}

/// A connector for hyper's client that reaches every destination through one proxy.
#[derive(Clone, Debug)]
pub struct ProxyConnector {
    spec: Arc<ProxySpec>,
    timeout: Duration,
}

impl ProxyConnector {
    pub fn new(spec: ProxySpec, timeout: Duration) -> Self {
        ProxyConnector {
            spec: Arc::new(spec),
            timeout,
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

impl tower_service::Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let spec = Arc::clone(&self.spec);
        let timeout = self.timeout;
        Box::pin(async move {
            let host = dst
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host in URL"))?;
            let port = dst.port_u16().unwrap_or(match dst.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let work = async {
                let mut s = TcpStream::connect((spec.host.as_str(), spec.port))
                    .await
                    .map_err(|e| {
                        io::Error::new(
                            e.kind(),
                            format!("tcp connect error: proxy {}:{}: {e}", spec.host, spec.port),
                        )
                    })?;
                s.set_nodelay(true)?;
                match spec.kind {
                    ProxyKind::HttpConnect => http_connect(&mut s, &spec, &host, port).await?,
                    ProxyKind::Socks5 { remote_dns } => {
                        socks5(&mut s, &spec, &host, port, remote_dns).await?;
                    }
                }
                Ok::<_, io::Error>(s)
            };
            let stream = tokio::time::timeout(timeout, work).await.map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "tcp connect error: proxy {}:{} timed out",
                        spec.host, spec.port
                    ),
                )
            })??;
            Ok(TokioIo::new(stream))
        })
    }
}

fn proxy_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

async fn http_connect(
    s: &mut TcpStream,
    spec: &ProxySpec,
    host: &str,
    port: u16,
) -> io::Result<()> {
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((u, p)) = &spec.auth {
        let token = protocol::base64::encode(format!("{u}:{p}").as_bytes());
        req.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    // Read byte-wise up to the blank line: anything after it belongs to the tunnel.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err(proxy_err("proxy CONNECT response is too long".into()));
        }
        if s.read(&mut byte).await? == 0 {
            return Err(proxy_err(
                "proxy closed the connection during CONNECT".into(),
            ));
        }
        head.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if code.starts_with('2') {
        Ok(())
    } else {
        Err(proxy_err(format!(
            "proxy refused CONNECT to {target}: {status_line}"
        )))
    }
}

fn socks_reply(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown error",
    }
}

async fn socks5(
    s: &mut TcpStream,
    spec: &ProxySpec,
    host: &str,
    port: u16,
    remote_dns: bool,
) -> io::Result<()> {
    let greeting: &[u8] = if spec.auth.is_some() {
        &[5, 2, 0, 2]
    } else {
        &[5, 1, 0]
    };
    s.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    s.read_exact(&mut choice).await?;
    if choice[0] != 5 {
        return Err(proxy_err("not a SOCKS5 proxy".into()));
    }
    match (choice[1], &spec.auth) {
        (0, _) => {}
        (2, Some((u, p))) => {
            let mut msg = vec![1, u.len() as u8];
            msg.extend_from_slice(u.as_bytes());
            msg.push(p.len() as u8);
            msg.extend_from_slice(p.as_bytes());
            s.write_all(&msg).await?;
            let mut status = [0u8; 2];
            s.read_exact(&mut status).await?;
            if status[1] != 0 {
                return Err(proxy_err("SOCKS5 proxy rejected the credentials".into()));
            }
        }
        _ => {
            return Err(proxy_err(
                "SOCKS5 proxy offers no authentication method llmux can use".into(),
            ));
        }
    }
    let mut req = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => push_ip(&mut req, ip),
        Err(_) if remote_dns => {
            let name = host.as_bytes();
            if name.len() > 255 {
                return Err(proxy_err("host name too long for SOCKS5".into()));
            }
            req.push(3);
            req.push(name.len() as u8);
            req.extend_from_slice(name);
        }
        Err(_) => {
            let addr = tokio::net::lookup_host((host, port))
                .await?
                .next()
                .ok_or_else(|| proxy_err(format!("dns error: no address for {host}")))?;
            push_ip(&mut req, addr.ip());
        }
    }
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await?;
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    if head[1] != 0 {
        return Err(proxy_err(format!(
            "SOCKS5 proxy could not connect to {host}:{port}: {}",
            socks_reply(head[1])
        )));
    }
    let skip = match head[3] {
        1 => 4,
        4 => 16,
        3 => {
            let mut len = [0u8; 1];
            s.read_exact(&mut len).await?;
            usize::from(len[0])
        }
        _ => return Err(proxy_err("malformed SOCKS5 reply".into())),
    };
    let mut rest = vec![0u8; skip + 2];
    s.read_exact(&mut rest).await?;
    Ok(())
}

fn push_ip(req: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            req.push(1);
            req.extend_from_slice(&v4.octets());
        }
        std::net::IpAddr::V6(v6) => {
            req.push(4);
            req.extend_from_slice(&v6.octets());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = ProxySpec::parse("http://proxy.local:3128").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::HttpConnect, "proxy.local", 3128)
        );
        let p = ProxySpec::parse("socks5h://us%40er:p%3Ass@10.0.0.1").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5 { remote_dns: true });
        assert_eq!(p.port, 1080);
        assert_eq!(p.auth, Some(("us@er".into(), "p:ss".into())));
        let p = ProxySpec::parse("SOCKS5://[::1]:9050/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 9050));
        assert!(!format!("{p:?}").contains("ss"));
        assert!(ProxySpec::parse("socks5://[username]:[password]@[ip]:[port]").is_err());
        assert!(
            ProxySpec::parse("https://p:1")
                .unwrap_err()
                .contains("http://")
        );
        assert!(ProxySpec::parse("proxy:1").is_err());
        assert!(ProxySpec::parse("http://h:0").is_err());
    }
}
