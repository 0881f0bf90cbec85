//! Per-key timers in event time and processing time.
//!
//! A timer is `(timestamp, key)`; registering the same pair twice keeps one. Event-time timers
//! fire when the watermark passes their timestamp (`timestamp <= watermark`), processing-time
//! timers when the wall clock does. Timers are keyed state: they are snapshotted per key group.

use crate::data::{Key, Timestamp};
use crate::error::Result;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

/// The (event, processing) timers of one key group, borrowed for a snapshot.
type TimerGroup<'a, K> = (Vec<&'a (Timestamp, K)>, Vec<&'a (Timestamp, K)>);

pub struct TimerService<K> {
    event: BTreeSet<(Timestamp, K)>,
    processing: BTreeSet<(Timestamp, K)>,
}

impl<K: Key> Default for TimerService<K> {
    fn default() -> Self {
        TimerService {
            event: BTreeSet::new(),
            processing: BTreeSet::new(),
        }
    }
}

impl<K: Key> TimerService<K> {
    pub fn register(&mut self, domain: TimeDomain, ts: Timestamp, key: &K) {
        let set = self.set(domain);
        if !set.contains(&(ts, key.clone())) {
            set.insert((ts, key.clone()));
        }
    }

    pub fn delete(&mut self, domain: TimeDomain, ts: Timestamp, key: &K) {
        self.set(domain).remove(&(ts, key.clone()));
    }

    fn set(&mut self, domain: TimeDomain) -> &mut BTreeSet<(Timestamp, K)> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }

    /// Removes and returns the earliest timer due at `time` (`timestamp <= time`).
    pub fn pop_due(&mut self, domain: TimeDomain, time: Timestamp) -> Option<(Timestamp, K)> {
        let set = self.set(domain);
        match set.first() {
            Some((ts, _)) if *ts <= time => set.pop_first(),
            _ => None,
        }
    }

    pub fn next_processing_time(&self) -> Option<Timestamp> {
        self.processing.first().map(|(t, _)| *t)
    }

    pub fn len(&self) -> usize {
        self.event.len() + self.processing.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Timers grouped by key group: `(key group, bincode of (event, processing) timers)`.
    pub fn snapshot(&self, max_parallelism: u32) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut groups: std::collections::BTreeMap<u32, TimerGroup<'_, K>> = Default::default();
        for t in &self.event {
            groups
                .entry(eddy_core::keygroup::key_group_of(&t.1, max_parallelism))
                .or_default()
                .0
                .push(t);
        }
        for t in &self.processing {
            groups
                .entry(eddy_core::keygroup::key_group_of(&t.1, max_parallelism))
                .or_default()
                .1
                .push(t);
        }
        groups
            .into_iter()
            .map(|(kg, g)| Ok((kg, bincode::serialize(&g)?)))
            .collect()
    }

    /// Restores the timers of the key groups in `range` from a snapshot.
    pub fn restore(
        &mut self,
        groups: &[(u32, Vec<u8>)],
        range: eddy_core::KeyGroupRange,
    ) -> Result<()> {
        for (kg, bytes) in groups {
            if range.contains(*kg) {
                type Owned<K> = (Vec<(Timestamp, K)>, Vec<(Timestamp, K)>);
                let (ev, pt): Owned<K> = bincode::deserialize(bytes)?;
                self.event.extend(ev);
                self.processing.extend(pt);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_timers_fire_in_order_once_the_watermark_passes() {
        let mut t = TimerService::<u32>::default();
        t.register(TimeDomain::EventTime, 20, &1);
        t.register(TimeDomain::EventTime, 10, &2);
        t.register(TimeDomain::EventTime, 10, &2);
        assert_eq!(t.pop_due(TimeDomain::EventTime, 9), None);
        assert_eq!(t.pop_due(TimeDomain::EventTime, 15), Some((10, 2)));
        assert_eq!(t.pop_due(TimeDomain::EventTime, 15), None);
        assert_eq!(t.pop_due(TimeDomain::EventTime, 20), Some((20, 1)));
        assert!(t.is_empty());
    }

    #[test]
    fn timers_survive_snapshot_and_restore() {
        let mut t = TimerService::<u64>::default();
        for k in 0..50u64 {
            t.register(TimeDomain::EventTime, k as i64, &k);
            t.register(TimeDomain::ProcessingTime, 100 + k as i64, &k);
        }
        let snap = t.snapshot(128).unwrap();
        let mut r = TimerService::<u64>::default();
        r.restore(&snap, eddy_core::KeyGroupRange { start: 0, end: 128 })
            .unwrap();
        assert_eq!(r.len(), 100);
        assert_eq!(r.next_processing_time(), Some(100));
    }
}
