//! The command line: parses arguments, loads configuration, and dispatches to the commands.
//! Every failure ends in one line on stderr and a non-zero exit code.

use clap::{Parser, Subcommand};
use eddy_runtime::registry::JobRegistry;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "eddy",
    version,
    about = "Eddy: a distributed stream processor that survives failure"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run JOB on an embedded mini-cluster (one JobManager, N TaskManagers) until it ends or Ctrl-C.
    ///
    /// Usage: eddy local JOB [JOB-ARGS] [--taskmanagers N] [--slots N] [-p N] [-D key=value] [--conf DIR] [--json]
    /// Eddy's options may appear anywhere after JOB; everything else is passed to the job.
    #[command(disable_help_flag = true)]
    Local {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "JOB [ARGS]"
        )]
        args: Vec<String>,
    },
    /// Submit JOB to a running cluster (REST); follow it until it ends unless -d.
    ///
    /// Usage: eddy run JOB [JOB-ARGS] [-m HOST:PORT] [-p N] [-s SAVEPOINT] [--allow-non-restored-state] [-d] [-D key=value] [--conf DIR] [--json]
    #[command(disable_help_flag = true)]
    Run {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "JOB [ARGS]"
        )]
        args: Vec<String>,
    },
    /// List the cluster's jobs (running and scheduled; --all for every job).
    List {
        /// The JobManager's REST address (default: rest.address:rest.port).
        #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        #[arg(long)]
        all: bool,
        /// Print one JSON object, also on failure: {"leader", "jobs"} or {"leader": null, "error", "jobs": null}.
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// Cancel a job.
    Cancel {
        #[arg(value_name = "JOBID")]
        job: String,
        #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// Trigger a savepoint of a running job and print its path (the job keeps running), or
    /// dispose of a savepoint with --dispose PATH.
    ///
    /// Usage: eddy savepoint JOBID [DIR]   |   eddy savepoint --dispose PATH
    Savepoint {
        #[arg(value_name = "JOBID", required_unless_present = "dispose")]
        job: Option<String>,
        /// Target directory (default: state.savepoints.dir of the cluster).
        #[arg(value_name = "DIR")]
        dir: Option<String>,
        /// Delete the savepoint at PATH instead.
        #[arg(long, value_name = "PATH", conflicts_with = "job")]
        dispose: Option<String>,
        #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// Stop a job with a savepoint (sources stop, final savepoint, sinks commit, FINISHED) and
    /// print the savepoint's path.
    Stop {
        #[arg(value_name = "JOBID")]
        job: String,
        /// Target directory (default: state.savepoints.dir of the cluster).
        #[arg(short = 'p', long = "savepoint-path", value_name = "DIR")]
        savepoint_path: Option<String>,
        /// Drain: sources emit the maximal watermark before the terminating savepoint, so every
        /// event-time window and timer fires (Flink's `stop --drain`).
        #[arg(short = 'd', long)]
        drain: bool,
        #[arg(short = 'm', long = "jobmanager", value_name = "HOST:PORT")]
        jobmanager: Option<String>,
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// List the jobs this binary can run, with their arguments.
    Jobs {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a JobManager in the foreground (leader or standby).
    Jobmanager(JobManagerArgs),
    /// Run a TaskManager in the foreground.
    Taskmanager(DaemonArgs),
    /// Start, stop or inspect a cluster on this host (from the configuration's masters and workers).
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Make TLS certificates (docs/security.md).
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
}

#[derive(Subcommand)]
enum CertAction {
    /// Write a self-signed CA (ca.pem, ca-key.pem) and a certificate/key for the cluster
    /// (cert.pem, key.pem; valid for 127.0.0.1, localhost and every --host) into DIR.
    Generate {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Another name or address the certificate is valid for (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
    },
}

#[derive(clap::Args)]
struct DaemonArgs {
    /// Configuration directory with config.yaml (default: $EDDY_CONF_DIR).
    #[arg(long, value_name = "DIR")]
    conf: Option<PathBuf>,
    /// Set a configuration key (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE")]
    define: Vec<String>,
}

#[derive(clap::Args)]
struct JobManagerArgs {
    #[command(flatten)]
    daemon: DaemonArgs,
    /// With high-availability: zookeeper, keep this JobManager's ZooKeeper session (id and
    /// password) in FILE (mode 0600), so that whoever sees the process exit can end the session
    /// at once with `eddy cluster close-session --session-file FILE` (docs/ha.md).
    #[arg(long, value_name = "FILE")]
    zk_session_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Start the JobManagers in `masters` and the TaskManagers in `workers`, in the background.
    Start {
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// Stop every process `cluster start` started.
    Stop {
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
    },
    /// Internal: runs JobManager INDEX and restarts it when it dies (started by `cluster start`).
    #[command(hide = true)]
    Supervise {
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
        #[arg(long)]
        index: usize,
        #[arg(long)]
        host: String,
        #[arg(long)]
        rest_port: u16,
    },
    /// End the ZooKeeper session a JobManager that has exited recorded with --zk-session-file,
    /// so a standby takes over at once (e.g. systemd's ExecStopPost; docs/ha.md).
    CloseSession {
        #[arg(long, value_name = "FILE")]
        session_file: PathBuf,
    },
    /// Roles, addresses, pids and states of the cluster's processes.
    Status {
        #[arg(long, value_name = "DIR")]
        conf: Option<PathBuf>,
        /// Print one JSON object, also when no JobManager leads or the configuration is bad.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `eddy local` / `eddy run` found among the job's arguments.
#[derive(Debug, Default, PartialEq)]
pub struct JobOptions {
    pub job: String,
    pub job_args: Vec<String>,
    pub taskmanagers: Option<u32>,
    pub slots: Option<u32>,
    pub parallelism: Option<u32>,
    pub overrides: Vec<String>,
    pub conf_dir: Option<PathBuf>,
    pub json: bool,
    pub help: bool,
    /// `run` only: `-m HOST:PORT`, `-d`, `-s PATH`, `--allow-non-restored-state`.
    pub jobmanager: Option<String>,
    pub detached: bool,
    pub savepoint: Option<String>,
    pub allow_non_restored_state: bool,
    /// `-cm/--claimMode MODE` (Flink 2.x; `-rm/--restoreMode` is its old name): who owns the
    /// snapshot `-s` restores from (`execution.state-recovery.claim-mode`).
    pub claim_mode: Option<String>,
}

/// Refuses the savepoint options of `eddy local` (its cluster ends with the job, so it neither
/// takes nor resumes savepoints; `eddy run -s` against a cluster does): a job must never start
/// from scratch when its user asked it to resume.
pub fn refuse_savepoint_options(o: &JobOptions) -> Result<(), String> {
    let why = "by `eddy local` (use `eddy run -s PATH` against a cluster)";
    if let Some(path) = &o.savepoint {
        return Err(format!(
            "-s/--fromSavepoint: '{path}' is not supported {why}; allowed: omit the option"
        ));
    }
    if o.allow_non_restored_state {
        return Err(format!(
            "--allow-non-restored-state is not supported {why}; allowed: omit the option"
        ));
    }
    if let Some(mode) = &o.claim_mode {
        return Err(format!(
            "--claimMode: '{mode}' is not supported {why}; allowed: omit the option"
        ));
    }
    Ok(())
}

fn number(flag: &str, v: Option<&String>) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("option {flag} needs a value"))?;
    match v.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "invalid value '{v}' for {flag}: expected an integer >= 1"
        )),
    }
}

/// Separates Eddy's options from the job's arguments.
pub fn parse_job_args(raw: &[String]) -> Result<JobOptions, String> {
    let mut o = JobOptions::default();
    let mut it = raw.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--taskmanagers" => o.taskmanagers = Some(number(a, it.next())?),
            "--slots" => o.slots = Some(number(a, it.next())?),
            "-p" | "--parallelism" => o.parallelism = Some(number(a, it.next())?),
            "-D" => o.overrides.push(it.next().ok_or("option -D needs key=value")?.clone()),
            "--conf" => o.conf_dir = Some(PathBuf::from(it.next().ok_or("option --conf needs a directory")?)),
            "--json" => o.json = true,
            "-m" | "--jobmanager" => o.jobmanager = Some(it.next().ok_or("option -m needs HOST:PORT")?.clone()),
            "-d" | "--detached" => o.detached = true,
            "-s" | "--fromSavepoint" => o.savepoint = Some(it.next().ok_or("option -s needs a savepoint path")?.clone()),
            "--allow-non-restored-state" | "--allowNonRestoredState" => o.allow_non_restored_state = true,
            "-cm" | "-claimMode" | "--claimMode" | "--claim-mode" | "-rm" | "--restoreMode" => o.claim_mode = Some(it.next().ok_or_else(|| format!("option {a} needs a mode: NO_CLAIM or CLAIM"))?.clone()),
            "-h" | "--help" => o.help = true,
            s if s.starts_with("-D") && s.len() > 2 => o.overrides.push(s[2..].to_string()),
            s if s.starts_with("--parallelism=") => o.parallelism = Some(number("--parallelism", Some(&s[14..].to_string()))?),
            s if o.job.is_empty() && !s.starts_with('-') => o.job = s.to_string(),
            s if o.job.is_empty() => return Err(format!("unexpected option '{s}' before the job name: usage: eddy local|run JOB [JOB-ARGS] [options]")),
            _ => o.job_args.push(a.clone()),
        }
    }
    Ok(o)
}

const LOCAL_HELP: &str = "Run JOB on an embedded mini-cluster until it ends (or Ctrl-C cancels it).

Usage: eddy local JOB [JOB-ARGS] [OPTIONS]

Options (anywhere after JOB):
  --taskmanagers N   TaskManagers to start (default 2)
  --slots N          slots per TaskManager (default: taskmanager.numberOfTaskSlots if set,
                     else enough for the job's parallelism)
  -p, --parallelism N  default parallelism (default: parallelism.default, 1)
  -D key=value       set a configuration key (repeatable)
  --conf DIR         configuration directory with config.yaml (default: $EDDY_CONF_DIR)
  --json             print the final summary as one JSON object on stdout

Run `eddy jobs` to see the jobs and their arguments.";

const RUN_HELP: &str =
    "Submit JOB to a running cluster and follow it until it ends (or print its id with -d).

Usage: eddy run JOB [JOB-ARGS] [OPTIONS]

Options (anywhere after JOB):
  -m, --jobmanager HOST:PORT  the JobManager's REST address (default: rest.address:rest.port
                              of the configuration)
  -p, --parallelism N         default parallelism (default: the cluster's parallelism.default)
  -s, --fromSavepoint PATH    resume from a savepoint directory, a retained checkpoint
                              directory, or its _metadata (operators matched by uid; another
                              parallelism rescales)
  --allow-non-restored-state  skip state of operators the job no longer has
  -cm, --claimMode MODE       who owns the snapshot -s restores from: NO_CLAIM (default: the
                              user; never deleted or modified) or CLAIM (the job; deleted once
                              its own retained checkpoints subsumed it)
  -d, --detached              print the job id and return
  -D key=value                set a configuration key for this job (repeatable)
  --conf DIR                  configuration directory (default: $EDDY_CONF_DIR)
  --json                      print the final summary as one JSON object on stdout

Ctrl-C stops following; the job keeps running.";

/// Runs the CLI with the given job registry; returns the process exit code.
pub fn main_with(registry: JobRegistry) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Jobs { json } => {
            print_jobs(&registry, json);
            0
        }
        Command::Local { args } => {
            let opts = match parse_job_args(&args) {
                Ok(o) => o,
                Err(e) => return fail(&e, 2),
            };
            if opts.help || opts.job.is_empty() {
                println!("{LOCAL_HELP}");
                return if opts.help { 0 } else { 2 };
            }
            if opts.jobmanager.is_some() || opts.detached {
                return fail("options -m and -d belong to `eddy run`; `eddy local` runs its own cluster in the foreground", 2);
            }
            if let Err(e) = refuse_savepoint_options(&opts) {
                return fail(&e, 2);
            }
            crate::local::run(registry, opts)
        }
        Command::Run { args } => {
            let opts = match parse_job_args(&args) {
                Ok(o) => o,
                Err(e) => return fail(&e, 2),
            };
            if opts.help || opts.job.is_empty() {
                println!("{RUN_HELP}");
                return if opts.help { 0 } else { 2 };
            }
            if opts.taskmanagers.is_some() || opts.slots.is_some() {
                return fail("options --taskmanagers and --slots belong to `eddy local`; a cluster's TaskManagers come from its configuration", 2);
            }
            crate::remote::run(opts)
        }
        Command::List {
            jobmanager,
            all,
            json,
            conf,
        } => crate::remote::list(conf.as_deref(), jobmanager.as_deref(), all, json),
        Command::Cancel {
            job,
            jobmanager,
            conf,
        } => crate::remote::cancel(conf.as_deref(), jobmanager.as_deref(), &job),
        Command::Savepoint {
            job,
            dir,
            dispose,
            jobmanager,
            conf,
        } => match (dispose, job) {
            (Some(path), _) => {
                crate::remote::dispose_savepoint(conf.as_deref(), jobmanager.as_deref(), &path)
            }
            (None, Some(job)) => crate::remote::savepoint(
                conf.as_deref(),
                jobmanager.as_deref(),
                &job,
                dir.as_deref(),
                false,
                false,
            ),
            (None, None) => fail("eddy savepoint needs a JOBID (or --dispose PATH)", 2),
        },
        Command::Stop {
            job,
            savepoint_path,
            drain,
            jobmanager,
            conf,
        } => crate::remote::savepoint(
            conf.as_deref(),
            jobmanager.as_deref(),
            &job,
            savepoint_path.as_deref(),
            true,
            drain,
        ),
        Command::Jobmanager(a) => crate::daemon::run_jobmanager(
            registry,
            a.daemon.conf,
            a.daemon.define,
            a.zk_session_file,
        ),
        Command::Taskmanager(a) => crate::daemon::run_taskmanager(registry, a.conf, a.define),
        Command::Cert {
            action: CertAction::Generate { dir, hosts },
        } => match crate::cert::generate(&dir, &hosts) {
            Ok(()) => {
                println!("{}", crate::cert::config_hint(&dir));
                0
            }
            Err(e) => fail(&e, 1),
        },
        Command::Cluster { action } => {
            let dir = |c: Option<PathBuf>| {
                c.or_else(|| std::env::var_os("EDDY_CONF_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("conf"))
            };
            match action {
                ClusterAction::Start { conf } => crate::cluster::start(&dir(conf)),
                ClusterAction::Stop { conf } => crate::cluster::stop(&dir(conf)),
                ClusterAction::Status { conf, json } => crate::cluster::status(&dir(conf), json),
                ClusterAction::CloseSession { session_file } => {
                    crate::cluster::close_session(&session_file)
                }
                ClusterAction::Supervise {
                    conf,
                    index,
                    host,
                    rest_port,
                } => crate::cluster::supervise(&dir(conf), index, &host, rest_port),
            }
        }
    }
}

/// Prints `error: <msg>` and returns the exit code.
pub fn fail(msg: &str, code: i32) -> i32 {
    eprintln!("error: {msg}");
    code
}

fn print_jobs(registry: &JobRegistry, json: bool) {
    if json {
        let jobs: Vec<serde_json::Value> = registry
            .jobs()
            .map(|j| serde_json::json!({"name": j.name, "description": j.description, "arguments": j.arguments}))
            .collect();
        println!("{}", serde_json::json!({ "jobs": jobs }));
        return;
    }
    for j in registry.jobs() {
        println!("{}\n    {}", j.name, j.description);
        for a in j.arguments {
            println!("      {a}");
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn eddy_options_are_found_anywhere_after_the_job() {
        let o = parse_job_args(&s(&[
            "sequence",
            "--keys",
            "10",
            "-p",
            "4",
            "--rate",
            "5",
            "-D",
            "a.b=1",
            "-Dc=2",
            "--taskmanagers",
            "3",
            "--json",
        ]))
        .unwrap();
        assert_eq!(o.job, "sequence");
        assert_eq!(o.job_args, s(&["--keys", "10", "--rate", "5"]));
        assert_eq!(o.parallelism, Some(4));
        assert_eq!(o.taskmanagers, Some(3));
        assert_eq!(o.overrides, s(&["a.b=1", "c=2"]));
        assert!(o.json);
    }

    #[test]
    fn savepoint_options_are_refused_not_ignored() {
        let o = parse_job_args(&s(&["sequence", "-s", "/tmp/sp-1"])).unwrap();
        let e = refuse_savepoint_options(&o).unwrap_err();
        assert!(
            e.contains("-s/--fromSavepoint: '/tmp/sp-1' is not supported by `eddy local`"),
            "{e}"
        );
        assert!(e.contains("eddy run -s") && !e.contains('\n'), "{e}");
        let o = parse_job_args(&s(&["sequence", "--allow-non-restored-state"])).unwrap();
        let e = refuse_savepoint_options(&o).unwrap_err();
        assert!(
            e.starts_with("--allow-non-restored-state is not supported by `eddy local`"),
            "{e}"
        );
        let o = parse_job_args(&s(&["sequence", "--keys", "3"])).unwrap();
        assert_eq!(refuse_savepoint_options(&o), Ok(()));
    }

    #[test]
    fn bad_numbers_name_the_option_and_value() {
        let e = parse_job_args(&s(&["sequence", "-p", "zero"])).unwrap_err();
        assert!(e.contains("'zero'") && e.contains("-p"), "{e}");
        assert!(parse_job_args(&s(&["sequence", "-p", "0"])).is_err());
    }
}
