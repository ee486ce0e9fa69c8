//! `POST /v1/moderations`: flags inputs containing "kill" (any case) or
//! "FLAG_ME" (exact case), under `violence`.

use http::{Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::Ctx;
use crate::util::{fnv1a64, hex_id};

/// Every category OpenAI reports, and whether it also applies to images.
const CATEGORIES: [(&str, bool); 13] = [
    ("harassment", false),
    ("harassment/threatening", false),
    ("hate", false),
    ("hate/threatening", false),
    ("illicit", false),
    ("illicit/violent", false),
    ("self-harm", true),
    ("self-harm/instructions", true),
    ("self-harm/intent", true),
    ("sexual", true),
    ("sexual/minors", false),
    ("violence", true),
    ("violence/graphic", true),
];

pub(crate) fn is_flagged(text: &str) -> bool {
    text.to_lowercase().contains("kill") || text.contains("FLAG_ME")
}

struct Input {
    text: String,
    has_text: bool,
    has_image: bool,
}

fn inputs(input: &Value) -> Result<Vec<Input>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            None,
            None,
        )
    };
    match input {
        Value::String(s) => Ok(vec![Input {
            text: s.clone(),
            has_text: true,
            has_image: false,
        }]),
        Value::Array(a) if a.is_empty() => Err(bad()),
        Value::Array(a) if a.iter().all(Value::is_string) => Ok(a
            .iter()
            .map(|s| Input {
                text: s.as_str().unwrap_or("").to_owned(),
                has_text: true,
                has_image: false,
            })
            .collect()),
        // Multi-modal parts are moderated together as one input.
        Value::Array(parts) => {
            let mut one = Input {
                text: String::new(),
                has_text: false,
                has_image: false,
            };
            for p in parts {
                match p.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = p.get("text").and_then(Value::as_str).ok_or_else(bad)?;
                        if one.has_text {
                            one.text.push(' ');
                        }
                        one.text.push_str(t);
                        one.has_text = true;
                    }
                    Some("image_url") => one.has_image = true,
                    _ => return Err(bad()),
                }
            }
            Ok(vec![one])
        }
        _ => Err(bad()),
    }
}

fn result(input: &Input) -> Value {
    let flagged = is_flagged(&input.text);
    let hash = fnv1a64(input.text.as_bytes());
    let mut categories = Map::new();
    let mut scores = Map::new();
    let mut applied = Map::new();
    for (k, (name, images)) in CATEGORIES.iter().enumerate() {
        let hit = flagged && *name == "violence";
        categories.insert((*name).into(), json!(hit));
        let score = if hit {
            0.98
        } else {
            // Tiny, input-dependent noise like a real classifier's.
            ((hash >> (k * 4)) & 0xff) as f64 / 1_000_000.0 + 0.000_001
        };
        scores.insert((*name).into(), json!(score));
        let mut types = Vec::new();
        if input.has_text {
            types.push("text");
        }
        if input.has_image && *images {
            types.push("image");
        }
        applied.insert((*name).into(), json!(types));
    }
    json!({
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": applied,
    })
}

pub(crate) fn handle(ctx: &Ctx<'_>, v: &Value) -> Result<Response<Body>, ApiError> {
    let items = match v.get("input") {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(input) => inputs(input)?,
    };
    let model = match v.get("model") {
        None | Some(Value::Null) => "omni-moderation-latest",
        Some(Value::String(m)) => {
            if !ctx.shared.has_model(m) {
                return Err(ApiError::model_not_found(m));
            }
            m.as_str()
        }
        Some(other) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    let results: Vec<Value> = items.iter().map(result).collect();
    let out = json!({
        "id": hex_id("modr-", ctx.shared.id_seed ^ ctx.seq),
        "model": model,
        "results": results,
    });
    Ok(body::json(StatusCode::OK, out.to_string()))
}
