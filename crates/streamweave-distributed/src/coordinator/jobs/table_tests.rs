use std::path::Path;
use std::time::{Duration, Instant};

use super::*;
use crate::protocol::{JobState, JobStatus, SubmittedJobState as S};

fn status(state: JobState, restarts: u64, records_out: u64) -> JobStatus {
    JobStatus {
        name: "wordcount".into(),
        state,
        attempt: 1,
        restarts,
        records_in: 10,
        records_out,
        lag: None,
        partitions_done: 0,
        elapsed_ms: 0,
        error: None,
        last_restored_checkpoint: None,
        last_recovery_ms: None,
        output: None,
    }
}

fn state(table: &JobTable, id: &str) -> S {
    table
        .list()
        .into_iter()
        .find(|j| j.id == id)
        .map(|j| j.state)
        .unwrap()
}

#[test]
fn ids_are_short_and_printable() {
    assert_eq!(job_id(0xab), "j-000000ab");
    assert_eq!(job_id(u32::MAX), "j-ffffffff");
}

#[test]
fn a_job_follows_its_master_to_the_end_and_its_master_goes_after_the_grace() {
    let now = Instant::now();
    let mut table = JobTable::default();
    table.submit("j-1", "wordcount", Some("/out".into()), None);
    assert!(table.contains("j-1"));
    assert_eq!(state(&table, "j-1"), S::Starting);
    assert_eq!(table.list()[0].master_port, None);
    table.master_started("j-1", 4000);
    assert_eq!(table.list()[0].master_port, Some(4000));
    assert_eq!(table.watched(), vec!["j-1".to_string()]);
    table.observe("j-1", &status(JobState::Running, 2, 5), now);
    let entry = &table.list()[0];
    assert_eq!(
        (entry.state, entry.restarts, entry.records_out),
        (S::Running, 2, 5)
    );
    table.observe("j-1", &status(JobState::Finished, 2, 7), now);
    assert_eq!(state(&table, "j-1"), S::Finished);
    assert_eq!(table.list()[0].master_port, None, "workers leave an ended job");
    assert!(table.watched().is_empty());
    // A later report changes nothing once ended.
    table.observe("j-1", &status(JobState::Running, 9, 9), now);
    assert_eq!(table.list()[0].restarts, 2);
    assert!(table.tick(now + END_GRACE - Duration::from_millis(1)).is_empty());
    assert_eq!(table.tick(now + END_GRACE), vec!["j-1".to_string()]);
    assert!(table.tick(now + END_GRACE * 2).is_empty(), "ended once");
}

#[test]
fn several_jobs_are_listed_in_submission_order_each_with_its_own_state() {
    let now = Instant::now();
    let mut table = JobTable::default();
    for id in ["j-b", "j-a", "j-c"] {
        table.submit(id, "wordcount", None, None);
        table.master_started(id, 1);
    }
    table.observe("j-a", &status(JobState::Failed, 10, 0), now);
    let ids: Vec<_> = table.list().into_iter().map(|j| (j.id, j.state)).collect();
    assert_eq!(
        ids,
        vec![
            ("j-b".to_string(), S::Starting),
            ("j-a".to_string(), S::Failed),
            ("j-c".to_string(), S::Starting)
        ]
    );
}

#[test]
fn cancel_ends_a_running_job_at_once_and_refuses_unknown_or_ended_ones() {
    let now = Instant::now();
    let mut table = JobTable::default();
    table.submit("j-1", "wordcount", None, None);
    table.master_started("j-1", 1);
    assert_eq!(table.cancel("j-9", now), Err(JobsError::UnknownJob("j-9".into())));
    assert!(table.cancel("j-9", now).unwrap_err().to_string().contains("j-9"));
    assert_eq!(table.cancel("j-1", now), Ok(()));
    assert_eq!(state(&table, "j-1"), S::Cancelled);
    assert!(
        table.tick(now + END_GRACE).is_empty(),
        "the shell ended the master already"
    );
    assert!(matches!(
        table.cancel("j-1", now),
        Err(JobsError::Ended {
            state: "cancelled",
            ..
        })
    ));
    // The master's last report does not revive it.
    table.observe("j-1", &status(JobState::Running, 0, 0), now);
    assert_eq!(state(&table, "j-1"), S::Cancelled);
}

#[test]
fn stop_needs_checkpoints_and_gives_a_savepoint_a_new_job_resumes_from() {
    let now = Instant::now();
    let mut table = JobTable::default();
    table.submit("j-plain", "wordcount", None, None);
    assert_eq!(
        table.check_stop("j-plain"),
        Err(JobsError::NoCheckpoints("j-plain".into()))
    );
    table.submit("j-1", "wordcount", None, Some("/d/jobs/j-1/checkpoints".into()));
    table.master_started("j-1", 1);
    table.observe("j-1", &status(JobState::Running, 0, 0), now);
    assert_eq!(table.check_stop("j-1"), Ok(()));
    assert_eq!(table.stopping("j-1", 7), "j-1:7");
    // Still running while the final checkpoint commits: stopping, not running.
    table.observe("j-1", &status(JobState::Running, 0, 0), now);
    assert_eq!(state(&table, "j-1"), S::Stopping);
    // Not resumable before it stopped.
    let err = table.savepoint("j-1:7", |_| None).unwrap_err();
    assert!(err.to_string().contains("not stopped"), "{err}");
    table.observe("j-1", &status(JobState::Stopped, 0, 0), now);
    assert_eq!(table.list()[1].savepoint.as_deref(), Some("j-1:7"));
    assert_eq!(
        table.savepoint("j-1:7", |_| None),
        Ok(("/d/jobs/j-1/checkpoints".to_string(), 7))
    );
    // A job this table never saw: where the cluster puts that id's checkpoints.
    assert_eq!(
        table.savepoint("j-old:3", |id| Some(format!("/d/{id}"))),
        Ok(("/d/j-old".to_string(), 3))
    );
    assert!(table.savepoint("j-old:3", |_| None).is_err());
}

#[test]
fn bad_savepoints_are_refused_naming_them() {
    for bad in ["", "j-1", "j-1:x", ":3", "../x:3"] {
        let err = parse_savepoint(bad).unwrap_err();
        assert!(err.to_string().contains(&format!("savepoint {bad}")), "{err}");
    }
    assert_eq!(parse_savepoint("j-00ff:12"), Ok(("j-00ff".to_string(), 12)));
}

#[test]
fn a_master_that_cannot_start_fails_its_job() {
    let now = Instant::now();
    let mut table = JobTable::default();
    table.submit("j-1", "wordcount", None, None);
    table.master_failed("j-1", "cannot listen".into(), now);
    let entry = &table.list()[0];
    assert_eq!(
        (entry.state, entry.error.as_deref()),
        (S::Failed, Some("cannot listen"))
    );
    assert!(table.tick(now + END_GRACE).is_empty(), "no master to end");
}

#[test]
fn checkpoints_go_under_the_store_or_the_data_directory() {
    assert_eq!(
        job_store(Some(Path::new("/d")), Some("s3://b/p/"), "j-1").as_deref(),
        Some("s3://b/p/jobs/j-1")
    );
    assert_eq!(
        job_store(Some(Path::new("/d")), None, "j-1").as_deref(),
        Some("/d/jobs/j-1/checkpoints")
    );
    assert_eq!(job_store(None, None, "j-1"), None);
}
