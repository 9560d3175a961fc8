//! Runs the worker's share of job attempts, as a thin shell around
//! [`JobRunnerCore`](super::job_runner_core::JobRunnerCore): for every partition it owns in an
//! attempt, a source task and a receiver task (`job_tasks.rs`), connected through the data
//! plane. Reports go to the coordinator through the session.
//!
//! ```text
//! StartJob{attempt, spec, owners, checkpoints} -> core: Launch -> build the job, open the store,
//!                                 spawn the command task and the checkpoint actor
//! TriggerCheckpoint{id, moves} -> command task: (moves: routes to the new owners, leaving
//!                                 partitions marked) then the checkpoint actor: sources pause
//!                                 at a barrier; receivers align and snapshot
//! AdoptPartitions{checkpoint}  -> the partitions join those whose epochs commit here, then
//!                                 command task: tasks of the partitions that moved here start
//! CommitEpochs{upto}           -> a commit task: the sinks of the partitions committed here
//! StopJob{attempt} / a newer StartJob / StopAll -> core: Cancel -> tasks stop, inboxes are told
//! a task of the runner ends    -> core: TaskEnded -> JobFailed if it failed or died (the session
//!                                 polls next_ended)
//! ```
//!
//! The runner owns its tasks in a `JoinSet`: the command task of each attempt (which owns the
//! attempt's source and receiver tasks in its own), the checkpoint actor, the commits. The
//! launch, triggers and adoptions of an attempt run in order on its command task: a move must
//! have its connections and routes before its barrier is requested, and an adoption must follow
//! the move's preparation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

use super::attempt_commands::{run_commands, Command, Ended};
use super::checkpoint_actor::{CheckpointActor, CheckpointHandle};
use super::checkpointing::AttemptCheckpoints;
use super::exchange::{DataPlane, RouteChanges};
use super::job_runner_core::{AttemptTask, JobRunnerCore, RunnerAction, RunnerInput, TaskOutcome};
use super::job_tasks::{AttemptRun, AttemptTasks};
use super::local_states::{self, Kept, LocalStates};
use super::source_task::SourceSlots;
use crate::checkpoint::{open_store, CheckpointStore};
use crate::dataflow::plan::SourceControl;
use crate::dataflow::{state, DataflowError, JobRegistry, JobSpec};
use crate::observe::WorkerMetrics;
use crate::protocol::{Adoption, CheckpointPlan, JobProgress, PartitionMove, PartitionOwner};
use crate::protocol::{Preload, WorkerMessage};
use crate::storage::StorageUrl;

/// Opens the checkpoint store an attempt's plan names: its URL (a plain path is a local
/// directory, as older coordinators send it; `s3://` and `memory://` are object stores). The one
/// place that decides what kind of store an attempt writes to.
pub(crate) fn open_attempt_store(plan: &CheckpointPlan) -> Result<Arc<dyn CheckpointStore>, DataflowError> {
    let store = StorageUrl::parse(&plan.store_dir).map_err(|e| DataflowError::InvalidJob(e.to_string()))?;
    open_store(&store)
        .map_err(|e| DataflowError::Exchange(format!("checkpoint store {}: {e}", plan.store_dir)))
}

/// Frees kept partition states on a blocking thread (a large state takes a while to free).
fn free_kept(kept: Vec<Kept>) {
    if kept.is_empty() {
        return;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(kept))),
        Err(_) => drop(kept),
    }
}

/// The shell's side of the current attempt (the core knows which one it is).
struct Attempt {
    tasks: Arc<AttemptTasks>,
    commands: mpsc::UnboundedSender<Command>,
}

/// A task of the runner that ended, for [`JobRunner::task_ended`].
pub(crate) struct TaskEnd {
    attempt: u64,
    task: AttemptTask,
    joined: Result<Ended, tokio::task::JoinError>,
}

