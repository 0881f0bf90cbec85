//! The CheckpointCoordinator's decision logic, sans IO: events in (with explicit time), commands
//! out. It never sends a message, writes a file or reads a clock; the JobMaster's shell does, and
//! feeds the outcome back as events.
//!
//! ```text
//!            tick(now) ──────────────┐         ┌──> TriggerCheckpoint      (barriers to sources)
//!            ack / decline ──────────┤         ├──> WriteMetadataAndComplete (_metadata + HA store)
//!  shell ──> metadata_written/failed ┼─> core ─┼──> NotifyComplete         (sinks commit)
//!            task_failed / restarting┤         ├──> AbortCheckpoint        (tasks drop it)
//!            tasks_running / shutdown┘         ├──> DiscardCheckpoint      (delete files)
//!                                              └──> FailJob                (too many failures)
//!  then: sleep until next_deadline() or the next event, whichever comes first.
//! ```
//!
//! Time is `now_ms`: wall-clock milliseconds (they become the checkpoint timestamps), which the
//! shell keeps non-decreasing. Rules (Flink's):
//! - a periodic checkpoint is due `interval` after the previous periodic trigger (or after the
//!   tasks started running), and not before `min_pause` after the end (completion or abort) of the
//!   last checkpoint;
//! - at most `max_concurrent` checkpoints are in flight; `min_pause > 0` implies one at a time;
//! - nothing is triggered unless every task is running ([`CheckpointCoordinator::tasks_running`]);
//! - a checkpoint not acknowledged by every task within `timeout` expires;
//! - a checkpoint completes when every task acknowledged *and* `_metadata` is written; completing
//!   subsumes older pending checkpoints and discards completed ones beyond `num_retained`;
//! - `FailJob` when more than `tolerable_failed` counted failures happen in a row (a completed
//!   checkpoint resets the count);
//! - ids strictly increase and are never reused.

mod command;
mod end_of_input;
mod shared;
mod stats;
#[cfg(test)]
mod tests;

pub use command::{CheckpointFailureReason, CheckpointTarget, Command, DeclineReason};
use shared::DiscardedShared;
pub use shared::SharedStateRegistry;
pub use stats::{
    CheckpointCounts, CheckpointStats, CheckpointStatus, CheckpointSummary, RestoredCheckpoint,
    HISTORY_SIZE,
};

use crate::ids::{CheckpointId, ExecutionVertexId};
use crate::metadata::{
    CheckpointKind, CompletedCheckpoint, StateFileHandle, TaskState, TaskStateSnapshot,
};
use eddy_core::settings::{CheckpointingSettings, ExternalizedCheckpointRetention};
use eddy_core::JobId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Everything the coordinator needs to start.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    pub job_id: JobId,
    pub settings: CheckpointingSettings,
    /// Tasks that receive the trigger (the sources).
    pub tasks_to_trigger: BTreeSet<ExecutionVertexId>,
    /// Tasks that must acknowledge (all tasks).
    pub tasks_to_ack: BTreeSet<ExecutionVertexId>,
    /// The id of the first checkpoint this coordinator triggers: from the HA checkpoint-id
    /// counter, or `highest_checkpoint_id + 1` from the checkpoint directory without HA.
    pub first_checkpoint_id: CheckpointId,
}

/// The terminal (or suspended) status the job reached, for [`CheckpointCoordinator::shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobShutdownStatus {
    Finished,
    Canceled,
    Failed,
    /// The JobMaster lost leadership: another one takes over, so every retained checkpoint stays.
    Suspended,
}

/// Why a savepoint could not be triggered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    #[error("cannot trigger a savepoint: not every task of the job is running")]
    NotAllTasksRunning,
    #[error("cannot trigger a savepoint: the checkpoint coordinator is shut down")]
    ShutDown,
}

