//! The session core, tested by the actions it emits: no sockets, no sleeps.

use super::*;

const HEARTBEAT: Duration = Duration::from_millis(500);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const COMMUNICATION: Duration = Duration::from_secs(5);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn core() -> SessionCore {
    SessionCore::new(SessionTiming {
        heartbeat_interval: HEARTBEAT,
        max_reconnect_backoff: MAX_BACKOFF,
        communication_timeout: COMMUNICATION,
        drain_timeout: DRAIN_TIMEOUT,
        presumed_dead_after: Duration::from_secs(2),
    })
}

fn registered(generation: u64) -> SessionInput {
    SessionInput::Registered {
        generation: Generation(generation),
        heartbeat_timeout: HEARTBEAT_TIMEOUT,
    }
}

fn assignment(generation: u64, partitions: &[PartitionId]) -> SessionInput {
    SessionInput::Message(CoordinatorMessage::Assignment {
        generation: Generation(generation),
        partitions: partitions.to_vec(),
    })
}

fn snapshot(generation: u64, partitions: &[PartitionId], connected: bool) -> SessionAction {
    SessionAction::Publish(WorkerSnapshot {
        generation: Generation(generation),
        partitions: partitions.to_vec(),
        connected,
    })
}

/// The actions without the log notes.
fn acts(actions: Vec<SessionAction>) -> Vec<SessionAction> {
    actions
        .into_iter()
        .filter(|a| !matches!(a, SessionAction::Log(_)))
        .collect()
}

fn stops(actions: &[SessionAction]) -> bool {
    actions.contains(&SessionAction::StopAll)
}

/// A core registered at generation 1 at `t0`, running `partitions` at generation 2.
fn running(t0: Instant, partitions: &[PartitionId]) -> SessionCore {
    let mut core = core();
    core.on_event(registered(1), t0);
    core.on_event(SessionInput::Tick, t0);
    core.on_event(assignment(2, partitions), t0);
    core
}

#[test]
fn registration_publishes_and_heartbeats_at_once_then_every_interval() {
    let t0 = Instant::now();
    let mut core = core();
    assert_eq!(core.deadline(), None);
    assert_eq!(
        acts(core.on_event(registered(3), t0)),
        vec![snapshot(3, &[], true)]
    );
    assert_eq!(core.deadline(), Some(t0));
    assert_eq!(
        core.on_event(SessionInput::Tick, t0),
        vec![SessionAction::Heartbeat { running: vec![] }]
    );
    assert_eq!(core.deadline(), Some(t0 + HEARTBEAT));
    assert!(core.on_event(SessionInput::Tick, t0 + ms(499)).is_empty());
    // A late tick delays the next one.
    assert_eq!(
        core.on_event(SessionInput::Tick, t0 + ms(700)),
        vec![SessionAction::Heartbeat { running: vec![] }]
    );
    assert_eq!(core.deadline(), Some(t0 + ms(1200)));
}

#[test]
fn each_assignment_applied_is_acknowledged_and_older_ones_are_dropped() {
    let t0 = Instant::now();
    let mut core = core();
    core.on_event(registered(1), t0);
    assert_eq!(
        core.on_event(assignment(2, &[3, 1]), t0),
        vec![
            SessionAction::Apply {
                partitions: vec![3, 1],
                generation: Generation(2)
            },
            snapshot(2, &[1, 3], true),
            SessionAction::Send(WorkerMessage::Ack {
                generation: Generation(2),
                running: vec![1, 3]
            }),
        ]
    );
    // An older assignment is dropped, unacknowledged.
    assert_eq!(
        core.on_event(assignment(1, &[7]), t0),
        vec![SessionAction::Log(SessionNote::StaleAssignment {
            generation: Generation(1),
            current: Generation(2)
        })]
    );
    assert_eq!(core.running(), vec![1, 3]);
    // The same generation again is applied and acknowledged again.
    let again = acts(core.on_event(assignment(2, &[1]), t0));
    assert_eq!(
        again.last(),
        Some(&SessionAction::Send(WorkerMessage::Ack {
            generation: Generation(2),
            running: vec![1]
        }))
    );
    let newer = acts(core.on_event(assignment(5, &[]), t0));
    assert_eq!(
        newer[0],
        SessionAction::Apply {
            partitions: vec![],
            generation: Generation(5)
        }
    );
    assert_eq!(core.running(), Vec::<PartitionId>::new());
}

