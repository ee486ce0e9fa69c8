//! The HTTP front: listener, routing of paths to ingress handlers, client authentication and
//! error rendering.

pub mod admin;
pub mod auth;
pub mod body;
pub mod ingress;
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
use protocol::ir::Format;

use crate::app::App;
use crate::error::{ApiError, json_response};
use crate::providers::urls::Endpoint;
use body::RespBody;

#[derive(Clone)]
enum Route {
    Health,
    Models,
    Json(Endpoint),
    Multipart(Endpoint),
    AdminKeys,
    /// `/v1/messages` (Anthropic) and `/v1/responses` (OpenAI Responses).
    BodyModel(Format),
    Gemini(ingress::GeminiCall),
    /// `/v1/messages/count_tokens`, `/v1/token-count`.
    CountTokens(Format),
    Providers,
    AdminReload,
}

impl Route {
    /// The API whose error shape the client expects.
    fn client_format(&self) -> Format {
        match self {
            Route::BodyModel(f) | Route::CountTokens(f) => *f,
            Route::Gemini(_) => Format::Gemini,
            _ => Format::OpenAiChat,
        }
    }
}

fn route(path: &str) -> Option<(Route, Method)> {
    if let Some(call) = ingress::gemini_call(path) {
        return Some((Route::Gemini(call), Method::POST));
    }
    Some(match path {
        "/v1/messages" => (Route::BodyModel(Format::Anthropic), Method::POST),
        "/v1/messages/count_tokens" => (Route::CountTokens(Format::Anthropic), Method::POST),
        "/v1/responses" => (Route::BodyModel(Format::OpenAiResponses), Method::POST),
        "/v1/token-count" => (Route::CountTokens(Format::OpenAiChat), Method::POST),
        "/v1/providers" => (Route::Providers, Method::GET),
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
    let client = route.client_format();
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
        .into_response(client);
    }
    if let Route::Health = route {
        return json_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY), None);
    }
    let rt = app.runtime();
    // Google clients may put the key in the query string.
    let query_key = match route {
        Route::Gemini(_) => auth::query_key(req.uri().query()),
        _ => None,
    };
    let key = match auth::authenticate(&rt, req.headers(), query_key.as_deref()) {
        Ok(key) => Arc::clone(key),
        Err(e) => return e.into_response(client),
    };
    match route {
        Route::Health => json_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY), None),
        Route::Models => json_response(StatusCode::OK, key.models_body.clone(), None),
        Route::Json(endpoint) => openai::json_endpoint(&app, &rt, &key, endpoint, req).await,
        Route::Multipart(endpoint) => {
            openai::multipart_endpoint(&app, &rt, &key, endpoint, req).await
        }
        Route::AdminKeys => admin::keys(&rt, &key),
        Route::BodyModel(format) => ingress::body_model(&app, &rt, &key, format, req).await,
        Route::Gemini(call) if call.method == ingress::GeminiMethod::CountTokens => {
            ingress::count_tokens(&rt, &key, Format::Gemini, Some(call.model), req).await
        }
        Route::Gemini(call) => ingress::gemini(&app, &rt, &key, call, req).await,
        Route::CountTokens(format) => ingress::count_tokens(&rt, &key, format, None, req).await,
        Route::Providers => ingress::providers(&rt, &key),
        Route::AdminReload => admin::reload(&app, &key).await,
    }
}
