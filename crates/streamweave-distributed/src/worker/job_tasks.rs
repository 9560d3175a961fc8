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
//! A panic in job code on either side fails the task and the attempt with its message.
//!
//! A partition moving out at barrier `n` ends both its tasks there; the new owner starts them
//! once `n` is committed ([`AttemptTasks::adopt`]): the receiver restores `n`'s snapshot, the
//! source resumes from `n`'s offset, and the batches routed to it since the barrier wait in
//! its inbox.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::checkpointing::Checkpoints;
use super::exchange::{AttemptOut, DataPlane, Destination, RouteChanges, CREDITS_PER_CHANNEL};
use super::panics::guarded_async;
use super::receiver_task::{ReceiverTask, RestoreFrom};
use super::source_task::{SourceSlots, SourceTask};
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, SinkContext, SourceOffset};
use crate::protocol::{Adoption, PartitionMove, PartitionOwner, WorkerMessage};
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
    /// Who owns each partition, as of the newest checkpoint barrier that moved some.
    pub(crate) owners: Mutex<Vec<PartitionOwner>>,
    /// The partitions whose sink output this worker commits.
    pub(crate) committing: Mutex<BTreeSet<usize>>,
    /// By source partition: whether its share is known to be empty (empty: not known). Such a
    /// source sends no end-of-stream and every receiver counts it as ended from the start.
    pub(crate) empty_sources: Arc<Vec<bool>>,
}

impl AttemptTasks {
    fn num_partitions(&self) -> usize {
        self.controls.len()
    }

    fn me(&self) -> &WorkerId {
        self.plane.me()
    }

