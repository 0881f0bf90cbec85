//! Window assigners (Flink's names): which time windows a record belongs to.
//!
//! Pure arithmetic on timestamps: tumbling, sliding and session windows, each in event time and
//! processing time. An assigner never looks at state, clocks or records — the operator hands it
//! the timestamp (the record's event time, or the processing time of the batch) and a reusable
//! buffer, so assigning costs no allocation. Invalid sizes are reported by `validate`, called
//! when the job graph is built; assigning never panics, whatever the timestamp.

use crate::data::Timestamp;
use crate::error::{JobError, Result};
use crate::state::TimeDomain;
use std::time::Duration;

/// A time window: the half-open interval `[start, end)` in milliseconds.
///
/// Ordered by `(start, end)`, so a key's windows iterate in time order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TimeWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        TimeWindow { start, end }
    }

    /// The largest timestamp inside the window (`end - 1`): its event-time timer fires when the
    /// watermark reaches it.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end.saturating_sub(1)
    }

    /// Whether the window contains `ts` (`start <= ts < end`).
    pub fn contains(&self, ts: Timestamp) -> bool {
        self.start <= ts && ts < self.end
    }

    /// Whether two windows overlap or touch (Flink's `intersects`: session windows that touch
    /// merge).
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    /// The smallest window covering both.
    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// The start of the window of `size` (shifted by `offset`) that contains `ts`.
///
/// Unlike Flink's `timestamp - (timestamp - offset + size) % size`, this uses the Euclidean
/// remainder, so it is also right for timestamps below `-size` (Flink's formula puts `-6` in
/// `[-5, 0)` for size 5). Computed in 128 bits, so no timestamp overflows.
pub fn window_start_with_offset(ts: Timestamp, offset: i64, size: i64) -> Timestamp {
    let size = i128::from(size.max(1));
    let rem = (i128::from(ts) - i128::from(offset)).rem_euclid(size);
    // 0 <= rem < size, so the result lies in [ts - size, ts]: it fits unless ts is near i64::MIN.
    i64::try_from(i128::from(ts) - rem).unwrap_or(Timestamp::MIN)
}

/// Decides which windows a timestamp belongs to.
///
/// Implementations are cloned into every subtask; they must be cheap to clone and hold no
/// per-subtask state.
pub trait WindowAssigner: Clone + Send + Sync + 'static {
    /// Appends the windows containing `ts` to `out` (the caller clears it). For event-time
    /// assigners `ts` is the record's timestamp, for processing-time ones the current time.
    fn assign_windows(&self, ts: Timestamp, out: &mut Vec<TimeWindow>);

    /// Which clock drives the windows: event time (watermarks) or processing time.
    fn time_domain(&self) -> TimeDomain;

    /// Whether windows merge when they intersect (session windows).
    fn is_merging(&self) -> bool {
        false
    }

    /// Checks sizes and offsets; called when the job graph is built.
    fn validate(&self) -> Result<()>;

    /// Flink's display name, e.g. `TumblingEventTimeWindows(5000)`.
    fn name(&self) -> String;

    /// The name of the default trigger of this assigner.
    fn trigger_name(&self) -> &'static str {
        match self.time_domain() {
            TimeDomain::EventTime => "EventTimeTrigger",
            TimeDomain::ProcessingTime => "ProcessingTimeTrigger",
        }
    }
}

/// A duration in whole milliseconds; absurdly long ones saturate.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn check_positive(what: &str, assigner: &str, d: Duration) -> Result<()> {
    if millis(d) <= 0 {
        return Err(JobError::new(format!(
            "{assigner}: the window {what} must be at least 1 ms, got {d:?}"
        )));
    }
    Ok(())
}

fn check_offset(assigner: &str, offset: i64, bound_name: &str, bound: i64) -> Result<()> {
    if offset.unsigned_abs() >= bound.unsigned_abs() {
        return Err(JobError::new(format!(
            "{assigner}: the window offset must satisfy |offset| < {bound_name} ({bound} ms), got {offset} ms"
        )));
    }
    Ok(())
}

// --- tumbling ---

/// Fixed-size, non-overlapping windows `[k * size + offset, (k + 1) * size + offset)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tumbling {
    size: Duration,
    offset_ms: i64,
}

impl Tumbling {
    fn assign(&self, ts: Timestamp, out: &mut Vec<TimeWindow>) {
        let size = millis(self.size).max(1);
        let start = window_start_with_offset(ts, self.offset_ms, size);
        out.push(TimeWindow::new(start, start.saturating_add(size)));
    }

