//! The JobManager's savepoint operations (Flink's asynchronous operations): a trigger id per
//! requested savepoint, stop-with-savepoint or disposal, and its outcome for the REST API.
//! The JobMaster core does the savepoint itself; this file keeps the bookkeeping the shell
//! answers `GET /jobs/:id/savepoints/:triggerid` from, and the IO helpers the shell calls.

use crate::jobmaster::JobMaster;
use eddy_core::config::Config;
use eddy_core::JobId;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How many finished operations are remembered (oldest forgotten first).
const KEPT: usize = 1000;

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavepointMode {
    /// A savepoint; the job keeps running.
    Savepoint,
    /// A savepoint, then the job is cancelled (REST `cancel-job: true`).
    SavepointThenCancel,
    /// Stop-with-savepoint: a terminating savepoint, then the job ends FINISHED; `drain`
    /// first advances event time to the end (fires every window and timer).
    Stop { drain: bool },
}

/// The state of one asynchronous operation, as `GET .../savepoints/:triggerid` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OperationStatus {
    InProgress,
    Completed { location: String },
    Failed { cause: String },
}

#[derive(Debug)]
struct Operation {
    job: JobId,
    checkpoint_id: u64,
    dir: String,
    mode: SavepointMode,
    outcome: Option<OperationStatus>,
    /// Stop-with-savepoint: where its savepoint was written; the operation completes only
    /// once the job is FINISHED (Flink's answer), and fails if the job fails over first.
    written: Option<String>,
}

/// The operations of this JobManager, by trigger id.
#[derive(Debug, Default)]
pub struct SavepointOperations {
    ops: BTreeMap<String, Operation>,
    order: Vec<String>,
}

/// A fresh trigger id: 32 hex characters, like Flink's `TriggerId`.
fn trigger_id() -> String {
    format!("{:032x}", eddy_core::ids::random_u128())
}

/// The savepoint target: the requested directory, else `state.savepoints.dir`; a one-line error
/// when neither is set. Returns the fresh `savepoint-<job>-<random>` directory under it.
pub fn target_dir(requested: Option<&str>, config: &Config, job: JobId) -> Result<PathBuf, String> {
    let base = match requested.filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d.strip_prefix("file://").unwrap_or(d)),
        None => config.savepoints_dir().ok_or_else(|| {
            "no savepoint target directory: pass one (eddy savepoint JOB DIR, REST target-directory) or set state.savepoints.dir".to_string()
        })?,
    };
    let shown = base.to_string_lossy();
    let bad_s3 = shown
        .strip_prefix("s3://")
        .is_some_and(|r| r.is_empty() || r.starts_with('/'));
    if bad_s3 || (shown.contains("://") && !shown.starts_with("s3://")) {
        return Err(format!(
            "invalid savepoint target directory '{shown}': allowed: a local or shared path, file:///path or s3://bucket/prefix"
        ));
    }
    if eddy_recovery::storage::is_s3(&base) {
        return Ok(eddy_recovery::savepoint::new_savepoint_dir(&base, job));
    }
    let base = if base.is_relative() {
        std::env::current_dir()
            .map(|c| c.join(&base))
            .unwrap_or(base)
    } else {
        base
    };
    Ok(eddy_recovery::savepoint::new_savepoint_dir(&base, job))
}

impl SavepointOperations {
    /// Records a triggered savepoint; returns its trigger id.
    pub fn started(
        &mut self,
        job: JobId,
        checkpoint_id: u64,
        dir: &Path,
        mode: SavepointMode,
    ) -> String {
        let id = trigger_id();
        self.ops.insert(
            id.clone(),
            Operation {
                job,
                checkpoint_id,
                dir: dir.to_string_lossy().into_owned(),
                mode,
                outcome: None,
                written: None,
            },
        );
        self.order.push(id.clone());
        if self.order.len() > KEPT {
            let old = self.order.remove(0);
            self.ops.remove(&old);
        }
        id
    }

    /// The savepoint `checkpoint_id` of `job` is written: its operation is complete. Returns
    /// whether the job must now be cancelled (`cancel-job`).
    pub fn written(&mut self, job: JobId, checkpoint_id: u64, location: &Path) -> bool {
        let mut cancel = false;
        for op in self.ops.values_mut() {
            if op.job == job && op.checkpoint_id == checkpoint_id && op.outcome.is_none() {
                let location = location.to_string_lossy().into_owned();
                if matches!(op.mode, SavepointMode::Stop { .. }) {
                    op.written = Some(location);
                    continue;
                }
                op.outcome = Some(OperationStatus::Completed { location });
                cancel = op.mode == SavepointMode::SavepointThenCancel;
            }
        }
        cancel
    }

