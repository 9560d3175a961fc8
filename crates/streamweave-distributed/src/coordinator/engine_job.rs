//! The engine's side of job control: when the assignment is stable, start an attempt on it;
//! when it changes, stop the attempt; route workers' reports to [`JobControl`].

use std::time::Instant;

use super::{owned_by, Action, ClusterEvent, ConnId, Engine, JobReport};
use crate::coordinator::job_control::JobStep;
use crate::protocol::{CoordinatorMessage, JobState, PartitionOwner, RegisterRequest};

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
            JobReport::Failed { attempt, error } => {
                tracing::warn!(worker = %id, attempt, %error, "a job task failed");
                job.on_failure(attempt, format!("worker {id}: {error}"), now)
            }
        };
        self.execute_job_step(step);
    }

    /// Called after every change: starts or stops attempts as the assignment allows.
    pub(super) fn drive_job(&mut self) {
        let (Some(now), true) = (self.clock, self.job.is_some()) else {
            return;
        };
        // min_workers only holds back the first attempt: after a failure the survivors go on.
        let first = self.job.as_ref().is_some_and(|j| j.state() == JobState::Waiting);
        let stable = self.stable() && (!first || self.workers.len() >= self.config.min_workers);
        let generation = self.generation;
        let Some(job) = self.job.as_mut() else { return };
        let step = job.on_cluster(generation, stable, now);
        self.execute_job_step(step);
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
        Some(CoordinatorMessage::StartJob {
            attempt,
            spec: job.spec().clone(),
            owners,
        })
    }

    fn execute_job_step(&mut self, step: JobStep) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        match step {
            JobStep::Nothing => {}
            JobStep::Start(attempt) => {
                let Some(message) = self.start_message(attempt) else {
                    return;
                };
                self.out.push(Action::Event(ClusterEvent::JobStarted { attempt }));
                for conn in conns {
                    self.out.push(Action::Send {
                        conn,
                        message: message.clone(),
                    });
                }
            }
            JobStep::Stop(attempt) => {
                let state = self.job.as_ref().map_or(JobState::Failed, |j| j.state());
                self.out
                    .push(Action::Event(ClusterEvent::JobStopped { attempt, state }));
                for conn in conns {
                    self.out.push(Action::Send {
                        conn,
                        message: CoordinatorMessage::StopJob { attempt },
                    });
                }
            }
        }
    }
}
