//! A typed job behind the runtime's type-erased [`ErasedPlan`]: the worker runs a source task
//! through [`SinkPlan::run_source`] and a receiver task per partition through the
//! [`Receiver`] that [`SinkPlan::open_receiver`] returns.
//!
//! ```text
//! Batch --Stage::on_batch--> records --SinkWriter::write--> (written += 1)
//! barrier: snapshot = written (u64 LE) ++ stage state; end: stage.finish -> write -> commit
//! ```

use std::sync::Arc;

use crate::checkpoint::Layer;

use super::plan::{Batch, ErasedPlan, ExchangeOut, LoadedState, Receiver, SourceControl};
use super::router::SendFn;
use super::stage::{Stage, StageFactory};
use super::state::{StageContext, StateBackend};
use super::stream::{SourceInfo, ValidateFn};
use super::{DataflowError, Sink, SinkContext, SinkWriter, SourceContext, SourceEnd, SourceOffset};

/// A whole job, typed: its send side, its receiving stage and its sink.
pub(super) struct SinkPlan<U, S> {
    pub(super) send: Arc<SendFn>,
    pub(super) stage: StageFactory<U>,
    pub(super) sink: Arc<S>,
    pub(super) validate: Vec<ValidateFn>,
    pub(super) source: SourceInfo,
}

impl<U: Send + 'static, S: Sink<Item = U>> ErasedPlan for SinkPlan<U, S> {
    fn run_source(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        control: &SourceControl,
        out: &mut dyn ExchangeOut,
    ) -> Result<SourceEnd, DataflowError> {
        (self.send)(ctx, offset, control, out)
    }

    fn open_receiver(&self, ctx: &SinkContext) -> Result<Box<dyn Receiver>, DataflowError> {
        self.open_receiver_in(ctx, &StateBackend::Memory)
    }

    fn open_receiver_in(
        &self,
        ctx: &SinkContext,
        state: &StateBackend,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let stage_ctx = StageContext {
            partition: ctx.partition,
            state,
        };
        Ok(Box::new(SinkReceiver {
            stage: (self.stage)(&stage_ctx)?,
            writer: self.sink.open(ctx)?,
            written: 0,
            failure: None,
            written_at: [Some(0), None],
        }))
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.validate_input()?;
        self.sink.validate()
    }

    fn validate_input(&self) -> Result<(), DataflowError> {
        self.validate.iter().try_for_each(|check| check())
    }

    fn bounded(&self) -> bool {
        self.source.bounded
    }

    fn time_sliced(&self) -> bool {
        !self.source.bounded || self.source.paced
    }

    fn empty_sources(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        (self.source.empty)(num_partitions)
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        self.sink.commit_epochs(partition, upto)
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        self.sink.discard_after(partition, after)
    }

    fn load_state_in(
        &self,
        partition: usize,
        state: &StateBackend,
    ) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        let stage = (self.stage)(&StageContext { partition, state })?;
        Ok(Some(Box::new(Loaded { stage, written: 0 })))
    }

    fn open_loaded(
        &self,
        ctx: &SinkContext,
        state: Box<dyn LoadedState>,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        let loaded = state
            .into_any()
            .downcast::<Loaded<U>>()
            .map_err(|_| DataflowError::InvalidJob("partition state loaded by another job".to_string()))?;
        Ok(Box::new(SinkReceiver {
            stage: loaded.stage,
            writer: self.sink.open(ctx)?,
            written: loaded.written,
            failure: None,
            written_at: [Some(loaded.written), None],
        }))
    }
}

/// A partition's stage and output count, loaded ahead of its sink (a move's preparation).
struct Loaded<U> {
    stage: Box<dyn Stage<U>>,
    written: u64,
}

