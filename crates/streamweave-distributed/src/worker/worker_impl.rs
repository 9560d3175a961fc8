//! [`WorkerImpl`]: the public face of a worker node.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::coordinators::Coordinators;
use super::exchange::DataPlane;
use super::job_runner::JobRunner;
use super::partition_tasks::{IdleTask, PartitionTask, TaskSet};
use super::session::{Session, WorkerConnection};
use super::session_core::{SessionCore, FIRST_BACKOFF};
use super::session_events::SessionTiming;
pub use super::session_events::WorkerSnapshot;
use super::{WorkerConfig, WorkerError};
use crate::dataflow::JobRegistry;
use crate::network::{describe_io_error, ConnectionPool, Transport};
use crate::observe::WorkerMetrics;

/// The seed's worker API.
pub trait Worker {
    /// Connects to the coordinator and registers.
    fn register(&mut self) -> impl Future<Output = Result<(), WorkerError>> + Send;
    /// Starts heartbeats and partition tasks on background tasks; returns at once.
    fn start(&mut self) -> impl Future<Output = Result<(), WorkerError>> + Send;
}

struct Running {
    leave: CancellationToken,
    session: JoinHandle<Result<(), WorkerError>>,
}

/// A worker node.
///
/// ```no_run
/// use streamweave_distributed::{Worker, WorkerConfig, WorkerId, WorkerImpl};
///
/// # async fn demo() -> Result<(), streamweave_distributed::WorkerError> {
/// let config = WorkerConfig {
///     worker_id: WorkerId::new("worker-1".to_string()),
///     coordinator_address: "127.0.0.1:8080".parse().unwrap(),
///     max_concurrent_tasks: 10,
///     ..Default::default()
/// };
/// let mut worker = WorkerImpl::new(config);
/// worker.register().await?;
/// worker.start().await?;
/// // ... later, leave gracefully so the partitions move at once:
/// worker.stop().await;
/// # Ok(())
/// # }
/// ```
pub struct WorkerImpl {
    session: Option<Session>,
    connection: Option<WorkerConnection>,
    listener: Option<TcpListener>,
    data_address: Option<std::net::SocketAddr>,
    registry: JobRegistry,
    snapshot: watch::Receiver<WorkerSnapshot>,
    running: Option<Running>,
    metrics: WorkerMetrics,
}

impl WorkerImpl {
    /// A worker that can run the built-in jobs (see [`WorkerImpl::with_jobs`] for your own).
    pub fn new(config: WorkerConfig) -> Self {
        Self::with_task(config, Arc::new(IdleTask))
    }

    /// A worker holding `task` for each partition it owns (tests watch ownership with it).
    pub(crate) fn with_task(config: WorkerConfig, task: Arc<dyn PartitionTask>) -> Self {
        let (sender, snapshot) = watch::channel(WorkerSnapshot::default());
        let transport = Transport::new(ConnectionPool::new().with_timeout(config.communication_timeout))
            .with_max_frame_size(config.max_frame_size)
            .with_security(config.security.clone());
        let session = Session {
            incarnation: incarnation(),
            address: config.bind_address.to_string(),
            transport,
            tasks: TaskSet::new(task),
            core: SessionCore::new(SessionTiming {
                heartbeat_interval: config.heartbeat_interval,
                max_reconnect_backoff: config.max_reconnect_backoff,
                communication_timeout: config.communication_timeout,
                drain_timeout: config.drain_timeout,
                // Until the coordinator tells its heartbeat timeout at registration.
                presumed_dead_after: Duration::from_secs(2),
            }),
            snapshot: sender,
            job_names: Vec::new(),
            jobs: None,
            coordinators: Coordinators::new(config.coordinator_address, &config.other_coordinators),
            config,
        };
        WorkerImpl {
            session: Some(session),
            connection: None,
            listener: None,
            data_address: None,
            registry: JobRegistry::new(),
            snapshot,
            running: None,
            metrics: WorkerMetrics::default(),
        }
        .with_jobs(crate::dataflow::jobs::builtin())
    }

    /// Sets the jobs this worker can run (the built-in ones by default). A coordinator running a
    /// job this registry lacks refuses the worker.
    pub fn with_jobs(mut self, registry: JobRegistry) -> Self {
        if let Some(session) = &mut self.session {
            session.job_names = registry.names();
        }
        self.registry = registry;
        self
    }

    /// Its metrics (records in and out, backpressure), shared with its tasks; render them
    /// with the [`WorkerImpl::snapshot`] for a `/metrics` endpoint.
    pub fn metrics(&self) -> WorkerMetrics {
        self.metrics.clone()
    }

