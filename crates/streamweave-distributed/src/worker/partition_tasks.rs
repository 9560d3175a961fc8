//! One task per owned partition: started on grant, stopped (and awaited) on revoke, and seen
//! when it ends by itself.
//!
//! This is the worker's record of ownership, not an execution model of its own: every owned
//! partition holds an [`IdleTask`] (the [`PartitionTask`] trait exists so the unit tests below can
//! watch starts and stops), kept by [`TaskSet`], and the session reports the running set to the
//! coordinator. There is one way to run work on a cluster, a dataflow job: its source and
//! receiver tasks, barriers and checkpoints are in `job_tasks.rs` and `job_runner.rs`.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::WorkerError;
use crate::types::{Generation, PartitionId};

/// The future a partition task runs.
pub(crate) type TaskFuture = Pin<Box<dyn Future<Output = Result<(), WorkerError>> + Send>>;

/// What a worker runs for each partition it owns. The task must return soon after `stop` is
/// cancelled: the coordinator waits for that before it gives the partition to another worker.
pub(crate) trait PartitionTask: Send + Sync + 'static {
    /// Runs the task of `partition`, granted at `generation`, until `stop` is cancelled.
    fn run(&self, partition: PartitionId, generation: Generation, stop: CancellationToken) -> TaskFuture;
}

/// A task that holds its partition and does nothing until stopped: the default until a job is
/// attached.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct IdleTask;

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
    /// The task's id in the join set; `None` once it ended by itself.
    id: Option<Id>,
}

/// A partition task that ended before it was asked to stop.
#[derive(Debug)]
pub(crate) struct TaskEnded {
    /// Its partition.
    pub(crate) partition: PartitionId,
    /// Why, if it failed or panicked.
    pub(crate) error: Option<String>,
}

/// The tasks a worker is running, by partition. It owns them in a [`JoinSet`], so a task that
/// ends by itself is seen ([`TaskSet::next_ended`]) rather than found out at the next stop.
pub(crate) struct TaskSet {
    factory: Arc<dyn PartitionTask>,
    running: BTreeMap<PartitionId, RunningTask>,
    tasks: JoinSet<Result<(), WorkerError>>,
    /// The partition of each task in `tasks`.
    owners: HashMap<Id, PartitionId>,
    /// Tasks that ended by themselves while [`TaskSet::stop`] waited for others.
    ended: VecDeque<TaskEnded>,
}

impl TaskSet {
    pub(crate) fn new(factory: Arc<dyn PartitionTask>) -> Self {
        TaskSet {
            factory,
            running: BTreeMap::new(),
            tasks: JoinSet::new(),
            owners: HashMap::new(),
            ended: VecDeque::new(),
        }
    }

    /// Partitions with a task, ascending. A task that ended by itself keeps its partition
    /// until the coordinator revokes it: only the coordinator moves partitions.
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
            let handle = self.tasks.spawn(self.factory.run(p, generation, stop.clone()));
            self.owners.insert(handle.id(), p);
            tracing::info!(partition = p, %generation, "task started");
            self.running.insert(
                p,
                RunningTask {
                    stop,
                    id: Some(handle.id()),
                },
            );
        }
    }

    /// Stops every task and waits for them.
    pub(crate) async fn stop_all(&mut self) {
        let all = self.partitions();
        self.stop(&all).await;
    }

    /// The next task that ended without being asked to; never returns while none runs.
    /// Cancel-safe: a task reaped here is not lost if the caller stops waiting.
    pub(crate) async fn next_ended(&mut self) -> TaskEnded {
        if let Some(ended) = self.ended.pop_front() {
            return ended;
        }
        loop {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                return std::future::pending().await;
            };
            let (id, result) = split(joined);
            let Some(partition) = self.owners.remove(&id) else {
                continue;
            };
            if let Some(task) = self.running.get_mut(&partition) {
                task.id = None;
            }
            return TaskEnded {
                partition,
                error: result.err(),
            };
        }
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
        let mut waiting: HashSet<Id> = stopping.iter().filter_map(|(_, t)| t.id).collect();
        while !waiting.is_empty() {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                break;
            };
            let (id, result) = split(joined);
            let Some(p) = self.owners.remove(&id) else {
                continue;
            };
            if waiting.remove(&id) {
                match result {
                    Ok(()) => tracing::info!(partition = p, "task stopped"),
                    Err(error) => tracing::warn!(partition = p, %error, "task ended with an error"),
                }
            } else {
                // Another task ended by itself meanwhile: keep it for `next_ended`.
                if let Some(task) = self.running.get_mut(&p) {
                    task.id = None;
                }
                self.ended.push_back(TaskEnded {
                    partition: p,
                    error: result.err(),
                });
            }
        }
    }
}

/// A joined task's id and outcome, a panic as its message.
fn split(joined: Result<(Id, Result<(), WorkerError>), JoinError>) -> (Id, Result<(), String>) {
    match joined {
        Ok((id, result)) => (id, result.map_err(|e| e.to_string())),
        Err(e) => {
            let id = e.id();
            let error = if e.is_panic() {
                format!("task {}", super::panics::panicked(e.into_panic()))
            } else {
                format!("task cancelled: {e}")
            };
            (id, Err(error))
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

    /// Panics at once for partition 9, holds the others until stopped.
    struct PanicsOnNine;

    impl PartitionTask for PanicsOnNine {
        fn run(
            &self,
            partition: PartitionId,
            _generation: Generation,
            stop: CancellationToken,
        ) -> TaskFuture {
            Box::pin(async move {
                if partition == 9 {
                    panic!("partition nine");
                }
                stop.cancelled().await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn a_task_that_dies_is_seen_with_its_partition_and_message() {
        let mut set = TaskSet::new(Arc::new(PanicsOnNine));
        set.apply(&[1, 9], Generation(1)).await;
        let ended = set.next_ended().await;
        assert_eq!(ended.partition, 9);
        assert!(ended.error.is_some_and(|e| e.contains("partition nine")));
        // Its partition stays ours until revoked; stopping it later does not wait for it.
        assert_eq!(set.partitions(), vec![1, 9]);
        set.apply(&[1], Generation(2)).await;
        assert_eq!(set.partitions(), vec![1]);
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), set.next_ended()).await;
        assert!(nothing.is_err(), "partition 1 still runs");
    }

    #[tokio::test]
    async fn a_task_that_dies_during_a_stop_is_kept_for_later() {
        let mut set = TaskSet::new(Arc::new(PanicsOnNine));
        set.apply(&[1, 9], Generation(1)).await;
        // Stopping 1 may reap 9's end first: it must not be lost.
        set.apply(&[9], Generation(2)).await;
        let ended = set.next_ended().await;
        assert_eq!(ended.partition, 9);
        set.stop_all().await;
        assert!(set.partitions().is_empty());
    }
}
