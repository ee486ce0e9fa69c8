//! Process-wide state shared by every connection: the current runtime (swapped atomically on
//! reload) and the pooled upstream client.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::providers::client::UpstreamClient;
use crate::runtime::Runtime;

#[derive(Debug)]
pub struct App {
    runtime: ArcSwap<Runtime>,
    pub client: UpstreamClient,
}

impl App {
    pub fn new(runtime: Runtime, client: UpstreamClient) -> Arc<App> {
        Arc::new(App {
            runtime: ArcSwap::from_pointee(runtime),
            client,
        })
    }

    /// The runtime a request uses from start to end (load once, hold it).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Swap in a new runtime; in-flight requests keep the one they loaded.
    pub fn replace_runtime(&self, runtime: Runtime) {
        self.runtime.store(Arc::new(runtime));
    }
}
