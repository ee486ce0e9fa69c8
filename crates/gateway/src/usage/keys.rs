//! How keys appear in the usage store: never the secret. Client and upstream keys are named by
//! the same non-reversible fingerprint the key pool already uses (`sk-...abcd#<16 hex>`), so a
//! row, the key-pool state file and a log line all name a key the same way, and a
//! configuration reload (keys reordered, added, removed) does not change a key's identity.

/// The identity stored for a key: `sk-...abcd#` + 64-bit FNV-1a of the secret in hex. The
/// masked part keeps it recognisable to an admin; the hash keeps two keys with the same tail
/// apart. Neither reveals more than the last four characters.
pub fn key_id(secret: &str) -> String {
    crate::keypool::pool::fingerprint(secret)
}

/// The display form of a stored key id (`sk-...abcd`): what `/v1/token_usage` shows as
/// `api_key_prefix` (uni-api shows `sk-abcd...wxyz`, i.e. seven more characters of the secret).
pub fn display(key_id: &str) -> &str {
    key_id.split_once('#').map_or(key_id, |(masked, _)| masked)
}

/// `/v1/generate-api-key`: `sk-` and 48 characters from `[A-Za-z0-9]`, from the operating
/// system's CSPRNG (uni-api's format). Fails only when the OS has no entropy source.
pub fn generate_api_key() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut key = String::with_capacity(51);
    key.push_str("sk-");
    let mut buf = [0u8; 64];
    while key.len() < 51 {
        getrandom::fill(&mut buf)?;
        for &b in &buf {
            // 248 = 4 * 62: rejecting the top 8 values keeps every character equally likely.
            if b < 248
                && key.len() < 51
                && let Some(&c) = ALPHABET.get(usize::from(b % 62))
            {
                key.push(char::from(c));
            }
        }
    }
    Ok(key)
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn key_id_hides_the_secret_and_is_stable() {
        let secret = "sk-live-0123456789abcdefSECRETPART9876";
        let id = key_id(secret);
        assert_eq!(id, key_id(secret));
        assert!(!id.contains("SECRETPART"), "{id}");
        assert!(id.starts_with("sk-...9876#"), "{id}");
        assert_eq!(display(&id), "sk-...9876");
        assert_ne!(id, key_id("sk-live-0123456789abcdefOTHERPART9876"));
        assert_eq!(display("plain"), "plain");
    }

    #[test]
    fn generated_keys_have_uni_api_format_and_differ() {
        let a = generate_api_key().expect("entropy");
        let b = generate_api_key().expect("entropy");
        assert_eq!(a.len(), 51);
        assert!(a.starts_with("sk-"));
        assert!(a[3..].bytes().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }
}
