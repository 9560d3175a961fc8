//! The typed job builder: a source, fused stateless operators, one exchange (by a partitioner,
//! or by key with an aggregation), more fused operators, a sink.
//!
//! ```
//! use streamweave_distributed::dataflow::{sinks::CollectorSink, sources::CollectionSource, Stream};
//!
//! let lines = CollectionSource::new(vec!["a b".to_string(), "b c".to_string()]);
//! let counts = CollectorSink::new();
//! let job = Stream::from_source(lines)
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .count()
//!     .map(|(word, n)| format!("{word}\t{n}"))
//!     .sink(counts.clone());
//! # let _ = job;
//! ```
//!
//! Stateless operators compose into one closure per task: no channel or thread per operator.
//! Before the exchange they run in the source task (`run`); after it, in the receiver task
//! (`Stage`).

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// In-process hash maps of keyed state: foldhash, fast and of good quality on short keys (which
/// FxHash is not: its high bits collide for keys like `w123`, and probing then compares strings).
/// Placement across processes uses the stable hash of the partitioner, never this one.
type FxHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use serde::{de::DeserializeOwned, Serialize};

use super::plan::{
    pack, unpack, unpack_local, Batch, ErasedPlan, ExchangeOut, Receiver, SourceControl, BATCH_RECORDS,
};
use super::short_key::ShortKey;
use super::{
    DataflowError, Flow, HashPartitioner, Partitioner, Sink, SinkContext, SinkWriter, Source, SourceContext,
    SourceEnd, SourceOffset, StableHash,
};

/// Runs a source partition from an offset through the fused operators, counting source records.
type RunFn<T> = dyn Fn(
        &SourceContext,
        SourceOffset,
        &SourceControl,
        &mut dyn FnMut(T) -> Flow,
    ) -> Result<SourceEnd, DataflowError>
    + Send
    + Sync;
type ValidateFn = Arc<dyn Fn() -> Result<(), DataflowError> + Send + Sync>;

/// [`Source::empty_partitions`] of a job's source.
type EmptyFn = Arc<dyn Fn(usize) -> Result<Option<Vec<bool>>, DataflowError> + Send + Sync>;

/// What the runtime needs to know of a job's source beyond its records.
#[derive(Clone)]
struct SourceInfo {
    bounded: bool,
    empty: EmptyFn,
}
type SendFn = dyn Fn(&SourceContext, SourceOffset, &SourceControl, &mut dyn ExchangeOut) -> Result<SourceEnd, DataflowError>
    + Send
    + Sync;

/// Publish source record counts in chunks, not per record.
const COUNT_CHUNK: u64 = 256;
/// Entries a pre-aggregation map may hold before it is flushed into the exchange.
const COMBINE_LIMIT: usize = 200_000;

/// Records of type `T` before the exchange.
pub struct Stream<T> {
    run: Arc<RunFn<T>>,
    validate: Vec<ValidateFn>,
    source: SourceInfo,
}

