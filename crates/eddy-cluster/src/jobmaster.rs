//! The JobMaster core: one per job; schedules subtasks into slots, tracks their executions,
//! runs the checkpoint coordinator, and applies the failover and restart strategies.
//!
//! Sans-IO: it takes events with the current time (`now`, ms since the epoch) and returns
//! [`Command`]s for the JobManager shell to execute (messages to TaskManagers, `_metadata`
//! writes, checkpoint discards, restores). It never touches a socket, a file, a thread or the
//! clock.
//!
//! Failure handling: a failed subtask (or a lost TaskManager) aborts pending checkpoints; the
//! failover strategy picks the subtasks to restart (`region`: the failed subtask's pipelined
//! region; `full`: all); the restart strategy allows it (after a delay) or the job fails. The
//! restarted subtasks are cancelled, and once all are terminal and the delay passed, the shell
//! selects the checkpoint to restore from and the subtasks are deployed again with its state.
//! Concurrent failures while a restart is pending join that restart (one attempt).

use crate::rpc::{
    push_id, DeploymentBatch, ExecutionKey, FencingToken, IdRun, JmMessage, OutputRange,
    RestoreSpec, SubtaskDeployment,
};
use crate::status::{
    BackPressure, ExceptionEntry, JobDetails, JobStatus, RecoveryRecord, SubtaskDetails,
    VertexDetails,
};
use eddy_core::settings::{CheckpointingSettings, FailoverStrategyKind, RestartStrategyConfig};
use eddy_core::JobId;
use eddy_recovery::{
    CheckpointCoordinator, CompletedCheckpoint, CoordinatorConfig, DeclineReason,
    DistributionPattern, EdgeInfo, ExecutionVertexId, FailoverStrategy, JobShutdownStatus,
    RestartBackoff, RestartDecision, TaskStateSnapshot, Topology, VertexInfo,
};
use eddy_runtime::graph::{JobGraph, PartitionKind};
use eddy_runtime::registry::JobSpec;
use eddy_runtime::task::channel::StopMode;
use eddy_runtime::task::metrics::TaskTimes;
use eddy_runtime::task::ExecutionState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

type Task = (usize, u32);

/// One slot offered to a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRef {
    pub tm_id: String,
    pub data_address: String,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Command {
    Send {
        tm_id: String,
        msg: JmMessage,
    },
    /// The job no longer needs its slots.
    ReleaseSlots,
    /// Write `_metadata` of a completed checkpoint, then call `metadata_written` (or
    /// `metadata_write_failed`).
    WriteMetadata {
        metadata: Box<CompletedCheckpoint>,
        /// A savepoint: make it self-contained in this directory (no HA registration).
        savepoint_dir: Option<String>,
    },
    /// Delete a checkpoint's directory (retention, abort) and the shared files no longer used.
    DiscardCheckpoint {
        id: u64,
        shared_files: Vec<eddy_recovery::StateFileHandle>,
    },
    /// Reserve checkpoint ids up to `id` in the HA checkpoint counter before triggering `id`.
    ReserveCheckpointId {
        id: u64,
    },
    /// CLAIM mode: the snapshot this job restored from (`dir`) is subsumed by the job's own
    /// retained checkpoints: delete it (it holds a readable `_metadata`; see
    /// `eddy_recovery::savepoint::dispose`).
    DisposeClaimed {
        dir: String,
    },
    /// Select the checkpoint to restore from (newest readable retained one; the coordinator's
    /// in-memory choice is `hint`) and call `deploy_restarted`.
    Restore {
        tasks: BTreeSet<Task>,
        hint: Option<u64>,
    },
}

#[derive(Clone, Debug)]
struct Execution {
    attempt: u64,
    tm_id: String,
    state: ExecutionState,
    records_in: u64,
    records_out: u64,
    /// Where this attempt's time went (its TaskManager's last heartbeat), and when that came.
    times: Option<(TaskTimes, i64)>,
    /// Its back-pressured, idle and busy shares between its last two heartbeats.
    ratios: Option<(f64, f64, f64)>,
    /// Deployments of this subtask so far (1 on the first run).
    deployments: u32,
    /// When this attempt was deployed.
    deployed_at: i64,
    /// The JobMaster asked this attempt to cancel: a CANCELED report is expected. A task that
    /// ends CANCELED without being asked is a failure, never a silent stall.
    cancel_requested: bool,
}

/// Settings the JobMaster takes from the job's configuration.
#[derive(Clone, Debug)]
pub struct JobMasterSettings {
    pub slot_request_timeout_ms: i64,
    pub buffer_timeout_ms: u64,
    pub checkpointing: CheckpointingSettings,
    pub restart: RestartStrategyConfig,
    pub failover: FailoverStrategyKind,
    /// Where checkpoints live (`state.checkpoints.dir`), when checkpointing is on.
    pub checkpoints_dir: Option<String>,
    /// The first checkpoint id (ids never repeat: above any existing one).
    pub first_checkpoint_id: u64,
    /// The first execution attempt number. Attempts must be unique across leaders: a task of a
    /// deposed leader that is slow to cancel must never be taken for one of the new leader's.
    /// The shell passes a random base (high 32 bits) for every JobMaster it creates.
    pub first_attempt: u64,
    /// A subtask still DEPLOYING this long after its deployment is a failure (its TaskManager
    /// never started it or its report was lost): `heartbeat.timeout`.
    pub deploy_timeout_ms: i64,
    /// Exceptions kept (`web.exception-history-size`).
    pub exception_history_size: usize,
    /// The largest RPC message (`pekko.framesize`): a deployment batch is split below it.
    pub max_message_bytes: usize,
}

struct PendingRestart {
    tasks: BTreeSet<Task>,
    /// Not before this time (the restart strategy's delay).
    at: i64,
    /// Asked the shell to restore; waiting for `deploy_restarted`.
    requested: bool,
    /// When the restore was first postponed for lack of slots.
    waiting_since: Option<i64>,
}

/// A stop-with-savepoint (Flink's terminating savepoint). Sources emit nothing after its
/// barrier; once it completed the tasks are notified (sinks commit its transaction) and finish
/// on their own, and the job ends FINISHED. No timer, no cancel.
#[derive(Clone, Debug)]
struct StopWithSavepoint {
    id: u64,
    drain: bool,
    /// The savepoint's metadata and directory, from when its `_metadata` is written.
    snapshot: Option<(CompletedCheckpoint, String)>,
    completed: bool,
}

pub struct JobMaster {
    pub job_id: JobId,
    pub spec: JobSpec,
    pub graph: Arc<JobGraph>,
    token: FencingToken,
    settings: JobMasterSettings,
    status: JobStatus,
    timestamps: BTreeMap<String, i64>,
    start_time: i64,
    end_time: i64,
    /// Slot i hosts subtask i of every vertex (slot sharing).
    slots: Vec<SlotRef>,
    executions: BTreeMap<Task, Execution>,
    next_attempt: u64,
    exceptions: Vec<ExceptionEntry>,
    reason: Option<String>,
    restarts: u32,
    /// Why the job is failing, kept for the final FAILED status.
    failure: Option<String>,
    coordinator: Option<CheckpointCoordinator>,
    backoff: RestartBackoff,
    failover: FailoverStrategy,
    pending_restart: Option<PendingRestart>,
    /// A recovered job's first deployment restores from this checkpoint.
    initial_restore: Option<CompletedCheckpoint>,
    /// The savepoint (or retained checkpoint of another job) this job was started from, already
    /// mapped onto this job's subtasks, and the directory its files are in. Restored whenever
    /// the job has no completed checkpoint of its own.
    resumed_from: Option<(CompletedCheckpoint, String)>,
    /// The stop-with-savepoint in progress (its terminating savepoint is in flight, or completed
    /// and the tasks are finishing).
    stop_with_savepoint: Option<StopWithSavepoint>,
    /// A completed terminating savepoint whose job failed before every task finished: the
    /// stop failed, and restarts restore from that savepoint (its output was committed), not
    /// from an older checkpoint. With why the stop failed.
    stop_failed: Option<(StopWithSavepoint, String)>,
    /// CLAIM mode (`execution.state-recovery.claim-mode`): the job owns the snapshot it resumed
    /// from (this directory) and deletes it once its own retained checkpoints subsumed it, as
    /// Flink subsumes a claimed snapshot in its completed-checkpoint store.
    claimed: Option<String>,
    /// The timeline of each recovery, newest last (bounded like the exception history).
    recoveries: Vec<RecoveryRecord>,
    /// Every complete recovery's detection → RUNNING (ms), for `/metrics`.
    recovery_durations: eddy_core::metrics::Histogram,
    /// When the latest deployment was sent, until all its subtasks run (logged then).
    deploying_since: Option<i64>,
}

