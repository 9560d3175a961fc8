//! Compaction apart from the barriers: once a partition's chain is past its policy's bounds,
//! a new base is built from the chain's stored segments beside the processing, and the next
//! barrier's index starts from it. A barrier then only ever takes a delta of what changed, so a
//! checkpoint's duration does not jump every sixteen checkpoints to the time of writing every
//! partition's whole state, as it did when the barrier itself took the base.
//!
//! ```text
//! delta stored, chain past its bounds --start--> (one compaction a process at a time, nice 19)
//!    base + deltas read from the store --LoadedState::merge_segments--> put chk-n/base-pQ-NONCE
//!    (n: the checkpoint of the last segment replaced)                     --> ready
//! next barrier (not one that must keep the chain, see DeltaBarriers)
//!    take ready --PartitionChain::rebase--> index = [base@n, deltas after n..., this delta]
//! ```
//!
//! Why the file lives in checkpoint `n`: until the chain is rebased, every index written
//! refers to `n`'s delta, so retention keeps `n`'s directory; from the rebase on the indexes refer
//! to the base itself. A compaction whose chain moved on (reset, a base taken at a barrier,
//! the partition handed over, the attempt cancelled) leaves a file nothing refers to, which
//! retention deletes with its checkpoint.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::state_writer;
use crate::checkpoint::{compacted_name, CheckpointStore, Segment, StateIndex};
use crate::dataflow::plan::ErasedPlan;
use crate::dataflow::DataflowError;
use crate::observe::WorkerMetrics;

/// Compactions at once, process-wide: one. A compaction holds a second copy of a partition's
/// state while it runs and takes a core from the processing; one at a time bounds both, and the
/// chains only grow a little longer meanwhile (up to
/// [`COMPACTION_LAG`](crate::checkpoint::COMPACTION_LAG) times their bounds).
static COMPACTIONS: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(1));

/// A base built apart: it replaces the segments `replaced`, a prefix of the chain.
#[derive(Debug)]
pub(crate) struct Compacted {
    pub(crate) replaced: StateIndex,
    pub(crate) base: Segment,
}

/// Compacts one partition's chain apart from its barriers (see the module documentation).
/// Cloned into the write of each segment, which starts a compaction once the segment is stored.
#[derive(Clone)]
pub(crate) struct Compactor {
    plan: Arc<dyn ErasedPlan>,
    store: Arc<dyn CheckpointStore>,
    partition: usize,
    cancel: CancellationToken,
    /// A compaction of this partition is running or waiting for its turn.
    running: Arc<AtomicBool>,
    ready: Arc<Mutex<Option<Compacted>>>,
    metrics: WorkerMetrics,
}

impl Compactor {
    /// The compactor of partition `partition`, whose state `plan` loads, in `store`; nothing is
    /// started or written once `cancel` is cancelled. Each compaction is counted in `metrics`.
    pub(crate) fn new(
        plan: Arc<dyn ErasedPlan>,
        store: Arc<dyn CheckpointStore>,
        partition: usize,
        cancel: CancellationToken,
        metrics: WorkerMetrics,
    ) -> Self {
        Compactor {
            plan,
            store,
            partition,
            cancel,
            running: Arc::new(AtomicBool::new(false)),
            ready: Arc::new(Mutex::new(None)),
            metrics,
        }
    }

