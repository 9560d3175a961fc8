//! Errors of the checkpoint store.

use std::path::PathBuf;

use super::CheckpointId;

/// What storing, reading or cleaning up a checkpoint can fail with.
///
/// [`Corrupt`](CheckpointError::Corrupt) and [`NotFound`](CheckpointError::NotFound) describe
/// a damaged checkpoint: recovery skips it and uses the previous one (see
/// [`CheckpointError::is_damage`]). The other variants are failures of the storage itself or of
/// the caller, and are passed on.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path (or object key).
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An object store operation failed, or the store could not be opened (the error names the
    /// URL and key). Boxed: the object store's errors are large, and this one is rare.
    #[error(transparent)]
    Storage(Box<crate::storage::StorageError>),
    /// A stored file is torn, truncated or altered, or does not match the manifest.
    #[error("checkpoint {id}: {name} is corrupt: {reason}")]
    Corrupt {
        /// The checkpoint.
        id: CheckpointId,
        /// The file's name within the checkpoint.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file of the checkpoint is missing.
    #[error("checkpoint {id}: {name} not found")]
    NotFound {
        /// The checkpoint.
        id: CheckpointId,
        /// The file's name within the checkpoint.
        name: String,
    },
    /// A file name that the store cannot use (empty, too long, a path, or reserved).
    #[error("invalid checkpoint file name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The checkpoint is already committed: `abort` was asked to delete it, or `commit` found
    /// its manifest already created (by another coordinator).
    #[error("checkpoint {0} is already committed")]
    AlreadyCommitted(CheckpointId),
    /// A manifest is intact but does not describe what a restore needs (a partition without an
    /// entry, an entry whose file is not listed): written by another version or another job.
    #[error("checkpoint {id}: inconsistent manifest: {reason}")]
    Inconsistent {
        /// The checkpoint.
        id: CheckpointId,
        /// What is wrong.
        reason: String,
    },
    /// A manifest or state index written by a newer version of the format than this build
    /// reads: not damage (an older checkpoint would lose progress), so recovery stops with it.
    #[error("checkpoint {id}: {what} format version {version} is not supported (this build reads up to {supported}); upgrade swd")]
    UnsupportedVersion {
        /// The checkpoint.
        id: CheckpointId,
        /// What carries the version (`manifest`, `state index`).
        what: &'static str,
        /// The version found.
        version: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A manifest could not be encoded.
    #[error("checkpoint encoding: {0}")]
    Encoding(String),
}

impl From<crate::storage::StorageError> for CheckpointError {
    fn from(e: crate::storage::StorageError) -> Self {
        CheckpointError::Storage(Box::new(e))
    }
}

impl CheckpointError {
    /// An i/o error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CheckpointError::Io {
            path: path.into(),
            source,
        }
    }

    /// A corrupt file.
    pub fn corrupt(id: CheckpointId, name: &str, reason: impl Into<String>) -> Self {
        CheckpointError::Corrupt {
            id,
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// True when the error means the checkpoint itself is damaged (a file is corrupt or
    /// missing), so that recovery should fall back to an older one; false for failures of the
    /// storage (which may be transient) or of the caller.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::{CheckpointError, CheckpointId};
    /// let e = CheckpointError::NotFound { id: CheckpointId(3), name: "state-p0001".into() };
    /// assert!(e.is_damage());
    /// assert!(!CheckpointError::Encoding("x".into()).is_damage());
    /// ```
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            CheckpointError::Corrupt { .. } | CheckpointError::NotFound { .. }
        )
    }
}
