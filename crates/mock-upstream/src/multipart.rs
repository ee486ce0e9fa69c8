//! A small, strict `multipart/form-data` parser (RFC 7578) — enough to prove
//! that uploads reach the upstream byte-for-byte.

use bytes::Bytes;
use memchr::memmem;

use crate::errors::ApiError;

#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Bytes,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Form {
    pub parts: Vec<Part>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// A non-file field as text.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|p| std::str::from_utf8(&p.data).ok())
    }

    pub fn all_text(&self, name: &str) -> Vec<&str> {
        self.parts
            .iter()
            .filter(|p| p.name == name)
            .filter_map(|p| std::str::from_utf8(&p.data).ok())
            .collect()
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid(message, None, None)
}

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';');
    let mime = params.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"'))
            .filter(|b| !b.is_empty())
    })
}

pub(crate) fn parse(content_type: &str, body: &Bytes) -> Result<Form, ApiError> {
    let Some(boundary) = boundary(content_type) else {
        let shown = if content_type.is_empty() {
            "none"
        } else {
            content_type
        };
        return Err(bad(format!(
            "Invalid Content-Type header ({shown}), expected multipart/form-data. (HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')"
        )));
    };
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delim.as_bytes());

    let malformed = || bad("Could not parse multipart form");
    let mut pos = memmem::find(body, delim.as_bytes()).ok_or_else(malformed)? + delim.len();
    let mut form = Form::default();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(form);
        }
        let after_line = if rest.starts_with(b"\r\n") {
            pos + 2
        } else {
            return Err(malformed());
        };
        let head_len = memmem::find(&body[after_line..], b"\r\n\r\n").ok_or_else(malformed)?;
        let head = std::str::from_utf8(&body[after_line..after_line + head_len])
            .map_err(|_| malformed())?;
        let data_start = after_line + head_len + 4;
        let data_len = finder.find(&body[data_start..]).ok_or_else(malformed)?;
        let data = body.slice(data_start..data_start + data_len);
        pos = data_start + data_len + next_delim.len();

        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((hname, hvalue)) = line.split_once(':') else {
                continue;
            };
            let hname = hname.trim();
            if hname.eq_ignore_ascii_case("content-disposition") {
                for param in hvalue.split(';').skip(1) {
                    if let Some((k, v)) = param.trim().split_once('=') {
                        let v = v.trim().trim_matches('"').to_owned();
                        match k.trim().to_ascii_lowercase().as_str() {
                            "name" => name = Some(v),
                            "filename" => filename = Some(v),
                            _ => {}
                        }
                    }
                }
            }
        }
        let name = name.ok_or_else(malformed)?;
        form.parts.push(Part {
            name,
            filename,
            data,
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_binary_file() {
        let mut body = Vec::new();
        body.extend_from_slice(b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n");
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a b.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n");
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        body.extend_from_slice(&payload);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        let form = parse("multipart/form-data; boundary=\"XyZ\"", &Bytes::from(body)).unwrap();
        assert_eq!(form.text("model"), Some("whisper-1"));
        let file = form.get("file").unwrap();
        assert_eq!(file.filename.as_deref(), Some("a b.mp3"));
        assert_eq!(&file.data[..], &payload[..]);
    }

    #[test]
    fn rejects_non_multipart() {
        assert!(parse("application/json", &Bytes::from_static(b"{}")).is_err());
        assert!(
            parse(
                "multipart/form-data; boundary=b",
                &Bytes::from_static(b"junk")
            )
            .is_err()
        );
    }
}
