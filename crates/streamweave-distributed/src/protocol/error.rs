//! Errors of the wire layer.

use std::io;

/// What can go wrong reading or writing the wire protocol. Every variant closes the one
/// connection it happened on; none is fatal to the process.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer's first bytes are not our magic: it does not speak this protocol.
    #[error("peer does not speak the streamweave-distributed protocol (first bytes {got:?})")]
    NotOurProtocol {
        /// The four bytes received instead of the magic.
        got: [u8; 4],
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u16,
        /// The peer's version.
        theirs: u16,
    },
    /// The peer refused the handshake and said why.
    #[error("handshake rejected: {0}")]
    Rejected(String),
    /// Authentication failed on this side: the peer could not prove it holds the shared secret,
    /// or asked for one this side does not have. The text is for the local log and user.
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// A frame announced a length above the configured maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max} bytes")]
    FrameTooLarge {
        /// The announced length (0 when the codec did not say).
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// A message could not be encoded for sending (a serializer error: a type whose length is
    /// unknown up front, for example). Nothing was written.
    #[error("unencodable message: {0}")]
    Encode(String),
    /// A frame's body did not decode as the expected message.
    #[error("undecodable frame: {0}")]
    Decode(String),
    /// The connection closed in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The connection closed where a message was expected.
    #[error("connection closed by peer")]
    Closed,
    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
}
