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
    /// A request to a NATS JetStream server failed (connecting, reading a stream, publishing).
    #[error("nats {url}: {message}")]
    Nats {
        /// The server and stream or subject (`nats://HOST:PORT/NAME`).
        url: String,
        /// What failed and why.
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
    /// An i/o error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataflowError::Io {
            path: path.into(),
            source,
        }
    }
}
