//! Job bookkeeping on the coordinator, as plain synchronous code: which attempt runs, which
//! partitions have committed, when to abort and restart. The engine feeds it the cluster's
//! state and carries out the [`JobStep`]s it returns.
//!
//! ```text
//! Waiting --stable assignment--> Running --every partition done--> Finished
//!              ^                   |  generation changed / task failed
//!              +--- Restarting <---+  (after max_restarts restarts in a row: Failed)
//! ```
//!
//! The restart policy (Flink's fixed-delay strategy, with its exponential backoff): every
//! abort restarts the job, after a task failure with a delay that doubles up to 5 s, and a
//! completed checkpoint ([`JobControl::on_checkpoint_completed`]) resets both the count and the
//! delay. So a record that makes the job's code fail every time fails the job after
//! `max_restarts` restarts in a row, while a long job that keeps checkpointing between crashes
//! never runs out of restarts.
//!
//! An aborted attempt is restarted whole on the new assignment (from the last checkpoint, or
//! from the beginning without checkpoints, when its sinks' final files are replaced by the new
//! attempt's). Partitions that move while a checkpointed attempt runs do not abort it: the
//! engine moves them through a checkpoint and reports the new generation with [`JobControl::moved`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::dataflow::JobSpec;
use crate::protocol::{JobProgress, JobState, JobStatus};
use crate::types::{Generation, PartitionId, WorkerId};

/// Attempt ids a coordinator may use: the `e`-th coordinator to start on a data directory
/// numbers its attempts `e * ATTEMPTS_PER_EPOCH + 1, + 2, ...` (the first, `e = 0`: `1, 2, ...`),
/// so an attempt id never repeats across coordinator restarts while ids stay readable
/// (`3000000002`: the second attempt of the fourth coordinator).
pub const ATTEMPTS_PER_EPOCH: u64 = 1_000_000_000;

/// What the engine must do for the job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobStep {
    /// Nothing.
    Nothing,
    /// Tell every worker to run this attempt on the current assignment.
    Start(u64),
    /// Tell every worker to stop this attempt.
    Stop(u64),
    /// Every partition pre-committed its final output: tell the sinks to make it final.
    CommitFinal(u64),
}

/// The coordinator's view of its job.
#[derive(Debug)]
pub struct JobControl {
    spec: JobSpec,
    num_partitions: usize,
    max_restarts: u64,
    state: JobState,
    attempt: u64,
    generation: Option<Generation>,
    /// Restarts over the job's life (shown in the status).
    restarts: u64,
    /// Restarts since the last completed checkpoint: above `max_restarts` the job fails.
    restarts_in_row: u64,
    done: BTreeMap<PartitionId, u64>,
    sources_done: BTreeMap<PartitionId, u64>,
    progress: BTreeMap<WorkerId, JobProgress>,
    error: Option<String>,
    started: Option<Instant>,
    elapsed: Option<Duration>,
    /// Task failures since the last completed checkpoint: each one delays the next attempt a
    /// little more.
    failures: u32,
    /// Whether the final output is committed in a second phase (with checkpoints).
    final_commit: bool,
    /// Partitions whose final output is committed, in that second phase.
    committed: std::collections::BTreeSet<PartitionId>,
    /// A stop asked for: the checkpoint it waits for; the job is `Stopped` once every
    /// partition's sink has committed up to it ([`JobControl::request_stop`]).
    stop_at: Option<u64>,
    /// Partitions whose sinks committed up to `stop_at`.
    stop_committed: std::collections::BTreeSet<PartitionId>,
    /// The checkpoint the running attempt restored.
    restored: Option<u64>,
    /// Attempt ids of earlier coordinators on the same data directory are at most this.
    attempt_floor: u64,
    /// When the running attempt was aborted, until the next one starts.
    aborted_at: Option<Instant>,
    /// From the last abort to the start of the attempt after it.
    last_recovery: Option<Duration>,
    /// After a task failure, no attempt starts on the same assignment before this (a peer that
    /// just died has not been declared failed yet, and restarting at once would only fail
    /// again). A changed assignment (the dead peer removed) may start at once.
    not_before: Option<Instant>,
}

/// Why an attempt failed, naming where: `partition 3 on worker w2: panicked: poison record`.
pub fn task_failure(worker: &WorkerId, partition: Option<PartitionId>, error: &str) -> String {
    match partition {
        Some(p) => format!("partition {p} on worker {worker}: {error}"),
        None => format!("worker {worker}: {error}"),
    }
}

/// The delay before the attempt after the `n`-th task failure: 100 ms doubling, at most 5 s.
fn restart_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(6);
    (Duration::from_millis(100) * 2u32.pow(exp)).min(Duration::from_secs(5))
}

impl JobControl {
    /// A job waiting for its first attempt.
    pub fn new(spec: JobSpec, num_partitions: usize, max_restarts: u64) -> Self {
        JobControl {
            spec,
            num_partitions,
            max_restarts,
            state: JobState::Waiting,
            attempt: 0,
            generation: None,
            restarts: 0,
            restarts_in_row: 0,
            done: BTreeMap::new(),
            sources_done: BTreeMap::new(),
            progress: BTreeMap::new(),
            error: None,
            started: None,
            elapsed: None,
            failures: 0,
            not_before: None,
            aborted_at: None,
            last_recovery: None,
            final_commit: false,
            committed: std::collections::BTreeSet::new(),
            stop_at: None,
            stop_committed: std::collections::BTreeSet::new(),
            restored: None,
            attempt_floor: 0,
        }
    }

