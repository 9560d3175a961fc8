//! The sending half of a pipeline: what a source task does with the records its fused
//! operators emit. A [`SendFn`] runs the source partition and routes every record to the
//! partition that owns it, through a [`Router`] that buffers per destination and sends full
//! batches; keyed aggregations pre-aggregate first (up to [`COMBINE_LIMIT`] keys, fewer when
//! they do not combine), so a key crosses the exchange once per flush, not once per record.
//!
//! ```text
//! RunFn emits x --partitioner(x)--> Router buffer[q] --BATCH_RECORDS--> ExchangeOut::send(q, batch)
//! RunFn emits (k, v) --partial[k] merged--> full (CombineBound), a barrier or the end: route_all
//! ```
//!
//! Everything buffered goes out before a checkpoint barrier (`flushes_on`), so the barrier
//! follows every record read before it. What a table holds at a barrier is work the receivers
//! must do before they can align it, so a table that does not combine (most keys seen once
//! since its last flush) is flushed early ([`CombineBound`]): otherwise a high-cardinality
//! stream would pile up a whole checkpoint interval of keys in front of every barrier.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::key_counts::KeyCounts;
use super::plan::{pack, Batch, ExchangeOut, SourceControl, BATCH_RECORDS};
use super::short_key::ShortKey;
use super::stage::FoldHashMap;
use super::stream::RunFn;
use super::{
    DataflowError, Flow, HashPartitioner, Partitioner, SourceContext, SourceEnd, SourceOffset, StableHash,
};

/// Runs a source partition from an offset and sends what it reads into the exchange.
#[rustfmt::skip]
pub(super) type SendFn = dyn Fn(&SourceContext, SourceOffset, &SourceControl, &mut dyn ExchangeOut)
        -> Result<SourceEnd, DataflowError>
    + Send
    + Sync;

/// Entries a pre-aggregation map may hold before it is flushed into the exchange.
const COMBINE_LIMIT: usize = 200_000;

/// Entries from which a pre-aggregation map that does not combine is flushed.
const EARLY_FLUSH_KEYS: usize = 8_192;

/// When a pre-aggregation table goes out: at [`COMBINE_LIMIT`] keys, or from
/// [`EARLY_FLUSH_KEYS`] on when fewer than half of the additions since the last flush found
/// their key there. A table that combines well (word count's hot words) grows until the
/// barrier and saves the exchange most of its records; one that does not would save nothing by
/// waiting, and everything it holds at a barrier delays the barrier's alignment downstream (a
/// stream of mostly new keys at 50 k keys a second per source held about 70 ms of the
/// receivers' work in front of every barrier).
///
/// ```text
/// add: adds += 1 --> full when len >= COMBINE_LIMIT || (len >= EARLY_FLUSH_KEYS && adds < 2 len)
/// ```
#[derive(Debug, Default)]
pub(super) struct CombineBound {
    /// Additions since the last flush (hits and new keys).
    adds: usize,
}

impl CombineBound {
    /// One addition to a table that now holds `len` keys: whether to flush it.
    pub(super) fn added(&mut self, len: usize) -> bool {
        self.adds += 1;
        len >= COMBINE_LIMIT || (len >= EARLY_FLUSH_KEYS && self.adds < 2 * len)
    }

    /// The table was flushed (for whatever reason): counting starts again.
    pub(super) fn flushed(&mut self) {
        self.adds = 0;
    }
}

/// Sends each record to the partition `partitioner` picks (a repartition); a broadcast
/// partitioner sends a copy to every partition.
pub(super) fn exchange<T>(run: Arc<RunFn<T>>, partitioner: Arc<dyn Partitioner<T>>) -> Arc<SendFn>
where
    T: Serialize + DeserializeOwned + Clone + Send + 'static,
{
    Arc::new(move |ctx, offset, control, out| {
        let broadcast = partitioner.is_broadcast();
        let mut router = Router::new(out);
        let end = run(ctx, offset, control, &mut |x: T| {
            let n = router.out.num_partitions();
            if broadcast {
                for q in 1..n {
                    if router.push(q, x.clone()) == Flow::Stop {
                        return Flow::Stop;
                    }
                }
                router.push(0, x)
            } else {
                let q = partitioner.partition(&x, n);
                router.push(q, x)
            }
        });
        router.finish(end)
    })
}

/// Sends each `(key, record)` pair, unaggregated, to the partition of its key.
pub(super) fn by_key<K, T>(run: Arc<RunFn<(K, T)>>, partitioner: Arc<dyn Partitioner<K>>) -> Arc<SendFn>
where
    K: Serialize + Send + Sync + 'static,
    T: Serialize + Send + 'static,
{
    Arc::new(move |ctx, offset, control, out| {
        let mut router = Router::new(out);
        let end = run(ctx, offset, control, &mut |pair: (K, T)| {
            let q = partitioner.partition(&pair.0, router.out.num_partitions());
            router.push(q, pair)
        });
        router.finish(end)
    })
}

