//! [`ObjectCheckpointStore`]: checkpoints in an object store (S3 or any S3-compatible service,
//! or `memory://` in tests), one key prefix per checkpoint.
//!
//! ```text
//! PREFIX/chk-0000000042/state-p00003
//! PREFIX/chk-0000000042/_MANIFEST      created once (If-None-Match: *) when 42 is committed
//!
//! list:   LIST PREFIX/ with delimiter '/'  -> chk-* prefixes, then HEAD chk-n/_MANIFEST each
//! verify: GET chk-n/_MANIFEST, HEAD each listed file (sizes only: no state is downloaded)
//! ```
//!
//! Every call goes through [`storage::block_on`](crate::storage::block_on): the trait is
//! synchronous and is called from blocking threads (the coordinator's disk writer, workers'
//! blocking pool). A PUT of a whole object is atomic on S3, so no temporary names are needed.

use std::fmt;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{PutMode, PutOptions, PutPayload};

use super::{CheckpointError, CheckpointId, CheckpointStore, Listed, MANIFEST_NAME};
use crate::storage::{block_on, Location, StorageUrl};

const DIR_PREFIX: &str = "chk-";

/// Checkpoints under a key prefix of an object store.
///
/// ```
/// use streamweave_distributed::checkpoint::{CheckpointId, CheckpointStore, ObjectCheckpointStore};
/// use streamweave_distributed::storage::StorageUrl;
/// let url = StorageUrl::parse("memory://doc-object-store/ckpt")?;
/// let store = ObjectCheckpointStore::open(&url)?;
/// store.put(CheckpointId(42), "state-p00003", b"counts")?;
/// assert_eq!(store.get(CheckpointId(42), "state-p00003")?, b"counts");
/// assert_eq!(store.key(CheckpointId(42), "state-p00003").as_ref(), "ckpt/chk-0000000042/state-p00003");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ObjectCheckpointStore {
    location: Location,
}

impl fmt::Debug for ObjectCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectCheckpointStore({})", self.location.url)
    }
}

impl ObjectCheckpointStore {
    /// Opens the store at `url` (`s3://` or `memory://`; a local path is an error: use
    /// [`LocalDirStore`](super::LocalDirStore), or [`open_store`](super::open_store) for either).
    pub fn open(url: &StorageUrl) -> Result<Self, CheckpointError> {
        Ok(ObjectCheckpointStore {
            location: url.open()?,
        })
    }

    /// The store's URL.
    pub fn url(&self) -> &StorageUrl {
        &self.location.url
    }

    /// The key of object `name` of checkpoint `id`.
    pub fn key(&self, id: CheckpointId, name: &str) -> ObjectPath {
        self.location.key(&format!("{}/{name}", dir_name(id)))
    }

    fn checkpoint_prefix(&self, id: CheckpointId) -> ObjectPath {
        self.location.key(&dir_name(id))
    }

    /// Maps a store error: a missing object is [`CheckpointError::NotFound`]; anything else is a
    /// storage failure naming the operation, the URL and the key.
    fn error(
        &self,
        operation: &'static str,
        id: CheckpointId,
        name: &str,
        key: &ObjectPath,
        e: object_store::Error,
    ) -> CheckpointError {
        match e {
            object_store::Error::NotFound { .. } => CheckpointError::NotFound {
                id,
                name: name.to_string(),
            },
            e => self.location.error(operation, key, e).into(),
        }
    }
}

fn dir_name(id: CheckpointId) -> String {
    format!("{DIR_PREFIX}{:010}", id.0)
}

/// The checkpoint of a `chk-NNNNNNNNNN` prefix (exactly as [`dir_name`] writes it).
fn parse_dir_name(name: &str) -> Option<CheckpointId> {
    let digits = name.strip_prefix(DIR_PREFIX)?;
    let id = CheckpointId(digits.parse().ok()?);
    (dir_name(id) == name).then_some(id)
}

