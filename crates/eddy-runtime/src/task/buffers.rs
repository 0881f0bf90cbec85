//! Network memory of a TaskManager (Flink's `NetworkBufferPool` and credit-based flow control).
//!
//! A TaskManager has one pool of `taskmanager.memory.network.*` bytes, counted in buffers of
//! `taskmanager.memory.segment-size`. Deploying a task reserves its minimum from the pool, and
//! a task the pool cannot serve is refused at deployment ([`INSUFFICIENT_BUFFERS`]), never left to
//! run out of memory later:
//! - each input channel: `taskmanager.network.memory.buffers-per-channel` exclusive buffers,
//! - each input gate (a task's inputs): `taskmanager.network.memory.floating-buffers-per-gate`
//!   floating buffers, lent to whichever channel has all its exclusive buffers in use,
//! - each output edge: one buffer per channel (the batch being filled) plus one (the frame being
//!   written).
//!
//! The pool counts; it does not pre-allocate. A buffer is allocated when a batch is built or a
//! frame arrives, and freed once consumed; credits bound how many exist at once: a producer may
//! send one event per credit, and the consumer grants a channel at most its exclusive buffers
//! plus the floating ones it lends ([`GateBuffers`]). The record writer fills a batch up to one
//! segment (a single record larger than a segment travels alone, in one buffer of its own size).
//! Exclusive buffers guarantee every channel progress, so floating buffers never deadlock a
//! gate: a channel keeps the ones lent to it until another channel out of credits needs one or
//! its producer ends.

use crate::error::{JobError, Result};
use crate::task::channel::{CreditReturn, Producer};
use crate::task::TaskDeployment;
use std::sync::{Arc, Mutex};

/// How a refusal starts (Flink's message). The refusal is a non-recoverable error
/// (`ThrowableType::NonRecoverableError`): the JobMaster fails the job on it instead of
/// restarting, since a restart would ask the same TaskManagers for the same buffers.
pub const INSUFFICIENT_BUFFERS: &str = "Insufficient number of network buffers";

/// The sizes of a TaskManager's network memory (from `Config::network_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferPoolConfig {
    /// `taskmanager.memory.network.{fraction,min,max}` resolved to bytes.
    pub pool_bytes: u64,
    pub segment_size: u32,
    pub buffers_per_channel: u32,
    pub floating_per_gate: u32,
}

impl Default for BufferPoolConfig {
    /// The keys' defaults with `taskmanager.memory.process.size` unset: 10 % of 1728 MiB.
    fn default() -> Self {
        BufferPoolConfig {
            pool_bytes: (1728u64 << 20) / 10,
            segment_size: 32 << 10,
            buffers_per_channel: 2,
            floating_per_gate: 8,
        }
    }
}

impl BufferPoolConfig {
    pub fn total_buffers(&self) -> u64 {
        self.pool_bytes / u64::from(self.segment_size.max(1))
    }

    /// The most credits one channel can hold: its exclusive buffers and all of its gate's
    /// floating ones.
    pub fn max_channel_credits(&self) -> u32 {
        self.buffers_per_channel
            .saturating_add(self.floating_per_gate)
    }

    /// Buffers a task needs at least: (input channels, output channels, output edges).
    pub fn required(&self, inputs: usize, outputs: usize, output_edges: usize) -> u64 {
        let floating = if inputs > 0 {
            u64::from(self.floating_per_gate)
        } else {
            0
        };
        inputs as u64 * u64::from(self.buffers_per_channel)
            + floating
            + outputs as u64
            + output_edges as u64
    }
}

/// A TaskManager's pool of network buffers.
pub struct NetworkBufferPool {
    /// Named in refusals (the TaskManager's id).
    owner: Mutex<String>,
    config: BufferPoolConfig,
    available: Mutex<u64>,
}

impl NetworkBufferPool {
    pub fn new(config: BufferPoolConfig) -> Arc<Self> {
        Arc::new(NetworkBufferPool {
            owner: Mutex::new("(unnamed)".into()),
            available: Mutex::new(config.total_buffers()),
            config,
        })
    }

    /// Names the TaskManager in refusals.
    pub fn set_owner(&self, owner: &str) {
        if let Ok(mut o) = self.owner.lock() {
            *o = owner.to_string();
        }
    }

