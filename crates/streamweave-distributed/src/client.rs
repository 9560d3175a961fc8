//! The admin client behind `swd status`, `swd assign` and `swd rebalance`: one connection to
//! the coordinator, one request and one response at a time.

use std::net::SocketAddr;
use std::time::Duration;

use crate::network::{Connection, ConnectionPool, NetworkError, Transport};
use crate::protocol::{
    ClientRequest, ClientResponse, ClusterStatus, ErrorKind, Hello, JobState, ProtocolError, Role,
};
use crate::security::Security;
use crate::types::{Generation, PartitionId, WorkerId};
use crate::worker::coordinators::Coordinators;

#[path = "client_jobs.rs"]
mod jobs;

/// What an admin request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No coordinator answered at the address.
    #[error("cannot reach coordinator at {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: SocketAddr,
        /// Why, in a few words (`connection refused`).
        reason: String,
    },
    /// Something answered but broke the protocol or refused the handshake.
    #[error("coordinator at {addr}: {source}")]
    Protocol {
        /// The address.
        addr: SocketAddr,
        /// What went wrong.
        source: ProtocolError,
    },
    /// The coordinator refused the request.
    #[error("{message}")]
    Refused {
        /// Which error.
        kind: ErrorKind,
        /// The coordinator's message.
        message: String,
    },
    /// The coordinator did not answer a request in time.
    #[error("coordinator at {addr} did not answer within {}", humantime::format_duration(*.after))]
    TimedOut {
        /// The address.
        addr: SocketAddr,
        /// The deadline.
        after: Duration,
    },
    /// The coordinator answered with something that does not fit the request.
    #[error("unexpected response from the coordinator: {0}")]
    Unexpected(String),
    /// The coordinator is a standby (high availability): ask the leader.
    #[error("coordinator at {addr} is a standby; the leader is {}", .leader.as_deref().unwrap_or("not known yet"))]
    NotLeader {
        /// The standby's address.
        addr: SocketAddr,
        /// The leader's address, when the standby knows it.
        leader: Option<String>,
    },
    /// A checkpoint asked for with [`Client::checkpoint`] was not committed.
    #[error("checkpoint {id} was not committed: {reason}")]
    CheckpointNotCommitted {
        /// The checkpoint.
        id: u64,
        /// Why.
        reason: String,
    },
    /// A job asked to stop with [`Client::stop_job`] did not reach `stopped`.
    #[error("the job did not stop: {reason}")]
    NotStopped {
        /// Why.
        reason: String,
    },
}

/// A connection to a coordinator for admin requests.
///
/// ```no_run
/// # async fn demo() -> Result<(), streamweave_distributed::ClientError> {
/// use streamweave_distributed::Client;
/// let mut client = Client::connect("127.0.0.1:7000".parse().unwrap(), "default").await?;
/// let status = client.status().await?;
/// println!("generation {} with {} workers", status.generation, status.workers.len());
/// # Ok(())
/// # }
/// ```
///
/// A coordinator closes an admin connection that stays idle for 30 seconds; the next request
/// then connects again, so a client may be kept between far-apart requests.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    connection: Connection<ClientRequest, ClientResponse>,
    /// The deadline of each request.
    timeout: Duration,
    /// How to connect again (see [`Client::reconnect_if_closed`]).
    cluster: String,
    security: Security,
    connect_timeout: Duration,
}

impl Client {
    /// The deadline of a request unless set otherwise: a coordinator that accepts the
    /// connection but never answers must not hang the caller.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

    /// Connects to the coordinator of `cluster` at `addr` (5 second deadline; each request
    /// then has [`Client::DEFAULT_REQUEST_TIMEOUT`]).
    pub async fn connect(addr: SocketAddr, cluster: &str) -> Result<Client, ClientError> {
        let mut client = Self::connect_with_timeout(addr, cluster, Duration::from_secs(5)).await?;
        client.timeout = Self::DEFAULT_REQUEST_TIMEOUT;
        Ok(client)
    }

