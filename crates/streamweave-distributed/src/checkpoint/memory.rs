//! [`MemoryStore`]: checkpoints in memory, for tests, with helpers that damage stored objects.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{CheckpointError, CheckpointId, CheckpointStore, Listed, MANIFEST_NAME};

type Objects = BTreeMap<CheckpointId, BTreeMap<String, Vec<u8>>>;

/// Checkpoints in memory. Clones share the same contents.
///
/// ```
/// use streamweave_distributed::checkpoint::{
///     restore_latest, CheckpointId, CheckpointStore, Manifest, MemoryStore,
/// };
/// let store = MemoryStore::new();
/// for n in 1..=2 {
///     let mut m = Manifest::new(CheckpointId(n), "job", 1, 0, 1);
///     m.files.push(store.put(CheckpointId(n), "state-p0000", b"abc")?);
///     store.commit(&m)?;
/// }
/// // An altered byte passes the size check and is caught where the file is read...
/// assert!(store.corrupt(CheckpointId(2), "state-p0000"));
/// assert_eq!(restore_latest(&store)?.unwrap().id, CheckpointId(2));
/// assert!(store.get(CheckpointId(2), "state-p0000").unwrap_err().is_damage());
/// // ...a cut file is caught by the size check: recovery falls back.
/// assert!(store.truncate(CheckpointId(2), "state-p0000", 5));
/// assert_eq!(restore_latest(&store)?.unwrap().id, CheckpointId(1));
/// # Ok::<(), streamweave_distributed::checkpoint::CheckpointError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    // A lock only around the map, held for one map operation: the trait is synchronous.
    objects: Arc<Mutex<Objects>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn objects(&self) -> MutexGuard<'_, Objects> {
        // A panic elsewhere while holding the lock leaves the map consistent (every change is one
        // map operation), so a poisoned lock is still usable.
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with_object(&self, id: CheckpointId, name: &str, f: impl FnOnce(&mut Vec<u8>)) -> bool {
        match self.objects().get_mut(&id).and_then(|c| c.get_mut(name)) {
            Some(bytes) => {
                f(bytes);
                true
            }
            None => false,
        }
    }

    /// The stored size of object `name` (a data file or [`MANIFEST_NAME`]) of checkpoint `id`,
    /// framing included.
    pub fn object_len(&self, id: CheckpointId, name: &str) -> Option<usize> {
        self.objects().get(&id)?.get(name).map(Vec::len)
    }

    /// Changes the last stored byte of object `name` of checkpoint `id` (adds 1 to it, so that
    /// repeated corruption does not undo itself); false if there is no such object.
    pub fn corrupt(&self, id: CheckpointId, name: &str) -> bool {
        self.with_object(id, name, |b| {
            if let Some(last) = b.last_mut() {
                *last = last.wrapping_add(1);
            }
        })
    }

    /// Changes stored byte `index % len` of object `name` of checkpoint `id` (adds 1 to it);
    /// false if there is no such object or it is empty.
    pub fn corrupt_at(&self, id: CheckpointId, name: &str, index: usize) -> bool {
        let mut flipped = false;
        self.with_object(id, name, |b| {
            if !b.is_empty() {
                let i = index % b.len();
                b[i] = b[i].wrapping_add(1);
                flipped = true;
            }
        });
        flipped
    }

    /// Cuts object `name` of checkpoint `id` to its first `len` stored bytes (as a torn write
    /// would); false if there is no such object.
    pub fn truncate(&self, id: CheckpointId, name: &str, len: usize) -> bool {
        self.with_object(id, name, |b| b.truncate(len))
    }

    /// Removes object `name` of checkpoint `id`; false if there was none.
    pub fn remove(&self, id: CheckpointId, name: &str) -> bool {
        let mut objects = self.objects();
        let Some(c) = objects.get_mut(&id) else {
            return false;
        };
        let removed = c.remove(name).is_some();
        if c.is_empty() {
            // Like an object store: a checkpoint without objects does not exist.
            objects.remove(&id);
        }
        removed
    }
}

impl CheckpointStore for MemoryStore {
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        self.objects()
            .entry(id)
            .or_default()
            .insert(name.to_string(), bytes.to_vec());
        Ok(())
    }

    fn create_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<bool, CheckpointError> {
        // Checked and inserted under one lock: atomic.
        match self.objects().entry(id).or_default().entry(name.to_string()) {
            Entry::Occupied(_) => Ok(false),
            Entry::Vacant(slot) => {
                slot.insert(bytes.to_vec());
                Ok(true)
            }
        }
    }

    fn object_size(&self, id: CheckpointId, name: &str) -> Result<u64, CheckpointError> {
        self.object_len(id, name)
            .map(|len| len as u64)
            .ok_or_else(|| CheckpointError::NotFound {
                id,
                name: name.to_string(),
            })
    }

    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        self.objects()
            .get(&id)
            .and_then(|c| c.get(name))
            .cloned()
            .ok_or_else(|| CheckpointError::NotFound {
                id,
                name: name.to_string(),
            })
    }

    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError> {
        self.remove(id, name);
        Ok(())
    }

    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        self.objects().remove(&id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        Ok(self
            .objects()
            .iter()
            .map(|(&id, c)| Listed {
                id,
                committed: c.contains_key(MANIFEST_NAME),
            })
            .collect())
    }
}
