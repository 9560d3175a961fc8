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
//!             Send(conn, Assignment{generation, partitions}) / Close(conn) / Event(..)
//! ```
//!
//! Ownership moves towards the target according to the strategy. `Immediate` swaps owners in
//! one generation. `Gradual` revokes one partition, waits for the old owner's ack (or its
//! death), grants it, waits for the new owner's ack, then starts the next. `Manual` revokes all
//! requested moves at once and grants each as soon as its old owner confirmed. A partition
//! without an owner whose target is a live worker with room (after a failure, a leave or a
//! confirmed revocation) is granted at once under every strategy.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::assignment::{balanced, owned_by, Member, Ownership};
use super::checkpoints::{CheckpointConfig, CheckpointCoordinator, PartitionSnapshot};
use super::job_control::JobControl;
use super::{CoordinatorConfig, CoordinatorError, RebalanceStrategy};
use crate::fault_tolerance::FailureDetector;
use crate::protocol::{
    ClusterStatus, CoordinatorMessage, JobProgress, JobState, MovingPartition, RegisterRequest, WorkerStatus,
};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};

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
}

impl Departure {
    fn is_failure(self) -> bool {
        matches!(self, Departure::TimedOut | Departure::Declared)
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
    checkpoints: Option<CheckpointCoordinator>,
    /// The latest time the shell passed in, for calls that do not carry one.
    clock: Option<Instant>,
    /// Partitions moving through a checkpoint while the job runs (`engine_moves.rs`).
    moving: Option<moves::Move>,
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
            (Some(_), Some(interval)) => Some(CheckpointCoordinator::new(
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
            clock: None,
            moving: None,
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
        self.clock = Some(now);
        match input {
            Input::Register { conn, request } => self.on_register(conn, request, now),
            Input::Heartbeat { conn, running } => {
                if let Some(entry) = self.entry_of(conn) {
                    entry.info.last_heartbeat = now;
                    entry.info.load = running.len();
                    if entry.info.state != WorkerState::Leaving {
                        entry.info.state = WorkerState::Active;
                    }
                    entry.running = sorted(running);
                }
            }
            Input::Job { conn, report } => self.on_job_report(conn, report, now),
            Input::CheckpointWritten { id, result } => self.on_checkpoint_written(id, result),
            Input::Ack {
                conn,
                generation,
                running,
            } => self.on_ack(conn, generation, running, now),
            Input::Leave { conn } => {
                if let Some(id) = self.conns.get(&conn).cloned() {
                    self.on_leave(&id);
                }
            }
            Input::Disconnected { conn } => {
                if let Some(id) = self.conns.remove(&conn) {
                    if let Some(entry) = self.workers.get_mut(&id) {
                        entry.conn = None;
                        entry.info.state = WorkerState::Disconnected;
                    }
                }
            }
            Input::Tick => {
                let failed: Vec<WorkerId> = self
                    .detector
                    .failed(
                        self.workers.iter().map(|(id, e)| (id, e.info.last_heartbeat)),
                        now,
                    )
                    .into_iter()
                    .cloned()
                    .collect();
                for id in failed {
                    self.depart(&id, Departure::TimedOut);
                }
                self.tick_checkpoints(now);
            }
        }
        self.take_out()
    }

    /// Drives the job after a change and hands the actions over.
    fn take_out(&mut self) -> Vec<Action> {
        self.finish_leaves();
        self.drive_job();
        std::mem::take(&mut self.out)
    }

    /// Registers a worker that has no connection yet (the seed's `register_worker`); it must
    /// connect and heartbeat within the timeout or it fails like any other.
    pub fn register_worker(
        &mut self,
        info: WorkerInfo,
        now: Instant,
    ) -> Result<Vec<Action>, CoordinatorError> {
        self.clock = Some(now);
        if self.workers.contains_key(&info.id) {
            return Err(CoordinatorError::RegistrationFailed(format!(
                "worker {} is already registered",
                info.id
            )));
        }
        self.check_room()?;
        let id = info.id.clone();
        let requested = info.partitions.clone();
        let mut info = WorkerInfo {
            last_heartbeat: now,
            state: WorkerState::Disconnected,
            ..info
        };
        info.partitions.clear();
        self.workers.insert(
            id.clone(),
            Entry {
                info,
                conn: None,
                incarnation: 0,
                running: Vec::new(),
            },
        );
        self.join(&id, &requested);
        Ok(self.take_out())
    }

    /// Moves `partitions` to `worker` (it keeps its other partitions).
    pub fn assign_partitions(
        &mut self,
        worker: &WorkerId,
        partitions: &[PartitionId],
    ) -> Result<Vec<Action>, CoordinatorError> {
        let entry = self
            .workers
            .get(worker)
            .ok_or_else(|| CoordinatorError::WorkerNotFound(worker.clone()))?;
        let p = self.config.num_partitions;
        let mut seen = BTreeSet::new();
        for &part in partitions {
            if part >= p {
                return Err(CoordinatorError::InvalidPartition(format!(
                    "partition {part} is out of range: the job has partitions 0..{p}"
                )));
            }
            if !seen.insert(part) {
                return Err(CoordinatorError::InvalidPartition(format!(
                    "partition {part} is listed twice"
                )));
            }
        }
        let mut would_own: BTreeSet<PartitionId> = owned_by(&self.target, worker).into_iter().collect();
        would_own.extend(owned_by(&self.owner, worker));
        would_own.extend(partitions.iter().copied());
        if would_own.len() > entry.info.capacity {
            return Err(CoordinatorError::InvalidPartition(format!(
                "worker {worker} can run {} tasks; this assignment would give it {}",
                entry.info.capacity,
                would_own.len()
            )));
        }
        for &part in partitions {
            self.target[part] = Some(worker.clone());
        }
        self.reconcile();
        Ok(self.take_out())
    }

    /// Recomputes a balanced, sticky target and moves towards it.
    pub fn rebalance(&mut self) -> Vec<Action> {
        self.target = balanced(self.config.num_partitions, &self.members(), &self.view());
        self.reconcile();
        self.take_out()
    }

    /// Treats a worker as failed, as if its heartbeats had stopped.
    pub fn fail_worker(&mut self, worker: &WorkerId) -> Result<Vec<Action>, CoordinatorError> {
        if !self.workers.contains_key(worker) {
            return Err(CoordinatorError::WorkerNotFound(worker.clone()));
        }
        self.depart(worker, Departure::Declared);
        Ok(self.take_out())
    }

    /// Tells every connected worker that the coordinator is going away.
    pub fn shutdown(&mut self, reason: &str) -> Vec<Action> {
        for &conn in self.conns.keys() {
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::Shutdown {
                    reason: reason.to_string(),
                },
            });
            self.out.push(Action::Close { conn });
        }
        std::mem::take(&mut self.out)
    }

