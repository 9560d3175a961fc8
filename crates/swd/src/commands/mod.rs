//! One module per command. Each returns the process's exit code; errors become one
//! `error: ...` line on stderr in [`crate::main`].

mod admin;
mod coordinator;
mod local;
mod worker;

use std::process::ExitCode;

use streamweave_distributed::ConfigError;

use crate::cli::{Cli, Command};

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Coordinator(args) => coordinator::run(args).await,
        Command::Worker(args) => worker::run(args).await,
        Command::Status(args) => admin::status(args).await,
        Command::Assign(args) => admin::assign(args).await,
        Command::Rebalance(args) => admin::rebalance(args).await,
        Command::Local(args) => local::run(args).await,
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
        other => return anyhow::anyhow!("invalid {other}: {}", e.reason),
    };
    anyhow::anyhow!("invalid {flag}: {}", e.reason.replace('_', "-"))
}
