//! The checkpoint bookkeeping, tested by the actions it emits: no channels, no threads.

use super::*;
use CheckpointAction::{PauseSource, SourceLeft, StandIn};
use CheckpointEvent::*;

const ATTEMPT: u64 = 7;

fn file(q: usize) -> StoredFile {
    StoredFile::of(&format!("state-p{q:05}"), &[q as u8; 3])
}

fn ack(id: u64, partition: usize, offset: u64, exhausted: bool, records: u64) -> CheckpointAction {
    handed_over_ack(id, partition, offset, exhausted, records, Vec::new())
}

fn handed_over_ack(
    id: u64,
    partition: usize,
    offset: u64,
    exhausted: bool,
    records: u64,
    ended_sources: Vec<usize>,
) -> CheckpointAction {
    let state = file(partition);
    CheckpointAction::Report(WorkerMessage::CheckpointAck {
        attempt: ATTEMPT,
        id,
        partition,
        state_file: state.name,
        state_bytes: state.size,
        state_crc32: state.crc32,
        source_offset: offset,
        source_exhausted: exhausted,
        source_records: records,
        ended_sources,
    })
}

fn acks(actions: &[CheckpointAction]) -> Vec<CheckpointAction> {
    actions
        .iter()
        .filter(|a| matches!(a, CheckpointAction::Report(_)))
        .cloned()
        .collect()
}

fn go(routes: u64, barrier: Option<u64>, read: bool) -> CheckpointAction {
    CheckpointAction::Source(SourceGo {
        routes,
        barrier,
        read,
    })
}

fn saved(id: u64, partition: usize) -> CheckpointEvent {
    StateSaved {
        id,
        partition,
        file: file(partition),
        ended_sources: Vec::new(),
    }
}

fn reached(partition: usize, offset: u64, records: u64) -> CheckpointEvent {
    SourceReachedBarrier {
        partition,
        offset,
        records,
    }
}

/// A connected attempt of two partitions, both owned here from offset 0, both reading.
fn reading() -> AttemptCheckpoints {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((0, 0)), Some((0, 0))], 0);
    core.on_event(Connected);
    for p in 0..2 {
        assert_eq!(
            core.on_event(SourceStarting { partition: p }),
            vec![go(0, None, true)]
        );
    }
    core
}

#[test]
fn a_trigger_pauses_reading_sources_and_the_source_answers_with_its_barrier() {
    let mut core = reading();
    assert_eq!(
        core.on_event(Trigger { id: 1 }),
        vec![PauseSource(0), PauseSource(1)]
    );
    // A repeated or older trigger changes nothing.
    assert!(core.on_event(Trigger { id: 1 }).is_empty());
    assert_eq!(core.on_event(reached(0, 40, 4)), vec![go(0, Some(1), true)]);
    // Stopped again (its slot is wanted) without a new checkpoint: nothing to send.
    assert_eq!(core.on_event(reached(0, 50, 5)), vec![go(1, None, true)]);
}

#[test]
fn an_ack_goes_out_only_when_both_halves_are_in_in_either_order() {
    // Source half first.
    let mut core = reading();
    core.on_event(Trigger { id: 1 });
    assert!(acks(&core.on_event(reached(0, 40, 4))).is_empty());
    assert_eq!(core.on_event(saved(1, 0)), vec![ack(1, 0, 40, false, 4)]);
    // State half first.
    assert!(core.on_event(saved(1, 1)).is_empty());
    assert_eq!(
        core.on_event(reached(1, 90, 9)),
        vec![ack(1, 1, 90, false, 9), go(0, Some(1), true)]
    );
    // Each goes out once.
    assert!(core.on_event(saved(1, 1)).is_empty());
}

#[test]
fn a_source_waiting_for_a_slot_gets_its_barrier_sent_for_it_once_connected() {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((12, 3)), None], 0);
    // Not connected yet: nothing can be sent; the request is remembered.
    assert!(core.on_event(Trigger { id: 2 }).is_empty());
    assert_eq!(
        core.on_event(Connected),
        vec![StandIn {
            partition: 0,
            routes: 0,
            id: 2
        }]
    );
    assert_eq!(core.on_event(saved(2, 0)), vec![ack(2, 0, 12, false, 3)]);
    // When it gets its slot, the barrier is already out: it just reads, on the new routes.
    assert_eq!(
        core.on_event(SourceStarting { partition: 0 }),
        vec![go(2, None, true)]
    );
}

