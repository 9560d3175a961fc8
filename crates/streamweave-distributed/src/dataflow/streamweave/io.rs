//! A StreamWeave `Producer` as a source and a `Consumer` as a sink.
//!
//! ```text
//! ProducerSource: factory(partition) -> Producer --produce--> items; skip `offset`, emit the rest
//! ConsumerSink:   write(x) --Feed--> Consumer::consume(stream) (polled until it wants more)
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::Poll;

use ::streamweave::{Consumer, Producer};

use super::executor::{Feed, Poller};
use super::InputStream;
use crate::dataflow::{
    DataflowError, Flow, Sink, SinkContext, SinkWriter, Source, SourceContext, SourceEnd, SourceOffset,
};

/// A source reading what a StreamWeave `Producer` produces, one producer per partition.
///
/// Exactly-once holds for a producer that is **finite and deterministic per partition**: a
/// restart makes a fresh producer and skips the items already read (the offset counts items),
/// so the same items must come out in the same order. `factory` gets the partition (and the
/// number of partitions) and decides what that partition produces; a producer that ignores it
/// produces everything in every partition.
///
/// ```
/// use std::pin::Pin;
/// use futures::Stream;
/// use streamweave::{Output, Producer, ProducerConfig};
/// use streamweave_distributed::dataflow::{sinks::CollectorSink, streamweave::ProducerSource, Stream as Job};
///
/// #[derive(Default)]
/// struct Numbers { from: u64, step: u64, config: ProducerConfig<u64> }
/// impl Output for Numbers {
///     type Output = u64;
///     type OutputStream = Pin<Box<dyn Stream<Item = u64> + Send>>;
/// }
/// impl Producer for Numbers {
///     type OutputPorts = (u64,);
///     fn produce(&mut self) -> Self::OutputStream {
///         Box::pin(futures::stream::iter((self.from..100).step_by(self.step as usize)))
///     }
///     fn set_config_impl(&mut self, config: ProducerConfig<u64>) { self.config = config; }
///     fn get_config_impl(&self) -> &ProducerConfig<u64> { &self.config }
///     fn get_config_mut_impl(&mut self) -> &mut ProducerConfig<u64> { &mut self.config }
/// }
///
/// let source = ProducerSource::new(|ctx| Numbers {
///     from: ctx.partition as u64,
///     step: ctx.num_partitions as u64,
///     ..Numbers::default()
/// });
/// let job = Job::from_source(source).map(|n| n * 2).sink(CollectorSink::new());
/// # let _ = job;
/// ```
pub struct ProducerSource<P, F> {
    factory: F,
    producer: PhantomData<fn() -> P>,
}

impl<P, F> ProducerSource<P, F>
where
    F: Fn(&SourceContext) -> P + Send + Sync + 'static,
{
    /// A source whose partition `ctx.partition` reads `factory(ctx).produce()`.
    pub fn new(factory: F) -> Self {
        ProducerSource {
            factory,
            producer: PhantomData,
        }
    }
}

impl<P, F> Source for ProducerSource<P, F>
where
    P: Producer + 'static,
    P::Output: Debug + Clone + Send + Sync + 'static,
    P::OutputStream: 'static,
    F: Fn(&SourceContext) -> P + Send + Sync + 'static,
{
    type Item = P::Output;

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(P::Output) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        let mut producer = (self.factory)(ctx);
        let mut items = Box::pin(producer.produce());
        let poller = Poller::default();
        let mut read = 0u64;
        loop {
            match poller.poll_next(items.as_mut()) {
                Poll::Ready(Some(item)) => {
                    read += 1;
                    // Already read before the restart: the producer replays it, we skip it.
                    if read > offset.0 && emit(item) == Flow::Stop {
                        return Ok(SourceEnd::Stopped(SourceOffset(read)));
                    }
                }
                Poll::Ready(None) => return Ok(SourceEnd::Exhausted(SourceOffset(read))),
                Poll::Pending => poller.wait(),
            }
        }
    }
}

/// A sink handing each partition's records to a StreamWeave `Consumer`, one per partition and
/// attempt: **at least once**. A record reaches the consumer before the checkpoint that
/// covers it completes; after a failure, the records since the last checkpoint are handed to a
/// fresh consumer again. A consumer has no commit, so nothing can take them back. That holds
/// for a consumer that has finished with a record (written it through) when it asks for the
/// next; one that buffers loses its buffer with its process.
pub struct ConsumerSink<C, F> {
    factory: F,
    consumer: PhantomData<fn() -> C>,
}

impl<C, F> ConsumerSink<C, F>
where
    F: Fn(&SinkContext) -> C + Send + Sync + 'static,
{
    /// A sink whose partition `ctx.partition` feeds `factory(ctx).consume(..)`.
    pub fn new(factory: F) -> Self {
        ConsumerSink {
            factory,
            consumer: PhantomData,
        }
    }
}

impl<C, F> Sink for ConsumerSink<C, F>
where
    C: Consumer<InputStream = InputStream<<C as streamweave::Input>::Input>> + Send + 'static,
    C::Input: Debug + Clone + Send + Sync + 'static,
    F: Fn(&SinkContext) -> C + Send + Sync + 'static,
{
    type Item = C::Input;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<C::Input>>, DataflowError> {
        let mut consumer = (self.factory)(ctx);
        let (feed, input) = Feed::new(false);
        let run = Box::pin(async move { consumer.consume(Box::pin(input)).await });
        Ok(Box::new(ConsumerWriter {
            feed,
            run,
            poller: Poller::default(),
            done: false,
        }))
    }
}

struct ConsumerWriter<T> {
    feed: Feed<T>,
    run: Pin<Box<dyn Future<Output = ()> + Send>>,
    poller: Poller,
    /// `consume` returned.
    done: bool,
}

impl<T: Send> ConsumerWriter<T> {
    /// Polls the consumer until it wants more input (or, `to_end`, until it returns).
    fn pump(&mut self, to_end: bool) {
        while !self.done {
            match self.poller.poll(self.run.as_mut()) {
                Poll::Ready(()) => self.done = true,
                Poll::Pending if !to_end && self.feed.starved() => return,
                Poll::Pending => self.poller.wait(),
            }
        }
    }
}

impl<T: Send> SinkWriter<T> for ConsumerWriter<T> {
    fn write(&mut self, item: T) -> Result<(), DataflowError> {
        if self.done {
            return Err(DataflowError::StreamWeave {
                component: "consumer".to_string(),
                message: "consume returned before the end of its input".to_string(),
            });
        }
        self.feed.push(item, 0, &self.poller);
        self.pump(false);
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), DataflowError> {
        self.feed.close(&self.poller);
        self.pump(true);
        Ok(())
    }
}
