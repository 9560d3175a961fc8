//! The dataflow layer: typed jobs (source -> operators -> one exchange -> operators -> sink),
//! partitioners, sources, sinks, and the job registry. What runs a job across workers is in
//! `crate::worker::exchange` (data plane) and `crate::coordinator` (job control).
//!
//! ```text
//! JobRegistry --build(JobSpec)--> Job (ErasedPlan)
//!   source task p:   Source -> map/filter/flat_map -> key_by + pre-aggregation -> route
//!   receiver task q: merge keyed state / pass through -> map/filter -> SinkWriter -> commit
//! ```
//!
//! Files: `stream.rs` (the builder) and `keyed.rs` (keyed aggregations) type and compose a job;
//! `router.rs` is its send side, `stage.rs` its receive side, `sink_plan.rs` the two behind
//! `plan::ErasedPlan`. `registry.rs` holds `JobSpec` and `JobRegistry`; `builtin_jobs.rs` the
//! jobs `swd` ships (public as `dataflow::jobs`); `text_io.rs` picks their text source and sink
//! by URL (a directory, or an object store prefix).

mod builtin_jobs;
mod changelog;
mod error;
mod jetstream;
mod key_counts;
mod keyed;
mod partitioner;
// Public only as `crate::internals::plan` (unstable).
pub(crate) mod plan;
mod registry;
mod router;
mod short_key;
mod sink;
mod sink_plan;
pub mod sinks;
mod source;
pub mod sources;
mod stage;
pub mod state;
mod stream;
#[cfg(feature = "streamweave")]
pub mod streamweave;
mod text_io;

#[cfg(test)]
mod barrier_tests;

/// The built-in jobs of `swd` (`wordcount`, `repartition`) and the registry holding them; they
/// live in `builtin_jobs.rs`, and this path is the one the README and users call.
pub mod jobs {
    pub use super::builtin_jobs::{builtin, for_each_word, repartition, wordcount};
}

pub use error::DataflowError;
pub use keyed::KeyedStream;
pub use partitioner::{
    stable_hash, BroadcastPartitioner, HashPartitioner, Partitioner, RangePartitioner, RoundRobinPartitioner,
    StableHash,
};
pub use registry::{JobRegistry, JobSpec};
pub use sink::{Sink, SinkContext, SinkWriter};
pub use source::{Flow, Source, SourceContext, SourceEnd, SourceOffset};
pub use stage::{Encoded, PartSink, Stage};
pub use stream::{Exchanged, Job, Stream};
pub use text_io::{storage_url, TextInput, TextOutput};
