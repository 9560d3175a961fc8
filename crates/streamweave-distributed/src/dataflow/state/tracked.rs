//! [`TrackedMap`]: the memory backend's keyed state, one hash table that knows which of its
//! entries changed since the last segment, so a delta costs what changed and taking it moves
//! nothing.
//!
//! ```text
//! update(key, f) --one probe--> entry = f(entry), its bucket's bit set in `changed`
//! delta: every set bit --> (key, acc) of that bucket, then the bits cleared
//! base: every entry (the bytes of a HashMap<K, A>), then the bits cleared
//! ```
//!
//! A changed key is found again by its bucket: one bit a bucket, beside the table, rather than a
//! flag in each entry (8 bytes more per entry of a word count once padded) or a second map of
//! changed entries. The second map, which this replaces, moved every changed key into the big
//! map after each segment, rehashing it on the way: `perf` found that move at 70% of taking a
//! delta of 1 GB of state, and a key's first change after a segment cost two probes. Bucket
//! indices hold only while the table keeps its size, so the table never grows on its own: before
//! an insert that would resize it, [`TrackedMap`] moves the entries into a larger table itself,
//! carrying each one's bit over.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry as Slot;
use hashbrown::HashTable;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Keyed state: an accumulator per key, with the keys changed since the last segment marked.
pub(crate) struct TrackedMap<K, A> {
    table: HashTable<(K, A)>,
    /// One bit per bucket of `table`: the entry there changed since the last segment.
    changed: Vec<u64>,
    /// Set bits in `changed`.
    changed_len: usize,
    hasher: foldhash::fast::RandomState,
}

