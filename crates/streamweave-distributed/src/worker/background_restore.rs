//! Recovery and adoption that do not wait for the state: a partition whose stage merges
//! restored state (counts, reductions: [`Receiver::merges_restored`]) starts applying records
//! to an empty state at once, while its checkpointed state loads on a blocking thread beside
//! it; the two are merged at the first barrier (or the end of the input), which waits for the
//! load if it has not finished. Records flow again after a failure without first reading every
//! byte of state, and the state is exactly what a restore-then-apply would have built.
//! Barriers that come while the state still loads do not wait for it: each writes an overlay,
//! the partial state's entries changed since the last, on the restored chain
//! (`checkpoint/chain.rs`), so checkpoints go on committing during a long load. A
//! partition moved here with its state loaded ahead (`preload.rs`) does the same with the
//! segments written since that load, so its pause does not include applying them.
//!
//! ```text
//! open: empty receiver --start--> load_state (or the preloaded state) + base and deltas
//! batches --> receiver (partial accumulators)
//! barrier, still loading --> overlay of the partial state on the restored chain (no wait)
//! barrier once loaded / end --finish: await the load, merge_restored (blocking pool)--> receiver, chain
//! ```

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::blocking;
use super::preload::Preloaded;
use super::state_writer;
use crate::checkpoint::{ChainPolicy, CheckpointStore, PartitionChain, StateIndex};
use crate::dataflow::plan::{ErasedPlan, LoadedState, Receiver};
use crate::dataflow::DataflowError;

/// Loads at once, process-wide: one per core, and apart from the blocking pool, so that long
/// loads never hold up the sink opens, seals and state writes of the partitions that run.
static LOADS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// The state, its chain, and how long loading took.
type Loaded = (Box<dyn LoadedState>, StateIndex, std::time::Duration);

/// A partition's state loading beside its receiver.
pub(crate) struct BackgroundRestore {
    load: JoinHandle<Result<Loaded, DataflowError>>,
    /// The partition's index in the checkpoint restored, once read (before its segments load);
    /// the sender goes with the load.
    index: watch::Receiver<Option<StateIndex>>,
    partition: usize,
    checkpoint: u64,
}

impl BackgroundRestore {
    /// Starts loading partition `partition`'s state file `file` of checkpoint `checkpoint`: from
    /// nothing, or on top of `preloaded` (only the segments it lacks are read).
    pub(crate) fn start(
        plan: &Arc<dyn ErasedPlan>,
        store: &Arc<dyn CheckpointStore>,
        partition: usize,
        checkpoint: u64,
        file: String,
        preloaded: Option<Preloaded>,
    ) -> Self {
        let (plan, store, started) = (Arc::clone(plan), Arc::clone(store), Instant::now());
        let (read, index) = watch::channel(None);
        let load = tokio::spawn(async move {
            // The index first (one small read), outside the turns among the loads: a barrier
            // that comes meanwhile builds its overlay on it (`loading_on`).
            let chain = {
                let (store, file) = (Arc::clone(&store), file.clone());
                blocking::unpooled(move || state_writer::read_chain(store.as_ref(), checkpoint, &file))
                    .await?
            };
            read.send_replace(Some(chain.index().clone()));
            // State loaded ahead lacks a segment or two: that short read needs no turn among the
            // full loads (it is what a moved partition's first barrier waits for).
            let _permit = match preloaded {
                Some(_) => None,
                None => Some(LOADS.acquire().await.map_err(|_| DataflowError::Cancelled)?),
            };
            blocking::unpooled(move || {
                let (mut state, known) = match preloaded {
                    Some(loaded) => (loaded.state, Some(loaded.index)),
                    None => {
                        let state = plan.load_state(partition)?.ok_or_else(|| {
                            DataflowError::InvalidJob(
                                "a job that merges restored state cannot load it".to_string(),
                            )
                        })?;
                        (state, None)
                    }
                };
                let index = chain.apply(store.as_ref(), checkpoint, state.as_mut(), known.as_ref())?;
                Ok((state, index, started.elapsed()))
            })
            .await
        });
        BackgroundRestore {
            load,
            index,
            partition,
            checkpoint,
        }
    }

