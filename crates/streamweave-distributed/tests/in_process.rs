//! A whole cluster in one process over loopback TCP: fast checks of the public API (the seed's
//! examples). The process-level tests in `crates/swd/tests` are the real proof.

use std::time::Duration;

use streamweave_distributed::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorImpl, RebalanceStrategy, Worker,
    WorkerConfig, WorkerError, WorkerId, WorkerImpl,
};

const DEADLINE: Duration = Duration::from_secs(20);

async fn coordinator(strategy: RebalanceStrategy, max_workers: usize) -> CoordinatorImpl {
    let mut coordinator = CoordinatorImpl::new(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse().unwrap(),
        heartbeat_timeout: Duration::from_millis(500),
        health_check_interval: Duration::from_millis(50),
        rebalance_strategy: strategy,
        max_workers,
        num_partitions: 12,
        ..Default::default()
    });
    coordinator.start().await.unwrap();
    coordinator
}

fn worker_config(coordinator: &CoordinatorImpl, id: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: WorkerId::new(id),
        coordinator_address: coordinator.local_addr().unwrap(),
        heartbeat_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

async fn started(coordinator: &CoordinatorImpl, id: &str) -> WorkerImpl {
    let mut worker = WorkerImpl::new(worker_config(coordinator, id));
    worker.register().await.unwrap();
    worker.start().await.unwrap();
    worker
}

async fn wait_running(worker: &WorkerImpl, partitions: Vec<usize>) {
    let mut watch = worker.watch();
    tokio::time::timeout(DEADLINE, watch.wait_for(|s| s.partitions == partitions))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "worker never ran {partitions:?}; runs {:?}",
                worker.snapshot().partitions
            )
        })
        .unwrap();
}

#[tokio::test]
async fn seed_example_manual_assignment_reaches_the_workers() {
    let mut coordinator = coordinator(RebalanceStrategy::Manual, 100).await;
    let mut w1 = started(&coordinator, "worker-1").await;
    let mut w2 = started(&coordinator, "worker-2").await;
    coordinator
        .assign_partitions(&WorkerId::new("worker-1"), vec![0, 1, 2])
        .await
        .unwrap();
    coordinator
        .assign_partitions(&WorkerId::new("worker-2"), vec![3, 4, 5])
        .await
        .unwrap();
    wait_running(&w1, vec![0, 1, 2]).await;
    wait_running(&w2, vec![3, 4, 5]).await;
    let info = coordinator.get_worker(&WorkerId::new("worker-1")).await.unwrap();
    assert!(info.is_healthy(Duration::from_secs(30)));
    assert_eq!(info.partitions, vec![0, 1, 2]);
    // Moving a partition: the old owner stops it before the new one starts it.
    coordinator
        .assign_partitions(&WorkerId::new("worker-2"), vec![2])
        .await
        .unwrap();
    wait_running(&w2, vec![2, 3, 4, 5]).await;
    assert_eq!(w1.snapshot().partitions, vec![0, 1]);
    w1.stop().await;
    w2.stop().await;
    coordinator.stop().await;
}

#[tokio::test]
async fn assign_partitions_validates_its_input() {
    let mut coordinator = coordinator(RebalanceStrategy::Manual, 100).await;
    let mut small = WorkerImpl::new(WorkerConfig {
        max_concurrent_tasks: 2,
        ..worker_config(&coordinator, "small")
    });
    small.register().await.unwrap();
    small.start().await.unwrap();
    let id = WorkerId::new("small");
    let unknown = coordinator
        .assign_partitions(&WorkerId::new("nobody"), vec![0])
        .await;
    assert!(matches!(unknown, Err(CoordinatorError::WorkerNotFound(w)) if w.as_str() == "nobody"));
    let out_of_range = coordinator.assign_partitions(&id, vec![12]).await;
    assert!(matches!(out_of_range, Err(CoordinatorError::InvalidPartition(m)) if m.contains("12")));
    let duplicate = coordinator.assign_partitions(&id, vec![1, 1]).await;
    assert!(matches!(duplicate, Err(CoordinatorError::InvalidPartition(m)) if m.contains("twice")));
    let too_many = coordinator.assign_partitions(&id, vec![0, 1, 2]).await;
    assert!(matches!(too_many, Err(CoordinatorError::InvalidPartition(m)) if m.contains("can run 2")));
    let failure = coordinator.handle_worker_failure(&WorkerId::new("nobody")).await;
    assert!(matches!(failure, Err(CoordinatorError::WorkerNotFound(_))));
    small.stop().await;
    coordinator.stop().await;
}

#[tokio::test]
async fn registration_beyond_max_workers_fails_naming_the_limit() {
    let mut coordinator = coordinator(RebalanceStrategy::Gradual, 1).await;
    let mut first = started(&coordinator, "first").await;
    let mut second = WorkerImpl::new(worker_config(&coordinator, "second"));
    match second.register().await {
        Err(WorkerError::RegistrationFailed(reason)) => {
            assert!(reason.contains("max_workers is 1"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    first.stop().await;
    coordinator.stop().await;
}

#[tokio::test]
async fn handle_worker_failure_moves_partitions_then_the_worker_rejoins() {
    let mut coordinator = coordinator(RebalanceStrategy::Gradual, 100).await;
    let mut w1 = started(&coordinator, "w1").await;
    let mut w2 = started(&coordinator, "w2").await;
    let before = wait_balanced(&coordinator, 2).await;
    let kept = before
        .workers
        .iter()
        .find(|w| w.id.as_str() == "w2")
        .unwrap()
        .partitions
        .clone();
    coordinator
        .handle_worker_failure(&WorkerId::new("w1"))
        .await
        .unwrap();
    // The engine decides at once: w1 is out and the survivor owns all twelve, its own included.
    let after = coordinator.status().await.unwrap();
    assert_eq!(after.workers.len(), 1, "{after:?}");
    assert_eq!(after.workers[0].partitions, (0..12).collect::<Vec<_>>());
    assert!(kept.iter().all(|p| after.workers[0].partitions.contains(p)));
    // w1 was alive after all: it was told to stop, registers again and gets its share back.
    wait_balanced(&coordinator, 2).await;
    w1.stop().await;
    w2.stop().await;
    coordinator.stop().await;
}

async fn wait_balanced(coordinator: &CoordinatorImpl, n: usize) -> streamweave_distributed::ClusterStatus {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let s = coordinator.status().await.unwrap();
        if s.workers.len() == n
            && s.unassigned.is_empty()
            && s.moving.is_empty()
            && s.workers
                .iter()
                .all(|w| w.load == w.partitions.len() && w.partitions.len() == 12 / n)
        {
            return s;
        }
        assert!(tokio::time::Instant::now() < end, "never balanced: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
