//! Window operator tests, driven through the `Operator` trait like a task would (open, batches,
//! watermarks, processing time, snapshot) — no threads. Each test is named after the rule of
//! `docs/windows.md` it checks. Test helpers only: nothing here runs in production.

use crate::api::time::{TimestampsAndWatermarksOperator, WatermarkStrategy};
use crate::api::StreamEnv;
use crate::data::{Timestamp, MAX_WATERMARK};
use crate::error::Result;
use crate::keyed::{KeySelector, TimestampFn};
use crate::operator::{Operator, Output, TaskInfo};
use crate::snapshot::{OperatorSnapshot, SnapshotWriter};
use crate::source::{Source, SourceStatus};
use crate::window::function::{
    AggregateWindow, InternalWindowFunction, ProcessWindow, ReduceWindow,
};
use crate::window::*;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A test record: (key, event timestamp ms, value).
type Rec = (String, i64, i64);

fn rec(key: &str, ts: i64, value: i64) -> Rec {
    (key.to_string(), ts, value)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn key_of() -> KeySelector<Rec, String> {
    Arc::new(|r: &Rec| r.0.clone())
}

fn ts_of() -> Option<TimestampFn<Rec>> {
    Some(Arc::new(|r: &Rec| r.1))
}

pub(crate) fn info(subtask: u32, parallelism: u32) -> TaskInfo {
    TaskInfo {
        job_name: "windows".into(),
        job_id: "job".into(),
        operator_uid: "window".into(),
        operator_name: "Window".into(),
        subtask_index: subtask,
        parallelism,
        max_parallelism: 128,
        attempt: 0,
        run_token: "t".into(),
        checkpointing: false,
        state_backend: std::sync::Arc::new(crate::state::HashMapStateBackend),
    }
}

/// `(key, window start, window end, max value)` — what `reduce_with_window` emits in these tests.
type Max = (String, i64, i64, i64);

fn max_with_window() -> impl InternalWindowFunction<String, Rec, Out = Max> + Clone {
    ReduceWindow::new(
        |a: Rec, b: Rec| if b.2 > a.2 { b } else { a },
        |k: &String, w: &TimeWindow, r: Rec| (k.clone(), w.start, w.end, r.2),
        "Reduce",
    )
}

/// `(key, window start, window end, values in arrival order)` — a full-window process function.
type Listing = (String, i64, i64, Vec<i64>);

fn listing() -> impl InternalWindowFunction<String, Rec, Out = Listing> + Clone {
    ProcessWindow::new(
        |k: &String, w: &TimeWindow, xs: Vec<Rec>, out: &mut Vec<Listing>| -> Result<()> {
            out.push((
                k.clone(),
                w.start,
                w.end,
                xs.into_iter().map(|r| r.2).collect(),
            ));
            Ok(())
        },
    )
}

/// Drives one operator the way its task does, collecting everything it emits.
struct Harness<O: Operator> {
    op: O,
    emitted: Vec<O::Out>,
    watermarks: Vec<Timestamp>,
}

impl<O: Operator> Harness<O> {
    fn open(mut op: O, restored: Option<&OperatorSnapshot>) -> Self {
        op.open(&info(0, 1), restored).expect("open");
        Harness {
            op,
            emitted: Vec::new(),
            watermarks: Vec::new(),
        }
    }

    fn collect(&mut self, out: Output<O::Out>) -> Vec<O::Out> {
        self.watermarks.extend(out.watermark);
        self.emitted.extend(out.records.iter().cloned());
        out.records
    }

    fn batch(&mut self, records: Vec<O::In>) -> Vec<O::Out> {
        let mut out = Output::new();
        let mut input = records;
        self.op
            .process_batch(&mut input, &mut out)
            .expect("process_batch");
        assert!(input.is_empty(), "the operator drains its input");
        self.collect(out)
    }

    fn watermark(&mut self, wm: Timestamp) -> Vec<O::Out> {
        let mut out = Output::new();
        self.op.on_watermark(wm, &mut out).expect("on_watermark");
        self.collect(out)
    }

    fn processing_time(&mut self, now: Timestamp) -> Vec<O::Out> {
        let mut out = Output::new();
        self.op
            .on_processing_time(now, &mut out)
            .expect("on_processing_time");
        self.collect(out)
    }

    fn finish(&mut self) -> Vec<O::Out> {
        let mut out = Output::new();
        self.op.finish(&mut out).expect("finish");
        self.collect(out)
    }

    fn snapshot(&mut self) -> OperatorSnapshot {
        let mut w = SnapshotWriter::new();
        self.op.snapshot_state(1, &mut w).expect("snapshot");
        w.into_snapshot()
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn s(k: &str) -> String {
    k.to_string()
}

// --- event time, in order ---

#[test]
fn tumbling_event_time_window_fires_when_the_watermark_passes_its_max_timestamp() {
    let op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(5000)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    assert!(h
        .batch(vec![
            rec("a", 1000, 3),
            rec("b", 2000, 7),
            rec("a", 4999, 9),
            rec("a", 5000, 1)
        ])
        .is_empty());
    // max_timestamp of [0, 5000) is 4999: a watermark of 4998 fires nothing.
    assert!(h.watermark(4998).is_empty());
    assert_eq!(
        sorted(h.watermark(4999)),
        vec![(s("a"), 0, 5000, 9), (s("b"), 0, 5000, 7)]
    );
    assert_eq!(
        h.watermarks,
        vec![4998, 4999],
        "watermarks are forwarded after firing"
    );
    // Fired windows are purged: only [5000, 10000) of "a" is left, with one timer.
    assert_eq!(h.op.keys_with_open_windows(), 1);
    assert_eq!(h.op.pending_timers(), 1);
    assert_eq!(h.watermark(MAX_WATERMARK), vec![(s("a"), 5000, 10000, 1)]);
    assert_eq!(h.op.keys_with_open_windows(), 0);
    assert_eq!(h.op.pending_timers(), 0);
    assert_eq!(h.op.late_records_dropped(), 0);
}

#[test]
fn a_window_fires_exactly_once_without_allowed_lateness() {
    let op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("a", 1, 1)]);
    assert_eq!(h.watermark(20).len(), 1);
    assert!(h.watermark(30).is_empty());
    assert!(h.watermark(MAX_WATERMARK).is_empty());
}

#[test]
fn sliding_event_time_windows_aggregate_each_record_into_size_over_slide_windows() {
    #[derive(Clone)]
    struct Count;
    impl AggregateFunction<Rec> for Count {
        type Acc = u64;
        type Out = u64;
        fn create_accumulator(&self) -> u64 {
            0
        }
        fn add(&self, _: Rec, acc: &mut u64) {
            *acc += 1;
        }
        fn get_result(&self, acc: u64) -> u64 {
            acc
        }
        fn merge(&self, a: u64, b: u64) -> u64 {
            a + b
        }
    }
    let f = AggregateWindow::new(
        Count,
        |k: &String, w: &TimeWindow, n: u64| (k.clone(), w.start, n),
        "Aggregate",
    );
    let op = WindowOperator::new(
        SlidingEventTimeWindows::of(ms(10), ms(5)),
        f,
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![
        rec("a", 0, 0),
        rec("a", 4, 0),
        rec("a", 7, 0),
        rec("a", 12, 0),
    ]);
    // Windows [-5,5): 0,4  [0,10): 0,4,7  [5,15): 7,12  [10,20): 12
    assert_eq!(
        h.watermark(MAX_WATERMARK),
        vec![
            (s("a"), -5, 2),
            (s("a"), 0, 3),
            (s("a"), 5, 2),
            (s("a"), 10, 1)
        ]
    );
}

// --- event time, out of order, through the watermark generator ---

/// Runs records through the bounded-out-of-orderness generator and the window operator in one
/// chain, batch by batch, as a task would.
struct Pipeline<O: Operator<In = Rec>> {
    watermarks: TimestampsAndWatermarksOperator<Rec>,
    window: Harness<O>,
}

impl<O: Operator<In = Rec>> Pipeline<O> {
    fn new(strategy: WatermarkStrategy<Rec>, window: O) -> Self {
        let ts: TimestampFn<Rec> = Arc::new(|r: &Rec| r.1);
        Pipeline {
            watermarks: TimestampsAndWatermarksOperator::new(
                Some(ts),
                strategy.max_out_of_orderness(),
            ),
            window: Harness::open(window, None),
        }
    }

    fn batch(&mut self, records: Vec<Rec>) -> Vec<O::Out> {
        let mut out = Output::new();
        self.watermarks
            .process_batch(&mut records.clone(), &mut out)
            .expect("watermarks");
        let mut emitted = self.window.batch(out.records);
        if let Some(wm) = out.watermark {
            emitted.extend(self.window.watermark(wm));
        }
        emitted
    }
}

#[test]
fn bounded_out_of_orderness_includes_records_within_the_bound_and_drops_those_beyond_it() {
    let strategy = WatermarkStrategy::for_bounded_out_of_orderness(ms(2000));
    let op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(5000)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut p = Pipeline::new(strategy, op);
    assert!(p
        .batch(vec![rec("car", 1000, 50), rec("car", 4000, 60)])
        .is_empty());
    // ts 6500 moves the watermark to 4499: [0, 5000) is still open.
    assert!(p.batch(vec![rec("car", 6500, 70)]).is_empty());
    assert_eq!(p.window.op.current_watermark(), 4499);
    // 2000 ms behind the max: within the bound, it still counts for [0, 5000).
    assert!(p.batch(vec![rec("car", 4500, 99)]).is_empty());
    // ts 7000 → watermark 4999: [0, 5000) fires with the out-of-order record included.
    assert_eq!(
        p.batch(vec![rec("car", 7000, 10)]),
        vec![(s("car"), 0, 5000, 99)]
    );
    // Beyond the bound: its window already fired, so it is dropped and counted.
    assert!(p.batch(vec![rec("car", 4900, 500)]).is_empty());
    assert_eq!(p.window.op.late_records_dropped(), 1);
    assert_eq!(
        p.window.watermark(MAX_WATERMARK),
        vec![(s("car"), 5000, 10000, 70)]
    );
    assert_eq!(p.window.op.late_records_dropped(), 1);
}

#[test]
fn allowed_lateness_refires_the_window_for_each_late_record_then_drops_after_it() {
    let op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        5,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("a", 3, 1)]);
    assert_eq!(h.watermark(9), vec![(s("a"), 0, 10, 1)]);
    // Watermark 9 < max_timestamp 9 + lateness 5: the late record updates and refires.
    assert_eq!(h.batch(vec![rec("a", 4, 8)]), vec![(s("a"), 0, 10, 8)]);
    assert_eq!(h.batch(vec![rec("a", 5, 2)]), vec![(s("a"), 0, 10, 8)]);
    // Cleanup at 14: the state goes, without firing again.
    assert!(h.watermark(14).is_empty());
    assert_eq!(h.op.keys_with_open_windows(), 0);
    assert!(h.batch(vec![rec("a", 6, 100)]).is_empty());
    assert_eq!(h.op.late_records_dropped(), 1);
    assert!(h.watermark(MAX_WATERMARK).is_empty());
}

