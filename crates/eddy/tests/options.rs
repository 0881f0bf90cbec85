//! End-to-end tests of "no option accepted and ignored" and "JSON at every moment", with the real
//! `eddy` binary, real TCP and a real ZooKeeper:
//!
//! - every refused CLI flag and configuration value stops `eddy run` / `eddy local` with one line
//!   on stderr and a non-zero exit code before anything is submitted or started, and stops
//!   `eddy jobmanager` / `eddy taskmanager` at configuration load;
//! - values equal to what Eddy does today (`hashmap`, `false`, memory sizes) still run a job;
//! - `POST /jobs` answers 400 with the one-line reason;
//! - `eddy list --json` and `eddy cluster status --json` print one valid JSON object while no
//!   JobManager leads, while one leads, and while its leader is being killed;
//! - `scripts/zookeeper.sh` runs without `nc` and names missing prerequisites.
//!
//! Every process binds 127.0.0.1 on free ports, lives in a temp dir and is killed by its pid when
//! the test ends, also on failure. Deadlines only bound hangs; nothing asserts on speed.

mod common;

use common::*;
use eddy_rest::client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
const LIMIT: Duration = Duration::from_secs(60);
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Asserts `out` failed with exactly one `error: ...` line on stderr starting with `start`.
fn assert_refused(what: &str, out: &Outcome, start: &str) {
    assert_ne!(
        out.code, 0,
        "{what}: expected a failure; stderr {:?}",
        out.stderr
    );
    let stderr = out.stderr.trim();
    assert_eq!(
        stderr.lines().count(),
        1,
        "{what}: expected one line on stderr, got {stderr:?}"
    );
    assert!(
        stderr.starts_with(&format!("error: {start}")),
        "{what}: expected 'error: {start}...', got {stderr:?}"
    );
}

/// Kills a background `eddy` daemon by its pid when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// CLI refusals

/// The refused flags and `-D` values of `eddy run` and `eddy local`, with the start of the line.
const REFUSED: &[(&[&str], &str)] = &[
    (
        &["-D", "high-availability.storageDir=s3://bucket/ha"],
        "high-availability.storageDir: 's3://bucket/ha' is not supported yet",
    ),
    (
        &["-D", "execution.savepoint.path=gs://bucket/sp-3"],
        "invalid value 'gs://bucket/sp-3' for key 'execution.savepoint.path'",
    ),
    (
        &["-D", "execution.state-recovery.claim-mode=LEGACY"],
        "execution.state-recovery.claim-mode: 'LEGACY' is not supported",
    ),
    (
        &["-D", "state.checkpoints.dir=hdfs://nn/chk"],
        "invalid value 'hdfs://nn/chk' for key 'state.checkpoints.dir'",
    ),
    (
        &["-D", "taskmanager.slot.timeout=30 s"],
        "taskmanager.slot.timeout: '30 s' is not supported",
    ),
    (
        &["-D", "taskmanager.registration.timeout=1 min"],
        "taskmanager.registration.timeout: '1 min' is not supported",
    ),
    (
        &["-D", "high-availability.zookeeper.client.retry-wait=1 s"],
        "high-availability.zookeeper.client.retry-wait: '1 s' is not supported",
    ),
    (
        &[
            "-D",
            "high-availability.zookeeper.client.max-retry-attempts=5",
        ],
        "high-availability.zookeeper.client.max-retry-attempts: '5' is not supported",
    ),
    (
        &[
            "-D",
            "state.backend.rocksdb.memory.high-prio-pool-ratio=0.1",
        ],
        "state.backend.rocksdb.memory.high-prio-pool-ratio: '0.1' is not supported",
    ),
    (
        &["-D", "state.backend.rocksdb.memory.write-buffer-ratio=1.5"],
        "invalid value '1.5' for key 'state.backend.rocksdb.memory.write-buffer-ratio'",
    ),
    (
        &["-D", "taskmanager.memory.managed.size=lots"],
        "invalid value 'lots' for key 'taskmanager.memory.managed.size'",
    ),
    (
        &["-D", "taskmanager.memory.managed.fraction=-0.1"],
        "invalid value '-0.1' for key 'taskmanager.memory.managed.fraction'",
    ),
];

