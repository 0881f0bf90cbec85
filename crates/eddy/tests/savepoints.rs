//! End-to-end tests of savepoints with real processes: stop-with-savepoint and resume at other
//! parallelisms (the exactly-once witness over the committed output of every run), a plain
//! savepoint then cancel then resume, a moved savepoint directory, operators matched by uid
//! (`--allow-non-restored-state`), and the one-line errors of bad savepoint paths.
//!
//! Every test gets its own temp dir with a generated conf dir on free 127.0.0.1 ports; the
//! cluster is stopped (and SIGKILLed) on drop, also when the test fails.
#![allow(dead_code)]

mod common;

use common::*;
use eddy_rest::client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");

const CLI_LIMIT: Duration = Duration::from_secs(60);
const JOB_LIMIT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    free_ports(1)[0]
}

fn run_quietly(args: &[&str], limit: Duration) {
    let Ok(mut child) = Command::new(EDDY)
        .args(args)
        .env_remove("EDDY_CONF_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return;
    };
    let deadline = Instant::now() + limit;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One stderr line, `error: ...`, and nothing else.
fn state(job: &Value) -> &str {
    job["state"].as_str().unwrap_or("?")
}

fn is_terminal(job: &Value) -> bool {
    matches!(state(job), "FINISHED" | "FAILED" | "CANCELED")
}

/// RUNNING, with every subtask of every vertex RUNNING (from `GET /jobs/:id`).
fn all_tasks_running(job: &Value) -> bool {
    state(job) == "RUNNING"
        && job["vertices"].as_array().is_some_and(|vs| {
            !vs.is_empty()
                && vs
                    .iter()
                    .all(|v| v["tasks"]["RUNNING"].as_u64() == v["parallelism"].as_u64())
        })
}

fn used_slots(tm: &Value) -> u64 {
    tm["slotsNumber"].as_u64().unwrap_or(0) - tm["freeSlots"].as_u64().unwrap_or(0)
}

fn sigkill(pid: u32) {
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill -9 {pid}: {}", std::io::Error::last_os_error());
}

fn pid_of(tm: &Value) -> u32 {
    tm["pid"].as_u64().expect("TaskManager pid") as u32
}

/// A killed TaskManager, as the cluster knew it.
/// A cluster's conf dir (config.yaml, masters, workers) in a temp dir of its own, and the
/// processes started from it. Dropping it stops them all, by `eddy cluster stop` and then SIGKILL.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    log: PathBuf,
    /// The JobManager's REST address, `127.0.0.1:port`.
    rest: String,
    workers: usize,
}

