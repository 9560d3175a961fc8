//! The coordinator's disk writer: one thread that does, in order, the file I/O the actor must
//! not wait for (a slow disk would otherwise hold heartbeats in the queue until their workers
//! are declared failed). Checkpoint commits come back to the actor as
//! [`Input::CheckpointWritten`]; event-log appends are fire and forget.
//!
//! ```text
//! actor --DiskJob::Event / DiskJob::Commit--> writer thread (FIFO: commits never overtake)
//!   ^                                            | events.jsonl append
//!   |                                            | chk-n/_MANIFEST write
//!   +---- Command::Input(CheckpointWritten) -----+ then, once nothing is queued: old
//!                                                  checkpoints deleted (retention)
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
    // Retention owed by the last commit: it runs once nothing else waits (a commit or an event
    // queued meanwhile goes first), so a slow listing of the store (seconds on an object store
    // with long chains) never delays the next commit, and under a quick succession of commits
    // one retention serves several.
    let mut owed: Option<usize> = None;
    loop {
        let job = match queue.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Empty) => {
                if let (Some(keep), Some(store)) = (owed.take(), &store) {
                    retain(store.as_ref(), keep);
                }
                match queue.blocking_recv() {
                    Some(job) => job,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
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
                        owed = Some(retain);
                        commit(store.as_ref(), &manifest).map(|(written_bytes, state_bytes)| {
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
    if let (Some(keep), Some(store)) = (owed, &store) {
        retain(store.as_ref(), keep);
    }
}

/// Deletes what retention no longer needs (keeping the newest `keep` committed checkpoints); a
/// failure is only logged. It lists the store itself, so it also removes aborted checkpoints and
/// an earlier coordinator's leftovers, which the engine never hears of.
fn retain(store: &dyn CheckpointStore, keep: usize) {
    let started = std::time::Instant::now();
    match store.retain(keep) {
        Ok(deleted) => tracing::debug!(
            deleted = deleted.len(),
            retain_ms = started.elapsed().as_millis() as u64,
            "old checkpoints deleted"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot delete old checkpoints"),
    }
}

/// Writes the manifest (the commit point); retention follows apart ([`retain`], once the
/// writer has nothing else queued), after the commit has been reported. The manifest is created
/// only if absent: a second coordinator on the same store (a split brain) cannot commit the
/// same checkpoint over the first one's, and learns so here.
///
/// Before the commit, the partitions' state indexes are read (a few dozen bytes each) so that
/// the manifest lists every state segment the checkpoint refers to: restore checks them and
/// retention keeps them. Returns the bytes the checkpoint wrote and the bytes of state it refers to.
fn commit(store: &dyn CheckpointStore, manifest: &Manifest) -> Result<(u64, u64), String> {
    let started = std::time::Instant::now();
    let mut manifest = manifest.clone();
    crate::checkpoint::resolve_refs(store, &mut manifest).map_err(|e| e.to_string())?;
    store.commit(&manifest).map_err(|e| e.to_string())?;
    tracing::info!(
        checkpoint = %manifest.id,
        files = manifest.files.len(),
        written_bytes = manifest.written_bytes(),
        state_bytes = manifest.referenced_bytes(),
        commit_ms = started.elapsed().as_millis() as u64,
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
        commit(&store, &manifest).unwrap();
        // The worker's sizes and checksums match what it stored: the checkpoint verifies and
        // each state file reads back as the manifest describes it.
        let read = store.verify(CheckpointId(4)).unwrap();
        assert_eq!(snapshots_of(&read).unwrap(), snapshots);
        for file in &read.files {
            store.get_listed(CheckpointId(4), file).unwrap();
        }
        // A second coordinator committing checkpoint 4 is refused; the first one's stands.
        let other = manifest_of(4, "wordcount".into(), 8, 0, 3, &snapshots);
        let refused = commit(&store, &other).unwrap_err();
        assert!(refused.contains("already committed"), "{refused}");
        assert_eq!(store.manifest(CheckpointId(4)).unwrap().attempt, 7);
    }

    #[test]
    fn a_commit_is_reported_before_its_retention_runs() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

        use crate::checkpoint::hooked::{Hooked, Op};
        use crate::checkpoint::MemoryStore;

        let inner = MemoryStore::new();
        let snapshots: BTreeMap<_, _> = [(0, snapshot(0, b"s"))].into_iter().collect();
        for id in 1..=4 {
            inner.put(CheckpointId(id), "state-p00000", b"s").unwrap();
        }
        // Retention lists the store; the listing is held back until the test lets it go.
        let (open, listings) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (gate, listed) = (Arc::clone(&open), Arc::clone(&listings));
        let store: Arc<dyn CheckpointStore> = Arc::new(Hooked::new(&inner, move |op, _, _| {
            if op == Op::List {
                listed.fetch_add(1, Ordering::SeqCst);
                while !gate.load(Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            Ok(())
        }));
        let (commands, mut reports) = mpsc::channel(64);
        let writer = DiskWriter::start(None, Some(store), commands, None).unwrap();
        let commit = |id: u64| DiskJob::Commit {
            manifest: Box::new(manifest_of(id, "wordcount".into(), 1, 0, 1, &snapshots)),
            retain: 2,
        };
        let mut written = || loop {
            match reports.blocking_recv() {
                Some(Command::Input(Input::CheckpointWritten { id, result })) => return (id, result),
                Some(_) => continue,
                None => panic!("the writer stopped"),
            }
        };
        assert!(writer.submit(commit(1)));
        assert_eq!(written(), (1, Ok(())), "reported before retention");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while listings.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "retention never ran");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Retention is held back in its listing, yet commit 1 was reported already.
        open.store(true, Ordering::Release);
        for id in 2..=4 {
            assert!(writer.submit(commit(id)));
            assert_eq!(written(), (id, Ok(())));
        }
        writer.close().join().unwrap();
        assert_eq!(
            inner.completed().unwrap(),
            vec![CheckpointId(3), CheckpointId(4)],
            "the newest 2 kept"
        );
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
