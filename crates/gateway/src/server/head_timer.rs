//! The timer behind hyper's header-read timeout, on tokio sleeps that are reused.
//!
//! hyper arms that timeout each time a keep-alive connection starts waiting for a request head
//! and drops it once the head is in. With hyper-util's `TokioTimer` that is, every request, a
//! boxed tokio sleep registered in the runtime's timer wheel and taken out again (~1k
//! instructions, a lock of the time driver each way). Here a dropped sleep goes back to a small
//! pool still registered; the next one moves its deadline later, which tokio does with one
//! compare-and-swap (the wheel entry stays, and is moved on when its old time comes). A sleep
//! asked for an earlier deadline than the one it held is registered again, as a new one would be.
//!
//! One timer (and pool) per server worker: a pooled sleep belongs to the runtime it was made on.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Sleeps kept for reuse. A pooled sleep still holds the waker of its last connection (a few KB
/// kept alive until the sleep is reused or fires), so the pool stays small; it only needs to
/// cover the heads that arrive between two connections starting to wait.
const POOL: usize = 32;

type TokioSleep = Pin<Box<tokio::time::Sleep>>;

#[derive(Clone, Default)]
pub struct HeadTimer {
    pool: Arc<Mutex<Vec<TokioSleep>>>,
}

impl HeadTimer {
    fn take(&self) -> Option<TokioSleep> {
        self.pool.lock().ok()?.pop()
    }

    #[cfg(test)]
    fn pooled(&self) -> usize {
        self.pool.lock().map_or(0, |p| p.len())
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        let sleep = match self.take() {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Box::pin(PooledSleep {
            sleep: Some(sleep),
            home: self.clone(),
        })
    }
}

struct PooledSleep {
    /// Always `Some` until dropped.
    sleep: Option<TokioSleep>,
    home: HeadTimer,
}

impl Future for PooledSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for PooledSleep {}

impl Drop for PooledSleep {
    fn drop(&mut self) {
        let Some(sleep) = self.sleep.take() else {
            return;
        };
        let Ok(mut pool) = self.home.pool.lock() else {
            return;
        };
        if pool.len() < POOL {
            pool.push(sleep);
        } else {
            // Deregistering takes the time driver's lock: not under the pool's.
            drop(pool);
            drop(sleep);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn now() -> Instant {
        tokio::time::Instant::now().into_std()
    }

    /// Fires at its deadline, counted in the runtime's (here paused) time.
    async fn fires_after(timer: &HeadTimer, after: Duration) {
        let started = tokio::time::Instant::now();
        timer.sleep_until(now() + after).await;
        assert_eq!(started.elapsed(), after);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_sleep_keeps_its_new_deadline_later_or_earlier() {
        let timer = HeadTimer::default();
        fires_after(&timer, Duration::from_secs(3)).await;
        assert_eq!(timer.pooled(), 1, "a dropped sleep goes back to the pool");

        // Armed for 30 s, dropped before it fires (the usual head that comes in time) …
        let waiting = timer.sleep_until(now() + Duration::from_secs(30));
        drop(waiting);
        assert_eq!(timer.pooled(), 1);
        // … then reused for a later deadline, and for an earlier one than it held.
        let later = timer.sleep_until(now() + Duration::from_secs(40));
        assert_eq!(timer.pooled(), 0, "taken from the pool");
        drop(later);
        fires_after(&timer, Duration::from_secs(50)).await;
        fires_after(&timer, Duration::from_secs(2)).await;
        assert_eq!(timer.pooled(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reused_sleep_does_not_fire_at_its_old_deadline() {
        let timer = HeadTimer::default();
        drop(timer.sleep_until(now() + Duration::from_secs(1)));
        let mut reused = timer.sleep_until(now() + Duration::from_secs(10));
        let old_deadline_passed = tokio::time::timeout(Duration::from_secs(5), &mut reused).await;
        assert!(old_deadline_passed.is_err(), "still waiting at 5 s");
        let started = tokio::time::Instant::now();
        reused.await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn the_pool_is_bounded() {
        let timer = HeadTimer::default();
        let many: Vec<_> = (0..POOL + 10)
            .map(|_| timer.sleep(Duration::from_secs(30)))
            .collect();
        drop(many);
        assert_eq!(timer.pooled(), POOL);
    }
}
