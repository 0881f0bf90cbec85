//! A blocking facade over the HA services (`eddy-coordination`, async) for the thread-based
//! JobManager and TaskManager shells: leader election and retrieval, and the fenced stores.
//!
//! It owns a small tokio runtime; every call blocks the calling thread until ZooKeeper (or the
//! standalone store) answered. What is published as the leader's address is a JSON object with
//! the JobManager's RPC and REST addresses.

use eddy_coordination::{
    close_session, create_ha_services, CloseOutcome, HaConfig, HaError, HaServices, LeaderInfo,
    LeaderSessionId, LeadershipEvent, SessionCredentials, ZooKeeperHaConfig, ZooKeeperHaServices,
};
use eddy_core::config::{Config, HaMode};
use eddy_core::JobId;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

/// What a leading JobManager publishes: where TaskManagers and clients find it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderAddress {
    pub rpc: String,
    pub rest: String,
}

impl LeaderAddress {
    pub fn parse(info: &LeaderInfo) -> Option<(LeaderAddress, u128)> {
        serde_json::from_str(&info.address)
            .ok()
            .map(|a| (a, info.session_id.0))
    }
}

pub struct Ha {
    rt: Runtime,
    services: Arc<dyn HaServices>,
    /// Tells the campaign task to resign its latch and join the election anew.
    rejoin: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedSender<()>>>,
}

/// The ZooKeeper settings of a configuration (HA type `zookeeper`).
fn zk_config(config: &Config) -> Result<ZooKeeperHaConfig, String> {
    let quorum: Vec<String> = config
        .zk_quorum()
        .into_iter()
        .map(|(h, p)| format!("{h}:{p}"))
        .collect();
    if quorum.is_empty() {
        return Err(
            "high-availability.zookeeper.quorum is required for high-availability: zookeeper"
                .into(),
        );
    }
    let storage = config
        .ha_storage_dir()
        .ok_or("high-availability.storageDir is required for high-availability: zookeeper")?;
    let cluster_id = config.ha_cluster_id().trim_start_matches('/').to_string();
    Ok(ZooKeeperHaConfig {
        quorum: quorum.join(","),
        root: config.zk_path_root(),
        cluster_id: if cluster_id.is_empty() {
            "default".into()
        } else {
            cluster_id
        },
        session_timeout: config.zk_session_timeout(),
        connection_timeout: config.zk_connection_timeout(),
        storage_dir: storage,
        tolerate_suspended_connections: config.zk_tolerate_suspended(),
    })
}

fn err(e: HaError) -> String {
    e.to_string()
}

impl Ha {
    /// `None` when `high-availability.type` is `none`. A bad configuration (quorum unreachable,
    /// storage dir not writable) is a one-line error.
    pub fn connect(config: &Config) -> Result<Option<Arc<Ha>>, String> {
        Ha::connect_with(config, None)
    }

    /// [`Ha::connect`], and the ZooKeeper session's id and password are kept in `session_file`
    /// (mode 0600, replaced atomically whenever a new session replaces an expired one), for the
    /// supervisor that closes the session once it saw this process die
    /// ([`close_recorded_session`]). `None` without HA.
    pub fn connect_recording_session(
        config: &Config,
        session_file: &Path,
    ) -> Result<Option<Arc<Ha>>, String> {
        Ha::connect_with(config, Some(session_file))
    }