impl Cluster {
    /// Writes a conf dir: one JobManager, `workers` TaskManagers of `slots` slots, fast heartbeats,
    /// checkpoints and restarts; `extra` keys replace or add to the generated ones.
    fn configure(workers: usize, slots: u32, extra: &[(&str, &str)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&conf).expect("create conf dir");
        let ports = free_ports(2);
        let (rest_port, rpc_port) = (ports[0], ports[1]);
        let keys: Vec<(String, String)> = [
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("jobmanager.rpc.port", rpc_port.to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.bind-address", "127.0.0.1".to_string()),
            ("rest.port", rest_port.to_string()),
            ("taskmanager.host", "127.0.0.1".to_string()),
            ("taskmanager.numberOfTaskSlots", slots.to_string()),
            ("parallelism.default", "2".to_string()),
            ("execution.checkpointing.interval", "200 ms".to_string()),
            (
                "execution.checkpointing.dir",
                dir.path().join("checkpoints").display().to_string(),
            ),
            ("state.checkpoints.num-retained", "2".to_string()),
            ("restart-strategy.type", "fixed-delay".to_string()),
            (
                "restart-strategy.fixed-delay.attempts",
                "unlimited".to_string(),
            ),
            ("restart-strategy.fixed-delay.delay", "50 ms".to_string()),
            ("heartbeat.interval", "200 ms".to_string()),
            ("heartbeat.timeout", "2 s".to_string()),
            ("env.log.dir", log.display().to_string()),
            // One test slows snapshots down (`--snapshot-delay-ms`), a test hook.
            ("eddy.test-hooks.enabled", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // `{dir}` in a value: this cluster's temp dir.
        let base = dir.path().display().to_string();
        let extra: Vec<(&str, String)> = extra
            .iter()
            .map(|(k, v)| (*k, v.replace("{dir}", &base)))
            .collect();
        write_config_yaml(&conf, keys, &extra);
        std::fs::write(conf.join("masters"), format!("127.0.0.1:{rest_port}\n"))
            .expect("write masters");
        std::fs::write(conf.join("workers"), "127.0.0.1\n".repeat(workers)).expect("write workers");
        Cluster {
            dir,
            conf,
            log,
            rest: format!("127.0.0.1:{rest_port}"),
            workers,
        }
    }

    /// [`Cluster::configure`], then `eddy cluster start`, which returns once every TaskManager
    /// registered.
    fn start(workers: usize, slots: u32, extra: &[(&str, &str)]) -> Cluster {
        let c = Cluster::configure(workers, slots, extra);
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

    fn request(&self, method: &str, path: &str) -> Result<(u16, Value), String> {
        client::request(&self.rest, method, path, None, HTTP_TIMEOUT)
    }

    /// `GET path` when it answers 200.
    fn get(&self, path: &str) -> Option<Value> {
        match self.request("GET", path) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    fn taskmanagers(&self) -> Vec<Value> {
        self.get("/taskmanagers")
            .and_then(|v| v["taskmanagers"].as_array().cloned())
            .unwrap_or_default()
    }

    fn jobmanager_pid(&self) -> u32 {
        std::fs::read_to_string(self.log.join("eddy-jobmanager-0.pid"))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
            .expect("the JobManager's pid file")
    }

    /// Polls `probe` every 20 ms until it gives a value; panics with the logs after `limit`.
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

    /// Waits until the job's checkpoint counts satisfy `ok`; returns its checkpoint statistics.
    /// Panics if the job ends first.
    fn wait_for_checkpoints(&self, job: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, JOB_LIMIT, || {
            let stats = self.get(&format!("/jobs/{job}/checkpoints"));
            if let Some(s) = stats.filter(|s| ok(&s["counts"])) {
                return Some(s);
            }
            if let Some(j) = self.get(&format!("/jobs/{job}")).filter(is_terminal) {
                panic!("job {job} ended before {what}: {j}\n{}", self.log_tail());
            }
            None
        })
    }

    /// Polls `GET /jobs/:id` until the job is FINISHED, FAILED or CANCELED.
    fn await_end(&self, job: &str) -> Value {
        self.wait_for(&format!("job {job} to end"), JOB_LIMIT, || {
            self.get(&format!("/jobs/{job}")).filter(is_terminal)
        })
    }

    /// A TaskManager that holds slots of a job (slot sharing: one per subtask index).
    fn busy_taskmanager(&self) -> Value {
        self.wait_for("a TaskManager with allocated slots", JOB_LIMIT, || {
            self.taskmanagers().into_iter().find(|t| used_slots(t) > 0)
        })
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
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last 30 lines)\n", f.display()));
            for l in &lines[lines.len().saturating_sub(30)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut pids: Vec<u32> = pid_files(&self.log).into_iter().map(|(_, p)| p).collect();
        run_quietly(
            &[
                "cluster",
                "stop",
                "--conf",
                &self.conf.display().to_string(),
            ],
            Duration::from_secs(30),
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
        // Processes no pid file knows: active-mode TaskManagers, a test's own daemons.
        for pid in processes_mentioning(&self.conf.display().to_string()) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

impl Cluster {
    /// `eddy run sequence ... -d` into `output` with extra CLI arguments (e.g. `-s PATH`);
    /// returns the job id once every task runs.
    fn run_sequence(
        &self,
        output: &Path,
        keys: u64,
        per_key: u64,
        rate: u64,
        p: u32,
        extra: &[&str],
    ) -> String {
        let (k, n, r, p) = (
            keys.to_string(),
            per_key.to_string(),
            rate.to_string(),
            p.to_string(),
        );
        let out_arg = output.display().to_string();
        let mut args = vec![
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
            "-m",
            &self.rest,
            "-d",
        ];
        args.extend_from_slice(extra);
        let out = self.cli(&args);
        assert_eq!(
            out.code,
            0,
            "eddy run -d: {}\n{}",
            out.stderr,
            self.log_tail()
        );
        let id = out.stdout.trim().to_string();
        self.wait_for(&format!("job {id} to run all its tasks"), JOB_LIMIT, || {
            self.get(&format!("/jobs/{id}"))
                .filter(|j| all_tasks_running(j) || is_terminal(j))
        });
        id
    }

    /// Cancels `job` (whose checkpoints are retained on cancellation) and returns its checkpoint
    /// directory and its latest retained checkpoint.
    fn cancel_retaining(&self, job: &str) -> (PathBuf, PathBuf) {
        let o = self.cli(&["cancel", job, "-m", &self.rest]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(state(&self.await_end(job)), "CANCELED");
        let job_dir = self.dir.path().join("checkpoints").join(job);
        let chk = std::fs::read_dir(&job_dir)
            .expect("the cancelled job's checkpoints are retained")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("_metadata").is_file())
            .max_by_key(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("chk-"))
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .expect("a retained checkpoint");
        (job_dir, chk)
    }

    /// `eddy stop JOB --savepoint-path DIR`: the printed savepoint path, once the job FINISHED.
    fn stop_with_savepoint(&self, job: &str, dir: &Path) -> PathBuf {
        let d = dir.display().to_string();
        let out = self.cli(&["stop", job, "--savepoint-path", &d, "-m", &self.rest]);
        assert_eq!(
            out.code,
            0,
            "eddy stop: {}\n{}",
            out.stderr,
            self.log_tail()
        );
        let path = PathBuf::from(out.stdout.trim());
        assert!(path.starts_with(dir), "{path:?}");
        assert!(path.join("_metadata").is_file(), "{path:?}");
        let end = self.await_end(job);
        assert_eq!(state(&end), "FINISHED", "{end}");
        assert_stopped_by_finishing(&end);
        path
    }

    /// [`Cluster::configure`] and start, with `env` in the environment of every process
    /// (fault points).
    fn start_with_env(
        workers: usize,
        slots: u32,
        extra: &[(&str, &str)],
        env: &[(&str, &str)],
    ) -> Cluster {
        let c = Cluster::configure(workers, slots, extra);
        let mut all = vec![("EDDY_LOG", "info")];
        all.extend_from_slice(env);
        let out = eddy_with_env(
            &["cluster", "start", "--conf", c.conf_str()],
            &all,
            CLI_LIMIT,
        );
        assert_eq!(
            out.code,
            0,
            "cluster start failed: {}\n{}",
            out.stderr,
            c.log_tail()
        );
        c
    }
}

/// A stop-with-savepoint is a terminating savepoint, not a cancel: every subtask FINISHED on
/// its own (none CANCELED).
fn assert_stopped_by_finishing(end: &Value) {
    for v in end["vertices"].as_array().expect("vertices") {
        assert_eq!(
            v["tasks"]["FINISHED"].as_u64(),
            v["parallelism"].as_u64(),
            "every subtask must finish on its own: {v}"
        );
    }
}

/// Files in `dir` whose name says they are not committed (in-progress or pending parts).
fn uncommitted_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".inprogress") || n.ends_with(".pending"))
                .collect()
        })
        .unwrap_or_default()
}

fn witness_of(output: &Path, keys: u64, per_key: u64) -> (u64, u64, u64) {
    witness(&committed_lines(output), keys, per_key)
}

#[test]
fn stop_with_savepoint_and_resume_at_other_parallelisms_keeps_exactly_once() {
    let c = Cluster::start(2, 2, &[]);
    let out = c.dir.path().join("out");
    let sp = c.dir.path().join("savepoints");
    let (keys, per_key) = (12, 3000);
    let watch = common::committed::CommittedWatch::start(&out);
    // Run 1 at -p 2: stopped mid-run.
    let a = c.run_sequence(&out, keys, per_key, 1500, 2, &[]);
    c.wait_for_checkpoints(&a, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let sp1 = c.stop_with_savepoint(&a, &sp);
    let (missing, _, _) = witness_of(&out, keys, per_key);
    assert!(missing > 0, "run 1 was stopped before its end");
    // Nothing was emitted after the savepoint's barrier: its sinks committed everything they
    // wrote and hold nothing in progress.
    assert_eq!(uncommitted_files(&out), Vec::<String>::new());
    // Run 2 at -p 4 from that savepoint, stopped again.
    let sp1_arg = sp1.display().to_string();
    let b = c.run_sequence(&out, keys, per_key, 1500, 4, &["-s", &sp1_arg]);
    c.wait_for_checkpoints(&b, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let sp2 = c.stop_with_savepoint(&b, &sp);
    // Run 3 at -p 1 to the end.
    let sp2_arg = sp2.display().to_string();
    let d = c.run_sequence(&out, keys, per_key, 100_000, 1, &["-s", &sp2_arg]);
    let end = c.await_end(&d);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts) over the three runs\n{}",
        c.log_tail()
    );
    watch.assert_nothing_retracted();
    // The savepoints are the user's: still there.
    assert!(sp1.join("_metadata").is_file() && sp2.join("_metadata").is_file());
}

/// How many times TaskManagers logged opening keyed state in RocksDB.
fn rocksdb_opens(c: &Cluster) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(&c.log).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains("taskmanager") && name.ends_with(".log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            n += text.matches("keyed state in RocksDB").count();
        }
    }
    n
}

