//! Model discovery for providers configured without `model`: ask the upstream's models
//! endpoint at start-up, as uni-api does. A failure is a warning, never a crash: the provider
//! then serves no model until the next reload.

use std::time::Duration;

use serde_json::Value;

use crate::config::schema::{Config, ModelEntry, ProviderConfig};
use crate::providers::client::UpstreamClient;
use crate::providers::engine::{self, Engine};
use crate::providers::urls;

const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(15);

/// Fill in `model` for every provider that has none. Returns one warning per failure.
pub async fn discover_models(config: &mut Config, client: &UpstreamClient) -> Vec<String> {
    let mut warnings = Vec::new();
    let global_proxy = config.preferences.proxy.clone();
    for p in config.providers.iter_mut().filter(|p| p.model.is_none()) {
        let proxy = p.preferences.proxy.clone().or_else(|| global_proxy.clone());
        match discover_one(p, client, proxy.as_deref()).await {
            Ok(ids) => {
                tracing::info!(provider = %p.provider, count = ids.len(), "discovered models");
                p.model = Some(
                    ids.into_iter()
                        .map(|id| ModelEntry {
                            upstream: id.clone(),
                            alias: id,
                            pos: p.pos,
                        })
                        .collect(),
                );
            }
            Err(e) => {
                warnings.push(format!(
                    "provider `{}`: could not list its models ({e}); it serves no model until the config is reloaded",
                    p.provider
                ));
                p.model = Some(Vec::new());
            }
        }
    }
    warnings
}

/// `proxy`: the provider's (or the global) proxy, used for discovery as for requests.
async fn discover_one(
    p: &ProviderConfig,
    client: &UpstreamClient,
    proxy: Option<&str>,
) -> Result<Vec<String>, String> {
    let base = p.base_url.as_deref().ok_or("no base_url")?;
    let forced = p.engine.as_deref().and_then(Engine::from_name);
    let engine = engine::detect(base, forced, "gpt");
    let key = p.api.first().cloned().unwrap_or_default();
    let (url, headers): (String, Vec<(&str, String)>) = match engine {
        Engine::Gemini => {
            let root = base.trim_end_matches('/');
            (format!("{root}/models?key={key}"), vec![])
        }
        Engine::Claude => (
            format!("{}/models", urls::api_root(base)),
            vec![
                ("x-api-key", key),
                ("anthropic-version", "2023-06-01".to_string()),
            ],
        ),
        Engine::Demo => return Ok(Vec::new()),
        _ => (
            format!("{}/models", urls::api_root(base)),
            if key.is_empty() {
                vec![]
            } else {
                vec![("authorization", format!("Bearer {key}"))]
            },
        ),
    };
    let (status, body) = client
        .get_text_via(proxy, &url, &headers, DISCOVERY_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    parse_model_list(&body).ok_or_else(|| "unrecognised models list".to_string())
}

/// OpenAI/Anthropic `{"data":[{"id"}]}` or Gemini `{"models":[{"name":"models/x"}]}`.
pub fn parse_model_list(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    if let Some(data) = v.get("data").and_then(Value::as_array) {
        return Some(
            data.iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
                .collect(),
        );
    }
    let models = v.get("models").and_then(Value::as_array)?;
    Some(
        models
            .iter()
            .filter_map(|m| m.get("name").and_then(Value::as_str))
            .map(|n| n.strip_prefix("models/").unwrap_or(n).to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_model_list;

    #[test]
    fn parses_openai_and_gemini_lists() {
        let openai = br#"{"object":"list","data":[{"id":"gpt-4o","object":"model"},{"id":"o3"}]}"#;
        assert_eq!(
            parse_model_list(openai),
            Some(vec!["gpt-4o".into(), "o3".into()])
        );
        let gemini = br#"{"models":[{"name":"models/gemini-2.5-flash"}]}"#;
        assert_eq!(
            parse_model_list(gemini),
            Some(vec!["gemini-2.5-flash".into()])
        );
        assert_eq!(parse_model_list(b"nope"), None);
    }
}
