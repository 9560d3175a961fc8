//! The job: a word count whose tokenizer (before the exchange) and formatter (after it) are
//! the user's StreamWeave transformers. `--param via=native` runs the same functions as native
//! operators instead, to measure what the adapter costs per record.

use streamweave_distributed::dataflow::sinks::TextDirSink;
use streamweave_distributed::dataflow::sources::{TextDirSource, Throttled};
use streamweave_distributed::dataflow::{DataflowError, Job, JobRegistry, JobSpec, Stream};

use super::transformers::{words, Formatter, Tokenizer};

/// Registers `streamweave-wordcount`.
pub fn register(registry: &mut JobRegistry) {
    registry.register(
        "streamweave-wordcount",
        "word count through StreamWeave transformers (params: rate, via=streamweave|native)",
        wordcount,
    );
}

fn wordcount(spec: &JobSpec) -> Result<Job, DataflowError> {
    let rate = match spec.params.get("rate") {
        Some(r) => r
            .parse()
            .map_err(|_| DataflowError::InvalidJob(format!("parameter rate={r:?} is not a number")))?,
        None => 0,
    };
    let input = TextDirSource::new(spec.require_input()?.clone());
    let lines = Stream::from_source(Throttled::new(input, rate));
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
