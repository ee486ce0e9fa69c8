//! AWS Signature Version 4 for Bedrock. Small and self-contained (HMAC and SHA-256 come from
//! aws-lc-rs, already linked for TLS), checked against AWS's published test-suite vectors.

use aws_lc_rs::{digest, hmac};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key", &crate::secret::mask(&self.access_key))
            .finish_non_exhaustive()
    }
}

/// What to sign: the request as it will be sent.
pub struct SignRequest<'a> {
    pub method: &'a Method,
    /// Absolute URI; its path is as sent (already percent-encoded once).
    pub uri: &'a Uri,
    pub payload: &'a [u8],
    pub region: &'a str,
    pub service: &'a str,
    /// Unix seconds.
    pub now: u64,
    /// Encode the path a second time, as every service but S3 expects.
    pub double_encode_path: bool,
}

/// Adds `host`, `x-amz-date`, `x-amz-content-sha256`, `x-amz-security-token` (when the
/// credentials carry one) and `authorization` to `headers`. Every header present is signed.
pub fn sign(creds: &AwsCredentials, req: &SignRequest<'_>, headers: &mut HeaderMap) {
    let (_, amz_date) = amz_dates(req.now);
    let payload_hash = hex(digest::digest(&digest::SHA256, req.payload).as_ref());
    if let Some(host) = req.uri.authority().map(|a| a.as_str().to_string())
        && let Ok(v) = HeaderValue::from_str(&host)
    {
        headers.insert(http::header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&amz_date) {
        headers.insert(HeaderName::from_static("x-amz-date"), v);
    }
    if let Ok(v) = HeaderValue::from_str(&payload_hash) {
        headers.insert(HeaderName::from_static("x-amz-content-sha256"), v);
    }
    if let Some(token) = &creds.session_token
        && let Ok(v) = HeaderValue::from_str(token)
    {
        headers.insert(HeaderName::from_static("x-amz-security-token"), v);
    }
    let authorization = authorization(creds, req, headers);
    if let Ok(v) = HeaderValue::from_str(&authorization) {
        headers.insert(http::header::AUTHORIZATION, v);
    }
}

/// The `authorization` value for the headers present (all of them are signed).
fn authorization(creds: &AwsCredentials, req: &SignRequest<'_>, headers: &HeaderMap) -> String {
    let (date, amz_date) = amz_dates(req.now);
    let payload_hash = hex(digest::digest(&digest::SHA256, req.payload).as_ref());
    let (canonical_headers, signed_headers) = canonical_headers(headers);
    let path = if req.uri.path().is_empty() {
        "/"
    } else {
        req.uri.path()
    };
    let canonical_path = if req.double_encode_path {
        encode(path, false)
    } else {
        path.to_string()
    };
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.as_str(),
        canonical_path,
        canonical_query(req.uri.query().unwrap_or("")),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{}/{}/aws4_request", req.region, req.service);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = hmac_sha256(
        format!("AWS4{}", creds.secret_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [req.region, req.service, "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        creds.access_key
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Lower-cased names, trimmed values with inner runs of spaces folded, sorted by name; values
/// of repeated headers joined with commas.
fn canonical_headers(headers: &HeaderMap) -> (String, String) {
    let mut entries: Vec<(String, String)> = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| fold_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect();
        entries.push((name.as_str().to_ascii_lowercase(), values.join(",")));
    }
    entries.sort();
    let mut canonical = String::new();
    let mut signed = Vec::with_capacity(entries.len());
    for (name, value) in &entries {
        canonical.push_str(name);
        canonical.push(':');
        canonical.push_str(value);
        canonical.push('\n');
        signed.push(name.as_str());
    }
    (canonical, signed.join(";"))
}

fn fold_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parameters sorted by encoded name then value; each name and value URI-encoded.
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), true), encode(&decode(v), true))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// AWS URI encoding: unreserved characters kept, everything else `%XX` (upper case).
fn encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (`YYYYMMDD`, `YYYYMMDDTHHMMSSZ`) in UTC.
fn amz_dates(unix: u64) -> (String, String) {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let stamp = format!(
        "{date}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    );
    (date, stamp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    // AWS Signature Version 4 test suite: credentials, date, region and service.
    const AT: u64 = 1_440_938_160; // 2015-08-30T12:36:00Z

    fn suite_creds() -> AwsCredentials {
        AwsCredentials {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: None,
        }
    }

    /// The suite predates `x-amz-content-sha256`: sign exactly its header set.
    fn signed(method: Method, url: &str, payload: &[u8]) -> String {
        let uri: Uri = url.parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::HOST,
            HeaderValue::from_static("example.amazonaws.com"),
        );
        headers.insert("x-amz-date", HeaderValue::from_static("20150830T123600Z"));
        let req = SignRequest {
            method: &method,
            uri: &uri,
            payload,
            region: "us-east-1",
            service: "service",
            now: AT,
            double_encode_path: false,
        };
        authorization(&suite_creds(), &req, &headers)
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(
            amz_dates(AT),
            ("20150830".to_string(), "20150830T123600Z".to_string())
        );
        assert_eq!(amz_dates(0).1, "19700101T000000Z");
        assert_eq!(amz_dates(951_782_400).0, "20000229");
    }

    #[test]
    fn aws_test_suite_vectors() {
        let cred =
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";
        assert_eq!(
            signed(Method::GET, "https://example.amazonaws.com/", b""),
            format!(
                "{cred}, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
            )
        );
        assert_eq!(
            signed(Method::POST, "https://example.amazonaws.com/", b""),
            format!(
                "{cred}, SignedHeaders=host;x-amz-date, Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
            )
        );
        assert_eq!(
            signed(
                Method::GET,
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                b""
            ),
            format!(
                "{cred}, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
            )
        );
    }

    #[test]
    fn full_signature_signs_payload_hash_and_token() {
        let uri: Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let creds = AwsCredentials {
            session_token: Some("TOKEN".into()),
            ..suite_creds()
        };
        let req = SignRequest {
            method: &Method::POST,
            uri: &uri,
            payload: b"{}",
            region: "us-east-1",
            service: "bedrock",
            now: AT,
            double_encode_path: true,
        };
        sign(&creds, &req, &mut headers);
        let auth = headers[http::header::AUTHORIZATION].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ), "{auth}");
        assert_eq!(
            headers["x-amz-content-sha256"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(headers["host"], "bedrock-runtime.us-east-1.amazonaws.com");
        // A different payload gives a different signature.
        let mut other = HeaderMap::new();
        other.insert("content-type", HeaderValue::from_static("application/json"));
        sign(
            &creds,
            &SignRequest {
                payload: b"{ }",
                ..req
            },
            &mut other,
        );
        assert_ne!(
            other[http::header::AUTHORIZATION],
            headers[http::header::AUTHORIZATION]
        );
    }

    #[test]
    fn path_is_encoded_twice_for_non_s3_services() {
        assert_eq!(
            encode("/model/anthropic.claude-v2%3A1/invoke", false),
            "/model/anthropic.claude-v2%253A1/invoke"
        );
        assert_eq!(canonical_query("b=2&a=x%20y&a=1"), "a=1&a=x%20y&b=2");
    }
}
