//! The `zookeeper` HA backend: one ZooKeeper session per process (re-established after
//! expiry), leader election with ephemeral sequential latches, leader retrieval through the
//! ephemeral `leader-info` node, and stores whose every write is a multi-op that first checks that
//! the writer's latch still exists (fencing). Blobs (job graphs) live under the storage dir; only
//! pointers go to ZooKeeper.
//!
//! Layout and design: docs/adr/0003-ha-services.md. Must never write a leader-owned node outside
//! a multi-op guarded by the latch check, and never treat a write whose session ended as applied.

mod election;
mod retrieval;
pub mod session;
mod stores;

use crate::api::{
    BoxFuture, CheckpointIdCounter, CompletedCheckpointStore, ConnectionState, HaServices,
    JobGraphStore, JobResultStore, LeaderInfo, LeaderSessionId, LeaderWatcher, Leadership,
    RetrievalState,
};
use crate::durable;
use crate::error::HaError;
use crate::paths::{normalize_cluster_id, ZkPaths};
use eddy_core::JobId;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};
use zookeeper_client::{Acls, Client, CreateMode, SessionState};

/// Settings of the `zookeeper` backend (plain values; the config module maps Flink's keys here).
#[derive(Clone, Debug)]
pub struct ZooKeeperHaConfig {
    /// `high-availability.zookeeper.quorum`, e.g. `zk1:2181,zk2:2181`.
    pub quorum: String,
    /// `high-availability.zookeeper.path.root`.
    pub root: String,
    /// `high-availability.cluster-id`.
    pub cluster_id: String,
    /// `high-availability.zookeeper.client.session-timeout`.
    pub session_timeout: Duration,
    /// `high-availability.zookeeper.client.connection-timeout`: how long construction (and each
    /// reconnect attempt after a lost session) may take to establish a session, and the idle
    /// timeout of one connection (capped, see [`connection_idle_timeout`]).
    pub connection_timeout: Duration,
    /// `high-availability.storageDir`: job graph blobs go to `<storage-dir>/<cluster-id>/jobgraphs/`.
    pub storage_dir: PathBuf,
    /// `high-availability.zookeeper.client.tolerate-suspended-connections`: keep leadership while
    /// disconnected (SUSPENDED) and revoke only when the session is LOST.
    pub tolerate_suspended_connections: bool,
}

impl ZooKeeperHaConfig {
    /// Flink's defaults (session 60 s, connection 15 s), root `/eddy`, cluster id `default`.
    pub fn new(quorum: impl Into<String>, storage_dir: impl Into<PathBuf>) -> Self {
        ZooKeeperHaConfig {
            quorum: quorum.into(),
            root: "/eddy".into(),
            cluster_id: "default".into(),
            session_timeout: Duration::from_secs(60),
            connection_timeout: Duration::from_secs(15),
            storage_dir: storage_dir.into(),
            tolerate_suspended_connections: false,
        }
    }
}

/// The current ZooKeeper session as seen by the connection manager. `generation` grows by one
/// for every new session.
#[derive(Clone)]
pub(crate) struct ConnSnapshot {
    pub generation: u64,
    pub client: Option<Client>,
    pub state: ConnectionState,
}

/// Leadership currently held by this process: the fencing token, the latch that proves it and the
/// session that owns the latch.
pub(crate) struct Held {
    pub session_id: LeaderSessionId,
    pub latch: String,
    pub client: Client,
}

/// State shared by the services, the background tasks and the stores.
pub(crate) struct Shared {
    pub cfg: ZooKeeperHaConfig,
    pub paths: ZkPaths,
    /// `<storage-dir>/<cluster-id>`
    pub storage: PathBuf,
    pub conn: watch::Receiver<ConnSnapshot>,
    pub held: Mutex<Option<Held>>,
    /// Signalled when a write failed the latch check at ZooKeeper: the election re-checks the latch.
    pub fenced: Notify,
    /// Set by `simulate_crash`: background tasks exit without cleaning up.
    pub crashed: AtomicBool,
}

pub(crate) fn session_ended(e: &zookeeper_client::Error) -> bool {
    use zookeeper_client::Error as E;
    matches!(
        e,
        E::SessionExpired | E::ClientClosed | E::SessionMoved | E::AuthFailed
    )
}

pub(crate) fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

impl Shared {
    /// The current session's client for reads and unfenced housekeeping.
    pub(crate) fn client(&self) -> Result<Client, HaError> {
        let snap = self.conn.borrow();
        match &snap.client {
            Some(c) => Ok(c.clone()),
            None if self.conn.has_changed().is_err() => Err(HaError::Closed),
            None => Err(HaError::NotConnected {
                quorum: self.cfg.quorum.clone(),
            }),
        }
    }

