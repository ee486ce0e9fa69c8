//! Admin endpoints (keys whose role contains `admin`, or the only key).

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::error::{ApiError, json_response};
use crate::keypool::KeyStatus;
use crate::runtime::{ClientKey, Runtime};
use crate::server::body::RespBody;

fn require_admin(key: &ClientKey) -> Result<(), ApiError> {
    if key.is_admin {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "this endpoint needs an admin key (a key whose role contains `admin`)",
        )
        .code("admin_required"))
    }
}

#[derive(serde::Serialize)]
struct ProviderKeys<'a> {
    provider: &'a str,
    algorithm: String,
    keys: Vec<KeyStatus>,
}

/// `GET /admin/keys`: every upstream key (masked) with its scope, state, why, in-flight,
/// headroom per limit, success rate and latency.
pub fn keys(rt: &Runtime, key: &ClientKey) -> Response<RespBody> {
    if let Err(e) = require_admin(key) {
        return e.into_openai_response();
    }
    let providers: Vec<ProviderKeys<'_>> = rt
        .channels
        .iter()
        .map(|c| ProviderKeys {
            provider: &c.name,
            algorithm: format!("{:?}", c.keys.settings().algorithm).to_ascii_lowercase(),
            keys: c.keys.status(),
        })
        .collect();
    let body =
        serde_json::to_vec(&serde_json::json!({ "providers": providers })).unwrap_or_default();
    json_response(StatusCode::OK, Bytes::from(body), None)
}
