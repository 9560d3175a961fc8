//! One StreamWeave `Transformer` run over a partition's records: records are pushed in one at a
//! time, and each push returns once the transformer has emitted what it makes of the record and
//! asks for the next one, so outputs leave in input order and nothing is held back at a
//! checkpoint barrier.
//!
//! ```text
//! push(x) --Feed--> transformer's input --transform--> output --classify--> Ok(v)  -> emit(v)
//!                                                                      \-> Err(e) -> handle_error(e):
//!                                       Stop: fail the task | Skip: drop | Retry: x again, tries + 1
//! ```

use std::fmt::Debug;
use std::pin::Pin;
use std::task::Poll;

use ::streamweave::Transformer;
use ::streamweave_error::{ErrorAction, StreamError};

use super::executor::{Feed, Poller};
use super::InputStream;
use crate::dataflow::{DataflowError, Flow};

/// How a transformer's output item reads: a record, or a record that failed.
pub(super) type Classify<O, V, In> = fn(O) -> Result<V, StreamError<In>>;

/// How a fallible transformer's output item reads: as it is.
#[allow(clippy::result_large_err)] // StreamWeave's own error type, as its transformers make it.
pub(super) fn as_is<V, In>(item: Result<V, StreamError<In>>) -> Result<V, StreamError<In>>
where
    In: Debug + Clone + Send + Sync,
{
    item
}

/// The bounds every adapted transformer meets: typed input stream, movable between threads.
pub trait AdaptedTransformer<In>:
    Transformer<Input = In, InputStream = InputStream<In>> + Send + 'static
where
    In: Debug + Clone + Send + Sync + 'static,
{
}

impl<In, X> AdaptedTransformer<In> for X
where
    In: Debug + Clone + Send + Sync + 'static,
    X: Transformer<Input = In, InputStream = InputStream<In>> + Send + 'static,
{
}

/// A transformer started on a feed, and its output stream.
pub(super) struct Driver<In, X, V>
where
    In: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<In>,
{
    transformer: X,
    feed: Feed<In>,
    output: Pin<Box<X::OutputStream>>,
    poller: Poller,
    classify: Classify<X::Output, V, In>,
    /// The output stream ended: later records have nowhere to go and are dropped.
    ended: bool,
}

impl<In, X, V> Driver<In, X, V>
where
    In: Debug + Clone + Send + Sync + 'static,
    X: AdaptedTransformer<In>,
    X::OutputStream: 'static,
{
    /// Starts `transformer` on an empty input. `fallible` keeps a copy of the current record so
    /// that an error which does not carry it can still be retried.
    pub(super) fn start(mut transformer: X, classify: Classify<X::Output, V, In>, fallible: bool) -> Self {
        let (feed, input) = Feed::new(fallible);
        let poller = Poller::default();
        let output = {
            let mut starting = transformer.transform(Box::pin(input));
            // Building the output stream awaits nothing but the transformer's own setup.
            poller.block_on(starting.as_mut())
        };
        Driver {
            transformer,
            feed,
            output: Box::pin(output),
            poller,
            classify,
            ended: false,
        }
    }

    /// Runs one record through, emitting its outputs; `Flow::Stop` when `emit` asked to stop.
    pub(super) fn push(&mut self, x: In, emit: &mut dyn FnMut(V) -> Flow) -> Result<Flow, DataflowError> {
        if self.ended {
            return Ok(Flow::Continue);
        }
        self.feed.push(x, 0, &self.poller);
        self.pump(emit, false)
    }

    /// Ends the input and emits whatever the transformer still makes of it.
    pub(super) fn finish(mut self, emit: &mut dyn FnMut(V) -> Flow) -> Result<Flow, DataflowError> {
        self.feed.close(&self.poller);
        self.pump(emit, true)
    }

    /// Polls the output until the transformer wants more input (or, `to_end`, until it ends).
    fn pump(&mut self, emit: &mut dyn FnMut(V) -> Flow, to_end: bool) -> Result<Flow, DataflowError> {
        loop {
            if self.ended {
                return Ok(Flow::Continue);
            }
            match self.poller.poll_next(self.output.as_mut()) {
                Poll::Ready(Some(item)) => match (self.classify)(item) {
                    Ok(v) => {
                        if emit(v) == Flow::Stop {
                            return Ok(Flow::Stop);
                        }
                    }
                    Err(e) => self.on_error(e)?,
                },
                Poll::Ready(None) => self.ended = true,
                Poll::Pending if !to_end && self.feed.starved() => return Ok(Flow::Continue),
                // Waiting on something other than its input (a timer, another task).
                Poll::Pending => self.poller.wait(),
            }
        }
    }

    /// Applies the transformer's `ErrorStrategy` (through its `handle_error`) to a failed record.
    fn on_error(&mut self, mut error: StreamError<In>) -> Result<(), DataflowError> {
        let current = self.feed.current();
        let tries = current.as_ref().map_or(0, |(_, tries)| *tries);
        // StreamWeave's strategies read the count from the error: `Retry(n)` while retries < n.
        error.retries = tries;
        match self.transformer.handle_error(&error) {
            ErrorAction::Skip => Ok(()),
            ErrorAction::Stop => Err(failed(&error, "stopped by its error strategy")),
            ErrorAction::Retry => match current.map(|(x, _)| x).or_else(|| error.context.item.clone()) {
                Some(x) => {
                    self.feed.push_front(x, tries + 1, &self.poller);
                    Ok(())
                }
                None => Err(failed(
                    &error,
                    "a retry was asked for, but no record to retry is known",
                )),
            },
        }
    }
}

fn failed<In: Debug + Clone + Send + Sync>(error: &StreamError<In>, why: &str) -> DataflowError {
    let record = error
        .context
        .item
        .as_ref()
        .map(|x| format!(" on record {x:?}"))
        .unwrap_or_default();
    DataflowError::StreamWeave {
        component: format!("{} ({})", error.component.name, error.component.type_name),
        message: format!("{}{record} after {} retries: {why}", error.source, error.retries),
    }
}
