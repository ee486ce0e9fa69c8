//! The discrete-event harness: virtual time, the gateway's attempt loop
//! (`routing::attempt::run_attempts`) mirrored step by step, the provider, and the bookkeeping
//! the metrics need.
//!
//! Mirrored loop, per client request: acquire a key (never one this request tried) → send →
//! the answer's headers go to the scheduler, a failure is classified by the real
//! `classify_response` and reported → a failure the class allows to retry elsewhere is retried
//! at once on another key, within the attempt budget (`min(#keys, 1 + min(2·#keys, 10))`) and
//! the scheduler's retry budget (checked from the second attempt on) → when no key is free now
//! and the earliest frees within the wait allowance (10 s since arrival) and the deadline
//! (60 s), the request sleeps until then (an event at `until`), else it is answered: 429 with
//! `Retry-After: ceil(wait)` if nothing was sent yet, else the last upstream error (relayed,
//! without `Retry-After`). Disabled keys are re-validated every 5 s tick with `GET /models`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use crate::keypool::classify::{ErrorClass, classify_response};
use crate::keypool::clock::{ManualClock, Nanos};

use super::metrics::{Metrics, RevokedKey};
use super::provider::{Answer, MINUTE, Provider, SECOND, Shape};
use super::scenario::Scenario;
use super::scheduler::{Kind, Pick, RequestInfo, Scheduler};
use super::workload::{ClientRequest, quantile};

/// 2026-01-01T00:00:00Z: the wall clock at virtual time 0.
pub const ORIGIN_UNIX_MS: u64 = 1_767_225_600_000;
/// A channel's default `key_wait_timeout`.
pub const WAIT_ALLOWANCE: Nanos = 10 * SECOND;
/// Per-request deadline.
pub const DEADLINE: Nanos = 60 * SECOND;
/// Latency of an error answer (no generation).
const ERROR_LATENCY: Nanos = 50_000_000;
/// `upkeep::TICK`.
const UPKEEP_TICK: Nanos = 5 * SECOND;
/// Latency of a `GET /models` re-validation call.
const VALIDATION_LATENCY: Nanos = 100_000_000;
const MS: Nanos = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrive(usize),
    Wake(usize),
    /// The provider's answer (status and headers) reaches the gateway.
    Answer(usize),
    /// A streamed answer's last byte.
    End(usize),
    Upkeep,
    Revalidated(usize, bool),
}

/// What the client finally got.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Outcome {
    status: u16,
    retry_after: Option<u64>,
    /// First byte (status) reached the client.
    start: Nanos,
    /// Last byte.
    end: Nanos,
}

#[derive(Debug, Default)]
struct ReqState {
    tried: Vec<usize>,
    attempts: usize,
    last_status: Option<u16>,
    first_byte: Nanos,
    outcome: Option<Outcome>,
}

#[derive(Debug)]
struct AttemptRec {
    req: usize,
    key: usize,
    sent: Nanos,
    answer: Option<Answer>,
    status: u16,
    charged: Option<u64>,
    class: Option<ErrorClass>,
}

/// One run's result and how long it took on the wall clock.
#[derive(Debug, Clone)]
pub struct Report {
    pub metrics: Metrics,
    pub wall: std::time::Duration,
    pub events: u64,
}

struct Sim<'a> {
    scn: &'a Scenario,
    seed: u64,
    now: Nanos,
    provider: Provider,
    sched: Box<dyn Scheduler>,
    queue: BinaryHeap<Reverse<(Nanos, u64, Ev)>>,
    seq: u64,
    reqs: Vec<ClientRequest>,
    state: Vec<ReqState>,
    attempts: Vec<AttemptRec>,
    budget: usize,
    /// Successful usage per true scope, by admission time inside the window.
    used_req: Vec<u64>,
    used_tok: Vec<u64>,
    revoked: Option<RevokedTrack>,
}

#[derive(Debug, Default)]
struct RevokedTrack {
    key: usize,
    restore_at: Nanos,
    first_401: Option<Nanos>,
    sends_after: u64,
    back_at: Option<Nanos>,
}

/// `routing::attempt::attempt_budget` for one candidate channel with `keys` keys.
pub fn attempt_budget(keys: usize) -> usize {
    keys.min(1 + (2 * keys).min(10)).max(1)
}

