//! Checkpoint storage on a filesystem path or under an `s3://bucket/prefix` URI: the only code
//! that knows the layout and the only code that reads or writes checkpoint and savepoint files.
//!
//! ```text
//! <state.checkpoints.dir>/<job-id>/
//!     chk-<n>/_metadata                    the completed checkpoint (written last, atomically)
//!     chk-<n>/<uid>-<subtask>-<random>     exclusive state files
//!     shared/<name>-<random>               files shared by incremental checkpoints
//! <savepoint-dir>/_metadata + state files  a savepoint: self-contained, relocatable
//! ```
//!
//! Handles in `_metadata` hold paths relative to the directory of `_metadata` (`../shared/…` for
//! shared files) plus length and CRC-32, so a reader can tell a complete file from a torn or
//! corrupt one.
//!
//! Durability: every file is written to a dot-temp name (`.<name>.tmp-<random>`), fsynced,
//! renamed (or, for `_metadata`, hard-linked: create-if-absent) to its final name, and the
//! directory is fsynced. A crash therefore leaves either no file or the complete file; a leftover
//! temp file is ignored by every reader and removed by [`CheckpointStorage::remove_stale_temp_files`].
//! Every operation may be repeated after a crash. Nothing here panics on what it reads from disk.
//!
//! On S3 ([`s3`]) a PUT is atomic by itself: state files are written under their final names,
//! `_metadata` last (a checkpoint counts only once that object exists), and the directory steps
//! are no-ops. Every byte read from checkpoint storage (either kind) is counted in
//! [`bytes_read`].
//!
//! `_metadata` format (JSON):
//! `{"format":"eddy-checkpoint-metadata","format_version":1,"crc32":N,"metadata":{…}}` where `N`
//! is the CRC-32 of the compact JSON serialization of the `metadata` value.

use crate::ids::CheckpointId;
use crate::metadata::{CompletedCheckpoint, StateFileHandle, SHARED_PREFIX};
use eddy_core::ids::random_u128;
use eddy_core::JobId;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

pub mod local;
pub mod s3;
pub use s3::{configure as configure_s3, is_s3, S3Settings};

static BYTES_READ: AtomicU64 = AtomicU64::new(0);

/// Bytes this process has read from checkpoint storage (state files and metadata, local or S3)
/// since it started.
pub fn bytes_read() -> u64 {
    BYTES_READ.load(Ordering::Relaxed)
}

/// Reads a whole file or object; `Ok(None)` when it does not exist. Counts the bytes.
fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StorageError> {
    let data = if is_s3(path) {
        s3::get(path)?
    } else {
        match fs::read(path) {
            Ok(d) => Some(d),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StorageError::io("read", path, e)),
        }
    };
    if let Some(d) = &data {
        BYTES_READ.fetch_add(d.len() as u64, Ordering::Relaxed);
    }
    Ok(data)
}

/// The length of a file or object; `Ok(None)` when it does not exist.
fn file_len(path: &Path) -> Result<Option<u64>, StorageError> {
    if is_s3(path) {
        return s3::len(path);
    }
    match fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io("stat", path, e)),
    }
}

/// Whether a file or object exists at `path` (errors read as "no").
pub fn file_exists(path: &Path) -> bool {
    file_len(path).is_ok_and(|l| l.is_some())
}

/// `path` names a snapshot directory (local directory, or an S3 prefix not ending in
/// `_metadata`) rather than its `_metadata` file.
fn names_directory(path: &Path) -> bool {
    if is_s3(path) {
        path.file_name().and_then(|n| n.to_str()) != Some(METADATA_FILE)
    } else {
        path.is_dir()
    }
}

/// The metadata file's name inside a checkpoint or savepoint directory.
pub const METADATA_FILE: &str = "_metadata";
/// The metadata format this build writes and reads.
pub const METADATA_FORMAT_VERSION: u32 = 1;
const METADATA_FORMAT: &str = "eddy-checkpoint-metadata";
const CHECKPOINT_DIR_PREFIX: &str = "chk-";
const SHARED_DIR: &str = "shared";
const TEMP_MARKER: &str = ".tmp-";

