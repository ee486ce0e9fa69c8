#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::Bytes;
use proptest::prelude::*;
use protocol::sse::{
    DONE_FRAME, SseDecoder, SseError, SseEvent, SseFramer, encode_comment, encode_data, frame_data,
    frame_view, line_data, parse_frame,
};

const OPENAI_STREAM: &str = concat!(
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    ": keep-alive\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo é😀\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":3,\"total_tokens\":12}}\n\n",
    "data: [DONE]\n\n",
);

fn frames_of(chunks: &[&[u8]], limit: usize) -> (Vec<Bytes>, Bytes) {
    let mut f = SseFramer::new(limit);
    let mut out = Vec::new();
    for c in chunks {
        f.push(c).unwrap();
        while let Some(fr) = f.next_frame() {
            out.push(fr);
        }
    }
    (out, f.take_rest())
}

/// As [`frames_of`], handing the chunks over with `push_bytes` (zero-copy) and taking frames
/// alternately one by one and in batches with `take_frames`.
fn frames_of_shared(chunks: &[&[u8]], limit: usize) -> (Vec<Bytes>, Bytes) {
    let mut f = SseFramer::new(limit);
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        f.push_bytes(Bytes::copy_from_slice(c)).unwrap();
        if i % 2 == 0 {
            while let Some(fr) = f.next_frame() {
                out.push(fr);
            }
        } else if let Some(batch) = f.take_frames(&mut ends) {
            let mut start = 0;
            for end in ends.drain(..) {
                out.push(batch.slice(start..end));
                start = end;
            }
            assert_eq!(start, batch.len());
        }
    }
    (out, f.take_rest())
}

/// As [`frames_of`], taking at most one frame after each push (the framer scans only as far
/// as frames are asked for, so scanning resumes mid-chunk on the next ask).
fn frames_of_one_at_a_time(chunks: &[&[u8]], limit: usize) -> (Vec<Bytes>, Bytes) {
    let mut f = SseFramer::new(limit);
    let mut out = Vec::new();
    for c in chunks {
        f.push(c).unwrap();
        out.extend(f.next_frame());
    }
    out.extend(std::iter::from_fn(|| f.next_frame()));
    (out, f.take_rest())
}

#[test]
fn shared_chunk_frames_are_slices_of_it() {
    let chunk = Bytes::from_static(b"data: a\n\ndata: b\n\ndata: c");
    let mut f = SseFramer::new(1 << 20);
    f.push_bytes(chunk.clone()).unwrap();
    let first = f.next_frame().unwrap();
    assert_eq!(first.as_ptr(), chunk.as_ptr(), "no copy of a whole chunk");
    let mut ends = Vec::new();
    let rest = f.take_frames(&mut ends).unwrap();
    assert_eq!(&rest[..], b"data: b\n\n");
    assert_eq!(ends, [9]);
    assert!(!f.is_empty());
    // The unfinished event is copied once the next chunk arrives; frames stay exact.
    f.push_bytes(Bytes::from_static(b"\n\ndata: d\n\n"))
        .unwrap();
    assert_eq!(&f.next_frame().unwrap()[..], b"data: c\n\n");
    assert_eq!(&f.next_frame().unwrap()[..], b"data: d\n\n");
    assert!(f.is_empty() && f.take_frames(&mut ends).is_none());
}

#[test]
fn frame_view_reads_event_and_data() {
    let v = frame_view(b"event: message_start\ndata: {}\n\n").unwrap();
    assert_eq!(v.event, Some(&b"message_start"[..]));
    assert_eq!(v.data.as_deref(), Some(&b"{}"[..]));
    let only_event = frame_view(b"event: error\n\n").unwrap();
    assert_eq!(
        (only_event.event, only_event.data),
        (Some(&b"error"[..]), None)
    );
    assert_eq!(frame_view(b": keep-alive\n\n"), None);
}

fn events_of(chunks: &[&[u8]]) -> Vec<SseEvent> {
    let mut d = SseDecoder::new(1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        d.push(c).unwrap();
        while let Some(ev) = d.next_event() {
            out.push(ev);
        }
    }
    while let Some(ev) = d.finish() {
        out.push(ev);
    }
    out
}

