//! The coordinator's decision logic: membership, failure detection, assignment and
//! rebalancing, as a synchronous state machine. It owns no socket and reads no clock: the
//! shell (`server.rs`) feeds it [`Input`]s with the current time and carries out the
//! [`Action`]s it returns.
//!
//! ```text
//!  Register / Heartbeat / Ack / Leave / Disconnected / Tick      admin: assign, rebalance, fail
//!            \                                                   /
//!             +---------------------> Engine <------------------+
//!                                       |  membership -> retarget (assignment::balanced)
//!                                       |  -> reconcile: owner table moves towards target
//!                                       v
//!             Send(conn, Assignment{generation, partitions}) / Close(conn) / Event(..) / Log(Note)
//! ```
//!
//! Ownership moves towards the target according to the strategy. `Immediate` swaps owners in
//! one generation. `Gradual` revokes one partition, waits for the old owner's ack (or its
//! death), grants it, waits for the new owner's ack, then starts the next. `Manual` revokes all
//! requested moves at once and grants each as soon as its old owner confirmed. A partition
//! without an owner whose target is a live worker with room (after a failure, a leave or a
//! confirmed revocation) is granted at once under every strategy.
//!
//! This file holds the state, the inputs and actions and the dispatch; the `impl Engine` blocks
//! that decide live one per concept:
//!
//! ```text
//! membership.rs  register, heartbeat, ack, disconnect, failure detection, departures
//! reconcile.rs   owner table -> target under the strategy; grants and revocations
//! admin.rs       register_worker, assign_partitions, rebalance, fail_worker, shutdown
//! status.rs      worker_info, status (what `swd status` shows)
//! job.rs         job attempts and checkpoints (JobControl, CheckpointTracker)
//! moves.rs       moving partitions with their state through a checkpoint barrier
//! note.rs        Note: what the engine logs, as an action the shell writes with `tracing`
//! tests/         tests by behaviour, judged by the actions emitted
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::assignment::Ownership;
use super::checkpoint_tracker::{CheckpointConfig, CheckpointTracker, PartitionSnapshot};
use super::failure_detector::FailureDetector;
use super::job_control::JobControl;
use super::CoordinatorConfig;
use crate::protocol::{CoordinatorMessage, JobProgress, JobState, RegisterRequest};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo};

mod admin;
pub use admin::{AdminAnswer, AdminRequest};
mod job;
mod membership;
mod moves;
mod note;
mod prepare;
pub use note::Note;
mod reconcile;
mod status;

#[cfg(test)]
mod tests;

/// Identifies one connection of the shell.
pub type ConnId = u64;

/// Something that happened, as the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A worker connection opened with this registration.
    Register {
        /// The connection.
        conn: ConnId,
        /// The registration.
        request: RegisterRequest,
    },
    /// A heartbeat arrived.
    Heartbeat {
        /// The connection.
        conn: ConnId,
        /// Partitions with a running task.
        running: Vec<PartitionId>,
    },
    /// A worker applied an assignment.
    Ack {
        /// The connection.
        conn: ConnId,
        /// The generation applied.
        generation: Generation,
        /// Partitions with a running task.
        running: Vec<PartitionId>,
    },
    /// A worker leaves gracefully (its tasks are already stopped).
    Leave {
        /// The connection.
        conn: ConnId,
    },
    /// A worker connection closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// The data port of run `incarnation` of `worker` refused a connection
    /// ([`Action::ProbeWorker`]): nothing listens there.
    PortRefused {
        /// The worker.
        worker: WorkerId,
        /// The run probed.
        incarnation: u64,
    },
    /// A worker's data connection to `peer` closed under it.
    PeerUnreachable {
        /// The reporting worker's connection.
        conn: ConnId,
        /// The peer it lost.
        peer: WorkerId,
    },
    /// A worker reported on the job.
    Job {
        /// The connection.
        conn: ConnId,
        /// The report.
        report: JobReport,
    },
    /// The shell wrote checkpoint `id`'s manifest, or could not (why).
    CheckpointWritten {
        /// The checkpoint.
        id: u64,
        /// `Ok` once the manifest is durable.
        result: Result<(), String>,
    },
    /// Time passed: check for failed workers.
    Tick,
    /// What checkpoint `id`'s manifest says it wrote and refers to (sent just before
    /// [`Input::CheckpointWritten`] when the commit succeeds), for status.
    CheckpointSizes {
        /// The checkpoint.
        id: u64,
        /// Bytes it wrote (with incremental state, the deltas).
        written_bytes: u64,
        /// Bytes of state it refers to (what a restore reads).
        state_bytes: u64,
    },
}

