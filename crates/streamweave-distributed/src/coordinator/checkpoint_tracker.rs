//! Checkpoint bookkeeping on the coordinator, as plain synchronous code (Flink's
//! `CheckpointCoordinator`, Arroyo's `checkpoint_state.rs`, but small): when to trigger the next
//! asynchronous barrier checkpoint, which partitions have acknowledged it, when it is complete,
//! committed, timed out or aborted, and which completed checkpoints to keep. The engine feeds it
//! events with the time and carries out the [`CheckpointAction`]s it returns; it does no I/O and
//! reads no clock.
//!
//! ```text
//!         tick: interval passed since the last trigger (or start / abort / restore)
//!   idle ------------------------------------------------------------> in flight  [Trigger]
//!    ^  ^                                                                  |  |
//!    |  +-- tick past timeout / worker_lost / assignment_changed [Abort] --+  |
//!    |                                                                        |
//!    +--------------- every partition acked [Complete] <----------------------+
//!                              |
//!                              v   the shell writes the manifest, then calls committed(id)
//!                          completed --committed(id)--> committed [NotifySinks]
//! ```
//!
//! Timeouts in a row beyond `tolerable_failures` (Flink's tolerable checkpoint failures) also
//! emit [`CheckpointAction::FailAttempt`]: whatever holds the barriers up (a stuck task, a store
//! that cannot be written) is not retried forever; the attempt restarts from the last committed
//! checkpoint. A completed checkpoint, a start or a restore resets the count.
//!
//! Every triggered id ends in exactly one [`CheckpointAction::Abort`] or
//! [`CheckpointAction::Complete`]. A completed id is either committed, or superseded (a newer one
//! was committed first, or recovery discarded it) and forgotten. Ids start at 1, strictly
//! increase and are never reused, not even after an abort or a restore.
//!
//! The tracker remembers the newest `retain` committed checkpoints ([`CheckpointTracker::retained`])
//! but deletes nothing and says nothing about deleting: which files stay in the store is decided
//! in one place, the store's `retain` that the coordinator's disk writer runs after every commit
//! (it sees the store itself, so it also removes aborted checkpoints and an earlier run's leftovers).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::types::PartitionId;

/// A checkpoint's number (epoch). The first is 1; 0 is never used.
pub use crate::checkpoint::CheckpointId;

/// How often to checkpoint, how long to wait, how many to keep.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CheckpointConfig {
    /// The time from one trigger (or from the start, an abort or a restore) to the next.
    pub interval: Duration,
    /// A checkpoint pending longer than this is aborted.
    pub timeout: Duration,
    /// How many committed checkpoints to keep (`K`): the tracker remembers that many, and the
    /// store deletes older ones after each commit.
    pub retain: usize,
    /// How many checkpoints in a row may time out; the next timeout fails the attempt.
    pub tolerable_failures: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            retain: 3,
            tolerable_failures: 3,
        }
    }
}

impl CheckpointConfig {
    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval.is_zero() {
            return Err(ConfigError::new("checkpoint_interval", "must be above zero"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("checkpoint_timeout", "must be above zero"));
        }
        if self.retain == 0 {
            return Err(ConfigError::new("checkpoint_retain", "must be at least 1"));
        }
        Ok(())
    }
}

/// What one partition wrote for one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// Where the partition's state was written (a path or key in the checkpoint store).
    pub state_file: String,
    /// The state's size in bytes.
    pub state_bytes: u64,
    /// The crc32 of the state's bytes, as the worker stored them (the manifest records it, so
    /// the coordinator never reads the file).
    #[serde(default)]
    pub state_crc32: u32,
    /// The offset the partition's source had reached at the barrier, if it has a source.
    pub source_offset: Option<u64>,
    /// Whether the partition's source had read all its input by the barrier.
    #[serde(default)]
    pub source_exhausted: bool,
    /// The records the partition's source had read by the barrier (over the whole job).
    #[serde(default)]
    pub source_records: u64,
}

/// Why a checkpoint was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    /// It was pending longer than the timeout.
    Timeout,
    /// A worker was lost, so some partitions' snapshots may never come.
    WorkerLost,
    /// Partitions changed owners while it was pending.
    AssignmentChanged,
    /// The job was restored from an earlier checkpoint.
    Restored,
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AbortReason::Timeout => "timed out",
            AbortReason::WorkerLost => "a worker was lost",
            AbortReason::AssignmentChanged => "the assignment changed",
            AbortReason::Restored => "the job was restored",
        })
    }
}

