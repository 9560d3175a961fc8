//! The worker's session with the coordinator, as a thin async shell around
//! [`SessionCore`](super::session_core::SessionCore): it owns the connection, the task set and
//! the job runner, turns what happens (frames, reports, the leave token, the core's deadline)
//! into [`SessionInput`]s, and carries out the [`SessionAction`]s the core returns. Every
//! decision (heartbeats, generations, backoff, the lost-coordinator rule, leaving) is the core's.
//!
//! ```text
//!  leave token / core deadline / job reports / ended tasks / coordinator frames
//!  (a job task of the runner that ends goes to the runner, whose report comes back as a report)
//!        |                                                ^
//!        v                                                | Send / Heartbeat
//!   SessionInput --> SessionCore::on_event(now) --> SessionAction
//!                                                    | Apply / StopAll -> TaskSet, JobRunner
//!                                                    | Connect -> register again -> SessionInput
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::coordinators::Coordinators;
use super::job_runner::JobRunner;
use super::partition_tasks::TaskSet;
use super::session_core::SessionCore;
use super::session_events::{SessionAction, SessionEnd, SessionInput, SessionNote, WorkerSnapshot};
use super::{WorkerConfig, WorkerError};
use crate::network::{Connection, ConnectionReader, ConnectionWriter, Transport};
use crate::protocol::{CoordinatorMessage, Hello, RegisterRequest, Role, WorkerMessage};

pub(crate) type WorkerConnection = Connection<WorkerMessage, CoordinatorMessage>;

/// The two halves of the coordinator connection while the session uses it.
type Link = (
    ConnectionReader<CoordinatorMessage>,
    ConnectionWriter<WorkerMessage>,
);

/// What the run loop does after an action.
enum Flow {
    Continue,
    /// A send failed: the connection is lost.
    Lost,
    /// Register again and feed the result.
    Connect,
    Exit(SessionEnd),
}

pub(crate) struct Session {
    pub(crate) config: WorkerConfig,
    pub(crate) transport: Transport,
    pub(crate) incarnation: u64,
    pub(crate) address: String,
    pub(crate) tasks: TaskSet,
    /// Every decision of the session.
    pub(crate) core: SessionCore,
    pub(crate) snapshot: watch::Sender<WorkerSnapshot>,
    /// The jobs this worker's binary can build, announced at registration.
    pub(crate) job_names: Vec<String>,
    /// Runs job attempts; set when the worker starts.
    pub(crate) jobs: Option<JobRunner>,
    /// The coordinators to register with (several with high availability).
    pub(crate) coordinators: Coordinators,
}

