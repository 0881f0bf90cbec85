//! Tests of the file source and the exactly-once file sink, on real files in temp directories.

use super::*;
use crate::testing::{drain, poll, snapshot_source, task_info, union};
use eddy_runtime::snapshot::{OperatorSnapshot, SnapshotWriter};
use eddy_runtime::{Sink, Source, SourceStatus, TaskInfo};
use std::fs;
use std::path::Path;

// ---------------------------------------------------------------- file source

fn write_file(dir: &Path, content: &[u8]) -> std::path::PathBuf {
    let path = dir.join("input.txt");
    fs::write(&path, content).unwrap();
    path
}

/// Lines as `str::lines` sees them: no trailing empty line for a final `\n`, `\r\n` stripped.
fn expected_lines(content: &str) -> Vec<String> {
    content.lines().map(str::to_string).collect()
}

fn read_split(path: &Path, p: u32, max: usize) -> Vec<Vec<String>> {
    (0..p)
        .map(|i| {
            let mut src = FileSource::new(path);
            src.open(&task_info(i, p), None).unwrap();
            drain(&mut src, max)
        })
        .collect()
}

fn sample_contents() -> Vec<String> {
    let mut generated = String::new();
    for i in 0..500u32 {
        // Lines of very different lengths, some empty.
        let len = (i * 7919) % 37;
        if i % 11 == 0 {
            generated.push('\n');
        }
        generated.push_str(&"x".repeat(len as usize));
        generated.push_str(&format!("-{i}\n"));
    }
    vec![
        "a\nb\nc\n".into(),
        "a\nb\nc".into(),
        "\n\nx\n\n".into(),
        "\n".into(),
        String::new(),
        "single line without newline".into(),
        "one\r\ntwo\r\n\r\nthree".into(),
        "long line ".repeat(100) + "\nshort\n\n\nend",
        generated.clone(),
        generated.trim_end().to_string(),
    ]
}

#[test]
fn split_across_subtasks_reads_every_line_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    for content in sample_contents() {
        let path = write_file(dir.path(), content.as_bytes());
        for p in [1, 2, 3, 4, 7, 50] {
            let parts = read_split(&path, p, 3);
            let all: Vec<String> = parts.concat();
            assert_eq!(all, expected_lines(&content), "p={p} content={content:?}");
        }
    }
}

#[test]
fn split_gives_each_subtask_a_share_of_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
    let path = write_file(dir.path(), content.as_bytes());
    let parts = read_split(&path, 4, 1024);
    for part in &parts {
        assert!(
            part.len() > 2000 && part.len() < 3000,
            "unbalanced split: {}",
            part.len()
        );
    }
}

#[test]
fn poll_emits_at_most_max_records_and_finishes_at_the_end_of_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), b"1\n2\n3\n4\n5\n");
    let mut src = FileSource::new(&path);
    src.open(&task_info(0, 1), None).unwrap();
    assert_eq!(
        poll(&mut src, 2),
        (vec!["1".to_string(), "2".into()], SourceStatus::More)
    );
    assert_eq!(
        poll(&mut src, 2),
        (vec!["3".to_string(), "4".into()], SourceStatus::More)
    );
    assert_eq!(
        poll(&mut src, 2),
        (vec!["5".to_string()], SourceStatus::Finished)
    );
}

#[test]
fn restore_after_snapshot_mid_file_continues_at_the_next_unread_line() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (0..1000).map(|i| format!("{i}\n")).collect();
    let path = write_file(dir.path(), content.as_bytes());
    for p in [1u32, 3] {
        let mut emitted = Vec::new();
        for i in 0..p {
            let mut src = FileSource::new(&path);
            src.open(&task_info(i, p), None).unwrap();
            let (first, _) = poll(&mut src, 17);
            let snap = snapshot_source(&mut src, 1);
            // What the failed run emitted after the barrier is lost with it.
            let _ = poll(&mut src, 5);
            let mut again = FileSource::new(&path);
            again.open(&task_info(i, p), Some(&snap)).unwrap();
            emitted.extend(first);
            emitted.extend(drain(&mut again, 64));
        }
        assert_eq!(emitted, expected_lines(&content), "p={p}");
    }
}

