//! The receiving side of one partition in one attempt, as an async task: it awaits the
//! partition's inbox, lets [`Alignment`] decide what each message means, applies batches to the
//! partition's stage, snapshots at aligned barriers and finishes into the sink. Thousands of
//! partitions share the data runtime's threads (one per core, `data_runtime.rs`); sink opening,
//! commits and snapshot I/O go to the bounded blocking pool (`blocking.rs`).
//!
//! ```text
//! start: discard sink output after the restored checkpoint, commit epochs <= it (< it when
//!        adopted after a move: the move's checkpoint may not be committed yet), open the
//!        receiver, restore its state                                     (blocking pool)
//!        (a stage that merges restored state starts empty instead, its state loading beside
//!        it and merged in at the first barrier: `background_restore.rs`)
//! loop:  inbox / replayed message -> Alignment::on_message
//!          Apply    -> Receiver::on_batch, credit back
//!          Aligned  -> seal (snapshot + sink pre-commit; blocking pool), then the write of the
//!                      state and the acknowledgement go on beside the processing; a partition
//!                      leaving here (the checkpoint actor says) hands over and ends instead
//!          Finished -> finish (commit, or pre-commit the final epoch)     (blocking pool)
//! end:   cancelled (the attempt stopped) with the whole state in hand: kept for the next
//!        attempt with the checkpoints it can roll back to (`local_states.rs`), which takes it
//!        instead of reading the store when it restores one of them
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::alignment::{Alignment, Step};
use super::background_restore::BackgroundRestore;
use super::blocking;
use super::checkpoint_actor::Checkpoints;
use super::compaction::Compactor;
use super::exchange::DataPlane;
use super::local_states::{self, Kept, LocalStates, Taken};
use super::preload::Preloaded;
use super::state_writer::{self, DeltaBarriers, SealedState, StateWriter, StoreParts};
use crate::checkpoint::{ChainPolicy, PartitionChain, SegmentKind, StateIndex};
use crate::dataflow::plan::{ErasedPlan, Receiver};
use crate::dataflow::{DataflowError, Encoded, SinkContext};
use crate::observe::WorkerMetrics;
use crate::protocol::{MovePhase, WorkerMessage};

/// The epoch under which a checkpointed job's final output is pre-committed.
pub(crate) const FINAL_EPOCH: u64 = u64::MAX;

/// What to restore a receiver from: a checkpoint and the partition's state file in it.
pub(crate) type RestoreFrom = Option<(u64, String)>;

/// The inbox a receiver task reads.
pub(crate) type InboxRx = super::exchange::InboxReceiver;

pub(crate) struct ReceiverTask {
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) ctx: SinkContext,
    pub(crate) checkpoints: Checkpoints,
    /// The checkpoint and state file to restore from.
    pub(crate) restore: RestoreFrom,
    /// Sources that had ended before the restored checkpoint (a partition that moved here
    /// inside the attempt: their end-of-stream went to the old owner).
    pub(crate) ended: HashSet<usize>,
    pub(crate) cancel: CancellationToken,
    pub(crate) plane: DataPlane,
    /// The partition's state, loaded ahead of its move here (`preload.rs`); taken once, when
    /// the receiver opens (a mutex only so that the task can be shared across its awaits).
    pub(crate) preloaded: Mutex<Option<Preloaded>>,
    /// A partition adopted inside the attempt: where to report that it runs again.
    pub(crate) resumed: Option<mpsc::UnboundedSender<WorkerMessage>>,
    /// Where the partition writes a delta whatever compaction would say
    /// (`AttemptTasks::delta_barriers`).
    pub(crate) delta_barriers: Arc<DeltaBarriers>,
    /// Where compactions of the partition's state are counted.
    pub(crate) metrics: WorkerMetrics,
    /// Where the state goes when the attempt stops, and comes from when it restores (none: it
    /// is neither kept nor taken).
    pub(crate) local: Option<LocalRecovery>,
}

/// A receiver's part in local recovery (`local_states.rs`).
pub(crate) struct LocalRecovery {
    pub(crate) states: Arc<LocalStates>,
    /// The job's name: a state kept by another job's attempt is not taken.
    pub(crate) job: String,
}

/// The checkpoints a receiver's state can roll back to, newest first: its last segment (or the
/// checkpoint it restored) and the one before, with the partition's chain there (at most
/// two: what its stage keeps pre-images for). The whole chain, not only its index: a chain
/// restored from the store has lost the entries its segments counted, and would take its
/// growth by new keys for read amplification and have the next barrier write a base.
#[derive(Default)]
struct Points(Vec<(u64, PartitionChain)>);

impl Points {
    /// A segment (or a restore) of checkpoint `id`, with the `chain` there.
    fn taken(&mut self, id: u64, chain: PartitionChain) {
        self.0.insert(0, (id, chain));
        self.0.truncate(2);
    }
}

