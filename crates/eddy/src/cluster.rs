//! `eddy cluster start|stop|status`: the processes of a cluster on this host, in the background,
//! from the configuration directory's `masters` (JobManagers, `host:rest_port`) and `workers`
//! (TaskManagers, one host per line), with log files and pid files under `env.log.dir`.
//!
//! `start` waits until every TaskManager registered; if a process dies during start-up, the
//! others are stopped again and its log's error is shown — never a half-started cluster.
//!
//! With HA, each JobManager's supervisor (`supervise`) hands it a session file
//! (`eddy-jobmanager-<i>.zksession`, mode 0600) in which the JobManager keeps its ZooKeeper
//! session's id and password. When `waitpid` reports the JobManager dead, the supervisor closes
//! that session, so its leadership ends at once rather than after the session timeout. It never
//! closes the session of a process that `waitpid` has not reported dead.

use crate::cli::fail;
use eddy_cluster::ha;
use eddy_core::config::{self, Config, HaMode, ResourceManagerMode};
use eddy_rest::client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One background process `cluster start` launched.
#[derive(Debug)]
struct Managed {
    role: &'static str,
    index: usize,
    pid: u32,
    /// JobManager: its REST address; TaskManager: its host.
    address: String,
}

fn pid_file(log_dir: &Path, role: &str, index: usize) -> PathBuf {
    log_dir.join(format!("eddy-{role}-{index}.pid"))
}

fn log_file(log_dir: &Path, role: &str, index: usize) -> PathBuf {
    log_dir.join(format!("eddy-{role}-{index}.log"))
}

fn is_local_host(host: &str) -> bool {
    let own = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "0.0.0.0") || host == own.trim()
}

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie (exited, not reaped) counts as dead.
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    exists
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Reads the pid files: every process this log directory knows.
fn managed(log_dir: &Path) -> Vec<Managed> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(log_dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name
            .strip_prefix("eddy-")
            .and_then(|n| n.strip_suffix(".pid"))
        else {
            continue;
        };
        let Some((role, index)) = rest.rsplit_once('-') else {
            continue;
        };
        let role: &'static str = match role {
            "jobmanager" => "jobmanager",
            "taskmanager" => "taskmanager",
            "supervisor" => "supervisor",
            _ => continue,
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.lines();
        let Some(pid) = lines.next().and_then(|p| p.trim().parse().ok()) else {
            continue;
        };
        out.push(Managed {
            role,
            index,
            pid,
            address: lines.next().unwrap_or("").to_string(),
        });
    }
    out.sort_by(|a, b| (a.role, a.index).cmp(&(b.role, b.index)));
    out
}

/// Starts `eddy <role> --conf DIR -D ...` in the background (its own session, so a terminal's
/// Ctrl-C does not reach it) with its log and pid files.
fn spawn(
    role: &'static str,
    index: usize,
    conf_dir: &Path,
    extra: &[String],
    log_dir: &Path,
    address: &str,
) -> Result<Managed, String> {
    let mut args: Vec<String> = vec![
        role.to_string(),
        "--conf".into(),
        conf_dir.to_string_lossy().into_owned(),
    ];
    for d in extra {
        args.push("-D".into());
        args.push(d.clone());
    }
    spawn_detached(role, index, &args, log_dir, address)
}

fn spawn_supervisor(
    index: usize,
    conf_dir: &Path,
    log_dir: &Path,
    host: &str,
    port: u16,
) -> Result<Managed, String> {
    let args: Vec<String> = [
        "cluster",
        "supervise",
        "--index",
        &index.to_string(),
        "--host",
        host,
        "--rest-port",
        &port.to_string(),
        "--conf",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([conf_dir.to_string_lossy().into_owned()])
    .collect();
    spawn_detached(
        "supervisor",
        index,
        &args,
        log_dir,
        &format!("{host}:{port}"),
    )
}

/// Runs `eddy ARGS` detached, appending to `eddy-<role>-<index>.log` and recording its pid (and
/// address) in `eddy-<role>-<index>.pid`. The child is not waited for: it outlives this command.
fn spawn_detached(
    role: &'static str,
    index: usize,
    args: &[String],
    log_dir: &Path,
    address: &str,
) -> Result<Managed, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the eddy binary: {e}"))?;
    let log_path = log_file(log_dir, role, index);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open log file {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::setsid();
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {role}: {e}"))?;
    let pid = child.id();
    let pf = pid_file(log_dir, role, index);
    std::fs::write(&pf, format!("{pid}\n{address}\n"))
        .map_err(|e| format!("cannot write pid file {}: {e}", pf.display()))?;
    std::mem::forget(child);
    Ok(Managed {
        role,
        index,
        pid,
        address: address.to_string(),
    })
}

/// Waits for the supervisor to start its JobManager.
fn wait_for_pid_file(log_dir: &Path, index: usize) -> Result<Managed, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(m) = managed(log_dir)
            .into_iter()
            .find(|m| m.role == "jobmanager" && m.index == index)
        {
            return Ok(m);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!(
        "the supervisor of JobManager {index} did not start it: see {}",
        log_file(log_dir, "supervisor", index).display()
    ))
}

