//! Golden tests of partitions moving through checkpoints while a job runs: the engine against
//! obedient simulated workers (they acknowledge assignments, snapshot every partition they own
//! when a checkpoint is triggered, and the shell writes every manifest). No sockets, no sleeps.

use std::collections::VecDeque;

use super::*;
use crate::coordinator::assignment::owned_by;
use crate::dataflow::JobSpec;
use crate::protocol::{JobState, MovePhase};
use RebalanceStrategy::{Gradual, Immediate};

const P: usize = 12;
const INTERVAL_MS: u64 = 200;

/// A coordinator running a checkpointed job, with simulated workers.
struct World {
    e: Engine,
    now: u64,
    conns: BTreeMap<ConnId, WorkerId>,
    /// Every action the engine emitted, in order.
    log: Vec<Action>,
    /// Whether checkpoints are acknowledged (off: they time out).
    acking: bool,
    /// Only the moving partitions acknowledge a move's checkpoint (the others time out).
    only_moved_ack: bool,
    /// How new owners answer `PreparePartitions`.
    preloads: Preloads,
}

/// How the simulated new owners answer a move's preparation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Preloads {
    /// Loaded at once.
    Load,
    /// Never answer (a slow or stuck load).
    Silent,
    /// The load fails.
    Fail,
}

impl World {
    fn new(strategy: RebalanceStrategy) -> World {
        let config = CoordinatorConfig {
            num_partitions: P,
            rebalance_strategy: strategy,
            heartbeat_timeout: Duration::from_secs(60),
            job: Some(JobSpec::new("wordcount")),
            checkpoint_interval: Some(Duration::from_millis(INTERVAL_MS)),
            checkpoint_timeout: Duration::from_millis(1_000),
            ..CoordinatorConfig::default()
        };
        World {
            e: Engine::new(config),
            now: 0,
            conns: BTreeMap::new(),
            log: Vec::new(),
            acking: true,
            only_moved_ack: false,
            preloads: Preloads::Load,
        }
    }

    fn input(&mut self, input: Input) {
        let actions = self.e.handle(input, at(self.now));
        self.carry_out(actions);
    }

