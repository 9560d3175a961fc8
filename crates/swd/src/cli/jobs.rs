//! The grammar of `swd run | jobs | cancel | stop` (jobs submitted to a running cluster).

use std::time::Duration;

use clap::Args;

use super::{parse_duration, JobArgs, Target};

/// `swd run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The cluster coordinator to submit to.
    #[command(flatten)]
    pub target: Target,
    /// The job: name, input, output, parameters (as for `swd coordinator`).
    #[command(flatten)]
    pub job: JobArgs,
    /// Take a checkpoint this often (the coordinator needs --data-dir or --checkpoint-store);
    /// `swd stop` needs them.
    #[arg(long, value_parser = parse_duration)]
    pub checkpoint_interval: Option<Duration>,
    /// Resume from a savepoint `swd stop` printed (JOB:CHECKPOINT), into the same output.
    #[arg(long, value_name = "ID")]
    pub from_savepoint: Option<String>,
    /// Follow the job's progress on stderr and exit with its result: 0 finished or stopped,
    /// 1 failed or cancelled.
    #[arg(long)]
    pub wait: bool,
}

/// `swd jobs`.
#[derive(Debug, Args)]
pub struct JobsArgs {
    /// The cluster coordinator to ask.
    #[command(flatten)]
    pub target: Target,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `swd cancel JOB`, `swd stop JOB`.
#[derive(Debug, Args)]
pub struct JobIdArgs {
    /// The cluster coordinator to ask.
    #[command(flatten)]
    pub target: Target,
    /// The job's id, as `swd run` printed it.
    pub job: String,
}
