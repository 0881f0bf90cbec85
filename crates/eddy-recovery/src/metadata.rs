//! What a completed checkpoint is made of: the state handles tasks acknowledge with and the
//! metadata the coordinator assembles from them. These are the values written into `_metadata`
//! (see [`crate::storage`] for the file format and the checksum); this file holds no IO.
//!
//! Paths inside handles are relative to the directory that holds `_metadata` (`chk-<n>/` for a
//! checkpoint, the savepoint directory for a savepoint) and use `/` as separator. Files shared by
//! incremental checkpoints live in the job's `shared/` directory and are referenced as
//! `../shared/<name>`. Relative paths keep savepoints relocatable.

use crate::ids::{CheckpointId, ExecutionVertexId};
use eddy_core::{JobId, KeyGroupRange};
use serde::{Deserialize, Serialize};

/// The prefix of a handle path that points into the job's `shared/` directory.
pub const SHARED_PREFIX: &str = "../shared/";

/// One state file written by a task: where it is and how to tell it is intact.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateFileHandle {
    /// Relative to the directory holding `_metadata`, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub len: u64,
    /// CRC-32 (IEEE) of the whole file.
    pub crc32: u32,
}

impl StateFileHandle {
    /// A file in the job's `shared/` directory (incremental checkpoints): it outlives the
    /// checkpoint that uploaded it and is deleted only when no retained checkpoint refers to it.
    pub fn is_shared(&self) -> bool {
        self.path.starts_with(SHARED_PREFIX)
    }
}

/// The state of one operator (by its stable uid) in one subtask.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
// Fields are always written (no `skip_serializing_if`): the same types travel as bincode in
// the RPC protocol, which is not self-describing.
pub struct OperatorSubtaskState {
    /// The operator's stable uid: what restore matches on, across job versions and rescales.
    pub operator_uid: String,
    /// Key groups this subtask owned, for keyed state (redistributed on rescale).
    #[serde(default)]
    pub key_groups: Option<KeyGroupRange>,
    /// State files (exclusive to the checkpoint, or shared).
    #[serde(default)]
    pub files: Vec<StateFileHandle>,
    /// Small state kept inside `_metadata` itself (e.g. a source's read offsets). Covered by the
    /// metadata checksum.
    #[serde(default)]
    pub inline: Vec<u8>,
    /// Keyed state as a native RocksDB snapshot (`rocksdb` with incremental checkpoints); the
    /// rest of the operator's state (timers, operator state) is in `files`/`inline` as usual.
    #[serde(default)]
    pub rocksdb: Option<RocksDbStateHandle>,
}

/// The files of one native RocksDB snapshot (an incremental checkpoint of one keyed operator
/// subtask): restoring them into one directory gives the instance as it was at the barrier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksDbStateHandle {
    /// The key groups the instance held.
    pub key_groups: KeyGroupRange,
    /// State names by RocksDB state id (the two bytes after the key group in every key).
    pub state_names: Vec<String>,
    /// SST files are shared (`../shared/…`, referenced by later checkpoints until compacted
    /// away); MANIFEST, CURRENT and OPTIONS are exclusive to the checkpoint.
    pub files: Vec<RocksDbFile>,
}

/// One file of a native RocksDB snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RocksDbFile {
    /// Its name in the RocksDB directory (e.g. `000012.sst`, `MANIFEST-000005`).
    pub name: String,
    pub handle: StateFileHandle,
}

impl OperatorSubtaskState {
    /// Every file of this state: `files`, then the native snapshot's.
    pub fn all_files(&self) -> impl Iterator<Item = &StateFileHandle> {
        self.files.iter().chain(
            self.rocksdb
                .iter()
                .flat_map(|r| r.files.iter().map(|f| &f.handle)),
        )
    }
}

/// What one task (a chain of operators) acknowledges a checkpoint with.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStateSnapshot {
    pub operators: Vec<OperatorSubtaskState>,
}

impl TaskStateSnapshot {
    /// All files referenced by this snapshot.
    pub fn files(&self) -> impl Iterator<Item = &StateFileHandle> {
        self.operators.iter().flat_map(|o| o.all_files())
    }

    /// Bytes of state: files plus inline state.
    pub fn state_size(&self) -> u64 {
        self.operators
            .iter()
            .map(|o| o.all_files().map(|f| f.len).sum::<u64>() + o.inline.len() as u64)
            .sum()
    }
}

/// One task's entry in the metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub task: ExecutionVertexId,
    pub state: TaskStateSnapshot,
}