#[test]
fn a_new_window_within_allowed_lateness_fires_on_insert_and_not_again_on_its_timer() {
    let op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        100,
    );
    let mut h = Harness::open(op, None);
    h.watermark(50);
    assert_eq!(h.batch(vec![rec("b", 12, 4)]), vec![(s("b"), 10, 20, 4)]);
    assert!(h.watermark(60).is_empty());
    assert!(h.watermark(MAX_WATERMARK).is_empty());
    assert_eq!(h.op.keys_with_open_windows(), 0);
}

// --- sessions ---

#[test]
fn two_sessions_bridged_by_a_third_record_merge_into_one() {
    let op = WindowOperator::new(
        EventTimeSessionWindows::with_gap(ms(10)),
        listing(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("u", 0, 1), rec("u", 30, 2)]);
    // Two sessions so far: [0, 10) and [30, 40).
    assert_eq!(h.op.pending_timers(), 2);
    // [15, 25) touches neither: a third session.
    h.batch(vec![rec("u", 15, 3)]);
    assert_eq!(h.op.pending_timers(), 3);
    // [8, 18) bridges [0, 10) and [15, 25) into [0, 25); [22, 32) bridges that and [30, 40).
    h.batch(vec![rec("u", 8, 4), rec("u", 22, 5)]);
    assert_eq!(
        h.op.pending_timers(),
        1,
        "merged-away windows' timers are deleted"
    );
    assert!(h.watermark(38).is_empty());
    assert_eq!(h.watermark(39), vec![(s("u"), 0, 40, vec![1, 3, 4, 2, 5])]);
}

