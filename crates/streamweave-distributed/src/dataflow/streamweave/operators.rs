//! `through_streamweave` on [`Stream`] (before the exchange, in the source task) and on
//! [`Exchanged`] (after it, in the receiver task), and the stateful form that buffers a bounded
//! partition in its snapshot and runs the transformer once at the end.
//!
//! ```text
//! Stream:    source --run--> Driver (a fresh transformer per run from an offset) --> exchange
//! Exchanged: receive --inner stage--> TransformStage (a fresh transformer per attempt) --> sink
//!            receive --inner stage--> BufferedStage: buffer (snapshotted) --finish--> Driver --> sink
//! ```

use std::fmt::Debug;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};
use streamweave_error::StreamError;

use super::driver::{as_is, AdaptedTransformer, Classify, Driver};
use crate::dataflow::plan::Batch;
use crate::dataflow::stage::{decode_state, encode_state, Stage};
use crate::dataflow::state::StageContext;
use crate::dataflow::{DataflowError, Exchanged, Flow, Stream};

/// Makes a fresh transformer (one per partition and attempt).
type Factory<X> = Arc<dyn Fn() -> X + Send + Sync>;

impl<T> Stream<T>
where
    T: Debug + Clone + Send + Sync + 'static,
{
    /// Runs each source partition's records through a StreamWeave transformer made by
    /// `factory`, in order, fused into the source task. The transformer must keep no state
    /// between records: it is made afresh whenever the partition (re)starts from an offset.
    /// Its output items are the records; a panic in it fails the task. See the module docs of
    /// [`crate::dataflow::streamweave`] for what is guaranteed.
    pub fn through_streamweave<X, F>(self, factory: F) -> Stream<X::Output>
    where
        X: AdaptedTransformer<T>,
        X::Output: Send + 'static,
        X::OutputStream: 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.through(Arc::new(factory), Ok, false)
    }

    /// [`Stream::through_streamweave`] for a transformer whose output items are
    /// `Result<V, StreamError<T>>`: an `Err` goes to the transformer's `ErrorStrategy` (Stop
    /// fails the task with the error, Skip drops the record, Retry(n) runs it again up to n
    /// times, Custom decides).
    pub fn try_through_streamweave<X, F, V>(self, factory: F) -> Stream<V>
    where
        X: AdaptedTransformer<T, Output = Result<V, StreamError<T>>>,
        X::OutputStream: 'static,
        V: Send + 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.through(Arc::new(factory), as_is, true)
    }

    fn through<X, V>(
        self,
        factory: Factory<X>,
        classify: Classify<X::Output, V, T>,
        fallible: bool,
    ) -> Stream<V>
    where
        X: AdaptedTransformer<T>,
        X::OutputStream: 'static,
        V: Send + 'static,
    {
        let run = self.run;
        Stream {
            // Called once per stretch between checkpoint barriers: the transformer's outputs of
            // a stretch all leave before its barrier, and a restart replays from the offset.
            run: Arc::new(move |ctx, offset, control, emit| {
                let mut driver = Driver::start(factory(), classify, fallible);
                let mut failed = None;
                let end = run(ctx, offset, control, &mut |x| match driver.push(x, emit) {
                    Ok(flow) => flow,
                    Err(e) => {
                        failed = Some(e);
                        Flow::Stop
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
                }
                let end = end?;
                driver.finish(emit)?;
                Ok(end)
            }),
            validate: self.validate,
            source: self.source,
        }
    }
}

impl<U> Exchanged<U>
where
    U: Debug + Clone + Send + Sync + 'static,
{
    /// Runs each partition's records, after the exchange, through a StreamWeave transformer
    /// made by `factory` (one per partition and attempt), in order, fused into the receiver.
    /// The transformer must keep no state between records (see
    /// [`Exchanged::through_streamweave_stateful`] for one that does).
    pub fn through_streamweave<X, F>(self, factory: F) -> Exchanged<X::Output>
    where
        X: AdaptedTransformer<U>,
        X::Output: Send + 'static,
        X::OutputStream: 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.through(Arc::new(factory), Ok, false)
    }

    /// [`Exchanged::through_streamweave`] honouring the transformer's `ErrorStrategy` for
    /// output items `Result<V, StreamError<U>>` (as [`Stream::try_through_streamweave`]).
    pub fn try_through_streamweave<X, F, V>(self, factory: F) -> Exchanged<V>
    where
        X: AdaptedTransformer<U, Output = Result<V, StreamError<U>>>,
        X::OutputStream: 'static,
        V: Send + 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.through(Arc::new(factory), as_is, true)
    }

    /// A transformer that keeps state between records (sorts, windows, counts): allowed only
    /// on a bounded job. Each partition's records are buffered in its checkpointed state and
    /// the transformer runs once over all of them when the input ends, so a restart neither
    /// loses nor repeats its effect. On an unbounded source the job is refused when it is
    /// checked, pointing to `key_by(..).fold(..)`.
    pub fn through_streamweave_stateful<X, F>(self, factory: F) -> Exchanged<X::Output>
    where
        U: Serialize + DeserializeOwned,
        X: AdaptedTransformer<U>,
        X::Output: Send + 'static,
        X::OutputStream: 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.buffered(Arc::new(factory), Ok, false)
    }

    /// [`Exchanged::through_streamweave_stateful`] honouring the transformer's `ErrorStrategy`.
    pub fn try_through_streamweave_stateful<X, F, V>(self, factory: F) -> Exchanged<V>
    where
        U: Serialize + DeserializeOwned,
        X: AdaptedTransformer<U, Output = Result<V, StreamError<U>>>,
        X::OutputStream: 'static,
        V: Send + 'static,
        F: Fn() -> X + Send + Sync + 'static,
    {
        self.buffered(Arc::new(factory), as_is, true)
    }

    fn through<X, V>(
        self,
        factory: Factory<X>,
        classify: Classify<X::Output, V, U>,
        fallible: bool,
    ) -> Exchanged<V>
    where
        X: AdaptedTransformer<U>,
        X::OutputStream: 'static,
        V: Send + 'static,
    {
        let inner = self.stage;
        Exchanged {
            send: self.send,
            stage: Arc::new(move |ctx: &StageContext| {
                Ok(Box::new(TransformStage {
                    inner: inner(ctx)?,
                    factory: Arc::clone(&factory),
                    driver: None,
                    classify,
                    fallible,
                }) as Box<dyn Stage<V>>)
            }),
            validate: self.validate,
            source: self.source,
        }
    }

    fn buffered<X, V>(
        self,
        factory: Factory<X>,
        classify: Classify<X::Output, V, U>,
        fallible: bool,
    ) -> Exchanged<V>
    where
        U: Serialize + DeserializeOwned,
        X: AdaptedTransformer<U>,
        X::OutputStream: 'static,
        V: Send + 'static,
    {
        let mut validate = self.validate;
        if !self.source.bounded {
            validate.push(Arc::new(|| {
                Err(DataflowError::InvalidJob(UNBOUNDED_STATEFUL.to_string()))
            }));
        }
        let inner = self.stage;
        Exchanged {
            send: self.send,
            stage: Arc::new(move |ctx: &StageContext| {
                Ok(Box::new(BufferedStage {
                    inner: inner(ctx)?,
                    buffer: Vec::new(),
                    factory: Arc::clone(&factory),
                    classify,
                    fallible,
                }) as Box<dyn Stage<V>>)
            }),
            validate,
            source: self.source,
        }
    }
}

