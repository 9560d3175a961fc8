//! Golden tests of the engine, judged by the actions it emits, and a property test of its
//! ownership invariants under random operations. No sockets and no sleeps: time is a fixed base
//! instant plus explicit offsets in milliseconds ([`at`]).
//!
//! One file per behaviour; this one holds the helpers they share (the job, moves and restart
//! tests bring their own worlds).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::*;
use crate::coordinator::{CoordinatorConfig, CoordinatorError, RebalanceStrategy};
use crate::protocol::{CoordinatorMessage, MovingPartition, RegisterRequest};
use crate::types::{Generation, PartitionId, WorkerId, WorkerInfo, WorkerState};

mod admin;
mod failure;
mod fencing;
mod job;
mod joining;
mod leaving;
mod moves;
mod random;
mod restart;
mod stale_inputs;

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
