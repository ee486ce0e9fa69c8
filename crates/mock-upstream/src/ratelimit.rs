//! Quota scopes and the meters that enforce them.
//!
//! A *scope* (an OpenAI/Groq organization, an Anthropic organization, a
//! Gemini project, an Azure deployment) is a group of keys draining the same
//! budget. Each scope owns one [`Meter`] per dimension (requests per minute,
//! tokens per minute, requests per day, ...), and each meter is one of three
//! window kinds, chosen by the [`LimitFlavor`]:
//!
//! * a continuous token bucket (OpenAI, Groq, Anthropic; also every RPD
//!   except Gemini's): capacity `limit`, refilled at `limit / period`;
//! * a fixed window aligned to absolute time (Azure's 10-second request
//!   sub-windows and minute token windows, Gemini's minutes starting at :00);
//! * the calendar day in America/Los_Angeles (Gemini's RPD).
//!
//! Bucket arithmetic is exact integer arithmetic in "item·milliseconds": a
//! bucket of `limit` items per `period` ms stores `limit * period` units when
//! full, one item costs `period` units, and every millisecond adds `limit`
//! units. So with RPM 3 a denied request is told exactly "20s".
//!
//! A key outside every configured scope is unlimited (no state, no lock),
//! unless `rpm_per_key` is set: then it is a scope of its own, named
//! `org-mock`, created on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::LimitFlavor;
use crate::clock::{DAY_MS, MINUTE_MS, next_pacific_midnight, pacific_day};
use crate::errors::ORGANIZATION;

/// Requests per minute reported when requests are not limited.
pub(crate) const DEFAULT_RPM: u64 = 10_000;
/// Tokens per minute reported when tokens are not limited (never enforced).
pub(crate) const TOKENS_PER_MIN: u64 = 1_000_000;
/// Bucket limits are capped so `limit * period` fits comfortably in an i64.
const MAX_LIMIT: u64 = 10_000_000_000;

/// A quota dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dim {
    /// Azure's 10-second request sub-window (RPM / 6).
    Rp10s,
    /// Requests per minute.
    Rpm,
    /// Tokens per minute: all tokens (OpenAI, Groq, Azure), input tokens
    /// (Gemini, Anthropic's ITPM).
    Tpm,
    /// Anthropic's output tokens per minute.
    Otpm,
    /// Requests per day.
    Rpd,
}

#[derive(Clone, Copy, Debug)]
enum Window {
    Bucket { period: u64 },
    Fixed { len: u64 },
    PacificDay,
}

#[derive(Clone, Debug)]
struct Meter {
    dim: Dim,
    limit: u64,
    enforced: bool,
    window: Window,
    /// Bucket: units in the bucket (may go negative = debt). Windows: items used.
    level: i64,
    /// Bucket: unix ms of the last refill. Windows: id of the current window.
    stamp: Option<u64>,
}

fn to_i64(x: u128) -> i64 {
    i64::try_from(x).unwrap_or(i64::MAX)
}

impl Meter {
    fn new(dim: Dim, limit: Option<u64>, default: u64, window: Window) -> Meter {
        Meter {
            dim,
            limit: limit.unwrap_or(default).clamp(1, MAX_LIMIT),
            enforced: limit.is_some(),
            window,
            level: 0,
            stamp: None,
        }
    }

    fn cap(&self) -> i64 {
        match self.window {
            Window::Bucket { period } => to_i64(u128::from(self.limit) * u128::from(period)),
            _ => to_i64(u128::from(self.limit)),
        }
    }

    fn refresh(&mut self, now: u64) {
        let id = match self.window {
            Window::Bucket { .. } => {
                let cap = self.cap();
                match self.stamp {
                    None => self.level = cap,
                    Some(last) if now > last => {
                        let add = i128::from(now - last) * i128::from(self.limit);
                        let level = (i128::from(self.level) + add).min(i128::from(cap));
                        self.level = i64::try_from(level).unwrap_or(cap);
                    }
                    Some(last) => {
                        // The clock went backwards: keep the later stamp.
                        self.stamp = Some(last);
                        return;
                    }
                }
                self.stamp = Some(now);
                return;
            }
            Window::Fixed { len } => now / len,
            Window::PacificDay => pacific_day(now),
        };
        if self.stamp != Some(id) {
            self.stamp = Some(id);
            self.level = 0;
        }
    }

