//! The state one operator hands over at a checkpoint barrier, and gets back on restore.
//!
//! Two kinds, as in Flink: operator state (a list of named blobs; redistributed as a union on
//! rescale) and keyed state (one blob per key group, so key groups can move between subtasks).
//! This file only shapes the bytes; where they are stored is checkpoint storage's business.

use serde::{Deserialize, Serialize};

/// One operator's state in one subtask.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OperatorSnapshot {
    /// Operator (non-keyed) state: `(state name, bytes)` entries.
    pub operator_state: Vec<(String, Vec<u8>)>,
    /// Keyed state: `(key group, bytes)` for every non-empty key group this subtask owns.
    pub keyed_state: Vec<(u32, Vec<u8>)>,
    /// Keyed state as native RocksDB snapshots (`rocksdb` with incremental checkpoints): local
    /// directories, never serialized with the rest (the TaskManager uploads their files and
    /// lists them in the checkpoint's metadata; on restore it downloads them).
    #[serde(skip)]
    pub native: Vec<crate::state::incremental::NativeState>,
}

impl OperatorSnapshot {
    pub fn is_empty(&self) -> bool {
        self.operator_state.is_empty() && self.keyed_state.is_empty() && self.native.is_empty()
    }

    /// The operator-state entries with this name (several after a union redistribution).
    pub fn operator_entries<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.operator_state
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    pub fn size_bytes(&self) -> usize {
        self.operator_state
            .iter()
            .map(|(n, b)| n.len() + b.len())
            .sum::<usize>()
            + self
                .keyed_state
                .iter()
                .map(|(_, b)| 4 + b.len())
                .sum::<usize>()
    }
}

/// Collects one operator's snapshot during `snapshot_state`.
#[derive(Default)]
pub struct SnapshotWriter {
    pub(crate) snapshot: OperatorSnapshot,
}

impl SnapshotWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an operator-state entry.
    pub fn put_operator_state(&mut self, name: &str, bytes: Vec<u8>) {
        self.snapshot.operator_state.push((name.to_string(), bytes));
    }

    /// Adds the state of one key group.
    pub fn put_keyed_state(&mut self, key_group: u32, bytes: Vec<u8>) {
        self.snapshot.keyed_state.push((key_group, bytes));
    }

    /// Adds keyed state as a native RocksDB snapshot (incremental checkpoints).
    pub fn put_native(&mut self, native: crate::state::incremental::NativeState) {
        self.snapshot.native.push(native);
    }

    pub fn into_snapshot(self) -> OperatorSnapshot {
        self.snapshot
    }
}
