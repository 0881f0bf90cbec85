//! Checkpoints and savepoints on S3 (issue 12, item 4), against a real S3-compatible server:
//! moto's `moto_server`, started by each test on 127.0.0.1 and a free port and SIGKILLed by pid
//! when the test ends (`common::moto`).
//!
//! * the storage layer: a checkpoint counts only once its `_metadata` object exists; lengths and
//!   checksums are verified; discarding removes every object; a savepoint copied within S3 is
//!   self-contained and disposable;
//! * a JobManager crashing (fault point) after every state file was uploaded and before
//!   `_metadata` leaves no counted checkpoint;
//! * the `sequence` job with checkpoints on S3 under HA (the completed-checkpoint store in
//!   ZooKeeper points at `s3://` paths): a TaskManager SIGKILLed mid-run, the job restores from
//!   S3, the exactly-once witness holds, retention deletes old checkpoints on S3;
//! * stop-with-savepoint to `s3://`, resume from it, witness holds; dispose removes it.

mod common;

use common::ha_cluster::*;
use common::moto::{self, Moto};
use common::*;
use eddy_core::JobId;
use eddy_recovery::metadata::{CheckpointKind, OperatorInfo};
use eddy_recovery::storage::{self, S3Settings};
use eddy_recovery::{
    CheckpointStorage, CompletedCheckpoint, ExecutionVertexId, OperatorSubtaskState, TaskState,
    TaskStateSnapshot, VerifyLevel,
};
use serde_json::Value;
use std::time::Duration;

fn settings(m: &Moto) -> S3Settings {
    S3Settings {
        endpoint: Some(m.endpoint()),
        region: Some(moto::REGION.into()),
        access_key: Some(moto::ACCESS_KEY.into()),
        secret_key: Some(moto::SECRET_KEY.into()),
        path_style: Some(true),
    }
}

fn checkpoint(
    job: JobId,
    id: u64,
    kind: CheckpointKind,
    files: Vec<eddy_recovery::StateFileHandle>,
) -> CompletedCheckpoint {
    CompletedCheckpoint {
        job_id: job,
        checkpoint_id: id,
        kind,
        trigger_timestamp_ms: 1,
        completion_timestamp_ms: 2,
        tasks: vec![TaskState {
            task: ExecutionVertexId::new(0, 0),
            state: TaskStateSnapshot {
                operators: vec![OperatorSubtaskState {
                    operator_uid: "count".into(),
                    key_groups: None,
                    files,
                    inline: Vec::new(),
                    rocksdb: None,
                }],
            },
        }],
        operators: vec![OperatorInfo {
            uid: "count".into(),
            parallelism: 1,
            max_parallelism: 128,
        }],
    }
}

