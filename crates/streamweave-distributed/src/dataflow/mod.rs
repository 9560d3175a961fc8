//! The dataflow layer: typed jobs (source -> operators -> one exchange -> operators -> sink),
//! partitioners, sources, sinks, and the job registry. What runs a job across workers is in
//! `crate::worker::exchange` (data plane) and `crate::coordinator` (job control).
//!
//! ```text
//! JobRegistry --build(JobSpec)--> Job (ErasedPlan)
//!   source task p:   Source -> map/filter/flat_map -> key_by + pre-aggregation -> route
//!   receiver task q: merge keyed state / pass through -> map/filter -> SinkWriter -> commit
//! ```

mod error;
mod job;
pub mod jobs;
mod keyed;
mod partitioner;
pub mod plan;
mod router;
mod short_key;
mod sink;
mod sink_plan;
pub mod sinks;
mod source;
pub mod sources;
mod stage;
mod stream;

#[cfg(test)]
mod barrier_tests;

pub use error::DataflowError;
pub use job::{JobRegistry, JobSpec};
pub use keyed::KeyedStream;
pub use partitioner::{
    stable_hash, BroadcastPartitioner, HashPartitioner, Partitioner, RangePartitioner, RoundRobinPartitioner,
    StableHash,
};
pub use sink::{Sink, SinkContext, SinkWriter};
pub use source::{Flow, Source, SourceContext, SourceEnd, SourceOffset};
pub use stage::Stage;
pub use stream::{Exchanged, Job, Stream};
