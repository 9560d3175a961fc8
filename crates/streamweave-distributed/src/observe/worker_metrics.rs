//! [`WorkerMetrics`]: the counters a worker's tasks add to, and their Prometheus rendering.
//!
//! The record path pays one relaxed atomic add per batch (the source task already counts its
//! records in chunks; the same flush adds to the metric), a receiver one per finished
//! partition, and a sender reads the clock only when it has to wait for a credit. The
//! registry is built at each scrape from these atomics, so nothing here locks on the record
//! path: the map of counters is locked only when an attempt starts and at a scrape.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::worker::WorkerSnapshot;

type Labels = Vec<(String, String)>;
/// Counters by (job, partition).
type ByPartition = BTreeMap<(String, usize), Arc<AtomicU64>>;

/// A worker's metrics; clones share the counters.
///
/// ```
/// use streamweave_distributed::observe::WorkerMetrics;
/// use streamweave_distributed::worker::WorkerSnapshot;
/// let metrics = WorkerMetrics::default();
/// let text = metrics.render(&WorkerSnapshot::default());
/// assert!(text.contains("swd_worker_backpressure_wait_seconds_total 0.0"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct WorkerMetrics {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Locked when an attempt starts its tasks and at a scrape, never per record.
    records_in: Mutex<ByPartition>,
    records_out: Mutex<ByPartition>,
    backpressure_nanos: AtomicU64,
    attempts: AtomicU64,
    compactions: AtomicU64,
    compaction_failures: AtomicU64,
    compacted_bytes: AtomicU64,
    compaction_nanos: AtomicU64,
    local_restores: AtomicU64,
}

impl WorkerMetrics {
    /// The counter of records read by source partition `partition` of `job` (over every
    /// attempt), for its source task to add to.
    pub(crate) fn records_in(&self, job: &str, partition: usize) -> Arc<AtomicU64> {
        counter(&self.inner.records_in, job, partition)
    }

    /// The counter of records committed by partition `partition` of `job`'s sink.
    pub(crate) fn records_out(&self, job: &str, partition: usize) -> Arc<AtomicU64> {
        counter(&self.inner.records_out, job, partition)
    }

