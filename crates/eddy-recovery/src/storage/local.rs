//! Task-local state copies (`execution.state-recovery.from-local`, Flink's local recovery).
//!
//! A TaskManager keeps a copy of every state file it uploaded, on its own disk:
//!
//! ```text
//! <root>/<tm-id>/pid                                    the owning TaskManager process
//! <root>/<tm-id>/<job-id>/chk-<n>/<state file name>     copy of a state file of checkpoint n
//! ```
//!
//! `<root>` is one of `taskmanager.state.local.root-dirs` (chosen per file; a reader looks in
//! all). A subtask redeployed on the same TaskManager (the JobMaster keeps a restarted subtask in
//! its slot; only a lost TaskManager's slots are replaced) reads each state file from here when
//! the copy has the length and CRC-32 the checkpoint's handle records, and from checkpoint
//! storage otherwise. Copies are written like checkpoint files (temp name, fsync, rename), so a
//! crash leaves a complete copy or none.
//!
//! Pruning: when checkpoint *n* of a job completes, the copies of that job's older checkpoints
//! go (Flink's rule: only the latest confirmed checkpoint is restored from), and a TaskManager
//! starting on a root removes the directories of TaskManagers that no longer run there (their
//! `pid` file names a dead process), so a restarted TaskManager never restores from its previous
//! incarnation's copies.

use super::{write_file_atomically, StorageError};
use crate::metadata::StateFileHandle;
use eddy_core::JobId;
use std::fs;
use std::path::{Path, PathBuf};

const PID_FILE: &str = "pid";

/// The local state copies of one TaskManager process.
#[derive(Clone, Debug)]
pub struct LocalStateStore {
    /// `<root>/<tm-id>` for each root.
    dirs: Vec<PathBuf>,
}

impl LocalStateStore {
    /// Opens (creates) `<root>/<tm_id>` under each root and removes the directories of
    /// TaskManagers that no longer run. `roots` empty: `<temp dir>/eddy-local-state`.
    pub fn open(roots: &[PathBuf], tm_id: &str) -> Result<LocalStateStore, StorageError> {
        let default = [std::env::temp_dir().join("eddy-local-state")];
        let roots = if roots.is_empty() {
            &default[..]
        } else {
            roots
        };
        let name = super::sanitize(tm_id);
        let mut dirs = Vec::new();
        for root in roots {
            prune_dead_taskmanagers(root);
            let dir = root.join(&name);
            // A directory of this id is an earlier incarnation's: its copies are stale.
            let _ = fs::remove_dir_all(&dir);
            super::ensure_dir(&dir)?;
            fs::write(dir.join(PID_FILE), std::process::id().to_string())
                .map_err(|e| StorageError::io("write", &dir.join(PID_FILE), e))?;
            dirs.push(dir);
        }
        Ok(LocalStateStore { dirs })
    }

    fn checkpoint_dir(dir: &Path, job: JobId, checkpoint: u64) -> PathBuf {
        dir.join(job.to_string()).join(format!("chk-{checkpoint}"))
    }

    fn file_name(handle: &StateFileHandle) -> String {
        super::sanitize(&handle.path.replace("../", "").replace('/', "-"))
    }

    /// Keeps a local copy of `data`, the content of `handle` in checkpoint `checkpoint`.
    pub fn store(
        &self,
        job: JobId,
        checkpoint: u64,
        handle: &StateFileHandle,
        data: &[u8],
    ) -> Result<(), StorageError> {
        let name = Self::file_name(handle);
        let i = crc32fast::hash(name.as_bytes()) as usize % self.dirs.len();
        let dir = Self::checkpoint_dir(&self.dirs[i], job, checkpoint);
        write_file_atomically(&dir, &name, &mut &data[..]).map(|_| ())
    }

    /// The local copy of `handle` in checkpoint `checkpoint`, if there is one with the recorded
    /// length and CRC-32.
    pub fn load(&self, job: JobId, checkpoint: u64, handle: &StateFileHandle) -> Option<Vec<u8>> {
        let name = Self::file_name(handle);
        self.dirs.iter().find_map(|d| {
            let data = fs::read(Self::checkpoint_dir(d, job, checkpoint).join(&name)).ok()?;
            (data.len() as u64 == handle.len && crc32fast::hash(&data) == handle.crc32)
                .then_some(data)
        })
    }

    /// Removes the copies of `job`'s checkpoints below `checkpoint`.
    pub fn prune_below(&self, job: JobId, checkpoint: u64) {
        for d in &self.dirs {
            let job_dir = d.join(job.to_string());
            let Ok(entries) = fs::read_dir(&job_dir) else {
                continue;
            };
            for e in entries.flatten() {
                let older = e
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("chk-"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n < checkpoint);
                if older {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// `<root>/<tm-id>` of each root.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

/// Removes `<root>/<id>` directories whose `pid` file names a process that is not running.
fn prune_dead_taskmanagers(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let pid = fs::read_to_string(e.path().join(PID_FILE))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if !process_runs(pid) {
            // Best effort: a copy left behind is never read by another TaskManager.
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn process_runs(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    match stat.rsplit_once(')') {
        Some((_, rest)) => rest.split_whitespace().next() != Some("Z"),
        None => false,
    }
}
