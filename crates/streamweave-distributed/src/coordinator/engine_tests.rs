//! Golden tests of the engine, judged by the actions it emits, and a property test of its
//! ownership invariants under random operations. No sockets and no sleeps: time is a fixed base
//! instant plus explicit offsets in milliseconds ([`at`]).

use std::collections::VecDeque;
use std::sync::OnceLock;

use proptest::prelude::*;

use super::*;

use RebalanceStrategy::{Gradual, Immediate, Manual};

const P: usize = 12;
const AMPLE: usize = 100;
const TIMEOUT_MS: u64 = 2_000;
const STRATEGIES: [RebalanceStrategy; 3] = [Gradual, Immediate, Manual];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The fixed base instant plus `ms` milliseconds.
fn at(ms: u64) -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
}

fn w(id: &str) -> WorkerId {
    WorkerId::new(id)
}

fn config(strategy: RebalanceStrategy) -> CoordinatorConfig {
    CoordinatorConfig {
        num_partitions: P,
        rebalance_strategy: strategy,
        heartbeat_timeout: Duration::from_millis(TIMEOUT_MS),
        health_check_interval: Duration::from_millis(200),
        ..CoordinatorConfig::default()
    }
}

fn engine(strategy: RebalanceStrategy) -> Engine {
    Engine::new(config(strategy))
}

fn request(id: &str, incarnation: u64, capacity: usize, requested: &[PartitionId]) -> RegisterRequest {
    RegisterRequest {
        worker_id: w(id),
        incarnation,
        address: format!("{id}.local:9000"),
        capacity,
        requested: requested.to_vec(),
        jobs: Vec::new(),
    }
}

/// The first run (incarnation 1) of worker `id` registers on `conn`.
fn register(
    e: &mut Engine,
    conn: ConnId,
    id: &str,
    capacity: usize,
    requested: &[PartitionId],
    now: Instant,
) -> Vec<Action> {
    let request = request(id, 1, capacity, requested);
    e.handle(Input::Register { conn, request }, now)
}

fn heartbeat(e: &mut Engine, conn: ConnId, now: Instant) -> Vec<Action> {
    let running = e
        .worker_info(e.conns.get(&conn).expect("a registered conn"))
        .map_or(vec![], |i| i.partitions);
    e.handle(Input::Heartbeat { conn, running }, now)
}

/// Obedient workers: answers every `Assignment` in `actions` (and in whatever the answers
/// produce, until no new assignment is emitted) with an `Ack` of its generation running exactly
/// its partitions. Returns every action seen, `actions` included, in order.
fn ack_all(e: &mut Engine, actions: Vec<Action>, now: Instant) -> Vec<Action> {
    let mut queue: VecDeque<Action> = actions.into();
    let mut seen = Vec::new();
    while let Some(action) = queue.pop_front() {
        if let Some((conn, generation, partitions)) = as_assignment(&action) {
            let ack = Input::Ack {
                conn,
                generation,
                running: partitions,
            };
            queue.extend(e.handle(ack, now));
        }
        seen.push(action);
        assert!(seen.len() < 10_000, "the workers never settle");
    }
    seen
}

/// Every member and the partitions it owns (members owning nothing included).
fn owners(e: &Engine) -> BTreeMap<WorkerId, Vec<PartitionId>> {
    e.status(at(0))
        .workers
        .into_iter()
        .map(|s| (s.id, s.partitions))
        .collect()
}

fn owned(e: &Engine, id: &str) -> Vec<PartitionId> {
    owners(e).remove(&w(id)).unwrap_or_default()
}

/// Partition counts of the members, by id.
fn counts(e: &Engine) -> Vec<usize> {
    owners(e).values().map(Vec::len).collect()
}

fn is_subset(small: &[PartitionId], big: &[PartitionId]) -> bool {
    small.iter().all(|p| big.contains(p))
}

fn as_assignment(action: &Action) -> Option<(ConnId, Generation, Vec<PartitionId>)> {
    match action {
        Action::Send {
            conn,
            message:
                CoordinatorMessage::Assignment {
                    generation,
                    partitions,
                },
        } => Some((*conn, *generation, partitions.clone())),
        _ => None,
    }
}

fn assignments(actions: &[Action]) -> Vec<(ConnId, Generation, Vec<PartitionId>)> {
    actions.iter().filter_map(as_assignment).collect()
}

