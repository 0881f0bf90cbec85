//! The JobMaster core: one per job; schedules subtasks into slots, tracks their executions,
//! and decides what happens on a failure, a cancel or the end of input.
//!
//! Sans-IO: it takes events with the current time (`now`, ms) and returns [`Command`]s for the
//! JobManager shell to execute. It never touches a socket, a thread or the clock.

use crate::rpc::{ExecutionKey, FencingToken, JmMessage};
use crate::status::{ExceptionEntry, JobDetails, JobStatus, VertexDetails};
use eddy_core::JobId;
use eddy_runtime::graph::{JobGraph, PartitionKind};
use eddy_runtime::registry::JobSpec;
use eddy_runtime::task::{ExecutionState, OutputChannel, OutputEdge, TaskDeployment};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One slot offered to a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRef {
    pub tm_id: String,
    pub data_address: String,
}

/// What the shell must do.
#[derive(Debug)]
pub enum Command {
    Send { tm_id: String, msg: JmMessage },
    /// The job no longer needs its slots.
    ReleaseSlots,
}

#[derive(Clone, Debug)]
struct Execution {
    attempt: u64,
    tm_id: String,
    state: ExecutionState,
    records_in: u64,
    records_out: u64,
}

/// Settings the JobMaster needs from the configuration.
#[derive(Clone, Debug)]
pub struct JobMasterSettings {
    pub slot_request_timeout_ms: i64,
    pub buffer_timeout_ms: u64,
    pub exactly_once: bool,
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
    executions: BTreeMap<(usize, u32), Execution>,
    next_attempt: u64,
    exceptions: Vec<ExceptionEntry>,
    reason: Option<String>,
    restarts: u32,
    /// Why the job is failing, kept for the final FAILED status.
    failure: Option<String>,
}

impl JobMaster {
    pub fn new(job_id: JobId, spec: JobSpec, graph: Arc<JobGraph>, token: FencingToken, settings: JobMasterSettings, now: i64) -> Self {
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
            next_attempt: 0,
            exceptions: Vec::new(),
            reason: None,
            restarts: 0,
            failure: None,
        };
        jm.timestamps.insert(JobStatus::Created.name().into(), now);
        jm
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    fn transition(&mut self, to: JobStatus, now: i64) {
        if self.status == to {
            return;
        }
        if !self.status.can_transition_to(to) {
            tracing::error!("job {}: illegal status transition {} -> {} refused", self.job_id, self.status, to);
            return;
        }
        tracing::info!("job {} ({}) switched from {} to {}", self.spec.name, self.job_id, self.status, to);
        self.status = to;
        self.timestamps.insert(to.name().into(), now);
        if to.is_globally_terminal() {
            self.end_time = now;
        }
    }

    /// Slots needed: with slot sharing, the highest vertex parallelism.
    pub fn slots_needed(&self) -> usize {
        self.graph.vertices.iter().map(|v| v.parallelism as usize).max().unwrap_or(0)
    }

    pub fn has_slots(&self) -> bool {
        !self.slots.is_empty()
    }

    /// Still waiting for slots after the request timeout: fail.
    pub fn tick(&mut self, now: i64, free_slots: usize) -> Vec<Command> {
        if self.status == JobStatus::Created && self.slots.is_empty() {
            let waited = now - self.start_time;
            self.reason = Some(format!("waiting for {} slots ({} free)", self.slots_needed(), free_slots));
            if waited > self.settings.slot_request_timeout_ms {
                let msg = format!(
                    "could not acquire the {} slots the job needs within {} ms: only {} free; start more TaskManagers or lower the parallelism",
                    self.slots_needed(),
                    self.settings.slot_request_timeout_ms,
                    free_slots
                );
                self.fail_terminally(msg, None, None, now);
                return vec![Command::ReleaseSlots];
            }
        }
        Vec::new()
    }

    /// The ResourceManager handed over the slots: deploy every subtask.
    pub fn assign_slots(&mut self, slots: Vec<SlotRef>, now: i64) -> Vec<Command> {
        self.slots = slots;
        self.reason = None;
        self.deploy_all(now)
    }

