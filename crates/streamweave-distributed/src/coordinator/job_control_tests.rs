//! Tests of job control: attempts, restarts, failures and completion, judged by the steps it
//! returns.

use super::*;

fn control() -> (JobControl, Instant) {
    (JobControl::new(JobSpec::new("wordcount"), 2, 2), Instant::now())
}

#[test]
fn starts_when_stable_and_finishes_when_every_partition_is_done() {
    let (mut job, t) = control();
    assert_eq!(job.on_cluster(Generation(3), false, t), JobStep::Nothing);
    assert_eq!(job.on_cluster(Generation(4), true, t), JobStep::Start(1));
    assert_eq!(job.on_cluster(Generation(4), true, t), JobStep::Nothing);
    job.on_source_done(1, 0, 30);
    job.on_source_done(1, 1, 12);
    assert_eq!(job.on_partition_done(1, 0, 10, t), JobStep::Nothing);
    assert_eq!(
        job.on_partition_done(1, 0, 10, t),
        JobStep::Nothing,
        "a duplicate report counts once"
    );
    let end = t + Duration::from_millis(250);
    assert_eq!(job.on_partition_done(1, 1, 5, end), JobStep::Stop(1));
    let status = job.status(end + Duration::from_secs(9));
    assert_eq!(
        (status.state, status.records_out, status.partitions_done),
        (JobState::Finished, 15, 2)
    );
    assert_eq!(status.elapsed_ms, 250, "frozen at the end");
    assert_eq!(status.records_in, 42);
    // Nothing restarts a finished job.
    assert_eq!(job.on_cluster(Generation(9), true, end), JobStep::Nothing);
}

#[test]
fn an_assignment_change_restarts_from_the_beginning() {
    let (mut job, t) = control();
    job.on_cluster(Generation(1), true, t);
    job.on_progress(
        &WorkerId::new("w1"),
        JobProgress {
            attempt: 1,
            records_in: 7,
            records_out: 0,
            lag: None,
        },
    );
    assert_eq!(job.on_partition_done(1, 0, 4, t), JobStep::Nothing);
    assert_eq!(job.on_cluster(Generation(2), false, t), JobStep::Stop(1));
    assert_eq!(job.status(t).state, JobState::Restarting);
    assert_eq!(
        job.on_cluster(Generation(3), true, t + Duration::from_millis(700)),
        JobStep::Start(2)
    );
    let status = job.status(t);
    assert_eq!(
        status.last_recovery_ms,
        Some(700),
        "from the abort to the next start"
    );
    assert_eq!(
        (
            status.attempt,
            status.restarts,
            status.partitions_done,
            status.records_in
        ),
        (2, 1, 0, 0)
    );
    // Reports of the aborted attempt are ignored.
    assert_eq!(job.on_partition_done(1, 1, 4, t), JobStep::Nothing);
    job.on_progress(
        &WorkerId::new("w1"),
        JobProgress {
            attempt: 1,
            records_in: 99,
            records_out: 0,
            lag: Some(5),
        },
    );
    assert_eq!(job.status(t).records_in, 0);
}

#[test]
fn the_lag_is_the_sum_of_the_workers_that_can_tell_while_the_job_runs() {
    let (mut job, t) = control();
    job.on_cluster(Generation(1), true, t);
    let progress = |lag| JobProgress {
        attempt: 1,
        records_in: 10,
        records_out: 0,
        lag,
    };
    assert_eq!(job.status(t).lag, None, "no worker reported yet");
    job.on_progress(&WorkerId::new("w1"), progress(Some(300)));
    job.on_progress(&WorkerId::new("w2"), progress(None));
    assert_eq!(
        job.status(t).lag,
        Some(300),
        "a worker that cannot tell adds nothing"
    );
    job.on_progress(&WorkerId::new("w2"), progress(Some(45)));
    assert_eq!(job.status(t).lag, Some(345));
    job.on_progress(&WorkerId::new("w1"), progress(Some(0)));
    assert_eq!(
        job.status(t).lag,
        Some(45),
        "a worker's newer report replaces its older one"
    );
    assert_eq!(job.on_cluster(Generation(2), false, t), JobStep::Stop(1));
    assert_eq!(job.status(t).lag, None, "no lag while the job is not running");
}

