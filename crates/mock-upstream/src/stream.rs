//! Streamed answers, whatever their framing: a list of events, each tagged
//! with the output tokens "generated" before it, turned into a paced body
//! that honours `chunk_delay`, `token_delay` and the stream faults.

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::body::{self, Body};
use crate::server::{Ctx, Streamed};

/// `data: {json}\n\n`.
pub(crate) fn data(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// `event: {name}\ndata: {json}\n\n`.
pub(crate) fn named(name: &str, json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + name.len() + 16);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The events of one streamed answer.
#[derive(Default)]
pub(crate) struct Events {
    events: Vec<Bytes>,
    /// Output tokens generated just before each event (for `token_delay`).
    tokens: Vec<u64>,
}

impl Events {
    pub fn new() -> Events {
        Events::default()
    }

    pub fn push(&mut self, event: Bytes) {
        self.events.push(event);
        self.tokens.push(0);
    }

    /// An event that carries `tokens` freshly generated output tokens.
    pub fn push_generated(&mut self, event: Bytes, tokens: u64) {
        self.events.push(event);
        self.tokens.push(tokens);
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// The streamed response. With the `ErrorMidStream` fault the stream is
    /// cut after that many events and ends with `error_tail(events kept)`
    /// (the format's in-stream error, and whatever closes its framing).
    pub fn into_response(
        mut self,
        ctx: &Ctx<'_>,
        content_type: &'static str,
        error_tail: impl FnOnce(usize) -> Vec<Bytes>,
    ) -> Response<Body> {
        if let Some(after) = ctx.mode.error_after {
            let kept = after.min(self.events.len());
            self.events.truncate(kept);
            self.tokens.truncate(kept);
            for event in error_tail(kept) {
                self.push(event);
            }
        }
        let chunk_delay = ctx.shared.chunk_delay;
        let token_delay = ctx.shared.token_delay;
        // Unpaced streams go out as one frame (still chunked, still SSE): the
        // split would be invisible to clients anyway and costs throughput.
        let body =
            if chunk_delay.is_zero() && token_delay.is_zero() && ctx.mode.drop_after.is_none() {
                body::paced(
                    vec![Bytes::from(self.events.concat())],
                    Duration::ZERO,
                    None,
                )
            } else if token_delay.is_zero() {
                body::paced(self.events, chunk_delay, ctx.mode.drop_after)
            } else {
                let delays = self
                    .tokens
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let base = if i == 0 { Duration::ZERO } else { chunk_delay };
                        base + token_delay.saturating_mul(u32::try_from(*t).unwrap_or(u32::MAX))
                    })
                    .collect();
                body::paced_each(self.events, delays, ctx.mode.drop_after)
            };
        let mut resp = body::response(StatusCode::OK, content_type, body);
        resp.extensions_mut().insert(Streamed);
        resp
    }
}

/// Argument strings are streamed in pieces of this many characters.
pub(crate) const ARG_PIECE_CHARS: usize = 8;

/// `args` split into pieces of [`ARG_PIECE_CHARS`] characters.
pub(crate) fn arg_pieces(args: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in args.char_indices().enumerate() {
        if count > 0 && count % ARG_PIECE_CHARS == 0 {
            pieces.push(&args[start..i]);
            start = i;
        }
    }
    if start < args.len() {
        pieces.push(&args[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_pieces_roundtrip() {
        let args = r#"{"location":"mock","unit":"celsius"}"#;
        assert_eq!(arg_pieces(args).concat(), args);
        assert!(arg_pieces(args).len() > 1);
        assert!(arg_pieces("").is_empty());
    }

    #[test]
    fn framing() {
        assert_eq!(&data(b"{}")[..], b"data: {}\n\n");
        assert_eq!(&named("ping", b"{}")[..], b"event: ping\ndata: {}\n\n");
    }
}
