//! [`DiskKeyed`]: the keyed stage of `reduce`, `count` and `fold` with its state in a
//! [`DiskStore`] instead of a hash map, so a partition's state may exceed memory.
//!
//! ```text
//! (key, x) --in the cache--> acc = update(acc, x)                   (in memory)
//!          --not cached---> acc = update(store.get(key), x)
//! cache's dirty half full (or barrier, end) --flush: one write batch--> store; the flushed
//!          entries become the clean half, the previous clean half is dropped
//! barrier: base  = every stored entry            (streamed out of the store)
//!          delta = the stored entries of the keys flushed since the last segment
//!                  (`changes.rs`: in memory, spilled to the store, or a base instead)
//! restore: base and deltas decoded entry by entry into the store, in batches
//! ```
//!
//! The cache holds the entries changed since the last flush and those of the flush before, so
//! memory is bounded by twice its capacity and the store's caches and write buffers, not by the
//! state, while a key that keeps changing (a frequent word) is never looked up in the store.
//! Segments have the memory backend's bytes exactly (see `stage.rs`), so either backend
//! restores the other's.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::{DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;

use super::changes::Changes;
use super::store::{DiskStore, Tables};
use crate::checkpoint::SegmentKind;
use crate::dataflow::plan::{unpack, Batch};
use crate::dataflow::stage::{decode_state, encode_state, Encoded, FoldHashMap, PartSink, Stage, Update};
use crate::dataflow::DataflowError;

/// Entries changed since the last flush kept in memory per partition, by default.
pub const CACHE_ENTRIES: usize = 1 << 16;

/// Entries written to the store per transaction on restore.
const LOAD_BATCH: usize = 1 << 16;

/// Changed keys kept in memory per partition between segments (see [`Changes`]).
pub(crate) const CHANGED_KEYS: usize = 1 << 18;

/// See the module documentation.
pub(crate) struct DiskKeyed<K, A, X> {
    store: Arc<DiskStore>,
    tables: Tables,
    update: Update<A, X>,
    /// How two accumulators merge, for stages whose accumulators do (counts, reductions): a
    /// restored chain's overlay runs combine with the state with it (`apply_overlays`).
    combine: Option<Update<A, A>>,
    /// Accumulators changed since the last flush (all of them dirty).
    cache: FoldHashMap<K, A>,
    /// Accumulators written by the last flush and not changed since (as stored).
    clean: FoldHashMap<K, A>,
    capacity: usize,
    /// The keys flushed since the last segment.
    changes: Changes,
    /// About how many keys the state holds (new keys seen, or restored from a base).
    keys: u64,
    /// A changelog (see `changelog.rs`): each barrier emits the keys changed in its epoch, which
    /// are also the epoch's delta; the end emits those changed since the last barrier.
    changelog: bool,
}

