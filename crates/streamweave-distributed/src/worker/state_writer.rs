//! One partition's incremental state on the worker that owns it: restoring it (a base, then its
//! deltas) and writing a segment per checkpoint, a delta over the partition's chain or, when
//! there is none or it is past its bounds, a new base.
//!
//! ```text
//! restore: state file --Whole--> restore                     chain = [that file]
//!                     --Chain--> restore base, apply deltas  chain = the index
//! barrier: kind = chain.next_kind(pending) --seal--> segment bytes --chain.record--> index
//!          write (beside the processing, after the previous write of this partition):
//!            base:  put state-pQ = the base                 (one object, as before)
//!            delta: put seg-pQ = the delta, put index-pQ = the index (the state file then)
//!          a large disk-backed base: put part-pQ-K as the seal encodes it (StoreParts),
//!            then the write puts index-pQ = the parts
//! ```
//!
//! A delta is only good if everything it builds on was stored, so each write waits for the
//! previous one of its partition, and a delta whose predecessor failed is not written (the
//! checkpoint then times out, as when any write fails); the next barrier then takes a base.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::checkpoint_actor::CheckpointHandle;
use super::compaction::Compactor;
use crate::checkpoint::{
    index_name, overlay_name, parallel, part_name, read_state, segment_name, ChainPolicy, CheckpointError,
    CheckpointId, CheckpointStore, Layer, PartitionChain, PendingChanges, Segment, SegmentKind, StateIndex,
    StateRead, StoredFile,
};
use crate::dataflow::plan::{LoadedState, Receiver};
use crate::dataflow::{DataflowError, PartSink};

/// The name of partition `q`'s state file (a base, or the index of its chain).
pub(crate) fn state_name(q: usize) -> String {
    format!("state-p{q:05}")
}

/// Restores partition `q`'s receiver from state file `name` of checkpoint `id`: its chain.
pub(crate) fn restore(
    checkpoints: &CheckpointHandle,
    id: u64,
    name: &str,
    receiver: &mut dyn Receiver,
) -> Result<PartitionChain, DataflowError> {
    let index = load(checkpoints.store.as_ref(), id, name, receiver, None)?;
    Ok(PartitionChain::restored(ChainPolicy::default(), index))
}

/// What a partition's segments are applied to: its receiver, or its state loaded ahead of one
/// (a move's preparation).
pub(crate) trait StateTarget {
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError>;
    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError>;
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError>;

    /// Applies `layer` (see [`StateIndex::layers`]).
    fn apply(&mut self, layer: &Layer<'_>) -> Result<(), DataflowError> {
        match layer {
            Layer::Base(state) => self.restore(state),
            Layer::Delta(delta) => self.apply_delta(delta),
            Layer::Overlays(run) => self.apply_overlays(run),
        }
    }
}

impl StateTarget for dyn Receiver + '_ {
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        Receiver::restore(self, state)
    }
    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError> {
        Receiver::apply_delta(self, delta)
    }
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        Receiver::apply_overlays(self, run)
    }
}

impl StateTarget for dyn LoadedState + '_ {
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        LoadedState::restore(self, state)
    }
    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError> {
        LoadedState::apply_delta(self, delta)
    }
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        LoadedState::apply_overlays(self, run)
    }
}

/// Brings `target` to state file `name` of checkpoint `id` and returns the partition's index
/// there. `have` is the index `target` already holds (state loaded ahead of a move): when it is
/// a prefix of the new chain (same base, fewer deltas), only the segments after it are read and
/// applied, which is the whole point of loading ahead; otherwise (a new base since, a whole
/// state) everything is read. The segments to read are fetched in parallel (on an object store
/// each is a round trip), then applied in order.
pub(crate) fn load<T: StateTarget + ?Sized>(
    store: &dyn CheckpointStore,
    id: u64,
    name: &str,
    target: &mut T,
    have: Option<&StateIndex>,
) -> Result<StateIndex, DataflowError> {
    read_chain(store, id, name)?.apply(store, id, target, have)
}

/// Reads partition state file `name` of checkpoint `id`: its index, before any segment (a whole
/// state written before incremental checkpoints is read whole).
pub(crate) fn read_chain(
    store: &dyn CheckpointStore,
    id: u64,
    name: &str,
) -> Result<ReadChain, DataflowError> {
    let read = read_state(store, CheckpointId(id), name).map_err(|e| DataflowError::restoring(id, e))?;
    Ok(match read {
        StateRead::Whole(bytes) => {
            let base = Segment {
                checkpoint: CheckpointId(id),
                file: StoredFile::of(name, &bytes),
            };
            ReadChain::Whole(StateIndex { segments: vec![base] }, bytes)
        }
        StateRead::Chain(index) => ReadChain::Chain(index),
    })
}

