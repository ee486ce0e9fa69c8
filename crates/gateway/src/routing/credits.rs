//! Credits (`api_keys[].preferences.credits` in dollars, counted since `created_at`): a key whose
//! spending since then exceeds its credits is refused. Spending comes from the usage each
//! successful answer reports, priced with `preferences.model_price` (the first entry whose key
//! is a prefix of the requested model, else `default`, else uni-api's built-in 0.3 / 1 dollars
//! per million tokens). Where spending is kept is behind [`SpendLedger`], so the usage store can
//! provide it; [`MemoryLedger`] keeps it in memory (lost on restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::config::schema::Price;

/// uni-api's price when neither a prefix nor `default` matches (its README says 1,2; its code
/// uses 0.3,1).
pub const FALLBACK_PRICE: Price = Price {
    input_per_million: 0.3,
    output_per_million: 1.0,
};

/// uni-api's accounting window when `created_at` is not set: the last 30 days.
pub const DEFAULT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;

/// Where spending per client key is kept. Keys are named by their fingerprint
/// ([`crate::keypool::pool::fingerprint`]), never by the secret, so a reload that reorders keys
/// keeps each key's spending.
pub trait SpendLedger: Send + Sync + std::fmt::Debug {
    /// Dollars spent by `key_id` since `since_ms` (Unix milliseconds).
    fn spent_since(&self, key_id: &str, since_ms: i64) -> f64;
    /// Count `dollars` spent by `key_id` at `at_ms`.
    fn add_spend(&self, key_id: &str, at_ms: i64, dollars: f64);
}

/// Spending in one-minute buckets per key. `spent_since` counts the whole minute containing
/// `since_ms`, so it can only over-count (never let a key past its credits).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    books: Mutex<HashMap<String, BTreeMap<i64, f64>>>,
}

const MINUTE_MS: i64 = 60_000;

impl SpendLedger for MemoryLedger {
    fn spent_since(&self, key_id: &str, since_ms: i64) -> f64 {
        let books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        books.get(key_id).map_or(0.0, |b| {
            b.range(since_ms.div_euclid(MINUTE_MS)..)
                .map(|(_, d)| *d)
                .sum()
        })
    }

    fn add_spend(&self, key_id: &str, at_ms: i64, dollars: f64) {
        if !(dollars.is_finite() && dollars > 0.0) {
            return;
        }
        let mut books = self.books.lock().unwrap_or_else(|p| p.into_inner());
        let minute = at_ms.div_euclid(MINUTE_MS);
        match books.get_mut(key_id) {
            Some(b) => *b.entry(minute).or_insert(0.0) += dollars,
            None => {
                books.insert(key_id.to_string(), BTreeMap::from([(minute, dollars)]));
            }
        }
    }
}

/// `model_price` of one config.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prefixes: Vec<(String, Price)>,
    default: Price,
}

impl Default for PriceTable {
    fn default() -> Self {
        PriceTable {
            prefixes: Vec::new(),
            default: FALLBACK_PRICE,
        }
    }
}

impl PriceTable {
    pub fn new(model_price: &[(String, Price)]) -> Self {
        let mut t = PriceTable::default();
        for (prefix, price) in model_price {
            if prefix == "default" {
                t.default = *price;
            } else {
                t.prefixes.push((prefix.clone(), *price));
            }
        }
        t
    }

    pub fn lookup(&self, model: &str) -> Price {
        self.prefixes
            .iter()
            .find(|(p, _)| model.starts_with(p.as_str()))
            .map_or(self.default, |(_, p)| *p)
    }
}

/// Dollars for a prompt and completion token count.
pub fn cost(prompt: u64, completion: u64, price: Price) -> f64 {
    (prompt as f64 * price.input_per_million + completion as f64 * price.output_per_million)
        / 1_000_000.0
}

/// What a successful answer is charged to: built per request for keys with credits.
#[derive(Debug, Clone)]
pub struct Charge {
    pub ledger: Arc<dyn SpendLedger>,
    pub key_id: Arc<str>,
    pub price: Price,
}

