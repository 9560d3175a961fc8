//! The public face of the coordinator: [`CoordinatorImpl`] starts and stops the node, and
//! [`CoordinatorHandle`] sends requests to its actor. Both go through the same calls as the
//! `swd` admin commands.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::disk::DiskWriter;
use super::engine::{Action, Engine};
use super::server::{accept_loop, Actor, Command, Shared};
use super::{CoordinatorConfig, CoordinatorError};
use crate::network::describe_io_error;
use crate::protocol::{ClientRequest, ClientResponse, ClusterStatus, ErrorKind};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo};

/// The seed's coordinator API.
pub trait Coordinator {
    /// Registers a worker by description; it must then connect and heartbeat.
    fn register_worker(
        &mut self,
        worker_info: WorkerInfo,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
    /// Moves `partitions` to `worker_id` (it keeps its other partitions).
    fn assign_partitions(
        &mut self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
    /// Recomputes a balanced assignment and moves towards it with the configured strategy.
    fn rebalance(&mut self) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
    /// What the coordinator knows about a worker.
    fn get_worker(
        &self,
        worker_id: &WorkerId,
    ) -> impl Future<Output = Result<WorkerInfo, CoordinatorError>> + Send;
    /// Treats a worker as failed: the same path as a missed heartbeat.
    fn handle_worker_failure(
        &mut self,
        worker_id: &WorkerId,
    ) -> impl Future<Output = Result<(), CoordinatorError>> + Send;
}

/// A cloneable channel to a running coordinator's actor.
#[derive(Clone, Debug)]
pub struct CoordinatorHandle {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

fn stopped() -> CoordinatorError {
    CoordinatorError::Communication("the coordinator is not running".to_string())
}

impl CoordinatorHandle {
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Engine, std::time::Instant) -> (T, Vec<Action>) + Send + 'static,
    ) -> Result<T, CoordinatorError> {
        call(&self.commands, f).await.ok_or_else(stopped)
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<ClusterStatus, CoordinatorError> {
        self.call(|engine, now| (engine.status(now), Vec::new())).await
    }

    /// See [`Coordinator::get_worker`].
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

    /// See [`Coordinator::assign_partitions`]; returns the generation after the request.
    pub async fn assign_partitions(
        &self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<Generation, CoordinatorError> {
        let id = worker_id.clone();
        self.call(move |engine, _| split(engine.assign_partitions(&id, &partitions), engine))
            .await?
    }

    /// See [`Coordinator::rebalance`]; returns the generation after the request.
    pub async fn rebalance(&self) -> Result<Generation, CoordinatorError> {
        self.call(|engine, _| {
            let actions = engine.rebalance();
            (Ok(engine.generation()), actions)
        })
        .await?
    }

    /// See [`Coordinator::handle_worker_failure`].
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

    /// See [`Coordinator::register_worker`].
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
    f: impl FnOnce(&mut Engine, std::time::Instant) -> (T, Vec<Action>) + Send + 'static,
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
                Ok(Err(CoordinatorError::Communication(reason))) => ClientResponse::Error {
                    kind: ErrorKind::Other,
                    message: format!("no checkpoint: {reason}"),
                },
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

struct Running {
    handle: CoordinatorHandle,
    local_addr: SocketAddr,
    shutdown: CancellationToken,
    actor: JoinHandle<()>,
    tracker: TaskTracker,
}

/// A coordinator node. [`CoordinatorImpl::start`] returns once it is listening; its work runs
/// on background tasks until [`CoordinatorImpl::stop`] (or drop).
///
/// ```
/// use std::time::Duration;
/// use streamweave_distributed::{CoordinatorConfig, CoordinatorImpl};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), streamweave_distributed::CoordinatorError> {
/// let config = CoordinatorConfig {
///     bind_address: "127.0.0.1:0".parse().unwrap(),
///     heartbeat_timeout: Duration::from_secs(30),
///     max_workers: 100,
///     ..Default::default()
/// };
/// let mut coordinator = CoordinatorImpl::new(config);
/// coordinator.start().await?;
/// let status = coordinator.status().await?;
/// assert_eq!(status.unassigned.len(), status.partitions);
/// coordinator.stop().await;
/// # Ok(())
/// # }
/// ```
pub struct CoordinatorImpl {
    config: CoordinatorConfig,
    running: Option<Running>,
}

impl CoordinatorImpl {
    /// A coordinator that is not started yet.
    pub fn new(config: CoordinatorConfig) -> Self {
        CoordinatorImpl {
            config,
            running: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// Validates the configuration, binds the listener and starts serving.
    pub async fn start(&mut self) -> Result<(), CoordinatorError> {
        if self.running.is_some() {
            return Ok(());
        }
        self.config.validate()?;
        let addr = self.config.bind_address;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            CoordinatorError::Communication(format!("cannot listen on {addr}: {}", describe_io_error(&e)))
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| CoordinatorError::Communication(format!("cannot read the bound address: {e}")))?;
        let (commands, inbox) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        // The data directory is read (and the epoch bumped) on a blocking thread, once, before
        // the actor runs: the actor itself never touches the disk.
        let config = self.config.clone();
        let mut prepared = tokio::task::spawn_blocking(move || super::startup::prepare(&config))
            .await
            .map_err(|e| CoordinatorError::Communication(format!("reading the data directory: {e}")))??;
        let mut engine = Engine::new(self.config.clone());
        prepared.apply(&mut engine);
        let disk = match self.config.data_dir {
            Some(_) => Some(
                DiskWriter::start(prepared.events.take(), prepared.store.take(), commands.clone()).map_err(
                    |e| CoordinatorError::Communication(format!("cannot start the disk writer: {e}")),
                )?,
            ),
            None => None,
        };
        let actor = Actor::new(engine, disk, self.config.health_check_interval);
        let actor = tokio::spawn(actor.run(inbox, shutdown.clone()));
        let tracker = TaskTracker::new();
        let shared = Shared::new(
            commands.clone(),
            &self.config.cluster_name,
            self.config.max_frame_size,
            shutdown.clone(),
        );
        tracker.spawn(accept_loop(
            listener,
            shared,
            tracker.clone(),
            self.config.max_workers,
        ));
        tracing::info!(%local_addr, partitions = self.config.num_partitions, strategy = self.config.rebalance_strategy.as_str(), "coordinator listening");
        self.running = Some(Running {
            handle: CoordinatorHandle { commands },
            local_addr,
            shutdown,
            actor,
            tracker,
        });
        Ok(())
    }

    /// The address it listens on (useful with port 0), once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.local_addr)
    }

    /// A handle for requests from other tasks.
    pub fn handle(&self) -> Result<CoordinatorHandle, CoordinatorError> {
        self.running
            .as_ref()
            .map(|r| r.handle.clone())
            .ok_or_else(stopped)
    }

    /// The cluster's status.
    pub async fn status(&self) -> Result<ClusterStatus, CoordinatorError> {
        self.handle()?.status().await
    }

    /// Tells the workers, stops listening and waits (briefly) for connections to flush.
    pub async fn stop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        running.shutdown.cancel();
        let _ = running.actor.await;
        running.tracker.close();
        // Connection tasks end once their outbox is drained; a stuck peer must not hold us.
        let _ = tokio::time::timeout(Duration::from_secs(2), running.tracker.wait()).await;
    }
}

impl Drop for CoordinatorImpl {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown.cancel();
        }
    }
}

impl Coordinator for CoordinatorImpl {
    async fn register_worker(&mut self, worker_info: WorkerInfo) -> Result<(), CoordinatorError> {
        self.handle()?.register_worker(worker_info).await.map(drop)
    }

    async fn assign_partitions(
        &mut self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<(), CoordinatorError> {
        self.handle()?
            .assign_partitions(worker_id, partitions)
            .await
            .map(drop)
    }

    async fn rebalance(&mut self) -> Result<(), CoordinatorError> {
        self.handle()?.rebalance().await.map(drop)
    }

    async fn get_worker(&self, worker_id: &WorkerId) -> Result<WorkerInfo, CoordinatorError> {
        self.handle()?.get_worker(worker_id).await
    }

    async fn handle_worker_failure(&mut self, worker_id: &WorkerId) -> Result<(), CoordinatorError> {
        self.handle()?.handle_worker_failure(worker_id).await.map(drop)
    }
}
