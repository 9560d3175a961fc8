//! `swd worker`: register (retrying until the coordinator is reachable), run until SIGINT or
//! SIGTERM, then leave gracefully so the partitions move at once.

use std::io::Write;
use std::process::ExitCode;

use streamweave_distributed::dataflow::JobRegistry;
use streamweave_distributed::worker::follow_jobs;
use streamweave_distributed::{Worker, WorkerConfig, WorkerError, WorkerId, WorkerImpl};
use tokio_util::sync::CancellationToken;

use super::{flag_error, security};
use crate::cli::WorkerArgs;
use crate::signals::shutdown_requested;

pub async fn run(args: WorkerArgs, registry: JobRegistry) -> anyhow::Result<ExitCode> {
    let mut config = WorkerConfig {
        coordinator_address: args.coordinator[0],
        other_coordinators: args.coordinator[1..].to_vec(),
        bind_address: args.bind,
        advertise_address: args.advertise.clone(),
        heartbeat_interval: args.heartbeat_interval,
        max_concurrent_tasks: args.max_tasks,
        drain_timeout: args.drain_timeout,
        source_slots: args.source_slots,
        assigned_partitions: args.partitions.unwrap_or_default(),
        cluster_name: args.cluster,
        state_dir: args.state_dir,
        security: security(&args.security)?,
        ..Default::default()
    };
    if let Some(id) = args.id {
        config.worker_id = WorkerId::new(id);
    }
    let id = config.worker_id.clone();
    let (job_base, job_registry) = (config.clone(), registry.clone());
    let mut worker = WorkerImpl::new(config).with_jobs(registry);
    let stop = CancellationToken::new();
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_requested().await;
        signal.cancel();
    });
    match worker.register_retrying(&stop).await {
        Ok(true) => {}
        Ok(false) => return Ok(ExitCode::SUCCESS),
        Err(WorkerError::InvalidConfig(e)) => return Err(flag_error(&e)),
        Err(e) => return Err(e.into()),
    }
    worker.start().await?;
    let address = worker.address().map(|a| a.to_string()).unwrap_or_default();
    let mut stdout = std::io::stdout();
    writeln!(
        stdout,
        "worker {id} registered with {}, data plane on {address}",
        args.coordinator
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )?;
    stdout.flush()?;
    // Jobs submitted to the cluster (`swd run`): a session with each one's master. Not with
    // high availability, whose coordinators take no submitted jobs.
    let follower = (args.coordinator.len() == 1)
        .then(|| tokio::spawn(follow_jobs(job_base, job_registry, stop.clone())));
    if let Some(addr) = args.metrics_bind {
        crate::console::start_for_worker(addr, worker.metrics(), worker.watch(), stop.clone()).await?;
    }
    tokio::select! {
        _ = stop.cancelled() => {
            if let Some(follower) = follower {
                // Each job session leaves its master (bounded inside).
                let _ = follower.await;
            }
            worker.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        // Only a fence ends the session on its own: a newer run of this id took over.
        ended = worker.wait() => {
            ended?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
