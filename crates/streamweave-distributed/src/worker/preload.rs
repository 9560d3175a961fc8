//! Loading a partition's state ahead of its move here, while its old owner still runs it, so
//! that the move's pause does not grow with the state (Megaphone, Flink 2.0's disaggregated
//! state): at the move's barrier only the segments written since the load are still to apply.
//!
//! ```text
//! coordinator --PreparePartitions{attempt, checkpoint c, [(p, state file)]}--> this worker
//!   load p's chain at c (base + deltas, segments fetched in parallel) into the plan's
//!   LoadedState, beside the processing (one blocking thread per preparation)
//!   --MoveStatus{c, [p], Preloaded | PreloadFailed}--> coordinator (then the move's barrier m)
//! AdoptPartitions{m}: the receiver takes p's loaded state, applies the segments of m's chain
//!   after the loaded ones (a new base since c: the whole chain), opens its sink around it
//!   --MoveStatus{m, [p], Resumed}-->
//! ```
//!
//! A loaded state belongs to its attempt (dropped with it). A partition prepared again (a move
//! abandoned, then planned anew) builds on what it loaded before where the chain allows.
//! Preparations of an attempt take turns: a move abandoned because its load outlasted the
//! coordinator's patience is planned again while that load still runs (a thread cannot be
//! stopped), and the new preparation waits for it and brings its state forward instead of
//! loading a second copy beside it (at a gigabyte a partition, copies piling up once ran a
//! worker out of memory).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::checkpoint_actor::CheckpointHandle;
use super::state_writer;
use crate::checkpoint::StateIndex;
use crate::dataflow::plan::{ErasedPlan, LoadedState};
use crate::dataflow::DataflowError;
use crate::protocol::{MovePhase, Preload, WorkerMessage};

/// One partition's state loaded ahead of its move here.
pub(crate) struct Preloaded {
    /// The state, as of `checkpoint`.
    pub(crate) state: Box<dyn LoadedState>,
    /// Its chain there: the segments already applied.
    pub(crate) index: StateIndex,
    /// The checkpoint loaded.
    pub(crate) checkpoint: u64,
}

/// The loaded states of an attempt's partitions, by partition (taken at adoption; a small map,
/// locked briefly, never across an await), and the turn its preparations take.
#[derive(Default)]
pub(crate) struct PreloadMap {
    loaded: Mutex<HashMap<usize, Preloaded>>,
    /// Held by the preparation loading (see the module documentation).
    turn: tokio::sync::Mutex<()>,
    /// Preparations waiting for their turn.
    queued: AtomicUsize,
}

impl PreloadMap {
    /// Takes partition `p`'s loaded state, if any.
    pub(crate) fn take(&self, p: usize) -> Option<Preloaded> {
        self.lock().remove(&p)
    }

    /// Drops what was loaded for partitions other than `keep`: one move is prepared at a time,
    /// so those belong to a move that was abandoned (or planned elsewhere since).
    fn keep_only(&self, keep: &[Preload]) {
        self.lock().retain(|p, _| keep.iter().any(|k| k.partition == *p));
    }

