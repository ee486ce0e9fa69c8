#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use protocol::eventstream::{
    Decoder, EventStreamError, Header, HeaderValue, MAX_HEADERS_LEN, Message, crc32,
};

/// `{'foo':'bar'}`, the payload of the AWS SDK test vectors.
const FOO_BAR: &[u8] = b"{'foo':'bar'}";

// Test vectors from the AWS SDKs' event stream marshaller tests.
const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 16, 0, 0, 0, 0, 5, 194, 72, 235, 125, 152, 200, 255];
const INT32_HEADER: &[u8] = &[
    0, 0, 0, 43, 0, 0, 0, 14, 52, 139, 236, 123, 8, 101, 118, 101, 110, 116, 45, 105, 100, 4, 0, 0,
    160, 12, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 211, 137, 2, 133,
];
const PAYLOAD_NO_HEADERS: &[u8] = &[
    0, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39,
    125, 195, 101, 57, 54,
];
const PAYLOAD_ONE_STR_HEADER: &[u8] = &[
    0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 45, 116, 121,
    112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115, 111, 110,
    123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177,
];
const CORRUPTED_HEADERS: &[u8] = &[
    0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 43, 116, 121,
    112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115, 111, 110,
    123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177,
];
const CORRUPTED_HEADER_LEN: &[u8] = &[
    0, 0, 0, 61, 0, 0, 1, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 45, 116, 121,
    112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115, 111, 110,
    123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177,
];
const CORRUPTED_LENGTH: &[u8] = &[
    1, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39,
    125, 195, 101, 57, 54,
];
const CORRUPTED_PAYLOAD: &[u8] = &[
    0, 0, 0, 29, 0, 0, 0, 0, 253, 82, 140, 90, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39,
    141, 195, 101, 57, 54,
];

/// One header of every value type, written by an independent encoder
/// (Python `struct` + `binascii.crc32`).
const ALL_HEADER_TYPES_HEX: &str = "000000a90000007931cceb160474727565000566616c736501046279746502fe0573686f727403fed403696e740400011170046c6f6e6705fffffffed5fa0e0005627974657306000300ff100b3a6576656e742d747970650700086368756e6b20c3a9027473080000018bcfe5687b047575696409000102030405060708090a0b0c0d0e0f7b226279746573223a2265794a306558426c496a6f6963476c755a794a39227d73f97140";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn decode_one(bytes: &[u8]) -> Result<Message, EventStreamError> {
    let mut d = Decoder::default();
    d.push(bytes);
    let msg = d.next_message().expect("a complete message")?;
    assert!(d.next_message().is_none());
    d.finish()?;
    Ok(msg)
}

fn all_header_types() -> Message {
    Message {
        headers: vec![
            Header {
                name: "true".into(),
                value: HeaderValue::Bool(true),
            },
            Header {
                name: "false".into(),
                value: HeaderValue::Bool(false),
            },
            Header {
                name: "byte".into(),
                value: HeaderValue::Byte(-2),
            },
            Header {
                name: "short".into(),
                value: HeaderValue::Short(-300),
            },
            Header {
                name: "int".into(),
                value: HeaderValue::Int(70000),
            },
            Header {
                name: "long".into(),
                value: HeaderValue::Long(-5_000_000_000),
            },
            Header {
                name: "bytes".into(),
                value: HeaderValue::Bytes(Bytes::from_static(&[0, 0xff, 0x10])),
            },
            Header::string(":event-type", "chunk é"),
            Header {
                name: "ts".into(),
                value: HeaderValue::Timestamp(1_700_000_000_123),
            },
            Header {
                name: "uuid".into(),
                value: HeaderValue::Uuid([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]),
            },
        ],
        payload: Bytes::from_static(b"{\"bytes\":\"eyJ0eXBlIjoicGluZyJ9\"}"),
    }
}

