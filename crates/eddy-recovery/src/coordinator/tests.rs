//! One test per rule of the checkpoint coordinator (SPEC §2–§3, Flink's semantics).

use super::*;
use crate::metadata::OperatorSubtaskState;
use eddy_core::settings::CheckpointingMode;

const S: u64 = 1000;

pub(super) fn ev(v: u32, s: u32) -> ExecutionVertexId {
    ExecutionVertexId::new(v, s)
}

pub(super) fn sources() -> BTreeSet<ExecutionVertexId> {
    BTreeSet::from([ev(0, 0), ev(0, 1)])
}

fn all_tasks() -> BTreeSet<ExecutionVertexId> {
    BTreeSet::from([ev(0, 0), ev(0, 1), ev(1, 0), ev(1, 1)])
}

pub(super) fn settings() -> CheckpointingSettings {
    CheckpointingSettings {
        interval: Some(Duration::from_secs(10)),
        mode: CheckpointingMode::ExactlyOnce,
        timeout: Duration::from_secs(60),
        min_pause: Duration::ZERO,
        max_concurrent: 1,
        tolerable_failed: 0,
        num_retained: 1,
        externalized_retention: ExternalizedCheckpointRetention::NoExternalizedCheckpoints,
    }
}

fn coordinator_with(settings: CheckpointingSettings) -> CheckpointCoordinator {
    coordinator_from(settings, 1)
}

fn coordinator_from(
    settings: CheckpointingSettings,
    first_id: CheckpointId,
) -> CheckpointCoordinator {
    CheckpointCoordinator::new(CoordinatorConfig {
        job_id: JobId(0xabc),
        settings,
        tasks_to_trigger: sources(),
        tasks_to_ack: all_tasks(),
        first_checkpoint_id: first_id,
    })
}

/// A running coordinator (tasks running since t = 0).
pub(super) fn running(settings: CheckpointingSettings) -> CheckpointCoordinator {
    let mut c = coordinator_with(settings);
    c.tasks_running(0);
    c
}

fn state(task: ExecutionVertexId, files: &[&str]) -> TaskStateSnapshot {
    TaskStateSnapshot {
        operators: vec![OperatorSubtaskState {
            operator_uid: format!("op-{}", task.vertex),
            key_groups: None,
            files: files
                .iter()
                .map(|p| StateFileHandle {
                    path: p.to_string(),
                    len: 10,
                    crc32: 1,
                })
                .collect(),
            inline: vec![task.subtask as u8],
            rocksdb: None,
        }],
    }
}

pub(super) fn triggered(cmds: &[Command]) -> Vec<CheckpointId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::TriggerCheckpoint { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn aborted(cmds: &[Command]) -> Vec<(CheckpointId, CheckpointFailureReason)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::AbortCheckpoint { id, reason, .. } => Some((*id, reason.clone())),
            _ => None,
        })
        .collect()
}

