//! Keyed state of one operator subtask: per registered state, one hash table per key group.
//!
//! Handles (`ValueState`, `ListState`, `MapState`) are typed indices into the backend; the
//! operator passes the current key's hash and key group, so a record costs one hash for both
//! partitioning and lookup. The backend never sees records, only keys and state values.
//!
//! Which [`StateBackend`] the job configured (`state.backend.type`) decides what the hash tables
//! are. With `hashmap` they hold all state. With `rocksdb` they are a bounded write-back cache
//! in front of the subtask's RocksDB instance ([`RocksStore`]): a miss reads the key from
//! RocksDB, and after each batch (or before a snapshot) the cached entries are written to RocksDB
//! and dropped once there are more than `WRITE_BACK_ENTRIES`. The hashmap path only pays one
//! never-taken branch per miss. Snapshots of both have the same canonical per-key-group format.

use crate::data::{Data, Key};
use crate::error::{JobError, Result};
use crate::operator::TaskInfo;
use crate::state::incremental::{NativeState, UploadedFiles};
use crate::state::rocks::{self, RocksStore, StateBackendSpec, WRITE_BACK_ENTRIES};
use eddy_core::config::StateBackendKind;
use eddy_core::keygroup::KeyGroupRange;
use hashbrown::HashTable;
use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// A state backend (Flink's `StateBackend`): makes the keyed state of each operator subtask.
/// `hashmap` keeps it on the heap; `rocksdb` in an embedded RocksDB instance per subtask.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// `hashmap` or `rocksdb` (the value of `state.backend.type`).
    fn name(&self) -> &'static str;
    /// The store the keyed state of this operator subtask lives in; `None`: the heap.
    fn create_store(&self, info: &TaskInfo) -> Result<Option<RocksStore>>;
    /// Checkpoints are native, incremental snapshots (`rocksdb` with
    /// `execution.checkpointing.incremental: true`).
    fn incremental(&self) -> bool {
        false
    }
}

/// `state.backend.type: hashmap`.
#[derive(Debug, Default)]
pub struct HashMapStateBackend;

impl StateBackend for HashMapStateBackend {
    fn name(&self) -> &'static str {
        "hashmap"
    }
    fn create_store(&self, _info: &TaskInfo) -> Result<Option<RocksStore>> {
        Ok(None)
    }
}

/// `state.backend.type: rocksdb`: one instance per keyed operator subtask under `working_dir`,
/// with `memory` (the slot's shared block cache and write buffers, or a fixed budget each).
#[derive(Debug)]
pub struct EmbeddedRocksDbStateBackend {
    pub working_dir: std::path::PathBuf,
    pub memory: rocks::InstanceMemory,
    /// `execution.checkpointing.incremental`.
    pub incremental: bool,
}

impl StateBackend for EmbeddedRocksDbStateBackend {
    fn name(&self) -> &'static str {
        "rocksdb"
    }
    fn create_store(&self, info: &TaskInfo) -> Result<Option<RocksStore>> {
        let spec = StateBackendSpec {
            kind: StateBackendKind::RocksDb,
            working_dir: self.working_dir.clone(),
            memory: self.memory.clone(),
            incremental: self.incremental,
        };
        RocksStore::open_with(&rocks::instance_dir(&spec, info), &self.memory).map(Some)
    }
    fn incremental(&self) -> bool {
        self.incremental
    }
}

/// The backend a spec names.
pub fn state_backend(spec: &StateBackendSpec) -> std::sync::Arc<dyn StateBackend> {
    match spec.kind {
        StateBackendKind::HashMap => std::sync::Arc::new(HashMapStateBackend),
        StateBackendKind::RocksDb => std::sync::Arc::new(EmbeddedRocksDbStateBackend {
            working_dir: spec.working_dir.clone(),
            memory: spec.memory.clone(),
            incremental: spec.incremental,
        }),
    }
}

/// A RocksDB failure inside a state access (which has no error path): the task fails.
#[cold]
fn store_failed(e: JobError) -> ! {
    panic!("RocksDB state backend: {e}")
}

/// Where the current key lives: its stable hash and its key group's index within the range.
#[derive(Clone, Copy, Debug)]
pub struct KeySlot {
    pub hash: u64,
    /// `key_group - range.start`.
    pub group_index: usize,
}

/// A handle to a per-key single value.
pub struct ValueState<V> {
    id: usize,
    _v: PhantomData<fn() -> V>,
}

/// A handle to a per-key list.
pub struct ListState<V> {
    id: usize,
    _v: PhantomData<fn() -> V>,
}

/// A handle to a per-key map (ordered by user key).
pub struct MapState<UK, UV> {
    id: usize,
    _v: PhantomData<fn() -> (UK, UV)>,
}

macro_rules! handle_impls {
    ($t:ident < $($p:ident),+ >) => {
        impl<$($p),+> Default for $t<$($p),+> {
            /// An unbound handle; bind it in `open` through the backend.
            fn default() -> Self { $t { id: usize::MAX, _v: PhantomData } }
        }
        impl<$($p),+> Clone for $t<$($p),+> {
            fn clone(&self) -> Self { *self }
        }
        impl<$($p),+> Copy for $t<$($p),+> {}
    };
}
handle_impls!(ValueState<V>);
handle_impls!(ListState<V>);
handle_impls!(MapState<UK, UV>);