impl ReceiverTask {
    /// Applies batches until every source partition has ended, then commits (or, with
    /// checkpoints, pre-commits the final epoch). `Ok(None)` when the attempt was cancelled or
    /// the partition left this worker at a barrier.
    pub(crate) async fn run(self, inbox: &mut InboxRx) -> Result<Option<u64>, DataflowError> {
        let q = self.ctx.partition;
        // While this runs, a later attempt's receiver of the partition waits for what it keeps.
        let _running = (self.local.as_ref()).map(|local| local.states.running(q, self.ctx.attempt));
        let (mut receiver, chain, mut loading) = self.open().await?;
        // Only kept where a later attempt may take the state (a chain's clone per barrier).
        let mut points = Points::default();
        let keeps_points = self.local.is_some() && self.checkpoints.is_some();
        if let (true, Some((id, _)), Some(_), None) = (keeps_points, &self.restore, chain.index(), &loading) {
            points.taken(*id, chain.clone());
        }
        if let (Some(reports), Some((checkpoint, _))) = (&self.resumed, &self.restore) {
            let _ = reports.send(WorkerMessage::MoveStatus {
                attempt: self.ctx.attempt,
                checkpoint: *checkpoint,
                partitions: vec![q],
                phase: MovePhase::Resumed,
            });
        }
        let mut writer = self.writer(chain, receiver.as_ref());
        // Whether a barrier wrote an overlay while the state loaded (`barrier_while_loading`).
        let mut overlaid = false;
        let mut alignment = Alignment::new(q, self.ctx.num_partitions, self.ended.iter().copied());
        // From the first barrier of an alignment to the snapshot (a debug figure).
        let mut aligning_since: Option<std::time::Instant> = None;
        loop {
            let message = match alignment.next_held() {
                Some(message) => message,
                None => match inbox.recv().await {
                    Some(message) => message,
                    None => return Ok(self.end(receiver, loading.is_some(), points)),
                },
            };
            if self.cancel.is_cancelled() {
                return Ok(self.end(receiver, loading.is_some(), points));
            }
            if matches!(message, super::exchange::Inbound::Barrier { .. }) && aligning_since.is_none() {
                aligning_since = Some(std::time::Instant::now());
            }
            let mut step = alignment.on_message(message)?;
            loop {
                match step {
                    Step::Wait => {}
                    Step::Apply { batch, credit } => {
                        receiver.on_batch(batch)?;
                        credit.release();
                    }
                    Step::Cancelled => return Ok(self.end(receiver, loading.is_some(), points)),
                    Step::Aligned(id) => {
                        if let Some(since) = aligning_since.take() {
                            tracing::debug!(
                                partition = q,
                                checkpoint = id,
                                align_ms = since.elapsed().as_millis() as u64,
                                "barrier aligned"
                            );
                        }
                        let hand_over = match &self.checkpoints {
                            Some(checkpoints) => checkpoints.receiver_aligned(q, id).await?,
                            None => false,
                        };
                        if let Some(load) = loading.take() {
                            (receiver, loading) = self
                                .barrier_while_loading(receiver, load, &mut writer, &mut overlaid, hand_over)
                                .await?;
                        }
                        if hand_over {
                            if alignment.has_held() {
                                // Every source routes to the new owner after this barrier, so
                                // nothing can follow it here; if something did, fail rather
                                // than lose it.
                                return Err(DataflowError::Exchange(format!(
                                    "partition {q} received records after its hand-over barrier {id}"
                                )));
                            }
                            return self
                                .hand_over(receiver, writer, alignment.ended(), inbox, id)
                                .await;
                        }
                        receiver = match &loading {
                            Some(load) => self.overlay(receiver, &mut writer, id, load.checkpoint()).await?,
                            None => self.snapshot(receiver, &mut writer, id).await?,
                        };
                        if keeps_points {
                            points.taken(id, writer.chain().clone());
                        }
                        step = alignment.snapshot_taken();
                        continue;
                    }
                    Step::Finished => {
                        if let Some(load) = loading.take() {
                            (receiver, _) = load.finish(receiver).await?;
                        }
                        let checkpointed = self.checkpoints.is_some();
                        return blocking::run(move || match checkpointed {
                            true => receiver.finish_pending(FINAL_EPOCH),
                            false => receiver.finish(),
                        })
                        .await
                        .map(Some);
                    }
                }
                break;
            }
        }
    }

