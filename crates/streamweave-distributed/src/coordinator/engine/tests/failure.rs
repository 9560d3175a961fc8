//! Failure detection and disconnection: a silent worker fails only after the heartbeat timeout,
//! and where its partitions go under each strategy (with and without failover).

use super::*;

#[test]
fn a_silent_worker_fails_only_after_the_timeout_and_survivors_keep_their_partitions() {
    for strategy in [Gradual, Immediate] {
        let mut e = three_workers(strategy);
        let before = owners(&e);
        let g1 = e.generation().next();
        assert_eq!(heartbeat(&mut e, 1, at(1_000)), vec![]);
        assert_eq!(heartbeat(&mut e, 2, at(1_000)), vec![]);
        assert_eq!(
            e.handle(Input::Tick, at(TIMEOUT_MS)),
            vec![],
            "{strategy:?}: at the timeout w3 lives"
        );

        let out = e.handle(Input::Tick, at(TIMEOUT_MS + 1));
        let mut expected = vec![
            shutdown(3, "declared failed: no heartbeat for 2s"),
            Action::Close { conn: 3 },
            event(ClusterEvent::Failed { worker: w("w3") }),
        ];
        expected.extend([4, 5, 10, 11].map(|p| released("w3", p)));
        assert_eq!(out[..expected.len()], expected, "{strategy:?}");
        // The orphans are granted in the same step, nothing else moves.
        assert_eq!(
            granted_partitions(&out),
            BTreeSet::from([4, 5, 10, 11]),
            "{strategy:?}"
        );
        assert_eq!(revocations(&out), 0, "{strategy:?}");
        assert!(
            assignments(&out).iter().all(|a| a.1 == g1 && a.0 != 3),
            "{strategy:?}"
        );

        ack_all(&mut e, out, at(TIMEOUT_MS + 1));
        let after = owners(&e);
        assert!(!after.contains_key(&w("w3")));
        for id in [w("w1"), w("w2")] {
            assert_eq!(after[&id].len(), 6, "{strategy:?} {id}");
            assert!(
                is_subset(&before[&id], &after[&id]),
                "{strategy:?}: {id} lost a partition"
            );
        }
        assert!(e.status(at(TIMEOUT_MS + 1)).unassigned.is_empty());
        check_invariants(&e, at(TIMEOUT_MS + 1));
    }
}

/// Manual: w1 [0..4], w2 [4..8], w3 [8..12]; w3 falls silent and fails.
fn manual_failure(enable_failover: bool) -> (Engine, Vec<Action>) {
    let mut e = three_workers_with(CoordinatorConfig {
        enable_failover,
        ..config(Manual)
    });
    heartbeat(&mut e, 1, at(1_000));
    heartbeat(&mut e, 2, at(1_000));
    assert_eq!(e.handle(Input::Tick, at(TIMEOUT_MS)), vec![]);
    let out = e.handle(Input::Tick, at(TIMEOUT_MS + 1));
    (e, out)
}

fn manual_failure_prefix() -> Vec<Action> {
    let mut expected = vec![
        shutdown(3, "declared failed: no heartbeat for 2s"),
        Action::Close { conn: 3 },
        event(ClusterEvent::Failed { worker: w("w3") }),
    ];
    expected.extend((8..12).map(|p| released("w3", p)));
    expected
}

#[test]
fn manual_without_failover_leaves_a_failed_workers_partitions_unassigned() {
    let (e, out) = manual_failure(false);
    assert_eq!(out, manual_failure_prefix());
    assert_eq!(e.status(at(TIMEOUT_MS + 1)).unassigned, [8, 9, 10, 11]);
    assert_eq!(owned(&e, "w1"), [0, 1, 2, 3]);
    assert_eq!(owned(&e, "w2"), [4, 5, 6, 7]);
}

#[test]
fn manual_with_failover_places_a_failed_workers_partitions_on_the_least_loaded() {
    let (e, out) = manual_failure(true);
    let g1 = e.generation();
    let mut expected = manual_failure_prefix();
    expected.extend([
        granted("w1", 8, g1),
        granted("w2", 9, g1),
        granted("w1", 10, g1),
        granted("w2", 11, g1),
        assignment(1, g1, &[0, 1, 2, 3, 8, 10]),
        assignment(2, g1, &[4, 5, 6, 7, 9, 11]),
    ]);
    assert_eq!(out, expected);
    assert!(e.status(at(TIMEOUT_MS + 1)).unassigned.is_empty());
}

#[test]
fn manual_failover_skips_workers_without_room() {
    let mut e = engine(Manual);
    for (conn, id, capacity, range) in [
        (1, "w1", 5, 0..4),
        (2, "w2", AMPLE, 4..8),
        (3, "w3", AMPLE, 8..12),
    ] {
        let out = register(&mut e, conn, id, capacity, &range.collect::<Vec<_>>(), at(0));
        ack_all(&mut e, out, at(0));
    }
    let out = e.fail_worker(&w("w3"), at(0)).unwrap();
    ack_all(&mut e, out, at(10));
    // 8 goes to w1 (tied with w2 at 4, first by id); then w1 is full.
    assert_eq!(owned(&e, "w1"), [0, 1, 2, 3, 8]);
    assert_eq!(owned(&e, "w2"), [4, 5, 6, 7, 9, 10, 11]);
    assert!(e.status(at(10)).unassigned.is_empty());
}

