//! A move's preparation: before its barrier, the new owners load the moving partitions' state
//! from the last committed checkpoint while the old owners go on running them, so that at the
//! barrier only what changed since then is still to load and the partitions' pause does not
//! grow with their state.
//!
//! ```text
//! plan_move --> a committed checkpoint c with every moving partition's state?
//!                 no  --> trigger the move's checkpoint at once (the new owner restores in full)
//!                 yes --> Preparing{c, waiting = the partitions, deadline}:
//!                         PreparePartitions{attempt, c, [(p, state file)]} to each new owner
//!                         (checkpoints go on meanwhile)
//! MoveStatus{c, [p], Preloaded} from p's new owner --> p no longer waiting; none waiting -->
//!                         more than one checkpoint committed since c (a long load)?
//!                           yes, under CATCH_UP_ROUNDS --> prepared again from the newest: the
//!                               new owners load only the deltas since c (a shorter round)
//!                           no --> the move's checkpoint m is triggered (moves.rs)
//! PreloadFailed, the deadline, or a new owner gone --> abandoned: the old owners keep the
//!                         partitions; no move is planned for RETRY_AFTER, then the next plan
//! p's old owner acks m, AdoptPartitions --> MoveStatus{m, [p], Resumed} --> ClusterEvent::Resumed
//!                         with the partition's pause (from m's trigger) and its preload time
//! ```
//!
//! Exactly-once does not depend on the preparation: loaded state is only a head start, the
//! adoption still restores the chain of the move's own checkpoint (over what was loaded when
//! its segments begin that chain, in full otherwise), and a failure in any phase ends as before
//! (a failed worker stops the attempt, which drops the move).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::{Action, ClusterEvent, Engine, Note};
use crate::protocol::{CoordinatorMessage, MovePhase, Preload};
use crate::types::{PartitionId, WorkerId, WorkerState};

/// How long new owners may take to load the state of the partitions moving to them, at the
/// least; more for large state ([`prepare_timeout`]).
pub(super) const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest rate at which a new owner is expected to load state beside the processing
/// (126 MB partitions loaded at 9 MB/s on a busy 2-core machine).
const SLOWEST_LOAD_BYTES_PER_SEC: u64 = 5_000_000;

/// How long new owners may take to load `moving` of `partitions` partitions of a checkpoint
/// referring to `state_bytes` of state: [`PREPARE_TIMEOUT`] plus their share of the state at
/// the slowest expected rate. A deadline that ignored the state abandoned every move of a
/// gigabyte partition, whose load takes over a minute here, and planned it again and again.
///
/// The deadline only catches a load that never reports (a new owner that goes is noticed at
/// once).
pub(super) fn prepare_timeout(state_bytes: Option<u64>, moving: usize, partitions: usize) -> Duration {
    let share = state_bytes.unwrap_or(0).saturating_mul(moving as u64) / partitions.max(1) as u64;
    PREPARE_TIMEOUT + Duration::from_secs(share / SLOWEST_LOAD_BYTES_PER_SEC)
}

/// After a move was abandoned, how long before one is planned again.
pub(super) const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Preparations again from the newest checkpoint when a load ends more than one checkpoint
/// behind: each round loads what was committed during the previous one, so the deltas left for
/// the move's pause shrink to about a checkpoint's worth.
pub(super) const CATCH_UP_ROUNDS: u32 = 3;

/// A move whose new owners are loading the partitions' state.
#[derive(Clone, Debug)]
pub(super) struct Preparing {
    /// The committed checkpoint they load.
    pub(super) checkpoint: u64,
    /// The partitions not reported loaded yet.
    pub(super) waiting: BTreeSet<PartitionId>,
    /// When the preparation started (its first round).
    pub(super) started: Instant,
    /// When it is abandoned if not done.
    pub(super) deadline: Instant,
    /// The time it was given (see [`prepare_timeout`]).
    pub(super) timeout: Duration,
    /// Catch-up rounds so far.
    pub(super) round: u32,
}

/// A partition adopted by its new owner, until that owner reports it running.
#[derive(Clone, Debug)]
pub(super) struct Resuming {
    pub(super) worker: WorkerId,
    pub(super) checkpoint: u64,
    pub(super) triggered_at: Instant,
    pub(super) preload_ms: Option<u64>,
}

/// What moves remember beyond the one under way.
#[derive(Clone, Debug, Default)]
pub(super) struct MoveBook {
    /// No move is planned before this (one was abandoned).
    pub(super) retry_at: Option<Instant>,
    /// Partitions adopted and not yet reported running, by partition.
    pub(super) resuming: BTreeMap<PartitionId, Resuming>,
}

impl Engine {
    /// The move just planned: its new owners load the state first when a committed checkpoint
    /// has it; otherwise its checkpoint is triggered at once.
    pub(super) fn prepare_move(&mut self, now: Instant) {
        self.prepare_round(now, now, 0);
    }

