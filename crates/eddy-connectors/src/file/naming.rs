//! The names of the exactly-once sink's files — the only code that builds or parses them.
//!
//! | file | name | visible to readers |
//! |---|---|---|
//! | in-progress (being written) | `.part-<subtask>-<n>.inprogress.<run-token>` | no (leading dot) |
//! | pending (closed, staged at a checkpoint) | `.part-<subtask>-<n>.pending` | no |
//! | committed | `part-<subtask>-<n>` | yes |
//! | job marker (this directory belongs to job `<id>`) | `.eddy-job-<id>` | no |
//!
//! The in-progress name carries the run token so two attempts never write the same file.

/// What a file in the output directory is, as far as the sink is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PartFile {
    Committed { subtask: u32, part: u64 },
    Pending { subtask: u32, part: u64 },
    InProgress { subtask: u32, part: u64 },
}

impl PartFile {
    pub(crate) fn subtask(&self) -> u32 {
        match *self {
            PartFile::Committed { subtask, .. }
            | PartFile::Pending { subtask, .. }
            | PartFile::InProgress { subtask, .. } => subtask,
        }
    }
}

pub(crate) fn committed_name(subtask: u32, part: u64) -> String {
    format!("part-{subtask}-{part}")
}

pub(crate) fn pending_name(subtask: u32, part: u64) -> String {
    format!(".part-{subtask}-{part}.pending")
}

pub(crate) fn in_progress_name(subtask: u32, part: u64, run_token: &str) -> String {
    format!(".part-{subtask}-{part}.inprogress.{}", file_safe(run_token))
}

pub(crate) fn job_marker_name(job_id: &str) -> String {
    format!(".eddy-job-{}", file_safe(job_id))
}

/// Parses a sink file name; anything else in the directory is `None` and left alone.
pub(crate) fn parse(name: &str) -> Option<PartFile> {
    if let Some(rest) = name.strip_prefix("part-") {
        let (subtask, part) = parse_numbers(rest)?;
        return Some(PartFile::Committed { subtask, part });
    }
    let rest = name.strip_prefix(".part-")?;
    if let Some(numbers) = rest.strip_suffix(".pending") {
        let (subtask, part) = parse_numbers(numbers)?;
        return Some(PartFile::Pending { subtask, part });
    }
    let (numbers, token) = rest.split_once(".inprogress.")?;
    if token.is_empty() {
        return None;
    }
    let (subtask, part) = parse_numbers(numbers)?;
    Some(PartFile::InProgress { subtask, part })
}

/// `<subtask>-<n>`, both plain decimal numbers.
fn parse_numbers(s: &str) -> Option<(u32, u64)> {
    let (subtask, part) = s.split_once('-')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(subtask) || !digits(part) {
        return None;
    }
    Some((subtask.parse().ok()?, part.parse().ok()?))
}

/// Keeps `[A-Za-z0-9_-]`, replaces anything else, so a token can never form a path.
fn file_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "_".to_string()
    } else {
        cleaned
    }
}
