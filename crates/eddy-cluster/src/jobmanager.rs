//! The JobManager process's shell: the RPC endpoint TaskManagers connect to, the resource
//! manager's slot bookkeeping, the dispatcher's job table, and one event loop that feeds the
//! JobMaster cores and executes their commands.
//!
//! All decisions live in `jobmaster.rs`; this file owns sockets, threads and the clock. One
//! thread runs the loop, so no job state is ever shared between threads.

use crate::archive::JobArchive;
use crate::ha::{Ha, LeaderAddress};
use crate::jobmaster::{Command, JobMaster, JobMasterSettings};
use crate::peer::Peer;
use crate::rpc::{
    read_message, rpc_limits, validate_registration, FencingToken, JmMessage, TmMessage,
};
use crate::savepoints::{OperationStatus, SavepointMode, SavepointOperations};
use crate::slots::SlotPool;
use crate::standby::StandbyCache;
use crate::status::{JobDetails, JobStatus};
use eddy_coordination::{LeaderSessionId, LeadershipEvent};
use eddy_core::config::Config;
use eddy_core::JobId;
use eddy_recovery::{CheckpointStorage, DeclineReason, VerifyLevel};
use eddy_runtime::data::now_millis;
use eddy_runtime::registry::{JobRegistry, JobSpec};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::BufReader;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A registered TaskManager as the resource manager sees it.
struct TaskManagerEntry {
    conn: Peer<JmMessage>,
    conn_id: u64,
    data_address: String,
    last_heartbeat: i64,
    pid: u32,
    /// When it registered with this JobManager (ms since epoch).
    registered_at: i64,
}

/// How many lost TaskManagers the JobManager remembers for the dashboard and REST.
const LOST_TASKMANAGERS_KEPT: usize = 16;

/// A TaskManager as shown by `eddy cluster status` and REST `/taskmanagers`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TaskManagerInfo {
    pub id: String,
    pub data_address: String,
    pub slots_total: u32,
    pub slots_free: u32,
    pub pid: u32,
    /// When it registered with this JobManager (ms since epoch; 0 if not known).
    #[serde(default)]
    pub registered_at: i64,
    /// The last message (heartbeat or report) received from it (ms since epoch; 0 if not known).
    #[serde(default)]
    pub last_heartbeat: i64,
    /// When this JobManager declared it lost, and why; `None` while registered.
    #[serde(default)]
    pub lost_at: Option<i64>,
    #[serde(default)]
    pub lost_reason: Option<String>,
}

enum Event {
    Connected(u64, Peer<JmMessage>),
    Message(u64, TmMessage),
    Disconnected(u64, String),
    Request(Request),
    Leadership(LeadershipEvent),
    LeaderChanged(Option<(LeaderAddress, u128)>),
}

/// A checkpoint temp file older than this belongs to a writer that is gone.
const STALE_TEMP_FILE_AGE: Duration = Duration::from_secs(600);

/// How long the JobManager loop may stall before it re-confirms its leadership with ZooKeeper.
const STALL_BEFORE_RECHECK: Duration = Duration::from_millis(500);

/// At most this many queued events are handled between two ticks of the loop ...
const MAX_EVENTS_PER_TICK: usize = 4096;
/// ... and for at most this long, so heartbeat timeouts and checkpoint triggers stay on time.
const MAX_BURST_BEFORE_TICK: Duration = Duration::from_millis(20);

/// Whether this JobManager leads, and where the leader's REST API is (for standbys' answers).
#[derive(Clone, Debug, Default)]
pub struct LeaderView {
    pub is_leader: bool,
    pub leader_rest: Option<String>,
    /// This JobManager's own published REST address (never named as leader while standby).
    pub own_rest: Option<String>,
    /// The leader session id (fencing token) while this JobManager leads.
    pub session: Option<u128>,
}

/// This JobManager process's own counters, for `/metrics` (read without asking its loop).
#[derive(Debug, Default)]
pub struct JobManagerCounters {
    /// Times it became the leader (without HA: once, at start).
    pub leadership_granted: AtomicU64,
    /// Times it lost leadership (revoked, or stepped down after a failed confirmation).
    pub leadership_lost: AtomicU64,
    /// Heartbeats received from TaskManagers.
    pub heartbeats_received: AtomicU64,
    /// TaskManagers lost because no heartbeat came within `heartbeat.timeout`.
    pub heartbeat_timeouts: AtomicU64,
}

/// Requests from the dispatcher's clients (CLI, REST, `eddy local`).
pub enum Request {
    Submit(JobSpec, Sender<Result<JobId, String>>),
    Cancel(JobId, Sender<Result<(), String>>),
    Details(JobId, Sender<Result<Option<JobDetails>, String>>),
    List(Sender<Result<Vec<JobDetails>, String>>),
    TaskManagers(Sender<Result<Vec<TaskManagerInfo>, String>>),
    /// The most recently lost TaskManagers, oldest first (at most 16).
    LostTaskManagers(Sender<Result<Vec<TaskManagerInfo>, String>>),
    /// Trigger a savepoint (or stop-with-savepoint) of a job into a directory (`None`:
    /// `state.savepoints.dir`); answers the trigger id.
    TriggerSavepoint {
        job: JobId,
        dir: Option<String>,
        mode: SavepointMode,
        reply: Sender<Result<String, String>>,
    },
    /// The status of a savepoint operation (`None`: unknown trigger id).
    SavepointStatus {
        job: JobId,
        trigger: String,
        reply: Sender<Result<Option<OperationStatus>, String>>,
    },
    Shutdown,
}

/// The handle clients use; cheap to clone.
#[derive(Clone)]
pub struct JobManagerHandle {
    tx: Sender<Event>,
    pub rpc_address: String,
    view: Arc<Mutex<LeaderView>>,
    ha: Option<Arc<Ha>>,
    counters: Arc<JobManagerCounters>,
}

