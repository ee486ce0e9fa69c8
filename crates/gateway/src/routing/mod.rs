//! From a client key and a requested model to the ordered channels that may serve it, and the
//! attempt loop that walks them. Client policies (rate limits, credits, moderation) decide
//! first whether the request may be routed at all.

pub mod answer;
pub mod attempt;
pub mod client_limits;
pub mod health;
pub mod moderation;
pub mod overrides;
pub mod plan;
pub mod policy;
pub mod schedule;
pub mod timeouts;

use std::sync::Arc;

use crate::error::ApiError;
use crate::runtime::{Candidate, ClientKey, Runtime};

/// Routing state that outlives a runtime: a config reload keeps channel health, rotation
/// counters and client rate-limit windows (spending lives in the usage ledger, [`crate::app::App::usage`]).
#[derive(Debug, Default)]
pub struct RoutingState {
    pub health: health::ChannelHealth,
    pub rotation: schedule::Rotation,
    pub limits: client_limits::ClientLimiter,
}

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