fn discarded(cmds: &[Command]) -> Vec<CheckpointId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::DiscardCheckpoint { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn notified(cmds: &[Command]) -> Vec<CheckpointId> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::NotifyComplete { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn fail_job(cmds: &[Command]) -> Option<String> {
    cmds.iter().find_map(|c| match c {
        Command::FailJob { reason } => Some(reason.clone()),
        _ => None,
    })
}

fn write_requested(cmds: &[Command]) -> Option<&CompletedCheckpoint> {
    cmds.iter().find_map(|c| match c {
        Command::WriteMetadataAndComplete { metadata, .. } => Some(metadata),
        _ => None,
    })
}

/// Triggers the next periodic checkpoint at `now` and returns its id.
pub(super) fn trigger_at(c: &mut CheckpointCoordinator, now: u64) -> CheckpointId {
    let cmds = c.tick(now);
    let ids = triggered(&cmds);
    assert_eq!(ids.len(), 1, "expected one trigger at {now}: {cmds:?}");
    ids[0]
}

fn ack_all(c: &mut CheckpointCoordinator, id: CheckpointId, now: u64) -> Vec<Command> {
    let mut out = Vec::new();
    for t in all_tasks() {
        out.extend(c.ack(id, t, state(t, &[]), now));
    }
    out
}

/// Acks from every task, then the metadata write succeeds.
pub(super) fn complete(c: &mut CheckpointCoordinator, id: CheckpointId, now: u64) -> Vec<Command> {
    let mut out = ack_all(c, id, now);
    assert!(
        write_requested(&out).is_some(),
        "all acks must request the metadata write"
    );
    out.extend(c.metadata_written(id, now));
    out
}

/// A counted failure: a task declines because its upload failed.
pub(super) fn fail(c: &mut CheckpointCoordinator, id: CheckpointId, now: u64) -> Vec<Command> {
    let reason = DeclineReason::AsyncSnapshotFailed("upload failed".into());
    let cmds = c.decline(id, ev(1, 0), reason, now);
    assert_eq!(aborted(&cmds).len(), 1, "{cmds:?}");
    cmds
}

#[test]
fn no_trigger_while_tasks_are_not_all_running() {
    let mut c = coordinator_with(settings());
    assert!(c.tick(100 * S).is_empty());
    assert_eq!(c.next_deadline(), None);
    c.tasks_running(100 * S);
    assert_eq!(trigger_at(&mut c, 110 * S), 1);
}

#[test]
fn periodic_checkpoint_is_triggered_every_interval() {
    let mut c = running(settings());
    assert_eq!(c.next_deadline(), Some(10 * S));
    assert!(c.tick(10 * S - 1).is_empty());
    let cmds = c.tick(10 * S);
    assert_eq!(
        cmds,
        vec![Command::TriggerCheckpoint {
            id: 1,
            timestamp_ms: 10 * S,
            target: CheckpointTarget::Checkpoint,
            tasks: sources().into_iter().collect(),
        }]
    );
    complete(&mut c, 1, 11 * S);
    assert_eq!(c.next_deadline(), Some(20 * S));
    assert!(c.tick(20 * S - 1).is_empty());
    assert_eq!(trigger_at(&mut c, 20 * S), 2);
}

#[test]
fn checkpointing_disabled_never_triggers_periodically() {
    let mut c = running(CheckpointingSettings {
        interval: None,
        ..settings()
    });
    assert!(c.tick(1_000 * S).is_empty());
    assert_eq!(c.next_deadline(), None);
}

#[test]
fn min_pause_is_measured_from_the_end_of_the_last_completed_checkpoint() {
    let mut c = running(CheckpointingSettings {
        min_pause: Duration::from_secs(30),
        ..settings()
    });
    let id = trigger_at(&mut c, 10 * S);
    complete(&mut c, id, 15 * S);
    // interval says 20 s, min-pause says 15 s + 30 s.
    assert_eq!(c.next_deadline(), Some(45 * S));
    assert!(triggered(&c.tick(44 * S)).is_empty());
    assert_eq!(trigger_at(&mut c, 45 * S), 2);
}

#[test]
fn min_pause_is_measured_from_the_end_of_the_last_aborted_checkpoint() {
    let mut c = running(CheckpointingSettings {
        min_pause: Duration::from_secs(30),
        tolerable_failed: 10,
        ..settings()
    });
    let id = trigger_at(&mut c, 10 * S);
    c.decline(
        id,
        ev(1, 0),
        DeclineReason::Other("disk full".into()),
        12 * S,
    );
    assert_eq!(c.next_deadline(), Some(42 * S));
    assert!(triggered(&c.tick(41 * S)).is_empty());
    assert_eq!(trigger_at(&mut c, 42 * S), 2);
}

#[test]
fn min_pause_implies_one_checkpoint_at_a_time() {
    let mut c = running(CheckpointingSettings {
        interval: Some(Duration::from_secs(1)),
        min_pause: Duration::from_millis(1),
        max_concurrent: 5,
        ..settings()
    });
    trigger_at(&mut c, S);
    assert!(triggered(&c.tick(5 * S)).is_empty());
    assert_eq!(c.pending_ids(), vec![1]);
}

#[test]
fn max_concurrent_checkpoints_limits_checkpoints_in_flight() {
    let mut c = running(CheckpointingSettings {
        interval: Some(Duration::from_secs(1)),
        max_concurrent: 2,
        ..settings()
    });
    assert_eq!(trigger_at(&mut c, S), 1);
    assert_eq!(trigger_at(&mut c, 2 * S), 2);
    assert!(triggered(&c.tick(3 * S)).is_empty());
    assert_eq!(
        c.next_deadline(),
        Some(S + 60 * S),
        "only the timeout is a deadline when full"
    );
    complete(&mut c, 1, 3 * S + 500);
    // Overdue: the next tick triggers at once.
    assert!(c.next_deadline().is_some_and(|d| d <= 3 * S + 500));
    assert_eq!(trigger_at(&mut c, 3 * S + 500), 3);
}

#[test]
fn checkpoint_not_acknowledged_within_timeout_is_aborted() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 5,
        ..settings()
    });
    let id = trigger_at(&mut c, 10 * S);
    c.ack(id, ev(0, 0), state(ev(0, 0), &[]), 11 * S);
    assert_eq!(c.next_deadline(), Some(70 * S));
    assert!(aborted(&c.tick(70 * S - 1)).is_empty());
    let cmds = c.tick(70 * S);
    assert_eq!(aborted(&cmds), vec![(id, CheckpointFailureReason::Expired)]);
    assert_eq!(discarded(&cmds), vec![id]);
    assert_eq!(fail_job(&cmds), None);
    assert_eq!(c.consecutive_failures(), 1);
    // The interval and min-pause allow the next checkpoint in the same tick.
    assert_eq!(triggered(&cmds), vec![id + 1]);
}

#[test]
fn decline_aborts_the_checkpoint() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 5,
        ..settings()
    });
    let id = trigger_at(&mut c, 10 * S);
    let reason = DeclineReason::AsyncSnapshotFailed("upload failed".into());
    let cmds = c.decline(id, ev(1, 1), reason.clone(), 11 * S);
    assert_eq!(
        aborted(&cmds),
        vec![(
            id,
            CheckpointFailureReason::Declined {
                task: ev(1, 1),
                reason
            }
        )]
    );
    assert_eq!(discarded(&cmds), vec![id]);
    assert!(c.pending_ids().is_empty());
    assert_eq!(c.consecutive_failures(), 1);
}

#[test]
fn decline_because_a_task_is_not_ready_is_not_counted() {
    let mut c = running(settings()); // tolerable 0: any counted failure fails the job
    let id = trigger_at(&mut c, 10 * S);
    let cmds = c.decline(id, ev(0, 1), DeclineReason::TaskNotReady, 11 * S);
    assert_eq!(aborted(&cmds).len(), 1);
    assert_eq!(fail_job(&cmds), None);
    assert_eq!(c.consecutive_failures(), 0);
}

