//! The keyed window operator: assigns records to windows, folds them into per-(key, window)
//! accumulators and fires windows when event time or processing time passes their end.
//!
//! State layout: one `MapState<TimeWindow, Acc>` ("window-contents") in the keyed state
//! backend, so window contents are snapshotted and redistributed per key group; one timer per
//! (key, window end) in a `TimerService`, snapshotted as pseudo key groups
//! `TIMER_GROUP_BASE + kg` exactly like `KeyedProcessOperator`; and the current watermark as
//! operator state, so a restored operator drops the same late records an uninterrupted one would.
//!
//! Firing (Flink's default triggers): an event-time window fires once the watermark reaches
//! `window.max_timestamp()`, a processing-time window once the clock does; with no allowed
//! lateness its state is purged at the same moment. With allowed lateness `L` the state lives
//! until the watermark reaches `max_timestamp + L`, and each record arriving in that interval
//! fires the window again at once. Records whose every window is past that point are late:
//! dropped and counted, never silently merged into a fired window. Session windows merge on
//! insert: intersecting (or touching) windows become one, their accumulators merged.
//!
//! This operator must never block, read the wall clock per record (processing time is read
//! once per batch), or emit a window twice without allowed lateness.

use crate::data::{Data, Key, Timestamp, MAX_WATERMARK, MIN_WATERMARK};
use crate::error::{JobError, Result};
use crate::keyed::{KeySelector, TimestampFn, TIMER_GROUP_BASE};
use crate::operator::{Operator, Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};
use crate::state::{KeyedStateBackend, MapState, TimeDomain, TimerService};
use crate::window::assigner::{TimeWindow, WindowAssigner};
use crate::window::function::InternalWindowFunction;
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The processing-time clock (ms since the epoch). Injectable so tests control time.
pub type ProcessingClock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Name of the keyed state holding window accumulators (Flink's name).
const CONTENTS_STATE: &str = "window-contents";
/// Name of the operator state holding the watermark seen at the last checkpoint.
const WATERMARK_STATE: &str = "window-watermark";

/// Flink-style operator name, e.g. `Window(TumblingEventTimeWindows(5000), EventTimeTrigger, Reduce)`.
pub fn window_operator_name<W: WindowAssigner>(assigner: &W, function: &str) -> String {
    format!(
        "Window({}, {}, {function})",
        assigner.name(),
        assigner.trigger_name()
    )
}

/// Windows a keyed stream with assigner `W` and computes `F` per (key, window).
pub struct WindowOperator<K: Key, T: Data, W: WindowAssigner, F: InternalWindowFunction<K, T>> {
    assigner: W,
    function: F,
    key_selector: KeySelector<T, K>,
    timestamps: Option<TimestampFn<T>>,
    /// Event time only: how long after `max_timestamp` a window still accepts records (ms).
    allowed_lateness: i64,
    clock: ProcessingClock,
    domain: TimeDomain,
    backend: Option<KeyedStateBackend<K>>,
    contents: MapState<TimeWindow, F::Acc>,
    timers: TimerService<K>,
    /// The highest watermark seen (or restored); decides lateness.
    watermark: Timestamp,
    max_parallelism: u32,
    operator_name: String,
    late_records_dropped: u64,
    /// Scratch buffers reused for every record, so assigning and merging do not allocate.
    assigned: Vec<TimeWindow>,
    merging: Vec<TimeWindow>,
    due: Vec<(TimeWindow, bool, bool)>,
}

impl<K: Key, T: Data, W: WindowAssigner, F: InternalWindowFunction<K, T>>
    WindowOperator<K, T, W, F>
{
    /// `timestamps` is required for event-time assigners (checked in `open`);
    /// `allowed_lateness_ms` is ignored by processing-time assigners.
    pub fn new(
        assigner: W,
        function: F,
        key_selector: KeySelector<T, K>,
        timestamps: Option<TimestampFn<T>>,
        allowed_lateness_ms: i64,
    ) -> Self {
        let domain = assigner.time_domain();
        WindowOperator {
            assigner,
            function,
            key_selector,
            timestamps,
            allowed_lateness: allowed_lateness_ms.max(0),
            clock: Arc::new(crate::data::now_millis),
            domain,
            backend: None,
            contents: MapState::default(),
            timers: TimerService::default(),
            watermark: MIN_WATERMARK,
            max_parallelism: eddy_core::DEFAULT_MAX_PARALLELISM,
            operator_name: String::new(),
            late_records_dropped: 0,
            assigned: Vec::new(),
            merging: Vec::new(),
            due: Vec::new(),
        }
    }

    /// Replaces the wall clock that processing-time windows read once per batch.
    pub fn with_processing_clock(mut self, clock: ProcessingClock) -> Self {
        self.clock = clock;
        self
    }

    /// Records dropped because all their windows were past the allowed lateness (Flink's
    /// `numLateRecordsDropped`; reset on restart, like every metric).
    pub fn late_records_dropped(&self) -> u64 {
        self.late_records_dropped
    }

    /// The watermark the operator decides lateness by.
    pub fn current_watermark(&self) -> Timestamp {
        self.watermark
    }

    /// Keys that hold at least one open window (a key's entry goes once its last window is
    /// purged).
    pub fn keys_with_open_windows(&self) -> usize {
        self.backend.as_ref().map_or(0, |b| b.len())
    }

    /// Registered timers of both domains.
    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    fn fire_timers(
        &mut self,
        domain: TimeDomain,
        time: Timestamp,
        out: &mut Output<F::Out>,
    ) -> Result<()> {
        let Some(backend) = self.backend.as_mut() else {
            return Ok(());
        };
        let lateness = WindowTimes {
            domain: self.domain,
            allowed_lateness: self.allowed_lateness,
        };
        while let Some((ts, key)) = self.timers.pop_due(domain, time) {
            let slot = backend.slot_of(&key);
            self.due.clear();
            let Some(windows) = backend.map(self.contents, slot, &key) else {
                continue;
            };
            for w in windows.keys() {
                // A timer is per (key, time), not per window: it serves every window of the key
                // that fires or is cleaned up at `ts`.
                let fire = w.max_timestamp() == ts;
                let purge = lateness.cleanup_time(w) <= ts;
                if fire || purge {
                    self.due.push((*w, fire, purge));
                }
            }
            if self.due.is_empty() {
                continue;
            }
            let windows = backend.map_mut(self.contents, slot, &key);
            for &(w, fire, purge) in &self.due {
                if purge {
                    if let Some(acc) = windows.remove(&w) {
                        if fire {
                            self.function.fire(&key, &w, acc, &mut out.records)?;
                        }
                    }
                } else if let Some(acc) = windows.get(&w) {
                    // Allowed lateness keeps the state: the result is computed from a copy.
                    self.function
                        .fire(&key, &w, acc.clone(), &mut out.records)?;
                }
            }
            if windows.is_empty() {
                backend.map_clear(self.contents, slot, &key);
            }
        }
        backend.end_batch()
    }
}

/// The window times that depend only on the assigner's domain and the allowed lateness.
#[derive(Clone, Copy)]
struct WindowTimes {
    domain: TimeDomain,
    allowed_lateness: i64,
}

impl WindowTimes {
    /// When a window's state is dropped (Flink's `cleanupTime`).
    fn cleanup_time(&self, w: &TimeWindow) -> Timestamp {
        match self.domain {
            TimeDomain::EventTime => w.max_timestamp().saturating_add(self.allowed_lateness),
            TimeDomain::ProcessingTime => w.max_timestamp(),
        }
    }

    /// A window is late once its state would already have been cleaned up.
    fn is_late(&self, w: &TimeWindow, watermark: Timestamp) -> bool {
        self.domain == TimeDomain::EventTime && self.cleanup_time(w) <= watermark
    }

    /// Registers the timers of a newly created window. An event-time window whose end the
    /// watermark already passed (allowed lateness) gets no firing timer: it fires on insert.
    fn register<K: Key>(
        &self,
        timers: &mut TimerService<K>,
        w: &TimeWindow,
        key: &K,
        watermark: Timestamp,
    ) {
        if !(self.domain == TimeDomain::EventTime && w.max_timestamp() <= watermark) {
            timers.register(self.domain, w.max_timestamp(), key);
        }
        if self.domain == TimeDomain::EventTime && self.allowed_lateness > 0 {
            timers.register(self.domain, self.cleanup_time(w), key);
        }
    }

    /// Deletes the timers of a window that was merged away, unless a remaining window of the
    /// key fires or is cleaned up at the same time (timers are per key, not per window).
    fn unregister<K: Key, A>(
        &self,
        timers: &mut TimerService<K>,
        old: &TimeWindow,
        key: &K,
        remaining: &BTreeMap<TimeWindow, A>,
    ) {
        for t in [old.max_timestamp(), self.cleanup_time(old)] {
            let needed = remaining
                .keys()
                .any(|w| w.max_timestamp() == t || self.cleanup_time(w) == t);
            if !needed {
                timers.delete(self.domain, t, key);
            }
        }
    }

    /// Whether a window receiving a record must fire at once (its end already passed, within
    /// allowed lateness), as Flink's `EventTimeTrigger.onElement` does.
    fn fires_on_insert(&self, w: &TimeWindow, watermark: Timestamp) -> bool {
        self.domain == TimeDomain::EventTime && w.max_timestamp() <= watermark
    }
}

impl<K: Key, T: Data, W: WindowAssigner, F: InternalWindowFunction<K, T>> Operator
    for WindowOperator<K, T, W, F>
{
    type In = T;
    type Out = F::Out;

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        if self.domain == TimeDomain::EventTime && self.timestamps.is_none() {
            return Err(JobError::new(format!(
                "{} uses event time but its input has no timestamps: call assign_timestamps_and_watermarks upstream",
                self.assigner.name()
            )));
        }
        self.max_parallelism = info.max_parallelism;
        self.operator_name = info.operator_name.clone();
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
            // After a rescale every subtask gets every entry (union): the lowest is safe.
            let mut restored_wm: Option<Timestamp> = None;
            for bytes in snap.operator_entries(WATERMARK_STATE) {
                let wm: Timestamp = bincode::deserialize(bytes)
                    .map_err(|e| JobError::new(format!("corrupt {WATERMARK_STATE} state: {e}")))?;
                restored_wm = Some(restored_wm.map_or(wm, |m| m.min(wm)));
            }
            if let Some(wm) = restored_wm {
                self.watermark = wm;
            }
        }
        self.contents = backend.map_state(CONTENTS_STATE)?;
        self.backend = Some(backend);
        Ok(())
    }

    fn process_batch(&mut self, input: &mut Vec<T>, out: &mut Output<F::Out>) -> Result<()> {
        let backend = self
            .backend
            .as_mut()
            .ok_or("window operator used before open")?;
        let times = WindowTimes {
            domain: self.domain,
            allowed_lateness: self.allowed_lateness,
        };
        let event_time = self.domain == TimeDomain::EventTime;
        let merging = self.assigner.is_merging();
        let wm = self.watermark;
        // Processing time is read once per batch: every record of a batch gets the same windows.
        let now = if event_time { 0 } else { (self.clock)() };
        let late_before = self.late_records_dropped;
        for record in input.drain(..) {
            let key = (self.key_selector)(&record);
            let slot = backend.slot_of(&key);
            backend.check_slot(&key, slot)?;
            let ts = match (&self.timestamps, event_time) {
                (Some(f), true) => f(&record),
                _ => now,
            };
            self.assigned.clear();
            self.assigner.assign_windows(ts, &mut self.assigned);
            if !merging {
                self.assigned.retain(|w| !times.is_late(w, wm));
            }
            let n = self.assigned.len();
            if n == 0 {
                self.late_records_dropped += 1;
                continue;
            }
            let mut record = Some(record);
            let mut accepted = false;
            for (i, &w) in self.assigned.iter().enumerate() {
                // The record moves into its last window and is cloned for the others.
                let value = if i + 1 == n {
                    record.take()
                } else {
                    record.clone()
                };
                let Some(value) = value else { break };
                let target = if merging {
                    // Sessions of a key never intersect, so the windows a new one touches are
                    // contiguous and end at the last window starting at or before `w.end`.
                    self.merging.clear();
                    if let Some(windows) = backend.map(self.contents, slot, &key) {
                        let upper = TimeWindow::new(w.end, Timestamp::MAX);
                        for existing in windows.range(..=upper).rev().map(|(x, _)| *x) {
                            if !existing.intersects(&w) {
                                break;
                            }
                            self.merging.push(existing);
                        }
                    }
                    let target = self.merging.iter().fold(w, |c, x| c.cover(x));
                    if times.is_late(&target, wm) {
                        continue;
                    }
                    let windows = backend.map_mut(self.contents, slot, &key);
                    if !(self.merging.len() == 1 && self.merging[0] == target) {
                        // Merge in time order; the merged-away windows' timers move to the target.
                        let mut acc: Option<F::Acc> = None;
                        for old in self.merging.iter().rev() {
                            if let Some(a) = windows.remove(old) {
                                acc = Some(match acc {
                                    Some(prev) => self.function.merge(prev, a),
                                    None => a,
                                });
                            }
                        }
                        windows.insert(target, acc.unwrap_or_else(|| self.function.create()));
                        for old in &self.merging {
                            times.unregister(&mut self.timers, old, &key, windows);
                        }
                        times.register(&mut self.timers, &target, &key, wm);
                    }
                    match windows.get_mut(&target) {
                        Some(acc) => self.function.add(acc, value),
                        None => {
                            return Err(JobError::new("internal: merged session window vanished"))
                        }
                    }
                    target
                } else {
                    let windows = backend.map_mut(self.contents, slot, &key);
                    match windows.entry(w) {
                        Entry::Occupied(e) => self.function.add(e.into_mut(), value),
                        Entry::Vacant(e) => {
                            self.function.add(e.insert(self.function.create()), value);
                            times.register(&mut self.timers, &w, &key, wm);
                        }
                    }
                    w
                };
                accepted = true;
                if times.fires_on_insert(&target, wm) {
                    if let Some(acc) = backend
                        .map(self.contents, slot, &key)
                        .and_then(|m| m.get(&target))
                    {
                        self.function
                            .fire(&key, &target, acc.clone(), &mut out.records)?;
                    }
                }
            }
            if !accepted {
                self.late_records_dropped += 1;
            }
        }
        backend.end_batch()?;
        let dropped = self.late_records_dropped - late_before;
        if dropped > 0 {
            if late_before == 0 {
                tracing::warn!(
                    operator = %self.operator_name,
                    watermark = wm,
                    "dropping late records: all their windows already fired (counted in eddy_window_late_records_dropped_total)"
                );
            }
            tracing::debug!(operator = %self.operator_name, dropped, total = self.late_records_dropped, "late records dropped");
        }
        Ok(())
    }

    fn on_watermark(&mut self, wm: Timestamp, out: &mut Output<F::Out>) -> Result<()> {
        // A restored watermark may be ahead of the first ones after a restart: never go back.
        self.watermark = self.watermark.max(wm);
        self.fire_timers(TimeDomain::EventTime, self.watermark, out)?;
        if wm == MAX_WATERMARK {
            // The end of input: processing-time windows fire now too, before the task's final
            // checkpoint, rather than being lost (Flink drops them).
            self.fire_timers(TimeDomain::ProcessingTime, Timestamp::MAX, out)?;
        }
        out.emit_watermark(wm);
        Ok(())
    }

    fn on_processing_time(&mut self, now: Timestamp, out: &mut Output<F::Out>) -> Result<()> {
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
        writer.put_operator_state(WATERMARK_STATE, bincode::serialize(&self.watermark)?);
        Ok(())
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(b) = &mut self.backend {
            b.checkpoint_complete(checkpoint_id);
        }
        Ok(())
    }

    /// End of a bounded input. Every window has normally fired on the final `MAX_WATERMARK`;
    /// processing-time windows still open (an input that ended without it) fire now.
    fn finish(&mut self, out: &mut Output<F::Out>) -> Result<()> {
        self.fire_timers(TimeDomain::ProcessingTime, Timestamp::MAX, out)
    }
}
