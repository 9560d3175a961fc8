//! streamweave-distributed runs stream-processing jobs across many worker processes, with a
//! coordinator that manages them and keeps every partition owned by exactly one live worker while
//! workers crash, join and leave.
//!
//! # Public API
//!
//! Everything a user needs is at the crate root:
//!
//! - **Job authors**: [`Stream`] (build a job: source, operators, one exchange, sink), [`Job`],
//!   [`JobSpec`], [`JobRegistry`]; the partitioners [`HashPartitioner`], [`RangePartitioner`],
//!   [`RoundRobinPartitioner`], [`BroadcastPartitioner`] and the [`Partitioner`] trait; the
//!   sources [`TextDirSource`], [`CollectionSource`], [`GeneratorSource`], [`Throttled`] and the
//!   sinks [`TextDirSink`], [`StdoutSink`], [`CollectorSink`] (the [`Source`] and [`Sink`] traits
//!   for your own).
//! - **Operators**: [`CoordinatorImpl`] / [`CoordinatorConfig`] / [`Coordinator`],
//!   [`WorkerImpl`] / [`WorkerConfig`] / [`Worker`], the admin [`Client`], [`RecoveryManager`],
//!   [`FailureDetector`], and the status types ([`ClusterStatus`], [`JobStatus`]).
//!
//! The modules hold the rest: [`dataflow`] (operators' types, built-in jobs), [`checkpoint`]
//! (checkpoint stores), [`protocol`] (wire messages), [`network`] (transport). [`internals`]
//! exposes the decision internals for tools and tests; it is unstable.
//!
//! # Layout
//!
//! ```text
//! protocol/         wire format: handshake, frames, messages (nothing else touches bytes)
//! network/          Transport (dial + handshake), ConnectionPool (a limit), typed Connection
//! coordinator/      engine/ (pure decisions, one file per concept) + assignment (pure planner)
//!                   + failure_detector + server (async shell) + commands (CoordinatorHandle)
//!                   + api (the Coordinator trait) + handle (CoordinatorImpl)
//! worker/           session_core (pure decisions) + session (register, heartbeat, apply
//!                   assignments, reconnect) + partition_tasks (one task per owned partition)
//!                   + job_runner_core (pure attempt lifecycle) + job_runner (its shell)
//!                   + checkpointing (pure) + checkpoint_actor + job_tasks (a job's work)
//!                   + WorkerImpl
//! dataflow/         Stream, partitioners, sources, sinks (files or object storage), JobRegistry
//! checkpoint/       checkpoint stores (local directory, memory, object storage) and restore
//! storage/          storage URLs (path, file://, s3://, memory://) opened as object stores
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
pub mod ha;
pub mod network;
pub mod observe;
pub mod protocol;
pub mod security;
pub mod storage;
mod types;
pub mod worker;

// The public API: what a job author (streams, partitioners, sources, sinks, the registry) and an
// operator (coordinator, worker, client, recovery) use, all at the crate root. The modules stay
// public for the rest (checkpoint stores, wire types, network); decision internals are only in
// `internals`.
pub use client::{Client, ClientError};
pub use coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorHandle, CoordinatorImpl, RebalanceStrategy,
    RecoveryStrategy,
};
pub use dataflow::sinks::{CollectorSink, StdoutSink, TextDirSink};
pub use dataflow::sources::{CollectionSource, GeneratorSource, TextDirSource, Throttled};
pub use dataflow::{
    BroadcastPartitioner, DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, KeyedStream,
    Partitioner, RangePartitioner, RoundRobinPartitioner, Sink, Source, Stream,
};
pub use error::ConfigError;
pub use fault_tolerance::{FailureDetector, RecoveryManager};
pub use protocol::{ClusterStatus, JobState, JobStatus, WorkerStatus};
pub use types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};
pub use worker::{Worker, WorkerConfig, WorkerError, WorkerImpl};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry points for the fuzz targets in `fuzz/` (see `fuzz/README.md`): the decoders that are
    //! not reachable through the public API. **Not part of the API**: hidden from the
    //! documentation, changed without notice.
    //!
    //! Everything else the targets need is public already: the frame codec and the message
    //! enums ([`crate::protocol`]), the handshake ([`crate::internals`]), the checkpoint store
    //! and manifest ([`crate::checkpoint`]).

    /// Frames a checkpoint file (magic, version, length, crc32, payload), as every store does,
    /// so that a target can reach the decoder behind a valid checksum.
    pub use crate::checkpoint::frame::frame as frame_checkpoint_file;
    /// Reads a partition's share of text input (its splits, in order) from an offset: the line
    /// splitting of [`TextDirSource`](crate::TextDirSource) and the object-storage text source,
    /// over any seekable bytes.
    pub use crate::dataflow::sources::text_dir::reader::read_share as read_text_share;
}

pub mod internals {
    //! Decision internals, for tools and tests that drive them directly. **Unstable**: these
    //! change with the implementation, without notice; a user's job or cluster never needs them.
    //!
    //! The coordinator's pure decision core ([`engine`]), its partition planner
    //! ([`assignment`]), its job-attempt and checkpoint bookkeeping ([`job_control`],
    //! [`checkpoint_tracker`]), the job's type-erased execution plan ([`plan`]) and the two
    //! halves of the protocol handshake ([`dial_handshake`], [`accept_handshake`], and with
    //! secrets [`dial_handshake_with`], [`accept_handshake_with`]).

    pub use crate::protocol::handshake::{
        accept_handshake, accept_handshake_with, dial_handshake, dial_handshake_with,
    };

    /// The coordinator's decision core: a synchronous state machine, inputs and `now` in, actions out.
    pub mod engine {
        pub use crate::coordinator::engine::*;
    }

    /// Partition assignment: the pure planner (balanced, sticky, capacity-aware).
    pub mod assignment {
        pub use crate::coordinator::assignment::*;
    }

    /// Job attempts: starting, restarting and numbering them.
    pub mod job_control {
        pub use crate::coordinator::job_control::*;
    }

    /// The coordinator's checkpoint bookkeeping: when to trigger, what is in flight, what to commit.
    pub mod checkpoint_tracker {
        pub use crate::coordinator::checkpoint_tracker::*;
    }

    /// A job's type-erased execution plan, as the worker runs it.
    pub mod plan {
        pub use crate::dataflow::plan::*;
    }
}
