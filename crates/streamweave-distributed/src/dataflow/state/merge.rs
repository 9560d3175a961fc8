//! Compaction of the memory backend's segments without a second table: a base (the bytes of
//! [`TrackedMap::entries`](super::tracked::TrackedMap::entries)) and the deltas after it (of
//! `changed_entries`) merged into the bytes of one base, as a compaction apart from the
//! barriers needs (`worker/compaction.rs`).
//!
//! ```text
//! deltas, oldest first --decode--> changes: key -> newest accumulator   (a small table)
//! base --streamed entry by entry--> (key, changes.remove(key) or acc) --encode--> out
//! changes left (keys new since the base) --encode--> out;  out = count, then the entries
//! ```
//!
//! Loading the base into a table and snapshotting it cost a probe and an insert per key (cache
//! misses, at a hundred megabytes of keys) and a second copy of the state; streaming it costs
//! one decode, one lookup in the changes and one encode per key.

use std::hash::Hash;

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::Serialize;

use crate::dataflow::stage::{decode_state, FoldHashMap};
use crate::dataflow::DataflowError;

/// The bytes of a base holding `base` with `deltas` applied in order (a key's accumulator in
/// the newest delta that has it, else in the base).
pub(crate) fn merge_segments<K, A>(base: &[u8], deltas: &[&[u8]]) -> Result<Vec<u8>, DataflowError>
where
    K: Eq + Hash + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    let mut changes: FoldHashMap<K, A> = FoldHashMap::default();
    for delta in deltas {
        let changed: Vec<(K, A)> = decode_state(delta)?;
        changes.extend(changed);
    }
    let delta_bytes: usize = deltas.iter().map(|d| d.len()).sum();
    let mut merged = Merged {
        changes,
        body: Vec::with_capacity(base.len() + delta_bytes),
        count: 0,
    };
    let mut entries = postcard::Deserializer::from_bytes(base);
    serde::Deserializer::deserialize_map(&mut entries, &mut merged)
        .map_err(|e| DataflowError::Encoding(format!("compacting a base: {e}")))?;
    let Merged {
        changes,
        mut body,
        mut count,
    } = merged;
    for entry in changes {
        body = postcard::to_extend(&entry, body).map_err(|e| DataflowError::Encoding(e.to_string()))?;
        count += 1;
    }
    let mut out = postcard::to_stdvec(&count).map_err(|e| DataflowError::Encoding(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// The merge so far: the changes not met in the base yet, the entries written, their count.
struct Merged<K, A> {
    changes: FoldHashMap<K, A>,
    body: Vec<u8>,
    count: usize,
}

impl<'de, K, A> Visitor<'de> for &mut Merged<K, A>
where
    K: Eq + Hash + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a map of keyed state")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut access: M) -> Result<(), M::Error> {
        while let Some((key, acc)) = access.next_entry::<K, A>()? {
            let acc = self.changes.remove(&key).unwrap_or(acc);
            let body = std::mem::take(&mut self.body);
            self.body = postcard::to_extend(&(key, acc), body).map_err(serde::de::Error::custom)?;
            self.count += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::SegmentKind;
    use crate::dataflow::stage::encode_state;
    use crate::dataflow::state::tracked::TrackedMap;

    fn counts(map: &TrackedMap<String, u64>) -> Vec<(String, u64)> {
        let bytes = encode_state(&map.entries()).unwrap();
        let mut all: Vec<(String, u64)> = decode_state::<TrackedMap<String, u64>>(&bytes)
            .unwrap()
            .into_entries()
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_merged_base_holds_the_newest_accumulator_of_every_key() {
        let mut live: TrackedMap<String, u64> = TrackedMap::default();
        let mut segments = Vec::new();
        let steps: [&[(&str, u64)]; 3] = [
            &[("a", 1), ("b", 2)],
            &[("a", 5), ("c", 1)],
            &[("c", 7), ("d", 1)],
        ];
        for (i, step) in steps.iter().enumerate() {
            for (k, n) in *step {
                live.update(k.to_string(), |_| *n);
            }
            let kind = if i == 0 {
                SegmentKind::Base
            } else {
                SegmentKind::Delta
            };
            let bytes = match kind {
                SegmentKind::Base => encode_state(&live.entries()).unwrap(),
                SegmentKind::Delta => encode_state(&live.changed_entries()).unwrap(),
            };
            live.clear_changed();
            segments.push(bytes);
        }
        let deltas: Vec<&[u8]> = segments[1..].iter().map(Vec::as_slice).collect();
        let merged = merge_segments::<String, u64>(&segments[0], &deltas).unwrap();
        let restored: TrackedMap<String, u64> = decode_state(&merged).unwrap();
        let expected = vec![
            ("a".to_string(), 5),
            ("b".to_string(), 2),
            ("c".to_string(), 7),
            ("d".to_string(), 1),
        ];
        assert_eq!(counts(&restored), expected);
        assert_eq!(counts(&live), expected, "what the live table holds");
    }

    #[test]
    fn a_damaged_base_is_an_error_not_a_smaller_state() {
        let mut live: TrackedMap<String, u64> = TrackedMap::default();
        live.update("key".to_string(), |_| 3);
        let base = encode_state(&live.entries()).unwrap();
        let error = merge_segments::<String, u64>(&base[..base.len() - 1], &[]).unwrap_err();
        assert!(error.to_string().contains("compacting"), "{error}");
    }
}
