//! Google service-account auth for Vertex AI: a self-signed RS256 JWT is exchanged at the
//! token endpoint for an OAuth access token, which is cached until shortly before it expires.
//! One refresh runs at a time per account (single flight); requests arriving meanwhile wait
//! for it instead of each minting their own token (uni-api fetches one per request).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use bytes::Bytes;
use http::{Request, header};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::providers::client::UpstreamClient;
use crate::server::body::full;
use protocol::base64;

/// Google's OAuth token endpoint (service-account JSON `token_uri`).
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// A token is replaced this long before it expires, so no request carries a dying one.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);
const TOKEN_TIMEOUT: Duration = Duration::from_secs(20);

pub struct GoogleAuth {
    client_email: String,
    key: RsaKeyPair,
    token_uri: String,
    cached: Mutex<Option<(Arc<str>, Instant)>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GoogleAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleAuth")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

impl GoogleAuth {
    /// `private_key` is the PEM PKCS#8 key of the service-account JSON; `\n` written as two
    /// characters (as in env vars and one-line YAML) is accepted.
    pub fn new(
        client_email: &str,
        private_key: &str,
        token_uri: Option<&str>,
    ) -> Result<Self, String> {
        let pem = private_key.replace("\\n", "\n");
        let body: String = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::decode(&body)
            .filter(|d| !d.is_empty())
            .ok_or("private_key is not a PEM-encoded key")?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|e| format!("private_key is not an RSA PKCS#8 key: {e}"))?;
        Ok(GoogleAuth {
            client_email: client_email.to_string(),
            key,
            token_uri: token_uri.unwrap_or(DEFAULT_TOKEN_URI).to_string(),
            cached: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// The signed assertion for the token request, valid for one hour from `now_unix`.
    pub fn assertion(&self, now_unix: u64) -> Result<String, String> {
        let header = base64::encode_url(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now_unix,
            "exp": now_unix + 3600,
        });
        let claims = base64::encode_url(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "signing the token request failed".to_string())?;
        Ok(format!("{signing_input}.{}", base64::encode_url(&sig)))
    }

    fn fresh(&self) -> Option<Arc<str>> {
        let cached = self.cached.lock().ok()?;
        cached
            .as_ref()
            .filter(|(_, valid_until)| Instant::now() < *valid_until)
            .map(|(t, _)| Arc::clone(t))
    }

    /// Drops the cached token (the upstream refused it).
    pub fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.lock() {
            *cached = None;
        }
    }

    /// A valid access token, fetched if none is cached.
    pub async fn token(&self, client: &UpstreamClient) -> Result<Arc<str>, String> {
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let _single_flight = self.refresh.lock().await;
        if let Some(t) = self.fresh() {
            return Ok(t);
        }
        let (token, lifetime) = self.fetch(client).await?;
        let valid_for = lifetime.saturating_sub(REFRESH_MARGIN).max(lifetime / 2);
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((Arc::clone(&token), Instant::now() + valid_for));
        }
        Ok(token)
    }

    async fn fetch(&self, client: &UpstreamClient) -> Result<(Arc<str>, Duration), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let form = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={}",
            self.assertion(now)?
        );
        let req = Request::post(&self.token_uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(full(Bytes::from(form)))
            .map_err(|e| format!("bad token_uri `{}`: {e}", self.token_uri))?;
        let exchange = async {
            let resp = client.send(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (status, body) = tokio::time::timeout(TOKEN_TIMEOUT, exchange)
            .await
            .map_err(|_| "the token endpoint did not answer in time".to_string())?
            .map_err(|e| format!("token endpoint unreachable: {e}"))?;
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            // Google answers {"error":"invalid_grant","error_description":"..."}.
            let why = parsed
                .get("error_description")
                .or_else(|| parsed.get("error"))
                .and_then(|v| v.as_str())
                .unwrap_or("no reason given");
            return Err(format!(
                "service account {} was refused a token (HTTP {}): {why}",
                self.client_email,
                status.as_u16()
            ));
        }
        let token = parsed
            .get("access_token")
            .and_then(|v| v.as_str())
            .filter(|t| !t.is_empty())
            .ok_or("the token endpoint answered without an access_token")?;
        let lifetime = parsed
            .get("expires_in")
            .and_then(|v| v.as_u64())
            .unwrap_or(3600);
        Ok((Arc::from(token), Duration::from_secs(lifetime)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

    pub(crate) fn test_key_pem() -> (String, Vec<u8>) {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der = pair.as_der().unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::encode(der.as_ref())
        );
        (pem, pair.public_key().as_ref().to_vec())
    }

    #[test]
    fn assertion_is_a_verifiable_rs256_jwt_with_googles_claims() {
        let (pem, public) = test_key_pem();
        // One-line form, as a YAML string with literal \n.
        let one_line = pem.replace('\n', "\\n");
        let auth = GoogleAuth::new("svc@proj.iam.gserviceaccount.com", &one_line, None).unwrap();
        let jwt = auth.assertion(1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&base64::decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "svc@proj.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], DEFAULT_TOKEN_URI);
        assert_eq!(claims["scope"], SCOPE);
        assert_eq!(claims["exp"], 1_700_003_600u64);
        let sig = base64::decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(signed.as_bytes(), &sig)
            .expect("signature verifies with the public key");
    }

    #[test]
    fn bad_keys_are_named() {
        let err = GoogleAuth::new("a@b", "not a key", None).unwrap_err();
        assert!(err.contains("private_key"), "{err}");
        let err = GoogleAuth::new(
            "a@b",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            None,
        )
        .unwrap_err();
        assert!(err.contains("RSA PKCS#8"), "{err}");
    }
}
