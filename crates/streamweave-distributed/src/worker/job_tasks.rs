//! The tasks of one job attempt on this worker: per owned partition a source task and a
//! receiver task, on blocking threads.
//!
//! ```text
//! source task p:   run_source(offset) --Stopped (barrier)--> ack offset, barrier to every q, resume
//!                                      --Exhausted--------> ack pending barrier, end-of-stream
//! receiver task q: batches -> Receiver; barrier id from source s: hold s's later batches until
//!                  every source sent id (or ended), then snapshot -> store, pre-commit the sink,
//!                  ack; all sources ended -> finish (commit, or pre-commit the final epoch)
//! ```

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::checkpointing::Checkpoints;
use super::exchange::{AttemptOut, DataPlane, Destination, Inbound, CREDITS_PER_CHANNEL};
use crate::checkpoint::{CheckpointId, CheckpointStore};
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, SinkContext, SourceContext, SourceEnd, SourceOffset};
use crate::protocol::{PartitionOwner, RestorePoint, WorkerMessage};

/// The epoch under which a checkpointed job's final output is pre-committed.
pub(crate) const FINAL_EPOCH: u64 = u64::MAX;

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
    });
}

/// Everything an attempt's tasks need, moved into the task that starts them.
pub(crate) struct Launch {
    pub(crate) attempt: u64,
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) owners: Vec<PartitionOwner>,
    pub(crate) mine: Vec<usize>,
    pub(crate) plane: DataPlane,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) slots: Arc<Semaphore>,
    pub(crate) cancel: CancellationToken,
    pub(crate) controls: Arc<Vec<SourceControl>>,
    pub(crate) records_out: Arc<AtomicU64>,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) restore: Option<RestorePoint>,
}

