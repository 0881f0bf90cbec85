//! The `none` HA backend: one JobManager, no coordination service. Leader election grants
//! leadership at once with the fixed session id [`LeaderSessionId::STANDALONE`]; retrieval reports
//! the configured leader address (or the local contender's). The stores keep their data on the
//! local filesystem under `<storage-dir>/<cluster-id>/` when a storage dir is given — so a
//! restarted JobManager finds its job graphs, checkpoint pointers, counters and job results — and
//! in memory otherwise.
//!
//! Must never accept a write while the local contender does not hold leadership, and never write a
//! file in place (always temp file, fsync, rename).

use crate::api::{
    BoxFuture, CheckpointIdCounter, CompletedCheckpointStore, ConnectionState, HaServices,
    JobGraphStore, JobResultStore, LeaderInfo, LeaderSessionId, LeaderWatcher, Leadership,
    LeadershipEvent, RetrievalState,
};
use crate::durable;
use crate::error::HaError;
use crate::paths::{
    checkpoint_node_name, normalize_cluster_id, parse_checkpoint_node_name, JobResultEntry,
    JobResultState,
};
use eddy_core::JobId;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch};

/// Settings of the `none` backend.
#[derive(Clone, Debug)]
pub struct StandaloneHaConfig {
    /// `high-availability.storageDir`; `None` keeps the stores in memory (lost on restart).
    pub storage_dir: Option<PathBuf>,
    /// `high-availability.cluster-id` (a sub-directory of the storage dir).
    pub cluster_id: String,
    /// The fixed JobManager address retrieval reports before (or without) a local campaign, e.g.
    /// `jobmanager.rpc.address:port` on a TaskManager.
    pub leader_address: Option<String>,
}

impl StandaloneHaConfig {
    pub fn new(storage_dir: Option<PathBuf>) -> Self {
        StandaloneHaConfig {
            storage_dir,
            cluster_id: "default".into(),
            leader_address: None,
        }
    }
}

/// The `none` backend. See the module doc.
pub struct StandaloneHaServices {
    local: Arc<Local>,
    fixed_leader: Option<LeaderInfo>,
    leader_tx: Arc<watch::Sender<RetrievalState>>,
    conn_tx: watch::Sender<ConnectionState>,
    shutdown: watch::Sender<bool>,
}

struct Local {
    kv: Kv,
    /// Serializes read-modify-write sequences (counter, add-if-absent).
    lock: tokio::sync::Mutex<()>,
    /// True while the local contender holds leadership.
    leading: Mutex<bool>,
    campaigning: AtomicBool,
}

enum Kv {
    Memory(Mutex<BTreeMap<String, Vec<u8>>>),
    Files(PathBuf),
}

impl StandaloneHaServices {
    /// Builds the `none` backend; with a storage dir, checks that `<storage-dir>/<cluster-id>` is
    /// writable first (so a bad path fails before anything starts).
    pub fn new(config: StandaloneHaConfig) -> Result<Self, HaError> {
        let cluster_id = normalize_cluster_id(&config.cluster_id)?;
        let kv = match &config.storage_dir {
            Some(dir) => {
                let base = dir.join(&cluster_id);
                durable::probe_writable(&base).map_err(|e| match e {
                    HaError::StorageDirNotWritable { source, .. } => {
                        HaError::StorageDirNotWritable {
                            path: dir.clone(),
                            source,
                        }
                    }
                    other => other,
                })?;
                Kv::Files(base)
            }
            None => Kv::Memory(Mutex::new(BTreeMap::new())),
        };
        let fixed_leader = config.leader_address.map(|address| LeaderInfo {
            address,
            session_id: LeaderSessionId::STANDALONE,
        });
        let (leader_tx, _) = watch::channel(RetrievalState::Known(fixed_leader.clone()));
        let (conn_tx, _) = watch::channel(ConnectionState::Connected);
        let (shutdown, _) = watch::channel(false);
        Ok(StandaloneHaServices {
            local: Arc::new(Local {
                kv,
                lock: tokio::sync::Mutex::new(()),
                leading: Mutex::new(false),
                campaigning: AtomicBool::new(false),
            }),
            fixed_leader,
            leader_tx: Arc::new(leader_tx),
            conn_tx,
            shutdown,
        })
    }

    fn stores(&self) -> Arc<LocalStores> {
        Arc::new(LocalStores {
            local: self.local.clone(),
        })
    }
}

