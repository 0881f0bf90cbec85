//! A blocking facade over the HA services (`eddy-coordination`, async) for the thread-based
//! JobManager and TaskManager shells: leader election and retrieval, and the fenced stores.
//!
//! It owns a small tokio runtime; every call blocks the calling thread until ZooKeeper (or the
//! standalone store) answered. What is published as the leader's address is a JSON object with
//! the JobManager's RPC and REST addresses.

use eddy_coordination::{
    create_ha_services, HaConfig, HaError, HaServices, LeaderInfo, LeaderSessionId,
    LeadershipEvent, ZooKeeperHaConfig,
};
use eddy_core::config::{Config, HaMode};
use eddy_core::JobId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
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
        let services = rt
            .block_on(create_ha_services(HaConfig::ZooKeeper(zk)))
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
