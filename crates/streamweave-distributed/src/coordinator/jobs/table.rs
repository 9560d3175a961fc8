//! The cluster coordinator's record of submitted jobs: their ids, states and counters, which
//! job master each one has, when an ended job's master may go, and where a savepoint lives.
//! Plain synchronous code fed with events and `now`; `service.rs` runs it.
//!
//! ```text
//! submit -> Starting --master_started--> (observe: the master's JobStatus) Waiting/Running/...
//!        \--master_failed--> Failed        cancel -> Cancelled      begin_stop -> Stopping
//! terminal (Finished/Failed/Stopped/Cancelled) for END_GRACE -> tick says: end its master
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::protocol::{JobEntry, JobState, JobStatus, SubmittedJobState};

/// How long an ended job's master keeps serving, so that its workers see the end (they poll
/// the list) and leave it before it goes.
pub(crate) const END_GRACE: Duration = Duration::from_secs(3);

/// What a request about submitted jobs can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    /// No job has this id.
    #[error("no job {0} on this cluster (swd jobs lists them)")]
    UnknownJob(String),
    /// The job has already ended.
    #[error("job {id} has already ended ({state})")]
    Ended {
        /// The job.
        id: String,
        /// Its final state.
        state: &'static str,
    },
    /// A stop needs a checkpoint to stop at.
    #[error("job {0} runs without checkpoints (submit it with --checkpoint-interval), so it has no savepoint to stop at; cancel it instead")]
    NoCheckpoints(String),
    /// A savepoint id that does not parse or does not fit.
    #[error("savepoint {id}: {reason}")]
    Savepoint {
        /// The savepoint as given.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster cannot run the job (its configuration, its job master).
    #[error("{0}")]
    Cannot(String),
}

/// One submitted job.
#[derive(Debug, Clone)]
struct Entry {
    entry: JobEntry,
    /// Whether it takes checkpoints (only then can it stop with a savepoint).
    checkpointed: bool,
    /// Its checkpoint location (a path or URL), when checkpointed.
    store: Option<String>,
    /// When it ended.
    ended_at: Option<Instant>,
    /// Whether its job master still runs.
    master_live: bool,
}

/// The submitted jobs, in submission order.
#[derive(Debug, Default)]
pub(crate) struct JobTable {
    jobs: BTreeMap<u64, Entry>,
    next_seq: u64,
}

/// The id for a random number: `j-` and 8 hex digits.
pub(crate) fn job_id(random: u32) -> String {
    format!("j-{random:08x}")
}

/// Where a job's checkpoints go: under the cluster's checkpoint store (`<store>/jobs/<id>`),
/// else under its data directory (`<data-dir>/jobs/<id>/checkpoints`); none without either.
pub(crate) fn job_store(data_dir: Option<&Path>, store: Option<&str>, id: &str) -> Option<String> {
    match (store, data_dir) {
        (Some(url), _) => Some(format!("{}/jobs/{id}", url.trim_end_matches('/'))),
        (None, Some(dir)) => Some(
            dir.join("jobs")
                .join(id)
                .join("checkpoints")
                .display()
                .to_string(),
        ),
        (None, None) => None,
    }
}

/// Splits `<job id>:<checkpoint id>`.
pub(crate) fn parse_savepoint(savepoint: &str) -> Result<(String, u64), JobsError> {
    let bad = |reason: &str| JobsError::Savepoint {
        id: savepoint.to_string(),
        reason: reason.to_string(),
    };
    let (job, checkpoint) = savepoint
        .rsplit_once(':')
        .ok_or_else(|| bad("expected JOB:CHECKPOINT, as swd stop printed it"))?;
    if job.is_empty() || job.contains(['/', '\\', '.']) {
        return Err(bad("the job id is not one swd gave"));
    }
    let checkpoint = checkpoint
        .parse::<u64>()
        .map_err(|_| bad("the checkpoint is not a number"))?;
    Ok((job.to_string(), checkpoint))
}

impl JobTable {
    fn find(&self, id: &str) -> Option<&Entry> {
        self.jobs.values().find(|e| e.entry.id == id)
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.jobs.values_mut().find(|e| e.entry.id == id)
    }

    fn live(&mut self, id: &str) -> Result<&mut Entry, JobsError> {
        let entry = self
            .find_mut(id)
            .ok_or_else(|| JobsError::UnknownJob(id.to_string()))?;
        if entry.entry.state.is_terminal() {
            return Err(JobsError::Ended {
                id: id.to_string(),
                state: entry.entry.state.as_str(),
            });
        }
        Ok(entry)
    }

    /// Whether `id` is taken.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Records a new job (state `starting`); `store` is its checkpoint location.
    pub(crate) fn submit(&mut self, id: &str, name: &str, output: Option<String>, store: Option<String>) {
        self.next_seq += 1;
        let entry = JobEntry {
            id: id.to_string(),
            name: name.to_string(),
            state: SubmittedJobState::Starting,
            master_port: None,
            restarts: 0,
            records_in: 0,
            records_out: 0,
            error: None,
            savepoint: None,
            output,
        };
        self.jobs.insert(
            self.next_seq,
            Entry {
                entry,
                checkpointed: store.is_some(),
                store,
                ended_at: None,
                master_live: false,
            },
        );
    }

