//! Checkpoint storage on a real (temporary) filesystem: one test per rule.

use super::*;
use crate::ids::ExecutionVertexId;
use crate::metadata::{CheckpointKind, OperatorSubtaskState, TaskState, TaskStateSnapshot};
use std::fs::OpenOptions;

fn job() -> JobId {
    JobId(0x1234_5678_9abc_def0_1234_5678_9abc_def0)
}

fn storage(dir: &tempfile::TempDir) -> CheckpointStorage {
    CheckpointStorage::new(dir.path(), job())
}

/// Writes a two-task checkpoint `id` (state files + `_metadata`) and returns its metadata.
fn write_checkpoint(s: &CheckpointStorage, id: CheckpointId) -> CompletedCheckpoint {
    let cp = write_state_files(s, id);
    s.write_metadata(&cp).unwrap();
    cp
}

/// Writes the state files of a two-task checkpoint `id`, not its `_metadata`.
fn write_state_files(s: &CheckpointStorage, id: CheckpointId) -> CompletedCheckpoint {
    let mut tasks = Vec::new();
    for subtask in 0..2u32 {
        let data = format!("state of checkpoint {id} subtask {subtask}").repeat(10);
        let file = s
            .write_state_file(id, "counter/uid", subtask, data.as_bytes())
            .unwrap();
        tasks.push(TaskState {
            task: ExecutionVertexId::new(0, subtask),
            state: TaskStateSnapshot {
                operators: vec![OperatorSubtaskState {
                    operator_uid: "counter/uid".into(),
                    key_groups: None,
                    files: vec![file],
                    inline: vec![subtask as u8, 7],
                    rocksdb: None,
                }],
            },
        });
    }
    CompletedCheckpoint {
        operators: Vec::new(),
        job_id: job(),
        checkpoint_id: id,
        kind: CheckpointKind::Checkpoint,
        trigger_timestamp_ms: 1000 * id,
        completion_timestamp_ms: 1000 * id + 5,
        tasks,
    }
}

fn first_file(s: &CheckpointStorage, cp: &CompletedCheckpoint) -> PathBuf {
    let handle = cp.files().next().unwrap();
    resolve_state_file(&s.checkpoint_dir(cp.checkpoint_id), handle).unwrap()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn checkpoint_round_trips_through_the_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let cp = write_checkpoint(&s, 1);
    assert!(s
        .metadata_path(1)
        .ends_with(format!("{}/chk-1/_metadata", job())));
    assert_eq!(s.read_metadata(1).unwrap(), cp);
    assert_eq!(
        read_metadata(&s.checkpoint_dir(1)).unwrap(),
        cp,
        "a directory path works too"
    );
    let handle = &cp.tasks[1].state.operators[0].files[0];
    assert!(handle.path.starts_with("counter_uid-1-"), "{}", handle.path);
    assert_eq!(
        s.read_state_file(1, handle).unwrap(),
        "state of checkpoint 1 subtask 1".repeat(10).into_bytes()
    );
    assert_eq!(s.list_retained().unwrap(), vec![1]);
    let selection = s.latest_restorable(VerifyLevel::Full).unwrap();
    assert_eq!(selection.checkpoint, Some(cp));
    assert!(selection.skipped.is_empty());
    // Nothing but the final files is left behind.
    assert!(names_in(&s.checkpoint_dir(1))
        .iter()
        .all(|n| !n.starts_with('.')));
}

