//! Durable file-system steps of the exactly-once sink: fsync a directory, and move a file to a
//! new name atomically without ever replacing what is there.
//!
//! A move is a hard link plus an unlink: `link(2)` fails if the target exists, so a committed
//! part file can never be overwritten by a late or duplicate attempt (a plain `rename(2)` would
//! replace it silently). Where hard links are not supported it falls back to `rename` after an
//! existence check. These functions must never delete a file that is not their own source.

use eddy_runtime::{JobError, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

/// Makes the directory's entries (creations, renames, deletions) durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JobError::new(format!("cannot fsync directory {}: {e}", dir.display())))
}

/// Moves `from` to `to` atomically; fails if `to` exists and is a different file. Finding both
/// names on the same file (a crash between link and unlink) completes the move.
pub(crate) fn move_no_replace(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => remove(from),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            if same_file(from, to) {
                remove(from)
            } else {
                Err(JobError::new(format!(
                    "cannot move {} to {}: the target already exists (refusing to overwrite it)",
                    from.display(),
                    to.display()
                )))
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Err(JobError::new(format!(
            "cannot move {}: it does not exist",
            from.display()
        ))),
        Err(_) => {
            // No hard links here (some network or FUSE file systems): check, then rename.
            if fs::symlink_metadata(to).is_ok() {
                return Err(JobError::new(format!(
                    "cannot move {} to {}: the target already exists (refusing to overwrite it)",
                    from.display(),
                    to.display()
                )));
            }
            fs::rename(from, to).map_err(|e| {
                JobError::new(format!(
                    "cannot rename {} to {}: {e}",
                    from.display(),
                    to.display()
                ))
            })
        }
    }
}

/// Deletes a file; a file that is already gone is fine.
pub(crate) fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JobError::new(format!(
            "cannot delete {}: {e}",
            path.display()
        ))),
    }
}

/// The length of a file, `None` if it does not exist.
pub(crate) fn file_len(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(JobError::new(format!(
            "cannot stat {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_a: &Path, _b: &Path) -> bool {
    false
}