/// What the shell must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckpointAction {
    /// Tell every source to inject barrier `id`.
    Trigger {
        /// The new checkpoint.
        id: CheckpointId,
    },
    /// Checkpoint `id` will never complete: tell the workers, delete whatever it wrote.
    Abort {
        /// The aborted checkpoint.
        id: CheckpointId,
        /// Why.
        reason: AbortReason,
    },
    /// Every partition has snapshotted `id`: write its manifest, then call
    /// [`CheckpointTracker::committed`].
    Complete {
        /// The completed checkpoint.
        id: CheckpointId,
        /// Every partition's snapshot.
        snapshots: BTreeMap<PartitionId, PartitionSnapshot>,
        /// From the trigger to the last acknowledgement.
        duration: Duration,
        /// The sum of the partitions' state sizes.
        size_bytes: u64,
    },
    /// `id` is durably committed: tell every sink to commit epoch `id` (which includes every
    /// earlier epoch not committed yet).
    NotifySinks {
        /// The committed checkpoint.
        id: CheckpointId,
    },
    /// More checkpoints in a row timed out than are tolerable: fail the running attempt (it
    /// restarts from the last committed checkpoint). Follows that many timeouts' `Abort`.
    FailAttempt {
        /// The checkpoints that timed out in a row.
        timeouts: u32,
    },
}

/// A summary for status and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints committed so far.
    pub completed: u64,
    /// Checkpoints aborted so far.
    pub aborted: u64,
    /// The newest committed checkpoint.
    pub last_completed: Option<CheckpointId>,
    /// How long the newest committed checkpoint took from trigger to last acknowledgement.
    pub last_duration: Option<Duration>,
    /// The bytes the newest committed checkpoint wrote (incremental: its deltas).
    pub last_size_bytes: Option<u64>,
    /// The bytes of state the newest committed checkpoint refers to (what a restore reads).
    pub state_bytes: Option<u64>,
    /// The checkpoint in flight.
    pub in_flight: Option<CheckpointId>,
}

/// The checkpoint in flight.
#[derive(Debug)]
struct InFlight {
    id: CheckpointId,
    triggered_at: Instant,
    acks: BTreeMap<PartitionId, PartitionSnapshot>,
}

/// A checkpoint every partition acknowledged.
#[derive(Clone, Debug)]
struct Done {
    snapshots: BTreeMap<PartitionId, PartitionSnapshot>,
    duration: Duration,
    size_bytes: u64,
    state_bytes: Option<u64>,
}

/// The coordinator's checkpoint bookkeeping, at most one checkpoint in flight (not the store,
/// `crate::checkpoint`, nor a worker's bookkeeping in `worker/checkpointing.rs`).
#[derive(Debug)]
pub struct CheckpointTracker {
    config: CheckpointConfig,
    num_partitions: usize,
    /// The id the next trigger uses; above every id used so far.
    next_id: CheckpointId,
    /// The interval is measured from here; `None` until [`Self::start`] or [`Self::restored`].
    baseline: Option<Instant>,
    in_flight: Option<InFlight>,
    /// Complete, waiting for the manifest (all newer than every committed one).
    completed: BTreeMap<CheckpointId, Done>,
    /// Committed and retained: at most `retain`.
    committed: BTreeMap<CheckpointId, Done>,
    committed_count: u64,
    aborted_count: u64,
    /// Checkpoints that timed out since the last complete one (or start, or restore).
    timeouts_in_row: u32,
}

impl CheckpointTracker {
    /// Bookkeeping for a job of `num_partitions` partitions; nothing triggers before
    /// [`Self::start`] or [`Self::restored`]. `config` is expected to pass
    /// [`CheckpointConfig::validate`].
    ///
    /// # Panics
    /// If `num_partitions` is 0.
    pub fn new(config: CheckpointConfig, num_partitions: usize) -> Self {
        assert!(num_partitions > 0, "a job has at least one partition");
        CheckpointTracker {
            config,
            num_partitions,
            next_id: CheckpointId(1),
            baseline: None,
            in_flight: None,
            completed: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_count: 0,
            aborted_count: 0,
            timeouts_in_row: 0,
        }
    }

    /// The job started at `now`: the first checkpoint triggers one interval later.
    pub fn start(&mut self, now: Instant) {
        self.baseline = Some(now);
        self.timeouts_in_row = 0;
    }

