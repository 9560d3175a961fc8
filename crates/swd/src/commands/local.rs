//! `swd local`: a coordinator and N worker processes on loopback, started from this same
//! binary. It waits until every partition is owned, prints the status, and stops the cluster
//! (or keeps it running until Ctrl-C with `--keep-running`).

use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use streamweave_distributed::{Client, ClusterStatus};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::cli::LocalArgs;
use crate::signals::shutdown_requested;
use crate::table::status_table;

const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
const CLUSTER: &str = "default";

pub async fn run(args: LocalArgs) -> anyhow::Result<ExitCode> {
    if args.workers == 0 {
        bail!("invalid --workers: must be at least 1");
    }
    if args.partitions == 0 {
        bail!("invalid --partitions: must be at least 1");
    }
    let exe = std::env::current_exe().context("cannot find the swd executable")?;
    let health_check = (args.heartbeat_timeout / 5).max(Duration::from_millis(10));
    let mut coordinator = command(&exe);
    coordinator
        .args(["coordinator", "--bind", &args.bind.to_string()])
        .args(["--partitions", &args.partitions.to_string()])
        .args([
            "--heartbeat-timeout",
            &humantime::format_duration(args.heartbeat_timeout).to_string(),
        ])
        .args([
            "--health-check-interval",
            &humantime::format_duration(health_check).to_string(),
        ])
        .args(["--rebalance", args.rebalance.as_str()])
        .stdout(Stdio::piped());
    if let Some(dir) = &args.data_dir {
        coordinator.arg("--data-dir").arg(dir);
    }
    let mut coordinator = coordinator
        .spawn()
        .context("cannot start the coordinator process")?;
    let addr = read_address(&mut coordinator).await?;
    let mut workers = Vec::with_capacity(args.workers);
    for i in 1..=args.workers {
        let mut worker = command(&exe);
        worker
            .args([
                "worker",
                "--coordinator",
                &addr.to_string(),
                "--id",
                &format!("worker-{i}"),
            ])
            .args([
                "--heartbeat-interval",
                &humantime::format_duration(args.heartbeat_interval).to_string(),
            ])
            .stdout(Stdio::null());
        workers.push(
            worker
                .spawn()
                .with_context(|| format!("cannot start worker-{i}"))?,
        );
    }
    let started = Instant::now();
    let outcome = settle(addr, args.workers, &mut coordinator, &mut workers).await;
    if let Ok(status) = &outcome {
        println!(
            "local cluster at {addr}: {} workers own all {} partitions (settled in {} ms)",
            status.workers.len(),
            status.partitions,
            started.elapsed().as_millis()
        );
        print!("{}", status_table(status));
        if args.keep_running {
            println!("running; press Ctrl-C to stop");
            shutdown_requested().await;
        }
    }
    for worker in &mut workers {
        terminate(worker);
    }
    for worker in &mut workers {
        wait_or_kill(worker).await;
    }
    terminate(&mut coordinator);
    wait_or_kill(&mut coordinator).await;
    outcome.map(|_| ExitCode::SUCCESS)
}

fn command(exe: &std::path::Path) -> Command {
    let mut command = Command::new(exe);
    command.stdin(Stdio::null()).kill_on_drop(true);
    if std::env::var_os("RUST_LOG").is_none() {
        // Keep the children's logs to what matters; RUST_LOG overrides.
        command.env("RUST_LOG", "warn");
    }
    command
}

/// Reads the coordinator's `listening on ADDR` line.
async fn read_address(coordinator: &mut Child) -> anyhow::Result<SocketAddr> {
    let stdout = coordinator
        .stdout
        .take()
        .ok_or_else(|| anyhow!("the coordinator has no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(SETTLE_DEADLINE, lines.next_line())
        .await
        .map_err(|_| anyhow!("the coordinator did not start within {SETTLE_DEADLINE:?}"))??
        .ok_or_else(|| anyhow!("the coordinator exited before listening (see its error above)"))?;
    let addr = line
        .strip_prefix("listening on ")
        .ok_or_else(|| anyhow!("unexpected output from the coordinator: {line:?}"))?;
    addr.parse()
        .with_context(|| format!("bad address from the coordinator: {addr:?}"))
}

/// Polls the status until every worker is registered and every partition is owned.
async fn settle(
    addr: SocketAddr,
    expected_workers: usize,
    coordinator: &mut Child,
    workers: &mut [Child],
) -> anyhow::Result<ClusterStatus> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(code) = coordinator.try_wait()? {
            bail!("the coordinator exited early ({code})");
        }
        for (i, worker) in workers.iter_mut().enumerate() {
            if let Some(code) = worker.try_wait()? {
                bail!("worker-{} exited early ({code})", i + 1);
            }
        }
        if let Ok(mut client) = Client::connect(addr, CLUSTER).await {
            if let Ok(status) = client.status().await {
                let settled = status.workers.len() == expected_workers
                    && status.unassigned.is_empty()
                    && status.moving.is_empty()
                    && status.workers.iter().all(|w| w.load == w.partitions.len());
                if settled {
                    return Ok(status);
                }
                last = Some(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match last {
        Some(status) => bail!(
            "the cluster did not settle within {SETTLE_DEADLINE:?}:\n{}",
            status_table(&status)
        ),
        None => bail!("the coordinator at {addr} did not answer within {SETTLE_DEADLINE:?}"),
    }
}

/// Asks a child to stop (SIGTERM), so workers leave gracefully.
fn terminate(child: &mut Child) {
    if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped) and a valid signal.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

async fn wait_or_kill(child: &mut Child) {
    if tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}