    fn connect_with(
        config: &Config,
        session_file: Option<&Path>,
    ) -> Result<Option<Arc<Ha>>, String> {
        if config.ha_mode() == HaMode::None {
            return Ok(None);
        }
        let zk = zk_config(config)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ha")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HA runtime: {e}"))?;
        let services: Arc<dyn HaServices> = match session_file {
            None => rt
                .block_on(create_ha_services(HaConfig::ZooKeeper(zk)))
                .map_err(err)?,
            Some(file) => {
                let quorum = zk.quorum.clone();
                let services = rt
                    .block_on(ZooKeeperHaServices::connect_recording_session(zk))
                    .map_err(err)?;
                let mut creds = services
                    .session_credentials()
                    .ok_or("the ZooKeeper session is not recorded")?;
                let record = SessionRecord::new(file, quorum);
                // The first session exists once connect returned: write it before going on.
                let first = creds.borrow_and_update().clone();
                match first {
                    Some(c) => record.write(&c)?,
                    None => return Err("ZooKeeper granted a session whose id was not seen".into()),
                }
                rt.spawn(async move {
                    while creds.changed().await.is_ok() {
                        let Some(c) = creds.borrow_and_update().clone() else {
                            continue;
                        };
                        let r = record.clone();
                        let written = tokio::task::spawn_blocking(move || r.write(&c)).await;
                        if let Ok(Err(e)) = written {
                            tracing::error!("{e}");
                        }
                    }
                });
                Arc::new(services)
            }
        };
        Ok(Some(Arc::new(Ha {
            rt,
            services,
            rejoin: std::sync::Mutex::new(None),
        })))
    }

    /// Without HA (`high-availability.type: none`) but with `high-availability.storageDir`: a
    /// JobManager's job graphs, checkpoint pointers, id counters and job results on local disk
    /// (the `none` backend, `StandaloneHaServices`), so a JobManager restarted by its supervisor
    /// recovers its jobs from their latest checkpoints (Flink cannot). Leadership is granted at
    /// once: there is one JobManager. `None` without a storage directory or with ZooKeeper.
    pub fn connect_local(config: &Config) -> Result<Option<Arc<Ha>>, String> {
        let (HaMode::None, Some(dir)) = (config.ha_mode(), config.ha_storage_dir()) else {
            return Ok(None);
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ha")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the HA runtime: {e}"))?;
        let mut local = eddy_coordination::StandaloneHaConfig::new(Some(dir));
        let cluster_id = config.ha_cluster_id().trim_start_matches('/').to_string();
        if !cluster_id.is_empty() {
            local.cluster_id = cluster_id;
        }
        let services = rt
            .block_on(create_ha_services(HaConfig::None(local)))
            .map_err(err)?;
        Ok(Some(Arc::new(Ha {
            rt,
            services,
            rejoin: std::sync::Mutex::new(None),
        })))
    }

    /// Joins the leader election; `on_event` is called (on the HA runtime) for every grant and
    /// revocation. [`Ha::rejoin`] resigns and campaigns again.
    pub fn campaign(
        &self,
        address: &LeaderAddress,
        on_event: impl Fn(LeadershipEvent) + Send + Sync + 'static,
    ) -> Result<(), String> {
        let addr = serde_json::to_string(address).map_err(|e| e.to_string())?;
        let mut leadership = self
            .rt
            .block_on(self.services.campaign(addr.clone()))
            .map_err(err)?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        if let Ok(mut r) = self.rejoin.lock() {
            *r = Some(tx);
        }
        let services = self.services.clone();
        self.rt.spawn(async move {
            loop {
                tokio::select! {
                    ev = leadership.next_event() => match ev {
                        Some(ev) => on_event(ev),
                        None => return,
                    },
                    req = rx.recv() => {
                        if req.is_none() {
                            return;
                        }
                        leadership.resign().await;
                        on_event(LeadershipEvent::Revoked);
                        loop {
                            match services.campaign(addr.clone()).await {
                                Ok(l) => {
                                    leadership = l;
                                    break;
                                }
                                Err(e) => {
                                    tracing::warn!("cannot rejoin the leader election: {e}; retrying");
                                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                                }
                            }
                        }
                    }
                }
            }
        });
        Ok(())
    }

    /// Gives up leadership (if held) and joins the election again: used when this JobManager
    /// could not confirm that it still leads.
    pub fn rejoin(&self) {
        if let Ok(r) = self.rejoin.lock() {
            if let Some(tx) = r.as_ref() {
                let _ = tx.send(());
            }
        }
    }

    /// Calls `on_change` with the current leader and after every change (on the HA runtime).
    pub fn watch_leader(
        &self,
        on_change: impl Fn(Option<(LeaderAddress, u128)>) + Send + 'static,
    ) -> Result<(), String> {
        let mut watcher = self
            .rt
            .block_on(self.services.leader_watcher())
            .map_err(err)?;
        on_change(watcher.current().as_ref().and_then(LeaderAddress::parse));
        self.rt.spawn(async move {
            while let Ok(info) = watcher.changed().await {
                on_change(info.as_ref().and_then(LeaderAddress::parse));
            }
        });
        Ok(())
    }

    pub fn current_leader(&self) -> Result<Option<(LeaderAddress, u128)>, String> {
        Ok(self
            .rt
            .block_on(self.services.current_leader())
            .map_err(err)?
            .as_ref()
            .and_then(LeaderAddress::parse))
    }

    pub fn put_job_graph(&self, session: u128, job: JobId, bytes: Vec<u8>) -> Result<(), HaError> {
        self.rt.block_on(
            self.services
                .job_graph_store()
                .put(LeaderSessionId(session), job, bytes),
        )
    }

    pub fn job_graphs(&self) -> Result<Vec<(JobId, Vec<u8>)>, HaError> {
        let store = self.services.job_graph_store();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for id in store.list_job_ids().await? {
                if let Some(b) = store.get(id).await? {
                    out.push((id, b));
                }
            }
            Ok(out)
        })
    }

    /// Ids of the stored job graphs (without reading them).
    pub fn job_ids(&self) -> Result<Vec<JobId>, HaError> {
        self.rt
            .block_on(self.services.job_graph_store().list_job_ids())
    }

    /// The version of a job's stored graph (changes with every put); `None`: no graph.
    pub fn job_graph_version(&self, job: JobId) -> Result<Option<String>, HaError> {
        self.rt
            .block_on(self.services.job_graph_store().version(job))
    }

    pub fn job_graph(&self, job: JobId) -> Result<Option<Vec<u8>>, HaError> {
        self.rt.block_on(self.services.job_graph_store().get(job))
    }

    pub fn add_checkpoint(
        &self,
        session: u128,
        job: JobId,
        id: u64,
        pointer: String,
    ) -> Result<(), HaError> {
        self.rt
            .block_on(self.services.completed_checkpoint_store().add(
                LeaderSessionId(session),
                job,
                id,
                pointer,
            ))
    }

    pub fn remove_checkpoint(&self, session: u128, job: JobId, id: u64) -> Result<(), HaError> {
        self.rt
            .block_on(self.services.completed_checkpoint_store().remove(
                LeaderSessionId(session),
                job,
                id,
            ))
    }

    pub fn checkpoints(&self, job: JobId) -> Result<Vec<(u64, String)>, HaError> {
        self.rt
            .block_on(self.services.completed_checkpoint_store().list(job))
    }

    pub fn next_checkpoint_id(&self, job: JobId) -> Result<u64, HaError> {
        self.rt
            .block_on(self.services.checkpoint_id_counter().get(job))
    }

    /// Reserves ids below `next` (never decreases the counter).
    pub fn reserve_checkpoint_ids(
        &self,
        session: u128,
        job: JobId,
        next: u64,
    ) -> Result<(), HaError> {
        match self.rt.block_on(self.services.checkpoint_id_counter().set(
            LeaderSessionId(session),
            job,
            next,
        )) {
            Err(HaError::CounterWouldDecrease { .. }) => Ok(()),
            other => other,
        }
    }

    /// Every recorded job result (dirty or clean): the archive of ended jobs.
    pub fn job_results(&self) -> Result<Vec<(JobId, serde_json::Value)>, HaError> {
        self.rt
            .block_on(self.services.job_result_store().list_all())
    }

    pub fn has_result(&self, job: JobId) -> Result<bool, HaError> {
        self.rt
            .block_on(self.services.job_result_store().has_result(job))
    }

    /// Step 1 of a job's end (Flink's order): records its result as *dirty*. From now on no
    /// leader runs the job again, whatever happens to its checkpoints and job graph.
    pub fn record_dirty_result(
        &self,
        session: u128,
        job: JobId,
        result: serde_json::Value,
    ) -> Result<(), HaError> {
        let s = LeaderSessionId(session);
        // Idempotent: a result recorded by an earlier attempt stays as it is.
        self.rt.block_on(
            self.services
                .job_result_store()
                .create_dirty(s, job, result),
        )
    }

    /// Step 3 of a job's end, after its checkpoints were discarded: removes its HA data (job
    /// graph, checkpoint pointers, counter) and marks the result *clean*.
    pub fn clean_up_ended_job(&self, session: u128, job: JobId) -> Result<(), HaError> {
        let s = LeaderSessionId(session);
        self.rt.block_on(async {
            self.services.cleanup_job(s, job).await?;
            self.services.job_result_store().mark_clean(s, job).await
        })
    }

    /// Finishes the clean-up of jobs whose result is dirty (a leader died between recording the
    /// result and marking it clean): their registered checkpoints' files are deleted, then the
    /// HA data, then the result is marked clean. Never runs a job.
    pub fn cleanup_dirty(&self, session: u128) -> Result<Vec<JobId>, HaError> {
        let s = LeaderSessionId(session);
        self.rt.block_on(async {
            let dirty = self.services.job_result_store().list_dirty().await?;
            let mut done = Vec::new();
            for (job, _) in dirty {
                let store = self.services.completed_checkpoint_store();
                for (id, pointer) in store.list(job).await? {
                    store.remove(s, job, id).await?;
                    // `<dir>/<job>/chk-<n>/_metadata`: the checkpoint is its directory.
                    if let Some(chk) = std::path::Path::new(&pointer).parent() {
                        if let Err(e) = std::fs::remove_dir_all(chk) {
                            if e.kind() != std::io::ErrorKind::NotFound {
                                tracing::warn!(
                                    "job {job}: cannot delete checkpoint {id} at {}: {e}",
                                    chk.display()
                                );
                            }
                        }
                    }
                }
                self.services.cleanup_job(s, job).await?;
                self.services.job_result_store().mark_clean(s, job).await?;
                done.push(job);
            }
            Ok(done)
        })
    }
}

