//! Std-only micro-benchmarks of what the relay does with every event of a passthrough stream
//! (`cargo bench -p llmux --bench stream_events`): cut the event out, count its generated text
//! (for an estimate when no usage comes) and look for usage. Prints nanoseconds per event.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

#[path = "../../protocol/benches/common/timing.rs"]
mod timing;
use timing::time;

use llmux::routing::answer::{
    EventReader, generated_chars, stream_event, usage_in_bytes, whole_answer,
};
use protocol::ir::Format;
use protocol::sse::{SseFramer, frame_data, frame_view};

/// A content chunk as OpenAI sends it when usage was asked for (`"usage":null` on every chunk).
const TEXT_EVENT: &[u8] = b"data: {\"id\":\"chatcmpl-PQHy6WC8GdKS1OPXZt8Ot2ON1yEHV\",\"object\":\"chat.completion.chunk\",\"created\":1796139817,\"model\":\"gpt-4o-mini\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" hello\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n";
const USAGE_EVENT: &[u8] = b"data: {\"id\":\"chatcmpl-PQHy6WC8GdKS1OPXZt8Ot2ON1yEHV\",\"object\":\"chat.completion.chunk\",\"created\":1796139817,\"model\":\"gpt-4o-mini\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_mock\",\"choices\":[],\"usage\":{\"prompt_tokens\":14,\"completion_tokens\":9,\"total_tokens\":23,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}}}\n\n";

/// A whole (non-stream) chat answer as the mock sends it.
const WHOLE_ANSWER: &[u8] = br#"{"id":"chatcmpl-3WXokxiOz6MfQnlTZsbEeFsUWtQCU","object":"chat.completion","created":1796148087,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"You said: Say hello in one short sentence.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":8,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_mock"}"#;

fn main() {
    let budget = Duration::from_millis(300);
    let data = frame_data(TEXT_EVENT).unwrap().into_owned();
    let usage = frame_data(USAGE_EVENT).unwrap().into_owned();
    let stream = bytes::Bytes::from([TEXT_EVENT; 10].concat());
    let mut reader = EventReader::default();
    reader.read(&data, true);
    let rows = [
        (
            "frame_data (text event)",
            time(budget, || {
                frame_data(black_box(TEXT_EVENT)).map(|d| d.len())
            }),
        ),
        (
            "generated_chars (text event)",
            time(budget, || generated_chars(black_box(&data))),
        ),
        (
            "usage_in_bytes (text event, usage null)",
            time(budget, || usage_in_bytes(black_box(&data))),
        ),
        (
            "usage_in_bytes (usage event)",
            time(budget, || usage_in_bytes(black_box(&usage))),
        ),
        (
            "EventReader::read (text event, template learned)",
            // What the relay does for each text event after the first: the reader has learned
            // the chunk from its predecessors.
            time(budget, || reader.read(black_box(&data), true)),
        ),
        (
            "frame_view + stream_event (text event, first content)",
            time(budget, || {
                let view = frame_view(black_box(TEXT_EVENT)).unwrap();
                let data = std::str::from_utf8(view.data.as_deref().unwrap()).unwrap();
                stream_event(Format::OpenAiChat, None, data, &[])
            }),
        ),
        (
            "whole_answer (non-stream chat answer)",
            time(budget, || {
                whole_answer(Format::OpenAiChat, black_box(WHOLE_ANSWER), &[])
            }),
        ),
        (
            "SseFramer push_bytes + next_frame (10 events, per event)",
            time(budget, || {
                let mut f = SseFramer::new(1 << 20);
                f.push_bytes(black_box(stream.clone())).unwrap();
                let mut n = 0;
                while let Some(frame) = f.next_frame() {
                    n += frame.len();
                }
                n
            }) / 10.0,
        ),
    ];
    for (name, ns) in rows {
        println!("{name:<52} {ns:>8.1} ns");
    }
}
