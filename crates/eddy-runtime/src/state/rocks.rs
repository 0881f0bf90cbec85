//! The `rocksdb` keyed-state backend's store: one RocksDB instance per keyed operator and
//! subtask, in a directory of its own under the TaskManager's working directory.
//!
//! Key layout: `key group (u16 big-endian) ‖ state id (u16 big-endian) ‖ bincode(key)`, value
//! `bincode(state value)`. The key group comes first, so one key group is one contiguous key
//! range (a snapshot or a rescale reads ranges, never the whole instance), and within a key group
//! the states follow in registration order. The instance is a working copy, never the source of
//! truth: checkpoints and savepoints hold the canonical per-key-group format (savepoint format
//! v1), so there is no write-ahead log and the directory is deleted when the operator closes.
//!
//! Memory: each instance is bounded by [`MEMORY_BUDGET_BYTES`]: an LRU block cache of half of it
//! (index and filter blocks included) and two memtables of a quarter each. The typed layer in
//! `keyed.rs` keeps at most [`WRITE_BACK_ENTRIES`] deserialized entries per operator in front of
//! it.

use crate::error::{JobError, Result};
use eddy_core::config::StateBackendKind;
use rocksdb::{
    BlockBasedOptions, Cache, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// RocksDB's memory per instance (one keyed operator in one subtask): block cache + memtables.
pub const MEMORY_BUDGET_BYTES: usize = 64 << 20;
/// Deserialized entries the typed layer caches per operator before it writes them to RocksDB.
pub const WRITE_BACK_ENTRIES: usize = 65_536;

/// Which keyed-state backend a task's operators use, and where RocksDB instances live.
#[derive(Clone, Debug)]
pub struct StateBackendSpec {
    pub kind: StateBackendKind,
    /// The TaskManager's directory for RocksDB instances (each operator subtask makes its own
    /// subdirectory and deletes it when it closes).
    pub working_dir: PathBuf,
    /// `execution.checkpointing.incremental`: `rocksdb` checkpoints are native RocksDB
    /// snapshots (see `incremental.rs`); savepoints and `hashmap` stay canonical.
    pub incremental: bool,
}

impl Default for StateBackendSpec {
    fn default() -> Self {
        StateBackendSpec {
            kind: StateBackendKind::HashMap,
            working_dir: std::env::temp_dir().join("eddy-rocksdb"),
            incremental: false,
        }
    }
}

/// Length of the `key group ‖ state id` prefix of every key.
pub(crate) const PREFIX_LEN: usize = 4;

/// Writes the `key group ‖ state id` prefix.
#[inline]
pub(crate) fn key_prefix(out: &mut Vec<u8>, key_group: u32, state: usize) {
    out.clear();
    out.extend_from_slice(&(key_group as u16).to_be_bytes());
    out.extend_from_slice(&(state as u16).to_be_bytes());
}

/// One RocksDB instance.
pub struct RocksStore {
    db: Option<DB>,
    dir: PathBuf,
    no_wal: WriteOptions,
    _cache: Cache,
}

impl RocksStore {
    /// Opens a fresh instance in `dir` (removing whatever a killed earlier run left there).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, None)
    }

    /// Opens the RocksDB checkpoint in `restored` (a directory on the same file system, e.g.
    /// downloaded from checkpoint storage) as the instance in `dir`: moved there, not copied.
    pub fn open_restored(dir: &Path, restored: &Path) -> Result<Self> {
        Self::open_with(dir, Some(restored))
    }

    fn open_with(dir: &Path, restored: Option<&Path>) -> Result<Self> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| {
                JobError::new(format!(
                    "removing the stale RocksDB directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            JobError::new(format!(
                "creating the RocksDB directory {}: {e}",
                dir.display()
            ))
        })?;
        if let Some(from) = restored {
            std::fs::remove_dir(dir)
                .and_then(|_| std::fs::rename(from, dir))
                .map_err(|e| {
                    JobError::new(format!(
                        "moving the restored RocksDB files {} to {}: {e}",
                        from.display(),
                        dir.display()
                    ))
                })?;
        }
        let cache = Cache::new_lru_cache(MEMORY_BUDGET_BYTES / 2)
            .map_err(|e| JobError::new(format!("RocksDB block cache: {e}")))?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size(MEMORY_BUDGET_BYTES / 4);
        opts.set_max_write_buffer_number(2);
        opts.set_max_open_files(256);
        let db = DB::open(&opts, dir)
            .map_err(|e| JobError::new(format!("opening RocksDB in {}: {e}", dir.display())))?;
        let mut no_wal = WriteOptions::default();
        no_wal.disable_wal(true);
        Ok(RocksStore {
            db: Some(db),
            dir: dir.to_path_buf(),
            no_wal,
            _cache: cache,
        })
    }

    #[inline]
    fn db(&self) -> &DB {
        self.db.as_ref().expect("RocksDB used after close")
    }

    /// The directory of this instance.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens a RocksDB checkpoint directory read-only (a restore copies key groups out of it);
    /// the directory is deleted when the store is dropped.
    pub(crate) fn open_read_only(dir: &Path) -> Result<Self> {
        let cache = Cache::new_lru_cache(8 << 20)
            .map_err(|e| JobError::new(format!("RocksDB block cache: {e}")))?;
        let db = DB::open_for_read_only(&Options::default(), dir, false).map_err(|e| {
            JobError::new(format!(
                "opening the restored RocksDB snapshot in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(RocksStore {
            db: Some(db),
            dir: dir.to_path_buf(),
            no_wal: WriteOptions::default(),
            _cache: cache,
        })
    }

    /// Where native snapshots of this instance are made (`<dir>.snapshots/chk-<id>`).
    pub(crate) fn snapshot_dir(&self, checkpoint_id: u64) -> PathBuf {
        let mut name = self.dir.as_os_str().to_owned();
        name.push(".snapshots");
        PathBuf::from(name).join(format!("chk-{checkpoint_id}"))
    }

    /// A native snapshot: flushes the memtables and makes a RocksDB checkpoint in `target` (hard
    /// links to the SST files, copies of the small files). `target` must not exist.
    pub(crate) fn native_checkpoint(&self, target: &Path) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| {
            JobError::new(format!("RocksDB checkpoint into {}: {e}", target.display()))
        };
        if target.exists() {
            std::fs::remove_dir_all(target).map_err(|e| err(&e))?;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(&e))?;
        }
        let cp = rocksdb::checkpoint::Checkpoint::new(self.db()).map_err(|e| err(&e))?;
        cp.create_checkpoint(target).map_err(|e| err(&e))
    }

    /// Reads one value; `f` gets its bytes.
    #[inline]
    pub(crate) fn get<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.db().get_pinned(key) {
            Ok(Some(slice)) => f(&slice).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(JobError::new(format!("RocksDB read: {e}"))),
        }
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<()> {
        self.db()
            .delete_opt(key, &self.no_wal)
            .map_err(|e| JobError::new(format!("RocksDB delete: {e}")))
    }

    pub(crate) fn write(&self, batch: WriteBatch) -> Result<()> {
        self.db()
            .write_opt(batch, &self.no_wal)
            .map_err(|e| JobError::new(format!("RocksDB write: {e}")))
    }

    /// Calls `f(state id, key bytes, value bytes)` for every entry of one key group, in key
    /// order (so grouped by state id).
    pub(crate) fn scan_group(
        &self,
        key_group: u32,
        mut f: impl FnMut(usize, &[u8], &[u8]) -> Result<()>,
    ) -> Result<()> {
        let start = (key_group as u16).to_be_bytes();
        // Key groups are < 2^15 (max parallelism <= 32768), so `key_group + 1` fits in 16 bits.
        let mut read = ReadOptions::default();
        read.set_iterate_upper_bound(((key_group + 1) as u16).to_be_bytes().to_vec());
        read.fill_cache(false);
        let iter = self
            .db()
            .iterator_opt(IteratorMode::From(&start, Direction::Forward), read);
        for item in iter {
            let (k, v) = item.map_err(|e| JobError::new(format!("RocksDB scan: {e}")))?;
            if k.len() < PREFIX_LEN || k[..2] != start {
                break;
            }
            let state = u16::from_be_bytes([k[2], k[3]]) as usize;
            f(state, &k[PREFIX_LEN..], &v)?;
        }
        Ok(())
    }
}

impl Drop for RocksStore {
    fn drop(&mut self) {
        drop(self.db.take());
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::warn!("removing RocksDB directory {}: {e}", self.dir.display());
        }
        // Native snapshots not uploaded yet (a cancelled task): their upload fails, which
        // declines that checkpoint.
        if let Some(snapshots) = self.snapshot_dir(0).parent() {
            let _ = std::fs::remove_dir_all(snapshots);
        }
        // The job's and the TaskManager's directories go with their last instance (removing a
        // directory that is not empty fails, which is fine).
        let mut parent = self.dir.parent();
        for _ in 0..2 {
            match parent {
                Some(p) if std::fs::remove_dir(p).is_ok() => parent = p.parent(),
                _ => break,
            }
        }
    }
}

/// A directory name for one operator subtask's instance: unique per run, readable.
pub fn instance_dir(spec: &StateBackendSpec, info: &crate::operator::TaskInfo) -> PathBuf {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect()
    };
    spec.working_dir.join(clean(&info.job_id)).join(format!(
        "{}_{}_{}",
        clean(&info.operator_uid),
        info.subtask_index,
        clean(&info.run_token)
    ))
}
