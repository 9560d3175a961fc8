//! Moving partitions while a checkpointed job runs, carrying their state through a checkpoint
//! barrier instead of restarting the job (Flink and Kafka Streams stop the job to rebalance).
//!
//! ```text
//! reconcile: owner != target  --> Move{(p, from, to)..}  (Gradual: one partition; Immediate and
//!                                  Manual: every partition that must move)
//! a checkpoint is committed    --> Preparing: PreparePartitions to each `to`, which loads the
//!                                  state while `from` runs p (`prepare.rs`); all Preloaded -->
//! no checkpoint in flight      --> TriggerCheckpoint{id, moves} to every worker: sources route
//!                                  p's records to `to` after their barrier, `from` snapshots p at
//!                                  the barrier and stops it
//! CheckpointAck{id, p} of from --> AdoptPartitions{id} to `to`: p restores and resumes there
//!                                  (the other partitions' acks and the commit are not awaited)
//! checkpoint id committed      --> owner[p] = to (new generation, JobControl::moved); a partition
//!                                  not adopted yet (its new owner was away) is adopted now
//! checkpoint aborted / failed  --> the attempt restarts from the last checkpoint (the old way)
//! ```
//!
//! Adopting before the commit is safe because nothing the new owner does becomes final before
//! it: its sink output goes to epochs after `id`, made final only by later commits, and p's
//! epoch `id` (the old owner's last) only by the commit of `id` itself. If `id` is never
//! committed, the attempt restarts from the checkpoint before, as any failed move does.
//!
//! A worker that asks to leave while such a job runs is `Leaving`: it is no longer a placement
//! target, its partitions move away like any others, and once it owns none it gets its
//! `LeaveAck` (and stops its tasks then).
//!
//! While a move waits for its checkpoint no other checkpoint is triggered, so the move's barrier
//! is the next one every source sends. A partition whose receiver has finished stays where it
//! is until the job ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::prepare::{Preparing, Resuming};
use super::{Action, ClusterEvent, Departure, Engine, Note};
use crate::coordinator::assignment::{balanced, owned_by};
use crate::coordinator::checkpoint_tracker::{CheckpointId, PartitionSnapshot};
use crate::coordinator::RebalanceStrategy;
use crate::protocol::{Adoption, CoordinatorMessage, PartitionMove, PartitionOwner};
use crate::types::{PartitionId, WorkerId, WorkerState};

/// Partitions moving through one checkpoint.
#[derive(Clone, Debug)]
pub(super) struct Move {
    /// (partition, old owner, new owner).
    pub(super) partitions: Vec<(PartitionId, WorkerId, WorkerId)>,
    /// The checkpoint carrying them, once triggered.
    pub(super) checkpoint: Option<u64>,
    /// When that checkpoint was triggered.
    pub(super) triggered_at: Option<Instant>,
    /// Before the barrier: the new owners load the partitions' state (`prepare.rs`).
    pub(super) preparing: Option<Preparing>,
    /// How long the new owners took to load the state ahead (none: not loaded ahead).
    pub(super) preload_ms: Option<u64>,
    /// Partitions already adopted by their new owners (on their old owner's acknowledgement).
    pub(super) adopted: BTreeSet<PartitionId>,
}

impl Move {
    /// What the engine remembers of a partition adopted by `to` through checkpoint `id` until
    /// it runs there (its pause counts from this move's trigger).
    fn resuming(&self, to: &WorkerId, id: u64, now: Instant) -> Resuming {
        Resuming {
            worker: to.clone(),
            checkpoint: id,
            triggered_at: self.triggered_at.unwrap_or(now),
            preload_ms: self.preload_ms,
        }
    }
}

impl Engine {
    /// Whether partitions move through checkpoints now: a job runs with checkpoints on.
    pub(super) fn moves_carry_state(&self) -> bool {
        self.checkpoints.is_some() && self.job.as_ref().and_then(|j| j.running_attempt()).is_some()
    }

    /// Worker `id` asked to leave. While a checkpointed job runs and the others have room for
    /// its partitions, they move away first (the worker keeps running them meanwhile); otherwise
    /// it leaves at once.
    pub(super) fn on_leave(&mut self, id: &WorkerId, now: Instant) {
        let owns = owned_by(&self.owner, id);
        let room: usize = self
            .workers
            .values()
            .filter(|e| e.info.id != *id && e.info.state != WorkerState::Leaving)
            .map(|e| e.info.capacity)
            .sum();
        if owns.is_empty() || !self.moves_carry_state() || room < self.config.num_partitions {
            return self.depart(id, Departure::Left, now);
        }
        let Some(entry) = self.workers.get_mut(id) else {
            return;
        };
        entry.info.state = WorkerState::Leaving;
        self.out.push(Action::Log(Note::WorkerLeaving {
            worker: id.clone(),
            partitions: owns.len(),
        }));
        self.out
            .push(Action::Event(ClusterEvent::Leaving { worker: id.clone() }));
        if self.config.rebalance_strategy == RebalanceStrategy::Manual {
            // Manual never moves partitions by itself, except away from a member that goes.
            let orphans = owns;
            self.place_on_least_loaded(&orphans);
        } else {
            self.target = balanced(self.config.num_partitions, &self.members(), &self.view());
        }
        self.reconcile(now);
    }

