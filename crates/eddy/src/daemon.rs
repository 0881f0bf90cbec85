//! `eddy jobmanager` and `eddy taskmanager`: the cluster processes, in the foreground, logging
//! to stderr, until SIGINT/SIGTERM.
//!
//! The JobManager process holds the dispatcher, the resource manager and the job masters, its
//! RPC endpoint (TaskManagers connect to `jobmanager.rpc.address:jobmanager.rpc.port`) and the
//! REST API (`rest.bind-address:rest.port`). In active mode (`resourcemanager.mode: active`) the
//! leader's resource manager also keeps `resourcemanager.active.taskmanagers` TaskManager
//! processes running on this host (`active.rs`).
//!
//! With `--zk-session-file` (HA only) the JobManager keeps its ZooKeeper session's id and
//! password in that file, so that its supervisor can end the session once it saw the process die.

use crate::active::{ActiveTaskManagers, WorkerSpec};
use crate::cli::fail;
use eddy_cluster::ha::Ha;
use eddy_cluster::{jobmanager, taskmanager};
use eddy_core::config::{self, Config, HaMode, ResourceManagerMode};
use eddy_runtime::registry::JobRegistry;
use std::path::{Path, PathBuf};
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
            // Fault points (EDDY_FAULT_POINTS) are armed only with eddy.test-hooks.enabled.
            eddy_core::faultpoint::enable(l.config.test_hooks_enabled())
                .map_err(|e| fail(&e, 2))?;
            Ok(l.config)
        }
        Err(e) => Err(fail(&e.to_string(), 2)),
    }
}

pub fn run_jobmanager(
    registry: JobRegistry,
    conf_dir: Option<PathBuf>,
    overrides: Vec<String>,
    zk_session_file: Option<PathBuf>,
) -> i32 {
    crate::local::init_logging("info");
    let config = match load(conf_dir.as_deref(), &overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // With HA, a bad quorum or storage directory fails here, before anything is started.
    let ha = match &zk_session_file {
        Some(f) if config.ha_mode() == HaMode::None => {
            return fail(
                &format!(
                    "--zk-session-file {} needs high-availability.type: zookeeper (it is none): without HA there is no ZooKeeper session",
                    f.display()
                ),
                2,
            )
        }
        Some(f) => Ha::connect_recording_session(&config, f),
        None => Ha::connect(&config),
    };
    let ha = match ha {
        Ok(ha) => ha,
        Err(e) => return fail(&e, 2),
    };
    // Without HA, a storage directory keeps the JobManager's jobs on local disk, so a restart by
    // its supervisor recovers them (`Ha::connect_local`).
    let local = match ha.is_none().then(|| Ha::connect_local(&config)) {
        Some(Ok(l)) => l,
        Some(Err(e)) => return fail(&e, 2),
        None => None,
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
        ha.clone().or(local),
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
    // Published for the CLI (HA leader retrieval): https when REST speaks TLS.
    let scheme = if config.ssl_rest_enabled() {
        "https"
    } else {
        "http"
    };
    let rest_url = format!(
        "{scheme}://{}:{}",
        config.rest_address(),
        rest.address.port()
    );
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
            jm.clone(),
            WorkerSpec {
                conf_dir: conf_dir.clone(),
                overrides: overrides.clone(),
                rpc_address: jm.rpc_address.clone(),
                count: config.active_taskmanagers(),
                log_dir: config.log_dir(),
                ha: ha.is_some(),
                adoption_grace: config.heartbeat_interval(),
            },
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

/// The nice value of a daemonized TaskManager's autogroup.
const TASKMANAGER_AUTOGROUP_NICE: &str = "10";

/// A TaskManager that leads its own session (`eddy cluster start` starts each daemon with
/// `setsid`) schedules its session's autogroup at nice 10: where the kernel shares the CPU
/// between sessions first (`kernel.sched_autogroup_enabled`), 100 busy TaskManagers on the
/// JobManager's host otherwise left the JobManager 1/101 of it, and its REST answers (and job
/// submission) took seconds to minutes while a job ran. Only the TaskManager's own autogroup
/// is changed, never a shell's it was started from; without autogroups the file does not exist
/// and nothing changes.
fn yield_to_jobmanager() {
    // SAFETY: getsid and getpid take no pointers.
    let own_session = unsafe { libc::getsid(0) == libc::getpid() };
    if !own_session {
        return;
    }
    match std::fs::write("/proc/self/autogroup", TASKMANAGER_AUTOGROUP_NICE) {
        Ok(()) => tracing::info!(
            "TaskManager scheduled below the JobManager: autogroup nice {TASKMANAGER_AUTOGROUP_NICE}"
        ),
        Err(e) => tracing::debug!("the autogroup's nice value stays: {e}"),
    }
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
    yield_to_jobmanager();
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
