//! Answers from an upstream whose wire format differs from the client's: whole bodies are
//! converted through the IR once; streams event by event, so the client sees each delta as
//! soon as the upstream sends it.

use protocol::convert::dispatch::{self, EncodeCtx};
use protocol::convert::{
    ConvertError, DecodeStream, EncodeStream, bedrock, cloudflare, cohere, openai_chat,
};
use protocol::ir::{ApiError, ChatResponse, ErrorKind, Format, StreamEvent, Usage};
use protocol::sse::SseDecoder;

use crate::providers::upstream::Wire;

/// Largest single upstream SSE event accepted while transcoding.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Which formats a conversion joins, and what the client encoder needs.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub upstream: Wire,
    pub client: Format,
    pub ctx: EncodeCtx,
}

/// Converts a complete upstream body into the client's format; returns the body and the
/// usage it reported.
pub fn convert_body(conv: &Conversion, body: &[u8]) -> Result<(Vec<u8>, Usage), String> {
    let mut resp = response_to_ir(conv.upstream, body)
        .map_err(|e| format!("cannot read the upstream answer: {e}"))?;
    if resp.created == 0 {
        resp.created = conv.ctx.created;
    }
    if resp.id.is_empty() {
        resp.id = conv.ctx.id.clone();
    }
    Ok((dispatch::response_from_ir(conv.client, &resp), resp.usage))
}

fn response_to_ir(wire: Wire, body: &[u8]) -> Result<ChatResponse, ConvertError> {
    let mut resp = match wire {
        Wire::Api(f) => return dispatch::response_to_ir(f, body),
        Wire::Bedrock => bedrock::response_to_ir(body),
        Wire::Cohere => cohere::response_to_ir(body),
        Wire::Cloudflare => cloudflare::response_to_ir(body),
        Wire::Databricks => openai_chat::response_to_ir(body),
    }?;
    protocol::ir::provenance::tag_response(&mut resp, wire.issuer());
    Ok(resp)
}

/// How upstream stream bytes become canonical events.
enum Input {
    /// Server-sent events, decoded by the format's decoder.
    Sse {
        sse: SseDecoder,
        decode: Box<dyn DecodeStream + Send>,
    },
    /// Bedrock's binary event stream.
    Bedrock(bedrock::StreamDecoder),
}

impl Input {
    fn new(wire: Wire) -> Self {
        let sse = |decode: Box<dyn DecodeStream + Send>| Input::Sse {
            sse: SseDecoder::new(MAX_EVENT_BYTES),
            decode,
        };
        match wire {
            Wire::Api(f) => sse(dispatch::decoder(f)),
            Wire::Cohere => sse(dispatch::tagged(
                Box::new(cohere::StreamDecoder::new()),
                wire.issuer(),
            )),
            Wire::Cloudflare => sse(dispatch::tagged(
                Box::new(cloudflare::StreamDecoder::new()),
                wire.issuer(),
            )),
            Wire::Databricks => sse(dispatch::tagged(
                Box::new(openai_chat::StreamDecoder::new()),
                wire.issuer(),
            )),
            Wire::Bedrock => Input::Bedrock(bedrock::StreamDecoder::new()),
        }
    }

    fn push(&mut self, data: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self {
            Input::Sse { sse, decode } => {
                sse.push(data)
                    .map_err(|e| format!("upstream stream is malformed: {e}"))?;
                while let Some(ev) = sse.next_event() {
                    decode
                        .push(&ev, out)
                        .map_err(|e| format!("cannot read the upstream stream: {e}"))?;
                }
                Ok(())
            }
            Input::Bedrock(d) => {
                let from = out.len();
                let pushed = d
                    .push_bytes(data, out)
                    .map_err(|e| format!("cannot read the upstream stream: {e}"));
                for ev in &mut out[from..] {
                    protocol::ir::provenance::tag_event(ev, Wire::Bedrock.issuer());
                }
                pushed
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), String> {
        match self {
            Input::Sse { sse, decode } => {
                if let Some(ev) = sse.finish() {
                    decode
                        .push(&ev, out)
                        .map_err(|e| format!("cannot read the upstream stream: {e}"))?;
                }
                decode.finish(out);
            }
            Input::Bedrock(d) => d.finish(out),
        }
        Ok(())
    }
}

/// Upstream stream bytes in, client stream bytes out.
pub struct StreamTranscoder {
    input: Input,
    encode: Box<dyn EncodeStream + Send>,
    events: Vec<StreamEvent>,
    usage: Option<Usage>,
    /// Set once the stream has been closed (error or finish): later input is ignored.
    closed: bool,
}

impl StreamTranscoder {
    pub fn new(conv: &Conversion) -> Self {
        StreamTranscoder {
            input: Input::new(conv.upstream),
            encode: dispatch::encoder(conv.client, &conv.ctx),
            events: Vec::new(),
            usage: None,
            closed: false,
        }
    }

    /// Feeds upstream bytes; appends whatever the client should receive now.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let pushed = self.input.push(data, &mut self.events);
        // Events decoded before a failure still reach the client, then the error.
        self.flush(out);
        if let Err(message) = pushed {
            self.fail(message, out);
        }
    }

    /// The upstream stream ended; appends the closing frames.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        let finished = self.input.finish(&mut self.events);
        self.flush(out);
        if let Err(message) = finished {
            self.fail(message, out);
            return;
        }
        self.encode.finish(out);
        self.closed = true;
    }

    /// Ends the client stream with an error event (the upstream broke or went silent).
    pub fn fail(&mut self, message: String, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.events.clear();
        let err = ApiError {
            status: 502,
            kind: ErrorKind::Api,
            message,
        };
        // An error event is the stream's last word in every format.
        self.encode.push(&StreamEvent::Error(err), out);
        self.closed = true;
    }

    /// Usage the upstream reported so far (the last, cumulative report).
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        for ev in self.events.drain(..) {
            if let StreamEvent::Usage(u) = &ev {
                self.usage.get_or_insert_with(Usage::default).merge_max(u);
            }
            self.encode.push(&ev, out);
        }
    }
}
