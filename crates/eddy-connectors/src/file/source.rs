//! A bounded source of text lines, split across subtasks by byte ranges.
//!
//! Subtask `i` of `p` reads the lines that start in `[i*len/p, (i+1)*len/p)` (both ends moved
//! forward to the next line start), so every line is read by exactly one subtask. The read
//! position — the byte ranges still to read — is operator state, so a restore continues at the
//! first line not emitted before the barrier. Lines are emitted without their `\n` (and without
//! a `\r` before it); a last line without a newline is a line; an empty file has no lines.
//! This source must never block on anything but the local file, and never skip or repeat a line.

use crate::restore::{self, Tagged};
use crate::throttle::Throttle;
use eddy_runtime::data::now_millis;
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{JobError, Output, Result, Source, SourceStatus, TaskInfo};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Operator-state name of the read position.
pub const STATE_NAME: &str = "file-offset";

const READ_BUFFER_BYTES: usize = 256 * 1024;

/// Reads a text file line by line; one clone per subtask.
pub struct FileSource {
    path: PathBuf,
    /// Lines per second for the whole job (all subtasks); `0` = unthrottled.
    rate: f64,
    reading: Option<Reading>,
}

/// A subtask's open file and what is left of its share.
struct Reading {
    reader: BufReader<File>,
    file_len: u64,
    subtask: u32,
    parallelism: u32,
    /// Byte ranges `[start, end)` still to read, in order; `start` of the front is the offset of
    /// the next unread line, and the reader is positioned there.
    remaining: VecDeque<(u64, u64)>,
    line: Vec<u8>,
    /// The job-wide `rate`, this subtask's share.
    throttle: Throttle,
}

/// What is saved at a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FileSourceState {
    subtask: u32,
    parallelism: u32,
    /// The file's length when the job read it: a changed file cannot be resumed.
    file_len: u64,
    remaining: Vec<(u64, u64)>,
}

impl Tagged for FileSourceState {
    fn writer(&self) -> (u32, u32) {
        (self.subtask, self.parallelism)
    }
}

impl Clone for FileSource {
    /// A fresh, unopened source for the same file (the runtime clones one per subtask).
    fn clone(&self) -> Self {
        FileSource::new(self.path.clone()).with_rate(self.rate)
    }
}

impl FileSource {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            rate: 0.0,
            reading: None,
        }
    }

    /// At most `lines_per_sec` lines per second for the whole job, shared evenly by the
    /// subtasks (`0` = unthrottled, the default).
    pub fn with_rate(mut self, lines_per_sec: f64) -> Self {
        self.rate = lines_per_sec;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Up-front validation for job builders: the path is a readable regular file.
    pub fn check(path: impl AsRef<Path>) -> Result<(), String> {
        let path = path.as_ref();
        open_file(path).map(|_| ()).map_err(|e| e.message)
    }
}

fn open_file(path: &Path) -> Result<(File, u64)> {
    let fail =
        |why: String| JobError::new(format!("cannot read input file {}: {why}", path.display()));
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    Ok((file, meta.len()))
}

impl Reading {
    fn io_error(&self, path: &Path, e: std::io::Error) -> JobError {
        JobError::new(format!("cannot read input file {}: {e}", path.display()))
    }

    /// The first line start at or after `pos` (`pos` itself if a line starts there).
    fn align(&mut self, path: &Path, pos: u64) -> Result<u64> {
        if pos == 0 || pos >= self.file_len {
            return Ok(pos.min(self.file_len));
        }
        self.reader
            .seek(SeekFrom::Start(pos - 1))
            .map_err(|e| self.io_error(path, e))?;
        self.line.clear();
        let n = self
            .reader
            .read_until(b'\n', &mut self.line)
            .map_err(|e| self.io_error(path, e))?;
        Ok((pos - 1 + n as u64).min(self.file_len))
    }

    fn seek_to_front(&mut self, path: &Path) -> Result<()> {
        if let Some(&(start, _)) = self.remaining.front() {
            self.reader
                .seek(SeekFrom::Start(start))
                .map_err(|e| self.io_error(path, e))?;
        }
        Ok(())
    }
}

/// The ranges a subtask takes over from restored entries (see `restore.rs`).
fn restored_ranges(entries: &[FileSourceState], info: &TaskInfo) -> Result<Vec<(u64, u64)>> {
    if let Some(own) = restore::own_entry(entries, info) {
        return Ok(own.remaining.clone());
    }
    let old_p = restore::old_parallelism(entries, STATE_NAME)?;
    let mut seen = vec![false; old_p as usize];
    for e in entries {
        if let Some(s) = seen.get_mut(e.subtask as usize) {
            *s = true;
        }
    }
    // A union of all old subtasks' entries: old subtask j's ranges go to new subtask j % p.
    // Anything else (only some entries handed to us): we own exactly what we were given.
    let union = info.parallelism > 1 && seen.iter().all(|s| *s);
    let mut ranges: Vec<(u64, u64)> = entries
        .iter()
        .filter(|e| !union || e.subtask % info.parallelism == info.subtask_index)
        .flat_map(|e| e.remaining.iter().copied())
        .collect();
    ranges.sort_unstable();
    Ok(ranges)
}

