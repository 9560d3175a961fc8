//! Talking to the coordinator's actor: the [`Command`]s it receives, the public
//! [`CoordinatorHandle`] that sends them, and [`answer`], which serves an admin client's request
//! through the same requests. Admin operations reach the engine as typed [`AdminRequest`]s with a
//! reply channel, never as code run against it. The shell (`server.rs`), the disk writer
//! (`disk.rs`) and the node (`handle.rs`) all use this module; it uses none of them, so the
//! dependencies run one way:
//!
//! ```text
//! handle.rs --> server.rs --> disk.rs
//!     |             |            |
//!     +-------------+------------+--> commands.rs --> engine/
//! ```

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::api::Coordinator;
use super::engine::{AdminAnswer, AdminRequest, ConnId, Input};
use super::CoordinatorError;
use crate::protocol::{
    ClientRequest, ClientResponse, ClusterStatus, CoordinatorMessage, ErrorKind, JobState, RegisterRequest,
};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo};

/// What the actor receives: a new connection, an input for the engine, or an admin request.
#[derive(Debug)]
pub(crate) enum Command {
    /// A worker connection finished its handshake and registers.
    Connected {
        conn: ConnId,
        request: RegisterRequest,
        outbox: mpsc::Sender<CoordinatorMessage>,
    },
    /// An input for the engine from a connection or the disk writer.
    Input(Input),
    /// A request from a [`CoordinatorHandle`] or an admin connection; the actor hands it to
    /// [`Engine::admin`](super::engine::Engine::admin) and sends the answer on `reply`.
    Admin {
        request: AdminRequest,
        reply: oneshot::Sender<AdminAnswer>,
    },
}

/// A cloneable channel to a running coordinator's actor.
#[derive(Clone, Debug)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
}

impl CoordinatorHandle {
    /// A handle sending to the actor that reads `commands`.
    pub(super) fn new(commands: mpsc::Sender<Command>) -> Self {
        CoordinatorHandle { commands }
    }
}

/// The error of a request to a coordinator that is not running.
pub(super) fn stopped() -> CoordinatorError {
    CoordinatorError::NotRunning
}

/// The error of an answer that does not fit its request (a bug of the engine).
fn mismatched(answer: &AdminAnswer) -> CoordinatorError {
    CoordinatorError::Internal(format!("unexpected answer from the coordinator: {answer:?}"))
}

impl CoordinatorHandle {
    /// Sends `request` to the actor and waits for the engine's answer; `None` when the
    /// coordinator is not running.
    async fn ask(&self, request: AdminRequest) -> Option<AdminAnswer> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(Command::Admin { request, reply }).await.ok()?;
        answer.await.ok()
    }

    /// Asks for a change of the assignment; returns the generation after it.
    async fn change(&self, request: AdminRequest) -> Result<Generation, CoordinatorError> {
        match self.ask(request).await.ok_or_else(stopped)? {
            AdminAnswer::Done(result) => result,
            other => Err(mismatched(&other)),
        }
    }

    /// Triggers a checkpoint; returns its id (or the one already in flight). `None` when the
    /// coordinator is not running.
    async fn trigger_checkpoint(&self) -> Option<Result<u64, CoordinatorError>> {
        Some(match self.ask(AdminRequest::Checkpoint).await? {
            AdminAnswer::Checkpoint(result) => result,
            other => Err(mismatched(&other)),
        })
    }

    /// Asks the job to stop; the final checkpoint (none: stopped at once). `None` when the
    /// coordinator is not running.
    pub(crate) async fn request_stop(&self) -> Option<Result<Option<u64>, CoordinatorError>> {
        Some(match self.ask(AdminRequest::StopJob).await? {
            AdminAnswer::Stopping(result) => result,
            other => Err(mismatched(&other)),
        })
    }

    /// The cluster's status.
    async fn cluster_status(&self) -> Result<ClusterStatus, CoordinatorError> {
        match self.ask(AdminRequest::Status).await.ok_or_else(stopped)? {
            AdminAnswer::Status(status) => Ok(*status),
            other => Err(mismatched(&other)),
        }
    }
}

/// The public calls, through the same typed requests; the admin protocol (`answer` below) uses
/// the variants that return the generation.
impl Coordinator for CoordinatorHandle {
    async fn register_worker(&mut self, worker_info: WorkerInfo) -> Result<(), CoordinatorError> {
        self.change(AdminRequest::RegisterWorker(worker_info))
            .await
            .map(drop)
    }

