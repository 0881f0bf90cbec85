//! Per-subtask counters, read by the TaskManager for progress reports (records in/out).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct TaskMetrics {
    records_in: AtomicU64,
    records_out: AtomicU64,
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
}
