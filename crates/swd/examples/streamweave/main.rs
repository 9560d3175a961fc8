//! A StreamWeave user's binary: their own `Transformer`s (`transformers.rs`, written against
//! the `streamweave` 0.6 traits only), plugged into a distributed job with
//! `through_streamweave` (`job.rs`), and the whole `swd` command line through `swd::main_with`.
//! Every process of the cluster is this binary, so every worker can build the job.
//!
//! ```text
//! cargo run -p swd --example streamweave -- local --workers 2 --job streamweave-wordcount \
//!     --input data/sample --output target/streamweave-sample
//! ```
//!
//! Add `--checkpoint-interval 1s` for exactly-once checkpoints, `--param rate=N` to slow the
//! input down to N lines per second per partition, and `--param bench=1` for the cost check
//! (`streamweave-cost`, see the README).

use std::process::ExitCode;

mod job;
mod transformers;

fn main() -> ExitCode {
    let mut registry = streamweave_distributed::dataflow::jobs::builtin();
    job::register(&mut registry);
    swd::main_with(registry)
}
