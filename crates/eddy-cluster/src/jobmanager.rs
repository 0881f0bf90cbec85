//! The JobManager process's shell: the RPC endpoint TaskManagers connect to, the resource
//! manager's slot bookkeeping, the dispatcher's job table, and one event loop that feeds the
//! JobMaster cores and executes their commands.
//!
//! All decisions live in `jobmaster.rs`; this file owns sockets, threads and the clock. One
//! thread runs the loop, so no job state is ever shared between threads.

use crate::jobmaster::{Command, JobMaster, JobMasterSettings, SlotRef};
use crate::rpc::{read_message, write_message, FencingToken, JmMessage, TmMessage};
use crate::status::{JobDetails, JobStatus};
use eddy_core::config::Config;
use eddy_core::JobId;
use eddy_recovery::{CheckpointStorage, DeclineReason, VerifyLevel};
use eddy_runtime::data::now_millis;
use eddy_runtime::registry::{JobRegistry, JobSpec};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A registered TaskManager as the resource manager sees it.
struct TaskManagerEntry {
    conn: Arc<Mutex<TcpStream>>,
    conn_id: u64,
    data_address: String,
    /// Per slot: the job holding it.
    slots: Vec<Option<JobId>>,
    last_heartbeat: i64,
    pid: u32,
}

/// A TaskManager as shown by `eddy cluster status` and REST `/taskmanagers`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TaskManagerInfo {
    pub id: String,
    pub data_address: String,
    pub slots_total: u32,
    pub slots_free: u32,
    pub pid: u32,
}

enum Event {
    Connected(u64, Arc<Mutex<TcpStream>>),
    Message(u64, TmMessage),
    Disconnected(u64, String),
    Request(Request),
}

/// Requests from the dispatcher's clients (CLI, REST, `eddy local`).
pub enum Request {
    Submit(JobSpec, Sender<Result<JobId, String>>),
    Cancel(JobId, Sender<Result<(), String>>),
    Details(JobId, Sender<Option<JobDetails>>),
    List(Sender<Vec<JobDetails>>),
    TaskManagers(Sender<Vec<TaskManagerInfo>>),
    Shutdown,
}

/// The handle clients use; cheap to clone.
#[derive(Clone)]
pub struct JobManagerHandle {
    tx: Sender<Event>,
    pub rpc_address: String,
}

impl JobManagerHandle {
    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Request) -> Result<T, String> {
        let (tx, rx) = channel();
        self.tx
            .send(Event::Request(make(tx)))
            .map_err(|_| "the JobManager has stopped".to_string())?;
        rx.recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the JobManager did not answer".to_string())
    }

    pub fn submit(&self, spec: JobSpec) -> Result<JobId, String> {
        self.ask(|tx| Request::Submit(spec, tx))?
    }

    pub fn cancel(&self, job: JobId) -> Result<(), String> {
        self.ask(|tx| Request::Cancel(job, tx))?
    }

    pub fn details(&self, job: JobId) -> Result<Option<JobDetails>, String> {
        self.ask(|tx| Request::Details(job, tx))
    }

    pub fn list(&self) -> Result<Vec<JobDetails>, String> {
        self.ask(Request::List)
    }

    pub fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, String> {
        self.ask(Request::TaskManagers)
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Event::Request(Request::Shutdown));
    }
}

