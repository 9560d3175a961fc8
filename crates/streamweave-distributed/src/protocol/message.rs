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
//! client  --ClientRequest--> / <--ClientResponse--  status, assign, rebalance, fail-worker, checkpoint
//! ```

use serde::{Deserialize, Serialize};

use super::job_spec::JobSpecWire;
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
    /// The jobs this worker's binary can build; a coordinator running another job refuses it.
    pub jobs: Vec<String>,
}

/// A worker's progress on the current job attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    /// The attempt.
    pub attempt: u64,
    /// Records its source tasks have read in this attempt.
    pub records_in: u64,
    /// Records its sinks have committed in this attempt.
    pub records_out: u64,
}

/// How a job attempt checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPlan {
    /// The checkpoint store's directory (shared by the workers: one machine or a shared file
    /// system).
    pub store_dir: String,
    /// The checkpoint to restore, if any: recovery resumes from it instead of the beginning.
    pub restore: Option<RestorePoint>,
}

/// What each partition restores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePoint {
    /// The checkpoint.
    pub id: u64,
    /// By partition: the state file in the checkpoint and the source offset to resume from.
    pub partitions: Vec<(String, u64)>,
    /// By partition: the records its source had read by the checkpoint (the count goes on).
    pub source_records: Vec<u64>,
}

/// Where partition `p`'s task of a job attempt runs: index `p` of [`CoordinatorMessage::StartJob`]'s
/// `owners`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOwner {
    /// The worker.
    pub worker: WorkerId,
    /// Its data-plane address.
    pub address: String,
}

/// A partition changing owner at a checkpoint barrier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    /// The partition.
    pub partition: PartitionId,
    /// Its new owner.
    pub to: PartitionOwner,
}

/// A partition a worker takes over inside a running attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adoption {
    /// The partition.
    pub partition: PartitionId,
    /// Its state file in the checkpoint.
    pub state_file: String,
    /// Where its source resumes.
    pub source_offset: u64,
    /// Whether its source had read everything (then it does not run again).
    pub source_exhausted: bool,
    /// The records its source had read (its count goes on from there).
    pub source_records: u64,
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
        /// Progress on the current job attempt, if one runs here.
        job: Option<JobProgress>,
    },
    /// A source partition of a job attempt has read all its input and sent it on.
    SourceDone {
        /// The attempt.
        attempt: u64,
        /// The source partition.
        partition: PartitionId,
        /// Records it read.
        records_in: u64,
    },
    /// A partition of a job attempt is complete: its sink committed.
    PartitionDone {
        /// The attempt.
        attempt: u64,
        /// The partition.
        partition: PartitionId,
        /// Records its sink wrote.
        records_out: u64,
    },
    /// Partition `partition` of attempt `attempt` has snapshotted checkpoint `id`: its state
    /// is in the store and its source will resume from `source_offset`.
    CheckpointAck {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        id: u64,
        /// The partition.
        partition: PartitionId,
        /// The state file's name in the checkpoint.
        state_file: String,
        /// Its size.
        state_bytes: u64,
        /// The crc32 of its bytes, as stored: the coordinator commits the checkpoint with it
        /// without reading the file.
        state_crc32: u32,
        /// Where the partition's source resumes.
        source_offset: u64,
        /// Whether the partition's source had read all its input at the barrier (it sent its
        /// end-of-stream instead of the barrier).
        source_exhausted: bool,
        /// The records the partition's source had read by the barrier, over the whole job.
        source_records: u64,
    },
    /// The sinks of these partitions committed their epochs up to `upto`.
    EpochsCommitted {
        /// The attempt.
        attempt: u64,
        /// The last epoch committed.
        upto: u64,
        /// The partitions.
        partitions: Vec<PartitionId>,
    },
    /// A task of a job attempt failed.
    JobFailed {
        /// The attempt.
        attempt: u64,
        /// The partition, when one task failed (none: the attempt could not start here).
        partition: Option<PartitionId>,
        /// What went wrong.
        error: String,
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
    /// Run attempt `attempt` of a job: the worker runs the tasks of the partitions `owners` says
    /// it owns, and exchanges records with the other owners directly.
    StartJob {
        /// The attempt (it grows with every restart).
        attempt: u64,
        /// The job.
        spec: JobSpecWire,
        /// Owner of each partition, by partition.
        owners: Vec<PartitionOwner>,
        /// With checkpoints: where they are stored and what to restore.
        checkpoints: Option<CheckpointPlan>,
    },
    /// Take checkpoint `id` of attempt `attempt`: sources stop at a barrier, receivers align
    /// and snapshot.
    TriggerCheckpoint {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        id: u64,
        /// Partitions that change owner at this barrier: every source routes their records to
        /// the new owner from its barrier on; the old owner snapshots them at the barrier and
        /// stops them. Empty for a plain checkpoint.
        moves: Vec<PartitionMove>,
    },
    /// Checkpoint `checkpoint`, which moved these partitions here, is committed: restore each
    /// from it and run its receiver and (unless exhausted) its source within the running attempt.
    AdoptPartitions {
        /// The attempt.
        attempt: u64,
        /// The checkpoint the partitions moved through.
        checkpoint: u64,
        /// The partitions and what each restores.
        partitions: Vec<Adoption>,
        /// Source partitions that had ended at the barrier: their end-of-stream went to the
        /// old owners, so the new receivers count them as ended.
        ended_sources: Vec<PartitionId>,
    },
    /// Checkpoint `upto` is durable: make the sinks' epochs up to it final (phase two).
    CommitEpochs {
        /// The attempt.
        attempt: u64,
        /// The last epoch to commit (`u64::MAX`: the final output at the end of the job).
        upto: u64,
    },
    /// Stop the tasks of this attempt (and any older one).
    StopJob {
        /// The attempt.
        attempt: u64,
    },
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
    /// Take a checkpoint of the running job now (`swd local` does before it stops a job); the
    /// answer names it, and the status shows when it is committed.
    Checkpoint,
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
    Status(Box<ClusterStatus>),
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
    /// The answer to [`ClientRequest::Checkpoint`]: the checkpoint triggered (or the one already
    /// in flight); it is committed once the status's `last_completed` reaches it.
    CheckpointTriggered {
        /// The checkpoint's id.
        id: u64,
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
    /// The job, when the coordinator runs one.
    pub job: Option<JobStatus>,
    /// Checkpoints, when they are on.
    pub checkpoints: Option<CheckpointStatus>,
}

impl ClusterStatus {
    /// Why partitions have no owner, when some have none: a job waits until every partition is
    /// owned, so this is what a user needs to see while it waits.
    ///
    /// ```
    /// use streamweave_distributed::protocol::ClusterStatus;
    /// use streamweave_distributed::Generation;
    /// let status = ClusterStatus {
    ///     cluster: "default".into(), generation: Generation(1), partitions: 4, strategy: "gradual".into(),
    ///     unassigned: vec![0, 1, 2, 3], moving: vec![], workers: vec![], job: None, checkpoints: None,
    /// };
    /// assert_eq!(status.unassigned_reason().as_deref(), Some("4 of 4 partitions unassigned: no worker has registered"));
    /// ```
    pub fn unassigned_reason(&self) -> Option<String> {
        if self.unassigned.is_empty() {
            return None;
        }
        let head = format!(
            "{} of {} partitions unassigned",
            self.unassigned.len(),
            self.partitions
        );
        let placeable: Vec<&WorkerStatus> = self
            .workers
            .iter()
            .filter(|w| w.state == crate::types::WorkerState::Active)
            .collect();
        if placeable.is_empty() {
            return Some(format!("{head}: no worker has registered"));
        }
        let capacity: usize = placeable.iter().map(|w| w.capacity).sum();
        if capacity < self.partitions {
            return Some(format!(
                "{head}: the {} workers can run {capacity} partitions in all (their --max-tasks); \
                 add workers or raise --max-tasks",
                placeable.len()
            ));
        }
        Some(format!(
            "{head}: waiting to be placed (rebalance strategy {})",
            self.strategy
        ))
    }
}

/// The checkpoints in a [`ClusterStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStatus {
    /// Checkpoints completed (durably committed) so far.
    pub completed: u64,
    /// The newest completed checkpoint.
    pub last_completed: Option<u64>,
    /// How long it took from trigger to the last acknowledgement.
    pub last_duration_ms: Option<u64>,
    /// Its size (the partitions' state).
    pub last_size_bytes: Option<u64>,
    /// The checkpoint triggered and not yet complete, if any.
    pub in_flight: Option<u64>,
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for workers to own every partition before the first attempt.
    Waiting,
    /// An attempt is running.
    Running,
    /// An attempt was aborted (a worker failed or the assignment changed); the next starts once
    /// every partition has an owner again.
    Restarting,
    /// Every partition committed its output.
    Finished,
    /// Too many attempts failed.
    Failed,
}