#[test]
fn heartbeats_carry_the_running_partitions() {
    let t0 = Instant::now();
    let mut core = running(t0, &[4, 2]);
    assert_eq!(
        core.on_event(SessionInput::Tick, t0 + HEARTBEAT),
        vec![SessionAction::Heartbeat { running: vec![2, 4] }]
    );
}

#[test]
fn job_messages_go_to_the_job_runner_and_reports_to_the_coordinator_while_connected() {
    let t0 = Instant::now();
    let mut core = core();
    let stop = CoordinatorMessage::StopJob { attempt: 4 };
    let report = WorkerMessage::Leave;
    core.on_event(registered(1), t0);
    assert_eq!(
        core.on_event(SessionInput::Message(stop.clone()), t0),
        vec![SessionAction::ToJobs(stop.clone())]
    );
    assert_eq!(
        core.on_event(SessionInput::Report(report.clone()), t0),
        vec![SessionAction::Send(report.clone())]
    );
    core.on_event(SessionInput::ConnectionLost, t0);
    assert!(core.on_event(SessionInput::Report(report), t0).is_empty());
    assert!(core.on_event(SessionInput::Message(stop), t0).is_empty());
}

/// Drives a lost connection whose every retry fails; returns the waits between attempts.
fn retry_waits(core: &mut SessionCore, lost_at: Instant, attempts: usize) -> Vec<Duration> {
    let mut waits = Vec::new();
    let mut now = lost_at;
    for _ in 0..attempts {
        let Some(at) = core.deadline() else { break };
        waits.push(at - now);
        assert!(core.on_event(SessionInput::Tick, at - ms(1)).is_empty());
        now = at;
        assert!(core
            .on_event(SessionInput::Tick, now)
            .contains(&SessionAction::Connect));
        assert_eq!(core.deadline(), None, "no tick while an attempt is in flight");
        core.on_event(
            SessionInput::ConnectFailed {
                reason: "refused".to_string(),
            },
            now,
        );
    }
    waits
}

#[test]
fn reconnection_backoff_doubles_up_to_the_cap() {
    let t0 = Instant::now();
    let mut core = core();
    core.on_event(registered(1), t0);
    assert_eq!(
        acts(core.on_event(SessionInput::ConnectionLost, t0)),
        vec![SessionAction::Disconnect, snapshot(1, &[], false)]
    );
    let waits = retry_waits(&mut core, t0, 7);
    assert_eq!(
        waits,
        vec![ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]
    );
}

#[test]
fn a_failed_retry_is_logged_with_its_attempt_and_backoff() {
    let t0 = Instant::now();
    let mut core = core();
    core.on_event(registered(1), t0);
    core.on_event(SessionInput::ConnectionLost, t0);
    core.on_event(SessionInput::Tick, t0 + ms(100));
    let reason = "refused".to_string();
    assert_eq!(
        core.on_event(
            SessionInput::ConnectFailed {
                reason: reason.clone()
            },
            t0 + ms(100)
        ),
        vec![SessionAction::Log(SessionNote::RetryFailed {
            attempt: 1,
            reason,
            retry_in: ms(100)
        })]
    );
}

