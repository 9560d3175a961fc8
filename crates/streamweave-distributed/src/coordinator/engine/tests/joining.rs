//! Workers joining under each strategy: the balanced end state, requested partitions, and how
//! `Gradual`, `Immediate` and `Manual` move partitions (never two owners at once).

use super::*;

#[test]
fn three_workers_end_balanced_under_every_strategy() {
    for strategy in STRATEGIES {
        let mut e = engine(strategy);
        let mut seen = Vec::new();
        for (conn, id) in [(1, "w1"), (2, "w2"), (3, "w3")] {
            let out = register(&mut e, conn, id, AMPLE, &[], at(0));
            seen.extend(ack_all(&mut e, out, at(0)));
            check_invariants(&e, at(0));
        }
        if strategy == Manual {
            // Under Manual a join moves nothing, and nobody asked for a partition.
            assert!(assignments(&seen).is_empty());
            assert_eq!(e.status(at(0)).unassigned, (0..P).collect::<Vec<_>>());
            let out = e.rebalance(at(0));
            seen.extend(ack_all(&mut e, out, at(0)));
        }
        assert_eq!(counts(&e), [4, 4, 4], "{strategy:?}");
        assert!(e.ownership().iter().all(Option::is_some), "{strategy:?}");
        let status = e.status(at(0));
        assert!(
            status.unassigned.is_empty() && status.moving.is_empty(),
            "{strategy:?}"
        );
        assert!(e.generation() > Generation::default(), "{strategy:?}");
        assert_eq!(status.generation, e.generation());
        // Each worker was last told exactly the set it owns.
        for (conn, id) in [(1, "w1"), (2, "w2"), (3, "w3")] {
            let last = assignments(&seen).into_iter().rev().find(|a| a.0 == conn);
            assert_eq!(last.map(|a| a.2), Some(owned(&e, id)), "{strategy:?} {id}");
        }
        check_invariants(&e, at(0));
    }
}

#[test]
fn requested_partitions_are_honoured_when_free() {
    for strategy in [Gradual, Immediate] {
        let mut e = engine(strategy);
        let out = register(&mut e, 1, "w1", 4, &[], at(0));
        ack_all(&mut e, out, at(0));
        assert_eq!(owned(&e, "w1"), [0, 1, 2, 3]);
        let g0 = e.generation();
        // 0 is w1's, 10 and 11 are free: w2 gets exactly those two.
        let out = register(&mut e, 2, "w2", 2, &[11, 0, 10], at(10));
        let expected = vec![
            registered(2, g0),
            joined("w2"),
            granted("w2", 10, g0.next()),
            granted("w2", 11, g0.next()),
            assignment(2, g0.next(), &[10, 11]),
        ];
        assert_eq!(out, expected, "{strategy:?}");
        assert_eq!(owned(&e, "w1"), [0, 1, 2, 3], "{strategy:?}");
        assert_eq!(
            e.status(at(10)).unassigned,
            [4, 5, 6, 7, 8, 9],
            "beyond total capacity"
        );
    }
}

#[test]
fn requested_partitions_owned_by_another_worker_are_not_taken() {
    for strategy in [Gradual, Immediate] {
        let mut e = engine(strategy);
        let out = register(&mut e, 1, "w1", AMPLE, &[], at(0));
        ack_all(&mut e, out, at(0));
        let out = register(&mut e, 2, "w2", AMPLE, &[0, 1], at(10));
        ack_all(&mut e, out, at(10));
        assert_eq!(owned(&e, "w1"), [0, 1, 2, 3, 4, 5], "{strategy:?}");
        assert_eq!(owned(&e, "w2"), [6, 7, 8, 9, 10, 11], "{strategy:?}");
    }
}

/// Follows the partition in flight through a gradual join, step by step.
#[derive(Default)]
struct MoveTracker {
    /// The partition being moved: revoked and not yet applied by its new owner.
    in_flight: Option<PartitionId>,
    revoked: Vec<PartitionId>,
}

