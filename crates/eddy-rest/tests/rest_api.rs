//! The REST API end to end: a real JobManager and TaskManagers in this process (TCP on
//! 127.0.0.1), the REST server on a free port, and `eddy_rest::client` as the only way in.
//! Every test shuts its cluster down through a guard, also when an assertion fails.

use eddy_cluster::{jobmanager, taskmanager, JobManagerHandle, TaskManagerHandle};
use eddy_core::config::Config;
use eddy_rest::client;
use eddy_rest::RestServer;
use eddy_runtime::data::now_millis;
use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry};
use eddy_runtime::{JobError, Output, Result, Sink, Source, SourceStatus, StreamEnv, TaskInfo};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Emits this subtask's share of `0..count` (or forever, slowly, when `count` is `None`).
#[derive(Clone)]
struct Numbers {
    count: Option<u64>,
    fail: bool,
    next: u64,
    step: u64,
}

impl Source for Numbers {
    type Out = u64;
    fn open(
        &mut self,
        info: &TaskInfo,
        _r: Option<&eddy_runtime::snapshot::OperatorSnapshot>,
    ) -> Result<()> {
        self.next = u64::from(info.subtask_index);
        self.step = u64::from(info.parallelism);
        Ok(())
    }
    fn poll_next(&mut self, out: &mut Output<u64>, max: usize) -> Result<SourceStatus> {
        if self.fail {
            return Err(JobError::new("injected failure in Numbers"));
        }
        let Some(count) = self.count else {
            out.push(self.next);
            self.next += self.step;
            return Ok(SourceStatus::IdleUntil(now_millis() + 5));
        };
        for _ in 0..max {
            if self.next >= count {
                return Ok(SourceStatus::Finished);
            }
            out.push(self.next);
            self.next += self.step;
        }
        Ok(SourceStatus::More)
    }
}

struct Discard;

impl Sink for Discard {
    type In = u64;
    fn write_batch(&mut self, batch: &mut Vec<u64>) -> Result<()> {
        batch.clear();
        Ok(())
    }
}

/// `count [--count N] [--fail true]`: a bounded job.
fn count_job(env: &StreamEnv, args: &mut JobArgs) -> Result<()> {
    let count: u64 = args.number("count", 1_000, 1, u64::MAX)?;
    let fail = args.flag("fail")?;
    env.add_source("Numbers", move || Numbers {
        count: Some(count),
        fail,
        next: 0,
        step: 1,
    })
    .map(|n: u64| n * 2)
    .sink_to("Discard", || Discard);
    Ok(())
}

/// `endless`: runs until cancelled.
fn endless_job(env: &StreamEnv, _args: &mut JobArgs) -> Result<()> {
    env.add_source("Ticks", || Numbers {
        count: None,
        fail: false,
        next: 0,
        step: 1,
    })
    .sink_to("Discard", || Discard);
    Ok(())
}

fn registry() -> Arc<JobRegistry> {
    let mut r = JobRegistry::new();
    r.register(JobDefinition {
        name: "count",
        description: "bounded test job",
        arguments: &[],
        build: count_job,
    });
    r.register(JobDefinition {
        name: "endless",
        description: "unbounded test job",
        arguments: &[],
        build: endless_job,
    });
    Arc::new(r)
}

/// A JobManager, its TaskManagers and its REST server; shut down on drop.
struct Cluster {
    jm: JobManagerHandle,
    tms: Vec<TaskManagerHandle>,
    rest: Option<RestServer>,
    url: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rest) = self.rest.take() {
            rest.shutdown();
        }
        for tm in &self.tms {
            tm.shutdown();
        }
        self.jm.shutdown();
    }
}