    /// The checkpoint the state is restored from.
    pub(crate) fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// While the state still loads: the partition's index in the checkpoint restored, for a
    /// barrier to write an overlay on; waits for the index to be read (one small read) if need
    /// be. `None` once loaded (or failed): the barrier then merges, or fails, at no wait.
    pub(crate) async fn loading_on(&self) -> Option<StateIndex> {
        if self.load.is_finished() {
            return None;
        }
        let index = (self.index.clone().wait_for(Option::is_some).await).ok()?.clone();
        index.filter(|_| !self.load.is_finished())
    }

    /// Waits for the load, then merges what `receiver` applied meanwhile on top of it: the
    /// receiver with the whole state, and the partition's chain as restored.
    pub(crate) async fn finish(
        self,
        mut receiver: Box<dyn Receiver>,
    ) -> Result<(Box<dyn Receiver>, PartitionChain), DataflowError> {
        let needed = Instant::now();
        let (state, index, loaded) = match self.load.await {
            Ok(loaded) => loaded?,
            Err(e) if e.is_panic() => return Err(super::panics::panicked(e.into_panic())),
            Err(_) => return Err(DataflowError::Cancelled),
        };
        let (loaded_ms, waited_ms) = (loaded, needed.elapsed());
        let receiver = blocking::run(move || {
            receiver.merge_restored(state)?;
            Ok(receiver)
        })
        .await?;
        tracing::info!(
            partition = self.partition,
            checkpoint = self.checkpoint,
            loaded_ms = loaded_ms.as_millis() as u64,
            waited_ms = waited_ms.as_millis() as u64,
            "partition state restored beside the processing"
        );
        Ok((receiver, PartitionChain::restored(ChainPolicy::default(), index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointId, MemoryStore, SegmentKind};
    use crate::dataflow::sinks::CollectorSink;
    use crate::worker::test_jobs::{counts, only_partition, word_count};

    #[tokio::test]
    async fn records_applied_before_the_state_is_loaded_count_on_top_of_it() {
        let sink = CollectorSink::new();
        let job = word_count(&sink);
        let ctx = only_partition(1);
        // Checkpoint 1 holds a base: a=2, b=1.
        let mut before = job.plan.open_receiver(&ctx).unwrap();
        before.on_batch(counts(&[("a", 2), ("b", 1)])).unwrap();
        let (_, base) = before.snapshot_segment(SegmentKind::Base).unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let file = state_writer::state_name(0);
        store.put(CheckpointId(1), &file, &base).unwrap();

        // The next attempt applies records while the state loads, then merges.
        let mut receiver = job.plan.open_receiver(&only_partition(2)).unwrap();
        assert!(receiver.merges_restored());
        let load = BackgroundRestore::start(&job.plan, &store, 0, 1, file, None);
        receiver.on_batch(counts(&[("a", 5), ("c", 1)])).unwrap();
        let (mut receiver, chain) = load.finish(receiver).await.unwrap();
        assert!(chain.has_chain(), "the chain goes on from the restored base");
        receiver.on_batch(counts(&[("b", 1)])).unwrap();
        assert_eq!(receiver.finish().unwrap(), 3);
        let mut got = sink.collected();
        got.sort();
        assert_eq!(
            got,
            vec![("a".to_string(), 7), ("b".to_string(), 2), ("c".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn a_moved_partition_runs_at_once_and_its_preloaded_state_catches_up_beside_it() {
        use crate::checkpoint::{index_name, segment_name};
        use crate::checkpoint::{ChainPolicy, PartitionChain};

        let sink = CollectorSink::new();
        let job = word_count(&sink);
        let ctx = only_partition(1);
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        // The old owner: a base at checkpoint 1 (a=2, b=1), a delta at 2 (a=3).
        let mut old = job.plan.open_receiver(&ctx).unwrap();
        let mut chain = PartitionChain::new(ChainPolicy::default());
        old.on_batch(counts(&[("a", 2), ("b", 1)])).unwrap();
        let (_, base) = old.snapshot_segment(SegmentKind::Base).unwrap();
        let file = store
            .put(CheckpointId(1), &state_writer::state_name(0), &base)
            .unwrap();
        chain.record(CheckpointId(1), SegmentKind::Base, file);
        old.on_batch(counts(&[("a", 1)])).unwrap();
        let (_, delta) = old.snapshot_segment(SegmentKind::Delta).unwrap();
        let file = store.put(CheckpointId(2), &segment_name(0), &delta).unwrap();
        let index = chain.record(CheckpointId(2), SegmentKind::Delta, file);
        store
            .put(CheckpointId(2), &index_name(0), &index.encode().unwrap())
            .unwrap();

        // The new owner loaded checkpoint 1 ahead; the move's barrier is checkpoint 2.
        let mut state = job.plan.load_state(0).unwrap().unwrap();
        let have = state_writer::load(
            store.as_ref(),
            1,
            &state_writer::state_name(0),
            state.as_mut(),
            None,
        )
        .unwrap();
        assert!(state.merges_restored());
        let preloaded = Preloaded {
            state,
            index: have,
            checkpoint: 1,
        };
        let mut receiver = job.plan.open_receiver(&ctx).unwrap();
        let load = BackgroundRestore::start(&job.plan, &store, 0, 2, index_name(0), Some(preloaded));
        // Records apply before the delta of checkpoint 2 is in.
        receiver.on_batch(counts(&[("a", 10), ("c", 1)])).unwrap();
        let (mut receiver, chain) = load.finish(receiver).await.unwrap();
        assert!(chain.has_chain());
        // The merged entries are changed since checkpoint 2: the next delta holds them.
        let (_, next) = receiver.snapshot_segment(SegmentKind::Delta).unwrap();
        assert!(!next.is_empty());
        assert_eq!(receiver.finish().unwrap(), 3);
        let mut got = sink.collected();
        got.sort();
        assert_eq!(
            got,
            vec![("a".to_string(), 13), ("b".to_string(), 1), ("c".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn the_index_is_known_while_the_load_waits_for_its_turn() {
        use crate::checkpoint::index_name;
        use crate::worker::test_jobs::stored_chain;

        let sink = CollectorSink::new();
        let job = word_count(&sink);
        let memory = MemoryStore::new();
        let (chain, _) = stored_chain(&job, &memory, 3);
        let store: Arc<dyn CheckpointStore> = Arc::new(memory);
        // Every turn among the loads taken: a barrier still learns the chain to build on.
        let turns = LOADS
            .acquire_many(LOADS.available_permits() as u32)
            .await
            .unwrap();
        let load = BackgroundRestore::start(&job.plan, &store, 0, 3, index_name(0), None);
        let index = tokio::time::timeout(std::time::Duration::from_secs(10), load.loading_on())
            .await
            .expect("the index is read outside the turns");
        assert_eq!(index.as_ref(), chain.index());
        drop(turns);
        let receiver = job.plan.open_receiver(&only_partition(2)).unwrap();
        let (_, restored) = load.finish(receiver).await.unwrap();
        assert_eq!(restored.index(), chain.index());
    }

    #[tokio::test]
    async fn a_state_that_cannot_be_read_fails_the_partition_when_it_is_needed() {
        let job = word_count(&CollectorSink::new());
        let ctx = only_partition(2);
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let receiver = job.plan.open_receiver(&ctx).unwrap();
        let load = BackgroundRestore::start(&job.plan, &store, 0, 7, state_writer::state_name(0), None);
        let error = load.finish(receiver).await.err().expect("no checkpoint 7");
        assert!(error.to_string().contains('7'), "{error}");
    }
}
