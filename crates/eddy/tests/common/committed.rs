//! Committed output is never retracted: a watcher that records every committed (visible, not
//! dot-prefixed) file of an output directory while a job runs — name, length, checksum, inode and
//! modification time — and checks, on every poll and once more at the end, that each one is still
//! there unchanged. Inode and mtime catch a part deleted and written again with the same content
//! (a rollback and a replay) between two polls, which names and contents alone would miss (file
//! systems reuse a freed inode at once, but the rewrite has a later mtime; committing by link and
//! unlink changes neither). It only reads the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a committed file looked when it was first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedFile {
    pub len: u64,
    /// FNV-1a 64 of the content.
    pub checksum: u64,
    pub inode: u64,
    pub modified: Option<std::time::SystemTime>,
}

/// Watches an output directory in a background thread until [`CommittedWatch::finish`].
pub struct CommittedWatch {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    state: Arc<Mutex<WatchState>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct WatchState {
    seen: BTreeMap<String, CommittedFile>,
    /// Every time a file seen before was missing or different, in order.
    violations: Vec<String>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(unix)]
fn inode(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

#[cfg(not(unix))]
fn inode(_meta: &std::fs::Metadata) -> u64 {
    0
}

/// The committed files of `dir` now (a missing directory has none).
fn committed_now(dir: &Path) -> BTreeMap<String, CommittedFile> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // A file may vanish between listing and reading: then it is simply not there now.
        let (Ok(meta), Ok(bytes)) = (std::fs::metadata(e.path()), std::fs::read(e.path())) else {
            continue;
        };
        out.insert(
            name,
            CommittedFile {
                len: bytes.len() as u64,
                checksum: fnv1a(&bytes),
                inode: inode(&meta),
                modified: meta.modified().ok(),
            },
        );
    }
    out
}

impl WatchState {
    fn observe(&mut self, now: &BTreeMap<String, CommittedFile>, when: &str) {
        for (name, before) in &self.seen {
            match now.get(name) {
                None => self
                    .violations
                    .push(format!("{when}: committed file {name} disappeared")),
                Some(after) if after != before => self.violations.push(format!(
                    "{when}: committed file {name} changed from {before:?} to {after:?}"
                )),
                Some(_) => {}
            }
        }
        for (name, f) in now {
            self.seen.entry(name.clone()).or_insert_with(|| f.clone());
        }
    }
}

impl CommittedWatch {
    /// Starts watching `dir` (it may not exist yet), polling every 10 ms.
    pub fn start(dir: &Path) -> CommittedWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(WatchState::default()));
        let (d, s, st) = (dir.to_path_buf(), stop.clone(), state.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = committed_now(&d);
                if let Ok(mut st) = st.lock() {
                    st.observe(&now, "during the run");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        CommittedWatch {
            dir: dir.to_path_buf(),
            stop,
            state,
            thread: Some(thread),
        }
    }

    /// Stops watching, checks the directory a last time and panics naming every committed file
    /// that disappeared or changed at any moment. Returns the committed files seen.
    pub fn assert_nothing_retracted(mut self) -> BTreeMap<String, CommittedFile> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the committed-file watcher panicked");
        }
        let now = committed_now(&self.dir);
        let mut st = self.state.lock().expect("watch state");
        st.observe(&now, "at the end");
        assert!(
            st.violations.is_empty(),
            "committed output was retracted in {}:\n{}",
            self.dir.display(),
            st.violations.join("\n")
        );
        st.seen.clone()
    }
}

impl Drop for CommittedWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a committed file the way a sink commits: complete under a hidden name, then renamed
    /// (the watcher must never see a half-written committed file).
    fn commit(dir: &Path, name: &str, content: &str) {
        let hidden = dir.join(format!(".{name}.pending"));
        std::fs::write(&hidden, content).expect("write");
        std::fs::rename(&hidden, dir.join(name)).expect("rename");
    }

    #[test]
    fn the_watch_sees_a_deleted_and_rewritten_committed_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join(".hidden"), "x").expect("write");
        commit(dir.path(), "part-0-0", "a\n");
        let watch = CommittedWatch::start(dir.path());
        std::thread::sleep(Duration::from_millis(100));
        std::fs::remove_file(dir.path().join("part-0-0")).expect("remove");
        commit(dir.path(), "part-0-0", "a\n");
        std::fs::remove_file(dir.path().join(".hidden")).expect("hidden files do not count");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            watch.assert_nothing_retracted()
        }));
        assert!(result.is_err(), "a rewritten part is a retraction");
    }

    #[test]
    fn the_watch_accepts_new_committed_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let watch = CommittedWatch::start(dir.path());
        commit(dir.path(), "part-0-0", "a\n");
        std::thread::sleep(Duration::from_millis(50));
        commit(dir.path(), "part-0-1", "b\n");
        let seen = watch.assert_nothing_retracted();
        assert_eq!(seen.len(), 2, "{seen:?}");
    }
}
