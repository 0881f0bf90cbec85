//! The HA session cluster of the failover and dashboard tests: its own ZooKeeper
//! (`scripts/zookeeper.sh` on a free port), a conf dir on free 127.0.0.1 ports, `eddy cluster
//! start`; dropping it runs `eddy cluster stop`, SIGKILLs whatever is left that mentions its conf
//! dir, and stops its ZooKeeper by pid.

use super::*;
use eddy_rest::client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const EDDY: &str = env!("CARGO_BIN_EXE_eddy");
pub const CLI_LIMIT: Duration = Duration::from_secs(90);
pub const JOB_LIMIT: Duration = Duration::from_secs(180);
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);
pub const ZK_JAR: &str = "/usr/share/java/zookeeper.jar";

pub fn signal(pid: u32, sig: libc::c_int) {
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(
        rc,
        0,
        "kill -{sig} {pid}: {}",
        std::io::Error::last_os_error()
    );
}

pub fn script(args: &[&str], dir: Option<&Path>) {
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
pub struct ZooKeeper {
    pub port: u16,
    pub dir: PathBuf,
}

impl ZooKeeper {
    pub fn start(dir: PathBuf) -> ZooKeeper {
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
pub struct Cluster {
    pub conf: PathBuf,
    pub log: PathBuf,
    pub masters: Vec<String>,
    /// Stopped after the cluster (drop order), before its data dir is removed.
    _zk: ZooKeeper,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `masters` supervised JobManagers (restart attempts 5), `workers` standalone TaskManagers of
    /// 2 slots, a ZooKeeper session of `session`; `extra` keys replace or add to these.
    pub fn start(
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
    pub fn configure(
        name: &str,
        masters: usize,
        workers: usize,
        session: Duration,
        extra: &[(&str, String)],
    ) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix(&format!("eddy-{}-{name}-", env!("CARGO_CRATE_NAME")))
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

    pub fn conf_str(&self) -> &str {
        self.conf.to_str().expect("UTF-8 temp path")
    }

    pub fn cli(&self, args: &[&str]) -> Outcome {
        eddy_with_env(args, &[("EDDY_LOG", "info")], CLI_LIMIT)
    }

    pub fn get(&self, jm: usize, path: &str) -> Option<Value> {
        match client::request(&self.masters[jm], "GET", path, None, HTTP_TIMEOUT) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    pub fn is_standby(&self, jm: usize) -> bool {
        matches!(
            client::request(&self.masters[jm], "GET", "/overview", None, HTTP_TIMEOUT),
            Ok((503, _))
        )
    }

    /// The JobManagers (not in `skip`) answering 200.
    pub fn leaders(&self, skip: &[usize]) -> Vec<usize> {
        (0..self.masters.len())
            .filter(|i| !skip.contains(i) && self.get(*i, "/overview").is_some())
            .collect()
    }

    pub fn leader(&self) -> usize {
        self.wait_for("one leader", JOB_LIMIT, || {
            let l = self.leaders(&[]);
            (l.len() == 1).then(|| l[0])
        })
    }

    pub fn pid_of(&self, role: &str, index: usize) -> Option<u32> {
        std::fs::read_to_string(self.log.join(format!("eddy-{role}-{index}.pid")))
            .ok()
            .and_then(|t| t.lines().next()?.trim().parse().ok())
    }

    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
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
    pub fn submit_sequence(&self, keys: u64, per_key: u64, rate: u64) -> (String, PathBuf) {
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
    pub fn running_on(&self, job: &str, skip: &[usize]) -> Option<usize> {
        self.leaders(skip).into_iter().find(|&l| {
            self.get(l, &format!("/jobs/{job}/eddy-details"))
                .is_some_and(|d| all_tasks_running(&d))
        })
    }

    pub fn log_tail(&self) -> String {
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

pub fn status(d: &Value) -> &str {
    d["status"].as_str().unwrap_or("?")
}

pub fn all_tasks_running(d: &Value) -> bool {
    status(d) == "RUNNING"
        && d["vertices"].as_array().is_some_and(|vs| {
            !vs.is_empty()
                && vs
                    .iter()
                    .all(|v| v["tasks"]["RUNNING"].as_u64() == v["parallelism"].as_u64())
        })
}