impl<T: Send + 'static> Stream<T> {
    /// A stream reading `source`.
    pub fn from_source<S: Source<Item = T>>(source: S) -> Self {
        let source = Arc::new(source);
        let check = Arc::clone(&source);
        let info = SourceInfo {
            bounded: source.is_bounded(),
            empty: {
                let source = Arc::clone(&source);
                Arc::new(move |n| source.empty_partitions(n))
            },
        };
        Stream {
            source: info,
            run: Arc::new(move |ctx, offset, control, emit| {
                let mut pending = 0u64;
                let end = source.read(ctx, offset, &mut |item| {
                    pending += 1;
                    if pending == COUNT_CHUNK {
                        control.records_in.fetch_add(pending, Ordering::Relaxed);
                        pending = 0;
                    }
                    let flow = emit(item);
                    // A checkpoint barrier is waiting: stop after this record (it counts as read,
                    // so the returned offset is exactly where to resume).
                    if control.pause.load(Ordering::Acquire) || control.cancel.load(Ordering::Acquire) {
                        Flow::Stop
                    } else {
                        flow
                    }
                });
                control.records_in.fetch_add(pending, Ordering::Relaxed);
                end
            }),
            validate: vec![Arc::new(move || check.validate())],
        }
    }

    fn then<U: Send + 'static>(
        self,
        op: impl Fn(T, &mut dyn FnMut(U) -> Flow) -> Flow + Send + Sync + 'static,
    ) -> Stream<U> {
        let run = self.run;
        Stream {
            run: Arc::new(move |ctx, offset, control, emit| run(ctx, offset, control, &mut |x| op(x, emit))),
            validate: self.validate,
            source: self.source,
        }
    }

    /// Transforms each record.
    pub fn map<U: Send + 'static>(self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Stream<U> {
        self.then(move |x, emit| emit(f(x)))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Stream<T> {
        self.then(move |x, emit| if f(&x) { emit(x) } else { Flow::Continue })
    }

    /// Replaces each record by zero or more records.
    pub fn flat_map<U, I>(self, f: impl Fn(T) -> I + Send + Sync + 'static) -> Stream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U>,
    {
        self.then(move |x, emit| {
            for y in f(x) {
                if emit(y) == Flow::Stop {
                    return Flow::Stop;
                }
            }
            Flow::Continue
        })
    }

    /// Groups records by a key for a keyed aggregation; keys are placed with the stable
    /// [`HashPartitioner`] unless [`KeyedStream::with_partitioner`] says otherwise.
    pub fn key_by<K>(self, f: impl Fn(&T) -> K + Send + Sync + 'static) -> KeyedStream<K, T>
    where
        K: StableHash + Send + Sync + 'static,
    {
        KeyedStream {
            stream: self,
            key: Arc::new(f),
            partitioner: Arc::new(HashPartitioner),
        }
    }

    /// Sends each record to the partition `partitioner` picks (a repartition).
    pub fn exchange(self, partitioner: impl Partitioner<T> + 'static) -> Exchanged<T>
    where
        T: Serialize + DeserializeOwned + Clone,
    {
        let run = self.run;
        let partitioner: Arc<dyn Partitioner<T>> = Arc::new(partitioner);
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
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
        });
        Exchanged {
            send,
            stage: Arc::new(|| Box::new(PassThrough::<T>::default()) as Box<dyn Stage<T>>),
            validate: self.validate,
            source: self.source,
        }
    }

    /// Counts equal records: `(record, occurrences)`, pre-aggregated before the exchange.
    pub fn count(self) -> Exchanged<(T, u64)>
    where
        T: StableHash + Eq + Hash + Serialize + DeserializeOwned + Send + Sync,
    {
        self.map(|x| (x, 1u64))
            .combine(Arc::new(HashPartitioner), Arc::new(|a: u64, b: u64| a + b))
    }

    /// Counts keys extracted from each record: `f` hands every key of a record to `emit` by
    /// reference, and a key already counted costs a lookup, not an allocation. Pre-aggregated
    /// before the exchange. Word count is
    /// `count_keys::<String, str>(|line, emit| line.split_whitespace().for_each(emit))`.
    pub fn count_keys<K, Q>(
        self,
        f: impl Fn(&T, &mut dyn FnMut(&Q)) + Send + Sync + 'static,
    ) -> Exchanged<(K, u64)>
    where
        K: Borrow<Q> + Eq + Hash + StableHash + Serialize + DeserializeOwned + Send + Sync + 'static,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K> + 'static,
    {
        let run = self.run;
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
            let mut partial: FxHashMap<K, u64> = FxHashMap::default();
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
        });
        counted(send, self.validate, self.source)
    }

    /// [`Stream::count_keys`] for string keys, faster: the pre-aggregation table keeps short
    /// keys inline (see `short_key.rs`), so counting a key already seen touches no other memory.
    /// Word count is `count_str_keys(|line, emit| line.split_whitespace().for_each(emit))`.
    ///
    /// ```
    /// use streamweave_distributed::dataflow::{sinks::CollectorSink, sources::CollectionSource, Stream};
    ///
    /// let lines = vec!["to be or not to be".to_string()];
    /// let counts = CollectorSink::new();
    /// let job = Stream::from_source(CollectionSource::new(lines))
    ///     .count_str_keys(|line: &String, emit| line.split_whitespace().for_each(emit))
    ///     .sink(counts.clone());
    /// # let _ = job;
    /// ```
    pub fn count_str_keys(
        self,
        f: impl Fn(&T, &mut dyn FnMut(&str)) + Send + Sync + 'static,
    ) -> Exchanged<(String, u64)> {
        let run = self.run;
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
            let mut partial: FxHashMap<ShortKey, u64> = FxHashMap::default();
            let mut router: Router<'_, (ShortKey, u64)> = Router::new(out);
            let end = run(ctx, offset, control, &mut |x: T| {
                f(&x, &mut |key: &str| {
                    let key = ShortKey::new(key);
                    match partial.get_mut(&key) {
                        Some(n) => *n += 1,
                        None => {
                            partial.insert(key, 1);
                        }
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
        });
        // The keys stay short keys through the exchange and the receivers' table too (placed,
        // encoded and snapshotted exactly as strings), and become strings on the way out.
        counted::<ShortKey>(send, self.validate, self.source).map(|(key, n)| (key.into_string(), n))
    }

    /// Writes to `sink`; each partition's records stay in their partition (no exchange).
    pub fn sink<S: Sink<Item = T>>(self, sink: S) -> Job {
        let run = self.run;
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
            let own = ctx.partition;
            let mut router = Router::local(out);
            let end = run(ctx, offset, control, &mut |x: T| router.push(own, x));
            router.finish(end)
        });
        Exchanged {
            send,
            stage: Arc::new(|| Box::new(LocalPassThrough::<T>::default()) as Box<dyn Stage<T>>),
            validate: self.validate,
            source: self.source,
        }
        .sink(sink)
    }
}

