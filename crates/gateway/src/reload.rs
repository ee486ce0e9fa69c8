//! Live configuration: the config is read again when its file changes (polled every second:
//! works on every file system and through editors that replace the file, without a watcher
//! crate), on SIGHUP, and on `POST /admin/reload`. A new config is parsed, validated and
//! compiled before anything changes; an invalid one is rejected with its problems logged, and
//! the running config keeps serving. A valid one is swapped in atomically: requests in flight
//! finish on the config they started with, key pools of unchanged providers carry over, and
//! channel health, rotation counters, client rate-limit windows and spending (owned by the
//! app) are untouched.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::Severity;

/// How often the config file is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub source: String,
    pub providers: usize,
    pub keys: usize,
    pub warnings: Vec<String>,
}

/// Reads the config from its source and swaps it in if valid; `Err` lists the problems (the
/// running config is unchanged).
pub async fn reload(app: &App) -> Result<Reloaded, Vec<String>> {
    let _one_at_a_time = app.reload_lock.lock().await;
    let Some(source) = &app.source else {
        return Err(vec![
            "this gateway runs without a config file (demo or embedded); there is nothing to reload"
                .to_string(),
        ]);
    };
    let text = match crate::cli::read_source(source, &app.client).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("config reload failed; the running config stays: {e}");
            return Err(vec![e]);
        }
    };
    let previous = app.runtime();
    match crate::cli::build_runtime(&text, &app.client, true, Some(&previous)).await {
        Ok((rt, warnings)) => {
            for w in &warnings {
                tracing::warn!("{w}");
            }
            let done = Reloaded {
                source: text.name.clone(),
                providers: rt.channels.len(),
                keys: rt.keys.len(),
                warnings: warnings.iter().map(ToString::to_string).collect(),
            };
            app.replace_runtime(rt);
            tracing::info!(
                "{}: config reloaded ({} providers, {} client keys)",
                done.source,
                done.providers,
                done.keys
            );
            Ok(done)
        }
        Err(diags) => {
            for d in &diags {
                match d.severity {
                    Severity::Error => tracing::error!("{d}"),
                    Severity::Warning => tracing::warn!("{d}"),
                }
            }
            tracing::error!(
                "{}: invalid config, not reloaded; the running config stays",
                text.name
            );
            Err(diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(ToString::to_string)
                .collect())
        }
    }
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Polls `path` every `every`; a change is reloaded once the content has stayed the same for
/// one more poll (editors write in several steps). Content that failed to load is not retried
/// until it changes again.
pub async fn watch(app: Arc<App>, path: PathBuf, every: Duration) {
    let mut loaded = std::fs::read(&path).ok().map(|b| fingerprint(&b));
    let mut pending: Option<u64> = None;
    let mut rejected: Option<u64> = None;
    let mut missing = false;
    loop {
        tokio::time::sleep(every).await;
        let current = match std::fs::read(&path) {
            Ok(bytes) => {
                missing = false;
                fingerprint(&bytes)
            }
            Err(e) => {
                if !missing {
                    tracing::warn!(
                        "{}: cannot read the config ({e}); the running config stays",
                        path.display()
                    );
                    missing = true;
                }
                continue;
            }
        };
        if Some(current) == loaded || Some(current) == rejected {
            pending = None;
            continue;
        }
        if pending != Some(current) {
            pending = Some(current);
            continue;
        }
        pending = None;
        tracing::info!("{}: changed; reloading", path.display());
        match reload(&app).await {
            Ok(_) => loaded = Some(current),
            Err(_) => rejected = Some(current),
        }
    }
}

/// Reloads on every SIGHUP (Unix).
pub async fn on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload with POST /admin/reload instead");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            let _ = reload(&app).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = app;
        std::future::pending::<()>().await;
    }
}