#[test]
fn savepoints_move_state_between_the_hashmap_and_rocksdb_backends_and_parallelisms() {
    let c = Cluster::start(2, 2, &[]);
    let out = c.dir.path().join("out");
    let sp = c.dir.path().join("savepoints");
    let (keys, per_key) = (12, 3000);
    let watch = common::committed::CommittedWatch::start(&out);
    // Run 1: hashmap at -p 2, stopped with a savepoint.
    let a = c.run_sequence(&out, keys, per_key, 1500, 2, &[]);
    c.wait_for_checkpoints(&a, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let sp1 = c.stop_with_savepoint(&a, &sp);
    assert_eq!(rocksdb_opens(&c), 0, "run 1 kept its state on the heap");
    // Run 2: rocksdb at -p 3 from it, stopped with a savepoint again.
    let sp1_arg = sp1.display().to_string();
    let rocks = ["-s", &sp1_arg, "-D", "state.backend.type=rocksdb"];
    let b = c.run_sequence(&out, keys, per_key, 1500, 3, &rocks);
    c.wait_for_checkpoints(&b, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let sp2 = c.stop_with_savepoint(&b, &sp);
    assert_eq!(
        rocksdb_opens(&c),
        3,
        "run 2's three keyed subtasks used RocksDB"
    );
    let (missing, _, _) = witness_of(&out, keys, per_key);
    assert!(missing > 0, "run 2 was stopped before its end");
    // Run 3: back to hashmap at -p 1, to the end.
    let sp2_arg = sp2.display().to_string();
    let d = c.run_sequence(&out, keys, per_key, 100_000, 1, &["-s", &sp2_arg]);
    let end = c.await_end(&d);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(rocksdb_opens(&c), 3, "run 3 kept its state on the heap");
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts) over hashmap, rocksdb and hashmap runs\n{}",
        c.log_tail()
    );
    watch.assert_nothing_retracted();
}