/// Type-erased access to one registered state, for snapshot and restore.
trait StateTable<K>: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn snapshot_group(&self, group_index: usize) -> Result<Option<Vec<u8>>>;
    fn restore_group(
        &mut self,
        group_index: usize,
        bytes: &[u8],
        range: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<()>;
    fn len(&self) -> usize;
    /// RocksDB: writes every cached entry into `batch` and empties the cache.
    fn spill(&mut self, batch: &mut rocksdb::WriteBatch) -> Result<()>;
}

/// The RocksDB instance a table reads its misses from, if any.
#[derive(Clone, Copy)]
struct Store<'a> {
    db: &'a RocksStore,
    range_start: u32,
}

/// One state: `groups[group_index]` maps key → value (all of them with `hashmap`, the cached
/// ones with `rocksdb`).
pub(crate) struct Table<K, V> {
    groups: Vec<HashTable<(K, V)>>,
    /// The state's id: its RocksDB key prefix after the key group.
    id: usize,
    range_start: u32,
    /// Scratch buffer for RocksDB keys.
    key_buf: Vec<u8>,
}

/// Builds the RocksDB key of `key` in key group `range_start + group_index` of state `id`.
#[inline]
fn store_key<K: Key>(buf: &mut Vec<u8>, range_start: u32, group_index: usize, id: usize, key: &K) {
    rocks::key_prefix(buf, range_start + group_index as u32, id);
    if let Err(e) = bincode::serialize_into(&mut *buf, key) {
        store_failed(e.into())
    }
}

/// RocksDB: reads `key` of state `id` from the store.
#[cold]
#[inline(never)]
fn load_from<K: Key, V: Data>(
    key_buf: &mut Vec<u8>,
    id: usize,
    store: Store<'_>,
    slot: KeySlot,
    key: &K,
) -> Option<V> {
    store_key(key_buf, store.range_start, slot.group_index, id, key);
    store
        .db
        .get(key_buf, |b| Ok(bincode::deserialize::<V>(b)?))
        .unwrap_or_else(|e| store_failed(e))
}

impl<K: Key, V: Data> Table<K, V> {
    fn new(groups: usize, id: usize, range_start: u32) -> Self {
        Table {
            groups: (0..groups).map(|_| HashTable::new()).collect(),
            id,
            range_start,
            key_buf: Vec::new(),
        }
    }

    /// RocksDB: reads `key` (not in the cache) from the store.
    #[cold]
    fn load(&mut self, store: Store<'_>, slot: KeySlot, key: &K) -> Option<V> {
        load_from(&mut self.key_buf, self.id, store, slot, key)
    }

    /// RocksDB: makes sure a stored `key` is in the cache.
    #[cold]
    fn fetch(&mut self, store: Store<'_>, slot: KeySlot, key: &K) {
        if let Some(v) = self.load(store, slot, key) {
            self.groups[slot.group_index].insert_unique(slot.hash, (key.clone(), v), |(k, _)| {
                eddy_core::keygroup::stable_hash(k)
            });
        }
    }