/// The session's clock: tokio's, so tests with paused time drive it too.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Session {
    /// Connects, registers, waits for the coordinator's answer and tells the core.
    pub(crate) async fn connect_and_register(&mut self) -> Result<WorkerConnection, WorkerError> {
        let (connection, registered) = self.register_once().await?;
        let mut no_link = None;
        for action in self.core.on_event(registered, now()) {
            // Registration only publishes and logs; nothing here can need the connection.
            self.execute(action, &mut no_link).await;
        }
        Ok(connection)
    }

    /// The data-plane address to announce: the configured advertised one, else the bound one
    /// with an unspecified IP replaced by `local`, the IP this worker reaches the coordinator
    /// from (other workers are on the coordinator's side of the network too).
    fn announced_address(&self, local: std::net::SocketAddr) -> String {
        if let Some(advertised) = &self.config.advertise_address {
            return advertised.clone();
        }
        match self.address.parse::<std::net::SocketAddr>() {
            Ok(bound) if bound.ip().is_unspecified() => {
                std::net::SocketAddr::new(local.ip(), bound.port()).to_string()
            }
            _ => self.address.clone(),
        }
    }

    /// One registration attempt: each coordinator in turn (several in a highly available
    /// cluster) until one accepts as leader; on success, the input for the core.
    async fn register_once(&mut self) -> Result<(WorkerConnection, SessionInput), WorkerError> {
        let mut round = self.coordinators.round();
        let mut last = None;
        while let Some(addr) = round.next() {
            match self.register_at(addr).await {
                Ok(Ok(registered)) => {
                    self.coordinators.accepted(addr);
                    return Ok(registered);
                }
                Ok(Err(leader)) => {
                    tracing::info!(%addr, ?leader, "that coordinator is a standby; trying the leader");
                    // Retryable: during an election no coordinator leads for a moment.
                    last = Some(WorkerError::Communication(format!(
                        "coordinator at {addr} is a standby (leader: {})",
                        leader.as_deref().unwrap_or("unknown")
                    )));
                    round.not_leader(leader.as_deref());
                }
                // Refused by the leader, or fenced: final.
                Err(e @ (WorkerError::Fenced(_) | WorkerError::RegistrationFailed(_))) => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| WorkerError::Communication("no coordinator to register with".into())))
    }

    /// Registers with the coordinator at `addr`; `Ok(Err(leader))`: it is a standby.
    async fn register_at(
        &mut self,
        addr: std::net::SocketAddr,
    ) -> Result<Result<(WorkerConnection, SessionInput), Option<String>>, WorkerError> {
        let hello = Hello {
            role: Role::Worker,
            cluster: self.config.cluster_name.clone(),
        };
        let mut connection: WorkerConnection = self.transport.connect(addr, &hello).await.map_err(|e| {
            if e.is_refusal() {
                // Final: a wrong secret or certificate does not fix itself.
                return WorkerError::RegistrationFailed(format!("coordinator at {addr}: {}", e.reason()));
            }
            WorkerError::Communication(format!("cannot reach coordinator at {addr}: {}", e.reason()))
        })?;
        let mut requested = self.tasks.partitions();
        requested.extend(self.config.assigned_partitions.iter().copied());
        requested.sort_unstable();
        requested.dedup();
        let request = RegisterRequest {
            worker_id: self.config.worker_id.clone(),
            incarnation: self.incarnation,
            address: self.announced_address(connection.local_addr()),
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
                let registered = SessionInput::Registered {
                    generation,
                    heartbeat_timeout: Duration::from_millis(heartbeat_timeout_ms),
                };
                Ok(Ok((connection, registered)))
            }
            Some(CoordinatorMessage::NotLeader { leader }) => Ok(Err(leader)),
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
        let mut link = Some(first.split());
        let mut leave_seen = false;
        let mut pending = VecDeque::new();
        let mut held = VecDeque::new();
        loop {
            let input = match pending.pop_front() {
                Some(input) => input,
                None => {
                    let sources = Sources {
                        leave: &leave,
                        leave_seen: &mut leave_seen,
                        reports: &mut reports,
                        held: &mut held,
                    };
                    self.next_input(&mut link, sources).await
                }
            };
            for action in self.core.on_event(input, now()) {
                match self.execute(action, &mut link).await {
                    Flow::Continue => {}
                    Flow::Lost => {
                        // The rest was meant for a connection that is gone.
                        link = None;
                        pending.push_back(SessionInput::ConnectionLost);
                        break;
                    }
                    Flow::Connect => pending.push_back(self.reconnect(&mut link).await),
                    Flow::Exit(SessionEnd::Left) => return Ok(()),
                    Flow::Exit(SessionEnd::Fenced(reason)) => return Err(WorkerError::Fenced(reason)),
                }
            }
        }
    }

    /// Waits for the next thing that happens; the leave request first, then the core's
    /// deadline, then reports and frames.
    async fn next_input(&mut self, link: &mut Option<Link>, sources: Sources<'_>) -> SessionInput {
        let Sources {
            leave,
            leave_seen,
            reports,
            held,
        } = sources;
        let deadline = self.core.deadline();
        // Reports made while no coordinator listened go first, in the order they were made.
        let connected = link.is_some();
        if connected {
            if let Some(report) = held.pop_front() {
                return SessionInput::Report(report);
            }
        }
        loop {
            let reader = link.as_mut().map(|(reader, _)| reader);
            let input = tokio::select! {
                biased;
                _ = leave.cancelled(), if !*leave_seen => {
                    *leave_seen = true;
                    let carries_state = self.jobs.as_ref().is_some_and(JobRunner::carries_state);
                    Some(SessionInput::LeaveRequested { carries_state })
                }
                _ = sleep_until(deadline) => Some(SessionInput::Tick),
                Some(report) = reports.recv() => match connected {
                    true => Some(SessionInput::Report(report)),
                    false => {
                        hold(held, report);
                        None
                    }
                },
                ended = self.tasks.next_ended() => Some(SessionInput::TaskEnded {
                    partition: ended.partition,
                    error: ended.error,
                }),
                // A job task of the runner ended: the runner decides whether the attempt failed
                // (its report comes back through `reports`).
                ended = next_job_task_ended(self.jobs.as_mut()) => {
                    if let Some(jobs) = self.jobs.as_mut() {
                        jobs.task_ended(ended);
                    }
                    None
                }
                frame = recv(reader) => Some(match frame {
                    Ok(Some(message)) => SessionInput::Message(message),
                    Ok(None) => SessionInput::ConnectionLost,
                    Err(e) => {
                        tracing::warn!(error = %e, "connection to the coordinator failed");
                        SessionInput::ConnectionLost
                    }
                }),
            };
            if let Some(input) = input {
                return input;
            }
        }
    }
}

