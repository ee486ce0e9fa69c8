//! Base64 (RFC 4648): the standard alphabet with padding (Basic auth, PEM, inline media, Bedrock
//! chunks), the URL-safe alphabet without padding (JWTs). Small enough to keep rather than add a
//! crate.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_with(input: &[u8], table: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(table[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        if chunk.len() > 1 {
            out.push(sextet(6));
        } else if pad {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sextet(0));
        } else if pad {
            out.push('=');
        }
    }
    out
}

/// Standard alphabet, padded.
pub fn encode(input: &[u8]) -> String {
    encode_with(input, STANDARD, true)
}

/// URL-safe alphabet, unpadded (JWT segments).
pub fn encode_url(input: &[u8]) -> String {
    encode_with(input, URL_SAFE, false)
}

/// Decodes either alphabet, with or without padding; whitespace (PEM line breaks) is skipped.
pub fn decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for c in input.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            b' ' | b'\n' | b'\r' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors_both_ways() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(input.as_bytes()), want);
            assert_eq!(decode(want).as_deref(), Some(input.as_bytes()));
            assert_eq!(encode_url(input.as_bytes()), want.trim_end_matches('='));
        }
    }

    #[test]
    fn url_alphabet_and_line_breaks() {
        assert_eq!(encode_url(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        assert_eq!(decode("Zm9v\nYmFy").as_deref(), Some(&b"foobar"[..]));
        assert_eq!(decode("Zm9v*"), None);
    }
}
