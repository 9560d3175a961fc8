//! The worker's data plane: its listener, its links to other workers, and what their read
//! loops deliver to the inboxes of its partitions' receiver tasks (the inboxes and the
//! admission changes: `inboxes.rs`).
//!
//! ```text
//! listener --(connection slot, 5 s for handshake + Hello)--> Link + read loop
//! read loop: Credit  -> link.add_credits (never beyond the grant, else close)
//!            Batch / Barrier / Eos -> Admission::judge
//!               Accept  -> (Batch: link.take_credit, else close) -> inbox(attempt, q).send
//!               Drop    -> nothing;   Hostile -> close
//!               Wait    -> hold this one message (a bounded byte budget), read nothing more
//!                          from the peer until the attempt or the move is known here, or
//!                          PEER_WAIT passes (close)
//! read loop ends, the link neither replaced nor the worker stopping
//!            -> PeerUnreachable{peer} to the coordinator (report_lost_peers)
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Verdict};
use super::inboxes::{CreditReturn, Inbound, Inboxes};
use super::{InboxSender, Link};
use crate::dataflow::plan::Batch;
use crate::dataflow::DataflowError;
use crate::network::{Connection, ConnectionPool, ConnectionReader, Transport};
use crate::protocol::{Hello, PeerMessage, Role, WorkerMessage};
use crate::security::Security;
use crate::types::WorkerId;

/// How long a worker waits for a peer's connection when the peer is the one to dial, and how
/// long a message for an attempt or a partition this worker does not know yet is held.
const PEER_WAIT: Duration = Duration::from_secs(15);
/// How long a new data connection may take for the handshake and its Hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a started frame may go without a byte before its connection closes (checked twice:
/// a stall is closed after one to two of these).
#[cfg(not(test))]
const STALLED_FRAME: Duration = Duration::from_secs(30);
#[cfg(test)]
const STALLED_FRAME: Duration = Duration::from_millis(200);
/// Data connections accepted at once: a cluster of 128 workers twice over.
pub(crate) const MAX_DATA_CONNECTIONS: usize = 256;
/// Bytes of messages held across all connections while they wait to be admitted: one message
/// per connection, rarely more than one connection at a time (a peer that started an attempt
/// or a move a moment before this worker), usually a batch of some KiB.
const HELD_BYTES: usize = 16 * 1024 * 1024;

pub(super) struct Inner {
    pub(super) me: WorkerId,
    cluster: String,
    /// TLS and secrets for data connections, both ways.
    security: Security,
    transport: Transport,
    max_frame_size: usize,
    /// Links by peer. Small maps touched per connection or attempt, never across an await.
    pub(super) links: Mutex<HashMap<WorkerId, Arc<Link>>>,
    link_added: Notify,
    /// Locked after `admission` where both are.
    pub(super) inboxes: Mutex<Inboxes>,
    /// What the network may deliver; locked once per message, never across an await.
    pub(super) admission: Mutex<Admission>,
    /// Notified whenever `admission` changes, for the messages held.
    pub(super) admission_changed: Notify,
    /// Bytes of held messages.
    held: Arc<Semaphore>,
    /// Slots for accepted connections.
    connections: Arc<Semaphore>,
    /// Cancelled when the worker stops: the listener and every link close.
    shutdown: CancellationToken,
    /// Where a link that closes under us is reported ([`DataPlane::report_lost_peers`]).
    lost_peers: OnceLock<mpsc::UnboundedSender<WorkerMessage>>,
}

/// See the module documentation. Cloning shares it.
#[derive(Clone)]
pub(crate) struct DataPlane {
    pub(super) inner: Arc<Inner>,
}

impl DataPlane {
    /// Serves data connections on `listener`, without TLS or secret.
    #[cfg(test)]
    pub(crate) fn start(
        listener: TcpListener,
        me: WorkerId,
        cluster: String,
        max_frame_size: usize,
    ) -> DataPlane {
        Self::start_secured(listener, me, cluster, max_frame_size, Security::none())
    }

