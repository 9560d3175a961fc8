//! Partition assignment: which worker owns which of the partitions `0..P`.
//!
//! This is the pure decision logic behind rebalancing. It does no I/O, reads no clock and is
//! deterministic: the same members (in any order) and the same current ownership always give
//! the same answer.
//!
//! # How it works
//!
//! 1. **Targets** ([`targets`]): decide how many partitions each member should own. The total
//!    is `min(P, sum of capacities)`, spread by *water-filling*: members are visited by
//!    ascending capacity, and any member whose capacity is at most the current fair share
//!    (`remaining / members left`, rounded down) gets exactly its capacity. The rest share what
//!    is left evenly, each getting `floor` or `ceil` of the share. The `ceil` ("+1") slots go to
//!    the members that currently own the most partitions, so that as few partitions as possible
//!    have to move (ties broken by [`WorkerId`] order).
//! 2. **Keep** ([`balanced`]): every member keeps as many of its current partitions as its target
//!    allows, lowest partition ids first. Everything else (partitions over a member's target,
//!    partitions owned by workers that are no longer members, unowned partitions) is free.
//! 3. **Fill**: free partitions are handed out in ascending order, each to the member with the
//!    largest remaining deficit (ties by [`WorkerId`]). Partitions beyond the total capacity stay
//!    unowned.
//!
//! The result is *sticky*: a partition only moves if its owner left or is over its target, so
//! the number of moves is the minimum any balanced assignment could achieve. When a worker
//! leaves, only its partitions move; when a worker joins, partitions only move to it.
//!
//! [`place_orphans`] is the non-rebalancing variant used for failover in manual mode: it never
//! moves a partition a member already owns and only places the orphaned ones.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::types::{PartitionId, WorkerId};

/// A live worker that may own partitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The worker's id.
    pub id: WorkerId,
    /// The most partitions it may own at once.
    pub capacity: usize,
}

impl Member {
    /// A member with the given id and capacity.
    pub fn new(id: WorkerId, capacity: usize) -> Self {
        Member { id, capacity }
    }
}

/// Owner of each partition: index = partition id, length = P.
pub type Ownership = Vec<Option<WorkerId>>;

/// Members' capacities by id (the first entry wins should an id appear twice).
fn capacities(members: &[Member]) -> BTreeMap<&WorkerId, usize> {
    let mut caps = BTreeMap::new();
    for m in members {
        caps.entry(&m.id).or_insert(m.capacity);
    }
    caps
}

/// The owner of partition `p` in `current`, if any (missing entries count as unowned).
fn owner(current: &Ownership, p: PartitionId) -> Option<&WorkerId> {
    current.get(p).and_then(Option::as_ref)
}

/// How many of the partitions `0..num_partitions` each member owns in `current`.
fn counts<'a>(
    num_partitions: usize,
    caps: &BTreeMap<&'a WorkerId, usize>,
    current: &Ownership,
) -> BTreeMap<&'a WorkerId, usize> {
    let mut counts: BTreeMap<&WorkerId, usize> = caps.keys().map(|id| (*id, 0)).collect();
    for p in 0..num_partitions {
        if let Some(n) = owner(current, p).and_then(|o| counts.get_mut(o)) {
            *n += 1;
        }
    }
    counts
}

/// How many partitions each member should own: balanced and sticky.
///
/// Total = min(P, sum of capacities). Water-filling: every member gets floor or ceil of the
/// share, never above its capacity; members whose capacity is below the share get their
/// capacity and the rest is shared among the others (again floor/ceil). Which members get the
/// "+1" (ceil) slots is chosen to minimise moves: prefer members that currently own more
/// partitions (count taken from `current`, only partitions owned by members), ties broken by
/// [`WorkerId`] order. Every member appears in the result, possibly with 0.
pub fn targets(num_partitions: usize, members: &[Member], current: &Ownership) -> BTreeMap<WorkerId, usize> {
    let caps = capacities(members);
    let counts = counts(num_partitions, &caps, current);
    let total = caps
        .values()
        .fold(0usize, |sum, &c| sum.saturating_add(c))
        .min(num_partitions);

    let mut by_cap: Vec<(&WorkerId, usize)> = caps.iter().map(|(id, &c)| (*id, c)).collect();
    by_cap.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));

    let mut out = BTreeMap::new();
    let mut remaining = total;
    let mut rest = by_cap.as_slice();
    // Members that cannot reach the fair share get their capacity. Removing one only raises the
    // share of the others, so a single ascending pass suffices.
    while let Some((&(id, cap), tail)) = rest.split_first() {
        if cap > remaining / rest.len() {
            break;
        }
        out.insert(id.clone(), cap);
        remaining -= cap;
        rest = tail;
    }
    if !rest.is_empty() {
        // Everyone left has capacity > base, i.e. >= base + 1.
        let base = remaining / rest.len();
        let extra = remaining % rest.len();
        let mut order: Vec<&WorkerId> = rest.iter().map(|(id, _)| *id).collect();
        order.sort_by_key(|id| (Reverse(counts[id]), *id));
        for (i, id) in order.into_iter().enumerate() {
            out.insert(id.clone(), base + usize::from(i < extra));
        }
    }
    out
}

