//! The coordinator's vocabulary: where a snapshot goes, why one failed, and the commands the IO
//! shell executes. Values only.

use crate::ids::{CheckpointId, ExecutionVertexId};
use crate::metadata::{CheckpointKind, CompletedCheckpoint, StateFileHandle};
use std::fmt;

/// Where a snapshot's state and `_metadata` are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointTarget {
    /// `chk-<id>/` under the job's checkpoint directory ([`crate::CheckpointStorage`]).
    Checkpoint,
    /// A self-contained savepoint directory. The shell makes it unique and fresh (Flink's
    /// `savepoint-<job>-<random>` under the requested directory) before triggering, because an
    /// aborted savepoint's directory is deleted.
    Savepoint { dir: String },
    /// Like `Savepoint`, for stop-with-savepoint (Flink's terminating savepoint): sources emit
    /// nothing after its barrier (with `drain`, they first end event time and their input),
    /// tasks are notified on completion (side effects commit) and then finish on their own.
    StopWithSavepoint { dir: String, drain: bool },
}

impl CheckpointTarget {
    pub fn kind(&self) -> CheckpointKind {
        match self {
            CheckpointTarget::Checkpoint => CheckpointKind::Checkpoint,
            CheckpointTarget::Savepoint { .. } => CheckpointKind::Savepoint,
            CheckpointTarget::StopWithSavepoint { .. } => CheckpointKind::StopWithSavepoint,
        }
    }

    /// The savepoint directory, `None` for a checkpoint.
    pub fn savepoint_dir(&self) -> Option<&str> {
        match self {
            CheckpointTarget::Checkpoint => None,
            CheckpointTarget::Savepoint { dir }
            | CheckpointTarget::StopWithSavepoint { dir, .. } => Some(dir),
        }
    }
}

/// Why a task declined a checkpoint (Flink's `CHECKPOINT_DECLINED_*` reasons).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeclineReason {
    /// The task was not running yet (still restoring). Not counted.
    TaskNotReady,
    /// The task is closing or finished. Not counted.
    TaskClosing,
    /// The barrier alignment was cancelled (a cancellation barrier, or a newer barrier arrived).
    /// Not counted.
    AlignmentCancelled,
    /// An input ended before its barrier arrived. Not counted.
    InputEndOfStream,
    /// The asynchronous part of the snapshot (upload) failed. Counted.
    AsyncSnapshotFailed(String),
    /// The snapshot refers to a shared file already deleted (its task had not yet learned that
    /// the checkpoint it based the snapshot on was subsumed). Not counted: a race, not a fault.
    StaleSharedState(String),
    /// Any other refusal. Counted.
    Other(String),
}

impl DeclineReason {
    /// Whether a decline for this reason counts towards the tolerable consecutive failures.
    pub fn counts_against_tolerance(&self) -> bool {
        matches!(
            self,
            DeclineReason::AsyncSnapshotFailed(_) | DeclineReason::Other(_)
        )
    }
}

impl fmt::Display for DeclineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeclineReason::TaskNotReady => f.write_str("task not ready"),
            DeclineReason::TaskClosing => f.write_str("task closing"),
            DeclineReason::AlignmentCancelled => f.write_str("barrier alignment cancelled"),
            DeclineReason::InputEndOfStream => f.write_str("input ended before the barrier"),
            DeclineReason::AsyncSnapshotFailed(e) => write!(f, "asynchronous snapshot failed: {e}"),
            DeclineReason::StaleSharedState(path) => write!(
                f,
                "the snapshot refers to the shared file {path} of a subsumed checkpoint, already deleted"
            ),
            DeclineReason::Other(e) => f.write_str(e),
        }
    }
}

