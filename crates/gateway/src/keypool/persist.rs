//! Slow key-pool state that must survive a restart: disabled keys, daily and billing
//! exhaustion, learned scopes, limits estimated from 429s. Per-minute counters are not kept (they are stale after a restart
//! anyway). Keys are identified by a non-reversible fingerprint, never by the secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::classify::ErrorClass;
use super::health::Health;
use super::limits::Dim;
use super::pool::KeyPool;

fn class_named(name: &str) -> Option<ErrorClass> {
    ErrorClass::ALL.into_iter().find(|c| c.as_str() == name)
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PoolSnapshot {
    pub keys: Vec<KeySnapshot>,
    pub blocks: Vec<BlockSnapshot>,
    /// Limits estimated from 429s (`keypool::estimate`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimates: Vec<EstimateSnapshot>,
}

/// A scope's (named by one of its keys) estimated per-minute limit for a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EstimateSnapshot {
    pub fingerprint: String,
    pub model: String,
    pub dim: String,
    pub per_minute: u64,
    /// Counted in fixed minute windows (Gemini), not a continuous bucket.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fixed_window: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeySnapshot {
    pub fingerprint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<DisabledSnapshot>,
    /// A scope learned from response headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_scope: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DisabledSnapshot {
    pub class: String,
    pub revalidate_at_unix_ms: u64,
    pub attempt: usize,
}

/// A scope (named by one of its keys) blocked for a model (empty = the whole scope, billing).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockSnapshot {
    pub fingerprint: String,
    pub model: String,
    pub until_unix_ms: u64,
    pub class: String,
    pub why: String,
}

/// Blocks shorter than this are not worth persisting.
const MIN_PERSISTED_BLOCK_MS: u64 = 60_000;

impl KeyPool {
    pub fn export(&self) -> PoolSnapshot {
        self.with_state(|v| {
            let now_ms = v.clock.unix_ms();
            let clock = v.clock.clone();
            let keys: Vec<KeySnapshot> = v
                .keys()
                .map(|(_, fp, health, scope, learned)| KeySnapshot {
                    fingerprint: fp.to_string(),
                    disabled: match health {
                        Health::Disabled {
                            class,
                            revalidate_at,
                            attempt,
                            ..
                        } => Some(DisabledSnapshot {
                            class: class.as_str().to_string(),
                            revalidate_at_unix_ms: clock.to_unix_ms(*revalidate_at),
                            attempt: *attempt,
                        }),
                        _ => None,
                    },
                    learned_scope: learned.then(|| scope.to_string()),
                })
                .collect();
            let fps: Vec<String> = keys.iter().map(|k| k.fingerprint.clone()).collect();
            let blocks = v
                .scope_blocks()
                .into_iter()
                .filter(|(_, _, until, class, _)| {
                    matches!(class, ErrorClass::DailyQuota | ErrorClass::Billing)
                        && clock.to_unix_ms(*until) >= now_ms + MIN_PERSISTED_BLOCK_MS
                })
                .map(|(key, model, until, class, why)| BlockSnapshot {
                    fingerprint: fps[key].clone(),
                    model,
                    until_unix_ms: clock.to_unix_ms(until),
                    class: class.as_str().to_string(),
                    why,
                })
                .collect();
            let estimates = v
                .estimates()
                .into_iter()
                .map(
                    |(key, model, dim, per_minute, fixed_window)| EstimateSnapshot {
                        fingerprint: fps[key].clone(),
                        model,
                        dim: dim.as_str().to_string(),
                        per_minute,
                        fixed_window,
                    },
                )
                .collect();
            PoolSnapshot {
                keys,
                blocks,
                estimates,
            }
        })
    }

    /// Apply a snapshot from a previous run; unknown keys and expired entries are ignored.
    pub fn import(&self, snap: &PoolSnapshot) {
        self.with_state(|v| {
            let now_ms = v.clock.unix_ms();
            let index: BTreeMap<String, usize> =
                v.keys().map(|(i, fp, ..)| (fp.to_string(), i)).collect();
            for k in &snap.keys {
                let Some(&i) = index.get(&k.fingerprint) else {
                    continue;
                };
                if let Some(scope) = &k.learned_scope {
                    v.join_scope(i, scope);
                }
                if let Some(d) = &k.disabled
                    && let Some(class) = class_named(&d.class)
                {
                    let at = v
                        .clock
                        .instant_of_unix_ms(d.revalidate_at_unix_ms.max(now_ms));
                    v.set_health(
                        i,
                        Health::Disabled {
                            class,
                            revalidate_at: at,
                            attempt: d.attempt,
                            revalidating: false,
                        },
                    );
                }
            }
            for b in &snap.blocks {
                let (Some(&i), Some(class)) = (index.get(&b.fingerprint), class_named(&b.class))
                else {
                    continue;
                };
                if b.until_unix_ms <= now_ms {
                    continue;
                }
                let until = v.clock.instant_of_unix_ms(b.until_unix_ms);
                v.block_scope(i, &b.model, until, class, b.why.clone());
            }
            for e in &snap.estimates {
                let (Some(&i), Some(dim)) = (index.get(&e.fingerprint), Dim::named(&e.dim)) else {
                    continue;
                };
                v.restore_estimate(i, &e.model, dim, e.per_minute, e.fixed_window);
            }
        });
    }
}

/// All pools' snapshots, by provider name, in one JSON file written atomically.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct StateFile {
    pub version: u32,
    pub providers: BTreeMap<String, PoolSnapshot>,
}

pub fn default_path() -> PathBuf {
    std::env::var_os("LLMUX_STATE_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("data/keypool.json"))
}

pub fn load(path: &Path) -> Option<StateFile> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "{}: ignoring unreadable key-pool state: {e}",
                path.display()
            );
            None
        }
    }
}

/// Write via a temporary file and rename, so a crash never leaves half a file.
pub fn save(path: &Path, state: &StateFile) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
