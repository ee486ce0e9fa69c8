//! Client authentication: `x-api-key` (Anthropic style) or `Authorization: Bearer` (any
//! scheme word, as uni-api), looked up in constant time.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue};

use crate::error::ApiError;
use crate::runtime::{ClientKey, Runtime};

/// The key a request presents: `x-api-key`, else `x-goog-api-key`, else the second word of
/// `Authorization` (the first non-empty value of each). One pass over the few request headers
/// costs less than three hashed lookups, two of which usually miss.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    static NAMES: [http::HeaderName; 3] = [
        http::HeaderName::from_static("x-api-key"),
        http::HeaderName::from_static("x-goog-api-key"),
        http::header::AUTHORIZATION,
    ];
    let found = crate::server::first_values(headers, &NAMES);
    fn text(v: Option<&HeaderValue>) -> Option<&str> {
        v.and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    }
    if let Some(key) = text(found[0]).or_else(|| text(found[1])) {
        return Some(key);
    }
    // `<scheme> <token>`: uni-api takes the second word whatever the scheme.
    let (_scheme, token) = text(found[2])?.split_once(' ')?;
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// `?key=...` (Google's API-key query parameter), percent-decoded.
pub fn query_key(query: Option<&str>) -> Option<String> {
    query_param(query, "key")
}

/// The first non-empty value of `name` in a query string, percent-decoded (`+` stays `+`, so
/// a date-time offset like `+08:00` survives unencoded).
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?
        .split('&')
        .find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_empty())?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%'
            && let Some(v) = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn authenticate<'r>(
    rt: &'r Runtime,
    headers: &HeaderMap,
    query_key: Option<&str>,
) -> Result<&'r Arc<ClientKey>, ApiError> {
    let Some(presented) = presented_key(headers).or(query_key) else {
        return Err(ApiError::unauthorized(
            "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`.",
        )
        .code("missing_api_key"));
    };
    rt.authenticate(presented).ok_or_else(|| {
        ApiError::unauthorized(format!(
            "Invalid API key: {}",
            crate::secret::mask(presented)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::{presented_key, query_param};

    #[test]
    fn query_params_are_decoded() {
        let q = Some("key=a%2Fb&start_datetime=2024-01-01T00:00:00+08:00&model=&m=x%");
        assert_eq!(query_param(q, "key").as_deref(), Some("a/b"));
        assert_eq!(
            query_param(q, "start_datetime").as_deref(),
            Some("2024-01-01T00:00:00+08:00")
        );
        assert_eq!(query_param(q, "model"), None);
        assert_eq!(query_param(q, "m").as_deref(), Some("x%"));
        assert_eq!(query_param(q, "k"), None);
        assert_eq!(query_param(None, "key"), None);
    }
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn extracts_keys() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer sk-1")])),
            Some("sk-1")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  sk-1 ")])),
            Some("sk-1")
        );
        assert_eq!(
            presented_key(&headers(&[("x-api-key", "sk-2")])),
            Some("sk-2")
        );
        assert_eq!(
            presented_key(&headers(&[
                ("x-api-key", "sk-2"),
                ("authorization", "Bearer sk-1")
            ])),
            Some("sk-2")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer ")])),
            None
        );
        assert_eq!(presented_key(&headers(&[])), None);
        // Precedence whatever the order: x-api-key, x-goog-api-key, Authorization; an empty
        // value falls through to the next.
        assert_eq!(
            presented_key(&headers(&[
                ("authorization", "Bearer sk-1"),
                ("x-goog-api-key", "g-3"),
                ("x-api-key", " ")
            ])),
            Some("g-3")
        );
    }
}
