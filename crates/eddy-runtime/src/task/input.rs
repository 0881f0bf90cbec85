//! The input side of a task: decoding batches into the chain's record type, and the input gate
//! that merges channels — combined watermark (the minimum over live channels), end of data (all
//! channels delivered `EndOfData`: the chain finishes its operators), end of input (all channels
//! ended) and checkpoint barrier alignment.
//!
//! End of a bounded input (FLIP-147): a producer sends `EndOfData` after its last record, then
//! the barrier of its final checkpoint, then — only once that checkpoint completed —
//! `EndOfPartition`. The gate finishes the chain at the last `EndOfData` and records the first
//! checkpoint it aligns afterwards as the task's final checkpoint; the task ends its own output
//! once that checkpoint completed and every channel ended (`task/mod.rs: run_input`).
//!
//! Alignment (exactly-once): once channel c delivered barrier n, c's later events are held back
//! (their credits are not returned, so the producer stalls: bounded) until every live channel
//! delivered n; then the chain snapshots and the held events are replayed. At-least-once: the
//! snapshot happens when the last live channel delivered the barrier, nothing is held back.
//! Whatever closed a checkpoint here (taken, aborted, overtaken by a newer one) is remembered, so
//! a barrier arriving late for it is dropped instead of opening an alignment that can never
//! complete. This file never touches a socket or a thread.

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

