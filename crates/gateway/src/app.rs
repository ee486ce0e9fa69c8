//! Process-wide state shared by every connection: the current runtime (swapped atomically on
//! reload), the routing state that outlives runtimes, the usage store's handles (records,
//! credits ledger, statistics) and the process counters, where the config came from (for
//! reloads), and the pooled upstream client.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::keypool::shared::Link;
use crate::providers::client::UpstreamClient;
use crate::routing::RoutingState;
use crate::runtime::Runtime;
use crate::store::{Store, UsageService, UsageSink};
use crate::usage::{CostLedger, Metrics};

/// Where the running config was read from, so it can be read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A local file (watched for changes).
    File(PathBuf),
    /// An http(s) URL (`CONFIG_URL`): reloaded on SIGHUP or `POST /admin/reload` only.
    Url(String),
}

#[derive(Debug)]
pub struct App {
    runtime: ArcSwap<Runtime>,
    pub client: UpstreamClient,
    pub routing: RoutingState,
    /// `None` for the demo and for tests that build a runtime in code.
    pub source: Option<ConfigSource>,
    /// One reload at a time.
    pub(crate) reload_lock: tokio::sync::Mutex<()>,
    /// Other instances sharing the key pools (`REDIS_URL`), when configured.
    shared: OnceLock<Arc<Link>>,
    /// Where finished requests go; its ledger is the credits ledger.
    pub usage: UsageSink,
    /// The statistics endpoints' database; `None` under `DISABLE_DATABASE`.
    pub store: Option<Arc<Store>>,
    pub metrics: Arc<Metrics>,
    /// `GET /metrics` without a key (`LLMUX_METRICS_PUBLIC=true`); admin keys only otherwise.
    pub metrics_public: bool,
}

impl App {
    /// Without a config source or a database (demo, tests): usage feeds an in-memory ledger.
    pub fn new(runtime: Runtime, client: UpstreamClient) -> Arc<App> {
        Self::with_source(runtime, client, None, None)
    }

    /// With a config source (reloadable) and the usage service `serve` started (`None`: no
    /// database, as `DISABLE_DATABASE`).
    pub fn with_source(
        runtime: Runtime,
        client: UpstreamClient,
        source: Option<ConfigSource>,
        usage: Option<&UsageService>,
    ) -> Arc<App> {
        let (sink, store) = match usage {
            Some(u) => (u.sink(), u.store().cloned()),
            None => (UsageService::disabled().sink(), None),
        };
        Arc::new(App {
            runtime: ArcSwap::from_pointee(runtime),
            client,
            routing: RoutingState::default(),
            source,
            reload_lock: tokio::sync::Mutex::new(()),
            shared: OnceLock::new(),
            usage: sink,
            store,
            metrics: Arc::new(Metrics::default()),
            metrics_public: std::env::var("LLMUX_METRICS_PUBLIC").is_ok_and(|v| {
                matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes")
            }),
        })
    }

    /// Spending and granted credits per client key.
    pub fn ledger(&self) -> &Arc<CostLedger> {
        self.usage.ledger()
    }

    /// Share the key pools with other instances, from now on and across reloads.
    pub fn share_key_pools(&self, link: Arc<Link>) {
        link.attach_runtime(&self.runtime());
        let _ = self.shared.set(link);
    }

    pub fn shared(&self) -> Option<&Arc<Link>> {
        self.shared.get()
    }

    /// The runtime a request uses from start to end (load once, hold it).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swap in a new runtime; in-flight requests keep the one they loaded.
    pub fn replace_runtime(&self, runtime: Runtime) {
        if let Some(link) = self.shared.get() {
            link.attach_runtime(&runtime);
        }
        self.runtime.store(Arc::new(runtime));
    }
}
