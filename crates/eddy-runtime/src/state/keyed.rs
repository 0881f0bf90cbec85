//! The `hashmap` keyed-state backend: per registered state, one hash table per key group.
//!
//! Handles (`ValueState`, `ListState`, `MapState`) are typed indices into the backend; the
//! operator passes the current key's hash and key group, so a record costs one hash for both
//! partitioning and lookup. The backend never sees records, only keys and state values.

use crate::data::{Data, Key};
use crate::error::{JobError, Result};
use eddy_core::keygroup::KeyGroupRange;
use hashbrown::HashTable;
use std::any::Any;
use std::collections::BTreeMap;
use std::marker::PhantomData;

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
    fn as_any(&self) -> &dyn Any;
    fn snapshot_group(&self, group_index: usize) -> Result<Option<Vec<u8>>>;
    fn restore_group(
        &mut self,
        group_index: usize,
        bytes: &[u8],
        range: KeyGroupRange,
        max_parallelism: u32,
    ) -> Result<()>;
    fn len(&self) -> usize;
}

/// One state: `groups[group_index]` maps key → value.
pub(crate) struct Table<K, V> {
    groups: Vec<HashTable<(K, V)>>,
}

impl<K: Key, V: Data> Table<K, V> {
    fn new(groups: usize) -> Self {
        Table {
            groups: (0..groups).map(|_| HashTable::new()).collect(),
        }
    }