#[test]
fn tolerable_failed_checkpoints_are_counted_consecutively() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 2,
        ..settings()
    });
    let mut now = 0;
    for n in 1..=3 {
        now += 10 * S;
        let id = trigger_at(&mut c, now);
        let cmds = fail(&mut c, id, now + 1);
        if n < 3 {
            assert_eq!(fail_job(&cmds), None, "failure {n} is tolerated");
        } else {
            let reason = fail_job(&cmds).expect("the third consecutive failure exceeds 2");
            assert!(reason.contains("3 consecutive"), "{reason}");
            assert!(reason.contains("2 tolerated"), "{reason}");
        }
    }
    assert_eq!(
        c.consecutive_failures(),
        0,
        "the count restarts after FailJob"
    );
}

#[test]
fn completed_checkpoint_resets_the_failure_count() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 2,
        ..settings()
    });
    let mut now = 0;
    let mut outcomes = Vec::new();
    for ok in [false, false, true, false, false] {
        now += 10 * S;
        let id = trigger_at(&mut c, now);
        let cmds = if ok {
            complete(&mut c, id, now + 1)
        } else {
            fail(&mut c, id, now + 1)
        };
        outcomes.push(fail_job(&cmds));
    }
    assert!(outcomes.iter().all(Option::is_none), "{outcomes:?}");
    assert_eq!(c.consecutive_failures(), 2);
}

#[test]
fn checkpoint_completes_only_when_every_task_acknowledged_and_metadata_is_written() {
    let mut c = running(settings());
    let id = trigger_at(&mut c, 10 * S);
    let tasks: Vec<_> = all_tasks().into_iter().collect();
    for t in &tasks[..3] {
        assert!(c.ack(id, *t, state(*t, &["f"]), 11 * S).is_empty());
    }
    let cmds = c.ack(id, tasks[3], state(tasks[3], &["f"]), 12 * S);
    let metadata = write_requested(&cmds)
        .expect("last ack requests the metadata write")
        .clone();
    assert_eq!(
        cmds.len(),
        1,
        "nothing is notified before _metadata is durable: {cmds:?}"
    );
    assert_eq!(metadata.checkpoint_id, id);
    assert_eq!(metadata.job_id, JobId(0xabc));
    assert_eq!(metadata.trigger_timestamp_ms, 10 * S);
    assert_eq!(metadata.completion_timestamp_ms, 12 * S);
    assert_eq!(
        metadata.tasks.iter().map(|t| t.task).collect::<Vec<_>>(),
        tasks
    );
    assert!(c.latest_completed().is_none());

    let cmds = c.metadata_written(id, 13 * S);
    assert_eq!(
        cmds,
        vec![Command::NotifyComplete {
            id,
            tasks: tasks.clone()
        }]
    );
    assert_eq!(c.latest_completed(), Some(&metadata));
    assert!(c.pending_ids().is_empty());
}

#[test]
fn acks_for_unknown_or_aborted_checkpoints_are_ignored() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 5,
        ..settings()
    });
    assert!(
        c.ack(99, ev(0, 0), state(ev(0, 0), &[]), S).is_empty(),
        "never triggered"
    );
    let id = trigger_at(&mut c, 10 * S);
    assert!(
        c.ack(id, ev(9, 9), state(ev(9, 9), &[]), 11 * S).is_empty(),
        "not a task of the job"
    );
    c.ack(id, ev(0, 0), state(ev(0, 0), &[]), 11 * S);
    c.decline(id, ev(0, 1), DeclineReason::Other("x".into()), 11 * S);
    for t in all_tasks() {
        assert!(
            c.ack(id, t, state(t, &[]), 12 * S).is_empty(),
            "aborted checkpoint"
        );
    }
    assert!(c
        .decline(id, ev(1, 0), DeclineReason::Other("y".into()), 12 * S)
        .is_empty());
    assert!(c.metadata_written(id, 12 * S).is_empty());
    assert!(c.latest_completed().is_none());
    assert_eq!(c.consecutive_failures(), 1);

    // A repeated ack does not count twice.
    let id = trigger_at(&mut c, 30 * S);
    for _ in 0..4 {
        assert!(c.ack(id, ev(0, 0), state(ev(0, 0), &[]), 31 * S).is_empty());
    }
    assert_eq!(c.pending_ids(), vec![id]);
}

#[test]
fn retention_discards_the_oldest_checkpoints_beyond_num_retained() {
    let mut c = running(CheckpointingSettings {
        num_retained: 2,
        ..settings()
    });
    let mut discards = Vec::new();
    for n in 1..=4u64 {
        let id = trigger_at(&mut c, n * 10 * S);
        let cmds = complete(&mut c, id, n * 10 * S + 1);
        discards.extend(discarded(&cmds));
    }
    assert_eq!(discards, vec![1, 2]);
    let kept: Vec<_> = c.completed_checkpoints().map(|c| c.checkpoint_id).collect();
    assert_eq!(kept, vec![3, 4]);
    assert_eq!(c.latest_completed().map(|c| c.checkpoint_id), Some(4));
}

#[test]
fn checkpoint_ids_strictly_increase_and_never_repeat() {
    let mut c = coordinator_from(
        CheckpointingSettings {
            tolerable_failed: 100,
            ..settings()
        },
        42,
    );
    assert_eq!(c.next_checkpoint_id(), 42);
    c.tasks_running(0);
    let mut ids = vec![trigger_at(&mut c, 10 * S)];
    fail(&mut c, ids[0], 11 * S); // aborted ids are not reused
    ids.push(trigger_at(&mut c, 80 * S));
    c.job_restarting(81 * S); // nor across restarts
    c.tasks_running(90 * S);
    ids.push(trigger_at(&mut c, 100 * S));
    ids.push(c.trigger_savepoint(101 * S, "/sp/a").unwrap().0); // savepoints share the sequence
    assert_eq!(ids, vec![42, 43, 44, 45]);
    // Restored checkpoints from a previous JobMaster push the counter above them.
    let mut old = c
        .latest_completed()
        .cloned()
        .unwrap_or_else(|| CompletedCheckpoint {
            operators: Vec::new(),
            job_id: JobId(0xabc),
            checkpoint_id: 0,
            kind: CheckpointKind::Checkpoint,
            trigger_timestamp_ms: 0,
            completion_timestamp_ms: 0,
            tasks: vec![],
        });
    old.checkpoint_id = 100;
    c.restore_completed(vec![old]);
    assert_eq!(c.next_checkpoint_id(), 101);
    c.job_restarting(102 * S);
    c.tasks_running(102 * S);
    assert_eq!(trigger_at(&mut c, 112 * S), 101);
}