    /// What the coordinator knows about one worker.
    pub fn worker_info(&self, id: &WorkerId) -> Option<WorkerInfo> {
        self.workers.get(id).map(|e| WorkerInfo {
            partitions: owned_by(&self.owner, id),
            ..e.info.clone()
        })
    }

    /// A snapshot for `swd status`.
    pub fn status(&self, now: Instant) -> ClusterStatus {
        let timeout = self.config.heartbeat_timeout;
        ClusterStatus {
            cluster: self.config.cluster_name.clone(),
            generation: self.generation,
            partitions: self.config.num_partitions,
            strategy: self.config.rebalance_strategy.as_str().to_string(),
            unassigned: (0..self.config.num_partitions)
                .filter(|p| self.owner[*p].is_none() && !self.revoking.contains_key(p))
                .collect(),
            moving: self
                .revoking
                .iter()
                .map(|(&partition, (from, _))| MovingPartition {
                    partition,
                    from: from.clone(),
                    to: self.target[partition].clone(),
                })
                .chain(self.moving.iter().flat_map(|m| {
                    m.partitions.iter().map(|(partition, from, to)| MovingPartition {
                        partition: *partition,
                        from: from.clone(),
                        to: Some(to.clone()),
                    })
                }))
                .collect(),
            workers: self
                .workers
                .values()
                .map(|e| WorkerStatus {
                    id: e.info.id.clone(),
                    address: e.info.address.clone(),
                    state: e.info.state,
                    healthy: e.info.is_healthy_at(timeout, now),
                    partitions: owned_by(&self.owner, &e.info.id),
                    capacity: e.info.capacity,
                    load: e.info.load,
                    last_heartbeat_ms: duration_ms(now.saturating_duration_since(e.info.last_heartbeat)),
                })
                .collect(),
            job: self.job.as_ref().map(|job| job.status(now)),
            checkpoints: self.checkpoint_status(),
        }
    }

