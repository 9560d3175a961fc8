//! The engine's side of job control: when the assignment is stable, start an attempt on it
//! (restoring the last checkpoint when there is one); when it changes, stop the attempt; route
//! workers' reports to [`JobControl`] and, with checkpoints on, drive the
//! [`CheckpointTracker`](super::super::checkpoint_tracker::CheckpointTracker).
//!
//! ```text
//! Tick --> checkpoints.tick --Trigger{id}--> TriggerCheckpoint{attempt,id} to every worker
//! CheckpointAck x P --> Complete --> Action::WriteCheckpoint --> shell writes the manifest
//!   --> Input::CheckpointWritten --> committed --> CommitEpochs{attempt, upto: id} to every worker
//! every PartitionDone --> (checkpoints) CommitEpochs{upto: MAX} --> EpochsCommitted x P --> Finished
//! ```

use std::time::Instant;

use super::{Action, ClusterEvent, ConnId, Engine, JobReport, Note};
use crate::coordinator::assignment::owned_by;
use crate::coordinator::checkpoint_tracker::{CheckpointAction, CheckpointId, PartitionSnapshot};
use crate::coordinator::job_control::JobStep;
use crate::coordinator::{CoordinatorError, RecoveryStrategy};
use crate::protocol::{
    CheckpointPlan, CheckpointStatus, CoordinatorMessage, JobState, PartitionOwner, RegisterRequest,
    RestorePoint,
};

impl Engine {
    /// Every partition has an owner that runs exactly what it owns, and nothing is moving.
    pub(super) fn stable(&self) -> bool {
        self.owner.iter().all(Option::is_some)
            && self.revoking.is_empty()
            && self.granting.is_empty()
            && self
                .workers
                .values()
                .all(|e| e.running == owned_by(&self.owner, &e.info.id))
    }

    /// Every owner of a partition can be told to start an attempt: one whose connection closed
    /// would miss the start and its peers would fail on it, so the attempt waits until it
    /// reconnects or departs (a peer's report or the heartbeat timeout), instead of restarting
    /// over and over on a dead worker, each restart counted against `max_restarts`.
    fn owners_connected(&self) -> bool {
        self.owner
            .iter()
            .flatten()
            .all(|w| self.workers.get(w).is_some_and(|e| e.conn.is_some()))
    }

    /// Why a worker cannot join this coordinator's job, if it cannot.
    pub(super) fn job_refusal(&self, request: &RegisterRequest) -> Option<String> {
        let job = self.job.as_ref()?;
        let name = &job.spec().name;
        (!request.jobs.contains(name)).then(|| {
            format!(
                "worker {} cannot run job {name:?}: its binary has {}",
                request.worker_id,
                if request.jobs.is_empty() {
                    "no jobs".to_string()
                } else {
                    request.jobs.join(", ")
                }
            )
        })
    }

    pub(super) fn on_job_report(&mut self, conn: ConnId, report: JobReport, now: Instant) {
        let Some(id) = self.conns.get(&conn).cloned() else {
            return;
        };
        if let JobReport::MoveStatus {
            attempt,
            checkpoint,
            partitions,
            phase,
        } = report
        {
            return self.on_move_status(&id, attempt, checkpoint, &partitions, phase, now);
        }
        let Some(job) = self.job.as_mut() else { return };
        let step = match report {
            JobReport::Progress(progress) => {
                job.on_progress(&id, progress);
                JobStep::Nothing
            }
            JobReport::SourceDone {
                attempt,
                partition,
                records_in,
            } => {
                job.on_source_done(attempt, partition, records_in);
                JobStep::Nothing
            }
            JobReport::PartitionDone {
                attempt,
                partition,
                records_out,
            } => job.on_partition_done(attempt, partition, records_out, now),
            JobReport::Failed {
                attempt,
                partition,
                error,
                damaged_checkpoint,
                unreachable_peer,
            } => {
                if let (Some(checkpoint), Some(c)) = (damaged_checkpoint, self.checkpoints.as_mut()) {
                    // Retrying it would fail the same way: the next attempt restores the one
                    // before (the sinks discard what was made final after it).
                    if c.damaged(CheckpointId(checkpoint)) {
                        self.out.push(Action::Log(Note::CheckpointDamaged {
                            checkpoint,
                            error: error.clone(),
                        }));
                    }
                }
                self.out.push(Action::Log(Note::TaskFailed {
                    worker: id.clone(),
                    attempt,
                    partition,
                    error: error.clone(),
                }));
                let step = job.on_task_failed(attempt, &id, partition, &error, now);
                if let Some(peer) = unreachable_peer {
                    self.execute_job_step(step, now);
                    return self.on_peer_unreachable(&id, peer, now);
                }
                step
            }
            JobReport::EpochsCommitted {
                attempt,
                upto,
                partitions,
            } => job.on_epochs_committed(attempt, upto, &partitions, now),
            JobReport::MoveStatus { .. } => JobStep::Nothing,
            JobReport::CheckpointAck {
                attempt,
                id: checkpoint,
                partition,
                snapshot,
                ended_sources,
            } => {
                if job.running_attempt() != Some(attempt) {
                    return;
                }
                self.adopt_on_ack(&id, checkpoint, partition, &snapshot, ended_sources, now);
                let actions = match self.checkpoints.as_mut() {
                    Some(c) => c.ack(CheckpointId(checkpoint), partition, snapshot, now),
                    None => Vec::new(),
                };
                self.checkpoint_actions(actions, now);
                JobStep::Nothing
            }
        };
        self.execute_job_step(step, now);
    }