    #[inline]
    fn get(&mut self, slot: KeySlot, key: &K, store: Option<Store<'_>>) -> Option<&V> {
        if let Some(store) = store {
            if self.groups[slot.group_index]
                .find(slot.hash, |(k, _)| k == key)
                .is_none()
            {
                self.fetch(store, slot, key);
            }
        }
        self.groups[slot.group_index]
            .find(slot.hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[inline]
    fn get_mut(&mut self, slot: KeySlot, key: &K, store: Option<Store<'_>>) -> Option<&mut V> {
        if let Some(store) = store {
            if self.groups[slot.group_index]
                .find(slot.hash, |(k, _)| k == key)
                .is_none()
            {
                self.fetch(store, slot, key);
            }
        }
        self.groups[slot.group_index]
            .find_mut(slot.hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[inline]
    fn get_or_insert_with(
        &mut self,
        slot: KeySlot,
        key: &K,
        init: impl FnOnce() -> V,
        store: Option<Store<'_>>,
    ) -> &mut V {
        let Table {
            groups,
            key_buf,
            id,
            ..
        } = self;
        let entry = groups[slot.group_index].entry(
            slot.hash,
            |(k, _)| k == key,
            |(k, _)| eddy_core::keygroup::stable_hash(k),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => &mut o.into_mut().1,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let value = match store {
                    None => init(),
                    Some(store) => load_from(key_buf, *id, store, slot, key).unwrap_or_else(init),
                };
                &mut v.insert((key.clone(), value)).into_mut().1
            }
        }
    }

    #[inline]
    fn remove(&mut self, slot: KeySlot, key: &K, store: Option<Store<'_>>) -> Option<V> {
        let cached = match self.groups[slot.group_index].find_entry(slot.hash, |(k, _)| k == key) {
            Ok(o) => Some(o.remove().0 .1),
            Err(_) => None,
        };
        let Some(store) = store else { return cached };
        let stored = match cached {
            Some(v) => Some(v),
            None => self.load(store, slot, key),
        };
        store_key(
            &mut self.key_buf,
            store.range_start,
            slot.group_index,
            self.id,
            key,
        );
        store
            .db
            .delete(&self.key_buf)
            .unwrap_or_else(|e| store_failed(e));
        stored
    }
}

impl<K: Key, V: Data> StateTable<K> for Table<K, V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn snapshot_group(&self, group_index: usize) -> Result<Option<Vec<u8>>> {
        let g = &self.groups[group_index];
        if g.is_empty() {
            return Ok(None);
        }
        let entries: Vec<&(K, V)> = g.iter().collect();
        Ok(Some(bincode::serialize(&entries)?))
    }

    fn restore_group(
        &mut self,
        group_index: usize,
        bytes: &[u8],
        range: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<()> {
        let entries: Vec<(K, V)> = bincode::deserialize(bytes)?;
        let expected = range.start + group_index as u32;
        for (k, v) in entries {
            let hash = eddy_core::keygroup::stable_hash(&k);
            let kg = eddy_core::keygroup::key_group_for_hash(hash, max_parallelism);
            if kg != expected {
                return Err(JobError::new(format!(
                    "restored keyed state holds a key of key group {kg} in the blob of key group {expected}: \
                     was max parallelism changed? (it is {max_parallelism} now)"
                )));
            }
            self.groups[group_index]
                .insert_unique(hash, (k, v), |(k, _)| eddy_core::keygroup::stable_hash(k));
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    fn spill(&mut self, batch: &mut rocksdb::WriteBatch) -> Result<()> {
        let mut value = Vec::new();
        for (gi, group) in self.groups.iter_mut().enumerate() {
            for (k, v) in group.drain() {
                store_key(&mut self.key_buf, self.range_start, gi, self.id, &k);
                value.clear();
                bincode::serialize_into(&mut value, &v)?;
                batch.put(&self.key_buf, &value);
            }
        }
        Ok(())
    }
}

/// All keyed state of one operator in one subtask.
pub struct KeyedStateBackend<K> {
    range: KeyGroupRange,
    max_parallelism: u32,
    names: Vec<String>,
    tables: Vec<Box<dyn StateTable<K>>>,
    /// Restored bytes per state name, applied when the state is registered.
    pending_restore: BTreeMap<String, Vec<(u32, Vec<u8>)>>,
    /// `rocksdb`: the instance the tables cache.
    store: Option<RocksStore>,
    /// `rocksdb`: the write-back cache's bound (entries over all states).
    write_back_entries: usize,
    /// `rocksdb`: state names by RocksDB state id (the key prefix after the key group). The
    /// registration order, except after a native restore, which keeps the snapshot's ids.
    db_names: Vec<String>,
    /// `rocksdb` with incremental checkpoints: checkpoints are native snapshots.
    incremental: bool,
    /// Incremental: the SST files already in checkpoint storage.
    uploads: Arc<Mutex<UploadedFiles>>,
}

/// The tables' view of the store (a free function, so it borrows `store` apart from `tables`).
#[inline]
fn store_of(store: &Option<RocksStore>, range: KeyGroupRange) -> Option<Store<'_>> {
    store.as_ref().map(|db| Store {
        db,
        range_start: range.start,
    })
}

impl<K: Key> KeyedStateBackend<K> {
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStateBackend {
            range,
            max_parallelism,
            names: Vec::new(),
            tables: Vec::new(),
            pending_restore: BTreeMap::new(),
            store: None,
            write_back_entries: WRITE_BACK_ENTRIES,
            db_names: Vec::new(),
            incremental: false,
            uploads: Arc::default(),
        }
    }

    /// The keyed state of the operator subtask `info`, in the backend `info` names.
    pub fn for_task(info: &TaskInfo) -> Result<Self> {
        let mut b = Self::new(info.key_group_range(), info.max_parallelism);
        b.store = info.state_backend.create_store(info)?;
        b.incremental = b.store.is_some() && info.state_backend.incremental();
        if let Some(store) = &b.store {
            tracing::info!(
                operator = %info.operator_name,
                subtask = info.subtask_index,
                dir = %store.dir().display(),
                memory = %store.memory_description(),
                "keyed state in RocksDB"
            );
        }
        Ok(b)
    }

    /// The backend's name: `hashmap` or `rocksdb`.
    pub fn backend_name(&self) -> &'static str {
        if self.store.is_some() {
            "rocksdb"
        } else {
            "hashmap"
        }
    }

    /// `rocksdb`: called after each batch; writes the cached entries to RocksDB and drops them
    /// once there are more than `WRITE_BACK_ENTRIES`. Nothing with `hashmap`.
    #[inline]
    pub fn end_batch(&mut self) -> Result<()> {
        if self.store.is_some()
            && self.tables.iter().map(|t| t.len()).sum::<usize>() > self.write_back_entries
        {
            self.spill()?;
        }
        Ok(())
    }

    /// `rocksdb`: writes every cached entry to RocksDB and empties the cache.
    fn spill(&mut self) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let mut batch = rocksdb::WriteBatch::default();
        for t in &mut self.tables {
            t.spill(&mut batch)?;
        }
        if !batch.is_empty() {
            store.write(batch)?;
        }
        Ok(())
    }

    pub fn key_group_range(&self) -> KeyGroupRange {
        self.range
    }

    /// The slot of a key: computes its hash and key group once.
    #[inline]
    pub fn slot_of(&self, key: &K) -> KeySlot {
        let hash = eddy_core::keygroup::stable_hash(key);
        let kg = eddy_core::keygroup::key_group_for_hash(hash, self.max_parallelism);
        debug_assert!(
            self.range.contains(kg),
            "key {key:?} of key group {kg} routed to a subtask owning {:?}",
            self.range
        );
        KeySlot {
            hash,
            group_index: kg.saturating_sub(self.range.start) as usize,
        }
    }

    /// Checks that a key belongs to this subtask (a wrong key selector, e.g. a nondeterministic
    /// one, breaks this).
    pub fn check_slot(&self, key: &K, slot: KeySlot) -> Result<()> {
        if slot.group_index >= self.range.len() {
            return Err(JobError::new(format!(
                "key {key:?} does not belong to this subtask's key groups {}..{}: is the key selector deterministic?",
                self.range.start, self.range.end
            )));
        }
        Ok(())
    }

    fn register<V: Data>(&mut self, name: &str) -> Result<usize> {
        if self.names.iter().any(|n| n == name) {
            return Err(JobError::new(format!(
                "keyed state '{name}' registered twice in one operator"
            )));
        }
        let id = match self.db_names.iter().position(|n| n == name) {
            Some(id) => id,
            None => {
                self.db_names.push(name.to_string());
                self.db_names.len() - 1
            }
        };
        if id > u16::MAX as usize {
            return Err(JobError::new(format!(
                "keyed state '{name}': more than {} states in one operator",
                u16::MAX
            )));
        }
        let mut table: Box<dyn StateTable<K>> =
            Box::new(Table::<K, V>::new(self.range.len(), id, self.range.start));
        if let Some(blobs) = self.pending_restore.remove(name) {
            for (kg, bytes) in blobs {
                if self.range.contains(kg) {
                    table.restore_group(
                        (kg - self.range.start) as usize,
                        &bytes,
                        self.range,
                        self.max_parallelism,
                    )?;
                    // RocksDB: into the instance key group by key group, so a restore never
                    // holds more than one key group on the heap.
                    if let Some(store) = &self.store {
                        let mut batch = rocksdb::WriteBatch::default();
                        table.spill(&mut batch)?;
                        store.write(batch)?;
                    }
                }
            }
        }
        self.names.push(name.to_string());
        self.tables.push(table);
        Ok(self.tables.len() - 1)
    }

    pub fn value_state<V: Data>(&mut self, name: &str) -> Result<ValueState<V>> {
        Ok(ValueState {
            id: self.register::<V>(name)?,
            _v: PhantomData,
        })
    }

    pub fn list_state<V: Data>(&mut self, name: &str) -> Result<ListState<V>> {
        Ok(ListState {
            id: self.register::<Vec<V>>(name)?,
            _v: PhantomData,
        })
    }

    pub fn map_state<UK: Key, UV: Data>(&mut self, name: &str) -> Result<MapState<UK, UV>> {
        Ok(MapState {
            id: self.register::<BTreeMap<UK, UV>>(name)?,
            _v: PhantomData,
        })
    }

    /// The typed table of handle `id` and the store it caches.
    #[inline]
    fn table<V: Data>(&mut self, id: usize) -> (&mut Table<K, V>, Option<Store<'_>>) {
        let store = store_of(&self.store, self.range);
        match self
            .tables
            .get_mut(id)
            .and_then(|t| t.as_any_mut().downcast_mut::<Table<K, V>>())
        {
            Some(t) => (t, store),
            None => panic!(
                "state handle {id} used before it was registered in open(), or with another type"
            ),
        }
    }

    // --- value state ---
    #[inline]
    pub fn value<V: Data>(&mut self, h: ValueState<V>, slot: KeySlot, key: &K) -> Option<&V> {
        let (t, store) = self.table::<V>(h.id);
        t.get(slot, key, store)
    }
    #[inline]
    pub fn value_mut<V: Data>(
        &mut self,
        h: ValueState<V>,
        slot: KeySlot,
        key: &K,
    ) -> Option<&mut V> {
        let (t, store) = self.table::<V>(h.id);
        t.get_mut(slot, key, store)
    }
    #[inline]
    pub fn value_or_insert_with<V: Data>(
        &mut self,
        h: ValueState<V>,
        slot: KeySlot,
        key: &K,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        let (t, store) = self.table::<V>(h.id);
        t.get_or_insert_with(slot, key, init, store)
    }
    #[inline]
    pub fn set_value<V: Data>(&mut self, h: ValueState<V>, slot: KeySlot, key: &K, v: V) {
        let (table, _) = self.table::<V>(h.id);
        // A value about to be overwritten need not be read from RocksDB.
        let found = table.groups[slot.group_index]
            .find_mut(slot.hash, |(k, _)| k == key)
            .map(|(_, cur)| cur);
        match found {
            Some(cur) => *cur = v,
            None => {
                table.groups[slot.group_index].insert_unique(
                    slot.hash,
                    (key.clone(), v),
                    |(k, _)| eddy_core::keygroup::stable_hash(k),
                );
            }
        }
    }
    pub fn clear_value<V: Data>(&mut self, h: ValueState<V>, slot: KeySlot, key: &K) -> Option<V> {
        let (t, store) = self.table::<V>(h.id);
        t.remove(slot, key, store)
    }

    // --- list state ---
    pub fn list<V: Data>(&mut self, h: ListState<V>, slot: KeySlot, key: &K) -> &[V] {
        let (t, store) = self.table::<Vec<V>>(h.id);
        t.get(slot, key, store).map(|v| v.as_slice()).unwrap_or(&[])
    }
    pub fn list_push<V: Data>(&mut self, h: ListState<V>, slot: KeySlot, key: &K, v: V) {
        let (t, store) = self.table::<Vec<V>>(h.id);
        t.get_or_insert_with(slot, key, Vec::new, store).push(v)
    }
    pub fn list_take<V: Data>(&mut self, h: ListState<V>, slot: KeySlot, key: &K) -> Vec<V> {
        let (t, store) = self.table::<Vec<V>>(h.id);
        t.remove(slot, key, store).unwrap_or_default()
    }

    // --- map state ---
    pub fn map<UK: Key, UV: Data>(
        &mut self,
        h: MapState<UK, UV>,
        slot: KeySlot,
        key: &K,
    ) -> Option<&BTreeMap<UK, UV>> {
        let (t, store) = self.table::<BTreeMap<UK, UV>>(h.id);
        t.get(slot, key, store)
    }
    pub fn map_mut<UK: Key, UV: Data>(
        &mut self,
        h: MapState<UK, UV>,
        slot: KeySlot,
        key: &K,
    ) -> &mut BTreeMap<UK, UV> {
        let (t, store) = self.table::<BTreeMap<UK, UV>>(h.id);
        t.get_or_insert_with(slot, key, BTreeMap::new, store)
    }
    pub fn map_clear<UK: Key, UV: Data>(&mut self, h: MapState<UK, UV>, slot: KeySlot, key: &K) {
        let (t, store) = self.table::<BTreeMap<UK, UV>>(h.id);
        t.remove(slot, key, store);
    }

    /// Number of (key, state) entries over all states on the heap (with `rocksdb`: the cached
    /// ones).
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serializes every non-empty key group: `(key group, bincode of [(state name, bytes)])`,
    /// the same bytes from both backends.
    pub fn snapshot(&mut self) -> Result<Vec<(u32, Vec<u8>)>> {
        if self.store.is_some() {
            self.spill()?;
            return self.snapshot_store();
        }
        let mut out = Vec::new();
        for gi in 0..self.range.len() {
            let mut states: Vec<(&str, Vec<u8>)> = Vec::new();
            for (name, table) in self.names.iter().zip(&self.tables) {
                if let Some(bytes) = table.snapshot_group(gi)? {
                    states.push((name.as_str(), bytes));
                }
            }
            if !states.is_empty() {
                out.push((self.range.start + gi as u32, bincode::serialize(&states)?));
            }
        }
        Ok(out)
    }

    /// `rocksdb`: the canonical snapshot read from the instance (the cache is empty). A state's
    /// blob is `bincode(Vec<(K, V)>)`: a little-endian u64 count, then each entry's key and value
    /// bytes, which are exactly the stored key (after the prefix) and value.
    fn snapshot_store(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let Some(store) = &self.store else {
            return Ok(Vec::new());
        };
        canonical_groups(store, self.range, &self.db_names)
    }
}

/// The canonical key groups of a native snapshot (a savepoint taken with incremental
/// checkpoints on: savepoints stay backend-independent). Deletes the snapshot's directory.
pub fn canonical_from_native(native: &NativeState) -> Result<Vec<(u32, Vec<u8>)>> {
    let db = RocksStore::open_read_only(&native.dir)?;
    canonical_groups(&db, native.key_groups, &native.state_names)
}

/// The canonical snapshot of the key groups `range` of a RocksDB instance whose state ids name
/// `names`. A state's blob is `bincode(Vec<(K, V)>)`: a little-endian u64 count, then each
/// entry's key and value bytes, which are exactly the stored key (after the prefix) and value.
fn canonical_groups(
    store: &RocksStore,
    range: KeyGroupRange,
    names: &[String],
) -> Result<Vec<(u32, Vec<u8>)>> {
    {
        let mut out = Vec::new();
        for kg in range.start..range.end {
            let mut states: Vec<(&str, Vec<u8>)> = Vec::new();
            let mut current: Option<(usize, u64, Vec<u8>)> = None;
            fn finish<'a>(
                names: &'a [String],
                c: Option<(usize, u64, Vec<u8>)>,
                states: &mut Vec<(&'a str, Vec<u8>)>,
            ) -> Result<()> {
                if let Some((id, n, mut blob)) = c {
                    blob[..8].copy_from_slice(&n.to_le_bytes());
                    let name = names.get(id).ok_or_else(|| {
                        JobError::new(format!(
                            "RocksDB holds state id {id}, which is not registered"
                        ))
                    })?;
                    states.push((name.as_str(), blob));
                }
                Ok(())
            }
            store.scan_group(kg, |id, k, v| {
                if current.as_ref().is_none_or(|c| c.0 != id) {
                    finish(names, current.take(), &mut states)?;
                    current = Some((id, 0, vec![0u8; 8]));
                }
                if let Some(c) = current.as_mut() {
                    c.1 += 1;
                    c.2.extend_from_slice(k);
                    c.2.extend_from_slice(v);
                }
                Ok(())
            })?;
            finish(names, current.take(), &mut states)?;
            if !states.is_empty() {
                out.push((kg, bincode::serialize(&states)?));
            }
        }
        Ok(out)
    }
}

impl<K: Key> KeyedStateBackend<K> {
    /// Writes this subtask's keyed state into a snapshot: a native RocksDB snapshot with
    /// incremental `rocksdb` (the uploader turns it into canonical key groups when the
    /// snapshot is a savepoint), else the canonical key groups.
    pub fn snapshot_to(
        &mut self,
        checkpoint_id: u64,
        writer: &mut crate::snapshot::SnapshotWriter,
    ) -> Result<()> {
        if self.incremental {
            if let Some(native) = self.snapshot_native(checkpoint_id)? {
                writer.put_native(native);
                return Ok(());
            }
        }
        for (kg, bytes) in self.snapshot()? {
            writer.put_keyed_state(kg, bytes);
        }
        Ok(())
    }

