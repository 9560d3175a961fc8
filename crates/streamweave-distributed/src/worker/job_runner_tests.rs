//! The runner's shell: a task it owns that dies is seen and reported as a failure of its
//! attempt, and only of the attempt that runs.

use super::*;
use crate::types::WorkerId;

async fn runner() -> (JobRunner, mpsc::UnboundedReceiver<WorkerMessage>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
    let (reports, received) = mpsc::unbounded_channel();
    (JobRunner::new(JobRegistry::new(), plane, reports, 1), received)
}

/// Pretends attempt `attempt` runs (its tasks are the test's own) with a task that panics.
fn running_with_a_dying_task(runner: &mut JobRunner, attempt: u64) {
    runner.core.on_input(RunnerInput::Start {
        attempt,
        checkpointed: false,
    });
    let id = runner
        .tasks
        .spawn(async { panic!("a bug in the worker, not the job") })
        .id();
    runner.roles.insert(id, (attempt, AttemptTask::Commands));
}

#[tokio::test]
async fn a_task_that_dies_fails_its_attempt() {
    let (mut runner, mut reports) = runner().await;
    running_with_a_dying_task(&mut runner, 3);
    let end = runner.next_ended().await;
    runner.task_ended(end);
    match reports.try_recv() {
        Ok(WorkerMessage::JobFailed {
            attempt: 3,
            partition: None,
            error,
            ..
        }) => assert!(error.contains("a bug in the worker"), "{error}"),
        other => panic!("expected the attempt's failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_task_of_a_stopped_attempt_that_dies_is_not_reported() {
    let (mut runner, mut reports) = runner().await;
    running_with_a_dying_task(&mut runner, 4);
    runner.stop(4);
    let end = runner.next_ended().await;
    runner.task_ended(end);
    assert!(reports.try_recv().is_err());
}

#[tokio::test]
async fn a_job_that_cannot_be_built_is_reported_and_runs_nothing() {
    let (mut runner, mut reports) = runner().await;
    let spec = JobSpec::new("no-such-job");
    runner.start(5, &spec, &[], None);
    match reports.try_recv() {
        Ok(WorkerMessage::JobFailed { attempt: 5, .. }) => {}
        other => panic!("expected the attempt's failure, got {other:?}"),
    }
    assert!(runner.progress().is_some_and(|p| p.attempt == 5));
    assert!(!runner.carries_state());
    assert!(runner.tasks.is_empty());
}
