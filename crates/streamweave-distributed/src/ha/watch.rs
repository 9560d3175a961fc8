//! Watching the leader from a standby, so that a leader whose process died is replaced at once
//! rather than when its lease lapses.
//!
//! ```text
//!   Role::Standby { leader: Some(addr) }  (from the elector)
//!        |
//!        v
//!   connect to addr as a client and hold the connection, idle
//!        | closed (the leader died, or closed an idle client)
//!        v
//!   connect again: refused -> Event::LeaderGone(addr) to the elector (which revokes its lease)
//!                  accepted -> hold it again;  anything else (timeout, no route) -> retry later
//! ```
//!
//! Only a refused connection counts: the leader's host answered that nothing listens on the
//! leader's port. A partition or a slow host times out instead and leaves the decision to the
//! lease, as before. And only after a connection to that leader was held: a coordinator that
//! has just won an election refuses connections for a moment while it starts (its standby
//! listener closes before the coordinator binds), which is not a death.

use std::io::ErrorKind;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::leadership::Role;
use crate::network::{ConnectionPool, NetworkError, Transport};
use crate::protocol::{ClientRequest, ClientResponse, Hello, Role as PeerRole};
use crate::security::Security;

/// How long a connection attempt to the leader may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The pause before probing again after an attempt that told nothing.
const RETRY: Duration = Duration::from_millis(100);

/// What one look at the leader found.
#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// The connection was refused: nothing listens at the leader's address.
    Gone,
    /// A connection was held and then closed: look again at once.
    Closed,
    /// Nothing certain (a timeout, an unresolvable name, a refused handshake).
    Unknown,
}

/// Watches the leader `roles` names while this coordinator stands by, and sends its address
/// on `gone` when its port refuses connections. Ends when either channel closes.
pub(super) async fn watch_leader(
    cluster: String,
    security: Security,
    mut roles: watch::Receiver<Role>,
    gone: mpsc::Sender<String>,
) {
    // The leader we held a connection to, if any: only its death is reported.
    let mut held: Option<String> = None;
    loop {
        let leader = match &*roles.borrow_and_update() {
            Role::Standby { leader: Some(leader) } => Some(leader.clone()),
            _ => None,
        };
        if held != leader {
            held = None;
        }
        let Some(leader) = leader else {
            if roles.changed().await.is_err() {
                return;
            }
            continue;
        };
        let probe = tokio::select! {
            probe = probe(&leader, &cluster, &security) => probe,
            changed = roles.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
        };
        match probe {
            Probe::Closed => {
                held = Some(leader);
                continue;
            }
            Probe::Gone if held.as_deref() == Some(leader.as_str()) => {
                tracing::info!(%leader, "the leader's port refuses connections: its process is gone");
                if gone.send(leader).await.is_err() {
                    return;
                }
            }
            Probe::Gone | Probe::Unknown => {}
        }
        // Until the role changes (the elector acted) or it is time to look again.
        tokio::select! {
            () = tokio::time::sleep(RETRY) => {}
            changed = roles.changed() => if changed.is_err() { return },
        }
    }
}

/// Connects to `leader` as a client and holds the connection until it closes.
async fn probe(leader: &str, cluster: &str, security: &Security) -> Probe {
    let Ok(Some(addr)) = tokio::net::lookup_host(leader).await.map(|mut a| a.next()) else {
        return Probe::Unknown;
    };
    let transport = Transport::new(
        ConnectionPool::new()
            .with_max_connections(1)
            .with_timeout(CONNECT_TIMEOUT),
    )
    .with_security(security.clone());
    let hello = Hello {
        role: PeerRole::Client,
        cluster: cluster.to_string(),
    };
    match transport
        .connect::<ClientRequest, ClientResponse>(addr, &hello)
        .await
    {
        Ok(mut connection) => {
            // A coordinator sends nothing to a client that asks nothing: this returns when the
            // connection closes.
            let _ = connection.recv().await;
            Probe::Closed
        }
        Err(NetworkError::Connect { source, .. }) if source.kind() == ErrorKind::ConnectionRefused => {
            Probe::Gone
        }
        Err(_) => Probe::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_port_nobody_listens_on_is_gone_and_a_listener_that_closes_is_closed() {
        // A port that was just free: nothing listens there now.
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = free.local_addr().expect("addr").to_string();
        drop(free);
        assert_eq!(probe(&addr, "c", &Security::none()).await, Probe::Gone);
        assert_eq!(
            probe("no-such-host.invalid:7000", "c", &Security::none()).await,
            Probe::Unknown
        );
    }

    #[tokio::test]
    async fn a_leader_never_reached_is_not_reported_gone() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = free.local_addr().expect("addr").to_string();
        drop(free);
        let (_roles_tx, roles) = watch::channel(Role::Standby { leader: Some(addr) });
        let (gone_tx, mut gone) = mpsc::channel(4);
        let watcher = tokio::spawn(watch_leader("c".into(), Security::none(), roles, gone_tx));
        assert!(
            tokio::time::timeout(Duration::from_millis(500), gone.recv())
                .await
                .is_err(),
            "refused before any connection was held: a leader still starting, not a dead one"
        );
        watcher.abort();
    }

    #[tokio::test]
    async fn the_watcher_reports_a_leader_that_is_gone_and_nothing_while_it_lives() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let alive = listener.local_addr().expect("addr").to_string();
        let (roles_tx, roles) = watch::channel(Role::Standby {
            leader: Some(alive.clone()),
        });
        let (gone_tx, mut gone) = mpsc::channel(4);
        let watcher = tokio::spawn(watch_leader("c".into(), Security::none(), roles, gone_tx));
        // A live leader: the watcher connects and holds the connection.
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the watcher connects to the leader")
            .expect("accept");
        crate::protocol::accept_handshake(&mut stream, "c")
            .await
            .expect("a client handshake");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), gone.recv())
                .await
                .is_err(),
            "a listening leader is not reported"
        );
        // The leader's process dies: its connections close and its listener is gone.
        drop(listener);
        drop(stream);
        let reported = tokio::time::timeout(Duration::from_secs(5), gone.recv()).await;
        assert_eq!(reported.ok().flatten(), Some(alive));
        roles_tx.send_replace(Role::Standby { leader: None });
        drop(roles_tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
    }
}
