//! The input side of a task: decoding batches into the chain's record type, and the input gate
//! that merges channels — combined watermark (the minimum over live channels), end of input
//! (all channels ended) and checkpoint barrier alignment.
//!
//! Alignment (exactly-once): once channel c delivered barrier n, c's later events are held back
//! (their credits are not returned, so the producer stalls: bounded) until every live channel
//! delivered n; then the chain snapshots and the held events are replayed. At-least-once: the
//! snapshot happens when the last barrier arrives, nothing is held back.

use crate::data::{Data, Timestamp, MIN_WATERMARK};
use crate::error::{JobError, Result};
use crate::task::chain::{ChainSnapshot, Control, Emit};
use crate::task::channel::{ChannelEvent, CreditReturn, Payload};
use crate::task::metrics::TaskMetrics;
use std::collections::VecDeque;
use std::sync::Arc;

/// A chain head that accepts type-erased batches.
pub trait InputHandler {
    fn batch(&mut self, payload: Payload) -> Result<()>;
    fn chain(&mut self) -> &mut dyn Control;
    fn set_metrics(&mut self, metrics: Arc<TaskMetrics>);
}

/// Turns payloads back into `Vec<T>` for the first operator.
pub struct Decoder<T: Data> {
    next: Box<dyn Emit<T>>,
    metrics: Option<Arc<TaskMetrics>>,
}

impl<T: Data> Decoder<T> {
    pub fn new(next: Box<dyn Emit<T>>) -> Self {
        Decoder {
            next,
            metrics: None,
        }
    }
}

impl<T: Data> InputHandler for Decoder<T> {
    fn batch(&mut self, payload: Payload) -> Result<()> {
        let mut batch: Vec<T> = match payload {
            Payload::Local(b) => *b
                .downcast::<Vec<T>>()
                .map_err(|_| JobError::new("internal: a local batch of the wrong record type"))?,
            // Bounded: a length inside the batch never allocates beyond the frame's bytes.
            Payload::Bytes(bytes) => crate::framing::decode(&bytes).map_err(|e| {
                JobError::new(format!("cannot decode a batch from the network: {e}"))
            })?,
        };
        if let Some(m) = &self.metrics {
            m.add_in(batch.len() as u64);
        }
        self.next.records(&mut batch)
    }

    fn chain(&mut self) -> &mut dyn Control {
        &mut *self.next
    }

    fn set_metrics(&mut self, metrics: Arc<TaskMetrics>) {
        self.metrics = Some(metrics);
    }
}

/// What an event led to (the task reacts after every event).
#[derive(Debug, PartialEq)]
enum GateOutcome {
    Continue,
    /// All channels delivered barrier n and the chain was snapshotted.
    CheckpointTaken,
    Finished,
}

struct ChannelState {
    watermark: Timestamp,
    ended: bool,
    /// Blocked by alignment: events held back until the checkpoint is taken.
    held: VecDeque<(ChannelEvent, CreditReturn)>,
    blocked: bool,
}

pub struct InputGate {
    channels: Vec<ChannelState>,
    combined_watermark: Timestamp,
    exactly_once: bool,
    /// The checkpoint being aligned and how many channels delivered its barrier.
    aligning: Option<(u64, usize)>,
    live: usize,
    /// Checkpoints taken and not yet collected by the task: `(id, snapshots)`.
    completed: Vec<(u64, ChainSnapshot)>,
    finished: bool,
}

impl InputGate {
    pub fn new(num_channels: usize, exactly_once: bool) -> Self {
        InputGate {
            channels: (0..num_channels)
                .map(|_| ChannelState {
                    watermark: MIN_WATERMARK,
                    ended: false,
                    held: VecDeque::new(),
                    blocked: false,
                })
                .collect(),
            combined_watermark: MIN_WATERMARK,
            exactly_once,
            aligning: None,
            live: num_channels,
            completed: Vec::new(),
            finished: num_channels == 0,
        }
    }

    /// Handles one event from channel `index`, returning its credit once it is consumed.
    pub fn on_event(
        &mut self,
        index: usize,
        event: ChannelEvent,
        credit: CreditReturn,
        head: &mut dyn InputHandler,
    ) -> Result<()> {
        if self.channels.get(index).is_none() {
            return Err(JobError::new(format!(
                "event on unknown input channel {index}"
            )));
        }
        if self.channels[index].blocked {
            self.channels[index].held.push_back((event, credit));
            return Ok(());
        }
        let outcome = self.process(index, event, head);
        credit.release();
        if outcome? == GateOutcome::CheckpointTaken {
            self.release_held(head)?;
        }
        Ok(())
    }

