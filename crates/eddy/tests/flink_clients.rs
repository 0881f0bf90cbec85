//! Apache Flink's own clients against an Eddy cluster: the real `flink` CLI of apache-flink 2.x
//! (PyPI's package, run with Java) drives `list`, `savepoint`, `stop --savepointPath` and
//! `cancel` through Eddy's REST API, and every `/v1` answer Flink's clients read is deserialized
//! into Flink's own response class with the strict object mapper of Flink's REST client
//! (tests/flink/CheckResponses.java, run against flink-dist's jar).
//!
//! Needs `java` and the project's Python venv (`$EDDY_VENV`, default /var/tmp/eddy-venv, made by
//! scripts/pyenv.sh); without either the test prints why and passes without running.
#![allow(dead_code)]

mod common;

use common::plain_cluster::Cluster;
use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
const CLI_LIMIT: Duration = Duration::from_secs(60);
/// One `flink` command: a JVM start and a few REST calls.
const FLINK_LIMIT: Duration = Duration::from_secs(120);
const JOB_LIMIT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the `flink` CLI and its jars are, or why the test cannot run.
struct Flink {
    bin: PathBuf,
    dist_jar: PathBuf,
    /// An empty `FLINK_CONF_DIR` (the CLI needs one; `-m` names the cluster).
    conf: tempfile::TempDir,
}

fn find_flink() -> Result<Flink, String> {
    let java = Command::new("java")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !java.is_ok_and(|s| s.success()) {
        return Err("no `java` on PATH (scripts/pyenv.sh's CI setup installs a JRE)".into());
    }
    let venv = std::env::var("EDDY_VENV").unwrap_or_else(|_| "/var/tmp/eddy-venv".into());
    let pyflink = Path::new(&venv).join("lib/python3.11/site-packages/pyflink");
    let bin = pyflink.join("bin/flink");
    if !bin.exists() {
        return Err(format!(
            "no Flink CLI at {} (run scripts/pyenv.sh, or set EDDY_VENV)",
            bin.display()
        ));
    }
    let dist_jar = std::fs::read_dir(pyflink.join("lib"))
        .map_err(|e| format!("cannot list {}: {e}", pyflink.join("lib").display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("flink-dist") && n.ends_with(".jar"))
        })
        .ok_or_else(|| format!("no flink-dist jar in {}", pyflink.join("lib").display()))?;
    let conf = tempfile::tempdir().expect("temp dir");
    std::fs::write(conf.path().join("config.yaml"), "").expect("write config.yaml");
    Ok(Flink {
        bin,
        dist_jar,
        conf,
    })
}

/// Runs a command with a time limit; the child is killed by its pid on timeout.
fn run_limited(cmd: &mut Command, limit: Duration) -> Outcome {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start command");
    // Read both pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Outcome {
        code,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}

impl Flink {
    /// `flink ARGS -m REST` with the empty conf dir.
    fn cli(&self, rest: &str, args: &[&str]) -> Outcome {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .args(["-m", rest])
            .env("FLINK_CONF_DIR", self.conf.path());
        let out = run_limited(&mut cmd, FLINK_LIMIT);
        eprintln!(
            "$ flink {} -m {rest}\n[exit {}]\n{}{}",
            args.join(" "),
            out.code,
            out.stdout,
            out.stderr
        );
        out
    }

    /// CheckResponses.java: each `path=class` answer deserialized into Flink's class.
    fn check_responses(&self, base: &str, specs: &[String]) -> Outcome {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/flink/CheckResponses.java");
        let mut cmd = Command::new("java");
        cmd.arg("-cp")
            .arg(&self.dist_jar)
            .arg(source)
            .arg(base)
            .args(specs);
        run_limited(&mut cmd, FLINK_LIMIT)
    }
}

/// The line `Savepoint completed. Path: PATH` of the CLI's output.
fn savepoint_path(out: &Outcome) -> PathBuf {
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Savepoint completed. Path: "))
        .unwrap_or_else(|| panic!("no savepoint path in the CLI's output:\n{}", out.stdout));
    PathBuf::from(line.trim())
}

/// `key,seq,count` lines per key: the seqs seen, and whether every count equals its seq.
fn by_key(lines: &[String]) -> (BTreeMap<u64, Vec<u64>>, bool) {
    let mut keys: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut counts_match = true;
    for l in lines {
        let f: Vec<u64> = l
            .split(',')
            .map(|x| x.trim().parse().expect("number"))
            .collect();
        assert_eq!(f.len(), 3, "bad line {l}");
        counts_match &= f[1] == f[2];
        keys.entry(f[0]).or_default().push(f[1]);
    }
    for seqs in keys.values_mut() {
        seqs.sort_unstable();
    }
    (keys, counts_match)
}

