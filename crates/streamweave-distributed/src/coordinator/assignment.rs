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
/// use streamweave_distributed::coordinator::assignment::{balanced, Member};
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(i: impl std::fmt::Display) -> WorkerId {
        WorkerId::new(format!("w{i}"))
    }

    /// Members from `(digit, capacity)` pairs.
    fn ms(spec: &[(u8, usize)]) -> Vec<Member> {
        spec.iter().map(|&(i, c)| Member::new(w(i), c)).collect()
    }

    /// Ownership from a string: digit `d` = worker `wd`, `.` = unowned.
    fn own(s: &str) -> Ownership {
        s.chars().map(|c| c.to_digit(10).map(w)).collect()
    }

    fn show(o: &Ownership) -> String {
        o.iter()
            .map(|x| x.as_ref().map_or('.', |id| id.as_str().chars().nth(1).unwrap()))
            .collect()
    }

    const AMPLE: usize = 100;

    /// (name, P, members, current, expected ownership).
    type Case = (
        &'static str,
        usize,
        &'static [(u8, usize)],
        &'static str,
        &'static str,
    );
    /// (name, P, members, current, expected target per member in order).
    type TargetCase = (
        &'static str,
        usize,
        &'static [(u8, usize)],
        &'static str,
        &'static [usize],
    );

    #[test]
    fn balanced_golden() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("3 workers, P=12, from empty -> 4/4/4", 12, &[(1, AMPLE), (2, AMPLE), (3, AMPLE)], "", "123123123123"),
            ("w2 leaves -> only w2's partitions move", 12, &[(1, AMPLE), (3, AMPLE)], "123123123123", "113133113133"),
            ("w4 joins balanced 3x12 -> 3 moves to w4", 12, &[(1, AMPLE), (2, AMPLE), (3, AMPLE), (4, AMPLE)], "123123123123", "123123123444"),
            ("capacity limits w1 to 2", 12, &[(1, 2), (2, AMPLE), (3, AMPLE)], "", "232323123123"),
            ("P < N: first ids get one each", 2, &[(1, AMPLE), (2, AMPLE), (3, AMPLE)], "", "12"),
            ("P < N: sticky owner keeps its partition", 2, &[(1, AMPLE), (2, AMPLE), (3, AMPLE)], "3.", "31"),
            ("total capacity < P -> some None", 6, &[(1, 1), (2, 2)], "", "212..."),
            ("capacity 0 owns nothing", 4, &[(1, 0), (2, 10)], "1111", "2222"),
            ("all capacities 0", 3, &[(1, 0), (2, 0)], "12.", "..."),
            ("P = 0", 0, &[(1, AMPLE)], "11", ""),
            ("no members", 4, &[], "1212", "...."),
            ("non-member owners are freed", 4, &[(1, AMPLE), (2, AMPLE)], "1919", "1212"),
            ("capacity drop frees highest ids", 6, &[(1, 1), (2, 10)], "111222", "122222"),
            ("+1 slot goes to the bigger owner", 7, &[(1, AMPLE), (2, AMPLE)], "1222211", "1222211"),
            ("over-target owner keeps lowest ids", 6, &[(1, AMPLE), (2, AMPLE)], "111111", "111222"),
            ("extra entries in current ignored", 3, &[(1, AMPLE), (2, AMPLE), (3, AMPLE)], "12312", "123"),
            ("short current: missing are unowned", 4, &[(1, AMPLE), (2, AMPLE)], "11", "1122"),
        ];
        for &(name, p, members, current, expected) in cases {
            let got = balanced(p, &ms(members), &own(current));
            assert_eq!(show(&got), expected, "{name}");
        }
    }

    #[test]
    fn moves_in_golden_cases() {
        let before = own("123123123123");
        let leave = balanced(12, &ms(&[(1, AMPLE), (3, AMPLE)]), &before);
        assert_eq!(moves(&before, &leave), 4);
        let all = ms(&[(1, AMPLE), (2, AMPLE), (3, AMPLE), (4, AMPLE)]);
        let join = balanced(12, &all, &before);
        assert_eq!(moves(&before, &join), 3);
        assert_eq!(owned_by(&join, &w(4)), vec![9, 10, 11]);
    }

    #[test]
    fn targets_golden() {
        #[rustfmt::skip]
        let cases: &[TargetCase] = &[
            ("even split", 12, &[(1, AMPLE), (2, AMPLE), (3, AMPLE)], "", &[4, 4, 4]),
            ("water-filling", 20, &[(1, 1), (2, 3), (3, 10), (4, 10)], "", &[1, 3, 8, 8]),
            ("water-filling, +1 by id", 21, &[(1, 1), (2, 3), (3, 10), (4, 10)], "", &[1, 3, 9, 8]),
            ("water-filling, +1 by count", 21, &[(1, 1), (2, 3), (3, 10), (4, 10)], "44", &[1, 3, 8, 9]),
            ("non-member counts ignored", 5, &[(1, AMPLE), (2, AMPLE)], "99999", &[3, 2]),
            ("capacity == share", 6, &[(1, 2), (2, 2), (3, 2)], "", &[2, 2, 2]),
            ("total capacity < P", 10, &[(1, 1), (2, 2), (3, 0)], "", &[1, 2, 0]),
            ("P < N", 1, &[(1, AMPLE), (2, AMPLE)], "", &[1, 0]),
            ("P = 0", 0, &[(1, AMPLE), (2, AMPLE)], "", &[0, 0]),
        ];
        for &(name, p, members, current, expected) in cases {
            let members = ms(members);
            let got = targets(p, &members, &own(current));
            let want: BTreeMap<WorkerId, usize> = members
                .iter()
                .map(|m| m.id.clone())
                .zip(expected.iter().copied())
                .collect();
            assert_eq!(got, want, "{name}");
        }
        assert!(targets(5, &[], &own("11")).is_empty());
    }

    #[test]
    fn place_orphans_golden() {
        #[rustfmt::skip]
        let cases: &[Case] = &[
            ("fewest partitions first", 6, &[(1, 3), (2, 3)], "11.2..", "112212"),
            ("never moves, even over capacity", 4, &[(1, 2), (2, 1)], "1111", "1111"),
            ("non-member orphans with no spare capacity", 4, &[(1, 2)], "9.11", "..11"),
            ("non-member orphans placed", 4, &[(1, 4), (2, 4)], "9911", "2211"),
            ("no members", 3, &[], "1.2", "..."),
            ("P = 0", 0, &[(1, 1)], "1", ""),
        ];
        for &(name, p, members, current, expected) in cases {
            let got = place_orphans(p, &ms(members), &own(current));
            assert_eq!(show(&got), expected, "{name}");
        }
    }

    #[test]
    fn moves_and_owned_by() {
        assert_eq!(moves(&own("12."), &own("21.")), 2);
        assert_eq!(moves(&own("1."), &own("12")), 0);
        assert_eq!(moves(&own("11"), &own("1")), 1);
        assert_eq!(moves(&own(""), &own("12")), 0);
        assert_eq!(owned_by(&own("1.21.1"), &w(1)), vec![0, 3, 5]);
        assert!(owned_by(&own("222"), &w(1)).is_empty());
    }

    fn count(o: &Ownership, id: &WorkerId) -> usize {
        o.iter().filter(|x| x.as_ref() == Some(id)).count()
    }

    /// Invariants (a), (b), (c), (d), (f), (g) of one `balanced` step, plus order independence.
    fn check_balanced(p: usize, members: &[Member], before: &Ownership, after: &Ownership) {
        let t = targets(p, members, before);
        assert_eq!(after.len(), p);
        // (a) owners are members.
        for o in after.iter().flatten() {
            assert!(members.iter().any(|m| &m.id == o), "{o} is not a member");
        }
        let caps: usize = members.iter().map(|m| m.capacity).sum();
        // (c) the right number is owned.
        assert_eq!(after.iter().flatten().count(), p.min(caps));
        let n = members.len();
        let ample = n > 0 && members.iter().all(|m| m.capacity >= p.div_ceil(n));
        let mut lost_lower_bound = 0;
        for m in members {
            let got = count(after, &m.id);
            // (b) within capacity, and exactly the target.
            assert!(got <= m.capacity);
            assert_eq!(got, t[&m.id]);
            // (d) floor/ceil when no capacity binds.
            if ample {
                assert!(got == p / n || got == p.div_ceil(n), "{got} of {p} for {n}");
            }
            // (g) each member keeps min(current, target).
            let had: Vec<_> = owned_by(before, &m.id).into_iter().filter(|&q| q < p).collect();
            let kept = had.iter().filter(|&&q| after[q].as_ref() == Some(&m.id)).count();
            assert_eq!(kept, had.len().min(got));
            lost_lower_bound += had.len() - kept;
        }
        // (g) moves is minimal: only losses forced by targets or by owners leaving.
        let orphaned = before
            .iter()
            .take(p)
            .flatten()
            .filter(|o| !members.iter().any(|m| &m.id == *o))
            .count();
        let truncated = before.iter().skip(p).flatten().count();
        assert_eq!(moves(before, after), lost_lower_bound + orphaned + truncated);
        // (f) fixed point.
        assert_eq!(&balanced(p, members, after), after);
        // Deterministic regardless of member order.
        let mut reversed = members.to_vec();
        reversed.reverse();
        assert_eq!(&balanced(p, &reversed, before), after);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Join(u8, usize),
        Leave(u8),
        SetCap(u8, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..8, 0usize..12).prop_map(|(i, c)| Op::Join(i, c)),
            (0u8..8).prop_map(Op::Leave),
            (0u8..8, 0usize..12).prop_map(|(i, c)| Op::SetCap(i, c)),
        ]
    }

    fn owner_strategy(p: usize) -> impl Strategy<Value = Ownership> {
        proptest::collection::vec(proptest::option::of((0u8..10).prop_map(w)), 0..=p + 3)
    }

    /// An already balanced state (floor/ceil counts, ceil slots on random members, partitions
    /// shuffled) with ample capacities.
    fn balanced_state() -> impl Strategy<Value = (usize, Vec<Member>, Ownership)> {
        (1usize..6, 0usize..30)
            .prop_flat_map(|(n, p)| (Just(p), Just((0..n).map(w).collect::<Vec<_>>()).prop_shuffle()))
            .prop_flat_map(|(p, ids)| {
                let n = ids.len();
                let owners: Ownership = ids
                    .iter()
                    .enumerate()
                    .flat_map(|(i, id)| std::iter::repeat_n(Some(id.clone()), p / n + usize::from(i < p % n)))
                    .collect();
                let members: Vec<Member> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| Member::new(id.clone(), p.div_ceil(n) + i % 3))
                    .collect();
                (Just(p), Just(members), Just(owners).prop_shuffle())
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_balanced_assignment_is_kept((p, members, current) in balanced_state()) {
            prop_assert_eq!(&balanced(p, &members, &current), &current);
        }

        #[test]
        fn balanced_over_join_leave_sequences(
            p in 0usize..40,
            ops in proptest::collection::vec(op(), 1..25),
        ) {
            let mut members: Vec<Member> = Vec::new();
            let mut state: Ownership = vec![None; p];
            for op in ops {
                let old = members.clone();
                let id = match &op {
                    Op::Join(i, c) | Op::SetCap(i, c) => {
                        match members.iter_mut().find(|m| m.id == w(i)) {
                            Some(m) => m.capacity = *c,
                            None if matches!(op, Op::Join(..)) => members.push(Member::new(w(i), *c)),
                            None => {}
                        }
                        w(i)
                    }
                    Op::Leave(i) => {
                        members.retain(|m| m.id != w(i));
                        w(i)
                    }
                };
                let after = balanced(p, &members, &state);
                check_balanced(p, &members, &state, &after);
                let moved: Vec<_> = (0..p).filter(|&q| state[q].is_some() && state[q] != after[q]).collect();
                let was_member = old.iter().any(|m| m.id == id);
                match op {
                    // (e) a leave moves exactly the leaver's partitions.
                    Op::Leave(_) if was_member => {
                        prop_assert_eq!(moved.len(), count(&state, &id));
                        prop_assert!(moved.iter().all(|&q| state[q].as_ref() == Some(&id)));
                    }
                    // (e) a join to a balanced state with ample capacity only moves to the joiner.
                    Op::Join(..) if !was_member && !old.is_empty() => {
                        let need = p.div_ceil(old.len());
                        if members.iter().all(|m| m.capacity >= need) {
                            prop_assert!(moved.iter().all(|&q| after[q].as_ref() == Some(&id)));
                            prop_assert_eq!(moved.len(), count(&after, &id));
                        }
                    }
                    _ => {}
                }
                state = after;
            }
        }

        #[test]
        fn balanced_from_arbitrary_ownership(
            p in 0usize..30,
            caps in proptest::collection::btree_map(0u8..8, 0usize..10, 0..6),
            current in (0usize..30).prop_flat_map(owner_strategy),
        ) {
            let members: Vec<Member> = caps.into_iter().map(|(i, c)| Member::new(w(i), c)).collect();
            let after = balanced(p, &members, &current);
            check_balanced(p, &members, &current, &after);
        }

        #[test]
        fn place_orphans_never_moves_member_partitions(
            p in 0usize..30,
            caps in proptest::collection::btree_map(0u8..8, 0usize..10, 0..6),
            current in (0usize..30).prop_flat_map(owner_strategy),
        ) {
            let members: Vec<Member> = caps.into_iter().map(|(i, c)| Member::new(w(i), c)).collect();
            let is_member = |o: &WorkerId| members.iter().any(|m| &m.id == o);
            let after = place_orphans(p, &members, &current);
            prop_assert_eq!(after.len(), p);
            let mut orphans = 0;
            for (q, slot) in after.iter().enumerate() {
                match current.get(q).cloned().flatten() {
                    Some(o) if is_member(&o) => prop_assert_eq!(slot.as_ref(), Some(&o)),
                    _ => orphans += 1,
                }
                if let Some(o) = slot {
                    prop_assert!(is_member(o));
                }
            }
            let mut spare = 0;
            for m in &members {
                let had = (0..p).filter(|&q| current.get(q).cloned().flatten() == Some(m.id.clone())).count();
                let got = count(&after, &m.id);
                prop_assert!(got <= had.max(m.capacity));
                spare += m.capacity.saturating_sub(had);
            }
            prop_assert_eq!(after.iter().flatten().count(), p - orphans + orphans.min(spare));
            prop_assert_eq!(&place_orphans(p, &members, &after), &after);
        }
    }
}
