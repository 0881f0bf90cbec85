//! Leader election on ZooKeeper: each contender creates an ephemeral sequential node
//! `<root>/<cluster-id>/leader/latch-<seq>`; the lowest sequence leads; every other contender
//! watches only its predecessor (no herd effect). The winner draws a new leader session id,
//! publishes `leader-info` in a multi-op guarded by its latch, and only then reports `Granted`.
//! Leadership is revoked on LOST always and on SUSPENDED unless suspended connections are
//! tolerated; after a revoke the contender re-joins at the back of the queue (with a new session
//! after LOST).
//!
//! Must never report `Granted` without having published `leader-info` under the latch check, and
//! must clear the held leadership (which the stores fence on) before reporting `Revoked`.

use super::{persistent, session_ended, ConnSnapshot, Held, Shared};
use crate::api::{ConnectionState, LeaderInfo, LeaderSessionId, LeadershipEvent};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use zookeeper_client::{Acls, Client, CreateMode, EventType, MultiWriteError};

/// Completes when the campaign is resigned (or its handle dropped) or the services shut down.
pub(crate) struct Stop {
    resign: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

impl Stop {
    pub(crate) fn new(resign: watch::Receiver<bool>, shutdown: watch::Receiver<bool>) -> Self {
        Stop { resign, shutdown }
    }

    pub(crate) async fn wait(&mut self) {
        tokio::select! {
            _ = self.resign.wait_for(|v| *v) => {}
            _ = self.shutdown.wait_for(|v| *v) => {}
        }
    }
}

enum Outcome {
    /// Resigned or shut down: leave the election.
    Stopped,
    /// The session ended: re-join with the next session.
    SessionLost,
    /// Same session, but the latch must be replaced (it vanished, or leadership was revoked on
    /// SUSPENDED): delete it and re-join at the back.
    Rejoin,
}

pub(crate) struct Campaign {
    shared: Arc<Shared>,
    address: String,
    /// Data of our latch nodes, to find our own node after a connection loss during create.
    token: String,
    events: mpsc::UnboundedSender<LeadershipEvent>,
    current: watch::Sender<Option<LeaderSessionId>>,
    stop: Stop,
    conn: watch::Receiver<ConnSnapshot>,
}

const RETRY_PAUSE: Duration = Duration::from_millis(200);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(3);

impl Campaign {
    pub(crate) fn new(
        shared: Arc<Shared>,
        address: String,
        events: mpsc::UnboundedSender<LeadershipEvent>,
        current: watch::Sender<Option<LeaderSessionId>>,
        stop: Stop,
    ) -> Self {
        let conn = shared.conn.clone();
        Campaign {
            shared,
            address,
            token: format!("{:032x}", eddy_core::ids::random_u128()),
            events,
            current,
            stop,
            conn,
        }
    }

    pub(crate) async fn run(mut self) {
        let mut min_gen = 0u64;
        loop {
            let Some((gen, client)) = self.wait_connected(min_gen).await else {
                break;
            };
            let latch = match self.create_latch(&client, gen).await {
                Some(Ok(latch)) => latch,
                Some(Err(Outcome::SessionLost)) => {
                    min_gen = gen + 1;
                    continue;
                }
                Some(Err(_)) | None => break,
            };
            info!("joined the leader election as {latch} ({})", self.address);
            match self.contend(&client, gen, &latch).await {
                Outcome::Stopped => {
                    if !self.shared.crashed.load(Ordering::SeqCst) {
                        self.leave(&client, &latch).await;
                    }
                    break;
                }
                Outcome::SessionLost => min_gen = gen + 1,
                Outcome::Rejoin => {
                    self.leave(&client, &latch).await;
                    min_gen = gen;
                }
            }
        }
        self.revoke();
        debug!("left the leader election ({})", self.address);
    }

