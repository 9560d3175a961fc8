//! What goes into and comes out of the worker's session core ([`super::session_core`]): the
//! inputs the shell reports, the actions it carries out, the notes it logs, and the snapshot the
//! worker's owner sees.

use std::time::Duration;

use crate::protocol::{CoordinatorMessage, WorkerMessage};
use crate::types::{Generation, PartitionId};

/// What the worker's owner can observe of the session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSnapshot {
    /// The generation of the last assignment applied.
    pub generation: Generation,
    /// Partitions with a running task.
    pub partitions: Vec<PartitionId>,
    /// Whether the worker is registered with a coordinator right now.
    pub connected: bool,
}

/// The durations the session runs by, from the worker's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionTiming {
    /// Time between two heartbeats.
    pub(crate) heartbeat_interval: Duration,
    /// The cap of the reconnection backoff.
    pub(crate) max_reconnect_backoff: Duration,
    /// How long a leave without carried state waits for the coordinator's `LeaveAck`.
    pub(crate) communication_timeout: Duration,
    /// How long a leave that carries state runs its partitions for them to move away.
    pub(crate) drain_timeout: Duration,
    /// After this long without the coordinator, until the coordinator tells us its own
    /// heartbeat timeout at registration.
    pub(crate) presumed_dead_after: Duration,
}

/// Something that happened, as the shell reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionInput {
    /// The coordinator accepted our registration on a new connection.
    Registered {
        /// The generation it is at.
        generation: Generation,
        /// After this long without hearing from us it declares us failed.
        heartbeat_timeout: Duration,
    },
    /// A connection or registration attempt asked for by [`SessionAction::Connect`] failed.
    ConnectFailed {
        /// Why, for the log.
        reason: String,
    },
    /// A message from the coordinator.
    Message(CoordinatorMessage),
    /// The connection closed or a send on it failed.
    ConnectionLost,
    /// A report of the job runner to pass on to the coordinator.
    Report(WorkerMessage),
    /// [`SessionCore::deadline`] passed.
    Tick,
    /// A partition task ended without being asked to stop.
    TaskEnded {
        /// Its partition.
        partition: PartitionId,
        /// Why, if it failed or panicked.
        error: Option<String>,
    },
    /// The worker's owner asked it to leave gracefully.
    LeaveRequested {
        /// Whether a checkpointed job runs here, whose partitions must move away with their
        /// state before the tasks stop.
        carries_state: bool,
    },
}

/// How the session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionEnd {
    /// It left gracefully.
    Left,
    /// A newer run of this worker id fenced this one.
    Fenced(String),
}

/// Something the shell must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionAction {
    /// Send a message to the coordinator. If it fails, feed [`SessionInput::ConnectionLost`]
    /// and skip the remaining actions.
    Send(WorkerMessage),
    /// Send a heartbeat with these running partitions and the job runner's progress.
    Heartbeat {
        /// Partitions with a running task.
        running: Vec<PartitionId>,
    },
    /// Make the task set run exactly these partitions (stopping the others first, and waiting).
    Apply {
        /// The partitions to run.
        partitions: Vec<PartitionId>,
        /// The generation that granted them.
        generation: Generation,
    },
    /// Stop every partition task and the job attempt, and wait for the tasks.
    StopAll,
    /// Pass a job message to the job runner.
    ToJobs(CoordinatorMessage),
    /// Drop the connection to the coordinator.
    Disconnect,
    /// Connect and register again; feed the result back.
    Connect,
    /// Publish this snapshot to the worker's owner.
    Publish(WorkerSnapshot),
    /// Log what happened.
    Log(SessionNote),
    /// The session is over.
    Exit(SessionEnd),
}

/// What the session logs, decided here so the tests can see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionNote {
    /// Registered with the coordinator at this generation.
    Registered(Generation),
    /// An assignment older than the current generation was dropped.
    StaleAssignment {
        /// The assignment's generation.
        generation: Generation,
        /// Ours.
        current: Generation,
    },
    /// The coordinator ended our session with this reason.
    Shutdown(String),
    /// A newer run fenced this one.
    Fenced(String),
    /// The connection to the coordinator was lost; reconnecting.
    Lost,
    /// The coordinator said nothing for this long on an open connection (paused or hung): the
    /// connection is dropped as lost.
    Silent(Duration),
    /// A registration attempt failed; the next one is in `retry_in`.
    RetryFailed {
        /// The number of attempts since the connection was lost.
        attempt: u32,
        /// Why it failed.
        reason: String,
        /// The backoff before this failure doubled it.
        retry_in: Duration,
    },
    /// The coordinator was unreachable for its heartbeat timeout: it moved our partitions.
    PresumedDead(Duration),
    /// Leaving: waiting for the partitions to move away with their state.
    Draining,
    /// Leaving: the partitions did not move away within the drain timeout.
    DrainTimedOut,
    /// Left the cluster, with or without the coordinator's acknowledgement.
    Left {
        /// Whether the coordinator acknowledged.
        acknowledged: bool,
    },
    /// A message this state does not expect.
    Ignored(CoordinatorMessage),
    /// A partition task ended by itself; the partition stays ours until the coordinator moves it.
    TaskEnded {
        /// Its partition.
        partition: PartitionId,
        /// Why, if it failed or panicked.
        error: Option<String>,
    },
}
