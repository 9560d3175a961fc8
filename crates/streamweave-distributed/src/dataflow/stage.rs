//! The receiving half of a pipeline: a [`Stage`] consumes the batches a receiver task takes off
//! the exchange and emits records towards the sink.
//!
//! ```text
//! Batch --PassThrough | LocalPassThrough--> records          (exchange / no exchange)
//! Batch --Keyed: state[key] = update(state[key], x)--> (key, acc) at the end of the input
//! ... --MapStage: fused map / filter / flat_map--> records for the sink
//! ```
//!
//! Keyed state is snapshotted at checkpoints and restored on recovery; the other stages hold
//! none.

use std::hash::Hash;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::plan::{unpack, unpack_local, Batch};
use super::state::tracked::TrackedMap;
use super::DataflowError;
use crate::checkpoint::{Layer, PendingChanges, SegmentKind};

/// In-process hash maps of keyed state: foldhash, fast and of good quality on short keys (which
/// FxHash is not: its high bits collide for keys like `w123`, and probing then compares strings).
/// Placement across processes uses the stable hash of the partitioner, never this one.
pub(super) type FoldHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the same hasher.
pub(super) type FoldHashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// Where a stage hands a base it encodes in parts ([`Stage::snapshot_segment_in_parts`]): each
/// part is stored as it is handed over, so a base larger than memory is never whole in it.
pub trait PartSink {
    /// Stores the next part, whose bytes are `pieces` one after another.
    fn put(&mut self, pieces: &[&[u8]]) -> Result<(), DataflowError>;
}

/// How a segment was encoded by [`Stage::snapshot_segment_in_parts`].
#[derive(Debug, PartialEq, Eq)]
pub enum Encoded {
    /// In one piece, here.
    Whole(Vec<u8>),
    /// A base, all of it handed to the [`PartSink`] in parts.
    Parts,
}