    async fn assign_partitions(
        &mut self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<(), CoordinatorError> {
        let request = AdminRequest::Assign {
            worker: worker_id.clone(),
            partitions,
        };
        self.change(request).await.map(drop)
    }

    async fn rebalance(&mut self) -> Result<(), CoordinatorError> {
        self.change(AdminRequest::Rebalance).await.map(drop)
    }

    async fn get_worker(&self, worker_id: &WorkerId) -> Result<WorkerInfo, CoordinatorError> {
        let request = AdminRequest::GetWorker(worker_id.clone());
        match self.ask(request).await.ok_or_else(stopped)? {
            AdminAnswer::Worker(result) => result,
            other => Err(mismatched(&other)),
        }
    }

    async fn handle_worker_failure(&mut self, worker_id: &WorkerId) -> Result<(), CoordinatorError> {
        self.change(AdminRequest::FailWorker(worker_id.clone()))
            .await
            .map(drop)
    }

    async fn status(&self) -> Result<ClusterStatus, CoordinatorError> {
        self.cluster_status().await
    }

    async fn checkpoint_now(&self, timeout: Duration) -> Result<u64, CoordinatorError> {
        let id = self.trigger_checkpoint().await.ok_or_else(stopped)??;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.cluster_status().await?;
            if status
                .checkpoints
                .as_ref()
                .and_then(|c| c.last_completed)
                .is_some_and(|c| c >= id)
            {
                return Ok(id);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoordinatorError::Timeout(format!(
                    "checkpoint {id} not committed within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop_job(&self, timeout: Duration) -> Result<Option<u64>, CoordinatorError> {
        let checkpoint = self.request_stop().await.ok_or_else(stopped)??;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.cluster_status().await?.job.map(|j| j.state);
            match state {
                Some(JobState::Stopped) => return Ok(checkpoint),
                Some(JobState::Running) | Some(JobState::Restarting) | Some(JobState::Waiting) => {}
                other => {
                    return Err(CoordinatorError::NoJob(format!(
                        "the job ended before it stopped: {other:?}"
                    )))
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoordinatorError::Timeout(format!(
                    "the job did not stop within {timeout:?} (final checkpoint {checkpoint:?})"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Answers an admin client's request; `None` when the coordinator is stopping.
pub(crate) async fn answer(
    commands: &mpsc::Sender<Command>,
    request: ClientRequest,
) -> Option<ClientResponse> {
    let handle = CoordinatorHandle {
        commands: commands.clone(),
    };
    let result = match request {
        ClientRequest::Status => {
            return handle
                .cluster_status()
                .await
                .ok()
                .map(|s| ClientResponse::Status(Box::new(s)))
        }
        ClientRequest::Assign { worker, partitions } => {
            handle.change(AdminRequest::Assign { worker, partitions }).await
        }
        ClientRequest::Rebalance => handle.change(AdminRequest::Rebalance).await,
        ClientRequest::FailWorker { worker } => handle.change(AdminRequest::FailWorker(worker)).await,
        ClientRequest::StopJob => {
            // Answered at once too: the client watches the status for `stopped`.
            return Some(match handle.request_stop().await? {
                Ok(checkpoint) => ClientResponse::Stopping { checkpoint },
                Err(e) => ClientResponse::Error {
                    kind: error_kind(&e),
                    message: format!("cannot stop: {e}"),
                },
            });
        }
        // Answered by the jobs service (`admin_conn.rs`), never sent here.
        ClientRequest::SubmitJob(_)
        | ClientRequest::ListJobs
        | ClientRequest::CancelJob { .. }
        | ClientRequest::StopSubmittedJob { .. } => {
            return Some(ClientResponse::Error {
                kind: ErrorKind::Other,
                message: "job requests go to a coordinator started without --job".to_string(),
            })
        }
        ClientRequest::Checkpoint => {
            // Answered at once: the client watches the status for the commit, so no admin
            // request waits on a checkpoint.
            return Some(match handle.trigger_checkpoint().await? {
                Ok(id) => ClientResponse::CheckpointTriggered { id },
                Err(e @ (CoordinatorError::NoJob(_) | CoordinatorError::CheckpointsOff)) => {
                    ClientResponse::Error {
                        kind: ErrorKind::Other,
                        message: format!("no checkpoint: {e}"),
                    }
                }
                Err(e) => ClientResponse::Error {
                    kind: error_kind(&e),
                    message: e.to_string(),
                },
            });
        }
    };
    Some(match result {
        Ok(generation) => ClientResponse::Done { generation },
        Err(CoordinatorError::NotRunning) => return None,
        Err(e) => ClientResponse::Error {
            kind: error_kind(&e),
            message: e.to_string(),
        },
    })
}

fn error_kind(e: &CoordinatorError) -> ErrorKind {
    match e {
        CoordinatorError::WorkerNotFound(_) => ErrorKind::WorkerNotFound,
        CoordinatorError::InvalidPartition(_) => ErrorKind::InvalidPartition,
        CoordinatorError::RebalanceFailed(_) => ErrorKind::RebalanceFailed,
        _ => ErrorKind::Other,
    }
}
