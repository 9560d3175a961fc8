//! Finding the checkpoint to recover from: the newest committed one that is intact.

use super::{CheckpointError, CheckpointId, CheckpointStore, Manifest};

/// A committed checkpoint that recovery passed over because it is damaged.
#[derive(Debug)]
pub struct Skipped {
    /// The checkpoint.
    pub id: CheckpointId,
    /// What is wrong with it (a [`CheckpointError::is_damage`] error).
    pub error: CheckpointError,
}

/// The outcome of [`scan_latest`].
#[derive(Debug, Default)]
pub struct Recovery {
    /// The newest intact committed checkpoint, if any.
    pub manifest: Option<Manifest>,
    /// The newer committed checkpoints that were damaged, newest first.
    pub skipped: Vec<Skipped>,
}

/// The newest committed checkpoint whose manifest and listed files are all intact, or `None`
/// when there is none: a damaged one is skipped with a warning and the previous one is used.
///
/// Every listed file is read in full to check it. A failure of the storage itself (an i/o error
/// other than a missing file) is returned rather than skipped: it may be transient, and falling
/// back would throw progress away.
pub fn restore_latest(store: &dyn CheckpointStore) -> Result<Option<Manifest>, CheckpointError> {
    Ok(scan_latest(store)?.manifest)
}

/// Like [`restore_latest`], also reporting the damaged checkpoints it passed over (so that a
/// caller can tell "no checkpoint yet" from "every checkpoint damaged").
pub fn scan_latest(store: &dyn CheckpointStore) -> Result<Recovery, CheckpointError> {
    let mut recovery = Recovery::default();
    for id in store.completed()?.into_iter().rev() {
        match store.verify(id) {
            Ok(manifest) => {
                recovery.manifest = Some(manifest);
                break;
            }
            Err(error) if error.is_damage() => {
                tracing::warn!(checkpoint = %id, %error, "skipping a damaged checkpoint");
                recovery.skipped.push(Skipped { id, error });
            }
            Err(error) => return Err(error),
        }
    }
    Ok(recovery)
}