    /// Adds time a sender waited for a credit (backpressure).
    pub(crate) fn add_backpressure(&self, waited: Duration) {
        let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
        self.inner.backpressure_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts a compaction apart from the barriers that stored a base of `bytes` in `took`
    /// (`worker/compaction.rs`).
    pub(crate) fn compacted(&self, bytes: u64, took: Duration) {
        let inner = &self.inner;
        inner.compactions.fetch_add(1, Ordering::Relaxed);
        inner.compacted_bytes.fetch_add(bytes, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        inner.compaction_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Counts a compaction apart that failed (its chain goes on growing).
    pub(crate) fn compaction_failed(&self) {
        self.inner.compaction_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a partition whose state a restarted attempt took from memory (local recovery).
    pub(crate) fn restored_locally(&self) {
        self.inner.local_restores.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a job attempt started here.
    pub(crate) fn attempt_started(&self) {
        self.inner.attempts.fetch_add(1, Ordering::Relaxed);
    }

    /// The metrics in the OpenMetrics text format, with the worker's state from `snapshot`.
    pub fn render(&self, snapshot: &WorkerSnapshot) -> String {
        let mut registry = Registry::with_prefix("swd_worker");
        let family = |counters: &Mutex<ByPartition>| {
            let family = Family::<Labels, Counter>::default();
            // A poisoned lock only means a task panicked while inserting: the map is intact.
            let counters = counters.lock().unwrap_or_else(|e| e.into_inner());
            for ((job, partition), value) in counters.iter() {
                let labels = vec![
                    ("job".to_string(), job.clone()),
                    ("partition".to_string(), partition.to_string()),
                ];
                family
                    .get_or_create(&labels)
                    .inc_by(value.load(Ordering::Relaxed));
            }
            family
        };
        registry.register(
            "records_in",
            "Records read by this worker's sources, by job and partition",
            family(&self.inner.records_in),
        );
        registry.register(
            "records_out",
            "Records committed by this worker's sinks, by job and partition",
            family(&self.inner.records_out),
        );
        let waited: Counter<f64, AtomicU64> = Counter::default();
        waited.inc_by(self.inner.backpressure_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        registry.register_with_unit(
            "backpressure_wait",
            "Time this worker's senders waited for credits from receivers (backpressure)",
            Unit::Seconds,
            waited,
        );
        let attempts: Counter = Counter::default();
        attempts.inc_by(self.inner.attempts.load(Ordering::Relaxed));
        registry.register("job_attempts", "Job attempts started on this worker", attempts);
        let count = |registry: &mut Registry, name: &str, help: &str, value: &AtomicU64| {
            let c: Counter = Counter::default();
            c.inc_by(value.load(Ordering::Relaxed));
            registry.register(name, help, c);
        };
        let inner = &self.inner;
        count(
            &mut registry,
            "compactions",
            "Partition state chains compacted into a base apart from the checkpoint barriers",
            &inner.compactions,
        );
        count(
            &mut registry,
            "compaction_failures",
            "Compactions apart that failed (the chain grows until a barrier takes a base)",
            &inner.compaction_failures,
        );
        count(
            &mut registry,
            "local_restores",
            "Partition states a restarted job attempt took from this worker's memory, rolled back to the checkpoint restored, instead of reading them from the checkpoint store (local recovery)",
            &inner.local_restores,
        );
        let bytes: Counter = Counter::default();
        bytes.inc_by(inner.compacted_bytes.load(Ordering::Relaxed));
        registry.register_with_unit(
            "compacted",
            "Bytes of the bases written by compactions apart from the barriers",
            Unit::Bytes,
            bytes,
        );
        let compacting: Counter<f64, AtomicU64> = Counter::default();
        compacting.inc_by(inner.compaction_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        registry.register_with_unit(
            "compaction",
            "Time spent compacting state apart from the barriers (at the lowest CPU priority)",
            Unit::Seconds,
            compacting,
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str, value: u64| {
            let g: Gauge = Gauge::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(name, help, g);
        };
        let owned = snapshot.partitions.len() as u64;
        gauge(
            &mut registry,
            "partitions",
            "Partitions with a running task on this worker",
            owned,
        );
        gauge(
            &mut registry,
            "assignment_generation",
            "The generation of the last assignment applied",
            snapshot.generation.0,
        );
        gauge(
            &mut registry,
            "connected",
            "1 while registered with a coordinator",
            u64::from(snapshot.connected),
        );
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

fn counter(map: &Mutex<ByPartition>, job: &str, partition: usize) -> Arc<AtomicU64> {
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    Arc::clone(map.entry((job.to_string(), partition)).or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_by_job_and_partition_and_only_grow() {
        let metrics = WorkerMetrics::default();
        metrics
            .records_in("wordcount", 3)
            .fetch_add(1024, Ordering::Relaxed);
        // A later attempt gets the same counter back.
        metrics
            .records_in("wordcount", 3)
            .fetch_add(10, Ordering::Relaxed);
        metrics
            .records_out("wordcount", 1)
            .fetch_add(7, Ordering::Relaxed);
        metrics.add_backpressure(Duration::from_millis(1500));
        metrics.compacted(1 << 20, Duration::from_millis(250));
        metrics.compacted(1 << 20, Duration::from_millis(250));
        metrics.compaction_failed();
        let text = metrics.render(&WorkerSnapshot::default());
        assert!(
            text.contains("swd_worker_records_in_total{job=\"wordcount\",partition=\"3\"} 1034\n"),
            "{text}"
        );
        assert!(
            text.contains("swd_worker_records_out_total{job=\"wordcount\",partition=\"1\"} 7\n"),
            "{text}"
        );
        assert!(
            text.contains("swd_worker_backpressure_wait_seconds_total 1.5\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE swd_worker_partitions gauge\n"), "{text}");
        for line in [
            "swd_worker_compactions_total 2\n",
            "swd_worker_compaction_failures_total 1\n",
            "swd_worker_compacted_bytes_total 2097152\n",
            "swd_worker_compaction_seconds_total 0.5\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
