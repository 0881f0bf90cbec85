//! JobMaster rules, driven through events with explicit time (no threads, no sockets).

use super::*;
use eddy_core::settings::CheckpointingMode;
use eddy_runtime::graph::{JobEdge, JobVertex};
use std::time::Duration;

/// source(p) -> sink(p), `kind` between them.
fn graph(p: u32, kind: PartitionKind) -> Arc<JobGraph> {
    let v = |id: usize, name: &str, is_source: bool| JobVertex {
        id,
        name: name.into(),
        nodes: vec![id],
        operator_uids: vec![name.into()],
        parallelism: p,
        max_parallelism: 128,
        is_source,
    };
    Arc::new(JobGraph {
        vertices: vec![v(0, "src", true), v(1, "sink", false)],
        edges: vec![JobEdge {
            source: 0,
            target: 1,
            kind,
            stream_edge: 0,
        }],
    })
}

fn settings(
    restart: RestartStrategyConfig,
    failover: FailoverStrategyKind,
    checkpointing: bool,
) -> JobMasterSettings {
    let mut cp = CheckpointingSettings::default();
    if checkpointing {
        cp.interval = Some(Duration::from_millis(100));
        cp.mode = CheckpointingMode::ExactlyOnce;
    }
    JobMasterSettings {
        slot_request_timeout_ms: 1000,
        buffer_timeout_ms: 100,
        checkpointing: cp,
        restart,
        failover,
        checkpoints_dir: Some("/nonexistent".into()),
        first_checkpoint_id: 1,
        first_attempt: 7 << 32,
        deploy_timeout_ms: 5_000,
        exception_history_size: 3,
        max_message_bytes: 10 << 20,
    }
}

fn spec() -> JobSpec {
    JobSpec {
        name: "t".into(),
        args: vec![],
        config: Default::default(),
        parallelism: 2,
    }
}

fn slots(n: usize) -> Vec<SlotRef> {
    (0..n)
        .map(|i| SlotRef {
            tm_id: format!("tm{}", i % 2),
            data_address: format!("127.0.0.1:{}", 1000 + i % 2),
        })
        .collect()
}

fn started(p: u32, kind: PartitionKind, s: JobMasterSettings) -> (JobMaster, Vec<Command>) {
    let mut jm = JobMaster::new(JobId(7), spec(), graph(p, kind), 1, s, 0).unwrap();
    let cmds = jm.assign_slots(slots(p as usize), 0);
    (jm, cmds)
}

fn deployed_keys(cmds: &[Command]) -> Vec<ExecutionKey> {
    cmds.iter()
        .flat_map(|c| match c {
            Command::Send {
                msg: JmMessage::Deploy { batch, .. },
                ..
            } => batch.tasks.iter().map(|t| batch.key(t)).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The deploy messages: (TaskManager, its batch).
fn deploy_batches(cmds: &[Command]) -> Vec<(String, &DeploymentBatch)> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send {
                tm_id,
                msg: JmMessage::Deploy { batch, .. },
            } => Some((tm_id.clone(), &**batch)),
            _ => None,
        })
        .collect()
}