/// Why a stateful transformer is refused on an unbounded source.
pub(super) const UNBOUNDED_STATEFUL: &str = "a stateful StreamWeave transformer \
    (through_streamweave_stateful) needs a bounded source: it buffers its partition's input in \
    the checkpointed state and runs once at the end, which an unbounded source never reaches, \
    and its own state cannot be checkpointed; keep per-key state with key_by(..).fold(..), \
    or use through_streamweave with a transformer that keeps no state between records";

/// Adapts a stage's `emit` to the driver's.
fn continuing<V>(emit: &mut dyn FnMut(V)) -> impl FnMut(V) -> Flow + '_ {
    move |v| {
        emit(v);
        Flow::Continue
    }
}

/// A stateless transformer after a stage; the stage's state is the inner stage's.
struct TransformStage<U, X, V>
where
    U: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<U>,
{
    inner: Box<dyn Stage<U>>,
    factory: Factory<X>,
    /// Started at the first record, so that starting runs where errors are reported.
    driver: Option<Driver<U, X, V>>,
    classify: Classify<X::Output, V, U>,
    fallible: bool,
}

impl<U, X, V> TransformStage<U, X, V>
where
    U: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<U>,
    X::OutputStream: 'static,
    V: Send + 'static,
{
    /// Runs `f`'s records through the transformer, keeping the first error.
    fn feed(
        inner: &mut Box<dyn Stage<U>>,
        driver: &mut Driver<U, X, V>,
        emit: &mut dyn FnMut(V),
        f: impl FnOnce(&mut Box<dyn Stage<U>>, &mut dyn FnMut(U)) -> Result<(), DataflowError>,
    ) -> Result<(), DataflowError> {
        let mut failed = None;
        let mut emit = continuing(emit);
        f(inner, &mut |u| {
            if failed.is_none() {
                if let Err(e) = driver.push(u, &mut emit) {
                    failed = Some(e);
                }
            }
        })?;
        failed.map_or(Ok(()), Err)
    }

    fn driver(&mut self) -> &mut Driver<U, X, V> {
        let (factory, classify, fallible) = (&self.factory, self.classify, self.fallible);
        self.driver
            .get_or_insert_with(|| Driver::start(factory(), classify, fallible))
    }
}

