//! Eddy's cluster components: the JobManager (dispatcher, resource manager, job masters) and
//! the TaskManager, and the RPC protocol between them. `eddy local` runs the very same
//! components in one process.

pub mod archive;
pub mod ha;
pub mod jobmanager;
pub mod jobmaster;
pub mod peer;
pub mod rpc;
pub mod savepoints;
pub mod slots;
pub mod standby;
pub mod status;
pub mod taskmanager;
mod tm_metrics;

pub use jobmanager::JobManagerHandle;
pub use status::{JobDetails, JobStatus};
pub use taskmanager::TaskManagerHandle;
