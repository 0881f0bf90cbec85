//! Checkpoint statistics for `/jobs/:id/checkpoints` (counts, latest completed/failed/savepoint/
//! restored, a short history), kept by the coordinator as it goes. Bookkeeping only.

use crate::ids::CheckpointId;
use crate::metadata::CheckpointKind;
use eddy_core::metrics::{Histogram, DURATION_BOUNDS_MS, SIZE_BOUNDS_BYTES};
use serde::Serialize;
use std::collections::VecDeque;

/// How many recent checkpoints the history keeps (Flink's `web.checkpoints.history` default).
pub const HISTORY_SIZE: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed,
}

/// One checkpoint as the REST API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    pub id: CheckpointId,
    pub kind: CheckpointKind,
    pub status: CheckpointStatus,
    pub trigger_timestamp_ms: u64,
    /// Completion or failure time.
    pub end_timestamp_ms: Option<u64>,
    pub acknowledged: usize,
    pub total: usize,
    /// Bytes of state acknowledged so far.
    pub state_size: u64,
    pub failure: Option<String>,
}

/// A restore, as reported by the shell through `note_restored`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct RestoredCheckpoint {
    pub id: CheckpointId,
    pub restore_timestamp_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointCounts {
    pub total: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub failed: u64,
    pub restored: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CheckpointStats {
    pub counts: CheckpointCounts,
    pub latest_completed: Option<CheckpointSummary>,
    pub latest_savepoint: Option<CheckpointSummary>,
    pub latest_failed: Option<CheckpointSummary>,
    pub latest_restored: Option<RestoredCheckpoint>,
    /// Most recent last.
    pub history: VecDeque<CheckpointSummary>,
    /// Every completed checkpoint and savepoint of this coordinator: trigger → completion (ms),
    /// and state size (bytes), for `/metrics`.
    pub completed_durations_ms: Histogram,
    pub completed_sizes_bytes: Histogram,
}

impl CheckpointStats {
    pub(crate) fn triggered(
        &mut self,
        id: CheckpointId,
        kind: CheckpointKind,
        now_ms: u64,
        total: usize,
    ) {
        self.counts.total += 1;
        self.counts.in_progress += 1;
        if self.history.len() == HISTORY_SIZE {
            self.history.pop_front();
        }
        self.history.push_back(CheckpointSummary {
            id,
            kind,
            status: CheckpointStatus::InProgress,
            trigger_timestamp_ms: now_ms,
            end_timestamp_ms: None,
            acknowledged: 0,
            total,
            state_size: 0,
            failure: None,
        });
    }

    pub(crate) fn acknowledged(&mut self, id: CheckpointId, state_size: u64) {
        if let Some(s) = self.entry(id) {
            s.acknowledged += 1;
            s.state_size += state_size;
        }
    }

    pub(crate) fn completed(&mut self, id: CheckpointId, now_ms: u64) {
        self.counts.completed += 1;
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        if let Some(s) = self.entry(id) {
            s.status = CheckpointStatus::Completed;
            s.end_timestamp_ms = Some(now_ms);
            let s = s.clone();
            if self.completed_durations_ms.bounds.is_empty() {
                self.completed_durations_ms = Histogram::new(&DURATION_BOUNDS_MS);
                self.completed_sizes_bytes = Histogram::new(&SIZE_BOUNDS_BYTES);
            }
            self.completed_durations_ms
                .observe(now_ms.saturating_sub(s.trigger_timestamp_ms));
            self.completed_sizes_bytes.observe(s.state_size);
            if s.kind.is_savepoint() {
                self.latest_savepoint = Some(s);
            } else {
                self.latest_completed = Some(s);
            }
        }
    }

    pub(crate) fn failed(&mut self, id: CheckpointId, now_ms: u64, reason: String) {
        self.counts.failed += 1;
        self.counts.in_progress = self.counts.in_progress.saturating_sub(1);
        if let Some(s) = self.entry(id) {
            s.status = CheckpointStatus::Failed;
            s.end_timestamp_ms = Some(now_ms);
            s.failure = Some(reason);
            self.latest_failed = Some(s.clone());
        }
    }

    pub(crate) fn restored(&mut self, id: CheckpointId, now_ms: u64) {
        self.counts.restored += 1;
        self.latest_restored = Some(RestoredCheckpoint {
            id,
            restore_timestamp_ms: now_ms,
        });
    }

    fn entry(&mut self, id: CheckpointId) -> Option<&mut CheckpointSummary> {
        self.history.iter_mut().rev().find(|s| s.id == id)
    }
}
