//! The manifest of a checkpoint: what it contains. Writing it is the checkpoint's commit point,
//! so a checkpoint without one never happened.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{frame, validate_name, CheckpointError, CheckpointId, Segment, MANIFEST_NAME};

/// The manifest format this build writes; it reads every version up to it. Version 1 (no
/// `version` field) had no `refs`; version 2 adds them (incremental checkpoints).
pub const MANIFEST_VERSION: u32 = 2;

fn version_one() -> u32 {
    1
}

/// One data file of a checkpoint, as [`put`](super::CheckpointStore::put) stored it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredFile {
    /// The file's name within the checkpoint (`state-p0003`, `offsets-p0003`).
    pub name: String,
    /// The payload's size in bytes.
    pub size: u64,
    /// The crc32 of the payload.
    pub crc32: u32,
}

impl StoredFile {
    /// The description of `bytes` stored as `name`.
    pub fn of(name: &str, bytes: &[u8]) -> Self {
        Self::of_pieces(name, &[bytes])
    }

    /// The description of the payload made of `pieces`, one after another, stored as `name`.
    ///
    /// ```
    /// use streamweave_distributed::checkpoint::StoredFile;
    /// assert_eq!(StoredFile::of_pieces("f", &[b"ab", b"c"]), StoredFile::of("f", b"abc"));
    /// ```
    pub fn of_pieces(name: &str, pieces: &[&[u8]]) -> Self {
        let mut crc = crc32fast::Hasher::new();
        pieces.iter().for_each(|p| crc.update(p));
        StoredFile {
            name: name.to_string(),
            size: pieces.iter().map(|p| p.len() as u64).sum(),
            crc32: crc.finalize(),
        }
    }
}

/// Where one partition of a job stands in a checkpoint: its state file (also listed, with the
/// same size and checksum, in [`Manifest::files`]) and where its source resumes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionEntry {
    /// The partition.
    pub partition: usize,
    /// Its state file, as the worker that took the snapshot stored it.
    pub state: StoredFile,
    /// Where its source resumes.
    pub source_offset: u64,
    /// Whether its source had read all its input.
    pub source_exhausted: bool,
    /// The records its source had read, over the whole job.
    pub source_records: u64,
}

/// What a committed checkpoint holds. Stored as JSON inside the same checksummed framing as the
/// data files.
///
/// ```
/// use streamweave_distributed::checkpoint::{CheckpointId, Manifest, PartitionEntry, StoredFile};
/// let mut m = Manifest::new(CheckpointId(7), "wordcount", 1, 1_700_000_000_000, 1);
/// m.add_partition(PartitionEntry {
///     partition: 0,
///     state: StoredFile::of("state-p00000", b"abc"),
///     source_offset: 42,
///     source_exhausted: false,
///     source_records: 3,
/// });
/// assert_eq!(m.file("state-p00000").unwrap().size, 3);
/// assert_eq!(m.partition_entries().unwrap()[0].source_offset, 42);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The format version ([`MANIFEST_VERSION`] when written by this build).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The checkpoint.
    pub id: CheckpointId,
    /// The job's name.
    pub job: String,
    /// The job attempt that took it.
    pub attempt: u64,
    /// When the coordinator committed it, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// Its data files.
    pub files: Vec<StoredFile>,
    /// The job's number of partitions.
    pub partitions: usize,
    /// Where each partition stands, for a job's checkpoint (see [`Manifest::partition_entries`]).
    #[serde(default)]
    pub entries: Vec<PartitionEntry>,
    /// Anything else the job wants to record (sink epochs, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
    /// The state segments the partitions' state indexes name, in this checkpoint or earlier
    /// ones: a restore reads them, and retention keeps them while this checkpoint is retained.
    #[serde(default)]
    pub refs: Vec<Segment>,
}