    /// Waits for a connected session of generation >= `min_gen`; `None` when stopped or closed.
    async fn wait_connected(&mut self, min_gen: u64) -> Option<(u64, Client)> {
        loop {
            {
                let snap = self.conn.borrow_and_update();
                if snap.generation >= min_gen && snap.state == ConnectionState::Connected {
                    if let Some(c) = &snap.client {
                        return Some((snap.generation, c.clone()));
                    }
                }
            }
            tokio::select! {
                _ = self.stop.wait() => return None,
                r = self.conn.changed() => if r.is_err() { return None },
            }
        }
    }

    /// Sleeps briefly; returns an outcome if the campaign must end or the session is gone.
    async fn pause(&mut self, gen: u64) -> Option<Outcome> {
        tokio::select! {
            _ = self.stop.wait() => Some(Outcome::Stopped),
            _ = tokio::time::sleep(RETRY_PAUSE) => {
                let snap = self.conn.borrow();
                (snap.generation != gen || snap.state == ConnectionState::Lost).then_some(Outcome::SessionLost)
            }
        }
    }

    async fn create_latch(&mut self, client: &Client, gen: u64) -> Option<Result<String, Outcome>> {
        let prefix = self.shared.paths.latch_prefix();
        let opts = CreateMode::EphemeralSequential.with_acls(Acls::anyone_all());
        loop {
            match client.create(&prefix, self.token.as_bytes(), &opts).await {
                Ok((_, seq)) => return Some(Ok(format!("{prefix}{seq}"))),
                Err(zookeeper_client::Error::NoNode) => {
                    let dir = self.shared.paths.leader_dir();
                    if let Err(e) = client.mkdir(&dir, &persistent()).await {
                        warn!("cannot create '{dir}': {e}");
                    }
                    continue;
                }
                Err(e) if session_ended(&e) => return Some(Err(Outcome::SessionLost)),
                Err(e) => {
                    warn!("creating the election latch under '{prefix}' failed: {e}; retrying");
                    if let Some(found) = self.find_own_latch(client).await {
                        return Some(Ok(found));
                    }
                }
            }
            match self.pause(gen).await {
                Some(Outcome::Stopped) => return None,
                Some(o) => return Some(Err(o)),
                None => {}
            }
        }
    }

    /// After a connection loss during create: the node may exist; find it by owner and token.
    async fn find_own_latch(&self, client: &Client) -> Option<String> {
        let dir = self.shared.paths.leader_dir();
        let children = client.list_children(&dir).await.ok()?;
        for name in children.iter().filter(|n| n.starts_with("latch-")) {
            let path = format!("{dir}/{name}");
            if let Ok((data, stat)) = client.get_data(&path).await {
                if stat.ephemeral_owner == client.session_id().0 && data == self.token.as_bytes() {
                    return Some(path);
                }
            }
        }
        None
    }

    async fn contend(&mut self, client: &Client, gen: u64, latch: &str) -> Outcome {
        let dir = self.shared.paths.leader_dir();
        let own = latch.rsplit('/').next().unwrap_or(latch).to_string();
        loop {
            let children = match client.list_children(&dir).await {
                Ok(c) => c,
                Err(e) if session_ended(&e) => return Outcome::SessionLost,
                Err(e) => {
                    debug!("listing '{dir}' failed: {e}; retrying");
                    if let Some(o) = self.pause(gen).await {
                        return o;
                    }
                    continue;
                }
            };
            let mut latches: Vec<(i64, String)> = children
                .into_iter()
                .filter_map(|n| {
                    n.strip_prefix("latch-")
                        .and_then(|s| s.parse::<i64>().ok())
                        .map(|seq| (seq, n))
                })
                .collect();
            latches.sort();
            let Some(pos) = latches.iter().position(|(_, n)| *n == own) else {
                warn!("election latch {latch} disappeared; re-joining the election");
                return Outcome::Rejoin;
            };
            if pos == 0 {
                return self.lead(client, gen, latch).await;
            }
            let pred = format!("{dir}/{}", latches[pos - 1].1);
            match client.check_and_watch_stat(&pred).await {
                Ok((None, _)) => continue,
                Ok((Some(_), watcher)) => {
                    debug!("{latch} waits for its predecessor {pred}");
                    tokio::select! {
                        _ = self.stop.wait() => return Outcome::Stopped,
                        ev = watcher.changed() => {
                            if ev.event_type == EventType::Session && ev.session_state.is_terminated() {
                                return Outcome::SessionLost;
                            }
                        }
                        _ = wait_lost(&mut self.conn, gen) => return Outcome::SessionLost,
                    }
                }
                Err(e) if session_ended(&e) => return Outcome::SessionLost,
                Err(e) => {
                    debug!("watching '{pred}' failed: {e}; retrying");
                    if let Some(o) = self.pause(gen).await {
                        return o;
                    }
                }
            }
        }
    }