#[test]
fn task_failure_aborts_every_pending_checkpoint_and_stops_triggering() {
    let mut c = running(CheckpointingSettings {
        interval: Some(Duration::from_secs(1)),
        max_concurrent: 2,
        ..settings()
    });
    trigger_at(&mut c, S);
    trigger_at(&mut c, 2 * S);
    let cmds = c.task_failed(ev(1, 0), 2 * S + 1);
    assert_eq!(
        aborted(&cmds),
        vec![
            (1, CheckpointFailureReason::TaskFailure(ev(1, 0))),
            (2, CheckpointFailureReason::TaskFailure(ev(1, 0)))
        ]
    );
    assert_eq!(discarded(&cmds), vec![1, 2]);
    assert_eq!(
        fail_job(&cmds),
        None,
        "task failures are not checkpoint failures"
    );
    assert!(
        c.tick(100 * S).is_empty(),
        "no trigger until the tasks run again"
    );
    assert_eq!(c.next_deadline(), None);
    c.tasks_running(100 * S);
    assert_eq!(trigger_at(&mut c, 101 * S), 3);
}

#[test]
fn job_restarting_aborts_every_pending_checkpoint() {
    let mut c = running(settings());
    let id = trigger_at(&mut c, 10 * S);
    let cmds = c.job_restarting(11 * S);
    assert_eq!(
        aborted(&cmds),
        vec![(id, CheckpointFailureReason::JobFailover)]
    );
    assert_eq!(fail_job(&cmds), None);
    assert!(!c.is_running());
}

#[test]
fn metadata_write_failure_aborts_the_checkpoint_and_counts() {
    let mut c = running(settings());
    let id = trigger_at(&mut c, 10 * S);
    ack_all(&mut c, id, 11 * S);
    let cmds = c.metadata_write_failed(id, "disk full", 12 * S);
    assert_eq!(
        aborted(&cmds),
        vec![(
            id,
            CheckpointFailureReason::MetadataWriteFailed("disk full".into())
        )]
    );
    assert_eq!(discarded(&cmds), vec![id]);
    assert!(
        fail_job(&cmds).is_some(),
        "tolerable 0: the first counted failure fails the job"
    );
    assert!(c.latest_completed().is_none());
}

#[test]
fn completed_checkpoint_subsumes_older_pending_checkpoints() {
    let mut c = running(CheckpointingSettings {
        interval: Some(Duration::from_secs(1)),
        max_concurrent: 2,
        ..settings()
    });
    let older = trigger_at(&mut c, S);
    let newer = trigger_at(&mut c, 2 * S);
    let cmds = complete(&mut c, newer, 3 * S);
    assert_eq!(notified(&cmds), vec![newer]);
    assert_eq!(
        aborted(&cmds),
        vec![(older, CheckpointFailureReason::Subsumed { by: newer })]
    );
    assert_eq!(discarded(&cmds), vec![older]);
    assert_eq!(fail_job(&cmds), None);
    assert!(c.pending_ids().is_empty());
}

#[test]
fn checkpoint_aborted_while_writing_metadata_is_discarded_after_the_write() {
    let mut c = running(settings());
    let id = trigger_at(&mut c, 10 * S);
    ack_all(&mut c, id, 11 * S);
    let cmds = c.job_restarting(12 * S);
    assert_eq!(
        aborted(&cmds),
        vec![(id, CheckpointFailureReason::JobFailover)]
    );
    assert!(discarded(&cmds).is_empty(), "the write is still in flight");
    assert!(
        c.pending_ids().is_empty(),
        "it no longer counts as in flight"
    );
    let cmds = c.metadata_written(id, 13 * S);
    assert_eq!(discarded(&cmds), vec![id]);
    assert!(
        notified(&cmds).is_empty(),
        "never notify a checkpoint the job will not restore"
    );
    assert!(c.latest_completed().is_none());
    assert!(c.metadata_written(id, 14 * S).is_empty());
}

#[test]
fn writing_metadata_does_not_time_out() {
    let mut c = running(settings());
    let id = trigger_at(&mut c, 10 * S);
    ack_all(&mut c, id, 11 * S);
    assert!(aborted(&c.tick(500 * S)).is_empty());
    assert_eq!(notified(&c.metadata_written(id, 501 * S)), vec![id]);
}

