//! The network end of a chain: partitions records over the consumer's channels into per-channel
//! buffers and ships full buffers (local: the `Vec` itself; remote: bincode bytes).
//!
//! A batch fills at most one network buffer (`taskmanager.memory.segment-size`, see
//! `task/buffers.rs`): it ships at [`BATCH_RECORDS`] records or at as many records of `T` as fit
//! a segment, and a serialized batch found larger than a segment is sent in pieces that fit (and
//! later batches of that writer ship earlier). A single record larger than a segment travels
//! alone.
//!
//! Watermarks, barriers, end of data and the end of the partition flush every buffer first and
//! then go to every channel, so they stay behind the records that preceded them. End of data
//! always precedes the end of the partition.

use crate::data::{Data, Timestamp};
use crate::error::Result;
use crate::task::chain::{ChainSnapshot, Control, Emit};
use crate::task::channel::{ChannelEvent, ChannelWriter, Payload};
use crate::task::metrics::TaskMetrics;
use std::sync::Arc;

/// Records per buffer before it is shipped (at most; fewer when they do not fit a segment).
pub const BATCH_RECORDS: usize = 1024;

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
    /// Records per batch: [`BATCH_RECORDS`], fewer when that many do not fit a segment.
    limit: usize,
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
        let limit = (segment / std::mem::size_of::<T>().max(1)).clamp(1, BATCH_RECORDS);
        RecordWriter {
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
            return self.channels[ch].send(ChannelEvent::Batch(Payload::Local(Box::new(batch))));
        }
        let bytes = bincode::serialize(&batch)?;
        if bytes.len() <= self.segment || batch.len() == 1 {
            return self.channels[ch].send(ChannelEvent::Batch(Payload::Bytes(bytes)));
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
        for ch in 0..self.channels.len() {
            self.ship(ch)?;
            self.channels[ch].send(make())?;
        }
        Ok(())
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
        for ch in 0..self.channels.len() {
            self.ship(ch)?;
        }
        Ok(())
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
                if self.buffers[ch].len() >= self.limit {
                    self.ship(ch)?;
                }
                return Ok(());
            }
            Partitioner::Broadcast => {
                for ch in 0..n {
                    self.buffers[ch].extend(batch.iter().cloned());
                }
                batch.clear();
            }
            Partitioner::Rebalance(next) => {
                for r in batch.drain(..) {
                    self.buffers[*next].push(r);
                    *next = (*next + 1) % n;
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
                }
            }
        }
        for ch in 0..n {
            if self.buffers[ch].len() >= self.limit {
                self.ship(ch)?;
            }
        }
        Ok(())
    }
}
