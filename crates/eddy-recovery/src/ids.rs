//! Identifiers the recovery code shares with the JobMaster and the TaskManager: which subtask
//! (execution vertex) a failure, an acknowledgement or a piece of state belongs to, and checkpoint
//! ids. Plain values only; this file must never hold behaviour.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A checkpoint's (or savepoint's) id. Strictly increasing within a job and never reused, even
/// across JobMaster failovers: the shell seeds the coordinator from the HA checkpoint-id counter
/// or, without HA, from [`crate::CheckpointStorage::highest_checkpoint_id`] + 1.
pub type CheckpointId = u64;

/// One subtask of one job vertex: Flink's `ExecutionVertexID`. `vertex` is the index of the
/// vertex in the [`crate::Topology`] (a chain of operators), `subtask` is in `0..parallelism`.
/// A "task" in the checkpoint coordinator is an execution vertex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecutionVertexId {
    pub vertex: u32,
    pub subtask: u32,
}

impl ExecutionVertexId {
    pub const fn new(vertex: u32, subtask: u32) -> Self {
        ExecutionVertexId { vertex, subtask }
    }
}

impl fmt::Display for ExecutionVertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vertex {} subtask {}", self.vertex, self.subtask)
    }
}

impl fmt::Debug for ExecutionVertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ev({},{})", self.vertex, self.subtask)
    }
}
