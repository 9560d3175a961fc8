//! The worker's session with the coordinator: apply assignments, heartbeat, and when the
//! connection is lost, reconnect with capped exponential backoff and register again.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::job_runner::JobRunner;
use super::tasks::TaskSet;
use super::{WorkerConfig, WorkerError};
use crate::network::{Connection, Transport};
use crate::protocol::{CoordinatorMessage, Hello, RegisterRequest, Role, WorkerMessage};
use crate::types::{Generation, PartitionId};

pub(crate) type WorkerConnection = Connection<WorkerMessage, CoordinatorMessage>;

/// How long a worker leaving during a checkpointed job waits for its partitions to move away
/// before it stops anyway (its partitions then recover from the last checkpoint elsewhere).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The first wait before retrying an unreachable coordinator; it doubles up to the configured cap.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// What the worker's owner can observe of the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The generation of the last assignment applied.
    pub generation: Generation,
    /// Partitions with a running task.
    pub partitions: Vec<PartitionId>,
    /// Whether the worker is registered with a coordinator right now.
    pub connected: bool,
}

enum Outcome {
    Left,
    Lost,
    Fenced(String),
}

pub(crate) struct Session {
    pub(crate) config: WorkerConfig,
    pub(crate) transport: Transport,
    pub(crate) incarnation: u64,
    pub(crate) address: String,
    pub(crate) tasks: TaskSet,
    pub(crate) generation: Generation,
    /// After this long without the coordinator, it has declared us failed: stop the tasks.
    pub(crate) presumed_dead_after: Duration,
    pub(crate) snapshot: watch::Sender<WorkerSnapshot>,
    /// The jobs this worker's binary can build, announced at registration.
    pub(crate) job_names: Vec<String>,
    /// Runs job attempts; set when the worker starts.
    pub(crate) jobs: Option<JobRunner>,
}

impl Session {
    /// Connects, registers, and waits for the coordinator's answer.
    pub(crate) async fn connect_and_register(&mut self) -> Result<WorkerConnection, WorkerError> {
        let addr = self.config.coordinator_address;
        let hello = Hello {
            role: Role::Worker,
            cluster: self.config.cluster_name.clone(),
        };
        let mut connection: WorkerConnection = self.transport.connect(addr, &hello).await.map_err(|e| {
            WorkerError::Communication(format!("cannot reach coordinator at {addr}: {}", e.reason()))
        })?;
        let mut requested = self.tasks.partitions();
        requested.extend(self.config.assigned_partitions.iter().copied());
        requested.sort_unstable();
        requested.dedup();
        let request = RegisterRequest {
            worker_id: self.config.worker_id.clone(),
            incarnation: self.incarnation,
            address: self.address.clone(),
            capacity: self.config.max_concurrent_tasks,
            requested,
            jobs: self.job_names.clone(),
        };
        let communication = |e: crate::protocol::ProtocolError| {
            WorkerError::Communication(format!("coordinator at {addr}: {e}"))
        };
        connection
            .send(WorkerMessage::Register(request))
            .await
            .map_err(communication)?;
        let answer = tokio::time::timeout(self.config.communication_timeout, connection.recv())
            .await
            .map_err(|_| {
                WorkerError::Communication(format!("coordinator at {addr} did not answer the registration"))
            })?;
        match answer.map_err(communication)? {
            Some(CoordinatorMessage::Registered {
                generation,
                heartbeat_timeout_ms,
                ..
            }) => {
                self.generation = generation;
                self.presumed_dead_after = Duration::from_millis(heartbeat_timeout_ms);
                self.publish(true);
                tracing::info!(worker = %self.config.worker_id, %addr, %generation, "registered with the coordinator");
                Ok(connection)
            }
            Some(CoordinatorMessage::RegistrationRefused { reason }) => {
                Err(WorkerError::RegistrationFailed(reason))
            }
            Some(other) => Err(WorkerError::Communication(format!(
                "unexpected answer to a registration: {other:?}"
            ))),
            None => Err(WorkerError::Communication(format!(
                "coordinator at {addr} closed the connection"
            ))),
        }
    }

