//! The public face of the coordinator: [`CoordinatorImpl`] starts and stops the node, and its
//! [`CoordinatorHandle`] (in `commands.rs`) sends requests to the actor. Both go through the same
//! calls as the `swd` admin commands.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::api::Coordinator;
use super::commands::{stopped, CoordinatorHandle};
use super::disk::DiskWriter;
use super::engine::Engine;
use super::server::{accept_loop, Actor, Shared};
use super::{CoordinatorConfig, CoordinatorError};
use crate::ha::Fence;
use crate::network::describe_io_error;
use crate::protocol::ClusterStatus;
use crate::types::{PartitionId, WorkerId, WorkerInfo};

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
/// use streamweave_distributed::{Coordinator, CoordinatorConfig, CoordinatorImpl};
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
    /// With high availability: the leadership it acts under (its epoch numbers the attempts).
    fence: Option<Fence>,
}

impl CoordinatorImpl {
    /// A coordinator that is not started yet.
    pub fn new(config: CoordinatorConfig) -> Self {
        CoordinatorImpl {
            config,
            running: None,
            fence: None,
        }
    }

    /// A coordinator that leads under `fence` (high availability, see [`crate::ha`]): its
    /// attempts are numbered from the fence's epoch instead of the data directory's, so they are
    /// above every earlier leader's; it acts, and commits checkpoints, only while the fence
    /// holds; and stopping it never tells the workers to stop (the next leader takes them over).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = Some(fence);
        self
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
        if let Some(fence) = &self.fence {
            prepared.epoch = fence.epoch();
        }
        let mut engine = Engine::new(self.config.clone());
        prepared.apply(&mut engine);
        let disk = match self.config.data_dir {
            Some(_) => Some(
                DiskWriter::start(
                    prepared.events.take(),
                    prepared.store.take(),
                    commands.clone(),
                    self.fence.clone(),
                )
                .map_err(|e| CoordinatorError::Communication(format!("cannot start the disk writer: {e}")))?,
            ),
            None => None,
        };
        let actor = Actor::new(engine, disk, self.config.health_check_interval)
            .with_fence(self.fence.clone())
            .with_probes(commands.clone());
        let actor = tokio::spawn(actor.run(inbox, shutdown.clone()));
        let tracker = TaskTracker::new();
        let shared = Shared::new(
            commands.clone(),
            &self.config.cluster_name,
            self.config.max_frame_size,
            shutdown.clone(),
        )
        .with_security(self.config.security.clone());
        let mut shared = shared;
        // A coordinator without a job (and not one of an HA group) takes submitted jobs.
        if self.config.job.is_none() && self.fence.is_none() {
            shared.jobs = Some(super::jobs::JobsService::start(
                self.config.clone(),
                CoordinatorHandle::new(commands.clone()),
                shutdown.clone(),
            ));
        }
        tracker.spawn(accept_loop(
            listener,
            shared,
            tracker.clone(),
            self.config.max_workers,
        ));
        let strategy = self.config.rebalance_strategy.as_str();
        let partitions = self.config.num_partitions;
        tracing::info!(%local_addr, partitions, strategy, "coordinator listening");
        self.running = Some(Running {
            handle: CoordinatorHandle::new(commands),
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

    /// A handle for requests from other tasks: it implements [`Coordinator`] as this node does.
    pub fn handle(&self) -> Result<CoordinatorHandle, CoordinatorError> {
        self.running
            .as_ref()
            .map(|r| r.handle.clone())
            .ok_or_else(stopped)
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
        self.handle()?.register_worker(worker_info).await
    }

    async fn assign_partitions(
        &mut self,
        worker_id: &WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<(), CoordinatorError> {
        self.handle()?.assign_partitions(worker_id, partitions).await
    }

    async fn rebalance(&mut self) -> Result<(), CoordinatorError> {
        self.handle()?.rebalance().await
    }

    async fn get_worker(&self, worker_id: &WorkerId) -> Result<WorkerInfo, CoordinatorError> {
        self.handle()?.get_worker(worker_id).await
    }

    async fn handle_worker_failure(&mut self, worker_id: &WorkerId) -> Result<(), CoordinatorError> {
        self.handle()?.handle_worker_failure(worker_id).await
    }

    async fn status(&self) -> Result<ClusterStatus, CoordinatorError> {
        self.handle()?.status().await
    }

    async fn checkpoint_now(&self, timeout: Duration) -> Result<u64, CoordinatorError> {
        self.handle()?.checkpoint_now(timeout).await
    }

    async fn stop_job(&self, timeout: Duration) -> Result<Option<u64>, CoordinatorError> {
        self.handle()?.stop_job(timeout).await
    }
}