impl<K, A> Default for TrackedMap<K, A> {
    fn default() -> Self {
        TrackedMap {
            table: HashTable::new(),
            changed: Vec::new(),
            changed_len: 0,
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<K: Eq + Hash, A> TrackedMap<K, A> {
    /// Entries held.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Entries changed since the last segment.
    pub(crate) fn changed_len(&self) -> usize {
        self.changed_len
    }

    /// Sets `key`'s accumulator to `f` of the one it had (`None` for a new key), marked changed.
    pub(crate) fn update(&mut self, key: K, f: impl FnOnce(Option<A>) -> A) {
        let index = self.put(key, f);
        self.mark(index);
    }

    /// Sets `key`'s accumulator to `f` of the one it had as restored state (an overlay merged
    /// in on recovery): not marked changed (and no longer marked if it was).
    pub(crate) fn update_clean(&mut self, key: K, f: impl FnOnce(Option<A>) -> A) {
        let index = self.put(key, f);
        self.unmark(index);
    }

    /// Sets `key`'s accumulator to `f` of the one it had: its bucket.
    fn put(&mut self, key: K, f: impl FnOnce(Option<A>) -> A) -> usize {
        match self.slot(key) {
            (Slot::Occupied(entry), _) => {
                let index = entry.bucket_index();
                // `f` takes the accumulator by value: the entry is taken out and put back (in
                // the same bucket; `replace_entry_with` only empties it if `f` returns None).
                let _ = entry.replace_entry_with(|(k, acc)| Some((k, f(Some(acc)))));
                index
            }
            (Slot::Vacant(entry), key) => entry.insert((key, f(None))).bucket_index(),
        }
    }

    /// Sets `key`'s accumulator to `acc` as restored state: not marked changed (and no longer
    /// marked if it was).
    pub(crate) fn insert_clean(&mut self, key: K, acc: A) {
        let index = match self.slot(key) {
            (Slot::Occupied(mut entry), _) => {
                entry.get_mut().1 = acc;
                entry.bucket_index()
            }
            (Slot::Vacant(entry), key) => entry.insert((key, acc)).bucket_index(),
        };
        self.unmark(index);
    }

    /// Bucket `index` is no longer marked changed.
    fn unmark(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.changed[word] & bit != 0 {
            self.changed[word] &= !bit;
            self.changed_len -= 1;
        }
    }

    /// The table's slot for `key` (and the key back, for a vacant one), after making room for
    /// one more entry so that finding the slot never resizes the table.
    fn slot(&mut self, key: K) -> (Slot<'_, (K, A)>, K) {
        if self.table.len() == self.table.capacity() {
            self.grow(self.table.len() + 1);
        }
        let hash = self.hasher.hash_one(&key);
        let hasher = &self.hasher;
        let slot = self
            .table
            .entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k));
        (slot, key)
    }

    /// Makes room for `additional` more entries without a resize hidden in an insert.
    pub(crate) fn reserve(&mut self, additional: usize) {
        let wanted = self.table.len().saturating_add(additional);
        if wanted > self.table.capacity() {
            self.grow(wanted);
        }
    }

    /// Moves every entry into a table for at least `at_least` entries (twice the current size or
    /// more), its changed bit with it.
    fn grow(&mut self, at_least: usize) {
        let capacity = at_least.max(self.table.capacity().saturating_mul(2)).max(16);
        let mut table = HashTable::with_capacity(capacity);
        let mut changed = vec![0u64; table.num_buckets().div_ceil(64)];
        let mut old = std::mem::replace(&mut self.table, HashTable::new());
        let hasher = &self.hasher;
        for index in 0..old.num_buckets() {
            let Ok(entry) = old.get_bucket_entry(index) else {
                continue;
            };
            let ((key, acc), _) = entry.remove();
            let was_changed = self
                .changed
                .get(index / 64)
                .is_some_and(|w| w & (1 << (index % 64)) != 0);
            let hash = hasher.hash_one(&key);
            let moved = table.insert_unique(hash, (key, acc), |(k, _)| hasher.hash_one(k));
            if was_changed {
                let at = moved.bucket_index();
                changed[at / 64] |= 1 << (at % 64);
            }
        }
        self.table = table;
        self.changed = changed;
    }

    fn mark(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.changed[word] & bit == 0 {
            self.changed[word] |= bit;
            self.changed_len += 1;
        }
    }

    /// Every entry clean again (a segment was taken).
    pub(crate) fn clear_changed(&mut self) {
        if self.changed_len > 0 {
            self.changed.iter_mut().for_each(|w| *w = 0);
            self.changed_len = 0;
        }
    }

    /// The entries changed since the last segment, serialized as a `Vec<(K, A)>` would be.
    pub(crate) fn changed_entries(&self) -> ChangedEntries<'_, K, A> {
        ChangedEntries(self)
    }

    /// Every entry, serialized as a map (the bytes of a `HashMap<K, A>`).
    pub(crate) fn entries(&self) -> AllEntries<'_, K, A> {
        AllEntries(self)
    }

    /// Room for the bytes of `entries` entries such as these, from the encoded size of the
    /// first few: a base or a large delta encoded into a buffer that grows by doubling is
    /// copied once more on the way and faults in its pages twice (a quarter of encoding a base
    /// of 700 k words, measured).
    pub(crate) fn encoded_capacity(&self, entries: usize) -> usize
    where
        K: Serialize,
        A: Serialize,
    {
        const SAMPLE: usize = 64;
        let (mut sampled, mut bytes) = (0usize, 0usize);
        for entry in self.table.iter().take(SAMPLE) {
            bytes += postcard::experimental::serialized_size(entry).unwrap_or(0);
            sampled += 1;
        }
        if sampled == 0 {
            return 16;
        }
        // An eighth more than the sample says, so that keys a little longer than those sampled
        // still fit without a last doubling; a length prefix of at most 10 bytes.
        let per_entry = bytes.div_ceil(sampled);
        entries
            .saturating_mul(per_entry + per_entry / 8 + 1)
            .saturating_add(10)
    }

    fn changed_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.changed.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    w * 64 + bit
                })
            })
        })
    }

    /// Takes every entry out, in no particular order.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (K, A)> {
        self.table.into_iter()
    }

    /// Takes every entry out with whether it changed since the last segment: the changed ones
    /// first, then the others, each in no particular order.
    pub(crate) fn into_marked_entries(mut self) -> impl Iterator<Item = (K, A, bool)> {
        let indices: Vec<usize> = self.changed_indices().collect();
        let mut changed = Vec::with_capacity(indices.len());
        for index in indices {
            // Removing an entry leaves the other buckets where they are.
            if let Ok(entry) = self.table.get_bucket_entry(index) {
                let ((k, a), _) = entry.remove();
                changed.push((k, a, true));
            }
        }
        let clean = self.table.into_iter().map(|(k, a)| (k, a, false));
        changed.into_iter().chain(clean)
    }
}

