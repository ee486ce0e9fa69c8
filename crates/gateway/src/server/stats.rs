//! uni-api's statistics and credit endpoints over the usage store, and `GET /metrics`.
//!
//! | path | who | answer |
//! | --- | --- | --- |
//! | `GET /v1/stats?hours=` | admin | success rates and request counts ([`endpoints::stats`]) |
//! | `GET /v1/token_usage?api_key_param&model&start_datetime&end_datetime&last_n_days` | any key (others' only for an admin) | tokens per key and model, credits |
//! | `GET /v1/channel_key_rankings?provider_name&last_n_days&start_datetime&end_datetime` | admin | upstream keys by success rate |
//! | `GET /v1/api_keys_states` | admin | keys with credits: credits, spending, enabled |
//! | `POST /v1/add_credits?paid_key&amount` | admin | persisted credit top-up |
//! | `GET /v1/generate-api-key` | admin (★ uni-api lets any key) | a fresh `sk-` key, not stored |
//! | `GET /metrics` | admin, or anyone with `LLMUX_METRICS_PUBLIC=true` | Prometheus text |
//!
//! Errors are uni-api's `{"message": ...}` with its status; under `DISABLE_DATABASE`,
//! `/v1/stats` answers `{"stats":{}}` and the other store-backed endpoints 503.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::app::App;
use crate::error::json_response;
use crate::runtime::{ClientKey, Runtime};
use crate::server::auth::query_param;
use crate::server::body::{RespBody, full};
use crate::store::endpoints::{self, CreditTerms, EndpointError, PaidKey, TokenUsageQuery};
use crate::usage::{self, time::now_ms};

/// Which statistics endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsRoute {
    Stats,
    TokenUsage,
    ChannelKeyRankings,
    ApiKeysStates,
    AddCredits,
    GenerateApiKey,
}

fn answer<T: Serialize>(result: Result<T, EndpointError>) -> Response<RespBody> {
    match result.and_then(|v| {
        serde_json::to_vec(&v).map_err(|e| EndpointError {
            status: 500,
            message: format!("cannot render the answer: {e}"),
        })
    }) {
        Ok(body) => json_response(StatusCode::OK, Bytes::from(body), None),
        Err(e) => error(&e),
    }
}

fn error(e: &EndpointError) -> Response<RespBody> {
    let body = serde_json::json!({ "message": e.message });
    json_response(
        StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Bytes::from(body.to_string()),
        None,
    )
}

/// uni-api's answer to a non-admin key on an admin endpoint.
fn permission_denied() -> EndpointError {
    EndpointError {
        status: 403,
        message: "Permission denied".to_owned(),
    }
}

fn unprocessable(message: String) -> EndpointError {
    EndpointError {
        status: 422,
        message,
    }
}

/// An optional number from the query string; a value that is not one is a 422, as FastAPI's
/// validation answers.
fn number<T: std::str::FromStr>(
    query: Option<&str>,
    name: &str,
) -> Result<Option<T>, EndpointError> {
    match query_param(query, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| unprocessable(format!("{name}: expected a number, found {v:?}"))),
    }
}

/// The keys with credits, named by their masked form (their key id when two share one).
fn paid_keys(rt: &Runtime, now: i64) -> Vec<(PaidKey, &ClientKey)> {
    let paid: Vec<&ClientKey> = rt
        .keys
        .iter()
        .map(|k| &**k)
        .filter(|k| k.prefs.credits.is_some())
        .collect();
    paid.iter()
        .map(|k| {
            let unique = paid.iter().filter(|o| o.masked == k.masked).count() == 1;
            let label = if unique {
                k.masked.clone()
            } else {
                k.id.to_string()
            };
            (
                PaidKey {
                    label,
                    key_id: k.id.to_string(),
                    credits: k.prefs.credits.unwrap_or(0.0),
                    since_ms: usage::window_start(k.created_at_ms, now),
                },
                *k,
            )
        })
        .collect()
}

