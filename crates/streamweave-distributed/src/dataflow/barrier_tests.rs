//! Source tasks at a checkpoint barrier: pausing stops after the current record, flushes
//! everything read (pre-aggregated partials included) and reports the offset to resume from;
//! resuming from it reads the rest, so every record is sent exactly once. Stage state survives
//! a snapshot and restore.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use super::plan::{Batch, ExchangeOut, SourceControl};
use super::{DataflowError, HashPartitioner, SinkContext, SourceContext, SourceEnd, SourceOffset, Stream};
use crate::dataflow::sinks::CollectorSink;
use crate::dataflow::sources::CollectionSource;

/// Collects what a source task sends; pauses the task after `pause_after` batches.
struct FakeOut<'a> {
    partitions: usize,
    control: &'a SourceControl,
    pause_after: Option<usize>,
    sent: Vec<(usize, Vec<u8>)>,
}

impl ExchangeOut for FakeOut<'_> {
    fn num_partitions(&self) -> usize {
        self.partitions
    }

    fn is_local(&self, _q: usize) -> bool {
        false
    }

    fn send(&mut self, q: usize, batch: Batch) -> Result<(), DataflowError> {
        match batch {
            Batch::Encoded(bytes) => self.sent.push((q, bytes)),
            Batch::Local(_) => panic!("every partition is remote here"),
        }
        if self.pause_after == Some(self.sent.len()) {
            self.control.pause.store(true, Ordering::Release);
        }
        Ok(())
    }

    fn cancelled(&self) -> bool {
        false
    }
}

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{} w{} common", i % 7, i % 3)).collect()
}

fn ctx() -> SourceContext {
    SourceContext {
        partition: 0,
        num_partitions: 1,
    }
}

#[test]
fn a_paused_exchange_sends_everything_read_and_resumes_exactly_where_it_stopped() {
    let input = lines(5000);
    let job = Stream::from_source(CollectionSource::new(input.clone()))
        .exchange(HashPartitioner)
        .sink(CollectorSink::new());
    let control = SourceControl::default();
    let mut out = FakeOut {
        partitions: 3,
        control: &control,
        pause_after: Some(1),
        sent: Vec::new(),
    };
    let first = job
        .plan
        .run_source(&ctx(), SourceOffset(0), &control, &mut out)
        .unwrap();
    let SourceEnd::Stopped(offset) = first else {
        panic!("expected a stop at the barrier, got {first:?}")
    };
    assert!(offset.0 > 0 && (offset.0 as usize) < input.len(), "{offset:?}");
    let before: Vec<String> = out
        .sent
        .iter()
        .flat_map(|(_, b)| postcard::from_bytes::<Vec<String>>(b).unwrap())
        .collect();
    assert_eq!(
        before.len() as u64,
        offset.0,
        "every record read before the barrier was sent"
    );
    control.pause.store(false, Ordering::Release);
    out.pause_after = None;
    out.sent.clear();
    let second = job.plan.run_source(&ctx(), offset, &control, &mut out).unwrap();
    assert!(matches!(second, SourceEnd::Exhausted(_)), "{second:?}");
    let after: Vec<String> = out
        .sent
        .iter()
        .flat_map(|(_, b)| postcard::from_bytes::<Vec<String>>(b).unwrap())
        .collect();
    let mut all = [before, after].concat();
    all.sort();
    let mut expected = input;
    expected.sort();
    assert_eq!(all, expected, "each record exactly once across the barrier");
    assert_eq!(control.records_in.load(Ordering::Relaxed), 5000);
}

#[test]
fn a_paused_pre_aggregation_flushes_its_partials_at_the_barrier() {
    let input = lines(3000);
    let job = Stream::from_source(CollectionSource::new(input.clone()))
        .count_keys::<String, str>(|line: &String, emit| line.split_whitespace().for_each(emit))
        .sink(CollectorSink::new());
    let control = SourceControl::default();
    control.pause.store(true, Ordering::Release);
    let mut out = FakeOut {
        partitions: 2,
        control: &control,
        pause_after: None,
        sent: Vec::new(),
    };
    let SourceEnd::Stopped(offset) = job
        .plan
        .run_source(&ctx(), SourceOffset(0), &control, &mut out)
        .unwrap()
    else {
        panic!("expected a stop")
    };
    assert_eq!(offset, SourceOffset(1), "stops after the record being read");
    assert!(
        !out.sent.is_empty(),
        "the partial counts of that record went out before the barrier"
    );
    control.pause.store(false, Ordering::Release);
    assert!(matches!(
        job.plan.run_source(&ctx(), offset, &control, &mut out).unwrap(),
        SourceEnd::Exhausted(_)
    ));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, bytes) in &out.sent {
        for (word, n) in postcard::from_bytes::<Vec<(String, u64)>>(bytes).unwrap() {
            *counts.entry(word).or_default() += n;
        }
    }
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in &input {
        for word in line.split_whitespace() {
            *expected.entry(word.to_string()).or_default() += 1;
        }
    }
    assert_eq!(counts, expected);
}

#[test]
fn keyed_state_survives_snapshot_and_restore() {
    let sink = CollectorSink::new();
    let job = Stream::from_source(CollectionSource::new(vec![String::new()]))
        .count_keys::<String, str>(|line: &String, emit| line.split_whitespace().for_each(emit))
        .sink(sink.clone());
    let sink_ctx = SinkContext {
        partition: 0,
        num_partitions: 1,
        attempt: 1,
    };
    let mut receiver = job.plan.open_receiver(&sink_ctx).unwrap();
    let batch = |pairs: Vec<(String, u64)>| Batch::Encoded(postcard::to_stdvec(&pairs).unwrap());
    receiver
        .on_batch(batch(vec![("a".into(), 2), ("b".into(), 1)]))
        .unwrap();
    let state = receiver.snapshot().unwrap();
    // A new attempt restores the state and goes on.
    let mut restored = job
        .plan
        .open_receiver(&SinkContext {
            attempt: 2,
            ..sink_ctx
        })
        .unwrap();
    restored.restore(&state).unwrap();
    restored.on_batch(batch(vec![("a".into(), 1)])).unwrap();
    assert_eq!(restored.finish().unwrap(), 2);
    let mut got = sink.collected();
    got.sort();
    assert_eq!(got, vec![("a".to_string(), 3), ("b".to_string(), 1)]);
}

#[test]
fn a_restored_partition_counts_its_output_from_the_checkpoint_on() {
    let job = Stream::from_source(CollectionSource::new(vec![String::new()])).sink(CollectorSink::new());
    let sink_ctx = SinkContext {
        partition: 0,
        num_partitions: 1,
        attempt: 1,
    };
    let lines = |n: usize| Batch::Local(Box::new(lines(n)));
    let mut receiver = job.plan.open_receiver(&sink_ctx).unwrap();
    receiver.on_batch(lines(5)).unwrap();
    let state = receiver.snapshot().unwrap();
    // Its new owner (or the next attempt) restores the count with the state.
    let mut restored = job.plan.open_receiver(&sink_ctx).unwrap();
    restored.restore(&state).unwrap();
    restored.on_batch(lines(3)).unwrap();
    assert_eq!(restored.finish().unwrap(), 8, "the partition's whole output");
    let mut broken = job.plan.open_receiver(&sink_ctx).unwrap();
    assert!(broken.restore(&state[..4]).is_err(), "a torn snapshot is refused");
}