    fn validate(&self, name: &str) -> Result<()> {
        check_positive("size", name, self.size)?;
        check_offset(name, self.offset_ms, "size", millis(self.size))
    }
}

// --- sliding ---

/// Windows of `size` starting every `slide`; a timestamp is in `ceil(size / slide)` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sliding {
    size: Duration,
    slide: Duration,
    offset_ms: i64,
}

impl Sliding {
    fn assign(&self, ts: Timestamp, out: &mut Vec<TimeWindow>) {
        let (size, slide) = (millis(self.size).max(1), millis(self.slide).max(1));
        let last_start = window_start_with_offset(ts, self.offset_ms, slide);
        // Newest window first, as Flink lists them; `start > ts - size` keeps those containing ts.
        let mut start = last_start;
        while start > ts.saturating_sub(size) {
            out.push(TimeWindow::new(start, start.saturating_add(size)));
            match start.checked_sub(slide) {
                Some(s) => start = s,
                None => break,
            }
        }
    }

    fn validate(&self, name: &str) -> Result<()> {
        check_positive("size", name, self.size)?;
        check_positive("slide", name, self.slide)?;
        check_offset(name, self.offset_ms, "slide", millis(self.slide))
    }
}

// --- session ---

/// One window `[ts, ts + gap)` per record; intersecting windows merge into sessions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Session {
    gap: Duration,
}

impl Session {
    fn assign(&self, ts: Timestamp, out: &mut Vec<TimeWindow>) {
        out.push(TimeWindow::new(
            ts,
            ts.saturating_add(millis(self.gap).max(1)),
        ));
    }

    fn validate(&self, name: &str) -> Result<()> {
        check_positive("gap", name, self.gap)
    }
}

