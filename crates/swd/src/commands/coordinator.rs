//! `swd coordinator`: serve until SIGINT or SIGTERM, then tell the workers and exit 0.

use std::io::Write;
use std::process::ExitCode;

use streamweave_distributed::{CoordinatorConfig, CoordinatorError, CoordinatorImpl};

use super::flag_error;
use crate::cli::CoordinatorArgs;
use crate::signals::shutdown_requested;

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    let config = CoordinatorConfig {
        bind_address: args.bind,
        heartbeat_timeout: args.heartbeat_timeout,
        health_check_interval: args.health_check_interval,
        max_workers: args.max_workers,
        rebalance_strategy: args.rebalance,
        enable_failover: !args.no_failover,
        num_partitions: args.partitions,
        data_dir: args.data_dir,
        cluster_name: args.cluster,
        ..Default::default()
    };
    let mut coordinator = CoordinatorImpl::new(config);
    match coordinator.start().await {
        Ok(()) => {}
        Err(CoordinatorError::InvalidConfig(e)) => return Err(flag_error(&e)),
        Err(e) => return Err(e.into()),
    }
    if let Some(addr) = coordinator.local_addr() {
        // The one line of command output: scripts and `swd local` read the bound address here.
        let mut stdout = std::io::stdout();
        writeln!(stdout, "listening on {addr}")?;
        stdout.flush()?;
    }
    shutdown_requested().await;
    coordinator.stop().await;
    tracing::info!("coordinator stopped");
    Ok(ExitCode::SUCCESS)
}
