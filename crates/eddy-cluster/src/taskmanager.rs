//! The TaskManager: registers its slots with the JobManager, runs the subtasks it is given,
//! relays their state changes and checkpoint acknowledgements, and heartbeats progress.
//!
//! Messages from a JobManager whose fencing token is not the one this TaskManager registered
//! with are rejected, and reports of a task go only to the leader that deployed it: a task of a
//! deposed leader that is slow to cancel never reaches the new one. Tasks run on their own
//! threads (see `eddy_runtime::task`); this file only routes messages and never touches
//! operator state. Sending never blocks a task thread: messages go through the connection's
//! bounded queue (`peer.rs`).

use crate::peer::Peer;
use crate::rpc::{
    read_message, rpc_limits, write_message, ExecutionKey, FencingToken, JmMessage, RestoreSpec,
    TaskCounters, TmMessage,
};
use eddy_core::config::Config;
use eddy_core::ids::TaskManagerId;
use eddy_core::JobId;
use eddy_recovery::{CheckpointStorage, OperatorSubtaskState, TaskStateSnapshot};
use eddy_runtime::error::JobError;
use eddy_runtime::framing::FrameLimits;
use eddy_runtime::registry::{BuiltJob, JobRegistry};
use eddy_runtime::snapshot::OperatorSnapshot;
use eddy_runtime::task::chain::ChainSnapshot;
use eddy_runtime::task::channel::TaskControl;
use eddy_runtime::task::network::{frame_limits, NetworkEnvironment};
use eddy_runtime::task::{spawn_task, ExecutionState, TaskDeployment, TaskHandle, TaskListener};
use std::collections::HashMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The registered connection to the leading JobManager: its fencing token and the sending side.
struct Link {
    token: FencingToken,
    peer: Peer<TmMessage>,
}

type Writer = Arc<Mutex<Option<Link>>>;

/// Sends `msg` to the JobManager; `deployed_under`: the token of the leader that deployed the
/// task the message is about — it is dropped when another leader (or none) is connected now.
fn send(w: &Writer, msg: TmMessage, deployed_under: Option<FencingToken>) -> bool {
    let Ok(g) = w.lock() else { return false };
    match g.as_ref() {
        Some(link) if deployed_under.is_none_or(|t| t == link.token) => link.peer.send(msg).is_ok(),
        _ => false,
    }
}

fn key_of(d: &TaskDeployment) -> ExecutionKey {
    ExecutionKey {
        job_id: d.job_id,
        attempt: d.attempt,
        vertex: d.vertex,
        subtask: d.subtask,
    }
}

/// Operator state up to this size goes inline into `_metadata`; larger state into a file.
const INLINE_STATE_BYTES: usize = 4096;

/// One snapshot to upload: the task thread hands it over and goes on processing.
struct Upload {
    key: ExecutionKey,
    deployed_under: FencingToken,
    subtask: u32,
    checkpoint_id: u64,
    storage: Option<CheckpointStorage>,
    snapshot: ChainSnapshot,
}

/// Writes snapshots to checkpoint storage (fsync + atomic rename) off the task threads, then
/// acknowledges them: the asynchronous part of a checkpoint.
fn uploader(writer: Writer) -> Sender<Upload> {
    let (tx, rx) = channel::<Upload>();
    let _ = std::thread::Builder::new()
        .name("tm-uploader".into())
        .spawn(move || {
            for u in rx {
                let msg = match encode_state(&u) {
                    Ok(state) => TmMessage::CheckpointAck {
                        key: u.key,
                        checkpoint_id: u.checkpoint_id,
                        state,
                    },
                    Err(e) => TmMessage::CheckpointDecline {
                        key: u.key,
                        checkpoint_id: u.checkpoint_id,
                        reason: e,
                        counted: true,
                    },
                };
                send(&writer, msg, Some(u.deployed_under));
            }
        });
    tx
}

fn encode_state(u: &Upload) -> Result<TaskStateSnapshot, String> {
    let mut operators = Vec::new();
    for (uid, snap) in &u.snapshot {
        let bytes = bincode::serialize(snap)
            .map_err(|e| format!("cannot encode the state of operator '{uid}': {e}"))?;
        let mut op = OperatorSubtaskState {
            operator_uid: uid.clone(),
            key_groups: None,
            files: Vec::new(),
            inline: Vec::new(),
        };
        match &u.storage {
            Some(storage) if bytes.len() > INLINE_STATE_BYTES => {
                op.files.push(
                    storage
                        .write_state_file(u.checkpoint_id, uid, u.subtask, &bytes)
                        .map_err(|e| e.to_string())?,
                );
            }
            _ => op.inline = bytes,
        }
        operators.push(op);
    }
    Ok(TaskStateSnapshot { operators })
}

