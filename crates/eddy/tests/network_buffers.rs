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

/// Every TaskManager log line of the cluster that mentions `needle`.
fn tm_log_lines(c: &Cluster, needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&c.log).expect("log dir").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.contains("taskexecutor") || name.contains("taskmanager") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            lines.extend(
                text.lines()
                    .filter(|l| l.contains(needle))
                    .map(str::to_string),
            );
        }
    }
    lines
}

#[test]
fn the_buffer_keys_size_each_tasks_reservation_and_the_pool_and_change_the_refusal() {
    // 2 TaskManagers x 2 slots, `sequence -p 4`: a source subtask has 4 output channels (one
    // edge), a counting subtask 4 input channels.
    let keys = |pool: &str| {
        vec![
            (
                "taskmanager.network.memory.buffers-per-channel",
                "3".to_string(),
            ),
            (
                "taskmanager.network.memory.floating-buffers-per-gate",
                "5".to_string(),
            ),
            ("taskmanager.memory.segment-size", "64k".to_string()),
            ("taskmanager.memory.network.min", pool.to_string()),
            ("taskmanager.memory.network.max", pool.to_string()),
        ]
    };
    let run = |c: &Cluster, out: &Path| {
        let out = out.display().to_string();
        let r = c.cli(&[
            "run",
            "sequence",
            "--keys",
            "8",
            "--per-key",
            "200",
            "--rate",
            "4000",
            "--output",
            &out,
            "-p",
            "4",
            "-m",
            &c.rest,
            "-d",
        ]);
        assert_eq!(r.code, 0, "eddy run failed: {}", r.stderr);
        r.stdout.trim().to_string()
    };
    let dir = tempfile::tempdir().expect("temp dir");

    // 64 MiB of 64 KiB buffers: 1,024 per TaskManager; the job runs, exactly once, and every
    // subtask reserved what the keys say (a counting subtask 4 x 3 + 5 = 17, a source 4 + 1).
    let c = Cluster::start_workers(2, 2, &keys("64m"));
    let out = dir.path().join("ran");
    let job = run(&c, &out);
    c.wait_state(&job, "FINISHED");
    assert_eq!(witness(&committed_lines(&out), 8, 200), (0, 0, 0));
    let reserved = tm_log_lines(&c, "network buffers of subtask");
    let sinks = reserved
        .iter()
        .filter(|l| {
            l.contains(
                "reserved 17 buffers of 65536 bytes (4 input channels x 3 buffers-per-channel \
                 + 5 floating-buffers-per-gate + 0 output channels + 0 output edges)",
            )
        })
        .count();
    let sources = reserved
        .iter()
        .filter(|l| {
            l.contains(
                "reserved 5 buffers of 65536 bytes (0 input channels x 3 buffers-per-channel \
                 + 0 floating-buffers-per-gate + 4 output channels + 1 output edges)",
            )
        })
        .count();
    assert_eq!((sinks, sources), (4, 4), "{reserved:#?}\n{}", c.log_tail());
    assert!(
        reserved.iter().all(|l| l.contains(" of 1024 left")),
        "{reserved:#?}"
    );
    drop(c);

    // 1 MiB: 16 buffers of 64 KiB. A counting subtask needs 17: refused, and the refusal counts
    // with the same keys.
    let c = Cluster::start_workers(2, 2, &keys("1m"));
    let job = run(&c, &dir.path().join("refused"));
    c.wait_state(&job, "FAILED");
    let j = c.get(&format!("/jobs/{job}")).expect("job details");
    assert_eq!(j["restarts"].as_u64(), Some(0), "restarted: {j}");
    let reason = j["status-reason"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("Insufficient number of network buffers: required 17, but only ")
            && reason.contains(
                "4 input channels x 3 buffers-per-channel + 5 floating + 0 output channels + 0 \
                 output edges; the pool has 16 buffers of 65536 bytes in all"
            ),
        "{reason:?}"
    );
}
