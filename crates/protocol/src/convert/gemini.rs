//! Placeholder until the gemini converter lands (same surface as every format module).

use crate::convert::{ConvertError, DecodeStream, EncodeStream};
use crate::ir::{ApiError, ChatRequest, ChatResponse, ErrorKind, StreamEvent};
use crate::sse::SseEvent;

fn todo() -> ConvertError {
    ConvertError::Unsupported("the gemini format".into())
}

pub fn request_to_ir(_body: &[u8]) -> Result<ChatRequest, ConvertError> {
    Err(todo())
}

pub fn request_from_ir(_req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    Err(todo())
}

pub fn response_to_ir(_body: &[u8]) -> Result<ChatResponse, ConvertError> {
    Err(todo())
}

pub fn response_from_ir(_resp: &ChatResponse) -> Vec<u8> {
    Vec::new()
}

pub fn error_body(err: &ApiError) -> Vec<u8> {
    err.message.clone().into_bytes()
}

pub fn parse_error(status: u16, body: &[u8]) -> ApiError {
    ApiError {
        status,
        kind: ErrorKind::from_status(status),
        message: String::from_utf8_lossy(body).into_owned(),
    }
}

#[derive(Debug, Default)]
pub struct StreamDecoder;

impl StreamDecoder {
    pub fn new() -> Self {
        StreamDecoder
    }
}

impl DecodeStream for StreamDecoder {
    fn push(&mut self, _event: &SseEvent, _out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        Err(todo())
    }
    fn finish(&mut self, _out: &mut Vec<StreamEvent>) {}
}

#[derive(Debug, Default)]
pub struct StreamEncoder;

impl EncodeStream for StreamEncoder {
    fn push(&mut self, _event: &StreamEvent, _out: &mut Vec<u8>) {}
    fn finish(&mut self, _out: &mut Vec<u8>) {}
}
