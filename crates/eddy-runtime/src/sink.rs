//! The sink contract, and the adaptor that makes a sink the last operator of a chain.
//!
//! Exactly-once sinks stage output per checkpoint in `snapshot_state` (pre-commit) and make it
//! visible in `notify_checkpoint_complete` (commit); committing twice must be harmless. With
//! checkpointing on, that is the only way output becomes visible, also at the end of a bounded
//! input; `finish` commits only when checkpointing is off.

use crate::data::Data;
use crate::error::Result;
use crate::operator::{Operator, Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};

pub trait Sink: Send + 'static {
    type In: Data;

    /// Called once in the task thread; `restored` is this sink's state in the checkpoint the
    /// task restarts from (re-commit what it staged, discard what it did not).
    fn open(&mut self, _info: &TaskInfo, _restored: Option<&OperatorSnapshot>) -> Result<()> {
        Ok(())
    }

    /// Writes (and drains) a batch.
    fn write_batch(&mut self, batch: &mut Vec<Self::In>) -> Result<()>;

    /// Pre-commit at a checkpoint barrier: stage what was written since the last barrier.
    fn snapshot_state(&mut self, _checkpoint_id: u64, _writer: &mut SnapshotWriter) -> Result<()> {
        Ok(())
    }

    /// Commit everything staged up to `checkpoint_id`.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// End of a bounded input (the task's data ended; no more `write_batch`). Without
    /// checkpointing: make everything written visible. With checkpointing
    /// (`TaskInfo::checkpointing`) it must not commit: the task's final checkpoint follows, whose
    /// `snapshot_state` stages the rest and whose `notify_checkpoint_complete` commits it
    /// (FLIP-147), so a failure before the job is FINISHED never finds output that no
    /// checkpoint covers.
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) {}
}

/// Runs a [`Sink`] as an operator with no output.
pub struct SinkOperator<S: Sink>(pub S);

impl<S: Sink> Operator for SinkOperator<S> {
    type In = S::In;
    type Out = ();

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        self.0.open(info, restored)
    }

    fn process_batch(&mut self, input: &mut Vec<S::In>, _out: &mut Output<()>) -> Result<()> {
        self.0.write_batch(input)
    }

    fn on_watermark(&mut self, _wm: i64, _out: &mut Output<()>) -> Result<()> {
        Ok(())
    }

    fn snapshot_state(&mut self, checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        self.0.snapshot_state(checkpoint_id, writer)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.0.notify_checkpoint_complete(checkpoint_id)
    }

    fn finish(&mut self, _out: &mut Output<()>) -> Result<()> {
        self.0.finish()
    }

    fn close(&mut self) {
        self.0.close()
    }
}
