//! Tests of the generators: exactly-once coverage across subtasks, exact continuation after a
//! restore (also rescaled), determinism, and rate limiting.

use super::cars::{CAR_EPOCH_MS, CAR_MAX_SPEED, CAR_SPEED_STEP, CAR_STEP_MS};
use super::*;
use crate::testing::{drain, poll, snapshot_source, task_info, union};
use eddy_runtime::data::now_millis;
use eddy_runtime::{Output, Source, SourceStatus};
use std::collections::BTreeMap;

// ---------------------------------------------------------------- sequence

fn all_pairs(keys: u64, per_key: u64) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = (0..keys)
        .flat_map(|k| (1..=per_key).map(move |s| (k, s)))
        .collect();
    v.sort_unstable();
    v
}

/// Every key's seqs appear in increasing order within one subtask's output.
fn assert_increasing_per_key(records: &[(u64, u64)]) {
    let mut last = BTreeMap::new();
    for &(k, s) in records {
        let prev = last.insert(k, s).unwrap_or(0);
        assert_eq!(s, prev + 1, "key {k}: seq {s} after {prev}");
    }
}

#[test]
fn sequence_emits_every_key_and_seq_exactly_once_across_subtasks() {
    for p in 1..=4u32 {
        let mut all = Vec::new();
        for i in 0..p {
            let mut src = SequenceSource::new(10, 7, 0.0);
            src.open(&task_info(i, p), None).unwrap();
            let out = drain(&mut src, 3);
            assert!(
                out.iter().all(|(k, _)| k % p as u64 == i as u64),
                "subtask {i} emitted a key it does not own"
            );
            assert_increasing_per_key(&out);
            all.extend(out);
        }
        all.sort_unstable();
        assert_eq!(all, all_pairs(10, 7), "p={p}");
    }
}

#[test]
fn sequence_interleaves_keys_seq_major() {
    let mut src = SequenceSource::new(4, 3, 0.0);
    src.open(&task_info(1, 2), None).unwrap();
    assert_eq!(
        drain(&mut src, 100),
        vec![(1, 1), (3, 1), (1, 2), (3, 2), (1, 3), (3, 3)]
    );
}

#[test]
fn sequence_subtask_without_keys_finishes_at_once() {
    let mut src = SequenceSource::new(2, 5, 0.0);
    src.open(&task_info(3, 4), None).unwrap();
    assert_eq!(poll(&mut src, 10), (vec![], SourceStatus::Finished));
}

#[test]
fn sequence_restore_continues_exactly_after_the_last_record_before_the_barrier() {
    let (keys, per_key) = (7, 20);
    for p in [1u32, 3] {
        for cut in [1usize, 5, 13, 40] {
            let mut all = Vec::new();
            for i in 0..p {
                let mut src = SequenceSource::new(keys, per_key, 0.0);
                src.open(&task_info(i, p), None).unwrap();
                let (first, _) = poll(&mut src, cut);
                let snap = snapshot_source(&mut src, 1);
                let _lost = poll(&mut src, 9); // after the barrier, lost with the failed run
                let mut again = SequenceSource::new(keys, per_key, 0.0);
                again.open(&task_info(i, p), Some(&snap)).unwrap();
                let mut subtask_out = first;
                subtask_out.extend(drain(&mut again, 4));
                assert_increasing_per_key(&subtask_out);
                all.extend(subtask_out);
            }
            all.sort_unstable();
            assert_eq!(all, all_pairs(keys, per_key), "p={p} cut={cut}");
        }
    }
}