/// Starts a JobManager: binds the RPC port and runs the event loop on its own thread.
pub fn start(
    config: Config,
    registry: Arc<JobRegistry>,
    bind_host: &str,
    rpc_port: u16,
) -> Result<JobManagerHandle, String> {
    let listener = TcpListener::bind((bind_host, rpc_port))
        .map_err(|e| format!("cannot bind the JobManager RPC port {bind_host}:{rpc_port}: {e}"))?;
    let rpc_address = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (tx, rx) = channel();
    let accept_tx = tx.clone();
    std::thread::Builder::new()
        .name("jm-accept".into())
        .spawn(move || {
            for (conn_id, stream) in (1u64..).zip(listener.incoming()) {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let Ok(read_half) = stream.try_clone() else {
                    continue;
                };
                if accept_tx
                    .send(Event::Connected(conn_id, Arc::new(Mutex::new(stream))))
                    .is_err()
                {
                    return;
                }
                let tx = accept_tx.clone();
                let _ = std::thread::Builder::new()
                    .name("jm-rpc-in".into())
                    .spawn(move || {
                        let mut r = BufReader::new(read_half);
                        loop {
                            match read_message::<TmMessage>(&mut r) {
                                Ok(m) => {
                                    if tx.send(Event::Message(conn_id, m)).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    let _ = tx.send(Event::Disconnected(conn_id, e.to_string()));
                                    return;
                                }
                            }
                        }
                    });
            }
        })
        .map_err(|e| e.to_string())?;
    let token = eddy_core::ids::random_u128();
    let mut jm = JobManagerLoop {
        config,
        registry,
        token,
        tms: BTreeMap::new(),
        conns: HashMap::new(),
        unregistered: HashMap::new(),
        jobs: BTreeMap::new(),
        waiting: Vec::new(),
    };
    std::thread::Builder::new()
        .name("jobmanager".into())
        .spawn(move || jm.run(rx))
        .map_err(|e| e.to_string())?;
    tracing::info!("JobManager listening for TaskManagers on {rpc_address}");
    Ok(JobManagerHandle { tx, rpc_address })
}

struct JobManagerLoop {
    config: Config,
    registry: Arc<JobRegistry>,
    token: FencingToken,
    tms: BTreeMap<String, TaskManagerEntry>,
    conns: HashMap<u64, String>,
    unregistered: HashMap<u64, Arc<Mutex<TcpStream>>>,
    jobs: BTreeMap<JobId, JobMaster>,
    /// Jobs waiting for slots, in submission order.
    waiting: Vec<JobId>,
}

impl JobManagerLoop {
    fn run(&mut self, rx: Receiver<Event>) {
        loop {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(Event::Request(Request::Shutdown)) => return,
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.tick(now_millis());
        }
    }

    fn handle(&mut self, ev: Event) {
        let now = now_millis();
        match ev {
            Event::Connected(id, conn) => {
                self.unregistered.insert(id, conn);
            }
            Event::Message(
                id,
                TmMessage::Register {
                    tm_id,
                    data_address,
                    slots,
                    pid,
                },
            ) => {
                let Some(conn) = self.unregistered.remove(&id) else {
                    return;
                };
                let reply = JmMessage::Registered { token: self.token };
                if let Ok(mut c) = conn.lock() {
                    let _ = write_message(&mut *c, &reply);
                }
                tracing::info!(
                    "TaskManager {tm_id} registered with {slots} slots (data {data_address})"
                );
                self.conns.insert(id, tm_id.clone());
                self.tms.insert(
                    tm_id,
                    TaskManagerEntry {
                        conn,
                        conn_id: id,
                        data_address,
                        slots: vec![None; slots as usize],
                        last_heartbeat: now,
                        pid,
                    },
                );
            }
            Event::Message(id, msg) => {
                let Some(tm_id) = self.conns.get(&id).cloned() else {
                    return;
                };
                if let Some(tm) = self.tms.get_mut(&tm_id) {
                    tm.last_heartbeat = now;
                }
                self.on_tm_message(&tm_id, msg, now);
            }
            Event::Disconnected(id, reason) => {
                self.unregistered.remove(&id);
                if let Some(tm_id) = self.conns.remove(&id) {
                    if self.tms.get(&tm_id).is_some_and(|t| t.conn_id == id) {
                        self.lose_taskmanager(
                            &tm_id,
                            &format!("connection closed ({reason})"),
                            now,
                        );
                    }
                }
            }
            Event::Request(r) => self.on_request(r, now),
        }
    }