impl JobManagerHandle {
    /// This JobManager process's counters (leadership, heartbeats).
    pub fn counters(&self) -> &JobManagerCounters {
        &self.counters
    }

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

    /// TaskManagers this JobManager lost recently (at most 16, oldest first), with when and why.
    pub fn lost_taskmanagers(&self) -> Result<Vec<TaskManagerInfo>, String> {
        self.ask(Request::LostTaskManagers)?
    }

    /// Triggers a savepoint or stop-with-savepoint; returns the trigger id.
    pub fn trigger_savepoint(
        &self,
        job: JobId,
        dir: Option<String>,
        mode: SavepointMode,
    ) -> Result<String, String> {
        self.ask(|reply| Request::TriggerSavepoint {
            job,
            dir,
            mode,
            reply,
        })?
    }

    /// The status of savepoint operation `trigger` of `job` (`None`: unknown trigger id).
    pub fn savepoint_status(
        &self,
        job: JobId,
        trigger: String,
    ) -> Result<Option<OperationStatus>, String> {
        self.ask(|reply| Request::SavepointStatus {
            job,
            trigger,
            reply,
        })?
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
    eddy_recovery::storage::s3::configure_from(&config);
    let listener = TcpListener::bind((bind_host, rpc_port))
        .map_err(|e| format!("cannot bind the JobManager RPC port {bind_host}:{rpc_port}: {e}"))?;
    let rpc_address = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let (tx, rx) = channel();
    let accept_tx = tx.clone();
    // A TaskManager that does not read for this long is lost anyway (it cannot heartbeat).
    let write_timeout = config.heartbeat_timeout();
    let limits = rpc_limits(&config);
    let tls = eddy_core::tls::InternalTls::from_config(&config)?;
    std::thread::Builder::new()
        .name("jm-accept".into())
        .spawn(move || {
            for (conn_id, stream) in (1u64..).zip(listener.incoming()) {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_nodelay(true);
                let attach = {
                    let (tx, limits, tls) = (accept_tx.clone(), limits.clone(), tls.clone());
                    move || {
                        // With security.ssl.internal.enabled a peer without the cluster's
                        // certificate fails here: it never gets to send a message.
                        let (read_half, write_half) =
                            match eddy_core::tls::accept(stream, tls.as_ref()) {
                                Ok(halves) => halves,
                                Err(e) => {
                                    tracing::warn!("refused an RPC connection: {e}");
                                    return true;
                                }
                            };
                        attach_connection(conn_id, read_half, write_half, tx, limits, write_timeout)
                    }
                };
                if tls.is_none() {
                    if !attach() {
                        return;
                    }
                } else {
                    // The handshake runs on a thread of its own: a peer that connects and sends
                    // nothing must not hold up the accept loop.
                    let _ =
                        std::thread::Builder::new()
                            .name("jm-rpc-tls".into())
                            .spawn(move || {
                                attach();
                            });
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let view = Arc::new(Mutex::new(LeaderView::default()));
    let counters = Arc::new(JobManagerCounters::default());
    let archive = JobArchive::new(
        config.jobstore_max_capacity(),
        config.jobstore_expiration().as_millis() as i64,
    );
    let mut jm = JobManagerLoop {
        config,
        registry,
        token: None,
        ha: ha.clone(),
        view: view.clone(),
        counters: counters.clone(),
        tms: BTreeMap::new(),
        lost_tms: std::collections::VecDeque::new(),
        slots: SlotPool::default(),
        conns: HashMap::new(),
        unregistered: HashMap::new(),
        jobs: BTreeMap::new(),
        waiting: Vec::new(),
        recovering: BTreeMap::new(),
        unrecorded: BTreeMap::new(),
        archive,
        savepoints: SavepointOperations::default(),
        standby: StandbyCache::default(),
        elected_at: 0,
        iteration_start: std::time::Instant::now(),
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
        counters,
    })
}

struct JobManagerLoop {
    config: Config,
    registry: Arc<JobRegistry>,
    /// The leader session id while leading; `None`: standby (answers nothing but "who leads").
    token: Option<FencingToken>,
    ha: Option<Arc<Ha>>,
    view: Arc<Mutex<LeaderView>>,
    counters: Arc<JobManagerCounters>,
    /// Registered TaskManagers: connection, heartbeat, pid.
    tms: BTreeMap<String, TaskManagerEntry>,
    /// Recently lost TaskManagers, oldest first (at most `LOST_TASKMANAGERS_KEPT`).
    lost_tms: std::collections::VecDeque<TaskManagerInfo>,
    /// Their slots and which job holds each (the resource manager's core).
    slots: SlotPool,
    conns: HashMap<u64, String>,
    unregistered: HashMap<u64, Peer<JmMessage>>,
    jobs: BTreeMap<JobId, JobMaster>,
    /// Jobs waiting for slots, in submission order.
    waiting: Vec<JobId>,
    /// Jobs of the job graph store whose recovery failed for now, retried on `tick`.
    recovering: BTreeMap<JobId, RecoveryRetry>,
    /// Globally terminal jobs whose result is not yet durable, with the clean-up that must wait
    /// for it (checkpoint discards): retried on `tick`.
    unrecorded: BTreeMap<JobId, Vec<Command>>,
    /// Ended jobs: their final details only (the JobMaster is dropped), bounded by
    /// `jobstore.max-capacity` and `jobstore.expiration-time`. With HA it is rebuilt from the
    /// job result store by every new leader, so a client polling for the end of its job learns
    /// it also after a failover.
    archive: JobArchive,
    /// Savepoint operations by trigger id (`savepoints.rs`).
    savepoints: SavepointOperations,
    /// While a standby (with HA): the job graphs and checkpoints of the HA stores, polled, so a
    /// grant of leadership recovers from memory what is still current (`standby.rs`).
    standby: StandbyCache,
    /// When this JobManager last gained leadership (the start of a recovered job's timeline).
    elected_at: i64,
    /// When the current loop iteration began (after its stall check).
    iteration_start: std::time::Instant,
}

/// A job whose recovery is retried.
struct RecoveryRetry {
    tries: u32,
    at: i64,
    graph: Vec<u8>,
}

impl JobManagerLoop {
    fn run(&mut self, rx: Receiver<Event>) {
        loop {
            let event = rx.recv_timeout(Duration::from_millis(10));
            // Measured from the previous iteration's start, so a pause anywhere in it (in the
            // wait, in `handle` or in `tick`) is seen before this event is acted on.
            self.recheck_after_stall(now_millis());
            match event {
                Ok(Event::Request(Request::Shutdown)) => return,
                Ok(ev) => self.handle(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            // The events already queued are handled before the next `tick`, which is
            // O(TaskManagers + tasks): one tick per event made a burst of N events (a
            // checkpoint's acknowledgements, a deployment's state changes) cost N ticks, and
            // under load the queue (and every REST call behind it) fell further behind.
            let burst_start = std::time::Instant::now();
            for _ in 0..MAX_EVENTS_PER_TICK {
                if burst_start.elapsed() > MAX_BURST_BEFORE_TICK {
                    break;
                }
                match rx.try_recv() {
                    Ok(Event::Request(Request::Shutdown)) => return,
                    Ok(ev) => {
                        self.recheck_after_stall(now_millis());
                        self.handle(ev);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            self.tick(now_millis());
        }
    }

    /// A stall far longer than the loop's 10 ms period since this iteration began (the process
    /// was paused, e.g. SIGSTOP, or starved) means the ZooKeeper session may have expired
    /// meanwhile and another JobManager may lead: confirm leadership before acting on anything.
    /// Starts the next stall measurement.
    fn recheck_after_stall(&mut self, now: i64) {
        if self.iteration_start.elapsed() > STALL_BEFORE_RECHECK {
            self.confirm_leadership(now);
        }
        self.iteration_start = std::time::Instant::now();
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
                    // Dropping the peer sends the refusal, then closes the connection.
                    let _ = conn.send(JmMessage::Refused { reason });
                    return;
                }
                let Some(token) = self.token else {
                    // Dropping the peer sends the refusal, then closes the connection.
                    let _ = conn.send(JmMessage::Refused {
                        reason: "this JobManager is not the leader".into(),
                    });
                    return;
                };
                if conn.send(JmMessage::Registered { token }).is_err() {
                    return;
                }
                tracing::info!(
                    "TaskManager {tm_id} registered with {slots} slots (data {data_address})"
                );
                self.conns.insert(id, tm_id.clone());
                self.slots.add_taskmanager(&tm_id, &data_address, slots);
                self.tms.insert(
                    tm_id,
                    TaskManagerEntry {
                        conn,
                        conn_id: id,
                        data_address,
                        last_heartbeat: now,
                        pid,
                        registered_at: now,
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
                    // Never our own address: while leading nobody needs the hint, and our own
                    // stale entry (until our old session expires) names no leader. A deposed
                    // leader resumed after a pause must not send clients back to itself.
                    v.leader_rest = l
                        .map(|(a, _)| a.rest)
                        .filter(|r| Some(r) != v.own_rest.as_ref());
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
        self.elected_at = now;
        self.counters
            .leadership_granted
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = self.view.lock() {
            v.is_leader = true;
            v.session = Some(session);
        }
        let Some(ha) = self.ha.clone() else { return };
        match ha.cleanup_dirty(session) {
            Ok(cleaned) if !cleaned.is_empty() => {
                tracing::info!("cleaned up the HA data of {} ended jobs", cleaned.len())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("could not clean up ended jobs: {e}"),
        }
        match with_retries(|| ha.job_results()) {
            Ok(results) => {
                for (id, result) in results {
                    if let Some(d) = result
                        .get("details")
                        .and_then(|d| serde_json::from_value::<JobDetails>(d.clone()).ok())
                    {
                        self.archive.insert(id, d, now);
                    }
                }
            }
            Err(e) => tracing::warn!("cannot read the archive of ended jobs: {e}"),
        }
        let cache_age = self.standby.age();
        self.standby.take_use(); // what its polls read is not this recovery's
        let graphs = match with_retries(|| self.standby.job_graphs(&ha)) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("cannot read the job graph store: {e}; stepping down");
                self.step_down("job graph store unreadable", now);
                return;
            }
        };
        for (id, bytes) in graphs {
            self.recover_job(id, bytes, now);
        }
        let used = self.standby.take_use();
        tracing::info!(
            "recovered from the standby cache (last refreshed {}): job graphs {} cached, {} read; checkpoint metadata {} cached, {} read",
            cache_age.map_or("never".to_string(), |a| format!("{} ms ago", a.as_millis())),
            used.graphs_cached,
            used.graphs_read,
            used.metadata_cached,
            used.metadata_read
        );
        // A leader keeps no cache: it is the one writing the stores.
        self.standby.clear();
        self.schedule_waiting(now);
    }

    /// Recovers one job of the job graph store. A job with a recorded result is never run
    /// again; anything that cannot be read now (result store, graph, checkpoints) is retried
    /// later, never dropped and never started from nothing.
    fn recover_job(&mut self, id: JobId, bytes: Vec<u8>, now: i64) {
        let Some(ha) = self.ha.clone() else { return };
        let outcome = with_retries(|| ha.has_result(id))
            .map_err(|e| format!("cannot read the job result store: {e}"))
            .and_then(|ended| {
                if ended {
                    return Ok(false); // globally terminal: never run again
                }
                let spec: JobSpec = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("the stored job graph is unreadable: {e}"))?;
                self.create_job_master(id, spec, None, now, true)?;
                Ok(true)
            });
        match outcome {
            Ok(true) => {
                self.recovering.remove(&id);
                tracing::info!("Recovered JobGraph of job {id}")
            }
            Ok(false) => {
                self.recovering.remove(&id);
            }
            Err(e) => {
                let tries = self.recovering.get(&id).map_or(0, |r| r.tries) + 1;
                let delay = (250i64 << tries.min(5)).min(5_000);
                tracing::error!(
                    "job {id}: recovery failed (attempt {tries}), retrying in {delay} ms: {e}"
                );
                self.recovering.insert(
                    id,
                    RecoveryRetry {
                        tries,
                        at: now + delay,
                        graph: bytes,
                    },
                );
            }
        }
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
        self.counters
            .leadership_lost
            .fetch_add(1, Ordering::Relaxed);
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
                            let _ = t.conn.send(msg);
                        }
                    }
                }
            }
        }
        self.token = None;
        if let Ok(mut v) = self.view.lock() {
            v.is_leader = false;
            v.session = None;
            if v.leader_rest == v.own_rest {
                v.leader_rest = None;
            }
        }
        self.jobs.clear();
        self.waiting.clear();
        self.recovering.clear();
        self.unrecorded.clear();
        self.archive.clear();
        // Dropping the peers sends what is queued (the cancels), then closes the connections.
        self.tms.clear();
        self.slots.clear();
        self.conns.clear();
    }

    fn on_tm_message(&mut self, tm_id: &str, msg: TmMessage, now: i64) {
        match msg {
            TmMessage::Register { .. } => {}
            TmMessage::Heartbeat { counters } => {
                self.counters
                    .heartbeats_received
                    .fetch_add(1, Ordering::Relaxed);
                if let (Some(token), Some(t)) = (self.token, self.tms.get(tm_id)) {
                    let _ = t.conn.send(JmMessage::HeartbeatReply { token });
                }
                for c in counters {
                    if let Some(jm) = self.jobs.get_mut(&c.key.job_id) {
                        jm.update_counters(&c.key, c.records_in, c.records_out);
                        if let Some(times) = c.times {
                            jm.update_times(&c.key, times, now);
                        }
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
            TmMessage::EndOfData { key } => {
                if let Some(jm) = self.jobs.get_mut(&key.job_id) {
                    let cmds = jm.on_end_of_data(key, now);
                    self.execute(key.job_id, cmds);
                }
            }
        }
    }

    fn lose_taskmanager(&mut self, tm_id: &str, reason: &str, now: i64) {
        let affects_jobs = self.slots.holds_any_job(tm_id);
        if affects_jobs {
            tracing::warn!("TaskManager {tm_id} lost: {reason}");
        } else {
            tracing::info!("TaskManager {tm_id} gone (it held no job's slots): {reason}");
        }
        let (slots_total, _) = self.slots.counts(tm_id);
        self.slots.remove_taskmanager(tm_id);
        let Some(entry) = self.tms.remove(tm_id) else {
            return;
        };
        self.lost_tms.push_back(TaskManagerInfo {
            id: tm_id.to_string(),
            data_address: entry.data_address.clone(),
            slots_total,
            slots_free: 0,
            pid: entry.pid,
            registered_at: entry.registered_at,
            last_heartbeat: entry.last_heartbeat,
            lost_at: Some(now),
            lost_reason: Some(reason.to_string()),
        });
        while self.lost_tms.len() > LOST_TASKMANAGERS_KEPT {
            self.lost_tms.pop_front();
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
                    None if self.archive.get(&id).is_some() => Err(format!(
                        "job {id} already ended ({})",
                        self.archive
                            .get(&id)
                            .map_or(JobStatus::Finished, |d| d.status)
                    )),
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
                let _ = reply.send(self.leader_only().map(|_| {
                    self.jobs
                        .get(&id)
                        .map(|j| j.details(now))
                        .or_else(|| self.archive.get(&id).cloned())
                }));
            }
            Request::List(reply) => {
                let _ = reply.send(self.leader_only().map(|_| {
                    let mut all: Vec<JobDetails> = self.archive.jobs().cloned().collect();
                    all.extend(self.jobs.values().map(|j| j.details(now)));
                    all
                }));
            }
            Request::TaskManagers(reply) => {
                let _ = reply.send(self.leader_only().map(|_| {
                    self.tms
                        .iter()
                        .map(|(id, t)| {
                            let (slots_total, slots_free) = self.slots.counts(id);
                            TaskManagerInfo {
                                id: id.clone(),
                                data_address: t.data_address.clone(),
                                slots_total,
                                slots_free,
                                pid: t.pid,
                                registered_at: t.registered_at,
                                last_heartbeat: t.last_heartbeat,
                                lost_at: None,
                                lost_reason: None,
                            }
                        })
                        .collect()
                }));
            }
            Request::LostTaskManagers(reply) => {
                let _ = reply.send(
                    self.leader_only()
                        .map(|_| self.lost_tms.iter().cloned().collect()),
                );
            }
            Request::TriggerSavepoint {
                job,
                dir,
                mode,
                reply,
            } => {
                let res = self.trigger_savepoint(job, dir, mode, now);
                let _ = reply.send(res);
            }
            Request::SavepointStatus {
                job,
                trigger,
                reply,
            } => {
                let res = self
                    .leader_only()
                    .map(|_| self.savepoints.status(job, &trigger, &self.jobs));
                let _ = reply.send(res);
            }
            Request::Shutdown => {}
        }
    }

    fn trigger_savepoint(
        &mut self,
        job: JobId,
        dir: Option<String>,
        mode: SavepointMode,
        now: i64,
    ) -> Result<String, String> {
        self.leader_only()?;
        let Some(jm) = self.jobs.get_mut(&job) else {
            return Err(match self.archive.get(&job) {
                Some(d) => format!("job {job} already ended ({})", d.status),
                None => format!("unknown job {job}"),
            });
        };
        let target = crate::savepoints::target_dir(dir.as_deref(), &jm.spec.config, job)?;
        let (id, cmds) = jm.trigger_savepoint(
            target.to_string_lossy().into_owned(),
            match mode {
                SavepointMode::Stop { drain } => Some(drain),
                _ => None,
            },
            now,
        )?;
        tracing::info!(
            "job {job}: savepoint {id} triggered into {}",
            target.display()
        );
        let trigger = self.savepoints.started(job, id, &target, mode);
        self.execute(job, cmds);
        Ok(trigger)
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
        // Resuming (-s): the snapshot must read and map onto the job before it is accepted.
        crate::savepoints::resume_plan(&spec, &built.job_graph)?;
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
        if let (true, Some(dir)) = (recovered, &checkpoints_dir) {
            // Temp files of writers that crashed (an earlier incarnation's uploads).
            match CheckpointStorage::new(dir, id).remove_stale_temp_files(STALE_TEMP_FILE_AGE) {
                Ok(n) if n > 0 => tracing::info!("job {id}: removed {n} stale temp files"),
                Ok(_) => {}
                Err(e) => tracing::warn!("job {id}: cannot remove stale temp files: {e}"),
            }
        }
        let mut retained = Vec::new();
        let mut skipped = Vec::new();
        let mut registered = Vec::new();
        if let (true, Some(ha)) = (recovered, &self.ha) {
            // A read error here is never "no checkpoints": it is retried (by the caller).
            let next = with_retries(|| ha.next_checkpoint_id(id))
                .map_err(|e| format!("cannot read the checkpoint id counter: {e}"))?;
            first_checkpoint_id = first_checkpoint_id.max(next);
            // Listed from the store now; metadata the standby cache read from the same pointer
            // is not read again.
            let cps = with_retries(|| self.standby.checkpoints(ha, id))
                .map_err(|e| format!("cannot list the registered checkpoints: {e}"))?;
            for (cid, _) in &cps.registered {
                first_checkpoint_id = first_checkpoint_id.max(cid + 1);
            }
            (registered, retained, skipped) = (cps.registered, cps.retained, cps.skipped);
        }
        let settings = JobMasterSettings {
            slot_request_timeout_ms: spec.config.slot_request_timeout().as_millis() as i64,
            buffer_timeout_ms: spec.config.buffer_timeout().as_millis() as u64,
            restart: spec.config.effective_restart_strategy(),
            failover: spec.config.failover_strategy(),
            checkpointing,
            checkpoints_dir,
            first_checkpoint_id,
            first_attempt: (eddy_core::ids::random_u128() as u64) & !0xFFFF_FFFF,
            deploy_timeout_ms: self.config.heartbeat_timeout().as_millis() as i64,
            exception_history_size: self.config.exception_history_size(),
            max_message_bytes: self.config.rpc_frame_size() as usize,
        };
        let resume = match crate::savepoints::resume_plan(&spec, &built.job_graph) {
            Ok(r) => r,
            // A recovered job with checkpoints of its own no longer needs the savepoint it
            // started from (the user may have disposed of it, as NO_CLAIM allows).
            Err(e)
                if recovered
                    && (!retained.is_empty()
                        || settings.checkpoints_dir.as_ref().is_some_and(|d| {
                            CheckpointStorage::new(d, id)
                                .list_retained()
                                .is_ok_and(|l| !l.is_empty())
                        })) =>
            {
                tracing::warn!("job {id}: restoring from its own checkpoints; the savepoint it started from is unusable: {e}");
                None
            }
            Err(e) => return Err(e),
        };
        let mut jm = JobMaster::new(id, spec, built.job_graph, token, settings, now)?;
        if let Some((dir, snapshot, allow)) = resume {
            jm.resume_from(&snapshot, dir, allow)?;
            if jm.spec.config.claims_restored_snapshot() {
                jm.claim_resumed_snapshot();
            }
        }
        if recovered {
            // Checkpoints are registered but none can be read: starting empty would re-run
            // the job from the beginning. Fail it, naming where the checkpoints should be.
            let unreadable = !registered.is_empty() && retained.is_empty();
            jm.recover_from(retained, skipped, self.elected_at, now);
            if unreadable {
                let cmds = jm.fail_job(unreadable_message(&registered), now);
                self.jobs.insert(id, jm);
                self.execute(id, cmds);
                return Ok(());
            }
        }
        self.jobs.insert(id, jm);
        self.waiting.push(id);
        Ok(())
    }

    fn free_slots(&self) -> usize {
        self.slots.free()
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
            let Some(picked) = self.slots.allocate(id, need) else {
                self.waiting.push(id);
                continue;
            };
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
        let Some(fresh) = self.slots.allocate(job, need) else {
            return; // retried when the restart is due
        };
        if let Some(jm) = self.jobs.get_mut(&job) {
            jm.replace_slots(lost_tm, fresh);
        }
    }

    /// Picks the checkpoint to restore from: the newest retained one that is readable, and the
    /// ones skipped and why. Never "nothing" by accident: a store that cannot be read is
    /// [`RestoreProblem::Unavailable`] (retry), and checkpoints that exist but none of which can
    /// be read are [`RestoreProblem::Unreadable`] (the job fails).
    fn select_restore(
        jm: &JobMaster,
        ha: Option<&Ha>,
        hint: Option<u64>,
    ) -> Result<RestoreSelection, RestoreProblem> {
        if let Some(ha) = ha {
            // The completed-checkpoint store is the truth: the newest readable registered one.
            let mut skipped = Vec::new();
            let mut pointers = with_retries(|| ha.checkpoints(jm.job_id)).map_err(|e| {
                RestoreProblem::Unavailable(format!("cannot list the registered checkpoints: {e}"))
            })?;
            pointers.sort();
            for (id, pointer) in pointers.iter().rev() {
                let path = std::path::Path::new(pointer);
                let checked = eddy_recovery::storage::read_metadata(path).and_then(|cp| {
                    let dir = path.parent().unwrap_or(path);
                    eddy_recovery::storage::verify_files(dir, &cp, VerifyLevel::Lengths).map(|_| cp)
                });
                match checked {
                    Ok(cp) => return Ok((Some(cp), skipped)),
                    Err(e) => skipped.push((*id, e.to_string())),
                }
            }
            if !pointers.is_empty() {
                return Err(RestoreProblem::Unreadable(unreadable_message(&pointers)));
            }
            return Ok((None, skipped));
        }
        let Some(dir) = jm.checkpoints_dir() else {
            return Ok((None, Vec::new()));
        };
        let sel = CheckpointStorage::new(dir, jm.job_id)
            .latest_restorable(VerifyLevel::Lengths)
            .map_err(|e| {
                RestoreProblem::Unavailable(format!("cannot list the checkpoints in {dir}: {e}"))
            })?;
        let skipped: Vec<(u64, String)> = sel
            .skipped
            .into_iter()
            .map(|s| (s.id, s.error.to_string()))
            .collect();
        if sel.checkpoint.is_none() && (!skipped.is_empty() || hint.is_some()) {
            return Err(RestoreProblem::Unreadable(format!(
                "checkpoint{} {} of this job completed but none can be read from {dir}{}",
                if hint.is_some() && skipped.is_empty() {
                    ""
                } else {
                    "s"
                },
                hint.map_or_else(
                    || skipped
                        .iter()
                        .map(|(i, _)| i.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    |h| h.to_string()
                ),
                skipped
                    .first()
                    .map(|(_, e)| format!(" ({e})"))
                    .unwrap_or_default()
            )));
        }
        Ok((sel.checkpoint, skipped))
    }

    fn execute(&mut self, job: JobId, cmds: Vec<Command>) {
        let mut cmds = cmds;
        // A job that just ended: its result is recorded (dirty) before any of its clean-up runs,
        // so a JobManager that dies in between leaves a result, and the next leader finishes
        // the clean-up instead of running the job again (Flink's order).
        let ended = self
            .jobs
            .get(&job)
            .is_some_and(|j| j.status().is_globally_terminal());
        if ended && cmds.iter().any(|c| matches!(c, Command::ReleaseSlots)) {
            match self.record_result(job) {
                ResultRecord::Recorded => {}
                ResultRecord::Fenced => return,
                ResultRecord::Failed => {
                    // Keep the checkpoints until the result is durable; free the slots now.
                    let (later, now_cmds): (Vec<Command>, Vec<Command>) = cmds
                        .into_iter()
                        .partition(|c| matches!(c, Command::DiscardCheckpoint { .. }));
                    self.unrecorded.entry(job).or_default().extend(later);
                    cmds = now_cmds
                        .into_iter()
                        .filter(|c| !matches!(c, Command::ReleaseSlots))
                        .collect();
                    self.free_job_slots(job);
                }
            }
        }
        self.execute_commands(job, cmds);
    }

    fn execute_commands(&mut self, job: JobId, cmds: Vec<Command>) {
        let mut queue: VecDeque<Command> = cmds.into();
        while let Some(c) = queue.pop_front() {
            let now = now_millis();
            match c {
                Command::WriteMetadata {
                    metadata,
                    savepoint_dir: Some(dir),
                } => {
                    let Some(jm) = self.jobs.get_mut(&job) else {
                        continue;
                    };
                    let id = metadata.checkpoint_id;
                    let storage = jm.checkpoints_dir().map(|d| CheckpointStorage::new(d, job));
                    let written = match &storage {
                        Some(s) => eddy_recovery::savepoint::finalize_savepoint(
                            &s.checkpoint_dir(id),
                            std::path::Path::new(&dir),
                            &metadata,
                        )
                        .map_err(|e| e.to_string()),
                        None => Err("no checkpoint directory".into()),
                    };
                    let more = match written {
                        Ok(_) => {
                            tracing::info!("job {job}: savepoint {id} written to {dir}");
                            // The task files are linked into the savepoint: chk-<id> goes.
                            if let Some(s) = &storage {
                                if let Err(e) = s.discard(id) {
                                    tracing::warn!("job {job}: cannot remove the staging directory of savepoint {id}: {e}");
                                }
                            }
                            let cancel =
                                self.savepoints.written(job, id, std::path::Path::new(&dir));
                            let mut more = jm.metadata_written(id, now);
                            if cancel {
                                more.extend(jm.cancel(now));
                            }
                            more
                        }
                        Err(e) => {
                            tracing::warn!("job {job}: savepoint {id} failed: {e}");
                            jm.metadata_write_failed(id, e, now)
                        }
                    };
                    queue.extend(more);
                }
                Command::WriteMetadata {
                    metadata,
                    savepoint_dir: None,
                } => {
                    // Paused since this iteration began (the stall check at its top could not
                    // see it): confirm leadership before writing anything.
                    if self.iteration_start.elapsed() > STALL_BEFORE_RECHECK {
                        self.recheck_after_stall(now);
                        if self.token.is_none() {
                            return;
                        }
                    }
                    let Some(jm) = self.jobs.get_mut(&job) else {
                        continue;
                    };
                    let id = metadata.checkpoint_id;
                    // Every task's state is uploaded; `_metadata` not yet written.
                    eddy_core::faultpoint::hit("jm.checkpoint.before-metadata");
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
                            let pointer = (!eddy_recovery::storage::is_s3(&path))
                                .then(|| std::fs::canonicalize(&path).ok())
                                .flatten()
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
                        // A pause can land after the stall check above, even mid-write: only
                        // the fenced registration stops a deposed leader. Its refusal is
                        // definitive (no pointer names this checkpoint), and this leadership
                        // reserved the id alone, so no other JobManager reads or writes
                        // `chk-<id>`: its files (and `_metadata`) go before stepping down, or
                        // they would outlive the job. Shared files (incremental RocksDB) stay:
                        // only the leader's view of the retained checkpoints tells which are
                        // unreferenced, and this one is no longer the leader.
                        eddy_core::faultpoint::hit("jm.checkpoint.refused.before-discard");
                        if let Some(dir) = jm.checkpoints_dir() {
                            match CheckpointStorage::new(dir, job).discard(id) {
                                Ok(()) => tracing::info!(
                                    "job {job}: deleted the files of checkpoint {id}, whose registration was refused"
                                ),
                                Err(e) => tracing::warn!(
                                    "job {job}: cannot delete the files of checkpoint {id}, whose registration was refused: {e}"
                                ),
                            }
                        }
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
                            // The id may repeat under another leader: this trigger fails, and
                            // its barriers (queued right behind) are not sent.
                            queue.retain(|c| !is_trigger_of(c, id));
                            if let Some(jm) = self.jobs.get_mut(&job) {
                                let why = format!("cannot reserve the checkpoint id: {e}");
                                queue.extend(jm.checkpoint_trigger_failed(id, why, now));
                            }
                        }
                    }
                }
                Command::DiscardCheckpoint { id, shared_files } => {
                    // With HA the files go only after the fenced unregister succeeded: a deposed
                    // leader must not delete what the new leader may restore from.
                    match (&self.ha, self.token) {
                        (Some(ha), Some(token)) => {
                            if let Err(e) = with_retries(|| ha.remove_checkpoint(token, job, id)) {
                                tracing::warn!("job {job}: cannot unregister checkpoint {id}, keeping its files: {e}");
                                if e.is_fenced() {
                                    self.step_down(
                                        "a fenced write was refused (another JobManager leads)",
                                        now,
                                    );
                                    return;
                                }
                                continue;
                            }
                        }
                        (Some(_), None) => continue,
                        _ => {}
                    }
                    eddy_core::faultpoint::hit("jm.checkpoint.discard.after-unregister");
                    if let Some(dir) = self.jobs.get(&job).and_then(|j| j.checkpoints_dir()) {
                        let storage = CheckpointStorage::new(dir, job);
                        if let Err(e) = storage.discard(id).and_then(|_| {
                            if !shared_files.is_empty() {
                                eddy_core::faultpoint::hit("jm.checkpoint.discard.before-shared");
                            }
                            storage.discard_shared(&shared_files)
                        }) {
                            tracing::warn!("job {job}: could not discard checkpoint {id}: {e}");
                        }
                    }
                }
                Command::DisposeClaimed { dir } => match crate::savepoints::dispose(&dir) {
                    Ok(p) => tracing::info!(
                        "job {job}: deleted the claimed snapshot {} (CLAIM mode)",
                        p.display()
                    ),
                    Err(e) => tracing::warn!("job {job}: {e}"),
                },
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
                        // Past slot.request.timeout the job fails here: see below.
                        if jm.status().is_globally_terminal() {
                            self.execute(job, more);
                        } else {
                            queue.extend(more);
                        }
                        continue;
                    }
                    let more = match Self::select_restore(jm, self.ha.as_deref(), hint) {
                        Ok((restore, skipped)) => {
                            if restore.as_ref().map(|c| c.checkpoint_id) != hint {
                                tracing::info!("job {job}: restoring from checkpoint {:?} (latest completed: {hint:?})", restore.as_ref().map(|c| c.checkpoint_id));
                            }
                            jm.deploy_restarted(restore, skipped, now)
                        }
                        Err(RestoreProblem::Unavailable(why)) => {
                            tracing::warn!("job {job}: restore postponed: {why}");
                            jm.postpone_restore(now, &why)
                        }
                        Err(RestoreProblem::Unreadable(why)) => jm.fail_job(why, now),
                    };
                    // Failing here ends the job at once (its tasks are terminal already): its
                    // result is recorded before its clean-up runs, as for every other end.
                    if jm.status().is_globally_terminal() {
                        self.execute(job, more);
                        continue;
                    }
                    queue.extend(more);
                }
                Command::Send { tm_id, msg } => {
                    if self.token.is_none() {
                        continue; // a standby sends nothing
                    }
                    // Never blocks: a TaskManager that does not read is disconnected, and its
                    // loss is handled when the reader sees the connection close.
                    let sent = self.tms.get(&tm_id).map(|t| t.conn.send(msg));
                    if !matches!(sent, Some(Ok(()))) {
                        tracing::warn!("could not send to TaskManager {tm_id}: {sent:?}");
                    }
                }
                Command::ReleaseSlots => {
                    if let (Some(ha), Some(token), Some(jm)) =
                        (&self.ha, self.token, self.jobs.get(&job))
                    {
                        // The result is recorded (dirty) and the checkpoints are gone: remove
                        // the job's HA data, then mark the result clean. A failure here is
                        // finished by the next leader (`cleanup_dirty`).
                        if jm.status().is_globally_terminal() {
                            eddy_core::faultpoint::hit("jm.job-result.before-clean");
                            if let Err(e) = ha.clean_up_ended_job(token, job) {
                                tracing::warn!(
                                    "job {job}: cannot clean up its HA data (the next leader will): {e}"
                                );
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
                    self.free_job_slots(job);
                }
            }
        }
    }

    /// Records a job's result as dirty in the job result store (with HA), retrying transient
    /// errors. A fenced refusal makes this JobManager step down.
    fn record_result(&mut self, job: JobId) -> ResultRecord {
        let (Some(ha), Some(token), Some(jm)) = (self.ha.clone(), self.token, self.jobs.get(&job))
        else {
            return ResultRecord::Recorded; // without HA there is no store to record it in
        };
        let now = now_millis();
        let d = jm.details(now);
        let result = serde_json::json!({
            "status": d.status.name(),
            "end_time": d.end_time,
            "restarts": d.restarts,
            "reason": d.status_reason,
            "details": d,
        });
        eddy_core::faultpoint::hit("jm.job-result.before-dirty");
        match with_retries(|| ha.record_dirty_result(token, job, result.clone())) {
            Ok(()) => {
                eddy_core::faultpoint::hit("jm.job-result.after-dirty");
                ResultRecord::Recorded
            }
            Err(e) if e.is_fenced() => {
                self.step_down("a fenced write was refused (another JobManager leads)", now);
                ResultRecord::Fenced
            }
            Err(e) => {
                tracing::error!(
                    "job {job}: cannot record its result in the HA store, keeping its checkpoints and retrying: {e}"
                );
                ResultRecord::Failed
            }
        }
    }

    fn free_job_slots(&mut self, job: JobId) {
        self.slots.release(job);
    }

    /// Retries what could not be done earlier: recovering jobs, recording results.
    fn retry_pending(&mut self, now: i64) {
        let due: Vec<JobId> = self
            .recovering
            .iter()
            .filter(|(_, r)| r.at <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(r) = self.recovering.get(&id) {
                let graph = r.graph.clone();
                self.recover_job(id, graph, now);
            }
        }
        let unrecorded: Vec<JobId> = self.unrecorded.keys().copied().collect();
        for job in unrecorded {
            if self.token.is_none() {
                return;
            }
            match self.record_result(job) {
                ResultRecord::Recorded => {
                    // The discards that waited for the result, then the HA clean-up.
                    let mut cmds = self.unrecorded.remove(&job).unwrap_or_default();
                    cmds.push(Command::ReleaseSlots);
                    self.execute_commands(job, cmds);
                }
                ResultRecord::Fenced => return,
                ResultRecord::Failed => {}
            }
        }
    }

    /// Moves ended jobs whose clean-up is done into the archive (which evicts by its bounds).
    fn archive_ended(&mut self, now: i64) {
        let ended: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(id, j)| {
                j.status().is_globally_terminal() && !self.unrecorded.contains_key(id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ended {
            if let Some(jm) = self.jobs.remove(&id) {
                self.savepoints.job_ending(id, &jm);
                self.archive.insert(id, jm.details(now), now);
            }
        }
    }

    fn tick(&mut self, now: i64) {
        // Paused while handling the event: a deposed leader must not judge heartbeats, retry
        // or trigger anything as if it still led.
        self.recheck_after_stall(now);
        if let (None, Some(ha)) = (self.token, &self.ha) {
            self.standby.maybe_refresh(ha);
        }
        self.retry_pending(now);
        self.archive_ended(now);
        let timeout = self.config.heartbeat_timeout().as_millis() as i64;
        let silent: Vec<String> = self
            .tms
            .iter()
            .filter(|(_, t)| now - t.last_heartbeat > timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.counters
                .heartbeat_timeouts
                .fetch_add(1, Ordering::Relaxed);
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

/// The checkpoint chosen for a restore (`None`: the job never completed one) and the newer
/// ones skipped as unreadable, with why.
type RestoreSelection = (
    Option<eddy_recovery::CompletedCheckpoint>,
    Vec<(u64, String)>,
);

/// Why no checkpoint could be selected for a restore.
#[derive(Debug)]
enum RestoreProblem {
    /// The store could not be read (ZooKeeper unavailable, I/O error): try again later.
    Unavailable(String),
    /// Checkpoints are registered but none can be read: restoring empty would redo the job.
    Unreadable(String),
}

/// One line naming the checkpoints and the directory a JobManager could not read them from.
fn unreadable_message(pointers: &[(u64, String)]) -> String {
    let dirs: std::collections::BTreeSet<String> = pointers
        .iter()
        .filter_map(|(_, p)| {
            let chk = std::path::Path::new(p).parent()?;
            Some(chk.parent().unwrap_or(chk).display().to_string())
        })
        .collect();
    let ids: Vec<String> = pointers.iter().map(|(i, _)| i.to_string()).collect();
    format!(
        "checkpoints {} are registered but none can be read from {} (is the checkpoint directory reachable from this JobManager?); refusing to restart the job from nothing",
        ids.join(", "),
        dirs.into_iter().collect::<Vec<_>>().join(", ")
    )
}

/// Reads from the HA store, retrying transient errors a few times (about 350 ms in all); a
/// fenced refusal is not retried.
fn with_retries<T>(
    mut read: impl FnMut() -> Result<T, eddy_coordination::HaError>,
) -> Result<T, eddy_coordination::HaError> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..3 {
        match read() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_fenced() => return Err(e),
            Err(e) => tracing::debug!("HA store read failed, retrying in {delay:?}: {e}"),
        }
        std::thread::sleep(delay);
        delay *= 2;
    }
    read()
}

/// Whether `c` sends the barrier trigger of checkpoint `id`.
pub fn is_trigger_of(c: &Command, id: u64) -> bool {
    matches!(c, Command::Send { msg: JmMessage::TriggerCheckpoint { checkpoint_id, .. }, .. } if *checkpoint_id == id)
}

/// Whether an ended job's result is durable.
enum ResultRecord {
    Recorded,
    /// Another JobManager leads: this one stepped down.
    Fenced,
    /// Not now (ZooKeeper unreachable): retried; the job's checkpoints are kept meanwhile.
    Failed,
}
/// Starts the writer (a [`Peer`]) and the reader thread of one accepted RPC connection and
/// announces it to the JobManager loop; `false` when the loop is gone.
fn attach_connection(
    conn_id: u64,
    read_half: eddy_core::tls::ConnReader,
    write_half: eddy_core::tls::ConnWriter,
    accept_tx: Sender<Event>,
    limits: eddy_runtime::framing::FrameLimits,
    write_timeout: Duration,
) -> bool {
    if read_half
        .socket()
        .set_read_timeout(Some(limits.socket_read_timeout()))
        .is_err()
    {
        return true;
    }
    let Ok(peer) = Peer::start(write_half, write_timeout, "jm-rpc-out") else {
        return true;
    };
    if accept_tx.send(Event::Connected(conn_id, peer)).is_err() {
        return false;
    }
    let tx = accept_tx;
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
    true
}
