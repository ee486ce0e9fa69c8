//! Google OAuth for Vertex AI: the token endpoint (`POST /token`, the
//! service-account JWT-bearer grant of RFC 7523) and the check of the
//! access tokens it issued. The assertion is verified the way Google does:
//! RS256 signature against the service account's registered public key,
//! then issuer, audience, scope and lifetime.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::{Response, StatusCode};
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde_json::Value;
use sha2::Sha256;

use crate::body::{self, Body};
use crate::flavor::google;
use crate::server::lock;
use crate::util::{Json, base64_decode, hex_chars, obj};

/// The scope Vertex AI needs.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Google's own token endpoint, always accepted as `aud`.
pub(crate) const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of an issued token, as Google reports it.
pub(crate) const EXPIRES_IN: u64 = 3599;
/// Accepted clock skew on `iat`.
const SKEW_SECS: u64 = 300;
const SHORT_LIVED: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";

/// A registered service account's public key, as given to the mock.
#[derive(Clone, Debug)]
pub(crate) enum KeyData {
    Pem(String),
    Der(Vec<u8>),
}

/// Parses a public key: SubjectPublicKeyInfo or PKCS#1, PEM or DER.
pub(crate) fn parse_public_key(data: &KeyData) -> Result<RsaPublicKey, String> {
    match data {
        KeyData::Pem(pem) => RsaPublicKey::from_public_key_pem(pem.trim())
            .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
            .map_err(|e| format!("not an RSA public key in PEM: {e}")),
        KeyData::Der(der) => RsaPublicKey::from_public_key_der(der)
            .or_else(|_| RsaPublicKey::from_pkcs1_der(der))
            .map_err(|e| format!("not an RSA public key in DER: {e}")),
    }
}

struct Issued {
    email: String,
    expires_unix_ms: u64,
}

/// Registered accounts, issued tokens and the token-request counter.
#[derive(Default)]
pub(crate) struct GoogleAuth {
    accounts: HashMap<String, RsaPublicKey>,
    tokens: Mutex<HashMap<String, Issued>>,
    pub requests: AtomicUsize,
    issued: AtomicUsize,
}

impl GoogleAuth {
    pub fn new(accounts: HashMap<String, RsaPublicKey>) -> GoogleAuth {
        GoogleAuth {
            accounts,
            ..GoogleAuth::default()
        }
    }

    /// Makes every token issued so far expired.
    pub fn expire_all(&self) {
        for t in lock(&self.tokens).values_mut() {
            t.expires_unix_ms = 0;
        }
    }

    /// The service account a live token was issued to.
    pub fn check(&self, token: &str, now_unix_ms: u64) -> Result<String, TokenProblem> {
        match lock(&self.tokens).get(token) {
            None => Err(TokenProblem::Unknown),
            Some(t) if t.expires_unix_ms <= now_unix_ms => Err(TokenProblem::Expired),
            Some(t) => Ok(t.email.clone()),
        }
    }
}

/// Why a bearer token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenProblem {
    Missing,
    Unknown,
    Expired,
}

/// Google's 401 for a Vertex call whose bearer token is missing, unknown or
/// expired.
pub(crate) fn unauthenticated(problem: TokenProblem) -> Response<Body> {
    let (message, reason) = match problem {
        TokenProblem::Missing => (MISSING_CREDENTIALS, "CREDENTIALS_MISSING"),
        TokenProblem::Unknown => (INVALID_CREDENTIALS, "ACCESS_TOKEN_TYPE_UNSUPPORTED"),
        TokenProblem::Expired => (INVALID_CREDENTIALS, "ACCESS_TOKEN_EXPIRED"),
    };
    google(
        StatusCode::UNAUTHORIZED,
        &obj! {"error": obj! {
            "code": 401u64,
            "message": message,
            "status": "UNAUTHENTICATED",
            "details": Json::Arr(vec![obj! {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": obj! {"service": "aiplatform.googleapis.com"},
            }]),
        }},
    )
}

fn oauth_error(error: &str, description: &str) -> Response<Body> {
    let v = obj! {"error": error, "error_description": description};
    body::response(
        StatusCode::BAD_REQUEST,
        "application/json; charset=utf-8",
        body::full(v.to_vec_pretty()),
    )
}

