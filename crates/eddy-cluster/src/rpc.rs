//! The control-plane protocol between JobManager and TaskManagers: length-prefixed bincode
//! messages over one TCP connection per TaskManager, opened by the TaskManager.
//!
//! Every message a JobManager sends carries its fencing token (the leader session id); a
//! TaskManager rejects messages whose token is not that of the leader it registered with.
//! This file is the protocol only: framing and the message types, no decisions.
//!
//! What a peer sends is not trusted: a message is at most `pekko.framesize` bytes, must arrive
//! within `heartbeat.timeout` once begun (and a peer may be silent no longer than that), and is
//! decoded with bounded bincode (`eddy_runtime::framing`). A malformed message is an error, after
//! which the reader closes the connection. A registration is checked by [`validate_registration`].

use eddy_core::config::{Config, MAX_TASK_SLOTS};
use eddy_core::JobId;
use eddy_recovery::TaskStateSnapshot;
use eddy_runtime::framing::{self, FrameLimits};
use eddy_runtime::graph::PartitionKind;
use eddy_runtime::registry::JobSpec;
use eddy_runtime::task::{ExecutionState, OutputChannel, OutputEdge, TaskDeployment};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{Read, Write};

/// The leader session id of the JobManager that sent a message.
pub type FencingToken = u128;

/// Identifies one execution of one subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExecutionKey {
    pub job_id: JobId,
    pub attempt: u64,
    pub vertex: usize,
    pub subtask: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskCounters {
    pub key: ExecutionKey,
    pub records_in: u64,
    pub records_out: u64,
    /// Where the task's time went since it started running; `None` before it runs.
    pub times: Option<eddy_runtime::task::metrics::TaskTimes>,
}

/// TaskManager → JobManager.
#[derive(Debug, Serialize, Deserialize)]
pub enum TmMessage {
    Register {
        tm_id: String,
        data_address: String,
        slots: u32,
        pid: u32,
    },
    Heartbeat {
        counters: Vec<TaskCounters>,
    },
    TaskState {
        key: ExecutionKey,
        state: ExecutionState,
        /// Why it failed, typed: a non-recoverable error fails the job without a restart.
        error: Option<eddy_runtime::JobError>,
        records_in: u64,
        records_out: u64,
    },
    /// The task's state was written to checkpoint storage (or inlined).
    CheckpointAck {
        key: ExecutionKey,
        checkpoint_id: u64,
        state: TaskStateSnapshot,
    },
    /// `counted`: whether it counts towards `tolerable-failed-checkpoints` (an upload failure
    /// does; a finished or not-yet-running task does not).
    CheckpointDecline {
        key: ExecutionKey,
        checkpoint_id: u64,
        reason: String,
        counted: bool,
    },
    /// A source task's input ended; it waits for its final checkpoint (triggered at once).
    EndOfData {
        key: ExecutionKey,
    },
}

/// JobManager → TaskManager.
#[derive(Debug, Serialize, Deserialize)]
pub enum JmMessage {
    Registered {
        token: FencingToken,
    },
    Refused {
        reason: String,
    },
    /// Subtasks of one job to start on this TaskManager, all of one attempt: every subtask the
    /// TaskManager hosts on a (re)deployment, or the subset a partial restart redeploys.
    Deploy {
        token: FencingToken,
        batch: Box<DeploymentBatch>,
    },
    Cancel {
        token: FencingToken,
        key: ExecutionKey,
    },
    TriggerCheckpoint {
        token: FencingToken,
        key: ExecutionKey,
        checkpoint_id: u64,
        /// The terminating savepoint of stop-with-savepoint, and whether it drains.
        #[serde(default)]
        stop: Option<eddy_runtime::task::channel::StopMode>,
    },
    NotifyCheckpointComplete {
        token: FencingToken,
        key: ExecutionKey,
        checkpoint_id: u64,
    },
    /// Jobs with incremental RocksDB checkpoints: whether checkpoint `checkpoint_id` is a
    /// savepoint (sent to every TaskManager of the job before the trigger; the uploader makes a
    /// savepoint's keyed state canonical).
    CheckpointKind {
        token: FencingToken,
        job_id: JobId,
        checkpoint_id: u64,
        savepoint: bool,
    },
    AbortCheckpoint {
        token: FencingToken,
        key: ExecutionKey,
        checkpoint_id: u64,
    },
    HeartbeatReply {
        token: FencingToken,
    },
}

