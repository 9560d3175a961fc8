//! Which coordinator a worker registers with, when a highly available cluster has several: the
//! one that accepted it last first, then the others in turn; a standby's refusal names the
//! leader, which is tried next. Pure: the session shell dials what a [`Round`] says and reports
//! how it went.

use std::net::SocketAddr;

/// How many leader hints one round follows (two standbys naming each other must not loop).
const MAX_HINTS: usize = 3;

/// The coordinators a worker knows, and which one accepted it last.
#[derive(Debug, Clone)]
pub(crate) struct Coordinators {
    addrs: Vec<SocketAddr>,
    last: usize,
}

impl Coordinators {
    /// `first`, then `others` (duplicates dropped).
    pub(crate) fn new(first: SocketAddr, others: &[SocketAddr]) -> Self {
        let mut addrs = vec![first];
        for addr in others {
            if !addrs.contains(addr) {
                addrs.push(*addr);
            }
        }
        Coordinators { addrs, last: 0 }
    }

    /// The coordinator that accepted the worker last (the first one before that).
    pub(crate) fn current(&self) -> SocketAddr {
        self.addrs[self.last]
    }

    /// One registration attempt's order: the current coordinator, then the others.
    pub(crate) fn round(&self) -> Round {
        let n = self.addrs.len();
        let order = (0..n).map(|i| self.addrs[(self.last + i) % n]).collect();
        Round {
            order,
            next: 0,
            hints: 0,
        }
    }

    /// `addr` accepted the registration: it is tried first from now on.
    pub(crate) fn accepted(&mut self, addr: SocketAddr) {
        if let Some(index) = self.addrs.iter().position(|a| *a == addr) {
            self.last = index;
        } else {
            // A leader named by a standby that was not in the list: remember it too.
            self.addrs.push(addr);
            self.last = self.addrs.len() - 1;
        }
    }
}

/// The coordinators to try in one registration attempt.
#[derive(Debug)]
pub(crate) struct Round {
    order: Vec<SocketAddr>,
    next: usize,
    hints: usize,
}

impl Round {
    /// The next coordinator to try (None: every one was tried).
    pub(crate) fn next(&mut self) -> Option<SocketAddr> {
        let addr = self.order.get(self.next).copied();
        self.next += 1;
        addr
    }

    /// The coordinator just tried is a standby naming `leader`: that one is tried next.
    pub(crate) fn not_leader(&mut self, leader: Option<&str>) {
        let Some(addr) = leader.and_then(|l| l.parse::<SocketAddr>().ok()) else {
            return;
        };
        if self.hints >= MAX_HINTS {
            return;
        }
        self.hints += 1;
        self.order.insert(self.next, addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn tried(round: &mut Round) -> Vec<u16> {
        std::iter::from_fn(|| round.next()).map(|a| a.port()).collect()
    }

    #[test]
    fn a_round_starts_with_the_last_that_accepted_and_tries_each_once() {
        let mut coordinators = Coordinators::new(addr(1), &[addr(2), addr(1), addr(3)]);
        assert_eq!(tried(&mut coordinators.round()), [1, 2, 3]);
        coordinators.accepted(addr(3));
        assert_eq!(coordinators.current(), addr(3));
        assert_eq!(tried(&mut coordinators.round()), [3, 1, 2]);
    }

    #[test]
    fn a_standby_naming_the_leader_sends_the_worker_there_next() {
        let coordinators = Coordinators::new(addr(1), &[addr(2), addr(3)]);
        let mut round = coordinators.round();
        assert_eq!(round.next(), Some(addr(1)));
        round.not_leader(Some("127.0.0.1:3"));
        assert_eq!(round.next(), Some(addr(3)));
        // Not knowing the leader (or naming something unparsable) just moves on.
        round.not_leader(None);
        round.not_leader(Some("not an address"));
        assert_eq!(tried(&mut round), [2, 3]);
    }

    #[test]
    fn standbys_naming_each_other_cannot_loop_forever() {
        let coordinators = Coordinators::new(addr(1), &[addr(2)]);
        let mut round = coordinators.round();
        let mut steps = 0;
        while let Some(at) = round.next() {
            steps += 1;
            let other = if at == addr(1) {
                "127.0.0.1:2"
            } else {
                "127.0.0.1:1"
            };
            round.not_leader(Some(other));
        }
        assert_eq!(steps, 2 + MAX_HINTS);
    }

    #[test]
    fn a_leader_outside_the_list_is_remembered() {
        let mut coordinators = Coordinators::new(addr(1), &[]);
        coordinators.accepted(addr(9));
        assert_eq!(tried(&mut coordinators.round()), [9, 1]);
    }
}
