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
//!
//! For local recovery the table also keeps, per interval between segments, each changed entry's
//! accumulator as it was before its first change in the interval (encoded, by bucket; a new key
//! has none), for the current interval and the one before: a worker whose job restarts from the
//! last segment's checkpoint, or the one before if the last was not committed, brings its own
//! partitions back from memory ([`TrackedMap::roll_back`]) instead of reading them from the
//! store. The pre-images cost one encoded accumulator per first change in an interval; past a
//! sixteenth of the entries (a state that mostly changes between checkpoints, where a rollback
//! would save little) an interval keeps none.

use std::hash::{BuildHasher, Hash};

use hashbrown::hash_table::Entry as Slot;
use hashbrown::HashTable;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Keyed state: an accumulator per key, with the keys changed since the last segment marked.
pub(crate) struct TrackedMap<K, A> {
    table: HashTable<(K, A)>,
    /// One bit per bucket of `table`: the entry there changed since the last segment.
    changed: Vec<u64>,
    /// Set bits in `changed`.
    changed_len: usize,
    hasher: foldhash::fast::RandomState,
    /// Pre-images of the current interval's changes: `None` when not kept (past the bound, or
    /// the state was written otherwise than by changes since the point it would roll back to).
    undo: Option<PreImages>,
    /// Pre-images of the interval before the last segment (`None`: not kept).
    undo_before: Option<PreImages>,
}

impl<K, A> Default for TrackedMap<K, A> {
    fn default() -> Self {
        TrackedMap {
            table: HashTable::new(),
            changed: Vec::new(),
            changed_len: 0,
            hasher: foldhash::fast::RandomState::default(),
            undo: Some(PreImages::default()),
            undo_before: None,
        }
    }
}

/// The accumulators of the entries changed in an interval, as they were before their first
/// change in it.
#[derive(Default)]
struct PreImages {
    /// `(bucket, start, len)`: the encoded accumulator is `bytes[start..start + len]`; a `len`
    /// of [`PreImages::NEW`] marks an entry that did not exist.
    entries: Vec<(usize, u32, u32)>,
    bytes: Vec<u8>,
}

impl PreImages {
    const NEW: u32 = u32::MAX;

