//! Savepoints under HA, with a real ZooKeeper and real processes: the leader JobManager is
//! SIGKILLed while a savepoint is in flight (slow snapshots widen the window). The savepoint
//! either completed (a directory with a readable `_metadata`) or it did not, and then nothing
//! looks like one; the new leader answers the old trigger id with a clear 404 in Flink's error
//! shape; the job continues under the new leader, takes a new savepoint, and the exactly-once
//! witness holds.
//!
//! Own temp dir, ZooKeeper and free 127.0.0.1 ports ([`Cluster`] of `common::ha_cluster`, which
//! kills everything by pid on drop).

mod common;

use common::ha_cluster::*;
use common::*;
use eddy_rest::client;
use serde_json::Value;
use std::time::Duration;

const HTTP: Duration = Duration::from_secs(10);

#[test]
fn a_leader_killed_during_a_savepoint_the_job_continues_and_the_trigger_is_a_clear_404() {
    let c = Cluster::start(
        "sp-ha",
        2,
        2,
        Duration::from_secs(60),
        &[("eddy.test-hooks.enabled", "true".to_string())],
    );
    let (keys, per_key) = (6u64, 4000u64);
    let output = c.dir.path().join("out");
    let out = c.cli(&[
        "run",
        "sequence",
        "--keys",
        &keys.to_string(),
        "--per-key",
        &per_key.to_string(),
        "--rate",
        "1500",
        "--output",
        &output.display().to_string(),
        // Every snapshot takes 1.5 s: the savepoint is in flight when its leader dies.
        "--snapshot-delay-ms",
        "1500",
        "-p",
        "2",
        "--conf",
        c.conf_str(),
        "-d",
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stderr, c.log_tail());
    let job = out.stdout.trim().to_string();
    let leader = c.wait_for("the job to run", JOB_LIMIT, || c.running_on(&job, &[]));
    c.wait_for("a completed checkpoint", JOB_LIMIT, || {
        c.get(leader, &format!("/jobs/{job}/checkpoints"))
            .filter(|s| s["counts"]["completed"].as_u64() >= Some(1))
    });
    let sp = c.dir.path().join("sp");
    let body = serde_json::json!({ "target-directory": sp.display().to_string() });
    let (code, answer) = client::request(
        &c.masters[leader],
        "POST",
        &format!("/jobs/{job}/savepoints"),
        Some(&body),
        HTTP,
    )
    .expect("trigger a savepoint");
    assert_eq!(code, 202, "{answer}");
    let trigger = answer["request-id"]
        .as_str()
        .expect("request-id")
        .to_string();
    let pid = c.pid_of("jobmanager", leader).expect("leader pid");
    signal(pid, libc::SIGKILL);
    // The job continues under a new leader (the standby, or the restarted one).
    let new_leader = c.wait_for("a new leader to run the job", JOB_LIMIT, || {
        c.running_on(&job, &[])
    });
    // The new leader never saw the trigger: a clear 404, Flink's `{"errors": [...]}`.
    let (code, answer) = client::request(
        &c.masters[new_leader],
        "GET",
        &format!("/jobs/{job}/savepoints/{trigger}"),
        None,
        HTTP,
    )
    .expect("GET the old trigger");
    assert_eq!(code, 404, "{answer}");
    let msg = answer["errors"][0].as_str().unwrap_or_default();
    assert!(
        msg.contains(&trigger) && msg.contains("leader") && !msg.contains('\n'),
        "{answer}"
    );
    // The savepoint completed or it did not: nothing in between looks like one.
    for d in std::fs::read_dir(&sp).into_iter().flatten().flatten() {
        let m = d.path().join("_metadata");
        if m.exists() {
            eddy_recovery::savepoint::open_snapshot(&d.path())
                .unwrap_or_else(|e| panic!("{m:?} exists but does not read: {e}"));
        }
    }
    // A new savepoint under the new leader completes.
    let (code, answer) = client::request(
        &c.masters[new_leader],
        "POST",
        &format!("/jobs/{job}/savepoints"),
        Some(&body),
        HTTP,
    )
    .expect("trigger a savepoint");
    assert_eq!(code, 202, "{answer}");
    let trigger = answer["request-id"]
        .as_str()
        .expect("request-id")
        .to_string();
    let done: Value = c.wait_for("the new savepoint", JOB_LIMIT, || {
        c.get(new_leader, &format!("/jobs/{job}/savepoints/{trigger}"))
            .filter(|s| s["status"]["id"] == "COMPLETED")
    });
    let location = done["operation"]["location"]
        .as_str()
        .unwrap_or_else(|| panic!("{done}\n{}", c.log_tail()));
    assert!(std::path::Path::new(location).join("_metadata").is_file());
    // And the job ends with exactly-once output.
    let end = c.wait_for("the job to end", JOB_LIMIT, || {
        c.leaders(&[]).into_iter().find_map(|l| {
            c.get(l, &format!("/jobs/{job}/eddy-details"))
                .filter(|d| matches!(status(d), "FINISHED" | "FAILED" | "CANCELED"))
        })
    });
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness(&committed_lines(&output), keys, per_key),
        (0, 0, 0),
        "{}",
        c.log_tail()
    );
}