/// A balanced, sticky target ownership.
///
/// Each member keeps as many of its current partitions as its [`targets`] entry allows (lowest
/// partition ids first); partitions owned by non-members or over a member's target are freed;
/// free partitions go, in ascending partition order, to the member with the largest remaining
/// deficit (ties by [`WorkerId`]). Partitions beyond total capacity stay `None`; members with
/// capacity 0 own nothing. The result has length `num_partitions`: entries of `current` past it
/// are ignored and missing ones count as unowned.
///
/// ```rust
/// use streamweave_distributed::internals::assignment::{balanced, Member};
/// use streamweave_distributed::WorkerId;
///
/// let w = |s: &str| WorkerId::new(s);
/// let three = [Member::new(w("w1"), 8), Member::new(w("w2"), 8), Member::new(w("w3"), 8)];
/// let before = balanced(6, &three, &vec![None; 6]);
/// assert_eq!(before.iter().flatten().filter(|o| **o == w("w3")).count(), 2);
///
/// // w3 leaves: only its two partitions move, the others stay where they were.
/// let after = balanced(6, &three[..2], &before);
/// for (b, a) in before.iter().zip(&after) {
///     if *b != Some(w("w3")) {
///         assert_eq!(a, b);
///     }
/// }
/// ```
pub fn balanced(num_partitions: usize, members: &[Member], current: &Ownership) -> Ownership {
    let targets = targets(num_partitions, members, current);
    let mut out: Ownership = vec![None; num_partitions];
    let mut kept: BTreeMap<&WorkerId, usize> = BTreeMap::new();
    let mut free = Vec::new();
    for (p, slot) in out.iter_mut().enumerate() {
        match owner(current, p).and_then(|o| targets.get_key_value(o)) {
            Some((id, &target)) if kept.get(id).copied().unwrap_or(0) < target => {
                *kept.entry(id).or_insert(0) += 1;
                *slot = Some(id.clone());
            }
            _ => free.push(p),
        }
    }

    // Max-heap on deficit; `Reverse` makes the smaller id win ties.
    let mut deficits: BinaryHeap<(usize, Reverse<&WorkerId>)> = targets
        .iter()
        .map(|(id, &t)| (t - kept.get(id).copied().unwrap_or(0), Reverse(id)))
        .filter(|(d, _)| *d > 0)
        .collect();
    for p in free {
        let Some((deficit, Reverse(id))) = deficits.pop() else {
            break;
        };
        out[p] = Some(id.clone());
        if deficit > 1 {
            deficits.push((deficit - 1, Reverse(id)));
        }
    }
    out
}

/// Place only the unowned partitions (and those owned by non-members), never moving a partition
/// owned by a member: each goes, in ascending partition order, to the member with the fewest
/// partitions that still has spare capacity (ties by [`WorkerId`]). Orphans that fit nowhere
/// stay `None`. Used for failover in manual mode.
pub fn place_orphans(num_partitions: usize, members: &[Member], current: &Ownership) -> Ownership {
    let caps = capacities(members);
    let counts = counts(num_partitions, &caps, current);
    let mut out: Ownership = (0..num_partitions)
        .map(|p| owner(current, p).filter(|o| caps.contains_key(o)).cloned())
        .collect();
    // Min-heap on (count, id) over members with spare capacity.
    let mut spare: BinaryHeap<Reverse<(usize, &WorkerId)>> = counts
        .iter()
        .filter(|(id, &n)| n < caps[*id])
        .map(|(id, &n)| Reverse((n, *id)))
        .collect();
    for slot in out.iter_mut().filter(|s| s.is_none()) {
        let Some(Reverse((n, id))) = spare.pop() else {
            break;
        };
        *slot = Some(id.clone());
        if n + 1 < caps[id] {
            spare.push(Reverse((n + 1, id)));
        }
    }
    out
}

/// Number of partitions that had an owner in `before` and a different owner (or none, or are
/// missing) in `after`.
pub fn moves(before: &Ownership, after: &Ownership) -> usize {
    before
        .iter()
        .enumerate()
        .filter(|(p, b)| b.is_some() && after.get(*p) != Some(*b))
        .count()
}

/// Partitions owned by `id` in `ownership`, ascending.
pub fn owned_by(ownership: &Ownership, id: &WorkerId) -> Vec<PartitionId> {
    ownership
        .iter()
        .enumerate()
        .filter(|(_, o)| o.as_ref() == Some(id))
        .map(|(p, _)| p)
        .collect()
}

#[cfg(test)]
#[path = "assignment_tests.rs"]
mod tests;