/// The receiving half of a pipeline: consumes batches of the exchange type and emits `U`.
pub trait Stage<U>: Send {
    /// Applies a batch, emitting what can be emitted now.
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(U)) -> Result<(), DataflowError>;
    /// Every source has ended: emits what was held back (keyed results).
    fn finish(self: Box<Self>, emit: &mut dyn FnMut(U)) -> Result<(), DataflowError>;

    /// A checkpoint barrier, just before the sink pre-commits the epoch: emits what belongs to
    /// the epoch (a changelog's changed keys). Most stages emit as they go and do nothing here.
    fn on_barrier(&mut self, emit: &mut dyn FnMut(U)) -> Result<(), DataflowError> {
        let _ = emit;
        Ok(())
    }

    /// The stage's state, encoded, for a checkpoint; stateless stages have none (empty).
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        Ok(Vec::new())
    }

    /// A segment of the state for an incremental checkpoint: the whole state when `kind` is
    /// [`SegmentKind::Base`], or only what changed since the stage's previous segment when it is
    /// [`SegmentKind::Delta`] and the stage tracks changes. Returns the kind taken: a stage
    /// without change tracking always takes a base (its whole state).
    fn snapshot_segment(&mut self, kind: SegmentKind) -> Result<(SegmentKind, Vec<u8>), DataflowError> {
        let _ = kind;
        Ok((SegmentKind::Base, self.snapshot()?))
    }

    /// [`Stage::snapshot_segment`] for a state that may not fit in memory encoded: a large base
    /// may go to `parts` in pieces as it is encoded, each a map of some of its entries
    /// ([`Encoded::Parts`]; how large is the stage's choice). The default encodes the segment
    /// whole.
    fn snapshot_segment_in_parts(
        &mut self,
        kind: SegmentKind,
        parts: &mut dyn PartSink,
    ) -> Result<(SegmentKind, Encoded), DataflowError> {
        let _ = parts;
        let (kind, bytes) = self.snapshot_segment(kind)?;
        Ok((kind, Encoded::Whole(bytes)))
    }

    /// Applies a delta taken by [`Stage::snapshot_segment`] over the restored state.
    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        let _ = bytes;
        Err(DataflowError::Encoding(
            "a state delta given to a stage that takes none".to_string(),
        ))
    }

    /// Replaces the state with one taken by [`Stage::snapshot`] (on recovery).
    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(DataflowError::Encoding(
                "state given to a stateless stage".to_string(),
            ))
        }
    }

    /// Whether, on recovery, the stage may apply records to an empty state while its restored
    /// state loads beside it, the two merged once loaded ([`Stage::merge_restored`]): true for
    /// keyed stages whose accumulators merge (counts, reductions), which emit nothing before
    /// the end of the input. Other stages restore before they apply a record.
    fn merges_restored(&self) -> bool {
        false
    }

    /// Whether the stage's segments can be merged into one base beside the processing
    /// ([`Stage::merge_segments`], a compaction apart from the barriers): true for in-memory
    /// keyed state. A stage on the disk backend says no: its base is built from its own store.
    fn compacts_apart(&self) -> bool {
        false
    }

    /// Brings the state back to what it was at the stage's last segment or restore (`back` 0)
    /// or the one before (`back` 1), for another attempt of the job on this worker (local
    /// recovery); false, with nothing changed, when the stage cannot (the default: it keeps no
    /// pre-images of its changes).
    fn roll_back(&mut self, back: usize) -> Result<bool, DataflowError> {
        let _ = back;
        Ok(false)
    }

    /// What a delta would hold against a base, for a stage that counts its changed entries
    /// (in-memory keyed state): the barrier chooses the segment's kind with it
    /// ([`PartitionChain::next_kind_apart`](crate::checkpoint::PartitionChain::next_kind_apart)).
    fn pending_changes(&self) -> Option<PendingChanges> {
        None
    }

    /// The bytes of one base holding `base` (a segment of kind base) with `layers` (its deltas
    /// and overlay runs) applied in order, as [`Stage::snapshot`] would take of the state
    /// restored from them; for stages that [compact apart](Stage::compacts_apart).
    fn merge_segments(&self, base: &[u8], layers: &[Layer<'_>]) -> Result<Vec<u8>, DataflowError> {
        let _ = (base, layers);
        Err(DataflowError::InvalidJob(
            "this stage's state is not compacted apart from the barriers".to_string(),
        ))
    }

    /// Recovery: combines an overlay run (the state a recovery applied records to while its
    /// restored state loaded, as a base and deltas: see [`crate::checkpoint::StateIndex::overlay_run`])
    /// with the state restored so far, key by key, as [`Stage::merge_restored`] does; for
    /// stages that [merge restored state](Stage::merges_restored).
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let _ = run;
        Err(no_overlays())
    }

    /// The stage's whole state, taken out (leaving it empty) for [`Stage::merge_restored`] of a
    /// stage built by the same factory; `None` for stages that do not merge restored state.
    fn take_state(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        None
    }

    /// Takes `restored` (the state of a stage of the same factory brought to the checkpoint,
    /// from [`Stage::take_state`]) as the state, with what this stage applied since it started
    /// empty merged on top, as changed since the checkpoint: all of it, except entries stored
    /// in a segment meanwhile (overlays on the restored chain) and unchanged since, which the
    /// chain holds already.
    fn merge_restored(&mut self, restored: Box<dyn std::any::Any + Send>) -> Result<(), DataflowError> {
        let _ = restored;
        Err(DataflowError::InvalidJob(
            "this stage restores its state before it applies records".to_string(),
        ))
    }
}

/// A chain with overlays restored into a stage that cannot combine them.
pub(super) fn no_overlays() -> DataflowError {
    DataflowError::InvalidJob(
        "state with overlays given to a stage whose accumulators do not merge".to_string(),
    )
}

pub(super) fn encode_state<S: Serialize>(state: &S) -> Result<Vec<u8>, DataflowError> {
    postcard::to_stdvec(state).map_err(|e| DataflowError::Encoding(format!("snapshot: {e}")))
}

/// [`encode_state`] into a buffer of `capacity` bytes to begin with (a large state's estimated
/// size: no doubling on the way).
pub(super) fn encode_state_into<S: Serialize>(state: &S, capacity: usize) -> Result<Vec<u8>, DataflowError> {
    postcard::to_extend(state, Vec::with_capacity(capacity))
        .map_err(|e| DataflowError::Encoding(format!("snapshot: {e}")))
}

pub(super) fn decode_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, DataflowError> {
    postcard::from_bytes(bytes).map_err(|e| DataflowError::Encoding(format!("restore: {e}")))
}

/// A fused post-exchange operator: one record in, any number out.
pub(super) type PostOp<U, V> = Arc<dyn Fn(U, &mut dyn FnMut(V)) + Send + Sync>;

