//! The tasks of one job attempt on this worker: per owned partition a source task
//! (`source_task.rs`: blocking reads while it holds one of the worker's source slots) and a
//! receiver task (`receiver_task.rs`: an async task on the data runtime's threads,
//! `data_runtime.rs`), started when the attempt starts or when a partition moves here inside
//! it. Threads scale with cores, not with partitions.
//!
//! ```text
//! source task p:   run_source(offset) --Stopped (barrier)--> ack offset, barrier to every q,
//!                                      |                     reroute; resume (or end: p left)
//!                                      --Exhausted--------> ack pending barrier, end-of-stream
//! receiver task q: batches -> Receiver; barrier id from source s: hold s's later batches until
//!                  every source sent id (or ended), then snapshot -> store, pre-commit the sink,
//!                  ack (q leaves at id: end here); all sources ended -> finish (commit, or
//!                  pre-commit the final epoch)
//! ```
//!
//! A panic in job code on either side fails the task and the attempt with its message. The
//! attempt's command task ([`AttemptRun`], run by `job_runner.rs`) owns the router, the owners
//! and a `JoinSet` of these tasks (spawned on the data runtime): a task that dies outside the
//! guards is seen there and fails the attempt.
//!
//! A partition moving out at barrier `n` ends both its tasks there; the new owner starts them
//! once `n` is committed ([`AttemptRun::adopt`]): the receiver restores `n`'s snapshot, the
//! source resumes from `n`'s offset, and the batches routed to it since the barrier wait in
//! its inbox.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

use super::checkpoint_actor::Checkpoints;
use super::exchange::{AttemptOut, DataPlane, Destination, RouteChanges};
use super::local_states::LocalStates;
use super::panics::guarded_async;
use super::preload::{PreloadMap, Preloaded, Preparation};
use super::receiver_task::{LocalRecovery, ReceiverTask, RestoreFrom};
use super::source_task::{SourceSlots, SourceTask};
use super::state_writer::DeltaBarriers;
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, SinkContext, SourceOffset};
use crate::observe::WorkerMetrics;
use crate::protocol::{Adoption, PartitionMove, PartitionOwner, Preload, WorkerMessage};
use crate::types::WorkerId;

pub(crate) fn report_failure(
    reports: &mpsc::UnboundedSender<WorkerMessage>,
    attempt: u64,
    partition: Option<usize>,
    error: &DataflowError,
) {
    tracing::warn!(attempt, ?partition, %error, "job task failed");
    let _ = reports.send(WorkerMessage::JobFailed {
        attempt,
        partition,
        error: error.to_string(),
        damaged_checkpoint: error.damaged_checkpoint(),
        unreachable_peer: error.lost_peer().cloned(),
    });
}

/// Everything one attempt's tasks on this worker share; the job runner keeps it to start
/// tasks of partitions that move here.
pub(crate) struct AttemptTasks {
    pub(crate) attempt: u64,
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) plane: DataPlane,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) slots: Arc<SourceSlots>,
    pub(crate) cancel: CancellationToken,
    /// By partition.
    pub(crate) controls: Arc<Vec<SourceControl>>,
    pub(crate) records_out: Arc<AtomicU64>,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) routes: Arc<RouteChanges>,
    /// The partitions whose sink output this worker commits (read by the sinks' commit, which
    /// the session starts; a small set, locked briefly, never across an await).
    pub(crate) committing: Mutex<BTreeSet<usize>>,
    /// By source partition: whether its share is known to be empty (empty: not known). Such a
    /// source sends no end-of-stream and every receiver counts it as ended from the start.
    pub(crate) empty_sources: Arc<Vec<bool>>,
    /// The job's name (the metrics' label).
    pub(crate) job_name: String,
    pub(crate) metrics: WorkerMetrics,
    /// The state of partitions moving here, loaded ahead of their moves (`preload.rs`).
    pub(crate) preloaded: Arc<PreloadMap>,
    /// The barriers at which partitions write a delta whatever compaction would say (set
    /// before a checkpoint is requested here).
    pub(crate) delta_barriers: Arc<DeltaBarriers>,
    /// The partition states attempts left on this worker (`local_states.rs`).
    pub(crate) local: Arc<LocalStates>,
}

