//! Leader retrieval on ZooKeeper: one background task per process watches the ephemeral
//! `<root>/<cluster-id>/leader-info` node (existence watch, then a data read) and publishes
//! `Some(LeaderInfo)` or "no leader" into a watch channel shared by all `LeaderWatcher`s. After a
//! LOST session it re-reads with the next session.
//!
//! Read-only: must never write to ZooKeeper.

use super::{session_ended, ConnSnapshot};
use crate::api::{ConnectionState, LeaderInfo, RetrievalState};
use std::time::Duration;
use tokio::sync::watch;
use tracing::{debug, warn};
use zookeeper_client::{Client, EventType};

/// Decodes `leader-info`; undecodable content counts as "no leader" (and is logged).
pub(crate) fn parse_leader_info(path: &str, data: &[u8]) -> Option<LeaderInfo> {
    match serde_json::from_slice::<LeaderInfo>(data) {
        Ok(info) => Some(info),
        Err(e) => {
            warn!("ignoring undecodable leader info at '{path}': {e}");
            None
        }
    }
}

fn publish(tx: &watch::Sender<RetrievalState>, info: Option<LeaderInfo>) {
    let next = RetrievalState::Known(info);
    tx.send_if_modified(|s| {
        if *s != next {
            *s = next;
            true
        } else {
            false
        }
    });
}

async fn wait_connected(
    conn: &mut watch::Receiver<ConnSnapshot>,
    shutdown: &mut watch::Receiver<bool>,
    min_gen: u64,
) -> Option<(u64, Client)> {
    loop {
        {
            let snap = conn.borrow_and_update();
            if snap.generation >= min_gen && snap.state == ConnectionState::Connected {
                if let Some(c) = &snap.client {
                    return Some((snap.generation, c.clone()));
                }
            }
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return None,
            r = conn.changed() => if r.is_err() { return None },
        }
    }
}

pub(crate) async fn run(
    mut conn: watch::Receiver<ConnSnapshot>,
    path: String,
    tx: watch::Sender<RetrievalState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut min_gen = 0u64;
    'session: loop {
        let Some((gen, client)) = wait_connected(&mut conn, &mut shutdown, min_gen).await else {
            return;
        };
        loop {
            let watcher = match client.check_and_watch_stat(&path).await {
                Ok((None, watcher)) => {
                    publish(&tx, None);
                    watcher
                }
                Ok((Some(_), watcher)) => {
                    match client.get_data(&path).await {
                        Ok((data, _)) => publish(&tx, parse_leader_info(&path, &data)),
                        // Deleted in between: the watch fires and we read again.
                        Err(zookeeper_client::Error::NoNode) => publish(&tx, None),
                        Err(e) if session_ended(&e) => {
                            min_gen = gen + 1;
                            continue 'session;
                        }
                        Err(e) => {
                            debug!("reading '{path}' failed: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                    watcher
                }
                Err(e) if session_ended(&e) => {
                    min_gen = gen + 1;
                    continue 'session;
                }
                Err(e) => {
                    debug!("watching '{path}' failed: {e}; retrying");
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                ev = watcher.changed() => {
                    if ev.event_type == EventType::Session && ev.session_state.is_terminated() {
                        min_gen = gen + 1;
                        continue 'session;
                    }
                }
            }
        }
    }
}
