//! `eddy run`, `eddy list`, `eddy cancel`: clients of a cluster's REST API.
//!
//! The JobManager is found through `-m HOST:PORT`; else, with high availability, the leader
//! ZooKeeper names (never a guessed address: during an election there is none, and the command
//! says so); else the configuration's `rest.address:rest.port`. A standby's 503 naming the
//! leader is followed once. `list --json` prints one JSON object on stdout whatever happens.

use crate::cli::{fail, JobOptions};
use crate::local::follow_job;
use eddy_cluster::JobDetails;
use eddy_core::config::{self, Config};
use eddy_rest::client;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn load(conf_dir: Option<&Path>, overrides: &[String]) -> Result<Config, String> {
    let l = config::load(conf_dir, overrides).map_err(|e| e.to_string())?;
    for w in &l.warnings {
        eprintln!("warning: {w}");
    }
    // Every REST call of this command sends the cluster's bearer token, if it has one.
    client::set_bearer_token(eddy_rest::auth::read_token(&l.config)?);
    // ... and speaks TLS when security.ssl.rest.enabled is true.
    client::set_tls(eddy_core::tls::rest_client_config(&l.config)?);
    Ok(l.config)
}

/// `-m`, else the leader found through ZooKeeper (HA), else the configured REST address. With
/// HA and no leader (an election under way, ZooKeeper unreachable) the error says so.
fn jobmanager(m: Option<&str>, config: &Config) -> Result<String, String> {
    if let Some(m) = m {
        return Ok(m.to_string());
    }
    match eddy_cluster::ha::Ha::connect(config) {
        Ok(None) => Ok(format!("{}:{}", config.rest_address(), config.rest_port())),
        Ok(Some(ha)) => match ha.current_leader() {
            Ok(Some((leader, _))) => Ok(leader.rest),
            Ok(None) => Err(format!(
                "{NO_LEADER}: ZooKeeper names no leader (an election may be under way)"
            )),
            Err(e) => Err(format!("{NO_LEADER} that ZooKeeper can name: {e}")),
        },
        Err(e) => Err(format!("{NO_LEADER} that ZooKeeper can name: {e}")),
    }
}

/// The start of every "no leader" error, so scripts can match it.
pub const NO_LEADER: &str = "no JobManager leads";

fn error_text(code: u16, v: &Value) -> String {
    v["errors"]
        .as_array()
        .and_then(|e| e.first())
        .and_then(|e| e.as_str())
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("the JobManager answered HTTP {code}"))
}

/// Sends a request; a non-2xx answer becomes its first error message.
fn call(jm: &str, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    call_leader(jm, method, path, body).map(|(_, v)| v)
}

