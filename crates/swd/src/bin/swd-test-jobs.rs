//! `swd` with one more job, for the process tests of failing jobs (`tests/job_failures.rs`):
//! the built-in jobs plus `poison`, a repartition whose map panics on every line containing
//! `POISON`, as a user's job with a bug would. Built by `cargo test` like any binary of the
//! package, so the tests find it (`CARGO_BIN_EXE_swd-test-jobs`). It also registers the
//! StreamWeave example's job (`examples/streamweave/`), for `tests/streamweave.rs`.
//!
//! ```text
//! swd-test-jobs local --workers 2 --job poison --input DIR --output OUT [--param at=receiver]
//! ```

use std::process::ExitCode;

// The StreamWeave example's own files, so the process tests run the example's exact code.
#[path = "../../examples/streamweave/job.rs"]
mod streamweave_job;
#[path = "../../examples/streamweave/transformers.rs"]
mod transformers;

use streamweave_distributed::dataflow::sinks::TextDirSink;
use streamweave_distributed::dataflow::sources::TextDirSource;
use streamweave_distributed::dataflow::{jobs, DataflowError, HashPartitioner, Job, JobSpec, Stream};

/// Lines routed by a hash, as `repartition`; the map panics on a line containing `POISON`:
/// in the source task (the default, `at=source`) or after the exchange in the receiving
/// partition (`at=receiver`).
fn poison(spec: &JobSpec) -> Result<Job, DataflowError> {
    let input = Stream::from_source(TextDirSource::new(spec.require_input()?.clone()));
    let output = TextDirSink::new(spec.require_output()?.clone());
    let check = |line: String| {
        if line.contains("POISON") {
            panic!("poison record");
        }
        line
    };
    match spec.params.get("at").map(String::as_str) {
        None | Some("source") => Ok(input.map(check).exchange(HashPartitioner).sink(output)),
        Some("receiver") => Ok(input.exchange(HashPartitioner).map(check).sink(output)),
        Some(other) => Err(DataflowError::InvalidJob(format!(
            "parameter at={other:?}: expected source or receiver"
        ))),
    }
}

fn main() -> ExitCode {
    let mut registry = jobs::builtin();
    registry.register(
        "poison",
        "repartition that panics on a line containing POISON (tests)",
        poison,
    );
    streamweave_job::register(&mut registry);
    swd::main_with(registry)
}