    fn on_register(&mut self, conn: ConnId, request: RegisterRequest, now: Instant) {
        if self.conns.contains_key(&conn) {
            return;
        }
        let id = request.worker_id.clone();
        let older_run = self
            .workers
            .get(&id)
            .is_some_and(|e| request.incarnation < e.incarnation);
        if older_run {
            // Runs are ordered by start time: a paused old run that wakes up after a newer run
            // took its id over must not take it back.
            let reason = format!("a newer run of worker {id} is registered");
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::Fenced { reason },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        if let Some(reason) = self.job_refusal(&request) {
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::RegistrationRefused { reason },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        let mut requested = request.requested.clone();
        if let Some(existing) = self.workers.get_mut(&id) {
            if existing.incarnation == request.incarnation {
                // The same run reconnecting: it keeps its session and partitions.
                if let Some(old) = existing.conn.replace(conn) {
                    self.conns.remove(&old);
                    self.out.push(Action::Close { conn: old });
                }
                existing.info.last_heartbeat = now;
                existing.info.state = WorkerState::Active;
                existing.info.address = request.address;
                self.conns.insert(conn, id.clone());
                self.send_registered(conn);
                let partitions = owned_by(&self.owner, &id);
                self.out.push(Action::Send {
                    conn,
                    message: CoordinatorMessage::Assignment {
                        generation: self.generation,
                        partitions,
                    },
                });
                // It may have missed the start of the running attempt while it was away.
                self.resend_job(conn);
                self.reconcile();
                return;
            }
            // A new run of the same worker: fence the old session, offer it the old partitions.
            requested.extend(owned_by(&self.owner, &id));
            self.depart(&id, Departure::Fenced);
        } else if let Err(e) = self.check_room() {
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::RegistrationRefused {
                    reason: e.to_string(),
                },
            });
            self.out.push(Action::Close { conn });
            return;
        }
        let mut info = WorkerInfo::new(id.clone(), request.address, request.capacity, now);
        info.state = WorkerState::Active;
        self.workers.insert(
            id.clone(),
            Entry {
                info,
                conn: Some(conn),
                incarnation: request.incarnation,
                running: Vec::new(),
            },
        );
        self.conns.insert(conn, id.clone());
        self.send_registered(conn);
        // A running attempt goes on while partitions move here: the new member must know it
        // before the first move's checkpoint is triggered.
        if self.moves_carry_state() {
            self.resend_job(conn);
        }
        self.join(&id, &requested);
    }

    fn send_registered(&mut self, conn: ConnId) {
        self.out.push(Action::Send {
            conn,
            message: CoordinatorMessage::Registered {
                generation: self.generation,
                num_partitions: self.config.num_partitions,
                heartbeat_timeout_ms: duration_ms(self.config.heartbeat_timeout),
            },
        });
    }

    /// A new member: honour the partitions it asks for when they are free, then retarget.
    fn join(&mut self, id: &WorkerId, requested: &[PartitionId]) {
        self.out
            .push(Action::Event(ClusterEvent::Joined { worker: id.clone() }));
        let capacity = self.workers.get(id).map_or(0, |e| e.info.capacity);
        let mut given = 0;
        for &p in requested.iter().collect::<BTreeSet<_>>() {
            if p < self.config.num_partitions
                && self.owner[p].is_none()
                && !self.revoking.contains_key(&p)
                && given < capacity
            {
                self.target[p] = Some(id.clone());
                given += 1;
            }
        }
        if self.config.rebalance_strategy != RebalanceStrategy::Manual {
            // Honoured requests count as owned so the balanced target keeps them where it can.
            let mut view = self.view();
            for (p, t) in self.target.iter().enumerate() {
                if t.as_ref() == Some(id) && view[p].is_none() {
                    view[p] = Some(id.clone());
                }
            }
            self.target = balanced(self.config.num_partitions, &self.members(), &view);
        }
        self.reconcile();
    }

