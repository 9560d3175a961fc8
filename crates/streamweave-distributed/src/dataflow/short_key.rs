//! [`ShortKey`]: a string key for pre-aggregation tables, stored inline when it is short.
//!
//! Looking a key up in a hash table ends with comparing it to the stored one. A `String` key
//! keeps its bytes elsewhere on the heap, so every hit costs a second memory access, often a
//! cache miss (perf showed it as a quarter of word count's time, in `memcmp`). Most words fit in
//! 14 bytes: stored inline, the bytes sit in the table's slot next to the count.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thin_vec::ThinVec;
use twox_hash::XxHash64;

use super::StableHash;

/// Bytes kept inline; longer keys go to the heap. 14 makes a key 16 bytes (a table slot of a key
/// and a count, 24): most words of natural text are shorter.
const INLINE: usize = 14;

/// A UTF-8 string key, inline up to 14 bytes (zero-padded). It hashes as its bytes and equals
/// another key with the same bytes; a table of them is searched with a key built from the probe
/// (a copy of at most 14 bytes, and no allocation), or with a `&[u8]`.
#[derive(Clone, Debug)]
pub(crate) enum ShortKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    /// Behind a thin pointer, so that the enum stays 16 bytes; its length sits in the same
    /// allocation as its bytes, so a comparison follows one pointer (a boxed `Box<[u8]>`
    /// followed two, each a likely cache miss in a large table).
    Heap(ThinVec<u8>),
}

impl ShortKey {
    /// The key for `s`.
    pub(crate) fn new(s: &str) -> Self {
        let source = s.as_bytes();
        if source.len() <= INLINE {
            let mut bytes = [0u8; INLINE];
            bytes[..source.len()].copy_from_slice(source);
            // Fits: at most INLINE (14) bytes.
            ShortKey::Inline {
                len: source.len() as u8,
                bytes,
            }
        } else {
            ShortKey::Heap(ThinVec::from(source))
        }
    }

    /// Its bytes (valid UTF-8).
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            ShortKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            ShortKey::Heap(long) => long,
        }
    }

    /// The key as a `String`.
    pub(crate) fn into_string(self) -> String {
        let bytes = match self {
            ShortKey::Inline { len, bytes } => bytes[..usize::from(len)].to_vec(),
            ShortKey::Heap(long) => long.to_vec(),
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

impl StableHash for ShortKey {
    /// Exactly as the same string's, so a key is placed in the same partition either way.
    fn stable_hash(&self, hasher: &mut XxHash64) {
        use std::hash::Hasher as _;
        hasher.write(self.as_bytes());
        hasher.write(&(self.as_bytes().len() as u64).to_le_bytes());
    }
}

/// On the wire and in snapshots a key is its string.
impl Serialize for ShortKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(self.as_bytes()) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Err(serde::ser::Error::custom("a key that is not UTF-8")),
        }
    }
}

impl<'de> Deserialize<'de> for ShortKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = ShortKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<ShortKey, E> {
                // Borrowed from the batch when the format allows: a short key never allocates.
                Ok(ShortKey::new(text))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
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
            "fourteen-bytes",
            "fifteen-bytes-x",
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
        assert!(matches!(ShortKey::new("fourteen-bytes"), ShortKey::Inline { .. }));
        assert!(matches!(ShortKey::new("fifteen-bytes-x"), ShortKey::Heap(_)));
        assert_eq!(
            std::mem::size_of::<ShortKey>(),
            16,
            "a key and a count make a 24-byte slot"
        );
        for w in words {
            assert_eq!(ShortKey::new(w).into_string(), w);
        }
    }

    proptest! {
        #[test]
        fn a_key_is_placed_encoded_and_decoded_as_its_string(text in ".{0,40}") {
            let key = ShortKey::new(&text);
            prop_assert_eq!(
                crate::dataflow::partitioner::stable_hash(&key),
                crate::dataflow::partitioner::stable_hash(text.as_str())
            );
            let bytes = postcard::to_stdvec(&key).unwrap();
            prop_assert_eq!(&bytes, &postcard::to_stdvec(&text).unwrap());
            prop_assert_eq!(postcard::from_bytes::<ShortKey>(&bytes).unwrap(), key);
        }

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
