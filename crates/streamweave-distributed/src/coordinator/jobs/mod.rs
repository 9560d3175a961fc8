//! Jobs submitted to a running cluster (`swd run | jobs | cancel | stop`), in Flink's shape: a
//! coordinator started without a job (the *cluster coordinator*) keeps the membership of
//! workers, and gives each submitted job its own *job master*, an in-process
//! [`CoordinatorImpl`](crate::CoordinatorImpl) configured for that one job. Workers read the job
//! list and join each running job's master with a job-scoped worker (`worker/job_sessions.rs`),
//! so each job is assigned, checkpointed, recovered and rebalanced on its own by the code that
//! runs one job.
//!
//! ```text
//! client --SubmitJob/ListJobs/CancelJob/StopSubmittedJob--> cluster coordinator (admin_conn.rs)
//!   -> JobsService (service.rs, async) -> JobTable (table.rs, pure: ids, states, savepoints)
//!   -> job master j-1 (CoordinatorImpl, port 0) <--Register/...-- job-scoped worker sessions
//!   -> job master j-2 ...
//! ```

mod service;
mod table;

pub(crate) use service::JobsService;
pub use table::JobsError;