impl HaServices for StandaloneHaServices {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn campaign(&self, address: String) -> BoxFuture<'_, Result<Leadership, HaError>> {
        Box::pin(async move {
            if *self.shutdown.borrow() {
                return Err(HaError::Closed);
            }
            if self.local.campaigning.swap(true, Ordering::SeqCst) {
                return Err(HaError::AlreadyCampaigning);
            }
            let session_id = LeaderSessionId::STANDALONE;
            set_leading(&self.local, true);
            self.leader_tx
                .send_replace(RetrievalState::Known(Some(LeaderInfo {
                    address,
                    session_id,
                })));
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let _ = ev_tx.send(LeadershipEvent::Granted { session_id });
            let (cur_tx, cur_rx) = watch::channel(Some(session_id));
            let (resign_tx, mut resign_rx) = watch::channel(false);
            let mut shutdown_rx = self.shutdown.subscribe();
            let local = self.local.clone();
            let leader_tx = self.leader_tx.clone();
            let fixed = self.fixed_leader.clone();
            let task = tokio::spawn(async move {
                tokio::select! {
                    _ = resign_rx.wait_for(|r| *r) => {}
                    _ = shutdown_rx.wait_for(|s| *s) => {}
                }
                set_leading(&local, false);
                cur_tx.send_replace(None);
                leader_tx.send_replace(RetrievalState::Known(fixed));
                let _ = ev_tx.send(LeadershipEvent::Revoked);
                local.campaigning.store(false, Ordering::SeqCst);
            });
            Ok(Leadership::new(ev_rx, cur_rx, resign_tx, task))
        })
    }

    fn leader_watcher(&self) -> BoxFuture<'_, Result<LeaderWatcher, HaError>> {
        Box::pin(async move { Ok(LeaderWatcher::new(self.leader_tx.subscribe())) })
    }

    fn current_leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, HaError>> {
        Box::pin(async move {
            Ok(match &*self.leader_tx.borrow() {
                RetrievalState::Known(info) => info.clone(),
                RetrievalState::Unknown => None,
            })
        })
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.conn_tx.subscribe()
    }

    fn job_graph_store(&self) -> Arc<dyn JobGraphStore> {
        self.stores()
    }

    fn completed_checkpoint_store(&self) -> Arc<dyn CompletedCheckpointStore> {
        self.stores()
    }

    fn checkpoint_id_counter(&self) -> Arc<dyn CheckpointIdCounter> {
        self.stores()
    }

    fn job_result_store(&self) -> Arc<dyn JobResultStore> {
        self.stores()
    }

    fn cleanup_job(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let local = &self.local;
            let _g = local.lock.lock().await;
            local.fence(session, "cleanup of job HA data")?;
            if local.kv.get(&jrs_key(job_id)).await?.is_none() {
                return Err(HaError::NoJobResult { job_id });
            }
            local.kv.delete_tree(&job_key(job_id)).await?;
            local.kv.delete(&jobgraph_key(job_id)).await
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.shutdown.send_replace(true);
            set_leading(&self.local, false);
        })
    }
}

