//! `POST /jobs` (Eddy's own endpoint; Flink's takes a multipart JobGraph): the JSON body and its
//! translation into a [`JobSpec`]. The job's configuration is the JobManager's configuration
//! overlaid with the body's `config`. `savepointPath` and `allowNonRestoredState: true` are
//! refused until savepoints exist (issue 11), as are config values Eddy cannot act on
//! (`eddy_core::config::SUPPORT`).
//!
//! Pure: no IO. It must never accept a value it cannot validate: an unknown key, a value of the
//! wrong type or a cross-key conflict is a one-line error naming the key and the value.

use eddy_core::config::Config;
use eddy_runtime::registry::JobSpec;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// The body of `POST /jobs`. Unknown fields are refused, so a typo is not silently ignored.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The registered job's name, e.g. `sequence`.
    pub job: String,
    /// The job's `--name value` arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Defaults to `parallelism.default` of the merged configuration.
    #[serde(default)]
    pub parallelism: Option<u32>,
    /// Flink configuration keys; values may be strings, numbers or booleans.
    #[serde(default)]
    pub config: BTreeMap<String, Value>,
    /// Savepoint or retained checkpoint to restore from.
    #[serde(default, rename = "savepointPath")]
    pub savepoint_path: Option<String>,
    /// Allow state in the savepoint that matches no operator.
    #[serde(default, rename = "allowNonRestoredState")]
    pub allow_non_restored_state: Option<bool>,
}

/// Parses and validates a `POST /jobs` body against the JobManager's configuration. Returns the
/// spec and the configuration warnings (unknown keys, ineffective settings) to log.
pub fn job_spec_from_body(body: &[u8], cluster: &Config) -> Result<(JobSpec, Vec<String>), String> {
    let req: SubmitRequest =
        serde_json::from_slice(body).map_err(|e| format!("invalid job submission body: {e}"))?;
    job_spec(req, cluster)
}

/// [`job_spec_from_body`] for an already parsed request.
pub fn job_spec(req: SubmitRequest, cluster: &Config) -> Result<(JobSpec, Vec<String>), String> {
    let job = req.job.trim();
    if job.is_empty() {
        return Err(
            "invalid job submission: 'job' is empty: expected the name of a registered job".into(),
        );
    }
    let mut top = Config::default();
    for (key, value) in &req.config {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "invalid value {other} for configuration key '{key}': expected a string, number or boolean"
                ))
            }
        };
        top.try_set(key, &text).map_err(|e| e.to_string())?;
        // Only what one job decides for itself; addresses, ports, HA, storage directories and
        // the REST / test-hook switches are the cluster's (docs/security.md).
        let canonical = eddy_core::config::lookup_key(key).map_or(key.as_str(), |s| s.key);
        if !eddy_core::config::is_job_key(canonical) {
            return Err(format!(
                "configuration key '{key}' cannot be set by a submitted job: it is a cluster setting (set it in the cluster's configuration); a job may set {}",
                job_keys_list()
            ));
        }
    }
    // Resuming: Flink's keys, which the JobManager reads when it creates the job.
    if let Some(path) = req.savepoint_path.as_deref().filter(|p| !p.is_empty()) {
        top.try_set("execution.state-recovery.path", path)
            .map_err(|e| format!("savepointPath: {e}"))?;
    }
    if let Some(allow) = req.allow_non_restored_state {
        top.try_set(
            "execution.state-recovery.ignore-unclaimed-state",
            &allow.to_string(),
        )
        .map_err(|e| e.to_string())?;
    }
    let config = cluster.overlay(&top);
    let warnings = config.validate().map_err(|e| e.to_string())?;
    let parallelism = req
        .parallelism
        .unwrap_or_else(|| config.default_parallelism());
    if parallelism == 0 {
        return Err("invalid parallelism 0: expected at least 1".into());
    }
    let spec = JobSpec {
        name: job.to_string(),
        args: req.args,
        config,
        parallelism,
    };
    Ok((spec, warnings))
}