    async fn lead(&mut self, client: &Client, gen: u64, latch: &str) -> Outcome {
        let session_id = LeaderSessionId::random();
        let info = LeaderInfo {
            address: self.address.clone(),
            session_id,
        };
        let data = match serde_json::to_vec(&info) {
            Ok(d) => d,
            Err(e) => {
                warn!("cannot encode leader info: {e}");
                return Outcome::Stopped;
            }
        };
        loop {
            match publish_leader_info(&self.shared, client, latch, &data).await {
                Ok(()) => break,
                Err(Publish::Fenced) => {
                    warn!("latch {latch} vanished before leader-info was published; re-joining");
                    return Outcome::Rejoin;
                }
                Err(Publish::SessionLost) => return Outcome::SessionLost,
                Err(Publish::Other(e)) => {
                    warn!("publishing leader-info failed: {e}; retrying");
                    if let Some(o) = self.pause(gen).await {
                        return o;
                    }
                }
            }
        }
        self.shared.set_held(Some(Held {
            session_id,
            latch: latch.to_string(),
            client: client.clone(),
        }));
        self.current.send_replace(Some(session_id));
        let _ = self.events.send(LeadershipEvent::Granted { session_id });
        info!(
            "leadership granted to {} with session {session_id} (latch {latch})",
            self.address
        );

        let tolerate = self.shared.cfg.tolerate_suspended_connections;
        enum Why {
            Stopped,
            Lost,
            LatchGone,
            Suspended,
        }
        let already = {
            let snap = self.conn.borrow();
            if snap.generation != gen || snap.state == ConnectionState::Lost {
                Some(Why::Lost)
            } else if snap.state == ConnectionState::Suspended && !tolerate {
                Some(Why::Suspended)
            } else {
                None
            }
        };
        let why = if let Some(why) = already {
            why
        } else {
            loop {
                tokio::select! {
                    _ = self.stop.wait() => break Why::Stopped,
                    _ = self.shared.fenced.notified() => {
                        match client.check_stat(latch).await {
                            Ok(None) => break Why::LatchGone,
                            Err(e) if session_ended(&e) => break Why::Lost,
                            _ => {}
                        }
                    }
                    s = next_state(&mut self.conn, gen) => match s {
                        ConnectionState::Lost => break Why::Lost,
                        ConnectionState::Suspended if !tolerate => break Why::Suspended,
                        _ => {}
                    }
                }
            }
        };
        self.revoke();
        match why {
            Why::Stopped => Outcome::Stopped,
            Why::Lost => {
                warn!(
                    "ZooKeeper session lost: leadership of {} revoked",
                    self.address
                );
                Outcome::SessionLost
            }
            Why::LatchGone => {
                warn!(
                    "latch {latch} is gone: leadership of {} revoked",
                    self.address
                );
                Outcome::Rejoin
            }
            Why::Suspended => {
                warn!(
                    "ZooKeeper connection suspended: leadership of {} revoked",
                    self.address
                );
                loop {
                    tokio::select! {
                        _ = self.stop.wait() => return Outcome::Stopped,
                        s = next_state(&mut self.conn, gen) => match s {
                            ConnectionState::Connected => return Outcome::Rejoin,
                            ConnectionState::Lost => return Outcome::SessionLost,
                            ConnectionState::Suspended => {}
                        }
                    }
                }
            }
        }
    }

