//! [`ObjectTextSink`]: exactly-once text output on an object store (S3 or any S3-compatible
//! service, or `memory://` in tests), with the same final names and the same two-phase commit
//! as [`TextDirSink`](super::TextDirSink). An object store has no rename, so the protocol's
//! renames are server-side copies followed by deletes, each step safe to repeat; and nothing a
//! writer uploads is visible under a final name before it is committed.
//!
//! ```text
//! write(line)         -> an in-memory buffer; past 8 MiB it goes on as a multipart upload of
//!                        PREFIX/.swd/0000q/attempt-{a}.tmp (invisible until completed)
//! pre_commit(e)       -> PREFIX/.swd/0000q/epoch-{e:020}.pending (one PUT; or complete the
//!                        multipart upload, then copy and delete the temporary)
//! commit_epochs(q, u) -> every pending e <= u: copy to PREFIX/part-0000q-{e:020}, then delete
//!                        the pending object (idempotent: a repeat finds it final or copies again)
//! discard_after(q, c) -> pending e > c and temporaries of q go, and committed epochs > c (from
//!                        one listing of PREFIX per sink)
//! commit (no checkpoints) -> PREFIX/part-0000q, which appears whole when it is written
//! ```
//!
//! A partition's objects live under the prefix whichever worker wrote them, so its output is
//! complete in one place after a move. `writer.rs` holds the writer and its upload.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjectPath;

use super::names::{epoch_name, numbered, parse_epoch_name, PENDING_PREFIX, WORK};
use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};
use crate::storage::list::{is_empty, list_level};
use crate::storage::{block_on, Location, StorageUrl};

#[cfg(test)]
mod tests;
mod writer;

use writer::ObjectTextWriter;

/// Writes each record as a line of the object `PREFIX/part-{q:05}` (or, with checkpoints, of
/// `PREFIX/part-{q:05}-{epoch:020}` per committed epoch), where `q` is the partition.
///
/// ```
/// use object_store::ObjectStore;
/// use streamweave_distributed::dataflow::sinks::ObjectTextSink;
/// use streamweave_distributed::dataflow::{Sink, SinkContext};
/// use streamweave_distributed::storage::{block_on, StorageUrl};
///
/// let url = StorageUrl::parse("memory://doc-sink/out")?;
/// let sink = ObjectTextSink::new(&url)?;
/// sink.validate()?;
/// let mut writer = sink.open(&SinkContext { partition: 3, num_partitions: 4, attempt: 1 })?;
/// writer.write("hello".to_string())?;
/// writer.commit()?;
/// let location = url.open()?;
/// let (store, key) = (location.store.clone(), location.key("part-00003"));
/// let text = block_on(async move { store.get(&key).await?.bytes().await })?;
/// assert_eq!(&text[..], b"hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ObjectTextSink {
    location: Location,
    listing: Arc<Listing>,
}

/// The committed epochs under the prefix when the sink first needed them, by partition:
/// listed once per sink (a sink is built per attempt), as the text sink does, since only
/// recovery needs them and they can only come from earlier attempts.
#[derive(Debug, Default)]
struct Listing {
    /// `None` until first needed.
    committed: Mutex<Option<BTreeMap<usize, BTreeSet<u64>>>>,
}

impl ObjectTextSink {
    /// A sink writing under `url` (an object store URL, not a local path).
    pub fn new(url: &StorageUrl) -> Result<Self, DataflowError> {
        Ok(ObjectTextSink {
            location: url.open()?,
            listing: Arc::default(),
        })
    }

    /// The URL it writes.
    pub fn url(&self) -> &StorageUrl {
        &self.location.url
    }

    /// Partition `partition`'s working prefix, relative to the location.
    fn work(partition: usize) -> String {
        format!("{WORK}/{partition:05}")
    }

    /// The pending epochs and temporaries (attempt numbers) of a partition, ascending.
    fn work_listing(&self, partition: usize) -> Result<(Vec<u64>, Vec<u64>), DataflowError> {
        let (mut pending, mut temporaries) = (Vec::new(), Vec::new());
        for meta in list_level(&self.location, &Self::work(partition))? {
            let name = meta.location.filename().unwrap_or("");
            if let Some(epoch) = numbered(name, PENDING_PREFIX, ".pending") {
                pending.push(epoch);
            } else if let Some(attempt) = numbered(name, TEMP_PREFIX, ".tmp") {
                temporaries.push(attempt);
            }
        }
        pending.sort_unstable();
        temporaries.sort_unstable();
        Ok((pending, temporaries))
    }