#[test]
fn a_source_starting_after_a_trigger_before_the_connection_sends_the_barrier_itself() {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((5, 0))], 0);
    core.on_event(Trigger { id: 1 });
    let actions = core.on_event(SourceStarting { partition: 0 });
    assert_eq!(actions, vec![go(0, Some(1), true)]);
    // Connecting afterwards sends nothing more for it.
    assert!(core.on_event(Connected).is_empty());
}

#[test]
fn a_parked_source_gets_the_barrier_sent_for_it_at_its_offset() {
    let mut core = reading();
    core.on_event(SourceParked {
        partition: 1,
        offset: 70,
        records: 7,
    });
    let actions = core.on_event(Trigger { id: 3 });
    assert_eq!(
        actions,
        vec![
            PauseSource(0),
            StandIn {
                partition: 1,
                routes: 0,
                id: 3
            }
        ]
    );
    assert_eq!(core.on_event(saved(3, 1)), vec![ack(3, 1, 70, false, 7)]);
}

#[test]
fn a_source_parking_while_paused_for_a_barrier_gets_it_sent_when_it_parks() {
    let mut core = reading();
    core.on_event(Trigger { id: 1 });
    // It stopped for its slot before it saw the pause: the barrier was not sent.
    let actions = core.on_event(SourceParked {
        partition: 0,
        offset: 33,
        records: 3,
    });
    assert_eq!(
        actions,
        vec![StandIn {
            partition: 0,
            routes: 0,
            id: 1
        }]
    );
}

#[test]
fn an_exhausted_source_acknowledges_with_its_end() {
    let mut core = reading();
    core.on_event(SourceExhausted {
        partition: 0,
        end: 100,
        records: 10,
    });
    // Exhausted before the trigger: the trigger acknowledges it at once, with its end.
    assert_eq!(core.on_event(Trigger { id: 1 }), vec![PauseSource(1)]);
    assert_eq!(core.on_event(saved(1, 0)), vec![ack(1, 0, 100, true, 10)]);
    // Exhausted while the barrier was requested: the end stands in for the barrier.
    let actions = core.on_event(SourceExhausted {
        partition: 1,
        end: 200,
        records: 20,
    });
    assert!(actions.is_empty());
    assert_eq!(core.on_event(saved(1, 1)), vec![ack(1, 1, 200, true, 20)]);
}

#[test]
fn a_partition_leaving_at_a_barrier_acknowledges_then_stops_and_hands_over() {
    let mut core = reading();
    core.on_event(LeaveAt { partition: 1, id: 2 });
    core.on_event(Trigger { id: 2 });
    // The receiver of a partition that stays goes on; the leaving one hands over.
    assert_eq!(
        core.on_event(ReceiverAligned { partition: 0, id: 2 }),
        vec![CheckpointAction::Receiver { hand_over: false }]
    );
    assert_eq!(
        core.on_event(ReceiverAligned { partition: 1, id: 2 }),
        vec![CheckpointAction::Receiver { hand_over: true }]
    );
    // Its source sends the barrier, its count goes with it, and it does not read on.
    assert_eq!(
        core.on_event(reached(1, 80, 8)),
        vec![SourceLeft(1), go(0, Some(2), false)]
    );
    // Its acknowledgement names the sources its receiver had counted ended, for the new owner.
    let handed_over = StateSaved {
        id: 2,
        partition: 1,
        file: file(1),
        ended_sources: vec![3, 5],
    };
    assert_eq!(
        core.on_event(handed_over),
        vec![handed_over_ack(2, 1, 80, false, 8, vec![3, 5])]
    );
    // A later checkpoint no longer touches it, and a task starting for it does not read.
    assert_eq!(core.on_event(Trigger { id: 3 }), vec![PauseSource(0)]);
    assert_eq!(
        core.on_event(SourceStarting { partition: 1 }),
        vec![go(2, None, false)]
    );
}

