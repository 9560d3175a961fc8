//! A worker's side of one attempt's checkpoints: which checkpoint was requested, where each of
//! its source partitions stands, the partitions leaving it at a barrier, and the two halves of
//! each partition's acknowledgement (the source's offset, the receiver's state) until both are in.
//!
//! ```text
//! TriggerCheckpoint{id} -> trigger(): pause running sources; exhausted ones ack their final
//!                          offset; the barrier of a source still waiting for a slot goes out at once
//! source task stops    -> barrier_reached(p): ack offset, barrier out, reroute; leaving at id: stop
//! source task parks    -> source_parked(p): not started again; barriers go out for it
//! receiver aligned     -> state_saved(id, q, file + crc32)   > both for a partition -> CheckpointAck
//! AdoptPartitions      -> adopt_source(p): this worker runs p's source from the checkpoint on
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use super::exchange::AttemptOut;
use crate::checkpoint::{CheckpointStore, StoredFile};
use crate::dataflow::plan::SourceControl;
use crate::protocol::WorkerMessage;

/// Where one source partition stands on this worker.
#[derive(Debug, Default)]
pub(crate) struct SourceProgress {
    /// Whether this worker runs the partition's source (partitions move in and out).
    pub(crate) owned: bool,
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
    /// Offset, exhausted, records read.
    source: Option<(u64, bool, u64)>,
    state: Option<StoredFile>,
}

/// See the module documentation.
pub(crate) struct AttemptCheckpoints {
    pub(crate) attempt: u64,
    pub(crate) store: Arc<dyn CheckpointStore>,
    /// The newest checkpoint requested.
    pub(crate) requested: AtomicU64,
    /// By partition. Small per-source locks, never held across an await, taken once per barrier.
    sources: Vec<Mutex<SourceProgress>>,
    /// Partitions that leave this worker at a checkpoint barrier: partition -> barrier.
    leaving: Mutex<BTreeMap<usize, u64>>,
    halves: Mutex<BTreeMap<(u64, usize), Halves>>,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    /// The attempt's source controls, by partition (their record counts go into the acks).
    controls: Arc<Vec<SourceControl>>,
    /// How to reach every partition, once the attempt's connections are up: barriers of
    /// sources that have not started are sent from here, so receivers never wait for a source
    /// that waits for a slot.
    out: Mutex<Option<AttemptOut>>,
}

