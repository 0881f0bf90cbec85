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
//!
//! Native (incremental) RocksDB snapshots are kept as a directory per keyed operator subtask:
//!
//! ```text
//! <root>/<tm-id>/<job-id>/chk-<n>/rocksdb/<uid>.<first key group>-<end key group>/<file>
//! ```
//!
//! SST files are hard links (to the RocksDB checkpoint's files, or, on another file system, to
//! the same file in this operator's previous local copy; copied only when neither works), so
//! an SST file shared by several checkpoints is stored once and survives the pruning of an older
//! checkpoint's directory as long as a newer one links it. The small files (MANIFEST, CURRENT,
//! OPTIONS) are copies. The directory is assembled under a temp name and renamed into place.

use super::{write_file_atomically, StorageError};
use crate::metadata::{RocksDbFile, StateFileHandle};
use eddy_core::JobId;
use std::fs;
use std::io::Read;
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

    /// The directory name of a native snapshot of operator `uid` over key groups `[start, end)`.
    fn native_name(uid: &str, start: u32, end: u32) -> String {
        format!("{}.{start}-{end}", super::sanitize(uid))
    }

    /// Keeps a local copy of the native RocksDB snapshot in `from` (a RocksDB checkpoint
    /// directory) of operator `uid` over key groups `[start, end)` in checkpoint `checkpoint`:
    /// the `files` its handle lists.
    pub fn store_native(
        &self,
        job: JobId,
        checkpoint: u64,
        (uid, start, end): (&str, u32, u32),
        from: &Path,
        files: &[RocksDbFile],
    ) -> Result<(), StorageError> {
        let name = Self::native_name(uid, start, end);
        let root = &self.dirs[crc32fast::hash(name.as_bytes()) as usize % self.dirs.len()];
        let parent = Self::checkpoint_dir(root, job, checkpoint).join("rocksdb");
        super::ensure_dir(&parent)?;
        let temp = parent.join(format!(".{name}.tmp"));
        let target = parent.join(&name);
        let _ = fs::remove_dir_all(&temp);
        fs::create_dir(&temp).map_err(|e| StorageError::io("create directory", &temp, e))?;
        let previous = Self::previous_native(root, job, checkpoint, &name);
        let built = files.iter().try_for_each(|f| {
            if !plain_name(&f.name) {
                return Err(StorageError::io(
                    "copy",
                    &from.join(&f.name),
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a plain file name"),
                ));
            }
            let (src, dst) = (from.join(&f.name), temp.join(&f.name));
            if f.name.ends_with(".sst") {
                // Immutable: a hard link is the copy. Across file systems, link the previous
                // local copy's file of the same name (and length), else copy.
                if fs::hard_link(&src, &dst).is_ok() {
                    return Ok(());
                }
                if let Some(prev) = previous.as_ref().map(|p| p.join(&f.name)) {
                    let same = fs::metadata(&prev).is_ok_and(|m| m.len() == f.handle.len);
                    if same && fs::hard_link(&prev, &dst).is_ok() {
                        return Ok(());
                    }
                }
            }
            copy_synced(&src, &dst)
        });
        let done = built
            .and_then(|_| super::sync_dir(&temp))
            .and_then(|_| {
                let _ = fs::remove_dir_all(&target);
                fs::rename(&temp, &target).map_err(|e| StorageError::io("rename", &temp, e))
            })
            .and_then(|_| super::sync_dir(&parent));
        if done.is_err() {
            let _ = fs::remove_dir_all(&temp);
        }
        done
    }

    /// The newest local copy of native snapshot `name` of `job` in a checkpoint below
    /// `checkpoint`, under `root`.
    fn previous_native(root: &Path, job: JobId, checkpoint: u64, name: &str) -> Option<PathBuf> {
        let job_dir = root.join(job.to_string());
        fs::read_dir(&job_dir)
            .ok()?
            .flatten()
            .filter_map(|e| {
                let n: u64 = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
                let dir = e.path().join("rocksdb").join(name);
                (n < checkpoint && dir.is_dir()).then_some((n, dir))
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, d)| d)
    }

    /// Restores the local copy of the native snapshot of operator `uid` over key groups
    /// `[start, end)` in checkpoint `checkpoint` into `target` (created), if there is one whose
    /// every file in `files` has the recorded length and CRC-32: SST files hard-linked (copied
    /// across file systems), the small files copied (the RocksDB instance opened on `target`
    /// writes those). Returns the bytes of the snapshot's files; `None` (and `target` removed)
    /// when the copy is missing or does not match.
    pub fn load_native(
        &self,
        job: JobId,
        checkpoint: u64,
        (uid, start, end): (&str, u32, u32),
        files: &[RocksDbFile],
        target: &Path,
    ) -> Option<u64> {
        let _ = fs::remove_dir_all(target);
        let name = Self::native_name(uid, start, end);
        let dir = self.dirs.iter().find_map(|d| {
            let dir = Self::checkpoint_dir(d, job, checkpoint)
                .join("rocksdb")
                .join(&name);
            dir.is_dir().then_some(dir)
        })?;
        let mut bytes = 0;
        for f in files {
            let path = dir.join(&f.name);
            if !plain_name(&f.name) || checksum(&path).ok()? != (f.handle.len, f.handle.crc32) {
                return None;
            }
            bytes += f.handle.len;
        }
        let made = fs::create_dir_all(target).is_ok()
            && files.iter().all(|f| {
                let (src, dst) = (dir.join(&f.name), target.join(&f.name));
                (f.name.ends_with(".sst") && fs::hard_link(&src, &dst).is_ok())
                    || copy_synced(&src, &dst).is_ok()
            });
        if !made {
            let _ = fs::remove_dir_all(target);
            return None;
        }
        Some(bytes)
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

/// A file name without a path (names come from checkpoint metadata).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\']) && !name.starts_with('.')
}

