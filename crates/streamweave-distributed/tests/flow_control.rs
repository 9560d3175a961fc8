//! Credit-based flow control: a deliberately slow sink must slow its producers, so the records
//! produced but not yet written stay within what the credits allow, instead of the whole input
//! piling up in memory. Two workers in one process, real TCP between them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamweave_distributed::dataflow::sources::GeneratorSource;
use streamweave_distributed::dataflow::{
    DataflowError, HashPartitioner, JobRegistry, JobSpec, Sink, SinkContext, SinkWriter, Stream,
};
use streamweave_distributed::internals::plan::BATCH_RECORDS;
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::worker::CREDITS_PER_CHANNEL;
use streamweave_distributed::Coordinator;
use streamweave_distributed::{
    CoordinatorConfig, CoordinatorImpl, Worker, WorkerConfig, WorkerId, WorkerImpl,
};

const PARTITIONS: usize = 2;
const PER_PARTITION: u64 = 60_000;

/// Counts what it writes and takes its time doing so.
#[derive(Clone)]
struct SlowSink {
    written: Arc<AtomicU64>,
}

struct SlowWriter {
    written: Arc<AtomicU64>,
}

impl Sink for SlowSink {
    type Item = u64;

    fn open(&self, _ctx: &SinkContext) -> Result<Box<dyn SinkWriter<u64>>, DataflowError> {
        Ok(Box::new(SlowWriter {
            written: Arc::clone(&self.written),
        }))
    }
}

impl SinkWriter<u64> for SlowWriter {
    fn write(&mut self, _item: u64) -> Result<(), DataflowError> {
        if self.written.fetch_add(1, Ordering::Relaxed) % 64 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), DataflowError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_sink_bounds_what_producers_run_ahead() {
    let produced = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let mut registry = JobRegistry::new();
    let (p, w) = (Arc::clone(&produced), Arc::clone(&written));
    registry.register(
        "slow",
        "a fast generator into a slow sink",
        move |_spec: &JobSpec| {
            let produced = Arc::clone(&p);
            Ok(
                Stream::from_source(GeneratorSource::new(Some(PER_PARTITION), |partition, i| {
                    i * 2 + partition as u64
                }))
                .map(move |x| {
                    produced.fetch_add(1, Ordering::Relaxed);
                    x
                })
                .exchange(HashPartitioner)
                .sink(SlowSink {
                    written: Arc::clone(&w),
                }),
            )
        },
    );
    let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        num_partitions: PARTITIONS,
        min_workers: 2,
        job: Some(JobSpec::new("slow")),
        ..Default::default()
    });
    coordinator.start().await.unwrap();
    let mut workers = Vec::new();
    for id in ["a", "b"] {
        let config = WorkerConfig {
            worker_id: WorkerId::new(id),
            coordinator_address: coordinator.local_addr().unwrap(),
            heartbeat_interval: Duration::from_millis(100),
            ..Default::default()
        };
        let mut worker = WorkerImpl::new(config).with_jobs(registry.clone());
        worker.register().await.unwrap();
        worker.start().await.unwrap();
        workers.push(worker);
    }
    // Each of the two source tasks may have, per destination partition, its credits in flight,
    // one batch being applied and one being filled: everything else must wait.
    let bound = (PARTITIONS * PARTITIONS * (CREDITS_PER_CHANNEL + 2) * BATCH_RECORDS) as u64;
    let total = PER_PARTITION * PARTITIONS as u64;
    let mut max_ahead = 0;
    let mut samples_while_lagging = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (p, w) = (produced.load(Ordering::Relaxed), written.load(Ordering::Relaxed));
        max_ahead = max_ahead.max(p.saturating_sub(w));
        if p < total && w > 0 {
            samples_while_lagging += 1;
        }
        let status = coordinator.status().await.unwrap();
        if status.job.as_ref().is_some_and(|j| j.state == JobState::Finished) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job did not finish: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(written.load(Ordering::Relaxed), total, "every record arrives");
    assert!(
        max_ahead <= bound,
        "producers ran {max_ahead} records ahead of the sink (bound {bound})"
    );
    // The producers were held back: the sink was still writing while they had not finished.
    assert!(
        samples_while_lagging > 5,
        "the producers were never slowed ({samples_while_lagging} samples)"
    );
    // The workers' metrics saw it: their senders waited for credits, and their sources read
    // every record once.
    let value = |text: &str, prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let texts: Vec<String> = workers
        .iter()
        .map(|w| w.metrics().render(&w.snapshot()))
        .collect();
    let waited: f64 = texts
        .iter()
        .map(|t| value(t, "swd_worker_backpressure_wait_seconds_total "))
        .sum();
    assert!(waited > 0.0, "no backpressure counted: {texts:?}");
    let read: f64 = texts
        .iter()
        .map(|t| value(t, "swd_worker_records_in_total{"))
        .sum();
    assert_eq!(read, total as f64, "{texts:?}");
    for mut worker in workers {
        worker.stop().await;
    }
    coordinator.stop().await;
}
