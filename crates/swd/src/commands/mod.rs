//! One module per command. Each returns the process's exit code; errors become one
//! `error: ...` line on stderr in [`crate::main`].

mod admin;
mod coordinator;
mod gen;
mod local;
mod progress;
mod worker;

use std::process::ExitCode;

use anyhow::Context;
use streamweave_distributed::dataflow::{JobRegistry, JobSpec};
use streamweave_distributed::ConfigError;

use crate::cli::{Cli, Command, JobArgs};

/// Runs the parsed command.
pub async fn run(cli: Cli, registry: JobRegistry) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Coordinator(args) => coordinator::run(args, &registry).await,
        Command::Worker(args) => worker::run(args, registry).await,
        Command::Status(args) => admin::status(args).await,
        Command::Assign(args) => admin::assign(args).await,
        Command::Rebalance(args) => admin::rebalance(args).await,
        Command::Local(args) => local::run(args, &registry).await,
        Command::Gen(args) => gen::run(args).await,
    }
}

/// The job the flags name, checked before anything starts: the job exists in this binary, its
/// input can be read and its output written. Paths are made absolute so that workers started
/// elsewhere find them.
fn job_spec(args: &JobArgs, registry: &JobRegistry) -> anyhow::Result<Option<JobSpec>> {
    job_spec_resuming(args, registry, false)
}

/// Like [`job_spec`]; when `resuming` (the data directory holds a checkpoint of the job), the
/// output is expected to hold committed output already, so only the input is checked.
fn job_spec_resuming(
    args: &JobArgs,
    registry: &JobRegistry,
    resuming: bool,
) -> anyhow::Result<Option<JobSpec>> {
    let Some(name) = &args.job else { return Ok(None) };
    let mut spec = JobSpec::new(name.clone());
    if let Some(input) = &args.input {
        spec.input =
            Some(absolute_unless_url(input).with_context(|| format!("bad --input {}", input.display()))?);
    }
    if let Some(output) = &args.output {
        spec.output =
            Some(absolute_unless_url(output).with_context(|| format!("bad --output {}", output.display()))?);
    }
    spec.params = args.params.iter().cloned().collect();
    if let Some(rate) = args.rate {
        spec.params.insert("rate".to_string(), rate.to_string());
    }
    let job = registry.build(&spec)?;
    if resuming {
        job.validate_input()?;
    } else {
        job.validate()?;
    }
    Ok(Some(spec))
}

/// A path made absolute (workers may run elsewhere); a URL (`nats://...`) as it is.
fn absolute_unless_url(path: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    match path.to_str().is_some_and(|p| p.contains("://")) {
        true => Ok(path.to_path_buf()),
        false => std::path::absolute(path),
    }
}

/// A configuration error in the words of the command line: the flag, not the struct field.
fn flag_error(e: &ConfigError) -> anyhow::Error {
    let flag = match e.field {
        "num_partitions" => "--partitions",
        "max_concurrent_tasks" => "--max-tasks",
        "assigned_partitions" => "--partitions",
        "worker_id" => "--id",
        "cluster_name" => "--cluster",
        "heartbeat_timeout" => "--heartbeat-timeout",
        "health_check_interval" => "--health-check-interval",
        "heartbeat_interval" => "--heartbeat-interval",
        "max_workers" => "--max-workers",
        "checkpoint_interval" => "--checkpoint-interval",
        "advertise_address" => "--advertise",
        other => return anyhow::anyhow!("invalid {other}: {}", e.reason),
    };
    // The reason speaks of config fields; on the command line they are flags.
    let reason = e.reason.replace("data_dir", "--data-dir").replace('_', "-");
    anyhow::anyhow!("invalid {flag}: {reason}")
}