/// A partition's state file as read by [`read_chain`], to [apply](ReadChain::apply).
pub(crate) enum ReadChain {
    /// A whole state: its index of one segment, and its bytes.
    Whole(StateIndex, Vec<u8>),
    /// A chain's index.
    Chain(StateIndex),
}

impl ReadChain {
    /// The partition's index.
    pub(crate) fn index(&self) -> &StateIndex {
        match self {
            ReadChain::Whole(index, _) | ReadChain::Chain(index) => index,
        }
    }

    /// Brings `target` to the state (see [`load`]); `id` is the checkpoint, for errors.
    pub(crate) fn apply<T: StateTarget + ?Sized>(
        self,
        store: &dyn CheckpointStore,
        id: u64,
        target: &mut T,
        have: Option<&StateIndex>,
    ) -> Result<StateIndex, DataflowError> {
        match self {
            ReadChain::Whole(index, bytes) => {
                target.restore(&bytes)?;
                Ok(index)
            }
            ReadChain::Chain(index) => {
                let skip = have.map_or(0, |have| applied_prefix(have, &index));
                apply_segments(store, id, &index, skip, target)?;
                Ok(index)
            }
        }
    }
}

/// Applies `index`'s segments from the `skip`-th on to `target` (the base as a restore, the
/// rest as deltas, a base's later parts among them), reading them in parallel (on an object
/// store each is a round trip) a window of at most [`READ_WINDOW`] bytes at a time, so that a
/// state larger than memory (the disk backend's, in parts) is never read whole; `id` is the
/// checkpoint being restored, for errors.
pub(crate) fn apply_segments<T: StateTarget + ?Sized>(
    store: &dyn CheckpointStore,
    id: u64,
    index: &StateIndex,
    skip: usize,
    target: &mut T,
) -> Result<(), DataflowError> {
    if !index.continues_after(skip) {
        return Err(DataflowError::Exchange(format!(
            "applying partition state from the middle of an overlay run (segment {skip} of checkpoint {id})"
        )));
    }
    let mut from = skip;
    while from < index.segments.len() {
        let until = read_window(index, from, READ_WINDOW);
        let bytes = read_these(store, id, &index.segments[from..until])?;
        for layer in index.layers(from, &bytes) {
            target.apply(&layer)?;
        }
        from = until;
    }
    Ok(())
}

/// At most this many bytes of segments are read ahead of being applied.
pub(crate) const READ_WINDOW: u64 = 64 << 20;

/// The end of the window of `index`'s segments read together from the `from`-th: as many as fit
/// in `limit` bytes, and at least one; never inside an overlay run (a run applies whole).
fn read_window(index: &StateIndex, from: usize, limit: u64) -> usize {
    let mut bytes = 0u64;
    let mut until = from;
    for s in &index.segments[from..] {
        bytes = bytes.saturating_add(s.file.size);
        if until > from && bytes > limit && index.continues_after(until) {
            break;
        }
        until += 1;
    }
    until
}

/// The bytes of `index`'s segments from the `skip`-th on, read in parallel (on an object store
/// each is a round trip) and checked against the index; `id` is the checkpoint being restored,
/// for errors.
pub(crate) fn read_segments(
    store: &dyn CheckpointStore,
    id: u64,
    index: &StateIndex,
    skip: usize,
) -> Result<Vec<Vec<u8>>, DataflowError> {
    read_these(store, id, index.segments.get(skip..).unwrap_or_default())
}

/// The bytes of `segments`, read in parallel and checked against the index.
fn read_these(
    store: &dyn CheckpointStore,
    id: u64,
    segments: &[Segment],
) -> Result<Vec<Vec<u8>>, DataflowError> {
    let read = parallel::map(segments, |s| store.get_listed(s.checkpoint, &s.file));
    read.into_iter()
        .map(|bytes| bytes.map_err(|e| DataflowError::restoring(id, e)))
        .collect()
}

/// How many of `index`'s segments state holding `have` already reflects: all of `have`'s when
/// they begin `index` (same base, same deltas); when the chain was rebased since on a base
/// compacted apart, every segment up to `have`'s last checkpoint (the state as of a checkpoint
/// is the same whichever segments describe it, and each delta holds every key it changed since
/// the segment before it, so the first one after that checkpoint brings the state on from
/// there); none when `index` is older than `have` (another history) or begins after it (a
/// base taken since).
///
/// Also none when the prefix would end inside an overlay run: the rest of the run holds the
/// partial state as of later barriers, not what changed on top of the part applied.
pub(crate) fn applied_prefix(have: &StateIndex, index: &StateIndex) -> usize {
    let prefix = if index.segments.starts_with(&have.segments) {
        have.segments.len()
    } else {
        let last = |i: &StateIndex| i.segments.last().map(|s| s.checkpoint);
        match (last(have), last(index)) {
            (Some(at), Some(newest)) if newest >= at => {
                index.segments.iter().take_while(|s| s.checkpoint <= at).count()
            }
            _ => 0,
        }
    };
    if index.continues_after(prefix) {
        prefix
    } else {
        0
    }
}