impl MoveTracker {
    /// Checks the events of one step. `answering` is the worker whose ack caused them and the
    /// partitions it said it runs.
    fn observe(
        &mut self,
        out: &[Action],
        answering: Option<(&WorkerId, &[PartitionId])>,
        before: &BTreeMap<WorkerId, Vec<PartitionId>>,
    ) {
        for ev in events(out) {
            match ev {
                ClusterEvent::Revoking { partition, .. } => {
                    assert_eq!(
                        self.in_flight, None,
                        "revoked {partition} while another move is in flight"
                    );
                    self.in_flight = Some(partition);
                    self.revoked.push(partition);
                }
                ClusterEvent::Granted {
                    worker, partition, ..
                } => {
                    assert_eq!(worker, w("w4"));
                    assert_eq!(
                        self.in_flight,
                        Some(partition),
                        "granted a partition that is not in flight"
                    );
                    let old_owner = before
                        .iter()
                        .find(|(_, ps)| ps.contains(&partition))
                        .map(|(id, _)| id);
                    let (acker, running) = answering.expect("a grant answers an ack");
                    assert_eq!(
                        Some(acker),
                        old_owner,
                        "{partition} granted on another worker's ack"
                    );
                    assert!(
                        !running.contains(&partition),
                        "granted while the old owner still runs it"
                    );
                }
                _ => {}
            }
        }
    }
}

#[test]
fn gradual_join_moves_one_partition_at_a_time_and_never_has_two_owners() {
    let mut e = three_workers(Gradual);
    let before = owners(&e);
    // What each worker process runs: it changes only when the worker applies an assignment.
    let mut running: BTreeMap<ConnId, Vec<PartitionId>> =
        (1..=3).map(|c| (c, owned(&e, &format!("w{c}")))).collect();
    let mut tracker = MoveTracker::default();

    let out = register(&mut e, 4, "w4", AMPLE, &[], at(10));
    tracker.observe(&out, None, &before);
    let mut inbox: VecDeque<_> = assignments(&out).into();
    let mut steps = 0;
    while let Some((conn, generation, partitions)) = inbox.pop_front() {
        steps += 1;
        assert!(steps < 100, "the join never settles");
        // The worker applies the assignment, then acks it.
        if conn == 4 && tracker.in_flight.is_some_and(|p| partitions.contains(&p)) {
            tracker.in_flight = None;
        }
        running.insert(conn, partitions.clone());
        let ack = Input::Ack {
            conn,
            generation,
            running: partitions.clone(),
        };
        let out = e.handle(ack, at(10));
        let acker = w(&format!("w{conn}"));
        tracker.observe(&out, Some((&acker, &partitions)), &before);
        inbox.extend(assignments(&out));

        check_invariants(&e, at(10));
        assert!(
            e.status(at(10)).moving.len() <= 1,
            "more than one partition in revocation"
        );
        let mut everywhere = BTreeSet::new();
        for &q in running.values().flatten() {
            assert!(
                everywhere.insert(q),
                "partition {q} runs on two workers: {running:?}"
            );
        }
    }

    // Only w4's three partitions moved, one after the other, in partition order.
    assert_eq!(tracker.revoked, [3, 9, 11]);
    assert_eq!(tracker.in_flight, None);
    assert_eq!(owned(&e, "w4"), [3, 9, 11]);
    for id in ["w1", "w2", "w3"] {
        let now = owned(&e, id);
        assert_eq!(now.len(), 3, "{id}");
        assert!(
            is_subset(&now, &before[&w(id)]),
            "{id} kept {now:?} of {:?}",
            before[&w(id)]
        );
    }
    let status = e.status(at(10));
    assert!(status.moving.is_empty() && status.unassigned.is_empty());
}

#[test]
fn gradual_grants_only_after_an_ack_of_the_revoke_without_the_partition() {
    let mut e = three_workers(Gradual);
    let g0 = e.generation();
    let g1 = g0.next();
    let out = register(&mut e, 4, "w4", AMPLE, &[], at(10));
    // w4 gets nothing yet: partition 3 is first taken from w1.
    let expected = vec![
        registered(4, g0),
        joined("w4"),
        revoking("w1", 3, g1),
        assignment(1, g1, &[0, 1, 2]),
    ];
    assert_eq!(out, expected);
    assert_eq!(e.status(at(10)).moving, [moving(3, "w1", "w4")]);

    let not_yet = [
        (
            "an ack of an older generation",
            Input::Ack {
                conn: 1,
                generation: g0,
                running: vec![0, 1, 2],
            },
        ),
        (
            "an ack still running it",
            Input::Ack {
                conn: 1,
                generation: g1,
                running: vec![0, 1, 2, 3],
            },
        ),
        (
            "a heartbeat",
            Input::Heartbeat {
                conn: 1,
                running: vec![0, 1, 2],
            },
        ),
        (
            "another worker's ack",
            Input::Ack {
                conn: 2,
                generation: g1,
                running: vec![6, 7, 8, 9],
            },
        ),
    ];
    for (what, input) in not_yet {
        assert_eq!(e.handle(input, at(20)), vec![], "{what}");
        assert_eq!(e.status(at(20)).moving, [moving(3, "w1", "w4")], "{what}");
    }

    let ack = Input::Ack {
        conn: 1,
        generation: g1,
        running: vec![0, 1, 2],
    };
    let g2 = g1.next();
    let expected = vec![released("w1", 3), granted("w4", 3, g2), assignment(4, g2, &[3])];
    assert_eq!(e.handle(ack, at(30)), expected);
    // The next partition waits until w4 applied its grant.
    assert!(e.status(at(30)).moving.is_empty());
    let out = e.handle(
        Input::Ack {
            conn: 4,
            generation: g2,
            running: vec![3],
        },
        at(40),
    );
    let g3 = g2.next();
    assert_eq!(out, vec![revoking("w2", 9, g3), assignment(2, g3, &[6, 7, 8])]);
}