/// With incremental RocksDB checkpoints a savepoint is still canonical (issue 12: savepoints stay
/// backend-independent): no native RocksDB handle, nothing in the job's `shared/`, and it
/// restores into `hashmap` at another parallelism.
#[test]
fn savepoints_of_incremental_rocksdb_jobs_are_canonical_and_restore_into_hashmap_rescaled() {
    let c = Cluster::start(2, 2, &[]);
    let out = c.dir.path().join("out");
    let sp = c.dir.path().join("savepoints");
    let (keys, per_key) = (12, 3000);
    let incremental = [
        "-D",
        "state.backend.type=rocksdb",
        "-D",
        "execution.checkpointing.incremental=true",
    ];
    let a = c.run_sequence(&out, keys, per_key, 1500, 2, &incremental);
    c.wait_for_checkpoints(&a, "two completed checkpoints", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    // Its checkpoints are incremental: SST files in the job's shared/ directory.
    let shared = c.dir.path().join("checkpoints").join(&a).join("shared");
    let ssts = std::fs::read_dir(&shared)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".sst-"))
        .count();
    assert!(ssts > 0, "no shared SST file in {}", shared.display());
    let sp1 = c.stop_with_savepoint(&a, &sp);
    let metadata = std::fs::read_to_string(sp1.join("_metadata")).expect("_metadata");
    assert!(
        metadata.contains("\"rocksdb\":null") && !metadata.contains("\"rocksdb\":{"),
        "a native RocksDB handle in the savepoint: {metadata}"
    );
    assert!(!metadata.contains("../shared/"), "{metadata}");
    let (missing, _, _) = witness_of(&out, keys, per_key);
    assert!(missing > 0, "run 1 was stopped before its end");
    let sp1_arg = sp1.display().to_string();
    let b = c.run_sequence(&out, keys, per_key, 100_000, 3, &["-s", &sp1_arg]);
    let end = c.await_end(&b);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)\n{}",
        c.log_tail()
    );
}

/// A job resumed (NO_CLAIM) from another job's retained *incremental* RocksDB checkpoint owns its
/// state once it has a checkpoint of its own: its first checkpoint uploads the restored SST files
/// into its own `shared/`, so the old job's directory can be deleted and a TaskManager kill still
/// restores. (Before, its checkpoints referred to the restored files as if they were in its own
/// `shared/`, where they never were, and no restore of them could be read.)
#[test]
fn a_job_resumed_from_a_retained_incremental_checkpoint_restores_from_its_own_checkpoints() {
    let c = Cluster::start(
        3,
        2,
        &[(
            "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION",
        )],
    );
    let (keys, per_key) = (12, 6000);
    let incremental = [
        "-D",
        "state.backend.type=rocksdb",
        "-D",
        "execution.checkpointing.incremental=true",
    ];
    let out = c.dir.path().join("out");
    let a = c.run_sequence(&out, keys, per_key, 1500, 2, &incremental);
    c.wait_for_checkpoints(&a, "two completed checkpoints", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let (a_dir, chk) = c.cancel_retaining(&a);
    let metadata = std::fs::read_to_string(chk.join("_metadata")).expect("_metadata");
    assert!(
        metadata.contains("../shared/"),
        "an incremental checkpoint: {metadata}"
    );
    // B resumes A's checkpoint and writes where A wrote (the witness spans both).
    let mut args = incremental.to_vec();
    let chk_arg = chk.display().to_string();
    args.extend_from_slice(&["-s", &chk_arg]);
    let b = c.run_sequence(&out, keys, per_key, 1500, 2, &args);
    c.wait_for_checkpoints(&b, "a checkpoint of its own", |n| {
        n["completed"].as_u64() >= Some(1)
    });
    // NO_CLAIM: from now on B needs nothing of A's.
    std::fs::remove_dir_all(&a_dir).expect("delete A's checkpoints");
    sigkill(pid_of(&c.busy_taskmanager()));
    let end = c.await_end(&b);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    let stats = c.get(&format!("/jobs/{b}/checkpoints")).expect("stats");
    assert!(
        stats["counts"]["restored"].as_u64() >= Some(1),
        "B restored after the kill: {stats}"
    );
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "(missing, duplicates, wrong counts)\n{}",
        c.log_tail()
    );
}