/// A storage failure. Its message is one line and names the path.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("missing state file {path}")]
    MissingFile { path: PathBuf },
    #[error("corrupt checkpoint metadata {path}: {detail}")]
    CorruptMetadata { path: PathBuf, detail: String },
    #[error("unsupported checkpoint metadata format version {found} in {path} (this build reads version {supported})")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("checksum mismatch in {path}: expected crc32 {expected:08x}, found {actual:08x}")]
    ChecksumMismatch {
        path: PathBuf,
        expected: u32,
        actual: u32,
    },
    #[error("length mismatch in {path}: expected {expected} bytes, found {actual}")]
    LengthMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("invalid state file path '{relative}' referenced by {path}: {reason}")]
    InvalidPath {
        path: PathBuf,
        relative: String,
        reason: &'static str,
    },
    #[error("checkpoint metadata {path} does not match its location: {detail}")]
    Mismatch { path: PathBuf, detail: String },
    #[error("cannot write {path}: it already exists with different content")]
    AlreadyExists { path: PathBuf },
    #[error("cannot {op} {path}: {detail}")]
    Remote {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
}

impl StorageError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How much of a checkpoint to check before trusting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyLevel {
    /// Metadata checksum, and every referenced file exists with the recorded length.
    Lengths,
    /// Also reads every referenced file and checks its CRC-32.
    Full,
}

/// A retained checkpoint that [`CheckpointStorage::latest_restorable`] passed over, and why.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {id} skipped: {error}")]
pub struct SkippedCheckpoint {
    pub id: CheckpointId,
    pub error: StorageError,
}

/// What [`CheckpointStorage::latest_restorable`] found.
#[derive(Debug)]
pub struct RestoreSelection {
    /// The newest retained checkpoint that verified, if any.
    pub checkpoint: Option<CompletedCheckpoint>,
    /// Newer retained checkpoints that did not verify, newest first: log them and put them in the
    /// exception history.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// The checkpoint directory of one job.
#[derive(Clone, Debug)]
pub struct CheckpointStorage {
    job_id: JobId,
    job_dir: PathBuf,
}

impl CheckpointStorage {
    /// `checkpoints_dir` is `state.checkpoints.dir`.
    pub fn new(checkpoints_dir: impl AsRef<Path>, job_id: JobId) -> Self {
        CheckpointStorage {
            job_id,
            job_dir: checkpoints_dir.as_ref().join(job_id.to_string()),
        }
    }

    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// `<dir>/<job-id>`.
    pub fn job_dir(&self) -> &Path {
        &self.job_dir
    }

    /// `<dir>/<job-id>/chk-<id>`: where tasks write exclusive state and `_metadata` goes.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> PathBuf {
        self.job_dir.join(format!("{CHECKPOINT_DIR_PREFIX}{id}"))
    }

    /// `<dir>/<job-id>/chk-<id>/_metadata`.
    pub fn metadata_path(&self, id: CheckpointId) -> PathBuf {
        self.checkpoint_dir(id).join(METADATA_FILE)
    }

    /// `<dir>/<job-id>/shared`.
    pub fn shared_dir(&self) -> PathBuf {
        self.job_dir.join(SHARED_DIR)
    }

    /// Writes an exclusive state file of checkpoint `id` (TaskManager side).
    pub fn write_state_file(
        &self,
        id: CheckpointId,
        operator_uid: &str,
        subtask: u32,
        data: &[u8],
    ) -> Result<StateFileHandle, StorageError> {
        write_state_file(
            &self.checkpoint_dir(id),
            operator_uid,
            subtask,
            &mut &data[..],
        )
    }

