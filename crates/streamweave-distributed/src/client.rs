//! The admin client behind `swd status`, `swd assign` and `swd rebalance`: one connection to
//! the coordinator, one request and one response at a time.

use std::net::SocketAddr;
use std::time::Duration;

use crate::network::{Connection, ConnectionPool, NetworkError, Transport};
use crate::protocol::{ClientRequest, ClientResponse, ClusterStatus, ErrorKind, Hello, ProtocolError, Role};
use crate::types::{Generation, PartitionId, WorkerId};

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
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    connection: Connection<ClientRequest, ClientResponse>,
    /// The deadline of each request.
    timeout: Duration,
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

    /// Connects with a custom deadline, which each request then has too.
    pub async fn connect_with_timeout(
        addr: SocketAddr,
        cluster: &str,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let transport = Transport::new(
            ConnectionPool::new()
                .with_max_connections(1)
                .with_timeout(timeout),
        );
        let hello = Hello {
            role: Role::Client,
            cluster: cluster.to_string(),
        };
        let connection = transport.connect(addr, &hello).await.map_err(|e| match e {
            NetworkError::Protocol(source) => ClientError::Protocol { addr, source },
            other => ClientError::Unreachable {
                addr,
                reason: other.reason(),
            },
        })?;
        Ok(Client {
            addr,
            connection,
            timeout,
        })
    }

    async fn request(&mut self, request: ClientRequest) -> Result<ClientResponse, ClientError> {
        let (addr, after) = (self.addr, self.timeout);
        tokio::time::timeout(after, self.exchange(request))
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

    /// Declares a worker failed.
    pub async fn fail_worker(&mut self, worker: WorkerId) -> Result<Generation, ClientError> {
        self.done(ClientRequest::FailWorker { worker }).await
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
}
