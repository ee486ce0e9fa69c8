//! `POST /v1/embeddings`: deterministic unit vectors seeded by the input.

use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::body::{self, Body};
use crate::errors::ApiError;
use crate::server::{Ctx, TokenUsage};
use crate::util::{base64, fnv1a64, splitmix64, tokens_for_chars};

/// Native width of a model's vectors (`dimensions` may only shorten it).
fn native_dims(model: &str) -> usize {
    if model.contains("3-large") {
        3072
    } else {
        1536
    }
}

/// The first `dims` components of the input's full pseudo-random vector,
/// renormalised to unit length — the same contract as OpenAI's shortened
/// `text-embedding-3-*` vectors.
pub(crate) fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut state = seed;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            let x = splitmix64(&mut state);
            ((x >> 40) as f32 / 16_777_216.0) * 2.0 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x /= norm;
        }
    }
    v
}

fn invalid_input() -> ApiError {
    ApiError::invalid(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
        None,
        None,
    )
}

/// Seed for a token-id input: the ids' little-endian bytes.
fn token_seed(ids: &[Value]) -> Option<u64> {
    let mut bytes = Vec::with_capacity(ids.len() * 8);
    for id in ids {
        bytes.extend_from_slice(&id.as_i64()?.to_le_bytes());
    }
    Some(fnv1a64(&bytes))
}

/// (seed, prompt tokens) for each input item.
fn items(input: &Value) -> Result<Vec<(u64, u64)>, ApiError> {
    match input {
        Value::String(s) if s.is_empty() => Err(invalid_input()),
        Value::String(s) => Ok(vec![(
            fnv1a64(s.as_bytes()),
            tokens_for_chars(s.chars().count()),
        )]),
        Value::Array(a) if a.is_empty() => Err(invalid_input()),
        Value::Array(a) if a.iter().all(Value::is_string) => a
            .iter()
            .map(|s| match s.as_str() {
                Some(s) if !s.is_empty() => {
                    Ok((fnv1a64(s.as_bytes()), tokens_for_chars(s.chars().count())))
                }
                _ => Err(invalid_input()),
            })
            .collect(),
        Value::Array(a) if a.iter().all(Value::is_i64) => {
            let seed = token_seed(a).ok_or_else(invalid_input)?;
            Ok(vec![(seed, a.len() as u64)])
        }
        Value::Array(a) => a
            .iter()
            .map(|ids| match ids.as_array() {
                Some(ids) if !ids.is_empty() => token_seed(ids)
                    .map(|s| (s, ids.len() as u64))
                    .ok_or_else(invalid_input),
                _ => Err(invalid_input()),
            })
            .collect(),
        _ => Err(invalid_input()),
    }
}

/// Prompt tokens of a request, as its `usage` will report them (`None` when
/// the input is invalid).
pub(crate) fn prompt_tokens_of(v: &Value) -> Option<u64> {
    let items = items(v.get("input")?).ok()?;
    Some(items.iter().map(|(_, t)| t).sum())
}

#[derive(Serialize)]
#[serde(untagged)]
enum Embedding {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Item {
    object: &'static str,
    index: usize,
    embedding: Embedding,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct Out<'a> {
    object: &'static str,
    data: Vec<Item>,
    model: &'a str,
    usage: Usage,
}

/// `azure`: `Some(deployment)` on Azure's routes (the deployment, when the
/// path names one, is the model; unknown ones are `DeploymentNotFound`).
pub(crate) fn handle(
    ctx: &Ctx<'_>,
    v: &Value,
    azure: Option<Option<&str>>,
) -> Result<Response<Body>, ApiError> {
    let model = match (azure, v.get("model")) {
        (Some(Some(deployment)), _) => deployment,
        (_, None | Some(Value::Null)) => return Err(ApiError::no_model()),
        (_, Some(Value::String(m))) => m.as_str(),
        (_, Some(other)) => return Err(ApiError::invalid_type("model", "a string", other)),
    };
    let items = match v.get("input") {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(input) => items(input)?,
    };
    let base64_out = match v.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(Value::String(f)) => {
            return Err(ApiError::invalid_value(
                "encoding_format",
                f,
                &["float", "base64"],
            ));
        }
        Some(other) => return Err(ApiError::invalid_type("encoding_format", "a string", other)),
    };
    let native = native_dims(model);
    let dims = match v.get("dimensions") {
        None | Some(Value::Null) => native,
        Some(d) => {
            let Some(d) = d.as_i64() else {
                return Err(ApiError::invalid_type("dimensions", "an integer", d));
            };
            if model == "text-embedding-ada-002" {
                return Err(ApiError::invalid(
                    "This model does not support specifying dimensions.",
                    None,
                    None,
                ));
            }
            if d < 1 {
                return Err(ApiError::below_min("dimensions", 1, d));
            }
            if d as usize > native {
                return Err(ApiError::above_max("dimensions", native as i64, d));
            }
            d as usize
        }
    };
    if !ctx.shared.has_model(model) {
        return Err(match azure {
            Some(_) => crate::azure::deployment_not_found(),
            None => ApiError::model_not_found(model),
        });
    }

    let prompt_tokens = items.iter().map(|(_, t)| t).sum();
    let data = items
        .iter()
        .enumerate()
        .map(|(index, (seed, _))| {
            let vec = vector(*seed, dims);
            let embedding = if base64_out {
                let mut raw = Vec::with_capacity(vec.len() * 4);
                for x in &vec {
                    raw.extend_from_slice(&x.to_le_bytes());
                }
                Embedding::Base64(base64(&raw))
            } else {
                Embedding::Floats(vec)
            };
            Item {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let out = Out {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    let bytes = serde_json::to_vec(&out).map_err(|_| ApiError::server_error())?;
    let mut resp = body::json(StatusCode::OK, bytes);
    resp.extensions_mut().insert(TokenUsage {
        input: prompt_tokens,
        output: 0,
        output_per_choice: 0,
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let a = vector(42, 1536);
        assert_eq!(a, vector(42, 1536));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
        assert_ne!(a, vector(43, 1536));
    }
}
