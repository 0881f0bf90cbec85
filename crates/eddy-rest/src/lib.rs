//! Eddy's REST API: the JobManager's HTTP endpoint with Flink's REST v1 paths and JSON field
//! names (so Flink-aware tooling can read it), Eddy's own `POST /jobs`, Prometheus metrics at
//! `/metrics`, and a tiny blocking client for the CLI. Every endpoint is listed with an example
//! in docs/rest.md.
//!
//! Map of the crate:
//! - `server.rs`: [`start`] / [`RestServer`]: binding, the runtime thread, routing, shutdown.
//! - `handlers.rs`: one async function per endpoint; they only ask the JobManager and render.
//! - `views.rs`: pure JSON renderings of `JobDetails` / `TaskManagerInfo` (Flink field names).
//! - `checkpoints.rs`: the `/jobs/:id/checkpoints` shape, kept apart so it can grow.
//! - `dashboard.rs`: the embedded web dashboard (`/`, `assets/`) and the Eddy endpoints it
//!   reads (`/jobs/:id/recoveries`, `/jobmanager/log`, `/jobmanager/eddy-info`).
//! - `recoveries.rs`: the `/jobs/:id/recoveries` shape.
//! - `metrics.rs`: the metric names (the only place that defines them) and the text format.
//! - `submit.rs`: `POST /jobs` body → validated `JobSpec`.
//! - `leader.rs`: [`LeaderState`], the HA standby switch.
//! - `error.rs`: [`ApiError`], the `{"errors": [...]}` answers.
//! - `auth.rs`: the bearer token (`eddy.rest.auth.token-file`) and its 401 middleware.
//! - `client.rs`: [`client::request`], blocking HTTP/1.1 over `std::net::TcpStream`.
//!
//! This crate must never hold job state of its own: every answer is computed from the
//! JobManager at request time, so a restarted REST server can never show stale jobs.

pub mod auth;
pub mod checkpoints;
pub mod client;
mod dashboard;
mod error;
mod handlers;
mod leader;
pub mod metrics;
pub mod recoveries;
mod savepoints;
mod server;
pub mod submit;
mod tls;
pub mod views;

pub use error::ApiError;
pub use leader::{LeaderState, Leadership};
pub use server::{start, RestServer};

/// What `/overview` and `/config` report as `flink-version`.
pub const EDDY_VERSION: &str = concat!("eddy-", env!("CARGO_PKG_VERSION"));
