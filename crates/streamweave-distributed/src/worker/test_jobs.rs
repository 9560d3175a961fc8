//! A word count whose receivers unit tests drive by hand: batches of counts in, state segments
//! out, without a cluster.

use crate::dataflow::plan::Batch;
use crate::dataflow::sinks::CollectorSink;
use crate::dataflow::sources::CollectionSource;
use crate::dataflow::{SinkContext, Stream};

/// A batch of pre-aggregated counts, as a sender would route it.
pub(crate) fn counts(pairs: &[(&str, u64)]) -> Batch {
    let pairs: Vec<(String, u64)> = pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    Batch::Encoded(postcard::to_stdvec(&pairs).expect("counts encode"))
}

/// The context of the one partition of a one-partition job, in `attempt`.
pub(crate) fn only_partition(attempt: u64) -> SinkContext {
    SinkContext {
        partition: 0,
        num_partitions: 1,
        attempt,
    }
}

/// A word count into `sink` (its receivers are what the tests drive).
pub(crate) fn word_count(sink: &CollectorSink<(String, u64)>) -> crate::dataflow::Job {
    Stream::from_source(CollectionSource::new(vec![String::new()]))
        .count_keys::<String, str>(|line: &String, emit| line.split_whitespace().for_each(emit))
        .sink(sink.clone())
}
