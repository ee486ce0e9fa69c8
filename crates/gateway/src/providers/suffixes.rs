//! uni-api's model-name conventions for reasoning (reference uni-api.md §2.11), applied when a
//! request is converted for a Claude or Gemini upstream:
//! - Claude: an alias containing `think` turns extended thinking on, with a budget of 4096
//!   tokens or the alias's last `-` segment when that is a number below `max_tokens`.
//! - Gemini: `<model>-think-<N>` sets the thinking budget (clamped to what the model accepts;
//!   0 turns thinking off) and is stripped from the model name sent upstream; Gemini 3 models
//!   get the nearest thinking level instead.
//!
//! An explicit reasoning setting in the request always wins over a suffix.

use protocol::ir::{ChatRequest, Reasoning};

use crate::providers::engine::Engine;

const CLAUDE_DEFAULT_BUDGET: u64 = 4096;

/// The model name to send upstream: Gemini's `-think-N` suffix removed.
pub fn upstream_model(engine: Engine, model: &str) -> &str {
    match engine {
        Engine::Gemini | Engine::VertexGemini => match think_suffix(model) {
            Some((base, _)) => base,
            None => model,
        },
        _ => model,
    }
}

/// `(base, N)` for `base-think-N`.
fn think_suffix(model: &str) -> Option<(&str, i64)> {
    let at = model.rfind("-think-")?;
    let n = model[at + "-think-".len()..].parse::<i64>().ok()?;
    Some((&model[..at], n))
}

/// Sets `req.reasoning` from the alias and upstream model names, unless the client set it.
pub fn apply(req: &mut ChatRequest, engine: Engine, alias: &str, upstream: &str) {
    if req
        .reasoning
        .as_ref()
        .is_some_and(|r| r.effort.is_some() || r.budget_tokens.is_some() || r.enabled.is_some())
    {
        return;
    }
    match engine {
        Engine::Claude | Engine::VertexClaude | Engine::Aws | Engine::AzureDatabricks => {
            if !alias.to_ascii_lowercase().contains("think") {
                return;
            }
            let budget = alias
                .rsplit('-')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .filter(|b| req.max_tokens.is_none_or(|max| *b < max))
                .unwrap_or(CLAUDE_DEFAULT_BUDGET);
            req.reasoning = Some(Reasoning {
                budget_tokens: Some(budget),
                enabled: Some(true),
                ..Reasoning::default()
            });
        }
        Engine::Gemini | Engine::VertexGemini => {
            let Some((base, n)) = think_suffix(alias).or_else(|| think_suffix(upstream)) else {
                return;
            };
            let base = base.to_ascii_lowercase();
            if base.contains("gemini-3") {
                req.reasoning = Some(Reasoning {
                    effort: Some(gemini3_level(&base, n).to_string()),
                    ..Reasoning::default()
                });
                return;
            }
            let budget = clamp_gemini_budget(&base, n);
            req.reasoning = Some(if budget == 0 {
                Reasoning {
                    budget_tokens: Some(0),
                    enabled: Some(false),
                    include_thoughts: Some(false),
                    ..Reasoning::default()
                }
            } else {
                Reasoning {
                    budget_tokens: Some(budget),
                    include_thoughts: Some(true),
                    ..Reasoning::default()
                }
            });
        }
        _ => {}
    }
}

/// `-think-N` budget for a Gemini 2.5 model: negative means dynamic, left to the model's
/// maximum; the rest as the converter clamps any budget.
fn clamp_gemini_budget(model: &str, n: i64) -> u64 {
    let n = if n < 0 {
        if model.contains("pro") {
            32_768
        } else {
            24_576
        }
    } else {
        n
    };
    protocol::convert::gemini::clamp_thinking_budget(model, n).max(0) as u64
}