/// Builds a partition's stage for an attempt, on the attempt's state backend.
pub(super) type StageFactory<U> =
    Arc<dyn Fn(&super::state::StageContext) -> Result<Box<dyn Stage<U>>, DataflowError> + Send + Sync>;

pub(super) struct PassThrough<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for PassThrough<T> {
    fn default() -> Self {
        PassThrough(std::marker::PhantomData)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Stage<T> for PassThrough<T> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        unpack::<T>(batch)?.into_iter().for_each(emit);
        Ok(())
    }

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// Pass-through for records that never leave their partition: no serde bounds needed.
pub(super) struct LocalPassThrough<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for LocalPassThrough<T> {
    fn default() -> Self {
        LocalPassThrough(std::marker::PhantomData)
    }
}

impl<T: Send + 'static> Stage<T> for LocalPassThrough<T> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        unpack_local::<T>(batch)?.into_iter().for_each(emit);
        Ok(())
    }

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// How a keyed stage folds one incoming record into a key's accumulator (none yet: `None`).
pub(super) type Update<A, X> = Arc<dyn Fn(Option<A>, X) -> A + Send + Sync>;

/// Keyed state after the exchange: an accumulator per key, updated by every `(key, record)`
/// that arrives, emitted when the input ends, snapshotted at checkpoints. Merging pre-aggregated
/// partials (`reduce`, `count`) and folding raw records (`fold`) differ only in `update`.
///
/// The table marks the keys changed since the previous segment (see `state/tracked.rs`): a
/// delta is those entries, so a checkpoint costs what changed, not the whole state (1% of a
/// gigabyte changing per second is not a scan of a gigabyte per second).
pub(super) struct Keyed<K, A, X> {
    state: TrackedMap<K, A>,
    update: Update<A, X>,
    /// How two accumulators of a key merge (`update` itself when records are accumulators:
    /// counts, reductions); with it, recovery applies records while the state loads.
    combine: Option<Update<A, A>>,
}

impl<K: Eq + Hash, A, X> Keyed<K, A, X> {
    pub(super) fn boxed(update: &Update<A, X>, combine: Option<&Update<A, A>>) -> Box<Self> {
        Box::new(Keyed {
            state: TrackedMap::default(),
            update: Arc::clone(update),
            combine: combine.map(Arc::clone),
        })
    }

    /// A restored state is grown now (while it loads, beside the processing) rather than by the
    /// first new keys, which would pause the partition while every entry moves.
    fn room_to_grow(&mut self) {
        self.state.reserve(self.state.len() / 8);
    }
}

impl<K, A, X> Stage<(K, A)> for Keyed<K, A, X>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    X: Serialize + DeserializeOwned + Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, _emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        let update = &self.update;
        for (k, x) in unpack::<(K, X)>(batch)? {
            self.state.update(k, |previous| update(previous, x));
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        let capacity = self.state.encoded_capacity(self.state.len());
        encode_state_into(&self.state.entries(), capacity)
    }

    fn snapshot_segment(&mut self, kind: SegmentKind) -> Result<(SegmentKind, Vec<u8>), DataflowError> {
        let bytes = match kind {
            SegmentKind::Base => self.snapshot()?,
            SegmentKind::Delta => {
                let capacity = self.state.encoded_capacity(self.state.changed_len());
                encode_state_into(&self.state.changed_entries(), capacity)?
            }
        };
        self.state.segment_taken();
        Ok((kind, bytes))
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        // No reservation for the delta's length: its keys are mostly in the table already, and
        // reserving for them could move a whole table for nothing (at an adoption, a pause).
        let changed: Vec<(K, A)> = decode_state(bytes)?;
        for (k, acc) in changed {
            self.state.insert_clean(k, acc);
        }
        self.room_to_grow();
        self.state.restored_here();
        Ok(())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.state = decode_state(bytes)?;
        self.room_to_grow();
        Ok(())
    }

    fn finish(self: Box<Self>, emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        self.state.into_entries().for_each(emit);
        Ok(())
    }

    fn merges_restored(&self) -> bool {
        self.combine.is_some()
    }

    fn compacts_apart(&self) -> bool {
        true
    }

    fn pending_changes(&self) -> Option<PendingChanges> {
        Some(PendingChanges {
            changed: self.state.changed_len() as u64,
            entries: self.state.len() as u64,
        })
    }

    fn merge_segments(&self, base: &[u8], layers: &[Layer<'_>]) -> Result<Vec<u8>, DataflowError> {
        let combine = self.combine.as_deref().map(|f| f as &dyn Fn(Option<A>, A) -> A);
        super::state::merge_segments::<K, A>(base, layers, combine)
    }

    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let Some(combine) = self.combine.clone() else {
            return Err(no_overlays());
        };
        let partial = super::state::collapse_run::<K, A>(run)?;
        for (k, acc) in partial {
            self.state.update_clean(k, |old| combine(old, acc));
        }
        self.room_to_grow();
        self.state.restored_here();
        Ok(())
    }

    fn take_state(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        Some(Box::new(std::mem::take(&mut self.state)))
    }

    fn merge_restored(&mut self, restored: Box<dyn std::any::Any + Send>) -> Result<(), DataflowError> {
        let (Some(combine), Ok(restored)) = (self.combine.clone(), restored.downcast::<TrackedMap<K, A>>())
        else {
            return Err(DataflowError::InvalidJob(
                "restored state of another kind of stage".to_string(),
            ));
        };
        // Applied since the stage started empty, so all changed since the checkpoint, except
        // what barriers stored as overlays meanwhile and has not changed since the last one:
        // the restored chain with its overlays holds that already, the next delta need not.
        let applied = std::mem::replace(&mut self.state, *restored);
        for (k, acc, changed) in applied.into_marked_entries() {
            match changed {
                true => self.state.update(k, |old| combine(old, acc)),
                false => self.state.update_clean(k, |old| combine(old, acc)),
            }
        }
        self.state.no_rollback();
        Ok(())
    }

    fn roll_back(&mut self, back: usize) -> Result<bool, DataflowError> {
        (self.state.roll_back(back)).map_err(|e| DataflowError::Encoding(format!("rollback: {e}")))
    }
}