#[test]
fn corrupted_metadata_byte_falls_back_to_the_previous_checkpoint_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let older = write_checkpoint(&s, 1);
    write_checkpoint(&s, 2);
    let path = s.metadata_path(2);
    let text = fs::read_to_string(&path).unwrap();
    // Still valid JSON, different content: only the checksum can tell.
    let tampered = text.replace(
        "\"trigger_timestamp_ms\":2000",
        "\"trigger_timestamp_ms\":2001",
    );
    assert_ne!(tampered, text);
    fs::write(&path, tampered).unwrap();

    let selection = s.latest_restorable(VerifyLevel::Lengths).unwrap();
    assert_eq!(selection.checkpoint, Some(older));
    assert_eq!(selection.skipped.len(), 1);
    assert_eq!(selection.skipped[0].id, 2);
    assert!(matches!(
        selection.skipped[0].error,
        StorageError::ChecksumMismatch { .. }
    ));
    let reason = selection.skipped[0].to_string();
    assert!(
        reason.starts_with("checkpoint 2 skipped: checksum mismatch in "),
        "{reason}"
    );
    assert!(reason.contains("chk-2/_metadata"), "{reason}");
    assert!(!reason.contains('\n'));
}

#[test]
fn flipped_metadata_byte_anywhere_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    write_checkpoint(&s, 1);
    let path = s.metadata_path(1);
    let original = fs::read(&path).unwrap();
    for i in (0..original.len()).step_by(7) {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        assert!(
            s.read_metadata(1).is_err(),
            "flip at byte {i} went unnoticed"
        );
    }
}

#[test]
fn missing_state_file_falls_back_to_the_previous_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let older = write_checkpoint(&s, 1);
    let newer = write_checkpoint(&s, 2);
    fs::remove_file(first_file(&s, &newer)).unwrap();

    let selection = s.latest_restorable(VerifyLevel::Lengths).unwrap();
    assert_eq!(selection.checkpoint, Some(older));
    assert!(matches!(
        selection.skipped[0].error,
        StorageError::MissingFile { .. }
    ));
    assert!(selection.skipped[0]
        .to_string()
        .contains("missing state file"));
}

#[test]
fn truncated_state_file_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let cp = write_checkpoint(&s, 1);
    let file = first_file(&s, &cp);
    OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(5)
        .unwrap();

    let err = s
        .read_state_file(1, cp.files().next().unwrap())
        .unwrap_err();
    assert!(
        matches!(err, StorageError::LengthMismatch { actual: 5, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&file.display().to_string()));
    let selection = s.latest_restorable(VerifyLevel::Lengths).unwrap();
    assert_eq!(selection.checkpoint, None);
    assert!(matches!(
        selection.skipped[0].error,
        StorageError::LengthMismatch { .. }
    ));
}

#[test]
fn truncated_metadata_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    write_checkpoint(&s, 1);
    let path = s.metadata_path(1);
    let len = fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let err = s.read_metadata(1).unwrap_err();
    assert!(matches!(err, StorageError::CorruptMetadata { .. }), "{err}");
}

#[test]
fn corrupted_state_file_content_is_detected_by_full_verification() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let older = write_checkpoint(&s, 1);
    let newer = write_checkpoint(&s, 2);
    let file = first_file(&s, &newer);
    let mut bytes = fs::read(&file).unwrap();
    bytes[3] ^= 0xff;
    fs::write(&file, bytes).unwrap();

    // Same length: only the CRC tells.
    assert_eq!(
        s.latest_restorable(VerifyLevel::Lengths)
            .unwrap()
            .checkpoint,
        Some(newer.clone())
    );
    let selection = s.latest_restorable(VerifyLevel::Full).unwrap();
    assert_eq!(selection.checkpoint, Some(older));
    assert!(matches!(
        selection.skipped[0].error,
        StorageError::ChecksumMismatch { .. }
    ));
    let err = s
        .read_state_file(2, newer.files().next().unwrap())
        .unwrap_err();
    assert!(matches!(err, StorageError::ChecksumMismatch { .. }));
}