    /// Starts compacting `index`, whose segments are all stored, unless a compaction of the
    /// partition is already under way or done and not yet taken (the next barrier rebases on
    /// it; another now would only redo it).
    pub(crate) fn start(&self, index: StateIndex) {
        if self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.ready.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            self.running.store(false, Ordering::Release);
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_turn) = COMPACTIONS.acquire().await else {
                this.running.store(false, Ordering::Release);
                return;
            };
            if !this.cancel.is_cancelled() {
                let (plan, store, q, cancel) = (
                    Arc::clone(&this.plan),
                    Arc::clone(&this.store),
                    this.partition,
                    this.cancel.clone(),
                );
                let replaced = index.clone();
                let started = Instant::now();
                match in_background(move || compact(plan.as_ref(), store.as_ref(), q, &replaced, &cancel))
                    .await
                {
                    Ok(Some(base)) => {
                        this.metrics.compacted(base.file.size, started.elapsed());
                        tracing::debug!(
                            partition = q,
                            replaced = index.segments.len(),
                            at = base.checkpoint.0,
                            bytes = base.file.size,
                            compact_ms = started.elapsed().as_millis() as u64,
                            "state compacted apart"
                        );
                        let done = Compacted {
                            replaced: index,
                            base,
                        };
                        *this.ready.lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                    }
                    Ok(None) => {}
                    // The chain goes on growing; a barrier takes a base once it is too long.
                    Err(e) => {
                        this.metrics.compaction_failed();
                        tracing::warn!(partition = q, error = %e, "cannot compact state apart");
                    }
                }
            }
            this.running.store(false, Ordering::Release);
        });
    }

    /// The base built since the last call, if one is ready.
    pub(crate) fn take(&self) -> Option<Compacted> {
        self.ready.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Builds the base that replaces `index`: its segments, read and merged by the state `plan`
/// loads (streamed, without a table of the whole state: `dataflow/state/merge.rs`), stored in
/// the checkpoint of the last of them. `None` when the attempt was cancelled before the write.
fn compact(
    plan: &dyn ErasedPlan,
    store: &dyn CheckpointStore,
    q: usize,
    index: &StateIndex,
    cancel: &CancellationToken,
) -> Result<Option<Segment>, DataflowError> {
    let Some(last) = index.segments.last() else {
        return Ok(None);
    };
    let at = last.checkpoint;
    let state = plan
        .load_state(q)?
        .ok_or_else(|| DataflowError::InvalidJob("this job cannot load partition state apart".to_string()))?;
    let segments = state_writer::read_segments(store, at.0, index, 0)?;
    let bytes = state.merge_segments(&index.layers(0, &segments))?;
    drop(segments);
    if cancel.is_cancelled() {
        return Ok(None);
    }
    let name = compacted_name(q, nonce()?);
    let file = (store.put(at, &name, &bytes)).map_err(|e| {
        DataflowError::Exchange(format!("storing a compacted base in checkpoint {at:?}: {e}"))
    })?;
    Ok(Some(Segment { checkpoint: at, file }))
}

/// Runs `f` on a thread of its own at the lowest CPU priority, so that a compaction takes only
/// the CPU the processing leaves (when the processing needs every core, the compaction waits and
/// the chain grows, up to the lag at which a barrier takes the base itself). A panic in `f`
/// comes back as an error.
async fn in_background<T, F>(f: F) -> Result<T, DataflowError>
where
    F: FnOnce() -> Result<T, DataflowError> + Send + 'static,
    T: Send + 'static,
{
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("swd-compaction".to_string())
        .spawn(move || {
            lowest_priority();
            let _ = done.send(super::panics::guarded(f));
        })
        .map_err(|e| DataflowError::Exchange(format!("cannot start a compaction thread: {e}")))?;
    result.await.unwrap_or(Err(DataflowError::Cancelled))
}

/// Lowers the calling thread's priority to nice 19; on Linux a thread is a task of its own,
/// so `setpriority(PRIO_PROCESS, tid)` renices it alone. Where that fails (a sandbox without
/// the call) the compaction runs at the usual priority.
#[cfg(target_os = "linux")]
fn lowest_priority() {
    let _ = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19);
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

/// A random name suffix (see [`compacted_name`]).
fn nonce() -> Result<u64, DataflowError> {
    let bytes = crate::security::random_bytes()
        .ok_or_else(|| DataflowError::Encoding("no randomness for a compacted base's name".to_string()))?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointId, LocalDirStore, MemoryStore, SegmentKind};
    use crate::dataflow::sinks::CollectorSink;
    use crate::worker::test_jobs::{only_partition, stored_chain, word_count};

    /// What a receiver restored from `index` emits.
    fn restored(
        job: &crate::dataflow::Job,
        sink: &CollectorSink<(String, u64)>,
        store: &dyn CheckpointStore,
        index: &StateIndex,
    ) -> Vec<(String, u64)> {
        let mut receiver = job.plan.open_receiver(&only_partition(2)).unwrap();
        let at = index.segments.last().unwrap().checkpoint.0;
        state_writer::apply_segments(store, at, index, 0, receiver.as_mut()).unwrap();
        receiver.finish().unwrap();
        let mut got = sink.collected();
        got.sort();
        got
    }

    async fn compacted(compactor: &Compactor) -> Compacted {
        let deadline = Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(done) = compactor.take() {
                return done;
            }
            assert!(Instant::now() < deadline, "no compaction within 30 s");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_chain_past_its_bounds_is_compacted_apart_into_one_base_with_the_same_state() {
        let sink = CollectorSink::new();
        let job = word_count(&sink);
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let (mut chain, expected) = stored_chain(&job, store.as_ref(), 65);
        assert!(
            chain.wants_compaction(),
            "64 small deltas: past the bounds of a compaction apart"
        );
        assert_eq!(
            chain.next_kind_apart(None),
            SegmentKind::Delta,
            "the barrier still takes a delta"
        );
        let before = chain.index().unwrap().clone();

        let metrics = WorkerMetrics::default();
        let compactor = Compactor::new(
            Arc::clone(&job.plan),
            Arc::clone(&store),
            0,
            CancellationToken::new(),
            metrics.clone(),
        );
        compactor.start(before.clone());
        let done = compacted(&compactor).await;
        let text = metrics.render(&crate::worker::WorkerSnapshot::default());
        assert!(text.contains("swd_worker_compactions_total 1\n"), "{text}");
        let bytes = format!("swd_worker_compacted_bytes_total {}\n", done.base.file.size);
        assert!(text.contains(&bytes), "{text}");
        assert_eq!(done.replaced, before);
        assert_eq!(
            done.base.checkpoint,
            CheckpointId(65),
            "stored with the last segment it replaces"
        );
        assert!(
            done.base.file.name.starts_with("base-p00000-"),
            "{}",
            done.base.file.name
        );
        assert_eq!(
            store.get_listed(CheckpointId(65), &done.base.file).unwrap().len() as u64,
            done.base.file.size
        );

        // Until a barrier takes it, another delta's write starts no second compaction.
        *compactor.ready.lock().unwrap() = Some(Compacted {
            replaced: done.replaced.clone(),
            base: done.base.clone(),
        });
        compactor.start(before.clone());
        assert!(!compactor.running.load(Ordering::Acquire));
        assert!(compactor.take().is_some());

        // The next barrier's delta (checkpoint 66) builds on the compacted base.
        assert!(chain.rebase(&done.replaced, done.base.clone()));
        assert!(!chain.wants_compaction());
        let index = chain.index().unwrap().clone();
        assert_eq!(index.segments, vec![done.base.clone()]);
        assert!(index.referenced_bytes() < before.referenced_bytes());
        assert_eq!(
            restored(&job, &sink, store.as_ref(), &index),
            expected,
            "the compacted base restores the same state"
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_compaction_runs_at_the_lowest_priority_on_a_thread_of_its_own() {
        use rustix::{process::getpriority_process, thread::gettid};
        let here = gettid();
        let before = getpriority_process(Some(here)).unwrap();
        let (nice, there) = in_background(|| Ok((getpriority_process(Some(gettid())), gettid())))
            .await
            .unwrap();
        assert_ne!(there, here);
        assert_eq!(nice.unwrap(), 19);
        assert_eq!(
            getpriority_process(Some(here)).unwrap(),
            before,
            "the caller keeps its priority"
        );
    }

    #[tokio::test]
    async fn a_cancelled_attempt_writes_no_compacted_base() {
        let job = word_count(&CollectorSink::new());
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn CheckpointStore> = Arc::new(LocalDirStore::new(dir.path()).unwrap());
        let (chain, _) = stored_chain(&job, store.as_ref(), 17);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let compactor = Compactor::new(
            Arc::clone(&job.plan),
            Arc::clone(&store),
            0,
            cancel,
            WorkerMetrics::default(),
        );
        compactor.start(chain.index().unwrap().clone());
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while compactor.running.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the compaction never ended");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(compactor.take().is_none());
        let files: Vec<String> = std::fs::read_dir(dir.path().join("chk-0000000017"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(files.contains(&"index-p00000".to_string()), "{files:?}");
        assert!(!files.iter().any(|f| f.starts_with("base-p")), "{files:?}");
    }

    #[tokio::test]
    async fn a_segment_that_cannot_be_read_leaves_the_chain_as_it_is() {
        let job = word_count(&CollectorSink::new());
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryStore::new());
        let (chain, _) = stored_chain(&job, store.as_ref(), 17);
        store.delete_checkpoint(CheckpointId(5)).unwrap();
        let compactor = Compactor::new(
            Arc::clone(&job.plan),
            Arc::clone(&store),
            0,
            CancellationToken::new(),
            WorkerMetrics::default(),
        );
        compactor.start(chain.index().unwrap().clone());
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while compactor.running.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the compaction never ended");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(compactor.take().is_none(), "nothing to rebase on");
        // A later compaction may start again.
        assert!(!compactor.running.load(Ordering::Acquire));
    }
}
