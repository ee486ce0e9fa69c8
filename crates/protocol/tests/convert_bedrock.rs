#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use protocol::convert::ConvertError;
use protocol::convert::bedrock::{
    ANTHROPIC_BEDROCK_VERSION, InvokeStreamItem, StreamDecoder, anthropic_invoke_body,
    anthropic_invoke_chunk, anthropic_invoke_chunk_payload, anthropic_invoke_event,
    invoke_body_from_ir, parse_error, parse_error_typed, request_from_ir, response_to_ir,
};
use protocol::eventstream::{Decoder, Message as EsMessage};
use protocol::ir::{
    ApiError, ChatRequest, ErrorKind, FinishReason, MediaSource, Message, Part, Reasoning,
    ResponseFormat, Role, StreamEvent, Tool, ToolChoice, Usage,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/bedrock/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

fn msg(role: Role, content: Vec<Part>) -> Message {
    Message {
        role,
        content,
        name: None,
    }
}

fn call(id: &str, city: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: "get_weather".into(),
        arguments: format!("{{\"city\":\"{city}\"}}"),
        signature: Some("gemini-sig-dropped".into()),
    }
}

fn result(id: &str, text: &str, is_error: bool) -> Part {
    Part::ToolResult {
        call_id: id.into(),
        name: None,
        content: vec![Part::text(text)],
        is_error,
        cache_control: None,
    }
}

