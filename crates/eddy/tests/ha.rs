//! End-to-end tests of JobManager high availability with a real ZooKeeper and real processes:
//! the leader killed with SIGKILL three times during one `sequence` run, a single JobManager
//! killed and restarted by its supervisor, a leader paused with SIGSTOP until its ZooKeeper
//! session expired and then resumed (fencing of its writes, and what its REST API answers),
//! ZooKeeper itself restarted under a running job, the job result store keeping a finished job
//! from running again, and the one-line errors of a bad HA configuration. Recovery is judged by
//! the exactly-once witness of `sequence`; fencing also by the leader sessions recorded on the HA
//! data in ZooKeeper.
//!
//! Every test has its own temp dir, its own ZooKeeper (`scripts/zookeeper.sh` on a free port,
//! data in the temp dir) and a generated conf dir on free 127.0.0.1 ports with a unique
//! `high-availability.cluster-id`. It must never touch a process, ZooKeeper or port it did not
//! start: [`HaCluster`]'s drop runs `eddy cluster stop`, SIGKILLs whatever its pid files still
//! name, then stops its ZooKeeper by pid, also when the test fails. Deadlines only bound hangs;
//! nothing asserts on speed.

mod common;

use common::*;
use eddy_rest::client;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
/// Bound for one CLI command (`cluster start` waits up to 30 s itself).
const CLI_LIMIT: Duration = Duration::from_secs(90);
/// Bound for a job to end, or for a new leader to serve a job again.
const JOB_LIMIT: Duration = Duration::from_secs(180);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// `high-availability.zookeeper.client.session-timeout` of every test cluster.
const SESSION_TIMEOUT: Duration = Duration::from_secs(2);
const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

// ---------------------------------------------------------------------------------------------
// Processes

fn signal(pid: u32, sig: libc::c_int) {
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill -{sig} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Runs `cmd` with its output captured; kills it (by its pid, not yet reaped) after `limit`.
fn output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    output_with_input(cmd, "", limit)
}

/// [`output_within`] with `input` on the command's stdin.
fn output_with_input(cmd: &mut Command, input: &str, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pid = child.id();
    let mut stdin = child.stdin.take();
    let input = input.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            use std::io::Write;
            let _ = s.write_all(input.as_bytes());
        }
        drop(stdin);
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r.map_err(|e| format!("{cmd:?}: {e}")),
        Err(_) => {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            Err(format!("{cmd:?} did not end within {limit:?}"))
        }
    }
}

/// Log text without the terminal colour codes tracing writes.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// ZooKeeper

fn zookeeper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh")
}

/// A ZooKeeper server of one test, started through `scripts/zookeeper.sh` on a free port with its
/// data under `dir`; stopped by the pid in `dir` when dropped.
struct ZooKeeper {
    port: u16,
    dir: PathBuf,
}

impl ZooKeeper {
    fn start(dir: PathBuf) -> ZooKeeper {
        if !Path::new(ZK_JAR).exists() {
            let out = output_within(
                Command::new("bash").arg(zookeeper_script()).arg("install"),
                Duration::from_secs(600),
            )
            .expect("run zookeeper.sh install");
            assert!(
                out.status.success(),
                "scripts/zookeeper.sh install failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let zk = ZooKeeper {
            port: free_ports(1)[0],
            dir,
        };
        zk.start_again();
        zk
    }

    /// Starts the server (again) on the same port with the same data dir.
    fn start_again(&self) {
        let out = output_within(
            Command::new("bash")
                .arg(zookeeper_script())
                .args(["start", "--port", &self.port.to_string(), "--dir"])
                .arg(&self.dir),
            Duration::from_secs(60),
        )
        .expect("run zookeeper.sh start");
        assert!(
            out.status.success(),
            "zookeeper.sh start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let _ = output_within(
            Command::new("bash")
                .arg(zookeeper_script())
                .arg("stop")
                .arg("--dir")
                .arg(&self.dir),
            Duration::from_secs(60),
        );
    }

    fn quorum(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs one command of ZooKeeper's own CLI (`ZooKeeperMain`): `Ok(output lines)` without the
    /// connection chatter, `Err(stderr)` when it failed.
    fn cli(&self, args: &[&str]) -> Result<Vec<String>, String> {
        let out = output_within(
            Command::new("java")
                .args([
                    "-cp",
                    ZK_JAR,
                    "org.apache.zookeeper.ZooKeeperMain",
                    "-server",
                ])
                .arg(self.quorum())
                .args(args),
            Duration::from_secs(30),
        )?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(stderr);
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| {
                !l.is_empty()
                    && !l.starts_with("Connecting to")
                    && *l != "WATCHER::"
                    && !l.starts_with("WatchedEvent")
            })
            .map(str::to_string)
            .collect())
    }