    /// What the worker runs now.
    pub fn snapshot(&self) -> WorkerSnapshot {
        self.snapshot.borrow().clone()
    }

    /// A receiver that sees every change of [`WorkerImpl::snapshot`].
    pub fn watch(&self) -> watch::Receiver<WorkerSnapshot> {
        self.snapshot.clone()
    }

    /// The data-plane address it announced, once registered.
    pub fn address(&self) -> Option<std::net::SocketAddr> {
        self.data_address
    }

    /// Leaves gracefully: stops the tasks, tells the coordinator, waits for its answer.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.leave.cancel();
            let _ = running.session.await;
        }
    }

    /// Waits until the session ends: after [`WorkerImpl::stop`] from another handle (`Ok`), or
    /// when a newer run of this worker id fenced this one (`Err(WorkerError::Fenced)`). A lost
    /// coordinator is retried forever and does not end the session.
    pub async fn wait(&mut self) -> Result<(), WorkerError> {
        let Some(running) = &mut self.running else {
            return Ok(());
        };
        let result = match (&mut running.session).await {
            Ok(result) => result,
            Err(e) => Err(WorkerError::PipelineError(format!(
                "the worker session panicked: {e}"
            ))),
        };
        self.running = None;
        result
    }

    /// Registers like [`Worker::register`], but keeps retrying an unreachable coordinator with
    /// capped exponential backoff. Returns `Ok(false)` if `cancel` fires first; a refusal or a
    /// bad configuration returns at once.
    pub async fn register_retrying(&mut self, cancel: &CancellationToken) -> Result<bool, WorkerError> {
        let max = self
            .session
            .as_ref()
            .map_or(Duration::from_secs(5), |s| s.config.max_reconnect_backoff);
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.register().await {
                Ok(()) => return Ok(true),
                Err(WorkerError::Communication(reason)) => {
                    tracing::warn!(%reason, retry_in = ?backoff, "coordinator not reachable yet");
                }
                Err(other) => return Err(other),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(false),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }

    /// A token that, when cancelled, makes the running worker leave gracefully.
    pub fn leave_token(&self) -> Option<CancellationToken> {
        self.running.as_ref().map(|r| r.leave.clone())
    }
}

impl Worker for WorkerImpl {
    async fn register(&mut self) -> Result<(), WorkerError> {
        let Some(session) = self.session.as_mut() else {
            return Ok(());
        };
        session.config.validate()?;
        if self.listener.is_none() {
            // The data-plane address: bound now so the port is ours and the real one is announced.
            let bind = session.config.bind_address;
            let listener = TcpListener::bind(bind).await.map_err(|e| {
                WorkerError::Communication(format!("cannot listen on {bind}: {}", describe_io_error(&e)))
            })?;
            if let Ok(addr) = listener.local_addr() {
                session.address = addr.to_string();
                self.data_address = Some(addr);
            }
            self.listener = Some(listener);
        }
        self.connection = Some(session.connect_and_register().await?);
        Ok(())
    }

    async fn start(&mut self) -> Result<(), WorkerError> {
        if self.running.is_some() {
            return Ok(());
        }
        if self.connection.is_none() {
            self.register().await?;
        }
        let (Some(session), Some(connection)) = (self.session.take(), self.connection.take()) else {
            return Err(WorkerError::Communication(
                "the worker is not registered".to_string(),
            ));
        };
        let leave = CancellationToken::new();
        let mut session = session;
        let (reports, reports_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(listener) = self.listener.take() {
            let plane = DataPlane::start_secured(
                listener,
                session.config.worker_id.clone(),
                session.config.cluster_name.clone(),
                session.config.max_frame_size,
                session.config.security.clone(),
            );
            plane.report_lost_peers(reports.clone());
            let slots = session.config.effective_source_slots();
            session.jobs = Some(
                JobRunner::new(self.registry.clone(), plane, reports, slots)
                    .with_metrics(self.metrics.clone())
                    .with_state_dir(session.config.state_dir.clone()),
            );
        }
        let handle = tokio::spawn(session.run(connection, leave.clone(), reports_rx));
        self.running = Some(Running {
            leave,
            session: handle,
        });
        Ok(())
    }
}

impl Drop for WorkerImpl {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.leave.cancel();
        }
    }
}

/// Orders runs of the same worker id: the start time in nanoseconds since the Unix epoch. The
/// coordinator tells a reconnect (same run) from a restart (a later run, which fences the old
/// session) and refuses an earlier run that comes back after a later one took over.
fn incarnation() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
