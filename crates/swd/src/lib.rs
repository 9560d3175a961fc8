//! The `swd` command line as a library: [`main`] parses the arguments, sets up logging to stderr
//! and runs one command. A user's own binary gets the whole command line by calling it.
//!
//! ```text
//! main -> cli::Cli (clap) -> commands::{coordinator, worker, status, assign, rebalance, local, gen}
//!                                  |            |
//!                          CoordinatorImpl   WorkerImpl     Client (admin requests)
//! ```
//! stdout carries only command output; logs go to stderr (`RUST_LOG`, default `info`).

#![warn(missing_docs)]

pub mod cli;
mod commands;
mod console;
pub mod corpus;
mod signals;
pub mod table;

use std::process::ExitCode;

use clap::Parser;

/// Runs `swd` with the process's arguments and the built-in jobs, and returns its exit code.
pub fn main() -> ExitCode {
    main_with(streamweave_distributed::dataflow::jobs::builtin())
}

/// Runs `swd` with the process's arguments and the jobs in `registry`: a user's own binary
/// gets the whole command line, with its jobs, from this one call (see `examples/custom_jobs.rs`).
pub fn main_with(registry: streamweave_distributed::dataflow::JobRegistry) -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli, registry)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The object store client logs every retry at info; its final error says what failed.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,object_store=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
