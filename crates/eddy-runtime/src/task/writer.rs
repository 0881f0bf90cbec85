//! The network end of a chain: partitions records over the consumer's channels into per-channel
//! buffers and ships full buffers (local: the `Vec` itself; remote: bincode bytes).
//!
//! A batch fills one network buffer (`taskmanager.memory.segment-size`, see `task/buffers.rs`):
//! it ships once it holds as many records of `T` as fit a segment (in memory, and serialized with
//! bincode's length prefix: 2,047 records of `(u64, u64)` in 32 KiB), and records beyond a full
//! batch stay for the next one; a serialized batch found larger than a segment is sent in pieces
//! that fit (and later batches of that writer ship earlier). A single record larger than a
//! segment travels alone. Fewer, fuller batches are fewer frames, credits and wake-ups per
//! record: that is the per-record cost of an exchange.
//!
//! Watermarks, barriers, end of data and the end of the partition flush every buffer first and
//! then go to every channel, so they stay behind the records that preceded them. End of data
//! always precedes the end of the partition.
//!
//! A flush (buffer timeout, idle task) ships only the channels holding records, and a flush or
//! a broadcast gathers the events of all channels to one peer TaskManager into one frame
//! (`network::MultiFrame`): a sparse keyed exchange (few records per channel per flush, many
//! channels per peer) writes one frame per peer instead of one per channel, and a barrier goes
//! to a peer in one frame however many of its channels it covers. Full batches ship at once, in
//! their own frame. Each event still takes its channel's credit, so back-pressure and the
//! consumers' bounded queues are unchanged; before waiting for a credit the writer sends what it
//! gathered, so nothing it holds waits on another channel.

use crate::data::{Data, Timestamp};
use crate::error::Result;
use crate::task::chain::{ChainSnapshot, Control, Emit};
use crate::task::channel::{ChannelEvent, ChannelWriter, Payload};
use crate::task::metrics::TaskMetrics;
use crate::task::network::MultiFrame;
use std::collections::HashMap;
use std::sync::Arc;

/// Records a source emits per poll (`task/mod.rs`).
pub const BATCH_RECORDS: usize = 1024;

/// Bytes bincode puts before the records of a `Vec` (its length).
const VEC_PREFIX: usize = 8;

pub enum Partitioner<T> {
    Forward,
    Rebalance(usize),
    Broadcast,
    /// By key group of the key's stable hash.
    Hash {
        hash: Arc<dyn Fn(&T) -> u64 + Send + Sync>,
        max_parallelism: u32,
    },
}

pub struct RecordWriter<T> {
    channels: Vec<ChannelWriter>,
    buffers: Vec<Vec<T>>,
    partitioner: Partitioner<T>,
    metrics: Arc<TaskMetrics>,
    data_ended: bool,
    ended: bool,
    /// Bytes of one network buffer.
    segment: usize,
    /// Records per batch: as many as fit a segment.
    limit: usize,
    /// Channels whose buffer got records since the last flush, each once (`queued`).
    pending: Vec<usize>,
    queued: Vec<bool>,
    /// Per channel to another TaskManager: its peer's frame in `frames` and its channel id.
    remote: Vec<Option<(usize, crate::task::channel::ChannelId)>>,
    /// One frame per peer TaskManager, gathering a flush's or a broadcast's events.
    frames: Vec<MultiFrame>,
    /// Frames that gathered events since they were last written.
    touched: Vec<usize>,
    /// Set while a flush or broadcast gathers remote events into `frames`.
    gathering: bool,
}

impl<T: Data> RecordWriter<T> {
    pub fn new(
        channels: Vec<ChannelWriter>,
        partitioner: Partitioner<T>,
        metrics: Arc<TaskMetrics>,
    ) -> Self {
        // Allocated as records arrive: a keyed exchange to p consumers that sees few records
        // per channel must not hold p empty batches of BATCH_RECORDS each.
        let buffers = channels.iter().map(|_| Vec::new()).collect();
        let segment = channels
            .first()
            .map_or(32 << 10, ChannelWriter::segment_size)
            .max(1);
        let limit = (segment.saturating_sub(VEC_PREFIX) / std::mem::size_of::<T>().max(1)).max(1);
        let mut frames: Vec<MultiFrame> = Vec::new();
        let mut peer_index: HashMap<*const crate::task::network::PeerConnection, usize> =
            HashMap::new();
        let remote = channels
            .iter()
            .map(|c| {
                c.remote_target().map(|(conn, id)| {
                    let p = *peer_index.entry(Arc::as_ptr(conn)).or_insert_with(|| {
                        frames.push(MultiFrame::new(conn.clone()));
                        frames.len() - 1
                    });
                    (p, id)
                })
            })
            .collect();
        RecordWriter {
            queued: vec![false; channels.len()],
            pending: Vec::new(),
            remote,
            frames,
            touched: Vec::new(),
            gathering: false,
            channels,
            buffers,
            partitioner,
            metrics,
            data_ended: false,
            ended: false,
            segment,
            limit,
        }
    }