/// Where a JobManager keeps its ZooKeeper session for its supervisor (see
/// [`Ha::connect_recording_session`]).
#[derive(Clone)]
struct SessionRecord {
    file: PathBuf,
    quorum: String,
}

/// The content of a session file (JSON). The password is hex.
#[derive(Serialize, Deserialize)]
struct SessionFile {
    pid: u32,
    quorum: String,
    session_id: String,
    password: String,
    timeout_ms: i32,
}

impl SessionRecord {
    fn new(file: &Path, quorum: String) -> SessionRecord {
        SessionRecord {
            file: file.to_path_buf(),
            quorum,
        }
    }

    /// Replaces the file atomically: a temp file created with mode 0600, fsynced, renamed, and
    /// the directory fsynced.
    fn write(&self, c: &SessionCredentials) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let content = SessionFile {
            pid: std::process::id(),
            quorum: self.quorum.clone(),
            session_id: format!("{:#x}", c.id),
            password: c.password.iter().map(|b| format!("{b:02x}")).collect(),
            timeout_ms: c.timeout_ms,
        };
        let bytes = serde_json::to_vec(&content).map_err(|e| e.to_string())?;
        let dir = self.file.parent().unwrap_or(Path::new("."));
        let name = self
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let fail = |what: &str, p: &Path, e: std::io::Error| {
            format!(
                "cannot {what} the ZooKeeper session file {}: {e}",
                p.display()
            )
        };
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| fail("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| fail("write", &tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, &self.file).map_err(|e| fail("rename into place", &self.file, e))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("fsync the directory of", &self.file, e))?;
        tracing::info!(
            "ZooKeeper session {:#x} recorded in {} for the supervisor",
            c.id,
            self.file.display()
        );
        Ok(())
    }
}

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A session file as written by [`Ha::connect_recording_session`].
pub struct RecordedSession {
    /// The JobManager process that wrote it.
    pub pid: u32,
    pub quorum: String,
    pub credentials: SessionCredentials,
}

