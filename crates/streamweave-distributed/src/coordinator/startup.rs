//! What a coordinator reads from its data directory and checkpoint store before it listens (on
//! a blocking thread, before the actor runs): its epoch (incremented), the event log, the
//! checkpoint store (opened by URL), and the checkpoints its job resumes from when it restarts
//! mid-job: the newest intact one, and older intact ones to fall back to should a worker find
//! the newest damaged when it reads its state.
//!
//! "Intact" is checked without reading any state: the manifest, and each listed file's
//! presence and size (on an object store, one HEAD each). A restore never guesses: the newest
//! intact checkpoint is used (a damaged newest one is skipped for the previous one), and a
//! manifest that is of the same job but lacks an entry
//! for a partition, or has a different number of partitions, fails the start with a clear
//! error instead of restoring some partition from offset 0 (which would duplicate output).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::checkpoint_tracker::PartitionSnapshot;
use super::disk::snapshots_of;
use super::engine::Engine;
use super::epoch::next_epoch;
use super::event_log::EventLog;
use super::{CoordinatorConfig, CoordinatorError};
use crate::checkpoint::{open_store, CheckpointError, CheckpointId, CheckpointStore};
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
    pub(crate) store: Option<Arc<dyn CheckpointStore>>,
    /// Oldest first: the last is resumed, the others are fallbacks.
    resume: Vec<Resume>,
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
        if let Some(resume) = self.resume.last() {
            tracing::info!(checkpoint = %resume.id, "resuming the job from the last completed checkpoint");
        }
        for resume in std::mem::take(&mut self.resume) {
            engine.resume_from_checkpoint(resume.id.0, resume.snapshots);
        }
    }
}

/// Reads (and updates) the data directory and opens the checkpoint store; blocking.
pub(crate) fn prepare(config: &CoordinatorConfig) -> Result<Prepared, CoordinatorError> {
    let mut prepared = Prepared::default();
    if let Some(dir) = &config.data_dir {
        let data_dir_error = |source| CoordinatorError::DataDir {
            path: dir.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(data_dir_error)?;
        prepared.epoch = next_epoch(dir).map_err(data_dir_error)?;
        prepared.events = Some(EventLog::open(dir).map_err(data_dir_error)?);
    }
    let Some(url) = config.checkpoint_store() else {
        return Ok(prepared);
    };
    let restore_error = |source| CoordinatorError::Restore {
        store: url.to_string(),
        source,
    };
    let store = open_store(&url).map_err(restore_error)?;
    prepared.newest_id = store
        .list()
        .map_err(restore_error)?
        .into_iter()
        .map(|l| l.id)
        .max();
    if let Some(job) = &config.job {
        prepared.resume = resume_points(
            store.as_ref(),
            &job.name,
            config.num_partitions,
            config.checkpoint_retain,
        )
        .map_err(restore_error)?;
    }
    prepared.store = Some(store);
    Ok(prepared)
}

/// The checkpoints a restarted coordinator's job resumes from, oldest first: the newest intact
/// one last, and up to `keep - 1` older intact ones of the same job before it.
fn resume_points(
    store: &dyn CheckpointStore,
    job: &str,
    partitions: usize,
    keep: usize,
) -> Result<Vec<Resume>, CheckpointError> {
    let mut found = Vec::new();
    for id in store.completed()?.into_iter().rev() {
        if found.len() >= keep.max(1) {
            break;
        }
        let manifest = match store.verify(id) {
            Ok(manifest) => manifest,
            Err(error) if error.is_damage() => {
                tracing::warn!(checkpoint = %id, %error, "skipping a damaged checkpoint");
                continue;
            }
            Err(error) => return Err(error),
        };
        let newest = found.is_empty();
        if manifest.job != job {
            if newest {
                // Another job's checkpoints: they do not describe this job's progress.
                let (checkpoint, stored) = (&manifest.id, &manifest.job);
                tracing::warn!(%checkpoint, job = %stored, "the stored checkpoint is of another job; ignored");
            }
            break;
        }
        if manifest.partitions != partitions {
            if !newest {
                break;
            }
            return Err(CheckpointError::Inconsistent {
                id: manifest.id,
                reason: format!(
                    "job {job:?} was checkpointed with {} partitions, this coordinator runs it with {partitions} \
                     (start it with --partitions {}, or on another checkpoint store)",
                    manifest.partitions, manifest.partitions
                ),
            });
        }
        let snapshots = match snapshots_of(&manifest) {
            Ok(snapshots) => snapshots,
            Err(error) if newest => return Err(error),
            // An older checkpoint is only a fallback: without it, the chain ends here.
            Err(_) => break,
        };
        found.push(Resume {
            id: manifest.id,
            snapshots,
        });
    }
    found.reverse();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::checkpoint::{LocalDirStore, Manifest, PartitionEntry, StoredFile};
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
        let store = LocalDirStore::new(config.data_dir.as_ref().unwrap().join("checkpoints")).unwrap();
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
        let store = LocalDirStore::new(config.data_dir.as_ref().unwrap().join("checkpoints")).unwrap();
        store.put(CheckpointId(5), "state-p00000", b"partial").unwrap();
        let prepared = prepare(&config).unwrap();
        assert_eq!(prepared.epoch, 1);
        assert_eq!(prepared.newest_id, Some(CheckpointId(5)));
        let resume = prepared.resume.last().expect("a checkpoint to resume");
        assert_eq!(resume.id, CheckpointId(3));
        assert_eq!(resume.snapshots[&1].source_offset, Some(41));
        assert_eq!(
            resume.snapshots[&1].state_crc32,
            StoredFile::of("x", b"counts").crc32
        );
    }

    #[test]
    fn older_intact_checkpoints_are_kept_to_fall_back_to() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), 2);
        for id in [2, 3, 4, 5] {
            commit(&config, id, &[0, 1]);
        }
        // Checkpoint 5 lost a state file: skipped without reading any state.
        let store = LocalDirStore::new(dir.path().join("checkpoints")).unwrap();
        std::fs::remove_file(store.object_path(CheckpointId(5), "state-p00001")).unwrap();
        let prepared = prepare(&config).unwrap();
        let ids: Vec<u64> = prepared.resume.iter().map(|r| r.id.0).collect();
        assert_eq!(
            ids,
            [2, 3, 4],
            "the newest intact last, up to checkpoint_retain of them"
        );
    }

    #[test]
    fn checkpoints_on_an_object_store_need_no_data_directory() {
        let config = CoordinatorConfig {
            data_dir: None,
            checkpoint_store: Some("memory://startup-test/ckpt".into()),
            ..config(Path::new("/nonexistent"), 2)
        };
        let url = config.checkpoint_store().unwrap();
        let store = open_store(&url).unwrap();
        let mut manifest = Manifest::new(CheckpointId(7), "wordcount", 1, 0, 2);
        for p in 0..2 {
            let state = store
                .put(CheckpointId(7), &format!("state-p{p:05}"), b"c")
                .unwrap();
            manifest.add_partition(PartitionEntry {
                partition: p,
                state,
                source_offset: 1,
                source_exhausted: false,
                source_records: 1,
            });
        }
        store.commit(&manifest).unwrap();
        let prepared = prepare(&config).unwrap();
        assert_eq!(prepared.epoch, 0);
        assert_eq!(prepared.resume.last().map(|r| r.id), Some(CheckpointId(7)));
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