impl<K: Send + 'static, V: Send + 'static> Stream<(K, V)> {
    /// Pre-aggregates `(key, value)` pairs with an associative `f` before the exchange and
    /// merges the partial results after it.
    fn combine(
        self,
        partitioner: Arc<dyn Partitioner<K>>,
        f: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    ) -> Exchanged<(K, V)>
    where
        K: Eq + Hash + Serialize + DeserializeOwned + Sync,
        V: Serialize + DeserializeOwned + Sync,
    {
        let run = self.run;
        let merge = Arc::clone(&f);
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
            let mut partial: FxHashMap<K, Option<V>> = FxHashMap::default();
            let mut router: Router<'_, (K, V)> = Router::new(out);
            let end = run(ctx, offset, control, &mut |(k, v): (K, V)| {
                let slot = partial.entry(k).or_insert(None);
                *slot = Some(match slot.take() {
                    Some(old) => merge(old, v),
                    None => v,
                });
                if partial.len() >= COMBINE_LIMIT {
                    return router
                        .route_all(partial.drain().filter_map(|(k, v)| Some((k, v?))), &*partitioner);
                }
                Flow::Continue
            });
            if router.flushes_on(&end) {
                router.route_all(partial.drain().filter_map(|(k, v)| Some((k, v?))), &*partitioner);
            }
            router.finish(end)
        });
        let update: Update<V, V> = merging(f);
        let stage = Arc::new(move || Keyed::<K, V, V>::boxed(&update) as Box<dyn Stage<(K, V)>>);
        Exchanged {
            send,
            stage,
            validate: self.validate,
            source: self.source,
        }
    }
}

/// A stream grouped by key, before its aggregation.
pub struct KeyedStream<K, T> {
    stream: Stream<T>,
    key: Arc<dyn Fn(&T) -> K + Send + Sync>,
    partitioner: Arc<dyn Partitioner<K>>,
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
        let run = pairs.run;
        let send: Arc<SendFn> = Arc::new(move |ctx, offset, control, out| {
            let mut router = Router::new(out);
            let end = run(ctx, offset, control, &mut |pair: (K, T)| {
                let q = partitioner.partition(&pair.0, router.out.num_partitions());
                router.push(q, pair)
            });
            router.finish(end)
        });
        let update: Update<A, T> =
            Arc::new(move |acc: Option<A>, t: T| f(acc.unwrap_or_else(|| init.clone()), t));
        let stage = Arc::new(move || Keyed::<K, A, T>::boxed(&update) as Box<dyn Stage<(K, A)>>);
        Exchanged {
            send,
            stage,
            validate: pairs.validate,
            source: pairs.source,
        }
    }
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

