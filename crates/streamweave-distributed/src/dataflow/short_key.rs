//! [`ShortKey`]: a string key for pre-aggregation tables, stored inline when it is short.
//!
//! Looking a key up in a hash table ends with comparing it to the stored one. A `String` key
//! keeps its bytes elsewhere on the heap, so every hit costs a second memory access, often a
//! cache miss (perf showed it as a quarter of word count's time, in `memcmp`). Most words fit in
//! 22 bytes: stored inline, the bytes sit in the table's slot next to the count.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Bytes kept inline; longer keys go to the heap.
const INLINE: usize = 22;

/// A UTF-8 string key, inline up to 22 bytes (zero-padded). It hashes as its bytes and equals
/// another key with the same bytes; a table of them is searched with a key built from the probe
/// (a copy of at most 22 bytes, and no allocation), or with a `&[u8]`.
#[derive(Clone, Debug)]
pub(crate) enum ShortKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl ShortKey {
    /// The key for `s`.
    pub(crate) fn new(s: &str) -> Self {
        let source = s.as_bytes();
        if source.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..source.len()].copy_from_slice(source);
            // Fits: at most INLINE (22) bytes.
            ShortKey::Inline {
                len: source.len() as u8,
                bytes,
            }
        } else {
            ShortKey::Heap(source.into())
        }
    }

    /// Its bytes (valid UTF-8).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            ShortKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortKey::Heap(bytes) => bytes,
        }
    }

    /// The key as a `String`.
    pub(crate) fn into_string(self) -> String {
        let bytes = match self {
            ShortKey::Inline { len, bytes } => bytes[..usize::from(len)].to_vec(),
            ShortKey::Heap(bytes) => bytes.into_vec(),
        };
        // Built from a `&str`, so always UTF-8; the lossy path only keeps this total.
        String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

impl PartialEq for ShortKey {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            // Both zero-padded: comparing the whole arrays is a fixed-size compare the compiler
            // inlines, and equal arrays mean equal keys.
            (ShortKey::Inline { len: a, bytes: x }, ShortKey::Inline { len: b, bytes: y }) => {
                a == b && x == y
            }
            (ShortKey::Heap(x), ShortKey::Heap(y)) => x == y,
            // A key is inline exactly when it is short, so the two forms never hold equal keys.
            _ => false,
        }
    }
}

impl Eq for ShortKey {}

impl Hash for ShortKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as `[u8]` hashes, as `Borrow<[u8]>` requires.
        self.as_bytes().hash(state);
    }
}

impl Borrow<[u8]> for ShortKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn short_and_long_keys_round_trip_and_are_found_by_their_bytes() {
        let words = [
            "",
            "a",
            "exactly-twenty-two-byt",
            "twenty-three-bytes-long",
            "ünïcödé",
            "日本語のことば",
        ];
        let mut table: HashMap<ShortKey, u64> = HashMap::new();
        for (i, w) in words.iter().enumerate() {
            table.insert(ShortKey::new(w), i as u64);
        }
        for (i, w) in words.iter().enumerate() {
            assert_eq!(table.get(w.as_bytes()), Some(&(i as u64)), "{w:?}");
        }
        assert!(matches!(
            ShortKey::new("exactly-twenty-two-byt"),
            ShortKey::Inline { .. }
        ));
        assert!(matches!(
            ShortKey::new("twenty-three-bytes-long"),
            ShortKey::Heap(_)
        ));
        for w in words {
            assert_eq!(ShortKey::new(w).into_string(), w);
        }
    }

    proptest! {
        #[test]
        fn a_key_equals_and_hashes_as_its_bytes(a in ".{0,40}", b in ".{0,40}") {
            let (ka, kb) = (ShortKey::new(&a), ShortKey::new(&b));
            prop_assert_eq!(ka == kb, a == b);
            let hash = |k: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                k(&mut h);
                h.finish()
            };
            prop_assert_eq!(hash(&|h| ka.hash(h)), hash(&|h| a.as_bytes().hash(h)));
            prop_assert_eq!(ka.into_string(), a);
        }
    }
}
