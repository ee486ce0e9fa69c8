//! Spending and credits per client key, in memory, so the credit check on every request never
//! queries the database. Loaded from the store at startup, then kept current by
//! [`crate::store::UsageSink::record`] (before the record is queued: spending is counted even
//! when the database is down and the record itself is dropped).
//!
//! Spending is kept in hourly buckets. `spent_since(key, t)` counts the whole hour containing
//! `t`: it may count up to one hour of spending before `t`, never less than the truth, so a
//! key is never let over its credits by the bucketing.

use std::collections::BTreeMap;

// Charged on every request: hashbrown's fast default hasher (keys come from the config).
use hashbrown::HashMap;
use std::sync::Mutex;

use super::time::{DAY_MS, HOUR_MS};

/// What the credit check reads (uni-api `preferences.credits`, `created_at`,
/// `/v1/add_credits`).
pub trait CreditsView: Send + Sync {
    /// Dollars spent by `client_key` (a [`super::keys::key_id`]) since `since_ms`.
    fn spent_since(&self, client_key: &str, since_ms: i64) -> f64;
    /// Dollars added with `/v1/add_credits`, on top of the configured `credits`.
    fn granted(&self, client_key: &str) -> f64;
}

/// A paid key's standing: uni-api's `enabled = total_cost <= credits`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CreditState {
    /// Configured credits plus granted credits.
    pub credits: f64,
    pub total_cost: f64,
    pub enabled: bool,
}

/// The credit check. `configured` is the key's `preferences.credits` (`None` = unlimited, no
/// state, always allowed); `since_ms` from [`window_start`].
pub fn credit_state(
    view: &dyn CreditsView,
    client_key: &str,
    configured: Option<f64>,
    since_ms: i64,
) -> Option<CreditState> {
    let configured = configured?;
    let credits = configured + view.granted(client_key);
    let total_cost = view.spent_since(client_key, since_ms);
    Some(CreditState {
        credits,
        total_cost,
        enabled: total_cost <= credits,
    })
}

/// uni-api's accounting window when a key has no `created_at`: the last 30 days.
pub const DEFAULT_WINDOW_MS: i64 = 30 * DAY_MS;

/// Start of a key's cost accounting: its `preferences.created_at` (parsed once per config load,
/// [`created_at_ms`]), else uni-api's rolling default of 30 days before now.
pub fn window_start(created_at_ms: Option<i64>, now_ms: i64) -> i64 {
    created_at_ms.unwrap_or(now_ms - DEFAULT_WINDOW_MS)
}

/// `preferences.created_at` as unix milliseconds; `None` for an unparseable value (the config
/// validator rejects those), which then counts as absent.
pub fn created_at_ms(created_at: &str) -> Option<i64> {
    super::time::parse_datetime(created_at).ok().map(|p| p.ms)
}

#[derive(Debug, Default)]
struct KeyBook {
    /// Hour index (`at_ms / HOUR_MS`) -> dollars.
    hours: BTreeMap<i64, f64>,
    granted: f64,
}

#[derive(Debug, Default)]
pub struct CostLedger {
    books: Mutex<HashMap<String, KeyBook>>,
}

