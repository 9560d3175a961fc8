//! [`Admission`]: which records and markers from the network a worker takes into its inboxes.
//! Plain decision logic without I/O; the data plane asks it about every batch, barrier and end
//! of stream before any inbox exists for them.
//!
//! ```text
//! attempt < floor, older than the current one, or stopped -> Drop     (stragglers)
//! attempt > current                                       -> Wait     (the peer started first)
//! current: partition or source out of range               -> Hostile  (close the connection)
//!          the peer owns no partition of the attempt      -> Hostile
//!          the partition is not (yet) this worker's       -> Wait     (moves here at a barrier)
//!          otherwise                                      -> Accept
//! ```
//!
//! `Wait` holds the message (and reads nothing more from that peer) until the worker learns of
//! the attempt or the move, or a deadline closes the connection.

use std::collections::HashSet;

use crate::protocol::PartitionOwner;
use crate::types::WorkerId;

/// What to do with a message for (attempt, partition) from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Into the partition's inbox.
    Accept,
    /// Of an attempt that is over here: drop it silently.
    Drop,
    /// Not acceptable yet, but may become so: hold it.
    Wait,
    /// Nothing a member of the cluster would send: close the connection.
    Hostile(String),
}

/// The attempt this worker runs, as far as the data plane needs it.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    /// Messages of attempts below this are dropped.
    floor: u64,
    /// The current attempt (0: none yet).
    attempt: u64,
    /// The current attempt was stopped here.
    stopped: bool,
    num_partitions: usize,
    /// Partitions of the current attempt whose records this worker takes.
    owned: HashSet<usize>,
    /// Workers that may send records in the current attempt: those that own partitions in it.
    members: HashSet<WorkerId>,
}

impl Admission {
    /// Attempt `attempt` starts here with `owners[p]` owning partition `p`.
    pub(crate) fn begin(&mut self, me: &WorkerId, attempt: u64, owners: &[PartitionOwner]) {
        self.raise_floor(attempt);
        self.attempt = attempt;
        self.stopped = false;
        self.num_partitions = owners.len();
        self.owned = (0..owners.len()).filter(|&p| owners[p].worker == *me).collect();
        self.members = owners.iter().map(|o| o.worker.clone()).collect();
    }

    /// From now on, drop everything of attempts older than `attempt`.
    pub(crate) fn raise_floor(&mut self, attempt: u64) {
        self.floor = self.floor.max(attempt);
    }

    /// The attempts below this are dropped.
    pub(crate) fn floor(&self) -> u64 {
        self.floor
    }

    /// The current attempt and its number of partitions.
    pub(crate) fn current(&self) -> (u64, usize) {
        (self.attempt, self.num_partitions)
    }

    /// Partition `partition` of `attempt` moves here: its records are taken from now on.
    pub(crate) fn own(&mut self, attempt: u64, partition: usize) {
        if attempt == self.attempt && partition < self.num_partitions {
            self.owned.insert(partition);
        }
    }

    /// Partition `partition` of `attempt` left this worker.
    pub(crate) fn disown(&mut self, attempt: u64, partition: usize) {
        if attempt == self.attempt {
            self.owned.remove(&partition);
        }
    }

    /// `worker` owns partitions of `attempt` from some barrier on (it joined inside the attempt).
    pub(crate) fn add_member(&mut self, attempt: u64, worker: &WorkerId) {
        if attempt == self.attempt {
            self.members.insert(worker.clone());
        }
    }

    /// Attempt `attempt` stopped here: what still arrives for it is dropped.
    pub(crate) fn stop(&mut self, attempt: u64) {
        if attempt == self.attempt {
            self.stopped = true;
        }
    }

