//! Golden tests of [`CheckpointTracker`] by the actions it emits, and a model-based property
//! test of random event sequences.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use CheckpointAction::{Abort, Complete, FailAttempt, NotifySinks, Trigger};

const INTERVAL: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(250);
/// Timeouts in a row tolerated by [`config`]: low, so that random runs reach the limit.
const TOLERABLE: u32 = 1;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn id(n: u64) -> CheckpointId {
    CheckpointId(n)
}

fn config(retain: usize) -> CheckpointConfig {
    CheckpointConfig {
        interval: INTERVAL,
        timeout: TIMEOUT,
        retain,
        tolerable_failures: TOLERABLE,
    }
}

/// A started coordinator of `p` partitions keeping `k` checkpoints, and its start time.
fn coordinator(p: usize, k: usize) -> (CheckpointTracker, Instant) {
    let t = Instant::now();
    let mut c = CheckpointTracker::new(config(k), p);
    c.start(t);
    (c, t)
}

fn snap(id: CheckpointId, partition: PartitionId, bytes: u64) -> PartitionSnapshot {
    PartitionSnapshot {
        state_file: format!("chk-{id}/p{partition}.state"),
        state_bytes: bytes,
        state_crc32: 0,
        source_offset: Some(id.0 * 1000 + partition as u64),
        source_exhausted: false,
        source_records: 0,
    }
}

/// Every partition of `p` acks `id` at `now` (10 bytes each); returns the last ack's actions.
fn ack_all(c: &mut CheckpointTracker, id: CheckpointId, p: usize, now: Instant) -> Vec<CheckpointAction> {
    let mut last = Vec::new();
    for partition in 0..p {
        last = c.ack(id, partition, snap(id, partition, 10), now);
    }
    last
}

/// Triggers the next checkpoint at `now`, has every partition ack it, and returns its id.
fn run_one(c: &mut CheckpointTracker, p: usize, now: Instant) -> CheckpointId {
    let id = match c.tick(now).as_slice() {
        [Trigger { id }] => *id,
        other => panic!("expected one trigger at {now:?}, got {other:?}"),
    };
    assert!(matches!(ack_all(c, id, p, now).as_slice(), [Complete { .. }]));
    id
}

#[test]
fn triggers_one_interval_after_start_and_after_each_trigger() {
    let t = Instant::now();
    let mut c = CheckpointTracker::new(config(3), 2);
    assert_eq!(c.tick(t + ms(500)), vec![], "nothing before start");
    c.start(t);
    assert_eq!(c.tick(t + ms(99)), vec![]);
    assert_eq!(c.tick(t + ms(100)), vec![Trigger { id: id(1) }]);
    assert_eq!(c.tick(t + ms(230)), vec![], "one in flight at a time");
    assert_eq!(c.in_flight(), Some(id(1)));
    ack_all(&mut c, id(1), 2, t + ms(140));
    assert_eq!(c.in_flight(), None);
    assert_eq!(
        c.tick(t + ms(199)),
        vec![],
        "the interval counts from the trigger"
    );
    assert_eq!(c.tick(t + ms(200)), vec![Trigger { id: id(2) }]);
    assert_eq!(c.tick(t + ms(200)), vec![]);
}

#[test]
fn completes_only_when_every_partition_acked() {
    let (mut c, t) = coordinator(3, 3);
    c.tick(t + ms(100));
    assert_eq!(c.ack(id(1), 0, snap(id(1), 0, 100), t + ms(110)), vec![]);
    assert_eq!(c.ack(id(1), 2, snap(id(1), 2, 300), t + ms(120)), vec![]);
    assert_eq!(c.stats().in_flight, Some(id(1)));
    let snapshots: BTreeMap<_, _> = [
        (0, snap(id(1), 0, 100)),
        (1, snap(id(1), 1, 200)),
        (2, snap(id(1), 2, 300)),
    ]
    .into();
    assert_eq!(
        c.ack(id(1), 1, snap(id(1), 1, 200), t + ms(175)),
        vec![Complete {
            id: id(1),
            snapshots,
            duration: ms(75),
            size_bytes: 600
        }]
    );
    assert_eq!(c.in_flight(), None);
}

