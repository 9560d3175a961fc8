//! The admin messages of jobs submitted to a running cluster (`swd run | jobs | cancel | stop`):
//! what a client submits and what the cluster coordinator lists. Workers read the same list to
//! learn which job masters to join (`worker/job_sessions.rs`).
//!
//! ```text
//! client --SubmitJob--> cluster coordinator --JobSubmitted{id}-->
//! client --ListJobs-->                      --Jobs[JobEntry{id, state, master_port, ...}]-->
//! client --CancelJob{id} | StopSubmittedJob{id}--> --JobCancelled | JobStopping{savepoint}-->
//! ```

use serde::{Deserialize, Serialize};

use super::JobSpecWire;

/// A job submitted to a cluster coordinator started without `--job`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitJob {
    /// Which registered job, with its input, output and parameters.
    pub spec: JobSpecWire,
    /// Take a checkpoint this often (milliseconds); none: no checkpoints (and no savepoint).
    pub checkpoint_interval_ms: Option<u64>,
    /// Resume from this savepoint (`<job id>:<checkpoint id>`, as `swd stop` printed it).
    pub from_savepoint: Option<String>,
}

/// Where a submitted job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmittedJobState {
    /// Its job master is starting.
    Starting,
    /// Waiting for workers to own every partition.
    Waiting,
    /// An attempt is running.
    Running,
    /// An attempt was aborted; the next one starts when the assignment is stable.
    Restarting,
    /// Asked to stop: its final checkpoint (the savepoint) is being taken.
    Stopping,
    /// Every partition committed its output.
    Finished,
    /// Too many attempts failed, or its job master could not start.
    Failed,
    /// Stopped after its savepoint.
    Stopped,
    /// Cancelled: ended at once, without a checkpoint.
    Cancelled,
}

impl SubmittedJobState {
    /// Whether the job has ended (its workers drop their sessions).
    ///
    /// ```
    /// use streamweave_distributed::protocol::SubmittedJobState;
    /// assert!(SubmittedJobState::Cancelled.is_terminal());
    /// assert!(!SubmittedJobState::Stopping.is_terminal());
    /// ```
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SubmittedJobState::Finished
                | SubmittedJobState::Failed
                | SubmittedJobState::Stopped
                | SubmittedJobState::Cancelled
        )
    }

    /// The state's name, as in JSON (`running`, `cancelled`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SubmittedJobState::Starting => "starting",
            SubmittedJobState::Waiting => "waiting",
            SubmittedJobState::Running => "running",
            SubmittedJobState::Restarting => "restarting",
            SubmittedJobState::Stopping => "stopping",
            SubmittedJobState::Finished => "finished",
            SubmittedJobState::Failed => "failed",
            SubmittedJobState::Stopped => "stopped",
            SubmittedJobState::Cancelled => "cancelled",
        }
    }
}

/// One submitted job, as `swd jobs` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntry {
    /// Its id (`j-` and 8 hex digits).
    pub id: String,
    /// The registered job's name.
    pub name: String,
    /// Its state.
    pub state: SubmittedJobState,
    /// The port its job master listens on, on the cluster coordinator's host, while it runs:
    /// workers join it there.
    pub master_port: Option<u16>,
    /// Attempts aborted so far.
    pub restarts: u64,
    /// Records read by the sources in the current attempt.
    pub records_in: u64,
    /// Records committed by the sinks in the current attempt.
    pub records_out: u64,
    /// Why it failed, or why the last attempt was aborted.
    pub error: Option<String>,
    /// Once stopped: the savepoint to resume it from.
    pub savepoint: Option<String>,
    /// Its output, as given.
    pub output: Option<String>,
}
