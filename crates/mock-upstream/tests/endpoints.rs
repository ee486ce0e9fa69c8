//! Models, embeddings, images, audio and moderations, checked against the
//! SDK's `Model`, `CreateEmbeddingResponse`, `ImagesResponse`,
//! `Transcription(Verbose)` and `ModerationCreateResponse` types.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use http::Method;
use hyper::body::Bytes;
use mock_upstream::{MockOptions, MockServer};
use serde_json::{Value, json};

async fn server() -> MockServer {
    MockServer::start(MockOptions::default()).await.unwrap()
}

#[tokio::test]
async fn models_list_and_retrieve() {
    let s = server().await;
    let r = get(&s, "/models").await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["object"], "model");
            assert!(m["created"].is_u64());
            assert!(m["owned_by"].is_string());
            m["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids, MockOptions::default().models);

    let m = get(&s, "/models/gpt-4o").await.json();
    assert_eq!(m["id"], "gpt-4o");
    assert_eq!(m["object"], "model");
    let r = get(&s, "/models/nope").await;
    assert_openai_error(&r, 404, "invalid_request_error", Some("model_not_found"));

    let custom = MockServer::start(MockOptions {
        models: vec!["only-one".into()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let v = get(&custom, "/models").await.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        post(&custom, "/chat/completions", chat_body("x"))
            .await
            .status,
        404
    );
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn embeddings_float_shape_and_determinism() {
    let s = server().await;
    let body = json!({"model": "text-embedding-3-small", "input": "hello world"});
    let v = post(&s, "/embeddings", body.clone()).await.json();
    assert_eq!(v["object"], "list");
    assert_eq!(v["model"], "text-embedding-3-small");
    assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["object"], "embedding");
    assert_eq!(data[0]["index"], 0);
    let e = floats(&data[0]["embedding"]);
    assert_eq!(e.len(), 1536);
    assert!((norm(&e) - 1.0).abs() < 1e-3);
    // Same text → same vector; other text → other vector.
    let again = post(&s, "/embeddings", body).await.json();
    assert_eq!(again["data"][0]["embedding"], data[0]["embedding"]);
    let batch = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": ["hello world", "bye"]}),
    )
    .await
    .json();
    let items = batch["data"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["index"], 1);
    assert_eq!(items[0]["embedding"], data[0]["embedding"]);
    assert_ne!(items[1]["embedding"], data[0]["embedding"]);
    assert_eq!(batch["usage"]["prompt_tokens"], 4);
}

#[tokio::test]
async fn embeddings_base64_dimensions_and_token_input() {
    let s = server().await;
    let float = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": "abc"}),
    )
    .await
    .json();
    let b64 = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": "abc", "encoding_format": "base64"}),
    )
    .await
    .json();
    let raw = b64decode(b64["data"][0]["embedding"].as_str().unwrap());
    assert_eq!(raw.len(), 1536 * 4);
    let decoded: Vec<f32> = raw
        .chunks(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let expected = floats(&float["data"][0]["embedding"]);
    for (d, e) in decoded.iter().zip(&expected) {
        assert!((f64::from(*d) - e).abs() < 1e-6);
    }

    let short = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": "abc", "dimensions": 256}),
    )
    .await
    .json();
    let e = floats(&short["data"][0]["embedding"]);
    assert_eq!(e.len(), 256);
    assert!((norm(&e) - 1.0).abs() < 1e-3);

    let tokens = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": [[1, 2, 3], [4, 5]]}),
    )
    .await
    .json();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["usage"]["prompt_tokens"], 5);
    let single = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": [1, 2, 3]}),
    )
    .await
    .json();
    assert_eq!(single["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        single["data"][0]["embedding"],
        tokens["data"][0]["embedding"]
    );
}

#[tokio::test]
async fn embeddings_errors() {
    let s = server().await;
    let r = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": ""}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .starts_with("'$.input' is invalid.")
    );
    let r = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small"}),
    )
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
    let r = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-3-small", "input": "x", "encoding_format": "hex"}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("invalid_value"));
    assert_eq!(
        r.error()["message"],
        "Invalid value: 'hex'. Supported values are: 'float' and 'base64'."
    );
    let r = post(
        &s,
        "/embeddings",
        json!({"model": "text-embedding-9", "input": "x"}),
    )
    .await;
    assert_openai_error(&r, 404, "invalid_request_error", Some("model_not_found"));
}

