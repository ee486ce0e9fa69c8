//! AWS Signature Version 4 verification, as Bedrock's front door performs
//! it: the canonical request is rebuilt from what was received (the path
//! decoded and URI-encoded twice, as every service but S3 does; the query
//! sorted; the headers the `SignedHeaders` list names, trimmed and folded;
//! the SHA-256 of the body actually received), signed with the secret the
//! mock knows for the access key, and compared with the `Signature` sent.
//! Written from the SigV4 specification, independently of llmux's signer.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use http::request::Parts;
use sha2::{Digest, Sha256};

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Requests signed this long before or after "now" are refused.
const MAX_SKEW_SECS: u64 = 5 * 60;

/// The parsed `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
#[derive(Debug)]
pub(crate) struct Authorization<'a> {
    pub access_key: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    pub terminator: &'a str,
    pub signed_headers: Vec<&'a str>,
    pub signature: &'a str,
}

/// Why a signature is refused, each answered with AWS's own words.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SigError {
    /// No `Authorization` header at all.
    Missing,
    /// A header that is not a complete SigV4 authorization.
    Incomplete(String),
    /// An access key the mock was not given.
    UnknownKey,
    /// The recomputed signature differs.
    Mismatch,
    /// Scope, date or signed-header problems (`InvalidSignatureException`).
    Invalid(String),
}

/// Parses a SigV4 `Authorization` value (`None` if it is not SigV4 at all).
pub(crate) fn parse(value: &str) -> Option<Result<Authorization<'_>, SigError>> {
    let rest = value.trim().strip_prefix(ALGORITHM)?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for field in rest.split(',') {
        let Some((k, v)) = field.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Some(Err(SigError::Incomplete(format!(
            "{} Authorization={value}",
            missing.join(" ")
        ))));
    };
    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = parts.as_slice() else {
        return Some(Err(SigError::Incomplete(format!(
            "Authorization header requires 'Credential' parameter to be in the form of ACCESS_KEY/DATE/REGION/SERVICE/aws4_request. Authorization={value}"
        ))));
    };
    Some(Ok(Authorization {
        access_key,
        date,
        region,
        service,
        terminator,
        signed_headers: signed.split(';').collect(),
        signature,
    }))
}

