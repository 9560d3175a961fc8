//! A property test: random operations (joins, crashes, reconnections, slow and lost acks,
//! admin requests, time passing) keep the ownership invariants under every strategy.

use proptest::prelude::*;

use super::*;

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
                        | CoordinatorMessage::PreparePartitions { .. }
                        | CoordinatorMessage::CommitEpochs { .. } => {
                            unreachable!("no job is configured in this simulation")
                        }
                        CoordinatorMessage::NotLeader { .. } => unreachable!("only a standby says so"),
                        CoordinatorMessage::HeartbeatAck => {
                            unreachable!("the server's connection task sends it")
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
                Action::Event(_) | Action::Log(_) => {}
                Action::WriteCheckpoint { .. } => unreachable!("no checkpoints in this simulation"),
                Action::ProbeWorker {
                    worker, incarnation, ..
                } => {
                    // A live process's data port answers; a gone one's refuses.
                    if !self.procs.keys().any(|&i| Self::id(i) == worker) {
                        self.input(Input::PortRefused { worker, incarnation });
                    }
                }
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
                match self.e.fail_worker(&Self::id(i), self.now()) {
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
                match self.e.assign_partitions(&Self::id(i), &partitions, self.now()) {
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
                let out = self.e.rebalance(self.now());
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