impl Drop for StandaloneHaServices {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

fn set_leading(local: &Local, v: bool) {
    if let Ok(mut l) = local.leading.lock() {
        *l = v;
    }
}

impl Local {
    fn fence(&self, session: LeaderSessionId, what: &str) -> Result<(), HaError> {
        let leading = self.leading.lock().map(|l| *l).unwrap_or(false);
        if leading && session == LeaderSessionId::STANDALONE {
            Ok(())
        } else {
            Err(HaError::Fenced {
                session,
                what: what.to_string(),
            })
        }
    }
}

fn jobgraph_key(job_id: JobId) -> String {
    format!("jobgraphs/{job_id}")
}
fn job_key(job_id: JobId) -> String {
    format!("jobs/{job_id}")
}
fn checkpoints_key(job_id: JobId) -> String {
    format!("jobs/{job_id}/checkpoints")
}
fn counter_key(job_id: JobId) -> String {
    format!("jobs/{job_id}/checkpoint-counter")
}
fn jrs_key(job_id: JobId) -> String {
    format!("job-result-store/{job_id}.json")
}

impl Kv {
    fn location(&self, key: &str) -> String {
        match self {
            Kv::Memory(_) => format!("memory:{key}"),
            Kv::Files(base) => base.join(key).display().to_string(),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, HaError> {
        match self {
            Kv::Memory(m) => Ok(m.lock().ok().and_then(|m| m.get(key).cloned())),
            Kv::Files(base) => {
                let p = base.join(key);
                durable::blocking(move || durable::read_optional(&p)).await
            }
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), HaError> {
        match self {
            Kv::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.insert(key.to_string(), bytes);
                }
                Ok(())
            }
            Kv::Files(base) => {
                let p = base.join(key);
                durable::blocking(move || durable::write_atomic(&p, &bytes)).await
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), HaError> {
        match self {
            Kv::Memory(m) => {
                if let Ok(mut m) = m.lock() {
                    m.remove(key);
                }
                Ok(())
            }
            Kv::Files(base) => {
                let p = base.join(key);
                durable::blocking(move || durable::remove_file_durable(&p)).await
            }
        }
    }

    /// Names of the entries directly under `dir`, sorted; temp files (leading '.') are skipped.
    async fn list(&self, dir: &str) -> Result<Vec<String>, HaError> {
        match self {
            Kv::Memory(m) => {
                let prefix = format!("{dir}/");
                let m = m.lock().map_err(|_| HaError::Closed)?;
                Ok(m.range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .filter_map(|(k, _)| {
                        let rest = &k[prefix.len()..];
                        (!rest.contains('/')).then(|| rest.to_string())
                    })
                    .collect())
            }
            Kv::Files(base) => {
                let p = base.join(dir);
                durable::blocking(move || {
                    let rd = match std::fs::read_dir(&p) {
                        Ok(rd) => rd,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                        Err(e) => return Err(HaError::io("list", &p, e)),
                    };
                    let mut names = Vec::new();
                    for entry in rd {
                        let entry = entry.map_err(|e| HaError::io("list", &p, e))?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if !name.starts_with('.')
                            && entry.file_type().map(|t| t.is_file()).unwrap_or(false)
                        {
                            names.push(name);
                        }
                    }
                    names.sort();
                    Ok(names)
                })
                .await
            }
        }
    }

    /// Deletes `dir` and everything under it; missing is fine.
    async fn delete_tree(&self, dir: &str) -> Result<(), HaError> {
        match self {
            Kv::Memory(m) => {
                let prefix = format!("{dir}/");
                if let Ok(mut m) = m.lock() {
                    m.retain(|k, _| !k.starts_with(&prefix));
                }
                Ok(())
            }
            Kv::Files(base) => {
                let p = base.join(dir);
                let parent = base.clone();
                durable::blocking(move || match std::fs::remove_dir_all(&p) {
                    Ok(()) => durable::sync_dir(p.parent().unwrap_or(&parent)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(HaError::io("delete directory", &p, e)),
                })
                .await
            }
        }
    }
}

/// All four stores of the `none` backend over one key-value layout.
struct LocalStores {
    local: Arc<Local>,
}

impl LocalStores {
    async fn read_counter(&self, job_id: JobId) -> Result<u64, HaError> {
        let key = counter_key(job_id);
        match self.local.kv.get(&key).await? {
            None => Ok(1),
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| HaError::Corrupt {
                    location: self.local.kv.location(&key),
                    reason: "checkpoint counter is not a decimal number".into(),
                }),
        }
    }

    async fn read_jrs(&self, job_id: JobId) -> Result<Option<JobResultEntry>, HaError> {
        let key = jrs_key(job_id);
        match self.local.kv.get(&key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| HaError::Corrupt {
                    location: self.local.kv.location(&key),
                    reason: e.to_string(),
                }),
        }
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, HaError> {
    serde_json::to_vec(v).map_err(|e| HaError::Corrupt {
        location: "json encoding".into(),
        reason: e.to_string(),
    })
}

impl JobGraphStore for LocalStores {
    fn put(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        graph: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "job graph put")?;
            self.local
                .kv
                .put(&jobgraph_key(job_id), durable::encode_blob(&graph))
                .await
        })
    }

    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<Option<Vec<u8>>, HaError>> {
        Box::pin(async move {
            let key = jobgraph_key(job_id);
            match self.local.kv.get(&key).await? {
                None => Ok(None),
                Some(b) => durable::decode_blob(&b)
                    .map(Some)
                    .map_err(|reason| HaError::Corrupt {
                        location: self.local.kv.location(&key),
                        reason,
                    }),
            }
        })
    }

    fn remove(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "job graph removal")?;
            self.local.kv.delete(&jobgraph_key(job_id)).await
        })
    }

    fn list_job_ids(&self) -> BoxFuture<'_, Result<Vec<JobId>, HaError>> {
        Box::pin(async move {
            let mut ids: Vec<JobId> = self
                .local
                .kv
                .list("jobgraphs")
                .await?
                .iter()
                .filter_map(|n| JobId::parse(n).ok())
                .collect();
            ids.sort();
            Ok(ids)
        })
    }
}

