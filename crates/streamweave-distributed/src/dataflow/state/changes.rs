//! [`Changes`]: which keys of a disk-backed stage changed since its last segment, so that its
//! next delta holds exactly their entries.
//!
//! ```text
//! flush(keys) --note--> in memory (up to a limit) --full--> spilled to the store's marks
//!                                                  --full, and a delta would be half the
//!                                                    state or more--> forgotten: base next
//! segment: the stored entries of the noted keys (marks first, then memory); then cleared
//! ```
//!
//! Most intervals change a small part of a large state, and their keys stay in memory, so a
//! flush writes each entry once. A state that grows or churns faster spills the keys to the
//! store as it goes (written twice, but memory stays bounded). When the changed keys are half
//! the state or more, a delta would cost what a base costs, so a plain stage stops counting
//! and takes a base; a changelog, which must emit exactly its changed keys, always keeps them.

use super::store::{DiskStore, Tables};
use crate::dataflow::stage::FoldHashSet;
use crate::dataflow::DataflowError;

/// See the module documentation.
pub(super) struct Changes {
    memory: FoldHashSet<Box<[u8]>>,
    /// Some noted keys are marked in the store.
    spilled: bool,
    /// Keys noted since the last segment, counting a key once per spill it was in.
    noted: u64,
    /// Stopped counting: the next segment must be a base.
    forgotten: bool,
    /// Keys kept in memory before a spill.
    limit: usize,
    /// A changelog's: never forgotten.
    exact: bool,
}

impl Changes {
    /// Tracking that keeps up to `limit` keys in memory; `exact` for a changelog.
    pub(super) fn new(limit: usize, exact: bool) -> Changes {
        Changes {
            memory: FoldHashSet::default(),
            spilled: false,
            noted: 0,
            forgotten: false,
            limit: limit.max(1),
            exact,
        }
    }

    /// Whether the next segment must be a base (the changes were forgotten).
    pub(super) fn must_base(&self) -> bool {
        self.forgotten
    }

    /// Notes that `keys` changed, in a stage whose state holds about `state_keys` keys.
    pub(super) fn note<'k>(
        &mut self,
        store: &DiskStore,
        tables: &Tables,
        keys: impl ExactSizeIterator<Item = &'k [u8]>,
        state_keys: u64,
    ) -> Result<(), DataflowError> {
        if self.forgotten {
            return Ok(());
        }
        self.noted += keys.len() as u64;
        self.memory.extend(keys.map(Box::from));
        if self.memory.len() <= self.limit {
            return Ok(());
        }
        if !self.exact && self.noted.saturating_mul(2) >= state_keys {
            self.clear(store, tables)?;
            self.forgotten = true;
            return Ok(());
        }
        store.put_marks(tables, self.sorted())?;
        self.memory.clear();
        self.spilled = true;
        Ok(())
    }

    /// Calls `f` with each noted key that is stored and its value, once; returns how many.
    pub(super) fn for_each(
        &self,
        store: &DiskStore,
        tables: &Tables,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError>,
    ) -> Result<u64, DataflowError> {
        let mut n = 0;
        if self.spilled {
            store.for_each_marked(tables, |k, v| match self.memory.contains(k) {
                true => Ok(()),
                false => {
                    n += 1;
                    f(k, v)
                }
            })?;
        }
        let reader = store.reader(tables);
        for k in self.sorted() {
            if let Some(v) = reader.get(k)? {
                f(k, &v)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Forgets every noted key (a segment holds them).
    pub(super) fn clear(&mut self, store: &DiskStore, tables: &Tables) -> Result<(), DataflowError> {
        if self.spilled {
            store.reset_marks(tables)?;
        }
        *self = Changes::new(self.limit, self.exact);
        Ok(())
    }

    /// The in-memory keys in key order (neighbouring lookups and writes in the store).
    fn sorted(&self) -> Vec<&[u8]> {
        let mut keys: Vec<&[u8]> = self.memory.iter().map(|k| &k[..]).collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<DiskStore>, Tables) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DiskStore::create(Some(dir.path()), "changes").unwrap());
        let tables = store.open_tables(0).unwrap();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = (0u8..10).map(|k| (vec![k], vec![k + 100])).collect();
        store
            .put_all(&tables, entries.iter().map(|(k, v)| (&k[..], &v[..])))
            .unwrap();
        (dir, store, tables)
    }

    fn keys(ks: &[u8]) -> Vec<[u8; 1]> {
        ks.iter().map(|&k| [k]).collect()
    }

    fn note(changes: &mut Changes, store: &DiskStore, tables: &Tables, ks: &[u8], state_keys: u64) {
        let ks = keys(ks);
        changes
            .note(store, tables, ks.iter().map(|k| &k[..]), state_keys)
            .unwrap();
    }

    fn delta(changes: &Changes, store: &DiskStore, tables: &Tables) -> (u64, Vec<(u8, u8)>) {
        let mut seen = Vec::new();
        let n = (changes.for_each(store, tables, |k, v| {
            seen.push((k[0], v[0]));
            Ok(())
        }))
        .unwrap();
        seen.sort();
        (n, seen)
    }

    #[test]
    fn keys_past_the_limit_spill_to_the_store_and_each_is_in_the_delta_once() {
        let (_dir, store, tables) = store();
        let mut changes = Changes::new(2, false);
        note(&mut changes, &store, &tables, &[1, 2, 3], 1000);
        assert!(changes.spilled && changes.memory.is_empty());
        note(&mut changes, &store, &tables, &[3, 4], 1000);
        assert!(!changes.must_base());
        let (n, seen) = delta(&changes, &store, &tables);
        assert_eq!(seen, vec![(1, 101), (2, 102), (3, 103), (4, 104)]);
        assert_eq!(n, 4, "key 3, marked and in memory, counted once");

        changes.clear(&store, &tables).unwrap();
        assert_eq!(delta(&changes, &store, &tables), (0, vec![]), "marks removed too");
        note(&mut changes, &store, &tables, &[7], 1000);
        assert_eq!(delta(&changes, &store, &tables), (1, vec![(7, 107)]));
    }

    #[test]
    fn changes_of_half_the_state_or_more_are_forgotten_for_a_base_unless_exact() {
        let (_dir, store, tables) = store();
        let mut plain = Changes::new(2, false);
        note(&mut plain, &store, &tables, &[1, 2, 3], 6);
        assert!(plain.must_base(), "3 changed keys of 6: a base costs no more");
        note(&mut plain, &store, &tables, &[4], 6);
        assert!(plain.memory.is_empty(), "no longer counting");
        plain.clear(&store, &tables).unwrap();
        assert!(!plain.must_base(), "counting again after the base");

        let mut changelog = Changes::new(2, true);
        note(&mut changelog, &store, &tables, &[1, 2, 3], 6);
        note(&mut changelog, &store, &tables, &[4, 5, 6], 6);
        assert!(
            !changelog.must_base(),
            "a changelog emits its changed keys exactly"
        );
        assert_eq!(delta(&changelog, &store, &tables).0, 6);
    }
}
