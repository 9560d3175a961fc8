//! Keyed aggregations: [`Stream::key_by`] groups records by a key, and a [`KeyedStream`] turns
//! into an [`Exchanged`] stream of `(key, result)` pairs by `reduce`, `count` or `fold`.
//!
//! ```text
//! reduce / count: (key, x) --pre-aggregate (router::combine)--> exchange --Keyed merge--> (key, acc)
//! fold:           (key, x) --router::by_key--> exchange --Keyed fold from init--> (key, acc)
//! ```

use std::hash::Hash;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::router;
use super::stage::Update;
use super::state::keyed_factory;
use super::stream::{Exchanged, Stream};
use super::Partitioner;

/// A stream grouped by key, before its aggregation.
pub struct KeyedStream<K, T> {
    pub(super) stream: Stream<T>,
    pub(super) key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    pub(super) partitioner: Arc<dyn Partitioner<K>>,
}

impl<K, T> KeyedStream<K, T>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + Sync + 'static,
    T: Send + 'static,
{
    /// Places keys with `partitioner` instead of the stable hash.
    pub fn with_partitioner(mut self, partitioner: impl Partitioner<K> + 'static) -> Self {
        self.partitioner = Arc::new(partitioner);
        self
    }

    fn pairs(self) -> (Stream<(K, T)>, Arc<dyn Partitioner<K>>) {
        let key = self.key;
        (self.stream.map(move |x| (key(&x), x)), self.partitioner)
    }

    /// Combines the records of each key with an associative `f`: `(key, result)`.
    /// Pre-aggregated before the exchange.
    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Exchanged<(K, T)>
    where
        T: Serialize + DeserializeOwned + Sync,
    {
        let (pairs, partitioner) = self.pairs();
        pairs.combine(partitioner, Arc::new(f))
    }

    /// Counts the records of each key: `(key, count)`. Pre-aggregated before the exchange.
    pub fn count(self) -> Exchanged<(K, u64)> {
        let key = self.key;
        self.stream
            .map(move |x| (key(&x), 1u64))
            .combine(self.partitioner, Arc::new(|a: u64, b: u64| a + b))
    }

    /// Folds the records of each key into an accumulator starting at `init`: `(key, acc)`.
    /// Records travel to their key's partition unaggregated (a fold need not be associative).
    pub fn fold<A>(self, init: A, f: impl Fn(A, T) -> A + Send + Sync + 'static) -> Exchanged<(K, A)>
    where
        A: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        T: Serialize + DeserializeOwned + Sync,
    {
        let (pairs, partitioner) = self.pairs();
        let send = router::by_key(pairs.run, partitioner);
        let update: Update<A, T> =
            Arc::new(move |acc: Option<A>, t: T| f(acc.unwrap_or_else(|| init.clone()), t));
        let stage = keyed_factory::<K, A, T>(update, None);
        Exchanged {
            send,
            stage,
            validate: pairs.validate,
            source: pairs.source,
        }
    }
}