    /// `rocksdb`: writes the cache out and makes a native RocksDB snapshot (hard links; the
    /// uploader uploads and deletes it). `None` with `hashmap`.
    pub fn snapshot_native(&mut self, checkpoint_id: u64) -> Result<Option<NativeState>> {
        self.spill()?;
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let dir = store.snapshot_dir(checkpoint_id);
        store.native_checkpoint(&dir)?;
        let shared = self.uploads.lock().map(|u| u.base()).unwrap_or_default();
        Ok(Some(NativeState {
            dir,
            key_groups: self.range,
            state_names: self.db_names.clone(),
            shared,
            uploads: Some(self.uploads.clone()),
        }))
    }

    /// A checkpoint completed: its uploaded files may be referenced by the next ones.
    pub fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        if let Ok(mut u) = self.uploads.lock() {
            u.confirm(checkpoint_id);
        }
    }

    /// Accepts native RocksDB snapshots (downloaded directories; deleted here). Must be called
    /// before states are registered. One snapshot of exactly this subtask's key groups into a
    /// `rocksdb` backend becomes the instance as it is (no record is read or written); otherwise
    /// (rescale, or another backend) the key groups in range are read out of each snapshot in
    /// the canonical format and restored like a savepoint's.
    pub fn restore_native(&mut self, natives: &[NativeState]) -> Result<()> {
        if natives.is_empty() {
            return Ok(());
        }
        if let ([native], Some(store)) = (natives, &self.store) {
            if native.key_groups == self.range && self.db_names.is_empty() {
                let dir = store.dir().to_path_buf();
                let memory = store.memory().clone();
                // Closes the fresh (empty) instance, then opens the snapshot in its place.
                drop(self.store.take());
                self.store = Some(RocksStore::open_restored(&dir, &native.dir, &memory)?);
                self.db_names = native.state_names.clone();
                if let Ok(mut u) = self.uploads.lock() {
                    u.seed(
                        native
                            .shared
                            .iter()
                            .filter(|(name, _)| crate::state::incremental::is_sst(name))
                            .map(|(n, f)| (n.clone(), f.clone()))
                            .collect(),
                    );
                }
                return Ok(());
            }
        }
        for native in natives {
            let start = native.key_groups.start.max(self.range.start);
            let end = native.key_groups.end.min(self.range.end);
            let db = RocksStore::open_read_only(&native.dir)?;
            if start < end {
                let groups =
                    canonical_groups(&db, KeyGroupRange { start, end }, &native.state_names)?;
                self.restore(&groups)?;
            }
        }
        Ok(())
    }

