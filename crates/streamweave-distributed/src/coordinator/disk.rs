//! The coordinator's disk writer: one thread that does, in order, the file I/O the actor must
//! not wait for (a slow disk would otherwise hold heartbeats in the queue until their workers
//! are declared failed). Checkpoint commits come back to the actor as
//! [`Input::CheckpointWritten`]; event-log appends are fire and forget.
//!
//! ```text
//! actor --DiskJob::Event / DiskJob::Commit--> writer thread (FIFO: commits never overtake)
//!   ^                                            | events.jsonl append
//!   |                                            | chk-n/_MANIFEST write, old checkpoints deleted
//!   +---- Command::Input(CheckpointWritten) -----+
//! ```
//!
//! The manifest is built from the workers' acknowledgements (each carries its state file's
//! size and crc32): the coordinator never reads a state file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

use super::checkpoint_tracker::PartitionSnapshot;
use super::commands::Command;
use super::engine::{ClusterEvent, Input};
use super::event_log::EventLog;
use crate::checkpoint::{
    CheckpointError, CheckpointId, CheckpointStore, Manifest, PartitionEntry, StoredFile,
};
use crate::ha::Fence;
use crate::types::{Generation, PartitionId};

/// Work for the writer thread.
pub(crate) enum DiskJob {
    /// Append an event to the event log.
    Event {
        generation: Generation,
        event: ClusterEvent,
    },
    /// Commit a checkpoint by writing its manifest, then keep the newest `retain`.
    Commit { manifest: Box<Manifest>, retain: usize },
}

/// The actor's side of the writer thread. Dropping it lets the thread finish what is queued
/// and end.
pub(crate) struct DiskWriter {
    jobs: mpsc::UnboundedSender<DiskJob>,
    thread: JoinHandle<()>,
}

impl DiskWriter {
    /// Starts the thread; results go to `commands` (the actor's queue).
    pub(crate) fn start(
        events: Option<EventLog>,
        store: Option<Arc<dyn CheckpointStore>>,
        commands: mpsc::Sender<Command>,
        fence: Option<Fence>,
    ) -> std::io::Result<Self> {
        // Unbounded: fed only by the actor, which must never wait; one job per event or
        // checkpoint, both bounded by what the actor handles.
        let (jobs, queue) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("swd-coordinator-disk".to_string())
            .spawn(move || run(queue, events, store, &commands, fence.as_ref()))?;
        Ok(DiskWriter { jobs, thread })
    }

    /// Queues a job; false if the thread is gone (it only ends when this writer is closed).
    pub(crate) fn submit(&self, job: DiskJob) -> bool {
        self.jobs.send(job).is_ok()
    }

    /// Stops taking jobs and returns the thread, which ends once the queued ones are done.
    pub(crate) fn close(self) -> JoinHandle<()> {
        drop(self.jobs);
        self.thread
    }
}

fn run(
    mut queue: mpsc::UnboundedReceiver<DiskJob>,
    mut events: Option<EventLog>,
    store: Option<Arc<dyn CheckpointStore>>,
    commands: &mpsc::Sender<Command>,
    fence: Option<&Fence>,
) {
    while let Some(job) = queue.blocking_recv() {
        match job {
            DiskJob::Event { generation, event } => {
                if let Some(log) = &mut events {
                    log.append(generation, &event);
                }
            }
            DiskJob::Commit { manifest, retain } => {
                let id = manifest.id;
                // High availability: commit only while the lease holds and etcd confirms the
                // leader key, checked just before the (create-if-absent) manifest put, so two
                // leaders never both commit it.
                let confirmed = fence.map_or(Ok(()), |f| f.confirm_commit(id.0));
                let result = match &store {
                    Some(_) if confirmed.is_err() => confirmed,
                    Some(store) => {
                        commit(store.as_ref(), &manifest, retain).map(|(written_bytes, state_bytes)| {
                            let sizes = Input::CheckpointSizes {
                                id: id.0,
                                written_bytes,
                                state_bytes,
                            };
                            let _ = commands.blocking_send(Command::Input(sizes));
                        })
                    }
                    None => Err("checkpoints have no store (no data directory)".to_string()),
                };
                let input = Input::CheckpointWritten { id: id.0, result };
                // The actor is gone when this fails: the coordinator is stopping.
                let _ = commands.blocking_send(Command::Input(input));
            }
        }
    }
}

