//! `swd run`, `swd jobs`, `swd cancel`, `swd stop`: jobs submitted to a running cluster (a
//! coordinator started without `--job`; `coordinator/jobs/` in the library).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use streamweave_distributed::dataflow::JobRegistry;
use streamweave_distributed::protocol::{JobEntry, JobSpecWire, SubmitJob, SubmittedJobState};
use streamweave_distributed::Client;

use super::admin::connect;
use super::job_spec_resuming;
use crate::cli::{JobIdArgs, JobsArgs, RunArgs};

/// How often `--wait` and `swd stop` read the job list.
const POLL: Duration = Duration::from_millis(200);
/// How long `swd stop` waits for the savepoint to be committed.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// The checkpoint interval of a job resumed from a savepoint when none is given.
const RESUME_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(args: RunArgs, registry: &JobRegistry) -> anyhow::Result<ExitCode> {
    if args.job.job.is_none() {
        anyhow::bail!(
            "swd run needs --job NAME (the swd binary has {})",
            registry.names().join(", ")
        );
    }
    // Resuming: the output already holds the stopped job's committed output.
    let resuming = args.from_savepoint.is_some();
    let Some(spec) = job_spec_resuming(&args.job, registry, resuming)? else {
        anyhow::bail!("swd run needs --job NAME");
    };
    let interval = args.checkpoint_interval.or(resuming.then_some(RESUME_INTERVAL));
    let submit = SubmitJob {
        spec: JobSpecWire::from(spec),
        checkpoint_interval_ms: interval.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        from_savepoint: args.from_savepoint.clone(),
    };
    let mut client = connect(&args.target).await?;
    let id = client.submit_job(submit).await?;
    outln!("{id}")?;
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let job = follow(&mut client, &id).await?;
    Ok(match job.state {
        SubmittedJobState::Finished | SubmittedJobState::Stopped => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

/// Prints the job's progress on stderr until it ends; its last entry.
async fn follow(client: &mut Client, id: &str) -> anyhow::Result<JobEntry> {
    let mut last: Option<(SubmittedJobState, u64, u64)> = None;
    let mut printed = Instant::now();
    loop {
        let job = find(client, id).await?;
        let now = (job.state, job.records_in, job.records_out);
        if last.map(|l| l.0) != Some(job.state)
            || (last != Some(now) && printed.elapsed() >= Duration::from_secs(1))
        {
            eprintln!(
                "{id} {}: {} records in, {} out, {} restarts{}",
                job.state.as_str(),
                job.records_in,
                job.records_out,
                job.restarts,
                job.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            printed = Instant::now();
        }
        last = Some(now);
        if job.state.is_terminal() {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The job's entry, or an error naming it.
async fn find(client: &mut Client, id: &str) -> anyhow::Result<JobEntry> {
    client
        .list_jobs()
        .await?
        .into_iter()
        .find(|j| j.id == id)
        .ok_or_else(|| anyhow::anyhow!("no job {id} on this cluster (swd jobs lists them)"))
}

pub async fn jobs(args: JobsArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.target).await?;
    let jobs = client.list_jobs().await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&jobs)?)?;
    } else {
        out!("{}", jobs_table(&jobs))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The jobs as an aligned table.
fn jobs_table(jobs: &[JobEntry]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<12} {:<10} {:>8} {:>12} {:>12}  SAVEPOINT",
        "ID", "NAME", "STATE", "RESTARTS", "RECORDS_IN", "RECORDS_OUT"
    );
    for j in jobs {
        let _ = writeln!(
            out,
            "{:<12} {:<12} {:<10} {:>8} {:>12} {:>12}  {}",
            j.id,
            j.name,
            j.state.as_str(),
            j.restarts,
            j.records_in,
            j.records_out,
            j.savepoint.as_deref().unwrap_or("-")
        );
    }
    out
}

pub async fn cancel(args: JobIdArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.target).await?;
    client.cancel_job(&args.job).await?;
    eprintln!("job {} cancelled", args.job);
    Ok(ExitCode::SUCCESS)
}

pub async fn stop(args: JobIdArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.target).await?;
    let savepoint = client.stop_submitted_job(&args.job).await?;
    // Printed once the savepoint is committed and the job stopped: only then can it resume.
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        let job = find(&mut client, &args.job).await?;
        match job.state {
            SubmittedJobState::Stopped => break,
            state if state.is_terminal() => anyhow::bail!(
                "job {} ended {} before its savepoint {savepoint} was committed{}",
                args.job,
                state.as_str(),
                job.error.map(|e| format!(": {e}")).unwrap_or_default()
            ),
            _ if Instant::now() >= deadline => anyhow::bail!(
                "job {} did not stop within {}s (savepoint {savepoint})",
                args.job,
                STOP_TIMEOUT.as_secs()
            ),
            _ => tokio::time::sleep(POLL).await,
        }
    }
    outln!("{savepoint}")?;
    Ok(ExitCode::SUCCESS)
}