/// The job in a [`ClusterStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Its state.
    pub state: JobState,
    /// The current attempt (0 before the first).
    pub attempt: u64,
    /// Attempts aborted so far.
    pub restarts: u64,
    /// Records read by the sources in the current attempt.
    pub records_in: u64,
    /// Records committed by the sinks in the current attempt.
    pub records_out: u64,
    /// Partitions whose output is committed in the current attempt.
    pub partitions_done: usize,
    /// Milliseconds since the first attempt started, frozen when the job ends.
    pub elapsed_ms: u64,
    /// Why the job failed, or why the last attempt was aborted.
    pub error: Option<String>,
    /// The checkpoint the current attempt resumed from (null: from the beginning).
    pub last_restored_checkpoint: Option<u64>,
    /// Milliseconds from the last abort (a failure detected, a task failed, partitions moved) to
    /// the start of the next attempt; null before any.
    pub last_recovery_ms: Option<u64>,
    /// The job's output, as given.
    pub output: Option<String>,
}

/// Worker to worker, on the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    /// First message of a data connection: who is dialing.
    Hello {
        /// The dialing worker.
        worker: WorkerId,
    },
    /// Records for partition `partition` (a postcard-encoded `Vec` of the job's exchange type).
    Batch {
        /// The job attempt; batches of older attempts are dropped.
        attempt: u64,
        /// The destination partition.
        partition: u32,
        /// The source partition that sent them (for barrier alignment).
        from: u32,
        /// The encoded records.
        #[serde(with = "serde_bytes")]
        records: Vec<u8>,
    },
    /// Source partition `from` has sent everything before checkpoint barrier `id`.
    Barrier {
        /// The job attempt.
        attempt: u64,
        /// The checkpoint.
        id: u64,
        /// The destination partition.
        partition: u32,
        /// The source partition.
        from: u32,
    },
    /// Source partition `from` has sent everything it will send to `partition`.
    EndOfStream {
        /// The job attempt.
        attempt: u64,
        /// The destination partition.
        partition: u32,
        /// The source partition that ended.
        from: u32,
    },
    /// The receiver of `partition` consumed `credits` batches: the sender may send as many more.
    Credit {
        /// The job attempt.
        attempt: u64,
        /// The partition.
        partition: u32,
        /// How many.
        credits: u32,
    },
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
