//! The type-erased form of a job that the worker's runtime executes. A job has one exchange:
//!
//! ```text
//!  source task p:  Source --fused ops--> SendSide (route by key; pre-aggregate for reduce)
//!                        | Batch::Local(Vec<X>) to partitions on this worker (no encoding)
//!                        | Batch::Encoded(postcard Vec<X>) to partitions on other workers
//!                        v
//!  receiver task q: Receiver (keyed state, or pass-through) --fused ops--> SinkWriter
//! ```
//!
//! `X` is the exchange record type: the record itself for `exchange`/plain jobs, `(K, V)` for
//! keyed aggregations. The runtime sees only [`ErasedPlan`], [`ExchangeOut`] and [`Receiver`].

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{DataflowError, SinkContext, SourceContext, SourceEnd, SourceOffset};

/// Records a worker moves between tasks: typed when both ends are in this process, encoded
/// otherwise.
pub enum Batch {
    /// A `Vec<X>` for a partition on this worker.
    Local(Box<dyn Any + Send>),
    /// A postcard-encoded `Vec<X>` from or for another worker.
    Encoded(Vec<u8>),
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Batch::Local(_) => f.write_str("Batch::Local"),
            Batch::Encoded(bytes) => write!(f, "Batch::Encoded({} bytes)", bytes.len()),
        }
    }
}

/// Where a source task sends its batches: the runtime's router.
pub trait ExchangeOut {
    /// The number of partitions.
    fn num_partitions(&self) -> usize;
    /// Whether partition `q` runs on this worker (then send [`Batch::Local`]).
    fn is_local(&self, q: usize) -> bool;
    /// Sends a batch to partition `q`, waiting for credit. An error means the attempt is over.
    fn send(&mut self, q: usize, batch: Batch) -> Result<(), DataflowError>;
    /// Whether the attempt has been cancelled.
    fn cancelled(&self) -> bool;
}

/// What the runtime and a running source task share.
#[derive(Debug)]
pub struct SourceControl {
    /// Records read so far (updated in chunks).
    pub records_in: AtomicU64,
    /// The worker's metric of records read from this partition over every attempt (added to
    /// with the same chunks; never reset).
    pub records_in_total: Arc<AtomicU64>,
    /// The source's [`crate::dataflow::Source::lag`] for this partition, updated with
    /// `records_in`; [`LAG_UNKNOWN`] when the source cannot tell or the partition is not read here.
    pub lag: AtomicU64,
    /// Set by the runtime when a checkpoint barrier is due: the task stops at the next record.
    pub pause: AtomicBool,
    /// Set by the runtime when the attempt is cancelled: the task stops at the next record
    /// (rather than at its next full batch, which a slow source may take long to fill).
    pub cancel: AtomicBool,
}

/// [`SourceControl::lag`] when there is no figure.
pub const LAG_UNKNOWN: u64 = u64::MAX;

impl Default for SourceControl {
    fn default() -> Self {
        SourceControl {
            records_in: AtomicU64::new(0),
            records_in_total: Arc::default(),
            lag: AtomicU64::new(LAG_UNKNOWN),
            pause: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
        }
    }
}

impl SourceControl {
    /// The partition's lag, if its source reported one.
    pub fn lag(&self) -> Option<u64> {
        Some(self.lag.load(Ordering::Relaxed)).filter(|&lag| lag != LAG_UNKNOWN)
    }
}

/// One partition's receiving side: takes batches, then finishes into the sink.
pub trait Receiver: Send {
    /// Applies one batch.
    fn on_batch(&mut self, batch: Batch) -> Result<(), DataflowError>;
    /// All sources have finished: emits the results through the sink and commits it. Returns
    /// the number of records written.
    fn finish(self: Box<Self>) -> Result<u64, DataflowError>;

    /// All sources have finished, with checkpoints on: emits the results through the sink and
    /// pre-commits them as epoch `epoch` (made final later by [`ErasedPlan::commit_epochs`]).
    fn finish_pending(self: Box<Self>, epoch: u64) -> Result<u64, DataflowError>;

    /// Checkpoint barrier `epoch`: the encoded state of the partition's stage.
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError>;

    /// Recovery: replaces the stage's state with a snapshot.
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError>;

    /// Checkpoint barrier `epoch`, incremental: a segment of the partition's state (see
    /// [`Stage::snapshot_segment`](super::Stage::snapshot_segment)) and the kind taken.
    fn snapshot_segment(
        &mut self,
        kind: crate::checkpoint::SegmentKind,
    ) -> Result<(crate::checkpoint::SegmentKind, Vec<u8>), DataflowError>;

    /// [`Receiver::snapshot_segment`], a large base going to `parts` as it is encoded (see
    /// [`Stage::snapshot_segment_in_parts`](super::Stage::snapshot_segment_in_parts)).
    fn snapshot_segment_in_parts(
        &mut self,
        kind: crate::checkpoint::SegmentKind,
        parts: &mut dyn super::PartSink,
    ) -> Result<(crate::checkpoint::SegmentKind, super::Encoded), DataflowError> {
        let _ = parts;
        let (kind, bytes) = self.snapshot_segment(kind)?;
        Ok((kind, super::Encoded::Whole(bytes)))
    }

