//! Savepoint finalisation, opening, disposal and state assignment, on a real temporary
//! filesystem.

use super::*;
use crate::metadata::{CheckpointKind, OperatorInfo, OperatorSubtaskState};
use crate::storage::{read_state_file, CheckpointStorage};

fn job() -> JobId {
    JobId(0xabcd_ef00_0000_1111_2222_3333_4444_5555)
}

fn op(uid: &str, files: Vec<StateFileHandle>, inline: &[u8]) -> OperatorSubtaskState {
    OperatorSubtaskState {
        operator_uid: uid.into(),
        key_groups: None,
        files,
        inline: inline.to_vec(),
        rocksdb: None,
    }
}

/// A savepoint of a two-vertex job: `src` (parallelism 2, inline state) and `count`
/// (parallelism 2, one state file each), state files in `chk-7/` of the job's directory.
fn snapshot(storage: &CheckpointStorage) -> CompletedCheckpoint {
    let mut tasks = Vec::new();
    for s in 0..2u32 {
        tasks.push(TaskState {
            task: ExecutionVertexId::new(0, s),
            state: TaskStateSnapshot {
                operators: vec![op("src", vec![], &[s as u8])],
            },
        });
        let file = storage
            .write_state_file(7, "count", s, format!("keyed {s}").as_bytes())
            .unwrap();
        tasks.push(TaskState {
            task: ExecutionVertexId::new(1, s),
            state: TaskStateSnapshot {
                operators: vec![op("count", vec![file], &[])],
            },
        });
    }
    tasks.sort_by_key(|t| t.task);
    CompletedCheckpoint {
        job_id: job(),
        checkpoint_id: 7,
        kind: CheckpointKind::Savepoint,
        trigger_timestamp_ms: 1,
        completion_timestamp_ms: 2,
        tasks,
        operators: vec![
            OperatorInfo {
                uid: "src".into(),
                parallelism: 2,
                max_parallelism: 128,
            },
            OperatorInfo {
                uid: "count".into(),
                parallelism: 2,
                max_parallelism: 128,
            },
        ],
    }
}

fn shape(vertex: u32, uids: &[&str], parallelism: u32, max_parallelism: u32) -> VertexShape {
    VertexShape {
        vertex,
        operator_uids: uids.iter().map(|u| u.to_string()).collect(),
        parallelism,
        max_parallelism,
    }
}

#[test]
fn a_finalized_savepoint_is_self_contained_and_survives_a_move_and_the_checkpoint_dir() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path().join("checkpoints"), job());
    let cp = snapshot(&storage);
    let sp = new_savepoint_dir(&dir.path().join("savepoints"), job());
    assert!(sp
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("savepoint-abcdef-"));
    let written = finalize_savepoint(&storage.checkpoint_dir(7), &sp, &cp).unwrap();
    assert!(written.files().all(|f| !f.path.contains('/')));
    // The checkpoint directory goes away; the savepoint is moved: it still opens and reads.
    fs::remove_dir_all(dir.path().join("checkpoints")).unwrap();
    let moved = dir.path().join("moved-elsewhere");
    fs::rename(&sp, &moved).unwrap();
    for path in [moved.clone(), moved.join(METADATA_FILE)] {
        let (at, back) = open_snapshot(&path).unwrap();
        assert_eq!(at, moved);
        assert_eq!(back, written);
        let file = back.files().next().unwrap();
        assert!(read_state_file(&at, file).unwrap().starts_with(b"keyed "));
    }
    assert_eq!(dispose(&moved).unwrap(), moved);
    assert!(!moved.exists());
}

#[test]
fn a_failed_finalisation_leaves_no_savepoint_directory() {
    let dir = tempfile::tempdir().unwrap();
    let storage = CheckpointStorage::new(dir.path().join("checkpoints"), job());
    let cp = snapshot(&storage);
    fs::remove_dir_all(storage.checkpoint_dir(7)).unwrap();
    let sp = dir.path().join("sp");
    let e = finalize_savepoint(&storage.checkpoint_dir(7), &sp, &cp).unwrap_err();
    assert!(e.to_string().starts_with("missing state file"), "{e}");
    assert!(!sp.exists());
}

#[test]
fn opening_a_missing_or_corrupt_path_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let e = open_snapshot(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nope:") && !e.contains('\n'), "{e}");
    fs::write(dir.path().join(METADATA_FILE), b"garbage").unwrap();
    let e = open_snapshot(dir.path()).unwrap_err().to_string();
    assert!(
        e.starts_with("corrupt checkpoint metadata") && !e.contains('\n'),
        "{e}"
    );
    let e = dispose(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(e.contains("/nope:"), "{e}");
}

#[test]
fn same_parallelism_gives_each_subtask_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let cp = snapshot(&CheckpointStorage::new(dir.path(), job()));
    // The new graph chains differently: vertex ids change, uids do not.
    let got = assign_to_graph(&cp, &[shape(5, &["src", "count"], 2, 128)], false).unwrap();
    for s in 0..2 {
        let ops = &got
            .task_state(ExecutionVertexId::new(5, s))
            .unwrap()
            .operators;
        assert_eq!(ops.len(), 2);
        assert_eq!(
            ops.iter().find(|o| o.operator_uid == "src").unwrap().inline,
            [s as u8]
        );
    }
}

#[test]
fn rescaling_hands_every_new_subtask_every_old_state_of_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let cp = snapshot(&CheckpointStorage::new(dir.path(), job()));
    for p in [1, 3] {
        let got = assign_to_graph(
            &cp,
            &[shape(0, &["src"], p, 128), shape(1, &["count"], p, 128)],
            false,
        )
        .unwrap();
        for s in 0..p {
            for v in 0..2 {
                let ops = &got
                    .task_state(ExecutionVertexId::new(v, s))
                    .unwrap()
                    .operators;
                assert_eq!(ops.len(), 2, "union of both old subtasks at p={p}");
            }
        }
    }
}

#[test]
fn unmatched_state_fails_naming_the_uid_unless_allowed_and_new_operators_start_empty() {
    let dir = tempfile::tempdir().unwrap();
    let cp = snapshot(&CheckpointStorage::new(dir.path(), job()));
    let graph = [shape(0, &["src"], 2, 128), shape(1, &["count-v2"], 2, 128)];
    let e = assign_to_graph(&cp, &graph, false).unwrap_err();
    assert!(e.contains("operator uid 'count'"), "{e}");
    assert!(
        e.contains("--allow-non-restored-state") && !e.contains('\n'),
        "{e}"
    );
    let got = assign_to_graph(&cp, &graph, true).unwrap();
    assert!(got.task_state(ExecutionVertexId::new(1, 0)).is_none());
    assert!(got.task_state(ExecutionVertexId::new(0, 0)).is_some());
}

#[test]
fn a_different_max_parallelism_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cp = snapshot(&CheckpointStorage::new(dir.path(), job()));
    let e = assign_to_graph(&cp, &[shape(0, &["src", "count"], 2, 256)], false).unwrap_err();
    assert!(
        e.contains("max parallelism 128, the new job has 256"),
        "{e}"
    );
}
