//! A word count whose receivers unit tests drive by hand: batches of counts in, state segments
//! out, without a cluster.

use crate::checkpoint::{
    index_name, segment_name, ChainPolicy, CheckpointId, CheckpointStore, PartitionChain, SegmentKind,
};
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

/// A chain as a writer stores it: a base at checkpoint 1 (101 words), then a delta per
/// checkpoint 2..=`last`, each adding 1 to word `a` and a new word; the chain and the counts
/// a restore must give.
pub(crate) fn stored_chain(
    job: &crate::dataflow::Job,
    store: &dyn CheckpointStore,
    last: u64,
) -> (PartitionChain, Vec<(String, u64)>) {
    let mut receiver = job.plan.open_receiver(&only_partition(1)).unwrap();
    let mut chain = PartitionChain::new(ChainPolicy::default());
    // A base much larger than a delta, as in a state where few keys change per interval.
    let mut expected: Vec<(String, u64)> = (0..100).map(|i| (format!("base{i}"), i)).collect();
    expected.push(("a".to_string(), 1));
    let batch: Vec<(&str, u64)> = expected.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    receiver.on_batch(counts(&batch)).unwrap();
    let a = expected.len() - 1;
    for id in 1..=last {
        if id > 1 {
            let word = format!("w{id}");
            receiver
                .on_batch(counts(&[("a", 1), (word.as_str(), id)]))
                .unwrap();
            expected[a].1 += 1;
            expected.push((word, id));
        }
        let kind = if id == 1 {
            SegmentKind::Base
        } else {
            SegmentKind::Delta
        };
        let (kind, bytes) = receiver.snapshot_segment(kind).unwrap();
        let name = match kind {
            SegmentKind::Base => crate::worker::state_writer::state_name(0),
            SegmentKind::Delta => segment_name(0),
        };
        let file = store.put(CheckpointId(id), &name, &bytes).unwrap();
        let index = chain.record(CheckpointId(id), kind, file);
        store
            .put(CheckpointId(id), &index_name(0), &index.encode().unwrap())
            .unwrap();
    }
    expected.sort();
    (chain, expected)
}