    /// Recovery: applies a delta segment over the state restored so far.
    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError>;

    /// Checkpoint barrier `epoch`: makes what the sink wrote since the previous barrier durable
    /// but not yet final (phase one of the sink's two-phase commit).
    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError>;

    /// Recovery: combines an overlay run (see [`Stage::apply_overlays`](super::Stage::apply_overlays))
    /// with the state restored so far.
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let _ = run;
        Err(no_overlays())
    }

    /// Whether recovery may apply batches before the restored state is in, merging it later
    /// with [`Receiver::merge_restored`] (see [`Stage::merges_restored`](super::Stage::merges_restored)).
    fn merges_restored(&self) -> bool {
        false
    }

    /// Whether the partition's state may be compacted apart from the barriers: its segments
    /// merged into a base by this plan's [`ErasedPlan::load_state`]
    /// ([`LoadedState::merge_segments`]; see [`Stage::compacts_apart`](super::Stage::compacts_apart)).
    fn compacts_apart(&self) -> bool {
        false
    }

    /// What a delta of the partition's state would hold against a base (see
    /// [`Stage::pending_changes`](super::Stage::pending_changes)).
    fn pending_changes(&self) -> Option<crate::checkpoint::PendingChanges> {
        None
    }

    /// The partition's state without its sink, brought back to what it was at the receiver's
    /// last segment or restore (`back` 0) or the one before (`back` 1), for a later attempt of
    /// the job on this worker to open around ([`ErasedPlan::open_loaded`]): local recovery.
    /// `None` when it cannot be (the stage keeps no pre-images of its changes, or not that far).
    fn roll_back(self: Box<Self>, back: usize) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        let _ = back;
        Ok(None)
    }

    /// Takes `restored` (this plan's [`ErasedPlan::load_state`], brought to the checkpoint
    /// being recovered) as the state, with the batches applied since merged on top.
    fn merge_restored(&mut self, restored: Box<dyn LoadedState>) -> Result<(), DataflowError> {
        let _ = restored;
        Err(DataflowError::InvalidJob(
            "this job restores its state before it applies records".to_string(),
        ))
    }
}

/// A job as the runtime sees it.
pub trait ErasedPlan: Send + Sync {
    /// Reads partition `ctx.partition` of the source from `offset` and sends everything through
    /// `out`, adding the records read to `control.records_in` as it goes. At the end of the
    /// input it flushes and returns `Exhausted` (the runtime then sends the end-of-stream
    /// markers). When `control.pause` is set it stops after the current record, flushes
    /// everything read so far (pre-aggregated partials included) and returns `Stopped(offset)`:
    /// the runtime sends a checkpoint barrier, then calls again from that offset.
    fn run_source(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        control: &SourceControl,
        out: &mut dyn ExchangeOut,
    ) -> Result<SourceEnd, DataflowError>;

    /// Opens partition `ctx.partition`'s receiver and sink for one attempt.
    fn open_receiver(&self, ctx: &SinkContext) -> Result<Box<dyn Receiver>, DataflowError>;

    /// Opens the receiver with its keyed state on `state` (see [`super::state`]); a plan
    /// without keyed stages ignores it.
    fn open_receiver_in(
        &self,
        ctx: &SinkContext,
        state: &super::state::StateBackend,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let _ = state;
        self.open_receiver(ctx)
    }

    /// Checks the source and sink before the job starts.
    fn validate(&self) -> Result<(), DataflowError>;

    /// Checks only the source (a job resumed from a checkpoint already has output).
    fn validate_input(&self) -> Result<(), DataflowError>;

    /// Whether the source is bounded (see [`crate::dataflow::Source::is_bounded`]).
    fn bounded(&self) -> bool;

    /// Whether the source's partitions share the worker's source slots by time slices (an
    /// unbounded or a paced source) rather than each reading to its end once it has a slot.
    fn time_sliced(&self) -> bool {
        !self.bounded()
    }

    /// The source partitions with nothing to read, if known (see
    /// [`crate::dataflow::Source::empty_partitions`]).
    fn empty_sources(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        let _ = num_partitions;
        Ok(None)
    }

    /// Phase two of the sink's commit: makes partition `partition`'s pre-committed epochs up to
    /// `upto` final. Idempotent.
    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError>;

    /// Recovery: throws away partition `partition`'s sink output of epochs after `after`.
    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError>;