/// The file in which supervised JobManager `index` keeps its ZooKeeper session.
fn session_file(log_dir: &Path, index: usize) -> PathBuf {
    log_dir.join(format!("eddy-jobmanager-{index}.zksession"))
}

/// Blocks until `waitpid` reports child `pid` ended; `Err` if it is not (or no longer) a child.
fn wait_child(pid: u32) -> Result<String, String> {
    let mut status = 0;
    loop {
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r == pid as libc::pid_t {
            return Ok(if libc::WIFSIGNALED(status) {
                format!("killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exit code {}", libc::WEXITSTATUS(status))
            });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("waitpid({pid}): {e}"));
        }
    }
}

/// After `waitpid` reported JobManager `pid` dead: ends the ZooKeeper session it recorded in
/// `file` (if it recorded one), then removes the file.
fn close_dead_session(file: &Path, pid: u32, timeout: Duration) {
    match ha::RecordedSession::read(file) {
        Err(_) if !file.exists() => {
            tracing::info!("supervisor: JobManager pid {pid} recorded no ZooKeeper session")
        }
        Err(e) => tracing::warn!("supervisor: {e}; its session will expire by itself"),
        Ok(r) if r.pid != pid => tracing::warn!(
            "supervisor: {} names pid {}, not the dead JobManager {pid}; not closing it",
            file.display(),
            r.pid
        ),
        Ok(_) => match ha::close_recorded_session(file, timeout) {
            Ok(msg) => tracing::info!("supervisor: {msg}"),
            Err(e) => tracing::warn!("supervisor: {e}; the session will expire by itself"),
        },
    }
    let _ = std::fs::remove_file(file);
}

/// `eddy cluster supervise` (started by `cluster start`): runs JobManager `index` and starts it
/// again when it dies, up to `cluster.jobmanager.restart-attempts` times (the analog of
/// `yarn.application-attempts`). With HA, once `waitpid` reported the JobManager dead, its
/// ZooKeeper session is closed first (see the module doc). SIGTERM stops the JobManager and the
/// supervisor.
pub fn supervise(conf_dir: &Path, index: usize, host: &str, rest_port: u16) -> i32 {
    crate::local::init_logging("info");
    let config = match load(conf_dir) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let log_dir = config.log_dir();
    let attempts = config.jobmanager_restart_attempts();
    let ha = config.ha_mode() != HaMode::None;
    let session = session_file(&log_dir, index);
    let close_timeout = config.zk_connection_timeout();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let _ = ctrlc::set_handler(move || s.store(true, std::sync::atomic::Ordering::SeqCst));
    let mut args: Vec<String> = vec![
        "jobmanager".into(),
        "--conf".into(),
        conf_dir.to_string_lossy().into_owned(),
        "-D".into(),
        format!("rest.port={rest_port}"),
        "-D".into(),
        format!("rest.address={host}"),
    ];
    if ha {
        args.push("--zk-session-file".into());
        args.push(session.to_string_lossy().into_owned());
    }
    let mut restarts = 0;
    loop {
        // A previous incarnation's file was handled when it died; never hand it on.
        let _ = std::fs::remove_file(&session);
        let jm = match spawn_detached(
            "jobmanager",
            index,
            &args,
            &log_dir,
            &format!("{host}:{rest_port}"),
        ) {
            Ok(m) => m,
            Err(e) => return fail(&e, 1),
        };
        tracing::info!("supervisor: JobManager {index} running as pid {}", jm.pid);
        let pid = jm.pid;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait_child(pid));
        });
        let died = loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(r) => break Some(r),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Some(Err("the waiting thread ended".into()))
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if stop.load(std::sync::atomic::Ordering::SeqCst) {
                        break None;
                    }
                }
            }
        };
        let how = match died {
            Some(Ok(how)) => how,
            Some(Err(e)) => {
                // Not known dead: its session is left to expire.
                tracing::error!("supervisor: lost track of JobManager {index} (pid {pid}): {e}");
                return 1;
            }
            None => {
                stop_processes(&[jm], &log_dir);
                // Stopped (SIGTERM, or SIGKILL after the grace): reaped, so known dead.
                if ha && matches!(rx.recv_timeout(Duration::from_secs(15)), Ok(Ok(_))) {
                    close_dead_session(&session, pid, close_timeout);
                }
                return 0;
            }
        };
        tracing::info!("supervisor: waitpid reports JobManager {index} (pid {pid}) ended: {how}");
        if ha {
            close_dead_session(&session, pid, close_timeout);
        }
        if restarts >= attempts {
            tracing::error!("supervisor: JobManager {index} (pid {pid}) died; all {attempts} restart attempts used");
            let _ = std::fs::remove_file(pid_file(&log_dir, "jobmanager", index));
            return 1;
        }
        restarts += 1;
        tracing::warn!("supervisor: JobManager {index} (pid {pid}) died; starting it again (attempt {restarts} of {attempts})");
    }
}