/// Reads a subtask's state back from a checkpoint (verifying length and checksum).
fn load_state(
    spec: &RestoreSpec,
    job_id: JobId,
) -> Result<HashMap<String, OperatorSnapshot>, String> {
    let storage = CheckpointStorage::new(&spec.checkpoints_dir, job_id);
    let mut out = HashMap::new();
    for op in &spec.state.operators {
        let mut snap = OperatorSnapshot::default();
        let mut blobs = Vec::new();
        if !op.inline.is_empty() {
            blobs.push(op.inline.clone());
        }
        for f in &op.files {
            blobs.push(
                storage
                    .read_state_file(spec.checkpoint_id, f)
                    .map_err(|e| e.to_string())?,
            );
        }
        for b in blobs {
            let part: OperatorSnapshot = bincode::deserialize(&b).map_err(|e| {
                format!(
                    "corrupt state of operator '{}' in checkpoint {}: {e}",
                    op.operator_uid, spec.checkpoint_id
                )
            })?;
            snap.operator_state.extend(part.operator_state);
            snap.keyed_state.extend(part.keyed_state);
        }
        out.insert(op.operator_uid.clone(), snap);
    }
    Ok(out)
}

/// Relays a task's reports to the JobManager that deployed it.
struct Relay {
    writer: Writer,
    deployed_under: FencingToken,
    uploads: Sender<Upload>,
    storage: Option<CheckpointStorage>,
}

impl TaskListener for Relay {
    fn state_changed(
        &self,
        task: &TaskDeployment,
        state: ExecutionState,
        error: Option<JobError>,
        metrics: &eddy_runtime::task::metrics::TaskMetrics,
    ) {
        if let Some(e) = &error {
            tracing::warn!(
                "task {} {}/{} of job {} failed: {e}",
                task.vertex,
                task.subtask + 1,
                task.parallelism,
                task.job_name
            );
        }
        send(
            &self.writer,
            TmMessage::TaskState {
                key: key_of(task),
                state,
                error: error.map(|e| e.message),
                records_in: metrics.records_in(),
                records_out: metrics.records_out(),
            },
            Some(self.deployed_under),
        );
    }

    fn checkpoint_acknowledged(
        &self,
        task: &TaskDeployment,
        checkpoint_id: u64,
        snapshot: ChainSnapshot,
    ) {
        let upload = Upload {
            key: key_of(task),
            deployed_under: self.deployed_under,
            subtask: task.subtask,
            checkpoint_id,
            storage: self.storage.clone(),
            snapshot,
        };
        if self.uploads.send(upload).is_err() {
            send(
                &self.writer,
                TmMessage::CheckpointDecline {
                    key: key_of(task),
                    checkpoint_id,
                    reason: "the uploader stopped".into(),
                    counted: true,
                },
                Some(self.deployed_under),
            );
        }
    }

    fn checkpoint_declined(&self, task: &TaskDeployment, checkpoint_id: u64, reason: String) {
        send(
            &self.writer,
            TmMessage::CheckpointDecline {
                key: key_of(task),
                checkpoint_id,
                reason,
                counted: false,
            },
            Some(self.deployed_under),
        );
    }
}

struct Shared {
    id: TaskManagerId,
    registry: Arc<JobRegistry>,
    network: Arc<NetworkEnvironment>,
    tasks: Mutex<HashMap<ExecutionKey, TaskHandle>>,
    jobs: Mutex<HashMap<JobId, BuiltJob>>,
    writer: Writer,
    uploads: Mutex<Sender<Upload>>,
    token: Mutex<Option<FencingToken>>,
    stopped: AtomicBool,
    slots: u32,
    /// Bounds on what the JobManager sends (`pekko.framesize`); no message from it for
    /// `heartbeat.timeout`: it is considered lost.
    rpc_limits: FrameLimits,
    /// Mutual TLS for the RPC connection (`security.ssl.internal.enabled`).
    tls: Option<eddy_core::tls::InternalTls>,
}

/// A running TaskManager.
pub struct TaskManagerHandle {
    shared: Arc<Shared>,
}