impl AttemptCheckpoints {
    /// `start[p]`: where partition `p`'s source starts, `Some` for the partitions this worker
    /// owns; `restored`: the checkpoint the attempt restored (0: none).
    pub(crate) fn new(
        attempt: u64,
        store: Arc<dyn CheckpointStore>,
        start: Vec<Option<u64>>,
        restored: u64,
        reports: mpsc::UnboundedSender<WorkerMessage>,
        controls: Arc<Vec<SourceControl>>,
    ) -> Self {
        let sources = start
            .into_iter()
            .map(|offset| {
                Mutex::new(SourceProgress {
                    owned: offset.is_some(),
                    offset: offset.unwrap_or(0),
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
            leaving: Mutex::new(BTreeMap::new()),
            halves: Mutex::new(BTreeMap::new()),
            reports,
            controls,
            out: Mutex::new(None),
        }
    }

    fn progress(&self, partition: usize) -> MutexGuard<'_, SourceProgress> {
        self.sources[partition].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The attempt's connections are up: from now on barriers of unstarted sources go out at
    /// once, starting with any already requested.
    pub(crate) fn connected(&self, out: AttemptOut) {
        let mut slot = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let out = slot.insert(out);
        self.stand_in_for_unstarted(out);
    }

    /// The attempt's router, once connected.
    pub(crate) fn router(&self) -> Option<AttemptOut> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Partition `partition` leaves this worker at barrier `id` (registered before `id` is
    /// requested).
    pub(crate) fn leave_at(&self, partition: usize, id: u64) {
        self.leaving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, id);
    }

    /// Whether partition `partition` leaves this worker at barrier `id`.
    pub(crate) fn leaves_at(&self, partition: usize, id: u64) -> bool {
        self.leaving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            == Some(&id)
    }

    /// Sends the requested barrier for every owned source that has not started, with its start
    /// offset.
    fn stand_in_for_unstarted(&self, out: &AttemptOut) {
        let id = self.requested.load(Ordering::Acquire);
        for partition in 0..self.sources.len() {
            let progress = self.progress(partition);
            if progress.owned && !progress.started && !progress.exhausted && id > progress.acked {
                let mut out = out.for_source(partition);
                out.reroute(progress.acked);
                // Unbounded queues: this never blocks. An error means the attempt is ending.
                let _ = out.barrier(id);
                self.acknowledge(progress, id, partition, false);
            }
        }
    }

    /// A source task starts reading with `out`: it sends any barrier requested but not sent
    /// yet first, so that everything it reads follows it. `Ok(false)`: the partition has left
    /// this worker, the task must not read.
    pub(crate) fn source_starting(
        &self,
        partition: usize,
        out: &mut AttemptOut,
    ) -> Result<bool, crate::dataflow::DataflowError> {
        let mut progress = self.progress(partition);
        progress.started = true;
        if !progress.owned {
            return Ok(false);
        }
        out.reroute(progress.acked);
        let id = self.requested.load(Ordering::Acquire);
        if id > progress.acked {
            out.barrier(id)?;
            out.reroute(id);
            return Ok(self.acknowledge(progress, id, partition, false));
        }
        Ok(true)
    }

    /// A source task stopped at `offset` for the requested barrier: acknowledges, sends the
    /// barrier, and switches to the routes after it. `Ok(false)`: the partition leaves this
    /// worker at this barrier, the task ends.
    pub(crate) fn barrier_reached(
        &self,
        partition: usize,
        offset: u64,
        out: &mut AttemptOut,
    ) -> Result<bool, crate::dataflow::DataflowError> {
        let id = self.requested.load(Ordering::Acquire);
        let mut progress = self.progress(partition);
        progress.offset = offset;
        if id <= progress.acked {
            return Ok(true);
        }
        let stays = self.acknowledge(progress, id, partition, false);
        out.barrier(id)?;
        out.reroute(id);
        Ok(stays)
    }

    /// A source task gave its slot to another at `offset` (between barriers): until it reads
    /// again it is not started, so requested barriers are sent for it at that offset.
    pub(crate) fn source_parked(&self, partition: usize, offset: u64) {
        {
            let mut progress = self.progress(partition);
            progress.started = false;
            progress.offset = offset;
        }
        // A barrier requested while the task was stopping found it started and only paused it.
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(out) = out.as_ref() {
            self.stand_in_for_unstarted(out);
        }
    }

    /// A source task read everything, up to `end`: a barrier requested while the last records
    /// went out is acknowledged with the end standing in for it (the end-of-stream follows).
    pub(crate) fn source_exhausted(&self, partition: usize, end: u64) {
        let mut progress = self.progress(partition);
        progress.exhausted = true;
        progress.offset = end;
        let requested = self.requested.load(Ordering::Acquire);
        if requested > progress.acked {
            self.acknowledge(progress, requested, partition, true);
        }
    }

    /// A checkpoint was requested: running sources pause at their next record (and ack from
    /// their task); exhausted ones ack their final offset now.
    pub(crate) fn trigger(&self, id: u64, controls: &[SourceControl]) {
        if self.requested.fetch_max(id, Ordering::AcqRel) >= id {
            return;
        }
        self.serve_requested(controls);
    }

    /// Makes every owned source answer the requested checkpoint.
    fn serve_requested(&self, controls: &[SourceControl]) {
        let id = self.requested.load(Ordering::Acquire);
        for (partition, control) in controls.iter().enumerate().take(self.sources.len()) {
            let progress = self.progress(partition);
            if !progress.owned || id <= progress.acked {
                continue;
            }
            if progress.exhausted {
                self.acknowledge(progress, id, partition, true);
            } else if progress.started {
                control.pause.store(true, Ordering::Release);
            }
        }
        let out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(out) = out.as_ref() {
            self.stand_in_for_unstarted(out);
        }
    }

    /// This worker takes over partition `partition`'s source from checkpoint `checkpoint`, at
    /// `offset` (`exhausted`: it has nothing left to read). A checkpoint requested since is
    /// answered at once when the source cannot answer it itself.
    pub(crate) fn adopt_source(
        &self,
        partition: usize,
        checkpoint: u64,
        offset: u64,
        exhausted: bool,
        records: u64,
        controls: &[SourceControl],
    ) {
        controls[partition].records_in.store(records, Ordering::Relaxed);
        *self.progress(partition) = SourceProgress {
            owned: true,
            offset,
            exhausted,
            started: false,
            acked: checkpoint,
        };
        self.serve_requested(controls);
    }

    /// Partition `partition`'s source has answered checkpoint `id` at its recorded offset
    /// (`exhausted`: with its end): marks it acknowledged, releases its progress, and sends the
    /// source half of the acknowledgement with the records read (the source is stopped, so the
    /// count is exact). If the partition leaves this worker at `id`, the source is no longer
    /// this worker's and its count goes with it to the new owner. Whether it stays.
    fn acknowledge(
        &self,
        mut progress: MutexGuard<'_, SourceProgress>,
        id: u64,
        partition: usize,
        exhausted: bool,
    ) -> bool {
        progress.acked = id;
        let stays = !self.leaves_at(partition, id);
        progress.owned = stays;
        let offset = progress.offset;
        drop(progress);
        let control = &self.controls[partition];
        let records = control.records_in.load(Ordering::Relaxed);
        self.complete(id, partition, |h| h.source = Some((offset, exhausted, records)));
        if !stays {
            control.records_in.store(0, Ordering::Relaxed);
        }
        stays
    }

    /// The receiver half of partition `partition`'s acknowledgement of `id`: its state stored
    /// as `file` (with its size and checksum, which go into the acknowledgement).
    pub(crate) fn state_saved(&self, id: u64, partition: usize, file: StoredFile) {
        self.complete(id, partition, |h| h.state = Some(file));
    }

    fn complete(&self, id: u64, partition: usize, fill: impl FnOnce(&mut Halves)) {
        let mut halves = self.halves.lock().unwrap_or_else(|e| e.into_inner());
        let entry = halves.entry((id, partition)).or_default();
        fill(entry);
        if let (Some((source_offset, source_exhausted, source_records)), Some(state)) =
            (entry.source, entry.state.clone())
        {
            halves.remove(&(id, partition));
            // Older checkpoints' halves can never complete now.
            halves.retain(|(i, _), _| *i >= id);
            let _ = self.reports.send(WorkerMessage::CheckpointAck {
                attempt: self.attempt,
                id,
                partition,
                state_file: state.name,
                state_bytes: state.size,
                state_crc32: state.crc32,
                source_offset,
                source_exhausted,
                source_records,
            });
        }
    }
}

/// Shared by an attempt's tasks.
pub(crate) type Checkpoints = Option<Arc<AttemptCheckpoints>>;