/// See the module documentation.
pub(crate) struct JobRunner {
    registry: JobRegistry,
    /// Bounded sources read at once on this worker.
    slots: Arc<SourceSlots>,
    plane: DataPlane,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    core: JobRunnerCore,
    current: Option<Attempt>,
    tasks: JoinSet<Ended>,
    /// The attempt and kind of each task.
    roles: HashMap<Id, (u64, AttemptTask)>,
    metrics: WorkerMetrics,
    /// Where a job on the disk state backend keeps its database (none: a temporary directory).
    state_dir: Option<std::path::PathBuf>,
    /// The partition states attempts left, for the next attempt (`local_states.rs`).
    local: Arc<LocalStates>,
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
            core: JobRunnerCore::default(),
            current: None,
            tasks: JoinSet::new(),
            roles: HashMap::new(),
            metrics: WorkerMetrics::default(),
            state_dir: None,
            local: Arc::default(),
        }
    }

    /// Counts this worker's records and credit waits into `metrics`.
    pub(crate) fn with_metrics(mut self, metrics: WorkerMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Where jobs on the disk state backend keep their databases.
    pub(crate) fn with_state_dir(mut self, dir: Option<std::path::PathBuf>) -> Self {
        self.state_dir = dir;
        self
    }

    /// The progress of the running attempt, for heartbeats.
    pub(crate) fn progress(&self) -> Option<JobProgress> {
        let attempt = self.core.current()?;
        let (records_in, records_out, lag) = self.current.as_ref().map_or((0, 0, None), |a| {
            let t = &a.tasks;
            let lags = t.controls.iter().filter_map(|c| c.lag());
            (
                t.controls
                    .iter()
                    .map(|c| c.records_in.load(Ordering::Relaxed))
                    .sum(),
                t.records_out.load(Ordering::Relaxed),
                lags.reduce(u64::saturating_add),
            )
        });
        Some(JobProgress {
            attempt,
            records_in,
            records_out,
            lag,
        })
    }

    /// Whether an attempt runs with checkpoints (its partitions can move away with their state).
    pub(crate) fn carries_state(&self) -> bool {
        self.core.carries_state()
    }

    /// Feeds the core and carries out its actions; `launch` and `forward` carry out the ones
    /// that need the message in hand.
    fn run(
        &mut self,
        input: RunnerInput,
        mut launch: impl FnMut(&mut Self, u64),
        mut forward: impl FnMut(&mut Self, u64),
    ) {
        for action in self.core.on_input(input) {
            match action {
                RunnerAction::Cancel { attempt } => self.cancel(attempt),
                RunnerAction::Launch { attempt } => launch(self, attempt),
                RunnerAction::Forward { attempt } => forward(self, attempt),
                RunnerAction::Report(message) => {
                    if let WorkerMessage::JobFailed {
                        attempt,
                        partition,
                        error,
                        ..
                    } = &message
                    {
                        tracing::warn!(attempt, ?partition, %error, "job task failed");
                    }
                    let _ = self.reports.send(message);
                }
            }
        }
    }

    fn input(&mut self, input: RunnerInput) {
        self.run(input, |_, _| {}, |_, _| {});
    }

    /// Starts an attempt (stopping an older one); see the core for stale and repeated starts.
    pub(crate) fn start(
        &mut self,
        attempt: u64,
        spec: &JobSpec,
        owners: &[PartitionOwner],
        checkpoint_plan: Option<&CheckpointPlan>,
    ) {
        let input = RunnerInput::Start {
            attempt,
            checkpointed: checkpoint_plan.is_some(),
        };
        self.run(
            input,
            |runner, attempt| runner.launch(attempt, spec, owners, checkpoint_plan),
            |_, _| {},
        );
    }

    fn launch(
        &mut self,
        attempt: u64,
        spec: &JobSpec,
        owners: &[PartitionOwner],
        checkpoint_plan: Option<&CheckpointPlan>,
    ) {
        self.plane.set_floor(attempt);
        // The data plane takes records of this attempt only, from its owners, for our partitions.
        self.plane.begin_attempt(attempt, owners);
        let me = self.plane.me().clone();
        let mine: Vec<usize> = (0..owners.len()).filter(|&p| owners[p].worker == me).collect();
        // The job's constructor is user code too (panics.rs).
        let (dir, worker) = (self.state_dir.as_deref(), me.to_string());
        let built = super::panics::guarded(|| self.registry.build(spec));
        let plan = built.and_then(|job| state::attempt_plan(job.plan, spec, dir, &worker, attempt));
        let plan = match plan {
            Ok(plan) => plan,
            Err(e) => {
                let error = e.to_string();
                return self.input(RunnerInput::BuildFailed { attempt, error });
            }
        };
        // Source partitions with nothing to read: every worker computes the same set, so their
        // end-of-stream markers are neither sent nor awaited. Unknown (or unreadable): all sent.
        let empty_sources = match super::panics::guarded(|| plan.empty_sources(owners.len())) {
            Ok(Some(empty)) if empty.len() == owners.len() => empty,
            _ => Vec::new(),
        };
        let restore = checkpoint_plan.and_then(|c| c.restore.clone());
        // States kept by earlier attempts serve only an attempt that restores a checkpoint.
        let wanted = if restore.is_some() { &mine[..] } else { &[] };
        free_kept(self.local.started(attempt, &spec.name, wanted));
        let restored = restore.as_ref().map_or(0, |r| r.id);
        let offsets = restore.as_ref().map(|r| r.partitions.clone()).unwrap_or_default();
        // A restored source goes on counting from what it had read by the checkpoint.
        let records = |p: usize| match &restore {
            Some(r) if mine.contains(&p) => r.source_records.get(p).copied().unwrap_or(0),
            _ => 0,
        };
        let controls: Arc<Vec<SourceControl>> = Arc::new(
            (0..owners.len())
                .map(|p| SourceControl {
                    records_in: AtomicU64::new(records(p)),
                    records_in_total: self.metrics.records_in(&spec.name, p),
                    ..SourceControl::default()
                })
                .collect(),
        );
        let cancel = CancellationToken::new();
        let checkpoints = match checkpoint_plan.map(open_attempt_store) {
            Some(Ok(store)) => {
                let start = (0..owners.len())
                    .map(|p| {
                        let offset = offsets.get(p).map_or(0, |(_, o)| *o);
                        mine.contains(&p).then_some((offset, records(p)))
                    })
                    .collect();
                Some(self.spawn_checkpoints(attempt, start, restored, store, &controls, &cancel))
            }
            Some(Err(e)) => {
                self.input(RunnerInput::StoreFailed {
                    attempt,
                    error: e.to_string(),
                });
                None
            }
            None => None,
        };
        let tasks = Arc::new(AttemptTasks {
            attempt,
            plan,
            plane: self.plane.clone(),
            reports: self.reports.clone(),
            slots: Arc::clone(&self.slots),
            cancel,
            controls,
            records_out: Arc::new(AtomicU64::new(0)),
            checkpoints,
            routes: Arc::new(RouteChanges::default()),
            committing: Mutex::new(mine.iter().copied().collect()),
            empty_sources: Arc::new(empty_sources),
            job_name: spec.name.clone(),
            metrics: self.metrics.clone(),
            preloaded: Arc::default(),
            delta_barriers: Arc::default(),
            local: Arc::clone(&self.local),
        });
        self.metrics.attempt_started();
        tracing::info!(attempt, job = %spec.name, partitions = ?mine, restore = restored, "starting job attempt");
        let (commands, queue) = mpsc::unbounded_channel();
        self.current = Some(Attempt {
            tasks: Arc::clone(&tasks),
            commands,
        });
        let run = AttemptRun::new(tasks, owners.to_vec());
        let id = self
            .tasks
            .spawn(run_commands(run, mine, restored, offsets, queue))
            .id();
        self.roles.insert(id, (attempt, AttemptTask::Commands));
    }

    /// Starts the attempt's checkpoint actor; the handle reaches it.
    fn spawn_checkpoints(
        &mut self,
        attempt: u64,
        start: Vec<Option<(u64, u64)>>,
        restored: u64,
        store: Arc<dyn CheckpointStore>,
        controls: &Arc<Vec<SourceControl>>,
        cancel: &CancellationToken,
    ) -> CheckpointHandle {
        let core = AttemptCheckpoints::new(attempt, start, restored);
        let (actor, handle) = CheckpointActor::new(core, store, Arc::clone(controls), self.reports.clone());
        let cancel = cancel.clone();
        let task = async move {
            actor.run(cancel).await;
            Ended::of(Ok(()))
        };
        let id = self.tasks.spawn(task).id();
        self.roles.insert(id, (attempt, AttemptTask::Checkpoints));
        handle
    }

    fn command(&mut self, attempt: u64, command: Command) {
        self.command_after(attempt, command, |_| {});
    }

    /// [`JobRunner::command`], with `before` done on the attempt's tasks as the command is
    /// queued (not when the command task gets to it).
    fn command_after(&mut self, attempt: u64, command: Command, before: impl FnOnce(&AttemptTasks)) {
        let mut queued = Some((command, before));
        self.run(
            RunnerInput::ForAttempt { attempt },
            |_, _| {},
            |runner, _| {
                if let (Some(current), Some((command, before))) = (&runner.current, queued.take()) {
                    before(&current.tasks);
                    let _ = current.commands.send(command);
                }
            },
        );
    }

    /// The coordinator asks for checkpoint `id` of the running attempt, moving `moves` at it.
    pub(crate) fn trigger(
        &mut self,
        attempt: u64,
        id: u64,
        moves: Vec<PartitionMove>,
        keep_chains: Vec<usize>,
    ) {
        self.command(
            attempt,
            Command::Trigger {
                id,
                moves,
                keep_chains,
            },
        );
    }

    /// Partitions moved here through checkpoint `checkpoint` (stored, perhaps not committed
    /// yet). They join the partitions whose sink epochs this worker commits at once, before the
    /// command task starts them: the CommitEpochs of `checkpoint` may follow this message
    /// before the command is carried out, and the old owner stopped committing them at the
    /// move's barrier.
    pub(crate) fn adopt(
        &mut self,
        attempt: u64,
        checkpoint: u64,
        partitions: Vec<Adoption>,
        ended: Vec<usize>,
    ) {
        let moved: Vec<usize> = partitions.iter().map(|a| a.partition).collect();
        let command = Command::Adopt {
            checkpoint,
            partitions,
            ended,
        };
        self.command_after(attempt, command, |tasks| tasks.commit_here(&moved));
    }

    /// Partitions about to move here: load their state from committed checkpoint `checkpoint`.
    pub(crate) fn prepare(&mut self, attempt: u64, checkpoint: u64, partitions: Vec<Preload>) {
        let command = Command::Prepare {
            checkpoint,
            partitions,
        };
        self.command(attempt, command);
    }

    /// Phase two of the sinks' commit for the partitions committed here; reported when done.
    pub(crate) fn commit_epochs(&mut self, attempt: u64, upto: u64) {
        self.run(
            RunnerInput::ForAttempt { attempt },
            |_, _| {},
            |runner, attempt| runner.spawn_commit(attempt, upto),
        );
    }

    fn spawn_commit(&mut self, attempt: u64, upto: u64) {
        let Some(tasks) = self.current.as_ref().map(|a| Arc::clone(&a.tasks)) else {
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
        let id = self
            .tasks
            .spawn_blocking(move || {
                if let Err(failure) = super::epoch_commit::commit(tasks.plan.as_ref(), &partitions, upto) {
                    return Ended::of(Err(*failure));
                }
                let _ = reports.send(WorkerMessage::EpochsCommitted {
                    attempt,
                    upto,
                    partitions,
                });
                Ended::of(Ok(()))
            })
            .id();
        self.roles.insert(id, (attempt, AttemptTask::Commit));
    }

    /// Stops the attempt if it is `attempt` or older. Its partitions' states stay a while
    /// for the attempt that may follow (a restart stops the failed attempt first).
    pub(crate) fn stop(&mut self, attempt: u64) {
        self.input(RunnerInput::Stop { attempt });
        let local = Arc::clone(&self.local);
        tokio::spawn(async move {
            tokio::time::sleep(local_states::KEEP_FOR).await;
            free_kept(local.expire(attempt));
        });
    }

    /// Stops whatever runs, for good (the worker leaves).
    pub(crate) fn stop_all(&mut self) {
        self.input(RunnerInput::StopAll);
        free_kept(self.local.clear());
    }

    fn cancel(&mut self, attempt: u64) {
        tracing::info!(attempt, "stopping job attempt");
        let Some(current) = self.current.take() else {
            return;
        };
        let tasks = current.tasks;
        tasks.cancel.cancel();
        for control in tasks.controls.iter() {
            control.cancel.store(true, Ordering::Release);
        }
        // Every inbox of the attempt, including those of partitions that moved here or away.
        self.plane.cancel_attempt(attempt);
    }

    /// The next task of the runner to end; never while none runs.
    pub(crate) async fn next_ended(&mut self) -> TaskEnd {
        let Some(joined) = self.tasks.join_next_with_id().await else {
            return std::future::pending().await;
        };
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        // Every task is spawned with its role; attempt 0 never runs, so a missing one is ignored.
        let (attempt, task) = self.roles.remove(&id).unwrap_or((0, AttemptTask::Commands));
        TaskEnd {
            attempt,
            task,
            joined: joined.map(|(_, ended)| ended),
        }
    }

    /// A task of the runner ended: the core decides whether it failed the attempt.
    pub(crate) fn task_ended(&mut self, end: TaskEnd) {
        let (partition, outcome, keep) = match end.joined {
            Ok(Ended { result: Ok(()), keep }) => (None, TaskOutcome::Done, keep),
            Ok(Ended {
                result: Err(died),
                keep,
            }) => (died.partition, TaskOutcome::Failed((&died.error).into()), keep),
            Err(e) if e.is_panic() => {
                let error = super::panics::panicked(e.into_panic());
                (None, TaskOutcome::Failed((&error).into()), None)
            }
            Err(_) => (None, TaskOutcome::Failed("the task was aborted".into()), None),
        };
        self.input(RunnerInput::TaskEnded {
            attempt: end.attempt,
            task: end.task,
            partition,
            outcome,
        });
        // A failed attempt's tasks go only now, after the report.
        drop(keep);
    }
}

impl Drop for JobRunner {
    fn drop(&mut self) {
        // The session is over: no attempt may outlive it, and the data plane goes with it.
        self.stop_all();
        self.plane.shutdown();
    }
}

#[cfg(test)]
#[path = "job_runner_tests.rs"]
mod tests;
