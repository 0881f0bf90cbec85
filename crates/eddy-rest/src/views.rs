//! Pure renderings of the JobManager's views (`JobDetails`, `TaskManagerInfo`, `Config`) into
//! Flink REST v1 JSON: Flink's paths' field names, Flink's conventions (`-1` for a time that has
//! not happened, `0` in `timestamps` for a status never entered).
//!
//! No IO here, and never an invented number: what Eddy does not track is `null` (or left out
//! where Flink's field is optional), and docs/rest.md says which fields those are.

use eddy_cluster::jobmanager::TaskManagerInfo;
use eddy_cluster::status::{BackPressure, ExceptionEntry, VertexDetails};
use eddy_cluster::{JobDetails, JobStatus};
use eddy_core::config::Config;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Every job status, in Flink's order (keys of `timestamps`, buckets of `/metrics`).
pub const JOB_STATUSES: [JobStatus; 9] = [
    JobStatus::Created,
    JobStatus::Running,
    JobStatus::Failing,
    JobStatus::Failed,
    JobStatus::Cancelling,
    JobStatus::Canceled,
    JobStatus::Finished,
    JobStatus::Restarting,
    JobStatus::Suspended,
];

/// Flink's execution (subtask) states, the keys of per-vertex `tasks` and `status-counts`.
/// Eddy's tasks use a subset (CREATED, DEPLOYING, RUNNING, FINISHED, CANCELED, FAILED); the rest
/// are always 0 and are listed so Flink tooling finds every key it expects.
pub const EXECUTION_STATES: [&str; 10] = [
    "CREATED",
    "SCHEDULED",
    "DEPLOYING",
    "RUNNING",
    "FINISHED",
    "CANCELING",
    "CANCELED",
    "FAILED",
    "RECONCILING",
    "INITIALIZING",
];

/// The dashboard's refresh interval (ms) reported by `/config` (Flink's `web.refresh-interval`
/// default).
pub const REFRESH_INTERVAL_MS: u64 = 3000;

