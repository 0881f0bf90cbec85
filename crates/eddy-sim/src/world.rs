//! The simulated world: JobManagers (the real `JobMaster` inside a model of the JobManager
//! shell), TaskManagers with a sequence source and a two-phase-commit sink per subtask, the
//! network between them, ZooKeeper ([`crate::zk`]) and a checkpoint directory, driven by one
//! seeded scheduler in virtual time.
//!
//! Fault model: TaskManagers and JobManagers killed (-9) and restarted; a JobManager paused
//! (SIGSTOP) past the ZooKeeper session and the heartbeat timeout; ZooKeeper down; a JobManager
//! cut off from ZooKeeper; a TaskManager's connection broken; the checkpoint directory failing
//! writes (disk full); a task failing; ZooKeeper writes applied although the client saw an error
//! (connection loss after commit). Messages are delayed at random (so they arrive in random
//! order), duplicated, and dropped — a drop breaks the connection, as a lost TCP segment that
//! is never retransmitted would; both ends notice.
//!
//! Invariants, checked as events happen and at the end of every seed:
//! 1. a checkpoint is complete only with every task's ack and its `_metadata` durable (and
//!    registered in the completed-checkpoint store) — checked when `_metadata` is written and
//!    whenever a sink commits;
//! 2. a sink commits a transaction only after the checkpoint that covers it completed;
//! 3. fencing: a write is accepted only from the current leader, and never from an older
//!    leadership after a newer one wrote;
//! 4. restarts respect the configured strategy (fixed-delay attempts and delay, failure-rate
//!    window, exponential-delay bounds; a restart never deploys before its delay);
//! 5. the job's result is recorded exactly once, no leader runs it again afterwards, and with
//!    everything healed the job ends and its HA data is cleaned up (graph, checkpoints, result
//!    clean);
//! 6. exactly-once witness: every sink's committed output is `0, 1, 2, …` without gap or
//!    duplicate, complete when the job finished; a job is never restored from nothing while
//!    checkpoints are registered.

use crate::zk::{Zk, ZkError};
use eddy_cluster::jobmanager::is_trigger_of;
use eddy_cluster::jobmaster::{Command, JobMaster, JobMasterSettings, SlotRef};
use eddy_cluster::rpc::{ExecutionKey, JmMessage};
use eddy_cluster::JobStatus;
use eddy_core::settings::{
    CheckpointingMode, CheckpointingSettings, FailoverStrategyKind, RestartStrategyConfig,
};
use eddy_core::JobId;
use eddy_recovery::{CompletedCheckpoint, DeclineReason, OperatorSubtaskState, TaskStateSnapshot};
use eddy_runtime::graph::{JobEdge, JobGraph, JobVertex, PartitionKind};
use eddy_runtime::registry::JobSpec;
use eddy_runtime::task::ExecutionState;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

const JOB: JobId = JobId(0x5eed);
const SRC: usize = 0;
const SINK: usize = 1;
/// Virtual time after the last fault by which the healed cluster must have ended the job.
const HEAL_BOUND_MS: i64 = 600_000;

/// Switches that break the system on purpose, to show that the invariants catch it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sabotage {
    /// The simulated ZooKeeper accepts writes without the latch check.
    pub unfenced_writes: bool,
    /// Sinks commit their staged transactions when a checkpoint is aborted.
    pub commit_on_abort: bool,
    /// The shell restores restarted tasks from nothing instead of the newest checkpoint.
    pub restore_from_nothing: bool,
}

/// What one seed did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub events: u64,
    pub faults: u32,
    pub final_status: &'static str,
    pub completed_checkpoints: usize,
    pub leaders: u64,
    /// Fenced writes refused (a deposed leader tried to write).
    pub fenced: u64,
    /// Deployments that restored a checkpoint.
    pub restores: u64,
    pub virtual_ms: i64,
}

/// A violated invariant, with the trace when it was recorded.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub seed: u64,
    pub message: String,
    pub trace: Vec<String>,
}

#[derive(Clone, Debug)]
struct Params {
    p: u32,
    tms: usize,
    slots_per_tm: u32,
    jms: usize,
    limit: u64,
    checkpointing: CheckpointingSettings,
    restart: RestartStrategyConfig,
    failover: FailoverStrategyKind,
    session_timeout: i64,
    hb_timeout: i64,
    /// `slot.request.timeout`: how long a restart waits for replacement slots.
    slot_timeout: i64,
    drop_p: f64,
    dup_p: f64,
    max_delay: i64,
    ambiguous_p: f64,
    fault_window: i64,
    faults: u32,
    cancel_at: Option<i64>,
}

