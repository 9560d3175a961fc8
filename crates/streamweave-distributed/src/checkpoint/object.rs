//! [`ObjectCheckpointStore`]: checkpoints in an object store (S3 or any S3-compatible service,
//! or `memory://` in tests), one key prefix per checkpoint.
//!
//! ```text
//! PREFIX/chk-0000000042/state-p00003
//! PREFIX/chk-0000000042/_MANIFEST      created once (If-None-Match: *) when 42 is committed
//!
//! list:   LIST PREFIX/ with delimiter '/'  -> chk-* prefixes, then HEAD chk-n/_MANIFEST of
//!         each checkpoint this store has not learned about yet (see `Manifests`)
//! verify: GET chk-n/_MANIFEST, HEAD each listed file (sizes only: no state is downloaded)
//! ```
//!
//! Every call goes through [`storage::block_on`](crate::storage::block_on): the trait is
//! synchronous and is called from blocking threads (the coordinator's disk writer, workers'
//! blocking pool). A PUT of a whole object is atomic on S3, so no temporary names are needed.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
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
    /// Shared by clones: they are the same store.
    settled: Arc<Settled>,
}

/// The checkpoints known to have no manifest for good: older than a committed one (which no
/// coordinator commits after a newer one) or whose manifest this store deleted (retention drops
/// a checkpoint's manifest first). With incremental state, such checkpoints stay while a
/// retained one refers to their segments; remembering them, a listing asks only about the rest
/// (the retained checkpoints and one being written), instead of listing every object of every
/// checkpoint on each commit (thousands at a thousand partitions). Committed checkpoints are
/// asked about each time: another store on the same prefix (a coordinator opens one to restore,
/// another to retain) may have dropped their manifests since.
#[derive(Default)]
struct Settled(Mutex<BTreeSet<CheckpointId>>);

impl Settled {
    fn set(&self) -> std::sync::MutexGuard<'_, BTreeSet<CheckpointId>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
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
        Ok(ObjectCheckpointStore::at(url.open()?))
    }

    /// The store at `location`, already opened.
    pub(crate) fn at(location: Location) -> Self {
        ObjectCheckpointStore {
            location,
            settled: Arc::default(),
        }
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
            // Not `self.error`: a missing object cannot be the reason a put fails (a missing
            // bucket can, and must not read as a missing checkpoint file).
            .map_err(|e| self.location.error("put", &key, e))?;
        if name == MANIFEST_NAME {
            self.settled.set().remove(&id);
        }
        Ok(())
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
            Ok(_) => {
                if name == MANIFEST_NAME {
                    self.settled.set().remove(&id);
                }
                Ok(true)
            }
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
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                if name == MANIFEST_NAME {
                    self.settled.set().insert(id);
                }
                Ok(())
            }
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
            e => Err(self.location.error("delete", &prefix, e)),
        })?;
        self.settled.set().remove(&id);
        Ok(())
    }

    /// The checkpoints' prefixes (one LIST with a delimiter: a page per thousand checkpoints,
    /// whatever their files), then a HEAD of the manifest of each checkpoint not known to have
    /// none for good ([`Settled`]), in parallel.
    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        let prefix = self.location.prefix.clone();
        let (store, p) = (self.location.store.clone(), prefix.clone());
        let listing = block_on(async move { store.list_with_delimiter(Some(&p)).await })
            .map_err(|e| self.location.error("list", &prefix, e))?;
        let mut ids: Vec<CheckpointId> = listing
            .common_prefixes
            .iter()
            .filter_map(|dir| dir.filename().and_then(parse_dir_name))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let asked: Vec<CheckpointId> = {
            let mut settled = self.settled.set();
            settled.retain(|id| ids.binary_search(id).is_ok());
            ids.iter().copied().filter(|id| !settled.contains(id)).collect()
        };
        let answers = super::parallel::map(&asked, |&id| self.has_manifest(id));
        let committed: BTreeSet<CheckpointId> = asked
            .iter()
            .zip(answers)
            .filter_map(|(&id, answer)| answer.map(|has| has.then_some(id)).transpose())
            .collect::<Result<_, _>>()?;
        if let Some(&newest) = committed.last() {
            let mut settled = self.settled.set();
            settled.extend(
                asked
                    .iter()
                    .filter(|&&id| id < newest && !committed.contains(&id)),
            );
        }
        Ok(ids
            .into_iter()
            .map(|id| Listed {
                id,
                committed: committed.contains(&id),
            })
            .collect())
    }
}

