//! `eddy jobmanager` and `eddy taskmanager`: the cluster processes, in the foreground, logging
//! to stderr, until SIGINT/SIGTERM.
//!
//! The JobManager process holds the dispatcher, the resource manager and the job masters, its
//! RPC endpoint (TaskManagers connect to `jobmanager.rpc.address:jobmanager.rpc.port`) and the
//! REST API (`rest.bind-address:rest.port`). In active mode (`resourcemanager.mode: active`) the
//! resource manager also starts `resourcemanager.active.taskmanagers` TaskManager processes on
//! this host and starts a replacement as soon as one dies.

use crate::cli::fail;
use eddy_cluster::ha::Ha;
use eddy_cluster::{jobmanager, taskmanager};
use eddy_core::config::{self, Config, ResourceManagerMode};
use eddy_runtime::registry::JobRegistry;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Blocks until SIGINT or SIGTERM.
fn wait_for_signal() {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || s.store(true, Ordering::SeqCst));
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn load(conf_dir: Option<&Path>, overrides: &[String]) -> Result<Config, i32> {
    match config::load(conf_dir, overrides) {
        Ok(l) => {
            for w in &l.warnings {
                tracing::warn!("{w}");
            }
            Ok(l.config)
        }
        Err(e) => Err(fail(&e.to_string(), 2)),
    }
}

