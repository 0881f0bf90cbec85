//! Savepoints on a filesystem path: making one self-contained, finding the snapshot a `-s PATH`
//! names, mapping its state onto a (possibly rescaled, possibly changed) job graph, and disposing
//! of one. The format is described in docs/savepoints.md.
//!
//! Tasks write a savepoint's state files exactly like a checkpoint's, into `chk-<id>/` of the
//! job's checkpoint directory. When every task acknowledged, [`finalize_savepoint`] hard-links
//! (or, across filesystems, copies) each file into the savepoint directory under a plain name,
//! rewrites the handles to those names and writes `_metadata` last. The savepoint directory then
//! holds every byte it needs, with paths relative to itself: it can be moved or copied, and the
//! job's checkpoint directory can be deleted.

use crate::ids::ExecutionVertexId;
use crate::metadata::{CompletedCheckpoint, StateFileHandle, TaskState, TaskStateSnapshot};
use crate::storage::{
    discard_directory, ensure_dir, file_exists, is_s3, read_metadata, resolve_state_file, s3,
    sync_dir, write_metadata, StorageError, METADATA_FILE,
};
use eddy_core::ids::random_u128;
use eddy_core::JobId;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The name prefix of a savepoint directory (Flink's).
pub const SAVEPOINT_DIR_PREFIX: &str = "savepoint-";

/// A fresh, unique savepoint directory under `target`: `savepoint-<job:6>-<random:12>` (Flink's
/// naming). Not created yet.
pub fn new_savepoint_dir(target: &Path, job: JobId) -> PathBuf {
    let job = job.to_string();
    let random = format!("{:012x}", random_u128() as u64 & 0xFFFF_FFFF_FFFF);
    target.join(format!(
        "{SAVEPOINT_DIR_PREFIX}{}-{random}",
        &job[..6.min(job.len())]
    ))
}

/// Makes the savepoint `metadata`, whose state files tasks wrote into `checkpoint_dir`
/// (`chk-<id>/`), self-contained in `savepoint_dir`: every file is hard-linked (copied when a
/// link is impossible) under a plain relative name, then `_metadata` is written atomically.
/// Returns the metadata as written. On failure the savepoint directory is removed again.
pub fn finalize_savepoint(
    checkpoint_dir: &Path,
    savepoint_dir: &Path,
    metadata: &CompletedCheckpoint,
) -> Result<CompletedCheckpoint, StorageError> {
    let result = link_files_and_write(checkpoint_dir, savepoint_dir, metadata);
    if result.is_err() {
        let _ = discard_directory(savepoint_dir);
    }
    result
}

fn link_files_and_write(
    checkpoint_dir: &Path,
    savepoint_dir: &Path,
    metadata: &CompletedCheckpoint,
) -> Result<CompletedCheckpoint, StorageError> {
    if file_exists(&savepoint_dir.join(METADATA_FILE)) {
        return Err(StorageError::AlreadyExists {
            path: savepoint_dir.join(METADATA_FILE),
        });
    }
    ensure_dir(savepoint_dir)?;
    let mut out = metadata.clone();
    let mut linked: BTreeMap<String, String> = BTreeMap::new();
    for task in &mut out.tasks {
        for op in &mut task.state.operators {
            for handle in &mut op.files {
                if let Some(name) = linked.get(&handle.path) {
                    handle.path = name.clone();
                    continue;
                }
                let source = resolve_state_file(checkpoint_dir, handle)?;
                // Shared files (`../shared/x`) become plain files of the savepoint.
                let name = handle.path.replace('/', "-").replace("..-", "");
                let dest = savepoint_dir.join(&name);
                link_or_copy(&source, &dest, handle)?;
                linked.insert(handle.path.clone(), name.clone());
                handle.path = name;
            }
        }
    }
    sync_dir(savepoint_dir)?;
    write_metadata(savepoint_dir, &out)?;
    Ok(out)
}

/// Hard-links `source` to `dest`; copies (fsynced, via a temp name) when linking fails. With S3 on
/// either side: a server-side copy within one bucket, else read and write.
fn link_or_copy(source: &Path, dest: &Path, handle: &StateFileHandle) -> Result<(), StorageError> {
    if is_s3(source) || is_s3(dest) {
        let len = s3::copy(source, dest)?;
        if len != handle.len {
            return Err(StorageError::LengthMismatch {
                path: source.to_path_buf(),
                expected: handle.len,
                actual: len,
            });
        }
        return Ok(());
    }
    match fs::hard_link(source, dest) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::MissingFile {
                path: source.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    let temp = dest.with_file_name(format!(
        ".{}.tmp-{:016x}",
        dest.file_name().and_then(|n| n.to_str()).unwrap_or("state"),
        random_u128() as u64
    ));
    let copied = fs::copy(source, &temp)
        .and_then(|len| {
            fs::File::open(&temp)?.sync_all()?;
            Ok(len)
        })
        .map_err(|e| io_error("copy", source, e));
    let copied = copied.and_then(|len| {
        if len != handle.len {
            return Err(StorageError::LengthMismatch {
                path: source.to_path_buf(),
                expected: handle.len,
                actual: len,
            });
        }
        fs::rename(&temp, dest).map_err(|e| io_error("rename", &temp, e))
    });
    if copied.is_err() {
        let _ = fs::remove_file(&temp);
    }
    copied
}

fn io_error(op: &'static str, path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot to resume from: a savepoint directory, a retained checkpoint directory
/// (`chk-<n>/`), or the `_metadata` file of either. Returns the directory its handles are
/// relative to and its verified metadata (format, version, checksum, every file present with
/// its length).
pub fn open_snapshot(path: &Path) -> Result<(PathBuf, CompletedCheckpoint), StorageError> {
    let metadata_path = if path.file_name().and_then(|n| n.to_str()) == Some(METADATA_FILE)
        || !(is_s3(path) || path.is_dir())
    {
        path.to_path_buf()
    } else {
        path.join(METADATA_FILE)
    };
    let cp = read_metadata(&metadata_path)?;
    let dir = metadata_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok((dir, cp))
}

/// Deletes a savepoint (or retained checkpoint) directory: `path` must hold a readable
/// `_metadata` (so a typo never deletes an unrelated directory). `_metadata` goes first.
pub fn dispose(path: &Path) -> Result<PathBuf, StorageError> {
    let (dir, _) = open_snapshot(path)?;
    discard_directory(&dir)?;
    Ok(dir)
}

/// One vertex of the job that resumes: its operators, parallelism and max parallelism.
#[derive(Clone, Debug)]
pub struct VertexShape {
    pub vertex: u32,
    pub operator_uids: Vec<String>,
    pub parallelism: u32,
    pub max_parallelism: u32,
}

/// Maps the state of `snapshot` onto the subtasks of a new job graph, matching operators by uid.
/// The result has one task entry per new subtask that gets any state, keyed by the new
/// execution vertex ids (so a deployment looks it up as it looks up a checkpoint's).
///
/// - same parallelism: subtask `i` gets old subtask `i`'s state of each operator;
/// - another parallelism (rescale): every new subtask gets every old subtask's state of the
///   operator: keyed state is one blob per key group and each subtask keeps only its key-group
///   range; operator (list) state arrives as the union, and each connector takes its share;
/// - state of a uid no vertex has: an error naming it, unless `allow_non_restored_state`;
/// - a max parallelism different from the one the state was written with: an error (key groups
///   cannot be redistributed across a different number of groups).
pub fn assign_to_graph(
    snapshot: &CompletedCheckpoint,
    vertices: &[VertexShape],
    allow_non_restored_state: bool,
) -> Result<CompletedCheckpoint, String> {
    let mut old_subtasks: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
    for t in &snapshot.tasks {
        for op in &t.state.operators {
            old_subtasks
                .entry(op.operator_uid.as_str())
                .or_default()
                .insert(t.task.subtask);
        }
    }
    let recorded: BTreeMap<&str, (u32, u32)> = snapshot
        .operators
        .iter()
        .map(|o| (o.uid.as_str(), (o.parallelism, o.max_parallelism)))
        .collect();
    let mut owner: BTreeMap<&str, &VertexShape> = BTreeMap::new();
    for v in vertices {
        for uid in &v.operator_uids {
            owner.insert(uid.as_str(), v);
        }
    }
    let mut unmatched: Vec<&str> = old_subtasks
        .keys()
        .copied()
        .filter(|uid| !owner.contains_key(uid))
        .collect();
    unmatched.sort_unstable();
    if !unmatched.is_empty() && !allow_non_restored_state {
        return Err(format!(
            "cannot map the state of operator uid '{}' (from savepoint of job {}) to the new job: no operator has that uid{}; pass --allow-non-restored-state (REST allowNonRestoredState: true) to skip it",
            unmatched[0],
            snapshot.job_id,
            if unmatched.len() > 1 {
                format!(" (nor {} more: {})", unmatched.len() - 1, unmatched[1..].join(", "))
            } else {
                String::new()
            }
        ));
    }
    let mut tasks: BTreeMap<ExecutionVertexId, TaskStateSnapshot> = BTreeMap::new();
    for (uid, subtasks) in &old_subtasks {
        let Some(v) = owner.get(uid) else { continue };
        let (old_p, old_max) = recorded
            .get(uid)
            .copied()
            .unwrap_or((subtasks.len() as u32, v.max_parallelism));
        if old_max != v.max_parallelism {
            return Err(format!(
                "cannot restore operator uid '{uid}': its state was written with max parallelism {old_max}, the new job has {}; allowed: the same max parallelism (pipeline.max-parallelism {old_max})",
                v.max_parallelism
            ));
        }
        let rescaled = old_p != v.parallelism;
        for (task, state) in snapshot.operator_states(uid) {
            for s in 0..v.parallelism {
                if rescaled || task.subtask == s {
                    tasks
                        .entry(ExecutionVertexId::new(v.vertex, s))
                        .or_default()
                        .operators
                        .push(state.clone());
                }
            }
        }
    }
    Ok(CompletedCheckpoint {
        tasks: tasks
            .into_iter()
            .map(|(task, state)| TaskState { task, state })
            .collect(),
        ..snapshot.clone()
    })
}

#[cfg(test)]
mod tests;
