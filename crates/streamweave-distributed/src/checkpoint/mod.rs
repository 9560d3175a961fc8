//! Checkpoint storage for barrier snapshots: each task stores its partition's state and source
//! offsets as data files of checkpoint `n`; the coordinator commits `n` by writing its manifest
//! last; recovery restores from the newest committed checkpoint that is intact.
//!
//! ```text
//!  tasks                           store                           coordinator
//!  put(n, "state-p0003") ----->  chk-n/state-p0003   (framed: magic | version | len | crc32)
//!  put(n, "offsets-p0003") --->  chk-n/offsets-p0003
//!                                chk-n/_MANIFEST     <-------- commit(manifest n)  (commit point)
//!                                                    <-------- retain(keep)        (old ones go)
//!  on failure:                   restore_latest  ------------> newest n whose manifest and
//!                                                              listed files are all intact
//! ```
//!
//! Every stored file is framed with its length and crc32, so a torn, truncated or altered file
//! is detected where it is read (a worker restoring its partition); the manifest also records
//! each data file's size and crc32, so recovery checks, without reading any state, that every
//! listed file is present with its size. The protocol uses only whole-object writes, a
//! create-if-absent for the manifest (so two coordinators never both commit checkpoint `n`),
//! reads, sizes, deletes and listings, never a rename: [`ObjectCheckpointStore`] (S3,
//! `memory://`) implements [`CheckpointStore`] as well as [`LocalDirStore`] and [`MemoryStore`]
//! do, and [`open_store`] picks one for a URL.

mod chain;
mod error;
// Visible to the crate for `crate::fuzzing`.
pub(crate) mod frame;
mod gc;
#[cfg(test)]
pub(crate) mod hooked;
mod incremental;
mod local;
mod manifest;
mod memory;
mod object;
pub(crate) mod parallel;
#[cfg(test)]
mod proptests;
mod restore;
#[cfg(test)]
mod restore_tests;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use chain::{
    compacted_name, index_name, is_index_name, is_overlay_name, is_part_name, overlay_name, part_name,
    segment_name, ChainPolicy, Layer, PartitionChain, PendingChanges, Segment, SegmentKind, StateIndex,
    APART_DELTAS, COMPACTION_LAG, INDEX_MAGIC, INDEX_VERSION, INDEX_VERSION_OVERLAYS,
};
pub use error::CheckpointError;
pub use incremental::{read_state, resolve_refs, StateRead};
pub use local::LocalDirStore;
pub use manifest::{Manifest, PartitionEntry, StoredFile, MANIFEST_VERSION};
pub use memory::MemoryStore;
pub use object::ObjectCheckpointStore;
pub use restore::{restore_latest, scan_latest, Recovery, Skipped};
pub use store::{CheckpointStore, Listed};

/// The name of a checkpoint's manifest object. Data file names cannot start with `_` or `.`.
pub const MANIFEST_NAME: &str = "_MANIFEST";

/// The longest data file name a store accepts.
pub const MAX_NAME_LEN: usize = 128;

/// A checkpoint's number: checkpoint `n` is the state after barrier `n`. Later is larger.
///
/// ```
/// use streamweave_distributed::checkpoint::CheckpointId;
/// let id = CheckpointId(42);
/// assert!(id.next() > id);
/// assert_eq!(id.to_string(), "42");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The checkpoint after this one.
    pub fn next(self) -> CheckpointId {
        CheckpointId(self.0 + 1)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Opens the checkpoint store at `url`: a local path (or `file://`) is a [`LocalDirStore`]
/// (created if missing), `s3://` and `memory://` an [`ObjectCheckpointStore`].
///
/// ```
/// use streamweave_distributed::checkpoint::open_store;
/// use streamweave_distributed::storage::StorageUrl;
/// let dir = tempfile::tempdir()?;
/// let local = open_store(&StorageUrl::parse(dir.path().to_str().unwrap())?)?;
/// let memory = open_store(&StorageUrl::parse("memory://doc-open-store/ckpt")?)?;
/// assert!(local.completed()?.is_empty() && memory.completed()?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn open_store(url: &crate::storage::StorageUrl) -> Result<Arc<dyn CheckpointStore>, CheckpointError> {
    match url {
        crate::storage::StorageUrl::Local(dir) => Ok(Arc::new(LocalDirStore::new(dir)?)),
        _ => Ok(Arc::new(ObjectCheckpointStore::open(url)?)),
    }
}

/// Checks that `name` can name a data file: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `-`,
/// `_` or `.`, not starting with `_` or `.` (reserved for the manifest and temporary files).
pub fn validate_name(name: &str) -> Result<(), CheckpointError> {
    let invalid = |reason| {
        Err(CheckpointError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return invalid("must be 1 to 128 bytes long");
    }
    if name.starts_with(['_', '.']) {
        return invalid("must not start with '_' or '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return invalid("may only contain ASCII letters, digits, '-', '_' and '.'");
    }
    Ok(())
}
