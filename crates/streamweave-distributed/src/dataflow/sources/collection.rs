//! [`CollectionSource`]: records from a `Vec` held in memory, dealt out round-robin.

use std::sync::Arc;

use crate::dataflow::{DataflowError, Flow, Source, SourceContext, SourceEnd, SourceOffset};

/// The items of a `Vec`: partition `p` of `P` reads the items whose index `i` has `i % P == p`,
/// in order. Its [`SourceOffset`] is the number of records of the share already emitted.
#[derive(Debug)]
pub struct CollectionSource<T> {
    items: Arc<[T]>,
}

impl<T> CollectionSource<T> {
    /// A source of `items`.
    pub fn new(items: Vec<T>) -> Self {
        Self { items: items.into() }
    }
}

// Cloning shares the items; no `T: Clone` bound needed.
impl<T> Clone for CollectionSource<T> {
    fn clone(&self) -> Self {
        Self {
            items: Arc::clone(&self.items),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Source for CollectionSource<T> {
    type Item = T;

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(T) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        super::check_context(ctx)?;
        let mut next = offset.0;
        let share = self.items.iter().skip(ctx.partition).step_by(ctx.num_partitions);
        let skip = usize::try_from(offset.0).unwrap_or(usize::MAX);
        for item in share.skip(skip) {
            next += 1;
            if emit(item.clone()) == Flow::Stop {
                return Ok(SourceEnd::Stopped(SourceOffset(next)));
            }
        }
        Ok(SourceEnd::Exhausted(SourceOffset(next)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        source: &CollectionSource<u32>,
        p: usize,
        n: usize,
        from: u64,
        stop: Option<usize>,
    ) -> (Vec<u32>, SourceEnd) {
        let mut out = Vec::new();
        let ctx = SourceContext {
            partition: p,
            num_partitions: n,
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
    fn partitions_take_every_pth_item_in_order() {
        let source = CollectionSource::new((0..10).collect());
        assert_eq!(
            read(&source, 0, 3, 0, None),
            (vec![0, 3, 6, 9], SourceEnd::Exhausted(SourceOffset(4)))
        );
        assert_eq!(
            read(&source, 1, 3, 0, None),
            (vec![1, 4, 7], SourceEnd::Exhausted(SourceOffset(3)))
        );
        assert_eq!(
            read(&source, 2, 3, 0, None),
            (vec![2, 5, 8], SourceEnd::Exhausted(SourceOffset(3)))
        );
        assert_eq!(
            read(&source, 5, 12, 0, None),
            (vec![5], SourceEnd::Exhausted(SourceOffset(1)))
        );
        assert_eq!(
            read(&source, 11, 12, 0, None),
            (vec![], SourceEnd::Exhausted(SourceOffset(0)))
        );
    }

    #[test]
    fn offsets_count_emitted_records_and_resume() {
        let source = CollectionSource::new((0..10).collect());
        assert_eq!(
            read(&source, 1, 3, 0, Some(2)),
            (vec![1, 4], SourceEnd::Stopped(SourceOffset(2)))
        );
        assert_eq!(
            read(&source, 1, 3, 2, None),
            (vec![7], SourceEnd::Exhausted(SourceOffset(3)))
        );
        assert_eq!(
            read(&source, 1, 3, 3, None),
            (vec![], SourceEnd::Exhausted(SourceOffset(3)))
        );
        assert_eq!(
            read(&source, 1, 3, u64::MAX, None),
            (vec![], SourceEnd::Exhausted(SourceOffset(u64::MAX)))
        );
    }

    #[test]
    fn a_partition_outside_the_range_is_an_error() {
        let source = CollectionSource::new(vec![1u32]);
        let ctx = SourceContext {
            partition: 0,
            num_partitions: 0,
        };
        assert!(source
            .read(&ctx, SourceOffset(0), &mut |_| Flow::Continue)
            .is_err());
    }
}