fn data(s: &str) -> SseEvent {
    SseEvent {
        data: s.to_owned(),
        ..SseEvent::default()
    }
}

#[test]
fn openai_stream_frames_and_events() {
    let input = OPENAI_STREAM.as_bytes();
    let (frames, rest) = frames_of(&[input], 1 << 16);
    assert_eq!(frames.len(), 7);
    assert!(rest.is_empty());
    assert_eq!(frames.concat(), input);
    assert_eq!(&frames[1][..], b": keep-alive\n\n");
    assert_eq!(&frames[6][..], DONE_FRAME);
    assert_eq!(parse_frame(&frames[1]), None);

    let events = events_of(&[input]);
    assert_eq!(events.len(), 6);
    assert!(events[2].data.contains("lo é😀"));
    assert_eq!(events[5], data("[DONE]"));
    assert!(
        events
            .iter()
            .all(|e| e.event.is_none() && !e.data.ends_with('\n'))
    );
}

#[test]
fn every_split_point_gives_same_frames() {
    let input = OPENAI_STREAM.as_bytes();
    let (want_frames, _) = frames_of(&[input], 1 << 16);
    let want_events = events_of(&[input]);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        let (frames, rest) = frames_of(&[a, b], 1 << 16);
        assert_eq!(frames, want_frames, "split at {at}");
        assert!(rest.is_empty());
        assert_eq!(events_of(&[a, b]), want_events, "split at {at}");
    }
    let singles: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(frames_of(&singles, 1 << 16).0, want_frames);
    assert_eq!(events_of(&singles), want_events);
}

#[test]
fn crlf_and_cr_line_ends() {
    for sep in ["\r\n", "\r"] {
        let input = OPENAI_STREAM.replace('\n', sep);
        let bytes = input.as_bytes();
        let want_events = events_of(&[OPENAI_STREAM.as_bytes()]);
        let (frames, rest) = frames_of(&[bytes], 1 << 16);
        if sep == "\r" {
            // The last blank line's `\r` might still be followed by `\n`.
            assert_eq!(frames.len(), 6);
            assert_eq!(&rest[..], b"data: [DONE]\r\r");
        } else {
            assert_eq!(frames.len(), 7);
            assert!(rest.is_empty());
        }
        assert_eq!([frames.concat(), rest.to_vec()].concat(), bytes);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            let (fr, r) = frames_of(&[a, b], 1 << 16);
            assert_eq!(fr, frames, "{sep:?} split at {at}");
            assert_eq!(r, rest);
            assert_eq!(events_of(&[a, b]), want_events, "{sep:?} split at {at}");
        }
        let singles: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(events_of(&singles), want_events);
    }
}

#[test]
fn bare_cr_frame_waits_for_next_byte() {
    let mut f = SseFramer::new(1024);
    f.push(b"data: a\r\r").unwrap();
    // The final `\r` could be the start of `\r\n`.
    assert_eq!(f.next_frame(), None);
    f.push(b"\n").unwrap();
    assert_eq!(f.next_frame().as_deref(), Some(&b"data: a\r\r\n"[..]));

    let mut f = SseFramer::new(1024);
    f.push(b"data: a\r\r").unwrap();
    f.push(b"data: b\r\r").unwrap();
    assert_eq!(f.next_frame().as_deref(), Some(&b"data: a\r\r"[..]));
    assert_eq!(f.next_frame(), None);
    assert_eq!(&f.take_rest()[..], b"data: b\r\r");

    // At end of stream the decoder still dispatches it.
    let mut d = SseDecoder::new(1024);
    d.push(b"data: a\r\r").unwrap();
    assert_eq!(d.next_event(), None);
    assert_eq!(d.finish(), Some(data("a")));
    assert_eq!(d.finish(), None);
}

#[test]
fn mixed_line_ends_in_one_event() {
    let ev = events_of(&[b"data: a\r\ndata: b\rdata: c\n\r\n"]);
    assert_eq!(ev, vec![data("a\nb\nc")]);
    // `\n\r` is two line ends: a blank line ends the event.
    let (frames, _) = frames_of(&[b"data: x\n\rdata: y\n\n"], 100);
    assert_eq!(frames[0], Bytes::from_static(b"data: x\n\r"));
    assert_eq!(frames[1], Bytes::from_static(b"data: y\n\n"));
}

