//! `swd local`: a coordinator and N worker processes on loopback, started from this same
//! binary (the embedded cluster). Without a job it waits until every partition is owned and
//! prints the status; with `--job` it follows the job (progress on stderr), prints a summary and
//! exits 0 when the job finished, 1 when it failed. Then it stops the cluster, unless
//! `--keep-running` (until Ctrl-C).
//!
//! The cluster lives and dies with this process:
//!
//! ```text
//! SIGINT/SIGTERM while a job runs --> (checkpoints) final checkpoint, wait until committed
//!                                 --> SIGTERM coordinator (it tells the workers to stop the job)
//!                                 --> SIGTERM workers --> "job NAME stopped by SIG..." exit 130/143
//!                                     (exit 0: an unbounded job whose final checkpoint committed)
//! SIGINT/SIGTERM otherwise        --> SIGTERM workers, coordinator --> exit 130/143
//! swd local killed (even SIGKILL) --> children get SIGTERM from the kernel (PR_SET_PDEATHSIG) or
//!                                     see their parent gone (signals::bind_to_this_process)
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use streamweave_distributed::ClusterStatus;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use streamweave_distributed::dataflow::{JobRegistry, JobSpec};

use super::{job_spec, progress};
use crate::cli::LocalArgs;
use crate::signals::{bind_to_this_process, StopSignal, StopSignals};
use crate::table::status_table;

const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
pub(super) const CLUSTER: &str = "default";

/// Waiting for the final checkpoint of an interrupted job; a second signal cuts it short.
const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(30);

/// The processes of the embedded cluster, as far as they have been started.
#[derive(Default)]
struct Processes {
    coordinator: Option<Child>,
    addr: Option<SocketAddr>,
    workers: Vec<Child>,
}

/// How the work of `swd local` ended.
enum Ended {
    /// The cluster settled or the job ended: the exit code, or the error to report.
    Done(anyhow::Result<ExitCode>),
    /// A signal asked it to stop first.
    Stopped(StopSignal),
}

pub async fn run(args: LocalArgs, registry: &JobRegistry) -> anyhow::Result<ExitCode> {
    if args.workers == 0 {
        bail!("invalid --workers: must be at least 1");
    }
    if args.partitions == 0 {
        bail!("invalid --partitions: must be at least 1");
    }
    let job = job_spec(&args.job, registry)?;
    let secret = super::local_secret::prepare(args.secret_file.as_deref())?;
    let outcome = run_cluster(&args, registry, job, secret).await;
    super::local_secret::cleanup();
    outcome
}

async fn run_cluster(
    args: &LocalArgs,
    registry: &JobRegistry,
    job: Option<JobSpec>,
    secret: &Path,
) -> anyhow::Result<ExitCode> {
    // From here on SIGINT and SIGTERM are ours to handle: they stop the cluster in order.
    let mut signals = StopSignals::listen();
    // Checkpoints need a data directory: a fresh one under the system's temporary directory
    // unless one is given.
    let data_dir = match (&args.data_dir, args.checkpoint_interval) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(_)) => Some(std::env::temp_dir().join(format!("swd-local-{}", std::process::id()))),
        (None, None) => None,
    };
    let started = Instant::now();
    let mut processes = Processes::default();
    let ended = tokio::select! {
        outcome = start_and_work(args, job.as_ref(), data_dir.as_deref(), secret, &mut processes, started) => {
            Ended::Done(outcome)
        }
        signal = signals.recv() => Ended::Stopped(signal),
    };
    let outcome = match ended {
        Ended::Done(outcome) if outcome.is_ok() && args.keep_running => {
            outln!("running; press Ctrl-C to stop")?;
            let signal = signals.recv().await;
            stop_processes(&mut processes, false).await;
            outln!("local cluster stopped by {}", signal.name())?;
            Ok(ExitCode::from(signal.exit_code()))
        }
        Ended::Done(outcome) => {
            stop_processes(&mut processes, false).await;
            outcome
        }
        Ended::Stopped(signal) => {
            let code = match (&job, processes.addr) {
                (Some(spec), Some(addr)) => {
                    let stopped = stop_job(addr, args.checkpoint_interval.is_some(), &mut signals).await;
                    stop_processes(&mut processes, true).await;
                    let unbounded = registry.build(spec).is_ok_and(|job| !job.is_bounded());
                    progress::stopped(
                        &spec.name,
                        signal,
                        &stopped,
                        (args.workers, args.partitions, unbounded),
                        started.elapsed(),
                    )?
                }
                _ => {
                    stop_processes(&mut processes, false).await;
                    outln!("local cluster stopped by {}", signal.name())?;
                    ExitCode::from(signal.exit_code())
                }
            };
            Ok(code)
        }
    };
    if args.data_dir.is_none() {
        // The checkpoints of a local run are of no further use.
        if let Some(dir) = &data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    outcome
}

