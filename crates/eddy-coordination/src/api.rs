//! The HA services API shared by both backends (`none` and `zookeeper`): leader session ids,
//! leader election and retrieval handles, and the four fenced stores as dyn-compatible traits.
//!
//! This module holds no IO. It must never let a write through without a leader session id: every
//! mutating store method takes the `LeaderSessionId` that the caller was granted, and a backend
//! rejects it with `HaError::Fenced` unless that session still holds leadership.

use crate::error::HaError;
use eddy_core::JobId;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// A boxed, sendable future: the return type of the dyn-compatible async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The fencing token of one leadership term: 128 random bits, shown as 32 lowercase hex
/// characters. A new one is drawn every time leadership is granted (except by the `none` backend,
/// which always uses [`LeaderSessionId::STANDALONE`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaderSessionId(pub u128);

impl LeaderSessionId {
    /// The fixed session id of the `none` backend (Flink's `DEFAULT_LEADER_ID`, all zeros).
    pub const STANDALONE: LeaderSessionId = LeaderSessionId(0);

    /// A fresh random, non-zero session id.
    pub fn random() -> Self {
        loop {
            let v = eddy_core::ids::random_u128();
            if v != 0 {
                return LeaderSessionId(v);
            }
        }
    }

    /// Parses the 32-hex-character form; the error names the value.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid leader session id '{s}': expected 32 hexadecimal characters"
            ));
        }
        u128::from_str_radix(s, 16)
            .map(LeaderSessionId)
            .map_err(|_| {
                format!("invalid leader session id '{s}': expected 32 hexadecimal characters")
            })
    }
}

impl fmt::Display for LeaderSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for LeaderSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LeaderSessionId({self})")
    }
}

impl Serialize for LeaderSessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LeaderSessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LeaderSessionId::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Who leads: the leader's RPC address and its session id (fencing token). This is what
/// `<root>/<cluster-id>/leader-info` holds, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    pub address: String,
    pub session_id: LeaderSessionId,
}

/// What a contender is told about its leadership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeadershipEvent {
    /// This process now leads; tag every write and leader-issued message with `session_id`.
    Granted { session_id: LeaderSessionId },
    /// This process no longer leads: stop acting as leader at once.
    Revoked,
}

/// State of the connection to the coordination service, Curator's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connected with a live session.
    Connected,
    /// Disconnected, but the session may still be alive (ZooKeeper `Disconnected`).
    Suspended,
    /// The session expired or was closed; ephemeral nodes are gone.
    Lost,
}

/// A running campaign, returned by [`HaServices::campaign`]. Events arrive in order; a
/// `Granted` is always followed by a `Revoked` before the next `Granted`. Dropping it (or
/// [`Leadership::resign`]) leaves the election: leadership, if held, is given up and the latch
/// deleted.
pub struct Leadership {
    events: mpsc::UnboundedReceiver<LeadershipEvent>,
    current: watch::Receiver<Option<LeaderSessionId>>,
    resign: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Leadership {
    pub(crate) fn new(
        events: mpsc::UnboundedReceiver<LeadershipEvent>,
        current: watch::Receiver<Option<LeaderSessionId>>,
        resign: watch::Sender<bool>,
        task: JoinHandle<()>,
    ) -> Self {
        Leadership {
            events,
            current,
            resign,
            task: Some(task),
        }
    }

    /// The next event; `None` once the campaign has ended (resigned or services closed).
    pub async fn next_event(&mut self) -> Option<LeadershipEvent> {
        self.events.recv().await
    }

    /// The next event if one is queued.
    pub fn try_next_event(&mut self) -> Option<LeadershipEvent> {
        self.events.try_recv().ok()
    }

    /// The session id this process currently leads with, if it leads.
    pub fn current_session(&self) -> Option<LeaderSessionId> {
        *self.current.borrow()
    }

    /// Leaves the election and waits until leadership is given up and the latch is deleted.
    pub async fn resign(mut self) {
        let _ = self.resign.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        let _ = self.resign.send(true);
    }
}

/// What the retrieval side knows about the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RetrievalState {
    /// Not read yet.
    Unknown,
    /// Read: the leader, or `None` when there is no leader.
    Known(Option<LeaderInfo>),
}

