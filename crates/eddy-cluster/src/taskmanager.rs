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
    read_message, rpc_limits, write_message, DeploymentBatch, ExecutionKey, FencingToken,
    JmMessage, RestoreSpec, TaskCounters, TmMessage,
};
use eddy_core::config::{Config, StateBackendKind};
use eddy_core::ids::TaskManagerId;
use eddy_core::JobId;
use eddy_recovery::storage::local::LocalStateStore;
use eddy_recovery::{
    CheckpointStorage, OperatorSubtaskState, RocksDbFile, RocksDbStateHandle, StateFileHandle,
    TaskStateSnapshot,
};
use eddy_runtime::error::JobError;
use eddy_runtime::framing::FrameLimits;
use eddy_runtime::registry::{BuiltJob, JobRegistry};
use eddy_runtime::snapshot::OperatorSnapshot;
use eddy_runtime::state::incremental::{is_sst, NativeState, StoredFile};
use eddy_runtime::task::buffers::{BufferPoolConfig, NetworkBufferPool};
use eddy_runtime::task::chain::ChainSnapshot;
use eddy_runtime::task::channel::TaskControl;
use eddy_runtime::task::metrics::TaskTimes;
use eddy_runtime::task::network::{frame_limits, NetworkEnvironment};
use eddy_runtime::task::{spawn_task, ExecutionState, TaskDeployment, TaskHandle, TaskListener};
use std::collections::HashMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
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
    /// Task-local recovery: where the uploader keeps a local copy of each state file.
    local: Option<LocalStateStore>,
    snapshot: ChainSnapshot,
}

/// Which checkpoints are savepoints, as the JobManager announces them (jobs with incremental
/// RocksDB checkpoints only): the uploader turns a native snapshot into canonical key groups
/// for a savepoint, so savepoints stay backend-independent.
#[derive(Default)]
struct CheckpointKinds {
    kinds: Mutex<HashMap<(JobId, u64), bool>>,
    cv: Condvar,
}

/// How long the uploader waits for the JobManager's word on a checkpoint's kind.
const KIND_WAIT: Duration = Duration::from_secs(60);

impl CheckpointKinds {
    fn announce(&self, job: JobId, checkpoint_id: u64, savepoint: bool) {
        if let Ok(mut k) = self.kinds.lock() {
            // Older announcements of the job are no longer waited for.
            k.retain(|(j, id), _| *j != job || id + 64 > checkpoint_id);
            k.insert((job, checkpoint_id), savepoint);
            self.cv.notify_all();
        }
    }

    fn savepoint(&self, job: JobId, checkpoint_id: u64) -> Result<bool, String> {
        let deadline = Instant::now() + KIND_WAIT;
        let Ok(mut k) = self.kinds.lock() else {
            return Err("checkpoint kinds lock poisoned".into());
        };
        loop {
            if let Some(s) = k.get(&(job, checkpoint_id)) {
                return Ok(*s);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "the JobManager did not say within {KIND_WAIT:?} whether checkpoint {checkpoint_id} is a savepoint"
                ));
            }
            k = match self.cv.wait_timeout(k, deadline - now) {
                Ok((g, _)) => g,
                Err(_) => return Err("checkpoint kinds lock poisoned".into()),
            };
        }
    }
}

