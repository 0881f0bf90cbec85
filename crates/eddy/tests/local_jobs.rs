//! End-to-end: the built-in jobs run by the real `eddy local` binary (JobManager and two
//! TaskManagers talking over TCP), checked against simple references.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);

fn word_count(parallelism: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (text, expected) = text_and_counts(1_100_000);
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text).unwrap();
    let out = dir.path().join("out");
    let r = eddy(
        &[
            "local",
            "word-count",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "-p",
            parallelism,
        ],
        LIMIT,
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let lines = committed_lines(&out);
    for l in &lines {
        let (w, c) = l.rsplit_once(',').unwrap();
        let c: u64 = c.parse().unwrap();
        let t = totals.entry(w.to_string()).or_default();
        *t = (*t).max(c);
    }
    assert_eq!(
        lines.len() as u64,
        expected.values().sum::<u64>(),
        "one output line per word occurrence"
    );
    assert_eq!(totals, expected);
}

#[test]
fn word_count_at_parallelism_1_matches_reference() {
    word_count("1");
}

#[test]
fn word_count_at_parallelism_3_matches_reference() {
    word_count("3");
}

fn sequence(parallelism: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let r = eddy(
        &[
            "local",
            "sequence",
            "--keys",
            "50",
            "--per-key",
            "400",
            "--output",
            out.to_str().unwrap(),
            "-p",
            parallelism,
            "--taskmanagers",
            "2",
            "--json",
        ],
        LIMIT,
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "FINISHED");
    assert_eq!(witness(&committed_lines(&out), 50, 400), (0, 0, 0));
}

#[test]
fn sequence_witness_holds_at_parallelism_1() {
    sequence("1");
}

#[test]
fn sequence_witness_holds_at_parallelism_4_on_two_taskmanagers() {
    sequence("4");
}

#[test]
fn a_failing_operator_fails_the_job_and_shows_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let r = eddy(
        &[
            "local",
            "sequence",
            "--keys",
            "10",
            "--per-key",
            "1000",
            "--fail-every",
            "500",
            "--output",
            out.to_str().unwrap(),
            "-p",
            "2",
            "-D",
            "eddy.test-hooks.enabled=true",
        ],
        LIMIT,
    );
    assert_eq!(r.code, 1, "stdout: {} stderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    assert!(r.stderr.contains("injected failure"), "{}", r.stderr);
}

#[test]
fn top_speed_windowing_emits_a_top_speed_per_car_and_window() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cars");
    let r = eddy(
        &[
            "local",
            "top-speed-windowing",
            "--cars",
            "3",
            "--events",
            "3000",
            "--output",
            out.to_str().unwrap(),
        ],
        LIMIT,
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let lines = committed_lines(&out);
    assert!(!lines.is_empty());
    let mut cars = std::collections::BTreeSet::new();
    for l in &lines {
        let f: Vec<&str> = l.split(',').collect();
        assert!(f.len() >= 3, "{l}");
        cars.insert(f[0].to_string());
        let speed: u32 = f[2].trim().parse().unwrap();
        assert!(speed <= 200, "{l}");
    }
    assert_eq!(cars.len(), 3, "{cars:?}");
}

#[test]
fn bad_input_gives_one_line_errors_and_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o");
    let missing = dir.path().join("missing.txt");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["local", "no-such-job"], "unknown job 'no-such-job'"),
        (
            vec![
                "local",
                "word-count",
                "--input",
                missing.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
            "missing.txt",
        ),
        (
            vec![
                "local",
                "sequence",
                "--keys",
                "ten",
                "--per-key",
                "1",
                "--output",
                out.to_str().unwrap(),
            ],
            "'ten'",
        ),
        (
            vec![
                "local",
                "sequence",
                "--keys",
                "1",
                "--per-key",
                "1",
                "--bogus",
                "1",
                "--output",
                out.to_str().unwrap(),
            ],
            "--bogus",
        ),
        (
            vec![
                "local",
                "sequence",
                "--keys",
                "1",
                "--per-key",
                "1",
                "--output",
                out.to_str().unwrap(),
                "-D",
                "heartbeat.interval=soon",
            ],
            "heartbeat.interval",
        ),
        (
            vec![
                "local",
                "word-count",
                "--input",
                missing.to_str().unwrap(),
                "--output",
                "/proc/eddy-cannot-write",
            ],
            "missing.txt",
        ),
    ];
    for (args, needle) in cases {
        let r = eddy(&args, LIMIT);
        assert_ne!(r.code, 0, "{args:?} should fail");
        let err_lines: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error:"))
            .collect();
        assert_eq!(err_lines.len(), 1, "{args:?}: {}", r.stderr);
        assert!(err_lines[0].contains(needle), "{args:?}: {}", err_lines[0]);
    }
    assert!(
        !out.exists() || committed_lines(&out).is_empty(),
        "nothing half-written"
    );
}