/// [`TrackedMap::changed_entries`].
pub(crate) struct ChangedEntries<'a, K, A>(&'a TrackedMap<K, A>);

impl<K: Eq + Hash + Serialize, A: Serialize> Serialize for ChangedEntries<'_, K, A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map = self.0;
        let mut seq = serializer.serialize_seq(Some(map.changed_len))?;
        for index in map.changed_indices() {
            // A set bit always has an entry under it (entries leave only through `grow`, which
            // rebuilds the bits). Were one missing, the length written above would be wrong, so
            // that is an error, never a silently short delta.
            let Some((k, a)) = map.table.get_bucket(index) else {
                return Err(serde::ser::Error::custom("a changed mark without an entry"));
            };
            seq.serialize_element(&(k, a))?;
        }
        seq.end()
    }
}

/// [`TrackedMap::entries`].
pub(crate) struct AllEntries<'a, K, A>(&'a TrackedMap<K, A>);

impl<K: Serialize, A: Serialize> Serialize for AllEntries<'_, K, A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.table.iter().map(|(k, a)| (k, a)))
    }
}

/// A map's bytes (as [`TrackedMap::entries`] writes them) read straight into the table, every
/// entry clean.
impl<'de, K, A> Deserialize<'de> for TrackedMap<K, A>
where
    K: Eq + Hash + Deserialize<'de>,
    A: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, A>(std::marker::PhantomData<(K, A)>);

        impl<'de, K, A> Visitor<'de> for Entries<K, A>
        where
            K: Eq + Hash + Deserialize<'de>,
            A: Deserialize<'de>,
        {
            type Value = TrackedMap<K, A>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of keyed state")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<Self::Value, M::Error> {
                let mut map = TrackedMap::default();
                // The length comes from the bytes: capped, so a corrupt one cannot ask for
                // more memory than the entries it really has.
                map.reserve(access.size_hint().unwrap_or(0).min(1 << 22));
                while let Some((k, a)) = access.next_entry()? {
                    map.insert_clean(k, a);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn add(map: &mut TrackedMap<String, u64>, key: &str, n: u64) {
        map.update(key.to_string(), |old| old.unwrap_or(0) + n);
    }

    fn changed(map: &TrackedMap<String, u64>) -> HashMap<String, u64> {
        let bytes = postcard::to_stdvec(&map.changed_entries()).unwrap();
        let pairs: Vec<(String, u64)> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(pairs.len(), map.changed_len(), "each changed entry once");
        pairs.into_iter().collect()
    }

    fn all(map: TrackedMap<String, u64>) -> HashMap<String, u64> {
        map.into_entries().collect()
    }

    #[test]
    fn entries_come_out_with_their_marks() {
        let mut map = TrackedMap::default();
        for i in 0..1_000u64 {
            add(&mut map, &format!("k{i}"), i);
        }
        map.clear_changed();
        for i in (0..1_000u64).step_by(3) {
            add(&mut map, &format!("k{i}"), 1);
        }
        add(&mut map, "new", 7);
        let mut seen = HashMap::new();
        for (k, a, changed) in map.into_marked_entries() {
            let i: Option<u64> = k.strip_prefix('k').and_then(|i| i.parse().ok());
            let want = match i {
                Some(i) => (i + u64::from(i % 3 == 0), i % 3 == 0),
                None => (7, true),
            };
            assert_eq!((a, changed), want, "{k}");
            assert!(seen.insert(k, a).is_none(), "each entry once");
        }
        assert_eq!(seen.len(), 1_001);
    }

    #[test]
    fn changed_entries_survive_the_table_growing_under_them() {
        let mut map = TrackedMap::default();
        let mut expected = HashMap::new();
        for i in 0..5_000u64 {
            add(&mut map, &format!("k{i}"), i);
            expected.insert(format!("k{i}"), i);
        }
        map.clear_changed();
        assert!(changed(&map).is_empty());
        // Change every 7th old key, then add enough new ones to grow the table several times.
        let mut delta = HashMap::new();
        for i in (0..5_000u64).step_by(7) {
            add(&mut map, &format!("k{i}"), 1);
            delta.insert(format!("k{i}"), i + 1);
        }
        for i in 5_000..40_000u64 {
            add(&mut map, &format!("k{i}"), i);
            delta.insert(format!("k{i}"), i);
        }
        assert_eq!(changed(&map), delta);
        expected.extend(delta);
        assert_eq!(map.len(), expected.len());
        assert_eq!(all(map), expected);
    }

    #[test]
    fn a_key_changed_twice_is_in_the_delta_once_with_its_last_value() {
        let mut map = TrackedMap::default();
        add(&mut map, "a", 1);
        add(&mut map, "a", 2);
        add(&mut map, "b", 5);
        assert_eq!(changed(&map), HashMap::from([("a".into(), 3), ("b".into(), 5)]));
    }

    #[test]
    fn restored_entries_are_clean_and_a_restored_key_is_no_longer_changed() {
        let mut map = TrackedMap::default();
        add(&mut map, "a", 1);
        add(&mut map, "b", 1);
        map.insert_clean("a".to_string(), 10);
        map.insert_clean("c".to_string(), 7);
        assert_eq!(changed(&map), HashMap::from([("b".into(), 1)]));
        add(&mut map, "a", 1);
        assert_eq!(changed(&map), HashMap::from([("a".into(), 11), ("b".into(), 1)]));
    }

    #[test]
    fn the_entries_round_trip_as_a_hash_map_and_come_back_clean() {
        let mut map = TrackedMap::default();
        for i in 0..1_000u64 {
            add(&mut map, &format!("w{i}"), i);
        }
        let bytes = postcard::to_stdvec(&map.entries()).unwrap();
        let as_map: HashMap<String, u64> = postcard::from_bytes(&bytes).unwrap();
        let restored: TrackedMap<String, u64> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(restored.changed_len(), 0);
        assert_eq!(all(restored), as_map);
        assert_eq!(all(map), as_map);
    }

    #[test]
    fn the_capacity_estimate_holds_a_base_and_a_delta_of_similar_keys() {
        let mut map = TrackedMap::default();
        assert_eq!(map.encoded_capacity(0), 16, "nothing to sample");
        for i in 0..10_000u64 {
            add(&mut map, &format!("key-{i:08}"), i);
        }
        let base = postcard::to_stdvec(&map.entries()).unwrap();
        let room = map.encoded_capacity(map.len());
        assert!(room >= base.len(), "{room} < {}", base.len());
        assert!(room < base.len() * 3 / 2, "{room}: more than half again too much");
        map.clear_changed();
        for i in 0..100u64 {
            add(&mut map, &format!("key-{i:08}"), 1);
        }
        let delta = postcard::to_stdvec(&map.changed_entries()).unwrap();
        assert!(map.encoded_capacity(map.changed_len()) >= delta.len());
    }

    #[test]
    fn a_corrupt_length_neither_panics_nor_allocates_for_it() {
        // A map claiming u32::MAX entries with none behind it.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<TrackedMap<String, u64>>(&bytes).is_err());
    }
}
