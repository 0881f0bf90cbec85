//! End-to-end test of the web dashboard (issue 13) with a real headless Chromium against a real
//! HA cluster (`eddy cluster start`: two supervised JobManagers, three TaskManagers, a ZooKeeper
//! of its own): a `sequence` job runs and checkpoints; the leader JobManager is killed (SIGKILL)
//! and a standby takes over; then a TaskManager running the job's tasks is killed. Chromium then
//! renders the dashboard's pages (`--dump-dom` after the page's own fetches ran) and the test
//! checks what a person would look for: the TaskManagers page shows the lost TaskManager, the
//! JobManager page the new leader, the job page both recoveries on the timeline and completed
//! checkpoints, and the old leader (restarted by its supervisor as a standby) links to the new
//! one. The job then finishes and the exactly-once witness holds.
//!
//! Chromium is Debian's `chromium`, installed by `scripts/zookeeper.sh install` (run by
//! scripts/test.sh). Without it this test fails and says so; it never skips. Set
//! `EDDY_DASHBOARD_SCREENSHOTS=DIR` to keep a PNG of each page (docs/dashboard.md shows them).
//!
//! The cluster helpers are those of failover.rs (same ZooKeeper and clean-up rules): each
//! process is killed by pid when the test ends, also on failure.

mod common;

use common::chromium::chromium_binary;
use common::ha_cluster::*;
use common::prometheus::{scrape, sum, venv_python};
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Cluster {}

// ---------------------------------------------------------------------------------------------
// Chromium

/// How long one Chromium run may take before it is killed (by pid).
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

