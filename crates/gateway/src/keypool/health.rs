//! A key's health: Healthy → (failure) Cooling → (time) Probation: one request probes →
//! Healthy, or back to Cooling for twice as long. Invalid or billing-dead keys are Disabled and
//! re-validated on a back-off schedule.

use super::classify::ErrorClass;
use super::clock::Nanos;

const MINUTE: Nanos = 60_000_000_000;

/// Re-validation schedule of a key rejected as invalid (keys.md table row 5).
pub const AUTH_REVALIDATE: [Nanos; 4] = [10 * MINUTE, 60 * MINUTE, 360 * MINUTE, 1440 * MINUTE];
/// Re-probe schedule of a scope out of credit (row 4).
pub const BILLING_REVALIDATE: [Nanos; 4] = [15 * MINUTE, 60 * MINUTE, 360 * MINUTE, 1440 * MINUTE];

#[derive(Debug, Clone, PartialEq)]
pub enum Health {
    Healthy,
    Cooling {
        until: Nanos,
        class: ErrorClass,
    },
    /// Cooled down: the next request is a probe; until it answers, no other request uses the key.
    Probation {
        probe_in_flight: bool,
    },
    Disabled {
        class: ErrorClass,
        /// When to try the key again (re-validation call or a probe).
        revalidate_at: Nanos,
        /// Index into the schedule.
        attempt: usize,
        revalidating: bool,
    },
}

impl Health {
    pub fn name(&self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Cooling { .. } => "cooling",
            Health::Probation { .. } => "probation",
            Health::Disabled { .. } => "disabled",
        }
    }

    /// Move expired cool-downs to probation.
    pub fn tick(&mut self, now: Nanos) {
        if let Health::Cooling { until, .. } = *self
            && until <= now
        {
            *self = Health::Probation {
                probe_in_flight: false,
            };
        }
    }

    pub fn disabled(class: ErrorClass, schedule: &[Nanos], attempt: usize, now: Nanos) -> Health {
        let step = schedule
            .get(attempt)
            .or(schedule.last())
            .copied()
            .unwrap_or(MINUTE);
        Health::Disabled {
            class,
            revalidate_at: now + step,
            attempt,
            revalidating: false,
        }
    }
}

/// Cool-down after `strikes` consecutive failures: base × 2^(strikes−1), capped.
pub fn backoff(base: Nanos, strikes: u32, cap: Nanos) -> Nanos {
    let shift = strikes.saturating_sub(1).min(20);
    base.saturating_mul(1u64 << shift).min(cap)
}

/// Up to +10 % so keys and instances do not come back in lockstep.
pub fn jitter(d: Nanos, rng: &mut fastrand::Rng) -> Nanos {
    d + (d as f64 * rng.f64() * 0.1) as Nanos
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooling_expires_into_probation() {
        let mut h = Health::Cooling {
            until: 10,
            class: ErrorClass::ServerError,
        };
        h.tick(9);
        assert_eq!(h.name(), "cooling");
        h.tick(10);
        assert_eq!(
            h,
            Health::Probation {
                probe_in_flight: false
            }
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(10, 1, 1000), 10);
        assert_eq!(backoff(10, 2, 1000), 20);
        assert_eq!(backoff(10, 4, 1000), 80);
        assert_eq!(backoff(10, 30, 1000), 1000);
    }

    #[test]
    fn disabled_follows_the_schedule() {
        let h = Health::disabled(ErrorClass::AuthInvalid, &AUTH_REVALIDATE, 1, 5);
        assert!(
            matches!(h, Health::Disabled { revalidate_at, .. } if revalidate_at == 5 + 60 * MINUTE)
        );
        let h = Health::disabled(ErrorClass::AuthInvalid, &AUTH_REVALIDATE, 99, 5);
        assert!(
            matches!(h, Health::Disabled { revalidate_at, .. } if revalidate_at == 5 + 1440 * MINUTE)
        );
    }
}