    fn deploy_all(&mut self, now: i64) -> Vec<Command> {
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        // Channel ids: random high bits per deployment so a stale producer can never feed a new
        // consumer.
        let base = (eddy_core::ids::random_u128() as u64) & !0xFFFF_FFFF;
        let mut next_id = base;
        let mut inputs: HashMap<(usize, u32), Vec<u64>> = HashMap::new();
        let mut outputs: HashMap<(usize, u32), Vec<OutputEdge>> = HashMap::new();
        let tm_of = |subtask: u32| &self.slots[subtask as usize];
        for e in &self.graph.edges {
            let (src, dst) = (&self.graph.vertices[e.source], &self.graph.vertices[e.target]);
            for i in 0..src.parallelism {
                let targets: Vec<u32> = if e.kind == PartitionKind::Forward { vec![i] } else { (0..dst.parallelism).collect() };
                let mut channels = Vec::new();
                for j in targets {
                    next_id += 1;
                    inputs.entry((dst.id, j)).or_default().push(next_id);
                    let (p, c) = (tm_of(i), tm_of(j));
                    channels.push(OutputChannel { id: next_id, remote_address: (p.tm_id != c.tm_id).then(|| c.data_address.clone()) });
                }
                outputs.entry((src.id, i)).or_default().push(OutputEdge { stream_edge: e.stream_edge, kind: e.kind, channels });
            }
        }
        let mut cmds = Vec::new();
        for v in self.graph.vertices.iter() {
            for s in 0..v.parallelism {
                let slot = &self.slots[s as usize];
                let d = TaskDeployment {
                    job_id: self.job_id,
                    job_name: self.spec.name.clone(),
                    attempt,
                    vertex: v.id,
                    subtask: s,
                    parallelism: v.parallelism,
                    max_parallelism: v.max_parallelism,
                    inputs: inputs.remove(&(v.id, s)).unwrap_or_default(),
                    outputs: outputs.remove(&(v.id, s)).unwrap_or_default(),
                    exactly_once: self.settings.exactly_once,
                    buffer_timeout_ms: self.settings.buffer_timeout_ms,
                    restore: HashMap::new(),
                    restored_checkpoint: None,
                };
                self.executions.insert(
                    (v.id, s),
                    Execution { attempt, tm_id: slot.tm_id.clone(), state: ExecutionState::Deploying, records_in: 0, records_out: 0 },
                );
                cmds.push(Command::Send {
                    tm_id: slot.tm_id.clone(),
                    msg: JmMessage::Deploy { token: self.token, job: self.spec.clone(), deployment: Box::new(d) },
                });
            }
        }
        self.transition(JobStatus::Running, now);
        cmds
    }

    fn key(&self, vertex: usize, subtask: u32, attempt: u64) -> ExecutionKey {
        ExecutionKey { job_id: self.job_id, attempt, vertex, subtask }
    }

    fn task_name(&self, vertex: usize, subtask: u32) -> String {
        let v = &self.graph.vertices[vertex];
        format!("{} ({}/{})", v.name, subtask + 1, v.parallelism)
    }

    fn is_current(&self, key: &ExecutionKey) -> bool {
        self.executions.get(&(key.vertex, key.subtask)).is_some_and(|e| e.attempt == key.attempt)
    }

    pub fn on_task_state(&mut self, key: ExecutionKey, state: ExecutionState, error: Option<String>, now: i64) -> Vec<Command> {
        if !self.is_current(&key) {
            return Vec::new(); // a report from an older attempt
        }
        let tm = match self.executions.get_mut(&(key.vertex, key.subtask)) {
            Some(e) => {
                e.state = state;
                e.tm_id.clone()
            }
            None => return Vec::new(),
        };
        match state {
            ExecutionState::Failed => {
                let msg = error.unwrap_or_else(|| "task failed".into());
                let name = self.task_name(key.vertex, key.subtask);
                self.on_failure(msg, Some(name), Some(tm), now)
            }
            _ => self.check_progress(now),
        }
    }

    /// A TaskManager is gone: every execution on it failed.
    pub fn on_taskmanager_lost(&mut self, tm_id: &str, reason: &str, now: i64) -> Vec<Command> {
        let lost: Vec<(usize, u32)> = self
            .executions
            .iter()
            .filter(|(_, e)| e.tm_id == tm_id && !is_terminal(e.state))
            .map(|(k, _)| *k)
            .collect();
        if lost.is_empty() {
            return Vec::new();
        }
        for k in &lost {
            if let Some(e) = self.executions.get_mut(k) {
                e.state = ExecutionState::Failed;
            }
        }
        let name = self.task_name(lost[0].0, lost[0].1);
        self.on_failure(format!("TaskManager {tm_id} lost: {reason}"), Some(name), Some(tm_id.to_string()), now)
    }

