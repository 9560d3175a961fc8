//! Storage by URL: where checkpoints, input and output live, named the way a user names them on
//! the command line, and opened as an [`object_store::ObjectStore`] with a key prefix.
//!
//! ```text
//!  "--checkpoint-store s3://bucket/swd/ckpt"   "--input /data/in"   "memory://tests/out"
//!            |                                        |                     |
//!      StorageUrl::parse  ------------------------------------------------------
//!            |  S3 { bucket, prefix }          Local(path)        Memory { name, prefix }
//!      StorageUrl::open -> Location { store: Arc<dyn ObjectStore>, prefix }
//!            |  S3: AmazonS3Builder::from_env (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)
//!            |  memory: one process-wide InMemory per name (tests share it across tasks)
//!      block_on(future)  the synchronous callers' bridge to the storage runtime
//! ```
//!
//! Local paths stay local paths: the text source and sink and the local checkpoint store keep
//! their file-system implementations (renames, directory syncs); [`StorageUrl::Local`] tells a
//! caller to use them. Object URLs go through `object_store`, whose client is async; the
//! synchronous parts of the system (the [`CheckpointStore`](crate::checkpoint::CheckpointStore)
//! trait, source readers on blocking threads) call it through [`block_on`], which runs the
//! future on a small runtime of its own, so it works from any thread, inside a Tokio runtime or
//! not.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;

pub mod list;
mod spawn;
pub use spawn::spawn;

/// A storage URL that cannot be used, or a storage operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL is malformed or names an unsupported scheme.
    #[error("invalid storage URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The object store client could not be configured (for example a bad `AWS_*` variable).
    #[error("cannot open {url}: {reason}")]
    Open {
        /// The URL.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// An operation on the store failed. Displayed once, with its root cause: the client's
    /// errors repeat their causes in their own text, so the chain is not exposed as `source`
    /// (an error report would print every cause again).
    #[error("{operation} {location}: {}", concise(error))]
    Object {
        /// What was being done (`put`, `get`, `list`, ...).
        operation: &'static str,
        /// The object or prefix, with its URL.
        location: String,
        /// The store's error.
        error: object_store::Error,
    },
}

/// Where data lives: a local path, an S3 (or S3-compatible) bucket and prefix, or a named
/// in-memory store (for tests; shared by everything in one process).
///
/// ```
/// use streamweave_distributed::storage::StorageUrl;
/// let url = StorageUrl::parse("s3://bucket/swd/checkpoints/").unwrap();
/// assert_eq!(url, StorageUrl::S3 { bucket: "bucket".into(), prefix: "swd/checkpoints".into() });
/// assert_eq!(url.to_string(), "s3://bucket/swd/checkpoints");
/// assert!(StorageUrl::parse("/var/lib/swd").unwrap().is_local());
/// assert!(StorageUrl::parse("file:///var/lib/swd").unwrap().is_local());
/// assert!(StorageUrl::parse("ftp://x/y").is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StorageUrl {
    /// A local directory (a plain path or `file:///path`).
    Local(PathBuf),
    /// `s3://BUCKET/PREFIX`, configured from the standard `AWS_*` environment.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/` (empty: the bucket's root).
        prefix: String,
    },
    /// `memory://NAME/PREFIX`: an in-memory store shared by everything in this process.
    Memory {
        /// The store's name (`memory://` alone is the store named `default`).
        name: String,
        /// The key prefix.
        prefix: String,
    },
}