/// One (re)deployment of a job's subtasks on one TaskManager (Flink sends one
/// `TaskDeploymentDescriptor` per subtask; at 4,000 subtasks that repeats the job and the peers'
/// addresses thousands of times). The job spec and the table of data addresses travel once; a
/// subtask carries its channel ids as runs and its outputs as ranges of consumer subtasks.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeploymentBatch {
    pub job: JobSpec,
    pub job_id: JobId,
    pub attempt: u64,
    pub exactly_once: bool,
    pub checkpointing: bool,
    pub buffer_timeout_ms: u64,
    /// The checkpoint (or savepoint) the subtasks restore from, if any.
    pub restored_checkpoint: Option<u64>,
    /// The data addresses of the TaskManagers holding the job's slots, each once.
    pub addresses: Vec<String>,
    /// Slot `i` (which hosts subtask `i` of every vertex: slot sharing) is on the TaskManager at
    /// `addresses[slots[i]]`.
    pub slots: Vec<u32>,
    pub tasks: Vec<SubtaskDeployment>,
}

/// The part of a deployment that is one subtask's own.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubtaskDeployment {
    pub vertex: u32,
    pub subtask: u32,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Input channel ids in gate order.
    pub inputs: Vec<IdRun>,
    pub outputs: Vec<OutputRange>,
    /// Where its state is (per subtask, as before batching).
    pub restore: Option<RestoreSpec>,
}

/// Channel ids `first, first + step, …` (`count` of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRun {
    pub first: u64,
    pub step: u64,
    pub count: u32,
}

/// Appends `id` to a list of runs, extending the last run when `id` continues it.
pub fn push_id(runs: &mut Vec<IdRun>, id: u64) {
    if let Some(r) = runs.last_mut() {
        if r.count == 1 && id > r.first {
            r.step = id - r.first;
            r.count = 2;
            return;
        }
        if r.count > 1
            && r.count < u32::MAX
            && r.step
                .checked_mul(u64::from(r.count))
                .and_then(|d| r.first.checked_add(d))
                == Some(id)
        {
            r.count += 1;
            return;
        }
    }
    runs.push(IdRun {
        first: id,
        step: 0,
        count: 1,
    });
}

/// The ids of `runs`, in order; `None` when they would not fit in `limit` ids.
pub fn expand_ids(runs: &[IdRun], limit: usize) -> Option<Vec<u64>> {
    let total = runs
        .iter()
        .try_fold(0usize, |n, r| n.checked_add(r.count as usize))?;
    if total > limit {
        return None;
    }
    let mut ids = Vec::with_capacity(total);
    for r in runs {
        for k in 0..u64::from(r.count) {
            ids.push(r.first.checked_add(r.step.checked_mul(k)?)?);
        }
    }
    Some(ids)
}

/// One outgoing exchange of a subtask: channel `first_channel + k` goes to subtask
/// `first_target + k` of the consumer vertex, `k < channels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRange {
    pub stream_edge: u32,
    pub kind: PartitionKind,
    pub first_channel: u64,
    pub first_target: u32,
    pub channels: u32,
}

