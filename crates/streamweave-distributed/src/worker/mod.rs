//! The worker: registers with the coordinator, heartbeats, and runs one task per partition it
//! owns, starting and stopping them as assignments arrive.
//!
//! ```text
//! WorkerImpl::register --Transport--> coordinator: Register -> Registered
//! WorkerImpl::start    --spawn-->     session shell (session.rs) around SessionCore (session_core.rs)
//!     Assignment{generation, partitions} -> TaskSet::apply (partition_tasks.rs): stop revoked, start
//!     granted -> Ack{generation, running};  Heartbeat every heartbeat_interval
//!     connection lost -> capped exponential backoff, register again (same incarnation);
//!     unreachable longer than heartbeat_timeout -> stop tasks (the coordinator moved them)
//!     several coordinators (HA): coordinators.rs picks which to try; a standby names the leader
//! WorkerImpl::stop     --> stop tasks, Leave -> LeaveAck
//! ```

mod alignment;
mod attempt_commands;
mod background_restore;
mod blocking;
mod checkpoint_actor;
mod checkpointing;
mod compaction;
mod config;
pub(crate) mod coordinators;
mod data_runtime;
mod epoch_commit;
mod error;
pub(crate) mod exchange;
mod job_runner;
mod job_runner_core;
mod job_sessions;
mod job_tasks;
mod local_states;
mod panics;
mod partition_tasks;
mod preload;
mod receiver_task;
mod session;
mod session_core;
mod session_events;
mod source_task;
mod state_writer;
#[cfg(test)]
mod test_jobs;
mod worker_impl;

pub use config::WorkerConfig;
pub use error::WorkerError;
pub use exchange::CREDITS_PER_CHANNEL;
pub use job_sessions::follow_jobs;
pub use worker_impl::{Worker, WorkerImpl, WorkerSnapshot};
