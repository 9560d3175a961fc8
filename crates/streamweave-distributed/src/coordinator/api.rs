//! The one way to talk to a coordinator in the same process: the [`Coordinator`] trait (the
//! seed's API, extended with `status` and `checkpoint_now`). [`CoordinatorImpl`] (the node you
//! start) and [`CoordinatorHandle`] (a cloneable handle for other tasks, from
//! [`CoordinatorImpl::handle`]) both implement it, by sending typed requests to the coordinator's
//! actor. Another process talks to a coordinator through [`Client`](crate::Client), over the
//! admin protocol.
//!
//! [`CoordinatorImpl`]: super::CoordinatorImpl
//! [`CoordinatorImpl::handle`]: super::CoordinatorImpl::handle
//! [`CoordinatorHandle`]: super::CoordinatorHandle

use std::future::Future;
use std::time::Duration;

use super::CoordinatorError;
use crate::protocol::ClusterStatus;
use crate::types::{PartitionId, WorkerId, WorkerInfo};

/// Requests to a running coordinator. Every method fails with
/// [`CoordinatorError::NotRunning`] when it is not started or has stopped.
///
/// ```
/// use streamweave_distributed::{Coordinator, CoordinatorConfig, CoordinatorImpl};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), streamweave_distributed::CoordinatorError> {
/// let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
///     bind_address: "127.0.0.1:0".parse().unwrap(),
///     ..Default::default()
/// });
/// coordinator.start().await?;
/// // The same calls through a handle another task can own.
/// let handle = coordinator.handle()?;
/// assert_eq!(handle.status().await?.workers.len(), 0);
/// coordinator.stop().await;
/// assert!(handle.status().await.is_err());
/// # Ok(())
/// # }
/// ```
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
    /// The cluster's status: workers, the assignment, the job and its checkpoints.
    fn status(&self) -> impl Future<Output = Result<ClusterStatus, CoordinatorError>> + Send;
    /// Takes a checkpoint of the running job now; returns its id once it is committed, or
    /// [`CoordinatorError::Timeout`] if it is not within `timeout`.
    fn checkpoint_now(&self, timeout: Duration)
        -> impl Future<Output = Result<u64, CoordinatorError>> + Send;
    /// Stops the running job cleanly and waits (up to `timeout`) until it is `stopped`: with
    /// checkpoints, after a final checkpoint whose epoch every sink made final (returned; a
    /// restart resumes from it), without checkpoints at once (`None`).
    fn stop_job(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Option<u64>, CoordinatorError>> + Send;
}