/// Why a task of an attempt failed it: a source or receiver task that died outside the guards
/// (a panic in the runtime's code, not the job's), a command that could not be carried out, a
/// commit of sink epochs that failed.
#[derive(Debug)]
pub(crate) struct TaskFailure {
    pub(crate) partition: Option<usize>,
    pub(crate) error: DataflowError,
}

/// What only the attempt's command task holds: the router, who owns each partition, and the
/// source and receiver tasks it started.
pub(crate) struct AttemptRun {
    pub(crate) shared: Arc<AttemptTasks>,
    /// How sources reach every partition, once connected (built at launch, or at the first move
    /// here on a worker that ran nothing).
    router: Option<AttemptOut>,
    /// Who owns each partition, as of the newest checkpoint barrier that moved some.
    owners: Vec<PartitionOwner>,
    tasks: JoinSet<()>,
    /// The partition of each task.
    partitions: HashMap<Id, usize>,
}

impl AttemptRun {
    pub(crate) fn new(shared: Arc<AttemptTasks>, owners: Vec<PartitionOwner>) -> Self {
        AttemptRun {
            shared,
            router: None,
            owners,
            tasks: JoinSet::new(),
            partitions: HashMap::new(),
        }
    }

    /// The next source or receiver task to end; never without any. `Err`: it died.
    pub(crate) async fn next_ended(&mut self) -> Result<(), TaskFailure> {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        match joined {
            Ok((id, ())) => {
                self.partitions.remove(&id);
                Ok(())
            }
            Err(e) => Err(self.died(e)),
        }
    }

    fn died(&mut self, e: JoinError) -> TaskFailure {
        let partition = self.partitions.remove(&e.id());
        let error = match e.try_into_panic() {
            Ok(payload) => super::panics::panicked(payload),
            Err(_) => DataflowError::Cancelled,
        };
        TaskFailure { partition, error }
    }

    /// After the attempt was cancelled: waits for its tasks to stop (they watch the token).
    pub(crate) async fn drain(&mut self) {
        while self.tasks.join_next().await.is_some() {}
    }

    /// Connects to the owners of the partitions and starts the tasks of `mine`, restoring
    /// `restore[p]` (state file, source offset) from checkpoint `restored` where given.
    pub(crate) async fn launch(
        &mut self,
        mine: &[usize],
        restored: u64,
        restore: &[(String, u64)],
    ) -> Result<(), DataflowError> {
        if mine.is_empty() {
            return Ok(());
        }
        let shared = Arc::clone(&self.shared);
        let out = AttemptOut::new(
            shared.attempt,
            shared.destinations(&self.owners).await?,
            shared.cancel.clone(),
            Arc::clone(&shared.routes),
            restored,
            shared.metrics.clone(),
        );
        for &q in mine {
            let from = restore
                .get(q)
                .filter(|_| restored > 0)
                .map(|(file, _)| (restored, file.clone()));
            self.spawn_receiver(q, from, HashSet::new(), None, false);
        }
        if let Some(checkpoints) = &shared.checkpoints {
            checkpoints.connected(out.clone());
        }
        for &p in mine {
            let start = restore.get(p).map_or(0, |(_, offset)| *offset);
            self.spawn_source(p, start, &out);
        }
        self.router = Some(out);
        Ok(())
    }