    pub fn config(&self) -> &BufferPoolConfig {
        &self.config
    }

    /// Buffers not reserved by a running task.
    pub fn available(&self) -> u64 {
        self.available.lock().map(|a| *a).unwrap_or(0)
    }

    /// Reserves a task's minimum until the [`Reservation`] is dropped, or refuses it in one
    /// line naming this TaskManager, what the task needs, what the pool has and the keys to raise.
    pub fn reserve(self: &Arc<Self>, d: &TaskDeployment) -> Result<Reservation> {
        let outputs: usize = d.outputs.iter().map(|o| o.channels.len()).sum();
        let c = &self.config;
        let need = c.required(d.inputs.len(), outputs, d.outputs.len());
        let mut available = self
            .available
            .lock()
            .map_err(|_| JobError::new("buffer pool lock poisoned"))?;
        let (subtask, inputs, edges) = (d.subtask + 1, d.inputs.len(), d.outputs.len());
        let floating = if d.inputs.is_empty() {
            0
        } else {
            c.floating_per_gate
        };
        if need > *available {
            let owner = self.owner.lock().map(|o| o.clone()).unwrap_or_default();
            return Err(JobError::non_recoverable(format!(
                "{INSUFFICIENT_BUFFERS}: required {need}, but only {} available on TaskManager \
                 {owner} (subtask {subtask}/{} of vertex {}: {inputs} input channels x {} \
                 buffers-per-channel + {floating} floating + {outputs} output channels + {edges} \
                 output edges; the pool has {} buffers of {} bytes in all). Increase \
                 taskmanager.memory.network.fraction/min/max (or taskmanager.memory.process.size), \
                 or lower taskmanager.network.memory.buffers-per-channel/floating-buffers-per-gate",
                *available,
                d.parallelism,
                d.vertex,
                c.buffers_per_channel,
                c.total_buffers(),
                c.segment_size,
            )));
        }
        *available -= need;
        tracing::info!(
            "network buffers of subtask {subtask}/{} of vertex {}: reserved {need} buffers of {} \
             bytes ({inputs} input channels x {} buffers-per-channel + {floating} \
             floating-buffers-per-gate + {outputs} output channels + {edges} output edges), {} of \
             {} left",
            d.parallelism,
            d.vertex,
            c.segment_size,
            c.buffers_per_channel,
            *available,
            c.total_buffers(),
        );
        Ok(Reservation {
            pool: self.clone(),
            buffers: need,
        })
    }
}

/// A task's buffers, back to the pool when dropped (the task ended).
pub struct Reservation {
    pool: Arc<NetworkBufferPool>,
    buffers: u64,
}

impl Reservation {
    pub fn buffers(&self) -> u64 {
        self.buffers
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut a) = self.pool.available.lock() {
            *a += self.buffers;
        }
    }
}

/// The buffers of one input gate: each channel's exclusive buffers and the gate's floating ones,
/// and when consumed buffers go back to their producers as credits.
///
/// Per channel it counts the events that arrived and are not yet consumed (`in_use`), the
/// floating buffers lent to it (`lent`) and the consumed buffers not yet announced to its
/// producer (`unannounced`); the producer's credits (with the events in flight) are the rest of
/// its `exclusive + lent` buffers.
///
/// - **Lending** (Flink's floating buffers for a channel with backlog): an arrival that leaves
///   the producer without credits takes a free floating buffer for the channel — one more credit.
///   If none is free, the channel waits for one; the next event consumed on a channel holding
///   more lent buffers than it moves that buffer over (a credit for the waiting channel's
///   producer). A channel keeps its lent buffers while nobody waits, also when its queue drains:
///   a busy channel that pauses does not pay a stalled producer and a new lend each time, and
///   exclusive buffers still guarantee every channel progress. An ended channel gives all of them
///   back.
/// - **Announcing** (Flink's "unannounced credit"): consumed buffers are given back to the
///   producer in batches, once half of the channel's buffers are unannounced, or at once when its
///   queue holds at most one event (so the consumer does not run dry while the credit travels).
///   With 2 exclusive buffers and none lent this is one credit per consumed event, as before; a
///   channel with lent buffers sends a CREDIT frame (and wakes its producer) for every few events
///   instead of for each. A channel held back by barrier alignment does not consume: its
///   producer waits, which it would anyway.
pub struct GateBuffers {
    exclusive: u32,
    state: Mutex<GateState>,
}