    /// Connects to the owners of the partitions and starts the tasks of `mine`, restoring
    /// `restore[p]` (state file, source offset) from checkpoint `restored` where given.
    pub(crate) async fn launch(
        self: &Arc<Self>,
        mine: &[usize],
        restored: u64,
        restore: &[(String, u64)],
    ) -> Result<(), DataflowError> {
        if mine.is_empty() {
            return Ok(());
        }
        let owners = self.owners.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let out = AttemptOut::new(
            self.attempt,
            self.destinations(&owners).await?,
            self.cancel.clone(),
            Arc::clone(&self.routes),
            restored,
        );
        for &q in mine {
            let from = restore
                .get(q)
                .filter(|_| restored > 0)
                .map(|(file, _)| (restored, file.clone()));
            self.spawn_receiver(q, from, HashSet::new());
        }
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.connected(out.clone());
        }
        for &p in mine {
            let start = restore.get(p).map_or(0, |(_, offset)| *offset);
            self.spawn_source(p, start, &out);
        }
        Ok(())
    }

    /// Checkpoint `id` moves `moves`: prepares the routes to the new owners (connecting to
    /// them), marks the partitions leaving this worker, and, on a worker that gains partitions
    /// and had none, builds the attempt's router. Runs before `id` is requested here.
    pub(crate) async fn prepare_moves(
        self: &Arc<Self>,
        id: u64,
        moves: &[PartitionMove],
    ) -> Result<(), DataflowError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Err(DataflowError::Exchange(
                "a partition move in an attempt without checkpoints".to_string(),
            ));
        };
        // The data plane takes what is routed to the partitions moving here, from their owners.
        for m in moves {
            self.plane.add_member(self.attempt, &m.to.worker);
            if m.to.worker == *self.me() {
                self.plane.own(self.attempt, m.partition);
            }
        }
        let owners = {
            let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
            for m in moves {
                if m.partition >= owners.len() {
                    return Err(DataflowError::Exchange(format!(
                        "a move of partition {} of {}",
                        m.partition,
                        owners.len()
                    )));
                }
                if owners[m.partition].worker == *self.me() && m.to.worker != *self.me() {
                    checkpoints.leave_at(m.partition, id);
                    self.committing
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&m.partition);
                }
                owners[m.partition] = m.to.clone();
            }
            owners.clone()
        };
        if checkpoints.router().is_none() {
            // Nothing ran here: only a worker that gains partitions needs a router, built on
            // the owners after this barrier.
            if moves.iter().any(|m| m.to.worker == *self.me()) {
                let destinations = self.destinations(&owners).await?;
                checkpoints.connected(AttemptOut::new(
                    self.attempt,
                    destinations,
                    self.cancel.clone(),
                    Arc::clone(&self.routes),
                    id,
                ));
            }
            return Ok(());
        }
        for m in moves {
            let to = self.destination(&m.to, m.partition).await?;
            self.routes.add(id, m.partition, to);
        }
        Ok(())
    }

    /// Checkpoint `checkpoint`, which moved `partitions` here, is committed: starts their
    /// receivers (restoring it) and sources (from its offsets).
    pub(crate) fn adopt(self: &Arc<Self>, checkpoint: u64, partitions: &[Adoption], ended: &[usize]) {
        let (Some(checkpoints), Some(out)) = (
            &self.checkpoints,
            self.checkpoints.as_ref().and_then(|c| c.router()),
        ) else {
            report_failure(
                &self.reports,
                self.attempt,
                None,
                &DataflowError::Exchange("partitions adopted before the move was prepared".to_string()),
            );
            return;
        };
        let ended: HashSet<usize> = ended
            .iter()
            .copied()
            .filter(|&s| s < self.num_partitions())
            .collect();
        for a in partitions.iter().filter(|a| a.partition < self.num_partitions()) {
            let p = a.partition;
            tracing::info!(
                attempt = self.attempt,
                partition = p,
                checkpoint,
                offset = a.source_offset,
                exhausted = a.source_exhausted,
                "adopting a partition"
            );
            self.committing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(p);
            self.spawn_receiver(p, Some((checkpoint, a.state_file.clone())), ended.clone());
            checkpoints.adopt_source(
                p,
                checkpoint,
                a.source_offset,
                a.source_exhausted,
                a.source_records,
                &self.controls,
            );
            if !a.source_exhausted {
                self.spawn_source(p, a.source_offset, &out);
            }
        }
    }

    fn spawn_receiver(self: &Arc<Self>, q: usize, restore: RestoreFrom, mut ended: HashSet<usize>) {
        ended.extend(
            self.empty_sources
                .iter()
                .enumerate()
                .filter(|(_, e)| **e)
                .map(|(s, _)| s),
        );
        let Some(mut inbox) = self.plane.take_inbox(self.attempt, q) else {
            return;
        };
        // Stopping cancels the token first, then tells the inboxes that exist: an inbox taken
        // after that is told nothing, so its receiver must not start.
        if self.cancel.is_cancelled() {
            return;
        }
        let receiver = ReceiverTask {
            plan: Arc::clone(&self.plan),
            ctx: SinkContext {
                partition: q,
                num_partitions: self.num_partitions(),
                attempt: self.attempt,
            },
            checkpoints: self.checkpoints.clone(),
            restore,
            ended,
            cancel: self.cancel.clone(),
            plane: self.plane.clone(),
        };
        let (reports, records_out, attempt) =
            (self.reports.clone(), Arc::clone(&self.records_out), self.attempt);
        super::data_runtime::spawn(async move {
            let cancel = receiver.cancel.clone();
            // The inbox outlives the failure's report: dropped first, local sources would fail
            // ("receiver is gone") and might report before the cause.
            match guarded_async(receiver.run(&mut inbox)).await {
                Ok(Some(written)) => {
                    records_out.fetch_add(written, Ordering::Relaxed);
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

    fn spawn_source(self: &Arc<Self>, p: usize, start: u64, out: &AttemptOut) {
        let source = SourceTask::new(
            p,
            self.num_partitions(),
            SourceOffset(start),
            Arc::clone(&self.plan),
            Arc::clone(&self.controls),
            out.for_source(p),
            self.reports.clone(),
            self.checkpoints.clone(),
            self.attempt,
            self.empty_sources.get(p).copied().unwrap_or(false),
        );
        super::data_runtime::spawn(source.drive(Arc::clone(&self.slots)));
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
            credits: Arc::new(Semaphore::new(CREDITS_PER_CHANNEL)),
        }
    }
}