    fn on_tm_message(&mut self, tm_id: &str, msg: TmMessage, now: i64) {
        match msg {
            TmMessage::Register { .. } => {}
            TmMessage::Heartbeat { counters } => {
                for c in counters {
                    if let Some(jm) = self.jobs.get_mut(&c.key.job_id) {
                        jm.update_counters(&c.key, c.records_in, c.records_out);
                    }
                }
            }
            TmMessage::TaskState {
                key,
                state,
                error,
                records_in,
                records_out,
            } => {
                if let Some(jm) = self.jobs.get_mut(&key.job_id) {
                    jm.update_counters(&key, records_in, records_out);
                    let cmds = jm.on_task_state(key, state, error, now);
                    self.execute(key.job_id, cmds);
                }
            }
            TmMessage::CheckpointAck {
                key,
                checkpoint_id,
                state,
            } => {
                if let Some(jm) = self.jobs.get_mut(&key.job_id) {
                    let cmds = jm.on_checkpoint_ack(key, checkpoint_id, state, now);
                    self.execute(key.job_id, cmds);
                }
            }
            TmMessage::CheckpointDecline {
                key,
                checkpoint_id,
                reason,
                counted,
            } => {
                tracing::info!("TaskManager {tm_id} declined checkpoint {checkpoint_id}: {reason}");
                let reason = if counted {
                    DeclineReason::AsyncSnapshotFailed(reason)
                } else {
                    DeclineReason::TaskClosing
                };
                if let Some(jm) = self.jobs.get_mut(&key.job_id) {
                    let cmds = jm.on_checkpoint_decline(key, checkpoint_id, reason, now);
                    self.execute(key.job_id, cmds);
                }
            }
        }
    }