    /// Sends `event` on channel `ch`: while gathering, a remote channel's event joins its peer's
    /// frame.
    fn deliver(&mut self, ch: usize, event: ChannelEvent) -> Result<()> {
        if !self.gathering {
            return self.channels[ch].send(event);
        }
        if !self.channels[ch].try_acquire() {
            self.write_gathered()?; // nothing gathered waits while this channel waits
            self.channels[ch].acquire()?;
        }
        match self.remote[ch] {
            Some((p, id)) => {
                if self.frames[p].is_empty() {
                    self.touched.push(p);
                }
                self.frames[p].push(id, &event)
            }
            None => self.channels[ch].deliver(event),
        }
    }

    /// Writes every frame that gathered events.
    fn write_gathered(&mut self) -> Result<()> {
        let mut r = Ok(());
        for p in std::mem::take(&mut self.touched) {
            let w = self.frames[p].write_out();
            if r.is_ok() {
                r = w;
            }
        }
        r
    }

    /// Runs `f` gathering remote events per peer, then writes the frames.
    fn gathered(&mut self, f: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        self.gathering = true;
        let r = f(self);
        self.gathering = false;
        let w = self.write_gathered();
        r.and(w)
    }

    /// Notes that channel `ch` holds records to ship at the next flush.
    fn mark(&mut self, ch: usize) {
        if !self.queued[ch] {
            self.queued[ch] = true;
            self.pending.push(ch);
        }
    }

    /// Ships every channel holding records.
    fn ship_pending(&mut self) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        for &ch in &pending {
            self.queued[ch] = false;
        }
        let r = pending.iter().try_for_each(|&ch| self.ship(ch));
        pending.clear();
        self.pending = pending;
        r
    }

    /// Ships the full batches of channel `ch`; the records beyond them stay for the next one.
    fn ship_full(&mut self, ch: usize) -> Result<()> {
        while self.buffers[ch].len() >= self.limit {
            let mut next = Vec::with_capacity(self.limit);
            next.extend(self.buffers[ch].drain(self.limit..));
            let batch = std::mem::replace(&mut self.buffers[ch], next);
            self.send_batch(ch, batch)?;
        }
        Ok(())
    }

    /// Ships everything buffered for channel `ch`.
    fn ship(&mut self, ch: usize) -> Result<()> {
        if self.buffers[ch].is_empty() {
            return Ok(());
        }
        // The next batch starts with room for as many records as this one had: full batches
        // never reallocate, a channel that sees few records holds little.
        let room = self.buffers[ch].len().min(self.limit);
        let mut batch = std::mem::replace(&mut self.buffers[ch], Vec::with_capacity(room));
        while batch.len() > self.limit {
            let rest = batch.split_off(self.limit);
            self.send_batch(ch, batch)?;
            batch = rest;
        }
        self.send_batch(ch, batch)
    }

    fn send_batch(&mut self, ch: usize, mut batch: Vec<T>) -> Result<()> {
        if self.channels[ch].is_local() {
            return self.deliver(ch, ChannelEvent::Batch(Payload::Local(Box::new(batch))));
        }
        let bytes = bincode::serialize(&batch)?;
        if bytes.len() <= self.segment || batch.len() == 1 {
            return self.deliver(ch, ChannelEvent::Batch(Payload::Bytes(bytes)));
        }
        // More than one buffer: send it in pieces that fit, and ship earlier from now on.
        let fit = (batch.len() * self.segment / bytes.len()).max(1);
        self.limit = self.limit.min(fit);
        while !batch.is_empty() {
            let rest = batch.split_off(fit.min(batch.len()));
            self.send_batch(ch, batch)?;
            batch = rest;
        }
        Ok(())
    }

    fn broadcast_event(&mut self, make: impl Fn() -> ChannelEvent) -> Result<()> {
        self.gathered(|w| {
            for ch in std::mem::take(&mut w.pending) {
                w.queued[ch] = false;
            }
            for ch in 0..w.channels.len() {
                w.ship(ch)?;
                w.deliver(ch, make())?;
            }
            Ok(())
        })
    }
}

impl<T: Data> Control for RecordWriter<T> {
    fn watermark(&mut self, wm: Timestamp) -> Result<()> {
        self.broadcast_event(|| ChannelEvent::Watermark(wm))
    }
    fn processing_time(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn barrier(&mut self, checkpoint_id: u64, _s: &mut ChainSnapshot) -> Result<()> {
        self.broadcast_event(|| ChannelEvent::Barrier(checkpoint_id))
    }
    fn notify_checkpoint_complete(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<()> {
        if self.data_ended {
            return Ok(());
        }
        self.data_ended = true;
        self.broadcast_event(|| ChannelEvent::EndOfData)
    }
    fn end_of_partition(&mut self, stopped: bool) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        if !stopped {
            self.end_of_input()?;
        }
        self.ended = true;
        self.broadcast_event(|| ChannelEvent::EndOfPartition)
    }
    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.gathered(Self::ship_pending)
    }
    fn close(&mut self) {}
}

