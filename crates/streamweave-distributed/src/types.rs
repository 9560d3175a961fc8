//! Identifiers and small value types shared by every layer: worker ids, partitions,
//! generations, and the worker description the coordinator keeps.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A partition number in `0..P`. A partition is both a source split and a key group.
pub type PartitionId = usize;

/// The name a worker goes by in the cluster. Stable across restarts of the same worker, so a
/// restarted worker with the same id takes over (and fences) its old session.
///
/// ```
/// use streamweave_distributed::WorkerId;
/// let id = WorkerId::new("worker-1".to_string());
/// assert_eq!(id.as_str(), "worker-1");
/// assert_eq!(id.to_string(), "worker-1");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(String);

impl WorkerId {
    /// Wraps a name as a worker id.
    pub fn new(id: impl Into<String>) -> Self {
        WorkerId(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for WorkerId {
    fn from(s: &str) -> Self {
        WorkerId(s.to_string())
    }
}

/// A generation number: every change of the partition assignment gets a new, larger one
/// (Kafka's generation id). Messages carry it so that stale ones can be recognised and dropped.
///
/// ```
/// use streamweave_distributed::Generation;
/// let g = Generation::default();
/// assert!(g.next() > g);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Generation(pub u64);

impl Generation {
    /// The generation after this one.
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a worker is in its life, as the coordinator sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Connected and heartbeating.
    Active,
    /// Its connection closed; it is still a member until `heartbeat_timeout` passes without it
    /// coming back.
    Disconnected,
    /// Declared failed; it owns nothing and is about to leave the membership.
    Failed,
    /// It asked to leave while a checkpointed job runs: its partitions move away (carrying
    /// their state) before it goes.
    Leaving,
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerState::Active => "active",
            WorkerState::Disconnected => "disconnected",
            WorkerState::Failed => "failed",
            WorkerState::Leaving => "leaving",
        })
    }
}

/// What the coordinator knows about one worker.
///
/// ```
/// use std::time::{Duration, Instant};
/// use streamweave_distributed::{WorkerId, WorkerInfo};
/// let info = WorkerInfo::new(WorkerId::new("w1"), "127.0.0.1:9000".to_string(), 4, Instant::now());
/// assert!(info.is_healthy(Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// The worker's id.
    pub id: WorkerId,
    /// The address the worker serves its data plane on, as it announced it.
    pub address: String,
    /// How many partitions it may run at once (`max_concurrent_tasks`).
    pub capacity: usize,
    /// The partitions assigned to it.
    pub partitions: Vec<PartitionId>,
    /// How many tasks it reported running in its last heartbeat.
    pub load: usize,
    /// Its state.
    pub state: WorkerState,
    /// When the coordinator last heard from it.
    pub last_heartbeat: Instant,
}

impl WorkerInfo {
    /// A newly registered worker with no partitions, last heard from at `now`.
    pub fn new(id: WorkerId, address: String, capacity: usize, now: Instant) -> Self {
        WorkerInfo {
            id,
            address,
            capacity,
            partitions: Vec::new(),
            load: 0,
            state: WorkerState::Active,
            last_heartbeat: now,
        }
    }

    /// Whether the worker has been heard from within `timeout` (measured against the clock now).
    pub fn is_healthy(&self, timeout: Duration) -> bool {
        self.is_healthy_at(timeout, Instant::now())
    }

    /// Whether the worker has been heard from within `timeout` of `now`; the clock-free form of
    /// [`WorkerInfo::is_healthy`] that decision logic uses.
    pub fn is_healthy_at(&self, timeout: Duration, now: Instant) -> bool {
        self.state != WorkerState::Failed && now.saturating_duration_since(self.last_heartbeat) <= timeout
    }
}
