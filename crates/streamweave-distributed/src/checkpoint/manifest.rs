//! The manifest of a checkpoint: what it contains. Writing it is the checkpoint's commit point,
//! so a checkpoint without one never happened.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{frame, validate_name, CheckpointError, CheckpointId, MANIFEST_NAME};

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
        StoredFile {
            name: name.to_string(),
            size: bytes.len() as u64,
            crc32: crc32fast::hash(bytes),
        }
    }
}

/// What a committed checkpoint holds. Stored as JSON inside the same checksummed framing as the
/// data files.
///
/// ```
/// use streamweave_distributed::checkpoint::{CheckpointId, Manifest, StoredFile};
/// let mut m = Manifest::new(CheckpointId(7), "wordcount", 1, 1_700_000_000_000, 4);
/// m.files.push(StoredFile::of("state-p0000", b"abc"));
/// assert_eq!(m.file("state-p0000").unwrap().size, 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
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
    /// Anything else the job wants to record (source positions, sink epochs, ...).
    #[serde(default)]
    pub extra: BTreeMap<String, String>,
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
            id,
            job: job.into(),
            attempt,
            created_ms,
            files: Vec::new(),
            partitions,
            extra: BTreeMap::new(),
        }
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

    /// The manifest of checkpoint `id` from its stored bytes.
    pub(crate) fn decode(id: CheckpointId, bytes: Vec<u8>) -> Result<Manifest, CheckpointError> {
        let corrupt = |reason: String| CheckpointError::corrupt(id, MANIFEST_NAME, reason);
        let json = frame::unframe(bytes).map_err(corrupt)?;
        let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| corrupt(e.to_string()))?;
        if manifest.id != id {
            return Err(corrupt(format!("names checkpoint {}", manifest.id)));
        }
        Ok(manifest)
    }
}
