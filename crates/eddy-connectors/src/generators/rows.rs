//! The benchmark row generator: `(key, value)` rows as cheap as a record can be, to measure the
//! engine at millions of records per second.
//!
//! Row `n` (global index, `0..count`) is `(n % keys, row_value(n))`; subtask `i` of `p` emits the
//! indices `n % p == i` in increasing order, filling the output in one tight loop without
//! division or allocation per row. The next index is operator state: exact at an unchanged
//! parallelism; after a rescale each subtask resumes at the lowest index no old subtask had
//! reached, so rows between the slowest and fastest old subtask are emitted again
//! (at-least-once on rescale). This source must never do per-row work beyond the loop below.

use crate::generators::mix64;
use crate::restore::{self, Tagged};
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{JobError, Output, Result, Source, SourceStatus, TaskInfo};
use serde::{Deserialize, Serialize};

/// Operator-state name of the position.
pub const STATE_NAME: &str = "rows-position";

/// The value of row `index`: deterministic, pseudo-random, in `0..1024` (so sums over billions
/// of rows cannot overflow an `i64`).
#[inline]
pub fn row_value(index: u64) -> i64 {
    (mix64(index) >> 54) as i64
}

/// Generates `(key, value)` rows. One clone per subtask.
#[derive(Clone, Debug)]
pub struct RowSource {
    count: u64,
    keys: u64,
    run: Option<RowRun>,
}

#[derive(Clone, Debug)]
struct RowRun {
    subtask: u32,
    parallelism: u32,
    /// Global index of the next row; always `≡ subtask (mod parallelism)`.
    next: u64,
    /// `next % keys`, kept incrementally.
    key: u64,
    /// `parallelism % keys`: how far the key moves per row.
    key_step: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RowsPosition {
    subtask: u32,
    parallelism: u32,
    next: u64,
}

impl Tagged for RowsPosition {
    fn writer(&self) -> (u32, u32) {
        (self.subtask, self.parallelism)
    }
}

impl RowSource {
    /// `count` rows in total (0 = unbounded), keys `0..keys`.
    pub fn new(count: u64, keys: u64) -> Self {
        RowSource {
            count,
            keys,
            run: None,
        }
    }

    fn limit(&self) -> u64 {
        if self.count == 0 {
            u64::MAX
        } else {
            self.count
        }
    }
}

impl Source for RowSource {
    type Out = (u64, i64);

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        if self.keys == 0 {
            return Err(JobError::new("row source: keys must be at least 1, got 0"));
        }
        let p = info.parallelism.max(1);
        let i = info.subtask_index as u64;
        let entries: Vec<RowsPosition> = restore::decode_entries(restored, STATE_NAME)?;
        let next = if entries.is_empty() {
            i
        } else if let Some(own) = restore::own_entry(&entries, info) {
            own.next
        } else {
            let lowest = entries.iter().map(|e| e.next).min().unwrap_or(0);
            // The first index at or after `lowest` that this subtask owns.
            lowest + (i + p as u64 - lowest % p as u64) % p as u64
        };
        self.run = Some(RowRun {
            subtask: info.subtask_index,
            parallelism: p,
            next,
            key: next % self.keys,
            key_step: p as u64 % self.keys,
        });
        Ok(())
    }

    fn poll_next(
        &mut self,
        out: &mut Output<(u64, i64)>,
        max_records: usize,
    ) -> Result<SourceStatus> {
        let limit = self.limit();
        let keys = self.keys;
        let Some(run) = self.run.as_mut() else {
            return Err(JobError::new("row source polled before open"));
        };
        let p = run.parallelism as u64;
        let remaining = if run.next >= limit {
            0
        } else {
            (limit - run.next).div_ceil(p)
        };
        let n = (max_records as u64).min(remaining) as usize;
        out.records.reserve(n);
        let (mut index, mut key) = (run.next, run.key);
        for _ in 0..n {
            out.records.push((key, row_value(index)));
            index = index.wrapping_add(p);
            key += run.key_step;
            if key >= keys {
                key -= keys;
            }
        }
        run.next = index;
        run.key = key;
        Ok(if remaining == n as u64 {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Ok(());
        };
        let position = RowsPosition {
            subtask: run.subtask,
            parallelism: run.parallelism,
            next: run.next,
        };
        writer.put_operator_state(STATE_NAME, restore::encode(STATE_NAME, &position)?);
        Ok(())
    }
}
