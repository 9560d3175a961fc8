//! The [`CheckpointStore`] trait: seven object operations that a backend provides, and the
//! checkpoint protocol built on them once for every backend.
//!
//! The protocol needs from a backend only what an S3-compatible object store offers: whole
//! objects written atomically, created only if absent (`If-None-Match: *`), read, sized (HEAD),
//! deleted and listed. It never renames; the commit point of checkpoint `n` is creating its
//! manifest object, after all of its data files, and only one writer can create it.

use std::fmt;

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
/// memory ([`MemoryStore`](super::MemoryStore)), or an object store
/// ([`ObjectCheckpointStore`](super::ObjectCheckpointStore)); [`open_store`](super::open_store)
/// opens the right one for a URL.
///
/// A backend implements the seven object operations (`write_object` ... `list`); the protocol
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
pub trait CheckpointStore: Send + Sync + fmt::Debug {
    /// Stores `bytes` as object `name` of checkpoint `id`, replacing any previous one. When it
    /// returns, the object is durable; a crash meanwhile leaves the old object, or none, or (on a
    /// store without atomic writes) a torn one, which the framing reveals.
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError>;

    /// Stores `bytes` as object `name` of checkpoint `id` only if no such object exists, as one
    /// atomic step: of two writers racing for the same name exactly one creates it. True if it
    /// was created; false (and nothing written) if the object was already there.
    fn create_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<bool, CheckpointError>;

    /// The bytes of object `name` of checkpoint `id`; [`CheckpointError::NotFound`] if absent.
    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError>;

    /// The stored size of object `name` of checkpoint `id` (framing included), without reading
    /// it; [`CheckpointError::NotFound`] if absent.
    fn object_size(&self, id: CheckpointId, name: &str) -> Result<u64, CheckpointError>;

    /// Deletes object `name` of checkpoint `id`; deleting an absent object succeeds.
    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError>;

    /// Deletes every object of checkpoint `id`; deleting an absent checkpoint succeeds.
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError>;

    /// Every checkpoint with at least one object, in any order.
    fn list(&self) -> Result<Vec<Listed>, CheckpointError>;

    /// Stores data file `name` of checkpoint `id` (framed with its length and crc32) and
    /// describes it for the manifest.
    fn put(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<StoredFile, CheckpointError> {
        self.put_pieces(id, name, &[bytes])
    }

    /// [`put`](CheckpointStore::put) of the payload made of `pieces`, one after another: a
    /// caller holding a header and a body stores them without joining them first.
    fn put_pieces(
        &self,
        id: CheckpointId,
        name: &str,
        pieces: &[&[u8]],
    ) -> Result<StoredFile, CheckpointError> {
        validate_name(name)?;
        self.write_object(id, name, &frame::frame_pieces(pieces))?;
        Ok(StoredFile::of_pieces(name, pieces))
    }

    /// Data file `name` of checkpoint `id`; [`CheckpointError::Corrupt`] if it is torn,
    /// truncated or altered.
    fn get(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        validate_name(name)?;
        let bytes = self.read_object(id, name)?;
        frame::unframe(bytes).map_err(|reason| CheckpointError::corrupt(id, name, reason))
    }

    /// Commits checkpoint `manifest.id` by creating its manifest. Call it only after every
    /// `put` of the checkpoint has returned; ids are never reused. If the checkpoint already has
    /// a manifest (another coordinator committed it), nothing is written and
    /// [`CheckpointError::AlreadyCommitted`] is returned: two writers never both commit `n`.
    fn commit(&self, manifest: &Manifest) -> Result<(), CheckpointError> {
        manifest.validate()?;
        if self.create_object(manifest.id, MANIFEST_NAME, &manifest.encode()?)? {
            Ok(())
        } else {
            Err(CheckpointError::AlreadyCommitted(manifest.id))
        }
    }

    /// The manifest of checkpoint `id`, checked against its framing but not against its files.
    fn manifest(&self, id: CheckpointId) -> Result<Manifest, CheckpointError> {
        Manifest::decode(id, self.read_object(id, MANIFEST_NAME)?)
    }

    /// The manifest of checkpoint `id` after checking that every file it lists is present with
    /// the size it records, without reading the files (one size query each: on an object store
    /// the coordinator downloads no state). Altered bytes of the right size are caught where
    /// the file is read ([`get`](CheckpointStore::get) checks its crc32, and
    /// [`get_listed`](CheckpointStore::get_listed) the manifest's too).
    fn verify(&self, id: CheckpointId) -> Result<Manifest, CheckpointError> {
        let manifest = self.manifest(id)?;
        let own = manifest.files.iter().map(|f| (id, f));
        let referenced = manifest.refs.iter().map(|r| (r.checkpoint, &r.file));
        for (at, file) in own.chain(referenced) {
            let stored = self.object_size(at, &file.name)?;
            let expected = frame::HEADER_LEN as u64 + file.size;
            if stored != expected {
                return Err(CheckpointError::corrupt(
                    at,
                    &file.name,
                    format!(
                        "{stored} bytes stored, the manifest says {} bytes of state ({expected} framed)",
                        file.size
                    ),
                ));
            }
        }
        Ok(manifest)
    }

    /// Data file `file.name` of checkpoint `id`, checked against the manifest's description of
    /// it (size and crc32) as well as its own framing.
    fn get_listed(&self, id: CheckpointId, file: &StoredFile) -> Result<Vec<u8>, CheckpointError> {
        let bytes = self.get(id, &file.name)?;
        let found = StoredFile::of(&file.name, &bytes);
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
        Ok(bytes)
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
    /// than the newest committed (left by an aborted attempt), except the files a retained
    /// checkpoint still refers to (the segments of incremental state, [`Manifest::refs`]);
    /// returns the ids deleted entirely, ascending. Uncommitted checkpoints newer than the newest
    /// committed may be in progress and are kept.
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
        let split = committed.len().saturating_sub(keep);
        let (old, kept) = committed.split_at(split);
        let live = super::gc::live_files(self, kept)?;
        // Every dropped manifest goes before any file: a dropped checkpoint's delta chain may
        // rest on an older dropped one's base, and a reader (or a crash) between the two steps
        // must never find a committed checkpoint whose files are gone.
        let mut doomed = Vec::new();
        for l in &listed {
            if old.binary_search(&l.id).is_ok() {
                let names = super::gc::own_names(self, l.id);
                self.delete_object(l.id, MANIFEST_NAME)?;
                doomed.push((l.id, names));
            } else if !l.committed && l.id < newest {
                doomed.push((l.id, None));
            }
        }
        let mut deleted = Vec::new();
        for (id, names) in doomed {
            match live.get(&id) {
                None => {
                    self.delete_checkpoint(id)?;
                    deleted.push(id);
                }
                // Still referred to: only its other files go (those its manifest named; an
                // uncommitted leftover's stay until nothing refers to it).
                Some(keep_names) => {
                    let names: Vec<&String> = names
                        .iter()
                        .flatten()
                        .filter(|n| !keep_names.contains(*n))
                        .collect();
                    let deletes = super::parallel::map(&names, |name| self.delete_object(id, name));
                    deletes.into_iter().collect::<Result<Vec<()>, _>>()?;
                }
            }
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