    /// Its job master listens on `port`.
    pub(crate) fn master_started(&mut self, id: &str, port: u16) {
        if let Some(e) = self.find_mut(id) {
            e.master_live = true;
            if !e.entry.state.is_terminal() {
                e.entry.master_port = Some(port);
            }
        }
    }

    /// Its job master could not start: the job failed.
    pub(crate) fn master_failed(&mut self, id: &str, error: String, now: Instant) {
        if let Some(e) = self.find_mut(id) {
            e.entry.error = Some(error);
            end(e, SubmittedJobState::Failed, now);
        }
    }

    /// The job's status as its master reports it.
    pub(crate) fn observe(&mut self, id: &str, status: &JobStatus, now: Instant) {
        let Some(e) = self.find_mut(id) else { return };
        if e.entry.state.is_terminal() {
            return;
        }
        e.entry.restarts = status.restarts;
        e.entry.records_in = status.records_in;
        e.entry.records_out = status.records_out;
        e.entry.error.clone_from(&status.error);
        let stopping = e.entry.state == SubmittedJobState::Stopping;
        let state = match status.state {
            JobState::Waiting if !stopping => SubmittedJobState::Waiting,
            JobState::Running if !stopping => SubmittedJobState::Running,
            JobState::Restarting if !stopping => SubmittedJobState::Restarting,
            JobState::Waiting | JobState::Running | JobState::Restarting => SubmittedJobState::Stopping,
            JobState::Finished => SubmittedJobState::Finished,
            JobState::Failed => SubmittedJobState::Failed,
            JobState::Stopped => SubmittedJobState::Stopped,
        };
        if state.is_terminal() {
            end(e, state, now);
        } else {
            e.entry.state = state;
        }
    }

    /// Cancels a running job; its master is to end at once.
    pub(crate) fn cancel(&mut self, id: &str, now: Instant) -> Result<(), JobsError> {
        let e = self.live(id)?;
        end(e, SubmittedJobState::Cancelled, now);
        // Ended now, not after the grace: nothing of it is worth keeping.
        e.master_live = false;
        Ok(())
    }

    /// Checks that the job can stop with a savepoint.
    pub(crate) fn check_stop(&mut self, id: &str) -> Result<(), JobsError> {
        let e = self.live(id)?;
        if !e.checkpointed {
            return Err(JobsError::NoCheckpoints(id.to_string()));
        }
        Ok(())
    }

    /// The job stops after `checkpoint`; the savepoint id to resume it from.
    pub(crate) fn stopping(&mut self, id: &str, checkpoint: u64) -> String {
        let savepoint = format!("{id}:{checkpoint}");
        if let Some(e) = self.find_mut(id) {
            e.entry.savepoint = Some(savepoint.clone());
            if !e.entry.state.is_terminal() {
                e.entry.state = SubmittedJobState::Stopping;
            }
        }
        savepoint
    }

    /// Masters to end now: of jobs ended at least [`END_GRACE`] ago.
    pub(crate) fn tick(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.jobs.values_mut() {
            if let Some(at) = e.ended_at {
                if e.master_live && now.saturating_duration_since(at) >= END_GRACE {
                    e.master_live = false;
                    out.push(e.entry.id.clone());
                }
            }
        }
        out
    }

    /// The jobs whose masters run, to ask for their status.
    pub(crate) fn watched(&self) -> Vec<String> {
        self.jobs
            .values()
            .filter(|e| e.master_live && !e.entry.state.is_terminal())
            .map(|e| e.entry.id.clone())
            .collect()
    }

    /// Every job, in submission order.
    pub(crate) fn list(&self) -> Vec<JobEntry> {
        self.jobs.values().map(|e| e.entry.clone()).collect()
    }

    /// Where the savepoint's checkpoints are and which checkpoint it is: a job of this table
    /// must have stopped; one this table does not know (the cluster coordinator restarted) is
    /// looked for where `default_store` puts its checkpoints.
    pub(crate) fn savepoint(
        &self,
        savepoint: &str,
        default_store: impl Fn(&str) -> Option<String>,
    ) -> Result<(String, u64), JobsError> {
        let (job, checkpoint) = parse_savepoint(savepoint)?;
        let bad = |reason: String| JobsError::Savepoint {
            id: savepoint.to_string(),
            reason,
        };
        let store = match self.find(&job) {
            Some(e) if e.entry.state != SubmittedJobState::Stopped => {
                return Err(bad(format!(
                    "job {job} is {}, not stopped (swd stop {job} stops it with a savepoint)",
                    e.entry.state.as_str()
                )))
            }
            Some(e) => e.store.clone(),
            None => default_store(&job),
        };
        let store = store.ok_or_else(|| bad(format!("job {job} has no checkpoint location")))?;
        Ok((store, checkpoint))
    }
}

fn end(e: &mut Entry, state: SubmittedJobState, now: Instant) {
    e.entry.state = state;
    e.entry.master_port = None;
    e.ended_at.get_or_insert(now);
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