/// The receiving half of a pipeline: consumes batches of the exchange type and emits `U`.
pub trait Stage<U>: Send {
    /// Applies a batch, emitting what can be emitted now.
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(U)) -> Result<(), DataflowError>;
    /// Every source has ended: emits what was held back (keyed results).
    fn finish(self: Box<Self>, emit: &mut dyn FnMut(U)) -> Result<(), DataflowError>;

    /// The stage's state, encoded, for a checkpoint; stateless stages have none (empty).
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        Ok(Vec::new())
    }

    /// Replaces the state with one taken by [`Stage::snapshot`] (on recovery).
    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err(DataflowError::Encoding(
                "state given to a stateless stage".to_string(),
            ))
        }
    }
}

fn encode_state<S: Serialize>(state: &S) -> Result<Vec<u8>, DataflowError> {
    postcard::to_stdvec(state).map_err(|e| DataflowError::Encoding(format!("snapshot: {e}")))
}

fn decode_state<S: DeserializeOwned>(bytes: &[u8]) -> Result<S, DataflowError> {
    postcard::from_bytes(bytes).map_err(|e| DataflowError::Encoding(format!("restore: {e}")))
}

/// A fused post-exchange operator: one record in, any number out.
type PostOp<U, V> = Arc<dyn Fn(U, &mut dyn FnMut(V)) + Send + Sync>;

type StageFactory<U> = Arc<dyn Fn() -> Box<dyn Stage<U>> + Send + Sync>;

struct PassThrough<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for PassThrough<T> {
    fn default() -> Self {
        PassThrough(std::marker::PhantomData)
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Stage<T> for PassThrough<T> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        unpack::<T>(batch)?.into_iter().for_each(emit);
        Ok(())
    }

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// Pass-through for records that never leave their partition: no serde bounds needed.
struct LocalPassThrough<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Default for LocalPassThrough<T> {
    fn default() -> Self {
        LocalPassThrough(std::marker::PhantomData)
    }
}

impl<T: Send + 'static> Stage<T> for LocalPassThrough<T> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        unpack_local::<T>(batch)?.into_iter().for_each(emit);
        Ok(())
    }

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(T)) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// How a keyed stage folds one incoming record into a key's accumulator (none yet: `None`).
type Update<A, X> = Arc<dyn Fn(Option<A>, X) -> A + Send + Sync>;

/// Keyed state after the exchange: an accumulator per key, updated by every `(key, record)`
/// that arrives, emitted when the input ends, snapshotted at checkpoints. Merging pre-aggregated
/// partials (`reduce`, `count`) and folding raw records (`fold`) differ only in `update`.
struct Keyed<K, A, X> {
    state: FxHashMap<K, A>,
    update: Update<A, X>,
}

impl<K, A, X> Keyed<K, A, X> {
    fn boxed(update: &Update<A, X>) -> Box<Self> {
        Box::new(Keyed {
            state: FxHashMap::default(),
            update: Arc::clone(update),
        })
    }
}

impl<K, A, X> Stage<(K, A)> for Keyed<K, A, X>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    X: Serialize + DeserializeOwned + Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, _emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        for (k, x) in unpack::<(K, X)>(batch)? {
            let acc = (self.update)(self.state.remove(&k), x);
            self.state.insert(k, acc);
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        encode_state(&self.state)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.state = decode_state(bytes)?;
        Ok(())
    }

    fn finish(self: Box<Self>, emit: &mut dyn FnMut((K, A))) -> Result<(), DataflowError> {
        self.state.into_iter().for_each(emit);
        Ok(())
    }
}

