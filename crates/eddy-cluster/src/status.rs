//! Job status (Flink's JobStatus) and the views of a job that the CLI and REST API show.

pub use eddy_runtime::task::metrics::TaskTimes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job's status. Legal transitions (anything else is a bug and is refused):
///
/// | from        | to                                             |
/// |-------------|------------------------------------------------|
/// | CREATED     | RUNNING, FAILING, FAILED, CANCELLING, CANCELED, SUSPENDED |
/// | RUNNING     | FINISHED, FAILING, RESTARTING, CANCELLING, SUSPENDED |
/// | RESTARTING  | RUNNING, CREATED, FAILING, CANCELLING, CANCELED, SUSPENDED |
/// | FAILING     | FAILED, RESTARTING, CANCELLING                 |
/// | CANCELLING  | CANCELED                                       |
/// | FINISHED, FAILED, CANCELED | (terminal: none)                 |
/// | SUSPENDED   | (terminal on this JobManager: a new leader recovers the job) |
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    Created,
    Running,
    Failing,
    Failed,
    Cancelling,
    Canceled,
    Finished,
    Restarting,
    Suspended,
}

impl JobStatus {
    pub fn name(&self) -> &'static str {
        match self {
            JobStatus::Created => "CREATED",
            JobStatus::Running => "RUNNING",
            JobStatus::Failing => "FAILING",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelling => "CANCELLING",
            JobStatus::Canceled => "CANCELED",
            JobStatus::Finished => "FINISHED",
            JobStatus::Restarting => "RESTARTING",
            JobStatus::Suspended => "SUSPENDED",
        }
    }

    /// Globally terminal: the job will never run again.
    pub fn is_globally_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Finished | JobStatus::Failed | JobStatus::Canceled
        )
    }

    pub fn can_transition_to(&self, to: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            Created => matches!(
                to,
                Running | Failing | Failed | Cancelling | Canceled | Suspended
            ),
            Running => matches!(to, Finished | Failing | Restarting | Cancelling | Suspended),
            Restarting => matches!(
                to,
                Running | Created | Failing | Cancelling | Canceled | Suspended
            ),
            Failing => matches!(to, Failed | Restarting | Cancelling),
            Cancelling => matches!(to, Canceled),
            Finished | Failed | Canceled | Suspended => false,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of a job's exception history.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExceptionEntry {
    pub timestamp: i64,
    /// e.g. `Map -> Sink (2/4)`.
    pub task_name: Option<String>,
    pub taskmanager: Option<String>,
    pub exception: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VertexDetails {
    pub id: usize,
    pub name: String,
    pub parallelism: u32,
    pub status: String,
    pub records_in: u64,
    pub records_out: u64,
    /// Subtask count per execution state name.
    pub tasks: BTreeMap<String, u32>,
    /// How often each subtask was deployed (1 = never restarted).
    pub subtask_deployments: Vec<u32>,
    /// Each subtask's current attempt (empty when not deployed yet).
    #[serde(default)]
    pub subtasks: Vec<SubtaskDetails>,
}

/// A subtask's current attempt: where it runs and what it did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubtaskDetails {
    pub subtask: u32,
    pub attempt: u64,
    /// Execution state name (e.g. RUNNING).
    pub state: String,
    pub taskmanager: String,
    pub records_in: u64,
    pub records_out: u64,
    /// When this attempt was deployed (ms since epoch).
    pub deployed_at: i64,
    /// Where its time went since it started running (last heartbeat); `None` before that.
    #[serde(default)]
    pub times: Option<TaskTimes>,
    /// Its back-pressure between its last two heartbeats; `None` until two came.
    #[serde(default)]
    pub backpressure: Option<BackPressure>,
}

/// A subtask's shares of time between two heartbeats of its TaskManager (Flink's
/// `backPressuredTimeMsPerSecond` etc. / 1000).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackPressure {
    /// Waiting for credit on an output channel.
    pub ratio: f64,
    /// Waiting for input.
    pub idle_ratio: f64,
    /// The rest.
    pub busy_ratio: f64,
    /// When the later heartbeat came (ms since epoch).
    pub at: i64,
}

impl BackPressure {
    /// Flink's level for a back-pressure ratio: `ok` up to 0.10, `low` up to 0.50, else `high`.
    pub fn level(ratio: f64) -> &'static str {
        if ratio <= 0.10 {
            "ok"
        } else if ratio <= 0.50 {
            "low"
        } else {
            "high"
        }
    }
}

/// What `eddy list`, the progress display and the REST API read about a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobDetails {
    pub job_id: String,
    pub name: String,
    pub status: JobStatus,
    pub start_time: i64,
    /// -1 while running.
    pub end_time: i64,
    pub duration_ms: i64,
    /// First time the job entered each status (ms since epoch), keyed by status name.
    pub timestamps: BTreeMap<String, i64>,
    pub vertices: Vec<VertexDetails>,
    pub restarts: u32,
    pub completed_checkpoints: u64,
    pub failed_checkpoints: u64,
    /// The checkpoint coordinator's statistics (counts, latest, history), when checkpointing.
    pub checkpoints: Option<serde_json::Value>,
    pub exceptions: Vec<ExceptionEntry>,
    /// Why the job is waiting, failed or was suspended.
    pub status_reason: Option<String>,
    /// The timeline of each recovery (newest last, as many as `web.exception-history-size`).
    #[serde(default)]
    pub recoveries: Vec<RecoveryRecord>,
    /// Every complete recovery of the job under this JobManager: detection → RUNNING (ms).
    #[serde(default)]
    pub recovery_durations: eddy_core::metrics::Histogram,
}

/// One recovery of a job, times in ms since the epoch: the failure (or, after a leader change,
/// the new leader's election) noticed, the restart decided, the restarted subtasks deployed
/// with their state, and every subtask RUNNING again. `None`: not reached (yet).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub cause: String,
    pub detected: i64,
    pub decided: i64,
    /// The restart strategy's delay before the restore.
    pub restart_delay_ms: i64,
    pub deployed: Option<i64>,
    pub running: Option<i64>,
    pub restored_checkpoint: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::JobStatus::*;

    #[test]
    fn terminal_statuses_have_no_way_out() {
        for from in [Finished, Failed, Canceled] {
            for to in [
                Created, Running, Failing, Failed, Cancelling, Canceled, Finished, Restarting,
                Suspended,
            ] {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn restart_cycle_is_legal() {
        assert!(Running.can_transition_to(Restarting));
        assert!(Restarting.can_transition_to(Running));
        assert!(!Finished.can_transition_to(Running));
        assert!(!Cancelling.can_transition_to(Running));
    }
}
