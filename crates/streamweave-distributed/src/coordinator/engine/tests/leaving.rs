//! Workers leaving: their partitions move at once, or wait for the admin under `Manual`.

use super::*;

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
    let out = e.rebalance(at(100));
    ack_all(&mut e, out, at(100));
    assert_eq!(counts(&e), [6, 6]);
}
