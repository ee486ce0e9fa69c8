//! `GET /v1/models` and `GET /v1/models/{id}`.

use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::Shared;

/// Fixed so that listings are byte-for-byte stable across runs.
const CREATED: u64 = 1_686_935_002;

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn model(id: &str) -> Model<'_> {
    let owned_by = if id.starts_with("whisper") || id.starts_with("tts") {
        "openai-internal"
    } else {
        "system"
    };
    Model {
        id,
        object: "model",
        created: CREATED,
        owned_by,
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

pub(crate) fn list(shared: &Shared) -> Response<Body> {
    let data = shared.models.iter().map(|m| model(m)).collect();
    body::json(
        StatusCode::OK,
        to_json(&List {
            object: "list",
            data,
        }),
    )
}

pub(crate) fn get(shared: &Shared, id: &str) -> Result<Response<Body>, ApiError> {
    if shared.has_model(id) {
        Ok(body::json(StatusCode::OK, to_json(&model(id))))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("The model '{id}' does not exist"),
            "invalid_request_error",
            Some("model"),
            Some("model_not_found"),
        ))
    }
}
