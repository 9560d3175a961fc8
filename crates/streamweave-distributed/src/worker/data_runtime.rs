//! The runtime that job tasks run on: one thread per core, separate from the runtime of the
//! worker's session, heartbeats and connections. Job code is user code and may block (a sink
//! writing to a slow disk, an operator doing a lookup): here that slows other partitions of the
//! job, as a busy task slot does in Flink, but never delays a heartbeat, so a busy worker is
//! not mistaken for a dead one.
//!
//! Process-wide and never shut down, like a global thread pool: every worker in the process
//! (tests run several) shares it, and its threads stay bounded by the cores.

use std::sync::LazyLock;

use tokio::runtime::{Builder, Runtime};

static DATA: LazyLock<Option<Runtime>> = LazyLock::new(|| {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    match Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("swd-data")
        .enable_all()
        .build()
    {
        Ok(runtime) => Some(runtime),
        Err(e) => {
            tracing::warn!(error = %e, "cannot start the data runtime; job tasks share the worker's");
            None
        }
    }
});

/// The data runtime (the current runtime if it could not start): job tasks are spawned on it
/// into the `JoinSet` of the attempt that owns them.
pub(crate) fn handle() -> tokio::runtime::Handle {
    match DATA.as_ref() {
        Some(runtime) => runtime.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}