/// The update of an associative combination: the first value as is, then `f(acc, value)`.
pub(super) fn merging<V: 'static>(f: Arc<dyn Fn(V, V) -> V + Send + Sync>) -> Update<V, V> {
    Arc::new(move |acc: Option<V>, v: V| match acc {
        Some(acc) => f(acc, v),
        None => v,
    })
}

/// A receiving stage followed by fused post-exchange operators (`map`, `filter`, `flat_map`);
/// its state is the inner stage's.
pub(super) struct MapStage<U, V> {
    pub(super) inner: Box<dyn Stage<U>>,
    pub(super) op: PostOp<U, V>,
}

impl<U: 'static, V: 'static> Stage<V> for MapStage<U, V> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let op = &self.op;
        self.inner.on_batch(batch, &mut |u| op(u, emit))
    }

    fn finish(self: Box<Self>, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let op = self.op;
        self.inner.finish(&mut |u| op(u, emit))
    }

    fn on_barrier(&mut self, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let op = &self.op;
        self.inner.on_barrier(&mut |u| op(u, emit))
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        self.inner.snapshot()
    }

    fn snapshot_segment(&mut self, kind: SegmentKind) -> Result<(SegmentKind, Vec<u8>), DataflowError> {
        self.inner.snapshot_segment(kind)
    }

    fn snapshot_segment_in_parts(
        &mut self,
        kind: SegmentKind,
        parts: &mut dyn PartSink,
    ) -> Result<(SegmentKind, Encoded), DataflowError> {
        self.inner.snapshot_segment_in_parts(kind, parts)
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.inner.apply_delta(bytes)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.inner.restore(bytes)
    }

    fn merges_restored(&self) -> bool {
        self.inner.merges_restored()
    }

    fn compacts_apart(&self) -> bool {
        self.inner.compacts_apart()
    }

    fn pending_changes(&self) -> Option<PendingChanges> {
        self.inner.pending_changes()
    }

    fn merge_segments(&self, base: &[u8], layers: &[Layer<'_>]) -> Result<Vec<u8>, DataflowError> {
        self.inner.merge_segments(base, layers)
    }

    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        self.inner.apply_overlays(run)
    }

    fn take_state(&mut self) -> Option<Box<dyn std::any::Any + Send>> {
        self.inner.take_state()
    }

    fn merge_restored(&mut self, restored: Box<dyn std::any::Any + Send>) -> Result<(), DataflowError> {
        self.inner.merge_restored(restored)
    }

    fn roll_back(&mut self, back: usize) -> Result<bool, DataflowError> {
        self.inner.roll_back(back)
    }
}

#[cfg(test)]
#[path = "stage_tests.rs"]
mod tests;
