//! What a standby coordinator serves on its address while another leads: every worker's
//! registration and every admin request is answered with [`NotLeader`](CoordinatorMessage::NotLeader)
//! naming the leader, so workers and clients go there. Nothing else: a standby holds no state.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;

use super::leadership::Role;
use crate::network::Connection;
use crate::protocol::{ClientResponse, CoordinatorMessage, Role as PeerRole, WorkerMessage};
use crate::security::Security;

/// How long a connection to a standby may stay open (it answers one thing and is done).
const STANDBY_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
const STANDBY_CONNECTIONS: usize = 256;

/// Serves `listener` as a standby until `stop` is cancelled, naming the leader `roles` knows.
/// Peers must pass the same TLS and secret checks as with the leader.
pub async fn serve_standby(
    listener: TcpListener,
    cluster: Arc<str>,
    max_frame_size: usize,
    security: Security,
    roles: watch::Receiver<Role>,
    stop: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(STANDBY_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, peer)) = accepted else { continue };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "standby: too many connections, closing");
            continue;
        };
        let leader = match &*roles.borrow() {
            Role::Standby { leader } => leader.clone(),
            Role::Leader { .. } => None,
        };
        let cluster = cluster.clone();
        let security = security.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let served = serve(stream, peer, &cluster, max_frame_size, &security, leader);
            let _ = tokio::time::timeout(STANDBY_CONNECTION_TIMEOUT, served).await;
        });
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    cluster: &str,
    max_frame_size: usize,
    security: &Security,
    leader: Option<String>,
) {
    let (stream, hello) = match crate::network::accept(stream, security, cluster).await {
        Ok(accepted) => (accepted.stream, accepted.hello),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "standby: handshake failed");
            return;
        }
    };
    match hello.role {
        PeerRole::Worker => {
            let mut connection: Connection<CoordinatorMessage, WorkerMessage> =
                Connection::from_stream(stream, max_frame_size);
            if let Ok(Some(WorkerMessage::Register(_))) = connection.recv().await {
                let _ = connection.send(CoordinatorMessage::NotLeader { leader }).await;
            }
        }
        PeerRole::Client => {
            let mut connection: Connection<ClientResponse, crate::protocol::ClientRequest> =
                Connection::from_stream(stream, max_frame_size);
            while let Ok(Some(_request)) = connection.recv().await {
                let answer = ClientResponse::NotLeader {
                    leader: leader.clone(),
                };
                if connection.send(answer).await.is_err() {
                    return;
                }
            }
        }
        PeerRole::Peer => {}
    }
}