    /// Keeps `acc` (`None`: a new entry) as bucket `index`'s pre-image; false once past the
    /// bound for a table of `len` entries.
    fn keep<A: Serialize>(&mut self, index: usize, acc: Option<&A>, len: usize) -> bool {
        if self.entries.len() > len / 16 + 4096 {
            return false;
        }
        let Some(acc) = acc else {
            self.entries.push((index, 0, Self::NEW));
            return true;
        };
        let start = self.bytes.len();
        let Ok(bytes) = postcard::to_extend(acc, std::mem::take(&mut self.bytes)) else {
            return false;
        };
        self.bytes = bytes;
        match (u32::try_from(start), u32::try_from(self.bytes.len() - start)) {
            (Ok(start), Ok(len)) if len != Self::NEW => {
                self.entries.push((index, start, len));
                true
            }
            _ => false,
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

    /// Sets `key`'s accumulator to `f` of the one it had (`None` for a new key), marked changed
    /// (its pre-image kept if this is its first change since the last segment).
    pub(crate) fn update(&mut self, key: K, f: impl FnOnce(Option<A>) -> A)
    where
        A: Serialize,
    {
        let index = self.put(key, f, true);
        self.mark(index);
    }

    /// Sets `key`'s accumulator to `f` of the one it had as restored state (an overlay merged
    /// in on recovery): not marked changed (and no longer marked if it was). Such writes happen
    /// while a state is restored; [`TrackedMap::restored_here`] makes the result a point to roll
    /// back to, or [`TrackedMap::no_rollback`] says there is none.
    pub(crate) fn update_clean(&mut self, key: K, f: impl FnOnce(Option<A>) -> A)
    where
        A: Serialize,
    {
        let index = self.put(key, f, false);
        self.unmark(index);
    }

    /// Sets `key`'s accumulator to `f` of the one it had: its bucket. With `change`, the entry's
    /// pre-image is kept if this is its first change since the last segment.
    fn put(&mut self, key: K, f: impl FnOnce(Option<A>) -> A, change: bool) -> usize
    where
        A: Serialize,
    {
        self.make_room();
        let len = self.table.len();
        let hash = self.hasher.hash_one(&key);
        let hasher = &self.hasher;
        let slot = self
            .table
            .entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k));
        let (index, kept) = match slot {
            Slot::Occupied(entry) => {
                let index = entry.bucket_index();
                let kept = match &mut self.undo {
                    Some(undo) if change && !is_marked(&self.changed, index) => {
                        undo.keep(index, Some(&entry.get().1), len)
                    }
                    _ => true,
                };
                // `f` takes the accumulator by value: the entry is taken out and put back (in
                // the same bucket; `replace_entry_with` only empties it if `f` returns None).
                let _ = entry.replace_entry_with(|(k, acc)| Some((k, f(Some(acc)))));
                (index, kept)
            }
            Slot::Vacant(entry) => {
                let index = entry.insert((key, f(None))).bucket_index();
                let kept = match &mut self.undo {
                    Some(undo) if change => undo.keep::<A>(index, None, len),
                    _ => true,
                };
                (index, kept)
            }
        };
        if !kept {
            self.no_rollback();
        }
        index
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

    /// Makes room for one more entry, so that finding a slot never resizes the table.
    fn make_room(&mut self) {
        if self.table.len() == self.table.capacity() {
            self.grow(self.table.len() + 1);
        }
    }

    /// The table's slot for `key` (and the key back, for a vacant one), after making room for
    /// one more entry.
    fn slot(&mut self, key: K) -> (Slot<'_, (K, A)>, K) {
        self.make_room();
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
        // Where the buckets with pre-images went (the pre-images name entries by bucket).
        let mut kept: std::collections::HashMap<usize, usize> = [&self.undo, &self.undo_before]
            .into_iter()
            .flatten()
            .flat_map(|undo| undo.entries.iter().map(|&(index, _, _)| (index, index)))
            .collect();
        for index in 0..old.num_buckets() {
            let Ok(entry) = old.get_bucket_entry(index) else {
                continue;
            };
            let ((key, acc), _) = entry.remove();
            let was_changed = is_marked(&self.changed, index);
            let hash = hasher.hash_one(&key);
            let moved = table.insert_unique(hash, (key, acc), |(k, _)| hasher.hash_one(k));
            let at = moved.bucket_index();
            if was_changed {
                changed[at / 64] |= 1 << (at % 64);
            }
            if let Some(to) = kept.get_mut(&index) {
                *to = at;
            }
        }
        self.table = table;
        self.changed = changed;
        for undo in [&mut self.undo, &mut self.undo_before].into_iter().flatten() {
            for entry in &mut undo.entries {
                entry.0 = kept.get(&entry.0).copied().unwrap_or(entry.0);
            }
        }
    }

    /// A segment was taken: every entry is clean again, the current interval's pre-images are
    /// the previous interval's, and a new interval begins.
    pub(crate) fn segment_taken(&mut self) {
        self.clear_changed();
        self.undo_before = self.undo.take();
        self.undo = Some(PreImages::default());
    }

    /// The state is now exactly a restored checkpoint's (a base, its deltas and overlays
    /// applied): the point a rollback returns to, with none before it. Pre-images are kept of
    /// first changes, told by the changed marks, so with entries still marked (not a state
    /// just restored) there is no such point until the next segment.
    pub(crate) fn restored_here(&mut self) {
        self.undo = (self.changed_len == 0).then(PreImages::default);
        self.undo_before = None;
    }

    /// The state is no checkpoint's and was not reached by changes from one (a recovery's
    /// partial state merged with the restored one): no rollback until the next segment.
    pub(crate) fn no_rollback(&mut self) {
        self.undo = None;
        self.undo_before = None;
    }

    /// Brings the state back to what it was at the last segment (or restore), `back` 0, or at
    /// the one before, `back` 1, from the pre-images kept, every entry clean; false, with
    /// nothing changed, if they were not kept.
    pub(crate) fn roll_back(&mut self, back: usize) -> Result<bool, postcard::Error>
    where
        A: DeserializeOwned,
    {
        let intervals = match (back, &self.undo, &self.undo_before) {
            (0, Some(_), _) | (1, Some(_), Some(_)) => back + 1,
            _ => return Ok(false),
        };
        let logs = [self.undo.take(), self.undo_before.take()];
        for undo in logs.into_iter().take(intervals).flatten() {
            for &(index, start, len) in &undo.entries {
                let Ok(mut entry) = self.table.get_bucket_entry(index) else {
                    continue;
                };
                if len == PreImages::NEW {
                    entry.remove();
                    continue;
                }
                let at = start as usize;
                let Some(bytes) = undo.bytes.get(at..at + len as usize) else {
                    return Err(postcard::Error::DeserializeUnexpectedEnd);
                };
                entry.get_mut().1 = postcard::from_bytes(bytes)?;
            }
        }
        self.clear_changed();
        self.restored_here();
        Ok(true)
    }

    fn mark(&mut self, index: usize) {
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if self.changed[word] & bit == 0 {
            self.changed[word] |= bit;
            self.changed_len += 1;
        }
    }

    /// Every entry clean again.
    fn clear_changed(&mut self) {
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

/// Whether bucket `index` is marked changed in `changed`.
fn is_marked(changed: &[u64], index: usize) -> bool {
    changed
        .get(index / 64)
        .is_some_and(|w| w & (1 << (index % 64)) != 0)
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
    use std::collections::{BTreeMap, HashMap};

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
        map.segment_taken();
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
        map.segment_taken();
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
        map.segment_taken();
        for i in 0..100u64 {
            add(&mut map, &format!("key-{i:08}"), 1);
        }
        let delta = postcard::to_stdvec(&map.changed_entries()).unwrap();
        assert!(map.encoded_capacity(map.changed_len()) >= delta.len());
    }

    fn counts(map: &TrackedMap<String, u64>) -> BTreeMap<String, u64> {
        map.table.iter().map(|(k, a)| (k.clone(), *a)).collect()
    }

    /// A map after two segments, with its counts at the first and at the second.
    fn two_segments() -> (
        TrackedMap<String, u64>,
        BTreeMap<String, u64>,
        BTreeMap<String, u64>,
    ) {
        let mut map = TrackedMap::default();
        for i in 0..100u64 {
            add(&mut map, &format!("k{i}"), 1);
        }
        map.segment_taken();
        let first = counts(&map);
        add(&mut map, "k1", 10);
        add(&mut map, "new-a", 1);
        map.segment_taken();
        let second = counts(&map);
        (map, first, second)
    }

    #[test]
    fn a_rollback_returns_to_the_last_segment_or_the_one_before() {
        let (mut map, first, second) = two_segments();
        // Changed twice, new, and enough new keys to grow the table under the pre-images.
        add(&mut map, "k1", 5);
        add(&mut map, "k1", 5);
        add(&mut map, "k2", 7);
        add(&mut map, "new-a", 3);
        for i in 0..3_000u64 {
            add(&mut map, &format!("grown{i}"), 1);
        }
        assert!(map.roll_back(0).unwrap());
        assert_eq!(counts(&map), second);
        assert_eq!(map.changed_len(), 0, "rolled back: every entry clean");
        // Once rolled back, the state is the point to return to, with none before it.
        assert!(!map.roll_back(1).unwrap());
        assert!(map.roll_back(0).unwrap());
        assert_eq!(counts(&map), second);

        // Two segments back, from a map in the same position.
        let (mut map, _, _) = two_segments();
        add(&mut map, "k2", 7);
        for i in 0..3_000u64 {
            add(&mut map, &format!("grown{i}"), 1);
        }
        assert!(map.roll_back(1).unwrap());
        assert_eq!(counts(&map), first);
    }

    #[test]
    fn no_rollback_past_the_bound_or_a_merge() {
        let mut map = TrackedMap::default();
        for i in 0..10_000u64 {
            add(&mut map, &format!("k{i}"), 1);
        }
        map.segment_taken();
        // More than a sixteenth of the entries plus the allowance change: nothing kept.
        for i in 0..10_000u64 {
            add(&mut map, &format!("k{i}"), 1);
        }
        let before = counts(&map);
        assert!(!map.roll_back(0).unwrap());
        assert_eq!(counts(&map), before, "a refused rollback changes nothing");
        // The next segment starts keeping again, but has no interval before it to return to.
        map.segment_taken();
        add(&mut map, "k1", 1);
        assert!(!map.roll_back(1).unwrap());
        map.no_rollback();
        assert!(!map.roll_back(0).unwrap());
        // A restore point with changes still marked would miss their pre-images: none.
        map.restored_here();
        assert!(!map.roll_back(0).unwrap());
        map.segment_taken();
        map.restored_here();
        add(&mut map, "k1", 1);
        let at = counts(&map);
        assert!(map.roll_back(0).unwrap());
        assert_eq!(counts(&map)["k1"], at["k1"] - 1);
    }

    #[test]
    fn a_corrupt_length_neither_panics_nor_allocates_for_it() {
        // A map claiming u32::MAX entries with none behind it.
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(postcard::from_bytes::<TrackedMap<String, u64>>(&bytes).is_err());
    }
}