/// Uniform [0, 1) from a hash (per attempt, independent of the scheduler's other choices).
fn draw(seed: u64, req: usize, attempt: usize) -> f64 {
    let mut z = seed ^ ((req as u64) << 16) ^ (attempt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Run one (scenario, scheduler, load, seed).
pub fn run(scn: &Scenario, kind: Kind, rho: f64, seed: u64) -> Report {
    let started = Instant::now();
    let clock = Arc::new(ManualClock::new(ORIGIN_UNIX_MS));
    let mean_tokens = scn.mean_billed();
    let rate = rho * scn.capacity_rps(mean_tokens);
    let reqs = scn
        .workload
        .arrivals(rate, scn.warmup + scn.measure + scn.tail, seed);
    let keys = scn.key_scope.len();
    let mut sim = Sim {
        scn,
        seed,
        now: 0,
        provider: Provider::new(
            scn.dialect,
            &scn.scopes,
            &scn.key_scope,
            &scn.faults,
            ORIGIN_UNIX_MS,
        ),
        sched: kind.build(keys, scn.dialect.flavor(), clock.clone(), seed),
        queue: BinaryHeap::new(),
        seq: 0,
        state: reqs.iter().map(|_| ReqState::default()).collect(),
        reqs,
        attempts: Vec::new(),
        budget: attempt_budget(keys),
        used_req: vec![0; scn.scopes.len()],
        used_tok: vec![0; scn.scopes.len()],
        revoked: scn.revoked.map(|(key, restore_at)| RevokedTrack {
            key,
            restore_at,
            ..RevokedTrack::default()
        }),
    };
    if let Some(first) = sim.reqs.first() {
        let at = first.arrival;
        sim.push(at, Ev::Arrive(0));
    }
    sim.push(UPKEEP_TICK, Ev::Upkeep);
    let mut events = 0u64;
    while let Some(Reverse((t, _, ev))) = sim.queue.pop() {
        events += 1;
        sim.now = t;
        clock.set(t);
        match ev {
            Ev::Arrive(r) => {
                if let Some(next) = sim.reqs.get(r + 1) {
                    let at = next.arrival;
                    sim.push(at, Ev::Arrive(r + 1));
                }
                sim.step(r);
            }
            Ev::Wake(r) => sim.step(r),
            Ev::Answer(a) => sim.answer(a),
            Ev::End(a) => sim.end(a),
            Ev::Upkeep => {
                for key in sim.sched.due_revalidations() {
                    let ok = sim.provider.list_models(key, t) == 200;
                    sim.push(t + VALIDATION_LATENCY, Ev::Revalidated(key, ok));
                }
                if !sim.queue.is_empty() {
                    sim.push(t + UPKEEP_TICK, Ev::Upkeep);
                }
            }
            Ev::Revalidated(key, ok) => sim.sched.revalidated(key, ok),
        }
    }
    let metrics = sim.metrics(kind, rho, mean_tokens);
    Report {
        metrics,
        wall: started.elapsed(),
        events,
    }
}

impl Sim<'_> {
    fn push(&mut self, at: Nanos, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, ev)));
    }

    fn finish(&mut self, r: usize, status: u16, retry_after: Option<u64>) {
        self.sched.done(r);
        let now = self.now;
        self.state[r].outcome = Some(Outcome {
            status,
            retry_after,
            start: now,
            end: now,
        });
    }

    /// After the attempts: the last upstream error, or 503 when nothing was sent.
    fn final_error(&mut self, r: usize) {
        let status = self.state[r].last_status.unwrap_or(503);
        self.finish(r, status, None);
    }

    /// One pass of the attempt loop for request `r`.
    fn step(&mut self, r: usize) {
        let now = self.now;
        if self.state[r].attempts >= self.budget {
            return self.final_error(r);
        }
        let req = self.reqs[r];
        let info = RequestInfo {
            prompt_est: req.prompt + self.scn.workload.prompt_overhead,
            max_tokens: req.max_tokens,
        };
        let attempt = self.attempts.len();
        let pick = self.sched.acquire(r, attempt, &info, &self.state[r].tried);
        let attempted = self.state[r].attempts > 0;
        match pick {
            Pick::Granted(key) => {
                if attempted && !self.sched.allow_retry() {
                    self.sched.abandon(attempt);
                    return self.final_error(r);
                }
                self.send(r, key, attempt, &info);
            }
            Pick::Wait { until } => {
                let wait = until.saturating_sub(now);
                if now + wait <= req.arrival + DEADLINE
                    && now + wait <= req.arrival + WAIT_ALLOWANCE
                {
                    self.push(now + wait.max(MS), Ev::Wake(r));
                } else if attempted {
                    self.final_error(r);
                } else {
                    let secs = (wait as f64 / SECOND as f64).ceil().max(1.0) as u64;
                    self.finish(r, 429, Some(secs));
                }
            }
            Pick::Exhausted => {
                if attempted {
                    self.final_error(r);
                } else {
                    self.finish(r, 503, None);
                }
            }
            Pick::TooLarge => {
                if attempted {
                    self.final_error(r);
                } else {
                    self.finish(r, 413, None);
                }
            }
        }
    }

    fn send(&mut self, r: usize, key: usize, attempt: usize, info: &RequestInfo) {
        let now = self.now;
        let st = &mut self.state[r];
        st.tried.push(key);
        st.attempts += 1;
        let ordinal = st.attempts;
        let shape = Shape {
            prompt_est: info.prompt_est,
            max_tokens: info.max_tokens,
        };
        let answer = self
            .provider
            .request(key, shape, now, draw(self.seed, r, ordinal));
        let req = self.reqs[r];
        let latency = match (answer.status, req.stream) {
            (200, true) => req.ttft,
            (200, false) => req.service(&self.scn.workload),
            _ => ERROR_LATENCY,
        };
        if let Some(t) = self.revoked.as_mut()
            && t.key == key
            && t.first_401.is_some_and(|f| now > f)
            && now < t.restore_at
        {
            t.sends_after += 1;
        }
        self.attempts.push(AttemptRec {
            req: r,
            key,
            sent: now,
            status: answer.status,
            charged: answer.charged,
            answer: Some(answer),
            class: None,
        });
        self.push(now + latency, Ev::Answer(attempt));
    }

    fn answer(&mut self, a: usize) {
        let now = self.now;
        let Some(answer) = self.attempts[a].answer.take() else {
            return;
        };
        let (r, key) = (self.attempts[a].req, self.attempts[a].key);
        let req = self.reqs[r];
        if answer.status == 200 {
            self.sched.answered(a, key, &answer.headers, Ok(()));
            if let Some(t) = self.revoked.as_mut()
                && t.key == key
                && t.back_at.is_none()
                && self.attempts[a].sent >= t.restore_at
            {
                t.back_at = Some(now);
            }
            self.state[r].first_byte = now;
            if req.stream {
                let done = self.attempts[a].sent + req.service(&self.scn.workload);
                self.push(done, Ev::End(a));
            } else {
                self.end(a);
            }
            return;
        }
        let c = classify_response(
            self.scn.dialect.flavor(),
            answer.status,
            &answer.headers,
            &answer.body,
            self.clock_unix_ms(),
        );
        self.attempts[a].class = Some(c.class);
        if answer.status == 401
            && let Some(t) = self.revoked.as_mut()
            && t.key == key
            && t.first_401.is_none()
        {
            t.first_401 = Some(now);
        }
        self.sched.answered(a, key, &answer.headers, Err(&c));
        if !c.may_retry_elsewhere() {
            // relay_error: the upstream error, as is.
            return self.finish(r, answer.status, None);
        }
        self.state[r].last_status = Some(answer.status);
        self.step(r);
    }

    fn clock_unix_ms(&self) -> u64 {
        ORIGIN_UNIX_MS + self.now / MS
    }

    /// A successful attempt's last byte: reconcile, settle, account, answer the client.
    fn end(&mut self, a: usize) {
        let now = self.now;
        let (r, key, sent) = (
            self.attempts[a].req,
            self.attempts[a].key,
            self.attempts[a].sent,
        );
        let req = self.reqs[r];
        let actual = req.actual_tokens();
        if let Some(charged) = self.attempts[a].charged {
            self.provider.settle(key, charged, actual, now);
        }
        self.sched.finished(a, actual);
        if sent >= self.scn.warmup && sent < self.scn.warmup + self.scn.measure {
            let scope = self.provider.scope_of(key);
            self.used_req[scope] += 1;
            self.used_tok[scope] += self.scn.workload.billed(&req, self.scn.dialect);
        }
        let start = self.state[r].first_byte;
        self.state[r].outcome = Some(Outcome {
            status: 200,
            retry_after: None,
            start,
            end: now,
        });
    }

    fn metrics(&self, kind: Kind, rho: f64, mean_tokens: f64) -> Metrics {
        let scn = self.scn;
        let (w0, w1) = (scn.warmup, scn.warmup + scn.measure);
        let in_window = |r: usize| (w0..w1).contains(&self.reqs[r].arrival);
        let mut m = Metrics {
            scenario: scn.id,
            scheduler: kind.name(),
            rho,
            ..Metrics::default()
        };
        let mut latencies = Vec::new();
        let mut retry_after_sum = 0u64;
        let mut offered_tokens = 0u64;
        for (r, st) in self.state.iter().enumerate() {
            if !in_window(r) {
                continue;
            }
            let req = self.reqs[r];
            m.requests += 1;
            offered_tokens += scn.workload.billed(&req, scn.dialect);
            m.attempts += st.attempts as u64;
            let Some(o) = st.outcome else {
                m.server_5xx += 1;
                continue;
            };
            if o.start.saturating_sub(req.arrival) > DEADLINE {
                m.deadline += 1;
                continue;
            }
            match (o.status, o.retry_after) {
                (200, _) => {
                    m.ok += 1;
                    latencies.push(o.end - req.arrival);
                }
                (429, Some(ra)) => {
                    m.fast_429 += 1;
                    retry_after_sum += ra;
                    m.retry_after_max_s = m.retry_after_max_s.max(ra);
                }
                (429, None) => m.relayed_429 += 1,
                (s, _) if s >= 500 => m.server_5xx += 1,
                _ => m.client_4xx += 1,
            }
        }
        for a in &self.attempts {
            if !in_window(a.req) {
                continue;
            }
            if a.status == 429 {
                m.upstream_429 += 1;
            }
            if a.class == Some(ErrorClass::RateLimited) {
                m.upstream_rate_limited += 1;
            }
        }
        latencies.sort_unstable();
        m.p50_s = quantile(&latencies, 0.50) as f64 / SECOND as f64;
        m.p99_s = quantile(&latencies, 0.99) as f64 / SECOND as f64;
        if m.fast_429 > 0 {
            m.retry_after_mean_s = retry_after_sum as f64 / m.fast_429 as f64;
        }
        let secs = scn.measure as f64 / SECOND as f64;
        m.goodput_rps = m.ok as f64 / secs;
        // Capacity of the window: each scope's binding dimension while it can serve.
        let cap_rps = scn.scope_capacity_rps(mean_tokens);
        let tokens_bind = scn.tokens_bind(mean_tokens);
        let mut ratios = Vec::new();
        let (mut cap_tok, mut cap_req, mut cap_units) = (0.0, 0.0, 0.0);
        for (i, s) in scn.scopes.iter().enumerate() {
            let avail = scn.available_secs(i);
            if avail <= 0.0 {
                continue;
            }
            let tok_cap = s.tpm as f64 / 60.0 * avail;
            let req_cap = s.rpm as f64 / 60.0 * avail;
            cap_tok += tok_cap;
            cap_req += req_cap;
            cap_units += cap_rps[i] * avail;
            ratios.push((self.used_tok[i] as f64 / tok_cap).max(self.used_req[i] as f64 / req_cap));
        }
        m.capacity_rps = cap_units / secs;
        let (used, offered, cap) = if tokens_bind {
            (
                self.used_tok.iter().sum::<u64>() as f64,
                offered_tokens as f64,
                cap_tok,
            )
        } else {
            (
                self.used_req.iter().sum::<u64>() as f64,
                m.requests as f64,
                cap_req,
            )
        };
        if cap > 0.0 {
            m.utilisation = used / cap;
            m.offered = offered / cap;
        }
        let sum: f64 = ratios.iter().sum();
        let sq: f64 = ratios.iter().map(|u| u * u).sum();
        if sq > 0.0 {
            m.jain = sum * sum / (ratios.len() as f64 * sq);
        }
        if let Some(t) = &self.revoked {
            m.revoked = Some(RevokedKey {
                key: t.key + 1,
                first_401_min: t
                    .first_401
                    .map(|f| f.saturating_sub(w0) as f64 / MINUTE as f64),
                sends_after_401: t.sends_after,
                back_after_restore_min: t
                    .back_at
                    .map(|b| b.saturating_sub(t.restore_at) as f64 / MINUTE as f64),
            });
        }
        m
    }
}