    /// Accepts restored key groups (any subset; those outside this subtask's range are
    /// ignored). Must be called before states are registered.
    pub fn restore(&mut self, groups: &[(u32, Vec<u8>)]) -> Result<()> {
        for (kg, bytes) in groups {
            if !self.range.contains(*kg) {
                continue;
            }
            let states: Vec<(String, Vec<u8>)> = bincode::deserialize(bytes).map_err(|e| {
                JobError::new(format!("corrupt keyed state of key group {kg}: {e}"))
            })?;
            for (name, b) in states {
                self.pending_restore.entry(name).or_default().push((*kg, b));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(index: u32, p: u32) -> KeyedStateBackend<String> {
        KeyedStateBackend::new(KeyGroupRange::for_subtask(index, p, 128), 128)
    }

    #[test]
    fn value_list_and_map_state_are_per_key() {
        let mut b = backend(0, 1);
        let v = b.value_state::<u64>("count").unwrap();
        let l = b.list_state::<i32>("list").unwrap();
        let m = b.map_state::<u32, String>("map").unwrap();
        let (a, c) = ("a".to_string(), "c".to_string());
        let (sa, sc) = (b.slot_of(&a), b.slot_of(&c));
        *b.value_or_insert_with(v, sa, &a, || 0) += 5;
        *b.value_or_insert_with(v, sa, &a, || 0) += 1;
        b.set_value(v, sc, &c, 9);
        assert_eq!(b.value(v, sa, &a), Some(&6));
        assert_eq!(b.value(v, sc, &c), Some(&9));
        b.list_push(l, sa, &a, 1);
        b.list_push(l, sa, &a, 2);
        assert_eq!(b.list(l, sa, &a), &[1, 2]);
        assert!(b.list(l, sc, &c).is_empty());
        b.map_mut(m, sc, &c).insert(3, "x".into());
        assert_eq!(b.map(m, sc, &c).unwrap().get(&3).unwrap(), "x");
        assert_eq!(b.clear_value(v, sa, &a), Some(6));
        assert_eq!(b.value(v, sa, &a), None);
    }

    #[test]
    fn snapshot_restores_into_other_parallelism_by_key_group() {
        let mut whole = backend(0, 1);
        let v = whole.value_state::<u64>("count").unwrap();
        let keys: Vec<String> = (0..500).map(|i| format!("k{i}")).collect();
        for (i, k) in keys.iter().enumerate() {
            let s = whole.slot_of(k);
            whole.set_value(v, s, k, i as u64);
        }
        let snap = whole.snapshot().unwrap();
        let mut seen = 0;
        for index in 0..3 {
            let mut part = backend(index, 3);
            part.restore(&snap).unwrap();
            let v2 = part.value_state::<u64>("count").unwrap();
            for (i, k) in keys.iter().enumerate() {
                let kg = eddy_core::keygroup::key_group_of(k, 128);
                if part.key_group_range().contains(kg) {
                    let s = part.slot_of(k);
                    assert_eq!(part.value(v2, s, k), Some(&(i as u64)));
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, keys.len());
    }

    fn rocks_backend(dir: &std::path::Path, index: u32, p: u32) -> KeyedStateBackend<String> {
        let mut b = backend(index, p);
        b.store = Some(RocksStore::open(&dir.join(format!("db-{index}-{p}"))).unwrap());
        b.write_back_entries = 512;
        b
    }

    /// Fills value, list and map state for `n` keys through the backend's API.
    fn fill(b: &mut KeyedStateBackend<String>, n: u64) {
        let v = b.value_state::<(u64, u64)>("acc").unwrap();
        let l = b.list_state::<u32>("list").unwrap();
        let m = b.map_state::<u32, String>("map").unwrap();
        for round in 0..3u64 {
            for i in 0..n {
                let k = format!("key-{i}");
                let s = b.slot_of(&k);
                let acc = b.value_or_insert_with(v, s, &k, || (0, 0));
                acc.0 += 1;
                acc.1 += i;
                if i % 7 == 0 {
                    b.list_push(l, s, &k, round as u32);
                }
                if i % 11 == 0 {
                    b.map_mut(m, s, &k)
                        .insert(round as u32, format!("r{round}"));
                }
                if i % 13 == 0 && round == 2 {
                    b.clear_value(v, s, &k);
                }
                if i % 97 == 0 {
                    // the end of a batch: with rocksdb the cache goes to RocksDB
                    b.end_batch().unwrap();
                }
            }
        }
    }

    #[test]
    fn rocksdb_gives_the_same_state_and_the_same_snapshot_bytes_as_hashmap() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * 512;
        let mut heap = backend(0, 1);
        fill(&mut heap, n);
        let mut rocks = rocks_backend(dir.path(), 0, 1);
        fill(&mut rocks, n);
        assert!(rocks.len() <= 2 * 512, "the cache stays bounded");
        let (hs, rs) = (heap.snapshot().unwrap(), rocks.snapshot().unwrap());
        assert_eq!(hs.len(), rs.len());
        // Same key groups and same entries (the order inside a key group may differ).
        for ((hk, hb), (rk, rb)) in hs.iter().zip(&rs) {
            assert_eq!(hk, rk);
            let h: Vec<(String, Vec<u8>)> = bincode::deserialize(hb).unwrap();
            let r: Vec<(String, Vec<u8>)> = bincode::deserialize(rb).unwrap();
            let mut hn: Vec<&String> = h.iter().map(|x| &x.0).collect();
            let mut rn: Vec<&String> = r.iter().map(|x| &x.0).collect();
            hn.sort();
            rn.sort();
            assert_eq!(hn, rn);
            for (name, bytes) in &h {
                let other = &r.iter().find(|x| &x.0 == name).unwrap().1;
                if name == "acc" {
                    let mut a: Vec<(String, (u64, u64))> = bincode::deserialize(bytes).unwrap();
                    let mut b: Vec<(String, (u64, u64))> = bincode::deserialize(other).unwrap();
                    a.sort();
                    b.sort();
                    assert_eq!(a, b);
                } else {
                    assert_eq!(bytes.len(), other.len());
                }
            }
        }
        // Values read back through the API, also after the cache was written out.
        let v = ValueState::<(u64, u64)> {
            id: 0,
            _v: PhantomData,
        };
        let l = ListState::<u32> {
            id: 1,
            _v: PhantomData,
        };
        for i in [0u64, 1, 7, 13, 14, n - 1] {
            let k = format!("key-{i}");
            let s = rocks.slot_of(&k);
            let want = if i % 13 == 0 { None } else { Some((3, 3 * i)) };
            assert_eq!(rocks.value(v, s, &k).copied(), want, "key {k}");
            let want_list: &[u32] = if i % 7 == 0 { &[0, 1, 2] } else { &[] };
            assert_eq!(rocks.list(l, s, &k), want_list, "key {k}");
        }
    }

    #[test]
    fn snapshots_move_between_backends_and_parallelisms() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * 512;
        let mut heap = backend(0, 1);
        fill(&mut heap, n);
        let snap = heap.snapshot().unwrap();
        // hashmap p=1 -> rocksdb p=3 -> hashmap p=2: every key keeps its state.
        let mut rocks_parts = Vec::new();
        let mut snap3 = Vec::new();
        for index in 0..3 {
            let mut r = rocks_backend(dir.path(), index, 3);
            r.restore(&snap).unwrap();
            let v = r.value_state::<(u64, u64)>("acc").unwrap();
            r.list_state::<u32>("list").unwrap();
            r.map_state::<u32, String>("map").unwrap();
            for i in (0..n).step_by(5) {
                let k = format!("key-{i}");
                if r.key_group_range()
                    .contains(eddy_core::keygroup::key_group_of(&k, 128))
                {
                    let s = r.slot_of(&k);
                    let want = if i % 13 == 0 { None } else { Some((3, 3 * i)) };
                    assert_eq!(r.value(v, s, &k).copied(), want);
                }
            }
            snap3.extend(r.snapshot().unwrap());
            rocks_parts.push(r);
        }
        let mut total = 0;
        for index in 0..2 {
            let mut h = backend(index, 2);
            h.restore(&snap3).unwrap();
            h.value_state::<(u64, u64)>("acc").unwrap();
            h.list_state::<u32>("list").unwrap();
            h.map_state::<u32, String>("map").unwrap();
            total += h.len();
        }
        assert_eq!(total, heap.len());
    }

    /// Copies a native snapshot's directory (as a download would) and returns it for restore.
    fn copied(native: &NativeState, to: &std::path::Path) -> NativeState {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(&native.dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
        NativeState {
            dir: to.to_path_buf(),
            uploads: None,
            ..native.clone()
        }
    }

    #[test]
    fn native_snapshots_restore_as_they_are_or_by_key_group_after_a_rescale() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2 * 512;
        let mut heap = backend(0, 1);
        fill(&mut heap, n);
        let mut rocks = rocks_backend(dir.path(), 0, 1);
        rocks.incremental = true;
        fill(&mut rocks, n);
        let native = rocks
            .snapshot_native(7)
            .unwrap()
            .expect("a native snapshot");
        assert!(native.shared.is_empty(), "nothing uploaded yet");
        let names: Vec<String> = std::fs::read_dir(&native.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(names.iter().any(|n| n.ends_with(".sst")), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("MANIFEST")), "{names:?}");
        // Writes after the barrier do not change the snapshot (hard links to immutable files).
        fill(&mut backend(0, 1), 1);
        let (v, s0) = (
            ValueState::<(u64, u64)> {
                id: 0,
                _v: PhantomData,
            },
            rocks.slot_of(&"key-1".to_string()),
        );
        rocks.set_value(v, s0, &"key-1".to_string(), (99, 99));
        rocks.spill().unwrap();
        let want = heap.snapshot().unwrap();
        let canonical = |snap: &[(u32, Vec<u8>)]| -> Vec<(u32, Vec<(String, usize)>)> {
            snap.iter()
                .map(|(kg, b)| {
                    let mut st: Vec<(String, Vec<u8>)> = bincode::deserialize(b).unwrap();
                    st.sort();
                    (*kg, st.into_iter().map(|(n, b)| (n, b.len())).collect())
                })
                .collect()
        };
        // Same key groups: the snapshot becomes the instance.
        let mut same = rocks_backend(&dir.path().join("same"), 0, 1);
        same.restore_native(&[copied(&native, &dir.path().join("dl-same"))])
            .unwrap();
        assert_eq!(same.db_names, ["acc", "list", "map"]);
        same.value_state::<(u64, u64)>("acc").unwrap();
        same.list_state::<u32>("list").unwrap();
        same.map_state::<u32, String>("map").unwrap();
        assert_eq!(canonical(&same.snapshot().unwrap()), canonical(&want));
        // Rescaled to 3 subtasks, into rocksdb and hashmap: every key group arrives once.
        let mut parts = Vec::new();
        for index in 0..3 {
            let mut part = if index == 1 {
                backend(index, 3)
            } else {
                rocks_backend(dir.path(), index, 3)
            };
            part.restore_native(&[copied(&native, &dir.path().join(format!("dl-{index}")))])
                .unwrap();
            part.value_state::<(u64, u64)>("acc").unwrap();
            part.list_state::<u32>("list").unwrap();
            part.map_state::<u32, String>("map").unwrap();
            parts.extend(part.snapshot().unwrap());
        }
        parts.sort_by_key(|(kg, _)| *kg);
        assert_eq!(canonical(&parts), canonical(&want));
        // A savepoint: the canonical key groups straight from the native snapshot.
        let from_native = canonical_from_native(&native).unwrap();
        assert_eq!(canonical(&from_native), canonical(&want));
        assert!(!native.dir.exists(), "the snapshot directory is removed");
    }

    #[test]
    fn registering_a_state_twice_is_an_error() {
        let mut b = backend(0, 1);
        b.value_state::<u64>("x").unwrap();
        assert!(b.value_state::<u64>("x").is_err());
    }
}
