//! Admin operations on the engine: registering a worker without a connection, moving
//! partitions by hand, rebalancing, declaring a worker failed, shutting down. Each checks its
//! request against the membership, changes the target and reconciles like any other input.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Action, Departure, Engine, Entry};
use crate::coordinator::assignment::{balanced, owned_by};
use crate::coordinator::CoordinatorError;
use crate::protocol::CoordinatorMessage;
use crate::types::{PartitionId, WorkerId, WorkerInfo, WorkerState};

impl Engine {
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