    /// Opens the partition's receiver and sink: what earlier attempts (or the previous owner)
    /// wrote after the checkpoint restored never becomes output, what was pre-committed up to
    /// it is final (idempotent), and the stage gets the checkpoint's state.
    ///
    /// State loaded ahead of a move here only needs the segments written since it was loaded;
    /// a stage that merges restored state opens empty, its state loading (or, moved here,
    /// catching up) beside it (returned).
    async fn open(
        &self,
    ) -> Result<(Box<dyn Receiver>, PartitionChain, Option<BackgroundRestore>), DataflowError> {
        let (plan, ctx, checkpoints, restore, preloaded) = (
            Arc::clone(&self.plan),
            self.ctx,
            self.checkpoints.clone(),
            self.restore.clone(),
            self.preloaded.lock().unwrap_or_else(|e| e.into_inner()).take(),
        );
        let adopted = self.resumed.is_some();
        let local = match preloaded.is_none() && !adopted {
            true => self.take_local().await,
            false => None,
        };
        let (receiver, opened) = blocking::run(move || {
            let q = ctx.partition;
            if checkpoints.is_some() {
                let restored = restore.as_ref().map_or(0, |(id, _)| *id);
                plan.discard_after(q, restored)?;
                // A partition adopted after a move may open before the move's checkpoint is
                // committed: its epoch `restored` (the old owner's last) is made final by the
                // coordinator's CommitEpochs, never here.
                let committed = if adopted {
                    restored.saturating_sub(1)
                } else {
                    restored
                };
                if committed > 0 {
                    plan.commit_epochs(q, committed)?;
                }
            }
            let started = std::time::Instant::now();
            let (Some((id, file)), Some(checkpoints)) = (&restore, &checkpoints) else {
                return Ok((
                    plan.open_receiver(&ctx)?,
                    Opened::Ready(PartitionChain::new(ChainPolicy::default()), false),
                ));
            };
            // A state kept by the previous attempt here, rolled back to the checkpoint restored,
            // is opened like one loaded ahead of a move: the load over it reads nothing more.
            let (preloaded, kept_chain) = match (preloaded, local.and_then(|taken| roll_back(q, *id, taken)))
            {
                (None, Some((rolled_back, chain))) => (Some(rolled_back), Some(chain)),
                (preloaded, _) => (preloaded, None),
            };
            let local = kept_chain.is_some();
            let (receiver, chain, preloaded) = match preloaded {
                Some(loaded) if loaded.state.merges_restored() && !local => {
                    let store = Arc::clone(&checkpoints.store);
                    let receiver = plan.open_receiver(&ctx)?;
                    return Ok((receiver, Opened::Later(*id, file.clone(), store, Some(loaded))));
                }
                Some(mut loaded) => {
                    let store = checkpoints.store.as_ref();
                    let index = match local && is_this_base(store, &loaded.index, *id, file) {
                        // The state file is the base itself: reading it to find that out would
                        // read the whole state.
                        true => loaded.index,
                        false => {
                            state_writer::load(store, *id, file, loaded.state.as_mut(), Some(&loaded.index))?
                        }
                    };
                    let receiver = plan.open_loaded(&ctx, loaded.state)?;
                    let chain = match kept_chain {
                        Some(chain) if chain.index() == Some(&index) => chain,
                        _ => PartitionChain::restored(ChainPolicy::default(), index),
                    };
                    (receiver, chain, Some(loaded.checkpoint))
                }
                None => {
                    let mut receiver = plan.open_receiver(&ctx)?;
                    if receiver.merges_restored() {
                        let store = Arc::clone(&checkpoints.store);
                        return Ok((receiver, Opened::Later(*id, file.clone(), store, None)));
                    }
                    let chain = state_writer::restore(checkpoints, *id, file, receiver.as_mut())?;
                    (receiver, chain, None)
                }
            };
            tracing::info!(
                partition = q,
                checkpoint = id,
                local,
                preloaded_at = ?preloaded,
                restore_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "partition state restored"
            );
            Ok((receiver, Opened::Ready(chain, local)))
        })
        .await?;
        Ok(match opened {
            Opened::Later(id, file, store, preloaded) => {
                let load =
                    BackgroundRestore::start(&self.plan, &store, self.ctx.partition, id, file, preloaded);
                (receiver, PartitionChain::new(ChainPolicy::default()), Some(load))
            }
            Opened::Ready(chain, local) => {
                if local {
                    self.metrics.restored_locally();
                }
                (receiver, chain, None)
            }
        })
    }

    /// The partition's state as the previous attempt here left it, if it can roll back to the
    /// checkpoint restored (waiting a moment for that attempt's receiver to end).
    async fn take_local(&self) -> Option<Taken> {
        let (Some(local), Some((id, _)), Some(_)) = (&self.local, &self.restore, &self.checkpoints) else {
            return None;
        };
        let (q, attempt) = (self.ctx.partition, self.ctx.attempt);
        match (local.states)
            .take(q, attempt, &local.job, *id, local_states::PATIENCE)
            .await
        {
            Ok(taken) => taken,
            Err(unusable) => {
                free(unusable.receiver);
                None
            }
        }
    }