    /// A message of `attempt` for `partition` from source partition `from`, sent by `peer`.
    pub(crate) fn judge(&self, peer: &WorkerId, attempt: u64, partition: usize, from: usize) -> Verdict {
        if attempt < self.floor || attempt < self.attempt || (attempt == self.attempt && self.stopped) {
            return Verdict::Drop;
        }
        if attempt > self.attempt {
            return Verdict::Wait;
        }
        if partition >= self.num_partitions || from >= self.num_partitions {
            return Verdict::Hostile(format!(
                "a message for partition {partition} from source partition {from} of {} in attempt {attempt}",
                self.num_partitions
            ));
        }
        if !self.members.contains(peer) {
            return Verdict::Hostile(format!(
                "worker {peer} sent records for partition {partition} of attempt {attempt}, in which it owns nothing"
            ));
        }
        if !self.owned.contains(&partition) {
            return Verdict::Wait;
        }
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(worker: &str) -> PartitionOwner {
        PartitionOwner {
            worker: WorkerId::new(worker),
            address: "127.0.0.1:1".to_string(),
        }
    }

    /// Attempt 5 on w1, partitions 0 and 2 of 4 owned by w1, 1 and 3 by w2.
    fn w1_in_attempt_5() -> Admission {
        let mut admission = Admission::default();
        let owners = [owner("w1"), owner("w2"), owner("w1"), owner("w2")];
        admission.begin(&WorkerId::new("w1"), 5, &owners);
        admission
    }

    #[test]
    fn the_table() {
        let a = w1_in_attempt_5();
        let (w2, w3) = (WorkerId::new("w2"), WorkerId::new("w3"));
        let hostile = |v: Verdict| matches!(v, Verdict::Hostile(_));
        assert_eq!(a.judge(&w2, 5, 0, 1), Verdict::Accept);
        assert_eq!(a.judge(&w2, 5, 2, 3), Verdict::Accept);
        // Another worker's partition: it may be moving here.
        assert_eq!(a.judge(&w2, 5, 1, 1), Verdict::Wait);
        // Older attempts are stragglers; newer ones may not have started here yet.
        assert_eq!(a.judge(&w2, 4, 0, 1), Verdict::Drop);
        assert_eq!(a.judge(&w3, 4, 0, 1), Verdict::Drop);
        assert_eq!(a.judge(&w2, 6, 0, 1), Verdict::Wait);
        assert_eq!(a.judge(&w3, u64::MAX, 9, 9), Verdict::Wait);
        // A stranger, or partitions that do not exist.
        assert!(hostile(a.judge(&w3, 5, 0, 1)));
        assert!(hostile(a.judge(&w2, 5, 4, 1)));
        assert!(hostile(a.judge(&w2, 5, 0, 4)));
        assert!(hostile(a.judge(&w2, 5, usize::MAX, 0)));
    }

    #[test]
    fn moves_change_what_is_taken() {
        let mut a = w1_in_attempt_5();
        let w3 = WorkerId::new("w3");
        a.add_member(5, &w3);
        a.own(5, 1);
        assert_eq!(a.judge(&w3, 5, 1, 0), Verdict::Accept);
        a.disown(5, 0);
        assert_eq!(a.judge(&w3, 5, 0, 0), Verdict::Wait);
        // Updates for another attempt change nothing.
        a.own(4, 3);
        a.add_member(6, &WorkerId::new("w9"));
        assert_eq!(a.judge(&w3, 5, 3, 0), Verdict::Wait);
        assert!(matches!(
            a.judge(&WorkerId::new("w9"), 5, 2, 0),
            Verdict::Hostile(_)
        ));
    }

    #[test]
    fn a_stopped_attempt_and_a_raised_floor_drop_everything() {
        let mut a = w1_in_attempt_5();
        let w2 = WorkerId::new("w2");
        a.stop(5);
        assert_eq!(a.judge(&w2, 5, 0, 1), Verdict::Drop);
        assert_eq!(a.judge(&w2, 6, 0, 1), Verdict::Wait);
        let mut b = w1_in_attempt_5();
        b.raise_floor(7);
        assert_eq!(b.judge(&w2, 5, 0, 1), Verdict::Drop);
        // Before any attempt, everything waits for one (attempts are numbered from 1).
        let none = Admission::default();
        assert_eq!(none.judge(&w2, 1, 0, 0), Verdict::Wait);
        assert!(matches!(none.judge(&w2, 0, 0, 0), Verdict::Hostile(_)));
    }
}
