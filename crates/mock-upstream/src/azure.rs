//! What Azure OpenAI (and Azure AI Foundry) add to the OpenAI wire format:
//! its own auth and routing errors and the content-filter annotations.

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::stream;

fn azure_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let v = json!({"error": {"code": code, "message": message}});
    body::json(status, v.to_string())
}

/// No `api-key` header and no bearer token (API Management's words).
pub(crate) fn missing_key() -> Response<Body> {
    azure_error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.",
    )
}

/// Deployment routes without `?api-version=` are not routed at all (404
/// "Resource not found"); Foundry's model-inference routes say it is
/// required (400). Any non-empty version is accepted.
pub(crate) fn require_api_version(version: Option<&str>, foundry: bool) -> Option<Response<Body>> {
    if version.is_some_and(|v| !v.is_empty()) {
        return None;
    }
    Some(if foundry {
        azure_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    } else {
        azure_error(StatusCode::NOT_FOUND, "404", "Resource not found")
    })
}

/// A deployment (model) the resource does not have.
pub(crate) fn deployment_not_found() -> ApiError {
    ApiError::azure(
        StatusCode::NOT_FOUND,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.",
    )
}

fn safe() -> Value {
    json!({"filtered": false, "severity": "safe"})
}

fn not_detected() -> Value {
    json!({"filtered": false, "detected": false})
}

/// The prompt's verdict, as every Azure chat answer reports it.
pub(crate) fn prompt_filter_results() -> Value {
    json!([{
        "prompt_index": 0,
        "content_filter_results": {
            "hate": safe(),
            "jailbreak": not_detected(),
            "self_harm": safe(),
            "sexual": safe(),
            "violence": safe(),
        },
    }])
}

/// A choice's verdict.
pub(crate) fn completion_filter_results() -> Value {
    json!({
        "hate": safe(),
        "protected_material_code": not_detected(),
        "protected_material_text": not_detected(),
        "self_harm": safe(),
        "sexual": safe(),
        "violence": safe(),
    })
}

/// The first event of an Azure chat stream: no choices, empty id, model
/// and object, only the prompt's filter results.
pub(crate) fn prompt_filter_chunk() -> Bytes {
    let v = json!({
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": prompt_filter_results(),
    });
    stream::data(v.to_string().as_bytes())
}