    /// Whole items available now (negative when in debt).
    fn available(&self) -> i64 {
        match self.window {
            Window::Bucket { period } => self.level.div_euclid(period as i64),
            _ => self.limit as i64 - self.level,
        }
    }

    fn used(&self) -> i64 {
        self.limit as i64 - self.available()
    }

    fn window_end(&self, now: u64) -> u64 {
        match self.window {
            Window::Fixed { len } => (now / len + 1) * len,
            Window::PacificDay => next_pacific_midnight(now),
            Window::Bucket { .. } => now,
        }
    }

    /// Milliseconds until `cost` fits: `Some(0)` = now, `None` = never
    /// (the request is larger than the whole limit).
    fn wait_ms(&self, cost: u64, now: u64) -> Option<u64> {
        if cost > self.limit {
            return None;
        }
        match self.window {
            Window::Bucket { period } => {
                let need = i128::from(cost) * i128::from(period) - i128::from(self.level);
                if need <= 0 {
                    Some(0)
                } else {
                    let ms = (need as u128).div_ceil(u128::from(self.limit));
                    Some(u64::try_from(ms).unwrap_or(u64::MAX))
                }
            }
            _ => {
                if self.level + cost as i64 <= self.limit as i64 {
                    Some(0)
                } else {
                    Some(self.window_end(now).saturating_sub(now))
                }
            }
        }
    }

    /// Milliseconds until the meter is back to its initial (full) state.
    fn reset_ms(&self, now: u64) -> u64 {
        match self.window {
            Window::Bucket { .. } => {
                let missing = (self.cap() - self.level).max(0) as u128;
                u64::try_from(missing.div_ceil(u128::from(self.limit))).unwrap_or(u64::MAX)
            }
            _ if self.level <= 0 => 0,
            _ => self.window_end(now).saturating_sub(now),
        }
    }

    /// Spends `cost` items (negative = refund). Buckets may go into debt down
    /// to minus one full bucket.
    fn charge(&mut self, cost: i64) {
        match self.window {
            Window::Bucket { period } => {
                let cap = self.cap();
                let delta = i128::from(cost) * i128::from(period);
                let level =
                    (i128::from(self.level) - delta).clamp(-i128::from(cap), i128::from(cap));
                self.level = i64::try_from(level).unwrap_or(0);
            }
            _ => self.level = (self.level + cost).max(0),
        }
    }

    fn reading(&self, now: u64) -> Reading {
        Reading {
            limit: self.limit,
            remaining: u64::try_from(self.available().max(0)).unwrap_or(0),
            reset_ms: self.reset_ms(now),
        }
    }
}

/// One dimension as response headers report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Reading {
    pub limit: u64,
    pub remaining: u64,
    pub reset_ms: u64,
}

/// A scope's state as the response headers report it.
#[derive(Clone, Debug)]
pub(crate) struct RateView {
    /// Requests per minute (Azure: the current minute's count).
    pub requests: Reading,
    /// Tokens per minute (Anthropic flavour: input tokens).
    pub tokens: Reading,
    /// Output tokens per minute (Anthropic flavour only).
    pub output: Option<Reading>,
    /// Requests per day, when configured.
    pub daily: Option<Reading>,
}

impl RateView {
    /// What an unlimited key looks like: computed without any shared state so
    /// the load-test path takes no lock.
    pub fn unlimited(est_tokens: u64) -> RateView {
        let est = est_tokens.min(TOKENS_PER_MIN);
        RateView {
            requests: Reading {
                limit: DEFAULT_RPM,
                remaining: DEFAULT_RPM - 1,
                reset_ms: 60_000 / DEFAULT_RPM,
            },
            tokens: Reading {
                limit: TOKENS_PER_MIN,
                remaining: TOKENS_PER_MIN - est,
                reset_ms: (est * 60_000).div_ceil(TOKENS_PER_MIN),
            },
            output: None,
            daily: None,
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Debug)]
pub(crate) struct Denial {
    pub dim: Dim,
    pub limit: u64,
    /// Used before this request (may exceed the limit after failed retries).
    pub used: i64,
    pub requested: u64,
    /// `None`: the request can never fit (larger than the whole limit).
    pub retry_ms: Option<u64>,
}

/// What a request costs at admission.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cost {
    /// Charged to [`Dim::Tpm`].
    pub tokens: u64,
    /// Charged to [`Dim::Otpm`].
    pub output: u64,
}