impl CheckpointStore for ObjectCheckpointStore {
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let key = self.key(id, name);
        let (store, k, payload) = (
            self.location.store.clone(),
            key.clone(),
            PutPayload::from(bytes.to_vec()),
        );
        block_on(async move { store.put(&k, payload).await })
            .map(drop)
            // Not `self.error`: a missing object cannot be the reason a put fails (a missing
            // bucket can, and must not read as a missing checkpoint file).
            .map_err(|e| self.location.error("put", &key, e).into())
    }

    fn create_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<bool, CheckpointError> {
        let key = self.key(id, name);
        let (store, k, payload) = (
            self.location.store.clone(),
            key.clone(),
            PutPayload::from(bytes.to_vec()),
        );
        let result = block_on(async move {
            store
                .put_opts(&k, payload, PutOptions::from(PutMode::Create))
                .await
        });
        match result {
            Ok(_) => Ok(true),
            // S3 answers 412 Precondition Failed to If-None-Match: *; object_store maps it.
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                Ok(false)
            }
            Err(e) => Err(self.location.error("create", &key, e).into()),
        }
    }

    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        let key = self.key(id, name);
        let (store, k) = (self.location.store.clone(), key.clone());
        block_on(async move { store.get(&k).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error("get", id, name, &key, e))
    }

    fn object_size(&self, id: CheckpointId, name: &str) -> Result<u64, CheckpointError> {
        let key = self.key(id, name);
        let (store, k) = (self.location.store.clone(), key.clone());
        block_on(async move { store.head(&k).await })
            .map(|meta| meta.size)
            .map_err(|e| self.error("head", id, name, &key, e))
    }

    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError> {
        let key = self.key(id, name);
        let (store, k) = (self.location.store.clone(), key.clone());
        match block_on(async move { store.delete(&k).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("delete", id, name, &key, e)),
        }
    }

    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        // The manifest first: a failure half-way leaves an uncommitted leftover (which
        // retention removes), never a committed checkpoint with missing files.
        self.delete_object(id, MANIFEST_NAME)?;
        let prefix = self.checkpoint_prefix(id);
        let (store, p) = (self.location.store.clone(), prefix.clone());
        block_on(async move {
            let keys = store.list(Some(&p)).map_ok(|meta| meta.location).boxed();
            store.delete_stream(keys).try_for_each(|_| async { Ok(()) }).await
        })
        .or_else(|e| match e {
            object_store::Error::NotFound { .. } => Ok(()),
            e => Err(self.location.error("delete", &prefix, e).into()),
        })
    }

    /// One recursive listing of the prefix (a page per thousand objects), rather than a size
    /// query per checkpoint: with incremental state, older checkpoints stay while a retained
    /// one refers to their segments, and retention lists on every commit.
    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        let prefix = self.location.prefix.clone();
        let (store, p) = (self.location.store.clone(), prefix.clone());
        let objects: Vec<ObjectPath> = block_on(async move {
            store
                .list(Some(&p))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
        })
        .map_err(|e| self.location.error("list", &prefix, e))?;
        let mut committed: std::collections::BTreeMap<CheckpointId, bool> = Default::default();
        for path in &objects {
            let rest = match prefix.as_ref() {
                "" => Some(path.as_ref()),
                p => path.as_ref().strip_prefix(p).and_then(|r| r.strip_prefix('/')),
            };
            let Some((dir, name)) = rest.and_then(|r| r.split_once('/')) else {
                continue;
            };
            if let Some(id) = parse_dir_name(dir) {
                *committed.entry(id).or_default() |= name == MANIFEST_NAME;
            }
        }
        Ok(committed
            .into_iter()
            .map(|(id, committed)| Listed { id, committed })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    /// Needs the S3 server that `scripts/tier2.sh` starts.
    mod tier2 {
        use crate::checkpoint::{CheckpointError, CheckpointId, CheckpointStore, ObjectCheckpointStore};
        use crate::storage::StorageUrl;

        #[test]
        #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
        fn storage_errors_name_the_url_and_the_key() {
            // Fails without the tier-2 environment rather than testing nothing.
            crate::storage::tests::tier2::s3_test_url("object-errors");
            let url = StorageUrl::parse("s3://swd-no-such-bucket/ckpt").unwrap();
            let store = ObjectCheckpointStore::open(&url).unwrap();
            let err = store.put(CheckpointId(1), "state-p00000", b"x").unwrap_err();
            assert!(matches!(err, CheckpointError::Storage(_)), "{err}");
            let text = err.to_string();
            assert!(
                text.contains("s3://swd-no-such-bucket/ckpt/chk-0000000001/state-p00000"),
                "{text}"
            );
            assert!(!err.is_damage());
        }
    }
}
