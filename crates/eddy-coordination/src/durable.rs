//! Durable local files for HA data: atomic writes (temp file, fsync, rename, fsync of the
//! directory), the storage-dir writability probe, and the verified blob format
//! (`EDDYBLB1` magic, payload length, CRC-32, payload) used for job graphs.
//!
//! Must never leave a partially written file under a final name, and never return blob bytes that
//! fail the length or checksum check.

use crate::error::HaError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Runs blocking filesystem work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, HaError>
where
    F: FnOnce() -> Result<T, HaError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(HaError::io(
            "run blocking filesystem task",
            PathBuf::new(),
            io::Error::other(e.to_string()),
        )),
    }
}

fn random_suffix() -> String {
    format!("{:016x}", eddy_core::ids::random_u128() as u64)
}

/// Writes `bytes` to `path` atomically and durably: a reader sees the old content or the new
/// content, never a mix, and after return the new content survives a crash.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| HaError::io("create directory", dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", random_suffix()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| HaError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| HaError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| HaError::io("fsync", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| HaError::io("rename into place", path, e))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory so a rename or delete in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), HaError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| HaError::io("fsync directory", dir, e))
}

/// Reads a file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, HaError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(HaError::io("read", path, e)),
    }
}

/// Deletes a file durably; a missing file is fine.
pub(crate) fn remove_file_durable(path: &Path) -> Result<(), HaError> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(HaError::io("delete", path, e)),
    }
}

/// Checks that `dir` can be created and written: create, write, fsync and delete a probe file.
pub(crate) fn probe_writable(dir: &Path) -> Result<(), HaError> {
    let not_writable = |source| HaError::StorageDirNotWritable {
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(not_writable)?;
    let probe = dir.join(format!(".eddy-write-probe-{}", random_suffix()));
    let r = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        f.write_all(b"probe")?;
        f.sync_all()?;
        drop(f);
        fs::remove_file(&probe)
    })();
    if r.is_err() {
        let _ = fs::remove_file(&probe);
    }
    r.map_err(not_writable)
}

const BLOB_MAGIC: &[u8; 8] = b"EDDYBLB1";
const BLOB_HEADER: usize = 8 + 8 + 4;

/// Frames a payload: magic, length (u64 LE), CRC-32 (u32 LE), payload.
pub(crate) fn encode_blob(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOB_HEADER + payload.len());
    out.extend_from_slice(BLOB_MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Verifies and unframes a blob; the error says what does not match.
pub(crate) fn decode_blob(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if bytes.len() < BLOB_HEADER || &bytes[..8] != BLOB_MAGIC {
        return Err("not an Eddy blob (bad magic or too short)".into());
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[8..16]);
    let len = u64::from_le_bytes(len);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[16..20]);
    let crc = u32::from_le_bytes(crc);
    let payload = &bytes[BLOB_HEADER..];
    if payload.len() as u64 != len {
        return Err(format!(
            "length {} does not match the recorded {len}",
            payload.len()
        ));
    }
    let actual = crc32(payload);
    if actual != crc {
        return Err(format!(
            "checksum {actual:08x} does not match the recorded {crc:08x}"
        ));
    }
    Ok(payload.to_vec())
}

/// CRC-32 (IEEE 802.3, the zlib one), table-driven.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn blob_round_trips_and_detects_damage() {
        let b = encode_blob(b"hello");
        assert_eq!(decode_blob(&b).unwrap(), b"hello");
        assert!(decode_blob(&b[..b.len() - 1])
            .unwrap_err()
            .contains("length"));
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode_blob(&bad).unwrap_err().contains("checksum"));
        assert!(decode_blob(b"garbage").is_err());
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/file");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        remove_file_durable(&p).unwrap();
        remove_file_durable(&p).unwrap();
        assert_eq!(read_optional(&p).unwrap(), None);
    }
}