/// The life of one checkpoint inside the coordinator.
///
/// | from | event | to | commands |
/// |---|---|---|---|
/// | — | `tick` (due, tasks running, below max-concurrent) or `trigger_savepoint` | `AwaitingAcks` | `TriggerCheckpoint` |
/// | `AwaitingAcks` | `ack` while other tasks are still missing | `AwaitingAcks` | — |
/// | `AwaitingAcks` | `ack` from the last missing task | `WritingMetadata` | `WriteMetadataAndComplete` |
/// | `AwaitingAcks` | `decline`, `tick` past the timeout, `trigger_failed`, `task_failed`, `job_restarting`, `shutdown`, a newer checkpoint completed | removed | `AbortCheckpoint`, `DiscardCheckpoint` (+ `FailJob`) |
/// | `WritingMetadata` | `metadata_written` | removed; retained if a checkpoint | `NotifyComplete` (not for a plain savepoint), `DiscardCheckpoint` beyond num-retained |
/// | `WritingMetadata` | `metadata_write_failed` | removed | `AbortCheckpoint`, `DiscardCheckpoint` (+ `FailJob`) |
/// | `WritingMetadata` | `task_failed`, `job_restarting`, `shutdown`, a newer checkpoint completed | `AbortedWhileWriting` | `AbortCheckpoint` |
/// | `AbortedWhileWriting` | `metadata_written` or `metadata_write_failed` | removed | `DiscardCheckpoint` |
///
/// `WritingMetadata` does not time out: the shell always answers the write. A checkpoint aborted
/// while its `_metadata` is being written is discarded only once the write finished, so a late
/// write cannot resurrect it.
#[derive(Debug)]
enum Phase {
    AwaitingAcks,
    WritingMetadata { metadata: CompletedCheckpoint },
    AbortedWhileWriting,
}

#[derive(Debug)]
struct PendingCheckpoint {
    target: CheckpointTarget,
    trigger_ms: u64,
    deadline_ms: u64,
    acks: BTreeMap<ExecutionVertexId, TaskStateSnapshot>,
    phase: Phase,
}

impl PendingCheckpoint {
    fn in_flight(&self) -> bool {
        !matches!(self.phase, Phase::AbortedWhileWriting)
    }

    fn files(&self) -> Box<dyn Iterator<Item = &StateFileHandle> + '_> {
        match &self.phase {
            Phase::WritingMetadata { metadata } => Box::new(metadata.files()),
            _ => Box::new(self.acks.values().flat_map(|s| s.files())),
        }
    }
}

/// The CheckpointCoordinator core of one job. See the module documentation for the rules.
#[derive(Debug)]
pub struct CheckpointCoordinator {
    job_id: JobId,
    settings: CheckpointingSettings,
    tasks_to_trigger: Vec<ExecutionVertexId>,
    tasks_to_ack: BTreeSet<ExecutionVertexId>,
    next_id: CheckpointId,
    pending: BTreeMap<CheckpointId, PendingCheckpoint>,
    /// Retained completed checkpoints, oldest first (never savepoints).
    completed: VecDeque<CompletedCheckpoint>,
    /// Every task is running: triggering allowed.
    running: bool,
    shut_down: bool,
    /// The interval counts from here: the last periodic trigger, or when the tasks started running.
    periodic_base_ms: u64,
    /// End (completion or abort) of the last checkpoint, for min-pause.
    last_end_ms: Option<u64>,
    consecutive_failures: u32,
    stats: CheckpointStats,
    /// Tasks whose input ended and that finished: neither triggered nor awaited any more. Their
    /// last acknowledged state is carried into every later checkpoint, so a restore sees them at
    /// their end (Flink's FLIP-147 idea, simplified).
    finished: BTreeMap<ExecutionVertexId, TaskStateSnapshot>,
    /// The trigger set as configured, to re-add finished tasks that are deployed again.
    all_triggered: BTreeSet<ExecutionVertexId>,
    /// A stop-with-savepoint is in flight or completed: no periodic checkpoint may follow it
    /// (one would commit output beyond the savepoint). Cleared if that savepoint fails.
    stopping: Option<CheckpointId>,
    /// Sources whose data ended: the final checkpoint is triggered at once (end_of_input.rs).
    end_of_input: end_of_input::EndOfInput,
    /// Shared files released for deletion (see `shared.rs`).
    discarded_shared: DiscardedShared,
}