impl StorageUrl {
    /// Parses a path or URL; see the type's documentation.
    pub fn parse(url: &str) -> Result<StorageUrl, StorageError> {
        let invalid = |reason: &str| StorageError::InvalidUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            if url.is_empty() {
                return Err(invalid("empty"));
            }
            return Ok(StorageUrl::Local(PathBuf::from(url)));
        };
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(invalid("a file URL needs an absolute path: file:///path"));
                }
                Ok(StorageUrl::Local(PathBuf::from(rest)))
            }
            "s3" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("no bucket: s3://BUCKET/PREFIX"));
                }
                Ok(StorageUrl::S3 {
                    bucket: bucket.to_string(),
                    prefix: clean_prefix(prefix).map_err(|r| invalid(&r))?,
                })
            }
            "memory" => {
                let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                Ok(StorageUrl::Memory {
                    name: if name.is_empty() { "default" } else { name }.to_string(),
                    prefix: clean_prefix(prefix).map_err(|r| invalid(&r))?,
                })
            }
            other => Err(invalid(&format!(
                "unsupported scheme {other:?} (use a path, file://, s3:// or memory://)"
            ))),
        }
    }

    /// Whether this is a local path.
    pub fn is_local(&self) -> bool {
        matches!(self, StorageUrl::Local(_))
    }

    /// The same place, `child` below it (`child` is a relative key such as `checkpoints`).
    ///
    /// ```
    /// use streamweave_distributed::storage::StorageUrl;
    /// let base = StorageUrl::parse("s3://b/jobs").unwrap();
    /// assert_eq!(base.join("ckpt").to_string(), "s3://b/jobs/ckpt");
    /// ```
    pub fn join(&self, child: &str) -> StorageUrl {
        let child = child.trim_matches('/');
        let joined = |prefix: &str| {
            if prefix.is_empty() {
                child.to_string()
            } else {
                format!("{prefix}/{child}")
            }
        };
        match self {
            StorageUrl::Local(path) => StorageUrl::Local(path.join(child)),
            StorageUrl::S3 { bucket, prefix } => StorageUrl::S3 {
                bucket: bucket.clone(),
                prefix: joined(prefix),
            },
            StorageUrl::Memory { name, prefix } => StorageUrl::Memory {
                name: name.clone(),
                prefix: joined(prefix),
            },
        }
    }

    /// Opens the object store. A local path is an error: callers read and write local paths
    /// with their file-system implementations (renames and directory syncs that an object store
    /// does not have).
    pub fn open(&self) -> Result<Location, StorageError> {
        let open_error = |reason: String| StorageError::Open {
            url: self.to_string(),
            reason,
        };
        let (store, prefix): (Arc<dyn ObjectStore>, &str) = match self {
            StorageUrl::Local(_) => {
                return Err(open_error(
                    "a local path is read and written as files, not through an object store".into(),
                ))
            }
            StorageUrl::S3 { bucket, prefix } => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| open_error(e.to_string()))?;
                (Arc::new(store), prefix)
            }
            StorageUrl::Memory { name, prefix } => (memory_store(name), prefix),
        };
        Ok(Location {
            url: self.clone(),
            store,
            prefix: ObjectPath::from(prefix),
        })
    }
}

/// Strips slashes at both ends; refuses empty segments, `.` and `..`.
fn clean_prefix(prefix: &str) -> Result<String, String> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(String::new());
    }
    if prefix.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err("the key prefix has an empty, '.' or '..' segment".into());
    }
    Ok(prefix.to_string())
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_prefix = |f: &mut fmt::Formatter<'_>, head: String, prefix: &str| {
            if prefix.is_empty() {
                write!(f, "{head}")
            } else {
                write!(f, "{head}/{prefix}")
            }
        };
        match self {
            StorageUrl::Local(path) => write!(f, "{}", path.display()),
            StorageUrl::S3 { bucket, prefix } => with_prefix(f, format!("s3://{bucket}"), prefix),
            StorageUrl::Memory { name, prefix } => with_prefix(f, format!("memory://{name}"), prefix),
        }
    }
}

/// An opened object store and the key prefix everything of one URL lives under.
#[derive(Clone, Debug)]
pub struct Location {
    /// The URL it was opened from.
    pub url: StorageUrl,
    /// The store's client.
    pub store: Arc<dyn ObjectStore>,
    /// The key prefix (empty: the store's root).
    pub prefix: ObjectPath,
}

impl Location {
    /// The key of `name` (a relative key of one or more `/`-separated parts) under the prefix.
    ///
    /// ```
    /// use streamweave_distributed::storage::StorageUrl;
    /// let location = StorageUrl::parse("memory://doc/base").unwrap().open().unwrap();
    /// assert_eq!(location.key("chk-1/_MANIFEST").as_ref(), "base/chk-1/_MANIFEST");
    /// ```
    pub fn key(&self, name: &str) -> ObjectPath {
        let mut parts: Vec<_> = self.prefix.parts().collect();
        parts.extend(
            name.split('/')
                .filter(|s| !s.is_empty())
                .map(object_store::path::PathPart::from),
        );
        ObjectPath::from_iter(parts)
    }

    /// The key's part after the prefix (`None` if it is not under it).
    pub fn relative<'a>(&self, key: &'a ObjectPath) -> Option<&'a str> {
        let key = key.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            return Some(key);
        }
        key.strip_prefix(prefix)?.strip_prefix('/')
    }

    /// Describes `key` for errors: the URL's scheme and bucket with the key.
    pub fn describe(&self, key: &ObjectPath) -> String {
        match &self.url {
            StorageUrl::S3 { bucket, .. } => format!("s3://{bucket}/{key}"),
            StorageUrl::Memory { name, .. } => format!("memory://{name}/{key}"),
            StorageUrl::Local(path) => format!("{}/{key}", path.display()),
        }
    }

    /// Wraps a store error with the operation and the object it concerned.
    pub fn error(
        &self,
        operation: &'static str,
        key: &ObjectPath,
        source: object_store::Error,
    ) -> StorageError {
        StorageError::Object {
            operation,
            location: self.describe(key),
            error: source,
        }
    }
}

