//! Eddy's recovery decision logic, modelled on Apache Flink's fault tolerance:
//!
//! - [`restart`]: restart strategies (`none`, `fixed-delay`, `failure-rate`, `exponential-delay`);
//! - [`failover`]: pipelined regions and the `region` / `full` failover strategies;
//! - [`coordinator`]: the CheckpointCoordinator core (events in, commands out);
//! - [`storage`]: checkpoint storage on a filesystem path or S3 (`<dir>/<job-id>/chk-<n>/_metadata`),
//!   and task-local state copies.
//!
//! Everything except [`storage`] is sans-IO: no threads, sockets, files or clocks. Time is an
//! argument, randomness a seed. The JobManager's and TaskManager's shells execute the commands.

pub mod coordinator;
pub mod failover;
pub mod ids;
pub mod metadata;
pub mod restart;
pub mod savepoint;
pub mod storage;

pub use coordinator::{
    CheckpointCoordinator, CheckpointFailureReason, CheckpointStats, CheckpointTarget, Command,
    CoordinatorConfig, DeclineReason, JobShutdownStatus, TriggerError,
};
pub use failover::{
    compute_pipelined_regions, DistributionPattern, EdgeInfo, FailoverStrategy, PipelinedRegion,
    Topology, TopologyError, VertexInfo,
};
pub use ids::{CheckpointId, ExecutionVertexId};
pub use metadata::{
    CheckpointKind, CompletedCheckpoint, OperatorInfo, OperatorSubtaskState, RocksDbFile,
    RocksDbStateHandle, StateFileHandle, TaskState, TaskStateSnapshot,
};
pub use restart::{RestartBackoff, RestartDecision};
pub use storage::{
    CheckpointStorage, RestoreSelection, SkippedCheckpoint, StorageError, VerifyLevel,
};
