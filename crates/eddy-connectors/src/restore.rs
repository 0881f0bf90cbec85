//! Operator-state entries of this crate's connectors: encoding them, reading them back, and
//! picking a subtask's own entry among those the runtime hands back.
//!
//! Every entry records the subtask and parallelism that wrote it. On a restore at the same
//! parallelism a subtask uses its own entry; after a rescale the runtime redistributes operator
//! state as a union (every subtask sees every entry) and each connector decides which parts of
//! the old positions it takes over. This file must never guess: an unreadable entry is an error.

use eddy_runtime::snapshot::OperatorSnapshot;
use eddy_runtime::{JobError, Result, TaskInfo};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An entry that knows which subtask wrote it.
pub(crate) trait Tagged {
    /// `(subtask index, parallelism)` of the writer.
    fn writer(&self) -> (u32, u32);
}

/// Every entry named `name` in the restored snapshot (none on a fresh start).
pub(crate) fn decode_entries<S: DeserializeOwned>(
    restored: Option<&OperatorSnapshot>,
    name: &str,
) -> Result<Vec<S>> {
    let Some(snapshot) = restored else {
        return Ok(Vec::new());
    };
    snapshot
        .operator_entries(name)
        .map(|bytes| {
            bincode::deserialize(bytes).map_err(|e| {
                JobError::new(format!(
                    "restored operator state '{name}' is unreadable: {e}"
                ))
            })
        })
        .collect()
}

pub(crate) fn encode<S: Serialize>(name: &str, value: &S) -> Result<Vec<u8>> {
    bincode::serialize(value)
        .map_err(|e| JobError::new(format!("cannot encode operator state '{name}': {e}")))
}

/// This subtask's own entry, if every entry was written at the current parallelism (no rescale).
pub(crate) fn own_entry<'a, S: Tagged>(entries: &'a [S], info: &TaskInfo) -> Option<&'a S> {
    if entries.iter().any(|e| e.writer().1 != info.parallelism) {
        return None;
    }
    entries.iter().find(|e| e.writer().0 == info.subtask_index)
}

/// The old parallelism of a rescaled restore; an error if the entries disagree (they must come
/// from one checkpoint).
pub(crate) fn old_parallelism<S: Tagged>(entries: &[S], name: &str) -> Result<u32> {
    let mut old = None;
    for e in entries {
        let p = e.writer().1;
        match old {
            None => old = Some(p),
            Some(q) if q != p => {
                return Err(JobError::new(format!(
                    "restored operator state '{name}' mixes parallelisms {q} and {p}"
                )))
            }
            Some(_) => {}
        }
    }
    match old {
        Some(p) if p > 0 => Ok(p),
        _ => Err(JobError::new(format!(
            "restored operator state '{name}' has no valid parallelism"
        ))),
    }
}
