//! Answers from an upstream whose wire format differs from the client's: whole bodies are
//! converted through the IR once; streams event by event, so the client sees each delta as
//! soon as the upstream sends it.

use protocol::convert::dispatch::{self, EncodeCtx};
use protocol::convert::{DecodeStream, EncodeStream};
use protocol::ir::{ApiError, ErrorKind, Format, StreamEvent, Usage};
use protocol::sse::SseDecoder;

/// Largest single upstream SSE event accepted while transcoding.
const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

/// Which formats a conversion joins, and what the client encoder needs.
#[derive(Debug, Clone)]
pub struct Conversion {
    pub upstream: Format,
    pub client: Format,
    pub ctx: EncodeCtx,
}

/// Converts a complete upstream body into the client's format; returns the body and the
/// usage it reported.
pub fn convert_body(conv: &Conversion, body: &[u8]) -> Result<(Vec<u8>, Usage), String> {
    let mut resp = dispatch::response_to_ir(conv.upstream, body)
        .map_err(|e| format!("cannot read the upstream answer: {e}"))?;
    if resp.created == 0 {
        resp.created = conv.ctx.created;
    }
    if resp.id.is_empty() {
        resp.id = conv.ctx.id.clone();
    }
    Ok((dispatch::response_from_ir(conv.client, &resp), resp.usage))
}

/// Upstream SSE bytes in, client stream bytes out.
pub struct StreamTranscoder {
    sse: SseDecoder,
    decode: Box<dyn DecodeStream + Send>,
    encode: Box<dyn EncodeStream + Send>,
    events: Vec<StreamEvent>,
    usage: Option<Usage>,
    /// Set once the stream has been closed (error or finish): later input is ignored.
    closed: bool,
}

impl StreamTranscoder {
    pub fn new(conv: &Conversion) -> Self {
        StreamTranscoder {
            sse: SseDecoder::new(MAX_EVENT_BYTES),
            decode: dispatch::decoder(conv.upstream),
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
        if let Err(e) = self.sse.push(data) {
            self.fail(format!("upstream stream is malformed: {e}"), out);
            return;
        }
        while let Some(ev) = self.sse.next_event() {
            if let Err(e) = self.decode.push(&ev, &mut self.events) {
                self.fail(format!("cannot read the upstream stream: {e}"), out);
                return;
            }
            self.flush(out);
        }
    }

    /// The upstream stream ended; appends the closing frames.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if let Some(ev) = self.sse.finish()
            && let Err(e) = self.decode.push(&ev, &mut self.events)
        {
            self.fail(format!("cannot read the upstream stream: {e}"), out);
            return;
        }
        self.decode.finish(&mut self.events);
        self.flush(out);
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