/// The keyed stage of a count: pre-aggregated `(key, count)` pairs summed per key.
fn counted<K>(send: Arc<SendFn>, validate: Vec<ValidateFn>, source: SourceInfo) -> Exchanged<(K, u64)>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let add: Update<u64, u64> = merging(Arc::new(|a, b| a + b));
    let stage = Arc::new(move || Keyed::<K, u64, u64>::boxed(&add) as Box<dyn Stage<(K, u64)>>);
    Exchanged {
        send,
        stage,
        validate,
        source,
    }
}

/// The update of an associative combination: the first value as is, then `f(acc, value)`.
fn merging<V: 'static>(f: Arc<dyn Fn(V, V) -> V + Send + Sync>) -> Update<V, V> {
    Arc::new(move |acc: Option<V>, v: V| match acc {
        Some(acc) => f(acc, v),
        None => v,
    })
}

/// Records after the exchange, in the partition that owns them.
pub struct Exchanged<U> {
    send: Arc<SendFn>,
    stage: StageFactory<U>,
    validate: Vec<ValidateFn>,
    source: SourceInfo,
}

struct MapStage<U, V> {
    inner: Box<dyn Stage<U>>,
    op: PostOp<U, V>,
}

impl<U: 'static, V: 'static> Stage<V> for MapStage<U, V> {
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let op = &self.op;
        self.inner.on_batch(batch, &mut |u| op(u, emit))
    }

    fn finish(self: Box<Self>, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let op = self.op;
        self.inner.finish(&mut |u| op(u, emit))
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        self.inner.snapshot()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.inner.restore(bytes)
    }
}

impl<U: Send + 'static> Exchanged<U> {
    fn then<V: Send + 'static>(
        self,
        op: impl Fn(U, &mut dyn FnMut(V)) + Send + Sync + 'static,
    ) -> Exchanged<V> {
        let inner = self.stage;
        let op: PostOp<U, V> = Arc::new(op);
        Exchanged {
            send: self.send,
            stage: Arc::new(move || {
                Box::new(MapStage {
                    inner: inner(),
                    op: Arc::clone(&op),
                }) as Box<dyn Stage<V>>
            }),
            validate: self.validate,
            source: self.source,
        }
    }

    /// Transforms each record.
    pub fn map<V: Send + 'static>(self, f: impl Fn(U) -> V + Send + Sync + 'static) -> Exchanged<V> {
        self.then(move |u, emit| emit(f(u)))
    }

    /// Keeps the records for which `f` is true.
    pub fn filter(self, f: impl Fn(&U) -> bool + Send + Sync + 'static) -> Exchanged<U> {
        self.then(move |u, emit| {
            if f(&u) {
                emit(u)
            }
        })
    }

    /// Replaces each record by zero or more records.
    pub fn flat_map<V, I>(self, f: impl Fn(U) -> I + Send + Sync + 'static) -> Exchanged<V>
    where
        V: Send + 'static,
        I: IntoIterator<Item = V>,
    {
        self.then(move |u, emit| f(u).into_iter().for_each(&mut *emit))
    }

    /// Writes each partition's records to `sink`.
    pub fn sink<S: Sink<Item = U>>(self, sink: S) -> Job {
        let sink = Arc::new(sink);
        let validate = self.validate;
        Job {
            plan: Arc::new(SinkPlan {
                send: self.send,
                stage: self.stage,
                sink,
                validate,
                source: self.source,
            }),
        }
    }
}

struct SinkPlan<U, S> {
    send: Arc<SendFn>,
    stage: StageFactory<U>,
    sink: Arc<S>,
    validate: Vec<ValidateFn>,
    source: SourceInfo,
}

