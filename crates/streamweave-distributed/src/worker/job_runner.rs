//! Runs the worker's share of job attempts: for every partition it owns in an attempt, a source
//! task and a receiver task (`job_tasks.rs`), connected through the data plane. Reports go to the coordinator through the session.
//!
//! ```text
//! StartJob{attempt, spec, owners, checkpoints} -> build the job -> AttemptTasks::launch
//! TriggerCheckpoint{id, moves} -> (moves: routes to the new owners, leaving partitions marked)
//!                                 sources pause at a barrier; receivers align and snapshot
//! AdoptPartitions{checkpoint}  -> tasks of the partitions that moved here start from it
//! CommitEpochs{upto}           -> the sinks of the partitions committed here make epochs <= upto final
//! StopJob{attempt} / a newer StartJob -> cancel: tasks stop, inboxes are told, nothing commits
//! ```
//!
//! The launch, triggers and adoptions of an attempt run in order on one task of the attempt:
//! a move must have its connections and routes before its barrier is requested, and an
//! adoption must follow the move's preparation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpointing::AttemptCheckpoints;
use super::exchange::{DataPlane, RouteChanges};
use super::job_tasks::{report_failure, AttemptTasks};
use super::source_task::SourceSlots;
use crate::checkpoint::{open_store, CheckpointStore};
use crate::dataflow::plan::SourceControl;
use crate::dataflow::{DataflowError, JobRegistry, JobSpec};
use crate::protocol::{Adoption, CheckpointPlan, JobProgress, PartitionMove, PartitionOwner, WorkerMessage};
use crate::storage::StorageUrl;

/// What the attempt's task does, in order.
enum Command {
    Trigger {
        id: u64,
        moves: Vec<PartitionMove>,
    },
    Adopt {
        checkpoint: u64,
        partitions: Vec<Adoption>,
        ended: Vec<usize>,
    },
}

struct Attempt {
    attempt: u64,
    tasks: Option<Arc<AttemptTasks>>,
    commands: mpsc::UnboundedSender<Command>,
}

