//! Errors of configuration, shared by the coordinator and worker layers. Each layer has its own
//! enum: [`ConfigError`] here, [`crate::protocol::ProtocolError`] on the wire,
//! [`crate::network::NetworkError`] for connections, [`crate::CoordinatorError`] and
//! [`crate::WorkerError`] for the two roles.

/// A configuration value that cannot work, naming the field and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {field}: {reason}")]
pub struct ConfigError {
    /// The field (as in the config struct; the CLI flag has the same name with dashes).
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}