/// Runs headless Chromium on `url` with a fresh profile: `--dump-dom` returns the DOM after the
/// page's scripts ran (virtual time lets its fetches finish); with `screenshot`, also writes a
/// PNG there.
fn chromium(url: &str, screenshot: Option<&Path>) -> String {
    let bin = chromium_binary();
    let profile = tempfile::Builder::new()
        .prefix("eddy-chromium-")
        .tempdir()
        .expect("temp profile dir");
    let run = |extra: Vec<String>| -> String {
        let mut cmd = Command::new(bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1280,1500",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start chromium");
        let pid = child.id();
        let deadline = Instant::now() + CHROMIUM_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() > deadline => {
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                    let _ = child.wait();
                    panic!("chromium on {url} did not finish within {CHROMIUM_LIMIT:?}");
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let out = child.wait_with_output().expect("chromium output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    if let Some(png) = screenshot {
        run(vec![format!("--screenshot={}", png.display())]);
        assert!(
            png.exists(),
            "chromium wrote no screenshot to {}",
            png.display()
        );
    }
    run(vec!["--dump-dom".to_string()])
}

/// The `<tr>` rows of the table with `id`, as HTML.
fn rows(dom: &str, id: &str) -> Vec<String> {
    let Some(start) = dom.find(&format!("<table id=\"{id}\">")) else {
        return Vec::new();
    };
    let end = dom[start..]
        .find("</table>")
        .map_or(dom.len(), |e| start + e);
    dom[start..end]
        .split("<tr>")
        .skip(2) // before the header, the header
        .map(|r| r.to_string())
        .collect()
}

fn screenshot_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("EDDY_DASHBOARD_SCREENSHOTS").map(|d| {
        std::fs::create_dir_all(&d).expect("screenshot dir");
        PathBuf::from(d).join(format!("dashboard-{name}.png"))
    })
}

/// Renders `url` until `check` passes on the DOM (the dashboard refreshes itself; the cluster's
/// state may still be settling), then keeps a screenshot. Returns the DOM.
fn render_until(
    c: &Cluster,
    what: &str,
    url: &str,
    name: &str,
    check: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + JOB_LIMIT;
    loop {
        let dom = chromium(url, None);
        if check(&dom) {
            if let Some(png) = screenshot_path(name) {
                chromium(url, Some(&png));
            }
            return dom;
        }
        if Instant::now() > deadline {
            panic!(
                "the dashboard never showed {what} at {url}; last DOM:\n{dom}\n{}",
                c.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_dashboard_shows_a_lost_taskmanager_the_new_leader_and_the_recoveries_on_the_timeline() {
    chromium_binary(); // fail first, and clearly, when Chromium is missing
    let c = Cluster::start("dashboard", 2, 3, Duration::from_secs(10), &[]);
    let (keys, per_key) = (8, 6000);
    let (job, output) = c.submit_sequence(keys, per_key, 800);
    let old = c.leader();
    c.wait_for("two completed checkpoints", JOB_LIMIT, || {
        c.get(old, &format!("/jobs/{job}/checkpoints"))
            .filter(|v| v["counts"]["completed"].as_u64() >= Some(2))
    });

    // 1. Kill the leader JobManager; a standby takes over and runs the job.
    let pid = c.pid_of("jobmanager", old).expect("leader pid file");
    signal(pid, libc::SIGKILL);
    let leader = c.wait_for("another JobManager to run the job", JOB_LIMIT, || {
        c.running_on(&job, &[old])
    });
    assert_ne!(leader, old);
    // The new leader's /metrics (a real Prometheus parser): it became leader once, and its
    // recovery of the job (the leader change) is in the recovery-duration histogram once done.
    let python = venv_python().expect("the Prometheus parser of scripts/pyenv.sh");
    let recoveries_done = |m: &serde_json::Value| {
        sum(
            m,
            "eddy_job_recovery_duration_seconds",
            "eddy_job_recovery_duration_seconds_count",
            &[("job_id", job.as_str())],
        )
    };
    let before_tm_kill = c.wait_for(
        "the leader change's recovery in /metrics",
        JOB_LIMIT,
        || {
            let m = scrape(&python, &c.masters[leader]);
            (recoveries_done(&m) >= 1.0).then_some(m)
        },
    );
    assert!(
        sum(
            &before_tm_kill,
            "eddy_jobmanager_leadership_granted",
            "eddy_jobmanager_leadership_granted_total",
            &[]
        ) >= 1.0,
        "the new leader counts its election"
    );

    // 2. Kill a TaskManager that runs one of the job's subtasks.
    let details = c
        .get(leader, &format!("/jobs/{job}/eddy-details"))
        .expect("details");
    let victim_id = details["vertices"][0]["subtasks"][0]["taskmanager"]
        .as_str()
        .expect("subtask's TaskManager")
        .to_string();
    let tms = c.get(leader, "/taskmanagers").expect("taskmanagers");
    let victim_pid = tms["taskmanagers"]
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == victim_id.as_str()))
        .and_then(|t| t["pid"].as_u64())
        .unwrap_or_else(|| panic!("{victim_id} not in {tms}")) as u32;
    signal(victim_pid, libc::SIGKILL);
    c.wait_for(
        "the job to recover from the lost TaskManager",
        JOB_LIMIT,
        || {
            let r = c.get(leader, &format!("/jobs/{job}/recoveries"))?;
            let done = r["recoveries"]
                .as_array()?
                .iter()
                .filter(|x| x["complete"] == true)
                .count();
            (done >= 2).then_some(())
        },
    );
    // The lost TaskManager's recovery is one more in the histogram.
    let after = scrape(&python, &c.masters[leader]);
    assert!(
        recoveries_done(&after) > recoveries_done(&before_tm_kill),
        "recovery histogram count did not rise after the TaskManager was killed"
    );
    // Heartbeats reach the new leader (every 500 ms; the recovery above may finish before the
    // first one does).
    let t0 = Instant::now();
    c.wait_for("heartbeats counted by the new leader", JOB_LIMIT, || {
        let m = scrape(&python, &c.masters[leader]);
        (sum(
            &m,
            "eddy_jobmanager_heartbeats_received",
            "eddy_jobmanager_heartbeats_received_total",
            &[],
        ) > 0.0)
            .then_some(())
    });
    eprintln!("heartbeats counted {:?} after the check", t0.elapsed());
    let base = format!("http://{}", c.masters[leader]);

    // TaskManagers page: the killed one is listed as lost, the others as registered.
    let dom = render_until(
        &c,
        "the lost TaskManager",
        &format!("{base}/#/taskmanagers"),
        "taskmanagers",
        |d| {
            rows(d, "taskmanagers")
                .iter()
                .any(|r| r.contains(&victim_id) && r.contains("class=\"lost\""))
        },
    );
    let tm_rows = rows(&dom, "taskmanagers");
    assert_eq!(
        tm_rows
            .iter()
            .filter(|r| r.contains(">registered<"))
            .count(),
        2,
        "{dom}"
    );
    assert!(tm_rows
        .iter()
        .any(|r| r.contains(&victim_pid.to_string()) && r.contains("lost")));

    // JobManager page: this one is the leader, with a session id, and the HA settings.
    let dom = render_until(
        &c,
        "the new leader",
        &format!("{base}/#/jobmanager"),
        "jobmanager",
        |d| d.contains("<span id=\"role\" class=\"leader\">leader</span>"),
    );
    assert!(
        dom.contains(&format!("http://{}", c.masters[leader])),
        "{dom}"
    );
    let session = dom
        .split("<code id=\"session\">")
        .nth(1)
        .and_then(|s| s.split("</code>").next())
        .unwrap_or("");
    assert_eq!(session.len(), 32, "leader session id: {session}");
    assert!(
        dom.contains("zookeeper") && dom.contains("/dashboard"),
        "HA type and cluster-id: {dom}"
    );
    assert!(rows(&dom, "config").len() > 10, "effective configuration");
    assert!(
        dom.contains("granted leadership"),
        "the log tail shows the takeover: {dom}"
    );

    // Job page: both recoveries (leader change, lost TaskManager) as bars on the timeline, each
    // with its three phases, and completed checkpoints.
    let dom = render_until(
        &c,
        "two recoveries and completed checkpoints",
        &format!("{base}/#/job/{job}"),
        "job",
        |d| {
            rows(d, "recoveries").len() >= 2
                && rows(d, "checkpoints")
                    .iter()
                    .any(|r| r.contains("COMPLETED"))
        },
    );
    assert!(dom.contains("<svg id=\"recovery-timeline\""), "{dom}");
    let timeline = dom
        .split("<svg id=\"recovery-timeline\"")
        .nth(1)
        .unwrap_or("");
    let timeline = timeline.split("</svg>").next().unwrap_or("");
    assert!(
        timeline.matches("class=\"phase\"").count() >= 6,
        "three phases per recovery: {timeline}"
    );
    let rec_rows = rows(&dom, "recoveries");
    assert!(
        rec_rows.iter().any(|r| r.contains("leader change")),
        "{rec_rows:?}"
    );
    assert!(
        rec_rows.iter().any(|r| r.contains(&victim_id)),
        "{rec_rows:?}"
    );
    assert!(dom.contains("<svg id=\"checkpoint-chart\""), "{dom}");
    // Back-pressure per vertex, graded as Flink grades it. The counter's vertex ends in the sink
    // (no output channel): it never waits for credit.
    let dom = render_until(
        &c,
        "back-pressure of every vertex",
        &format!("{base}/#/job/{job}"),
        "job",
        |d| {
            let v = rows(d, "vertices");
            !v.is_empty() && v.iter().all(|r| r.contains("class=\"bp bp-"))
        },
    );
    assert!(
        rows(&dom, "vertices")
            .iter()
            .any(|r| r.contains("FileSink") && r.contains("class=\"bp bp-ok\">ok 0%")),
        "{:?}",
        rows(&dom, "vertices")
    );
    assert!(
        rows(&dom, "subtasks")
            .iter()
            .all(|r| !r.contains(&victim_id)),
        "no subtask left on the dead TaskManager"
    );

    // The old leader, restarted by its supervisor, is a standby whose dashboard links to the leader.
    c.wait_for(
        "the old leader to come back as a standby",
        JOB_LIMIT,
        || c.is_standby(old).then_some(()),
    );
    let dom = render_until(
        &c,
        "a link to the leader",
        &format!("http://{}/", c.masters[old]),
        "standby",
        |d| {
            d.contains(&format!(
                "<a id=\"leader\" href=\"http://{}/\">",
                c.masters[leader]
            ))
        },
    );
    assert!(dom.contains("standby"));

    // Overview renders too (kept as a screenshot), and the job still ends exactly once.
    render_until(
        &c,
        "the overview",
        &format!("{base}/#/overview"),
        "overview",
        |d| rows(d, "jobs").iter().any(|r| r.contains(&job)),
    );
    let end = c.wait_for("the job to end", JOB_LIMIT, || {
        c.get(leader, &format!("/jobs/{job}/eddy-details"))
            .filter(|d| matches!(status(d), "FINISHED" | "FAILED" | "CANCELED"))
    });
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    let lines = committed_lines(&output);
    assert_eq!(
        witness(&lines, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)"
    );
}