/// Writes the manifest (the commit point), then deletes what retention no longer needs; a
/// failed deletion is only logged, the checkpoint being committed. This is the one place that
/// decides which checkpoints stay: it lists the store itself, so it also removes aborted
/// checkpoints and an earlier coordinator's leftovers, which the engine never hears of. The
/// manifest is created only if absent: a second coordinator on the same store (a split brain)
/// cannot commit the same checkpoint over the first one's, and learns so here.
///
/// Before the commit, the partitions' state indexes are read (a few dozen bytes each) so that
/// the manifest lists every state segment the checkpoint refers to: restore checks them and
/// retention keeps them. Returns the bytes the checkpoint wrote and the bytes of state it refers to.
fn commit(store: &dyn CheckpointStore, manifest: &Manifest, retain: usize) -> Result<(u64, u64), String> {
    let started = std::time::Instant::now();
    let mut manifest = manifest.clone();
    crate::checkpoint::resolve_refs(store, &mut manifest).map_err(|e| e.to_string())?;
    store.commit(&manifest).map_err(|e| e.to_string())?;
    let commit_ms = started.elapsed().as_millis();
    if let Err(e) = store.retain(retain) {
        tracing::warn!(error = %e, "cannot delete old checkpoints");
    }
    tracing::info!(
        checkpoint = %manifest.id,
        files = manifest.files.len(),
        written_bytes = manifest.written_bytes(),
        state_bytes = manifest.referenced_bytes(),
        commit_ms,
        retain_ms = started.elapsed().as_millis() - commit_ms,
        "checkpoint committed"
    );
    Ok((manifest.written_bytes(), manifest.referenced_bytes()))
}

/// The manifest of checkpoint `id` from every partition's acknowledgement: one typed entry per
/// partition, with the state file's size and checksum as its worker stored it.
pub(crate) fn manifest_of(
    id: u64,
    job: String,
    attempt: u64,
    created_ms: u64,
    partitions: usize,
    snapshots: &BTreeMap<PartitionId, PartitionSnapshot>,
) -> Manifest {
    let mut manifest = Manifest::new(CheckpointId(id), job, attempt, created_ms, partitions);
    for (&partition, snapshot) in snapshots {
        manifest.add_partition(PartitionEntry {
            partition,
            state: StoredFile {
                name: snapshot.state_file.clone(),
                size: snapshot.state_bytes,
                crc32: snapshot.state_crc32,
            },
            source_offset: snapshot.source_offset.unwrap_or(0),
            source_exhausted: snapshot.source_exhausted,
            source_records: snapshot.source_records,
        });
    }
    manifest
}