    /// Leaving workers that own nothing (or whose partitions can no longer move with their
    /// state: the job stopped) leave now.
    pub(super) fn finish_leaves(&mut self, now: Instant) {
        let carry = self.moves_carry_state();
        let done: Vec<WorkerId> = self
            .workers
            .values()
            .filter(|e| e.info.state == WorkerState::Leaving)
            .filter(|e| {
                !carry
                    || (owned_by(&self.owner, &e.info.id).is_empty()
                        && self
                            .moving
                            .as_ref()
                            .is_none_or(|m| m.partitions.iter().all(|(_, from, _)| *from != e.info.id)))
            })
            .map(|e| e.info.id.clone())
            .collect();
        for id in done {
            self.depart(&id, Departure::Left, now);
        }
    }

    /// `moving`: partitions whose owner is not their target. Plans the next move (one partition
    /// under Gradual, all that can under the others) unless one is under way.
    pub(super) fn plan_move(&mut self, moving: Vec<(PartitionId, WorkerId)>, now: Instant) {
        if self.moving.is_some() || self.job.as_ref().is_some_and(|j| j.sources_finished()) {
            return;
        }
        if self.move_book.retry_at.is_some_and(|at| now < at) {
            // A move was abandoned: the partitions stay a while before it is tried again.
            return;
        }
        let mut gaining: BTreeMap<WorkerId, usize> = BTreeMap::new();
        let mut partitions = Vec::new();
        for (p, from) in moving {
            let Some(to) = self.target[p].clone() else {
                continue;
            };
            let Some(entry) = self.workers.get(&to) else {
                continue;
            };
            if self.job.as_ref().is_some_and(|j| j.partition_done(p)) {
                continue;
            }
            let gained = gaining.entry(to.clone()).or_default();
            if owned_by(&self.owner, &to).len() + *gained >= entry.info.capacity {
                continue;
            }
            *gained += 1;
            partitions.push((p, from, to));
            if self.config.rebalance_strategy == RebalanceStrategy::Gradual {
                break;
            }
        }
        if partitions.is_empty() {
            return;
        }
        for (p, from, to) in &partitions {
            self.out.push(Action::Log(Note::MovingPartition {
                partition: *p,
                from: from.clone(),
                to: to.clone(),
            }));
        }
        self.moving = Some(Move {
            partitions,
            checkpoint: None,
            triggered_at: None,
            preparing: None,
            preload_ms: None,
            adopted: BTreeSet::new(),
        });
        self.prepare_move(now);
    }

    /// Triggers the planned move's checkpoint once no other is in flight.
    pub(super) fn trigger_move(&mut self, now: Instant) {
        if self
            .moving
            .as_ref()
            .is_none_or(|m| m.checkpoint.is_some() || m.preparing.is_some())
        {
            return;
        }
        let Some(checkpoints) = self.checkpoints.as_mut() else {
            return;
        };
        if checkpoints.in_flight().is_some() {
            return;
        }
        let (id, actions) = checkpoints.request(now);
        if let (Some(m), Some(id)) = (self.moving.as_mut(), id) {
            m.checkpoint = Some(id.0);
            m.triggered_at = Some(now);
        }
        self.checkpoint_actions(actions, now);
    }

    /// The moves that travel with checkpoint `id`, for its trigger.
    pub(super) fn moves_of(&self, id: u64) -> Vec<PartitionMove> {
        let Some(m) = self.moving.as_ref().filter(|m| m.checkpoint == Some(id)) else {
            return Vec::new();
        };
        m.partitions
            .iter()
            .filter_map(|(p, _, to)| {
                let address = self.workers.get(to)?.info.address.clone();
                Some(PartitionMove {
                    partition: *p,
                    to: PartitionOwner {
                        worker: to.clone(),
                        address,
                    },
                })
            })
            .collect()
    }

    /// Whether a move is waiting for checkpoint `id`.
    pub(super) fn move_waits_for(&self, id: u64) -> bool {
        self.moving.as_ref().is_some_and(|m| m.checkpoint == Some(id))
    }

    /// `worker` acknowledged partition `p` at checkpoint `id`. If that moves `p` away from
    /// `worker`, its state is stored: the new owner adopts it now, so that its pause ends with
    /// its own acknowledgement rather than the slowest partition's and the manifest's write.
    pub(super) fn adopt_on_ack(
        &mut self,
        worker: &WorkerId,
        id: u64,
        p: PartitionId,
        snapshot: &PartitionSnapshot,
        ended_sources: Vec<PartitionId>,
        now: Instant,
    ) {
        let Some(attempt) = self.job.as_ref().and_then(|j| j.running_attempt()) else {
            return;
        };
        let Some(m) = self.moving.as_mut().filter(|m| m.checkpoint == Some(id)) else {
            return;
        };
        let Some((_, _, to)) = m.partitions.iter().find(|(q, from, _)| *q == p && from == worker) else {
            return;
        };
        let reachable = self
            .workers
            .get(to)
            .filter(|e| e.info.state != WorkerState::Failed)
            .and_then(|e| e.conn);
        // Without a connection now, the commit adopts it (or fails the move if it is gone).
        let Some(conn) = reachable.filter(|_| !m.adopted.contains(&p)) else {
            return;
        };
        m.adopted.insert(p);
        self.move_book.resuming.insert(p, m.resuming(to, id, now));
        self.out.push(Action::Send {
            conn,
            message: CoordinatorMessage::AdoptPartitions {
                attempt,
                checkpoint: id,
                partitions: vec![adoption(p, snapshot)],
                ended_sources,
            },
        });
    }