    /// Checkpoint `id` moves `moves`: prepares the routes to the new owners (connecting to
    /// them), marks the partitions leaving this worker, and, on a worker that gains partitions
    /// and had none, builds the attempt's router. Runs before `id` is requested here.
    pub(crate) async fn prepare_moves(
        &mut self,
        id: u64,
        moves: &[PartitionMove],
    ) -> Result<(), DataflowError> {
        let shared = Arc::clone(&self.shared);
        let Some(checkpoints) = &shared.checkpoints else {
            return Err(DataflowError::Exchange(
                "a partition move in an attempt without checkpoints".to_string(),
            ));
        };
        // The data plane takes what is routed to the partitions moving here, from their owners.
        for m in moves {
            shared.plane.add_member(shared.attempt, &m.to.worker);
            if m.to.worker == *shared.me() {
                shared.plane.own(shared.attempt, m.partition);
            }
        }
        for m in moves {
            if m.partition >= self.owners.len() {
                return Err(DataflowError::Exchange(format!(
                    "a move of partition {} of {}",
                    m.partition,
                    self.owners.len()
                )));
            }
            if self.owners[m.partition].worker == *shared.me() && m.to.worker != *shared.me() {
                checkpoints.leave_at(m.partition, id);
                shared
                    .committing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&m.partition);
            }
            self.owners[m.partition] = m.to.clone();
        }
        if self.router.is_none() {
            // Nothing ran here: only a worker that gains partitions needs a router, built on
            // the owners after this barrier.
            if moves.iter().any(|m| m.to.worker == *shared.me()) {
                let destinations = shared.destinations(&self.owners).await?;
                let out = AttemptOut::new(
                    shared.attempt,
                    destinations,
                    shared.cancel.clone(),
                    Arc::clone(&shared.routes),
                    id,
                    shared.metrics.clone(),
                );
                checkpoints.connected(out.clone());
                self.router = Some(out);
            }
            return Ok(());
        }
        for m in moves {
            let to = shared.destination(&m.to, m.partition).await?;
            shared.routes.add(id, m.partition, to);
        }
        Ok(())
    }

    /// Partitions about to move here: loads their state from committed checkpoint
    /// `checkpoint` beside the processing, then reports (`preload.rs`).
    pub(crate) fn prepare(&mut self, checkpoint: u64, partitions: Vec<Preload>) {
        let n = self.shared.num_partitions();
        let partitions: Vec<Preload> = partitions.into_iter().filter(|p| p.partition < n).collect();
        let shared = &self.shared;
        let preparation = Preparation {
            attempt: shared.attempt,
            plan: Arc::clone(&shared.plan),
            checkpoints: shared.checkpoints.clone(),
            map: Arc::clone(&shared.preloaded),
            reports: shared.reports.clone(),
            cancel: shared.cancel.clone(),
        };
        self.tasks.spawn_on(
            preparation.run(checkpoint, partitions),
            &super::data_runtime::handle(),
        );
    }

    /// Checkpoint `checkpoint`, which moved `partitions` here, is committed: starts their
    /// receivers (restoring it) and sources (from its offsets).
    pub(crate) fn adopt(
        &mut self,
        checkpoint: u64,
        partitions: &[Adoption],
        ended: &[usize],
    ) -> Result<(), DataflowError> {
        let shared = Arc::clone(&self.shared);
        let (Some(checkpoints), Some(out)) = (&shared.checkpoints, self.router.clone()) else {
            return Err(DataflowError::Exchange(
                "partitions adopted before the move was prepared".to_string(),
            ));
        };
        let n = shared.num_partitions();
        let ended: HashSet<usize> = ended.iter().copied().filter(|&s| s < n).collect();
        for a in partitions.iter().filter(|a| a.partition < n) {
            let p = a.partition;
            tracing::info!(
                attempt = shared.attempt,
                partition = p,
                checkpoint,
                offset = a.source_offset,
                exhausted = a.source_exhausted,
                "adopting a partition"
            );
            // (It joined the partitions committed here when the adoption was queued:
            // `JobRunner::adopt`.)
            let preloaded = shared.preloaded.take(p);
            let from = Some((checkpoint, a.state_file.clone()));
            self.spawn_receiver(p, from, ended.clone(), preloaded, true);
            // The source goes on counting from what it had read by the checkpoint.
            shared.controls[p]
                .records_in
                .store(a.source_records, Ordering::Relaxed);
            checkpoints.adopt_source(
                p,
                checkpoint,
                a.source_offset,
                a.source_exhausted,
                a.source_records,
            );
            if !a.source_exhausted {
                self.spawn_source(p, a.source_offset, &out);
            }
        }
        Ok(())
    }

    fn spawn(&mut self, partition: usize, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let id = self.tasks.spawn_on(task, &super::data_runtime::handle()).id();
        self.partitions.insert(id, partition);
    }

    /// Starts partition `q`'s receiver task: restoring `restore` (over `preloaded`, its state
    /// loaded ahead of a move here), reporting that it runs again if it was `adopted`.
    fn spawn_receiver(
        &mut self,
        q: usize,
        restore: RestoreFrom,
        mut ended: HashSet<usize>,
        preloaded: Option<Preloaded>,
        adopted: bool,
    ) {
        let shared = Arc::clone(&self.shared);
        ended.extend(
            shared
                .empty_sources
                .iter()
                .enumerate()
                .filter(|(_, e)| **e)
                .map(|(s, _)| s),
        );
        let Some(mut inbox) = shared.plane.take_inbox(shared.attempt, q) else {
            return;
        };
        // Stopping cancels the token first, then tells the inboxes that exist: an inbox taken
        // after that is told nothing, so its receiver must not start.
        if shared.cancel.is_cancelled() {
            return;
        }
        let receiver = ReceiverTask {
            plan: Arc::clone(&shared.plan),
            ctx: SinkContext {
                partition: q,
                num_partitions: shared.num_partitions(),
                attempt: shared.attempt,
            },
            checkpoints: shared.checkpoints.clone(),
            restore,
            ended,
            cancel: shared.cancel.clone(),
            plane: shared.plane.clone(),
            preloaded: Mutex::new(preloaded),
            delta_barriers: Arc::clone(&shared.delta_barriers),
            resumed: adopted.then(|| shared.reports.clone()),
            metrics: shared.metrics.clone(),
            local: Some(LocalRecovery {
                states: Arc::clone(&shared.local),
                job: shared.job_name.clone(),
            }),
        };
        let (reports, records_out, attempt) = (
            shared.reports.clone(),
            Arc::clone(&shared.records_out),
            shared.attempt,
        );
        let records_out_total = shared.metrics.records_out(&shared.job_name, q);
        self.spawn(q, async move {
            let cancel = receiver.cancel.clone();
            // The inbox outlives the failure's report: dropped first, local sources would fail
            // ("receiver is gone") and might report before the cause.
            match guarded_async(receiver.run(&mut inbox)).await {
                Ok(Some(written)) => {
                    records_out.fetch_add(written, Ordering::Relaxed);
                    records_out_total.fetch_add(written, Ordering::Relaxed);
                    let _ = reports.send(WorkerMessage::PartitionDone {
                        attempt,
                        partition: q,
                        records_out: written,
                    });
                }
                Ok(None) => {}
                Err(_) if cancel.is_cancelled() => {}
                Err(e) => report_failure(&reports, attempt, Some(q), &e),
            }
        });
    }

    fn spawn_source(&mut self, p: usize, start: u64, out: &AttemptOut) {
        let shared = &self.shared;
        let source = SourceTask::new(
            p,
            shared.num_partitions(),
            SourceOffset(start),
            Arc::clone(&shared.plan),
            Arc::clone(&shared.controls),
            out.for_source(p),
            shared.reports.clone(),
            shared.checkpoints.clone(),
            shared.attempt,
            shared.empty_sources.get(p).copied().unwrap_or(false),
        );
        let slots = Arc::clone(&shared.slots);
        self.spawn(p, source.drive(slots));
    }
}