impl Params {
    fn draw(rng: &mut SmallRng) -> Params {
        let ms = Duration::from_millis;
        let interval = rng.gen_range(50..400);
        let checkpointing = CheckpointingSettings {
            interval: Some(ms(interval)),
            mode: CheckpointingMode::ExactlyOnce,
            timeout: ms(rng.gen_range(300..3_000)),
            min_pause: ms(if rng.gen_bool(0.5) {
                0
            } else {
                rng.gen_range(10..200)
            }),
            max_concurrent: rng.gen_range(1..=3),
            tolerable_failed: rng.gen_range(0..4),
            num_retained: rng.gen_range(1..=3),
            ..Default::default()
        };
        let restart = match rng.gen_range(0..10) {
            0..=3 => RestartStrategyConfig::FixedDelay {
                attempts: if rng.gen_bool(0.3) {
                    u32::MAX
                } else {
                    rng.gen_range(1..40)
                },
                delay: ms(rng.gen_range(0..500)),
            },
            4..=6 => RestartStrategyConfig::FailureRate {
                max_failures_per_interval: rng.gen_range(1..12),
                interval: ms(rng.gen_range(200..5_000)),
                delay: ms(rng.gen_range(0..300)),
            },
            7..=8 => RestartStrategyConfig::ExponentialDelay {
                initial_backoff: ms(rng.gen_range(1..100)),
                max_backoff: ms(rng.gen_range(100..2_000)),
                multiplier: rng.gen_range(1.0..3.0),
                reset_backoff_threshold: ms(rng.gen_range(100..5_000)),
                jitter_factor: rng.gen_range(0.0..0.5),
                attempts_before_reset: rng.gen_range(1..40),
            },
            _ => RestartStrategyConfig::None,
        };
        let p = rng.gen_range(1..=3);
        let slots_per_tm = rng.gen_range(1..=3);
        Params {
            p,
            tms: rng.gen_range(1..=3).max(p.div_ceil(slots_per_tm) as usize),
            slots_per_tm,
            jms: rng.gen_range(1..=3),
            limit: rng.gen_range(5..80),
            checkpointing,
            restart,
            failover: if rng.gen_bool(0.5) {
                FailoverStrategyKind::Region
            } else {
                FailoverStrategyKind::Full
            },
            session_timeout: rng.gen_range(300..2_000),
            hb_timeout: rng.gen_range(200..1_500),
            slot_timeout: rng.gen_range(300..10_000),
            drop_p: if rng.gen_bool(0.5) {
                0.0
            } else {
                rng.gen_range(0.0..0.03)
            },
            dup_p: if rng.gen_bool(0.5) {
                0.0
            } else {
                rng.gen_range(0.0..0.1)
            },
            max_delay: rng.gen_range(1..60),
            ambiguous_p: if rng.gen_bool(0.7) {
                0.0
            } else {
                rng.gen_range(0.0..0.2)
            },
            fault_window: rng.gen_range(500..6_000),
            faults: rng.gen_range(0..8),
            cancel_at: rng.gen_bool(0.1).then(|| rng.gen_range(0..4_000)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Messages and events
// ---------------------------------------------------------------------------------------------

/// JobManager -> TaskManager (the shell's `JmMessage`s, reduced to what a task needs).
#[derive(Clone, Debug)]
enum ToTm {
    Deploy {
        key: ExecutionKey,
        restored: Option<u64>,
        state: Option<TaskStateSnapshot>,
    },
    Cancel(ExecutionKey),
    Trigger(ExecutionKey, u64),
    Notify(ExecutionKey, u64),
    Abort(ExecutionKey, u64),
}

/// TaskManager -> JobManager.
#[derive(Clone, Debug)]
enum FromTm {
    State(ExecutionKey, ExecutionState),
    Ack(ExecutionKey, u64, TaskStateSnapshot),
    Decline(ExecutionKey, u64),
}

#[derive(Clone, Copy, Debug)]
enum Election {
    Granted(u128),
    Revoked,
}

#[derive(Clone, Debug)]
enum Fault {
    KillTm(usize),
    KillJm { jm: usize, close_session: bool },
    PauseJm(usize, i64),
    ZkDown(i64),
    ZkPartition(usize, i64),
    BreakLink(usize),
    DiskFull(i64),
    FailTask,
}

#[derive(Clone, Debug)]
enum Ev {
    ToJm {
        jm: usize,
        inc: u64,
        tm: usize,
        epoch: u64,
        msg: FromTm,
    },
    ToTm {
        tm: usize,
        inc: u64,
        epoch: u64,
        token: u128,
        msg: ToTm,
    },
    Register {
        jm: usize,
        jinc: u64,
        tm: usize,
        tinc: u64,
        attempt: u64,
    },
    RegisterTimeout {
        tm: usize,
        tinc: u64,
        attempt: u64,
    },
    Refused {
        tm: usize,
        tinc: u64,
    },
    TmDisconnected {
        tm: usize,
        tinc: u64,
        epoch: u64,
    },
    JmLoseTm {
        jm: usize,
        jinc: u64,
        tm: usize,
        epoch: u64,
    },
    TmConnect {
        tm: usize,
        tinc: u64,
    },
    TaskStart {
        tm: usize,
        tinc: u64,
        key: ExecutionKey,
    },
    TaskStep {
        tm: usize,
        tinc: u64,
        key: ExecutionKey,
    },
    JmTick {
        jm: usize,
        inc: u64,
    },
    ZkTick,
    Election {
        jm: usize,
        inc: u64,
        ev: Election,
    },
    Fault(Fault),
    RestartTm(usize),
    RestartJm(usize),
    ZkUp,
    ZkLink(usize),
    DiskOk,
    UserCancel,
}

// ---------------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------------

struct Jm {
    alive: bool,
    inc: u64,
    paused_until: i64,
    zk_link: bool,
    /// The ZooKeeper client's state (runs even while the main loop is busy, not while paused).
    session: Option<u64>,
    latch: Option<u64>,
    needs_rejoin: bool,
    /// The held leadership the stores fence on: (token, latch, session). Cleared before a
    /// revoke is reported.
    held: Option<(u128, u64, u64)>,
    last_election_ev: i64,
    /// The main loop's view: the fencing token it acts with.
    token: Option<u128>,
    tms: BTreeMap<usize, u64>,
    job: Option<JobMaster>,
    waiting: bool,
    unrecorded: Option<Vec<Command>>,
    recover_at: Option<i64>,
    restart_deploys: u32,
    /// The job's last status seen, to check that terminal stays terminal.
    last_status: Option<JobStatus>,
}

impl Jm {
    fn new() -> Jm {
        Jm {
            alive: true,
            inc: 0,
            paused_until: 0,
            zk_link: true,
            session: None,
            latch: None,
            needs_rejoin: false,
            held: None,
            last_election_ev: 0,
            token: None,
            tms: BTreeMap::new(),
            job: None,
            waiting: false,
            unrecorded: None,
            recover_at: None,
            restart_deploys: 0,
            last_status: None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Conn {
    jm: usize,
    jinc: u64,
    token: u128,
    epoch: u64,
}

#[derive(Debug)]
enum Kind {
    Source {
        pos: u64,
        /// The first checkpoint triggered after the input ended: finishing waits for it.
        final_cp: Option<u64>,
        /// The newest barrier emitted: an older or repeated trigger is ignored.
        last_barrier: u64,
    },
    Sink {
        open: Vec<(u64, u64)>,
        staged: BTreeSet<u64>,
        input_ended: bool,
    },
}

#[derive(Debug)]
struct Task {
    token: u128,
    state: ExecutionState,
    kind: Kind,
}

struct Tm {
    alive: bool,
    inc: u64,
    conn: Option<Conn>,
    /// A registration in flight (its attempt number): the TaskManager waits for the reply at
    /// most `heartbeat.timeout`, then tries again.
    connecting: Option<u64>,
    tasks: BTreeMap<ExecutionKey, Task>,
}

#[derive(Clone, Debug)]
enum Item {
    Records(u64, u64),
    Barrier(u64),
    End,
}

struct Txn {
    records: Vec<(u64, u64)>,
    committed: bool,
}

// ---------------------------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------------------------

pub struct World {
    seed: u64,
    rng: SmallRng,
    now: i64,
    seq: u64,
    queue: BinaryHeap<Reverse<(i64, u64)>>,
    slab: BTreeMap<u64, Ev>,
    p: Params,
    sabotage: Sabotage,
    graph: Arc<JobGraph>,
    spec: JobSpec,
    zk: Zk,
    jms: Vec<Jm>,
    tms: Vec<Tm>,
    next_epoch: u64,
    /// Last delivery time per (to-TaskManager?, tm, connection).
    links: BTreeMap<(bool, usize, u64), i64>,
    disk_ok: bool,
    /// `_metadata` files in the checkpoint directory.
    metadata: BTreeMap<u64, CompletedCheckpoint>,
    /// Checkpoints that completed: every ack, `_metadata` durable, registered.
    completed: BTreeSet<u64>,
    acked: BTreeSet<(u64, usize, u32)>,
    finished_ever: BTreeSet<(usize, u32)>,
    channels: BTreeMap<(u32, u64), VecDeque<Item>>,
    txns: BTreeMap<(u32, u64), Txn>,
    /// Committed output per sink subtask: records 0..n.
    output: Vec<u64>,
    submitted: bool,
    cancel_requested: bool,
    last_fault_at: i64,
    faults_injected: u32,
    leaders: u64,
    fenced: u64,
    restores: u64,
    events: u64,
    trace: Option<Vec<String>>,
    violation: Option<String>,
}

fn key_task(k: &ExecutionKey) -> (usize, u32) {
    (k.vertex, k.subtask)
}

fn inline_u64(state: &TaskStateSnapshot) -> Vec<u64> {
    state
        .operators
        .first()
        .map(|o| {
            o.inline
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect()
        })
        .unwrap_or_default()
}

fn snapshot(uid: &str, values: impl IntoIterator<Item = u64>) -> TaskStateSnapshot {
    TaskStateSnapshot {
        operators: vec![OperatorSubtaskState {
            operator_uid: uid.into(),
            key_groups: None,
            files: Vec::new(),
            inline: values.into_iter().flat_map(|v| v.to_le_bytes()).collect(),
            rocksdb: None,
        }],
    }
}

impl World {
    fn new(seed: u64, sabotage: Sabotage, trace: bool) -> World {
        let mut rng = SmallRng::seed_from_u64(seed);
        let p = Params::draw(&mut rng);
        let vertex = |id: usize, name: &str, is_source: bool| JobVertex {
            id,
            name: name.into(),
            nodes: vec![id],
            operator_uids: vec![name.into()],
            parallelism: p.p,
            max_parallelism: 128,
            is_source,
        };
        let graph = Arc::new(JobGraph {
            vertices: vec![vertex(SRC, "sequence", true), vertex(SINK, "sink", false)],
            edges: vec![JobEdge {
                source: SRC,
                target: SINK,
                kind: PartitionKind::Forward,
                stream_edge: 0,
            }],
        });
        let spec = JobSpec {
            name: "sequence".into(),
            args: vec![],
            config: Default::default(),
            parallelism: p.p,
        };
        let mut w = World {
            seed,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slab: BTreeMap::new(),
            graph,
            spec,
            zk: Zk::new(),
            jms: (0..p.jms).map(|_| Jm::new()).collect(),
            tms: (0..p.tms)
                .map(|_| Tm {
                    alive: true,
                    inc: 0,
                    conn: None,
                    connecting: None,
                    tasks: BTreeMap::new(),
                })
                .collect(),
            next_epoch: 1,
            links: BTreeMap::new(),
            disk_ok: true,
            metadata: BTreeMap::new(),
            completed: BTreeSet::new(),
            acked: BTreeSet::new(),
            finished_ever: BTreeSet::new(),
            channels: BTreeMap::new(),
            txns: BTreeMap::new(),
            output: vec![0; p.p as usize],
            submitted: false,
            cancel_requested: false,
            last_fault_at: 0,
            faults_injected: 0,
            leaders: 0,
            fenced: 0,
            restores: 0,
            events: 0,
            trace: trace.then(Vec::new),
            violation: None,
            sabotage,
            p,
        };
        w.log(|w| format!("seed {} params {:?}", w.seed, w.p));
        w.at(0, Ev::ZkTick);
        for j in 0..w.p.jms {
            let d = w.rng.gen_range(0..20);
            w.at(d, Ev::JmTick { jm: j, inc: 0 });
        }
        for t in 0..w.p.tms {
            let d = w.rng.gen_range(0..50);
            w.at(d, Ev::TmConnect { tm: t, tinc: 0 });
        }
        for _ in 0..w.p.faults {
            let at = w.rng.gen_range(0..w.p.fault_window);
            let f = w.draw_fault();
            w.at(at, Ev::Fault(f));
        }
        if let Some(at) = w.p.cancel_at {
            w.at(at, Ev::UserCancel);
        }
        w
    }

    fn draw_fault(&mut self) -> Fault {
        let r = &mut self.rng;
        match r.gen_range(0..9) {
            0 => Fault::KillTm(r.gen_range(0..self.p.tms)),
            1 => Fault::KillJm {
                jm: r.gen_range(0..self.p.jms),
                close_session: r.gen_bool(0.5),
            },
            2 => Fault::PauseJm(
                r.gen_range(0..self.p.jms),
                r.gen_range(10..3 * self.p.session_timeout),
            ),
            3 => Fault::ZkDown(r.gen_range(10..2 * self.p.session_timeout)),
            4 => Fault::ZkPartition(
                r.gen_range(0..self.p.jms),
                r.gen_range(10..3 * self.p.session_timeout),
            ),
            5 => Fault::BreakLink(r.gen_range(0..self.p.tms)),
            6 => Fault::DiskFull(r.gen_range(10..2_000)),
            _ => Fault::FailTask,
        }
    }

    // ----- scheduling -----

    fn at(&mut self, delay: i64, ev: Ev) {
        self.seq += 1;
        self.queue
            .push(Reverse((self.now + delay.max(0), self.seq)));
        self.slab.insert(self.seq, ev);
    }

    fn delay(&mut self) -> i64 {
        self.rng.gen_range(1..=self.p.max_delay)
    }

    fn log(&mut self, f: impl FnOnce(&World) -> String) {
        if self.trace.is_some() {
            let line = format!("{:>7} ms  {}", self.now, f(self));
            if let Some(t) = self.trace.as_mut() {
                t.push(line);
            }
        }
    }

    fn violate(&mut self, msg: String) {
        if self.violation.is_none() {
            self.log(|_| format!("VIOLATION: {msg}"));
            self.violation = Some(msg);
        }
    }

    fn jm_paused(&self, j: usize) -> bool {
        self.jms[j].paused_until > self.now
    }

    // ----- the loop -----

    fn run(&mut self) -> Result<Outcome, String> {
        let end_of_faults = self.p.fault_window + 3 * self.p.session_timeout;
        while let Some(Reverse((t, s))) = self.queue.pop() {
            let Some(ev) = self.slab.remove(&s) else {
                continue;
            };
            self.now = t;
            self.events += 1;
            self.handle(ev);
            if let Some(v) = self.violation.take() {
                return Err(v);
            }
            if self.now > end_of_faults && self.job_settled() {
                break;
            }
            if self.now > end_of_faults.max(self.last_fault_at) + HEAL_BOUND_MS {
                return Err(format!(
                    "liveness: everything healed at {} ms, yet the job has not ended and been cleaned up {} ms later (result {:?}, graph {}, registered checkpoints {:?})",
                    self.last_fault_at,
                    HEAL_BOUND_MS,
                    self.zk.result,
                    self.zk.graph,
                    self.zk.checkpoints.keys().collect::<Vec<_>>()
                ));
            }
        }
        self.final_checks()?;
        Ok(Outcome {
            events: self.events,
            faults: self.faults_injected,
            final_status: self.zk.result.as_ref().map_or("none", |r| r.status),
            completed_checkpoints: self.completed.len(),
            leaders: self.leaders,
            fenced: self.fenced,
            restores: self.restores,
            virtual_ms: self.now,
        })
    }

    /// The job's result is recorded, and once it is clean its HA data is gone. (A clean-up
    /// that fails stays dirty until the next leader finishes it, as in jobmanager.rs.)
    fn job_settled(&self) -> bool {
        self.zk
            .result
            .as_ref()
            .is_some_and(|r| !r.clean || (!self.zk.graph && self.zk.checkpoints.is_empty()))
            && self.jms.iter().all(|m| m.unrecorded.is_none())
    }

    fn final_checks(&mut self) -> Result<(), String> {
        if !self.job_settled() {
            return Err("liveness: the event queue ran dry before the job ended".into());
        }
        if self.zk.results_created != 1 {
            return Err(format!(
                "the job's result was created {} times",
                self.zk.results_created
            ));
        }
        let status = self.zk.result.as_ref().map(|r| r.status).unwrap_or("");
        if status == "FINISHED" {
            for (s, &n) in self.output.iter().enumerate() {
                if n != self.p.limit {
                    return Err(format!(
                        "exactly-once: the job FINISHED but sink {s} committed records 0..{n}, expected 0..{}",
                        self.p.limit
                    ));
                }
            }
        }
        for j in 0..self.jms.len() {
            if let Some(job) = self.jms[j].job.take() {
                self.check_restarts(j, &job);
            }
        }
        match self.violation.take() {
            Some(v) => Err(v),
            None => Ok(()),
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::ZkTick => {
                self.zk_tick();
                self.at(10, Ev::ZkTick);
            }
            Ev::JmTick { jm, inc } => {
                if !self.jms[jm].alive || self.jms[jm].inc != inc {
                    return;
                }
                if self.jm_paused(jm) {
                    let until = self.jms[jm].paused_until - self.now;
                    self.at(until, Ev::JmTick { jm, inc });
                    return;
                }
                self.jm_tick(jm);
                let d = self.rng.gen_range(10..40);
                self.at(d, Ev::JmTick { jm, inc });
            }
            Ev::Election { jm, inc, ev } => {
                if !self.jms[jm].alive || self.jms[jm].inc != inc {
                    return;
                }
                if self.jm_paused(jm) {
                    let until = self.jms[jm].paused_until - self.now;
                    self.at(until, Ev::Election { jm, inc, ev });
                    return;
                }
                match ev {
                    Election::Granted(token) => self.gain_leadership(jm, token),
                    Election::Revoked => self.step_down(jm, "leadership revoked"),
                }
            }
            Ev::ToJm {
                jm,
                inc,
                tm,
                epoch,
                msg,
            } => {
                if !self.jms[jm].alive || self.jms[jm].inc != inc {
                    return;
                }
                if self.jm_paused(jm) {
                    let until = self.jms[jm].paused_until - self.now;
                    self.at(
                        until,
                        Ev::ToJm {
                            jm,
                            inc,
                            tm,
                            epoch,
                            msg,
                        },
                    );
                    return;
                }
                if self.jms[jm].tms.get(&tm) != Some(&epoch) {
                    return; // the connection is gone
                }
                self.jm_on_message(jm, msg);
            }
            Ev::ToTm {
                tm,
                inc,
                epoch,
                token,
                msg,
            } => {
                let t = &self.tms[tm];
                if !t.alive || t.inc != inc || t.conn.is_none_or(|c| c.epoch != epoch) {
                    return;
                }
                if t.conn.is_some_and(|c| c.token != token) {
                    return; // stale fencing token
                }
                self.tm_on_message(tm, token, msg);
            }
            Ev::TmConnect { tm, tinc } => self.tm_connect(tm, tinc),
            Ev::Register {
                jm,
                jinc,
                tm,
                tinc,
                attempt,
            } => {
                let t = &self.tms[tm];
                let wanted =
                    t.alive && t.inc == tinc && t.conn.is_none() && t.connecting == Some(attempt);
                if !wanted {
                    return; // the TaskManager gave up on this connection
                }
                if !self.jms[jm].alive || self.jms[jm].inc != jinc {
                    let d = self.delay();
                    self.at(d, Ev::Refused { tm, tinc });
                    return;
                }
                if self.jm_paused(jm) {
                    let until = self.jms[jm].paused_until - self.now;
                    self.at(
                        until,
                        Ev::Register {
                            jm,
                            jinc,
                            tm,
                            tinc,
                            attempt,
                        },
                    );
                    return;
                }
                let d = self.delay();
                match self.jms[jm].token {
                    None => self.at(d, Ev::Refused { tm, tinc }),
                    Some(_) if !wanted => {}
                    Some(token) => {
                        // The reply travels first on the new connection: both ends see it in order.
                        let epoch = self.next_epoch;
                        self.next_epoch += 1;
                        self.jms[jm].tms.insert(tm, epoch);
                        let t = &mut self.tms[tm];
                        t.connecting = None;
                        t.conn = Some(Conn {
                            jm,
                            jinc,
                            token,
                            epoch,
                        });
                        self.log(|_| {
                            format!(
                                "tm{tm} registered at jm{jm} (connection {epoch}, token {token:x})"
                            )
                        });
                        if let Some(job) = self.jms[jm].job.as_mut() {
                            job.slots_offered(self.now);
                        }
                    }
                }
            }
            Ev::RegisterTimeout { tm, tinc, attempt } => {
                let t = &mut self.tms[tm];
                if t.alive && t.inc == tinc && t.conn.is_none() && t.connecting == Some(attempt) {
                    t.connecting = None;
                    self.log(|_| format!("tm{tm}: no answer to its registration, trying again"));
                    self.at(10, Ev::TmConnect { tm, tinc });
                }
            }
            Ev::Refused { tm, tinc } => {
                let t = &mut self.tms[tm];
                if t.alive && t.inc == tinc && t.conn.is_none() {
                    t.connecting = None;
                    let d = self.rng.gen_range(20..200);
                    self.at(d, Ev::TmConnect { tm, tinc });
                }
            }
            Ev::TmDisconnected { tm, tinc, epoch } => {
                let t = &self.tms[tm];
                if !t.alive || t.inc != tinc || t.conn.is_none_or(|c| c.epoch != epoch) {
                    return;
                }
                self.log(|_| {
                    format!("tm{tm} lost its JobManager connection {epoch}: cancels all tasks")
                });
                let t = &mut self.tms[tm];
                if let Some(c) = t.conn.take() {
                    // It closes its socket: the JobManager reads EOF.
                    let d = self.rng.gen_range(1..5);
                    self.at(
                        d,
                        Ev::JmLoseTm {
                            jm: c.jm,
                            jinc: c.jinc,
                            tm,
                            epoch: c.epoch,
                        },
                    );
                }
                let t = &mut self.tms[tm];
                for task in t.tasks.values_mut() {
                    if !is_terminal(task.state) {
                        task.state = ExecutionState::Canceled;
                    }
                }
                t.tasks.clear();
                let d = self.rng.gen_range(20..200);
                self.at(d, Ev::TmConnect { tm, tinc });
            }
            Ev::JmLoseTm {
                jm,
                jinc,
                tm,
                epoch,
            } => {
                if !self.jms[jm].alive || self.jms[jm].inc != jinc {
                    return;
                }
                if self.jm_paused(jm) {
                    let until = self.jms[jm].paused_until - self.now;
                    self.at(
                        until,
                        Ev::JmLoseTm {
                            jm,
                            jinc,
                            tm,
                            epoch,
                        },
                    );
                    return;
                }
                if self.jms[jm].tms.get(&tm) == Some(&epoch) {
                    self.lose_taskmanager(jm, tm, "connection closed");
                }
            }
            Ev::TaskStart { tm, tinc, key } => self.task_start(tm, tinc, key),
            Ev::TaskStep { tm, tinc, key } => self.task_step(tm, tinc, key),
            Ev::Fault(f) => self.inject(f),
            Ev::RestartTm(tm) => {
                let t = &mut self.tms[tm];
                t.alive = true;
                t.inc += 1;
                let tinc = t.inc;
                self.log(|_| format!("tm{tm} restarted"));
                self.at(10, Ev::TmConnect { tm, tinc });
            }
            Ev::RestartJm(jm) => {
                let inc = self.jms[jm].inc + 1;
                self.jms[jm] = Jm::new();
                self.jms[jm].inc = inc;
                self.log(|_| format!("jm{jm} restarted"));
                self.at(10, Ev::JmTick { jm, inc });
            }
            Ev::ZkUp => {
                self.zk.up = true;
                for s in self.zk.sessions.values_mut() {
                    s.last_ping = self.now;
                }
                self.log(|_| "ZooKeeper up".into());
            }
            Ev::ZkLink(jm) => {
                self.jms[jm].zk_link = true;
                self.log(|_| format!("jm{jm} reaches ZooKeeper again"));
            }
            Ev::DiskOk => {
                self.disk_ok = true;
                self.log(|_| "checkpoint directory writable again".into());
            }
            Ev::UserCancel => {
                if self.zk.result.is_some() {
                    return;
                }
                let leader = self.zk.leader.map(|l| l.jm);
                let accepted = leader.is_some_and(|j| {
                    self.jms[j].alive
                        && !self.jm_paused(j)
                        && self.jms[j].token.is_some()
                        && self.jms[j].job.is_some()
                });
                match (accepted, leader) {
                    (true, Some(j)) => {
                        self.cancel_requested = true;
                        self.log(|_| format!("user cancels the job at jm{j}"));
                        let now = self.now;
                        let cmds = self.jms[j].job.as_mut().map(|job| job.cancel(now));
                        if let Some(cmds) = cmds {
                            self.execute(j, cmds);
                        }
                    }
                    _ => self.at(100, Ev::UserCancel),
                }
            }
        }
        self.check_job_status();
    }

    fn check_job_status(&mut self) {
        for j in 0..self.jms.len() {
            let status = self.jms[j].job.as_ref().map(|job| job.status());
            if let (Some(prev), Some(now)) = (self.jms[j].last_status, status) {
                if prev.is_globally_terminal() && prev != now {
                    self.violate(format!(
                        "jm{j}: the job left its terminal state {prev} for {now}"
                    ));
                }
            }
            self.jms[j].last_status = status;
        }
    }

    // ----- faults -----

    fn inject(&mut self, f: Fault) {
        self.faults_injected += 1;
        self.last_fault_at = self.now;
        self.log(|_| format!("FAULT {f:?}"));
        match f {
            Fault::KillTm(tm) => {
                if !self.tms[tm].alive {
                    return;
                }
                let t = &mut self.tms[tm];
                t.alive = false;
                t.tasks.clear();
                t.connecting = None;
                if let Some(c) = t.conn.take() {
                    let d = self.rng.gen_range(1..20);
                    self.at(
                        d,
                        Ev::JmLoseTm {
                            jm: c.jm,
                            jinc: c.jinc,
                            tm,
                            epoch: c.epoch,
                        },
                    );
                }
                let d = self.rng.gen_range(50..2_000);
                self.at(d, Ev::RestartTm(tm));
            }
            Fault::KillJm { jm, close_session } => {
                if !self.jms[jm].alive {
                    return;
                }
                let j = self.jms[jm].job.take();
                if let Some(job) = j {
                    self.check_restarts(jm, &job);
                }
                let m = &mut self.jms[jm];
                m.alive = false;
                m.paused_until = 0;
                if let (true, Some(s)) = (close_session, m.session) {
                    // The supervisor closes the dead process's session.
                    if self.zk.up {
                        self.zk.end_session(s);
                    }
                }
                let tms: Vec<(usize, u64)> =
                    self.jms[jm].tms.iter().map(|(k, v)| (*k, *v)).collect();
                for (tm, epoch) in tms {
                    let d = self.rng.gen_range(1..20);
                    let tinc = self.tms[tm].inc;
                    self.at(d, Ev::TmDisconnected { tm, tinc, epoch });
                }
                let d = self.rng.gen_range(50..2_000);
                self.at(d, Ev::RestartJm(jm));
            }
            Fault::PauseJm(jm, d) => {
                if !self.jms[jm].alive || self.jm_paused(jm) {
                    return;
                }
                self.jms[jm].paused_until = self.now + d;
                if d > self.p.hb_timeout {
                    // The TaskManagers hear no heartbeat reply and disconnect.
                    let tms: Vec<(usize, u64)> =
                        self.jms[jm].tms.iter().map(|(k, v)| (*k, *v)).collect();
                    for (tm, epoch) in tms {
                        let tinc = self.tms[tm].inc;
                        let hb = self.p.hb_timeout;
                        self.at(hb, Ev::TmDisconnected { tm, tinc, epoch });
                        let jinc = self.jms[jm].inc;
                        self.at(
                            hb,
                            Ev::JmLoseTm {
                                jm,
                                jinc,
                                tm,
                                epoch,
                            },
                        );
                    }
                }
                let inc = self.jms[jm].inc;
                // On resume the shell notices the stall and confirms its leadership.
                self.at(
                    d,
                    Ev::Election {
                        jm,
                        inc,
                        ev: Election::Granted(0),
                    },
                );
            }
            Fault::ZkDown(d) => {
                if !self.zk.up {
                    return;
                }
                self.zk.up = false;
                self.suspend_all_clients();
                self.at(d, Ev::ZkUp);
            }
            Fault::ZkPartition(jm, d) => {
                if !self.jms[jm].zk_link {
                    return;
                }
                self.jms[jm].zk_link = false;
                self.suspend_client(jm);
                self.at(d, Ev::ZkLink(jm));
            }
            Fault::BreakLink(tm) => self.break_link(tm),
            Fault::DiskFull(d) => {
                self.disk_ok = false;
                self.at(d, Ev::DiskOk);
            }
            Fault::FailTask => {
                let mut running: Vec<(usize, ExecutionKey)> = Vec::new();
                for (i, t) in self.tms.iter().enumerate() {
                    for (k, task) in &t.tasks {
                        if task.state == ExecutionState::Running {
                            running.push((i, *k));
                        }
                    }
                }
                if running.is_empty() {
                    return;
                }
                let (tm, key) = running[self.rng.gen_range(0..running.len())];
                if let Some(task) = self.tms[tm].tasks.get_mut(&key) {
                    task.state = ExecutionState::Failed;
                }
                self.tm_report(tm, key, FromTm::State(key, ExecutionState::Failed));
            }
        }
    }

    /// The TaskManager's connection breaks. One end notices first (a read timeout, at most
    /// `heartbeat.timeout`), closes its socket, and the other end reads EOF right after.
    fn break_link(&mut self, tm: usize) {
        let Some(c) = self.tms[tm].conn else { return };
        let tinc = self.tms[tm].inc;
        let first = self.rng.gen_range(1..self.p.hb_timeout.max(2));
        let eof = first + self.rng.gen_range(1..5);
        let (dt, dj) = if self.rng.gen_bool(0.5) {
            (first, eof)
        } else {
            (eof, first)
        };
        self.at(
            dt,
            Ev::TmDisconnected {
                tm,
                tinc,
                epoch: c.epoch,
            },
        );
        self.at(
            dj,
            Ev::JmLoseTm {
                jm: c.jm,
                jinc: c.jinc,
                tm,
                epoch: c.epoch,
            },
        );
    }

    /// Delivery time on a connection: random delay, but FIFO per connection and direction (TCP).
    fn link_delay(&mut self, link: (bool, usize, u64)) -> i64 {
        let d = self.delay();
        let at = (self.now + d).max(self.links.get(&link).copied().unwrap_or(0));
        self.links.insert(link, at);
        at - self.now
    }

    // ----- ZooKeeper client and server -----

    fn suspend_all_clients(&mut self) {
        for j in 0..self.jms.len() {
            self.suspend_client(j);
        }
    }

    /// The client lost its connection (SUSPENDED): leadership is revoked, the latch is replaced
    /// once connected again.
    fn suspend_client(&mut self, j: usize) {
        if !self.jms[j].alive {
            return;
        }
        self.jms[j].needs_rejoin = true;
        if self.jms[j].held.take().is_some() {
            self.election_event(j, Election::Revoked);
        }
    }

    fn election_event(&mut self, j: usize, ev: Election) {
        let d = self.rng.gen_range(1..300);
        let at = (self.now + d).max(self.jms[j].last_election_ev + 1);
        self.jms[j].last_election_ev = at;
        let inc = self.jms[j].inc;
        let delay = at - self.now;
        self.at(delay, Ev::Election { jm: j, inc, ev });
    }

    fn zk_tick(&mut self) {
        if !self.zk.up {
            return;
        }
        let now = self.now;
        // Sessions: pinged by live, running, connected clients; others expire.
        let ids: Vec<u64> = self.zk.sessions.keys().copied().collect();
        for s in ids {
            let owner = self.zk.sessions[&s].owner;
            let m = &self.jms[owner];
            let pinging = m.alive && m.paused_until <= now && m.zk_link && m.session == Some(s);
            if pinging {
                if let Some(sess) = self.zk.sessions.get_mut(&s) {
                    sess.last_ping = now;
                }
            } else if now - self.zk.sessions[&s].last_ping > self.p.session_timeout {
                self.log(|_| format!("ZooKeeper session {s} of jm{owner} expired"));
                self.zk.end_session(s);
            }
        }
        // Clients: a lost session means revoke and a new session; SUSPENDED means rejoin.
        for j in 0..self.jms.len() {
            let m = &self.jms[j];
            if !m.alive || m.paused_until > now || !m.zk_link {
                continue;
            }
            if let Some(s) = m.session {
                if !self.zk.session_alive(s) {
                    self.jms[j].session = None;
                    self.jms[j].latch = None;
                    if self.jms[j].held.take().is_some() {
                        self.election_event(j, Election::Revoked);
                    }
                }
            }
            // The held leadership's latch is gone (session ended, latch deleted): revoke.
            if let Some((_, latch, session)) = self.jms[j].held {
                if !self.zk.session_alive(session) || !self.zk.latches.contains_key(&latch) {
                    self.jms[j].held = None;
                    self.election_event(j, Election::Revoked);
                }
            }
            if self.jms[j].session.is_none() {
                let s = self.zk.create_session(j, now);
                let l = self.zk.create_latch(s);
                self.jms[j].session = Some(s);
                self.jms[j].latch = Some(l);
                self.jms[j].needs_rejoin = false;
            } else if self.jms[j].needs_rejoin {
                if let Some(l) = self.jms[j].latch.take() {
                    self.zk.delete_latch(l);
                }
                let s = self.jms[j].session.unwrap_or_default();
                self.jms[j].latch = Some(self.zk.create_latch(s));
                self.jms[j].needs_rejoin = false;
            }
        }
        // Election: the lowest latch leads once its owner published leader-info.
        if let Some((latch, session)) = self.zk.lowest_latch() {
            let owner = self.zk.sessions.get(&session).map(|s| s.owner);
            let current = self.zk.leader.map(|l| l.latch);
            if let Some(j) = owner {
                let m = &self.jms[j];
                // The latch of a dead incarnation (its session not yet expired) elects nobody.
                let own = m.session == Some(session);
                if current != Some(latch) && own && m.alive && m.paused_until <= now && m.zk_link {
                    let token = loop {
                        let t: u128 = self.rng.gen();
                        if t != 0 {
                            break t;
                        }
                    };
                    self.zk.publish_leader(j, latch, token);
                    self.jms[j].held = Some((token, latch, session));
                    self.leaders += 1;
                    self.log(|_| {
                        format!("ZooKeeper: jm{j} elected (latch {latch}, token {token:x})")
                    });
                    self.election_event(j, Election::Granted(token));
                    // TaskManagers see the new leader-info and move to it.
                    for tm in 0..self.tms.len() {
                        if let Some(c) = self.tms[tm].conn {
                            if c.jm != j || c.token != token {
                                let tinc = self.tms[tm].inc;
                                let d = self.rng.gen_range(1..200);
                                self.at(
                                    d,
                                    Ev::TmDisconnected {
                                        tm,
                                        tinc,
                                        epoch: c.epoch,
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A fenced write by JobManager `j`; `apply` runs iff the latch check passes. With
    /// `ambiguous_p` the write is applied but the client sees a connection loss.
    fn fenced_write(
        &mut self,
        j: usize,
        what: &str,
        apply: impl FnOnce(&mut World),
    ) -> Result<(), ZkError> {
        let m = &self.jms[j];
        let token = m.token.unwrap_or(0);
        // The stores fence on the held leadership of this token (zookeeper/stores.rs `fence`).
        let held = m.held.filter(|h| h.0 == token);
        let checked = self.zk.check_fence(
            m.zk_link,
            held.map(|h| h.2),
            held.map(|h| h.1),
            self.sabotage.unfenced_writes,
        );
        if checked == Err(ZkError::Fenced) {
            self.fenced += 1;
            self.log(|_| format!("jm{j}: '{what}' fenced"));
        }
        checked?;
        // Invariant 3: only the current leader's writes are accepted, epochs never go back.
        let leader = self.zk.leader;
        let epoch = self.zk.epochs.get(&token).copied().unwrap_or(0);
        if leader.is_none_or(|l| l.token != token) || epoch < self.zk.max_written_epoch {
            self.violate(format!(
                "fencing: jm{j}'s write '{what}' with token {token:x} (epoch {epoch}) was accepted while the leader is {:?} and epoch {} already wrote",
                leader.map(|l| (l.jm, format!("{:x}", l.token), l.epoch)),
                self.zk.max_written_epoch
            ));
        }
        self.zk.max_written_epoch = self.zk.max_written_epoch.max(epoch);
        self.zk.accepted.push(crate::zk::AcceptedWrite {
            at: self.now,
            token,
            what: what.to_string(),
        });
        apply(self);
        self.log(|_| format!("jm{j} wrote {what}"));
        if self.p.ambiguous_p > 0.0 && self.rng.gen_bool(self.p.ambiguous_p) {
            self.log(|_| format!("jm{j}: connection loss after '{what}' was applied"));
            return Err(ZkError::Unavailable);
        }
        Ok(())
    }

    fn zk_read(&self, j: usize) -> Result<(), ZkError> {
        self.zk.read(self.jms[j].zk_link)
    }

    // ----- the JobManager shell (a model of jobmanager.rs) -----

    fn gain_leadership(&mut self, j: usize, token: u128) {
        if token == 0 {
            // A resumed process: the shell confirms its leadership before acting.
            if self.jms[j].token.is_some() {
                let confirmed = self.zk_read(j).is_ok()
                    && self
                        .zk
                        .leader
                        .is_some_and(|l| l.jm == j && Some(l.token) == self.jms[j].token);
                if !confirmed {
                    self.step_down(j, "after a stall, leadership not confirmed");
                }
            }
            return;
        }
        self.log(|_| format!("jm{j} granted leadership (token {token:x})"));
        if self.jms[j].token.is_some() {
            self.step_down(j, "a new leadership replaces the old one");
        }
        self.jms[j].token = Some(token);
        self.jms[j].recover_at = Some(self.now);
        self.recover(j);
    }

    /// Finishes dirty clean-ups, then recovers (or submits) the job. Retried on errors.
    fn recover(&mut self, j: usize) {
        if self.jms[j].token.is_none() || self.jms[j].job.is_some() {
            self.jms[j].recover_at = None;
            return;
        }
        let retry = |w: &mut World, why: &str| {
            w.log(|_| format!("jm{j}: recovery postponed: {why}"));
            w.jms[j].recover_at = Some(w.now + 200);
        };
        if self.zk_read(j).is_err() {
            return retry(self, "ZooKeeper unavailable");
        }
        if self.zk.result.as_ref().is_some_and(|r| !r.clean) {
            // cleanup_dirty: checkpoints (files after their pointer), HA data, mark clean.
            let ids: Vec<u64> = self.zk.checkpoints.keys().copied().collect();
            for id in ids {
                match self.fenced_write(j, &format!("unregister checkpoint {id}"), |w| {
                    w.zk.checkpoints.remove(&id);
                }) {
                    Ok(()) => {
                        self.metadata.remove(&id);
                    }
                    Err(e) => return self.on_zk_error(j, e, "cleanup_dirty"),
                }
            }
            if let Err(e) = self.clean_up_ended_job(j) {
                return self.on_zk_error(j, e, "cleanup_dirty");
            }
        }
        self.jms[j].recover_at = None;
        if self.zk.result.is_some() {
            return; // ended: never run again
        }
        if !self.zk.graph {
            if self.submitted {
                self.violate("the job graph vanished before the job's result was recorded".into());
                return;
            }
            // The first leader submits the job.
            if let Err(e) = self.fenced_write(j, "put job graph", |w| w.zk.graph = true) {
                return self.on_zk_error(j, e, "submit");
            }
            self.submitted = true;
            self.create_job_master(j, Vec::new());
            return;
        }
        // Recover: every registered checkpoint whose _metadata reads.
        let registered: Vec<u64> = self.zk.checkpoints.keys().copied().collect();
        let retained: Vec<CompletedCheckpoint> = registered
            .iter()
            .filter_map(|id| self.metadata.get(id).cloned())
            .collect();
        self.create_job_master(j, retained);
        if !registered.is_empty() && self.jms[j].job.is_some() {
            let readable = registered.iter().any(|id| self.metadata.contains_key(id));
            if !readable {
                let now = self.now;
                let cmds = self.jms[j]
                    .job
                    .as_mut()
                    .map(|job| job.fail_job("no registered checkpoint readable".into(), now));
                if let Some(c) = cmds {
                    self.execute(j, c);
                }
            }
        }
    }

    fn create_job_master(&mut self, j: usize, retained: Vec<CompletedCheckpoint>) {
        let Some(token) = self.jms[j].token else {
            return;
        };
        let first = retained
            .iter()
            .map(|c| c.checkpoint_id + 1)
            .max()
            .unwrap_or(1)
            .max(self.zk.counter);
        let settings = JobMasterSettings {
            slot_request_timeout_ms: self.p.slot_timeout,
            buffer_timeout_ms: 100,
            checkpointing: self.p.checkpointing.clone(),
            restart: self.p.restart.clone(),
            failover: self.p.failover,
            checkpoints_dir: Some("/sim/checkpoints".into()),
            first_checkpoint_id: first,
            first_attempt: (self.rng.gen::<u32>() as u64) << 32,
            deploy_timeout_ms: self.p.hb_timeout,
            exception_history_size: 100_000,
            max_message_bytes: 10 << 20,
        };
        let mut job = match JobMaster::new(
            JOB,
            self.spec.clone(),
            self.graph.clone(),
            token,
            settings,
            self.now,
        ) {
            Ok(job) => job,
            Err(e) => {
                self.violate(format!("JobMaster::new refused the job: {e}"));
                return;
            }
        };
        if self.zk.graph {
            job.recover_from(retained, Vec::new(), self.now, self.now);
        }
        self.log(|_| format!("jm{j} created the JobMaster (first checkpoint {first})"));
        self.jms[j].job = Some(job);
        self.jms[j].waiting = true;
        self.jms[j].restart_deploys = 0;
        self.jms[j].last_status = None;
    }

    fn on_zk_error(&mut self, j: usize, e: ZkError, what: &str) {
        match e {
            ZkError::Fenced => self.step_down(j, &format!("{what}: a fenced write was refused")),
            ZkError::Unavailable => {
                self.log(|_| format!("jm{j}: {what}: ZooKeeper unavailable, retrying"));
                self.jms[j].recover_at = Some(self.now + 200);
            }
        }
    }

    fn clean_up_ended_job(&mut self, j: usize) -> Result<(), ZkError> {
        if self.zk.result.is_none() {
            // `cleanup_job` refuses (NoJobResult); the job-end order was broken already.
            self.violate(
                "job-end order: clean-up of a job whose result was never recorded (its checkpoints are discarded, its graph stays: the next leader runs it again from nothing)".into(),
            );
            return Err(ZkError::Unavailable);
        }
        self.fenced_write(j, "remove job graph, checkpoints, counter", |w| {
            w.zk.graph = false;
            w.zk.checkpoints.clear();
        })?;
        self.fenced_write(j, "mark result clean", |w| {
            if let Some(r) = w.zk.result.as_mut() {
                r.clean = true;
            }
        })
    }

    fn step_down(&mut self, j: usize, why: &str) {
        if self.jms[j].token.is_none() {
            return;
        }
        self.log(|_| format!("jm{j} steps down: {why}"));
        let now = self.now;
        if let Some(mut job) = self.jms[j].job.take() {
            let cmds = job.suspend(now);
            for c in cmds {
                if let Command::Send { tm_id, msg } = c {
                    self.send_to_tm(j, &tm_id, msg);
                }
            }
            self.check_restarts(j, &job);
        }
        let m = &mut self.jms[j];
        let old_token = m.token.take();
        m.waiting = false;
        m.unrecorded = None;
        m.recover_at = None;
        let tms: Vec<usize> = m.tms.keys().copied().collect();
        for tm in tms {
            self.break_link(tm);
        }
        self.jms[j].tms.clear();
        // The campaign continues: a leader that stepped down on its own re-joins at the back.
        if self.jms[j].held.is_some_and(|h| Some(h.0) == old_token) {
            self.jms[j].held = None;
            self.jms[j].needs_rejoin = true;
        }
    }

    fn jm_tick(&mut self, j: usize) {
        if self.jms[j].token.is_none() {
            return;
        }
        if self.jms[j].recover_at.is_some_and(|t| t <= self.now) {
            self.recover(j);
        }
        if self.jms[j].unrecorded.is_some() && self.record_result(j) == Recorded::Yes {
            let mut cmds = self.jms[j].unrecorded.take().unwrap_or_default();
            cmds.push(Command::ReleaseSlots);
            self.execute_commands(j, cmds);
        }
        // Archive an ended job once its result is durable.
        if self.jms[j].unrecorded.is_none()
            && self.jms[j]
                .job
                .as_ref()
                .is_some_and(|job| job.status().is_globally_terminal())
        {
            if let Some(job) = self.jms[j].job.take() {
                self.check_restarts(j, &job);
            }
            return;
        }
        self.schedule_waiting(j);
        let free = self.free_slots(j);
        let now = self.now;
        let cmds = match self.jms[j].job.as_mut() {
            Some(job) if !job.status().is_globally_terminal() => job.tick(now, free),
            _ => return,
        };
        self.execute(j, cmds);
    }

    fn free_slots(&self, j: usize) -> usize {
        let used = |tm: usize| {
            self.jms[j]
                .job
                .as_ref()
                .filter(|job| !job.status().is_globally_terminal())
                .map_or(0, |job| job.slots_on(&tm_name(tm)))
        };
        self.jms[j]
            .tms
            .keys()
            .map(|&tm| (self.p.slots_per_tm as usize).saturating_sub(used(tm)))
            .sum()
    }

    /// Free slots on registered TaskManagers, round-robin.
    fn allocate(&self, j: usize, need: usize) -> Option<Vec<SlotRef>> {
        let mut free: Vec<(usize, usize)> = self.jms[j]
            .tms
            .keys()
            .map(|&tm| {
                let used = self.jms[j]
                    .job
                    .as_ref()
                    .map_or(0, |job| job.slots_on(&tm_name(tm)));
                (tm, (self.p.slots_per_tm as usize).saturating_sub(used))
            })
            .collect();
        let mut out = Vec::new();
        while out.len() < need {
            let mut progressed = false;
            for (tm, n) in free.iter_mut() {
                if *n > 0 && out.len() < need {
                    *n -= 1;
                    progressed = true;
                    out.push(SlotRef {
                        tm_id: tm_name(*tm),
                        data_address: format!("sim:{tm}"),
                    });
                }
            }
            if !progressed {
                return None;
            }
        }
        Some(out)
    }

    fn schedule_waiting(&mut self, j: usize) {
        if !self.jms[j].waiting {
            return;
        }
        let Some(need) = self.jms[j].job.as_ref().map(|job| job.slots_needed()) else {
            self.jms[j].waiting = false;
            return;
        };
        if self.jms[j]
            .job
            .as_ref()
            .is_some_and(|job| job.status() != JobStatus::Created)
        {
            self.jms[j].waiting = false;
            return;
        }
        let Some(slots) = self.allocate(j, need) else {
            return;
        };
        self.jms[j].waiting = false;
        let now = self.now;
        let cmds = self.jms[j]
            .job
            .as_mut()
            .map(|job| job.assign_slots(slots, now))
            .unwrap_or_default();
        self.execute(j, cmds);
    }

    fn lose_taskmanager(&mut self, j: usize, tm: usize, why: &str) {
        if let Some(epoch) = self.jms[j].tms.remove(&tm) {
            // The JobManager closes the connection: the TaskManager reads EOF.
            let tinc = self.tms[tm].inc;
            let d = self.rng.gen_range(1..5);
            self.at(d, Ev::TmDisconnected { tm, tinc, epoch });
        }
        self.log(|_| format!("jm{j} lost tm{tm}: {why}"));
        let now = self.now;
        let cmds = self.jms[j]
            .job
            .as_mut()
            .map(|job| job.on_taskmanager_lost(&tm_name(tm), why, now))
            .unwrap_or_default();
        self.execute(j, cmds);
        self.replace_lost_slots(j, tm);
    }

    fn replace_lost_slots(&mut self, j: usize, tm: usize) {
        let name = tm_name(tm);
        let need = match self.jms[j].job.as_ref() {
            Some(job) if job.uses_taskmanager(&name) && !job.status().is_globally_terminal() => {
                job.slots_on(&name)
            }
            _ => return,
        };
        if let Some(fresh) = self.allocate(j, need) {
            if let Some(job) = self.jms[j].job.as_mut() {
                job.replace_slots(&name, fresh);
            }
        }
    }

    fn jm_on_message(&mut self, j: usize, msg: FromTm) {
        let now = self.now;
        let Some(job) = self.jms[j].job.as_mut() else {
            return;
        };
        let cmds = match msg {
            FromTm::State(key, state) => {
                if state == ExecutionState::Finished {
                    self.finished_ever.insert(key_task(&key));
                }
                job.on_task_state(key, state, None, now)
            }
            FromTm::Ack(key, id, state) => job.on_checkpoint_ack(key, id, state, now),
            FromTm::Decline(key, id) => {
                job.on_checkpoint_decline(key, id, DeclineReason::TaskNotReady, now)
            }
        };
        self.execute(j, cmds);
    }

    /// `execute` of jobmanager.rs: a job that just ended records its result (dirty) before any
    /// of its clean-up runs.
    fn execute(&mut self, j: usize, mut cmds: Vec<Command>) {
        let ended = self.jms[j]
            .job
            .as_ref()
            .is_some_and(|job| job.status().is_globally_terminal());
        if ended && cmds.iter().any(|c| matches!(c, Command::ReleaseSlots)) {
            match self.record_result(j) {
                Recorded::Yes => {}
                Recorded::Fenced => return,
                Recorded::Failed => {
                    let (later, now_cmds): (Vec<Command>, Vec<Command>) = cmds
                        .into_iter()
                        .partition(|c| matches!(c, Command::DiscardCheckpoint { .. }));
                    self.jms[j]
                        .unrecorded
                        .get_or_insert_with(Vec::new)
                        .extend(later);
                    cmds = now_cmds
                        .into_iter()
                        .filter(|c| !matches!(c, Command::ReleaseSlots))
                        .collect();
                }
            }
        }
        self.execute_commands(j, cmds);
    }

    fn record_result(&mut self, j: usize) -> Recorded {
        let Some(status) = self.jms[j].job.as_ref().map(|job| job.status()) else {
            return Recorded::Yes;
        };
        let name = status.name();
        let res = self.fenced_write(j, &format!("record result {name} (dirty)"), |w| {
            if w.zk.result.is_none() {
                w.zk.result = Some(crate::zk::JobResult {
                    status: name,
                    clean: false,
                });
                w.zk.results_created += 1;
                if name == "CANCELED" && !w.cancel_requested {
                    w.violate("the job was CANCELED although nobody cancelled it".into());
                }
            }
        });
        match res {
            Ok(()) => Recorded::Yes,
            Err(ZkError::Fenced) => {
                self.step_down(j, "recording the result was fenced");
                Recorded::Fenced
            }
            Err(ZkError::Unavailable) => Recorded::Failed,
        }
    }

    fn execute_commands(&mut self, j: usize, cmds: Vec<Command>) {
        let mut queue: VecDeque<Command> = cmds.into();
        while let Some(c) = queue.pop_front() {
            if self.violation.is_some() {
                return;
            }
            let now = self.now;
            match c {
                Command::WriteMetadata { metadata, .. } => {
                    let id = metadata.checkpoint_id;
                    self.check_metadata(&metadata);
                    let written = if self.disk_ok {
                        self.metadata.insert(id, (*metadata).clone());
                        Ok(())
                    } else {
                        Err("disk full".to_string())
                    };
                    let mut fenced = false;
                    let registered = written.and_then(|()| {
                        let r = self.fenced_write(j, &format!("register checkpoint {id}"), |w| {
                            w.zk.checkpoints.insert(id, ());
                            w.completed.insert(id);
                        });
                        r.map_err(|e| {
                            fenced = e == ZkError::Fenced;
                            format!("{e:?}")
                        })
                    });
                    let Some(job) = self.jms[j].job.as_mut() else {
                        continue;
                    };
                    let more = match registered {
                        Ok(()) => job.metadata_written(id, now),
                        Err(e) => job.metadata_write_failed(id, e, now),
                    };
                    if fenced {
                        self.step_down(j, "registering a checkpoint was fenced");
                        return;
                    }
                    queue.extend(more);
                }
                Command::DisposeClaimed { .. } => {}
                Command::ReserveCheckpointId { id } => {
                    let r = self.fenced_write(j, &format!("reserve checkpoint id {id}"), |w| {
                        w.zk.counter = w.zk.counter.max(id + 1);
                    });
                    match r {
                        Ok(()) => {}
                        Err(ZkError::Fenced) => {
                            self.step_down(j, "reserving a checkpoint id was fenced");
                            return;
                        }
                        Err(ZkError::Unavailable) => {
                            // jobmanager.rs: the barriers queued right behind are not sent.
                            queue.retain(|c| !is_trigger_of(c, id));
                            if let Some(job) = self.jms[j].job.as_mut() {
                                queue.extend(job.checkpoint_trigger_failed(
                                    id,
                                    "ZooKeeper unavailable".into(),
                                    now,
                                ));
                            }
                        }
                    }
                }
                Command::DiscardCheckpoint { id, .. } => {
                    match self.fenced_write(j, &format!("unregister checkpoint {id}"), |w| {
                        w.zk.checkpoints.remove(&id);
                    }) {
                        Ok(()) => {
                            self.metadata.remove(&id);
                        }
                        Err(ZkError::Fenced) => {
                            self.step_down(j, "unregistering a checkpoint was fenced");
                            return;
                        }
                        Err(ZkError::Unavailable) => {} // keep its files
                    }
                }
                Command::Restore { hint, .. } => {
                    let lost: Vec<usize> = self.jms[j]
                        .job
                        .as_ref()
                        .map(|job| job.taskmanagers())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|n| tm_index(n))
                        .filter(|tm| !self.jms[j].tms.contains_key(tm))
                        .collect();
                    for tm in lost {
                        self.replace_lost_slots(j, tm);
                    }
                    let missing = self.jms[j].job.as_ref().is_some_and(|job| {
                        job.taskmanagers().iter().any(|n| {
                            tm_index(n).is_none_or(|tm| !self.jms[j].tms.contains_key(&tm))
                        })
                    });
                    let selection = if missing {
                        Err(None)
                    } else {
                        self.select_restore(j)
                    };
                    let Some(job) = self.jms[j].job.as_mut() else {
                        continue;
                    };
                    let more = match selection {
                        Ok((restore, skipped)) => {
                            let n = restore.as_ref().map(|c| c.checkpoint_id);
                            let _ = hint;
                            let cmds = job.deploy_restarted(restore, skipped, now);
                            if cmds.iter().any(|c| {
                                matches!(
                                    c,
                                    Command::Send {
                                        msg: JmMessage::Deploy { .. },
                                        ..
                                    }
                                )
                            }) {
                                self.jms[j].restart_deploys += 1;
                                self.log(|_| format!("jm{j} restores from checkpoint {n:?}"));
                            }
                            cmds
                        }
                        Err(None) => job.postpone_restore(now, "waiting for slots"),
                        Err(Some(RestoreProblem::Unavailable)) => {
                            job.postpone_restore(now, "ZooKeeper unavailable")
                        }
                        Err(Some(RestoreProblem::Unreadable)) => {
                            job.fail_job("registered checkpoints unreadable".into(), now)
                        }
                    };
                    // jobmanager.rs: a job that fails here ends at once; its result is recorded
                    // before its clean-up (`execute`).
                    let ended = self.jms[j]
                        .job
                        .as_ref()
                        .is_some_and(|job| job.status().is_globally_terminal());
                    if ended {
                        self.execute(j, more);
                        continue;
                    }
                    queue.extend(more);
                }
                Command::Send { tm_id, msg } => {
                    if self.jms[j].token.is_none() {
                        continue;
                    }
                    self.send_to_tm(j, &tm_id, msg);
                }
                Command::ReleaseSlots => {
                    let terminal = self.jms[j]
                        .job
                        .as_ref()
                        .is_some_and(|job| job.status().is_globally_terminal());
                    if terminal {
                        match self.clean_up_ended_job(j) {
                            Ok(()) => {}
                            Err(ZkError::Fenced) => {
                                self.step_down(j, "the clean-up was fenced");
                                return;
                            }
                            Err(ZkError::Unavailable) => {} // the next leader finishes it
                        }
                    }
                }
            }
        }
    }

    /// `select_restore` of jobmanager.rs with HA: the newest registered checkpoint whose
    /// `_metadata` reads; never "nothing" when the store cannot be read or when checkpoints are
    /// registered but none reads.
    fn select_restore(&self, j: usize) -> Result<RestoreSelection, Option<RestoreProblem>> {
        if self.zk_read(j).is_err() {
            return Err(Some(RestoreProblem::Unavailable));
        }
        if self.sabotage.restore_from_nothing {
            return Ok((None, Vec::new()));
        }
        let mut skipped = Vec::new();
        for id in self.zk.checkpoints.keys().rev() {
            match self.metadata.get(id) {
                Some(cp) => return Ok((Some(cp.clone()), skipped)),
                None => skipped.push((*id, "no _metadata".to_string())),
            }
        }
        if !self.zk.checkpoints.is_empty() {
            return Err(Some(RestoreProblem::Unreadable));
        }
        Ok((None, skipped))
    }

    /// Invariant 1 at the moment `_metadata` is written: every task acknowledged (or finished).
    fn check_metadata(&mut self, cp: &CompletedCheckpoint) {
        let id = cp.checkpoint_id;
        let expected = 2 * self.p.p as usize;
        if cp.tasks.len() != expected {
            self.violate(format!(
                "checkpoint {id} completes with {} task states, the job has {expected} tasks",
                cp.tasks.len()
            ));
            return;
        }
        for t in &cp.tasks {
            let task = (t.task.vertex as usize, t.task.subtask);
            if !self.acked.contains(&(id, task.0, task.1)) && !self.finished_ever.contains(&task) {
                self.violate(format!(
                    "checkpoint {id} completes without an ack from {:?}",
                    t.task
                ));
                return;
            }
        }
    }

    fn send_to_tm(&mut self, j: usize, tm_id: &str, msg: JmMessage) {
        let Some(tm) = tm_index(tm_id) else { return };
        let Some(&epoch) = self.jms[j].tms.get(&tm) else {
            return;
        };
        let (token, m) = match msg {
            JmMessage::Deploy { token, batch } => {
                // One message per TaskManager: its subtasks arrive together, in order.
                for t in &batch.tasks {
                    let key = batch.key(t);
                    // Invariant 5: nobody runs the job once its result is recorded.
                    if self.zk.result.is_some() && self.zk.leader.is_some_and(|l| l.token == token)
                    {
                        self.violate(format!(
                            "{key:?} deployed by the current leader after the job's result {:?} was recorded",
                            self.zk.result
                        ));
                    }
                    if batch.restored_checkpoint.is_none() && !self.zk.checkpoints.is_empty() {
                        self.violate(format!(
                            "{key:?} deployed from nothing while checkpoints {:?} are registered",
                            self.zk.checkpoints.keys().collect::<Vec<_>>()
                        ));
                    }
                    self.transmit_to_tm(
                        tm,
                        epoch,
                        token,
                        ToTm::Deploy {
                            key,
                            restored: batch.restored_checkpoint,
                            state: t.restore.as_ref().map(|r| r.state.clone()),
                        },
                    );
                }
                return;
            }
            JmMessage::Cancel { token, key } => (token, ToTm::Cancel(key)),
            JmMessage::TriggerCheckpoint {
                token,
                key,
                checkpoint_id,
                ..
            } => (token, ToTm::Trigger(key, checkpoint_id)),
            JmMessage::NotifyCheckpointComplete {
                token,
                key,
                checkpoint_id,
            } => {
                // Invariant 1: tasks hear "complete" only for a checkpoint that is.
                if !self.completed.contains(&checkpoint_id) {
                    self.violate(format!(
                        "checkpoint {checkpoint_id} announced complete but it is not (not every ack, no durable _metadata, or not registered)"
                    ));
                }
                (token, ToTm::Notify(key, checkpoint_id))
            }
            JmMessage::AbortCheckpoint {
                token,
                key,
                checkpoint_id,
            } => (token, ToTm::Abort(key, checkpoint_id)),
            _ => return,
        };
        self.transmit_to_tm(tm, epoch, token, m);
    }

    fn transmit_to_tm(&mut self, tm: usize, epoch: u64, token: u128, msg: ToTm) {
        if self.p.drop_p > 0.0 && self.rng.gen_bool(self.p.drop_p) {
            self.log(|_| format!("network drops {msg:?} to tm{tm}: connection breaks"));
            self.break_link(tm);
            return;
        }
        let inc = self.tms[tm].inc;
        let copies = if self.p.dup_p > 0.0 && self.rng.gen_bool(self.p.dup_p) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.link_delay((true, tm, epoch));
            self.at(
                d,
                Ev::ToTm {
                    tm,
                    inc,
                    epoch,
                    token,
                    msg: msg.clone(),
                },
            );
        }
    }

    /// Invariant 4: the JobMaster's restarts against the configured strategy.
    fn check_restarts(&mut self, j: usize, job: &JobMaster) {
        let d = job.details(self.now);
        let recoveries: Vec<_> = d
            .recoveries
            .iter()
            .filter(|r| !r.cause.starts_with("leader change"))
            .cloned()
            .collect();
        for r in &recoveries {
            if let Some(dep) = r.deployed {
                if dep < r.decided + r.restart_delay_ms {
                    self.violate(format!(
                        "jm{j}: restart deployed at {dep} before its delay of {} ms after {}",
                        r.restart_delay_ms, r.decided
                    ));
                }
            }
        }
        let delays_ok =
            |want: &dyn Fn(i64) -> bool| recoveries.iter().all(|r| want(r.restart_delay_ms));
        match self.p.restart.clone() {
            RestartStrategyConfig::None => {
                if !recoveries.is_empty() || self.jms[j].restart_deploys > 0 {
                    self.violate(format!(
                        "jm{j}: restart strategy none, yet the job restarted"
                    ));
                }
            }
            RestartStrategyConfig::FixedDelay { attempts, delay } => {
                let delay = delay.as_millis() as i64;
                if !delays_ok(&|x| x == delay) {
                    self.violate(format!(
                        "jm{j}: fixed-delay restarts with a delay other than {delay} ms"
                    ));
                }
                if attempts != u32::MAX
                    && (d.restarts > attempts || self.jms[j].restart_deploys > attempts)
                {
                    self.violate(format!(
                        "jm{j}: fixed-delay allows {attempts} restarts, the job restarted {} times ({} restores deployed)",
                        d.restarts, self.jms[j].restart_deploys
                    ));
                }
            }
            RestartStrategyConfig::FailureRate {
                max_failures_per_interval,
                interval,
                delay,
            } => {
                let delay = delay.as_millis() as i64;
                if !delays_ok(&|x| x == delay) {
                    self.violate(format!(
                        "jm{j}: failure-rate restarts with a delay other than {delay} ms"
                    ));
                }
                let interval = interval.as_millis() as i64;
                let times: Vec<i64> = recoveries.iter().map(|r| r.decided).collect();
                for (i, &t) in times.iter().enumerate() {
                    let within = times[..=i].iter().filter(|&&x| t - x <= interval).count();
                    if within > max_failures_per_interval as usize {
                        self.violate(format!(
                            "jm{j}: failure-rate allows {max_failures_per_interval} restarts per {interval} ms, {within} were granted within one"
                        ));
                        break;
                    }
                }
            }
            RestartStrategyConfig::ExponentialDelay {
                initial_backoff,
                max_backoff,
                ..
            } => {
                let lo = initial_backoff.as_millis() as i64;
                let hi = (max_backoff.as_millis() as i64).max(lo);
                if !delays_ok(&|x| (lo..=hi).contains(&x)) {
                    self.violate(format!(
                        "jm{j}: exponential-delay restart delay outside [{lo}, {hi}] ms"
                    ));
                }
            }
        }
    }

    // ----- TaskManagers and tasks -----

    fn tm_connect(&mut self, tm: usize, tinc: u64) {
        let t = &self.tms[tm];
        if !t.alive || t.inc != tinc || t.conn.is_some() || t.connecting.is_some() {
            return;
        }
        // Leader retrieval: leader-info in ZooKeeper.
        let leader = if self.zk.up { self.zk.leader } else { None };
        match leader {
            Some(l) if self.jms[l.jm].alive => {
                self.seq += 1;
                let attempt = self.seq;
                self.tms[tm].connecting = Some(attempt);
                let jinc = self.jms[l.jm].inc;
                // The TaskManager learned of this leader from leader-info, which the campaign
                // publishes after queueing its earlier leadership events (a revoke first): the
                // registration reaches the main loop after them.
                let after = self.jms[l.jm].last_election_ev + 1 - self.now;
                let d = self.delay().max(after);
                self.at(
                    d,
                    Ev::Register {
                        jm: l.jm,
                        jinc,
                        tm,
                        tinc,
                        attempt,
                    },
                );
                let hb = self.p.hb_timeout;
                self.at(hb, Ev::RegisterTimeout { tm, tinc, attempt });
            }
            _ => {
                let d = self.rng.gen_range(50..300);
                self.at(d, Ev::TmConnect { tm, tinc });
            }
        }
    }

    fn tm_report(&mut self, tm: usize, key: ExecutionKey, msg: FromTm) {
        let Some(c) = self.tms[tm].conn else { return };
        let under = self.tms[tm].tasks.get(&key).map(|t| t.token);
        if under.is_some_and(|t| t != c.token) {
            return; // reports go only to the leader that deployed the task
        }
        if self.p.drop_p > 0.0 && self.rng.gen_bool(self.p.drop_p) {
            self.log(|_| format!("network drops {msg:?} from tm{tm}: connection breaks"));
            self.break_link(tm);
            return;
        }
        let copies = if self.p.dup_p > 0.0 && self.rng.gen_bool(self.p.dup_p) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let d = self.link_delay((false, tm, c.epoch));
            self.at(
                d,
                Ev::ToJm {
                    jm: c.jm,
                    inc: c.jinc,
                    tm,
                    epoch: c.epoch,
                    msg: msg.clone(),
                },
            );
        }
    }

    fn tm_on_message(&mut self, tm: usize, token: u128, msg: ToTm) {
        let tinc = self.tms[tm].inc;
        match msg {
            ToTm::Deploy {
                key,
                restored,
                state,
            } => {
                if self.tms[tm].tasks.contains_key(&key) {
                    return; // a duplicate
                }
                let values = state.as_ref().map(inline_u64).unwrap_or_default();
                self.restores += u64::from(restored.is_some());
                let kind = if key.vertex == SRC {
                    Kind::Source {
                        pos: values.first().copied().unwrap_or(0),
                        final_cp: None,
                        last_barrier: 0,
                    }
                } else {
                    // recoverAndCommit: the transactions pending in the restored state.
                    let s = key.subtask;
                    for &cid in &values {
                        self.commit(
                            s,
                            cid,
                            restored.unwrap_or(0),
                            &format!("restore of {key:?} from checkpoint {restored:?}"),
                        );
                    }
                    Kind::Sink {
                        open: Vec::new(),
                        staged: BTreeSet::new(),
                        input_ended: false,
                    }
                };
                self.log(|_| format!("tm{tm} deploys {key:?} restoring {restored:?} {values:?}"));
                self.tms[tm].tasks.insert(
                    key,
                    Task {
                        token,
                        state: ExecutionState::Deploying,
                        kind,
                    },
                );
                let d = self.rng.gen_range(1..30);
                self.at(d, Ev::TaskStart { tm, tinc, key });
            }
            ToTm::Cancel(key) => {
                let Some(task) = self.tms[tm].tasks.get_mut(&key) else {
                    return;
                };
                if is_terminal(task.state) {
                    return;
                }
                task.state = ExecutionState::Canceled;
                self.tm_report(tm, key, FromTm::State(key, ExecutionState::Canceled));
                self.tms[tm].tasks.remove(&key);
            }
            ToTm::Trigger(key, id) => {
                let Some(task) = self.tms[tm].tasks.get_mut(&key) else {
                    return;
                };
                if task.state != ExecutionState::Running {
                    self.tm_report(tm, key, FromTm::Decline(key, id));
                    return;
                }
                let limit = self.p.limit;
                if let Kind::Source {
                    pos,
                    final_cp,
                    last_barrier,
                } = &mut task.kind
                {
                    if id <= *last_barrier {
                        return;
                    }
                    *last_barrier = id;
                    let pos = *pos;
                    if pos >= limit && final_cp.is_none() {
                        *final_cp = Some(id);
                    }
                    self.channels
                        .entry((key.subtask, key.attempt))
                        .or_default()
                        .push_back(Item::Barrier(id));
                    self.acked.insert((id, key.vertex, key.subtask));
                    self.tm_report(tm, key, FromTm::Ack(key, id, snapshot("sequence", [pos])));
                }
            }
            ToTm::Notify(key, id) => {
                let Some(task) = self.tms[tm].tasks.get_mut(&key) else {
                    return;
                };
                if task.state != ExecutionState::Running {
                    return;
                }
                match &mut task.kind {
                    Kind::Source { final_cp, .. } => {
                        if final_cp.is_some_and(|f| f <= id) {
                            task.state = ExecutionState::Finished;
                            self.channels
                                .entry((key.subtask, key.attempt))
                                .or_default()
                                .push_back(Item::End);
                            self.tm_report(tm, key, FromTm::State(key, ExecutionState::Finished));
                        }
                    }
                    Kind::Sink { staged, .. } => {
                        let due: Vec<u64> = staged.range(..=id).copied().collect();
                        for cid in &due {
                            staged.remove(cid);
                        }
                        for cid in due {
                            self.commit(key.subtask, cid, id, &format!("notify {id} to {key:?}"));
                        }
                        self.maybe_finish_sink(tm, key);
                    }
                }
            }
            // Staged transactions wait for a later completed checkpoint, which covers them.
            ToTm::Abort(key, id) => {
                self.log(|_| format!("tm{tm}: {key:?} drops checkpoint {id}"));
                if !self.sabotage.commit_on_abort {
                    return;
                }
                let Some(Task {
                    kind: Kind::Sink { staged, .. },
                    ..
                }) = self.tms[tm].tasks.get_mut(&key)
                else {
                    return;
                };
                let due: Vec<u64> = staged.range(..=id).copied().collect();
                for cid in &due {
                    staged.remove(cid);
                }
                for cid in due {
                    self.commit(key.subtask, cid, id, &format!("abort {id} to {key:?}"));
                }
            }
        }
    }

    fn task_start(&mut self, tm: usize, tinc: u64, key: ExecutionKey) {
        let t = &mut self.tms[tm];
        if !t.alive || t.inc != tinc {
            return;
        }
        let Some(task) = t.tasks.get_mut(&key) else {
            return;
        };
        if task.state != ExecutionState::Deploying {
            return;
        }
        task.state = ExecutionState::Running;
        self.tm_report(tm, key, FromTm::State(key, ExecutionState::Running));
        let d = self.rng.gen_range(5..40);
        self.at(d, Ev::TaskStep { tm, tinc, key });
    }

    fn task_step(&mut self, tm: usize, tinc: u64, key: ExecutionKey) {
        let t = &self.tms[tm];
        if !t.alive || t.inc != tinc {
            return;
        }
        let Some(task) = t.tasks.get(&key) else {
            return;
        };
        if task.state != ExecutionState::Running {
            return;
        }
        let limit = self.p.limit;
        let k = self.rng.gen_range(1..=3u64);
        let mut acks = Vec::new();
        let mut input_done = false;
        let task = self.tms[tm]
            .tasks
            .get_mut(&key)
            .unwrap_or_else(|| unreachable!());
        match &mut task.kind {
            Kind::Source { pos, .. } => {
                if *pos < limit {
                    let end = (*pos + k).min(limit);
                    self.channels
                        .entry((key.subtask, key.attempt))
                        .or_default()
                        .push_back(Item::Records(*pos, end));
                    *pos = end;
                }
            }
            Kind::Sink {
                open,
                staged,
                input_ended,
            } => {
                let ch = self.channels.entry((key.subtask, key.attempt)).or_default();
                while let Some(item) = ch.pop_front() {
                    match item {
                        Item::Records(a, b) => open.push((a, b)),
                        Item::Barrier(id) => {
                            staged.insert(id);
                            acks.push((id, std::mem::take(open), staged.clone()));
                        }
                        Item::End => {
                            *input_ended = true;
                            input_done = true;
                        }
                    }
                }
            }
        }
        for (id, records, staged) in acks {
            // Pre-commit: the transaction of checkpoint `id` is staged in the external system.
            match self.txns.get(&(key.subtask, id)) {
                Some(old) if old.records != records => self.violate(format!(
                    "sink {} staged transaction {id} twice with different records: checkpoint ids reused",
                    key.subtask
                )),
                Some(_) => {}
                None => {
                    self.txns.insert(
                        (key.subtask, id),
                        Txn {
                            records,
                            committed: false,
                        },
                    );
                }
            }
            let pending: Vec<u64> = staged
                .iter()
                .copied()
                .filter(|c| {
                    self.txns
                        .get(&(key.subtask, *c))
                        .is_some_and(|t| !t.committed)
                })
                .collect();
            self.acked.insert((id, key.vertex, key.subtask));
            self.tm_report(tm, key, FromTm::Ack(key, id, snapshot("sink", pending)));
        }
        if input_done {
            self.maybe_finish_sink(tm, key);
        }
        let d = self.rng.gen_range(5..40);
        self.at(d, Ev::TaskStep { tm, tinc, key });
    }

    /// A sink whose input ended finishes once nothing it holds is uncommitted.
    fn maybe_finish_sink(&mut self, tm: usize, key: ExecutionKey) {
        let s = key.subtask;
        let txns = &self.txns;
        let Some(task) = self.tms[tm].tasks.get_mut(&key) else {
            return;
        };
        if task.state != ExecutionState::Running {
            return;
        }
        if let Kind::Sink {
            open,
            staged,
            input_ended,
        } = &mut task.kind
        {
            staged.retain(|c| {
                txns.get(&(s, *c))
                    .is_some_and(|t| !t.committed && !t.records.is_empty())
            });
            if *input_ended && open.is_empty() && staged.is_empty() {
                task.state = ExecutionState::Finished;
                self.tm_report(tm, key, FromTm::State(key, ExecutionState::Finished));
            }
        }
    }

    /// Commits transaction `cid` of sink `s` (idempotent). Invariants 2 and 6.
    /// `covering`: the completed checkpoint that covers the transaction (notified or restored).
    fn commit(&mut self, s: u32, cid: u64, covering: u64, why: &str) {
        if cid > covering || !self.completed.contains(&covering) {
            self.violate(format!(
                "sink {s} commits transaction {cid} ({why}) but checkpoint {covering} covering it never completed"
            ));
            return;
        }
        let Some(txn) = self.txns.get_mut(&(s, cid)) else {
            self.violate(format!(
                "sink {s}: transaction {cid} to commit ({why}) does not exist"
            ));
            return;
        };
        if txn.committed {
            return;
        }
        txn.committed = true;
        let records = txn.records.clone();
        for (a, b) in records {
            let have = self.output[s as usize];
            if a != have {
                let kind = if a < have { "duplicated" } else { "lost" };
                self.violate(format!(
                    "exactly-once: sink {s} commits records {a}..{b} of transaction {cid} ({why}) after 0..{have}: records {kind}"
                ));
                return;
            }
            self.output[s as usize] = b;
        }
        self.log(|w| {
            format!(
                "sink {s} committed transaction {cid} ({why}); output 0..{}",
                w.output[s as usize]
            )
        });
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Recorded {
    Yes,
    Fenced,
    Failed,
}

/// The checkpoint to restore from (`None`: none registered) and the newer ones skipped.
type RestoreSelection = (Option<CompletedCheckpoint>, Vec<(u64, String)>);

#[derive(Debug)]
enum RestoreProblem {
    Unavailable,
    Unreadable,
}

fn is_terminal(s: ExecutionState) -> bool {
    matches!(
        s,
        ExecutionState::Finished | ExecutionState::Canceled | ExecutionState::Failed
    )
}

fn tm_name(tm: usize) -> String {
    format!("tm{tm}")
}

fn tm_index(name: &str) -> Option<usize> {
    name.strip_prefix("tm")?.parse().ok()
}

/// Runs one seed. `trace`: keep the event trace (for a failing seed's report).
pub fn run_seed_with(seed: u64, sabotage: Sabotage, trace: bool) -> Result<Outcome, SimFailure> {
    let mut w = World::new(seed, sabotage, trace);
    match w.run() {
        Ok(o) => Ok(o),
        Err(message) => Err(SimFailure {
            seed,
            message,
            trace: w.trace.take().unwrap_or_default(),
        }),
    }
}

/// Runs one seed; on failure runs it again with the trace on (the run is deterministic).
pub fn run_seed(seed: u64) -> Result<Outcome, SimFailure> {
    run_checked(seed, Sabotage::default())
}

/// [`run_seed`] with sabotage switches.
pub fn run_checked(seed: u64, sabotage: Sabotage) -> Result<Outcome, SimFailure> {
    match run_seed_with(seed, sabotage, false) {
        Ok(o) => Ok(o),
        Err(_) => run_seed_with(seed, sabotage, true),
    }
}
