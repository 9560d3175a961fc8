//! The coordinator's configuration: a plain struct with defaults and `validate()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dataflow::JobSpec;
use crate::error::ConfigError;
use crate::protocol::DEFAULT_MAX_FRAME_SIZE;
use crate::security::Security;
use crate::storage::StorageUrl;

/// How the coordinator moves partitions when workers join or leave.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RebalanceStrategy {
    /// Every move a join or leave needs, at once, in one generation.
    Immediate,
    /// One partition at a time: revoke it, wait until its old owner confirms it stopped (or is
    /// declared dead), grant it to the new owner, wait for the grant to be applied, then the next.
    #[default]
    Gradual,
    /// Nothing moves by itself; `assign_partitions` and `rebalance` decide. Failed workers'
    /// partitions are still reassigned when failover is enabled.
    Manual,
}

impl RebalanceStrategy {
    /// The strategy's name as the CLI and status spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            RebalanceStrategy::Immediate => "immediate",
            RebalanceStrategy::Gradual => "gradual",
            RebalanceStrategy::Manual => "manual",
        }
    }
}

impl FromStr for RebalanceStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "immediate" => Ok(RebalanceStrategy::Immediate),
            "gradual" => Ok(RebalanceStrategy::Gradual),
            "manual" => Ok(RebalanceStrategy::Manual),
            other => Err(format!(
                "unknown rebalance strategy {other:?} (expected immediate, gradual or manual)"
            )),
        }
    }
}

/// Where a job resumes after a failure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryStrategy {
    /// From the last completed checkpoint (the default; without checkpoints, the beginning).
    #[default]
    FromCheckpoint,
    /// From the beginning of the input, even when checkpoints exist.
    FromBeginning,
}

impl FromStr for RecoveryStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "from-checkpoint" | "checkpoint" => Ok(RecoveryStrategy::FromCheckpoint),
            "from-beginning" | "beginning" => Ok(RecoveryStrategy::FromBeginning),
            other => Err(format!(
                "unknown recovery strategy {other:?} (expected checkpoint or beginning)"
            )),
        }
    }
}

