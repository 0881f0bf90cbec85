//! `HaError`: every way an HA service call can fail, each with a one-line message that names the
//! thing that failed (quorum, path, job, leader session). This module must never hide the cause:
//! underlying ZooKeeper and IO errors are kept as `source`.

use crate::api::LeaderSessionId;
use eddy_core::JobId;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of the HA services.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// No ZooKeeper session could be established within the connection timeout.
    #[error("cannot reach ZooKeeper quorum '{quorum}' within {}", fmt_duration(*.timeout))]
    QuorumUnreachable { quorum: String, timeout: Duration },

    /// The quorum string cannot be parsed.
    #[error("invalid ZooKeeper quorum '{quorum}': {reason}")]
    InvalidQuorum { quorum: String, reason: String },

    /// A setting (root path, cluster id, timeout) is malformed.
    #[error("invalid HA setting {key} '{value}': {reason}")]
    InvalidConfig {
        key: &'static str,
        value: String,
        reason: String,
    },

    /// The HA storage directory cannot be created or written.
    #[error("high-availability.storageDir '{}' is not writable: {source}", .path.display())]
    StorageDirNotWritable {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The writer no longer holds leadership (its latch is gone, its ZooKeeper session ended, or it
    /// was revoked locally); the write was not applied.
    #[error("fenced: leader session {session} does not hold leadership any more; {what} rejected")]
    Fenced {
        session: LeaderSessionId,
        what: String,
    },

    /// A ZooKeeper operation failed for another reason (connection loss, ...). For writes the
    /// outcome may be unknown on connection loss.
    #[error("ZooKeeper {op} of '{path}' failed: {source}")]
    ZooKeeper {
        op: &'static str,
        path: String,
        source: zookeeper_client::Error,
    },

    /// There is no usable ZooKeeper session right now (it was lost and is being re-established).
    #[error("no ZooKeeper session to quorum '{quorum}' at the moment (connection lost)")]
    NotConnected { quorum: String },

    /// A filesystem operation on HA data failed.
    #[error("cannot {op} '{}': {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// Stored HA data cannot be decoded or fails verification.
    #[error("corrupt HA data at '{location}': {reason}")]
    Corrupt { location: String, reason: String },

    /// An entry exists already with different content.
    #[error("{what} already exists with different content")]
    Conflict { what: String },

    /// An entry that must exist does not.
    #[error("{what} not found")]
    NotFound { what: String },

    /// A job's HA data cannot be cleaned up before its result is recorded.
    #[error(
        "job {job_id} has no entry in the job result store; its HA data is kept until one exists"
    )]
    NoJobResult { job_id: JobId },

    /// `CheckpointIdCounter::set` would make checkpoint ids repeat.
    #[error("checkpoint id counter of job {job_id} is at {current}; setting it to {requested} would repeat checkpoint ids")]
    CounterWouldDecrease {
        job_id: JobId,
        current: u64,
        requested: u64,
    },

    /// `campaign` was called while this process is already a contender.
    #[error("this JobManager process is already campaigning for leadership")]
    AlreadyCampaigning,

    /// The HA services were closed.
    #[error("HA services are closed")]
    Closed,
}

impl HaError {
    /// True for `Fenced`: the caller is not (or no longer) the leader.
    pub fn is_fenced(&self) -> bool {
        matches!(self, HaError::Fenced { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HaError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn zk(
        op: &'static str,
        path: impl Into<String>,
        source: zookeeper_client::Error,
    ) -> Self {
        HaError::ZooKeeper {
            op,
            path: path.into(),
            source,
        }
    }
}

/// "15 s", "1.5 s", "500 ms": the way Flink users write durations.
pub(crate) fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_unreachable_message_is_one_line_and_names_the_quorum() {
        let e = HaError::QuorumUnreachable {
            quorum: "zk1:2181".into(),
            timeout: Duration::from_secs(15),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach ZooKeeper quorum 'zk1:2181' within 15 s"
        );
        let e = HaError::QuorumUnreachable {
            quorum: "q".into(),
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            e.to_string(),
            "cannot reach ZooKeeper quorum 'q' within 1.5 s"
        );
    }
}