impl<K, A, X> DiskKeyed<K, A, X>
where
    K: Eq + Hash + Serialize + DeserializeOwned,
    A: Serialize + DeserializeOwned,
{
    /// Partition `q`'s stage, with new empty tables in `store` and a cache of `capacity` entries;
    /// `combine` merges two accumulators where they merge.
    pub(crate) fn open(
        store: &Arc<DiskStore>,
        q: usize,
        update: &Update<A, X>,
        combine: Option<&Update<A, A>>,
        capacity: usize,
    ) -> Result<Self, DataflowError> {
        Ok(DiskKeyed {
            tables: store.open_tables(q)?,
            store: Arc::clone(store),
            update: Arc::clone(update),
            combine: combine.map(Arc::clone),
            cache: FoldHashMap::default(),
            clean: FoldHashMap::default(),
            capacity: capacity.max(1),
            changes: Changes::new(CHANGED_KEYS, false),
            keys: 0,
            changelog: false,
        })
    }

    /// The stage as a changelog (see the field).
    pub(crate) fn changelog(mut self) -> Self {
        self.changelog = true;
        self.changes = Changes::new(CHANGED_KEYS, true);
        self
    }

    /// Emits the keys changed since the last barrier with their values, then forgets them.
    fn emit_changed(&mut self, emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        self.flush()?;
        self.changes.for_each(&self.store, &self.tables, |k, v| {
            emit((decode_state(k)?, decode_state(v)?));
            Ok(())
        })?;
        self.changes.clear(&self.store, &self.tables)
    }

    /// Before a segment: the store gets every entry, and the kind to take is `kind` unless the
    /// changed keys were forgotten (then a base).
    fn begin_segment(&mut self, kind: SegmentKind) -> Result<SegmentKind, DataflowError> {
        self.flush()?;
        Ok(match self.changes.must_base() {
            true => SegmentKind::Base,
            false => kind,
        })
    }

    /// After a segment: its changed keys are forgotten, except a changelog's, whose barrier
    /// (right after) emits them first.
    fn end_segment(&mut self) -> Result<(), DataflowError> {
        match self.changelog {
            true => Ok(()),
            false => self.changes.clear(&self.store, &self.tables),
        }
    }

    /// Writes the dirty entries to the store (sorted) and keeps them as the clean ones.
    fn flush(&mut self) -> Result<(), DataflowError> {
        if self.cache.is_empty() {
            return Ok(());
        }
        let mut entries = Vec::with_capacity(self.cache.len());
        for (k, a) in &self.cache {
            entries.push((encode_state(k)?, encode_state(a)?));
        }
        self.clean = std::mem::take(&mut self.cache);
        entries.sort_unstable_by(|x, y| x.0.cmp(&y.0));
        (self.store).put_all(
            &self.tables,
            entries.iter().map(|(k, v)| (k.as_slice(), v.as_slice())),
        )?;
        let keys = entries.iter().map(|(k, _)| k.as_slice());
        self.changes.note(&self.store, &self.tables, keys, self.keys)
    }

    /// Loads encoded entries (a base's map or a delta's sequence) into the store in batches.
    fn load(&mut self, bytes: &[u8], base: bool) -> Result<(), DataflowError> {
        let (mut batch, mut loaded) = (Vec::new(), 0);
        let mut failed = None;
        let (store, tables) = (&self.store, &self.tables);
        let mut put = |k: K, a: A| -> Result<(), String> {
            let entry = (encode_state(&k), encode_state(&a));
            let (Ok(k), Ok(v)) = entry else {
                return Err("cannot encode a restored entry".to_string());
            };
            batch.push((k, v));
            loaded += 1;
            if batch.len() >= LOAD_BATCH {
                write_sorted(store, tables, &mut batch).map_err(|e| {
                    let message = e.to_string();
                    failed = Some(e);
                    message
                })?;
            }
            Ok(())
        };
        let mut de = postcard::Deserializer::from_bytes(bytes);
        let seed = Entries::<K, A, _> {
            put: &mut put,
            types: PhantomData,
        };
        let decoded = match base {
            true => (&mut de).deserialize_map(seed),
            false => (&mut de).deserialize_seq(seed),
        };
        if let Some(e) = failed {
            return Err(e);
        }
        decoded.map_err(|e| DataflowError::Encoding(format!("restore: {e}")))?;
        write_sorted(&self.store, &self.tables, &mut batch)?;
        // A delta's entries may be keys the state has: not counted.
        if base {
            self.keys = loaded;
        }
        Ok(())
    }
}

fn write_sorted(
    store: &DiskStore,
    tables: &Tables,
    batch: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), DataflowError> {
    batch.sort_unstable_by(|x, y| x.0.cmp(&y.0));
    store.put_all(tables, batch.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))?;
    batch.clear();
    Ok(())
}

/// A visitor of stored entries that appends them, encoded, to `body`.
fn append(body: &mut Vec<u8>) -> impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError> + '_ {
    |k, v| {
        body.extend_from_slice(k);
        body.extend_from_slice(v);
        Ok(())
    }
}

/// The longest postcard collection length (a varint of a u64).
const PREFIX_ROOM: usize = 10;

/// A postcard map or sequence of the encoded entries that `fill` appends, returning how many:
/// they go after room for their count, known only at the end, so the segment is built in place
/// rather than copied behind its prefix (a base is the whole state).
fn counted(fill: impl FnOnce(&mut Vec<u8>) -> Result<u64, DataflowError>) -> Result<Vec<u8>, DataflowError> {
    let mut bytes = vec![0; PREFIX_ROOM];
    let n = fill(&mut bytes)?;
    let start = put_count(&mut bytes, n)?;
    bytes.drain(..start);
    Ok(bytes)
}

