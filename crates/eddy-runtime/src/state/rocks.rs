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
//! Memory (docs/state-backends.md): with `state.backend.rocksdb.memory.managed: true` (the
//! default) every RocksDB instance of one slot shares the slot's [`SlotMemory`]: one LRU block
//! cache (index and filter blocks included) and the slot's write-buffer budget, split evenly over
//! the slot's keyed operators. The slot's budget is the TaskManager's managed memory divided by
//! its slots, or `state.backend.rocksdb.memory.fixed-per-slot`. With `managed: false` each
//! instance has its own fixed [`MEMORY_BUDGET_BYTES`]. The typed layer in `keyed.rs` keeps at
//! most [`WRITE_BACK_ENTRIES`] deserialized entries per operator in front of it.

use crate::error::{JobError, Result};
use eddy_core::config::StateBackendKind;
use rocksdb::{
    BlockBasedOptions, Cache, Direction, IteratorMode, Options, ReadOptions, WriteBatch,
    WriteOptions, DB,
};
use std::path::{Path, PathBuf};

/// RocksDB's memory per instance (one keyed operator in one subtask) when it is not managed
/// (`state.backend.rocksdb.memory.managed: false`): block cache + memtables.
pub const MEMORY_BUDGET_BYTES: usize = 64 << 20;
/// The smallest write buffer (memtable) an instance gets; RocksDB itself raises smaller ones to
/// 64 KiB, and much smaller memtables only make many tiny files.
pub const MIN_WRITE_BUFFER_BYTES: usize = 1 << 20;
/// The smallest RocksDB budget of a slot: below it a slot cannot give each keyed operator two
/// write buffers and still cache blocks.
pub const MIN_SLOT_BUDGET_BYTES: u64 = 8 << 20;

/// RocksDB's memory in one slot (Flink's per-slot shared resources): one block cache shared by
/// every instance in the slot, and the write-buffer budget of each instance.
pub struct SlotMemory {
    /// The slot's budget (block cache + all write buffers), in bytes.
    pub budget: u64,
    /// The block cache's capacity: `budget * (1 - write-buffer-ratio)`.
    pub cache_bytes: usize,
    /// Each instance's memtables (`db_write_buffer_size`; two memtables of half of it):
    /// `budget * write-buffer-ratio / keyed operators`.
    pub write_buffer_bytes: usize,
    /// What it was made from (`write-buffer-ratio`, keyed operators per slot).
    pub write_buffer_ratio: f64,
    pub keyed_operators: usize,
    cache: Cache,
}

impl std::fmt::Debug for SlotMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotMemory")
            .field("budget", &self.budget)
            .field("cache_bytes", &self.cache_bytes)
            .field("write_buffer_bytes", &self.write_buffer_bytes)
            .field("cache_usage", &self.cache.get_usage())
            .finish()
    }
}

impl SlotMemory {
    /// The memory of a slot with `budget` bytes for RocksDB, `write_buffer_ratio` of it for
    /// write buffers, shared by `keyed_operators` instances. A budget too small for them is an
    /// error naming the keys that set it.
    pub fn new(budget: u64, write_buffer_ratio: f64, keyed_operators: usize) -> Result<Self> {
        let n = keyed_operators.max(1);
        let write_total = (budget as f64 * write_buffer_ratio) as u64;
        let write_buffer_bytes = (write_total / n as u64) as usize;
        let cache_bytes = budget.saturating_sub(write_total) as usize;
        if budget < MIN_SLOT_BUDGET_BYTES || write_buffer_bytes < 2 * MIN_WRITE_BUFFER_BYTES {
            return Err(JobError::new(format!(
                "RocksDB memory of a slot is {budget} bytes for {n} keyed operator(s) (write-buffer ratio {write_buffer_ratio}): \
                 too small; allowed: at least {} MiB per slot and {} MiB of write buffers per keyed operator \
                 (raise taskmanager.memory.managed.size or state.backend.rocksdb.memory.fixed-per-slot, or lower taskmanager.numberOfTaskSlots)",
                MIN_SLOT_BUDGET_BYTES >> 20,
                (2 * MIN_WRITE_BUFFER_BYTES) >> 20
            )));
        }
        let cache = Cache::new_lru_cache(cache_bytes)
            .map_err(|e| JobError::new(format!("RocksDB block cache: {e}")))?;
        Ok(SlotMemory {
            budget,
            cache_bytes,
            write_buffer_bytes,
            write_buffer_ratio,
            keyed_operators: n,
            cache,
        })
    }

