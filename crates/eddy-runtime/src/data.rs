//! What may flow through a stream, and the units of time.

use serde::{de::DeserializeOwned, Serialize};

/// Any record type: cloneable (broadcast, fan-out), sendable between threads and serializable
/// (records cross TaskManagers as bincode). Implemented for every such type.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// A key: `Data` plus hashing (key groups, state tables) and ordering (timers).
pub trait Key: Data + std::hash::Hash + Eq + Ord + std::fmt::Debug {}
impl<T: Data + std::hash::Hash + Eq + Ord + std::fmt::Debug> Key for T {}

/// Milliseconds since the Unix epoch (event time and processing time alike).
pub type Timestamp = i64;

/// The watermark before any data: nothing is late yet.
pub const MIN_WATERMARK: Timestamp = i64::MIN;
/// The watermark a bounded source sends when it ends: every event-time timer fires.
pub const MAX_WATERMARK: Timestamp = i64::MAX;

/// The wall clock in milliseconds (processing time).
pub fn now_millis() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