fn events(actions: &[Action]) -> Vec<ClusterEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn granted_partitions(actions: &[Action]) -> BTreeSet<PartitionId> {
    events(actions)
        .into_iter()
        .filter_map(|e| match e {
            ClusterEvent::Granted { partition, .. } => Some(partition),
            _ => None,
        })
        .collect()
}

fn revocations(actions: &[Action]) -> usize {
    events(actions)
        .iter()
        .filter(|e| matches!(e, ClusterEvent::Revoking { .. }))
        .count()
}

fn assignment(conn: ConnId, generation: Generation, partitions: &[PartitionId]) -> Action {
    Action::Send {
        conn,
        message: CoordinatorMessage::Assignment {
            generation,
            partitions: partitions.to_vec(),
        },
    }
}

fn registered(conn: ConnId, generation: Generation) -> Action {
    Action::Send {
        conn,
        message: CoordinatorMessage::Registered {
            generation,
            num_partitions: P,
            heartbeat_timeout_ms: TIMEOUT_MS,
        },
    }
}

fn shutdown(conn: ConnId, reason: &str) -> Action {
    Action::Send {
        conn,
        message: CoordinatorMessage::Shutdown {
            reason: reason.to_string(),
        },
    }
}

fn event(e: ClusterEvent) -> Action {
    Action::Event(e)
}

fn joined(id: &str) -> Action {
    event(ClusterEvent::Joined { worker: w(id) })
}

fn granted(id: &str, partition: PartitionId, generation: Generation) -> Action {
    event(ClusterEvent::Granted {
        worker: w(id),
        partition,
        generation,
    })
}

fn revoking(id: &str, partition: PartitionId, generation: Generation) -> Action {
    event(ClusterEvent::Revoking {
        worker: w(id),
        partition,
        generation,
    })
}

fn released(id: &str, partition: PartitionId) -> Action {
    event(ClusterEvent::Released {
        worker: w(id),
        partition,
    })
}

fn moving(partition: PartitionId, from: &str, to: &str) -> MovingPartition {
    MovingPartition {
        partition,
        from: w(from),
        to: Some(w(to)),
    }
}

/// Three workers of ample capacity, w1..w3 on conns 1..3, every assignment applied at time 0.
/// Under Gradual and Immediate they end up with w1 [0,1,2,3], w2 [6,7,8,9], w3 [4,5,10,11]
/// (w1 first takes all, w2 then w3 join); under Manual they ask for and get [0..4], [4..8],
/// [8..12].
fn three_workers_with(config: CoordinatorConfig) -> Engine {
    let manual = config.rebalance_strategy == Manual;
    let mut e = Engine::new(config);
    for (conn, id, range) in [(1, "w1", 0..4), (2, "w2", 4..8), (3, "w3", 8..12)] {
        let requested: Vec<PartitionId> = if manual { range.collect() } else { vec![] };
        let out = register(&mut e, conn, id, AMPLE, &requested, at(0));
        ack_all(&mut e, out, at(0));
    }
    check_invariants(&e, at(0));
    e
}

fn three_workers(strategy: RebalanceStrategy) -> Engine {
    three_workers_with(config(strategy))
}