    fn pending_key(&self, partition: usize, epoch: u64) -> ObjectPath {
        let name = super::names::pending_name(epoch);
        self.location.key(&format!("{}/{name}", Self::work(partition)))
    }

    fn temp_key(&self, partition: usize, attempt: u64) -> ObjectPath {
        self.location
            .key(&format!("{}/{TEMP_PREFIX}{attempt}.tmp", Self::work(partition)))
    }

    /// Deletes `key`; an absent object is not an error (deletes are repeated after crashes).
    fn delete(&self, key: &ObjectPath) -> Result<(), DataflowError> {
        let (store, k) = (self.location.store.clone(), key.clone());
        match block_on(async move { store.delete(&k).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.location.error("delete", key, e).into()),
        }
    }

    /// Copies `from` to `to`; `Ok(false)` if `from` is gone.
    fn copy(&self, from: &ObjectPath, to: &ObjectPath) -> Result<bool, DataflowError> {
        let (store, f, t) = (self.location.store.clone(), from.clone(), to.clone());
        match block_on(async move { store.copy(&f, &t).await }) {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.location.error("copy", from, e).into()),
        }
    }

    /// Runs `f` on partition `partition`'s committed epochs, listing the prefix the first time.
    fn with_committed<T>(
        &self,
        partition: usize,
        f: impl FnOnce(&mut BTreeSet<u64>) -> T,
    ) -> Result<T, DataflowError> {
        let mut listing = self.listing.committed.lock().unwrap_or_else(|e| e.into_inner());
        if listing.is_none() {
            let mut found: BTreeMap<usize, BTreeSet<u64>> = BTreeMap::new();
            for meta in list_level(&self.location, "")? {
                if let Some((q, epoch)) = meta.location.filename().and_then(parse_epoch_name) {
                    found.entry(q).or_default().insert(epoch);
                }
            }
            *listing = Some(found);
        }
        let committed = listing
            .get_or_insert_with(BTreeMap::new)
            .entry(partition)
            .or_default();
        Ok(f(committed))
    }
}

/// Temporaries are named `attempt-{a}.tmp` in the partition's working prefix.
const TEMP_PREFIX: &str = "attempt-";

impl Sink for ObjectTextSink {
    type Item = String;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<String>>, DataflowError> {
        Ok(Box::new(ObjectTextWriter::new(self.clone(), ctx)))
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        let (pending, _) = self.work_listing(partition)?;
        for epoch in pending.into_iter().filter(|e| *e <= upto) {
            let from = self.pending_key(partition, epoch);
            let to = self.location.key(&epoch_name(partition, epoch));
            // Copied, then deleted: a crash in between leaves both, and a repeat copies the same
            // bytes again. A concurrent commit of the same epochs (two CommitEpochs close
            // together, or a partition's old and new owner) may have deleted it: final either way.
            if self.copy(&from, &to)? {
                self.delete(&from)?;
            }
            let mut listing = self.listing.committed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(listing) = listing.as_mut() {
                listing.entry(partition).or_default().insert(epoch);
            }
        }
        Ok(())
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        // Recovery rewinds to `after`: what was pending beyond it, this partition's temporaries
        // (left by an attempt that died between completing and renaming one) and committed epochs
        // beyond it (a newer checkpoint turned out damaged, or recovery from the beginning) are
        // all produced again, so they go.
        let (pending, temporaries) = self.work_listing(partition)?;
        for epoch in pending.into_iter().filter(|e| *e > after) {
            self.delete(&self.pending_key(partition, epoch))?;
        }
        for attempt in temporaries {
            self.delete(&self.temp_key(partition, attempt))?;
        }
        let committed = self.with_committed(partition, |c| c.split_off(&(after + 1)))?;
        for epoch in committed {
            self.delete(&self.location.key(&epoch_name(partition, epoch)))?;
        }
        Ok(())
    }

    /// The prefix must hold nothing yet; a missing bucket or an unreachable store is an error
    /// naming the URL.
    fn validate(&self) -> Result<(), DataflowError> {
        if is_empty(&self.location)? {
            Ok(())
        } else {
            Err(DataflowError::InvalidJob(format!(
                "output {} is not empty",
                self.location.url
            )))
        }
    }
}
