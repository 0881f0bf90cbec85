//! The JobManager's Prometheus metrics, rendered from its views. The naming rule, the text
//! format and the process families are `eddy_core::metrics` (shared with every TaskManager's
//! `/metrics`): `eddy_<component>_<noun>[_<unit>][_total]`, `_total` only on counters (so the
//! total slot count is `eddy_jobmanager_slots`, a gauge). This file must never invent a sample:
//! a value Eddy does not know is left out, not written as 0.

use crate::views::JOB_STATUSES;
use eddy_cluster::jobmanager::{JobManagerCounters, TaskManagerInfo};
use eddy_cluster::JobDetails;
use eddy_core::metrics::{counter, gauge, histogram, write_family as family, Histogram};
pub use eddy_core::metrics::{Metric, MetricType, Sample, CONTENT_TYPE};
use std::sync::atomic::Ordering;

pub const JOBMANAGER_TASKMANAGERS: Metric = gauge(
    "eddy_jobmanager_taskmanagers",
    "TaskManagers registered with the JobManager.",
);
pub const JOBMANAGER_SLOTS: Metric = gauge(
    "eddy_jobmanager_slots",
    "Task slots offered by all registered TaskManagers.",
);
pub const JOBMANAGER_SLOTS_AVAILABLE: Metric = gauge(
    "eddy_jobmanager_slots_available",
    "Task slots not allocated to any job.",
);
pub const JOBMANAGER_LEADERSHIP_GRANTED: Metric = counter(
    "eddy_jobmanager_leadership_granted_total",
    "Times this JobManager process became the leader (without HA: once, at start).",
);
pub const JOBMANAGER_LEADERSHIP_LOST: Metric = counter(
    "eddy_jobmanager_leadership_lost_total",
    "Times this JobManager process lost leadership (revoked, or stepped down).",
);
pub const JOBMANAGER_HEARTBEATS_RECEIVED: Metric = counter(
    "eddy_jobmanager_heartbeats_received_total",
    "Heartbeats received from TaskManagers.",
);
pub const JOBMANAGER_HEARTBEAT_TIMEOUTS: Metric = counter(
    "eddy_jobmanager_heartbeat_timeouts_total",
    "TaskManagers lost because no heartbeat came within heartbeat.timeout.",
);
pub const JOBMANAGER_JOBS: Metric = gauge(
    "eddy_jobmanager_jobs",
    "Jobs known to the JobManager, by status.",
);
pub const JOB_STATE: Metric = gauge(
    "eddy_job_state",
    "1 for the job's current status (label state).",
);
pub const JOB_RESTARTS: Metric = counter(
    "eddy_job_restarts_total",
    "Times the job was restarted after a failure.",
);
pub const JOB_COMPLETED_CHECKPOINTS: Metric = counter(
    "eddy_job_completed_checkpoints_total",
    "Checkpoints of the job that completed.",
);
pub const JOB_FAILED_CHECKPOINTS: Metric = counter(
    "eddy_job_failed_checkpoints_total",
    "Checkpoints of the job that failed or were declined.",
);
pub const JOB_CHECKPOINT_DURATION: Metric = histogram(
    "eddy_job_checkpoint_duration_seconds",
    "Completed checkpoints and savepoints of the job, trigger to completion (under this leader).",
);
pub const JOB_CHECKPOINT_SIZE: Metric = histogram(
    "eddy_job_checkpoint_size_bytes",
    "State size of the job's completed checkpoints and savepoints (under this leader).",
);
pub const JOB_RECOVERY_DURATION: Metric = histogram(
    "eddy_job_recovery_duration_seconds",
    "The job's complete recoveries under this leader: failure detected to every subtask RUNNING again.",
);
pub const JOB_UPTIME: Metric = gauge(
    "eddy_job_uptime_seconds",
    "Seconds since the job was submitted; only for jobs that have not ended.",
);
pub const TASK_RECORDS_IN: Metric = counter(
    "eddy_task_records_in_total",
    "Records received by a vertex's subtasks (current attempt).",
);
pub const TASK_RECORDS_OUT: Metric = counter(
    "eddy_task_records_out_total",
    "Records emitted by a vertex's subtasks (current attempt).",
);

pub const TASK_BACKPRESSURE_RATIO: Metric = gauge(
    "eddy_task_backpressure_ratio",
    "Highest share of time (0..1) a subtask of the vertex was back-pressured between its TaskManager's last two heartbeats (Flink's vertex back-pressure).",
);

/// Every family `/metrics` writes, in output order.
pub const ALL: [Metric; 19] = [
    JOBMANAGER_TASKMANAGERS,
    JOBMANAGER_SLOTS,
    JOBMANAGER_SLOTS_AVAILABLE,
    JOBMANAGER_LEADERSHIP_GRANTED,
    JOBMANAGER_LEADERSHIP_LOST,
    JOBMANAGER_HEARTBEATS_RECEIVED,
    JOBMANAGER_HEARTBEAT_TIMEOUTS,
    JOBMANAGER_JOBS,
    JOB_STATE,
    JOB_RESTARTS,
    JOB_COMPLETED_CHECKPOINTS,
    JOB_FAILED_CHECKPOINTS,
    JOB_CHECKPOINT_DURATION,
    JOB_CHECKPOINT_SIZE,
    JOB_RECOVERY_DURATION,
    JOB_UPTIME,
    TASK_RECORDS_IN,
    TASK_RECORDS_OUT,
    TASK_BACKPRESSURE_RATIO,
];

