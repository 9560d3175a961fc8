//! The sending half of a pipeline: what a source task does with the records its fused
//! operators emit. A [`SendFn`] runs the source partition and routes every record to the
//! partition that owns it, through a [`Router`] that buffers per destination and sends full
//! batches; keyed aggregations pre-aggregate first (up to [`COMBINE_LIMIT`] keys), so a key
//! crosses the exchange once per flush, not once per record.
//!
//! ```text
//! RunFn emits x --partitioner(x)--> Router buffer[q] --BATCH_RECORDS--> ExchangeOut::send(q, batch)
//! RunFn emits (k, v) --partial[k] merged--> at COMBINE_LIMIT, a barrier or the end: route_all
//! ```
//!
//! Everything buffered goes out before a checkpoint barrier (`flushes_on`), so the barrier
//! follows every record read before it.

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
        let mut router: Router<'_, (K, u64)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |x: T| {
            f(&x, &mut |key: &Q| match partial.get_mut(key) {
                Some(n) => *n += 1,
                None => {
                    partial.insert(key.to_owned(), 1);
                }
            });
            if partial.len() >= COMBINE_LIMIT {
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
        let mut router: Router<'_, (ShortKey, u64)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |x: T| {
            f(&x, &mut |key: &str| partial.add(key));
            if partial.is_full(COMBINE_LIMIT) {
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
        let mut router: Router<'_, (K, V)> = Router::new(out);
        let end = run(ctx, offset, control, &mut |(k, v): (K, V)| {
            let slot = partial.entry(k).or_insert(None);
            *slot = Some(match slot.take() {
                Some(old) => merge(old, v),
                None => v,
            });
            if partial.len() >= COMBINE_LIMIT {
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