#[test]
fn one_deploy_message_per_taskmanager_whose_channels_connect_every_producer_to_every_consumer() {
    let (_, cmds) = started(
        6,
        PartitionKind::Hash,
        settings(
            RestartStrategyConfig::None,
            FailoverStrategyKind::Region,
            false,
        ),
    );
    let batches = deploy_batches(&cmds);
    // slots(6): subtasks 0, 2, 4 on tm0, 1, 3, 5 on tm1; both vertices share the slots.
    assert_eq!(batches.len(), 2, "one message per TaskManager");
    assert_eq!(cmds.len(), 2);
    // Every channel id: (producer subtask, consumer subtask, remote address).
    let mut produced: BTreeMap<u64, (u32, u32, Option<String>)> = BTreeMap::new();
    let mut consumed: BTreeMap<u64, u32> = BTreeMap::new();
    for (tm, b) in &batches {
        let tm_no: u32 = tm[2..].parse().unwrap();
        let mut subtasks: Vec<(u32, u32)> = b.tasks.iter().map(|t| (t.vertex, t.subtask)).collect();
        subtasks.sort();
        let own: Vec<u32> = (0..6).filter(|s| s % 2 == tm_no).collect();
        let expected: Vec<(u32, u32)> = [0, 1]
            .into_iter()
            .flat_map(|v| own.iter().map(move |&s| (v, s)))
            .collect();
        assert_eq!(subtasks, expected, "{tm} gets its own subtasks, each once");
        assert_eq!(
            b.addresses.len(),
            2,
            "the address table lists each TaskManager once"
        );
        for i in 0..b.tasks.len() {
            let d = b.task_deployment(i).unwrap();
            assert_eq!((d.parallelism, d.max_parallelism), (6, 128));
            for &id in &d.inputs {
                assert!(consumed.insert(id, d.subtask).is_none(), "input {id} twice");
            }
            for o in &d.outputs {
                assert_eq!(o.channels.len(), 6);
                for (j, c) in o.channels.iter().enumerate() {
                    let prev =
                        produced.insert(c.id, (d.subtask, j as u32, c.remote_address.clone()));
                    assert!(prev.is_none(), "output {} twice", c.id);
                }
            }
        }
    }
    assert_eq!(produced.len(), 36);
    for (id, (from, to, remote)) in &produced {
        assert_eq!(
            consumed.get(id),
            Some(to),
            "channel {id} reaches its consumer"
        );
        let expected = (from % 2 != to % 2).then(|| format!("127.0.0.1:{}", 1000 + to % 2));
        assert_eq!(remote, &expected, "channel {id} from {from} to {to}");
    }
    assert_eq!(consumed.len(), 36);
}

#[test]
fn a_batch_whose_restore_state_would_not_fit_one_message_is_split() {
    let mut s = settings(
        RestartStrategyConfig::None,
        FailoverStrategyKind::Region,
        true,
    );
    s.max_message_bytes = 64 * 1024;
    let mut jm =
        JobMaster::new(JobId(7), spec(), graph(4, PartitionKind::Forward), 1, s, 0).unwrap();
    // A retained checkpoint with 20 KiB of inline state per subtask.
    let state = |v: u32, st: u32| eddy_recovery::TaskState {
        task: ExecutionVertexId::new(v, st),
        state: TaskStateSnapshot {
            operators: vec![eddy_recovery::OperatorSubtaskState {
                operator_uid: if v == 0 { "src" } else { "sink" }.into(),
                key_groups: None,
                files: vec![],
                inline: vec![7; 20 * 1024],
                rocksdb: None,
            }],
        },
    };
    let cp = CompletedCheckpoint {
        job_id: JobId(7),
        checkpoint_id: 3,
        kind: eddy_recovery::CheckpointKind::Checkpoint,
        trigger_timestamp_ms: 0,
        completion_timestamp_ms: 0,
        tasks: (0..2)
            .flat_map(|v| (0..4).map(move |st| state(v, st)))
            .collect(),
        operators: Vec::new(),
    };
    jm.recover_from(vec![cp], Vec::new(), 0, 0);
    let cmds = jm.assign_slots(slots(4), 0);
    let batches = deploy_batches(&cmds);
    // 4 subtasks of 20 KiB per TaskManager, at most 32 KiB per message: one each.
    assert_eq!(batches.len(), 8, "{}", batches.len());
    for (_, b) in &batches {
        assert_eq!(b.tasks.len(), 1);
        assert!(bincode::serialized_size(b).unwrap() < 64 * 1024);
        assert_eq!(
            b.tasks[0].restore.as_ref().map(|r| r.checkpoint_id),
            Some(3)
        );
    }
    assert_eq!(deployed_keys(&cmds).len(), 8);
}

