//! `swd coordinator`: serve until SIGINT or SIGTERM, then (with checkpoints, a job running) take
//! a final checkpoint and wait until it is committed, tell the workers and exit 0. With a job,
//! it runs the job on its workers and keeps serving status after the job ends.

use std::io::Write;
use std::process::ExitCode;

use std::time::Duration;

use streamweave_distributed::{Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorImpl};

use super::{flag_error, job_spec_resuming, security};
use crate::cli::CoordinatorArgs;
use crate::signals::{shutdown_requested, PARENT_PID_ENV};
use streamweave_distributed::checkpoint::{open_store, restore_latest};
use streamweave_distributed::dataflow::JobRegistry;
use streamweave_distributed::ha::{run_with_ha, HaOptions, HaUrl, Timing};

/// How long the final checkpoint at SIGINT/SIGTERM may take.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn run(args: CoordinatorArgs, registry: &JobRegistry) -> anyhow::Result<ExitCode> {
    let mut config = CoordinatorConfig {
        bind_address: args.bind,
        heartbeat_timeout: args.heartbeat_timeout,
        health_check_interval: args.health_check_interval,
        max_workers: args.max_workers,
        min_workers: args.min_workers,
        max_job_restarts: args.failures.max_restarts,
        tolerable_checkpoint_failures: args.failures.tolerable_checkpoint_failures,
        checkpoint_timeout: args.failures.checkpoint_timeout,
        checkpoint_interval: args.checkpoint_interval,
        recovery_strategy: args.recovery,
        rebalance_strategy: args.rebalance,
        enable_failover: !args.no_failover,
        num_partitions: args.partitions,
        data_dir: args.data_dir,
        checkpoint_store: args.checkpoint_store.map(|url| url.to_string()),
        cluster_name: args.cluster,
        security: security(&args.security)?,
        ..Default::default()
    };
    // A coordinator restarted on the same checkpoint store resumes its job from the last
    // checkpoint: its output already holds the committed epochs.
    let resuming = |config: &CoordinatorConfig| {
        config.checkpoint_store().is_some_and(|url| {
            open_store(&url).is_ok_and(|store| restore_latest(store.as_ref()).is_ok_and(|m| m.is_some()))
        })
    };
    config.job = job_spec_resuming(&args.job, registry, resuming(&config))?;
    if let Some(ha) = &args.ha {
        let url = HaUrl::parse(ha, &config.cluster_name).map_err(|e| anyhow::anyhow!("--ha: {e}"))?;
        config.validate().map_err(|e| flag_error(&e))?;
        let options = HaOptions {
            url,
            advertise: args.advertise.clone(),
            timing: Timing::for_ttl(args.ha_lease_ttl),
            security: config.security.clone(),
        };
        let (console_cluster, console_security, http_bind, metrics_bind) = (
            config.cluster_name.clone(),
            config.security.clone(),
            args.http_bind,
            args.metrics_bind,
        );
        let (bind, cluster, max_frame_size) = (
            config.bind_address,
            config.cluster_name.clone(),
            config.max_frame_size,
        );
        // Each leadership reads the job's spec from these flags again, resuming from the
        // latest checkpoint committed (by any leader) in the shared store.
        let make_config = move || {
            let mut config = config.clone();
            config.job = job_spec_resuming(&args.job, registry, resuming(&config))
                .map_err(|e| CoordinatorError::Communication(format!("the job: {e:#}")))?;
            Ok(config)
        };
        run_with_ha(
            options,
            bind,
            &cluster,
            max_frame_size,
            make_config,
            print_listening,
            async move {
                // Standby or leader, the console follows this process's coordinator.
                let console = crate::console::start_for_coordinator(
                    bind,
                    &console_cluster,
                    console_security,
                    http_bind,
                    metrics_bind,
                )
                .await;
                if let Err(e) = &console {
                    tracing::error!(error = %e, "no console");
                }
                shutdown_requested().await;
            },
        )
        .await?;
        tracing::info!("coordinator stopped");
        return Ok(ExitCode::SUCCESS);
    }
    let mut coordinator = CoordinatorImpl::new(config);
    match coordinator.start().await {
        Ok(()) => {}
        Err(CoordinatorError::InvalidConfig(e)) => return Err(flag_error(&e)),
        Err(e) => return Err(e.into()),
    }
    let Some(addr) = coordinator.local_addr() else {
        anyhow::bail!("the coordinator is not listening");
    };
    print_listening(addr);
    let _console = crate::console::start_for_coordinator(
        addr,
        &coordinator.config().cluster_name,
        coordinator.config().security.clone(),
        args.http_bind,
        args.metrics_bind,
    )
    .await?;
    shutdown_requested().await;
    // Under `swd local` the final checkpoint is its own (taken before it stops this process;
    // when it dies, its workers die with it and no checkpoint could complete).
    if args.checkpoint_interval.is_some() && std::env::var_os(PARENT_PID_ENV).is_none() {
        // A running job (an unbounded one stops only this way) stops cleanly: a final
        // checkpoint, its epoch made final by every sink before this process exits (state
        // `stopped`), so a restart on this checkpoint store resumes there.
        match coordinator.stop_job(FINAL_CHECKPOINT_TIMEOUT).await {
            Ok(id) => tracing::info!(checkpoint = ?id, "job stopped after its final checkpoint"),
            Err(e) => tracing::info!(error = %e, "no final checkpoint"),
        }
    }
    coordinator.stop().await;
    tracing::info!("coordinator stopped");
    Ok(ExitCode::SUCCESS)
}

/// The one line of command output: scripts and `swd local` read the bound address here.
fn print_listening(addr: std::net::SocketAddr) {
    let mut stdout = std::io::stdout();
    // Nothing to do if stdout is gone: the coordinator serves on.
    let _ = writeln!(stdout, "listening on {addr}").and_then(|()| stdout.flush());
}
