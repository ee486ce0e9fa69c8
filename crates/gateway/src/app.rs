//! Process-wide state shared by every connection: the current runtime (swapped atomically on
//! reload), the routing state that outlives runtimes, where the config came from (for
//! reloads), and the pooled upstream client.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::keypool::shared::Link;
use crate::providers::client::UpstreamClient;
use crate::routing::RoutingState;
use crate::routing::credits::SpendLedger;
use crate::runtime::Runtime;

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
}

impl App {
    pub fn new(runtime: Runtime, client: UpstreamClient) -> Arc<App> {
        Self::build(runtime, client, RoutingState::default(), None)
    }

    /// With a config source (reloadable) and, optionally, a spending ledger of its own (the
    /// usage store's).
    pub fn with_source(
        runtime: Runtime,
        client: UpstreamClient,
        source: Option<ConfigSource>,
        ledger: Option<Arc<dyn SpendLedger>>,
    ) -> Arc<App> {
        let routing = ledger.map_or_else(RoutingState::default, RoutingState::new);
        Self::build(runtime, client, routing, source)
    }

    fn build(
        runtime: Runtime,
        client: UpstreamClient,
        routing: RoutingState,
        source: Option<ConfigSource>,
    ) -> Arc<App> {
        Arc::new(App {
            runtime: ArcSwap::from_pointee(runtime),
            client,
            routing,
            source,
            reload_lock: tokio::sync::Mutex::new(()),
            shared: OnceLock::new(),
        })
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