fn report_all(
    jm: &mut JobMaster,
    keys: &[ExecutionKey],
    state: ExecutionState,
    now: i64,
) -> Vec<Command> {
    keys.iter()
        .flat_map(|k| jm.on_task_state(*k, state, None, now))
        .collect()
}

fn cancels(cmds: &[Command]) -> usize {
    cmds.iter()
        .filter(|c| {
            matches!(
                c,
                Command::Send {
                    msg: JmMessage::Cancel { .. },
                    ..
                }
            )
        })
        .count()
}

#[test]
fn job_finishes_when_every_subtask_finished() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(
            RestartStrategyConfig::None,
            FailoverStrategyKind::Region,
            false,
        ),
    );
    let keys = deployed_keys(&cmds);
    assert_eq!(keys.len(), 4);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    assert_eq!(jm.status(), JobStatus::Running);
    let out = report_all(&mut jm, &keys, ExecutionState::Finished, 2);
    assert_eq!(jm.status(), JobStatus::Finished);
    assert!(out.iter().any(|c| matches!(c, Command::ReleaseSlots)));
}

#[test]
fn no_restart_strategy_fails_the_job_with_the_root_cause() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(
            RestartStrategyConfig::None,
            FailoverStrategyKind::Region,
            false,
        ),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    let out = jm.on_task_state(keys[0], ExecutionState::Failed, Some("boom".into()), 2);
    assert_eq!(jm.status(), JobStatus::Failing);
    assert_eq!(cancels(&out), 3);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 3);
    assert_eq!(jm.status(), JobStatus::Failed);
    assert!(jm.details(4).exceptions[0].exception.contains("boom"));
}

