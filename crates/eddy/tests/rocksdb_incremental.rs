//! Incremental RocksDB checkpoints end to end (issue 12 item 2), with a real ZooKeeper and real
//! processes (`eddy cluster start`): the `sequence` job with `state.backend.type: rocksdb` and
//! `execution.checkpointing.incremental: true`; two TaskManagers and the leading JobManager are
//! SIGKILLed in turn. The exactly-once witness holds; every shared file a retained checkpoint
//! refers to exists; the shared files of checkpoints no longer retained that no retained
//! checkpoint refers to are deleted, also by the new leader after the JobManager failover (its
//! registry is rebuilt from the retained checkpoints' metadata).

mod common;

use common::ha_cluster::*;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Every string value under `v` that names a shared file.
fn shared_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::String(s) if s.starts_with("../shared/") => {
            out.insert(s["../shared/".len()..].to_string());
        }
        Value::Array(a) => a.iter().for_each(|x| shared_refs(x, out)),
        Value::Object(o) => o.values().for_each(|x| shared_refs(x, out)),
        _ => {}
    }
}

/// The completed checkpoints under `job_dir` (id → shared files they refer to).
fn retained(job_dir: &Path) -> BTreeMap<u64, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(job_dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(id) = name
            .strip_prefix("chk-")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path().join("_metadata")) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let mut refs = BTreeSet::new();
        shared_refs(&v, &mut refs);
        out.insert(id, refs);
    }
    out
}

fn shared_files(job_dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(job_dir.join("shared"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// Waits for the newest retained checkpoint numbered at least `at_least` that refers to shared
/// files; returns its id and those files.
fn wait_for_shared_checkpoint(
    c: &Cluster,
    job_dir: &Path,
    at_least: u64,
) -> (u64, BTreeSet<String>) {
    c.wait_for("a retained checkpoint with shared files", JOB_LIMIT, || {
        retained(job_dir)
            .into_iter()
            .rev()
            .find(|(id, refs)| *id >= at_least && !refs.is_empty())
    })
}

/// Every shared file a retained checkpoint refers to exists (checked against a checkpoint
/// still there after the listing, so a concurrent subsumption is not mistaken for a loss).
fn assert_referenced_files_exist(c: &Cluster, job_dir: &Path) {
    let refs = retained(job_dir);
    let present = shared_files(job_dir);
    for (id, files) in &refs {
        let missing: Vec<&String> = files.iter().filter(|f| !present.contains(*f)).collect();
        if !missing.is_empty() && job_dir.join(format!("chk-{id}/_metadata")).exists() {
            panic!(
                "checkpoint {id} is retained but its shared files {missing:?} are gone\n{}",
                c.log_tail()
            );
        }
    }
}

#[test]
fn incremental_rocksdb_two_taskmanager_kills_and_a_leader_kill_witness_holds_and_shared_files_follow_retention(
) {
    let c = Cluster::start(
        "rocksincr",
        2,
        3,
        Duration::from_secs(10),
        &[
            ("state.backend.type", "rocksdb".to_string()),
            ("execution.checkpointing.incremental", "true".to_string()),
            ("state.checkpoints.num-retained", "1".to_string()),
        ],
    );
    let (keys, per_key) = (10, 12000);
    let (job, output) = c.submit_sequence(keys, per_key, 2500);
    let job_dir: PathBuf = c.dir.path().join("checkpoints").join(&job);
    let with_shared = |at_least: u64| wait_for_shared_checkpoint(&c, &job_dir, at_least);
    let (first, first_refs) = with_shared(1);
    let kill_tm = |i: usize| {
        let pid = c.pid_of("taskmanager", i).expect("taskmanager pid");
        signal(pid, libc::SIGKILL);
    };
    let running_again = |skip: &[usize]| {
        c.wait_for("the job running again", JOB_LIMIT, || {
            c.running_on(&job, skip)
        })
    };

    kill_tm(0);
    running_again(&[]);
    let (after_tm, _) = with_shared(first + 3);
    assert_referenced_files_exist(&c, &job_dir);

    let leader = c.leader();
    signal(
        c.pid_of("jobmanager", leader).expect("leader pid"),
        libc::SIGKILL,
    );
    running_again(&[leader]);
    let (after_jm, _) = with_shared(after_tm + 3);
    assert_referenced_files_exist(&c, &job_dir);
    // Files only the first checkpoint referred to are gone: it is no longer retained, and the
    // new leader's registry (rebuilt from the retained metadata) released them when the
    // checkpoint referring to them was subsumed.
    c.wait_for(
        "the first checkpoint's unreferenced shared files deleted",
        JOB_LIMIT,
        || {
            let now_referenced: BTreeSet<String> =
                retained(&job_dir).into_values().flatten().collect();
            let present = shared_files(&job_dir);
            let leftover: Vec<&String> = first_refs
                .iter()
                .filter(|f| !now_referenced.contains(*f) && present.contains(*f))
                .collect();
            leftover.is_empty().then_some(())
        },
    );
    assert!(!job_dir.join(format!("chk-{first}")).exists());

    kill_tm(1);
    running_again(&[leader]);
    with_shared(after_jm + 2);
    assert_referenced_files_exist(&c, &job_dir);

    let end = c.wait_for("the job to end", JOB_LIMIT, || {
        c.leaders(&[]).into_iter().find_map(|l| {
            c.get(l, &format!("/jobs/{job}/eddy-details"))
                .filter(|d| matches!(status(d), "FINISHED" | "FAILED" | "CANCELED"))
        })
    });
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    let lines = committed_lines(&output);
    assert_eq!(
        witness(&lines, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)\n{}",
        c.log_tail()
    );
}

/// [`Cluster::configure`] with rocksdb + incremental checkpoints (one retained) and test hooks,
/// then `eddy cluster start` with the fault point `point` armed in every process to crash once
/// the test creates the returned trigger file (`exit-on-file-…`: only the first process to
/// pass the point then crashes, once).
fn start_armed(name: &str, masters: usize, point: &str) -> (Cluster, PathBuf) {
    let c = Cluster::configure(
        name,
        masters,
        2,
        Duration::from_secs(10),
        &[
            ("state.backend.type", "rocksdb".to_string()),
            ("execution.checkpointing.incremental", "true".to_string()),
            ("state.checkpoints.num-retained", "1".to_string()),
            ("eddy.test-hooks.enabled", "true".to_string()),
        ],
    );
    let trigger = c.dir.path().join("crash-now");
    let spec = format!("{point}=exit-on-file-{}", trigger.display());
    let out = eddy_with_env(
        &["cluster", "start", "--conf", c.conf_str()],
        &[("EDDY_LOG", "info"), ("EDDY_FAULT_POINTS", &spec)],
        CLI_LIMIT,
    );
    assert_eq!(
        out.code,
        0,
        "cluster start: {}\n{}",
        out.stderr,
        c.log_tail()
    );
    (c, trigger)
}

/// Waits until the process of `role` `index` that crashed at `point` is gone; checks its logs
/// say so. Returns its index.
fn await_crash(c: &Cluster, role: &str, count: usize, point: &str) -> usize {
    let pids: Vec<(usize, u32)> = (0..count)
        .filter_map(|i| Some((i, c.pid_of(role, i)?)))
        .collect();
    let crashed = c.wait_for(&format!("a {role} to crash at {point}"), JOB_LIMIT, || {
        pids.iter().find(|(_, p)| !alive(*p)).map(|(i, _)| *i)
    });
    let said = std::fs::read_dir(&c.log)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("eddy-{role}-{crashed}"))
        })
        .any(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .contains(&format!("fault point '{point}' reached"))
        });
    assert!(
        said,
        "{role} {crashed} crashed at {point}\n{}",
        c.log_tail()
    );
    crashed
}