#[test]
fn tasks_stop_only_after_the_heartbeat_timeout_without_the_coordinator() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    let lost = t0 + ms(10);
    assert!(!stops(&core.on_event(SessionInput::ConnectionLost, lost)));
    let mut now = lost;
    // Every retry fails; none stops the tasks before the coordinator's timeout.
    loop {
        let at = core.deadline().expect("retrying");
        if at >= lost + HEARTBEAT_TIMEOUT {
            // The backoff wakes up exactly when the coordinator gives up on us.
            assert_eq!(at, lost + HEARTBEAT_TIMEOUT);
            break;
        }
        now = at;
        assert!(!stops(&core.on_event(SessionInput::Tick, now)));
        let failed = SessionInput::ConnectFailed {
            reason: "refused".to_string(),
        };
        assert!(!stops(&core.on_event(failed, now + ms(5))));
        assert_eq!(core.running(), vec![1, 2]);
    }
    assert!(now < lost + HEARTBEAT_TIMEOUT);
    let actions = acts(core.on_event(SessionInput::Tick, lost + HEARTBEAT_TIMEOUT));
    assert_eq!(
        actions,
        vec![
            SessionAction::StopAll,
            snapshot(2, &[], false),
            SessionAction::Connect
        ]
    );
    // With nothing running, the backoff is no longer shortened and nothing stops again.
    core.on_event(
        SessionInput::ConnectFailed {
            reason: "refused".to_string(),
        },
        lost + HEARTBEAT_TIMEOUT,
    );
    assert!(core.deadline() > Some(lost + HEARTBEAT_TIMEOUT + ms(100)));
}

#[test]
fn a_reconnection_within_the_timeout_keeps_the_tasks() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    core.on_event(SessionInput::ConnectionLost, t0);
    core.on_event(SessionInput::Tick, t0 + ms(100));
    assert_eq!(
        acts(core.on_event(registered(2), t0 + ms(150))),
        vec![snapshot(2, &[1, 2], true)]
    );
    assert_eq!(core.running(), vec![1, 2]);
    // Registered again: a fresh loss starts the backoff from the beginning.
    core.on_event(SessionInput::ConnectionLost, t0 + ms(200));
    assert_eq!(core.deadline(), Some(t0 + ms(300)));
}

#[test]
fn shutdown_stops_the_tasks_and_reconnects() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    let shutdown = SessionInput::Message(CoordinatorMessage::Shutdown {
        reason: "declared failed".to_string(),
    });
    assert_eq!(
        acts(core.on_event(shutdown, t0)),
        vec![
            SessionAction::StopAll,
            SessionAction::Disconnect,
            snapshot(2, &[], false)
        ]
    );
    assert_eq!(core.deadline(), Some(t0 + ms(100)));
    assert_eq!(
        core.on_event(SessionInput::Tick, t0 + ms(100)),
        vec![SessionAction::Connect]
    );
}

#[test]
fn fencing_stops_everything_and_ends_the_session() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    let reason = "a newer run registered".to_string();
    let fenced = SessionInput::Message(CoordinatorMessage::Fenced {
        reason: reason.clone(),
    });
    assert_eq!(
        acts(core.on_event(fenced, t0)),
        vec![
            SessionAction::StopAll,
            SessionAction::Disconnect,
            snapshot(2, &[], false),
            SessionAction::Exit(SessionEnd::Fenced(reason))
        ]
    );
    assert_eq!(core.deadline(), None);
    assert!(core.on_event(assignment(9, &[1]), t0).is_empty());
    assert!(core.on_event(registered(9), t0).is_empty());
    assert!(core
        .on_event(SessionInput::LeaveRequested { carries_state: false }, t0)
        .is_empty());
}

#[test]
fn a_fence_while_retrying_ends_the_session() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    core.on_event(SessionInput::ConnectionLost, t0);
    core.on_event(SessionInput::Tick, t0 + ms(100));
    let fenced = SessionInput::Message(CoordinatorMessage::Fenced {
        reason: "newer".to_string(),
    });
    let actions = core.on_event(fenced, t0 + ms(120));
    assert!(stops(&actions));
    assert_eq!(
        actions.last(),
        Some(&SessionAction::Exit(SessionEnd::Fenced("newer".to_string())))
    );
}