#[test]
fn region_failover_restarts_only_the_failed_region() {
    let restart = RestartStrategyConfig::FixedDelay {
        attempts: 3,
        delay: Duration::ZERO,
    };
    let (mut jm, cmds) = started(
        4,
        PartitionKind::Forward,
        settings(restart, FailoverStrategyKind::Region, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    let failed = *keys
        .iter()
        .find(|k| k.vertex == 1 && k.subtask == 2)
        .unwrap();
    let out = jm.on_task_state(failed, ExecutionState::Failed, Some("x".into()), 2);
    assert_eq!(
        cancels(&out),
        1,
        "only the source of region 2 is still running and is cancelled"
    );
    assert_eq!(
        jm.status(),
        JobStatus::Running,
        "a partial restart keeps the job RUNNING"
    );
    let src = *keys
        .iter()
        .find(|k| k.vertex == 0 && k.subtask == 2)
        .unwrap();
    jm.on_task_state(src, ExecutionState::Canceled, None, 3);
    let restore = jm.tick(4, 0);
    let tasks = restore
        .iter()
        .find_map(|c| {
            if let Command::Restore { tasks, .. } = c {
                Some(tasks.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(tasks, BTreeSet::from([(0, 2), (1, 2)]));
    let again = jm.deploy_restarted(None, vec![], 5);
    let redeployed = deployed_keys(&again);
    assert_eq!(redeployed.len(), 2);
    // Both subtasks of region 2 are in slot 2 (on tm0): one batch with just them.
    let batches = deploy_batches(&again);
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(batches[0].0, "tm0");
    let d = jm.details(6);
    assert_eq!(d.vertices[0].subtask_deployments, vec![1, 1, 2, 1]);
    assert_eq!(d.restarts, 1);
}

#[test]
fn full_failover_restarts_everything_and_goes_through_restarting() {
    let restart = RestartStrategyConfig::FixedDelay {
        attempts: 3,
        delay: Duration::from_millis(50),
    };
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Forward,
        settings(restart, FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    let out = jm.on_task_state(keys[0], ExecutionState::Failed, Some("x".into()), 10);
    assert_eq!(cancels(&out), 3);
    assert_eq!(jm.status(), JobStatus::Restarting);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 11);
    assert!(
        jm.tick(20, 0)
            .iter()
            .all(|c| !matches!(c, Command::Restore { .. })),
        "restart delay not over yet"
    );
    assert!(jm
        .tick(61, 0)
        .iter()
        .any(|c| matches!(c, Command::Restore { .. })));
    let again = deployed_keys(&jm.deploy_restarted(None, vec![], 62));
    assert_eq!(again.len(), 4);
    report_all(&mut jm, &again, ExecutionState::Running, 63);
    assert_eq!(jm.status(), JobStatus::Running);
    assert!(jm.details(64).timestamps["RESTARTING"] == 10);
}

#[test]
fn fixed_delay_exhausted_fails_the_job() {
    let restart = RestartStrategyConfig::FixedDelay {
        attempts: 1,
        delay: Duration::ZERO,
    };
    let (mut jm, cmds) = started(
        1,
        PartitionKind::Forward,
        settings(restart, FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    jm.on_task_state(keys[0], ExecutionState::Failed, Some("first".into()), 2);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 3);
    jm.tick(4, 0);
    let again = deployed_keys(&jm.deploy_restarted(None, vec![], 5));
    report_all(&mut jm, &again, ExecutionState::Running, 6);
    jm.on_task_state(again[0], ExecutionState::Failed, Some("second".into()), 7);
    assert_eq!(jm.status(), JobStatus::Failing);
    report_all(&mut jm, &again[1..], ExecutionState::Canceled, 8);
    assert_eq!(jm.status(), JobStatus::Failed);
    assert!(jm.details(9).status_reason.unwrap().contains("second"));
}

#[test]
fn reports_from_an_older_attempt_are_ignored() {
    let restart = RestartStrategyConfig::FixedDelay {
        attempts: 5,
        delay: Duration::ZERO,
    };
    let (mut jm, cmds) = started(
        1,
        PartitionKind::Forward,
        settings(restart, FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    jm.on_task_state(keys[0], ExecutionState::Failed, Some("x".into()), 2);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 3);
    jm.tick(4, 0);
    jm.deploy_restarted(None, vec![], 5);
    // A late FAILED of attempt 0 must not trigger another restart.
    assert!(jm
        .on_task_state(keys[1], ExecutionState::Failed, Some("late".into()), 6)
        .is_empty());
    assert_eq!(jm.details(7).restarts, 1);
}

#[test]
fn checkpoints_are_triggered_at_sources_once_all_tasks_run() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(
            RestartStrategyConfig::None,
            FailoverStrategyKind::Region,
            true,
        ),
    );
    let keys = deployed_keys(&cmds);
    assert!(jm.tick(500, 0).is_empty(), "no checkpoint before tasks run");
    report_all(&mut jm, &keys, ExecutionState::Running, 1000);
    let out = jm.tick(1200, 0);
    let triggers: Vec<&ExecutionKey> = out
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                msg:
                    JmMessage::TriggerCheckpoint {
                        key,
                        checkpoint_id: 1,
                        ..
                    },
                ..
            } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(triggers.len(), 2);
    assert!(triggers.iter().all(|k| k.vertex == 0));
    let mut out = Vec::new();
    for k in &keys {
        out.extend(jm.on_checkpoint_ack(*k, 1, TaskStateSnapshot::default(), 1201));
    }
    assert!(out
        .iter()
        .any(|c| matches!(c, Command::WriteMetadata { .. })));
    let notified = jm.metadata_written(1, 1202);
    assert_eq!(
        notified
            .iter()
            .filter(|c| matches!(
                c,
                Command::Send {
                    msg: JmMessage::NotifyCheckpointComplete { .. },
                    ..
                }
            ))
            .count(),
        4
    );
    assert_eq!(jm.details(1203).completed_checkpoints, 1);
}

fn restarting() -> RestartStrategyConfig {
    RestartStrategyConfig::FixedDelay {
        attempts: 5,
        delay: Duration::ZERO,
    }
}

#[test]
fn attempts_start_at_the_base_the_shell_chose_so_leaders_never_share_one() {
    let (_, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restarting(), FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    assert!(!keys.is_empty());
    assert!(keys.iter().all(|k| k.attempt == 7 << 32), "{keys:?}");
}

#[test]
fn a_task_canceled_without_a_request_is_a_failure_that_restarts_the_job() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restarting(), FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    assert_eq!(jm.status(), JobStatus::Running);
    // Its TaskManager cancelled it on its own (e.g. it lost this JobManager's connection).
    let cmds = jm.on_task_state(keys[0], ExecutionState::Canceled, None, 2);
    assert_eq!(jm.status(), JobStatus::Restarting, "never a silent stall");
    assert_eq!(jm.details(3).restarts, 1);
    assert!(
        cancels(&cmds) >= keys.len() - 1,
        "the rest is cancelled: {cmds:?}"
    );
    // The requested cancels of the restart are expected: no further restart.
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 4);
    assert_eq!(jm.details(5).restarts, 1);
}

#[test]
fn a_subtask_that_never_leaves_deploying_fails_after_the_deploy_timeout() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restarting(), FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    // All but one report RUNNING; the last one's report never comes.
    report_all(&mut jm, &keys[1..], ExecutionState::Running, 1);
    assert!(jm
        .tick(4_000, 0)
        .iter()
        .all(|c| !matches!(c, Command::Restore { .. })));
    assert_eq!(
        jm.details(4_000).restarts,
        0,
        "not before the timeout (5 s)"
    );
    jm.tick(5_001, 0);
    assert_eq!(jm.details(5_002).restarts, 1, "restarted after the timeout");
    let exceptions = jm.details(5_002).exceptions;
    assert!(
        exceptions
            .iter()
            .any(|e| e.exception.contains("did not start within")),
        "{exceptions:?}"
    );
}

#[test]
fn a_failed_checkpoint_id_reservation_fails_that_trigger() {
    let (mut jm, cmds) = started(
        1,
        PartitionKind::Forward,
        settings(restarting(), FailoverStrategyKind::Full, true),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    let cmds = jm.tick(1_000, 0);
    let id = cmds
        .iter()
        .find_map(|c| match c {
            Command::ReserveCheckpointId { id } => Some(*id),
            _ => None,
        })
        .expect("a checkpoint is triggered");
    jm.checkpoint_trigger_failed(id, "ZooKeeper unavailable".into(), 1_001);
    let stats = jm.details(1_002);
    assert_eq!(stats.status, JobStatus::Running);
    assert!(
        jm.on_checkpoint_ack(keys[0], id, Default::default(), 1_003)
            .is_empty(),
        "an ack of the failed trigger completes nothing"
    );
}

#[test]
fn the_exception_history_keeps_only_the_newest_entries() {
    let (mut jm, cmds) = started(
        1,
        PartitionKind::Forward,
        settings(restarting(), FailoverStrategyKind::Full, false),
    );
    let mut keys = deployed_keys(&cmds);
    for i in 0..5 {
        report_all(&mut jm, &keys, ExecutionState::Running, 10 * i);
        jm.on_task_state(
            keys[0],
            ExecutionState::Failed,
            Some(format!("boom {i}").into()),
            10 * i + 1,
        );
        jm.tick(10 * i + 2, 0);
        keys = deployed_keys(&jm.deploy_restarted(None, vec![], 10 * i + 3));
    }
    let e: Vec<String> = jm
        .details(100)
        .exceptions
        .into_iter()
        .map(|e| e.exception)
        .collect();
    assert_eq!(e, vec!["boom 2", "boom 3", "boom 4"], "the newest 3 of 5");
}

#[test]
fn each_recovery_has_a_timeline_from_detection_to_running() {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restarting(), FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 10);
    assert!(
        jm.details(10).recoveries.is_empty(),
        "a first start is no recovery"
    );
    jm.on_task_state(keys[0], ExecutionState::Failed, Some("boom".into()), 100);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 110);
    jm.tick(120, 0);
    let keys = deployed_keys(&jm.deploy_restarted(None, vec![], 130));
    report_all(&mut jm, &keys, ExecutionState::Running, 150);
    let r = jm.details(160).recoveries;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(
        (r[0].detected, r[0].decided, r[0].deployed, r[0].running),
        (100, 100, Some(130), Some(150))
    );
    assert!(r[0].cause.contains("boom"));
}

/// A running job with checkpointing whose stop-with-savepoint (`drain`) was triggered; its
/// execution keys and the trigger's commands.
fn stopping(drain: bool) -> (JobMaster, Vec<ExecutionKey>, u64, Vec<Command>) {
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restarting(), FailoverStrategyKind::Full, true),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1000);
    let (id, out) = jm
        .trigger_savepoint("/sp/savepoint-x".into(), Some(drain), 1001)
        .unwrap();
    (jm, keys, id, out)
}