/// The barriers at which a partition writes a delta whatever compaction would say: every
/// partition at a barrier that moves partitions (the moved ones wait for the whole checkpoint,
/// so nobody writes a base then), and the partitions whose new owners are loading their state
/// ahead of a move (what they load must stay a prefix of the chain). Set by the attempt's
/// command task before it requests the checkpoint, read by the receivers at its barrier.
#[derive(Default)]
pub(crate) struct DeltaBarriers {
    /// The newest checkpoint that moves partitions.
    moves: AtomicU64,
    /// The newest checkpoint triggered, and the partitions it keeps on their chains.
    kept: std::sync::Mutex<(u64, Vec<usize>)>,
}

impl DeltaBarriers {
    /// Checkpoint `id` is about to be requested: it moves partitions (`moves`), and keeps
    /// `keep` on their chains.
    pub(crate) fn set(&self, id: u64, moves: bool, keep: Vec<usize>) {
        if moves {
            self.moves.fetch_max(id, Ordering::AcqRel);
        }
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = (id, keep);
    }

    /// Whether partition `q` writes a delta at barrier `id` whatever compaction would say.
    pub(crate) fn deltas_only(&self, id: u64, q: usize) -> bool {
        if self.moves.load(Ordering::Acquire) == id {
            return true;
        }
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.0 == id && kept.1.contains(&q)
    }
}

/// The parts of partition `q`'s base at barrier `id`, stored as its stage encodes them: the
/// stage's thread frames each part and hands it to a writer thread of the base's own through a
/// queue of one, so encoding the next part overlaps storing (and syncing) the last, and at most
/// three parts are in memory (being encoded, queued, being stored): the state is never whole.
/// After a failed put the rest are not stored, and the barrier is not acknowledged.
pub(crate) struct StoreParts {
    store: Arc<dyn CheckpointStore>,
    id: u64,
    q: usize,
    /// The parts handed to the writer, in order.
    stored: Vec<StoredFile>,
    failed: Option<CheckpointError>,
    /// Started at the first part.
    writer: Option<PartWriter>,
}

/// The thread storing a base's parts, and the queue to it.
struct PartWriter {
    parts: std::sync::mpsc::SyncSender<(String, Vec<u8>)>,
    thread: std::thread::JoinHandle<Result<(), CheckpointError>>,
}

impl StoreParts {
    pub(crate) fn new(store: Arc<dyn CheckpointStore>, id: u64, q: usize) -> Self {
        StoreParts {
            store,
            id,
            q,
            stored: Vec::new(),
            failed: None,
            writer: None,
        }
    }

    /// What was stored, or why not (after every part handed over is stored).
    pub(crate) fn into_state(mut self) -> SealedState {
        self.finish_writer();
        match self.failed {
            None => SealedState::Parts(self.stored),
            Some(e) => SealedState::Failed(e),
        }
    }

    /// Hands a framed part to the writer (started on first use); false if it has stopped.
    fn hand(&mut self, name: String, framed: Vec<u8>) -> bool {
        if self.writer.is_none() {
            let (parts, queue) = std::sync::mpsc::sync_channel::<(String, Vec<u8>)>(1);
            let (store, id) = (Arc::clone(&self.store), CheckpointId(self.id));
            let spawned = std::thread::Builder::new()
                .name("swd-parts".into())
                .spawn(move || {
                    queue
                        .iter()
                        .try_for_each(|(name, bytes)| store.write_object(id, &name, &bytes))
                });
            match spawned {
                Ok(thread) => self.writer = Some(PartWriter { parts, thread }),
                Err(e) => {
                    self.failed = Some(CheckpointError::Encoding(format!(
                        "cannot start a part writer: {e}"
                    )));
                    return false;
                }
            }
        }
        self.writer
            .as_ref()
            .is_some_and(|w| w.parts.send((name, framed)).is_ok())
    }

    /// Waits for the writer to store what it was handed; its failure, if any, is the base's.
    fn finish_writer(&mut self) {
        let Some(PartWriter { parts, thread }) = self.writer.take() else {
            return;
        };
        drop(parts);
        let failure = match thread.join() {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some(CheckpointError::Encoding("the part writer panicked".into())),
        };
        if let (None, Some(e)) = (&self.failed, failure) {
            self.failed = Some(e);
        }
    }
}