#[test]
fn a_failed_task_delays_the_next_attempt_more_each_time() {
    let (_, t) = control();
    let mut job = JobControl::new(JobSpec::new("wordcount"), 2, 10);
    job.on_cluster(Generation(1), true, t);
    assert_eq!(
        job.on_failure(1, "peer unreachable".to_string(), t),
        JobStep::Stop(1)
    );
    // Still stable (the dead peer is not declared failed yet): wait 100 ms anyway.
    assert_eq!(
        job.on_cluster(Generation(1), true, t + Duration::from_millis(99)),
        JobStep::Nothing
    );
    let t2 = t + Duration::from_millis(100);
    assert_eq!(job.on_cluster(Generation(1), true, t2), JobStep::Start(2));
    assert_eq!(job.on_failure(2, "again".to_string(), t2), JobStep::Stop(2));
    assert_eq!(
        job.on_cluster(Generation(1), true, t2 + Duration::from_millis(199)),
        JobStep::Nothing
    );
    assert_eq!(
        job.on_cluster(Generation(1), true, t2 + Duration::from_millis(200)),
        JobStep::Start(3)
    );
    assert_eq!(job.on_failure(3, "and again".to_string(), t2), JobStep::Stop(3));
    // The failed peer was removed (a new generation): no need to wait out the 400 ms.
    assert_eq!(
        job.on_cluster(Generation(2), true, t2 + Duration::from_millis(1)),
        JobStep::Start(4)
    );
    assert_eq!(restart_delay(20), Duration::from_secs(5));
}

#[test]
fn too_many_failures_fail_the_job() {
    let (mut job, t) = control();
    let mut now = t;
    for attempt in 1..=3 {
        assert_eq!(
            job.on_cluster(Generation(attempt), true, now),
            JobStep::Start(attempt)
        );
        assert_eq!(
            job.on_failure(attempt, format!("boom {attempt}"), now),
            JobStep::Stop(attempt)
        );
        now += Duration::from_secs(10);
    }
    let status = job.status(t);
    assert_eq!(status.state, JobState::Failed);
    assert_eq!(status.error.as_deref(), Some("boom 3"));
    assert_eq!(status.restarts, 2, "the failure that ended it restarted nothing");
    assert_eq!(job.on_cluster(Generation(9), true, t), JobStep::Nothing);
}

/// Starts the next attempt (long after any backoff) and fails its task; returns the state.
fn start_and_fail(job: &mut JobControl, now: &mut Instant) -> JobState {
    *now += Duration::from_secs(10);
    let JobStep::Start(attempt) = job.on_cluster(Generation(1), true, *now) else {
        panic!("no attempt started: {:?}", job.status(*now));
    };
    assert_eq!(
        job.on_task_failed(attempt, &WorkerId::new("w2"), Some(3), "panicked: poison", *now),
        JobStep::Stop(attempt)
    );
    job.state()
}

#[test]
fn a_completed_checkpoint_resets_the_restarts_in_a_row() {
    let t = Instant::now();
    let mut job = JobControl::new(JobSpec::new("wordcount"), 2, 2);
    let mut now = t;
    // A long job that checkpoints between crashes never runs out of restarts.
    for round in 1..=5 {
        assert_eq!(
            start_and_fail(&mut job, &mut now),
            JobState::Restarting,
            "round {round}"
        );
        assert_eq!(
            start_and_fail(&mut job, &mut now),
            JobState::Restarting,
            "round {round}"
        );
        job.on_checkpoint_completed();
    }
    assert_eq!(job.status(now).restarts, 10);
    // Then a record that fails every attempt: two restarts in a row, the third failure ends it.
    assert_eq!(start_and_fail(&mut job, &mut now), JobState::Restarting);
    assert_eq!(start_and_fail(&mut job, &mut now), JobState::Restarting);
    assert_eq!(start_and_fail(&mut job, &mut now), JobState::Failed);
    let status = job.status(now);
    assert_eq!(status.restarts, 12);
    assert_eq!(
        status.error.as_deref(),
        Some("partition 3 on worker w2: panicked: poison")
    );
    assert_eq!(job.on_cluster(Generation(2), true, now), JobStep::Nothing);
}