    /// Like [`Self::write_state_file`], streaming from `reader` (e.g. a RocksDB file).
    pub fn write_state_file_from(
        &self,
        id: CheckpointId,
        operator_uid: &str,
        subtask: u32,
        reader: &mut dyn Read,
    ) -> Result<StateFileHandle, StorageError> {
        write_state_file(&self.checkpoint_dir(id), operator_uid, subtask, reader)
    }

    /// Writes a file into `shared/` (incremental checkpoints) and returns its handle, valid in any
    /// checkpoint of this job (`../shared/<name>-<random>`).
    pub fn write_shared_file(
        &self,
        name_hint: &str,
        reader: &mut dyn Read,
    ) -> Result<StateFileHandle, StorageError> {
        let name = format!("{}-{:016x}", sanitize(name_hint), random_u128() as u64);
        let (len, crc32) = write_file_atomically(&self.shared_dir(), &name, reader)?;
        Ok(StateFileHandle {
            path: format!("{SHARED_PREFIX}{name}"),
            len,
            crc32,
        })
    }

    /// Writes `chk-<id>/_metadata` atomically (JobManager side). Repeating the write with the same
    /// content succeeds; a different `_metadata` already there is an error.
    pub fn write_metadata(&self, metadata: &CompletedCheckpoint) -> Result<PathBuf, StorageError> {
        let path = self.metadata_path(metadata.checkpoint_id);
        if metadata.job_id != self.job_id {
            return Err(StorageError::Mismatch {
                path,
                detail: format!(
                    "metadata of job {} written for job {}",
                    metadata.job_id, self.job_id
                ),
            });
        }
        write_metadata(&self.checkpoint_dir(metadata.checkpoint_id), metadata)
    }

    /// Reads and checks `chk-<id>/_metadata` (see [`read_metadata`]) and that it is this job's
    /// checkpoint `id`.
    pub fn read_metadata(&self, id: CheckpointId) -> Result<CompletedCheckpoint, StorageError> {
        let path = self.metadata_path(id);
        let cp = decode_metadata_file(&path)?;
        if cp.checkpoint_id != id || cp.job_id != self.job_id {
            return Err(StorageError::Mismatch {
                path,
                detail: format!(
                    "it holds checkpoint {} of job {}, expected checkpoint {id} of job {}",
                    cp.checkpoint_id, cp.job_id, self.job_id
                ),
            });
        }
        verify_files(&self.checkpoint_dir(id), &cp, VerifyLevel::Lengths)?;
        Ok(cp)
    }

    /// Reads one state file of checkpoint `id`, verifying length and CRC-32.
    pub fn read_state_file(
        &self,
        id: CheckpointId,
        handle: &StateFileHandle,
    ) -> Result<Vec<u8>, StorageError> {
        read_state_file(&self.checkpoint_dir(id), handle)
    }