/// The source revision reported as `flink-revision` / `flink-commit`: set `EDDY_GIT_REVISION`
/// at build time to fill it in.
pub const REVISION: &str = match option_env!("EDDY_GIT_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Flink's "not known" for a number its response class requires (a primitive field).
pub const UNKNOWN: i64 = -1;

/// The id Eddy reports for its one slot-sharing group: every vertex of a job shares slots (one
/// slot per subtask index), as in Flink's default group.
pub const SLOT_SHARING_GROUP_ID: &str = "00000000000000000000000000000000";

/// The fields Eddy adds to a Flink response, left out under `/v1/...`: Flink's clients
/// deserialize `/v1` answers strictly (an unknown field fails them), Eddy's own clients (the
/// dashboard, `eddy`) read the unversioned paths.
pub mod eddy_fields {
    /// `GET /jobs/:jobid`.
    pub const JOB: [&str; 2] = ["restarts", "status-reason"];
    /// Each entry of `GET /taskmanagers`.
    pub const TASKMANAGER: [&str; 3] = ["pid", "registeredSince", "lastHeartbeat"];
    /// `GET /taskmanagers` itself.
    pub const TASKMANAGERS: [&str; 1] = ["lost-taskmanagers"];
    /// Each checkpoint of `GET /jobs/:jobid/checkpoints`.
    pub const CHECKPOINT: [&str; 1] = ["end_timestamp"];
    /// `GET /jobs/:jobid/exceptions`: the pre-1.13 fields Flink 2 no longer has.
    pub const EXCEPTIONS: [&str; 4] =
        ["root-exception", "timestamp", "all-exceptions", "truncated"];
}

/// Removes `fields` from the object `v` (a no-op on anything else).
pub fn remove_fields(v: &mut Value, fields: &[&str]) {
    if let Some(o) = v.as_object_mut() {
        for f in fields {
            o.remove(*f);
        }
    }
}

/// Flink buckets every job that is not FINISHED, FAILED or CANCELED as running.
fn counts_as_running(status: JobStatus) -> bool {
    !status.is_globally_terminal()
}

/// `GET /overview`.
pub fn overview_json(jobs: &[JobDetails], tms: &[TaskManagerInfo]) -> Value {
    let count = |f: &dyn Fn(JobStatus) -> bool| jobs.iter().filter(|j| f(j.status)).count();
    json!({
        "taskmanagers": tms.len(),
        "slots-total": tms.iter().map(|t| u64::from(t.slots_total)).sum::<u64>(),
        "slots-available": tms.iter().map(|t| u64::from(t.slots_free)).sum::<u64>(),
        "jobs-running": count(&|s| counts_as_running(s)),
        "jobs-finished": count(&|s| s == JobStatus::Finished),
        "jobs-cancelled": count(&|s| s == JobStatus::Canceled),
        "jobs-failed": count(&|s| s == JobStatus::Failed),
        "flink-version": crate::EDDY_VERSION,
        "flink-commit": REVISION,
    })
}

/// `GET /config`: the web dashboard's configuration. Eddy reports times in UTC.
pub fn dashboard_config_json() -> Value {
    json!({
        "refresh-interval": REFRESH_INTERVAL_MS,
        "timezone-name": "UTC",
        "timezone-offset": 0,
        "flink-version": crate::EDDY_VERSION,
        "flink-revision": REVISION,
        "features": {
            "web-submit": false,
            "web-cancel": true,
            "web-rescale": false,
            "web-history": false,
        },
    })
}

/// `GET /jobmanager/config`: the configured keys (no defaults), in key order.
pub fn jobmanager_config_json(config: &Config) -> Value {
    Value::Array(
        config
            .iter()
            .map(|(k, v)| {
                // Flink's GlobalConfiguration masks secrets the same way.
                let secret = k.contains("secret") || k.contains("password");
                json!({ "key": k, "value": if secret { "******" } else { v } })
            })
            .collect(),
    )
}

/// `GET /jobs`.
pub fn job_ids_json(jobs: &[JobDetails]) -> Value {
    let list: Vec<Value> = jobs
        .iter()
        .map(|j| json!({ "id": j.job_id, "status": j.status.name() }))
        .collect();
    json!({ "jobs": list })
}

/// `GET /jobs/overview`.
pub fn jobs_overview_json(jobs: &[JobDetails]) -> Value {
    let list: Vec<Value> = jobs.iter().map(job_overview_entry).collect();
    json!({ "jobs": list })
}

fn job_overview_entry(j: &JobDetails) -> Value {
    // Flink counts subtasks per execution state, with lowercase keys, plus the total.
    let mut tasks = Map::new();
    let mut total: u64 = 0;
    for state in EXECUTION_STATES {
        tasks.insert(state.to_ascii_lowercase(), json!(0));
    }
    for v in &j.vertices {
        total += u64::from(v.parallelism);
        for (state, n) in &v.tasks {
            let key = state.to_ascii_lowercase();
            let prev = tasks.get(&key).and_then(Value::as_u64).unwrap_or(0);
            tasks.insert(key, json!(prev + u64::from(*n)));
        }
    }
    tasks.insert("total".into(), json!(total));
    json!({
        "jid": j.job_id,
        "name": j.name,
        "state": j.status.name(),
        "start-time": j.start_time,
        "end-time": j.end_time,
        "duration": j.duration_ms,
        "last-modification": last_modification(j),
        "tasks": tasks,
        // Flink's adaptive batch scheduler's operators not yet in the graph: Eddy has none.
        "pending-operators": 0,
    })
}

/// The latest status-change time Eddy knows: the newest first-entry timestamp (a job that
/// restarted re-entered RUNNING later than its `timestamps` entry says), or the end time.
pub fn last_modification(j: &JobDetails) -> i64 {
    j.timestamps
        .values()
        .copied()
        .chain([j.start_time, j.end_time])
        .max()
        .unwrap_or(j.start_time)
}

/// Flink's id for a vertex is 32 hex characters; Eddy's is its index in the job graph, shown in
/// the same form so Flink tooling can parse it.
pub fn vertex_id(v: &VertexDetails) -> String {
    format!("{:032x}", v.id)
}

fn vertex_tasks(v: &VertexDetails) -> Map<String, Value> {
    let mut tasks: Map<String, Value> = EXECUTION_STATES
        .iter()
        .map(|s| (s.to_string(), json!(0)))
        .collect();
    for (state, n) in &v.tasks {
        tasks.insert(state.clone(), json!(n));
    }
    tasks
}

/// `GET /jobs/:jobid`. `now` is the server's clock (ms since epoch).
pub fn job_details_json(j: &JobDetails, now: i64) -> Value {
    let mut timestamps = Map::new();
    for s in JOB_STATUSES {
        timestamps.insert(
            s.name().into(),
            json!(j.timestamps.get(s.name()).copied().unwrap_or(0)),
        );
    }
    for (k, v) in &j.timestamps {
        timestamps.insert(k.clone(), json!(v));
    }
    let mut status_counts: BTreeMap<String, u64> = EXECUTION_STATES
        .iter()
        .map(|s| (s.to_string(), 0))
        .collect();
    let vertices: Vec<Value> = j
        .vertices
        .iter()
        .map(|v| {
            *status_counts.entry(v.status.clone()).or_default() += 1;
            json!({
                "id": vertex_id(v),
                "name": v.name,
                "parallelism": v.parallelism,
                "status": v.status,
                "maxParallelism": UNKNOWN,
                "slotSharingGroupId": SLOT_SHARING_GROUP_ID,
                // Eddy does not track per-vertex times yet: -1 is Flink's "not known".
                "start-time": UNKNOWN,
                "end-time": UNKNOWN,
                "duration": UNKNOWN,
                "tasks": vertex_tasks(v),
                "metrics": {
                    // Eddy counts records, not bytes: 0 with `complete: false` is how Flink
                    // reports a metric it could not collect.
                    "read-bytes": 0,
                    "read-bytes-complete": false,
                    "write-bytes": 0,
                    "write-bytes-complete": false,
                    "read-records": v.records_in,
                    "read-records-complete": true,
                    "write-records": v.records_out,
                    "write-records-complete": true,
                    // Summed over the subtasks that reported their times (Flink sums too).
                    "accumulated-backpressured-time": accumulated(v, |t| t.backpressured_ms),
                    "accumulated-idle-time": accumulated(v, |t| t.idle_ms),
                    "accumulated-busy-time": accumulated(v, |t| t.busy_ms),
                },
            })
        })
        .collect();
    let nodes: Vec<Value> = j
        .vertices
        .iter()
        .map(|v| {
            json!({
                "id": vertex_id(v),
                "operator": "",
                "operator_strategy": "",
                "description": v.name,
                "parallelism": v.parallelism,
                "optimizer_properties": {},
                "inputs": [],
            })
        })
        .collect();
    json!({
        "jid": j.job_id,
        "name": j.name,
        "isStoppable": false,
        "state": j.status.name(),
        "job-type": "STREAMING",
        "start-time": j.start_time,
        "end-time": j.end_time,
        "duration": j.duration_ms,
        "maxParallelism": UNKNOWN,
        "now": now,
        "timestamps": timestamps,
        "vertices": vertices,
        "status-counts": status_counts,
        // Flink's job plan: the vertices (Eddy does not list their edges here).
        "plan": { "jid": j.job_id, "name": j.name, "type": "STREAMING", "nodes": nodes },
        "pending-operators": 0,
        // Eddy's own fields.
        "restarts": j.restarts,
        "status-reason": j.status_reason,
    })
}

/// The sum of one of the subtasks' times (ms), or Flink's "not known" (`-1`) when no subtask
/// reported its times yet.
fn accumulated(v: &VertexDetails, f: impl Fn(&eddy_cluster::status::TaskTimes) -> u64) -> i64 {
    let times: Vec<u64> = v
        .subtasks
        .iter()
        .filter_map(|s| s.times.as_ref().map(&f))
        .collect();
    if times.is_empty() {
        UNKNOWN
    } else {
        times.iter().sum::<u64>() as i64
    }
}

/// The vertex's back-pressure: the highest ratio of its subtasks, as Flink's dashboard and
/// `/backpressure` grade a vertex. `None` before any subtask reported two heartbeats.
pub fn vertex_backpressure(v: &VertexDetails) -> Option<f64> {
    v.subtasks
        .iter()
        .filter_map(|s| s.backpressure.map(|b| b.ratio))
        .reduce(f64::max)
}

/// `GET /jobs/:jobid/vertices/:vertexid/backpressure` (Flink's `JobVertexBackPressureInfo`).
/// Ratios are the subtasks' shares of time between their TaskManager's last two heartbeats;
/// `end-timestamp` is when the newest of those heartbeats came. Before any subtask has a
/// ratio the answer is Flink's own for "no metrics yet": `{"status": "deprecated"}`.
pub fn vertex_backpressure_json(v: &VertexDetails) -> Value {
    let measured: Vec<(u32, BackPressure)> = v
        .subtasks
        .iter()
        .filter_map(|s| Some((s.subtask, s.backpressure?)))
        .collect();
    let Some(max) = vertex_backpressure(v) else {
        return json!({ "status": "deprecated" });
    };
    let end = measured.iter().map(|(_, b)| b.at).max().unwrap_or(UNKNOWN);
    let round = |r: f64| (r * 1000.0).round() / 1000.0;
    let subtasks: Vec<Value> = measured
        .iter()
        .map(|(subtask, b)| {
            json!({
                "subtask": subtask,
                "backpressureLevel": BackPressure::level(b.ratio),
                "ratio": round(b.ratio),
                "idleRatio": round(b.idle_ratio),
                "busyRatio": round(b.busy_ratio),
            })
        })
        .collect();
    json!({
        "status": "ok",
        "backpressureLevel": BackPressure::level(max),
        "end-timestamp": end,
        "subtasks": subtasks,
    })
}

/// `GET /jobs/:jobid/status`.
pub fn job_status_json(j: &JobDetails) -> Value {
    json!({ "status": j.status.name() })
}

/// `GET /jobs/:jobid/exceptions`: Flink 1.13+'s shape, newest first. `max` bounds the number of
/// entries (`maxExceptions`); `truncated` says whether some were left out.
pub fn job_exceptions_json(j: &JobDetails, max: Option<usize>) -> Value {
    let mut newest_first: Vec<&ExceptionEntry> = j.exceptions.iter().collect();
    // Stable: entries with equal timestamps keep their reverse recording order.
    newest_first.reverse();
    newest_first.sort_by_key(|e| std::cmp::Reverse(e.timestamp));
    let limit = max.unwrap_or(usize::MAX);
    let truncated = newest_first.len() > limit;
    let shown = &newest_first[..newest_first.len().min(limit)];
    let root = newest_first.first();
    let all: Vec<Value> = shown
        .iter()
        .map(|e| {
            json!({
                "exception": e.exception,
                "task": e.task_name,
                "location": e.taskmanager,
                "timestamp": e.timestamp,
                "taskManagerId": e.taskmanager,
            })
        })
        .collect();
    let entries: Vec<Value> = shown
        .iter()
        .map(|e| {
            json!({
                "exceptionName": exception_name(&e.exception),
                "stacktrace": e.exception,
                "timestamp": e.timestamp,
                "taskName": e.task_name,
                // Eddy knows the failing TaskManager by id; Flink's `location` is its address.
                "location": e.taskmanager,
                "taskManagerId": e.taskmanager,
                "failureLabels": {},
                "concurrentExceptions": [],
            })
        })
        .collect();
    json!({
        "root-exception": root.map(|e| e.exception.clone()),
        "timestamp": root.map(|e| e.timestamp),
        "all-exceptions": all,
        "truncated": truncated,
        "exceptionHistory": { "entries": entries, "truncated": truncated },
    })
}

/// Flink's `exceptionName` is the Java class; Eddy's errors are messages, so it is the first line.
fn exception_name(exception: &str) -> &str {
    exception.lines().next().unwrap_or("").trim()
}

/// `GET /taskmanagers`. Hardware is not reported by Eddy's TaskManagers yet: it is `null`.
/// `lost` (Eddy's own `lost-taskmanagers`) are the TaskManagers this JobManager lost recently.
pub fn taskmanagers_json(tms: &[TaskManagerInfo], lost: &[TaskManagerInfo], now: i64) -> Value {
    let list: Vec<Value> = tms.iter().map(|t| taskmanager_json(t, now)).collect();
    let lost: Vec<Value> = lost
        .iter()
        .map(|t| {
            let mut v = taskmanager_json(t, now);
            v["lostAt"] = json!(t.lost_at);
            v["lostReason"] = json!(t.lost_reason);
            v
        })
        .collect();
    json!({ "taskmanagers": list, "lost-taskmanagers": lost })
}

fn taskmanager_json(t: &TaskManagerInfo, now: i64) -> Value {
    // 0: not known (an entry from an older JobManager): Flink's "unknown" is null here.
    let known = |ms: i64| (ms > 0).then_some(ms);
    json!({
                "id": t.id,
                "path": t.data_address,
                "dataPort": data_port(&t.data_address),
                "jmxPort": UNKNOWN,
                "timeSinceLastHeartbeat": known(t.last_heartbeat).map_or(UNKNOWN, |h| now - h),
                "slotsNumber": t.slots_total,
                "freeSlots": t.slots_free,
                "assignedTasks": UNKNOWN,
                "totalResource": unknown_resources(),
                "freeResource": unknown_resources(),
                "hardware": {
                    "cpuCores": UNKNOWN,
                    "physicalMemory": UNKNOWN,
                    "freeMemory": UNKNOWN,
                    "managedMemory": UNKNOWN,
                },
                "memoryConfiguration": {
                    "frameworkHeap": null,
                    "taskHeap": null,
                    "frameworkOffHeap": null,
                    "taskOffHeap": null,
                    "networkMemory": null,
                    "managedMemory": null,
                    "jvmMetaspace": null,
                    "jvmOverhead": null,
                    "totalFlinkMemory": null,
                    "totalProcessMemory": null,
                },
                // Eddy has no block list.
                "blocked": false,
                // Eddy's own fields.
                "pid": t.pid,
                "registeredSince": known(t.registered_at),
                "lastHeartbeat": known(t.last_heartbeat),
    })
}

/// Flink's `ResourceProfile.UNKNOWN` as its REST shape: Eddy's slots carry no resource profile.
fn unknown_resources() -> Value {
    json!({
        "cpuCores": -1.0,
        "taskHeapMemory": UNKNOWN,
        "taskOffHeapMemory": UNKNOWN,
        "managedMemory": UNKNOWN,
        "networkMemory": UNKNOWN,
        "extendedResources": {},
    })
}

/// The port of a `host:port` (or `[v6]:port`) address; `null` if there is none.
fn data_port(address: &str) -> Value {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .map_or(Value::Null, |p| json!(p))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_job(status: JobStatus) -> JobDetails {
        let mut timestamps = BTreeMap::new();
        timestamps.insert("CREATED".to_string(), 1_000);
        timestamps.insert("RUNNING".to_string(), 1_100);
        let mut tasks = BTreeMap::new();
        tasks.insert("RUNNING".to_string(), 2);
        JobDetails {
            job_id: "0123456789abcdef0123456789abcdef".into(),
            name: "sequence".into(),
            status,
            start_time: 1_000,
            end_time: -1,
            duration_ms: 500,
            timestamps,
            vertices: vec![VertexDetails {
                id: 3,
                name: "Source: Numbers".into(),
                parallelism: 2,
                status: "RUNNING".into(),
                records_in: 0,
                records_out: 42,
                tasks,
                subtask_deployments: vec![1, 2],
                subtasks: Vec::new(),
            }],
            restarts: 1,
            completed_checkpoints: 0,
            failed_checkpoints: 0,
            checkpoints: None,
            exceptions: vec![
                ExceptionEntry {
                    timestamp: 1_200,
                    task_name: Some("Map (1/2)".into()),
                    taskmanager: Some("tm-1".into()),
                    exception: "older".into(),
                },
                ExceptionEntry {
                    timestamp: 1_300,
                    task_name: None,
                    taskmanager: None,
                    exception: "newer\nat line 2".into(),
                },
            ],
            status_reason: None,
            recoveries: Vec::new(),
            recovery_durations: Default::default(),
        }
    }

    #[test]
    fn overview_counts_every_non_terminal_job_as_running() {
        let jobs = [
            sample_job(JobStatus::Running),
            sample_job(JobStatus::Restarting),
            sample_job(JobStatus::Finished),
            sample_job(JobStatus::Canceled),
        ];
        let tms = [TaskManagerInfo {
            id: "tm-1".into(),
            data_address: "127.0.0.1:4000".into(),
            slots_total: 4,
            slots_free: 1,
            pid: 7,
            registered_at: 500,
            last_heartbeat: 900,
            lost_at: None,
            lost_reason: None,
        }];
        let o = overview_json(&jobs, &tms);
        assert_eq!(o["taskmanagers"], 1);
        assert_eq!(o["slots-total"], 4);
        assert_eq!(o["slots-available"], 1);
        assert_eq!(o["jobs-running"], 2);
        assert_eq!(o["jobs-finished"], 1);
        assert_eq!(o["jobs-cancelled"], 1);
        assert_eq!(o["jobs-failed"], 0);
        assert!(o["flink-version"].as_str().unwrap().starts_with("eddy-"));
    }

    #[test]
    fn job_details_list_every_status_timestamp_with_zero_for_never_entered() {
        let d = job_details_json(&sample_job(JobStatus::Running), 2_000);
        assert_eq!(d["timestamps"]["CREATED"], 1_000);
        assert_eq!(d["timestamps"]["RUNNING"], 1_100);
        assert_eq!(d["timestamps"]["FINISHED"], 0);
        assert_eq!(d["vertices"][0]["id"], "00000000000000000000000000000003");
        assert_eq!(d["vertices"][0]["tasks"]["RUNNING"], 2);
        assert_eq!(d["vertices"][0]["tasks"]["FAILED"], 0);
        assert_eq!(d["vertices"][0]["metrics"]["write-records"], 42);
        assert_eq!(d["status-counts"]["RUNNING"], 1);
        assert_eq!(d["restarts"], 1);
        assert_eq!(d["now"], 2_000);
    }

    #[test]
    fn jobs_overview_counts_subtasks_per_state_in_lowercase() {
        let o = jobs_overview_json(&[sample_job(JobStatus::Running)]);
        let t = &o["jobs"][0]["tasks"];
        assert_eq!(t["total"], 2);
        assert_eq!(t["running"], 2);
        assert_eq!(t["finished"], 0);
        assert_eq!(o["jobs"][0]["last-modification"], 1_100);
    }

    #[test]
    fn exceptions_are_newest_first_and_truncated_on_request() {
        let e = job_exceptions_json(&sample_job(JobStatus::Failed), None);
        assert_eq!(e["root-exception"], "newer\nat line 2");
        assert_eq!(e["timestamp"], 1_300);
        let entries = e["exceptionHistory"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["exceptionName"], "newer");
        assert_eq!(entries[1]["taskName"], "Map (1/2)");
        assert_eq!(entries[1]["taskManagerId"], "tm-1");
        assert_eq!(e["truncated"], false);
        let t = job_exceptions_json(&sample_job(JobStatus::Failed), Some(1));
        assert_eq!(
            t["exceptionHistory"]["entries"].as_array().unwrap().len(),
            1
        );
        assert_eq!(t["exceptionHistory"]["truncated"], true);
    }

    #[test]
    fn taskmanagers_show_heartbeat_age_and_the_recently_lost_ones() {
        let tm = TaskManagerInfo {
            id: "tm-1".into(),
            data_address: "127.0.0.1:4000".into(),
            slots_total: 2,
            slots_free: 0,
            pid: 7,
            registered_at: 1_000,
            last_heartbeat: 4_000,
            lost_at: None,
            lost_reason: None,
        };
        let mut gone = tm.clone();
        gone.id = "tm-2".into();
        gone.lost_at = Some(4_500);
        gone.lost_reason = Some("heartbeat timed out".into());
        let v = taskmanagers_json(&[tm], &[gone], 5_000);
        assert_eq!(v["taskmanagers"][0]["timeSinceLastHeartbeat"], 1_000);
        assert_eq!(v["taskmanagers"][0]["registeredSince"], 1_000);
        assert!(v["taskmanagers"][0].get("lostAt").is_none());
        assert_eq!(v["lost-taskmanagers"][0]["id"], "tm-2");
        assert_eq!(v["lost-taskmanagers"][0]["lostAt"], 4_500);
        assert_eq!(
            v["lost-taskmanagers"][0]["lostReason"],
            "heartbeat timed out"
        );
    }

    #[test]
    fn backpressure_grades_subtasks_and_the_vertex_with_flinks_thresholds() {
        use eddy_cluster::status::{SubtaskDetails, TaskTimes};
        let mut job = sample_job(JobStatus::Running);
        let v = &mut job.vertices[0];
        assert_eq!(
            vertex_backpressure_json(v),
            json!({ "status": "deprecated" }),
            "no ratios yet: Flink's answer without metrics"
        );
        assert_eq!(
            job_details_json(&job, 2_000)["vertices"][0]["metrics"]["accumulated-busy-time"],
            -1
        );
        let v = &mut job.vertices[0];
        let sub = |subtask: u32, ratio: f64, at: i64| SubtaskDetails {
            subtask,
            attempt: 9,
            state: "RUNNING".into(),
            taskmanager: "tm-1".into(),
            records_in: 0,
            records_out: 0,
            deployed_at: 0,
            times: Some(TaskTimes {
                backpressured_ms: 100,
                idle_ms: 20,
                busy_ms: 5,
            }),
            backpressure: Some(BackPressure {
                ratio,
                idle_ratio: (1.0 - ratio) / 2.0,
                busy_ratio: (1.0 - ratio) / 2.0,
                at,
            }),
        };
        v.subtasks = vec![sub(0, 0.10, 5_000), sub(1, 0.30, 6_000)];
        let b = vertex_backpressure_json(v);
        assert_eq!(b["status"], "ok");
        assert_eq!(
            b["backpressureLevel"], "low",
            "the highest subtask grades the vertex"
        );
        assert_eq!(b["end-timestamp"], 6_000);
        assert_eq!(
            b["subtasks"][0]["backpressureLevel"], "ok",
            "0.10 is still ok"
        );
        assert_eq!(b["subtasks"][1]["ratio"], 0.3);
        assert_eq!(b["subtasks"][1]["idleRatio"], 0.35);
        v.subtasks.push(sub(2, 0.51, 6_000));
        assert_eq!(vertex_backpressure_json(v)["backpressureLevel"], "high");
        let m = &job_details_json(&job, 2_000)["vertices"][0]["metrics"];
        assert_eq!(m["accumulated-backpressured-time"], 300);
        assert_eq!(m["accumulated-idle-time"], 60);
        assert_eq!(m["accumulated-busy-time"], 15);
    }

    #[test]
    fn taskmanager_data_port_is_parsed_from_its_address() {
        assert_eq!(data_port("127.0.0.1:4000"), json!(4000));
        assert_eq!(data_port("[::1]:4001"), json!(4001));
        assert_eq!(data_port("nohost"), Value::Null);
    }
}
