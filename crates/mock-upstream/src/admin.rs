//! The `/mock/` control routes ([`crate::MockOptions::admin`]), for driving
//! a running binary the way tests drive a [`crate::MockServer`].

use bytes::Bytes;
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::Shared;

pub(crate) const ADMIN_PREFIX: &str = "/mock/";

/// The control routes (`MockOptions::admin`), for driving a running binary:
/// `POST /mock/keys/{key}/{revoke|restore|exhaust|replenish}`,
/// `POST /mock/overload?on=true|false` or `?next=N`, `GET /mock/key-stats`.
/// Not counted, recorded or limited.
pub(crate) fn admin(shared: &Shared, method: &Method, uri: &http::Uri) -> Response<Body> {
    let path = uri.path().strip_prefix(ADMIN_PREFIX).unwrap_or("");
    let query = uri.query().unwrap_or("");
    let param = |name: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then_some(v)
        })
    };
    let done = || {
        let mut resp = Response::new(body::full(Bytes::new()));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    };
    let not_found = || ApiError::invalid_url(method, uri.path()).into_response();
    if method == Method::GET && path == "key-stats" {
        let entries: Vec<crate::util::Json> = shared
            .keys
            .snapshot()
            .into_iter()
            .map(|(k, s)| {
                crate::util::obj! {
                    "key": k,
                    "received": s.received,
                    "ok": s.ok,
                    "rate_limited": s.rate_limited,
                    "unauthorized": s.unauthorized,
                    "other_errors": s.other_errors,
                }
            })
            .collect();
        let v = crate::util::obj! {"keys": crate::util::Json::Arr(entries)};
        return body::json(StatusCode::OK, v.to_vec());
    }
    if method != Method::POST {
        return not_found();
    }
    if path == "overload" {
        if let Some(n) = param("next").and_then(|n| n.parse().ok()) {
            shared.keys.overload_next(n);
            return done();
        }
        return match param("on") {
            Some("true") => {
                shared.keys.set_overloaded(true);
                done()
            }
            Some("false") => {
                shared.keys.set_overloaded(false);
                done()
            }
            _ => not_found(),
        };
    }
    let Some((key, action)) = path.strip_prefix("keys/").and_then(|r| r.rsplit_once('/')) else {
        return not_found();
    };
    if key.is_empty() {
        return not_found();
    }
    match action {
        "revoke" => shared.keys.set_revoked(key, true),
        "restore" => shared.keys.set_revoked(key, false),
        "exhaust" => shared.keys.set_exhausted(key, true),
        "replenish" => shared.keys.set_exhausted(key, false),
        _ => return not_found(),
    }
    done()
}
