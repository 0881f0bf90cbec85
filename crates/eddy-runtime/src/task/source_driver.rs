//! A source wired to its chain: polls the source and pushes what it emits downstream; at a
//! barrier, snapshots the source's position before passing the barrier on.

use crate::data::MAX_WATERMARK;
use crate::error::Result;
use crate::graph::SourceDriver;
use crate::operator::{Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};
use crate::source::{Source, SourceStatus};
use crate::task::chain::{ChainSnapshot, Control, Emit};

pub struct SourceLink<S: Source> {
    source: S,
    uid: String,
    out: Output<S::Out>,
    next: Box<dyn Emit<S::Out>>,
    finished: bool,
}

impl<S: Source> SourceLink<S> {
    pub fn open(
        mut source: S,
        info: &TaskInfo,
        restored: Option<&OperatorSnapshot>,
        next: Box<dyn Emit<S::Out>>,
    ) -> Result<Self> {
        source.open(info, restored).map_err(|e| {
            e.context(format!(
                "opening source '{}' (subtask {})",
                info.operator_name, info.subtask_index
            ))
        })?;
        Ok(SourceLink {
            source,
            uid: info.operator_uid.clone(),
            out: Output::new(),
            next,
            finished: false,
        })
    }
}

impl<S: Source> SourceDriver for SourceLink<S> {
    fn poll(&mut self, max_records: usize) -> Result<SourceStatus> {
        if self.finished {
            return Ok(SourceStatus::Finished);
        }
        let status = self.source.poll_next(&mut self.out, max_records)?;
        if !self.out.records.is_empty() {
            self.next.records(&mut self.out.records)?;
        }
        if let Some(wm) = self.out.watermark.take() {
            self.next.watermark(wm)?;
        }
        if status == SourceStatus::Finished {
            self.finished = true;
            // A bounded input ends event time: every event-time timer fires now, before any
            // final checkpoint, so their results are covered by it.
            self.next.watermark(MAX_WATERMARK)?;
        }
        Ok(status)
    }

    fn chain(&mut self) -> &mut dyn Control {
        &mut *self.next
    }

    fn barrier(&mut self, checkpoint_id: u64, snapshots: &mut ChainSnapshot) -> Result<()> {
        let mut w = SnapshotWriter::new();
        self.source.snapshot_state(checkpoint_id, &mut w)?;
        let snap = w.into_snapshot();
        if !snap.is_empty() {
            snapshots.push((self.uid.clone(), snap));
        }
        self.next.barrier(checkpoint_id, snapshots)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.source.notify_checkpoint_complete(checkpoint_id)?;
        self.next.notify_checkpoint_complete(checkpoint_id)
    }

    fn end_input(&mut self) -> Result<()> {
        self.next.end_of_input()
    }

    fn close(&mut self) {
        self.source.close();
        self.next.close();
    }
}