#[test]
fn checkpoint_storage_on_s3_counts_a_checkpoint_only_with_its_metadata_verifies_and_discards() {
    let dir = tempfile::tempdir().unwrap();
    let m = Moto::start(&dir.path().join("moto.log"));
    m.create_bucket("lib");
    storage::configure_s3(settings(&m));
    let job = JobId(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let s = CheckpointStorage::new("s3://lib/checkpoints", job);
    let prefix = format!("checkpoints/{job}/");

    // State uploaded, no `_metadata` yet: nothing counts.
    let big = vec![7u8; 100_000];
    let h1 = s.write_state_file(1, "count", 0, &big).unwrap();
    let h2 = s.write_state_file(1, "count", 1, b"small").unwrap();
    assert_eq!(h1.len, 100_000);
    assert_eq!(s.list_retained().unwrap(), Vec::<u64>::new());
    assert!(s
        .latest_restorable(VerifyLevel::Full)
        .unwrap()
        .checkpoint
        .is_none());
    // Ids never repeat: the uncounted attempt is seen.
    assert_eq!(s.highest_checkpoint_id().unwrap(), Some(1));

    // `_metadata` written: the checkpoint counts, reads back and verifies.
    let cp = checkpoint(job, 1, CheckpointKind::Checkpoint, vec![h1.clone(), h2]);
    let path = s.write_metadata(&cp).unwrap();
    assert_eq!(
        path.to_str().unwrap(),
        format!("s3://lib/checkpoints/{job}/chk-1/_metadata")
    );
    // Writing the same `_metadata` again is success; different content is refused.
    s.write_metadata(&cp).unwrap();
    let mut other = cp.clone();
    other.completion_timestamp_ms = 3;
    assert!(s.write_metadata(&other).is_err());
    assert_eq!(s.list_retained().unwrap(), vec![1]);
    let before = storage::bytes_read();
    assert_eq!(s.read_state_file(1, &h1).unwrap(), big);
    assert!(storage::bytes_read() >= before + 100_000);
    let sel = s.latest_restorable(VerifyLevel::Full).unwrap();
    assert_eq!(sel.checkpoint.map(|c| c.checkpoint_id), Some(1));
    // What the HA store keeps: the pointer, read back by the free function.
    let read = storage::read_metadata(&path).unwrap();
    assert_eq!(read.checkpoint_id, 1);

    // A state file that no longer matches its handle: checkpoint 2 is skipped, 1 is chosen.
    let h3 = s.write_state_file(2, "count", 0, b"v1").unwrap();
    s.write_metadata(&checkpoint(
        job,
        2,
        CheckpointKind::Checkpoint,
        vec![h3.clone()],
    ))
    .unwrap();
    let tampered = format!("s3://lib/checkpoints/{job}/chk-2/{}", h3.path);
    storage::s3::put(std::path::Path::new(&tampered), b"v2-longer".to_vec()).unwrap();
    let sel = s.latest_restorable(VerifyLevel::Lengths).unwrap();
    assert_eq!(sel.checkpoint.map(|c| c.checkpoint_id), Some(1));
    assert_eq!(sel.skipped.len(), 1, "{:?}", sel.skipped);
    assert!(
        sel.skipped[0].to_string().contains("length mismatch"),
        "{}",
        sel.skipped[0]
    );

    // A savepoint: copied within S3, self-contained, opened and disposed of.
    let sp_dir = eddy_recovery::savepoint::new_savepoint_dir(
        std::path::Path::new("s3://lib/savepoints"),
        job,
    );
    let sp = checkpoint(
        job,
        1,
        CheckpointKind::Savepoint,
        cp.files().cloned().collect(),
    );
    eddy_recovery::savepoint::finalize_savepoint(&s.checkpoint_dir(1), &sp_dir, &sp).unwrap();
    let (opened_dir, opened) = eddy_recovery::savepoint::open_snapshot(&sp_dir).unwrap();
    assert_eq!(opened_dir, sp_dir);
    let files: Vec<_> = opened.files().cloned().collect();
    assert_eq!(
        storage::read_state_file(&opened_dir, &files[0]).unwrap(),
        big
    );

    // Discarding removes `_metadata` and every state object of the checkpoint.
    s.discard(1).unwrap();
    s.discard(2).unwrap();
    assert_eq!(m.keys("lib", &prefix), Vec::<String>::new());
    assert_eq!(s.list_retained().unwrap(), Vec::<u64>::new());
    assert_eq!(s.remove_stale_temp_files(Duration::ZERO).unwrap(), 0);
    // The savepoint does not depend on the discarded checkpoint.
    assert!(eddy_recovery::savepoint::open_snapshot(&sp_dir).is_ok());
    eddy_recovery::savepoint::dispose(&sp_dir).unwrap();
    assert_eq!(m.keys("lib", "savepoints/"), Vec::<String>::new());

    // A bucket that does not exist: one line naming the location.
    let missing = CheckpointStorage::new("s3://no-such-bucket/chk", job);
    let e = missing
        .write_state_file(1, "count", 0, b"x")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("cannot write s3://no-such-bucket/chk/"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

/// The `sequence` job's keys (enough that each subtask's keyed state goes to a state file rather
/// than inline into `_metadata`).
const KEYS: u64 = 2000;

#[test]
fn a_jobmanager_crash_between_the_state_uploads_and_metadata_leaves_no_counted_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let m = Moto::start(&dir.path().join("moto.log"));
    m.create_bucket("crash");
    let out = dir.path().join("out");
    let mut args: Vec<String> = [
        "local",
        "sequence",
        "--keys",
        &KEYS.to_string(),
        "--per-key",
        "1000000",
        "--rate",
        "20000",
        "--output",
        out.to_str().unwrap(),
        "-p",
        "2",
        "-D",
        "eddy.test-hooks.enabled=true",
        "-D",
        "execution.checkpointing.interval=300 ms",
        "-D",
        "state.checkpoints.dir=s3://crash/chk",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (k, v) in m.config_keys() {
        args.push("-D".into());
        args.push(format!("{k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = eddy_with_env(
        &args,
        &[("EDDY_FAULT_POINTS", "jm.checkpoint.before-metadata")],
        Duration::from_secs(120),
    );
    assert_eq!(
        r.code,
        eddy_core::faultpoint::EXIT_CODE,
        "stdout: {} stderr: {}",
        r.stdout,
        r.stderr
    );
    let keys = m.keys("crash", "chk/");
    // Every subtask acknowledged checkpoint 1: its state objects are on S3 ...
    assert!(
        keys.iter().any(|k| k.contains("/chk-1/")),
        "no state uploaded: {keys:?}"
    );
    // ... but no `_metadata`: checkpoint 1 does not count.
    assert!(
        !keys.iter().any(|k| k.ends_with("/_metadata")),
        "a _metadata object exists: {keys:?}"
    );
    storage::configure_s3(settings(&m));
    let job: JobId = keys[0]
        .split('/')
        .nth(1)
        .and_then(|j| JobId::parse(j).ok())
        .expect("a job id in the key");
    let s = CheckpointStorage::new("s3://crash/chk", job);
    assert_eq!(s.list_retained().unwrap(), Vec::<u64>::new());
    assert!(s
        .latest_restorable(VerifyLevel::Lengths)
        .unwrap()
        .checkpoint
        .is_none());
}

fn s3_cluster(name: &str, m: &Moto, bucket: &str, workers: usize) -> Cluster {
    m.create_bucket(bucket);
    let mut extra: Vec<(&str, String)> = m.config_keys();
    extra.push((
        "execution.checkpointing.dir",
        format!("s3://{bucket}/checkpoints"),
    ));
    extra.push(("state.savepoints.dir", format!("s3://{bucket}/savepoints")));
    extra.push(("state.backend.local-recovery", "true".into()));
    let local = format!("{}/local-{name}", std::env::temp_dir().display());
    extra.push(("taskmanager.state.local.root-dirs", local));
    Cluster::start(name, 1, workers, Duration::from_secs(20), &extra)
}

/// `checkpoints/<job>/chk-<n>/_metadata` objects in `bucket`: the ids.
fn metadata_ids(m: &Moto, bucket: &str, job: &str) -> Vec<u64> {
    m.keys(bucket, &format!("checkpoints/{job}/"))
        .iter()
        .filter_map(|k| {
            k.strip_suffix("/_metadata")?
                .rsplit('/')
                .next()?
                .strip_prefix("chk-")?
                .parse()
                .ok()
        })
        .collect()
}

impl Cluster {
    fn checkpoints(&self, job: &str) -> Option<Value> {
        self.get(0, &format!("/jobs/{job}/checkpoints"))
    }

    fn await_end(&self, job: &str) -> Value {
        self.wait_for("the job to end", JOB_LIMIT, || {
            self.get(0, &format!("/jobs/{job}/eddy-details"))
                .filter(|d| matches!(status(d), "FINISHED" | "FAILED" | "CANCELED"))
        })
    }

    /// A TaskManager holding slots: its pid.
    fn busy_taskmanager(&self) -> u32 {
        self.wait_for("a TaskManager with allocated slots", JOB_LIMIT, || {
            let v = self.get(0, "/taskmanagers")?;
            v["taskmanagers"].as_array()?.iter().find_map(|t| {
                (t["freeSlots"].as_u64()? < t["slotsNumber"].as_u64()?)
                    .then(|| t["pid"].as_u64())
                    .flatten()
                    .map(|p| p as u32)
            })
        })
    }
}

/// (bytes from checkpoint storage, bytes from local copies) of every restore the TaskManagers
/// logged.
fn restore_reads(c: &Cluster) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(&c.log).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("eddy-taskmanager") && name.ends_with(".log")) {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for l in text
            .lines()
            .filter(|l| l.contains("bytes of state files from checkpoint storage"))
        {
            let mut n = l
                .rsplit_once(": ")
                .map(|(_, t)| t)
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok());
            if let (Some(a), Some(b)) = (n.next(), n.next()) {
                out.push((a, b));
            }
        }
    }
    out
}

#[test]
fn sequence_with_checkpoints_on_s3_under_ha_survives_a_taskmanager_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let m = Moto::start(&dir.path().join("moto.log"));
    let c = s3_cluster("s3tm", &m, "tmkill", 2);
    let (job, output) = c.submit_sequence(KEYS, 6, 2000);
    c.wait_for("two completed checkpoints", JOB_LIMIT, || {
        c.checkpoints(&job)
            .filter(|s| s["counts"]["completed"].as_u64() >= Some(2))
    });
    // The completed checkpoints are on S3, with `_metadata`, and no local checkpoint dir exists.
    assert!(!metadata_ids(&m, "tmkill", &job).is_empty());
    assert!(!c.dir.path().join("checkpoints").exists());
    let victim = c.busy_taskmanager();
    signal(victim, libc::SIGKILL);
    let restored = c.wait_for("a restore from a checkpoint on S3", JOB_LIMIT, || {
        c.checkpoints(&job)
            .and_then(|s| s["latest"]["restored"]["id"].as_u64())
    });
    // Retention works on S3: num-retained (2), plus the checkpoint just completed while the
    // oldest is being discarded.
    for _ in 0..5 {
        let ids = metadata_ids(&m, "tmkill", &job);
        assert!(ids.len() <= 3, "retained on S3: {ids:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ids = metadata_ids(&m, "tmkill", &job);
    assert!(
        ids.iter().max() < Some(&3) || !ids.contains(&1),
        "checkpoint 1 was never deleted from S3: {ids:?}"
    );
    let end = c.await_end(&job);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    // Local recovery is on, but the killed TaskManager's copies went with it: the subtasks that
    // ran there restored from S3.
    let reads = restore_reads(&c);
    assert!(
        reads.iter().any(|(storage, _)| *storage > 0),
        "no restore read S3 after the TaskManager loss: {reads:?}\n{}",
        c.log_tail()
    );
    let lines = committed_lines(&output);
    assert_eq!(
        witness(&lines, KEYS, 6),
        (0, 0, 0),
        "(missing, duplicates, wrong counts) after restoring checkpoint {restored}\n{}",
        c.log_tail()
    );
}

#[test]
fn stop_with_savepoint_to_s3_then_resume_from_it_keeps_exactly_once_and_dispose_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = Moto::start(&dir.path().join("moto.log"));
    let c = s3_cluster("s3sp", &m, "savepoint-test", 2);
    let (keys, per_key) = (KEYS, 40);
    let (job, output) = c.submit_sequence(keys, per_key, 4000);
    c.wait_for("a completed checkpoint", JOB_LIMIT, || {
        c.checkpoints(&job)
            .filter(|s| s["counts"]["completed"].as_u64() >= Some(1))
    });
    // A target with a scheme Eddy cannot write: one line, the job goes on.
    let bad = c.cli(&["savepoint", &job, "gs://b/sp", "--conf", c.conf_str()]);
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("invalid savepoint target directory 'gs://b/sp'"),
        "{}",
        bad.stderr
    );
    assert_eq!(bad.stderr.trim().lines().count(), 1, "{}", bad.stderr);
    let out = c.cli(&[
        "stop",
        &job,
        "--savepoint-path",
        "s3://savepoint-test/mine",
        "--conf",
        c.conf_str(),
    ]);
    assert_eq!(out.code, 0, "eddy stop: {}\n{}", out.stderr, c.log_tail());
    let sp = out.stdout.trim().to_string();
    assert!(
        sp.starts_with("s3://savepoint-test/mine/savepoint-"),
        "{sp}"
    );
    let sp_key = sp.trim_start_matches("s3://savepoint-test/");
    assert!(
        m.keys("savepoint-test", sp_key)
            .iter()
            .any(|k| k.ends_with("/_metadata")),
        "{:?}",
        m.keys("savepoint-test", "")
    );
    let end = c.await_end(&job);
    assert_eq!(status(&end), "FINISHED", "{end}");
    let (missing, _, _) = witness(&committed_lines(&output), keys, per_key);
    assert!(missing > 0, "the first run was stopped before its end");

    // Resume from the savepoint on S3 to the end.
    let run = c.cli(&[
        "run",
        "sequence",
        "--keys",
        &keys.to_string(),
        "--per-key",
        &per_key.to_string(),
        "--rate",
        "100000",
        "--output",
        &output.display().to_string(),
        "-p",
        "2",
        "-s",
        &sp,
        "--conf",
        c.conf_str(),
        "-d",
    ]);
    assert_eq!(run.code, 0, "eddy run -s: {}\n{}", run.stderr, c.log_tail());
    let second = run.stdout.trim().to_string();
    let end = c.await_end(&second);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness(&committed_lines(&output), keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts) over both runs\n{}",
        c.log_tail()
    );

    // The savepoint is the user's: still there, until disposed of.
    let d = c.cli(&["savepoint", "--dispose", &sp, "--conf", c.conf_str()]);
    assert_eq!(d.code, 0, "dispose: {}", d.stderr);
    assert_eq!(m.keys("savepoint-test", sp_key), Vec::<String>::new());
}