    /// Ids of checkpoints with a `_metadata` file, ascending. A missing job directory is empty.
    pub fn list_retained(&self) -> Result<Vec<CheckpointId>, StorageError> {
        let mut ids: Vec<CheckpointId> = self
            .checkpoint_dirs()?
            .into_iter()
            .filter(|id| file_exists(&self.metadata_path(*id)))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The highest id of any `chk-<n>` directory, complete or not: without HA, the next
    /// checkpoint id is this + 1, so ids never repeat across JobManager restarts.
    pub fn highest_checkpoint_id(&self) -> Result<Option<CheckpointId>, StorageError> {
        Ok(self.checkpoint_dirs()?.into_iter().max())
    }

    /// Deletes `chk-<id>`: first `_metadata` (so a crash half-way leaves an ignored directory,
    /// never a checkpoint with missing files), then the rest. Idempotent.
    pub fn discard(&self, id: CheckpointId) -> Result<(), StorageError> {
        discard_directory(&self.checkpoint_dir(id))?;
        sync_dir_if_exists(&self.job_dir)
    }

    /// Deletes shared files no retained checkpoint refers to (as listed by the coordinator's
    /// `DiscardCheckpoint`). Handles that do not point into `shared/` are refused. Idempotent.
    pub fn discard_shared(&self, handles: &[StateFileHandle]) -> Result<(), StorageError> {
        let shared = self.shared_dir();
        for h in handles {
            let Some(name) = h.path.strip_prefix(SHARED_PREFIX) else {
                return Err(StorageError::InvalidPath {
                    path: shared,
                    relative: h.path.clone(),
                    reason: "not a shared file",
                });
            };
            let path = resolve(&shared, name, &shared)?;
            remove_file_if_exists(&path)?;
        }
        if !handles.is_empty() {
            sync_dir_if_exists(&shared)?;
        }
        Ok(())
    }

    /// The newest retained checkpoint that reads back and verifies at `level`; newer ones that do
    /// not (missing or torn file, checksum or length mismatch) are reported in `skipped`.
    pub fn latest_restorable(&self, level: VerifyLevel) -> Result<RestoreSelection, StorageError> {
        let mut skipped = Vec::new();
        for id in self.list_retained()?.into_iter().rev() {
            let verified = self
                .read_metadata(id)
                .and_then(|cp| verify_files(&self.checkpoint_dir(id), &cp, level).map(|()| cp));
            match verified {
                Ok(cp) => {
                    return Ok(RestoreSelection {
                        checkpoint: Some(cp),
                        skipped,
                    })
                }
                Err(error) => skipped.push(SkippedCheckpoint { id, error }),
            }
        }
        Ok(RestoreSelection {
            checkpoint: None,
            skipped,
        })
    }

    /// Removes temp files left by crashed writers in `chk-*/` and `shared/`, if older than
    /// `older_than` (so a writer still at work is left alone). Returns how many were removed.
    pub fn remove_stale_temp_files(&self, older_than: Duration) -> Result<usize, StorageError> {
        if is_s3(&self.job_dir) {
            return Ok(0); // a PUT is atomic: S3 never holds temp objects
        }
        let mut dirs: Vec<PathBuf> = self
            .checkpoint_dirs()?
            .into_iter()
            .map(|id| self.checkpoint_dir(id))
            .collect();
        dirs.push(self.shared_dir());
        let now = SystemTime::now();
        let mut removed = 0;
        for dir in dirs {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StorageError::io("list", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| StorageError::io("list", &dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if !is_temp_name(name) {
                    continue;
                }
                let path = entry.path();
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or(Duration::ZERO);
                if age >= older_than {
                    remove_file_if_exists(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Ids of every `chk-<n>` directory (with or without `_metadata`).
    fn checkpoint_dirs(&self) -> Result<Vec<CheckpointId>, StorageError> {
        if is_s3(&self.job_dir) {
            return Ok(s3::list_dirs(&self.job_dir)?
                .iter()
                .filter_map(|n| parse_checkpoint_dir_name(n))
                .collect());
        }
        let entries = match fs::read_dir(&self.job_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("list", &self.job_dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StorageError::io("list", &self.job_dir, e))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(parse_checkpoint_dir_name) else {
                continue;
            };
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// `chk-<n>` → `n`.
fn parse_checkpoint_dir_name(name: &str) -> Option<CheckpointId> {
    name.strip_prefix(CHECKPOINT_DIR_PREFIX)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<CheckpointId>().ok())
}

// ---------------------------------------------------------------------------------------------
// Directory-level operations (checkpoints and savepoints alike)
// ---------------------------------------------------------------------------------------------

/// Writes a state file into `dir` (the directory that will hold `_metadata`) as
/// `<uid>-<subtask>-<random>` and returns its handle.
pub fn write_state_file(
    dir: &Path,
    operator_uid: &str,
    subtask: u32,
    reader: &mut dyn Read,
) -> Result<StateFileHandle, StorageError> {
    let name = format!(
        "{}-{subtask}-{:016x}",
        sanitize(operator_uid),
        random_u128() as u64
    );
    let (len, crc32) = write_file_atomically(dir, &name, reader)?;
    Ok(StateFileHandle {
        path: name,
        len,
        crc32,
    })
}

/// Writes `dir/_metadata` atomically and create-if-absent; an identical existing file is success.
pub fn write_metadata(dir: &Path, metadata: &CompletedCheckpoint) -> Result<PathBuf, StorageError> {
    let path = dir.join(METADATA_FILE);
    let bytes = encode_metadata(metadata).map_err(|e| StorageError::CorruptMetadata {
        path: path.clone(),
        detail: format!("cannot encode: {e}"),
    })?;
    if is_s3(dir) {
        // No create-if-absent on every S3 server: check, then PUT (checkpoint ids come from one
        // counter, so no two writers race for one `_metadata`).
        return match s3::get(&path)? {
            Some(existing) if existing == bytes => Ok(path),
            Some(_) => Err(StorageError::AlreadyExists { path }),
            None => s3::put(&path, bytes).map(|()| path),
        };
    }
    ensure_dir(dir)?;
    let temp = dir.join(temp_name(METADATA_FILE));
    write_and_sync(&temp, &mut &bytes[..])?;
    let linked = fs::hard_link(&temp, &path);
    let result = match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::read(&path) {
            Ok(existing) if existing == bytes => Ok(()),
            Ok(_) => Err(StorageError::AlreadyExists { path: path.clone() }),
            Err(e) => Err(StorageError::io("read", &path, e)),
        },
        // Filesystems without hard links: check, then rename (not atomic against a concurrent
        // writer of the same checkpoint, which ids from one counter rule out).
        Err(_) => {
            if path.exists() {
                match fs::read(&path) {
                    Ok(existing) if existing == bytes => Ok(()),
                    Ok(_) => Err(StorageError::AlreadyExists { path: path.clone() }),
                    Err(e) => Err(StorageError::io("read", &path, e)),
                }
            } else {
                fs::rename(&temp, &path).map_err(|e| StorageError::io("rename", &temp, e))
            }
        }
    };
    remove_file_if_exists(&temp)?;
    result?;
    sync_dir(dir)?;
    Ok(path)
}

/// Reads and checks a `_metadata` file (`path` may also be its directory): format, version,
/// checksum, that every handle path is valid, and that every referenced file exists with its
/// recorded length.
pub fn read_metadata(path: &Path) -> Result<CompletedCheckpoint, StorageError> {
    let path = if names_directory(path) {
        path.join(METADATA_FILE)
    } else {
        path.to_path_buf()
    };
    let cp = decode_metadata_file(&path)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    verify_files(dir, &cp, VerifyLevel::Lengths)?;
    Ok(cp)
}

/// Reads and decodes a `_metadata` file (format, version, checksum) without looking at the files
/// it references.
fn decode_metadata_file(path: &Path) -> Result<CompletedCheckpoint, StorageError> {
    let bytes = if is_s3(path) {
        read_file(path)?.ok_or_else(|| StorageError::Remote {
            op: "read",
            path: path.to_path_buf(),
            detail: "no such object".into(),
        })?
    } else {
        let bytes = fs::read(path).map_err(|e| StorageError::io("read", path, e))?;
        BYTES_READ.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        bytes
    };
    decode_metadata(path, &bytes)
}

/// Checks the files of `checkpoint` relative to `dir` (the directory of its `_metadata`).
pub fn verify_files(
    dir: &Path,
    checkpoint: &CompletedCheckpoint,
    level: VerifyLevel,
) -> Result<(), StorageError> {
    let metadata_path = dir.join(METADATA_FILE);
    for handle in checkpoint.files() {
        let path = resolve_handle(dir, handle, &metadata_path)?;
        match level {
            VerifyLevel::Lengths => {
                let Some(len) = file_len(&path)? else {
                    return Err(StorageError::MissingFile { path });
                };
                if len != handle.len {
                    return Err(StorageError::LengthMismatch {
                        path,
                        expected: handle.len,
                        actual: len,
                    });
                }
            }
            VerifyLevel::Full => {
                read_verified(&path, handle)?;
            }
        }
    }
    Ok(())
}

/// Reads the state file `handle` of the checkpoint whose `_metadata` is in `dir`, verifying
/// length and CRC-32.
pub fn read_state_file(dir: &Path, handle: &StateFileHandle) -> Result<Vec<u8>, StorageError> {
    let path = resolve_handle(dir, handle, &dir.join(METADATA_FILE))?;
    read_verified(&path, handle)
}

/// The absolute path of `handle` in the checkpoint whose `_metadata` is in `dir`. Refuses
/// absolute paths, `.`/`..` components (other than the `../shared/` prefix) and dot-files.
pub fn resolve_state_file(dir: &Path, handle: &StateFileHandle) -> Result<PathBuf, StorageError> {
    resolve_handle(dir, handle, &dir.join(METADATA_FILE))
}

/// Deletes a checkpoint or savepoint directory: `_metadata` first, then everything. Idempotent.
pub fn discard_directory(dir: &Path) -> Result<(), StorageError> {
    if is_s3(dir) {
        s3::delete(&dir.join(METADATA_FILE))?;
        return s3::delete_prefix(dir);
    }
    remove_file_if_exists(&dir.join(METADATA_FILE))?;
    sync_dir_if_exists(dir)?;
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", dir, e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata encoding
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    format_version: u32,
    crc32: u32,
    metadata: serde_json::Value,
}

fn encode_metadata(metadata: &CompletedCheckpoint) -> Result<Vec<u8>, serde_json::Error> {
    let value = serde_json::to_value(metadata)?;
    let body = serde_json::to_string(&value)?;
    let envelope = Envelope {
        format: METADATA_FORMAT.to_string(),
        format_version: METADATA_FORMAT_VERSION,
        crc32: crc32fast::hash(body.as_bytes()),
        metadata: value,
    };
    let mut bytes = serde_json::to_vec(&envelope)?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn decode_metadata(path: &Path, bytes: &[u8]) -> Result<CompletedCheckpoint, StorageError> {
    let corrupt = |detail: String| StorageError::CorruptMetadata {
        path: path.to_path_buf(),
        detail,
    };
    let envelope: Envelope = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not a metadata document ({e})")))?;
    if envelope.format != METADATA_FORMAT {
        return Err(corrupt(format!("unknown format '{}'", envelope.format)));
    }
    if envelope.format_version != METADATA_FORMAT_VERSION {
        return Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: envelope.format_version,
            supported: METADATA_FORMAT_VERSION,
        });
    }
    let body = serde_json::to_string(&envelope.metadata).map_err(|e| corrupt(e.to_string()))?;
    let actual = crc32fast::hash(body.as_bytes());
    if actual != envelope.crc32 {
        return Err(StorageError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: envelope.crc32,
            actual,
        });
    }
    serde_json::from_value(envelope.metadata)
        .map_err(|e| corrupt(format!("unexpected content ({e})")))
}

// ---------------------------------------------------------------------------------------------
// File primitives
// ---------------------------------------------------------------------------------------------

fn resolve_handle(
    dir: &Path,
    handle: &StateFileHandle,
    referenced_by: &Path,
) -> Result<PathBuf, StorageError> {
    match handle.path.strip_prefix(SHARED_PREFIX) {
        Some(rest) => {
            let shared = dir.parent().unwrap_or(dir).join(SHARED_DIR);
            resolve(&shared, rest, referenced_by)
        }
        None => resolve(dir, &handle.path, referenced_by),
    }
}

fn resolve(base: &Path, relative: &str, referenced_by: &Path) -> Result<PathBuf, StorageError> {
    let invalid = |reason| StorageError::InvalidPath {
        path: referenced_by.to_path_buf(),
        relative: relative.to_string(),
        reason,
    };
    if relative.is_empty() {
        return Err(invalid("empty"));
    }
    if relative.starts_with('/') || relative.contains('\\') || relative.contains('\0') {
        return Err(invalid("must be a relative '/'-separated path"));
    }
    let mut path = base.to_path_buf();
    for part in relative.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(invalid("must not contain empty, '.' or '..' components"));
        }
        if part.starts_with('.') {
            return Err(invalid("must not name a hidden (temporary) file"));
        }
        path.push(part);
    }
    Ok(path)
}

fn read_verified(path: &Path, handle: &StateFileHandle) -> Result<Vec<u8>, StorageError> {
    let Some(data) = read_file(path)? else {
        return Err(StorageError::MissingFile {
            path: path.to_path_buf(),
        });
    };
    if data.len() as u64 != handle.len {
        return Err(StorageError::LengthMismatch {
            path: path.to_path_buf(),
            expected: handle.len,
            actual: data.len() as u64,
        });
    }
    let actual = crc32fast::hash(&data);
    if actual != handle.crc32 {
        return Err(StorageError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected: handle.crc32,
            actual,
        });
    }
    Ok(data)
}

/// Writes `reader` to `dir/name` via a temp file + fsync + rename + directory fsync. Returns the
/// length and CRC-32 of what was written.
pub(crate) fn write_file_atomically(
    dir: &Path,
    name: &str,
    reader: &mut dyn Read,
) -> Result<(u64, u32), StorageError> {
    if is_s3(dir) {
        let path = dir.join(name);
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(|e| StorageError::io("read the data for", &path, e))?;
        let sums = (data.len() as u64, crc32fast::hash(&data));
        s3::put(&path, data)?;
        return Ok(sums);
    }
    ensure_dir(dir)?;
    let temp = dir.join(temp_name(name));
    let final_path = dir.join(name);
    let written = write_and_sync(&temp, reader).and_then(|sums| {
        fs::rename(&temp, &final_path).map_err(|e| StorageError::io("rename", &temp, e))?;
        Ok(sums)
    });
    match written {
        Ok(sums) => {
            sync_dir(dir)?;
            Ok(sums)
        }
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Creates `path`, copies `reader` into it, fsyncs it. Returns length and CRC-32.
fn write_and_sync(path: &Path, reader: &mut dyn Read) -> Result<(u64, u32), StorageError> {
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| StorageError::io("create", path, e))?;
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut hasher = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(StorageError::io("read the data for", path, e)),
        };
        hasher.update(&buf[..n]);
        len += n as u64;
        out.write_all(&buf[..n])
            .map_err(|e| StorageError::io("write", path, e))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| StorageError::io("write", path, e.into_error()))?;
    file.sync_all()
        .map_err(|e| StorageError::io("fsync", path, e))?;
    Ok((len, hasher.finalize()))
}

/// Creates `dir` (and missing ancestors) and makes each creation durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    if is_s3(dir) || dir.is_dir() {
        return Ok(());
    }
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        cur = d.parent();
    }
    fs::create_dir_all(dir).map_err(|e| StorageError::io("create directory", dir, e))?;
    for d in missing.iter().rev() {
        if let Some(parent) = d.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    if is_s3(dir) {
        return Ok(());
    }
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io("fsync directory", dir, e))
}

fn sync_dir_if_exists(dir: &Path) -> Result<(), StorageError> {
    if is_s3(dir) {
        return Ok(());
    }
    match File::open(dir) {
        Ok(f) => f
            .sync_all()
            .map_err(|e| StorageError::io("fsync directory", dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("open directory", dir, e)),
    }
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), StorageError> {
    if is_s3(path) {
        return s3::delete(path);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io("remove", path, e)),
    }
}

fn temp_name(final_name: &str) -> String {
    format!(".{final_name}{TEMP_MARKER}{:016x}", random_u128() as u64)
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// A file-name-safe form of an operator uid or name hint: `[A-Za-z0-9_.-]`, never starting with
/// a dot (dot-files are temp files), never empty.
pub(crate) fn sanitize(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests;
