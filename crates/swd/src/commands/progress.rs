//! Following a job from `swd local`: a progress bar on a terminal, a plain line every few
//! seconds otherwise (both on stderr), and the summary on stdout.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use streamweave_distributed::protocol::{JobState, JobStatus};
use streamweave_distributed::Client;
use tokio::process::Child;

use super::local::check_alive;
use crate::signals::StopSignal;

/// Polls are cheap (one status over loopback); a short interval keeps the end-to-end time honest.
const POLL: Duration = Duration::from_millis(20);
const PLAIN_EVERY: Duration = Duration::from_secs(3);
/// The current rate is measured over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Records per second over the last [`RATE_WINDOW`], from successive readings of a count that
/// only grows within an attempt (a smaller reading is a new attempt: the window starts over).
#[derive(Debug, Default)]
struct RateMeter {
    samples: VecDeque<(Instant, u64)>,
}

impl RateMeter {
    /// Records `total` at `now`; the rate once the window spans at least half a second.
    fn observe(&mut self, now: Instant, total: u64) -> Option<f64> {
        if self.samples.back().is_some_and(|&(_, last)| total < last) {
            self.samples.clear();
        }
        self.samples.push_back((now, total));
        while self
            .samples
            .get(1)
            .is_some_and(|&(t, _)| now.saturating_duration_since(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, first) = *self.samples.front()?;
        let span = now.saturating_duration_since(t0).as_secs_f64();
        (span >= 0.5).then(|| (total - first) as f64 / span)
    }
}

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
    let mut rate = RateMeter::default();
    let mut client: Option<Client> = None;
    loop {
        check_alive(coordinator, workers)?;
        if client.is_none() {
            client = super::local_secret::connect(addr).await.ok();
        }
        let status = match client.as_mut() {
            Some(c) => c.status().await.ok(),
            None => None,
        };
        let waiting = status.as_ref().and_then(|s| s.unassigned_reason());
        match status.and_then(|s| s.job.map(|job| (job, s.partitions))) {
            Some((job, partitions)) => {
                let current = rate.observe(Instant::now(), job.records_in);
                let mut line = describe(&job, partitions, current);
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

/// One progress line: `rate` is the current rate when known, else the average since the start.
fn describe(job: &JobStatus, partitions: usize, rate: Option<f64>) -> String {
    let rate = rate.unwrap_or(if job.elapsed_ms > 0 {
        job.records_in as f64 * 1000.0 / job.elapsed_ms as f64
    } else {
        0.0
    });
    let lag = job
        .lag
        .map(|lag| format!(", lag {} records", human(lag as f64)))
        .unwrap_or_default();
    format!(
        "{} {}: {} records in ({}/s){lag}, partitions done {}/{}, attempt {}",
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
        JobState::Stopped => "stopped",
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
) -> std::io::Result<ExitCode> {
    let secs = wall.as_secs_f64();
    let recovery = job
        .last_recovery_ms
        .map(|ms| format!(" (last recovery {ms} ms)"))
        .unwrap_or_default();
    let (records_in, records_out, restarts) = (job.records_in, job.records_out, job.restarts);
    outln!(
        "job {name} finished: {records_in} records in, {records_out} records out, {workers} workers, \
         {partitions} partitions, {restarts} restarts{recovery}"
    )?;
    outln!(
        "wall time {secs:.3} s ({} records/s end to end; job {} ms); output: {}",
        human(job.records_in as f64 / secs.max(1e-9)),
        job.elapsed_ms,
        job.output.as_deref().unwrap_or("-")
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `swd local` learned while stopping a job that a signal interrupted.
#[derive(Debug, Default)]
pub(super) struct Stopped {
    /// The job's status after the final checkpoint (none: the coordinator did not answer).
    pub job: Option<JobStatus>,
    /// The newest committed checkpoint.
    pub last_checkpoint: Option<u64>,
    /// With checkpoints on: the final checkpoint, committed, or why there is none.
    pub final_checkpoint: Option<Result<u64, String>>,
}

/// Prints the line of a job stopped by a signal and returns the exit code: 128 + the signal's
/// number; or, if the job finished before the signal was handled, its summary and 0. Stopping
/// is how an `unbounded` job ends: with its final checkpoint committed that is a clean stop, 0.
pub(super) fn stopped(
    name: &str,
    signal: StopSignal,
    stopped: &Stopped,
    (workers, partitions, unbounded): (usize, usize, bool),
    wall: Duration,
) -> std::io::Result<ExitCode> {
    if let Some(job) = stopped.job.as_ref().filter(|j| j.state == JobState::Finished) {
        return summary(name, job, workers, partitions, wall);
    }
    outln!("{}", stopped_line(name, signal, stopped, partitions))?;
    Ok(
        match unbounded && matches!(stopped.final_checkpoint, Some(Ok(_))) {
            true => ExitCode::SUCCESS,
            false => ExitCode::from(signal.exit_code()),
        },
    )
}

/// `job NAME stopped by SIGINT after N records in; output committed up to checkpoint K`.
fn stopped_line(name: &str, signal: StopSignal, stopped: &Stopped, partitions: usize) -> String {
    let progress = stopped.job.as_ref().map(|j| (j.records_in, j.partitions_done));
    line_of_stop(name, signal, progress, stopped, partitions)
}

/// [`stopped_line`] with the job's `(records_in, partitions_done)`, if known.
fn line_of_stop(
    name: &str,
    signal: StopSignal,
    progress: Option<(u64, usize)>,
    stopped: &Stopped,
    partitions: usize,
) -> String {
    let records = match progress {
        Some((records_in, _)) => format!("after {records_in} records in"),
        None => "(the coordinator did not answer)".to_string(),
    };
    let done = progress.map_or(0, |(_, done)| done);
    let committed = match (&stopped.final_checkpoint, stopped.last_checkpoint) {
        (Some(Ok(id)), _) => format!("output committed up to checkpoint {id}"),
        (Some(Err(why)), Some(id)) => {
            format!("output committed up to checkpoint {id} (no final checkpoint: {why})")
        }
        (Some(Err(why)), None) => format!("nothing committed (no final checkpoint: {why})"),
        // Without checkpoints a partition's output is committed when the partition is done.
        (None, _) if done > 0 => format!("output of {done} of {partitions} partitions committed"),
        (None, _) => "nothing committed".to_string(),
    };
    format!("job {name} stopped by {} {records}; {committed}", signal.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_over_the_recent_window_and_starts_over_with_a_new_attempt() {
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        let mut meter = RateMeter::default();
        assert_eq!(meter.observe(at(0), 0), None, "one reading is no rate");
        assert_eq!(meter.observe(at(400), 400), None, "under half a second");
        assert_eq!(meter.observe(at(1000), 1000), Some(1000.0));
        // Ten seconds at 100/s: the window forgets the fast start.
        let mut last = None;
        for s in 1..=10u64 {
            last = meter.observe(at(1000 + s * 1000), 1000 + s * 100);
        }
        let rate = last.expect("a rate");
        assert!((rate - 100.0).abs() < 1e-9, "{rate}");
        // A smaller count: a new attempt counting from zero.
        assert_eq!(meter.observe(at(12_000), 5), None);
        assert_eq!(meter.observe(at(13_000), 2005), Some(2000.0));
    }

    #[test]
    fn the_stopped_line_says_what_is_committed() {
        let line = |progress, stopped: Stopped| {
            line_of_stop("repartition", StopSignal::Interrupt, progress, &stopped, 8)
        };
        assert_eq!(
            line(
                Some((1200, 0)),
                Stopped {
                    job: None,
                    last_checkpoint: Some(7),
                    final_checkpoint: Some(Ok(7)),
                }
            ),
            "job repartition stopped by SIGINT after 1200 records in; output committed up to checkpoint 7"
        );
        assert_eq!(
            line(
                Some((1200, 0)),
                Stopped {
                    job: None,
                    last_checkpoint: Some(6),
                    final_checkpoint: Some(Err("not within 30s".to_string())),
                }
            ),
            "job repartition stopped by SIGINT after 1200 records in; output committed up to \
             checkpoint 6 (no final checkpoint: not within 30s)"
        );
        assert_eq!(
            line(
                Some((5, 0)),
                Stopped {
                    job: None,
                    last_checkpoint: None,
                    final_checkpoint: Some(Err("no job attempt is running".to_string())),
                }
            ),
            "job repartition stopped by SIGINT after 5 records in; nothing committed (no final \
             checkpoint: no job attempt is running)"
        );
        assert_eq!(
            line(Some((5, 0)), Stopped::default()),
            "job repartition stopped by SIGINT after 5 records in; nothing committed"
        );
        assert_eq!(
            line(Some((5, 3)), Stopped::default()),
            "job repartition stopped by SIGINT after 5 records in; output of 3 of 8 partitions committed"
        );
        assert_eq!(
            line(None, Stopped::default()),
            "job repartition stopped by SIGINT (the coordinator did not answer); nothing committed"
        );
    }

    #[test]
    fn a_signal_exits_with_128_plus_its_number() {
        assert_eq!(StopSignal::Interrupt.exit_code(), 130);
        assert_eq!(StopSignal::Terminate.exit_code(), 143);
    }
}
