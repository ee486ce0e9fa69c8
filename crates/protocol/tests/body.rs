#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use protocol::body::{BodyError, Edit, ObjectView, json_string, peek_request, rewrite};
use serde_json::{Value, json};

fn set_model(body: &[u8], model: &str) -> Vec<u8> {
    let view = ObjectView::parse(body).unwrap();
    let raw = json_string(model);
    rewrite(
        body,
        &view,
        &[Edit::Set {
            key: "model",
            raw_json: &raw,
        }],
    )
}

fn json_err(body: &[u8]) -> String {
    match ObjectView::parse(body) {
        Err(BodyError::Json { detail }) => detail,
        other => panic!(
            "expected Json error for {:?}, got {other:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[test]
fn peek_basic_chat_request() {
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "gpt-4o");
    assert!(p.stream);
    assert_eq!(p.include_usage, Some(true));
    assert_eq!(p.view.members.len(), 4);
    assert_eq!(p.view.raw(body, "stream"), Some(&b"true"[..]));
}

#[test]
fn peek_defaults_and_nulls() {
    let p = peek_request(br#"{"model":"m","stream":null,"stream_options":null}"#).unwrap();
    assert!(!p.stream);
    assert_eq!(p.include_usage, None);
    let p = peek_request(br#"{"model":"m","stream_options":{}}"#).unwrap();
    assert_eq!(p.include_usage, None);
    let p = peek_request(br#"{"model":"m","stream_options":{"include_usage":false}}"#).unwrap();
    assert_eq!(p.include_usage, Some(false));
}

#[test]
fn peek_field_errors() {
    assert_eq!(
        peek_request(b"{}").unwrap_err(),
        BodyError::Missing("model")
    );
    assert_eq!(
        peek_request(br#"{"model":null}"#).unwrap_err(),
        BodyError::Missing("model")
    );
    assert_eq!(
        peek_request(br#"{"model":42}"#).unwrap_err(),
        BodyError::WrongType {
            field: "model",
            expected: "a string"
        }
    );
    assert_eq!(
        peek_request(br#"{"model":"m","stream":"yes"}"#).unwrap_err(),
        BodyError::WrongType {
            field: "stream",
            expected: "a boolean"
        }
    );
    assert_eq!(
        peek_request(br#"{"model":"m","stream_options":true}"#).unwrap_err(),
        BodyError::WrongType {
            field: "stream_options",
            expected: "an object"
        }
    );
    assert_eq!(
        peek_request(br#"{"model":"m","stream_options":{"include_usage":1}}"#).unwrap_err(),
        BodyError::WrongType {
            field: "stream_options.include_usage",
            expected: "a boolean"
        }
    );
    assert_eq!(
        BodyError::Missing("model").to_string(),
        "missing required field `model`"
    );
}

#[test]
fn model_replaced_in_place_bytes_around_identical() {
    let body = b"{\n  \"messages\" : [ {\"role\":\"user\",\"content\":\"x\"} ],\n  \"model\" :\t\"gpt-4o\" ,\n  \"temperature\": 0.5\n}\n";
    let out = set_model(body, "llama-3");
    let expected = b"{\n  \"messages\" : [ {\"role\":\"user\",\"content\":\"x\"} ],\n  \"model\" :\t\"llama-3\" ,\n  \"temperature\": 0.5\n}\n";
    assert_eq!(
        String::from_utf8(out).unwrap(),
        String::from_utf8(expected.to_vec()).unwrap()
    );
}

#[test]
fn no_edits_is_identity() {
    let body = b" { \"a\" : 1 , \"b\":[1,2,{\"c\":null}] } \r\n";
    let view = ObjectView::parse(body).unwrap();
    assert_eq!(rewrite(body, &view, &[]), body.to_vec());
}

#[test]
fn stream_options_set_and_added() {
    let body = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
    let view = ObjectView::parse(body).unwrap();
    let edit = [Edit::Set {
        key: "stream_options",
        raw_json: br#"{"include_usage":true}"#,
    }];
    assert_eq!(
        rewrite(body, &view, &edit),
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#.to_vec()
    );

    let body = b"{\"model\":\"m\",\"stream\":true\n}";
    let view = ObjectView::parse(body).unwrap();
    assert_eq!(
        rewrite(body, &view, &edit),
        b"{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}\n}".to_vec()
    );
}

#[test]
fn set_on_empty_object_has_no_leading_comma() {
    for body in [&b"{}"[..], b" { \n } ", b"{\n}"] {
        let view = ObjectView::parse(body).unwrap();
        let out = rewrite(
            body,
            &view,
            &[
                Edit::Set {
                    key: "model",
                    raw_json: b"\"x\"",
                },
                Edit::Set {
                    key: "n",
                    raw_json: b"2",
                },
            ],
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"model": "x", "n": 2}),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
}

#[test]
fn remove_first_middle_last_and_all() {
    let body = b"{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}";
    let view = ObjectView::parse(body).unwrap();
    let rm = |keys: &[&str]| {
        let edits: Vec<Edit> = keys.iter().map(|k| Edit::Remove { key: k }).collect();
        String::from_utf8(rewrite(body, &view, &edits)).unwrap()
    };
    assert_eq!(rm(&["a"]), "{\n  \"b\": 2,\n  \"c\": 3\n}");
    assert_eq!(rm(&["b"]), "{\n  \"a\": 1,\n  \"c\": 3\n}");
    assert_eq!(rm(&["c"]), "{\n  \"a\": 1,\n  \"b\": 2\n}");
    assert_eq!(rm(&["a", "c"]), "{\n  \"b\": 2\n}");
    assert_eq!(rm(&["a", "b", "c"]), "{\n  \n}");
    assert_eq!(rm(&["zzz"]), String::from_utf8(body.to_vec()).unwrap());
}

#[test]
fn remove_then_add_and_last_edit_wins() {
    let body = br#"{"a":1,"b":2}"#;
    let view = ObjectView::parse(body).unwrap();
    let out = rewrite(
        body,
        &view,
        &[
            Edit::Remove { key: "b" },
            Edit::Set {
                key: "c",
                raw_json: b"3",
            },
            Edit::Set {
                key: "a",
                raw_json: b"10",
            },
            Edit::Remove { key: "a" },
            Edit::Set {
                key: "c",
                raw_json: b"4",
            },
        ],
    );
    assert_eq!(out, br#"{"c":4}"#.to_vec());
}

#[test]
fn escaped_keys_match() {
    let body = br#"{"mo\u0064el":"gpt-4o","\"q\"":1}"#;
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "gpt-4o");
    assert_eq!(p.view.members[1].key, "\"q\"");
    let out = set_model(body, "x");
    assert_eq!(out, br#"{"mo\u0064el":"x","\"q\"":1}"#.to_vec());
}

#[test]
fn escaped_string_values_and_surrogates() {
    let body = br#"{"model":"a\"b\\c\/d\n\u00e9\ud83d\ude00\ud800x","k":"\u0041"}"#;
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "a\"b\\c/d\n\u{e9}\u{1F600}\u{FFFD}x");
    assert_eq!(p.view.str_value(body, "k").unwrap().as_deref(), Some("A"));
}

#[test]
fn json_string_matches_serde() {
    for s in [
        "plain",
        "q\"uote",
        "back\\slash",
        "nl\n\r\t\u{8}\u{c}",
        "\u{1}\u{1f}\u{7f}",
        "é😀",
    ] {
        assert_eq!(json_string(s), serde_json::to_vec(s).unwrap(), "{s:?}");
    }
}

#[test]
fn nested_model_keys_untouched() {
    let body = br#"{"metadata":{"model":"inner"},"messages":[{"model":"x"}],"model":"outer"}"#;
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "outer");
    let out = set_model(body, "new");
    assert_eq!(
        out,
        br#"{"metadata":{"model":"inner"},"messages":[{"model":"x"}],"model":"new"}"#.to_vec()
    );
    // Only a nested model: the top level has none.
    let body = br#"{"metadata":{"model":"inner"}}"#;
    assert_eq!(peek_request(body).unwrap_err(), BodyError::Missing("model"));
    let out = set_model(body, "new");
    assert_eq!(
        out,
        br#"{"metadata":{"model":"inner"},"model":"new"}"#.to_vec()
    );
}

#[test]
fn duplicate_keys_last_wins_and_rewrite_leaves_one() {
    let body = br#"{"model":"a","x":1,"model":"b"}"#;
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "b");
    let out = set_model(body, "c");
    assert_eq!(out, br#"{"x":1,"model":"c"}"#.to_vec());
    let view = ObjectView::parse(body).unwrap();
    assert_eq!(
        rewrite(body, &view, &[Edit::Remove { key: "model" }]),
        br#"{"x":1}"#.to_vec()
    );
}

#[test]
fn whitespace_everywhere() {
    let body = b" \r\n\t{ \r\n\t\"model\" \r\n\t: \r\n\t\"m\" \r\n\t, \"stream\"\n:\nfalse\n}\n\t ";
    let p = peek_request(body).unwrap();
    assert_eq!(p.model, "m");
    assert!(!p.stream);
    let out = set_model(body, "z");
    assert_eq!(
        out,
        b" \r\n\t{ \r\n\t\"model\" \r\n\t: \r\n\t\"z\" \r\n\t, \"stream\"\n:\nfalse\n}\n\t "
            .to_vec()
    );
}

#[test]
fn error_kinds() {
    assert_eq!(ObjectView::parse(b"").unwrap_err(), BodyError::Empty);
    assert_eq!(ObjectView::parse(b" \n\t").unwrap_err(), BodyError::Empty);
    assert_eq!(
        ObjectView::parse(b"{\"model\":\"\xff\"}").unwrap_err(),
        BodyError::NotUtf8 { offset: 10 }
    );
    assert_eq!(
        ObjectView::parse(b"[1,2]").unwrap_err(),
        BodyError::NotObject
    );
    assert_eq!(
        ObjectView::parse(b"\"str\"").unwrap_err(),
        BodyError::NotObject
    );
    assert_eq!(
        ObjectView::parse(b" 12 ").unwrap_err(),
        BodyError::NotObject
    );
    assert_eq!(
        ObjectView::parse(b"null").unwrap_err(),
        BodyError::NotObject
    );
}

#[test]
fn json_errors_carry_line_and_column() {
    let d = json_err(b"{\"model\":\"m\",\n\"messages\":[");
    assert_eq!(d, "EOF while parsing a list at line 2 column 12");
    let d = json_err(b"{\"model\":\"m\"} x");
    assert_eq!(d, "trailing characters at line 1 column 15");
    let d = json_err(b"{\"model\":\"m\",}");
    assert!(d.contains("line 1 column 14"), "{d}");
    let d = json_err(b"{\"a\":01}");
    assert!(d.contains("line 1 column"), "{d}");
    assert!(
        ObjectView::parse(b"{\"a\":tru}")
            .unwrap_err()
            .to_string()
            .starts_with("request body is not valid JSON: ")
    );
    // Truncated top-level arrays are syntax errors, not NotObject.
    json_err(b"[1,");
}

#[test]
fn rejects_what_serde_rejects() {
    let bad: &[&[u8]] = &[
        b"{",
        b"}",
        b"{\"a\"}",
        b"{\"a\":}",
        b"{\"a\" 1}",
        b"{a:1}",
        b"{'a':1}",
        b"{\"a\":1,}",
        b"{\"a\":[1,]}",
        b"{\"a\":[,1]}",
        b"{\"a\":{\"b\":1,}}",
        b"{\"a\":-}",
        b"{\"a\":1.}",
        b"{\"a\":.5}",
        b"{\"a\":1e}",
        b"{\"a\":1e+}",
        b"{\"a\":+1}",
        b"{\"a\":00}",
        b"{\"a\":-01}",
        b"{\"a\":NaN}",
        b"{\"a\":nul}",
        b"{\"a\":\"\\x\"}",
        b"{\"a\":\"\\u12\"}",
        b"{\"a\":\"\\u12g4\"}",
        b"{\"a\":\"tab\there\"}",
        b"{\"a\":\"nl\nhere\"}",
        b"{\"a\":\"unterminated}",
        b"{\"a\":1}}",
        b"{\"a\":1}{}",
        b"\xef\xbb\xbf{}",
        b"{\"a\":[1 2]}",
        b"{\"a\":{\"b\" 1}}",
        b"{\"a\":{1:2}}",
        b"{\"a\":1 \"b\":2}",
        b"{\"a\":[}",
        b"{\"a\":{]}",
    ];
    for b in bad {
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(b).is_err(),
            "serde accepts {:?}",
            String::from_utf8_lossy(b)
        );
        let detail = json_err(b);
        assert!(detail.contains(" at line "), "{detail}");
    }
}

#[test]
fn accepts_what_serde_accepts() {
    let good: &[&[u8]] = &[
        b"{\"a\":0}",
        b"{\"a\":-0.0e+0}",
        b"{\"a\":1E-7}",
        b"{\"a\":123456789012345678901234567890}",
        b"{\"a\":\"\\ud800\"}",
        b"{\"a\":\"\\u00E9\\/\\b\\f\"}",
        b"{\"a\":[[],{},[{}],\"\",true,false,null]}",
        b"{\"\":\"\"}",
        b"{\"a\":\"\x7f\"}",
    ];
    for b in good {
        ObjectView::parse(b).unwrap();
    }
}

#[test]
fn deep_nesting_is_fine() {
    let depth = 100_000;
    let mut body = b"{\"a\":".to_vec();
    body.extend(std::iter::repeat_n(b'[', depth));
    body.extend(std::iter::repeat_n(b']', depth));
    body.push(b'}');
    let view = ObjectView::parse(&body).unwrap();
    assert_eq!(view.members.len(), 1);
    // Mixed nesting past the 64-level inline stack.
    let mut body = b"{\"a\":".to_vec();
    for i in 0..200u32 {
        body.extend_from_slice(if i.is_multiple_of(3) {
            b"{\"k\":"
        } else {
            b"["
        });
    }
    body.push(b'1');
    for i in (0..200u32).rev() {
        body.push(if i.is_multiple_of(3) { b'}' } else { b']' });
    }
    body.push(b'}');
    ObjectView::parse(&body).unwrap();
    // A mismatched closer deep down is caught.
    let pos = body.len() - 100;
    body[pos] = if body[pos] == b'}' { b']' } else { b'}' };
    json_err(&body);
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        "(model|stream|\\\\|\"|\n|\u{1}|é|😀){0,4}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("(model|stream|[a-z\"\\\\]{0,6})", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    prop::collection::btree_map(
        "(model|stream|stream_options|messages|[a-z_\"\\\\é]{0,8})",
        json_value(),
        0..8,
    )
    .prop_map(|m| m.into_iter().collect())
}

/// Serialize compactly or prettily, so spans see varied whitespace.
fn encode(obj: &serde_json::Map<String, Value>, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(obj).unwrap()
    } else {
        serde_json::to_vec(obj).unwrap()
    }
}

/// serde's own reading of `body` (its float parsing is not exact, so compare
/// against it rather than the generated value).
fn reparse(body: &[u8]) -> serde_json::Map<String, Value> {
    serde_json::from_slice(body).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn prop_set_model_changes_only_model(obj in json_object(), pretty in any::<bool>(), model in ".{0,10}") {
        let body = encode(&obj, pretty);
        let out = set_model(&body, &model);
        let got: Value = serde_json::from_slice(&out).unwrap();
        let mut want = reparse(&body);
        want.insert("model".to_owned(), Value::from(model));
        prop_assert_eq!(got, Value::Object(want));
    }

    #[test]
    fn prop_remove_removes_exactly_that_key(obj in json_object(), pretty in any::<bool>(), pick in any::<prop::sample::Index>()) {
        let body = encode(&obj, pretty);
        let view = ObjectView::parse(&body).unwrap();
        let key = if obj.is_empty() { "absent".to_owned() } else { obj.keys().nth(pick.index(obj.len())).unwrap().clone() };
        let out = rewrite(&body, &view, &[Edit::Remove { key: &key }]);
        let got: Value = serde_json::from_slice(&out).unwrap();
        let mut want = reparse(&body);
        want.remove(&key);
        prop_assert_eq!(got, Value::Object(want));
    }

    #[test]
    fn prop_view_matches_serde(obj in json_object(), pretty in any::<bool>()) {
        let body = encode(&obj, pretty);
        let view = ObjectView::parse(&body).unwrap();
        prop_assert_eq!(view.members.len(), obj.len());
        for (k, v) in &reparse(&body) {
            let raw = view.raw(&body, k).unwrap();
            let parsed: Value = serde_json::from_slice(raw).unwrap();
            prop_assert_eq!(&parsed, v);
        }
        prop_assert_eq!(body[view.close_brace], b'}');
    }

    /// Our validator and serde_json agree on arbitrary near-JSON input.
    #[test]
    fn prop_validity_agrees_with_serde(s in "[{}\\[\\]\",:0-9eE.+\\-tfrulnas \\\\/\n]{0,24}") {
        let body = format!("{{\"k\":{s}}}");
        let ours = ObjectView::parse(body.as_bytes()).is_ok();
        let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok();
        prop_assert_eq!(ours, theirs, "{:?}", body);
    }

    /// Any sequence of edits equals applying them in order to a map.
    #[test]
    fn prop_edit_sequences_match_map_semantics(
        obj in json_object(),
        pretty in any::<bool>(),
        edits in prop::collection::vec(
            ("(model|stream|stream_options|x|\"q\\\\)", prop::option::of(json_value())),
            0..6,
        ),
    ) {
        let body = encode(&obj, pretty);
        let view = ObjectView::parse(&body).unwrap();
        let raws: Vec<Option<Vec<u8>>> = edits
            .iter()
            .map(|(_, v)| v.as_ref().map(|v| serde_json::to_vec(v).unwrap()))
            .collect();
        let list: Vec<Edit> = edits
            .iter()
            .zip(&raws)
            .map(|((k, _), raw)| match raw {
                Some(raw) => Edit::Set { key: k, raw_json: raw },
                None => Edit::Remove { key: k },
            })
            .collect();
        let out = rewrite(&body, &view, &list);
        let got: Value = serde_json::from_slice(&out).unwrap();
        let mut want = reparse(&body);
        for ((k, _), raw) in edits.iter().zip(&raws) {
            match raw {
                Some(raw) => { want.insert(k.clone(), serde_json::from_slice(raw).unwrap()); }
                None => { want.remove(k); }
            }
        }
        prop_assert_eq!(got, Value::Object(want));
        // The output is itself a valid view with no duplicate keys.
        let again = ObjectView::parse(&out).unwrap();
        let mut keys: Vec<&str> = again.members.iter().map(|m| m.key.as_str()).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        prop_assert_eq!(keys.len(), n);
    }

    /// Single-byte mutations of valid bodies: still agree with serde_json.
    #[test]
    fn prop_mutations_agree_with_serde(
        obj in json_object(),
        pretty in any::<bool>(),
        at in any::<prop::sample::Index>(),
        op in 0u8..3,
        byte in prop::sample::select(b"{}[]\",:0123456789eE.+-tfrulnas \\/\n\tx".to_vec()),
    ) {
        let mut body = encode(&obj, pretty);
        let i = at.index(body.len());
        match op {
            0 => body[i] = byte,
            1 => { body.remove(i); }
            _ => body.insert(i, byte),
        }
        if std::str::from_utf8(&body).is_ok() {
            let ours = ObjectView::parse(&body);
            // IgnoredAny, since Value also rejects numbers that overflow f64.
            let theirs = serde_json::from_slice::<serde::de::IgnoredAny>(&body);
            let is_object = body.trim_ascii_start().first() == Some(&b'{');
            match (&ours, &theirs) {
                (Ok(_), Ok(_)) => prop_assert!(is_object),
                (Err(BodyError::NotObject), Ok(_)) => prop_assert!(!is_object),
                (Err(BodyError::Json { .. }), Err(_)) | (Err(BodyError::Empty), Err(_)) => {}
                _ => prop_assert!(false, "ours {:?} serde {:?} for {:?}", ours.map(|_| ()), theirs, String::from_utf8_lossy(&body)),
            }
        }
    }

    /// Truncating a valid body anywhere yields a Json error (or Empty).
    #[test]
    fn prop_truncation_is_an_error(obj in json_object(), cut in any::<prop::sample::Index>()) {
        let body = encode(&obj, false);
        let at = cut.index(body.len());
        if let Ok(prefix) = std::str::from_utf8(&body[..at]) {
            match ObjectView::parse(prefix.as_bytes()) {
                Err(BodyError::Json { detail }) => prop_assert!(detail.contains(" at line "), "{}", detail),
                Err(BodyError::Empty) => prop_assert!(prefix.trim().is_empty()),
                other => prop_assert!(false, "{:?} for {:?}", other, prefix),
            }
        }
    }
}
