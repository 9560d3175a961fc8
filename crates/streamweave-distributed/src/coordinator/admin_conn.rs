//! Admin connections: one request at a time from `swd status`, `assign`, ... answered by the
//! actor, with the role check in front: when the operator configured admin credentials, a
//! request that changes the cluster needs them ([`needs_admin`]).

use std::net::SocketAddr;
use std::time::Duration;

use super::commands::answer;
use super::server::Shared;
use crate::network::Connection;
use crate::protocol::{ClientRequest, ClientResponse, ErrorKind};
use crate::security::PeerCredentials;

/// An admin connection without a request for this long is closed.
const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether `request` changes the cluster (and so needs admin rights when they are configured).
/// Exhaustive on purpose: a new request must be classified here.
pub(crate) fn needs_admin(request: &ClientRequest) -> bool {
    match request {
        ClientRequest::Status => false,
        ClientRequest::Assign { .. }
        | ClientRequest::Rebalance
        | ClientRequest::FailWorker { .. }
        | ClientRequest::Checkpoint
        | ClientRequest::StopJob
        | ClientRequest::SubmitJob(_)
        | ClientRequest::CancelJob { .. }
        | ClientRequest::StopSubmittedJob { .. } => true,
        ClientRequest::ListJobs => false,
    }
}

/// Whether `request` is about submitted jobs (answered by the jobs service, not the actor).
fn is_job_request(request: &ClientRequest) -> bool {
    matches!(
        request,
        ClientRequest::SubmitJob(_)
            | ClientRequest::ListJobs
            | ClientRequest::CancelJob { .. }
            | ClientRequest::StopSubmittedJob { .. }
    )
}

/// The answer to a request the peer may not make, or `None` when it may.
pub(crate) fn refusal(
    request: &ClientRequest,
    credentials: &PeerCredentials,
    security: &crate::security::Security,
) -> Option<ClientResponse> {
    (needs_admin(request) && !credentials.is_admin(security)).then(|| ClientResponse::Error {
        kind: ErrorKind::Forbidden,
        message: "this request needs admin credentials (--admin-secret-file, or the admin certificate)"
            .to_string(),
    })
}

pub(crate) async fn serve_client(
    mut connection: Connection<ClientResponse, ClientRequest>,
    peer: SocketAddr,
    credentials: PeerCredentials,
    shared: Shared,
) {
    loop {
        let request = match tokio::time::timeout(ADMIN_IDLE_TIMEOUT, connection.recv()).await {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "closing client connection");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "closing client connection: no request within {ADMIN_IDLE_TIMEOUT:?}");
                return;
            }
        };
        let response = match refusal(&request, &credentials, &shared.security) {
            Some(refused) => {
                tracing::warn!(%peer, ?request, "refusing an admin request without admin credentials");
                refused
            }
            None if is_job_request(&request) => match &shared.jobs {
                Some(jobs) => jobs.answer(request).await,
                None => ClientResponse::Error {
                    kind: ErrorKind::Other,
                    message:
                        "this coordinator runs the one job it was started with (--job); submit jobs to a \
                              coordinator started without --job"
                            .to_string(),
                },
            },
            None => match answer(&shared.commands, request).await {
                Some(response) => response,
                None => return,
            },
        };
        if let Err(e) = connection.send(response).await {
            tracing::debug!(%peer, error = %e, "client went away");
            return;
        }
    }
}