pub fn run_jobmanager(
    registry: JobRegistry,
    conf_dir: Option<PathBuf>,
    overrides: Vec<String>,
) -> i32 {
    crate::local::init_logging("info");
    let config = match load(conf_dir.as_deref(), &overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // With HA, a bad quorum or storage directory fails here, before anything is started.
    let ha = match Ha::connect(&config) {
        Ok(ha) => ha,
        Err(e) => return fail(&e, 2),
    };
    let rpc_host = config.jobmanager_rpc_address();
    // With HA, several JobManagers may share a host: the RPC port comes from
    // high-availability.jobmanager.port (0 = any) and is published through ZooKeeper.
    let rpc_port = if ha.is_some() {
        config.ha_jobmanager_port()
    } else {
        config.jobmanager_rpc_port()
    };
    let jm = match jobmanager::start_with(
        config.clone(),
        Arc::new(registry),
        &rpc_host,
        rpc_port,
        ha.clone(),
    ) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    let rest = match eddy_rest::start(
        jm.clone(),
        config.clone(),
        &config.rest_bind_address(),
        config.rest_port(),
    ) {
        Ok(r) => r,
        Err(e) => {
            jm.shutdown();
            return fail(&e, 1);
        }
    };
    let rest_url = format!("http://{}:{}", config.rest_address(), rest.address.port());
    if ha.is_some() {
        rest.set_standby(None);
    }
    if let Err(e) = jm.campaign(&rest_url) {
        rest.shutdown();
        jm.shutdown();
        return fail(&e, 1);
    }
    // Mirror leadership into the REST API: a standby answers with the leader's address.
    let (view_jm, leader_state) = (jm.clone(), rest.leader_state());
    std::thread::spawn(move || {
        let mut last = None;
        loop {
            let v = view_jm.leader_view();
            let now = (v.is_leader, v.leader_rest.clone());
            if last.as_ref() != Some(&now) {
                if v.is_leader {
                    leader_state.set_leader();
                } else {
                    leader_state.set_standby(v.leader_rest.as_deref());
                }
                last = Some(now);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    tracing::info!(
        "JobManager running: RPC {} REST {rest_url} (pid {}){}",
        jm.rpc_address,
        std::process::id(),
        if ha.is_some() {
            ", campaigning for leadership"
        } else {
            ""
        }
    );
    let supervisor = (config.resource_manager_mode() == ResourceManagerMode::Active).then(|| {
        ActiveTaskManagers::start(
            conf_dir.clone(),
            overrides.clone(),
            &jm.rpc_address,
            config.active_taskmanagers(),
            config.log_dir(),
        )
    });
    wait_for_signal();
    tracing::info!("JobManager shutting down");
    if let Some(s) = supervisor {
        s.stop();
    }
    rest.shutdown();
    jm.shutdown();
    0
}

pub fn run_taskmanager(
    registry: JobRegistry,
    conf_dir: Option<PathBuf>,
    overrides: Vec<String>,
) -> i32 {
    crate::local::init_logging("info");
    let config = match load(conf_dir.as_deref(), &overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ha = match Ha::connect(&config) {
        Ok(ha) => ha,
        Err(e) => return fail(&e, 2),
    };
    let (target, jm_address) = match ha {
        Some(ha) => (
            taskmanager::JobManagerTarget::Ha(ha),
            "found through ZooKeeper".to_string(),
        ),
        None => {
            let a = format!(
                "{}:{}",
                config.jobmanager_rpc_address(),
                config.jobmanager_rpc_port()
            );
            (taskmanager::JobManagerTarget::Fixed(a.clone()), a)
        }
    };
    let tm = match taskmanager::start_with(&config, Arc::new(registry), target) {
        Ok(tm) => tm,
        Err(e) => return fail(&e, 1),
    };
    tracing::info!(
        "TaskManager {} running with {} slots (data {}, pid {}), registering at the JobManager {jm_address}",
        tm.id(),
        config.slots_per_taskmanager(),
        tm.data_address(),
        std::process::id()
    );
    wait_for_signal();
    tracing::info!("TaskManager {} shutting down", tm.id());
    tm.shutdown();
    0
}

/// Active mode: TaskManager child processes kept alive by the resource manager.
struct ActiveTaskManagers {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ActiveTaskManagers {
    fn start(
        conf_dir: Option<PathBuf>,
        overrides: Vec<String>,
        rpc_address: &str,
        count: u32,
        log_dir: PathBuf,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let (host, port) = rpc_address
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .unwrap_or_default();
        let thread = std::thread::spawn(move || {
            let _ = std::fs::create_dir_all(&log_dir);
            let spawn = |n: u32| -> Option<Child> {
                let exe = std::env::current_exe().ok()?;
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log_dir.join(format!("eddy-taskmanager-active-{n}.log")))
                    .ok()?;
                let mut cmd = Command::new(exe);
                cmd.arg("taskmanager");
                if let Some(d) = &conf_dir {
                    cmd.arg("--conf").arg(d);
                }
                for o in &overrides {
                    cmd.arg("-D").arg(o);
                }
                cmd.arg("-D")
                    .arg(format!("jobmanager.rpc.address={host}"))
                    .arg("-D")
                    .arg(format!("jobmanager.rpc.port={port}"));
                cmd.stdin(Stdio::null())
                    .stdout(log.try_clone().ok()?)
                    .stderr(log);
                // The TaskManager dies with this JobManager process, even when it is SIGKILLed.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                        Ok(())
                    });
                }
                match cmd.spawn() {
                    Ok(c) => {
                        tracing::info!(
                            "active resource manager started TaskManager process {} (#{n})",
                            c.id()
                        );
                        Some(c)
                    }
                    Err(e) => {
                        tracing::warn!(
                            "active resource manager could not start a TaskManager: {e}"
                        );
                        None
                    }
                }
            };
            let mut children: Vec<Option<Child>> = (0..count).map(spawn).collect();
            while !s.load(Ordering::SeqCst) {
                for (n, slot) in children.iter_mut().enumerate() {
                    let dead = match slot {
                        Some(c) => match c.try_wait() {
                            Ok(Some(status)) => {
                                tracing::warn!("TaskManager process {} died ({status}); starting a replacement", c.id());
                                true
                            }
                            _ => false,
                        },
                        None => true,
                    };
                    if dead {
                        *slot = spawn(n as u32);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for c in children.iter_mut().flatten() {
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGTERM);
                }
            }
            for c in children.iter_mut().flatten() {
                let _ = c.wait();
            }
        });
        ActiveTaskManagers { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}
