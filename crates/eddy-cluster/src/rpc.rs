//! The control-plane protocol between JobManager and TaskManagers: length-prefixed bincode
//! messages over one TCP connection per TaskManager, opened by the TaskManager.
//!
//! Every message a JobManager sends carries its fencing token (the leader session id); a
//! TaskManager rejects messages whose token is not that of the leader it registered with.
//! This file is the protocol only: framing and the message types, no decisions.

use eddy_core::JobId;
use eddy_recovery::TaskStateSnapshot;
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
    },
    NotifyCheckpointComplete {
        token: FencingToken,
        key: ExecutionKey,
        checkpoint_id: u64,
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
    pub checkpoints_dir: String,
    pub checkpoint_id: u64,
    pub state: TaskStateSnapshot,
}

/// Largest accepted message; a corrupt length must not allocate without bound.
const MAX_MESSAGE: u32 = 512 << 20;

pub fn write_message<T: Serialize>(w: &mut impl Write, msg: &T) -> std::io::Result<()> {
    let bytes = bincode::serialize(msg)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    w.write_all(&(bytes.len() as u32).to_le_bytes())?;
    w.write_all(&bytes)?;
    w.flush()
}

pub fn read_message<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("message of {len} bytes exceeds the limit"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    bincode::deserialize(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            read_message::<TmMessage>(&mut r).unwrap(),
            TmMessage::Register { slots: 2, .. }
        ));
        assert!(matches!(
            read_message::<JmMessage>(&mut r).unwrap(),
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
        match read_message::<TmMessage>(&mut r).unwrap() {
            TmMessage::CheckpointAck {
                state: s,
                checkpoint_id: 9,
                ..
            } => assert_eq!(s, state),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_message::<TmMessage>(&mut r).unwrap(),
            TmMessage::Heartbeat { .. }
        ));
    }

    #[test]
    fn oversized_length_is_rejected() {
        let bytes = (MAX_MESSAGE + 1).to_le_bytes();
        assert!(read_message::<TmMessage>(&mut bytes.as_slice()).is_err());
    }
}