impl TaskManagerHandle {
    pub fn id(&self) -> &str {
        &self.shared.id.0
    }

    pub fn data_address(&self) -> String {
        self.shared.network.address().to_string()
    }

    /// Cancels every task and stops talking to the JobManager.
    pub fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        cancel_all(&self.shared);
        if let Ok(mut w) = self.shared.writer.lock() {
            if let Some(link) = w.take() {
                link.peer.abort();
            }
        }
    }
}

fn cancel_all(shared: &Shared) {
    if let Ok(tasks) = shared.tasks.lock() {
        for t in tasks.values() {
            t.send(TaskControl::Cancel);
        }
    }
}

/// Starts a TaskManager that registers with the JobManager at `jm_address`, retrying until it
/// is reachable.
/// Where a TaskManager finds its JobManager.
pub enum JobManagerTarget {
    /// `jobmanager.rpc.address:port` (no HA).
    Fixed(String),
    /// The current leader, from HA leader retrieval; a leader change reconnects.
    Ha(Arc<crate::ha::Ha>),
}

/// Starts a TaskManager that registers with the JobManager at `jm_address`, retrying until it
/// is reachable.
pub fn start(
    config: &Config,
    registry: Arc<JobRegistry>,
    jm_address: String,
) -> Result<TaskManagerHandle, String> {
    start_with(config, registry, JobManagerTarget::Fixed(jm_address))
}

pub fn start_with(
    config: &Config,
    registry: Arc<JobRegistry>,
    target: JobManagerTarget,
) -> Result<TaskManagerHandle, String> {
    let tls = eddy_core::tls::InternalTls::from_config(config)?;
    let network = NetworkEnvironment::start_with_tls(
        &config.taskmanager_host(),
        config.taskmanager_data_port(),
        frame_limits(config.network_max_frame_size(), config.heartbeat_timeout()),
        tls.clone(),
    )
    .map_err(|e| e.to_string())?;
    let writer: Writer = Arc::new(Mutex::new(None));
    let shared = Arc::new(Shared {
        id: TaskManagerId::random("tm"),
        registry,
        network,
        tasks: Mutex::new(HashMap::new()),
        jobs: Mutex::new(HashMap::new()),
        uploads: Mutex::new(uploader(writer.clone())),
        writer,
        token: Mutex::new(None),
        stopped: AtomicBool::new(false),
        slots: config.slots_per_taskmanager(),
        rpc_limits: rpc_limits(config),
        tls,
    });
    let heartbeat = config.heartbeat_interval().min(Duration::from_millis(500));
    let s = shared.clone();
    std::thread::Builder::new()
        .name("tm-rpc".into())
        .spawn(move || connection_loop(s, target))
        .map_err(|e| e.to_string())?;
    let s = shared.clone();
    std::thread::Builder::new()
        .name("tm-heartbeat".into())
        .spawn(move || heartbeat_loop(s, heartbeat))
        .map_err(|e| e.to_string())?;
    Ok(TaskManagerHandle { shared })
}

