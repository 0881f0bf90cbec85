//! The simulation must be able to fail: with a safety mechanism switched off on purpose it finds
//! a seed that violates the invariant that mechanism protects, within a bounded number of seeds.

use eddy_sim::world::{run_seed_with, Sabotage};

/// The first seed in `0..limit` that fails under `sabotage`, with its message.
fn first_failure(sabotage: Sabotage, limit: u64) -> Option<(u64, String)> {
    (0..limit).find_map(|seed| {
        run_seed_with(seed, sabotage, false)
            .err()
            .map(|f| (seed, f.message))
    })
}

#[test]
fn unfenced_writes_are_caught_as_split_brain() {
    let (seed, msg) = first_failure(
        Sabotage {
            unfenced_writes: true,
            ..Default::default()
        },
        5_000,
    )
    .inspect(|(seed, msg)| println!("caught by seed {seed}: {msg}"))
    .expect("no seed caught a deposed leader's unfenced write");
    assert!(msg.contains("fencing"), "seed {seed}: {msg}");
}

#[test]
fn sinks_committing_on_abort_are_caught() {
    let (seed, msg) = first_failure(
        Sabotage {
            commit_on_abort: true,
            ..Default::default()
        },
        5_000,
    )
    .inspect(|(seed, msg)| println!("caught by seed {seed}: {msg}"))
    .expect("no seed caught a sink committing an aborted checkpoint");
    assert!(msg.contains("never completed"), "seed {seed}: {msg}");
}

#[test]
fn restoring_from_nothing_is_caught() {
    let (seed, msg) = first_failure(
        Sabotage {
            restore_from_nothing: true,
            ..Default::default()
        },
        5_000,
    )
    .inspect(|(seed, msg)| println!("caught by seed {seed}: {msg}"))
    .expect("no seed caught a restart from nothing");
    assert!(
        msg.contains("from nothing") || msg.contains("exactly-once"),
        "seed {seed}: {msg}"
    );
}