#[test]
fn sequence_restore_at_another_parallelism_is_still_exactly_once() {
    let (keys, per_key) = (11, 9);
    for (old_p, new_p) in [(3u32, 2u32), (2, 5), (4, 1), (1, 3)] {
        let mut all = Vec::new();
        let mut snaps = Vec::new();
        for i in 0..old_p {
            let mut src = SequenceSource::new(keys, per_key, 0.0);
            src.open(&task_info(i, old_p), None).unwrap();
            // Subtasks progressed unevenly before the barrier.
            all.extend(poll(&mut src, 3 + 7 * i as usize).0);
            snaps.push(snapshot_source(&mut src, 4));
        }
        let restored = union(&snaps);
        let mut snaps2 = Vec::new();
        for i in 0..new_p {
            let mut src = SequenceSource::new(keys, per_key, 0.0);
            src.open(&task_info(i, new_p), Some(&restored)).unwrap();
            all.extend(poll(&mut src, 5).0);
            snaps2.push(snapshot_source(&mut src, 5));
        }
        // And once more, back to the old parallelism, from the rescaled state.
        let restored2 = union(&snaps2);
        for i in 0..old_p {
            let mut src = SequenceSource::new(keys, per_key, 0.0);
            src.open(&task_info(i, old_p), Some(&restored2)).unwrap();
            all.extend(drain(&mut src, 6));
        }
        all.sort_unstable();
        assert_eq!(
            all,
            all_pairs(keys, per_key),
            "{old_p} -> {new_p} -> {old_p}"
        );
    }
}

#[test]
fn sequence_refuses_a_restore_with_another_key_count() {
    let mut src = SequenceSource::new(5, 5, 0.0);
    src.open(&task_info(0, 1), None).unwrap();
    let snap = snapshot_source(&mut src, 1);
    let mut other = SequenceSource::new(6, 5, 0.0);
    let err = other
        .open(&task_info(0, 1), Some(&snap))
        .unwrap_err()
        .message;
    assert!(err.contains("5 keys") && err.contains('6'), "{err}");
}

#[test]
fn sequence_rate_limit_returns_idle_until_instead_of_sleeping() {
    // 10 records/s for the job at p = 2: 5/s for this subtask.
    let mut src = SequenceSource::new(100, 100, 10.0);
    src.open(&task_info(0, 2), None).unwrap();
    let before = now_millis();
    let (first, status) = poll(&mut src, 1000);
    assert_eq!(first.len(), 1, "one record is due at once");
    assert_eq!(status, SourceStatus::More);
    let (second, status) = poll(&mut src, 1000);
    assert!(second.is_empty());
    match status {
        SourceStatus::IdleUntil(t) => {
            assert!(
                t > before && t <= before + 250,
                "next record due in ~200 ms, got {}",
                t - before
            )
        }
        other => panic!("expected IdleUntil, got {other:?}"),
    }
    assert!(now_millis() - before < 100, "poll must not sleep");
}

#[test]
fn throttle_paces_and_caps_the_backlog() {
    use crate::throttle::Throttle;
    let mut t = Throttle::new(100.0); // one per 10 ms
    assert_eq!(t.allowance(1_000, 50), Ok(1));
    t.record(1);
    assert_eq!(t.allowance(1_005, 50), Err(1_010));
    assert_eq!(t.allowance(1_050, 50), Ok(5));
    t.record(5);
    // Ten seconds of back-pressure do not turn into ten seconds' worth of burst.
    assert_eq!(t.allowance(11_000, 10_000), Ok(100));
    assert_eq!(Throttle::new(0.0).allowance(0, 77), Ok(77));
}

// ---------------------------------------------------------------- cars

fn run_cars(src: &CarSource, p: u32, max: usize) -> Vec<CarEvent> {
    let mut all = Vec::new();
    for i in 0..p {
        let mut s = src.clone();
        s.open(&task_info(i, p), None).unwrap();
        all.extend(drain(&mut s, max));
    }
    all.sort_by_key(|e| (e.timestamp, e.car_id));
    all
}

#[test]
fn cars_are_deterministic_for_a_seed_and_independent_of_parallelism() {
    let src = CarSource::new(5, 0.0, 400);
    let one = run_cars(&src, 1, 7);
    assert_eq!(one.len(), 400);
    assert_eq!(one, run_cars(&src, 1, 64));
    assert_eq!(one, run_cars(&src, 3, 5));
    let other_seed = run_cars(&src.clone().with_seed(7), 1, 64);
    assert_eq!(other_seed.len(), 400);
    assert_ne!(one, other_seed);
}