/// Connects, registers and serves the JobManager; reconnects when the connection drops.
/// Sleeps `d`, but wakes at once when leader retrieval reports another JobManager than `current`
/// (a failover must not wait out a reconnect backoff grown against the dead leader).
fn sleep_unless_leader_changes(d: Duration, leader: &Mutex<Option<String>>, current: &str) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if leader
            .lock()
            .ok()
            .is_some_and(|l| l.as_deref().is_some_and(|a| a != current))
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn connection_loop(shared: Arc<Shared>, target: JobManagerTarget) {
    // With HA, the leader's RPC address comes from leader retrieval; a change of leader closes
    // the current connection so the loop below connects to the new one.
    let leader: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    if let JobManagerTarget::Ha(ha) = &target {
        let (l, s) = (leader.clone(), shared.clone());
        let watched = ha.watch_leader(move |info| {
            let addr = info.map(|(a, _)| a.rpc);
            let changed = l
                .lock()
                .map(|mut cur| std::mem::replace(&mut *cur, addr.clone()) != addr)
                .unwrap_or(false);
            if changed {
                tracing::info!(
                    "TaskManager {}: the leading JobManager is now {}",
                    s.id,
                    addr.as_deref().unwrap_or("unknown")
                );
                if let Ok(w) = s.writer.lock() {
                    if let Some(link) = w.as_ref() {
                        link.peer.abort();
                    }
                }
            }
        });
        if let Err(e) = watched {
            tracing::error!(
                "TaskManager {}: cannot watch the JobManager leader: {e}",
                shared.id
            );
        }
    }
    let mut backoff = Duration::from_millis(50);
    let mut last_warn = Instant::now() - Duration::from_secs(60);
    while !shared.stopped.load(Ordering::Relaxed) {
        let jm_address = match &target {
            JobManagerTarget::Fixed(a) => a.clone(),
            JobManagerTarget::Ha(_) => match leader.lock().ok().and_then(|l| l.clone()) {
                Some(a) => a,
                None => {
                    if last_warn.elapsed() > Duration::from_secs(5) {
                        tracing::warn!(
                            "TaskManager {}: no JobManager leads yet; waiting",
                            shared.id
                        );
                        last_warn = Instant::now();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        match TcpStream::connect(&jm_address) {
            Ok(stream) => {
                backoff = Duration::from_millis(50);
                let _ = stream.set_nodelay(true);
                if let Err(e) = serve(&shared, stream, &jm_address) {
                    if !shared.stopped.load(Ordering::Relaxed) {
                        tracing::warn!("TaskManager {}: connection to JobManager {jm_address} lost: {e}; failing its tasks and reconnecting", shared.id);
                    }
                }
                if let Ok(mut w) = shared.writer.lock() {
                    *w = None;
                }
                if let Ok(mut t) = shared.token.lock() {
                    *t = None;
                }
                cancel_all(&shared);
                sleep_unless_leader_changes(backoff, &leader, &jm_address);
            }
            Err(e) => {
                if last_warn.elapsed() > Duration::from_secs(5) {
                    tracing::warn!("TaskManager {}: cannot reach the JobManager at {jm_address}: {e}; retrying", shared.id);
                    last_warn = Instant::now();
                }
                sleep_unless_leader_changes(backoff, &leader, &jm_address);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn serve(shared: &Arc<Shared>, stream: TcpStream, jm_address: &str) -> std::io::Result<()> {
    // With security.ssl.internal.enabled: mutual TLS, the JobManager's certificate must name
    // the host of `jm_address`.
    let (read_half, mut w) = eddy_core::tls::connect(stream, shared.tls.as_ref(), jm_address)?;
    // The JobManager answers every heartbeat: silence longer than heartbeat.timeout means it
    // is gone (paused, partitioned) even though the connection looks open.
    read_half
        .socket()
        .set_read_timeout(Some(shared.rpc_limits.socket_read_timeout()))?;
    let mut reader = BufReader::new(read_half);
    write_message(
        &mut w,
        &TmMessage::Register {
            tm_id: shared.id.0.clone(),
            data_address: shared.network.address().to_string(),
            slots: shared.slots,
            pid: std::process::id(),
        },
    )?;
    let token = match read_message::<JmMessage>(&mut reader, &shared.rpc_limits)? {
        JmMessage::Registered { token } => token,
        JmMessage::Refused { reason } => {
            return Err(std::io::Error::other(format!(
                "registration refused: {reason}"
            )))
        }
        other => {
            return Err(std::io::Error::other(format!(
                "unexpected reply to registration: {other:?}"
            )))
        }
    };
    if let Ok(mut t) = shared.token.lock() {
        *t = Some(token);
    }
    // A JobManager that stops reading is lost anyway after heartbeat.timeout.
    let peer = Peer::start(w, shared.rpc_limits.frame_timeout, "tm-rpc-out")?;
    if let Ok(mut g) = shared.writer.lock() {
        *g = Some(Link { token, peer });
    }
    tracing::info!("TaskManager {} registered at the JobManager", shared.id);
    loop {
        let msg = read_message::<JmMessage>(&mut reader, &shared.rpc_limits)?;
        handle(shared, msg);
    }
}

fn current_token(shared: &Shared) -> Option<FencingToken> {
    shared.token.lock().ok().and_then(|t| *t)
}

fn handle(shared: &Arc<Shared>, msg: JmMessage) {
    let token = match &msg {
        JmMessage::Deploy { token, .. }
        | JmMessage::Cancel { token, .. }
        | JmMessage::TriggerCheckpoint { token, .. }
        | JmMessage::NotifyCheckpointComplete { token, .. }
        | JmMessage::AbortCheckpoint { token, .. }
        | JmMessage::HeartbeatReply { token } => Some(*token),
        JmMessage::Registered { .. } | JmMessage::Refused { .. } => None,
    };
    if token.is_some() && token != current_token(shared) {
        tracing::warn!(
            "TaskManager {}: rejected a message with a stale fencing token",
            shared.id
        );
        return;
    }
    match msg {
        JmMessage::Deploy {
            job,
            deployment,
            restore,
            ..
        } => {
            let mut d = *deployment;
            let key = key_of(&d);
            let storage = job
                .config
                .checkpoints_dir()
                .map(|dir| CheckpointStorage::new(dir, d.job_id));
            let uploads = match shared.uploads.lock() {
                Ok(u) => u.clone(),
                Err(_) => return,
            };
            let Some(deployed_under) = token else { return };
            let relay: Arc<dyn TaskListener> = Arc::new(Relay {
                writer: shared.writer.clone(),
                deployed_under,
                uploads,
                storage,
            });
            if let Some(spec) = restore {
                match load_state(&spec, d.job_id) {
                    Ok(state) => d.restore = state,
                    Err(e) => {
                        let m = eddy_runtime::task::metrics::TaskMetrics::default();
                        relay.state_changed(
                            &d,
                            ExecutionState::Failed,
                            Some(JobError::new(format!(
                                "restoring from checkpoint {}: {e}",
                                spec.checkpoint_id
                            ))),
                            &m,
                        );
                        return;
                    }
                }
            }
            let built = {
                let mut jobs = match shared.jobs.lock() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                match jobs.get(&d.job_id) {
                    Some(b) => Ok(b.clone()),
                    None => shared.registry.build(&job).inspect(|b| {
                        jobs.insert(d.job_id, b.clone());
                    }),
                }
            };
            let result = built.and_then(|b| {
                let token = format!("{}-a{}", shared.id, d.attempt);
                spawn_task(
                    d.clone(),
                    b.graph,
                    b.job_graph,
                    shared.network.clone(),
                    relay.clone(),
                    token,
                )
            });
            match result {
                Ok(handle) => {
                    if let Ok(mut t) = shared.tasks.lock() {
                        t.insert(key, handle);
                    }
                }
                Err(e) => relay.state_changed(
                    &d,
                    ExecutionState::Failed,
                    Some(e.context("deploying the task")),
                    &Default::default(),
                ),
            }
        }
        JmMessage::Cancel { key, .. } => control(shared, &key, TaskControl::Cancel),
        JmMessage::TriggerCheckpoint {
            key, checkpoint_id, ..
        } => control(
            shared,
            &key,
            TaskControl::TriggerCheckpoint { checkpoint_id },
        ),
        JmMessage::NotifyCheckpointComplete {
            key, checkpoint_id, ..
        } => control(
            shared,
            &key,
            TaskControl::NotifyCheckpointComplete { checkpoint_id },
        ),
        JmMessage::AbortCheckpoint {
            key, checkpoint_id, ..
        } => control(shared, &key, TaskControl::AbortCheckpoint { checkpoint_id }),
        JmMessage::HeartbeatReply { .. }
        | JmMessage::Registered { .. }
        | JmMessage::Refused { .. } => {}
    }
}

fn control(shared: &Shared, key: &ExecutionKey, c: TaskControl) {
    if let Ok(tasks) = shared.tasks.lock() {
        if let Some(t) = tasks.get(key) {
            t.send(c);
        }
    }
}

/// Sends counters of live tasks and forgets tasks whose threads ended.
fn heartbeat_loop(shared: Arc<Shared>, interval: Duration) {
    while !shared.stopped.load(Ordering::Relaxed) {
        std::thread::sleep(interval);
        let counters = match shared.tasks.lock() {
            Ok(mut tasks) => {
                let c: Vec<TaskCounters> = tasks
                    .iter()
                    .map(|(k, t)| TaskCounters {
                        key: *k,
                        records_in: t.metrics.records_in(),
                        records_out: t.metrics.records_out(),
                    })
                    .collect();
                tasks.retain(|_, t| t.thread.as_ref().is_some_and(|h| !h.is_finished()));
                // The job code of jobs with no task here any more is evicted (built again on
                // the next deployment), so a long-running TaskManager does not keep every job.
                if let Ok(mut jobs) = shared.jobs.lock() {
                    jobs.retain(|id, _| tasks.keys().any(|k| k.job_id == *id));
                }
                c
            }
            Err(_) => return,
        };
        if current_token(&shared).is_some() {
            send(&shared.writer, TmMessage::Heartbeat { counters }, None);
        }
    }
}