#[derive(Clone, Debug)]
enum ScopeRef {
    Configured(usize),
    Implicit(String),
}

/// An admitted request, for reconciling tokens once the real usage is known.
#[derive(Clone, Debug)]
pub(crate) struct Ticket {
    scope: ScopeRef,
    cost: Cost,
}

pub(crate) struct Admission {
    pub view: RateView,
    pub result: Result<Ticket, Denial>,
}

/// The limits of one scope.
#[derive(Clone, Debug)]
pub(crate) struct ScopeDef {
    pub org: Arc<str>,
    pub rpm: Option<u32>,
    pub tpm: Option<u64>,
    pub rpd: Option<u32>,
}

fn meters(flavor: LimitFlavor, def: &ScopeDef) -> Vec<Meter> {
    let rpm = def.rpm.map(u64::from);
    let rpd = def.rpd.map(u64::from);
    let minute = Window::Bucket { period: MINUTE_MS };
    let day = Window::Bucket { period: DAY_MS };
    let mut m = Vec::with_capacity(5);
    match flavor {
        LimitFlavor::OpenAi | LimitFlavor::Groq => {
            m.push(Meter::new(Dim::Rpm, rpm, DEFAULT_RPM, minute));
            m.push(Meter::new(Dim::Tpm, def.tpm, TOKENS_PER_MIN, minute));
        }
        LimitFlavor::Anthropic => {
            m.push(Meter::new(Dim::Rpm, rpm, DEFAULT_RPM, minute));
            m.push(Meter::new(Dim::Tpm, def.tpm, TOKENS_PER_MIN, minute));
            m.push(Meter::new(Dim::Otpm, def.tpm, TOKENS_PER_MIN, minute));
        }
        LimitFlavor::Azure => {
            if let Some(r) = rpm {
                let sub = Window::Fixed { len: 10_000 };
                m.push(Meter::new(Dim::Rp10s, Some((r / 6).max(1)), 1, sub));
            }
            let fixed_minute = Window::Fixed { len: MINUTE_MS };
            m.push(Meter::new(Dim::Rpm, rpm, DEFAULT_RPM, fixed_minute));
            m.push(Meter::new(Dim::Tpm, def.tpm, TOKENS_PER_MIN, fixed_minute));
        }
        LimitFlavor::Gemini => {
            let fixed_minute = Window::Fixed { len: MINUTE_MS };
            m.push(Meter::new(Dim::Rpm, rpm, DEFAULT_RPM, fixed_minute));
            m.push(Meter::new(Dim::Tpm, def.tpm, TOKENS_PER_MIN, fixed_minute));
            if rpd.is_some() {
                m.push(Meter::new(Dim::Rpd, rpd, 1, Window::PacificDay));
            }
            return m;
        }
    }
    if rpd.is_some() {
        m.push(Meter::new(Dim::Rpd, rpd, 1, day));
    }
    m
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) struct Limiter {
    flavor: LimitFlavor,
    /// Refused requests spend one request of the RPM bucket (OpenAI, Groq).
    charge_refused: bool,
    scopes: Vec<(ScopeDef, Mutex<Vec<Meter>>)>,
    by_key: HashMap<String, usize>,
    implicit: Option<ScopeDef>,
    implicit_state: Mutex<HashMap<String, Vec<Meter>>>,
}