impl AttemptTasks {
    pub(crate) fn num_partitions(&self) -> usize {
        self.controls.len()
    }

    /// `partitions` (those in range) join the partitions whose sink epochs this worker commits.
    pub(crate) fn commit_here(&self, partitions: &[usize]) {
        let n = self.num_partitions();
        self.committing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(partitions.iter().copied().filter(|&p| p < n));
    }

    fn me(&self) -> &WorkerId {
        self.plane.me()
    }

    /// Where each partition lives, connecting to the peers that own some.
    async fn destinations(&self, owners: &[PartitionOwner]) -> Result<Vec<Destination>, DataflowError> {
        let mut links: HashMap<WorkerId, Destination> = HashMap::new();
        let mut destinations = Vec::with_capacity(owners.len());
        for (q, owner) in owners.iter().enumerate() {
            let destination = match links.get(&owner.worker) {
                Some(link) => link.clone(),
                None => {
                    let d = self.destination(owner, q).await?;
                    if owner.worker != *self.me() {
                        links.insert(owner.worker.clone(), d.clone());
                    }
                    d
                }
            };
            destinations.push(destination);
        }
        Ok(destinations)
    }

    /// Where records for partition `q` owned by `owner` go: its inbox here (with its own
    /// credits), or the link to its owner (connecting if needed).
    async fn destination(&self, owner: &PartitionOwner, q: usize) -> Result<Destination, DataflowError> {
        if owner.worker == *self.me() {
            return Ok(self.local(q));
        }
        let link = tokio::select! {
            link = self.plane.connect(&owner.worker, &owner.address) => link?,
            _ = self.cancel.cancelled() => return Err(DataflowError::Cancelled),
        };
        Ok(Destination::Remote(link))
    }

    fn local(&self, q: usize) -> Destination {
        Destination::Local {
            inbox: self.plane.inbox(self.attempt, q),
            credits: Arc::default(),
        }
    }
}
