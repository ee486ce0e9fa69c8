//! The client side: open-loop Poisson arrivals and per-request sizes and timings, drawn once
//! per (scenario, load, seed) so every scheduler sees exactly the same requests.

use crate::keypool::clock::Nanos;

use super::provider::{Dialect, SECOND};

/// Distributions of one workload (keys.md §b.6).
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Prompt tokens ~ lognormal(median, sigma), capped.
    pub prompt_median: f64,
    pub prompt_sigma: f64,
    pub prompt_cap: u64,
    /// Extra tokens in the gateway's and the provider's character-based estimate (JSON framing).
    pub prompt_overhead: u64,
    /// Output tokens ~ lognormal(median, sigma), capped by `max_tokens` (else `model_max_output`).
    pub output_median: f64,
    pub output_sigma: f64,
    pub model_max_output: u64,
    /// `max_tokens` the client sends, uniformly one of these (`None` = absent).
    pub max_tokens: Vec<Option<u64>>,
    /// Time to first token ~ lognormal(median ms, sigma), then `ms_per_token` per output token.
    pub ttft_median_ms: f64,
    pub ttft_sigma: f64,
    pub ms_per_token: f64,
    /// Share of requests that stream.
    pub stream_share: f64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            prompt_median: 800.0,
            prompt_sigma: 1.0,
            prompt_cap: 16_000,
            prompt_overhead: 10,
            output_median: 300.0,
            output_sigma: 0.5,
            model_max_output: 4096,
            max_tokens: vec![Some(256), Some(1024), Some(4096), None],
            ttft_median_ms: 400.0,
            ttft_sigma: 0.5,
            ms_per_token: 20.0,
            stream_share: 0.5,
        }
    }
}

/// One client request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClientRequest {
    pub arrival: Nanos,
    pub prompt: u64,
    pub max_tokens: Option<u64>,
    /// Output tokens the model will produce (already capped).
    pub output: u64,
    pub ttft: Nanos,
    pub stream: bool,
}

impl ClientRequest {
    /// Tokens the provider finally bills (prompt + completion).
    pub fn actual_tokens(&self) -> u64 {
        self.prompt + self.output
    }

    /// Time from admission to the last byte.
    pub fn service(&self, w: &Workload) -> Nanos {
        self.ttft + (self.output as f64 * w.ms_per_token * 1e6) as Nanos
    }
}

/// Standard normal (Box–Muller).
pub fn normal(rng: &mut fastrand::Rng) -> f64 {
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub fn lognormal(rng: &mut fastrand::Rng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

impl Workload {
    /// One request's sizes and timings (arrival left at 0).
    pub fn draw(&self, rng: &mut fastrand::Rng) -> ClientRequest {
        let prompt = (lognormal(rng, self.prompt_median, self.prompt_sigma).round() as u64)
            .clamp(1, self.prompt_cap);
        let max_tokens = if self.max_tokens.is_empty() {
            None
        } else {
            self.max_tokens[rng.usize(..self.max_tokens.len())]
        };
        let cap = max_tokens.unwrap_or(self.model_max_output);
        let output =
            (lognormal(rng, self.output_median, self.output_sigma).round() as u64).clamp(1, cap);
        let ttft_ms = lognormal(rng, self.ttft_median_ms, self.ttft_sigma);
        let stream = rng.f64() < self.stream_share;
        ClientRequest {
            arrival: 0,
            prompt,
            max_tokens,
            output,
            ttft: (ttft_ms * 1e6) as Nanos,
            stream,
        }
    }

    /// Tokens a finished request counts against the tokens-per-minute limit: prompt plus
    /// completion (OpenAI, reconciled), or the estimated prompt alone (Gemini's input tokens).
    pub fn billed(&self, r: &ClientRequest, dialect: Dialect) -> u64 {
        match dialect {
            Dialect::OpenAi => r.actual_tokens(),
            Dialect::Gemini | Dialect::GeminiUnstated => r.prompt + self.prompt_overhead,
        }
    }

    /// Mean tokens per request that count against the dialect's tokens-per-minute limit
    /// (Monte Carlo on a fixed seed).
    pub fn mean_billed(&self, dialect: Dialect) -> f64 {
        let mut rng = fastrand::Rng::with_seed(0x5eed_70c3);
        let n = 100_000;
        let total: u64 = (0..n)
            .map(|_| {
                let r = self.draw(&mut rng);
                self.billed(&r, dialect)
            })
            .sum();
        total as f64 / n as f64
    }

    /// The unloaded end-to-end latency quantiles (service time alone), in seconds.
    pub fn unloaded_latency(&self, q: &[f64]) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(0x01a7_e0c7);
        let mut v: Vec<Nanos> = (0..50_000)
            .map(|_| self.draw(&mut rng).service(self))
            .collect();
        v.sort_unstable();
        q.iter()
            .map(|&q| quantile(&v, q) as f64 / SECOND as f64)
            .collect()
    }

    /// Poisson arrivals at `rate` per second over `[0, until)`.
    pub fn arrivals(&self, rate: f64, until: Nanos, seed: u64) -> Vec<ClientRequest> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut out = Vec::new();
        let mut t = 0.0f64;
        loop {
            t += -(1.0 - rng.f64()).ln() / rate;
            let at = (t * SECOND as f64) as Nanos;
            if at >= until {
                return out;
            }
            let mut r = self.draw(&mut rng);
            r.arrival = at;
            out.push(r);
        }
    }
}

/// Nearest-rank quantile of sorted values (0 when empty).
pub fn quantile(sorted: &[Nanos], q: f64) -> Nanos {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