#[test]
fn restore_at_a_different_parallelism_reads_the_rest_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let content: String = (0..777).map(|i| format!("row-{i}\n")).collect();
    let path = write_file(dir.path(), content.as_bytes());
    for (old_p, new_p) in [(3u32, 2u32), (2, 5), (4, 1)] {
        let mut emitted = Vec::new();
        let mut snaps = Vec::new();
        for i in 0..old_p {
            let mut src = FileSource::new(&path);
            src.open(&task_info(i, old_p), None).unwrap();
            emitted.extend(poll(&mut src, 10 + 20 * i as usize).0);
            snaps.push(snapshot_source(&mut src, 7));
        }
        let restored = union(&snaps);
        for i in 0..new_p {
            let mut src = FileSource::new(&path);
            src.open(&task_info(i, new_p), Some(&restored)).unwrap();
            emitted.extend(drain(&mut src, 33));
        }
        let mut expected = expected_lines(&content);
        expected.sort();
        emitted.sort();
        assert_eq!(emitted, expected, "{old_p} -> {new_p}");
    }
}

#[test]
fn a_missing_input_fails_open_with_one_line_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.txt");
    let mut src = FileSource::new(&path);
    let err = src.open(&task_info(0, 1), None).unwrap_err().message;
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let err = FileSource::check(&path).unwrap_err();
    assert!(err.contains("nope.txt"), "{err}");
    assert!(FileSource::check(dir.path())
        .unwrap_err()
        .contains("not a regular file"));
    fs::write(&path, "x\n").unwrap();
    assert_eq!(FileSource::check(&path), Ok(()));
}

#[test]
fn a_file_changed_since_the_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), b"a\nb\nc\n");
    let mut src = FileSource::new(&path);
    src.open(&task_info(0, 1), None).unwrap();
    let _ = poll(&mut src, 1);
    let snap = snapshot_source(&mut src, 1);
    fs::write(&path, b"a\nb\nc\nd\n").unwrap();
    let mut again = FileSource::new(&path);
    let err = again
        .open(&task_info(0, 1), Some(&snap))
        .unwrap_err()
        .message;
    assert!(err.contains("changed since the checkpoint"), "{err}");
}

#[test]
fn invalid_utf8_fails_with_the_byte_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), b"ok\n\xff\xfe\n");
    let mut src = FileSource::new(&path);
    src.open(&task_info(0, 1), None).unwrap();
    let mut out = eddy_runtime::Output::new();
    let err = src.poll_next(&mut out, 10).unwrap_err().message;
    assert!(err.contains("byte 3") && err.contains("UTF-8"), "{err}");
}

// ---------------------------------------------------------------- file sink

/// Names in the directory a reader would see (no dot-files), sorted.
fn visible(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn all_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every visible line, file by file in name order.
fn visible_lines(dir: &Path) -> Vec<String> {
    visible(dir)
        .iter()
        .flat_map(|n| {
            fs::read_to_string(dir.join(n))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn open_sink(dir: &Path, info: &TaskInfo, restored: Option<&OperatorSnapshot>) -> FileSink<u64> {
    let mut sink = FileSink::new(dir);
    sink.open(info, restored).unwrap();
    sink
}

fn write(sink: &mut FileSink<u64>, records: impl IntoIterator<Item = u64>) {
    let mut batch: Vec<u64> = records.into_iter().collect();
    sink.write_batch(&mut batch).unwrap();
    assert!(batch.is_empty(), "write_batch must drain");
}

fn snapshot_sink(sink: &mut FileSink<u64>, checkpoint_id: u64) -> OperatorSnapshot {
    let mut w = SnapshotWriter::new();
    sink.snapshot_state(checkpoint_id, &mut w).unwrap();
    w.into_snapshot()
}

fn lines(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

#[test]
fn written_lines_stay_invisible_until_the_checkpoint_completes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut sink = open_sink(&out, &task_info(0, 1), None);
    write(&mut sink, 0..10);
    assert!(visible(&out).is_empty());
    assert!(
        all_files(&out)
            .iter()
            .any(|n| n.starts_with(".part-0-0.inprogress.")),
        "{:?}",
        all_files(&out)
    );
    snapshot_sink(&mut sink, 1);
    assert!(visible(&out).is_empty());
    assert!(all_files(&out).contains(&".part-0-0.pending".to_string()));
    sink.notify_checkpoint_complete(1).unwrap();
    assert_eq!(visible(&out), vec!["part-0-0"]);
    assert_eq!(visible_lines(&out), lines(0..10));
}

#[test]
fn notify_commits_only_checkpoints_up_to_its_id_and_twice_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..5);
    snapshot_sink(&mut sink, 1);
    snapshot_sink(&mut sink, 2); // nothing written in between: no empty part
    write(&mut sink, 5..8);
    snapshot_sink(&mut sink, 3);
    write(&mut sink, 8..9);
    sink.notify_checkpoint_complete(2).unwrap();
    assert_eq!(visible(dir.path()), vec!["part-0-0"]);
    sink.notify_checkpoint_complete(2).unwrap();
    sink.notify_checkpoint_complete(3).unwrap();
    sink.notify_checkpoint_complete(3).unwrap();
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    assert_eq!(visible_lines(dir.path()), lines(0..8));
}

#[test]
fn finish_commits_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    snapshot_sink(&mut sink, 1); // staged, never notified
    write(&mut sink, 3..6);
    sink.finish().unwrap();
    sink.close();
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    assert_eq!(visible_lines(dir.path()), lines(0..6));
    assert!(!all_files(dir.path())
        .iter()
        .any(|n| n.contains("pending") || n.contains("inprogress")));
}

#[test]
fn finish_without_checkpointing_commits_everything_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    sink.finish().unwrap();
    assert_eq!(visible_lines(dir.path()), lines(0..3));
}