/// Keeps each record in its own partition: never encoded, no exchange.
pub(super) fn local<T: Send + 'static>(run: Arc<RunFn<T>>) -> Arc<SendFn> {
    Arc::new(move |ctx, offset, control, out| {
        let own = ctx.partition;
        let mut router = Router::local(out);
        let end = run(ctx, offset, control, &mut |x: T| router.push(own, x));
        router.finish(end)
    })
}

/// Counts the keys `f` hands over per record into a partial table, routed by the stable hash
/// when it is full, at a barrier and at the end.
pub(super) fn count_keys<T, K, Q>(
    run: Arc<RunFn<T>>,
    f: impl Fn(&T, &mut dyn FnMut(&Q)) + Send + Sync + 'static,
) -> Arc<SendFn>
where
    T: Send + 'static,
    K: Borrow<Q> + Eq + Hash + StableHash + Serialize + DeserializeOwned + Send + Sync + 'static,
    Q: ?Sized + Hash + Eq + ToOwned<Owned = K> + 'static,
{
    Arc::new(move |ctx, offset, control, out| {
        let mut partial: FoldHashMap<K, u64> = FoldHashMap::default();
        let mut bound = CombineBound::default();
        let mut full = false;
        let mut router: Router<'_, (K, u64)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |x: T| {
            f(&x, &mut |key: &Q| {
                match partial.get_mut(key) {
                    Some(n) => *n += 1,
                    None => {
                        partial.insert(key.to_owned(), 1);
                    }
                }
                full |= bound.added(partial.len());
            });
            if std::mem::take(&mut full) {
                bound.flushed();
                return router.route_all(partial.drain(), &HashPartitioner);
            }
            Flow::Continue
        });
        if router.flushes_on(&end) {
            router.route_all(partial.drain(), &HashPartitioner);
        }
        router.finish(end)
    })
}

/// [`count_keys`] for string keys: counted in a [`KeyCounts`] (the keys' bytes in one buffer),
/// routed as [`ShortKey`]s.
pub(super) fn count_str_keys<T: Send + 'static>(
    run: Arc<RunFn<T>>,
    f: impl Fn(&T, &mut dyn FnMut(&str)) + Send + Sync + 'static,
) -> Arc<SendFn> {
    Arc::new(move |ctx, offset, control, out| {
        let mut partial = KeyCounts::default();
        let mut bound = CombineBound::default();
        let mut full = false;
        let mut router: Router<'_, (ShortKey, u64)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |x: T| {
            f(&x, &mut |key: &str| {
                partial.add(key);
                full |= bound.added(partial.len());
            });
            if std::mem::take(&mut full) || partial.is_full() {
                bound.flushed();
                return router.route_all(partial.drain(), &HashPartitioner);
            }
            Flow::Continue
        });
        if router.flushes_on(&end) {
            router.route_all(partial.drain(), &HashPartitioner);
        }
        router.finish(end)
    })
}

/// Pre-aggregates `(key, value)` pairs with an associative `merge` and routes the partial
/// results by `partitioner`.
pub(super) fn combine<K, V>(
    run: Arc<RunFn<(K, V)>>,
    partitioner: Arc<dyn Partitioner<K>>,
    merge: Arc<dyn Fn(V, V) -> V + Send + Sync>,
) -> Arc<SendFn>
where
    K: Eq + Hash + Serialize + Send + Sync + 'static,
    V: Serialize + Send + Sync + 'static,
{
    Arc::new(move |ctx, offset, control, out| {
        let mut partial: FoldHashMap<K, Option<V>> = FoldHashMap::default();
        let mut bound = CombineBound::default();
        let mut router: Router<'_, (K, V)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |(k, v): (K, V)| {
            let slot = partial.entry(k).or_insert(None);
            *slot = Some(match slot.take() {
                Some(old) => merge(old, v),
                None => v,
            });
            if bound.added(partial.len()) {
                bound.flushed();
                return router.route_all(partial.drain().filter_map(|(k, v)| Some((k, v?))), &*partitioner);
            }
            Flow::Continue
        });
        if router.flushes_on(&end) {
            router.route_all(partial.drain().filter_map(|(k, v)| Some((k, v?))), &*partitioner);
        }
        router.finish(end)
    })
}

type PackFn<X> = fn(Vec<X>, bool) -> Result<Vec<Batch>, DataflowError>;