/// Decodes `application/x-www-form-urlencoded` (`+` is a space).
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode_component(k), decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn segment_json(segment: &str) -> Option<Value> {
    serde_json::from_slice(&base64_decode(segment)?).ok()
}

/// What `POST /token` needs besides the body.
pub(crate) struct TokenCtx<'a> {
    pub auth: &'a GoogleAuth,
    /// `http://127.0.0.1:PORT/token`: this endpoint's own URL, a valid `aud`.
    pub own_uri: &'a str,
    pub now_unix_ms: u64,
    pub seed: u64,
}

/// `POST /token`: a JWT-bearer grant answered with an access token, or
/// Google's OAuth error.
pub(crate) fn token(ctx: &TokenCtx<'_>, body: &[u8]) -> Response<Body> {
    ctx.auth.requests.fetch_add(1, Ordering::SeqCst);
    let params = form(body);
    let grant = params.get("grant_type").map_or("", String::as_str);
    if grant != JWT_BEARER {
        return oauth_error(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {grant}"),
        );
    }
    let Some(assertion) = params.get("assertion").filter(|a| !a.is_empty()) else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    let email = match verify_assertion(ctx, assertion) {
        Ok(email) => email,
        Err((error, description)) => return oauth_error(error, &description),
    };
    let n = ctx.auth.issued.fetch_add(1, Ordering::SeqCst) as u64;
    let access = hex_chars(
        "ya29.mock-",
        ctx.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        48,
    );
    lock(&ctx.auth.tokens).insert(
        access.clone(),
        Issued {
            email,
            expires_unix_ms: ctx.now_unix_ms + EXPIRES_IN * 1000,
        },
    );
    let v = obj! {"access_token": access, "expires_in": EXPIRES_IN, "token_type": "Bearer"};
    body::response(
        StatusCode::OK,
        "application/json; charset=utf-8",
        body::full(v.to_vec_pretty()),
    )
}

type Refusal = (&'static str, String);

fn grant(description: &str) -> Refusal {
    ("invalid_grant", description.to_owned())
}

/// Checks an RS256 service-account assertion; `Ok` is the account's email.
fn verify_assertion(ctx: &TokenCtx<'_>, jwt: &str) -> Result<String, Refusal> {
    let mut segments = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return Err(grant(
            "Invalid JWT: the assertion is not three base64url segments.",
        ));
    };
    let (Some(header), Some(claims), Some(sig)) =
        (segment_json(h), segment_json(c), base64_decode(s))
    else {
        return Err(grant(
            "Invalid JWT: the assertion is not three base64url segments.",
        ));
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(grant("Invalid JWT Signature."));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    let Some(key) = ctx.auth.accounts.get(iss) else {
        return Err(grant("Invalid grant: account not found"));
    };
    let signed = jwt.get(..h.len() + 1 + c.len()).unwrap_or("");
    let verified = Signature::try_from(sig.as_slice()).ok().is_some_and(|sig| {
        VerifyingKey::<Sha256>::new(key.clone())
            .verify(signed.as_bytes(), &sig)
            .is_ok()
    });
    if !verified {
        return Err(grant("Invalid JWT Signature."));
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or("");
    if aud != GOOGLE_TOKEN_URI && aud != ctx.own_uri {
        return Err(grant(&format!(
            "Invalid JWT: Failed audience check. The right audience is {}",
            ctx.own_uri
        )));
    }
    let scopes = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM) {
        return Err((
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.".to_owned(),
        ));
    }
    let now = ctx.now_unix_ms / 1000;
    let iat = claims.get("iat").and_then(Value::as_u64);
    let exp = claims.get("exp").and_then(Value::as_u64);
    let fresh = match (iat, exp) {
        (Some(iat), Some(exp)) => {
            exp > iat && exp - iat <= 3600 && iat <= now + SKEW_SECS && exp > now
        }
        _ => false,
    };
    if !fresh {
        return Err(grant(SHORT_LIVED));
    }
    Ok(iss.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let f = form(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&x=1+2");
        assert_eq!(f.get("grant_type").map(String::as_str), Some(JWT_BEARER));
        assert_eq!(f.get("assertion").map(String::as_str), Some("a.b.c"));
        assert_eq!(f.get("x").map(String::as_str), Some("1 2"));
    }
}