    /// Time passed: maybe trigger (or time out) a checkpoint of the running attempt.
    pub(super) fn tick_checkpoints(&mut self, now: Instant) {
        if self.job.as_ref().and_then(|j| j.running_attempt()).is_none() {
            return;
        }
        self.tick_moves(now);
        if self.moving.as_ref().is_some_and(|m| m.preparing.is_none()) {
            // A move's checkpoint goes next; after it, nothing new until the move completes
            // (only the timeout of the one in flight is watched). While its new owners load
            // the state ahead, checkpoints go on as usual.
            self.trigger_move(now);
            if self.checkpoints.as_ref().is_none_or(|c| c.in_flight().is_none()) {
                return;
            }
        }
        let actions = match self.checkpoints.as_mut() {
            Some(c) => c.tick(now),
            None => return,
        };
        self.checkpoint_actions(actions, now);
    }

    /// The shell wrote (or failed to write) a checkpoint's manifest.
    pub(super) fn on_checkpoint_written(&mut self, id: u64, result: Result<(), String>, now: Instant) {
        if let Err(error) = result {
            self.out.push(Action::Log(Note::CheckpointNotWritten {
                checkpoint: id,
                error: error.clone(),
            }));
            if let Some(c) = self.checkpoints.as_mut() {
                c.write_failed(CheckpointId(id));
            }
            if self.move_waits_for(id) {
                self.move_failed(format!("checkpoint {id} could not be written: {error}"), now);
            }
            return;
        }
        let actions = match self.checkpoints.as_mut() {
            Some(c) => c.committed(CheckpointId(id)),
            None => return,
        };
        self.checkpoint_actions(actions, now);
    }

    /// Carries out the tracker's decisions. An abort is noted (and fails the move it carried)
    /// even when no attempt runs, as when the attempt it belonged to was just stopped; the other
    /// actions concern the running attempt and are moot without one.
    pub(super) fn checkpoint_actions(&mut self, actions: Vec<CheckpointAction>, now: Instant) {
        let running = self.job.as_ref().and_then(|j| j.running_attempt());
        for action in actions {
            match (action, running) {
                (CheckpointAction::Abort { id, reason }, _) => {
                    self.out.push(Action::Log(Note::CheckpointAborted {
                        checkpoint: id.0,
                        reason: reason.to_string(),
                    }));
                    if self.move_waits_for(id.0) {
                        self.move_failed(format!("checkpoint {id} was aborted: {reason}"), now);
                    }
                }
                (_, None) => {}
                (CheckpointAction::Trigger { id }, Some(attempt)) => {
                    let moves = self.moves_of(id.0);
                    let keep_chains = self.keep_chains();
                    self.broadcast(CoordinatorMessage::TriggerCheckpoint {
                        attempt,
                        id: id.0,
                        moves,
                        keep_chains,
                    });
                }
                (CheckpointAction::Complete { id, snapshots, .. }, Some(attempt)) => {
                    self.out.push(Action::WriteCheckpoint {
                        id: id.0,
                        attempt,
                        snapshots,
                        retain: self.config.checkpoint_retain,
                    })
                }
                (CheckpointAction::NotifySinks { id }, Some(attempt)) => {
                    if self.config.recovery_strategy == RecoveryStrategy::FromCheckpoint {
                        // Progress a restart keeps (from the beginning, it keeps none).
                        if let Some(job) = self.job.as_mut() {
                            job.on_checkpoint_completed();
                        }
                    }
                    self.broadcast(CoordinatorMessage::CommitEpochs { attempt, upto: id.0 });
                    if self.move_waits_for(id.0) {
                        self.complete_move(id.0, now);
                    }
                }
                (CheckpointAction::FailAttempt { timeouts }, Some(attempt)) => {
                    let reason = format!(
                        "{timeouts} checkpoints in a row timed out (tolerable: {})",
                        self.config.tolerable_checkpoint_failures
                    );
                    self.out.push(Action::Log(Note::FailingAttempt {
                        attempt,
                        reason: reason.clone(),
                    }));
                    let step = match self.job.as_mut() {
                        Some(job) => job.on_failure(attempt, reason, now),
                        None => JobStep::Nothing,
                    };
                    self.execute_job_step(step, now);
                }
            }
        }
    }