impl<U: Send + 'static, S: Sink<Item = U>> ErasedPlan for SinkPlan<U, S> {
    fn run_source(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        control: &SourceControl,
        out: &mut dyn ExchangeOut,
    ) -> Result<SourceEnd, DataflowError> {
        (self.send)(ctx, offset, control, out)
    }

    fn open_receiver(&self, ctx: &SinkContext) -> Result<Box<dyn Receiver>, DataflowError> {
        Ok(Box::new(SinkReceiver {
            stage: (self.stage)(),
            writer: self.sink.open(ctx)?,
            written: 0,
            failure: None,
        }))
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.validate_input()?;
        self.sink.validate()
    }

    fn validate_input(&self) -> Result<(), DataflowError> {
        self.validate.iter().try_for_each(|check| check())
    }

    fn bounded(&self) -> bool {
        self.source.bounded
    }

    fn empty_sources(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        (self.source.empty)(num_partitions)
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        self.sink.commit_epochs(partition, upto)
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        self.sink.discard_after(partition, after)
    }
}

struct SinkReceiver<U> {
    stage: Box<dyn Stage<U>>,
    writer: Box<dyn SinkWriter<U>>,
    written: u64,
    failure: Option<DataflowError>,
}

impl<U: Send + 'static> SinkReceiver<U> {
    /// The input has ended: writes what the stage held back (keyed results); returns the writer
    /// (to commit or pre-commit) and the number of records written.
    fn emit_held(self) -> Result<(Box<dyn SinkWriter<U>>, u64), DataflowError> {
        let SinkReceiver {
            stage,
            mut writer,
            mut written,
            mut failure,
        } = self;
        stage.finish(&mut |u| write(&mut writer, &mut written, &mut failure, u))?;
        match failure {
            Some(e) => Err(e),
            None => Ok((writer, written)),
        }
    }
}

impl<U: Send + 'static> Receiver for SinkReceiver<U> {
    fn on_batch(&mut self, batch: Batch) -> Result<(), DataflowError> {
        let (writer, written, failure) = (&mut self.writer, &mut self.written, &mut self.failure);
        self.stage
            .on_batch(batch, &mut |u| write(writer, written, failure, u))?;
        self.failure.take().map_or(Ok(()), Err)
    }

    fn finish_pending(self: Box<Self>, epoch: u64) -> Result<u64, DataflowError> {
        let (mut writer, written) = (*self).emit_held()?;
        writer.pre_commit(epoch)?;
        Ok(written)
    }

    /// The records written so far (8 bytes, little-endian), then the stage's state: a restored
    /// partition goes on counting its output from the checkpoint, so the final count is the
    /// job's whole output, whatever restores and moves happened.
    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        let mut state = self.written.to_le_bytes().to_vec();
        state.extend(self.stage.snapshot()?);
        Ok(state)
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), DataflowError> {
        let Some((written, stage)) = state.split_first_chunk::<8>() else {
            return Err(DataflowError::Encoding(format!(
                "a partition snapshot of {} bytes is too short",
                state.len()
            )));
        };
        self.written = u64::from_le_bytes(*written);
        self.stage.restore(stage)
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        self.writer.pre_commit(epoch)
    }

    fn finish(self: Box<Self>) -> Result<u64, DataflowError> {
        let (writer, written) = (*self).emit_held()?;
        writer.commit()?;
        Ok(written)
    }
}

fn write<U>(
    writer: &mut Box<dyn SinkWriter<U>>,
    written: &mut u64,
    failure: &mut Option<DataflowError>,
    u: U,
) {
    if failure.is_some() {
        return;
    }
    match writer.write(u) {
        Ok(()) => *written += 1,
        Err(e) => *failure = Some(e),
    }
}

/// A runnable job: built by a registered job function on every worker.
#[derive(Clone)]
pub struct Job {
    pub(crate) plan: Arc<dyn ErasedPlan>,
}

impl Job {
    /// Checks that the job's source can be read and its sink written.
    pub fn validate(&self) -> Result<(), DataflowError> {
        self.plan.validate()
    }

    /// Checks only that the job's source can be read: a job resumed from a checkpoint writes
    /// into an output that already holds its committed epochs.
    pub fn validate_input(&self) -> Result<(), DataflowError> {
        self.plan.validate_input()
    }
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

#[cfg(test)]
#[path = "barrier_tests.rs"]
mod barrier_tests;