#[test]
fn gradual_revoke_completes_when_the_old_owner_dies() {
    let mut e = three_workers(Gradual);
    let g1 = e.generation().next();
    let out = register(&mut e, 4, "w4", AMPLE, &[], at(10));
    assert_eq!(revocations(&out), 1);
    assert_eq!(e.status(at(10)).moving, [moving(3, "w1", "w4")]);
    heartbeat(&mut e, 2, at(1_000));
    heartbeat(&mut e, 3, at(1_000));

    // w1 never acks and falls silent: 3 is granted without its ack, with w1's other partitions.
    let out = e.handle(Input::Tick, at(TIMEOUT_MS + 1));
    let g2 = g1.next();
    let expected = vec![
        shutdown(1, "declared failed: no heartbeat for 2s"),
        Action::Close { conn: 1 },
        event(ClusterEvent::Failed { worker: w("w1") }),
        released("w1", 0),
        released("w1", 1),
        released("w1", 2),
        released("w1", 3),
        granted("w4", 0, g2),
        granted("w4", 1, g2),
        granted("w4", 2, g2),
        granted("w4", 3, g2),
        assignment(4, g2, &[0, 1, 2, 3]),
    ];
    assert_eq!(out, expected);
    let status = e.status(at(TIMEOUT_MS + 1));
    assert!(status.moving.is_empty() && status.unassigned.is_empty());
    check_invariants(&e, at(TIMEOUT_MS + 1));
}

#[test]
fn immediate_join_moves_everything_in_one_generation() {
    let mut e = three_workers(Immediate);
    let g1 = e.generation().next();
    let out = register(&mut e, 4, "w4", AMPLE, &[], at(10));
    let expected = vec![
        (1, g1, vec![0, 1, 2]),
        (2, g1, vec![6, 7, 8]),
        (3, g1, vec![4, 5, 10]),
        (4, g1, vec![3, 9, 11]),
    ];
    assert_eq!(assignments(&out), expected);
    assert_eq!(e.generation(), g1);
    assert_eq!(revocations(&out), 3);
    assert_eq!(granted_partitions(&out), BTreeSet::from([3, 9, 11]));
    assert_eq!(counts(&e), [3, 3, 3, 3]);
    // Acks settle nothing further: the move was complete.
    let seen = ack_all(&mut e, out.clone(), at(10));
    assert_eq!(seen, out);
    assert_eq!(e.generation(), g1);
}

#[test]
fn manual_join_moves_nothing_and_gives_only_free_requested_partitions() {
    let mut e = engine(Manual);
    for (conn, id, range) in [(1, "w1", 0..5), (2, "w2", 5..10)] {
        let out = register(&mut e, conn, id, AMPLE, &range.collect::<Vec<_>>(), at(0));
        ack_all(&mut e, out, at(0));
    }
    let before = owners(&e);
    let g0 = e.generation();
    // 0 is w1's, 11 is free.
    let out = register(&mut e, 3, "w3", AMPLE, &[0, 11], at(10));
    let expected = vec![
        registered(3, g0),
        joined("w3"),
        granted("w3", 11, g0.next()),
        assignment(3, g0.next(), &[11]),
    ];
    assert_eq!(out, expected);
    let out = register(&mut e, 4, "w4", AMPLE, &[], at(10));
    assert_eq!(out, vec![registered(4, g0.next()), joined("w4")]);
    for id in ["w1", "w2"] {
        assert_eq!(owned(&e, id), before[&w(id)]);
    }
    assert_eq!(e.status(at(10)).unassigned, [10]);
}