    /// The client and latch of the leadership `session`, or `Fenced` if this process does not hold
    /// leadership under that session id.
    pub(crate) fn fence(
        &self,
        session: LeaderSessionId,
        what: &str,
    ) -> Result<(Client, String), HaError> {
        let held = self.held.lock().map_err(|_| HaError::Closed)?;
        match &*held {
            Some(h) if h.session_id == session => Ok((h.client.clone(), h.latch.clone())),
            _ => Err(HaError::Fenced {
                session,
                what: what.to_string(),
            }),
        }
    }

    pub(crate) fn set_held(&self, held: Option<Held>) {
        if let Ok(mut h) = self.held.lock() {
            *h = held;
        }
    }
}

/// How long one connection may stay silent (no answer, no ping reply) before the client drops it
/// and tries the next server: the configured connection timeout, at most 3/5 of the session
/// timeout. zookeeper-client would otherwise derive it as 2/5 of the session timeout (800 ms for a
/// 2 s session, too short under load), and it ignores a value above 3/5 of the session timeout
/// (falling back to 2/5): a connection silent for longer could not ping in time to keep the
/// session alive anyway. docs/ha.md, "ZooKeeper timeouts", explains the relation.
pub(crate) fn connection_idle_timeout(session: Duration, connection: Duration) -> Duration {
    connection
        .min(session * 3 / 5)
        .max(Duration::from_millis(1))
}

/// Establishes a session within the connection timeout, retrying refused connections.
/// `connect_to` is the quorum itself, or the local relay's connect string (see `session`).
pub(crate) async fn connect_client(
    cfg: &ZooKeeperHaConfig,
    connect_to: &str,
) -> Result<Client, HaError> {
    let deadline = Instant::now() + cfg.connection_timeout;
    let unreachable = || HaError::QuorumUnreachable {
        quorum: cfg.quorum.clone(),
        timeout: cfg.connection_timeout,
    };
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(unreachable());
        }
        let attempt = Client::connector()
            .with_session_timeout(cfg.session_timeout)
            .with_connection_timeout(connection_idle_timeout(
                cfg.session_timeout,
                cfg.connection_timeout,
            ))
            .with_detached()
            .with_fail_eagerly()
            .connect(connect_to);
        match tokio::time::timeout(deadline - now, attempt).await {
            Err(_) => return Err(unreachable()),
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(zookeeper_client::Error::BadArguments(reason))) => {
                return Err(HaError::InvalidQuorum {
                    quorum: cfg.quorum.clone(),
                    reason: reason.to_string(),
                })
            }
            Ok(Err(e)) => {
                tracing::debug!(
                    "ZooKeeper connect to '{}' failed: {e}; retrying",
                    cfg.quorum
                );
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(Duration::from_millis(200))).await;
            }
        }
    }
}

fn map_state(s: SessionState) -> ConnectionState {
    match s {
        SessionState::SyncConnected | SessionState::ConnectedReadOnly => ConnectionState::Connected,
        SessionState::Disconnected => ConnectionState::Suspended,
        SessionState::Expired | SessionState::AuthFailed | SessionState::Closed => {
            ConnectionState::Lost
        }
    }
}

/// Owns the session: publishes its state, and after a LOST session connects a new one (with
/// back-off) until shut down.
async fn run_connection_manager(
    cfg: ZooKeeperHaConfig,
    connect_to: String,
    first: Client,
    conn_tx: watch::Sender<ConnSnapshot>,
    state_tx: watch::Sender<ConnectionState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = first;
    let mut generation = 1u64;
    loop {
        let mut sw = client.state_watcher();
        let mut state = map_state(sw.peek_state());
        loop {
            conn_tx.send_modify(|s| s.state = state);
            state_tx.send_replace(state);
            if state == ConnectionState::Lost {
                break;
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => {
                    conn_tx.send_modify(|s| s.client = None);
                    return;
                }
                st = sw.changed() => {
                    let next = map_state(st);
                    if next != state {
                        info!("ZooKeeper connection to '{}' is {next:?} (session state {st})", cfg.quorum);
                    }
                    state = next;
                }
            }
        }
        conn_tx.send_modify(|s| s.client = None);
        drop(client);
        warn!(
            "ZooKeeper session to '{}' lost; establishing a new one",
            cfg.quorum
        );
        let mut backoff = Duration::from_millis(100);
        client = loop {
            let attempt = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                r = connect_client(&cfg, &connect_to) => r,
            };
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    warn!("{e}; retrying in {} ms", backoff.as_millis());
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        };
        generation += 1;
        info!(
            "new ZooKeeper session {} to '{}'",
            client.session_id(),
            cfg.quorum
        );
        conn_tx.send_replace(ConnSnapshot {
            generation,
            client: Some(client.clone()),
            state: ConnectionState::Connected,
        });
    }
}

