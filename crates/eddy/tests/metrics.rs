//! `/metrics` of the JobManager (on `rest.port`) and of a TaskManager (on
//! `metrics.reporter.prom.port`) parsed by a real Prometheus text parser — the Python
//! `prometheus_client` package's, in the project's venv (`$EDDY_VENV`, default
//! /var/tmp/eddy-venv, made by scripts/pyenv.sh) — and their counters move as a job runs.
//! Without the venv the test prints why and passes without running.

mod common;

use common::plain_cluster::Cluster;
use common::prometheus::*;
use common::*;
use serde_json::Value;
use std::time::Duration;

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
    let histogram_count = |p: &Value, family: &str| sum(p, family, &format!("{family}_count"), &j);
    for family in [
        "eddy_job_checkpoint_duration_seconds",
        "eddy_job_checkpoint_size_bytes",
    ] {
        assert_eq!(jm2[family]["type"], "histogram");
        assert!(
            histogram_count(&jm2, family) > histogram_count(&jm1, family),
            "{family} did not move"
        );
    }
    let jm_counter = |p: &Value, family: &str| sum(p, family, &format!("{family}_total"), &[]);
    assert_eq!(
        jm_counter(&jm2, "eddy_jobmanager_leadership_granted"),
        1.0,
        "without HA the JobManager leads once, from its start"
    );
    assert_eq!(jm_counter(&jm2, "eddy_jobmanager_leadership_lost"), 0.0);
    assert!(
        jm_counter(&jm2, "eddy_jobmanager_heartbeats_received")
            > jm_counter(&jm1, "eddy_jobmanager_heartbeats_received"),
        "heartbeats received did not move"
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

/// The `/jobs/:id` vertex whose name contains `part`: its 32-hex id and its index.
fn vertex(c: &Cluster, job: &str, part: &str) -> (String, String) {
    let j = c.get(&format!("/jobs/{job}")).expect("job details");
    j["vertices"]
        .as_array()
        .and_then(|vs| {
            vs.iter()
                .enumerate()
                .find(|(_, v)| v["name"].as_str().is_some_and(|n| n.contains(part)))
        })
        .map(|(i, v)| (v["id"].as_str().unwrap().to_string(), i.to_string()))
        .unwrap_or_else(|| panic!("no vertex named like {part} in {j}"))
}

#[test]
fn a_slow_operator_back_pressures_its_source_in_rest_and_metrics_and_a_throttled_job_does_not() {
    let python = match venv_python() {
        Ok(p) => p,
        Err(why) => {
            println!("skipped: no Prometheus text parser here: {why}");
            return;
        }
    };
    let tm_port = free_ports(1)[0];
    let c = Cluster::start(
        4,
        &[
            ("metrics.reporter.prom.port", tm_port.to_string()),
            ("eddy.test-hooks.enabled", "true".to_string()),
        ],
    );
    let tm = format!("127.0.0.1:{tm_port}");
    // Slow: the counter takes 200 µs per record, the source is unthrottled.
    let slow = c.run_sequence(
        &c.dir.path().join("slow"),
        10_000_000,
        0,
        &["--count-delay-us", "200"],
    );
    // Throttled: 400 records/s, a counter with nothing to wait for.
    let calm = c.run_sequence(&c.dir.path().join("calm"), 10_000_000, 400, &[]);
    c.wait_running_with_checkpoint(&slow);
    c.wait_running_with_checkpoint(&calm);

    let (slow_source, slow_source_index) = vertex(&c, &slow, "Sequence");
    let (slow_count, _) = vertex(&c, &slow, "Count");
    let (calm_source, _) = vertex(&c, &calm, "Sequence");
    let level = |job: &str, v: &str| {
        c.get(&format!("/v1/jobs/{job}/vertices/{v}/backpressure"))
            .unwrap_or_else(|| panic!("no back-pressure of {v}"))
    };
    // Ratios cover one heartbeat interval (200 ms here): wait for the grade to settle.
    let source = c.wait_for("the slow job's source back-pressured", || {
        let b = level(&slow, &slow_source);
        (b["backpressureLevel"] == "high").then_some(b)
    });
    assert_eq!(source["status"], "ok");
    assert!(source["end-timestamp"].as_i64() > Some(0), "{source}");
    let subtasks = source["subtasks"].as_array().expect("subtasks");
    assert_eq!(subtasks.len(), 2, "{source}");
    for s in subtasks {
        let (r, i, b) = (
            s["ratio"].as_f64().unwrap(),
            s["idleRatio"].as_f64().unwrap(),
            s["busyRatio"].as_f64().unwrap(),
        );
        assert!((r + i + b - 1.0).abs() < 0.01, "shares add up: {s}");
    }
    // The slow operator itself waits for nobody (its sink is chained): not back-pressured.
    let count = c.wait_for("the slow counter graded", || {
        let b = level(&slow, &slow_count);
        (b["status"] == "ok").then_some(b)
    });
    assert_eq!(count["backpressureLevel"], "ok", "{count}");
    let calm_level = c.wait_for("the throttled source graded", || {
        let b = level(&calm, &calm_source);
        (b["status"] == "ok").then_some(b)
    });
    assert_eq!(calm_level["backpressureLevel"], "ok", "{calm_level}");
    assert!(
        calm_level["subtasks"][0]["idleRatio"].as_f64() > Some(0.5),
        "a throttled source is mostly idle: {calm_level}"
    );

    // Accumulated times in Flink's job details; an unknown vertex is a 404 naming it.
    let d = c.get(&format!("/jobs/{slow}")).expect("details");
    let metrics = d["vertices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == slow_source.as_str())
        .map(|v| v["metrics"].clone())
        .unwrap();
    assert!(
        metrics["accumulated-backpressured-time"].as_i64() > Some(0),
        "{metrics}"
    );
    let (status, body) = http_get(
        &c.rest,
        &format!("/jobs/{slow}/vertices/{:032x}/backpressure", 99),
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains(&format!("{:032x}", 99)), "{body}");

    // /metrics: the JobManager per vertex, the TaskManager per subtask.
    let jm = scrape(&python, &c.rest);
    let ratio = sum(
        &jm,
        "eddy_task_backpressure_ratio",
        "eddy_task_backpressure_ratio",
        &[
            ("job_id", slow.as_str()),
            ("vertex_id", slow_source_index.as_str()),
        ],
    );
    assert!(ratio > 0.5, "JobManager back-pressure ratio {ratio}");
    let t1 = scrape(&python, &tm);
    std::thread::sleep(Duration::from_millis(1000));
    let t2 = scrape(&python, &tm);
    let src = [
        ("job_id", slow.as_str()),
        ("vertex_id", slow_source_index.as_str()),
    ];
    let bp = |p: &Value| {
        sum(
            p,
            "eddy_task_backpressured_seconds",
            "eddy_task_backpressured_seconds_total",
            &src,
        )
    };
    assert!(bp(&t2) > bp(&t1), "back-pressured seconds did not move");
    let per_subtask = t2["eddy_task_backpressure_ratio"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s[1]["job_id"] == slow.as_str() && s[1]["vertex_id"] == slow_source_index.as_str()
        })
        .map(|s| s[2].as_f64().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(per_subtask.len(), 2, "{t2}");
    assert!(per_subtask.iter().all(|r| *r > 0.5), "{per_subtask:?}");
}