impl Source for FileSource {
    type Out = String;

    fn open(&mut self, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> Result<()> {
        let (file, file_len) = open_file(&self.path)?;
        let mut reading = Reading {
            reader: BufReader::with_capacity(READ_BUFFER_BYTES, file),
            file_len,
            subtask: info.subtask_index,
            parallelism: info.parallelism.max(1),
            remaining: VecDeque::new(),
            line: Vec::new(),
            throttle: Throttle::new(self.rate / info.parallelism.max(1) as f64),
        };
        let entries: Vec<FileSourceState> = restore::decode_entries(restored, STATE_NAME)?;
        if entries.is_empty() {
            let (i, p) = (reading.subtask as u128, reading.parallelism as u128);
            let raw_start = (file_len as u128 * i / p) as u64;
            let raw_end = (file_len as u128 * (i + 1) / p) as u64;
            let start = reading.align(&self.path, raw_start)?;
            let end = reading.align(&self.path, raw_end)?;
            if start < end {
                reading.remaining.push_back((start, end));
            }
        } else {
            if let Some(e) = entries.iter().find(|e| e.file_len != file_len) {
                return Err(JobError::new(format!(
                    "input file {} changed since the checkpoint: it had {} bytes, now {}",
                    self.path.display(),
                    e.file_len,
                    file_len
                )));
            }
            let ranges = restored_ranges(&entries, info)?;
            reading.remaining = ranges.into_iter().filter(|(s, e)| s < e).collect();
        }
        reading.seek_to_front(&self.path)?;
        self.reading = Some(reading);
        Ok(())
    }

    fn poll_next(&mut self, out: &mut Output<String>, max_records: usize) -> Result<SourceStatus> {
        let path = &self.path;
        let Some(r) = self.reading.as_mut() else {
            return Err(JobError::new(format!(
                "file source {} polled before open",
                path.display()
            )));
        };
        let limit = match r.throttle.allowance(now_millis(), max_records) {
            Ok(n) => n,
            Err(until) => return Ok(SourceStatus::IdleUntil(until)),
        };
        let mut emitted = 0;
        while emitted < limit {
            let Some(&(start, end)) = r.remaining.front() else {
                break;
            };
            if start >= end {
                r.remaining.pop_front();
                r.seek_to_front(path)?;
                continue;
            }
            r.line.clear();
            let n = r.reader.read_until(b'\n', &mut r.line).map_err(|e| {
                JobError::new(format!("cannot read input file {}: {e}", path.display()))
            })?;
            if n == 0 {
                return Err(JobError::new(format!(
                    "input file {} ended at byte {start}, expected {} bytes (was it truncated?)",
                    path.display(),
                    r.file_len
                )));
            }
            if let Some(front) = r.remaining.front_mut() {
                front.0 = start + n as u64;
            }
            let mut line = &r.line[..];
            if let Some(l) = line.strip_suffix(b"\n") {
                line = l.strip_suffix(b"\r").unwrap_or(l);
            }
            let text = std::str::from_utf8(line).map_err(|_| {
                JobError::new(format!(
                    "input file {}: the line at byte {start} is not valid UTF-8",
                    path.display()
                ))
            })?;
            out.push(text.to_owned());
            emitted += 1;
        }
        r.throttle.record(emitted);
        while r.remaining.front().is_some_and(|&(s, e)| s >= e) {
            r.remaining.pop_front();
            r.seek_to_front(path)?;
        }
        Ok(if r.remaining.is_empty() {
            SourceStatus::Finished
        } else {
            SourceStatus::More
        })
    }

    fn snapshot_state(&mut self, _checkpoint_id: u64, writer: &mut SnapshotWriter) -> Result<()> {
        let Some(r) = self.reading.as_ref() else {
            return Ok(());
        };
        let state = FileSourceState {
            subtask: r.subtask,
            parallelism: r.parallelism,
            file_len: r.file_len,
            remaining: r.remaining.iter().copied().filter(|(s, e)| s < e).collect(),
        };
        writer.put_operator_state(STATE_NAME, restore::encode(STATE_NAME, &state)?);
        Ok(())
    }

    fn close(&mut self) {
        self.reading = None;
    }
}
