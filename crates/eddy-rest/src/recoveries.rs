//! The `/jobs/:id/recoveries` shape (Eddy's own endpoint): each recovery's timeline from the
//! JobMaster's `RecoveryRecord`s, with the phase durations in milliseconds worked out here so
//! the dashboard and scripts do not each redo the arithmetic.
//!
//! Never an invented time: a phase not reached yet is `null`, and so is every duration that
//! needs it.

use eddy_cluster::status::RecoveryRecord;
use eddy_cluster::JobDetails;
use serde_json::{json, Value};

/// `GET /jobs/:jobid/recoveries`: oldest first, as many as `web.exception-history-size`.
pub fn recoveries_json(j: &JobDetails) -> Value {
    let list: Vec<Value> = j.recoveries.iter().map(recovery_json).collect();
    json!({
        "jid": j.job_id,
        "restarts": j.restarts,
        "recoveries": list,
    })
}

/// One recovery: the times (ms since epoch) and the phases (ms).
pub fn recovery_json(r: &RecoveryRecord) -> Value {
    let since = |from: i64, to: Option<i64>| to.map(|t| t - from);
    json!({
        "cause": r.cause,
        "detected": r.detected,
        "decided": r.decided,
        "restart-delay": r.restart_delay_ms,
        "deployed": r.deployed,
        "running": r.running,
        "restored-checkpoint": r.restored_checkpoint,
        "complete": r.running.is_some(),
        "durations": {
            "decision": r.decided - r.detected,
            "restore-and-deploy": since(r.decided, r.deployed),
            "deploy-to-running": r.deployed.and_then(|d| since(d, r.running)),
            "total": since(r.detected, r.running),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::tests::sample_job;
    use eddy_cluster::JobStatus;

    #[test]
    fn phases_are_durations_between_the_recorded_times_and_null_when_not_reached() {
        let mut j = sample_job(JobStatus::Running);
        j.recoveries = vec![
            RecoveryRecord {
                cause: "TaskManager tm-1 lost".into(),
                detected: 10_000,
                decided: 10_002,
                restart_delay_ms: 100,
                deployed: Some(10_150),
                running: Some(10_190),
                restored_checkpoint: Some(7),
            },
            RecoveryRecord {
                cause: "again".into(),
                detected: 20_000,
                decided: 20_000,
                restart_delay_ms: 0,
                deployed: None,
                running: None,
                restored_checkpoint: None,
            },
        ];
        let v = recoveries_json(&j);
        let r = &v["recoveries"][0];
        assert_eq!(r["detected"], 10_000);
        assert_eq!(r["restored-checkpoint"], 7);
        assert_eq!(r["complete"], true);
        assert_eq!(r["durations"]["decision"], 2);
        assert_eq!(r["durations"]["restore-and-deploy"], 148);
        assert_eq!(r["durations"]["deploy-to-running"], 40);
        assert_eq!(r["durations"]["total"], 190);
        let open = &v["recoveries"][1];
        assert_eq!(open["complete"], false);
        assert!(open["running"].is_null());
        assert!(open["durations"]["total"].is_null());
        assert!(open["durations"]["restore-and-deploy"].is_null());
        assert_eq!(v["restarts"], 1);
    }
}