/// [`call`], following a standby's 503 to the leader it names (once). Returns the address that
/// answered and its answer.
fn call_leader(
    jm: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(String, Value), String> {
    let (code, v) = client::request(jm, method, path, body, TIMEOUT)?;
    if (200..300).contains(&code) {
        return Ok((jm.to_string(), v));
    }
    if code == 503 {
        if let Some(leader) = v["leader"].as_str().filter(|l| *l != jm) {
            let (code, v) = client::request(leader, method, path, body, TIMEOUT)?;
            if (200..300).contains(&code) {
                return Ok((leader.to_string(), v));
            }
            return Err(error_text(code, &v));
        }
        if v["errors"].is_array() && v.get("leader").is_some() {
            return Err(format!("{NO_LEADER}: {}", error_text(code, &v)));
        }
    }
    Err(error_text(code, &v))
}

pub fn run(o: JobOptions) -> i32 {
    let config = match load(o.conf_dir.as_deref(), &[]) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    // The job's -D keys are checked here, before anything is submitted (the JobManager checks
    // them again against its own configuration).
    match config::load_from(None, &o.overrides) {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("warning: {w}");
            }
        }
        Err(e) => return fail(&e.to_string(), 2),
    }
    let jm = match jobmanager(o.jobmanager.as_deref(), &config) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    let mut overrides = serde_json::Map::new();
    for d in &o.overrides {
        match d.split_once('=') {
            Some((k, v)) => {
                overrides.insert(k.trim().to_string(), json!(v.trim()));
            }
            None => return fail(&format!("invalid -D '{d}': expected key=value"), 2),
        }
    }
    let mut body = json!({ "job": o.job, "args": o.job_args, "config": overrides });
    if let Some(p) = o.parallelism {
        body["parallelism"] = json!(p);
    }
    if let Some(s) = &o.savepoint {
        // The JobManager runs elsewhere: a relative path means this shell's directory.
        body["savepointPath"] = json!(absolute_unless_uri(s));
    }
    if o.allow_non_restored_state {
        body["allowNonRestoredState"] = json!(true);
    }
    if let Some(mode) = &o.claim_mode {
        if o.savepoint.is_none() {
            return fail(
                &format!("--claimMode '{mode}' needs -s/--fromSavepoint PATH: it says who owns the snapshot the job restores from"),
                2,
            );
        }
        body["config"]["execution.state-recovery.claim-mode"] = json!(mode);
    }
    let id = match call(&jm, "POST", "/jobs", Some(&body)) {
        Ok(v) => match v["jobid"].as_str() {
            Some(id) => id.to_string(),
            None => return fail(&format!("the JobManager at {jm} returned no job id"), 1),
        },
        Err(e) => return fail(&e, 2),
    };
    if o.detached {
        println!("{id}");
        return 0;
    }
    eprintln!("Job {id} ({}) submitted to the JobManager at {jm}", o.job);
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    let path = format!("/jobs/{id}/eddy-details");
    let fetch = || -> Result<JobDetails, String> {
        let v = call(&jm, "GET", &path, None)?;
        serde_json::from_value(v).map_err(|e| format!("unexpected job details from {jm}: {e}"))
    };
    follow_job(&fetch, &interrupted, None, o.json)
}

/// The leader's `/jobs/overview`: (the address that answered, the answer); on failure the one-line
/// reason and the exit code.
fn jobs_overview(
    conf_dir: Option<&Path>,
    m: Option<&str>,
) -> Result<(String, Value), (String, i32)> {
    let config = load(conf_dir, &[]).map_err(|e| (e, 2))?;
    let jm = jobmanager(m, &config).map_err(|e| (e, 1))?;
    call_leader(&jm, "GET", "/jobs/overview", None).map_err(|e| (e, 1))
}

/// `eddy list`. With `--json` it prints exactly one JSON object on stdout, also on failure:
/// `{"leader": ADDRESS, "jobs": [...]}`, or `{"leader": null, "error": "...", "jobs": null}` and
/// a non-zero exit code (e.g. while no JobManager leads).
pub fn list(conf_dir: Option<&Path>, m: Option<&str>, all: bool, json_out: bool) -> i32 {
    let (leader, v) = match jobs_overview(conf_dir, m) {
        Ok(answer) => answer,
        Err((e, code)) => {
            if json_out {
                println!("{}", json!({ "leader": null, "error": e, "jobs": null }));
            }
            return fail(&e, code);
        }
    };
    let terminal = |j: &Value| {
        matches!(
            j["state"].as_str(),
            Some("FINISHED" | "FAILED" | "CANCELED")
        )
    };
    if json_out {
        let jobs: Vec<&Value> = v["jobs"]
            .as_array()
            .map(|a| a.iter().filter(|j| all || !terminal(j)).collect())
            .unwrap_or_default();
        println!("{}", json!({ "leader": leader, "jobs": jobs }));
        return 0;
    }
    let jobs = v["jobs"].as_array().cloned().unwrap_or_default();
    let shown: Vec<&Value> = jobs.iter().filter(|j| all || !terminal(j)).collect();
    if shown.is_empty() {
        println!("No {}jobs.", if all { "" } else { "running or scheduled " });
        return 0;
    }
    for j in shown {
        println!(
            "{}  {:<10} {:<24} {:>8.1}s",
            j["jid"].as_str().unwrap_or("?"),
            j["state"].as_str().unwrap_or("?"),
            j["name"].as_str().unwrap_or("?"),
            j["duration"].as_i64().unwrap_or(0) as f64 / 1000.0
        );
    }
    0
}