/// Hands `body`, the room for a count then `n` encoded entries, to `parts` as one part, and
/// empties it for the next.
fn hand_part(parts: &mut dyn PartSink, body: &mut Vec<u8>, n: u64) -> Result<(), DataflowError> {
    let start = put_count(body, n)?;
    parts.put(&[&body[start..]])?;
    body.truncate(PREFIX_ROOM);
    Ok(())
}

/// Writes count `n` at the end of the room before `bytes`' entries; returns where the encoded
/// collection starts.
fn put_count(bytes: &mut [u8], n: u64) -> Result<usize, DataflowError> {
    let prefix = encode_state(&n)?;
    let start = PREFIX_ROOM - prefix.len();
    bytes[start..PREFIX_ROOM].copy_from_slice(&prefix);
    Ok(start)
}

impl<K, A, X> Stage<(K, A)> for DiskKeyed<K, A, X>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    X: Serialize + DeserializeOwned + Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, _emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        let records = unpack::<(K, X)>(batch)?;
        {
            // The cache is flushed only after the batch, so a miss finds every entry not in
            // the cache in the store (and a clean entry is the stored one).
            let reader = self.store.reader(&self.tables);
            for (k, x) in records {
                let acc = match self.cache.remove(&k).or_else(|| self.clean.remove(&k)) {
                    Some(acc) => Some(acc),
                    None => {
                        let stored = reader.get(&encode_state(&k)?)?;
                        if stored.is_none() {
                            self.keys += 1;
                        }
                        stored.map(|bytes| decode_state::<A>(&bytes)).transpose()?
                    }
                };
                let acc = (self.update)(acc, x);
                self.cache.insert(k, acc);
            }
        }
        if self.cache.len() >= self.capacity {
            self.flush()?;
        }
        Ok(())
    }

    /// The stored entries overlaid with the cached ones, as the memory backend's map.
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        let mut cached = FoldHashMap::default();
        for (k, a) in &self.cache {
            cached.insert(encode_state(k)?, encode_state(a)?);
        }
        counted(|body| {
            let mut n = 0;
            self.store.for_each(&self.tables, |k, v| {
                if !cached.contains_key(k) {
                    n += 1;
                    body.extend_from_slice(k);
                    body.extend_from_slice(v);
                }
                Ok(())
            })?;
            for (k, v) in &cached {
                n += 1;
                body.extend_from_slice(k);
                body.extend_from_slice(v);
            }
            Ok(n)
        })
    }

    fn snapshot_segment(&mut self, kind: SegmentKind) -> Result<(SegmentKind, Vec<u8>), DataflowError> {
        let kind = self.begin_segment(kind)?;
        let bytes = counted(|body| match kind {
            SegmentKind::Base => self.store.for_each(&self.tables, append(body)),
            SegmentKind::Delta => self.changes.for_each(&self.store, &self.tables, append(body)),
        })?;
        self.end_segment()?;
        Ok((kind, bytes))
    }

    /// A base goes to `parts` as it is read from the store, a part each time the entries
    /// encoded reach the store's [`DiskStore::part_bytes`]: the state is never whole in memory. A base that
    /// stays under that size, and a delta, are encoded whole.
    fn snapshot_segment_in_parts(
        &mut self,
        kind: SegmentKind,
        parts: &mut dyn PartSink,
    ) -> Result<(SegmentKind, Encoded), DataflowError> {
        let kind = self.begin_segment(kind)?;
        if kind == SegmentKind::Delta {
            let bytes = counted(|body| self.changes.for_each(&self.store, &self.tables, append(body)))?;
            self.end_segment()?;
            return Ok((kind, Encoded::Whole(bytes)));
        }
        let limit = self.store.part_bytes();
        let mut body = vec![0; PREFIX_ROOM];
        let (mut n, mut handed) = (0u64, false);
        self.store.for_each(&self.tables, |k, v| {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
            n += 1;
            if body.len() - PREFIX_ROOM >= limit {
                hand_part(parts, &mut body, std::mem::take(&mut n))?;
                handed = true;
            }
            Ok(())
        })?;
        let encoded = match (handed, n) {
            (false, _) => {
                let start = put_count(&mut body, n)?;
                body.drain(..start);
                Encoded::Whole(body)
            }
            (true, 0) => Encoded::Parts,
            (true, n) => {
                hand_part(parts, &mut body, n)?;
                Encoded::Parts
            }
        };
        self.end_segment()?;
        Ok((kind, encoded))
    }

    fn apply_delta(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.flush()?;
        // The delta may overwrite cached keys: the store has them.
        self.clean.clear();
        self.load(bytes, false)?;
        // A base's later parts come as deltas, of new keys: the count follows the store's
        // estimate (which counts a key again per version not yet compacted: an upper bound, so
        // a delta is taken rather than a base when in doubt).
        self.keys = self.keys.max(self.store.approximate_len(&self.tables));
        Ok(())
    }

    /// An overlay run of a restored chain (the state a recovery on the memory backend applied
    /// records to while its state loaded): collapsed among itself, then combined key by key with
    /// the stored state, as restored (no key counts as changed: the chain holds them).
    fn apply_overlays(&mut self, run: &[&[u8]]) -> Result<(), DataflowError> {
        let Some(combine) = self.combine.clone() else {
            return Err(crate::dataflow::stage::no_overlays());
        };
        self.flush()?;
        self.clean.clear();
        let partial = super::merge::collapse_run::<K, A>(run)?;
        let mut batch = Vec::with_capacity(partial.len());
        {
            let reader = self.store.reader(&self.tables);
            for (k, acc) in partial {
                let key = encode_state(&k)?;
                let old = reader
                    .get(&key)?
                    .map(|bytes| decode_state::<A>(&bytes))
                    .transpose()?;
                if old.is_none() {
                    self.keys += 1;
                }
                batch.push((key, encode_state(&combine(old, acc))?));
            }
        }
        write_sorted(&self.store, &self.tables, &mut batch)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.cache.clear();
        self.clean.clear();
        self.changes.clear(&self.store, &self.tables)?;
        self.store.clear(&self.tables)?;
        self.load(bytes, true)
    }

    fn on_barrier(&mut self, emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        match self.changelog {
            true => self.emit_changed(emit),
            false => Ok(()),
        }
    }

    fn finish(mut self: Box<Self>, emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        if self.changelog {
            return self.emit_changed(emit);
        }
        self.flush()?;
        self.store.for_each(&self.tables, |k, v| {
            emit((decode_state(k)?, decode_state(v)?));
            Ok(())
        })?;
        Ok(())
    }
}

