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

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_keys() {
        assert_eq!(mask("sk-abcdefghijklmnop1234"), "sk-...1234");
        assert_eq!(mask("AIzaSyAN2k6IRdgw123"), "AI...w123");
        assert_eq!(mask("short"), "***");
        assert!(!mask("sk-secretsecretsecret").contains("secret"));
    }
}
