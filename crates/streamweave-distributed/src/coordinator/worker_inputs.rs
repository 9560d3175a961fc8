//! What a registered worker's message means to the engine: the connection task decodes a
//! [`WorkerMessage`] and turns it into the engine's [`Input`]s here (a heartbeat carrying job
//! progress is two), so the engine never sees the wire format.

use super::checkpoint_tracker::PartitionSnapshot;
use super::engine::{ConnId, Input, JobReport};
use crate::protocol::WorkerMessage;

/// The engine's inputs for a message from a registered worker (a second `Register` is refused
/// by the caller before this).
pub(super) fn inputs_of(conn: ConnId, message: WorkerMessage) -> Vec<Input> {
    let job = |report| Input::Job { conn, report };
    match message {
        WorkerMessage::Heartbeat {
            running,
            job: progress,
        } => {
            let mut inputs = vec![Input::Heartbeat { conn, running }];
            inputs.extend(progress.map(|p| job(JobReport::Progress(p))));
            inputs
        }
        WorkerMessage::Ack { generation, running } => vec![Input::Ack {
            conn,
            generation,
            running,
        }],
        WorkerMessage::Leave => vec![Input::Leave { conn }],
        WorkerMessage::PeerUnreachable { peer } => vec![Input::PeerUnreachable { conn, peer }],
        WorkerMessage::CheckpointAck {
            attempt,
            id,
            partition,
            state_file,
            state_bytes,
            state_crc32,
            source_offset,
            source_exhausted,
            source_records,
            ended_sources,
        } => {
            let snapshot = PartitionSnapshot {
                state_file,
                state_bytes,
                state_crc32,
                source_offset: Some(source_offset),
                source_exhausted,
                source_records,
            };
            vec![job(JobReport::CheckpointAck {
                attempt,
                id,
                partition,
                snapshot,
                ended_sources,
            })]
        }
        WorkerMessage::EpochsCommitted {
            attempt,
            upto,
            partitions,
        } => vec![job(JobReport::EpochsCommitted {
            attempt,
            upto,
            partitions,
        })],
        WorkerMessage::MoveStatus {
            attempt,
            checkpoint,
            partitions,
            phase,
        } => vec![job(JobReport::MoveStatus {
            attempt,
            checkpoint,
            partitions,
            phase,
        })],
        WorkerMessage::SourceDone {
            attempt,
            partition,
            records_in,
        } => vec![job(JobReport::SourceDone {
            attempt,
            partition,
            records_in,
        })],
        WorkerMessage::PartitionDone {
            attempt,
            partition,
            records_out,
        } => vec![job(JobReport::PartitionDone {
            attempt,
            partition,
            records_out,
        })],
        WorkerMessage::JobFailed {
            attempt,
            partition,
            error,
            damaged_checkpoint,
            unreachable_peer,
        } => vec![job(JobReport::Failed {
            attempt,
            partition,
            error,
            damaged_checkpoint,
            unreachable_peer,
        })],
        // Refused by the connection before it gets here; nothing for the engine.
        WorkerMessage::Register(_) => Vec::new(),
    }
}