/// Buffers records per destination partition and sends full batches.
struct Router<'a, X> {
    out: &'a mut dyn ExchangeOut,
    buffers: Vec<Vec<X>>,
    pack: PackFn<X>,
    failure: Option<DataflowError>,
}

impl<'a, X: Serialize + Send + 'static> Router<'a, X> {
    fn new(out: &'a mut dyn ExchangeOut) -> Self {
        Router::with_packing(out, pack::<X>)
    }
}

impl<'a, X: Send + 'static> Router<'a, X> {
    /// For records that never leave their partition's worker: never encoded.
    fn local(out: &'a mut dyn ExchangeOut) -> Self {
        Router::with_packing(out, |records, _| Ok(vec![Batch::Local(Box::new(records))]))
    }

    fn with_packing(out: &'a mut dyn ExchangeOut, pack: PackFn<X>) -> Self {
        let buffers = (0..out.num_partitions()).map(|_| Vec::new()).collect();
        Router {
            out,
            buffers,
            pack,
            failure: None,
        }
    }

    fn push(&mut self, q: usize, x: X) -> Flow {
        self.buffers[q].push(x);
        if self.buffers[q].len() >= BATCH_RECORDS {
            return self.flush(q);
        }
        Flow::Continue
    }

    fn flush(&mut self, q: usize) -> Flow {
        if self.failure.is_some() || self.out.cancelled() {
            return Flow::Stop;
        }
        let records = std::mem::take(&mut self.buffers[q]);
        if records.is_empty() {
            return Flow::Continue;
        }
        let out = &mut *self.out;
        let result = (self.pack)(records, out.is_local(q))
            .and_then(|batches| batches.into_iter().try_for_each(|batch| out.send(q, batch)));
        match result {
            Ok(()) => Flow::Continue,
            Err(e) => {
                self.failure = Some(e);
                Flow::Stop
            }
        }
    }

    /// Routes `(key, value)` pairs by the partitioner of their key.
    fn route_all<K, V>(
        &mut self,
        items: impl Iterator<Item = (K, V)>,
        partitioner: &dyn Partitioner<K>,
    ) -> Flow
    where
        X: From<(K, V)>,
    {
        let n = self.out.num_partitions();
        for (k, v) in items {
            let q = partitioner.partition(&k, n);
            if self.push(q, X::from((k, v))) == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Whether everything buffered must go out now: at the end of the input, and at a
    /// checkpoint barrier (the source stopped without the attempt being cancelled), so that the
    /// barrier follows every record read before it.
    fn flushes_on(&self, end: &Result<SourceEnd, DataflowError>) -> bool {
        match end {
            Ok(SourceEnd::Exhausted(_)) => true,
            Ok(SourceEnd::Stopped(_)) => self.failure.is_none() && !self.out.cancelled(),
            Err(_) => false,
        }
    }

    fn finish(mut self, end: Result<SourceEnd, DataflowError>) -> Result<SourceEnd, DataflowError> {
        if self.flushes_on(&end) {
            for q in 0..self.buffers.len() {
                if self.flush(q) == Flow::Stop {
                    break;
                }
            }
        }
        let end = end?;
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if self.out.cancelled() {
            return Err(DataflowError::Cancelled);
        }
        Ok(end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `adds` additions of which every `repeat`-th brings a new key; the table's size
    /// when the bound first says to flush, if it does.
    fn flushes_at(repeat: usize, adds: usize) -> Option<usize> {
        let mut bound = CombineBound::default();
        let mut len = 0;
        for i in 0..adds {
            if i % repeat == 0 {
                len += 1;
            }
            if bound.added(len) {
                return Some(len);
            }
        }
        None
    }

    #[test]
    fn a_table_of_new_keys_goes_out_early_and_one_that_combines_grows_to_the_limit() {
        assert_eq!(flushes_at(1, 1_000_000), Some(EARLY_FLUSH_KEYS));
        // Each key added three times: it combines, so it waits for the limit.
        assert_eq!(flushes_at(3, 10 * COMBINE_LIMIT), Some(COMBINE_LIMIT));
        // A few hot keys never fill it.
        assert_eq!(flushes_at(100_000, 1_000_000), None);
    }

    #[test]
    fn counting_starts_again_after_a_flush() {
        let mut bound = CombineBound::default();
        for _ in 0..4 * EARLY_FLUSH_KEYS {
            assert!(!bound.added(10));
        }
        // Many hits so far: a table that now fills with new keys is not flushed early...
        assert!(!bound.added(EARLY_FLUSH_KEYS));
        bound.flushed();
        // ...but once flushed, a table of only new keys is.
        let mut full = false;
        for len in 1..=EARLY_FLUSH_KEYS {
            full = bound.added(len);
        }
        assert!(full);
    }
}
