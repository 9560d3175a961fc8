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
//! (`Stage`). This file types and composes the pipeline; the halves it composes live by concept:
//!
//! ```text
//! Stream<T> --exchange / count / key_by (keyed.rs)--> Exchanged<U> --sink--> Job
//!   send side, in the source task:     router.rs   (routing, pre-aggregation, batching)
//!   receive side, in the receiver task: stage.rs   (pass-through, keyed state, fused operators)
//!   both, behind ErasedPlan:            sink_plan.rs (what the worker runtime calls)
//! ```

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use super::keyed::KeyedStream;
use super::plan::{ErasedPlan, SourceControl, LAG_UNKNOWN};
use super::router::{self, SendFn};
use super::short_key::ShortKey;
use super::sink_plan::SinkPlan;
use super::stage::{merging, LocalPassThrough, MapStage, PassThrough, PostOp, Stage, StageFactory, Update};
use super::state::{changelog_factory, keyed_factory, StageContext};
use super::{
    DataflowError, Flow, HashPartitioner, Partitioner, Sink, Source, SourceContext, SourceEnd, SourceOffset,
    StableHash,
};

/// Runs a source partition from an offset through the fused operators, counting source records.
pub(super) type RunFn<T> = dyn Fn(
        &SourceContext,
        SourceOffset,
        &SourceControl,
        &mut dyn FnMut(T) -> Flow,
    ) -> Result<SourceEnd, DataflowError>
    + Send
    + Sync;
/// Checks, before a job starts, that its source can be read.
pub(super) type ValidateFn = Arc<dyn Fn() -> Result<(), DataflowError> + Send + Sync>;

/// [`Source::empty_partitions`] of a job's source.
type EmptyFn = Arc<dyn Fn(usize) -> Result<Option<Vec<bool>>, DataflowError> + Send + Sync>;

/// What the runtime needs to know of a job's source beyond its records.
#[derive(Clone)]
pub(super) struct SourceInfo {
    pub(super) bounded: bool,
    /// [`Source::is_paced`].
    pub(super) paced: bool,
    pub(super) empty: EmptyFn,
}

/// Publish source record counts in chunks, not per record.
const COUNT_CHUNK: u64 = 256;

/// Records of type `T` before the exchange.
pub struct Stream<T> {
    pub(super) run: Arc<RunFn<T>>,
    pub(super) validate: Vec<ValidateFn>,
    pub(super) source: SourceInfo,
}

