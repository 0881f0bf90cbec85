//! Eddy as a library: everything a user needs to write their own jobs and build their own
//! `eddy` binary that runs them (see `examples/custom_job.rs`).
//!
//! ```no_run
//! let mut registry = eddy::builtin_jobs();
//! // registry.register(my_job_definition);
//! std::process::exit(eddy::cli::main_with(registry));
//! ```

mod active;
pub mod cert;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod jobs;
mod lines;
pub mod local;
pub mod nexmark;
pub mod remote;

pub use eddy_connectors as connectors;
pub use eddy_core::config::Config;
pub use eddy_runtime::registry::{JobArgs, JobDefinition, JobRegistry, JobSpec};
pub use eddy_runtime::{api, state, window};
pub use eddy_runtime::{
    Data, DataStream, JobError, Key, KeyedContext, KeyedOpenContext, KeyedProcessFunction,
    KeyedStream, Operator, Output, Sink, Source, SourceStatus, StreamEnv, TaskInfo,
};

/// The registry with Eddy's built-in jobs (word-count, sequence, top-speed-windowing, ...).
pub fn builtin_jobs() -> JobRegistry {
    let mut r = JobRegistry::new();
    jobs::register_builtin(&mut r);
    r
}