/// Renders the exposition text. Every family gets its `# HELP` / `# TYPE` lines even with no
/// samples, so scrapers and dashboards see the full set of names from the first scrape.
pub fn render(
    jobs: &[JobDetails],
    tms: &[TaskManagerInfo],
    counters: &JobManagerCounters,
) -> String {
    let mut out = String::new();
    let slots: u64 = tms.iter().map(|t| u64::from(t.slots_total)).sum();
    let free: u64 = tms.iter().map(|t| u64::from(t.slots_free)).sum();
    family(
        &mut out,
        &JOBMANAGER_TASKMANAGERS,
        vec![(vec![], tms.len().to_string())],
    );
    family(
        &mut out,
        &JOBMANAGER_SLOTS,
        vec![(vec![], slots.to_string())],
    );
    family(
        &mut out,
        &JOBMANAGER_SLOTS_AVAILABLE,
        vec![(vec![], free.to_string())],
    );
    for (m, c) in [
        (&JOBMANAGER_LEADERSHIP_GRANTED, &counters.leadership_granted),
        (&JOBMANAGER_LEADERSHIP_LOST, &counters.leadership_lost),
        (
            &JOBMANAGER_HEARTBEATS_RECEIVED,
            &counters.heartbeats_received,
        ),
        (&JOBMANAGER_HEARTBEAT_TIMEOUTS, &counters.heartbeat_timeouts),
    ] {
        family(
            &mut out,
            m,
            vec![(vec![], c.load(Ordering::Relaxed).to_string())],
        );
    }
    family(
        &mut out,
        &JOBMANAGER_JOBS,
        JOB_STATUSES
            .iter()
            .map(|s| {
                let n = jobs.iter().filter(|j| j.status == *s).count();
                (vec![("state", s.name())], n.to_string())
            })
            .collect(),
    );
    let per_job = |f: &dyn Fn(&JobDetails) -> Option<String>| -> Vec<Sample<'_>> {
        jobs.iter()
            .filter_map(|j| f(j).map(|v| (job_labels(j), v)))
            .collect()
    };
    let states: Vec<Sample<'_>> = jobs
        .iter()
        .map(|j| {
            let mut l = job_labels(j);
            l.push(("state", j.status.name()));
            (l, "1".to_string())
        })
        .collect();
    family(&mut out, &JOB_STATE, states);
    family(
        &mut out,
        &JOB_RESTARTS,
        per_job(&|j| Some(j.restarts.to_string())),
    );
    family(
        &mut out,
        &JOB_COMPLETED_CHECKPOINTS,
        per_job(&|j| Some(j.completed_checkpoints.to_string())),
    );
    family(
        &mut out,
        &JOB_FAILED_CHECKPOINTS,
        per_job(&|j| Some(j.failed_checkpoints.to_string())),
    );
    // The coordinator's histograms, from its serialized statistics (none without checkpointing).
    let checkpoint_histograms: Vec<(Histogram, Histogram)> = jobs
        .iter()
        .map(|j| {
            let field = |name: &str| -> Histogram {
                j.checkpoints
                    .as_ref()
                    .and_then(|c| c.get(name))
                    .and_then(|v| serde_json::from_value(v.clone()).ok())
                    .unwrap_or_default()
            };
            (
                field("completed_durations_ms"),
                field("completed_sizes_bytes"),
            )
        })
        .collect();
    type Samples<'a> = Vec<(Vec<(&'static str, &'a str)>, &'a Histogram)>;
    let (mut durations, mut sizes, mut recoveries): (Samples<'_>, Samples<'_>, Samples<'_>) =
        Default::default();
    for (j, (d, s)) in jobs.iter().zip(&checkpoint_histograms) {
        // A histogram without bounds was never observed into (no coordinator): no sample.
        if !d.bounds.is_empty() {
            durations.push((job_labels(j), d));
        }
        if !s.bounds.is_empty() {
            sizes.push((job_labels(j), s));
        }
        if !j.recovery_durations.bounds.is_empty() {
            recoveries.push((job_labels(j), &j.recovery_durations));
        }
    }
    eddy_core::metrics::write_histograms(&mut out, &JOB_CHECKPOINT_DURATION, durations, 0.001);
    eddy_core::metrics::write_histograms(&mut out, &JOB_CHECKPOINT_SIZE, sizes, 1.0);
    eddy_core::metrics::write_histograms(&mut out, &JOB_RECOVERY_DURATION, recoveries, 0.001);
    family(
        &mut out,
        &JOB_UPTIME,
        per_job(&|j| {
            (!j.status.is_globally_terminal())
                .then(|| format!("{:.3}", j.duration_ms.max(0) as f64 / 1000.0))
        }),
    );
    let vertex_ids: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| j.vertices.iter().map(|v| v.id.to_string()).collect())
        .collect();
    let per_vertex = |value: &dyn Fn(&eddy_cluster::status::VertexDetails) -> Option<String>| {
        let mut samples: Vec<Sample<'_>> = Vec::new();
        for (j, ids) in jobs.iter().zip(&vertex_ids) {
            for (v, id) in j.vertices.iter().zip(ids) {
                let labels = vec![
                    ("job_id", j.job_id.as_str()),
                    ("vertex_id", id.as_str()),
                    ("vertex", v.name.as_str()),
                ];
                if let Some(x) = value(v) {
                    samples.push((labels, x));
                }
            }
        }
        samples
    };
    family(
        &mut out,
        &TASK_RECORDS_IN,
        per_vertex(&|v| Some(v.records_in.to_string())),
    );
    family(
        &mut out,
        &TASK_RECORDS_OUT,
        per_vertex(&|v| Some(v.records_out.to_string())),
    );
    family(
        &mut out,
        &TASK_BACKPRESSURE_RATIO,
        per_vertex(&|v| crate::views::vertex_backpressure(v).map(|r| format!("{r:.3}"))),
    );
    eddy_core::metrics::write_process_families(&mut out);
    out
}