    /// The writer of the partition's chain `chain`, compacting it apart from the barriers when
    /// `receiver`'s state allows (`compaction.rs`).
    fn writer(&self, chain: PartitionChain, receiver: &dyn Receiver) -> StateWriter {
        let q = self.ctx.partition;
        let writer = StateWriter::new(q, chain);
        match &self.checkpoints {
            Some(checkpoints) if receiver.compacts_apart() => writer.compacting_apart(Compactor::new(
                Arc::clone(&self.plan),
                Arc::clone(&checkpoints.store),
                q,
                self.cancel.clone(),
                self.metrics.clone(),
            )),
            _ => writer,
        }
    }

    /// A barrier aligned while the partition's state still loads (`load`). Without waiting, it
    /// writes an overlay on the restored chain when it can (the load goes on: returned); at a
    /// hand-over (the new owner gets the whole state), or with a writer that cannot take an
    /// overlay, it waits for the whole state. `overlaid`: whether a barrier wrote an overlay
    /// already (the writer's chain is then the restored one with the overlays, which the
    /// load's own chain lacks).
    async fn barrier_while_loading(
        &self,
        receiver: Box<dyn Receiver>,
        load: BackgroundRestore,
        writer: &mut StateWriter,
        overlaid: &mut bool,
        hand_over: bool,
    ) -> Result<(Box<dyn Receiver>, Option<BackgroundRestore>), DataflowError> {
        let restored = match hand_over {
            true => None,
            false => load.loading_on().await,
        };
        let overlay = match restored {
            Some(index) if !*overlaid => {
                let chain = PartitionChain::restored(ChainPolicy::default(), index);
                *writer = self.writer(chain, receiver.as_ref());
                true
            }
            Some(_) => writer.can_overlay(),
            None => false,
        };
        if overlay {
            *overlaid = true;
            return Ok((receiver, Some(load)));
        }
        let (receiver, chain) = load.finish(receiver).await?;
        if !*overlaid {
            *writer = self.writer(chain, receiver.as_ref());
        }
        Ok((receiver, None))
    }

    /// Barrier `id` hands the partition over to its new owner: seals its whole state (or what
    /// the new owner lacks) and its sink's output, retires its inbox, writes and acknowledges
    /// (with the sources that had `ended`), and ends the task. Without checkpoints there is no
    /// hand-over.
    async fn hand_over(
        &self,
        receiver: Box<dyn Receiver>,
        mut writer: StateWriter,
        ended: Vec<usize>,
        inbox: &mut InboxRx,
        id: u64,
    ) -> Result<Option<u64>, DataflowError> {
        let q = self.ctx.partition;
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(free(receiver));
        };
        let kind = writer.hand_over_kind();
        let parts = StoreParts::new(Arc::clone(&checkpoints.store), id, q);
        let (receiver, kind, state) = seal(receiver, id, kind, parts).await?;
        let sealed = writer.sealed(id, kind, state).handed_over(ended);
        // Before the acknowledgement: the partition may come back once the move is committed,
        // and must then find a fresh inbox.
        inbox.close();
        self.plane.retire_inbox(self.ctx.attempt, q);
        writer.write(checkpoints, sealed).await;
        // After the acknowledgement, so the move's pause does not wait for it.
        free(receiver);
        tracing::debug!(
            partition = q,
            checkpoint = id,
            "partition handed over at a barrier"
        );
        Ok(None)
    }

    /// Barrier `id` aligned while the state restored from checkpoint `restored` still loads:
    /// seals the partial state's changes as an overlay on the chain and the sink's output, then
    /// writes the overlay and acknowledges beside the processing that goes on.
    async fn overlay(
        &self,
        receiver: Box<dyn Receiver>,
        writer: &mut StateWriter,
        id: u64,
        restored: u64,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(receiver);
        };
        let parts = StoreParts::new(Arc::clone(&checkpoints.store), id, self.ctx.partition);
        let (receiver, kind, state) = seal(receiver, id, SegmentKind::Delta, parts).await?;
        let (SegmentKind::Delta, SealedState::Whole(bytes)) = (kind, state) else {
            return Err(DataflowError::InvalidJob(format!(
                "partition {} took a base where an overlay was asked at checkpoint {id}",
                self.ctx.partition
            )));
        };
        tracing::debug!(
            partition = self.ctx.partition,
            checkpoint = id,
            restored,
            bytes = bytes.len(),
            "overlay while the state loads"
        );
        let sealed = writer.sealed_overlay(id, restored, bytes);
        tokio::spawn(writer.write(checkpoints, sealed));
        Ok(receiver)
    }

    /// Barrier `id` aligned: seals the partition's state segment and sink output, then writes
    /// the segment and acknowledges beside the processing that goes on.
    async fn snapshot(
        &self,
        receiver: Box<dyn Receiver>,
        writer: &mut StateWriter,
        id: u64,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let Some(checkpoints) = &self.checkpoints else {
            return Ok(receiver);
        };
        let keep_chain = self.delta_barriers.deltas_only(id, self.ctx.partition);
        let kind = writer.prepare(id, keep_chain, receiver.pending_changes());
        let parts = StoreParts::new(Arc::clone(&checkpoints.store), id, self.ctx.partition);
        let (receiver, kind, state) = seal(receiver, id, kind, parts).await?;
        let sealed = writer.sealed(id, kind, state);
        tokio::spawn(writer.write(checkpoints, sealed));
        Ok(receiver)
    }

    /// The task ends without finishing (cancelled, or its inbox gone): keeps the state for the
    /// next attempt when the attempt stopped with the whole state here and checkpoints to roll
    /// back to, frees it otherwise. `None`, for the task's result.
    fn end(&self, receiver: Box<dyn Receiver>, loading: bool, points: Points) -> Option<u64> {
        let keep = self.cancel.is_cancelled() && self.checkpoints.is_some() && !loading;
        let (Some(local), true, false) = (&self.local, keep, points.0.is_empty()) else {
            return free(receiver);
        };
        let kept = Kept {
            job: local.job.clone(),
            attempt: self.ctx.attempt,
            points: points.0,
            receiver,
        };
        tracing::debug!(
            partition = self.ctx.partition,
            attempt = self.ctx.attempt,
            "partition state kept for the next attempt"
        );
        match local.states.keep(self.ctx.partition, kept) {
            Some(unwanted) => free(unwanted.receiver),
            None => None,
        }
    }
}

