//! The inside of a task: a chain of operators connected by plain calls.
//!
//! Every link is an [`Emit<T>`]: it takes a batch of `T` and the in-band events (watermarks,
//! barriers, end of input) and passes them on in order. Dynamic dispatch happens once per batch,
//! never per record. A chain is built tail-first: the network writer, then each operator
//! wrapping its successor. Nothing here touches a socket or a thread.

use crate::data::{Data, Timestamp};
use crate::error::{JobError, Result};
use crate::operator::{Operator, Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};

/// The state snapshots a chain produced at one barrier: `(operator uid, snapshot)`.
pub type ChainSnapshot = Vec<(String, OperatorSnapshot)>;

/// Everything but records, in stream order.
pub trait Control {
    fn watermark(&mut self, wm: Timestamp) -> Result<()>;
    /// Processing time advanced: fire due timers.
    fn processing_time(&mut self, now: Timestamp) -> Result<()>;
    /// The earliest processing-time deadline anywhere downstream.
    fn next_deadline(&self) -> Option<Timestamp>;
    /// A checkpoint barrier: snapshot, then pass it on.
    fn barrier(&mut self, checkpoint_id: u64, snapshots: &mut ChainSnapshot) -> Result<()>;
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
    /// All input ended (end of data): finish operators, then pass end of data on. Barriers may
    /// still follow (the final checkpoint).
    fn end_of_input(&mut self) -> Result<()>;
    /// The task ends its output (after its final checkpoint completed, when checkpointing is
    /// on): writers send `EndOfPartition`. Operators only pass it on. `stopped`: the task stops
    /// with a savepoint without drain; writers send no end of data first, so consumers keep
    /// their operators unfinished (their state is in the savepoint) and stop the same way.
    fn end_of_partition(&mut self, stopped: bool) -> Result<()>;
    /// Push partly filled buffers out (latency bound).
    fn flush(&mut self) -> Result<()>;
    fn close(&mut self);
}

/// A receiver of batches of `T`.
pub trait Emit<T>: Control {
    /// Consumes (drains) the batch.
    fn records(&mut self, batch: &mut Vec<T>) -> Result<()>;
}

/// An operator wired to its downstream.
pub struct OperatorLink<O: Operator> {
    op: O,
    uid: String,
    out: Output<O::Out>,
    next: Box<dyn Emit<O::Out>>,
    finished: bool,
}

impl<O: Operator> OperatorLink<O> {
    pub fn open(
        mut op: O,
        info: &TaskInfo,
        restored: Option<&OperatorSnapshot>,
        next: Box<dyn Emit<O::Out>>,
    ) -> Result<Self> {
        op.open(info, restored).map_err(|e| {
            e.context(format!(
                "opening operator '{}' (subtask {})",
                info.operator_name, info.subtask_index
            ))
        })?;
        Ok(OperatorLink {
            op,
            uid: info.operator_uid.clone(),
            out: Output::new(),
            next,
            finished: false,
        })
    }

    #[inline]
    fn drain_out(&mut self) -> Result<()> {
        if !self.out.records.is_empty() {
            self.next.records(&mut self.out.records)?;
        }
        if let Some(wm) = self.out.watermark.take() {
            self.next.watermark(wm)?;
        }
        Ok(())
    }
}

impl<O: Operator> Control for OperatorLink<O> {
    fn watermark(&mut self, wm: Timestamp) -> Result<()> {
        self.op.on_watermark(wm, &mut self.out)?;
        self.drain_out()
    }

