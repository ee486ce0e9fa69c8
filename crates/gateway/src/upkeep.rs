//! Background upkeep of the key pools (the I/O the pure `keypool` leaves to its owner):
//! re-validating disabled keys with a cheap call, and saving slow pool state so it survives
//! a restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::keypool::persist::{self, StateFile};
use crate::providers::engine::Engine;
use crate::runtime::{Channel, Runtime};

const TICK: Duration = Duration::from_secs(5);
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(15);

/// Restore saved pool state into a fresh runtime.
pub fn restore(rt: &Runtime, path: &Path) {
    let Some(file) = persist::load(path) else {
        return;
    };
    for ch in &rt.channels {
        if let Some(snap) = file.providers.get(&ch.name) {
            ch.keys.import(snap);
        }
    }
    tracing::info!("{}: restored key-pool state", path.display());
}

pub fn save(rt: &Runtime, path: &Path) {
    let file = StateFile {
        version: 1,
        providers: rt
            .channels
            .iter()
            .filter(|c| !c.keys.is_empty())
            .map(|c| (c.name.clone(), c.keys.export()))
            .collect(),
    };
    if let Err(e) = persist::save(path, &file) {
        tracing::warn!("{}: cannot save key-pool state: {e}", path.display());
    }
}

/// Runs until the process ends.
pub async fn run(app: Arc<App>, state_path: Option<PathBuf>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let rt = app.runtime();
        for (ci, ch) in rt.channels.iter().enumerate() {
            for (index, secret) in ch.keys.due_revalidations() {
                let app = Arc::clone(&app);
                let rt = Arc::clone(&rt);
                tokio::spawn(async move {
                    let ch = &rt.channels[ci];
                    let ok = validate(&app, ch, &secret).await;
                    ch.keys.revalidated(index, ok);
                });
            }
        }
        if let Some(path) = &state_path {
            let dirty = rt
                .channels
                .iter()
                .fold(false, |d, c| c.keys.take_dirty() | d);
            if dirty {
                save(&rt, path);
            }
        }
    }
}

/// A cheap authenticated call: list the provider's models.
async fn validate(app: &App, ch: &Channel, secret: &str) -> bool {
    let engine = crate::providers::engine::detect(&ch.base_url, ch.forced_engine, "gpt");
    let (url, headers): (String, Vec<(&str, String)>) = match engine {
        Engine::Gemini => (
            format!("{}/models?key={secret}", ch.base_url.trim_end_matches('/')),
            vec![],
        ),
        Engine::Claude => (
            format!("{}/models", ch.api_root),
            vec![
                ("x-api-key", secret.to_string()),
                ("anthropic-version", "2023-06-01".into()),
            ],
        ),
        _ => (
            format!("{}/models", ch.api_root),
            vec![("authorization", format!("Bearer {secret}"))],
        ),
    };
    match app
        .client
        .get_text_via(ch.proxy.as_deref(), &url, &headers, VALIDATION_TIMEOUT)
        .await
    {
        Ok((status, _)) => (200..300).contains(&status),
        Err(_) => false,
    }
}