#[test]
fn savepoint_ignores_interval_and_concurrency_and_is_not_retained() {
    let mut c = running(settings());
    let cp = trigger_at(&mut c, 10 * S);
    let (sp, cmds) = c.trigger_savepoint(11 * S, "/savepoints/sp-1").unwrap();
    assert_eq!(
        cmds,
        vec![Command::TriggerCheckpoint {
            id: sp,
            timestamp_ms: 11 * S,
            target: CheckpointTarget::Savepoint {
                dir: "/savepoints/sp-1".into()
            },
            tasks: sources().into_iter().collect(),
        }]
    );
    let cmds = ack_all(&mut c, sp, 12 * S);
    let metadata = write_requested(&cmds).unwrap();
    assert_eq!(metadata.kind, CheckpointKind::Savepoint);
    let cmds = c.metadata_written(sp, 13 * S);
    assert!(
        cmds.is_empty(),
        "a plain savepoint commits no side effects: {cmds:?}"
    );
    assert!(
        c.latest_completed().is_none(),
        "savepoints are not used for failover"
    );
    assert_eq!(
        c.pending_ids(),
        vec![cp],
        "an older pending checkpoint is not subsumed by a savepoint"
    );
    assert_eq!(c.stats().latest_savepoint.as_ref().map(|s| s.id), Some(sp));
}

#[test]
fn savepoint_is_refused_unless_all_tasks_run() {
    let mut c = coordinator_with(settings());
    assert_eq!(
        c.trigger_savepoint(0, "/sp").unwrap_err(),
        TriggerError::NotAllTasksRunning
    );
    c.tasks_running(0);
    c.shutdown(JobShutdownStatus::Canceled, S);
    assert_eq!(
        c.trigger_savepoint(2 * S, "/sp").unwrap_err(),
        TriggerError::ShutDown
    );
}

#[test]
fn stop_with_savepoint_notifies_tasks_on_completion() {
    let mut c = running(settings());
    let (id, _) = c.trigger_stop_with_savepoint(S, "/sp/stop", false).unwrap();
    ack_all(&mut c, id, 2 * S);
    assert_eq!(notified(&c.metadata_written(id, 3 * S)), vec![id]);
}

#[test]
fn no_periodic_checkpoint_follows_a_stop_with_savepoint_unless_it_failed() {
    // A checkpoint after the stop savepoint would commit output beyond it.
    let mut c = running(settings());
    let (id, _) = c.trigger_stop_with_savepoint(S, "/sp/stop", false).unwrap();
    ack_all(&mut c, id, 2 * S);
    c.metadata_written(id, 3 * S);
    assert_eq!(triggered(&c.tick(100 * S)), Vec::<CheckpointId>::new());
    // A failed stop savepoint leaves the job running: periodic checkpoints resume.
    let mut c = running(settings());
    let (id, _) = c.trigger_stop_with_savepoint(S, "/sp/stop", false).unwrap();
    c.decline(id, ev(0, 0), DeclineReason::Other("no".into()), 2 * S);
    assert_eq!(triggered(&c.tick(100 * S)).len(), 1);
}

#[test]
fn a_failed_drained_stop_savepoint_allows_no_checkpoint_until_the_tasks_restart() {
    // Its sources already ended their input: a checkpoint now would be their final one and
    // finish the job early. Only a restart (which restores them) lets checkpoints resume.
    let mut c = running(settings());
    let (id, _) = c.trigger_stop_with_savepoint(S, "/sp/stop", true).unwrap();
    c.decline(id, ev(0, 0), DeclineReason::Other("no".into()), 2 * S);
    assert_eq!(triggered(&c.tick(100 * S)), Vec::<CheckpointId>::new());
    c.tasks_redeployed([ev(0, 0)]);
    assert_eq!(triggered(&c.tick(200 * S)).len(), 1);
}

#[test]
fn failed_savepoint_does_not_count_towards_tolerable_failures() {
    let mut c = running(settings());
    let (id, _) = c.trigger_savepoint(S, "/sp/x").unwrap();
    let cmds = c.decline(id, ev(0, 0), DeclineReason::Other("boom".into()), 2 * S);
    assert_eq!(fail_job(&cmds), None);
    assert_eq!(
        cmds.iter()
            .find(|c| matches!(c, Command::DiscardCheckpoint { .. })),
        Some(&Command::DiscardCheckpoint {
            id,
            target: CheckpointTarget::Savepoint {
                dir: "/sp/x".into()
            },
            shared_files: vec![],
        })
    );
}