#[test]
fn leaving_without_state_stops_first_then_waits_for_the_acknowledgement() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    assert_eq!(
        core.on_event(SessionInput::LeaveRequested { carries_state: false }, t0),
        vec![
            SessionAction::StopAll,
            snapshot(2, &[], false),
            SessionAction::Send(WorkerMessage::Leave)
        ]
    );
    // Nothing but the acknowledgement matters now: no heartbeat, no assignment.
    assert_eq!(core.deadline(), Some(t0 + COMMUNICATION));
    assert!(core.on_event(SessionInput::Tick, t0 + HEARTBEAT).is_empty());
    assert!(core.on_event(assignment(3, &[1]), t0).is_empty());
    assert_eq!(
        acts(core.on_event(SessionInput::Message(CoordinatorMessage::LeaveAck), t0 + ms(10))),
        vec![snapshot(2, &[], false), SessionAction::Exit(SessionEnd::Left)]
    );
}

#[test]
fn leaving_without_state_gives_up_on_the_acknowledgement_after_the_communication_timeout() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    core.on_event(SessionInput::LeaveRequested { carries_state: false }, t0);
    assert!(core
        .on_event(SessionInput::Tick, t0 + COMMUNICATION - ms(1))
        .is_empty());
    let actions = core.on_event(SessionInput::Tick, t0 + COMMUNICATION);
    assert!(actions.contains(&SessionAction::Log(SessionNote::Left { acknowledged: false })));
    assert_eq!(actions.last(), Some(&SessionAction::Exit(SessionEnd::Left)));
}

#[test]
fn leaving_with_state_keeps_running_until_the_partitions_moved_away() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    assert_eq!(
        acts(core.on_event(SessionInput::LeaveRequested { carries_state: true }, t0)),
        vec![SessionAction::Send(WorkerMessage::Leave)]
    );
    // A second request is the same leave.
    assert!(core
        .on_event(SessionInput::LeaveRequested { carries_state: true }, t0)
        .is_empty());
    // Heartbeats go on, the partitions move away as assignments.
    assert_eq!(
        core.on_event(SessionInput::Tick, t0 + HEARTBEAT),
        vec![SessionAction::Heartbeat { running: vec![1, 2] }]
    );
    let moved = acts(core.on_event(assignment(3, &[]), t0 + ms(600)));
    assert!(!stops(&moved));
    assert_eq!(
        moved[0],
        SessionAction::Apply {
            partitions: vec![],
            generation: Generation(3)
        }
    );
    assert_eq!(
        acts(core.on_event(SessionInput::Message(CoordinatorMessage::LeaveAck), t0 + ms(700))),
        vec![
            SessionAction::StopAll,
            snapshot(3, &[], false),
            SessionAction::Exit(SessionEnd::Left)
        ]
    );
}

#[test]
fn leaving_with_state_stops_anyway_after_the_drain_timeout() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    core.on_event(SessionInput::LeaveRequested { carries_state: true }, t0);
    let mut now = t0;
    while let Some(at) = core.deadline() {
        if at >= t0 + DRAIN_TIMEOUT {
            break;
        }
        now = at;
        assert!(!stops(&core.on_event(SessionInput::Tick, now)));
        // The coordinator answers every heartbeat.
        core.on_event(SessionInput::Message(CoordinatorMessage::HeartbeatAck), now);
    }
    assert!(now >= t0 + DRAIN_TIMEOUT - HEARTBEAT);
    assert_eq!(core.deadline(), Some(t0 + DRAIN_TIMEOUT));
    assert_eq!(
        acts(core.on_event(SessionInput::Tick, t0 + DRAIN_TIMEOUT)),
        vec![
            SessionAction::StopAll,
            snapshot(2, &[], false),
            SessionAction::Exit(SessionEnd::Left)
        ]
    );
}

#[test]
fn leaving_with_state_and_losing_the_coordinator_stops_and_ends() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    core.on_event(SessionInput::LeaveRequested { carries_state: true }, t0);
    let actions = acts(core.on_event(SessionInput::ConnectionLost, t0 + ms(5)));
    assert_eq!(
        actions,
        vec![
            SessionAction::Disconnect,
            SessionAction::StopAll,
            snapshot(2, &[], false),
            SessionAction::Exit(SessionEnd::Left)
        ]
    );
}