#[test]
fn duplicate_late_unknown_and_out_of_range_acks_are_ignored() {
    let (mut c, t) = coordinator(2, 3);
    c.tick(t + ms(100));
    assert_eq!(c.ack(id(1), 0, snap(id(1), 0, 5), t + ms(101)), vec![]);
    assert_eq!(
        c.ack(id(1), 0, snap(id(1), 0, 999), t + ms(102)),
        vec![],
        "duplicate"
    );
    assert_eq!(
        c.ack(id(2), 1, snap(id(2), 1, 5), t + ms(103)),
        vec![],
        "not triggered yet"
    );
    assert_eq!(
        c.ack(id(0), 1, snap(id(0), 1, 5), t + ms(103)),
        vec![],
        "never used"
    );
    assert_eq!(
        c.ack(id(1), 2, snap(id(1), 2, 5), t + ms(104)),
        vec![],
        "no partition 2"
    );
    let done = c.ack(id(1), 1, snap(id(1), 1, 7), t + ms(105));
    match done.as_slice() {
        [Complete {
            id: CheckpointId(1),
            snapshots,
            size_bytes: 12,
            ..
        }] => assert_eq!(snapshots[&0], snap(id(1), 0, 5), "the first ack counts"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.ack(id(1), 1, snap(id(1), 1, 7), t + ms(106)),
        vec![],
        "late: already complete"
    );
    assert_eq!(c.committed(id(1)), vec![NotifySinks { id: id(1) }]);
    assert_eq!(
        c.ack(id(1), 0, snap(id(1), 0, 7), t + ms(107)),
        vec![],
        "late: committed"
    );
}

#[test]
fn a_timeout_aborts_and_the_id_is_never_reused() {
    let (mut c, t) = coordinator(2, 3);
    assert_eq!(c.tick(t + ms(100)), vec![Trigger { id: id(1) }]);
    c.ack(id(1), 0, snap(id(1), 0, 1), t + ms(150));
    assert_eq!(
        c.tick(t + ms(350)),
        vec![],
        "pending exactly the timeout: not longer"
    );
    assert_eq!(
        c.tick(t + ms(351)),
        vec![Abort {
            id: id(1),
            reason: AbortReason::Timeout
        }]
    );
    assert_eq!(c.ack(id(1), 1, snap(id(1), 1, 1), t + ms(352)), vec![], "aborted");
    assert_eq!(c.tick(t + ms(450)), vec![], "the interval counts from the abort");
    assert_eq!(c.tick(t + ms(451)), vec![Trigger { id: id(2) }]);
    assert_eq!(c.ack(id(1), 0, snap(id(1), 0, 1), t + ms(460)), vec![]);
    assert_eq!(
        c.ack(id(2), 0, snap(id(2), 0, 1), t + ms(460)),
        vec![],
        "acks of 1 do not count for 2"
    );
    assert!(matches!(
        c.ack(id(2), 1, snap(id(2), 1, 1), t + ms(470)).as_slice(),
        [Complete {
            id: CheckpointId(2),
            ..
        }]
    ));
    let stats = c.stats();
    assert_eq!((stats.aborted, stats.completed, stats.in_flight), (1, 0, None));
}

/// Lets checkpoint `id`, triggered at `t`, time out (at `t` + 251 ms); returns the actions.
fn time_out(c: &mut CheckpointTracker, id: CheckpointId, t: Instant) -> Vec<CheckpointAction> {
    assert_eq!(c.in_flight(), Some(id));
    c.tick(t + TIMEOUT + ms(1))
}

fn timed_out(id: CheckpointId) -> CheckpointAction {
    Abort {
        id,
        reason: AbortReason::Timeout,
    }
}

#[test]
fn timeouts_beyond_the_tolerable_in_a_row_fail_the_attempt() {
    let t = Instant::now();
    let mut c = CheckpointTracker::new(
        CheckpointConfig {
            tolerable_failures: 2,
            ..config(3)
        },
        2,
    );
    c.start(t);
    // Trigger n at 100 + 351 (n - 1) ms; each times out 251 ms later; the next triggers 100 ms on.
    let trigger_at = |n: u64| t + ms(100 + 351 * (n - 1));
    for n in 1..=2 {
        assert_eq!(c.tick(trigger_at(n)), vec![Trigger { id: id(n) }]);
        assert_eq!(
            time_out(&mut c, id(n), trigger_at(n)),
            vec![timed_out(id(n))],
            "tolerated"
        );
    }
    assert_eq!(c.tick(trigger_at(3)), vec![Trigger { id: id(3) }]);
    assert_eq!(
        time_out(&mut c, id(3), trigger_at(3)),
        vec![timed_out(id(3)), FailAttempt { timeouts: 3 }],
        "the third in a row is one too many"
    );
    // The attempt restarts from the last checkpoint (here none: from the start): counted anew.
    let restart = trigger_at(3) + ms(300);
    c.start(restart);
    for n in 4..=5 {
        let at = restart + ms(100 + 351 * (n - 4));
        assert_eq!(c.tick(at), vec![Trigger { id: id(n) }]);
        assert_eq!(time_out(&mut c, id(n), at), vec![timed_out(id(n))]);
    }
    // A complete checkpoint in between resets the count: two more timeouts are tolerated again.
    let ok_at = restart + ms(100 + 351 * 2);
    assert_eq!(run_one(&mut c, 2, ok_at), id(6));
    for n in 7..=8 {
        let at = ok_at + ms(100 * (n - 6) + 251 * (n - 7));
        assert_eq!(c.tick(at), vec![Trigger { id: id(n) }]);
        assert_eq!(
            time_out(&mut c, id(n), at),
            vec![timed_out(id(n))],
            "checkpoint {n}"
        );
    }
    // Other aborts neither count nor reset.
    let lost_at = ok_at + ms(802);
    assert_eq!(c.tick(lost_at), vec![Trigger { id: id(9) }]);
    assert_eq!(
        c.worker_lost(lost_at + ms(1)),
        vec![Abort {
            id: id(9),
            reason: AbortReason::WorkerLost
        }]
    );
    let last_at = lost_at + ms(101);
    assert_eq!(c.tick(last_at), vec![Trigger { id: id(10) }]);
    assert_eq!(
        time_out(&mut c, id(10), last_at),
        vec![timed_out(id(10)), FailAttempt { timeouts: 3 }]
    );
}

#[test]
fn with_none_tolerable_the_first_timeout_fails_the_attempt_and_a_restore_counts_anew() {
    let t = Instant::now();
    let tolerating = |n| {
        let mut c = CheckpointTracker::new(
            CheckpointConfig {
                tolerable_failures: n,
                ..config(3)
            },
            2,
        );
        c.start(t);
        c
    };
    let mut c = tolerating(0);
    assert_eq!(c.tick(t + ms(100)), vec![Trigger { id: id(1) }]);
    assert_eq!(
        time_out(&mut c, id(1), t + ms(100)),
        vec![timed_out(id(1)), FailAttempt { timeouts: 1 }]
    );

    let mut c = tolerating(1);
    let first = run_one(&mut c, 2, t + ms(100));
    c.committed(first);
    assert_eq!(c.tick(t + ms(200)), vec![Trigger { id: id(2) }]);
    assert_eq!(time_out(&mut c, id(2), t + ms(200)), vec![timed_out(id(2))]);
    c.restored(first, t + ms(500));
    assert_eq!(c.tick(t + ms(600)), vec![Trigger { id: id(3) }]);
    assert_eq!(
        time_out(&mut c, id(3), t + ms(600)),
        vec![timed_out(id(3))],
        "counted anew after the restore"
    );
    assert_eq!(c.tick(t + ms(951)), vec![Trigger { id: id(4) }]);
    assert_eq!(
        time_out(&mut c, id(4), t + ms(951)),
        vec![timed_out(id(4)), FailAttempt { timeouts: 2 }]
    );
}

#[test]
fn losing_a_worker_or_moving_partitions_aborts_the_checkpoint_in_flight() {
    let (mut c, t) = coordinator(2, 3);
    assert_eq!(c.worker_lost(t + ms(10)), vec![], "nothing in flight");
    // A loss with nothing in flight does not delay the next trigger.
    assert_eq!(c.tick(t + ms(100)), vec![Trigger { id: CheckpointId(1) }]);
    c.ack(CheckpointId(1), 0, snap(CheckpointId(1), 0, 1), t + ms(110));
    assert_eq!(
        c.worker_lost(t + ms(120)),
        vec![Abort {
            id: CheckpointId(1),
            reason: AbortReason::WorkerLost
        }]
    );
    assert_eq!(
        c.ack(CheckpointId(1), 1, snap(CheckpointId(1), 1, 1), t + ms(121)),
        vec![]
    );
    assert_eq!(c.tick(t + ms(219)), vec![]);
    assert_eq!(c.tick(t + ms(220)), vec![Trigger { id: CheckpointId(2) }]);
    assert_eq!(
        c.assignment_changed(t + ms(230)),
        vec![Abort {
            id: CheckpointId(2),
            reason: AbortReason::AssignmentChanged
        }]
    );
    // A completed checkpoint survives a loss: its snapshots are all written.
    let id = run_one(&mut c, 2, t + ms(330));
    assert_eq!(id, CheckpointId(3));
    assert_eq!(c.worker_lost(t + ms(331)), vec![]);
    assert_eq!(
        c.committed(CheckpointId(3))[0],
        NotifySinks { id: CheckpointId(3) }
    );
    assert_eq!(c.stats().aborted, 2);
}

#[test]
fn retention_remembers_the_newest_k_committed() {
    let (mut c, t) = coordinator(1, 2);
    let mut now = t;
    let mut retained = Vec::new();
    for expected in 1..=4 {
        now += INTERVAL;
        assert_eq!(run_one(&mut c, 1, now), id(expected));
        assert_eq!(c.committed(id(expected)), vec![NotifySinks { id: id(expected) }]);
        retained.push(c.retained());
    }
    assert_eq!(
        retained,
        vec![
            vec![id(1)],
            vec![id(1), id(2)],
            vec![id(2), id(3)],
            vec![id(3), id(4)],
        ]
    );
    // 5 completes but its manifest is never written; 6 commits first: 5 is superseded.
    now += INTERVAL;
    assert_eq!(run_one(&mut c, 1, now), id(5));
    now += INTERVAL;
    assert_eq!(run_one(&mut c, 1, now), id(6));
    assert_eq!(c.committed(id(6)), vec![NotifySinks { id: id(6) }]);
    assert_eq!(c.committed(id(5)), vec![], "superseded");
    assert_eq!(c.retained(), vec![id(4), id(6)]);
}

#[test]
fn sinks_are_notified_only_after_the_commit() {
    let (mut c, t) = coordinator(2, 3);
    c.tick(t + ms(100));
    let actions = ack_all(&mut c, id(1), 2, t + ms(130));
    assert!(matches!(
        actions.as_slice(),
        [Complete {
            id: CheckpointId(1),
            ..
        }]
    ));
    assert_eq!(c.last_completed(), None, "complete, but no manifest yet");
    assert_eq!(c.restore_point(), None);
    assert_eq!(c.stats().completed, 0);
    assert_eq!(c.committed(id(2)), vec![], "never completed");
    assert_eq!(c.committed(id(1)), vec![NotifySinks { id: id(1) }]);
    assert_eq!(c.committed(id(1)), vec![], "committed once");
    assert_eq!(
        c.stats(),
        CheckpointStats {
            completed: 1,
            aborted: 0,
            last_completed: Some(id(1)),
            last_duration: Some(ms(30)),
            last_size_bytes: Some(20),
            state_bytes: None,
            in_flight: None,
        }
    );
    // The manifest's sizes (incremental state): written and referenced bytes replace the
    // acknowledgements' sum.
    c.sizes(id(1), 7, 900);
    let stats = c.stats();
    assert_eq!((stats.last_size_bytes, stats.state_bytes), (Some(7), Some(900)));
    c.sizes(id(9), 1, 1);
    assert_eq!(
        c.stats().state_bytes,
        Some(900),
        "an unknown checkpoint changes nothing"
    );
}

#[test]
fn the_restore_point_is_the_newest_committed_checkpoint() {
    let (mut c, t) = coordinator(2, 3);
    let one = run_one(&mut c, 2, t + ms(100));
    c.committed(one);
    let two = run_one(&mut c, 2, t + ms(200));
    let (id, snapshots) = c.restore_point().expect("1 is committed");
    assert_eq!(
        (id, snapshots[&1].clone()),
        (CheckpointId(1), snap(CheckpointId(1), 1, 10)),
        "2 is not committed yet"
    );
    c.committed(two);
    assert_eq!(c.restore_point().map(|(id, _)| id), Some(CheckpointId(2)));
    // 3 completes without a manifest, 4 is in flight; then the job recovers from 2.
    run_one(&mut c, 2, t + ms(300));
    assert_eq!(c.tick(t + ms(400)), vec![Trigger { id: CheckpointId(4) }]);
    assert_eq!(
        c.restored(CheckpointId(2), t + ms(450)),
        vec![Abort {
            id: CheckpointId(4),
            reason: AbortReason::Restored
        }]
    );
    assert_eq!(c.retained(), vec![CheckpointId(1), CheckpointId(2)]);
    assert_eq!(c.committed(CheckpointId(3)), vec![], "discarded by the recovery");
    assert_eq!(c.tick(t + ms(549)), vec![]);
    assert_eq!(
        c.tick(t + ms(550)),
        vec![Trigger { id: CheckpointId(5) }],
        "an interval after the restore, with a new id"
    );
    // Falling back past a corrupt checkpoint forgets it.
    c.worker_lost(t + ms(560));
    assert_eq!(c.restored(CheckpointId(1), t + ms(600)), vec![]);
    assert_eq!(c.retained(), vec![CheckpointId(1)]);
    assert_eq!(c.restore_point().map(|(id, _)| id), Some(CheckpointId(1)));
}

#[test]
fn a_requested_checkpoint_triggers_at_once_unless_one_is_in_flight() {
    let mut fresh = CheckpointTracker::new(config(3), 2);
    assert_eq!(
        fresh.request(Instant::now()),
        (None, vec![]),
        "nothing before the job started"
    );
    let (mut c, t) = coordinator(2, 3);
    // Long before the interval: asked for, it triggers now.
    assert_eq!(c.request(t + ms(1)), (Some(id(1)), vec![Trigger { id: id(1) }]));
    // Asked again while 1 is in flight: 1 answers, nothing new.
    assert_eq!(c.request(t + ms(2)), (Some(id(1)), vec![]));
    ack_all(&mut c, id(1), 2, t + ms(3));
    assert_eq!(c.committed(id(1)).first(), Some(&NotifySinks { id: id(1) }));
    assert_eq!(c.last_completed(), Some(id(1)));
}

#[test]
fn a_fresh_coordinator_restored_from_a_stored_checkpoint_uses_newer_ids() {
    let t = Instant::now();
    let mut c = CheckpointTracker::new(config(3), 4);
    assert_eq!(c.restored(id(41), t), vec![]);
    assert_eq!(c.tick(t + INTERVAL), vec![Trigger { id: id(42) }]);
}

#[test]
fn validation_names_the_field() {
    assert_eq!(CheckpointConfig::default().validate(), Ok(()));
    let ok = config(3);
    let cases = [
        (
            CheckpointConfig {
                interval: Duration::ZERO,
                ..ok.clone()
            },
            "checkpoint_interval",
        ),
        (
            CheckpointConfig {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
            "checkpoint_timeout",
        ),
        (CheckpointConfig { retain: 0, ..ok }, "checkpoint_retain"),
    ];
    for (bad, field) in cases {
        assert_eq!(bad.validate().unwrap_err().field, field);
    }
    assert_eq!(AbortReason::Timeout.to_string(), "timed out");
}

// ---------------------------------------------------------------------------------------------
// Model-based property test.

const SIM_P: usize = 3;
const SIM_K: usize = 2;

#[derive(Clone, Debug)]
enum Op {
    /// Advance the clock by this many milliseconds, then tick.
    Tick(u64),
    /// Ack: `which` picks the id (0-5: the current one, 6: the one before, 7: the next unused);
    /// a partition of `SIM_P` is out of range.
    Ack {
        which: u8,
        partition: usize,
        bytes: u64,
    },
    WorkerLost,
    AssignmentChanged,
    /// Commit: `pick` 0-1 the oldest or second oldest completed checkpoint, 2-4 the newest,
    /// 5 the last triggered one (in flight, aborted or committed already: ignored).
    Commit(u8),
    /// Recover from a retained checkpoint (`pick` among them).
    Restore(usize),
}

fn op() -> impl Strategy<Value = Op> {
    // Faults are rare enough that most checkpoints complete, several in a row now and then.
    prop_oneof![
        10 => (0u64..=120).prop_map(Op::Tick),
        30 => (0u8..8, 0..=SIM_P, 0u64..1000)
            .prop_map(|(which, partition, bytes)| Op::Ack { which, partition, bytes }),
        6 => (0u8..6).prop_map(Op::Commit),
        2 => prop_oneof![
            Just(Op::WorkerLost),
            Just(Op::AssignmentChanged),
            (0usize..4).prop_map(Op::Restore),
        ],
    ]
}

type Snapshots = BTreeMap<PartitionId, PartitionSnapshot>;

/// The obvious, flat version of the rules.
#[derive(Debug)]
struct Model {
    now: Instant,
    baseline: Instant,
    next_id: u64,
    last_triggered: u64,
    in_flight: Option<(CheckpointId, Instant, Snapshots)>,
    aborted: BTreeSet<CheckpointId>,
    completed_once: BTreeSet<CheckpointId>,
    uncommitted: BTreeMap<CheckpointId, Snapshots>,
    /// The newest `SIM_K` committed, oldest first.
    committed: Vec<(CheckpointId, Snapshots)>,
    commits: u64,
    /// Timeouts since the last complete checkpoint (or the start, or a restore).
    timeouts_in_row: u32,
}

impl Model {
    fn abort(&mut self, reason: AbortReason) -> Vec<CheckpointAction> {
        match self.in_flight.take() {
            Some((id, _, _)) => {
                self.aborted.insert(id);
                self.baseline = self.now;
                vec![Abort { id, reason }]
            }
            None => vec![],
        }
    }

    fn retained(&self) -> Vec<CheckpointId> {
        self.committed.iter().map(|(id, _)| *id).collect()
    }

    fn time_out(&mut self) -> Vec<CheckpointAction> {
        let mut actions = self.abort(AbortReason::Timeout);
        self.timeouts_in_row += 1;
        if self.timeouts_in_row > TOLERABLE {
            actions.push(FailAttempt {
                timeouts: self.timeouts_in_row,
            });
            self.timeouts_in_row = 0;
        }
        actions
    }

    /// Applies `op` to the model and returns the actions the coordinator must emit.
    fn expect(
        &mut self,
        op: &Op,
        c: &mut CheckpointTracker,
    ) -> (Vec<CheckpointAction>, Vec<CheckpointAction>) {
        match *op {
            Op::Tick(advance) => {
                self.now += ms(advance);
                let got = c.tick(self.now);
                let want = match &self.in_flight {
                    Some((_, at, _)) if self.now - *at > TIMEOUT => self.time_out(),
                    None if self.now - self.baseline >= INTERVAL => {
                        let id = self.next_id;
                        self.next_id += 1;
                        self.last_triggered = id;
                        self.baseline = self.now;
                        self.in_flight = Some((CheckpointId(id), self.now, BTreeMap::new()));
                        vec![Trigger { id: CheckpointId(id) }]
                    }
                    _ => vec![],
                };
                (got, want)
            }
            Op::Ack {
                which,
                partition,
                bytes,
            } => {
                let id = CheckpointId(match which {
                    0..=5 => self.last_triggered,
                    6 => self.last_triggered.saturating_sub(1),
                    _ => self.next_id,
                });
                let snapshot = snap(id, partition, bytes);
                let got = c.ack(id, partition, snapshot.clone(), self.now);
                let mut want = vec![];
                if let Some((current, at, acks)) = &mut self.in_flight {
                    if *current == id && partition < SIM_P && !acks.contains_key(&partition) {
                        acks.insert(partition, snapshot);
                        if acks.len() == SIM_P {
                            want.push(Complete {
                                id,
                                snapshots: acks.clone(),
                                duration: self.now - *at,
                                size_bytes: acks.values().map(|s| s.state_bytes).sum(),
                            });
                            self.uncommitted.insert(id, std::mem::take(acks));
                            self.in_flight = None;
                            self.timeouts_in_row = 0;
                        }
                    }
                }
                (got, want)
            }
            Op::WorkerLost => (c.worker_lost(self.now), self.abort(AbortReason::WorkerLost)),
            Op::AssignmentChanged => (
                c.assignment_changed(self.now),
                self.abort(AbortReason::AssignmentChanged),
            ),
            Op::Commit(pick) => {
                let ids: Vec<_> = self.uncommitted.keys().copied().collect();
                let id = match pick {
                    0 | 1 => ids.get(usize::from(pick)).or(ids.last()).copied(),
                    2..=4 => ids.last().copied(),
                    _ => None,
                }
                .unwrap_or(CheckpointId(self.last_triggered));
                let got = c.committed(id);
                let Some(snapshots) = self.uncommitted.remove(&id) else {
                    return (got, vec![]);
                };
                self.uncommitted.retain(|&old, _| old > id);
                self.committed.push((id, snapshots));
                self.commits += 1;
                if self.committed.len() > SIM_K {
                    self.committed.remove(0);
                }
                (got, vec![NotifySinks { id }])
            }
            Op::Restore(pick) => {
                let retained = self.retained();
                let Some(&id) = retained.get(pick % retained.len().max(1)) else {
                    return (vec![], vec![]);
                };
                let got = c.restored(id, self.now);
                let want = self.abort(AbortReason::Restored);
                self.uncommitted.clear();
                self.committed.retain(|(kept, _)| *kept <= id);
                self.baseline = self.now;
                self.timeouts_in_row = 0;
                (got, want)
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn behaves_like_the_model(ops in proptest::collection::vec(op(), 1..300)) {
        let t = Instant::now();
        let mut c = CheckpointTracker::new(config(SIM_K), SIM_P);
        c.start(t);
        let mut m = Model {
            now: t,
            baseline: t,
            next_id: 1,
            last_triggered: 0,
            in_flight: None,
            aborted: BTreeSet::new(),
            completed_once: BTreeSet::new(),
            uncommitted: BTreeMap::new(),
            committed: Vec::new(),
            commits: 0,
            timeouts_in_row: 0,
        };
        let mut highest = CheckpointId(0);
        for (step, op) in ops.iter().enumerate() {
            let in_flight_before = c.in_flight();
            let (got, want) = m.expect(op, &mut c);
            prop_assert_eq!(&got, &want, "step {} {:?}", step, op);
            for action in &got {
                match action {
                    Trigger { id } => {
                        prop_assert!(*id > highest, "ids strictly increase");
                        prop_assert_eq!(in_flight_before, None, "at most one in flight");
                        highest = *id;
                    }
                    Complete { id, snapshots, .. } => {
                        prop_assert!(m.completed_once.insert(*id), "Complete once per id");
                        prop_assert!(!m.aborted.contains(id), "never after an abort");
                        prop_assert_eq!(in_flight_before, Some(*id), "only the one triggered");
                        prop_assert_eq!(snapshots.len(), SIM_P, "every partition acked");
                        prop_assert!(snapshots.iter().all(|(p, s)| s == &snap(*id, *p, s.state_bytes)));
                    }
                    _ => {}
                }
            }
            prop_assert!(c.in_flight().is_none_or(|id| id == highest));
            prop_assert_eq!(c.in_flight(), m.in_flight.as_ref().map(|(id, _, _)| *id));
            prop_assert_eq!(c.retained(), m.retained(), "retained = newest K committed");
            prop_assert_eq!(c.restore_point(), m.committed.last().cloned(), "newest committed");
            prop_assert_eq!(c.last_completed(), m.committed.last().map(|(id, _)| *id));
            prop_assert_eq!(c.stats().completed, m.commits);
            prop_assert_eq!(c.stats().aborted, m.aborted.len() as u64);
        }
    }
}
