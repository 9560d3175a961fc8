//! Reconnection and fencing: the same run reconnecting keeps its session, a new run fences the
//! old one, an older run that comes back is fenced and changes nothing.

use super::*;

#[test]
fn reconnecting_with_the_same_incarnation_keeps_the_session_and_partitions() {
    let mut e = three_workers(Gradual);
    let before = owners(&e);
    let g0 = e.generation();
    e.handle(Input::Disconnected { conn: 3 }, at(100));
    let out = e.handle(
        Input::Register {
            conn: 30,
            request: request("w3", 1, AMPLE, &[]),
        },
        at(1_800),
    );
    assert_eq!(out, vec![registered(30, g0), assignment(30, g0, &[4, 5, 10, 11])]);
    assert_eq!(owners(&e), before);
    assert_eq!(e.generation(), g0);

    // Reconnecting counts as being heard from.
    heartbeat(&mut e, 1, at(2_500));
    heartbeat(&mut e, 2, at(2_500));
    assert_eq!(e.handle(Input::Tick, at(3_000)), vec![]);
    let status = e.status(at(3_000));
    assert!(status.workers.iter().all(|s| s.state == WorkerState::Active));

    // A reconnect on a new connection before the old one was seen closing closes the old one.
    let out = e.handle(
        Input::Register {
            conn: 31,
            request: request("w3", 1, AMPLE, &[]),
        },
        at(3_100),
    );
    let expected = vec![
        Action::Close { conn: 30 },
        registered(31, g0),
        assignment(31, g0, &[4, 5, 10, 11]),
    ];
    assert_eq!(out, expected);
    assert_eq!(
        e.handle(Input::Leave { conn: 30 }, at(3_200)),
        vec![],
        "the old conn is gone"
    );
    assert_eq!(owners(&e), before);
}

#[test]
fn a_new_incarnation_fences_the_old_session_and_gets_its_partitions_back() {
    let mut e = three_workers(Gradual);
    let before = owners(&e);
    let g0 = e.generation();
    let g1 = g0.next();
    let out = e.handle(
        Input::Register {
            conn: 31,
            request: request("w3", 2, AMPLE, &[]),
        },
        at(500),
    );
    let mut expected = vec![
        Action::Send {
            conn: 3,
            message: CoordinatorMessage::Fenced {
                reason: "a newer run of worker w3 registered".to_string(),
            },
        },
        Action::Close { conn: 3 },
        event(ClusterEvent::Fenced { worker: w("w3") }),
    ];
    expected.extend([4, 5, 10, 11].map(|p| released("w3", p)));
    expected.extend([registered(31, g0), joined("w3")]);
    expected.extend([4, 5, 10, 11].map(|p| granted("w3", p, g1)));
    expected.push(assignment(31, g1, &[4, 5, 10, 11]));
    assert_eq!(out, expected);
    assert_eq!(owners(&e), before);

    // The fenced session's inputs are ignored.
    let stale = [
        Input::Ack {
            conn: 3,
            generation: g1,
            running: vec![],
        },
        Input::Heartbeat {
            conn: 3,
            running: vec![],
        },
        Input::Leave { conn: 3 },
        Input::Disconnected { conn: 3 },
    ];
    for input in stale {
        assert_eq!(e.handle(input.clone(), at(600)), vec![], "{input:?}");
    }
    assert_eq!(owners(&e), before);
}

#[test]
fn an_older_run_that_comes_back_is_fenced_and_changes_nothing() {
    let mut e = three_workers(Gradual);
    // A newer run of w3 takes over ...
    e.handle(
        Input::Register {
            conn: 31,
            request: request("w3", 5, AMPLE, &[]),
        },
        at(500),
    );
    let before = owners(&e);
    let g = e.generation();
    // ... then the old run (incarnation 1) wakes up and registers again: it is turned away.
    let out = e.handle(
        Input::Register {
            conn: 32,
            request: request("w3", 1, AMPLE, &[]),
        },
        at(600),
    );
    assert_eq!(
        out,
        vec![
            Action::Send {
                conn: 32,
                message: CoordinatorMessage::Fenced {
                    reason: "a newer run of worker w3 is registered".to_string()
                },
            },
            Action::Close { conn: 32 },
        ]
    );
    assert_eq!(owners(&e), before);
    assert_eq!(e.generation(), g);
    // The newer run's session is untouched.
    assert_eq!(
        e.handle(
            Input::Heartbeat {
                conn: 31,
                running: vec![]
            },
            at(700)
        ),
        vec![]
    );
    assert!(e
        .status(at(700))
        .workers
        .iter()
        .any(|w| w.id == WorkerId::new("w3") && w.healthy));
}
