//! A plain session cluster (one JobManager, one TaskManager, no HA) from a conf dir of its own
//! on free 127.0.0.1 ports, started with `eddy cluster start`; dropping it runs `eddy cluster
//! stop` and SIGKILLs whatever is left of it. Used by the Flink-client and metrics tests.

use super::*;
use eddy_rest::client;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const CLI_LIMIT: Duration = Duration::from_secs(60);
const JOB_LIMIT: Duration = Duration::from_secs(120);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One JobManager and one TaskManager from a conf dir of their own, stopped (then SIGKILLed)
/// on drop.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub log: PathBuf,
    /// The JobManager's REST address, `127.0.0.1:port`.
    pub rest: String,
}

impl Cluster {
    /// `extra` keys replace or add to the generated ones.
    pub fn start(slots: u32, extra: &[(&str, String)]) -> Cluster {
        Cluster::start_workers(1, slots, extra)
    }

    /// [`Cluster::start`] with `workers` TaskManagers.
    pub fn start_workers(workers: usize, slots: u32, extra: &[(&str, String)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        let log = dir.path().join("log");
        std::fs::create_dir_all(&conf).expect("create conf dir");
        let ports = free_ports(2);
        let keys: Vec<(String, String)> = [
            ("jobmanager.rpc.address", "127.0.0.1".to_string()),
            ("jobmanager.rpc.port", ports[1].to_string()),
            ("rest.address", "127.0.0.1".to_string()),
            ("rest.bind-address", "127.0.0.1".to_string()),
            ("rest.port", ports[0].to_string()),
            ("taskmanager.host", "127.0.0.1".to_string()),
            ("taskmanager.numberOfTaskSlots", slots.to_string()),
            ("parallelism.default", "2".to_string()),
            ("execution.checkpointing.interval", "200 ms".to_string()),
            (
                "execution.checkpointing.dir",
                dir.path().join("checkpoints").display().to_string(),
            ),
            ("heartbeat.interval", "200 ms".to_string()),
            ("heartbeat.timeout", "5 s".to_string()),
            ("env.log.dir", log.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        write_config_yaml(&conf, keys, extra);
        std::fs::write(conf.join("masters"), format!("127.0.0.1:{}\n", ports[0]))
            .expect("write masters");
        std::fs::write(conf.join("workers"), "127.0.0.1\n".repeat(workers)).expect("write workers");
        let c = Cluster {
            dir,
            conf,
            log,
            rest: format!("127.0.0.1:{}", ports[0]),
        };
        let out = c.cli(&["cluster", "start", "--conf", &c.conf.display().to_string()]);
        assert_eq!(out.code, 0, "cluster start failed: {}", out.stderr);
        c
    }

    pub fn cli(&self, args: &[&str]) -> Outcome {
        eddy_with_env(args, &[("EDDY_LOG", "info")], CLI_LIMIT)
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        match client::request(&self.rest, "GET", path, None, HTTP_TIMEOUT) {
            Ok((200, v)) => Some(v),
            _ => None,
        }
    }

    /// `eddy run sequence ... -d`: the job id.
    pub fn run_sequence(&self, out: &Path, per_key: u64, rate: u64, extra: &[&str]) -> String {
        let (n, r, o) = (
            per_key.to_string(),
            rate.to_string(),
            out.display().to_string(),
        );
        let mut args = vec![
            "run",
            "sequence",
            "--keys",
            "4",
            "--per-key",
            &n,
            "--rate",
            &r,
            "--output",
            &o,
            "-p",
            "2",
            "-m",
            &self.rest,
            "-d",
        ];
        args.extend_from_slice(extra);
        let run = self.cli(&args);
        assert_eq!(run.code, 0, "eddy run failed: {}", run.stderr);
        run.stdout.trim().to_string()
    }

    pub fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + JOB_LIMIT;
        loop {
            if let Some(v) = probe() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn state(&self, job: &str) -> String {
        self.get(&format!("/jobs/{job}"))
            .and_then(|j| j["state"].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// Every subtask RUNNING and at least one completed checkpoint.
    pub fn wait_running_with_checkpoint(&self, job: &str) {
        self.wait_for(&format!("job {job} running with a checkpoint"), || {
            let j = self.get(&format!("/jobs/{job}"))?;
            let all_running = j["vertices"].as_array().is_some_and(|vs| {
                vs.iter()
                    .all(|v| v["tasks"]["RUNNING"].as_u64() == v["parallelism"].as_u64())
            });
            let c = self.get(&format!("/jobs/{job}/checkpoints"))?;
            (all_running && c["counts"]["completed"].as_u64() >= Some(1)).then_some(())
        });
    }

    pub fn wait_state(&self, job: &str, state: &str) {
        self.wait_for(&format!("job {job} to be {state}"), || {
            (self.state(job) == state).then_some(())
        });
    }

    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for (name, _) in pid_files(&self.log) {
            let log = self.log.join(name.replace(".pid", ".log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {}\n", log.display()));
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
        let conf = self.conf.display().to_string();
        let _ = std::panic::catch_unwind(|| {
            eddy(
                &["cluster", "stop", "--conf", &conf],
                Duration::from_secs(30),
            )
        });
        pids.extend(pid_files(&self.log).into_iter().map(|(_, p)| p));
        pids.extend(processes_mentioning(&conf));
        for pid in pids {
            // A pid file may outlive its process; never kill a stranger that reused the pid.
            if alive(pid) && cmdline(pid).contains("eddy") {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}