impl PartSink for StoreParts {
    fn put(&mut self, pieces: &[&[u8]]) -> Result<(), DataflowError> {
        if self.failed.is_none() {
            let name = part_name(self.q, self.stored.len());
            let file = StoredFile::of_pieces(&name, pieces);
            if self.hand(name, crate::checkpoint::frame::frame_pieces(pieces)) {
                self.stored.push(file);
            } else {
                // It stopped at a failed put: learn why, and store nothing more.
                self.finish_writer();
            }
        }
        Ok(())
    }
}

/// A partition's segment as its barrier sealed it.
pub(crate) enum SealedState {
    /// Encoded in one piece, to store.
    Whole(Vec<u8>),
    /// A base, stored in these parts already.
    Parts(Vec<StoredFile>),
    /// A base whose parts could not all be stored.
    Failed(CheckpointError),
}

impl SealedState {
    /// The segment's bytes.
    pub(crate) fn len(&self) -> u64 {
        match self {
            SealedState::Whole(bytes) => bytes.len() as u64,
            SealedState::Parts(parts) => parts.iter().map(|p| p.size).sum(),
            SealedState::Failed(_) => 0,
        }
    }
}

/// A segment sealed at a barrier, ready to be written.
pub(crate) struct Sealed {
    id: u64,
    kind: SegmentKind,
    state: SealedState,
    index: StateIndex,
    /// A partition handed over at this barrier: the sources that had ended before it (they go
    /// into the acknowledgement, for the new owner).
    ended_sources: Vec<usize>,
    /// The partition leaves with this segment: nothing is compacted after it here.
    leaving: bool,
    /// An overlay's name (the segment is the partial state of a recovery whose state loads).
    overlay: Option<String>,
}

impl Sealed {
    /// The segment of a partition handed over at its barrier, whose receiver had counted
    /// `ended` sources as ended.
    pub(crate) fn handed_over(mut self, ended: Vec<usize>) -> Self {
        self.ended_sources = ended;
        self.leaving = true;
        self
    }
}

/// See the module documentation.
pub(crate) struct StateWriter {
    q: usize,
    chain: PartitionChain,
    /// Whether the previous write of this partition succeeded (none yet: nothing to wait for).
    previous: Option<oneshot::Receiver<bool>>,
    /// Set by a failed write: the next segment is a base.
    broken: Arc<AtomicBool>,
    /// Compacts the chain apart from the barriers (`compaction.rs`), for state that allows it;
    /// without one, a barrier takes the base when the chain is past its bounds.
    compactor: Option<Compactor>,
}

impl StateWriter {
    /// The writer of partition `q`, whose chain is `chain`.
    pub(crate) fn new(q: usize, chain: PartitionChain) -> Self {
        StateWriter {
            q,
            chain,
            previous: None,
            broken: Arc::new(AtomicBool::new(false)),
            compactor: None,
        }
    }

    /// The partition's chain as of the last segment recorded.
    pub(crate) fn chain(&self) -> &PartitionChain {
        &self.chain
    }

    /// The writer compacts apart from the barriers, with `compactor`.
    pub(crate) fn compacting_apart(mut self, compactor: Compactor) -> Self {
        self.compactor = Some(compactor);
        self
    }

    /// The kind of segment to take at barrier `id`. `keep_chain`: the barrier must extend the
    /// chain as it is (a move, or a new owner loading it ahead: see [`DeltaBarriers`]), so it
    /// takes a delta whenever there is a chain and a base compacted apart waits for a later
    /// barrier; otherwise such a base, if ready, becomes the chain's start first.
    pub(crate) fn prepare(
        &mut self,
        id: u64,
        keep_chain: bool,
        pending: Option<PendingChanges>,
    ) -> SegmentKind {
        self.chain.counted(pending);
        if keep_chain {
            return self.hand_over_kind();
        }
        if let Some(done) = self.compactor.as_ref().and_then(Compactor::take) {
            let at = done.base.checkpoint;
            if self.chain.rebase(&done.replaced, done.base) {
                tracing::debug!(
                    partition = self.q,
                    checkpoint = id,
                    base_at = at.0,
                    "chain rebased on a compacted base"
                );
            }
        }
        self.next_kind(pending)
    }

