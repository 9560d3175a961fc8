//! The job: a word count whose tokenizer (before the exchange) and formatter (after it) are
//! the user's StreamWeave transformers. `--param via=native` runs the same functions as native
//! operators instead, to measure what the adapter costs per record. And `streamweave-sorted`:
//! lines spread over the partitions by a hash, each partition's sorted by a stateful
//! transformer (bounded input only: it runs once, at the end, over the buffered partition).

use streamweave_distributed::dataflow::sinks::TextDirSink;
use streamweave_distributed::dataflow::sources::{TextDirSource, Throttled};
use streamweave_distributed::dataflow::{DataflowError, HashPartitioner, Job, JobRegistry, JobSpec, Stream};

use super::transformers::{words, Formatter, SortLines, Tokenizer};

/// Registers `streamweave-wordcount` and `streamweave-sorted`.
pub fn register(registry: &mut JobRegistry) {
    registry.register(
        "streamweave-wordcount",
        "word count through StreamWeave transformers (params: rate, via=streamweave|native)",
        wordcount,
    );
    registry.register(
        "streamweave-sorted",
        "lines hashed to partitions, each sorted by a stateful StreamWeave transformer (param: rate)",
        sorted,
    );
}

/// The input's lines, at most `rate` per second per partition (parameter `rate`; 0: no limit).
fn lines(spec: &JobSpec) -> Result<Stream<String>, DataflowError> {
    let rate = match spec.params.get("rate") {
        Some(r) => r
            .parse()
            .map_err(|_| DataflowError::InvalidJob(format!("parameter rate={r:?} is not a number")))?,
        None => 0,
    };
    let input = TextDirSource::new(spec.require_input()?.clone());
    Ok(Stream::from_source(Throttled::new(input, rate)))
}

fn sorted(spec: &JobSpec) -> Result<Job, DataflowError> {
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(lines(spec)?
        .exchange(HashPartitioner)
        .through_streamweave_stateful(SortLines::default)
        .sink(output))
}

fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let lines = lines(spec)?;
    let output = TextDirSink::new(spec.require_output()?.clone());
    match spec.params.get("via").map(String::as_str) {
        None | Some("streamweave") => Ok(lines
            .through_streamweave(Tokenizer::default)
            .count()
            .through_streamweave(Formatter::default)
            .sink(output)),
        Some("native") => Ok(lines
            .flat_map(|line: String| words(&line))
            .count()
            .map(|(word, count)| format!("{word}\t{count}"))
            .sink(output)),
        Some(other) => Err(DataflowError::InvalidJob(format!(
            "parameter via={other:?}: expected streamweave or native"
        ))),
    }
}