    fn broadcast(&mut self, message: CoordinatorMessage) {
        for &conn in self.conns.keys() {
            self.out.push(Action::Send {
                conn,
                message: message.clone(),
            });
        }
    }

    /// Called after every change: starts or stops attempts as the assignment allows.
    pub(super) fn drive_job(&mut self, now: Instant) {
        if self.job.is_none() {
            return;
        }
        // min_workers only holds back the first attempt: after a failure the survivors go on.
        let first = self.job.as_ref().is_some_and(|j| j.state() == JobState::Waiting);
        // A manifest being written may become the checkpoint the next attempt restores: wait
        // for its outcome (the attempt would otherwise rewind past output it made final).
        let writing = self.checkpoints.as_ref().is_some_and(|c| c.awaiting_manifest());
        let stable = self.stable()
            && !writing
            && self.owners_connected()
            && (!first || self.workers.len() >= self.config.min_workers);
        let generation = self.generation;
        let Some(job) = self.job.as_mut() else { return };
        let step = job.on_cluster(generation, stable, now);
        self.execute_job_step(step, now);
    }

    /// Sends the running attempt to a worker that reconnected.
    pub(super) fn resend_job(&mut self, conn: ConnId) {
        let Some(attempt) = self.job.as_ref().and_then(|j| j.running_attempt()) else {
            return;
        };
        if let Some(message) = self.start_message(attempt) {
            self.out.push(Action::Send { conn, message });
        }
    }

    /// What a new attempt restores: the last committed checkpoint, unless recovery is from the
    /// beginning.
    fn restore_point(
        &self,
    ) -> Option<(
        CheckpointId,
        std::collections::BTreeMap<crate::types::PartitionId, PartitionSnapshot>,
    )> {
        if self.config.recovery_strategy == RecoveryStrategy::FromBeginning {
            return None;
        }
        self.checkpoints.as_ref()?.restore_point()
    }

    fn start_message(&self, attempt: u64) -> Option<CoordinatorMessage> {
        let job = self.job.as_ref()?;
        let owners = self
            .owner
            .iter()
            .map(|owner| {
                let worker = owner.clone()?;
                let address = self.workers.get(&worker)?.info.address.clone();
                Some(PartitionOwner { worker, address })
            })
            .collect::<Option<Vec<_>>>()?;
        let checkpoints = self.config.checkpoint_store().map(|url| CheckpointPlan {
            store_dir: url.to_string(),
            restore: self.restore_point().map(|(id, snapshots)| RestorePoint {
                id: id.0,
                partitions: (0..self.config.num_partitions)
                    .map(|p| {
                        snapshots.get(&p).map_or((String::new(), 0), |s| {
                            (s.state_file.clone(), s.source_offset.unwrap_or(0))
                        })
                    })
                    .collect(),
                source_records: (0..self.config.num_partitions)
                    .map(|p| snapshots.get(&p).map_or(0, |s| s.source_records))
                    .collect(),
            }),
        });
        Some(CoordinatorMessage::StartJob {
            attempt,
            spec: job.spec().clone().into(),
            owners,
            checkpoints,
        })
    }

    pub(super) fn execute_job_step(&mut self, step: JobStep, now: Instant) {
        if matches!(step, JobStep::Start(_) | JobStep::Stop(_)) {
            // A move belongs to its attempt.
            self.moving = None;
            self.move_book.resuming.clear();
        }
        match step {
            JobStep::Nothing => {}
            JobStep::Start(attempt) => {
                let restore = self.restore_point().map(|(id, _)| id);
                let Some(message) = self.start_message(attempt) else {
                    return;
                };
                // Restoring aborts a checkpoint still in flight (noted like any abort).
                let aborted = match (self.checkpoints.as_mut(), restore) {
                    (Some(c), Some(id)) => c.restored(id, now),
                    (Some(c), None) => {
                        c.start(now);
                        Vec::new()
                    }
                    (None, _) => Vec::new(),
                };
                self.checkpoint_actions(aborted, now);
                if let Some(job) = self.job.as_mut() {
                    job.restored_from(restore.map(|id| id.0));
                }
                self.out.push(Action::Event(ClusterEvent::JobStarted {
                    attempt,
                    restored: restore.map(|id| id.0),
                }));
                self.broadcast(message);
            }
            JobStep::Stop(attempt) => {
                // The stopped attempt's checkpoint in flight is aborted (and noted).
                let aborted = self
                    .checkpoints
                    .as_mut()
                    .map_or_else(Vec::new, |c| c.assignment_changed(now));
                self.checkpoint_actions(aborted, now);
                let state = self.job.as_ref().map_or(JobState::Failed, |j| j.state());
                self.out
                    .push(Action::Event(ClusterEvent::JobStopped { attempt, state }));
                self.broadcast(CoordinatorMessage::StopJob { attempt });
            }
            JobStep::CommitFinal(attempt) => {
                self.broadcast(CoordinatorMessage::CommitEpochs {
                    attempt,
                    upto: u64::MAX,
                });
            }
        }
    }

