//! Keyed processing: `KeyedProcessFunction` (Flink's name) and the operator that runs it.
//!
//! The operator extracts each record's key, computes its key group once, and hands the function
//! a [`KeyedContext`] scoped to that key: state access, timers, the record's timestamp and the
//! output. Keyed state and timers are snapshotted per key group.

use crate::data::{Data, Key, Timestamp, MIN_WATERMARK};
use crate::error::Result;
use crate::operator::{Operator, Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};
use crate::state::keyed::KeySlot;
use crate::state::{KeyedStateBackend, ListState, MapState, TimeDomain, TimerService, ValueState};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Extracts a record's key. Must be deterministic: the same record gives the same key in every
/// process.
pub type KeySelector<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;
/// Borrows a record's key (a field of it): the operator then copies the key into a buffer it
/// reuses instead of cloning it per record (no allocation per record for `String` keys).
pub type KeyRefSelector<T, K> = Arc<dyn for<'a> Fn(&'a T) -> &'a K + Send + Sync>;
/// Extracts a record's event-time timestamp (ms).
pub type TimestampFn<T> = Arc<dyn Fn(&T) -> Timestamp + Send + Sync>;

/// Given in `open`: register keyed state here.
pub struct KeyedOpenContext<'a, K: Key> {
    pub info: &'a TaskInfo,
    backend: &'a mut KeyedStateBackend<K>,
}

impl<'a, K: Key> KeyedOpenContext<'a, K> {
    pub fn value_state<V: Data>(&mut self, name: &str) -> Result<ValueState<V>> {
        self.backend.value_state(name)
    }
    pub fn list_state<V: Data>(&mut self, name: &str) -> Result<ListState<V>> {
        self.backend.list_state(name)
    }
    pub fn map_state<UK: Key, UV: Data>(&mut self, name: &str) -> Result<MapState<UK, UV>> {
        self.backend.map_state(name)
    }
}

/// The context of one call for one key.
pub struct KeyedContext<'a, K: Key, O> {
    key: &'a K,
    slot: KeySlot,
    timestamp: Option<Timestamp>,
    watermark: Timestamp,
    backend: &'a mut KeyedStateBackend<K>,
    timers: &'a mut TimerService<K>,
    out: &'a mut Output<O>,
}

impl<'a, K: Key, O> KeyedContext<'a, K, O> {
    pub fn key(&self) -> &K {
        self.key
    }
    /// The current record's event timestamp (or the firing timer's time in `on_timer`).
    pub fn timestamp(&self) -> Option<Timestamp> {
        self.timestamp
    }
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }
    pub fn current_processing_time(&self) -> Timestamp {
        crate::data::now_millis()
    }
    #[inline]
    pub fn emit(&mut self, record: O) {
        self.out.push(record)
    }

    pub fn value<V: Data>(&mut self, h: ValueState<V>) -> Option<&V> {
        self.backend.value(h, self.slot, self.key)
    }
    pub fn value_mut<V: Data>(&mut self, h: ValueState<V>) -> Option<&mut V> {
        self.backend.value_mut(h, self.slot, self.key)
    }
    #[inline]
    pub fn value_or_insert_with<V: Data>(
        &mut self,
        h: ValueState<V>,
        init: impl FnOnce() -> V,
    ) -> &mut V {
        self.backend
            .value_or_insert_with(h, self.slot, self.key, init)
    }
    pub fn set_value<V: Data>(&mut self, h: ValueState<V>, v: V) {
        self.backend.set_value(h, self.slot, self.key, v)
    }
    pub fn clear_value<V: Data>(&mut self, h: ValueState<V>) -> Option<V> {
        self.backend.clear_value(h, self.slot, self.key)
    }
    pub fn list<V: Data>(&mut self, h: ListState<V>) -> &[V] {
        self.backend.list(h, self.slot, self.key)
    }
    pub fn list_push<V: Data>(&mut self, h: ListState<V>, v: V) {
        self.backend.list_push(h, self.slot, self.key, v)
    }
    pub fn list_take<V: Data>(&mut self, h: ListState<V>) -> Vec<V> {
        self.backend.list_take(h, self.slot, self.key)
    }
    pub fn map<UK: Key, UV: Data>(&mut self, h: MapState<UK, UV>) -> Option<&BTreeMap<UK, UV>> {
        self.backend.map(h, self.slot, self.key)
    }
    pub fn map_mut<UK: Key, UV: Data>(&mut self, h: MapState<UK, UV>) -> &mut BTreeMap<UK, UV> {
        self.backend.map_mut(h, self.slot, self.key)
    }
    pub fn map_clear<UK: Key, UV: Data>(&mut self, h: MapState<UK, UV>) {
        self.backend.map_clear(h, self.slot, self.key)
    }

    pub fn register_event_time_timer(&mut self, ts: Timestamp) {
        self.timers.register(TimeDomain::EventTime, ts, self.key)
    }
    pub fn delete_event_time_timer(&mut self, ts: Timestamp) {
        self.timers.delete(TimeDomain::EventTime, ts, self.key)
    }
    pub fn register_processing_time_timer(&mut self, ts: Timestamp) {
        self.timers
            .register(TimeDomain::ProcessingTime, ts, self.key)
    }
    pub fn delete_processing_time_timer(&mut self, ts: Timestamp) {
        self.timers.delete(TimeDomain::ProcessingTime, ts, self.key)
    }
}

/// Flink's KeyedProcessFunction: per-record logic with keyed state and timers.
pub trait KeyedProcessFunction<K: Key, I: Data, O: Data>: Send + 'static {
    /// Register state handles here.
    fn open(&mut self, _ctx: &mut KeyedOpenContext<'_, K>) -> Result<()> {
        Ok(())
    }
    fn process_element(&mut self, value: I, ctx: &mut KeyedContext<'_, K, O>) -> Result<()>;
    fn on_timer(
        &mut self,
        _timestamp: Timestamp,
        _domain: TimeDomain,
        _ctx: &mut KeyedContext<'_, K, O>,
    ) -> Result<()> {
        Ok(())
    }
}

