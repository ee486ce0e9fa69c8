//! `POST /v1/audio/speech` (streamed binary) and
//! `POST /v1/audio/transcriptions|translations` (multipart upload).

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Value, json};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::multipart::Form;
use crate::server::{Ctx, Streamed};

/// Speech output grows by this many bytes per input character...
pub(crate) const SPEECH_BYTES_PER_CHAR: usize = 1000;
/// ...up to this cap.
pub(crate) const SPEECH_MAX_BYTES: usize = 1 << 20;
/// Size of each streamed speech chunk.
pub(crate) const SPEECH_CHUNK: usize = 4096;
/// Upload bytes per second of "audio", for `duration`.
pub(crate) const AUDIO_BYTES_PER_SEC: f64 = 16_000.0;

/// Byte `i` of every speech body.
pub(crate) fn speech_byte(i: usize) -> u8 {
    (i % 251) as u8
}

const FORMATS: [(&str, &str); 6] = [
    ("mp3", "audio/mpeg"),
    ("opus", "audio/opus"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/pcm"),
];

pub(crate) fn speech(ctx: &Ctx<'_>, v: &Value) -> Result<Response<Body>, ApiError> {
    let model = match v.get("model") {
        None | Some(Value::Null) => return Err(ApiError::no_model()),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    let input = match v.get("input") {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(ApiError::invalid_type("input", "a string", other)),
    };
    let chars = input.chars().count();
    if chars > 4096 {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'input': string too long. Expected a string with maximum length 4096, but got a string with length {chars} instead."
            ),
            Some("input"),
            Some("string_above_max_length"),
        ));
    }
    match v.get("voice") {
        None | Some(Value::Null) => return Err(ApiError::missing("voice")),
        Some(Value::String(_) | Value::Object(_)) => {}
        Some(other) => return Err(ApiError::invalid_type("voice", "a string", other)),
    }
    let content_type = match v.get("response_format") {
        None | Some(Value::Null) => "audio/mpeg",
        Some(Value::String(f)) => match FORMATS.iter().find(|(name, _)| name == f) {
            Some((_, ct)) => ct,
            None => {
                let names: Vec<&str> = FORMATS.iter().map(|(n, _)| *n).collect();
                return Err(ApiError::invalid_value("response_format", f, &names));
            }
        },
        Some(other) => return Err(ApiError::invalid_type("response_format", "a string", other)),
    };
    if !ctx.shared.has_model(model) {
        return Err(ApiError::model_not_found(model));
    }
    let len = (chars * SPEECH_BYTES_PER_CHAR).min(SPEECH_MAX_BYTES);
    let audio = Bytes::from((0..len).map(speech_byte).collect::<Vec<u8>>());
    let chunks = body::split(&audio, SPEECH_CHUNK);
    let stream = body::paced(chunks, ctx.shared.chunk_delay, ctx.mode.drop_after);
    let mut resp = body::response(StatusCode::OK, content_type, stream);
    resp.extensions_mut().insert(Streamed);
    Ok(resp)
}

fn timestamp(secs: f64, sep: char) -> String {
    let total_ms = (secs * 1000.0).round() as u64;
    let (h, m, s, ms) = (
        total_ms / 3_600_000,
        (total_ms / 60_000) % 60,
        (total_ms / 1000) % 60,
        total_ms % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

pub(crate) fn transcription(
    ctx: &Ctx<'_>,
    form: &Form,
    translate: bool,
) -> Result<Response<Body>, ApiError> {
    let Some(file) = form.get("file") else {
        return Err(ApiError::missing("file"));
    };
    let Some(model) = form.text("model").filter(|m| !m.is_empty()) else {
        return Err(ApiError::no_model());
    };
    let format = form.text("response_format").unwrap_or("json");
    const SUPPORTED: [&str; 5] = ["json", "text", "srt", "verbose_json", "vtt"];
    if !SUPPORTED.contains(&format) {
        return Err(ApiError::invalid_value(
            "response_format",
            format,
            &SUPPORTED,
        ));
    }
    if !ctx.shared.has_model(model) {
        return Err(ApiError::model_not_found(model));
    }
    let filename = file.filename.as_deref().unwrap_or("file");
    let bytes = file.data.len();
    let verb = if translate {
        "translation"
    } else {
        "transcription"
    };
    let text = format!("mock {verb} of {filename} ({bytes} bytes) by {model}");
    let duration = (bytes as f64 / AUDIO_BYTES_PER_SEC * 100.0).round() / 100.0;
    let usage = json!({"type": "duration", "seconds": duration.ceil() as u64});

    let plain = |s: String| {
        Ok(body::response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            body::full(s),
        ))
    };
    match format {
        "text" => plain(format!("{text}\n")),
        "srt" => plain(format!(
            "1\n{} --> {}\n{text}\n\n",
            timestamp(0.0, ','),
            timestamp(duration, ',')
        )),
        "vtt" => plain(format!(
            "WEBVTT\n\n{} --> {}\n{text}\n\n",
            timestamp(0.0, '.'),
            timestamp(duration, '.')
        )),
        "verbose_json" => {
            let word_count = text.split_whitespace().count();
            let tokens: Vec<u64> = (0..word_count as u64).map(|i| 50_364 + i).collect();
            let language = if translate {
                "english"
            } else {
                form.text("language").unwrap_or("english")
            };
            let mut out = json!({
                "task": if translate { "translate" } else { "transcribe" },
                "language": language,
                "duration": duration,
                "text": text,
                "segments": [{
                    "id": 0,
                    "seek": 0,
                    "start": 0.0,
                    "end": duration,
                    "text": text,
                    "tokens": tokens,
                    "temperature": 0.0,
                    "avg_logprob": -0.25,
                    "compression_ratio": 1.0,
                    "no_speech_prob": 0.01,
                }],
                "usage": usage,
            });
            if form.all_text("timestamp_granularities[]").contains(&"word")
                && let Some(obj) = out.as_object_mut()
            {
                let step = duration / word_count.max(1) as f64;
                let words: Vec<Value> = text
                    .split_whitespace()
                    .enumerate()
                    .map(|(i, w)| json!({"word": w, "start": step * i as f64, "end": step * (i + 1) as f64}))
                    .collect();
                obj.insert("words".into(), json!(words));
            }
            Ok(body::json(StatusCode::OK, out.to_string()))
        }
        _ => {
            let out = if translate {
                json!({"text": text})
            } else {
                json!({"text": text, "usage": usage})
            };
            Ok(body::json(StatusCode::OK, out.to_string()))
        }
    }
}
