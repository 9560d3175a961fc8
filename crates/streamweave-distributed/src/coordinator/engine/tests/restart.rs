//! The engine across coordinator restarts and asynchronous checkpoint commits: attempt ids of a
//! restarted coordinator are above its predecessor's, checkpoint ids continue above those in the
//! store, and a new attempt waits for a manifest being written (it may be what it restores).

use super::*;
use crate::dataflow::JobSpec;

const P: usize = 4;

fn config() -> CoordinatorConfig {
    CoordinatorConfig {
        num_partitions: P,
        heartbeat_timeout: Duration::from_secs(60),
        job: Some(JobSpec::new("wordcount")),
        checkpoint_interval: Some(Duration::from_millis(200)),
        checkpoint_timeout: Duration::from_secs(10),
        min_workers: 2,
        // Never touched by the engine: it only names the store in the start messages.
        data_dir: Some("/nonexistent/swd-test".into()),
        ..CoordinatorConfig::default()
    }
}

fn request(id: &str) -> RegisterRequest {
    RegisterRequest {
        worker_id: WorkerId::new(id),
        incarnation: 1,
        address: format!("{id}.local:9000"),
        capacity: 100,
        requested: Vec::new(),
        jobs: vec!["wordcount".to_string()],
    }
}

/// Feeds `input`, answering every assignment with its ack; returns every action.
fn drive(e: &mut Engine, input: Input, now: Instant) -> Vec<Action> {
    let mut log = Vec::new();
    let mut queue = vec![input];
    while let Some(input) = queue.pop() {
        for action in e.handle(input, now) {
            if let Action::Send {
                conn,
                message:
                    CoordinatorMessage::Assignment {
                        generation,
                        partitions,
                    },
            } = &action
            {
                queue.push(Input::Ack {
                    conn: *conn,
                    generation: *generation,
                    running: partitions.clone(),
                });
            }
            log.push(action);
        }
    }
    log
}

/// Two workers (connections 1 and 2) join; returns every action.
fn two_workers(e: &mut Engine, now: Instant) -> Vec<Action> {
    let mut log = drive(
        e,
        Input::Register {
            conn: 1,
            request: request("w1"),
        },
        now,
    );
    log.extend(drive(
        e,
        Input::Register {
            conn: 2,
            request: request("w2"),
        },
        now,
    ));
    log
}

/// The attempts started (ids and restored checkpoint) in `log`.
fn starts(log: &[Action]) -> Vec<(u64, Option<u64>)> {
    let mut seen = Vec::new();
    for action in log {
        if let Action::Send {
            message: CoordinatorMessage::StartJob {
                attempt, checkpoints, ..
            },
            ..
        } = action
        {
            let restored = checkpoints
                .as_ref()
                .and_then(|c| c.restore.as_ref())
                .map(|r| r.id);
            if !seen.contains(&(*attempt, restored)) {
                seen.push((*attempt, restored));
            }
        }
    }
    seen
}

fn snapshot(p: usize, id: u64) -> PartitionSnapshot {
    PartitionSnapshot {
        state_file: format!("state-p{p:05}"),
        state_bytes: 3,
        state_crc32: 7,
        source_offset: Some(id * 10 + p as u64),
        source_exhausted: false,
        source_records: id,
    }
}

/// Every partition acknowledges checkpoint `id` of `attempt`; returns the actions.
fn ack_all(e: &mut Engine, attempt: u64, id: u64, now: Instant) -> Vec<Action> {
    (0..P)
        .flat_map(|p| {
            let report = JobReport::CheckpointAck {
                attempt,
                id,
                partition: p,
                snapshot: snapshot(p, id),
                ended_sources: Vec::new(),
            };
            drive(e, Input::Job { conn: 1, report }, now)
        })
        .collect()
}

fn triggered(log: &[Action]) -> Option<u64> {
    log.iter().find_map(|a| match a {
        Action::Send {
            message: CoordinatorMessage::TriggerCheckpoint { id, .. },
            ..
        } => Some(*id),
        _ => None,
    })
}

