//! From a client key and a requested model to the ordered channels that may serve it, and the
//! attempt loop that walks them.

pub mod attempt;

use std::sync::Arc;

use crate::error::ApiError;
use crate::runtime::{Candidate, ClientKey, Runtime};

/// The candidates for `model` under `key`, or the error the client should see: 403 when the
/// model exists but this key may not use it, 404 when no channel serves it at all.
pub fn candidates(
    rt: &Runtime,
    key: &ClientKey,
    model: &str,
) -> Result<Arc<[Candidate]>, ApiError> {
    match key.candidates(model) {
        Some(c) if !c.is_empty() => Ok(Arc::clone(c)),
        _ if rt.known_aliases.contains(model) => Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "permission_error",
            format!("The model `{model}` is not allowed for this API key."),
        )
        .code("model_not_allowed")
        .param("model")),
        _ => Err(ApiError::not_found(format!(
            "The model `{model}` does not exist or is not served by this gateway."
        ))
        .code("model_not_found")
        .param("model")),
    }
}
