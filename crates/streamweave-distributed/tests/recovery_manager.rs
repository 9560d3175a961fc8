//! The seed's `RecoveryManager`: configure checkpoints, take one on demand from a running job,
//! and read back what a recovery would restore.

use std::time::Duration;

use streamweave_distributed::dataflow::JobSpec;
use streamweave_distributed::fault_tolerance::RecoveryManager;
use streamweave_distributed::protocol::JobState;
use streamweave_distributed::Coordinator;
use streamweave_distributed::{
    CoordinatorConfig, CoordinatorImpl, Worker, WorkerConfig, WorkerId, WorkerImpl,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_on_demand_is_committed_and_is_what_recovery_restores() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let lines: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(input.join("a.txt"), lines).unwrap();
    let mut spec = JobSpec::new("repartition")
        .with_input(&input)
        .with_output(dir.path().join("out"));
    spec.params.insert("rate".into(), "500".into());
    // An interval far beyond the test: the only checkpoint is the one asked for.
    let recovery = RecoveryManager::new(Duration::from_secs(3600));
    let mut config = CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        num_partitions: 2,
        data_dir: Some(dir.path().join("data")),
        job: Some(spec),
        ..Default::default()
    };
    recovery.configure(&mut config);
    let mut coordinator = CoordinatorImpl::new(config);
    coordinator.start().await.unwrap();
    let mut worker = WorkerImpl::new(WorkerConfig {
        worker_id: WorkerId::new("w1"),
        coordinator_address: coordinator.local_addr().unwrap(),
        heartbeat_interval: Duration::from_millis(100),
        ..Default::default()
    });
    worker.register().await.unwrap();
    worker.start().await.unwrap();

    let unattached = RecoveryManager::new(Duration::from_secs(1)).checkpoint().await;
    assert!(
        unattached.is_err(),
        "a manager without a coordinator cannot checkpoint"
    );

    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while coordinator
        .status()
        .await
        .unwrap()
        .job
        .is_none_or(|j| j.state != JobState::Running)
    {
        assert!(tokio::time::Instant::now() < end, "the job never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let recovery = recovery
        .attach(coordinator.handle().unwrap())
        .with_store_dir(dir.path().join("data/checkpoints"))
        .unwrap();
    let id = recovery.checkpoint().await.unwrap();
    assert_eq!(id, 1);
    let latest = recovery.latest().unwrap().expect("a committed checkpoint");
    assert_eq!(
        (latest.id.0, latest.job.as_str(), latest.partitions),
        (1, "repartition", 2)
    );
    assert_eq!(
        coordinator
            .status()
            .await
            .unwrap()
            .checkpoints
            .map(|c| c.completed),
        Some(1)
    );
    worker.stop().await;
    coordinator.stop().await;
}