#[test]
fn cars_follow_the_top_speed_windowing_model() {
    let events = run_cars(&CarSource::new(3, 0.0, 3 * 200), 1, 50);
    let mut last: BTreeMap<u32, (u32, f64, i64)> = BTreeMap::new();
    for e in &events {
        assert!(e.speed <= CAR_MAX_SPEED);
        let (speed, distance, ts) =
            last.get(&e.car_id)
                .copied()
                .unwrap_or((50, 0.0, CAR_EPOCH_MS - CAR_STEP_MS));
        assert_eq!(
            e.timestamp,
            ts + CAR_STEP_MS,
            "car {} skipped a step",
            e.car_id
        );
        let diff = e.speed as i64 - speed as i64;
        assert!(
            diff.abs() == CAR_SPEED_STEP as i64
                || (diff == 0 && (speed == 0 || speed == CAR_MAX_SPEED)),
            "speed {speed} -> {}",
            e.speed
        );
        let expected = distance + e.speed as f64 / 3.6 * 0.1;
        assert!((e.distance - expected).abs() < 1e-9);
        last.insert(e.car_id, (e.speed, e.distance, e.timestamp));
    }
    assert_eq!(last.len(), 3);
    assert!(last
        .values()
        .all(|&(_, _, ts)| ts == CAR_EPOCH_MS + 199 * CAR_STEP_MS));
    assert_eq!(
        events[0].to_string(),
        format!(
            "{},{},{:.2},{}",
            events[0].car_id, events[0].speed, events[0].distance, events[0].timestamp
        )
    );
}

#[test]
fn cars_emit_a_watermark_behind_their_latest_timestamp() {
    let mut src = CarSource::new(2, 0.0, 0);
    src.open(&task_info(0, 1), None).unwrap();
    let mut out = Output::new();
    assert_eq!(src.poll_next(&mut out, 5).unwrap(), SourceStatus::More);
    let max_ts = out.records.iter().map(|e| e.timestamp).max().unwrap();
    assert_eq!(out.watermark, Some(max_ts - 1));
}

#[test]
fn cars_restore_continues_the_same_stream() {
    let src = CarSource::new(4, 0.0, 4 * 50);
    let reference = run_cars(&src, 1, 1000);
    for (old_p, new_p) in [(1u32, 1u32), (2, 2), (2, 3), (3, 1)] {
        let mut snaps = Vec::new();
        let mut all = Vec::new();
        for i in 0..old_p {
            let mut s = src.clone();
            s.open(&task_info(i, old_p), None).unwrap();
            all.extend(poll(&mut s, 5 + 4 * i as usize).0);
            snaps.push(snapshot_source(&mut s, 1));
        }
        let restored = union(&snaps);
        for i in 0..new_p {
            let mut s = src.clone();
            s.open(&task_info(i, new_p), Some(&restored)).unwrap();
            all.extend(drain(&mut s, 3));
        }
        all.sort_by_key(|e| (e.timestamp, e.car_id));
        assert_eq!(all, reference, "{old_p} -> {new_p}");
    }
}

#[test]
fn an_unbounded_car_subtask_without_cars_idles_and_frees_event_time() {
    let mut src = CarSource::new(1, 0.0, 0);
    src.open(&task_info(1, 2), None).unwrap();
    let mut out = Output::new();
    let status = src.poll_next(&mut out, 10).unwrap();
    assert!(matches!(status, SourceStatus::IdleUntil(_)), "{status:?}");
    assert!(out.records.is_empty());
    assert_eq!(out.watermark, Some(i64::MAX));
}

// ---------------------------------------------------------------- rows

