//! Tests of the assignment planner: balance, stickiness, capacity, and properties over random
//! memberships.

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
