//! The async shell around [`JobTable`]: it starts a job master (a [`CoordinatorImpl`] for one
//! job, on the cluster coordinator's host, port 0) per submitted job, follows each master's job
//! status every [`WATCH_INTERVAL`], and ends the masters the table says to end.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::table::{job_id, job_store, JobTable, JobsError};
use crate::checkpoint::{open_store, restore_latest};
use crate::coordinator::{Coordinator, CoordinatorConfig, CoordinatorHandle, CoordinatorImpl};
use crate::dataflow::JobSpec;
use crate::protocol::{ClientRequest, ClientResponse, ErrorKind, SubmitJob};
use crate::storage::StorageUrl;
use crate::types::WorkerState;

/// How often the masters' job status is read.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

struct Inner {
    table: JobTable,
    masters: HashMap<String, CoordinatorImpl>,
}

/// Submitted jobs of one cluster coordinator (one started without a job); cheap to clone.
#[derive(Clone)]
pub(crate) struct JobsService {
    inner: Arc<Mutex<Inner>>,
    /// The cluster coordinator's configuration: each job master's starts from it.
    base: Arc<CoordinatorConfig>,
    /// The cluster coordinator itself (its workers).
    cluster: CoordinatorHandle,
}

impl JobsService {
    /// Starts watching; every master ends when `shutdown` is cancelled.
    pub(crate) fn start(
        base: CoordinatorConfig,
        cluster: CoordinatorHandle,
        shutdown: CancellationToken,
    ) -> Self {
        let service = JobsService {
            inner: Arc::new(Mutex::new(Inner {
                table: JobTable::default(),
                masters: HashMap::new(),
            })),
            base: Arc::new(base),
            cluster,
        };
        tokio::spawn(service.clone().watch(shutdown));
        service
    }

