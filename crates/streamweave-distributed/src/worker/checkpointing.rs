//! A worker's side of one attempt's checkpoints: which checkpoint was requested, where each of
//! its source partitions stands, and the two halves of each partition's acknowledgement (the
//! source's offset, the receiver's state) until both are in.
//!
//! ```text
//! TriggerCheckpoint{id} -> trigger(): pause running sources; exhausted ones ack their final
//!                          offset; the barrier of a source still waiting for a slot goes out at once
//! source task stops    -> source_reached(id, p, offset)    \
//! receiver aligned     -> state_saved(id, q, file, bytes)    > both for a partition -> CheckpointAck
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::exchange::AttemptOut;
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
    /// Whether its task has started reading (a bounded job's task may wait for a slot).
    pub(crate) started: bool,
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
    /// How to reach every partition, once the attempt's connections are up: barriers of
    /// sources that have not started are sent from here, so receivers never wait for a source
    /// that waits for a slot.
    out: Mutex<Option<AttemptOut>>,
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
                    started: false,
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
            out: Mutex::new(None),
        }
    }

    /// The attempt's connections are up: from now on barriers of unstarted sources go out at
    /// once, starting with any already requested.
    pub(crate) fn connected(&self, out: AttemptOut, mine: &[usize]) {
        let mut slot = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let out = slot.insert(out);
        self.stand_in_for_unstarted(out, mine);
    }

    /// Sends the requested barrier for every source that has not started, with its start offset.
    fn stand_in_for_unstarted(&self, out: &AttemptOut, mine: &[usize]) {
        let id = self.requested.load(Ordering::Acquire);
        for (task, &partition) in mine.iter().enumerate() {
            let mut progress = self.sources[task].lock().unwrap_or_else(|e| e.into_inner());
            if !progress.started && !progress.exhausted && id > progress.acked {
                progress.acked = id;
                let offset = progress.offset;
                // Unbounded queues: this never blocks. An error means the attempt is ending.
                let _ = AttemptOut {
                    from: partition,
                    ..out.clone()
                }
                .barrier(id);
                drop(progress);
                self.source_reached(id, partition, offset);
            }
        }
    }

    /// A source task starts reading: it sends any barrier requested but not sent yet first, so
    /// that everything it reads follows it.
    pub(crate) fn source_starting(
        &self,
        task: usize,
        partition: usize,
        out: &AttemptOut,
    ) -> Result<(), crate::dataflow::DataflowError> {
        let mut progress = self.sources[task].lock().unwrap_or_else(|e| e.into_inner());
        progress.started = true;
        let id = self.requested.load(Ordering::Acquire);
        if id > progress.acked {
            progress.acked = id;
            let offset = progress.offset;
            out.barrier(id)?;
            drop(progress);
            self.source_reached(id, partition, offset);
        }
        Ok(())
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
            } else if progress.started {
                controls[task].pause.store(true, Ordering::Release);
            }
        }
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(out) = out.as_ref() {
            self.stand_in_for_unstarted(out, mine);
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