#[test]
fn sessions_further_apart_than_the_gap_stay_separate() {
    let op = WindowOperator::new(
        EventTimeSessionWindows::with_gap(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    // 0 → [0, 10); 11 → [11, 21): a gap of 11 ms > 10 ms without records.
    h.batch(vec![rec("u", 0, 5), rec("u", 11, 6), rec("v", 5, 7)]);
    assert_eq!(
        sorted(h.watermark(MAX_WATERMARK)),
        vec![(s("u"), 0, 10, 5), (s("u"), 11, 21, 6), (s("v"), 5, 15, 7)]
    );
}

#[test]
fn a_late_record_can_not_reopen_a_fired_session() {
    let op = WindowOperator::new(
        EventTimeSessionWindows::with_gap(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("u", 0, 5)]);
    assert_eq!(h.watermark(9), vec![(s("u"), 0, 10, 5)]);
    assert!(h.batch(vec![rec("u", -1, 9)]).is_empty());
    assert_eq!(h.op.late_records_dropped(), 1);
    // A record whose session is not late is accepted.
    h.batch(vec![rec("u", 5, 1)]);
    assert_eq!(h.watermark(MAX_WATERMARK), vec![(s("u"), 5, 15, 1)]);
}

#[test]
fn session_merging_moves_the_timer_to_the_merged_end() {
    let op = WindowOperator::new(
        EventTimeSessionWindows::with_gap(ms(10)),
        max_with_window(),
        key_of(),
        ts_of(),
        0,
    );
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("u", 0, 1)]);
    h.batch(vec![rec("u", 5, 2)]);
    // The session is now [0, 15): the old timer at 9 must not fire it early.
    assert!(h.watermark(9).is_empty());
    assert_eq!(h.watermark(14), vec![(s("u"), 0, 15, 2)]);
}