/// Watches who leads, from [`HaServices::leader_watcher`]: TaskManagers, standby JobManagers and
/// the CLI use it to find the leader.
pub struct LeaderWatcher {
    rx: watch::Receiver<RetrievalState>,
    last: Option<LeaderInfo>,
}

impl LeaderWatcher {
    pub(crate) fn new(mut rx: watch::Receiver<RetrievalState>) -> Self {
        let last = match &*rx.borrow_and_update() {
            RetrievalState::Known(info) => info.clone(),
            RetrievalState::Unknown => None,
        };
        LeaderWatcher { rx, last }
    }

    /// The leader as last seen; `None` means "no leader".
    pub fn current(&self) -> Option<LeaderInfo> {
        self.last.clone()
    }

    /// Waits until the leader changes (a new address or session id, or "no leader") and returns
    /// the new value. `Err(HaError::Closed)` once the services are closed.
    pub async fn changed(&mut self) -> Result<Option<LeaderInfo>, HaError> {
        loop {
            self.rx.changed().await.map_err(|_| HaError::Closed)?;
            let now = match &*self.rx.borrow_and_update() {
                RetrievalState::Known(info) => info.clone(),
                RetrievalState::Unknown => continue,
            };
            if now != self.last {
                self.last = now.clone();
                return Ok(now);
            }
        }
    }
}

/// JobGraphs of submitted jobs. The bytes are opaque here (the Dispatcher serializes the graph).
/// The ZooKeeper backend writes the blob under the storage dir and keeps a pointer in ZooKeeper.
pub trait JobGraphStore: Send + Sync {
    /// Stores (or replaces) the job graph of `job_id`. Fenced.
    fn put(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        graph: Vec<u8>,
    ) -> BoxFuture<'_, Result<(), HaError>>;
    /// The job graph of `job_id`, verified (length and checksum); `None` if there is none.
    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<Option<Vec<u8>>, HaError>>;
    /// Removes the job graph of `job_id`; removing a missing one is not an error. Fenced.
    fn remove(&self, session: LeaderSessionId, job_id: JobId)
        -> BoxFuture<'_, Result<(), HaError>>;
    /// Ids of all stored job graphs, sorted.
    fn list_job_ids(&self) -> BoxFuture<'_, Result<Vec<JobId>, HaError>>;
    /// A token that changes whenever the job graph of `job_id` is put again (`None`: no graph),
    /// so a standby that keeps the graph parsed in memory re-reads it only when it changed. The
    /// ZooKeeper backend answers from the pointer node alone (each put writes a new blob); this
    /// default reads the graph and hashes it.
    fn version(&self, job_id: JobId) -> BoxFuture<'_, Result<Option<String>, HaError>> {
        Box::pin(async move {
            Ok(self
                .get(job_id)
                .await?
                .map(|g| format!("{}-{:08x}", g.len(), crate::durable::crc32(&g))))
        })
    }
}