impl CompletedCheckpointStore for LocalStores {
    fn add(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
        pointer: String,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "completed checkpoint add")?;
            let key = format!(
                "{}/{}",
                checkpoints_key(job_id),
                checkpoint_node_name(checkpoint_id)
            );
            if let Some(existing) = self.local.kv.get(&key).await? {
                if existing == pointer.as_bytes() {
                    return Ok(());
                }
                return Err(HaError::Conflict {
                    what: format!("checkpoint {checkpoint_id} of job {job_id}"),
                });
            }
            self.local.kv.put(&key, pointer.into_bytes()).await
        })
    }

    fn list(&self, job_id: JobId) -> BoxFuture<'_, Result<Vec<(u64, String)>, HaError>> {
        Box::pin(async move {
            let dir = checkpoints_key(job_id);
            let mut out = Vec::new();
            for name in self.local.kv.list(&dir).await? {
                let Some(id) = parse_checkpoint_node_name(&name) else {
                    continue;
                };
                let key = format!("{dir}/{name}");
                if let Some(b) = self.local.kv.get(&key).await? {
                    let pointer = String::from_utf8(b).map_err(|_| HaError::Corrupt {
                        location: self.local.kv.location(&key),
                        reason: "checkpoint pointer is not UTF-8".into(),
                    })?;
                    out.push((id, pointer));
                }
            }
            out.sort_by_key(|(id, _)| *id);
            Ok(out)
        })
    }

    fn remove(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "completed checkpoint removal")?;
            let key = format!(
                "{}/{}",
                checkpoints_key(job_id),
                checkpoint_node_name(checkpoint_id)
            );
            self.local.kv.delete(&key).await
        })
    }

    fn remove_all(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "completed checkpoint removal")?;
            self.local.kv.delete_tree(&checkpoints_key(job_id)).await
        })
    }
}

impl CheckpointIdCounter for LocalStores {
    fn get_and_increment(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<u64, HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local
                .fence(session, "checkpoint id counter increment")?;
            let current = self.read_counter(job_id).await?;
            self.local
                .kv
                .put(&counter_key(job_id), (current + 1).to_string().into_bytes())
                .await?;
            Ok(current)
        })
    }

    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<u64, HaError>> {
        Box::pin(async move { self.read_counter(job_id).await })
    }

    fn set(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        next_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "checkpoint id counter set")?;
            let current = self.read_counter(job_id).await?;
            if next_id < current {
                return Err(HaError::CounterWouldDecrease {
                    job_id,
                    current,
                    requested: next_id,
                });
            }
            self.local
                .kv
                .put(&counter_key(job_id), next_id.to_string().into_bytes())
                .await
        })
    }
}

impl JobResultStore for LocalStores {
    fn create_dirty(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        result: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "job result store create")?;
            if self.read_jrs(job_id).await?.is_some() {
                return Ok(());
            }
            let entry = JobResultEntry {
                state: JobResultState::Dirty,
                result,
                leader_session: session,
            };
            self.local.kv.put(&jrs_key(job_id), to_json(&entry)?).await
        })
    }

    fn mark_clean(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>> {
        Box::pin(async move {
            let _g = self.local.lock.lock().await;
            self.local.fence(session, "job result store mark-clean")?;
            let Some(mut entry) = self.read_jrs(job_id).await? else {
                return Err(HaError::NotFound {
                    what: format!("job result of job {job_id}"),
                });
            };
            if entry.state == JobResultState::Clean {
                return Ok(());
            }
            entry.state = JobResultState::Clean;
            entry.leader_session = session;
            self.local.kv.put(&jrs_key(job_id), to_json(&entry)?).await
        })
    }

    fn has_result(&self, job_id: JobId) -> BoxFuture<'_, Result<bool, HaError>> {
        Box::pin(async move { Ok(self.read_jrs(job_id).await?.is_some()) })
    }

    fn list_dirty(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        self.list_results(true)
    }

    fn list_all(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        self.list_results(false)
    }
}

impl LocalStores {
    fn list_results(
        &self,
        dirty_only: bool,
    ) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            for name in self.local.kv.list("job-result-store").await? {
                let Some(id) = name
                    .strip_suffix(".json")
                    .and_then(|s| JobId::parse(s).ok())
                else {
                    continue;
                };
                if let Some(entry) = self.read_jrs(id).await? {
                    if !dirty_only || entry.state == JobResultState::Dirty {
                        out.push((id, entry.result));
                    }
                }
            }
            out.sort_by_key(|(id, _)| *id);
            Ok(out)
        })
    }
}