/// The snapshots a restore resumes from: every partition's entry of `manifest`, checked (a
/// partition without an entry, or an entry that does not match the listed files, is an error,
/// never a default).
pub(crate) fn snapshots_of(
    manifest: &Manifest,
) -> Result<BTreeMap<PartitionId, PartitionSnapshot>, CheckpointError> {
    Ok(manifest
        .partition_entries()?
        .into_iter()
        .map(|entry| {
            (
                entry.partition,
                PartitionSnapshot {
                    state_file: entry.state.name.clone(),
                    state_bytes: entry.state.size,
                    state_crc32: entry.state.crc32,
                    source_offset: Some(entry.source_offset),
                    source_exhausted: entry.source_exhausted,
                    source_records: entry.source_records,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(p: usize, bytes: &[u8]) -> PartitionSnapshot {
        let stored = StoredFile::of(&format!("state-p{p:05}"), bytes);
        PartitionSnapshot {
            state_file: stored.name,
            state_bytes: stored.size,
            state_crc32: stored.crc32,
            source_offset: Some(100 + p as u64),
            source_exhausted: p == 1,
            source_records: 10 * p as u64,
        }
    }

    #[test]
    fn a_manifest_round_trips_the_snapshots_and_commits_without_reading_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::checkpoint::LocalDirStore::new(dir.path()).unwrap();
        let snapshots: BTreeMap<_, _> = (0..3)
            .map(|p| (p, snapshot(p, format!("s{p}").as_bytes())))
            .collect();
        for p in 0..3 {
            store
                .put(
                    CheckpointId(4),
                    &format!("state-p{p:05}"),
                    format!("s{p}").as_bytes(),
                )
                .unwrap();
        }
        let manifest = manifest_of(4, "wordcount".into(), 7, 0, 3, &snapshots);
        commit(&store, &manifest, 2).unwrap();
        // The worker's sizes and checksums match what it stored: the checkpoint verifies and
        // each state file reads back as the manifest describes it.
        let read = store.verify(CheckpointId(4)).unwrap();
        assert_eq!(snapshots_of(&read).unwrap(), snapshots);
        for file in &read.files {
            store.get_listed(CheckpointId(4), file).unwrap();
        }
        // A second coordinator committing checkpoint 4 is refused; the first one's stands.
        let other = manifest_of(4, "wordcount".into(), 8, 0, 3, &snapshots);
        let refused = commit(&store, &other, 2).unwrap_err();
        assert!(refused.contains("already committed"), "{refused}");
        assert_eq!(store.manifest(CheckpointId(4)).unwrap().attempt, 7);
    }

    #[test]
    fn a_manifest_missing_a_partition_is_an_error_not_a_default() {
        let snapshots: BTreeMap<_, _> = [0, 2].into_iter().map(|p| (p, snapshot(p, b"x"))).collect();
        let manifest = manifest_of(4, "wordcount".into(), 7, 0, 3, &snapshots);
        let error = snapshots_of(&manifest).unwrap_err();
        assert!(
            matches!(&error, CheckpointError::Inconsistent { id, .. } if id.0 == 4),
            "{error}"
        );
        assert!(error.to_string().contains("no entry for partition 1"), "{error}");
    }

    #[test]
    fn the_writer_commits_in_order_and_reports_each_result() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(crate::checkpoint::LocalDirStore::new(dir.path()).unwrap());
        let (commands, mut inbox) = mpsc::channel(16);
        let writer = DiskWriter::start(None, Some(store.clone()), commands, None).unwrap();
        for id in [1, 2] {
            let snapshots: BTreeMap<_, _> = [(0, snapshot(0, b"s"))].into();
            store.put(CheckpointId(id), "state-p00000", b"s").unwrap();
            let manifest = manifest_of(id, "job".into(), 1, 0, 1, &snapshots);
            assert!(writer.submit(DiskJob::Commit {
                manifest: Box::new(manifest),
                retain: 2,
            }));
        }
        // A manifest naming an invalid file cannot be committed: reported, not panicked.
        let mut bad = Manifest::new(CheckpointId(3), "job", 1, 0, 1);
        bad.files.push(StoredFile::of("_reserved", b""));
        assert!(writer.submit(DiskJob::Commit {
            manifest: Box::new(bad),
            retain: 2,
        }));
        writer.close().join().unwrap();
        let mut results = Vec::new();
        while let Ok(Command::Input(input)) = inbox.try_recv() {
            if let Input::CheckpointWritten { id, result } = input {
                results.push((id, result.is_ok()));
            }
        }
        assert_eq!(results, [(1, true), (2, true), (3, false)]);
        assert_eq!(store.completed().unwrap(), [CheckpointId(1), CheckpointId(2)]);
    }
}