#[test]
fn a_restarted_coordinator_numbers_attempts_above_its_predecessors_and_resumes_its_checkpoint() {
    let t = Instant::now();
    let mut first = Engine::new(config());
    first.set_epoch(0);
    assert_eq!(starts(&two_workers(&mut first, t)), [(1, None)]);

    // The third coordinator on the data directory, which holds committed checkpoint 5 and
    // files of an uncommitted checkpoint 6.
    let mut third = Engine::new(config());
    third.set_epoch(2);
    third.checkpoint_ids_above(6);
    third.resume_from_checkpoint(5, (0..P).map(|p| (p, snapshot(p, 5))).collect());
    let log = two_workers(&mut third, t);
    assert_eq!(
        starts(&log),
        [(
            2 * crate::coordinator::job_control::ATTEMPTS_PER_EPOCH + 1,
            Some(5)
        )]
    );
    let restore = log.iter().find_map(|a| match a {
        Action::Send {
            message: CoordinatorMessage::StartJob { checkpoints, .. },
            ..
        } => checkpoints.as_ref()?.restore.clone(),
        _ => None,
    });
    let restore = restore.expect("a restore point");
    assert_eq!(restore.partitions[3], ("state-p00003".to_string(), 53));
    assert_eq!(restore.source_records, [5; P]);
    // The next checkpoint is numbered above everything in the store, not after 5.
    let log = drive(&mut third, Input::Tick, t + Duration::from_millis(250));
    assert_eq!(triggered(&log), Some(7));
}

#[test]
fn a_new_attempt_waits_for_the_manifest_being_written_and_restores_it() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    assert_eq!(starts(&two_workers(&mut e, t)), [(1, None)]);
    let t1 = t + Duration::from_millis(250);
    assert_eq!(triggered(&drive(&mut e, Input::Tick, t1)), Some(1));
    let log = ack_all(&mut e, 1, 1, t1);
    let written: Vec<_> = log
        .iter()
        .filter_map(|a| match a {
            Action::WriteCheckpoint { id, snapshots, .. } => Some((*id, snapshots[&2].state_crc32)),
            _ => None,
        })
        .collect();
    assert_eq!(written, [(1, 7)], "the worker's checksum goes to the manifest");
    // While the manifest is written, a task fails: the attempt stops, and the next one waits.
    let report = JobReport::Failed {
        attempt: 1,
        partition: Some(0),
        error: "boom".to_string(),
        damaged_checkpoint: None,
        unreachable_peer: None,
    };
    let log = drive(&mut e, Input::Job { conn: 2, report }, t1);
    assert!(log.iter().any(|a| matches!(
        a,
        Action::Send {
            message: CoordinatorMessage::StopJob { attempt: 1 },
            ..
        }
    )));
    let later = t1 + Duration::from_secs(5);
    assert!(
        starts(&drive(&mut e, Input::Tick, later)).is_empty(),
        "no start before the outcome"
    );
    // The manifest is durable: the sinks of the stopped attempt are not told (it is gone), and
    // the next attempt restores it.
    let log = drive(
        &mut e,
        Input::CheckpointWritten {
            id: 1,
            result: Ok(()),
        },
        later,
    );
    assert_eq!(starts(&log), [(2, Some(1))]);
    assert!(!log.iter().any(|a| matches!(
        a,
        Action::Send {
            message: CoordinatorMessage::CommitEpochs { attempt: 1, .. },
            ..
        }
    )));
}

#[test]
fn a_failed_manifest_write_lets_the_next_attempt_start_from_the_previous_checkpoint() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    two_workers(&mut e, t);
    let t1 = t + Duration::from_millis(250);
    drive(&mut e, Input::Tick, t1);
    ack_all(&mut e, 1, 1, t1);
    let report = JobReport::Failed {
        attempt: 1,
        partition: Some(0),
        error: "boom".to_string(),
        damaged_checkpoint: None,
        unreachable_peer: None,
    };
    drive(&mut e, Input::Job { conn: 2, report }, t1);
    let later = t1 + Duration::from_secs(5);
    let log = drive(
        &mut e,
        Input::CheckpointWritten {
            id: 1,
            result: Err("disk full".to_string()),
        },
        later,
    );
    assert_eq!(starts(&log), [(2, None)], "nothing committed: from the beginning");
}

