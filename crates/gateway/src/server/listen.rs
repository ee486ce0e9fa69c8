//! The listener: HTTP/1.1 and h2c on one port, TCP_NODELAY, a header-read timeout against
//! slow-loris clients, and graceful shutdown that lets in-flight requests finish within a
//! bounded grace period.
//!
//! `llmux serve` runs one single-threaded runtime per worker (by default one per core), each
//! with its own listening socket on the shared port, serving its connections start to finish. A
//! work-stealing runtime hands a request's tasks (connection, upstream connection, relay) between
//! threads and pays a futex wake-up for each hand-off, which doubled the added latency of a
//! request at low concurrency; with workers that own their connections there is no hand-off.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::app::App;
use crate::server::head_timer::HeadTimer;

const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections accepted per server worker (workers beyond the array share the last slot), for
/// `GET /metrics`: the kernel decides which worker wins each accept, so balance is worth seeing.
static ACCEPTED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];

thread_local! {
    static WORKER_INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Connections accepted so far by each worker that accepted any: `(worker, count)`.
pub fn accepted_per_worker() -> Vec<(usize, u64)> {
    ACCEPTED
        .iter()
        .enumerate()
        .map(|(i, n)| (i, n.load(Ordering::Relaxed)))
        .filter(|&(_, n)| n > 0)
        .collect()
}

pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) {
    // One copy of the connection machinery, whatever the caller's shutdown future is.
    serve_boxed(app, listener, Box::pin(shutdown), grace).await
}

async fn serve_boxed(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(HeadTimer::default())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let _ticker = TimerAnchor::start();
    let _after_reply = crate::server::after_reply::Host::start();
    let accept_count = &ACCEPTED[WORKER_INDEX.with(|w| w.get()).min(ACCEPTED.len() - 1)];
    let mut shutdown = shutdown;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                accept_count.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                let app = Arc::clone(&app);
                let svc = service_fn(move |req| {
                    let app = Arc::clone(&app);
                    async move {
                        Ok::<_, Infallible>(crate::server::handle(app, req, Some(peer)).await)
                    }
                });
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended with an error: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(
        "shutting down: waiting up to {}s for in-flight requests",
        grace.as_secs()
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
}

/// Keeps a timer due within a second on this worker's runtime. Tokio wakes its own driver
/// (an eventfd write, a syscall) whenever a timer is registered earlier than every pending one;
/// on a worker whose only timers are per-request ones (hyper's header-read timeout, a relay's
/// idle timeout) that was every request. With a near timer always pending, registering a
/// request's timer is a plain insert. The ticker costs one wake-up per second.
struct TimerAnchor(tokio::task::JoinHandle<()>);

impl TimerAnchor {
    fn start() -> TimerAnchor {
        TimerAnchor(tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
            }
        }))
    }
}

impl Drop for TimerAnchor {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One listening socket per worker on `addr`, joined by `SO_REUSEPORT` so the kernel spreads
/// new connections evenly across them. (One socket shared by every worker wakes the worker that
/// registered last first, so nearly every connection lands on one worker.) Because a
/// `SO_REUSEPORT` bind would silently share the port with another llmux started by the same
/// user, the port is first claimed once without it: "address in use" stays an error.
pub async fn bind_workers(
    host: &str,
    port: u16,
    workers: usize,
) -> std::io::Result<Vec<TcpListener>> {
    let mut addrs = tokio::net::lookup_host((host, port)).await?;
    let Some(mut sock_addr) = addrs.next() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            "the host resolves to no address",
        ));
    };
    if workers <= 1 {
        return Ok(vec![TcpListener::bind(sock_addr).await?]);
    }
    if sock_addr.port() != 0 {
        drop(std::net::TcpListener::bind(sock_addr)?);
    }
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let socket = if sock_addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(sock_addr)?;
        let listener = socket.listen(1024)?;
        // Port 0: the first bind picks the port, the others join it.
        sock_addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Serve one listener per worker (see [`bind_workers`]): the calling single-threaded runtime is
/// worker 0 and also runs everything else spawned on it (usage writer, upkeep, reloads); workers
/// 1.. are threads with a runtime each. All stop together on `shutdown`, each letting its
/// in-flight requests finish within `grace`.
pub async fn serve_workers(
    app: Arc<App>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
    grace: Duration,
) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut listeners = listeners.into_iter();
    let Some(first) = listeners.next() else {
        return;
    };
    let mut threads = Vec::new();
    for (i, listener) in listeners.enumerate() {
        let index = i + 1;
        let started = listener
            .into_std()
            .and_then(|l| spawn_worker(index, &app, l, stop_rx.clone(), grace));
        match started {
            Ok(handle) => threads.push(handle),
            Err(e) => tracing::warn!("cannot start server worker {index}: {e}"),
        }
    }
    let shutdown = async {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    serve(app, first, shutdown, grace).await;
    // The other workers are finishing their own grace periods; wait for them off this thread.
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
}

fn spawn_worker(
    index: usize,
    app: &Arc<App>,
    listener: std::net::TcpListener,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let app = Arc::clone(app);
    std::thread::Builder::new()
        .name(format!("llmux-worker-{index}"))
        .spawn(move || {
            crate::providers::client::set_worker_index(index);
            WORKER_INDEX.with(|w| w.set(index));
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("server worker {index}: cannot start a runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("server worker {index}: {e}");
                        return;
                    }
                };
                let stopped = async move {
                    let _ = stop.wait_for(|stopped| *stopped).await;
                };
                serve(app, listener, stopped, grace).await;
            });
        })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
