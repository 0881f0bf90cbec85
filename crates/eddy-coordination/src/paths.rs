//! Names and record formats of HA data: the ZooKeeper node layout under
//! `<root>/<cluster-id>`, checkpoint node names (ids zero-padded to 19 digits so that lexical order
//! is numeric order), and the small JSON records stored in nodes and files.
//!
//! Pure functions only; must never do IO. Every path is built here so the layout documented in
//! docs/adr/0003-ha-services.md has one source.

use crate::api::LeaderSessionId;
use crate::error::HaError;
use eddy_core::JobId;
use serde::{Deserialize, Serialize};

/// Normalizes `high-availability.cluster-id`: surrounding slashes dropped (Flink's default is
/// `/default`), must not be empty or contain empty, `.` or `..` segments.
pub(crate) fn normalize_cluster_id(raw: &str) -> Result<String, HaError> {
    let s = raw.trim().trim_matches('/');
    let bad = |reason: &str| HaError::InvalidConfig {
        key: "high-availability.cluster-id",
        value: raw.to_string(),
        reason: reason.to_string(),
    };
    if s.is_empty() {
        return Err(bad("must not be empty"));
    }
    if s.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(bad("must not contain empty, '.' or '..' path segments"));
    }
    Ok(s.to_string())
}

/// Normalizes `high-availability.zookeeper.path.root` to `/a/b` form (leading slash, no trailing).
pub(crate) fn normalize_root(raw: &str) -> Result<String, HaError> {
    let s = raw.trim().trim_end_matches('/');
    let s = s.strip_prefix('/').unwrap_or(s);
    if s.is_empty() {
        return Err(HaError::InvalidConfig {
            key: "high-availability.zookeeper.path.root",
            value: raw.to_string(),
            reason: "must name a znode below '/', e.g. /eddy".into(),
        });
    }
    if s.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(HaError::InvalidConfig {
            key: "high-availability.zookeeper.path.root",
            value: raw.to_string(),
            reason: "must not contain empty, '.' or '..' path segments".into(),
        });
    }
    Ok(format!("/{s}"))
}

/// A checkpoint's node (or file) name: the id zero-padded to 19 digits.
pub(crate) fn checkpoint_node_name(id: u64) -> String {
    format!("{id:019}")
}

pub(crate) fn parse_checkpoint_node_name(name: &str) -> Option<u64> {
    if name.len() >= 19 && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

/// The ZooKeeper layout of one cluster. See docs/adr/0003-ha-services.md.
#[derive(Clone, Debug)]
pub(crate) struct ZkPaths {
    base: String,
}

impl ZkPaths {
    pub(crate) fn new(root: &str, cluster_id: &str) -> Result<Self, HaError> {
        Ok(ZkPaths {
            base: format!(
                "{}/{}",
                normalize_root(root)?,
                normalize_cluster_id(cluster_id)?
            ),
        })
    }

    /// `<root>/<cluster-id>`
    pub(crate) fn base(&self) -> &str {
        &self.base
    }
    /// Parent of the election latches.
    pub(crate) fn leader_dir(&self) -> String {
        format!("{}/leader", self.base)
    }
    /// Prefix of the ephemeral sequential latch nodes.
    pub(crate) fn latch_prefix(&self) -> String {
        format!("{}/leader/latch-", self.base)
    }
    /// Ephemeral node with the leader's `{address, session_id}`.
    pub(crate) fn leader_info(&self) -> String {
        format!("{}/leader-info", self.base)
    }
    pub(crate) fn jobgraphs_dir(&self) -> String {
        format!("{}/jobgraphs", self.base)
    }
    pub(crate) fn jobgraph(&self, job: JobId) -> String {
        format!("{}/jobgraphs/{job}", self.base)
    }
    pub(crate) fn jobs_dir(&self) -> String {
        format!("{}/jobs", self.base)
    }
    pub(crate) fn job(&self, job: JobId) -> String {
        format!("{}/jobs/{job}", self.base)
    }
    pub(crate) fn checkpoints_dir(&self, job: JobId) -> String {
        format!("{}/jobs/{job}/checkpoints", self.base)
    }
    pub(crate) fn checkpoint(&self, job: JobId, id: u64) -> String {
        format!(
            "{}/jobs/{job}/checkpoints/{}",
            self.base,
            checkpoint_node_name(id)
        )
    }
    pub(crate) fn counter(&self, job: JobId) -> String {
        format!("{}/jobs/{job}/checkpoint-counter", self.base)
    }
    pub(crate) fn job_results_dir(&self) -> String {
        format!("{}/job-results", self.base)
    }
    pub(crate) fn job_result(&self, job: JobId) -> String {
        format!("{}/job-results/{job}", self.base)
    }

    /// The persistent directories created at start-up.
    pub(crate) fn static_dirs(&self) -> Vec<String> {
        vec![
            self.leader_dir(),
            self.jobgraphs_dir(),
            self.jobs_dir(),
            self.job_results_dir(),
        ]
    }
}

/// Whether a job result's HA data has been cleaned up yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum JobResultState {
    Dirty,
    Clean,
}

/// A job result store entry (a ZooKeeper node or a JSON file).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JobResultEntry {
    pub state: JobResultState,
    pub result: serde_json::Value,
    /// The leader session that wrote the entry last.
    pub leader_session: LeaderSessionId,
}

/// Data of `jobgraphs/<job-id>`: where the blob is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct JobGraphPointer {
    pub path: String,
    pub leader_session: LeaderSessionId,
}

/// Data of `jobs/<job-id>/checkpoints/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CheckpointPointer {
    pub pointer: String,
    pub leader_session: LeaderSessionId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_follows_the_adr() {
        let p = ZkPaths::new("/eddy/", "/default").unwrap();
        let job = JobId(0xab);
        assert_eq!(p.base(), "/eddy/default");
        assert_eq!(p.latch_prefix(), "/eddy/default/leader/latch-");
        assert_eq!(p.leader_info(), "/eddy/default/leader-info");
        assert_eq!(p.jobgraph(job), format!("/eddy/default/jobgraphs/{job}"));
        assert_eq!(
            p.checkpoint(job, 7),
            format!("/eddy/default/jobs/{job}/checkpoints/0000000000000000007")
        );
        assert_eq!(
            p.counter(job),
            format!("/eddy/default/jobs/{job}/checkpoint-counter")
        );
        assert_eq!(
            p.job_result(job),
            format!("/eddy/default/job-results/{job}")
        );
        assert_eq!(ZkPaths::new("eddy", "a/b").unwrap().base(), "/eddy/a/b");
    }

    #[test]
    fn bad_settings_are_rejected_with_their_key() {
        assert!(ZkPaths::new("/", "x")
            .unwrap_err()
            .to_string()
            .contains("path.root"));
        assert!(ZkPaths::new("/eddy", "//")
            .unwrap_err()
            .to_string()
            .contains("cluster-id"));
        assert!(ZkPaths::new("/a//b", "x").is_err());
        assert!(ZkPaths::new("/a", "x/../y").is_err());
    }

    #[test]
    fn checkpoint_names_sort_numerically() {
        assert_eq!(
            parse_checkpoint_node_name(&checkpoint_node_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert!(checkpoint_node_name(9) < checkpoint_node_name(10));
        assert_eq!(parse_checkpoint_node_name("12"), None);
    }
}