    /// Seeds recovery with a committed checkpoint found in the store at start-up (a restarted
    /// coordinator): the job's first attempt resumes from it. `snapshots` has every
    /// partition's entry of its manifest.
    pub fn resume_from_checkpoint(
        &mut self,
        id: u64,
        snapshots: std::collections::BTreeMap<crate::types::PartitionId, PartitionSnapshot>,
    ) {
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.recovered(CheckpointId(id), snapshots);
        }
    }

    /// Checkpoint ids up to `id` were used by an earlier coordinator on this data directory
    /// (committed or not): new checkpoints are numbered above them, so no worker or sink ever
    /// mistakes an old checkpoint's files for a new one's.
    pub fn checkpoint_ids_above(&mut self, id: u64) {
        if let Some(checkpoints) = self.checkpoints.as_mut() {
            checkpoints.ids_above(CheckpointId(id));
        }
    }

    /// This coordinator is the `epoch`-th to start on its data directory (0: the first, or no
    /// data directory): its attempts are numbered above every attempt of the earlier ones
    /// (see [`ATTEMPTS_PER_EPOCH`](crate::coordinator::job_control::ATTEMPTS_PER_EPOCH)), so
    /// the workers, still running an attempt of a coordinator that died, replace it with this
    /// one's instead of taking the new start for the attempt they run.
    pub fn set_epoch(&mut self, epoch: u64) {
        if let Some(job) = self.job.as_mut() {
            job.number_attempts_from_epoch(epoch);
        }
    }

    /// Takes a checkpoint of the running job now; returns its id (or the one already in flight).
    pub fn request_checkpoint(&mut self, now: Instant) -> Result<(u64, Vec<Action>), CoordinatorError> {
        if self.job.as_ref().and_then(|j| j.running_attempt()).is_none() {
            return Err(CoordinatorError::NoJob("no job attempt is running".to_string()));
        }
        let Some(checkpoints) = self.checkpoints.as_mut() else {
            return Err(CoordinatorError::CheckpointsOff);
        };
        let (id, actions) = checkpoints.request(now);
        let id = id.ok_or_else(|| CoordinatorError::NoJob("the job has not started".to_string()))?;
        self.checkpoint_actions(actions, now);
        Ok((id.0, std::mem::take(&mut self.out)))
    }

    /// Stops the running job cleanly: with checkpoints, triggers a final one (or joins the one in
    /// flight) and the job becomes `Stopped` once every partition's sink has made its epochs up
    /// to it final; without, stops the attempt at once. Returns the final checkpoint.
    pub fn stop_job(&mut self, now: Instant) -> Result<(Option<u64>, Vec<Action>), CoordinatorError> {
        let Some(job) = self.job.as_mut() else {
            return Err(CoordinatorError::NoJob("no job".to_string()));
        };
        if job.running_attempt().is_none() {
            return Err(CoordinatorError::NoJob(
                format!("the job is {:?}", job.state()).to_lowercase(),
            ));
        }
        if self.checkpoints.is_none() {
            let step = job.stop_now(now);
            self.execute_job_step(step, now);
            return Ok((None, std::mem::take(&mut self.out)));
        }
        let (id, actions) = self.request_checkpoint(now)?;
        if let Some(job) = self.job.as_mut() {
            job.request_stop(id);
        }
        Ok((Some(id), actions))
    }

    /// The checkpoints' part of the status.
    pub(super) fn checkpoint_status(&self) -> Option<CheckpointStatus> {
        let stats = self.checkpoints.as_ref()?.stats();
        Some(CheckpointStatus {
            completed: stats.completed,
            last_completed: stats.last_completed.map(|id| id.0),
            last_duration_ms: stats
                .last_duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            last_size_bytes: stats.last_size_bytes,
            state_bytes: stats.state_bytes,
            in_flight: stats.in_flight.map(|id| id.0),
        })
    }
}