pub async fn handle(
    app: &App,
    rt: &Runtime,
    key: &ClientKey,
    route: StatsRoute,
    query: Option<&str>,
) -> Response<RespBody> {
    let admin_only = !matches!(route, StatsRoute::TokenUsage);
    if admin_only && !key.is_admin {
        return error(&permission_denied());
    }
    if route == StatsRoute::GenerateApiKey {
        return answer(endpoints::generate_api_key());
    }
    let Some(store) = app.store.as_deref() else {
        return match route {
            StatsRoute::Stats => json_response(
                StatusCode::OK,
                Bytes::from(endpoints::stats_disabled().to_string()),
                None,
            ),
            _ => error(&EndpointError::disabled()),
        };
    };
    let now = now_ms();
    let ledger = app.ledger();
    match route {
        StatsRoute::Stats => {
            let hours = match number::<i64>(query, "hours") {
                Ok(h) => h.unwrap_or(24),
                Err(e) => return error(&e),
            };
            // Out of range (also beyond u32) is the endpoint's own 422.
            let hours = u32::try_from(hours).unwrap_or(0);
            answer(endpoints::stats(store, hours, now).await)
        }
        StatsRoute::TokenUsage => {
            let last_n_days = match number::<i64>(query, "last_n_days") {
                Ok(n) => n,
                Err(e) => return error(&e),
            };
            let q = TokenUsageQuery {
                caller: key.id.to_string(),
                caller_is_admin: key.is_admin,
                api_key_param: query_param(query, "api_key_param"),
                model: query_param(query, "model"),
                start_datetime: query_param(query, "start_datetime"),
                end_datetime: query_param(query, "end_datetime"),
                last_n_days,
            };
            let terms = |id: &str| {
                rt.keys.iter().find(|k| &*k.id == id).map(|k| CreditTerms {
                    credits: k.prefs.credits,
                    since_ms: usage::window_start(k.created_at_ms, now),
                })
            };
            answer(endpoints::token_usage(store, ledger, &q, terms, now).await)
        }
        StatsRoute::ChannelKeyRankings => {
            let Some(provider) = query_param(query, "provider_name") else {
                return error(&unprocessable(
                    "provider_name: a provider name is required".to_owned(),
                ));
            };
            let last_n_days = match number::<i64>(query, "last_n_days") {
                Ok(n) => n,
                Err(e) => return error(&e),
            };
            let start = query_param(query, "start_datetime");
            let end = query_param(query, "end_datetime");
            answer(
                endpoints::channel_key_rankings(
                    store,
                    &provider,
                    last_n_days,
                    start.as_deref(),
                    end.as_deref(),
                    now,
                )
                .await,
            )
        }
        StatsRoute::ApiKeysStates => {
            let keys: Vec<PaidKey> = paid_keys(rt, now).into_iter().map(|(p, _)| p).collect();
            answer(endpoints::api_keys_states(store, ledger, &keys).await)
        }
        StatsRoute::AddCredits => {
            let Some(param) = query_param(query, "paid_key") else {
                return error(&unprocessable("paid_key: a key is required".to_owned()));
            };
            let amount = match number::<f64>(query, "amount") {
                Ok(Some(a)) => a,
                Ok(None) => {
                    return error(&unprocessable("amount: a number is required".to_owned()));
                }
                Err(e) => return error(&e),
            };
            // The key may be given as its secret, its key id or the label shown by
            // /v1/api_keys_states.
            let by_secret = rt.authenticate(&param).map(|k| k.id.to_string());
            let paid = paid_keys(rt, now).into_iter().find(|(p, _)| {
                by_secret.as_deref() == Some(p.key_id.as_str())
                    || p.key_id == param
                    || p.label == param
            });
            match paid {
                Some((p, _)) => {
                    answer(endpoints::add_credits(store, ledger, &p, amount, now).await)
                }
                None => {
                    // Never echo a secret: an unknown key is shown masked.
                    let shown = if param.contains('#') || param.contains("...") {
                        param
                    } else {
                        crate::secret::mask(&param)
                    };
                    error(&EndpointError::unknown_paid_key(&shown))
                }
            }
        }
        StatsRoute::GenerateApiKey => answer(endpoints::generate_api_key()),
    }
}

/// `GET /metrics`: the process counters, the key pools' states and the usage store's queue.
pub fn metrics(app: &App, rt: &Runtime) -> Response<RespBody> {
    use std::fmt::Write;
    let mut out = String::with_capacity(8 * 1024);
    app.metrics.render(&mut out);
    out.push_str(
        "# HELP llmux_upstream_keys Upstream keys by provider and state (healthy, cooling, probation, disabled).\n\
         # TYPE llmux_upstream_keys gauge\n",
    );
    for ch in &rt.channels {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for k in ch.keys.status() {
            match counts.iter_mut().find(|(s, _)| *s == k.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((k.state, 1)),
            }
        }
        for (state, n) in counts {
            let _ = writeln!(
                out,
                "llmux_upstream_keys{{provider=\"{}\",state=\"{state}\"}} {n}",
                label_value(&ch.name)
            );
        }
    }
    out.push_str(
        "# HELP llmux_connections_accepted_total Client connections accepted, per server worker.\n\
         # TYPE llmux_connections_accepted_total counter\n",
    );
    for (worker, n) in crate::server::listen::accepted_per_worker() {
        let _ = writeln!(
            out,
            "llmux_connections_accepted_total{{worker=\"{worker}\"}} {n}"
        );
    }
    app.usage.stats().render_prometheus(&mut out);
    let mut resp = Response::new(full(out));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn numbers_from_the_query() {
        assert_eq!(number::<i64>(Some("hours=48"), "hours"), Ok(Some(48)));
        assert_eq!(number::<i64>(Some("x=1"), "hours"), Ok(None));
        let e = number::<i64>(Some("hours=many"), "hours").unwrap_err();
        assert_eq!(e.status, 422);
    }
}