impl Limiter {
    /// `None` when nothing is limited, so the hot path skips all of this.
    pub fn new(
        flavor: LimitFlavor,
        scopes: &[crate::ScopeSpec],
        rpm_per_key: Option<u32>,
        refused_requests_count: bool,
    ) -> Option<Limiter> {
        if scopes.is_empty() && rpm_per_key.is_none() {
            return None;
        }
        let mut by_key = HashMap::new();
        let scopes: Vec<(ScopeDef, Mutex<Vec<Meter>>)> = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                for k in &s.keys {
                    // The first scope listing a key wins.
                    by_key.entry(k.clone()).or_insert(i);
                }
                let def = ScopeDef {
                    org: Arc::from(s.name.as_str()),
                    rpm: s.rpm,
                    tpm: s.tpm,
                    rpd: s.rpd,
                };
                let state = Mutex::new(meters(flavor, &def));
                (def, state)
            })
            .collect();
        let implicit = rpm_per_key.map(|rpm| ScopeDef {
            org: Arc::from(ORGANIZATION),
            rpm: Some(rpm),
            tpm: None,
            rpd: None,
        });
        Some(Limiter {
            flavor,
            charge_refused: refused_requests_count
                && matches!(flavor, LimitFlavor::OpenAi | LimitFlavor::Groq),
            scopes,
            by_key,
            implicit,
            implicit_state: Mutex::new(HashMap::new()),
        })
    }

    pub fn flavor(&self) -> LimitFlavor {
        self.flavor
    }

    /// The scope of `key` and its organization name; `None` = unlimited key.
    fn scope_of(&self, key: &str) -> Option<(ScopeRef, &ScopeDef)> {
        if let Some(&i) = self.by_key.get(key) {
            return self
                .scopes
                .get(i)
                .map(|(def, _)| (ScopeRef::Configured(i), def));
        }
        self.implicit
            .as_ref()
            .map(|def| (ScopeRef::Implicit(key.to_owned()), def))
    }

    /// The organization a key's responses name, if the key is limited.
    pub fn org_of(&self, key: &str) -> Option<Arc<str>> {
        self.scope_of(key).map(|(_, def)| Arc::clone(&def.org))
    }

    /// Whether a configured scope lists this key.
    pub fn in_scope(&self, key: &str) -> bool {
        self.by_key.contains_key(key)
    }

    fn with_meters<T>(&self, scope: &ScopeRef, f: impl FnOnce(&mut Vec<Meter>) -> T) -> T {
        match scope {
            ScopeRef::Configured(i) => match self.scopes.get(*i) {
                Some((_, state)) => f(&mut lock(state)),
                None => f(&mut Vec::new()),
            },
            ScopeRef::Implicit(key) => {
                let mut map = lock(&self.implicit_state);
                let flavor = self.flavor;
                let implicit = self.implicit.as_ref();
                let m = map
                    .entry(key.clone())
                    .or_insert_with(|| implicit.map(|def| meters(flavor, def)).unwrap_or_default());
                f(m)
            }
        }
    }

    /// Counts one request of `cost` against the key's scope, if it fits in
    /// every enforced dimension (all or nothing). `None` = unlimited key.
    pub fn admit(&self, key: &str, cost: Cost, now: u64) -> Option<Admission> {
        let (scope, _) = self.scope_of(key)?;
        let result_scope = scope.clone();
        Some(self.with_meters(&scope, |meters| {
            for m in meters.iter_mut() {
                m.refresh(now);
            }
            let worst = worst_wait(meters, cost, now);
            let result = match worst.and_then(|(i, wait)| meters.get(i).map(|m| (m, wait))) {
                Some((m, wait)) => {
                    let mut denial = Denial {
                        dim: m.dim,
                        limit: m.limit,
                        used: m.used(),
                        requested: cost_of(m.dim, cost),
                        retry_ms: wait,
                    };
                    if self.charge_refused {
                        // "Unsuccessful requests contribute to your per-minute
                        // limit": the refusal spends a request, and the hint
                        // stays honest by including that spend.
                        for m in meters.iter_mut().filter(|m| m.dim == Dim::Rpm) {
                            m.charge(1);
                        }
                        if denial.retry_ms.is_some() {
                            denial.retry_ms = worst_wait(meters, cost, now).and_then(|(_, w)| w);
                        }
                    }
                    Err(denial)
                }
                None => {
                    for m in meters.iter_mut() {
                        let c = cost_of(m.dim, cost);
                        m.charge(i64::try_from(c).unwrap_or(i64::MAX));
                    }
                    Ok(Ticket {
                        scope: result_scope,
                        cost,
                    })
                }
            };
            Admission {
                view: view_of(meters, now),
                result,
            }
        }))
    }

    /// The key's scope as headers report it, without counting anything.
    pub fn peek(&self, key: &str, now: u64) -> Option<RateView> {
        let (scope, _) = self.scope_of(key)?;
        Some(self.with_meters(&scope, |meters| {
            for m in meters.iter_mut() {
                m.refresh(now);
            }
            view_of(meters, now)
        }))
    }

    /// A fresh (never used) scope of the per-key limit, for responses that
    /// carry no key.
    pub fn fresh_view(&self, est: u64) -> RateView {
        match &self.implicit {
            Some(def) => {
                let mut view = RateView::unlimited(est);
                let rpm = def.rpm.map_or(DEFAULT_RPM, u64::from);
                view.requests = Reading {
                    limit: rpm,
                    remaining: rpm,
                    reset_ms: 0,
                };
                view
            }
            None => RateView::unlimited(est),
        }
    }

    /// Replaces the admission estimate with the real usage (bucket flavours
    /// only; Azure and Gemini charge what they estimated on arrival).
    pub fn reconcile(&self, ticket: &Ticket, total_tokens: u64, output_tokens: u64, now: u64) {
        let (dim, charged, actual) = match self.flavor {
            LimitFlavor::OpenAi | LimitFlavor::Groq => (Dim::Tpm, ticket.cost.tokens, total_tokens),
            LimitFlavor::Anthropic => (Dim::Otpm, ticket.cost.output, output_tokens),
            LimitFlavor::Azure | LimitFlavor::Gemini => return,
        };
        if charged == actual {
            return;
        }
        let delta =
            i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(charged).unwrap_or(i64::MAX);
        self.with_meters(&ticket.scope, |meters| {
            for m in meters.iter_mut().filter(|m| m.dim == dim) {
                m.refresh(now);
                m.charge(delta);
            }
        });
    }
}