    fn processing_time(&mut self, now: Timestamp) -> Result<()> {
        if self
            .op
            .next_processing_time_deadline()
            .is_some_and(|d| d <= now)
        {
            self.op.on_processing_time(now, &mut self.out)?;
            self.drain_out()?;
        }
        self.next.processing_time(now)
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        match (
            self.op.next_processing_time_deadline(),
            self.next.next_deadline(),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn barrier(&mut self, checkpoint_id: u64, snapshots: &mut ChainSnapshot) -> Result<()> {
        self.op
            .prepare_snapshot_pre_barrier(checkpoint_id, &mut self.out)?;
        self.drain_out()?;
        let mut writer = SnapshotWriter::new();
        self.op.snapshot_state(checkpoint_id, &mut writer)?;
        let snap = writer.into_snapshot();
        if !snap.is_empty() {
            snapshots.push((self.uid.clone(), snap));
        }
        self.next.barrier(checkpoint_id, snapshots)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.op.notify_checkpoint_complete(checkpoint_id)?;
        self.next.notify_checkpoint_complete(checkpoint_id)
    }

    fn end_of_input(&mut self) -> Result<()> {
        if !self.finished {
            self.finished = true;
            self.op.finish(&mut self.out)?;
            self.drain_out()?;
        }
        self.next.end_of_input()
    }

    fn end_of_partition(&mut self, stopped: bool) -> Result<()> {
        self.next.end_of_partition(stopped)
    }

    fn flush(&mut self) -> Result<()> {
        self.next.flush()
    }

    fn close(&mut self) {
        self.op.close();
        self.next.close();
    }
}

impl<O: Operator> Emit<O::In> for OperatorLink<O> {
    #[inline]
    fn records(&mut self, batch: &mut Vec<O::In>) -> Result<()> {
        self.op.process_batch(batch, &mut self.out)?;
        batch.clear();
        self.drain_out()
    }
}

/// Sends every batch to several downstreams (a stream consumed twice). Records are cloned for
/// all but the last.
pub struct FanOut<T> {
    pub targets: Vec<Box<dyn Emit<T>>>,
    scratch: Vec<T>,
}

impl<T: Data> FanOut<T> {
    pub fn new(targets: Vec<Box<dyn Emit<T>>>) -> Self {
        FanOut {
            targets,
            scratch: Vec::new(),
        }
    }
}

macro_rules! each {
    ($self:ident, $m:ident ( $($a:expr),* )) => {{
        for t in $self.targets.iter_mut() { t.$m($($a),*)?; }
        Ok(())
    }};
}

impl<T: Data> Control for FanOut<T> {
    fn watermark(&mut self, wm: Timestamp) -> Result<()> {
        each!(self, watermark(wm))
    }
    fn processing_time(&mut self, now: Timestamp) -> Result<()> {
        each!(self, processing_time(now))
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        self.targets.iter().filter_map(|t| t.next_deadline()).min()
    }
    fn barrier(&mut self, checkpoint_id: u64, snapshots: &mut ChainSnapshot) -> Result<()> {
        each!(self, barrier(checkpoint_id, snapshots))
    }
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        each!(self, notify_checkpoint_complete(checkpoint_id))
    }
    fn end_of_input(&mut self) -> Result<()> {
        each!(self, end_of_input())
    }
    fn end_of_partition(&mut self, stopped: bool) -> Result<()> {
        each!(self, end_of_partition(stopped))
    }
    fn flush(&mut self) -> Result<()> {
        each!(self, flush())
    }
    fn close(&mut self) {
        for t in self.targets.iter_mut() {
            t.close();
        }
    }
}

impl<T: Data> Emit<T> for FanOut<T> {
    fn records(&mut self, batch: &mut Vec<T>) -> Result<()> {
        let n = self.targets.len();
        for t in self.targets[..n.saturating_sub(1)].iter_mut() {
            self.scratch.extend(batch.iter().cloned());
            t.records(&mut self.scratch)?;
            self.scratch.clear();
        }
        match self.targets.last_mut() {
            Some(t) => t.records(batch),
            None => Err(JobError::new("fan-out with no targets")),
        }
    }
}

/// The end of a chain whose last operator has no consumers (sinks): drops everything.
pub struct Discard;

impl Control for Discard {
    fn watermark(&mut self, _wm: Timestamp) -> Result<()> {
        Ok(())
    }
    fn processing_time(&mut self, _now: Timestamp) -> Result<()> {
        Ok(())
    }
    fn next_deadline(&self) -> Option<Timestamp> {
        None
    }
    fn barrier(&mut self, _id: u64, _s: &mut ChainSnapshot) -> Result<()> {
        Ok(())
    }
    fn notify_checkpoint_complete(&mut self, _id: u64) -> Result<()> {
        Ok(())
    }
    fn end_of_input(&mut self) -> Result<()> {
        Ok(())
    }
    fn end_of_partition(&mut self, _stopped: bool) -> Result<()> {
        Ok(())
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    fn close(&mut self) {}
}

impl<T> Emit<T> for Discard {
    fn records(&mut self, batch: &mut Vec<T>) -> Result<()> {
        batch.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    /// Holds every record back and lets them out only before a barrier.
    struct HoldUntilBarrier(Vec<u64>);

    impl Operator for HoldUntilBarrier {
        type In = u64;
        type Out = u64;
        fn process_batch(&mut self, input: &mut Vec<u64>, _out: &mut Output<u64>) -> Result<()> {
            self.0.append(input);
            Ok(())
        }
        fn prepare_snapshot_pre_barrier(&mut self, _id: u64, out: &mut Output<u64>) -> Result<()> {
            out.records.append(&mut self.0);
            Ok(())
        }
        fn snapshot_state(&mut self, id: u64, _w: &mut SnapshotWriter) -> Result<()> {
            assert!(
                self.0.is_empty(),
                "records still held at the snapshot of {id}"
            );
            Ok(())
        }
    }

    /// The downstream end: logs records and barriers in the order they arrive.
    struct Recorder(Log);

    impl Control for Recorder {
        fn watermark(&mut self, _wm: Timestamp) -> Result<()> {
            Ok(())
        }
        fn processing_time(&mut self, _now: Timestamp) -> Result<()> {
            Ok(())
        }
        fn next_deadline(&self) -> Option<Timestamp> {
            None
        }
        fn barrier(&mut self, id: u64, _s: &mut ChainSnapshot) -> Result<()> {
            self.0.lock().unwrap().push(format!("barrier {id}"));
            Ok(())
        }
        fn notify_checkpoint_complete(&mut self, _id: u64) -> Result<()> {
            Ok(())
        }
        fn end_of_input(&mut self) -> Result<()> {
            Ok(())
        }
        fn end_of_partition(&mut self, _stopped: bool) -> Result<()> {
            Ok(())
        }
        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
        fn close(&mut self) {}
    }

    impl Emit<u64> for Recorder {
        fn records(&mut self, batch: &mut Vec<u64>) -> Result<()> {
            self.0.lock().unwrap().push(format!("records {batch:?}"));
            batch.clear();
            Ok(())
        }
    }

    #[test]
    fn records_emitted_before_a_barrier_go_downstream_ahead_of_it() {
        let log = Log::default();
        let info = crate::window::tests::info(0, 1);
        let mut link = OperatorLink::open(
            HoldUntilBarrier(Vec::new()),
            &info,
            None,
            Box::new(Recorder(log.clone())),
        )
        .unwrap();
        link.records(&mut vec![1, 2]).unwrap();
        link.records(&mut vec![3]).unwrap();
        link.barrier(7, &mut ChainSnapshot::new()).unwrap();
        link.barrier(8, &mut ChainSnapshot::new()).unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            ["records [1, 2, 3]", "barrier 7", "barrier 8"]
        );
    }
}
