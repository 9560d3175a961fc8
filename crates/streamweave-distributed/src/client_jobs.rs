//! [`Client`]'s requests about jobs submitted to a running cluster (`swd run | jobs | cancel |
//! stop`; `coordinator/jobs/`).

use super::{Client, ClientError};
use crate::protocol::{ClientRequest, ClientResponse, JobEntry, SubmitJob};

impl Client {
    /// Submits a job to a cluster coordinator started without one; its id.
    pub async fn submit_job(&mut self, submit: SubmitJob) -> Result<String, ClientError> {
        match self.request(ClientRequest::SubmitJob(Box::new(submit))).await? {
            ClientResponse::JobSubmitted { id } => Ok(id),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The submitted jobs, in submission order.
    pub async fn list_jobs(&mut self) -> Result<Vec<JobEntry>, ClientError> {
        match self.request(ClientRequest::ListJobs).await? {
            ClientResponse::Jobs(jobs) => Ok(jobs),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Cancels a submitted job: it ends at once, without a checkpoint.
    pub async fn cancel_job(&mut self, id: &str) -> Result<(), ClientError> {
        match self
            .request(ClientRequest::CancelJob { id: id.to_string() })
            .await?
        {
            ClientResponse::JobCancelled { .. } => Ok(()),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Asks a submitted job to stop with a savepoint; the savepoint's id (`<job>:<checkpoint>`).
    /// The job's state becomes `stopped` once the savepoint is committed: watch
    /// [`Client::list_jobs`].
    pub async fn stop_submitted_job(&mut self, id: &str) -> Result<String, ClientError> {
        match self
            .request(ClientRequest::StopSubmittedJob { id: id.to_string() })
            .await?
        {
            ClientResponse::JobStopping { savepoint } => Ok(savepoint),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
}