#[test]
fn leaving_while_the_coordinator_is_unreachable_stops_and_ends_at_once() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1]);
    core.on_event(SessionInput::ConnectionLost, t0);
    assert_eq!(
        core.on_event(SessionInput::LeaveRequested { carries_state: true }, t0 + ms(50)),
        vec![
            SessionAction::StopAll,
            snapshot(2, &[], false),
            SessionAction::Exit(SessionEnd::Left)
        ]
    );
}

#[test]
fn a_task_that_ends_by_itself_is_reported_and_its_partition_kept_until_revoked() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    let error = Some("task panicked: boom".to_string());
    assert_eq!(
        core.on_event(
            SessionInput::TaskEnded {
                partition: 2,
                error: error.clone()
            },
            t0
        ),
        vec![SessionAction::Log(SessionNote::TaskEnded { partition: 2, error })]
    );
    assert_eq!(
        core.on_event(SessionInput::Tick, t0 + HEARTBEAT),
        vec![SessionAction::Heartbeat { running: vec![1, 2] }]
    );
}

#[test]
fn a_coordinator_that_acknowledges_heartbeats_is_never_presumed_silent() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    for i in 1..=20u64 {
        let now = t0 + HEARTBEAT * i as u32;
        assert_eq!(
            core.on_event(SessionInput::Tick, now),
            vec![SessionAction::Heartbeat { running: vec![1, 2] }]
        );
        assert!(core
            .on_event(
                SessionInput::Message(CoordinatorMessage::HeartbeatAck),
                now + ms(5)
            )
            .is_empty());
    }
}

#[test]
fn a_silent_coordinator_is_dropped_and_its_silence_counts_as_time_without_one() {
    let t0 = Instant::now();
    let mut core = running(t0, &[1, 2]);
    // Heartbeats go out but nothing comes back (a paused leader: the connection stays open).
    core.on_event(SessionInput::Tick, t0 + HEARTBEAT);
    core.on_event(SessionInput::Tick, t0 + HEARTBEAT * 2);
    core.on_event(SessionInput::Tick, t0 + HEARTBEAT * 3);
    // A slow coordinator is given twice its heartbeat timeout.
    let actions = core.on_event(SessionInput::Tick, t0 + HEARTBEAT_TIMEOUT);
    assert!(!actions.contains(&SessionAction::Disconnect), "{actions:?}");
    let at = t0 + HEARTBEAT_TIMEOUT * 2;
    let actions = core.on_event(SessionInput::Tick, at);
    assert!(
        actions.contains(&SessionAction::Log(SessionNote::Silent(HEARTBEAT_TIMEOUT * 2))),
        "{actions:?}"
    );
    assert!(actions.contains(&SessionAction::Disconnect), "{actions:?}");
    // Silent for the whole timeout: the coordinator has declared us failed by now.
    assert!(stops(&actions), "{actions:?}");
    assert_eq!(core.running(), Vec::<PartitionId>::new());
    // It looks for a coordinator again after the first backoff.
    assert_eq!(core.deadline(), Some(at + FIRST_BACKOFF));
    assert_eq!(
        acts(core.on_event(SessionInput::Tick, at + FIRST_BACKOFF)),
        vec![SessionAction::Connect]
    );
}

#[test]
fn any_message_from_the_coordinator_counts_as_hearing_from_it() {
    let t0 = Instant::now();
    let mut core = running(t0, &[3]);
    core.on_event(assignment(3, &[3, 4]), t0 + ms(3900));
    let actions = core.on_event(SessionInput::Tick, t0 + HEARTBEAT_TIMEOUT * 2 + ms(100));
    assert!(!actions.contains(&SessionAction::Disconnect), "{actions:?}");
    let actions = core.on_event(SessionInput::Tick, t0 + ms(3900) + HEARTBEAT_TIMEOUT * 2);
    assert!(actions.contains(&SessionAction::Disconnect), "{actions:?}");
}
