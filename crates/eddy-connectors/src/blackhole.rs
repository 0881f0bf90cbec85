//! A sink that discards every record and only counts them: the end of benchmark pipelines.
//!
//! It must never do anything per record beyond dropping it.

use eddy_runtime::snapshot::OperatorSnapshot;
use eddy_runtime::{Data, Result, Sink, TaskInfo};
use std::marker::PhantomData;

/// Drops everything it receives.
pub struct BlackholeSink<T> {
    count: u64,
    subtask: u32,
    _records: PhantomData<fn(T)>,
}

impl<T> BlackholeSink<T> {
    pub fn new() -> Self {
        BlackholeSink {
            count: 0,
            subtask: 0,
            _records: PhantomData,
        }
    }

    /// Records received so far by this subtask.
    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<T> Default for BlackholeSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for BlackholeSink<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T: Data> Sink for BlackholeSink<T> {
    type In = T;

    fn open(&mut self, info: &TaskInfo, _restored: Option<&OperatorSnapshot>) -> Result<()> {
        self.subtask = info.subtask_index;
        Ok(())
    }

    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.count += batch.len() as u64;
        batch.clear();
        Ok(())
    }

    fn close(&mut self) {
        tracing::debug!(
            subtask = self.subtask,
            records = self.count,
            "blackhole sink closed"
        );
    }
}
