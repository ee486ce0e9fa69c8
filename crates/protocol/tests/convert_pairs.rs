//! Every ingress × upstream pair, through the IR: requests, whole responses and streams.
//!
//! Two kinds of checks:
//! - invariants that must hold for any pair (tool calls keep their ids, names and arguments;
//!   system prompts, text and finish reasons survive; usage adds up), asserted in code;
//! - golden files under `tests/fixtures/pairs/` holding each pair's exact output, so any change
//!   of behaviour shows up in review. `UPDATE_GOLDEN=1 cargo test -p protocol --test
//!   convert_pairs` rewrites them (then read the diff).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use protocol::convert::dispatch::{self, EncodeCtx};
use protocol::convert::{DecodeStream, bedrock, cloudflare, cohere};
use protocol::ir::{ChatRequest, ChatResponse, Format, Part, Role, StreamEvent};
use protocol::sse::SseDecoder;

const CLIENTS: [Format; 4] = [
    Format::OpenAiChat,
    Format::OpenAiResponses,
    Format::Anthropic,
    Format::Gemini,
];

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn name(f: Format) -> &'static str {
    f.as_str()
}

/// Compares `actual` with the golden file, or writes it when `UPDATE_GOLDEN` is set.
fn golden(file: &str, actual: &str) {
    let path = dir().join("pairs").join(file);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{file}: {e} (run with UPDATE_GOLDEN=1 to create it)"));
    assert_eq!(actual, want, "golden file {file} differs");
}

fn pretty(json: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(json)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(json)));
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

/// Tool calls of a request or response, in order: (id, name, arguments as JSON value).
fn calls(parts: &[Part]) -> Vec<(String, String, serde_json::Value)> {
    parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
                ..
            } => Some((
                id.clone(),
                name.clone(),
                serde_json::from_str(if arguments.is_empty() {
                    "{}"
                } else {
                    arguments
                })
                .unwrap(),
            )),
            _ => None,
        })
        .collect()
}

fn request_calls(req: &ChatRequest) -> Vec<(String, String, serde_json::Value)> {
    req.messages
        .iter()
        .flat_map(|m| calls(&m.content))
        .collect()
}

