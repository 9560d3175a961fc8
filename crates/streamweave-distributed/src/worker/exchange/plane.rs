//! The worker's data plane: its listener, its links to other workers, and the inboxes of its
//! partitions' receiver tasks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Link;
use crate::dataflow::plan::Batch;
use crate::dataflow::DataflowError;
use crate::network::{Connection, ConnectionPool, Transport};
use crate::protocol::{accept_handshake, Hello, PeerMessage, Role};
use crate::types::WorkerId;

/// How long a worker waits for a peer's connection when the peer is the one to dial.
const PEER_WAIT: Duration = Duration::from_secs(15);

/// What a receiver task gets.
pub(crate) enum Inbound {
    /// Records from source partition `from`, and how to hand the credit back once applied.
    Batch {
        batch: Batch,
        credit: CreditReturn,
        from: usize,
    },
    /// Source partition `from` has sent everything before checkpoint barrier `id`.
    Barrier { id: u64, from: usize },
    /// Source partition `from` has sent everything.
    Eos { from: usize },
    /// The attempt is over.
    Cancel,
}

/// Where a consumed batch's credit goes.
pub(crate) enum CreditReturn {
    Local(Arc<Semaphore>),
    Remote {
        link: Arc<Link>,
        attempt: u64,
        partition: usize,
    },
}

impl CreditReturn {
    pub(crate) fn release(self) {
        match self {
            CreditReturn::Local(semaphore) => semaphore.add_permits(1),
            CreditReturn::Remote {
                link,
                attempt,
                partition,
            } => {
                link.send(PeerMessage::Credit {
                    attempt,
                    partition: partition as u32,
                    credits: 1,
                });
            }
        }
    }
}

struct Inbox {
    tx: mpsc::UnboundedSender<Inbound>,
    rx: Option<mpsc::UnboundedReceiver<Inbound>>,
}

struct Inner {
    me: WorkerId,
    cluster: String,
    transport: Transport,
    max_frame_size: usize,
    /// Links by peer. Small maps touched per connection or attempt, never across an await.
    links: Mutex<HashMap<WorkerId, Arc<Link>>>,
    link_added: Notify,
    inboxes: Mutex<HashMap<(u64, usize), Inbox>>,
    /// Messages of attempts below this are dropped.
    floor: AtomicU64,
    /// Cancelled when the worker stops: the listener and every link close.
    shutdown: CancellationToken,
}

/// See the module documentation. Cloning shares it.
#[derive(Clone)]
pub(crate) struct DataPlane {
    inner: Arc<Inner>,
}

impl DataPlane {
    /// Serves data connections on `listener`.
    pub(crate) fn start(
        listener: TcpListener,
        me: WorkerId,
        cluster: String,
        max_frame_size: usize,
    ) -> DataPlane {
        let inner = Arc::new(Inner {
            me,
            cluster,
            transport: Transport::new(ConnectionPool::new().with_timeout(Duration::from_secs(5)))
                .with_max_frame_size(max_frame_size),
            max_frame_size,
            links: Mutex::new(HashMap::new()),
            link_added: Notify::new(),
            inboxes: Mutex::new(HashMap::new()),
            floor: AtomicU64::new(0),
            shutdown: CancellationToken::new(),
        });
        let plane = DataPlane { inner };
        let accepting = plane.clone();
        tokio::spawn(async move { accepting.accept_loop(listener).await });
        plane
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let accepted = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (mut stream, peer_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "data plane accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let plane = self.clone();
            tokio::spawn(async move {
                let hello = tokio::time::timeout(
                    Duration::from_secs(5),
                    accept_handshake(&mut stream, &plane.inner.cluster),
                )
                .await;
                match hello {
                    Ok(Ok(Hello { role: Role::Peer, .. })) => {}
                    Ok(Ok(other)) => {
                        tracing::warn!(%peer_addr, role = ?other.role, "closing data connection: not a worker");
                        return;
                    }
                    Ok(Err(crate::protocol::ProtocolError::Closed)) => {
                        // A peer that gave up dialing (its attempt was cancelled).
                        tracing::debug!(%peer_addr, "data connection closed during the handshake");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(%peer_addr, error = %e, "closing data connection: handshake failed");
                        return;
                    }
                    Err(_) => return,
                }
                let mut connection =
                    Connection::<PeerMessage, PeerMessage>::new(stream, plane.inner.max_frame_size);
                match tokio::time::timeout(Duration::from_secs(5), connection.recv()).await {
                    Ok(Ok(Some(PeerMessage::Hello { worker }))) => {
                        plane.add_link(worker, connection);
                    }
                    _ => tracing::warn!(%peer_addr, "closing data connection: no hello"),
                }
            });
        }
    }

