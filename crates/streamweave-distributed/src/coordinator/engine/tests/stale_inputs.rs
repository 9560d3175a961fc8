//! Stale and foreign inputs: old acks and unknown connections change nothing.

use super::*;

#[test]
fn an_ack_of_an_older_generation_does_not_release_a_newer_revoke() {
    let mut e = three_workers(Manual);
    let g0 = e.generation();
    let (g1, g2, g3) = (g0.next(), g0.next().next(), g0.next().next().next());
    let out = e.assign_partitions(&w("w2"), &[0], at(0)).unwrap();
    assert_eq!(out, vec![revoking("w1", 0, g1), assignment(1, g1, &[1, 2, 3])]);
    let out = e.assign_partitions(&w("w2"), &[1], at(0)).unwrap();
    assert_eq!(out, vec![revoking("w1", 1, g2), assignment(1, g2, &[2, 3])]);

    // Older than both revokes: releases nothing, even though it runs neither.
    let ack = |generation| Input::Ack {
        conn: 1,
        generation,
        running: vec![2, 3],
    };
    assert_eq!(e.handle(ack(g0), at(10)), vec![]);
    assert_eq!(e.status(at(10)).moving.len(), 2);
    // Of the first revoke's generation: releases 0, not 1 (revoked later).
    let expected = vec![
        released("w1", 0),
        granted("w2", 0, g3),
        assignment(2, g3, &[0, 4, 5, 6, 7]),
    ];
    assert_eq!(e.handle(ack(g1), at(20)), expected);
    assert_eq!(e.status(at(20)).moving, [moving(1, "w1", "w2")]);
    let out = e.handle(ack(g2), at(30));
    assert_eq!(out[0], released("w1", 1));
    assert!(e.status(at(30)).moving.is_empty());
}

#[test]
fn inputs_from_unknown_connections_are_ignored() {
    for strategy in STRATEGIES {
        let mut e = three_workers(strategy);
        let before = e.status(at(50));
        let foreign = [
            Input::Heartbeat {
                conn: 99,
                running: vec![0],
            },
            Input::Ack {
                conn: 99,
                generation: e.generation(),
                running: vec![],
            },
            Input::Leave { conn: 99 },
            Input::Disconnected { conn: 99 },
            // A second registration on a connection already in use.
            Input::Register {
                conn: 1,
                request: request("w9", 1, AMPLE, &[0]),
            },
        ];
        for input in foreign {
            assert_eq!(e.handle(input.clone(), at(50)), vec![], "{strategy:?} {input:?}");
            assert_eq!(e.status(at(50)), before, "{strategy:?} {input:?}");
        }
    }
}