fn weather_tool() -> Tool {
    Tool {
        name: "get_weather".into(),
        description: Some("Current weather for a city".into()),
        parameters: json!({"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}),
        strict: None,
        cache_control: Some(json!({"type":"ephemeral"})),
    }
}

fn full_request() -> ChatRequest {
    ChatRequest {
        model: "anthropic.claude-sonnet-4-20250514-v1:0".into(),
        system: vec![Part::Text {
            text: "You are terse.".into(),
            cache_control: Some(json!({"type":"ephemeral","ttl":"1h"})),
        }],
        messages: vec![
            msg(
                Role::User,
                vec![
                    Part::text("What's the weather in Paris and Berlin?"),
                    Part::Image {
                        source: MediaSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                        detail: Some("high".into()),
                        cache_control: None,
                    },
                ],
            ),
            // Consecutive user messages merge into one Bedrock message.
            msg(Role::User, vec![Part::text("Also check the time.")]),
            msg(
                Role::Assistant,
                vec![
                    Part::Reasoning {
                        text: "Two cities; call both.".into(),
                        signature: Some("sig-abc".into()),
                    },
                    Part::text("Checking both."),
                    call("tooluse_paris", "Paris"),
                    call("tooluse_berlin", "Berlin"),
                ],
            ),
            msg(
                Role::Tool,
                vec![
                    result("tooluse_paris", "18C sunny", false),
                    result("tooluse_berlin", "upstream timeout", true),
                ],
            ),
            msg(Role::User, vec![Part::text("Summarize.")]),
            msg(
                Role::Assistant,
                vec![
                    Part::RedactedReasoning {
                        data: "RW5jcnlwdGVkIHRob3VnaHRz".into(),
                    },
                    Part::text("Paris 18C; Berlin unknown."),
                    // Empty text is skipped (Bedrock rejects blank blocks).
                    Part::text(""),
                ],
            ),
            msg(Role::System, vec![Part::text("Answer in French.")]),
            msg(
                Role::User,
                vec![
                    Part::File {
                        source: MediaSource::Base64 {
                            media_type: "application/pdf".into(),
                            data: "JVBERi0xLjQ=".into(),
                        },
                        filename: Some("Q3 report.pdf".into()),
                        cache_control: Some(json!({"type":"ephemeral"})),
                    },
                    Part::text("And this?"),
                ],
            ),
        ],
        tools: vec![
            weather_tool(),
            Tool {
                name: "get_time".into(),
                description: None,
                parameters: json!({"type":"object"}),
                strict: Some(true),
                cache_control: None,
            },
        ],
        tool_choice: Some(ToolChoice::Auto),
        max_tokens: Some(4096),
        temperature: Some(0.5),
        top_p: Some(0.9),
        top_k: Some(40),
        stop: vec!["END".into()],
        seed: Some(7),
        user: Some("user-1".into()),
        reasoning: Some(Reasoning {
            budget_tokens: Some(2048),
            ..Reasoning::default()
        }),
        stream: true,
        ..ChatRequest::default()
    }
}

#[test]
fn full_request_matches_the_converse_fixture() {
    let body = request_from_ir(&full_request()).unwrap();
    let got: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(got, json_fixture("converse_request.json"));
}

fn simple(tool_choice: Option<ToolChoice>, messages: Vec<Message>) -> ChatRequest {
    ChatRequest {
        messages,
        tools: vec![Tool {
            cache_control: None,
            ..weather_tool()
        }],
        tool_choice,
        ..ChatRequest::default()
    }
}

fn body_of(req: &ChatRequest) -> Value {
    serde_json::from_slice(&request_from_ir(req).unwrap()).unwrap()
}

#[test]
fn tool_choice_maps_to_auto_any_tool_or_no_tool_config() {
    let user = || vec![msg(Role::User, vec![Part::text("hi")])];
    let choice = |c| body_of(&simple(Some(c), user()))["toolConfig"]["toolChoice"].clone();
    assert_eq!(choice(ToolChoice::Auto), json!({"auto":{}}));
    assert_eq!(choice(ToolChoice::Required), json!({"any":{}}));
    assert_eq!(
        choice(ToolChoice::Named("get_weather".into())),
        json!({"tool":{"name":"get_weather"}})
    );
    // No choice: tools without toolChoice.
    let none_given = body_of(&simple(None, user()));
    assert!(none_given["toolConfig"].get("toolChoice").is_none());
    assert_eq!(
        none_given["toolConfig"]["tools"].as_array().unwrap().len(),
        1
    );
    // `none` without tool history: no toolConfig at all.
    assert!(
        body_of(&simple(Some(ToolChoice::None), user()))
            .get("toolConfig")
            .is_none()
    );
    // `none` with tool history cannot be expressed.
    let history = vec![
        msg(Role::User, vec![Part::text("hi")]),
        msg(Role::Assistant, vec![call("t1", "Paris")]),
        msg(Role::Tool, vec![result("t1", "sunny", false)]),
    ];
    assert!(matches!(
        request_from_ir(&simple(Some(ToolChoice::None), history)),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn media_urls_must_be_fetched_first_but_s3_is_passed_through() {
    let image = |url: &str| ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![Part::Image {
                source: MediaSource::from_url(url),
                detail: None,
                cache_control: None,
            }],
        )],
        ..ChatRequest::default()
    };
    let err = request_from_ir(&image("https://example.com/cat.png")).unwrap_err();
    assert!(
        matches!(&err, ConvertError::Unsupported(what) if what.contains("image URLs")),
        "{err}"
    );
    let s3 = body_of(&image("s3://bucket/cats/cat.JPG"));
    assert_eq!(
        s3["messages"][0]["content"][0],
        json!({"image":{"format":"jpeg","source":{"s3Location":{"uri":"s3://bucket/cats/cat.JPG"}}}})
    );
    assert!(matches!(
        request_from_ir(&image("data:image/bmp;base64,Qk0=")),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn audio_documents_and_options_map_to_converse_fields() {
    let req = ChatRequest {
        messages: vec![msg(
            Role::User,
            vec![
                Part::Audio {
                    data: "UklGRg==".into(),
                    format: "wav".into(),
                },
                Part::File {
                    source: MediaSource::Base64 {
                        media_type: "text/plain".into(),
                        data: "aGk=".into(),
                    },
                    filename: None,
                    cache_control: None,
                },
                Part::File {
                    source: MediaSource::Base64 {
                        media_type: "text/csv".into(),
                        data: "YSxi".into(),
                    },
                    filename: None,
                    cache_control: None,
                },
            ],
        )],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "weather".into(),
            schema: json!({"type":"object","properties":{"t":{"type":"number"}}}),
            strict: Some(true),
        }),
        reasoning: Some(Reasoning {
            effort: Some("high".into()),
            ..Reasoning::default()
        }),
        max_tokens: Some(8000),
        ..ChatRequest::default()
    };
    let body = body_of(&req);
    let content = &body["messages"][0]["content"];
    assert_eq!(
        content[0],
        json!({"audio":{"format":"wav","source":{"bytes":"UklGRg=="}}})
    );
    // Unnamed documents get distinct names.
    assert_eq!(content[1]["document"]["name"], "document");
    assert_eq!(content[1]["document"]["format"], "txt");
    assert_eq!(content[2]["document"]["name"], "document (2)");
    assert_eq!(content[2]["document"]["format"], "csv");
    assert_eq!(
        body["outputConfig"],
        json!({"textFormat":{"type":"json_schema","structure":{"jsonSchema":{
            "schema":"{\"properties\":{\"t\":{\"type\":\"number\"}},\"type\":\"object\"}",
            "name":"weather"}}}})
    );
    // An effort level becomes a budget below max_tokens.
    assert_eq!(
        body["additionalModelRequestFields"]["thinking"],
        json!({"type":"enabled","budget_tokens":7999})
    );

    let off = ChatRequest {
        reasoning: Some(Reasoning {
            enabled: Some(false),
            ..Reasoning::default()
        }),
        response_format: Some(ResponseFormat::JsonObject),
        n: Some(1),
        ..ChatRequest::default()
    };
    let body = body_of(&off);
    assert_eq!(
        body["additionalModelRequestFields"]["thinking"],
        json!({"type":"disabled"})
    );
    assert_eq!(
        body["outputConfig"]["textFormat"]["structure"]["jsonSchema"]["schema"],
        "{\"type\":\"object\"}"
    );
    assert!(matches!(
        request_from_ir(&ChatRequest {
            n: Some(2),
            ..ChatRequest::default()
        }),
        Err(ConvertError::Unsupported(_))
    ));
}

#[test]
fn invalid_tool_arguments_are_rejected_and_empty_ones_are_an_object() {
    let with_args = |args: &str| ChatRequest {
        messages: vec![msg(
            Role::Assistant,
            vec![Part::ToolCall {
                id: "t".into(),
                name: "f".into(),
                arguments: args.into(),
                signature: None,
            }],
        )],
        ..ChatRequest::default()
    };
    assert_eq!(
        body_of(&with_args(""))["messages"][0]["content"][0]["toolUse"]["input"],
        json!({})
    );
    assert!(matches!(
        request_from_ir(&with_args("{not json")),
        Err(ConvertError::Invalid { .. })
    ));
}

#[test]
fn tool_use_response_keeps_parallel_calls_reasoning_and_cache_usage() {
    let resp = response_to_ir(&fixture("converse_response_tool_use.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        resp.content,
        vec![
            Part::Reasoning {
                text: "The user wants two cities, so two calls.".into(),
                signature: Some("EqoBCkgIARABGAIiQGx3c2lnbmF0dXJl".into()),
            },
            Part::text("I'll check both cities."),
            Part::ToolCall {
                id: "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
                signature: None,
            },
            Part::ToolCall {
                id: "tooluse_Zw3P0vHLQKmAf0P3bDeXjA".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Berlin\",\"unit\":\"celsius\"}".into(),
                signature: None,
            },
        ]
    );
    // IR input counts include cache reads and writes; total is unchanged.
    assert_eq!(
        resp.usage,
        Usage {
            input_tokens: 2412,
            output_tokens: 96,
            cache_read_tokens: 1800,
            cache_write_tokens: 200,
            reasoning_tokens: 0,
        }
    );
    assert_eq!(resp.usage.total(), 2508);
    assert!(resp.id.is_empty() && resp.model.is_empty());
}

#[test]
fn text_response_with_redacted_reasoning_and_length_stop() {
    let resp = response_to_ir(&fixture("converse_response_text.json")).unwrap();
    assert_eq!(resp.finish_reason, FinishReason::Length);
    assert_eq!(
        resp.content,
        vec![
            Part::RedactedReasoning {
                data: "RW5jcnlwdGVkIHRob3VnaHRz".into()
            },
            Part::text("Bonjour"),
            Part::text(" le monde."),
        ]
    );
    assert_eq!((resp.usage.input_tokens, resp.usage.output_tokens), (12, 8));
}

#[test]
fn stop_reasons_map_to_ir_finish_reasons() {
    let cases = [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("tool_use", FinishReason::ToolCalls),
        ("max_tokens", FinishReason::Length),
        ("model_context_window_exceeded", FinishReason::Length),
        ("guardrail_intervened", FinishReason::ContentFilter),
        ("content_filtered", FinishReason::ContentFilter),
    ];
    for (stop, want) in cases {
        let body = json!({
            "output":{"message":{"role":"assistant","content":[{"text":"x"}]}},
            "stopReason": stop,
            "usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},
            "metrics":{"latencyMs":1},
            "additionalModelResponseFields":{"stop_sequence":"END"}
        });
        let resp = response_to_ir(body.to_string().as_bytes()).unwrap();
        assert_eq!(resp.finish_reason, want, "{stop}");
        assert_eq!(resp.stop_sequence.as_deref(), Some("END"));
    }
}

/// Decodes a binary stream fed in two pieces, split at `cut`.
fn decode_split(bytes: &[u8], cut: usize) -> Result<Vec<StreamEvent>, ConvertError> {
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push_bytes(&bytes[..cut], &mut out)?;
    d.push_bytes(&bytes[cut..], &mut out)?;
    d.finish(&mut out);
    Ok(out)
}

/// Decodes `bytes` whole, at every split point and byte by byte; all must
/// agree.
fn decode_all_ways(bytes: &[u8]) -> Vec<StreamEvent> {
    let whole = decode_split(bytes, bytes.len()).unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(decode_split(bytes, cut).unwrap(), whole, "split at {cut}");
    }
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    for b in bytes {
        d.push_bytes(std::slice::from_ref(b), &mut out).unwrap();
    }
    d.finish(&mut out);
    assert_eq!(out, whole, "byte by byte");
    whole
}

/// The fixture's messages re-encoded by our encoder, which must equal the
/// bytes the independent Python encoder wrote.
fn encode_jsonl(name: &str) -> Vec<u8> {
    let text = String::from_utf8(fixture(name)).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let item: Value = serde_json::from_str(line).unwrap();
        let msg = if let Some(kind) = item["exception"].as_str() {
            EsMessage::exception(kind, serde_json::to_vec(&item["payload"]).unwrap())
        } else if let Some(inner) = item.get("inner") {
            EsMessage::event(
                "chunk",
                anthropic_invoke_chunk_payload(&serde_json::to_vec(inner).unwrap()),
            )
        } else {
            EsMessage::event(
                item["event"].as_str().unwrap(),
                serde_json::to_vec(&item["payload"]).unwrap(),
            )
        };
        out.extend(msg.encode().unwrap());
    }
    out
}

#[test]
fn our_encoder_writes_the_same_bytes_as_the_reference_encoder() {
    for name in [
        "converse_stream_tool_use",
        "converse_stream_throttled",
        "invoke_stream_anthropic",
    ] {
        assert_eq!(
            encode_jsonl(&format!("{name}.jsonl")),
            fixture(&format!("{name}.bin")),
            "{name}"
        );
    }
}

#[test]
fn converse_stream_decodes_at_every_byte_split() {
    let events = decode_all_ways(&fixture("converse_stream_tool_use.bin"));
    assert_eq!(
        events,
        vec![
            StreamEvent::Start {
                id: String::new(),
                model: String::new(),
                created: 0
            },
            StreamEvent::ReasoningDelta("Two cities".into()),
            StreamEvent::ReasoningDelta(", two calls.".into()),
            StreamEvent::ReasoningSignature("EqoBCkgIARAB".into()),
            StreamEvent::TextDelta("Checking ".into()),
            StreamEvent::TextDelta("both. é😀".into()),
            StreamEvent::ToolCallStart {
                index: 0,
                id: "tooluse_paris".into(),
                name: "get_weather".into(),
                signature: None
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into()
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "tooluse_berlin".into(),
                name: "get_weather".into(),
                signature: None
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{\"city\":\"Berlin\"}".into()
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
                stop_sequence: None
            },
            StreamEvent::Usage(Usage {
                input_tokens: 412,
                output_tokens: 96,
                cache_read_tokens: 300,
                ..Usage::default()
            }),
        ]
    );
}

#[test]
fn in_stream_exceptions_become_errors() {
    let events = decode_all_ways(&fixture("converse_stream_throttled.bin"));
    assert_eq!(
        events[1..],
        [
            StreamEvent::TextDelta("Hel".into()),
            StreamEvent::Error(ApiError {
                status: 429,
                kind: ErrorKind::RateLimit,
                message: "Too many tokens, please wait before trying again.".into()
            })
        ]
    );
}

#[test]
fn interleaved_tool_blocks_are_matched_by_content_block_index() {
    let ev = |t: &str, p: Value| EsMessage::event(t, serde_json::to_vec(&p).unwrap());
    let msgs = [
        ev("messageStart", json!({"role":"assistant"})),
        ev(
            "contentBlockStart",
            json!({"contentBlockIndex":5,"start":{"toolUse":{"toolUseId":"a","name":"f"}}}),
        ),
        ev(
            "contentBlockStart",
            json!({"contentBlockIndex":7,"start":{"toolUse":{"toolUseId":"b","name":"g"}}}),
        ),
        ev(
            "contentBlockDelta",
            json!({"contentBlockIndex":7,"delta":{"toolUse":{"input":"{}"}}}),
        ),
        ev(
            "contentBlockDelta",
            json!({"contentBlockIndex":5,"delta":{"toolUse":{"input":"{\"x\":1}"}}}),
        ),
        ev("futureEvent", json!({"anything":true})),
    ];
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    for m in &msgs {
        d.push_message(m, &mut out).unwrap();
    }
    d.finish(&mut out);
    assert_eq!(
        out[3..],
        [
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into()
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"x\":1}".into()
            },
            // No messageStop: finish supplies one.
            StreamEvent::Finish {
                reason: FinishReason::Stop,
                stop_sequence: None
            },
        ]
    );

    let orphan = ev(
        "contentBlockDelta",
        json!({"contentBlockIndex":9,"delta":{"toolUse":{"input":"{}"}}}),
    );
    assert!(
        StreamDecoder::new()
            .push_message(&orphan, &mut Vec::new())
            .is_err()
    );
}

#[test]
fn corrupted_and_cut_off_streams_are_reported() {
    let mut bytes = fixture("converse_stream_tool_use.bin");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    let err = d.push_bytes(&bytes, &mut out).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    // Nothing after the corrupt frame, and no invented ending.
    d.push_bytes(b"more", &mut out).unwrap();
    d.finish(&mut out);
    assert!(!out.iter().any(|e| matches!(e, StreamEvent::Finish { .. })));
    assert!(matches!(
        out.last(),
        Some(
            StreamEvent::TextDelta(_)
                | StreamEvent::ReasoningDelta(_)
                | StreamEvent::ReasoningSignature(_)
                | StreamEvent::ToolCallStart { .. }
                | StreamEvent::ToolCallDelta { .. }
        )
    ));

    // Cut inside a message before `messageStop`: an error, and no made-up
    // `Finish` after it.
    let bytes = fixture("converse_stream_tool_use.bin");
    let mut d = StreamDecoder::new();
    let mut out = Vec::new();
    d.push_bytes(&bytes[..bytes.len() / 2], &mut out).unwrap();
    d.finish(&mut out);
    match out.last() {
        Some(StreamEvent::Error(e)) => {
            assert_eq!(e.status, 502);
            assert!(e.message.contains("ended"), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(!out.iter().any(|e| matches!(e, StreamEvent::Finish { .. })));
}

#[test]
fn error_bodies_are_classified_by_type_or_status() {
    let throttled = parse_error(
        429,
        br#"{"message":"Too many requests, please wait before trying again."}"#,
    );
    assert_eq!(
        throttled,
        ApiError {
            status: 429,
            kind: ErrorKind::RateLimit,
            message: "Too many requests, please wait before trying again.".into()
        }
    );
    let validation = parse_error(
        400,
        br#"{"message":"The model returned the following errors: max_tokens: Field required"}"#,
    );
    assert_eq!(validation.kind, ErrorKind::InvalidRequest);
    assert!(validation.message.contains("max_tokens"));

    // A quota error is also a 400: only the header tells it apart.
    let quota = parse_error_typed(
        400,
        Some("ServiceQuotaExceededException:http://internal.amazon.com/coral/com.amazon.bedrock/"),
        br#"{"Message":"Too many tokens per day"}"#,
    );
    assert_eq!(
        (quota.status, quota.kind, quota.message.as_str()),
        (400, ErrorKind::RateLimit, "Too many tokens per day")
    );
    let denied = parse_error_typed(
        403,
        Some("UnrecognizedClientException"),
        br#"{"message":"The security token included in the request is invalid."}"#,
    );
    assert_eq!(denied.kind, ErrorKind::Authentication);
    let body_typed = parse_error(
        404,
        br#"{"__type":"com.amazon.bedrock#ResourceNotFoundException","message":"Model not found"}"#,
    );
    assert_eq!(body_typed.kind, ErrorKind::NotFound);
    let html = parse_error(502, b"<html>Bad Gateway</html>");
    assert_eq!(
        (html.kind, html.message.as_str()),
        (ErrorKind::Api, "<html>Bad Gateway</html>")
    );
    assert_eq!(parse_error(503, b"").message, "Bedrock returned HTTP 503");
}

#[test]
fn anthropic_invoke_body_patches_the_anthropic_request() {
    let anthropic = br#"{"model":"claude-sonnet-4-20250514","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Hi"}],"anthropic_beta":["context-1m-2025-08-07"]}"#;
    let body: Value = serde_json::from_slice(&anthropic_invoke_body(anthropic).unwrap()).unwrap();
    assert_eq!(
        body,
        json!({
            "max_tokens":1024,
            "messages":[{"role":"user","content":"Hi"}],
            "anthropic_beta":["context-1m-2025-08-07"],
            "anthropic_version": ANTHROPIC_BEDROCK_VERSION
        })
    );
    assert!(anthropic_invoke_body(b"[1]").is_err());

    let via_ir = invoke_body_from_ir(&ChatRequest::default(), |_| {
        Ok(br#"{"model":"m","messages":[],"anthropic_version":"2023-06-01"}"#.to_vec())
    })
    .unwrap();
    let via_ir: Value = serde_json::from_slice(&via_ir).unwrap();
    assert_eq!(
        via_ir,
        json!({"messages":[],"anthropic_version":"bedrock-2023-05-31"})
    );
}

#[test]
fn invoke_stream_chunks_become_anthropic_sse_events_at_every_split() {
    let bytes = fixture("invoke_stream_anthropic.bin");
    let decode = |chunks: &[&[u8]]| {
        let mut d = Decoder::default();
        let mut items = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(m) = d.next_message() {
                items.push(anthropic_invoke_event(&m.unwrap()).unwrap().unwrap());
            }
        }
        d.finish().unwrap();
        items
    };
    let whole = decode(&[&bytes]);
    for cut in 0..bytes.len() {
        assert_eq!(
            decode(&[&bytes[..cut], &bytes[cut..]]),
            whole,
            "split at {cut}"
        );
    }
    assert_eq!(whole.len(), 7);
    let names: Vec<_> = whole
        .iter()
        .filter_map(|i| match i {
            InvokeStreamItem::Event(e) => e.event.clone(),
            InvokeStreamItem::Error(_) => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let InvokeStreamItem::Event(delta) = &whole[2] else {
        panic!()
    };
    let data: Value = serde_json::from_str(&delta.data).unwrap();
    assert_eq!(data["delta"]["text"], "Hi é😀");
    assert_eq!(
        whole[6],
        InvokeStreamItem::Error(ApiError {
            status: 502,
            kind: ErrorKind::Api,
            message: "Model stream error (Overloaded)".into()
        })
    );
}

#[test]
fn invoke_chunk_payloads_decode_and_reject_bad_base64() {
    let inner = br#"{"type":"ping"}"#;
    let payload = anthropic_invoke_chunk_payload(inner);
    assert_eq!(payload, br#"{"bytes":"eyJ0eXBlIjoicGluZyJ9"}"#);
    assert_eq!(anthropic_invoke_chunk(&payload).unwrap(), inner);
    assert!(anthropic_invoke_chunk(br#"{"bytes":"e$J0"}"#).is_err());
    assert!(anthropic_invoke_chunk(br#"{"nope":1}"#).is_err());
    // Messages other than chunks and exceptions carry nothing.
    let other = EsMessage::event("initial-response", Bytes::from_static(b"{}"));
    assert_eq!(anthropic_invoke_event(&other).unwrap(), None);
}