/// Runs a [`KeyedProcessFunction`] on a hash-partitioned input.
pub struct KeyedProcessOperator<K: Key, I: Data, O: Data, F> {
    function: F,
    key_selector: KeySelector<I, K>,
    /// Set by `key_by_ref`: the key is copied into `key_buffer` (`clone_from`, which reuses its
    /// allocation) instead of being cloned for every record.
    key_ref: Option<KeyRefSelector<I, K>>,
    key_buffer: Option<K>,
    timestamps: Option<TimestampFn<I>>,
    backend: Option<KeyedStateBackend<K>>,
    timers: TimerService<K>,
    watermark: Timestamp,
    max_parallelism: u32,
    _o: std::marker::PhantomData<fn() -> O>,
}

impl<K: Key, I: Data, O: Data, F: KeyedProcessFunction<K, I, O>> KeyedProcessOperator<K, I, O, F> {
    pub fn new(
        function: F,
        key_selector: KeySelector<I, K>,
        timestamps: Option<TimestampFn<I>>,
    ) -> Self {
        KeyedProcessOperator {
            function,
            key_selector,
            key_ref: None,
            key_buffer: None,
            timestamps,
            backend: None,
            timers: TimerService::default(),
            watermark: MIN_WATERMARK,
            max_parallelism: eddy_core::DEFAULT_MAX_PARALLELISM,
            _o: std::marker::PhantomData,
        }
    }

    /// Borrows the key of each record through `key_ref` (see [`KeyRefSelector`]).
    pub fn with_key_ref(mut self, key_ref: Option<KeyRefSelector<I, K>>) -> Self {
        self.key_ref = key_ref;
        self
    }

    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        time: Timestamp,
        out: &mut Output<O>,
    ) -> Result<()> {
        let Some(backend) = self.backend.as_mut() else {
            return Ok(());
        };
        while let Some((ts, key)) = self.timers.pop_due(domain, time) {
            let slot = backend.slot_of(&key);
            let mut ctx = KeyedContext {
                key: &key,
                slot,
                timestamp: Some(ts),
                watermark: self.watermark,
                backend,
                timers: &mut self.timers,
                out,
            };
            self.function.on_timer(ts, domain, &mut ctx)?;
        }
        backend.end_batch()
    }
}

impl<K: Key, I: Data, O: Data, F: KeyedProcessFunction<K, I, O>> Operator
    for KeyedProcessOperator<K, I, O, F>
{
    type In = I;
    type Out = O;

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        self.max_parallelism = info.max_parallelism;
        let range = info.key_group_range();
        let mut backend = KeyedStateBackend::for_task(info)?;
        if let Some(snap) = restored {
            let (timers, states): (Vec<_>, Vec<_>) = snap
                .keyed_state
                .iter()
                .cloned()
                .partition(|(kg, _)| *kg >= TIMER_GROUP_BASE);
            backend.restore(&states)?;
            backend.restore_native(&snap.native)?;
            let timers: Vec<(u32, Vec<u8>)> = timers
                .into_iter()
                .map(|(kg, b)| (kg - TIMER_GROUP_BASE, b))
                .collect();
            self.timers.restore(&timers, range)?;
        }
        let mut ctx = KeyedOpenContext {
            info,
            backend: &mut backend,
        };
        self.function.open(&mut ctx)?;
        self.backend = Some(backend);
        Ok(())
    }

    fn process_batch(&mut self, input: &mut Vec<I>, out: &mut Output<O>) -> Result<()> {
        let backend = self
            .backend
            .as_mut()
            .ok_or("keyed operator used before open")?;
        let mut owned;
        for record in input.drain(..) {
            let key: &K = match &self.key_ref {
                Some(f) => {
                    let k = f(&record);
                    match &mut self.key_buffer {
                        Some(b) => b.clone_from(k),
                        None => self.key_buffer = Some(k.clone()),
                    }
                    self.key_buffer.as_ref().expect("filled above")
                }
                None => {
                    owned = (self.key_selector)(&record);
                    &owned
                }
            };
            let slot = backend.slot_of(key);
            backend.check_slot(key, slot)?;
            let timestamp = self.timestamps.as_ref().map(|f| f(&record));
            let mut ctx = KeyedContext {
                key,
                slot,
                timestamp,
                watermark: self.watermark,
                backend,
                timers: &mut self.timers,
                out,
            };
            self.function.process_element(record, &mut ctx)?;
        }
        backend.end_batch()
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.watermark = wm;
        self.fire_timers(TimeDomain::EventTime, wm, out)?;
        out.emit_watermark(wm);
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<O>) -> Result<()> {
        self.fire_timers(TimeDomain::ProcessingTime, now, out)
    }

    fn next_processing_time_deadline(&self) -> Option<Timestamp> {
        self.timers.next_processing_time()
    }

    fn snapshot_state(&mut self, checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        if let Some(b) = &mut self.backend {
            b.snapshot_to(checkpoint_id, writer)?;
        }
        for (kg, bytes) in self.timers.snapshot(self.max_parallelism)? {
            writer.put_keyed_state(TIMER_GROUP_BASE + kg, bytes);
        }
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(b) = &mut self.backend {
            b.checkpoint_complete(checkpoint_id);
        }
        Ok(())
    }
}

/// Timers are stored as pseudo key groups `TIMER_GROUP_BASE + kg`, so one keyed blob list holds
/// both and both redistribute by key group.
pub const TIMER_GROUP_BASE: u32 = 1 << 20;
