//! End-to-end recovery: checkpoints, restarts from the latest completed checkpoint, restart and
//! failover strategies, restore fallback — through the real `eddy local` binary, checked with the
//! exactly-once witness (`sequence`).

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(180);

fn summary(out: &Outcome) -> Value {
    let last = out
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary; stderr: {}", out.stderr));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad summary {last}: {e}"))
}

/// `sequence` with failures and checkpoints; returns (summary, output dir's lines).
fn run_sequence(
    dir: &Path,
    keys: u64,
    per_key: u64,
    extra: &[&str],
) -> (Value, Vec<String>, Outcome) {
    let out = dir.join("seq");
    let ckpt = dir.join("ckpt");
    let (keys_s, per_s) = (keys.to_string(), per_key.to_string());
    let mut args = vec![
        "local",
        "sequence",
        "--keys",
        &keys_s,
        "--per-key",
        &per_s,
        "--output",
        out.to_str().unwrap(),
        "-D",
        "execution.checkpointing.interval=200ms",
        "-D",
        "restart-strategy.fixed-delay.delay=50ms",
        // The failure and delay arguments are test hooks (docs/security.md).
        "-D",
        "eddy.test-hooks.enabled=true",
    ];
    let dir_arg = format!("execution.checkpointing.dir={}", ckpt.display());
    args.extend(["-D", &dir_arg, "--json"]);
    args.extend(extra);
    let r = eddy(&args, LIMIT);
    let s = summary(&r);
    let lines = committed_lines(&out);
    (s, lines, r)
}

fn exactly_once_under_repeated_failures(p: &str, fail_every: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (s, lines, r) = run_sequence(
        dir.path(),
        20,
        3000,
        &["-p", p, "--rate", "20000", "--fail-every", fail_every],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    assert!(s["restarts"].as_u64().unwrap() >= 3, "restarts: {s}");
    assert!(s["completed_checkpoints"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(witness(&lines, 20, 3000), (0, 0, 0));
    // The `--json` summary carries each recovery's timeline (as `/jobs/:id/recoveries`), its
    // phases in order; a recovery cut short by the next failure has no RUNNING time.
    let recoveries = s["recoveries"].as_array().expect("recoveries in --json");
    assert!(!recoveries.is_empty(), "{s}");
    let mut complete = 0;
    for rec in recoveries {
        let t = |k: &str| rec[k].as_i64().unwrap_or_else(|| panic!("{k} in {rec}"));
        assert!(t("detected") <= t("decided"), "{rec}");
        if let Some(running) = rec["running"].as_i64() {
            assert!(
                t("decided") <= t("deployed") && t("deployed") <= running,
                "{rec}"
            );
            assert_eq!(
                rec["durations"]["total"].as_i64(),
                Some(running - t("detected"))
            );
            complete += 1;
        }
    }
    assert!(complete >= 1, "{s}");
    assert!(
        r.stderr.contains("checkpoint") && r.stderr.contains("! failure"),
        "progress shows checkpoints and failures: {}",
        r.stderr
    );
}

#[test]
fn exactly_once_witness_holds_under_repeated_failures_at_parallelism_1() {
    exactly_once_under_repeated_failures("1", "7000");
}

#[test]
fn exactly_once_witness_holds_under_repeated_failures_at_parallelism_4() {
    exactly_once_under_repeated_failures("4", "2500");
}

#[test]
fn exactly_once_witness_holds_under_repeated_failures_with_the_rocksdb_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lines, r) = run_sequence(
        dir.path(),
        20,
        3000,
        &[
            "-p",
            "2",
            "--rate",
            "20000",
            "--fail-every",
            "5000",
            "-D",
            "state.backend.type=rocksdb",
        ],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    assert!(s["restarts"].as_u64().unwrap() >= 3, "restarts: {s}");
    assert!(s["completed_checkpoints"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(witness(&lines, 20, 3000), (0, 0, 0));
}

#[test]
fn at_least_once_mode_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lines, r) = run_sequence(
        dir.path(),
        20,
        3000,
        &[
            "-p",
            "4",
            "--rate",
            "20000",
            "--fail-every",
            "2500",
            "-D",
            "execution.checkpointing.mode=AT_LEAST_ONCE",
        ],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    let (missing, _dups, _wrong) = witness(&lines, 20, 3000);
    assert_eq!(missing, 0, "at-least-once may duplicate but never lose");
}

#[test]
fn fixed_delay_exhausted_fails_the_job_with_the_root_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _lines, r) = run_sequence(
        dir.path(),
        10,
        100_000,
        &[
            "-p",
            "2",
            "--fail-every",
            "3000",
            "-D",
            "restart-strategy=fixed-delay",
            "-D",
            "restart-strategy.fixed-delay.attempts=2",
        ],
    );
    assert_eq!(r.code, 1);
    assert_eq!(s["status"], "FAILED");
    assert_eq!(s["restarts"], 2);
    let failure = s["failure"].as_str().unwrap();
    assert!(
        failure.contains("injected failure") && failure.contains("fixed-delay"),
        "{failure}"
    );
}

#[test]
fn restart_strategy_none_fails_at_the_first_failure() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _lines, _r) = run_sequence(
        dir.path(),
        10,
        100_000,
        &[
            "-p",
            "2",
            "--fail-every",
            "3000",
            "-D",
            "restart-strategy=none",
        ],
    );
    assert_eq!(s["status"], "FAILED");
    assert_eq!(s["restarts"], 0);
}