    /// The directory a savepoint of `job` goes to, if `checkpoint_id` is one of ours.
    pub fn dir_of(&self, job: JobId, checkpoint_id: u64) -> Option<PathBuf> {
        self.ops
            .values()
            .find(|o| o.job == job && o.checkpoint_id == checkpoint_id)
            .map(|o| PathBuf::from(&o.dir))
    }

    /// `job` is about to leave the JobManager's table (archived): its stop-with-savepoint
    /// operations get their final outcome now.
    pub fn job_ending(&mut self, job: JobId, jm: &JobMaster) {
        for op in self.ops.values_mut() {
            if op.job == job && op.outcome.is_none() {
                Self::resolve_stop(op, jm);
            }
        }
    }

    /// Settles a stop-with-savepoint operation once its job says how the stop went.
    fn resolve_stop(op: &mut Operation, jm: &JobMaster) {
        if !matches!(op.mode, SavepointMode::Stop { .. }) {
            return;
        }
        op.outcome = match jm.stop_outcome(op.checkpoint_id) {
            None => None,
            Some(Ok(())) => Some(OperationStatus::Completed {
                location: op.written.clone().unwrap_or_else(|| op.dir.clone()),
            }),
            Some(Err(cause)) => Some(OperationStatus::Failed { cause }),
        };
    }

    /// The status of operation `trigger` of `job` (`None`: unknown trigger id).
    pub fn status(
        &mut self,
        job: JobId,
        trigger: &str,
        jobs: &BTreeMap<JobId, JobMaster>,
    ) -> Option<OperationStatus> {
        let op = self.ops.get_mut(trigger)?;
        if op.job != job {
            return None;
        }
        if let Some(o) = &op.outcome {
            return Some(o.clone());
        }
        if let Some(jm) = jobs.get(&job) {
            Self::resolve_stop(op, jm);
            if let Some(o) = &op.outcome {
                return Some(o.clone());
            }
        }
        if matches!(op.mode, SavepointMode::Stop { .. }) && jobs.contains_key(&job) {
            return Some(OperationStatus::InProgress);
        }
        let outcome = match jobs
            .get(&job)
            .map(|jm| jm.savepoint_outcome(op.checkpoint_id))
        {
            Some(None) => return Some(OperationStatus::InProgress),
            // Completed in the coordinator but not yet recorded as written: still writing.
            Some(Some(Ok(()))) => return Some(OperationStatus::InProgress),
            Some(Some(Err(cause))) => OperationStatus::Failed {
                cause: format!("savepoint {} failed: {cause}", op.checkpoint_id),
            },
            None => OperationStatus::Failed {
                cause: format!(
                    "job {job} ended before savepoint {} completed",
                    op.checkpoint_id
                ),
            },
        };
        op.outcome = Some(outcome.clone());
        Some(outcome)
    }
}

/// What a job submitted with `execution.state-recovery.path` (`-s`) resumes from: the
/// snapshot's directory, its metadata and `--allow-non-restored-state`. Checks that it reads
/// and maps onto `graph` (uids, max parallelism): every problem is one line. `None` without
/// `-s`.
pub fn resume_plan(
    spec: &eddy_runtime::registry::JobSpec,
    graph: &eddy_runtime::graph::JobGraph,
) -> Result<Option<(String, eddy_recovery::CompletedCheckpoint, bool)>, String> {
    let Some(path) = spec.config.savepoint_restore_path() else {
        return Ok(None);
    };
    let (dir, snapshot) = eddy_recovery::savepoint::open_snapshot(&path)
        .map_err(|e| format!("cannot resume from '{}': {e}", path.display()))?;
    let allow = spec.config.allow_non_restored_state();
    let shapes: Vec<eddy_recovery::savepoint::VertexShape> = graph
        .vertices
        .iter()
        .map(|v| eddy_recovery::savepoint::VertexShape {
            vertex: v.id as u32,
            operator_uids: v.operator_uids.clone(),
            parallelism: v.parallelism,
            max_parallelism: v.max_parallelism,
        })
        .collect();
    eddy_recovery::savepoint::assign_to_graph(&snapshot, &shapes, allow)
        .map_err(|e| format!("cannot resume from '{}': {e}", path.display()))?;
    Ok(Some((dir.to_string_lossy().into_owned(), snapshot, allow)))
}

/// Deletes the savepoint (or retained checkpoint) at `path` (`file://` accepted): it must hold a
/// readable `_metadata`. Returns the directory removed.
pub fn dispose(path: &str) -> Result<PathBuf, String> {
    let p = path.strip_prefix("file://").unwrap_or(path);
    eddy_recovery::savepoint::dispose(Path::new(p))
        .map_err(|e| format!("cannot dispose of savepoint '{path}': {e}"))
}