    /// The JSON data of each of `paths` (`None`: no such node), read in one client session, so that
    /// nodes that live only briefly (checkpoint pointers) can still be read.
    fn get_many(&self, paths: &[String]) -> Vec<Option<String>> {
        // Each `get` is followed by a marker command whose answer is known (`ls /zookeeper`):
        // the output between two markers is that node's data, or nothing if it did not exist
        // (the error goes to stderr).
        const MARKER: &str = "[config, quota]";
        let script: String = paths
            .iter()
            .map(|p| format!("get {p}\nls /zookeeper\n"))
            .chain(std::iter::once("quit\n".to_string()))
            .collect();
        let out = output_with_input(
            Command::new("java")
                .args([
                    "-cp",
                    ZK_JAR,
                    "org.apache.zookeeper.ZooKeeperMain",
                    "-server",
                ])
                .arg(self.quorum()),
            &script,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("zkCli: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut answers = vec![None];
        for line in stdout.lines().map(str::trim) {
            if line == MARKER {
                answers.push(None);
            } else if line.starts_with('{') {
                if let Some(last) = answers.last_mut() {
                    *last = Some(line.to_string());
                }
            }
        }
        answers.pop();
        assert_eq!(
            answers.len(),
            paths.len(),
            "zkCli answered {} of {} reads: {stdout}{}",
            answers.len(),
            paths.len(),
            String::from_utf8_lossy(&out.stderr)
        );
        answers
    }

    /// The data of node `path`, `None` if it does not exist.
    fn get(&self, path: &str) -> Option<String> {
        match self.cli(&["get", path]) {
            Ok(lines) => Some(lines.join("\n")),
            Err(e) if e.contains("Node does not exist") => None,
            Err(e) => panic!("zkCli get {path}: {e}"),
        }
    }

    /// The JSON data of node `path`, `None` if it does not exist.
    fn get_json(&self, path: &str) -> Option<Value> {
        self.get(path)
            .map(|d| serde_json::from_str(&d).unwrap_or_else(|e| panic!("node {path}: {e}: {d:?}")))
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.stop();
        // The script kills by pid; if it could not run, kill that pid directly.
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

// ---------------------------------------------------------------------------------------------
// The cluster

/// What a JobManager's REST API says about its role (`GET /overview`).
#[derive(Debug, PartialEq)]
enum Role {
    /// 200: it serves requests.
    Leader,
    /// 503 naming the leader's REST URL, if it knows one.
    Standby(Option<String>),
    /// Anything else (not listening, stopped, another status).
    Unreachable(String),
}

fn status(d: &Value) -> &str {
    d["status"].as_str().unwrap_or("?")
}

fn is_terminal(d: &Value) -> bool {
    matches!(status(d), "FINISHED" | "FAILED" | "CANCELED")
}

/// RUNNING, with every subtask of every vertex RUNNING (from `/jobs/:id/eddy-details`).
fn all_tasks_running(d: &Value) -> bool {
    status(d) == "RUNNING"
        && d["vertices"].as_array().is_some_and(|vs| {
            !vs.is_empty()
                && vs
                    .iter()
                    .all(|v| v["tasks"]["RUNNING"].as_u64() == v["parallelism"].as_u64())
        })
}

/// The id of the newest checkpoint this JobMaster completed (eddy-details).
fn latest_completed(d: &Value) -> Option<u64> {
    d["checkpoints"]["latest_completed"]["id"].as_u64()
}

/// The id of the checkpoint this JobMaster last restored from (eddy-details).
fn latest_restored(d: &Value) -> Option<u64> {
    d["checkpoints"]["latest_restored"]["id"].as_u64()
}

/// A `sequence` job: `keys` x `per_key` records, checked with the witness once it ended.
struct Sequence {
    id: String,
    output: PathBuf,
    keys: u64,
    per_key: u64,
}

impl Sequence {
    fn assert_witness_holds(&self, cluster: &HaCluster) {
        let lines = committed_lines(&self.output);
        assert_eq!(
            witness(&lines, self.keys, self.per_key),
            (0, 0, 0),
            "(missing, duplicates, wrong counts) of job {}\n{}",
            self.id,
            cluster.log_tail()
        );
        assert_eq!(
            lines.len() as u64,
            self.keys * self.per_key,
            "committed lines of job {}",
            self.id
        );
    }
}

/// An HA session cluster of one test: its ZooKeeper, a conf dir (config.yaml, masters, workers)
/// on free ports, and the processes `eddy cluster start` started from it. Dropping it stops them
/// all (`eddy cluster stop`, then SIGKILL), then ZooKeeper.
struct HaCluster {
    conf: PathBuf,
    log: PathBuf,
    /// The JobManagers' REST addresses (`127.0.0.1:port`), in `masters` order.
    masters: Vec<String>,
    /// `<path.root>/<cluster-id>`: where this cluster's nodes live in ZooKeeper.
    base: String,
    /// Declared before `dir`: stopped after the cluster, before its data dir is removed.
    zk: ZooKeeper,
    dir: tempfile::TempDir,
}

impl HaCluster {
    /// Starts ZooKeeper and writes a conf dir: `masters` JobManagers (supervised when
    /// `restart_attempts` > 0), `workers` TaskManagers of 2 slots, a 2 s session, fast heartbeats,
    /// checkpoints and restarts; `extra` keys replace or add to the generated ones.
    fn configure(
        name: &str,
        masters: usize,
        workers: usize,
        restart_attempts: u32,
        extra: &[(&str, String)],
    ) -> HaCluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("eddy-ha-{name}-"))
            .tempdir()
            .expect("temp dir");
        let zk = ZooKeeper::start(dir.path().join("zk"));
        let conf = dir.path().join("conf");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&conf).expect("create conf dir");
        let rest_ports = free_ports(masters);
        // Unique per test run, so nothing can mix with another cluster's HA data.
        let cluster_id = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        );
        let path = |p: &str| dir.path().join(p).display().to_string();
        let keys: Vec<(String, String)> = [
            ("high-availability.type", "zookeeper".to_string()),
            ("high-availability.zookeeper.quorum", zk.quorum()),
            ("high-availability.storageDir", path("ha")),
            ("high-availability.zookeeper.path.root", "/eddy".to_string()),
            ("high-availability.cluster-id", format!("/{cluster_id}")),
            (
                "high-availability.zookeeper.client.session-timeout",
                format!("{} s", SESSION_TIMEOUT.as_secs()),
            ),
            (
                "high-availability.zookeeper.client.connection-timeout",
                "5 s".to_string(),
            ),
            ("high-availability.jobmanager.port", "0".to_string()),
            (
                "cluster.jobmanager.restart-attempts",
                restart_attempts.to_string(),
            ),
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.bind-address", "127.0.0.1".to_string()),
            // Only a fallback: every JobManager gets its port from `masters`.
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
            // Tests arm fault points (EDDY_FAULT_POINTS) and use job test hooks.
            ("eddy.test-hooks.enabled", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_config_yaml(&conf, keys, extra);
        let masters: Vec<String> = rest_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let masters_file: String = masters.iter().map(|m| format!("{m}\n")).collect();
        std::fs::write(conf.join("masters"), masters_file).expect("write masters");
        std::fs::write(conf.join("workers"), "127.0.0.1\n".repeat(workers)).expect("write workers");
        HaCluster {
            conf,
            log,
            masters,
            base: format!("/eddy/{cluster_id}"),
            zk,
            dir,
        }
    }

    /// [`HaCluster::configure`], then `eddy cluster start`, which returns once a leader serves
    /// and every TaskManager registered with it.
    fn start(name: &str, masters: usize, workers: usize, restart_attempts: u32) -> HaCluster {
        let c = HaCluster::configure(name, masters, workers, restart_attempts, &[]);
        let out = c.cli(&["cluster", "start", "--conf", c.conf_str()]);
        assert_eq!(
            out.code,
            0,
            "cluster start failed: {}\n{}",
            out.stderr,
            c.log_tail()
        );
        c
    }

    fn conf_str(&self) -> &str {
        self.conf.to_str().expect("UTF-8 temp path")
    }

    /// Runs `eddy ARGS`; processes it starts in the background log at info level.
    fn cli(&self, args: &[&str]) -> Outcome {
        eddy_with_env(args, &[("EDDY_LOG", "info")], CLI_LIMIT)
    }

    fn request(&self, jm: usize, path: &str) -> Result<(u16, Value), String> {
        client::request(&self.masters[jm], "GET", path, None, HTTP_TIMEOUT)
    }

    /// `GET path` on JobManager `jm` when it answers 200.
    fn get(&self, jm: usize, path: &str) -> Option<Value> {
        match self.request(jm, path) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    fn role(&self, jm: usize) -> Role {
        match self.request(jm, "/overview") {
            Ok((200, _)) => Role::Leader,
            Ok((503, v)) => Role::Standby(v["leader"].as_str().map(str::to_string)),
            Ok((code, v)) => Role::Unreachable(format!("HTTP {code}: {v}")),
            Err(e) => Role::Unreachable(e),
        }
    }

    /// The JobManagers (except those in `skip`, e.g. a stopped one that would only time out)
    /// whose REST API answers 200.
    fn leaders(&self, skip: &[usize]) -> Vec<usize> {
        (0..self.masters.len())
            .filter(|i| !skip.contains(i) && self.role(*i) == Role::Leader)
            .collect()
    }

    fn jobmanager_pid(&self, jm: usize) -> Option<u32> {
        std::fs::read_to_string(self.log.join(format!("eddy-jobmanager-{jm}.pid")))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
    }

    fn log_text(&self, role: &str, index: usize) -> String {
        strip_ansi(
            &std::fs::read_to_string(self.log.join(format!("eddy-{role}-{index}.log")))
                .unwrap_or_default(),
        )
    }

    /// How often JobManager `jm` (every incarnation) logged that it recovered `job`.
    fn recoveries(&self, jm: usize, job: &str) -> usize {
        self.log_text("jobmanager", jm)
            .matches(&format!("Recovered JobGraph of job {job}"))
            .count()
    }

    /// Polls `probe` every 50 ms until it gives a value; panics with the logs after `limit`.
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
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Submits `sequence` with `eddy run ... --conf DIR -d` (no `-m`: the client finds the leader
    /// through ZooKeeper); returns once the leader runs all its tasks (or it already ended).
    fn submit_sequence(&self, keys: u64, per_key: u64, rate: u64, p: u32) -> Sequence {
        static JOBS: AtomicUsize = AtomicUsize::new(0);
        let output = self
            .dir
            .path()
            .join(format!("out-{}", JOBS.fetch_add(1, Ordering::Relaxed)));
        let (k, n, r, p) = (
            keys.to_string(),
            per_key.to_string(),
            rate.to_string(),
            p.to_string(),
        );
        let out_arg = output.display().to_string();
        let out = self.cli(&[
            "run",
            "sequence",
            "--keys",
            &k,
            "--per-key",
            &n,
            "--rate",
            &r,
            "--output",
            &out_arg,
            "-p",
            &p,
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
        assert!(
            id.len() == 32 && id.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "run -d prints a job id: {:?}",
            out.stdout
        );
        self.wait_for(&format!("job {id} to run all its tasks"), JOB_LIMIT, || {
            self.leaders(&[]).into_iter().find(|&l| {
                self.get(l, &format!("/jobs/{id}/eddy-details"))
                    .is_some_and(|d| all_tasks_running(&d) || is_terminal(&d))
            })
        });
        Sequence {
            id,
            output,
            keys,
            per_key,
        }
    }

    /// Waits until a leader (not in `skip`) serves `job` RUNNING with a checkpoint it completed
    /// itself (`completed_checkpoints` >= 1) whose id is above `after`; returns the leader and
    /// the job's details. Panics if the job ends first.
    fn wait_for_new_checkpoint(&self, job: &str, skip: &[usize], after: u64) -> (usize, Value) {
        let what = format!(
            "a leader{} to run job {job} and complete a checkpoint after {after}",
            if skip.is_empty() {
                String::new()
            } else {
                format!(" other than JobManager(s) {skip:?}")
            }
        );
        self.wait_for(&what, JOB_LIMIT, || {
            for l in self.leaders(skip) {
                let Some(d) = self.get(l, &format!("/jobs/{job}/eddy-details")) else {
                    continue;
                };
                if is_terminal(&d) {
                    panic!(
                        "job {job} ended ({}) before {what}; make it longer\n{}",
                        status(&d),
                        self.log_tail()
                    );
                }
                if status(&d) == "RUNNING"
                    && d["completed_checkpoints"].as_u64().unwrap_or(0) >= 1
                    && latest_completed(&d).is_some_and(|id| id > after)
                {
                    return Some((l, d));
                }
            }
            None
        })
    }

    /// Polls the leader until `job` is FINISHED, FAILED or CANCELED; returns the leader and the
    /// job's details.
    fn await_end(&self, job: &str) -> (usize, Value) {
        self.wait_for(&format!("job {job} to end"), JOB_LIMIT, || {
            self.leaders(&[]).into_iter().find_map(|l| {
                self.get(l, &format!("/jobs/{job}/eddy-details"))
                    .filter(is_terminal)
                    .map(|d| (l, d))
            })
        })
    }

    /// `eddy cluster status --json`: the JobManagers' states, in `masters` order.
    fn jobmanager_states(&self) -> Vec<String> {
        let out = self.cli(&["cluster", "status", "--conf", self.conf_str(), "--json"]);
        assert_eq!(out.code, 0, "cluster status: {}", out.stderr);
        let v: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("cluster status --json: {e}: {}", out.stdout));
        let mut jms: Vec<(String, String)> = v["processes"]
            .as_array()
            .expect("processes")
            .iter()
            .filter(|p| p["role"] == "jobmanager")
            .map(|p| {
                (
                    p["address"].as_str().unwrap_or("").to_string(),
                    p["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        jms.sort_by_key(|(address, _)| {
            self.masters
                .iter()
                .position(|m| m == address)
                .unwrap_or(usize::MAX)
        });
        jms.into_iter().map(|(_, state)| state).collect()
    }

    /// Waits until `eddy cluster status` shows JobManager `leader` as the leader and every other
    /// one as a standby.
    fn await_status_leader(&self, leader: usize) {
        let expected: Vec<String> = (0..self.masters.len())
            .map(|i| if i == leader { "leader" } else { "standby" }.to_string())
            .collect();
        let mut last = Vec::new();
        self.wait_for(
            &format!("cluster status to show JobManager {leader} leading (expected {expected:?})"),
            JOB_LIMIT,
            || {
                last = self.jobmanager_states();
                (last == expected).then_some(())
            },
        );
    }

    /// The leader's REST URL and session id from ZooKeeper's `leader-info`.
    fn leader_info(&self) -> Option<(String, String)> {
        let info = self.zk.get_json(&format!("{}/leader-info", self.base))?;
        let address: Value =
            serde_json::from_str(info["address"].as_str().expect("leader-info address"))
                .expect("leader-info address is JSON");
        Some((
            address["rest"].as_str().expect("rest").to_string(),
            info["session_id"].as_str().expect("session_id").to_string(),
        ))
    }

    /// The completed-checkpoint store of `job` in ZooKeeper: (id, leader session of the writer)
    /// of every pointer with an id up to `max_id`. (Pointers come and go every checkpoint
    /// interval, so they are read by id in one ZooKeeper session rather than listed first.)
    fn checkpoint_pointers(&self, job: &str, max_id: u64) -> Vec<(u64, String)> {
        let dir = format!("{}/jobs/{job}/checkpoints", self.base);
        let paths: Vec<String> = (1..=max_id).map(|id| format!("{dir}/{id:019}")).collect();
        (1..=max_id)
            .zip(self.zk.get_many(&paths))
            .filter_map(|(id, data)| {
                let node: Value = serde_json::from_str(&data?).expect("checkpoint pointer JSON");
                Some((
                    id,
                    node["leader_session"]
                        .as_str()
                        .expect("leader_session")
                        .to_string(),
                ))
            })
            .collect()
    }

    /// The checkpoint ids with a `_metadata` file on disk for `job`.
    fn metadata_files(&self, job: &str) -> BTreeSet<u64> {
        let dir = self.dir.path().join("checkpoints").join(job);
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().join("_metadata").exists())
                    .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The end of every log file, for failure messages.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(&self.log) else {
            return format!("(no log dir {})", self.log.display());
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for f in files {
            let text = strip_ansi(&std::fs::read_to_string(&f).unwrap_or_default());
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 25 lines)\n", f.display()));
            for l in &lines[lines.len().saturating_sub(25)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        let mut pids: Vec<u32> = pid_files(&self.log).into_iter().map(|(_, p)| p).collect();
        // A process a test left stopped would only take SIGTERM after its 10 s grace.
        for &pid in &pids {
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGCONT);
                }
            }
        }
        let conf = self.conf.display().to_string();
        let _ = output_within(
            Command::new(EDDY)
                .args(["cluster", "stop", "--conf", &conf])
                .env_remove("EDDY_CONF_DIR"),
            Duration::from_secs(60),
        );
        pids.extend(pid_files(&self.log).into_iter().map(|(_, p)| p));
        for pid in pids {
            // A pid file may outlive its process; never kill a stranger that reused the pid.
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        // Processes no pid file knows any more (e.g. one restarted while we stopped).
        for pid in processes_mentioning(&conf) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        // `zk` drops next and stops ZooKeeper.
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Three JobManagers under supervisors (`cluster.jobmanager.restart-attempts: 2`): with
/// restart-attempts 0 the third kill would leave no JobManager, so a killed leader is started
/// again and rejoins as a standby (checked each time), and the third leader is a restarted one.
#[test]
fn leader_killed_three_times_recovers_the_job_each_time_and_the_witness_holds() {
    let c = HaCluster::start("kill-leader", 3, 3, 2);
    let job = c.submit_sequence(20, 6000, 4000, 2);
    let (mut leader, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    let mut last = latest_completed(&d).expect("a completed checkpoint");
    for kill in 1..=3 {
        // One more checkpoint first: the kill then also loses output written after it.
        let (l, d) = c.wait_for_new_checkpoint(&job.id, &[], last);
        assert_eq!(
            l, leader,
            "kill {kill}: leadership is stable before the kill"
        );
        last = latest_completed(&d).expect("a completed checkpoint");
        let pid = c.jobmanager_pid(leader).expect("the leader's pid file");
        let recovered_before: Vec<usize> = (0..3).map(|i| c.recoveries(i, &job.id)).collect();
        signal(pid, libc::SIGKILL);

        let (new, d) = c.wait_for_new_checkpoint(&job.id, &[leader], last);
        assert_ne!(new, leader, "kill {kill}: a standby takes over");
        assert!(
            c.recoveries(new, &job.id) > recovered_before[new],
            "kill {kill}: JobManager {new} should log 'Recovered JobGraph of job {}'\n{}",
            job.id,
            c.log_tail()
        );
        assert!(
            latest_restored(&d).is_some_and(|r| r >= last),
            "kill {kill}: the new leader restores from the newest checkpoint (>= {last}): {}",
            d["checkpoints"]
        );

        // The supervisor starts the killed JobManager again; it rejoins as a standby.
        let restarted = c.wait_for(
            &format!("the supervisor to start JobManager {leader} again (kill {kill})"),
            JOB_LIMIT,
            || c.jobmanager_pid(leader).filter(|&p| p != pid && alive(p)),
        );
        c.wait_for(
            &format!("restarted JobManager {leader} (pid {restarted}) to answer as a standby"),
            JOB_LIMIT,
            || matches!(c.role(leader), Role::Standby(Some(_))).then_some(()),
        );
        assert!(
            c.log_text("supervisor", leader).contains(&format!(
                "JobManager {leader} (pid {pid}) died; starting it again"
            )),
            "supervisor {leader} should log the restart\n{}",
            c.log_tail()
        );
        eprintln!(
            "kill {kill}: JobManager {leader} (pid {pid}) killed; JobManager {new} leads, \
             restored checkpoint {:?}, completed {:?}; JobManager {leader} restarted as pid {restarted}",
            latest_restored(&d),
            latest_completed(&d)
        );
        last = latest_completed(&d).expect("a completed checkpoint");
        leader = new;
    }
    c.await_status_leader(leader);

    let (_, end) = c.await_end(&job.id);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    job.assert_witness_holds(&c);
}

/// One JobManager (`masters` has one line) under a supervisor with restart-attempts 2: HA lets
/// even a cluster of one survive the crash of its JobManager.
#[test]
fn single_jobmanager_killed_is_restarted_by_its_supervisor_and_recovers_the_job() {
    let c = HaCluster::start("single-jm", 1, 2, 2);
    let job = c.submit_sequence(10, 3000, 2000, 2);
    let (_, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    let last = latest_completed(&d).expect("a completed checkpoint");
    let pid = c.jobmanager_pid(0).expect("the JobManager's pid file");
    signal(pid, libc::SIGKILL);

    let restarted = c.wait_for(
        "the supervisor to start the JobManager again",
        JOB_LIMIT,
        || c.jobmanager_pid(0).filter(|&p| p != pid && alive(p)),
    );
    let (_, d) = c.wait_for_new_checkpoint(&job.id, &[], last);
    assert_eq!(
        c.jobmanager_pid(0),
        Some(restarted),
        "the restarted JobManager leads"
    );
    assert_eq!(
        c.recoveries(0, &job.id),
        1,
        "the restarted JobManager logs 'Recovered JobGraph of job {}' once\n{}",
        job.id,
        c.log_tail()
    );
    assert!(
        latest_restored(&d).is_some_and(|r| r >= last),
        "restores from the newest checkpoint (>= {last}): {}",
        d["checkpoints"]
    );
    assert!(
        c.log_text("supervisor", 0).contains(&format!(
            "JobManager 0 (pid {pid}) died; starting it again (attempt 1 of 2)"
        )),
        "the supervisor logs the restart\n{}",
        c.log_tail()
    );

    let (_, end) = c.await_end(&job.id);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    job.assert_witness_holds(&c);
}

/// Fencing: the leader is paused (SIGSTOP) until its session expired and the standby took over,
/// then resumed (SIGCONT). It must step down without writing: it answers as a standby naming the
/// new leader and stays one, logs "stepping down" and suspends (never fails) the job, every
/// checkpoint pointer written after the takeover carries the
/// new leader's session, no checkpoint metadata file of the old era is left (a pause that lands
/// just before a `_metadata` write is the next test's), the job graph pointer is unchanged and no job result is recorded while the job runs; the job finishes once,
/// on the new leader, and the witness holds (two leaders never both committed).
#[test]
fn paused_leader_whose_session_expired_steps_down_without_writing() {
    let c = HaCluster::start("sigstop", 2, 2, 0);
    let job = c.submit_sequence(10, 5000, 2500, 2);
    let (old, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    let last = latest_completed(&d).expect("a completed checkpoint");
    let (old_rest, old_session) = c.leader_info().expect("leader-info while a leader leads");
    assert_eq!(old_rest, format!("http://{}", c.masters[old]));
    let graph_node = format!("{}/jobgraphs/{}", c.base, job.id);
    let graph_before = c.zk.get(&graph_node).expect("the job graph pointer");
    let old_pid = c.jobmanager_pid(old).expect("the leader's pid file");

    signal(old_pid, libc::SIGSTOP);
    let stopped_at = Instant::now();
    let (new, d) = c.wait_for_new_checkpoint(&job.id, &[old], last);
    assert_ne!(new, old);
    let restored = latest_restored(&d).expect("the new leader restored a checkpoint");
    assert!(
        restored >= last,
        "restores from the newest checkpoint (>= {last})"
    );
    let first_new = d["checkpoints"]["history"]
        .as_array()
        .and_then(|h| h.iter().filter_map(|c| c["id"].as_u64()).min())
        .expect("the new leader's checkpoint history");
    let (new_rest, new_session) = c.leader_info().expect("leader-info after the takeover");
    assert_eq!(new_rest, format!("http://{}", c.masters[new]));
    assert_ne!(
        new_session, old_session,
        "a new leadership, a new session id"
    );
    // Stay paused past the session timeout plus a margin before resuming.
    let resume_at = stopped_at + SESSION_TIMEOUT + Duration::from_secs(1);
    if let Some(rest) = resume_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    let metadata_before = c.metadata_files(&job.id);

    signal(old_pid, libc::SIGCONT);
    // Once it answers as a standby naming the new leader it must stay one. (What it answers in
    // the first moments after the resume is the subject of
    // `resumed_old_leader_does_not_answer_as_leader`.)
    c.wait_for(
        "the resumed JobManager to answer as a standby naming the new leader",
        JOB_LIMIT,
        || (c.role(old) == Role::Standby(Some(new_rest.clone()))).then_some(()),
    );
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        assert_eq!(
            c.role(old),
            Role::Standby(Some(new_rest.clone())),
            "the resumed old leader is a standby naming the new one\n{}",
            c.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(old_pid), "the old leader keeps running as a standby");
    let suspended = format!("({}) switched from", job.id);
    let log = c.wait_for(
        "the old leader to log that it stepped down and suspended the job",
        JOB_LIMIT,
        || {
            let log = c.log_text("jobmanager", old);
            let stepped_down = log.contains("stepping down") || log.contains("leadership revoked");
            let suspended = log
                .lines()
                .any(|l| l.contains(&suspended) && l.ends_with("to SUSPENDED"));
            (stepped_down && suspended).then_some(log)
        },
    );
    let transitions: Vec<&str> = log.lines().filter(|l| l.contains(&suspended)).collect();
    assert!(
        !transitions.iter().any(|l| l.ends_with("to FAILED")),
        "the old leader suspends the job, never fails it: {transitions:#?}"
    );

    // The new leader goes on checkpointing while the old one is awake.
    let (l, d) = c.wait_for_new_checkpoint(&job.id, &[], latest_completed(&d).unwrap_or(0) + 1);
    assert_eq!(l, new, "leadership stays with the new leader");
    let pointers = c.checkpoint_pointers(&job.id, latest_completed(&d).unwrap_or(0) + 20);
    assert!(
        pointers.iter().any(|(_, s)| *s == new_session),
        "the new leader's checkpoints are registered: {pointers:?}"
    );
    for (id, session) in &pointers {
        assert!(
            *session == new_session || (*session == old_session && *id <= restored),
            "checkpoint pointer {id} was written by session {session}; only the new leader \
             ({new_session}) may write after the takeover (old {old_session}, restored {restored})\n{}",
            c.log_tail()
        );
    }
    let stale_metadata: Vec<u64> = c
        .metadata_files(&job.id)
        .into_iter()
        .filter(|id| *id < first_new && !metadata_before.contains(id))
        .collect();
    assert!(
        stale_metadata.is_empty(),
        "the deposed leader left checkpoint metadata {stale_metadata:?} after it resumed \
         (the new leader's first checkpoint is {first_new})\n{}",
        c.log_tail()
    );
    assert_eq!(
        c.zk.get(&graph_node).as_deref(),
        Some(graph_before.as_str()),
        "the job graph pointer is unchanged"
    );
    assert_eq!(
        c.zk.get(&format!("{}/job-results/{}", c.base, job.id)),
        None,
        "no job result is recorded while the job runs"
    );
    c.await_status_leader(new);

    let (l, end) = c.await_end(&job.id);
    assert_eq!(l, new);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    let result =
        c.zk.get_json(&format!("{}/job-results/{}", c.base, job.id))
            .expect("the job result is recorded");
    assert_eq!(
        result["leader_session"], new_session,
        "the result is recorded by the new leader: {result}"
    );
    job.assert_witness_holds(&c);
}

/// A leader stopped (by itself, at the fault point `jm.checkpoint.before-metadata`) just before
/// it writes a checkpoint's `_metadata`, kept stopped past its session timeout while the standby
/// took over, then resumed.
struct ResumedLeader {
    c: HaCluster,
    job: Sequence,
    old: usize,
    new: usize,
    old_session: String,
    new_session: String,
    /// The newest checkpoint completed before the pause.
    last: u64,
    /// `_metadata` files present while it was stopped.
    metadata_before: BTreeSet<u64>,
}

/// The pause of `paused_leader_whose_session_expired_steps_down_without_writing`, placed where
/// a SIGSTOP from outside lands only by chance (it did in CI): after the leader checked for a
/// stall and before it writes `_metadata`. `also` arms more fault points (or is empty).
fn resume_leader_paused_before_metadata(name: &str, also: &str) -> ResumedLeader {
    let trigger_dir = tempfile::tempdir().expect("a temp dir");
    let trigger = trigger_dir.path().join("stop");
    let points = format!(
        "jm.checkpoint.before-metadata=stop-on-file-{}{also}",
        trigger.display()
    );
    let c = HaCluster::start_with_env(name, 2, 2, &[("EDDY_FAULT_POINTS", &points)]);
    let job = c.submit_sequence(10, 5000, 2500, 2);
    let (old, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    let last = latest_completed(&d).expect("a completed checkpoint");
    let (_, old_session) = c.leader_info().expect("leader-info while a leader leads");
    let old_pid = c.jobmanager_pid(old).expect("the leader's pid file");

    std::fs::write(&trigger, b"").expect("the trigger file");
    c.wait_for("the leader to stop at the fault point", JOB_LIMIT, || {
        (process_state(old_pid)? == "T").then_some(())
    });
    let stopped_at = Instant::now();
    let metadata_before = c.metadata_files(&job.id);
    let (new, _) = c.wait_for_new_checkpoint(&job.id, &[old], last);
    assert_ne!(new, old);
    let (_, new_session) = c.leader_info().expect("leader-info after the takeover");
    let resume_at = stopped_at + SESSION_TIMEOUT + Duration::from_secs(1);
    if let Some(rest) = resume_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    signal(old_pid, libc::SIGCONT);
    ResumedLeader {
        c,
        job,
        old,
        new,
        old_session,
        new_session,
        last,
        metadata_before,
    }
}

impl ResumedLeader {
    /// Waits until the old leader's log contains `line`; returns the id of the checkpoint whose
    /// registration it was refused (its log names it) and that checkpoint's directory.
    fn refused_checkpoint(&self, line: &str) -> (u64, PathBuf) {
        let log = self.c.wait_for(
            &format!("the resumed leader to log '{line}'"),
            JOB_LIMIT,
            || {
                let log = self.c.log_text("jobmanager", self.old);
                log.contains(line).then_some(log)
            },
        );
        let paused: u64 = log
            .lines()
            .find_map(|l| {
                let rest = l.split_once("checkpoint ")?.1;
                let (id, rest) = rest.split_once(' ')?;
                rest.starts_with(
                    "not completed: cannot register the checkpoint in the HA store: fenced",
                )
                .then(|| id.parse().ok())?
            })
            .unwrap_or_else(|| {
                panic!(
                    "the resumed leader's registration of a checkpoint was refused (fenced)\n{}",
                    self.c.log_tail()
                )
            });
        assert!(paused > self.last && !self.metadata_before.contains(&paused));
        let dir = self.c.dir.path().join("checkpoints").join(&self.job.id);
        (paused, dir.join(format!("chk-{paused}")))
    }

    /// The new leader keeps leading, only it registered checkpoints from `paused` on, and the
    /// job finishes with the witness holding.
    fn assert_new_leader_finishes(&self, paused: u64) {
        let c = &self.c;
        let (l, d) = c.wait_for_new_checkpoint(&self.job.id, &[], paused);
        assert_eq!(l, self.new, "leadership stays with the new leader");
        let newest = latest_completed(&d).unwrap_or(0);
        for (id, session) in c.checkpoint_pointers(&self.job.id, newest + 20) {
            assert!(
                session == self.new_session || (session == self.old_session && id < paused),
                "checkpoint pointer {id} was written by session {session} (new leader {})",
                self.new_session
            );
        }
        let (_, end) = c.await_end(&self.job.id);
        assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
        self.job.assert_witness_holds(c);
    }
}

/// Resumed, the paused leader writes `_metadata` (no check can close that window), its fenced
/// registration is refused, and it must delete that checkpoint's files and step down: nothing of
/// it is left for anyone to find.
#[test]
fn leader_paused_just_before_writing_metadata_leaves_no_checkpoint_behind() {
    let r = resume_leader_paused_before_metadata("pause-metadata", "");
    let (paused, paused_dir) = r.refused_checkpoint("stepping down");
    assert!(
        r.c.log_text("jobmanager", r.old).contains(&format!(
            "deleted the files of checkpoint {paused}, whose registration was refused"
        )),
        "the files of the refused checkpoint {paused} are deleted\n{}",
        r.c.log_tail()
    );
    assert!(
        !paused_dir.exists(),
        "{} is left behind by the deposed leader\n{}",
        paused_dir.display(),
        r.c.log_tail()
    );
    r.assert_new_leader_finishes(paused);
}

/// The same, but the resumed leader crashes between the refused registration and deleting the
/// files (`jm.checkpoint.refused.before-discard`). Its `chk-<n>/` stays behind (a known leak, as
/// for any leader that dies in the middle of a checkpoint), and nothing reads it: the new leader
/// goes on from its own checkpoints and the witness holds.
#[test]
fn leader_crashing_after_its_refused_registration_leaves_an_unread_checkpoint() {
    let r = resume_leader_paused_before_metadata(
        "pause-metadata-crash",
        ",jm.checkpoint.refused.before-discard=exit",
    );
    let (paused, paused_dir) =
        r.refused_checkpoint("fault point 'jm.checkpoint.refused.before-discard' reached");
    let old_pid =
        r.c.jobmanager_pid(r.old)
            .expect("the old leader's pid file");
    r.c.wait_for("the old leader to exit", JOB_LIMIT, || {
        (!alive(old_pid)).then_some(())
    });
    assert!(
        paused_dir.join("_metadata").exists(),
        "the crash came after the `_metadata` write and before the delete\n{}",
        r.c.log_tail()
    );
    r.assert_new_leader_finishes(paused);
    let restored_from_it = format!("restoring from Some({paused})");
    assert!(
        !r.c.log_text("jobmanager", r.new)
            .contains(&restored_from_it),
        "nothing restores from the unregistered checkpoint {paused}\n{}",
        r.c.log_tail()
    );
}

/// A request that reaches the leader while it is paused (SIGSTOP) beyond its session timeout,
/// with a standby leading meanwhile, is answered only once the old leader resumed (SIGCONT): by
/// then it no longer leads, so it must answer 503 naming the new leader, never 200 from its
/// stale state; and so must every request right after the resume.
#[test]
fn resumed_old_leader_does_not_answer_as_leader() {
    let c = HaCluster::start("sigstop-rest", 2, 1, 0);
    let old = c.wait_for("one leader", JOB_LIMIT, || match c.leaders(&[])[..] {
        [l] => Some(l),
        _ => None,
    });
    let pid = c.jobmanager_pid(old).expect("the leader's pid file");
    signal(pid, libc::SIGSTOP);
    let stopped_at = Instant::now();
    let new = c.wait_for("the standby to take over", JOB_LIMIT, || {
        c.leaders(&[old]).first().copied()
    });
    let resume_at = stopped_at + SESSION_TIMEOUT + Duration::from_secs(1);
    if let Some(rest) = resume_at.checked_duration_since(Instant::now()) {
        std::thread::sleep(rest);
    }
    // A client asks the paused JobManager; the request waits in its socket until the resume.
    let rest = c.masters[old].clone();
    let queued = std::thread::spawn(move || {
        client::request(&rest, "GET", "/overview", None, Duration::from_secs(30))
    });
    std::thread::sleep(Duration::from_millis(300));
    signal(pid, libc::SIGCONT);
    let mut after = Vec::new();
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        after.push(c.role(old));
        std::thread::sleep(Duration::from_millis(10));
    }
    let queued = match queued.join().expect("the queued request's thread") {
        Ok((200, v)) => format!("200 {v}"),
        Ok((code, v)) => format!("{code} {v}"),
        Err(e) => e,
    };
    let own = format!("http://{}", c.masters[old]);
    let mut violations = Vec::new();
    if queued.starts_with("200") {
        violations.push(format!(
            "the request queued during the pause was answered {queued}"
        ));
    }
    for (n, r) in after.iter().enumerate() {
        match r {
            Role::Leader => violations.push(format!("request #{n} after the resume got 200")),
            Role::Standby(Some(l)) if *l == own => violations.push(format!(
                "request #{n} after the resume got 503 naming JobManager {old} itself as leader"
            )),
            _ => {}
        }
    }
    assert!(
        violations.is_empty(),
        "JobManager {old} ({own}) resumed while JobManager {new} (http://{}) leads: {violations:#?}\n\
         first answers after the resume: {:?}\n{}",
        c.masters[new],
        &after[..after.len().min(5)],
        c.log_tail()
    );
    assert_eq!(
        after.last(),
        Some(&Role::Standby(Some(format!("http://{}", c.masters[new])))),
        "the resumed old leader names the new one"
    );
}

/// ZooKeeper stopped for longer than the session timeout, then started again on the same port
/// with the same data dir, while a job runs: the job goes on or is recovered, no process dies,
/// and nothing is lost or duplicated.
#[test]
fn zookeeper_restarted_during_a_job_loses_nothing() {
    let c = HaCluster::start("zk-restart", 2, 2, 0);
    let job = c.submit_sequence(10, 4000, 2000, 2);
    let (_, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    let last = latest_completed(&d).expect("a completed checkpoint");
    let pids = pid_files(&c.log);

    c.zk.stop();
    std::thread::sleep(SESSION_TIMEOUT + Duration::from_secs(1));
    c.zk.start_again();

    let (leader, d) = c.wait_for_new_checkpoint(&job.id, &[], last);
    eprintln!(
        "after the ZooKeeper restart JobManager {leader} leads; restored {:?}, completed {:?}",
        latest_restored(&d),
        latest_completed(&d)
    );
    for (name, pid) in &pids {
        assert!(
            alive(*pid),
            "{name} (pid {pid}) died while ZooKeeper was away\n{}",
            c.log_tail()
        );
    }
    c.await_status_leader(leader);

    let (_, end) = c.await_end(&job.id);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    job.assert_witness_holds(&c);
}

/// The job result store: a job that FINISHED is not run again by the next leader, even when the
/// leader is killed the moment it reports FINISHED.
#[test]
fn finished_job_is_not_run_again_after_a_leader_change() {
    let c = HaCluster::start("finished", 2, 2, 0);
    let job = c.submit_sequence(4, 500, 0, 2);
    let (old, end) = c.await_end(&job.id);
    assert_eq!(status(&end), "FINISHED", "{end}\n{}", c.log_tail());
    signal(
        c.jobmanager_pid(old).expect("the leader's pid file"),
        libc::SIGKILL,
    );

    let new = 1 - old;
    // A new leader answers only after its recovery ran (one event loop): what it lists now is
    // what it recovered. Watch a little longer anyway, with every TaskManager back.
    c.wait_for(
        "the standby to lead with both TaskManagers",
        JOB_LIMIT,
        || {
            c.get(new, "/overview")
                .filter(|o| o["taskmanagers"].as_u64() == Some(2))
        },
    );
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let jobs = c
            .get(new, "/jobs/overview")
            .expect("the new leader's job list");
        for j in jobs["jobs"].as_array().expect("jobs") {
            assert!(
                j["jid"] != job.id.as_str() || j["state"] == "FINISHED",
                "the finished job is back on the new leader: {j}\n{}",
                c.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        c.recoveries(new, &job.id),
        0,
        "the new leader must not recover the finished job\n{}",
        c.log_tail()
    );
    // Issue 17 F3: the new leader serves the ended job from the archive in the job result store
    // (before, `/jobs/:id` answered 404 and the job vanished from the lists).
    let served = c
        .get(new, &format!("/jobs/{}", job.id))
        .expect("the new leader serves the finished job");
    assert_eq!(served["state"], "FINISHED", "{served}");
    let listed = c.get(new, "/jobs/overview").expect("job list");
    assert!(
        listed["jobs"].as_array().is_some_and(|jobs| jobs
            .iter()
            .any(|j| j["jid"] == job.id.as_str() && j["state"] == "FINISHED")),
        "the finished job is listed: {listed}"
    );
    let result =
        c.zk.get_json(&format!("{}/job-results/{}", c.base, job.id))
            .expect("the job result is recorded");
    assert_eq!(result["state"], "clean", "{result}");
    assert_eq!(
        c.zk.get(&format!("{}/jobgraphs/{}", c.base, job.id)),
        None,
        "the job graph is cleaned up once the result is recorded"
    );
    job.assert_witness_holds(&c);
}

/// `eddy cluster start` failed: one `error:` line on stderr naming `needle`, and neither a
/// process nor a pid file left.
fn assert_start_failed_cleanly(c: &HaCluster, needle: &str) {
    let out = c.cli(&["cluster", "start", "--conf", c.conf_str()]);
    assert_ne!(out.code, 0, "cluster start should fail: {}", out.stdout);
    eprintln!("cluster start: {}", out.stderr.trim());
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one stderr line, got: {:?}\n{}",
        out.stderr,
        c.log_tail()
    );
    assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "{:?} should name {needle:?}",
        lines[0]
    );
    let conf = c.conf.display().to_string();
    let mut left = Vec::new();
    let gone = Instant::now() + Duration::from_secs(5);
    while Instant::now() < gone {
        left = processes_mentioning(&conf);
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<String> = left
        .into_iter()
        .map(|p| format!("{p}: {}", cmdline(p)))
        .collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    assert_eq!(pid_files(&c.log), Vec::new(), "pid files left behind");
}

/// A quorum nobody listens on (connection timeout 1 s), without and with supervisors: one error
/// line naming the quorum, and no half-started cluster.
#[test]
fn unreachable_quorum_fails_cluster_start_with_one_error_and_no_process_left() {
    for restart_attempts in [0, 2] {
        let dead = format!("127.0.0.1:{}", free_ports(1)[0]);
        let c = HaCluster::configure(
            &format!("bad-quorum-{restart_attempts}"),
            2,
            1,
            restart_attempts,
            &[
                ("high-availability.zookeeper.quorum", dead.clone()),
                (
                    "high-availability.zookeeper.client.connection-timeout",
                    "1 s".to_string(),
                ),
            ],
        );
        assert_start_failed_cleanly(&c, &dead);
    }
}

/// A storage dir that cannot be created: one error line naming the path, nothing left running.
#[test]
fn unwritable_storage_dir_fails_cluster_start_naming_the_path() {
    let c = HaCluster::configure(
        "bad-storage",
        2,
        1,
        0,
        &[("high-availability.storageDir", "/proc/eddy-x".to_string())],
    );
    assert_start_failed_cleanly(&c, "/proc/eddy-x");
}

// ---------------------------------------------------------------------------------------------
// Recovery you can trust: crashes between the steps of a job's end, unreadable checkpoints,
// attempts of a deposed leader that are slow to cancel.

impl HaCluster {
    /// [`HaCluster::configure`], then `eddy cluster start` with `env` in the environment of
    /// every process it starts (e.g. `EDDY_FAULT_POINTS`).
    fn start_with_env(name: &str, masters: usize, workers: usize, env: &[(&str, &str)]) -> Self {
        let c = HaCluster::configure(name, masters, workers, 0, &[]);
        let mut vars = vec![("EDDY_LOG", "info")];
        vars.extend_from_slice(env);
        let out = eddy_with_env(
            &["cluster", "start", "--conf", c.conf_str()],
            &vars,
            CLI_LIMIT,
        );
        assert_eq!(
            out.code,
            0,
            "cluster start: {}\n{}",
            out.stderr,
            c.log_tail()
        );
        c
    }

    /// The single JobManager (other than `skip`) that answers as leader, waiting for one.
    fn await_leader(&self, skip: &[usize]) -> usize {
        self.wait_for("a leader", JOB_LIMIT, || {
            self.leaders(skip).first().copied()
        })
    }
}

/// Two JobManagers armed with the fault point `point`; a short `sequence` job runs to its end,
/// where the leader crashes at `point`. Returns the cluster, the job, the crashed leader and
/// the JobManager that leads after it.
fn crash_at_job_end(name: &str, point: &str) -> (HaCluster, Sequence, usize) {
    let c = HaCluster::start_with_env(name, 2, 2, &[("EDDY_FAULT_POINTS", point)]);
    let first = c.await_leader(&[]);
    let first_pid = c.jobmanager_pid(first).expect("the leader's pid file");
    let job = c.submit_sequence(4, 2000, 4000, 2);
    c.wait_for("the leader to crash at the fault point", JOB_LIMIT, || {
        (!alive(first_pid)).then_some(())
    });
    assert!(
        c.log_text("jobmanager", first)
            .contains(&format!("fault point '{point}' reached")),
        "the leader crashed at the fault point\n{}",
        c.log_tail()
    );
    (c, job, first)
}

/// The leader dies after the job FINISHED, its result was recorded (dirty) and its checkpoints
/// were discarded, before the result is marked clean — the moment at which the old order (discard
/// first, record after) left a job graph with neither result nor checkpoints, and the next leader
/// ran the job again from nothing while the file sink deleted its committed output. Now the next
/// leader finds the dirty result, finishes the clean-up and never runs the job again.
#[test]
fn leader_dying_between_result_and_cleanup_never_reruns_the_finished_job() {
    let (c, job, first) = crash_at_job_end("dirty-result", "jm.job-result.before-clean");
    let new = c.await_leader(&[first]);
    let committed_before = committed_lines(&job.output);
    assert_eq!(
        committed_before.len() as u64,
        job.keys * job.per_key,
        "everything was committed before the crash"
    );
    let result = c.wait_for("the dirty result to be cleaned", JOB_LIMIT, || {
        c.zk.get_json(&format!("{}/job-results/{}", c.base, job.id))
            .filter(|r| r["state"] == "clean")
    });
    assert_eq!(result["result"]["status"], "FINISHED", "{result}");
    // Watch the new leader a while: the job must not come back.
    let watch_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < watch_until {
        assert_eq!(
            c.recoveries(new, &job.id),
            0,
            "job re-run\n{}",
            c.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        c.zk.get(&format!("{}/jobgraphs/{}", c.base, job.id)),
        None,
        "the job graph is removed by the clean-up"
    );
    assert!(
        c.metadata_files(&job.id).is_empty(),
        "the job's checkpoints are gone: {:?}",
        c.metadata_files(&job.id)
    );
    assert_eq!(
        committed_lines(&job.output),
        committed_before,
        "committed output unchanged"
    );
    job.assert_witness_holds(&c);
}

/// The same crash one step earlier: right after the result was recorded, before any checkpoint
/// was discarded. The next leader deletes the registered checkpoints itself and marks it clean.
#[test]
fn leader_dying_right_after_recording_the_result_leaves_the_cleanup_to_the_next_leader() {
    let (c, job, first) = crash_at_job_end("after-dirty", "jm.job-result.after-dirty");
    assert!(
        !c.metadata_files(&job.id).is_empty(),
        "the crash came before any checkpoint was discarded"
    );
    let new = c.await_leader(&[first]);
    c.wait_for("the dirty result to be cleaned", JOB_LIMIT, || {
        c.zk.get_json(&format!("{}/job-results/{}", c.base, job.id))
            .filter(|r| r["state"] == "clean")
    });
    c.wait_for(
        "the registered checkpoints to be deleted",
        JOB_LIMIT,
        || c.metadata_files(&job.id).is_empty().then_some(()),
    );
    assert_eq!(
        c.recoveries(new, &job.id),
        0,
        "job re-run\n{}",
        c.log_tail()
    );
    job.assert_witness_holds(&c);
}

/// The crash one step earlier still: the job ended but its result is not recorded, and nothing
/// was cleaned up. The next leader recovers the job from its final checkpoint (everything was
/// committed by it), the job ends again at once, and nothing is emitted twice or retracted.
#[test]
fn leader_dying_before_recording_the_result_recovers_the_job_from_its_final_checkpoint() {
    let (c, job, first) = crash_at_job_end("before-dirty", "jm.job-result.before-dirty");
    let committed_before = committed_lines(&job.output);
    assert_eq!(committed_before.len() as u64, job.keys * job.per_key);
    // Every JobManager is armed: the next leader crashes at the same point once it ran the job
    // to its end again, so what it did is read from its log.
    let new = 1 - first;
    let finished = format!("({}) switched from RUNNING to FINISHED", job.id);
    let log = c.wait_for(
        "the next leader to run the job to its end again",
        JOB_LIMIT,
        || {
            let log = c.log_text("jobmanager", new);
            log.contains(&finished).then_some(log)
        },
    );
    assert_eq!(
        c.recoveries(new, &job.id),
        1,
        "recovered once\n{}",
        c.log_tail()
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&job.id) && l.contains("restoring from Some(")),
        "restored from a checkpoint, not from nothing\n{log}"
    );
    assert_eq!(
        committed_lines(&job.output),
        committed_before,
        "committed output unchanged"
    );
    job.assert_witness_holds(&c);
}

/// Checkpoints are registered in ZooKeeper, but the new leader cannot read any of them (here the
/// checkpoint directory was moved away, as on a JobManager that does not see the TaskManagers'
/// directory). Before, the job silently restarted from nothing and emitted everything again; now
/// it FAILS with one line naming the directory, and nothing is emitted twice.
#[test]
fn recovered_job_whose_checkpoints_cannot_be_read_fails_naming_the_directory() {
    let c = HaCluster::start("unreadable", 2, 2, 0);
    let job = c.submit_sequence(6, 100_000, 3000, 2);
    let (old, d) = c.wait_for_new_checkpoint(&job.id, &[], 0);
    assert!(latest_completed(&d).is_some());
    let checkpoints = c.dir.path().join("checkpoints");
    signal(c.jobmanager_pid(old).expect("pid"), libc::SIGKILL);
    // Before the session expires (2 s) and the standby recovers the job.
    std::fs::rename(&checkpoints, c.dir.path().join("checkpoints-moved")).expect("move dir");
    let (_, end) = c.await_end(&job.id);
    assert_eq!(status(&end), "FAILED", "{end}\n{}", c.log_tail());
    let leader = c.await_leader(&[old]);
    let exceptions = c
        .get(leader, &format!("/jobs/{}/exceptions", job.id))
        .expect("exceptions");
    let text = exceptions.to_string();
    assert!(
        text.contains("none can be read from") && text.contains(&*checkpoints.to_string_lossy()),
        "the failure names the checkpoint directory: {text}"
    );
    let lines = committed_lines(&job.output);
    let (_, duplicates, wrong) = witness(&lines, job.keys, job.per_key);
    assert_eq!(
        (duplicates, wrong),
        (0, 0),
        "nothing emitted twice\n{}",
        c.log_tail()
    );
}

/// Issue 17 F1: a TaskManager paused past `heartbeat.timeout` and resumed (the leader restarts
/// the job around it), then the leader paused past its session, while every source task takes
/// seconds to cancel. Attempt numbers of the new leader used to collide with the old leader's, so
/// the old attempt's late CANCELED report froze the job (RUNNING, a subtask CANCELED, no
/// checkpoint ever again). Now the job always returns to all tasks RUNNING and checkpoints again.
#[test]
fn leader_paused_past_its_session_while_tasks_are_slow_to_cancel_recovers_every_time() {
    let c = HaCluster::start("slow-cancel", 2, 2, 0);
    let output = c.dir.path().join("out-slow-cancel");
    let out = c.cli(&[
        "run",
        "sequence",
        "--keys",
        "8",
        "--per-key",
        "200000",
        "--rate",
        "2000",
        "--cancel-delay-ms",
        "2500",
        "--output",
        &output.display().to_string(),
        "-p",
        "2",
        "--conf",
        c.conf_str(),
        "-d",
    ]);
    assert_eq!(out.code, 0, "run: {}", out.stderr);
    let id = out.stdout.trim().to_string();
    let (mut leader, d) = c.wait_for_new_checkpoint(&id, &[], 0);
    let mut last = latest_completed(&d).unwrap_or(0);
    let tm_pids: Vec<u32> = pid_files(&c.log)
        .into_iter()
        .filter(|(n, _)| n.contains("taskmanager"))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(tm_pids.len(), 2, "two TaskManagers");
    for round in 0..3 {
        // Round 0: the leader never restarted the job, so its attempts are its first ones, as a
        // new leader's are. Later rounds: first a TaskManager stalls past heartbeat.timeout
        // (3 s) and the leader restarts the job around it (issue 17's reproduction).
        if round > 0 {
            signal(tm_pids[round % 2], libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(4000));
            signal(tm_pids[round % 2], libc::SIGCONT);
            std::thread::sleep(Duration::from_millis(1000));
        }
        // Then the leader stalls past its session (2 s): the standby takes over while the old
        // attempts are still cancelling.
        let pid = c.jobmanager_pid(leader).expect("leader pid");
        signal(pid, libc::SIGSTOP);
        let (new, _) = c.wait_for_new_checkpoint(&id, &[leader], last);
        signal(pid, libc::SIGCONT);
        // The old attempts report CANCELED only after their 2.5 s: past that, the job must
        // still checkpoint with every task RUNNING (no subtask left CANCELED behind it).
        std::thread::sleep(Duration::from_millis(3500));
        let now_last = c
            .get(new, &format!("/jobs/{id}/eddy-details"))
            .and_then(|d| latest_completed(&d))
            .unwrap_or(last);
        let (l, d) = c.wait_for_new_checkpoint(&id, &[], now_last);
        assert_eq!(l, new, "round {round}");
        assert!(all_tasks_running(&d), "round {round}: {d}");
        // Issue 10 item 4: the new leader shows the recovery's timeline.
        let timeline = d["recoveries"]
            .as_array()
            .and_then(|r| {
                r.iter().find(|r| {
                    r["cause"]
                        .as_str()
                        .is_some_and(|c| c.contains("leader change"))
                })
            })
            .unwrap_or_else(|| {
                panic!(
                    "round {round}: a leader-change recovery: {}",
                    d["recoveries"]
                )
            });
        for step in ["detected", "decided", "deployed", "running"] {
            assert!(
                timeline[step].is_i64(),
                "round {round}: {step} in {timeline}"
            );
        }
        last = latest_completed(&d).unwrap_or(last);
        leader = new;
    }
    let lines = committed_lines(&output);
    let (_, duplicates, wrong) = witness(&lines, 8, 200_000);
    assert_eq!(
        (duplicates, wrong),
        (0, 0),
        "exactly once so far\n{}",
        c.log_tail()
    );
}