/// The keys a submitted job may set, for error messages.
fn job_keys_list() -> String {
    let prefixes = eddy_core::config::JOB_KEY_PREFIXES
        .iter()
        .map(|p| format!("{p}*"));
    let keys = eddy_core::config::JOB_KEYS.iter().map(|k| k.to_string());
    prefixes.chain(keys).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Config {
        Config::from_pairs(&[
            ("taskmanager.numberOfTaskSlots", "4"),
            ("parallelism.default", "3"),
        ])
        .unwrap()
    }

    #[test]
    fn body_config_overlays_the_cluster_config() {
        let body = br#"{"job": "sequence", "args": ["--keys", "10"], "parallelism": 2,
            "config": {"restart-strategy.type": "none", "pipeline.max-parallelism": "256"},
            "savepointPath": null, "allowNonRestoredState": false}"#;
        let (spec, _) = job_spec_from_body(body, &cluster()).unwrap();
        assert_eq!(spec.name, "sequence");
        assert_eq!(spec.args, vec!["--keys", "10"]);
        assert_eq!(spec.parallelism, 2);
        assert_eq!(spec.config.get("restart-strategy.type"), Some("none"));
        assert_eq!(spec.config.get("taskmanager.numberOfTaskSlots"), Some("4"));
        assert_eq!(spec.config.get("pipeline.max-parallelism"), Some("256"));
        assert_eq!(spec.config.get("execution.state-recovery.path"), None);
    }

    #[test]
    fn a_job_may_set_job_keys_only_never_cluster_settings() {
        let refused = [
            "high-availability.storageDir",
            "high-availability.type",
            "high-availability.zookeeper.quorum",
            "execution.checkpointing.dir",
            "state.checkpoints.dir",
            "env.log.dir",
            "rest.port",
            "rest.bind-address",
            "jobmanager.rpc.port",
            "taskmanager.data.port",
            "taskmanager.numberOfTaskSlots",
            "eddy.test-hooks.enabled",
            "web.submit.enable",
            "web.cancel.enable",
        ];
        for key in refused {
            let spec = eddy_core::config::lookup_key(key).unwrap();
            let value = spec.default.unwrap_or(match key {
                "high-availability.zookeeper.quorum" => "zk:2181",
                _ => "/tmp/x",
            });
            let body = serde_json::json!({"job": "sequence", "config": {key: value}}).to_string();
            let e = job_spec_from_body(body.as_bytes(), &cluster()).unwrap_err();
            assert!(
                e.starts_with(&format!(
                    "configuration key '{key}' cannot be set by a submitted job"
                )) && e.contains("restart-strategy.*")
                    && !e.contains('\n'),
                "{key}: {e}"
            );
        }
        let allowed = serde_json::json!({"job": "sequence", "config": {
            "parallelism.default": 2, "execution.checkpointing.interval": "1 s",
            "state.checkpoints.num-retained": 3, "restart-strategy.fixed-delay.attempts": 5,
            "execution.buffer-timeout": "10 ms", "state.backend.type": "hashmap"}});
        job_spec_from_body(allowed.to_string().as_bytes(), &cluster()).unwrap();
    }

    #[test]
    fn savepoint_path_and_allow_non_restored_state_become_the_recovery_keys() {
        let (spec, _) = job_spec_from_body(
            br#"{"job": "sequence", "savepointPath": "/tmp/sp-1", "allowNonRestoredState": true}"#,
            &cluster(),
        )
        .unwrap();
        assert_eq!(
            spec.config.savepoint_restore_path(),
            Some(std::path::PathBuf::from("/tmp/sp-1"))
        );
        assert!(spec.config.allow_non_restored_state());
    }

    #[test]
    fn what_eddy_cannot_do_yet_is_refused_not_ignored() {
        let cases: [(&[u8], &str); 2] = [
            (
                br#"{"job": "sequence", "savepointPath": "hdfs://nn/sp-1"}"#,
                "savepointPath: invalid value 'hdfs://nn/sp-1' for key 'execution.state-recovery.path'",
            ),
            (
                br#"{"job": "sequence", "config": {"execution.state-recovery.claim-mode": "LEGACY"}}"#,
                "execution.state-recovery.claim-mode: 'LEGACY' is not supported",
            ),
        ];
        for (body, start) in cases {
            let e = job_spec_from_body(body, &cluster()).unwrap_err();
            assert!(e.starts_with(start) && !e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn parallelism_defaults_to_the_merged_configuration() {
        let (spec, _) = job_spec_from_body(br#"{"job": "sequence"}"#, &cluster()).unwrap();
        assert_eq!(spec.parallelism, 3);
        let (spec, _) = job_spec_from_body(
            br#"{"job": "sequence", "config": {"parallelism.default": "5"}}"#,
            &cluster(),
        )
        .unwrap();
        assert_eq!(spec.parallelism, 5);
    }

    #[test]
    fn bad_values_are_one_line_errors_naming_key_and_value() {
        let e = job_spec_from_body(
            br#"{"job": "s", "config": {"parallelism.default": "many"}}"#,
            &cluster(),
        )
        .unwrap_err();
        assert!(
            e.contains("parallelism.default") && e.contains("many"),
            "{e}"
        );
        let e = job_spec_from_body(
            br#"{"job": "s", "config": {"no.such.key": "1"}}"#,
            &cluster(),
        )
        .unwrap_err();
        assert!(e.contains("no.such.key"), "{e}");
        let e = job_spec_from_body(
            br#"{"job": "s", "config": {"parallelism.default": [1]}}"#,
            &cluster(),
        )
        .unwrap_err();
        assert!(
            e.contains("parallelism.default") && e.contains("[1]"),
            "{e}"
        );
        let e = job_spec_from_body(br#"{"job": "s", "paralelism": 2}"#, &cluster()).unwrap_err();
        assert!(e.contains("paralelism"), "{e}");
        let e = job_spec_from_body(br#"{"job": "s", "parallelism": 0}"#, &cluster()).unwrap_err();
        assert!(e.contains("parallelism 0"), "{e}");
        let e = job_spec_from_body(b"not json", &cluster()).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }
}
