//! One partition's incremental state on the worker that owns it: restoring it (a base, then its
//! deltas) and writing a segment per checkpoint, a delta over the partition's chain or, when
//! there is none or it is past its bounds, a new base.
//!
//! ```text
//! restore: state file --Whole--> restore                     chain = [that file]
//!                     --Chain--> restore base, apply deltas  chain = the index
//! barrier: kind = chain.next_kind() --seal--> segment bytes --chain.record--> index
//!          write (beside the processing, after the previous write of this partition):
//!            base:  put state-pQ = the base                 (one object, as before)
//!            delta: put seg-pQ = the delta, put index-pQ = the index (the state file then)
//! ```
//!
//! A delta is only good if everything it builds on was stored, so each write waits for the
//! previous one of its partition, and a delta whose predecessor failed is not written (the
//! checkpoint then times out, as when any write fails); the next barrier then takes a base.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::checkpoint_actor::CheckpointHandle;
use crate::checkpoint::{
    index_name, read_state, segment_name, ChainPolicy, CheckpointError, CheckpointId, PartitionChain,
    Segment, SegmentKind, StateIndex, StateRead, StoredFile,
};
use crate::dataflow::plan::Receiver;
use crate::dataflow::DataflowError;

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
    let store = checkpoints.store.as_ref();
    let damaged = |e: CheckpointError| DataflowError::restoring(id, e);
    let policy = ChainPolicy::default();
    match read_state(store, CheckpointId(id), name).map_err(damaged)? {
        StateRead::Whole(bytes) => {
            receiver.restore(&bytes)?;
            let base = Segment {
                checkpoint: CheckpointId(id),
                file: StoredFile::of(name, &bytes),
            };
            Ok(PartitionChain::restored(
                policy,
                StateIndex { segments: vec![base] },
            ))
        }
        StateRead::Chain(index) => {
            for (i, segment) in index.segments.iter().enumerate() {
                let bytes = store
                    .get_listed(segment.checkpoint, &segment.file)
                    .map_err(damaged)?;
                match i {
                    0 => receiver.restore(&bytes)?,
                    _ => receiver.apply_delta(&bytes)?,
                }
            }
            Ok(PartitionChain::restored(policy, index))
        }
    }
}

/// A segment sealed at a barrier, ready to be written.
pub(crate) struct Sealed {
    id: u64,
    kind: SegmentKind,
    bytes: Vec<u8>,
    index: StateIndex,
}

/// See the module documentation.
pub(crate) struct StateWriter {
    q: usize,
    chain: PartitionChain,
    /// Whether the previous write of this partition succeeded (none yet: nothing to wait for).
    previous: Option<oneshot::Receiver<bool>>,
    /// Set by a failed write: the next segment is a base.
    broken: Arc<AtomicBool>,
}

impl StateWriter {
    /// The writer of partition `q`, whose chain is `chain`.
    pub(crate) fn new(q: usize, chain: PartitionChain) -> Self {
        StateWriter {
            q,
            chain,
            previous: None,
            broken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The kind of segment to take at the next barrier.
    pub(crate) fn next_kind(&mut self) -> SegmentKind {
        if self.broken.swap(false, Ordering::AcqRel) {
            self.chain.reset();
        }
        self.chain.next_kind()
    }

    /// Checkpoint `id` took a segment of `kind` (what the stage took, maybe a base where a delta
    /// was asked): records it in the chain.
    pub(crate) fn sealed(&mut self, id: u64, kind: SegmentKind, bytes: Vec<u8>) -> Sealed {
        let name = match kind {
            SegmentKind::Base => state_name(self.q),
            SegmentKind::Delta => segment_name(self.q),
        };
        let file = StoredFile::of(&name, &bytes);
        let index = self.chain.record(CheckpointId(id), kind, file);
        Sealed {
            id,
            kind,
            bytes,
            index,
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
        async move {
            let previous_ok = match previous {
                Some(previous) => previous.await.unwrap_or(false),
                None => true,
            };
            let ok = if previous_ok || sealed.kind == SegmentKind::Base {
                super::blocking::run(move || Ok(store(&checkpoints, q, &sealed)))
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
    let stored = match sealed.kind {
        SegmentKind::Base => checkpoints.store.put(id, &state_name(q), &sealed.bytes),
        SegmentKind::Delta => checkpoints
            .store
            .put(id, &segment_name(q), &sealed.bytes)
            .and_then(|_| sealed.index.encode())
            .and_then(|index| checkpoints.store.put(id, &index_name(q), &index)),
    };
    match stored {
        Ok(file) => {
            tracing::debug!(
                checkpoint = sealed.id,
                partition = q,
                bytes = sealed.bytes.len(),
                write_ms = started.elapsed().as_millis() as u64,
                "state stored"
            );
            checkpoints.state_saved(sealed.id, q, file);
            true
        }
        Err(e) => {
            tracing::warn!(checkpoint = sealed.id, partition = q, error = %e, "cannot store a snapshot");
            false
        }
    }
}