/// The coordinator's configuration.
///
/// ```
/// use std::time::Duration;
/// use streamweave_distributed::{CoordinatorConfig, RebalanceStrategy};
///
/// let config = CoordinatorConfig {
///     bind_address: "127.0.0.1:0".parse().unwrap(),
///     heartbeat_timeout: Duration::from_millis(500),
///     health_check_interval: Duration::from_millis(100),
///     num_partitions: 12,
///     rebalance_strategy: RebalanceStrategy::Gradual,
///     ..Default::default()
/// };
/// assert!(config.validate().is_ok());
///
/// let bad = CoordinatorConfig { num_partitions: 0, ..config };
/// assert_eq!(bad.validate().unwrap_err().field, "num_partitions");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CoordinatorConfig {
    /// Where to listen for workers and clients.
    pub bind_address: SocketAddr,
    /// A worker not heard from for this long is failed.
    pub heartbeat_timeout: Duration,
    /// How often the coordinator checks for failed workers.
    pub health_check_interval: Duration,
    /// Workers beyond this many are refused.
    pub max_workers: usize,
    /// How partitions move on joins and leaves.
    pub rebalance_strategy: RebalanceStrategy,
    /// Whether a failed worker's partitions are reassigned at once. Off: they stay unassigned
    /// until the next change of the assignment (a join, a leave, `assign_partitions` or
    /// `rebalance`; under Manual only the last two).
    pub enable_failover: bool,
    /// The number of partitions `P` (Flink's key groups, Kafka's partitions).
    pub num_partitions: usize,
    /// Where the coordinator keeps its files (the event log today; checkpoints later).
    pub data_dir: Option<PathBuf>,
    /// The cluster's name; peers naming another cluster are refused at the handshake.
    pub cluster_name: String,
    /// The largest frame accepted from a peer, in bytes.
    pub max_frame_size: usize,
    /// The job to run on the workers, if any.
    pub job: Option<JobSpec>,
    /// Restarts in a row with no checkpoint completed in between after which the job is
    /// declared failed (the next failure fails it).
    pub max_job_restarts: u64,
    /// Checkpoints in a row that may time out; the next timeout fails the attempt, which
    /// restarts from the last completed checkpoint.
    pub tolerable_checkpoint_failures: u32,
    /// Take a checkpoint of the running job this often (off when `None`); needs
    /// `checkpoint_store` or `data_dir` (the default store is `data_dir/checkpoints`).
    pub checkpoint_interval: Option<Duration>,
    /// Where checkpoints are stored, as a storage URL: a path or `file:///path`,
    /// `s3://bucket/prefix` (configured by the `AWS_*` environment) or `memory://name/prefix`
    /// (tests). `None`: `data_dir/checkpoints`. Workers write and read their state there
    /// themselves, so every worker must reach it.
    pub checkpoint_store: Option<String>,
    /// A checkpoint not complete after this long is aborted.
    pub checkpoint_timeout: Duration,
    /// How many completed checkpoints to keep.
    pub checkpoint_retain: usize,
    /// Where a job resumes after a failure.
    pub recovery_strategy: RecoveryStrategy,
    /// The job's first attempt waits until this many workers have registered (so a cluster
    /// that is still starting does not begin, then restart at every join).
    pub min_workers: usize,
    /// TLS and secrets for every accepted connection, and who may issue admin requests (not
    /// serialized: it holds keys).
    #[serde(skip)]
    pub security: Security,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 7000)),
            heartbeat_timeout: Duration::from_secs(2),
            health_check_interval: Duration::from_millis(200),
            max_workers: 100,
            rebalance_strategy: RebalanceStrategy::Gradual,
            enable_failover: true,
            num_partitions: 128,
            data_dir: None,
            cluster_name: "default".to_string(),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            job: None,
            max_job_restarts: 10,
            tolerable_checkpoint_failures: 3,
            min_workers: 1,
            checkpoint_interval: None,
            checkpoint_store: None,
            checkpoint_timeout: Duration::from_secs(10),
            checkpoint_retain: 3,
            recovery_strategy: RecoveryStrategy::FromCheckpoint,
            security: Security::none(),
        }
    }
}