#[test]
fn plain_savepoint_moved_then_restored_continues_every_key_and_keeps_earlier_output() {
    let c = Cluster::start(2, 2, &[("state.savepoints.dir", "{dir}/sp-default")]);
    let out1 = c.dir.path().join("out1");
    let (keys, per_key) = (8, 4000);
    let a = c.run_sequence(&out1, keys, per_key, 1000, 2, &[]);
    c.wait_for_checkpoints(&a, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(1)
    });
    // No directory given: state.savepoints.dir.
    let out = c.cli(&["savepoint", &a, "-m", &c.rest]);
    assert_eq!(
        out.code,
        0,
        "eddy savepoint: {}\n{}",
        out.stderr,
        c.log_tail()
    );
    let sp = PathBuf::from(out.stdout.trim());
    assert!(sp.starts_with(c.dir.path().join("sp-default")), "{sp:?}");
    // It shows in the job's checkpoint history with its type.
    let stats = c
        .get(&format!("/jobs/{a}/checkpoints"))
        .expect("checkpoint stats");
    let history = stats["history"].as_array().cloned().unwrap_or_default();
    assert!(
        history
            .iter()
            .any(|h| h["checkpoint_type"] == "SAVEPOINT" && h["status"] == "COMPLETED"),
        "{stats}"
    );
    // The job goes on, then is cancelled; the savepoint moves elsewhere.
    std::thread::sleep(Duration::from_millis(500));
    let cancel = c.cli(&["cancel", &a, "-m", &c.rest]);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    c.await_end(&a);
    let moved = c.dir.path().join("moved-savepoint");
    std::fs::rename(&sp, &moved).expect("move the savepoint");
    // Resumed into the same output directory: committed files of run 1 stay, none is
    // overwritten; every key continues from the savepoint's position.
    let before: Vec<(String, Vec<u8>)> = committed_files(&out1);
    let moved_arg = moved.display().to_string();
    let b = c.run_sequence(&out1, keys, per_key, 100_000, 3, &["-s", &moved_arg]);
    let end = c.await_end(&b);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    for (name, bytes) in &before {
        assert_eq!(
            std::fs::read(out1.join(name)).ok().as_ref(),
            Some(bytes),
            "committed file {name} of the earlier run was changed or deleted"
        );
    }
    let (missing, _dups, wrong) = witness_of(&out1, keys, per_key);
    assert_eq!(
        (missing, wrong),
        (0, 0),
        "nothing missing, count == seq on every line\n{}",
        c.log_tail()
    );
    // Disposal removes it; a second disposal is a one-line error.
    let out = c.cli(&["savepoint", "--dispose", &moved_arg, "-m", &c.rest]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!moved.exists());
    let out = c.cli(&["savepoint", "--dispose", &moved_arg, "-m", &c.rest]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.trim().lines().count() == 1 && out.stderr.contains("moved-savepoint"),
        "{}",
        out.stderr
    );
}

fn committed_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("read output dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            v.push((name, std::fs::read(e.path()).expect("read part")));
        }
    }
    v
}

#[test]
fn bad_resumes_are_one_line_errors() {
    let c = Cluster::start(1, 2, &[]);
    let out = c.dir.path().join("out");
    let a = c.run_sequence(&out, 4, 100_000, 500, 2, &[]);
    c.wait_for_checkpoints(&a, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(1)
    });
    let sp_dir = c.dir.path().join("sp");
    let sp = c.stop_with_savepoint(&a, &sp_dir);
    let sp_arg = sp.display().to_string();
    let out2 = c.dir.path().join("out2").display().to_string();
    let run = |args: &[&str]| {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-m", &c.rest, "-d"]);
        c.cli(&all)
    };
    let one_line = |o: &Outcome, needles: &[&str]| {
        assert_ne!(o.code, 0, "{}", o.stdout);
        let err = o.stderr.trim();
        assert_eq!(err.lines().count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "{err} lacks {n}");
        }
    };
    // Missing path.
    let missing = c.dir.path().join("nope").display().to_string();
    one_line(
        &run(&[
            "sequence",
            "--keys",
            "4",
            "--per-key",
            "100000",
            "--output",
            &out2,
            "-s",
            &missing,
        ]),
        &["nope"],
    );
    // Corrupt _metadata.
    let corrupt = c.dir.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("_metadata"), b"{not json").unwrap();
    one_line(
        &run(&[
            "sequence",
            "--keys",
            "4",
            "--per-key",
            "100000",
            "--output",
            &out2,
            "-s",
            &corrupt.display().to_string(),
        ]),
        &["corrupt checkpoint metadata"],
    );
    // Another job's graph: word-count has none of sequence's operators (its sink excepted).
    let input = c.dir.path().join("in.txt");
    std::fs::write(&input, "a b c\n").unwrap();
    one_line(
        &run(&[
            "word-count",
            "--input",
            &input.display().to_string(),
            "--output",
            &out2,
            "-s",
            &sp_arg,
        ]),
        &[
            "operator uid",
            "sequence-source",
            "--allow-non-restored-state",
        ],
    );
    // The counting operator's uid changed: refused naming it ...
    let renamed = [
        "sequence",
        "--keys",
        "4",
        "--per-key",
        "3000",
        "--output",
        &out2,
        "--counter-uid",
        "counter-v2",
        "-s",
        &sp_arg,
    ];
    one_line(
        &run(&renamed),
        &["operator uid 'counter'", "--allow-non-restored-state"],
    );
    // ... and accepted with --allow-non-restored-state: the renamed operator starts empty, the
    // source continues from the savepoint (no key starts over at seq 1).
    let mut allowed = renamed.to_vec();
    allowed.push("--allow-non-restored-state");
    let ok = run(&allowed);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let id = ok.stdout.trim().to_string();
    assert_eq!(state(&c.await_end(&id)), "FINISHED", "{}", c.log_tail());
    let lines = committed_lines(Path::new(&out2));
    assert!(!lines.is_empty());
    for l in &lines {
        let f: Vec<u64> = l.split(',').map(|x| x.parse().unwrap()).collect();
        assert!(
            f[1] > 1 && f[2] < f[1],
            "the source resumed, the counter started empty: {l}"
        );
    }
    // Max parallelism changed.
    let out3 = c.dir.path().join("out3").display().to_string();
    one_line(
        &run(&[
            "sequence",
            "--keys",
            "4",
            "--per-key",
            "100000",
            "--output",
            &out3,
            "-s",
            &sp_arg,
            "-D",
            "pipeline.max-parallelism=64",
        ]),
        &["max parallelism 128", "has 64"],
    );
    // No target directory and no state.savepoints.dir.
    let b = c.run_sequence(&c.dir.path().join("out4"), 4, 100_000, 500, 2, &[]);
    let o = c.cli(&["savepoint", &b, "-m", &c.rest]);
    one_line(&o, &["state.savepoints.dir"]);
}