#[tokio::test]
async fn images_url_and_b64() {
    let s = server().await;
    let v = post(
        &s,
        "/images/generations",
        json!({"model": "dall-e-3", "prompt": "a cat", "n": 2}),
    )
    .await
    .json();
    assert!(v["created"].is_u64());
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for img in data {
        assert_eq!(img["revised_prompt"], "a cat");
        let url = img["url"].as_str().unwrap();
        assert!(url.starts_with(&format!("http://{}/", s.addr())), "{url}");
        // The URL is served by the mock itself (no auth, like blob URLs).
        let png = send(Method::GET, url, None, None, Bytes::new()).await;
        assert_eq!(png.status, 200);
        assert_eq!(png.header("content-type"), Some("image/png"));
        assert_eq!(&png.body[..8], b"\x89PNG\r\n\x1a\n");
    }
    assert_ne!(data[0]["url"], data[1]["url"]);

    let v = post(
        &s,
        "/images/generations",
        json!({"model": "dall-e-3", "prompt": "a dog", "response_format": "b64_json"}),
    )
    .await
    .json();
    let png = b64decode(v["data"][0]["b64_json"].as_str().unwrap());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(v["data"][0].get("url").is_none());

    let r = post(&s, "/images/generations", json!({"model": "dall-e-3"})).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
}

fn audio_bytes(len: usize) -> Vec<u8> {
    // Includes CR/LF and dashes so a sloppy multipart parser would corrupt it.
    (0..len)
        .map(|i| b"\r\n--ab\x00\xff"[i % 8] ^ (i / 8) as u8)
        .collect()
}

