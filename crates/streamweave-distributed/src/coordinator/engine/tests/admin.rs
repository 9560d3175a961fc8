//! Admin operations and their validation: invalid assignments change nothing, manual moves,
//! rebalancing, registration limits and duplicates.

use super::*;

#[test]
fn assign_partitions_rejects_invalid_requests_and_changes_nothing() {
    let mut e = three_workers(Manual);
    let out = register(&mut e, 4, "w4", 2, &[], at(0));
    ack_all(&mut e, out, at(0));
    let before = owners(&e);
    let g0 = e.generation();
    let cases: &[(&str, &[PartitionId], &str)] = &[
        ("nobody", &[0], "worker not found: nobody"),
        ("w1", &[12], "invalid partition: partition 12 is out of range"),
        ("w1", &[4, 5, 4], "invalid partition: partition 4 is listed twice"),
        (
            "w4",
            &[0, 1, 2],
            "invalid partition: worker w4 can run 2 tasks; this assignment would give it 3",
        ),
    ];
    for &(worker, partitions, message) in cases {
        let err = e.assign_partitions(&w(worker), partitions, at(0)).unwrap_err();
        let right_kind = match &err {
            CoordinatorError::WorkerNotFound(id) => {
                id == &w(worker) && message.starts_with("worker not found")
            }
            CoordinatorError::InvalidPartition(_) => message.starts_with("invalid partition"),
            _ => false,
        };
        assert!(right_kind, "{worker} {partitions:?}: {err:?}");
        assert!(err.to_string().starts_with(message), "{err}");
        assert_eq!(owners(&e), before);
        assert_eq!(e.generation(), g0);
    }
}

#[test]
fn manual_assign_revokes_then_grants_after_the_ack() {
    let mut e = three_workers(Manual);
    let g1 = e.generation().next();
    let out = e.assign_partitions(&w("w3"), &[0, 1], at(0)).unwrap();
    let expected = vec![
        revoking("w1", 0, g1),
        revoking("w1", 1, g1),
        assignment(1, g1, &[2, 3]),
    ];
    assert_eq!(out, expected);
    assert_eq!(
        e.status(at(0)).moving,
        [moving(0, "w1", "w3"), moving(1, "w1", "w3")]
    );
    assert_eq!(owned(&e, "w3"), [8, 9, 10, 11]);

    let g2 = g1.next();
    let out = e.handle(
        Input::Ack {
            conn: 1,
            generation: g1,
            running: vec![2, 3],
        },
        at(10),
    );
    let expected = vec![
        released("w1", 0),
        released("w1", 1),
        granted("w3", 0, g2),
        granted("w3", 1, g2),
        assignment(3, g2, &[0, 1, 8, 9, 10, 11]),
    ];
    assert_eq!(out, expected);
    ack_all(&mut e, out, at(10));
    assert_eq!(counts(&e), [2, 4, 6]);
}

#[test]
fn rebalance_balances_a_lopsided_manual_cluster() {
    let mut e = engine(Manual);
    for (conn, id, requested) in [
        (1, "w1", vec![0, 1, 2, 3, 4, 5]),
        (2, "w2", vec![6, 7]),
        (3, "w3", vec![]),
    ] {
        let out = register(&mut e, conn, id, AMPLE, &requested, at(0));
        ack_all(&mut e, out, at(0));
    }
    assert_eq!(e.status(at(0)).unassigned, [8, 9, 10, 11]);
    let out = e.rebalance(at(0));
    ack_all(&mut e, out, at(0));
    assert_eq!(counts(&e), [4, 4, 4]);
    assert_eq!(owned(&e, "w1"), [0, 1, 2, 3], "w1 keeps its lowest partitions");
    assert!(is_subset(&[6, 7], &owned(&e, "w2")), "w2 keeps its own");
    let status = e.status(at(0));
    assert!(status.unassigned.is_empty() && status.moving.is_empty());
    // Balanced already: a second rebalance changes nothing.
    let g0 = e.generation();
    assert_eq!(e.rebalance(at(0)), vec![]);
    assert_eq!(e.generation(), g0);
}