// --- processing time ---

fn manual_clock(start: Timestamp) -> (Arc<AtomicI64>, operator::ProcessingClock) {
    let now = Arc::new(AtomicI64::new(start));
    let n = now.clone();
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

#[test]
fn processing_time_window_fires_on_processing_time_not_on_watermarks() {
    let (now, clock) = manual_clock(1_000);
    let op = WindowOperator::new(
        TumblingProcessingTimeWindows::of(ms(100)),
        max_with_window(),
        key_of(),
        None,
        0,
    )
    .with_processing_clock(clock);
    let mut h = Harness::open(op, None);
    // Event timestamps are irrelevant: the batch is read at processing time 1000.
    h.batch(vec![rec("a", 0, 4), rec("a", 999_999, 6)]);
    assert_eq!(h.op.next_processing_time_deadline(), Some(1099));
    assert!(h.watermark(MAX_WATERMARK - 1).is_empty());
    assert!(h.processing_time(1098).is_empty());
    now.store(1_099, Ordering::SeqCst);
    h.batch(vec![rec("a", 0, 1)]);
    assert_eq!(h.processing_time(1099), vec![(s("a"), 1000, 1100, 6)]);
    assert_eq!(h.op.next_processing_time_deadline(), None);
    now.store(1_150, Ordering::SeqCst);
    h.batch(vec![rec("b", 0, 2)]);
    // A bounded input's end (its final watermark) fires what is still open rather than losing it.
    assert_eq!(h.watermark(MAX_WATERMARK), vec![(s("b"), 1100, 1200, 2)]);
    h.batch(vec![rec("c", 0, 3)]);
    assert_eq!(h.finish(), vec![(s("c"), 1100, 1200, 3)]);
    assert_eq!(h.op.keys_with_open_windows(), 0);
}

#[test]
fn processing_time_sessions_merge_and_fire_after_the_gap() {
    let (now, clock) = manual_clock(0);
    let op = WindowOperator::new(
        ProcessingTimeSessionWindows::with_gap(ms(50)),
        listing(),
        key_of(),
        None,
        0,
    )
    .with_processing_clock(clock);
    let mut h = Harness::open(op, None);
    h.batch(vec![rec("a", 0, 1)]);
    now.store(40, Ordering::SeqCst);
    h.batch(vec![rec("a", 0, 2)]);
    assert!(h.processing_time(49).is_empty(), "extended to [0, 90)");
    assert_eq!(h.processing_time(89), vec![(s("a"), 0, 90, vec![1, 2])]);
}

// --- configuration errors ---

#[test]
fn an_event_time_window_without_timestamps_fails_to_open_with_a_clear_error() {
    let mut op = WindowOperator::new(
        TumblingEventTimeWindows::of(ms(5)),
        max_with_window(),
        key_of(),
        None,
        0,
    );
    let e = op.open(&info(0, 1), None).unwrap_err();
    assert!(e.message.contains("no timestamps"), "{e}");
}

// --- snapshot and restore ---

/// One step of an input script.
#[derive(Clone)]
enum Step {
    Batch(Vec<Rec>),
    Watermark(Timestamp),
}

fn run_steps<O: Operator<In = Rec>>(h: &mut Harness<O>, steps: &[Step]) {
    for step in steps {
        match step {
            Step::Batch(b) => {
                h.batch(b.clone());
            }
            Step::Watermark(wm) => {
                h.watermark(*wm);
            }
        }
    }
}

/// Runs `steps` uninterrupted, and again with a snapshot after every prefix restored into a
/// fresh operator; every output must equal the uninterrupted one.
fn assert_restore_is_transparent<O>(make: impl Fn() -> O, steps: &[Step])
where
    O: Operator<In = Rec>,
    O::Out: Clone + Ord + std::fmt::Debug,
{
    let mut whole = Harness::open(make(), None);
    run_steps(&mut whole, steps);
    whole.watermark(MAX_WATERMARK);
    let expected = sorted(whole.emitted.clone());
    assert!(!expected.is_empty());
    for cut in 0..=steps.len() {
        let mut first = Harness::open(make(), None);
        run_steps(&mut first, &steps[..cut]);
        let snap = first.snapshot();
        // Round-trip the snapshot's bytes as checkpoint storage would.
        let bytes = bincode::serialize(&snap).expect("encode snapshot");
        let snap: OperatorSnapshot = bincode::deserialize(&bytes).expect("decode snapshot");
        let mut second = Harness::open(make(), Some(&snap));
        run_steps(&mut second, &steps[cut..]);
        second.watermark(MAX_WATERMARK);
        let mut got = first.emitted;
        got.extend(second.emitted);
        assert_eq!(sorted(got), expected, "restored after step {cut}");
    }
}

fn out_of_order_script() -> Vec<Step> {
    vec![
        Step::Batch(vec![rec("a", 1, 5), rec("b", 3, 2), rec("a", 12, 7)]),
        Step::Watermark(5),
        Step::Batch(vec![rec("a", 8, 9), rec("c", 14, 1), rec("b", 21, 4)]),
        Step::Watermark(11),
        // Late after watermark 11: must stay dropped after a restore too.
        Step::Batch(vec![rec("a", 2, 100), rec("b", 19, 3)]),
        Step::Watermark(25),
        Step::Batch(vec![rec("a", 31, 1), rec("c", 26, 6)]),
    ]
}

#[test]
fn snapshot_and_restore_of_tumbling_windows_gives_the_uninterrupted_output() {
    assert_restore_is_transparent(
        || {
            WindowOperator::new(
                TumblingEventTimeWindows::of(ms(10)),
                max_with_window(),
                key_of(),
                ts_of(),
                0,
            )
        },
        &out_of_order_script(),
    );
}

#[test]
fn snapshot_and_restore_of_sliding_windows_with_allowed_lateness_gives_the_uninterrupted_output() {
    assert_restore_is_transparent(
        || {
            WindowOperator::new(
                SlidingEventTimeWindows::of(ms(10), ms(5)),
                max_with_window(),
                key_of(),
                ts_of(),
                3,
            )
        },
        &out_of_order_script(),
    );
}

#[test]
fn snapshot_and_restore_of_merging_sessions_gives_the_uninterrupted_output() {
    assert_restore_is_transparent(
        || {
            WindowOperator::new(
                EventTimeSessionWindows::with_gap(ms(4)),
                listing(),
                key_of(),
                ts_of(),
                0,
            )
        },
        &out_of_order_script(),
    );
}

#[test]
fn restored_timers_fire_windows_opened_before_the_snapshot() {
    let make = || {
        WindowOperator::new(
            TumblingEventTimeWindows::of(ms(10)),
            max_with_window(),
            key_of(),
            ts_of(),
            0,
        )
    };
    let mut before = Harness::open(make(), None);
    before.batch(vec![rec("a", 1, 5)]);
    before.watermark(3);
    let snap = before.snapshot();
    assert!(
        snap.keyed_state
            .iter()
            .any(|(kg, _)| *kg >= crate::keyed::TIMER_GROUP_BASE),
        "timers are in the snapshot"
    );
    let mut after = Harness::open(make(), Some(&snap));
    assert_eq!(after.op.pending_timers(), 1);
    assert_eq!(after.op.current_watermark(), 3, "the watermark is restored");
    assert_eq!(after.watermark(9), vec![(s("a"), 0, 10, 5)]);
}

#[test]
fn window_state_redistributes_by_key_group_on_rescale() {
    let make = || {
        WindowOperator::new(
            TumblingEventTimeWindows::of(ms(10)),
            max_with_window(),
            key_of(),
            ts_of(),
            0,
        )
    };
    let mut whole = Harness::open(make(), None);
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    whole.batch(
        keys.iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), 1, i as i64))
            .collect(),
    );
    let snap = whole.snapshot();
    let mut fired = Vec::new();
    for subtask in 0..3 {
        let mut op = make();
        op.open(&info(subtask, 3), Some(&snap)).expect("open part");
        let mut out = Output::new();
        op.on_watermark(MAX_WATERMARK, &mut out).expect("fire");
        fired.extend(out.records);
    }
    let fired_keys: Vec<String> = sorted(fired.into_iter().map(|m| m.0).collect());
    assert_eq!(
        fired_keys,
        sorted(keys),
        "every key's window fires in exactly one subtask"
    );
}

