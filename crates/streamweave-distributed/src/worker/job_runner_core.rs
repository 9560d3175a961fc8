//! The job runner's decisions as a synchronous state machine: which attempt runs on this
//! worker, which starts are stale or repeated, which messages reach the running attempt, when
//! its tasks stop, and which task endings are failures to report. It owns no task and reads no
//! clock (nothing in it depends on time): the shell (`job_runner.rs`) feeds it
//! [`RunnerInput`]s and carries out the [`RunnerAction`]s.
//!
//! ```text
//!            Start{a > current}: Cancel{current}, Launch{a}
//!  (none) -----------------------------------------------> Running{a}
//!    ^        BuildFailed{a}: Report(JobFailed), no tasks     |  ForAttempt{a}: Forward (trigger,
//!    |        StoreFailed{a}: Report(JobFailed), runs on      |  adopt, commit epochs)
//!    |                        without checkpoints             |  TaskEnded{a, failed or died}:
//!    |                                                        |  Report(JobFailed{a, partition})
//!    +---- Stop{>= a} / StopAll (session over, coordinator ---+
//!          lost too long, shutdown, fenced): Cancel{a}
//!  Start{<= current}, messages and task endings of other attempts: ignored (a stopped attempt's
//!  tasks end with errors of their cancellation)
//! ```
//!
//! Attempt ids grow across coordinator restarts (the coordinator's epoch is folded into them),
//! so the first start from a restarted coordinator replaces the attempt its predecessor left
//! running here.

use crate::dataflow::DataflowError;
use crate::protocol::WorkerMessage;
use crate::types::WorkerId;

/// Which of an attempt's tasks owned by the runner ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AttemptTask {
    /// The command task: launch, moves, adoptions, and the source and receiver tasks it owns.
    Commands,
    /// The checkpoint actor (`checkpoint_actor.rs`).
    Checkpoints,
    /// A commit of sink epochs.
    Commit,
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TaskOutcome {
    Done,
    /// It returned this error (job code's errors and panics are caught inside as errors).
    Failed(TaskError),
}

/// A task's error as the coordinator hears it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TaskError {
    pub(crate) message: String,
    /// The peer worker it could not reach, when that is why it failed.
    pub(crate) unreachable_peer: Option<WorkerId>,
}

impl From<&DataflowError> for TaskError {
    fn from(error: &DataflowError) -> Self {
        TaskError {
            message: error.to_string(),
            unreachable_peer: error.lost_peer().cloned(),
        }
    }
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError {
            message,
            unreachable_peer: None,
        }
    }
}

impl From<&str> for TaskError {
    fn from(message: &str) -> Self {
        message.to_string().into()
    }
}

/// What happens to the job runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunnerInput {
    /// `StartJob{attempt}`; `checkpointed`: with a checkpoint plan.
    Start { attempt: u64, checkpointed: bool },
    /// The job of `attempt` could not be built: no task runs.
    BuildFailed { attempt: u64, error: String },
    /// The checkpoint store of `attempt` could not be opened: it runs without checkpoints.
    StoreFailed { attempt: u64, error: String },
    /// A message for `attempt`'s tasks (a trigger, an adoption, a commit of epochs).
    ForAttempt { attempt: u64 },
    /// `StopJob{attempt}`: stop it, or an older one.
    Stop { attempt: u64 },
    /// Stop whatever runs (the session ends, lost the coordinator too long, was shut down).
    StopAll,
    /// One of `attempt`'s tasks ended; `partition` if it was about one.
    TaskEnded {
        attempt: u64,
        task: AttemptTask,
        partition: Option<usize>,
        outcome: TaskOutcome,
    },
}

/// What the shell carries out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RunnerAction {
    /// Cancel `attempt`'s tasks and inboxes: they stop, nothing commits.
    Cancel { attempt: u64 },
    /// Build the job and start `attempt`'s tasks.
    Launch { attempt: u64 },
    /// Pass the message in hand to `attempt`'s tasks.
    Forward { attempt: u64 },
    /// Send this to the coordinator.
    Report(WorkerMessage),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Current {
    attempt: u64,
    /// Whether its tasks run (its job was built).
    running: bool,
    checkpointed: bool,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct JobRunnerCore {
    current: Option<Current>,
}

impl JobRunnerCore {
    /// The attempt this worker runs (or tried to), if any.
    pub(crate) fn current(&self) -> Option<u64> {
        self.current.as_ref().map(|c| c.attempt)
    }

    /// Whether an attempt runs with checkpoints (its partitions can move away with their state).
    pub(crate) fn carries_state(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.running && c.checkpointed)
    }

    /// Takes one input, returns what to do, in order.
    pub(crate) fn on_input(&mut self, input: RunnerInput) -> Vec<RunnerAction> {
        let mut actions = Vec::new();
        match input {
            RunnerInput::Start {
                attempt,
                checkpointed,
            } => {
                // A repeated start, or an older one that crossed a newer start.
                if self.current().is_some_and(|a| a >= attempt) {
                    return actions;
                }
                self.stop(&mut actions);
                self.current = Some(Current {
                    attempt,
                    running: true,
                    checkpointed,
                });
                actions.push(RunnerAction::Launch { attempt });
            }
            RunnerInput::BuildFailed { attempt, error } => {
                if let Some(current) = self.current.as_mut().filter(|c| c.attempt == attempt) {
                    current.running = false;
                    actions.push(failed(attempt, None, error.into()));
                }
            }
            RunnerInput::StoreFailed { attempt, error } => {
                if let Some(current) = self.current.as_mut().filter(|c| c.attempt == attempt) {
                    current.checkpointed = false;
                    actions.push(failed(attempt, None, error.into()));
                }
            }
            RunnerInput::ForAttempt { attempt } => {
                if self.running(attempt) {
                    actions.push(RunnerAction::Forward { attempt });
                }
            }
            RunnerInput::Stop { attempt } => {
                if self.current().is_some_and(|a| a <= attempt) {
                    self.stop(&mut actions);
                }
            }
            RunnerInput::StopAll => self.stop(&mut actions),
            RunnerInput::TaskEnded {
                attempt,
                task: _,
                partition,
                outcome,
            } => {
                if let (true, TaskOutcome::Failed(error)) = (self.running(attempt), outcome) {
                    actions.push(failed(attempt, partition, error));
                }
            }
        }
        actions
    }

    fn running(&self, attempt: u64) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.attempt == attempt && c.running)
    }

    fn stop(&mut self, actions: &mut Vec<RunnerAction>) {
        if let Some(current) = self.current.take() {
            actions.push(RunnerAction::Cancel {
                attempt: current.attempt,
            });
        }
    }
}

fn failed(attempt: u64, partition: Option<usize>, error: TaskError) -> RunnerAction {
    RunnerAction::Report(WorkerMessage::JobFailed {
        attempt,
        partition,
        error: error.message,
        // A task that died or an attempt that could not start: no checkpoint is blamed.
        damaged_checkpoint: None,
        unreachable_peer: error.unreachable_peer,
    })
}

#[cfg(test)]
#[path = "job_runner_core_tests.rs"]
mod tests;
