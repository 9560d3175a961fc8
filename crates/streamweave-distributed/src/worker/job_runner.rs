//! Runs the worker's share of job attempts: for every partition it owns in an attempt, a source
//! task and a receiver task on blocking threads (`job_tasks.rs`), connected through the data
//! plane. Reports go to the coordinator through the session.
//!
//! ```text
//! StartJob{attempt, spec, owners, checkpoints} -> build the job from the registry -> Launch
//! TriggerCheckpoint{id} -> sources pause at a barrier; receivers align and snapshot (checkpointing.rs)
//! CommitEpochs{upto}    -> the sinks of the owned partitions make epochs <= upto final
//! StopJob{attempt} / a newer StartJob -> cancel: tasks stop, inboxes are told, nothing commits
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::checkpointing::{AttemptCheckpoints, Checkpoints};
use super::exchange::{DataPlane, Inbound};
use super::job_tasks::{report_failure, Launch};
use crate::checkpoint::LocalDirStore;
use crate::dataflow::plan::{ErasedPlan, SourceControl};
use crate::dataflow::{DataflowError, JobRegistry, JobSpec};
use crate::protocol::{CheckpointPlan, JobProgress, PartitionOwner, WorkerMessage};

struct Attempt {
    attempt: u64,
    cancel: CancellationToken,
    mine: Vec<usize>,
    plan: Option<Arc<dyn ErasedPlan>>,
    /// Records read and the pause flag, per owned source partition.
    controls: Arc<Vec<SourceControl>>,
    records_out: Arc<AtomicU64>,
    inboxes: Vec<mpsc::UnboundedSender<Inbound>>,
    checkpoints: Checkpoints,
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
                .controls
                .iter()
                .map(|c| c.records_in.load(Ordering::Relaxed))
                .sum(),
            records_out: a.records_out.load(Ordering::Relaxed),
        })
    }

    /// Starts an attempt (stopping an older one); a repeated start of the same attempt is ignored.
    pub(crate) fn start(
        &mut self,
        attempt: u64,
        spec: &JobSpec,
        owners: &[PartitionOwner],
        checkpoint_plan: Option<&CheckpointPlan>,
    ) {
        if self.current.as_ref().is_some_and(|a| a.attempt >= attempt) {
            return;
        }
        self.stop_all();
        self.plane.set_floor(attempt);
        let me = self.plane.me().clone();
        let mine: Vec<usize> = (0..owners.len()).filter(|&p| owners[p].worker == me).collect();
        let cancel = CancellationToken::new();
        let controls = Arc::new(mine.iter().map(|_| SourceControl::default()).collect::<Vec<_>>());
        let records_out = Arc::new(AtomicU64::new(0));
        let inboxes = mine.iter().map(|&q| self.plane.inbox(attempt, q)).collect();
        let restore = checkpoint_plan.and_then(|c| c.restore.clone());
        let checkpoints = match checkpoint_plan.map(|c| self.checkpoints(attempt, c, &mine)) {
            Some(Ok(c)) => Some(Arc::new(c)),
            Some(Err(e)) => {
                report_failure(&self.reports, attempt, None, &e);
                None
            }
            None => None,
        };
        let job = self.registry.build(spec);
        self.current = Some(Attempt {
            attempt,
            cancel: cancel.clone(),
            mine: mine.clone(),
            plan: job.as_ref().ok().map(|j| Arc::clone(&j.plan)),
            controls: Arc::clone(&controls),
            records_out: Arc::clone(&records_out),
            inboxes,
            checkpoints: checkpoints.clone(),
        });
        let job = match job {
            Ok(job) => job,
            Err(e) => {
                report_failure(&self.reports, attempt, None, &e);
                return;
            }
        };
        tracing::info!(attempt, job = %spec.name, partitions = ?mine, restore = ?restore.as_ref().map(|r| r.id), "starting job attempt");
        let launch = Launch {
            attempt,
            plan: job.plan,
            owners: owners.to_vec(),
            mine,
            plane: self.plane.clone(),
            reports: self.reports.clone(),
            slots: Arc::clone(&self.slots),
            cancel,
            controls,
            records_out,
            checkpoints,
            restore,
        };
        tokio::spawn(launch.run());
    }

    fn checkpoints(
        &self,
        attempt: u64,
        plan: &CheckpointPlan,
        mine: &[usize],
    ) -> Result<AttemptCheckpoints, DataflowError> {
        let store = LocalDirStore::new(&plan.store_dir)
            .map_err(|e| DataflowError::Exchange(format!("checkpoint store {}: {e}", plan.store_dir)))?;
        let restored = plan.restore.as_ref().map_or(0, |r| r.id);
        let offsets = mine
            .iter()
            .map(|&p| {
                plan.restore
                    .as_ref()
                    .and_then(|r| r.partitions.get(p).map(|(_, o)| *o))
                    .unwrap_or(0)
            })
            .collect();
        Ok(AttemptCheckpoints::new(
            attempt,
            store,
            offsets,
            restored,
            self.reports.clone(),
        ))
    }

    /// The coordinator asks for checkpoint `id` of the running attempt.
    pub(crate) fn trigger(&self, attempt: u64, id: u64) {
        let Some(current) = self.current.as_ref().filter(|a| a.attempt == attempt) else {
            return;
        };
        if let Some(checkpoints) = &current.checkpoints {
            checkpoints.trigger(id, &current.mine, &current.controls);
        }
    }

    /// Phase two of the sinks' commit for the owned partitions; reported when done.
    pub(crate) fn commit_epochs(&self, attempt: u64, upto: u64) {
        let Some(current) = self.current.as_ref().filter(|a| a.attempt == attempt) else {
            return;
        };
        let Some(plan) = current.plan.clone() else { return };
        let (partitions, reports) = (current.mine.clone(), self.reports.clone());
        tokio::task::spawn_blocking(move || {
            for &q in &partitions {
                if let Err(e) = plan.commit_epochs(q, upto) {
                    report_failure(&reports, attempt, Some(q), &e);
                    return;
                }
            }
            let _ = reports.send(WorkerMessage::EpochsCommitted {
                attempt,
                upto,
                partitions,
            });
        });
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
            for control in current.controls.iter() {
                control.cancel.store(true, std::sync::atomic::Ordering::Release);
            }
            for inbox in current.inboxes {
                let _ = inbox.send(Inbound::Cancel);
            }
        }
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        // The session is over: no attempt may outlive it, and the data plane goes with it.
        self.stop_all();
        self.plane.shutdown();
    }
}