#[test]
fn a_partition_leaving_while_its_source_waits_is_handed_over_by_the_stand_in() {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((9, 1))], 0);
    core.on_event(Connected);
    core.on_event(LeaveAt { partition: 0, id: 4 });
    assert_eq!(
        core.on_event(Trigger { id: 4 }),
        vec![
            StandIn {
                partition: 0,
                routes: 0,
                id: 4
            },
            SourceLeft(0)
        ]
    );
    assert_eq!(
        core.on_event(SourceStarting { partition: 0 }),
        vec![go(4, None, false)]
    );
}

#[test]
fn an_adopted_source_answers_a_checkpoint_requested_since_its_move() {
    // Partition 1 moves here at checkpoint 5; checkpoint 6 was requested before the adoption.
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((0, 0)), None], 0);
    core.on_event(Connected);
    core.on_event(SourceStarting { partition: 0 });
    core.on_event(Trigger { id: 5 });
    core.on_event(reached(0, 10, 1));
    assert_eq!(core.on_event(Trigger { id: 6 }), vec![PauseSource(0)]);
    let actions = core.on_event(AdoptSource {
        partition: 1,
        checkpoint: 5,
        offset: 300,
        exhausted: false,
        records: 30,
    });
    assert_eq!(
        actions,
        vec![
            PauseSource(0),
            StandIn {
                partition: 1,
                routes: 5,
                id: 6
            }
        ]
    );
    assert_eq!(core.on_event(saved(6, 1)), vec![ack(6, 1, 300, false, 30)]);
    // An exhausted adoption answers with its end.
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![None], 0);
    core.on_event(Trigger { id: 6 });
    core.on_event(AdoptSource {
        partition: 0,
        checkpoint: 5,
        offset: 400,
        exhausted: true,
        records: 40,
    });
    assert_eq!(core.on_event(saved(6, 0)), vec![ack(6, 0, 400, true, 40)]);
}

#[test]
fn an_adoption_at_the_newest_checkpoint_sends_nothing() {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![None], 0);
    core.on_event(Connected);
    core.on_event(Trigger { id: 5 });
    let actions = core.on_event(AdoptSource {
        partition: 0,
        checkpoint: 5,
        offset: 1,
        exhausted: false,
        records: 0,
    });
    assert!(actions.is_empty());
    assert_eq!(
        core.on_event(SourceStarting { partition: 0 }),
        vec![go(5, None, true)]
    );
}

#[test]
fn halves_of_an_older_checkpoint_never_complete_once_a_newer_one_did() {
    let mut core = reading();
    core.on_event(Trigger { id: 1 });
    core.on_event(reached(0, 10, 1));
    core.on_event(reached(1, 10, 1));
    // Checkpoint 1's state of partition 0 is late; checkpoint 2 completes for partition 1 first.
    core.on_event(Trigger { id: 2 });
    core.on_event(reached(1, 20, 2));
    assert!(acks(&core.on_event(saved(2, 1))).len() == 1);
    // Partition 0's source half of checkpoint 1 was dropped with the older halves.
    assert!(core.on_event(saved(1, 0)).is_empty());
}

#[test]
fn a_restored_attempt_does_not_send_the_restored_barrier_again() {
    let mut core = AttemptCheckpoints::new(ATTEMPT, vec![Some((50, 5))], 4);
    core.on_event(Connected);
    assert!(core.on_event(Trigger { id: 4 }).is_empty());
    assert_eq!(
        core.on_event(SourceStarting { partition: 0 }),
        vec![go(4, None, true)]
    );
}

#[test]
fn questions_about_unknown_partitions_are_answered_stop() {
    let mut core = reading();
    assert_eq!(
        core.on_event(SourceStarting { partition: 9 }),
        vec![go(0, None, false)]
    );
    assert_eq!(core.on_event(reached(9, 1, 1)), vec![go(0, None, false)]);
    assert!(core
        .on_event(SourceParked {
            partition: 9,
            offset: 1,
            records: 1
        })
        .is_empty());
}