struct GateState {
    free_floating: u32,
    channels: Vec<ChannelBuffers>,
    /// Channels out of credits waiting for a floating buffer, in the order they asked.
    waiting: Vec<u32>,
}

#[derive(Default)]
struct ChannelBuffers {
    in_use: u32,
    lent: u32,
    unannounced: u32,
    waiting: bool,
    ended: bool,
    /// Where this channel's credits go, known from its first event: lets another channel's
    /// consumption hand it a floating buffer.
    producer: Option<Producer>,
}

/// Credits to hand out once the gate's lock is released: (producer, count).
type Grants = Vec<(Producer, u32)>;

impl GateBuffers {
    pub fn new(channels: usize, exclusive: u32, floating: u32) -> Arc<Self> {
        Arc::new(GateBuffers {
            exclusive,
            state: Mutex::new(GateState {
                free_floating: floating,
                channels: (0..channels).map(|_| ChannelBuffers::default()).collect(),
                waiting: Vec::new(),
            }),
        })
    }

    /// Credits a producer gets when its channel opens.
    pub fn exclusive(&self) -> u32 {
        self.exclusive
    }

    fn grant(grants: Grants) {
        for (to, n) in grants {
            to.grant(n);
        }
    }

    /// An event arrived on channel `index` (before it enters the mailbox).
    pub fn arrived(&self, index: u32, credit: &CreditReturn) {
        let lend = {
            let Ok(mut s) = self.state.lock() else { return };
            let free = s.free_floating;
            let exclusive = self.exclusive;
            let Some(ch) = s.channels.get_mut(index as usize) else {
                return;
            };
            if ch.producer.is_none() {
                ch.producer = Some(credit.producer().clone());
            }
            ch.in_use += 1;
            let out_of_credits = ch.in_use + ch.unannounced >= exclusive + ch.lent;
            if !out_of_credits || ch.ended {
                false
            } else if free > 0 {
                ch.lent += 1;
                s.free_floating -= 1;
                true
            } else {
                if !ch.waiting {
                    ch.waiting = true;
                    s.waiting.push(index);
                }
                false
            }
        };
        if lend {
            credit.grant_producer(1);
        }
    }

    /// The event on channel `index` was consumed: its buffer goes to a channel waiting for a
    /// floating one (if this channel holds more lent buffers than that one), or back to this
    /// channel's producer as a credit, announced in a batch.
    pub fn consumed(&self, index: u32, credit: &CreditReturn) {
        let grants = {
            let Ok(mut s) = self.state.lock() else { return };
            self.consume(&mut s, index as usize, credit)
        };
        Self::grant(grants);
    }

    fn consume(&self, s: &mut GateState, i: usize, credit: &CreditReturn) -> Grants {
        let Some(ch) = s.channels.get_mut(i) else {
            return Vec::new();
        };
        ch.in_use = ch.in_use.saturating_sub(1);
        if ch.ended {
            return Vec::new();
        }
        if ch.waiting {
            // It has a buffer to give its producer now: no longer starved.
            ch.waiting = false;
            s.waiting.retain(|&w| w as usize != i);
        }
        let lent = s.channels[i].lent;
        if lent > 0 && !s.waiting.is_empty() {
            // The first waiting channel with fewer lent buffers gets this one.
            let channels = &s.channels;
            let taker = s.waiting.iter().position(|&w| {
                w as usize != i && channels.get(w as usize).is_some_and(|c| c.lent < lent)
            });
            if let Some(pos) = taker {
                let w = s.waiting.remove(pos) as usize;
                s.channels[i].lent -= 1;
                let to = &mut s.channels[w];
                to.lent += 1;
                to.waiting = false;
                return to.producer.clone().map(|p| (p, 1)).into_iter().collect();
            }
        }
        let ch = &mut s.channels[i];
        ch.unannounced += 1;
        let half = ((self.exclusive + ch.lent) / 2).max(1);
        if ch.unannounced >= half || ch.in_use <= 1 {
            let n = std::mem::take(&mut ch.unannounced);
            vec![(credit.producer().clone(), n)]
        } else {
            Vec::new()
        }
    }