    /// Answers what needs an answer, breadth first, until nothing new comes.
    fn carry_out(&mut self, actions: Vec<Action>) {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let answers = self.answers(&action);
            self.log.push(action);
            for input in answers {
                queue.extend(self.e.handle(input, at(self.now)));
            }
            assert!(self.log.len() < 100_000, "the world never settles");
        }
    }

    fn answers(&self, action: &Action) -> Vec<Input> {
        // Every worker applies its assignment and acknowledges it.
        if let Some((conn, generation, running)) = as_assignment(action) {
            return vec![Input::Ack {
                conn,
                generation,
                running,
            }];
        }
        match action {
            // Broadcast to every worker: each owner snapshots its partitions, answered once
            // (on the first connection it is sent to). A partition handed over names the
            // sources its receiver had seen end (source 0's, exhausted).
            Action::Send {
                conn,
                message:
                    CoordinatorMessage::TriggerCheckpoint {
                        attempt, id, moves, ..
                    },
            } if self.acking && Some(conn) == self.conns.keys().next() => (0..P)
                .filter_map(|p| {
                    let moving = moves.iter().any(|m| m.partition == p);
                    if self.only_moved_ack && !moves.is_empty() && !moving {
                        return None;
                    }
                    let owner = self.e.owner[p].clone()?;
                    let conn = self.conns.iter().find(|(_, w)| **w == owner)?.0;
                    Some(Input::Job {
                        conn: *conn,
                        report: JobReport::CheckpointAck {
                            attempt: *attempt,
                            id: *id,
                            partition: p,
                            snapshot: PartitionSnapshot {
                                state_file: format!("state-p{p:05}"),
                                state_bytes: 10,
                                state_crc32: 0,
                                source_offset: Some(*id * 100 + p as u64),
                                source_exhausted: p == 0,
                                source_records: 7,
                            },
                            ended_sources: if moving { vec![0] } else { Vec::new() },
                        },
                    })
                })
                .collect(),
            Action::WriteCheckpoint { id, .. } => vec![Input::CheckpointWritten {
                id: *id,
                result: Ok(()),
            }],
            Action::Send {
                conn,
                message:
                    CoordinatorMessage::PreparePartitions {
                        attempt,
                        checkpoint,
                        partitions,
                    },
            } if self.preloads != Preloads::Silent => vec![Input::Job {
                conn: *conn,
                report: JobReport::MoveStatus {
                    attempt: *attempt,
                    checkpoint: *checkpoint,
                    partitions: partitions.iter().map(|p| p.partition).collect(),
                    phase: match self.preloads {
                        Preloads::Fail => MovePhase::PreloadFailed,
                        _ => MovePhase::Preloaded,
                    },
                },
            }],
            // The adopted partitions run again at once.
            Action::Send {
                conn,
                message:
                    CoordinatorMessage::AdoptPartitions {
                        attempt,
                        checkpoint,
                        partitions,
                        ..
                    },
            } => vec![Input::Job {
                conn: *conn,
                report: JobReport::MoveStatus {
                    attempt: *attempt,
                    checkpoint: *checkpoint,
                    partitions: partitions.iter().map(|a| a.partition).collect(),
                    phase: MovePhase::Resumed,
                },
            }],
            _ => Vec::new(),
        }
    }

    fn join(&mut self, conn: ConnId, id: &str) {
        self.join_asking(conn, id, Vec::new());
    }

    /// Joins asking for `requested` (what Manual gives a new worker).
    fn join_asking(&mut self, conn: ConnId, id: &str, requested: Vec<PartitionId>) {
        self.conns.insert(conn, WorkerId::new(id));
        let request = RegisterRequest {
            worker_id: WorkerId::new(id),
            incarnation: 1,
            address: format!("{id}.local:9000"),
            capacity: 100,
            requested,
            jobs: vec!["wordcount".to_string()],
        };
        self.input(Input::Register { conn, request });
    }

    /// Lets `ms` pass in health-check ticks of 50 ms.
    fn run(&mut self, ms: u64) {
        for _ in 0..ms / 50 {
            self.now += 50;
            self.input(Input::Tick);
        }
    }

    fn owned(&self, id: &str) -> Vec<PartitionId> {
        owned_by(&self.e.owner, &WorkerId::new(id))
    }

    fn job(&self) -> crate::protocol::JobStatus {
        self.e.status(at(self.now)).job.expect("a job")
    }

    /// The checkpoints triggered with moves since `from` in the log: (checkpoint, moves).
    fn move_triggers(&self, from: usize) -> Vec<(u64, Vec<(PartitionId, String)>)> {
        let mut seen = BTreeMap::new();
        for action in &self.log[from..] {
            if let Action::Send {
                message: CoordinatorMessage::TriggerCheckpoint { id, moves, .. },
                ..
            } = action
            {
                if moves.is_empty() {
                    continue;
                }
                seen.insert(
                    *id,
                    moves
                        .iter()
                        .map(|m| (m.partition, m.to.worker.to_string()))
                        .collect(),
                );
            }
        }
        seen.into_iter().collect()
    }

    fn stops(&self, from: usize) -> usize {
        self.log[from..]
            .iter()
            .filter(|a| {
                matches!(
                    a,
                    Action::Send {
                        message: CoordinatorMessage::StopJob { .. },
                        ..
                    }
                )
            })
            .count()
    }

    /// The adoptions sent: (conn, checkpoint, partitions, ended sources).
    fn adoptions(&self, from: usize) -> Vec<(ConnId, u64, Vec<PartitionId>, Vec<PartitionId>)> {
        self.log[from..]
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    conn,
                    message:
                        CoordinatorMessage::AdoptPartitions {
                            checkpoint,
                            partitions,
                            ended_sources,
                            ..
                        },
                } => Some((
                    *conn,
                    *checkpoint,
                    partitions.iter().map(|a| a.partition).collect(),
                    ended_sources.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// Two workers run attempt 1 of the job, which has taken a checkpoint.
fn running_on_two(strategy: RebalanceStrategy) -> World {
    let mut world = World::new(strategy);
    world.join(1, "w1");
    world.join(2, "w2");
    world.run(300);
    assert_eq!(world.job().state, JobState::Running);
    assert_eq!(world.job().attempt, 1);
    assert_eq!((world.owned("w1").len(), world.owned("w2").len()), (6, 6));
    world
}

#[test]
fn gradual_join_moves_one_partition_per_checkpoint_and_the_attempt_goes_on() {
    let mut world = running_on_two(Gradual);
    let mark = world.log.len();
    world.join(3, "w3");
    world.run(2_000);
    assert_eq!(world.owned("w3").len(), 4, "w3 got its share");
    let moves = world.move_triggers(mark);
    assert_eq!(moves.len(), 4, "one checkpoint per moved partition: {moves:?}");
    assert!(
        moves.iter().all(|(_, m)| m.len() == 1 && m[0].1 == "w3"),
        "{moves:?}"
    );
    // Each move's checkpoint follows the previous move at once (no interval in between).
    let ids: Vec<u64> = moves.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    let adoptions = world.adoptions(mark);
    assert_eq!(adoptions.len(), 4);
    for ((id, m), (conn, checkpoint, partitions, ended)) in moves.iter().zip(&adoptions) {
        assert_eq!((*conn, *checkpoint, partitions.clone()), (3, *id, vec![m[0].0]));
        assert_eq!(ended, &vec![0], "sources exhausted at the barrier are named");
    }
    assert_eq!(world.stops(mark), 0, "the attempt was never stopped");
    let job = world.job();
    assert_eq!((job.state, job.attempt, job.restarts), (JobState::Running, 1, 0));
}

#[test]
fn a_moved_partition_is_adopted_on_its_acknowledgement_before_the_checkpoint_is_written() {
    let mut world = running_on_two(Gradual);
    let mark = world.log.len();
    world.join(3, "w3");
    world.run(2_000);
    let moves = world.move_triggers(mark);
    assert_eq!(moves.len(), 4, "{moves:?}");
    for (id, m) in &moves {
        let adopted = world.log[mark..].iter().position(|a| {
            matches!(a, Action::Send {
                message: CoordinatorMessage::AdoptPartitions { checkpoint, partitions, .. }, ..
            } if checkpoint == id && partitions.len() == 1 && partitions[0].partition == m[0].0)
        });
        let written = world.log[mark..]
            .iter()
            .position(|a| matches!(a, Action::WriteCheckpoint { id: w, .. } if w == id));
        let (Some(adopted), Some(written)) = (adopted, written) else {
            panic!("checkpoint {id}: adopted {adopted:?}, written {written:?}");
        };
        assert!(
            adopted < written,
            "checkpoint {id}: adopted after the manifest's write"
        );
        // Adopted once: the commit does not adopt it again.
        let again = world.adoptions(mark).iter().filter(|(_, c, ..)| c == id).count();
        assert_eq!(again, 1, "checkpoint {id}");
    }
    // Each resumed event comes from its adoption; the ownership changes at the commit.
    let resumed = world.log[mark..]
        .iter()
        .filter(|a| matches!(a, Action::Event(ClusterEvent::Resumed { .. })))
        .count();
    assert_eq!(resumed, 4);
    assert_eq!(world.owned("w3").len(), 4);
}

#[test]
fn a_move_adopted_early_whose_checkpoint_never_commits_restarts_the_attempt() {
    let mut world = running_on_two(Gradual);
    let mark = world.log.len();
    world.only_moved_ack = true;
    world.join(3, "w3");
    world.run(1_500);
    // The moved partition was adopted on its acknowledgement, but the others never answered:
    // the checkpoint timed out, so the move failed and the attempt restarted without it.
    assert!(!world.adoptions(mark).is_empty(), "adopted before the commit");
    assert!(world.stops(mark) >= 1, "the attempt was stopped");
    assert!(world.job().attempt >= 2, "{:?}", world.job());
    world.only_moved_ack = false;
    world.run(2_000);
    let job = world.job();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(world.owned("w3").len(), 4, "the partitions moved the old way");
}

#[test]
fn immediate_join_moves_every_partition_at_one_checkpoint() {
    let mut world = running_on_two(Immediate);
    let mark = world.log.len();
    world.join(3, "w3");
    world.run(1_000);
    let moves = world.move_triggers(mark);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(moves[0].1.len(), 4);
    assert_eq!(world.owned("w3").len(), 4);
    assert_eq!(world.stops(mark), 0);
    assert_eq!(world.job().attempt, 1);
}

#[test]
fn a_leaving_worker_keeps_its_partitions_until_they_moved_then_gets_its_ack() {
    let mut world = running_on_two(Gradual);
    world.join(3, "w3");
    world.run(2_000);
    let mark = world.log.len();
    world.input(Input::Leave { conn: 3 });
    // (The simulated workers answer at once, so the whole hand-over may already be done.)
    world.run(2_000);
    assert!(
        world.log[mark..].contains(&Action::Event(ClusterEvent::Leaving {
            worker: WorkerId::new("w3")
        })),
        "w3 was leaving first"
    );
    assert!(world.owned("w3").is_empty());
    assert_eq!((world.owned("w1").len(), world.owned("w2").len()), (6, 6));
    let acks: Vec<usize> = world.log[mark..]
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            matches!(
                a,
                Action::Send {
                    conn: 3,
                    message: CoordinatorMessage::LeaveAck
                }
            )
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(acks.len(), 1, "one LeaveAck");
    let last_adoption = world.log[mark..]
        .iter()
        .rposition(|a| {
            matches!(
                a,
                Action::Send {
                    message: CoordinatorMessage::AdoptPartitions { .. },
                    ..
                }
            )
        })
        .expect("partitions adopted");
    assert!(
        last_adoption < acks[0],
        "the ack comes after the last partition moved"
    );
    assert_eq!(world.stops(mark), 0);
    assert_eq!(world.job().attempt, 1);
}

#[test]
fn a_leaving_worker_that_goes_before_its_partitions_moved_is_failed_at_once() {
    let mut world = running_on_two(Gradual);
    world.join(3, "w3");
    world.run(2_000);
    assert_eq!(world.owned("w3").len(), 4);
    // Its partitions cannot move away (the new owners never finish loading them)...
    world.preloads = Preloads::Silent;
    world.input(Input::Leave { conn: 3 });
    world.run(100);
    assert_eq!(world.owned("w3").len(), 4);
    let mark = world.log.len();
    // ... and it stops anyway: its connection closes, well within the heartbeat timeout.
    world.input(Input::Disconnected { conn: 3 });
    assert!(
        world.log[mark..].contains(&Action::Event(ClusterEvent::Failed {
            worker: WorkerId::new("w3")
        })),
        "w3 is gone at once"
    );
    assert!(world.owned("w3").is_empty());
    assert_eq!(world.owned("w1").len() + world.owned("w2").len(), 12);
    assert_eq!(world.stops(mark), 2, "the attempt stops on w1 and w2");
    assert_eq!(
        world.job().attempt,
        2,
        "and restarts from the last checkpoint, once"
    );
}

#[test]
fn a_move_whose_checkpoint_times_out_restarts_the_attempt_from_the_last_checkpoint() {
    let mut world = running_on_two(Gradual);
    let mark = world.log.len();
    world.acking = false;
    world.join(3, "w3");
    world.run(1_500);
    assert!(world.stops(mark) >= 1, "the attempt was stopped");
    world.acking = true;
    world.run(2_000);
    let job = world.job();
    assert_eq!(job.state, JobState::Running);
    assert!(job.attempt >= 2 && job.restarts >= 1, "{job:?}");
    assert_eq!(world.owned("w3").len(), 4, "the partitions moved the old way");
    assert!(world.adoptions(mark).is_empty());
}

#[test]
fn a_finished_partition_stays_where_it_is() {
    let mut world = running_on_two(Gradual);
    // Every partition of w2 (the one w3 would take from first) has finished.
    for p in world.owned("w2").into_iter().chain(world.owned("w1")) {
        world.input(Input::Job {
            conn: 1,
            report: JobReport::PartitionDone {
                attempt: 1,
                partition: p,
                records_out: 1,
            },
        });
        if world.job().partitions_done == P - 1 {
            break;
        }
    }
    let mark = world.log.len();
    world.join(3, "w3");
    world.run(1_000);
    let moved: Vec<_> = world
        .move_triggers(mark)
        .into_iter()
        .flat_map(|(_, m)| m)
        .collect();
    assert!(
        moved.len() <= 1,
        "only the unfinished partition may move: {moved:?}"
    );
    assert_eq!(world.stops(mark), 0);
}

#[test]
fn manual_assign_moves_the_requested_partitions_at_one_checkpoint() {
    let mut world = World::new(RebalanceStrategy::Manual);
    world.join_asking(1, "w1", (0..6).collect());
    world.join_asking(2, "w2", (6..12).collect());
    world.run(300);
    assert_eq!((world.job().state, world.job().attempt), (JobState::Running, 1));
    world.join(3, "w3");
    world.run(500);
    assert!(world.owned("w3").is_empty(), "Manual moves nothing by itself");
    let mark = world.log.len();
    let actions = world
        .e
        .assign_partitions(&WorkerId::new("w3"), &[0, 7], at(world.now))
        .expect("assign");
    world.carry_out(actions);
    world.run(500);
    assert_eq!(world.owned("w3"), vec![0, 7]);
    let moves = world.move_triggers(mark);
    assert_eq!(moves.len(), 1, "{moves:?}");
    assert_eq!(world.stops(mark), 0);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Join(u8),
        Leave(u8),
        Wait(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..5).prop_map(Op::Join),
            (0u8..5).prop_map(Op::Leave),
            (0u16..600).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever joins and graceful leaves happen while the job runs, the attempt is never
        /// stopped, every partition always has one owner among the members, and once things
        /// settle the assignment is balanced over the members that stayed.
        #[test]
        fn joins_and_leaves_never_stop_the_attempt(
            strategy in prop_oneof![Just(Gradual), Just(Immediate)],
            ops in prop::collection::vec(op(), 1..25),
        ) {
            let mut world = running_on_two(strategy);
            let mark = world.log.len();
            let mut next_conn = 10;
            for op in ops {
                match op {
                    Op::Join(i) => {
                        let id = format!("x{i}");
                        if !world.conns.values().any(|w| w.as_str() == id) {
                            next_conn += 1;
                            world.join(next_conn, &id);
                        }
                    }
                    Op::Leave(i) => {
                        let id = format!("x{i}");
                        if let Some(conn) = world.conns.iter().find(|(_, w)| w.as_str() == id).map(|(c, _)| *c) {
                            world.input(Input::Leave { conn });
                            if !world.e.workers.contains_key(&WorkerId::new(&id)) {
                                world.conns.remove(&conn);
                            }
                        }
                    }
                    Op::Wait(ms) => world.run(u64::from(ms)),
                }
                for p in 0..P {
                    let owner = world.e.owner[p].clone();
                    prop_assert!(owner.is_some_and(|o| world.e.workers.contains_key(&o)), "partition {} has no live owner", p);
                }
                // Leavers that got their ack are gone.
                world.conns.retain(|_, w| world.e.workers.contains_key(w));
            }
            world.run(2_000);
            prop_assert_eq!(world.stops(mark), 0);
            let job = world.job();
            prop_assert_eq!((job.attempt, job.restarts), (1, 0));
            prop_assert!(world.e.moving.is_none());
            let members = world.e.workers.len();
            for worker in world.e.workers.keys() {
                let n = owned_by(&world.e.owner, worker).len();
                prop_assert!(n == P / members || n == P.div_ceil(members), "{} owns {}", worker, n);
            }
        }
    }
}

/// Moves prepared ahead of their barrier (`prepare.rs`): the new owner loads the state first.
mod preparing {
    use super::*;
    use crate::coordinator::engine::prepare::{prepare_timeout, PREPARE_TIMEOUT, RETRY_AFTER};

    impl World {
        /// The `keep_chains` of each checkpoint triggered (to worker 1) since `from`.
        fn kept_chains(&self, from: usize) -> Vec<Vec<usize>> {
            (self.log[from..].iter())
                .filter_map(|a| match a {
                    Action::Send {
                        conn: 1,
                        message: CoordinatorMessage::TriggerCheckpoint { keep_chains, .. },
                    } => Some(keep_chains.clone()),
                    _ => None,
                })
                .collect()
        }

        /// The `PreparePartitions` sent since `from`: (conn, checkpoint, partitions).
        fn preparations(&self, from: usize) -> Vec<(ConnId, u64, Vec<PartitionId>)> {
            self.log[from..]
                .iter()
                .filter_map(|a| match a {
                    Action::Send {
                        conn,
                        message:
                            CoordinatorMessage::PreparePartitions {
                                checkpoint,
                                partitions,
                                ..
                            },
                    } => Some((
                        *conn,
                        *checkpoint,
                        partitions.iter().map(|p| p.partition).collect(),
                    )),
                    _ => None,
                })
                .collect()
        }

        fn abandoned(&self, from: usize) -> usize {
            self.log[from..]
                .iter()
                .filter(|a| matches!(a, Action::Log(Note::MoveAbandoned { .. })))
                .count()
        }

        /// The `resumed` events since `from`: (partition, worker, checkpoint, pause, preload).
        fn resumed(&self, from: usize) -> Vec<(PartitionId, String, u64, u64, Option<u64>)> {
            self.log[from..]
                .iter()
                .filter_map(|a| match a {
                    Action::Event(ClusterEvent::Resumed {
                        partition,
                        worker,
                        checkpoint,
                        pause_ms,
                        preload_ms,
                    }) => Some((
                        *partition,
                        worker.to_string(),
                        *checkpoint,
                        *pause_ms,
                        *preload_ms,
                    )),
                    _ => None,
                })
                .collect()
        }

        fn committed(&self) -> u64 {
            self.e
                .checkpoints
                .as_ref()
                .and_then(|c| c.restore_point())
                .map_or(0, |(id, _)| id.0)
        }

        fn report_preload(
            &mut self,
            conn: ConnId,
            checkpoint: u64,
            partitions: Vec<PartitionId>,
            phase: MovePhase,
        ) {
            self.input(Input::Job {
                conn,
                report: JobReport::MoveStatus {
                    attempt: 1,
                    checkpoint,
                    partitions,
                    phase,
                },
            });
        }
    }

    #[test]
    fn the_barrier_waits_for_the_new_owner_to_load_while_checkpoints_go_on() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Silent;
        let committed = world.committed();
        assert!(committed > 0, "a checkpoint is committed before the join");
        let mark = world.log.len();
        world.join(3, "w3");
        // Prepare: w3 is asked to load one partition from the last committed checkpoint.
        let preparations = world.preparations(mark);
        assert_eq!(preparations.len(), 1, "{preparations:?}");
        let (conn, checkpoint, partitions) = preparations[0].clone();
        assert_eq!((conn, checkpoint, partitions.len()), (3, committed, 1));
        let p = partitions[0];
        let from = world.e.owner[p].clone().expect("an owner");
        // While w3 loads, the old owner runs p and plain checkpoints go on; no barrier moves p.
        world.run(1_000);
        assert!(world.move_triggers(mark).is_empty(), "no move before the load");
        assert!(
            world.committed() >= committed + 3,
            "checkpoints went on: {}",
            world.committed()
        );
        assert_eq!(world.e.owner[p].as_ref(), Some(&from));
        assert!(world.owned("w3").is_empty());
        // Those checkpoints keep p on its chain: a new base would make w3 load it all again.
        let kept = world.kept_chains(mark);
        assert!(kept.len() >= 3, "{kept:?}");
        assert!(kept.iter().all(|k| k == &vec![p]), "{kept:?}");
        // A report for another checkpoint, or from a worker that is not p's new owner, is
        // ignored.
        world.report_preload(3, checkpoint + 1, vec![p], MovePhase::Preloaded);
        world.report_preload(1, checkpoint, vec![p], MovePhase::Preloaded);
        assert!(world.move_triggers(mark).is_empty());
        // Ready: the move's barrier is triggered at once, carrying p to w3 (the next moves
        // follow: the simulated w3 loads them at once from now on).
        world.preloads = Preloads::Load;
        let ready = world.log.len();
        world.report_preload(3, checkpoint, vec![p], MovePhase::Preloaded);
        let moves = world.move_triggers(ready);
        assert!(!moves.is_empty());
        assert_eq!(moves[0].1, vec![(p, "w3".to_string())]);
        let barrier = moves[0].0;
        assert!(
            world.kept_chains(ready).first().is_some_and(|k| k.is_empty()),
            "the move's own barrier keeps none (every partition writes a delta there anyway)"
        );
        // The barrier completes: w3 adopts p and reports it running; the pause is recorded
        // with the preparation's time.
        let adoptions = world.adoptions(ready);
        assert_eq!(
            adoptions.first().map(|a| (a.0, a.1, a.2.clone())),
            Some((3, barrier, vec![p]))
        );
        let resumed = world.resumed(ready);
        assert_eq!(resumed.first().map(|r| r.0), Some(p), "{resumed:?}");
        assert_eq!((resumed[0].1.as_str(), resumed[0].2), ("w3", barrier));
        assert!(resumed[0].4.is_some_and(|ms| ms >= 1_000), "{resumed:?}");
        // The rest of w3's share moves the same way; the attempt never stopped.
        world.run(2_000);
        assert_eq!(world.owned("w3").len(), 4);
        assert_eq!(world.stops(mark), 0);
        assert_eq!(world.abandoned(mark), 0);
        assert_eq!(world.resumed(mark).len(), 4);
        assert_eq!(world.job().attempt, 1);
    }

    #[test]
    fn a_load_that_ends_far_behind_catches_up_from_the_newest_checkpoint_before_the_barrier() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Silent;
        let mark = world.log.len();
        world.join(3, "w3");
        let (_, first, partitions) = world.preparations(mark)[0].clone();
        let p = partitions[0];
        // The load takes a while: checkpoints go on.
        world.run(1_000);
        let newest = world.committed();
        assert!(newest > first + 1, "{newest} vs {first}");
        let reported = world.log.len();
        world.report_preload(3, first, vec![p], MovePhase::Preloaded);
        // Not the barrier yet: a catch-up round from the newest committed checkpoint.
        assert!(world.move_triggers(reported).is_empty());
        let again = world.preparations(reported);
        assert_eq!(again.len(), 1, "{again:?}");
        assert_eq!((again[0].0, again[0].1, again[0].2.clone()), (3, newest, vec![p]));
        // That one ends at once: the barrier follows, with the whole preparation's time.
        let ready = world.log.len();
        world.report_preload(3, newest, vec![p], MovePhase::Preloaded);
        let moves = world.move_triggers(ready);
        assert_eq!(
            moves.first().map(|m| m.1.clone()),
            Some(vec![(p, "w3".to_string())])
        );
        let resumed = world.resumed(ready);
        assert!(
            resumed.first().is_some_and(|r| r.4.is_some_and(|ms| ms >= 1_000)),
            "{resumed:?}"
        );
    }

    #[test]
    fn a_failed_load_abandons_the_move_the_old_owner_keeps_it_and_it_is_tried_again_later() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Fail;
        let before = world.e.owner.clone();
        let mark = world.log.len();
        world.join(3, "w3");
        assert_eq!(world.abandoned(mark), 1);
        assert!(world.e.moving.is_none());
        // Nothing is planned again within the pause after an abandoned move.
        world.run(u64::try_from(RETRY_AFTER.as_millis()).unwrap() - 100);
        assert_eq!(world.preparations(mark).len(), 1);
        assert!(world.move_triggers(mark).is_empty());
        assert_eq!(world.e.owner, before, "nothing changed hands");
        assert_eq!(world.stops(mark), 0, "the attempt goes on");
        // Then the move is planned again, and loads this time.
        world.preloads = Preloads::Load;
        world.run(2_000);
        assert!(world.preparations(mark).len() >= 2);
        assert_eq!(world.owned("w3").len(), 4);
        assert_eq!(world.stops(mark), 0);
        assert_eq!(world.job().attempt, 1);
    }

    #[test]
    fn a_load_is_given_time_for_its_share_of_the_state() {
        assert_eq!(prepare_timeout(None, 1, 8), PREPARE_TIMEOUT);
        assert_eq!(
            prepare_timeout(Some(3_000_000_000), 1, 3),
            PREPARE_TIMEOUT + std::time::Duration::from_secs(200),
            "a gigabyte partition: 200 s more at 5 MB/s"
        );
        assert!(
            prepare_timeout(Some(u64::MAX), 8, 8) > PREPARE_TIMEOUT,
            "no overflow"
        );
    }

    #[test]
    fn a_load_past_its_deadline_abandons_the_move() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Silent;
        let before = world.e.owner.clone();
        let mark = world.log.len();
        world.join(3, "w3");
        let deadline = u64::try_from(PREPARE_TIMEOUT.as_millis()).unwrap();
        world.run(deadline - 100);
        assert_eq!(world.abandoned(mark), 0, "still within the deadline");
        world.run(200);
        assert_eq!(world.abandoned(mark), 1);
        assert!(world.e.moving.is_none());
        assert!(world.move_triggers(mark).is_empty());
        assert_eq!(world.e.owner, before);
        assert_eq!(world.stops(mark), 0);
        assert_eq!(world.job().state, JobState::Running);
    }

    #[test]
    fn a_new_owner_that_goes_while_loading_abandons_the_move_without_a_restart() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Silent;
        let before = world.e.owner.clone();
        let mark = world.log.len();
        world.join(3, "w3");
        assert_eq!(world.preparations(mark).len(), 1);
        world.input(Input::Disconnected { conn: 3 });
        world.run(100);
        assert_eq!(world.abandoned(mark), 1);
        assert!(world.move_triggers(mark).is_empty());
        assert_eq!(world.e.owner, before, "the old owners kept everything");
        // w3 owned nothing yet: the attempt is not stopped.
        assert_eq!(world.stops(mark), 0);
        assert_eq!(world.job().attempt, 1);
    }

    #[test]
    fn an_old_owner_failing_while_the_new_one_loads_restarts_from_the_last_checkpoint() {
        let mut world = running_on_two(Gradual);
        world.preloads = Preloads::Silent;
        let mark = world.log.len();
        world.join(3, "w3");
        let (_, checkpoint, partitions) = world.preparations(mark)[0].clone();
        let from = world.e.owner[partitions[0]].clone().expect("an owner");
        let conn = *world.conns.iter().find(|(_, w)| **w == from).expect("conn").0;
        // The old owner fails: its partitions have no owner, the attempt stops (exactly-once
        // rests on the restart from the last checkpoint), and the move is dropped with it.
        let actions = world.e.fail_worker(&from, at(world.now)).expect("fail");
        world.carry_out(actions);
        world.conns.remove(&conn);
        assert!(world.stops(mark) >= 1);
        assert!(world
            .e
            .moving
            .as_ref()
            .is_none_or(|m| m.preparing.as_ref().is_none_or(|p| p.checkpoint != checkpoint)));
        // A late report of the old preparation changes nothing.
        world.report_preload(3, checkpoint, partitions.clone(), MovePhase::Preloaded);
        assert!(world.move_triggers(mark).iter().all(|(_, m)| m.is_empty()));
        world.preloads = Preloads::Load;
        world.run(3_000);
        let job = world.job();
        assert_eq!(job.state, JobState::Running);
        assert!(job.attempt >= 2, "{job:?}");
    }
}
