//! Upstream key pools: per provider, which key serves the next request, and what each upstream
//! outcome teaches about keys, quota scopes and models (reference: keys.md §a, §b).
//!
//! Pure logic on an injected [`clock::Clock`] — no I/O, no tokio — so tests and the
//! simulation run on virtual time: `clock` (time), `gcra` (token buckets), `limits` (configured
//! limits), `estimate` (limits learned from 429s when no header reports them),
//! `ratelimit_headers` and `classify` (reading upstream answers), `health` (key state
//! machine), `pool` (admission, selection, feedback, leases), `persist` (slow state across
//! restarts). The exception is `shared`: the Redis transport that lets several instances share
//! one pool's state and limits (the pool's side of it, `pool::remote`, stays pure).

pub mod classify;
pub mod clock;
pub mod estimate;
pub mod gcra;
pub mod health;
pub mod limits;
pub mod persist;
pub mod pool;
pub mod ratelimit_headers;
pub mod shared;
#[cfg(test)]
mod tests;

pub use pool::{
    Acquire, Algorithm, Event, Fact, KeyPool, KeySpec, KeyStatus, Lease, Observed, Observer, Peers,
    PoolSettings, Ticket,
};
