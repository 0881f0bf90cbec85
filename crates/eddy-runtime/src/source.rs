//! The source contract: a subtask's reader of external data, driven by its task.
//!
//! The task calls `poll_next` in a loop, between control messages (checkpoint triggers, cancel),
//! so a source must return promptly: never block for long, return `Idle` instead. A replayable
//! source keeps its read position in operator state (`snapshot_state`) and resumes from it.

use crate::data::{Data, Timestamp};
use crate::error::Result;
use crate::operator::{Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};

/// What a poll produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceStatus {
    /// More data is ready now: poll again soon.
    More,
    /// Nothing to emit until the given processing time (ms) — throttling or waiting for input.
    IdleUntil(Timestamp),
    /// The (bounded) input is exhausted: the source ends and sends the final watermark.
    Finished,
}

pub trait Source: Send + 'static {
    type Out: Data;

    /// Called once in the task thread; `restored` holds the position saved at the checkpoint
    /// the task restarts from.
    fn open(&mut self, _info: &TaskInfo, _restored: Option<&OperatorSnapshot>) -> Result<()> {
        Ok(())
    }

    /// Emits at most `max_records` records (and optionally a watermark) into `out`.
    fn poll_next(
        &mut self,
        out: &mut Output<Self::Out>,
        max_records: usize,
    ) -> Result<SourceStatus>;

    /// Saves the read position (operator state), exactly at the point between the records
    /// already emitted and the next.
    fn snapshot_state(&mut self, _checkpoint_id: u64, _writer: &mut SnapshotWriter) -> Result<()> {
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) {}
}