impl Manifest {
    /// A manifest without files or extras.
    pub fn new(
        id: CheckpointId,
        job: impl Into<String>,
        attempt: u64,
        created_ms: u64,
        partitions: usize,
    ) -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            id,
            job: job.into(),
            attempt,
            created_ms,
            files: Vec::new(),
            partitions,
            entries: Vec::new(),
            extra: BTreeMap::new(),
            refs: Vec::new(),
        }
    }

    /// Records where `entry.partition` stands, and lists its state file.
    pub fn add_partition(&mut self, entry: PartitionEntry) {
        self.files.push(entry.state.clone());
        self.entries.push(entry);
    }

    /// Every partition's entry, by partition, after checking that each of the `partitions`
    /// partitions has exactly one and that its state file is listed with the same size and
    /// checksum. A restore uses these, never a default: [`CheckpointError::Inconsistent`]
    /// otherwise.
    pub fn partition_entries(&self) -> Result<Vec<&PartitionEntry>, CheckpointError> {
        let inconsistent = |reason: String| CheckpointError::Inconsistent { id: self.id, reason };
        let mut by_partition: Vec<Option<&PartitionEntry>> = vec![None; self.partitions];
        for entry in &self.entries {
            let slot = by_partition.get_mut(entry.partition).ok_or_else(|| {
                inconsistent(format!(
                    "an entry for partition {} of a job of {} partitions",
                    entry.partition, self.partitions
                ))
            })?;
            if slot.replace(entry).is_some() {
                return Err(inconsistent(format!(
                    "partition {} has two entries",
                    entry.partition
                )));
            }
            if self.file(&entry.state.name) != Some(&entry.state) {
                return Err(inconsistent(format!(
                    "partition {}'s state file {} is not listed with its size and checksum",
                    entry.partition, entry.state.name
                )));
            }
        }
        by_partition
            .into_iter()
            .enumerate()
            .map(|(p, entry)| entry.ok_or_else(|| inconsistent(format!("no entry for partition {p}"))))
            .collect()
    }

    /// Bytes this checkpoint wrote: its own files and the segments it stored itself.
    pub fn written_bytes(&self) -> u64 {
        let own = self.refs.iter().filter(|r| r.checkpoint == self.id);
        self.files.iter().map(|f| f.size).sum::<u64>() + own.map(|r| r.file.size).sum::<u64>()
    }

    /// Bytes of state a restore from this checkpoint reads: its files and every segment it
    /// refers to, wherever stored.
    pub fn referenced_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum::<u64>() + self.refs.iter().map(|r| r.file.size).sum::<u64>()
    }

    /// The data file called `name`, if listed.
    pub fn file(&self, name: &str) -> Option<&StoredFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// Every listed name is a valid data file name and appears once.
    pub(crate) fn validate(&self) -> Result<(), CheckpointError> {
        let mut seen = BTreeSet::new();
        for f in &self.files {
            validate_name(&f.name)?;
            if !seen.insert(f.name.as_str()) {
                return Err(CheckpointError::InvalidName {
                    name: f.name.clone(),
                    reason: "listed twice in the manifest",
                });
            }
        }
        Ok(())
    }

    /// The manifest, framed for storage.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let json = serde_json::to_vec(self).map_err(|e| CheckpointError::Encoding(e.to_string()))?;
        Ok(frame::frame(&json))
    }

    /// The manifest of checkpoint `id` from its stored bytes. Only what [`commit`] accepts is
    /// read back: a file name that is not a valid data file name (a path, `..`, a name listed
    /// twice) makes the manifest corrupt, so recovery skips it rather than failing on it or
    /// asking a store for an object outside the checkpoint.
    ///
    /// [`commit`]: super::CheckpointStore::commit
    pub(crate) fn decode(id: CheckpointId, bytes: Vec<u8>) -> Result<Manifest, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::corrupt(id, MANIFEST_NAME, reason);
        let json = frame::unframe(bytes).map_err(corrupt)?;
        // The version first: a newer manifest may not parse as this build's, and must then say
        // so rather than look corrupt.
        #[derive(Deserialize)]
        struct Versioned {
            #[serde(default = "version_one")]
            version: u32,
        }
        let versioned: Versioned = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        if versioned.version > MANIFEST_VERSION {
            return Err(CheckpointError::UnsupportedVersion {
                id,
                what: "manifest",
                version: versioned.version,
                supported: MANIFEST_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        if manifest.id != id {
            return Err(corrupt(format!("names checkpoint {}", manifest.id)));
        }
        manifest.validate().map_err(|e| corrupt(e.to_string()))?;
        Ok(manifest)
    }
}