#[test]
fn eddy_run_refuses_each_unsupported_option_before_submitting() {
    // A "JobManager" that must never see a connection: a refusal happens before submitting.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let m = listener.local_addr().expect("address").to_string();
    let out_dir = tempfile::tempdir().expect("temp dir");
    let output = out_dir.path().display().to_string();
    for (flags, start) in REFUSED {
        let mut args = vec![
            "run",
            "sequence",
            "--keys",
            "2",
            "--per-key",
            "5",
            "--output",
            &output,
            "-m",
            &m,
        ];
        args.extend_from_slice(flags);
        let out = eddy(&args, LIMIT);
        assert_refused(&format!("eddy run {flags:?}"), &out, start);
        assert_eq!(out.code, 2, "eddy run {flags:?}: bad input exits 2");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("eddy run {flags:?} contacted the JobManager: {other:?}"),
        }
    }
}

#[test]
fn eddy_local_refuses_each_unsupported_option_before_starting() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let output = out_dir.path().join("out").display().to_string();
    for (flags, start) in REFUSED {
        let mut args = vec![
            "local",
            "sequence",
            "--keys",
            "2",
            "--per-key",
            "5",
            "--output",
            &output,
        ];
        args.extend_from_slice(flags);
        let out = eddy(&args, LIMIT);
        assert_refused(&format!("eddy local {flags:?}"), &out, start);
        assert!(
            !Path::new(&output).exists(),
            "eddy local {flags:?} ran the job before refusing"
        );
    }
}

#[test]
fn values_equal_to_todays_behaviour_are_accepted_and_the_job_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out").display().to_string();
    let out = eddy(
        &[
            "local",
            "sequence",
            "--keys",
            "3",
            "--per-key",
            "20",
            "--output",
            &output,
            "-D",
            "state.backend=hashmap",
            "-D",
            "state.backend.incremental=false",
            "-D",
            "state.backend.local-recovery=false",
            "-D",
            "execution.state-recovery.ignore-unclaimed-state=false",
            "-D",
            "taskmanager.memory.process.size=1g",
            "-D",
            "jobmanager.memory.process.size=512m",
            "-D",
            &format!("state.checkpoints.dir=file://{}/chk", dir.path().display()),
        ],
        Duration::from_secs(120),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<String> = committed_lines(Path::new(&output))
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(witness(&lines, 3, 20), (0, 0, 0));
}

/// Runs `sequence` (3 keys x 200) with rocksdb under `eddy local` with 2 slots and `keys`;
/// returns (exit code, stderr, witness) with the runtime's info logs on stderr.
fn run_rocksdb_local(keys: &[&str]) -> (i32, String, (u64, u64, u64)) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out").display().to_string();
    let mut args = vec![
        "local",
        "sequence",
        "--keys",
        "3",
        "--per-key",
        "200",
        "--output",
        &output,
        "-p",
        "2",
        "--slots",
        "2",
        "-D",
        "state.backend.type=rocksdb",
    ];
    for k in keys {
        args.extend_from_slice(&["-D", k]);
    }
    let out = eddy_with_env(
        &args,
        &[("EDDY_LOG", "warn,eddy_runtime=info,eddy_cluster=info")],
        Duration::from_secs(120),
    );
    let lines: Vec<String> = if Path::new(&output).exists() {
        committed_lines(Path::new(&output))
            .into_iter()
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    (out.code, out.stderr, witness(&lines, 3, 200))
}

/// `text` without ANSI colour sequences (`ESC [ ... m`), which the logs carry.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The `memory=...` of the "keyed state in RocksDB" lines.
fn rocksdb_memory_lines(stderr: &str) -> Vec<String> {
    strip_ansi(stderr)
        .lines()
        .filter(|l| l.contains("keyed state in RocksDB"))
        .filter_map(|l| l.split_once("memory=").map(|(_, m)| m.to_string()))
        .collect()
}

