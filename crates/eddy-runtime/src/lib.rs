//! Eddy's streaming runtime: the DataStream API, the job graph, operators, keyed state and
//! timers, and tasks with their network data plane.
//!
//! It knows nothing of JobManagers or TaskManagers (see `eddy-cluster`): it turns a deployment
//! into a running task and reports what happens to it.

pub mod api;
pub mod data;
pub mod error;
pub mod framing;
pub mod graph;
pub mod keyed;
pub mod operator;
pub mod registry;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod task;
pub mod window;

pub use api::{DataStream, KeyedStream, StreamEnv};
pub use data::{Data, Key, Timestamp};
pub use error::{JobError, Result};
pub use keyed::{KeyedContext, KeyedOpenContext, KeyedProcessFunction};
pub use operator::{Operator, Output, TaskInfo};
pub use sink::Sink;
pub use source::{Source, SourceStatus};
pub use window::{
    AggregateFunction, ProcessWindowFunction, TimeWindow, WatermarkStrategy, WindowedStream,
};
