//! [`ObjectTextSource`]: the lines of the objects under a prefix of an object store (S3 or
//! any S3-compatible service, or `memory://` in tests), split over the source partitions by
//! the same planner as the files of a directory, so the same names and sizes give the same
//! plan, the same records and the same offsets as [`TextDirSource`](super::TextDirSource).
//!
//! ```text
//! list the prefix once per job build (one level, name order)
//!   --plan_splits_min--> Vec<Split<ObjectPath>> per partition
//!   --a ShareReader over a RangedReader (ranged GETs, 8 MiB chunks, next one prefetched)--> lines
//!   stopped (barrier, or the source slot given up): the reader is parked, and the next read
//!   from its offset goes on with it (no new GETs for what it holds)
//! ```
//!
//! Every worker lists the prefix itself: the input must not change while a job runs (as for a
//! directory), or the workers' plans differ.

use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjectPath;

use super::text_dir::reader::ParkedShares;
use super::{plan_splits_min, Split, SplitName, DEFAULT_MIN_SPLIT};
use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};
use crate::storage::list::{is_empty, list_level};
use crate::storage::{Location, StorageUrl};

mod ranged;
#[cfg(test)]
mod tests;

use ranged::RangedReader;

/// An object key orders plans by its bytes, as a path does.
impl SplitName for ObjectPath {
    fn name_bytes(&self) -> &[u8] {
        self.as_ref().as_bytes()
    }
}

/// The lines of every object directly under a prefix (not further down; names starting with
/// `.` or `_` are skipped), one `String` per line without its `\n`, exactly as
/// [`TextDirSource`](super::TextDirSource) reads a directory. Its [`SourceOffset`] counts the
/// bytes of the partition's share consumed so far.
///
/// ```
/// use object_store::{ObjectStore, PutPayload};
/// use streamweave_distributed::dataflow::sources::ObjectTextSource;
/// use streamweave_distributed::dataflow::{Flow, Source, SourceContext, SourceEnd, SourceOffset};
/// use streamweave_distributed::storage::{block_on, StorageUrl};
///
/// let url = StorageUrl::parse("memory://doc-source/in")?;
/// let location = url.open()?;
/// let (store, key) = (location.store.clone(), location.key("a.txt"));
/// block_on(async move { store.put(&key, PutPayload::from_static(b"hello world\nsecond line\n")).await })?;
/// let source = ObjectTextSource::new(&url)?;
/// source.validate()?;
/// let ctx = SourceContext { partition: 0, num_partitions: 1 };
/// let mut lines = Vec::new();
/// let end = source.read(&ctx, SourceOffset(0), &mut |line| {
///     lines.push(line);
///     Flow::Continue
/// })?;
/// assert_eq!(lines, ["hello world", "second line"]);
/// assert_eq!(end, SourceEnd::Exhausted(SourceOffset(24)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct ObjectTextSource {
    location: Location,
    min_split: u64,
    /// The listing, taken when first needed and kept: one listing per job build serves every
    /// partition this worker reads.
    listing: Arc<Mutex<Option<Objects>>>,
    /// Readers of shares that stopped, to go on from where they stopped.
    parked: Arc<ParkedShares<ObjectPath, RangedReader>>,
}

/// The input objects with their sizes, in the store's order.
type Objects = Arc<Vec<(ObjectPath, u64)>>;

impl ObjectTextSource {
    /// A source reading the objects under `url` (an object store URL, not a local path).
    pub fn new(url: &StorageUrl) -> Result<Self, DataflowError> {
        Ok(ObjectTextSource {
            location: url.open()?,
            min_split: DEFAULT_MIN_SPLIT,
            listing: Arc::default(),
            parked: Arc::default(),
        })
    }

    /// Cuts objects into ranges of at least `bytes` (default [`DEFAULT_MIN_SPLIT`]; 1 cuts as
    /// finely as the partitions allow).
    pub fn with_min_split(mut self, bytes: u64) -> Self {
        self.min_split = bytes.max(1);
        self
    }

    /// The URL it reads.
    pub fn url(&self) -> &StorageUrl {
        &self.location.url
    }

    /// The input objects with their sizes (listed once).
    fn objects(&self) -> Result<Objects, DataflowError> {
        let mut listing = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(objects) = listing.as_ref() {
            return Ok(Arc::clone(objects));
        }
        let objects: Vec<(ObjectPath, u64)> = list_level(&self.location, "")?
            .into_iter()
            .filter(|meta| {
                let name = meta.location.filename().unwrap_or("");
                !name.starts_with('.') && !name.starts_with('_')
            })
            .map(|meta| (meta.location, meta.size))
            .collect();
        let objects = Arc::new(objects);
        *listing = Some(Arc::clone(&objects));
        Ok(objects)
    }

    fn plan(&self, num_partitions: usize) -> Result<Vec<Vec<Split<ObjectPath>>>, DataflowError> {
        Ok(plan_splits_min(&self.objects()?, num_partitions, self.min_split))
    }
}

impl Source for ObjectTextSource {
    type Item = String;

    /// Cannot tell without listing, and the worker asks while starting an attempt on its event
    /// loop, where a request to the store (seconds, with retries) would stall heartbeats; so
    /// every partition sends its end-of-stream markers, as for any source that cannot tell.
    fn empty_partitions(&self, _num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        Ok(None)
    }

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        let objects = self.objects()?;
        let mut open = |split: &Split<ObjectPath>| {
            let size = objects
                .iter()
                .find(|(key, _)| *key == split.path)
                .map(|(_, size)| *size);
            let size = size.unwrap_or(split.end);
            let input = RangedReader::new(self.location.clone(), split.path.clone(), size, split.end);
            Ok((self.location.describe(&split.path), input))
        };
        let share = || Ok(self.plan(ctx.num_partitions)?.swap_remove(ctx.partition));
        self.parked.read(ctx, offset, share, &mut open, emit)
    }

    /// The prefix must hold objects: an empty or mistyped prefix, a missing bucket or an
    /// unreachable store is an error naming the URL.
    fn validate(&self) -> Result<(), DataflowError> {
        if is_empty(&self.location)? {
            return Err(DataflowError::InvalidJob(format!(
                "input {} holds no objects",
                self.location.url
            )));
        }
        self.objects().map(|_| ())
    }
}
