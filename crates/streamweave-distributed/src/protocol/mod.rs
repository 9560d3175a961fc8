//! The wire protocol: every byte that crosses a socket is defined here and nowhere else.
//!
//! ```text
//!  dialer                                   listener
//!    | -- "SWDP" | version u16 | frame(Intro) -->  |   handshake: magic, version, role, cluster
//!    | <-- "SWDP" | version u16 | frame(HelloReply) |   Accepted, Challenge or Rejected(reason)
//!    | -- frame(Proof) --> / <-- frame(HelloReply) |   with a shared secret (see `auth`)
//!    | == frame(message) ... both ways ==========>  |   u32 big-endian length + postcard body
//! ```
//!
//! A peer that does not start with the magic bytes, speaks another version, names another
//! cluster, sends a frame above the size limit, a truncated frame or bytes that do not decode, gets
//! a [`ProtocolError`]; the caller closes that one connection and carries on.

mod admin;
pub mod auth;
mod codec;
mod error;
// The handshake functions are public only as `crate::internals` (unstable).
pub(crate) mod handshake;
mod job_spec;
mod jobs;
mod message;
#[cfg(test)]
mod proptests;

pub use admin::{
    CheckpointStatus, ClientRequest, ClientResponse, ClusterStatus, ErrorKind, JobState, JobStatus,
    MovingPartition, WorkerStatus,
};
pub use auth::{Authenticated, KeyKind, ListenerKeys, SecretKey};
pub use codec::{MessageCodec, DEFAULT_MAX_FRAME_SIZE};
pub use error::ProtocolError;
#[cfg(test)]
pub(crate) use handshake::{accept_handshake, dial_handshake};
pub(crate) use handshake::{accept_handshake_with, dial_handshake_with, refuse_handshake};
pub use handshake::{Hello, HelloReply, Role, MAGIC, PROTOCOL_VERSION};
pub use job_spec::JobSpecWire;
pub use jobs::{JobEntry, SubmitJob, SubmittedJobState};
pub use message::{
    Adoption, CheckpointPlan, CoordinatorMessage, JobProgress, PartitionMove, PartitionOwner, PeerMessage,
    RegisterRequest, RestorePoint, WorkerMessage,
};