#[test]
fn shared_files_are_discarded_only_when_no_retained_checkpoint_refers_to_them() {
    let mut c = running(CheckpointingSettings {
        num_retained: 1,
        ..settings()
    });
    let t = all_tasks();
    let complete_with = |c: &mut CheckpointCoordinator, now: u64, files: &[&str]| {
        let id = trigger_at(c, now);
        let mut out = Vec::new();
        for task in &t {
            out.extend(c.ack(id, *task, state(*task, files), now + 1));
        }
        out.extend(c.metadata_written(id, now + 2));
        out
    };
    complete_with(&mut c, 10 * S, &["../shared/a", "../shared/b", "x"]);
    let cmds = complete_with(&mut c, 20 * S, &["../shared/b", "../shared/c"]);
    let shared: Vec<Vec<String>> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::DiscardCheckpoint { shared_files, .. } => {
                Some(shared_files.iter().map(|f| f.path.clone()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        shared,
        vec![vec!["../shared/a".to_string()]],
        "b is still used by checkpoint 2"
    );
}

/// Completes a checkpoint at `now` whose every task refers to `files`.
fn complete_with(c: &mut CheckpointCoordinator, now: u64, files: &[&str]) -> Vec<Command> {
    let id = trigger_at(c, now);
    let mut out = Vec::new();
    for task in all_tasks() {
        out.extend(c.ack(id, task, state(task, files), now + 1));
    }
    out.extend(c.metadata_written(id, now + 2));
    out
}

fn shared_discards(cmds: &[Command]) -> Vec<String> {
    cmds.iter()
        .flat_map(|c| match c {
            Command::DiscardCheckpoint { shared_files, .. } => shared_files.clone(),
            _ => vec![],
        })
        .map(|f| f.path)
        .collect()
}

#[test]
fn the_shared_state_registry_counts_retained_and_in_flight_references() {
    let mut c = running(CheckpointingSettings {
        num_retained: 2,
        ..settings()
    });
    complete_with(&mut c, 10 * S, &["../shared/a", "../shared/b"]);
    complete_with(&mut c, 20 * S, &["../shared/b", "../shared/c"]);
    let r = c.shared_state();
    assert_eq!(r.references("../shared/a"), 1);
    assert_eq!(r.references("../shared/b"), 2);
    // In flight: one ack refers to a and d.
    let id = trigger_at(&mut c, 30 * S);
    c.ack(
        id,
        ev(1, 0),
        state(ev(1, 0), &["../shared/a", "../shared/d"]),
        30 * S + 1,
    );
    assert_eq!(c.shared_state().references("../shared/a"), 2);
    // Checkpoint 3 completes (a from one task, c from the others): 1 goes, a stays (in 3).
    for task in all_tasks().into_iter().filter(|t| *t != ev(1, 0)) {
        c.ack(id, task, state(task, &["../shared/c"]), 30 * S + 2);
    }
    let cmds = c.metadata_written(id, 30 * S + 3);
    assert_eq!(discarded(&cmds), vec![1]);
    assert_eq!(
        shared_discards(&cmds),
        Vec::<String>::new(),
        "a is in checkpoint 3"
    );
    // An aborted checkpoint's new files go; the ones retained checkpoints hold stay.
    let id = trigger_at(&mut c, 40 * S);
    c.ack(
        id,
        ev(1, 1),
        state(ev(1, 1), &["../shared/c", "../shared/e"]),
        40 * S + 1,
    );
    let cmds = c.decline(id, ev(0, 0), DeclineReason::Other("x".into()), 40 * S + 2);
    assert_eq!(shared_discards(&cmds), vec!["../shared/e".to_string()]);
}

#[test]
fn a_new_coordinator_rebuilds_the_registry_from_the_retained_checkpoints() {
    // The old leader retained checkpoints 1 and 2; a new one (JobManager failover) loads them.
    let mut old = running(CheckpointingSettings {
        num_retained: 2,
        ..settings()
    });
    complete_with(&mut old, 10 * S, &["../shared/a", "../shared/b"]);
    complete_with(&mut old, 20 * S, &["../shared/b", "../shared/c"]);
    let retained: Vec<CompletedCheckpoint> = old.completed_checkpoints().cloned().collect();
    let mut new = coordinator_from(
        CheckpointingSettings {
            num_retained: 2,
            ..settings()
        },
        1,
    );
    assert!(new.restore_completed(retained).is_empty());
    new.tasks_running(100 * S);
    assert_eq!(new.shared_state().references("../shared/b"), 2);
    // Checkpoint 3 subsumes 1: a (only in 1) is deleted, b (in 2 and 3) is not.
    let cmds = complete_with(&mut new, 200 * S, &["../shared/b", "../shared/d"]);
    assert_eq!(discarded(&cmds), vec![1]);
    assert_eq!(shared_discards(&cmds), vec!["../shared/a".to_string()]);
    // Checkpoint 4 subsumes 2: c goes; b stays with 3.
    let cmds = complete_with(&mut new, 300 * S, &["../shared/d"]);
    assert_eq!(shared_discards(&cmds), vec!["../shared/c".to_string()]);
}

#[test]
fn a_late_reference_to_a_deleted_shared_file_aborts_the_checkpoint() {
    let mut c = running(settings());
    complete_with(&mut c, 10 * S, &["../shared/a"]);
    let cmds = complete_with(&mut c, 20 * S, &["../shared/b"]);
    assert_eq!(shared_discards(&cmds), vec!["../shared/a".to_string()]);
    // A task that had not seen checkpoint 2 complete bases checkpoint 3 on checkpoint 1.
    let id = trigger_at(&mut c, 30 * S);
    let cmds = c.ack(id, ev(1, 0), state(ev(1, 0), &["../shared/a"]), 30 * S + 1);
    assert_eq!(aborted(&cmds).len(), 1, "{cmds:?}");
    assert_eq!(
        fail_job(&cmds),
        None,
        "not counted against the tolerable failures"
    );
    assert!(c.pending_ids().is_empty());
}

#[test]
fn a_late_ack_of_an_aborted_checkpoint_has_its_new_shared_files_deleted() {
    let mut c = running(settings());
    complete_with(&mut c, 10 * S, &["../shared/a"]);
    let id = trigger_at(&mut c, 20 * S);
    c.decline(id, ev(0, 0), DeclineReason::AlignmentCancelled, 20 * S + 1);
    let late = state(ev(1, 0), &["../shared/a", "../shared/new"]);
    let cmds = c.ack(id, ev(1, 0), late.clone(), 20 * S + 2);
    assert_eq!(discarded(&cmds), vec![id]);
    assert_eq!(shared_discards(&cmds), vec!["../shared/new".to_string()]);
    // Not for a retained checkpoint.
    assert!(c.ack(1, ev(1, 0), late, 20 * S + 3).is_empty());
}

#[test]
fn a_finished_job_deletes_the_shared_files_its_finished_tasks_carried() {
    let mut c = running(settings());
    complete_with(&mut c, 10 * S, &["../shared/a"]);
    for t in all_tasks() {
        c.task_finished(t, 11 * S);
    }
    assert_eq!(c.shared_state().references("../shared/a"), 1 + 4);
    let cmds = c.shutdown(JobShutdownStatus::Finished, 12 * S);
    assert_eq!(shared_discards(&cmds), vec!["../shared/a".to_string()]);
}

#[test]
fn shutdown_discards_retained_checkpoints_as_the_retention_policy_says() {
    use ExternalizedCheckpointRetention as R;
    let cases = [
        (
            R::NoExternalizedCheckpoints,
            JobShutdownStatus::Canceled,
            true,
        ),
        (
            R::NoExternalizedCheckpoints,
            JobShutdownStatus::Failed,
            true,
        ),
        (
            R::NoExternalizedCheckpoints,
            JobShutdownStatus::Suspended,
            false,
        ),
        (R::DeleteOnCancellation, JobShutdownStatus::Canceled, true),
        (R::DeleteOnCancellation, JobShutdownStatus::Failed, false),
        (R::RetainOnCancellation, JobShutdownStatus::Canceled, false),
        (R::RetainOnCancellation, JobShutdownStatus::Finished, true),
    ];
    for (retention, status, discards) in cases {
        let mut c = running(CheckpointingSettings {
            externalized_retention: retention,
            ..settings()
        });
        let id = trigger_at(&mut c, 10 * S);
        complete(&mut c, id, 11 * S);
        let pending = trigger_at(&mut c, 21 * S);
        let cmds = c.shutdown(status, 22 * S);
        assert_eq!(
            aborted(&cmds),
            vec![(pending, CheckpointFailureReason::CoordinatorShutdown)]
        );
        let expected = if discards {
            vec![pending, id]
        } else {
            vec![pending]
        };
        assert_eq!(discarded(&cmds), expected, "{retention:?} {status:?}");
        assert!(c.tick(100 * S).is_empty());
    }
}

#[test]
fn restored_checkpoints_beyond_num_retained_are_discarded() {
    let mut c = coordinator_with(CheckpointingSettings {
        num_retained: 2,
        ..settings()
    });
    let cp = |id| CompletedCheckpoint {
        operators: Vec::new(),
        job_id: JobId(0xabc),
        checkpoint_id: id,
        kind: CheckpointKind::Checkpoint,
        trigger_timestamp_ms: 0,
        completion_timestamp_ms: 0,
        tasks: vec![],
    };
    let mut other_job = cp(50);
    other_job.job_id = JobId(1);
    let cmds = c.restore_completed(vec![cp(7), cp(5), cp(9), other_job]);
    assert_eq!(discarded(&cmds), vec![5]);
    assert_eq!(c.latest_completed().map(|c| c.checkpoint_id), Some(9));
    assert_eq!(c.next_checkpoint_id(), 10);
}

#[test]
fn stats_count_triggered_completed_and_failed_checkpoints() {
    let mut c = running(CheckpointingSettings {
        tolerable_failed: 5,
        ..settings()
    });
    let a = trigger_at(&mut c, 10 * S);
    complete(&mut c, a, 11 * S);
    let b = trigger_at(&mut c, 21 * S);
    assert_eq!(c.stats().counts.in_progress, 1);
    fail(&mut c, b, 22 * S);
    c.note_restored(a, 90 * S);
    let stats = c.stats();
    assert_eq!(
        stats.counts,
        CheckpointCounts {
            total: 2,
            in_progress: 0,
            completed: 1,
            failed: 1,
            restored: 1
        }
    );
    let completed = stats.latest_completed.as_ref().unwrap();
    assert_eq!(
        (completed.id, completed.acknowledged, completed.total),
        (a, 4, 4)
    );
    assert_eq!(completed.state_size, 4, "one inline byte per task");
    let failed = stats.latest_failed.as_ref().unwrap();
    assert_eq!(failed.id, b);
    assert_eq!(
        failed.failure.as_deref(),
        Some("declined by vertex 1 subtask 0: asynchronous snapshot failed: upload failed")
    );
    assert_eq!(stats.history.len(), 2);
}

/// Seeded random schedules of events (acks, declines, timeouts, write outcomes, task failures,
/// restarts) must keep the coordinator's invariants.
#[test]
fn random_schedules_keep_the_invariants() {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    let (mut total_completed, mut total_aborted) = (0, 0);
    for seed in 0..200u64 {
        let mut rng = SmallRng::seed_from_u64(seed);
        let max_concurrent = rng.gen_range(1..=3);
        let num_retained = rng.gen_range(1..=3);
        let mut c = running(CheckpointingSettings {
            interval: Some(Duration::from_millis(rng.gen_range(100..2000))),
            timeout: Duration::from_millis(rng.gen_range(500..5000)),
            min_pause: Duration::from_millis(if rng.gen_bool(0.3) {
                rng.gen_range(1..500)
            } else {
                0
            }),
            max_concurrent,
            tolerable_failed: rng.gen_range(0..3),
            num_retained,
            ..settings()
        });
        let tasks: Vec<_> = all_tasks().into_iter().collect();
        let mut now = 0u64;
        let mut last_trigger = 0;
        let mut writes: BTreeSet<CheckpointId> = BTreeSet::new();
        let mut written: BTreeSet<CheckpointId> = BTreeSet::new();
        let mut aborted_ids: BTreeSet<CheckpointId> = BTreeSet::new();
        let mut notified_ids: BTreeSet<CheckpointId> = BTreeSet::new();
        for step in 0..400 {
            let ctx = format!("seed {seed} step {step}");
            let pending = c.pending_ids();
            let cmds = match rng.gen_range(0..10) {
                0..=2 => {
                    now += rng.gen_range(0..700);
                    c.tick(now)
                }
                3..=5 if !pending.is_empty() => {
                    let id = pending[rng.gen_range(0..pending.len())];
                    let t = tasks[rng.gen_range(0..tasks.len())];
                    // One new shared file per checkpoint (uploads have unique names).
                    c.ack(id, t, state(t, &[&format!("../shared/s{id}")]), now)
                }
                6 if !pending.is_empty() && rng.gen_bool(0.3) => {
                    let id = pending[rng.gen_range(0..pending.len())];
                    c.decline(id, tasks[0], DeclineReason::Other("x".into()), now)
                }
                7 if !writes.is_empty() => {
                    let id = *writes
                        .iter()
                        .nth(rng.gen_range(0..writes.len()))
                        .unwrap_or(&0);
                    writes.remove(&id);
                    if rng.gen_bool(0.8) {
                        written.insert(id);
                        c.metadata_written(id, now)
                    } else {
                        c.metadata_write_failed(id, "io", now)
                    }
                }
                8 if rng.gen_bool(0.1) => c.task_failed(tasks[rng.gen_range(0..tasks.len())], now),
                9 if !c.is_running() => {
                    c.tasks_running(now);
                    vec![]
                }
                _ => vec![],
            };
            for cmd in &cmds {
                match cmd {
                    Command::TriggerCheckpoint { id, .. } => {
                        assert!(*id > last_trigger, "{ctx}: ids must increase");
                        last_trigger = *id;
                    }
                    Command::WriteMetadataAndComplete { id, metadata, .. } => {
                        assert_eq!(metadata.tasks.len(), tasks.len(), "{ctx}: every task acked");
                        assert!(writes.insert(*id), "{ctx}: one write per checkpoint");
                    }
                    Command::NotifyComplete { id, .. } => {
                        assert!(written.contains(id), "{ctx}: notify only after the write");
                        assert!(
                            !aborted_ids.contains(id),
                            "{ctx}: notified an aborted checkpoint"
                        );
                        assert!(notified_ids.insert(*id), "{ctx}: notified twice");
                    }
                    Command::AbortCheckpoint { id, .. } => {
                        assert!(
                            !notified_ids.contains(id),
                            "{ctx}: aborted a notified checkpoint"
                        );
                        assert!(aborted_ids.insert(*id), "{ctx}: aborted twice");
                    }
                    Command::DiscardCheckpoint { id, .. } => {
                        assert!(
                            c.completed_checkpoints().all(|r| r.checkpoint_id != *id),
                            "{ctx}: discarded a retained checkpoint"
                        );
                        assert!(
                            !writes.contains(id),
                            "{ctx}: discarded while its write is in flight"
                        );
                    }
                    Command::FailJob { .. } => {}
                }
            }
            assert!(
                c.pending_ids().len() <= max_concurrent as usize,
                "{ctx}: too many in flight"
            );
            assert!(
                c.completed_checkpoints().count() <= num_retained as usize,
                "{ctx}"
            );
            if c.next_deadline().is_some() {
                assert!(
                    c.is_running() || !c.pending_ids().is_empty(),
                    "{ctx}: deadline while idle"
                );
            }
        }
        total_completed += notified_ids.len();
        total_aborted += aborted_ids.len();
    }
    // The schedules exercise both outcomes.
    assert!(
        total_completed > 500 && total_aborted > 500,
        "{total_completed} {total_aborted}"
    );
}

#[test]
fn finished_tasks_are_not_awaited_and_keep_their_last_state() {
    let mut c = running(settings());
    // Checkpoint 1 completes with every task.
    let cmds = c.tick(10 * S);
    assert!(cmds
        .iter()
        .any(|c| matches!(c, Command::TriggerCheckpoint { id: 1, .. })));
    for t in all_tasks() {
        c.ack(1, t, state(t, &[]), 11 * S);
    }
    c.metadata_written(1, 11 * S);
    // Source (0,0) finishes; checkpoint 2 is triggered only at (0,1) and completes without (0,0).
    c.task_finished(ev(0, 0), 12 * S);
    let cmds = c.tick(21 * S);
    let tasks = cmds
        .iter()
        .find_map(|c| match c {
            Command::TriggerCheckpoint { tasks, .. } => Some(tasks.clone()),
            _ => None,
        })
        .expect("checkpoint 2 triggered");
    assert_eq!(tasks, vec![ev(0, 1)]);
    let mut out = Vec::new();
    for t in [ev(0, 1), ev(1, 0), ev(1, 1)] {
        out.extend(c.ack(2, t, state(t, &[]), 22 * S));
    }
    let meta = out
        .iter()
        .find_map(|c| match c {
            Command::WriteMetadataAndComplete { metadata, .. } => Some(metadata.clone()),
            _ => None,
        })
        .expect("checkpoint 2 completes without the finished task");
    assert!(
        meta.task_state(ev(0, 0)).is_some(),
        "finished task's state carried over"
    );
}

#[test]
fn a_task_finishing_completes_a_checkpoint_waiting_only_for_it() {
    let mut c = running(settings());
    c.tick(10 * S);
    for t in [ev(0, 1), ev(1, 0), ev(1, 1)] {
        assert!(c.ack(1, t, state(t, &[]), 11 * S).is_empty());
    }
    let out = c.task_finished(ev(0, 0), 12 * S);
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::WriteMetadataAndComplete { id: 1, .. })));
}

#[test]
fn no_trigger_once_every_source_finished_and_redeploy_restores_them() {
    let mut c = running(settings());
    c.task_finished(ev(0, 0), S);
    c.task_finished(ev(0, 1), S);
    assert!(c.tick(100 * S).is_empty());
    c.tasks_redeployed([ev(0, 0), ev(0, 1)]);
    assert!(c
        .tick(200 * S)
        .iter()
        .any(|c| matches!(c, Command::TriggerCheckpoint { .. })));
}