    /// Time passed: abort the checkpoint in flight if it timed out, or trigger the next one if
    /// none is in flight and the interval has passed. One tick does at most one of the two.
    pub fn tick(&mut self, now: Instant) -> Vec<CheckpointAction> {
        let Some(baseline) = self.baseline else {
            return Vec::new();
        };
        if let Some(in_flight) = &self.in_flight {
            if now.saturating_duration_since(in_flight.triggered_at) > self.config.timeout {
                let mut actions = self.abort_in_flight(AbortReason::Timeout, now);
                self.timeouts_in_row += 1;
                if self.timeouts_in_row > self.config.tolerable_failures {
                    actions.push(CheckpointAction::FailAttempt {
                        timeouts: std::mem::take(&mut self.timeouts_in_row),
                    });
                }
                return actions;
            }
            return Vec::new();
        }
        if now.saturating_duration_since(baseline) < self.config.interval {
            return Vec::new();
        }
        self.trigger(now)
    }

    fn trigger(&mut self, now: Instant) -> Vec<CheckpointAction> {
        let id = self.next_id;
        self.next_id = id.next();
        self.baseline = Some(now);
        self.in_flight = Some(InFlight {
            id,
            triggered_at: now,
            acks: BTreeMap::new(),
        });
        vec![CheckpointAction::Trigger { id }]
    }

    /// A checkpoint is wanted now (an operator asked): triggers one unless one is in flight.
    /// Returns the checkpoint that will answer the request (the one triggered or in flight),
    /// or `None` before the job started.
    pub fn request(&mut self, now: Instant) -> (Option<CheckpointId>, Vec<CheckpointAction>) {
        if self.baseline.is_none() {
            return (None, Vec::new());
        }
        if let Some(in_flight) = &self.in_flight {
            return (Some(in_flight.id), Vec::new());
        }
        let actions = self.trigger(now);
        (self.in_flight.as_ref().map(|f| f.id), actions)
    }