impl DeploymentBatch {
    /// The runtime's deployment of `tasks[index]` (channels to a subtask on another TaskManager
    /// carry its data address). A batch that does not add up (an index out of its tables) is an
    /// error naming what was wrong, never a panic.
    pub fn task_deployment(&self, index: usize) -> Result<TaskDeployment, String> {
        let t = self
            .tasks
            .get(index)
            .ok_or_else(|| format!("no subtask {index} in a batch of {}", self.tasks.len()))?;
        let slot_of = |s: u32| -> Result<u32, String> {
            let a = *self.slots.get(s as usize).ok_or_else(|| {
                format!(
                    "a deployment names slot {s} of a job holding {} slots",
                    self.slots.len()
                )
            })?;
            if a as usize >= self.addresses.len() {
                return Err(format!(
                    "slot {s} is on TaskManager {a} of {}",
                    self.addresses.len()
                ));
            }
            Ok(a)
        };
        let own = slot_of(t.subtask)?;
        // Bounds what a malformed batch can make us allocate: 1,024 input edges of the job's
        // parallelism (at least a million ids).
        let limit = self.slots.len().saturating_mul(1024).max(1 << 20);
        let inputs = expand_ids(&t.inputs, limit)
            .ok_or_else(|| format!("the input channels of subtask {} do not add up", t.subtask))?;
        let mut outputs = Vec::with_capacity(t.outputs.len());
        for o in &t.outputs {
            if o.channels as usize > self.slots.len() {
                return Err(format!(
                    "an output of subtask {} to {} consumers of a job holding {} slots",
                    t.subtask,
                    o.channels,
                    self.slots.len()
                ));
            }
            let mut channels = Vec::with_capacity(o.channels as usize);
            for k in 0..o.channels {
                let target = o
                    .first_target
                    .checked_add(k)
                    .ok_or("an output range beyond u32")?;
                let peer = slot_of(target)?;
                channels.push(OutputChannel {
                    id: o.first_channel.wrapping_add(u64::from(k)),
                    remote_address: (peer != own).then(|| self.addresses[peer as usize].clone()),
                });
            }
            outputs.push(OutputEdge {
                stream_edge: o.stream_edge as usize,
                kind: o.kind,
                channels,
            });
        }
        Ok(TaskDeployment {
            job_id: self.job_id,
            job_name: self.job.name.clone(),
            attempt: self.attempt,
            vertex: t.vertex as usize,
            subtask: t.subtask,
            parallelism: t.parallelism,
            max_parallelism: t.max_parallelism,
            inputs,
            outputs,
            exactly_once: self.exactly_once,
            checkpointing: self.checkpointing,
            buffer_timeout_ms: self.buffer_timeout_ms,
            restore: Default::default(),
            restored_checkpoint: self.restored_checkpoint,
        })
    }

    /// The execution key of `tasks[index]`.
    pub fn key(&self, t: &SubtaskDeployment) -> ExecutionKey {
        ExecutionKey {
            job_id: self.job_id,
            attempt: self.attempt,
            vertex: t.vertex as usize,
            subtask: t.subtask,
        }
    }
}

/// Where a redeployed subtask finds its state: files under the checkpoint directory of
/// `checkpoint_id`, or inline bytes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestoreSpec {
    /// The directory holding the snapshot's `_metadata`: handle paths are relative to it
    /// (`chk-<n>/` of the job's checkpoint directory, or a savepoint directory).
    pub state_dir: String,
    pub checkpoint_id: u64,
    pub state: TaskStateSnapshot,
}

/// The configuration key bounding one RPC message (Flink's name for its RPC frame size).
pub const FRAME_SIZE_KEY: &str = "pekko.framesize";

/// Longest TaskManager id and data address a registration may carry.
const MAX_REGISTRATION_TEXT: usize = 256;

/// How an RPC reader bounds its peer: `pekko.framesize`, and `heartbeat.timeout` for a message to
/// arrive whole and for silence between messages (both sides hear from each other every
/// `heartbeat.interval`, so a live peer never comes near it).
pub fn rpc_limits(config: &Config) -> FrameLimits {
    FrameLimits {
        max_len: config.rpc_frame_size(),
        key: FRAME_SIZE_KEY,
        frame_timeout: config.heartbeat_timeout(),
        idle_timeout: Some(config.heartbeat_timeout()),
    }
}

pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let bytes = bincode::serialize(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let len = u32::try_from(bytes.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message of {} bytes does not fit a frame", bytes.len()),
        )
    })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)?;
    w.flush()
}

