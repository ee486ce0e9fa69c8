//! Usage writes at idle CPU priority, while the machine has idle CPU.
//!
//! Writing a batch is a few milliseconds of CPU in one go (binding, B-tree inserts, the WAL
//! commit, now and then a checkpoint). At normal priority a request whose thread wakes while
//! that runs waits for the writer's time slice to end: at concurrency 1 with everything on one
//! core, llmux's p99 was 0.5–0.9 ms against limitproxy's 0.1 ms, all of it the writer's bursts.
//! A thread under Linux's `SCHED_IDLE` is preempted at once by any normal thread that wakes, so
//! the same work fills the gaps between requests instead (as databases run their compaction).
//!
//! The price of `SCHED_IDLE` is that it gets next to no CPU while normal threads keep every CPU
//! busy, and an unprivileged process cannot raise a thread back. So the idle lane is one SQLite
//! connection whose thread stays idle, next to the normal pool, and the writer picks per batch
//! ([`Lanes`]): the idle lane only while the machine had idle CPU in the last quarter second,
//! the queue is shallow, and the idle lane's last write was not starved; its batches are
//! small, so one caught by a sudden load spike holds the database for little work.

use std::time::{Duration, Instant};

/// Most entries one idle-lane transaction writes: about 1.5 ms of CPU. A transaction
/// caught by a load spike holds SQLite's write lock until the starved thread finishes it, so
/// it is kept small; the normal lane writes larger batches (fewer commits under load).
pub const IDLE_BATCH: usize = 512;

/// An idle-lane write that takes longer than this was starved of CPU…
const STARVED_AFTER: Duration = Duration::from_millis(100);
/// …and the normal lane is used for this long before the idle lane is tried again.
const STARVED_BACKOFF: Duration = Duration::from_secs(10);
/// The idle lane needs this share of all CPUs idle over the last window.
const MIN_IDLE_SHARE: f64 = 0.2;
/// `/proc/stat` counts in 10 ms ticks: a shorter window would be mostly rounding.
const CPU_WINDOW: Duration = Duration::from_millis(250);

/// Where a batch is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The store's connection whose thread runs under `SCHED_IDLE`.
    Idle,
    /// The normal pool.
    Normal,
}

/// Chooses the lane of each batch.
#[derive(Debug, Default)]
pub struct Lanes {
    /// The idle lane was starved: normal lane until then.
    normal_until: Option<Instant>,
}

impl Lanes {
    /// The lane for the next batch: idle only when the CPU had room (`cpu_idle`), the queue
    /// holds less than an eighth of its capacity, and no starved write is recent.
    pub fn choose(&mut self, now: Instant, queued: u64, capacity: u64, cpu_idle: bool) -> Lane {
        if self.normal_until.is_some_and(|t| now < t) {
            return Lane::Normal;
        }
        self.normal_until = None;
        if cpu_idle && queued.saturating_mul(8) < capacity {
            Lane::Idle
        } else {
            Lane::Normal
        }
    }

    /// Note how long an idle-lane write took (from start to commit).
    pub fn idle_write_took(&mut self, now: Instant, took: Duration) {
        if took > STARVED_AFTER {
            tracing::debug!(
                "usage store: an idle-priority write took {took:?}; using the normal lane for {STARVED_BACKOFF:?}"
            );
            self.normal_until = Some(now + STARVED_BACKOFF);
        }
    }
}

/// What the writer asks about the machine's idle CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CpuProbe {
    /// Measure it from `/proc/stat` (the gateway).
    #[default]
    ProcStat,
    /// Take this answer (tests that must exercise one lane whatever the machine's load).
    Fixed(bool),
}

/// Whether the machine's CPUs were idle enough over the last window.
#[derive(Debug, Default)]
pub struct CpuIdle {
    probe: CpuProbe,
    /// Start of the current window: when, idle ticks, all ticks.
    since: Option<(Instant, u64, u64)>,
    verdict: bool,
}

impl CpuIdle {
    pub fn new(probe: CpuProbe) -> CpuIdle {
        CpuIdle {
            probe,
            ..CpuIdle::default()
        }
    }

    /// The verdict of the last complete window (false before the first one, and where
    /// `/proc/stat` cannot be read).
    pub fn idle_enough(&mut self, now: Instant) -> bool {
        if let CpuProbe::Fixed(answer) = self.probe {
            return answer;
        }
        match self.since {
            Some((at, _, _)) if now.duration_since(at) < CPU_WINDOW => {}
            _ => {
                let Some((idle, total)) = read_proc_stat() else {
                    self.verdict = false;
                    return false;
                };
                if let Some((_, idle0, total0)) = self.since {
                    self.verdict = idle_share(idle - idle0.min(idle), total - total0.min(total))
                        >= MIN_IDLE_SHARE;
                }
                self.since = Some((now, idle, total));
            }
        }
        self.verdict
    }
}

