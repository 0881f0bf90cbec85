//! Files: a line source that splits a file across subtasks, and an exactly-once part-file sink.
//!
//! `naming.rs` is the only place that knows the part-file names; `durable.rs` the only place
//! that does the fsync/rename dance. Neither the source nor the sink ever writes outside the
//! path it was given.

mod durable;
mod naming;
pub mod sink;
pub mod source;

pub use sink::FileSink;
pub use source::FileSource;

#[cfg(test)]
mod tests;