#[test]
fn a_checkpoint_a_worker_finds_damaged_is_passed_over_for_the_one_before() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    assert_eq!(starts(&two_workers(&mut e, t)), [(1, None)]);
    let mut now = t;
    for id in 1..=2 {
        now += Duration::from_millis(250);
        assert_eq!(triggered(&drive(&mut e, Input::Tick, now)), Some(id));
        ack_all(&mut e, 1, id, now);
        drive(&mut e, Input::CheckpointWritten { id, result: Ok(()) }, now);
    }
    let fail = |attempt, damaged_checkpoint| Input::Job {
        conn: 2,
        report: JobReport::Failed {
            attempt,
            partition: Some(1),
            error: "checkpoint 2 is damaged: crc32 mismatch".to_string(),
            damaged_checkpoint,
            unreachable_peer: None,
        },
    };
    // An ordinary failure: the next attempt restores the newest checkpoint.
    drive(&mut e, fail(1, None), now);
    now += Duration::from_secs(5);
    assert_eq!(starts(&drive(&mut e, Input::Tick, now)), [(2, Some(2))]);
    // Its task finds checkpoint 2 damaged: the next attempt restores 1, not 2 again.
    let log = drive(&mut e, fail(2, Some(2)), now);
    assert!(log
        .iter()
        .any(|a| matches!(a, Action::Log(Note::CheckpointDamaged { checkpoint: 2, .. }))));
    now += Duration::from_secs(10);
    assert_eq!(starts(&drive(&mut e, Input::Tick, now)), [(3, Some(1))]);
    // A late report of the same damage changes nothing more.
    let log = drive(&mut e, fail(2, Some(2)), now);
    assert!(!log
        .iter()
        .any(|a| matches!(a, Action::Log(Note::CheckpointDamaged { .. }))));
}

#[test]
fn sinks_are_told_only_once_the_manifest_is_durable() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    two_workers(&mut e, t);
    let t1 = t + Duration::from_millis(250);
    drive(&mut e, Input::Tick, t1);
    let commits = |log: &[Action]| {
        log.iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        message: CoordinatorMessage::CommitEpochs { upto: 1, .. },
                        ..
                    }
                )
            })
            .count()
    };
    let log = ack_all(&mut e, 1, 1, t1);
    assert_eq!(commits(&log), 0);
    // The engine goes on meanwhile: the next checkpoint triggers and completes too.
    let t2 = t1 + Duration::from_millis(250);
    assert_eq!(triggered(&drive(&mut e, Input::Tick, t2)), Some(2));
    ack_all(&mut e, 1, 2, t2);
    let log = drive(
        &mut e,
        Input::CheckpointWritten {
            id: 1,
            result: Ok(()),
        },
        t2,
    );
    assert_eq!(commits(&log), 2, "each of the two workers told to commit epoch 1");
}

/// Two workers run attempt 1; w2's task on partition `partition` of w1 fails because it could
/// not reach w2 (`unreachable`), or for another reason.
fn peer_failure(unreachable: Option<&str>) -> Input {
    Input::Job {
        conn: 1,
        report: JobReport::Failed {
            attempt: 1,
            partition: Some(0),
            error: "exchange: the connection to worker w2 closed".to_string(),
            damaged_checkpoint: None,
            unreachable_peer: unreachable.map(WorkerId::new),
        },
    }
}

fn declared_unreachable(log: &[Action]) -> bool {
    log.iter().any(|a| {
        matches!(a, Action::Log(Note::WorkerUnreachable { worker, reporter })
            if worker.as_str() == "w2" && reporter.as_str() == "w1")
    }) && log.contains(&Action::Event(ClusterEvent::Failed {
        worker: WorkerId::new("w2"),
    }))
}

