//! The source side of one partition in one attempt. Reading is blocking code (files, user
//! sources), so it runs on a blocking thread, but only while it holds one of the worker's
//! source slots (one per core by default): a worker owning a thousand partitions reads a few at
//! a time instead of starting a thousand threads.
//!
//! ```text
//! driver (async): take a slot -> read a slice on a blocking thread -> give the slot back
//!   bounded source:   the slice reads to the end (its pre-aggregation stays in cache)
//!   unbounded or paced (rate-limited) source: after QUANTUM, if another source waits for a
//!                     slot, the slice is asked
//!                     to stop at its next record (flushing what it read); the partition is
//!                     parked at its offset and queues for a slot again
//! slice: run_source(offset) --Stopped (barrier)--> ack offset, barrier to every q, reroute;
//!                           |                      resume (or end: the partition left)
//!                           --Stopped (yield)----> park at the offset
//!                           --Exhausted----------> ack a pending barrier, end-of-stream
//! ```
//!
//! A parked or waiting partition is "not started" for the checkpoints: its barriers are sent
//! for it at its offset (`checkpointing.rs`; the slice asks the attempt's checkpoint actor,
//! `checkpoint_actor.rs`, at its start and at each barrier), so receivers never wait for a source that waits
//! for a slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use super::checkpoint_actor::Checkpoints;
use super::exchange::AttemptOut;
use super::job_tasks::report_failure;
use super::panics::guarded;
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, SourceContext, SourceEnd, SourceOffset};
use crate::protocol::WorkerMessage;

/// How long an unbounded source reads before it gives its slot to a waiting one.
const QUANTUM: Duration = Duration::from_millis(50);

/// The worker's source slots: how many source partitions read at once.
#[derive(Debug)]
pub(crate) struct SourceSlots {
    slots: Arc<Semaphore>,
    /// Partitions waiting for a slot.
    waiting: AtomicUsize,
}

impl SourceSlots {
    /// `n` slots (at least one).
    pub(crate) fn new(n: usize) -> Self {
        SourceSlots {
            slots: Arc::new(Semaphore::new(n.max(1))),
            waiting: AtomicUsize::new(0),
        }
    }
}

/// How a slice of reading ended.
enum Slice {
    /// The partition's source is done on this worker: exhausted, left at a barrier, cancelled.
    Done,
    /// It gave its slot back at this offset and waits for another.
    Parked,
}

pub(crate) struct SourceTask {
    pub(crate) partition: usize,
    pub(crate) num_partitions: usize,
    /// Where the next slice starts.
    pub(crate) offset: SourceOffset,
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) controls: Arc<Vec<SourceControl>>,
    pub(crate) out: AttemptOut,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) checkpoints: Checkpoints,
    pub(crate) attempt: u64,
    /// Its share is empty and every worker knows it: no end-of-stream to send.
    empty: bool,
    /// Set by the driver when the slice should give its slot back.
    yield_now: Arc<AtomicBool>,
}

impl SourceTask {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        partition: usize,
        num_partitions: usize,
        offset: SourceOffset,
        plan: Arc<dyn ErasedPlan>,
        controls: Arc<Vec<SourceControl>>,
        out: AttemptOut,
        reports: mpsc::UnboundedSender<WorkerMessage>,
        checkpoints: Checkpoints,
        attempt: u64,
        empty: bool,
    ) -> Self {
        SourceTask {
            partition,
            num_partitions,
            offset,
            plan,
            controls,
            out,
            reports,
            checkpoints,
            attempt,
            empty,
            yield_now: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Runs the partition's source to its end on this worker, a slice per slot held.
    pub(crate) async fn drive(mut self, slots: Arc<SourceSlots>) {
        let cancel = self.out.cancel.clone();
        let yields = self.plan.time_sliced();
        loop {
            slots.waiting.fetch_add(1, Ordering::AcqRel);
            let slot = tokio::select! {
                slot = Arc::clone(&slots.slots).acquire_owned() => slot.ok(),
                _ = cancel.cancelled() => None,
            };
            slots.waiting.fetch_sub(1, Ordering::AcqRel);
            let Some(_slot) = slot else { return };
            let (yield_now, partition) = (Arc::clone(&self.yield_now), self.partition);
            let controls = Arc::clone(&self.controls);
            let mut slice = tokio::task::spawn_blocking(move || {
                let outcome = guarded(|| self.slice());
                (self, outcome)
            });
            let joined = loop {
                tokio::select! {
                    joined = &mut slice => break joined,
                    _ = tokio::time::sleep(QUANTUM), if yields => {
                        if slots.waiting.load(Ordering::Acquire) > 0 {
                            yield_now.store(true, Ordering::Release);
                            controls[partition].pause.store(true, Ordering::Release);
                        }
                    }
                }
            };
            let Ok((task, outcome)) = joined else {
                // The blocking pool is shutting down with the runtime.
                return;
            };
            self = task;
            match outcome {
                Ok(Slice::Parked) => continue,
                Ok(Slice::Done) => return,
                Err(_) if self.out.cancel.is_cancelled() => return,
                Err(e) => {
                    report_failure(&self.reports, self.attempt, Some(self.partition), &e);
                    return;
                }
            }
        }
    }

    /// Reads from the offset, stopping at every checkpoint barrier, until the share is
    /// exhausted, the partition leaves this worker at a barrier, or the driver asks for the slot.
    fn slice(&mut self) -> Result<Slice, DataflowError> {
        let ctx = SourceContext {
            partition: self.partition,
            num_partitions: self.num_partitions,
        };
        let control = &self.controls[self.partition];
        if let Some(checkpoints) = &self.checkpoints {
            if !checkpoints.source_starting(self.partition, &mut self.out)? {
                return Ok(Slice::Done);
            }
        }
        loop {
            // A share every worker knows to be empty is not even opened.
            let end = match self.empty {
                true => SourceEnd::Exhausted(self.offset),
                false => self.plan.run_source(&ctx, self.offset, control, &mut self.out)?,
            };
            match end {
                SourceEnd::Exhausted(end) => {
                    if let Some(checkpoints) = &self.checkpoints {
                        let records = control.records_in.load(Ordering::Relaxed);
                        checkpoints.source_exhausted(self.partition, end.0, records);
                    }
                    if !self.empty {
                        self.out.end_of_stream(self.partition)?;
                    }
                    let _ = self.reports.send(WorkerMessage::SourceDone {
                        attempt: self.attempt,
                        partition: self.partition,
                        records_in: control.records_in.load(Ordering::Relaxed),
                    });
                    return Ok(Slice::Done);
                }
                SourceEnd::Stopped(at) => {
                    if self.out.cancel.is_cancelled() {
                        return Ok(Slice::Done);
                    }
                    control.pause.store(false, Ordering::Release);
                    self.offset = at;
                    // Stopped: the count is exact.
                    let records = control.records_in.load(Ordering::Relaxed);
                    if let Some(checkpoints) = &self.checkpoints {
                        if !checkpoints.barrier_reached(self.partition, at.0, records, &mut self.out)? {
                            tracing::debug!(
                                attempt = self.attempt,
                                partition = self.partition,
                                offset = at.0,
                                "source moved away at a barrier"
                            );
                            return Ok(Slice::Done);
                        }
                    }
                    if self.yield_now.swap(false, Ordering::AcqRel) {
                        if let Some(checkpoints) = &self.checkpoints {
                            checkpoints.source_parked(self.partition, at.0, records);
                        }
                        return Ok(Slice::Parked);
                    }
                }
            }
        }
    }
}
