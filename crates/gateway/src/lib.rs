//! llmux: one OpenAI-compatible endpoint in front of many LLM providers and keys.
//!
//! Modules follow the request path: `server` (listener, auth, ingress APIs) → `routing`
//! (model rules → candidate channels, the attempt loop) → `keypool` (which upstream key) →
//! `providers` (URLs, auth headers, transport). `config` turns an `api.yaml` into the
//! immutable [`runtime::Runtime`] every request reads. Beside the request path, `usage` (records,
//! cost, credits ledger) and `store` (SQLite / PostgreSQL persistence, batched writer, the
//! statistics endpoints' queries).

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod keypool;
pub mod providers;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod secret;
pub mod server;
pub mod sim;
pub mod store;
pub mod upkeep;
pub mod usage;
