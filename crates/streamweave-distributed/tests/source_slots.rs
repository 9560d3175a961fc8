//! Source slots: a worker reads at most `source_slots` source partitions at once, so threads do
//! not grow with partitions. Unbounded sources share the slots by turns (each gives its slot to a
//! waiting one after a quantum), and a parked source's checkpoint barriers are sent for it: with
//! one slot and six unbounded partitions, every partition makes progress, checkpoints complete
//! while most sources are parked, and the output is exact. A bounded source under a rate limit
//! (`Throttled`) shares the slots the same way rather than holding one while it sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamweave_distributed::dataflow::sinks::CollectorSink;
use streamweave_distributed::dataflow::sources::Throttled;
use streamweave_distributed::dataflow::{
    DataflowError, Flow, HashPartitioner, JobRegistry, JobSpec, Source, SourceContext, SourceEnd,
    SourceOffset, Stream,
};
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::Coordinator;
use streamweave_distributed::{
    CoordinatorConfig, CoordinatorImpl, Worker, WorkerConfig, WorkerId, WorkerImpl,
};

const PARTITIONS: usize = 6;
const PER_PARTITION: u64 = 3_000;

/// A source that ends after `PER_PARTITION` records, logging the order in which partitions
/// emit. Unbounded (it says so, so it shares slots by turns), it sleeps 100 µs a record itself;
/// bounded, it does not, and is paced by a `Throttled` around it.
#[derive(Clone)]
struct Trickle {
    log: Arc<Mutex<Vec<usize>>>,
    bounded: bool,
}

impl Source for Trickle {
    type Item = u64;

    fn is_bounded(&self) -> bool {
        self.bounded
    }

    fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        emit: &mut dyn FnMut(u64) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        let mut i = offset.0;
        while i < PER_PARTITION {
            if i % 100 == 0 {
                self.log.lock().unwrap().push(ctx.partition);
            }
            if !self.bounded {
                std::thread::sleep(Duration::from_micros(100));
            }
            let record = ctx.partition as u64 * PER_PARTITION + i;
            i += 1;
            if emit(record) == Flow::Stop {
                return Ok(SourceEnd::Stopped(SourceOffset(i)));
            }
        }
        Ok(SourceEnd::Exhausted(SourceOffset(i)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_sources_share_one_slot_by_turns_and_checkpoints_still_complete() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let source = Trickle {
        log: Arc::clone(&log),
        bounded: false,
    };
    one_slot_by_turns(source, log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_bounded_sources_share_one_slot_by_turns() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let source = Trickle {
        log: Arc::clone(&log),
        bounded: true,
    };
    // 10 k records a second: about 0.3 s a partition, as the unbounded one sleeps.
    one_slot_by_turns(Throttled::new(source, 10_000), log).await;
}

/// Runs `source` on six partitions and one worker with one source slot; checks exact output,
/// that every partition started before the first one finished, and that checkpoints completed.
async fn one_slot_by_turns<S: Source<Item = u64> + Clone>(source: S, log: Arc<Mutex<Vec<usize>>>) {
    let dir = tempfile::tempdir().unwrap();
    let sink = CollectorSink::<u64>::new();
    let mut registry = JobRegistry::new();
    let collected = sink.clone();
    registry.register("trickle", "slow unbounded sources", move |_spec: &JobSpec| {
        Ok(Stream::from_source(source.clone())
            .exchange(HashPartitioner)
            .sink(collected.clone()))
    });
    let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        heartbeat_timeout: Duration::from_secs(2),
        num_partitions: PARTITIONS,
        job: Some(JobSpec::new("trickle")),
        data_dir: Some(dir.path().join("data")),
        checkpoint_interval: Some(Duration::from_millis(100)),
        ..Default::default()
    });
    coordinator.start().await.unwrap();
    let mut worker = WorkerImpl::new(WorkerConfig {
        worker_id: WorkerId::new("w1"),
        coordinator_address: coordinator.local_addr().unwrap(),
        heartbeat_interval: Duration::from_millis(100),
        source_slots: 1,
        ..Default::default()
    })
    .with_jobs(registry);
    worker.register().await.unwrap();
    worker.start().await.unwrap();
    let end = tokio::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status = coordinator.status().await.unwrap();
        if status
            .job
            .as_ref()
            .is_some_and(|j| matches!(j.state, JobState::Finished | JobState::Failed))
        {
            break status;
        }
        assert!(tokio::time::Instant::now() < end, "job did not end: {status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    worker.stop().await;
    coordinator.stop().await;
    let job = status.job.clone().unwrap();
    assert_eq!(job.state, JobState::Finished, "{status:?}");
    assert_eq!(job.restarts, 0, "{status:?}");
    let mut got = sink.collected();
    got.sort_unstable();
    let expected: Vec<u64> = (0..PARTITIONS as u64 * PER_PARTITION).collect();
    assert_eq!(got, expected, "every record exactly once");
    // Each source reads for about 0.3 s; with one slot and no turns they would run one after
    // another. By turns, every partition has started before the first one has finished.
    let log = log.lock().unwrap().clone();
    let first_done = log.iter().rposition(|&p| p == log[0]).unwrap();
    for p in 0..PARTITIONS {
        let first = log.iter().position(|&q| q == p).unwrap();
        assert!(
            first < first_done,
            "partition {p} started only after partition {} finished: {log:?}",
            log[0]
        );
    }
    // Checkpoints completed while all but one source were parked.
    let checkpoints = status.checkpoints.expect("checkpoints on");
    assert!(checkpoints.completed >= 2, "{checkpoints:?}");
}
