//! Errors of the worker layer.

use crate::error::ConfigError;

/// What a worker operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator refused the registration (for example the `max_workers` limit).
    #[error("registration failed: {0}")]
    RegistrationFailed(String),
    /// The coordinator could not be reached or the connection broke.
    #[error("communication error: {0}")]
    Communication(String),
    /// A newer run of this worker id registered; this run must stop.
    #[error("fenced: {0}")]
    Fenced(String),
    /// A task was asked for a partition this worker does not own.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// A partition's task failed.
    #[error("pipeline error: {0}")]
    PipelineError(String),
    /// The configuration cannot work.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
}

impl WorkerError {
    /// Whether trying again later may succeed (the coordinator may come back or make room).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            WorkerError::Communication(_) | WorkerError::RegistrationFailed(_)
        )
    }
}