/// The access key id a SigV4 `Authorization` names (for key bookkeeping).
pub(crate) fn access_key(value: &str) -> Option<&str> {
    match parse(value)? {
        Ok(a) if !a.access_key.is_empty() => Some(a.access_key),
        _ => None,
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; the error arm cannot happen.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or(0);
        if b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(0));
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

/// RFC 3986 encoding: unreserved characters kept, everything else `%XX`.
fn uri_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI: each path segment decoded, then encoded twice.
pub(crate) fn canonical_uri(path: &str) -> String {
    if path.is_empty() || path == "/" {
        return "/".to_owned();
    }
    path.split('/')
        .map(|seg| uri_encode(uri_encode(&percent_decode(seg)).as_bytes()))
        .collect::<Vec<_>>()
        .join("/")
}

/// The canonical query: pairs decoded, re-encoded, sorted by name then value.
pub(crate) fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (
                uri_encode(&percent_decode(k)),
                uri_encode(&percent_decode(v)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 canonicalises it: trimmed, inner runs of spaces
/// folded into one.
fn fold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything the signature covers, gathered from the request.
pub(crate) struct Signed<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// `(lower-case name, value)` of every header received.
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

impl<'a> Signed<'a> {
    pub fn from_parts(parts: &'a Parts, body: &'a [u8]) -> Signed<'a> {
        let mut headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        // HTTP/2 carries the host as `:authority`, which SigV4 signs as `host`.
        if !headers.iter().any(|(k, _)| k == "host")
            && let Some(auth) = parts.uri.authority()
        {
            headers.push(("host".to_owned(), auth.as_str().to_owned()));
        }
        Signed {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The canonical request for these signed header names.
    pub fn canonical_request(&self, signed_headers: &[&str]) -> String {
        let mut canonical_headers = String::new();
        for name in signed_headers {
            let values: Vec<String> = self
                .headers
                .iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| fold(v))
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.method,
            canonical_uri(self.path),
            canonical_query(self.query),
            canonical_headers,
            signed_headers.join(";"),
            sha256_hex(self.body)
        )
    }
}

/// The signing key: HMAC chain over date, region, service, `aws4_request`.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// The hex signature of a canonical request.
pub(crate) fn signature(
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    hex(&hmac(
        &signing_key(secret, date, region, service),
        string_to_sign.as_bytes(),
    ))
}

/// Seconds since the epoch of a `YYYYMMDDTHHMMSSZ` timestamp.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b.get(8) != Some(&b'T') || b.get(15) != Some(&b'Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm), for the proleptic Gregorian calendar.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// `YYYYMMDDTHHMMSSZ` of a Unix time.
pub(crate) fn format_amz_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// What the verifier is configured with.
pub(crate) struct Verifier<'a> {
    /// Access key id → secret access key.
    pub secrets: &'a HashMap<String, String>,
    pub region: &'a str,
    pub service: &'a str,
    pub now_unix: u64,
}

impl Verifier<'_> {
    /// Checks a request's SigV4 signature; `Ok` carries the access key id.
    pub fn verify<'r>(
        &self,
        authorization: Option<&'r str>,
        req: &Signed<'_>,
    ) -> Result<&'r str, SigError> {
        let Some(value) = authorization else {
            return Err(SigError::Missing);
        };
        let auth = match parse(value) {
            None => {
                return Err(SigError::Incomplete(format!(
                    "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization={value}"
                )));
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(a)) => a,
        };
        let Some(secret) = self.secrets.get(auth.access_key) else {
            return Err(SigError::UnknownKey);
        };
        let Some(amz_date) = req.header("x-amz-date") else {
            return Err(SigError::Incomplete(
                "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                    .to_owned(),
            ));
        };
        if !auth.signed_headers.contains(&"host") {
            return Err(SigError::Invalid(
                "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
                    .to_owned(),
            ));
        }
        if auth.terminator != "aws4_request" {
            return Err(SigError::Invalid(format!(
                "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'.",
                auth.terminator
            )));
        }
        if auth.service != self.service {
            return Err(SigError::Invalid(format!(
                "Credential should be scoped to correct service: '{}'. ",
                self.service
            )));
        }
        if auth.region != self.region {
            return Err(SigError::Invalid(format!(
                "Credential should be scoped to a valid region, not '{}'. ",
                auth.region
            )));
        }
        let day = amz_date.get(..8).unwrap_or("");
        if auth.date != day {
            return Err(SigError::Invalid(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{day}', from '{amz_date}'.",
                auth.date
            )));
        }
        let Some(signed_at) = parse_amz_date(amz_date) else {
            return Err(SigError::Incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
            )));
        };
        if signed_at + MAX_SKEW_SECS < self.now_unix {
            return Err(SigError::Invalid(format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(self.now_unix - MAX_SKEW_SECS),
                format_amz_date(self.now_unix)
            )));
        }
        if signed_at > self.now_unix + MAX_SKEW_SECS {
            return Err(SigError::Invalid(format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(self.now_unix + MAX_SKEW_SECS),
                format_amz_date(self.now_unix)
            )));
        }
        let canonical = req.canonical_request(&auth.signed_headers);
        let expected = signature(
            secret,
            amz_date,
            auth.date,
            auth.region,
            auth.service,
            &canonical,
        );
        if expected != auth.signature {
            return Err(SigError::Mismatch);
        }
        Ok(auth.access_key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    /// AWS's documented example (IAM `ListUsers`, "Create a signed AWS API
    /// request" in the IAM user guide).
    #[test]
    fn aws_documented_example() {
        let req = Signed {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: vec![
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded; charset=utf-8".into(),
                ),
                ("host".into(), "iam.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
            ],
            body: b"",
        };
        let canonical = req.canonical_request(&["content-type", "host", "x-amz-date"]);
        assert_eq!(
            sha256_hex(canonical.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        assert_eq!(
            hex(&signing_key(SECRET, "20150830", "us-east-1", "iam")),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
        assert_eq!(
            signature(
                SECRET,
                "20150830T123600Z",
                "20150830",
                "us-east-1",
                "iam",
                &canonical
            ),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
        let secrets = HashMap::from([("AKIDEXAMPLE".to_owned(), SECRET.to_owned())]);
        let v = Verifier {
            secrets: &secrets,
            region: "us-east-1",
            service: "iam",
            now_unix: parse_amz_date("20150830T123600Z").unwrap(),
        };
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        assert_eq!(v.verify(Some(auth), &req), Ok("AKIDEXAMPLE"));
        let tampered = auth.replace("5d672d", "5d672e");
        assert_eq!(v.verify(Some(&tampered), &req), Err(SigError::Mismatch));
        let late = Verifier {
            now_unix: v.now_unix + 301,
            ..v
        };
        assert!(matches!(
            late.verify(Some(auth), &req),
            Err(SigError::Invalid(m)) if m.starts_with("Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z")
        ));
    }

    #[test]
    fn paths_are_encoded_twice() {
        assert_eq!(
            canonical_uri("/model/anthropic.claude-v2%3A1/converse"),
            "/model/anthropic.claude-v2%253A1/converse"
        );
        assert_eq!(
            canonical_uri("/model/anthropic.claude-v2:1/converse"),
            "/model/anthropic.claude-v2%253A1/converse"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query(Some("b=2&a=%7E x")), "a=~%20x&b=2");
    }

    #[test]
    fn dates_round_trip() {
        for s in ["20150830T123600Z", "20000229T000000Z", "20991231T235959Z"] {
            assert_eq!(format_amz_date(parse_amz_date(s).unwrap()), s);
        }
        assert_eq!(parse_amz_date("20150830T123600"), None);
    }
}
