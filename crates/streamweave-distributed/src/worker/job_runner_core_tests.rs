//! The job runner's core, tested by the actions it emits: no tasks, no sockets.

use super::*;
use RunnerAction::{Cancel, Forward, Launch};
use RunnerInput::*;

fn start(attempt: u64) -> RunnerInput {
    Start {
        attempt,
        checkpointed: true,
    }
}

fn job_failed(attempt: u64, partition: Option<usize>, error: &str) -> RunnerAction {
    RunnerAction::Report(WorkerMessage::JobFailed {
        damaged_checkpoint: None,
        unreachable_peer: None,
        attempt,
        partition,
        error: error.to_string(),
    })
}

fn ended(attempt: u64, task: AttemptTask, partition: Option<usize>, outcome: TaskOutcome) -> RunnerInput {
    TaskEnded {
        attempt,
        task,
        partition,
        outcome,
    }
}

#[test]
fn a_newer_start_supersedes_the_running_attempt_and_stale_or_repeated_ones_are_ignored() {
    let mut core = JobRunnerCore::default();
    assert_eq!(core.on_input(start(3)), vec![Launch { attempt: 3 }]);
    assert!(core.carries_state());
    // Repeated, then older (crossed the newer start on the way).
    assert!(core.on_input(start(3)).is_empty());
    assert!(core.on_input(start(2)).is_empty());
    // A restarted coordinator's first attempt is numbered above every earlier one.
    let restarted = 2_000_000_001;
    assert_eq!(
        core.on_input(start(restarted)),
        vec![Cancel { attempt: 3 }, Launch { attempt: restarted }]
    );
    assert_eq!(core.current(), Some(restarted));
}

#[test]
fn messages_reach_only_the_running_attempt() {
    let mut core = JobRunnerCore::default();
    assert!(core.on_input(ForAttempt { attempt: 1 }).is_empty());
    core.on_input(start(4));
    assert_eq!(
        core.on_input(ForAttempt { attempt: 4 }),
        vec![Forward { attempt: 4 }]
    );
    assert!(core.on_input(ForAttempt { attempt: 3 }).is_empty());
    assert!(core.on_input(ForAttempt { attempt: 5 }).is_empty());
}

#[test]
fn a_stop_ends_that_attempt_or_an_older_one_never_a_newer_one() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(5));
    assert!(core.on_input(Stop { attempt: 4 }).is_empty());
    assert_eq!(core.on_input(Stop { attempt: 5 }), vec![Cancel { attempt: 5 }]);
    assert_eq!(core.current(), None);
    assert!(core.on_input(Stop { attempt: 5 }).is_empty());
    // A stop crossing the next start is for the older attempt.
    core.on_input(start(7));
    assert_eq!(core.on_input(Stop { attempt: 9 }), vec![Cancel { attempt: 7 }]);
}

#[test]
fn a_lost_coordinator_stops_the_attempt_and_its_late_task_endings_are_not_failures() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(2));
    assert_eq!(core.on_input(StopAll), vec![Cancel { attempt: 2 }]);
    assert!(!core.carries_state());
    // Its tasks end with the errors of their cancellation.
    let late = ended(
        2,
        AttemptTask::Commands,
        None,
        TaskOutcome::Failed("cancelled".into()),
    );
    assert!(core.on_input(late).is_empty());
    assert!(core.on_input(StopAll).is_empty());
}

#[test]
fn a_task_that_fails_or_dies_fails_the_attempt_with_its_partition() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(6));
    let died = ended(
        6,
        AttemptTask::Commands,
        Some(3),
        TaskOutcome::Failed("panicked: index out of bounds".into()),
    );
    assert_eq!(
        core.on_input(died),
        vec![job_failed(6, Some(3), "panicked: index out of bounds")]
    );
    let actor = ended(
        6,
        AttemptTask::Checkpoints,
        None,
        TaskOutcome::Failed("gone".into()),
    );
    assert_eq!(core.on_input(actor), vec![job_failed(6, None, "gone")]);
    // Ending normally is no failure; a task of a superseded attempt is not reported.
    assert!(core
        .on_input(ended(6, AttemptTask::Commit, None, TaskOutcome::Done))
        .is_empty());
    core.on_input(start(7));
    let old = ended(
        6,
        AttemptTask::Commit,
        Some(1),
        TaskOutcome::Failed("sink".into()),
    );
    assert!(core.on_input(old).is_empty());
}

#[test]
fn a_job_that_cannot_be_built_reports_once_and_runs_nothing() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(8));
    assert_eq!(
        core.on_input(BuildFailed {
            attempt: 8,
            error: "no such job".into()
        }),
        vec![job_failed(8, None, "no such job")]
    );
    assert!(!core.carries_state());
    assert!(core.on_input(ForAttempt { attempt: 8 }).is_empty());
    // It is still the current attempt: a repeated start does not build it again, a stop ends it.
    assert!(core.on_input(start(8)).is_empty());
    assert_eq!(core.on_input(Stop { attempt: 8 }), vec![Cancel { attempt: 8 }]);
}

#[test]
fn an_attempt_whose_store_cannot_open_runs_on_without_carrying_state() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(9));
    let actions = core.on_input(StoreFailed {
        attempt: 9,
        error: "checkpoint store".into(),
    });
    assert_eq!(actions, vec![job_failed(9, None, "checkpoint store")]);
    assert!(!core.carries_state());
    assert_eq!(
        core.on_input(ForAttempt { attempt: 9 }),
        vec![Forward { attempt: 9 }]
    );
    // Without a checkpoint plan an attempt never carries state.
    let mut plain = JobRunnerCore::default();
    plain.on_input(Start {
        attempt: 1,
        checkpointed: false,
    });
    assert!(!plain.carries_state());
}

#[test]
fn a_task_that_lost_a_peer_names_it_to_the_coordinator() {
    let mut core = JobRunnerCore::default();
    core.on_input(start(6));
    let lost = DataflowError::PeerLost {
        peer: WorkerId::new("w3"),
        reason: "the connection to worker w3 closed".to_string(),
    };
    let out = core.on_input(ended(
        6,
        AttemptTask::Commands,
        Some(2),
        TaskOutcome::Failed((&lost).into()),
    ));
    assert_eq!(
        out,
        vec![RunnerAction::Report(WorkerMessage::JobFailed {
            attempt: 6,
            partition: Some(2),
            error: "exchange: the connection to worker w3 closed".to_string(),
            damaged_checkpoint: None,
            unreachable_peer: Some(WorkerId::new("w3")),
        })]
    );
}
