//! The messages exchanged after the handshake, one enum per direction and role.
//!
//! ```text
//! worker  --Register-->        coordinator   (first message of a worker connection)
//! worker  <--Registered|RegistrationRefused--
//! worker  <--Assignment{generation, partitions}--   the full set the worker must own
//! worker  --Ack{generation, running}-->             once tasks are stopped/started accordingly
//! worker  --Heartbeat{running}-->                   every heartbeat_interval
//! worker  --Leave--> / <--LeaveAck--                graceful shutdown
//! worker  <--Shutdown--                             the coordinator is stopping, or failed us
//! worker  <--Fenced--                               a newer run of this id replaced us: exit
//! client  --ClientRequest--> / <--ClientResponse--  status, assign, rebalance, fail-worker
//! ```

use serde::{Deserialize, Serialize};

use crate::types::{Generation, PartitionId, WorkerId, WorkerState};

/// A worker's registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// The worker's id.
    pub worker_id: WorkerId,
    /// Orders runs of the same worker id (start time): a reconnect of the same run keeps its
    /// session, a later run (after a crash) replaces and fences the old one, an earlier run is
    /// refused.
    pub incarnation: u64,
    /// The worker's data-plane address.
    pub address: String,
    /// `max_concurrent_tasks`.
    pub capacity: usize,
    /// Partitions the worker asks for (honoured when free): its configured
    /// `assigned_partitions`, or what it was running before a reconnect.
    pub requested: Vec<PartitionId>,
}

/// Worker to coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkerMessage {
    /// Join the cluster (first message on a worker connection).
    Register(RegisterRequest),
    /// Still alive; the partitions whose tasks are running.
    Heartbeat {
        /// Partitions with a running task.
        running: Vec<PartitionId>,
    },
    /// The worker applied the assignment of `generation`: these tasks are running, all others
    /// are stopped.
    Ack {
        /// The generation applied.
        generation: Generation,
        /// Partitions with a running task.
        running: Vec<PartitionId>,
    },
    /// Graceful leave: move my partitions now.
    Leave,
}

/// Coordinator to worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CoordinatorMessage {
    /// Registration accepted.
    Registered {
        /// The cluster's generation at the time.
        generation: Generation,
        /// The number of partitions of the job.
        num_partitions: usize,
        /// After this long without reaching the coordinator, the worker must assume it was
        /// declared failed and stop its tasks.
        heartbeat_timeout_ms: u64,
    },
    /// Registration refused, with the reason (for example the `max_workers` limit).
    RegistrationRefused {
        /// Why.
        reason: String,
    },
    /// The full set of partitions this worker must own as of `generation`.
    Assignment {
        /// The generation of this assignment.
        generation: Generation,
        /// The partitions, ascending.
        partitions: Vec<PartitionId>,
    },
    /// The graceful leave is done; the worker may exit.
    LeaveAck,
    /// The coordinator is shutting down, or declared this worker failed: stop all tasks, then
    /// register again.
    Shutdown {
        /// Why.
        reason: String,
    },
    /// A newer run of this worker id replaced this one: stop all tasks and do not come back.
    Fenced {
        /// Why.
        reason: String,
    },
}

/// Admin client to coordinator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// The cluster's status.
    Status,
    /// Give `partitions` to `worker` (moving them from their owners).
    Assign {
        /// The worker.
        worker: WorkerId,
        /// The partitions.
        partitions: Vec<PartitionId>,
    },
    /// Recompute a balanced assignment and move towards it.
    Rebalance,
    /// Treat the worker as failed.
    FailWorker {
        /// The worker.
        worker: WorkerId,
    },
}

/// Which coordinator error a request met, so the client can rebuild a typed error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// `CoordinatorError::WorkerNotFound`.
    WorkerNotFound,
    /// `CoordinatorError::InvalidPartition`.
    InvalidPartition,
    /// `CoordinatorError::RebalanceFailed`.
    RebalanceFailed,
    /// Anything else.
    Other,
}

/// Coordinator to admin client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientResponse {
    /// The answer to [`ClientRequest::Status`].
    Status(ClusterStatus),
    /// The request was carried out (moves may still be in progress; watch the status).
    Done {
        /// The generation after the request.
        generation: Generation,
    },
    /// The request was refused.
    Error {
        /// Which error.
        kind: ErrorKind,
        /// The error's message.
        message: String,
    },
}

/// A snapshot of the cluster, as `swd status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// The current generation.
    pub generation: Generation,
    /// The number of partitions `P`.
    pub partitions: usize,
    /// The rebalance strategy (`immediate`, `gradual`, `manual`).
    pub strategy: String,
    /// Partitions without an owner, ascending.
    pub unassigned: Vec<PartitionId>,
    /// Partitions being moved between workers.
    pub moving: Vec<MovingPartition>,
    /// Member workers, by id.
    pub workers: Vec<WorkerStatus>,
}

/// One partition in the middle of a move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovingPartition {
    /// The partition.
    pub partition: PartitionId,
    /// Its previous owner.
    pub from: WorkerId,
    /// Its next owner, when known.
    pub to: Option<WorkerId>,
}

/// One worker in a [`ClusterStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// The worker's id.
    pub id: WorkerId,
    /// Its data-plane address.
    pub address: String,
    /// Its state.
    pub state: WorkerState,
    /// Whether it has been heard from within the heartbeat timeout.
    pub healthy: bool,
    /// Partitions assigned to it, ascending.
    pub partitions: Vec<PartitionId>,
    /// Its `max_concurrent_tasks`.
    pub capacity: usize,
    /// Tasks it reported running.
    pub load: usize,
    /// Milliseconds since it was last heard from.
    pub last_heartbeat_ms: u64,
}