impl<T: Send + 'static> Stream<T> {
    /// A stream reading `source`.
    pub fn from_source<S: Source<Item = T>>(source: S) -> Self {
        let source = Arc::new(source);
        let check = Arc::clone(&source);
        let info = SourceInfo {
            bounded: source.is_bounded(),
            paced: source.is_paced(),
            empty: {
                let source = Arc::clone(&source);
                Arc::new(move |n| source.empty_partitions(n))
            },
        };
        Stream {
            source: info,
            run: Arc::new(move |ctx, offset, control, emit| {
                let pending = std::cell::Cell::new(0u64);
                let flush = || {
                    let n = pending.replace(0);
                    control.records_in_total.fetch_add(n, Ordering::Relaxed);
                    control.records_in.fetch_add(n, Ordering::Relaxed);
                    if let Some(lag) = source.lag(ctx.partition) {
                        control.lag.store(lag.min(LAG_UNKNOWN - 1), Ordering::Relaxed);
                    }
                };
                let interrupted =
                    || control.pause.load(Ordering::Acquire) || control.cancel.load(Ordering::Acquire);
                // A source asks this only while it waits for input: the records it read count
                // now, not when the next chunk fills (an idle stream may not fill it for hours).
                let idle_interrupted = || {
                    flush();
                    interrupted()
                };
                let end = source.read_interruptible(ctx, offset, &idle_interrupted, &mut |item| {
                    pending.set(pending.get() + 1);
                    if pending.get() == COUNT_CHUNK {
                        flush();
                    }
                    let flow = emit(item);
                    // A checkpoint barrier is waiting: stop after this record (it counts as read,
                    // so the returned offset is exactly where to resume).
                    if interrupted() {
                        Flow::Stop
                    } else {
                        flow
                    }
                });
                flush();
                end
            }),
            validate: vec![Arc::new(move || check.validate())],
        }
    }

    /// Whether the stream's source ends (see [`Source::is_bounded`]).
    pub fn is_bounded(&self) -> bool {
        self.source.bounded
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
        let send = router::exchange(self.run, Arc::new(partitioner));
        Exchanged {
            send,
            stage: Arc::new(
                |_: &StageContext| Ok(Box::new(PassThrough::<T>::default()) as Box<dyn Stage<T>>),
            ),
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
        let send = router::count_keys::<T, K, Q>(self.run, f);
        counted(send, self.validate, self.source)
    }

    /// [`Stream::count_keys`] for string keys, faster: the pre-aggregation table keeps every
    /// key's bytes in one buffer (see `key_counts.rs`), so counting a key already seen allocates
    /// nothing and reads contiguous memory; through the exchange and in the receivers' table
    /// short keys stay inline (see `short_key.rs`).
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
        let send = router::count_str_keys(self.run, f);
        // The keys stay short keys through the exchange and the receivers' table too (placed,
        // encoded and snapshotted exactly as strings), and become strings on the way out.
        counted::<ShortKey>(send, self.validate, self.source).map(|(key, n)| (key.into_string(), n))
    }

    /// [`Stream::count_str_keys`] as a changelog, for unbounded sources: at every checkpoint
    /// barrier (and at the end) each partition emits `(key, new count)` for the keys counted
    /// since the previous barrier. Without checkpoints it emits once, at the end.
    pub fn count_str_keys_changelog(
        self,
        f: impl Fn(&T, &mut dyn FnMut(&str)) + Send + Sync + 'static,
    ) -> Exchanged<(String, u64)> {
        let send = router::count_str_keys(self.run, f);
        let stage = changelog_factory::<ShortKey>();
        Exchanged {
            send,
            stage,
            validate: self.validate,
            source: self.source,
        }
        .map(|(key, n)| (key.into_string(), n))
    }

    /// Writes to `sink`; each partition's records stay in their partition (no exchange).
    pub fn sink<S: Sink<Item = T>>(self, sink: S) -> Job {
        let send = router::local(self.run);
        Exchanged {
            send,
            stage: Arc::new(|_: &StageContext| {
                Ok(Box::new(LocalPassThrough::<T>::default()) as Box<dyn Stage<T>>)
            }),
            validate: self.validate,
            source: self.source,
        }
        .sink(sink)
    }
}

impl<K: Send + 'static, V: Send + 'static> Stream<(K, V)> {
    /// Pre-aggregates `(key, value)` pairs with an associative `f` before the exchange and
    /// merges the partial results after it.
    pub(super) fn combine(
        self,
        partitioner: Arc<dyn Partitioner<K>>,
        f: Arc<dyn Fn(V, V) -> V + Send + Sync>,
    ) -> Exchanged<(K, V)>
    where
        K: Eq + Hash + Serialize + DeserializeOwned + Sync,
        V: Serialize + DeserializeOwned + Sync,
    {
        let send = router::combine(self.run, partitioner, Arc::clone(&f));
        let update: Update<V, V> = merging(f);
        let stage = keyed_factory::<K, V, V>(Arc::clone(&update), Some(update));
        Exchanged {
            send,
            stage,
            validate: self.validate,
            source: self.source,
        }
    }
}

/// The keyed stage of a count: pre-aggregated `(key, count)` pairs summed per key.
fn counted<K>(send: Arc<SendFn>, validate: Vec<ValidateFn>, source: SourceInfo) -> Exchanged<(K, u64)>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    let add: Update<u64, u64> = merging(Arc::new(|a, b| a + b));
    let stage = keyed_factory::<K, u64, u64>(Arc::clone(&add), Some(add));
    Exchanged {
        send,
        stage,
        validate,
        source,
    }
}

/// Records after the exchange, in the partition that owns them.
pub struct Exchanged<U> {
    pub(super) send: Arc<SendFn>,
    pub(super) stage: StageFactory<U>,
    pub(super) validate: Vec<ValidateFn>,
    pub(super) source: SourceInfo,
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
            stage: Arc::new(move |ctx: &StageContext| {
                Ok(Box::new(MapStage {
                    inner: inner(ctx)?,
                    op: Arc::clone(&op),
                }) as Box<dyn Stage<V>>)
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

    /// Whether the job's source ends; an unbounded job runs until it is stopped.
    pub fn is_bounded(&self) -> bool {
        self.plan.bounded()
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