    /// Partition `partition`'s state without its sink, to load ahead of a move (see
    /// [`LoadedState`]); `None` when the plan cannot (the partition then restores in full when it is adopted).
    fn load_state(&self, partition: usize) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        self.load_state_in(partition, &super::state::StateBackend::Memory)
    }

    /// [`ErasedPlan::load_state`] with the keyed state on `state` (as
    /// [`ErasedPlan::open_receiver_in`]).
    fn load_state_in(
        &self,
        partition: usize,
        state: &super::state::StateBackend,
    ) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        let _ = (partition, state);
        Ok(None)
    }

    /// Opens partition `ctx.partition`'s receiver and sink around `state`, loaded ahead by
    /// [`ErasedPlan::load_state`] of this plan.
    fn open_loaded(
        &self,
        ctx: &SinkContext,
        state: Box<dyn LoadedState>,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let _ = (ctx, state);
        Err(DataflowError::InvalidJob(
            "this job cannot load partition state ahead of a move".to_string(),
        ))
    }
}

/// A partition's state loaded while its old owner still runs it (a move's preparation): the
/// same snapshot bytes as [`Receiver::restore`] and [`Receiver::apply_delta`] take, without a
/// sink (opening one belongs to the adoption, after the old owner's last epoch).
pub trait LoadedState: Send {
    /// Replaces the state with a snapshot (a base).
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError>;
    /// Applies a delta segment over the state loaded so far.
    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError>;
    /// Combines an overlay run with the state loaded so far (see [`Receiver::apply_overlays`]).
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let _ = run;
        Err(no_overlays())
    }
    /// Whether its receiver may apply batches before this state is in, merging it later (see
    /// [`Receiver::merges_restored`]): a partition moved here then runs at once, the segments
    /// written since this state was loaded applied beside it.
    fn merges_restored(&self) -> bool {
        false
    }
    /// The bytes of one base holding the chain `layers` (a base, then deltas and overlay runs,
    /// as [`Receiver::snapshot_segment`] took them: [`crate::checkpoint::StateIndex::layers`]),
    /// built without loading them (a compaction apart from the barriers, for receivers that
    /// [compact apart](Receiver::compacts_apart)).
    fn merge_segments(&self, layers: &[crate::checkpoint::Layer<'_>]) -> Result<Vec<u8>, DataflowError> {
        let _ = layers;
        Err(DataflowError::InvalidJob(
            "this job's state is not compacted apart from the barriers".to_string(),
        ))
    }
    /// For [`ErasedPlan::open_loaded`], which knows the concrete type.
    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send>;
}

/// A chain with overlays restored where they cannot be combined.
fn no_overlays() -> DataflowError {
    DataflowError::InvalidJob(
        "this job's state cannot take overlays (written by a recovery of a job that merges restored state)"
            .to_string(),
    )
}

/// Records per batch: large enough to amortise channel and framing costs, small enough that
/// credits bound memory tightly.
pub const BATCH_RECORDS: usize = 1024;

/// Encoded batches above this size are split in halves, so that a batch of very long records
/// still fits in data-plane frames (a single record larger than a frame is an error).
pub const MAX_ENCODED_BATCH: usize = 8 * 1024 * 1024;

/// Turns a typed batch into what the router sends to partition `q`: one typed batch when `q` is
/// local, otherwise encoded batches of at most [`MAX_ENCODED_BATCH`] bytes where possible.
pub(crate) fn pack<X>(records: Vec<X>, local: bool) -> Result<Vec<Batch>, DataflowError>
where
    X: serde::Serialize + Send + 'static,
{
    if local {
        return Ok(vec![Batch::Local(Box::new(records))]);
    }
    let mut out = Vec::new();
    encode_bounded(records, &mut out)?;
    Ok(out)
}

fn encode_bounded<X: serde::Serialize>(
    mut records: Vec<X>,
    out: &mut Vec<Batch>,
) -> Result<(), DataflowError> {
    let bytes = postcard::to_stdvec(&records).map_err(|e| DataflowError::Encoding(e.to_string()))?;
    if bytes.len() <= MAX_ENCODED_BATCH || records.len() == 1 {
        out.push(Batch::Encoded(bytes));
        return Ok(());
    }
    let second = records.split_off(records.len() / 2);
    encode_bounded(records, out)?;
    encode_bounded(second, out)
}

/// The inverse of [`pack`].
pub(crate) fn unpack<X>(batch: Batch) -> Result<Vec<X>, DataflowError>
where
    X: serde::de::DeserializeOwned + Send + 'static,
{
    match batch {
        Batch::Encoded(bytes) => {
            postcard::from_bytes(&bytes).map_err(|e| DataflowError::Encoding(e.to_string()))
        }
        local => unpack_local(local),
    }
}

/// The records of a batch that never left this worker (so never needed serde).
pub(crate) fn unpack_local<X: Send + 'static>(batch: Batch) -> Result<Vec<X>, DataflowError> {
    match batch {
        Batch::Local(any) => any
            .downcast::<Vec<X>>()
            .map(|b| *b)
            .map_err(|_| DataflowError::Encoding("a local batch of another record type".to_string())),
        Batch::Encoded(_) => Err(DataflowError::Exchange(
            "records of a partition-local stage arrived from another worker".to_string(),
        )),
    }
}