    #[inline]
    fn get(&self, slot: KeySlot, key: &K) -> Option<&V> {
        self.groups[slot.group_index]
            .find(slot.hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[inline]
    fn get_mut(&mut self, slot: KeySlot, key: &K) -> Option<&mut V> {
        self.groups[slot.group_index]
            .find_mut(slot.hash, |(k, _)| k == key)
            .map(|(_, v)| v)
    }

    #[inline]
    fn get_or_insert_with(&mut self, slot: KeySlot, key: &K, init: impl FnOnce() -> V) -> &mut V {
        let table = &mut self.groups[slot.group_index];
        let entry = table.entry(
            slot.hash,
            |(k, _)| k == key,
            |(k, _)| eddy_core::keygroup::stable_hash(k),
        );
        match entry {
            hashbrown::hash_table::Entry::Occupied(o) => &mut o.into_mut().1,
            hashbrown::hash_table::Entry::Vacant(v) => {
                &mut v.insert((key.clone(), init())).into_mut().1
            }
        }
    }

    #[inline]
    fn remove(&mut self, slot: KeySlot, key: &K) -> Option<V> {
        match self.groups[slot.group_index].find_entry(slot.hash, |(k, _)| k == key) {
            Ok(o) => Some(o.remove().0 .1),
            Err(_) => None,
        }
    }
}

impl<K: Key, V: Data> StateTable<K> for Table<K, V> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn as_any(&self) -> &dyn Any {
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
}

/// All keyed state of one operator in one subtask.
pub struct KeyedStateBackend<K> {
    range: KeyGroupRange,
    max_parallelism: u32,
    names: Vec<String>,
    tables: Vec<Box<dyn StateTable<K>>>,
    /// Restored bytes per state name, applied when the state is registered.
    pending_restore: BTreeMap<String, Vec<(u32, Vec<u8>)>>,
}

impl<K: Key> KeyedStateBackend<K> {
    pub fn new(range: KeyGroupRange, max_parallelism: u32) -> Self {
        KeyedStateBackend {
            range,
            max_parallelism,
            names: Vec::new(),
            tables: Vec::new(),
            pending_restore: BTreeMap::new(),
        }
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
        let mut table: Box<dyn StateTable<K>> = Box::new(Table::<K, V>::new(self.range.len()));
        if let Some(blobs) = self.pending_restore.remove(name) {
            for (kg, bytes) in blobs {
                if self.range.contains(kg) {
                    table.restore_group(
                        (kg - self.range.start) as usize,
                        &bytes,
                        self.range,
                        self.max_parallelism,
                    )?;
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

    #[inline]
    fn table<V: Data>(&mut self, id: usize) -> &mut Table<K, V> {
        match self
            .tables
            .get_mut(id)
            .and_then(|t| t.as_any_mut().downcast_mut::<Table<K, V>>())
        {
            Some(t) => t,
            None => panic!(
                "state handle {id} used before it was registered in open(), or with another type"
            ),
        }
    }

    #[inline]
    fn table_ref<V: Data>(&self, id: usize) -> &Table<K, V> {
        match self
            .tables
            .get(id)
            .and_then(|t| t.as_any().downcast_ref::<Table<K, V>>())
        {
            Some(t) => t,
            None => panic!(
                "state handle {id} used before it was registered in open(), or with another type"
            ),
        }
    }

    // --- value state ---
    #[inline]
    pub fn value<V: Data>(&self, h: ValueState<V>, slot: KeySlot, key: &K) -> Option<&V> {
        self.table_ref::<V>(h.id).get(slot, key)
    }
    #[inline]
    pub fn value_mut<V: Data>(
        &mut self,
        h: ValueState<V>,
        slot: KeySlot,
        key: &K,
    ) -> Option<&mut V> {
        self.table::<V>(h.id).get_mut(slot, key)
    }
    #[inline]
    pub fn value_or_insert_with<V: Data>(
        &mut self,
        h: ValueState<V>,
        slot: KeySlot,
        key: &K,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        self.table::<V>(h.id).get_or_insert_with(slot, key, init)
    }
    #[inline]
    pub fn set_value<V: Data>(&mut self, h: ValueState<V>, slot: KeySlot, key: &K, v: V) {
        let table = self.table::<V>(h.id);
        match table.get_mut(slot, key) {
            Some(cur) => *cur = v,
            None => {
                table.get_or_insert_with(slot, key, || v);
            }
        }
    }
    pub fn clear_value<V: Data>(&mut self, h: ValueState<V>, slot: KeySlot, key: &K) -> Option<V> {
        self.table::<V>(h.id).remove(slot, key)
    }

    // --- list state ---
    pub fn list<V: Data>(&self, h: ListState<V>, slot: KeySlot, key: &K) -> &[V] {
        self.table_ref::<Vec<V>>(h.id)
            .get(slot, key)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }
    pub fn list_push<V: Data>(&mut self, h: ListState<V>, slot: KeySlot, key: &K, v: V) {
        self.table::<Vec<V>>(h.id)
            .get_or_insert_with(slot, key, Vec::new)
            .push(v)
    }
    pub fn list_take<V: Data>(&mut self, h: ListState<V>, slot: KeySlot, key: &K) -> Vec<V> {
        self.table::<Vec<V>>(h.id)
            .remove(slot, key)
            .unwrap_or_default()
    }

    // --- map state ---
    pub fn map<UK: Key, UV: Data>(
        &self,
        h: MapState<UK, UV>,
        slot: KeySlot,
        key: &K,
    ) -> Option<&BTreeMap<UK, UV>> {
        self.table_ref::<BTreeMap<UK, UV>>(h.id).get(slot, key)
    }
    pub fn map_mut<UK: Key, UV: Data>(
        &mut self,
        h: MapState<UK, UV>,
        slot: KeySlot,
        key: &K,
    ) -> &mut BTreeMap<UK, UV> {
        self.table::<BTreeMap<UK, UV>>(h.id)
            .get_or_insert_with(slot, key, BTreeMap::new)
    }
    pub fn map_clear<UK: Key, UV: Data>(&mut self, h: MapState<UK, UV>, slot: KeySlot, key: &K) {
        self.table::<BTreeMap<UK, UV>>(h.id).remove(slot, key);
    }

    /// Number of (key, state) entries over all states.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Serializes every non-empty key group: `(key group, bincode of [(state name, bytes)])`.
    pub fn snapshot(&self) -> Result<Vec<(u32, Vec<u8>)>> {
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

    #[test]
    fn registering_a_state_twice_is_an_error() {
        let mut b = backend(0, 1);
        b.value_state::<u64>("x").unwrap();
        assert!(b.value_state::<u64>("x").is_err());
    }
}
