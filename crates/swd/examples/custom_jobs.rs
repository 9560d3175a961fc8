//! A user's own binary with its own jobs and the whole `swd` command line: register jobs in a
//! registry and hand it to `swd::main_with`. Every process of the cluster (coordinator and
//! workers) is this binary, so every worker can build the job by name.
//!
//! ```text
//! cargo run -p swd --example custom_jobs -- local --workers 2 --job longest-words \
//!     --input data/sample --output /tmp/longest
//! ```

use std::process::ExitCode;

use streamweave_distributed::dataflow::jobs;
use streamweave_distributed::{DataflowError, Job, JobSpec, Stream, TextDirSink, TextDirSource};

/// For every word length, the alphabetically first word of that length (a keyed reduce).
fn longest_words(spec: &JobSpec) -> Result<Job, DataflowError> {
    let input = TextDirSource::new(spec.require_input()?.clone());
    let output = TextDirSink::new(spec.require_output()?.clone());
    Ok(Stream::from_source(input)
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .key_by(|word: &String| word.chars().count() as u64)
        .reduce(|a: String, b: String| a.min(b))
        .map(|(length, word)| format!("{length}\t{word}"))
        .sink(output))
}

/// The allocator `swd` itself runs on (see its `main.rs`): glibc's malloc stalls a worker's
/// threads while it frees a large partition's state.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // The built-in jobs, plus ours.
    let mut registry = jobs::builtin();
    registry.register("longest-words", "the first word of every length", longest_words);
    swd::main_with(registry)
}