/// The shared files no retained checkpoint refers to.
fn unreferenced(job_dir: &Path) -> BTreeSet<String> {
    let referenced: BTreeSet<String> = retained(job_dir).into_values().flatten().collect();
    shared_files(job_dir)
        .into_iter()
        .filter(|f| !referenced.contains(f))
        .collect()
}

/// The job ended FINISHED (its checkpoints discarded) with the witness holding; returns what is
/// left in its checkpoint directory: the shared files, and any other entry.
fn finished_leftovers(
    c: &Cluster,
    job: &str,
    output: &Path,
    keys: u64,
    per_key: u64,
) -> (BTreeSet<String>, Vec<String>) {
    let end = c.wait_for("the job to end", JOB_LIMIT, || {
        c.leaders(&[]).into_iter().find_map(|l| {
            c.get(l, &format!("/jobs/{job}/eddy-details"))
                .filter(|d| matches!(status(d), "FINISHED" | "FAILED" | "CANCELED"))
        })
    });
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    let lines = committed_lines(output);
    assert_eq!(
        witness(&lines, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)\n{}",
        c.log_tail()
    );
    let job_dir = c.dir.path().join("checkpoints").join(job);
    // The finished job's checkpoints are discarded (after FINISHED shows): wait for the last
    // checkpoint directory to go.
    let others = c.wait_for(
        "the finished job's checkpoints discarded",
        JOB_LIMIT,
        || {
            let others: Vec<String> = std::fs::read_dir(&job_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n != "shared")
                .collect();
            (!others.iter().any(|n| n.starts_with("chk-"))).then_some(others)
        },
    );
    (shared_files(&job_dir), others)
}