fn evid(t: Task) -> ExecutionVertexId {
    ExecutionVertexId::new(t.0 as u32, t.1)
}

fn is_terminal(s: ExecutionState) -> bool {
    matches!(
        s,
        ExecutionState::Finished | ExecutionState::Canceled | ExecutionState::Failed
    )
}

/// The failover topology of a job graph: forward edges are pointwise, the rest all-to-all.
pub fn topology(graph: &JobGraph) -> Topology {
    Topology {
        vertices: graph
            .vertices
            .iter()
            .map(|v| VertexInfo {
                parallelism: v.parallelism,
            })
            .collect(),
        edges: graph
            .edges
            .iter()
            .map(|e| EdgeInfo {
                source: e.source as u32,
                target: e.target as u32,
                pattern: if e.kind == PartitionKind::Forward {
                    DistributionPattern::Pointwise
                } else {
                    DistributionPattern::AllToAll
                },
            })
            .collect(),
    }
}

impl JobMaster {
    pub fn new(
        job_id: JobId,
        spec: JobSpec,
        graph: Arc<JobGraph>,
        token: FencingToken,
        settings: JobMasterSettings,
        now: i64,
    ) -> Result<Self, String> {
        let all: BTreeSet<ExecutionVertexId> = graph
            .vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(move |s| ExecutionVertexId::new(v.id as u32, s)))
            .collect();
        let sources: BTreeSet<ExecutionVertexId> = all
            .iter()
            .filter(|t| graph.vertices[t.vertex as usize].is_source)
            .copied()
            .collect();
        let coordinator = settings.checkpointing.interval.map(|_| {
            CheckpointCoordinator::new(CoordinatorConfig {
                job_id,
                settings: settings.checkpointing.clone(),
                tasks_to_trigger: sources,
                tasks_to_ack: all,
                first_checkpoint_id: settings.first_checkpoint_id,
            })
        });
        let failover = FailoverStrategy::new(settings.failover, &topology(&graph))
            .map_err(|e| e.to_string())?;
        let backoff = RestartBackoff::new(&settings.restart, job_id.0 as u64);
        let first_attempt = settings.first_attempt;
        let mut jm = JobMaster {
            job_id,
            spec,
            graph,
            token,
            settings,
            status: JobStatus::Created,
            timestamps: BTreeMap::new(),
            start_time: now,
            end_time: -1,
            slots: Vec::new(),
            executions: BTreeMap::new(),
            next_attempt: first_attempt,
            exceptions: Vec::new(),
            reason: None,
            restarts: 0,
            failure: None,
            coordinator,
            backoff,
            failover,
            pending_restart: None,
            initial_restore: None,
            resumed_from: None,
            stop_with_savepoint: None,
            stop_failed: None,
            claimed: None,
            recoveries: Vec::new(),
            recovery_durations: eddy_core::metrics::Histogram::new(
                &eddy_core::metrics::DURATION_BOUNDS_MS,
            ),
            deploying_since: None,
        };
        jm.timestamps.insert(JobStatus::Created.name().into(), now);
        Ok(jm)
    }

    /// Records an exception; only the newest `web.exception-history-size` are kept.
    fn push_exception(&mut self, e: ExceptionEntry) {
        self.exceptions.push(e);
        let keep = self.settings.exception_history_size.max(1);
        if self.exceptions.len() > keep {
            let excess = self.exceptions.len() - keep;
            self.exceptions.drain(..excess);
        }
    }

    /// Starts the timeline of a recovery.
    fn recovery_started(&mut self, cause: String, detected: i64, decided: i64, delay_ms: i64) {
        self.recoveries.push(RecoveryRecord {
            cause,
            detected,
            decided,
            restart_delay_ms: delay_ms,
            deployed: None,
            running: None,
            restored_checkpoint: None,
        });
        let keep = self.settings.exception_history_size.max(1);
        if self.recoveries.len() > keep {
            let excess = self.recoveries.len() - keep;
            self.recoveries.drain(..excess);
        }
    }

    /// The restarted subtasks were deployed (restoring `checkpoint`).
    fn recovery_deployed(&mut self, now: i64, checkpoint: Option<u64>) {
        if let Some(r) = self.recoveries.last_mut().filter(|r| r.deployed.is_none()) {
            r.deployed = Some(now);
            r.restored_checkpoint = checkpoint;
        }
    }

    /// Every subtask runs again: the recovery is complete; its timeline goes to the log.
    fn recovery_running(&mut self, now: i64) {
        let Some(r) = self
            .recoveries
            .last_mut()
            .filter(|r| r.deployed.is_some() && r.running.is_none())
        else {
            return;
        };
        r.running = Some(now);
        let d = r.detected;
        self.recovery_durations.observe((now - d).max(0) as u64);
        tracing::info!(
            "job {}: recovery timeline (ms after detection): decided +{}, deployed +{} (checkpoint {}), RUNNING +{}; cause: {}",
            self.job_id,
            r.decided - d,
            r.deployed.unwrap_or(d) - d,
            r.restored_checkpoint.map_or("none".into(), |c| c.to_string()),
            now - d,
            r.cause
        );
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    pub fn checkpoints_dir(&self) -> Option<&str> {
        self.settings.checkpoints_dir.as_deref()
    }

    /// Flink's `timestamps`: the latest time the job entered each status.
    fn transition(&mut self, to: JobStatus, now: i64) {
        if self.status == to {
            return;
        }
        if !self.status.can_transition_to(to) {
            tracing::error!(
                "job {}: illegal status transition {} -> {} refused",
                self.job_id,
                self.status,
                to
            );
            return;
        }
        tracing::info!(
            "job {} ({}) switched from {} to {}",
            self.spec.name,
            self.job_id,
            self.status,
            to
        );
        self.status = to;
        self.timestamps.insert(to.name().into(), now);
        if to.is_globally_terminal() {
            self.end_time = now;
        }
    }

    /// Slots needed: with slot sharing, the highest vertex parallelism.
    pub fn slots_needed(&self) -> usize {
        self.graph
            .vertices
            .iter()
            .map(|v| v.parallelism as usize)
            .max()
            .unwrap_or(0)
    }

    /// Periodic work: slot-request timeout, checkpoint triggers and timeouts, due restarts.
    pub fn tick(&mut self, now: i64, free_slots: usize) -> Vec<Command> {
        let mut cmds = Vec::new();
        if self.status == JobStatus::Created && self.slots.is_empty() {
            let waited = now - self.start_time;
            self.reason = Some(format!(
                "waiting for {} slots ({} free)",
                self.slots_needed(),
                free_slots
            ));
            if waited > self.settings.slot_request_timeout_ms {
                let msg = format!(
                    "could not acquire the {} slots the job needs within {} ms: only {} free; start more TaskManagers or lower the parallelism",
                    self.slots_needed(),
                    self.settings.slot_request_timeout_ms,
                    free_slots
                );
                self.push_exception(ExceptionEntry {
                    timestamp: now,
                    task_name: None,
                    taskmanager: None,
                    exception: msg.clone(),
                });
                self.failure = Some(msg.clone());
                self.reason = Some(msg);
                self.transition(JobStatus::Failing, now);
                self.transition(JobStatus::Failed, now);
                cmds.push(Command::ReleaseSlots);
            }
            return cmds;
        }
        if let Some(c) = self.coordinator.as_mut() {
            let out = c.tick(now as u64);
            cmds.extend(self.coordinator_commands(out, now));
        }
        cmds.extend(self.check_deployments(now));
        cmds.extend(self.check_stop(now));
        if let Some(p) = self.pending_restart.as_mut() {
            let ready = !p.requested
                && now >= p.at
                && p.tasks
                    .iter()
                    .all(|t| self.executions.get(t).is_none_or(|e| is_terminal(e.state)));
            if ready {
                p.requested = true;
                let hint = self
                    .coordinator
                    .as_ref()
                    .and_then(|c| c.latest_completed())
                    .map(|c| c.checkpoint_id);
                cmds.push(Command::Restore {
                    tasks: p.tasks.clone(),
                    hint,
                });
            }
        }
        cmds
    }

    /// Stop-with-savepoint whose savepoint failed: without drain the job goes on (its sources
    /// resume emitting on the abort); with drain its sources already ended event time and their
    /// input, so the job restarts from its latest checkpoint (nothing the drain produced was
    /// committed: no checkpoint covers it).
    fn check_stop(&mut self, now: i64) -> Vec<Command> {
        let Some(stop) = self.stop_with_savepoint.as_ref().filter(|s| !s.completed) else {
            return Vec::new();
        };
        let (id, drain) = (stop.id, stop.drain);
        let Some(Err(why)) = self.savepoint_outcome(id) else {
            return Vec::new();
        };
        self.stop_with_savepoint = None;
        if !drain {
            tracing::warn!(
                "job {}: stop-with-savepoint {id} failed, the job goes on: {why}",
                self.job_id
            );
            return Vec::new();
        }
        let msg = format!(
            "stop-with-savepoint --drain: savepoint {id} failed after the sources drained ({why}); the job restarts from its latest checkpoint"
        );
        tracing::warn!("job {}: {msg}", self.job_id);
        self.on_failure(msg, None, None, now)
    }

    /// A subtask stuck in DEPLOYING beyond `deploy_timeout_ms` (outside a restart, which
    /// cancels it anyway) fails: the job must never stay RUNNING with a task that does not run.
    fn check_deployments(&mut self, now: i64) -> Vec<Command> {
        if !matches!(self.status, JobStatus::Running | JobStatus::Restarting) {
            return Vec::new();
        }
        let pending = self.pending_tasks();
        let stuck = self.executions.iter().find(|(t, e)| {
            e.state == ExecutionState::Deploying
                && !e.cancel_requested
                && !pending.contains(t)
                && now - e.deployed_at > self.settings.deploy_timeout_ms
        });
        let Some((&t, e)) = stuck else {
            return Vec::new();
        };
        let (tm, waited) = (e.tm_id.clone(), now - e.deployed_at);
        let msg = format!(
            "{} on TaskManager {tm} did not start within {waited} ms of its deployment (heartbeat.timeout)",
            self.task_name(t)
        );
        if let Some(e) = self.executions.get_mut(&t) {
            e.state = ExecutionState::Failed;
        }
        let mut cmds = self.on_failure(msg, Some(t), Some(tm), now);
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// The earliest time `tick` has work (coordinator deadline); the shell may sleep until then.
    pub fn next_deadline(&self) -> Option<i64> {
        self.coordinator
            .as_ref()
            .and_then(|c| c.next_deadline())
            .map(|d| d as i64)
    }

    /// The ResourceManager handed over the slots: deploy every subtask (restoring from a
    /// checkpoint when the job is recovered: `restore`).
    pub fn assign_slots(&mut self, slots: Vec<SlotRef>, now: i64) -> Vec<Command> {
        self.slots = slots;
        self.reason = None;
        let all: BTreeSet<Task> = self
            .graph
            .vertices
            .iter()
            .flat_map(|v| (0..v.parallelism).map(move |s| (v.id, s)))
            .collect();
        let restore = self
            .initial_restore
            .take()
            .or_else(|| self.resumed_from.as_ref().map(|r| r.0.clone()));
        if let (Some(c), Some(cp)) = (self.coordinator.as_mut(), restore.as_ref()) {
            c.note_restored(cp.checkpoint_id, now as u64);
        }
        let checkpoint = restore.as_ref().map(|c| c.checkpoint_id);
        let cmds = self.deploy(&all, restore.as_ref(), now);
        self.recovery_deployed(now, checkpoint);
        self.transition(JobStatus::Running, now);
        cmds
    }

    /// Deploys `tasks` (a union of pipelined regions) as a new attempt: one
    /// [`JmMessage::Deploy`] per TaskManager (more only when its subtasks' restore state would
    /// not fit one RPC message), carrying the job and the address table once.
    fn deploy(
        &mut self,
        tasks: &BTreeSet<Task>,
        restore: Option<&CompletedCheckpoint>,
        now: i64,
    ) -> Vec<Command> {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        // Channel ids: random high bits per deployment, so a stale producer never feeds a new
        // consumer. The channels of one producer's output edge get consecutive ids, so a
        // consumer's ids form one run per input edge (`IdRun`): O(edges) per subtask.
        let base = (eddy_core::ids::random_u128() as u64) & !0xFFFF_FFFF;
        let mut next_id = base;
        let mut inputs: HashMap<Task, Vec<IdRun>> = HashMap::new();
        let mut outputs: HashMap<Task, Vec<OutputRange>> = HashMap::new();
        for e in &self.graph.edges {
            let (src, dst) = (
                &self.graph.vertices[e.source],
                &self.graph.vertices[e.target],
            );
            for i in 0..src.parallelism {
                if !tasks.contains(&(src.id, i)) {
                    continue;
                }
                let (first_target, count) = if e.kind == PartitionKind::Forward {
                    (i, 1)
                } else {
                    (0, dst.parallelism)
                };
                let first_channel = next_id + 1;
                for j in first_target..first_target + count {
                    next_id += 1;
                    push_id(inputs.entry((dst.id, j)).or_default(), next_id);
                }
                outputs.entry((src.id, i)).or_default().push(OutputRange {
                    stream_edge: e.stream_edge as u32,
                    kind: e.kind,
                    first_channel,
                    first_target,
                    channels: count,
                });
            }
        }
        // The address table: each TaskManager of the job's slots once.
        let mut tm_index: HashMap<&str, u32> = HashMap::new();
        let mut addresses = Vec::new();
        let slot_table: Vec<u32> = self
            .slots
            .iter()
            .map(|s| {
                *tm_index.entry(s.tm_id.as_str()).or_insert_with(|| {
                    addresses.push(s.data_address.clone());
                    (addresses.len() - 1) as u32
                })
            })
            .collect();
        let checkpointing = self.coordinator.is_some();
        let exactly_once =
            self.settings.checkpointing.mode == eddy_core::settings::CheckpointingMode::ExactlyOnce;
        let mut per_tm: BTreeMap<String, Vec<SubtaskDeployment>> = BTreeMap::new();
        for &(v, s) in tasks {
            let vertex = &self.graph.vertices[v];
            let slot = &self.slots[s as usize];
            let restore_spec = restore.and_then(|cp| {
                cp.task_state(evid((v, s))).map(|state| RestoreSpec {
                    state_dir: self.state_dir_of(cp),
                    checkpoint_id: cp.checkpoint_id,
                    state: state.clone(),
                })
            });
            per_tm
                .entry(slot.tm_id.clone())
                .or_default()
                .push(SubtaskDeployment {
                    vertex: v as u32,
                    subtask: s,
                    parallelism: vertex.parallelism,
                    max_parallelism: vertex.max_parallelism,
                    inputs: inputs.remove(&(v, s)).unwrap_or_default(),
                    outputs: outputs.remove(&(v, s)).unwrap_or_default(),
                    restore: restore_spec,
                });
            let deployments = self.executions.get(&(v, s)).map_or(0, |e| e.deployments) + 1;
            self.executions.insert(
                (v, s),
                Execution {
                    attempt,
                    tm_id: slot.tm_id.clone(),
                    state: ExecutionState::Deploying,
                    records_in: 0,
                    records_out: 0,
                    times: None,
                    ratios: None,
                    deployments,
                    deployed_at: now,
                    cancel_requested: false,
                },
            );
        }
        let empty = DeploymentBatch {
            job: self.spec.clone(),
            job_id: self.job_id,
            attempt,
            exactly_once,
            checkpointing,
            buffer_timeout_ms: self.settings.buffer_timeout_ms,
            restored_checkpoint: restore.map(|c| c.checkpoint_id),
            addresses,
            slots: slot_table,
            tasks: Vec::new(),
        };
        // A message must fit `pekko.framesize`; half of it leaves room for the estimate's
        // framing. Only restore state (inline bytes, file lists) makes a subtask large.
        let budget = self.settings.max_message_bytes / 2;
        let base_size = bincode::serialized_size(&empty).unwrap_or(0) as usize;
        let mut cmds = Vec::new();
        let taskmanagers = per_tm.len();
        for (tm_id, subtasks) in per_tm {
            let mut batch = empty.clone();
            let mut size = base_size;
            for t in subtasks {
                let n = bincode::serialized_size(&t).unwrap_or(0) as usize;
                if !batch.tasks.is_empty() && size + n > budget {
                    let full = std::mem::take(&mut batch.tasks);
                    cmds.push(self.deploy_command(&tm_id, &batch, full));
                    size = base_size;
                }
                size += n;
                batch.tasks.push(t);
            }
            let rest = std::mem::take(&mut batch.tasks);
            cmds.push(self.deploy_command(&tm_id, &batch, rest));
        }
        if let Some(c) = self.coordinator.as_mut() {
            c.tasks_redeployed(tasks.iter().map(|t| evid(*t)));
        }
        tracing::info!(
            "job {}: deployed {} subtasks to {taskmanagers} TaskManagers in {} messages (attempt {attempt})",
            self.job_id,
            tasks.len(),
            cmds.len()
        );
        self.deploying_since = Some(now);
        cmds
    }

    fn deploy_command(
        &self,
        tm_id: &str,
        template: &DeploymentBatch,
        tasks: Vec<SubtaskDeployment>,
    ) -> Command {
        let mut batch = template.clone();
        batch.tasks = tasks;
        Command::Send {
            tm_id: tm_id.to_string(),
            msg: JmMessage::Deploy {
                token: self.token,
                batch: Box::new(batch),
            },
        }
    }

    /// Where the state files of `cp` are: its own `chk-<id>/`, or the directory of the savepoint
    /// (another job's snapshot) this job resumed from.
    fn state_dir_of(&self, cp: &CompletedCheckpoint) -> String {
        if let Some((sp, dir)) = self
            .stop_failed
            .as_ref()
            .and_then(|(s, _)| s.snapshot.as_ref())
        {
            if sp.job_id == cp.job_id && sp.checkpoint_id == cp.checkpoint_id {
                return dir.clone();
            }
        }
        match &self.resumed_from {
            Some((r, dir)) if cp.job_id != self.job_id && r.checkpoint_id == cp.checkpoint_id => {
                dir.clone()
            }
            _ => eddy_recovery::CheckpointStorage::new(
                self.settings.checkpoints_dir.clone().unwrap_or_default(),
                self.job_id,
            )
            .checkpoint_dir(cp.checkpoint_id)
            .to_string_lossy()
            .into_owned(),
        }
    }

    /// Starts this job from a savepoint or another job's retained checkpoint (`-s`): `snapshot`
    /// read from `dir`, mapped onto this job's operators by uid (see
    /// [`eddy_recovery::savepoint::assign_to_graph`]). Before the first deployment.
    pub fn resume_from(
        &mut self,
        snapshot: &CompletedCheckpoint,
        dir: String,
        allow_non_restored_state: bool,
    ) -> Result<(), String> {
        let shapes: Vec<eddy_recovery::savepoint::VertexShape> = self
            .graph
            .vertices
            .iter()
            .map(|v| eddy_recovery::savepoint::VertexShape {
                vertex: v.id as u32,
                operator_uids: v.operator_uids.clone(),
                parallelism: v.parallelism,
                max_parallelism: v.max_parallelism,
            })
            .collect();
        let mapped =
            eddy_recovery::savepoint::assign_to_graph(snapshot, &shapes, allow_non_restored_state)?;
        self.resumed_from = Some((mapped, dir));
        Ok(())
    }

    /// CLAIM mode: this job takes ownership of the snapshot it resumes from ([`Self::resume_from`]).
    pub fn claim_resumed_snapshot(&mut self) {
        self.claimed = self.resumed_from.as_ref().map(|(_, dir)| dir.clone());
    }

    /// A claimed snapshot counts as the oldest of the job's retained checkpoints: once the job
    /// completed `execution.checkpointing.num-retained` checkpoints of its own, it is subsumed.
    fn dispose_claimed_if_subsumed(&mut self) -> Option<Command> {
        let own = self
            .coordinator
            .as_ref()?
            .completed_checkpoints()
            .filter(|c| c.job_id == self.job_id)
            .count();
        if self.claimed.is_none() || own < self.settings.checkpointing.num_retained.max(1) as usize
        {
            return None;
        }
        let dir = self.claimed.take()?;
        tracing::info!(
            "job {}: the claimed snapshot {dir} is subsumed by the job's own checkpoints: deleting it",
            self.job_id
        );
        Some(Command::DisposeClaimed { dir })
    }

    /// The operators of this job, for the metadata of its checkpoints and savepoints.
    fn operator_infos(&self) -> Vec<eddy_recovery::OperatorInfo> {
        self.graph
            .vertices
            .iter()
            .flat_map(|v| {
                v.operator_uids
                    .iter()
                    .map(|uid| eddy_recovery::OperatorInfo {
                        uid: uid.clone(),
                        parallelism: v.parallelism,
                        max_parallelism: v.max_parallelism,
                    })
            })
            .collect()
    }

    /// Triggers a savepoint into the fresh directory `dir` (the shell made it unique); with
    /// `stop` (`Some(drain)`), stop-with-savepoint: a terminating savepoint, after which the
    /// tasks finish and the job ends FINISHED. Returns the savepoint's id.
    pub fn trigger_savepoint(
        &mut self,
        dir: String,
        stop: Option<bool>,
        now: i64,
    ) -> Result<(u64, Vec<Command>), String> {
        if self.status != JobStatus::Running {
            return Err(format!(
                "cannot trigger a savepoint: job {} is {}, not RUNNING",
                self.job_id, self.status
            ));
        }
        if self.stop_with_savepoint.is_some() {
            return Err(format!(
                "cannot trigger a savepoint: job {} is stopping with a savepoint",
                self.job_id
            ));
        }
        let Some(c) = self.coordinator.as_mut() else {
            return Err(format!(
                "cannot trigger a savepoint: job {} runs without checkpointing; allowed: jobs with execution.checkpointing.interval set",
                self.job_id
            ));
        };
        let triggered = match stop {
            Some(drain) => c.trigger_stop_with_savepoint(now as u64, dir, drain),
            None => c.trigger_savepoint(now as u64, dir),
        };
        let (id, out) = triggered.map_err(|e| e.to_string())?;
        if let Some(drain) = stop {
            self.stop_with_savepoint = Some(StopWithSavepoint {
                id,
                drain,
                snapshot: None,
                completed: false,
            });
        }
        Ok((id, self.coordinator_commands(out, now)))
    }

    /// How stop-with-savepoint `id` went (Flink's answer comes when the job terminated):
    /// `None` while the savepoint or the tasks' finishing is in progress, `Some(Ok(()))` once
    /// the job is FINISHED, `Some(Err(why))` when the savepoint failed or the job failed (over)
    /// before every task finished.
    pub fn stop_outcome(&self, id: u64) -> Option<Result<(), String>> {
        if let Some((s, why)) = self.stop_failed.as_ref().filter(|(s, _)| s.id == id) {
            let location = s.snapshot.as_ref().map_or("", |(_, d)| d.as_str());
            return Some(Err(format!(
                "stop-with-savepoint failed: savepoint {id} completed at {location}, but {why}; the job restarted from that savepoint and keeps running"
            )));
        }
        let ours = self.stop_with_savepoint.as_ref().filter(|s| s.id == id);
        if self.status == JobStatus::Finished && ours.is_some_and(|s| s.completed) {
            return Some(Ok(()));
        }
        if self.status.is_globally_terminal() {
            return Some(Err(format!(
                "job {} ended {} before stop-with-savepoint {id} finished it",
                self.job_id, self.status
            )));
        }
        match self.savepoint_outcome(id) {
            Some(Err(why)) => Some(Err(why)),
            _ if ours.is_none() => Some(Err(format!(
                "stop-with-savepoint {id} was abandoned (the job restarted)"
            ))),
            _ => None,
        }
    }

    /// How savepoint `id` went: `None` while in progress, `Some(Ok(()))` when completed,
    /// `Some(Err(why))` when it failed. `Some(Err)` too when it is no longer known.
    pub fn savepoint_outcome(&self, id: u64) -> Option<Result<(), String>> {
        let Some(c) = self.coordinator.as_ref() else {
            return Some(Err("the job has no checkpoint coordinator".into()));
        };
        let entry = c.stats().history.iter().find(|s| s.id == id);
        match entry.map(|s| s.status) {
            Some(eddy_recovery::coordinator::CheckpointStatus::InProgress) => None,
            Some(eddy_recovery::coordinator::CheckpointStatus::Completed) => Some(Ok(())),
            Some(eddy_recovery::coordinator::CheckpointStatus::Failed) => Some(Err(entry
                .and_then(|s| s.failure.clone())
                .unwrap_or_else(|| "failed".into()))),
            None => Some(Err(format!(
                "savepoint {id} is no longer in the checkpoint history"
            ))),
        }
    }

    /// A job recovered by a new leader: the retained checkpoints from the HA store (the newest
    /// readable one is restored on the first deployment) and those that were unreadable.
    pub fn recover_from(
        &mut self,
        mut retained: Vec<CompletedCheckpoint>,
        skipped: Vec<(u64, String)>,
        elected_at: i64,
        now: i64,
    ) {
        self.recovery_started(
            "leader change: recovered by a new leader (detected = its election)".into(),
            elected_at,
            now,
            0,
        );
        for (id, why) in skipped {
            self.push_exception(ExceptionEntry {
                timestamp: now,
                task_name: None,
                taskmanager: None,
                exception: format!(
                    "checkpoint {id} is unreadable, restoring from an older one: {why}"
                ),
            });
        }
        retained.sort_by_key(|c| c.checkpoint_id);
        self.initial_restore = retained.last().cloned();
        tracing::info!(
            "job {}: recovered with retained checkpoints {:?}; restoring from {:?}",
            self.job_id,
            retained.iter().map(|c| c.checkpoint_id).collect::<Vec<_>>(),
            self.initial_restore.as_ref().map(|c| c.checkpoint_id)
        );
        if let Some(c) = self.coordinator.as_mut() {
            // Discards beyond num-retained are left to the next completed checkpoint.
            let _ = c.restore_completed(retained);
        }
    }

    /// This JobManager lost leadership: SUSPENDED (never FAILED), nothing more triggered,
    /// committed or discarded; the tasks are told to cancel. A new leader recovers the job.
    pub fn suspend(&mut self, now: i64) -> Vec<Command> {
        self.pending_restart = None;
        if let Some(c) = self.coordinator.as_mut() {
            let _ = c.shutdown(JobShutdownStatus::Suspended, now as u64);
        }
        let all: BTreeSet<Task> = self.executions.keys().copied().collect();
        let cmds = self.cancel_tasks(&all);
        if self.status.can_transition_to(JobStatus::Suspended) {
            self.transition(JobStatus::Suspended, now);
        }
        cmds
    }

    /// The shell selected the checkpoint to restore from (`None`: start from scratch) and the
    /// checkpoints it had to skip (unreadable), with why.
    pub fn deploy_restarted(
        &mut self,
        restore: Option<CompletedCheckpoint>,
        skipped: Vec<(u64, String)>,
        now: i64,
    ) -> Vec<Command> {
        let Some(p) = self.pending_restart.take() else {
            return Vec::new();
        };
        if matches!(self.status, JobStatus::Cancelling | JobStatus::Failing)
            || self.status.is_globally_terminal()
        {
            return Vec::new();
        }
        for (id, why) in skipped {
            let msg = format!("checkpoint {id} is unreadable, restoring from an older one: {why}");
            tracing::warn!("job {}: {msg}", self.job_id);
            self.push_exception(ExceptionEntry {
                timestamp: now,
                task_name: None,
                taskmanager: None,
                exception: msg,
            });
        }
        let restore = restore.or_else(|| self.resumed_from.as_ref().map(|r| r.0.clone()));
        // A failed stop-with-savepoint whose savepoint completed: its output may be committed,
        // so nothing older than it may be restored.
        let stop_savepoint = self
            .stop_failed
            .as_ref()
            .and_then(|(s, _)| s.snapshot.as_ref())
            .map(|(cp, _)| cp);
        let restore = match (restore, stop_savepoint) {
            (Some(r), Some(sp)) if sp.checkpoint_id > r.checkpoint_id => Some(sp.clone()),
            (None, Some(sp)) => Some(sp.clone()),
            (r, _) => r,
        };
        if let (Some(c), Some(cp)) = (self.coordinator.as_mut(), restore.as_ref()) {
            c.note_restored(cp.checkpoint_id, now as u64);
        }
        let id = restore.as_ref().map(|c| c.checkpoint_id);
        self.recovery_deployed(now, id);
        tracing::info!(
            "job {}: restarting {} subtasks from {}",
            self.job_id,
            p.tasks.len(),
            id.map_or("the beginning".into(), |i| format!("checkpoint {i}"))
        );
        self.deploy(&p.tasks, restore.as_ref(), now)
    }

    fn task_name(&self, t: Task) -> String {
        let v = &self.graph.vertices[t.0];
        format!("{} ({}/{})", v.name, t.1 + 1, v.parallelism)
    }

    fn current(&self, key: &ExecutionKey) -> bool {
        key.job_id == self.job_id
            && self
                .executions
                .get(&(key.vertex, key.subtask))
                .is_some_and(|e| e.attempt == key.attempt)
    }

    pub fn on_task_state(
        &mut self,
        key: ExecutionKey,
        state: ExecutionState,
        error: Option<eddy_runtime::JobError>,
        now: i64,
    ) -> Vec<Command> {
        if !self.current(&key) {
            return Vec::new(); // a report from an older attempt
        }
        let t = (key.vertex, key.subtask);
        let (tm, unasked_cancel) = match self.executions.get_mut(&t) {
            Some(e) if is_terminal(e.state) && e.state != ExecutionState::Deploying => {
                return Vec::new()
            }
            Some(e) => {
                e.state = state;
                (
                    e.tm_id.clone(),
                    state == ExecutionState::Canceled && !e.cancel_requested,
                )
            }
            None => return Vec::new(),
        };
        let mut cmds = Vec::new();
        match state {
            // Canceled by its TaskManager without a request (e.g. it lost its connection to
            // this JobManager and cancelled everything): nothing would ever restart it.
            ExecutionState::Canceled if unasked_cancel => {
                let msg = format!(
                    "{} on TaskManager {tm} was canceled without a request from the JobMaster",
                    self.task_name(t)
                );
                cmds.extend(self.on_failure(msg, Some(t), Some(tm), now));
            }
            // A task of a pending restart that fails while being cancelled (e.g. its consumer
            // is already gone) is a consequence of the restart, not a new failure.
            ExecutionState::Failed
                if self
                    .pending_restart
                    .as_ref()
                    .is_some_and(|p| p.tasks.contains(&t)) => {}
            // A non-recoverable error (e.g. refused at deployment for lack of network buffers:
            // a restart would ask the same TaskManagers for the same buffers): the job fails,
            // decided by the error's type, not its text (not a restart loop).
            ExecutionState::Failed if error.as_ref().is_some_and(|e| !e.is_recoverable()) => {
                let msg = format!(
                    "{}: {}",
                    self.task_name(t),
                    error.map(|e| e.message).unwrap_or_default()
                );
                cmds.extend(self.fail_job(msg, now));
            }
            ExecutionState::Failed => {
                let msg = error
                    .map(|e| e.message)
                    .unwrap_or_else(|| "task failed".into());
                cmds.extend(self.on_failure(msg, Some(t), Some(tm), now));
            }
            ExecutionState::Finished => {
                if let Some(c) = self.coordinator.as_mut() {
                    let out = c.task_finished(evid(t), now as u64);
                    cmds.extend(self.coordinator_commands(out, now));
                }
            }
            _ => {}
        }
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// A TaskManager is gone: every execution on it failed.
    pub fn on_taskmanager_lost(&mut self, tm_id: &str, reason: &str, now: i64) -> Vec<Command> {
        let lost: Vec<Task> = self
            .executions
            .iter()
            .filter(|(_, e)| e.tm_id == tm_id && !is_terminal(e.state))
            .map(|(k, _)| *k)
            .collect();
        // Slots on that TaskManager are gone: the job must move to other slots for a restart.
        let mut cmds = Vec::new();
        for t in &lost {
            if let Some(e) = self.executions.get_mut(t) {
                e.state = ExecutionState::Failed;
            }
        }
        if let Some(&first) = lost.first() {
            cmds.extend(self.on_failure(
                format!("TaskManager {tm_id} lost: {reason}"),
                Some(first),
                Some(tm_id.to_string()),
                now,
            ));
            for &t in &lost[1..] {
                self.join_restart(t, now);
            }
        }
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// Whether the job's slots include one on `tm_id` (so it must be rescheduled on others).
    pub fn uses_taskmanager(&self, tm_id: &str) -> bool {
        self.slots.iter().any(|s| s.tm_id == tm_id)
    }

    /// How many of the job's slots are on `tm_id`.
    pub fn slots_on(&self, tm_id: &str) -> usize {
        self.slots.iter().filter(|s| s.tm_id == tm_id).count()
    }

    /// The TaskManagers holding the job's slots.
    pub fn taskmanagers(&self) -> BTreeSet<String> {
        self.slots.iter().map(|s| s.tm_id.clone()).collect()
    }

    /// New slots were registered: a restart postponed for lack of slots is retried at once.
    pub fn slots_offered(&mut self, now: i64) {
        if let Some(p) = self.pending_restart.as_mut() {
            if p.waiting_since.is_some() && !p.requested {
                p.at = p.at.min(now);
            }
        }
    }

    /// The shell could not restore yet (no slots): try again shortly.
    /// The shell could not restore yet (no slots): try again shortly; after
    /// `slot.request.timeout` the job fails.
    pub fn postpone_restore(&mut self, now: i64, why: &str) -> Vec<Command> {
        let Some(p) = self.pending_restart.as_mut() else {
            return Vec::new();
        };
        p.requested = false;
        p.at = now + 100;
        let since = *p.waiting_since.get_or_insert(now);
        self.reason = Some(why.to_string());
        if now - since <= self.settings.slot_request_timeout_ms {
            return Vec::new();
        }
        let msg = format!(
            "{why}: none within slot.request.timeout ({} ms)",
            self.settings.slot_request_timeout_ms
        );
        self.fail_job(msg, now)
    }

    /// Fails the job for good, whatever the restart strategy says: used when going on would
    /// lose work (e.g. checkpoints are registered but none can be read: restarting empty would
    /// re-emit everything from the beginning).
    pub fn fail_job(&mut self, msg: String, now: i64) -> Vec<Command> {
        if self.status.is_globally_terminal() {
            return Vec::new();
        }
        tracing::error!("job {}: failing: {msg}", self.job_id);
        self.push_exception(ExceptionEntry {
            timestamp: now,
            task_name: None,
            taskmanager: None,
            exception: msg.clone(),
        });
        self.failure = Some(msg);
        self.pending_restart = None;
        if self.status == JobStatus::Created {
            self.transition(JobStatus::Failing, now);
            self.transition(JobStatus::Failed, now);
            self.reason = self.failure.clone();
            let mut cmds = Vec::new();
            if let Some(c) = self.coordinator.as_mut() {
                let out = c.shutdown(JobShutdownStatus::Failed, now as u64);
                cmds.extend(self.coordinator_commands(out, now));
            }
            cmds.push(Command::ReleaseSlots);
            return cmds;
        }
        self.transition(JobStatus::Failing, now);
        let all: BTreeSet<Task> = self.executions.keys().copied().collect();
        let mut cmds = self.cancel_tasks(&all);
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// Replaces the slots on a lost TaskManager with new ones (from the resource manager).
    pub fn replace_slots(&mut self, lost_tm: &str, mut fresh: Vec<SlotRef>) {
        for s in self.slots.iter_mut() {
            if s.tm_id == lost_tm {
                if let Some(n) = fresh.pop() {
                    *s = n;
                }
            }
        }
    }

    fn join_restart(&mut self, t: Task, _now: i64) {
        let set = self.failover.tasks_to_restart(evid(t));
        if let Some(p) = self.pending_restart.as_mut() {
            p.tasks
                .extend(set.into_iter().map(|e| (e.vertex as usize, e.subtask)));
        }
    }

    fn on_failure(
        &mut self,
        msg: String,
        task: Option<Task>,
        tm: Option<String>,
        now: i64,
    ) -> Vec<Command> {
        if let Some(stop) = self.stop_with_savepoint.take() {
            // The stop failed (Flink: the job fails over and keeps running). Once its savepoint
            // completed, sinks may have committed its output: restarts restore from it.
            if stop.completed {
                tracing::warn!(
                    "job {}: stop-with-savepoint {} completed, but a failure came before every task finished ({msg}); the job restarts from that savepoint",
                    self.job_id,
                    stop.id
                );
                self.stop_failed = Some((
                    stop,
                    format!("a failure came before every task finished: {msg}"),
                ));
            }
        }
        let task_name = task.map(|t| self.task_name(t));
        self.push_exception(ExceptionEntry {
            timestamp: now,
            task_name,
            taskmanager: tm,
            exception: msg.clone(),
        });
        if matches!(self.status, JobStatus::Cancelling | JobStatus::Failing)
            || self.status.is_globally_terminal()
        {
            return Vec::new();
        }
        let mut cmds = Vec::new();
        if let Some(c) = self.coordinator.as_mut() {
            let out = match task {
                Some(t) => c.task_failed(evid(t), now as u64),
                None => c.job_restarting(now as u64),
            };
            cmds.extend(self.coordinator_commands(out, now));
        }
        if let (Some(p), Some(t)) = (self.pending_restart.as_ref(), task) {
            if p.tasks.contains(&t) || !p.requested {
                // A concurrent failure joins the pending restart: one attempt.
                self.join_restart(t, now);
                cmds.extend(self.cancel_tasks(&self.pending_tasks()));
                return cmds;
            }
        }
        match self.backoff.on_failure(now as u64) {
            RestartDecision::Fail { reason } => {
                self.failure = Some(format!("{msg} ({reason})"));
                self.pending_restart = None;
                self.transition(JobStatus::Failing, now);
                let all: BTreeSet<Task> = self.executions.keys().copied().collect();
                cmds.extend(self.cancel_tasks(&all));
            }
            RestartDecision::Restart { delay } => {
                let set: BTreeSet<Task> = match task {
                    Some(t) => self
                        .failover
                        .tasks_to_restart(evid(t))
                        .into_iter()
                        .map(|e| (e.vertex as usize, e.subtask))
                        .collect(),
                    None => self.executions.keys().copied().collect(),
                };
                self.restarts += 1;
                let global = set.len() == self.executions.len();
                tracing::info!(
                    "job {}: restarting {} of {} subtasks in {:?} (restart {})",
                    self.job_id,
                    set.len(),
                    self.executions.len(),
                    delay,
                    self.restarts
                );
                if global {
                    self.transition(JobStatus::Restarting, now);
                }
                self.recovery_started(msg.clone(), now, now, delay.as_millis() as i64);
                cmds.extend(self.cancel_tasks(&set));
                self.pending_restart = Some(PendingRestart {
                    tasks: set,
                    at: now + delay.as_millis() as i64,
                    requested: false,
                    waiting_since: None,
                });
            }
        }
        cmds
    }

    fn pending_tasks(&self) -> BTreeSet<Task> {
        self.pending_restart
            .as_ref()
            .map(|p| p.tasks.clone())
            .unwrap_or_default()
    }

    fn cancel_tasks(&mut self, tasks: &BTreeSet<Task>) -> Vec<Command> {
        let mut cmds = Vec::new();
        for t in tasks {
            if let Some(e) = self.executions.get_mut(t) {
                e.cancel_requested = true;
                if !is_terminal(e.state) {
                    cmds.push(Command::Send {
                        tm_id: e.tm_id.clone(),
                        msg: JmMessage::Cancel {
                            token: self.token,
                            key: ExecutionKey {
                                job_id: self.job_id,
                                attempt: e.attempt,
                                vertex: t.0,
                                subtask: t.1,
                            },
                        },
                    });
                }
            }
        }
        cmds
    }

    /// User cancel.
    pub fn cancel(&mut self, now: i64) -> Vec<Command> {
        if self.status.is_globally_terminal() || self.status == JobStatus::Cancelling {
            return Vec::new();
        }
        self.pending_restart = None;
        if self.executions.is_empty() {
            self.transition(JobStatus::Cancelling, now);
            self.transition(JobStatus::Canceled, now);
            return vec![Command::ReleaseSlots];
        }
        self.transition(JobStatus::Cancelling, now);
        let all: BTreeSet<Task> = self.executions.keys().copied().collect();
        let mut cmds = self.cancel_tasks(&all);
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// Moves the job on once its executions allow it.
    fn check_progress(&mut self, now: i64) -> Vec<Command> {
        let all_terminal = self.executions.values().all(|e| is_terminal(e.state));
        let all_running = self
            .executions
            .values()
            .all(|e| matches!(e.state, ExecutionState::Running | ExecutionState::Finished));
        let mut cmds = Vec::new();
        let shutdown = |s: &mut Self, status: JobShutdownStatus, cmds: &mut Vec<Command>| {
            if let Some(c) = s.coordinator.as_mut() {
                let out = c.shutdown(status, now as u64);
                let translated = s.coordinator_commands(out, now);
                cmds.extend(translated);
            }
        };
        match self.status {
            JobStatus::Running | JobStatus::Restarting
                if self.pending_restart.is_none()
                    && self
                        .executions
                        .values()
                        .all(|e| e.state == ExecutionState::Finished) =>
            {
                if self.status == JobStatus::Restarting {
                    self.transition(JobStatus::Running, now);
                }
                self.transition(JobStatus::Finished, now);
                shutdown(self, JobShutdownStatus::Finished, &mut cmds);
                cmds.push(Command::ReleaseSlots);
            }
            JobStatus::Running | JobStatus::Restarting
                if self.pending_restart.is_none() && all_running =>
            {
                self.transition(JobStatus::Running, now);
                self.recovery_running(now);
                if let Some(since) = self.deploying_since.take() {
                    tracing::info!(
                        "job {}: all {} subtasks RUNNING, {} ms after the deployment",
                        self.job_id,
                        self.executions.len(),
                        now - since
                    );
                }
                if let Some(c) = self.coordinator.as_mut() {
                    if !c.is_running() {
                        c.tasks_running(now as u64);
                    }
                }
            }
            JobStatus::Failing if all_terminal => {
                self.reason = self.failure.clone();
                self.transition(JobStatus::Failed, now);
                shutdown(self, JobShutdownStatus::Failed, &mut cmds);
                cmds.push(Command::ReleaseSlots);
            }
            JobStatus::Cancelling if all_terminal => {
                self.transition(JobStatus::Canceled, now);
                shutdown(self, JobShutdownStatus::Canceled, &mut cmds);
                cmds.push(Command::ReleaseSlots);
            }
            _ => {}
        }
        cmds
    }

    // ---------------------------------------------------------------------------------------
    // Checkpoints
    // ---------------------------------------------------------------------------------------

    pub fn on_checkpoint_ack(
        &mut self,
        key: ExecutionKey,
        id: u64,
        state: TaskStateSnapshot,
        now: i64,
    ) -> Vec<Command> {
        if !self.current(&key) {
            return Vec::new();
        }
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        let out = c.ack(
            id,
            ExecutionVertexId::new(key.vertex as u32, key.subtask),
            state,
            now as u64,
        );
        self.coordinator_commands(out, now)
    }

    /// A source's input ended: once every source's did, the final checkpoint is triggered now
    /// rather than at the next interval (crates/eddy-recovery/src/coordinator/end_of_input.rs).
    pub fn on_end_of_data(&mut self, key: ExecutionKey, now: i64) -> Vec<Command> {
        if !self.current(&key) {
            return Vec::new(); // a report from an older attempt
        }
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        c.source_ended(evid((key.vertex, key.subtask)));
        let out = c.tick(now as u64);
        self.coordinator_commands(out, now)
    }

    pub fn on_checkpoint_decline(
        &mut self,
        key: ExecutionKey,
        id: u64,
        reason: DeclineReason,
        now: i64,
    ) -> Vec<Command> {
        if !self.current(&key) {
            return Vec::new();
        }
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        let out = c.decline(
            id,
            ExecutionVertexId::new(key.vertex as u32, key.subtask),
            reason,
            now as u64,
        );
        self.coordinator_commands(out, now)
    }

    pub fn metadata_written(&mut self, id: u64, now: i64) -> Vec<Command> {
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        let out = c.metadata_written(id, now as u64);
        if let Some(stop) = self.stop_with_savepoint.as_mut().filter(|s| s.id == id) {
            // The sinks commit on the notification sent below; then the tasks finish.
            stop.completed = c.stats().history.iter().any(|h| {
                h.id == id && h.status == eddy_recovery::coordinator::CheckpointStatus::Completed
            });
            if stop.completed {
                tracing::info!(
                    "job {}: stop-with-savepoint {id} completed; the tasks finish",
                    self.job_id
                );
            }
        }
        // A checkpoint aborted while its metadata was written is discarded, not completed.
        let completed = c.latest_completed().is_some_and(|l| l.checkpoint_id == id);
        if let Some(l) = c.latest_completed().filter(|l| l.checkpoint_id == id) {
            let duration = l
                .completion_timestamp_ms
                .saturating_sub(l.trigger_timestamp_ms);
            tracing::info!(
                "job {}: completed checkpoint {id} ({} bytes, {duration} ms from trigger)",
                self.job_id,
                l.state_size()
            );
        }
        let mut cmds = self.coordinator_commands(out, now);
        if completed {
            cmds.extend(self.dispose_claimed_if_subsumed());
        }
        cmds
    }

    /// The shell could not reserve checkpoint `id`'s number (HA counter): that trigger fails.
    pub fn checkpoint_trigger_failed(&mut self, id: u64, why: String, now: i64) -> Vec<Command> {
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        let out = c.trigger_failed(id, why, now as u64);
        self.coordinator_commands(out, now)
    }

    pub fn metadata_write_failed(&mut self, id: u64, error: String, now: i64) -> Vec<Command> {
        let Some(c) = self.coordinator.as_mut() else {
            return Vec::new();
        };
        let out = c.metadata_write_failed(id, error, now as u64);
        self.coordinator_commands(out, now)
    }

    /// Incremental RocksDB checkpoints: tells every TaskManager running a task of the job
    /// whether checkpoint `id` is a savepoint, before its trigger (the TaskManagers' uploaders
    /// wait for it, and make a savepoint's keyed state canonical).
    fn announce_checkpoint_kind(&self, id: u64, savepoint: bool, cmds: &mut Vec<Command>) {
        if !(self.spec.config.incremental()
            && self.spec.config.state_backend() == eddy_core::config::StateBackendKind::RocksDb)
        {
            return;
        }
        let tms: std::collections::BTreeSet<&String> = self
            .executions
            .values()
            .filter(|e| !is_terminal(e.state))
            .map(|e| &e.tm_id)
            .collect();
        for tm_id in tms {
            cmds.push(Command::Send {
                tm_id: tm_id.clone(),
                msg: JmMessage::CheckpointKind {
                    token: self.token,
                    job_id: self.job_id,
                    checkpoint_id: id,
                    savepoint,
                },
            });
        }
    }

    /// Turns coordinator commands into shell commands addressed to the current executions.
    fn coordinator_commands(&mut self, out: Vec<eddy_recovery::Command>, now: i64) -> Vec<Command> {
        use eddy_recovery::Command as C;
        let mut cmds = Vec::new();
        let send_all = |jm: &Self,
                        tasks: &[ExecutionVertexId],
                        make: &dyn Fn(ExecutionKey) -> JmMessage,
                        cmds: &mut Vec<Command>| {
            for t in tasks {
                let task = (t.vertex as usize, t.subtask);
                if let Some(e) = jm.executions.get(&task) {
                    if !is_terminal(e.state) {
                        let key = ExecutionKey {
                            job_id: jm.job_id,
                            attempt: e.attempt,
                            vertex: task.0,
                            subtask: task.1,
                        };
                        cmds.push(Command::Send {
                            tm_id: e.tm_id.clone(),
                            msg: make(key),
                        });
                    }
                }
            }
        };
        for c in out {
            match c {
                C::TriggerCheckpoint {
                    id, tasks, target, ..
                } => {
                    cmds.push(Command::ReserveCheckpointId { id });
                    let token = self.token;
                    self.announce_checkpoint_kind(id, target.kind().is_savepoint(), &mut cmds);
                    let stop = match target {
                        eddy_recovery::CheckpointTarget::StopWithSavepoint { drain, .. } => {
                            Some(if drain {
                                StopMode::Drain
                            } else {
                                StopMode::NoDrain
                            })
                        }
                        _ => None,
                    };
                    send_all(
                        self,
                        &tasks,
                        &|key| JmMessage::TriggerCheckpoint {
                            token,
                            key,
                            checkpoint_id: id,
                            stop,
                        },
                        &mut cmds,
                    );
                }
                C::NotifyComplete { id, tasks } => {
                    let token = self.token;
                    send_all(
                        self,
                        &tasks,
                        &|key| JmMessage::NotifyCheckpointComplete {
                            token,
                            key,
                            checkpoint_id: id,
                        },
                        &mut cmds,
                    );
                }
                C::AbortCheckpoint { id, reason, tasks } => {
                    tracing::info!("job {}: checkpoint {id} aborted: {reason:?}", self.job_id);
                    let token = self.token;
                    send_all(
                        self,
                        &tasks,
                        &|key| JmMessage::AbortCheckpoint {
                            token,
                            key,
                            checkpoint_id: id,
                        },
                        &mut cmds,
                    );
                }
                C::WriteMetadataAndComplete {
                    mut metadata,
                    target,
                    ..
                } => {
                    metadata.operators = self.operator_infos();
                    if let (Some(stop), Some(dir)) =
                        (self.stop_with_savepoint.as_mut(), target.savepoint_dir())
                    {
                        if stop.id == metadata.checkpoint_id {
                            stop.snapshot = Some((metadata.clone(), dir.to_string()));
                        }
                    }
                    cmds.push(Command::WriteMetadata {
                        metadata: Box::new(metadata),
                        savepoint_dir: target.savepoint_dir().map(str::to_string),
                    })
                }
                C::DiscardCheckpoint {
                    id, shared_files, ..
                } => cmds.push(Command::DiscardCheckpoint { id, shared_files }),
                C::FailJob { reason } => {
                    let msg = format!("checkpointing failed too often: {reason}");
                    cmds.extend(self.on_failure(msg, None, None, now));
                }
            }
        }
        cmds
    }

    pub fn update_counters(&mut self, key: &ExecutionKey, records_in: u64, records_out: u64) {
        if let Some(e) = self.executions.get_mut(&(key.vertex, key.subtask)) {
            if e.attempt == key.attempt {
                e.records_in = records_in;
                e.records_out = records_out;
            }
        }
    }

    /// A heartbeat's times for `key`: the ratios are over the time since the previous one.
    pub fn update_times(&mut self, key: &ExecutionKey, times: TaskTimes, now: i64) {
        if let Some(e) = self.executions.get_mut(&(key.vertex, key.subtask)) {
            if e.attempt == key.attempt {
                if let Some(r) = e.times.and_then(|(prev, _)| times.ratios_since(&prev)) {
                    e.ratios = Some(r);
                }
                e.times = Some((times, now));
            }
        }
    }

    pub fn details(&self, now: i64) -> JobDetails {
        let vertices = self
            .graph
            .vertices
            .iter()
            .map(|v| {
                let mut tasks: BTreeMap<String, u32> = BTreeMap::new();
                let (mut rin, mut rout) = (0, 0);
                let mut deployments = Vec::new();
                let mut subtasks = Vec::new();
                for s in 0..v.parallelism {
                    match self.executions.get(&(v.id, s)) {
                        Some(e) => {
                            subtasks.push(SubtaskDetails {
                                subtask: s,
                                attempt: e.attempt,
                                state: format!("{:?}", e.state).to_uppercase(),
                                taskmanager: e.tm_id.clone(),
                                records_in: e.records_in,
                                records_out: e.records_out,
                                deployed_at: e.deployed_at,
                                times: e.times.map(|(t, _)| t),
                                backpressure: e.ratios.zip(e.times).map(
                                    |((ratio, idle_ratio, busy_ratio), (_, at))| BackPressure {
                                        ratio,
                                        idle_ratio,
                                        busy_ratio,
                                        at,
                                    },
                                ),
                            });
                            *tasks
                                .entry(format!("{:?}", e.state).to_uppercase())
                                .or_default() += 1;
                            rin += e.records_in;
                            rout += e.records_out;
                            deployments.push(e.deployments);
                        }
                        None => {
                            *tasks.entry("CREATED".into()).or_default() += 1;
                            deployments.push(0);
                        }
                    }
                }
                let status = if tasks.len() == 1 {
                    tasks.keys().next().cloned().unwrap_or_default()
                } else if tasks.contains_key("FAILED") {
                    "FAILED".into()
                } else {
                    "RUNNING".into()
                };
                VertexDetails {
                    id: v.id,
                    name: v.name.clone(),
                    parallelism: v.parallelism,
                    status,
                    records_in: rin,
                    records_out: rout,
                    tasks,
                    subtask_deployments: deployments,
                    subtasks,
                }
            })
            .collect();
        let end = if self.end_time >= 0 {
            self.end_time
        } else {
            now
        };
        let stats = self.coordinator.as_ref().map(|c| c.stats());
        JobDetails {
            job_id: self.job_id.to_string(),
            name: self.spec.name.clone(),
            status: self.status,
            start_time: self.start_time,
            end_time: self.end_time,
            duration_ms: end - self.start_time,
            timestamps: self.timestamps.clone(),
            vertices,
            restarts: self.restarts,
            completed_checkpoints: stats.map_or(0, |s| s.counts.completed),
            failed_checkpoints: stats.map_or(0, |s| s.counts.failed),
            checkpoints: stats.and_then(|s| serde_json::to_value(s).ok()),
            exceptions: self.exceptions.clone(),
            status_reason: self.reason.clone(),
            recoveries: self.recoveries.clone(),
            recovery_durations: self.recovery_durations.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