impl RecordedSession {
    pub fn read(file: &Path) -> Result<RecordedSession, String> {
        let text = std::fs::read(file).map_err(|e| {
            format!(
                "cannot read the ZooKeeper session file {}: {e}",
                file.display()
            )
        })?;
        let bad = |why: String| {
            format!(
                "the ZooKeeper session file {} is not valid: {why}",
                file.display()
            )
        };
        let f: SessionFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let id = f
            .session_id
            .strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(format!("session_id '{}' is not 0x<hex>", f.session_id)))?
            as i64;
        let password =
            parse_hex(&f.password).ok_or_else(|| bad("password is not hex".to_string()))?;
        Ok(RecordedSession {
            pid: f.pid,
            quorum: f.quorum,
            credentials: SessionCredentials {
                id,
                password,
                timeout_ms: f.timeout_ms,
            },
        })
    }
}

/// Closes the ZooKeeper session recorded in `file`, whose JobManager is known dead (its
/// supervisor saw it exit through `waitpid`, or systemd ran `ExecStopPost`). Returns what
/// happened, for the log.
pub fn close_recorded_session(file: &Path, timeout: Duration) -> Result<String, String> {
    let r = RecordedSession::read(file)?;
    let id = r.credentials.id;
    match close_session(&r.quorum, &r.credentials, timeout)? {
        CloseOutcome::Closed => Ok(format!(
            "closed ZooKeeper session {id:#x} of the dead JobManager (pid {}): its leadership, if any, ends now",
            r.pid
        )),
        CloseOutcome::AlreadyEnded => Ok(format!(
            "ZooKeeper session {id:#x} of the dead JobManager (pid {}) had already ended",
            r.pid
        )),
    }
}
