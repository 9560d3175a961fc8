//! [`CollectorSink`]: keeps committed records in memory, for tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};

/// Collects records in memory. A writer's records become visible when it commits; a later
/// commit of the same partition replaces the earlier one (as a restarted attempt's part file
/// replaces the aborted one's), and uncommitted writers leave no trace. Clones share the
/// records.
pub struct CollectorSink<T> {
    // Committed records by partition. A lock is fine: it is only taken once per commit and by
    // `collected`, never across an `.await`, and only guards moving a `Vec` in or cloning out.
    committed: Arc<Mutex<BTreeMap<usize, Vec<T>>>>,
    /// Two-phase output by partition and epoch: (committed?, records). Same lock discipline.
    epochs: Arc<Mutex<Epochs<T>>>,
}

/// Pre-committed output by partition, then epoch: (committed?, records).
type Epochs<T> = BTreeMap<usize, BTreeMap<u64, (bool, Vec<T>)>>;

impl<T: Clone> CollectorSink<T> {
    /// An empty collector.
    pub fn new() -> Self {
        Self {
            committed: Arc::new(Mutex::new(BTreeMap::new())),
            epochs: Arc::new(Mutex::new(BTreeMap::new())),
        }
    }

    /// The committed records of all partitions, by partition, each in write order.
    pub fn collected(&self) -> Vec<T> {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let epochs = self
            .epochs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let partitions: std::collections::BTreeSet<usize> =
            committed.keys().chain(epochs.keys()).copied().collect();
        let mut out = Vec::new();
        for p in partitions {
            out.extend(committed.get(&p).into_iter().flatten().cloned());
            let done = epochs
                .get(&p)
                .into_iter()
                .flat_map(|e| e.values())
                .filter(|(c, _)| *c);
            out.extend(done.flat_map(|(_, records)| records.iter().cloned()));
        }
        out
    }
}

impl<T: Clone> Default for CollectorSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for CollectorSink<T> {
    fn clone(&self) -> Self {
        Self {
            committed: Arc::clone(&self.committed),
            epochs: Arc::clone(&self.epochs),
        }
    }
}

impl<T> std::fmt::Debug for CollectorSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CollectorSink")
    }
}

impl<T: Clone + Send + 'static> Sink for CollectorSink<T> {
    type Item = T;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, DataflowError> {
        Ok(Box::new(CollectorWriter {
            sink: self.clone(),
            partition: ctx.partition,
            records: Vec::new(),
        }))
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        let mut epochs = self
            .epochs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (_, (committed, _)) in epochs.entry(partition).or_default().range_mut(..=upto) {
            *committed = true;
        }
        Ok(())
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        let mut epochs = self
            .epochs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(of_partition) = epochs.get_mut(&partition) {
            // Everything after `after` is produced again by the recovered attempt.
            of_partition.retain(|epoch, _| *epoch <= after);
        }
        Ok(())
    }
}

/// One partition's pending records.
struct CollectorWriter<T> {
    sink: CollectorSink<T>,
    partition: usize,
    records: Vec<T>,
}

impl<T: Send> SinkWriter<T> for CollectorWriter<T> {
    fn write(&mut self, item: T) -> Result<(), DataflowError> {
        self.records.push(item);
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), DataflowError> {
        let mut committed = self
            .sink
            .committed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        committed.insert(self.partition, self.records);
        Ok(())
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        if self.records.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.records);
        let mut epochs = self
            .sink
            .epochs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        epochs
            .entry(self.partition)
            .or_default()
            .insert(epoch, (false, records));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(partition: usize, attempt: u64) -> SinkContext {
        SinkContext {
            partition,
            num_partitions: 2,
            attempt,
        }
    }

    #[test]
    fn records_appear_on_commit_only() {
        let sink = CollectorSink::new();
        let handle = sink.clone();
        let mut one = sink.open(&ctx(1, 0)).unwrap();
        let mut zero = sink.open(&ctx(0, 0)).unwrap();
        one.write("b").unwrap();
        zero.write("a").unwrap();
        assert!(handle.collected().is_empty());
        one.commit().unwrap();
        assert_eq!(handle.collected(), ["b"]);
        zero.commit().unwrap();
        assert_eq!(handle.collected(), ["a", "b"]);
    }

    #[test]
    fn pre_committed_epochs_count_once_committed_and_recovery_drops_later_ones() {
        let sink = CollectorSink::new();
        let mut writer = sink.open(&ctx(0, 1)).unwrap();
        writer.write(1).unwrap();
        writer.pre_commit(1).unwrap();
        writer.write(2).unwrap();
        writer.pre_commit(2).unwrap();
        assert!(sink.collected().is_empty());
        sink.commit_epochs(0, 1).unwrap();
        assert_eq!(sink.collected(), [1]);
        sink.discard_after(0, 1).unwrap();
        sink.commit_epochs(0, u64::MAX).unwrap();
        assert_eq!(sink.collected(), [1], "epoch 2 was discarded by the recovery");
    }

    #[test]
    fn only_committed_attempts_count() {
        let sink = CollectorSink::new();
        let mut aborted = sink.open(&ctx(0, 1)).unwrap();
        aborted.write(1).unwrap();
        drop(aborted);
        let mut first = sink.open(&ctx(0, 2)).unwrap();
        first.write(2).unwrap();
        first.commit().unwrap();
        let mut retry = sink.open(&ctx(0, 3)).unwrap();
        retry.write(3).unwrap();
        retry.write(4).unwrap();
        assert_eq!(sink.collected(), [2]);
        retry.commit().unwrap();
        assert_eq!(sink.collected(), [3, 4]);
    }
}