/// `eddy cluster close-session --session-file FILE`: ends the ZooKeeper session that a
/// JobManager which has exited recorded with `--zk-session-file` (for service managers:
/// systemd's `ExecStopPost`). Refuses while the recorded process still runs.
pub fn close_session(file: &Path) -> i32 {
    let r = match ha::RecordedSession::read(file) {
        Ok(r) => r,
        Err(e) => return fail(&e, 2),
    };
    if alive(r.pid) {
        return fail(
            &format!(
                "JobManager pid {} recorded in {} is still running: close-session ends only the session of a JobManager that has exited",
                r.pid,
                file.display()
            ),
            1,
        );
    }
    match ha::close_recorded_session(file, Duration::from_secs(10)) {
        Ok(msg) => {
            let _ = std::fs::remove_file(file);
            println!("{msg}");
            0
        }
        Err(e) => fail(&e, 1),
    }
}

/// The last error line of a process's log (for a one-line start-up failure).
fn last_error(log_dir: &Path, role: &str, index: usize) -> String {
    let text = std::fs::read_to_string(log_file(log_dir, role, index)).unwrap_or_default();
    text.lines()
        .rev()
        .find(|l| l.contains("error:") || l.contains("ERROR"))
        .map(|l| {
            // The child's own `error: ` prefix is dropped: the caller adds one.
            let l = l.trim();
            l.find("error: ").map_or(l, |i| &l[i + 7..]).to_string()
        })
        .unwrap_or_else(|| format!("see {}", log_file(log_dir, role, index).display()))
}