/// FLIP-147: with checkpointing, output written before and at the end of input (operators'
/// `finish`) becomes visible only when the final checkpoint completes, and a restore from that
/// checkpoint keeps every committed part.
#[test]
fn with_checkpointing_finish_commits_nothing_and_the_final_checkpoint_commits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut info = task_info(0, 1);
    info.checkpointing = true;
    let mut sink = open_sink(dir.path(), &info, None);
    write(&mut sink, 0..3);
    snapshot_sink(&mut sink, 1);
    sink.notify_checkpoint_complete(1).unwrap();
    write(&mut sink, 3..6); // the last records, e.g. windows fired by the final watermark
    sink.finish().unwrap();
    assert_eq!(
        visible(dir.path()),
        vec!["part-0-0"],
        "finish must not commit with checkpointing on"
    );
    let final_state = snapshot_sink(&mut sink, 2);
    assert_eq!(visible(dir.path()), vec!["part-0-0"]);
    sink.notify_checkpoint_complete(2).unwrap();
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    assert_eq!(visible_lines(dir.path()), lines(0..6));
    sink.close();
    // The job fails before it is FINISHED and restores the final checkpoint: nothing committed
    // disappears, and finishing again (nothing more to write) adds nothing.
    let mut again = FileSink::<u64>::new(dir.path());
    let mut info2 = info.clone();
    info2.attempt = 1;
    info2.run_token = "run-second".into();
    again.open(&info2, Some(&final_state)).unwrap();
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    again.finish().unwrap();
    snapshot_sink(&mut again, 3);
    again.notify_checkpoint_complete(3).unwrap();
    assert_eq!(visible_lines(dir.path()), lines(0..6));
}

#[test]
fn restore_recommits_staged_output_and_deletes_an_aborted_attempts_files() {
    let dir = tempfile::tempdir().unwrap();
    let info = task_info(0, 1);
    let mut sink = open_sink(dir.path(), &info, None);
    write(&mut sink, 0..4);
    let state = snapshot_sink(&mut sink, 1);
    write(&mut sink, 100..104);
    snapshot_sink(&mut sink, 2); // checkpoint 2 never completes
    write(&mut sink, 200..204); // in progress when the process dies
    drop(sink); // a crash: no close, no notify

    let mut restored = FileSink::<u64>::new(dir.path());
    let mut info2 = task_info(0, 1);
    info2.run_token = "run-second".into();
    info2.attempt = 1;
    restored.open(&info2, Some(&state)).unwrap();
    assert_eq!(
        visible(dir.path()),
        vec!["part-0-0"],
        "{:?}",
        all_files(dir.path())
    );
    assert_eq!(visible_lines(dir.path()), lines(0..4));
    let hidden: Vec<String> = all_files(dir.path())
        .into_iter()
        .filter(|n| n.starts_with(".part"))
        .collect();
    assert!(hidden.is_empty(), "stray files left: {hidden:?}");

    // Numbering goes on from the restored counter.
    write(&mut restored, 4..6);
    snapshot_sink(&mut restored, 3);
    restored.notify_checkpoint_complete(3).unwrap();
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    assert_eq!(visible_lines(dir.path()), lines(0..6));

    // Restoring the same state again: re-committing is a no-op, nothing covered is lost.
    restored.close();
    let mut third = FileSink::<u64>::new(dir.path());
    third.open(&info2, Some(&state)).unwrap();
    assert_eq!(
        visible_lines(dir.path()),
        lines(0..4),
        "parts after checkpoint 1 are rolled back"
    );
}