/// What a worker says about the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobReport {
    /// Progress of its tasks in an attempt (sent with heartbeats).
    Progress(JobProgress),
    /// A source partition read all its input.
    SourceDone {
        /// The attempt.
        attempt: u64,
        /// The partition.
        partition: PartitionId,
        /// Records read.
        records_in: u64,
    },
    /// A partition committed its output.
    PartitionDone {
        /// The attempt.
        attempt: u64,
        /// The partition.
        partition: PartitionId,
        /// Records written.
        records_out: u64,
    },
    /// A task failed.
    Failed {
        /// The attempt.
        attempt: u64,
        /// The partition whose task failed, if the failure belongs to one.
        partition: Option<PartitionId>,
        /// What went wrong.
        error: String,
        /// The checkpoint the task found damaged while restoring it, if that is the failure.
        damaged_checkpoint: Option<u64>,
        /// The peer worker the task could not reach, if that is the failure.
        unreachable_peer: Option<WorkerId>,
    },
    /// A partition snapshotted a checkpoint.
    CheckpointAck {
        /// The attempt.
        attempt: u64,
        /// The checkpoint.
        id: u64,
        /// The partition.
        partition: PartitionId,
        /// Its state file and where its source resumes.
        snapshot: PartitionSnapshot,
        /// A partition that left the reporting worker at this checkpoint: the sources that had
        /// ended before it (for its new owner).
        ended_sources: Vec<PartitionId>,
    },
    /// Partitions moving to the reporting worker: loaded ahead, or running again.
    MoveStatus {
        /// The attempt.
        attempt: u64,
        /// The checkpoint loaded, or moved through.
        checkpoint: u64,
        /// The partitions.
        partitions: Vec<PartitionId>,
        /// Where they stand.
        phase: crate::protocol::MovePhase,
    },
    /// These partitions' sinks committed their epochs up to `upto`.
    EpochsCommitted {
        /// The attempt.
        attempt: u64,
        /// The last epoch committed.
        upto: u64,
        /// The partitions.
        partitions: Vec<PartitionId>,
    },
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send a message on a connection.
    Send {
        /// The connection.
        conn: ConnId,
        /// The message.
        message: CoordinatorMessage,
    },
    /// Close a connection once what was sent before is written.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Record an event (log and event file).
    Event(ClusterEvent),
    /// Write a line to the operator's log.
    Log(Note),
    /// Write checkpoint `id`'s manifest (its files are in the store already, described by the
    /// snapshots), keep the newest `retain` checkpoints, and report back with
    /// [`Input::CheckpointWritten`]. Off the engine's thread, in order: a later checkpoint's
    /// manifest is never written before an earlier one's.
    WriteCheckpoint {
        /// The checkpoint.
        id: u64,
        /// The job attempt that took it.
        attempt: u64,
        /// Every partition's snapshot.
        snapshots: BTreeMap<PartitionId, PartitionSnapshot>,
        /// How many completed checkpoints to keep.
        retain: usize,
    },
    /// Dial `address`, the data port of run `incarnation` of `worker`, whose connection just
    /// closed; report a refusal with [`Input::PortRefused`] (anything else: nothing).
    ProbeWorker {
        /// The worker.
        worker: WorkerId,
        /// Its run.
        incarnation: u64,
        /// Its data address.
        address: String,
    },
}

