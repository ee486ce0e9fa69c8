//! Upstream providers: which engine a channel speaks, its URLs, the HTTP client, model
//! discovery, proxies and the built-in demo provider.

pub mod client;
pub mod demo;
pub mod discovery;
pub mod engine;
pub mod media;
pub mod pool;
pub mod proxy;
pub mod suffixes;
pub mod upstream;
pub mod urls;