impl CheckpointCoordinator {
    pub fn new(config: CoordinatorConfig) -> Self {
        CheckpointCoordinator {
            job_id: config.job_id,
            settings: config.settings,
            all_triggered: config.tasks_to_trigger.clone(),
            tasks_to_trigger: config.tasks_to_trigger.into_iter().collect(),
            tasks_to_ack: config.tasks_to_ack,
            finished: BTreeMap::new(),
            next_id: config.first_checkpoint_id,
            pending: BTreeMap::new(),
            completed: VecDeque::new(),
            running: false,
            shut_down: false,
            periodic_base_ms: 0,
            last_end_ms: None,
            consecutive_failures: 0,
            stats: CheckpointStats::default(),
            stopping: None,
            end_of_input: Default::default(),
            discarded_shared: DiscardedShared::default(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Queries
    // ----------------------------------------------------------------------------------------

    /// The id the next trigger will use.
    pub fn next_checkpoint_id(&self) -> CheckpointId {
        self.next_id
    }

    /// The checkpoint to restore from on failover: the newest retained completed checkpoint.
    pub fn latest_completed(&self) -> Option<&CompletedCheckpoint> {
        self.completed.back()
    }

    /// Retained completed checkpoints, oldest first.
    pub fn completed_checkpoints(&self) -> impl Iterator<Item = &CompletedCheckpoint> {
        self.completed.iter()
    }

    /// Ids of checkpoints in flight (awaiting acks or writing metadata), ascending.
    pub fn pending_ids(&self) -> Vec<CheckpointId> {
        self.pending
            .iter()
            .filter(|(_, p)| p.in_flight())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Counted checkpoint failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn is_running(&self) -> bool {
        self.running && !self.shut_down
    }

    /// Statistics for the REST API.
    pub fn stats(&self) -> &CheckpointStats {
        &self.stats
    }

    /// When the shell must call [`Self::tick`] next (a trigger falls due or a checkpoint
    /// expires), in the same milliseconds as `now_ms`. `None`: only events can change anything.
    /// Re-read it after every event.
    pub fn next_deadline(&self) -> Option<u64> {
        let expiry = self
            .pending
            .values()
            .filter(|p| matches!(p.phase, Phase::AwaitingAcks))
            .map(|p| p.deadline_ms)
            .min();
        match (expiry, self.trigger_due_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Events
    // ----------------------------------------------------------------------------------------

    /// Adds retained checkpoints recovered from the completed-checkpoint store (or the checkpoint
    /// directory) when a JobMaster starts. Savepoints and other jobs' checkpoints are ignored.
    /// Ids continue above the highest one. Returns the discards for checkpoints beyond
    /// `num_retained`.
    pub fn restore_completed(&mut self, checkpoints: Vec<CompletedCheckpoint>) -> Vec<Command> {
        let mut all: BTreeMap<CheckpointId, CompletedCheckpoint> = self
            .completed
            .drain(..)
            .map(|c| (c.checkpoint_id, c))
            .collect();
        for c in checkpoints {
            if c.kind == CheckpointKind::Checkpoint && c.job_id == self.job_id {
                all.insert(c.checkpoint_id, c);
            }
        }
        if let Some(&max) = all.keys().next_back() {
            self.next_id = self.next_id.max(max.saturating_add(1));
        }
        self.completed = all.into_values().collect();
        let mut out = Vec::new();
        self.enforce_retention(&mut out);
        out
    }

    /// The shell restored the job from checkpoint `id` (statistics only).
    pub fn note_restored(&mut self, id: CheckpointId, now_ms: u64) {
        self.stats.restored(id, now_ms);
    }

    /// Every task is RUNNING (after deployment or a restart): periodic checkpoints may start; the
    /// first one falls due `interval` from now.
    pub fn tasks_running(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        self.running = true;
        self.periodic_base_ms = now_ms;
    }

    /// Expires overdue checkpoints, then triggers a periodic checkpoint if one is due.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        let expired: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| matches!(p.phase, Phase::AwaitingAcks) && now_ms >= p.deadline_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.abort(id, CheckpointFailureReason::Expired, now_ms, &mut out);
        }
        if let Some(due) = self.trigger_due_at() {
            if now_ms >= due {
                self.periodic_base_ms = now_ms;
                self.trigger(CheckpointTarget::Checkpoint, now_ms, &mut out);
            }
        }
        out
    }

    /// Triggers a savepoint into `dir` now (ignores interval, min-pause and max-concurrent, as
    /// Flink does). Returns its id with the commands.
    pub fn trigger_savepoint(
        &mut self,
        now_ms: u64,
        dir: impl Into<String>,
    ) -> Result<(CheckpointId, Vec<Command>), TriggerError> {
        self.trigger_user(CheckpointTarget::Savepoint { dir: dir.into() }, now_ms)
    }

    /// Triggers the terminating savepoint of stop-with-savepoint into `dir` (`drain`: sources
    /// end event time first): on completion tasks are notified (side effects commit) and
    /// finish. No periodic checkpoint follows it; if it fails without drain they resume (with
    /// drain the sources already ended: only a restart, which clears this, resumes them).
    pub fn trigger_stop_with_savepoint(
        &mut self,
        now_ms: u64,
        dir: impl Into<String>,
        drain: bool,
    ) -> Result<(CheckpointId, Vec<Command>), TriggerError> {
        let (id, out) = self.trigger_user(
            CheckpointTarget::StopWithSavepoint {
                dir: dir.into(),
                drain,
            },
            now_ms,
        )?;
        self.stopping = Some(id);
        Ok((id, out))
    }

    /// The shell could not reserve the id or send the barriers of checkpoint `id`.
    pub fn trigger_failed(
        &mut self,
        id: CheckpointId,
        error: impl Into<String>,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if self.awaiting_acks(id) {
            self.abort(
                id,
                CheckpointFailureReason::TriggerFailed(error.into()),
                now_ms,
                &mut out,
            );
        }
        out
    }

    /// `task` acknowledged checkpoint `id` with its state. Acks for unknown, completed or aborted
    /// checkpoints, from tasks that need not acknowledge, and repeated acks are ignored.
    pub fn ack(
        &mut self,
        id: CheckpointId,
        task: ExecutionVertexId,
        state: TaskStateSnapshot,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.tasks_to_ack.contains(&task) {
            return out;
        }
        let Some(p) = self.pending.get(&id) else {
            self.discard_late_ack(id, &state, &mut out);
            return out;
        };
        if !matches!(p.phase, Phase::AwaitingAcks) || p.acks.contains_key(&task) {
            return out;
        }
        if let Some(f) = self.discarded_shared.first_discarded(state.files()) {
            // The task based its snapshot on a checkpoint subsumed meanwhile (it had not yet
            // been told of the newer one): this checkpoint cannot complete.
            let reason = DeclineReason::StaleSharedState(f.path.clone());
            self.abort(
                id,
                CheckpointFailureReason::Declined { task, reason },
                now_ms,
                &mut out,
            );
            return out;
        }
        self.stats.acknowledged(id, state.state_size());
        let Some(p) = self.pending.get_mut(&id) else {
            return out;
        };
        p.acks.insert(task, state);
        if self.tasks_to_ack.iter().all(|t| p.acks.contains_key(t)) {
            self.start_writing(id, now_ms, &mut out);
        }
        out
    }

    /// `task` finished (its input ended after its final checkpoint): stop triggering and
    /// awaiting it. Its state in later checkpoints is its last acknowledged one (from the newest
    /// completed checkpoint). Pending checkpoints that now have every ack complete.
    pub fn task_finished(&mut self, task: ExecutionVertexId, now_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        if !self.tasks_to_ack.remove(&task) {
            return out;
        }
        self.tasks_to_trigger.retain(|t| *t != task);
        let last = self
            .completed
            .back()
            .and_then(|c| c.task_state(task).cloned())
            .unwrap_or_default();
        self.finished.insert(task, last);
        let ready: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| {
                matches!(p.phase, Phase::AwaitingAcks)
                    && self.tasks_to_ack.iter().all(|t| p.acks.contains_key(t))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            self.start_writing(id, now_ms, &mut out);
        }
        out
    }

    /// Tasks are deployed again (a restart): finished ones among them are triggered and awaited
    /// again.
    pub fn tasks_redeployed(&mut self, tasks: impl IntoIterator<Item = ExecutionVertexId>) {
        // Restarted tasks run from a snapshot again: a stop-with-savepoint before is void.
        self.stopping = None;
        for t in tasks {
            self.end_of_input_redeployed(t);
            if self.finished.remove(&t).is_some() {
                self.tasks_to_ack.insert(t);
                if self.all_triggered.contains(&t) {
                    self.tasks_to_trigger.push(t);
                }
            }
        }
        self.tasks_to_trigger.sort();
    }
    /// `task` declined checkpoint `id`: it is aborted. Ignored for checkpoints not awaiting acks.
    pub fn decline(
        &mut self,
        id: CheckpointId,
        task: ExecutionVertexId,
        reason: DeclineReason,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        if self.tasks_to_ack.contains(&task) && self.awaiting_acks(id) {
            self.abort(
                id,
                CheckpointFailureReason::Declined { task, reason },
                now_ms,
                &mut out,
            );
        }
        out
    }

    /// `_metadata` of `id` is durable and the checkpoint is registered in the completed-checkpoint
    /// store: the checkpoint is complete.
    pub fn metadata_written(&mut self, id: CheckpointId, now_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(p) = self.pending.get(&id) else {
            return out;
        };
        match p.phase {
            Phase::AbortedWhileWriting => {
                if let Some(p) = self.pending.remove(&id) {
                    self.discard_pending(id, p, &mut out);
                }
            }
            Phase::WritingMetadata { .. } => self.complete(id, now_ms, &mut out),
            Phase::AwaitingAcks => {}
        }
        out
    }

    /// Writing or registering `_metadata` of `id` failed: the checkpoint is aborted (counted).
    pub fn metadata_write_failed(
        &mut self,
        id: CheckpointId,
        error: impl Into<String>,
        now_ms: u64,
    ) -> Vec<Command> {
        let mut out = Vec::new();
        let Some(p) = self.pending.get(&id) else {
            return out;
        };
        match p.phase {
            Phase::AbortedWhileWriting => {
                if let Some(p) = self.pending.remove(&id) {
                    self.discard_pending(id, p, &mut out);
                }
            }
            Phase::WritingMetadata { .. } => self.abort(
                id,
                CheckpointFailureReason::MetadataWriteFailed(error.into()),
                now_ms,
                &mut out,
            ),
            Phase::AwaitingAcks => {}
        }
        out
    }

    /// A task failed: every pending checkpoint is aborted and nothing is triggered until
    /// [`Self::tasks_running`].
    pub fn task_failed(&mut self, task: ExecutionVertexId, now_ms: u64) -> Vec<Command> {
        self.running = false;
        self.abort_all(CheckpointFailureReason::TaskFailure(task), now_ms)
    }

    /// The job (or a region) is restarting: like [`Self::task_failed`].
    pub fn job_restarting(&mut self, now_ms: u64) -> Vec<Command> {
        self.running = false;
        self.abort_all(CheckpointFailureReason::JobFailover, now_ms)
    }

    /// The job reached `status` (or the JobMaster lost leadership): abort everything, trigger
    /// nothing more, and discard retained checkpoints as
    /// `execution.checkpointing.externalized-checkpoint-retention` says (Flink's rules: kept on
    /// suspension; on cancel kept only with RETAIN_ON_CANCELLATION; on failure kept unless
    /// NO_EXTERNALIZED_CHECKPOINTS; always discarded when the job finished).
    pub fn shutdown(&mut self, status: JobShutdownStatus, now_ms: u64) -> Vec<Command> {
        self.running = false;
        self.shut_down = true;
        let mut out = self.abort_all(CheckpointFailureReason::CoordinatorShutdown, now_ms);
        use ExternalizedCheckpointRetention as R;
        let discard = match (status, self.settings.externalized_retention) {
            (JobShutdownStatus::Suspended, _) => false,
            (JobShutdownStatus::Finished, _) => true,
            (JobShutdownStatus::Canceled, r) => r != R::RetainOnCancellation,
            (JobShutdownStatus::Failed, r) => r == R::NoExternalizedCheckpoints,
        };
        if discard {
            // Nothing carries finished tasks' states into a later checkpoint any more.
            self.finished.clear();
            while let Some(c) = self.completed.pop_front() {
                let shared = self.unreferenced_shared(c.files(), None);
                out.push(Command::DiscardCheckpoint {
                    id: c.checkpoint_id,
                    target: CheckpointTarget::Checkpoint,
                    shared_files: shared,
                });
            }
        }
        out
    }

    // ----------------------------------------------------------------------------------------
    // Internals
    // ----------------------------------------------------------------------------------------

    fn in_flight(&self) -> usize {
        self.pending.values().filter(|p| p.in_flight()).count()
    }

    fn awaiting_acks(&self, id: CheckpointId) -> bool {
        self.pending
            .get(&id)
            .is_some_and(|p| matches!(p.phase, Phase::AwaitingAcks))
    }

    fn max_concurrent(&self) -> usize {
        if self.settings.min_pause > Duration::ZERO {
            1
        } else {
            self.settings.max_concurrent.max(1) as usize
        }
    }

    /// When the next periodic checkpoint may be triggered, if triggering is possible at all.
    fn trigger_due_at(&self) -> Option<u64> {
        let interval = self.settings.interval?;
        if self.stopping.is_some()
            || !self.running
            || self.shut_down
            || self.in_flight() >= self.max_concurrent()
            || self.tasks_to_trigger.is_empty()
        {
            return None;
        }
        let mut due =
            self.due_after_end_of_input(self.periodic_base_ms.saturating_add(millis(interval)));
        if let Some(end) = self.last_end_ms {
            due = due.max(end.saturating_add(millis(self.settings.min_pause)));
        }
        Some(due)
    }

    fn trigger_user(
        &mut self,
        target: CheckpointTarget,
        now_ms: u64,
    ) -> Result<(CheckpointId, Vec<Command>), TriggerError> {
        if self.shut_down {
            return Err(TriggerError::ShutDown);
        }
        if !self.running {
            return Err(TriggerError::NotAllTasksRunning);
        }
        let mut out = Vec::new();
        let id = self.trigger(target, now_ms, &mut out);
        Ok((id, out))
    }

    fn trigger(
        &mut self,
        target: CheckpointTarget,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) -> CheckpointId {
        let id = self.next_id;
        self.next_id += 1;
        self.end_of_input_triggered();
        self.stats
            .triggered(id, target.kind(), now_ms, self.tasks_to_ack.len());
        self.pending.insert(
            id,
            PendingCheckpoint {
                target: target.clone(),
                trigger_ms: now_ms,
                deadline_ms: now_ms.saturating_add(millis(self.settings.timeout)),
                acks: BTreeMap::new(),
                phase: Phase::AwaitingAcks,
            },
        );
        out.push(Command::TriggerCheckpoint {
            id,
            timestamp_ms: now_ms,
            target,
            tasks: self.tasks_to_trigger.clone(),
        });
        if self.tasks_to_ack.is_empty() {
            self.start_writing(id, now_ms, out);
        }
        id
    }

    fn start_writing(&mut self, id: CheckpointId, now_ms: u64, out: &mut Vec<Command>) {
        let job_id = self.job_id;
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let mut acks = std::mem::take(&mut p.acks);
        for (task, state) in &self.finished {
            acks.entry(*task).or_insert_with(|| state.clone());
        }
        let metadata = CompletedCheckpoint {
            operators: Vec::new(),
            job_id,
            checkpoint_id: id,
            kind: p.target.kind(),
            trigger_timestamp_ms: p.trigger_ms,
            completion_timestamp_ms: now_ms,
            tasks: acks
                .into_iter()
                .map(|(task, state)| TaskState { task, state })
                .collect(),
        };
        out.push(Command::WriteMetadataAndComplete {
            id,
            target: p.target.clone(),
            metadata: metadata.clone(),
        });
        p.phase = Phase::WritingMetadata { metadata };
    }

    fn complete(&mut self, id: CheckpointId, now_ms: u64, out: &mut Vec<Command>) {
        let Some(p) = self.pending.remove(&id) else {
            return;
        };
        let Phase::WritingMetadata { metadata } = p.phase else {
            self.pending.insert(id, p);
            return;
        };
        self.last_end_ms = Some(now_ms);
        self.stats.completed(id, now_ms);
        let all_tasks: Vec<ExecutionVertexId> = self.tasks_to_ack.iter().copied().collect();
        match p.target {
            CheckpointTarget::Checkpoint => {
                self.consecutive_failures = 0;
                out.push(Command::NotifyComplete {
                    id,
                    tasks: all_tasks,
                });
                let subsumed: Vec<CheckpointId> = self
                    .pending
                    .iter()
                    .filter(|(older, q)| {
                        **older < id && q.in_flight() && q.target == CheckpointTarget::Checkpoint
                    })
                    .map(|(older, _)| *older)
                    .collect();
                self.completed.push_back(metadata);
                for older in subsumed {
                    self.abort(
                        older,
                        CheckpointFailureReason::Subsumed { by: id },
                        now_ms,
                        out,
                    );
                }
                self.enforce_retention(out);
            }
            CheckpointTarget::StopWithSavepoint { .. } => {
                out.push(Command::NotifyComplete {
                    id,
                    tasks: all_tasks,
                });
            }
            CheckpointTarget::Savepoint { .. } => {}
        }
    }

    fn enforce_retention(&mut self, out: &mut Vec<Command>) {
        let keep = self.settings.num_retained.max(1) as usize;
        while self.completed.len() > keep {
            let Some(c) = self.completed.pop_front() else {
                break;
            };
            let shared = self.unreferenced_shared(c.files(), None);
            self.discarded_shared.note(&shared);
            out.push(Command::DiscardCheckpoint {
                id: c.checkpoint_id,
                target: CheckpointTarget::Checkpoint,
                shared_files: shared,
            });
        }
    }

    fn abort_all(&mut self, reason: CheckpointFailureReason, now_ms: u64) -> Vec<Command> {
        let mut out = Vec::new();
        let ids: Vec<CheckpointId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.in_flight())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.abort(id, reason.clone(), now_ms, &mut out);
        }
        out
    }

    /// Aborts an in-flight checkpoint: tells the tasks, discards its files (after the metadata
    /// write finished, if one is running), counts the failure.
    fn abort(
        &mut self,
        id: CheckpointId,
        reason: CheckpointFailureReason,
        now_ms: u64,
        out: &mut Vec<Command>,
    ) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        let kind = p.target.kind();
        let drained = matches!(
            p.target,
            CheckpointTarget::StopWithSavepoint { drain: true, .. }
        );
        let discard_now = match p.phase {
            Phase::AwaitingAcks => true,
            // The write failed: nothing is in flight any more.
            Phase::WritingMetadata { .. } => {
                matches!(reason, CheckpointFailureReason::MetadataWriteFailed(_))
            }
            Phase::AbortedWhileWriting => return,
        };
        if !discard_now {
            p.phase = Phase::AbortedWhileWriting;
        }
        out.push(Command::AbortCheckpoint {
            id,
            reason: reason.clone(),
            tasks: self.tasks_to_ack.iter().copied().collect(),
        });
        if discard_now {
            if let Some(p) = self.pending.remove(&id) {
                self.discard_pending(id, p, out);
            }
        }
        self.last_end_ms = Some(now_ms);
        if self.stopping == Some(id) && !drained {
            self.stopping = None;
        }
        self.stats.failed(id, now_ms, reason.to_string());
        // Savepoint failures never fail the job (Flink).
        if kind == CheckpointKind::Checkpoint && reason.counts_against_tolerance() {
            self.consecutive_failures += 1;
            if self.consecutive_failures > self.settings.tolerable_failed {
                out.push(Command::FailJob {
                    reason: format!(
                        "exceeded checkpoint tolerable failure threshold: {} consecutive checkpoint failures, {} tolerated (execution.checkpointing.tolerable-failed-checkpoints); last: checkpoint {id} {reason}",
                        self.consecutive_failures, self.settings.tolerable_failed
                    ),
                });
                self.consecutive_failures = 0;
            }
        }
    }

    fn discard_pending(&mut self, id: CheckpointId, p: PendingCheckpoint, out: &mut Vec<Command>) {
        let shared = self.unreferenced_shared(p.files(), Some(id));
        self.discarded_shared.note(&shared);
        out.push(Command::DiscardCheckpoint {
            id,
            target: p.target,
            shared_files: shared,
        });
    }

    /// An acknowledgement of a checkpoint aborted before it arrived: the shared files it uploaded
    /// (incremental checkpoints) that nothing refers to are deleted with the checkpoint's
    /// directory, or they would never be.
    fn discard_late_ack(
        &mut self,
        id: CheckpointId,
        state: &TaskStateSnapshot,
        out: &mut Vec<Command>,
    ) {
        if id >= self.next_id || self.completed.iter().any(|c| c.checkpoint_id == id) {
            return;
        }
        let shared = self.unreferenced_shared(state.files(), None);
        if shared.is_empty() {
            return;
        }
        self.discarded_shared.note(&shared);
        out.push(Command::DiscardCheckpoint {
            id,
            target: CheckpointTarget::Checkpoint,
            shared_files: shared,
        });
    }

    /// Shared files among `files` that no retained checkpoint, no other pending checkpoint and
    /// no finished task's state refers to.
    fn unreferenced_shared<'a>(
        &self,
        files: impl Iterator<Item = &'a StateFileHandle>,
        except_pending: Option<CheckpointId>,
    ) -> Vec<StateFileHandle> {
        let candidates: Vec<&StateFileHandle> = files.filter(|f| f.is_shared()).collect();
        if candidates.is_empty() {
            return Vec::new();
        }
        self.shared_state_registry(except_pending)
            .unreferenced(candidates)
    }

    /// The reference counts of shared files over the retained checkpoints, the in-flight ones
    /// (but `except_pending`) and the finished tasks' states.
    fn shared_state_registry(&self, except_pending: Option<CheckpointId>) -> SharedStateRegistry {
        let completed = self
            .completed
            .iter()
            .map(|c| Box::new(c.files()) as Box<dyn Iterator<Item = &StateFileHandle>>);
        let pending = self
            .pending
            .iter()
            .filter(move |(pid, _)| Some(**pid) != except_pending)
            .map(|(_, p)| p.files());
        let finished = self
            .finished
            .values()
            .map(|s| Box::new(s.files()) as Box<dyn Iterator<Item = &StateFileHandle>>);
        SharedStateRegistry::count(completed.chain(pending).chain(finished))
    }

    /// The shared-state registry as it stands (for inspection and tests).
    pub fn shared_state(&self) -> SharedStateRegistry {
        self.shared_state_registry(None)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
