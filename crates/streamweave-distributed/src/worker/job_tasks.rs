//! The tasks of one job attempt on this worker: per owned partition a source task and a
//! receiver task, on blocking threads, started when the attempt starts or when a partition
//! moves here inside it.
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
//! A partition moving out at barrier `n` ends both its tasks there; the new owner starts them
//! once `n` is committed ([`AttemptTasks::adopt`]): the receiver restores `n`'s snapshot, the
//! source resumes from `n`'s offset, and the batches routed to it since the barrier wait in
//! its inbox.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::checkpointing::Checkpoints;
use super::exchange::{
    AttemptOut, DataPlane, Destination, Inbound, InboxReceiver, RouteChanges, CREDITS_PER_CHANNEL,
};
use crate::checkpoint::{CheckpointId, CheckpointStore};
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, SinkContext, SourceContext, SourceEnd, SourceOffset};
use crate::protocol::{Adoption, PartitionMove, PartitionOwner, WorkerMessage};
use crate::types::WorkerId;

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

/// What to restore a receiver from: a checkpoint and the partition's state file in it.
pub(crate) type RestoreFrom = Option<(u64, String)>;

/// Everything one attempt's tasks on this worker share; the job runner keeps it to start
/// tasks of partitions that move here.
pub(crate) struct AttemptTasks {
    pub(crate) attempt: u64,
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) plane: DataPlane,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) slots: Arc<Semaphore>,
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

    fn spawn_receiver(self: &Arc<Self>, q: usize, restore: RestoreFrom, ended: HashSet<usize>) {
        let Some(inbox) = self.plane.take_inbox(self.attempt, q) else {
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

    fn spawn_source(self: &Arc<Self>, p: usize, start: u64, out: &AttemptOut) {
        let source = SourceTask {
            partition: p,
            num_partitions: self.num_partitions(),
            start: SourceOffset(start),
            plan: Arc::clone(&self.plan),
            controls: Arc::clone(&self.controls),
            out: out.for_source(p),
            reports: self.reports.clone(),
            checkpoints: self.checkpoints.clone(),
            attempt: self.attempt,
        };
        let (slots, runtime) = (
            self.plan.bounded().then(|| Arc::clone(&self.slots)),
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

struct SourceTask {
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

    /// Reads the share from the start offset, stopping at every checkpoint barrier, until it is
    /// exhausted or the partition leaves this worker at a barrier.
    fn read(&mut self) -> Result<(), DataflowError> {
        let ctx = SourceContext {
            partition: self.partition,
            num_partitions: self.num_partitions,
        };
        let control = &self.controls[self.partition];
        let mut offset = self.start;
        if let Some(checkpoints) = &self.checkpoints {
            if !checkpoints.source_starting(self.partition, &mut self.out)? {
                return Ok(());
            }
        }
        loop {
            match self.plan.run_source(&ctx, offset, control, &mut self.out)? {
                SourceEnd::Exhausted(end) => {
                    if let Some(checkpoints) = &self.checkpoints {
                        checkpoints.source_exhausted(self.partition, end.0);
                    }
                    self.out.end_of_stream(self.partition)?;
                    let _ = self.reports.send(WorkerMessage::SourceDone {
                        attempt: self.attempt,
                        partition: self.partition,
                        records_in: control.records_in.load(Ordering::Relaxed),
                    });
                    return Ok(());
                }
                SourceEnd::Stopped(at) => {
                    if self.out.cancel.is_cancelled() {
                        return Ok(());
                    }
                    control.pause.store(false, Ordering::Release);
                    offset = at;
                    if let Some(checkpoints) = &self.checkpoints {
                        if !checkpoints.barrier_reached(self.partition, at.0, &mut self.out)? {
                            tracing::debug!(
                                attempt = self.attempt,
                                partition = self.partition,
                                offset = at.0,
                                "source moved away at a barrier"
                            );
                            return Ok(());
                        }
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
    restore: RestoreFrom,
    /// Sources that had ended before the restored checkpoint (a partition that moved here
    /// inside the attempt: their end-of-stream went to the old owner).
    ended: HashSet<usize>,
    cancel: CancellationToken,
    plane: DataPlane,
}

impl ReceiverTask {
    /// Applies batches until every source partition has ended, then commits (or, with
    /// checkpoints, pre-commits the final epoch). `Ok(None)` when the attempt was cancelled or
    /// the partition left this worker at a barrier.
    fn run(mut self, mut inbox: InboxReceiver) -> Result<Option<u64>, DataflowError> {
        let q = self.ctx.partition;
        if self.checkpoints.is_some() {
            // What earlier attempts (or the previous owner) wrote after the checkpoint we restore
            // never becomes output; what was pre-committed up to it is final (idempotent).
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
        let mut ended = std::mem::take(&mut self.ended);
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
            if let Inbound::Batch { from, .. } | Inbound::Barrier { from, .. } | Inbound::Eos { from } =
                &message
            {
                // Source partitions come from the network: one out of range would corrupt the
                // counts that decide alignment and the end.
                if *from >= self.ctx.num_partitions {
                    return Err(DataflowError::Exchange(format!(
                        "partition {q} got a message from source partition {from} of {}",
                        self.ctx.num_partitions
                    )));
                }
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
                    let id = *id;
                    if let Some(checkpoints) = self.checkpoints.as_ref().filter(|c| c.leaves_at(q, id)) {
                        if !held.is_empty() {
                            // Every source routes to the new owner after this barrier, so
                            // nothing can follow it here; if something did, fail rather than
                            // lose it.
                            return Err(DataflowError::Exchange(format!(
                                "partition {q} received records after its hand-over barrier {id}"
                            )));
                        }
                        // Every source now sends to the new owner: hand over and end.
                        let state = Self::seal(&mut *receiver, id)?;
                        drop(receiver);
                        // Before the acknowledgement: the partition may come back once the
                        // move is committed, and must then find a fresh inbox.
                        drop(inbox);
                        self.plane.retire_inbox(self.ctx.attempt, q);
                        store_snapshot(checkpoints, id, q, &state);
                        tracing::debug!(
                            partition = q,
                            checkpoint = id,
                            "partition handed over at a barrier"
                        );
                        return Ok(None);
                    }
                    self.snapshot(&mut *receiver, id)?;
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

    /// Barrier `id`: the copy of the partition's state, with its sink's output pre-committed.
    fn seal(receiver: &mut dyn crate::dataflow::plan::Receiver, id: u64) -> Result<Vec<u8>, DataflowError> {
        let state = receiver.snapshot()?;
        receiver.pre_commit(id)?;
        Ok(state)
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
        let state = Self::seal(receiver, id)?;
        let checkpoints = Arc::clone(checkpoints);
        std::thread::spawn(move || store_snapshot(&checkpoints, id, q, &state));
        Ok(())
    }
}

/// Writes partition `q`'s state for checkpoint `id` to the store and acknowledges it.
fn store_snapshot(checkpoints: &super::checkpointing::AttemptCheckpoints, id: u64, q: usize, state: &[u8]) {
    let name = format!("state-p{q:05}");
    match checkpoints.store.put(CheckpointId(id), &name, state) {
        Ok(_) => checkpoints.state_saved(id, q, name, state.len() as u64),
        // No acknowledgement: the coordinator times the checkpoint out and takes the next.
        Err(e) => {
            tracing::warn!(checkpoint = id, partition = q, error = %e, "cannot store a snapshot")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::sinks::CollectorSink;
    use crate::dataflow::sources::CollectionSource;
    use crate::dataflow::Stream;

    /// A receiver of partition 0 of 2, without checkpoints, fed `messages`.
    async fn receive(messages: Vec<Inbound>) -> Result<Option<u64>, DataflowError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
        let job = Stream::from_source(CollectionSource::new(vec![String::new()]))
            .exchange(crate::dataflow::HashPartitioner)
            .sink(CollectorSink::new());
        let receiver = ReceiverTask {
            plan: Arc::clone(&job.plan),
            ctx: SinkContext {
                partition: 0,
                num_partitions: 2,
                attempt: 1,
            },
            checkpoints: None,
            restore: None,
            ended: HashSet::new(),
            cancel: CancellationToken::new(),
            plane,
        };
        let (tx, rx) = mpsc::channel(messages.len().max(1));
        for m in messages {
            tx.try_send(m).unwrap();
        }
        drop(tx);
        tokio::task::spawn_blocking(move || receiver.run(rx))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_source_partition_out_of_range_fails_the_receiver_instead_of_ending_it() {
        let outcome = receive(vec![Inbound::Eos { from: 0 }, Inbound::Eos { from: 7 }]).await;
        let error = outcome.expect_err("a bogus source must not count as ended");
        assert!(error.to_string().contains("source partition 7 of 2"), "{error}");
        // Both real sources ending finishes the partition.
        let done = receive(vec![Inbound::Eos { from: 0 }, Inbound::Eos { from: 1 }]).await;
        assert_eq!(done.unwrap(), Some(0));
    }
}
