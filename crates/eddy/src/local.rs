//! `eddy local`: one JobManager and N TaskManagers in this process — the same components a
//! cluster runs, talking over real TCP on 127.0.0.1 — then submit the job, show its progress,
//! and print a summary when it ends. Ctrl-C cancels the job cleanly.

use crate::cli::{fail, JobOptions};
use eddy_cluster::{jobmanager, taskmanager, JobDetails, JobStatus};
use eddy_core::config;
use eddy_runtime::registry::{JobRegistry, JobSpec};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sets up logging to stderr: `EDDY_LOG` / `RUST_LOG` (default `default_level`).
pub fn init_logging(default_level: &str) {
    let filter = std::env::var("EDDY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_level.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

pub fn run(registry: JobRegistry, opts: JobOptions) -> i32 {
    init_logging("warn");
    let loaded = match config::load(opts.conf_dir.as_deref(), &opts.overrides) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string(), 2),
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let mut config = loaded.config;
    // The same rule as a cluster: test hooks need eddy.test-hooks.enabled (docs/security.md).
    if let Err(e) = eddy_core::faultpoint::enable(config.test_hooks_enabled()) {
        return fail(&e, 2);
    }
    let parallelism = opts
        .parallelism
        .unwrap_or_else(|| config.default_parallelism());
    let taskmanagers = opts.taskmanagers.unwrap_or(2);
    let slots = opts.slots.unwrap_or_else(|| {
        if config.get("taskmanager.numberOfTaskSlots").is_some() {
            config.slots_per_taskmanager()
        } else {
            parallelism.div_ceil(taskmanagers).max(1)
        }
    });
    config.set("taskmanager.numberOfTaskSlots", &slots.to_string());
    let spec = JobSpec {
        name: opts.job.clone(),
        args: opts.job_args.clone(),
        config: config.clone(),
        parallelism,
    };
    // Validate the job (name, arguments, inputs, outputs) before starting anything.
    if let Err(e) = registry.build(&spec) {
        return fail(&e.to_string(), 2);
    }
    let registry = Arc::new(registry);
    let jm = match jobmanager::start(config.clone(), registry.clone(), "127.0.0.1", 0) {
        Ok(jm) => jm,
        Err(e) => return fail(&e, 1),
    };
    let mut tms = Vec::new();
    for _ in 0..taskmanagers {
        match taskmanager::start(&config, registry.clone(), jm.rpc_address.clone()) {
            Ok(tm) => tms.push(tm),
            Err(e) => {
                jm.shutdown();
                return fail(&e, 1);
            }
        }
    }
    let code = follow(&jm, spec, taskmanagers, slots, opts.json);
    for tm in &tms {
        tm.shutdown();
    }
    jm.shutdown();
    code
}

fn follow(
    jm: &eddy_cluster::JobManagerHandle,
    spec: JobSpec,
    taskmanagers: u32,
    slots: u32,
    json: bool,
) -> i32 {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    // Wait for the TaskManagers to register so the job does not wait for slots needlessly.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if jm
            .taskmanagers()
            .map(|t| t.len() as u32 >= taskmanagers)
            .unwrap_or(false)
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let job_name = spec.name.clone();
    let id = match jm.submit(spec) {
        Ok(id) => id,
        Err(e) => return fail(&e, 2),
    };
    eprintln!("Job {id} ({job_name}) submitted to a local cluster of {taskmanagers} TaskManagers x {slots} slots");
    follow_job(
        &|| {
            jm.details(id)
                .and_then(|d| d.ok_or_else(|| format!("job {id} vanished from the JobManager")))
        },
        &interrupted,
        Some(&|| {
            eprintln!("\nCanceling job {id} (Ctrl-C)...");
            let _ = jm.cancel(id);
        }),
        json,
    )
}

/// Shows a job's progress until it ends, then prints the summary; returns the exit code.
/// On Ctrl-C: `on_interrupt` (cancel, for `eddy local`), or detach when there is none.
pub(crate) fn follow_job(
    fetch: &dyn Fn() -> Result<JobDetails, String>,
    interrupted: &AtomicBool,
    on_interrupt: Option<&dyn Fn()>,
    json: bool,
) -> i32 {
    let tty = std::io::stderr().is_terminal();
    let mut progress = Progress::new(tty);
    let mut canceled_by_user = false;
    let mut failures = 0;
    let details = loop {
        if interrupted.swap(false, Ordering::SeqCst) && !canceled_by_user {
            match on_interrupt {
                Some(cancel) => {
                    canceled_by_user = true;
                    cancel();
                }
                None => {
                    progress.finish();
                    eprintln!("Stopped following the job; it keeps running (cancel it with `eddy cancel JOBID`).");
                    return 0;
                }
            }
        }
        let d = match fetch() {
            Ok(d) => {
                failures = 0;
                d
            }
            Err(e) => {
                // A JobManager fail-over makes the job unreachable for a moment.
                failures += 1;
                if failures > 50 {
                    return fail(&e, 1);
                }
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        progress.show(&d);
        if d.status.is_globally_terminal() {
            break d;
        }
        std::thread::sleep(Duration::from_millis(if tty { 200 } else { 100 }));
    };
    progress.finish();
    summarize(&details, json, canceled_by_user)
}

/// Prints the end-of-job summary; the exit code is 0 only for FINISHED or a user's cancel.
pub fn summarize(d: &JobDetails, json: bool, canceled_by_user: bool) -> i32 {
    if d.status == JobStatus::Failed {
        let task = d
            .exceptions
            .last()
            .and_then(|e| e.task_name.as_ref())
            .map(|t| format!(" (in {t})"))
            .unwrap_or_default();
        let cause = d
            .status_reason
            .clone()
            .or_else(|| d.exceptions.last().map(|e| e.exception.clone()))
            .unwrap_or_default();
        eprintln!("Root cause: {cause}{task}");
    }
    let line = format!(
        "Job {} ({}) {} in {:.2} s, {} restarts, {} completed checkpoints",
        d.job_id,
        d.name,
        d.status,
        d.duration_ms as f64 / 1000.0,
        d.restarts,
        d.completed_checkpoints
    );
    if json {
        eprintln!("{line}");
        let failure = if d.status == JobStatus::Failed {
            d.status_reason
                .clone()
                .or_else(|| d.exceptions.last().map(|e| e.exception.clone()))
        } else {
            None
        };
        println!(
            "{}",
            serde_json::json!({
                "job_id": d.job_id, "name": d.name, "status": d.status.name(), "duration_ms": d.duration_ms,
                "restarts": d.restarts, "completed_checkpoints": d.completed_checkpoints,
                "failed_checkpoints": d.failed_checkpoints, "failure": failure, "checkpoints": d.checkpoints,
                "recoveries": d.recoveries.iter().map(eddy_rest::recoveries::recovery_json).collect::<Vec<_>>(),
                "vertices": d.vertices.iter().map(|v| serde_json::json!({
                    "name": v.name, "parallelism": v.parallelism, "subtask_deployments": v.subtask_deployments,
                })).collect::<Vec<_>>(),
            })
        );
    } else {
        println!("{line}");
    }
    match d.status {
        JobStatus::Finished => 0,
        JobStatus::Canceled if canceled_by_user => 0,
        _ => 1,
    }
}

/// Without a terminal, a plain progress line at least this often (and at each status change).
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(2);

/// The progress display: one line (job state, records/s, last checkpoint, restarts, each
/// vertex), rewritten in place on a terminal with `\r`; on a pipe, a plain line per status
/// change and every [`PLAIN_LINE_INTERVAL`].
struct Progress {
    tty: bool,
    last_status: Option<JobStatus>,
    last_line_len: usize,
    seen_exceptions: usize,
    seen_checkpoints: u64,
    /// The sources' records out at the previous sample, and when.
    last_sample: Option<(std::time::Instant, u64)>,
    /// Records per second out of the sources, over the last sample interval.
    rate: Option<f64>,
    last_plain_line: Option<std::time::Instant>,
}

/// What the sources emitted: the records out of the vertices that read no records (a vertex
/// that reads nothing is a source); if there is none, every vertex's records in.
fn source_records(d: &JobDetails) -> u64 {
    let sources: u64 = d
        .vertices
        .iter()
        .filter(|v| v.records_in == 0)
        .map(|v| v.records_out)
        .sum();
    if sources > 0 {
        sources
    } else {
        d.vertices.iter().map(|v| v.records_in).sum()
    }
}

/// `last checkpoint #ID Ns ago`, or `no checkpoint yet`.
fn last_checkpoint(d: &JobDetails) -> String {
    let latest = d
        .checkpoints
        .as_ref()
        .and_then(|c| c.get("latest_completed"))
        .filter(|v| !v.is_null());
    match latest {
        Some(l) => {
            let id = l.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
            let end = l.get("end_timestamp_ms").and_then(|v| v.as_i64());
            match end {
                Some(end) => {
                    let ago = (eddy_runtime::data::now_millis() - end).max(0);
                    format!("last checkpoint #{id} {:.1}s ago", ago as f64 / 1000.0)
                }
                None => format!("last checkpoint #{id}"),
            }
        }
        None if d.completed_checkpoints > 0 => {
            format!("{} checkpoints", d.completed_checkpoints)
        }
        None => "no checkpoint yet".into(),
    }
}

impl Progress {
    fn new(tty: bool) -> Self {
        Progress {
            tty,
            last_status: None,
            last_line_len: 0,
            seen_exceptions: 0,
            seen_checkpoints: 0,
            last_sample: None,
            rate: None,
            last_plain_line: None,
        }
    }

    /// Updates the records/s estimate from the sources' counters.
    fn sample(&mut self, d: &JobDetails) {
        let now = std::time::Instant::now();
        let records = source_records(d);
        if let Some((at, before)) = self.last_sample {
            let secs = now.duration_since(at).as_secs_f64();
            if secs < 0.5 {
                return;
            }
            // A restart resets the counters: no rate for that interval.
            self.rate = (records >= before).then(|| (records - before) as f64 / secs);
        }
        self.last_sample = Some((now, records));
    }

    /// Prints a line above the progress line (restarts, checkpoints).
    fn event(&mut self, text: &str) {
        if self.tty {
            eprint!("\r{}\r", " ".repeat(self.last_line_len));
            self.last_line_len = 0;
        }
        eprintln!("{text}");
    }

    fn show(&mut self, d: &JobDetails) {
        for e in d.exceptions.iter().skip(self.seen_exceptions) {
            let task = e
                .task_name
                .as_deref()
                .map(|t| format!(" in {t}"))
                .unwrap_or_default();
            let tm = e
                .taskmanager
                .as_deref()
                .map(|t| format!(" on {t}"))
                .unwrap_or_default();
            self.event(&format!("! failure{task}{tm}: {}", e.exception));
        }
        self.seen_exceptions = d.exceptions.len();
        if d.completed_checkpoints > self.seen_checkpoints {
            let latest = d
                .checkpoints
                .as_ref()
                .and_then(|c| c.get("latest_completed"))
                .filter(|v| !v.is_null());
            let detail = latest
                .map(|l| {
                    let id = l.get("id").and_then(|v| v.as_u64()).unwrap_or(0);
                    let size = l.get("state_size").and_then(|v| v.as_u64()).unwrap_or(0);
                    let start = l
                        .get("trigger_timestamp_ms")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(0);
                    let dur = l
                        .get("end_timestamp_ms")
                        .and_then(|v| v.as_u64())
                        .unwrap_or(start)
                        .saturating_sub(start);
                    format!("checkpoint {id} completed ({size} bytes, {dur} ms)")
                })
                .unwrap_or_else(|| "checkpoint completed".into());
            self.event(&format!(
                "  {detail}; {} completed so far",
                d.completed_checkpoints
            ));
            self.seen_checkpoints = d.completed_checkpoints;
        }
        if d.restarts > 0
            && self.last_status == Some(JobStatus::Restarting)
            && d.status == JobStatus::Running
        {
            self.event(&format!("  job RUNNING again after restart {}", d.restarts));
        }
        let verts: Vec<String> = d
            .vertices
            .iter()
            .map(|v| {
                format!(
                    "{} [{}x{}] in {} out {}",
                    short(&v.name),
                    v.status,
                    v.parallelism,
                    human(v.records_in),
                    human(v.records_out)
                )
            })
            .collect();
        self.sample(d);
        let rate = match self.rate {
            Some(r) if d.status == JobStatus::Running => human(r.round() as u64),
            _ => "-".into(),
        };
        let line = format!(
            "{} {:>6.1}s {rate} records/s, {}, restarts {} | {}",
            d.status,
            d.duration_ms as f64 / 1000.0,
            last_checkpoint(d),
            d.restarts,
            verts.join(" | ")
        );
        if self.tty {
            let pad = self.last_line_len.saturating_sub(line.len());
            eprint!("\r{line}{}", " ".repeat(pad));
            let _ = std::io::stderr().flush();
            self.last_line_len = line.len();
        } else if self.last_status != Some(d.status)
            || self
                .last_plain_line
                .is_none_or(|t| t.elapsed() >= PLAIN_LINE_INTERVAL)
        {
            eprintln!("{line}");
            self.last_plain_line = Some(std::time::Instant::now());
        }
        if self.last_status != Some(d.status) {
            if let Some(r) = &d.status_reason {
                if d.status == JobStatus::Created {
                    eprintln!("{}{r}", if self.tty { "\n" } else { "" });
                }
            }
        }
        self.last_status = Some(d.status);
    }

    fn finish(&mut self) {
        if self.tty {
            eprintln!();
        }
    }
}

fn short(name: &str) -> String {
    if name.len() <= 40 {
        name.to_string()
    } else {
        format!(
            "{}...",
            &name[..name
                .char_indices()
                .nth(37)
                .map(|(i, _)| i)
                .unwrap_or(name.len())]
        )
    }
}

fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}