fn job_labels(j: &JobDetails) -> Vec<(&'static str, &str)> {
    vec![("job_id", j.job_id.as_str()), ("job_name", j.name.as_str())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::sample_job;
    use eddy_cluster::JobStatus;

    #[test]
    fn every_family_has_help_and_type_and_follows_the_naming_scheme() {
        let text = render(&[], &[], &JobManagerCounters::default());
        for m in ALL {
            assert!(eddy_core::metrics::follows_naming_scheme(&m), "{}", m.name);
            assert!(text.contains(&format!("# TYPE {} {}\n", m.name, m.kind.name())));
        }
        assert!(text.contains("eddy_jobmanager_taskmanagers 0\n"));
        assert!(text.contains("eddy_jobmanager_jobs{state=\"RUNNING\"} 0\n"));
    }

    #[test]
    fn job_and_vertex_samples_carry_their_labels() {
        let mut running = sample_job(JobStatus::Running);
        running.name = "quote\"d".into();
        let finished = sample_job(JobStatus::Finished);
        let text = render(&[running, finished], &[], &JobManagerCounters::default());
        let id = "0123456789abcdef0123456789abcdef";
        assert!(
            text.contains(&format!(
                "eddy_job_restarts_total{{job_id=\"{id}\",job_name=\"quote\\\"d\"}} 1\n"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "eddy_task_records_out_total{{job_id=\"{id}\",vertex_id=\"3\",vertex=\"Source: Numbers\"}} 42\n"
        )));
        assert!(text.contains("eddy_jobmanager_jobs{state=\"FINISHED\"} 1\n"));
        // No recovery, no checkpoint statistics, no back-pressure yet: no samples.
        assert!(!text.contains("eddy_job_recovery_duration_seconds_count"));
        assert!(!text.contains("eddy_job_checkpoint_duration_seconds_count"));
        assert!(!text.contains("eddy_task_backpressure_ratio{"));
        // Uptime only for the job that has not ended.
        assert_eq!(text.matches("eddy_job_uptime_seconds{").count(), 1);
        assert!(text.contains("} 0.500\n"));
    }

    #[test]
    fn leadership_heartbeats_recoveries_and_checkpoints_are_written() {
        let mut job = sample_job(JobStatus::Running);
        job.recovery_durations = Histogram::new(&eddy_core::metrics::DURATION_BOUNDS_MS);
        job.recovery_durations.observe(1_200);
        let mut durations = Histogram::new(&eddy_core::metrics::DURATION_BOUNDS_MS);
        durations.observe(40);
        job.checkpoints = Some(serde_json::json!({
            "counts": {"completed": 1},
            "completed_durations_ms": durations,
            "completed_sizes_bytes": Histogram::new(&[1024]),
        }));
        let counters = JobManagerCounters::default();
        counters.leadership_granted.store(2, Ordering::Relaxed);
        counters.heartbeat_timeouts.store(1, Ordering::Relaxed);
        let text = render(&[job], &[], &counters);
        let id = "0123456789abcdef0123456789abcdef";
        let labels = format!("job_id=\"{id}\",job_name=\"sequence\"");
        for line in [
            "eddy_jobmanager_leadership_granted_total 2".to_string(),
            "eddy_jobmanager_leadership_lost_total 0".to_string(),
            "eddy_jobmanager_heartbeat_timeouts_total 1".to_string(),
            format!("eddy_job_recovery_duration_seconds_bucket{{{labels},le=\"1\"}} 0"),
            format!("eddy_job_recovery_duration_seconds_bucket{{{labels},le=\"2.5\"}} 1"),
            format!("eddy_job_recovery_duration_seconds_sum{{{labels}}} 1.2"),
            format!("eddy_job_checkpoint_duration_seconds_count{{{labels}}} 1"),
            format!("eddy_job_checkpoint_size_bytes_count{{{labels}}} 0"),
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
    }
}
