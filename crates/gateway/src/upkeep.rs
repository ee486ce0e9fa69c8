//! Background upkeep of the key pools (the I/O the pure `keypool` leaves to its owner):
//! re-validating disabled keys with a cheap call, saving slow pool state so it survives
//! a restart, and feeding smart_round_robin pools their keys' success rates from the usage
//! store (never on the request path); closing upstream connections idle past their time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::keypool::persist::{self, StateFile};
use crate::providers::engine::Engine;
use crate::runtime::{Channel, Runtime};

const TICK: Duration = Duration::from_secs(5);
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(15);
/// How often smart_round_robin pools re-read their keys' success rates.
const RANKINGS_EVERY: Duration = Duration::from_secs(60);
/// uni-api's smart_round_robin window.
const RANKINGS_WINDOW_MS: i64 = 72 * crate::usage::time::HOUR_MS;

/// Restore saved pool state into a fresh runtime.
pub fn restore(rt: &Runtime, path: &Path) {
    let Some(file) = persist::load(path) else {
        return;
    };
    for ch in &rt.channels {
        if let Some(snap) = file.providers.get(&*ch.name) {
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
            .map(|c| (c.name.to_string(), c.keys.export()))
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
        app.client.expire_idle();
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

/// smart_round_robin: re-rank each such pool's keys from the usage store, now and every
/// [`RANKINGS_EVERY`]; runs until the process ends. Without a database (uni-api: no
/// reordering) the pools keep ordering by their own counters.
pub async fn smart_rankings(app: Arc<App>) {
    let Some(store) = app.store.clone() else {
        return;
    };
    let mut tick = tokio::time::interval(RANKINGS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        refresh_rankings(&app, &store).await;
    }
}

/// One pass of [`smart_rankings`].
pub async fn refresh_rankings(app: &App, store: &crate::store::Store) {
    use crate::store::UsageStore;
    let rt = app.runtime();
    let since = crate::usage::time::now_ms() - RANKINGS_WINDOW_MS;
    for ch in &rt.channels {
        if ch.keys.settings().algorithm != crate::keypool::Algorithm::SmartRoundRobin
            || ch.keys.len() < 2
        {
            continue;
        }
        match store.key_rankings(&ch.name, since, None).await {
            Ok(rankings) => {
                let order = crate::store::smart_order(&rankings, &ch.keys.fingerprints());
                ch.keys.set_ranked_order(order);
            }
            Err(e) => {
                tracing::debug!(provider = %ch.name, "smart_round_robin: rankings not read: {e}");
            }
        }
    }
}