/// How [`ReceiverTask::open`] left the partition's state: restored, with its chain, or to load
/// beside the processing (from this checkpoint and state file of this store, on top of the
/// state loaded ahead of a move if there is one).
enum Opened {
    /// Restored (or fresh), with its chain; true if from the previous attempt's state here.
    Ready(PartitionChain, bool),
    Later(
        u64,
        String,
        Arc<dyn crate::checkpoint::CheckpointStore>,
        Option<Preloaded>,
    ),
}

/// Whether `index` is a lone base written by checkpoint `id` as its state file `file`, the
/// size the store has for it (a HEAD, not a read): then the state it describes is all of that
/// file.
fn is_this_base(
    store: &dyn crate::checkpoint::CheckpointStore,
    index: &StateIndex,
    id: u64,
    file: &str,
) -> bool {
    let [base] = index.segments.as_slice() else {
        return false;
    };
    let id = crate::checkpoint::CheckpointId(id);
    let framed = crate::checkpoint::frame::HEADER_LEN as u64 + base.file.size;
    base.checkpoint == id && base.file.name == file && store.object_size(id, file).ok() == Some(framed)
}

/// `taken` brought back to checkpoint `id` (on the blocking pool), as state loaded ahead with
/// the chain there, and the chain as its writer had it; `None` if it cannot be (the partition
/// then loads from the store).
fn roll_back(q: usize, id: u64, taken: Taken) -> Option<(Preloaded, PartitionChain)> {
    let started = std::time::Instant::now();
    match taken.receiver.roll_back(taken.back) {
        Ok(Some(state)) => {
            tracing::info!(
                partition = q,
                checkpoint = id,
                segments_back = taken.back,
                rollback_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "partition state kept in memory, rolled back to the checkpoint"
            );
            let index = taken.chain.index().cloned().unwrap_or_default();
            let loaded = Preloaded {
                state,
                index,
                checkpoint: id,
            };
            Some((loaded, taken.chain))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(partition = q, checkpoint = id, error = %e, "kept partition state could not roll back; loading it");
            None
        }
    }
}

/// Frees a receiver's state on a blocking thread: every entry is an allocation, so freeing a
/// large state takes a while (140 ms for 700 k keys), and on the runtime's threads it would hold
/// up the other partitions' tasks and the next attempt's. `None`, for the task's result.
fn free(receiver: Box<dyn Receiver>) -> Option<u64> {
    drop(tokio::task::spawn_blocking(move || drop(receiver)));
    None
}

