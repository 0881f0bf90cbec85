//! Native (incremental) snapshots of the `rocksdb` backend
//! (`execution.checkpointing.incremental: true`).
//!
//! At a checkpoint barrier the task writes its cache out and makes a RocksDB checkpoint of its
//! instance: a directory of hard links to the instance's immutable SST files plus copies of its
//! small MANIFEST, CURRENT and OPTIONS files (RocksDB flushes the memtables first). That is the
//! whole synchronous part. The TaskManager's uploader then uploads, off the task thread, only
//! the SST files this subtask has not uploaded before (into the job's `shared/` directory, under
//! unique names) and the small files (into the checkpoint's own directory), and deletes the
//! local checkpoint directory.
//!
//! Which SST files are already in storage is [`UploadedFiles`]: the files of the last
//! *completed* checkpoint of this instance (learned from the completion notification), never
//! those of a checkpoint that may still be aborted, whose files the JobManager deletes.
//!
//! On restore the TaskManager downloads a snapshot's files into a directory, and
//! [`crate::state::KeyedStateBackend::restore_native`] opens it as the subtask's instance when the
//! key-group range is the same, or copies the key groups in range out of it otherwise.

use eddy_core::keygroup::KeyGroupRange;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A file in checkpoint storage (the runtime's mirror of the checkpoint's state-file handle).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// Relative to the checkpoint directory (`../shared/<name>` for a shared file).
    pub path: String,
    pub len: u64,
    pub crc32: u32,
}

/// The SST files of one RocksDB instance that are already in checkpoint storage, by local file
/// name (RocksDB never reuses an SST file name within one instance, and SST files are
/// immutable, so a name stands for one content).
#[derive(Debug, Default)]
pub struct UploadedFiles {
    /// The SST files of the last completed checkpoint: what the next snapshot may reference.
    confirmed: BTreeMap<String, StoredFile>,
    /// The SST files of each checkpoint uploaded but not (yet) known to be complete.
    pending: BTreeMap<u64, BTreeMap<String, StoredFile>>,
}

impl UploadedFiles {
    /// The files a snapshot taken now may reference instead of uploading them.
    pub fn base(&self) -> BTreeMap<String, StoredFile> {
        self.confirmed.clone()
    }

    /// The uploader: checkpoint `checkpoint_id` consists of these SST files.
    pub fn record(&mut self, checkpoint_id: u64, files: BTreeMap<String, StoredFile>) {
        self.pending.insert(checkpoint_id, files);
    }

    /// Checkpoint `checkpoint_id` completed: its files become the base; older pending ones go.
    pub fn confirm(&mut self, checkpoint_id: u64) {
        if let Some(files) = self.pending.remove(&checkpoint_id) {
            self.confirmed = files;
        }
        self.pending.retain(|id, _| *id > checkpoint_id);
    }

    /// The instance was restored from a snapshot with these SST files (same names).
    pub fn seed(&mut self, files: BTreeMap<String, StoredFile>) {
        self.confirmed = files;
        self.pending.clear();
    }
}

/// A native RocksDB snapshot of one keyed operator subtask, as a local directory.
///
/// Snapshot side: `dir` is the RocksDB checkpoint to upload, `shared` the SST files already in
/// storage (reuse them), `uploads` where the uploader records what the checkpoint consists of.
/// Restore side: `dir` holds the downloaded files, `shared` maps its SST files to their handles.
#[derive(Clone, Debug)]
pub struct NativeState {
    pub dir: PathBuf,
    pub key_groups: KeyGroupRange,
    /// State names by RocksDB state id (the second two bytes of every key).
    pub state_names: Vec<String>,
    pub shared: BTreeMap<String, StoredFile>,
    pub uploads: Option<Arc<Mutex<UploadedFiles>>>,
}

impl PartialEq for NativeState {
    fn eq(&self, other: &Self) -> bool {
        self.dir == other.dir
            && self.key_groups == other.key_groups
            && self.state_names == other.state_names
            && self.shared == other.shared
    }
}

/// Whether a file of a RocksDB checkpoint is an (immutable, shareable) SST file.
pub fn is_sst(name: &str) -> bool {
    name.ends_with(".sst")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(p: &str) -> StoredFile {
        StoredFile {
            path: p.into(),
            len: 1,
            crc32: 2,
        }
    }

    #[test]
    fn only_completed_checkpoints_files_are_reused() {
        let mut u = UploadedFiles::default();
        u.record(1, BTreeMap::from([("1.sst".into(), f("../shared/a"))]));
        assert!(u.base().is_empty(), "checkpoint 1 is not complete yet");
        u.confirm(1);
        assert_eq!(u.base().len(), 1);
        // 2 is uploaded but aborted (never confirmed); 3 completes.
        u.record(2, BTreeMap::from([("2.sst".into(), f("../shared/b"))]));
        u.record(
            3,
            BTreeMap::from([
                ("1.sst".into(), f("../shared/a")),
                ("3.sst".into(), f("../shared/c")),
            ]),
        );
        u.confirm(3);
        let base = u.base();
        assert_eq!(base.keys().collect::<Vec<_>>(), ["1.sst", "3.sst"]);
        assert!(u.pending.is_empty());
        // A late notification of an older checkpoint changes nothing.
        u.confirm(2);
        assert_eq!(u.base(), base);
    }
}