    /// Answers a job request (`ClientRequest::SubmitJob`, `ListJobs`, `CancelJob`,
    /// `StopSubmittedJob`).
    // Boxed with a named type: a job master's `CoordinatorImpl::start` runs inside, and the
    // admin connections that call this are themselves spawned by `start` (an opaque type cannot
    // depend on itself).
    pub(crate) fn answer(
        &self,
        request: ClientRequest,
    ) -> Pin<Box<dyn Future<Output = ClientResponse> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.answer_now(request).await })
    }

    async fn answer_now(&self, request: ClientRequest) -> ClientResponse {
        let result = match request {
            ClientRequest::SubmitJob(submit) => self
                .submit(*submit)
                .await
                .map(|id| ClientResponse::JobSubmitted { id }),
            ClientRequest::ListJobs => Ok(ClientResponse::Jobs(self.inner.lock().await.table.list())),
            ClientRequest::CancelJob { id } => self
                .cancel(&id)
                .await
                .map(|()| ClientResponse::JobCancelled { id }),
            ClientRequest::StopSubmittedJob { id } => self
                .stop(&id)
                .await
                .map(|savepoint| ClientResponse::JobStopping { savepoint }),
            other => Err(JobsError::Cannot(format!("not a job request: {other:?}"))),
        };
        result.unwrap_or_else(|e| ClientResponse::Error {
            kind: ErrorKind::Other,
            message: e.to_string(),
        })
    }

    async fn submit(&self, submit: SubmitJob) -> Result<String, JobsError> {
        let spec = JobSpec::from(submit.spec);
        // Refused now, not by every worker as the attempt starts.
        crate::dataflow::state::check_params(&spec).map_err(|e| JobsError::Cannot(e.to_string()))?;
        let interval = submit.checkpoint_interval_ms.map(Duration::from_millis);
        let base = &self.base;
        let mut inner = self.inner.lock().await;
        let id = loop {
            let id = job_id(random_u32()?);
            if !inner.table.contains(&id) {
                break id;
            }
        };
        let store = match &submit.from_savepoint {
            Some(savepoint) => {
                if interval.is_none() {
                    return Err(JobsError::Cannot(
                        "resuming from a savepoint needs --checkpoint-interval".to_string(),
                    ));
                }
                let (store, checkpoint) = inner.table.savepoint(savepoint, |job| {
                    job_store(base.data_dir.as_deref(), base.checkpoint_store.as_deref(), job)
                })?;
                let (s, name, sp) = (store.clone(), spec.name.clone(), savepoint.clone());
                tokio::task::spawn_blocking(move || check_savepoint(&sp, &s, checkpoint, &name))
                    .await
                    .map_err(|e| JobsError::Cannot(format!("checking the savepoint: {e}")))??;
                // Its job's master may still serve its last seconds: it must not write there.
                let (old, _) = super::table::parse_savepoint(savepoint)?;
                if let Some(mut master) = inner.masters.remove(&old) {
                    master.stop().await;
                }
                Some(store)
            }
            None => match interval {
                Some(_) => Some(
                    job_store(base.data_dir.as_deref(), base.checkpoint_store.as_deref(), &id).ok_or_else(|| {
                        JobsError::Cannot(
                            "checkpoints need a place: start the coordinator with --data-dir or --checkpoint-store"
                                .to_string(),
                        )
                    })?,
                ),
                None => None,
            },
        };
        // The first attempt waits for the workers the cluster has now, so the job is spread
        // over all of them from the start.
        let workers = self
            .cluster
            .status()
            .await
            .map(|s| {
                s.workers
                    .iter()
                    .filter(|w| w.state == WorkerState::Active)
                    .count()
            })
            .unwrap_or(1);
        let config = CoordinatorConfig {
            bind_address: SocketAddr::new(base.bind_address.ip(), 0),
            data_dir: base.data_dir.as_ref().map(|d| d.join("jobs").join(&id)),
            checkpoint_store: store.clone(),
            checkpoint_interval: interval,
            min_workers: workers.max(1),
            job: Some(spec.clone()),
            ..CoordinatorConfig::clone(base)
        };
        let output = spec.output.as_ref().map(|o| o.display().to_string());
        inner.table.submit(&id, &spec.name, output, store);
        let mut master = CoordinatorImpl::new(config);
        match master.start().await {
            Ok(()) => {
                let port = master.local_addr().map_or(0, |a| a.port());
                inner.table.master_started(&id, port);
                inner.masters.insert(id.clone(), master);
                tracing::info!(job = %id, name = %spec.name, port, "job submitted; its master listens");
                Ok(id)
            }
            Err(e) => {
                let reason = format!("job {id} cannot start: {e}");
                inner.table.master_failed(&id, reason.clone(), Instant::now());
                Err(JobsError::Cannot(reason))
            }
        }
    }

    async fn cancel(&self, id: &str) -> Result<(), JobsError> {
        let mut inner = self.inner.lock().await;
        inner.table.cancel(id, Instant::now())?;
        if let Some(mut master) = inner.masters.remove(id) {
            tracing::info!(job = %id, "job cancelled");
            // Its workers see `cancelled` in the list and drop their sessions; the master tells
            // the ones still connected to stop their tasks.
            tokio::spawn(async move { master.stop().await });
        }
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<String, JobsError> {
        let handle = {
            let mut inner = self.inner.lock().await;
            inner.table.check_stop(id)?;
            inner.masters.get(id).and_then(|m| m.handle().ok())
        };
        let handle = handle.ok_or_else(|| JobsError::Cannot(format!("job {id} has no running master")))?;
        match handle.request_stop().await {
            Some(Ok(Some(checkpoint))) => {
                tracing::info!(job = %id, checkpoint, "job stopping at its savepoint");
                Ok(self.inner.lock().await.table.stopping(id, checkpoint))
            }
            Some(Ok(None)) => Err(JobsError::Cannot(format!(
                "job {id} stopped without a checkpoint"
            ))),
            Some(Err(e)) => Err(JobsError::Cannot(format!("cannot stop job {id}: {e}"))),
            None => Err(JobsError::Cannot(format!("job {id}'s master has stopped"))),
        }
    }

    /// Follows the masters until `shutdown`, then ends them all.
    async fn watch(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(WATCH_INTERVAL) => {}
            }
            let handles: Vec<(String, CoordinatorHandle)> = {
                let inner = self.inner.lock().await;
                inner
                    .table
                    .watched()
                    .into_iter()
                    .filter_map(|id| {
                        inner
                            .masters
                            .get(&id)
                            .and_then(|m| m.handle().ok())
                            .map(|h| (id, h))
                    })
                    .collect()
            };
            let mut reports = Vec::new();
            for (id, handle) in handles {
                if let Ok(status) = handle.status().await {
                    reports.push((id, status.job));
                }
            }
            let ended: Vec<CoordinatorImpl> = {
                let mut inner = self.inner.lock().await;
                let now = Instant::now();
                for (id, job) in &reports {
                    if let Some(job) = job {
                        inner.table.observe(id, job, now);
                    }
                }
                inner
                    .table
                    .tick(now)
                    .into_iter()
                    .filter_map(|id| inner.masters.remove(&id))
                    .collect()
            };
            for mut master in ended {
                master.stop().await;
            }
        }
        let masters: Vec<CoordinatorImpl> = self.inner.lock().await.masters.drain().map(|(_, m)| m).collect();
        for mut master in masters {
            master.stop().await;
        }
    }
}

/// The savepoint is the newest checkpoint at `store`, of a job named `name` (a job resumed from
/// it checkpoints into the same place, after which it is no longer the place to resume from).
fn check_savepoint(savepoint: &str, store: &str, checkpoint: u64, name: &str) -> Result<(), JobsError> {
    let bad = |reason: String| JobsError::Savepoint {
        id: savepoint.to_string(),
        reason,
    };
    let url = StorageUrl::parse(store).map_err(|e| bad(format!("its location {store}: {e}")))?;
    let opened = open_store(&url).map_err(|e| bad(format!("cannot open {store}: {e}")))?;
    let latest = restore_latest(opened.as_ref())
        .map_err(|e| bad(format!("cannot read {store}: {e}")))?
        .ok_or_else(|| bad(format!("no checkpoint at {store}")))?;
    if latest.id.0 != checkpoint {
        return Err(bad(format!(
            "the newest checkpoint at {store} is {}, not {checkpoint} (a job resumed from it has checkpointed since: resume from that job's savepoint)",
            latest.id.0
        )));
    }
    if latest.job != name {
        return Err(bad(format!(
            "it is a checkpoint of job {}, not {name}",
            latest.job
        )));
    }
    Ok(())
}

fn random_u32() -> Result<u32, JobsError> {
    let bytes = crate::security::random_bytes()
        .ok_or_else(|| JobsError::Cannot("no randomness for a job id".to_string()))?;
    Ok(u32::from_be_bytes(bytes))
}