/// Gives a consumed event's buffer back; the last event of a channel also gives back the
/// floating buffers lent to it.
fn release(credit: &CreditReturn, last: bool) {
    if last {
        credit.release_last();
    } else {
        credit.release();
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
    /// `EndOfData` (or `EndOfPartition`) arrived: no more records on this channel.
    data_ended: bool,
    ended: bool,
    /// Delivered the barrier of the checkpoint being aligned (tracked per channel: a channel
    /// that ended is not a channel that delivered the barrier).
    barrier_arrived: bool,
    /// Blocked by alignment: events held back until the checkpoint is taken.
    held: VecDeque<(ChannelEvent, CreditReturn)>,
    blocked: bool,
}

/// Merges a task's input channels.
///
/// Barrier rules, per checkpoint id n (ids only grow):
///
/// | event | state | effect |
/// |---|---|---|
/// | barrier n | n <= highest closed id | ignored (late barrier of a taken, aborted or overtaken checkpoint) |
/// | barrier n | not aligning | alignment of n starts |
/// | barrier n | aligning m < n | m is abandoned (closed), alignment of n starts |
/// | barrier n | aligning n | the channel is marked; exactly-once also holds it back |
/// | every live channel marked | aligning n | the chain snapshots, n is closed, held events replay |
/// | abort n | aligning m <= n | m is abandoned; n is closed |
/// | abort n | otherwise | n is closed |
/// | END on c | aligning | c is no longer live; alignment re-checked |
pub struct InputGate {
    channels: Vec<ChannelState>,
    combined_watermark: Timestamp,
    exactly_once: bool,
    /// The checkpoint being aligned.
    aligning: Option<u64>,
    /// The highest checkpoint id closed here (taken, aborted or overtaken): barriers at or below
    /// it are ignored, so a late barrier never opens an alignment that cannot complete.
    closed: Option<u64>,
    live: usize,
    /// Checkpoints taken and not yet collected by the task: `(id, snapshots)`.
    completed: Vec<(u64, ChainSnapshot)>,
    /// Every channel delivered end of data and the chain finished its operators.
    data_finished: bool,
    /// The first checkpoint taken after `data_finished`: it covers everything the chain will
    /// ever emit; once it completes, the task may end its output.
    final_checkpoint: Option<u64>,
    finished: bool,
    /// A channel ended without end of data: its producer stopped with a savepoint without
    /// drain. The chain's operators are never finished then (their state is in the savepoint).
    stopped: bool,
}

impl InputGate {
    pub fn new(num_channels: usize, exactly_once: bool) -> Self {
        InputGate {
            channels: (0..num_channels)
                .map(|_| ChannelState {
                    watermark: MIN_WATERMARK,
                    data_ended: false,
                    ended: false,
                    barrier_arrived: false,
                    held: VecDeque::new(),
                    blocked: false,
                })
                .collect(),
            combined_watermark: MIN_WATERMARK,
            exactly_once,
            aligning: None,
            closed: None,
            live: num_channels,
            completed: Vec::new(),
            data_finished: false,
            final_checkpoint: None,
            finished: num_channels == 0,
            stopped: false,
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
        let last = matches!(event, ChannelEvent::EndOfPartition);
        let outcome = self.process(index, event, head);
        release(&credit, last);
        if outcome? == GateOutcome::CheckpointTaken {
            self.release_held(head)?;
        }
        Ok(())
    }

    /// Checkpoints whose barriers aligned since the last call, with the chain's snapshots.
    pub fn take_completed(&mut self) -> Vec<(u64, ChainSnapshot)> {
        std::mem::take(&mut self.completed)
    }

    /// Every input channel ended (the chain finished its operators before).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// A producer stopped with a savepoint without drain (its channel ended without end of
    /// data): the task stops too, its operators unfinished.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Every input channel delivered end of data and the chain finished its operators.
    pub fn is_data_finished(&self) -> bool {
        self.data_finished
    }

    /// The first checkpoint this gate aligned after its data finished (FLIP-147's final
    /// checkpoint for this task).
    pub fn final_checkpoint(&self) -> Option<u64> {
        self.final_checkpoint
    }

    /// Channel `index` is held back by alignment.
    pub fn is_blocked(&self, index: usize) -> bool {
        self.channels.get(index).is_some_and(|c| c.blocked)
    }

    pub fn aligning(&self) -> Option<u64> {
        self.aligning
    }

    /// Checkpoint `id` was aborted: drop its alignment (and any older one) and ignore its
    /// barriers from now on.
    pub fn abort_checkpoint(&mut self, id: u64, head: &mut dyn InputHandler) -> Result<()> {
        if self.aligning.is_some_and(|cur| cur <= id) {
            self.abandon_alignment(head)?;
        }
        self.close(id);
        Ok(())
    }

    fn close(&mut self, id: u64) {
        self.closed = Some(self.closed.map_or(id, |c| c.max(id)));
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
                    let last = matches!(ev, ChannelEvent::EndOfPartition);
                    let r = self.process(i, ev, head);
                    release(&credit, last);
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
            ChannelEvent::EndOfData => {
                self.channels[index].data_ended = true;
                self.finish_data_if_all_ended(head)?;
                Ok(GateOutcome::Continue)
            }
            ChannelEvent::EndOfPartition => {
                if !self.channels[index].ended {
                    if !self.channels[index].data_ended {
                        self.stopped = true;
                    }
                    self.channels[index].ended = true;
                    self.channels[index].data_ended = true;
                    self.live -= 1;
                }
                // Everything before a pending barrier came before this end: finishing the
                // operators first puts their output before that checkpoint too. A stopped
                // producer (no end of data) never finishes them.
                if !self.stopped {
                    self.finish_data_if_all_ended(head)?;
                }
                // An ended channel can no longer deliver a pending barrier: re-check alignment.
                if let Some(id) = self.aligning {
                    if self.live > 0 && self.all_live_arrived() {
                        return self.complete_alignment(id, head);
                    }
                }
                if self.live == 0 {
                    // Nothing can complete the alignment any more.
                    if let Some(id) = self.aligning.take() {
                        self.close(id);
                    }
                    self.finished = true;
                    return Ok(GateOutcome::Finished);
                }
                self.advance_watermark(head)?;
                Ok(GateOutcome::Continue)
            }
        }
    }

    /// Once every channel delivered end of data: the operators finish (their output goes out
    /// now, ahead of the final checkpoint's barrier) and end of data goes downstream.
    fn finish_data_if_all_ended(&mut self, head: &mut dyn InputHandler) -> Result<()> {
        if !self.data_finished && self.channels.iter().all(|c| c.data_ended) {
            self.data_finished = true;
            head.chain().end_of_input()?;
        }
        Ok(())
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

    fn all_live_arrived(&self) -> bool {
        self.channels.iter().all(|c| c.ended || c.barrier_arrived)
    }

    fn on_barrier(
        &mut self,
        index: usize,
        id: u64,
        head: &mut dyn InputHandler,
    ) -> Result<GateOutcome> {
        if self.closed.is_some_and(|c| id <= c) {
            return Ok(GateOutcome::Continue); // late barrier of a closed checkpoint
        }
        match self.aligning {
            Some(cur) if id < cur => return Ok(GateOutcome::Continue), // stale barrier
            Some(cur) if id > cur => {
                // A newer barrier overtook: the older checkpoint cannot complete here; abandon it.
                self.abandon_alignment(head)?;
                self.close(cur);
                self.start_alignment(id);
            }
            None => self.start_alignment(id),
            _ => {}
        }
        self.channels[index].barrier_arrived = true;
        if self.exactly_once {
            self.channels[index].blocked = true;
        }
        if self.all_live_arrived() {
            return self.complete_alignment(id, head);
        }
        Ok(GateOutcome::Continue)
    }

    fn start_alignment(&mut self, id: u64) {
        self.aligning = Some(id);
        for c in &mut self.channels {
            c.barrier_arrived = false;
        }
    }

    fn complete_alignment(&mut self, id: u64, head: &mut dyn InputHandler) -> Result<GateOutcome> {
        self.aligning = None;
        self.close(id);
        if self.data_finished && self.final_checkpoint.is_none() {
            self.final_checkpoint = Some(id);
        }
        let mut snaps = Vec::new();
        head.chain().barrier(id, &mut snaps)?;
        self.completed.push((id, snaps));
        Ok(GateOutcome::CheckpointTaken)
    }

    /// Drops the current alignment (checkpoint aborted or overtaken): unblock and replay.
    fn abandon_alignment(&mut self, head: &mut dyn InputHandler) -> Result<()> {
        if let Some(id) = self.aligning.take() {
            self.close(id);
        }
        self.release_held(head)
    }
}