pub fn cancel(conf_dir: Option<&Path>, m: Option<&str>, job: &str) -> i32 {
    if let Err(e) = eddy_core::JobId::parse(job) {
        return fail(&e, 2);
    }
    let config = match load(conf_dir, &[]) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let jm = match jobmanager(m, &config) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    match call(&jm, "PATCH", &format!("/jobs/{job}?mode=cancel"), None) {
        Ok(_) => {
            println!("Cancellation of job {job} requested.");
            0
        }
        Err(e) => fail(&e, 1),
    }
}

/// `eddy savepoint JOBID [DIR]` and `eddy stop JOBID [--savepoint-path DIR] [--drain]`: triggers
/// the operation over REST, polls it until it completes, prints the savepoint's path.
pub fn savepoint(
    conf_dir: Option<&Path>,
    m: Option<&str>,
    job: &str,
    dir: Option<&str>,
    stop: bool,
    drain: bool,
) -> i32 {
    if let Err(e) = eddy_core::JobId::parse(job) {
        return fail(&e, 2);
    }
    let config = match load(conf_dir, &[]) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let jm = match jobmanager(m, &config) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    // The JobManager runs elsewhere: a relative directory means this shell's.
    let dir = dir.map(absolute_unless_uri);
    let (path, body) = if stop {
        (
            format!("/jobs/{job}/stop"),
            json!({ "targetDirectory": dir, "drain": drain }),
        )
    } else {
        (
            format!("/jobs/{job}/savepoints"),
            json!({ "target-directory": dir, "cancel-job": false }),
        )
    };
    let trigger = match call(&jm, "POST", &path, Some(&body)) {
        Ok(v) => match v["request-id"].as_str() {
            Some(t) => t.to_string(),
            None => return fail(&format!("the JobManager at {jm} returned no request id"), 1),
        },
        Err(e) => return fail(&e, 1),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    loop {
        match call(
            &jm,
            "GET",
            &format!("/jobs/{job}/savepoints/{trigger}"),
            None,
        ) {
            Ok(v) if v["status"]["id"] == "COMPLETED" => {
                if let Some(location) = v["operation"]["location"].as_str() {
                    println!("{location}");
                    return 0;
                }
                let cause = v["operation"]["failure-cause"]["stack-trace"]
                    .as_str()
                    .unwrap_or("unknown cause");
                return fail(&format!("the savepoint of job {job} failed: {cause}"), 1);
            }
            Ok(_) => {}
            Err(e) => return fail(&e, 1),
        }
        if std::time::Instant::now() > deadline {
            return fail(
                &format!(
                    "the savepoint of job {job} did not complete within 600 s (trigger {trigger})"
                ),
                1,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A path relative to this shell's directory made absolute; a URI (`s3://…`, `file://…`) as is.
fn absolute_unless_uri(path: &str) -> String {
    if path.contains("://") {
        return path.to_string();
    }
    std::path::absolute(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string())
}

/// `eddy savepoint --dispose PATH`.
pub fn dispose_savepoint(conf_dir: Option<&Path>, m: Option<&str>, path: &str) -> i32 {
    let config = match load(conf_dir, &[]) {
        Ok(c) => c,
        Err(e) => return fail(&e, 2),
    };
    let jm = match jobmanager(m, &config) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    let path = absolute_unless_uri(path);
    let trigger = match call(
        &jm,
        "POST",
        "/savepoint-disposal",
        Some(&json!({ "savepoint-path": path })),
    ) {
        Ok(v) => v["request-id"].as_str().unwrap_or_default().to_string(),
        Err(e) => return fail(&e, 1),
    };
    match call(&jm, "GET", &format!("/savepoint-disposal/{trigger}"), None) {
        Ok(v) => match v["operation"]["failure-cause"]["stack-trace"].as_str() {
            Some(cause) => fail(cause, 1),
            None => {
                println!("Disposed of savepoint {path}.");
                0
            }
        },
        Err(e) => fail(&e, 1),
    }
}
