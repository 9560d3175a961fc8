//! What the engine has to say beyond its events: notes for the operator's log. The engine
//! returns them as [`Action::Log`](super::Action::Log) and never logs itself; the shell turns
//! each into one `tracing` line (`server.rs`), and tests assert on them like any other action.

use crate::types::{PartitionId, WorkerId};

/// A line for the operator's log, as the engine decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A worker asked to leave while a checkpointed job runs (info).
    WorkerLeaving {
        /// The worker.
        worker: WorkerId,
        /// How many partitions it owns.
        partitions: usize,
    },
    /// A partition starts moving through a checkpoint (info).
    MovingPartition {
        /// The partition.
        partition: PartitionId,
        /// Its owner.
        from: WorkerId,
        /// Its new owner.
        to: WorkerId,
    },
    /// The new owners of a move load the partitions' state from a committed checkpoint
    /// before its barrier (info).
    PreparingMove {
        /// The partitions.
        partitions: Vec<PartitionId>,
        /// The checkpoint they load.
        checkpoint: u64,
    },
    /// A move was abandoned before its barrier (its new owner failed to load the state, took
    /// too long, or went): the old owners keep the partitions, the move is planned again later
    /// (warning).
    MoveAbandoned {
        /// Why.
        reason: String,
    },
    /// A partition move failed; the job restarts from the last checkpoint (warning).
    MoveFailed {
        /// Why.
        reason: String,
    },
    /// A worker reported a failed job task (warning).
    TaskFailed {
        /// The worker.
        worker: WorkerId,
        /// The attempt.
        attempt: u64,
        /// The partition, if the failure belongs to one.
        partition: Option<PartitionId>,
        /// What went wrong.
        error: String,
    },
    /// A checkpoint's manifest could not be written (warning).
    CheckpointNotWritten {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        error: String,
    },
    /// A checkpoint was aborted (info).
    CheckpointAborted {
        /// The checkpoint.
        checkpoint: u64,
        /// Why.
        reason: String,
    },
    /// A worker found a committed checkpoint damaged when it read its state: the next attempt
    /// restores an older one (warning).
    CheckpointDamaged {
        /// The checkpoint.
        checkpoint: u64,
        /// What the worker found.
        error: String,
    },
    /// A worker whose connection to the coordinator closed was also reported unreachable by a
    /// peer: declared failed at once, without waiting for the heartbeat timeout (warning).
    WorkerUnreachable {
        /// The worker.
        worker: WorkerId,
        /// The peer that could not reach it.
        reporter: WorkerId,
    },
    /// A worker whose connection to the coordinator closed refused the coordinator's probe of
    /// its data port (nothing listens there): declared failed at once (warning).
    WorkerPortClosed {
        /// The worker.
        worker: WorkerId,
    },
    /// Too many checkpoints timed out: the attempt fails (warning).
    FailingAttempt {
        /// The attempt.
        attempt: u64,
        /// Why.
        reason: String,
    },
}
