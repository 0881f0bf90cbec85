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
    let with_shared = |at_least: u64| {
        c.wait_for("a retained checkpoint with shared files", JOB_LIMIT, || {
            retained(&job_dir)
                .into_iter()
                .rev()
                .find(|(id, refs)| *id >= at_least && !refs.is_empty())
        })
    };
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