/// Barrier `id`: a segment of the partition's state (of `kind`, or a base where the stage takes
/// no deltas; a large base of a disk-backed state stored in `parts` as it is encoded), with its
/// sink's output pre-committed (the sink's pre-commit syncs files, so it runs in the blocking
/// pool).
async fn seal(
    mut receiver: Box<dyn Receiver>,
    id: u64,
    kind: SegmentKind,
    mut parts: StoreParts,
) -> Result<(Box<dyn Receiver>, SegmentKind, SealedState), DataflowError> {
    let asked = std::time::Instant::now();
    blocking::run(move || {
        let started = std::time::Instant::now();
        let (kind, encoded) = receiver.snapshot_segment_in_parts(kind, &mut parts)?;
        let state = match encoded {
            Encoded::Whole(bytes) => SealedState::Whole(bytes),
            Encoded::Parts => parts.into_state(),
        };
        let encoded = std::time::Instant::now();
        receiver.pre_commit(id)?;
        tracing::debug!(
            checkpoint = id,
            ?kind,
            bytes = state.len(),
            queued_ms = (started - asked).as_millis() as u64,
            encode_ms = (encoded - started).as_millis() as u64,
            pre_commit_ms = encoded.elapsed().as_millis() as u64,
            "state sealed"
        );
        Ok((receiver, kind, state))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{index_name, CheckpointId, CheckpointStore};
    use crate::dataflow::sinks::CollectorSink;
    use crate::dataflow::sources::CollectionSource;
    use crate::dataflow::Stream;
    use crate::types::WorkerId;
    use crate::worker::checkpoint_actor::CheckpointHandle;
    use crate::worker::exchange::Inbound;
    use crate::worker::test_jobs::only_partition;
    use std::collections::{BTreeMap, BTreeSet};

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
            preloaded: Mutex::new(None),
            resumed: None,
            delta_barriers: Arc::default(),
            metrics: WorkerMetrics::default(),
            local: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(messages.len().max(1));
        for m in messages {
            tx.try_send(m).unwrap();
        }
        drop(tx);
        receiver.run(&mut { rx }).await
    }

    /// The counts partition 0 of a word count holds when restored from checkpoint `id` of `store`.
    fn restored_counts(store: &dyn CheckpointStore, id: u64) -> BTreeMap<String, u64> {
        let sink = CollectorSink::new();
        let plan = crate::worker::test_jobs::word_count(&sink).plan;
        let mut receiver = plan.open_receiver(&only_partition(9)).unwrap();
        state_writer::load(store, id, &index_name(0), receiver.as_mut(), None).unwrap();
        receiver.finish().unwrap();
        sink.collected().into_iter().collect()
    }

    /// The counts partition 0 holds when its chain in checkpoint `id` is compacted into one base
    /// (as a compaction apart does) and restored from it.
    fn compacted_counts(store: &dyn CheckpointStore, id: u64) -> BTreeMap<String, u64> {
        let sink = CollectorSink::new();
        let plan = crate::worker::test_jobs::word_count(&sink).plan;
        let index = chain_index(store, id);
        let segments = state_writer::read_segments(store, id, &index, 0).unwrap();
        let state = plan.load_state(0).unwrap().unwrap();
        let base = state.merge_segments(&index.layers(0, &segments)).unwrap();
        let mut receiver = plan.open_receiver(&only_partition(9)).unwrap();
        receiver.restore(&base).unwrap();
        receiver.finish().unwrap();
        sink.collected().into_iter().collect()
    }

    /// Partition 0's chain index in checkpoint `id`.
    fn chain_index(store: &dyn CheckpointStore, id: u64) -> crate::checkpoint::StateIndex {
        match crate::checkpoint::read_state(store, CheckpointId(id), &index_name(0)).unwrap() {
            crate::checkpoint::StateRead::Chain(index) => index,
            crate::checkpoint::StateRead::Whole(_) => panic!("checkpoint {id} holds no chain"),
        }
    }

    fn last_segment(store: &dyn CheckpointStore, id: u64) -> String {
        chain_index(store, id).segments.last().unwrap().file.name.clone()
    }

    /// The words in partition 0's last segment of checkpoint `id` (a delta), read alone.
    fn last_delta_words(store: &dyn CheckpointStore, id: u64) -> BTreeSet<String> {
        let sink = CollectorSink::new();
        let plan = crate::worker::test_jobs::word_count(&sink).plan;
        let index = chain_index(store, id);
        let segments = state_writer::read_segments(store, id, &index, 0).unwrap();
        let delta = segments.last().expect("a segment");
        let (_, empty) = plan
            .open_receiver(&only_partition(9))
            .unwrap()
            .snapshot_segment(crate::checkpoint::SegmentKind::Base)
            .unwrap();
        let layers = [
            crate::checkpoint::Layer::Base(&empty),
            crate::checkpoint::Layer::Delta(delta),
        ];
        let base = plan
            .load_state(0)
            .unwrap()
            .unwrap()
            .merge_segments(&layers)
            .unwrap();
        let mut receiver = plan.open_receiver(&only_partition(9)).unwrap();
        receiver.restore(&base).unwrap();
        receiver.finish().unwrap();
        sink.collected().into_iter().map(|(word, _)| word).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn barriers_while_the_state_loads_write_overlays_and_every_checkpoint_restores_exactly() {
        use std::sync::atomic::{AtomicBool, Ordering};

        use crate::checkpoint::hooked::{Hooked, Op};
        use crate::checkpoint::MemoryStore;
        use crate::worker::exchange::CreditReturn;
        use crate::worker::test_jobs::{counts, stored_chain};

        let sink = CollectorSink::new();
        let job = crate::worker::test_jobs::word_count(&sink);
        let inner = MemoryStore::new();
        let (_, restored) = stored_chain(&job, &inner, 2);
        let mut expected: BTreeMap<String, u64> = restored.into_iter().collect();
        // The restored chain's base (checkpoint 1) is held back until the test lets it through.
        let open = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&open);
        let store: Arc<dyn CheckpointStore> = Arc::new(Hooked::new(&inner, move |op, id, _| {
            while op == Op::Read && id == CheckpointId(1) && !gate.load(Ordering::Acquire) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Ok(())
        }));
        let (handle, mut saved) = CheckpointHandle::answering(Arc::clone(&store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let task = ReceiverTask {
            plan: Arc::clone(&job.plan),
            ctx: only_partition(2),
            checkpoints: Some(handle),
            restore: Some((2, index_name(0))),
            ended: HashSet::new(),
            cancel: CancellationToken::new(),
            plane: DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20),
            preloaded: Mutex::new(None),
            resumed: None,
            delta_barriers: Arc::default(),
            metrics: WorkerMetrics::default(),
            local: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let run = tokio::spawn(async move { task.run(&mut { rx }).await });
        let batch = |pairs: &[(&str, u64)]| Inbound::Batch {
            batch: counts(pairs),
            credit: CreditReturn::Local(Arc::new(tokio::sync::Semaphore::new(0))),
            from: 0,
        };
        let add = |expected: &mut BTreeMap<String, u64>, pairs: &[(&str, u64)]| {
            for (k, n) in pairs {
                *expected.entry(k.to_string()).or_insert(0) += n;
            }
            batch(pairs)
        };
        let mut at_barrier = BTreeMap::new();
        // Two barriers while the base is held back: each is saved without waiting for it.
        for (id, pairs) in [(3, &[("a", 5), ("c", 1)][..]), (4, &[("a", 1), ("base7", 2)][..])] {
            tx.send(add(&mut expected, pairs)).await.unwrap();
            tx.send(Inbound::Barrier { id, from: 0 }).await.unwrap();
            let (saved_id, _, _) = saved.recv().await.unwrap();
            assert_eq!(saved_id, id);
            assert_eq!(last_segment(&inner, id), crate::checkpoint::overlay_name(0, 2));
            at_barrier.insert(id, expected.clone());
        }
        // Once the state is in, a barrier merges it and writes a delta after the overlays.
        open.store(true, Ordering::Release);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut id = 5;
        loop {
            tx.send(add(&mut expected, &[("d", 1)])).await.unwrap();
            tx.send(Inbound::Barrier { id, from: 0 }).await.unwrap();
            assert_eq!(saved.recv().await.unwrap().0, id);
            at_barrier.insert(id, expected.clone());
            if last_segment(&inner, id) == crate::checkpoint::segment_name(0) {
                // The delta after the overlays holds what changed since the last one, not
                // everything the partition applied while its state loaded.
                assert_eq!(last_delta_words(&inner, id), BTreeSet::from(["d".to_string()]));
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the state never finished loading"
            );
            id += 1;
        }
        tx.send(Inbound::Eos { from: 0 }).await.unwrap();
        assert!(run.await.unwrap().unwrap().is_some());
        job.plan.commit_epochs(0, FINAL_EPOCH).unwrap();
        let got: BTreeMap<String, u64> = sink.collected().into_iter().collect();
        assert_eq!(got, expected, "the output counts the restored state once");
        for (id, counts) in &at_barrier {
            assert_eq!(
                &restored_counts(&inner, *id),
                counts,
                "restored from checkpoint {id}"
            );
            assert_eq!(
                &compacted_counts(&inner, *id),
                counts,
                "compacted at checkpoint {id}"
            );
        }
    }

    /// Attempt 1 of a word count's partition takes checkpoints 1 and 2, applies more and is
    /// stopped; attempt 2 restores checkpoint `restore`, applies `e` and finishes. Returns the
    /// output, what checkpoint `restore` held, and the state files attempt 2 read.
    async fn restart_after(
        restore: u64,
        local: bool,
    ) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, usize) {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use crate::checkpoint::hooked::{Hooked, Op};
        use crate::checkpoint::MemoryStore;
        use crate::worker::exchange::CreditReturn;
        use crate::worker::test_jobs::counts;

        let sink = CollectorSink::new();
        let job = crate::worker::test_jobs::word_count(&sink);
        let inner = MemoryStore::new();
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&reads);
        let store: Arc<dyn CheckpointStore> = Arc::new(Hooked::new(&inner, move |op, _, name| {
            if op == Op::Read && !crate::checkpoint::is_index_name(name) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }));
        let states = Arc::new(LocalStates::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
        let task = |attempt: u64, restore: RestoreFrom, cancel: CancellationToken| {
            let (handle, saved) = CheckpointHandle::answering(Arc::clone(&store));
            let task = ReceiverTask {
                plan: Arc::clone(&job.plan),
                ctx: only_partition(attempt),
                checkpoints: Some(handle),
                restore,
                ended: HashSet::new(),
                cancel,
                plane: plane.clone(),
                preloaded: Mutex::new(None),
                resumed: None,
                delta_barriers: Arc::default(),
                metrics: WorkerMetrics::default(),
                local: local.then(|| LocalRecovery {
                    states: Arc::clone(&states),
                    job: "wordcount".to_string(),
                }),
            };
            (task, saved)
        };
        let batch = |pairs: &[(&str, u64)]| Inbound::Batch {
            batch: counts(pairs),
            credit: CreditReturn::Local(Arc::new(tokio::sync::Semaphore::new(0))),
            from: 0,
        };
        let mut expected = BTreeMap::new();
        // By checkpoint: the counts, and the partition's state file.
        let mut at = BTreeMap::new();
        let cancel = CancellationToken::new();
        let (first, mut saved) = task(1, None, cancel.clone());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let run = tokio::spawn(async move { first.run(&mut { rx }).await });
        let words: [&[(&str, u64)]; 3] = [
            &[("a", 1), ("b", 2)],
            &[("a", 1), ("c", 1)],
            &[("a", 5), ("d", 1)],
        ];
        for (id, pairs) in (1..=3u64).zip(words) {
            for (k, n) in pairs {
                *expected.entry(k.to_string()).or_insert(0) += n;
            }
            tx.send(batch(pairs)).await.unwrap();
            if id < 3 {
                tx.send(Inbound::Barrier { id, from: 0 }).await.unwrap();
                let (saved_id, _, file) = saved.recv().await.unwrap();
                assert_eq!(saved_id, id);
                at.insert(id, (expected.clone(), file.name));
            }
        }
        // Stopped after applying what came after checkpoint 2.
        cancel.cancel();
        drop(tx);
        assert_eq!(run.await.unwrap().unwrap(), None);

        let before = reads.load(Ordering::SeqCst);
        let (then, file) = at[&restore].clone();
        let (second, _saved) = task(2, Some((restore, file)), CancellationToken::new());
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let run = tokio::spawn(async move { second.run(&mut { rx }).await });
        tx.send(batch(&[("e", 1)])).await.unwrap();
        tx.send(Inbound::Eos { from: 0 }).await.unwrap();
        assert!(run.await.unwrap().unwrap().is_some());
        job.plan.commit_epochs(0, FINAL_EPOCH).unwrap();
        let got: BTreeMap<String, u64> = sink.collected().into_iter().collect();
        let mut then = then;
        then.insert("e".to_string(), 1);
        (got, then, reads.load(Ordering::SeqCst) - before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_attempt_rolls_the_kept_state_back_instead_of_reading_the_store() {
        for restore in [2, 1] {
            let (got, expected, reads) = restart_after(restore, true).await;
            assert_eq!(got, expected, "restored from checkpoint {restore}, in memory");
            assert_eq!(reads, 0, "checkpoint {restore}: no state segment read");
            // The same restart without local recovery reads its segments.
            let (got, expected, reads) = restart_after(restore, false).await;
            assert_eq!(
                got, expected,
                "restored from checkpoint {restore}, from the store"
            );
            assert!(reads > 0, "checkpoint {restore} read from the store");
        }
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

    #[tokio::test]
    async fn a_thousand_receivers_run_on_the_runtimes_threads() {
        // Each waits on its inbox without holding a thread: on this test's one-thread runtime,
        // 1000 receivers all finish once their last source ends.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
        let job = Stream::from_source(CollectionSource::new(vec![String::new()]))
            .exchange(crate::dataflow::HashPartitioner)
            .sink(CollectorSink::new());
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for q in 0..1000 {
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            senders.push(tx);
            let receiver = ReceiverTask {
                plan: Arc::clone(&job.plan),
                ctx: SinkContext {
                    partition: q,
                    num_partitions: 1000,
                    attempt: 1,
                },
                checkpoints: None,
                restore: None,
                ended: (0..999).collect(),
                cancel: CancellationToken::new(),
                plane: plane.clone(),
                preloaded: Mutex::new(None),
                resumed: None,
                delta_barriers: Arc::default(),
                metrics: WorkerMetrics::default(),
                local: None,
            };
            tasks.push(tokio::spawn(async move { receiver.run(&mut { rx }).await }));
        }
        for tx in &senders {
            tx.try_send(Inbound::Eos { from: 999 }).unwrap();
        }
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Some(0));
        }
    }
}