/// The ownership invariants, through the public status: every partition is exactly one of
/// owned (by exactly one member), unassigned or moving; no member owns more than its capacity;
/// `ownership()` agrees with the status.
fn check_invariants(e: &Engine, now: Instant) {
    let status = e.status(now);
    let p = status.partitions;
    let mut places: Vec<Vec<String>> = vec![Vec::new(); p];
    for worker in &status.workers {
        assert!(
            worker.partitions.len() <= worker.capacity,
            "{} owns {:?}, above its capacity {}",
            worker.id,
            worker.partitions,
            worker.capacity
        );
        assert!(worker.partitions.windows(2).all(|x| x[0] < x[1]), "{status:?}");
        for &q in &worker.partitions {
            places[q].push(format!("owned by {}", worker.id));
            assert_eq!(e.ownership()[q].as_ref(), Some(&worker.id));
        }
    }
    for &q in &status.unassigned {
        places[q].push("unassigned".to_string());
        assert_eq!(e.ownership()[q], None);
    }
    for m in &status.moving {
        places[m.partition].push(format!("moving from {}", m.from));
        assert_eq!(e.ownership()[m.partition], None);
    }
    for (q, place) in places.iter().enumerate() {
        assert_eq!(place.len(), 1, "partition {q} is {place:?}; status {status:#?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Joining
// ---------------------------------------------------------------------------------------------

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
            let out = e.rebalance();
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

// ---------------------------------------------------------------------------------------------
// Failure, disconnection, fencing, leaving
// ---------------------------------------------------------------------------------------------

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
    let out = e.fail_worker(&w("w3")).unwrap();
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
    assert_eq!(e.handle(Input::Disconnected { conn: 3 }, at(100)), vec![]);
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

#[test]
fn leave_moves_the_partitions_at_once() {
    for strategy in [Gradual, Immediate] {
        let mut e = three_workers(strategy);
        let before = owners(&e);
        let out = e.handle(Input::Leave { conn: 3 }, at(100));
        let mut expected = vec![
            Action::Send {
                conn: 3,
                message: CoordinatorMessage::LeaveAck,
            },
            Action::Close { conn: 3 },
            event(ClusterEvent::Left { worker: w("w3") }),
        ];
        expected.extend([4, 5, 10, 11].map(|p| released("w3", p)));
        assert_eq!(out[..expected.len()], expected, "{strategy:?}");
        // Placed right away, long before any timeout, without waiting for acks.
        assert_eq!(
            granted_partitions(&out),
            BTreeSet::from([4, 5, 10, 11]),
            "{strategy:?}"
        );
        assert_eq!(counts(&e), [6, 6], "{strategy:?}");
        for id in [w("w1"), w("w2")] {
            assert!(is_subset(&before[&id], &owned(&e, id.as_str())), "{strategy:?}");
        }
        let status = e.status(at(100));
        assert!(
            status.unassigned.is_empty() && status.moving.is_empty(),
            "{strategy:?}"
        );
    }
}

#[test]
fn manual_leave_leaves_the_partitions_for_the_admin() {
    let mut e = three_workers(Manual);
    let out = e.handle(Input::Leave { conn: 3 }, at(100));
    assert_eq!(granted_partitions(&out), BTreeSet::new());
    assert_eq!(e.status(at(100)).unassigned, [8, 9, 10, 11]);
    let out = e.rebalance();
    ack_all(&mut e, out, at(100));
    assert_eq!(counts(&e), [6, 6]);
}

// ---------------------------------------------------------------------------------------------
// Admin operations
// ---------------------------------------------------------------------------------------------

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
        let err = e.assign_partitions(&w(worker), partitions).unwrap_err();
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
    let out = e.assign_partitions(&w("w3"), &[0, 1]).unwrap();
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
    let out = e.rebalance();
    ack_all(&mut e, out, at(0));
    assert_eq!(counts(&e), [4, 4, 4]);
    assert_eq!(owned(&e, "w1"), [0, 1, 2, 3], "w1 keeps its lowest partitions");
    assert!(is_subset(&[6, 7], &owned(&e, "w2")), "w2 keeps its own");
    let status = e.status(at(0));
    assert!(status.unassigned.is_empty() && status.moving.is_empty());
    // Balanced already: a second rebalance changes nothing.
    let g0 = e.generation();
    assert_eq!(e.rebalance(), vec![]);
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

// ---------------------------------------------------------------------------------------------
// Stale and foreign inputs
// ---------------------------------------------------------------------------------------------

#[test]
fn an_ack_of_an_older_generation_does_not_release_a_newer_revoke() {
    let mut e = three_workers(Manual);
    let g0 = e.generation();
    let (g1, g2, g3) = (g0.next(), g0.next().next(), g0.next().next().next());
    let out = e.assign_partitions(&w("w2"), &[0]).unwrap();
    assert_eq!(out, vec![revoking("w1", 0, g1), assignment(1, g1, &[1, 2, 3])]);
    let out = e.assign_partitions(&w("w2"), &[1]).unwrap();
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

// ---------------------------------------------------------------------------------------------
// Random operations
// ---------------------------------------------------------------------------------------------

const SIM_P: usize = 8;
const SIM_WORKERS: u8 = 4;

#[derive(Clone, Debug)]
enum Op {
    /// A new run (incarnation) of a worker registers on a new connection; a previous run of the
    /// same id crashed.
    Start {
        worker: u8,
        capacity: usize,
        requested: Vec<PartitionId>,
    },
    /// The run's connection drops and it registers again on a new one.
    Reconnect(u8),
    /// As `Reconnect`, but the new connection registers before the old one is seen closing.
    ReconnectEarly(u8),
    Disconnect(u8),
    Heartbeat(u8),
    /// Every connected worker heartbeats.
    HeartbeatAll,
    /// The worker applies its oldest pending assignment and acks it.
    Apply(u8),
    /// The worker starts what its oldest pending assignment adds but is still stopping what it
    /// removes, and acks saying so.
    ApplySlowly(u8),
    /// The worker finished stopping: it acks its last applied assignment again, now exactly.
    FinishStopping(u8),
    /// Every connected worker applies everything pending.
    ApplyAll,
    Leave(u8),
    Fail(u8),
    /// Time passes (milliseconds); silent workers may fail.
    Tick(u64),
    Assign(u8, Vec<PartitionId>),
    Rebalance,
}

fn op() -> impl Strategy<Value = Op> {
    let worker = || 0..SIM_WORKERS;
    let partitions = || proptest::collection::vec(0..SIM_P + 1, 0..4);
    prop_oneof![
        3 => (worker(), 0usize..9, partitions())
            .prop_map(|(worker, capacity, requested)| Op::Start { worker, capacity, requested }),
        1 => worker().prop_map(Op::Reconnect),
        1 => worker().prop_map(Op::ReconnectEarly),
        1 => worker().prop_map(Op::Disconnect),
        2 => worker().prop_map(Op::Heartbeat),
        3 => Just(Op::HeartbeatAll),
        6 => worker().prop_map(Op::Apply),
        3 => worker().prop_map(Op::ApplySlowly),
        3 => worker().prop_map(Op::FinishStopping),
        2 => Just(Op::ApplyAll),
        1 => worker().prop_map(Op::Leave),
        1 => worker().prop_map(Op::Fail),
        3 => prop_oneof![4 => 0u64..500, 1 => 0u64..3_000].prop_map(Op::Tick),
        3 => (worker(), partitions()).prop_map(|(w, ps)| Op::Assign(w, ps)),
        1 => Just(Op::Rebalance),
    ]
}

/// One to three workers start and settle, then random operations follow.
fn scenario() -> impl Strategy<Value = Vec<Op>> {
    let first = (2usize..9, proptest::collection::vec(0..SIM_P, 0..4));
    (
        proptest::collection::vec(first, 1..=3),
        proptest::collection::vec(op(), 1..80),
    )
        .prop_map(|(first, rest)| {
            let starts = first
                .into_iter()
                .zip(0..)
                .map(|((capacity, requested), worker)| Op::Start {
                    worker,
                    capacity,
                    requested,
                });
            starts.chain([Op::ApplyAll]).chain(rest).collect()
        })
}

/// One worker run as it behaves on its side of the wire: it applies assignments in order (some
/// slowly, reporting partitions it has not stopped yet), and stops everything when told to or
/// when it is declared failed (a cut-off worker stops itself once the timeout passed).
#[derive(Debug)]
struct Process {
    incarnation: u64,
    capacity: usize,
    conn: Option<ConnId>,
    running: Vec<PartitionId>,
    /// The last assignment applied.
    applied: Option<(Generation, Vec<PartitionId>)>,
    inbox: VecDeque<(Generation, Vec<PartitionId>)>,
}

/// The engine and the worker runs it talks to.
struct World {
    e: Engine,
    strategy: RebalanceStrategy,
    now_ms: u64,
    next_conn: ConnId,
    next_incarnation: u64,
    procs: BTreeMap<u8, Process>,
}

impl World {
    fn new(strategy: RebalanceStrategy) -> Self {
        World {
            e: Engine::new(CoordinatorConfig {
                num_partitions: SIM_P,
                max_workers: 3,
                ..config(strategy)
            }),
            strategy,
            now_ms: 0,
            next_conn: 1,
            next_incarnation: 1,
            procs: BTreeMap::new(),
        }
    }

    fn id(i: u8) -> WorkerId {
        w(&format!("w{i}"))
    }

    fn now(&self) -> Instant {
        at(self.now_ms)
    }

    fn conn_of(&self, i: u8) -> Option<ConnId> {
        self.procs.get(&i).and_then(|p| p.conn)
    }

    fn input(&mut self, input: Input) {
        let out = self.e.handle(input, self.now());
        self.carry_out(out);
    }

    fn carry_out(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { conn, message } => {
                    let Some((&i, proc_)) = self.procs.iter_mut().find(|(_, p)| p.conn == Some(conn)) else {
                        continue;
                    };
                    match message {
                        CoordinatorMessage::Assignment {
                            generation,
                            partitions,
                        } => {
                            assert!(generation <= self.e.generation());
                            assert!(partitions.windows(2).all(|x| x[0] < x[1]), "{partitions:?}");
                            assert!(partitions.iter().all(|&p| p < SIM_P), "{partitions:?}");
                            proc_.inbox.push_back((generation, partitions));
                        }
                        CoordinatorMessage::Registered { .. } => {}
                        CoordinatorMessage::StartJob { .. }
                        | CoordinatorMessage::StopJob { .. }
                        | CoordinatorMessage::TriggerCheckpoint { .. }
                        | CoordinatorMessage::AdoptPartitions { .. }
                        | CoordinatorMessage::CommitEpochs { .. } => {
                            unreachable!("no job is configured in this simulation")
                        }
                        CoordinatorMessage::RegistrationRefused { .. }
                        | CoordinatorMessage::LeaveAck
                        | CoordinatorMessage::Shutdown { .. }
                        | CoordinatorMessage::Fenced { .. } => {
                            self.procs.remove(&i);
                        }
                    }
                }
                Action::Close { conn } => {
                    if let Some(p) = self.procs.values_mut().find(|p| p.conn == Some(conn)) {
                        p.conn = None;
                        p.inbox.clear();
                    }
                }
                Action::Event(ClusterEvent::Failed { worker }) => {
                    self.procs.retain(|&i, _| Self::id(i) != worker);
                }
                Action::Event(_) => {}
                Action::WriteCheckpoint { .. } => unreachable!("no checkpoints in this simulation"),
            }
        }
    }

    fn register(&mut self, i: u8, requested: Vec<PartitionId>) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let p = self.procs.get_mut(&i).expect("a process");
        p.conn = Some(conn);
        // Whatever was still in flight on an old connection is lost.
        p.inbox.clear();
        let request = RegisterRequest {
            worker_id: Self::id(i),
            incarnation: p.incarnation,
            address: format!("w{i}.local:9000"),
            capacity: p.capacity,
            requested,
            jobs: Vec::new(),
        };
        self.input(Input::Register { conn, request });
    }

    fn apply(&mut self, i: u8) -> bool {
        let Some(p) = self.procs.get_mut(&i) else {
            return false;
        };
        let (Some(conn), Some((generation, partitions))) = (p.conn, p.inbox.pop_front()) else {
            return false;
        };
        p.running = partitions.clone();
        p.applied = Some((generation, partitions.clone()));
        self.input(Input::Ack {
            conn,
            generation,
            running: partitions,
        });
        true
    }

    fn finish_stopping(&mut self, i: u8) {
        let Some(p) = self.procs.get_mut(&i) else { return };
        let (Some(conn), Some((generation, partitions))) = (p.conn, p.applied.clone()) else {
            return;
        };
        if p.running != partitions {
            p.running = partitions.clone();
            self.input(Input::Ack {
                conn,
                generation,
                running: partitions,
            });
        }
    }

    fn apply_all(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for i in self.procs.keys().copied().collect::<Vec<_>>() {
                progressed |= self.apply(i);
            }
            if !progressed {
                return;
            }
        }
        panic!("the workers never settle");
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Start {
                worker,
                capacity,
                requested,
            } => {
                let incarnation = self.next_incarnation;
                self.next_incarnation += 1;
                let proc_ = Process {
                    incarnation,
                    capacity,
                    conn: None,
                    running: Vec::new(),
                    applied: None,
                    inbox: VecDeque::new(),
                };
                self.procs.insert(worker, proc_);
                self.register(worker, requested);
            }
            Op::Reconnect(i) => {
                if let Some(p) = self.procs.get(&i) {
                    let running = p.running.clone();
                    self.step(Op::Disconnect(i));
                    self.register(i, running);
                }
            }
            Op::ReconnectEarly(i) => {
                if let Some(p) = self.procs.get(&i) {
                    let (old, running) = (p.conn, p.running.clone());
                    self.register(i, running);
                    if let Some(conn) = old {
                        self.input(Input::Disconnected { conn });
                    }
                }
            }
            Op::Disconnect(i) => {
                if let Some(conn) = self.conn_of(i) {
                    let p = self.procs.get_mut(&i).unwrap();
                    p.conn = None;
                    p.inbox.clear();
                    self.input(Input::Disconnected { conn });
                }
            }
            Op::Heartbeat(i) => {
                if let Some(conn) = self.conn_of(i) {
                    let running = self.procs[&i].running.clone();
                    self.input(Input::Heartbeat { conn, running });
                }
            }
            Op::HeartbeatAll => {
                for i in self.procs.keys().copied().collect::<Vec<_>>() {
                    self.step(Op::Heartbeat(i));
                }
            }
            Op::Apply(i) => {
                self.apply(i);
            }
            Op::ApplySlowly(i) => {
                let Some(p) = self.procs.get_mut(&i) else { return };
                let (Some(conn), Some((generation, partitions))) = (p.conn, p.inbox.pop_front()) else {
                    return;
                };
                let still_running: BTreeSet<PartitionId> =
                    p.running.iter().chain(&partitions).copied().collect();
                p.running = still_running.into_iter().collect();
                p.applied = Some((generation, partitions));
                let running = p.running.clone();
                self.input(Input::Ack {
                    conn,
                    generation,
                    running,
                });
            }
            Op::FinishStopping(i) => self.finish_stopping(i),
            Op::ApplyAll => self.apply_all(),
            Op::Leave(i) => {
                if let Some(conn) = self.conn_of(i) {
                    self.procs.get_mut(&i).unwrap().running.clear();
                    self.input(Input::Leave { conn });
                }
            }
            Op::Fail(i) => {
                let member = self.e.worker_info(&Self::id(i)).is_some();
                match self.e.fail_worker(&Self::id(i)) {
                    Ok(out) => self.carry_out(out),
                    Err(CoordinatorError::WorkerNotFound(_)) => assert!(!member),
                    Err(other) => panic!("fail_worker: {other:?}"),
                }
            }
            Op::Tick(ms) => {
                self.now_ms += ms;
                self.input(Input::Tick);
            }
            Op::Assign(i, partitions) => {
                let generation = self.e.generation();
                match self.e.assign_partitions(&Self::id(i), &partitions) {
                    Ok(out) => self.carry_out(out),
                    Err(CoordinatorError::WorkerNotFound(_) | CoordinatorError::InvalidPartition(_)) => {
                        assert_eq!(
                            self.e.generation(),
                            generation,
                            "a refused assign changed the generation"
                        );
                    }
                    Err(other) => panic!("assign_partitions: {other:?}"),
                }
            }
            Op::Rebalance => {
                let out = self.e.rebalance();
                self.carry_out(out);
            }
        }
    }

    fn check(&self) {
        check_invariants(&self.e, self.now());
        // The simulation itself: a run is alive exactly while its worker is a member.
        let members: BTreeSet<WorkerId> = owners(&self.e).into_keys().collect();
        let alive: BTreeSet<WorkerId> = self.procs.keys().map(|&i| Self::id(i)).collect();
        assert_eq!(members, alive);
        // Outside Immediate (which swaps owners in one generation by design), no partition ever
        // runs on two workers at once.
        if self.strategy != Immediate {
            let mut everywhere = BTreeMap::new();
            for (i, p) in &self.procs {
                for &q in &p.running {
                    if let Some(other) = everywhere.insert(q, *i) {
                        panic!("partition {q} runs on w{other} and w{i}: {:?}", self.procs);
                    }
                }
            }
        }
    }

    /// Every run reconnects and applies everything: no move may be left hanging, and unless
    /// Manual (where only the admin moves partitions) nothing stays unassigned that fits.
    fn settle_and_check(&mut self) {
        let disconnected: Vec<u8> = self
            .procs
            .iter()
            .filter(|(_, p)| p.conn.is_none())
            .map(|(i, _)| *i)
            .collect();
        for i in disconnected {
            let running = self.procs[&i].running.clone();
            self.register(i, running);
        }
        for i in self.procs.keys().copied().collect::<Vec<_>>() {
            self.finish_stopping(i);
        }
        self.apply_all();
        self.check();
        let status = self.e.status(self.now());
        assert!(status.moving.is_empty(), "a move is stuck: {status:#?}");
        let capacity: usize = status.workers.iter().map(|s| s.capacity).sum();
        if self.strategy != Manual && capacity >= SIM_P {
            assert!(
                status.unassigned.is_empty(),
                "partitions left unassigned: {status:#?}"
            );
        }
    }
}

fn run_random_operations(strategy: RebalanceStrategy, ops: Vec<Op>) {
    let mut world = World::new(strategy);
    let mut generation = world.e.generation();
    for op in ops {
        world.step(op);
        world.check();
        assert!(world.e.generation() >= generation, "the generation went back");
        generation = world.e.generation();
    }
    world.settle_and_check();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_the_invariants_under_gradual(ops in scenario()) {
        run_random_operations(Gradual, ops);
    }

    #[test]
    fn random_operations_keep_the_invariants_under_immediate(ops in scenario()) {
        run_random_operations(Immediate, ops);
    }

    #[test]
    fn random_operations_keep_the_invariants_under_manual(ops in scenario()) {
        run_random_operations(Manual, ops);
    }
}
