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
//! plus the floating ones it lends ([`GateBuffers`]). The record writer ships a batch before
//! its serialized form exceeds one segment (a single record larger than a segment travels alone,
//! in one buffer of its own size). Exclusive buffers guarantee every channel progress, so
//! floating buffers never deadlock a gate: a channel keeps the ones lent to it while it has
//! events queued and gives one back each time its queue drains.

use crate::error::{JobError, Result};
use crate::task::channel::CreditReturn;
use crate::task::TaskDeployment;
use std::sync::{Arc, Mutex};

/// How a refusal starts (Flink's message); the JobMaster fails the job on it instead of
/// restarting: a restart would ask the same TaskManagers for the same buffers.
pub const INSUFFICIENT_BUFFERS: &str = "Insufficient number of network buffers";

/// Whether a task failure is a refusal no restart can cure.
pub fn is_unrecoverable(error: &str) -> bool {
    error.contains(INSUFFICIENT_BUFFERS)
}

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
        if need > *available {
            let owner = self.owner.lock().map(|o| o.clone()).unwrap_or_default();
            return Err(JobError::new(format!(
                "{INSUFFICIENT_BUFFERS}: required {need}, but only {} available on TaskManager \
                 {owner} (subtask {}/{} of vertex {}: {} input channels x {} buffers-per-channel \
                 + {} floating + {outputs} output channels + {} output edges; the pool has {} \
                 buffers of {} bytes in all). Increase taskmanager.memory.network.fraction/min/max \
                 (or taskmanager.memory.process.size), or lower \
                 taskmanager.network.memory.buffers-per-channel/floating-buffers-per-gate",
                *available,
                d.subtask + 1,
                d.parallelism,
                d.vertex,
                d.inputs.len(),
                c.buffers_per_channel,
                if d.inputs.is_empty() {
                    0
                } else {
                    c.floating_per_gate
                },
                d.outputs.len(),
                c.total_buffers(),
                c.segment_size,
            )));
        }
        *available -= need;
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

/// The buffers of one input gate: each channel's exclusive buffers and the gate's floating ones.
///
/// Per channel it counts the events that arrived and are not yet consumed (`in_use`) and the
/// floating buffers lent to it. When an arrival leaves the producer without credits (every
/// buffer of the channel in use) and a floating buffer is free, it is lent to the channel: one
/// more credit for its producer. When an event is consumed, its buffer goes back to the producer
/// as a credit — a busy channel keeps its lent buffers, so its producer never waits for the
/// queue to drain — except when that consumption drained the channel's queue: then one lent
/// buffer goes back to the gate for the other channels.
pub struct GateBuffers {
    exclusive: u32,
    state: Mutex<GateState>,
}

struct GateState {
    free_floating: u32,
    /// Per channel: (events in use, floating buffers lent).
    channels: Vec<(u32, u32)>,
}

impl GateBuffers {
    pub fn new(channels: usize, exclusive: u32, floating: u32) -> Arc<Self> {
        Arc::new(GateBuffers {
            exclusive,
            state: Mutex::new(GateState {
                free_floating: floating,
                channels: vec![(0, 0); channels],
            }),
        })
    }

    /// Credits a producer gets when its channel opens.
    pub fn exclusive(&self) -> u32 {
        self.exclusive
    }

    /// An event arrived on channel `index` (before it enters the mailbox).
    pub fn arrived(&self, index: u32, credit: &CreditReturn) {
        let lend = {
            let Ok(mut s) = self.state.lock() else { return };
            let free = s.free_floating;
            let Some(ch) = s.channels.get_mut(index as usize) else {
                return;
            };
            ch.0 += 1;
            let lend = ch.0 >= self.exclusive + ch.1 && free > 0;
            if lend {
                ch.1 += 1;
                s.free_floating -= 1;
            }
            lend
        };
        if lend {
            credit.grant_producer(1);
        }
    }

    /// The event on channel `index` was consumed: the producer gets its credit back, unless the
    /// channel's queue drained and it holds a lent buffer (that goes back to the gate).
    pub fn consumed(&self, index: u32, credit: &CreditReturn) {
        let regrant = {
            let Ok(mut s) = self.state.lock() else { return };
            let Some(ch) = s.channels.get_mut(index as usize) else {
                return;
            };
            ch.0 = ch.0.saturating_sub(1);
            if ch.0 == 0 && ch.1 > 0 {
                ch.1 -= 1;
                s.free_floating += 1;
                false
            } else {
                true
            }
        };
        if regrant {
            credit.grant_producer(1);
        }
    }

    /// Floating buffers not lent to a channel.
    pub fn free_floating(&self) -> u32 {
        self.state.lock().map(|s| s.free_floating).unwrap_or(0)
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
            Err(e) => e.to_string(),
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
        assert!(is_unrecoverable(&format!("deploying the task: {e}")));
        drop(r);
        assert_eq!(p.available(), 200);
        // A source (no inputs) needs no floating buffers.
        assert_eq!(p.reserve(&deployment(0, &[4])).expect("fits").buffers(), 5);
    }

    #[test]
    fn floating_buffers_go_to_a_channel_out_of_credits_and_come_back_when_its_queue_drains() {
        let gate = GateBuffers::new(2, 2, 1);
        let producer = Credits::new(2);
        let ret = CreditReturn::local(gate.clone(), 0, producer.clone());
        // The producer spends its 2 exclusive credits.
        for _ in 0..2 {
            assert!(producer.try_acquire());
            gate.arrived(0, &ret);
        }
        // Out of credits with everything in use: the floating buffer is lent.
        assert_eq!(producer.available(), 1);
        assert_eq!(gate.free_floating(), 0);
        assert!(producer.try_acquire());
        gate.arrived(0, &ret);
        assert_eq!(producer.available(), 0, "only one floating buffer to lend");
        // While events are queued, consumed ones are credits again (the channel keeps the lent
        // buffer); the one that drains the queue gives the lent buffer back to the gate.
        ret.release();
        assert_eq!((gate.free_floating(), producer.available()), (0, 1));
        ret.release();
        assert_eq!((gate.free_floating(), producer.available()), (0, 2));
        ret.release();
        assert_eq!((gate.free_floating(), producer.available()), (1, 2));
        // The other channel still has its exclusive credits: a lent buffer never blocks it.
        let other = Credits::new(2);
        let ret1 = CreditReturn::local(gate.clone(), 1, other.clone());
        for _ in 0..2 {
            assert!(other.try_acquire());
            ret1.arrived();
        }
        assert_eq!((gate.free_floating(), other.available()), (0, 1));
    }
}