/// See the module documentation.
pub(crate) struct JobRunner {
    registry: JobRegistry,
    /// Bounded sources read at once on this worker.
    slots: Arc<SourceSlots>,
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
            slots: Arc::new(SourceSlots::new(source_slots)),
            plane,
            reports,
            current: None,
        }
    }

    /// The progress of the running attempt, for heartbeats.
    pub(crate) fn progress(&self) -> Option<JobProgress> {
        let current = self.current.as_ref()?;
        let (records_in, records_out) = current.tasks.as_ref().map_or((0, 0), |t| {
            (
                t.controls
                    .iter()
                    .map(|c| c.records_in.load(Ordering::Relaxed))
                    .sum(),
                t.records_out.load(Ordering::Relaxed),
            )
        });
        Some(JobProgress {
            attempt: current.attempt,
            records_in,
            records_out,
        })
    }

    /// Whether an attempt runs with checkpoints (its partitions can move away with their state).
    pub(crate) fn carries_state(&self) -> bool {
        self.current
            .as_ref()
            .and_then(|a| a.tasks.as_ref())
            .is_some_and(|t| t.checkpoints.is_some() && !t.cancel.is_cancelled())
    }

    /// Starts an attempt (stopping an older one); a repeated start of the same attempt is ignored,
    /// and so is the start of an older one (a message that crossed a newer start). Attempt ids
    /// grow across coordinator restarts (the coordinator's epoch is folded into them), so the
    /// first start from a restarted coordinator replaces the attempt its predecessor left
    /// running here.
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
        // The data plane takes records of this attempt only, from its owners, for our partitions.
        self.plane.begin_attempt(attempt, owners);
        let me = self.plane.me().clone();
        let mine: Vec<usize> = (0..owners.len()).filter(|&p| owners[p].worker == me).collect();
        let (commands, queue) = mpsc::unbounded_channel();
        // The job's constructor is user code too (panics.rs).
        let job = match super::panics::guarded(|| self.registry.build(spec)) {
            Ok(job) => job,
            Err(e) => {
                report_failure(&self.reports, attempt, None, &e);
                self.current = Some(Attempt {
                    attempt,
                    tasks: None,
                    commands,
                });
                return;
            }
        };
        // Source partitions with nothing to read: every worker computes the same set, so their
        // end-of-stream markers are neither sent nor awaited. Unknown (or unreadable): all sent.
        let empty_sources = match super::panics::guarded(|| job.plan.empty_sources(owners.len())) {
            Ok(Some(empty)) if empty.len() == owners.len() => empty,
            _ => Vec::new(),
        };
        let restore = checkpoint_plan.and_then(|c| c.restore.clone());
        let restored = restore.as_ref().map_or(0, |r| r.id);
        let offsets = restore.as_ref().map(|r| r.partitions.clone()).unwrap_or_default();
        // A restored source goes on counting from what it had read by the checkpoint.
        let controls: Arc<Vec<SourceControl>> = Arc::new(
            (0..owners.len())
                .map(|p| SourceControl {
                    records_in: AtomicU64::new(match &restore {
                        Some(r) if mine.contains(&p) => r.source_records.get(p).copied().unwrap_or(0),
                        _ => 0,
                    }),
                    ..SourceControl::default()
                })
                .collect(),
        );
        let checkpoints = match checkpoint_plan.map(|c| self.checkpoints(attempt, c, &mine, &controls)) {
            Some(Ok(c)) => Some(Arc::new(c)),
            Some(Err(e)) => {
                report_failure(&self.reports, attempt, None, &e);
                None
            }
            None => None,
        };
        let tasks = Arc::new(AttemptTasks {
            attempt,
            plan: job.plan,
            plane: self.plane.clone(),
            reports: self.reports.clone(),
            slots: Arc::clone(&self.slots),
            cancel: CancellationToken::new(),
            controls: Arc::clone(&controls),
            records_out: Arc::new(AtomicU64::new(0)),
            checkpoints,
            routes: Arc::new(RouteChanges::default()),
            owners: Mutex::new(owners.to_vec()),
            committing: Mutex::new(mine.iter().copied().collect()),
            empty_sources: Arc::new(empty_sources),
        });
        tracing::info!(attempt, job = %spec.name, partitions = ?mine, restore = restored, "starting job attempt");
        self.current = Some(Attempt {
            attempt,
            tasks: Some(Arc::clone(&tasks)),
            commands,
        });
        tokio::spawn(run_attempt(tasks, mine, restored, offsets, queue));
    }

    fn checkpoints(
        &self,
        attempt: u64,
        plan: &CheckpointPlan,
        mine: &[usize],
        controls: &Arc<Vec<SourceControl>>,
    ) -> Result<AttemptCheckpoints, DataflowError> {
        let num_partitions = controls.len();
        let store = open_attempt_store(plan)?;
        let restored = plan.restore.as_ref().map_or(0, |r| r.id);
        let start = (0..num_partitions)
            .map(|p| {
                mine.contains(&p).then(|| {
                    plan.restore
                        .as_ref()
                        .and_then(|r| r.partitions.get(p).map(|(_, o)| *o))
                        .unwrap_or(0)
                })
            })
            .collect();
        Ok(AttemptCheckpoints::new(
            attempt,
            store,
            start,
            restored,
            self.reports.clone(),
            Arc::clone(controls),
        ))
    }

    fn command(&self, attempt: u64, command: Command) {
        if let Some(current) = self.current.as_ref().filter(|a| a.attempt == attempt) {
            let _ = current.commands.send(command);
        }
    }

    /// The coordinator asks for checkpoint `id` of the running attempt, moving `moves` at it.
    pub(crate) fn trigger(&self, attempt: u64, id: u64, moves: Vec<PartitionMove>) {
        self.command(attempt, Command::Trigger { id, moves });
    }

    /// Partitions moved here through committed checkpoint `checkpoint`.
    pub(crate) fn adopt(&self, attempt: u64, checkpoint: u64, partitions: Vec<Adoption>, ended: Vec<usize>) {
        self.command(
            attempt,
            Command::Adopt {
                checkpoint,
                partitions,
                ended,
            },
        );
    }

    /// Phase two of the sinks' commit for the partitions committed here; reported when done.
    pub(crate) fn commit_epochs(&self, attempt: u64, upto: u64) {
        let Some(tasks) = self
            .current
            .as_ref()
            .filter(|a| a.attempt == attempt)
            .and_then(|a| a.tasks.clone())
        else {
            return;
        };
        let partitions: Vec<usize> = tasks
            .committing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        let reports = self.reports.clone();
        tokio::task::spawn_blocking(move || {
            if upto == u64::MAX {
                final_commit_test_delay();
            }
            for &q in &partitions {
                // The sink's commit is user code (panics.rs).
                if let Err(e) = super::panics::guarded(|| tasks.plan.commit_epochs(q, upto)) {
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
        let Some(current) = self.current.take() else {
            return;
        };
        tracing::info!(attempt = current.attempt, "stopping job attempt");
        let Some(tasks) = current.tasks else { return };
        tasks.cancel.cancel();
        for control in tasks.controls.iter() {
            control.cancel.store(true, Ordering::Release);
        }
        // Every inbox of the attempt, including those of partitions that moved here or away.
        self.plane.cancel_attempt(current.attempt);
    }
}

/// Test-only, in debug builds: `SWD_TEST_FINAL_COMMIT_DELAY_MS=N` delays this worker process's
/// first final commit (the sinks' `CommitEpochs{upto: MAX}`) by N ms, so that process tests can
/// kill the coordinator between the last `PartitionDone` and the job's end
/// (`crates/swd/tests/failover_coordinator.rs`); later ones (a restarted job's) are not delayed.
/// Release builds ignore it.
fn final_commit_test_delay() {
    #[cfg(debug_assertions)]
    {
        static DELAYED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let ms = std::env::var("SWD_TEST_FINAL_COMMIT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(ms) = ms.filter(|_| !DELAYED.swap(true, Ordering::Relaxed)) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}

/// The attempt's task: launches it, then carries out triggers and adoptions in order.
async fn run_attempt(
    tasks: Arc<AttemptTasks>,
    mine: Vec<usize>,
    restored: u64,
    restore: Vec<(String, u64)>,
    mut queue: mpsc::UnboundedReceiver<Command>,
) {
    let result = async {
        tasks.launch(&mine, restored, &restore).await?;
        loop {
            let command = tokio::select! {
                command = queue.recv() => command,
                _ = tasks.cancel.cancelled() => None,
            };
            match command {
                None => return Ok(()),
                Some(Command::Trigger { id, moves }) => {
                    if !moves.is_empty() {
                        tasks.prepare_moves(id, &moves).await?;
                    }
                    if let Some(checkpoints) = &tasks.checkpoints {
                        checkpoints.trigger(id, &tasks.controls);
                    }
                }
                Some(Command::Adopt {
                    checkpoint,
                    partitions,
                    ended,
                }) => tasks.adopt(checkpoint, &partitions, &ended),
            }
        }
    }
    .await;
    if let Err(e) = result {
        if !tasks.cancel.is_cancelled() {
            report_failure(&tasks.reports, tasks.attempt, None, &e);
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

/// Opens the checkpoint store an attempt's plan names: its URL (a plain path is a local
/// directory, as older coordinators send it; `s3://` and `memory://` are object stores).
pub(crate) fn open_attempt_store(plan: &CheckpointPlan) -> Result<Arc<dyn CheckpointStore>, DataflowError> {
    let store = StorageUrl::parse(&plan.store_dir).map_err(|e| DataflowError::InvalidJob(e.to_string()))?;
    open_store(&store)
        .map_err(|e| DataflowError::Exchange(format!("checkpoint store {}: {e}", plan.store_dir)))
}