#[test]
fn a_worker_whose_connection_closed_and_that_a_peer_cannot_reach_fails_at_once() {
    // Either signal may come first; the heartbeat timeout (60 s) is never waited for.
    for report_first in [true, false] {
        let t = Instant::now();
        let mut e = Engine::new(config());
        assert_eq!(starts(&two_workers(&mut e, t)), [(1, None)]);
        let t1 = t + Duration::from_millis(50);
        let (first, second) = if report_first {
            (peer_failure(Some("w2")), Input::Disconnected { conn: 2 })
        } else {
            (Input::Disconnected { conn: 2 }, peer_failure(Some("w2")))
        };
        let log = drive(&mut e, first, t1);
        assert!(!declared_unreachable(&log), "one signal is not enough");
        let log = drive(&mut e, second, t1);
        assert!(declared_unreachable(&log), "report first: {report_first}");
        // The survivor took every partition and the next attempt starts on it at once, after
        // the one restart the failure cost.
        assert_eq!(starts(&log), [(2, None)], "report first: {report_first}");
        assert!(e.workers.keys().all(|w| w.as_str() == "w1"));
        assert_eq!(e.status(t1).job.map(|j| j.restarts), Some(1));
    }
}

#[test]
fn no_attempt_starts_while_an_owner_is_disconnected_and_a_reconnection_starts_it() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    two_workers(&mut e, t);
    // w2's connection closes; w1 fails for a reason that names no peer.
    drive(&mut e, Input::Disconnected { conn: 2 }, t);
    drive(&mut e, peer_failure(None), t);
    // Past every restart delay, still within the heartbeat timeout: w2 could not be told to
    // start, so nothing starts (and nothing more is counted against max_restarts).
    let later = t + Duration::from_secs(10);
    let log = drive(&mut e, Input::Tick, later);
    assert!(starts(&log).is_empty());
    assert!(!declared_unreachable(&log));
    assert_eq!(e.status(later).job.map(|j| j.restarts), Some(1));
    // The same run of w2 reconnects: the attempt starts on both.
    let log = drive(
        &mut e,
        Input::Register {
            conn: 3,
            request: request("w2"),
        },
        later,
    );
    assert_eq!(starts(&log), [(2, None)]);
    let told: BTreeSet<ConnId> = log
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                conn,
                message: CoordinatorMessage::StartJob { .. },
            } => Some(*conn),
            _ => None,
        })
        .collect();
    assert_eq!(told, BTreeSet::from([1, 3]));
}

#[test]
fn an_unreachable_report_alone_or_long_before_the_disconnection_declares_nothing() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    two_workers(&mut e, t);
    // w2 is still connected: the data plane between the two may be what failed. The job
    // restarts on both after its delay.
    let log = drive(&mut e, peer_failure(Some("w2")), t);
    assert!(!declared_unreachable(&log));
    let log = drive(&mut e, Input::Tick, t + Duration::from_secs(1));
    assert_eq!(starts(&log), [(2, None)]);
    // Its connection closes more than a heartbeat timeout later: that report is stale.
    let late = t + Duration::from_secs(61);
    for conn in [1, 2] {
        drive(
            &mut e,
            Input::Heartbeat {
                conn,
                running: Vec::new(),
            },
            late - Duration::from_secs(1),
        );
    }
    let log = drive(&mut e, Input::Disconnected { conn: 2 }, late);
    assert!(!declared_unreachable(&log));
    assert!(e.workers.contains_key(&WorkerId::new("w2")));
}

#[test]
fn a_lost_data_connection_reported_outside_any_task_failure_counts_the_same() {
    let t = Instant::now();
    let mut e = Engine::new(config());
    assert_eq!(starts(&two_workers(&mut e, t)), [(1, None)]);
    // w2 is killed: its connection closes, and w1's link to it closes before any of w1's tasks
    // sends to it (a rate-limited source may not send for a while).
    drive(&mut e, Input::Disconnected { conn: 2 }, t);
    let lost = Input::PeerUnreachable {
        conn: 1,
        peer: WorkerId::new("w2"),
    };
    let log = drive(&mut e, lost, t);
    assert!(declared_unreachable(&log));
    // The assignment changed: attempt 1 is stopped and attempt 2 starts on w1 at once.
    assert!(log.iter().any(|a| matches!(
        a,
        Action::Send {
            message: CoordinatorMessage::StopJob { attempt: 1 },
            ..
        }
    )));
    assert_eq!(starts(&log), [(2, None)]);
    assert_eq!(e.status(t).job.map(|j| j.restarts), Some(1));
}
