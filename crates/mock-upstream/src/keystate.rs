//! Runtime key health (revoked, out of credit), provider-wide overload, and
//! per-key counters. Every check starts with an atomic load so the load-test
//! path, where none of this is configured, takes no lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::KeyStats;

#[derive(Clone, Copy, Debug, Default)]
struct Flags {
    revoked: bool,
    exhausted: bool,
}

/// How a response counts in [`KeyStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    RateLimited,
    Unauthorized,
    Other,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            429 => Outcome::RateLimited,
            401 => Outcome::Unauthorized,
            _ => Outcome::Other,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct KeyState {
    flagged: AtomicUsize,
    flags: Mutex<HashMap<String, Flags>>,
    overload_on: AtomicBool,
    overload_next: AtomicU64,
    stats_on: AtomicBool,
    stats: Mutex<HashMap<String, KeyStats>>,
}

impl KeyState {
    pub fn new(revoked: &[String], exhausted: &[String], stats_on: bool) -> KeyState {
        let mut flags: HashMap<String, Flags> = HashMap::new();
        for k in revoked {
            flags.entry(k.clone()).or_default().revoked = true;
        }
        for k in exhausted {
            flags.entry(k.clone()).or_default().exhausted = true;
        }
        KeyState {
            flagged: AtomicUsize::new(flags.len()),
            stats_on: AtomicBool::new(stats_on || !flags.is_empty()),
            flags: Mutex::new(flags),
            overload_on: AtomicBool::new(false),
            overload_next: AtomicU64::new(0),
            stats: Mutex::new(HashMap::new()),
        }
    }

    fn update(&self, key: &str, f: impl FnOnce(&mut Flags)) {
        let mut map = lock(&self.flags);
        let flags = map.entry(key.to_owned()).or_default();
        f(flags);
        if !flags.revoked && !flags.exhausted {
            map.remove(key);
        }
        self.flagged.store(map.len(), Ordering::SeqCst);
        self.stats_on.store(true, Ordering::SeqCst);
    }

    pub fn set_revoked(&self, key: &str, on: bool) {
        self.update(key, |f| f.revoked = on);
    }

    pub fn set_exhausted(&self, key: &str, on: bool) {
        self.update(key, |f| f.exhausted = on);
    }

    /// (revoked, exhausted).
    pub fn status(&self, key: &str) -> (bool, bool) {
        if self.flagged.load(Ordering::SeqCst) == 0 {
            return (false, false);
        }
        lock(&self.flags)
            .get(key)
            .map_or((false, false), |f| (f.revoked, f.exhausted))
    }

    /// Whether a key is known to the flags (it then passes the `api_keys` check).
    pub fn is_flagged(&self, key: &str) -> bool {
        self.flagged.load(Ordering::SeqCst) != 0 && lock(&self.flags).contains_key(key)
    }

    pub fn set_overloaded(&self, on: bool) {
        self.overload_on.store(on, Ordering::SeqCst);
        if !on {
            self.overload_next.store(0, Ordering::SeqCst);
        }
    }

    pub fn overload_next(&self, count: u64) {
        self.overload_next.store(count, Ordering::SeqCst);
    }

    /// Whether this request is shed by the overload (consumes one of the
    /// `overload_next` budget).
    pub fn take_overload(&self) -> bool {
        if self.overload_on.load(Ordering::SeqCst) {
            return true;
        }
        self.overload_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    pub fn stats_on(&self) -> bool {
        self.stats_on.load(Ordering::Relaxed)
    }

    pub fn count(&self, key: &str, outcome: Outcome) {
        if !self.stats_on() {
            return;
        }
        let mut map = lock(&self.stats);
        let s = match map.get_mut(key) {
            Some(s) => s,
            None => map.entry(key.to_owned()).or_default(),
        };
        s.received += 1;
        match outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::RateLimited => s.rate_limited += 1,
            Outcome::Unauthorized => s.unauthorized += 1,
            Outcome::Other => s.other_errors += 1,
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, KeyStats> {
        lock(&self.stats)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