/// The client's message, with the innermost cause added when the message does not already say
/// it (`... after 10 retries ... - HTTP error: error sending request: ... Connection refused`).
fn concise(error: &object_store::Error) -> String {
    let message = error.to_string();
    let mut root: &dyn std::error::Error = error;
    while let Some(next) = root.source() {
        root = next;
    }
    let root = root.to_string();
    if message.contains(&root) {
        message
    } else {
        format!("{message}: {root}")
    }
}

fn memory_store(name: &str) -> Arc<dyn ObjectStore> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    stores
        .entry(name.to_string())
        .or_insert_with(|| Arc::new(InMemory::new()))
        .clone()
}

/// Runs `future` to completion on the storage runtime and returns its output, blocking the
/// calling thread. Callable from any thread, including a Tokio worker (it does not nest
/// runtimes), though async callers should prefer awaiting the store directly.
///
/// ```
/// let answer = streamweave_distributed::storage::block_on(async { 6 * 7 });
/// assert_eq!(answer, 42);
/// ```
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(future.await);
    });
    match rx.recv() {
        Ok(output) => output,
        // The task panicked (the runtime catches it and drops `tx`): surface it here.
        Err(_) => panic!("a storage operation panicked"),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("swd-storage")
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            // Without threads the process cannot do anything useful; say why.
            Err(e) => panic!("cannot start the storage runtime: {e}"),
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use object_store::PutPayload;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            StorageUrl::parse("rel/dir").unwrap(),
            StorageUrl::Local("rel/dir".into())
        );
        assert_eq!(
            StorageUrl::parse("s3://b").unwrap(),
            StorageUrl::S3 {
                bucket: "b".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StorageUrl::parse("memory://").unwrap(),
            StorageUrl::Memory {
                name: "default".into(),
                prefix: String::new()
            }
        );
        for bad in [
            "",
            "s3://",
            "s3:///x",
            "file://rel",
            "s3://b/a//c",
            "s3://b/../x",
            "gs://b/x",
        ] {
            assert!(StorageUrl::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn display_round_trips() {
        for url in ["s3://b/x/y", "memory://t/p", "s3://b", "memory://t"] {
            assert_eq!(StorageUrl::parse(url).unwrap().to_string(), url);
        }
    }

    #[test]
    fn memory_stores_are_shared_by_name_and_keys_sit_under_the_prefix() {
        let a = StorageUrl::parse("memory://shared-test/p")
            .unwrap()
            .open()
            .unwrap();
        let b = StorageUrl::parse("memory://shared-test/p")
            .unwrap()
            .open()
            .unwrap();
        let key = a.key("x/y");
        assert_eq!(key.as_ref(), "p/x/y");
        assert_eq!(a.relative(&key), Some("x/y"));
        let store = a.store.clone();
        let put_key = key.clone();
        block_on(async move { store.put(&put_key, PutPayload::from_static(b"hi")).await }).unwrap();
        let store = b.store.clone();
        let got = block_on(async move { store.get(&key).await?.bytes().await }).unwrap();
        assert_eq!(&got[..], b"hi");
    }

    #[tokio::test]
    async fn block_on_works_inside_a_runtime() {
        assert_eq!(block_on(async { 1 + 1 }), 2);
    }

    /// Needs the S3 server that `scripts/tier2.sh` starts.
    pub(crate) mod tier2 {
        use super::*;
        use object_store::{PutMode, PutOptions};

        /// `s3://BUCKET/tests/NAME-PID` on the tier-2 server; fails (never skips) without it.
        pub(crate) fn s3_test_url(name: &str) -> StorageUrl {
            let bucket = std::env::var("SWD_TEST_S3_BUCKET")
                .expect("SWD_TEST_S3_BUCKET is not set: run tier-2 tests with scripts/tier2.sh");
            StorageUrl::parse(&format!("s3://{bucket}/tests/{name}-{}", std::process::id())).unwrap()
        }

        #[test]
        #[ignore = "tier 2: needs S3 (scripts/tier2.sh)"]
        fn s3_puts_gets_and_creates_only_once() {
            let location = s3_test_url("storage-roundtrip").open().unwrap();
            let key = location.key("a/b");
            let store = location.store.clone();
            let (k, s) = (key.clone(), store.clone());
            block_on(async move { s.put(&k, PutPayload::from_static(b"one")).await }).unwrap();
            let (k, s) = (key.clone(), store.clone());
            let got = block_on(async move { s.get(&k).await?.bytes().await }).unwrap();
            assert_eq!(&got[..], b"one");
            let create = |body: &'static [u8], key: ObjectPath| {
                let s = store.clone();
                block_on(async move {
                    let opts = PutOptions::from(PutMode::Create);
                    s.put_opts(&key, PutPayload::from_static(body), opts).await
                })
            };
            let fresh = location.key("created");
            create(b"first", fresh.clone()).expect("creating an absent object succeeds");
            let again = create(b"second", fresh.clone());
            assert!(
                matches!(again, Err(object_store::Error::AlreadyExists { .. })),
                "a second create must be refused, got {again:?}"
            );
        }
    }
}