    fn lose_taskmanager(&mut self, tm_id: &str, reason: &str, now: i64) {
        tracing::warn!("TaskManager {tm_id} lost: {reason}");
        if self.tms.remove(tm_id).is_none() {
            return;
        }
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            if let Some(jm) = self.jobs.get_mut(&id) {
                let cmds = jm.on_taskmanager_lost(tm_id, reason, now);
                self.execute(id, cmds);
            }
            self.replace_lost_slots(id, tm_id);
        }
    }

    fn on_request(&mut self, r: Request, now: i64) {
        match r {
            Request::Submit(spec, reply) => {
                let _ = reply.send(self.submit(spec, now));
            }
            Request::Cancel(id, reply) => {
                let res = match self.jobs.get_mut(&id) {
                    None => Err(format!("unknown job {id}")),
                    Some(jm) if jm.status().is_globally_terminal() => {
                        Err(format!("job {id} already ended ({})", jm.status()))
                    }
                    Some(jm) => Ok(jm.cancel(now)),
                };
                match res {
                    Ok(cmds) => {
                        self.execute(id, cmds);
                        let _ = reply.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Request::Details(id, reply) => {
                let _ = reply.send(self.jobs.get(&id).map(|j| j.details(now)));
            }
            Request::List(reply) => {
                let _ = reply.send(self.jobs.values().map(|j| j.details(now)).collect());
            }
            Request::TaskManagers(reply) => {
                let _ = reply.send(
                    self.tms
                        .iter()
                        .map(|(id, t)| TaskManagerInfo {
                            id: id.clone(),
                            data_address: t.data_address.clone(),
                            slots_total: t.slots.len() as u32,
                            slots_free: t.slots.iter().filter(|s| s.is_none()).count() as u32,
                            pid: t.pid,
                        })
                        .collect(),
                );
            }
            Request::Shutdown => {}
        }
    }

    fn submit(&mut self, mut spec: JobSpec, now: i64) -> Result<JobId, String> {
        let built = self.registry.build(&spec).map_err(|e| e.to_string())?;
        let id = JobId::random();
        let checkpointing = spec.config.checkpointing();
        // Checkpointing without a directory: a directory under the system temp dir (Flink would
        // keep state in JobManager memory; files keep TaskManager and JobManager symmetric).
        if checkpointing.interval.is_some() && spec.config.checkpoints_dir().is_none() {
            let dir = std::env::temp_dir().join("eddy-checkpoints");
            tracing::info!(
                "execution.checkpointing.dir is not set: checkpoints go to {}",
                dir.display()
            );
            spec.config
                .set("execution.checkpointing.dir", &dir.to_string_lossy());
        }
        let checkpoints_dir = spec
            .config
            .checkpoints_dir()
            .map(|d| d.to_string_lossy().into_owned());
        // Checkpoint ids never repeat: continue above anything already in the job's directory.
        let first_checkpoint_id = match &checkpoints_dir {
            Some(dir) => CheckpointStorage::new(dir, id)
                .highest_checkpoint_id()
                .map_err(|e| e.to_string())?
                .map_or(1, |h| h + 1),
            None => 1,
        };
        let settings = JobMasterSettings {
            slot_request_timeout_ms: spec.config.slot_request_timeout().as_millis() as i64,
            buffer_timeout_ms: spec.config.buffer_timeout().as_millis() as u64,
            restart: spec.config.effective_restart_strategy(),
            failover: spec.config.failover_strategy(),
            checkpointing,
            checkpoints_dir,
            first_checkpoint_id,
        };
        tracing::info!(
            "submitting job {} ({id}) with parallelism {}",
            spec.name,
            spec.parallelism
        );
        let jm = JobMaster::new(id, spec, built.job_graph, self.token, settings, now)?;
        self.jobs.insert(id, jm);
        self.waiting.push(id);
        self.schedule_waiting(now);
        Ok(id)
    }

    fn free_slots(&self) -> usize {
        self.tms
            .values()
            .map(|t| t.slots.iter().filter(|s| s.is_none()).count())
            .sum()
    }

    /// Hands slots to waiting jobs, spreading each job's slots over TaskManagers round-robin.
    fn schedule_waiting(&mut self, now: i64) {
        let waiting = std::mem::take(&mut self.waiting);
        for id in waiting {
            let Some(need) = self.jobs.get(&id).map(|j| j.slots_needed()) else {
                continue;
            };
            if self
                .jobs
                .get(&id)
                .is_some_and(|j| j.status() != JobStatus::Created)
            {
                continue;
            }
            if self.free_slots() < need {
                self.waiting.push(id);
                continue;
            }
            let mut picked: Vec<SlotRef> = Vec::new();
            while picked.len() < need {
                for (tm_id, tm) in self.tms.iter_mut() {
                    if picked.len() == need {
                        break;
                    }
                    if let Some(slot) = tm.slots.iter_mut().find(|s| s.is_none()) {
                        *slot = Some(id);
                        picked.push(SlotRef {
                            tm_id: tm_id.clone(),
                            data_address: tm.data_address.clone(),
                        });
                    }
                }
            }
            if let Some(jm) = self.jobs.get_mut(&id) {
                let cmds = jm.assign_slots(picked, now);
                self.execute(id, cmds);
            }
        }
    }

    /// Takes free slots for the ones a job had on a lost TaskManager.
    fn replace_lost_slots(&mut self, job: JobId, lost_tm: &str) {
        let Some(jm) = self.jobs.get(&job) else {
            return;
        };
        if !jm.uses_taskmanager(lost_tm) || jm.status().is_globally_terminal() {
            return;
        }
        let need = jm.slots_on(lost_tm);
        if self.free_slots() < need {
            return; // retried when the restart is due
        }
        let mut fresh = Vec::new();
        while fresh.len() < need {
            for (tm_id, tm) in self.tms.iter_mut() {
                if fresh.len() == need {
                    break;
                }
                if let Some(slot) = tm.slots.iter_mut().find(|s| s.is_none()) {
                    *slot = Some(job);
                    fresh.push(SlotRef {
                        tm_id: tm_id.clone(),
                        data_address: tm.data_address.clone(),
                    });
                }
            }
        }
        if let Some(jm) = self.jobs.get_mut(&job) {
            jm.replace_slots(lost_tm, fresh);
        }
    }

    /// Picks the checkpoint to restore from: the newest retained one that is readable; the
    /// ones skipped and why.
    fn select_restore(
        jm: &JobMaster,
    ) -> (
        Option<eddy_recovery::CompletedCheckpoint>,
        Vec<(u64, String)>,
    ) {
        let Some(dir) = jm.checkpoints_dir() else {
            return (None, Vec::new());
        };
        match CheckpointStorage::new(dir, jm.job_id).latest_restorable(VerifyLevel::Lengths) {
            Ok(sel) => (
                sel.checkpoint,
                sel.skipped
                    .into_iter()
                    .map(|s| (s.id, s.error.to_string()))
                    .collect(),
            ),
            Err(e) => (None, vec![(0, e.to_string())]),
        }
    }

    fn execute(&mut self, job: JobId, cmds: Vec<Command>) {
        let mut queue: VecDeque<Command> = cmds.into();
        while let Some(c) = queue.pop_front() {
            let now = now_millis();
            match c {
                Command::WriteMetadata { metadata } => {
                    let Some(jm) = self.jobs.get_mut(&job) else {
                        continue;
                    };
                    let id = metadata.checkpoint_id;
                    let more = match jm
                        .checkpoints_dir()
                        .map(|d| CheckpointStorage::new(d, job).write_metadata(&metadata))
                    {
                        Some(Ok(_)) => jm.metadata_written(id, now),
                        Some(Err(e)) => jm.metadata_write_failed(id, e.to_string(), now),
                        None => jm.metadata_write_failed(id, "no checkpoint directory".into(), now),
                    };
                    queue.extend(more);
                }
                Command::DiscardCheckpoint { id, shared_files } => {
                    if let Some(dir) = self.jobs.get(&job).and_then(|j| j.checkpoints_dir()) {
                        let storage = CheckpointStorage::new(dir, job);
                        if let Err(e) = storage
                            .discard(id)
                            .and_then(|_| storage.discard_shared(&shared_files))
                        {
                            tracing::warn!("job {job}: could not discard checkpoint {id}: {e}");
                        }
                    }
                }
                Command::Restore { tasks: _, hint } => {
                    let lost: Vec<String> = self
                        .jobs
                        .get(&job)
                        .map(|j| {
                            j.taskmanagers()
                                .into_iter()
                                .filter(|t| !self.tms.contains_key(t))
                                .collect()
                        })
                        .unwrap_or_default();
                    for tm in &lost {
                        self.replace_lost_slots(job, tm);
                    }
                    let Some(jm) = self.jobs.get_mut(&job) else {
                        continue;
                    };
                    if jm.taskmanagers().iter().any(|t| !self.tms.contains_key(t)) {
                        let more = jm.postpone_restore(
                            now,
                            "waiting for free slots to replace those of a lost TaskManager",
                        );
                        queue.extend(more);
                        continue;
                    }
                    let (restore, skipped) = Self::select_restore(jm);
                    if restore.as_ref().map(|c| c.checkpoint_id) != hint {
                        tracing::info!("job {job}: restoring from checkpoint {:?} (latest completed: {hint:?})", restore.as_ref().map(|c| c.checkpoint_id));
                    }
                    let more = jm.deploy_restarted(restore, skipped, now);
                    queue.extend(more);
                }
                Command::Send { tm_id, msg } => {
                    let sent = self.tms.get(&tm_id).map(|t| {
                        t.conn
                            .lock()
                            .map(|mut c| write_message(&mut *c, &msg).is_ok())
                            .unwrap_or(false)
                    });
                    if sent != Some(true) {
                        tracing::warn!("could not send to TaskManager {tm_id}");
                    }
                }
                Command::ReleaseSlots => {
                    for tm in self.tms.values_mut() {
                        for s in tm.slots.iter_mut() {
                            if *s == Some(job) {
                                *s = None;
                            }
                        }
                    }
                }
            }
        }
    }

    fn tick(&mut self, now: i64) {
        let timeout = self.config.heartbeat_timeout().as_millis() as i64;
        let silent: Vec<String> = self
            .tms
            .iter()
            .filter(|(_, t)| now - t.last_heartbeat > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.lose_taskmanager(&id, &format!("no heartbeat for {timeout} ms"), now);
        }
        if !self.waiting.is_empty() {
            self.schedule_waiting(now);
        }
        let free = self.free_slots();
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.status().is_globally_terminal())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(jm) = self.jobs.get_mut(&id) {
                let cmds = jm.tick(now, free);
                self.execute(id, cmds);
            }
        }
        self.waiting.retain(|id| {
            self.jobs
                .get(id)
                .is_some_and(|j| j.status() == JobStatus::Created)
        });
    }
}