#[cfg(test)]
impl<K, A, X> DiskKeyed<K, A, X> {
    pub(super) fn tables_for_test(&self) -> Tables {
        self.tables.clone()
    }

    pub(super) fn cached_for_test(&self) -> usize {
        self.cache.len()
    }
}

impl<K, A, X> Drop for DiskKeyed<K, A, X> {
    /// The partition ended or left this worker: its tables go (the checkpoint has its state).
    fn drop(&mut self) {
        let (store, tables) = (Arc::clone(&self.store), self.tables.clone());
        let drop_tables = move || {
            if let Err(e) = store.drop_tables(&tables) {
                tracing::warn!(error = %e, "cannot drop a partition's disk state");
            }
        };
        // Freeing a large table's pages takes a while: not on an async runtime's thread.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(drop_tables)),
            Err(_) => drop_tables(),
        }
    }
}

/// Decodes a map or a sequence of `(K, A)` entries, handing each to `put` as it is read.
struct Entries<'p, K, A, P> {
    put: &'p mut P,
    types: PhantomData<fn() -> (K, A)>,
}

impl<'de, K, A, P> Visitor<'de> for Entries<'_, K, A, P>
where
    K: DeserializeOwned,
    A: DeserializeOwned,
    P: FnMut(K, A) -> Result<(), String>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("keyed state entries")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some((k, a)) = map.next_entry::<K, A>()? {
            (self.put)(k, a).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        while let Some((k, a)) = seq.next_element::<(K, A)>()? {
            (self.put)(k, a).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}