    /// Like [`Client::connect`] (each request then has [`Client::DEFAULT_REQUEST_TIMEOUT`]),
    /// connecting within `timeout` under `security`.
    pub async fn connect_with(
        addr: SocketAddr,
        cluster: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Client, ClientError> {
        let mut client = Self::connect_secured(addr, cluster, timeout, security).await?;
        client.timeout = Self::DEFAULT_REQUEST_TIMEOUT;
        Ok(client)
    }

    /// Connects to the leader among several coordinators of a highly available cluster: each
    /// in turn, going where a standby's answer points, until one answers a status request as
    /// leader. The last error when none does.
    pub async fn connect_leader(
        addrs: &[SocketAddr],
        cluster: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Self::connect_leader_secured(addrs, cluster, timeout, &Security::none()).await
    }

    /// Like [`Client::connect_leader`], with TLS and a secret (see [`Client::connect_secured`]).
    pub async fn connect_leader_secured(
        addrs: &[SocketAddr],
        cluster: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Client, ClientError> {
        let Some(first) = addrs.first() else {
            return Err(ClientError::Unexpected(
                "no coordinator address given".to_string(),
            ));
        };
        let mut round = Coordinators::new(*first, &addrs[1..]).round();
        let mut last = None;
        while let Some(addr) = round.next() {
            let attempt = async {
                let mut client = Self::connect_secured(addr, cluster, timeout, security).await?;
                client.status().await.map(|_| client)
            };
            match attempt.await {
                Ok(client) => return Ok(client),
                Err(ClientError::NotLeader { addr, leader }) => {
                    round.not_leader(leader.as_deref());
                    last = Some(ClientError::NotLeader { addr, leader });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Unexpected("no coordinator address given".to_string())))
    }

    /// The coordinator's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects with a custom deadline, which each request then has too.
    pub async fn connect_with_timeout(
        addr: SocketAddr,
        cluster: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        Self::connect_secured(addr, cluster, timeout, &Security::none()).await
    }

    /// Like [`Client::connect_with_timeout`], with TLS and a secret (a client proves the admin
    /// secret when `security` has one, else the cluster secret).
    pub async fn connect_secured(
        addr: SocketAddr,
        cluster: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Client, ClientError> {
        let connection = Self::open(addr, cluster, timeout, security).await?;
        Ok(Client {
            addr,
            connection,
            timeout,
            cluster: cluster.to_string(),
            security: security.clone(),
            connect_timeout: timeout,
        })
    }

    async fn open(
        addr: SocketAddr,
        cluster: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Connection<ClientRequest, ClientResponse>, ClientError> {
        let transport = Transport::new(
            ConnectionPool::new()
                .with_max_connections(1)
                .with_timeout(timeout),
        )
        .with_security(security.clone());
        let hello = Hello {
            role: Role::Client,
            cluster: cluster.to_string(),
        };
        transport.connect(addr, &hello).await.map_err(|e| match e {
            NetworkError::Protocol(source) => ClientError::Protocol { addr, source },
            other => ClientError::Unreachable {
                addr,
                reason: other.reason(),
            },
        })
    }

    /// Connects again if the coordinator closed the connection while it was idle (it answers
    /// requests only, so anything readable between them is the close). A request is never
    /// sent twice: this runs before sending, when the coordinator cannot have seen it.
    async fn reconnect_if_closed(&mut self) -> Result<(), ClientError> {
        use futures::FutureExt;
        match self.connection.recv().now_or_never() {
            None => Ok(()),
            Some(Ok(Some(unasked))) => Err(ClientError::Unexpected(format!(
                "the coordinator sent {unasked:?} unasked"
            ))),
            Some(Ok(None) | Err(_)) => {
                tracing::debug!(addr = %self.addr, "admin connection closed while idle: connecting again");
                self.connection =
                    Self::open(self.addr, &self.cluster, self.connect_timeout, &self.security).await?;
                Ok(())
            }
        }
    }

    async fn request(&mut self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let (addr, after) = (self.addr, self.timeout);
        let attempt = async {
            self.reconnect_if_closed().await?;
            self.exchange(request).await
        };
        tokio::time::timeout(after, attempt)
            .await
            .map_err(|_| ClientError::TimedOut { addr, after })?
    }

    async fn exchange(&mut self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let addr = self.addr;
        self.connection
            .send(request)
            .await
            .map_err(|source| ClientError::Protocol { addr, source })?;
        match self.connection.recv().await {
            Ok(Some(ClientResponse::Error { kind, message })) => Err(ClientError::Refused { kind, message }),
            Ok(Some(ClientResponse::NotLeader { leader })) => Err(ClientError::NotLeader { addr, leader }),
            Ok(Some(response)) => Ok(response),
            Ok(None) => Err(ClientError::Protocol {
                addr,
                source: ProtocolError::Closed,
            }),
            Err(source) => Err(ClientError::Protocol { addr, source }),
        }
    }

    async fn done(&mut self, request: ClientRequest) -> Result<Generation, ClientError> {
        match self.request(request).await? {
            ClientResponse::Done { generation } => Ok(generation),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The cluster's status.
    pub async fn status(&mut self) -> Result<ClusterStatus, ClientError> {
        match self.request(ClientRequest::Status).await? {
            ClientResponse::Status(status) => Ok(*status),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Moves `partitions` to `worker`; returns the generation after the request.
    pub async fn assign(
        &mut self,
        worker: WorkerId,
        partitions: Vec<PartitionId>,
    ) -> Result<Generation, ClientError> {
        self.done(ClientRequest::Assign { worker, partitions }).await
    }

    /// Recomputes a balanced assignment; returns the generation after the request.
    pub async fn rebalance(&mut self) -> Result<Generation, ClientError> {
        self.done(ClientRequest::Rebalance).await
    }

    /// Asks for a checkpoint of the running job now; returns its id (a new one, or the one
    /// already in flight). It is committed once the status's `checkpoints.last_completed`
    /// reaches it. Refused when no attempt runs or checkpoints are off.
    pub async fn trigger_checkpoint(&mut self) -> Result<u64, ClientError> {
        match self.request(ClientRequest::Checkpoint).await? {
            ClientResponse::CheckpointTriggered { id } => Ok(id),
            other => Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }

    /// Stops the running job cleanly and waits (polling the status, up to `timeout`) until its
    /// state is `stopped`: with checkpoints after a final checkpoint whose epoch every sink made
    /// final (returned), without checkpoints at once (`None`).
    pub async fn stop_job(&mut self, timeout: Duration) -> Result<Option<u64>, ClientError> {
        let checkpoint = match self.request(ClientRequest::StopJob).await? {
            ClientResponse::Stopping { checkpoint } => checkpoint,
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.status().await?.job.map(|j| j.state);
            match state {
                Some(JobState::Stopped) => return Ok(checkpoint),
                Some(JobState::Running | JobState::Restarting | JobState::Waiting) => {}
                other => {
                    return Err(ClientError::NotStopped {
                        reason: format!("the job ended first ({other:?})").to_lowercase(),
                    })
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::NotStopped {
                    reason: format!("not within {}", humantime::format_duration(timeout)),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Takes a checkpoint of the running job and waits (polling the status) until it is
    /// committed; returns its id. The coordinator then tells the sinks to make its epoch final.
    pub async fn checkpoint(&mut self, timeout: Duration) -> Result<u64, ClientError> {
        let id = self.trigger_checkpoint().await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status().await?;
            match checkpoint_outcome(&status, id) {
                CheckpointOutcome::Committed => return Ok(id),
                CheckpointOutcome::Abandoned(reason) => {
                    return Err(ClientError::CheckpointNotCommitted {
                        id,
                        reason: reason.to_string(),
                    })
                }
                CheckpointOutcome::InFlight => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ClientError::CheckpointNotCommitted {
                    id,
                    reason: format!("not within {timeout:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Declares a worker failed.
    pub async fn fail_worker(&mut self, worker: WorkerId) -> Result<Generation, ClientError> {
        self.done(ClientRequest::FailWorker { worker }).await
    }
}

/// Where a checkpoint asked for stands in a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CheckpointOutcome {
    Committed,
    /// Not committed yet (in flight, or its manifest being written).
    InFlight,
    /// It will never be committed, and why.
    Abandoned(&'static str),
}

/// What the status says of checkpoint `id`.
fn checkpoint_outcome(status: &ClusterStatus, id: u64) -> CheckpointOutcome {
    let Some(checkpoints) = &status.checkpoints else {
        return CheckpointOutcome::Abandoned("checkpoints are off");
    };
    outcome(
        id,
        checkpoints.last_completed,
        checkpoints.in_flight,
        status.job.as_ref().map(|j| j.state),
    )
}

fn outcome(
    id: u64,
    last_completed: Option<u64>,
    in_flight: Option<u64>,
    job: Option<JobState>,
) -> CheckpointOutcome {
    if last_completed.is_some_and(|c| c >= id) {
        return CheckpointOutcome::Committed;
    }
    if in_flight.is_some_and(|c| c > id) {
        // Checkpoints complete in order: a later one in flight means this one was aborted.
        return CheckpointOutcome::Abandoned("it was aborted (see the coordinator's log)");
    }
    match job {
        Some(JobState::Running) => CheckpointOutcome::InFlight,
        Some(JobState::Finished) => CheckpointOutcome::Abandoned("the job finished first"),
        _ => CheckpointOutcome::Abandoned("the job attempt it belonged to stopped"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_coordinator_that_never_answers_times_out_naming_it() {
        use crate::protocol::accept_handshake;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts the connection and the handshake, then reads nothing.
        let silent = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            accept_handshake(&mut stream, "default").await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let after = Duration::from_millis(200);
        let mut client = Client::connect_with_timeout(addr, "default", after)
            .await
            .unwrap();
        let error = client.status().await.unwrap_err();
        assert!(matches!(error, ClientError::TimedOut { .. }), "{error:?}");
        assert_eq!(
            error.to_string(),
            format!("coordinator at {addr} did not answer within 200ms")
        );
        silent.abort();
    }

    #[test]
    fn a_checkpoint_is_committed_in_flight_or_abandoned() {
        use JobState::*;
        assert_eq!(
            outcome(4, Some(4), None, Some(Running)),
            CheckpointOutcome::Committed
        );
        assert_eq!(
            outcome(4, Some(5), Some(6), Some(Running)),
            CheckpointOutcome::Committed
        );
        assert_eq!(
            outcome(4, Some(3), Some(4), Some(Running)),
            CheckpointOutcome::InFlight
        );
        assert_eq!(
            outcome(4, None, Some(4), Some(Running)),
            CheckpointOutcome::InFlight
        );
        // Acknowledged by every partition, its manifest being written.
        assert_eq!(
            outcome(4, Some(3), None, Some(Running)),
            CheckpointOutcome::InFlight
        );
        let abandoned = |o| matches!(o, CheckpointOutcome::Abandoned(_));
        // Aborted, and the next one already triggered.
        assert!(abandoned(outcome(4, Some(3), Some(5), Some(Running))));
        // The attempt stopped, or the job ended before it.
        assert!(abandoned(outcome(4, Some(3), None, Some(Restarting))));
        assert!(abandoned(outcome(4, Some(3), None, Some(Finished))));
        assert!(abandoned(outcome(4, Some(3), Some(4), Some(Failed))));
        assert!(abandoned(outcome(4, None, None, None)));
    }
}
