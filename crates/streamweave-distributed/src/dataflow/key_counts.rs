//! [`KeyCounts`]: the send side's pre-aggregation table for string keys (word count's
//! `count_str_keys`), counting each key seen since the last flush.
//!
//! ```text
//! &str --hash, compare with text[start..start+len]--> slot.count += 1
//!      --not there: append to text--> new slot { start, len, count: 1 }
//! flush: every slot --ShortKey of its bytes--> router, then text cleared
//! ```
//!
//! The keys' bytes sit one after the other in a single buffer, in the order they were first
//! seen, and the table's slots hold ranges of it. A table of owned keys (a `ShortKey` per slot)
//! kept every key longer than 14 bytes in two heap allocations of its own: each hit read them
//! through two pointers, wherever the allocator had put them, and each probe allocated a key
//! only to drop it. `perf` put most of word count's sending time there, twice as much once
//! checkpoints flushed the table every second (the keys were allocated again among the
//! fragments of the receivers' work). Here a hit reads one contiguous buffer (the hot keys of
//! a text are near each other in it) and allocates nothing.

use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::short_key::ShortKey;

/// Bytes of key text a table holds before [`KeyCounts::is_full`] says to flush it, whatever
/// the number of keys (long keys must not grow the buffer without bound).
const TEXT_LIMIT: usize = 32 << 20;

/// A key's place in the text buffer and its count.
#[derive(Clone, Copy)]
struct Slot {
    start: usize,
    len: usize,
    count: u64,
}

impl Slot {
    fn key<'t>(&self, text: &'t str) -> &'t str {
        // Every slot covers exactly one key pushed whole onto `text`: in bounds, on char
        // boundaries.
        &text[self.start..self.start + self.len]
    }
}

/// Counts of string keys, flushed into the exchange as `(ShortKey, count)` pairs.
#[derive(Default)]
pub(crate) struct KeyCounts {
    slots: HashTable<Slot>,
    text: String,
    hasher: foldhash::fast::RandomState,
}

impl KeyCounts {
    /// Counts one occurrence of `key`.
    pub(crate) fn add(&mut self, key: &str) {
        let hash = self.hasher.hash_one(key);
        let text = &self.text;
        if let Some(slot) = self.slots.find_mut(hash, |s| s.key(text) == key) {
            slot.count += 1;
            return;
        }
        let slot = Slot {
            start: self.text.len(),
            len: key.len(),
            count: 1,
        };
        self.text.push_str(key);
        let (text, hasher) = (&self.text, &self.hasher);
        self.slots
            .insert_unique(hash, slot, |s| hasher.hash_one(s.key(text)));
    }

    /// Distinct keys counted since the last flush.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing was counted since the last flush.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether the table must be flushed whatever its keys: it holds more key text than
    /// [`TEXT_LIMIT`] (how many keys is the caller's bound, `router::CombineBound`).
    pub(crate) fn is_full(&self) -> bool {
        self.text.len() >= TEXT_LIMIT
    }

    /// Takes every key with its count out (the table is empty afterwards, its memory kept for
    /// the next round).
    pub(crate) fn drain(&mut self) -> Drain<'_> {
        Drain {
            slots: self.slots.drain(),
            text: &mut self.text,
        }
    }
}

/// The keys and counts of a [`KeyCounts`], taken out; the key text is cleared when it is
/// dropped.
pub(crate) struct Drain<'a> {
    slots: hashbrown::hash_table::Drain<'a, Slot>,
    text: &'a mut String,
}

impl Iterator for Drain<'_> {
    type Item = (ShortKey, u64);

    fn next(&mut self) -> Option<Self::Item> {
        let slot = self.slots.next()?;
        Some((ShortKey::new(slot.key(self.text)), slot.count))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.slots.size_hint()
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        // The slots left are dropped with `slots`; their text goes with everyone else's.
        self.text.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn drained(counts: &mut KeyCounts) -> HashMap<String, u64> {
        counts.drain().map(|(k, n)| (k.into_string(), n)).collect()
    }

    #[test]
    fn counts_short_long_and_multibyte_keys_like_a_map_would() {
        let words: Vec<String> = (0..20_000u32)
            .map(|i| match i % 3 {
                0 => format!("w{}", i % 97),
                1 => format!("a-much-longer-key-{:012}", i % 1_003),
                _ => format!("größe-ключ-{}", i % 11),
            })
            .collect();
        let mut counts = KeyCounts::default();
        let mut expected: HashMap<String, u64> = HashMap::new();
        for w in &words {
            counts.add(w);
            *expected.entry(w.clone()).or_default() += 1;
        }
        assert_eq!(counts.len(), expected.len());
        assert_eq!(drained(&mut counts), expected);
    }

    #[test]
    fn a_drained_table_is_empty_and_counts_afresh() {
        let mut counts = KeyCounts::default();
        for w in ["x", "y", "x", "a-key-longer-than-fourteen-bytes"] {
            counts.add(w);
        }
        assert_eq!(drained(&mut counts).get("x"), Some(&2));
        assert!(counts.is_empty());
        assert!(counts.text.is_empty(), "the key text goes with the keys");
        counts.add("x");
        assert_eq!(drained(&mut counts), HashMap::from([("x".to_string(), 1)]));
    }

    #[test]
    fn a_drain_dropped_half_way_still_empties_the_table() {
        let mut counts = KeyCounts::default();
        for i in 0..100 {
            counts.add(&format!("key-{i}"));
        }
        assert_eq!(counts.drain().take(10).count(), 10);
        assert!(counts.is_empty());
        counts.add("key-1");
        assert_eq!(drained(&mut counts), HashMap::from([("key-1".to_string(), 1)]));
    }

    #[test]
    fn full_at_the_text_limit_whatever_the_keys() {
        let mut counts = KeyCounts::default();
        counts.add("a");
        counts.add("b");
        assert!(!counts.is_full());
        counts.add(&"z".repeat(TEXT_LIMIT));
        assert!(counts.is_full());
        assert_eq!(counts.len(), 3);
    }
}
