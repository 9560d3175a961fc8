//! streamweave-distributed runs stream-processing jobs across many worker processes, with a
//! coordinator that manages them and keeps every partition owned by exactly one live worker while
//! workers crash, join and leave.
//!
//! # Layout
//!
//! ```text
//! protocol/         wire format: handshake, frames, messages (nothing else touches bytes)
//! network/          Transport (dial + handshake), ConnectionPool, typed Connection
//! coordinator/      engine/ (pure decisions, one file per concept) + assignment (pure planner)
//!                   + failure_detector + server (async shell) + commands (CoordinatorHandle)
//!                   + handle (CoordinatorImpl, the public API)
//! worker/           session (register, heartbeat, apply assignments, reconnect) + tasks
//!                   (one task per owned partition) + WorkerImpl
//! fault_tolerance/  RecoveryManager (uses the coordinator); re-exports FailureDetector
//! client            admin client used by `swd status | assign | rebalance`
//! ```
//!
//! Data flows: a worker dials the coordinator, registers, and receives `Assignment`s (the full set
//! of partitions it must run, tagged with a generation). It stops and starts one task per
//! partition accordingly and acknowledges; the coordinator only grants a revoked partition to its
//! new owner after that acknowledgement (or the old owner's death).

#![warn(missing_docs)]

/// The README's Rust examples compile (checked by `cargo test --doc`).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub mod checkpoint;
pub mod client;
pub mod coordinator;
pub mod dataflow;
mod error;
pub mod fault_tolerance;
pub mod network;
pub mod protocol;
mod types;
pub mod worker;

pub use client::{Client, ClientError};
pub use coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorHandle, CoordinatorImpl, RebalanceStrategy,
    RecoveryStrategy,
};
pub use error::ConfigError;
pub use fault_tolerance::FailureDetector;
pub use protocol::{ClusterStatus, WorkerStatus};
pub use types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};
pub use worker::{PartitionTask, Worker, WorkerConfig, WorkerError, WorkerImpl};
