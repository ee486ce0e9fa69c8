//! One request's plan, in uni-api's order: the key's candidates for the model, minus providers
//! that exclude the endpoint, minus providers whose `max_request_body_bytes` the body exceeds
//! (413 when none is left), minus routes whose 403/404 breaker is open or, when more than one
//! candidate remains, that are cooling down (503 when none is left); then ordered by the key's
//! scheduling algorithm.

use std::time::Instant;

use http::StatusCode;

use crate::error::ApiError;
use crate::routing::RoutingState;
use crate::routing::health::Unavailable;
use crate::routing::schedule;
use crate::runtime::{Candidate, ClientKey, Runtime};

/// What the plan needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub model: &'a str,
    /// The client-facing path (`/v1/chat/completions`), matched against `exclude_endpoints`.
    pub path: &'a str,
    /// Request body size when known (a streamed upload is not).
    pub body_len: Option<u64>,
}

pub fn plan(
    rt: &Runtime,
    state: &RoutingState,
    key: &ClientKey,
    candidates: &[Candidate],
    input: &PlanInput<'_>,
    now: Instant,
) -> Result<Vec<Candidate>, ApiError> {
    let model = input.model;
    // One pass and one list: whether any channel serves the path at all only picks the error.
    let mut served = false;
    let fits: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            let config = &rt.channels[c.channel].config;
            if config.exclude_endpoints.iter().any(|e| e == input.path) {
                return false;
            }
            served = true;
            input.body_len.is_none_or(|len| {
                config
                    .preferences
                    .max_request_body_bytes
                    .is_none_or(|max| len <= max)
            })
        })
        .collect();
    if fits.is_empty() && served {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request body ({} bytes) is larger than every provider of `{model}` accepts (max_request_body_bytes)",
                input.body_len.unwrap_or_default()
            ),
        )
        .code("request_too_large"));
    }
    if fits.is_empty() {
        return Err(ApiError::not_found(format!(
            "No available providers at the moment: {model} (no provider serves {})",
            input.path
        ))
        .code("model_not_found"));
    }
    let several = fits.len() > 1;
    let mut why_out = None;
    let healthy: Vec<Candidate> = fits
        .iter()
        .filter(|c| {
            let ch = &rt.channels[c.channel];
            match state.health.unavailable(&ch.name, &c.upstream_model, now) {
                None => true,
                Some(Unavailable::Cooling { .. }) if !several => true,
                Some(u) => {
                    why_out.get_or_insert((ch.name.clone(), u));
                    false
                }
            }
        })
        .map(|c| (*c).clone())
        .collect();
    if healthy.is_empty() {
        let detail = match why_out {
            Some((p, Unavailable::BreakerOpen { for_ })) => format!(
                "provider `{p}` answered 403/404 repeatedly and is paused for {}s",
                for_.as_secs().max(1)
            ),
            Some((p, Unavailable::Cooling { for_ })) => format!(
                "every provider is cooling down after failures (`{p}` for {}s)",
                for_.as_secs().max(1)
            ),
            None => String::new(),
        };
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            format!("No available providers at the moment: {model}; {detail}"),
        )
        .code("no_available_providers"));
    }
    let algorithm = key.prefs.scheduling_algorithm.unwrap_or_default();
    if healthy.len() < 2 {
        return Ok(healthy);
    }
    let counter = if schedule::rotates(algorithm) {
        state.rotation.next(&key.id, model)
    } else {
        0
    };
    let mut rng = fastrand::Rng::new();
    Ok(schedule::order(&healthy, algorithm, counter, &mut rng))
}
