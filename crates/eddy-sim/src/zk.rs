//! An in-memory model of the ZooKeeper semantics Eddy's HA relies on: sessions that expire when
//! their owner stops pinging for longer than the session timeout, ephemeral sequential latch
//! nodes deleted with their session, the leader (the lowest live latch) publishing `leader-info`
//! with a fresh leader session id, and fenced writes: a multi-op whose first operation checks
//! that the writer's latch still exists (what `zookeeper/stores.rs` does with `Op::Check`), so a
//! deposed leader's write fails as a whole.
//!
//! The real ZooKeeper client is async and talks to a real server; it is tested by the end-to-end
//! tests and the chaos tool. This model is what the simulation's JobManager shells write to.

use std::collections::BTreeMap;

/// Why a ZooKeeper operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ZkError {
    /// Not reachable (server down, partitioned, connection lost): transient.
    Unavailable,
    /// The writer's latch is gone: another leader may exist. The write changed nothing.
    Fenced,
}

#[derive(Clone, Debug)]
pub struct Session {
    pub owner: usize,
    pub last_ping: i64,
}

/// The job result entry (FLIP-194): dirty until the job's HA data is cleaned up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobResult {
    pub status: &'static str,
    pub clean: bool,
}

/// Who leads according to `leader-info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderInfo {
    pub jm: usize,
    pub token: u128,
    pub latch: u64,
    /// Grant order: tokens are random, epochs increase.
    pub epoch: u64,
}

/// One accepted fenced write, for the fencing invariant.
#[derive(Clone, Debug)]
pub struct AcceptedWrite {
    pub at: i64,
    pub token: u128,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Zk {
    pub up: bool,
    next_session: u64,
    pub sessions: BTreeMap<u64, Session>,
    next_seq: u64,
    /// latch sequence number -> (session, token the writer uses once granted)
    pub latches: BTreeMap<u64, u64>,
    pub leader: Option<LeaderInfo>,
    next_epoch: u64,
    /// Epoch of every token ever granted.
    pub epochs: BTreeMap<u128, u64>,
    // ---- persistent data of the one job ----
    pub graph: bool,
    /// Registered completed checkpoints (id -> pointer exists).
    pub checkpoints: BTreeMap<u64, ()>,
    pub counter: u64,
    pub result: Option<JobResult>,
    /// How many times a result entry was created (must stay <= 1).
    pub results_created: u32,
    pub accepted: Vec<AcceptedWrite>,
    /// Highest epoch whose write was accepted.
    pub max_written_epoch: u64,
}

impl Zk {
    pub fn new() -> Self {
        Zk {
            up: true,
            next_session: 1,
            next_seq: 1,
            counter: 1,
            ..Default::default()
        }
    }

    pub fn create_session(&mut self, owner: usize, now: i64) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                owner,
                last_ping: now,
            },
        );
        id
    }

    pub fn create_latch(&mut self, session: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.latches.insert(seq, session);
        seq
    }

    pub fn delete_latch(&mut self, seq: u64) {
        self.latches.remove(&seq);
    }

    /// Ends a session (expiry, or closed by the supervisor): its ephemeral latches go with it.
    pub fn end_session(&mut self, session: u64) {
        self.sessions.remove(&session);
        self.latches.retain(|_, s| *s != session);
    }

    pub fn session_alive(&self, session: u64) -> bool {
        self.sessions.contains_key(&session)
    }

    /// The lowest live latch: who must lead.
    pub fn lowest_latch(&self) -> Option<(u64, u64)> {
        self.latches.iter().next().map(|(k, v)| (*k, *v))
    }

    /// Publishes `leader-info` for the owner of `latch` with a new token (guarded by the latch).
    pub fn publish_leader(&mut self, jm: usize, latch: u64, token: u128) -> LeaderInfo {
        self.next_epoch += 1;
        let info = LeaderInfo {
            jm,
            token,
            latch,
            epoch: self.next_epoch,
        };
        self.epochs.insert(token, self.next_epoch);
        self.leader = Some(info);
        info
    }

    /// A read: fails only when ZooKeeper cannot be reached.
    pub fn read(&self, reachable: bool) -> Result<(), ZkError> {
        if self.up && reachable {
            Ok(())
        } else {
            Err(ZkError::Unavailable)
        }
    }

    /// The latch check of a fenced multi-op. `Ok` means the write may be applied.
    pub fn check_fence(
        &self,
        reachable: bool,
        session: Option<u64>,
        latch: Option<u64>,
        unfenced: bool,
    ) -> Result<(), ZkError> {
        self.read(reachable)?;
        if unfenced {
            return Ok(()); // only for demonstrating that the simulation catches split brain
        }
        match (session, latch) {
            (Some(s), Some(l)) if self.session_alive(s) && self.latches.get(&l) == Some(&s) => {
                Ok(())
            }
            _ => Err(ZkError::Fenced),
        }
    }
}