    fn on_failure(&mut self, msg: String, task: Option<String>, tm: Option<String>, now: i64) -> Vec<Command> {
        self.exceptions.push(ExceptionEntry { timestamp: now, task_name: task, taskmanager: tm, exception: msg.clone() });
        if matches!(self.status, JobStatus::Cancelling | JobStatus::Failing) || self.status.is_globally_terminal() {
            return self.check_progress(now);
        }
        // No restart strategy yet in this path: the job fails (restarts arrive with checkpoints).
        self.failure = Some(msg);
        self.transition(JobStatus::Failing, now);
        let mut cmds = self.cancel_running();
        cmds.extend(self.check_progress(now));
        cmds
    }

    fn fail_terminally(&mut self, msg: String, task: Option<String>, tm: Option<String>, now: i64) {
        self.exceptions.push(ExceptionEntry { timestamp: now, task_name: task, taskmanager: tm, exception: msg.clone() });
        self.failure = Some(msg.clone());
        self.reason = Some(msg);
        if self.status == JobStatus::Created {
            self.transition(JobStatus::Failing, now);
        }
        self.transition(JobStatus::Failed, now);
    }

    fn cancel_running(&mut self) -> Vec<Command> {
        let mut cmds = Vec::new();
        for (&(v, s), e) in self.executions.iter_mut() {
            if !is_terminal(e.state) {
                e.state = ExecutionState::Deploying; // "canceling": awaiting the task's final report
                cmds.push(Command::Send {
                    tm_id: e.tm_id.clone(),
                    msg: JmMessage::Cancel { token: self.token, key: ExecutionKey { job_id: self.job_id, attempt: e.attempt, vertex: v, subtask: s } },
                });
            }
        }
        cmds
    }

    /// User cancel.
    pub fn cancel(&mut self, now: i64) -> Vec<Command> {
        if self.status.is_globally_terminal() || self.status == JobStatus::Cancelling {
            return Vec::new();
        }
        if self.executions.is_empty() {
            if self.status == JobStatus::Created {
                self.transition(JobStatus::Cancelling, now);
            }
            self.transition(JobStatus::Canceled, now);
            return vec![Command::ReleaseSlots];
        }
        self.transition(JobStatus::Cancelling, now);
        let mut cmds = self.cancel_running();
        cmds.extend(self.check_progress(now));
        cmds
    }

    /// Moves the job on once its executions allow it.
    fn check_progress(&mut self, now: i64) -> Vec<Command> {
        let all_terminal = self.executions.values().all(|e| is_terminal(e.state));
        match self.status {
            JobStatus::Running if self.executions.values().all(|e| e.state == ExecutionState::Finished) => {
                self.transition(JobStatus::Finished, now);
                vec![Command::ReleaseSlots]
            }
            JobStatus::Failing if all_terminal => {
                self.reason = self.failure.clone();
                self.transition(JobStatus::Failed, now);
                vec![Command::ReleaseSlots]
            }
            JobStatus::Cancelling if all_terminal => {
                self.transition(JobStatus::Canceled, now);
                vec![Command::ReleaseSlots]
            }
            _ => Vec::new(),
        }
    }

    pub fn update_counters(&mut self, key: &ExecutionKey, records_in: u64, records_out: u64) {
        if let Some(e) = self.executions.get_mut(&(key.vertex, key.subtask)) {
            if e.attempt == key.attempt {
                e.records_in = records_in;
                e.records_out = records_out;
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
                for s in 0..v.parallelism {
                    if let Some(e) = self.executions.get(&(v.id, s)) {
                        *tasks.entry(format!("{:?}", e.state).to_uppercase()).or_default() += 1;
                        rin += e.records_in;
                        rout += e.records_out;
                    } else {
                        *tasks.entry("CREATED".into()).or_default() += 1;
                    }
                }
                let status = if tasks.len() == 1 { tasks.keys().next().cloned().unwrap_or_default() } else if tasks.contains_key("FAILED") { "FAILED".into() } else { "RUNNING".into() };
                VertexDetails { id: v.id, name: v.name.clone(), parallelism: v.parallelism, status, records_in: rin, records_out: rout, tasks }
            })
            .collect();
        let end = if self.end_time >= 0 { self.end_time } else { now };
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
            completed_checkpoints: 0,
            failed_checkpoints: 0,
            exceptions: self.exceptions.clone(),
            status_reason: self.reason.clone(),
        }
    }

    /// The executions' keys on a TaskManager (for counters and heartbeats).
    pub fn current_key(&self, vertex: usize, subtask: u32) -> Option<ExecutionKey> {
        self.executions.get(&(vertex, subtask)).map(|e| self.key(vertex, subtask, e.attempt))
    }
}

fn is_terminal(s: ExecutionState) -> bool {
    matches!(s, ExecutionState::Finished | ExecutionState::Canceled | ExecutionState::Failed)
}
