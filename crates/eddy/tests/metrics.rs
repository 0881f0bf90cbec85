//! `/metrics` of the JobManager (on `rest.port`) and of a TaskManager (on
//! `metrics.reporter.prom.port`) parsed by a real Prometheus text parser — the Python
//! `prometheus_client` package's, in the project's venv (`$EDDY_VENV`, default
//! /var/tmp/eddy-venv, made by scripts/pyenv.sh) — and their counters move as a job runs.
//! Without the venv the test prints why and passes without running.

mod common;

use common::plain_cluster::Cluster;
use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Reads exposition text on stdin; prints `{family: {"type", "samples": [[name, labels, value]]}}`.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for f in text_string_to_metric_families(sys.stdin.read()):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
print(json.dumps(out))
"#;

fn venv_python() -> Result<PathBuf, String> {
    let venv = std::env::var("EDDY_VENV").unwrap_or_else(|_| "/var/tmp/eddy-venv".into());
    let python = Path::new(&venv).join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "no prometheus_client in the venv {venv} (run scripts/pyenv.sh, or set EDDY_VENV)"
        ))
    }
}

/// `GET http://address/path`: status and body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(address).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
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

/// Scrapes `address` and parses the text with prometheus_client; panics if it does not parse.
fn scrape(python: &Path, address: &str) -> Value {
    let (status, text) = http_get(address, "/metrics");
    assert_eq!(status, 200, "GET {address}/metrics: {text}");
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "prometheus_client cannot parse {address}/metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// The sum of family `family`'s samples named `sample` whose labels include `labels`.
fn sum(parsed: &Value, family: &str, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(samples) = parsed[family]["samples"].as_array() else {
        panic!("no family {family} in {parsed}");
    };
    samples
        .iter()
        .filter(|s| s[0] == sample)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().expect("value"))
        .sum()
}

#[test]
fn jobmanager_and_taskmanager_metrics_parse_and_counters_move() {
    let python = match venv_python() {
        Ok(p) => p,
        Err(why) => {
            println!("skipped: no Prometheus text parser here: {why}");
            return;
        }
    };
    let tm_port = free_ports(1)[0];
    let c = Cluster::start(2, &[("metrics.reporter.prom.port", tm_port.to_string())]);
    let tm = format!("127.0.0.1:{tm_port}");
    let out = c.dir.path().join("out");
    let job = c.run_sequence(&out, 1_000_000, 400, &[]);
    c.wait_running_with_checkpoint(&job);

    let jm1 = scrape(&python, &c.rest);
    let tm1 = scrape(&python, &tm);
    std::thread::sleep(Duration::from_millis(1500));
    let jm2 = scrape(&python, &c.rest);
    let tm2 = scrape(&python, &tm);

    // The JobManager: one TaskManager, the job's counters move.
    let j = [("job_id", job.as_str())];
    assert_eq!(
        sum(
            &jm2,
            "eddy_jobmanager_taskmanagers",
            "eddy_jobmanager_taskmanagers",
            &[]
        ),
        1.0
    );
    assert_eq!(jm2["eddy_job_completed_checkpoints"]["type"], "counter");
    let checkpoints = |p: &Value| {
        sum(
            p,
            "eddy_job_completed_checkpoints",
            "eddy_job_completed_checkpoints_total",
            &j,
        )
    };
    assert!(
        checkpoints(&jm2) > checkpoints(&jm1),
        "JobManager checkpoints did not move"
    );
    let jm_out = |p: &Value| {
        sum(
            p,
            "eddy_task_records_out",
            "eddy_task_records_out_total",
            &j,
        )
    };
    assert!(
        jm_out(&jm2) > jm_out(&jm1),
        "JobManager records out did not move"
    );
    for p in [&jm2, &tm2] {
        let rss = sum(
            p,
            "eddy_process_resident_memory_bytes",
            "eddy_process_resident_memory_bytes",
            &[],
        );
        assert!(rss > 1_000_000.0, "RSS {rss}");
        assert!(
            sum(
                p,
                "eddy_process_cpu_seconds",
                "eddy_process_cpu_seconds_total",
                &[]
            ) > 0.0
        );
    }

    // The TaskManager: its subtasks' records and its heartbeats move.
    let tm_out = |p: &Value| {
        sum(
            p,
            "eddy_task_records_out",
            "eddy_task_records_out_total",
            &j,
        )
    };
    let tm_in = |p: &Value| sum(p, "eddy_task_records_in", "eddy_task_records_in_total", &j);
    assert!(
        tm_out(&tm2) > tm_out(&tm1),
        "TaskManager records out did not move"
    );
    assert!(
        tm_in(&tm2) > tm_in(&tm1),
        "TaskManager records in did not move"
    );
    let heartbeats = |p: &Value| {
        sum(
            p,
            "eddy_taskmanager_heartbeats_sent",
            "eddy_taskmanager_heartbeats_sent_total",
            &[],
        )
    };
    assert!(
        heartbeats(&tm2) > heartbeats(&tm1),
        "heartbeats did not move"
    );
    assert_eq!(
        sum(
            &tm2,
            "eddy_taskmanager_registrations",
            "eddy_taskmanager_registrations_total",
            &[]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &tm2,
            "eddy_taskmanager_slots",
            "eddy_taskmanager_slots",
            &[]
        ),
        2.0
    );
    assert!(
        sum(
            &tm2,
            "eddy_taskmanager_tasks",
            "eddy_taskmanager_tasks",
            &[]
        ) >= 2.0
    );

    // Only GET /metrics is served there.
    assert_eq!(http_get(&tm, "/other").0, 404);
}

#[test]
fn a_bad_metrics_port_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for bad in ["9300-9200", "http", "0"] {
        let r = eddy(
            &[
                "local",
                "sequence",
                "--keys",
                "1",
                "--per-key",
                "1",
                "--output",
                out.to_str().unwrap(),
                "-D",
                &format!("metrics.reporter.prom.port={bad}"),
            ],
            Duration::from_secs(60),
        );
        assert_ne!(r.code, 0, "{bad} accepted");
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{}", r.stderr);
        assert!(
            lines[0].contains("metrics.reporter.prom.port") && lines[0].contains(bad),
            "{}",
            lines[0]
        );
    }
}