/// A change of membership or ownership, for the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ClusterEvent {
    /// A worker became a member.
    Joined {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker left gracefully.
    Left {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker asked to leave while a checkpointed job runs: its partitions move away first.
    Leaving {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker was declared failed.
    Failed {
        /// The worker.
        worker: WorkerId,
    },
    /// A worker's old session was replaced by a new run of the same id.
    Fenced {
        /// The worker.
        worker: WorkerId,
    },
    /// A partition was given to a worker.
    Granted {
        /// The worker.
        worker: WorkerId,
        /// The partition.
        partition: PartitionId,
        /// The generation of the grant.
        generation: Generation,
    },
    /// A worker was told to stop a partition.
    Revoking {
        /// The worker.
        worker: WorkerId,
        /// The partition.
        partition: PartitionId,
        /// The generation of the revocation.
        generation: Generation,
    },
    /// A worker no longer runs a partition: it confirmed the stop, left, or failed.
    Released {
        /// The worker.
        worker: WorkerId,
        /// The partition.
        partition: PartitionId,
    },
    /// A partition moved to a new owner inside the running job attempt, carrying its state
    /// through a checkpoint.
    Moved {
        /// The partition.
        partition: PartitionId,
        /// The old owner.
        from: WorkerId,
        /// The new owner.
        to: WorkerId,
        /// The checkpoint it moved through.
        checkpoint: u64,
        /// From the checkpoint's trigger to the move (the partition's records wait meanwhile).
        duration_ms: u64,
    },
    /// A partition moved inside the running attempt runs again on its new owner: its state is
    /// restored (over what was loaded ahead, if it was).
    Resumed {
        /// The partition.
        partition: PartitionId,
        /// Its new owner.
        worker: WorkerId,
        /// The checkpoint it moved through.
        checkpoint: u64,
        /// From the move's barrier being triggered to this report: how long the partition's
        /// records waited.
        pause_ms: u64,
        /// How long its new owner took to load its state ahead of the barrier (none: it was not
        /// loaded ahead).
        preload_ms: Option<u64>,
    },
    /// A job attempt started on a stable assignment.
    JobStarted {
        /// The attempt.
        attempt: u64,
        /// The checkpoint it resumes from (none: the beginning).
        restored: Option<u64>,
    },
    /// A job attempt was stopped: finished, aborted for a restart, or the job failed.
    JobStopped {
        /// The attempt.
        attempt: u64,
        /// The job's state after it (`finished`, `restarting`, `failed`).
        state: JobState,
    },
}

#[derive(Clone, Debug)]
struct Entry {
    info: WorkerInfo,
    conn: Option<ConnId>,
    incarnation: u64,
    /// Partitions it reported running in its last ack or heartbeat, ascending.
    running: Vec<PartitionId>,
}

/// Why a worker stops being a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Departure {
    Left,
    /// No heartbeat within the timeout.
    TimedOut,
    /// Declared failed by an admin (`handle_worker_failure`).
    Declared,
    Fenced,
    /// A leaving worker whose connection closed before its partitions moved away (it stopped
    /// anyway, after its drain timeout): gone for good, so its partitions recover at once as
    /// after a failure, instead of every attempt failing on it until the heartbeat timeout.
    Abandoned,
    /// Its connection closed and a peer could not reach it or its data port refused the
    /// coordinator's probe (`membership.rs`): its process is gone, no need to wait for the
    /// heartbeat timeout.
    Unreachable,
}

impl Departure {
    fn is_failure(self) -> bool {
        matches!(
            self,
            Departure::TimedOut | Departure::Declared | Departure::Abandoned | Departure::Unreachable
        )
    }
}

/// The coordinator's state machine. See the module documentation.
#[derive(Debug)]
pub struct Engine {
    config: CoordinatorConfig,
    detector: FailureDetector,
    generation: Generation,
    workers: BTreeMap<WorkerId, Entry>,
    conns: BTreeMap<ConnId, WorkerId>,
    /// Who runs each partition as far as the coordinator has told.
    owner: Ownership,
    /// Where each partition should end up.
    target: Ownership,
    /// Partitions told to stop whose owner has not confirmed yet: (old owner, generation).
    revoking: BTreeMap<PartitionId, (WorkerId, Generation)>,
    /// Gradual and Manual: grants not yet acknowledged: (new owner, generation).
    granting: BTreeMap<PartitionId, (WorkerId, Generation)>,
    out: Vec<Action>,
    job: Option<JobControl>,
    /// The job's checkpoint bookkeeping, when checkpoints are on.
    checkpoints: Option<CheckpointTracker>,
    /// Partitions moving through a checkpoint while the job runs (`moves.rs`).
    moving: Option<moves::Move>,
    /// What moves remember beyond the one under way (`moves.rs`).
    move_book: prepare::MoveBook,
    /// Members a peer reported unreachable while their connection was still open: (when, who
    /// reported). Should the connection close within a heartbeat timeout, they depart at once.
    unreachable: BTreeMap<WorkerId, (Instant, WorkerId)>,
    /// What members that failed owned when they did: a worker that comes back takes those
    /// partitions back first (`membership.rs`, `join`).
    former: BTreeMap<WorkerId, Vec<PartitionId>>,
}

impl Engine {
    /// A coordinator with no workers; every partition unassigned.
    pub fn new(config: CoordinatorConfig) -> Self {
        let p = config.num_partitions;
        let job = config
            .job
            .clone()
            .map(|spec| JobControl::new(spec, p, config.max_job_restarts));
        let checkpoints = match (&job, config.checkpoint_interval) {
            (Some(_), Some(interval)) => Some(CheckpointTracker::new(
                CheckpointConfig {
                    interval,
                    timeout: config.checkpoint_timeout,
                    retain: config.checkpoint_retain,
                    tolerable_failures: config.tolerable_checkpoint_failures,
                },
                p,
            )),
            _ => None,
        };
        // With checkpoints, the final output is committed in two phases like every epoch.
        let job = job.map(|j| j.with_final_commit(checkpoints.is_some()));
        Engine {
            detector: FailureDetector::new(config.heartbeat_timeout),
            config,
            generation: Generation::default(),
            workers: BTreeMap::new(),
            conns: BTreeMap::new(),
            owner: vec![None; p],
            target: vec![None; p],
            revoking: BTreeMap::new(),
            granting: BTreeMap::new(),
            out: Vec::new(),
            checkpoints,
            job,
            moving: None,
            move_book: prepare::MoveBook::default(),
            unreachable: BTreeMap::new(),
            former: BTreeMap::new(),
        }
    }

    /// The job's name, when the coordinator runs one.
    pub fn job_name(&self) -> Option<String> {
        self.job.as_ref().map(|j| j.spec().name.clone())
    }

    /// The number of partitions.
    pub fn num_partitions(&self) -> usize {
        self.config.num_partitions
    }

    /// The current generation.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The owner of each partition.
    pub fn ownership(&self) -> &Ownership {
        &self.owner
    }

    /// Handles one input at time `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        match input {
            Input::Register { conn, request } => self.on_register(conn, request, now),
            Input::Heartbeat { conn, running } => self.on_heartbeat(conn, running, now),
            Input::Job { conn, report } => self.on_job_report(conn, report, now),
            Input::CheckpointWritten { id, result } => self.on_checkpoint_written(id, result, now),
            Input::CheckpointSizes {
                id,
                written_bytes,
                state_bytes,
            } => {
                if let Some(c) = self.checkpoints.as_mut() {
                    c.sizes(crate::checkpoint::CheckpointId(id), written_bytes, state_bytes);
                }
            }
            Input::Ack {
                conn,
                generation,
                running,
            } => self.on_ack(conn, generation, running, now),
            Input::Leave { conn } => {
                if let Some(id) = self.conns.get(&conn).cloned() {
                    self.on_leave(&id, now);
                }
            }
            Input::Disconnected { conn } => self.on_disconnected(conn, now),
            Input::PortRefused { worker, incarnation } => self.on_port_refused(&worker, incarnation, now),
            Input::PeerUnreachable { conn, peer } => {
                if let Some(reporter) = self.conns.get(&conn).cloned() {
                    self.on_peer_unreachable(&reporter, peer, now);
                }
            }
            Input::Tick => {
                self.detect_failures(now);
                self.tick_checkpoints(now);
            }
        }
        self.take_out(now)
    }

    /// Drives the job after a change and hands the actions over.
    pub(super) fn take_out(&mut self, now: Instant) -> Vec<Action> {
        self.finish_leaves(now);
        self.drive_job(now);
        std::mem::take(&mut self.out)
    }
}

fn sorted(mut partitions: Vec<PartitionId>) -> Vec<PartitionId> {
    partitions.sort_unstable();
    partitions.dedup();
    partitions
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
