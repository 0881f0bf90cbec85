//! The operator contract: what every transformation in a chain implements.
//!
//! Operators work on batches: `process_batch` gets a `Vec` of records and pushes results into an
//! [`Output`]; the task calls them one at a time from its own thread, so an operator never needs a
//! lock. Only `process_batch` is required; every other hook has a default.
//! An operator must never block on IO it does not own or spawn threads that touch its state.

use crate::data::{Data, Timestamp};
use crate::error::Result;
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_core::keygroup::KeyGroupRange;

/// Where a subtask sits in the job: given to operators and sources when they open.
#[derive(Clone, Debug)]
pub struct TaskInfo {
    pub job_name: String,
    pub job_id: String,
    /// The operator's stable uid (state is matched by it on restore).
    pub operator_uid: String,
    pub operator_name: String,
    pub subtask_index: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Incremented on every restart of this subtask (0 on the first run).
    pub attempt: u64,
    /// Unique per (process start, deployment): file names that must never collide across
    /// restarts carry it.
    pub run_token: String,
    /// Checkpointing is on: exactly-once sinks commit only when a checkpoint completes, also at
    /// the end of a bounded input (its final checkpoint), never in `finish`.
    pub checkpointing: bool,
    /// The keyed-state backend (`state.backend.type`) keyed operators create their state in.
    pub state_backend: std::sync::Arc<dyn crate::state::StateBackend>,
}

impl TaskInfo {
    /// The key groups this subtask owns.
    pub fn key_group_range(&self) -> KeyGroupRange {
        KeyGroupRange::for_subtask(self.subtask_index, self.parallelism, self.max_parallelism)
    }
}

/// The result buffer of one call: records plus at most one watermark to forward after them.
pub struct Output<T> {
    pub records: Vec<T>,
    pub watermark: Option<Timestamp>,
}

impl<T> Output<T> {
    pub fn new() -> Self {
        Output {
            records: Vec::new(),
            watermark: None,
        }
    }

    #[inline]
    pub fn push(&mut self, record: T) {
        self.records.push(record);
    }

    /// Forwards a watermark downstream after the records pushed so far (the highest wins).
    pub fn emit_watermark(&mut self, wm: Timestamp) {
        self.watermark = Some(self.watermark.map_or(wm, |w| w.max(wm)));
    }
}

impl<T> Default for Output<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// One transformation. `In`/`Out` are the record types on either side.
pub trait Operator: Send + 'static {
    type In: Data;
    type Out: Data;

    /// Called once in the task thread before any record; `restored` holds this operator's state
    /// from the checkpoint the task restarts from, if any.
    fn open(&mut self, _info: &TaskInfo, _restored: Option<&OperatorSnapshot>) -> Result<()> {
        Ok(())
    }

    /// Processes (and drains) a batch of records.
    fn process_batch(
        &mut self,
        input: &mut Vec<Self::In>,
        out: &mut Output<Self::Out>,
    ) -> Result<()>;

    /// The combined watermark of all inputs advanced to `wm`. Default: forward it.
    fn on_watermark(&mut self, wm: Timestamp, out: &mut Output<Self::Out>) -> Result<()> {
        out.emit_watermark(wm);
        Ok(())
    }

    /// Processing time advanced to `now`; fire due processing-time timers.
    fn on_processing_time(&mut self, _now: Timestamp, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// The earliest processing-time timer, so the task knows when to call `on_processing_time`.
    fn next_processing_time_deadline(&self) -> Option<Timestamp> {
        None
    }

    /// A checkpoint barrier reached this operator, before its state is written and before the
    /// barrier goes on (Flink's `prepareSnapshotPreBarrier`): records emitted here go downstream
    /// ahead of the barrier, so they belong to this checkpoint. For operators that hold output
    /// back (a combiner), which then need not keep it in their state.
    fn prepare_snapshot_pre_barrier(
        &mut self,
        _checkpoint_id: u64,
        _out: &mut Output<Self::Out>,
    ) -> Result<()> {
        Ok(())
    }

    /// A checkpoint barrier passed this operator: write its state (synchronous part; large
    /// uploads are done by the task afterwards).
    fn snapshot_state(&mut self, _checkpoint_id: u64, _writer: &mut SnapshotWriter) -> Result<()> {
        Ok(())
    }

    /// Checkpoint `checkpoint_id` completed everywhere: commit side effects staged up to it.
    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        Ok(())
    }

    /// All input ended (bounded job): emit what is still buffered.
    fn finish(&mut self, _out: &mut Output<Self::Out>) -> Result<()> {
        Ok(())
    }

    /// The task is going away (finished, canceled or failed); release resources.
    fn close(&mut self) {}
}