impl ObjectCheckpointStore {
    /// Whether checkpoint `id` has a manifest (one HEAD).
    fn has_manifest(&self, id: CheckpointId) -> Result<bool, CheckpointError> {
        let key = self.key(id, MANIFEST_NAME);
        let (store, k) = (self.location.store.clone(), key.clone());
        match block_on(async move { store.head(&k).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.location.error("head", &key, e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{
        GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
        PutOptions, PutPayload, PutResult, Result,
    };

    use super::*;
    use crate::checkpoint::tests::{checkpoint, ids};

    /// An in-memory object store that counts what listings cost: HEADs, and objects listed one
    /// by one (a recursive listing).
    #[derive(Debug, Default)]
    struct Counting {
        inner: InMemory,
        heads: AtomicUsize,
        objects_listed: Arc<AtomicUsize>,
    }

    impl fmt::Display for Counting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counting({})", self.inner)
        }
    }

    #[async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            if options.head {
                self.heads.fetch_add(1, Ordering::Relaxed);
            }
            self.inner.get_opts(location, options).await
        }
        async fn delete(&self, location: &Path) -> Result<()> {
            self.inner.delete(location).await
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            let counter = Arc::clone(&self.objects_listed);
            self.inner
                .list(prefix)
                .inspect(move |_| {
                    counter.fetch_add(1, Ordering::Relaxed);
                })
                .boxed()
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy(&self, from: &Path, to: &Path) -> Result<()> {
            self.inner.copy(from, to).await
        }
        async fn copy_if_not_exists(&self, from: &Path, to: &Path) -> Result<()> {
            self.inner.copy_if_not_exists(from, to).await
        }
    }

    fn counted_store(counting: &Arc<Counting>) -> ObjectCheckpointStore {
        let store: Arc<dyn ObjectStore> = counting.clone();
        ObjectCheckpointStore::at(Location {
            url: StorageUrl::parse("memory://counting/ckpt").unwrap(),
            store,
            prefix: ObjectPath::from("ckpt"),
        })
    }

    fn committed(store: &ObjectCheckpointStore) -> Vec<CheckpointId> {
        let listed = store.list().unwrap();
        listed.iter().filter(|l| l.committed).map(|l| l.id).collect()
    }

    #[test]
    fn a_listing_asks_only_about_checkpoints_that_may_still_be_committed() {
        let counting = Arc::new(Counting::default());
        let store = counted_store(&counting);
        // Ten checkpoints whose manifests retention dropped while newer ones still refer to
        // their files, two committed ones, and one being written.
        for n in 1..=12 {
            checkpoint(&store, n);
        }
        for n in 1..=10 {
            store.delete_object(CheckpointId(n), MANIFEST_NAME).unwrap();
        }
        store.put(CheckpointId(13), "state-p0000", b"in flight").unwrap();

        // Another store on the same prefix (a restarted coordinator) knows nothing yet: it
        // asks about every checkpoint once.
        let other = counted_store(&counting);
        counting.heads.store(0, Ordering::Relaxed);
        assert_eq!(committed(&other), ids(&[11, 12]));
        assert_eq!(counting.heads.load(Ordering::Relaxed), 13);
        for lister in [&store, &other] {
            counting.heads.store(0, Ordering::Relaxed);
            let listed = lister.list().unwrap();
            assert_eq!(listed.len(), 13);
            assert_eq!(committed(lister), ids(&[11, 12]));
            // Two listings: each asks about 11, 12 and 13 only.
            assert_eq!(counting.heads.load(Ordering::Relaxed), 6);
        }
        assert_eq!(
            counting.objects_listed.load(Ordering::Relaxed),
            0,
            "no recursive listing"
        );

        // What changes through the store shows: 13 committed, 11 dropped, 1 deleted.
        store
            .create_object(CheckpointId(13), MANIFEST_NAME, b"{}")
            .unwrap();
        store.delete_object(CheckpointId(11), MANIFEST_NAME).unwrap();
        store.delete_checkpoint(CheckpointId(1)).unwrap();
        let listed = store.list().unwrap();
        assert_eq!(listed.first().map(|l| l.id), Some(CheckpointId(2)));
        assert_eq!(committed(&store), ids(&[12, 13]));
        // And through the other store, which asks about what it had not settled.
        assert_eq!(committed(&other), ids(&[12, 13]));
    }

    #[test]
    fn a_checkpoint_newer_than_every_committed_one_is_asked_about_until_committed() {
        let counting = Arc::new(Counting::default());
        let store = counted_store(&counting);
        checkpoint(&store, 1);
        store.put(CheckpointId(2), "state-p0000", b"in flight").unwrap();
        // A second store commits 2 (the first one's settled set must not hide it).
        let committer = counted_store(&counting);
        assert_eq!(committed(&store), ids(&[1]));
        committer
            .create_object(CheckpointId(2), MANIFEST_NAME, b"{}")
            .unwrap();
        assert_eq!(committed(&store), ids(&[1, 2]));
    }
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
