//! Active mode (`resourcemanager.mode: active`): the resource manager keeps
//! `resourcemanager.active.taskmanagers` TaskManager processes running on this host — that many
//! for the whole cluster, started only by the leading JobManager.
//!
//! Every JobManager runs this loop, but only while it leads does it act. On gaining leadership it
//! first adopts the TaskManagers that are already running (started by an earlier leader): it
//! waits up to `heartbeat.interval` for them to register, and ends the wait early once every
//! live TaskManager of the log directory's pid files has registered. Then, and on every
//! deregistration (a TaskManager that died, or was lost), it starts only the missing ones.
//!
//! With HA the TaskManagers are detached (own session, no parent-death signal) and outlive the
//! JobManager that started them, so a failover keeps them; `eddy cluster stop` stops them
//! through their pid files (`eddy-taskmanager-<n>.pid` in `env.log.dir`). Without HA there is no
//! other JobManager to adopt them: they die with this one (`PR_SET_PDEATHSIG`), as before.
//! A standby must never start a TaskManager.

use eddy_cluster::jobmanager::JobManagerHandle;
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the loop looks at the registered TaskManagers and its own children.
const POLL: Duration = Duration::from_millis(20);
/// A started TaskManager that has not registered within this time no longer counts as coming
/// (it is stopped and replaced).
const REGISTRATION_BOUND: Duration = Duration::from_secs(30);

/// What the TaskManagers are started with.
pub struct WorkerSpec {
    pub conf_dir: Option<PathBuf>,
    pub overrides: Vec<String>,
    /// This JobManager's RPC address (used by TaskManagers only without HA).
    pub rpc_address: String,
    /// The cluster's TaskManager count.
    pub count: u32,
    pub log_dir: PathBuf,
    /// HA: detached TaskManagers that outlive this JobManager.
    pub ha: bool,
    /// How long a new leader waits for running TaskManagers to register before it starts more.
    pub adoption_grace: Duration,
}

/// A TaskManager process this JobManager started.
struct Started {
    child: Child,
    index: usize,
    at: Instant,
}

pub struct ActiveTaskManagers {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ActiveTaskManagers {
    pub fn start(jm: JobManagerHandle, spec: WorkerSpec) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || run(jm, spec, s));
        ActiveTaskManagers { stop, thread }
    }

    /// Stops the loop. Without HA the TaskManagers it started are stopped too; with HA they keep
    /// running for the next leader (`eddy cluster stop` stops them).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

fn pid_path(log_dir: &Path, index: usize) -> PathBuf {
    log_dir.join(format!("eddy-taskmanager-{index}.pid"))
}

fn pid_in(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Running, and not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rsplit_once(')') {
        Some((_, rest)) => rest.split_whitespace().next() != Some("Z"),
        None => false,
    }
}

/// The live TaskManagers named by the log directory's pid files.
fn live_pid_files(log_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("eddy-taskmanager-") && n.ends_with(".pid")
        })
        .filter_map(|e| pid_in(&e.path()))
        .filter(|p| alive(*p))
        .collect()
}

/// The lowest index whose pid file is absent or names a dead process.
fn free_index(log_dir: &Path, taken: &HashSet<usize>) -> usize {
    (0..)
        .find(|i| !taken.contains(i) && pid_in(&pid_path(log_dir, *i)).is_none_or(|p| !alive(p)))
        .unwrap_or(0)
}