#[test]
fn rocksdb_memory_keys_size_each_slots_shared_memory_and_a_too_small_slot_fails_in_one_line() {
    // Managed memory split over 2 slots, a quarter of each slot's for write buffers (one keyed
    // operator per slot): 48 MiB per slot = 36 MiB block cache + 12 MiB of memtables.
    let (code, stderr, w) = run_rocksdb_local(&[
        "taskmanager.memory.managed.size=96m",
        "state.backend.rocksdb.memory.write-buffer-ratio=0.25",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(w, (0, 0, 0));
    assert!(
        stderr.contains("managed memory (RocksDB): 100663296 bytes, 50331648 per slot"),
        "{stderr}"
    );
    let mem = rocksdb_memory_lines(&stderr);
    assert_eq!(mem.len(), 2, "one RocksDB instance per subtask: {stderr}");
    for m in &mem {
        assert!(
            m.starts_with("slot budget 50331648 bytes (block cache 37748736 bytes shared by the slot, write buffers 12582912 bytes)"),
            "{m}"
        );
    }
    // The fraction of the process size (no managed.size): 0.25 x 256m = 64m, 32m per slot.
    let (code, stderr, w) = run_rocksdb_local(&[
        "taskmanager.memory.process.size=256m",
        "taskmanager.memory.managed.fraction=0.25",
    ]);
    assert_eq!((code, w), (0, (0, 0, 0)), "{stderr}");
    let mem = rocksdb_memory_lines(&stderr);
    assert_eq!(mem.len(), 2, "{stderr}");
    for m in mem {
        assert!(
            m.starts_with("slot budget 33554432 bytes (block cache 16777216 bytes shared by the slot, write buffers 16777216 bytes)"),
            "{m}"
        );
    }
    // fixed-per-slot wins over the managed share; managed=false alone: 64 MiB per instance.
    let (code, stderr, w) = run_rocksdb_local(&["state.backend.rocksdb.memory.fixed-per-slot=24m"]);
    assert_eq!((code, w), (0, (0, 0, 0)), "{stderr}");
    let mem = rocksdb_memory_lines(&stderr);
    assert_eq!(mem.len(), 2, "{stderr}");
    for m in mem {
        assert!(m.starts_with("slot budget 25165824 bytes"), "{m}");
    }
    let (code, stderr, w) = run_rocksdb_local(&["state.backend.rocksdb.memory.managed=false"]);
    assert_eq!((code, w), (0, (0, 0, 0)), "{stderr}");
    let mem = rocksdb_memory_lines(&stderr);
    assert_eq!(mem.len(), 2, "{stderr}");
    for m in mem {
        assert!(m.starts_with("fixed 67108864 bytes"), "{m}");
    }
    // 8 MiB over 2 slots is 4 MiB per slot: the task fails naming the budget and the keys.
    let (code, stderr, _) = run_rocksdb_local(&[
        "taskmanager.memory.managed.size=8m",
        "restart-strategy.type=none",
    ]);
    assert_ne!(code, 0, "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("RocksDB memory of a slot is 4194304 bytes"))
        .unwrap_or_else(|| panic!("no refusal line: {stderr}"));
    assert!(line.contains("taskmanager.memory.managed.size"), "{line}");
}

// ---------------------------------------------------------------------------------------------
// Daemons and REST

/// A conf dir for one non-HA JobManager on free ports, with `extra` config lines.
fn jobmanager_conf(dir: &Path, extra: &str) -> (PathBuf, u16) {
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let ports = free_ports(3);
    std::fs::write(
        conf.join("config.yaml"),
        format!(
            "jobmanager.rpc.address: 127.0.0.1\njobmanager.rpc.port: {}\nrest.address: 127.0.0.1\n\
             rest.bind-address: 127.0.0.1\nrest.port: {}\ntaskmanager.host: 127.0.0.1\n\
             env.log.dir: {}\n{extra}",
            ports[0],
            ports[1],
            dir.join("log").display()
        ),
    )
    .expect("config.yaml");
    (conf, ports[1])
}

#[test]
fn daemons_refuse_unsupported_keys_at_configuration_load() {
    let cases = [
        (
            "high-availability.storageDir: s3://bucket/ha\n",
            "high-availability.storageDir: 's3://bucket/ha' is not supported yet",
        ),
        (
            "execution.state-recovery.claim-mode: LEGACY\n",
            "execution.state-recovery.claim-mode: 'LEGACY' is not supported",
        ),
    ];
    for (yaml, start) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conf, _) = jobmanager_conf(dir.path(), yaml);
        let conf = conf.display().to_string();
        for role in ["jobmanager", "taskmanager"] {
            let out = eddy(&[role, "--conf", &conf], LIMIT);
            assert_refused(&format!("eddy {role} with {yaml:?}"), &out, start);
        }
    }
}

#[test]
fn daemons_refuse_bad_network_buffer_values_in_one_line() {
    let cases = [
        (
            "taskmanager.memory.network.max: 4m\n",
            "invalid value '4m' for key 'taskmanager.memory.network.max': expected a size at least taskmanager.memory.network.min (64m)",
        ),
        (
            "taskmanager.memory.segment-size: 3000b\n",
            "invalid value '3000b' for key 'taskmanager.memory.segment-size': expected a power of two from 4k to 16m",
        ),
        (
            "taskmanager.network.memory.buffers-per-channel: 0\n",
            "invalid value '0' for key 'taskmanager.network.memory.buffers-per-channel'",
        ),
    ];
    for (yaml, start) in cases {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conf, _) = jobmanager_conf(dir.path(), yaml);
        let out = eddy(
            &["taskmanager", "--conf", &conf.display().to_string()],
            LIMIT,
        );
        assert_refused(&format!("eddy taskmanager with {yaml:?}"), &out, start);
    }
}