impl<U: Send + 'static> LoadedState for Loaded<U> {
    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let (written, stage) = split_written(state, "snapshot")?;
        self.written = written;
        self.stage.restore(stage)
    }

    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError> {
        let (written, stage) = split_written(delta, "state delta")?;
        self.written = written;
        self.stage.apply_delta(stage)
    }

    fn merges_restored(&self) -> bool {
        self.stage.merges_restored()
    }

    /// The records written as of the newest segment (an overlay's count adds to the state's
    /// before it, as the recovery's merge did), then the stage's segments merged.
    fn merge_segments(&self, layers: &[Layer<'_>]) -> Result<Vec<u8>, DataflowError> {
        let Some((Layer::Base(base), rest)) = layers.split_first() else {
            return Err(DataflowError::Encoding("no base to compact".to_string()));
        };
        let (mut written, base) = split_written(base, "state segment")?;
        let mut stage_layers = Vec::with_capacity(rest.len());
        for layer in rest {
            stage_layers.push(match layer {
                Layer::Delta(delta) => {
                    let (at, delta) = split_written(delta, "state segment")?;
                    written = at;
                    Layer::Delta(delta)
                }
                Layer::Overlays(run) => {
                    let (added, run) = split_run(run)?;
                    written += added;
                    Layer::Overlays(run)
                }
                Layer::Base(_) => {
                    return Err(DataflowError::Encoding(
                        "a base after a chain's first segment".to_string(),
                    ))
                }
            });
        }
        let mut state = written.to_le_bytes().to_vec();
        state.extend(self.stage.merge_segments(base, &stage_layers)?);
        Ok(state)
    }

    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let (added, run) = split_run(run)?;
        self.stage.apply_overlays(&run)?;
        self.written += added;
        Ok(())
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any + Send> {
        self
    }
}

/// A snapshot or delta: the records written so far (8 bytes, little-endian), then the stage's
/// bytes.
fn split_written<'a>(bytes: &'a [u8], what: &str) -> Result<(u64, &'a [u8]), DataflowError> {
    let Some((written, stage)) = bytes.split_first_chunk::<8>() else {
        return Err(DataflowError::Encoding(format!(
            "a partition {what} of {} bytes is too short",
            bytes.len()
        )));
    };
    Ok((u64::from_le_bytes(*written), stage))
}

/// An overlay run's segments without their record counts, and the records the run adds (its
/// newest overlay's count: what the partial state had written as of then).
fn split_run<'a>(run: &[&'a [u8]]) -> Result<(u64, Vec<&'a [u8]>), DataflowError> {
    let mut added = 0;
    let mut stage = Vec::with_capacity(run.len());
    for overlay in run {
        let (written, bytes) = split_written(overlay, "state overlay")?;
        added = written;
        stage.push(bytes);
    }
    Ok((added, stage))
}

/// A receiver task's pipeline: the stage, then the partition's sink writer.
struct SinkReceiver<U> {
    stage: Box<dyn Stage<U>>,
    writer: Box<dyn SinkWriter<U>>,
    written: u64,
    failure: Option<DataflowError>,
    /// The records written as of the last segment or restore, and the one before (what a
    /// rollback to either restores).
    written_at: [Option<u64>; 2],
}

impl<U: Send + 'static> SinkReceiver<U> {
    /// A segment was taken: its record count is the last, the one before it the previous.
    fn segment_taken(&mut self) {
        self.written_at = [Some(self.written), self.written_at[0]];
    }

    /// The input has ended: writes what the stage held back (keyed results); returns the writer
    /// (to commit or pre-commit) and the number of records written.
    fn emit_held(self) -> Result<(Box<dyn SinkWriter<U>>, u64), DataflowError> {
        let SinkReceiver {
            stage,
            mut writer,
            mut written,
            mut failure,
            ..
        } = self;
        stage.finish(&mut |u| write(&mut writer, &mut written, &mut failure, u))?;
        match failure {
            Some(e) => Err(e),
            None => Ok((writer, written)),
        }
    }
}

/// A [`PartSink`](super::PartSink) that puts the records written so far before each part.
struct Prefixed<'a> {
    written: [u8; 8],
    inner: &'a mut dyn super::PartSink,
}

impl super::PartSink for Prefixed<'_> {
    fn put(&mut self, pieces: &[&[u8]]) -> Result<(), DataflowError> {
        let mut all = vec![&self.written[..]];
        all.extend_from_slice(pieces);
        self.inner.put(&all)
    }
}