#[test]
fn a_savepoint_during_a_taskmanager_kill_fails_cleanly_and_the_job_recovers() {
    let c = Cluster::start(3, 2, &[]);
    let out = c.dir.path().join("out");
    let (keys, per_key) = (6, 4000);
    // Slow snapshots hold the savepoint open long enough to kill a TaskManager under it.
    let job = c.run_sequence(
        &out,
        keys,
        per_key,
        2000,
        2,
        &["--snapshot-delay-ms", "1500"],
    );
    c.wait_for_checkpoints(&job, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(1)
    });
    let sp = c.dir.path().join("sp").display().to_string();
    let body = serde_json::json!({ "target-directory": sp, "cancel-job": false });
    let (code, answer) = client::request(
        &c.rest,
        "POST",
        &format!("/v1/jobs/{job}/savepoints"),
        Some(&body),
        HTTP_TIMEOUT,
    )
    .expect("trigger a savepoint");
    assert_eq!(code, 202, "{answer}");
    let trigger = answer["request-id"]
        .as_str()
        .expect("request-id")
        .to_string();
    let tm = c.busy_taskmanager();
    sigkill(pid_of(&tm));
    let status = c.wait_for("the savepoint operation to end", JOB_LIMIT, || {
        c.get(&format!("/jobs/{job}/savepoints/{trigger}"))
            .filter(|s| s["status"]["id"] == "COMPLETED")
    });
    let cause = status["operation"]["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap_or_else(|| panic!("the savepoint must fail: {status}"));
    assert!(!cause.contains('\n') && cause.contains("failed"), "{cause}");
    assert!(status["operation"]["location"].is_null(), "{status}");
    // Nothing half-written is left to be mistaken for a savepoint.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&sp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|p| !p.join("_metadata").exists()),
        "{leftovers:?}"
    );
    // The job recovers on the spare TaskManager and ends with exactly-once output.
    let end = c.await_end(&job);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "{}",
        c.log_tail()
    );
}

/// `POST /jobs/:id/stop` with `body`: the trigger id.
fn post_stop(c: &Cluster, job: &str, body: Value) -> String {
    let (code, answer) = client::request(
        &c.rest,
        "POST",
        &format!("/jobs/{job}/stop"),
        Some(&body),
        HTTP_TIMEOUT,
    )
    .expect("POST stop");
    assert_eq!(code, 202, "{answer}");
    answer["request-id"]
        .as_str()
        .expect("request-id")
        .to_string()
}

#[test]
fn a_failure_after_the_stop_savepoint_completed_fails_the_stop_and_the_job_goes_on_from_it() {
    // Every source task sleeps between the savepoint's completion (its sinks commit on the same
    // notification) and its end: the window in which a TaskManager is killed.
    let c = Cluster::start_with_env(
        3,
        2,
        &[],
        &[(
            "EDDY_FAULT_POINTS",
            "task.stop-savepoint.before-finish=sleep-4000",
        )],
    );
    let out = c.dir.path().join("out");
    let (keys, per_key) = (6, 3000);
    let watch = common::committed::CommittedWatch::start(&out);
    let job = c.run_sequence(&out, keys, per_key, 1500, 2, &[]);
    c.wait_for_checkpoints(&job, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let sp = c.dir.path().join("sp");
    let trigger = post_stop(
        &c,
        &job,
        serde_json::json!({ "targetDirectory": sp.display().to_string() }),
    );
    let savepoint_id = c.wait_for("the stop savepoint to complete", JOB_LIMIT, || {
        let s = c.get(&format!("/jobs/{job}/checkpoints"))?;
        s["history"].as_array()?.iter().find_map(|h| {
            (h["checkpoint_type"] == "SYNC_SAVEPOINT" && h["status"] == "COMPLETED")
                .then(|| h["id"].as_u64())
                .flatten()
        })
    });
    sigkill(pid_of(&c.busy_taskmanager()));
    let status = c.wait_for("the stop operation to end", JOB_LIMIT, || {
        c.get(&format!("/jobs/{job}/savepoints/{trigger}"))
            .filter(|s| s["status"]["id"] == "COMPLETED")
    });
    let cause = status["operation"]["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap_or_else(|| panic!("the stop must fail: {status}\n{}", c.log_tail()));
    assert!(
        !cause.contains('\n')
            && cause.contains(&format!("savepoint {savepoint_id} completed at"))
            && cause.contains("keeps running"),
        "{cause}"
    );
    // The savepoint itself is complete and the user's.
    let written: Vec<PathBuf> = std::fs::read_dir(&sp)
        .expect("savepoint dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("_metadata").is_file())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    // The job went on from the savepoint (an older checkpoint would retract output committed
    // at the savepoint) and ran to its end: exactly once.
    let end = c.await_end(&job);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    assert_eq!(
        witness_of(&out, keys, per_key),
        (0, 0, 0),
        "{}",
        c.log_tail()
    );
    watch.assert_nothing_retracted();
}

/// Lines `car,window_end,top_speed,distance` of the committed output, as (car, window end).
fn car_windows(dir: &Path) -> Vec<(u64, i64)> {
    let mut w: Vec<(u64, i64)> = committed_lines(dir)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].parse().expect("car"),
                f[1].parse().expect("window end"),
            )
        })
        .collect();
    w.sort();
    w
}

