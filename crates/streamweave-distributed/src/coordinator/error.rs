//! Errors of the coordinator layer.

use std::path::PathBuf;

use crate::error::ConfigError;
use crate::types::WorkerId;

/// What a coordinator operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    /// A worker could not be registered (for example the `max_workers` limit).
    #[error("registration failed: {0}")]
    RegistrationFailed(String),
    /// No worker with this id is a member.
    #[error("worker not found: {0}")]
    WorkerNotFound(WorkerId),
    /// The coordinator could not serve: its socket or its start failed (the text says which).
    #[error("communication error: {0}")]
    Communication(String),
    /// The coordinator is not started, or has stopped.
    #[error("the coordinator is not running")]
    NotRunning,
    /// A request did not complete in time (for example a checkpoint that was not committed).
    #[error("timed out: {0}")]
    Timeout(String),
    /// A [`RecoveryManager`](crate::RecoveryManager) was asked for a checkpoint before
    /// [`attach`](crate::RecoveryManager::attach) gave it a coordinator.
    #[error("the recovery manager is not attached to a coordinator")]
    NotAttached,
    /// A bug: the coordinator answered something that does not fit the request.
    #[error("internal error: {0}")]
    Internal(String),
    /// A checkpoint was asked for but no job attempt is running (none started, or the job is
    /// between attempts); the text says which.
    #[error("{0}")]
    NoJob(String),
    /// A checkpoint was asked for but checkpoints are off.
    #[error("checkpoints are off (no checkpoint interval configured)")]
    CheckpointsOff,
    /// A partition number or set that cannot be assigned.
    #[error("invalid partition: {0}")]
    InvalidPartition(String),
    /// A rebalance could not be carried out.
    #[error("rebalance failed: {0}")]
    RebalanceFailed(String),
    /// The data directory cannot be created or written.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The job cannot resume from the checkpoints in its store (a manifest that does not
    /// describe every partition, or a store that cannot be opened or read).
    #[error("cannot restore the job from the checkpoints in {store}: {source}")]
    Restore {
        /// The checkpoint store's URL (or directory).
        store: String,
        /// Why.
        source: crate::checkpoint::CheckpointError,
    },
    /// The configuration cannot work.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
}