/// Whether a snapshot is a periodic checkpoint or a user-triggered savepoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointKind {
    /// Periodic, owned by Eddy: retained up to `state.checkpoints.num-retained`, used for failover.
    Checkpoint,
    /// Owned by the user: never deleted by Eddy, never used for automatic failover, does not
    /// commit side effects (Flink ≥ 1.15).
    Savepoint,
    /// The savepoint of stop-with-savepoint: commits side effects, then the job finishes.
    StopWithSavepoint,
}

impl CheckpointKind {
    pub fn is_savepoint(self) -> bool {
        !matches!(self, CheckpointKind::Checkpoint)
    }

    pub fn name(self) -> &'static str {
        match self {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Savepoint | CheckpointKind::StopWithSavepoint => "savepoint",
        }
    }
}

/// A completed checkpoint: the content of its `_metadata` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletedCheckpoint {
    #[serde(with = "job_id_hex")]
    pub job_id: JobId,
    pub checkpoint_id: CheckpointId,
    pub kind: CheckpointKind,
    /// Wall-clock milliseconds at trigger (the checkpoint's timestamp, as Flink's).
    pub trigger_timestamp_ms: u64,
    /// Wall-clock milliseconds when the last task acknowledged.
    pub completion_timestamp_ms: u64,
    /// One entry per task, sorted by task.
    pub tasks: Vec<TaskState>,
    /// The operators of the job that wrote it, with their parallelism and max parallelism (the
    /// JobMaster fills this in before `_metadata` is written; a restore checks max parallelism
    /// against it). Empty in metadata of older builds.
    #[serde(default)]
    pub operators: Vec<OperatorInfo>,
}

/// One operator of the job that wrote a checkpoint or savepoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorInfo {
    pub uid: String,
    pub parallelism: u32,
    pub max_parallelism: u32,
}

impl CompletedCheckpoint {
    /// Every file referenced by the checkpoint.
    pub fn files(&self) -> impl Iterator<Item = &StateFileHandle> {
        self.tasks.iter().flat_map(|t| t.state.files())
    }

    /// Total bytes of state.
    pub fn state_size(&self) -> u64 {
        self.tasks.iter().map(|t| t.state.state_size()).sum()
    }

    /// The state a task acknowledged with.
    pub fn task_state(&self, task: ExecutionVertexId) -> Option<&TaskStateSnapshot> {
        self.tasks
            .binary_search_by(|t| t.task.cmp(&task))
            .ok()
            .map(|i| &self.tasks[i].state)
    }

    /// Every subtask's state of one operator, by uid (for restore and rescale).
    pub fn operator_states<'a>(
        &'a self,
        operator_uid: &'a str,
    ) -> impl Iterator<Item = (ExecutionVertexId, &'a OperatorSubtaskState)> + 'a {
        self.tasks.iter().flat_map(move |t| {
            t.state
                .operators
                .iter()
                .filter(move |o| o.operator_uid == operator_uid)
                .map(move |o| (t.task, o))
        })
    }
}

/// `JobId` as its 32-hex-character form: JSON numbers cannot hold 128 bits.
mod job_id_hex {
    use eddy_core::JobId;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &JobId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        let s = String::deserialize(d)?;
        JobId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_json_with_job_id_as_hex() {
        let cp = CompletedCheckpoint {
            operators: Vec::new(),
            job_id: JobId(u128::MAX - 7),
            checkpoint_id: 9,
            kind: CheckpointKind::Checkpoint,
            trigger_timestamp_ms: 1,
            completion_timestamp_ms: 2,
            tasks: vec![TaskState {
                task: ExecutionVertexId::new(0, 1),
                state: TaskStateSnapshot {
                    operators: vec![OperatorSubtaskState {
                        operator_uid: "src".into(),
                        key_groups: Some(KeyGroupRange { start: 0, end: 64 }),
                        files: vec![StateFileHandle {
                            path: "a".into(),
                            len: 3,
                            crc32: 4,
                        }],
                        inline: vec![1, 2],
                        rocksdb: None,
                    }],
                },
            }],
        };
        let json = serde_json::to_string(&cp).unwrap();
        assert!(json.contains(&JobId(u128::MAX - 7).to_string()));
        let back: CompletedCheckpoint = serde_json::from_str(&json).unwrap();
        assert_eq!(back, cp);
        assert_eq!(back.state_size(), 5);
        assert!(back.task_state(ExecutionVertexId::new(0, 1)).is_some());
        assert_eq!(back.operator_states("src").count(), 1);
    }

    #[test]
    fn shared_files_are_recognised_by_their_prefix() {
        let h = |p: &str| StateFileHandle {
            path: p.into(),
            len: 0,
            crc32: 0,
        };
        assert!(h("../shared/x").is_shared());
        assert!(!h("uid-0-abc").is_shared());
    }
}