#[allow(clippy::cast_precision_loss)] // tick counts of one window
fn idle_share(idle: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        idle as f64 / total as f64
    }
}

/// `(idle + iowait, all)` ticks of the machine's CPUs.
fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

/// The first line of `/proc/stat`: `cpu  user nice system idle iowait irq softirq steal ...`.
/// Guest time is already counted in user and nice, so it is left out of the sum.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    Some((v[3] + v[4], v.iter().sum()))
}

/// Put the calling thread under `SCHED_IDLE`. Threads it starts afterwards inherit the policy
/// (which is how the idle lane's SQLite thread, started by sqlx, gets it).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn enter_idle_policy() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (pid 0) with a valid parameter struct.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn enter_idle_policy() -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "SCHED_IDLE is Linux-only",
    ))
}

/// Whether the calling thread runs under `SCHED_IDLE`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub fn in_idle_policy() -> bool {
    // SAFETY: plain system call on the calling thread.
    unsafe { libc::sched_getscheduler(0) == libc::SCHED_IDLE }
}

#[cfg(not(target_os = "linux"))]
pub fn in_idle_policy() -> bool {
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_lane_needs_idle_cpu_a_shallow_queue_and_no_recent_starvation() {
        let mut lanes = Lanes::default();
        let t0 = Instant::now();
        assert_eq!(lanes.choose(t0, 0, 16_384, true), Lane::Idle);
        assert_eq!(lanes.choose(t0, 0, 16_384, false), Lane::Normal);
        assert_eq!(lanes.choose(t0, 2047, 16_384, true), Lane::Idle);
        assert_eq!(lanes.choose(t0, 2048, 16_384, true), Lane::Normal);
        // A quick write changes nothing; a starved one sends batches to the normal lane for
        // the back-off, after which the idle lane is tried again.
        lanes.idle_write_took(t0, Duration::from_millis(5));
        assert_eq!(lanes.choose(t0, 0, 16_384, true), Lane::Idle);
        lanes.idle_write_took(t0, Duration::from_millis(150));
        assert_eq!(lanes.choose(t0, 0, 16_384, true), Lane::Normal);
        let later = t0 + STARVED_BACKOFF - Duration::from_millis(1);
        assert_eq!(lanes.choose(later, 0, 16_384, true), Lane::Normal);
        assert_eq!(
            lanes.choose(t0 + STARVED_BACKOFF, 0, 16_384, true),
            Lane::Idle
        );
    }

    #[test]
    fn the_cpu_line_of_proc_stat_gives_idle_and_all_ticks() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let line = "cpu  100 5 50 800 20 3 7 15 40 0";
        assert_eq!(parse_cpu_line(line), Some((820, 1000)));
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(parse_cpu_line("cpu  1 2 x 4 5"), None);
        assert_eq!(parse_cpu_line("cpu  1 2 3"), None);
        assert!((idle_share(820, 1000) - 0.82).abs() < 1e-9);
        assert!(idle_share(0, 0).abs() < f64::EPSILON);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_verdict_comes_from_a_window_of_proc_stat() {
        let mut cpu = CpuIdle::default();
        let t0 = Instant::now();
        // No complete window yet.
        assert!(!cpu.idle_enough(t0));
        // Within the window the verdict is not recomputed.
        assert!(!cpu.idle_enough(t0 + Duration::from_millis(10)));
        // After it, it is a real reading (either answer is valid on a shared machine); the
        // window restarts there.
        let _ = cpu.idle_enough(t0 + CPU_WINDOW);
        assert_eq!(cpu.since.map(|s| s.0), Some(t0 + CPU_WINDOW));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn threads_started_by_an_idle_thread_are_idle_too() {
        let (parent, child) = std::thread::spawn(|| {
            let entered = enter_idle_policy().is_ok();
            let child = std::thread::spawn(in_idle_policy).join().expect("child");
            (entered && in_idle_policy(), child)
        })
        .join()
        .expect("parent");
        assert!(
            parent,
            "an unprivileged thread may always lower itself to SCHED_IDLE"
        );
        assert!(
            child,
            "the policy is inherited by threads the idle thread starts"
        );
        assert!(!in_idle_policy(), "the test thread itself is untouched");
    }
}
