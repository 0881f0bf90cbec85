//! Channels between subtasks, with credit-based flow control.
//!
//! Every event a producer sends on a channel (a batch, a watermark, a barrier, end of data, the
//! end) costs one credit, i.e. one network buffer of the consumer; the consumer returns the
//! credit after it processed the event. A channel starts with its exclusive buffers
//! (`taskmanager.network.memory.buffers-per-channel`) as credits and may borrow floating ones of
//! its gate (`task/buffers.rs`), so a consumer's mailbox (sized to the sum of its gate's
//! buffers) can never overflow: slow consumers stall producers (back-pressure), nothing buffers
//! without bound.
//! Local channels hand over `Vec<T>` batches without serialization; remote channels carry bytes
//! over the TaskManagers' TCP connection (see `network.rs`).

use crate::error::{JobError, Result};
use crate::task::buffers::GateBuffers;
use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The most credits a consumer may grant in one CREDIT frame, and a channel may hold: the
/// largest `buffers-per-channel` plus the largest `floating-buffers-per-gate`.
pub const MAX_CHANNEL_CREDITS: u32 =
    eddy_core::config::MAX_BUFFERS_PER_CHANNEL + eddy_core::config::MAX_FLOATING_PER_GATE;

/// A globally unique channel id within one deployment of a job (assigned by the JobMaster).
pub type ChannelId = u64;

/// The payload of a batch event.
pub enum Payload {
    /// A `Vec<T>` handed over in-process.
    Local(Box<dyn Any + Send>),
    /// A bincode-encoded `Vec<T>` that crossed TCP.
    Bytes(Vec<u8>),
}

/// What travels on a channel, in order.
pub enum ChannelEvent {
    Batch(Payload),
    Watermark(i64),
    Barrier(u64),
    /// The producer's input ended and its operators finished: no more records or watermarks on
    /// this channel, but barriers still follow (the final checkpoint) until `EndOfPartition`.
    EndOfData,
    /// The producer subtask finished: no more events on this channel.
    EndOfPartition,
}

/// The producer-side credit counter of one channel.
pub struct Credits {
    available: Mutex<u32>,
    cv: Condvar,
}

impl Credits {
    pub fn new(initial: u32) -> Arc<Self> {
        Arc::new(Credits {
            available: Mutex::new(initial),
            cv: Condvar::new(),
        })
    }

    /// Takes one credit, waiting while none is available; gives up when `cancel` is set.
    pub fn acquire(&self, cancel: &AtomicBool) -> Result<()> {
        let mut n = self
            .available
            .lock()
            .map_err(|_| JobError::new("credit lock poisoned"))?;
        while *n == 0 {
            if cancel.load(Ordering::Relaxed) {
                return Err(JobError::new("task canceled"));
            }
            n = self
                .cv
                .wait_timeout(n, Duration::from_millis(50))
                .map_err(|_| JobError::new("credit lock poisoned"))?
                .0;
        }
        *n -= 1;
        Ok(())
    }

