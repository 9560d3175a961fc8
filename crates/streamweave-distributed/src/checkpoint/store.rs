//! The [`CheckpointStore`] trait: five object operations that a backend provides, and the
//! checkpoint protocol built on them once for every backend.
//!
//! The protocol needs from a backend only what an S3-compatible object store offers: whole
//! objects written atomically, read, deleted and listed. It never renames; the commit point of
//! checkpoint `n` is writing its manifest object, after all of its data files.

use super::{frame, validate_name, CheckpointError, CheckpointId, Manifest, StoredFile, MANIFEST_NAME};

/// A checkpoint present in a store, committed or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The checkpoint.
    pub id: CheckpointId,
    /// Whether it has a manifest object.
    pub committed: bool,
}

/// Where checkpoints are kept: a local directory ([`LocalDirStore`](super::LocalDirStore)),
/// memory ([`MemoryStore`](super::MemoryStore)), or later an object store.
///
/// A backend implements the five object operations (`write_object` ... `list`); the protocol
/// methods (`put` ... `abort`) are provided and are not meant to be overridden. The trait is
/// synchronous and object-safe: the async shell calls it from a blocking task and can hold an
/// `Arc<dyn CheckpointStore>`.
///
/// ```
/// use streamweave_distributed::checkpoint::{
///     restore_latest, CheckpointId, CheckpointStore, Manifest, MemoryStore,
/// };
/// let store = MemoryStore::new();
/// let id = CheckpointId(1);
/// let file = store.put(id, "state-p0000", b"counts")?;
/// let mut manifest = Manifest::new(id, "wordcount", 1, 0, 1);
/// manifest.files.push(file);
/// store.commit(&manifest)?;
/// let restored = restore_latest(&store)?.expect("one checkpoint");
/// assert_eq!(store.get(restored.id, "state-p0000")?, b"counts");
/// # Ok::<(), streamweave_distributed::checkpoint::CheckpointError>(())
/// ```
pub trait CheckpointStore: Send + Sync {
    /// Stores `bytes` as object `name` of checkpoint `id`, replacing any previous one. When it
    /// returns, the object is durable; a crash meanwhile leaves the old object, or none, or (on a
    /// store without atomic writes) a torn one, which the framing reveals.
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError>;

    /// The bytes of object `name` of checkpoint `id`; [`CheckpointError::NotFound`] if absent.
    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError>;

    /// Deletes object `name` of checkpoint `id`; deleting an absent object succeeds.
    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError>;

    /// Deletes every object of checkpoint `id`; deleting an absent checkpoint succeeds.
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError>;

    /// Every checkpoint with at least one object, in any order.
    fn list(&self) -> Result<Vec<Listed>, CheckpointError>;

    /// Stores data file `name` of checkpoint `id` (framed with its length and crc32) and
    /// describes it for the manifest.
    fn put(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<StoredFile, CheckpointError> {
        validate_name(name)?;
        self.write_object(id, name, &frame::frame(bytes))?;
        Ok(StoredFile::of(name, bytes))
    }

    /// Data file `name` of checkpoint `id`; [`CheckpointError::Corrupt`] if it is torn,
    /// truncated or altered.
    fn get(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        validate_name(name)?;
        let bytes = self.read_object(id, name)?;
        frame::unframe(bytes).map_err(|reason| CheckpointError::corrupt(id, name, reason))
    }

    /// Commits checkpoint `manifest.id` by writing its manifest. Call it only after every
    /// `put` of the checkpoint has returned; ids are never reused.
    fn commit(&self, manifest: &Manifest) -> Result<(), CheckpointError> {
        manifest.validate()?;
        self.write_object(manifest.id, MANIFEST_NAME, &manifest.encode()?)
    }

    /// The manifest of checkpoint `id`, checked against its framing but not against its files.
    fn manifest(&self, id: CheckpointId) -> Result<Manifest, CheckpointError> {
        Manifest::decode(id, self.read_object(id, MANIFEST_NAME)?)
    }

    /// The manifest of checkpoint `id` after reading every file it lists and checking its size
    /// and crc32 against it.
    fn verify(&self, id: CheckpointId) -> Result<Manifest, CheckpointError> {
        let manifest = self.manifest(id)?;
        for file in &manifest.files {
            let found = StoredFile::of(&file.name, &self.get(id, &file.name)?);
            if found != *file {
                return Err(CheckpointError::corrupt(
                    id,
                    &file.name,
                    format!(
                        "{} bytes with crc32 {:08x}, the manifest says {} bytes with crc32 {:08x}",
                        found.size, found.crc32, file.size, file.crc32
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// The committed checkpoints (those with a manifest), ascending.
    fn completed(&self) -> Result<Vec<CheckpointId>, CheckpointError> {
        let mut ids: Vec<_> = self
            .list()?
            .into_iter()
            .filter(|l| l.committed)
            .map(|l| l.id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Deletes every committed checkpoint but the newest `keep`, and every uncommitted one older
    /// than the newest committed (left by an aborted attempt); returns the deleted ids,
    /// ascending. Uncommitted checkpoints newer than that may be in progress and are kept.
    ///
    /// `keep` should be at least 2: recovery falls back to the previous checkpoint when the
    /// newest turns out damaged.
    fn retain(&self, keep: usize) -> Result<Vec<CheckpointId>, CheckpointError> {
        let mut listed = self.list()?;
        listed.sort_unstable_by_key(|l| l.id);
        let committed: Vec<CheckpointId> = listed.iter().filter(|l| l.committed).map(|l| l.id).collect();
        let Some(&newest) = committed.last() else {
            return Ok(Vec::new());
        };
        let old = &committed[..committed.len().saturating_sub(keep)];
        let mut deleted = Vec::new();
        for l in &listed {
            if old.binary_search(&l.id).is_ok() {
                // Manifest first: a crash half-way leaves an uncommitted leftover, never a
                // committed checkpoint with missing files.
                self.delete_object(l.id, MANIFEST_NAME)?;
            } else if l.committed || l.id > newest {
                continue;
            }
            self.delete_checkpoint(l.id)?;
            deleted.push(l.id);
        }
        Ok(deleted)
    }

    /// Deletes the files of checkpoint `id`, which was never committed (an attempt failed before
    /// every partition acknowledged it); [`CheckpointError::AlreadyCommitted`] if it was.
    fn abort(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        match self.read_object(id, MANIFEST_NAME) {
            Ok(_) => Err(CheckpointError::AlreadyCommitted(id)),
            Err(CheckpointError::NotFound { .. }) => self.delete_checkpoint(id),
            Err(e) => Err(e),
        }
    }
}
