//! The HTTP front: listener, routing of paths to ingress handlers, client authentication and
//! error rendering.

pub mod admin;
pub mod auth;
pub mod body;
pub mod keepalive;
pub mod listen;
pub mod multipart;
pub mod openai;
pub mod relay;
pub mod transcode;

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::app::App;
use crate::error::{ApiError, json_response};
use crate::providers::urls::Endpoint;
use body::RespBody;

#[derive(Clone, Copy)]
enum Route {
    Health,
    Models,
    Json(Endpoint),
    Multipart(Endpoint),
    AdminKeys,
    AdminReload,
}

fn route(path: &str) -> Option<(Route, Method)> {
    Some(match path {
        "/v1/chat/completions" => (Route::Json(Endpoint::ChatCompletions), Method::POST),
        "/v1/models" => (Route::Models, Method::GET),
        "/v1/embeddings" => (Route::Json(Endpoint::Embeddings), Method::POST),
        "/v1/images/generations" => (Route::Json(Endpoint::ImagesGenerations), Method::POST),
        "/v1/audio/speech" => (Route::Json(Endpoint::AudioSpeech), Method::POST),
        "/v1/moderations" => (Route::Json(Endpoint::Moderations), Method::POST),
        "/v1/audio/transcriptions" => (
            Route::Multipart(Endpoint::AudioTranscriptions),
            Method::POST,
        ),
        "/healthz" => (Route::Health, Method::GET),
        "/admin/keys" => (Route::AdminKeys, Method::GET),
        "/admin/reload" => (Route::AdminReload, Method::POST),
        _ => return None,
    })
}

static HEALTH_BODY: &[u8] = concat!(
    r#"{"status":"ok","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
)
.as_bytes();

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<RespBody> {
    let Some((route, method)) = route(req.uri().path()) else {
        return ApiError::not_found(format!(
            "Invalid URL ({} {})",
            req.method(),
            req.uri().path()
        ))
        .code("unknown_url")
        .into_openai_response();
    };
    let head_ok = method == Method::GET && req.method() == Method::HEAD;
    if req.method() != method && !head_ok {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            format!(
                "{} {} is not supported; use {method}",
                req.method(),
                req.uri().path()
            ),
        )
        .code("method_not_allowed")
        .into_openai_response();
    }
    if let Route::Health = route {
        return json_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY), None);
    }
    let rt = app.runtime();
    let key = match auth::authenticate(&rt, req.headers()) {
        Ok(key) => Arc::clone(key),
        Err(e) => return e.into_openai_response(),
    };
    match route {
        Route::Health => json_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY), None),
        Route::Models => json_response(StatusCode::OK, key.models_body.clone(), None),
        Route::Json(endpoint) => openai::json_endpoint(&app, &rt, &key, endpoint, req).await,
        Route::Multipart(endpoint) => {
            openai::multipart_endpoint(&app, &rt, &key, endpoint, req).await
        }
        Route::AdminKeys => admin::keys(&rt, &key),
        Route::AdminReload => admin::reload(&app, &key).await,
    }
}