    fn on_ack(&mut self, conn: ConnId, generation: Generation, running: Vec<PartitionId>, now: Instant) {
        let Some(id) = self.conns.get(&conn).cloned() else {
            return;
        };
        if let Some(entry) = self.workers.get_mut(&id) {
            entry.info.last_heartbeat = now;
            entry.info.load = running.len();
            entry.running = sorted(running.clone());
        }
        let running: BTreeSet<PartitionId> = running.into_iter().collect();
        let released: Vec<PartitionId> = self
            .revoking
            .iter()
            .filter(|(p, (w, g))| *w == id && generation >= *g && !running.contains(p))
            .map(|(p, _)| *p)
            .collect();
        for p in released {
            self.revoking.remove(&p);
            self.out.push(Action::Event(ClusterEvent::Released {
                worker: id.clone(),
                partition: p,
            }));
        }
        self.granting.retain(|_, (w, g)| !(*w == id && generation >= *g));
        self.reconcile();
    }

    /// Removes a member; its partitions lose their owner and are placed again.
    fn depart(&mut self, id: &WorkerId, how: Departure) {
        let Some(entry) = self.workers.remove(id) else {
            return;
        };
        if let Some(conn) = entry.conn {
            self.conns.remove(&conn);
            let message = match how {
                Departure::Left => CoordinatorMessage::LeaveAck,
                Departure::TimedOut => CoordinatorMessage::Shutdown {
                    reason: format!(
                        "declared failed: no heartbeat for {}",
                        humantime::format_duration(self.config.heartbeat_timeout)
                    ),
                },
                Departure::Declared => CoordinatorMessage::Shutdown {
                    reason: "declared failed by an administrator".to_string(),
                },
                Departure::Fenced => CoordinatorMessage::Fenced {
                    reason: format!("a newer run of worker {id} registered"),
                },
            };
            self.out.push(Action::Send { conn, message });
            self.out.push(Action::Close { conn });
        }
        self.out.push(Action::Event(match how {
            Departure::Left => ClusterEvent::Left { worker: id.clone() },
            Departure::TimedOut | Departure::Declared => ClusterEvent::Failed { worker: id.clone() },
            Departure::Fenced => ClusterEvent::Fenced { worker: id.clone() },
        }));
        let mut orphans = owned_by(&self.owner, id);
        for &p in &orphans {
            self.owner[p] = None;
        }
        let revoked: Vec<PartitionId> = self
            .revoking
            .iter()
            .filter(|(_, (w, _))| w == id)
            .map(|(p, _)| *p)
            .collect();
        for p in revoked {
            self.revoking.remove(&p);
            orphans.push(p);
        }
        orphans.sort_unstable();
        for &p in &orphans {
            self.out.push(Action::Event(ClusterEvent::Released {
                worker: id.clone(),
                partition: p,
            }));
        }
        self.granting.retain(|_, (w, _)| w != id);
        if how == Departure::Fenced {
            // The same id registers again right after; placement happens then.
            for t in self.target.iter_mut().filter(|t| t.as_ref() == Some(id)) {
                *t = None;
            }
            return;
        }
        self.retarget_after_departure(id, &orphans, how);
        self.reconcile();
    }

    fn retarget_after_departure(&mut self, id: &WorkerId, orphans: &[PartitionId], how: Departure) {
        let failover = how.is_failure() && self.config.enable_failover;
        match self.config.rebalance_strategy {
            RebalanceStrategy::Manual => {
                for t in self.target.iter_mut().filter(|t| t.as_ref() == Some(id)) {
                    *t = None;
                }
                if failover {
                    self.place_on_least_loaded(orphans);
                }
            }
            RebalanceStrategy::Immediate | RebalanceStrategy::Gradual => {
                self.target = balanced(self.config.num_partitions, &self.members(), &self.view());
                if how.is_failure() && !self.config.enable_failover {
                    for &p in orphans {
                        self.target[p] = None;
                    }
                }
            }
        }
    }