/// Starts the coordinator and the workers (recording them in `processes` as they start), then
/// waits until the cluster settles (no job) or the job ends.
async fn start_and_work(
    args: &LocalArgs,
    job: Option<&JobSpec>,
    data_dir: Option<&Path>,
    secret: &Path,
    processes: &mut Processes,
    started: Instant,
) -> anyhow::Result<ExitCode> {
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
        .args(["--min-workers", &args.workers.to_string()])
        .args(["--max-restarts", &args.failures.max_restarts.to_string()])
        .args([
            "--tolerable-checkpoint-failures",
            &args.failures.tolerable_checkpoint_failures.to_string(),
        ])
        .args([
            "--checkpoint-timeout",
            &humantime::format_duration(args.failures.checkpoint_timeout).to_string(),
        ])
        .arg("--secret-file")
        .arg(secret)
        .stdout(Stdio::piped());
    if let Some(dir) = data_dir {
        coordinator.arg("--data-dir").arg(dir);
    }
    if let Some(http) = args.http_bind {
        coordinator.args(["--http-bind", &http.to_string()]);
    }
    if let Some(store) = &args.checkpoint_store {
        coordinator.arg("--checkpoint-store").arg(store.to_string());
    }
    if let Some(interval) = args.checkpoint_interval {
        coordinator.args([
            "--checkpoint-interval",
            &humantime::format_duration(interval).to_string(),
        ]);
    }
    if let Some(spec) = job {
        coordinator.args(["--job", &spec.name]);
        if let Some(input) = &spec.input {
            coordinator.arg("--input").arg(input);
        }
        if let Some(output) = &spec.output {
            coordinator.arg("--output").arg(output);
        }
        for (key, value) in &spec.params {
            coordinator.arg("--param").arg(format!("{key}={value}"));
        }
    }
    let coordinator = processes.coordinator.insert(
        coordinator
            .spawn()
            .context("cannot start the coordinator process")?,
    );
    let addr = read_address(coordinator, args.http_bind.is_some()).await?;
    processes.addr = Some(addr);
    // The workers share this machine's cores: each reads as many source partitions at once as
    // its share of them.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let slots = (cores / args.workers).max(1).to_string();
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
            .args(["--source-slots", &slots])
            // Any one worker may end up running every partition (the others failed).
            .args(["--max-tasks", &args.partitions.max(1).to_string()])
            .args([
                "--heartbeat-interval",
                &humantime::format_duration(args.heartbeat_interval).to_string(),
            ])
            .arg("--secret-file")
            .arg(secret)
            .stdout(Stdio::null());
        if let Some(dir) = &args.state_dir {
            worker.arg("--state-dir").arg(dir);
        }
        processes.workers.push(
            worker
                .spawn()
                .with_context(|| format!("cannot start worker-{i}"))?,
        );
    }
    let Processes {
        coordinator: Some(coordinator),
        workers,
        ..
    } = processes
    else {
        bail!("the coordinator process is gone");
    };
    match job {
        None => settle(addr, args.workers, coordinator, workers)
            .await
            .and_then(|status| {
                outln!(
                    "local cluster at {addr}: {} workers own all {} partitions (settled in {} ms)",
                    status.workers.len(),
                    status.partitions,
                    started.elapsed().as_millis()
                )?;
                out!("{}", status_table(&status))?;
                Ok(ExitCode::SUCCESS)
            }),
        Some(spec) => progress::follow(addr, coordinator, workers)
            .await
            .and_then(|job| {
                Ok(progress::summary(
                    &spec.name,
                    &job,
                    args.workers,
                    args.partitions,
                    started.elapsed(),
                )?)
            }),
    }
}

