//! The exactly-once witness source: for every key `0..keys` it emits `(key, seq)` for
//! `seq = 1..=per_key`, in increasing `seq`.
//!
//! Subtask `i` of `p` owns the keys `k % p == i` and emits them seq-major round-robin (every
//! owned key's seq 1, then every key's seq 2, ...), so all keys progress together. Its position
//! (next seq, key cursor, and keys that ran ahead after a rescale) is operator state: a restore
//! continues exactly after the last record emitted before the barrier, at the same or at a
//! different parallelism. This source must never emit a `(key, seq)` twice or skip one.

use crate::restore::{self, Tagged};
use crate::throttle::Throttle;
use eddy_runtime::data::now_millis;
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{JobError, Output, Result, Source, SourceStatus, TaskInfo};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Operator-state name of the position.
pub const STATE_NAME: &str = "sequence-position";

/// Emits `(key, seq)` for every key and `seq = 1..=per_key`. One clone per subtask.
#[derive(Clone, Debug)]
pub struct SequenceSource {
    keys: u64,
    per_key: u64,
    rate: f64,
    run: Option<SequenceRun>,
}

#[derive(Clone, Debug)]
struct SequenceRun {
    subtask: u32,
    parallelism: u32,
    /// Number of keys this subtask owns: `subtask + idx * parallelism` for `idx < owned`.
    owned: u64,
    /// The seq the key at `cursor` (and every key after it) emits next.
    next_seq: u64,
    /// Index (in owned-key order) of the next key to emit `next_seq` for.
    cursor: u64,
    /// Keys that already emitted more than the round-robin position says (only after a
    /// rescale): key → seqs emitted. An entry goes away once the round-robin catches up.
    ahead: BTreeMap<u64, u64>,
    throttle: Throttle,
}

/// What is saved at a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SequencePosition {
    subtask: u32,
    parallelism: u32,
    keys: u64,
    next_seq: u64,
    cursor: u64,
    ahead: Vec<(u64, u64)>,
}

impl Tagged for SequencePosition {
    fn writer(&self) -> (u32, u32) {
        (self.subtask, self.parallelism)
    }
}

impl SequencePosition {
    /// How many seqs the writer had emitted for `key` (which it owned).
    fn emitted(&self, key: u64) -> u64 {
        if let Ok(i) = self.ahead.binary_search_by_key(&key, |&(k, _)| k) {
            return self.ahead[i].1;
        }
        let idx = key / self.parallelism as u64;
        if idx < self.cursor {
            self.next_seq
        } else {
            self.next_seq - 1
        }
    }
}

impl SequenceSource {
    /// `rate` is records per second for the whole job; `0` means as fast as possible.
    pub fn new(keys: u64, per_key: u64, rate: f64) -> Self {
        SequenceSource {
            keys,
            per_key,
            rate,
            run: None,
        }
    }

    /// Records the whole job emits.
    pub fn total_records(&self) -> u64 {
        self.keys.saturating_mul(self.per_key)
    }

    fn restore(
        &self,
        run: &mut SequenceRun,
        entries: &[SequencePosition],
        info: &TaskInfo,
    ) -> Result<()> {
        if let Some(e) = entries.iter().find(|e| e.keys != self.keys) {
            return Err(JobError::new(format!(
                "restored sequence position is for {} keys, this job has {} (--keys must not change)",
                e.keys, self.keys
            )));
        }
        if let Some(own) = restore::own_entry(entries, info) {
            run.next_seq = own.next_seq.max(1);
            run.cursor = own.cursor;
            run.ahead = own.ahead.iter().copied().collect();
            return Ok(());
        }
        // Rescaled: find each owned key's progress in the entry of the old subtask that owned it.
        let old_p = restore::old_parallelism(entries, STATE_NAME)?;
        let mut by_subtask = HashMap::new();
        for e in entries {
            let mut e = e.clone();
            e.ahead.sort_unstable();
            e.next_seq = e.next_seq.max(1);
            by_subtask.insert(e.subtask, e);
        }
        let mut counts = Vec::with_capacity(run.owned as usize);
        for idx in 0..run.owned {
            let key = run.key_at(idx);
            let j = (key % old_p as u64) as u32;
            let Some(e) = by_subtask.get(&j) else {
                return Err(JobError::new(format!(
                    "restored operator state '{STATE_NAME}' has no position for old subtask {j} of {old_p}"
                )));
            };
            counts.push((key, e.emitted(key).min(self.per_key)));
        }
        let min = counts.iter().map(|&(_, c)| c).min().unwrap_or(self.per_key);
        run.next_seq = min + 1;
        run.cursor = 0;
        run.ahead = counts.into_iter().filter(|&(_, c)| c > min).collect();
        Ok(())
    }
}

impl SequenceRun {
    #[inline]
    fn key_at(&self, idx: u64) -> u64 {
        self.subtask as u64 + idx * self.parallelism as u64
    }
}

impl Source for SequenceSource {
    type Out = (u64, u64);

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        let p = info.parallelism.max(1);
        let i = info.subtask_index as u64;
        let owned = if i < self.keys {
            (self.keys - i).div_ceil(p as u64)
        } else {
            0
        };
        let mut run = SequenceRun {
            subtask: info.subtask_index,
            parallelism: p,
            owned,
            next_seq: 1,
            cursor: 0,
            ahead: BTreeMap::new(),
            throttle: Throttle::new(self.rate / p as f64),
        };
        let entries: Vec<SequencePosition> = restore::decode_entries(restored, STATE_NAME)?;
        if !entries.is_empty() {
            self.restore(&mut run, &entries, info)?;
        }
        self.run = Some(run);
        Ok(())
    }

    fn poll_next(
        &mut self,
        out: &mut Output<(u64, u64)>,
        max_records: usize,
    ) -> Result<SourceStatus> {
        let per_key = self.per_key;
        let Some(run) = self.run.as_mut() else {
            return Err(JobError::new("sequence source polled before open"));
        };
        if run.owned == 0 || run.next_seq > per_key {
            return Ok(SourceStatus::Finished);
        }
        let limit = match run.throttle.allowance(now_millis(), max_records) {
            Ok(n) => n,
            Err(until) => return Ok(SourceStatus::IdleUntil(until)),
        };
        out.records.reserve(limit);
        let mut emitted = 0;
        while emitted < limit && run.next_seq <= per_key {
            if run.cursor >= run.owned {
                run.next_seq += 1;
                run.cursor = 0;
                continue;
            }
            let key = run.key_at(run.cursor);
            run.cursor += 1;
            if !run.ahead.is_empty() {
                if let Some(&done) = run.ahead.get(&key) {
                    if done <= run.next_seq {
                        run.ahead.remove(&key);
                    }
                    if done >= run.next_seq {
                        continue; // emitted before the rescale
                    }
                }
            }
            out.records.push((key, run.next_seq));
            emitted += 1;
        }
        if run.cursor >= run.owned {
            run.next_seq += 1;
            run.cursor = 0;
        }
        run.throttle.record(emitted);
        Ok(if run.next_seq > per_key {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let Some(run) = self.run.as_ref() else {
            return Ok(());
        };
        let position = SequencePosition {
            subtask: run.subtask,
            parallelism: run.parallelism,
            keys: self.keys,
            next_seq: run.next_seq,
            cursor: run.cursor,
            ahead: run.ahead.iter().map(|(&k, &c)| (k, c)).collect(),
        };
        writer.put_operator_state(STATE_NAME, restore::encode(STATE_NAME, &position)?);
        Ok(())
    }
}