impl CostLedger {
    pub fn new() -> CostLedger {
        CostLedger::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, KeyBook>) -> R) -> R {
        let mut guard = self.books.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn book<'a>(books: &'a mut HashMap<String, KeyBook>, key: &str) -> &'a mut KeyBook {
        books.entry(key.to_owned()).or_default()
    }

    /// Count `dollars` spent by `client_key` at `at_ms`.
    pub fn add_spend(&self, client_key: &str, at_ms: i64, dollars: f64) {
        if dollars <= 0.0 || !dollars.is_finite() {
            return;
        }
        self.with(|books| {
            let hour = at_ms.div_euclid(HOUR_MS);
            // No key allocation on the hot path once the key has a book.
            if let Some(book) = books.get_mut(client_key) {
                *book.hours.entry(hour).or_insert(0.0) += dollars;
            } else {
                Self::book(books, client_key).hours.insert(hour, dollars);
            }
        });
    }

    pub fn add_granted(&self, client_key: &str, dollars: f64) {
        self.with(|books| Self::book(books, client_key).granted += dollars);
    }

    /// Replace the granted total (startup load from the store).
    pub fn set_granted(&self, client_key: &str, dollars: f64) {
        self.with(|books| Self::book(books, client_key).granted = dollars);
    }

    /// Forget spending before `cutoff_ms` for every key (memory bound for long-running
    /// processes; the store keeps the history).
    pub fn forget_before(&self, cutoff_ms: i64) {
        let cutoff_hour = cutoff_ms.div_euclid(HOUR_MS);
        self.with(|books| {
            for book in books.values_mut() {
                book.hours = book.hours.split_off(&cutoff_hour);
            }
        });
    }
}

impl CreditsView for CostLedger {
    fn spent_since(&self, client_key: &str, since_ms: i64) -> f64 {
        let from = since_ms.div_euclid(HOUR_MS);
        self.with(|books| {
            books
                .get(client_key)
                .map_or(0.0, |b| b.hours.range(from..).map(|(_, v)| v).sum())
        })
    }

    fn granted(&self, client_key: &str) -> f64 {
        self.with(|books| books.get(client_key).map_or(0.0, |b| b.granted))
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const T0: i64 = 1_714_564_800_000; // 2024-05-01T12:00:00Z, on an hour boundary

    #[test]
    fn spending_is_counted_per_key_from_the_hour_of_since() {
        let l = CostLedger::new();
        l.add_spend("a", T0 - 2 * HOUR_MS, 1.0);
        l.add_spend("a", T0 + 10 * 60_000, 0.25);
        l.add_spend("a", T0 + 3 * HOUR_MS, 0.5);
        l.add_spend("b", T0, 7.0);
        assert_eq!(l.spent_since("a", T0 - 3 * HOUR_MS), 1.75);
        assert_eq!(l.spent_since("a", T0), 0.75);
        // Mid-hour `since` counts the whole hour: never less than the truth.
        assert_eq!(l.spent_since("a", T0 + 30 * 60_000), 0.75);
        assert_eq!(l.spent_since("a", T0 + 4 * HOUR_MS), 0.0);
        assert_eq!(l.spent_since("missing", 0), 0.0);
        l.forget_before(T0);
        assert_eq!(l.spent_since("a", 0), 0.75);
    }

    #[test]
    fn credit_state_follows_uni_api() {
        let l = CostLedger::new();
        assert_eq!(
            credit_state(&l, "k", None, 0),
            None,
            "unlimited keys have no state"
        );
        let s = credit_state(&l, "k", Some(0.0), 0).expect("state");
        assert!(
            s.enabled,
            "credits 0 still works until the first priced request"
        );
        l.add_spend("k", T0, 2.0);
        let s = credit_state(&l, "k", Some(1.5), 0).expect("state");
        assert_eq!((s.credits, s.total_cost, s.enabled), (1.5, 2.0, false));
        l.add_granted("k", 0.5);
        let s = credit_state(&l, "k", Some(1.5), 0).expect("state");
        assert_eq!((s.credits, s.enabled), (2.0, true));
        // Spending before the accounting window does not count.
        let s = credit_state(&l, "k", Some(1.5), T0 + HOUR_MS).expect("state");
        assert_eq!(s.total_cost, 0.0);
    }

    #[test]
    fn window_start_defaults_to_thirty_days() {
        assert_eq!(window_start(None, T0), T0 - 30 * DAY_MS);
        assert_eq!(window_start(created_at_ms("2024-05-01T12:00:00Z"), 0), T0);
        assert_eq!(
            window_start(created_at_ms("nonsense"), T0),
            T0 - 30 * DAY_MS
        );
        assert_eq!(created_at_ms("2024-05-01 20:00:00+08"), Some(T0));
    }
}
