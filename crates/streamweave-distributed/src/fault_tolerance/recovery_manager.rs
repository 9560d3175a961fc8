//! [`RecoveryManager`]: checkpoint-based recovery in the seed's shape. The coordinator runs the
//! checkpoint protocol (triggering every `checkpoint_interval`, committing, restoring after a
//! failure); this type configures it, takes a checkpoint on demand, and tells what a recovery
//! would restore.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::checkpoint::{open_store, restore_latest, CheckpointError, CheckpointStore, Manifest};
use crate::coordinator::{
    Coordinator, CoordinatorConfig, CoordinatorError, CoordinatorHandle, RecoveryStrategy,
};
use crate::storage::StorageUrl;

/// Checkpoint-based recovery.
///
/// ```
/// use std::time::Duration;
/// use streamweave_distributed::fault_tolerance::RecoveryManager;
/// use streamweave_distributed::CoordinatorConfig;
///
/// let recovery = RecoveryManager::new(Duration::from_secs(60));
/// let mut config = CoordinatorConfig { data_dir: Some("/var/lib/swd".into()), ..Default::default() };
/// recovery.configure(&mut config);
/// assert_eq!(config.checkpoint_interval, Some(Duration::from_secs(60)));
/// ```
#[derive(Clone, Debug)]
pub struct RecoveryManager {
    checkpoint_interval: Duration,
    strategy: RecoveryStrategy,
    coordinator: Option<CoordinatorHandle>,
    store: Option<Arc<dyn CheckpointStore>>,
}

impl RecoveryManager {
    /// Checkpoints every `checkpoint_interval`; recovery from the last one.
    pub fn new(checkpoint_interval: Duration) -> Self {
        RecoveryManager {
            checkpoint_interval,
            strategy: RecoveryStrategy::FromCheckpoint,
            coordinator: None,
            store: None,
        }
    }

    /// Where a job resumes after a failure.
    pub fn with_strategy(mut self, strategy: RecoveryStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// The interval.
    pub fn checkpoint_interval(&self) -> Duration {
        self.checkpoint_interval
    }

    /// The strategy.
    pub fn strategy(&self) -> RecoveryStrategy {
        self.strategy
    }

    /// Sets a coordinator's configuration to checkpoint and recover this way (it also needs a
    /// `checkpoint_store` or a `data_dir`, where the checkpoints are stored).
    pub fn configure(&self, config: &mut CoordinatorConfig) {
        config.checkpoint_interval = Some(self.checkpoint_interval);
        config.recovery_strategy = self.strategy;
    }

    /// Works with this running coordinator: [`RecoveryManager::checkpoint`] asks it.
    pub fn attach(mut self, coordinator: CoordinatorHandle) -> Self {
        self.coordinator = Some(coordinator);
        self
    }

    /// Reads checkpoints from this directory (`DATA_DIR/checkpoints` of the coordinator).
    pub fn with_store_dir(self, dir: impl AsRef<Path>) -> Result<Self, CheckpointError> {
        self.with_store_url(&StorageUrl::Local(dir.as_ref().to_path_buf()))
    }

    /// Reads checkpoints from the store at `url` (the coordinator's `checkpoint_store`: a path,
    /// `s3://bucket/prefix` or `memory://name/prefix`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use streamweave_distributed::fault_tolerance::RecoveryManager;
    /// use streamweave_distributed::storage::StorageUrl;
    /// let url = StorageUrl::parse("memory://doc-recovery/ckpt")?;
    /// let recovery = RecoveryManager::new(Duration::from_secs(60)).with_store_url(&url)?;
    /// assert!(recovery.latest()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_store_url(mut self, url: &StorageUrl) -> Result<Self, CheckpointError> {
        self.store = Some(open_store(url)?);
        Ok(self)
    }

    /// Takes a checkpoint of the running job now and returns its id once it is committed.
    pub async fn checkpoint(&self) -> Result<u64, CoordinatorError> {
        let coordinator = self.coordinator.as_ref().ok_or(CoordinatorError::NotAttached)?;
        coordinator
            .checkpoint_now(Duration::from_secs(30).max(self.checkpoint_interval))
            .await
    }

    /// What a recovery would restore: the newest intact checkpoint in the store (damaged newer
    /// ones are skipped with a warning), or `None` when there is none.
    pub fn latest(&self) -> Result<Option<Manifest>, CheckpointError> {
        match &self.store {
            Some(store) => restore_latest(store.as_ref()),
            None => Ok(None),
        }
    }
}