#[test]
fn stop_drain_fires_the_open_windows_and_a_plain_stop_does_not() {
    let c = Cluster::start(2, 2, &[]);
    // Two cars, 100 rounds (10 s of event time) per second of wall time: the first 10-minute
    // window stays open for a minute, far beyond the test's stop.
    const CAR_EPOCH_MS: i64 = 1_704_067_200_000;
    const WINDOW_MS: i64 = 600_000;
    let run = |out: &Path| {
        let o = out.display().to_string();
        let r = c.cli(&[
            "run",
            "top-speed-windowing",
            "--cars",
            "2",
            "--rate",
            "200",
            "--events",
            "0",
            "--window-ms",
            &WINDOW_MS.to_string(),
            "--output",
            &o,
            "-p",
            "2",
            "-m",
            &c.rest,
            "-d",
        ]);
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, c.log_tail());
        let id = r.stdout.trim().to_string();
        c.wait_for_checkpoints(&id, "a completed checkpoint", |n| {
            n["completed"].as_u64() >= Some(1)
        });
        id
    };
    let sp = c.dir.path().join("sp");
    let sp_arg = sp.display().to_string();
    // Plain stop: the open windows stay open (their contents are in the savepoint).
    let plain_out = c.dir.path().join("plain");
    let plain = run(&plain_out);
    let o = c.cli(&["stop", &plain, "--savepoint-path", &sp_arg, "-m", &c.rest]);
    assert_eq!(o.code, 0, "{}\n{}", o.stderr, c.log_tail());
    let end = c.await_end(&plain);
    assert_eq!(state(&end), "FINISHED", "{end}");
    assert_stopped_by_finishing(&end);
    assert_eq!(car_windows(&plain_out), Vec::<(u64, i64)>::new());
    // --drain: event time ends before the savepoint, every open window fires and commits.
    let drained_out = c.dir.path().join("drained");
    let drained = run(&drained_out);
    let o = c.cli(&[
        "stop",
        &drained,
        "--drain",
        "--savepoint-path",
        &sp_arg,
        "-m",
        &c.rest,
    ]);
    assert_eq!(o.code, 0, "{}\n{}", o.stderr, c.log_tail());
    assert!(PathBuf::from(o.stdout.trim()).join("_metadata").is_file());
    let end = c.await_end(&drained);
    assert_eq!(state(&end), "FINISHED", "{end}");
    assert_stopped_by_finishing(&end);
    let first_end = (CAR_EPOCH_MS / WINDOW_MS + 1) * WINDOW_MS;
    assert_eq!(
        car_windows(&drained_out),
        vec![(0, first_end), (1, first_end)],
        "one fired window per car\n{}",
        c.log_tail()
    );
    assert_eq!(uncommitted_files(&drained_out), Vec::<String>::new());
}

