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
        // The reader of our output went away (`swd jobs | head`): nothing left to say.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// An error and its causes on one line, `outer: cause: root`. Many of the library's errors
/// already say their cause in their own message (`coordinator at ADDR: connection refused`),
/// so a cause the line already ends with is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn init_logging() {
    // The object store client logs every retry at info; its final error says what failed.
    let mut spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info,object_store=warn".to_string());
    // The disk backend's database warns when a dropped keyspace's files went with its
    // directory first (scratch space, nothing lost): quiet unless RUST_LOG names it.
    for (name, directive) in [("fjall", "fjall=error"), ("lsm_tree", "lsm_tree=error")] {
        if !spec.contains(name) {
            spec = format!("{spec},{directive}");
        }
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::{error_chain, is_broken_pipe};

    /// Says its cause in its message and also gives it as its source, as thiserror's
    /// `#[error("...: {source}")]` does.
    #[derive(Debug)]
    struct Says {
        source: std::io::Error,
    }

    impl std::fmt::Display for Says {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "coordinator at 127.0.0.1:1: {}", self.source)
        }
    }

    impl std::error::Error for Says {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = anyhow::Error::new(Says {
            source: std::io::Error::other("connection refused"),
        })
        .context("status");
        assert_eq!(
            error_chain(&e),
            "status: coordinator at 127.0.0.1:1: connection refused"
        );
    }

    #[test]
    fn a_closed_stdout_is_told_from_other_errors() {
        let closed = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(is_broken_pipe(&closed.context("jobs")));
        assert!(!is_broken_pipe(&anyhow::anyhow!("broken pipe")));
    }

    #[test]
    fn causes_not_in_the_message_are_chained() {
        let e = anyhow::anyhow!("root").context("middle").context("outer");
        assert_eq!(error_chain(&e), "outer: middle: root");
    }
}