/// Gemini 3: pro knows low/high (≤13107 → low); other models minimal/low/medium/high at 10, 30
/// and 60 % of a 24576-token scale.
fn gemini3_level(model: &str, n: i64) -> &'static str {
    let n = n.max(0) as u64;
    if model.contains("pro") {
        return if n <= 13_107 { "low" } else { "high" };
    }
    match n * 100 / 24_576 {
        0..10 => "minimal",
        10..30 => "low",
        30..60 => "medium",
        _ => "high",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn req() -> ChatRequest {
        ChatRequest::default()
    }

    #[test]
    fn claude_think_aliases() {
        let mut r = req();
        apply(
            &mut r,
            Engine::Claude,
            "claude-sonnet-think",
            "claude-sonnet-4-5",
        );
        assert_eq!(r.reasoning.as_ref().unwrap().budget_tokens, Some(4096));
        let mut r = ChatRequest {
            max_tokens: Some(20_000),
            ..req()
        };
        apply(
            &mut r,
            Engine::Claude,
            "claude-think-16000",
            "claude-sonnet-4-5",
        );
        assert_eq!(r.reasoning.as_ref().unwrap().budget_tokens, Some(16_000));
        // A budget not below max_tokens falls back to the default.
        let mut r = ChatRequest {
            max_tokens: Some(8_000),
            ..req()
        };
        apply(&mut r, Engine::Claude, "claude-think-16000", "x");
        assert_eq!(r.reasoning.as_ref().unwrap().budget_tokens, Some(4096));
        let mut r = req();
        apply(&mut r, Engine::Claude, "claude-sonnet", "claude-sonnet-4-5");
        assert!(r.reasoning.is_none());
        // The client's own setting wins.
        let mut r = ChatRequest {
            reasoning: Some(Reasoning {
                effort: Some("low".into()),
                ..Reasoning::default()
            }),
            ..req()
        };
        apply(&mut r, Engine::Claude, "claude-think", "x");
        assert_eq!(r.reasoning.unwrap().budget_tokens, None);
    }

    #[test]
    fn gemini_think_suffixes() {
        assert_eq!(
            upstream_model(Engine::Gemini, "gemini-2.5-flash-think-1024"),
            "gemini-2.5-flash"
        );
        assert_eq!(upstream_model(Engine::Claude, "x-think-5"), "x-think-5");
        let mut r = req();
        apply(
            &mut r,
            Engine::Gemini,
            "gemini-2.5-flash-think-1024",
            "gemini-2.5-flash-think-1024",
        );
        assert_eq!(r.reasoning.as_ref().unwrap().budget_tokens, Some(1024));
        let mut r = req();
        apply(&mut r, Engine::Gemini, "g", "gemini-2.5-flash-think-0");
        let reasoning = r.reasoning.unwrap();
        assert_eq!(reasoning.budget_tokens, Some(0));
        assert_eq!(reasoning.enabled, Some(false));
        // pro cannot turn thinking off and caps at 32768.
        let mut r = req();
        apply(
            &mut r,
            Engine::Gemini,
            "gemini-2.5-pro-think-0",
            "gemini-2.5-pro",
        );
        assert_eq!(r.reasoning.unwrap().budget_tokens, Some(128));
        let mut r = req();
        apply(
            &mut r,
            Engine::Gemini,
            "gemini-2.5-pro-think-99999",
            "gemini-2.5-pro",
        );
        assert_eq!(r.reasoning.unwrap().budget_tokens, Some(32_768));
        let mut r = req();
        apply(
            &mut r,
            Engine::Gemini,
            "gemini-3-pro-think-20000",
            "gemini-3-pro",
        );
        assert_eq!(r.reasoning.unwrap().effort.as_deref(), Some("high"));
        let mut r = req();
        apply(
            &mut r,
            Engine::Gemini,
            "gemini-3-flash-think-1000",
            "gemini-3-flash",
        );
        assert_eq!(r.reasoning.unwrap().effort.as_deref(), Some("minimal"));
    }
}