#[test]
fn aws_sdk_success_vectors_decode_and_re_encode() {
    let empty = decode_one(EMPTY_MESSAGE).unwrap();
    assert!(empty.headers.is_empty() && empty.payload.is_empty());

    let int32 = decode_one(INT32_HEADER).unwrap();
    assert_eq!(
        int32.header("event-id"),
        Some(&HeaderValue::Int(0x0000_a00c))
    );
    assert_eq!(&int32.payload[..], FOO_BAR);

    let no_headers = decode_one(PAYLOAD_NO_HEADERS).unwrap();
    assert!(no_headers.headers.is_empty());
    assert_eq!(&no_headers.payload[..], FOO_BAR);

    let one_str = decode_one(PAYLOAD_ONE_STR_HEADER).unwrap();
    assert_eq!(one_str.header_str("content-type"), Some("application/json"));
    assert_eq!(&one_str.payload[..], FOO_BAR);

    // The encoder reproduces the reference bytes exactly.
    for (msg, bytes) in [
        (empty, EMPTY_MESSAGE),
        (int32, INT32_HEADER),
        (no_headers, PAYLOAD_NO_HEADERS),
        (one_str, PAYLOAD_ONE_STR_HEADER),
    ] {
        assert_eq!(msg.encode().unwrap(), bytes);
    }
}

#[test]
fn aws_sdk_failure_vectors_are_rejected() {
    assert!(matches!(
        decode_one(CORRUPTED_HEADERS),
        Err(EventStreamError::MessageChecksum { .. })
    ));
    assert!(matches!(
        decode_one(CORRUPTED_HEADER_LEN),
        Err(EventStreamError::PreludeChecksum { .. })
    ));
    assert!(matches!(
        decode_one(CORRUPTED_LENGTH),
        Err(EventStreamError::PreludeChecksum { .. })
    ));
    assert!(matches!(
        decode_one(CORRUPTED_PAYLOAD),
        Err(EventStreamError::MessageChecksum { .. })
    ));
}

#[test]
fn every_header_type_decodes_and_encodes_like_the_reference() {
    let bytes = hex(ALL_HEADER_TYPES_HEX);
    let decoded = decode_one(&bytes).unwrap();
    assert_eq!(decoded, all_header_types());
    assert_eq!(decoded.header_str(":event-type"), Some("chunk é"));
    assert_eq!(decoded.header_str("int"), None);
    assert_eq!(all_header_types().encode().unwrap(), bytes);
}

fn stream() -> (Vec<Message>, Vec<u8>) {
    let msgs = vec![
        Message::event(
            "messageStart",
            Bytes::from_static(b"{\"role\":\"assistant\"}"),
        ),
        all_header_types(),
        Message::default(),
        Message::exception(
            "throttlingException",
            Bytes::from_static(b"{\"message\":\"Too many requests\"}"),
        ),
        Message::event("metadata", Bytes::from(vec![b'x'; 3000])),
    ];
    let bytes = msgs.iter().flat_map(|m| m.encode().unwrap()).collect();
    (msgs, bytes)
}

fn drain(d: &mut Decoder, out: &mut Vec<Message>) {
    while let Some(m) = d.next_message() {
        out.push(m.unwrap());
    }
}

#[test]
fn any_split_of_a_stream_yields_the_same_messages() {
    let (msgs, bytes) = stream();
    for cut in 0..=bytes.len() {
        let mut d = Decoder::default();
        let mut got = Vec::new();
        d.push(&bytes[..cut]);
        drain(&mut d, &mut got);
        d.push(&bytes[cut..]);
        drain(&mut d, &mut got);
        d.finish().unwrap();
        assert_eq!(got, msgs, "split at {cut}");
    }
    let mut d = Decoder::default();
    let mut got = Vec::new();
    for b in &bytes {
        d.push(std::slice::from_ref(b));
        drain(&mut d, &mut got);
    }
    assert_eq!(got, msgs);
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = Message::event(
        "contentBlockDelta",
        Bytes::from_static(b"{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}"),
    )
    .encode()
    .unwrap();
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut corrupt = bytes.clone();
            corrupt[at] ^= 1 << bit;
            let mut d = Decoder::default();
            d.push(&corrupt);
            match d.next_message() {
                Some(Err(_)) => {}
                other => panic!("flip of bit {bit} at byte {at} not detected: {other:?}"),
            }
            // A failed decoder stays failed.
            d.push(&bytes);
            assert!(d.next_message().is_none());
        }
    }
}

fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&headers.to_be_bytes());
    let crc = crc32(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    p
}

/// A frame with valid checksums around arbitrary header bytes.
fn frame(headers: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = 16 + headers.len() + payload.len();
    let mut out = prelude(total as u32, headers.len() as u32);
    out.extend_from_slice(headers);
    out.extend_from_slice(payload);
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn oversized_frames_are_rejected_from_the_prelude_alone() {
    let mut d = Decoder::new(1024);
    d.push(&prelude(100 * 1024 * 1024, 0));
    assert_eq!(
        d.next_message(),
        Some(Err(EventStreamError::TooLarge {
            len: 100 * 1024 * 1024,
            limit: 1024
        }))
    );
    assert!(d.next_message().is_none());

    let mut d = Decoder::default();
    d.push(&prelude(
        16 + MAX_HEADERS_LEN as u32 + 1,
        MAX_HEADERS_LEN as u32 + 1,
    ));
    assert!(matches!(
        d.next_message(),
        Some(Err(EventStreamError::InvalidHeader(_)))
    ));
}

#[test]
fn impossible_lengths_are_rejected() {
    for (total, headers) in [(15, 0), (20, 5), (0, 0)] {
        let mut d = Decoder::default();
        d.push(&prelude(total, headers));
        assert_eq!(
            d.next_message(),
            Some(Err(EventStreamError::InvalidLength {
                total: total as usize,
                headers: headers as usize
            }))
        );
    }
}

#[test]
fn malformed_headers_are_rejected() {
    // Unknown value type 10.
    let unknown = frame(&[1, b'a', 10], b"");
    // Declared string longer than the headers section.
    let overrun = frame(&[1, b'a', 7, 0, 9, b'x'], b"");
    // Same name twice.
    let dup = frame(&[1, b'a', 0, 1, b'a', 1], b"");
    // Empty name, invalid UTF-8 value.
    let empty_name = frame(&[0, 0], b"");
    let bad_utf8 = frame(&[1, b'a', 7, 0, 2, 0xc3, 0x28], b"");
    for bytes in [unknown, overrun, dup, empty_name, bad_utf8] {
        assert!(
            matches!(decode_one(&bytes), Err(EventStreamError::InvalidHeader(_))),
            "{bytes:?}"
        );
    }
}

#[test]
fn a_cut_off_stream_is_reported_at_finish() {
    let (msgs, bytes) = stream();
    let last_len = msgs.last().unwrap().encode().unwrap().len();
    let mut d = Decoder::default();
    d.push(&bytes[..bytes.len() - 3]);
    let mut got = Vec::new();
    drain(&mut d, &mut got);
    assert_eq!(got.len(), 4);
    assert_eq!(d.finish(), Err(EventStreamError::Truncated(last_len - 3)));
}

#[test]
fn encoding_rejects_what_the_format_cannot_hold() {
    let long_name = Message {
        headers: vec![Header::string("n".repeat(256), "v")],
        payload: Bytes::new(),
    };
    assert!(matches!(
        long_name.encode(),
        Err(EventStreamError::InvalidHeader(_))
    ));
    let long_value = Message {
        headers: vec![Header::string("n", "v".repeat(65536))],
        payload: Bytes::new(),
    };
    assert!(matches!(
        long_value.encode(),
        Err(EventStreamError::InvalidHeader(_))
    ));
}
