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
use eddy_runtime::registry::JobSpec;
use eddy_runtime::task::{ExecutionState, TaskDeployment};
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
        error: Option<String>,
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
    Deploy {
        token: FencingToken,
        job: JobSpec,
        deployment: Box<TaskDeployment>,
        restore: Option<Box<RestoreSpec>>,
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
