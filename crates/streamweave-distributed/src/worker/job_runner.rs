//! Runs the worker's share of job attempts: for every partition it owns in an attempt, a source
//! task and a receiver task on blocking threads, connected through the data plane. Reports go
//! to the coordinator through the session.
//!
//! ```text
//! StartJob{attempt, spec, owners} -> build the job from the registry -> links to the peers
//!   -> per owned partition p: source task (run_source -> end-of-stream to every partition)
//!                             receiver task (inbox -> Receiver -> finish -> PartitionDone)
//! StopJob{attempt} / a newer StartJob -> cancel: tasks stop, inboxes are told, nothing commits
//! ```

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::exchange::{AttemptOut, DataPlane, Destination, Inbound, CREDITS_PER_CHANNEL};
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{
    DataflowError, JobRegistry, JobSpec, SinkContext, SourceContext, SourceEnd, SourceOffset,
};
use crate::protocol::{JobProgress, PartitionOwner, WorkerMessage};

struct Attempt {
    attempt: u64,
    cancel: CancellationToken,
    /// Records read and the pause flag, per owned source partition.
    records_in: Arc<Vec<SourceControl>>,
    records_out: Arc<AtomicU64>,
    inboxes: Vec<mpsc::UnboundedSender<Inbound>>,
}

/// See the module documentation.
pub(crate) struct JobRunner {
    registry: JobRegistry,
    /// Bounded sources read at once on this worker.
    slots: Arc<Semaphore>,
    plane: DataPlane,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    current: Option<Attempt>,
}

impl JobRunner {
    pub(crate) fn new(
        registry: JobRegistry,
        plane: DataPlane,
        reports: mpsc::UnboundedSender<WorkerMessage>,
        source_slots: usize,
    ) -> Self {
        JobRunner {
            registry,
            slots: Arc::new(Semaphore::new(source_slots.max(1))),
            plane,
            reports,
            current: None,
        }
    }

    /// The progress of the running attempt, for heartbeats.
    pub(crate) fn progress(&self) -> Option<JobProgress> {
        self.current.as_ref().map(|a| JobProgress {
            attempt: a.attempt,
            records_in: a
                .records_in
                .iter()
                .map(|c| c.records_in.load(Ordering::Relaxed))
                .sum(),
            records_out: a.records_out.load(Ordering::Relaxed),
        })
    }

    /// Starts an attempt (stopping an older one); a repeated start of the same attempt is ignored.
    pub(crate) fn start(&mut self, attempt: u64, spec: &JobSpec, owners: &[PartitionOwner]) {
        if self.current.as_ref().is_some_and(|a| a.attempt >= attempt) {
            return;
        }
        self.stop_all();
        self.plane.set_floor(attempt);
        let me = self.plane.me().clone();
        let mine: Vec<usize> = (0..owners.len()).filter(|&p| owners[p].worker == me).collect();
        let cancel = CancellationToken::new();
        let records_in = Arc::new(mine.iter().map(|_| SourceControl::default()).collect::<Vec<_>>());
        let records_out = Arc::new(AtomicU64::new(0));
        let inboxes = mine.iter().map(|&q| self.plane.inbox(attempt, q)).collect();
        self.current = Some(Attempt {
            attempt,
            cancel: cancel.clone(),
            records_in: Arc::clone(&records_in),
            records_out: Arc::clone(&records_out),
            inboxes,
        });
        let job = match self.registry.build(spec) {
            Ok(job) => job,
            Err(e) => {
                self.report_failure(attempt, None, &e);
                return;
            }
        };
        tracing::info!(attempt, job = %spec.name, partitions = ?mine, "starting job attempt");
        let launch = Launch {
            attempt,
            plan: job.plan,
            owners: owners.to_vec(),
            mine,
            plane: self.plane.clone(),
            reports: self.reports.clone(),
            slots: Arc::clone(&self.slots),
            cancel,
            records_in,
            records_out,
        };
        tokio::spawn(launch.run());
    }

    /// Stops the attempt if it is `attempt` or older.
    pub(crate) fn stop(&mut self, attempt: u64) {
        if self.current.as_ref().is_some_and(|a| a.attempt <= attempt) {
            self.stop_all();
        }
    }

    /// Stops whatever runs.
    pub(crate) fn stop_all(&mut self) {
        if let Some(current) = self.current.take() {
            tracing::info!(attempt = current.attempt, "stopping job attempt");
            current.cancel.cancel();
            for inbox in current.inboxes {
                let _ = inbox.send(Inbound::Cancel);
            }
        }
    }

    fn report_failure(&self, attempt: u64, partition: Option<usize>, error: &DataflowError) {
        report_failure(&self.reports, attempt, partition, error);
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        // The session is over: no attempt may outlive it, and the data plane goes with it.
        self.stop_all();
        self.plane.shutdown();
    }
}

fn report_failure(
    reports: &mpsc::UnboundedSender<WorkerMessage>,
    attempt: u64,
    partition: Option<usize>,
    error: &DataflowError,
) {
    tracing::warn!(attempt, ?partition, %error, "job task failed");
    let _ = reports.send(WorkerMessage::JobFailed {
        attempt,
        partition,
        error: error.to_string(),
    });
}

/// Everything an attempt's tasks need, moved into the task that starts them.
struct Launch {
    attempt: u64,
    plan: Arc<dyn ErasedPlan>,
    owners: Vec<PartitionOwner>,
    mine: Vec<usize>,
    plane: DataPlane,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    slots: Arc<Semaphore>,
    cancel: CancellationToken,
    records_in: Arc<Vec<SourceControl>>,
    records_out: Arc<AtomicU64>,
}