#[test]
fn temp_files_are_ignored_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let cp = write_checkpoint(&s, 1);
    // A writer crashed mid-file in chk-1, and before any final file of chk-3.
    fs::write(
        s.checkpoint_dir(1)
            .join(".counter-0-abc.tmp-0123456789abcdef"),
        b"partial",
    )
    .unwrap();
    fs::create_dir_all(s.checkpoint_dir(3)).unwrap();
    fs::write(
        s.checkpoint_dir(3).join("._metadata.tmp-0123456789abcdef"),
        b"{\"form",
    )
    .unwrap();

    assert_eq!(
        s.list_retained().unwrap(),
        vec![1],
        "a temp _metadata is not a checkpoint"
    );
    assert_eq!(
        s.latest_restorable(VerifyLevel::Full).unwrap().checkpoint,
        Some(cp)
    );
    assert_eq!(
        s.remove_stale_temp_files(Duration::from_secs(3600))
            .unwrap(),
        0,
        "too young"
    );
    assert_eq!(s.remove_stale_temp_files(Duration::ZERO).unwrap(), 2);
    assert!(names_in(&s.checkpoint_dir(3)).is_empty());
    assert_eq!(s.read_metadata(1).unwrap().checkpoint_id, 1);
}

#[test]
fn discard_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    write_checkpoint(&s, 1);
    write_checkpoint(&s, 2);
    s.discard(1).unwrap();
    s.discard(1).unwrap();
    s.discard(77).unwrap();
    assert!(!s.checkpoint_dir(1).exists());
    assert_eq!(s.list_retained().unwrap(), vec![2]);
}

#[test]
fn half_discarded_checkpoint_is_not_retained() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    write_checkpoint(&s, 1);
    // A crash after the first step of discard: `_metadata` gone, state files still there.
    fs::remove_file(s.metadata_path(1)).unwrap();
    assert!(s.list_retained().unwrap().is_empty());
    assert_eq!(
        s.latest_restorable(VerifyLevel::Full).unwrap().checkpoint,
        None
    );
    s.discard(1).unwrap();
    assert!(!s.checkpoint_dir(1).exists());
}

#[test]
fn highest_checkpoint_id_counts_incomplete_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    assert_eq!(
        s.highest_checkpoint_id().unwrap(),
        None,
        "no job directory yet"
    );
    write_checkpoint(&s, 4);
    s.write_state_file(9, "op", 0, b"never completed").unwrap();
    fs::create_dir_all(s.job_dir().join("chk-x")).unwrap();
    fs::create_dir_all(s.job_dir().join("chk-")).unwrap();
    assert_eq!(s.highest_checkpoint_id().unwrap(), Some(9));
    assert_eq!(s.list_retained().unwrap(), vec![4]);
}

#[test]
fn metadata_write_is_idempotent_and_never_overwrites_a_different_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let cp = write_checkpoint(&s, 1);
    s.write_metadata(&cp).unwrap();
    let mut other = cp.clone();
    other.completion_timestamp_ms += 1;
    let err = s.write_metadata(&other).unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists { .. }), "{err}");
    assert_eq!(s.read_metadata(1).unwrap(), cp);
    assert!(
        names_in(&s.checkpoint_dir(1))
            .iter()
            .all(|n| !n.starts_with('.')),
        "temp cleaned up"
    );
}

#[test]
fn metadata_of_another_job_or_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let cp = write_checkpoint(&s, 1);
    let mut foreign = cp.clone();
    foreign.job_id = JobId(5);
    assert!(matches!(
        s.write_metadata(&foreign),
        Err(StorageError::Mismatch { .. })
    ));
    // A `_metadata` copied into the wrong chk directory is not trusted.
    fs::create_dir_all(s.checkpoint_dir(2)).unwrap();
    fs::copy(s.metadata_path(1), s.metadata_path(2)).unwrap();
    assert!(matches!(
        s.read_metadata(2),
        Err(StorageError::Mismatch { .. })
    ));
}

