//! Text input and output by URL: a job spec's `--input` / `--output` names a local directory
//! (a plain path or `file:///path`) or an object store prefix (`s3://bucket/prefix`,
//! `memory://name/prefix`); [`TextInput`] and [`TextOutput`] pick the matching source and sink,
//! so a job is written once for both.
//!
//! ```text
//! spec path --StorageUrl::parse--> Local(dir)      --> TextDirSource / TextDirSink
//!                                  S3 or Memory    --> ObjectTextSource / ObjectTextSink
//! ```

use std::path::Path;

use super::sinks::{ObjectTextSink, TextDirSink};
use super::sources::{ObjectTextSource, TextDirSource};
use super::{
    DataflowError, Flow, Sink, SinkContext, SinkWriter, Source, SourceContext, SourceEnd, SourceOffset,
};
use crate::storage::StorageUrl;

/// Where a job spec's input or output path points: a path that is not UTF-8 is a local path.
///
/// ```
/// use std::path::Path;
/// use streamweave_distributed::dataflow::storage_url;
/// assert!(storage_url(Path::new("/data/in")).unwrap().is_local());
/// assert!(!storage_url(Path::new("s3://bucket/in")).unwrap().is_local());
/// ```
pub fn storage_url(path: &Path) -> Result<StorageUrl, DataflowError> {
    match path.to_str() {
        Some(text) => StorageUrl::parse(text).map_err(DataflowError::from),
        None => Ok(StorageUrl::Local(path.to_path_buf())),
    }
}

/// The lines of a directory's files or of the objects under a prefix (see the module docs).
#[derive(Clone, Debug)]
pub enum TextInput {
    /// A local directory.
    Dir(TextDirSource),
    /// An object store prefix.
    Objects(ObjectTextSource),
}

impl TextInput {
    /// The source for `path` (a path or URL), cutting files into ranges of at least
    /// `min_split` bytes.
    pub fn new(path: &Path, min_split: u64) -> Result<Self, DataflowError> {
        Ok(match storage_url(path)? {
            StorageUrl::Local(dir) => TextInput::Dir(TextDirSource::new(dir).with_min_split(min_split)),
            url => TextInput::Objects(ObjectTextSource::new(&url)?.with_min_split(min_split)),
        })
    }
}

impl Source for TextInput {
    type Item = String;

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        match self {
            TextInput::Dir(source) => source.read(ctx, offset, emit),
            TextInput::Objects(source) => source.read(ctx, offset, emit),
        }
    }

    fn validate(&self) -> Result<(), DataflowError> {
        match self {
            TextInput::Dir(source) => source.validate(),
            TextInput::Objects(source) => source.validate(),
        }
    }

    fn empty_partitions(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        match self {
            TextInput::Dir(source) => source.empty_partitions(num_partitions),
            TextInput::Objects(source) => source.empty_partitions(num_partitions),
        }
    }
}

/// Part files in a directory or objects under a prefix, exactly once (see the module docs).
#[derive(Clone, Debug)]
pub enum TextOutput {
    /// A local directory.
    Dir(TextDirSink),
    /// An object store prefix.
    Objects(ObjectTextSink),
}

impl TextOutput {
    /// The sink for `path` (a path or URL).
    pub fn new(path: &Path) -> Result<Self, DataflowError> {
        Ok(match storage_url(path)? {
            StorageUrl::Local(dir) => TextOutput::Dir(TextDirSink::new(dir)),
            url => TextOutput::Objects(ObjectTextSink::new(&url)?),
        })
    }

    fn sink(&self) -> &dyn Sink<Item = String> {
        match self {
            TextOutput::Dir(sink) => sink,
            TextOutput::Objects(sink) => sink,
        }
    }
}

impl Sink for TextOutput {
    type Item = String;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<String>>, DataflowError> {
        self.sink().open(ctx)
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.sink().validate()
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        self.sink().commit_epochs(partition, upto)
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        self.sink().discard_after(partition, after)
    }
}
