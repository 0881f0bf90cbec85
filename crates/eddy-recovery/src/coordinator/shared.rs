//! The shared-state registry (Flink's `SharedStateRegistry`): reference counts of the files in
//! the job's `shared/` directory (SST files of incremental RocksDB checkpoints).
//!
//! A shared file is referenced by every retained completed checkpoint, every in-flight
//! checkpoint (its acknowledged task states, or its metadata being written) and every finished
//! task's last state (carried into later checkpoints) that lists it. It is deleted only when that
//! count drops to zero. The counts are rebuilt from those holders for each decision, so a new
//! JobMaster (after a JobManager failover or a restore) has them as soon as it has loaded the
//! retained checkpoints' metadata: it never deletes a file still referenced, and it deletes a
//! file no longer referenced when the last retained checkpoint referring to it is subsumed.
//!
//! A file this registry released for deletion must never be referenced by a checkpoint that
//! completes: a task that had not yet learned that a newer checkpoint completed may still base
//! its snapshot on the one just subsumed. [`SharedStateRegistry::first_discarded`] finds such a
//! reference, and the coordinator aborts that checkpoint instead of completing it.

use crate::metadata::StateFileHandle;
use std::collections::{BTreeMap, BTreeSet};

/// Reference counts of shared files, by handle path.
#[derive(Debug, Default)]
pub struct SharedStateRegistry {
    counts: BTreeMap<String, usize>,
}

impl SharedStateRegistry {
    /// Counts the shared files of each holder (a checkpoint, an ack, a finished task's state); a
    /// file listed twice by one holder counts once.
    pub fn count<'a, H, I>(holders: H) -> Self
    where
        H: IntoIterator<Item = I>,
        I: IntoIterator<Item = &'a StateFileHandle>,
    {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for holder in holders {
            let paths: BTreeSet<&str> = holder
                .into_iter()
                .filter(|f| f.is_shared())
                .map(|f| f.path.as_str())
                .collect();
            for p in paths {
                *counts.entry(p.to_string()).or_default() += 1;
            }
        }
        SharedStateRegistry { counts }
    }

    /// How many holders refer to `path`.
    pub fn references(&self, path: &str) -> usize {
        self.counts.get(path).copied().unwrap_or(0)
    }

    /// The shared files among `files` that no holder refers to (each once).
    pub fn unreferenced<'a>(
        &self,
        files: impl IntoIterator<Item = &'a StateFileHandle>,
    ) -> Vec<StateFileHandle> {
        let mut seen = BTreeSet::new();
        files
            .into_iter()
            .filter(|f| f.is_shared() && self.references(&f.path) == 0)
            .filter(|f| seen.insert(f.path.clone()))
            .cloned()
            .collect()
    }
}

/// Shared files released for deletion by this coordinator (by path).
#[derive(Debug, Default)]
pub struct DiscardedShared(BTreeSet<String>);

impl DiscardedShared {
    pub fn note(&mut self, files: &[StateFileHandle]) {
        self.0.extend(files.iter().map(|f| f.path.clone()));
    }

    /// The first of `files` that was released for deletion, if any.
    pub fn first_discarded<'a>(
        &self,
        files: impl IntoIterator<Item = &'a StateFileHandle>,
    ) -> Option<&'a StateFileHandle> {
        files
            .into_iter()
            .find(|f| f.is_shared() && self.0.contains(&f.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(p: &str) -> StateFileHandle {
        StateFileHandle {
            path: p.into(),
            len: 1,
            crc32: 1,
        }
    }

    #[test]
    fn counts_each_holder_once_and_ignores_exclusive_files() {
        let a = [h("../shared/a"), h("../shared/b"), h("../shared/a"), h("x")];
        let b = [h("../shared/b"), h("../shared/c")];
        let r = SharedStateRegistry::count([&a[..], &b[..]]);
        assert_eq!(r.references("../shared/a"), 1);
        assert_eq!(r.references("../shared/b"), 2);
        assert_eq!(r.references("../shared/c"), 1);
        assert_eq!(r.references("x"), 0);
        let gone = [h("../shared/d"), h("../shared/b"), h("../shared/d"), h("y")];
        assert_eq!(
            r.unreferenced(&gone)
                .into_iter()
                .map(|f| f.path)
                .collect::<Vec<_>>(),
            ["../shared/d"]
        );
    }

    #[test]
    fn a_released_file_is_found_in_a_late_reference() {
        let mut d = DiscardedShared::default();
        d.note(&[h("../shared/a")]);
        let late = [h("x"), h("../shared/b"), h("../shared/a")];
        assert_eq!(
            d.first_discarded(&late).map(|f| f.path.as_str()),
            Some("../shared/a")
        );
        assert!(d.first_discarded(&late[..2]).is_none());
    }
}
