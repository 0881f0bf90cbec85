//! The JobManager process's shell: the RPC endpoint TaskManagers connect to, the resource
//! manager's slot bookkeeping, the dispatcher's job table, and one event loop that feeds the
//! JobMaster cores and executes their commands.
//!
//! All decisions live in `jobmaster.rs`; this file owns sockets, threads and the clock. One
//! thread runs the loop, so no job state is ever shared between threads.

use crate::ha::{Ha, LeaderAddress};
use crate::jobmaster::{Command, JobMaster, JobMasterSettings, SlotRef};
use crate::rpc::{
    read_message, rpc_limits, validate_registration, write_message, FencingToken, JmMessage,
    TmMessage,
};
use crate::status::{JobDetails, JobStatus};
use eddy_coordination::{LeaderSessionId, LeadershipEvent};
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
    Leadership(LeadershipEvent),
    LeaderChanged(Option<(LeaderAddress, u128)>),
}

/// How long the JobManager loop may stall before it re-confirms its leadership with ZooKeeper.
const STALL_BEFORE_RECHECK: Duration = Duration::from_millis(500);

/// Whether this JobManager leads, and where the leader's REST API is (for standbys' answers).
#[derive(Clone, Debug, Default)]
pub struct LeaderView {
    pub is_leader: bool,
    pub leader_rest: Option<String>,
    /// This JobManager's own published REST address (never named as leader while standby).
    pub own_rest: Option<String>,
}

/// Requests from the dispatcher's clients (CLI, REST, `eddy local`).
pub enum Request {
    Submit(JobSpec, Sender<Result<JobId, String>>),
    Cancel(JobId, Sender<Result<(), String>>),
    Details(JobId, Sender<Result<Option<JobDetails>, String>>),
    List(Sender<Result<Vec<JobDetails>, String>>),
    TaskManagers(Sender<Result<Vec<TaskManagerInfo>, String>>),
    Shutdown,
}

/// The handle clients use; cheap to clone.
#[derive(Clone)]
pub struct JobManagerHandle {
    tx: Sender<Event>,
    pub rpc_address: String,
    view: Arc<Mutex<LeaderView>>,
    ha: Option<Arc<Ha>>,
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
        self.ask(|tx| Request::Details(job, tx))?
    }

    pub fn list(&self) -> Result<Vec<JobDetails>, String> {
        self.ask(Request::List)?
    }

    pub fn taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, String> {
        self.ask(Request::TaskManagers)?
    }

    pub fn shutdown(&self) {
        let _ = self.tx.send(Event::Request(Request::Shutdown));
    }

    /// Whether this JobManager currently leads, and the leader's REST address.
    pub fn leader_view(&self) -> LeaderView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Starts acting as leader: at once without HA; with HA, joins the election and publishes
    /// `rest_url` and the RPC address for TaskManagers and clients.
    pub fn campaign(&self, rest_url: &str) -> Result<(), String> {
        if let Ok(mut v) = self.view.lock() {
            v.own_rest = Some(rest_url.to_string());
        }
        let Some(ha) = &self.ha else {
            let _ = self.tx.send(Event::Leadership(LeadershipEvent::Granted {
                session_id: LeaderSessionId(eddy_core::ids::random_u128()),
            }));
            return Ok(());
        };
        let tx = self.tx.clone();
        ha.watch_leader(move |l| {
            let _ = tx.send(Event::LeaderChanged(l));
        })?;
        let tx = self.tx.clone();
        ha.campaign(
            &LeaderAddress {
                rpc: self.rpc_address.clone(),
                rest: rest_url.to_string(),
            },
            move |ev| {
                let _ = tx.send(Event::Leadership(ev));
            },
        )
    }
}

/// Starts a JobManager: binds the RPC port and runs the event loop on its own thread.
/// Starts a JobManager without HA: binds the RPC port, runs the event loop on its own thread and
/// leads at once.
pub fn start(
    config: Config,
    registry: Arc<JobRegistry>,
    bind_host: &str,
    rpc_port: u16,
) -> Result<JobManagerHandle, String> {
    let handle = start_with(config, registry, bind_host, rpc_port, None)?;
    handle.campaign("")?;
    Ok(handle)
}