#[test]
fn fields_comments_and_multiline_data() {
    let frame = b": comment\nevent: message_delta\nid: 42\nretry: 1500\ndata: line1\ndata:line2\ndata:  two spaces\ndata\nunknown: x\n\n";
    let ev = parse_frame(frame).unwrap();
    assert_eq!(ev.event.as_deref(), Some("message_delta"));
    assert_eq!(ev.id.as_deref(), Some("42"));
    assert_eq!(ev.retry, Some(1500));
    assert_eq!(ev.data, "line1\nline2\n two spaces\n");

    assert_eq!(parse_frame(b":only a comment\n\n"), None);
    assert_eq!(parse_frame(b"\n"), None);
    assert_eq!(parse_frame(b""), None);
    assert_eq!(parse_frame(b"retry: 10\n\n"), None);
    assert_eq!(parse_frame(b"id: 7\n\n"), None);
    assert_eq!(parse_frame(b"foo: bar\n\n"), None);
    // Event without data still reported; data-only with empty value too.
    assert_eq!(
        parse_frame(b"event: ping\n\n"),
        Some(SseEvent {
            event: Some("ping".into()),
            ..SseEvent::default()
        })
    );
    assert_eq!(parse_frame(b"data\n\n"), Some(data("")));
    // Invalid retry and NUL in id are ignored; a field with no line end counts.
    let ev = parse_frame(b"retry: 1x\nid: a\0b\ndata: end").unwrap();
    assert_eq!(ev, data("end"));
    // Colon inside the value is kept.
    assert_eq!(parse_frame(b"data: {\"a\":1}\n\n"), Some(data("{\"a\":1}")));
    // Invalid UTF-8 is replaced, not dropped.
    assert_eq!(parse_frame(b"data: \xff\n\n"), Some(data("\u{FFFD}")));
}

#[test]
fn comments_between_events_are_skipped_by_decoder() {
    let ev = events_of(&[b": ping\n\n: ping\n\ndata: 1\n\n\n\n: x\n\ndata: 2\n\n"]);
    assert_eq!(ev, vec![data("1"), data("2")]);
}

#[test]
fn bom_at_stream_start_is_dropped() {
    let input = b"\xEF\xBB\xBFdata: a\n\ndata: \xEF\xBB\xBFb\n\n";
    let want = vec![data("a"), data("\u{FEFF}b")];
    assert_eq!(events_of(&[input]), want);
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(events_of(&[a, b]), want, "split at {at}");
    }
    let (frames, _) = frames_of(&[input], 100);
    assert_eq!(frames[0], Bytes::from_static(b"data: a\n\n"));
    // A stream that merely starts like a BOM is kept.
    assert_eq!(events_of(&[b"\xEF", b"data: x\n\n"]).len(), 0);
    let (frames, rest) = frames_of(&[b"\xEF\xBB"], 100);
    assert!(frames.is_empty());
    assert_eq!(&rest[..], b"\xEF\xBB");
}

#[test]
fn trailing_event_without_blank_line() {
    let mut d = SseDecoder::new(1024);
    d.push(b"data: a\n\ndata: b\ndata: c").unwrap();
    assert_eq!(d.next_event(), Some(data("a")));
    assert_eq!(d.next_event(), None);
    assert_eq!(d.finish(), Some(data("b\nc")));
    assert_eq!(d.finish(), None);

    // finish() also drains complete events that were never taken.
    let mut d = SseDecoder::new(1024);
    d.push(b"data: 1\n\ndata: 2\n\ndata: 3\n").unwrap();
    let all: Vec<_> = std::iter::from_fn(|| d.finish()).collect();
    assert_eq!(all, vec![data("1"), data("2"), data("3")]);

    let mut f = SseFramer::new(1024);
    f.push(b"data: a\n\ndata: partial").unwrap();
    assert!(f.next_frame().is_some());
    assert_eq!(&f.take_rest()[..], b"data: partial");
    assert!(f.take_rest().is_empty());
    // The framer keeps working after take_rest.
    f.push(b"data: z\n\n").unwrap();
    assert_eq!(f.next_frame().as_deref(), Some(&b"data: z\n\n"[..]));
}

