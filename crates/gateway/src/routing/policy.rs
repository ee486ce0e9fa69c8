//! Client policies checked before a request is routed: the global rate limit, the key's rate
//! limit for the requested model, and the key's credits. Refusals are 429s: with `Retry-After`
//! for rate limits (the exact time until the window has room), with code `insufficient_quota`
//! and no `Retry-After` for spent credits (as OpenAI answers an account out of credit).

use std::time::Instant;

use http::StatusCode;

use crate::error::ApiError;
use crate::keypool::limits::limits_for;
use crate::routing::RoutingState;
use crate::runtime::{ClientKey, Runtime};
use crate::usage::{self, CostLedger};

/// Admits one request for `model`, counting it against the rate limits. Credits are read from
/// the usage ledger: configured `credits` plus those added with `/v1/add_credits`, against the
/// spending since the key's `created_at` (else the last 30 days).
pub fn admit(
    rt: &Runtime,
    state: &RoutingState,
    ledger: &CostLedger,
    key: &ClientKey,
    model: &str,
    now: Instant,
) -> Result<(), ApiError> {
    // Only a key with credits has a window to read the clock for.
    let credits = key.prefs.credits.and_then(|configured| {
        let since = usage::window_start(key.created_at_ms, usage::time::now_ms());
        usage::credit_state(ledger, &key.id, Some(configured), since)
    });
    if let Some(b) = credits
        && !b.enabled
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "insufficient_quota",
            format!(
                "Balance is insufficient: this key has spent ${:.4} of its ${:.4} credits. Ask the gateway's administrator for more credits.",
                b.total_cost, b.credits
            ),
        )
        .code("insufficient_quota"));
    }
    if let Some(spec) = &rt.settings.rate_limit {
        let limits = limits_for(spec, model);
        if let Err(r) = state.limits.admit("\u{0}global", limits, now) {
            return Err(too_many(
                format!("Too many requests: the gateway allows {} in total", r.limit),
                r.retry_after,
            ));
        }
    }
    if let Some(spec) = &key.prefs.rate_limit {
        let limits = limits_for(spec, model);
        let scope = format!("{}\u{0}{model}", key.id);
        if let Err(r) = state.limits.admit(&scope, limits, now) {
            return Err(too_many(
                format!(
                    "Too many requests: this key may send {} for `{model}`",
                    r.limit
                ),
                r.retry_after,
            ));
        }
    }
    Ok(())
}

fn too_many(message: String, wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        format!("{message}; retry in {secs}s"),
    )
    .code("rate_limit_exceeded");
    e.retry_after = Some(secs);
    e
}