impl Launch {
    pub(crate) async fn run(self) {
        if self.mine.is_empty() {
            return;
        }
        let destinations = match self.destinations().await {
            Ok(d) => d,
            Err(e) => {
                if !self.cancel.is_cancelled() {
                    report_failure(&self.reports, self.attempt, None, &e);
                }
                return;
            }
        };
        let out = AttemptOut {
            attempt: self.attempt,
            from: 0,
            destinations: Arc::new(destinations),
            cancel: self.cancel.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let num_partitions = self.owners.len();
        for &q in &self.mine {
            let Some(inbox) = self.plane.take_inbox(self.attempt, q) else {
                continue;
            };
            let receiver = ReceiverTask {
                plan: Arc::clone(&self.plan),
                ctx: SinkContext {
                    partition: q,
                    num_partitions,
                    attempt: self.attempt,
                },
                checkpoints: self.checkpoints.clone(),
                restore: self
                    .restore
                    .as_ref()
                    .and_then(|r| r.partitions.get(q).map(|(f, _)| (r.id, f.clone()))),
                cancel: self.cancel.clone(),
            };
            let (reports, records_out, attempt) =
                (self.reports.clone(), Arc::clone(&self.records_out), self.attempt);
            tokio::task::spawn_blocking(move || {
                let cancel = receiver.cancel.clone();
                match receiver.run(inbox) {
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
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.connected(out.clone(), &self.mine);
        }
        let slotted = self.plan.bounded();
        for (task, &p) in self.mine.iter().enumerate() {
            let start = self
                .restore
                .as_ref()
                .and_then(|r| r.partitions.get(p).map(|(_, o)| *o))
                .unwrap_or(0);
            let source = SourceTask {
                task,
                partition: p,
                num_partitions,
                start: SourceOffset(start),
                plan: Arc::clone(&self.plan),
                controls: Arc::clone(&self.controls),
                out: AttemptOut {
                    from: p,
                    ..out.clone()
                },
                reports: self.reports.clone(),
                checkpoints: self.checkpoints.clone(),
                attempt: self.attempt,
            };
            let (slots, runtime) = (
                slotted.then(|| Arc::clone(&self.slots)),
                tokio::runtime::Handle::current(),
            );
            tokio::task::spawn_blocking(move || {
                // Bounded sources take turns for the worker's slots; unbounded ones must all run.
                let _slot = match slots {
                    Some(slots) => {
                        let cancel = source.out.cancel.clone();
                        let slot = runtime.block_on(async {
                            tokio::select! {
                                slot = slots.acquire_owned() => slot.ok(),
                                _ = cancel.cancelled() => None,
                            }
                        });
                        match slot {
                            Some(slot) => Some(slot),
                            None => return,
                        }
                    }
                    None => None,
                };
                source.run();
            });
        }
    }

    /// Where each partition of the attempt lives, connecting to the peers that own some.
    async fn destinations(&self) -> Result<Vec<Destination>, DataflowError> {
        let me = self.plane.me().clone();
        let mut destinations = Vec::with_capacity(self.owners.len());
        let peers: BTreeSet<&str> = self
            .owners
            .iter()
            .filter(|o| o.worker != me)
            .map(|o| o.worker.as_str())
            .collect();
        let mut links = std::collections::HashMap::new();
        for owner in &self.owners {
            if owner.worker == me
                || !peers.contains(owner.worker.as_str())
                || links.contains_key(&owner.worker)
            {
                continue;
            }
            let link = tokio::select! {
                link = self.plane.connect(&owner.worker, &owner.address) => link?,
                _ = self.cancel.cancelled() => return Err(DataflowError::Cancelled),
            };
            links.insert(owner.worker.clone(), link);
        }
        for (q, owner) in self.owners.iter().enumerate() {
            destinations.push(if owner.worker == me {
                Destination::Local {
                    inbox: self.plane.inbox(self.attempt, q),
                    credits: Arc::new(Semaphore::new(CREDITS_PER_CHANNEL)),
                }
            } else {
                match links.get(&owner.worker) {
                    Some(link) => Destination::Remote(Arc::clone(link)),
                    None => {
                        return Err(DataflowError::Exchange(format!(
                            "no connection to worker {}",
                            owner.worker
                        )))
                    }
                }
            });
        }
        Ok(destinations)
    }
}

struct SourceTask {
    task: usize,
    partition: usize,
    num_partitions: usize,
    start: SourceOffset,
    plan: Arc<dyn ErasedPlan>,
    controls: Arc<Vec<SourceControl>>,
    out: AttemptOut,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    checkpoints: Checkpoints,
    attempt: u64,
}

impl SourceTask {
    fn run(mut self) {
        let result = self.read();
        match result {
            Ok(()) => {}
            Err(_) if self.out.cancel.is_cancelled() => {}
            Err(e) => report_failure(&self.reports, self.attempt, Some(self.partition), &e),
        }
    }

    /// Reads the share from the start offset, stopping at every checkpoint barrier.
    fn read(&mut self) -> Result<(), DataflowError> {
        let ctx = SourceContext {
            partition: self.partition,
            num_partitions: self.num_partitions,
        };
        let control = &self.controls[self.task];
        let mut offset = self.start;
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.source_starting(self.task, self.partition, &self.out)?;
        }
        loop {
            match self.plan.run_source(&ctx, offset, control, &mut self.out)? {
                SourceEnd::Exhausted(end) => {
                    if let Some(checkpoints) = &self.checkpoints {
                        let mut progress = checkpoints.sources[self.task]
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        progress.exhausted = true;
                        progress.offset = end.0;
                        // A barrier requested while the last records went out: the end stands in.
                        let requested = checkpoints.requested.load(Ordering::Acquire);
                        if requested > progress.acked {
                            progress.acked = requested;
                            drop(progress);
                            checkpoints.source_reached(requested, self.partition, end.0);
                        }
                    }
                    self.out.end_of_stream(self.partition)?;
                    let records_in = control.records_in.load(Ordering::Relaxed);
                    let _ = self.reports.send(WorkerMessage::SourceDone {
                        attempt: self.attempt,
                        partition: self.partition,
                        records_in,
                    });
                    return Ok(());
                }
                SourceEnd::Stopped(at) => {
                    if self.out.cancel.is_cancelled() {
                        return Ok(());
                    }
                    control.pause.store(false, Ordering::Release);
                    offset = at;
                    let Some(checkpoints) = &self.checkpoints else {
                        continue;
                    };
                    let id = checkpoints.requested.load(Ordering::Acquire);
                    let mut progress = checkpoints.sources[self.task]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    progress.offset = at.0;
                    if id > progress.acked {
                        progress.acked = id;
                        drop(progress);
                        checkpoints.source_reached(id, self.partition, at.0);
                        self.out.barrier(id)?;
                    }
                }
            }
        }
    }
}

struct ReceiverTask {
    plan: Arc<dyn ErasedPlan>,
    ctx: SinkContext,
    checkpoints: Checkpoints,
    /// The checkpoint and state file to restore from.
    restore: Option<(u64, String)>,
    cancel: CancellationToken,
}

impl ReceiverTask {
    /// Applies batches until every source partition has ended, then commits (or, with
    /// checkpoints, pre-commits the final epoch). `Ok(None)` when the attempt was cancelled.
    fn run(&self, mut inbox: mpsc::UnboundedReceiver<Inbound>) -> Result<Option<u64>, DataflowError> {
        let q = self.ctx.partition;
        if self.checkpoints.is_some() {
            // What earlier attempts wrote after the checkpoint we restore never becomes output;
            // what they pre-committed up to it is final (idempotent if already done).
            let restored = self.restore.as_ref().map_or(0, |(id, _)| *id);
            self.plan.discard_after(q, restored)?;
            if restored > 0 {
                self.plan.commit_epochs(q, restored)?;
            }
        }
        let mut receiver = self.plan.open_receiver(&self.ctx)?;
        if let (Some((id, file)), Some(checkpoints)) = (&self.restore, &self.checkpoints) {
            let state = checkpoints
                .store
                .get(CheckpointId(*id), file)
                .map_err(|e| DataflowError::Exchange(format!("restoring checkpoint {id}: {e}")))?;
            receiver.restore(&state)?;
        }
        let mut ended: HashSet<usize> = HashSet::new();
        // The checkpoint being aligned, with the sources whose barrier arrived.
        let mut aligning: Option<(u64, BTreeSet<usize>)> = None;
        let mut held: VecDeque<Inbound> = VecDeque::new();
        loop {
            let message = if aligning.is_none() && !held.is_empty() {
                held.pop_front()
            } else {
                inbox.blocking_recv()
            };
            let Some(message) = message else { return Ok(None) };
            if self.cancel.is_cancelled() {
                return Ok(None);
            }
            match message {
                Inbound::Batch { from, .. }
                    if aligning.as_ref().is_some_and(|(_, got)| got.contains(&from)) =>
                {
                    // After its barrier: belongs to the next epoch, applied once aligned.
                    held.push_back(message);
                    continue;
                }
                Inbound::Batch { batch, credit, .. } => {
                    receiver.on_batch(batch)?;
                    credit.release();
                }
                Inbound::Barrier { id, from } => {
                    aligning
                        .get_or_insert_with(|| (id, BTreeSet::new()))
                        .1
                        .insert(from);
                }
                Inbound::Eos { from } => {
                    ended.insert(from);
                }
                Inbound::Cancel => return Ok(None),
            }
            if let Some((id, got)) = &aligning {
                if (0..self.ctx.num_partitions).all(|s| got.contains(&s) || ended.contains(&s)) {
                    self.snapshot(&mut *receiver, *id)?;
                    aligning = None;
                }
            }
            if aligning.is_none() && held.is_empty() && ended.len() == self.ctx.num_partitions {
                return match self.checkpoints {
                    Some(_) => receiver.finish_pending(FINAL_EPOCH).map(Some),
                    None => receiver.finish().map(Some),
                };
            }
        }
    }

    fn snapshot(
        &self,
        receiver: &mut dyn crate::dataflow::plan::Receiver,
        id: u64,
    ) -> Result<(), DataflowError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(());
        };
        let q = self.ctx.partition;
        // The partition pauses only for the copy of its state; the write to the store (and the
        // acknowledgement after it) happen beside the processing that goes on.
        let state = receiver.snapshot()?;
        receiver.pre_commit(id)?;
        let checkpoints = Arc::clone(checkpoints);
        std::thread::spawn(move || {
            let name = format!("state-p{q:05}");
            match checkpoints.store.put(CheckpointId(id), &name, &state) {
                Ok(_) => checkpoints.state_saved(id, q, name, state.len() as u64),
                // No acknowledgement: the coordinator times the checkpoint out and takes the next.
                Err(e) => {
                    tracing::warn!(checkpoint = id, partition = q, error = %e, "cannot store a snapshot")
                }
            }
        });
        Ok(())
    }
}