/// Where [`Session::next_input`] takes its inputs from, beside the connection and the tasks.
struct Sources<'a> {
    leave: &'a CancellationToken,
    leave_seen: &'a mut bool,
    reports: &'a mut mpsc::UnboundedReceiver<WorkerMessage>,
    /// Reports made while no coordinator listened, for the next one.
    held: &'a mut VecDeque<WorkerMessage>,
}

/// Keeps a report made while no coordinator listens for the next one, without what would be
/// stale by then: that a peer's connection closed says the peer was unreachable *then*, and the
/// coordinator, which fails a worker at once on such a report while that worker's own
/// connection is down, would take it as news about whatever run of that peer is disconnected
/// when this worker gets through (meanwhile it has judged the peer by its own connection and
/// the heartbeat timeout).
fn hold(held: &mut VecDeque<WorkerMessage>, report: WorkerMessage) {
    match report {
        WorkerMessage::PeerUnreachable { peer } => {
            tracing::debug!(%peer, "a lost peer not reported: no coordinator to tell");
        }
        WorkerMessage::JobFailed {
            attempt,
            partition,
            error,
            damaged_checkpoint,
            unreachable_peer: _,
        } => held.push_back(WorkerMessage::JobFailed {
            attempt,
            partition,
            error,
            damaged_checkpoint,
            unreachable_peer: None,
        }),
        report => held.push_back(report),
    }
}

impl Session {
    /// One registration attempt after a loss; the connection is kept if it succeeds.
    async fn reconnect(&mut self, link: &mut Option<Link>) -> SessionInput {
        match self.register_once().await {
            Ok((connection, registered)) => {
                *link = Some(connection.split());
                registered
            }
            Err(WorkerError::Fenced(reason)) => SessionInput::Message(CoordinatorMessage::Fenced { reason }),
            Err(e) => SessionInput::ConnectFailed {
                reason: e.to_string(),
            },
        }
    }

    async fn execute(&mut self, action: SessionAction, link: &mut Option<Link>) -> Flow {
        match action {
            SessionAction::Send(message) => return send(link, message).await,
            SessionAction::Heartbeat { running } => {
                let job = self.jobs.as_ref().and_then(JobRunner::progress);
                return send(link, WorkerMessage::Heartbeat { running, job }).await;
            }
            SessionAction::Apply {
                partitions,
                generation,
            } => self.tasks.apply(&partitions, generation).await,
            SessionAction::StopAll => {
                if let Some(jobs) = &mut self.jobs {
                    jobs.stop_all();
                }
                self.tasks.stop_all().await;
            }
            SessionAction::ToJobs(message) => self.deliver_to_jobs(message),
            SessionAction::Disconnect => *link = None,
            SessionAction::Connect => return Flow::Connect,
            SessionAction::Publish(snapshot) => {
                debug_assert_eq!(
                    snapshot.partitions,
                    self.tasks.partitions(),
                    "the core mirrors the task set"
                );
                self.snapshot.send_replace(snapshot);
            }
            SessionAction::Log(note) => self.log(note),
            SessionAction::Exit(end) => return Flow::Exit(end),
        }
        Flow::Continue
    }

    fn deliver_to_jobs(&mut self, message: CoordinatorMessage) {
        let Some(jobs) = &mut self.jobs else {
            return;
        };
        match message {
            CoordinatorMessage::StartJob {
                attempt,
                spec,
                owners,
                checkpoints,
            } => jobs.start(attempt, &spec.into(), &owners, checkpoints.as_ref()),
            CoordinatorMessage::TriggerCheckpoint {
                attempt,
                id,
                moves,
                keep_chains,
            } => jobs.trigger(attempt, id, moves, keep_chains),
            CoordinatorMessage::AdoptPartitions {
                attempt,
                checkpoint,
                partitions,
                ended_sources,
            } => jobs.adopt(attempt, checkpoint, partitions, ended_sources),
            CoordinatorMessage::PreparePartitions {
                attempt,
                checkpoint,
                partitions,
            } => jobs.prepare(attempt, checkpoint, partitions),
            CoordinatorMessage::CommitEpochs { attempt, upto } => jobs.commit_epochs(attempt, upto),
            CoordinatorMessage::StopJob { attempt } => jobs.stop(attempt),
            other => tracing::debug!(message = ?other, "not a job message"),
        }
    }