/// Every file under `dir` with its bytes, sorted (to compare a snapshot before and after).
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read file");
                out.push((p.strip_prefix(dir).expect("under dir").to_path_buf(), bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn no_claim_never_touches_a_restored_checkpoint_and_claim_deletes_it_once_subsumed() {
    let c = Cluster::start(
        2,
        2,
        &[(
            "execution.checkpointing.externalized-checkpoint-retention",
            "RETAIN_ON_CANCELLATION",
        )],
    );
    // A retained checkpoint of a cancelled job.
    let a = c.run_sequence(&c.dir.path().join("out-a"), 4, 100_000, 500, 2, &[]);
    c.wait_for_checkpoints(&a, "two completed checkpoints", |n| {
        n["completed"].as_u64() >= Some(2)
    });
    let (_, chk) = c.cancel_retaining(&a);
    let chk_arg = chk.display().to_string();
    let before = tree(&chk);
    // NO_CLAIM (the default, also spelled out): the snapshot stays the user's, byte for byte,
    // however many checkpoints of its own the new job completes and retires.
    for extra in [&[][..], &["--claimMode", "NO_CLAIM"][..]] {
        let mut args = vec!["-s", chk_arg.as_str()];
        args.extend_from_slice(extra);
        let out = c.dir.path().join(format!("out-b{}", extra.len()));
        let b = c.run_sequence(&out, 4, 100_000, 500, 2, &args);
        c.wait_for_checkpoints(&b, "checkpoints beyond num-retained", |n| {
            n["completed"].as_u64() >= Some(4)
        });
        let o = c.cli(&["cancel", &b, "-m", &c.rest]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        c.await_end(&b);
        assert!(
            before == tree(&chk),
            "NO_CLAIM modified {chk:?} ({extra:?})"
        );
    }
    // CLAIM: the job owns it; once its own retained checkpoints (num-retained 2) subsumed it,
    // it is deleted.
    let d = c.run_sequence(
        &c.dir.path().join("out-d"),
        4,
        100_000,
        500,
        2,
        &["-s", &chk_arg, "--claimMode", "CLAIM"],
    );
    c.wait_for("the claimed checkpoint to be deleted", JOB_LIMIT, || {
        (!chk.exists()).then_some(())
    });
    let stats = c.get(&format!("/jobs/{d}/checkpoints")).expect("stats");
    assert!(
        stats["counts"]["completed"].as_u64() >= Some(2),
        "deleted only once subsumed by two checkpoints of its own: {stats}"
    );
    // The job itself goes on from its own checkpoints.
    let job = c.get(&format!("/jobs/{d}")).expect("job");
    assert_eq!(state(&job), "RUNNING", "{job}");
    // A claim mode without -s, and an unknown one, are one-line errors.
    let out = c.dir.path().join("out-e").display().to_string();
    let o = c.cli(&[
        "run",
        "sequence",
        "--output",
        &out,
        "--claimMode",
        "CLAIM",
        "-m",
        &c.rest,
        "-d",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.trim().lines().count() == 1 && o.stderr.contains("-s/--fromSavepoint"),
        "{}",
        o.stderr
    );
    let o = c.cli(&[
        "run",
        "sequence",
        "--output",
        &out,
        "-s",
        &chk_arg,
        "--claimMode",
        "LEGACY",
        "-m",
        &c.rest,
        "-d",
    ]);
    assert_ne!(o.code, 0);
    assert!(
        o.stderr.trim().lines().count() == 1 && o.stderr.contains("LEGACY"),
        "{}",
        o.stderr
    );
}

/// word-count resumed with its counting operator's uid changed: refused naming the uid, then
/// accepted with `--allow-non-restored-state` (the renamed operator starts empty, the file
/// source goes on from its savepoint position instead of reading the file again).
#[test]
fn word_count_with_a_changed_uid_is_refused_naming_it_and_runs_with_allow_non_restored_state() {
    let c = Cluster::start(2, 2, &[]);
    let lines = 3000;
    let input = c.dir.path().join("in.txt");
    let text: String = (0..lines).map(|i| format!("w{} x\n", i % 10)).collect();
    std::fs::write(&input, text).unwrap();
    let input_arg = input.display().to_string();
    let (out1, out2) = (c.dir.path().join("out1"), c.dir.path().join("out2"));
    let (out1_arg, out2_arg) = (out1.display().to_string(), out2.display().to_string());
    let run = |args: &[&str]| {
        let mut all = vec!["run", "word-count", "--input", &input_arg];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-m", &c.rest, "-d"]);
        c.cli(&all)
    };
    // 500 lines/s: the job runs about 6 s, long enough for a checkpoint and a savepoint.
    let first = run(&["--output", &out1_arg, "--rate", "500", "-p", "2"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    let a = first.stdout.trim().to_string();
    c.wait_for_checkpoints(&a, "a completed checkpoint", |n| {
        n["completed"].as_u64() >= Some(1)
    });
    let sp = c.stop_with_savepoint(&a, &c.dir.path().join("sp"));
    let sp_arg = sp.display().to_string();
    let renamed = [
        "--output",
        &out2_arg,
        "--count-uid",
        "count-v2",
        "-s",
        &sp_arg,
    ];
    let refused = run(&renamed);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    let err = refused.stderr.trim();
    assert_eq!(err.lines().count(), 1, "{err}");
    for needle in ["operator uid 'count'", "--allow-non-restored-state"] {
        assert!(err.contains(needle), "{err} lacks {needle}");
    }
    let mut allowed = renamed.to_vec();
    allowed.push("--allow-non-restored-state");
    let ok = run(&allowed);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let b = ok.stdout.trim().to_string();
    let end = c.await_end(&b);
    assert_eq!(state(&end), "FINISHED", "{end}\n{}", c.log_tail());
    // Every line of the file is read once over both runs: the second run counts `x` from 1 (its
    // counter started empty) up to the lines the first run had not read.
    let counts_of_x = |dir: &Path| -> Vec<u64> {
        committed_lines(dir)
            .iter()
            .filter_map(|l| l.strip_prefix("x,").map(|n| n.parse().unwrap()))
            .collect()
    };
    let (before, after) = (counts_of_x(&out1), counts_of_x(&out2));
    let read_before = before.iter().copied().max().unwrap_or(0);
    assert!(
        read_before > 0 && read_before < lines as u64,
        "the savepoint was taken mid-file: the first run counted {read_before} of {lines} lines"
    );
    assert!(
        after.contains(&1),
        "the renamed counter starts empty: {after:?}"
    );
    assert_eq!(
        read_before + after.len() as u64,
        lines as u64,
        "the source resumed at its savepoint position (first run counted {read_before})\n{}",
        c.log_tail()
    );
}