#[test]
fn unsupported_format_version_is_reported_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    write_checkpoint(&s, 1);
    let path = s.metadata_path(1);
    let text = fs::read_to_string(&path)
        .unwrap()
        .replace("\"format_version\":1", "\"format_version\":9");
    fs::write(&path, text).unwrap();
    let err = s.read_metadata(1).unwrap_err().to_string();
    assert!(
        err.contains("version 9") && err.contains("reads version 1"),
        "{err}"
    );
}

#[test]
fn handle_paths_escaping_the_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let chk = dir.path().join("chk-1");
    for bad in [
        "../../etc/passwd",
        "/etc/passwd",
        "",
        "a//b",
        "./x",
        ".hidden.tmp-1",
        "../shared/../x",
    ] {
        let handle = StateFileHandle {
            path: bad.into(),
            len: 0,
            crc32: 0,
        };
        let err = resolve_state_file(&chk, &handle).unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidPath { .. }),
            "{bad}: {err}"
        );
    }
    let ok = StateFileHandle {
        path: "../shared/sst-1".into(),
        len: 0,
        crc32: 0,
    };
    assert_eq!(
        resolve_state_file(&chk, &ok).unwrap(),
        dir.path().join("shared").join("sst-1")
    );
}

#[test]
fn shared_files_are_readable_from_any_checkpoint_and_discarded_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(&dir);
    let shared = s
        .write_shared_file("000042.sst", &mut &b"sst bytes"[..])
        .unwrap();
    assert!(shared.is_shared(), "{}", shared.path);
    let mut cp = write_state_files(&s, 3);
    cp.tasks[0].state.operators[0].files.push(shared.clone());
    s.write_metadata(&cp).unwrap();
    assert_eq!(s.read_state_file(3, &shared).unwrap(), b"sst bytes");
    assert_eq!(
        s.latest_restorable(VerifyLevel::Full).unwrap().checkpoint,
        Some(cp)
    );
    s.discard_shared(std::slice::from_ref(&shared)).unwrap();
    s.discard_shared(std::slice::from_ref(&shared)).unwrap();
    assert!(matches!(
        s.read_state_file(3, &shared),
        Err(StorageError::MissingFile { .. })
    ));
    let exclusive = StateFileHandle {
        path: "x".into(),
        len: 0,
        crc32: 0,
    };
    assert!(
        s.discard_shared(&[exclusive]).is_err(),
        "only shared files may be discarded that way"
    );
}

#[test]
fn savepoint_directory_is_relocatable() {
    let dir = tempfile::tempdir().unwrap();
    let sp = dir.path().join("savepoint-123456-abcdef");
    let file = write_state_file(&sp, "src", 0, &mut &b"offsets"[..]).unwrap();
    let cp = CompletedCheckpoint {
        operators: Vec::new(),
        job_id: job(),
        checkpoint_id: 12,
        kind: CheckpointKind::Savepoint,
        trigger_timestamp_ms: 1,
        completion_timestamp_ms: 2,
        tasks: vec![TaskState {
            task: ExecutionVertexId::new(0, 0),
            state: TaskStateSnapshot {
                operators: vec![OperatorSubtaskState {
                    operator_uid: "src".into(),
                    key_groups: None,
                    files: vec![file.clone()],
                    inline: vec![],
                    rocksdb: None,
                }],
            },
        }],
    };
    write_metadata(&sp, &cp).unwrap();
    let moved = dir.path().join("elsewhere");
    fs::rename(&sp, &moved).unwrap();
    let back = read_metadata(&moved.join(METADATA_FILE)).unwrap();
    assert_eq!(back, cp);
    assert_eq!(read_state_file(&moved, &file).unwrap(), b"offsets");
    discard_directory(&moved).unwrap();
    discard_directory(&moved).unwrap();
    assert!(!moved.exists());
}

#[test]
fn io_errors_are_one_line_and_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = read_metadata(&dir.path().join("nope").join(METADATA_FILE)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("cannot read "), "{msg}");
    assert!(msg.contains("nope/_metadata"), "{msg}");
    assert!(!msg.contains('\n'));
}