impl Charge {
    pub fn settle(&self, prompt: u64, completion: u64) {
        let dollars = cost(prompt, completion, self.price);
        self.ledger.add_spend(&self.key_id, now_ms(), dollars);
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A key's standing, when it has credits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Balance {
    pub credits: f64,
    pub spent: f64,
    pub since_ms: i64,
}

impl Balance {
    /// uni-api: `enabled = total_cost <= credits`.
    pub fn exhausted(&self) -> bool {
        self.spent > self.credits
    }
}

pub fn balance(
    ledger: &dyn SpendLedger,
    key_id: &str,
    credits: Option<f64>,
    created_at_ms: Option<i64>,
    now_ms: i64,
) -> Option<Balance> {
    let credits = credits?;
    let since_ms = created_at_ms.unwrap_or(now_ms - DEFAULT_WINDOW_MS);
    Some(Balance {
        credits,
        spent: ledger.spent_since(key_id, since_ms),
        since_ms,
    })
}

/// Unix milliseconds of a date or date-time as the config accepts it (`2024-01-01`,
/// `2024-01-01T08:00:00+08:00`, `2024-01-01 08:00:00.5Z`); no offset means UTC.
pub fn parse_datetime_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) && !t.is_empty() {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&mo) {
        return None;
    }
    if !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, mo, d) * 86_400_000;
    let rest = s.get(10..)?;
    if rest.is_empty() {
        return Some(ms);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?.trim_start();
    let (h, mi) = (num_in(rest, 0..2)?, num_in(rest, 3..5)?);
    if rest.as_bytes().get(2) != Some(&b':') || h > 23 || mi > 59 {
        return None;
    }
    let mut i = 5;
    let mut sec = 0;
    if rest.as_bytes().get(5) == Some(&b':') {
        sec = num_in(rest, 6..8)?;
        if sec > 60 {
            return None;
        }
        i = 8;
    }
    let mut frac_ms = 0;
    if rest.as_bytes().get(i) == Some(&b'.') {
        let digits: String = rest[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if digits.is_empty() {
            return None;
        }
        i += 1 + digits.len();
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        frac_ms = padded.parse::<i64>().ok()?;
    }
    ms += ((h * 60 + mi) * 60 + sec) * 1000 + frac_ms;
    let tz = rest[i..].trim();
    let offset_min = match tz {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match tz.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let t = &tz[1..];
            let (oh, om) = if t.len() == 5 && t.as_bytes().get(2) == Some(&b':') {
                (num_in(t, 0..2)?, num_in(t, 3..5)?)
            } else if t.len() == 4 {
                (num_in(t, 0..2)?, num_in(t, 2..4)?)
            } else if t.len() == 2 {
                (num_in(t, 0..2)?, 0)
            } else {
                return None;
            };
            sign * (oh * 60 + om)
        }
    };
    Some(ms - offset_min * 60_000)
}

fn num_in(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let t = s.get(r)?;
    if !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn price(i: f64, o: f64) -> Price {
        Price {
            input_per_million: i,
            output_per_million: o,
        }
    }

    #[test]
    fn prices_by_first_prefix_then_default_then_fallback() {
        let t = PriceTable::new(&[
            ("gpt-4o-mini".into(), price(0.15, 0.6)),
            ("gpt-4o".into(), price(2.5, 10.0)),
        ]);
        assert_eq!(t.lookup("gpt-4o-mini-2024"), price(0.15, 0.6));
        assert_eq!(t.lookup("gpt-4o"), price(2.5, 10.0));
        assert_eq!(t.lookup("claude"), FALLBACK_PRICE);
        let t = PriceTable::new(&[("default".into(), price(1.0, 2.0))]);
        assert_eq!(t.lookup("default-model"), price(1.0, 2.0));
        assert!((cost(1_000_000, 500_000, price(1.0, 2.0)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn ledger_sums_since_a_time() {
        let l = MemoryLedger::default();
        l.add_spend("k", 10 * MINUTE_MS, 1.0);
        l.add_spend("k", 20 * MINUTE_MS + 5, 2.0);
        l.add_spend("j", 20 * MINUTE_MS, 4.0);
        l.add_spend("k", 30 * MINUTE_MS, f64::NAN);
        assert_eq!(l.spent_since("k", 0), 3.0);
        assert_eq!(l.spent_since("k", 15 * MINUTE_MS), 2.0);
        // The minute containing the start counts whole.
        assert_eq!(l.spent_since("k", 20 * MINUTE_MS + 30_000), 2.0);
        assert_eq!(l.spent_since("nobody", 0), 0.0);
    }

    #[test]
    fn balance_is_exhausted_only_above_the_credits() {
        let l = MemoryLedger::default();
        let now = 100 * 86_400_000;
        assert!(balance(&l, "k", None, None, now).is_none());
        l.add_spend("k", now - 1000, 10.0);
        let b = balance(&l, "k", Some(10.0), None, now).unwrap();
        assert!(!b.exhausted());
        l.add_spend("k", now - 1000, 0.01);
        assert!(balance(&l, "k", Some(10.0), None, now).unwrap().exhausted());
        // Spending before created_at does not count.
        assert!(
            !balance(&l, "k", Some(10.0), Some(now), now)
                .unwrap()
                .exhausted()
        );
        // uni-api's `credits: 0` works until the first priced request.
        assert!(!balance(&l, "x", Some(0.0), None, now).unwrap().exhausted());
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime_ms("1970-01-01"), Some(0));
        assert_eq!(parse_datetime_ms("2024-01-01"), Some(1_704_067_200_000));
        assert_eq!(
            parse_datetime_ms("2024-01-01T08:00:00+08:00"),
            Some(1_704_067_200_000)
        );
        assert_eq!(
            parse_datetime_ms("2024-01-01 00:00:01.5Z"),
            Some(1_704_067_201_500)
        );
        assert_eq!(
            parse_datetime_ms("2024-02-29T00:00"),
            Some(1_709_164_800_000)
        );
        assert_eq!(parse_datetime_ms("2023-02-29"), None);
        assert_eq!(parse_datetime_ms("2024-01-01T25:00"), None);
        assert_eq!(parse_datetime_ms("yesterday"), None);
    }
}
