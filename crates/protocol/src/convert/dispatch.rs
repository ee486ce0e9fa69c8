//! The format modules behind one switch, for callers that pick formats at run time (the
//! gateway pairs any ingress with any upstream).

use crate::convert::{ConvertError, DecodeStream, EncodeStream};
use crate::convert::{anthropic, gemini, openai_chat, responses};
use crate::ir::{ApiError, ChatRequest, ChatResponse, Format, StreamEvent, provenance};
use crate::sse::SseEvent;

/// A client's request; its signatures are marked as the client format's (see
/// [`provenance`]).
pub fn request_to_ir(format: Format, body: &[u8]) -> Result<ChatRequest, ConvertError> {
    let mut req = parse_request(format, body)?;
    provenance::tag_request(&mut req, format.as_str());
    Ok(req)
}

fn parse_request(format: Format, body: &[u8]) -> Result<ChatRequest, ConvertError> {
    match format {
        Format::OpenAiChat => openai_chat::request_to_ir(body),
        Format::OpenAiResponses => responses::request_to_ir(body),
        Format::Anthropic => anthropic::request_to_ir(body),
        Format::Gemini => gemini::request_to_ir(body),
    }
}

/// A request for an upstream of `format`; signatures issued by other providers are left out.
pub fn request_from_ir(format: Format, req: &ChatRequest) -> Result<Vec<u8>, ConvertError> {
    let mut req = req.clone();
    provenance::for_upstream(&mut req, format.as_str());
    let req = &req;
    match format {
        Format::OpenAiChat => openai_chat::request_from_ir(req),
        Format::OpenAiResponses => responses::request_from_ir(req),
        Format::Anthropic => anthropic::request_from_ir(req),
        Format::Gemini => gemini::request_from_ir(req),
    }
}

/// An upstream's answer; its signatures are marked as that upstream's.
pub fn response_to_ir(format: Format, body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let mut resp = match format {
        Format::OpenAiChat => openai_chat::response_to_ir(body),
        Format::OpenAiResponses => responses::response_to_ir(body),
        Format::Anthropic => anthropic::response_to_ir(body),
        Format::Gemini => gemini::response_to_ir(body),
    }?;
    provenance::tag_response(&mut resp, format.as_str());
    Ok(resp)
}

pub fn response_from_ir(format: Format, resp: &ChatResponse) -> Vec<u8> {
    match format {
        Format::OpenAiChat => openai_chat::response_from_ir(resp),
        Format::OpenAiResponses => responses::response_from_ir(resp),
        Format::Anthropic => anthropic::response_from_ir(resp),
        Format::Gemini => gemini::response_from_ir(resp),
    }
}

pub fn error_body(format: Format, err: &ApiError) -> Vec<u8> {
    match format {
        Format::OpenAiChat => openai_chat::error_body(err),
        Format::OpenAiResponses => responses::error_body(err),
        Format::Anthropic => anthropic::error_body(err),
        Format::Gemini => gemini::error_body(err),
    }
}

pub fn parse_error(format: Format, status: u16, body: &[u8]) -> ApiError {
    match format {
        Format::OpenAiChat => openai_chat::parse_error(status, body),
        Format::OpenAiResponses => responses::parse_error(status, body),
        Format::Anthropic => anthropic::parse_error(status, body),
        Format::Gemini => gemini::parse_error(status, body),
    }
}

/// A decoder for an upstream speaking `format` (signatures marked as that upstream's).
pub fn decoder(format: Format) -> Box<dyn DecodeStream + Send> {
    let inner: Box<dyn DecodeStream + Send> = match format {
        Format::OpenAiChat => Box::new(openai_chat::StreamDecoder::new()),
        Format::OpenAiResponses => Box::new(responses::StreamDecoder::new()),
        Format::Anthropic => Box::new(anthropic::StreamDecoder::new()),
        Format::Gemini => Box::new(gemini::StreamDecoder::new()),
    };
    tagged(inner, format.as_str())
}

/// Wraps a decoder so the signatures it emits are marked as `issuer`'s.
pub fn tagged(
    inner: Box<dyn DecodeStream + Send>,
    issuer: &'static str,
) -> Box<dyn DecodeStream + Send> {
    Box::new(Tagged { inner, issuer })
}

struct Tagged {
    inner: Box<dyn DecodeStream + Send>,
    issuer: &'static str,
}

impl Tagged {
    fn tag_from(&self, out: &mut [StreamEvent]) {
        for ev in out {
            provenance::tag_event(ev, self.issuer);
        }
    }
}

impl DecodeStream for Tagged {
    fn push(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), ConvertError> {
        let from = out.len();
        let pushed = self.inner.push(event, out);
        self.tag_from(&mut out[from..]);
        pushed
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let from = out.len();
        self.inner.finish(out);
        self.tag_from(&mut out[from..]);
    }
}

/// What a client-side encoder needs to know up front.
#[derive(Debug, Clone)]
pub struct EncodeCtx {
    /// Response id (used when the upstream stream gives none).
    pub id: String,
    /// Model name the client asked for.
    pub model: String,
    /// Unix seconds.
    pub created: u64,
    /// OpenAI clients: send the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// Gemini clients: a JSON array stream instead of SSE (`streamGenerateContent` without
    /// `alt=sse`).
    pub json_array: bool,
}

/// An encoder producing `format` for the client.
pub fn encoder(format: Format, ctx: &EncodeCtx) -> Box<dyn EncodeStream + Send> {
    match format {
        Format::OpenAiChat => Box::new(openai_chat::StreamEncoder::new(
            ctx.id.clone(),
            ctx.model.clone(),
            ctx.created,
            ctx.include_usage,
        )),
        Format::OpenAiResponses => Box::new(responses::StreamEncoder::new(
            ctx.id.clone(),
            ctx.model.clone(),
            ctx.created,
        )),
        Format::Anthropic => Box::new(anthropic::StreamEncoder::new()),
        Format::Gemini if ctx.json_array => Box::new(gemini::StreamEncoder::json_array()),
        Format::Gemini => Box::new(gemini::StreamEncoder::new()),
    }
}