/// Starts a JobManager that waits for leadership (`campaign`): a standby until granted.
pub fn start_with(
    config: Config,
    registry: Arc<JobRegistry>,
    bind_host: &str,
    rpc_port: u16,
    ha: Option<Arc<Ha>>,
) -> Result<JobManagerHandle, String> {
    let listener = TcpListener::bind((bind_host, rpc_port))
        .map_err(|e| format!("cannot bind the JobManager RPC port {bind_host}:{rpc_port}: {e}"))?;
    let rpc_address = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (tx, rx) = channel();
    let accept_tx = tx.clone();
    let limits = rpc_limits(&config);
    std::thread::Builder::new()
        .name("jm-accept".into())
        .spawn(move || {
            for (conn_id, stream) in (1u64..).zip(listener.incoming()) {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let Ok(read_half) = stream.try_clone() else {
                    continue;
                };
                if read_half
                    .set_read_timeout(Some(limits.socket_read_timeout()))
                    .is_err()
                {
                    continue;
                }
                if accept_tx
                    .send(Event::Connected(conn_id, Arc::new(Mutex::new(stream))))
                    .is_err()
                {
                    return;
                }
                let tx = accept_tx.clone();
                let limits = limits.clone();
                let _ = std::thread::Builder::new()
                    .name("jm-rpc-in".into())
                    .spawn(move || {
                        let mut r = BufReader::new(read_half);
                        loop {
                            match read_message::<TmMessage>(&mut r, &limits) {
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
    let view = Arc::new(Mutex::new(LeaderView::default()));
    let mut jm = JobManagerLoop {
        config,
        registry,
        token: None,
        ha: ha.clone(),
        view: view.clone(),
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
    Ok(JobManagerHandle {
        tx,
        rpc_address,
        view,
        ha,
    })
}

struct JobManagerLoop {
    config: Config,
    registry: Arc<JobRegistry>,
    /// The leader session id while leading; `None`: standby (answers nothing but "who leads").
    token: Option<FencingToken>,
    ha: Option<Arc<Ha>>,
    view: Arc<Mutex<LeaderView>>,
    tms: BTreeMap<String, TaskManagerEntry>,
    conns: HashMap<u64, String>,
    unregistered: HashMap<u64, Arc<Mutex<TcpStream>>>,
    jobs: BTreeMap<JobId, JobMaster>,
    /// Jobs waiting for slots, in submission order.
    waiting: Vec<JobId>,
}

impl JobManagerLoop {
    fn run(&mut self, rx: Receiver<Event>) {
        let mut last = std::time::Instant::now();
        loop {
            let event = rx.recv_timeout(Duration::from_millis(10));
            // A stall far longer than the loop's 10 ms period (the process was paused, e.g.
            // SIGSTOP, or starved) means the ZooKeeper session may have expired meanwhile and
            // another JobManager may lead: confirm leadership before acting on anything.
            if last.elapsed() > STALL_BEFORE_RECHECK {
                self.confirm_leadership(now_millis());
            }
            match event {
                Ok(Event::Request(Request::Shutdown)) => return,
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.tick(now_millis());
            last = std::time::Instant::now();
        }
    }

    /// With HA: asks ZooKeeper who leads; anything but "this JobManager, this session" (or no
    /// answer) makes it step down and join the election again.
    fn confirm_leadership(&mut self, now: i64) {
        let (Some(ha), Some(token)) = (self.ha.clone(), self.token) else {
            return;
        };
        if let Ok(mut v) = self.view.lock() {
            v.is_leader = false; // REST answers as standby while this is checked
        }
        match ha.current_leader() {
            Ok(Some((_, session))) if session == token => {
                if let Ok(mut v) = self.view.lock() {
                    v.is_leader = true;
                }
            }
            other => {
                let why = match other {
                    Ok(Some(_)) => "another JobManager leads now".to_string(),
                    Ok(None) => "no leader is registered".to_string(),
                    Err(e) => format!("ZooKeeper did not confirm the leadership: {e}"),
                };
                self.step_down(&format!("after a stall, {why}"), now);
                ha.rejoin();
            }
        }
    }

    /// Queries are answered by the leader only; a standby names the leader.
    fn leader_only(&self) -> Result<(), String> {
        if self.token.is_some() {
            return Ok(());
        }
        let leader = self
            .view
            .lock()
            .ok()
            .and_then(|v| v.leader_rest.clone())
            .unwrap_or_else(|| "unknown".into());
        Err(format!(
            "this JobManager is a standby; the leader is at {leader}"
        ))
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
                if let Err(reason) = validate_registration(&tm_id, &data_address, slots) {
                    tracing::warn!("refused a TaskManager registration: {reason}");
                    if let Ok(mut c) = conn.lock() {
                        let _ = write_message(&mut *c, &JmMessage::Refused { reason });
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                    return;
                }
                let Some(token) = self.token else {
                    let reply = JmMessage::Refused {
                        reason: "this JobManager is not the leader".into(),
                    };
                    if let Ok(mut c) = conn.lock() {
                        let _ = write_message(&mut *c, &reply);
                        let _ = c.shutdown(std::net::Shutdown::Both);
                    }
                    return;
                };
                let reply = JmMessage::Registered { token };
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
                // New slots: a restart waiting for slots may proceed now.
                for jm in self.jobs.values_mut() {
                    jm.slots_offered(now);
                }
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
            Event::Leadership(LeadershipEvent::Granted { session_id }) => {
                self.gain_leadership(session_id.0, now)
            }
            Event::Leadership(LeadershipEvent::Revoked) => {
                self.step_down("leadership revoked", now)
            }
            Event::LeaderChanged(l) => {
                if let Ok(mut v) = self.view.lock() {
                    // Our own stale entry (until our old session expires) names no leader.
                    let rest = l
                        .map(|(a, _)| a.rest)
                        .filter(|r| v.is_leader || Some(r) != v.own_rest.as_ref());
                    v.leader_rest = rest;
                }
            }
        }
    }

    /// This JobManager leads now: a new fencing token, and every job of the job graph store is
    /// recovered from its latest completed checkpoint (except those with a recorded result).
    fn gain_leadership(&mut self, session: u128, now: i64) {
        tracing::info!(
            "JobManager {} granted leadership (session {session:032x})",
            self.view_rpc()
        );
        self.token = Some(session);
        if let Ok(mut v) = self.view.lock() {
            v.is_leader = true;
        }
        let Some(ha) = self.ha.clone() else { return };
        match ha.cleanup_dirty(session) {
            Ok(cleaned) if !cleaned.is_empty() => {
                tracing::info!("cleaned up the HA data of {} ended jobs", cleaned.len())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not clean up ended jobs: {e}"),
        }
        let graphs = match ha.job_graphs() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("cannot read the job graph store: {e}; stepping down");
                self.step_down("job graph store unreadable", now);
                return;
            }
        };
        for (id, bytes) in graphs {
            if ha.has_result(id).unwrap_or(false) {
                continue; // globally terminal: never run again
            }
            let spec: JobSpec = match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("job {id}: stored job graph is unreadable: {e}");
                    continue;
                }
            };
            match self.create_job_master(id, spec, None, now, true) {
                Ok(()) => tracing::info!("Recovered JobGraph of job {id}"),
                Err(e) => tracing::error!("job {id}: recovery failed: {e}"),
            }
        }
        self.schedule_waiting(now);
    }

    fn view_rpc(&self) -> String {
        self.config.jobmanager_rpc_address()
    }

    /// Stops acting as leader: jobs are SUSPENDED (never FAILED, their HA data kept), tasks are
    /// told to cancel, TaskManagers disconnected so they find the new leader.
    fn step_down(&mut self, why: &str, now: i64) {
        if self.token.is_none() {
            return;
        }
        tracing::warn!(
            "JobManager stepping down: {why}; suspending {} jobs",
            self.jobs.len()
        );
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            if let Some(jm) = self.jobs.get_mut(&id) {
                let cmds = jm.suspend(now);
                // Best effort: the cancel messages still carry the old token.
                for c in cmds {
                    if let Command::Send { tm_id, msg } = c {
                        if let Some(t) = self.tms.get(&tm_id) {
                            if let Ok(mut s) = t.conn.lock() {
                                let _ = write_message(&mut *s, &msg);
                            }
                        }
                    }
                }
            }
        }
        self.token = None;
        if let Ok(mut v) = self.view.lock() {
            v.is_leader = false;
            if v.leader_rest == v.own_rest {
                v.leader_rest = None;
            }
        }
        self.jobs.clear();
        self.waiting.clear();
        for t in self.tms.values() {
            if let Ok(s) = t.conn.lock() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        self.tms.clear();
        self.conns.clear();
    }

    fn on_tm_message(&mut self, tm_id: &str, msg: TmMessage, now: i64) {
        match msg {
            TmMessage::Register { .. } => {}
            TmMessage::Heartbeat { counters } => {
                if let (Some(token), Some(t)) = (self.token, self.tms.get(tm_id)) {
                    if let Ok(mut c) = t.conn.lock() {
                        let _ = write_message(&mut *c, &JmMessage::HeartbeatReply { token });
                    }
                }
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
        let affects_jobs = self
            .tms
            .get(tm_id)
            .is_some_and(|t| t.slots.iter().any(|s| s.is_some()));
        if affects_jobs {
            tracing::warn!("TaskManager {tm_id} lost: {reason}");
        } else {
            tracing::info!("TaskManager {tm_id} gone (it held no job's slots): {reason}");
        }
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
                let _ = reply.send(
                    self.leader_only()
                        .map(|_| self.jobs.get(&id).map(|j| j.details(now))),
                );
            }
            Request::List(reply) => {
                let _ = reply.send(
                    self.leader_only()
                        .map(|_| self.jobs.values().map(|j| j.details(now)).collect()),
                );
            }
            Request::TaskManagers(reply) => {
                let _ = reply.send(self.leader_only().map(|_| {
                    self.tms
                        .iter()
                        .map(|(id, t)| TaskManagerInfo {
                            id: id.clone(),
                            data_address: t.data_address.clone(),
                            slots_total: t.slots.len() as u32,
                            slots_free: t.slots.iter().filter(|s| s.is_none()).count() as u32,
                            pid: t.pid,
                        })
                        .collect()
                }));
            }
            Request::Shutdown => {}
        }
    }

    fn submit(&mut self, mut spec: JobSpec, now: i64) -> Result<JobId, String> {
        let Some(token) = self.token else {
            let leader = self
                .view
                .lock()
                .ok()
                .and_then(|v| v.leader_rest.clone())
                .unwrap_or_else(|| "unknown".into());
            return Err(format!(
                "this JobManager is a standby; the leader is at {leader}"
            ));
        };
        let built = self.registry.build(&spec).map_err(|e| e.to_string())?;
        let id = JobId::random();
        // Checkpointing without a directory: a directory under the system temp dir (Flink would
        // keep state in JobManager memory; files keep TaskManager and JobManager symmetric).
        if spec.config.checkpointing().interval.is_some() && spec.config.checkpoints_dir().is_none()
        {
            let dir = std::env::temp_dir().join("eddy-checkpoints");
            tracing::info!(
                "execution.checkpointing.dir is not set: checkpoints go to {}",
                dir.display()
            );
            spec.config
                .set("execution.checkpointing.dir", &dir.to_string_lossy());
        }
        // With HA the job graph is durable before the submission is acknowledged.
        if let Some(ha) = &self.ha {
            let bytes = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
            ha.put_job_graph(token, id, bytes)
                .map_err(|e| format!("cannot persist the job graph: {e}"))?;
        }
        tracing::info!(
            "submitting job {} ({id}) with parallelism {}",
            spec.name,
            spec.parallelism
        );
        self.create_job_master(id, spec, Some(built), now, false)?;
        self.schedule_waiting(now);
        Ok(id)
    }

    /// Creates the JobMaster of a submitted or recovered job and queues it for slots. A
    /// recovered job restores from the newest readable checkpoint of the completed-checkpoint
    /// store, and its checkpoint ids continue above every id used so far.
    fn create_job_master(
        &mut self,
        id: JobId,
        spec: JobSpec,
        built: Option<eddy_runtime::registry::BuiltJob>,
        now: i64,
        recovered: bool,
    ) -> Result<(), String> {
        let token = self.token.ok_or("not the leader")?;
        // A submitted job was built (validated) already; a recovered one is built here.
        let built = match built {
            Some(b) => b,
            None => self.registry.build(&spec).map_err(|e| e.to_string())?,
        };
        let checkpointing = spec.config.checkpointing();
        let checkpoints_dir = spec
            .config
            .checkpoints_dir()
            .map(|d| d.to_string_lossy().into_owned());
        let mut first_checkpoint_id = match &checkpoints_dir {
            Some(dir) => CheckpointStorage::new(dir, id)
                .highest_checkpoint_id()
                .map_err(|e| e.to_string())?
                .map_or(1, |h| h + 1),
            None => 1,
        };
        let mut retained = Vec::new();
        let mut skipped = Vec::new();
        if let (true, Some(ha)) = (recovered, &self.ha) {
            first_checkpoint_id =
                first_checkpoint_id.max(ha.next_checkpoint_id(id).map_err(|e| e.to_string())?);
            for (cid, pointer) in ha.checkpoints(id).map_err(|e| e.to_string())? {
                first_checkpoint_id = first_checkpoint_id.max(cid + 1);
                match eddy_recovery::storage::read_metadata(std::path::Path::new(&pointer)) {
                    Ok(cp) => retained.push(cp),
                    Err(e) => skipped.push((cid, e.to_string())),
                }
            }
        }
        let settings = JobMasterSettings {
            slot_request_timeout_ms: spec.config.slot_request_timeout().as_millis() as i64,
            buffer_timeout_ms: spec.config.buffer_timeout().as_millis() as u64,
            restart: spec.config.effective_restart_strategy(),
            failover: spec.config.failover_strategy(),
            checkpointing,
            checkpoints_dir,
            first_checkpoint_id,
        };
        let mut jm = JobMaster::new(id, spec, built.job_graph, token, settings, now)?;
        if recovered {
            jm.recover_from(retained, skipped, now);
        }
        self.jobs.insert(id, jm);
        self.waiting.push(id);
        Ok(())
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
        ha: Option<&Ha>,
    ) -> (
        Option<eddy_recovery::CompletedCheckpoint>,
        Vec<(u64, String)>,
    ) {
        if let Some(ha) = ha {
            // The completed-checkpoint store is the truth: the newest readable registered one.
            let mut skipped = Vec::new();
            let mut pointers = ha.checkpoints(jm.job_id).unwrap_or_default();
            pointers.sort();
            for (id, pointer) in pointers.into_iter().rev() {
                let path = std::path::Path::new(&pointer);
                let checked = eddy_recovery::storage::read_metadata(path).and_then(|cp| {
                    let dir = path.parent().unwrap_or(path);
                    eddy_recovery::storage::verify_files(dir, &cp, VerifyLevel::Lengths).map(|_| cp)
                });
                match checked {
                    Ok(cp) => return (Some(cp), skipped),
                    Err(e) => skipped.push((id, e.to_string())),
                }
            }
            return (None, skipped);
        }
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
                    let written = match jm
                        .checkpoints_dir()
                        .map(|d| CheckpointStorage::new(d, job).write_metadata(&metadata))
                    {
                        Some(Ok(path)) => Ok(path),
                        Some(Err(e)) => Err(e.to_string()),
                        None => Err("no checkpoint directory".into()),
                    };
                    // With HA the checkpoint counts only once its pointer is in the
                    // completed-checkpoint store, written fenced: a deposed leader cannot.
                    let mut fenced = false;
                    let registered = written.and_then(|path| match (&self.ha, self.token) {
                        (Some(ha), Some(token)) => {
                            let pointer = std::fs::canonicalize(&path)
                                .unwrap_or(path)
                                .to_string_lossy()
                                .into_owned();
                            ha.add_checkpoint(token, job, id, pointer).map_err(|e| {
                                fenced = e.is_fenced();
                                format!("cannot register the checkpoint in the HA store: {e}")
                            })
                        }
                        (Some(_), None) => Err("not the leader".into()),
                        _ => Ok(()),
                    });
                    let more = match registered {
                        Ok(()) => jm.metadata_written(id, now),
                        Err(e) => {
                            tracing::warn!("job {job}: checkpoint {id} not completed: {e}");
                            jm.metadata_write_failed(id, e, now)
                        }
                    };
                    if fenced {
                        self.step_down(
                            "a fenced write was refused (another JobManager leads)",
                            now,
                        );
                        return;
                    }
                    queue.extend(more);
                }
                Command::ReserveCheckpointId { id } => {
                    if let (Some(ha), Some(token)) = (&self.ha, self.token) {
                        if let Err(e) = ha.reserve_checkpoint_ids(token, job, id + 1) {
                            tracing::warn!("job {job}: cannot reserve checkpoint id {id}: {e}");
                            if e.is_fenced() {
                                self.step_down(
                                    "a fenced write was refused (another JobManager leads)",
                                    now,
                                );
                                return;
                            }
                        }
                    }
                }
                Command::DiscardCheckpoint { id, shared_files } => {
                    if let (Some(ha), Some(token)) = (&self.ha, self.token) {
                        if let Err(e) = ha.remove_checkpoint(token, job, id) {
                            tracing::warn!("job {job}: cannot unregister checkpoint {id}: {e}");
                        }
                    }
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
                    let (restore, skipped) = Self::select_restore(jm, self.ha.as_deref());
                    if restore.as_ref().map(|c| c.checkpoint_id) != hint {
                        tracing::info!("job {job}: restoring from checkpoint {:?} (latest completed: {hint:?})", restore.as_ref().map(|c| c.checkpoint_id));
                    }
                    let more = jm.deploy_restarted(restore, skipped, now);
                    queue.extend(more);
                }
                Command::Send { tm_id, msg } => {
                    if self.token.is_none() {
                        continue; // a standby sends nothing
                    }
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
                    if let (Some(ha), Some(token), Some(jm)) =
                        (&self.ha, self.token, self.jobs.get(&job))
                    {
                        if jm.status().is_globally_terminal() {
                            let d = jm.details(now);
                            let result = serde_json::json!({"status": d.status.name(), "end_time": d.end_time, "restarts": d.restarts, "reason": d.status_reason});
                            if let Err(e) = ha.finish_job(token, job, result) {
                                tracing::warn!(
                                    "job {job}: cannot record its result in the HA store: {e}"
                                );
                            }
                        }
                    }
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
