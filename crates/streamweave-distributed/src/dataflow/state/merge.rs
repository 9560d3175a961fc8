//! Compaction of the memory backend's segments without a second table: a base (the bytes of
//! [`TrackedMap::entries`](super::tracked::TrackedMap::entries)) and the deltas after it (of
//! `changed_entries`) merged into the bytes of one base, as a compaction apart from the
//! barriers needs (`worker/compaction.rs`).
//!
//! ```text
//! deltas, oldest first --decode--> changes: key -> newest accumulator   (a small table)
//!   an overlay run (collapsed) --> changes: key -> combined with the change before, or
//!                                  "combine with the base's"
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

use crate::checkpoint::Layer;
use crate::dataflow::stage::{decode_state, FoldHashMap};
use crate::dataflow::DataflowError;

/// The bytes of a base holding `base` with `layers` applied in order: a key's accumulator in
/// the newest delta that has it, else in the base, and an overlay run's (the run collapsed, its
/// newest accumulator of each key) combined with it by `combine` (the stage's; overlays come
/// only from stages that have one).
pub(crate) fn merge_segments<K, A>(
    base: &[u8],
    layers: &[Layer<'_>],
    combine: Option<&dyn Fn(Option<A>, A) -> A>,
) -> Result<Vec<u8>, DataflowError>
where
    K: Eq + Hash + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    let mut changes: FoldHashMap<K, Change<A>> = FoldHashMap::default();
    let mut layer_bytes = 0;
    for layer in layers {
        match layer {
            Layer::Delta(delta) => {
                layer_bytes += delta.len();
                let changed: Vec<(K, A)> = decode_state(delta)?;
                changes.extend(changed.into_iter().map(|(k, a)| (k, Change::Set(a))));
            }
            Layer::Overlays(run) => {
                layer_bytes += run.iter().map(|o| o.len()).sum::<usize>();
                let combine = combine.ok_or_else(no_combine)?;
                for (k, a) in collapse_run::<K, A>(run)? {
                    let next = match changes.remove(&k) {
                        Some(Change::Set(u)) => Change::Set(combine(Some(u), a)),
                        Some(Change::Add(u)) => Change::Add(combine(Some(u), a)),
                        None => Change::Add(a),
                    };
                    changes.insert(k, next);
                }
            }
            Layer::Base(_) => {
                return Err(DataflowError::Encoding(
                    "compacting a chain with a base after its first segment".to_string(),
                ))
            }
        }
    }
    let mut merged = Merged {
        changes,
        combine,
        body: Vec::with_capacity(base.len() + layer_bytes),
        count: 0,
    };
    let mut entries = postcard::Deserializer::from_bytes(base);
    serde::Deserializer::deserialize_map(&mut entries, &mut merged)
        .map_err(|e| DataflowError::Encoding(format!("compacting a base: {e}")))?;
    let Merged {
        changes,
        mut body,
        mut count,
        ..
    } = merged;
    for (k, change) in changes {
        let (Change::Set(acc) | Change::Add(acc)) = change;
        body = postcard::to_extend(&(k, acc), body).map_err(|e| DataflowError::Encoding(e.to_string()))?;
        count += 1;
    }
    let mut out = postcard::to_stdvec(&count).map_err(|e| DataflowError::Encoding(e.to_string()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// An overlay run's entries as one table: each key's accumulator in the newest overlay that has
/// it (the partial state as of the run's last barrier).
pub(crate) fn collapse_run<K, A>(run: &[&[u8]]) -> Result<FoldHashMap<K, A>, DataflowError>
where
    K: Eq + Hash + DeserializeOwned,
    A: DeserializeOwned,
{
    let mut partial: FoldHashMap<K, A> = FoldHashMap::default();
    for overlay in run {
        let entries: Vec<(K, A)> = decode_state(overlay)?;
        partial.extend(entries);
    }
    Ok(partial)
}

fn no_combine() -> DataflowError {
    DataflowError::Encoding("an overlay in the chain of a stage whose accumulators do not merge".to_string())
}

/// What the layers after the base make of a key: its accumulator replaced, or the base's (none:
/// nothing) combined with this one.
enum Change<A> {
    Set(A),
    Add(A),
}

/// The merge so far: the changes not met in the base yet, how overlays combine, the entries
/// written, their count.
struct Merged<'c, K, A> {
    changes: FoldHashMap<K, Change<A>>,
    combine: Option<&'c dyn Fn(Option<A>, A) -> A>,
    body: Vec<u8>,
    count: usize,
}

impl<'de, K, A> Visitor<'de> for &mut Merged<'_, K, A>
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
            let acc = match self.changes.remove(&key) {
                None => acc,
                Some(Change::Set(newer)) => newer,
                Some(Change::Add(partial)) => {
                    let combine = self
                        .combine
                        .ok_or_else(|| serde::de::Error::custom(no_combine()))?;
                    combine(Some(acc), partial)
                }
            };
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
            live.segment_taken();
            segments.push(bytes);
        }
        let deltas: Vec<Layer> = segments[1..].iter().map(|d| Layer::Delta(d)).collect();
        let merged = merge_segments::<String, u64>(&segments[0], &deltas, None).unwrap();
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
    fn overlay_runs_combine_with_what_came_before_them_and_deltas_after_replace() {
        let entries = |pairs: &[(&str, u64)]| {
            let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
            encode_state(&pairs).unwrap()
        };
        let base = entries(&[("a", 2), ("b", 1), ("c", 4)]);
        let delta = entries(&[("b", 3)]);
        // A recovery's partial counts: c and d at its first barrier, c again at its second.
        let (first, second) = (entries(&[("c", 1), ("d", 1)]), entries(&[("c", 2)]));
        // Another recovery's, right after (it never merged): a.
        let other = entries(&[("a", 10), ("e", 1)]);
        let after = entries(&[("d", 7)]);
        let layers = [
            Layer::Delta(&delta),
            Layer::Overlays(vec![&first, &second]),
            Layer::Overlays(vec![&other]),
            Layer::Delta(&after),
        ];
        let add = |old: Option<u64>, n: u64| old.unwrap_or(0) + n;
        let merged = merge_segments::<String, u64>(&base, &layers, Some(&add)).unwrap();
        let restored: TrackedMap<String, u64> = decode_state(&merged).unwrap();
        let expected = [("a", 12), ("b", 3), ("c", 6), ("d", 7), ("e", 1)];
        let expected: Vec<(String, u64)> = expected.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        assert_eq!(counts(&restored), expected);
        // Without a way to combine, an overlay is an error, not a replaced count.
        let error = merge_segments::<String, u64>(&base, &layers, None).unwrap_err();
        assert!(error.to_string().contains("overlay"), "{error}");
    }

    #[test]
    fn a_damaged_base_is_an_error_not_a_smaller_state() {
        let mut live: TrackedMap<String, u64> = TrackedMap::default();
        live.update("key".to_string(), |_| 3);
        let base = encode_state(&live.entries()).unwrap();
        let error = merge_segments::<String, u64>(&base[..base.len() - 1], &[], None).unwrap_err();
        assert!(error.to_string().contains("compacting"), "{error}");
    }
}
