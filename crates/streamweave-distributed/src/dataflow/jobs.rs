//! The built-in jobs of `swd`: `wordcount` and `repartition`, both over a directory of text
//! files, written with the public builder like any user job.

use super::sinks::TextDirSink;
use super::sources::TextDirSource;
use super::{DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, Stream};

/// Word count: words are maximal runs of non-whitespace characters (`char::is_whitespace`);
/// output lines `word<TAB>count`, one per distinct word, when the input ends.
pub fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let input = TextDirSource::new(spec.require_input()?.clone());
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(Stream::from_source(input)
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .count()
        .map(|(word, n)| format!("{word}\t{n}"))
        .sink(output))
}

/// Repartition: every input line goes, by a stable hash of the line, to the partition that owns
/// it and is written there; the output is the input's lines, reordered.
pub fn repartition(spec: &JobSpec) -> Result<Job, DataflowError> {
    let input = TextDirSource::new(spec.require_input()?.clone());
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(Stream::from_source(input).exchange(HashPartitioner).sink(output))
}

/// A registry holding the built-in jobs.
///
/// ```
/// let registry = streamweave_distributed::dataflow::jobs::builtin();
/// assert_eq!(registry.names(), vec!["repartition", "wordcount"]);
/// ```
pub fn builtin() -> JobRegistry {
    let mut registry = JobRegistry::new();
    registry.register(
        "wordcount",
        "count words in a directory of text files (word<TAB>count)",
        wordcount,
    );
    registry.register(
        "repartition",
        "route every line by a hash of the line to its partition",
        repartition,
    );
    registry
}