/// Reads one message within `limits`; any error means the connection is unusable and must be
/// closed (the stream may be in the middle of a frame).
pub fn read_message<T: DeserializeOwned>(
    r: &mut impl Read,
    limits: &FrameLimits,
) -> std::io::Result<T> {
    let mut buf = Vec::new();
    framing::read_frame(r, &mut buf, limits)?;
    framing::decode(&buf).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a malformed message of {} bytes: {e}", buf.len()),
        )
    })
}

/// Checks what a `TmMessage::Register` claims before the resource manager believes it: a slot
/// count within `1..=MAX_TASK_SLOTS`, a non-empty id and a data address of the form `ip:port`.
/// The error is the one-line reason sent back in `JmMessage::Refused`.
pub fn validate_registration(tm_id: &str, data_address: &str, slots: u32) -> Result<(), String> {
    if tm_id.is_empty() || tm_id.len() > MAX_REGISTRATION_TEXT {
        return Err(format!(
            "a TaskManager id of {} bytes; allowed: 1 to {MAX_REGISTRATION_TEXT}",
            tm_id.len()
        ));
    }
    if !(1..=MAX_TASK_SLOTS).contains(&slots) {
        return Err(format!(
            "TaskManager {tm_id} offers {slots} slots; allowed: 1 to {MAX_TASK_SLOTS} \
             (taskmanager.numberOfTaskSlots)"
        ));
    }
    if data_address.len() > MAX_REGISTRATION_TEXT
        || data_address.parse::<std::net::SocketAddr>().is_err()
    {
        let shown: String = data_address.chars().take(64).collect();
        return Err(format!(
            "TaskManager {tm_id} advertises the data address '{shown}'; allowed: an ip:port \
             such as 127.0.0.1:6121"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits() -> FrameLimits {
        FrameLimits {
            max_len: 10 << 20,
            key: FRAME_SIZE_KEY,
            frame_timeout: Duration::from_secs(5),
            idle_timeout: None,
        }
    }

    #[test]
    fn messages_round_trip_through_frames() {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &TmMessage::Register {
                tm_id: "tm-1".into(),
                data_address: "127.0.0.1:1".into(),
                slots: 2,
                pid: 7,
            },
        )
        .unwrap();
        write_message(&mut buf, &JmMessage::Registered { token: 42 }).unwrap();
        let mut r = buf.as_slice();
        assert!(matches!(
            read_message::<TmMessage>(&mut r, &limits()).unwrap(),
            TmMessage::Register { slots: 2, .. }
        ));
        assert!(matches!(
            read_message::<JmMessage>(&mut r, &limits()).unwrap(),
            JmMessage::Registered { token: 42 }
        ));
    }

    #[test]
    fn checkpoint_acks_with_empty_and_optional_fields_round_trip() {
        use eddy_recovery::{OperatorSubtaskState, StateFileHandle};
        let key = ExecutionKey {
            job_id: JobId(1),
            attempt: 2,
            vertex: 3,
            subtask: 4,
        };
        let state = TaskStateSnapshot {
            operators: vec![
                OperatorSubtaskState {
                    operator_uid: "a".into(),
                    key_groups: None,
                    files: vec![],
                    inline: vec![],
                    rocksdb: None,
                },
                OperatorSubtaskState {
                    operator_uid: "b".into(),
                    key_groups: None,
                    files: vec![StateFileHandle {
                        path: "x".into(),
                        len: 1,
                        crc32: 2,
                    }],
                    inline: vec![7],
                    rocksdb: None,
                },
            ],
        };
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &TmMessage::CheckpointAck {
                key,
                checkpoint_id: 9,
                state: state.clone(),
            },
        )
        .unwrap();
        write_message(&mut buf, &TmMessage::Heartbeat { counters: vec![] }).unwrap();
        let mut r = buf.as_slice();
        match read_message::<TmMessage>(&mut r, &limits()).unwrap() {
            TmMessage::CheckpointAck {
                state: s,
                checkpoint_id: 9,
                ..
            } => assert_eq!(s, state),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_message::<TmMessage>(&mut r, &limits()).unwrap(),
            TmMessage::Heartbeat { .. }
        ));
    }

    #[test]
    fn a_500_mb_length_prefix_is_refused_naming_the_key() {
        let bytes = (500u32 << 20).to_le_bytes();
        let e = read_message::<TmMessage>(&mut bytes.as_slice(), &limits()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a frame of 524288000 bytes exceeds pekko.framesize (10485760 bytes)"
        );
    }

    fn register(slots: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &TmMessage::Register {
                tm_id: "tm-1".into(),
                data_address: "127.0.0.1:6121".into(),
                slots,
                pid: 7,
            },
        )
        .unwrap();
        buf
    }

    #[test]
    fn an_unknown_variant_tag_is_an_error() {
        let mut frame = register(2);
        // After the 4-byte length comes the variant index (a u32 with fixint encoding).
        frame[4..8].copy_from_slice(&99u32.to_le_bytes());
        let e = read_message::<TmMessage>(&mut frame.as_slice(), &limits()).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("malformed"), "{e}");
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error() {
        let frame = register(2);
        for cut in 0..frame.len() {
            assert!(read_message::<TmMessage>(&mut &frame[..cut], &limits()).is_err());
        }
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_an_error() {
        let mut frame = register(2);
        frame.push(0);
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        assert!(read_message::<TmMessage>(&mut frame.as_slice(), &limits()).is_err());
    }

    #[test]
    fn a_string_length_beyond_the_frame_is_an_error_not_an_allocation() {
        let mut frame = register(2);
        // Variant index (4 bytes), then tm_id's length (u64).
        frame[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read_message::<TmMessage>(&mut frame.as_slice(), &limits()).is_err());
    }

    #[test]
    fn registrations_are_checked_before_they_are_believed() {
        assert_eq!(validate_registration("tm-1", "127.0.0.1:6121", 4), Ok(()));
        assert_eq!(
            validate_registration("tm-1", "127.0.0.1:6121", u32::MAX),
            Err(
                "TaskManager tm-1 offers 4294967295 slots; allowed: 1 to 1024 \
                 (taskmanager.numberOfTaskSlots)"
                    .into()
            )
        );
        assert!(validate_registration("tm-1", "127.0.0.1:6121", 0).is_err());
        assert!(validate_registration("tm-1", "127.0.0.1:6121", MAX_TASK_SLOTS).is_ok());
        assert!(validate_registration("tm-1", "127.0.0.1:6121", MAX_TASK_SLOTS + 1).is_err());
        assert!(validate_registration("", "127.0.0.1:6121", 1).is_err());
        assert!(validate_registration(&"x".repeat(300), "127.0.0.1:6121", 1).is_err());
        assert_eq!(
            validate_registration("tm-1", "\u{0}garbage", 1),
            Err(
                "TaskManager tm-1 advertises the data address '\u{0}garbage'; allowed: an \
                 ip:port such as 127.0.0.1:6121"
                    .into()
            )
        );
    }

    #[test]
    fn id_runs_hold_any_id_list_and_expand_to_it() {
        let lists: Vec<Vec<u64>> = vec![
            vec![],
            vec![5],
            vec![5, 6, 7, 8],
            vec![10, 410, 810, 1210, 3, 4, 5, 100],
            vec![9, 3, 3, 7, 1 << 40, (1 << 40) + 2, (1 << 40) + 4, u64::MAX],
        ];
        for ids in lists {
            let mut runs = Vec::new();
            for &id in &ids {
                push_id(&mut runs, id);
            }
            assert_eq!(expand_ids(&runs, usize::MAX).as_deref(), Some(&ids[..]));
        }
        // A consumer of a keyed exchange from 400 producers: one run.
        let mut runs = Vec::new();
        for i in 0..400u64 {
            push_id(&mut runs, 1_000 + i * 400 + 7);
        }
        assert_eq!(
            runs,
            vec![IdRun {
                first: 1_007,
                step: 400,
                count: 400
            }]
        );
        assert_eq!(expand_ids(&runs, 399), None, "beyond the limit");
    }

    fn batch() -> DeploymentBatch {
        DeploymentBatch {
            job: JobSpec {
                name: "j".into(),
                args: vec![],
                config: Default::default(),
                parallelism: 3,
            },
            job_id: JobId(3),
            attempt: 9,
            exactly_once: true,
            checkpointing: true,
            buffer_timeout_ms: 100,
            restored_checkpoint: Some(4),
            addresses: vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()],
            // Subtasks 0 and 2 on the first TaskManager, 1 on the second.
            slots: vec![0, 1, 0],
            tasks: vec![SubtaskDeployment {
                vertex: 0,
                subtask: 2,
                parallelism: 3,
                max_parallelism: 128,
                inputs: vec![IdRun {
                    first: 50,
                    step: 3,
                    count: 3,
                }],
                outputs: vec![OutputRange {
                    stream_edge: 1,
                    kind: PartitionKind::Hash,
                    first_channel: 70,
                    first_target: 0,
                    channels: 3,
                }],
                restore: None,
            }],
        }
    }

    #[test]
    fn a_batch_expands_to_the_runtime_deployment_with_addresses_only_for_remote_peers() {
        let b = batch();
        let d = b.task_deployment(0).unwrap();
        assert_eq!(
            (d.job_id, d.attempt, d.vertex, d.subtask),
            (JobId(3), 9, 0, 2)
        );
        assert_eq!((d.parallelism, d.max_parallelism), (3, 128));
        assert_eq!(d.job_name, "j");
        assert_eq!(d.restored_checkpoint, Some(4));
        assert_eq!(d.inputs, vec![50, 53, 56]);
        let out: Vec<(u64, Option<String>)> = d.outputs[0]
            .channels
            .iter()
            .map(|c| (c.id, c.remote_address.clone()))
            .collect();
        assert_eq!(
            out,
            vec![(70, None), (71, Some("127.0.0.1:2".into())), (72, None)]
        );
        assert_eq!(d.outputs[0].stream_edge, 1);
        let mut buf = Vec::new();
        write_message(
            &mut buf,
            &JmMessage::Deploy {
                token: 1,
                batch: Box::new(b),
            },
        )
        .unwrap();
        assert!(matches!(
            read_message::<JmMessage>(&mut buf.as_slice(), &limits()).unwrap(),
            JmMessage::Deploy { batch, .. } if batch.tasks.len() == 1
        ));
    }

    #[test]
    fn a_batch_that_does_not_add_up_is_an_error_not_a_panic() {
        let mut b = batch();
        b.tasks[0].subtask = 3;
        assert_eq!(
            b.task_deployment(0).unwrap_err(),
            "a deployment names slot 3 of a job holding 3 slots"
        );
        let mut b = batch();
        b.slots[1] = 2;
        assert_eq!(
            b.task_deployment(0).unwrap_err(),
            "slot 1 is on TaskManager 2 of 2"
        );
        let mut b = batch();
        b.tasks[0].outputs[0].channels = u32::MAX;
        assert!(b
            .task_deployment(0)
            .unwrap_err()
            .contains("4294967295 consumers"));
        let mut b = batch();
        b.tasks[0].inputs[0].count = u32::MAX;
        assert!(b.task_deployment(0).unwrap_err().contains("do not add up"));
        assert!(batch().task_deployment(1).is_err());
    }

    #[test]
    fn the_configured_frame_size_and_heartbeat_timeout_bound_the_reader() {
        let config = Config::from_pairs(&[
            ("pekko.framesize", "1m"),
            ("heartbeat.interval", "1 s"),
            ("heartbeat.timeout", "4 s"),
        ])
        .unwrap();
        let l = rpc_limits(&config);
        assert_eq!(l.max_len, 1 << 20);
        assert_eq!(l.frame_timeout, Duration::from_secs(4));
        assert_eq!(l.idle_timeout, Some(Duration::from_secs(4)));
        let frame = {
            let mut f = (2u32 << 20).to_le_bytes().to_vec();
            f.extend_from_slice(&[0; 64]);
            f
        };
        assert!(read_message::<JmMessage>(&mut frame.as_slice(), &l)
            .unwrap_err()
            .to_string()
            .contains("pekko.framesize"));
    }
}
