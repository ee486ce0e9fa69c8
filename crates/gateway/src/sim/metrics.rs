//! What one run measured (requests arriving inside the measured window), and the Markdown table.

use std::fmt::Write as _;

/// S4: the revoked-then-restored key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RevokedKey {
    /// 1-based, as the scenarios name keys.
    pub key: usize,
    /// Minutes into the window of its first 401.
    pub first_401_min: Option<f64>,
    /// Attempts sent to it after its first 401 and before it was restored.
    pub sends_after_401: u64,
    /// Minutes from the restoration to its first successful answer (None: not within the run).
    pub back_after_restore_min: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Metrics {
    pub scenario: &'static str,
    pub scheduler: &'static str,
    pub rho: f64,
    /// Client requests that arrived in the window.
    pub requests: u64,
    pub ok: u64,
    /// 429 from the gateway itself, with `Retry-After`.
    pub fast_429: u64,
    /// An upstream 429 relayed after the attempts (no `Retry-After`).
    pub relayed_429: u64,
    pub server_5xx: u64,
    /// Other 4xx (e.g. a relayed 401, 413).
    pub client_4xx: u64,
    /// First byte later than the 60 s deadline.
    pub deadline: u64,
    /// Upstream attempts of those requests.
    pub attempts: u64,
    /// Upstream answers with status 429 (any cause).
    pub upstream_429: u64,
    /// Upstream answers classified `rate_limited_transient`.
    pub upstream_rate_limited: u64,
    pub goodput_rps: f64,
    /// True capacity of the window (binding dimension, scopes while they can serve), req/s.
    pub capacity_rps: f64,
    /// Achieved ÷ true capacity of the binding dimension.
    pub utilisation: f64,
    /// Offered ÷ true capacity of the binding dimension (the measured ρ).
    pub offered: f64,
    /// End-to-end latency of successful requests (arrival to last byte, queueing included).
    pub p50_s: f64,
    pub p99_s: f64,
    /// Jain's index over per-scope utilisation ratios.
    pub jain: f64,
    pub retry_after_mean_s: f64,
    pub retry_after_max_s: u64,
    pub revoked: Option<RevokedKey>,
}

fn pct(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

impl Metrics {
    pub fn errors(&self) -> u64 {
        self.requests - self.ok
    }

    /// Client error rate, %.
    pub fn error_pct(&self) -> f64 {
        pct(self.errors(), self.requests)
    }

    pub fn success_pct(&self) -> f64 {
        pct(self.ok, self.requests)
    }

    /// Upstream 429s per 1000 client requests.
    pub fn upstream_429_per_1000(&self) -> f64 {
        pct(self.upstream_429, self.requests) * 10.0
    }

    /// Upstream 429s as % of attempts.
    pub fn upstream_429_pct(&self) -> f64 {
        pct(self.upstream_429, self.attempts)
    }

    pub fn attempts_per_request(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.attempts as f64 / self.requests as f64
        }
    }

    /// Achieved ÷ what was attainable: min(offered, capacity).
    pub fn served_of_attainable(&self) -> f64 {
        let attainable = self.offered.min(1.0);
        if attainable <= 0.0 {
            0.0
        } else {
            self.utilisation / attainable
        }
    }
}

pub const TABLE_HEADER: &str = "| scen | scheduler | ρ | req | ok % | 429+RA % | 429 relayed % | 5xx % | 4xx % | deadline % | up 429 /1k req | up 429 % att | att/req | goodput req/s | util % | served/attainable % | p50 s | p99 s | Jain | RA mean s | revoked key: sends after 401 / back after restore |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";

/// One Markdown table row.
pub fn table_row(m: &Metrics) -> String {
    let mut s = String::new();
    let revoked = match &m.revoked {
        None => "".to_string(),
        Some(r) => format!(
            "{} / {}",
            r.sends_after_401,
            r.back_after_restore_min
                .map_or("not back".to_string(), |b| format!("{b:.1} min"))
        ),
    };
    let _ = writeln!(
        s,
        "| {} | {} | {:.1} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.3} | {:.1} | {:.1} | {:.2} | {:.2} | {:.3} | {:.1} | {} |",
        m.scenario,
        m.scheduler,
        m.rho,
        m.requests,
        m.success_pct(),
        pct(m.fast_429, m.requests),
        pct(m.relayed_429, m.requests),
        pct(m.server_5xx, m.requests),
        pct(m.client_4xx, m.requests),
        pct(m.deadline, m.requests),
        m.upstream_429_per_1000(),
        m.upstream_429_pct(),
        m.attempts_per_request(),
        m.goodput_rps,
        100.0 * m.utilisation,
        100.0 * m.served_of_attainable(),
        m.p50_s,
        m.p99_s,
        m.jain,
        m.retry_after_mean_s,
        revoked,
    );
    s
}

pub fn table(rows: &[Metrics]) -> String {
    let mut s = TABLE_HEADER.to_string();
    for m in rows {
        s.push_str(&table_row(m));
    }
    s
}

/// Mean and 95 % confidence half-width (Student t) of a sample.
pub fn mean_ci(xs: &[f64]) -> (f64, f64) {
    // Two-sided 97.5 % quantiles of Student's t for 1..=10 degrees of freedom.
    const T: [f64; 10] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    ];
    let n = xs.len();
    if n == 0 {
        return (0.0, 0.0);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

/// Mean ± 95 % CI over seeds of the headline numbers, one row per (scenario, scheduler, ρ):
/// `runs` holds every seed's metrics of one configuration.
pub fn summary_table(runs: &[Vec<Metrics>]) -> String {
    let mut s = String::from(
        "| scen | scheduler | ρ | seeds | ok % | up 429 % att | util % | served/attainable % | p99 s | Jain |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ms in runs {
        let Some(first) = ms.first() else { continue };
        let col = |f: &dyn Fn(&Metrics) -> f64, digits: usize| {
            let xs: Vec<f64> = ms.iter().map(f).collect();
            let (m, ci) = mean_ci(&xs);
            format!("{m:.digits$} ± {ci:.digits$}")
        };
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            first.scenario,
            first.scheduler,
            first.rho,
            ms.len(),
            col(&|m| m.success_pct(), 2),
            col(&|m| m.upstream_429_pct(), 2),
            col(&|m| 100.0 * m.utilisation, 1),
            col(&|m| 100.0 * m.served_of_attainable(), 1),
            col(&|m| m.p99_s, 2),
            col(&|m| m.jain, 3),
        );
    }
    s
}