impl CoordinatorConfig {
    /// Where checkpoints are stored, when they are on: `checkpoint_store`, or
    /// `data_dir/checkpoints` by default. (`None` for a URL that does not parse, which
    /// [`validate`](CoordinatorConfig::validate) refuses.)
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamweave_distributed::CoordinatorConfig;
    /// let mut config = CoordinatorConfig {
    ///     checkpoint_interval: Some(Duration::from_secs(1)),
    ///     data_dir: Some("/var/lib/swd".into()),
    ///     ..Default::default()
    /// };
    /// assert_eq!(config.checkpoint_store().unwrap().to_string(), "/var/lib/swd/checkpoints");
    /// config.checkpoint_store = Some("s3://bucket/swd/ckpt".into());
    /// assert_eq!(config.checkpoint_store().unwrap().to_string(), "s3://bucket/swd/ckpt");
    /// ```
    pub fn checkpoint_store(&self) -> Option<StorageUrl> {
        self.checkpoint_interval?;
        match &self.checkpoint_store {
            Some(url) => StorageUrl::parse(url).ok(),
            None => self
                .data_dir
                .as_ref()
                .map(|d| StorageUrl::Local(d.join("checkpoints"))),
        }
    }

    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.num_partitions == 0 {
            return Err(ConfigError::new("num_partitions", "must be at least 1"));
        }
        if self.max_workers == 0 {
            return Err(ConfigError::new("max_workers", "must be at least 1"));
        }
        if self.health_check_interval.is_zero() {
            return Err(ConfigError::new("health_check_interval", "must be above zero"));
        }
        if self.heartbeat_timeout <= self.health_check_interval {
            return Err(ConfigError::new(
                "heartbeat_timeout",
                format!(
                    "must be above health_check_interval ({} <= {})",
                    humantime::format_duration(self.heartbeat_timeout),
                    humantime::format_duration(self.health_check_interval)
                ),
            ));
        }
        if self.cluster_name.is_empty() {
            return Err(ConfigError::new("cluster_name", "must not be empty"));
        }
        if let Some(interval) = self.checkpoint_interval {
            if interval.is_zero() {
                return Err(ConfigError::new("checkpoint_interval", "must be above zero"));
            }
            if self.data_dir.is_none() && self.checkpoint_store.is_none() {
                return Err(ConfigError::new(
                    "checkpoint_interval",
                    "needs a place to store the checkpoints in (checkpoint_store or data_dir)",
                ));
            }
            if self.checkpoint_retain == 0 {
                return Err(ConfigError::new("checkpoint_retain", "must be at least 1"));
            }
        }
        if let Some(url) = &self.checkpoint_store {
            if let Err(e) = StorageUrl::parse(url) {
                return Err(ConfigError::new("checkpoint_store", e.to_string()));
            }
        }
        if self.max_frame_size < 1024 {
            return Err(ConfigError::new("max_frame_size", "must be at least 1024 bytes"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = CoordinatorConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let cases: Vec<(CoordinatorConfig, &str)> = vec![
            (
                CoordinatorConfig {
                    num_partitions: 0,
                    ..ok.clone()
                },
                "num_partitions",
            ),
            (
                CoordinatorConfig {
                    max_workers: 0,
                    ..ok.clone()
                },
                "max_workers",
            ),
            (
                CoordinatorConfig {
                    health_check_interval: Duration::ZERO,
                    ..ok.clone()
                },
                "health_check_interval",
            ),
            (
                CoordinatorConfig {
                    heartbeat_timeout: Duration::from_millis(200),
                    health_check_interval: Duration::from_millis(200),
                    ..ok.clone()
                },
                "heartbeat_timeout",
            ),
            (
                CoordinatorConfig {
                    cluster_name: String::new(),
                    ..ok.clone()
                },
                "cluster_name",
            ),
            (
                CoordinatorConfig {
                    max_frame_size: 10,
                    ..ok.clone()
                },
                "max_frame_size",
            ),
            (
                CoordinatorConfig {
                    checkpoint_store: Some("gs://bucket/x".into()),
                    ..ok.clone()
                },
                "checkpoint_store",
            ),
            (
                CoordinatorConfig {
                    checkpoint_interval: Some(Duration::from_secs(1)),
                    ..ok.clone()
                },
                "checkpoint_interval",
            ),
        ];
        for (config, field) in cases {
            assert_eq!(config.validate().unwrap_err().field, field);
        }
    }

    #[test]
    fn a_checkpoint_store_needs_no_data_dir() {
        let config = CoordinatorConfig {
            checkpoint_interval: Some(Duration::from_secs(1)),
            checkpoint_store: Some("memory://c/ckpt".into()),
            ..CoordinatorConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.checkpoint_store(),
            Some(StorageUrl::parse("memory://c/ckpt").unwrap())
        );
        let off = CoordinatorConfig {
            checkpoint_interval: None,
            ..config
        };
        assert_eq!(off.checkpoint_store(), None, "no checkpoints, no store");
    }

    #[test]
    fn strategy_parses_its_names() {
        for s in [
            RebalanceStrategy::Immediate,
            RebalanceStrategy::Gradual,
            RebalanceStrategy::Manual,
        ] {
            assert_eq!(s.as_str().parse::<RebalanceStrategy>(), Ok(s));
        }
        assert!("sometimes"
            .parse::<RebalanceStrategy>()
            .unwrap_err()
            .contains("sometimes"));
    }
}
