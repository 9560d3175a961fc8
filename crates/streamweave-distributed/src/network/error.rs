//! Errors of the connection layer.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::ProtocolError;

/// Why a connection could not be made or used.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The TCP connection could not be established.
    #[error("cannot connect to {addr}: {}", describe_io_error(.source))]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// The socket error.
        source: io::Error,
    },
    /// Connecting or the handshake took longer than the pool's timeout.
    #[error("connecting to {addr} timed out after {after:?}")]
    Timeout {
        /// The address dialed.
        addr: SocketAddr,
        /// The timeout.
        after: Duration,
    },
    /// TLS could not be set up with the peer (unknown CA, a plaintext peer, a bad certificate).
    #[error("TLS with {addr} failed: {reason}")]
    Tls {
        /// The peer's address.
        addr: SocketAddr,
        /// Why, with a hint where one helps.
        reason: String,
    },
    /// The pool already holds its maximum number of connections.
    #[error("connection pool exhausted ({max} connections)")]
    PoolExhausted {
        /// The pool's limit.
        max: usize,
    },
    /// The peer broke the protocol or refused the handshake.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl NetworkError {
    /// Whether the peer refused this node's credentials (or this node refused the peer's): a
    /// wrong or missing secret, TLS on one side only, a certificate the other side does not
    /// trust. Retrying does not help; the configuration must change.
    pub fn is_refusal(&self) -> bool {
        match self {
            NetworkError::Protocol(ProtocolError::Unauthenticated(_)) => true,
            NetworkError::Protocol(ProtocolError::Rejected(reason)) => {
                reason.starts_with("authentication") || reason.contains("requires TLS")
            }
            NetworkError::Tls { reason, .. } => {
                reason.contains("certificate") || reason.contains("speaks TLS") || reason.contains("CA")
            }
            _ => false,
        }
    }

    /// A short reason for users: `connection refused`, `timed out after 2s`, ...
    pub fn reason(&self) -> String {
        match self {
            NetworkError::Connect { source, .. } => describe_io_error(source),
            NetworkError::Timeout { after, .. } => {
                format!("timed out after {}", humantime::format_duration(*after))
            }
            other => other.to_string(),
        }
    }
}

/// An i/o error as a short lower-case phrase without the OS error number
/// (`connection refused` rather than `Connection refused (os error 111)`).
pub fn describe_io_error(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset".to_string(),
        io::ErrorKind::TimedOut => "timed out".to_string(),
        io::ErrorKind::AddrNotAvailable => "address not available".to_string(),
        io::ErrorKind::AddrInUse => "address in use".to_string(),
        _ => {
            let text = e.to_string();
            let text = match text.find(" (os error") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => text,
            }
        }
    }
}