fn stop_processes(procs: &[Managed], log_dir: &Path) {
    for p in procs {
        if alive(p.pid) {
            unsafe {
                libc::kill(p.pid as i32, libc::SIGTERM);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in procs {
        while alive(p.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(p.pid) {
            unsafe {
                libc::kill(p.pid as i32, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_file(pid_file(log_dir, p.role, p.index));
    }
}

/// Stops what a failed `start` launched, then whatever the pid files still name (TaskManagers an
/// active-mode leader started meanwhile).
fn abort_start(procs: &[Managed], log_dir: &Path) {
    stop_processes(procs, log_dir);
    let rest: Vec<Managed> = managed(log_dir)
        .into_iter()
        .filter(|p| alive(p.pid))
        .collect();
    stop_processes(&rest, log_dir);
}

fn load(conf_dir: &Path) -> Result<Config, String> {
    let l = config::load(Some(conf_dir), &[]).map_err(|e| e.to_string())?;
    for w in &l.warnings {
        eprintln!("warning: {w}");
    }
    // Every REST call of this command sends the cluster's bearer token, if it has one.
    client::set_bearer_token(eddy_rest::auth::read_token(&l.config)?);
    // ... and speaks TLS when security.ssl.rest.enabled is true.
    client::set_tls(eddy_core::tls::rest_client_config(&l.config)?);
    Ok(l.config)
}

pub fn start(conf_dir: &Path) -> i32 {
    let started = Instant::now();
    let config = match load(conf_dir) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let masters = match config::read_masters(conf_dir) {
        Ok(m) => m,
        Err(e) => return fail(&e.to_string(), 2),
    };
    let active = config.resource_manager_mode() == ResourceManagerMode::Active;
    let workers = if active {
        Vec::new()
    } else {
        match config::read_workers(conf_dir) {
            Ok(w) => w,
            Err(e) => return fail(&e.to_string(), 2),
        }
    };
    if masters.is_empty() {
        return fail(
            &format!(
                "{}/masters lists no JobManager: expected lines like 'localhost:8081'",
                conf_dir.display()
            ),
            2,
        );
    }
    if masters.len() > 1 && config.ha_mode() == eddy_core::config::HaMode::None {
        return fail(
            &format!("{}/masters lists {} JobManagers, but standby JobManagers need high-availability: zookeeper (with high-availability.type none, list one)", conf_dir.display(), masters.len()),
            2,
        );
    }
    for host in masters
        .iter()
        .map(|(h, _)| h.as_str())
        .chain(workers.iter().map(|h| h.as_str()))
    {
        if !is_local_host(host) {
            return fail(&format!("host '{host}' in {}: eddy cluster starts processes on this host only (use localhost)", conf_dir.display()), 2);
        }
    }
    let log_dir = config.log_dir();
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        return fail(
            &format!("cannot create log directory {}: {e}", log_dir.display()),
            2,
        );
    }
    let running: Vec<Managed> = managed(&log_dir)
        .into_iter()
        .filter(|p| alive(p.pid))
        .collect();
    if !running.is_empty() {
        return fail(&format!("a cluster is already running from {} ({} processes): run `eddy cluster stop` first", log_dir.display(), running.len()), 2);
    }
    let mut procs = Vec::new();
    let attempts = config.jobmanager_restart_attempts();
    for (i, (host, port)) in masters.iter().enumerate() {
        let extra = vec![format!("rest.port={port}"), format!("rest.address={host}")];
        let started = if attempts > 0 {
            // A supervisor process restarts the JobManager when it dies.
            spawn_supervisor(i, conf_dir, &log_dir, host, *port).and_then(|s| {
                procs.push(s);
                wait_for_pid_file(&log_dir, i)
            })
        } else {
            spawn(
                "jobmanager",
                i,
                conf_dir,
                &extra,
                &log_dir,
                &format!("{host}:{port}"),
            )
        };
        match started {
            Ok(p) => procs.push(p),
            Err(e) => {
                abort_start(&procs, &log_dir);
                return fail(&e, 1);
            }
        }
    }
    for (i, host) in workers.iter().enumerate() {
        match spawn(
            "taskmanager",
            i,
            conf_dir,
            &[format!(
                "taskmanager.host={}",
                if host == "localhost" {
                    "127.0.0.1"
                } else {
                    host
                }
            )],
            &log_dir,
            host,
        ) {
            Ok(p) => procs.push(p),
            Err(e) => {
                abort_start(&procs, &log_dir);
                return fail(&e, 1);
            }
        }
    }
    let expected = if active {
        config.active_taskmanagers() as usize
    } else {
        workers.len()
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(dead) = procs.iter().find(|p| !alive(p.pid)) {
            let why = last_error(&log_dir, dead.role, dead.index);
            abort_start(&procs, &log_dir);
            return fail(
                &format!(
                    "{} {} (pid {}) exited during start-up: {why}",
                    dead.role, dead.index, dead.pid
                ),
                1,
            );
        }
        // The leader answers 200; standbys answer 503 naming it.
        let leader = masters.iter().find_map(|(h, p)| {
            match client::request(
                &format!("{h}:{p}"),
                "GET",
                "/overview",
                None,
                Duration::from_secs(2),
            ) {
                Ok((200, v)) => Some((format!("{h}:{p}"), v)),
                _ => None,
            }
        });
        if let Some((rest, v)) = leader {
            if v["taskmanagers"].as_u64().unwrap_or(0) as usize >= expected {
                println!(
                    "Cluster started in {:.2} s: {} JobManager(s), {} TaskManager(s) registered; leader REST http://{rest}; logs in {}",
                    started.elapsed().as_secs_f64(),
                    masters.len(),
                    expected,
                    log_dir.display()
                );
                return 0;
            }
        }
        if Instant::now() > deadline {
            abort_start(&procs, &log_dir);
            return fail(
                &format!(
                    "the cluster did not come up within {START_TIMEOUT:?}: see the logs in {}",
                    log_dir.display()
                ),
                1,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stop(conf_dir: &Path) -> i32 {
    let config = match load(conf_dir) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let log_dir = config.log_dir();
    let procs = managed(&log_dir);
    if procs.is_empty() {
        println!("No cluster processes found in {}", log_dir.display());
        return 0;
    }
    // Supervisors first (they would restart a stopped JobManager), then TaskManagers, so jobs
    // are not failed over needlessly while the JobManager stops.
    let (sups, procs): (Vec<Managed>, Vec<Managed>) =
        procs.into_iter().partition(|p| p.role == "supervisor");
    stop_processes(&sups, &log_dir);
    let (mut tms, jms): (Vec<Managed>, Vec<Managed>) =
        procs.into_iter().partition(|p| p.role == "taskmanager");
    if config.resource_manager_mode() == ResourceManagerMode::Active {
        // The leader replaces a TaskManager that stops, so the JobManagers stop first; then
        // every TaskManager the pid files name now (one may have been started meanwhile).
        stop_processes(&jms, &log_dir);
        tms = managed(&log_dir)
            .into_iter()
            .filter(|p| p.role == "taskmanager")
            .collect();
        stop_processes(&tms, &log_dir);
    } else {
        stop_processes(&tms, &log_dir);
        stop_processes(&jms, &log_dir);
    }
    println!(
        "Stopped {} TaskManager(s) and {} JobManager(s)",
        tms.len(),
        jms.len()
    );
    0
}

/// `eddy cluster status`. With `--json` it prints exactly one JSON object on stdout at every
/// moment: `{"leader": REST address or null, "error": null or why there is no leader,
/// "processes": [...], "overview": the leader's /overview or null}` (a bad configuration gives
/// `processes: []` and the error). The exit code is 0 unless the configuration cannot be read:
/// a cluster without leader is a state to report, not a failure of the command.
pub fn status(conf_dir: &Path, json_out: bool) -> i32 {
    let config = match load(conf_dir) {
        Ok(c) => c,
        Err(e) => {
            if json_out {
                println!(
                    "{}",
                    json!({"leader": null, "error": e, "processes": [], "overview": null})
                );
            }
            return fail(&e, 2);
        }
    };
    let log_dir = config.log_dir();
    let procs = managed(&log_dir);
    let mut rows: Vec<Value> = Vec::new();
    let mut overview = Value::Null;
    let mut leader = Value::Null;
    for p in &procs {
        let state = if !alive(p.pid) {
            "dead".to_string()
        } else if p.role == "jobmanager" {
            match client::request(&p.address, "GET", "/overview", None, Duration::from_secs(2)) {
                Ok((200, v)) => {
                    if overview.is_null() {
                        overview = v;
                        leader = json!(p.address);
                    }
                    "leader".to_string()
                }
                Ok((503, _)) => "standby".to_string(),
                Ok((code, _)) => format!("answering {code}"),
                Err(_) => "starting".to_string(),
            }
        } else {
            "running".to_string()
        };
        rows.push(json!({"role": p.role, "pid": p.pid, "address": p.address, "state": state}));
    }
    let error = if !leader.is_null() {
        Value::Null
    } else if procs.iter().any(|p| p.role == "jobmanager") {
        json!("no JobManager leads: none of this cluster's JobManagers answers as leader")
    } else {
        json!(format!(
            "no JobManager leads: no JobManager process found in {}",
            log_dir.display()
        ))
    };
    if json_out {
        println!(
            "{}",
            json!({"leader": leader, "error": error, "processes": rows, "overview": overview})
        );
        return 0;
    }
    if procs.is_empty() {
        println!("No cluster processes found in {}", log_dir.display());
        return 0;
    }
    for r in &rows {
        println!(
            "{:<12} pid {:<8} {:<22} {}",
            r["role"].as_str().unwrap_or(""),
            r["pid"],
            r["address"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or("")
        );
    }
    if !overview.is_null() {
        println!(
            "TaskManagers registered: {}, slots: {} total, {} available; jobs running: {}",
            overview["taskmanagers"],
            overview["slots-total"],
            overview["slots-available"],
            overview["jobs-running"]
        );
    } else if let Some(e) = error.as_str() {
        println!(
            "{}",
            e.replacen("no JobManager leads", "No JobManager leads", 1)
        );
    }
    0
}