    /// Bytes the shared block cache holds now.
    pub fn cache_usage(&self) -> usize {
        self.cache.get_usage()
    }
}

/// The memory one instance opens with.
#[derive(Clone, Debug, Default)]
pub enum InstanceMemory {
    /// Its own block cache and memtables, [`MEMORY_BUDGET_BYTES`] in all.
    #[default]
    Fixed,
    /// The slot's shared block cache and its share of the slot's write buffers.
    Slot(std::sync::Arc<SlotMemory>),
}
/// Deserialized entries the typed layer caches per operator before it writes them to RocksDB.
pub const WRITE_BACK_ENTRIES: usize = 65_536;

/// Which keyed-state backend a task's operators use, and where RocksDB instances live.
#[derive(Clone, Debug)]
pub struct StateBackendSpec {
    pub kind: StateBackendKind,
    /// The TaskManager's directory for RocksDB instances (each operator subtask makes its own
    /// subdirectory and deletes it when it closes).
    pub working_dir: PathBuf,
    /// RocksDB's memory for the instances of this task's slot.
    pub memory: InstanceMemory,
    /// `execution.checkpointing.incremental`: `rocksdb` checkpoints are native RocksDB
    /// snapshots (see `incremental.rs`); savepoints and `hashmap` stay canonical.
    pub incremental: bool,
}

