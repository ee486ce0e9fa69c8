//! Process-wide state shared by every connection: the current runtime (swapped atomically on
//! reload) and the pooled upstream client.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use crate::keypool::shared::Link;
use crate::providers::client::UpstreamClient;
use crate::runtime::Runtime;

#[derive(Debug)]
pub struct App {
    runtime: ArcSwap<Runtime>,
    pub client: UpstreamClient,
    /// Other instances sharing the key pools (`REDIS_URL`), when configured.
    shared: OnceLock<Arc<Link>>,
}

impl App {
    pub fn new(runtime: Runtime, client: UpstreamClient) -> Arc<App> {
        Arc::new(App {
            runtime: ArcSwap::from_pointee(runtime),
            client,
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