fn stop_triggers(cmds: &[Command]) -> Vec<Option<StopMode>> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Send {
                msg: JmMessage::TriggerCheckpoint { stop, .. },
                ..
            } => Some(*stop),
            _ => None,
        })
        .collect()
}

#[test]
fn stop_with_savepoint_is_a_terminating_savepoint_and_the_tasks_finish_on_their_own() {
    let (mut jm, keys, id, out) = stopping(false);
    // The sources get the trigger marked as terminating: nothing follows its barrier.
    assert_eq!(stop_triggers(&out), vec![Some(StopMode::NoDrain); 2]);
    let mut out = Vec::new();
    for k in &keys {
        out.extend(jm.on_checkpoint_ack(*k, id, TaskStateSnapshot::default(), 1100));
    }
    assert!(out.iter().any(|c| matches!(
        c,
        Command::WriteMetadata {
            savepoint_dir: Some(_),
            ..
        }
    )));
    let notified = jm.metadata_written(id, 1101);
    assert_eq!(
        notified
            .iter()
            .filter(|c| matches!(
                c,
                Command::Send {
                    msg: JmMessage::NotifyCheckpointComplete { .. },
                    ..
                }
            ))
            .count(),
        4
    );
    // No timer, no cancel: however long the tasks take, the JobMaster only waits.
    let later = jm.tick(100_000, 0);
    assert_eq!(cancels(&later), 0, "{later:?}");
    assert!(stop_triggers(&later).is_empty(), "no checkpoint after it");
    assert_eq!(jm.status(), JobStatus::Running);
    assert_eq!(jm.stop_outcome(id), None, "in progress until the job ends");
    report_all(&mut jm, &keys, ExecutionState::Finished, 100_001);
    assert_eq!(jm.status(), JobStatus::Finished);
    assert_eq!(jm.stop_outcome(id), Some(Ok(())));
}

