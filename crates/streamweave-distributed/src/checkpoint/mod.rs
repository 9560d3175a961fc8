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
//! is detected on reading; the manifest also records each data file's size and crc32, so a
//! missing or replaced file is detected too. The protocol uses only whole-object writes, reads,
//! deletes and listings, never a rename, so an S3-compatible object store can implement
//! [`CheckpointStore`] as well as [`LocalDirStore`] and [`MemoryStore`] do.

mod error;
mod frame;
mod local;
mod manifest;
mod memory;
#[cfg(test)]
mod proptests;
mod restore;
#[cfg(test)]
mod restore_tests;
mod store;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use error::CheckpointError;
pub use local::LocalDirStore;
pub use manifest::{Manifest, PartitionEntry, StoredFile};
pub use memory::MemoryStore;
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
