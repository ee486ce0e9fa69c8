//! Body types shared by the server and the upstream client.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, combinators::UnsyncBoxBody};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response llmux writes: a fixed buffer or a stream relayed from an upstream.
pub type RespBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> RespBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> RespBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}
