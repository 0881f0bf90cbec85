//! End-to-end dataflow through real components: a JobManager and two TaskManagers in this
//! process, talking over TCP on 127.0.0.1 (keyed exchanges cross TaskManagers).

use eddy_cluster::{jobmanager, taskmanager, JobStatus};
use eddy_core::config::Config;
use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry, JobSpec};
use eddy_runtime::{Output, Result, Sink, Source, SourceStatus, StreamEnv, TaskInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Emits `(i % keys, 1)` for this subtask's share of `0..count`.
#[derive(Clone)]
struct Numbers {
    count: u64,
    keys: u64,
    next: u64,
    step: u64,
}

impl Source for Numbers {
    type Out = (u64, i64);
    fn open(
        &mut self,
        info: &TaskInfo,
        _r: Option<&eddy_runtime::snapshot::OperatorSnapshot>,
    ) -> Result<()> {
        self.next = info.subtask_index as u64;
        self.step = info.parallelism as u64;
        Ok(())
    }
    fn poll_next(&mut self, out: &mut Output<(u64, i64)>, max: usize) -> Result<SourceStatus> {
        for _ in 0..max {
            if self.next >= self.count {
                return Ok(SourceStatus::Finished);
            }
            out.push((self.next % self.keys, 1));
            self.next += self.step;
        }
        Ok(SourceStatus::More)
    }
}

/// Collected sink output per test tag.
type Results = Mutex<HashMap<String, Vec<(u64, i64)>>>;

fn results() -> &'static Results {
    static R: OnceLock<Results> = OnceLock::new();
    R.get_or_init(Default::default)
}

#[derive(Clone)]
struct Collect(String);

impl Sink for Collect {
    type In = (u64, i64);
    fn write_batch(&mut self, batch: &mut Vec<(u64, i64)>) -> Result<()> {
        results()
            .lock()
            .unwrap()
            .entry(self.0.clone())
            .or_default()
            .append(batch);
        Ok(())
    }
}

fn keyed_sum(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let count: u64 = args.number("count", 10_000, 1, u64::MAX)?;
    let tag = args.required("tag")?;
    let fail_at: u64 = args.number("fail-at", 0, 0, u64::MAX)?;
    env.add_source("Numbers", move || Numbers {
        count,
        keys: 10,
        next: 0,
        step: 1,
    })
    .map(move |r: (u64, i64)| {
        if fail_at > 0 && r.0 == 3 && r.1 == 1 && fail_at == 1 {
            panic!("injected failure");
        }
        r
    })
    .key_by(|r: &(u64, i64)| r.0)
    .sum(|r: &(u64, i64)| r.1)
    .sink_to("Collect", move || Collect(tag.clone()));
    Ok(())
}

fn registry() -> Arc<JobRegistry> {
    let mut r = JobRegistry::new();
    r.register(JobDefinition {
        name: "keyed-sum",
        description: "test",
        arguments: &[],
        build: keyed_sum,
    });
    Arc::new(r)
}

fn run_job(args: &[&str], parallelism: u32) -> eddy_cluster::JobDetails {
    let mut config = Config::default();
    config.set("taskmanager.numberOfTaskSlots", "2");
    let reg = registry();
    let jm = jobmanager::start(config.clone(), reg.clone(), "127.0.0.1", 0).unwrap();
    let tms: Vec<_> = (0..2)
        .map(|_| taskmanager::start(&config, reg.clone(), jm.rpc_address.clone()).unwrap())
        .collect();
    while jm.taskmanagers().unwrap().len() < 2 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let spec = JobSpec {
        name: "keyed-sum".into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        config,
        parallelism,
    };
    let id = jm.submit(spec).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let d = jm.details(id).unwrap().unwrap();
        if d.status.is_globally_terminal() || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for tm in &tms {
        tm.shutdown();
    }
    jm.shutdown();
    d
}

#[test]
fn keyed_sum_across_two_taskmanagers_counts_every_record_once() {
    let d = run_job(&["--count", "100000", "--tag", "p4"], 4);
    assert_eq!(d.status, JobStatus::Finished, "{d:?}");
    let out = results().lock().unwrap().remove("p4").unwrap();
    assert_eq!(out.len(), 100_000);
    let mut max: HashMap<u64, i64> = HashMap::new();
    for (k, s) in out {
        let m = max.entry(k).or_default();
        *m = (*m).max(s);
    }
    assert_eq!(max.len(), 10);
    assert!(max.values().all(|&v| v == 10_000), "{max:?}");
}

#[test]
fn a_panicking_operator_fails_the_job_with_its_message() {
    let d = run_job(&["--count", "1000", "--tag", "fail", "--fail-at", "1"], 2);
    assert_eq!(d.status, JobStatus::Failed);
    assert!(
        d.exceptions
            .iter()
            .any(|e| e.exception.contains("injected failure")),
        "{:?}",
        d.exceptions
    );
}

/// Memory stays bounded on a long-running JobManager: ended jobs are archived (only their final
/// details are kept) and evicted beyond `jobstore.max-capacity`, oldest first.
#[test]
fn ended_jobs_beyond_the_job_store_capacity_are_evicted_oldest_first() {
    let mut config = Config::default();
    config.set("taskmanager.numberOfTaskSlots", "2");
    config.set("jobstore.max-capacity", "2");
    let reg = registry();
    let jm = jobmanager::start(config.clone(), reg.clone(), "127.0.0.1", 0).unwrap();
    let tm = taskmanager::start(&config, reg.clone(), jm.rpc_address.clone()).unwrap();
    while jm.taskmanagers().unwrap().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut ids = Vec::new();
    for i in 0..4 {
        let tag = format!("evict-{i}");
        let id = jm
            .submit(JobSpec {
                name: "keyed-sum".into(),
                args: vec!["--count".into(), "100".into(), "--tag".into(), tag],
                config: config.clone(),
                parallelism: 1,
            })
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !jm
            .details(id)
            .unwrap()
            .is_some_and(|d| d.status.is_globally_terminal())
        {
            assert!(Instant::now() < deadline, "job {i} did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
        ids.push(id);
        std::thread::sleep(Duration::from_millis(30)); // distinct end times, and a tick
    }
    std::thread::sleep(Duration::from_millis(100));
    let listed: Vec<String> = jm.list().unwrap().into_iter().map(|d| d.job_id).collect();
    assert_eq!(listed.len(), 2, "capacity 2: {listed:?}");
    for old in &ids[..2] {
        assert!(
            jm.details(*old).unwrap().is_none(),
            "the oldest are evicted"
        );
    }
    for new in &ids[2..] {
        let d = jm.details(*new).unwrap().expect("the newest are kept");
        assert_eq!(d.status, JobStatus::Finished);
    }
    tm.shutdown();
    jm.shutdown();
}
