//! Event-time and processing-time windows (Flink's model): assigners decide which windows a
//! record belongs to, window functions what a window computes, and the keyed window operator
//! keeps per-(key, window) state and timers and fires windows as time passes.
//!
//! Semantics (half-open bounds, firing, lateness, session merging) are described in
//! `docs/windows.md`. This module never builds graphs: the API side is `api::window`
//! (`KeyedStream::window`) and `api::time` (watermarks).

pub mod assigner;
pub mod function;
pub mod operator;
#[cfg(test)]
pub(crate) mod tests;

pub use crate::api::time::WatermarkStrategy;
pub use crate::api::window::WindowedStream;
pub use assigner::{
    EventTimeSessionWindows, ProcessingTimeSessionWindows, SlidingEventTimeWindows,
    SlidingProcessingTimeWindows, TimeWindow, TumblingEventTimeWindows,
    TumblingProcessingTimeWindows, WindowAssigner,
};
pub use function::{AggregateFunction, ProcessWindowFunction};
pub use operator::WindowOperator;