fn deployments(s: &Value, vertex: usize) -> Vec<u64> {
    s["vertices"][vertex]["subtask_deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn region_failover_restarts_only_the_failed_region() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lines, r) = run_sequence(
        dir.path(),
        20,
        2000,
        &[
            "-p",
            "4",
            "--forward",
            "--rate",
            "8000",
            "--fail-every",
            "1500",
            "--fail-subtask",
            "0",
        ],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    assert_eq!(
        s["vertices"].as_array().unwrap().len(),
        1,
        "forward-only: one chained vertex {s}"
    );
    let d = deployments(&s, 0);
    assert!(d[0] > 1, "the failing subtask restarted: {d:?}");
    assert_eq!(&d[1..], &[1, 1, 1], "the other regions kept running: {d:?}");
    assert_eq!(witness(&lines, 20, 2000), (0, 0, 0));
}

#[test]
fn full_failover_restarts_every_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let (s, lines, r) = run_sequence(
        dir.path(),
        20,
        2000,
        &[
            "-p",
            "4",
            "--forward",
            "--rate",
            "8000",
            "--fail-every",
            "1500",
            "--fail-subtask",
            "0",
            "-D",
            "jobmanager.execution.failover-strategy=full",
        ],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    let d = deployments(&s, 0);
    assert!(d.iter().all(|&n| n > 1), "every subtask restarted: {d:?}");
    assert_eq!(witness(&lines, 20, 2000), (0, 0, 0));
}

#[test]
fn corrupted_latest_metadata_restores_from_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let ckpt = dir.path().join("ckpt");
    let trigger = dir.path().join("fail-now");
    let child = Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "local",
            "sequence",
            "--keys",
            "10",
            "--per-key",
            "2000",
            "--rate",
            "2000",
            "-p",
            "2",
            "--json",
        ])
        .args([
            "--output",
            out.to_str().unwrap(),
            "--fail-on-file",
            trigger.to_str().unwrap(),
        ])
        .args([
            "-D",
            "execution.checkpointing.interval=1s",
            "-D",
            "state.checkpoints.num-retained=3",
        ])
        .args(["-D", "restart-strategy.fixed-delay.delay=50ms"])
        .args(["-D", "eddy.test-hooks.enabled=true"])
        .arg("-D")
        .arg(format!("execution.checkpointing.dir={}", ckpt.display()))
        .env("EDDY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Kill(child);
    // Wait until a new checkpoint completes while at least two older ones are retained, corrupt
    // its _metadata at once and make the job fail right away: the next checkpoint is a whole
    // interval (1 s) away, so the corrupted one is still the latest when the job restores.
    let completed = |ckpt: &std::path::Path| -> Vec<(u64, std::path::PathBuf)> {
        let Some(job) = std::fs::read_dir(ckpt)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
        else {
            return Vec::new();
        };
        let mut ids: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(job.path())
            .map(|d| {
                d.filter_map(|e| {
                    let e = e.ok()?;
                    let id = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
                    let meta = e.path().join("_metadata");
                    meta.exists().then_some((id, meta))
                })
                .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    };
    let start = Instant::now();
    let mut newest_seen = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoints appeared"
        );
        let ids = completed(&ckpt);
        let newest = ids.last().map_or(0, |(id, _)| *id);
        if ids.len() >= 3 && newest_seen > 0 && newest > newest_seen {
            let latest = &ids[ids.len() - 1].1;
            if let Ok(mut bytes) = std::fs::read(latest) {
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0x55;
                std::fs::write(latest, &bytes).unwrap();
                break;
            }
        }
        newest_seen = newest_seen.max(newest);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::fs::write(&trigger, b"").unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "job did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let c = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap());
    let o = c.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let s: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(s["status"], "FINISHED", "{stderr}");
    assert!(s["restarts"].as_u64().unwrap() >= 1);
    assert!(
        stderr.contains("unreadable"),
        "the fallback is reported: {stderr}"
    );
    assert_eq!(witness(&committed_lines(&out), 10, 2000), (0, 0, 0));
}

#[test]
fn expired_checkpoints_are_aborted_and_the_job_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // The first two snapshots of each source take 600 ms against a 200 ms checkpoint timeout.
    let (s, lines, r) = run_sequence(
        dir.path(),
        10,
        2000,
        &[
            "-p",
            "2",
            "--rate",
            "4000",
            "--snapshot-delay-ms",
            "600",
            "--slow-snapshots",
            "2",
            "-D",
            "execution.checkpointing.timeout=200ms",
            "-D",
            "execution.checkpointing.tolerable-failed-checkpoints=10",
        ],
    );
    assert_eq!(s["status"], "FINISHED", "{}", r.stderr);
    assert!(
        s["failed_checkpoints"].as_u64().unwrap() >= 1,
        "expired checkpoints are counted as failed: {s}"
    );
    assert!(s["completed_checkpoints"].as_u64().unwrap() >= 1, "{s}");
    assert_eq!(
        s["restarts"], 0,
        "tolerated checkpoint failures do not restart the job"
    );
    assert_eq!(witness(&lines, 10, 2000), (0, 0, 0));
}

#[test]
fn checkpoint_failures_beyond_the_tolerable_number_fail_the_job_over() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _lines, r) = run_sequence(
        dir.path(),
        10,
        2000,
        &[
            "-p",
            "2",
            "--rate",
            "4000",
            "--snapshot-delay-ms",
            "600",
            "--slow-snapshots",
            "2",
            "-D",
            "execution.checkpointing.timeout=200ms",
            "-D",
            "execution.checkpointing.tolerable-failed-checkpoints=0",
            "-D",
            "restart-strategy=fixed-delay",
            "-D",
            "restart-strategy.fixed-delay.attempts=1",
        ],
    );
    // Every attempt's first checkpoint expires: one restart is allowed, the second failover fails the job.
    assert_eq!(s["status"], "FAILED", "{}", r.stderr);
    assert_eq!(s["restarts"], 1);
    let failure = s["failure"].as_str().unwrap();
    assert!(failure.contains("checkpoint"), "{failure}");
}
