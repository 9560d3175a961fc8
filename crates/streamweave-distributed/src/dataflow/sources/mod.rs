//! Built-in sources: the lines of a directory of text files ([`TextDirSource`]) or of the
//! objects under a prefix of an object store ([`ObjectTextSource`]), an in-memory
//! collection ([`CollectionSource`]), a deterministic generator ([`GeneratorSource`]), a NATS
//! JetStream stream ([`JetStreamSource`]), and a rate limit for any of them ([`Throttled`]).
//!
//! Every source splits its input into `P` shares the same way on every machine, so the task of
//! partition `p` can run anywhere and resume from the [`SourceOffset`](super::SourceOffset) it
//! last reported.

mod collection;
mod generator;
mod jetstream;
mod object_text;
// Visible to the crate for `crate::fuzzing`.
pub(crate) mod text_dir;
mod throttled;

pub use collection::CollectionSource;
pub use generator::GeneratorSource;
pub use jetstream::{JetStreamSource, Until};
pub use object_text::ObjectTextSource;
pub use text_dir::{plan_splits, plan_splits_min, Split, SplitName, TextDirSource, DEFAULT_MIN_SPLIT};
pub use throttled::Throttled;

use super::{DataflowError, SourceContext};

/// Rejects a context whose partition is not in `0..num_partitions`.
fn check_context(ctx: &SourceContext) -> Result<(), DataflowError> {
    if ctx.partition < ctx.num_partitions {
        Ok(())
    } else {
        Err(DataflowError::InvalidJob(format!(
            "source partition {} is not in 0..{}",
            ctx.partition, ctx.num_partitions
        )))
    }
}

/// Reads `source`'s share of `partition` (of `num_partitions`) from `offset`, stopping after
/// `stop_after` lines if given: the lines and how the read ended.
#[cfg(test)]
pub(crate) fn read_lines(
    source: &dyn super::Source<Item = String>,
    partition: usize,
    num_partitions: usize,
    offset: super::SourceOffset,
    stop_after: Option<usize>,
) -> (Vec<String>, super::SourceEnd) {
    let ctx = SourceContext {
        partition,
        num_partitions,
    };
    let mut lines = Vec::new();
    let end = source
        .read(&ctx, offset, &mut collect_until(&mut lines, stop_after))
        .expect("read a test share");
    (lines, end)
}

/// A test's `emit`: collects lines into `lines`, asking to stop once it holds `stop_after`.
#[cfg(test)]
pub(crate) fn collect_until(
    lines: &mut Vec<String>,
    stop_after: Option<usize>,
) -> impl FnMut(String) -> super::Flow + '_ {
    move |line| {
        lines.push(line);
        match Some(lines.len()) == stop_after {
            true => super::Flow::Stop,
            false => super::Flow::Continue,
        }
    }
}