    /// Checkpoint `id`, which carries the move under way, is committed: the partitions change
    /// owner; new owners that have not adopted theirs yet do now.
    pub(super) fn complete_move(&mut self, id: u64, now: Instant) {
        let Some(m) = self.moving.take() else { return };
        let snapshots = match self.checkpoints.as_ref().and_then(|c| c.restore_point()) {
            Some((committed, snapshots)) if committed == CheckpointId(id) => snapshots,
            _ => {
                return self.move_failed(
                    format!("checkpoint {id} of a partition move is not the last committed"),
                    now,
                )
            }
        };
        if let Some((p, _, to)) = m
            .partitions
            .iter()
            .find(|(_, _, to)| !self.workers.contains_key(to))
        {
            return self.move_failed(
                format!("worker {to} left before it could take partition {p}"),
                now,
            );
        }
        let next = self.generation.next();
        let duration_ms = m.triggered_at.map_or(0, |start| {
            u64::try_from(now.saturating_duration_since(start).as_millis()).unwrap_or(u64::MAX)
        });
        let ended_sources: Vec<PartitionId> = snapshots
            .iter()
            .filter(|(_, s)| s.source_exhausted)
            .map(|(p, _)| *p)
            .collect();
        let mut adoptions: BTreeMap<WorkerId, Vec<Adoption>> = BTreeMap::new();
        for (p, from, to) in &m.partitions {
            let Some(snapshot) = snapshots.get(p) else {
                return self.move_failed(format!("checkpoint {id} has no snapshot of partition {p}"), now);
            };
            self.owner[*p] = Some(to.clone());
            self.out.push(Action::Event(ClusterEvent::Revoking {
                worker: from.clone(),
                partition: *p,
                generation: next,
            }));
            self.out.push(Action::Event(ClusterEvent::Released {
                worker: from.clone(),
                partition: *p,
            }));
            self.out.push(Action::Event(ClusterEvent::Granted {
                worker: to.clone(),
                partition: *p,
                generation: next,
            }));
            self.out.push(Action::Event(ClusterEvent::Moved {
                partition: *p,
                from: from.clone(),
                to: to.clone(),
                checkpoint: id,
                duration_ms,
            }));
            if m.adopted.contains(p) {
                continue;
            }
            self.move_book.resuming.insert(*p, m.resuming(to, id, now));
            adoptions
                .entry(to.clone())
                .or_default()
                .push(adoption(*p, snapshot));
        }
        self.generation = next;
        if let Some(job) = self.job.as_mut() {
            job.moved(next);
        }
        let Some(attempt) = self.job.as_ref().and_then(|j| j.running_attempt()) else {
            return;
        };
        let mut told: Vec<&WorkerId> = m.partitions.iter().flat_map(|(_, from, to)| [from, to]).collect();
        told.sort();
        told.dedup();
        for worker in told {
            let Some(conn) = self.workers.get(worker).and_then(|e| e.conn) else {
                continue;
            };
            self.out.push(Action::Send {
                conn,
                message: CoordinatorMessage::Assignment {
                    generation: next,
                    partitions: owned_by(&self.owner, worker),
                },
            });
            if let Some(partitions) = adoptions.remove(worker) {
                self.out.push(Action::Send {
                    conn,
                    message: CoordinatorMessage::AdoptPartitions {
                        attempt,
                        checkpoint: id,
                        partitions,
                        ended_sources: ended_sources.clone(),
                    },
                });
            }
        }
        self.reconcile(now);
    }

    /// The move under way cannot complete: the attempt restarts from the last checkpoint, and
    /// the partitions move the old way meanwhile.
    pub(super) fn move_failed(&mut self, reason: String, now: Instant) {
        self.moving = None;
        self.out.push(Action::Log(Note::MoveFailed {
            reason: reason.clone(),
        }));
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let step = job.on_move_failed(format!("a partition move failed: {reason}"), now);
        self.execute_job_step(step, now);
        self.reconcile(now);
    }
}

/// What partition `p`'s new owner restores from its `snapshot` in the move's checkpoint.
fn adoption(p: PartitionId, snapshot: &PartitionSnapshot) -> Adoption {
    Adoption {
        partition: p,
        state_file: snapshot.state_file.clone(),
        source_offset: snapshot.source_offset.unwrap_or(0),
        source_exhausted: snapshot.source_exhausted,
        source_records: snapshot.source_records,
    }
}
