//! Keyed state and timers, partitioned by key group so they can be snapshotted per key group
//! and redistributed when parallelism changes.

pub mod incremental;
pub mod keyed;
pub mod rocks;
pub mod timers;

pub use keyed::{
    state_backend, EmbeddedRocksDbStateBackend, HashMapStateBackend, KeyedStateBackend, ListState,
    MapState, StateBackend, ValueState,
};
pub use rocks::{InstanceMemory, SlotMemory, StateBackendSpec};
pub use timers::{TimeDomain, TimerService};