/// The enforced meter that makes `cost` wait longest (`None` wait = never),
/// or `None` when everything fits now. Ties go to the earlier meter.
fn worst_wait(meters: &[Meter], cost: Cost, now: u64) -> Option<(usize, Option<u64>)> {
    let mut worst: Option<(usize, Option<u64>)> = None;
    for (i, m) in meters.iter().enumerate() {
        if !m.enforced {
            continue;
        }
        let wait = m.wait_ms(cost_of(m.dim, cost), now);
        if wait == Some(0) {
            continue;
        }
        let worse = match (worst, wait) {
            (None, _) => true,
            (Some((_, None)), _) => false,
            (Some(_), None) => true,
            (Some((_, Some(w))), Some(x)) => x > w,
        };
        if worse {
            worst = Some((i, wait));
        }
    }
    worst
}

fn cost_of(dim: Dim, cost: Cost) -> u64 {
    match dim {
        Dim::Rp10s | Dim::Rpm | Dim::Rpd => 1,
        Dim::Tpm => cost.tokens,
        Dim::Otpm => cost.output,
    }
}

fn view_of(meters: &[Meter], now: u64) -> RateView {
    let find = |d: Dim| meters.iter().find(|m| m.dim == d).map(|m| m.reading(now));
    let fallback = RateView::unlimited(0);
    RateView {
        requests: find(Dim::Rpm).unwrap_or(fallback.requests),
        tokens: find(Dim::Tpm).unwrap_or(fallback.tokens),
        output: find(Dim::Otpm),
        daily: find(Dim::Rpd),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::ScopeSpec;

    fn scope(rpm: Option<u32>, tpm: Option<u64>, rpd: Option<u32>) -> ScopeSpec {
        ScopeSpec {
            name: "org-t".into(),
            keys: vec!["a".into(), "b".into()],
            rpm,
            tpm,
            rpd,
        }
    }

    fn one() -> Cost {
        Cost {
            tokens: 1,
            output: 0,
        }
    }

    #[test]
    fn openai_bucket_denies_after_limit_and_reports_exact_wait() {
        let l = Limiter::new(
            LimitFlavor::OpenAi,
            &[scope(Some(3), None, None)],
            None,
            false,
        )
        .unwrap();
        for expected in [2, 1, 0] {
            let a = l.admit("a", one(), 1_000).unwrap();
            assert!(a.result.is_ok());
            assert_eq!(a.view.requests.remaining, expected);
        }
        let a = l.admit("b", one(), 1_000).unwrap();
        let d = a.result.unwrap_err();
        assert_eq!((d.dim, d.limit, d.used, d.requested), (Dim::Rpm, 3, 3, 1));
        assert_eq!(d.retry_ms, Some(20_000));
        let d = l.admit("a", one(), 20_999).unwrap().result.unwrap_err();
        assert_eq!(d.retry_ms, Some(1));
        assert!(l.admit("a", one(), 21_000).unwrap().result.is_ok());
        // Keys outside every scope are unlimited.
        assert!(l.admit("zzz", one(), 0).is_none());
    }

    #[test]
    fn refused_requests_can_count() {
        let l = Limiter::new(
            LimitFlavor::OpenAi,
            &[scope(Some(3), None, None)],
            None,
            true,
        )
        .unwrap();
        for _ in 0..3 {
            assert!(l.admit("a", one(), 0).unwrap().result.is_ok());
        }
        // The refusal spends a request; the hint includes it.
        let d = l.admit("a", one(), 0).unwrap().result.unwrap_err();
        assert_eq!((d.used, d.retry_ms), (3, Some(40_000)));
        // A retry after the usual 20 s finds the bucket at zero and pushes
        // the next slot out again.
        let d = l.admit("a", one(), 20_000).unwrap().result.unwrap_err();
        assert_eq!((d.used, d.retry_ms), (3, Some(40_000)));
        // Retrying at once runs the bucket into debt: Used exceeds the limit.
        let d = l.admit("a", one(), 20_001).unwrap().result.unwrap_err();
        assert_eq!((d.used, d.retry_ms), (4, Some(59_999)));
        assert!(l.admit("a", one(), 80_000).unwrap().result.is_ok());
    }

    #[test]
    fn tokens_too_large_never_fit() {
        let l = Limiter::new(
            LimitFlavor::OpenAi,
            &[scope(None, Some(100), None)],
            None,
            false,
        )
        .unwrap();
        let d = l
            .admit(
                "a",
                Cost {
                    tokens: 101,
                    output: 0,
                },
                0,
            )
            .unwrap()
            .result
            .unwrap_err();
        assert_eq!(
            (d.dim, d.limit, d.requested, d.retry_ms),
            (Dim::Tpm, 100, 101, None)
        );
    }

    #[test]
    fn fixed_windows_reset_on_boundaries() {
        let l = Limiter::new(
            LimitFlavor::Gemini,
            &[scope(Some(2), None, None)],
            None,
            false,
        )
        .unwrap();
        assert!(l.admit("a", one(), 59_000).unwrap().result.is_ok());
        assert!(l.admit("a", one(), 59_500).unwrap().result.is_ok());
        let d = l.admit("a", one(), 59_900).unwrap().result.unwrap_err();
        assert_eq!(d.retry_ms, Some(100));
        assert!(l.admit("a", one(), 60_000).unwrap().result.is_ok());
    }

    #[test]
    fn azure_sub_windows() {
        let l = Limiter::new(
            LimitFlavor::Azure,
            &[scope(Some(12), None, None)],
            None,
            false,
        )
        .unwrap();
        assert!(l.admit("a", one(), 0).unwrap().result.is_ok());
        assert!(l.admit("a", one(), 1).unwrap().result.is_ok());
        let a = l.admit("a", one(), 2_000).unwrap();
        let d = a.result.unwrap_err();
        assert_eq!((d.dim, d.limit, d.retry_ms), (Dim::Rp10s, 2, Some(8_000)));
        assert_eq!(a.view.requests.remaining, 10);
        assert!(l.admit("a", one(), 10_000).unwrap().result.is_ok());
    }

    #[test]
    fn reconcile_refunds_and_charges() {
        let l = Limiter::new(
            LimitFlavor::OpenAi,
            &[scope(None, Some(1000), None)],
            None,
            false,
        )
        .unwrap();
        let a = l
            .admit(
                "a",
                Cost {
                    tokens: 500,
                    output: 0,
                },
                0,
            )
            .unwrap();
        assert_eq!(a.view.tokens.remaining, 500);
        l.reconcile(&a.result.unwrap(), 100, 0, 0);
        assert_eq!(l.peek("b", 0).unwrap().tokens.remaining, 900);
    }
}
