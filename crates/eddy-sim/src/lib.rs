//! A deterministic, seeded simulation of Eddy's sans-IO cores (FoundationDB style).
//!
//! One seed decides everything: the job's shape and settings, the restart and failover
//! strategies, the fault schedule, message delays, drops and duplicates. A single-threaded
//! scheduler pops events from a queue ordered by virtual time; nothing sleeps, spawns a thread
//! or touches a file or socket, so thousands of seeds run per second and a failing seed replays
//! exactly (`EDDY_SIM_SEED=<seed>`).
//!
//! What runs for real: the [`eddy_cluster::jobmaster::JobMaster`] (and through it the
//! CheckpointCoordinator, the restart strategies and the region/full failover strategy) — the
//! very code the JobManager runs. What is modelled here: the JobManager shell around it
//! (`jobmanager.rs`: leadership, the job-end order dirty result → clean-up → clean, restore
//! selection from the completed-checkpoint store), the TaskManagers and their tasks (a
//! sequence source and a two-phase-commit sink), the network, and ZooKeeper ([`zk`]). The
//! invariants are checked after every event; see [`world`].

pub mod world;
pub mod zk;

pub use world::{run_seed, Outcome, SimFailure};

/// The one command that replays `seed` with its event trace.
pub fn replay_command(seed: u64) -> String {
    format!("EDDY_SIM_SEED={seed} cargo nextest run -p eddy-sim --test simulation")
}