/// Defines the public assigner types: each wraps a shape and fixes its time domain.
macro_rules! assigner {
    ($(#[$doc:meta])* $name:ident, $shape:ident, $domain:expr, merging = $merging:expr, $display:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name($shape);

        impl WindowAssigner for $name {
            #[inline]
            fn assign_windows(&self, ts: Timestamp, out: &mut Vec<TimeWindow>) {
                self.0.assign(ts, out)
            }
            fn time_domain(&self) -> TimeDomain {
                $domain
            }
            fn is_merging(&self) -> bool {
                $merging
            }
            fn validate(&self) -> Result<()> {
                self.0.validate(stringify!($name))
            }
            fn name(&self) -> String {
                let display: fn(&$shape) -> String = $display;
                format!("{}({})", stringify!($name), display(&self.0))
            }
        }
    };
}

fn tumbling_display(t: &Tumbling) -> String {
    match t.offset_ms {
        0 => format!("{}", millis(t.size)),
        o => format!("{}, offset {o}", millis(t.size)),
    }
}

fn sliding_display(s: &Sliding) -> String {
    match s.offset_ms {
        0 => format!("{}, {}", millis(s.size), millis(s.slide)),
        o => format!("{}, {}, offset {o}", millis(s.size), millis(s.slide)),
    }
}

fn session_display(s: &Session) -> String {
    format!("{}", millis(s.gap))
}

assigner!(
    /// Tumbling windows in event time: fire when the watermark passes `end - 1`.
    TumblingEventTimeWindows, Tumbling, TimeDomain::EventTime, merging = false, tumbling_display
);
assigner!(
    /// Tumbling windows in processing time: fire when the wall clock passes `end - 1`.
    TumblingProcessingTimeWindows, Tumbling, TimeDomain::ProcessingTime, merging = false, tumbling_display
);
assigner!(
    /// Sliding windows in event time.
    SlidingEventTimeWindows, Sliding, TimeDomain::EventTime, merging = false, sliding_display
);
assigner!(
    /// Sliding windows in processing time.
    SlidingProcessingTimeWindows, Sliding, TimeDomain::ProcessingTime, merging = false, sliding_display
);
assigner!(
    /// Session windows in event time: a key's session ends after `gap` without records.
    EventTimeSessionWindows, Session, TimeDomain::EventTime, merging = true, session_display
);
assigner!(
    /// Session windows in processing time.
    ProcessingTimeSessionWindows, Session, TimeDomain::ProcessingTime, merging = true, session_display
);

macro_rules! tumbling_ctors {
    ($name:ident) => {
        impl $name {
            /// Windows of `size`, aligned to the epoch.
            pub fn of(size: Duration) -> Self {
                $name(Tumbling { size, offset_ms: 0 })
            }
            /// Shifts window starts by `offset_ms` (may be negative, e.g. `-8 * 3_600_000` for
            /// daily windows in UTC+8). Must satisfy `|offset| < size`.
            pub fn with_offset(self, offset_ms: i64) -> Self {
                $name(Tumbling {
                    offset_ms,
                    ..self.0
                })
            }
            pub fn size(&self) -> Duration {
                self.0.size
            }
        }
    };
}
tumbling_ctors!(TumblingEventTimeWindows);
tumbling_ctors!(TumblingProcessingTimeWindows);

macro_rules! sliding_ctors {
    ($name:ident) => {
        impl $name {
            /// Windows of `size` starting every `slide`, aligned to the epoch.
            pub fn of(size: Duration, slide: Duration) -> Self {
                $name(Sliding {
                    size,
                    slide,
                    offset_ms: 0,
                })
            }
            /// Shifts window starts by `offset_ms` (may be negative). Must satisfy
            /// `|offset| < slide`.
            pub fn with_offset(self, offset_ms: i64) -> Self {
                $name(Sliding {
                    offset_ms,
                    ..self.0
                })
            }
            pub fn size(&self) -> Duration {
                self.0.size
            }
            pub fn slide(&self) -> Duration {
                self.0.slide
            }
        }
    };
}
sliding_ctors!(SlidingEventTimeWindows);
sliding_ctors!(SlidingProcessingTimeWindows);

macro_rules! session_ctors {
    ($name:ident) => {
        impl $name {
            /// Sessions that end after `gap` without records of the key.
            pub fn with_gap(gap: Duration) -> Self {
                $name(Session { gap })
            }
            pub fn gap(&self) -> Duration {
                self.0.gap
            }
        }
    };
}
session_ctors!(EventTimeSessionWindows);
session_ctors!(ProcessingTimeSessionWindows);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn assign(a: &impl WindowAssigner, ts: Timestamp) -> Vec<TimeWindow> {
        let mut out = Vec::new();
        a.assign_windows(ts, &mut out);
        out
    }

    fn w(start: i64, end: i64) -> TimeWindow {
        TimeWindow::new(start, end)
    }

    #[test]
    fn tumbling_windows_are_half_open_and_aligned_to_the_epoch() {
        let a = TumblingEventTimeWindows::of(ms(5000));
        assert_eq!(assign(&a, 0), vec![w(0, 5000)]);
        assert_eq!(assign(&a, 4999), vec![w(0, 5000)]);
        assert_eq!(assign(&a, 5000), vec![w(5000, 10000)]);
        assert_eq!(assign(&a, 12_345), vec![w(10_000, 15_000)]);
        assert_eq!(w(0, 5000).max_timestamp(), 4999);
    }

    #[test]
    fn tumbling_windows_handle_negative_timestamps() {
        let a = TumblingEventTimeWindows::of(ms(5));
        assert_eq!(assign(&a, -1), vec![w(-5, 0)]);
        assert_eq!(assign(&a, -5), vec![w(-5, 0)]);
        // Flink's formula gets this one wrong ([-5, 0)).
        assert_eq!(assign(&a, -6), vec![w(-10, -5)]);
        assert_eq!(assign(&a, -11), vec![w(-15, -10)]);
    }

    #[test]
    fn tumbling_windows_shift_by_their_offset() {
        let a = TumblingEventTimeWindows::of(ms(10)).with_offset(3);
        assert_eq!(assign(&a, 3), vec![w(3, 13)]);
        assert_eq!(assign(&a, 2), vec![w(-7, 3)]);
        assert_eq!(assign(&a, 12), vec![w(3, 13)]);
        let neg = TumblingEventTimeWindows::of(ms(10)).with_offset(-3);
        assert_eq!(assign(&neg, 0), vec![w(-3, 7)]);
        assert_eq!(assign(&neg, 7), vec![w(7, 17)]);
        assert_eq!(assign(&neg, -4), vec![w(-13, -3)]);
    }

    #[test]
    fn every_timestamp_lies_in_its_tumbling_window() {
        let a = TumblingProcessingTimeWindows::of(ms(7)).with_offset(-2);
        for ts in -100..100 {
            let ws = assign(&a, ts);
            assert_eq!(ws.len(), 1);
            assert!(ws[0].contains(ts), "{ts} not in {:?}", ws[0]);
            assert_eq!(ws[0].end - ws[0].start, 7);
            assert_eq!((ws[0].start + 2).rem_euclid(7), 0);
        }
    }

    #[test]
    fn sliding_windows_give_each_timestamp_size_over_slide_windows() {
        let a = SlidingEventTimeWindows::of(ms(10), ms(5));
        assert_eq!(assign(&a, 0), vec![w(0, 10), w(-5, 5)]);
        assert_eq!(assign(&a, 7), vec![w(5, 15), w(0, 10)]);
        assert_eq!(assign(&a, 10), vec![w(10, 20), w(5, 15)]);
        let b = SlidingEventTimeWindows::of(ms(3000), ms(1000));
        for ts in [-2500, -1, 0, 1, 999, 1000, 123_456] {
            let ws = assign(&b, ts);
            assert_eq!(ws.len(), 3, "ts {ts}: {ws:?}");
            assert!(ws.iter().all(|x| x.contains(ts)
                && x.end - x.start == 3000
                && x.start.rem_euclid(1000) == 0));
        }
    }

    #[test]
    fn sliding_windows_with_a_slide_not_dividing_the_size_overlap_ceil_times() {
        let a = SlidingEventTimeWindows::of(ms(10), ms(4));
        let mut counts = std::collections::BTreeSet::new();
        for ts in -50..50 {
            let ws = assign(&a, ts);
            assert!(ws.iter().all(|x| x.contains(ts)), "{ts}: {ws:?}");
            // Every window starting at a multiple of 4 within (ts - 10, ts] is listed.
            let expected = (ts - 9..=ts).filter(|s| s.rem_euclid(4) == 0).count();
            assert_eq!(ws.len(), expected, "{ts}: {ws:?}");
            counts.insert(ws.len());
        }
        assert_eq!(counts, [2, 3].into_iter().collect());
    }

    #[test]
    fn sliding_windows_respect_the_offset_and_negative_timestamps() {
        let a = SlidingProcessingTimeWindows::of(ms(6), ms(2)).with_offset(1);
        assert_eq!(assign(&a, -4), vec![w(-5, 1), w(-7, -1), w(-9, -3)]);
        assert_eq!(assign(&a, 1), vec![w(1, 7), w(-1, 5), w(-3, 3)]);
    }

    #[test]
    fn session_assigners_give_one_gap_long_window_and_merge() {
        let a = EventTimeSessionWindows::with_gap(ms(30));
        assert_eq!(assign(&a, 100), vec![w(100, 130)]);
        assert!(a.is_merging());
        assert!(!TumblingEventTimeWindows::of(ms(1)).is_merging());
        assert!(
            w(0, 10).intersects(&w(10, 20)),
            "touching sessions merge, as in Flink"
        );
        assert!(!w(0, 10).intersects(&w(11, 20)));
        assert_eq!(w(0, 10).cover(&w(5, 30)), w(0, 30));
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let t = TumblingEventTimeWindows::of(ms(1000));
        let s = SlidingEventTimeWindows::of(ms(1000), ms(300));
        let g = EventTimeSessionWindows::with_gap(ms(1000));
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX] {
            assert!(!assign(&t, ts).is_empty());
            assert!(assign(&s, ts).len() <= 4);
            assert!(!assign(&g, ts).is_empty());
        }
    }

    #[test]
    fn invalid_sizes_and_offsets_are_rejected_with_the_value() {
        let e = TumblingEventTimeWindows::of(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.message.contains("size must be at least 1 ms"), "{e}");
        let e = TumblingEventTimeWindows::of(ms(10))
            .with_offset(-10)
            .validate()
            .unwrap_err();
        assert!(e.message.contains("-10 ms"), "{e}");
        assert!(
            SlidingEventTimeWindows::of(ms(10), Duration::from_micros(10))
                .validate()
                .is_err()
        );
        assert!(SlidingEventTimeWindows::of(ms(10), ms(5))
            .with_offset(5)
            .validate()
            .is_err());
        assert!(EventTimeSessionWindows::with_gap(Duration::ZERO)
            .validate()
            .is_err());
        assert!(SlidingProcessingTimeWindows::of(ms(10), ms(5))
            .with_offset(4)
            .validate()
            .is_ok());
    }

    #[test]
    fn names_follow_flink() {
        assert_eq!(
            TumblingEventTimeWindows::of(ms(5000)).name(),
            "TumblingEventTimeWindows(5000)"
        );
        assert_eq!(
            SlidingProcessingTimeWindows::of(ms(10), ms(5)).name(),
            "SlidingProcessingTimeWindows(10, 5)"
        );
        assert_eq!(
            EventTimeSessionWindows::with_gap(ms(30)).name(),
            "EventTimeSessionWindows(30)"
        );
        assert_eq!(
            TumblingProcessingTimeWindows::of(ms(1)).trigger_name(),
            "ProcessingTimeTrigger"
        );
    }
}