#[test]
fn a_failed_stop_savepoint_leaves_the_job_running_without_drain_and_restarts_it_with_drain() {
    let (mut jm, keys, id, out) = stopping(false);
    assert_eq!(stop_triggers(&out), vec![Some(StopMode::NoDrain); 2]);
    jm.on_checkpoint_decline(keys[0], id, DeclineReason::Other("no".into()), 1100);
    let out = jm.tick(1101, 0);
    assert_eq!(cancels(&out), 0);
    assert_eq!(jm.status(), JobStatus::Running);
    assert!(matches!(jm.stop_outcome(id), Some(Err(_))));
    // Periodic checkpoints resume (the sources emit again on the abort).
    let mut out = out;
    out.extend(jm.tick(5_000, 0));
    assert_eq!(stop_triggers(&out), vec![None; 2]);

    let (mut jm, keys, id, out) = stopping(true);
    assert_eq!(stop_triggers(&out), vec![Some(StopMode::Drain); 2]);
    jm.on_checkpoint_decline(keys[0], id, DeclineReason::Other("no".into()), 1100);
    let out = jm.tick(1101, 0);
    // The sources drained: the job restarts from its latest checkpoint.
    assert_eq!(cancels(&out), 4, "{out:?}");
    assert_eq!(jm.details(1102).restarts, 1);
    assert!(matches!(jm.stop_outcome(id), Some(Err(_))));
}