    /// Partition `partition` snapshotted checkpoint `id`. Ignored unless `id` is in flight and
    /// `partition` has not acknowledged it yet (the first acknowledgement counts).
    pub fn ack(
        &mut self,
        id: CheckpointId,
        partition: PartitionId,
        snapshot: PartitionSnapshot,
        now: Instant,
    ) -> Vec<CheckpointAction> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Vec::new();
        };
        if in_flight.id != id || partition >= self.num_partitions || in_flight.acks.contains_key(&partition) {
            return Vec::new();
        }
        in_flight.acks.insert(partition, snapshot);
        if in_flight.acks.len() < self.num_partitions {
            return Vec::new();
        }
        let InFlight {
            triggered_at, acks, ..
        } = self.in_flight.take().expect("in flight: acknowledged above");
        let done = Done {
            size_bytes: acks.values().map(|s| s.state_bytes).sum(),
            state_bytes: None,
            duration: now.saturating_duration_since(triggered_at),
            snapshots: acks,
        };
        let action = CheckpointAction::Complete {
            id,
            snapshots: done.snapshots.clone(),
            duration: done.duration,
            size_bytes: done.size_bytes,
        };
        self.completed.insert(id, done);
        self.timeouts_in_row = 0;
        vec![action]
    }

    /// Checkpoint `id`'s manifest: `written` bytes written, `state` bytes of state referred to.
    pub fn sizes(&mut self, id: CheckpointId, written: u64, state: u64) {
        let done = self.completed.get_mut(&id);
        if let Some(done) = done.or_else(|| self.committed.get_mut(&id)) {
            (done.size_bytes, done.state_bytes) = (written, Some(state));
        }
    }

    /// The store could not commit `id`: it will never be committed (a newer one may be).
    pub fn write_failed(&mut self, id: CheckpointId) {
        self.completed.remove(&id);
    }

    /// Whether a completed checkpoint waits for its manifest (the shell writes it off the
    /// engine): a new attempt must not start before the outcome is known, since it restores
    /// the newest committed checkpoint.
    pub fn awaiting_manifest(&self) -> bool {
        !self.completed.is_empty()
    }

    /// Ids up to `id` are taken (found in the store at start-up, committed or not): new
    /// checkpoints are numbered above it.
    pub fn ids_above(&mut self, id: CheckpointId) {
        self.next_id = self.next_id.max(id.next());
    }

    /// The store durably committed `id` (its manifest is written): tell the sinks. Ignored
    /// unless `id` completed and is not committed. Completed checkpoints older than `id` are
    /// superseded and forgotten, so commit in id order; only the newest `retain` committed ones
    /// are remembered.
    pub fn committed(&mut self, id: CheckpointId) -> Vec<CheckpointAction> {
        let Some(done) = self.completed.remove(&id) else {
            return Vec::new();
        };
        self.completed = self.completed.split_off(&id);
        self.committed.insert(id, done);
        self.committed_count += 1;
        while self.committed.len() > self.config.retain {
            self.committed.pop_first();
        }
        vec![CheckpointAction::NotifySinks { id }]
    }

    /// A worker found committed checkpoint `id` damaged (a state file missing or corrupt) when
    /// it read it: it is forgotten, so that recovery restores the newest one before it. True if
    /// it was remembered.
    pub fn damaged(&mut self, id: CheckpointId) -> bool {
        self.committed.remove(&id).is_some()
    }

    /// A worker was lost: abort the checkpoint in flight, if any.
    pub fn worker_lost(&mut self, now: Instant) -> Vec<CheckpointAction> {
        self.abort_in_flight(AbortReason::WorkerLost, now)
    }

    /// Partitions changed owners: abort the checkpoint in flight, if any.
    pub fn assignment_changed(&mut self, now: Instant) -> Vec<CheckpointAction> {
        self.abort_in_flight(AbortReason::AssignmentChanged, now)
    }

    /// The job recovered from checkpoint `id` at `now`. Aborts the checkpoint in flight; forgets
    /// the completed but uncommitted ones and any committed one newer than `id` (the shell fell
    /// back past it, e.g. because it was corrupt), since the tasks rewound to `id`. The next
    /// checkpoint triggers one interval after `now`, with an id above every id used so far and
    /// above `id`.
    pub fn restored(&mut self, id: CheckpointId, now: Instant) -> Vec<CheckpointAction> {
        let actions = self.abort_in_flight(AbortReason::Restored, now);
        self.committed.split_off(&id.next());
        self.completed.clear();
        self.next_id = self.next_id.max(id.next());
        self.baseline = Some(now);
        self.timeouts_in_row = 0;
        actions
    }

    /// A committed checkpoint found in the store when the coordinator (re)started: recovery
    /// restores from it, and new ids continue above it.
    pub fn recovered(&mut self, id: CheckpointId, snapshots: BTreeMap<PartitionId, PartitionSnapshot>) {
        let size_bytes = snapshots.values().map(|s| s.state_bytes).sum();
        self.committed.insert(
            id,
            Done {
                snapshots,
                duration: Duration::ZERO,
                size_bytes,
                state_bytes: None,
            },
        );
        while self.committed.len() > self.config.retain {
            self.committed.pop_first();
        }
        self.next_id = self.next_id.max(id.next());
    }

    /// The newest committed checkpoint and its snapshots: what recovery restores from.
    pub fn restore_point(&self) -> Option<(CheckpointId, BTreeMap<PartitionId, PartitionSnapshot>)> {
        self.committed
            .last_key_value()
            .map(|(id, done)| (*id, done.snapshots.clone()))
    }

    /// The newest committed checkpoint.
    pub fn last_completed(&self) -> Option<CheckpointId> {
        self.committed.last_key_value().map(|(id, _)| *id)
    }

    /// The checkpoint in flight.
    pub fn in_flight(&self) -> Option<CheckpointId> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    /// The retained committed checkpoints, oldest first.
    pub fn retained(&self) -> Vec<CheckpointId> {
        self.committed.keys().copied().collect()
    }

    /// A summary for status and metrics.
    pub fn stats(&self) -> CheckpointStats {
        let last = self.committed.last_key_value();
        CheckpointStats {
            completed: self.committed_count,
            aborted: self.aborted_count,
            last_completed: last.map(|(id, _)| *id),
            last_duration: last.map(|(_, d)| d.duration),
            last_size_bytes: last.map(|(_, d)| d.size_bytes),
            state_bytes: last.and_then(|(_, d)| d.state_bytes),
            in_flight: self.in_flight(),
        }
    }

    /// Aborts the checkpoint in flight, if any; the next one triggers one interval after `now`.
    fn abort_in_flight(&mut self, reason: AbortReason, now: Instant) -> Vec<CheckpointAction> {
        let Some(in_flight) = self.in_flight.take() else {
            return Vec::new();
        };
        self.aborted_count += 1;
        self.baseline = Some(now);
        vec![CheckpointAction::Abort {
            id: in_flight.id,
            reason,
        }]
    }
}

#[cfg(test)]
#[path = "checkpoint_tracker_tests.rs"]
mod tests;
