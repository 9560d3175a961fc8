//! Talking to the coordinator's actor: the [`Command`]s it receives, the public
//! [`CoordinatorHandle`] that sends them, and [`answer`], which serves an admin client's request
//! through the same calls. The shell (`server.rs`), the disk writer (`disk.rs`) and the node
//! (`handle.rs`) all use this module; it uses none of them, so the dependencies run one way:
//!
//! ```text
//! handle.rs --> server.rs --> disk.rs
//!     |             |            |
//!     +-------------+------------+--> commands.rs --> engine/
//! ```

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::engine::{Action, ConnId, Engine, Input};
use super::CoordinatorError;
use crate::protocol::{
    ClientRequest, ClientResponse, ClusterStatus, CoordinatorMessage, ErrorKind, RegisterRequest,
};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo};

/// A request to the actor: a closure run against the engine, which replies through a channel
/// it captured and returns the actions to execute.
pub(crate) type Call = Box<dyn FnOnce(&mut Engine, Instant) -> Vec<Action> + Send>;

/// What the actor receives: a new connection, an input for the engine, or a call.
pub(crate) enum Command {
    /// A worker connection finished its handshake and registers.
    Connected {
        conn: ConnId,
        request: RegisterRequest,
        outbox: mpsc::Sender<CoordinatorMessage>,
    },
    /// An input for the engine from a connection or the disk writer.
    Input(Input),
    /// A request from a [`CoordinatorHandle`] or an admin connection.
    Call(Call),
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

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

/// The error of a request to a coordinator that is not running.
pub(super) fn stopped() -> CoordinatorError {
    CoordinatorError::Communication("the coordinator is not running".to_string())
}

impl CoordinatorHandle {
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, Instant) -> (T, Vec<Action>) + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        call(&self.commands, f).await.ok_or_else(stopped)
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<ClusterStatus, CoordinatorError> {
        self.call(|engine, now| (engine.status(now), Vec::new())).await
    }

    /// See [`Coordinator::get_worker`](super::Coordinator::get_worker).
    pub async fn get_worker(&self, worker_id: &WorkerId) -> Result<WorkerInfo, CoordinatorError> {
        let id = worker_id.clone();
        self.call(move |engine, _| {
            (
                engine
                    .worker_info(&id)
                    .ok_or(CoordinatorError::WorkerNotFound(id)),
                Vec::new(),
            )
        })
        .await?
    }

    /// See [`Coordinator::assign_partitions`](super::Coordinator::assign_partitions); returns the
    /// generation after the request.
    pub async fn assign_partitions(
        &self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<Generation, CoordinatorError> {
        let id = worker_id.clone();
        self.call(move |engine, _| split(engine.assign_partitions(&id, &partitions), engine))
            .await?
    }

    /// See [`Coordinator::rebalance`](super::Coordinator::rebalance); returns the generation after
    /// the request.
    pub async fn rebalance(&self) -> Result<Generation, CoordinatorError> {
        self.call(|engine, _| {
            let actions = engine.rebalance();
            (Ok(engine.generation()), actions)
        })
        .await?
    }

    /// See [`Coordinator::handle_worker_failure`](super::Coordinator::handle_worker_failure).
    pub async fn handle_worker_failure(&self, worker_id: &WorkerId) -> Result<Generation, CoordinatorError> {
        let id = worker_id.clone();
        self.call(move |engine, _| split(engine.fail_worker(&id), engine))
            .await?
    }

    /// Takes a checkpoint of the running job now; returns its id once it is committed (or an
    /// error if it is not within `timeout`).
    pub async fn checkpoint_now(&self, timeout: Duration) -> Result<u64, CoordinatorError> {
        let id = self
            .call(|engine, now| match engine.request_checkpoint(now) {
                Ok((id, actions)) => (Ok(id), actions),
                Err(e) => (Err(e), Vec::new()),
            })
            .await??;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            if status
                .checkpoints
                .as_ref()
                .and_then(|c| c.last_completed)
                .is_some_and(|c| c >= id)
            {
                return Ok(id);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(CoordinatorError::Communication(format!(
                    "checkpoint {id} not complete within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// See [`Coordinator::register_worker`](super::Coordinator::register_worker).
    pub async fn register_worker(&self, info: WorkerInfo) -> Result<Generation, CoordinatorError> {
        self.call(move |engine, now| split(engine.register_worker(info, now), engine))
            .await?
    }
}

fn split(
    result: Result<Vec<Action>, CoordinatorError>,
    engine: &Engine,
) -> (Result<Generation, CoordinatorError>, Vec<Action>) {
    match result {
        Ok(actions) => (Ok(engine.generation()), actions),
        Err(e) => (Err(e), Vec::new()),
    }
}

async fn call<T: Send + 'static>(
    commands: &mpsc::Sender<Command>,
    f: impl FnOnce(&mut Engine, Instant) -> (T, Vec<Action>) + Send + 'static,
) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    let command = Command::Call(Box::new(move |engine, now| {
        let (value, actions) = f(engine, now);
        let _ = reply.send(value);
        actions
    }));
    commands.send(command).await.ok()?;
    answer.await.ok()
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
                .status()
                .await
                .ok()
                .map(|s| ClientResponse::Status(Box::new(s)))
        }
        ClientRequest::Assign { worker, partitions } => handle.assign_partitions(&worker, partitions).await,
        ClientRequest::Rebalance => handle.rebalance().await,
        ClientRequest::FailWorker { worker } => handle.handle_worker_failure(&worker).await,
        ClientRequest::Checkpoint => {
            // Answered at once: the client watches the status for the commit, so no admin
            // request waits on a checkpoint.
            let triggered = handle
                .call(|engine, now| match engine.request_checkpoint(now) {
                    Ok((id, actions)) => (Ok(id), actions),
                    Err(e) => (Err(e), Vec::new()),
                })
                .await;
            return Some(match triggered {
                Ok(Ok(id)) => ClientResponse::CheckpointTriggered { id },
                Ok(Err(e @ (CoordinatorError::NoJob(_) | CoordinatorError::CheckpointsOff))) => {
                    ClientResponse::Error {
                        kind: ErrorKind::Other,
                        message: format!("no checkpoint: {e}"),
                    }
                }
                Ok(Err(e)) => ClientResponse::Error {
                    kind: error_kind(&e),
                    message: e.to_string(),
                },
                Err(_) => return None,
            });
        }
    };
    Some(match result {
        Ok(generation) => ClientResponse::Done { generation },
        Err(CoordinatorError::Communication(_)) => return None,
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