impl<T: Data> Emit<T> for RecordWriter<T> {
    fn records(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.metrics.add_out(batch.len() as u64);
        let n = self.channels.len();
        match &mut self.partitioner {
            Partitioner::Forward => {
                // A forward edge gives each producer exactly one channel: its peer subtask.
                let ch = 0;
                self.buffers[ch].append(batch);
                self.mark(ch);
                return self.ship_full(ch);
            }
            Partitioner::Broadcast => {
                for ch in 0..n {
                    self.buffers[ch].extend(batch.iter().cloned());
                    self.mark(ch);
                }
                batch.clear();
            }
            Partitioner::Rebalance(next) => {
                for r in batch.drain(..) {
                    self.buffers[*next].push(r);
                    let ch = *next;
                    *next = (*next + 1) % n;
                    if !self.queued[ch] {
                        self.queued[ch] = true;
                        self.pending.push(ch);
                    }
                }
            }
            Partitioner::Hash {
                hash,
                max_parallelism,
            } => {
                let mp = *max_parallelism;
                for r in batch.drain(..) {
                    let kg = eddy_core::keygroup::key_group_for_hash(hash(&r), mp);
                    let ch = eddy_core::keygroup::subtask_for_key_group(kg, n as u32, mp) as usize;
                    self.buffers[ch].push(r);
                    if !self.queued[ch] {
                        self.queued[ch] = true;
                        self.pending.push(ch);
                    }
                }
            }
        }
        // Only the channels that got records can have filled up.
        let mut i = 0;
        while let Some(&ch) = self.pending.get(i) {
            if self.buffers[ch].len() >= self.limit {
                self.ship_full(ch)?;
            }
            i += 1;
        }
        Ok(())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::buffers::GateBuffers;
    use crate::task::channel::{Credits, InputEndpoint, MailboxItem};
    use std::sync::atomic::AtomicBool;
    use std::sync::mpsc::{sync_channel, Receiver};

    fn writer(segment: usize) -> (RecordWriter<(u64, u64)>, Receiver<MailboxItem>) {
        let (tx, rx) = sync_channel(64);
        let endpoint = InputEndpoint {
            mailbox: tx,
            index: 0,
            local_credits: Credits::new(8),
            gate: GateBuffers::new(1, 8, 0),
        };
        let ch = ChannelWriter::local(endpoint, Arc::new(AtomicBool::new(false)), segment);
        let w = RecordWriter::new(
            vec![ch],
            Partitioner::Forward,
            Arc::new(TaskMetrics::default()),
        );
        (w, rx)
    }

    /// The sizes of the batches shipped so far.
    fn shipped(rx: &Receiver<MailboxItem>) -> Vec<usize> {
        rx.try_iter()
            .map(|item| match item {
                MailboxItem::Channel {
                    event: ChannelEvent::Batch(Payload::Local(b)),
                    credit,
                    ..
                } => {
                    credit.release();
                    b.downcast::<Vec<(u64, u64)>>().expect("records").len()
                }
                _ => panic!("not a batch"),
            })
            .collect()
    }

    #[test]
    fn a_batch_fills_a_segment_and_the_records_beyond_it_wait_for_the_next_one() {
        // 32 KiB: (32768 - 8 bytes of length) / 16 bytes = 2047 records of (u64, u64).
        let (mut w, rx) = writer(32 << 10);
        for chunk in 0..3u64 {
            let mut records: Vec<(u64, u64)> = (0..1000).map(|i| (chunk, i)).collect();
            w.records(&mut records).expect("emit");
        }
        assert_eq!(shipped(&rx), [2047], "one full batch; 953 records wait");
        w.flush().expect("flush");
        assert_eq!(shipped(&rx), [953]);
        // A smaller segment, smaller batches: 4 KiB holds 255.
        let (mut w, rx) = writer(4 << 10);
        let mut records: Vec<(u64, u64)> = (0..600).map(|i| (0, i)).collect();
        w.records(&mut records).expect("emit");
        assert_eq!(shipped(&rx), [255, 255]);
        // A watermark flushes what waits, ahead of itself.
        w.watermark(5).expect("watermark");
        let kinds: Vec<String> = rx
            .try_iter()
            .map(|item| match item {
                MailboxItem::Channel {
                    event: ChannelEvent::Batch(Payload::Local(b)),
                    ..
                } => format!(
                    "batch {}",
                    b.downcast::<Vec<(u64, u64)>>().expect("records").len()
                ),
                MailboxItem::Channel {
                    event: ChannelEvent::Watermark(t),
                    ..
                } => format!("wm {t}"),
                _ => "other".into(),
            })
            .collect();
        assert_eq!(kinds, ["batch 90", "wm 5"]);
    }
}