#[test]
fn too_large() {
    // Incomplete event over the limit.
    let mut f = SseFramer::new(16);
    f.push(b"data: 0123456").unwrap();
    assert_eq!(f.push(b"789abcdef"), Err(SseError::TooLarge { limit: 16 }));
    // Sticky afterwards.
    assert_eq!(f.push(b"\n\n"), Err(SseError::TooLarge { limit: 16 }));
    assert_eq!(
        SseError::TooLarge { limit: 16 }.to_string(),
        "SSE event exceeds 16 bytes"
    );

    // A complete event over the limit arriving in one chunk.
    let mut f = SseFramer::new(16);
    assert!(f.push(b"data: 0123456789abcdef\n\n").is_err());

    // Exactly at the limit is fine, and many small events in one big chunk too.
    let mut f = SseFramer::new(9);
    f.push(b"data: 1\n\n".repeat(100).as_slice()).unwrap();
    let mut n = 0;
    while f.next_frame().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);

    // An event over the limit behind small ones fails the push that brings it, whether or not
    // the frames before it were taken.
    let mut input = b"data: 1\n\n".repeat(3);
    input.extend_from_slice(b"data: 0123456789\n\n");
    let mut f = SseFramer::new(9);
    assert!(f.push(&input).is_err());
    let mut f = SseFramer::new(9);
    f.push(&input[..20]).unwrap();
    assert_eq!(f.next_frame().as_deref(), Some(&b"data: 1\n\n"[..]));
    assert!(f.push(&input[20..]).is_err());

    let mut d = SseDecoder::new(8);
    assert!(d.push(b"data: 123456789").is_err());
}