fn spawn(spec: &WorkerSpec, index: usize) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the eddy binary: {e}"))?;
    let log_path = spec.log_dir.join(format!("eddy-taskmanager-{index}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open log file {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("taskmanager");
    if let Some(d) = &spec.conf_dir {
        cmd.arg("--conf").arg(d);
    }
    for o in &spec.overrides {
        cmd.arg("-D").arg(o);
    }
    if let Some((host, port)) = spec.rpc_address.rsplit_once(':') {
        cmd.arg("-D")
            .arg(format!("jobmanager.rpc.address={host}"))
            .arg("-D")
            .arg(format!("jobmanager.rpc.port={port}"));
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    let ha = spec.ha;
    unsafe {
        cmd.pre_exec(move || {
            if ha {
                // Its own session: it outlives this JobManager and a terminal's Ctrl-C.
                libc::setsid();
            } else {
                // Nobody else could adopt it: it dies with this JobManager, even on SIGKILL.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start a TaskManager: {e}"))?;
    let pf = pid_path(&spec.log_dir, index);
    if let Err(e) = std::fs::write(&pf, format!("{}\n127.0.0.1\n", child.id())) {
        tracing::warn!("cannot write pid file {}: {e}", pf.display());
    }
    Ok(child)
}

fn terminate(c: &mut Started, log_dir: &Path) {
    unsafe {
        libc::kill(c.child.id() as i32, libc::SIGTERM);
    }
    let _ = c.child.wait();
    remove_pid_file(log_dir, c.index, c.child.id());
}

fn remove_pid_file(log_dir: &Path, index: usize, pid: u32) {
    let pf = pid_path(log_dir, index);
    if pid_in(&pf) == Some(pid) {
        let _ = std::fs::remove_file(pf);
    }
}

fn run(jm: JobManagerHandle, spec: WorkerSpec, stop: Arc<AtomicBool>) {
    let _ = std::fs::create_dir_all(&spec.log_dir);
    let mut started: Vec<Started> = Vec::new();
    let mut leading_since: Option<Instant> = None;
    let mut adopted = false;
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(POLL);
        // Reap the TaskManagers this process started (also as a standby: no zombies).
        started.retain_mut(|c| match c.child.try_wait() {
            Ok(Some(status)) => {
                tracing::warn!(
                    "TaskManager process {} (#{}) exited ({status})",
                    c.child.id(),
                    c.index
                );
                remove_pid_file(&spec.log_dir, c.index, c.child.id());
                false
            }
            _ => true,
        });
        if !jm.leader_view().is_leader {
            if leading_since.take().is_some() {
                tracing::info!(
                    "active resource manager: no longer leading; starting no TaskManagers"
                );
            }
            continue;
        }
        let now = Instant::now();
        let since = *leading_since.get_or_insert_with(|| {
            adopted = false;
            tracing::info!(
                "active resource manager: leading; adopting the running TaskManagers (up to {} ms), then keeping {} running",
                spec.adoption_grace.as_millis(),
                spec.count
            );
            now
        });
        // A standby answers no requests: fails until the JobManager loop took the leadership.
        let Ok(registered) = jm.taskmanagers() else {
            continue;
        };
        let registered_pids: HashSet<u32> = registered.iter().map(|t| t.pid).collect();
        // Started but not registered yet: coming, for a bounded time.
        let mut coming = 0;
        for c in started.iter_mut() {
            if registered_pids.contains(&c.child.id()) {
                continue;
            }
            if now.duration_since(c.at) < REGISTRATION_BOUND {
                coming += 1;
            } else {
                tracing::warn!(
                    "TaskManager process {} did not register within {REGISTRATION_BOUND:?}; stopping it",
                    c.child.id()
                );
                terminate(c, &spec.log_dir);
            }
        }
        if !adopted {
            let unregistered = live_pid_files(&spec.log_dir)
                .into_iter()
                .filter(|p| !registered_pids.contains(p))
                .count();
            if unregistered > 0 && now.duration_since(since) < spec.adoption_grace {
                continue;
            }
            adopted = true;
            tracing::info!(
                "active resource manager: {} TaskManager(s) registered after gaining leadership ({} ms)",
                registered.len(),
                now.duration_since(since).as_millis()
            );
        }
        let have = registered.len() + coming;
        let missing = (spec.count as usize).saturating_sub(have);
        for _ in 0..missing {
            let taken: HashSet<usize> = started.iter().map(|c| c.index).collect();
            let index = free_index(&spec.log_dir, &taken);
            match spawn(&spec, index) {
                Ok(child) => {
                    tracing::info!(
                        "active resource manager started TaskManager process {} (#{index}): {have} of {} registered or starting",
                        child.id(),
                        spec.count
                    );
                    started.push(Started {
                        child,
                        index,
                        at: now,
                    });
                }
                Err(e) => tracing::warn!("active resource manager: {e}"),
            }
        }
    }
    if !spec.ha {
        for c in started.iter_mut() {
            terminate(c, &spec.log_dir);
        }
    }
}
