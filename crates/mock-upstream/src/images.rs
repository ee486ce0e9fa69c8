//! `POST /v1/images/generations`, plus the local URLs its `url` results point at.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::Ctx;
use crate::util::{alnum_id, base64, unix_now};

/// `url` results are served by the mock itself, so nothing reaches the internet.
pub(crate) const FILES_PREFIX: &str = "/mock-files/";

/// A valid 1×1 transparent PNG: every generated image is this picture.
pub(crate) const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00,
    0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE,
    0x42, 0x60, 0x82,
];

pub(crate) fn file() -> Response<Body> {
    body::response(
        StatusCode::OK,
        "image/png",
        body::full(Bytes::from_static(PNG)),
    )
}

fn public_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

pub(crate) fn handle(ctx: &Ctx<'_>, v: &Value) -> Result<Response<Body>, ApiError> {
    let prompt = match v.get("prompt") {
        None | Some(Value::Null) => return Err(ApiError::missing("prompt")),
        Some(Value::String(p)) => p.as_str(),
        Some(other) => return Err(ApiError::invalid_type("prompt", "a string", other)),
    };
    let model = match v.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.as_str()),
        Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    let n = match v.get("n") {
        None | Some(Value::Null) => 1,
        Some(n) => match n.as_i64() {
            Some(n) if n < 1 => return Err(ApiError::below_min("n", 1, n)),
            Some(n) if n > 10 => return Err(ApiError::above_max("n", 10, n)),
            Some(n) => n as usize,
            None => return Err(ApiError::invalid_type("n", "an integer", n)),
        },
    };
    let gpt_image = model.is_some_and(|m| m.starts_with("gpt-image"));
    let b64 = match v.get("response_format") {
        None | Some(Value::Null) => gpt_image,
        Some(Value::String(f)) if f == "url" => gpt_image,
        Some(Value::String(f)) if f == "b64_json" => true,
        Some(Value::String(f)) => {
            return Err(ApiError::invalid_value(
                "response_format",
                f,
                &["url", "b64_json"],
            ));
        }
        Some(other) => return Err(ApiError::invalid_type("response_format", "a string", other)),
    };
    if let Some(m) = model
        && !ctx.shared.has_model(m)
    {
        return Err(ApiError::model_not_found(m));
    }
    let model = model.unwrap_or("dall-e-2");
    let addr = public_addr(ctx.shared.addr);
    let data: Vec<Value> = (0..n)
        .map(|i| {
            let mut item = Map::new();
            if b64 {
                item.insert("b64_json".into(), json!(base64(PNG)));
            } else {
                let name = alnum_id(
                    "img-",
                    ctx.shared.id_seed ^ ctx.seq ^ ((i as u64) << 40),
                    24,
                );
                item.insert(
                    "url".into(),
                    json!(format!("http://{addr}{FILES_PREFIX}{name}.png")),
                );
            }
            // Only DALL·E 3 rewrites prompts.
            if model == "dall-e-3" {
                item.insert("revised_prompt".into(), json!(prompt));
            }
            Value::Object(item)
        })
        .collect();
    let mut out = json!({"created": unix_now(), "data": data});
    if gpt_image && let Some(obj) = out.as_object_mut() {
        let input_tokens = prompt.chars().count().div_ceil(4).max(1) as u64;
        obj.insert("background".into(), json!("opaque"));
        obj.insert("output_format".into(), json!("png"));
        obj.insert("quality".into(), json!("low"));
        obj.insert("size".into(), json!("1024x1024"));
        obj.insert(
            "usage".into(),
            json!({
                "input_tokens": input_tokens,
                "input_tokens_details": {"text_tokens": input_tokens, "image_tokens": 0},
                "output_tokens": 272 * n,
                "total_tokens": input_tokens + 272 * n as u64,
            }),
        );
    }
    Ok(body::json(StatusCode::OK, out.to_string()))
}
