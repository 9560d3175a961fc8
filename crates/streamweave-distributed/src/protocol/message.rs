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
//! (admin clients: admin.rs)
//! ```

use serde::{Deserialize, Serialize};

use super::job_spec::JobSpecWire;
use crate::types::{Generation, PartitionId, WorkerId};

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
    /// Records its source partitions are behind the end of their input (a log's lag), summed
    /// over the partitions whose source can tell; `None` if none can.
    pub lag: Option<u64>,
}

/// How a job attempt checkpoints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPlan {
    /// The checkpoint store's URL: `s3://bucket/prefix` (every worker reaches it), a path (one
    /// machine or a shared file system), or `memory://` (one process). Named for its first use,
    /// a directory, which is still a valid value: the wire layout is unchanged.
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
        /// A partition that left this worker at this barrier: the source partitions that had
        /// ended before it, as its receiver counted them (their end-of-stream went here, so
        /// the new owner must count them ended). Empty otherwise.
        ended_sources: Vec<PartitionId>,
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
        /// The checkpoint the task was restoring, when the failure is that the checkpoint is
        /// damaged (a state file missing or corrupt): the coordinator then restores an older
        /// one instead of retrying this one.
        damaged_checkpoint: Option<u64>,
        /// The peer worker the task could not reach (connecting, or its connection closed),
        /// when that is the failure: with that worker's own connection to the coordinator
        /// closed as well, the coordinator declares it failed at once.
        unreachable_peer: Option<WorkerId>,
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
    /// The data connection to worker `peer` closed (the peer ended it, or it broke) while this
    /// worker kept it: evidence that `peer` is gone, which the coordinator weighs with `peer`'s
    /// own connection to it (see the engine's `on_peer_unreachable`).
    PeerUnreachable {
        /// The peer.
        peer: WorkerId,
    },
    /// Partitions moving here inside attempt `attempt`: where each stands (see [`MovePhase`]).
    MoveStatus {
        /// The attempt.
        attempt: u64,
        /// The checkpoint: the one preloaded ([`MovePhase::Preloaded`], [`MovePhase::PreloadFailed`]),
        /// or the one the partitions moved through ([`MovePhase::Resumed`]).
        checkpoint: u64,
        /// The partitions.
        partitions: Vec<PartitionId>,
        /// Where they stand.
        phase: MovePhase,
    },
}

/// Where partitions moving to a worker stand, in [`WorkerMessage::MoveStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MovePhase {
    /// Their state as of the checkpoint is loaded (their old owner still runs them): the move's
    /// barrier may come.
    Preloaded,
    /// Their state could not be loaded: the move is abandoned.
    PreloadFailed,
    /// They were adopted at the checkpoint and run here again (their pause is over).
    Resumed,
}

/// A partition whose state a worker loads ahead of its move there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preload {
    /// The partition.
    pub partition: PartitionId,
    /// Its state file in the checkpoint.
    pub state_file: String,
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
        /// Partitions whose new owners are loading their state ahead of a move: their owners
        /// write a delta at this barrier whatever compaction would say, so that what is being
        /// loaded stays a prefix of the chain (a new base would make the move load it all again).
        keep_chains: Vec<usize>,
    },
    /// These partitions moved here through checkpoint `checkpoint`, and their old owners have
    /// stored their state in it: restore each from it and run its receiver and (unless
    /// exhausted) its source within the running attempt. Sent as soon as a partition's
    /// acknowledgement arrives, possibly before the checkpoint is committed: its sink's epoch
    /// `checkpoint` is then made final by [`CoordinatorMessage::CommitEpochs`], and if the
    /// checkpoint is never committed the attempt restarts from the previous one.
    AdoptPartitions {
        /// The attempt.
        attempt: u64,
        /// The checkpoint the partitions moved through.
        checkpoint: u64,
        /// The partitions and what each restores.
        partitions: Vec<Adoption>,
        /// Source partitions that had ended before the barrier: their end-of-stream went to
        /// the old owners, so the new receivers count them as ended.
        ended_sources: Vec<PartitionId>,
    },
    /// Partitions about to move here inside the running attempt: load their state from committed
    /// checkpoint `checkpoint` while their owners go on running them, then report
    /// [`MovePhase::Preloaded`] (the move's barrier follows; its adoption then applies only the
    /// deltas since `checkpoint`).
    PreparePartitions {
        /// The attempt.
        attempt: u64,
        /// The committed checkpoint to load.
        checkpoint: u64,
        /// The partitions and their state files in it.
        partitions: Vec<Preload>,
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
    /// The answer to every heartbeat: the coordinator is alive and reads this connection. A
    /// worker that hears nothing for twice the heartbeat timeout drops the connection and looks for
    /// a coordinator again (a paused leader says nothing; a standby may lead by then).
    HeartbeatAck,
    /// Registration refused by a standby coordinator (high availability): register with the
    /// leader instead.
    NotLeader {
        /// The leader's address, when the standby knows it.
        leader: Option<String>,
    },
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
    /// The receiver of `partition` consumed `credits` batches of source partition `from`: that
    /// source may send as many more (credits are per channel, one source to one partition).
    Credit {
        /// The job attempt.
        attempt: u64,
        /// The partition.
        partition: u32,
        /// The source partition whose batches were consumed.
        from: u32,
        /// How many.
        credits: u32,
    },
}