impl Cluster {
    fn start(taskmanagers: usize) -> Cluster {
        let config = Config::from_pairs(&[("taskmanager.numberOfTaskSlots", "2")]).unwrap();
        let reg = registry();
        let jm = jobmanager::start(config.clone(), reg.clone(), "127.0.0.1", 0).unwrap();
        let mut cluster = Cluster {
            jm: jm.clone(),
            tms: Vec::new(),
            rest: None,
            url: String::new(),
        };
        for _ in 0..taskmanagers {
            cluster
                .tms
                .push(taskmanager::start(&config, reg.clone(), jm.rpc_address.clone()).unwrap());
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while jm.taskmanagers().unwrap().len() < taskmanagers {
            assert!(Instant::now() < deadline, "TaskManagers did not register");
            std::thread::sleep(Duration::from_millis(5));
        }
        let rest = eddy_rest::start(jm, config, "127.0.0.1", 0).unwrap();
        cluster.url = rest.url();
        cluster.rest = Some(rest);
        cluster
    }

    fn rest(&self) -> &RestServer {
        self.rest.as_ref().unwrap()
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        client::request(
            &self.url,
            method,
            path,
            body.as_ref(),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn submit(&self, body: Value) -> String {
        let (status, v) = self.call("POST", "/jobs", Some(body));
        assert_eq!(status, 202, "{v}");
        let id = v["jobid"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(v["jobUrl"], format!("/jobs/{id}"));
        id
    }

    /// Polls `GET /jobs/:id` until its state is `state`.
    fn wait_for_state(&self, id: &str, state: &str) -> Value {
        self.wait_until(&format!("/jobs/{id}"), |d| d["state"] == state)
    }

    fn wait_until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(path);
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "gave up waiting on {path}: {v}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn assert_error(v: &Value, contains: &str) {
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array in {v}"));
    assert_eq!(errors.len(), 1, "{v}");
    let message = errors[0].as_str().unwrap();
    assert!(
        message.contains(contains),
        "'{message}' does not contain '{contains}'"
    );
    assert!(!message.contains('\n'));
}

#[test]
fn a_submitted_job_runs_to_finished_and_every_view_shows_it() {
    let c = Cluster::start(2);
    let id = c.submit(json!({"job": "count", "args": ["--count", "5000"], "parallelism": 2}));

    let d = c.wait_for_state(&id, "FINISHED");
    assert_eq!(d["jid"], id.as_str());
    assert_eq!(d["name"], "count");
    assert_eq!(d["isStoppable"], false);
    for status in ["CREATED", "RUNNING", "FINISHED"] {
        assert!(
            d["timestamps"][status].as_i64().unwrap() > 0,
            "{status} timestamp missing: {d}"
        );
    }
    assert!(d["end-time"].as_i64().unwrap() >= d["start-time"].as_i64().unwrap());
    let vertices = d["vertices"].as_array().unwrap();
    assert!(!vertices.is_empty());
    for v in vertices {
        assert_eq!(v["parallelism"], 2);
        assert_eq!(v["status"], "FINISHED");
        assert_eq!(v["tasks"]["FINISHED"], 2);
    }
    assert_eq!(d["status-counts"]["FINISHED"], vertices.len());
    assert_eq!(d["restarts"], 0);

    assert_eq!(
        c.get(&format!("/jobs/{id}/status")),
        json!({"status": "FINISHED"})
    );

    let overview = c.get("/jobs/overview");
    let job = &overview["jobs"][0];
    assert_eq!(job["jid"], id.as_str());
    assert_eq!(job["state"], "FINISHED");
    assert_eq!(job["tasks"]["total"], 2 * vertices.len());
    assert_eq!(job["tasks"]["finished"], 2 * vertices.len());

    assert_eq!(
        c.get("/jobs"),
        json!({"jobs": [{"id": id, "status": "FINISHED"}]})
    );

    let o = c.get("/overview");
    assert_eq!(o["taskmanagers"], 2);
    assert_eq!(o["slots-total"], 4);
    assert_eq!(o["jobs-finished"], 1);
    assert_eq!(o["jobs-running"], 0);
    assert!(o["flink-version"].as_str().unwrap().starts_with("eddy-"));

    let tms = c.get("/taskmanagers");
    let tms = tms["taskmanagers"].as_array().unwrap();
    assert_eq!(tms.len(), 2);
    for tm in tms {
        assert_eq!(tm["slotsNumber"], 2);
        assert!(tm["dataPort"].as_u64().unwrap() > 0);
    }

    let (status, metrics) = c.call("GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap();
    for name in eddy_rest::metrics::ALL.iter().map(|m| m.name) {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing from /metrics"
        );
    }
    assert!(text.contains("eddy_jobmanager_taskmanagers 2\n"), "{text}");
    assert!(
        text.contains("eddy_jobmanager_jobs{state=\"FINISHED\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "eddy_job_restarts_total{{job_id=\"{id}\",job_name=\"count\"}} 0\n"
        )),
        "{text}"
    );

    let checkpoints = c.get(&format!("/jobs/{id}/checkpoints"));
    assert_eq!(checkpoints["counts"]["completed"], 0);
    assert_eq!(checkpoints["history"], json!([]));

    let exceptions = c.get(&format!("/jobs/{id}/exceptions"));
    assert_eq!(exceptions["exceptionHistory"]["entries"], json!([]));
    assert!(exceptions["root-exception"].is_null());

    let config = c.get("/jobmanager/config");
    assert!(config
        .as_array()
        .unwrap()
        .contains(&json!({"key": "taskmanager.numberOfTaskSlots", "value": "2"})));
    assert_eq!(c.get("/config")["features"]["web-cancel"], true);

    // Flink: cancelling a job that ended another way is a conflict.
    let (status, v) = c.call("PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!(status, 409, "{v}");
    assert_error(&v, "FINISHED");
}

#[test]
fn patch_cancels_a_running_job_and_cancelling_again_is_accepted() {
    let c = Cluster::start(1);
    let id = c.submit(json!({"job": "endless", "parallelism": 2}));
    c.wait_for_state(&id, "RUNNING");
    assert_eq!(c.get("/overview")["jobs-running"], 1);

    let (status, v) = c.call("PATCH", &format!("/jobs/{id}?mode=bogus"), None);
    assert_eq!(status, 400);
    assert_error(&v, "bogus");

    let (status, v) = c.call("PATCH", &format!("/jobs/{id}?mode=cancel"), None);
    assert_eq!((status, v), (202, json!({})));
    let d = c.wait_for_state(&id, "CANCELED");
    assert!(d["timestamps"]["CANCELED"].as_i64().unwrap() > 0);
    assert_eq!(c.get("/overview")["jobs-cancelled"], 1);

    // Flink acknowledges a repeated cancel of a CANCELED job.
    let (status, _) = c.call("PATCH", &format!("/jobs/{id}"), None);
    assert_eq!(status, 202);
}

#[test]
fn a_failing_job_reports_its_exception_newest_first() {
    let c = Cluster::start(1);
    let id = c.submit(json!({
        "job": "count", "args": ["--fail", "true"], "parallelism": 1,
        "config": {"restart-strategy.type": "none"},
    }));
    c.wait_for_state(&id, "FAILED");
    let e = c.get(&format!("/jobs/{id}/exceptions"));
    assert!(
        e["root-exception"]
            .as_str()
            .unwrap()
            .contains("injected failure in Numbers"),
        "{e}"
    );
    let entries = e["exceptionHistory"]["entries"].as_array().unwrap();
    assert!(!entries.is_empty());
    assert_eq!(e["timestamp"], entries[0]["timestamp"]);
    let stamps: Vec<i64> = entries
        .iter()
        .map(|x| x["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {stamps:?}"
    );
    assert_eq!(c.get("/overview")["jobs-failed"], 1);
    let limited = c.get(&format!("/jobs/{id}/exceptions?maxExceptions=0"));
    assert_eq!(limited["exceptionHistory"]["entries"], json!([]));
    assert_eq!(limited["exceptionHistory"]["truncated"], true);
}

#[test]
fn checkpoint_statistics_appear_once_the_job_checkpoints() {
    let c = Cluster::start(1);
    // The checkpoint directory is the cluster's (a submitted job may not choose one): here the
    // JobManager's default under the temp dir.
    let id = c.submit(json!({
        "job": "endless", "parallelism": 1,
        "config": {
            "execution.checkpointing.interval": "50ms",
        },
    }));
    let stats = c.wait_until(&format!("/jobs/{id}/checkpoints"), |v| {
        v["counts"]["completed"].as_u64().unwrap_or(0) >= 1 && !v["latest"]["completed"].is_null()
    });
    let latest = &stats["latest"]["completed"];
    assert_eq!(latest["status"], "COMPLETED");
    assert_eq!(latest["is_savepoint"], false);
    assert!(latest["id"].as_u64().unwrap() >= 1);
    assert!(stats["counts"]["total"].as_u64().unwrap() >= 1);
    assert!(!stats["history"].as_array().unwrap().is_empty());
    let (status, _) = c.call("PATCH", &format!("/jobs/{id}"), None);
    assert_eq!(status, 202);
    c.wait_for_state(&id, "CANCELED");
}

#[test]
fn errors_are_json_with_the_right_status() {
    let c = Cluster::start(0);

    let (status, v) = c.call("GET", "/nope", None);
    assert_eq!((status, v), (404, json!({"errors": ["Not found: /nope"]})));

    let (status, v) = c.call("GET", "/jobs/not-a-job-id", None);
    assert_eq!(status, 400);
    assert_error(&v, "not-a-job-id");

    let unknown = "0123456789abcdef0123456789abcdef";
    for (method, path) in [
        ("GET", format!("/jobs/{unknown}")),
        ("PATCH", format!("/jobs/{unknown}?mode=cancel")),
        ("GET", format!("/jobs/{unknown}/exceptions")),
    ] {
        let (status, v) = c.call(method, &path, None);
        assert_eq!(status, 404, "{method} {path}: {v}");
        assert_error(&v, unknown);
    }

    let (status, v) = c.call(
        "POST",
        "/jobs",
        Some(json!({"job": "count", "config": {"parallelism.default": "lots"}})),
    );
    assert_eq!(status, 400);
    assert_error(&v, "parallelism.default");
    let (status, v) = c.call(
        "POST",
        "/jobs",
        Some(json!({"job": "count", "config": {"no.such.key": "1"}})),
    );
    assert_eq!(status, 400);
    assert_error(&v, "no.such.key");
    let (status, v) = c.call("POST", "/jobs", Some(json!({"job": "no-such-job"})));
    assert_eq!(status, 400);
    assert_error(&v, "no-such-job");
    let (status, v) = c.call(
        "POST",
        "/jobs",
        Some(json!({"job": "count", "args": ["--bogus", "1"]})),
    );
    assert_eq!(status, 400);
    assert_error(&v, "bogus");
    let (status, v) = c.call("POST", "/jobs", None);
    assert_eq!(status, 400);
    assert_error(&v, "invalid job submission body");

    let (status, v) = c.call("PUT", "/jobs", None);
    assert_eq!(status, 405);
    assert_error(&v, "PUT");

    let (status, v) = c.call(
        "GET",
        &format!("/jobs/{unknown}/exceptions?maxExceptions=-1"),
        None,
    );
    assert_eq!(status, 400);
    assert_error(&v, "maxExceptions");
}

#[test]
fn a_standby_answers_503_with_the_leaders_address() {
    let c = Cluster::start(0);
    c.rest().set_standby(Some("10.1.2.3:8081"));
    for path in ["/jobs/overview", "/overview", "/metrics", "/no/such/path"] {
        let (status, v) = c.call("GET", path, None);
        assert_eq!(status, 503, "{path}: {v}");
        assert_eq!(v["leader"], "http://10.1.2.3:8081");
        assert_error(
            &v,
            "this JobManager is a standby; the leader is at http://10.1.2.3:8081",
        );
    }
    let (status, _) = c.call("POST", "/jobs", Some(json!({"job": "count"})));
    assert_eq!(status, 503);
    let (status, _) = c.call("PATCH", "/jobs/0123456789abcdef0123456789abcdef", None);
    assert_eq!(status, 503);

    c.rest().leader_state().set_standby(None);
    let (status, v) = c.call("GET", "/jobs", None);
    assert_eq!(status, 503);
    assert!(v["leader"].is_null());
    assert_error(&v, "no leader is known");

    c.rest().set_leader();
    assert_eq!(c.get("/jobs"), json!({"jobs": []}));
}

#[test]
fn binding_a_taken_port_names_address_and_port_and_shutdown_frees_it() {
    let c = Cluster::start(0);
    let port = c.rest().address.port();
    let e = eddy_rest::start(c.jm.clone(), Config::default(), "127.0.0.1", port).unwrap_err();
    assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");

    let rest = eddy_rest::start(c.jm.clone(), Config::default(), "127.0.0.1", 0).unwrap();
    let url = rest.url();
    assert_eq!(
        client::request(&url, "GET", "/jobs", None, Duration::from_secs(5))
            .unwrap()
            .0,
        200
    );
    let started = Instant::now();
    rest.shutdown();
    assert!(started.elapsed() < Duration::from_secs(5));
    let e = client::request(&url, "GET", "/jobs", None, Duration::from_secs(2)).unwrap_err();
    assert!(e.contains(url.trim_start_matches("http://")), "{e}");
}

#[test]
fn the_dashboard_is_served_from_the_binary_and_a_standby_links_to_the_leader() {
    let c = Cluster::start(0);
    let (status, page) = c.call("GET", "/", None);
    assert_eq!(status, 200);
    let page = page.as_str().unwrap();
    assert!(page.contains("/assets/dashboard.js") && page.contains("/assets/dashboard.css"));
    let (status, js) = c.call("GET", "/assets/dashboard.js", None);
    assert_eq!(status, 200);
    assert!(js.as_str().unwrap().contains("recovery-timeline"));
    // Every fetch of the dashboard goes to this JobManager: no absolute URL in the assets.
    assert!(
        !js.as_str().unwrap().contains("http://") && !js.as_str().unwrap().contains("https://")
    );
    assert_eq!(c.call("GET", "/assets/dashboard.css", None).0, 200);

    c.rest().set_standby(Some("10.1.2.3:8081"));
    let (status, page) = c.call("GET", "/", None);
    assert_eq!(status, 503);
    assert!(
        page.as_str()
            .unwrap()
            .contains("<a id=\"leader\" href=\"http://10.1.2.3:8081/\">"),
        "{page}"
    );
    // Everything else stays refused on a standby.
    assert_eq!(c.call("GET", "/jobmanager/eddy-info", None).0, 503);
    c.rest().set_leader();
}

#[test]
fn recoveries_show_each_restart_with_its_timeline() {
    let c = Cluster::start(1);
    let id = c.submit(json!({
        "job": "count", "args": ["--fail", "true"], "parallelism": 1,
        "config": {
            "restart-strategy.type": "fixed-delay",
            "restart-strategy.fixed-delay.attempts": "2",
            "restart-strategy.fixed-delay.delay": "10 ms",
        },
    }));
    c.wait_for_state(&id, "FAILED");
    let r = c.get(&format!("/jobs/{id}/recoveries"));
    assert_eq!(r["jid"], id.as_str());
    let list = r["recoveries"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{r}");
    for rec in list {
        assert!(
            rec["cause"].as_str().unwrap().contains("injected failure"),
            "{rec}"
        );
        assert_eq!(rec["restart-delay"], 10);
        let (detected, decided) = (
            rec["detected"].as_i64().unwrap(),
            rec["decided"].as_i64().unwrap(),
        );
        assert!(detected <= decided);
        assert_eq!(
            rec["durations"]["decision"].as_i64(),
            Some(decided - detected)
        );
        assert!(rec["deployed"].as_i64().unwrap() >= decided, "{rec}");
    }
    let (status, v) = c.call(
        "GET",
        "/jobs/0123456789abcdef0123456789abcdef/recoveries",
        None,
    );
    assert_eq!(status, 404);
    assert_error(&v, "not found");
}

#[test]
fn jobmanager_info_names_leadership_ha_and_the_effective_configuration() {
    let c = Cluster::start(0);
    let i = c.get("/jobmanager/eddy-info");
    assert_eq!(i["leader"], true);
    assert_eq!(i["leader-session-id"].as_str().unwrap().len(), 32, "{i}");
    assert_eq!(i["high-availability"]["type"], "none");
    assert_eq!(i["pid"], std::process::id());
    assert!(i["uptime"].as_i64().unwrap() >= 0);
    let config = i["effective-configuration"].as_array().unwrap();
    let slots = config
        .iter()
        .find(|e| e["key"] == "taskmanager.numberOfTaskSlots")
        .unwrap();
    assert_eq!(slots["value"], "2");
    assert_eq!(slots["source"], "configured");
    assert!(config
        .iter()
        .any(|e| e["key"] == "rest.port" && e["source"] == "default"));
}

#[test]
fn a_lost_taskmanager_stays_listed_as_lost_with_its_heartbeat_age() {
    let c = Cluster::start(2);
    let before = c.get("/taskmanagers");
    assert_eq!(before["taskmanagers"].as_array().unwrap().len(), 2);
    assert_eq!(before["lost-taskmanagers"], json!([]));
    let tm = &before["taskmanagers"][0];
    assert!(tm["timeSinceLastHeartbeat"].as_i64().unwrap() >= 0, "{tm}");
    assert!(tm["registeredSince"].as_i64().unwrap() > 0, "{tm}");
    c.tms[0].shutdown();
    let after = c.wait_until("/taskmanagers", |v| {
        v["lost-taskmanagers"]
            .as_array()
            .is_some_and(|l| l.len() == 1)
    });
    assert_eq!(after["taskmanagers"].as_array().unwrap().len(), 1);
    let lost = &after["lost-taskmanagers"][0];
    assert!(lost["lostAt"].as_i64().unwrap() > 0, "{lost}");
    assert!(!lost["lostReason"].as_str().unwrap().is_empty(), "{lost}");
    assert_ne!(lost["id"], after["taskmanagers"][0]["id"]);
}