#[test]
fn restore_finds_a_commit_interrupted_between_link_and_unlink_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    let state = snapshot_sink(&mut sink, 1);
    drop(sink);
    fs::hard_link(
        dir.path().join(".part-0-0.pending"),
        dir.path().join("part-0-0"),
    )
    .unwrap();
    let _again = open_sink(dir.path(), &task_info(0, 1), Some(&state));
    assert_eq!(visible_lines(dir.path()), lines(0..3));
    assert!(!dir.path().join(".part-0-0.pending").exists());
}

#[test]
fn restore_removes_parts_committed_after_the_restored_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    let state = snapshot_sink(&mut sink, 1);
    write(&mut sink, 3..6);
    sink.finish().unwrap(); // end of input, then the job fails before it is FINISHED
    assert_eq!(visible(dir.path()), vec!["part-0-0", "part-0-1"]);
    let mut again = open_sink(dir.path(), &task_info(0, 1), Some(&state));
    assert_eq!(visible(dir.path()), vec!["part-0-0"]);
    write(&mut again, 3..6); // the replay
    again.finish().unwrap();
    assert_eq!(visible_lines(dir.path()), lines(0..6));
}

#[test]
fn a_missing_staged_part_is_an_error_not_silent_loss() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    let state = snapshot_sink(&mut sink, 1);
    drop(sink);
    fs::remove_file(dir.path().join(".part-0-0.pending")).unwrap();
    let mut again = FileSink::<u64>::new(dir.path());
    let err = again
        .open(&task_info(0, 1), Some(&state))
        .unwrap_err()
        .message;
    assert!(err.contains("part-0-0") && err.contains("lost"), "{err}");
}

#[test]
fn commit_never_overwrites_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    snapshot_sink(&mut sink, 1);
    fs::write(dir.path().join("part-0-0"), "someone else's\n").unwrap();
    let err = sink.notify_checkpoint_complete(1).unwrap_err().message;
    assert!(err.contains("part-0-0"), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("part-0-0")).unwrap(),
        "someone else's\n"
    );
}

#[test]
fn a_fresh_job_refuses_a_directory_with_another_jobs_parts() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("part-0-0"), "old\n").unwrap();
    let mut sink = FileSink::<u64>::new(dir.path());
    let err = sink.open(&task_info(0, 1), None).unwrap_err().message;
    assert!(
        err.contains("already contains part files")
            && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("part-0-0")).unwrap(),
        "old\n"
    );
}

#[test]
fn the_same_job_restarted_without_a_checkpoint_starts_over_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    sink.finish().unwrap();
    write(&mut sink, 3..4); // never finished: stays in progress
    drop(sink);
    // No checkpoint completed: the whole input is replayed, so the earlier output goes.
    let mut again = open_sink(dir.path(), &task_info(0, 1), None);
    assert!(visible(dir.path()).is_empty());
    write(&mut again, 0..4);
    again.finish().unwrap();
    assert_eq!(visible_lines(dir.path()), lines(0..4));
}

#[test]
fn an_unwritable_output_directory_fails_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    fs::write(&blocker, "x").unwrap();
    let out = blocker.join("out");
    let mut sink = FileSink::<u64>::new(&out);
    let err = sink.open(&task_info(0, 1), None).unwrap_err().message;
    assert!(
        err.contains(&out.display().to_string()) && !err.contains('\n'),
        "{err}"
    );
    let err = FileSink::check(&out).unwrap_err();
    assert!(err.contains(&out.display().to_string()), "{err}");
    let fine = dir.path().join("new").join("nested");
    assert_eq!(FileSink::check(&fine), Ok(()));
    assert!(fine.is_dir());
    assert!(all_files(&fine).is_empty(), "the check writes nothing");
    // An existing directory no file may be created in (procfs refuses even root).
    let err = FileSink::check("/proc/self").unwrap_err();
    assert!(
        err.contains("output directory /proc/self is not writable") && !err.contains('\n'),
        "{err}"
    );
}

