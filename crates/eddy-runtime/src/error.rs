//! The error type of user functions, operators and tasks: a message with its cause chain, cheap
//! to send across threads and processes (it becomes the job's exception history entry).

use std::fmt;

/// A failure inside a job: what went wrong, with the chain of causes already rendered, and
/// whether a restart can cure it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobError {
    pub message: String,
    pub throwable_type: ThrowableType,
}

/// How a failure bears on recovery (Flink's `ThrowableType`): the JobMaster decides by this
/// type, carried with the task's failure, never by the message's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ThrowableType {
    /// A restart may cure it: the restart strategy decides.
    #[default]
    RecoverableError,
    /// No restart can (e.g. a TaskManager's network buffer pool is too small for the task: a
    /// restart would ask the same TaskManagers for the same buffers): the job fails at once.
    NonRecoverableError,
}

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            throwable_type: ThrowableType::RecoverableError,
        }
    }

    /// A failure no restart can cure.
    pub fn non_recoverable(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            throwable_type: ThrowableType::NonRecoverableError,
        }
    }

    pub fn is_recoverable(&self) -> bool {
        self.throwable_type == ThrowableType::RecoverableError
    }

    /// Prefixes context: `ctx: original` (of the same type).
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        JobError {
            message: format!("{ctx}: {}", self.message),
            throwable_type: self.throwable_type,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JobError {}

impl From<String> for JobError {
    fn from(s: String) -> Self {
        JobError::new(s)
    }
}

impl From<&str> for JobError {
    fn from(s: &str) -> Self {
        JobError::new(s)
    }
}

impl From<std::io::Error> for JobError {
    fn from(e: std::io::Error) -> Self {
        JobError::new(e.to_string())
    }
}

impl From<bincode::Error> for JobError {
    fn from(e: bincode::Error) -> Self {
        JobError::new(format!("serialization failed: {e}"))
    }
}

pub type Result<T, E = JobError> = std::result::Result<T, E>;