    /// Takes one credit if one is available.
    pub fn try_acquire(&self) -> bool {
        match self.available.lock() {
            Ok(mut n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }

    /// Credits available right now.
    pub fn available(&self) -> u32 {
        self.available.lock().map(|n| *n).unwrap_or(0)
    }

    pub fn grant(&self, count: u32) {
        if let Ok(mut n) = self.available.lock() {
            *n = n.saturating_add(count);
            self.cv.notify_all();
        }
    }

    /// Grants `count` unless that would make more than `max` available; `Err(available)` then
    /// (a peer granting credits its channel cannot hold breaks the protocol).
    pub fn grant_within(&self, count: u32, max: u32) -> std::result::Result<(), u32> {
        let Ok(mut n) = self.available.lock() else {
            return Ok(());
        };
        match n.checked_add(count) {
            Some(total) if total <= max => {
                *n = total;
                self.cv.notify_all();
                Ok(())
            }
            _ => Err(*n),
        }
    }
}

/// How a consumer gives a buffer back after processing an event: to its gate (a lent floating
/// buffer) or as a credit to the channel's producer.
#[derive(Clone)]
pub struct CreditReturn {
    gate: Arc<GateBuffers>,
    index: u32,
    producer: Producer,
}

/// Where a channel's credits go.
#[derive(Clone)]
pub enum Producer {
    Local(Arc<Credits>),
    Remote(Arc<crate::task::network::PeerConnection>, ChannelId),
}

impl Producer {
    /// `n` more credits for the channel's producer.
    pub fn grant(&self, n: u32) {
        match self {
            Producer::Local(c) => c.grant(n),
            Producer::Remote(conn, id) => conn.send_credit(*id, n),
        }
    }
}

impl CreditReturn {
    /// Channel `index` of `gate`, fed by a producer on this TaskManager.
    pub fn local(gate: Arc<GateBuffers>, index: u32, credits: Arc<Credits>) -> Self {
        CreditReturn {
            gate,
            index,
            producer: Producer::Local(credits),
        }
    }

    /// Channel `index` of `gate`, fed over `conn`.
    pub fn remote(
        gate: Arc<GateBuffers>,
        index: u32,
        conn: Arc<crate::task::network::PeerConnection>,
        id: ChannelId,
    ) -> Self {
        CreditReturn {
            gate,
            index,
            producer: Producer::Remote(conn, id),
        }
    }

    /// The event arrived (counted before it enters the mailbox).
    pub fn arrived(&self) {
        self.gate.arrived(self.index, self);
    }

    /// The event was consumed.
    pub fn release(&self) {
        self.gate.consumed(self.index, self);
    }

    /// The channel's last event (end of partition) was consumed: its producer is gone.
    pub fn release_last(&self) {
        self.gate.ended(self.index);
    }

    /// Where this channel's credits go.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// `n` more credits for the channel's producer.
    pub fn grant_producer(&self, n: u32) {
        self.producer.grant(n);
    }
}

/// What lands in a task's mailbox.
pub enum MailboxItem {
    /// An event on input channel `index` (position in the task's input list).
    Channel {
        index: u32,
        event: ChannelEvent,
        credit: CreditReturn,
    },
    Control(TaskControl),
}

/// How a stop-with-savepoint ends a source (Flink's `StopMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopMode {
    /// `--drain`: the source emits the maximal watermark and ends its input before the barrier,
    /// so every event-time window and timer fires and operators finish (like a bounded end).
    Drain,
    /// Plain stop: the source stops emitting at the barrier; operators keep their state (the
    /// savepoint holds it) and neither fire nor finish.
    NoDrain,
}

/// Commands to a running task from its TaskManager.
#[derive(Clone, Debug)]
pub enum TaskControl {
    /// Sources only: inject a barrier for this checkpoint. `stop`: it is the terminating
    /// savepoint of stop-with-savepoint (the source emits nothing after its barrier).
    TriggerCheckpoint {
        checkpoint_id: u64,
        stop: Option<StopMode>,
    },
    NotifyCheckpointComplete {
        checkpoint_id: u64,
    },
    AbortCheckpoint {
        checkpoint_id: u64,
    },
    Cancel,
}

/// The consumer end of a channel as registered at its TaskManager.
#[derive(Clone)]
pub struct InputEndpoint {
    pub mailbox: SyncSender<MailboxItem>,
    pub index: u32,
    /// Credits for a local producer (remote producers get theirs over the connection).
    pub local_credits: Arc<Credits>,
    /// The buffers of the consuming task's input gate.
    pub gate: Arc<GateBuffers>,
}

/// The producer end of one channel.
pub struct ChannelWriter {
    credits: Arc<Credits>,
    target: ChannelTarget,
    cancel: Arc<AtomicBool>,
    /// The producing task's metrics: a wait for credit counts as back-pressured time.
    metrics: Option<Arc<crate::task::metrics::TaskMetrics>>,
    /// `taskmanager.memory.segment-size`: the record writer ships a batch before it exceeds it.
    segment_size: usize,
}

enum ChannelTarget {
    Local(InputEndpoint),
    Remote(Arc<crate::task::network::PeerConnection>, ChannelId),
}

impl ChannelWriter {
    pub fn local(endpoint: InputEndpoint, cancel: Arc<AtomicBool>, segment_size: usize) -> Self {
        ChannelWriter {
            credits: endpoint.local_credits.clone(),
            target: ChannelTarget::Local(endpoint),
            cancel,
            metrics: None,
            segment_size,
        }
    }

    pub fn remote(
        conn: Arc<crate::task::network::PeerConnection>,
        id: ChannelId,
        credits: Arc<Credits>,
        cancel: Arc<AtomicBool>,
        segment_size: usize,
    ) -> Self {
        ChannelWriter {
            credits,
            target: ChannelTarget::Remote(conn, id),
            cancel,
            metrics: None,
            segment_size,
        }
    }

    /// Times this writer's waits for credit as the task's back-pressured time.
    pub fn measured(mut self, metrics: Arc<crate::task::metrics::TaskMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Bytes of one network buffer: the most a batch on this channel should hold.
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    pub fn is_local(&self) -> bool {
        matches!(self.target, ChannelTarget::Local(_))
    }

    /// The connection and channel id of a channel to another TaskManager.
    pub fn remote_target(&self) -> Option<(&Arc<crate::task::network::PeerConnection>, ChannelId)> {
        match &self.target {
            ChannelTarget::Remote(conn, id) => Some((conn, *id)),
            ChannelTarget::Local(_) => None,
        }
    }

    /// Takes one credit, waiting for it (back-pressure, timed as such).
    pub fn acquire(&self) -> Result<()> {
        match &self.metrics {
            // Timed only when it will wait: no clock read while credit is there.
            Some(m) if self.credits.available() == 0 => {
                let _wait = m.wait(crate::task::metrics::Wait::BackPressured);
                self.credits.acquire(&self.cancel)
            }
            _ => self.credits.acquire(&self.cancel),
        }
    }

    /// Takes one credit if one is available.
    pub fn try_acquire(&self) -> bool {
        self.credits.try_acquire()
    }

    /// Sends one event, waiting for a credit first (back-pressure).
    pub fn send(&self, event: ChannelEvent) -> Result<()> {
        self.acquire()?;
        self.deliver(event)
    }

    /// Sends one event for which a credit was taken ([`ChannelWriter::acquire`]).
    pub fn deliver(&self, event: ChannelEvent) -> Result<()> {
        match &self.target {
            ChannelTarget::Local(ep) => {
                let credit = CreditReturn::local(ep.gate.clone(), ep.index, self.credits.clone());
                credit.arrived();
                ep.mailbox
                    .send(MailboxItem::Channel {
                        index: ep.index,
                        event,
                        credit,
                    })
                    .map_err(|_| JobError::new("the consuming task is gone"))
            }
            ChannelTarget::Remote(conn, id) => conn.send_event(*id, &event),
        }
    }
}
