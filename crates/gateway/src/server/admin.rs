//! Admin endpoints (keys whose role contains `admin`, or the only key).

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::app::App;

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

/// `POST /admin/reload`: read the config again and swap it in if it is valid. An invalid
/// config changes nothing; the answer lists its problems.
pub async fn reload(app: &App, key: &ClientKey) -> Response<RespBody> {
    if let Err(e) = require_admin(key) {
        return e.into_openai_response();
    }
    // Boxed as `Send` here, where its lifetimes are concrete (the compiler cannot prove it for
    // the generic service future otherwise).
    let reloading: std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<crate::reload::Reloaded, Vec<String>>>
                + Send
                + '_,
        >,
    > = Box::pin(crate::reload::reload(app));
    match reloading.await {
        Ok(done) => {
            let body = serde_json::json!({
                "status": "reloaded",
                "source": done.source,
                "providers": done.providers,
                "client_keys": done.keys,
                "warnings": done.warnings,
            });
            json_response(
                StatusCode::OK,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                None,
            )
        }
        Err(problems) => {
            let body = serde_json::json!({
                "error": {
                    "message": format!(
                        "the config was not reloaded (the running one stays): {}",
                        problems.first().map_or("", String::as_str)
                    ),
                    "type": "invalid_request_error",
                    "param": null,
                    "code": "invalid_config",
                },
                "errors": problems,
            });
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
                None,
            )
        }
    }
}
