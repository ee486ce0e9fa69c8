//! Remote images for upstreams that only take inline bytes (Gemini, Bedrock): llmux fetches
//! each `http(s)` image URL once per request, with a size cap, a deadline and a content check,
//! and replaces it by base64 data. Private and loopback addresses are refused unless allowed,
//! so a client cannot make the gateway probe its own network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Limited};
use protocol::ir::{ChatRequest, MediaSource, Part};

use crate::providers::client::UpstreamClient;
use crate::server::body::full;

#[derive(Debug, Clone)]
pub struct MediaLimits {
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Allow URLs that resolve to loopback, private or link-local addresses.
    pub allow_private: bool,
}

impl Default for MediaLimits {
    fn default() -> Self {
        MediaLimits {
            max_bytes: 20 * 1024 * 1024,
            timeout: Duration::from_secs(20),
            allow_private: false,
        }
    }
}

/// True when the request carries an image given by http(s) URL.
pub fn has_remote_images(req: &ChatRequest) -> bool {
    let mut found = false;
    visit_images(req, &mut |src| {
        if let MediaSource::Url { url } = src
            && is_http(url)
        {
            found = true;
        }
    });
    found
}

fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn visit_images(req: &ChatRequest, f: &mut impl FnMut(&MediaSource)) {
    fn parts(ps: &[Part], f: &mut impl FnMut(&MediaSource)) {
        for p in ps {
            match p {
                Part::Image { source, .. } => f(source),
                Part::ToolResult { content, .. } => parts(content, f),
                _ => {}
            }
        }
    }
    parts(&req.system, f);
    for m in &req.messages {
        parts(&m.content, f);
    }
}

fn visit_images_mut(req: &mut ChatRequest, f: &mut impl FnMut(&mut MediaSource)) {
    fn parts(ps: &mut [Part], f: &mut impl FnMut(&mut MediaSource)) {
        for p in ps {
            match p {
                Part::Image { source, .. } => f(source),
                Part::ToolResult { content, .. } => parts(content, f),
                _ => {}
            }
        }
    }
    parts(&mut req.system, f);
    for m in &mut req.messages {
        parts(&mut m.content, f);
    }
}

/// Replaces every http(s) image URL by its bytes. The error names the URL and the reason; it
/// is the client's problem (a 400).
pub async fn inline_remote_images(
    req: &mut ChatRequest,
    client: &UpstreamClient,
    limits: &MediaLimits,
) -> Result<(), String> {
    let mut urls: Vec<String> = Vec::new();
    visit_images(req, &mut |src| {
        if let MediaSource::Url { url } = src
            && is_http(url)
            && !urls.contains(url)
        {
            urls.push(url.clone());
        }
    });
    let mut fetched: HashMap<String, MediaSource> = HashMap::new();
    for url in urls {
        let source = fetch_image(&url, client, limits)
            .await
            .map_err(|why| format!("could not fetch image {}: {why}", shorten(&url)))?;
        fetched.insert(url, source);
    }
    visit_images_mut(req, &mut |src| {
        if let MediaSource::Url { url } = src
            && let Some(inline) = fetched.get(url.as_str())
        {
            *src = inline.clone();
        }
    });
    Ok(())
}

fn shorten(url: &str) -> String {
    if url.chars().count() > 120 {
        let head: String = url.chars().take(117).collect();
        format!("{head}...")
    } else {
        url.to_string()
    }
}

async fn fetch_image(
    url: &str,
    client: &UpstreamClient,
    limits: &MediaLimits,
) -> Result<MediaSource, String> {
    let uri: http::Uri = url.parse().map_err(|_| "not a valid URL".to_string())?;
    let host = uri.host().ok_or("the URL has no host")?.to_string();
    if !limits.allow_private {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme_str() == Some("https") {
                443
            } else {
                80
            });
        let host_for_lookup = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let addrs = tokio::time::timeout(
            limits.timeout,
            tokio::net::lookup_host((host_for_lookup.as_str(), port)),
        )
        .await
        .map_err(|_| "name resolution timed out".to_string())?
        .map_err(|e| format!("name resolution failed: {e}"))?;
        for addr in addrs {
            if is_private(addr.ip()) {
                return Err("it points to a private or loopback address".to_string());
            }
        }
    }
    let req = Request::get(url)
        .header(header::ACCEPT, "image/*")
        .header(
            header::USER_AGENT,
            concat!("llmux/", env!("CARGO_PKG_VERSION")),
        )
        .body(full(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let fetch = async {
        let resp = client.send(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = Limited::new(resp.into_body(), limits.max_bytes)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("larger than {} bytes", limits.max_bytes)
                } else {
                    e.to_string()
                }
            })?;
        Ok::<_, String>(body.to_bytes())
    };
    let bytes = tokio::time::timeout(limits.timeout, fetch)
        .await
        .map_err(|_| format!("no answer within {}s", limits.timeout.as_secs()))??;
    let media_type = sniff(&bytes).ok_or("not a PNG, JPEG, GIF or WebP image")?;
    Ok(MediaSource::Base64 {
        media_type: media_type.to_string(),
        data: protocol::base64::encode(&bytes),
    })
}

/// The image type from the leading bytes (the declared content type is not trusted).
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                // 100.64.0.0/10 (carrier-grade NAT)
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link local
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_image_types() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<html>"), None);
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                is_private(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
        for ip in ["8.8.8.8", "2001:4860::8888", "100.128.0.1"] {
            assert!(
                !is_private(ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]))),
                "{ip}"
            );
        }
    }
}
