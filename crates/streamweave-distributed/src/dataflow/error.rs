//! Errors of the dataflow layer.

use std::path::PathBuf;

/// What building or running a job can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DataflowError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// An object store (input or output on S3, ...) failed or could not be reached.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    /// The disk state backend's database failed.
    #[error("disk state {path}: {message}")]
    DiskState {
        /// The database file.
        path: PathBuf,
        /// What the database said.
        message: String,
    },
    /// The job's definition or parameters cannot work (missing input, unknown job, ...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// Records could not be encoded or decoded for the exchange.
    #[error("record encoding: {0}")]
    Encoding(String),
    /// The attempt was cancelled (the coordinator moved on).
    #[error("cancelled")]
    Cancelled,
    /// A peer connection failed while the attempt was running.
    #[error("exchange: {0}")]
    Exchange(String),
    /// The connection to peer worker `peer` could not be made or closed while the attempt
    /// needed it: the peer may be gone. The coordinator hears whom (`JobFailed`'s
    /// `unreachable_peer`) and, when that worker's own connection to it has closed too,
    /// declares it failed at once instead of at the heartbeat timeout.
    #[error("exchange: {reason}")]
    PeerLost {
        /// The peer.
        peer: crate::types::WorkerId,
        /// What failed, naming the peer.
        reason: String,
    },
    /// A request to a NATS JetStream server failed (connecting, reading a stream, publishing).
    #[error("nats {url}: {message}")]
    Nats {
        /// The server and stream or subject (`nats://HOST:PORT/NAME`).
        url: String,
        /// What failed and why.
        message: String,
    },
    /// A checkpoint's state could not be restored because the checkpoint is damaged (a state
    /// file missing, torn or altered): restoring an older checkpoint is the way on.
    #[error("checkpoint {checkpoint} is damaged: {reason}")]
    DamagedCheckpoint {
        /// The checkpoint.
        checkpoint: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A StreamWeave component run by the job failed a record and its `ErrorStrategy` said to
    /// stop (or to retry a record it could not name).
    #[error("streamweave component {component}: {message}")]
    StreamWeave {
        /// The component's name and type, as StreamWeave reports them.
        component: String,
        /// The error and the record it failed on.
        message: String,
    },
    /// The job's own code (a source, operator, key function or sink) panicked; caught at the
    /// task boundary so that it fails the attempt instead of silently ending the task.
    #[error("panicked{}: {message}", location.as_ref().map(|l| format!(" at {l}")).unwrap_or_default())]
    Panicked {
        /// The panic's message (its payload when that is a string).
        message: String,
        /// Where in the source it panicked (`file:line:column`), when known.
        location: Option<String>,
    },
}

impl DataflowError {
    /// Restoring from checkpoint `checkpoint` failed with `error`: a
    /// [`DamagedCheckpoint`](DataflowError::DamagedCheckpoint) when the checkpoint itself is
    /// damaged, an exchange failure (perhaps transient: the store) otherwise.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::{CheckpointError, CheckpointId};
    /// use streamweave_distributed::dataflow::DataflowError;
    /// let missing = CheckpointError::NotFound { id: CheckpointId(3), name: "state-p00001".into() };
    /// assert_eq!(DataflowError::restoring(3, missing).damaged_checkpoint(), Some(3));
    /// let other = CheckpointError::Encoding("x".into());
    /// assert_eq!(DataflowError::restoring(3, other).damaged_checkpoint(), None);
    /// ```
    pub fn restoring(checkpoint: u64, error: crate::checkpoint::CheckpointError) -> Self {
        if error.is_damage() {
            DataflowError::DamagedCheckpoint {
                checkpoint,
                reason: error.to_string(),
            }
        } else {
            DataflowError::Exchange(format!("restoring checkpoint {checkpoint}: {error}"))
        }
    }

    /// The checkpoint this error found damaged, if that is what it is.
    pub fn damaged_checkpoint(&self) -> Option<u64> {
        match self {
            DataflowError::DamagedCheckpoint { checkpoint, .. } => Some(*checkpoint),
            _ => None,
        }
    }

    /// The peer worker this error could not reach, if that is what it is.
    ///
    /// ```
    /// use streamweave_distributed::dataflow::DataflowError;
    /// let lost = DataflowError::PeerLost { peer: "w3".into(), reason: "the connection to worker w3 closed".into() };
    /// assert_eq!(lost.lost_peer().map(|w| w.as_str()), Some("w3"));
    /// assert_eq!(DataflowError::Cancelled.lost_peer(), None);
    /// ```
    pub fn lost_peer(&self) -> Option<&crate::types::WorkerId> {
        match self {
            DataflowError::PeerLost { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// An i/o error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataflowError::Io {
            path: path.into(),
            source,
        }
    }
}