/// Stops a job that a signal interrupted: with checkpoints, asks the coordinator to stop it
/// cleanly and waits until it is `stopped` (a final checkpoint committed and its epoch made final
/// by every sink); then reads what the job did.
async fn stop_job(addr: SocketAddr, checkpoints: bool, signals: &mut StopSignals) -> progress::Stopped {
    let mut client = match super::local_secret::connect(addr).await {
        Ok(client) => client,
        Err(e) => {
            return progress::Stopped {
                final_checkpoint: checkpoints.then(|| Err(e.to_string())),
                ..progress::Stopped::default()
            }
        }
    };
    let final_checkpoint = if checkpoints {
        Some(tokio::select! {
            result = client.stop_job(FINAL_CHECKPOINT_TIMEOUT) => match result {
                Ok(Some(id)) => Ok(id),
                Ok(None) => Err("checkpoints are off".to_string()),
                Err(e) => Err(e.to_string()),
            },
            signal = signals.recv() => Err(format!("{} before it was committed", signal.name())),
        })
    } else {
        None
    };
    let status = client.status().await.ok();
    progress::Stopped {
        last_checkpoint: status
            .as_ref()
            .and_then(|s| s.checkpoints.as_ref())
            .and_then(|c| c.last_completed),
        job: status.and_then(|s| s.job),
        final_checkpoint,
    }
}

/// Stops the processes. After an interrupted job the coordinator goes first: it tells every
/// worker to stop the job at once (workers asked to leave while a checkpointed job runs would
/// first hand their partitions to each other). Otherwise the workers leave first, then the
/// coordinator stops.
async fn stop_processes(processes: &mut Processes, coordinator_first: bool) {
    if coordinator_first {
        if let Some(coordinator) = &mut processes.coordinator {
            terminate(coordinator);
            wait_or_kill(coordinator).await;
        }
    }
    for worker in &mut processes.workers {
        terminate(worker);
    }
    for worker in &mut processes.workers {
        wait_or_kill(worker).await;
    }
    if let Some(coordinator) = &mut processes.coordinator {
        terminate(coordinator);
        wait_or_kill(coordinator).await;
    }
}

/// A child process of this binary, bound to this process's life (it stops when `swd local`
/// dies, even by SIGKILL) and in its own process group.
fn command(exe: &Path) -> Command {
    let mut command = Command::new(exe);
    command.stdin(Stdio::null()).kill_on_drop(true);
    bind_to_this_process(&mut command);
    if std::env::var_os("RUST_LOG").is_none() {
        // Keep the children's logs to what matters; RUST_LOG overrides.
        command.env("RUST_LOG", "warn");
    }
    command
}

/// Reads the coordinator's `listening on ADDR` line (and, with `console`, passes its `console
/// on URL` line on to stderr).
async fn read_address(coordinator: &mut Child, console: bool) -> anyhow::Result<SocketAddr> {
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
    let addr = addr
        .parse()
        .with_context(|| format!("bad address from the coordinator: {addr:?}"))?;
    if console {
        let url = tokio::time::timeout(SETTLE_DEADLINE, lines.next_line())
            .await
            .map_err(|_| anyhow!("the coordinator's console did not start within {SETTLE_DEADLINE:?}"))??
            .ok_or_else(|| anyhow!("the coordinator exited before serving its console"))?;
        eprintln!("{url}");
    }
    Ok(addr)
}

/// Polls the status until every worker is registered and every partition is owned.
pub(super) async fn settle(
    addr: SocketAddr,
    expected_workers: usize,
    coordinator: &mut Child,
    workers: &mut [Child],
) -> anyhow::Result<ClusterStatus> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut last = None;
    while Instant::now() < deadline {
        check_alive(coordinator, workers)?;
        if let Ok(mut client) = super::local_secret::connect(addr).await {
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

/// Fails if the coordinator or any worker process has exited.
pub(super) fn check_alive(coordinator: &mut Child, workers: &mut [Child]) -> anyhow::Result<()> {
    if let Some(code) = coordinator.try_wait()? {
        bail!("the coordinator exited early ({code})");
    }
    for (i, worker) in workers.iter_mut().enumerate() {
        if let Some(code) = worker.try_wait()? {
            bail!("worker-{} exited early ({code})", i + 1);
        }
    }
    Ok(())
}

/// Asks a child to stop (SIGTERM), so workers leave gracefully. A child that has exited already
/// (and was reaped) has no pid and is left alone.
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