impl<U: Send + 'static> Receiver for SinkReceiver<U> {
    fn on_batch(&mut self, batch: Batch) -> Result<(), DataflowError> {
        let (writer, written, failure) = (&mut self.writer, &mut self.written, &mut self.failure);
        self.stage
            .on_batch(batch, &mut |u| write(writer, written, failure, u))?;
        self.failure.take().map_or(Ok(()), Err)
    }

    fn finish_pending(self: Box<Self>, epoch: u64) -> Result<u64, DataflowError> {
        let (mut writer, written) = (*self).emit_held()?;
        writer.pre_commit(epoch)?;
        Ok(written)
    }

    /// The records written so far (8 bytes, little-endian), then the stage's state: a restored
    /// partition goes on counting its output from the checkpoint, so the final count is the
    /// job's whole output, whatever restores and moves happened.
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        let mut state = self.written.to_le_bytes().to_vec();
        state.extend(self.stage.snapshot()?);
        Ok(state)
    }

    /// A segment carries the records written so far too (the newest segment's count wins).
    fn snapshot_segment(
        &mut self,
        kind: crate::checkpoint::SegmentKind,
    ) -> Result<(crate::checkpoint::SegmentKind, Vec<u8>), DataflowError> {
        let (kind, stage) = self.stage.snapshot_segment(kind)?;
        self.segment_taken();
        let mut state = self.written.to_le_bytes().to_vec();
        state.extend(stage);
        Ok((kind, state))
    }

    /// Each part carries the records written so far, as a segment does.
    fn snapshot_segment_in_parts(
        &mut self,
        kind: crate::checkpoint::SegmentKind,
        parts: &mut dyn super::PartSink,
    ) -> Result<(crate::checkpoint::SegmentKind, super::Encoded), DataflowError> {
        let mut prefixed = Prefixed {
            written: self.written.to_le_bytes(),
            inner: parts,
        };
        let taken = self.stage.snapshot_segment_in_parts(kind, &mut prefixed)?;
        self.segment_taken();
        match taken {
            (kind, super::Encoded::Whole(stage)) => {
                let mut state = self.written.to_le_bytes().to_vec();
                state.extend(stage);
                Ok((kind, super::Encoded::Whole(state)))
            }
            parted => Ok(parted),
        }
    }

    fn apply_delta(&mut self, delta: &[u8]) -> Result<(), DataflowError> {
        let (written, stage) = split_written(delta, "state delta")?;
        self.written = written;
        self.written_at = [Some(written), None];
        self.stage.apply_delta(stage)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let (written, stage) = split_written(state, "snapshot")?;
        self.written = written;
        self.written_at = [Some(written), None];
        self.stage.restore(stage)
    }

    fn roll_back(self: Box<Self>, back: usize) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        let SinkReceiver {
            mut stage,
            written_at,
            ..
        } = *self;
        let Some(written) = written_at.get(back).copied().flatten() else {
            return Ok(None);
        };
        if !stage.roll_back(back)? {
            return Ok(None);
        }
        Ok(Some(Box::new(Loaded { stage, written })))
    }

    fn merges_restored(&self) -> bool {
        self.stage.merges_restored()
    }

    fn compacts_apart(&self) -> bool {
        self.stage.compacts_apart()
    }

    fn pending_changes(&self) -> Option<crate::checkpoint::PendingChanges> {
        self.stage.pending_changes()
    }

    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let (added, run) = split_run(run)?;
        self.stage.apply_overlays(&run)?;
        self.written += added;
        self.written_at = [Some(self.written), None];
        Ok(())
    }

    /// The output count goes on from the checkpoint's (a merging stage emits nothing before
    /// the end of its input, so nothing was written meanwhile).
    fn merge_restored(&mut self, restored: Box<dyn LoadedState>) -> Result<(), DataflowError> {
        let mut loaded = (restored.into_any())
            .downcast::<Loaded<U>>()
            .map_err(|_| DataflowError::InvalidJob("partition state loaded by another job".to_string()))?;
        let state = (loaded.stage.take_state())
            .ok_or_else(|| DataflowError::InvalidJob("a stage without mergeable state".to_string()))?;
        self.stage.merge_restored(state)?;
        self.written += loaded.written;
        self.written_at = [None, None];
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        let (writer, written, failure) = (&mut self.writer, &mut self.written, &mut self.failure);
        self.stage
            .on_barrier(&mut |u| write(writer, written, failure, u))?;
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        self.writer.pre_commit(epoch)
    }

    fn finish(self: Box<Self>) -> Result<u64, DataflowError> {
        let (writer, written) = (*self).emit_held()?;
        writer.commit()?;
        Ok(written)
    }
}

/// Writes one record unless a write already failed (the failure is reported once the batch
/// is through).
fn write<U>(
    writer: &mut Box<dyn SinkWriter<U>>,
    written: &mut u64,
    failure: &mut Option<DataflowError>,
    u: U,
) {
    if failure.is_some() {
        return;
    }
    match writer.write(u) {
        Ok(()) => *written += 1,
        Err(e) => *failure = Some(e),
    }
}
