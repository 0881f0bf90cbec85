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

use common::*;
use eddy_rest::client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
const CLI_LIMIT: Duration = Duration::from_secs(90);
const JOB_LIMIT: Duration = Duration::from_secs(180);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

fn signal(pid: u32, sig: libc::c_int) {
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill -{sig} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

fn script(args: &[&str], dir: Option<&Path>) {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh"))
        .args(args);
    if let Some(d) = dir {
        cmd.arg("--dir").arg(d);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/zookeeper.sh");
    assert!(
        out.status.success(),
        "zookeeper.sh {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One test's ZooKeeper, stopped (by the pid in its dir) on drop.
struct ZooKeeper {
    port: u16,
    dir: PathBuf,
}

impl ZooKeeper {
    fn start(dir: PathBuf) -> ZooKeeper {
        if !Path::new(ZK_JAR).exists() {
            script(&["install"], None);
        }
        let port = free_ports(1)[0];
        script(&["start", "--port", &port.to_string()], Some(&dir));
        ZooKeeper { port, dir }
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh"))
            .arg("stop")
            .arg("--dir")
            .arg(&self.dir)
            .output();
        if let Some(pid) = std::fs::read_to_string(self.dir.join("zookeeper.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
        {
            if alive(pid) && cmdline(pid).contains("zookeeper") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// An HA session cluster of one test.
struct Cluster {
    conf: PathBuf,
    log: PathBuf,
    masters: Vec<String>,
    /// Stopped after the cluster (drop order), before its data dir is removed.
    _zk: ZooKeeper,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `masters` supervised JobManagers (restart attempts 5), `workers` standalone TaskManagers of
    /// 2 slots, a ZooKeeper session of `session`; `extra` keys replace or add to these.
    fn start(
        name: &str,
        masters: usize,
        workers: usize,
        session: Duration,
        extra: &[(&str, String)],
    ) -> Cluster {
        let c = Cluster::configure(name, masters, workers, session, extra);
        let out = c.cli(&["cluster", "start", "--conf", c.conf_str()]);
        assert_eq!(
            out.code,
            0,
            "cluster start: {}\n{}",
            out.stderr,
            c.log_tail()
        );
        c
    }

    /// The ZooKeeper and conf dir of [`Cluster::start`], without starting anything.
    fn configure(
        name: &str,
        masters: usize,
        workers: usize,
        session: Duration,
        extra: &[(&str, String)],
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("eddy-dashboard-{name}-"))
            .tempdir()
            .expect("temp dir");
        let zk = ZooKeeper::start(dir.path().join("zk"));
        let conf = dir.path().join("conf");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&conf).expect("conf dir");
        let rest_ports = free_ports(masters);
        let path = |p: &str| dir.path().join(p).display().to_string();
        let keys: Vec<(String, String)> = [
            ("high-availability.type", "zookeeper".to_string()),
            (
                "high-availability.zookeeper.quorum",
                format!("127.0.0.1:{}", zk.port),
            ),
            ("high-availability.storageDir", path("ha")),
            ("high-availability.cluster-id", format!("/{name}")),
            (
                "high-availability.zookeeper.client.session-timeout",
                format!("{} ms", session.as_millis()),
            ),
            (
                "high-availability.zookeeper.client.connection-timeout",
                "5 s".to_string(),
            ),
            ("high-availability.jobmanager.port", "0".to_string()),
            ("cluster.jobmanager.restart-attempts", "5".to_string()),
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.bind-address", "127.0.0.1".to_string()),
            ("rest.port", rest_ports[0].to_string()),
            ("taskmanager.host", "127.0.0.1".to_string()),
            ("taskmanager.numberOfTaskSlots", "2".to_string()),
            ("parallelism.default", "2".to_string()),
            ("execution.checkpointing.interval", "200 ms".to_string()),
            ("execution.checkpointing.dir", path("checkpoints")),
            ("state.checkpoints.num-retained", "2".to_string()),
            ("restart-strategy.type", "fixed-delay".to_string()),
            (
                "restart-strategy.fixed-delay.attempts",
                "unlimited".to_string(),
            ),
            ("restart-strategy.fixed-delay.delay", "50 ms".to_string()),
            ("heartbeat.interval", "500 ms".to_string()),
            ("heartbeat.timeout", "3 s".to_string()),
            ("env.log.dir", log.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_config_yaml(&conf, keys, extra);
        let masters: Vec<String> = rest_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        std::fs::write(
            conf.join("masters"),
            masters.iter().map(|m| format!("{m}\n")).collect::<String>(),
        )
        .expect("masters");
        std::fs::write(conf.join("workers"), "127.0.0.1\n".repeat(workers)).expect("workers");
        Cluster {
            conf,
            log,
            masters,
            _zk: zk,
            dir,
        }
    }

    fn conf_str(&self) -> &str {
        self.conf.to_str().expect("UTF-8 temp path")
    }

    fn cli(&self, args: &[&str]) -> Outcome {
        eddy_with_env(args, &[("EDDY_LOG", "info")], CLI_LIMIT)
    }

    fn get(&self, jm: usize, path: &str) -> Option<Value> {
        match client::request(&self.masters[jm], "GET", path, None, HTTP_TIMEOUT) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    fn is_standby(&self, jm: usize) -> bool {
        matches!(
            client::request(&self.masters[jm], "GET", "/overview", None, HTTP_TIMEOUT),
            Ok((503, _))
        )
    }

    /// The JobManagers (not in `skip`) answering 200.
    fn leaders(&self, skip: &[usize]) -> Vec<usize> {
        (0..self.masters.len())
            .filter(|i| !skip.contains(i) && self.get(*i, "/overview").is_some())
            .collect()
    }

    fn leader(&self) -> usize {
        self.wait_for("one leader", JOB_LIMIT, || {
            let l = self.leaders(&[]);
            (l.len() == 1).then(|| l[0])
        })
    }

    fn pid_of(&self, role: &str, index: usize) -> Option<u32> {
        std::fs::read_to_string(self.log.join(format!("eddy-{role}-{index}.pid")))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
    }

    fn wait_for<T>(&self, what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "gave up after {limit:?} waiting for {what}\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `eddy run sequence ... -d`; returns the job id once a leader runs all its tasks.
    fn submit_sequence(&self, keys: u64, per_key: u64, rate: u64) -> (String, PathBuf) {
        let output = self.dir.path().join("out");
        let out = self.cli(&[
            "run",
            "sequence",
            "--keys",
            &keys.to_string(),
            "--per-key",
            &per_key.to_string(),
            "--rate",
            &rate.to_string(),
            "--output",
            &output.display().to_string(),
            "-p",
            "2",
            "--conf",
            self.conf_str(),
            "-d",
        ]);
        assert_eq!(
            out.code,
            0,
            "eddy run -d: {}\n{}",
            out.stderr,
            self.log_tail()
        );
        let id = out.stdout.trim().to_string();
        self.wait_for("the job to run all its tasks", JOB_LIMIT, || {
            self.running_on(&id, &[])
        });
        (id, output)
    }

    /// A leader (not in `skip`) on which `job` is RUNNING with every task RUNNING.
    fn running_on(&self, job: &str, skip: &[usize]) -> Option<usize> {
        self.leaders(skip).into_iter().find(|&l| {
            self.get(l, &format!("/jobs/{job}/eddy-details"))
                .is_some_and(|d| all_tasks_running(&d))
        })
    }

    fn log_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.log) else {
            return String::new();
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 20 lines)\n", f.display()));
            for l in &lines[lines.len().saturating_sub(20)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, pid) in pid_files(&self.log) {
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGCONT);
                }
            }
        }
        let _ = Command::new(EDDY)
            .args(["cluster", "stop", "--conf", self.conf_str()])
            .env_remove("EDDY_CONF_DIR")
            .output();
        for (_, pid) in pid_files(&self.log) {
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        for pid in processes_mentioning(self.conf_str()) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

fn status(d: &Value) -> &str {
    d["status"].as_str().unwrap_or("?")
}

fn all_tasks_running(d: &Value) -> bool {
    status(d) == "RUNNING"
        && d["vertices"].as_array().is_some_and(|vs| {
            !vs.is_empty()
                && vs
                    .iter()
                    .all(|v| v["tasks"]["RUNNING"].as_u64() == v["parallelism"].as_u64())
        })
}

// ---------------------------------------------------------------------------------------------
// Chromium

/// How long one Chromium run may take before it is killed (by pid).
const CHROMIUM_LIMIT: Duration = Duration::from_secs(90);

fn chromium_binary() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v chromium"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "Chromium is not installed: the dashboard test drives Debian's `chromium` headless. \
         Install it with `scripts/zookeeper.sh install` (apt-get install chromium)."
    );
    "chromium"
}

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
