//! Work a request owes once its answer is decided but that the client need not wait for:
//! finishing the usage record, learning a key's limits from the answer's headers. Deferred,
//! it runs right after the worker has written the answer and before the worker looks for more
//! I/O, so the next request on the same worker still sees it done, while the answer reaches
//! the client a few thousand instructions sooner (the critical path at concurrency 1).
//!
//! A deferred item is a value whose `Drop` does the work, so it runs exactly once whatever
//! happens: the worker's drain task drops it, or the server stops and the queue is emptied, or
//! no drain task runs on this thread (a multi-threaded runtime, a thread of its own) and it is
//! dropped at once, where it was deferred.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Anything that can wait in the queue: its drop glue is the work.
trait Owed: Send {}

impl<T: Send> Owed for T {}

struct Queue {
    items: Vec<Box<dyn Owed>>,
    /// A drain task serves this thread.
    hosted: bool,
    /// The drain task, when it is waiting for items.
    waker: Option<Waker>,
}

thread_local! {
    static QUEUE: RefCell<Queue> = const {
        RefCell::new(Queue {
            items: Vec::new(),
            hosted: false,
            waker: None,
        })
    };
}

/// Drop `item` after the current task has yielded (its answer written), or now when no drain
/// task serves this thread.
pub fn defer<T: Send + 'static>(item: T) {
    let mut item = Some(item);
    let mut wake = None;
    let _ = QUEUE.try_with(|q| {
        let Ok(mut q) = q.try_borrow_mut() else {
            return;
        };
        if q.hosted
            && let Some(item) = item.take()
        {
            q.items.push(Box::new(item));
            wake = q.waker.take();
        }
    });
    // Outside the borrow: waking schedules the drain task; dropping runs the work.
    if let Some(w) = wake {
        w.wake();
    }
    drop(item);
}

/// The drain task of one current-thread runtime (one server worker). Dropping it stops
/// deferral on this thread and runs what is still queued.
pub struct Host {
    task: tokio::task::JoinHandle<()>,
}

impl Host {
    /// Starts draining on this thread: `None` when the runtime is multi-threaded (a task may
    /// move between threads, and a queue is per thread) or another server on this thread
    /// already drains it.
    pub fn start() -> Option<Host> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        let claimed = QUEUE
            .try_with(|q| {
                let mut q = q.try_borrow_mut().ok()?;
                (!q.hosted).then(|| q.hosted = true)
            })
            .ok()
            .flatten();
        claimed?;
        Some(Host {
            task: handle.spawn(Drain { spare: Vec::new() }),
        })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
        let left = QUEUE
            .try_with(|q| {
                let mut q = q.try_borrow_mut().ok()?;
                q.hosted = false;
                q.waker = None;
                Some(std::mem::take(&mut q.items))
            })
            .ok()
            .flatten();
        drop(left);
    }
}

struct Drain {
    /// The batch being dropped; swapped with the queue's so neither reallocates.
    spare: Vec<Box<dyn Owed>>,
}

impl Future for Drain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        loop {
            let got = QUEUE.try_with(|q| {
                let Ok(mut q) = q.try_borrow_mut() else {
                    return false;
                };
                if q.items.is_empty() {
                    if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        q.waker = Some(cx.waker().clone());
                    }
                    return false;
                }
                std::mem::swap(&mut q.items, &mut this.spare);
                true
            });
            if got != Ok(true) {
                return Poll::Pending;
            }
            // The work, outside the borrow (an item may defer another).
            this.spare.clear();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drop.
    struct Mark(Arc<AtomicUsize>);

    impl Drop for Mark {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn without_a_drain_task_the_work_runs_at_once() {
        let n = Arc::new(AtomicUsize::new(0));
        defer(Mark(Arc::clone(&n)));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn deferred_work_runs_once_the_task_yields() {
        let host = Host::start().expect("a current-thread runtime");
        assert!(Host::start().is_none(), "one drain task per thread");
        let n = Arc::new(AtomicUsize::new(0));
        defer(Mark(Arc::clone(&n)));
        defer(Mark(Arc::clone(&n)));
        assert_eq!(n.load(Ordering::SeqCst), 0, "not while this task runs");
        tokio::task::yield_now().await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        // Again, after the drain task has gone back to waiting.
        defer(Mark(Arc::clone(&n)));
        tokio::task::yield_now().await;
        assert_eq!(n.load(Ordering::SeqCst), 3);
        // Queued when the host stops: run by the stop.
        defer(Mark(Arc::clone(&n)));
        drop(host);
        assert_eq!(n.load(Ordering::SeqCst), 4);
        // Stopped: at once again.
        defer(Mark(Arc::clone(&n)));
        assert_eq!(n.load(Ordering::SeqCst), 5);
        assert!(Host::start().is_some(), "the thread can be served again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_multi_threaded_runtime_runs_the_work_at_once() {
        assert!(Host::start().is_none());
        let n = Arc::new(AtomicUsize::new(0));
        defer(Mark(Arc::clone(&n)));
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn work_that_defers_more_work_is_drained_too() {
        struct Chain(Option<Mark>);
        impl Drop for Chain {
            fn drop(&mut self) {
                if let Some(m) = self.0.take() {
                    defer(m);
                }
            }
        }
        let _host = Host::start().expect("a current-thread runtime");
        let n = Arc::new(AtomicUsize::new(0));
        defer(Chain(Some(Mark(Arc::clone(&n)))));
        tokio::task::yield_now().await;
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }
}
