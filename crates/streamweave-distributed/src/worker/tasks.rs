//! One task per owned partition: started on grant, stopped (and awaited) on revoke.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::WorkerError;
use crate::types::{Generation, PartitionId};

/// The future a partition task runs.
pub type TaskFuture = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

/// What a worker runs for each partition it owns. The task must return soon after `stop` is
/// cancelled: the coordinator waits for that before it gives the partition to another worker.
///
/// ```
/// use streamweave_distributed::worker::{PartitionTask, TaskFuture};
/// use streamweave_distributed::{Generation, PartitionId};
/// use tokio_util::sync::CancellationToken;
///
/// struct Print;
/// impl PartitionTask for Print {
///     fn run(&self, partition: PartitionId, generation: Generation, stop: CancellationToken) -> TaskFuture {
///         Box::pin(async move {
///             println!("partition {partition} started at generation {generation}");
///             stop.cancelled().await;
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait PartitionTask: Send + Sync + 'static {
    /// Runs the task of `partition`, granted at `generation`, until `stop` is cancelled.
    fn run(&self, partition: PartitionId, generation: Generation, stop: CancellationToken) -> TaskFuture;
}

/// A task that holds its partition and does nothing until stopped: the default until a job is
/// attached.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleTask;

impl PartitionTask for IdleTask {
    fn run(&self, _partition: PartitionId, _generation: Generation, stop: CancellationToken) -> TaskFuture {
        Box::pin(async move {
            stop.cancelled().await;
            Ok(())
        })
    }
}

struct RunningTask {
    stop: CancellationToken,
    join: JoinHandle<Result<(), WorkerError>>,
}

/// The tasks a worker is running, by partition.
pub(crate) struct TaskSet {
    factory: Arc<dyn PartitionTask>,
    running: BTreeMap<PartitionId, RunningTask>,
}

impl TaskSet {
    pub(crate) fn new(factory: Arc<dyn PartitionTask>) -> Self {
        TaskSet {
            factory,
            running: BTreeMap::new(),
        }
    }

    /// Partitions with a task, ascending.
    pub(crate) fn partitions(&self) -> Vec<PartitionId> {
        self.running.keys().copied().collect()
    }

    /// Stops the tasks of partitions not in `desired` (and waits for them), then starts the
    /// missing ones.
    pub(crate) async fn apply(&mut self, desired: &[PartitionId], generation: Generation) {
        let revoked: Vec<PartitionId> = self
            .running
            .keys()
            .filter(|p| !desired.contains(p))
            .copied()
            .collect();
        self.stop(&revoked).await;
        for &p in desired {
            if self.running.contains_key(&p) {
                continue;
            }
            let stop = CancellationToken::new();
            let join = tokio::spawn(self.factory.run(p, generation, stop.clone()));
            tracing::info!(partition = p, %generation, "task started");
            self.running.insert(p, RunningTask { stop, join });
        }
    }

    /// Stops every task and waits for them.
    pub(crate) async fn stop_all(&mut self) {
        let all = self.partitions();
        self.stop(&all).await;
    }

    async fn stop(&mut self, partitions: &[PartitionId]) {
        let stopping: Vec<(PartitionId, RunningTask)> = partitions
            .iter()
            .filter_map(|p| self.running.remove(p).map(|t| (*p, t)))
            .collect();
        // Cancel all first so they wind down in parallel, then wait.
        for (_, task) in &stopping {
            task.stop.cancel();
        }
        for (p, task) in stopping {
            match task.join.await {
                Ok(Ok(())) => tracing::info!(partition = p, "task stopped"),
                Ok(Err(e)) => tracing::warn!(partition = p, error = %e, "task ended with an error"),
                Err(e) => tracing::error!(partition = p, error = %e, "task panicked"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records starts and stops so tests can check the order.
    #[derive(Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl PartitionTask for Recorder {
        fn run(
            &self,
            partition: PartitionId,
            _generation: Generation,
            stop: CancellationToken,
        ) -> TaskFuture {
            let log = Arc::clone(&self.0);
            Box::pin(async move {
                log.lock().unwrap().push(format!("start {partition}"));
                stop.cancelled().await;
                log.lock().unwrap().push(format!("stop {partition}"));
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn apply_stops_revoked_before_returning_and_starts_granted() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut set = TaskSet::new(Arc::new(Recorder(Arc::clone(&log))));
        set.apply(&[1, 2], Generation(1)).await;
        assert_eq!(set.partitions(), vec![1, 2]);
        set.apply(&[2, 3], Generation(2)).await;
        assert_eq!(set.partitions(), vec![2, 3]);
        // The stop of 1 was awaited inside apply.
        assert!(log.lock().unwrap().contains(&"stop 1".to_string()));
        set.stop_all().await;
        assert!(set.partitions().is_empty());
        let log = log.lock().unwrap();
        assert!(log.contains(&"stop 2".to_string()) && log.contains(&"stop 3".to_string()));
    }
}