    /// Channel `index` delivered its last event (the producer ended): its floating buffers go
    /// back to the gate, to the channels waiting for one first; its credits are not returned.
    pub fn ended(&self, index: u32) {
        let grants = {
            let Ok(mut s) = self.state.lock() else { return };
            let Some(ch) = s.channels.get_mut(index as usize) else {
                return;
            };
            ch.in_use = ch.in_use.saturating_sub(1);
            ch.ended = true;
            ch.unannounced = 0;
            ch.producer = None;
            let freed = std::mem::take(&mut ch.lent);
            s.free_floating += freed;
            s.waiting.retain(|&w| w != index);
            let mut grants = Vec::new();
            while s.free_floating > 0 && !s.waiting.is_empty() {
                let w = s.waiting.remove(0) as usize;
                s.free_floating -= 1;
                let to = &mut s.channels[w];
                to.waiting = false;
                to.lent += 1;
                if let Some(p) = to.producer.clone() {
                    grants.push((p, 1));
                }
            }
            grants
        };
        Self::grant(grants);
    }

    /// Floating buffers not lent to a channel.
    pub fn free_floating(&self) -> u32 {
        self.state.lock().map(|s| s.free_floating).unwrap_or(0)
    }

    /// Floating buffers lent to channel `index`.
    pub fn lent(&self, index: u32) -> u32 {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.channels.get(index as usize).map(|c| c.lent))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::channel::Credits;

    fn deployment(inputs: usize, outputs: &[usize]) -> TaskDeployment {
        TaskDeployment {
            job_id: eddy_core::JobId(1),
            job_name: "j".into(),
            attempt: 0,
            vertex: 1,
            subtask: 0,
            parallelism: 4,
            max_parallelism: 128,
            inputs: (0..inputs as u64).collect(),
            outputs: outputs
                .iter()
                .enumerate()
                .map(|(e, &n)| crate::task::OutputEdge {
                    stream_edge: e,
                    kind: crate::graph::PartitionKind::Hash,
                    channels: (0..n)
                        .map(|i| crate::task::OutputChannel {
                            id: 1000 + i as u64,
                            remote_address: None,
                        })
                        .collect(),
                })
                .collect(),
            exactly_once: true,
            checkpointing: true,
            buffer_timeout_ms: 100,
            restore: Default::default(),
            restored_checkpoint: None,
        }
    }

    fn pool(buffers: u64) -> Arc<NetworkBufferPool> {
        NetworkBufferPool::new(BufferPoolConfig {
            pool_bytes: buffers * 32 * 1024,
            ..BufferPoolConfig::default()
        })
    }