#[test]
fn a_failure_after_the_stop_savepoint_completed_restarts_from_that_savepoint() {
    let (mut jm, keys, id, _) = stopping(false);
    for k in &keys {
        jm.on_checkpoint_ack(*k, id, TaskStateSnapshot::default(), 1100);
    }
    jm.metadata_written(id, 1101);
    // One sink finished, then a TaskManager is lost before the rest did.
    jm.on_task_state(keys[3], ExecutionState::Finished, None, 1200);
    let out = jm.on_task_state(keys[0], ExecutionState::Failed, Some("lost".into()), 1201);
    assert!(cancels(&out) > 0);
    let why = match jm.stop_outcome(id) {
        Some(Err(why)) => why,
        other => panic!("the stop must fail: {other:?}"),
    };
    assert!(
        why.contains("/sp/savepoint-x") && why.contains("keeps running"),
        "{why}"
    );
    report_all(&mut jm, &keys, ExecutionState::Canceled, 1300);
    let out = jm.tick(1400, 0);
    assert!(out.iter().any(|c| matches!(c, Command::Restore { .. })));
    // The shell found only an older checkpoint (or none): the savepoint wins.
    let out = jm.deploy_restarted(None, Vec::new(), 1401);
    let restored: Vec<(Option<u64>, String)> = out
        .iter()
        .flat_map(|c| match c {
            Command::Send {
                msg: JmMessage::Deploy { batch, .. },
                ..
            } => batch
                .tasks
                .iter()
                .map(|t| {
                    (
                        batch.restored_checkpoint,
                        t.restore
                            .as_ref()
                            .map(|r| r.state_dir.clone())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(restored.len(), 4);
    assert!(
        restored
            .iter()
            .all(|(c, dir)| *c == Some(id) && dir == "/sp/savepoint-x"),
        "{restored:?}"
    );
}

#[test]
fn a_non_recoverable_task_failure_fails_the_job_without_a_restart_by_its_type_not_its_text() {
    let restart = RestartStrategyConfig::FixedDelay {
        attempts: 3,
        delay: Duration::ZERO,
    };
    let refusal = "deploying the task: Insufficient number of network buffers: required 105, \
                   but only 95 available";
    // The refusal's text in a recoverable error: an ordinary failure, restarted.
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restart.clone(), FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    jm.on_task_state(
        keys[0],
        ExecutionState::Failed,
        Some(eddy_runtime::JobError::new(refusal)),
        2,
    );
    assert_ne!(jm.status(), JobStatus::Failed);
    assert_ne!(jm.status(), JobStatus::Failing);

    // Typed non-recoverable (whatever its text): the job fails at once, with no restart.
    let (mut jm, cmds) = started(
        2,
        PartitionKind::Hash,
        settings(restart, FailoverStrategyKind::Full, false),
    );
    let keys = deployed_keys(&cmds);
    report_all(&mut jm, &keys, ExecutionState::Running, 1);
    let out = jm.on_task_state(
        keys[0],
        ExecutionState::Failed,
        Some(eddy_runtime::JobError::non_recoverable(
            "the pool is too small",
        )),
        2,
    );
    assert_eq!(jm.status(), JobStatus::Failing);
    assert_eq!(cancels(&out), 3);
    report_all(&mut jm, &keys[1..], ExecutionState::Canceled, 3);
    assert_eq!(jm.status(), JobStatus::Failed);
    let d = jm.details(4);
    assert_eq!(d.restarts, 0);
    assert!(d.exceptions[0].exception.contains("the pool is too small"));
}
