//! Client authentication: `x-api-key` (Anthropic style) or `Authorization: Bearer` (any
//! scheme word, as uni-api), looked up in constant time.

use std::sync::Arc;

use http::HeaderMap;

use crate::error::ApiError;
use crate::runtime::{ClientKey, Runtime};

pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v);
        }
    }
    let auth = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    // `<scheme> <token>`: uni-api takes the second word whatever the scheme.
    let (_scheme, token) = auth.split_once(' ')?;
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

pub fn authenticate<'r>(
    rt: &'r Runtime,
    headers: &HeaderMap,
) -> Result<&'r Arc<ClientKey>, ApiError> {
    let Some(presented) = presented_key(headers) else {
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
    use super::presented_key;
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
    }
}