impl<U, X, V> Stage<V> for TransformStage<U, X, V>
where
    U: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<U>,
    X::OutputStream: 'static,
    V: Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        self.driver();
        let Some(driver) = self.driver.as_mut() else {
            return Ok(());
        };
        Self::feed(&mut self.inner, driver, emit, |inner, push| {
            inner.on_batch(batch, push)
        })
    }

    fn on_barrier(&mut self, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        self.driver();
        let Some(driver) = self.driver.as_mut() else {
            return Ok(());
        };
        Self::feed(&mut self.inner, driver, emit, |inner, push| {
            inner.on_barrier(push)
        })
    }

    fn finish(mut self: Box<Self>, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        self.driver();
        let this = *self;
        let (mut inner, Some(mut driver)) = (this.inner, this.driver) else {
            return Ok(());
        };
        Self::feed(&mut inner, &mut driver, emit, |inner, push| {
            // `finish` consumes the stage: hand it over in place of a dummy.
            let stage = std::mem::replace(inner, Box::new(Nothing));
            stage.finish(push)
        })?;
        driver.finish(&mut continuing(emit)).map(|_| ())
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        self.inner.snapshot()
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        self.inner.restore(bytes)
    }
}

/// A stage with nothing in it, left where a finished stage was.
struct Nothing;

impl<U> Stage<U> for Nothing {
    fn on_batch(&mut self, _batch: Batch, _emit: &mut dyn FnMut(U)) -> Result<(), DataflowError> {
        Ok(())
    }

    fn finish(self: Box<Self>, _emit: &mut dyn FnMut(U)) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// A stateful transformer on a bounded job: the partition's records wait in the stage's state
/// (snapshotted with it) and the transformer runs once, over all of them, at the end.
struct BufferedStage<U, X, V>
where
    U: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<U>,
{
    inner: Box<dyn Stage<U>>,
    buffer: Vec<U>,
    factory: Factory<X>,
    classify: Classify<X::Output, V, U>,
    fallible: bool,
}

impl<U, X, V> Stage<V> for BufferedStage<U, X, V>
where
    U: Debug + Clone + Send + Sync + Serialize + DeserializeOwned + 'static,
    X: AdaptedTransformer<U>,
    X::OutputStream: 'static,
    V: Send + 'static,
{
    fn on_batch(&mut self, batch: Batch, _emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let buffer = &mut self.buffer;
        self.inner.on_batch(batch, &mut |u| buffer.push(u))
    }

    fn on_barrier(&mut self, _emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let buffer = &mut self.buffer;
        self.inner.on_barrier(&mut |u| buffer.push(u))
    }

    fn finish(self: Box<Self>, emit: &mut dyn FnMut(V)) -> Result<(), DataflowError> {
        let BufferedStage {
            inner,
            mut buffer,
            factory,
            classify,
            fallible,
        } = *self;
        inner.finish(&mut |u| buffer.push(u))?;
        let mut driver = Driver::start(factory(), classify, fallible);
        let mut emit = continuing(emit);
        for u in buffer {
            driver.push(u, &mut emit)?;
        }
        driver.finish(&mut emit).map(|_| ())
    }

    fn snapshot(&self) -> Result<Vec<u8>, DataflowError> {
        encode_state(&(self.inner.snapshot()?, &self.buffer))
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), DataflowError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let (inner, buffer): (Vec<u8>, Vec<U>) = decode_state(bytes)?;
        self.inner.restore(&inner)?;
        self.buffer = buffer;
        Ok(())
    }
}
