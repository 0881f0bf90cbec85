//! Eddy's high-availability services, after Flink's: leader election and retrieval, the
//! JobGraph store, the completed-checkpoint store, the checkpoint id counter and the job result
//! store, behind one trait ([`HaServices`]) with two backends:
//!
//! * `none` ([`StandaloneHaServices`]): one JobManager; leadership is granted at once with the
//!   fixed session id [`LeaderSessionId::STANDALONE`]; stores on the local filesystem under the
//!   storage dir (or in memory without one).
//! * `zookeeper` ([`ZooKeeperHaServices`]): leader election with ephemeral sequential latches,
//!   retrieval via the `leader-info` node, and stores whose writes are multi-ops fenced by the
//!   writer's latch. Layout and fencing: docs/adr/0003-ha-services.md.
//!
//! Every mutating store call takes the caller's [`LeaderSessionId`]; a caller that does not (any
//! longer) lead gets [`HaError::Fenced`] and nothing changes. This crate must never apply a write
//! of a deposed leader, never block a tokio worker on disk IO, and never read configuration keys
//! itself: it takes plain values ([`HaConfig`]).

mod api;
mod durable;
mod error;
mod paths;
mod standalone;
mod zookeeper;

pub use api::{
    BoxFuture, CheckpointIdCounter, CompletedCheckpointStore, ConnectionState, HaServices,
    JobGraphStore, JobResultStore, LeaderInfo, LeaderSessionId, LeaderWatcher, Leadership,
    LeadershipEvent,
};
pub use error::HaError;
pub use standalone::{StandaloneHaConfig, StandaloneHaServices};
pub use zookeeper::session::{close_session, CloseOutcome, SessionCredentials};
pub use zookeeper::{ZooKeeperHaConfig, ZooKeeperHaServices};

use std::sync::Arc;

/// Which backend, with its settings (`high-availability.type`: `none` or `zookeeper`).
#[derive(Clone, Debug)]
pub enum HaConfig {
    None(StandaloneHaConfig),
    ZooKeeper(ZooKeeperHaConfig),
}

/// Builds the HA services for `config`. The `zookeeper` backend connects and validates first
/// (quorum reachable within the connection timeout, root paths created, storage dir writable), so
/// a bad configuration fails here with a one-line error.
pub async fn create_ha_services(config: HaConfig) -> Result<Arc<dyn HaServices>, HaError> {
    match config {
        HaConfig::None(c) => {
            let services = durable::blocking(move || StandaloneHaServices::new(c)).await?;
            Ok(Arc::new(services))
        }
        HaConfig::ZooKeeper(c) => Ok(Arc::new(ZooKeeperHaServices::connect(c).await?)),
    }
}