    fn add_link(&self, peer: WorkerId, connection: Connection<PeerMessage, PeerMessage>) -> Arc<Link> {
        let plane = self.clone();
        let link = Link::spawn(peer.clone(), connection, move |link, message| {
            plane.dispatch(link, message)
        });
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
            let mut connection: Connection<PeerMessage, PeerMessage> =
                self.inner.transport.connect(addr, &hello).await.map_err(|e| {
                    DataflowError::Exchange(format!("cannot reach worker {peer} at {address}: {e}"))
                })?;
            connection
                .send(PeerMessage::Hello {
                    worker: self.inner.me.clone(),
                })
                .await
                .map_err(|e| DataflowError::Exchange(format!("worker {peer}: {e}")))?;
            return Ok(self.add_link(peer.clone(), connection));
        }
        let deadline = tokio::time::Instant::now() + PEER_WAIT;
        loop {
            let added = self.inner.link_added.notified();
            if let Some(link) = self.live_link(peer) {
                return Ok(link);
            }
            if tokio::time::timeout_at(deadline, added).await.is_err() {
                return Err(DataflowError::Exchange(format!(
                    "worker {peer} did not connect within {PEER_WAIT:?}"
                )));
            }
        }
    }

    fn dispatch(&self, link: &Arc<Link>, message: PeerMessage) {
        match message {
            PeerMessage::Batch {
                attempt,
                partition,
                from,
                records,
            } => {
                let credit = CreditReturn::Remote {
                    link: Arc::clone(link),
                    attempt,
                    partition: partition as usize,
                };
                self.deliver(
                    attempt,
                    partition as usize,
                    Inbound::Batch {
                        batch: Batch::Encoded(records),
                        credit,
                        from: from as usize,
                    },
                );
            }
            PeerMessage::Barrier {
                attempt,
                id,
                partition,
                from,
            } => {
                self.deliver(
                    attempt,
                    partition as usize,
                    Inbound::Barrier {
                        id,
                        from: from as usize,
                    },
                );
            }
            PeerMessage::EndOfStream {
                attempt,
                partition,
                from,
            } => {
                self.deliver(attempt, partition as usize, Inbound::Eos { from: from as usize });
            }
            PeerMessage::Credit {
                attempt,
                partition,
                credits,
            } => link.add_credits(attempt, partition as usize, credits),
            PeerMessage::Hello { .. } => tracing::debug!(peer = %link.peer, "ignoring a second hello"),
        }
    }

    fn deliver(&self, attempt: u64, partition: usize, inbound: Inbound) {
        if attempt < self.inner.floor.load(Ordering::Acquire) {
            return;
        }
        // Credits bound what can queue here; a closed inbox means the attempt ended.
        let _ = self.inbox(attempt, partition).send(inbound);
    }

    /// The sending end of a partition's inbox for an attempt (created on first use, so records
    /// that arrive before the attempt starts here wait for it).
    pub(crate) fn inbox(&self, attempt: u64, partition: usize) -> mpsc::UnboundedSender<Inbound> {
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes
            .entry((attempt, partition))
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                Inbox { tx, rx: Some(rx) }
            })
            .tx
            .clone()
    }

    /// The receiving end of a partition's inbox, for its receiver task (once).
    pub(crate) fn take_inbox(
        &self,
        attempt: u64,
        partition: usize,
    ) -> Option<mpsc::UnboundedReceiver<Inbound>> {
        self.inbox(attempt, partition);
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.get_mut(&(attempt, partition)).and_then(|i| i.rx.take())
    }

    /// Partition `partition` of `attempt` left this worker and its receiver is gone: forget its
    /// inbox, so that if the partition comes back within the attempt, what is sent to it then
    /// waits in a new one.
    pub(crate) fn retire_inbox(&self, attempt: u64, partition: usize) {
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        if inboxes.get(&(attempt, partition)).is_some_and(|i| i.rx.is_none()) {
            inboxes.remove(&(attempt, partition));
        }
    }

    /// Tells the receiver tasks of every partition of `attempt` here that it is over.
    pub(crate) fn cancel_attempt(&self, attempt: u64) {
        let inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for ((a, _), inbox) in inboxes.iter() {
            if *a == attempt {
                let _ = inbox.tx.send(Inbound::Cancel);
            }
        }
    }

    /// From now on, drop everything of attempts older than `attempt`.
    pub(crate) fn set_floor(&self, attempt: u64) {
        self.inner.floor.fetch_max(attempt, Ordering::AcqRel);
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.retain(|(a, _), _| *a >= attempt);
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