    /// Clears the held leadership (stores fence on it) and then reports `Revoked`, if leading.
    fn revoke(&mut self) {
        if self.current.borrow().is_some() {
            self.shared.set_held(None);
            self.current.send_replace(None);
            let _ = self.events.send(LeadershipEvent::Revoked);
        }
    }

    /// Deletes our `leader-info` (only if this session owns it) and our latch; best effort.
    async fn leave(&self, client: &Client, latch: &str) {
        let info_path = self.shared.paths.leader_info();
        let work = async {
            if let Ok(Some(stat)) = client.check_stat(&info_path).await {
                if stat.ephemeral_owner == client.session_id().0 {
                    let mut w = client.new_multi_writer();
                    if w.add_check_version(latch, 0).is_ok()
                        && w.add_delete(&info_path, Some(stat.version)).is_ok()
                    {
                        let _ = w.commit().await;
                    }
                }
            }
            match client.delete(latch, None).await {
                Ok(()) | Err(zookeeper_client::Error::NoNode) => {}
                Err(e) => debug!("deleting latch {latch} failed: {e}"),
            }
        };
        let _ = tokio::time::timeout(CLEANUP_TIMEOUT, work).await;
    }
}

enum Publish {
    Fenced,
    SessionLost,
    Other(zookeeper_client::Error),
}

/// Replaces `leader-info` by an ephemeral node with `data`, in one multi-op with the latch check.
async fn publish_leader_info(
    shared: &Shared,
    client: &Client,
    latch: &str,
    data: &[u8],
) -> Result<(), Publish> {
    let path = shared.paths.leader_info();
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    for _ in 0..10 {
        let existing = match client.check_stat(&path).await {
            Ok(s) => s,
            Err(e) if session_ended(&e) => return Err(Publish::SessionLost),
            Err(e) => return Err(Publish::Other(e)),
        };
        let mut w = client.new_multi_writer();
        let built = w
            .add_check_version(latch, 0)
            .and_then(|_| match existing {
                Some(stat) => w.add_delete(&path, Some(stat.version)),
                None => Ok(()),
            })
            .and_then(|_| w.add_create(&path, data, &ephemeral));
        if let Err(e) = built {
            return Err(Publish::Other(e));
        }
        match w.commit().await {
            Ok(_) => return Ok(()),
            Err(MultiWriteError::OperationFailed { index: 0, .. }) => return Err(Publish::Fenced),
            Err(MultiWriteError::OperationFailed { .. }) => continue,
            Err(MultiWriteError::RequestFailed { source }) if session_ended(&source) => {
                return Err(Publish::SessionLost)
            }
            Err(MultiWriteError::RequestFailed { source }) => return Err(Publish::Other(source)),
        }
    }
    Err(Publish::Other(zookeeper_client::Error::BadVersion))
}

/// Waits for the next change of the connection state of session `gen` (another generation or a
/// closed manager count as `Lost`).
async fn next_state(conn: &mut watch::Receiver<ConnSnapshot>, gen: u64) -> ConnectionState {
    if conn.changed().await.is_err() {
        return ConnectionState::Lost;
    }
    let snap = conn.borrow_and_update();
    if snap.generation != gen {
        ConnectionState::Lost
    } else {
        snap.state
    }
}

/// Completes when session `gen` is lost.
async fn wait_lost(conn: &mut watch::Receiver<ConnSnapshot>, gen: u64) {
    loop {
        {
            let snap = conn.borrow_and_update();
            if snap.generation != gen || snap.state == ConnectionState::Lost {
                return;
            }
        }
        if conn.changed().await.is_err() {
            return;
        }
    }
}