#[test]
fn registration_beyond_max_workers_is_refused_with_the_limit() {
    let mut e = Engine::new(CoordinatorConfig {
        max_workers: 2,
        ..config(Gradual)
    });
    for (conn, id) in [(1, "w1"), (2, "w2")] {
        let out = register(&mut e, conn, id, AMPLE, &[], at(0));
        ack_all(&mut e, out, at(0));
    }
    let out = register(&mut e, 3, "w3", AMPLE, &[], at(10));
    let [Action::Send {
        conn: 3,
        message: CoordinatorMessage::RegistrationRefused { reason },
    }, Action::Close { conn: 3 }] = &out[..]
    else {
        panic!("expected a refusal and a close, got {out:?}");
    };
    assert!(reason.contains("max_workers is 2"), "{reason}");
    assert_eq!(owners(&e).len(), 2);

    // A new run of a member is no new member: it is not refused.
    let g0 = e.generation();
    let out = e.handle(
        Input::Register {
            conn: 20,
            request: request("w2", 2, AMPLE, &[]),
        },
        at(20),
    );
    assert!(out.contains(&event(ClusterEvent::Fenced { worker: w("w2") })));
    assert!(out.contains(&registered(20, g0)));

    // Room again once a member left.
    e.handle(Input::Leave { conn: 20 }, at(30));
    let out = register(&mut e, 4, "w3", AMPLE, &[], at(40));
    assert!(out.contains(&joined("w3")), "{out:?}");
}

#[test]
fn register_worker_refuses_duplicates_and_workers_beyond_the_limit() {
    let mut e = Engine::new(CoordinatorConfig {
        max_workers: 2,
        ..config(Gradual)
    });
    let out = register(&mut e, 1, "w1", AMPLE, &[], at(0));
    ack_all(&mut e, out, at(0));
    let info = |id: &str| WorkerInfo::new(w(id), format!("{id}.local:9000"), AMPLE, at(0));

    let out = e.register_worker(info("w2"), at(0)).unwrap();
    assert!(out.contains(&joined("w2")));
    let status = e.status(at(0));
    assert_eq!(status.workers[1].state, WorkerState::Disconnected);

    for (id, message) in [
        ("w2", "worker w2 is already registered"),
        ("w3", "max_workers is 2"),
    ] {
        match e.register_worker(info(id), at(10)) {
            Err(CoordinatorError::RegistrationFailed(m)) => assert!(m.contains(message), "{m}"),
            other => panic!("{id}: expected RegistrationFailed, got {other:?}"),
        }
    }

    // It must connect and heartbeat within the timeout, or it fails like any other.
    heartbeat(&mut e, 1, at(1_500));
    let out = e.handle(Input::Tick, at(TIMEOUT_MS + 1));
    assert!(
        out.contains(&event(ClusterEvent::Failed { worker: w("w2") })),
        "{out:?}"
    );
}

#[test]
fn admin_requests_answer_with_the_engine_state_at_their_time() {
    let mut e = three_workers(Manual);
    let (answer, actions) = e.admin(AdminRequest::Status, at(50));
    assert!(actions.is_empty());
    let AdminAnswer::Status(status) = answer else {
        panic!("expected a status, got {answer:?}");
    };
    assert_eq!(status.workers[0].last_heartbeat_ms, 50);
    let (answer, actions) = e.admin(AdminRequest::FailWorker(w("nobody")), at(50));
    assert!(actions.is_empty());
    assert!(matches!(
        answer,
        AdminAnswer::Done(Err(CoordinatorError::WorkerNotFound(_)))
    ));
    let g0 = e.generation();
    let (answer, actions) = e.admin(
        AdminRequest::Assign {
            worker: w("w2"),
            partitions: vec![0],
        },
        at(50),
    );
    assert!(!actions.is_empty());
    assert!(matches!(answer, AdminAnswer::Done(Ok(g)) if g == g0.next()));
    let (answer, _) = e.admin(AdminRequest::Checkpoint, at(50));
    assert!(matches!(answer, AdminAnswer::Checkpoint(Err(_))), "no job runs");
}