// --- API ---

/// A bounded source of fixed records (graph-building tests only; never polled here).
pub(crate) struct VecSource<T>(Vec<T>);

impl<T> VecSource<T> {
    pub(crate) fn new(records: Vec<T>) -> Self {
        VecSource(records)
    }
}

impl<T: crate::data::Data> Source for VecSource<T> {
    type Out = T;
    fn poll_next(&mut self, out: &mut Output<T>, _max: usize) -> Result<SourceStatus> {
        out.records.append(&mut self.0);
        Ok(SourceStatus::Finished)
    }
}

#[test]
fn window_on_a_stream_without_timestamps_is_a_graph_build_error() {
    let env = StreamEnv::new(eddy_core::config::Config::default());
    let keyed = env
        .add_source("recs", || VecSource::new(vec![rec("a", 1, 1)]))
        .key_by(|r: &Rec| r.0.clone());
    let e = keyed
        .window(TumblingEventTimeWindows::of(ms(5000)))
        .err()
        .expect("must fail");
    assert!(e.message.contains("no event-time timestamps"), "{e}");
    assert!(e.message.contains("TumblingEventTimeWindows(5000)"), "{e}");
    // Processing time needs no timestamps; invalid sizes are rejected.
    assert!(keyed
        .window(TumblingProcessingTimeWindows::of(ms(5000)))
        .is_ok());
    assert!(keyed
        .window(TumblingProcessingTimeWindows::of(Duration::ZERO))
        .is_err());
}

