//! Secrets (client and upstream keys) never reach logs, errors or stats in clear: they are
//! shown as `sk-...abcd`.

/// Masked form of a key: a short recognisable prefix and the last four characters.
pub fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "***".to_string();
    }
    let prefix: String = match key.find('-') {
        Some(i) if i <= 6 => key[..=i].to_string(),
        _ => chars[..2].iter().collect(),
    };
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}...{tail}")
}

/// An upstream key and the header values that carry it (`Bearer <key>` and the bare key, for
/// the providers that take it in `x-api-key`, `api-key` or `x-goog-api-key`), built once per
/// key instead of per request and marked sensitive; `Debug` shows the key masked.
pub struct Credential {
    secret: std::sync::Arc<str>,
    bare: Option<http::HeaderValue>,
    bearer: Option<http::HeaderValue>,
}

impl Credential {
    pub fn new(secret: &str) -> Credential {
        let value = |text: &str| {
            http::HeaderValue::from_str(text).ok().map(|mut v| {
                v.set_sensitive(true);
                v
            })
        };
        Credential {
            secret: std::sync::Arc::from(secret),
            bare: value(secret),
            bearer: value(&format!("Bearer {secret}")),
        }
    }

    pub fn secret(&self) -> &std::sync::Arc<str> {
        &self.secret
    }

    /// The key as a header value; `None` when it holds bytes a header cannot.
    pub fn bare(&self) -> Option<http::HeaderValue> {
        self.bare.clone()
    }

    /// `Bearer <key>`; `None` when the key holds bytes a header cannot.
    pub fn bearer(&self) -> Option<http::HeaderValue> {
        self.bearer.clone()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Credential")
            .field(&mask(&self.secret))
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{Credential, mask};

    #[test]
    fn a_credential_carries_its_key_in_header_values_and_never_prints_it() {
        let c = Credential::new("sk-secretsecretsecret1234");
        assert_eq!(c.bearer().unwrap(), "Bearer sk-secretsecretsecret1234");
        assert_eq!(c.bare().unwrap(), "sk-secretsecretsecret1234");
        assert!(c.bearer().unwrap().is_sensitive());
        assert!(!format!("{c:?}").contains("secret"));
        // A key a header cannot hold gives no value (the request goes without it).
        assert!(Credential::new("sk-bad\nkey-0000").bare().is_none());
    }

    #[test]
    fn masks_keys() {
        assert_eq!(mask("sk-abcdefghijklmnop1234"), "sk-...1234");
        assert_eq!(mask("AIzaSyAN2k6IRdgw123"), "AI...w123");
        assert_eq!(mask("short"), "***");
        assert!(!mask("sk-secretsecretsecret").contains("secret"));
    }
}
