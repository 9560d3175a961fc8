//! Reconciliation: moving the owner table towards the target as far as the strategy allows now
//! (see the engine's module documentation), and sending each changed worker its new set under a
//! new generation. Also the planner's view of the members and of ownership.

use std::collections::BTreeSet;
use std::time::Instant;

use super::{Action, ClusterEvent, Engine};
use crate::coordinator::assignment::{owned_by, Member, Ownership};
use crate::coordinator::RebalanceStrategy;
use crate::protocol::CoordinatorMessage;
use crate::types::{Generation, PartitionId, WorkerId, WorkerState};

impl Engine {
    /// Moves ownership towards the target as far as the strategy allows now, and sends each
    /// changed worker its new set under a new generation.
    pub(super) fn reconcile(&mut self, now: Instant) {
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
            _ if self.moves_carry_state() => self.plan_move(moving, now),
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

    pub(super) fn grant(&mut self, p: PartitionId, to: &WorkerId, generation: Generation) {
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

    pub(super) fn revoke(&mut self, p: PartitionId, from: &WorkerId, generation: Generation) {
        self.owner[p] = None;
        self.revoking.insert(p, (from.clone(), generation));
        self.out.push(Action::Event(ClusterEvent::Revoking {
            worker: from.clone(),
            partition: p,
            generation,
        }));
    }

    /// The members partitions may be placed on (not those leaving).
    pub(super) fn members(&self) -> Vec<Member> {
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
    pub(super) fn view(&self) -> Ownership {
        let mut view = self.owner.clone();
        for (&p, (w, _)) in &self.revoking {
            view[p] = Some(w.clone());
        }
        view
    }
}