    /// Runs until a graceful leave completes, or until a newer run of this worker id fences
    /// this one (the only error).
    pub(crate) async fn run(
        mut self,
        first: WorkerConnection,
        leave: CancellationToken,
        mut reports: mpsc::UnboundedReceiver<WorkerMessage>,
    ) -> Result<(), WorkerError> {
        let mut connection = Some(first);
        loop {
            let current = match connection.take() {
                Some(c) => c,
                None => match self.reconnect(&leave).await? {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            match self.serve(current, &leave, &mut reports).await {
                Outcome::Left => return Ok(()),
                Outcome::Lost => {
                    self.publish(false);
                    tracing::warn!(worker = %self.config.worker_id, "lost the coordinator; reconnecting");
                }
                Outcome::Fenced(reason) => return Err(self.fenced(reason).await),
            }
        }
    }

    async fn fenced(&mut self, reason: String) -> WorkerError {
        tracing::error!(worker = %self.config.worker_id, %reason, "fenced by the coordinator; stopping all tasks");
        self.stop_everything().await;
        self.publish(false);
        WorkerError::Fenced(reason)
    }

    async fn serve(
        &mut self,
        connection: WorkerConnection,
        leave: &CancellationToken,
        reports: &mut mpsc::UnboundedReceiver<WorkerMessage>,
    ) -> Outcome {
        let (mut reader, mut writer) = connection.split();
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Set while leaving with a checkpointed job: the partitions move away first, so the
        // tasks run (and heartbeats go on) until the coordinator's LeaveAck or this deadline.
        let mut draining: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = leave.cancelled(), if draining.is_none() && self.jobs.as_ref().is_some_and(JobRunner::carries_state) => {
                    tracing::info!(worker = %self.config.worker_id, "leaving: waiting for the partitions to move away with their state");
                    if writer.send(WorkerMessage::Leave).await.is_err() {
                        self.stop_everything().await;
                        self.publish(false);
                        return Outcome::Left;
                    }
                    draining = Some(tokio::time::Instant::now() + DRAIN_TIMEOUT);
                }
                _ = tokio::time::sleep_until(draining.unwrap_or_else(tokio::time::Instant::now)), if draining.is_some() => {
                    tracing::warn!(worker = %self.config.worker_id, "leaving without the coordinator's acknowledgement: the partitions did not move away in {DRAIN_TIMEOUT:?}");
                    self.stop_everything().await;
                    self.publish(false);
                    return Outcome::Left;
                }
                _ = leave.cancelled(), if draining.is_none() => {
                    // Stop first, so the coordinator can hand the partitions on at once.
                    self.stop_everything().await;
                    self.publish(false);
                    if writer.send(WorkerMessage::Leave).await.is_ok() {
                        let wait = async {
                            while let Ok(Some(message)) = reader.recv().await {
                                if message == CoordinatorMessage::LeaveAck {
                                    return true;
                                }
                            }
                            false
                        };
                        match tokio::time::timeout(self.config.communication_timeout, wait).await {
                            Ok(true) => tracing::info!(worker = %self.config.worker_id, "left the cluster"),
                            _ => tracing::warn!(worker = %self.config.worker_id, "leaving without the coordinator's acknowledgement"),
                        }
                    }
                    return Outcome::Left;
                }
                Some(report) = reports.recv() => {
                    if let Err(e) = writer.send(report).await {
                        tracing::warn!(error = %e, "job report failed");
                        return Outcome::Lost;
                    }
                }
                _ = heartbeat.tick() => {
                    let running = self.tasks.partitions();
                    let job = self.jobs.as_ref().and_then(JobRunner::progress);
                    if let Err(e) = writer.send(WorkerMessage::Heartbeat { running, job }).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                        return Outcome::Lost;
                    }
                }
                frame = reader.recv() => match frame {
                    Ok(Some(CoordinatorMessage::Assignment { generation, partitions })) => {
                        if generation < self.generation {
                            tracing::debug!(%generation, current = %self.generation, "dropping a stale assignment");
                            continue;
                        }
                        self.generation = generation;
                        self.tasks.apply(&partitions, generation).await;
                        self.publish(true);
                        let running = self.tasks.partitions();
                        if let Err(e) = writer.send(WorkerMessage::Ack { generation, running }).await {
                            tracing::warn!(error = %e, "acknowledgement failed");
                            return Outcome::Lost;
                        }
                    }
                    Ok(Some(CoordinatorMessage::Shutdown { reason })) => {
                        tracing::warn!(worker = %self.config.worker_id, %reason, "the coordinator ended our session; stopping all tasks");
                        self.stop_everything().await;
                        return Outcome::Lost;
                    }
                    Ok(Some(CoordinatorMessage::Fenced { reason })) => return Outcome::Fenced(reason),
                    Ok(Some(CoordinatorMessage::LeaveAck)) if draining.is_some() => {
                        self.stop_everything().await;
                        self.publish(false);
                        tracing::info!(worker = %self.config.worker_id, "left the cluster");
                        return Outcome::Left;
                    }
                    Ok(Some(CoordinatorMessage::StartJob { attempt, spec, owners, checkpoints })) => {
                        if let Some(jobs) = &mut self.jobs {
                            jobs.start(attempt, &spec.into(), &owners, checkpoints.as_ref());
                        }
                    }
                    Ok(Some(CoordinatorMessage::TriggerCheckpoint { attempt, id, moves })) => {
                        if let Some(jobs) = &self.jobs {
                            jobs.trigger(attempt, id, moves);
                        }
                    }
                    Ok(Some(CoordinatorMessage::AdoptPartitions { attempt, checkpoint, partitions, ended_sources })) => {
                        if let Some(jobs) = &self.jobs {
                            jobs.adopt(attempt, checkpoint, partitions, ended_sources);
                        }
                    }
                    Ok(Some(CoordinatorMessage::CommitEpochs { attempt, upto })) => {
                        if let Some(jobs) = &self.jobs {
                            jobs.commit_epochs(attempt, upto);
                        }
                    }
                    Ok(Some(CoordinatorMessage::StopJob { attempt })) => {
                        if let Some(jobs) = &mut self.jobs {
                            jobs.stop(attempt);
                        }
                    }
                    Ok(Some(other)) => tracing::debug!(message = ?other, "ignoring an unexpected message"),
                    Ok(None) => return Outcome::Lost,
                    Err(e) => {
                        tracing::warn!(error = %e, "connection to the coordinator failed");
                        return Outcome::Lost;
                    }
                }
            }
        }
    }

    /// Retries with capped exponential backoff until registered again, or `None` on leave.
    async fn reconnect(
        &mut self,
        leave: &CancellationToken,
    ) -> Result<Option<WorkerConnection>, WorkerError> {
        let lost_at = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0u32;
        loop {
            let unreachable_for = lost_at.elapsed();
            if !self.tasks.is_empty() && unreachable_for >= self.presumed_dead_after {
                tracing::warn!(
                    worker = %self.config.worker_id,
                    "coordinator unreachable for {}: it has moved our partitions, stopping our tasks",
                    humantime::format_duration(self.presumed_dead_after)
                );
                self.stop_everything().await;
                self.publish(false);
            }
            let mut wait = backoff;
            if !self.tasks.is_empty() {
                // Wake up in time to stop the tasks when the coordinator gives up on us.
                wait = wait.min(self.presumed_dead_after.saturating_sub(unreachable_for));
            }
            tokio::select! {
                _ = leave.cancelled() => {
                    self.stop_everything().await;
                    self.publish(false);
                    return Ok(None);
                }
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
            match self.connect_and_register().await {
                Ok(connection) => return Ok(Some(connection)),
                Err(WorkerError::Fenced(reason)) => return Err(self.fenced(reason).await),
                Err(e) => {
                    tracing::warn!(worker = %self.config.worker_id, attempt, error = %e, retry_in = ?backoff, "registration failed");
                    backoff = (backoff * 2).min(self.config.max_reconnect_backoff);
                }
            }
        }
    }

    /// Stops every partition task and the job attempt, if any.
    async fn stop_everything(&mut self) {
        if let Some(jobs) = &mut self.jobs {
            jobs.stop_all();
        }
        self.tasks.stop_all().await;
    }

    fn publish(&self, connected: bool) {
        self.snapshot.send_replace(WorkerSnapshot {
            generation: self.generation,
            partitions: self.tasks.partitions(),
            connected,
        });
    }
}