/// The `zookeeper` backend. See the module doc and docs/adr/0003-ha-services.md.
pub struct ZooKeeperHaServices {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    state_rx: watch::Receiver<ConnectionState>,
    campaigning: Arc<AtomicBool>,
    campaign_done: Mutex<Option<watch::Receiver<bool>>>,
    retrieval: tokio::sync::Mutex<Option<watch::Receiver<RetrievalState>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// With `connect_recording_session`: the relay that learns the session's credentials.
    relay: Option<session::SessionRelay>,
}

impl ZooKeeperHaServices {
    /// Validates the settings, checks that the storage dir is writable (create, fsync and delete a
    /// probe file), connects within the connection timeout and creates the root paths. A bad
    /// configuration fails here, before anything starts.
    pub async fn connect(config: ZooKeeperHaConfig) -> Result<Self, HaError> {
        Self::connect_with(config, false).await
    }

    /// [`ZooKeeperHaServices::connect`], and every session this process establishes is published
    /// with its id and password ([`ZooKeeperHaServices::session_credentials`]), so that the
    /// process's supervisor can close it once it saw the process die (see `session`).
    pub async fn connect_recording_session(config: ZooKeeperHaConfig) -> Result<Self, HaError> {
        Self::connect_with(config, true).await
    }

    async fn connect_with(
        config: ZooKeeperHaConfig,
        record_session: bool,
    ) -> Result<Self, HaError> {
        let paths = ZkPaths::new(&config.root, &config.cluster_id)?;
        let cluster_id = normalize_cluster_id(&config.cluster_id)?;
        let storage = config.storage_dir.join(&cluster_id);
        let probe_dir = storage.join("jobgraphs");
        let storage_dir = config.storage_dir.clone();
        durable::blocking(move || {
            durable::probe_writable(&probe_dir).map_err(|e| match e {
                HaError::StorageDirNotWritable { source, .. } => HaError::StorageDirNotWritable {
                    path: storage_dir,
                    source,
                },
                other => other,
            })
        })
        .await?;

        let relay = if record_session {
            Some(
                session::SessionRelay::start(&config.quorum, config.connection_timeout)
                    .await
                    .map_err(|e| {
                        HaError::io("bind the ZooKeeper session relay on", "127.0.0.1", e)
                    })?,
            )
        } else {
            None
        };
        let connect_to = relay
            .as_ref()
            .map_or(config.quorum.clone(), |r| r.connect_string.clone());
        let client = connect_client(&config, &connect_to).await?;
        let create_dirs = async {
            for dir in paths.static_dirs() {
                client
                    .mkdir(&dir, &persistent())
                    .await
                    .map_err(|e| HaError::zk("create", dir.clone(), e))?;
            }
            Ok::<(), HaError>(())
        };
        match tokio::time::timeout(config.connection_timeout, create_dirs).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(HaError::QuorumUnreachable {
                    quorum: config.quorum.clone(),
                    timeout: config.connection_timeout,
                })
            }
        }
        info!(
            "HA services: ZooKeeper '{}' (session {}, timeout {} ms), root {}, storage {}",
            config.quorum,
            client.session_id(),
            client.session_timeout().as_millis(),
            paths.base(),
            storage.display()
        );

        let (conn_tx, conn_rx) = watch::channel(ConnSnapshot {
            generation: 1,
            client: Some(client.clone()),
            state: ConnectionState::Connected,
        });
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let (shutdown, _) = watch::channel(false);
        let manager = tokio::spawn(run_connection_manager(
            config.clone(),
            connect_to,
            client,
            conn_tx,
            state_tx,
            shutdown.subscribe(),
        ));
        let shared = Arc::new(Shared {
            cfg: config,
            paths,
            storage,
            conn: conn_rx,
            held: Mutex::new(None),
            fenced: Notify::new(),
            crashed: AtomicBool::new(false),
        });
        Ok(ZooKeeperHaServices {
            shared,
            shutdown,
            state_rx,
            campaigning: Arc::new(AtomicBool::new(false)),
            campaign_done: Mutex::new(None),
            retrieval: tokio::sync::Mutex::new(None),
            tasks: Mutex::new(vec![manager]),
            relay,
        })
    }

    /// With [`ZooKeeperHaServices::connect_recording_session`]: the credentials of the current
    /// session (updated when a new session replaces an expired one); otherwise `None`.
    pub fn session_credentials(
        &self,
    ) -> Option<watch::Receiver<Option<session::SessionCredentials>>> {
        self.relay.as_ref().map(|r| r.credentials())
    }

    /// The ZooKeeper node under which this cluster's data lives (`<root>/<cluster-id>`).
    pub fn base_path(&self) -> &str {
        self.shared.paths.base()
    }

    /// Fault injection: behaves like a crash of this process. Background tasks stop without
    /// resigning or deleting anything and the connection is dropped without closing the session,
    /// so ZooKeeper removes the latch only when the session times out.
    pub async fn simulate_crash(&self) {
        self.shared.crashed.store(true, Ordering::SeqCst);
        self.shared.set_held(None);
        self.shutdown_and_wait().await;
    }

    async fn shutdown_and_wait(&self) {
        self.shutdown.send_replace(true);
        let done = self.campaign_done.lock().ok().and_then(|mut d| d.take());
        if let Some(mut done) = done {
            let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
        }
        let tasks: Vec<JoinHandle<()>> = self
            .tasks
            .lock()
            .map(|mut t| t.drain(..).collect())
            .unwrap_or_default();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }

    fn stores(&self) -> Arc<stores::ZkStores> {
        Arc::new(stores::ZkStores {
            shared: self.shared.clone(),
        })
    }
}

