//! End-to-end: the Nexmark jobs `nexmark-q0` … `nexmark-q8` run by the real `eddy local` binary
//! (a JobManager and two TaskManagers over TCP, checkpoints every 50 ms), at -p 1 and -p 4; each
//! query's committed output equals a single-threaded reference (tests/common/nexmark_ref.rs).

mod common;
#[path = "common/nexmark_ref.rs"]
mod nexmark_ref;

use common::*;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const EVENTS: u64 = 40_000;
/// Windows small enough that 40,000 events (4 s of event time) span several.
const WINDOW_MS: i64 = 500;
const SLIDE_MS: i64 = 100;

/// Runs `nexmark-qN` and returns its committed output lines, sorted.
fn run(query: &str, parallelism: &str, extra: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let events = EVENTS.to_string();
    let mut args = vec![
        "local",
        query,
        "--events",
        &events,
        "--output",
        out.to_str().unwrap(),
        "-p",
        parallelism,
        "--taskmanagers",
        "2",
        "-D",
        "execution.checkpointing.interval=50ms",
        "--json",
    ];
    args.extend_from_slice(extra);
    let r = eddy(&args, LIMIT);
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "FINISHED");
    let mut lines = committed_lines(&out);
    lines.sort_unstable();
    lines
}

fn check(query: &str, extra: &[&str], expected: Vec<String>) {
    assert!(
        !expected.is_empty(),
        "the reference of {query} is not empty"
    );
    for p in ["1", "4"] {
        let got = run(query, p, extra);
        assert_eq!(got.len(), expected.len(), "{query} -p {p}: line count");
        assert!(
            got == expected,
            "{query} -p {p}: output differs from the reference"
        );
    }
}

#[test]
fn q0_passes_every_bid_through() {
    check(
        "nexmark-q0",
        &[],
        nexmark_ref::q0(&nexmark_ref::events(EVENTS)),
    );
}

#[test]
fn q1_converts_every_price() {
    check(
        "nexmark-q1",
        &[],
        nexmark_ref::q1(&nexmark_ref::events(EVENTS)),
    );
}

#[test]
fn q2_selects_the_bids_on_every_123rd_auction() {
    check(
        "nexmark-q2",
        &[],
        nexmark_ref::q2(&nexmark_ref::events(EVENTS)),
    );
}

#[test]
fn q3_joins_local_sellers_with_their_auctions() {
    check(
        "nexmark-q3",
        &[],
        nexmark_ref::q3(&nexmark_ref::events(EVENTS)),
    );
}

#[test]
fn q4_averages_winning_bids_per_category() {
    let expected = nexmark_ref::q4(&nexmark_ref::events(EVENTS));
    assert!(expected.len() == 5, "{expected:?}");
    for p in ["1", "4"] {
        let got = nexmark_ref::q4_final(&run("nexmark-q4", p, &[]));
        assert_eq!(got, expected, "nexmark-q4 -p {p}");
    }
}

#[test]
fn q5_finds_the_hot_items_of_each_sliding_window() {
    let (w, s) = (WINDOW_MS.to_string(), SLIDE_MS.to_string());
    check(
        "nexmark-q5",
        &["--window-ms", &w, "--slide-ms", &s],
        nexmark_ref::q5(&nexmark_ref::events(EVENTS), WINDOW_MS, SLIDE_MS),
    );
}

#[test]
fn q7_finds_the_highest_bids_of_each_tumbling_window() {
    let w = WINDOW_MS.to_string();
    check(
        "nexmark-q7",
        &["--window-ms", &w],
        nexmark_ref::q7(&nexmark_ref::events(EVENTS), WINDOW_MS),
    );
}

#[test]
fn q8_joins_new_persons_and_auctions_per_window() {
    let w = WINDOW_MS.to_string();
    check(
        "nexmark-q8",
        &["--window-ms", &w],
        nexmark_ref::q8(&nexmark_ref::events(EVENTS), WINDOW_MS),
    );
}

#[test]
fn eddy_jobs_lists_the_nexmark_queries_and_bad_arguments_are_refused() {
    let r = eddy(&["jobs"], LIMIT);
    assert_eq!(r.code, 0);
    for q in [0, 1, 2, 3, 4, 5, 7, 8] {
        let name = format!("nexmark-q{q}");
        assert!(r.stdout.contains(&name), "missing {name} in {}", r.stdout);
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let r = eddy(
        &[
            "local",
            "nexmark-q5",
            "--window-ms",
            "0",
            "--output",
            out.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, 2, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("--window-ms"), "{}", r.stderr);
    assert!(!out.exists(), "a refused job creates no output");
}
