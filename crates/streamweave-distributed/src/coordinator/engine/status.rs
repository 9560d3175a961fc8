//! What the engine tells about the cluster: one worker's description and the whole status that
//! `swd status` shows. Read-only: `now` only ages the heartbeats.

use std::time::Instant;

use super::{duration_ms, Engine};
use crate::coordinator::assignment::owned_by;
use crate::protocol::{ClusterStatus, MovingPartition, WorkerStatus};
use crate::types::{WorkerId, WorkerInfo};

impl Engine {
    /// What the coordinator knows about one worker.
    pub fn worker_info(&self, id: &WorkerId) -> Option<WorkerInfo> {
        self.workers.get(id).map(|e| WorkerInfo {
            partitions: owned_by(&self.owner, id),
            ..e.info.clone()
        })
    }

    /// A snapshot for `swd status`.
    pub fn status(&self, now: Instant) -> ClusterStatus {
        let timeout = self.config.heartbeat_timeout;
        ClusterStatus {
            cluster: self.config.cluster_name.clone(),
            generation: self.generation,
            partitions: self.config.num_partitions,
            strategy: self.config.rebalance_strategy.as_str().to_string(),
            unassigned: (0..self.config.num_partitions)
                .filter(|p| self.owner[*p].is_none() && !self.revoking.contains_key(p))
                .collect(),
            moving: self
                .revoking
                .iter()
                .map(|(&partition, (from, _))| MovingPartition {
                    partition,
                    from: from.clone(),
                    to: self.target[partition].clone(),
                })
                .chain(self.moving.iter().flat_map(|m| {
                    m.partitions.iter().map(|(partition, from, to)| MovingPartition {
                        partition: *partition,
                        from: from.clone(),
                        to: Some(to.clone()),
                    })
                }))
                .collect(),
            workers: self
                .workers
                .values()
                .map(|e| WorkerStatus {
                    id: e.info.id.clone(),
                    address: e.info.address.clone(),
                    state: e.info.state,
                    healthy: e.info.is_healthy_at(timeout, now),
                    partitions: owned_by(&self.owner, &e.info.id),
                    capacity: e.info.capacity,
                    load: e.info.load,
                    last_heartbeat_ms: duration_ms(now.saturating_duration_since(e.info.last_heartbeat)),
                })
                .collect(),
            job: self.job.as_ref().map(|job| job.status(now)),
            checkpoints: self.checkpoint_status(),
        }
    }
}
