//! Eddy's built-in connectors: the sources and sinks the built-in jobs and benchmarks use.
//!
//! | connector | record | guarantee |
//! |---|---|---|
//! | [`FileSource`] | `String` lines | exactly-once (replays from its byte offset) |
//! | [`FileSink`] | any `T: Display` (or a format closure) | exactly-once (two-phase commit of part files) |
//! | [`PrintSink`] | any `T: Display` | at-least-once, to stdout |
//! | [`BlackholeSink`] | anything | drops records, counts them |
//! | [`SequenceSource`] | `(key, seq)` | exactly-once (the witness of the `sequence` job) |
//! | [`CarSource`] | [`CarEvent`] | exactly-once, deterministic |
//! | [`NexmarkSource`] | Nexmark [`generators::nexmark::Event`]s | exactly-once, deterministic, rescalable |
//! | [`RowSource`] | `(key, value)` | exactly-once at unchanged parallelism (benchmarks) |
//!
//! Every connector is a plain value whose clones become the subtasks (the job builder's factory
//! closure clones it); a subtask learns its index and parallelism in `open`. Stateful connectors
//! tag each operator-state entry with the subtask and parallelism that wrote it, so a restore
//! works whether the runtime hands back the subtask's own entries or the union of all of them.
//! This crate must never know about JobManagers, TaskManagers or checkpoint storage: it only
//! shapes its own operator state.

pub mod blackhole;
pub mod file;
pub mod generators;
pub mod print;
mod restore;
mod throttle;

#[cfg(test)]
mod testing;

pub use blackhole::BlackholeSink;
pub use file::{FileSink, FileSource};
pub use generators::{CarEvent, CarSource, NexmarkSource, RowSource, SequenceSource};
pub use print::PrintSink;