    /// The kind of segment to take at the next barrier, whose stage holds `pending`.
    pub(crate) fn next_kind(&mut self, pending: Option<PendingChanges>) -> SegmentKind {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.chain.reset();
        }
        match self.compactor {
            Some(_) => self.chain.next_kind_apart(pending),
            None => self.chain.next_kind(),
        }
    }

    /// The kind of segment to take at a hand-over barrier (the partition moves away): a delta
    /// whenever there is a chain to build on, whatever the compaction policy says, because the
    /// partition's pause lasts while it is written and its new owner has loaded the chain
    /// already; the new owner compacts later.
    pub(crate) fn hand_over_kind(&mut self) -> SegmentKind {
        match (self.next_kind(None), self.chain.has_chain()) {
            (SegmentKind::Base, true) => SegmentKind::Delta,
            (kind, _) => kind,
        }
    }

    /// Checkpoint `id` took a segment of `kind` (what the stage took, maybe a base where a delta
    /// was asked): records it in the chain.
    pub(crate) fn sealed(&mut self, id: u64, kind: SegmentKind, state: SealedState) -> Sealed {
        let index = match &state {
            SealedState::Whole(bytes) => {
                let name = match kind {
                    SegmentKind::Base => state_name(self.q),
                    SegmentKind::Delta => segment_name(self.q),
                };
                self.chain
                    .record(CheckpointId(id), kind, StoredFile::of(&name, bytes))
            }
            SealedState::Parts(parts) => self.chain.record_parts(CheckpointId(id), parts.clone()),
            // Not written, so the write fails and the next barrier takes a base.
            SealedState::Failed(_) => StateIndex::default(),
        };
        Sealed {
            id,
            kind,
            state,
            index,
            ended_sources: Vec::new(),
            leaving: false,
            overlay: None,
        }
    }

    /// Whether the next segment can be an overlay on the chain: there is one, and every write
    /// it is made of was stored (else the chain is dropped, and the next segment must be a base
    /// of the whole state).
    pub(crate) fn can_overlay(&mut self) -> bool {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.chain.reset();
        }
        self.chain.has_chain()
    }

    /// Checkpoint `id` took an overlay (`bytes`: the entries of the partial state of a recovery
    /// from checkpoint `restored` changed since its last overlay, while the restored state
    /// still loads): records it at the end of the chain.
    pub(crate) fn sealed_overlay(&mut self, id: u64, restored: u64, bytes: Vec<u8>) -> Sealed {
        self.chain.counted(None);
        let name = overlay_name(self.q, restored);
        let file = StoredFile::of(&name, &bytes);
        let index = self.chain.record(CheckpointId(id), SegmentKind::Delta, file);
        Sealed {
            id,
            kind: SegmentKind::Delta,
            state: SealedState::Whole(bytes),
            index,
            ended_sources: Vec::new(),
            leaving: false,
            overlay: Some(name),
        }
    }

    /// Writes `sealed` once the previous write of the partition is done, then acknowledges it.
    /// The future is independent of `self`, so it can run beside the processing.
    pub(crate) fn write(
        &mut self,
        checkpoints: &CheckpointHandle,
        sealed: Sealed,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let previous = self.previous.take();
        let (done, next) = oneshot::channel();
        self.previous = Some(next);
        let (broken, checkpoints, q) = (Arc::clone(&self.broken), checkpoints.clone(), self.q);
        // Once this delta is stored, the chain it ends is compacted apart if it is past its bounds.
        let compact = (self.compactor.clone())
            .filter(|_| sealed.kind == SegmentKind::Delta && !sealed.leaving && sealed.overlay.is_none())
            .filter(|_| self.chain.wants_compaction())
            .map(|compactor| (compactor, sealed.index.clone()));
        let created = std::time::Instant::now();
        async move {
            let previous_ok = match previous {
                Some(previous) => previous.await.unwrap_or(false),
                None => true,
            };
            let after_previous = created.elapsed();
            let ok = if previous_ok || sealed.kind == SegmentKind::Base {
                super::blocking::run(move || {
                    tracing::debug!(
                        checkpoint = sealed.id,
                        partition = q,
                        previous_ms = after_previous.as_millis() as u64,
                        queued_ms = created.elapsed().as_millis() as u64,
                        "storing state"
                    );
                    Ok(store(&checkpoints, q, &sealed))
                })
                .await
                .unwrap_or(false)
            } else {
                tracing::warn!(
                    checkpoint = sealed.id,
                    partition = q,
                    "not writing a state delta whose predecessor was not stored"
                );
                false
            };
            if !ok {
                broken.store(true, Ordering::Release);
            } else if let Some((compactor, index)) = compact {
                compactor.start(index);
            }
            // The next write may have been dropped with its attempt.
            let _ = done.send(ok);
        }
    }
}

