//! StreamWeave interop (feature `streamweave`, the `streamweave` 0.6 core traits): run a
//! user's StreamWeave `Transformer` on every partition's records, read a `Producer` as a
//! source, write to a `Consumer` as a sink.
//!
//! ```text
//! Stream::through_streamweave(factory)     source task:   records -> transformer -> exchange
//! Exchanged::through_streamweave(factory)  receiver task: exchange -> transformer -> sink
//! Exchanged::through_streamweave_stateful  receiver task: buffer (in the snapshot) -> at the end, transformer
//! ProducerSource / ConsumerSink            a producer's items as a source / a consumer as a sink
//! ```
//!
//! The worker drives the transformer's async streams itself (`executor.rs`): each record is
//! pushed into the transformer's input stream and its output is polled until the transformer
//! asks for the next record, on the thread that runs the task, with no runtime, task or
//! channel per record. Records therefore leave in input order, and everything a record
//! produces is emitted before the next record (and before a checkpoint barrier).
//!
//! What is guaranteed, and no more:
//! - **Stateless transformers** (`through_streamweave`): exactly-once, for a transformer that
//!   keeps no state between records. A fresh transformer is made for every partition and
//!   attempt (before the exchange: for every stretch between checkpoint barriers), and its input
//!   replays from the last checkpoint. State it keeps anyway is lost at every restart.
//! - **Stateful transformers** (`through_streamweave_stateful`, after the exchange): only on a
//!   bounded job. The partition's input is buffered in its checkpointed state and the
//!   transformer runs once, at the end: exactly-once. On an unbounded source the job is refused
//!   when it is checked, with an error pointing to `key_by(..).fold(..)`.
//! - **Errors**: with `try_through_streamweave*`, the transformer's output items are
//!   `Result<V, StreamError<In>>` and an `Err` goes to its `ErrorStrategy` (`handle_error`):
//!   Stop fails the task with the error, Skip drops the record, Retry(n) feeds the record again
//!   up to n times, then stops. A panic in the transformer fails the task like any operator's.
//! - **`ProducerSource`**: exactly-once for a finite producer that is deterministic per
//!   partition (a restart replays it and skips what was read). **`ConsumerSink`**: at least once.
//!
//! A transformer that waits on something other than its input (a timer, a task it spawned)
//! works, but blocks the task's thread while it waits.

mod driver;
mod executor;
mod io;
mod operators;

#[cfg(test)]
mod tests;

/// The input stream type an adapted transformer or consumer declares
/// (`type InputStream = InputStream<T>`).
pub type InputStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = T> + Send>>;

pub use driver::AdaptedTransformer;
pub use io::{ConsumerSink, ProducerSource};
