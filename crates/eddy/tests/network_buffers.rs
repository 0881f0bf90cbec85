//! Issue 15: the network buffer pool of a TaskManager (`taskmanager.memory.network.*`). A job at
//! `-p 32` on 8 TaskManagers x 4 slots (a keyed exchange: 32 x 32 channels) is refused at
//! deployment with one clear line when the pool is too small — the job ends FAILED, it does not
//! restart in a loop — and runs exactly once with the default pool.

mod common;

use common::plain_cluster::Cluster;
use common::*;
use std::path::Path;

const TASKMANAGERS: usize = 8;
const P: &str = "32";
const KEYS: u64 = 64;
const PER_KEY: u64 = 50;

fn cluster(extra: &[(&str, String)]) -> Cluster {
    let c = Cluster::start_workers(TASKMANAGERS, 4, extra);
    c.wait_for("8 TaskManagers registered", || {
        let tms = c.get("/taskmanagers")?;
        (tms["taskmanagers"].as_array()?.len() == TASKMANAGERS).then_some(())
    });
    c
}

/// `eddy run sequence -p 32 -d`: the job id.
fn submit(c: &Cluster, out: &Path) -> String {
    let (keys, per_key, out) = (
        KEYS.to_string(),
        PER_KEY.to_string(),
        out.display().to_string(),
    );
    let run = c.cli(&[
        "run",
        "sequence",
        "--keys",
        &keys,
        "--per-key",
        &per_key,
        "--rate",
        "2000",
        "--output",
        &out,
        "-p",
        P,
        "-m",
        &c.rest,
        "-d",
    ]);
    assert_eq!(run.code, 0, "eddy run failed: {}", run.stderr);
    run.stdout.trim().to_string()
}

#[test]
fn a_job_at_p32_on_8_taskmanagers_is_refused_by_a_too_small_pool_and_runs_with_the_default() {
    // 4 MiB = 128 buffers of 32 KiB per TaskManager. A sink subtask needs 32 x 2 exclusive +
    // 8 floating = 72, a source 32 output channels + 1 = 33; 4 of each share a TaskManager
    // (420 buffers), so some subtask on every TaskManager cannot get its minimum.
    let small = cluster(&[
        ("taskmanager.memory.network.min", "4m".into()),
        ("taskmanager.memory.network.max", "4m".into()),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let job = submit(&small, &dir.path().join("refused"));
    small.wait_state(&job, "FAILED");
    let j = small.get(&format!("/jobs/{job}")).expect("job details");
    assert_eq!(j["restarts"].as_u64(), Some(0), "restarted: {j}");
    let reason = j["status-reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("Insufficient number of network buffers: required ")
            && reason.contains(" available on TaskManager tm-")
            && reason.contains("Increase taskmanager.memory.network.fraction/min/max")
            && !reason.contains('\n'),
        "not the one-line refusal: {reason:?}"
    );
    let exceptions = small
        .get(&format!("/jobs/{job}/exceptions"))
        .expect("exceptions")
        .to_string();
    assert!(
        exceptions.contains("Insufficient number of network buffers"),
        "{exceptions}"
    );
    drop(small);

    // The same job with the default pool (10 % of 1728 MiB: 5,529 buffers) runs, exactly once.
    let default = cluster(&[]);
    let out = dir.path().join("ran");
    let job = submit(&default, &out);
    default.wait_state(&job, "FINISHED");
    let j = default.get(&format!("/jobs/{job}")).expect("job details");
    assert_eq!(j["restarts"].as_u64(), Some(0), "{j}");
    assert_eq!(
        witness(&committed_lines(&out), KEYS, PER_KEY),
        (0, 0, 0),
        "missing, duplicates, wrong counts"
    );
}
