//! The built-in jobs of `swd`: `wordcount` and `repartition`, both over a directory of text
//! files, written with the public builder like any user job.

use super::sinks::TextDirSink;
use super::sources::{TextDirSource, Throttled};
use super::{DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, Stream};

/// The job's input with the optional `rate` parameter (lines per second per source partition).
fn input(spec: &JobSpec) -> Result<Throttled<TextDirSource>, DataflowError> {
    let rate = match spec.params.get("rate") {
        Some(rate) => rate.parse().map_err(|_| {
            DataflowError::InvalidJob(format!(
                "parameter rate={rate:?} is not a number of records per second"
            ))
        })?,
        None => 0,
    };
    Ok(Throttled::new(
        TextDirSource::new(spec.require_input()?.clone()),
        rate,
    ))
}

/// Word count: words are maximal runs of non-whitespace characters (`char::is_whitespace`);
/// output lines `word<TAB>count`, one per distinct word, when the input ends. Parameter
/// `rate`: lines per second per source partition (default unlimited).
pub fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(Stream::from_source(input(spec)?)
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .count()
        .map(|(word, n)| format!("{word}\t{n}"))
        .sink(output))
}

/// Repartition: every input line goes, by a stable hash of the line, to the partition that owns
/// it and is written there; the output is the input's lines, reordered.
pub fn repartition(spec: &JobSpec) -> Result<Job, DataflowError> {
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(Stream::from_source(input(spec)?)
        .exchange(HashPartitioner)
        .sink(output))
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
