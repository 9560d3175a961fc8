//! The command task of one job attempt on this worker: it launches the attempt (connecting to
//! the owners, starting the tasks of its partitions), then carries out the coordinator's
//! triggers and adoptions in order, and watches the source and receiver tasks it started
//! (its [`AttemptRun`] owns them in a `JoinSet`).
//!
//! ```text
//! launch -> loop: Trigger{id, moves} -> prepare the moves (connect, routes, leaving marked)
//!                                       -> the checkpoint actor: Trigger{id}
//!                 Prepare{checkpoint} -> load the state of partitions about to move here
//!                 Adopt{checkpoint}  -> start the tasks of the partitions moved here
//!                 a task died        -> end with its failure (the runner reports it)
//!                 cancelled          -> wait for the tasks to stop, end
//! ```
//!
//! A move must have its connections and routes before its barrier is requested, and an
//! adoption must follow the move's preparation: hence one task, in order.

use tokio::sync::mpsc;

use super::job_tasks::{AttemptRun, TaskFailure};
use crate::protocol::{Adoption, PartitionMove, Preload};

/// What the attempt's command task does, in order.
pub(crate) enum Command {
    Trigger {
        id: u64,
        moves: Vec<PartitionMove>,
        /// Partitions whose chains go on with a delta at this barrier (see
        /// [`DeltaBarriers`](super::state_writer::DeltaBarriers)).
        keep_chains: Vec<usize>,
    },
    Prepare {
        checkpoint: u64,
        partitions: Vec<Preload>,
    },
    Adopt {
        checkpoint: u64,
        partitions: Vec<Adoption>,
        ended: Vec<usize>,
    },
}

/// How a task of the runner ended. A failed command task hands back the tasks it owns, so
/// they outlive the failure's report (their ends would report first otherwise).
pub(crate) struct Ended {
    pub(crate) result: Result<(), TaskFailure>,
    /// Dropped once the runner has carried out the core's decision on `result`.
    pub(crate) keep: Option<AttemptRun>,
}

impl Ended {
    pub(crate) fn of(result: Result<(), TaskFailure>) -> Self {
        Ended { result, keep: None }
    }
}

/// The attempt's command task: launches it, then carries out triggers and adoptions in order,
/// watching the source and receiver tasks it started. Cancelled, it waits for them to stop.
pub(crate) async fn run_commands(
    mut run: AttemptRun,
    mine: Vec<usize>,
    restored: u64,
    restore: Vec<(String, u64)>,
    mut queue: mpsc::UnboundedReceiver<Command>,
) -> Ended {
    let cancel = run.shared.cancel.clone();
    let result = async {
        run.launch(&mine, restored, &restore)
            .await
            .map_err(|error| TaskFailure {
                partition: None,
                error,
            })?;
        loop {
            let command = tokio::select! {
                command = queue.recv() => command,
                _ = cancel.cancelled() => None,
                ended = run.next_ended() => {
                    ended?;
                    continue;
                }
            };
            let done = match command {
                None => return Ok(()),
                Some(Command::Trigger {
                    id,
                    moves,
                    keep_chains,
                }) => {
                    let prepared = match moves.is_empty() {
                        true => Ok(()),
                        false => run.prepare_moves(id, &moves).await,
                    };
                    run.shared.delta_barriers.set(id, !moves.is_empty(), keep_chains);
                    if let (Ok(()), Some(checkpoints)) = (&prepared, &run.shared.checkpoints) {
                        checkpoints.trigger(id);
                    }
                    prepared
                }
                Some(Command::Prepare {
                    checkpoint,
                    partitions,
                }) => {
                    run.prepare(checkpoint, partitions);
                    Ok(())
                }
                Some(Command::Adopt {
                    checkpoint,
                    partitions,
                    ended,
                }) => run.adopt(checkpoint, &partitions, &ended),
            };
            done.map_err(|error| TaskFailure {
                partition: None,
                error,
            })?;
        }
    }
    .await;
    match result {
        Ok(()) => {
            run.drain().await;
            Ended::of(Ok(()))
        }
        Err(died) => Ended {
            result: Err(died),
            keep: Some(run),
        },
    }
}