async fn upload(s: &MockServer, path: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Resp {
    let boundary = "----mockboundary7MA4YWxkTrZu0gW";
    send(
        Method::POST,
        &url(s, path),
        Some(KEY),
        Some(&format!("multipart/form-data; boundary={boundary}")),
        multipart(boundary, parts),
    )
    .await
}

#[tokio::test]
async fn transcription_reports_exact_upload() {
    let s = server().await;
    let audio = audio_bytes(12_345);
    let r = upload(
        &s,
        "/audio/transcriptions",
        &[
            ("file", Some("audio.mp3"), &audio),
            ("model", None, b"whisper-1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert_eq!(
        v["text"],
        "mock transcription of audio.mp3 (12345 bytes) by whisper-1"
    );
    assert_eq!(v["usage"]["type"], "duration");

    let r = upload(
        &s,
        "/audio/transcriptions",
        &[
            ("model", None, b"whisper-1"),
            ("response_format", None, b"text"),
            ("file", Some("a.wav"), &audio[..100]),
        ],
    )
    .await;
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(
        r.text(),
        "mock transcription of a.wav (100 bytes) by whisper-1\n"
    );

    let r = upload(
        &s,
        "/audio/transcriptions",
        &[
            ("file", Some("long.mp3"), &audio),
            ("model", None, b"whisper-1"),
            ("response_format", None, b"verbose_json"),
            ("timestamp_granularities[]", None, b"word"),
        ],
    )
    .await;
    let v = r.json();
    assert_eq!(v["task"], "transcribe");
    assert_eq!(v["language"], "english");
    assert_eq!(v["duration"].as_f64().unwrap(), 0.77);
    let seg = &v["segments"][0];
    for field in [
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    ] {
        assert!(seg.get(field).is_some(), "segment.{field}");
    }
    assert_eq!(v["words"].as_array().unwrap().len(), 8);

    let r = upload(
        &s,
        "/audio/translations",
        &[
            ("file", Some("x.m4a"), &audio[..10]),
            ("model", None, b"whisper-1"),
        ],
    )
    .await;
    assert_eq!(
        r.json()["text"],
        "mock translation of x.m4a (10 bytes) by whisper-1"
    );
}

#[tokio::test]
async fn transcription_errors() {
    let s = server().await;
    let r = upload(
        &s,
        "/audio/transcriptions",
        &[("model", None, b"whisper-1")],
    )
    .await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
    assert_eq!(r.error()["param"], "file");
    let r = upload(
        &s,
        "/audio/transcriptions",
        &[("file", Some("a.mp3"), b"xyz")],
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(r.error()["message"], "you must provide a model parameter");
    let r = post(&s, "/audio/transcriptions", json!({"model": "whisper-1"})).await;
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert!(
        r.error()["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid Content-Type header (application/json)")
    );
    let r = upload(
        &s,
        "/audio/transcriptions",
        &[
            ("file", Some("a.mp3"), b"xyz"),
            ("model", None, b"whisper-2"),
        ],
    )
    .await;
    assert_openai_error(&r, 404, "invalid_request_error", Some("model_not_found"));
}

#[tokio::test]
async fn speech_streams_deterministic_bytes() {
    let s = server().await;
    let resp = send_raw(
        Method::POST,
        &url(&s, "/audio/speech"),
        Some(KEY),
        Some("application/json"),
        json!({"model": "tts-1", "input": "hello", "voice": "alloy"}).to_string(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "audio/mpeg");
    assert!(
        resp.headers().get("content-length").is_none(),
        "speech is streamed"
    );
    let (frames, errored) = frames_timed(resp).await;
    assert!(!errored);
    assert!(frames.len() > 1, "speech arrives in several chunks");
    let audio: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(audio.len(), 5000);
    assert!(audio.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));

    let r = post(
        &s,
        "/audio/speech",
        json!({"model": "tts-1", "input": "é".repeat(2000), "voice": "nova", "response_format": "wav"}),
    )
    .await;
    assert_eq!(r.header("content-type"), Some("audio/wav"));
    assert_eq!(r.body.len(), 1 << 20);

    let r = post(&s, "/audio/speech", json!({"model": "tts-1", "input": "x"})).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
    assert_eq!(r.error()["param"], "voice");
    let r = post(
        &s,
        "/audio/speech",
        json!({"model": "tts-1", "input": "x", "voice": "alloy", "response_format": "ogg"}),
    )
    .await;
    assert_openai_error(&r, 400, "invalid_request_error", Some("invalid_value"));
}

const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

#[tokio::test]
async fn moderations_flag_trigger_words() {
    let s = server().await;
    let v = post(
        &s,
        "/moderations",
        json!({"input": ["I will KILL the process", "hello", "please FLAG_ME", "flag_me"]}),
    )
    .await
    .json();
    assert!(v["id"].as_str().unwrap().starts_with("modr-"));
    assert_eq!(v["model"], "omni-moderation-latest");
    let results = v["results"].as_array().unwrap();
    let flagged: Vec<bool> = results
        .iter()
        .map(|r| r["flagged"].as_bool().unwrap())
        .collect();
    assert_eq!(flagged, [true, false, true, false]);
    for r in results {
        for c in CATEGORIES {
            assert!(r["categories"][c].is_boolean(), "categories.{c}");
            assert!(r["category_scores"][c].is_f64(), "category_scores.{c}");
            assert_eq!(r["category_applied_input_types"][c], json!(["text"]));
        }
        assert_eq!(r["categories"]["violence"], r["flagged"]);
    }
    assert_eq!(results[0]["category_scores"]["violence"], 0.98);

    let v = post(
        &s,
        "/moderations",
        json!({"model": "omni-moderation-latest", "input": [
            {"type": "text", "text": "kill"},
            {"type": "image_url", "image_url": {"url": "https://example.invalid/x.png"}},
        ]}),
    )
    .await
    .json();
    let r = &v["results"][0];
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(r["flagged"], true);
    assert_eq!(
        r["category_applied_input_types"]["violence"],
        json!(["text", "image"])
    );
    assert_eq!(r["category_applied_input_types"]["hate"], json!(["text"]));

    let r = post(&s, "/moderations", json!({})).await;
    assert_openai_error(
        &r,
        400,
        "invalid_request_error",
        Some("missing_required_parameter"),
    );
}