    /// This coordinator is the `epoch`-th on its data directory: its attempts are numbered
    /// above `epoch * ATTEMPTS_PER_EPOCH`, which no earlier coordinator reached.
    pub fn number_attempts_from_epoch(&mut self, epoch: u64) {
        self.attempt_floor = epoch.saturating_mul(ATTEMPTS_PER_EPOCH);
    }

    /// With `on`, the job finishes only once every partition's final output is committed
    /// ([`JobControl::on_epochs_committed`]) after all of them pre-committed it.
    pub fn with_final_commit(mut self, on: bool) -> Self {
        self.final_commit = on;
        self
    }

    /// The running attempt restored checkpoint `id` (shown in the status).
    pub fn restored_from(&mut self, id: Option<u64>) {
        self.restored = id;
    }

    /// Stop the running attempt once checkpoint `checkpoint` is committed and every partition's
    /// sink has made its epochs up to it final (a clean stop: `Stopped`, resumable from that
    /// checkpoint). Ignored unless an attempt runs.
    pub fn request_stop(&mut self, checkpoint: u64) {
        if self.state == JobState::Running {
            self.stop_at = Some(checkpoint);
            self.stop_committed.clear();
        }
    }

    /// Stop now, without a checkpoint (checkpoints are off: nothing is committed).
    pub fn stop_now(&mut self, now: Instant) -> JobStep {
        if self.ended() {
            return JobStep::Nothing;
        }
        self.state = JobState::Stopped;
        self.elapsed = self.started.map(|s| now.saturating_duration_since(s));
        JobStep::Stop(self.attempt)
    }

    /// The sinks of `partitions` committed epochs up to `upto`.
    pub fn on_epochs_committed(
        &mut self,
        attempt: u64,
        upto: u64,
        partitions: &[PartitionId],
        now: Instant,
    ) -> JobStep {
        if let Some(stop) = self.stop_at {
            if attempt == self.attempt && self.state == JobState::Running && upto >= stop {
                self.stop_committed
                    .extend(partitions.iter().copied().filter(|p| *p < self.num_partitions));
                if self.stop_committed.len() == self.num_partitions {
                    self.stop_at = None;
                    self.state = JobState::Stopped;
                    self.elapsed = self.started.map(|s| now.saturating_duration_since(s));
                    return JobStep::Stop(self.attempt);
                }
            }
        }
        if !self.final_commit
            || attempt != self.attempt
            || self.state != JobState::Running
            || upto != u64::MAX
        {
            return JobStep::Nothing;
        }
        self.committed
            .extend(partitions.iter().copied().filter(|p| *p < self.num_partitions));
        if self.committed.len() < self.num_partitions {
            return JobStep::Nothing;
        }
        self.state = JobState::Finished;
        self.elapsed = self.started.map(|s| now.saturating_duration_since(s));
        JobStep::Stop(self.attempt)
    }

    /// The job's spec.
    pub fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Where the job is.
    pub fn state(&self) -> JobState {
        self.state
    }

    /// The running attempt, if any.
    pub fn running_attempt(&self) -> Option<u64> {
        (self.state == JobState::Running).then_some(self.attempt)
    }

    fn ended(&self) -> bool {
        matches!(
            self.state,
            JobState::Finished | JobState::Failed | JobState::Stopped
        )
    }

    /// The assignment is now `generation`; `stable` when every partition has an owner that
    /// runs it and nothing is moving.
    pub fn on_cluster(&mut self, generation: Generation, stable: bool, now: Instant) -> JobStep {
        match self.state {
            JobState::Running if self.generation != Some(generation) => {
                self.aborted_at = Some(now);
                self.abort("the assignment changed (a worker failed, left or joined)".to_string())
            }
            JobState::Waiting | JobState::Restarting
                if stable
                    && (self.not_before.is_none_or(|t| now >= t) || self.generation != Some(generation)) =>
            {
                self.attempt = self.attempt.max(self.attempt_floor) + 1;
                self.generation = Some(generation);
                self.state = JobState::Running;
                self.done.clear();
                self.committed.clear();
                self.sources_done.clear();
                self.progress.clear();
                self.started.get_or_insert(now);
                if let Some(aborted) = self.aborted_at.take() {
                    self.last_recovery = Some(now.saturating_duration_since(aborted));
                }
                JobStep::Start(self.attempt)
            }
            _ => JobStep::Nothing,
        }
    }

    /// Partitions moved to new owners inside the running attempt (carrying their state through
    /// a checkpoint), making the assignment `generation`: the attempt goes on.
    pub fn moved(&mut self, generation: Generation) {
        if self.state == JobState::Running {
            self.generation = Some(generation);
        }
    }

