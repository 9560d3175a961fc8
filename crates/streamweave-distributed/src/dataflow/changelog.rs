//! A keyed count that emits a changelog: at every checkpoint barrier, the new count of each key
//! that changed since the previous barrier (and, when the input ends, of those changed since
//! the last one), so an unbounded word count publishes updates as its epochs commit.
//!
//! ```text
//! (key, n) --state[key] += n, key marked changed--> ... barrier --> (key, state[key]) per changed key
//! ```
//!
//! The snapshot is the counts alone: the barrier emits the changes into the epoch it closes,
//! so a partition restored from that checkpoint starts with nothing changed.

use std::hash::Hash;

use serde::{de::DeserializeOwned, Serialize};

use super::plan::{unpack, Batch};
use super::stage::{decode_state, encode_state, FoldHashMap, Stage};
use super::DataflowError;
use crate::checkpoint::SegmentKind;

/// Counts per key, emitting the changed ones at each barrier.
pub(super) struct ChangelogCount<K> {
    counts: FoldHashMap<K, u64>,
    /// Keys whose count changed since the last barrier (the value is unused).
    changed: FoldHashMap<K, ()>,
}

impl<K> ChangelogCount<K> {
    pub(super) fn boxed() -> Box<Self> {
        Box::new(ChangelogCount {
            counts: FoldHashMap::default(),
            changed: FoldHashMap::default(),
        })
    }
}

impl<K> ChangelogCount<K>
where
    K: Eq + Hash,
{
    fn emit_changed(&mut self, emit: &mut dyn FnMut((K, u64))) {
        for (key, ()) in self.changed.drain() {
            let n = self.counts.get(&key).copied().unwrap_or_default();
            emit((key, n));
        }
    }
}

impl<K> Stage<(K, u64)> for ChangelogCount<K>
where
    K: Clone + Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, _emit: &mut dyn FnMut((K, u64))) -> Result<(), DataflowError> {
        for (key, n) in unpack::<(K, u64)>(batch)? {
            if !self.changed.contains_key(&key) {
                self.changed.insert(key.clone(), ());
            }
            *self.counts.entry(key).or_default() += n;
        }
        Ok(())
    }

    fn on_barrier(&mut self, emit: &mut dyn FnMut((K, u64))) -> Result<(), DataflowError> {
        self.emit_changed(emit);
        Ok(())
    }

    fn finish(mut self: Box<Self>, emit: &mut dyn FnMut((K, u64))) -> Result<(), DataflowError> {
        self.emit_changed(emit);
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        encode_state(&self.counts)
    }

    /// A delta is the counts of the keys changed in the epoch the barrier closes (the barrier
    /// emits and clears them right after), so it holds exactly what changed since the previous
    /// segment.
    fn snapshot_segment(&mut self, kind: SegmentKind) -> Result<(SegmentKind, Vec<u8>), DataflowError> {
        let bytes = match kind {
            SegmentKind::Base => self.snapshot()?,
            SegmentKind::Delta => {
                let changed: Vec<(&K, u64)> = (self.changed.keys())
                    .map(|k| (k, self.counts.get(k).copied().unwrap_or_default()))
                    .collect();
                encode_state(&changed)?
            }
        };
        Ok((kind, bytes))
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        let changed: Vec<(K, u64)> = decode_state(bytes)?;
        self.counts.extend(changed);
        Ok(())
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.counts = decode_state(bytes)?;
        self.changed.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pairs: &[(&str, u64)]) -> Batch {
        let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        Batch::Local(Box::new(pairs))
    }

    fn sorted(mut v: Vec<(String, u64)>) -> Vec<(String, u64)> {
        v.sort();
        v
    }

    #[test]
    fn each_barrier_emits_the_new_counts_of_changed_keys_only() {
        let mut stage = ChangelogCount::<String>::boxed();
        let mut out = Vec::new();
        stage
            .on_batch(batch(&[("a", 2), ("b", 1)]), &mut |x| out.push(x))
            .unwrap();
        assert!(out.is_empty(), "nothing before the barrier");
        stage.on_barrier(&mut |x| out.push(x)).unwrap();
        assert_eq!(
            sorted(std::mem::take(&mut out)),
            vec![("a".into(), 2), ("b".into(), 1)]
        );
        stage.on_batch(batch(&[("a", 3)]), &mut |x| out.push(x)).unwrap();
        stage.on_barrier(&mut |x| out.push(x)).unwrap();
        assert_eq!(std::mem::take(&mut out), vec![("a".to_string(), 5)]);
        stage.on_barrier(&mut |x| out.push(x)).unwrap();
        assert!(out.is_empty(), "an epoch without changes emits nothing");

        // A restored partition has the counts and nothing pending.
        let snapshot = stage.snapshot().unwrap();
        let mut restored = ChangelogCount::<String>::boxed();
        restored
            .on_batch(batch(&[("z", 1)]), &mut |x| out.push(x))
            .unwrap();
        restored.restore(&snapshot).unwrap();
        restored
            .on_batch(batch(&[("b", 1)]), &mut |x| out.push(x))
            .unwrap();
        restored.finish(&mut |x| out.push(x)).unwrap();
        assert_eq!(out, vec![("b".to_string(), 2)]);
    }

    #[test]
    fn a_changelog_delta_holds_the_keys_changed_in_the_epoch_and_restores_with_its_base() {
        let mut stage = ChangelogCount::<String>::boxed();
        let ignore = &mut |_: (String, u64)| {};
        stage.on_batch(batch(&[("a", 2), ("b", 1)]), ignore).unwrap();
        let (_, base) = stage.snapshot_segment(SegmentKind::Base).unwrap();
        stage.on_barrier(ignore).unwrap();
        stage.on_batch(batch(&[("a", 3), ("c", 1)]), ignore).unwrap();
        let (kind, delta) = stage.snapshot_segment(SegmentKind::Delta).unwrap();
        assert_eq!(kind, SegmentKind::Delta);
        let mut changed: Vec<(String, u64)> = decode_state(&delta).unwrap();
        changed.sort();
        assert_eq!(changed, vec![("a".to_string(), 5), ("c".to_string(), 1)]);
        stage.on_barrier(ignore).unwrap();

        let mut restored = ChangelogCount::<String>::boxed();
        restored.restore(&base).unwrap();
        restored.apply_delta(&delta).unwrap();
        restored.on_batch(batch(&[("b", 1)]), ignore).unwrap();
        let mut out = Vec::new();
        restored.finish(&mut |x| out.push(x)).unwrap();
        assert_eq!(out, vec![("b".to_string(), 2)], "b counted from the base");
        assert_eq!(
            restored_counts(&base, &delta),
            vec![("a".into(), 5), ("b".into(), 1), ("c".into(), 1)]
        );
    }

    fn restored_counts(base: &[u8], delta: &[u8]) -> Vec<(String, u64)> {
        let mut stage = ChangelogCount::<String>::boxed();
        stage.restore(base).unwrap();
        stage.apply_delta(delta).unwrap();
        sorted(stage.counts.into_iter().collect())
    }
}