#[test]
fn a_disconnected_worker_keeps_its_partitions_until_the_timeout() {
    let mut e = three_workers(Gradual);
    let before = owners(&e);
    assert_eq!(
        e.handle(Input::Disconnected { conn: 3 }, at(100)),
        vec![probe_w3()]
    );
    heartbeat(&mut e, 1, at(1_500));
    heartbeat(&mut e, 2, at(1_500));
    assert_eq!(e.handle(Input::Tick, at(1_500)), vec![]);
    assert_eq!(e.handle(Input::Tick, at(TIMEOUT_MS)), vec![]);
    assert_eq!(owners(&e), before);
    let status = e.status(at(TIMEOUT_MS));
    let w3 = status.workers.iter().find(|s| s.id == w("w3")).unwrap();
    assert_eq!(w3.state, WorkerState::Disconnected);

    // Not back in time: failed, and nothing is sent on the closed connection.
    let out = e.handle(Input::Tick, at(TIMEOUT_MS + 1));
    assert_eq!(out[0], event(ClusterEvent::Failed { worker: w("w3") }));
    assert!(!out
        .iter()
        .any(|a| matches!(a, Action::Send { conn: 3, .. } | Action::Close { conn: 3 })));
    assert_eq!(granted_partitions(&out), BTreeSet::from([4, 5, 10, 11]));
}

/// The shell's report that run `incarnation` of w3 refused the probe of its data port.
fn w3_refused(incarnation: u64) -> Input {
    Input::PortRefused {
        worker: w("w3"),
        incarnation,
    }
}

/// What the engine asks of the shell when w3's connection closes: dial its data port.
fn probe_w3() -> Action {
    Action::ProbeWorker {
        worker: w("w3"),
        incarnation: 1,
        address: "w3.local:9000".to_string(),
    }
}

#[test]
fn a_disconnected_worker_whose_data_port_refuses_fails_at_once() {
    let mut e = three_workers(Gradual);
    assert_eq!(
        e.handle(Input::Disconnected { conn: 3 }, at(100)),
        vec![probe_w3()]
    );
    let out = e.handle(w3_refused(1), at(150));
    assert_eq!(out[0], Action::Log(Note::WorkerPortClosed { worker: w("w3") }));
    assert_eq!(out[1], event(ClusterEvent::Failed { worker: w("w3") }));
    assert_eq!(granted_partitions(&out), BTreeSet::from([4, 5, 10, 11]));
    check_invariants(&e, at(150));
}

#[test]
fn a_refusal_for_a_run_that_came_back_or_was_replaced_fails_nothing() {
    // The same run reconnected before the refusal arrived: it stays.
    let mut e = three_workers(Gradual);
    e.handle(Input::Disconnected { conn: 3 }, at(100));
    let back = request("w3", 1, AMPLE, &[]);
    e.handle(
        Input::Register {
            conn: 4,
            request: back,
        },
        at(120),
    );
    assert!(e.handle(w3_refused(1), at(150)).is_empty());
    assert!(e.workers.contains_key(&w("w3")));
    // A newer run replaced the one probed: the refusal was about the old one.
    e.handle(Input::Disconnected { conn: 4 }, at(200));
    let newer = request("w3", 2, AMPLE, &[]);
    e.handle(
        Input::Register {
            conn: 5,
            request: newer,
        },
        at(220),
    );
    e.handle(Input::Disconnected { conn: 5 }, at(230));
    assert!(e.handle(w3_refused(1), at(250)).is_empty());
    assert!(e.workers.contains_key(&w("w3")));
}

#[test]
fn a_failed_worker_that_comes_back_takes_back_what_it_had_and_the_survivors_keep_theirs() {
    for strategy in [Gradual, Immediate] {
        let mut e = three_workers(strategy);
        let before = owners(&e);
        // w3 is killed: its data port refuses, its partitions go to the survivors.
        e.handle(Input::Disconnected { conn: 3 }, at(100));
        let out = e.handle(w3_refused(1), at(110));
        ack_all(&mut e, out, at(110));
        // Its supervisor starts it again: a new run, asking for nothing.
        let out = register(&mut e, 4, "w3", AMPLE, &[], at(200));
        // Gradual moves one partition at a time, each on the acknowledgement of the one before.
        ack_all(&mut e, out, at(200));
        assert!(
            e.revoking.is_empty() && e.granting.is_empty(),
            "{strategy:?}: still moving"
        );
        assert_eq!(owners(&e), before, "{strategy:?}");
        check_invariants(&e, at(200));
    }
}
