//! One module per command. Each returns the process's exit code; errors become one
//! `error: ...` line on stderr in [`crate::main`].

/// `println!` for command output, returning the write's error instead of panicking: `swd jobs |
/// head` closes the pipe early, which ends the command quietly (see [`crate::main`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` for command output; see [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        write!(stdout, $($arg)*).and_then(|()| stdout.flush())
    }};
}

pub(crate) mod admin;
mod cert;
mod coordinator;
mod gen;
mod job_admin;
mod local;
mod local_secret;
mod progress;
mod worker;

use std::process::ExitCode;

use anyhow::Context;
use streamweave_distributed::dataflow::{JobRegistry, JobSpec};
use streamweave_distributed::storage::StorageUrl;
use streamweave_distributed::ConfigError;

use crate::cli::{Cli, Command, JobArgs, SecurityArgs};
use streamweave_distributed::security::{Security, SecurityFiles};

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
        Command::Cert(command) => cert::run(command).await,
        Command::Run(args) => job_admin::run(args, &registry).await,
        Command::Jobs(args) => job_admin::jobs(args).await,
        Command::Cancel(args) => job_admin::cancel(args).await,
        Command::Stop(args) => job_admin::stop(args).await,
    }
}

/// The TLS setup and secrets the flags name (nothing when none is given).
fn security(args: &SecurityArgs) -> anyhow::Result<Security> {
    Ok(Security::load(&SecurityFiles {
        secret_file: args.secret_file.clone(),
        admin_secret_file: args.admin_secret_file.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        tls_ca: args.tls_ca.clone(),
    })?)
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
        spec.input = Some(job_location("--input", input)?);
    }
    if let Some(output) = &args.output {
        spec.output = Some(job_location("--output", output)?);
    }
    spec.params = args.params.iter().cloned().collect();
    if let Some(rate) = args.rate {
        spec.params.insert("rate".to_string(), rate.to_string());
    }
    if let Some(backend) = args.state_backend {
        let name = match backend {
            crate::cli::StateBackend::Memory => "memory",
            crate::cli::StateBackend::Disk => "disk",
        };
        let param = streamweave_distributed::dataflow::state::STATE_BACKEND_PARAM;
        spec.params.insert(param.to_string(), name.to_string());
    }
    streamweave_distributed::dataflow::state::check_params(&spec)?;
    let job = registry.build(&spec)?;
    if resuming {
        job.validate_input()?;
    } else {
        job.validate()?;
    }
    Ok(Some(spec))
}

/// A job's input or output as the workers get it: an object store URL (`s3://`) or a NATS one
/// (`nats://`) as given, a local path (plain or `file:///path`) made absolute; `memory://`
/// refused (one process only).
fn job_location(flag: &str, given: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let bad = || format!("bad {flag} {}", given.display());
    if given.to_str().is_some_and(|p| p.starts_with("nats://")) {
        return Ok(given.to_path_buf());
    }
    match streamweave_distributed::dataflow::storage_url(given).with_context(bad)? {
        StorageUrl::Local(path) => std::path::absolute(path).with_context(bad),
        StorageUrl::Memory { .. } => Err(anyhow::anyhow!("{}: {}", bad(), crate::cli::MEMORY_REFUSED)),
        _ => Ok(given.to_path_buf()),
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
        "drain_timeout" => "--drain-timeout",
        "max_workers" => "--max-workers",
        "checkpoint_interval" => "--checkpoint-interval",
        "checkpoint_store" => "--checkpoint-store",
        "advertise_address" => "--advertise",
        other => return anyhow::anyhow!("invalid {other}: {}", e.reason),
    };
    // The reason speaks of config fields; on the command line they are flags.
    let reason = e
        .reason
        .replace("checkpoint_store", "--checkpoint-store")
        .replace("data_dir", "--data-dir")
        .replace('_', "-");
    anyhow::anyhow!("invalid {flag}: {reason}")
}
