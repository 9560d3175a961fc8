//! How the coordinator logs the engine's [`Note`]s (the actor's only output besides messages and
//! disk jobs): one line each, at the level its consequence deserves.

use super::engine::Note;

/// Writes an engine's note to the log.
pub(super) fn log(note: &Note) {
    match note {
        Note::WorkerLeaving { worker, partitions } => {
            tracing::info!(%worker, partitions, "worker leaving: moving its partitions away first")
        }
        Note::MovingPartition { partition, from, to } => {
            tracing::info!(partition, %from, %to, "moving a partition through a checkpoint")
        }
        Note::PreparingMove {
            partitions,
            checkpoint,
        } => tracing::info!(
            ?partitions,
            checkpoint,
            "new owners loading partition state ahead of a move"
        ),
        Note::MoveAbandoned { reason } => {
            tracing::warn!(%reason, "a partition move was abandoned before its barrier; the partitions stay")
        }
        Note::MoveFailed { reason } => {
            tracing::warn!(%reason, "a partition move failed; restarting the job from the last checkpoint")
        }
        Note::TaskFailed {
            worker,
            attempt,
            partition,
            error,
        } => tracing::warn!(%worker, attempt, ?partition, %error, "a job task failed"),
        Note::CheckpointNotWritten { checkpoint, error } => {
            tracing::warn!(checkpoint, %error, "checkpoint not written; the next one will be tried")
        }
        Note::CheckpointAborted { checkpoint, reason } => {
            tracing::info!(checkpoint = %checkpoint, %reason, "checkpoint aborted")
        }
        Note::WorkerUnreachable { worker, reporter } => tracing::warn!(
            %worker,
            %reporter,
            "worker declared failed: its connection closed and a peer cannot reach it"
        ),
        Note::WorkerPortClosed { worker } => tracing::warn!(
            %worker,
            "worker declared failed: its connection closed and nothing listens on its data port"
        ),
        Note::FailingAttempt { attempt, reason } => tracing::warn!(attempt, %reason, "failing the attempt"),
        Note::CheckpointDamaged { checkpoint, error } => {
            tracing::warn!(checkpoint, %error, "a checkpoint is damaged; the job restores an older one")
        }
    }
}