/// Stores `sealed` and acknowledges it; false (after a warning, without acknowledgement: the
/// coordinator times the checkpoint out and takes the next) if a put failed.
fn store(checkpoints: &CheckpointHandle, q: usize, sealed: &Sealed) -> bool {
    let id = CheckpointId(sealed.id);
    let started = std::time::Instant::now();
    let put_index = || {
        let index = sealed.index.encode()?;
        checkpoints.store.put(id, &index_name(q), &index)
    };
    let stored = match (&sealed.state, sealed.kind) {
        (SealedState::Whole(bytes), SegmentKind::Base) => checkpoints.store.put(id, &state_name(q), bytes),
        (SealedState::Whole(bytes), SegmentKind::Delta) => {
            let name = sealed.overlay.clone().unwrap_or_else(|| segment_name(q));
            checkpoints.store.put(id, &name, bytes).and_then(|_| put_index())
        }
        (SealedState::Parts(_), _) => put_index(),
        (SealedState::Failed(e), _) => {
            tracing::warn!(checkpoint = sealed.id, partition = q, error = %e, "cannot store a part of a base");
            return false;
        }
    };
    match stored {
        Ok(file) => {
            tracing::debug!(
                checkpoint = sealed.id,
                partition = q,
                bytes = sealed.state.len(),
                write_ms = started.elapsed().as_millis() as u64,
                "state stored"
            );
            checkpoints.state_saved(sealed.id, q, file, sealed.ended_sources.clone());
            true
        }
        Err(e) => {
            tracing::warn!(checkpoint = sealed.id, partition = q, error = %e, "cannot store a snapshot");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;

    /// Records what it was given: "R:bytes" for a restore, "D:bytes" for a delta.
    #[derive(Default)]
    struct Applied(Vec<String>);

    impl StateTarget for Applied {
        fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
            self.0 = vec![format!("R:{}", String::from_utf8_lossy(state))];
            Ok(())
        }
        fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError> {
            self.0.push(format!("D:{}", String::from_utf8_lossy(delta)));
            Ok(())
        }
        fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
            let run: Vec<_> = run.iter().map(|o| String::from_utf8_lossy(o)).collect();
            self.0.push(format!("O:{}", run.join(",")));
            Ok(())
        }
    }

    /// Writes a chain: checkpoint 1 a base, then a delta per checkpoint in `deltas`; returns the
    /// index at each checkpoint.
    fn chain(store: &MemoryStore, deltas: &[u64]) -> Vec<StateIndex> {
        let mut chain = PartitionChain::new(ChainPolicy::default());
        let base = store.put(CheckpointId(1), "state-p00000", b"base").unwrap();
        let mut indexes = vec![chain.record(CheckpointId(1), SegmentKind::Base, base)];
        for &id in deltas {
            let bytes = format!("d{id}");
            let file = store
                .put(CheckpointId(id), &segment_name(0), bytes.as_bytes())
                .unwrap();
            let index = chain.record(CheckpointId(id), SegmentKind::Delta, file);
            store
                .put(CheckpointId(id), &index_name(0), &index.encode().unwrap())
                .unwrap();
            indexes.push(index);
        }
        indexes
    }

    #[test]
    fn a_base_stored_in_parts_is_written_as_an_index_and_loads_part_by_part() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let mut parts = StoreParts::new(Arc::clone(&store), 3, 0);
        for part in ["p0", "p1", "p2"] {
            parts.put(&[b"#", part.as_bytes()]).unwrap();
        }
        let mut writer = StateWriter::new(0, PartitionChain::new(ChainPolicy::default()));
        let sealed = writer.sealed(3, SegmentKind::Base, parts.into_state());
        assert_eq!(sealed.index.base_parts(), 3);
        let (checkpoints, mut requests) = CheckpointHandle::detached_with_requests(Arc::clone(&store));
        assert!(super::store(&checkpoints, 0, &sealed));
        assert!(requests.try_recv().is_ok(), "acknowledged");
        // A delta then builds on the parts.
        assert_eq!(writer.next_kind(None), SegmentKind::Delta);
        let mut target = Applied::default();
        let index = load(store.as_ref(), 3, &index_name(0), &mut target, None).unwrap();
        assert_eq!(index, sealed.index);
        assert_eq!(target.0, ["R:#p0", "D:#p1", "D:#p2"]);
    }

    #[test]
    fn a_base_whose_part_could_not_be_stored_is_not_acknowledged() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let mut parts = StoreParts::new(Arc::clone(&store), 3, 0);
        parts.put(&[b"p0"]).unwrap();
        parts.failed = Some(CheckpointError::Encoding("disk full".into()));
        parts.put(&[b"p1"]).unwrap();
        let mut writer = StateWriter::new(0, PartitionChain::new(ChainPolicy::default()));
        let sealed = writer.sealed(3, SegmentKind::Base, parts.into_state());
        let (checkpoints, mut requests) = CheckpointHandle::detached_with_requests(Arc::clone(&store));
        assert!(!super::store(&checkpoints, 0, &sealed));
        assert!(requests.try_recv().is_err(), "nothing acknowledged");
        assert!(
            store.get(CheckpointId(3), &part_name(0, 1)).is_err(),
            "nothing stored after the failure"
        );
    }

    #[test]
    fn a_part_the_writer_thread_could_not_store_fails_the_base() {
        use crate::checkpoint::hooked::{Hooked, Op};
        let inner = MemoryStore::new();
        let failing = part_name(0, 1);
        let store = Hooked::new(&inner, move |op, _, name| match (op, name == failing) {
            (Op::Write, true) => Err(CheckpointError::Encoding("disk full".into())),
            _ => Ok(()),
        });
        let mut parts = StoreParts::new(Arc::new(store), 3, 0);
        for part in 0..20u8 {
            parts.put(&[&[part; 100]]).unwrap();
        }
        let state = parts.into_state();
        assert!(matches!(&state, SealedState::Failed(e) if e.to_string().contains("disk full")));
        assert!(
            inner.get(CheckpointId(3), &part_name(0, 0)).is_ok(),
            "the part before was stored"
        );
        for k in 2..20 {
            assert!(
                inner.get(CheckpointId(3), &part_name(0, k)).is_err(),
                "part {k} stored after the failure"
            );
        }
    }

    #[test]
    fn segments_are_read_a_window_at_a_time() {
        let segment = |size: usize| Segment {
            checkpoint: CheckpointId(1),
            file: StoredFile::of("x", &vec![0; size]),
        };
        let index = StateIndex {
            segments: vec![segment(40), segment(40), segment(30), segment(200), segment(5)],
        };
        assert_eq!(
            read_window(&index, 0, 100),
            2,
            "40 + 40, and 30 more would pass 100"
        );
        assert_eq!(read_window(&index, 2, 100), 3, "at least one");
        assert_eq!(read_window(&index, 3, 100), 4, "one larger than the window");
        assert_eq!(read_window(&index, 4, 100), 5);
    }

    /// An index of `names` (`o5`: an overlay of the recovery from checkpoint 5), the `i`-th
    /// segment in checkpoint `i + 1`, each of `size` bytes.
    fn named(names: &[&str], size: usize) -> StateIndex {
        let segments = (names.iter().enumerate())
            .map(|(i, name)| {
                let name = match name.strip_prefix('o') {
                    Some(tag) => overlay_name(0, tag.parse().unwrap()),
                    None => name.to_string(),
                };
                Segment {
                    checkpoint: CheckpointId(i as u64 + 1),
                    file: StoredFile::of(&name, &vec![0; size]),
                }
            })
            .collect();
        StateIndex { segments }
    }

    #[test]
    fn an_overlay_run_is_read_and_applied_whole() {
        let index = named(&["state-p00000", "o1", "o1", "o1", "seg-p00000"], 40);
        assert_eq!(
            read_window(&index, 0, 100),
            4,
            "the window takes the run to its end"
        );
        assert_eq!(read_window(&index, 1, 50), 4);
        assert_eq!(read_window(&index, 4, 50), 5);
        // Two recoveries' runs side by side stay apart.
        let store = MemoryStore::new();
        let mut chain = PartitionChain::new(ChainPolicy::default());
        let mut index = None;
        for (id, name) in [
            (1, "state-p00000".to_string()),
            (3, overlay_name(0, 2)),
            (4, overlay_name(0, 2)),
            (6, overlay_name(0, 5)),
        ] {
            let file = store
                .put(CheckpointId(id), &name, format!("{id}").as_bytes())
                .unwrap();
            index = Some(chain.record(CheckpointId(id), SegmentKind::Delta, file));
        }
        let index = index.unwrap();
        store
            .put(CheckpointId(6), &index_name(0), &index.encode().unwrap())
            .unwrap();
        let mut target = Applied::default();
        load(&store, 6, &index_name(0), &mut target, None).unwrap();
        assert_eq!(target.0, ["R:1", "O:3,4", "O:6"]);
    }

    #[test]
    fn state_loaded_ahead_from_inside_an_overlay_run_is_loaded_again() {
        let have = named(&["state-p00000", "o1"], 1);
        let index = named(&["state-p00000", "o1", "o1", "seg-p00000"], 1);
        assert_eq!(
            applied_prefix(&have, &index),
            0,
            "the run's rest holds the partial state, not changes"
        );
        let have = named(&["state-p00000", "o1", "o1"], 1);
        assert_eq!(
            applied_prefix(&have, &index),
            3,
            "the run is whole: the delta after it applies"
        );
        let store = MemoryStore::new();
        let mut target = Applied::default();
        let error = apply_segments(&store, 4, &index, 2, &mut target).unwrap_err();
        assert!(error.to_string().contains("overlay run"), "{error}");
    }

    #[test]
    fn deltas_only_at_a_move_for_everyone_and_while_loading_ahead_for_the_kept() {
        let barriers = DeltaBarriers::default();
        barriers.set(5, false, vec![3]);
        assert!(barriers.deltas_only(5, 3));
        assert!(
            !barriers.deltas_only(5, 2),
            "only the partition being loaded ahead"
        );
        assert!(!barriers.deltas_only(4, 3), "only at that checkpoint");
        barriers.set(6, true, Vec::new());
        assert!(
            barriers.deltas_only(6, 2) && barriers.deltas_only(6, 3),
            "a move: everyone"
        );
        barriers.set(7, false, Vec::new());
        assert!(!barriers.deltas_only(7, 3));
    }

    #[test]
    fn state_loaded_ahead_takes_only_the_segments_written_since() {
        let store = MemoryStore::new();
        let indexes = chain(&store, &[2, 3, 4]);
        // Loaded ahead at checkpoint 2 (base + d2).
        let mut target = Applied::default();
        let at_2 = load(&store, 2, &index_name(0), &mut target, None).unwrap();
        assert_eq!(at_2, indexes[1]);
        assert_eq!(target.0, ["R:base", "D:d2"]);
        // The move's barrier is checkpoint 4: only d3 and d4 are read and applied.
        let at_4 = load(&store, 4, &index_name(0), &mut target, Some(&at_2)).unwrap();
        assert_eq!(at_4, indexes[3]);
        assert_eq!(target.0, ["R:base", "D:d2", "D:d3", "D:d4"]);
        // Even if the loaded segments' files are gone by then, they are not read again.
        store.delete_checkpoint(CheckpointId(2)).unwrap();
        let mut again = Applied(vec!["R:base".into(), "D:d2".into()]);
        load(&store, 4, &index_name(0), &mut again, Some(&at_2)).unwrap();
        assert_eq!(again.0, ["R:base", "D:d2", "D:d3", "D:d4"]);
    }

    #[test]
    fn a_chain_that_does_not_extend_what_was_loaded_is_read_in_full() {
        let store = MemoryStore::new();
        chain(&store, &[2, 3]);
        // What was loaded ahead came from another chain (a new base was written since).
        let other = StateIndex {
            segments: vec![Segment {
                checkpoint: CheckpointId(9),
                file: StoredFile::of("state-p00000", b"old base"),
            }],
        };
        assert_eq!(applied_prefix(&other, &chain(&MemoryStore::new(), &[2])[1]), 0);
        let mut target = Applied(vec!["R:old base".into()]);
        load(&store, 3, &index_name(0), &mut target, Some(&other)).unwrap();
        assert_eq!(target.0, ["R:base", "D:d2", "D:d3"]);
    }

    #[test]
    fn a_chain_rebased_since_the_load_on_a_compacted_base_applies_only_what_came_after() {
        let store = MemoryStore::new();
        let indexes = chain(&store, &[2, 3, 4, 5]);
        let mut target = Applied::default();
        let at_3 = load(&store, 3, &index_name(0), &mut target, None).unwrap();
        assert_eq!(target.0, ["R:base", "D:d2", "D:d3"]);
        // Compacted apart at 4 (base, d2, d3, d4 as one base in checkpoint 4), then d5.
        let compacted = Segment {
            checkpoint: CheckpointId(4),
            file: store.put(CheckpointId(4), "base-p00000-7", b"b4").unwrap(),
        };
        let mut rebased = indexes[4].clone();
        rebased.segments.splice(0..4, [compacted]);
        store
            .put(CheckpointId(5), &index_name(0), &rebased.encode().unwrap())
            .unwrap();
        assert_eq!(applied_prefix(&at_3, &rebased), 0, "the base holds d4");
        // Loaded ahead at 4 instead: the compacted base is the state it holds.
        assert_eq!(applied_prefix(&indexes[3], &rebased), 1);
        let mut at_4 = Applied(vec!["R:base".into(), "D:d2".into(), "D:d3".into(), "D:d4".into()]);
        load(&store, 5, &index_name(0), &mut at_4, Some(&indexes[3])).unwrap();
        assert_eq!(at_4.0, ["R:base", "D:d2", "D:d3", "D:d4", "D:d5"]);
        // Loaded at 3, the rebased chain is read in full.
        load(&store, 5, &index_name(0), &mut target, Some(&at_3)).unwrap();
        assert_eq!(target.0, ["R:b4", "D:d5"]);
    }
}