    fn log(&self, note: SessionNote) {
        let worker = &self.config.worker_id;
        let addr = self.coordinators.current();
        match note {
            SessionNote::Registered(generation) => {
                tracing::info!(%worker, %addr, %generation, "registered with the coordinator");
            }
            SessionNote::StaleAssignment { generation, current } => {
                tracing::debug!(%generation, %current, "dropping a stale assignment");
            }
            SessionNote::Shutdown(reason) => {
                tracing::warn!(%worker, %reason, "the coordinator ended our session; stopping all tasks");
            }
            SessionNote::Fenced(reason) => {
                tracing::error!(%worker, %reason, "fenced by the coordinator; stopping all tasks");
            }
            SessionNote::Lost => tracing::warn!(%worker, "lost the coordinator; reconnecting"),
            SessionNote::Silent(silent) => {
                tracing::warn!(%worker, ?silent, "the coordinator stopped answering; dropping the connection")
            }
            SessionNote::RetryFailed {
                attempt,
                reason,
                retry_in,
            } => tracing::warn!(%worker, attempt, error = %reason, ?retry_in, "registration failed"),
            SessionNote::PresumedDead(after) => tracing::warn!(
                %worker,
                "coordinator unreachable for {}: it has moved our partitions, stopping our tasks",
                humantime::format_duration(after)
            ),
            SessionNote::Draining => {
                tracing::info!(%worker, "leaving: waiting for the partitions to move away with their state");
            }
            SessionNote::DrainTimedOut => tracing::warn!(
                %worker,
                drain_timeout = ?self.config.drain_timeout,
                "leaving without the coordinator's acknowledgement: the partitions did not move away within the drain timeout (--drain-timeout)"
            ),
            SessionNote::Left { acknowledged: true } => tracing::info!(%worker, "left the cluster"),
            SessionNote::Left { acknowledged: false } => {
                tracing::warn!(%worker, "leaving without the coordinator's acknowledgement");
            }
            SessionNote::Ignored(message) => tracing::debug!(?message, "ignoring an unexpected message"),
            SessionNote::TaskEnded {
                partition,
                error: None,
            } => {
                tracing::warn!(%worker, partition, "task ended before it was stopped");
            }
            SessionNote::TaskEnded {
                partition,
                error: Some(error),
            } => tracing::error!(%worker, partition, %error, "task failed"),
        }
    }
}

async fn send(link: &mut Option<Link>, message: WorkerMessage) -> Flow {
    let Some((_, writer)) = link else {
        return Flow::Lost;
    };
    match writer.send(message).await {
        Ok(()) => Flow::Continue,
        Err(e) => {
            tracing::warn!(error = %e, "sending to the coordinator failed");
            Flow::Lost
        }
    }
}

/// The next task of the job runner to end, or never without a runner.
async fn next_job_task_ended(jobs: Option<&mut JobRunner>) -> super::job_runner::TaskEnd {
    match jobs {
        Some(jobs) => jobs.next_ended().await,
        None => std::future::pending().await,
    }
}

/// The next frame, or never without a connection.
async fn recv(
    reader: Option<&mut ConnectionReader<CoordinatorMessage>>,
) -> Result<Option<CoordinatorMessage>, crate::protocol::ProtocolError> {
    match reader {
        Some(reader) => reader.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::WorkerId;

    #[test]
    fn reports_held_for_the_next_coordinator_keep_their_order_but_not_lost_peers() {
        let failed = |peer: Option<&str>| WorkerMessage::JobFailed {
            attempt: 3,
            partition: Some(1),
            error: "peer w2 lost".to_string(),
            damaged_checkpoint: None,
            unreachable_peer: peer.map(WorkerId::new),
        };
        let mut held = VecDeque::new();
        hold(
            &mut held,
            WorkerMessage::PeerUnreachable {
                peer: WorkerId::new("w2"),
            },
        );
        hold(&mut held, failed(Some("w2")));
        hold(&mut held, WorkerMessage::Leave);
        assert_eq!(held, VecDeque::from([failed(None), WorkerMessage::Leave]));
    }
}
