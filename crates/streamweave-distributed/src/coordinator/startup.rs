//! What a coordinator reads from its data directory before it listens (on a blocking thread,
//! before the actor runs): its epoch (incremented), the event log, the checkpoint store, and
//! the checkpoint its job resumes from when it restarts mid-job.
//!
//! A restore never guesses: the newest intact checkpoint is used (a damaged newest one is
//! skipped for the previous one), and a manifest that is of the same job but lacks an entry
//! for a partition, or has a different number of partitions, fails the start with a clear
//! error instead of restoring some partition from offset 0 (which would duplicate output).

use std::collections::BTreeMap;

use super::checkpoint_tracker::PartitionSnapshot;
use super::disk::snapshots_of;
use super::engine::Engine;
use super::epoch::next_epoch;
use super::event_log::EventLog;
use super::{CoordinatorConfig, CoordinatorError};
use crate::checkpoint::{restore_latest, CheckpointError, CheckpointId, CheckpointStore, LocalDirStore};
use crate::types::PartitionId;

/// A checkpoint to resume from.
pub(crate) struct Resume {
    id: CheckpointId,
    snapshots: BTreeMap<PartitionId, PartitionSnapshot>,
}

/// What the data directory gave.
#[derive(Default)]
pub(crate) struct Prepared {
    /// 0 without a data directory.
    pub(crate) epoch: u64,
    pub(crate) events: Option<EventLog>,
    pub(crate) store: Option<LocalDirStore>,
    resume: Option<Resume>,
    /// The newest checkpoint id in the store, committed or not.
    newest_id: Option<CheckpointId>,
}

impl Prepared {
    /// Seeds the engine: attempt numbering, checkpoint numbering, and the checkpoint to resume.
    pub(crate) fn apply(&mut self, engine: &mut Engine) {
        engine.set_epoch(self.epoch);
        if let Some(id) = self.newest_id {
            engine.checkpoint_ids_above(id.0);
        }
        if let Some(resume) = self.resume.take() {
            tracing::info!(checkpoint = %resume.id, "resuming the job from the last completed checkpoint");
            engine.resume_from_checkpoint(resume.id.0, resume.snapshots);
        }
    }
}

/// Reads (and updates) the data directory; blocking.
pub(crate) fn prepare(config: &CoordinatorConfig) -> Result<Prepared, CoordinatorError> {
    let Some(dir) = &config.data_dir else {
        return Ok(Prepared::default());
    };
    let data_dir_error = |source| CoordinatorError::DataDir {
        path: dir.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(data_dir_error)?;
    let epoch = next_epoch(dir).map_err(data_dir_error)?;
    let events = Some(EventLog::open(dir).map_err(data_dir_error)?);
    let mut prepared = Prepared {
        epoch,
        events,
        ..Prepared::default()
    };
    let Some(store_dir) = config.checkpoint_dir() else {
        return Ok(prepared);
    };
    let restore_error = |source| CoordinatorError::Restore {
        dir: store_dir.clone(),
        source,
    };
    let store = LocalDirStore::new(&store_dir).map_err(restore_error)?;
    prepared.newest_id = store
        .list()
        .map_err(restore_error)?
        .into_iter()
        .map(|l| l.id)
        .max();
    if let Some(job) = &config.job {
        prepared.resume = resume_point(&store, &job.name, config.num_partitions).map_err(restore_error)?;
    }
    prepared.store = Some(store);
    Ok(prepared)
}

/// The checkpoint a restarted coordinator's job resumes from, if any.
fn resume_point(
    store: &LocalDirStore,
    job: &str,
    partitions: usize,
) -> Result<Option<Resume>, CheckpointError> {
    let Some(manifest) = restore_latest(store)? else {
        return Ok(None);
    };
    if manifest.job != job {
        // Another job's checkpoints: they do not describe this job's progress.
        let (checkpoint, stored) = (&manifest.id, &manifest.job);
        tracing::warn!(%checkpoint, job = %stored, "the stored checkpoint is of another job; ignored");
        return Ok(None);
    }
    if manifest.partitions != partitions {
        return Err(CheckpointError::Inconsistent {
            id: manifest.id,
            reason: format!(
                "job {job:?} was checkpointed with {} partitions, this coordinator runs it with {partitions} \
                 (start it with --partitions {}, or on another data directory)",
                manifest.partitions, manifest.partitions
            ),
        });
    }
    let snapshots = snapshots_of(&manifest)?;
    Ok(Some(Resume {
        id: manifest.id,
        snapshots,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::checkpoint::{Manifest, PartitionEntry, StoredFile};
    use crate::dataflow::JobSpec;

    fn config(dir: &Path, partitions: usize) -> CoordinatorConfig {
        CoordinatorConfig {
            num_partitions: partitions,
            data_dir: Some(dir.to_path_buf()),
            checkpoint_interval: Some(std::time::Duration::from_millis(200)),
            job: Some(JobSpec::new("wordcount")),
            ..CoordinatorConfig::default()
        }
    }

    /// Commits checkpoint `id` of a 2-partition word count with entries for `entries`.
    fn commit(config: &CoordinatorConfig, id: u64, entries: &[usize]) {
        let store = LocalDirStore::new(config.checkpoint_dir().unwrap()).unwrap();
        let mut manifest = Manifest::new(CheckpointId(id), "wordcount", 1, 0, 2);
        for &p in entries {
            let state = store
                .put(CheckpointId(id), &format!("state-p{p:05}"), b"counts")
                .unwrap();
            manifest.add_partition(PartitionEntry {
                partition: p,
                state,
                source_offset: 40 + p as u64,
                source_exhausted: false,
                source_records: 4,
            });
        }
        store.commit(&manifest).unwrap();
    }

    #[test]
    fn a_restart_resumes_from_the_newest_checkpoint_with_every_partitions_entry() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 2);
        assert_eq!(prepare(&config).unwrap().epoch, 0);
        commit(&config, 3, &[0, 1]);
        // An uncommitted newer checkpoint (its attempt died before the manifest).
        let store = LocalDirStore::new(config.checkpoint_dir().unwrap()).unwrap();
        store.put(CheckpointId(5), "state-p00000", b"partial").unwrap();
        let prepared = prepare(&config).unwrap();
        assert_eq!(prepared.epoch, 1);
        assert_eq!(prepared.newest_id, Some(CheckpointId(5)));
        let resume = prepared.resume.expect("a checkpoint to resume");
        assert_eq!(resume.id, CheckpointId(3));
        assert_eq!(resume.snapshots[&1].source_offset, Some(41));
        assert_eq!(
            resume.snapshots[&1].state_crc32,
            StoredFile::of("x", b"counts").crc32
        );
    }

    #[test]
    fn a_partition_missing_from_the_manifest_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 2);
        commit(&config, 3, &[0]);
        let Err(error) = prepare(&config) else {
            panic!("a manifest without partition 1 was restored");
        };
        let text = error.to_string();
        assert!(text.contains("no entry for partition 1"), "{text}");
    }

    #[test]
    fn another_partition_count_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        commit(&config(dir.path(), 2), 3, &[0, 1]);
        let Err(error) = prepare(&config(dir.path(), 4)) else {
            panic!("a checkpoint of 2 partitions was restored into 4");
        };
        assert!(error.to_string().contains("--partitions 2"), "{error}");
    }
}