/// Why a checkpoint was aborted. Only some count towards
/// `execution.checkpointing.tolerable-failed-checkpoints`, as in Flink's
/// `CheckpointFailureReason.isCountedAgainstFailureThreshold`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointFailureReason {
    /// Not every task acknowledged within `execution.checkpointing.timeout`. Counted.
    Expired,
    /// A task declined. Counted or not depending on the decline reason.
    Declined {
        task: ExecutionVertexId,
        reason: DeclineReason,
    },
    /// Writing `_metadata` or registering the checkpoint failed. Counted.
    MetadataWriteFailed(String),
    /// The shell could not send the barriers or reserve the id. Not counted.
    TriggerFailed(String),
    /// A task failed; the checkpoint cannot complete. Not counted.
    TaskFailure(ExecutionVertexId),
    /// The job (or a region of it) is restarting. Not counted.
    JobFailover,
    /// A newer checkpoint completed first. Not counted.
    Subsumed { by: CheckpointId },
    /// The job reached a terminal state or the JobMaster lost leadership. Not counted.
    CoordinatorShutdown,
}

impl CheckpointFailureReason {
    /// Whether this failure counts towards the tolerable consecutive failures.
    pub fn counts_against_tolerance(&self) -> bool {
        match self {
            CheckpointFailureReason::Expired | CheckpointFailureReason::MetadataWriteFailed(_) => {
                true
            }
            CheckpointFailureReason::Declined { reason, .. } => reason.counts_against_tolerance(),
            CheckpointFailureReason::TriggerFailed(_)
            | CheckpointFailureReason::TaskFailure(_)
            | CheckpointFailureReason::JobFailover
            | CheckpointFailureReason::Subsumed { .. }
            | CheckpointFailureReason::CoordinatorShutdown => false,
        }
    }
}

impl fmt::Display for CheckpointFailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckpointFailureReason::Expired => {
                f.write_str("expired before every task acknowledged")
            }
            CheckpointFailureReason::Declined { task, reason } => {
                write!(f, "declined by {task}: {reason}")
            }
            CheckpointFailureReason::MetadataWriteFailed(e) => {
                write!(f, "writing the checkpoint metadata failed: {e}")
            }
            CheckpointFailureReason::TriggerFailed(e) => write!(f, "trigger failed: {e}"),
            CheckpointFailureReason::TaskFailure(task) => write!(f, "{task} failed"),
            CheckpointFailureReason::JobFailover => f.write_str("the job is restarting"),
            CheckpointFailureReason::Subsumed { by } => write!(f, "subsumed by checkpoint {by}"),
            CheckpointFailureReason::CoordinatorShutdown => {
                f.write_str("the checkpoint coordinator shut down")
            }
        }
    }
}

/// What the IO shell must do. Execute commands in the order returned.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Send barrier `id` (with `timestamp_ms`) to `tasks` (the sources). Before sending, a shell
    /// with HA makes sure the durable checkpoint-id counter is above `id`; if that or the send
    /// fails it calls [`super::CheckpointCoordinator::trigger_failed`].
    TriggerCheckpoint {
        id: CheckpointId,
        timestamp_ms: u64,
        target: CheckpointTarget,
        tasks: Vec<ExecutionVertexId>,
    },
    /// Every task acknowledged: write `metadata` as `_metadata` (atomically) into the target's
    /// directory, register a checkpoint in the completed-checkpoint store (HA, fenced), then call
    /// `metadata_written(id)`, or `metadata_write_failed(id, error)`.
    WriteMetadataAndComplete {
        id: CheckpointId,
        target: CheckpointTarget,
        metadata: CompletedCheckpoint,
    },
    /// Tell `tasks` that checkpoint `id` is complete (two-phase-commit sinks commit up to `id`).
    NotifyComplete {
        id: CheckpointId,
        tasks: Vec<ExecutionVertexId>,
    },
    /// Tell `tasks` to drop checkpoint `id` (abort alignment, discard staged snapshot).
    AbortCheckpoint {
        id: CheckpointId,
        reason: CheckpointFailureReason,
        tasks: Vec<ExecutionVertexId>,
    },
    /// Delete the snapshot's directory (`chk-<id>/`, or the savepoint directory of an aborted
    /// savepoint), unregister it from the completed-checkpoint store, and delete `shared_files`
    /// (no retained or pending checkpoint refers to them any more). Idempotent.
    DiscardCheckpoint {
        id: CheckpointId,
        target: CheckpointTarget,
        shared_files: Vec<StateFileHandle>,
    },
    /// Too many consecutive checkpoint failures: fail the job over (a global failure; the restart
    /// strategy decides whether it restarts).
    FailJob { reason: String },
}