/// A TaskManager crashes at `tm.checkpoint.rocksdb.after-upload`: it uploaded a native
/// snapshot's new SST files into `shared/` and dies before acknowledging. The job restores on
/// the other TaskManager from the retained checkpoint (its shared files all there) and finishes
/// with the witness holding. What is left: only SST files uploaded by the crashed TaskManager for
/// the checkpoint in flight (nothing refers to them; docs/checkpoint-storage.md), nothing of the
/// retained or discarded checkpoints.
#[test]
fn taskmanager_crash_after_uploading_sst_files_leaves_only_that_uploads_files() {
    let point = "tm.checkpoint.rocksdb.after-upload";
    let (c, trigger) = start_armed("rocks-tm-crash", 1, point);
    let (keys, per_key) = (10, 4000);
    let (job, output) = c.submit_sequence(keys, per_key, 2000);
    let job_dir = c.dir.path().join("checkpoints").join(&job);
    wait_for_shared_checkpoint(&c, &job_dir, 0);
    let before = shared_files(&job_dir);
    let armed_at = std::time::SystemTime::now();
    std::fs::write(&trigger, b"").expect("trigger file");
    await_crash(&c, "taskmanager", 2, point);
    let crashed_at = std::time::SystemTime::now();
    assert!(!trigger.exists());
    c.wait_for("the job running again", JOB_LIMIT, || {
        c.running_on(&job, &[])
    });
    // Restored from the retained checkpoint: its shared files are all there, and the next
    // checkpoints complete.
    let first_after = retained(&job_dir).keys().max().copied().unwrap_or(0) + 2;
    c.wait_for("two more checkpoints", JOB_LIMIT, || {
        assert_referenced_files_exist(&c, &job_dir);
        (retained(&job_dir).keys().max() >= Some(&first_after)).then_some(())
    });
    assert_referenced_files_exist(&c, &job_dir);
    let (left, others) = finished_leftovers(&c, &job, &output, keys, per_key);
    assert!(
        others.is_empty(),
        "left in the job's checkpoint directory: {others:?}"
    );
    // Orphans: only files written between the trigger and the crash (the crashed upload).
    for f in &left {
        assert!(
            !before.contains(f),
            "{f} (uploaded before the crash) was not deleted"
        );
        let written = std::fs::metadata(job_dir.join("shared").join(f))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(
            written >= armed_at && written <= crashed_at,
            "{f} was not uploaded by the crashed TaskManager"
        );
    }
    eprintln!("orphaned by the crashed upload: {left:?}");
}

/// The leading JobManager crashes at `jm.checkpoint.discard.before-shared`: a subsumed
/// checkpoint is unregistered and its directory deleted, the shared files only it referred to
/// are not deleted yet. The new leader restores from the retained checkpoint (every shared file
/// it refers to is there), the job finishes with the witness holding, and what is left are
/// exactly the files that discard would have deleted (nothing refers to them any more, so no
/// later leader collects them; docs/checkpoint-storage.md) — and at most the files uploaded for
/// a checkpoint the crashed leader had in flight, nothing uploaded under the new leader.
#[test]
fn leader_crash_before_deleting_released_shared_files_leaks_those_files_and_nothing_newer() {
    let point = "jm.checkpoint.discard.before-shared";
    let (c, trigger) = start_armed("rocks-jm-crash", 2, point);
    let (keys, per_key) = (10, 5000);
    let (job, output) = c.submit_sequence(keys, per_key, 2000);
    let job_dir = c.dir.path().join("checkpoints").join(&job);
    wait_for_shared_checkpoint(&c, &job_dir, 0);
    let leader = c.leader();
    std::fs::write(&trigger, b"").expect("trigger file");
    let crashed = await_crash(&c, "jobmanager", 2, point);
    assert_eq!(crashed, leader, "the leader crashed");
    // The files the crashed discard released: present, and no retained checkpoint refers to
    // them.
    let leaked = unreferenced(&job_dir);
    assert!(
        !leaked.is_empty(),
        "the point is reached only with files to delete"
    );
    assert_referenced_files_exist(&c, &job_dir);
    c.wait_for("the job running again", JOB_LIMIT, || {
        c.running_on(&job, &[leader])
    });
    let new_leader_runs = std::time::SystemTime::now();
    let first_after = retained(&job_dir).keys().max().copied().unwrap_or(0) + 2;
    c.wait_for("two more checkpoints", JOB_LIMIT, || {
        assert_referenced_files_exist(&c, &job_dir);
        (retained(&job_dir).keys().max() >= Some(&first_after)).then_some(())
    });
    let (left, others) = finished_leftovers(&c, &job, &output, keys, per_key);
    assert!(
        others.is_empty(),
        "left in the job's checkpoint directory: {others:?}"
    );
    // Left over: the files the crashed discard released, and at most files uploaded for a
    // checkpoint the crashed leader had in flight (written before the new leader ran the job).
    let missing: Vec<&String> = leaked.difference(&left).collect();
    assert!(
        missing.is_empty(),
        "released files deleted after all: {missing:?}"
    );
    let in_flight: BTreeSet<&String> = left.difference(&leaked).collect();
    for f in &in_flight {
        let written = std::fs::metadata(job_dir.join("shared").join(f))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(
            written <= new_leader_runs,
            "{f}, uploaded under the new leader, was not deleted"
        );
    }
    eprintln!("leaked by the crashed discard: {leaked:?}; uploaded for a checkpoint in flight: {in_flight:?}");
}