/// A raw HTTP/1.1 request (for bodies `client::request` does not send): status and body.
fn raw_request(rest: &str, head: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(rest).expect("connect");
    s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    let request = format!(
        "{head}\r\nHost: {rest}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).expect("write request");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

#[test]
fn flink_cli_lists_savepoints_stops_and_cancels_eddy_jobs() {
    let flink = match find_flink() {
        Ok(f) => f,
        Err(why) => {
            println!("skipped: the real Flink CLI cannot run here: {why}");
            return;
        }
    };
    let c = Cluster::start(4, &[]);
    let work = c.dir.path();
    let (keys, per_key) = (4u64, 3000u64);

    // Job A runs long enough for a savepoint and a stop-with-savepoint.
    let out_a = work.join("out-a");
    let a = c.run_sequence(&out_a, per_key, 200, &[]);
    c.wait_running_with_checkpoint(&a);

    // Back-pressure is graded once a TaskManager sent two heartbeats with the source's times.
    let source_vertex = c.wait_for("the source's back-pressure", || {
        let j = c.get(&format!("/jobs/{a}"))?;
        let v = j["vertices"][0]["id"].as_str()?.to_string();
        let b = c.get(&format!("/v1/jobs/{a}/vertices/{v}/backpressure"))?;
        (b["status"] == "ok").then_some(v)
    });
    // Every answer Flink's clients read, into Flink's classes (strict mapper: a missing
    // required field, a null primitive or an unknown field fails).
    let m = "org.apache.flink.runtime";
    let specs: Vec<String> = [
        (
            "/v1/overview",
            format!("{m}.rest.handler.legacy.messages.ClusterOverviewWithVersion"),
        ),
        (
            "/v1/config",
            format!("{m}.rest.messages.DashboardConfiguration"),
        ),
        (
            "/v1/jobmanager/config",
            format!("{m}.rest.messages.ConfigurationInfo"),
        ),
        (
            "/v1/jobs",
            format!("{m}.messages.webmonitor.JobIdsWithStatusOverview"),
        ),
        (
            "/v1/jobs/overview",
            format!("{m}.messages.webmonitor.MultipleJobsDetails"),
        ),
        (
            &format!("/v1/jobs/{a}"),
            format!("{m}.rest.messages.job.JobDetailsInfo"),
        ),
        (
            &format!("/v1/jobs/{a}/status"),
            format!("{m}.messages.webmonitor.JobStatusInfo"),
        ),
        (
            &format!("/v1/jobs/{a}/exceptions"),
            format!("{m}.rest.messages.JobExceptionsInfoWithHistory"),
        ),
        (
            &format!("/v1/jobs/{a}/checkpoints"),
            format!("{m}.rest.messages.checkpoints.CheckpointingStatistics"),
        ),
        (
            "/v1/taskmanagers",
            format!("{m}.rest.messages.taskmanager.TaskManagersInfo"),
        ),
        (
            &format!("/v1/jobs/{a}/vertices/{source_vertex}/backpressure"),
            format!("{m}.rest.messages.JobVertexBackPressureInfo"),
        ),
    ]
    .iter()
    .map(|(p, class)| format!("{p}={class}"))
    .collect();
    let checked = flink.check_responses(&format!("http://{}", c.rest), &specs);
    assert_eq!(
        checked.code, 0,
        "Flink's response classes refused Eddy's answers:\n{}{}",
        checked.stdout, checked.stderr
    );
    assert_eq!(
        checked
            .stdout
            .lines()
            .filter(|l| l.starts_with("ok "))
            .count(),
        specs.len()
    );

    // flink list / list -r: the running job, exit 0.
    for args in [&["list"][..], &["list", "-r"][..]] {
        let out = flink.cli(&c.rest, args);
        assert_eq!(out.code, 0, "flink {args:?} failed");
        assert!(
            out.stdout.contains(&format!(": {a} : sequence (RUNNING)")),
            "flink {args:?} does not list job {a} as RUNNING:\n{}",
            out.stdout
        );
    }

    // flink savepoint: the job keeps running; the printed path restores below.
    let sp_dir = work.join("savepoints");
    let sp_arg = sp_dir.display().to_string();
    let out = flink.cli(&c.rest, &["savepoint", &a, &sp_arg]);
    assert_eq!(out.code, 0, "flink savepoint failed");
    let savepoint = savepoint_path(&out);
    assert!(
        savepoint.starts_with(&sp_dir),
        "savepoint {savepoint:?} not under {sp_dir:?}"
    );
    assert!(
        savepoint.is_dir(),
        "the printed savepoint {savepoint:?} does not exist"
    );
    assert_eq!(c.state(&a), "RUNNING");
    // The savepoint's status as Flink's AsynchronousOperationResult<SavepointInfo> was read by
    // the CLI itself to print the path.

    // flink stop --savepointPath: a final savepoint, the job FINISHED.
    let stop_dir = work.join("stop");
    let stop_arg = stop_dir.display().to_string();
    let out = flink.cli(&c.rest, &["stop", "--savepointPath", &stop_arg, &a]);
    assert_eq!(out.code, 0, "flink stop failed");
    let final_savepoint = savepoint_path(&out);
    assert!(final_savepoint.starts_with(&stop_dir) && final_savepoint.is_dir());
    c.wait_state(&a, "FINISHED");

    // Resume from the stop's savepoint to the end: A's output and B's together are exactly once.
    let out_b = work.join("out-b");
    let final_arg = final_savepoint.display().to_string();
    let b = c.run_sequence(&out_b, per_key, 0, &["-s", &final_arg]);
    c.wait_state(&b, "FINISHED");
    let mut lines = committed_lines(&out_a);
    lines.extend(committed_lines(&out_b));
    assert_eq!(
        witness(&lines, keys, per_key),
        (0, 0, 0),
        "stop (flink CLI) + resume: (missing, duplicated, wrong counts)"
    );

    // Resume from the plain savepoint the CLI printed: every key continues where the savepoint
    // was (its first seq is past 1) with its count restored (count == seq) up to the end.
    let out_c = work.join("out-c");
    let sp_path_arg = savepoint.display().to_string();
    let job_c = c.run_sequence(&out_c, per_key, 0, &["-s", &sp_path_arg]);
    c.wait_state(&job_c, "FINISHED");
    let (seen, counts_match) = by_key(&committed_lines(&out_c));
    assert!(
        counts_match,
        "a count differs from its seq: state was not restored"
    );
    assert_eq!(
        seen.len() as u64,
        keys,
        "keys in the resumed output: {:?}",
        seen.keys()
    );
    for (key, seqs) in &seen {
        let (first, last) = (seqs[0], *seqs.last().expect("seqs"));
        assert!(
            first > 1,
            "key {key} restarted at seq 1: the savepoint was not restored"
        );
        assert_eq!(last, per_key, "key {key} did not reach the end");
        assert_eq!(
            seqs.len() as u64,
            last - first + 1,
            "key {key} has gaps or repeats"
        );
    }

    // flink cancel: exit 0, the job CANCELED.
    let out_d = work.join("out-d");
    let d = c.run_sequence(&out_d, 1_000_000, 100, &[]);
    c.wait_state(&d, "RUNNING");
    let out = flink.cli(&c.rest, &["cancel", &d]);
    assert_eq!(out.code, 0, "flink cancel failed");
    assert!(
        out.stdout.contains(&format!("Cancelled job {d}.")),
        "{}",
        out.stdout
    );
    c.wait_state(&d, "CANCELED");

    // flink list -a: every job with its final state.
    let out = flink.cli(&c.rest, &["list", "-a"]);
    assert_eq!(out.code, 0, "flink list -a failed");
    for (job, state) in [
        (&a, "FINISHED"),
        (&b, "FINISHED"),
        (&job_c, "FINISHED"),
        (&d, "CANCELED"),
    ] {
        assert!(
            out.stdout
                .contains(&format!(": {job} : sequence ({state})")),
            "flink list -a does not show {job} as {state}:\n{}",
            out.stdout
        );
    }

    // A failing command fails: a savepoint of an unknown job exits non-zero and says why.
    let unknown = "0123456789abcdef0123456789abcdef";
    let out = flink.cli(&c.rest, &["savepoint", unknown, &sp_arg]);
    assert_ne!(out.code, 0, "flink savepoint of an unknown job succeeded");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains(&format!("[unknown job {unknown}]")),
        "the CLI's output does not show Eddy's error naming the unknown job"
    );

    // What Flink's clients send to run a program (a multipart JobGraph, /jars) is refused with
    // one line saying how Eddy runs jobs.
    let (status, body) = raw_request(
        &c.rest,
        "POST /v1/jobs HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x",
        "--x--\r\n",
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Eddy cannot run Flink programs"), "{body}");
    let (status, body) = raw_request(&c.rest, "POST /v1/jars/upload HTTP/1.1", "");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("eddy run JOB"), "{body}");
}