/// Writes snapshots to checkpoint storage (fsync + atomic rename) off the task threads, then
/// acknowledges them: the asynchronous part of a checkpoint.
fn uploader(writer: Writer, kinds: Arc<CheckpointKinds>) -> Sender<Upload> {
    let (tx, rx) = channel::<Upload>();
    let _ = std::thread::Builder::new()
        .name("tm-uploader".into())
        .spawn(move || {
            for mut u in rx {
                let msg = match encode_state(&mut u, &kinds) {
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

fn encode_state(u: &mut Upload, kinds: &CheckpointKinds) -> Result<TaskStateSnapshot, String> {
    let mut operators = Vec::new();
    let mut natives = Vec::new();
    for (_, snap) in &mut u.snapshot {
        natives.push(std::mem::take(&mut snap.native));
    }
    let result = encode_operators(u, &natives, kinds, &mut operators);
    // Whatever happened, the local RocksDB checkpoints (hard links) go.
    for n in natives.iter().flatten() {
        let _ = std::fs::remove_dir_all(&n.dir);
    }
    result.map(|_| TaskStateSnapshot { operators })
}

fn encode_operators(
    u: &mut Upload,
    natives: &[Vec<NativeState>],
    kinds: &CheckpointKinds,
    operators: &mut Vec<OperatorSubtaskState>,
) -> Result<(), String> {
    let savepoint = if natives.iter().any(|n| !n.is_empty()) {
        Some(kinds.savepoint(u.key.job_id, u.checkpoint_id)?)
    } else {
        None
    };
    for ((uid, snap), native) in u.snapshot.iter_mut().zip(natives) {
        let mut rocksdb = None;
        let mut key_groups = None;
        for n in native {
            if savepoint == Some(true) {
                // Savepoints are canonical: read the key groups out of the RocksDB checkpoint.
                let groups = eddy_runtime::state::keyed::canonical_from_native(n)
                    .map_err(|e| format!("savepoint of operator '{uid}': {e}"))?;
                snap.keyed_state.extend(groups);
                continue;
            }
            let Some(storage) = &u.storage else {
                return Err(format!(
                    "operator '{uid}': incremental RocksDB checkpoints need a checkpoint directory"
                ));
            };
            key_groups = Some(n.key_groups);
            let upload = upload_native(storage, u.checkpoint_id, uid, u.subtask, n);
            if let (Ok(h), Some(local)) = (&upload, &u.local) {
                // Optional: without the copy, a restore downloads the files.
                let kg = (uid.as_str(), n.key_groups.start, n.key_groups.end);
                if let Err(e) =
                    local.store_native(u.key.job_id, u.checkpoint_id, kg, &n.dir, &h.files)
                {
                    tracing::warn!(
                        "cannot keep a local copy of operator '{uid}''s RocksDB snapshot: {e}"
                    );
                }
            }
            let _ = std::fs::remove_dir_all(&n.dir);
            rocksdb = Some(upload?);
        }
        let bytes = bincode::serialize(&*snap)
            .map_err(|e| format!("cannot encode the state of operator '{uid}': {e}"))?;
        let mut op = OperatorSubtaskState {
            operator_uid: uid.clone(),
            key_groups,
            files: Vec::new(),
            inline: Vec::new(),
            rocksdb,
        };
        match &u.storage {
            Some(storage) if bytes.len() > INLINE_STATE_BYTES => {
                let handle = storage
                    .write_state_file(u.checkpoint_id, uid, u.subtask, &bytes)
                    .map_err(|e| e.to_string())?;
                if let Some(local) = &u.local {
                    // Optional: without the copy, a restore reads checkpoint storage.
                    if let Err(e) = local.store(u.key.job_id, u.checkpoint_id, &handle, &bytes) {
                        tracing::warn!("cannot keep a local copy of {}: {e}", handle.path);
                    }
                }
                op.files.push(handle);
            }
            _ => op.inline = bytes,
        }
        operators.push(op);
    }
    Ok(())
}

/// Uploads a native RocksDB snapshot: SST files not in checkpoint storage yet into the job's
/// `shared/` directory (the others are referenced), the small files into the checkpoint's
/// directory; records the SST files for the next checkpoints once this one completes.
fn upload_native(
    storage: &CheckpointStorage,
    checkpoint_id: u64,
    uid: &str,
    subtask: u32,
    n: &NativeState,
) -> Result<RocksDbStateHandle, String> {
    let err = |e: &dyn std::fmt::Display| format!("operator '{uid}': RocksDB snapshot: {e}");
    let mut names: Vec<String> = std::fs::read_dir(&n.dir)
        .map_err(|e| err(&e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut files = Vec::new();
    let mut ssts = std::collections::BTreeMap::new();
    let mut uploaded: Vec<StateFileHandle> = Vec::new();
    let result = upload_files(
        storage,
        checkpoint_id,
        uid,
        subtask,
        n,
        names,
        &mut files,
        &mut ssts,
        &mut uploaded,
    );
    if let Err(e) = result {
        // Nothing will refer to the shared files uploaded so far.
        let _ = storage.discard_shared(&uploaded);
        return Err(err(&e));
    }
    eddy_core::faultpoint::hit("tm.checkpoint.rocksdb.after-upload");
    if let Some(uploads) = &n.uploads {
        if let Ok(mut u) = uploads.lock() {
            u.record(checkpoint_id, ssts);
        }
    }
    Ok(RocksDbStateHandle {
        key_groups: n.key_groups,
        state_names: n.state_names.clone(),
        files,
    })
}

#[allow(clippy::too_many_arguments)]
fn upload_files(
    storage: &CheckpointStorage,
    checkpoint_id: u64,
    uid: &str,
    subtask: u32,
    n: &NativeState,
    names: Vec<String>,
    files: &mut Vec<RocksDbFile>,
    ssts: &mut std::collections::BTreeMap<String, StoredFile>,
    uploaded: &mut Vec<StateFileHandle>,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    for name in names {
        let path = n.dir.join(&name);
        let handle = match n.shared.get(&name) {
            Some(f) if is_sst(&name) => StateFileHandle {
                path: f.path.clone(),
                len: f.len,
                crc32: f.crc32,
            },
            _ => {
                let mut file = std::fs::File::open(&path).map_err(|e| err(&e))?;
                if is_sst(&name) {
                    let h = storage
                        .write_shared_file(&format!("{uid}-{subtask}-{name}"), &mut file)
                        .map_err(|e| err(&e))?;
                    uploaded.push(h.clone());
                    h
                } else {
                    storage
                        .write_state_file_from(
                            checkpoint_id,
                            &format!("{uid}.{name}"),
                            subtask,
                            &mut file,
                        )
                        .map_err(|e| err(&e))?
                }
            }
        };
        if is_sst(&name) {
            ssts.insert(
                name.clone(),
                StoredFile {
                    path: handle.path.clone(),
                    len: handle.len,
                    crc32: handle.crc32,
                },
            );
        }
        files.push(RocksDbFile { name, handle });
    }
    Ok(())
}

/// How many files a restore downloads at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// Downloads the files of a native RocksDB snapshot into `dir` (created; removed on failure),
/// `PARALLEL_DOWNLOADS` at a time, verifying each file's length and CRC-32.
fn download_native(
    state_dir: &std::path::Path,
    handle: &RocksDbStateHandle,
    dir: &std::path::Path,
) -> Result<(NativeState, u64), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let read = std::sync::atomic::AtomicU64::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_DOWNLOADS.min(handle.files.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(f) = handle.files.get(i) else { break };
                if failed.lock().map(|g| g.is_some()).unwrap_or(true) {
                    break;
                }
                let r = eddy_recovery::storage::read_state_file(state_dir, &f.handle)
                    .map_err(|e| e.to_string())
                    .and_then(|data| {
                        read.fetch_add(data.len() as u64, Ordering::Relaxed);
                        // A plain name, no path: checked, the handle comes from metadata.
                        if f.name.is_empty()
                            || f.name.contains(['/', '\\'])
                            || f.name.starts_with('.')
                        {
                            return Err(format!("invalid RocksDB file name '{}'", f.name));
                        }
                        std::fs::write(dir.join(&f.name), &data)
                            .map_err(|e| format!("writing {}: {e}", dir.join(&f.name).display()))
                    });
                if let Err(e) = r {
                    if let Ok(mut g) = failed.lock() {
                        g.get_or_insert(e);
                    }
                    break;
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().ok().flatten() {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok((native_state(handle, dir), read.into_inner()))
}

/// The restore side of a native snapshot whose files are in `dir`.
fn native_state(handle: &RocksDbStateHandle, dir: &std::path::Path) -> NativeState {
    let shared = handle
        .files
        .iter()
        .filter(|f| is_sst(&f.name))
        .map(|f| {
            (
                f.name.clone(),
                StoredFile {
                    path: f.handle.path.clone(),
                    len: f.handle.len,
                    crc32: f.handle.crc32,
                },
            )
        })
        .collect();
    NativeState {
        dir: dir.to_path_buf(),
        key_groups: handle.key_groups,
        state_names: handle.state_names.clone(),
        shared,
        uploads: None,
    }
}

/// Bytes a restore read, by source.
#[derive(Default)]
struct RestoreRead {
    from_storage: u64,
    from_local: u64,
}

/// Reads a subtask's state back from a checkpoint (verifying length and checksum): each state
/// file from the local copy when `local` has a verified one, else from checkpoint storage.
/// `own` says the checkpoint is in this job's own checkpoint directory; a restored native RocksDB
/// snapshot of another job (a resumed retained checkpoint) keeps no shared files to refer to, so
/// the first checkpoint uploads every SST file into this job's `shared/` (Flink's NO_CLAIM: the
/// new job never depends on the old job's files once it has a checkpoint of its own).
fn load_state(
    spec: &RestoreSpec,
    d: &TaskDeployment,
    own: bool,
    rocksdb_dir: &std::path::Path,
    local: Option<&LocalStateStore>,
    read: &mut RestoreRead,
) -> Result<HashMap<String, OperatorSnapshot>, String> {
    let job_id = d.job_id;
    let dir = std::path::Path::new(&spec.state_dir);
    let range = eddy_core::KeyGroupRange::for_subtask(d.subtask, d.parallelism, d.max_parallelism);
    let mut out: HashMap<String, OperatorSnapshot> = HashMap::new();
    for (i, op) in spec.state.operators.iter().enumerate() {
        // After a rescale several old subtasks' states of one operator arrive: merged (keyed
        // state by key group, operator state as the union).
        let snap = out.entry(op.operator_uid.clone()).or_default();
        if let Some(h) = &op.rocksdb {
            // Only snapshots holding some of this subtask's key groups (rescale) are read: from
            // the local copy when it has every file with the recorded length and CRC-32, else
            // downloaded.
            if h.key_groups.start.max(range.start) < h.key_groups.end.min(range.end) {
                let target = rocksdb_dir.join(format!(
                    "restore-{job_id}-{}-{}-a{}-{i}",
                    d.vertex, d.subtask, d.attempt
                ));
                let kg = (
                    op.operator_uid.as_str(),
                    h.key_groups.start,
                    h.key_groups.end,
                );
                let from_local = local
                    .and_then(|l| l.load_native(job_id, spec.checkpoint_id, kg, &h.files, &target));
                let mut native = match from_local {
                    Some(bytes) => {
                        read.from_local += bytes;
                        native_state(h, &target)
                    }
                    None => {
                        let (native, bytes) = download_native(dir, h, &target)?;
                        read.from_storage += bytes;
                        native
                    }
                };
                if !own {
                    native.shared.clear();
                }
                snap.native.push(native);
            }
        }
        let mut blobs = Vec::new();
        if !op.inline.is_empty() {
            blobs.push(op.inline.clone());
        }
        for f in &op.files {
            if let Some(data) = local.and_then(|l| l.load(job_id, spec.checkpoint_id, f)) {
                read.from_local += data.len() as u64;
                blobs.push(data);
                continue;
            }
            let data =
                eddy_recovery::storage::read_state_file(dir, f).map_err(|e| e.to_string())?;
            read.from_storage += data.len() as u64;
            blobs.push(data);
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
    }
    Ok(out)
}

/// Relays a task's reports to the JobManager that deployed it.
struct Relay {
    writer: Writer,
    deployed_under: FencingToken,
    uploads: Sender<Upload>,
    storage: Option<CheckpointStorage>,
    local: Option<LocalStateStore>,
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
                error,
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
            local: self.local.clone(),
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

    fn end_of_data(&self, task: &TaskDeployment) {
        send(
            &self.writer,
            TmMessage::EndOfData { key: key_of(task) },
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
    /// Which checkpoints are savepoints (incremental RocksDB checkpoints).
    kinds: Arc<CheckpointKinds>,
    token: Mutex<Option<FencingToken>>,
    /// The connection to a JobManager (its address and socket), from before registration until
    /// it ends, so a leader change can end it: also a registration that waits for an answer
    /// from a paused JobManager. Never one to the new leader itself.
    connection: Mutex<Option<(String, TcpStream)>>,
    stopped: AtomicBool,
    slots: u32,
    /// Bounds on what the JobManager sends (`pekko.framesize`); no message from it for
    /// `heartbeat.timeout`: it is considered lost.
    rpc_limits: FrameLimits,
    /// Mutual TLS for the RPC connection (`security.ssl.internal.enabled`).
    tls: Option<eddy_core::tls::InternalTls>,
    /// For `/metrics`: heartbeats sent, registrations with a JobManager.
    heartbeats_sent: std::sync::atomic::AtomicU64,
    registrations: std::sync::atomic::AtomicU64,
    /// For `/metrics`: each task's times at the last heartbeat, and its back-pressured share of
    /// the time between the last two.
    backpressure: Mutex<HashMap<ExecutionKey, (TaskTimes, Option<f64>)>>,
    /// Where `/metrics` is served (`metrics.reporter.prom.port`), if anywhere.
    metrics_address: Mutex<Option<std::net::SocketAddr>>,
    /// `taskmanager.state.local.root-dirs`.
    local_roots: Vec<std::path::PathBuf>,
    /// The local state copies (task-local recovery), opened at start when this TaskManager's
    /// configuration enables local recovery, else by the first job that does.
    local_state: std::sync::OnceLock<Option<LocalStateStore>>,
    /// Managed memory (`taskmanager.memory.managed.*`): RocksDB's memory, split over the slots.
    managed_memory: u64,
    /// RocksDB's memory per slot: slot i of a job hosts subtask i of every vertex (slot
    /// sharing), so `(job, subtask)` names a slot's contents. Weak: it goes with its last
    /// instance.
    slot_memory: Mutex<HashMap<(JobId, u32), std::sync::Weak<eddy_runtime::state::SlotMemory>>>,
}

impl Shared {
    fn local_state(&self) -> Option<LocalStateStore> {
        self.local_state
            .get_or_init(|| {
                LocalStateStore::open(&self.local_roots, &self.id.0)
                    .inspect_err(|e| {
                        tracing::warn!("task-local recovery is off: cannot open its directory: {e}")
                    })
                    .ok()
            })
            .clone()
    }
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

    /// Where this TaskManager serves `/metrics`, if it does.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.shared.metrics_address.lock().ok().and_then(|a| *a)
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

/// The network buffer pool of `taskmanager.memory.network.*` and friends (task/buffers.rs).
fn network_buffers(config: &Config) -> Arc<NetworkBufferPool> {
    NetworkBufferPool::new(BufferPoolConfig {
        pool_bytes: config.network_memory_size(),
        segment_size: config.network_segment_size(),
        buffers_per_channel: config.network_buffers_per_channel(),
        floating_per_gate: config.network_floating_buffers_per_gate(),
    })
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
    eddy_recovery::storage::s3::configure_from(config);
    let tls = eddy_core::tls::InternalTls::from_config(config)?;
    let network = NetworkEnvironment::start_with_tls(
        &config.taskmanager_host(),
        config.taskmanager_data_port(),
        frame_limits(config.network_max_frame_size(), config.heartbeat_timeout()),
        tls.clone(),
        network_buffers(config),
    )
    .map_err(|e| e.to_string())?;
    let id = TaskManagerId::random("tm");
    network.buffers().set_owner(&id.to_string());
    let writer: Writer = Arc::new(Mutex::new(None));
    let kinds = Arc::new(CheckpointKinds::default());
    let shared = Arc::new(Shared {
        id,
        registry,
        network,
        tasks: Mutex::new(HashMap::new()),
        jobs: Mutex::new(HashMap::new()),
        uploads: Mutex::new(uploader(writer.clone(), kinds.clone())),
        kinds,
        writer,
        token: Mutex::new(None),
        connection: Mutex::new(None),
        stopped: AtomicBool::new(false),
        slots: config.slots_per_taskmanager(),
        rpc_limits: rpc_limits(config),
        tls,
        heartbeats_sent: Default::default(),
        registrations: Default::default(),
        backpressure: Default::default(),
        metrics_address: Mutex::new(None),
        local_roots: config.local_state_dirs(),
        local_state: std::sync::OnceLock::new(),
        managed_memory: config.taskmanager_managed_memory(),
        slot_memory: Mutex::new(HashMap::new()),
    });
    tracing::info!(
        "managed memory (RocksDB): {} bytes, {} per slot",
        shared.managed_memory,
        shared.managed_memory / u64::from(shared.slots.max(1))
    );
    if config.local_recovery() {
        // Also removes the copies of TaskManagers that ran on these roots before.
        if let Some(l) = shared.local_state() {
            tracing::info!(
                "task-local recovery: local state copies under {:?}",
                l.dirs()
            );
        }
    }
    let (ports, configured) = config.metrics_port_range();
    if let Some(listener) = crate::tm_metrics::bind(&config.taskmanager_host(), ports, configured)?
    {
        let (render, stop) = (shared.clone(), shared.clone());
        let address = crate::tm_metrics::serve(
            listener,
            Arc::new(move || render_metrics(&render)),
            Arc::new(move || stop.stopped.load(Ordering::Relaxed)),
        )?;
        tracing::info!(
            "TaskManager {} metrics on http://{address}/metrics",
            shared.id.0
        );
        if let Ok(mut a) = shared.metrics_address.lock() {
            *a = Some(address);
        }
    }
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

/// The leader's RPC address as leader retrieval last reported it; waiters wake on a change.
#[derive(Default)]
struct LeaderCell {
    address: Mutex<Option<String>>,
    changed: Condvar,
}

impl LeaderCell {
    fn get(&self) -> Option<String> {
        self.address.lock().ok().and_then(|a| a.clone())
    }

    /// Records `address`; whether it differs from the previous one.
    fn set(&self, address: Option<String>) -> bool {
        let Ok(mut cur) = self.address.lock() else {
            return false;
        };
        let changed = std::mem::replace(&mut *cur, address.clone()) != address;
        if changed {
            self.changed.notify_all();
        }
        changed
    }

    /// Sleeps `d`, but wakes at once when the leader is another than `current` (a failover must
    /// not wait out a back-off grown against the dead leader). Whether it woke for a change.
    fn sleep_unless_changed(&self, d: Duration, current: Option<&str>) -> bool {
        let until = Instant::now() + d;
        let Ok(mut cur) = self.address.lock() else {
            std::thread::sleep(d);
            return false;
        };
        loop {
            if cur.as_deref() != current {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            cur = match self.changed.wait_timeout(cur, left) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
    }
}

/// When a TaskManager tries its JobManager again. The first attempt at an address it has not
/// just tried (a new leader) is immediate; attempts at the same address back off from
/// [`ReconnectBackoff::FIRST`] to [`ReconnectBackoff::MAX`], doubling after each failure.
struct ReconnectBackoff {
    last: Option<String>,
    next: Duration,
}

impl ReconnectBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> ReconnectBackoff {
        ReconnectBackoff {
            last: None,
            next: Self::FIRST,
        }
    }

    /// The wait before an attempt at `address`; zero for the first attempt at a new address.
    fn delay_before(&mut self, address: &str) -> Duration {
        if self.last.as_deref() != Some(address) {
            self.last = Some(address.to_string());
            self.next = Self::FIRST;
            return Duration::ZERO;
        }
        self.next
    }

    /// The attempt failed (no connection, or a refused registration): wait longer next time.
    fn failed(&mut self) {
        self.next = (self.next * 2).min(Self::MAX);
    }

    /// A connection was registered: a later loss retries it after the shortest wait.
    fn registered(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Connects, registers and serves the JobManager; reconnects when the connection drops.
fn connection_loop(shared: Arc<Shared>, target: JobManagerTarget) {
    // With HA, the leader's RPC address comes from leader retrieval; a change of leader closes
    // the current connection so the loop below connects to the new one at once.
    let leader: Arc<LeaderCell> = Arc::new(LeaderCell::default());
    if let JobManagerTarget::Ha(ha) = &target {
        let (l, s) = (leader.clone(), shared.clone());
        let watched = ha.watch_leader(move |info| {
            let addr = info.map(|(a, _)| a.rpc);
            if l.set(addr.clone()) {
                tracing::info!(
                    "TaskManager {}: the leading JobManager is now {}",
                    s.id,
                    addr.as_deref().unwrap_or("unknown")
                );
                // Ends the connection to the old leader, registered or still registering (the
                // link shares its socket). The connection loop, woken by the change, may have
                // connected to the new leader already: that one stays.
                if let Ok(c) = s.connection.lock() {
                    if let Some((to, stream)) = c.as_ref() {
                        if Some(to) != addr.as_ref() {
                            let _ = stream.shutdown(std::net::Shutdown::Both);
                        }
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
    let mut backoff = ReconnectBackoff::new();
    let mut last_warn = Instant::now() - Duration::from_secs(60);
    while !shared.stopped.load(Ordering::Relaxed) {
        let jm_address = match &target {
            JobManagerTarget::Fixed(a) => a.clone(),
            JobManagerTarget::Ha(_) => match leader.get() {
                Some(a) => a,
                None => {
                    if last_warn.elapsed() > Duration::from_secs(5) {
                        tracing::warn!(
                            "TaskManager {}: no JobManager leads yet; waiting",
                            shared.id
                        );
                        last_warn = Instant::now();
                    }
                    leader.sleep_unless_changed(Duration::from_millis(200), None);
                    continue;
                }
            },
        };
        let delay = backoff.delay_before(&jm_address);
        if !delay.is_zero() {
            match &target {
                JobManagerTarget::Ha(_) => {
                    if leader.sleep_unless_changed(delay, Some(&jm_address)) {
                        continue; // another leader: tried at once
                    }
                }
                JobManagerTarget::Fixed(_) => std::thread::sleep(delay),
            }
        }
        match TcpStream::connect(&jm_address) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                if let Ok(mut c) = shared.connection.lock() {
                    *c = stream.try_clone().ok().map(|s| (jm_address.clone(), s));
                }
                // The leader changed while connecting: the watcher did not see this stream.
                let stale = matches!(target, JobManagerTarget::Ha(_))
                    && leader.get().as_deref() != Some(jm_address.as_str());
                let served = if stale {
                    Err(std::io::Error::other("the leader changed while connecting"))
                } else {
                    serve(&shared, stream, &mut backoff, &jm_address)
                };
                if let Ok(mut c) = shared.connection.lock() {
                    *c = None;
                }
                if let Err(e) = served {
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
            }
            Err(e) => {
                if last_warn.elapsed() > Duration::from_secs(5) {
                    tracing::warn!("TaskManager {}: cannot reach the JobManager at {jm_address}: {e}; retrying", shared.id);
                    last_warn = Instant::now();
                }
                backoff.failed();
            }
        }
    }
}

fn serve(
    shared: &Arc<Shared>,
    stream: TcpStream,
    backoff: &mut ReconnectBackoff,
    jm_address: &str,
) -> std::io::Result<()> {
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
    let token = match read_message::<JmMessage>(&mut reader, &shared.rpc_limits) {
        Ok(JmMessage::Registered { token }) => {
            backoff.registered();
            shared.registrations.fetch_add(1, Ordering::Relaxed);
            token
        }
        Err(e) => {
            backoff.failed();
            return Err(e);
        }
        Ok(JmMessage::Refused { reason }) => {
            // E.g. a new leader that has not yet taken up its grant: tried again shortly.
            backoff.failed();
            return Err(std::io::Error::other(format!(
                "registration refused: {reason}"
            )));
        }
        Ok(other) => {
            backoff.failed();
            return Err(std::io::Error::other(format!(
                "unexpected reply to registration: {other:?}"
            )));
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

/// This TaskManager's directory for RocksDB instances (and downloaded snapshots).
fn rocksdb_dir(shared: &Shared) -> std::path::PathBuf {
    std::env::temp_dir().join("eddy-rocksdb").join(&shared.id.0)
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
        | JmMessage::CheckpointKind { token, .. }
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
        JmMessage::Deploy { batch, .. } => {
            let Some(deployed_under) = token else { return };
            deploy_batch(shared, &batch, deployed_under);
        }
        JmMessage::Cancel { key, .. } => control(shared, &key, TaskControl::Cancel),
        JmMessage::TriggerCheckpoint {
            key,
            checkpoint_id,
            stop,
            ..
        } => control(
            shared,
            &key,
            TaskControl::TriggerCheckpoint {
                checkpoint_id,
                stop,
            },
        ),
        JmMessage::NotifyCheckpointComplete {
            key, checkpoint_id, ..
        } => {
            // Local copies of older checkpoints of the job are no longer restored from.
            if let Some(Some(l)) = shared.local_state.get() {
                l.prune_below(key.job_id, checkpoint_id);
            }
            control(
                shared,
                &key,
                TaskControl::NotifyCheckpointComplete { checkpoint_id },
            )
        }
        JmMessage::AbortCheckpoint {
            key, checkpoint_id, ..
        } => control(shared, &key, TaskControl::AbortCheckpoint { checkpoint_id }),
        JmMessage::CheckpointKind {
            job_id,
            checkpoint_id,
            savepoint,
            ..
        } => shared.kinds.announce(job_id, checkpoint_id, savepoint),
        JmMessage::HeartbeatReply { .. }
        | JmMessage::Registered { .. }
        | JmMessage::Refused { .. } => {}
    }
}

/// Starts the subtasks of one deployment batch, in its order. Each subtask restores its own
/// state; a subtask that cannot start is reported FAILED, the others start.
fn deploy_batch(shared: &Arc<Shared>, batch: &DeploymentBatch, deployed_under: FencingToken) {
    tracing::info!(
        "TaskManager {}: starting {} subtasks of job {} (attempt {})",
        shared.id,
        batch.tasks.len(),
        batch.job_id,
        batch.attempt
    );
    let job = &batch.job;
    let storage = job
        .config
        .checkpoints_dir()
        .map(|dir| CheckpointStorage::new(dir, batch.job_id));
    let storage_dir = storage.as_ref().map(|s| s.job_dir().to_path_buf());
    let uploads = match shared.uploads.lock() {
        Ok(u) => u.clone(),
        Err(_) => return,
    };
    let local = job
        .config
        .local_recovery()
        .then(|| shared.local_state())
        .flatten();
    let relay: Arc<dyn TaskListener> = Arc::new(Relay {
        writer: shared.writer.clone(),
        deployed_under,
        uploads,
        storage,
        local: local.clone(),
    });
    let built = {
        let mut jobs = match shared.jobs.lock() {
            Ok(j) => j,
            Err(_) => return,
        };
        match jobs.get(&batch.job_id) {
            Some(b) => Ok(b.clone()),
            None => shared.registry.build(job).inspect(|b| {
                jobs.insert(batch.job_id, b.clone());
            }),
        }
    };
    for (index, t) in batch.tasks.iter().enumerate() {
        let mut d = match batch.task_deployment(index) {
            Ok(d) => d,
            Err(e) => {
                // Reported under the subtask's key with the job-level fields the batch has.
                tracing::warn!(
                    "TaskManager {}: a malformed deployment of job {}: {e}",
                    shared.id,
                    batch.job_id
                );
                let key = batch.key(t);
                send(
                    &shared.writer,
                    TmMessage::TaskState {
                        key,
                        state: ExecutionState::Failed,
                        error: Some(JobError::new(format!("deploying the task: {e}"))),
                        records_in: 0,
                        records_out: 0,
                    },
                    Some(deployed_under),
                );
                continue;
            }
        };
        let key = key_of(&d);
        if let Some(spec) = &t.restore {
            let mut read = RestoreRead::default();
            let own = storage_dir
                .as_ref()
                .is_some_and(|s| std::path::Path::new(&spec.state_dir).starts_with(s));
            match load_state(
                spec,
                &d,
                own,
                &rocksdb_dir(shared),
                local.as_ref(),
                &mut read,
            ) {
                Ok(state) => {
                    // Tests read this line (task-local recovery reads 0 bytes from storage).
                    tracing::info!(
                        "restored {} {}/{} of job {} from checkpoint {}: {} bytes of state files from checkpoint storage, {} bytes from local copies",
                        d.vertex,
                        d.subtask + 1,
                        d.parallelism,
                        d.job_id,
                        spec.checkpoint_id,
                        read.from_storage,
                        read.from_local
                    );
                    d.restore = state
                }
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
                    continue;
                }
            }
        }
        let result = built.clone().and_then(|b| {
            let token = format!("{}-a{}", shared.id, d.attempt);
            let memory = match job.config.state_backend() {
                StateBackendKind::RocksDb => rocksdb_memory(shared, &job.config, &d, &b.graph)?,
                StateBackendKind::HashMap => Default::default(),
            };
            // RocksDB instances live in the TaskManager's working directory, one
            // subdirectory per TaskManager, removed by each operator when it closes.
            let backend =
                eddy_runtime::state::state_backend(&eddy_runtime::state::StateBackendSpec {
                    kind: job.config.state_backend(),
                    working_dir: rocksdb_dir(shared),
                    memory,
                    incremental: job.config.incremental(),
                });
            spawn_task(
                d.clone(),
                b.graph,
                b.job_graph,
                shared.network.clone(),
                relay.clone(),
                token,
                backend,
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
}

fn control(shared: &Shared, key: &ExecutionKey, c: TaskControl) {
    if let Ok(tasks) = shared.tasks.lock() {
        if let Some(t) = tasks.get(key) {
            t.send(c);
        }
    }
}

/// One subtask in `/metrics`: job id, job name, vertex, subtask, thread alive, records in, out,
/// its times and its back-pressure ratio over the last heartbeat interval.
type TaskRow = (
    String,
    String,
    String,
    String,
    bool,
    u64,
    u64,
    Option<TaskTimes>,
    Option<f64>,
);

/// This TaskManager's `/metrics` text (names from `eddy_core::metrics`).
fn render_metrics(shared: &Shared) -> String {
    use eddy_core::metrics::{self as m, write_family};
    let mut out = String::new();
    // In a stable order.
    let ratios: HashMap<ExecutionKey, f64> = match shared.backpressure.lock() {
        Ok(b) => b
            .iter()
            .filter_map(|(k, (_, r))| Some((*k, (*r)?)))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let mut tasks: Vec<TaskRow> = match shared.tasks.lock() {
        Ok(tasks) => tasks
            .iter()
            .map(|(k, t)| {
                (
                    k.job_id.to_string(),
                    t.deployment.job_name.clone(),
                    k.vertex.to_string(),
                    k.subtask.to_string(),
                    t.thread.as_ref().is_some_and(|h| !h.is_finished()),
                    t.metrics.records_in(),
                    t.metrics.records_out(),
                    t.metrics.times(),
                    ratios.get(k).copied(),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    tasks.sort_by(|a, b| (&a.0, &a.2, &a.3).cmp(&(&b.0, &b.2, &b.3)));
    let id = shared.id.0.as_str();
    let one = |v: String| vec![(vec![("taskmanager_id", id)], v)];
    write_family(
        &mut out,
        &m::TASKMANAGER_SLOTS,
        one(shared.slots.to_string()),
    );
    let live = tasks.iter().filter(|t| t.4).count();
    write_family(&mut out, &m::TASKMANAGER_TASKS, one(live.to_string()));
    let heartbeats = shared.heartbeats_sent.load(Ordering::Relaxed);
    write_family(
        &mut out,
        &m::TASKMANAGER_HEARTBEATS,
        one(heartbeats.to_string()),
    );
    let registrations = shared.registrations.load(Ordering::Relaxed);
    write_family(
        &mut out,
        &m::TASKMANAGER_REGISTRATIONS,
        one(registrations.to_string()),
    );
    let per_task = |value: &dyn Fn(&TaskRow) -> Option<String>| {
        tasks
            .iter()
            .filter_map(|t| {
                let labels = vec![
                    ("taskmanager_id", id),
                    ("job_id", t.0.as_str()),
                    ("job_name", t.1.as_str()),
                    ("vertex_id", t.2.as_str()),
                    ("subtask", t.3.as_str()),
                ];
                Some((labels, value(t)?))
            })
            .collect::<Vec<_>>()
    };
    write_family(
        &mut out,
        &m::TASK_RECORDS_IN,
        per_task(&|t| Some(t.5.to_string())),
    );
    write_family(
        &mut out,
        &m::TASK_RECORDS_OUT,
        per_task(&|t| Some(t.6.to_string())),
    );
    let seconds = |ms: u64| format!("{:.3}", ms as f64 / 1000.0);
    write_family(
        &mut out,
        &m::TASK_BACKPRESSURED_TIME,
        per_task(&|t| t.7.map(|x| seconds(x.backpressured_ms))),
    );
    write_family(
        &mut out,
        &m::TASK_IDLE_TIME,
        per_task(&|t| t.7.map(|x| seconds(x.idle_ms))),
    );
    write_family(
        &mut out,
        &m::TASK_BUSY_TIME,
        per_task(&|t| t.7.map(|x| seconds(x.busy_ms))),
    );
    write_family(
        &mut out,
        &m::TASK_BACKPRESSURE_RATIO,
        per_task(&|t| t.8.map(|r| format!("{r:.3}"))),
    );
    m::write_process_families(&mut out);
    out
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
                        times: t.metrics.times(),
                    })
                    .collect();
                if let Ok(mut b) = shared.backpressure.lock() {
                    // The back-pressure ratio of each task over this heartbeat interval.
                    b.retain(|k, _| tasks.contains_key(k));
                    for c in &c {
                        if let Some(now) = c.times {
                            let ratio = b
                                .get(&c.key)
                                .and_then(|(prev, _)| now.ratios_since(prev))
                                .map(|r| r.0);
                            let kept = b.get(&c.key).and_then(|(_, r)| *r);
                            b.insert(c.key, (now, ratio.or(kept)));
                        }
                    }
                }
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
            shared.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// RocksDB's memory for subtask `d`: with `state.backend.rocksdb.memory.managed` (the default)
/// or `fixed-per-slot`, the memory of its slot (the TaskManager's managed memory divided by its
/// slots, or the fixed size), shared by every RocksDB instance of the slot: the first task of the
/// slot makes it. With `managed: false` and no fixed size, a fixed budget per instance.
fn rocksdb_memory(
    shared: &Shared,
    config: &Config,
    d: &TaskDeployment,
    graph: &eddy_runtime::graph::StreamGraph,
) -> Result<eddy_runtime::state::InstanceMemory, JobError> {
    use eddy_runtime::state::{InstanceMemory, SlotMemory};
    let budget = match (
        config.rocksdb_memory_fixed_per_slot(),
        config.rocksdb_memory_managed(),
    ) {
        (Some(fixed), _) => fixed,
        (None, true) => shared.managed_memory / u64::from(shared.slots.max(1)),
        (None, false) => return Ok(InstanceMemory::Fixed),
    };
    let ratio = config.rocksdb_write_buffer_ratio();
    // Keyed operators (those behind a keyBy) per slot: one subtask of each in every slot.
    let keyed = graph
        .edges
        .iter()
        .filter(|e| e.kind == eddy_runtime::graph::PartitionKind::Hash)
        .map(|e| e.target)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let mut slots = shared
        .slot_memory
        .lock()
        .map_err(|_| JobError::new("slot memory table poisoned"))?;
    slots.retain(|_, m| m.strong_count() > 0);
    let key = (d.job_id, d.subtask);
    if let Some(m) = slots.get(&key).and_then(|m| m.upgrade()) {
        if m.budget == budget && m.write_buffer_ratio == ratio && m.keyed_operators == keyed.max(1)
        {
            return Ok(InstanceMemory::Slot(m));
        }
    }
    let m = Arc::new(SlotMemory::new(budget, ratio, keyed)?);
    slots.insert(key, Arc::downgrade(&m));
    Ok(InstanceMemory::Slot(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_attempt_at_a_new_leader_is_immediate_whatever_the_backoff_grew_to() {
        let mut b = ReconnectBackoff::new();
        assert_eq!(
            b.delay_before("jm-a:1"),
            Duration::ZERO,
            "first attempt ever"
        );
        // The leader died: attempts at its address fail and back off up to the cap.
        let mut waits = Vec::new();
        for _ in 0..10 {
            b.failed();
            waits.push(b.delay_before("jm-a:1"));
        }
        assert_eq!(waits[0], ReconnectBackoff::FIRST * 2);
        assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
        assert_eq!(*waits.last().unwrap(), ReconnectBackoff::MAX);
        // Leader retrieval names another JobManager: tried at once, and a refusal there (the
        // grant not taken up yet) waits the shortest back-off, not the one grown against a.
        assert_eq!(b.delay_before("jm-b:2"), Duration::ZERO);
        b.failed();
        assert_eq!(b.delay_before("jm-b:2"), ReconnectBackoff::FIRST * 2);
        // Registered, then the connection is lost: the same leader is retried after FIRST.
        b.registered();
        assert_eq!(b.delay_before("jm-b:2"), ReconnectBackoff::FIRST);
        // Back to a (e.g. a JobManager restarted at a's address that won the election).
        assert_eq!(b.delay_before("jm-a:1"), Duration::ZERO);
    }

    #[test]
    fn a_leader_change_wakes_a_backing_off_taskmanager() {
        let cell = Arc::new(LeaderCell::default());
        cell.set(Some("old:1".into()));
        let c = cell.clone();
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            let woke = c.sleep_unless_changed(Duration::from_secs(60), Some("old:1"));
            (woke, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            cell.set(Some("new:2".into())),
            "a different address is a change"
        );
        let (woke, slept) = t.join().unwrap();
        assert!(woke, "woken by the change, not by the timeout");
        assert!(slept < Duration::from_secs(30), "{slept:?}");
        assert!(
            !cell.set(Some("new:2".into())),
            "the same address is no change"
        );
        // Already another leader than the caller's: returns at once.
        assert!(cell.sleep_unless_changed(Duration::from_secs(60), Some("old:1")));
        // No change within the wait: sleeps it out.
        assert!(!cell.sleep_unless_changed(Duration::from_millis(20), Some("new:2")));
    }
}