    /// Serves data connections on `listener` under `security` (which its dials use too).
    pub(crate) fn start_secured(
        listener: TcpListener,
        me: WorkerId,
        cluster: String,
        max_frame_size: usize,
        security: Security,
    ) -> DataPlane {
        let inner = Arc::new(Inner {
            me,
            cluster,
            transport: Transport::new(ConnectionPool::new().with_timeout(Duration::from_secs(5)))
                .with_max_frame_size(max_frame_size)
                .with_security(security.clone()),
            security,
            max_frame_size,
            links: Mutex::new(HashMap::new()),
            link_added: Notify::new(),
            inboxes: Mutex::new(HashMap::new()),
            admission: Mutex::new(Admission::default()),
            admission_changed: Notify::new(),
            held: Arc::new(Semaphore::new(HELD_BYTES)),
            connections: Arc::new(Semaphore::new(MAX_DATA_CONNECTIONS)),
            shutdown: CancellationToken::new(),
            lost_peers: OnceLock::new(),
        });
        let plane = DataPlane { inner };
        let accepting = plane.clone();
        tokio::spawn(async move { accepting.accept_loop(listener).await });
        plane
    }

    /// From now on, a link that closes while it is this plane's link to its peer (the peer
    /// closed it, the connection broke, or the peer misbehaved), not because a newer connection
    /// replaced it or the worker stops, is reported as [`WorkerMessage::PeerUnreachable`] on
    /// `to`. Senders notice a closed link only when they next send, which a rate-limited source
    /// may not do for a whole checkpoint interval; the coordinator hears it at once.
    pub(crate) fn report_lost_peers(&self, to: mpsc::UnboundedSender<WorkerMessage>) {
        let _ = self.inner.lost_peers.set(to);
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            // A connection is accepted only with a free slot; the slot goes with the
            // connection's writer and frees when it closes.
            let slot = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                slot = Arc::clone(&self.inner.connections).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (stream, peer_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "data plane accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let plane = self.clone();
            tokio::spawn(async move {
                let introduced = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    let inner = &plane.inner;
                    let accepted = match crate::network::accept(stream, &inner.security, &inner.cluster).await
                    {
                        Ok(accepted) if accepted.hello.role == Role::Peer => accepted,
                        Ok(other) => return Err(format!("not a worker but {:?}", other.hello.role)),
                        Err(crate::network::NetworkError::Protocol(
                            crate::protocol::ProtocolError::Closed,
                        )) => {
                            // A peer that gave up dialing (its attempt was cancelled).
                            return Err("closed during the handshake".to_string());
                        }
                        Err(e) => return Err(format!("handshake failed: {e}")),
                    };
                    let mut connection = Connection::<PeerMessage, PeerMessage>::with_permit(
                        accepted.stream,
                        inner.max_frame_size,
                        Some(slot),
                    );
                    match connection.recv().await {
                        Ok(Some(PeerMessage::Hello { worker })) => {
                            // With TLS the certificate must name the worker the peer claims to
                            // be, or it could replace another worker's link.
                            accepted
                                .credentials
                                .may_be_worker(&inner.security, worker.as_str())?;
                            Ok((worker, connection))
                        }
                        _ => Err("no hello".to_string()),
                    }
                })
                .await;
                match introduced {
                    Ok(Ok((worker, connection))) => {
                        plane.add_link(worker, connection);
                    }
                    Ok(Err(reason)) if reason.starts_with("closed") => {
                        tracing::debug!(%peer_addr, %reason, "closing data connection")
                    }
                    Ok(Err(reason)) => tracing::warn!(%peer_addr, %reason, "refusing data connection"),
                    Err(_) => tracing::debug!(
                        %peer_addr,
                        "closing data connection: no introduction within {HANDSHAKE_TIMEOUT:?}"
                    ),
                }
            });
        }
    }

    fn add_link(&self, peer: WorkerId, connection: Connection<PeerMessage, PeerMessage>) -> Arc<Link> {
        let (link, reader) = Link::spawn(peer.clone(), connection);
        let reading = self.clone();
        let read_link = Arc::clone(&link);
        tokio::spawn(async move { reading.read_loop(read_link, reader).await });
        let old = self
            .inner
            .links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, Arc::clone(&link));
        if let Some(old) = old {
            old.closed.cancel();
        }
        self.inner.link_added.notify_waiters();
        link
    }

    fn live_link(&self, peer: &WorkerId) -> Option<Arc<Link>> {
        let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        links.get(peer).filter(|l| !l.closed.is_cancelled()).cloned()
    }

    /// The link to `peer`: the worker with the lower id dials, the other waits for it.
    pub(crate) async fn connect(&self, peer: &WorkerId, address: &str) -> Result<Arc<Link>, DataflowError> {
        if let Some(link) = self.live_link(peer) {
            return Ok(link);
        }
        if self.inner.me < *peer {
            let addr = address.parse().map_err(|_| {
                DataflowError::Exchange(format!("worker {peer} has a bad data address {address:?}"))
            })?;
            let hello = Hello {
                role: Role::Peer,
                cluster: self.inner.cluster.clone(),
            };
            let mut connection: Connection<PeerMessage, PeerMessage> = self
                .inner
                .transport
                .connect(addr, &hello)
                .await
                .map_err(|e| DataflowError::PeerLost {
                    peer: peer.clone(),
                    reason: format!("cannot reach worker {peer} at {address}: {e}"),
                })?;
            connection
                .send(PeerMessage::Hello {
                    worker: self.inner.me.clone(),
                })
                .await
                .map_err(|e| DataflowError::PeerLost {
                    peer: peer.clone(),
                    reason: format!("worker {peer}: {e}"),
                })?;
            return Ok(self.add_link(peer.clone(), connection));
        }
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        loop {
            let added = self.inner.link_added.notified();
            if let Some(link) = self.live_link(peer) {
                return Ok(link);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Err(DataflowError::PeerLost {
                    peer: peer.clone(),
                    reason: format!("worker {peer} did not connect within {PEER_WAIT:?}"),
                });
            }
        }
    }

    /// Reads the link's messages until it closes or the peer misbehaves.
    async fn read_loop(self, link: Arc<Link>, mut reader: ConnectionReader<PeerMessage>) {
        // A link may be idle between frames for as long as an attempt lasts, but a frame that
        // has started must keep arriving: a peer that stops mid-frame holds a connection slot
        // and a buffer, so a partial frame that has not grown in STALLED_FRAME closes it.
        let mut partial_seen: Option<usize> = None;
        loop {
            let message = tokio::select! {
                _ = link.closed.cancelled() => break,
                message = reader.recv() => message,
                _ = tokio::time::sleep(STALLED_FRAME) => {
                    let partial = reader.partial_frame_len();
                    if partial > 0 && partial_seen == Some(partial) {
                        tracing::warn!(peer = %link.peer, bytes = partial, "closing data connection: stalled in the middle of a frame");
                        break;
                    }
                    partial_seen = Some(partial);
                    continue;
                }
            };
            partial_seen = None;
            match message {
                Ok(Some(message)) => {
                    if let Err(reason) = self.on_message(&link, message).await {
                        tracing::warn!(peer = %link.peer, %reason, "closing data connection");
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(peer = %link.peer, error = %e, "closing data connection");
                    break;
                }
            }
        }
        let current = {
            let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
            links.get(&link.peer).is_some_and(|l| Arc::ptr_eq(l, &link))
        };
        let replaced_or_stopping = !current || self.inner.shutdown.is_cancelled();
        link.closed.cancel();
        if !replaced_or_stopping {
            if let Some(to) = self.inner.lost_peers.get() {
                let _ = to.send(WorkerMessage::PeerUnreachable {
                    peer: link.peer.clone(),
                });
            }
        }
    }

    /// One message from `link`'s peer; an error closes the connection.
    async fn on_message(&self, link: &Arc<Link>, message: PeerMessage) -> Result<(), String> {
        let (attempt, partition, from, bytes, inbound) = match message {
            PeerMessage::Credit {
                attempt,
                partition,
                from,
                credits,
            } => return link.add_credits((attempt, partition as usize, from as usize), credits),
            PeerMessage::Hello { .. } => {
                tracing::debug!(peer = %link.peer, "ignoring a second hello");
                return Ok(());
            }
            PeerMessage::Batch {
                attempt,
                partition,
                from,
                records,
            } => {
                let (partition, from) = (partition as usize, from as usize);
                let bytes = records.len();
                let credit = CreditReturn::Remote {
                    link: Arc::clone(link),
                    channel: (attempt, partition, from),
                };
                let inbound = Inbound::Batch {
                    batch: Batch::Encoded(records),
                    credit,
                    from,
                };
                (attempt, partition, from, bytes, inbound)
            }
            PeerMessage::Barrier {
                attempt,
                id,
                partition,
                from,
            } => (
                attempt,
                partition as usize,
                from as usize,
                0,
                Inbound::Barrier {
                    id,
                    from: from as usize,
                },
            ),
            PeerMessage::EndOfStream {
                attempt,
                partition,
                from,
            } => (
                attempt,
                partition as usize,
                from as usize,
                0,
                Inbound::Eos { from: from as usize },
            ),
        };
        let Some(inbox) = self.admit(link, attempt, partition, from, bytes).await? else {
            return Ok(());
        };
        if matches!(inbound, Inbound::Batch { .. }) && !link.take_credit((attempt, partition, from)) {
            return Err(format!(
                "a batch for partition {partition} from {from} of attempt {attempt} beyond the credits granted"
            ));
        }
        // The inbox's capacity covers every credit and control message; a peer that fills it
        // anyway is read no further until the receiver catches up.
        tokio::select! {
            _ = inbox.send(inbound) => {}
            _ = link.closed.cancelled() => {}
        }
        Ok(())
    }

    /// The inbox a message of `attempt` for `partition` from source `from` goes to, once
    /// admitted; `None` to drop it; an error to close the connection. A message that may become
    /// admissible is held (within a byte budget shared by all connections) until it is, or
    /// until [`PEER_WAIT`] passes.
    async fn admit(
        &self,
        link: &Link,
        attempt: u64,
        partition: usize,
        from: usize,
        bytes: usize,
    ) -> Result<Option<InboxSender>, String> {
        let mut held = None;
        loop {
            let changed = self.inner.admission_changed.notified();
            let verdict = {
                let admission = self.inner.admission.lock().unwrap_or_else(|e| e.into_inner());
                let verdict = admission.judge(&link.peer, attempt, partition, from);
                if verdict == Verdict::Accept {
                    let (_, num_partitions) = admission.current();
                    return Ok(Some(self.inbox_of(attempt, partition, num_partitions)));
                }
                verdict
            };
            match verdict {
                Verdict::Drop => return Ok(None),
                Verdict::Hostile(reason) => return Err(reason),
                Verdict::Accept | Verdict::Wait => {
                    if held.is_none() {
                        let cost = u32::try_from(bytes.saturating_add(64)).unwrap_or(u32::MAX);
                        let permit = Arc::clone(&self.inner.held)
                            .try_acquire_many_owned(cost)
                            .map_err(|_| {
                                format!(
                                    "too many bytes held for attempts and partitions not known here (attempt {attempt}, partition {partition})"
                                )
                            })?;
                        held = Some((permit, tokio::time::Instant::now() + PEER_WAIT));
                    }
                    let deadline = held.as_ref().map_or_else(tokio::time::Instant::now, |(_, d)| *d);
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(deadline) => {
                            return Err(format!(
                                "partition {partition} of attempt {attempt} is not this worker's within {PEER_WAIT:?}"
                            ));
                        }
                        _ = link.closed.cancelled() => return Ok(None),
                    }
                }
            }
        }
    }

    /// Closes the listener and every link.
    pub(crate) fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        for link in links.values() {
            link.closed.cancel();
        }
    }

    /// This worker's id.
    pub(crate) fn me(&self) -> &WorkerId {
        &self.inner.me
    }
}

#[cfg(test)]
#[path = "plane_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "plane_tls_tests.rs"]
mod tls_tests;
