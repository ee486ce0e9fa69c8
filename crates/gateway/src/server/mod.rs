//! The HTTP front: listener, routing of paths to ingress handlers, client authentication and
//! error rendering.

pub mod admin;
pub mod after_reply;
pub mod auth;
pub mod body;
pub mod head_timer;
pub mod ingress;
pub mod keepalive;
pub mod listen;
pub mod multipart;
pub mod openai;
pub mod recorded;
pub mod relay;
pub mod stats;
pub mod transcode;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use protocol::ir::Format;

use crate::app::App;
use crate::error::{ApiError, json_response};
use crate::providers::urls::Endpoint;
use crate::usage::{Api, RequestLog};
use body::RespBody;
use stats::StatsRoute;

/// The first value of each of `names` (as `HeaderMap::get` reads it), in one pass over a
/// request's few headers instead of a hashed lookup per name.
pub(crate) fn first_values<'h, const N: usize>(
    headers: &'h http::HeaderMap,
    names: &[http::HeaderName; N],
) -> [Option<&'h http::HeaderValue>; N] {
    let mut found = [None; N];
    for (name, value) in headers {
        if let Some(i) = names.iter().position(|n| n == name)
            && let Some(slot) = found.get_mut(i)
        {
            slot.get_or_insert(value);
        }
    }
    found
}

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
    Stats(StatsRoute),
    Metrics,
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

    /// Requests to a model: recorded in the usage store and counted on `/metrics`.
    fn api(&self) -> Option<Api> {
        Some(match self {
            Route::Json(Endpoint::ChatCompletions) => Api::ChatCompletions,
            Route::Json(Endpoint::Embeddings) => Api::Embeddings,
            Route::Json(Endpoint::ImagesGenerations) => Api::ImagesGenerations,
            Route::Json(Endpoint::AudioSpeech) => Api::AudioSpeech,
            Route::Json(Endpoint::Moderations) => Api::Moderations,
            Route::Multipart(_) => Api::AudioTranscriptions,
            Route::BodyModel(Format::Anthropic) => Api::Messages,
            Route::BodyModel(_) => Api::Responses,
            Route::Gemini(call) => match call.method {
                ingress::GeminiMethod::GenerateContent => Api::GeminiGenerate,
                ingress::GeminiMethod::StreamGenerateContent => Api::GeminiStream,
                ingress::GeminiMethod::CountTokens => return None,
            },
            _ => return None,
        })
    }
}

fn route(path: &str) -> Option<(Route, Method)> {
    // Fixed paths first: they are the common case and cost one comparison each, where the
    // Gemini form needs a substring search.
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
        "/v1/stats" => (Route::Stats(StatsRoute::Stats), Method::GET),
        "/v1/token_usage" => (Route::Stats(StatsRoute::TokenUsage), Method::GET),
        "/v1/channel_key_rankings" => (Route::Stats(StatsRoute::ChannelKeyRankings), Method::GET),
        "/v1/api_keys_states" => (Route::Stats(StatsRoute::ApiKeysStates), Method::GET),
        "/v1/add_credits" => (Route::Stats(StatsRoute::AddCredits), Method::POST),
        "/v1/generate-api-key" => (Route::Stats(StatsRoute::GenerateApiKey), Method::GET),
        "/metrics" => (Route::Metrics, Method::GET),
        _ => return ingress::gemini_call(path).map(|call| (Route::Gemini(call), Method::POST)),
    })
}

static HEALTH_BODY: &[u8] = concat!(
    r#"{"status":"ok","version":""#,
    env!("CARGO_PKG_VERSION"),
    r#""}"#
)
.as_bytes();

/// One request; `peer`: the client's address (for the usage record when no proxy header names
/// one).
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: Option<SocketAddr>,
) -> Response<RespBody> {
    let started = std::time::Instant::now();
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
    if let Route::Metrics = route
        && app.metrics_public
    {
        return stats::metrics(&app, &rt);
    }
    // Google clients may put the key in the query string.
    let query_key = match route {
        Route::Gemini(_) => auth::query_key(req.uri().query()),
        _ => None,
    };
    let key = match auth::authenticate(&rt, req.headers(), query_key.as_deref()) {
        Ok(key) => Arc::clone(key),
        Err(e) => return e.into_response(client),
    };
    let Some(api) = route.api() else {
        return serve(&app, &rt, &key, route, req, RequestLog::off()).await;
    };
    let request_id = recorded::new_request_id();
    let log = recorded::open(
        &app,
        &key,
        api,
        request_id.clone(),
        req.method(),
        req.uri().path(),
        req.headers(),
        peer,
        started,
    );
    let resp = serve(&app, &rt, &key, route, req, log.clone()).await;
    recorded::finish(resp, log, &request_id)
}

async fn serve(
    app: &Arc<App>,
    rt: &Arc<crate::runtime::Runtime>,
    key: &Arc<crate::runtime::ClientKey>,
    route: Route,
    req: Request<Incoming>,
    log: RequestLog,
) -> Response<RespBody> {
    // Every route but the OpenAI JSON one is boxed: the compiler lays the arms' futures out
    // side by side rather than over each other, and this future (inside every request's) is
    // copied whole when a request starts.
    match route {
        Route::Health => json_response(StatusCode::OK, Bytes::from_static(HEALTH_BODY), None),
        Route::Models => json_response(StatusCode::OK, key.models_body.clone(), None),
        Route::Json(endpoint) => openai::json_endpoint(app, rt, key, endpoint, req, log).await,
        Route::Multipart(endpoint) => {
            Box::pin(openai::multipart_endpoint(app, rt, key, endpoint, req, log)).await
        }
        Route::AdminKeys => admin::keys(rt, key),
        Route::BodyModel(format) => {
            Box::pin(ingress::body_model(app, rt, key, format, req, log)).await
        }
        Route::Gemini(call) if call.method == ingress::GeminiMethod::CountTokens => {
            Box::pin(ingress::count_tokens(
                rt,
                key,
                Format::Gemini,
                Some(call.model),
                req,
            ))
            .await
        }
        Route::Gemini(call) => Box::pin(ingress::gemini(app, rt, key, call, req, log)).await,
        Route::CountTokens(format) => {
            Box::pin(ingress::count_tokens(rt, key, format, None, req)).await
        }
        Route::Providers => ingress::providers(rt, key),
        Route::AdminReload => Box::pin(admin::reload(app, key)).await,
        Route::Stats(which) => {
            Box::pin(stats::handle(app, rt, key, which, req.uri().query())).await
        }
        Route::Metrics if key.is_admin => stats::metrics(app, rt),
        Route::Metrics => ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "GET /metrics needs an admin key (or LLMUX_METRICS_PUBLIC=true)",
        )
        .code("admin_required")
        .into_openai_response(),
    }
}