#[test]
fn rest_submit_refuses_what_eddy_cannot_do_with_400_and_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (conf, rest_port) = jobmanager_conf(dir.path(), "");
    let child = Command::new(EDDY)
        .args(["jobmanager", "--conf"])
        .arg(&conf)
        .env("EDDY_LOG", "warn")
        .env_remove("EDDY_CONF_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start eddy jobmanager");
    let _jm = Daemon(child);
    let rest = format!("127.0.0.1:{rest_port}");
    let deadline = Instant::now() + LIMIT;
    while !matches!(
        client::request(&rest, "GET", "/overview", None, HTTP_TIMEOUT),
        Ok((200, _))
    ) {
        assert!(
            Instant::now() < deadline,
            "the JobManager's REST API did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = dir.path().join("out").display().to_string();
    let cases = [
        (
            serde_json::json!({"job": "sequence", "args": ["--output", output], "savepointPath": "hdfs://nn/sp-1"}),
            "savepointPath: invalid value 'hdfs://nn/sp-1' for key 'execution.state-recovery.path'",
        ),
        (
            serde_json::json!({"job": "sequence", "args": ["--output", output], "config": {"execution.state-recovery.claim-mode": "LEGACY"}}),
            "execution.state-recovery.claim-mode: 'LEGACY' is not supported",
        ),
        (
            serde_json::json!({"job": "sequence", "args": ["--output", output], "config": {"state.savepoints.dir": "gs://bucket/sp"}}),
            "invalid value 'gs://bucket/sp' for key 'state.savepoints.dir'",
        ),
    ];
    for (body, start) in cases {
        let (code, v) =
            client::request(&rest, "POST", "/jobs", Some(&body), HTTP_TIMEOUT).expect("POST /jobs");
        assert_eq!(code, 400, "{body}: {v}");
        let error = v["errors"][0].as_str().unwrap_or_default();
        assert!(
            error.starts_with(start) && !error.contains('\n'),
            "{body}: {v}"
        );
    }
    let (_, jobs) = client::request(&rest, "GET", "/jobs/overview", None, HTTP_TIMEOUT)
        .expect("GET /jobs/overview");
    assert_eq!(
        jobs["jobs"].as_array().map(Vec::len),
        Some(0),
        "nothing was submitted: {jobs}"
    );
}

// ---------------------------------------------------------------------------------------------
// JSON at every moment (real ZooKeeper)

fn zookeeper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh")
}