fn result_ids(req: &ChatRequest) -> Vec<String> {
    req.messages
        .iter()
        .flat_map(|m| m.content.iter())
        .filter_map(|p| match p {
            Part::ToolResult { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .collect()
}

fn system_text(req: &ChatRequest) -> String {
    let mut text = protocol::ir::joined_text(&req.system);
    for m in &req.messages {
        if m.role == Role::System {
            text.push_str(&m.joined_text());
        }
    }
    text
}

/// Requests from each client, converted for every other format.
#[test]
fn requests_convert_between_every_pair() {
    let inputs = [
        (Format::OpenAiChat, "openai/request_rich.json"),
        (Format::Anthropic, "anthropic/claude_code_request.json"),
        (Format::Anthropic, "anthropic/request_roundtrip.json"),
        (Format::Gemini, "gemini/request_ingress.json"),
        (Format::OpenAiResponses, "responses/codex_request.json"),
    ];
    for (client, file) in inputs {
        let mut ir = dispatch::request_to_ir(client, &fixture(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        if ir.model.is_empty() {
            ir.model = "gemini-2.5-flash".into();
        }
        let stem = file.replace('/', "_").replace(".json", "");
        for target in CLIENTS.into_iter().filter(|t| *t != client) {
            let label = format!("{stem} -> {}", name(target));
            let out = match dispatch::request_from_ir(target, &ir) {
                Ok(b) => b,
                Err(e) => {
                    golden(
                        &format!("req__{stem}__{}.json", name(target)),
                        &format!("{{\"unsupported\": {:?}}}\n", e.to_string()),
                    );
                    continue;
                }
            };
            golden(
                &format!("req__{stem}__{}.json", name(target)),
                &pretty(&out),
            );
            // Read back by the target's own parser: nothing essential was lost.
            let mut back = dispatch::request_to_ir(target, &out)
                .unwrap_or_else(|e| panic!("{label}: the output does not parse: {e}"));
            if back.model.is_empty() {
                back.model.clone_from(&ir.model);
            }
            let (a, b) = (request_calls(&ir), request_calls(&back));
            assert_eq!(a.len(), b.len(), "{label}: tool calls");
            for ((_, n1, args1), (_, n2, args2)) in a.iter().zip(&b) {
                assert_eq!(n1, n2, "{label}: tool names");
                assert_eq!(args1, args2, "{label}: tool arguments");
            }
            // Every tool result still answers a call of the conversation.
            let ids: Vec<String> = b.iter().map(|c| c.0.clone()).collect();
            for id in result_ids(&back) {
                assert!(ids.contains(&id), "{label}: result for unknown call {id}");
            }
            // System text survives: as system, or (formats without mid-conversation system
            // messages) folded into the conversation where it stood.
            let everything = system_text(&back)
                + &back
                    .messages
                    .iter()
                    .map(|m| m.joined_text())
                    .collect::<String>();
            for piece in ir.system.iter().chain(
                ir.messages
                    .iter()
                    .filter(|m| m.role == Role::System)
                    .flat_map(|m| &m.content),
            ) {
                if let Part::Text { text, .. } = piece {
                    assert!(
                        everything.contains(text.trim()),
                        "{label}: system text {text:?} lost"
                    );
                }
            }
            assert_eq!(ir.tools.len(), back.tools.len(), "{label}: tools");
        }
        // Upstream-only formats (the gateway leaves out foreign signatures first, as
        // `dispatch` does for the others).
        let for_upstream = |issuer: &str| {
            let mut r = ir.clone();
            protocol::ir::provenance::for_upstream(&mut r, issuer);
            r
        };
        for (target, out) in [
            (
                "bedrock",
                bedrock::request_from_ir(&for_upstream("bedrock")),
            ),
            ("cohere", cohere::request_from_ir(&for_upstream("cohere"))),
            (
                "cloudflare",
                cloudflare::request_from_ir(&for_upstream("cloudflare")),
            ),
        ] {
            let text = match out {
                Ok(b) => pretty(&b),
                Err(e) => format!("{{\"unsupported\": {:?}}}\n", e.to_string()),
            };
            golden(&format!("req__{stem}__{target}.json"), &text);
        }
    }
}

fn response_inputs() -> Vec<(&'static str, ChatResponse)> {
    let api = |f: Format, file: &str| dispatch::response_to_ir(f, &fixture(file)).unwrap();
    vec![
        (
            "openai",
            api(Format::OpenAiChat, "openai/response_reasoning_tools.json"),
        ),
        (
            "anthropic",
            api(Format::Anthropic, "anthropic/response_thinking_tools.json"),
        ),
        (
            "gemini",
            api(Format::Gemini, "gemini/response_thought_tools.json"),
        ),
        (
            "responses",
            api(Format::OpenAiResponses, "responses/response.json"),
        ),
        (
            "bedrock",
            bedrock::response_to_ir(&fixture("bedrock/converse_response_tool_use.json")).unwrap(),
        ),
        (
            "cohere",
            cohere::response_to_ir(&fixture("cohere/response_tool_calls.json")).unwrap(),
        ),
        (
            "cloudflare",
            cloudflare::response_to_ir(&fixture("cloudflare/response_openai_tools.json")).unwrap(),
        ),
    ]
}

/// Whole answers from each upstream, rendered for every client.
#[test]
fn responses_convert_for_every_client() {
    for (upstream, mut resp) in response_inputs() {
        if resp.created == 0 {
            resp.created = 1_700_000_000;
        }
        // Formats without response ids get a random one from the encoder: fix it here.
        if resp.id.is_empty() {
            resp.id = format!("{upstream}-response-1");
        }
        for client in CLIENTS {
            let label = format!("{upstream} -> {}", name(client));
            let out = dispatch::response_from_ir(client, &resp);
            golden(
                &format!("resp__{upstream}__{}.json", name(client)),
                &pretty(&out),
            );
            let back = dispatch::response_to_ir(client, &out)
                .unwrap_or_else(|e| panic!("{label}: the output does not parse: {e}"));
            let (a, b) = (calls(&resp.content), calls(&back.content));
            assert_eq!(a.len(), b.len(), "{label}: tool calls");
            for ((id1, n1, args1), (id2, n2, args2)) in a.iter().zip(&b) {
                assert_eq!(n1, n2, "{label}: tool names");
                assert_eq!(args1, args2, "{label}: tool arguments");
                // Ids survive wherever the client format carries them.
                if client != Format::Gemini {
                    assert_eq!(id1, id2, "{label}: tool ids");
                }
            }
            assert_eq!(
                protocol::ir::joined_text(&resp.content),
                protocol::ir::joined_text(&back.content),
                "{label}: text"
            );
            assert_eq!(
                resp.finish_reason, back.finish_reason,
                "{label}: finish reason"
            );
            assert_eq!(
                resp.usage.total(),
                back.usage.total(),
                "{label}: total tokens"
            );
        }
    }
}

/// Upstream streams decoded to IR events.
fn stream_inputs() -> Vec<(&'static str, Vec<StreamEvent>)> {
    let sse = |decoder: &mut dyn DecodeStream, file: &str| {
        let mut sse = SseDecoder::new(1 << 20);
        sse.push(&fixture(file)).unwrap();
        let mut out = Vec::new();
        while let Some(ev) = sse.next_event() {
            decoder.push(&ev, &mut out).unwrap();
        }
        if let Some(ev) = sse.finish() {
            decoder.push(&ev, &mut out).unwrap();
        }
        decoder.finish(&mut out);
        out
    };
    let mut bedrock_events = Vec::new();
    let mut d = bedrock::StreamDecoder::new();
    d.push_bytes(
        &fixture("bedrock/converse_stream_tool_use.bin"),
        &mut bedrock_events,
    )
    .unwrap();
    d.finish(&mut bedrock_events);
    vec![
        (
            "openai",
            sse(
                &mut *dispatch::decoder(Format::OpenAiChat),
                "openai/stream_parallel_tools.sse",
            ),
        ),
        (
            "anthropic",
            sse(
                &mut *dispatch::decoder(Format::Anthropic),
                "anthropic/stream_thinking_tools.sse",
            ),
        ),
        (
            "gemini",
            sse(
                &mut *dispatch::decoder(Format::Gemini),
                "gemini/stream_upstream.sse",
            ),
        ),
        (
            "responses",
            sse(
                &mut *dispatch::decoder(Format::OpenAiResponses),
                "responses/stream_reasoning_text_tools.sse",
            ),
        ),
        ("bedrock", bedrock_events),
        (
            "cohere",
            sse(
                &mut cohere::StreamDecoder::new(),
                "cohere/stream_tool_calls.sse",
            ),
        ),
        (
            "cloudflare",
            sse(
                &mut cloudflare::StreamDecoder::new(),
                "cloudflare/stream_openai.sse",
            ),
        ),
    ]
}

/// Tool calls assembled from a stream's events: (name, arguments).
fn streamed_calls(events: &[StreamEvent]) -> Vec<(String, serde_json::Value)> {
    let mut calls: Vec<(u32, String, String)> = Vec::new();
    for ev in events {
        match ev {
            StreamEvent::ToolCallStart { index, name, .. } => {
                calls.push((*index, name.clone(), String::new()));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(c) = calls.iter_mut().find(|c| c.0 == *index) {
                    c.2.push_str(arguments);
                }
            }
            _ => {}
        }
    }
    calls
        .into_iter()
        .map(|(_, n, a)| {
            let a = if a.is_empty() { "{}".to_string() } else { a };
            (n, serde_json::from_str(&a).unwrap())
        })
        .collect()
}

fn streamed_text(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// Upstream streams re-encoded for every client, then decoded again by that client's format.
#[test]
fn streams_transcode_for_every_client() {
    for (upstream, mut events) in stream_inputs() {
        if let Some(StreamEvent::Start { id, .. }) = events.first_mut()
            && id.is_empty()
        {
            *id = format!("{upstream}-stream-1");
        }
        for client in CLIENTS {
            let label = format!("{upstream} stream -> {}", name(client));
            let ctx = EncodeCtx {
                id: "id-1".into(),
                model: "alias".into(),
                created: 1_700_000_000,
                include_usage: true,
                json_array: false,
            };
            let mut enc = dispatch::encoder(client, &ctx);
            let mut out = Vec::new();
            for ev in &events {
                enc.push(ev, &mut out);
            }
            enc.finish(&mut out);
            golden(
                &format!("stream__{upstream}__{}.sse", name(client)),
                &String::from_utf8(out.clone()).unwrap(),
            );
            // The client's own decoder reads back the same text and tool calls.
            let mut dec = dispatch::decoder(client);
            let mut sse = SseDecoder::new(1 << 20);
            sse.push(&out).unwrap();
            let mut back = Vec::new();
            while let Some(ev) = sse.next_event() {
                dec.push(&ev, &mut back)
                    .unwrap_or_else(|e| panic!("{label}: {e}"));
            }
            dec.finish(&mut back);
            assert_eq!(
                streamed_text(&events),
                streamed_text(&back),
                "{label}: text"
            );
            assert_eq!(
                streamed_calls(&events),
                streamed_calls(&back),
                "{label}: tool calls"
            );
            let finish = |evs: &[StreamEvent]| {
                evs.iter().find_map(|e| match e {
                    StreamEvent::Finish { reason, .. } => Some(*reason),
                    _ => None,
                })
            };
            assert_eq!(finish(&events), finish(&back), "{label}: finish reason");
        }
    }
}
