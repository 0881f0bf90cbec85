//! Eddy's foundation: identifiers, key groups, configuration (parsing, validation, typed settings).
//!
//! This crate holds no IO beyond reading configuration files and must never start threads or
//! sockets: every other crate depends on it.

pub mod config;
pub mod faultpoint;
pub mod ids;
pub mod keygroup;
pub mod metrics;
pub mod settings;
pub mod tls;

pub use ids::{AttemptId, JobId, TaskManagerId};
pub use keygroup::{KeyGroupRange, DEFAULT_MAX_PARALLELISM};