/// Runs `bash scripts/zookeeper.sh ARGS` with `path` as PATH (or the inherited one).
fn zookeeper_sh(args: &[&str], path: Option<&Path>) -> Outcome {
    let mut cmd = Command::new("bash");
    cmd.arg(zookeeper_script()).args(args);
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().expect("run zookeeper.sh");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A ZooKeeper of one test on a free port; stopped (and killed by pid) when dropped.
struct ZooKeeper {
    port: u16,
    dir: PathBuf,
}

impl ZooKeeper {
    fn start(dir: PathBuf, path: Option<&Path>) -> ZooKeeper {
        let zk = ZooKeeper {
            port: free_ports(1)[0],
            dir,
        };
        let out = zookeeper_sh(
            &[
                "start",
                "--port",
                &zk.port.to_string(),
                "--dir",
                &zk.dir.display().to_string(),
            ],
            path,
        );
        assert_eq!(
            out.code, 0,
            "zookeeper.sh start: {}{}",
            out.stdout, out.stderr
        );
        zk
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = zookeeper_sh(&["stop", "--dir", &self.dir.display().to_string()], None);
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

/// An HA cluster's conf dir and log dir; `eddy cluster stop` and SIGKILL by pid when dropped.
struct Cluster {
    conf: PathBuf,
    log: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let conf = self.conf.display().to_string();
        let _ = eddy(&["cluster", "stop", "--conf", &conf], LIMIT);
        for (_, pid) in pid_files(&self.log) {
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        for pid in processes_mentioning(&conf) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

/// Runs `eddy ARGS` and parses its stdout as exactly one JSON object (panics otherwise).
fn json_of(args: &[&str]) -> (i32, Value) {
    let out = eddy(args, LIMIT);
    let v: Value = serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "eddy {args:?} printed no valid JSON ({e}): stdout {:?}, stderr {:?}",
            out.stdout, out.stderr
        )
    });
    assert!(v.is_object(), "eddy {args:?}: {v}");
    (out.code, v)
}

/// Checks one `list --json` answer: a leader with a job array and exit 0, or no leader with an
/// error and a non-zero exit. Returns whether a leader answered.
fn check_list(code: i32, v: &Value) -> bool {
    if v["leader"].is_string() {
        assert_eq!(code, 0, "{v}");
        assert!(v["jobs"].is_array(), "{v}");
        true
    } else {
        assert!(v["leader"].is_null(), "{v}");
        assert_ne!(code, 0, "list exits non-zero without a leader: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
        false
    }
}

fn check_status(code: i32, v: &Value) -> bool {
    assert_eq!(code, 0, "{v}");
    assert!(v["processes"].is_array(), "{v}");
    if v["leader"].is_string() {
        assert!(v["error"].is_null() && v["overview"].is_object(), "{v}");
        true
    } else {
        assert!(v["leader"].is_null() && v["error"].is_string(), "{v}");
        false
    }
}

#[test]
fn list_and_status_print_json_while_no_jobmanager_leads_and_during_a_failover() {
    let dir = tempfile::Builder::new()
        .prefix("eddy-options-json-")
        .tempdir()
        .expect("temp dir");
    let zk = ZooKeeper::start(dir.path().join("zk"), None);
    let conf = dir.path().join("conf");
    let log = dir.path().join("log");
    std::fs::create_dir_all(&conf).expect("conf dir");
    let rest = free_ports(1)[0];
    let keys = [
        ("high-availability.type", "zookeeper".to_string()),
        (
            "high-availability.zookeeper.quorum",
            format!("127.0.0.1:{}", zk.port),
        ),
        (
            "high-availability.storageDir",
            dir.path().join("ha").display().to_string(),
        ),
        ("high-availability.zookeeper.path.root", "/eddy".to_string()),
        (
            "high-availability.cluster-id",
            format!("/options-{}", std::process::id()),
        ),
        (
            "high-availability.zookeeper.client.session-timeout",
            "2 s".to_string(),
        ),
        (
            "high-availability.zookeeper.client.connection-timeout",
            "5 s".to_string(),
        ),
        ("jobmanager.rpc.address", "127.0.0.1".to_string()),
        ("rest.address", "127.0.0.1".to_string()),
        ("rest.bind-address", "127.0.0.1".to_string()),
        ("rest.port", rest.to_string()),
        ("taskmanager.host", "127.0.0.1".to_string()),
        ("heartbeat.interval", "500 ms".to_string()),
        ("heartbeat.timeout", "3 s".to_string()),
        ("env.log.dir", log.display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    write_config_yaml(&conf, keys, &[]);
    std::fs::write(conf.join("masters"), format!("127.0.0.1:{rest}\n")).expect("masters");
    std::fs::write(conf.join("workers"), "127.0.0.1\n").expect("workers");
    let cluster = Cluster {
        conf: conf.clone(),
        log: log.clone(),
    };
    let c = conf.display().to_string();

    // ZooKeeper up, no JobManager at all: nobody leads, and both commands say so in JSON.
    let (code, v) = json_of(&["list", "--json", "--conf", &c]);
    assert!(!check_list(code, &v));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no JobManager leads")),
        "{v}"
    );
    assert_eq!(v["jobs"], Value::Null, "no leader, no job list: {v}");
    let (code, v) = json_of(&["list", "--all", "--json", "--conf", &c]);
    assert!(!check_list(code, &v));
    let (code, v) = json_of(&["cluster", "status", "--json", "--conf", &c]);
    assert!(!check_status(code, &v));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("no JobManager leads")),
        "{v}"
    );

    // A leader: both name it.
    let out = eddy(&["cluster", "start", "--conf", &c], Duration::from_secs(90));
    assert_eq!(out.code, 0, "cluster start: {}", out.stderr);
    let (code, v) = json_of(&["list", "--json", "--conf", &c]);
    assert!(check_list(code, &v), "{v}");
    assert_eq!(v["jobs"], serde_json::json!([]));
    let (code, v) = json_of(&["cluster", "status", "--json", "--conf", &c]);
    assert!(check_status(code, &v), "{v}");
    assert_eq!(v["leader"], Value::String(format!("127.0.0.1:{rest}")));
    let leader_pid = v["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["state"] == "leader"))
        .and_then(|p| p["pid"].as_u64())
        .expect("the leader's pid") as u32;

    // The only JobManager killed: every answer stays one JSON object until ZooKeeper's session
    // of the dead leader expired and both report that no JobManager leads.
    unsafe {
        libc::kill(leader_pid as libc::pid_t, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (list_code, list) = json_of(&["list", "--json", "--conf", &c]);
        let (status_code, status) = json_of(&["cluster", "status", "--json", "--conf", &c]);
        let list_leads = check_list(list_code, &list);
        let status_leads = check_status(status_code, &status);
        let no_leader = |v: &Value| {
            v["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no JobManager leads"))
        };
        if !list_leads && !status_leads && no_leader(&list) && no_leader(&status) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still no 'no JobManager leads' after the leader died: {list} / {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(cluster);
    drop(zk);
}

// ---------------------------------------------------------------------------------------------
// scripts/zookeeper.sh prerequisites

/// A directory of links to every program on this machine's PATH except those named in `without`.
fn path_without(dir: &Path, without: &[&str]) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
    for d in path
        .split(':')
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"])
    {
        let Ok(entries) = std::fs::read_dir(d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let excluded = without
                .iter()
                .any(|w| name == *w || name.starts_with(&format!("{w}.")));
            let link = bin.join(&name);
            if !excluded && !link.exists() {
                let _ = std::os::unix::fs::symlink(e.path(), &link);
            }
        }
    }
    bin
}

#[test]
fn zookeeper_script_runs_without_nc_and_names_missing_prerequisites() {
    let dir = tempfile::tempdir().expect("temp dir");
    let no_nc = path_without(&dir.path().join("no-nc"), &["nc", "netcat", "ncat"]);
    let found = Command::new("bash")
        .args(["-c", "command -v nc"])
        .env("PATH", &no_nc)
        .output()
        .expect("bash");
    assert!(!found.status.success(), "nc is still on the test PATH");
    // Everything the script needs is there without nc: check passes, install has nothing to do
    // (so it never calls apt-get), and a server starts, answers and stops.
    let out = zookeeper_sh(&["check"], Some(&no_nc));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = zookeeper_sh(&["install"], Some(&no_nc));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("prerequisites present"),
        "{}",
        out.stdout
    );
    let zk = ZooKeeper::start(dir.path().join("zk"), Some(&no_nc));
    let out = zookeeper_sh(
        &["status", "--dir", &zk.dir.display().to_string()],
        Some(&no_nc),
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("imok"),
        "probed without nc: {}",
        out.stdout
    );
    drop(zk);
    // Without java, check and start name what is missing in one line.
    let no_java = path_without(&dir.path().join("no-java"), &["java"]);
    let out = zookeeper_sh(&["check"], Some(&no_java));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("missing: java"), "{}", out.stderr);
    let zk_dir = dir.path().join("zk2").display().to_string();
    let out = zookeeper_sh(&["start", "--port", "1", "--dir", &zk_dir], Some(&no_java));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("missing: java"), "{}", out.stderr);
}

#[test]
fn eddy_local_refuses_the_savepoint_options_of_eddy_run() {
    // `eddy local`'s cluster ends with its job: it neither takes nor resumes savepoints.
    let out_dir = tempfile::tempdir().expect("temp dir");
    let output = out_dir.path().join("out").display().to_string();
    let cases: [(&[&str], &str); 2] = [
        (
            &["-s", "/tmp/sp-1"],
            "-s/--fromSavepoint: '/tmp/sp-1' is not supported by `eddy local`",
        ),
        (
            &["--allow-non-restored-state"],
            "--allow-non-restored-state is not supported by `eddy local`",
        ),
    ];
    for (flags, start) in cases {
        let mut args = vec!["local", "sequence", "--keys", "2", "--per-key", "5"];
        args.extend_from_slice(&["--output", &output]);
        args.extend_from_slice(flags);
        let out = eddy(&args, LIMIT);
        assert_refused(&format!("eddy local {flags:?}"), &out, start);
    }
}

// ---------------------------------------------------------------------------------------------
// Task-local recovery (`state.backend.local-recovery`, `taskmanager.state.local.root-dirs`)

/// `checkpoints/<job>/chk-<n>/_metadata` exists for some n.
fn has_completed_checkpoint(checkpoints: &Path) -> bool {
    std::fs::read_dir(checkpoints)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|job| {
            std::fs::read_dir(job.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .any(|chk| chk.path().join("_metadata").is_file())
}

/// The `restored ... : X bytes of state files from checkpoint storage, Y bytes from local
/// copies` lines of a log: (X, Y) each.
fn restore_reads(log: &str) -> Vec<(u64, u64)> {
    log.lines()
        .filter(|l| l.contains("bytes of state files from checkpoint storage"))
        .filter_map(|l| {
            let (_, tail) = l.rsplit_once(": ")?;
            let mut n = tail
                .split_whitespace()
                .filter_map(|w| w.parse::<u64>().ok());
            Some((n.next()?, n.next()?))
        })
        .collect()
}

#[test]
fn local_recovery_restores_a_failed_task_from_its_local_copy_reading_nothing_from_storage() {
    restores_from_local_copies(&[]);
}

/// The same with `rocksdb` and incremental checkpoints: the keyed state is a native RocksDB
/// snapshot (SST files in `shared/`), and its local copy (hard links) is what the restarted
/// task opens; nothing is downloaded.
#[test]
fn local_recovery_of_incremental_rocksdb_snapshots_reads_nothing_from_storage() {
    restores_from_local_copies(&[
        "-D",
        "state.backend.type=rocksdb",
        "-D",
        "execution.checkpointing.incremental=true",
    ]);
}

/// `sequence` with local recovery and `backend` flags; one injected task failure after a
/// completed checkpoint: every restore reads 0 bytes from checkpoint storage and some from local
/// copies, the witness holds, and old copies are pruned.
fn restores_from_local_copies(backend: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let local = dir.path().join("local");
    let trigger = dir.path().join("fail-now");
    let log = dir.path().join("eddy.log");
    let (keys, per_key) = (2000, 60);
    let child = Command::new(EDDY)
        .args([
            "local",
            "sequence",
            "--keys",
            &keys.to_string(),
            "--per-key",
            &per_key.to_string(),
            "--rate",
            "12000",
            "--output",
            output.to_str().unwrap(),
            "--fail-on-file",
            trigger.to_str().unwrap(),
            "-p",
            "2",
            "-D",
            "eddy.test-hooks.enabled=true",
            "-D",
            "execution.checkpointing.interval=200 ms",
            "-D",
            &format!("state.checkpoints.dir={}", checkpoints.display()),
            "-D",
            "state.backend.local-recovery=true",
            "-D",
            &format!("taskmanager.state.local.root-dirs={}", local.display()),
        ])
        .args(backend)
        .env("EDDY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start eddy local");
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_completed_checkpoint(&checkpoints) {
        assert!(Instant::now() < deadline, "no completed checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The local copies are under <root>/<tm-id>/<job>/chk-<n>/.
    assert!(
        std::fs::read_dir(&local).expect("local root").count() >= 1,
        "no TaskManager directory under {}",
        local.display()
    );
    if !backend.is_empty() {
        // The keyed state is in native snapshots: SST files in shared/, kept locally too.
        while !walk(&checkpoints)
            .iter()
            .any(|p| p.to_string_lossy().contains("/shared/"))
            || !walk(&local)
                .iter()
                .any(|p| p.to_string_lossy().ends_with(".sst"))
        {
            assert!(Instant::now() < deadline, "no native snapshot kept locally");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // One task failure (the counting operator), not a TaskManager loss.
    std::fs::write(&trigger, b"").expect("trigger file");
    let status = loop {
        if let Some(s) = daemon.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(!trigger.exists(), "the failure was never injected\n{text}");
    let reads = restore_reads(&text);
    assert!(!reads.is_empty(), "no restore happened\n{text}");
    assert!(
        reads.iter().all(|(storage, _)| *storage == 0),
        "a restore read keyed state from checkpoint storage: {reads:?}"
    );
    assert!(
        reads.iter().any(|(_, local)| *local > 0),
        "no restore read a local copy: {reads:?}"
    );
    let lines: Vec<String> = committed_lines(&output)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(witness(&lines, keys, per_key), (0, 0, 0));
    // Pruned with their checkpoints: at most the copies of the newest checkpoints remain.
    let copies: Vec<PathBuf> = walk(&local)
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()) != Some("pid"))
        .collect();
    let chk_dirs: std::collections::BTreeSet<PathBuf> = copies
        .iter()
        .filter_map(|p| {
            p.ancestors()
                .find(|a| {
                    a.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("chk-"))
                })
                .map(Path::to_path_buf)
        })
        .collect();
    assert!(chk_dirs.len() <= 4, "local copies not pruned: {chk_dirs:?}");
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Incremental RocksDB checkpoints (`state.backend.incremental`, `execution.checkpointing.incremental`)

/// The SST files in `checkpoints/<job>/shared/` (`<uid>-<subtask>-<n>.sst-<random>`).
fn shared_ssts(checkpoints: &Path) -> Vec<PathBuf> {
    walk(checkpoints)
        .into_iter()
        .filter(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .and_then(|n| n.to_str())
                == Some("shared")
                && p.to_string_lossy().contains(".sst-")
        })
        .collect()
}

#[test]
fn incremental_rocksdb_checkpoints_share_sst_files_and_a_failed_task_restores_from_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out");
    let checkpoints = dir.path().join("chk");
    let trigger = dir.path().join("fail-now");
    let log = dir.path().join("eddy.log");
    let (keys, per_key) = (2000, 60);
    let child = Command::new(EDDY)
        .args([
            "local",
            "sequence",
            "--keys",
            &keys.to_string(),
            "--per-key",
            &per_key.to_string(),
            "--rate",
            "12000",
            "--output",
            output.to_str().unwrap(),
            "--fail-on-file",
            trigger.to_str().unwrap(),
            "-p",
            "2",
            "-D",
            "eddy.test-hooks.enabled=true",
            "-D",
            "execution.checkpointing.interval=200 ms",
            "-D",
            &format!("state.checkpoints.dir={}", checkpoints.display()),
            // Seed 002's names of the keys.
            "-D",
            "state.backend=rocksdb",
            "-D",
            "state.backend.incremental=true",
        ])
        .env("EDDY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start eddy local");
    let mut daemon = Daemon(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !has_completed_checkpoint(&checkpoints) || shared_ssts(&checkpoints).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no completed checkpoint with shared SST files"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // `_metadata` lists the native snapshot: SST files by reference into shared/.
    let metadata: Vec<String> = walk(&checkpoints)
        .into_iter()
        .filter(|p| p.ends_with("_metadata"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    assert!(
        metadata
            .iter()
            .any(|m| m.contains("\"rocksdb\":{") && m.contains("../shared/") && m.contains(".sst")),
        "no native RocksDB handle in {metadata:?}"
    );
    std::fs::write(&trigger, b"").expect("trigger file");
    let status = loop {
        if let Some(s) = daemon.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert!(!trigger.exists(), "the failure was never injected\n{text}");
    let reads = restore_reads(&text);
    assert!(
        reads.iter().any(|(storage, _)| *storage > 0),
        "no restore read the RocksDB files from checkpoint storage: {reads:?}\n{text}"
    );
    let lines: Vec<String> = committed_lines(&output)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(witness(&lines, keys, per_key), (0, 0, 0));
    // The job finished: its checkpoints are discarded, shared files included.
    assert_eq!(shared_ssts(&checkpoints), Vec::<PathBuf>::new());
}