    /// Whether partition `partition` of the running attempt has finished (its receiver is gone:
    /// it can no longer move inside the attempt).
    pub fn partition_done(&self, partition: PartitionId) -> bool {
        self.done.contains_key(&partition)
    }

    /// Whether every source partition has read all its input (the job is finishing: nothing
    /// moves any more).
    pub fn sources_finished(&self) -> bool {
        self.sources_done.len() >= self.num_partitions
    }

    /// Moving partitions inside the running attempt failed at `now`: the attempt is restarted
    /// from the last checkpoint on the assignment that follows.
    pub fn on_move_failed(&mut self, reason: String, now: Instant) -> JobStep {
        if self.state != JobState::Running {
            return JobStep::Nothing;
        }
        self.aborted_at = Some(now);
        self.abort(reason)
    }

    /// A worker reported progress.
    pub fn on_progress(&mut self, worker: &WorkerId, progress: JobProgress) {
        if progress.attempt == self.attempt && !self.ended() {
            self.progress.insert(worker.clone(), progress);
        }
    }

    /// A source partition read all its input.
    pub fn on_source_done(&mut self, attempt: u64, partition: PartitionId, records_in: u64) {
        if attempt == self.attempt && self.state == JobState::Running && partition < self.num_partitions {
            self.sources_done.insert(partition, records_in);
        }
    }

    /// A partition committed its output.
    pub fn on_partition_done(
        &mut self,
        attempt: u64,
        partition: PartitionId,
        records_out: u64,
        now: Instant,
    ) -> JobStep {
        if attempt != self.attempt || self.state != JobState::Running || partition >= self.num_partitions {
            return JobStep::Nothing;
        }
        self.done.insert(partition, records_out);
        if self.done.len() < self.num_partitions {
            return JobStep::Nothing;
        }
        if self.final_commit {
            return JobStep::CommitFinal(self.attempt);
        }
        self.state = JobState::Finished;
        self.elapsed = self.started.map(|s| now.saturating_duration_since(s));
        JobStep::Stop(self.attempt)
    }

    /// A checkpoint of the running attempt completed: the job made progress that a restart
    /// keeps, so the restarts in a row and the backoff start over.
    pub fn on_checkpoint_completed(&mut self) {
        self.restarts_in_row = 0;
        self.failures = 0;
    }

    /// The task of `partition` (or, without one, the attempt as a whole) on `worker` failed with
    /// `error` at `now`: as [`JobControl::on_failure`], with a reason that names where.
    pub fn on_task_failed(
        &mut self,
        attempt: u64,
        worker: &WorkerId,
        partition: Option<PartitionId>,
        error: &str,
        now: Instant,
    ) -> JobStep {
        self.on_failure(attempt, task_failure(worker, partition, error), now)
    }

    /// The running attempt failed at `now` (a task, or too many checkpoints in a row); the next
    /// attempt waits a little (more after every failure).
    pub fn on_failure(&mut self, attempt: u64, error: String, now: Instant) -> JobStep {
        if attempt != self.attempt || self.state != JobState::Running {
            return JobStep::Nothing;
        }
        self.failures += 1;
        self.not_before = Some(now + restart_delay(self.failures));
        self.aborted_at = Some(now);
        self.abort(error)
    }

    fn abort(&mut self, reason: String) -> JobStep {
        self.error = Some(reason);
        // A stop waits for its checkpoint in this attempt; the asker sees the restart and asks
        // again once the next attempt runs.
        self.stop_at = None;
        if self.restarts_in_row >= self.max_restarts {
            self.state = JobState::Failed;
        } else {
            self.restarts += 1;
            self.restarts_in_row += 1;
            self.state = JobState::Restarting;
        }
        JobStep::Stop(self.attempt)
    }

    /// The job's status at `now`.
    pub fn status(&self, now: Instant) -> JobStatus {
        // Exact once every source has reported; live (from heartbeats) until then. Live counts
        // can overlap for a moment (a partition that moved is counted by its new owner while
        // the old owner's last heartbeat still holds it), so they never override the exact one.
        let done: u64 = self.sources_done.values().sum();
        let records_in = if self.sources_done.len() == self.num_partitions {
            done
        } else {
            let live: u64 = self.progress.values().map(|p| p.records_in).sum();
            live.max(done)
        };
        let lag = match self.state {
            JobState::Running => self
                .progress
                .values()
                .filter_map(|p| p.lag)
                .reduce(u64::saturating_add),
            _ => None,
        };
        let elapsed = self
            .elapsed
            .or_else(|| self.started.map(|s| now.saturating_duration_since(s)));
        JobStatus {
            name: self.spec.name.clone(),
            state: self.state,
            attempt: self.attempt,
            restarts: self.restarts,
            records_in,
            records_out: self.done.values().sum(),
            lag,
            partitions_done: self.done.len(),
            elapsed_ms: elapsed.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            error: self.error.clone(),
            last_restored_checkpoint: self.restored,
            last_recovery_ms: self
                .last_recovery
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            output: self.spec.output.as_ref().map(|p| p.display().to_string()),
        }
    }
}

#[cfg(test)]
#[path = "job_control_tests.rs"]
mod tests;
