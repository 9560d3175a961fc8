//! A rate limit on any source: at most `rate` records per second per source partition, so a job
//! can be made to run long enough to watch, rebalance or crash it on purpose.

use std::time::{Duration, Instant};

use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

/// Wraps a source and paces its records.
///
/// ```
/// use streamweave_distributed::dataflow::sources::{CollectionSource, Throttled};
/// let slow = Throttled::new(CollectionSource::new(vec![1, 2, 3]), 1000);
/// assert_eq!(slow.rate(), 1000);
/// ```
#[derive(Debug, Clone)]
pub struct Throttled<S> {
    inner: S,
    rate: u64,
}

impl<S> Throttled<S> {
    /// At most `rate` records per second per partition (0 means unlimited).
    pub fn new(inner: S, rate: u64) -> Self {
        Throttled { inner, rate }
    }

    /// The limit.
    pub fn rate(&self) -> u64 {
        self.rate
    }
}

impl<S: Source> Source for Throttled<S> {
    type Item = S::Item;

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(Self::Item) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        self.read_interruptible(ctx, offset, &|| false, emit)
    }

    fn read_interruptible(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        interrupted: &dyn Fn() -> bool,
        emit: &mut dyn FnMut(Self::Item) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        if self.rate == 0 {
            return self.inner.read_interruptible(ctx, offset, interrupted, emit);
        }
        let start = Instant::now();
        let mut sent = 0u64;
        let rate = self.rate;
        self.inner
            .read_interruptible(ctx, offset, interrupted, &mut |item| {
                sent += 1;
                // Sleep until this record's slot; the schedule is absolute, so no drift accumulates.
                let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                emit(item)
            })
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.inner.validate()
    }

    fn is_bounded(&self) -> bool {
        self.inner.is_bounded()
    }

    fn is_paced(&self) -> bool {
        self.rate > 0 || self.inner.is_paced()
    }

    fn empty_partitions(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        self.inner.empty_partitions(num_partitions)
    }

    fn lag(&self, partition: usize) -> Option<u64> {
        self.inner.lag(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::sources::CollectionSource;

    /// A source with nothing to read that reports a lag of `10 * partition`.
    struct Lagging;

    impl Source for Lagging {
        type Item = u8;

        fn read(
            &self,
            _: &SourceContext,
            offset: SourceOffset,
            _: &mut dyn FnMut(u8) -> Flow,
        ) -> Result<SourceEnd, DataflowError> {
            Ok(SourceEnd::Exhausted(offset))
        }

        fn lag(&self, partition: usize) -> Option<u64> {
            Some(10 * partition as u64)
        }
    }

    #[test]
    fn the_lag_is_the_inner_sources() {
        assert_eq!(Throttled::new(Lagging, 100).lag(3), Some(30));
        let plain = Throttled::new(CollectionSource::new(vec![1u8]), 100);
        assert_eq!(plain.lag(0), None);
    }

    #[test]
    fn paces_records_and_keeps_them_all() {
        let source = Throttled::new(CollectionSource::new((0..40).collect::<Vec<u32>>()), 400);
        let ctx = SourceContext {
            partition: 0,
            num_partitions: 2,
        };
        let start = Instant::now();
        let mut got = Vec::new();
        let end = source.read(&ctx, SourceOffset(0), &mut |x| {
            got.push(x);
            Flow::Continue
        });
        // 20 records at 400/s take at least 50 ms (a lower bound only: never flaky).
        assert!(start.elapsed() >= Duration::from_millis(49));
        assert_eq!(got, (0..40).step_by(2).collect::<Vec<_>>());
        assert!(matches!(end, Ok(SourceEnd::Exhausted(_))));
    }
}
