//! The admin protocol: what `swd status`, `assign`, `rebalance` and `checkpoint` ask a
//! coordinator, and the status it answers with.
//!
//! ```text
//! client  --ClientRequest--> / <--ClientResponse--  status, assign, rebalance, fail-worker, checkpoint
//! ```

use serde::{Deserialize, Serialize};

use crate::types::{Generation, PartitionId, WorkerId, WorkerState};

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
    /// Stop the running job cleanly: a final checkpoint, its epoch made final by every sink,
    /// then the job's state is `stopped` (at once without checkpoints).
    StopJob,
    /// Submit a job to a cluster coordinator started without `--job` (`protocol/jobs.rs`).
    SubmitJob(Box<super::jobs::SubmitJob>),
    /// The submitted jobs.
    ListJobs,
    /// Cancel a submitted job: it ends at once, without a checkpoint.
    CancelJob {
        /// The job's id.
        id: String,
    },
    /// Stop a submitted job with a savepoint (its final checkpoint).
    StopSubmittedJob {
        /// The job's id.
        id: String,
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
    /// The request needs admin credentials the client did not prove.
    Forbidden,
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
    /// The answer to [`ClientRequest::StopJob`]: the job stops after this checkpoint (none:
    /// checkpoints are off, it stopped at once); the status's job state becomes `stopped`.
    Stopping {
        /// The final checkpoint.
        checkpoint: Option<u64>,
    },
    /// The answer to [`ClientRequest::SubmitJob`].
    JobSubmitted {
        /// The new job's id.
        id: String,
    },
    /// The answer to [`ClientRequest::ListJobs`], in submission order.
    Jobs(Vec<super::jobs::JobEntry>),
    /// The answer to [`ClientRequest::CancelJob`].
    JobCancelled {
        /// The job's id.
        id: String,
    },
    /// The answer to [`ClientRequest::StopSubmittedJob`]: the job stops after this savepoint;
    /// its state becomes `stopped` once the savepoint is committed.
    JobStopping {
        /// The savepoint, `<job id>:<checkpoint id>`.
        savepoint: String,
    },
    /// Any request to a standby coordinator (high availability): ask the leader instead.
    NotLeader {
        /// The leader's address, when the standby knows it.
        leader: Option<String>,
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
    /// let reason = status.unassigned_reason();
    /// assert_eq!(reason.as_deref(), Some("4 of 4 partitions unassigned: no worker has registered"));
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
    /// The bytes it wrote (with incremental checkpoints, the state that changed).
    pub last_size_bytes: Option<u64>,
    /// The bytes of state it refers to (written by it or by the checkpoints it builds on).
    #[serde(default)]
    pub state_bytes: Option<u64>,
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
    /// Stopped on request after a final checkpoint whose output every sink made final (or,
    /// without checkpoints, at once with nothing committed); a restart resumes from it.
    Stopped,
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
    /// While the job runs: how many records its sources are behind the end of their input (a
    /// log's lag), summed over the workers whose sources can tell; null when none can.
    #[serde(default)]
    pub lag: Option<u64>,
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