#[test]
fn a_completed_checkpoint_resets_the_backoff() {
    let t = Instant::now();
    let mut job = JobControl::new(JobSpec::new("wordcount"), 2, 10);
    assert_eq!(job.on_cluster(Generation(1), true, t), JobStep::Start(1));
    job.on_failure(1, "one".to_string(), t);
    let t2 = t + Duration::from_millis(100);
    assert_eq!(job.on_cluster(Generation(1), true, t2), JobStep::Start(2));
    job.on_failure(2, "two".to_string(), t2);
    // The second failure in a row waits 200 ms; after a completed checkpoint, 100 ms again.
    let t3 = t2 + Duration::from_millis(200);
    assert_eq!(job.on_cluster(Generation(1), true, t3), JobStep::Start(3));
    job.on_checkpoint_completed();
    job.on_failure(3, "three".to_string(), t3);
    assert_eq!(
        job.on_cluster(Generation(1), true, t3 + Duration::from_millis(100)),
        JobStep::Start(4)
    );
}

#[test]
fn with_no_restarts_allowed_the_first_failure_fails_the_job() {
    let t = Instant::now();
    let mut job = JobControl::new(JobSpec::new("wordcount"), 2, 0);
    assert_eq!(job.on_cluster(Generation(1), true, t), JobStep::Start(1));
    assert_eq!(
        job.on_task_failed(1, &WorkerId::new("w1"), None, "invalid job: no input", t),
        JobStep::Stop(1)
    );
    let status = job.status(t);
    assert_eq!((status.state, status.restarts), (JobState::Failed, 0));
    assert_eq!(status.error.as_deref(), Some("worker w1: invalid job: no input"));
}

#[test]
fn a_task_failure_names_the_partition_and_the_worker() {
    let w2 = WorkerId::new("w2");
    assert_eq!(
        task_failure(&w2, Some(3), "panicked: poison record"),
        "partition 3 on worker w2: panicked: poison record"
    );
    assert_eq!(
        task_failure(&w2, None, "exchange: gone"),
        "worker w2: exchange: gone"
    );
}

#[test]
fn a_stop_waits_until_every_sink_committed_the_final_checkpoint() {
    let (mut job, t) = control();
    let mut job_with_commits = JobControl::new(JobSpec::new("wordcount"), 2, 2).with_final_commit(true);
    for j in [&mut job, &mut job_with_commits] {
        assert_eq!(j.on_cluster(Generation(1), true, t), JobStep::Start(1));
        j.request_stop(7);
        // Older epochs, another attempt, one partition only: still running.
        assert_eq!(j.on_epochs_committed(1, 6, &[0, 1], t), JobStep::Nothing);
        assert_eq!(j.on_epochs_committed(0, 7, &[0, 1], t), JobStep::Nothing);
        assert_eq!(j.on_epochs_committed(1, 7, &[0], t), JobStep::Nothing);
        assert_eq!(j.state(), JobState::Running);
        // The other partition's sink reaches the checkpoint (a later one counts too).
        assert_eq!(j.on_epochs_committed(1, 8, &[1], t), JobStep::Stop(1));
        assert_eq!(j.state(), JobState::Stopped);
        // A stopped job never restarts.
        assert_eq!(j.on_cluster(Generation(2), true, t), JobStep::Nothing);
    }
}

#[test]
fn a_restart_abandons_a_stop_and_without_checkpoints_it_stops_at_once() {
    let (mut job, t) = control();
    job.on_cluster(Generation(1), true, t);
    job.request_stop(3);
    assert_eq!(job.on_cluster(Generation(2), false, t), JobStep::Stop(1));
    assert_eq!(
        job.on_cluster(Generation(3), true, t + Duration::from_secs(1)),
        JobStep::Start(2)
    );
    assert_eq!(
        job.on_epochs_committed(2, 3, &[0, 1], t),
        JobStep::Nothing,
        "the stop belonged to the aborted attempt: the asker asks again"
    );
    assert_eq!(job.stop_now(t), JobStep::Stop(2));
    assert_eq!(job.status(t).state, JobState::Stopped);
    assert_eq!(job.stop_now(t), JobStep::Nothing, "stopping twice does nothing");
}
