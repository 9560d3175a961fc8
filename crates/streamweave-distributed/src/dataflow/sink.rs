//! Sinks: where a job's results go. Each partition writes through its own [`SinkWriter`] and
//! commits it once the partition's results are complete; nothing a sink writes before `commit`
//! may look like final output.

use super::DataflowError;

/// Which partition and attempt a sink writer serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkContext {
    /// The partition, in `0..num_partitions`.
    pub partition: usize,
    /// The number of partitions `P`.
    pub num_partitions: usize,
    /// The job attempt (it grows with every restart), so attempts never share temporary files.
    pub attempt: u64,
}

/// A destination for a job's records.
pub trait Sink: Send + Sync + 'static {
    /// The records it takes.
    type Item: Send + 'static;

    /// Opens the writer of one partition for one attempt.
    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<Self::Item>>, DataflowError>;

    /// Checks that the sink can be written (for example that an output directory is empty),
    /// before a job starts.
    fn validate(&self) -> Result<(), DataflowError> {
        Ok(())
    }

    /// Phase two of the two-phase commit: makes partition `partition`'s pre-committed epochs
    /// up to and including `upto` final. Must be idempotent: it is repeated after a crash
    /// between a checkpoint's completion and the sinks' commit.
    fn commit_epochs(&self, _partition: usize, _upto: u64) -> Result<(), DataflowError> {
        Ok(())
    }

    /// Recovery from checkpoint `after` (0: the beginning): throws away what partition
    /// `partition` wrote in later epochs, pre-committed or even committed (a damaged newer
    /// checkpoint was skipped), since the recovered attempt produces it again.
    fn discard_after(&self, _partition: usize, _after: u64) -> Result<(), DataflowError> {
        Ok(())
    }
}

/// Writes one partition's records; runs on a blocking thread.
pub trait SinkWriter<T>: Send {
    /// Writes one record.
    fn write(&mut self, item: T) -> Result<(), DataflowError>;

    /// Makes what was written final (for files: flush, then rename into place).
    fn commit(self: Box<Self>) -> Result<(), DataflowError>;

    /// Phase one of the two-phase commit at checkpoint barrier `epoch`: makes what was written
    /// since the previous barrier durable under a name that is not final output; the sink's
    /// [`Sink::commit_epochs`] makes it final once the checkpoint is complete. Sinks that cannot
    /// take part (stdout) keep the default, which does nothing.
    fn pre_commit(&mut self, _epoch: u64) -> Result<(), DataflowError> {
        Ok(())
    }
}