impl Launch {
    async fn run(self) {
        if self.mine.is_empty() {
            return;
        }
        let destinations = match self.destinations().await {
            Ok(d) => d,
            Err(e) => {
                if !self.cancel.is_cancelled() {
                    report_failure(&self.reports, self.attempt, None, &e);
                }
                return;
            }
        };
        let out = AttemptOut {
            attempt: self.attempt,
            destinations: Arc::new(destinations),
            cancel: self.cancel.clone(),
            runtime: tokio::runtime::Handle::current(),
        };
        let num_partitions = self.owners.len();
        for &q in &self.mine {
            let Some(inbox) = self.plane.take_inbox(self.attempt, q) else {
                continue;
            };
            let ctx = SinkContext {
                partition: q,
                num_partitions,
                attempt: self.attempt,
            };
            let (plan, reports, cancel, records_out) = (
                Arc::clone(&self.plan),
                self.reports.clone(),
                self.cancel.clone(),
                Arc::clone(&self.records_out),
            );
            let attempt = self.attempt;
            tokio::task::spawn_blocking(move || match receive(&*plan, ctx, inbox, &cancel) {
                Ok(Some(written)) => {
                    records_out.fetch_add(written, Ordering::Relaxed);
                    let _ = reports.send(WorkerMessage::PartitionDone {
                        attempt,
                        partition: q,
                        records_out: written,
                    });
                }
                Ok(None) => {}
                Err(_) if cancel.is_cancelled() => {}
                Err(e) => report_failure(&reports, attempt, Some(q), &e),
            });
        }
        for (task, &p) in self.mine.iter().enumerate() {
            let ctx = SourceContext {
                partition: p,
                num_partitions,
            };
            let (plan, reports, records_in, mut out) = (
                Arc::clone(&self.plan),
                self.reports.clone(),
                Arc::clone(&self.records_in),
                out.clone(),
            );
            let attempt = self.attempt;
            let (bounded, slots, runtime) = (
                self.plan.bounded(),
                Arc::clone(&self.slots),
                tokio::runtime::Handle::current(),
            );
            tokio::task::spawn_blocking(move || {
                // Bounded sources take turns for the worker's slots; unbounded ones must all run.
                let _slot = if bounded {
                    let cancel = out.cancel.clone();
                    let slot = runtime.block_on(async {
                        tokio::select! {
                            slot = slots.acquire_owned() => slot.ok(),
                            _ = cancel.cancelled() => None,
                        }
                    });
                    match slot {
                        Some(slot) => Some(slot),
                        None => return,
                    }
                } else {
                    None
                };
                let counter = &records_in[task];
                let result = plan.run_source(&ctx, SourceOffset(0), counter, &mut out);
                let read = counter.records_in.load(Ordering::Relaxed);
                let result = result.and_then(|end| match end {
                    SourceEnd::Exhausted(_) => {
                        out.end_of_stream(p)?;
                        let _ = reports.send(WorkerMessage::SourceDone {
                            attempt,
                            partition: p,
                            records_in: read,
                        });
                        Ok(())
                    }
                    SourceEnd::Stopped(_) => Ok(()),
                });
                match result {
                    Ok(()) => {}
                    Err(_) if out.cancel.is_cancelled() => {}
                    Err(e) => report_failure(&reports, attempt, Some(p), &e),
                }
            });
        }
    }

    /// Where each partition of the attempt lives, connecting to the peers that own some.
    async fn destinations(&self) -> Result<Vec<Destination>, DataflowError> {
        let me = self.plane.me().clone();
        let mut destinations = Vec::with_capacity(self.owners.len());
        let peers: BTreeSet<&str> = self
            .owners
            .iter()
            .filter(|o| o.worker != me)
            .map(|o| o.worker.as_str())
            .collect();
        let mut links = std::collections::HashMap::new();
        for owner in &self.owners {
            if owner.worker == me
                || !peers.contains(owner.worker.as_str())
                || links.contains_key(&owner.worker)
            {
                continue;
            }
            let link = tokio::select! {
                link = self.plane.connect(&owner.worker, &owner.address) => link?,
                _ = self.cancel.cancelled() => return Err(DataflowError::Cancelled),
            };
            links.insert(owner.worker.clone(), link);
        }
        for (q, owner) in self.owners.iter().enumerate() {
            destinations.push(if owner.worker == me {
                Destination::Local {
                    inbox: self.plane.inbox(self.attempt, q),
                    credits: Arc::new(Semaphore::new(CREDITS_PER_CHANNEL)),
                }
            } else {
                match links.get(&owner.worker) {
                    Some(link) => Destination::Remote(Arc::clone(link)),
                    None => {
                        return Err(DataflowError::Exchange(format!(
                            "no connection to worker {}",
                            owner.worker
                        )))
                    }
                }
            });
        }
        Ok(destinations)
    }
}

/// A receiver task: applies batches until every source partition has ended, then commits.
/// `Ok(None)` when the attempt was cancelled first.
fn receive(
    plan: &dyn ErasedPlan,
    ctx: SinkContext,
    mut inbox: mpsc::UnboundedReceiver<Inbound>,
    cancel: &CancellationToken,
) -> Result<Option<u64>, DataflowError> {
    let mut receiver = plan.open_receiver(&ctx)?;
    let mut ended: HashSet<usize> = HashSet::new();
    while let Some(message) = inbox.blocking_recv() {
        if cancel.is_cancelled() {
            return Ok(None);
        }
        match message {
            Inbound::Batch { batch, credit } => {
                receiver.on_batch(batch)?;
                credit.release();
            }
            Inbound::Eos { from } => {
                ended.insert(from);
                if ended.len() == ctx.num_partitions {
                    return receiver.finish().map(Some);
                }
            }
            Inbound::Cancel => return Ok(None),
        }
    }
    Ok(None)
}