#[test]
fn rows_emit_exactly_count_rows_with_the_documented_keys_and_values() {
    for p in 1..=4u32 {
        let mut all = Vec::new();
        for i in 0..p {
            let mut src = RowSource::new(10_001, 7);
            src.open(&task_info(i, p), None).unwrap();
            all.extend(drain(&mut src, 1024));
        }
        assert_eq!(all.len(), 10_001, "p={p}");
        // Rebuild the global indices from (key, value) order per subtask is not possible, so
        // check the multiset against the definition.
        let mut expected: Vec<(u64, i64)> = (0..10_001u64).map(|n| (n % 7, row_value(n))).collect();
        expected.sort_unstable();
        all.sort_unstable();
        assert_eq!(all, expected, "p={p}");
    }
    assert!((0..1000).map(row_value).all(|v| (0..1024).contains(&v)));
    assert!(
        (0..1000)
            .map(row_value)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 500
    );
}

#[test]
fn rows_restore_continues_exactly_at_the_same_parallelism() {
    let mut src = RowSource::new(5000, 13);
    src.open(&task_info(1, 2), None).unwrap();
    let mut seen = poll(&mut src, 777).0;
    let snap = snapshot_source(&mut src, 1);
    let mut again = RowSource::new(5000, 13);
    again.open(&task_info(1, 2), Some(&snap)).unwrap();
    seen.extend(drain(&mut again, 1000));
    let expected: Vec<(u64, i64)> = (0..5000u64)
        .filter(|n| n % 2 == 1)
        .map(|n| (n % 13, row_value(n)))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn unbounded_rows_never_finish_and_fill_whole_batches() {
    let mut src = RowSource::new(0, 3);
    src.open(&task_info(0, 1), None).unwrap();
    for _ in 0..10 {
        let (records, status) = poll(&mut src, 4096);
        assert_eq!(records.len(), 4096);
        assert_eq!(status, SourceStatus::More);
    }
    let mut zero_keys = RowSource::new(10, 0);
    assert!(zero_keys
        .open(&task_info(0, 1), None)
        .unwrap_err()
        .message
        .contains("keys"));
}

// ---------------------------------------------------------------- nexmark

/// The reference: events `0..n` in order.
fn nexmark_reference(n: u64) -> Vec<nexmark::Event> {
    (0..n).map(nexmark::event).collect()
}

fn sorted(mut v: Vec<nexmark::Event>) -> Vec<String> {
    let mut s: Vec<String> = v.drain(..).map(|e| format!("{e:?}")).collect();
    s.sort_unstable();
    s
}

#[test]
fn nexmark_events_follow_the_proportions_and_are_deterministic() {
    let events = nexmark_reference(5000);
    assert_eq!(
        events,
        nexmark_reference(5000),
        "a function of the event number"
    );
    let count = |f: fn(&nexmark::Event) -> bool| events.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, nexmark::Event::Person(_))), 100);
    assert_eq!(count(|e| matches!(e, nexmark::Event::Auction(_))), 300);
    assert_eq!(count(|e| matches!(e, nexmark::Event::Bid(_))), 4600);
    // Event time: 10 events per ms from the fixed base time, never `now`.
    assert_eq!(events[0].timestamp(), nexmark::NEXMARK_BASE_TIME_MS);
    assert_eq!(
        events[4999].timestamp(),
        nexmark::NEXMARK_BASE_TIME_MS + 499
    );
    // Ids: persons and auctions numbered in order from 1000; bids refer to existing or
    // slightly future auctions and persons.
    let mut persons = 0;
    let mut auctions = 0;
    for e in &events {
        match e {
            nexmark::Event::Person(p) => {
                assert_eq!(p.id, 1000 + persons);
                persons += 1;
            }
            nexmark::Event::Auction(a) => {
                assert_eq!(a.id, 1000 + auctions);
                auctions += 1;
                assert!(a.expires > a.date_time && a.reserve >= a.initial_bid);
                assert!((10..15).contains(&a.category));
                assert!(a.seller < 1000 + persons + 10, "{a:?}");
            }
            nexmark::Event::Bid(b) => {
                assert!(b.auction < 1000 + auctions + 10, "{b:?}");
                assert!(b.bidder < 1000 + persons + 10, "{b:?}");
                assert!(b.price > 0);
            }
        }
    }
}

