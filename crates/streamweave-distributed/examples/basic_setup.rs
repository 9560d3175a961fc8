//! The seed README's "Basic Distributed Setup" and "Partition Assignment", in one process:
//! a coordinator and two workers over real loopback TCP, partitions 0-2 and 3-5 assigned by
//! hand, worker health checked, then a failure handled.
//!
//! Run: `cargo run -p streamweave-distributed --example basic_setup`

use std::time::Duration;

use streamweave_distributed::{
    Coordinator, CoordinatorConfig, CoordinatorImpl, RebalanceStrategy, Worker, WorkerConfig, WorkerId,
    WorkerImpl,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Coordinator (port 0: any free port; Manual so that only our assignments move partitions).
    let coordinator_config = CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse()?,
        rebalance_strategy: RebalanceStrategy::Manual,
        ..Default::default()
    };
    let mut coordinator = CoordinatorImpl::new(coordinator_config);
    coordinator.start().await?;
    let address = coordinator.local_addr().ok_or("coordinator not listening")?;

    // Worker 1
    let worker1_id = WorkerId::new("worker-1".to_string());
    let worker1_config = WorkerConfig {
        worker_id: worker1_id.clone(),
        coordinator_address: address,
        ..Default::default()
    };
    let mut worker1 = WorkerImpl::new(worker1_config);
    worker1.register().await?;
    worker1.start().await?;

    // Worker 2
    let worker2_id = WorkerId::new("worker-2".to_string());
    let worker2_config = WorkerConfig {
        worker_id: worker2_id.clone(),
        coordinator_address: address,
        ..Default::default()
    };
    let mut worker2 = WorkerImpl::new(worker2_config);
    worker2.register().await?;
    worker2.start().await?;

    // Partition assignment
    coordinator.assign_partitions(&worker1_id, vec![0, 1, 2]).await?;
    coordinator.assign_partitions(&worker2_id, vec![3, 4, 5]).await?;

    // Workers start their tasks as soon as the assignment reaches them.
    let mut watch = worker2.watch();
    tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| s.partitions == vec![3, 4, 5]),
    )
    .await??;
    println!("worker-1 runs {:?}", worker1.snapshot().partitions);
    println!("worker-2 runs {:?}", worker2.snapshot().partitions);

    // Worker health monitoring
    let worker_info = coordinator.get_worker(&worker1_id).await?;
    if worker_info.is_healthy(Duration::from_secs(30)) {
        println!("worker-1 is healthy");
    } else {
        coordinator.handle_worker_failure(&worker1_id).await?;
    }

    // Worker 2 leaves gracefully; under Manual its partitions become unassigned.
    worker2.stop().await;
    let status = coordinator.status().await?;
    println!(
        "after worker-2 left: unassigned {:?}",
        status.unassigned.iter().take(6).collect::<Vec<_>>()
    );

    worker1.stop().await;
    coordinator.stop().await;
    Ok(())
}