    /// Manual failover: each orphan goes to the member with the fewest partitions that has room.
    fn place_on_least_loaded(&mut self, orphans: &[PartitionId]) {
        for &p in orphans {
            let best = self
                .workers
                .values()
                .filter(|e| e.info.state != WorkerState::Leaving)
                .map(|e| (owned_by(&self.target, &e.info.id).len(), e))
                .filter(|(n, e)| *n < e.info.capacity)
                .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.info.id.cmp(&b.1.info.id)))
                .map(|(_, e)| e.info.id.clone());
            self.target[p] = best;
        }
    }

    /// Moves ownership towards the target as far as the strategy allows now, and sends each
    /// changed worker its new set under a new generation.
    fn reconcile(&mut self) {
        let next = self.generation.next();
        let strategy = self.config.rebalance_strategy;
        let mut changed: BTreeSet<WorkerId> = BTreeSet::new();
        // Partitions with no owner are granted at once, whatever the strategy.
        for p in 0..self.config.num_partitions {
            if self.owner[p].is_some() || self.revoking.contains_key(&p) {
                continue;
            }
            let Some(w) = self.target[p].clone() else { continue };
            let Some(entry) = self.workers.get(&w) else {
                continue;
            };
            if owned_by(&self.owner, &w).len() >= entry.info.capacity {
                continue;
            }
            self.grant(p, &w, next);
            changed.insert(w);
        }
        let moving: Vec<(PartitionId, WorkerId)> = (0..self.config.num_partitions)
            .filter_map(|p| match &self.owner[p] {
                Some(x) if self.target[p].as_ref() != Some(x) => Some((p, x.clone())),
                _ => None,
            })
            .collect();
        match strategy {
            _ if self.moves_carry_state() => self.plan_move(moving),
            RebalanceStrategy::Immediate => {
                for (p, from) in moving {
                    self.out.push(Action::Event(ClusterEvent::Revoking {
                        worker: from.clone(),
                        partition: p,
                        generation: next,
                    }));
                    // No `Released`: under Immediate the new owner starts without waiting for the
                    // old one to confirm; generations fence the overlap.
                    self.owner[p] = None;
                    changed.insert(from);
                    if let Some(to) = self.target[p].clone() {
                        self.grant(p, &to, next);
                        changed.insert(to);
                    }
                }
            }
            RebalanceStrategy::Gradual => {
                if self.revoking.is_empty() && self.granting.is_empty() {
                    if let Some((p, from)) = moving.into_iter().next() {
                        self.revoke(p, &from, next);
                        changed.insert(from);
                    }
                }
            }
            RebalanceStrategy::Manual => {
                for (p, from) in moving {
                    self.revoke(p, &from, next);
                    changed.insert(from);
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        self.generation = next;
        for id in changed {
            let Some(conn) = self.workers.get(&id).and_then(|e| e.conn) else {
                continue;
            };
            let partitions = owned_by(&self.owner, &id);
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::Assignment {
                    generation: next,
                    partitions,
                },
            });
        }
    }

    fn grant(&mut self, p: PartitionId, to: &WorkerId, generation: Generation) {
        self.owner[p] = Some(to.clone());
        if self.config.rebalance_strategy != RebalanceStrategy::Immediate {
            self.granting.insert(p, (to.clone(), generation));
        }
        self.out.push(Action::Event(ClusterEvent::Granted {
            worker: to.clone(),
            partition: p,
            generation,
        }));
    }

    fn revoke(&mut self, p: PartitionId, from: &WorkerId, generation: Generation) {
        self.owner[p] = None;
        self.revoking.insert(p, (from.clone(), generation));
        self.out.push(Action::Event(ClusterEvent::Revoking {
            worker: from.clone(),
            partition: p,
            generation,
        }));
    }

    /// The members partitions may be placed on (not those leaving).
    fn members(&self) -> Vec<Member> {
        self.workers
            .values()
            .filter(|e| e.info.state != WorkerState::Leaving)
            .map(|e| Member {
                id: e.info.id.clone(),
                capacity: e.info.capacity,
            })
            .collect()
    }

    /// Ownership as the planner should see it: a partition still being revoked counts as its
    /// old owner's, so stickiness does not treat it as free.
    fn view(&self) -> Ownership {
        let mut view = self.owner.clone();
        for (&p, (w, _)) in &self.revoking {
            view[p] = Some(w.clone());
        }
        view
    }

    fn check_room(&self) -> Result<(), CoordinatorError> {
        if self.workers.len() >= self.config.max_workers {
            return Err(CoordinatorError::RegistrationFailed(format!(
                "the cluster is full: max_workers is {}",
                self.config.max_workers
            )));
        }
        Ok(())
    }

    fn entry_of(&mut self, conn: ConnId) -> Option<&mut Entry> {
        let id = self.conns.get(&conn)?;
        self.workers.get_mut(id)
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

#[path = "engine_job.rs"]
mod job;

#[path = "engine_moves.rs"]
mod moves;

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "engine_moves_tests.rs"]
mod moves_tests;

#[cfg(test)]
#[path = "engine_job_tests.rs"]
mod job_tests;

#[cfg(test)]
#[path = "engine_restart_tests.rs"]
mod restart_tests;