#[test]
fn nexmark_emits_every_event_once_across_subtasks_in_event_time_order() {
    for p in [1u32, 3, 4] {
        let mut all = Vec::new();
        for i in 0..p {
            let mut src = NexmarkSource::new(3000, 0.0);
            src.open(&task_info(i, p), None).unwrap();
            let out = drain(&mut src, 97);
            assert!(
                out.windows(2).all(|w| w[0].timestamp() <= w[1].timestamp()),
                "subtask {i} of {p} emits in event time order"
            );
            all.extend(out);
        }
        assert_eq!(sorted(all), sorted(nexmark_reference(3000)), "p={p}");
    }
}

#[test]
fn nexmark_watermark_trails_the_earliest_pending_event() {
    let mut src = NexmarkSource::new(10_000, 0.0);
    src.open(&task_info(0, 2), None).unwrap();
    let mut out = Output::new();
    src.poll_next(&mut out, 1000).unwrap();
    let max = out.records.iter().map(|e| e.timestamp()).max().unwrap();
    let wm = out.watermark.expect("a watermark after a batch");
    assert!(wm < max + 1 && wm >= max - 1, "wm {wm}, max ts {max}");
    // Everything emitted later is above the watermark.
    let rest = drain(&mut src, 1000);
    assert!(rest.iter().all(|e| e.timestamp() > wm));
}

#[test]
fn nexmark_restore_at_the_same_and_another_parallelism_is_exactly_once() {
    let n = 7000;
    for (old_p, new_p) in [(2u32, 2u32), (3, 2), (2, 5), (4, 1), (1, 3)] {
        let mut all = Vec::new();
        let mut snaps = Vec::new();
        for i in 0..old_p {
            let mut src = NexmarkSource::new(n, 0.0);
            src.open(&task_info(i, old_p), None).unwrap();
            // Subtasks progressed unevenly before the barrier.
            all.extend(poll(&mut src, 300 + 700 * i as usize).0);
            snaps.push(snapshot_source(&mut src, 4));
            let _lost = poll(&mut src, 50); // after the barrier, lost with the failed run
        }
        let restored = union(&snaps);
        let mut snaps2 = Vec::new();
        for i in 0..new_p {
            let mut src = NexmarkSource::new(n, 0.0);
            src.open(&task_info(i, new_p), Some(&restored)).unwrap();
            let (part, _) = poll(&mut src, 500);
            assert!(part
                .windows(2)
                .all(|w| w[0].timestamp() <= w[1].timestamp()));
            all.extend(part);
            snaps2.push(snapshot_source(&mut src, 5));
        }
        let restored2 = union(&snaps2);
        for i in 0..old_p {
            let mut src = NexmarkSource::new(n, 0.0);
            src.open(&task_info(i, old_p), Some(&restored2)).unwrap();
            all.extend(drain(&mut src, 333));
        }
        assert_eq!(
            sorted(all),
            sorted(nexmark_reference(n)),
            "{old_p} -> {new_p} -> {old_p}"
        );
    }
}

#[test]
fn nexmark_rate_limit_returns_idle_until_instead_of_sleeping() {
    let mut src = NexmarkSource::new(0, 100.0);
    src.open(&task_info(0, 1), None).unwrap();
    let (first, status) = poll(&mut src, 1000);
    assert!(first.len() <= 2, "{}", first.len());
    assert_eq!(status, SourceStatus::More);
    match poll(&mut src, 1000).1 {
        SourceStatus::IdleUntil(t) => assert!(t > now_millis() - 1000),
        s => panic!("expected IdleUntil, got {s:?}"),
    }
}
