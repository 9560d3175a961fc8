//! A worker process's part in jobs submitted to a running cluster (`coordinator/jobs/`): it
//! reads the cluster coordinator's job list and, for every running job, runs a *job-scoped*
//! [`WorkerImpl`] (same id, same credentials, its own data-plane port) registered with that
//! job's master; it drops the session when the job ends.
//!
//! ```text
//! cluster coordinator --ListJobs every 200 ms--> JobSessionsCore::reconcile (pure)
//!   -> Join{j-1, port}: WorkerImpl{coordinator: cluster host:port} register, start
//!   -> Leave{j-1}:      stop that WorkerImpl (Leave, then gone)
//! ```
//!
//! Polling the list (rather than a pushed message) keeps the worker's session protocol and the
//! coordinator's engine unchanged: a job starts within one poll on every worker.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Worker, WorkerConfig, WorkerImpl};
use crate::client::{Client, ClientError};
use crate::dataflow::JobRegistry;
use crate::protocol::JobEntry;

/// How often the job list is read.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a session may take to leave its job master before it is dropped.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// What to do with job sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SessionAction {
    /// Join the job's master at this port of the cluster coordinator's host.
    Join {
        /// The job.
        id: String,
        /// Its master's port.
        port: u16,
    },
    /// Leave the job (it ended, or its master moved).
    Leave {
        /// The job.
        id: String,
    },
}

/// Which jobs this worker has joined; decides from each job list what to join and leave.
#[derive(Debug, Default)]
pub(crate) struct JobSessionsCore {
    joined: BTreeMap<String, u16>,
}

impl JobSessionsCore {
    /// The actions that bring the sessions in line with `listed`: a session for every running
    /// job with a master, none for the others.
    pub(crate) fn reconcile(&mut self, listed: &[JobEntry]) -> Vec<SessionAction> {
        let wanted: BTreeMap<&str, u16> = listed
            .iter()
            .filter(|j| !j.state.is_terminal())
            .filter_map(|j| j.master_port.map(|port| (j.id.as_str(), port)))
            .collect();
        let mut actions = Vec::new();
        self.joined.retain(|id, port| {
            let keep = wanted.get(id.as_str()) == Some(port);
            if !keep {
                actions.push(SessionAction::Leave { id: id.clone() });
            }
            keep
        });
        for (id, port) in wanted {
            if !self.joined.contains_key(id) {
                self.joined.insert(id.to_string(), port);
                actions.push(SessionAction::Join {
                    id: id.to_string(),
                    port,
                });
            }
        }
        actions
    }

    /// A session ended by itself (its master fenced it): joined again at the next list.
    pub(crate) fn ended(&mut self, id: &str) {
        self.joined.remove(id);
    }

    /// Leave everything (the worker stops).
    pub(crate) fn leave_all(&mut self) -> Vec<SessionAction> {
        std::mem::take(&mut self.joined)
            .into_keys()
            .map(|id| SessionAction::Leave { id })
            .collect()
    }
}

struct Joined {
    leave: CancellationToken,
    task: JoinHandle<()>,
}

/// Follows the cluster coordinator's job list until `stop`, running a job-scoped worker (built
/// from `base`, with `registry`'s jobs) for each running job. Returns at once when the
/// coordinator takes no submitted jobs (it was started with `--job`).
pub async fn follow_jobs(base: WorkerConfig, registry: JobRegistry, stop: CancellationToken) {
    let mut core = JobSessionsCore::default();
    let mut sessions: HashMap<String, Joined> = HashMap::new();
    let mut client: Option<Client> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(POLL_INTERVAL) => {}
        }
        // A paused or unreachable coordinator must not hold up the worker's exit.
        let listed = tokio::select! {
            _ = stop.cancelled() => break,
            listed = list(&mut client, &base) => listed,
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(ClientError::Refused { message, .. }) => {
                tracing::debug!(%message, "the coordinator takes no submitted jobs");
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the job list; reconnecting");
                client = None;
                continue;
            }
        };
        let finished: Vec<String> = sessions
            .iter()
            .filter(|(_, s)| s.task.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            sessions.remove(&id);
            core.ended(&id);
        }
        for action in core.reconcile(&listed) {
            apply(action, &base, &registry, &mut sessions);
        }
    }
    for action in core.leave_all() {
        apply(action, &base, &registry, &mut sessions);
    }
    for (_, joined) in sessions.drain() {
        let _ = tokio::time::timeout(LEAVE_TIMEOUT, joined.task).await;
    }
}

/// The job list, connecting first when `client` is not connected.
async fn list(client: &mut Option<Client>, base: &WorkerConfig) -> Result<Vec<JobEntry>, ClientError> {
    if client.is_none() {
        *client = Some(
            Client::connect_with(
                base.coordinator_address,
                &base.cluster_name,
                base.communication_timeout,
                &base.security,
            )
            .await?,
        );
    }
    match client.as_mut() {
        Some(connected) => connected.list_jobs().await,
        None => Err(ClientError::Unexpected("not connected".to_string())),
    }
}

fn apply(
    action: SessionAction,
    base: &WorkerConfig,
    registry: &JobRegistry,
    sessions: &mut HashMap<String, Joined>,
) {
    match action {
        SessionAction::Join { id, port } => {
            let config = WorkerConfig {
                coordinator_address: SocketAddr::new(base.coordinator_address.ip(), port),
                other_coordinators: Vec::new(),
                bind_address: SocketAddr::new(base.bind_address.ip(), 0),
                // Its own port: the bound one, announced from the IP that reaches the master.
                advertise_address: None,
                assigned_partitions: Vec::new(),
                ..base.clone()
            };
            let leave = CancellationToken::new();
            let task = tokio::spawn(run_session(id.clone(), config, registry.clone(), leave.clone()));
            sessions.insert(id, Joined { leave, task });
        }
        SessionAction::Leave { id } => {
            if let Some(joined) = sessions.remove(&id) {
                joined.leave.cancel();
            }
        }
    }
}

/// One job-scoped worker: registered with the job's master until `leave`.
async fn run_session(job: String, config: WorkerConfig, registry: JobRegistry, leave: CancellationToken) {
    let mut worker = WorkerImpl::new(config).with_jobs(registry);
    match worker.register_retrying(&leave).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(%job, error = %e, "cannot join the job");
            return;
        }
    }
    if let Err(e) = worker.start().await {
        tracing::warn!(%job, error = %e, "cannot start the job's session");
        return;
    }
    tracing::info!(%job, data = ?worker.address(), "joined the job");
    tokio::select! {
        _ = leave.cancelled() => {
            if tokio::time::timeout(LEAVE_TIMEOUT, worker.stop()).await.is_err() {
                tracing::warn!(%job, "left the job without its master's answer");
            }
            tracing::info!(%job, "left the job");
        }
        ended = worker.wait() => {
            tracing::info!(%job, result = ?ended, "the job's session ended");
        }
    }
}

#[cfg(test)]
#[path = "job_sessions_tests.rs"]
mod tests;
