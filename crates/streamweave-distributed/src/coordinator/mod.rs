//! The coordinator: membership, failure detection, partition assignment and rebalancing.
//!
//! ```text
//!             TCP listener (server.rs)
//!   worker conn --Register/Heartbeat/Ack/Leave--+
//!   worker conn ------------------------------- +--> actor task --> Engine (engine/, pure)
//!   client conn --Status/Assign/Rebalance-------+        |            uses assignment.rs
//!   CoordinatorHandle (commands.rs) --calls-----+        v
//!                                          outboxes per connection
//!                                          disk writer thread (disk.rs): event log, checkpoint
//!                                          commits --> back to the actor as inputs
//!                                          probes of a disconnected worker's data port
//!                                          (probe.rs): refused --> back as an input
//! ```
//!
//! Every decision is made by [`engine::Engine`], a synchronous state machine tested without
//! sockets. The actor in `server.rs` is its only owner; connections and the public
//! [`CoordinatorImpl`] talk to it through a channel of `commands.rs`'s `Command`s. Dependencies
//! run one way: handle -> server -> disk -> commands -> engine; this module never uses
//! `fault_tolerance` (which uses it).

// The decision internals below are public only as `crate::internals` (unstable).
mod admin_conn;
mod api;
pub(crate) mod assignment;
pub(crate) mod checkpoint_tracker;
mod commands;
mod config;
mod disk;
pub(crate) mod engine;
mod epoch;
mod error;
mod event_log;
// Used by the engine; public as `fault_tolerance::FailureDetector`.
pub(crate) mod failure_detector;
mod handle;
pub(crate) mod job_control;
mod jobs;
mod notes;
mod probe;
mod server;
#[cfg(test)]
mod server_accept_tests;
mod startup;
mod worker_inputs;

pub use api::Coordinator;
pub use commands::CoordinatorHandle;
pub use config::{CoordinatorConfig, RebalanceStrategy, RecoveryStrategy};
pub use error::CoordinatorError;
pub use handle::CoordinatorImpl;
pub use jobs::JobsError;
