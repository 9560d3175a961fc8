//! Following a job from `swd local`: a progress bar on a terminal, a plain line every few
//! seconds otherwise (both on stderr), and the summary on stdout.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use streamweave_distributed::protocol::{JobState, JobStatus};
use streamweave_distributed::Client;
use tokio::process::Child;

use super::local::{check_alive, CLUSTER};

/// Polls are cheap (one status over loopback); a short interval keeps the end-to-end time honest.
const POLL: Duration = Duration::from_millis(20);
const PLAIN_EVERY: Duration = Duration::from_secs(3);

/// Polls the coordinator until the job finishes or fails.
pub(super) async fn follow(
    addr: SocketAddr,
    coordinator: &mut Child,
    workers: &mut [Child],
) -> anyhow::Result<JobStatus> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    });
    let mut last_line = Instant::now();
    let mut client: Option<Client> = None;
    loop {
        check_alive(coordinator, workers)?;
        if client.is_none() {
            client = Client::connect(addr, CLUSTER).await.ok();
        }
        let status = match client.as_mut() {
            Some(c) => c.status().await.ok(),
            None => None,
        };
        let waiting = status.as_ref().and_then(|s| s.unassigned_reason());
        match status.and_then(|s| s.job.map(|job| (job, s.partitions))) {
            Some((job, partitions)) => {
                let mut line = describe(&job, partitions);
                if let Some(waiting) = waiting {
                    line = format!("{line}; {waiting}");
                }
                match (&bar, job.state) {
                    (_, JobState::Finished) => {
                        if let Some(bar) = &bar {
                            bar.finish_and_clear();
                        }
                        return Ok(job);
                    }
                    (_, JobState::Failed) => {
                        if let Some(bar) = &bar {
                            bar.finish_and_clear();
                        }
                        bail!(
                            "job {} failed after {} restarts: {}",
                            job.name,
                            job.restarts,
                            job.error.as_deref().unwrap_or("unknown error")
                        );
                    }
                    (Some(bar), _) => bar.set_message(line),
                    (None, _) if last_line.elapsed() >= PLAIN_EVERY => {
                        eprintln!("{line}");
                        last_line = Instant::now();
                    }
                    (None, _) => {}
                }
            }
            None => client = None,
        }
        tokio::time::sleep(POLL).await;
    }
}

fn describe(job: &JobStatus, partitions: usize) -> String {
    let rate = if job.elapsed_ms > 0 {
        job.records_in as f64 * 1000.0 / job.elapsed_ms as f64
    } else {
        0.0
    };
    format!(
        "{} {}: {} records in ({}/s), partitions done {}/{}, attempt {}",
        job.name,
        state_name(job.state),
        job.records_in,
        human(rate),
        job.partitions_done,
        partitions,
        job.attempt
    )
}

fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Waiting => "waiting for workers",
        JobState::Running => "running",
        JobState::Restarting => "restarting",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
    }
}

/// `12.3 M`, `456.7 k`, `89`.
fn human(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Prints the summary of a finished job on stdout.
pub(super) fn summary(
    name: &str,
    job: &JobStatus,
    workers: usize,
    partitions: usize,
    wall: Duration,
) -> ExitCode {
    let secs = wall.as_secs_f64();
    let recovery = job
        .last_recovery_ms
        .map(|ms| format!(" (last recovery {ms} ms)"))
        .unwrap_or_default();
    println!(
        "job {name} finished: {} records in, {} records out, {workers} workers, {partitions} partitions, {} restarts{recovery}",
        job.records_in, job.records_out, job.restarts
    );
    println!(
        "wall time {secs:.3} s ({} records/s end to end; job {} ms); output: {}",
        human(job.records_in as f64 / secs.max(1e-9)),
        job.elapsed_ms,
        job.output.as_deref().unwrap_or("-")
    );
    ExitCode::SUCCESS
}
