//! Source slots: a worker reads at most `source_slots` source partitions at once, so threads do
//! not grow with partitions. Unbounded sources share the slots by turns (each gives its slot to a
//! waiting one after a quantum), and a parked source's checkpoint barriers are sent for it: with
//! one slot and six unbounded partitions, every partition makes progress, checkpoints complete
//! while most sources are parked, and the output is exact.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use streamweave_distributed::dataflow::sinks::CollectorSink;
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

/// An "unbounded" source (it says so, so it shares slots by turns) that ends after
/// `PER_PARTITION` records, a record per 100 µs, logging the order in which partitions emit.
#[derive(Clone)]
struct Trickle {
    log: Arc<Mutex<Vec<usize>>>,
}

impl Source for Trickle {
    type Item = u64;

    fn is_bounded(&self) -> bool {
        false
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
            std::thread::sleep(Duration::from_micros(100));
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
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = CollectorSink::<u64>::new();
    let mut registry = JobRegistry::new();
    let (source, collected) = (
        Trickle {
            log: Arc::clone(&log),
        },
        sink.clone(),
    );
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
