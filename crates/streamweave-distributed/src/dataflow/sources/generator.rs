//! [`GeneratorSource`]: records computed from `(partition, index)`, bounded or not.

use std::fmt;
use std::sync::Arc;

use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

/// Records made by a function of `(partition, index)`: partition `p` emits `f(p, 0)`,
/// `f(p, 1)`, ... up to `records_per_partition` records, or until it is stopped if that is
/// `None`. Replays are identical as long as `f` is deterministic. Its [`SourceOffset`] is the
/// next index.
pub struct GeneratorSource<T> {
    records_per_partition: Option<u64>,
    make: Arc<dyn Fn(usize, u64) -> T + Send + Sync>,
}

impl<T> GeneratorSource<T> {
    /// A source of `records_per_partition` records per partition (`None`: unbounded), record `i`
    /// of partition `p` being `f(p, i)`.
    pub fn new(
        records_per_partition: Option<u64>,
        f: impl Fn(usize, u64) -> T + Send + Sync + 'static,
    ) -> Self {
        Self {
            records_per_partition,
            make: Arc::new(f),
        }
    }
}

impl<T> Clone for GeneratorSource<T> {
    fn clone(&self) -> Self {
        Self {
            records_per_partition: self.records_per_partition,
            make: Arc::clone(&self.make),
        }
    }
}

impl<T> fmt::Debug for GeneratorSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratorSource")
            .field("records_per_partition", &self.records_per_partition)
            .finish()
    }
}

impl<T: Send + 'static> Source for GeneratorSource<T> {
    type Item = T;

    fn is_bounded(&self) -> bool {
        self.records_per_partition.is_some()
    }

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(T) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        let limit = self.records_per_partition.unwrap_or(u64::MAX);
        let mut index = offset.0;
        while index < limit {
            let record = (self.make)(ctx.partition, index);
            index += 1;
            if emit(record) == Flow::Stop {
                return Ok(SourceEnd::Stopped(SourceOffset(index)));
            }
        }
        Ok(SourceEnd::Exhausted(SourceOffset(index)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: Send + 'static>(
        source: &GeneratorSource<T>,
        partition: usize,
        from: u64,
        stop: Option<usize>,
    ) -> (Vec<T>, SourceEnd) {
        let mut out = Vec::new();
        let ctx = SourceContext {
            partition,
            num_partitions: 4,
        };
        let end = source
            .read(&ctx, SourceOffset(from), &mut |x| {
                out.push(x);
                if Some(out.len()) == stop {
                    Flow::Stop
                } else {
                    Flow::Continue
                }
            })
            .unwrap();
        (out, end)
    }

    #[test]
    fn bounded_generator_emits_f_of_partition_and_index() {
        let source = GeneratorSource::new(Some(3), |p, i| (p, i));
        assert_eq!(
            read(&source, 2, 0, None),
            (
                vec![(2, 0), (2, 1), (2, 2)],
                SourceEnd::Exhausted(SourceOffset(3))
            )
        );
        assert_eq!(
            read(&source, 2, 0, None),
            read(&source.clone(), 2, 0, None),
            "deterministic"
        );
        assert_eq!(
            read(&source, 0, 3, None),
            (vec![], SourceEnd::Exhausted(SourceOffset(3)))
        );
        assert_eq!(
            read(&source, 0, 7, None),
            (vec![], SourceEnd::Exhausted(SourceOffset(7)))
        );
    }

    #[test]
    fn offset_is_the_next_index() {
        let source = GeneratorSource::new(Some(5), |p, i| p as u64 * 100 + i);
        assert_eq!(
            read(&source, 1, 0, Some(2)),
            (vec![100, 101], SourceEnd::Stopped(SourceOffset(2)))
        );
        assert_eq!(
            read(&source, 1, 2, None),
            (vec![102, 103, 104], SourceEnd::Exhausted(SourceOffset(5)))
        );
    }

    #[test]
    fn unbounded_generator_runs_until_stopped() {
        let source = GeneratorSource::new(None, |_, i| i);
        assert_eq!(
            read(&source, 3, 0, Some(1000)).1,
            SourceEnd::Stopped(SourceOffset(1000))
        );
        assert_eq!(
            read(&source, 3, 1000, Some(2)),
            (vec![1000, 1001], SourceEnd::Stopped(SourceOffset(1002)))
        );
    }
}
