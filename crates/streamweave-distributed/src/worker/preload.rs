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

use std::collections::HashMap;
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
/// locked briefly, never across an await).
#[derive(Default)]
pub(crate) struct PreloadMap(Mutex<HashMap<usize, Preloaded>>);

impl PreloadMap {
    /// Takes partition `p`'s loaded state, if any.
    pub(crate) fn take(&self, p: usize) -> Option<Preloaded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&p)
    }

    /// Drops what was loaded for partitions other than `keep`: one move is prepared at a time,
    /// so those belong to a move that was abandoned (or planned elsewhere since).
    pub(crate) fn keep_only(&self, keep: &[Preload]) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|p, _| keep.iter().any(|k| k.partition == *p));
    }

    fn put(&self, p: usize, loaded: Preloaded) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(p, loaded);
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
