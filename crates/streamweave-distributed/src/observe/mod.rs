//! Observability: what the coordinator's console and every node's `/metrics` show.
//!
//! ```text
//!  coordinator status (every ~500 ms)        worker record path (per batch, not per record)
//!        |                                          |
//!        v                                          v
//!  History::observe(status, now)            WorkerMetrics: counters shared with the tasks
//!    -> throughput samples, checkpoint            (records in/out, credit waits, partitions)
//!       history, events, monotonic totals         |
//!        |                                          v
//!        +--> cluster_metrics::render(..)    WorkerMetrics::render()
//!                    \                          /
//!                     OpenMetrics text -> exposition::to_text_format (served by `swd` on /metrics)
//! ```
//!
//! [`History`] is plain synchronous code: it takes successive [`ClusterStatus`] snapshots and
//! the time they were taken and derives everything a snapshot alone cannot show (rates, the
//! checkpoints and moves between two snapshots, what changed). The HTTP shell that polls the
//! coordinator and serves the page lives in the `swd` crate.
//!
//! [`ClusterStatus`]: crate::protocol::ClusterStatus

mod cluster_metrics;
mod exposition;
mod history;
mod worker_metrics;

pub use cluster_metrics::render as render_cluster_metrics;
pub use exposition::{to_text_format, wants_openmetrics, OPENMETRICS_FORMAT, TEXT_FORMAT};
pub use history::{CheckpointRecord, Event, EventKind, History, Sample, Totals};
pub use worker_metrics::WorkerMetrics;