#[test]
fn windowed_streams_add_a_flink_named_window_operator() -> Result<()> {
    let env = StreamEnv::new(eddy_core::config::Config::default());
    let speeds = env
        .add_source("speeds", || VecSource::new(vec![rec("car", 1, 90)]))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(ms(1000))
                .with_timestamp_assigner(|r: &Rec| r.1),
        );
    let top = speeds
        .key_by(|r: &Rec| r.0.clone())
        .window(TumblingEventTimeWindows::of(ms(5000)))?
        .reduce_with_window(
            |a: Rec, b: Rec| if b.2 > a.2 { b } else { a },
            |car: &String, w: &TimeWindow, r: Rec| (car.clone(), w.end, r.2),
        );
    let plain = speeds
        .key_by(|r: &Rec| r.0.clone())
        .window(SlidingEventTimeWindows::of(ms(10), ms(5)))?
        .reduce(|a, _| a);
    assert!(top.timestamps.is_none() && plain.timestamps.is_none());
    let graph = env.into_graph();
    let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "speeds",
            "Timestamps/Watermarks",
            "Window(TumblingEventTimeWindows(5000), EventTimeTrigger, Reduce, ProcessWindowFunction)",
            "Window(SlidingEventTimeWindows(10, 5), EventTimeTrigger, Reduce)",
        ]
    );
    let hash_edges = graph
        .edges
        .iter()
        .filter(|e| e.kind == crate::graph::PartitionKind::Hash)
        .count();
    assert_eq!(hash_edges, 2, "windows consume a key-partitioned stream");
    Ok(())
}

#[test]
fn top_speed_per_car_with_window_end_reads_like_the_docs() -> Result<()> {
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct CarEvent {
        car_id: u32,
        speed: f64,
        timestamp_ms: i64,
    }
    let env = StreamEnv::new(eddy_core::config::Config::default());
    let events = env
        .add_source("cars", || VecSource::new(Vec::<CarEvent>::new()))
        .assign_timestamps_and_watermarks(
            WatermarkStrategy::for_bounded_out_of_orderness(Duration::from_secs(5))
                .with_timestamp_assigner(|e: &CarEvent| e.timestamp_ms),
        );
    let top_speeds: crate::api::DataStream<(u32, i64, f64)> = events
        .key_by(|e: &CarEvent| e.car_id)
        .window(TumblingEventTimeWindows::of(Duration::from_secs(10)))?
        .reduce_with_window(
            |a, b| if b.speed > a.speed { b } else { a },
            |car, w, e| (*car, w.end, e.speed),
        );
    assert_eq!(top_speeds.env().clone().into_graph().nodes.len(), 3);
    Ok(())
}