#[test]
fn encoders() {
    assert_eq!(&encode_data(b"{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
    assert_eq!(&encode_comment("keep-alive")[..], b": keep-alive\n\n");
    assert_eq!(&encode_comment("")[..], b": \n\n");
    // Line breaks inside a payload stay inside the one event.
    let framed = encode_data(b"{\n  \"a\": 1\r\n}");
    assert_eq!(&framed[..], b"data: {\ndata:   \"a\": 1\ndata: }\n\n");
    assert_eq!(parse_frame(&framed), Some(data("{\n  \"a\": 1\n}")));
    let c = encode_comment("a\nb");
    assert_eq!(&c[..], b": a\n: b\n\n");
    assert_eq!(parse_frame(&c), None);
    assert_eq!(parse_frame(DONE_FRAME), Some(data("[DONE]")));
}

#[test]
fn frame_data_borrows_one_line_and_joins_several() {
    let one = b"event: delta\ndata: {\"a\":1}\n\n";
    let got = frame_data(one).unwrap();
    assert!(matches!(got, std::borrow::Cow::Borrowed(_)));
    assert_eq!(&got[..], b"{\"a\":1}");
    assert_eq!(
        &frame_data(b"data:x\r\ndata: y\r\n\r\n").unwrap()[..],
        b"x\ny"
    );
    assert_eq!(
        &frame_data(b": c\ndata:  two spaces\n\n").unwrap()[..],
        b" two spaces"
    );
    assert_eq!(frame_data(b": keep-alive\n\n"), None);
    assert_eq!(frame_data(b"event: ping\n\n"), None);
    // Invalid UTF-8 is handed on as it is.
    assert_eq!(&frame_data(b"data: \xff\n\n").unwrap()[..], b"\xff");
}

/// Frames with where the framer says each one's only line ends, taken with `take_frame_ends`
/// after every chunk.
fn frames_with_line_ends(chunks: &[&[u8]]) -> Vec<(Bytes, Option<usize>)> {
    let mut f = SseFramer::new(1 << 20);
    let mut out = Vec::new();
    let mut ends = Vec::new();
    for c in chunks {
        f.push_bytes(Bytes::copy_from_slice(c)).unwrap();
        ends.clear();
        if let Some(batch) = f.take_frame_ends(&mut ends) {
            let mut start = 0;
            for e in &ends {
                out.push((
                    batch.slice(start..e.end),
                    e.only_line_end.map(|l| l - start),
                ));
                start = e.end;
            }
        }
    }
    out
}

/// The lines of a frame, without their line ends.
fn lines_of(frame: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = frame;
    while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with(b"\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    lines
}

#[test]
fn a_frame_of_one_line_is_marked_with_its_end() {
    let got = frames_with_line_ends(&[
        b"data: a\n\nevent: x\ndata: b\n\n: c\r\n\r\n\n",
        b"data: d\r",
    ]);
    let marks: Vec<Option<usize>> = got.iter().map(|(_, m)| *m).collect();
    assert_eq!(marks, [Some(7), None, Some(3), None]);
    assert_eq!(line_data(&got[0].0[..7]), Some(&b"a"[..]));
    assert_eq!(line_data(b": c"), None);
    assert_eq!(line_data(b"data"), Some(&b""[..]));
    assert_eq!(line_data(b"data:x"), Some(&b"x"[..]));
    assert_eq!(line_data(b"event: data"), None);
}

fn stream_strategy() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[a-z {}\":,é]{0,20}".prop_map(|s| format!("data: {s}")),
        "[a-z]{0,8}".prop_map(|s| format!("event: {s}")),
        "[a-z ]{0,8}".prop_map(|s| format!(":{s}")),
        Just(String::new()),
    ];
    let eol = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
    prop::collection::vec((line, eol), 0..40).prop_map(|lines| {
        lines
            .into_iter()
            .flat_map(|(l, e)| [l, e.to_owned()])
            .collect::<String>()
            .into_bytes()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn prop_random_splits_same_frames_and_events(
        input in stream_strategy(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut prev = 0;
        for p in points {
            chunks.push(&input[prev..p]);
            prev = p;
        }
        chunks.push(&input[prev..]);

        let (want_frames, want_rest) = frames_of(&[&input], 1 << 20);
        let (frames, rest) = frames_of(&chunks, 1 << 20);
        prop_assert_eq!(&frames, &want_frames);
        prop_assert_eq!(&rest, &want_rest);
        let (shared, shared_rest) = frames_of_shared(&chunks, 1 << 20);
        prop_assert_eq!(&shared, &want_frames);
        prop_assert_eq!(&shared_rest, &want_rest);
        let (one_by_one, one_rest) = frames_of_one_at_a_time(&chunks, 1 << 20);
        prop_assert_eq!(&one_by_one, &want_frames);
        prop_assert_eq!(&one_rest, &want_rest);
        let mut all = frames.concat();
        all.extend_from_slice(&rest);
        prop_assert_eq!(&all, &input);
        prop_assert_eq!(events_of(&chunks), events_of(&[&input]));
        // Every frame but the last ends with a blank line's line end.
        for f in &frames {
            prop_assert!(f.ends_with(b"\n") || f.ends_with(b"\r"));
        }
        // A frame is marked with its line's end exactly when it has one line, wherever the
        // chunks were cut, and that line's data is the frame's.
        let marked = frames_with_line_ends(&chunks);
        prop_assert_eq!(marked.len(), want_frames.len());
        for (f, mark) in &marked {
            let lines = lines_of(f);
            let one = lines.len() == 2 && !lines[0].is_empty();
            prop_assert_eq!(mark.is_some(), one, "{:?}", f);
            if let Some(end) = *mark {
                let whole = frame_data(f);
                prop_assert_eq!(line_data(&f[..end]), whole.as_deref());
            }
        }
        // The cheap data view agrees with the full decoder.
        for f in frames.iter().chain([&rest]) {
            let cheap = frame_data(f).map(|d| String::from_utf8_lossy(&d).into_owned());
            prop_assert_eq!(cheap.unwrap_or_default(), parse_frame(f).map(|e| e.data).unwrap_or_default());
            let view = frame_view(f).map(|v| v.event.map(|e| String::from_utf8_lossy(e).into_owned()));
            prop_assert_eq!(view, parse_frame(f).map(|e| e.event));
        }
    }
}

#[test]
fn utf8_lossy_borrows_valid_text_and_replaces_bad_bytes() {
    assert!(matches!(
        protocol::sse::utf8_lossy("héllo".as_bytes()),
        std::borrow::Cow::Borrowed("héllo")
    ));
    assert_eq!(protocol::sse::utf8_lossy(b"a\xffb"), "a\u{FFFD}b");
}
