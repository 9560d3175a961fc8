//! A worker's side of one attempt's checkpoints: which checkpoint was requested, where each of
//! its source partitions stands, and the two halves of each partition's acknowledgement (the
//! source's offset, the receiver's state) until both are in.
//!
//! ```text
//! TriggerCheckpoint{id} -> trigger(): pause running sources; exhausted ones ack their final offset
//! source task stops    -> source_reached(id, p, offset)    \
//! receiver aligned     -> state_saved(id, q, file, bytes)    > both for a partition -> CheckpointAck
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::checkpoint::LocalDirStore;
use crate::dataflow::plan::SourceControl;
use crate::protocol::WorkerMessage;

/// Where one source partition of this worker stands.
#[derive(Debug, Default)]
pub(crate) struct SourceProgress {
    /// Its offset after the last barrier or at its end.
    pub(crate) offset: u64,
    /// Whether its share is exhausted (its end-of-stream sent).
    pub(crate) exhausted: bool,
    /// The newest checkpoint it has acknowledged.
    pub(crate) acked: u64,
}

#[derive(Debug, Default)]
struct Halves {
    source_offset: Option<u64>,
    state: Option<(String, u64)>,
}

/// See the module documentation.
pub(crate) struct AttemptCheckpoints {
    pub(crate) attempt: u64,
    pub(crate) store: LocalDirStore,
    /// The newest checkpoint requested.
    pub(crate) requested: AtomicU64,
    /// By position in the worker's owned partitions. Small per-source locks, never held across
    /// an await, taken once per barrier.
    pub(crate) sources: Vec<Mutex<SourceProgress>>,
    halves: Mutex<BTreeMap<(u64, usize), Halves>>,
    reports: mpsc::UnboundedSender<WorkerMessage>,
}

impl AttemptCheckpoints {
    pub(crate) fn new(
        attempt: u64,
        store: LocalDirStore,
        start_offsets: Vec<u64>,
        restored: u64,
        reports: mpsc::UnboundedSender<WorkerMessage>,
    ) -> Self {
        let sources = start_offsets
            .into_iter()
            .map(|offset| {
                Mutex::new(SourceProgress {
                    offset,
                    exhausted: false,
                    acked: restored,
                })
            })
            .collect();
        AttemptCheckpoints {
            attempt,
            store,
            requested: AtomicU64::new(restored),
            sources,
            halves: Mutex::new(BTreeMap::new()),
            reports,
        }
    }

    /// A checkpoint was requested: running sources pause at their next record (and ack from
    /// their task); exhausted ones ack their final offset now.
    pub(crate) fn trigger(&self, id: u64, mine: &[usize], controls: &[SourceControl]) {
        if self.requested.fetch_max(id, Ordering::AcqRel) >= id {
            return;
        }
        for (task, &partition) in mine.iter().enumerate() {
            let mut progress = self.sources[task].lock().unwrap_or_else(|e| e.into_inner());
            if progress.exhausted {
                progress.acked = id;
                let offset = progress.offset;
                drop(progress);
                self.source_reached(id, partition, offset);
            } else {
                controls[task].pause.store(true, Ordering::Release);
            }
        }
    }

    /// The source half of partition `partition`'s acknowledgement of `id`.
    pub(crate) fn source_reached(&self, id: u64, partition: usize, offset: u64) {
        self.complete(id, partition, |h| h.source_offset = Some(offset));
    }

    /// The receiver half of partition `partition`'s acknowledgement of `id`.
    pub(crate) fn state_saved(&self, id: u64, partition: usize, file: String, bytes: u64) {
        self.complete(id, partition, |h| h.state = Some((file, bytes)));
    }

    fn complete(&self, id: u64, partition: usize, fill: impl FnOnce(&mut Halves)) {
        let mut halves = self.halves.lock().unwrap_or_else(|e| e.into_inner());
        let entry = halves.entry((id, partition)).or_default();
        fill(entry);
        if let (Some(source_offset), Some((state_file, state_bytes))) =
            (entry.source_offset, entry.state.clone())
        {
            halves.remove(&(id, partition));
            // Older checkpoints' halves can never complete now.
            halves.retain(|(i, _), _| *i >= id);
            let _ = self.reports.send(WorkerMessage::CheckpointAck {
                attempt: self.attempt,
                id,
                partition,
                state_file,
                state_bytes,
                source_offset,
            });
        }
    }
}

/// Shared by an attempt's tasks.
pub(crate) type Checkpoints = Option<Arc<AttemptCheckpoints>>;
