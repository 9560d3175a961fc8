//! [`TextDirSource`]: the lines of the files of one directory, split into `P` shares by a pure
//! plan ([`plan_splits`]) that every machine computes the same way from the same listing.
//!
//! ```text
//! listing (name order) --plan_splits--> Vec<Split> per partition --SplitReader--> lines
//!   >= P files: whole files, balanced by bytes
//!   <  P files: byte ranges of ~total/P; a line belongs to the range holding its first byte
//! ```
//!
//! `splits.rs` plans (pure), `reader.rs` reads one split and a partition's share of them (and
//! keeps the readers of shares that stopped, to go on with them); this file lists the directory
//! and runs a partition's share from an offset.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

pub(crate) mod reader;
mod splits;
#[cfg(test)]
mod tests;

use reader::ParkedShares;
use splits::path_bytes;
pub use splits::{plan_splits, plan_splits_min, Split, SplitName};

/// The lines of every regular file of a directory (not recursive; names starting with `.` or
/// `_` are skipped), one `String` per line without its `\n` (a `\r` before it stays).
///
/// Its [`SourceOffset`] counts the bytes of the partition's share consumed so far. Invalid
/// UTF-8 is replaced by U+FFFD and logged once per file.
///
/// ```
/// use streamweave_distributed::dataflow::sources::TextDirSource;
/// use streamweave_distributed::dataflow::{Flow, Source, SourceContext, SourceEnd, SourceOffset};
///
/// let dir = tempfile::tempdir()?;
/// std::fs::write(dir.path().join("a.txt"), "hello world\nsecond line\n")?;
/// let source = TextDirSource::new(dir.path());
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
pub struct TextDirSource {
    dir: PathBuf,
    min_split: u64,
    /// Readers of shares that stopped, to go on from where they stopped.
    parked: Arc<ParkedShares<PathBuf, File>>,
}

/// The smallest byte range a file is cut into by default: more, smaller ranges than this only
/// add per-range costs (each source partition pre-aggregates on its own and sends its partial
/// results to every partition), while reading is parallel only up to the workers' source slots.
pub const DEFAULT_MIN_SPLIT: u64 = 8 << 20;

impl TextDirSource {
    /// A source reading the files of `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            min_split: DEFAULT_MIN_SPLIT,
            parked: Arc::default(),
        }
    }

    /// Cuts files into ranges of at least `bytes` (default [`DEFAULT_MIN_SPLIT`]; 1 cuts as
    /// finely as the partitions allow).
    pub fn with_min_split(mut self, bytes: u64) -> Self {
        self.min_split = bytes.max(1);
        self
    }

    /// The directory it reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The input files with their sizes, in name order.
    fn list_files(&self) -> Result<Vec<(PathBuf, u64)>, DataflowError> {
        let dir = &self.dir;
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| DataflowError::io(dir, e))? {
            let entry = entry.map_err(|e| DataflowError::io(dir, e))?;
            if matches!(entry.file_name().as_encoded_bytes().first(), Some(b'.' | b'_')) {
                continue;
            }
            let path = entry.path();
            // `fs::metadata` follows symlinks: a link to a regular file is read.
            let meta = fs::metadata(&path).map_err(|e| DataflowError::io(&path, e))?;
            if meta.is_file() {
                files.push((path, meta.len()));
            }
        }
        files.sort_by(|a, b| path_bytes(&a.0).cmp(path_bytes(&b.0)));
        Ok(files)
    }
}

impl Source for TextDirSource {
    type Item = String;

    fn empty_partitions(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        let plan = plan_splits_min(&self.list_files()?, num_partitions, self.min_split);
        Ok(Some(plan.iter().map(Vec::is_empty).collect()))
    }

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        let share = || {
            let mut plan = plan_splits_min(&self.list_files()?, ctx.num_partitions, self.min_split);
            Ok(plan.swap_remove(ctx.partition))
        };
        let mut open = |split: &Split| {
            let file = File::open(&split.path).map_err(|e| DataflowError::io(&split.path, e))?;
            Ok((split.path.display().to_string(), file))
        };
        self.parked.read(ctx, offset, share, &mut open, emit)
    }

    fn validate(&self) -> Result<(), DataflowError> {
        let shown = self.dir.display();
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => self.list_files().map(|_| ()),
            Ok(_) => Err(DataflowError::InvalidJob(format!(
                "input path {shown} is not a directory"
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(DataflowError::InvalidJob(format!(
                "input directory {shown} does not exist"
            ))),
            Err(e) => Err(DataflowError::io(&self.dir, e)),
        }
    }
}