impl Default for StateBackendSpec {
    fn default() -> Self {
        StateBackendSpec {
            kind: StateBackendKind::HashMap,
            working_dir: std::env::temp_dir().join("eddy-rocksdb"),
            memory: InstanceMemory::Fixed,
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
    /// The block cache (its own or the slot's), alive as long as the instance.
    _cache: Cache,
    memory: InstanceMemory,
}

impl RocksStore {
    /// Opens a fresh instance in `dir` (removing whatever a killed earlier run left there), with
    /// a fixed budget of its own ([`InstanceMemory::Fixed`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_at(dir, &InstanceMemory::Fixed, None)
    }

    /// Opens a fresh instance in `dir` (removing whatever a killed earlier run left there), with
    /// `memory`.
    pub fn open_with(dir: &Path, memory: &InstanceMemory) -> Result<Self> {
        Self::open_at(dir, memory, None)
    }

    /// Opens the RocksDB checkpoint in `restored` (a directory on the same file system, e.g.
    /// downloaded from checkpoint storage) as the instance in `dir`, with `memory`: moved
    /// there, not copied.
    pub fn open_restored(dir: &Path, restored: &Path, memory: &InstanceMemory) -> Result<Self> {
        Self::open_at(dir, memory, Some(restored))
    }

    fn open_at(dir: &Path, memory: &InstanceMemory, restored: Option<&Path>) -> Result<Self> {
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
        // Fixed: a cache of half the budget and two memtables of a quarter each. Slot: the
        // slot's cache, and two memtables of half this instance's write-buffer share, which
        // `db_write_buffer_size` caps (RocksDB flushes when the instance's memtables reach it).
        let (cache, write_buffers) = match memory {
            InstanceMemory::Fixed => (
                Cache::new_lru_cache(MEMORY_BUDGET_BYTES / 2)
                    .map_err(|e| JobError::new(format!("RocksDB block cache: {e}")))?,
                MEMORY_BUDGET_BYTES / 2,
            ),
            InstanceMemory::Slot(slot) => (slot.cache.clone(), slot.write_buffer_bytes),
        };
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_cache_index_and_filter_blocks(true);
        table.set_bloom_filter(10.0, false);
        // Partitioned filters and indexes: a point lookup reads one small filter partition, not
        // a whole file's bloom filter. Without them, once data blocks had evicted the filters
        // from the cache (no high-priority pool in this C API), every miss re-read a whole
        // filter block from the file (bench/RESULTS.md, *RocksDB at 10^7 keys*). The top-level
        // index and filter, and L0 files' filters and indexes, stay pinned in the cache.
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_block_based_table_factory(&table);
        opts.set_write_buffer_size((write_buffers / 2).max(MIN_WRITE_BUFFER_BYTES));
        opts.set_max_write_buffer_number(2);
        opts.set_db_write_buffer_size(write_buffers.max(2 * MIN_WRITE_BUFFER_BYTES));
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
            memory: memory.clone(),
        })
    }

    /// The instance's memory budget, for logs: `slot budget B (cache C shared, write buffers W)`
    /// or `fixed B`.
    pub fn memory_description(&self) -> String {
        match &self.memory {
            InstanceMemory::Fixed => format!("fixed {MEMORY_BUDGET_BYTES} bytes"),
            InstanceMemory::Slot(s) => format!(
                "slot budget {} bytes (block cache {} bytes shared by the slot, write buffers {} bytes)",
                s.budget, s.cache_bytes, s.write_buffer_bytes
            ),
        }
    }

    /// Bytes in this instance's memtables now (`rocksdb.cur-size-all-mem-tables`).
    pub fn memtable_bytes(&self) -> Result<u64> {
        self.db()
            .property_int_value("rocksdb.cur-size-all-mem-tables")
            .map_err(|e| JobError::new(format!("RocksDB property: {e}")))
            .map(|v| v.unwrap_or(0))
    }

    #[inline]
    fn db(&self) -> &DB {
        self.db.as_ref().expect("RocksDB used after close")
    }

    /// The memory this instance was opened with.
    pub fn memory(&self) -> &InstanceMemory {
        &self.memory
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
            memory: InstanceMemory::Fixed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Fills an instance with `n` keys of 100-byte values, then reads them all back.
    fn fill_and_read(store: &RocksStore, n: u32) -> u64 {
        let mut peak_memtables = 0;
        let value = [7u8; 100];
        for chunk in 0..(n / 1000) {
            let mut batch = WriteBatch::default();
            for i in chunk * 1000..(chunk + 1) * 1000 {
                let mut key = Vec::new();
                key_prefix(&mut key, i % 128, 0);
                key.extend_from_slice(&i.to_be_bytes());
                batch.put(&key, value);
            }
            store.write(batch).unwrap();
            peak_memtables = peak_memtables.max(store.memtable_bytes().unwrap());
        }
        for i in 0..n {
            let mut key = Vec::new();
            key_prefix(&mut key, i % 128, 0);
            key.extend_from_slice(&i.to_be_bytes());
            let got = store.get(&key, |b| Ok(b.len())).unwrap();
            assert_eq!(got, Some(100), "key {i}");
        }
        peak_memtables
    }

    #[test]
    fn instances_of_a_slot_share_its_block_cache_and_stay_within_their_write_buffers() {
        let dir = tempfile::tempdir().unwrap();
        // 16 MiB for two keyed operators: a cache of 8 MiB, 4 MiB of memtables each.
        let slot = Arc::new(SlotMemory::new(16 << 20, 0.5, 2).unwrap());
        assert_eq!(slot.cache_bytes, 8 << 20);
        assert_eq!(slot.write_buffer_bytes, 4 << 20);
        let memory = InstanceMemory::Slot(slot.clone());
        let a = RocksStore::open_with(&dir.path().join("a"), &memory).unwrap();
        let b = RocksStore::open_with(&dir.path().join("b"), &memory).unwrap();
        // ~30 MiB of values each: several times the write buffers and the cache.
        for store in [&a, &b] {
            let peak = fill_and_read(store, 300_000);
            // RocksDB switches memtables at the cap; one arena block (1/8 of a memtable) over
            // it is its usual overshoot.
            assert!(
                peak <= (slot.write_buffer_bytes + slot.write_buffer_bytes / 4) as u64,
                "memtables of one instance peaked at {peak} bytes, over its {} bytes",
                slot.write_buffer_bytes
            );
            assert!(peak > 0);
        }
        // Both instances read through the slot's cache, which stays within its capacity.
        let used = slot.cache_usage();
        assert!(used > 0, "the instances read through the slot's cache");
        assert!(
            used <= slot.cache_bytes + (1 << 20),
            "cache holds {used} bytes, capacity {}",
            slot.cache_bytes
        );
        // An instance with a fixed budget has a cache of its own: the slot's does not grow.
        let c = RocksStore::open(&dir.path().join("c")).unwrap();
        let before = slot.cache_usage();
        fill_and_read(&c, 20_000);
        assert!(slot.cache_usage() <= before);
    }

    #[test]
    fn a_slot_budget_too_small_for_its_keyed_operators_is_refused_in_one_line() {
        let e = SlotMemory::new(4 << 20, 0.5, 1).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        assert!(e.contains("4194304 bytes"), "{e}");
        assert!(e.contains("taskmanager.memory.managed.size"), "{e}");
        // 64 MiB, half for write buffers, over 20 keyed operators: 1.6 MiB each, < 2 x 1 MiB.
        let e = SlotMemory::new(64 << 20, 0.5, 20).unwrap_err().to_string();
        assert!(e.contains("20 keyed operator(s)"), "{e}");
        assert!(SlotMemory::new(64 << 20, 0.5, 8).is_ok());
    }
}
