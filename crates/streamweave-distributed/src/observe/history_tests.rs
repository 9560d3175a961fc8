use super::*;
use crate::protocol::{CheckpointStatus, JobStatus, MovingPartition, WorkerStatus};
use crate::types::Generation;

fn worker(id: &str, partitions: &[PartitionId]) -> WorkerStatus {
    WorkerStatus {
        id: WorkerId::new(id),
        address: "127.0.0.1:1".into(),
        state: WorkerState::Active,
        healthy: true,
        partitions: partitions.to_vec(),
        capacity: 100,
        load: partitions.len(),
        last_heartbeat_ms: 0,
    }
}

fn job(state: JobState, attempt: u64, records_in: u64, records_out: u64) -> JobStatus {
    JobStatus {
        name: "wordcount".into(),
        state,
        attempt,
        restarts: attempt.saturating_sub(1),
        records_in,
        records_out,
        partitions_done: 0,
        elapsed_ms: 0,
        error: None,
        last_restored_checkpoint: None,
        last_recovery_ms: None,
        output: None,
        lag: None,
    }
}

fn status(workers: Vec<WorkerStatus>, job: Option<JobStatus>) -> ClusterStatus {
    ClusterStatus {
        cluster: "default".into(),
        generation: Generation(1),
        partitions: 4,
        strategy: "gradual".into(),
        unassigned: vec![],
        moving: vec![],
        workers,
        job,
        checkpoints: None,
    }
}

fn messages(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.message.as_str()).collect()
}

#[test]
fn a_failed_worker_and_its_partitions_going_to_the_others_are_events() {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    history.observe(
        status(vec![worker("w1", &[0, 1]), worker("w2", &[2, 3])], None),
        t0,
    );
    let mut failed = worker("w2", &[]);
    failed.state = WorkerState::Failed;
    let after = status(vec![worker("w1", &[0, 1, 2, 3]), failed], None);
    let events = history.observe(after, t0 + Duration::from_millis(500));
    assert_eq!(
        messages(&events),
        ["worker w2 active -> failed", "partitions 2,3 from w2 to w1"]
    );
    assert!(events.iter().all(|e| e.at_ms == 500));
    let gone = status(vec![worker("w1", &[0, 1, 2, 3])], None);
    let events = history.observe(gone, t0 + Duration::from_secs(1));
    assert_eq!(messages(&events), ["worker w2 left the cluster"]);
    assert_eq!(
        history.events().count(),
        5,
        "2 joins, the failure, the move, the leave"
    );
}

#[test]
fn rates_come_from_deltas_and_totals_survive_a_restart_from_a_checkpoint() {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    let w = || vec![worker("w1", &[0, 1, 2, 3])];
    history.observe(status(w(), Some(job(JobState::Running, 1, 100, 0))), t0);
    history.observe(
        status(w(), Some(job(JobState::Running, 1, 1100, 500))),
        t0 + Duration::from_millis(500),
    );
    // Attempt 2 resumes from a checkpoint at 600 records: the count goes back.
    let events = history.observe(
        status(w(), Some(job(JobState::Running, 2, 600, 0))),
        t0 + Duration::from_secs(1),
    );
    assert_eq!(messages(&events), ["attempt 2 started from the beginning"]);
    history.observe(
        status(w(), Some(job(JobState::Running, 2, 900, 100))),
        t0 + Duration::from_millis(1500),
    );
    let rates: Vec<(f64, f64)> = history
        .samples()
        .map(|s| (s.records_in_per_s, s.records_out_per_s))
        .collect();
    assert_eq!(rates, [(2000.0, 1000.0), (0.0, 0.0), (600.0, 200.0)]);
    assert_eq!(history.totals().records_in, 100 + 1000 + 300);
    assert_eq!(history.totals().records_out, 600);
}

#[test]
fn completed_and_abandoned_checkpoints() {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    let with = |last: Option<u64>, in_flight: Option<u64>| {
        let mut s = status(vec![worker("w1", &[0, 1, 2, 3])], None);
        s.checkpoints = Some(CheckpointStatus {
            completed: last.unwrap_or(0),
            last_completed: last,
            last_duration_ms: Some(40),
            last_size_bytes: Some(2048),
            state_bytes: Some(2048),
            in_flight,
        });
        s
    };
    history.observe(with(None, Some(1)), t0);
    let events = history.observe(with(Some(1), Some(2)), t0 + Duration::from_millis(500));
    assert_eq!(messages(&events), ["checkpoint 1 completed in 40 ms, 2048 bytes"]);
    let events = history.observe(with(Some(1), Some(3)), t0 + Duration::from_secs(1));
    assert_eq!(messages(&events), ["checkpoint 2 abandoned"]);
    let ids: Vec<u64> = history.checkpoints().map(|c| c.id).collect();
    assert_eq!(ids, [1]);
    assert_eq!(history.totals().checkpoint_failures, 1);
}

#[test]
fn a_finished_move_counts_with_the_time_it_was_seen_moving() {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    let mut moving = status(vec![worker("w1", &[0, 1, 2]), worker("w2", &[])], None);
    moving.moving = vec![MovingPartition {
        partition: 3,
        from: WorkerId::new("w1"),
        to: Some(WorkerId::new("w2")),
    }];
    history.observe(moving.clone(), t0);
    history.observe(moving, t0 + Duration::from_millis(500));
    assert_eq!(history.totals().moves, 0);
    let done = status(vec![worker("w1", &[0, 1, 2]), worker("w2", &[3])], None);
    history.observe(done, t0 + Duration::from_millis(1500));
    assert_eq!(history.totals().moves, 1);
    assert!((history.totals().move_pause_seconds - 1.5).abs() < 1e-9);
}

#[test]
fn the_history_is_bounded() {
    let t0 = Instant::now();
    let mut history = History::new(t0);
    for i in 0..(MAX_SAMPLES as u64 + 10) {
        let s = status(vec![], Some(job(JobState::Running, 1, i * 10, 0)));
        history.observe(s, t0 + Duration::from_millis(500 * i));
    }
    assert_eq!(history.samples().count(), MAX_SAMPLES);
}
