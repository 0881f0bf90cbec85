//! Per-subtask counters, read by the TaskManager for progress reports and `/metrics`: records
//! in/out, and where the task's time went since it started running (Flink's
//! `backPressuredTimeMsPerSecond`, `idleTimeMsPerSecond`, `busyTimeMsPerSecond`, accumulated).
//!
//! Back-pressured: waiting for a credit on an output channel (the consumer has not processed
//! enough). Idle: waiting for input (an empty mailbox) or, in a source, for its next record to be
//! due (a throttled or idle source). Busy: the rest of the running time. Only the waits are
//! timed (`Instant::now` twice per wait, never per record); a wait in progress counts too, so a
//! task blocked for a long time shows it before the wait ends.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
    /// The clock of the fields below: they hold nanoseconds since `origin`.
    origin: Instant,
    /// When the task started running (its chain built and its state restored), + 1; 0: not yet.
    running_since: AtomicU64,
    /// When it stopped running, + 1; 0: still running.
    ended_at: AtomicU64,
    backpressured_ns: AtomicU64,
    idle_ns: AtomicU64,
    /// The wait in progress: `(start + 1) << 1 | kind` (kind 1: back-pressured, 0: idle); 0: none.
    waiting: AtomicU64,
}

impl Default for TaskMetrics {
    fn default() -> Self {
        TaskMetrics {
            records_in: AtomicU64::new(0),
            records_out: AtomicU64::new(0),
            origin: Instant::now(),
            running_since: AtomicU64::new(0),
            ended_at: AtomicU64::new(0),
            backpressured_ns: AtomicU64::new(0),
            idle_ns: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }
}

/// What a wait is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// For a credit of an output channel.
    BackPressured,
    /// For input, or for a source's next record to be due.
    Idle,
}

/// Where a task's running time went, in milliseconds since it started running (Flink's
/// `accumulated-backpressured-time`, `accumulated-idle-time`, `accumulated-busy-time`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTimes {
    pub backpressured_ms: u64,
    pub idle_ms: u64,
    pub busy_ms: u64,
}

impl TaskTimes {
    /// The share of each kind of time between `earlier` and `self` (back-pressured, idle, busy:
    /// Flink's `ratio`, `idleRatio`, `busyRatio`); `None` when no time passed.
    pub fn ratios_since(&self, earlier: &TaskTimes) -> Option<(f64, f64, f64)> {
        let bp = self
            .backpressured_ms
            .saturating_sub(earlier.backpressured_ms) as f64;
        let idle = self.idle_ms.saturating_sub(earlier.idle_ms) as f64;
        let busy = self.busy_ms.saturating_sub(earlier.busy_ms) as f64;
        let total = bp + idle + busy;
        (total > 0.0).then(|| (bp / total, idle / total, busy / total))
    }
}

/// Ends a wait when dropped.
pub struct WaitGuard<'a> {
    metrics: &'a TaskMetrics,
    start: Instant,
    kind: Wait,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let ns = self.start.elapsed().as_nanos() as u64;
        let m = self.metrics;
        m.waiting.store(0, Ordering::Relaxed);
        match self.kind {
            Wait::BackPressured => m.backpressured_ns.fetch_add(ns, Ordering::Relaxed),
            Wait::Idle => m.idle_ns.fetch_add(ns, Ordering::Relaxed),
        };
    }
}

impl TaskMetrics {
    #[inline]
    pub fn add_in(&self, n: u64) {
        self.records_in.fetch_add(n, Ordering::Relaxed);
    }
    #[inline]
    pub fn add_out(&self, n: u64) {
        self.records_out.fetch_add(n, Ordering::Relaxed);
    }
    pub fn records_in(&self) -> u64 {
        self.records_in.load(Ordering::Relaxed)
    }
    pub fn records_out(&self) -> u64 {
        self.records_out.load(Ordering::Relaxed)
    }

    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The task started running: its time counts from now.
    pub fn mark_running(&self) {
        let _ = self.running_since.compare_exchange(
            0,
            self.now_ns() + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// The task stopped running: its times stay as they are.
    pub fn mark_ended(&self) {
        let _ = self.ended_at.compare_exchange(
            0,
            self.now_ns() + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Starts a wait; it ends (and is added up) when the guard is dropped. One wait at a time
    /// per task (its own thread).
    pub fn wait(&self, kind: Wait) -> WaitGuard<'_> {
        let start = Instant::now();
        let at = start.saturating_duration_since(self.origin).as_nanos() as u64;
        let bit = u64::from(kind == Wait::BackPressured);
        self.waiting.store(((at + 1) << 1) | bit, Ordering::Relaxed);
        WaitGuard {
            metrics: self,
            start,
            kind,
        }
    }

    /// Where the task's running time went so far; `None` before it started running.
    pub fn times(&self) -> Option<TaskTimes> {
        let since = self.running_since.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let ended = self.ended_at.load(Ordering::Relaxed);
        let now = if ended > 0 { ended - 1 } else { self.now_ns() };
        let mut bp = self.backpressured_ns.load(Ordering::Relaxed);
        let mut idle = self.idle_ns.load(Ordering::Relaxed);
        let waiting = self.waiting.load(Ordering::Relaxed);
        if waiting != 0 && ended == 0 {
            let ongoing = now.saturating_sub((waiting >> 1) - 1);
            if waiting & 1 == 1 {
                bp += ongoing;
            } else {
                idle += ongoing;
            }
        }
        let running = now.saturating_sub(since - 1);
        let busy = running.saturating_sub(bp + idle);
        let ms = |ns: u64| Duration::from_nanos(ns).as_millis() as u64;
        Some(TaskTimes {
            backpressured_ms: ms(bp),
            idle_ms: ms(idle),
            busy_ms: ms(busy),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_never_ran_has_no_times() {
        assert_eq!(TaskMetrics::default().times(), None);
    }

    #[test]
    fn waits_in_progress_count_and_the_rest_is_busy() {
        let m = TaskMetrics::default();
        m.mark_running();
        {
            let _w = m.wait(Wait::BackPressured);
            std::thread::sleep(Duration::from_millis(120));
            // Still waiting: the wait so far already shows.
            let t = m.times().unwrap();
            assert!(t.backpressured_ms >= 100, "{t:?}");
        }
        {
            let _w = m.wait(Wait::Idle);
            std::thread::sleep(Duration::from_millis(60));
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(40) {
            std::hint::spin_loop();
        }
        let t = m.times().unwrap();
        assert!(t.backpressured_ms >= 120, "{t:?}");
        assert!(t.idle_ms >= 60 && t.idle_ms < 120, "{t:?}");
        assert!(t.busy_ms >= 40, "{t:?}");
        m.mark_ended();
        let frozen = m.times().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(m.times().unwrap(), frozen, "an ended task's times stay");
    }

    #[test]
    fn ratios_are_shares_of_the_interval() {
        let a = TaskTimes {
            backpressured_ms: 100,
            idle_ms: 100,
            busy_ms: 100,
        };
        let b = TaskTimes {
            backpressured_ms: 900,
            idle_ms: 200,
            busy_ms: 200,
        };
        let (bp, idle, busy) = b.ratios_since(&a).unwrap();
        assert!((bp - 0.8).abs() < 1e-9 && (idle - 0.1).abs() < 1e-9 && (busy - 0.1).abs() < 1e-9);
        assert_eq!(a.ratios_since(&a), None);
    }
}
