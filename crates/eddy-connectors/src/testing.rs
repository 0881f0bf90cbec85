//! Test helpers shared by the connectors' tests: task infos, draining sources, snapshots.
//! Test-only; never compiled into the library.

use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{Output, Source, SourceStatus, TaskInfo};

pub(crate) fn task_info(subtask: u32, parallelism: u32) -> TaskInfo {
    TaskInfo {
        job_name: "test".into(),
        job_id: "00000000000000000000000000000001".into(),
        operator_uid: "op".into(),
        operator_name: "op".into(),
        subtask_index: subtask,
        parallelism,
        max_parallelism: 128,
        attempt: 0,
        run_token: format!("run{subtask}"),
        checkpointing: false,
        state_backend: std::sync::Arc::new(eddy_runtime::state::HashMapStateBackend),
    }
}

/// Polls until `Finished`, `max` records per poll; panics on `IdleUntil` (unthrottled sources).
pub(crate) fn drain<S: Source>(source: &mut S, max: usize) -> Vec<S::Out> {
    let mut all = Vec::new();
    for _ in 0..10_000_000 {
        let mut out = Output::new();
        let status = source.poll_next(&mut out, max).expect("poll");
        assert!(out.records.len() <= max, "emitted more than max_records");
        all.append(&mut out.records);
        match status {
            SourceStatus::Finished => return all,
            SourceStatus::More => {}
            SourceStatus::IdleUntil(_) => panic!("unthrottled source went idle"),
        }
    }
    panic!("source never finished");
}

/// One poll; returns the records and the status.
pub(crate) fn poll<S: Source>(source: &mut S, max: usize) -> (Vec<S::Out>, SourceStatus) {
    let mut out = Output::new();
    let status = source.poll_next(&mut out, max).expect("poll");
    (out.records, status)
}

pub(crate) fn snapshot_source<S: Source>(source: &mut S, checkpoint_id: u64) -> OperatorSnapshot {
    let mut w = SnapshotWriter::new();
    source
        .snapshot_state(checkpoint_id, &mut w)
        .expect("snapshot");
    w.into_snapshot()
}

/// What the runtime hands every subtask after a rescale: all old subtasks' entries.
pub(crate) fn union(snapshots: &[OperatorSnapshot]) -> OperatorSnapshot {
    let mut all = OperatorSnapshot::default();
    for s in snapshots {
        all.operator_state.extend(s.operator_state.iter().cloned());
    }
    all
}