    /// Checkpoints whose barriers aligned since the last call, with the chain's snapshots.
    pub fn take_completed(&mut self) -> Vec<(u64, ChainSnapshot)> {
        std::mem::take(&mut self.completed)
    }

    /// Every input channel ended (and the chain was told).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    fn release_held(&mut self, head: &mut dyn InputHandler) -> Result<()> {
        // Replay held events in channel order; a held barrier of the next checkpoint may block
        // its channel again, which stops that channel's replay.
        for i in 0..self.channels.len() {
            self.channels[i].blocked = false;
        }
        loop {
            let mut progressed = false;
            for i in 0..self.channels.len() {
                while !self.channels[i].blocked {
                    let Some((ev, credit)) = self.channels[i].held.pop_front() else {
                        break;
                    };
                    let r = self.process(i, ev, head);
                    credit.release();
                    r?;
                    progressed = true;
                }
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    fn process(
        &mut self,
        index: usize,
        event: ChannelEvent,
        head: &mut dyn InputHandler,
    ) -> Result<GateOutcome> {
        match event {
            ChannelEvent::Batch(p) => {
                head.batch(p)?;
                Ok(GateOutcome::Continue)
            }
            ChannelEvent::Watermark(wm) => {
                let ch = &mut self.channels[index];
                ch.watermark = ch.watermark.max(wm);
                self.advance_watermark(head)?;
                Ok(GateOutcome::Continue)
            }
            ChannelEvent::Barrier(id) => self.on_barrier(index, id, head),
            ChannelEvent::EndOfPartition => {
                if !self.channels[index].ended {
                    self.channels[index].ended = true;
                    self.live -= 1;
                }
                // An ended channel can no longer deliver a pending barrier: re-check alignment.
                if let Some((id, arrived)) = self.aligning {
                    if arrived >= self.live && self.live > 0 {
                        return self.complete_alignment(id, head);
                    }
                }
                if self.live == 0 {
                    head.chain().end_of_input()?;
                    self.finished = true;
                    return Ok(GateOutcome::Finished);
                }
                self.advance_watermark(head)?;
                Ok(GateOutcome::Continue)
            }
        }
    }

    fn advance_watermark(&mut self, head: &mut dyn InputHandler) -> Result<()> {
        let min = self
            .channels
            .iter()
            .filter(|c| !c.ended)
            .map(|c| c.watermark)
            .min();
        if let Some(min) = min {
            if min > self.combined_watermark {
                self.combined_watermark = min;
                head.chain().watermark(min)?;
            }
        }
        Ok(())
    }

    fn on_barrier(
        &mut self,
        index: usize,
        id: u64,
        head: &mut dyn InputHandler,
    ) -> Result<GateOutcome> {
        match self.aligning {
            Some((cur, _)) if id < cur => return Ok(GateOutcome::Continue), // stale barrier
            Some((cur, _)) if id > cur => {
                // A newer barrier overtook: the older checkpoint cannot complete here; abandon it.
                self.abandon_alignment(head)?;
                self.aligning = Some((id, 0));
            }
            None => self.aligning = Some((id, 0)),
            _ => {}
        }
        if let Some((_, arrived)) = self.aligning.as_mut() {
            *arrived += 1;
        }
        if self.exactly_once {
            self.channels[index].blocked = true;
        }
        let (cur, arrived) = self.aligning.unwrap_or((id, 1));
        if arrived >= self.live {
            return self.complete_alignment(cur, head);
        }
        Ok(GateOutcome::Continue)
    }

    fn complete_alignment(&mut self, id: u64, head: &mut dyn InputHandler) -> Result<GateOutcome> {
        self.aligning = None;
        let mut snaps = Vec::new();
        head.chain().barrier(id, &mut snaps)?;
        self.completed.push((id, snaps));
        Ok(GateOutcome::CheckpointTaken)
    }

    /// Drops the current alignment (checkpoint aborted or overtaken): unblock and replay.
    pub fn abandon_alignment(&mut self, head: &mut dyn InputHandler) -> Result<()> {
        self.aligning = None;
        self.release_held(head)
    }

    pub fn aligning(&self) -> Option<u64> {
        self.aligning.map(|(id, _)| id)
    }
}
