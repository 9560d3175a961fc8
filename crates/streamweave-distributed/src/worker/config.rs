//! The worker's configuration: a plain struct with defaults and `validate()`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::protocol::DEFAULT_MAX_FRAME_SIZE;
use crate::types::{PartitionId, WorkerId};

/// The worker's configuration.
///
/// ```
/// use streamweave_distributed::{WorkerConfig, WorkerId};
///
/// let config = WorkerConfig {
///     worker_id: WorkerId::new("worker-1".to_string()),
///     coordinator_address: "127.0.0.1:8080".parse().unwrap(),
///     max_concurrent_tasks: 10,
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// The worker's id; a restarted worker with the same id replaces its old session.
    pub worker_id: WorkerId,
    /// Where the worker listens for its data plane (port 0 picks a free port).
    pub bind_address: SocketAddr,
    /// The data-plane address other workers dial, `HOST:PORT`, when it differs from
    /// `bind_address` (a NAT, a container, a DNS name). Unset: the bound address, with an
    /// unspecified IP (`0.0.0.0`, `::`) replaced by the local IP this worker reaches the
    /// coordinator from.
    pub advertise_address: Option<String>,
    /// The coordinator's address.
    pub coordinator_address: SocketAddr,
    /// The other coordinators of a highly available cluster: registration tries them in turn
    /// (and goes where a standby's refusal points) until the leader accepts.
    pub other_coordinators: Vec<SocketAddr>,
    /// How often it sends a heartbeat.
    pub heartbeat_interval: Duration,
    /// Deadline for connecting and for the coordinator's answers.
    pub communication_timeout: Duration,
    /// How many partitions it may run at once.
    pub max_concurrent_tasks: usize,
    /// Partitions it asks for when it registers (honoured when free).
    pub assigned_partitions: Vec<PartitionId>,
    /// The cluster's name; must match the coordinator's.
    pub cluster_name: String,
    /// The largest frame accepted from a peer, in bytes.
    pub max_frame_size: usize,
    /// The longest wait between two attempts to reach a lost coordinator.
    pub max_reconnect_backoff: Duration,
    /// How long a worker leaving while a checkpointed job runs keeps running its partitions
    /// for them to move away with their state, before it stops them anyway (the job then
    /// restarts them from the last checkpoint). Each move first loads the partition's state on
    /// its new owner: with gigabytes a partition, that takes minutes on a busy machine.
    pub drain_timeout: Duration,
    /// How many source partitions of a bounded job this worker reads at once (0: one per
    /// core). Fewer concurrent readers than partitions keeps their pre-aggregation state in
    /// cache; unbounded sources always run all at once.
    pub source_slots: usize,
    /// Where jobs on the disk state backend keep their keyed state (a database per job attempt,
    /// removed when it ends); none: a directory under the system's temporary directory.
    pub state_dir: Option<std::path::PathBuf>,
    /// TLS and secrets for the connection to the coordinator and the data plane (not
    /// serialized: it holds keys).
    #[serde(skip)]
    pub security: crate::security::Security,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: WorkerId::new(format!("worker-{}", std::process::id())),
            bind_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_address: None,
            coordinator_address: SocketAddr::from(([127, 0, 0, 1], 7000)),
            other_coordinators: Vec::new(),
            heartbeat_interval: Duration::from_millis(500),
            communication_timeout: Duration::from_secs(5),
            max_concurrent_tasks: 128,
            assigned_partitions: Vec::new(),
            cluster_name: "default".to_string(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_reconnect_backoff: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(120),
            source_slots: 0,
            state_dir: None,
            security: crate::security::Security::none(),
        }
    }
}

impl WorkerConfig {
    /// The effective number of source slots.
    pub fn effective_source_slots(&self) -> usize {
        match self.source_slots {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// Checks that the values can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.worker_id.as_str().is_empty() {
            return Err(ConfigError::new("worker_id", "must not be empty"));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::new("heartbeat_interval", "must be above zero"));
        }
        if self.communication_timeout.is_zero() {
            return Err(ConfigError::new("communication_timeout", "must be above zero"));
        }
        if self.max_concurrent_tasks == 0 {
            return Err(ConfigError::new("max_concurrent_tasks", "must be at least 1"));
        }
        if self.assigned_partitions.len() > self.max_concurrent_tasks {
            return Err(ConfigError::new(
                "assigned_partitions",
                format!(
                    "asks for {} partitions but max_concurrent_tasks is {}",
                    self.assigned_partitions.len(),
                    self.max_concurrent_tasks
                ),
            ));
        }
        if self.cluster_name.is_empty() {
            return Err(ConfigError::new("cluster_name", "must not be empty"));
        }
        if self.max_reconnect_backoff.is_zero() {
            return Err(ConfigError::new("max_reconnect_backoff", "must be above zero"));
        }
        if self.drain_timeout.is_zero() {
            return Err(ConfigError::new("drain_timeout", "must be above zero"));
        }
        if let Some(advertise) = &self.advertise_address {
            let port = advertise
                .rsplit_once(':')
                .map(|(host, port)| (host, port.parse::<u16>()));
            if !matches!(port, Some((host, Ok(p))) if !host.is_empty() && p != 0) {
                return Err(ConfigError::new(
                    "advertise_address",
                    format!("{advertise:?} is not HOST:PORT with a port above 0"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = WorkerConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(WorkerConfig, &str)> = vec![
            (
                WorkerConfig {
                    worker_id: WorkerId::new(""),
                    ..ok.clone()
                },
                "worker_id",
            ),
            (
                WorkerConfig {
                    heartbeat_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "heartbeat_interval",
            ),
            (
                WorkerConfig {
                    communication_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "communication_timeout",
            ),
            (
                WorkerConfig {
                    drain_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "drain_timeout",
            ),
            (
                WorkerConfig {
                    max_concurrent_tasks: 0,
                    ..ok.clone()
                },
                "max_concurrent_tasks",
            ),
            (
                WorkerConfig {
                    max_concurrent_tasks: 1,
                    assigned_partitions: vec![0, 1],
                    ..ok.clone()
                },
                "assigned_partitions",
            ),
            (
                WorkerConfig {
                    cluster_name: String::new(),
                    ..ok.clone()
                },
                "cluster_name",
            ),
            (
                WorkerConfig {
                    advertise_address: Some("10.0.0.2".into()),
                    ..ok.clone()
                },
                "advertise_address",
            ),
            (
                WorkerConfig {
                    advertise_address: Some(":7001".into()),
                    ..ok.clone()
                },
                "advertise_address",
            ),
        ];
        let named = WorkerConfig {
            advertise_address: Some("worker-0.swd.default.svc:7001".into()),
            ..ok.clone()
        };
        assert_eq!(named.validate(), Ok(()));
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }
}