/// Pointers (e.g. `<checkpoint-dir>/<job-id>/chk-<n>`) to completed checkpoints, per job. The
/// checkpoint data itself is written elsewhere.
pub trait CompletedCheckpointStore: Send + Sync {
    /// Registers a completed checkpoint. Adding the same id with the same pointer again is a no-op;
    /// with a different pointer it is a `Conflict`. Fenced.
    fn add(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
        pointer: String,
    ) -> BoxFuture<'_, Result<(), HaError>>;
    /// All registered checkpoints of `job_id` as `(id, pointer)`, ascending by id.
    fn list(&self, job_id: JobId) -> BoxFuture<'_, Result<Vec<(u64, String)>, HaError>>;
    /// Unregisters one checkpoint; a missing one is not an error. Fenced.
    fn remove(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        checkpoint_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>>;
    /// Unregisters all checkpoints of `job_id`. Fenced.
    fn remove_all(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>>;
}

/// Checkpoint ids per job, strictly increasing across leaders and restarts. Ids start at 1.
pub trait CheckpointIdCounter: Send + Sync {
    /// Returns the next id and advances the counter (compare-and-set, retried on conflict). Fenced.
    fn get_and_increment(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<u64, HaError>>;
    /// The id the next `get_and_increment` would return.
    fn get(&self, job_id: JobId) -> BoxFuture<'_, Result<u64, HaError>>;
    /// Sets the next id (e.g. after restoring a savepoint); refuses to go backwards. Fenced.
    fn set(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        next_id: u64,
    ) -> BoxFuture<'_, Result<(), HaError>>;
}

/// A job's globally terminal result (FLIP-194). An entry is *dirty* until the job's HA data has
/// been cleaned up, then *clean*. Clean entries are kept, so a recovered leader never re-runs a
/// finished job.
pub trait JobResultStore: Send + Sync {
    /// Records the result of a globally terminal job as dirty. If an entry exists already (dirty
    /// or clean) it is kept as it is and this is a no-op. Fenced.
    fn create_dirty(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
        result: serde_json::Value,
    ) -> BoxFuture<'_, Result<(), HaError>>;
    /// Marks the entry clean; `NotFound` if there is none; clean already is a no-op. Fenced.
    fn mark_clean(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>>;
    /// True if an entry (dirty or clean) exists.
    fn has_result(&self, job_id: JobId) -> BoxFuture<'_, Result<bool, HaError>>;
    /// Dirty entries `(job id, result)`, sorted by job id: the cleanups a new leader must finish.
    fn list_dirty(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>>;
    /// Every entry, dirty or clean, `(job id, result)`, sorted by job id: the archive of ended
    /// jobs a new leader serves.
    fn list_all(&self) -> BoxFuture<'_, Result<Vec<(JobId, serde_json::Value)>, HaError>>;
}

/// The HA services of one process. Construct with [`crate::create_ha_services`],
/// [`crate::StandaloneHaServices::new`] or [`crate::ZooKeeperHaServices::connect`].
pub trait HaServices: Send + Sync {
    /// `"none"` or `"zookeeper"`.
    fn kind(&self) -> &'static str;

    /// Joins the leader election with this process's RPC `address`. One campaign per process at a
    /// time (`AlreadyCampaigning` otherwise). On winning, `leader-info` is published with a new
    /// session id before `Granted` is delivered.
    fn campaign(&self, address: String) -> BoxFuture<'_, Result<Leadership, HaError>>;

    /// A watcher of `leader-info`; its `current()` is already read when this returns.
    fn leader_watcher(&self) -> BoxFuture<'_, Result<LeaderWatcher, HaError>>;

    /// One-shot read of the current leader; `None` means no leader.
    fn current_leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, HaError>>;

    /// Connection state to the coordination service (always `Connected` for `none`).
    fn connection_state(&self) -> watch::Receiver<ConnectionState>;

    fn job_graph_store(&self) -> Arc<dyn JobGraphStore>;
    fn completed_checkpoint_store(&self) -> Arc<dyn CompletedCheckpointStore>;
    fn checkpoint_id_counter(&self) -> Arc<dyn CheckpointIdCounter>;
    fn job_result_store(&self) -> Arc<dyn JobResultStore>;

    /// Deletes all HA data of a globally terminal job (job graph, checkpoint pointers, checkpoint
    /// counter). Refuses with `NoJobResult` unless the job result store has its entry. Idempotent.
    /// Fenced. The caller marks the result clean afterwards.
    fn cleanup_job(
        &self,
        session: LeaderSessionId,
        job_id: JobId,
    ) -> BoxFuture<'_, Result<(), HaError>>;

    /// Resigns leadership (deleting the latch), stops background tasks and ends the session.
    fn close(&self) -> BoxFuture<'_, ()>;
}
