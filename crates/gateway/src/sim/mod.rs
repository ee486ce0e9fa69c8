//! Deterministic discrete-event simulation of the key pool against baselines (keys.md §b.6).
//!
//! Everything runs on virtual time ([`crate::keypool::clock::ManualClock`]) in one thread: an
//! in-process provider ([`provider`]) with the real enforcement of an OpenAI-flavoured API
//! (token buckets per quota scope, genuine headers and error bodies, faults on a schedule);
//! open-loop Poisson clients ([`workload`]); the gateway's attempt loop mirrored step by step
//! ([`engine`]); and the schedulers compared on the same requests ([`scheduler`]): the real
//! [`crate::keypool::KeyPool`] (`ours`) and naive / uni-api-like baselines. Every provider answer
//! is a real `http::HeaderMap` and JSON body read by the real `classify_response` and
//! `parse_limits`. Same seed, same result.
//!
//! `cargo run --release -p llmux --bin keypool-sim` prints the full table.

pub mod engine;
pub mod metrics;
pub mod provider;
pub mod scenario;
pub mod scheduler;
pub mod workload;

pub use engine::{Report, run};
pub use metrics::{Metrics, RevokedKey, mean_ci, summary_table, table, table_row};
pub use scenario::{Scenario, Timeline};
pub use scheduler::{Kind, Pick, RequestInfo, Scheduler};