    #[test]
    fn a_task_reserves_exclusive_floating_and_output_buffers_and_returns_them() {
        let p = pool(200);
        // 32 inputs x 2 + 8 floating + 32 output channels + 1 edge = 105.
        let r = p.reserve(&deployment(32, &[32])).expect("fits");
        assert_eq!(r.buffers(), 105);
        assert_eq!(p.available(), 95);
        let e = match p.reserve(&deployment(32, &[32])) {
            Err(e) => {
                let e = e.context("deploying the task");
                assert!(
                    !e.is_recoverable(),
                    "a refusal is not recoverable, with context too"
                );
                e.message
                    .trim_start_matches("deploying the task: ")
                    .to_string()
            }
            Ok(_) => panic!("a second task fit into 95 buffers"),
        };
        assert!(
            e.starts_with(
                "Insufficient number of network buffers: required 105, but only 95 available"
            ),
            "{e}"
        );
        assert!(
            e.contains("taskmanager.memory.network.fraction/min/max"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");

        drop(r);
        assert_eq!(p.available(), 200);
        // A source (no inputs) needs no floating buffers.
        assert_eq!(p.reserve(&deployment(0, &[4])).expect("fits").buffers(), 5);
    }

    /// A producer on a local channel: takes a credit and sends (arrives) `n` events.
    fn send(ret: &CreditReturn, producer: &Credits, n: u32) {
        for _ in 0..n {
            assert!(producer.try_acquire(), "the producer is out of credits");
            ret.arrived();
        }
    }

    #[test]
    fn a_floating_buffer_goes_to_a_channel_out_of_credits_and_stays_while_nobody_else_waits() {
        let gate = GateBuffers::new(2, 1, 2);
        let p0 = Credits::new(1);
        let ret0 = CreditReturn::local(gate.clone(), 0, p0.clone());
        // Each arrival that leaves the producer without credits takes a floating buffer.
        send(&ret0, &p0, 1);
        assert_eq!(
            (p0.available(), gate.lent(0), gate.free_floating()),
            (1, 1, 1)
        );
        send(&ret0, &p0, 2);
        assert_eq!(
            (p0.available(), gate.lent(0), gate.free_floating()),
            (0, 2, 0)
        );
        // The queue drains: every buffer is a credit again; the lent ones stay with the channel
        // (a busy channel that pauses does not start over from its exclusive buffers).
        for _ in 0..3 {
            ret0.release();
        }
        assert_eq!(
            (p0.available(), gate.lent(0), gate.free_floating()),
            (3, 2, 0)
        );

        // Channel 1 runs out of its exclusive buffer with none free: it waits for one, and the
        // next event consumed on channel 0 (which holds more) moves that buffer over.
        let p1 = Credits::new(1);
        let ret1 = CreditReturn::local(gate.clone(), 1, p1.clone());
        send(&ret1, &p1, 1);
        assert_eq!(p1.available(), 0);
        send(&ret0, &p0, 1);
        ret0.release();
        assert_eq!((p1.available(), gate.lent(1)), (1, 1), "moved to channel 1");
        assert_eq!(
            (p0.available(), gate.lent(0)),
            (2, 1),
            "not returned to channel 0"
        );
        // Equal shares: nothing moves any more.
        send(&ret1, &p1, 1);
        send(&ret0, &p0, 1);
        ret0.release();
        assert_eq!((p0.available(), gate.lent(0), gate.lent(1)), (2, 1, 1));
        // Channel 1 ends: its lent buffer goes back to the gate, its credits nowhere.
        ret1.release();
        ret1.release_last();
        assert_eq!(
            (gate.free_floating(), gate.lent(1), p1.available()),
            (1, 0, 1)
        );
    }

    #[test]
    fn consumed_buffers_go_back_in_batches_of_half_the_channel_and_at_once_when_it_runs_low() {
        let gate = GateBuffers::new(1, 8, 0);
        let p = Credits::new(8);
        let ret = CreditReturn::local(gate.clone(), 0, p.clone());
        send(&ret, &p, 8);
        let mut seen = Vec::new();
        for _ in 0..8 {
            ret.release();
            seen.push(p.available());
        }
        // 4 consumed: announced together; then again at 4; the last one or two at once (the
        // queue holds at most one event: the consumer must not run dry while they travel).
        assert_eq!(seen, [0, 0, 0, 4, 4, 4, 7, 8]);
        // Two exclusive buffers and none lent: every consumed event is a credit at once.
        let gate = GateBuffers::new(1, 2, 0);
        let p = Credits::new(2);
        let ret = CreditReturn::local(gate.clone(), 0, p.clone());
        send(&ret, &p, 2);
        ret.release();
        assert_eq!(p.available(), 1);
    }

    #[test]
    fn the_floating_buffers_of_an_ended_channel_go_to_the_channels_waiting_for_one() {
        let gate = GateBuffers::new(2, 1, 1);
        let (p0, p1) = (Credits::new(1), Credits::new(1));
        let ret0 = CreditReturn::local(gate.clone(), 0, p0.clone());
        let ret1 = CreditReturn::local(gate.clone(), 1, p1.clone());
        send(&ret0, &p0, 2);
        ret0.release();
        ret0.release();
        // Channel 0 keeps its lent buffer; its producer sends its last event (the end of the
        // partition), and channel 1 runs out of credits with no floating buffer free.
        send(&ret0, &p0, 1);
        send(&ret1, &p1, 1);
        assert_eq!(
            (gate.lent(0), gate.free_floating(), p1.available()),
            (1, 0, 0)
        );
        ret0.release_last();
        assert_eq!((gate.lent(0), gate.lent(1), p1.available()), (0, 1, 1));
    }
}