/// Copies `src` to `dst` (which must not exist) and fsyncs it.
fn copy_synced(src: &Path, dst: &Path) -> Result<(), StorageError> {
    fs::copy(src, dst).map_err(|e| StorageError::io("copy", src, e))?;
    fs::File::open(dst)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io("fsync", dst, e))
}

/// Length and CRC-32 of a file, read in chunks.
fn checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut file = fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((len, hasher.finalize()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dir: &Path, name: &str, data: &[u8]) -> RocksDbFile {
        fs::write(dir.join(name), data).unwrap();
        RocksDbFile {
            name: name.into(),
            handle: StateFileHandle {
                path: format!("../shared/x-{name}"),
                len: data.len() as u64,
                crc32: crc32fast::hash(data),
            },
        }
    }

    #[cfg(unix)]
    fn inode(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(p).unwrap().ino()
    }

    /// Two checkpoints sharing an SST file: it is stored once (one inode), survives the pruning
    /// of the older checkpoint, and restores with the newer one; a damaged copy is not used.
    #[test]
    fn native_copies_share_sst_files_across_checkpoints_and_survive_pruning() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(&[tmp.path().join("root")], "tm-1").unwrap();
        let job = JobId::random();
        let kg = ("counter", 0, 128);
        let snap1 = tmp.path().join("snap1");
        fs::create_dir(&snap1).unwrap();
        let files1 = vec![
            file(&snap1, "000007.sst", b"first sst"),
            file(&snap1, "MANIFEST-000005", b"manifest 1"),
        ];
        store.store_native(job, 1, kg, &snap1, &files1).unwrap();
        let snap2 = tmp.path().join("snap2");
        fs::create_dir(&snap2).unwrap();
        fs::hard_link(snap1.join("000007.sst"), snap2.join("000007.sst")).unwrap();
        let mut files2 = vec![files1[0].clone()];
        files2.push(file(&snap2, "000009.sst", b"second sst"));
        files2.push(file(&snap2, "MANIFEST-000005", b"manifest 2"));
        store.store_native(job, 2, kg, &snap2, &files2).unwrap();
        // The RocksDB checkpoints go after the upload; the copies stay.
        fs::remove_dir_all(&snap1).unwrap();
        fs::remove_dir_all(&snap2).unwrap();
        let copy = |n: u64| {
            store.dirs()[0]
                .join(job.to_string())
                .join(format!("chk-{n}/rocksdb/counter.0-128"))
        };
        #[cfg(unix)]
        assert_eq!(
            inode(&copy(1).join("000007.sst")),
            inode(&copy(2).join("000007.sst")),
            "a shared SST file is stored once"
        );
        store.prune_below(job, 2);
        assert!(!copy(1).exists());
        let target = tmp.path().join("restore");
        let bytes = store.load_native(job, 2, kg, &files2, &target).unwrap();
        assert_eq!(bytes, files2.iter().map(|f| f.handle.len).sum::<u64>());
        assert_eq!(fs::read(target.join("000007.sst")).unwrap(), b"first sst");
        assert_eq!(
            fs::read(target.join("MANIFEST-000005")).unwrap(),
            b"manifest 2"
        );
        // Another key-group range, or a checkpoint without a copy: nothing.
        assert!(store
            .load_native(job, 2, ("counter", 0, 64), &files2, &target)
            .is_none());
        assert!(store.load_native(job, 1, kg, &files1, &target).is_none());
        // A damaged copy (length or content) is not used, and the target is removed.
        fs::write(copy(2).join("000009.sst"), b"second SST").unwrap();
        assert!(store.load_native(job, 2, kg, &files2, &target).is_none());
        assert!(!target.exists());
    }

    /// A TaskManager starting under the same id never restores its earlier incarnation's
    /// native copies.
    #[test]
    fn native_copies_go_with_a_taskmanager_restart() {
        let tmp = tempfile::tempdir().unwrap();
        let roots = [tmp.path().join("root")];
        let store = LocalStateStore::open(&roots, "tm-1").unwrap();
        let job = JobId::random();
        let snap = tmp.path().join("snap");
        fs::create_dir(&snap).unwrap();
        let files = vec![file(&snap, "000007.sst", b"sst")];
        store
            .store_native(job, 3, ("op", 0, 4), &snap, &files)
            .unwrap();
        let target = tmp.path().join("restore");
        assert!(store
            .load_native(job, 3, ("op", 0, 4), &files, &target)
            .is_some());
        let restarted = LocalStateStore::open(&roots, "tm-1").unwrap();
        assert!(restarted
            .load_native(job, 3, ("op", 0, 4), &files, &target)
            .is_none());
    }
}
