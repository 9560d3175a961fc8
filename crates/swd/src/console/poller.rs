//! The poller: asks the coordinator for its status every [`POLL_INTERVAL`] and feeds the
//! pure [`History`]; the routes read what it keeps.

use std::net::SocketAddr;
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use streamweave_distributed::observe::History;
use streamweave_distributed::protocol::JobEntry;
use streamweave_distributed::security::Security;
use streamweave_distributed::{Client, ClientError};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Shared, POLL_INTERVAL};

/// How long connecting and one status request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What the console knows: the history of statuses, and why the last poll failed (if it did).
#[derive(Debug)]
pub struct Observed {
    /// Statuses so far.
    pub history: History,
    /// Why the newest poll got no status (the coordinator unreachable, a standby).
    pub error: Option<String>,
    /// The coordinator's address, as `swd status --json` names the leader.
    pub leader: String,
    /// Jobs submitted with `swd run` (none on a coordinator started with `--job`).
    pub jobs: Vec<JobEntry>,
}

impl Observed {
    /// Nothing observed yet.
    pub fn new(history: History) -> Self {
        Observed {
            history,
            error: Some("no status yet".to_string()),
            leader: String::new(),
            jobs: Vec::new(),
        }
    }
}

/// Polls `addr` until `stop`, reconnecting after an error.
pub async fn run(
    addr: SocketAddr,
    cluster: String,
    security: Security,
    shared: Shared,
    stop: CancellationToken,
) {
    let mut client: Option<Client> = None;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if client.is_none() {
            match Client::connect_secured(addr, &cluster, REQUEST_TIMEOUT, &security).await {
                Ok(c) => client = Some(c),
                Err(e) => {
                    record(&shared, |o| {
                        o.error = Some(format!("cannot reach the coordinator at {addr}: {e}"))
                    });
                    continue;
                }
            }
        }
        let Some(c) = client.as_mut() else { continue };
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, c.status()).await;
        let now = Instant::now();
        match answer {
            Ok(Ok(status)) => {
                // Refused by a coordinator with its own job: no submitted jobs to show.
                let jobs = tokio::time::timeout(REQUEST_TIMEOUT, c.list_jobs()).await;
                let jobs = jobs.ok().and_then(Result::ok).unwrap_or_default();
                record(&shared, |o| {
                    o.history.observe(status, now);
                    o.error = None;
                    o.leader = addr.to_string();
                    o.jobs = jobs;
                })
            }
            Ok(Err(ClientError::NotLeader { leader, .. })) => record(&shared, |o| {
                o.error = Some(format!(
                    "standby; the leader is {}",
                    leader.unwrap_or_else(|| "not known yet".to_string())
                ))
            }),
            Ok(Err(e)) => {
                client = None;
                record(&shared, |o| {
                    o.error = Some(format!("the coordinator at {addr}: {e}"))
                });
            }
            Err(_) => {
                client = None;
                record(&shared, |o| {
                    o.error = Some(format!("the coordinator at {addr} did not answer"))
                });
            }
        }
    }
}

fn record(shared: &Shared, update: impl FnOnce(&mut Observed)) {
    // A poisoned lock means a route panicked while reading: the data is still whole.
    let mut observed = shared.lock().unwrap_or_else(PoisonError::into_inner);
    update(&mut observed);
}
