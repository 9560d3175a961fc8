//! The coordinator's Prometheus metrics, rendered from the newest [`ClusterStatus`] and the
//! [`Totals`] a [`History`](super::History) keeps.
//!
//! A fresh registry per scrape: workers come and go, and a series of a worker that left must
//! disappear rather than keep its last value. The cost (a few dozen series) is nothing next to
//! a scrape interval.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::history::{state_name, Totals};
use crate::protocol::{ClusterStatus, JobState};
use crate::types::WorkerState;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The coordinator's metrics in the OpenMetrics text format (which Prometheus scrapes), from
/// the newest status (none yet: only the totals) and the history's totals.
///
/// ```
/// use streamweave_distributed::observe::{render_cluster_metrics, Totals};
/// let text = render_cluster_metrics(None, &Totals::default());
/// assert!(text.contains("swd_checkpoint_failures_total 0"));
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub fn render(status: Option<&ClusterStatus>, totals: &Totals) -> String {
    let mut registry = Registry::with_prefix("swd");
    let counter = |registry: &mut Registry, name: &str, help: &str, value: u64| {
        let c: Counter = Counter::default();
        c.inc_by(value);
        registry.register(name, help, c);
    };
    // By job (one per coordinator today), so the series stay apart once a cluster runs several.
    let job = status.and_then(|s| s.job.as_ref()).map(|j| j.name.clone());
    for (name, help, value) in [
        (
            "job_records_in",
            "Records read by the job's sources, over every attempt",
            totals.records_in,
        ),
        (
            "job_records_out",
            "Records committed by the job's sinks, over every attempt",
            totals.records_out,
        ),
    ] {
        let family = Family::<Labels, Counter>::default();
        if let Some(job) = &job {
            family
                .get_or_create(&vec![("job".to_string(), job.clone())])
                .inc_by(value);
        }
        registry.register(name, help, family);
    }
    counter(
        &mut registry,
        "checkpoint_failures",
        "Checkpoints triggered and abandoned without completing",
        totals.checkpoint_failures,
    );
    counter(
        &mut registry,
        "partition_moves",
        "Partitions that finished a move between two live workers",
        totals.moves,
    );
    let pause: Counter<f64, AtomicU64> = Counter::default();
    pause.inc_by(totals.move_pause_seconds);
    registry.register_with_unit(
        "partition_move_pause",
        "Time partitions spent moving, summed (observed every status poll)",
        Unit::Seconds,
        pause,
    );
    if let Some(status) = status {
        register_cluster(&mut registry, status);
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

fn register_cluster(registry: &mut Registry, status: &ClusterStatus) {
    let gauge = |registry: &mut Registry, name: &str, help: &str, value: i64| {
        let g: Gauge = Gauge::default();
        g.set(value);
        registry.register(name, help, g);
    };
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    gauge(
        registry,
        "assignment_generation",
        "The assignment generation",
        status.generation.0 as i64,
    );
    gauge(
        registry,
        "partitions",
        "The number of partitions",
        count(status.partitions),
    );
    gauge(
        registry,
        "partitions_unassigned",
        "Partitions without an owner",
        count(status.unassigned.len()),
    );
    gauge(
        registry,
        "partitions_moving",
        "Partitions in the middle of a move",
        count(status.moving.len()),
    );

    let workers = Family::<Labels, Gauge>::default();
    for state in [
        WorkerState::Active,
        WorkerState::Disconnected,
        WorkerState::Failed,
        WorkerState::Leaving,
    ] {
        let n = status.workers.iter().filter(|w| w.state == state).count();
        workers
            .get_or_create(&vec![("state".into(), state.to_string())])
            .set(count(n));
    }
    registry.register("workers", "Member workers by state", workers);
    let age = Family::<Labels, FloatGauge>::default();
    let healthy = Family::<Labels, Gauge>::default();
    let owned = Family::<Labels, Gauge>::default();
    for w in &status.workers {
        let labels = vec![("worker".to_string(), w.id.to_string())];
        age.get_or_create(&labels)
            .set(w.last_heartbeat_ms as f64 / 1000.0);
        healthy.get_or_create(&labels).set(i64::from(w.healthy));
        owned.get_or_create(&labels).set(count(w.partitions.len()));
    }
    registry.register_with_unit(
        "worker_heartbeat_age",
        "Time since each worker was last heard from",
        Unit::Seconds,
        age,
    );
    registry.register(
        "worker_healthy",
        "1 when the worker was heard from within the heartbeat timeout",
        healthy,
    );
    registry.register("worker_partitions", "Partitions assigned to each worker", owned);

    if let Some(job) = &status.job {
        let name = || vec![("job".to_string(), job.name.clone())];
        let state = Family::<Labels, Gauge>::default();
        for s in [
            JobState::Waiting,
            JobState::Running,
            JobState::Restarting,
            JobState::Finished,
            JobState::Failed,
            JobState::Stopped,
        ] {
            let mut labels = name();
            labels.push(("state".into(), state_name(s).into()));
            state.get_or_create(&labels).set(i64::from(job.state == s));
        }
        registry.register(
            "job_state",
            "1 for the job's current state, 0 for the others",
            state,
        );
        let restarts = Family::<Labels, Counter>::default();
        restarts.get_or_create(&name()).inc_by(job.restarts);
        registry.register("job_restarts", "Attempts of the job aborted so far", restarts);
        let attempt = Family::<Labels, Gauge>::default();
        attempt.get_or_create(&name()).set(job.attempt as i64);
        registry.register("job_attempt", "The job's current attempt", attempt);
        let recovery = Family::<Labels, FloatGauge>::default();
        if let Some(ms) = job.last_recovery_ms {
            recovery.get_or_create(&name()).set(ms as f64 / 1000.0);
        }
        let lag = Family::<Labels, Gauge>::default();
        if let Some(records) = job.lag {
            lag.get_or_create(&name())
                .set(i64::try_from(records).unwrap_or(i64::MAX));
        }
        registry.register(
            "job_lag_records",
            "Records the job's sources are behind the end of their input (sources that can tell)",
            lag,
        );
        registry.register_with_unit(
            "job_last_recovery",
            "From the last abort to the start of the next attempt",
            Unit::Seconds,
            recovery,
        );
    }
    if let Some(c) = &status.checkpoints {
        let completed: Counter = Counter::default();
        completed.inc_by(c.completed);
        registry.register(
            "checkpoints_completed",
            "Checkpoints durably committed",
            completed,
        );
        let duration = FloatGauge::default();
        duration.set(c.last_duration_ms.unwrap_or(0) as f64 / 1000.0);
        registry.register_with_unit(
            "checkpoint_last_duration",
            "From trigger to the last acknowledgement of the newest checkpoint",
            Unit::Seconds,
            duration,
        );
        let size: Gauge = Gauge::default();
        size.set(c.last_size_bytes.unwrap_or(0) as i64);
        registry.register_with_unit(
            "checkpoint_last_size",
            "The partitions' state in the newest checkpoint",
            Unit::Bytes,
            size,
        );
    }
}