    /// Sends a preparation of the planned move from the newest committed checkpoint: round
    /// `round` of one that started at `started`.
    fn prepare_round(&mut self, now: Instant, started: Instant, round: u32) {
        let (Some(attempt), Some(m)) = (
            self.job.as_ref().and_then(|j| j.running_attempt()),
            self.moving.as_ref(),
        ) else {
            return;
        };
        let Some((committed, snapshots)) = self.checkpoints.as_ref().and_then(|c| c.restore_point()) else {
            return self.trigger_move(now);
        };
        let mut by_owner: BTreeMap<WorkerId, Vec<Preload>> = BTreeMap::new();
        for (p, _, to) in &m.partitions {
            let Some(snapshot) = snapshots.get(p) else {
                return self.trigger_move(now);
            };
            by_owner.entry(to.clone()).or_default().push(Preload {
                partition: *p,
                state_file: snapshot.state_file.clone(),
            });
        }
        let mut sends = Vec::new();
        for (to, partitions) in by_owner {
            let Some(conn) = self.workers.get(&to).and_then(|e| e.conn) else {
                return self.trigger_move(now);
            };
            sends.push(Action::Send {
                conn,
                message: CoordinatorMessage::PreparePartitions {
                    attempt,
                    checkpoint: committed.0,
                    partitions,
                },
            });
        }
        let waiting: BTreeSet<PartitionId> = m.partitions.iter().map(|(p, _, _)| *p).collect();
        self.out.push(Action::Log(Note::PreparingMove {
            partitions: waiting.iter().copied().collect(),
            checkpoint: committed.0,
        }));
        self.out.extend(sends);
        let state_bytes = self.checkpoints.as_ref().and_then(|c| c.stats().state_bytes);
        let timeout = prepare_timeout(state_bytes, waiting.len(), self.num_partitions());
        if let Some(m) = self.moving.as_mut() {
            m.preparing = Some(Preparing {
                checkpoint: committed.0,
                waiting,
                started,
                deadline: now + timeout,
                timeout,
                round,
            });
        }
    }

    /// The partitions of the move being prepared, whose chains must not start again with a new
    /// base before the move's barrier (what their new owners load must stay a prefix).
    pub(super) fn keep_chains(&self) -> Vec<usize> {
        (self.moving.iter())
            .filter(|m| m.preparing.is_some())
            .flat_map(|m| m.partitions.iter().map(|(p, _, _)| *p))
            .collect()
    }

    /// Worker `worker` reports on partitions moving to it.
    pub(super) fn on_move_status(
        &mut self,
        worker: &WorkerId,
        attempt: u64,
        checkpoint: u64,
        partitions: &[PartitionId],
        phase: MovePhase,
        now: Instant,
    ) {
        if self.job.as_ref().and_then(|j| j.running_attempt()) != Some(attempt) {
            return;
        }
        match phase {
            MovePhase::Resumed => self.resumed(worker, checkpoint, partitions, now),
            MovePhase::Preloaded | MovePhase::PreloadFailed => {
                let Some(m) = self.moving.as_mut() else { return };
                let Some(preparing) = m.preparing.as_mut().filter(|p| p.checkpoint == checkpoint) else {
                    return;
                };
                // Only the partition's new owner speaks for it.
                let theirs: Vec<PartitionId> = (partitions.iter())
                    .filter(|p| m.partitions.iter().any(|(q, _, to)| q == *p && to == worker))
                    .copied()
                    .collect();
                if theirs.is_empty() {
                    return;
                }
                if phase == MovePhase::PreloadFailed {
                    return self.abandon_move(
                        format!("worker {worker} could not load partitions {theirs:?}"),
                        now,
                    );
                }
                for p in &theirs {
                    preparing.waiting.remove(p);
                }
                if preparing.waiting.is_empty() {
                    let (started, round) = (preparing.started, preparing.round);
                    m.preparing = None;
                    let newest = self.checkpoints.as_ref().and_then(|c| c.last_completed());
                    if newest.is_some_and(|n| n.0 > checkpoint + 1) && round < CATCH_UP_ROUNDS {
                        return self.prepare_round(now, started, round + 1);
                    }
                    if let Some(m) = self.moving.as_mut() {
                        m.preload_ms = Some(super::duration_ms(now.saturating_duration_since(started)));
                    }
                    self.trigger_move(now);
                }
            }
        }
    }

    /// Adopted partitions run again: their pause, from the move's trigger, is over.
    fn resumed(&mut self, worker: &WorkerId, checkpoint: u64, partitions: &[PartitionId], now: Instant) {
        for p in partitions {
            let matches = self
                .move_book
                .resuming
                .get(p)
                .is_some_and(|r| r.worker == *worker && r.checkpoint == checkpoint);
            let Some(r) = matches.then(|| self.move_book.resuming.remove(p)).flatten() else {
                continue;
            };
            self.out.push(Action::Event(ClusterEvent::Resumed {
                partition: *p,
                worker: worker.clone(),
                checkpoint,
                pause_ms: super::duration_ms(now.saturating_duration_since(r.triggered_at)),
                preload_ms: r.preload_ms,
            }));
        }
    }

    /// Time passed: a preparation past its deadline, or whose new owner went, is abandoned;
    /// once the pause after an abandoned move is over, the next move is planned.
    pub(super) fn tick_moves(&mut self, now: Instant) {
        if let Some(m) = self.moving.as_ref() {
            if let Some(preparing) = &m.preparing {
                let gone = m.partitions.iter().find(|(_, _, to)| {
                    self.workers
                        .get(to)
                        .is_none_or(|e| e.conn.is_none() || e.info.state == WorkerState::Failed)
                });
                if let Some((p, _, to)) = gone {
                    let reason = format!("worker {to} went before it loaded partition {p}");
                    return self.abandon_move(reason, now);
                }
                if now >= preparing.deadline {
                    let reason = format!(
                        "partitions {:?} not loaded within {:?}",
                        preparing.waiting, preparing.timeout
                    );
                    return self.abandon_move(reason, now);
                }
            }
        }
        if self.move_book.retry_at.is_some_and(|at| now >= at) {
            self.move_book.retry_at = None;
            self.reconcile(now);
        }
    }

    /// The move under way is given up before its barrier: nothing changed hands, the old
    /// owners keep running the partitions.
    fn abandon_move(&mut self, reason: String, now: Instant) {
        self.moving = None;
        self.move_book.retry_at = Some(now + RETRY_AFTER);
        self.out.push(Action::Log(Note::MoveAbandoned { reason }));
    }
}
