//! Channel health across requests: uni-api's channel cooling (`cooldown_period`) and its
//! provider-model circuit breaker for repeated 403/404 answers. Both are keyed by provider name
//! and *upstream* model on record and on lookup alike, so renamed models are cooled too (uni-api
//! records under one name and looks up under another). The state is owned by the app, not the
//! runtime, so a config reload keeps it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// uni-api's `PROVIDER_MODEL_CIRCUIT_*` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// 403/404 answers within `window` that open the breaker.
    pub threshold: usize,
    pub window: Duration,
    /// How long an open breaker keeps the route out.
    pub open_for: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            threshold: 3,
            window: Duration::from_secs(120),
            open_for: Duration::from_secs(300),
        }
    }
}

impl BreakerSettings {
    /// From `PROVIDER_MODEL_CIRCUIT_FAILURE_THRESHOLD`, `..._WINDOW_SECONDS`,
    /// `..._OPEN_SECONDS`; unset or invalid values keep uni-api's 3 / 120 / 300.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let d = BreakerSettings::default();
        let num = |name: &str| {
            env(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v > 0.0)
        };
        BreakerSettings {
            threshold: num("PROVIDER_MODEL_CIRCUIT_FAILURE_THRESHOLD")
                .map_or(d.threshold, |v| v as usize),
            window: num("PROVIDER_MODEL_CIRCUIT_WINDOW_SECONDS")
                .map_or(d.window, Duration::from_secs_f64),
            open_for: num("PROVIDER_MODEL_CIRCUIT_OPEN_SECONDS")
                .map_or(d.open_for, Duration::from_secs_f64),
        }
    }
}

#[derive(Debug, Default)]
struct Route {
    cooled_until: Option<Instant>,
    /// Times of recent 403/404 answers.
    denials: VecDeque<Instant>,
    open_until: Option<Instant>,
}

/// Why a route is out of the running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    Cooling { for_: Duration },
    BreakerOpen { for_: Duration },
}

/// Routes by provider name, then upstream model (nested so lookups borrow the names).
type Routes = HashMap<Box<str>, HashMap<Box<str>, Route>>;

#[derive(Debug, Default)]
pub struct ChannelHealth {
    routes: Mutex<Routes>,
    /// Set once anything was recorded: until then lookups skip the lock.
    touched: AtomicBool,
}

impl ChannelHealth {
    fn with<R>(&self, f: impl FnOnce(&mut Routes) -> R) -> R {
        let mut guard = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn route<'r>(routes: &'r mut Routes, provider: &str, model: &str) -> &'r mut Route {
        routes
            .entry(Box::from(provider))
            .or_default()
            .entry(Box::from(model))
            .or_default()
    }

    /// Keep `provider`+`model` out of multi-channel plans for `period`.
    pub fn cool(&self, provider: &str, model: &str, period: Duration, now: Instant) {
        if period.is_zero() {
            return;
        }
        self.touched.store(true, Ordering::Relaxed);
        self.with(|routes| {
            let r = Self::route(routes, provider, model);
            let until = now + period;
            r.cooled_until = Some(r.cooled_until.map_or(until, |u| u.max(until)));
        });
    }

    /// A 403 or 404 from this route; opens the breaker at the threshold.
    pub fn denied(&self, provider: &str, model: &str, settings: &BreakerSettings, now: Instant) {
        self.touched.store(true, Ordering::Relaxed);
        self.with(|routes| {
            let r = Self::route(routes, provider, model);
            while r
                .denials
                .front()
                .is_some_and(|t| now.duration_since(*t) > settings.window)
            {
                r.denials.pop_front();
            }
            r.denials.push_back(now);
            if r.denials.len() >= settings.threshold.max(1) {
                r.open_until = Some(now + settings.open_for);
                r.denials.clear();
            }
        });
    }

    /// A success closes the breaker and forgets earlier denials (cooling stays: it was set by
    /// another request's failure and ends on its own).
    pub fn succeeded(&self, provider: &str, model: &str) {
        if !self.touched.load(Ordering::Relaxed) {
            return;
        }
        self.with(|routes| {
            if let Some(r) = routes.get_mut(provider).and_then(|m| m.get_mut(model)) {
                r.denials.clear();
                r.open_until = None;
            }
        });
    }

    /// The breaker state alone (applies even to a model with one channel).
    pub fn breaker_open(&self, provider: &str, model: &str, now: Instant) -> Option<Duration> {
        if !self.touched.load(Ordering::Relaxed) {
            return None;
        }
        self.with(|routes| {
            let r = routes.get(provider)?.get(model)?;
            r.open_until
                .filter(|u| *u > now)
                .map(|u| u.duration_since(now))
        })
    }

    /// Cooling or an open breaker.
    pub fn unavailable(&self, provider: &str, model: &str, now: Instant) -> Option<Unavailable> {
        if !self.touched.load(Ordering::Relaxed) {
            return None;
        }
        self.with(|routes| {
            let r = routes.get(provider)?.get(model)?;
            if let Some(u) = r.open_until.filter(|u| *u > now) {
                return Some(Unavailable::BreakerOpen {
                    for_: u.duration_since(now),
                });
            }
            r.cooled_until
                .filter(|u| *u > now)
                .map(|u| Unavailable::Cooling {
                    for_: u.duration_since(now),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooling_expires() {
        let h = ChannelHealth::default();
        let t0 = Instant::now();
        h.cool("p", "m", Duration::from_secs(300), t0);
        assert_eq!(
            h.unavailable("p", "m", t0 + Duration::from_secs(299)),
            Some(Unavailable::Cooling {
                for_: Duration::from_secs(1)
            })
        );
        assert_eq!(h.unavailable("p", "m", t0 + Duration::from_secs(300)), None);
        assert_eq!(h.unavailable("p", "other", t0), None);
        h.cool("q", "m", Duration::ZERO, t0);
        assert_eq!(h.unavailable("q", "m", t0), None);
    }

    #[test]
    fn three_denials_in_the_window_open_the_breaker_and_a_success_closes_it() {
        let h = ChannelHealth::default();
        let s = BreakerSettings::default();
        let t0 = Instant::now();
        h.denied("p", "m", &s, t0);
        h.denied("p", "m", &s, t0 + Duration::from_secs(10));
        // The first one falls out of the 120 s window.
        h.denied("p", "m", &s, t0 + Duration::from_secs(125));
        assert_eq!(
            h.breaker_open("p", "m", t0 + Duration::from_secs(125)),
            None
        );
        h.denied("p", "m", &s, t0 + Duration::from_secs(126));
        let open = h.breaker_open("p", "m", t0 + Duration::from_secs(126));
        assert_eq!(open, Some(Duration::from_secs(300)));
        h.succeeded("p", "m");
        assert_eq!(
            h.breaker_open("p", "m", t0 + Duration::from_secs(127)),
            None
        );
    }

    #[test]
    fn env_overrides_the_breaker() {
        let env = |name: &str| match name {
            "PROVIDER_MODEL_CIRCUIT_FAILURE_THRESHOLD" => Some("2".to_string()),
            "PROVIDER_MODEL_CIRCUIT_OPEN_SECONDS" => Some("1.5".to_string()),
            "PROVIDER_MODEL_CIRCUIT_WINDOW_SECONDS" => Some("nope".to_string()),
            _ => None,
        };
        let s = BreakerSettings::from_env(&env);
        assert_eq!(s.threshold, 2);
        assert_eq!(s.open_for, Duration::from_millis(1500));
        assert_eq!(s.window, Duration::from_secs(120));
    }
}
