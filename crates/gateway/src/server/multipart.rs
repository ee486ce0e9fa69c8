//! Just enough multipart/form-data to route an upload without buffering it: find the `model`
//! field in the first bytes, rename it for the chosen channel, and stream the rest through.

use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use memchr::memmem;

use crate::server::body::BoxError;

/// The boundary parameter of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty())
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum FieldScan {
    /// Byte range of the field's value.
    Found(Range<usize>),
    /// The buffer ends before the field (or the part holding it) is complete.
    NeedMore,
    /// The closing boundary came without the field.
    Absent,
}

/// Look for the form field `name` in the buffered start of a multipart body.
pub fn find_field(buf: &[u8], boundary: &str, name: &str) -> FieldScan {
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let next_delim = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delim.as_bytes());
    let Some(mut pos) = memmem::find(buf, delim) else {
        return FieldScan::NeedMore;
    };
    loop {
        let after = pos + delim.len();
        if buf.len() < after + 2 {
            return FieldScan::NeedMore;
        }
        if &buf[after..after + 2] == b"--" {
            return FieldScan::Absent;
        }
        let Some(line_end) = memmem::find(&buf[after..], b"\r\n") else {
            return FieldScan::NeedMore;
        };
        let headers_start = after + line_end + 2;
        let Some(h_len) = memmem::find(&buf[headers_start..], b"\r\n\r\n") else {
            return FieldScan::NeedMore;
        };
        let headers = &buf[headers_start..headers_start + h_len];
        let content_start = headers_start + h_len + 4;
        let Some(c_len) = finder.find(&buf[content_start..]) else {
            return FieldScan::NeedMore;
        };
        let content_end = content_start + c_len;
        if part_name(headers).as_deref() == Some(name) {
            return FieldScan::Found(content_start..content_end);
        }
        pos = content_end + 2;
    }
}

/// `name` parameter of a part's Content-Disposition header.
fn part_name(headers: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(headers).ok()?;
    text.split("\r\n")
        .find(|l| {
            l.get(..20)
                .is_some_and(|p| p.eq_ignore_ascii_case("content-disposition:"))
        })?
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case("name")
                .then(|| v.trim().trim_matches('"').to_string())
        })
}

pin_project_lite::pin_project! {
    /// Buffered start of an upload followed by the rest of the client's stream, capped in size.
    pub struct PrefixedBody<B> {
        prefix: Option<Bytes>,
        #[pin]
        rest: B,
        remaining: u64,
    }
}

impl<B> PrefixedBody<B> {
    /// `limit` bounds the whole body, prefix included.
    pub fn new(prefix: Bytes, rest: B, limit: u64) -> Self {
        let remaining = limit.saturating_sub(prefix.len() as u64);
        PrefixedBody {
            prefix: Some(prefix),
            rest,
            remaining,
        }
    }
}

impl<B> Body for PrefixedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(p) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        match this.rest.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > *this.remaining {
                        return Poll::Ready(Some(Err(BoxError::from(
                            "upload exceeds the body size limit",
                        ))));
                    }
                    *this.remaining -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + extra);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, file, value) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        out
    }

    #[test]
    fn parses_boundary() {
        assert_eq!(
            boundary("multipart/form-data; boundary=XyZ").as_deref(),
            Some("XyZ")
        );
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("application/json"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn finds_model_before_and_after_file() {
        let body = form(&[
            ("model", None, "whisper-1"),
            ("file", Some("a.mp3"), "\x00\x01binary--XyZ"),
        ]);
        let FieldScan::Found(span) = find_field(&body, "XyZ", "model") else {
            unreachable!("model not found")
        };
        assert_eq!(&body[span], b"whisper-1");
        let body = form(&[
            ("file", Some("a.mp3"), "data data"),
            ("model", None, "whisper-1"),
        ]);
        let FieldScan::Found(span) = find_field(&body, "XyZ", "model") else {
            unreachable!("model not found")
        };
        assert_eq!(&body[span], b"whisper-1");
        let body = form(&[("file", Some("a.mp3"), "data")]);
        assert_eq!(find_field(&body, "XyZ", "model"), FieldScan::Absent);
    }

    #[test]
    fn needs_more_on_every_prefix() {
        let body = form(&[
            ("language", None, "en"),
            ("model", None, "whisper-1"),
            ("file", Some("a"), "x"),
        ]);
        let FieldScan::Found(full) = find_field(&body, "XyZ", "model") else {
            unreachable!("model not found")
        };
        for cut in 0..full.end + 2 {
            assert_eq!(
                find_field(&body[..cut], "XyZ", "model"),
                FieldScan::NeedMore,
                "cut at {cut}"
            );
        }
    }
}
