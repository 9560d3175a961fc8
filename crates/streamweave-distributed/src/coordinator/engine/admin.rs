//! Admin operations on the engine: registering a worker without a connection, moving
//! partitions by hand, rebalancing, declaring a worker failed, checkpointing on request, the
//! status, shutting down. Each checks its request against the membership, changes the target and
//! reconciles like any other input.
//!
//! ```text
//! CoordinatorHandle / admin client --AdminRequest + now--> Engine::admin
//!     --> (AdminAnswer, Vec<Action>) --> shell: executes the actions, replies with the answer
//! ```

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Action, Departure, Engine, Entry};
use crate::coordinator::assignment::{balanced, owned_by};
use crate::coordinator::CoordinatorError;
use crate::protocol::{ClusterStatus, CoordinatorMessage};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};

/// A request from an administrator (a [`CoordinatorHandle`](crate::coordinator::CoordinatorHandle)
/// or an admin client), handled by [`Engine::admin`].
#[derive(Clone, Debug)]
pub enum AdminRequest {
    /// The cluster's status.
    Status,
    /// What the coordinator knows about one worker.
    GetWorker(WorkerId),
    /// Register a worker that has no connection yet.
    RegisterWorker(WorkerInfo),
    /// Move partitions to a worker.
    Assign {
        /// The worker.
        worker: WorkerId,
        /// The partitions it gains.
        partitions: Vec<PartitionId>,
    },
    /// Recompute a balanced target and move towards it.
    Rebalance,
    /// Treat a worker as failed.
    FailWorker(WorkerId),
    /// Take a checkpoint of the running job now.
    Checkpoint,
    /// Stop the running job cleanly (see [`Engine::stop_job`]).
    StopJob,
}

/// The engine's answer to an [`AdminRequest`].
#[derive(Debug)]
pub enum AdminAnswer {
    /// To [`AdminRequest::Status`].
    Status(Box<ClusterStatus>),
    /// To [`AdminRequest::GetWorker`].
    Worker(Result<WorkerInfo, CoordinatorError>),
    /// To a request that changes the assignment: the generation after it.
    Done(Result<Generation, CoordinatorError>),
    /// To [`AdminRequest::Checkpoint`]: the checkpoint's id (or the one already in flight).
    Checkpoint(Result<u64, CoordinatorError>),
    /// To [`AdminRequest::StopJob`]: the final checkpoint (none: stopped at once).
    Stopping(Result<Option<u64>, CoordinatorError>),
}

impl Engine {
    /// Handles an admin request at time `now`: the answer for the requester and the actions
    /// for the shell (none when the request is refused).
    pub fn admin(&mut self, request: AdminRequest, now: Instant) -> (AdminAnswer, Vec<Action>) {
        let changed = match request {
            AdminRequest::Status => return (AdminAnswer::Status(Box::new(self.status(now))), Vec::new()),
            AdminRequest::GetWorker(id) => {
                let info = self.worker_info(&id).ok_or(CoordinatorError::WorkerNotFound(id));
                return (AdminAnswer::Worker(info), Vec::new());
            }
            AdminRequest::StopJob => {
                return match self.stop_job(now) {
                    Ok((checkpoint, actions)) => (AdminAnswer::Stopping(Ok(checkpoint)), actions),
                    Err(e) => (AdminAnswer::Stopping(Err(e)), Vec::new()),
                }
            }
            AdminRequest::Checkpoint => {
                return match self.request_checkpoint(now) {
                    Ok((id, actions)) => (AdminAnswer::Checkpoint(Ok(id)), actions),
                    Err(e) => (AdminAnswer::Checkpoint(Err(e)), Vec::new()),
                }
            }
            AdminRequest::RegisterWorker(info) => self.register_worker(info, now),
            AdminRequest::Assign { worker, partitions } => self.assign_partitions(&worker, &partitions, now),
            AdminRequest::Rebalance => Ok(self.rebalance(now)),
            AdminRequest::FailWorker(id) => self.fail_worker(&id, now),
        };
        match changed {
            Ok(actions) => (AdminAnswer::Done(Ok(self.generation)), actions),
            Err(e) => (AdminAnswer::Done(Err(e)), Vec::new()),
        }
    }

    /// Registers a worker that has no connection yet (the seed's `register_worker`); it must
    /// connect and heartbeat within the timeout or it fails like any other.
    pub fn register_worker(
        &mut self,
        info: WorkerInfo,
        now: Instant,
    ) -> Result<Vec<Action>, CoordinatorError> {
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
        self.join(&id, &requested, now);
        Ok(self.take_out(now))
    }

    /// Moves `partitions` to `worker` (it keeps its other partitions).
    pub fn assign_partitions(
        &mut self,
        worker: &WorkerId,
        partitions: &[PartitionId],
        now: Instant,
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
        self.reconcile(now);
        Ok(self.take_out(now))
    }

    /// Recomputes a balanced, sticky target and moves towards it.
    pub fn rebalance(&mut self, now: Instant) -> Vec<Action> {
        self.target = balanced(self.config.num_partitions, &self.members(), &self.view());
        self.reconcile(now);
        self.take_out(now)
    }

    /// Treats a worker as failed, as if its heartbeats had stopped.
    pub fn fail_worker(&mut self, worker: &WorkerId, now: Instant) -> Result<Vec<Action>, CoordinatorError> {
        if !self.workers.contains_key(worker) {
            return Err(CoordinatorError::WorkerNotFound(worker.clone()));
        }
        self.depart(worker, Departure::Declared, now);
        Ok(self.take_out(now))
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

    /// Refuses a new member when the cluster already has `max_workers`.
    pub(super) fn check_room(&self) -> Result<(), CoordinatorError> {
        if self.workers.len() >= self.config.max_workers {
            return Err(CoordinatorError::RegistrationFailed(format!(
                "the cluster is full: max_workers is {}",
                self.config.max_workers
            )));
        }
        Ok(())
    }
}