#[test]
fn parts_roll_at_the_part_size_and_commit_at_the_next_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::<u64>::new(dir.path()).with_part_size(20);
    sink.open(&task_info(0, 1), None).unwrap();
    for i in 0..10 {
        write(&mut sink, i * 10..i * 10 + 10);
    }
    assert!(visible(dir.path()).is_empty());
    let state = snapshot_sink(&mut sink, 1);
    sink.notify_checkpoint_complete(1).unwrap();
    assert_eq!(visible(dir.path()).len(), 10);
    let mut lines_seen = visible_lines(dir.path());
    lines_seen.sort_by_key(|l| l.parse::<u64>().unwrap());
    assert_eq!(lines_seen, lines(0..100));
    assert!(!state.is_empty());
}

#[test]
fn subtasks_write_their_own_parts_and_a_rescaled_restore_recovers_all_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut states = Vec::new();
    for i in 0..3u32 {
        let mut sink = open_sink(dir.path(), &task_info(i, 3), None);
        write(&mut sink, (i as u64 * 100)..(i as u64 * 100 + 5));
        states.push(snapshot_sink(&mut sink, 1));
        write(&mut sink, 900..905); // aborted
        snapshot_sink(&mut sink, 2);
        drop(sink);
    }
    assert!(visible(dir.path()).is_empty());
    // Checkpoint 1 completed, then everything failed before the commit; restart at p = 2.
    let restored = union(&states);
    let mut sinks: Vec<_> = (0..2)
        .map(|i| open_sink(dir.path(), &task_info(i, 2), Some(&restored)))
        .collect();
    assert_eq!(
        visible(dir.path()),
        vec!["part-0-0", "part-1-0", "part-2-0"]
    );
    assert!(
        !all_files(dir.path()).iter().any(|n| n.starts_with(".part")),
        "{:?}",
        all_files(dir.path())
    );
    let mut expected: Vec<String> = (0..3u64)
        .flat_map(|i| lines(i * 100..i * 100 + 5))
        .collect();
    assert_eq!(visible_lines(dir.path()), expected);
    // The new subtasks go on after their old numbers.
    for (i, sink) in sinks.iter_mut().enumerate() {
        write(sink, [1000 + i as u64]);
        snapshot_sink(sink, 3);
        sink.notify_checkpoint_complete(3).unwrap();
    }
    assert_eq!(
        visible(dir.path()),
        vec!["part-0-0", "part-0-1", "part-1-0", "part-1-1", "part-2-0"]
    );
    expected.insert(5, "1000".into());
    expected.insert(11, "1001".into());
    assert_eq!(visible_lines(dir.path()), expected);
}

#[test]
fn a_format_closure_shapes_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = FileSink::with_format(dir.path(), |r: &(u64, u64), s: &mut String| {
        use std::fmt::Write;
        let _ = write!(s, "{},{}", r.0, r.1);
    });
    sink.open(&task_info(0, 1), None).unwrap();
    let mut batch = vec![(1, 2), (3, 4)];
    sink.write_batch(&mut batch).unwrap();
    sink.finish().unwrap();
    assert_eq!(
        fs::read_to_string(dir.path().join("part-0-0")).unwrap(),
        "1,2\n3,4\n"
    );
}

#[test]
fn close_without_finish_leaves_nothing_visible() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink = open_sink(dir.path(), &task_info(0, 1), None);
    write(&mut sink, 0..3);
    sink.close();
    assert!(visible(dir.path()).is_empty());
    assert!(!all_files(dir.path())
        .iter()
        .any(|n| n.contains("inprogress")));
}

#[test]
fn file_names_parse_back() {
    use super::naming::{self, PartFile};
    assert_eq!(
        naming::parse(&naming::committed_name(3, 12)),
        Some(PartFile::Committed {
            subtask: 3,
            part: 12
        })
    );
    assert_eq!(
        naming::parse(&naming::pending_name(0, 7)),
        Some(PartFile::Pending {
            subtask: 0,
            part: 7
        })
    );
    assert_eq!(
        naming::parse(&naming::in_progress_name(2, 5, "a/b..c")),
        Some(PartFile::InProgress {
            subtask: 2,
            part: 5
        })
    );
    assert!(!naming::in_progress_name(2, 5, "a/b").contains('/'));
    for other in [
        "part-1",
        "part-x-1",
        "part-1-2.txt",
        ".part-1-2",
        ".part-1-2.inprogress.",
        "readme",
        "_SUCCESS",
    ] {
        assert_eq!(naming::parse(other), None, "{other}");
    }
}
