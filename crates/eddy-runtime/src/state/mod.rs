//! Keyed state and timers, partitioned by key group so they can be snapshotted per key group
//! and redistributed when parallelism changes.

pub mod keyed;
pub mod timers;

pub use keyed::{KeyedStateBackend, ListState, MapState, ValueState};
pub use timers::{TimeDomain, TimerService};
