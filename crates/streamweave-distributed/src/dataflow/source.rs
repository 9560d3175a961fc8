//! Sources: where a job's records come from. A source is partitioned (partition `p` of `P` reads
//! its own share) and replayable (it can start again from an offset it reported).

use serde::{Deserialize, Serialize};

use super::DataflowError;

/// Which share of a source a task reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceContext {
    /// The partition this task reads, in `0..num_partitions`.
    pub partition: usize,
    /// The number of partitions `P`.
    pub num_partitions: usize,
}

/// A position inside one partition's share of a source, from which reading can resume. Its
/// meaning is the source's own (bytes consumed for files, records for collections); it only
/// grows while a partition is read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SourceOffset(pub u64);

/// What the consumer of a source's records wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop now (the attempt was cancelled); the source returns its current offset.
    Stop,
}

/// How a call to [`Source::read`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceEnd {
    /// The share is exhausted: a bounded source has nothing more for this partition.
    Exhausted(SourceOffset),
    /// The consumer asked to stop at this offset.
    Stopped(SourceOffset),
}

/// A partitioned, replayable source of records. `read` runs on a blocking thread: it may do
/// blocking I/O and calls `emit` for every record, in order.
pub trait Source: Send + Sync + 'static {
    /// The records it produces.
    type Item: Send + 'static;

    /// Reads the share of `ctx.partition` starting at `offset` (`SourceOffset(0)` is the
    /// beginning), pushing each record to `emit` until the share ends or `emit` returns
    /// [`Flow::Stop`].
    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(Self::Item) -> Flow,
    ) -> Result<SourceEnd, DataflowError>;

    /// [`Source::read`] for a source that can wait long for its next record (a network log):
    /// while no record arrives it polls `interrupted`, and once that says true (a checkpoint
    /// barrier, a yield or a cancellation is due) returns [`SourceEnd::Stopped`] at its current
    /// offset. Without this an idle unbounded source would hold its barrier back forever. The
    /// default calls `read`, which is right for sources that always have a record at hand.
    fn read_interruptible(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        interrupted: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Self::Item) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        let _ = interrupted;
        self.read(ctx, offset, emit)
    }

    /// How many of partition `partition`'s records are behind the end of the input, as this
    /// source last saw it: the lag of a log that grows while the job runs. `None` when the
    /// source cannot tell (the default) or has not read the partition yet. Called every few
    /// hundred records from the reading thread, so it must be cheap and never block for long.
    fn lag(&self, partition: usize) -> Option<u64> {
        let _ = partition;
        None
    }

    /// Checks that the source can be read at all (the input exists, ...), before a job starts.
    fn validate(&self) -> Result<(), DataflowError> {
        Ok(())
    }

    /// Whether every partition's share ends. Bounded sources may be read a few partitions at
    /// a time (as many as the worker has source slots); unbounded ones all run at once.
    fn is_bounded(&self) -> bool {
        true
    }

    /// Whether the source waits between records on purpose (a rate limit, see
    /// [`Throttled`](crate::dataflow::sources::Throttled)). A paced bounded source shares the
    /// worker's source slots as an unbounded one does: it gives its slot to a waiting partition
    /// after a short slice instead of holding it while it sleeps, so every partition of a
    /// rate-limited job reads at its rate at once.
    fn is_paced(&self) -> bool {
        false
    }

    /// Which of `num_partitions` partitions' shares hold nothing at all, when the source can
    /// tell for certain (`None`: it cannot). Every worker must compute the same answer: the
    /// receivers count those sources as ended from the start and their tasks send no
    /// end-of-stream markers, which with a thousand partitions and a few files saves a million
    /// messages.
    fn empty_partitions(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        let _ = num_partitions;
        Ok(None)
    }
}
