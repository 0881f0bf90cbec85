//! The error type of user functions, operators and tasks: a message with its cause chain, cheap
//! to send across threads and processes (it becomes the job's exception history entry).

use std::fmt;

/// A failure inside a job: what went wrong, with the chain of causes already rendered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobError {
    pub message: String,
}

impl JobError {
    pub fn new(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
        }
    }

    /// Prefixes context: `ctx: original`.
    pub fn context(self, ctx: impl fmt::Display) -> Self {
        JobError {
            message: format!("{ctx}: {}", self.message),
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