    fn put(&self, p: usize, loaded: Preloaded) {
        self.lock().insert(p, loaded);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<usize, Preloaded>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a preparation needs from its attempt.
pub(crate) struct Preparation {
    pub(crate) attempt: u64,
    pub(crate) plan: Arc<dyn ErasedPlan>,
    pub(crate) checkpoints: Option<CheckpointHandle>,
    pub(crate) map: Arc<PreloadMap>,
    pub(crate) reports: mpsc::UnboundedSender<WorkerMessage>,
    pub(crate) cancel: CancellationToken,
}

impl Preparation {
    /// Loads `partitions` from committed checkpoint `checkpoint` and reports the outcome (a
    /// failure abandons the move; it never fails the attempt, whose partitions run elsewhere).
    pub(crate) async fn run(self, checkpoint: u64, partitions: Vec<Preload>) {
        let Preparation {
            attempt,
            plan,
            checkpoints,
            map,
            reports,
            cancel,
        } = self;
        let ids: Vec<usize> = partitions.iter().map(|p| p.partition).collect();
        map.queued.fetch_add(1, Ordering::AcqRel);
        let turn = tokio::select! {
            turn = map.turn.lock() => Some(turn),
            _ = cancel.cancelled() => None,
        };
        map.queued.fetch_sub(1, Ordering::AcqRel);
        let Some(_turn) = turn else {
            return;
        };
        map.keep_only(&partitions);
        let loading = {
            let map = Arc::clone(&map);
            super::blocking::unpooled(move || {
                load_all(plan.as_ref(), checkpoints.as_ref(), &map, checkpoint, &partitions)
            })
        };
        let outcome = tokio::select! {
            outcome = loading => outcome,
            _ = cancel.cancelled() => return,
        };
        let phase = match outcome {
            Ok(()) => MovePhase::Preloaded,
            Err(error) => {
                tracing::warn!(attempt, checkpoint, partitions = ?ids, %error, "cannot load partitions ahead of their move");
                MovePhase::PreloadFailed
            }
        };
        let _ = reports.send(WorkerMessage::MoveStatus {
            attempt,
            checkpoint,
            partitions: ids,
            phase,
        });
    }
}

/// Loads each partition in turn, building on what an earlier preparation loaded.
fn load_all(
    plan: &dyn ErasedPlan,
    checkpoints: Option<&CheckpointHandle>,
    map: &PreloadMap,
    checkpoint: u64,
    partitions: &[Preload],
) -> Result<(), DataflowError> {
    let Some(checkpoints) = checkpoints else {
        return Err(DataflowError::InvalidJob(
            "a partition move in an attempt without checkpoints".to_string(),
        ));
    };
    for p in partitions {
        let started = std::time::Instant::now();
        let mut loaded = match map.take(p.partition) {
            Some(loaded) => loaded,
            None => Preloaded {
                state: plan.load_state(p.partition)?.ok_or_else(|| {
                    DataflowError::InvalidJob(
                        "this job cannot load partition state ahead of a move".to_string(),
                    )
                })?,
                index: StateIndex::default(),
                checkpoint: 0,
            },
        };
        let store = checkpoints.store.as_ref();
        loaded.index = state_writer::load(
            store,
            checkpoint,
            &p.state_file,
            loaded.state.as_mut(),
            Some(&loaded.index),
        )?;
        loaded.checkpoint = checkpoint;
        tracing::info!(
            partition = p.partition,
            checkpoint,
            load_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "partition state loaded ahead of its move"
        );
        map.put(p.partition, loaded);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Condvar;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::checkpoint::hooked::{Hooked, Op};
    use crate::checkpoint::{index_name, CheckpointStore, MemoryStore};
    use crate::dataflow::sinks::CollectorSink;
    use crate::worker::test_jobs::{stored_chain, word_count};

    /// A gate the first read of a partition's base waits at until [`Gated::open`] is called,
    /// counting every such read.
    #[derive(Debug, Default)]
    struct Gated {
        inner: MemoryStore,
        base_reads: AtomicUsize,
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl Gated {
        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.opened.notify_all();
        }

        /// The store behind the gate.
        fn store(self: &Arc<Self>) -> Arc<dyn CheckpointStore> {
            let gate = Arc::clone(self);
            Arc::new(Hooked::new(&self.inner, move |op, _, name| {
                let base = op == Op::Read && name.starts_with("state-p");
                if base && gate.base_reads.fetch_add(1, Ordering::AcqRel) == 0 {
                    let open = gate.open.lock().unwrap();
                    drop(gate.opened.wait_while(open, |open| !*open).unwrap());
                }
                Ok(())
            }))
        }
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_move_prepared_again_while_its_first_load_runs_waits_and_builds_on_it() {
        let job = word_count(&CollectorSink::new());
        let gated = Arc::new(Gated::default());
        let (chain, _) = stored_chain(&job, &gated.inner, 6);
        let store = gated.store();
        let map = Arc::new(PreloadMap::default());
        let (reports, mut reported) = mpsc::unbounded_channel();
        let preparation = || Preparation {
            attempt: 1,
            plan: Arc::clone(&job.plan),
            checkpoints: Some(CheckpointHandle::detached(Arc::clone(&store))),
            map: Arc::clone(&map),
            reports: reports.clone(),
            cancel: CancellationToken::new(),
        };
        let preload = || {
            vec![Preload {
                partition: 0,
                state_file: index_name(0),
            }]
        };
        // The first load (checkpoint 4) is held in its read of the base; the move is abandoned
        // and prepared again at checkpoint 6 meanwhile.
        let first = tokio::spawn(preparation().run(4, preload()));
        until("the first load reading the base", || {
            gated.base_reads.load(Ordering::Acquire) == 1
        })
        .await;
        // Opened however the test ends: a failed wait below must not leave a thread blocked.
        struct OpenOnDrop(Arc<Gated>);
        impl Drop for OpenOnDrop {
            fn drop(&mut self) {
                self.0.open();
            }
        }
        let _open = OpenOnDrop(Arc::clone(&gated));
        let second = tokio::spawn(preparation().run(6, preload()));
        until("the second preparation queued", || {
            map.queued.load(Ordering::Acquire) == 1
        })
        .await;
        gated.open();
        first.await.unwrap();
        second.await.unwrap();
        for checkpoint in [4, 6] {
            match reported.recv().await {
                Some(WorkerMessage::MoveStatus {
                    checkpoint: c,
                    phase: MovePhase::Preloaded,
                    ..
                }) => assert_eq!(c, checkpoint),
                other => panic!("expected checkpoint {checkpoint} preloaded, got {other:?}"),
            }
        }
        assert_eq!(
            gated.base_reads.load(Ordering::Acquire),
            1,
            "one copy of the state loaded: the second built on the first"
        );
        let loaded = map.take(0).expect("the partition loaded");
        assert_eq!(loaded.checkpoint, 6);
        assert_eq!(Some(&loaded.index), chain.index());
    }
}