impl HaServices for ZooKeeperHaServices {
    fn kind(&self) -> &'static str {
        "zookeeper"
    }

    fn campaign(&self, address: String) -> BoxFuture<'_, Result<Leadership, HaError>> {
        Box::pin(async move {
            if *self.shutdown.borrow() {
                return Err(HaError::Closed);
            }
            if self.campaigning.swap(true, Ordering::SeqCst) {
                return Err(HaError::AlreadyCampaigning);
            }
            let (ev_tx, ev_rx) = mpsc::unbounded_channel();
            let (cur_tx, cur_rx) = watch::channel(None);
            let (resign_tx, resign_rx) = watch::channel(false);
            let (done_tx, done_rx) = watch::channel(false);
            if let Ok(mut d) = self.campaign_done.lock() {
                *d = Some(done_rx);
            }
            let campaign = election::Campaign::new(
                self.shared.clone(),
                address,
                ev_tx,
                cur_tx,
                election::Stop::new(resign_rx, self.shutdown.subscribe()),
            );
            let flag = self.campaigning.clone();
            let task = tokio::spawn(async move {
                campaign.run().await;
                flag.store(false, Ordering::SeqCst);
                done_tx.send_replace(true);
            });
            Ok(Leadership::new(ev_rx, cur_rx, resign_tx, task))
        })
    }

    fn leader_watcher(&self) -> BoxFuture<'_, Result<LeaderWatcher, HaError>> {
        Box::pin(async move {
            let mut rx = {
                let mut r = self.retrieval.lock().await;
                match &*r {
                    Some(rx) => rx.clone(),
                    None => {
                        if *self.shutdown.borrow() {
                            return Err(HaError::Closed);
                        }
                        let (tx, rx) = watch::channel(RetrievalState::Unknown);
                        let task = tokio::spawn(retrieval::run(
                            self.shared.conn.clone(),
                            self.shared.paths.leader_info(),
                            tx,
                            self.shutdown.subscribe(),
                        ));
                        if let Ok(mut t) = self.tasks.lock() {
                            t.push(task);
                        }
                        *r = Some(rx.clone());
                        rx
                    }
                }
            };
            let _ = tokio::time::timeout(
                self.shared.cfg.connection_timeout,
                rx.wait_for(|s| *s != RetrievalState::Unknown),
            )
            .await;
            Ok(LeaderWatcher::new(rx))
        })
    }

    fn current_leader(&self) -> BoxFuture<'_, Result<Option<LeaderInfo>, HaError>> {
        Box::pin(async move {
            let client = self.shared.client()?;
            let path = self.shared.paths.leader_info();
            match client.get_data(&path).await {
                Ok((data, _)) => Ok(retrieval::parse_leader_info(&path, &data)),
                Err(zookeeper_client::Error::NoNode) => Ok(None),
                Err(e) => Err(HaError::zk("read", path, e)),
            }
        })
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.state_rx.clone()
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
        Box::pin(async move { self.stores().cleanup_job(session, job_id).await })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.shutdown_and_wait().await })
    }
}

#[cfg(test)]
mod tests {
    use super::connection_idle_timeout;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn connection_idle_timeout_is_the_configured_one_up_to_three_fifths_of_the_session() {
        // Flink's defaults: session 60 s, connection 15 s -> 15 s (not derived from the session).
        assert_eq!(connection_idle_timeout(ms(60_000), ms(15_000)), ms(15_000));
        // A 2 s session with a 1 s connection timeout: 1 s, not the library's derived 800 ms.
        assert_eq!(connection_idle_timeout(ms(2_000), ms(1_000)), ms(1_000));
        // Above 3/5 of the session the library would fall back to 2/5; Eddy caps at 3/5 instead.
        assert_eq!(connection_idle_timeout(ms(2_000), ms(15_000)), ms(1_200));
        assert_eq!(connection_idle_timeout(ms(2_000), ms(5_000)), ms(1_200));
    }
}
