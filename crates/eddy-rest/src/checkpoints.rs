//! `GET /jobs/:jobid/checkpoints`: Flink's `CheckpointingStatistics` shape (`counts`, `summary`,
//! `latest`, `history`) built from what `JobDetails` reports about checkpoints: the checkpoint
//! coordinator's statistics (`JobDetails::checkpoints`, the serialized `CheckpointStats` of
//! eddy-recovery) when the job checkpoints, else only the completed/failed counts.
//!
//! This file must never fill a field with a number the JobManager did not report: what Eddy does
//! not record (alignment, per-task statistics, external paths, the summary percentiles) is
//! `null`. To report more, extend [`checkpoint_stats_json`] and the mirror types below; the
//! handler and docs/rest.md already describe the full shape.

use eddy_cluster::JobDetails;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// Flink's summary statistics, each `{min, max, avg, p50, p90, p95, p99, p999}` once recorded.
pub const SUMMARY_FIELDS: [&str; 6] = [
    "checkpointed_size",
    "state_size",
    "end_to_end_duration",
    "alignment_buffered",
    "processed_data",
    "persisted_data",
];

/// What eddy-recovery's `CheckpointStats` serializes to (read leniently: a field it stops
/// sending becomes `null` here rather than an error).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Stats {
    counts: Counts,
    latest_completed: Option<Summary>,
    latest_savepoint: Option<Summary>,
    latest_failed: Option<Summary>,
    latest_restored: Option<Restored>,
    /// Oldest first.
    history: Vec<Summary>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Counts {
    total: Option<u64>,
    in_progress: Option<u64>,
    completed: Option<u64>,
    failed: Option<u64>,
    restored: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Summary {
    id: Option<u64>,
    /// `checkpoint`, `savepoint` or `stop-with-savepoint`.
    kind: Option<String>,
    /// `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    status: Option<String>,
    trigger_timestamp_ms: Option<u64>,
    /// Completion (metadata written) or failure time.
    end_timestamp_ms: Option<u64>,
    acknowledged: Option<u64>,
    total: Option<u64>,
    state_size: Option<u64>,
    failure: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Restored {
    id: Option<u64>,
    restore_timestamp_ms: Option<u64>,
}

/// The checkpoint statistics of one job in Flink's shape.
///
/// With the coordinator's statistics: `counts` are its counts; `latest.*` and `history` (newest
/// first, as Flink lists it) are its records. `end_to_end_duration` is trigger → completion
/// (Eddy completes once the metadata is written; Flink measures to the last acknowledgement).
/// `summary.*` stays `null`: Flink's summary covers every checkpoint of the run, and Eddy keeps
/// only the recent history.
///
/// Without them (checkpointing disabled): `counts.completed` / `counts.failed` from
/// `JobDetails`, everything else `null` / empty.
pub fn checkpoint_stats_json(d: &JobDetails) -> Value {
    let stats = match &d.checkpoints {
        Some(v) => match serde_json::from_value::<Stats>(v.clone()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(
                    "job {}: unreadable checkpoint statistics ({e}); reporting counts only",
                    d.job_id
                );
                None
            }
        },
        None => None,
    };
    let summary: Map<String, Value> = SUMMARY_FIELDS
        .iter()
        .map(|f| (f.to_string(), Value::Null))
        .collect();
    let Some(s) = stats else {
        return json!({
            "counts": {
                "restored": 0,
                "total": d.completed_checkpoints + d.failed_checkpoints,
                "in_progress": 0,
                "completed": d.completed_checkpoints,
                "failed": d.failed_checkpoints,
            },
            "summary": summary,
            "latest": { "completed": null, "savepoint": null, "failed": null, "restored": null },
            "history": [],
        });
    };
    let history: Vec<Value> = s.history.iter().rev().map(checkpoint_json).collect();
    json!({
        "counts": {
            "restored": s.counts.restored.unwrap_or(0),
            "total": s.counts.total,
            "in_progress": s.counts.in_progress.unwrap_or(0),
            "completed": s.counts.completed.unwrap_or(d.completed_checkpoints),
            "failed": s.counts.failed.unwrap_or(d.failed_checkpoints),
        },
        "summary": summary,
        "latest": {
            "completed": s.latest_completed.as_ref().map(checkpoint_json),
            "savepoint": s.latest_savepoint.as_ref().map(checkpoint_json),
            "failed": s.latest_failed.as_ref().map(checkpoint_json),
            "restored": s.latest_restored.as_ref().map(|r| json!({
                "id": r.id,
                "restore_timestamp": r.restore_timestamp_ms,
                // Not recorded: Flink's field is required; false (see docs/rest.md).
                "is_savepoint": false,
                "external_path": null,
            })),
        },
        "history": history,
    })
}

/// One checkpoint as Flink's `CheckpointStatistics` (with the completed / failed extras).
fn checkpoint_json(c: &Summary) -> Value {
    let kind = c.kind.as_deref().unwrap_or("checkpoint");
    let status = c.status.as_deref().unwrap_or("IN_PROGRESS");
    let class_name = match status {
        "COMPLETED" => "completed",
        "FAILED" => "failed",
        _ => "in_progress",
    };
    let checkpoint_type = match kind {
        "savepoint" => "SAVEPOINT",
        "stop-with-savepoint" => "SYNC_SAVEPOINT",
        _ => "CHECKPOINT",
    };
    let duration = match (c.trigger_timestamp_ms, c.end_timestamp_ms) {
        (Some(t), Some(e)) => json!(e.saturating_sub(t)),
        // In progress: Flink's field is required; -1 is its "not known".
        _ => json!(-1),
    };
    let mut v = json!({
        "className": class_name,
        "id": c.id,
        "status": status,
        "is_savepoint": kind != "checkpoint",
        "checkpoint_type": checkpoint_type,
        "trigger_timestamp": c.trigger_timestamp_ms,
        // Not recorded: -1, Flink's "not known".
        "latest_ack_timestamp": -1,
        // Every snapshot is full: what the checkpoint wrote is the state size.
        "checkpointed_size": c.state_size,
        "state_size": c.state_size,
        "end_to_end_duration": duration,
        // Flink reports 0 since 1.11 (the field is deprecated).
        "alignment_buffered": 0,
        "processed_data": -1,
        // Aligned checkpoints only: no in-flight data is persisted.
        "persisted_data": 0,
        "num_subtasks": c.total,
        "num_acknowledged_subtasks": c.acknowledged,
        "tasks": {},
        // Eddy's own: when it completed or failed.
        "end_timestamp": c.end_timestamp_ms,
    });
    if let Some(obj) = v.as_object_mut() {
        match status {
            "COMPLETED" => {
                obj.insert("external_path".into(), Value::Null);
                // Not tracked per checkpoint; Flink's field is a required boolean.
                obj.insert("discarded".into(), json!(false));
            }
            "FAILED" => {
                obj.insert("failure_timestamp".into(), json!(c.end_timestamp_ms));
                obj.insert("failure_message".into(), json!(c.failure));
            }
            _ => {}
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::sample_job;
    use eddy_cluster::JobStatus;

    #[test]
    fn without_coordinator_statistics_only_the_counts_are_known() {
        let mut d = sample_job(JobStatus::Running);
        d.completed_checkpoints = 5;
        d.failed_checkpoints = 1;
        let c = checkpoint_stats_json(&d);
        assert_eq!(c["counts"]["completed"], 5);
        assert_eq!(c["counts"]["failed"], 1);
        assert_eq!(c["counts"]["total"], 6);
        assert_eq!(c["counts"]["restored"], 0);
        assert_eq!(c["counts"]["in_progress"], 0);
        assert!(c["latest"]["completed"].is_null());
        assert!(c["summary"]["state_size"].is_null());
        assert_eq!(c["history"], json!([]));
    }

    #[test]
    fn coordinator_statistics_map_to_flink_fields_newest_first() {
        let mut d = sample_job(JobStatus::Running);
        let done = json!({"id": 1, "kind": "checkpoint", "status": "COMPLETED", "trigger_timestamp_ms": 1000,
            "end_timestamp_ms": 1250, "acknowledged": 4, "total": 4, "state_size": 2048, "failure": null});
        let failed = json!({"id": 2, "kind": "savepoint", "status": "FAILED", "trigger_timestamp_ms": 2000,
            "end_timestamp_ms": 2100, "acknowledged": 1, "total": 4, "state_size": 0, "failure": "declined"});
        let pending = json!({"id": 3, "kind": "checkpoint", "status": "IN_PROGRESS", "trigger_timestamp_ms": 3000,
            "end_timestamp_ms": null, "acknowledged": 2, "total": 4, "state_size": 10, "failure": null});
        d.checkpoints = Some(json!({
            "counts": {"total": 3, "in_progress": 1, "completed": 1, "failed": 1, "restored": 0},
            "latest_completed": done, "latest_savepoint": null, "latest_failed": failed,
            "latest_restored": {"id": 1, "restore_timestamp_ms": 900},
            "history": [done, failed, pending],
        }));
        let c = checkpoint_stats_json(&d);
        assert_eq!(
            c["counts"],
            json!({"restored": 0, "total": 3, "in_progress": 1, "completed": 1, "failed": 1})
        );
        let latest = &c["latest"]["completed"];
        assert_eq!(latest["className"], "completed");
        assert_eq!(latest["end_to_end_duration"], 250);
        assert_eq!(latest["state_size"], 2048);
        assert_eq!(latest["num_acknowledged_subtasks"], 4);
        assert_eq!(latest["latest_ack_timestamp"], -1);
        assert_eq!(latest["checkpointed_size"], 2048);
        assert_eq!(latest["alignment_buffered"], 0);
        assert_eq!(latest["discarded"], false);
        let f = &c["latest"]["failed"];
        assert_eq!(
            (
                f["failure_message"].as_str(),
                f["failure_timestamp"].as_u64()
            ),
            (Some("declined"), Some(2100))
        );
        assert_eq!(f["checkpoint_type"], "SAVEPOINT");
        assert_eq!(f["is_savepoint"], true);
        assert_eq!(c["latest"]["restored"]["restore_timestamp"], 900);
        assert!(c["latest"]["savepoint"].is_null());
        let ids: Vec<u64> = c["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, vec![3, 2, 1]);
        assert_eq!(c["history"][0]["end_to_end_duration"], -1);
        assert!(c["summary"]["end_to_end_duration"].is_null());
    }
}