#[test]
fn unwritable_output_directory_is_rejected_before_running() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let r = eddy(
        &[
            "local",
            "word-count",
            "--input",
            input.to_str().unwrap(),
            "--output",
            "/proc/eddy-cannot-write",
        ],
        LIMIT,
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("/proc/eddy-cannot-write"), "{}", r.stderr);
}

#[test]
fn jobs_lists_the_builtin_jobs_with_arguments() {
    let r = eddy(&["jobs"], LIMIT);
    assert_eq!(r.code, 0);
    for j in [
        "word-count",
        "sequence",
        "top-speed-windowing",
        "--input",
        "--per-key",
    ] {
        assert!(r.stdout.contains(j), "missing {j} in {}", r.stdout);
    }
}

#[test]
fn ctrl_c_cancels_the_job_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args([
            "local",
            "sequence",
            "--keys",
            "10",
            "--per-key",
            "1000000",
            "--rate",
            "2000",
            "--json",
            "--output",
            out.to_str().unwrap(),
        ])
        .env("EDDY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("eddy local did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "a user's cancel exits 0: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    let s: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(s["status"], "CANCELED");
}

/// Without a terminal (stderr is a pipe here), `eddy local`/`eddy run` print plain progress
/// lines, no `\r` redraws: the job's state, records/s, the last checkpoint and restarts, at each
/// status change and every two seconds.
#[test]
fn progress_without_a_terminal_is_plain_lines_with_rate_checkpoint_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let r = eddy(
        &[
            "local",
            "sequence",
            "--keys",
            "4",
            "--per-key",
            "1000",
            "--rate",
            "800",
            "--fail-every",
            "1500",
            "--output",
            out.to_str().unwrap(),
            "-p",
            "2",
            "-D",
            "execution.checkpointing.interval=300ms",
            "-D",
            "eddy.test-hooks.enabled=true",
        ],
        LIMIT,
    );
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    assert!(
        !r.stderr.contains('\r'),
        "a redraw on a pipe: {:?}",
        r.stderr
    );
    let progress: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains(" records/s, "))
        .collect();
    let running: Vec<&str> = progress
        .iter()
        .copied()
        .filter(|l| l.starts_with("RUNNING "))
        .collect();
    // 4,000 records at 800/s: at least the first line and one periodic line while RUNNING.
    assert!(running.len() >= 2, "progress lines: {progress:#?}");
    let rates: Vec<f64> = running
        .iter()
        .filter_map(|l| {
            let before = l.split(" records/s").next()?;
            before
                .rsplit(' ')
                .next()?
                .trim_end_matches('k')
                .parse()
                .ok()
        })
        .collect();
    assert!(
        rates.iter().any(|&r| r > 0.0),
        "no positive records/s in {running:#?}"
    );
    assert!(
        progress.iter().any(|l| l.contains("last checkpoint #")),
        "no last checkpoint in {progress:#?}"
    );
    assert!(
        progress
            .iter()
            .any(|l| l.starts_with("RESTARTING ") && l.contains("restarts 1")),
        "no restart in {progress:#?}"
    );
    assert!(
        progress.last().is_some_and(|l| l.starts_with("FINISHED ")),
        "{progress:#?}"
    );
    assert_eq!(witness(&committed_lines(&out), 4, 1000), (0, 0, 0));
}

/// A bounded job ends at its final checkpoint, triggered as soon as every source ended, not at
/// the next periodic one: with a 60 s interval, a job of a few seconds ends in well under it,
/// its one completed checkpoint the final one, and its committed output exact. Before, it waited
/// for the 60 s checkpoint.
#[test]
fn bounded_job_with_a_long_checkpoint_interval_ends_at_once_with_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seq");
    let started = std::time::Instant::now();
    let r = eddy(
        &[
            "local",
            "sequence",
            "--keys",
            "50",
            "--per-key",
            "400",
            "--output",
            out.to_str().unwrap(),
            "-p",
            "2",
            "--taskmanagers",
            "2",
            "-D",
            "execution.checkpointing.interval=60s",
            "--json",
        ],
        LIMIT,
    );
    let elapsed = started.elapsed();
    assert_eq!(r.code, 0, "stderr: {}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["status"], "FINISHED", "{summary}");
    assert_eq!(summary["completed_checkpoints"], 1, "{summary}");
    assert!(
        summary["duration_ms"].as_u64().unwrap() < 30_000 && elapsed < Duration::from_secs(30),
        "the job waited for the periodic checkpoint: {summary}, {elapsed:?} in all"
    );
    assert_eq!(witness(&committed_lines(&out), 50, 400), (0, 0, 0));
}
