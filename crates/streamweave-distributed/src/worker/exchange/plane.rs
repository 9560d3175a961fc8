//! The worker's data plane: its listener, its links to other workers, and the inboxes of its
//! partitions' receiver tasks.
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
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Verdict};
use super::{inbox_capacity, InboxReceiver, InboxSender, Link};
use crate::dataflow::plan::Batch;
use crate::dataflow::DataflowError;
use crate::network::{Connection, ConnectionPool, ConnectionReader, Transport};
use crate::protocol::{accept_handshake, Hello, PartitionOwner, PeerMessage, Role};
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
            } => link.return_credit(attempt, partition),
        }
    }
}

struct Inbox {
    tx: InboxSender,
    rx: Option<InboxReceiver>,
}

struct Inner {
    me: WorkerId,
    cluster: String,
    transport: Transport,
    max_frame_size: usize,
    /// Links by peer. Small maps touched per connection or attempt, never across an await.
    links: Mutex<HashMap<WorkerId, Arc<Link>>>,
    link_added: Notify,
    /// Locked after `admission` where both are.
    inboxes: Mutex<HashMap<(u64, usize), Inbox>>,
    /// What the network may deliver; locked once per message, never across an await.
    admission: Mutex<Admission>,
    /// Notified whenever `admission` changes, for the messages held.
    admission_changed: Notify,
    /// Bytes of held messages.
    held: Arc<Semaphore>,
    /// Slots for accepted connections.
    connections: Arc<Semaphore>,
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
            admission: Mutex::new(Admission::default()),
            admission_changed: Notify::new(),
            held: Arc::new(Semaphore::new(HELD_BYTES)),
            connections: Arc::new(Semaphore::new(MAX_DATA_CONNECTIONS)),
            shutdown: CancellationToken::new(),
        });
        let plane = DataPlane { inner };
        let accepting = plane.clone();
        tokio::spawn(async move { accepting.accept_loop(listener).await });
        plane
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
                let introduced = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    match accept_handshake(&mut stream, &plane.inner.cluster).await {
                        Ok(Hello { role: Role::Peer, .. }) => {}
                        Ok(other) => return Err(format!("not a worker but {:?}", other.role)),
                        Err(crate::protocol::ProtocolError::Closed) => {
                            // A peer that gave up dialing (its attempt was cancelled).
                            return Err("closed during the handshake".to_string());
                        }
                        Err(e) => return Err(format!("handshake failed: {e}")),
                    }
                    let mut connection = Connection::<PeerMessage, PeerMessage>::with_permit(
                        stream,
                        plane.inner.max_frame_size,
                        Some(slot),
                    );
                    match connection.recv().await {
                        Ok(Some(PeerMessage::Hello { worker })) => Ok((worker, connection)),
                        _ => Err("no hello".to_string()),
                    }
                })
                .await;
                match introduced {
                    Ok(Ok((worker, connection))) => {
                        plane.add_link(worker, connection);
                    }
                    Ok(Err(reason)) => tracing::debug!(%peer_addr, %reason, "closing data connection"),
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
        link.closed.cancel();
    }

    /// One message from `link`'s peer; an error closes the connection.
    async fn on_message(&self, link: &Arc<Link>, message: PeerMessage) -> Result<(), String> {
        let (attempt, partition, from, bytes, inbound) = match message {
            PeerMessage::Credit {
                attempt,
                partition,
                credits,
            } => return link.add_credits(attempt, partition as usize, credits),
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
                    attempt,
                    partition,
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
        if matches!(inbound, Inbound::Batch { .. }) && !link.take_credit(attempt, partition) {
            return Err(format!(
                "a batch for partition {partition} of attempt {attempt} beyond the credits granted"
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

    /// Attempt `attempt` starts here, `owners[p]` owning partition `p`: from now on the network
    /// delivers records of this attempt, from its owners, for the partitions of this worker;
    /// older attempts' are dropped.
    pub(crate) fn begin_attempt(&self, attempt: u64, owners: &[PartitionOwner]) {
        self.change_admission(|a, me| a.begin(me, attempt, owners));
        self.set_floor(attempt);
        let links = self.inner.links.lock().unwrap_or_else(|e| e.into_inner());
        for link in links.values() {
            link.forget_before(attempt);
        }
    }

    /// Partition `partition` moves here inside `attempt` (at a checkpoint barrier): what is
    /// routed to it from now on is taken.
    pub(crate) fn own(&self, attempt: u64, partition: usize) {
        self.change_admission(|a, _| a.own(attempt, partition));
    }

    /// Partition `partition` left this worker inside `attempt`.
    pub(crate) fn disown(&self, attempt: u64, partition: usize) {
        self.change_admission(|a, _| a.disown(attempt, partition));
    }

    /// `worker` gains partitions inside `attempt` (it joined the attempt at a barrier).
    pub(crate) fn add_member(&self, attempt: u64, worker: &WorkerId) {
        self.change_admission(|a, _| a.add_member(attempt, worker));
    }

    fn change_admission(&self, change: impl FnOnce(&mut Admission, &WorkerId)) {
        change(
            &mut self.inner.admission.lock().unwrap_or_else(|e| e.into_inner()),
            &self.inner.me,
        );
        self.inner.admission_changed.notify_waiters();
    }

    /// The sending end of a partition's inbox for an attempt, created on first use, with the
    /// capacity of an attempt of `num_partitions` partitions. The caller holds `admission`.
    fn inbox_of(&self, attempt: u64, partition: usize, num_partitions: usize) -> InboxSender {
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes
            .entry((attempt, partition))
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(inbox_capacity(num_partitions.max(partition + 1)));
                Inbox { tx, rx: Some(rx) }
            })
            .tx
            .clone()
    }

    /// The sending end of a partition's inbox for an attempt of this worker (created on first
    /// use, so records that arrive before its receiver starts wait for it).
    pub(crate) fn inbox(&self, attempt: u64, partition: usize) -> InboxSender {
        let admission = self.inner.admission.lock().unwrap_or_else(|e| e.into_inner());
        let (current, num_partitions) = admission.current();
        let num_partitions = if current == attempt { num_partitions } else { 0 };
        self.inbox_of(attempt, partition, num_partitions)
    }

    /// The receiving end of a partition's inbox, for its receiver task (once).
    pub(crate) fn take_inbox(&self, attempt: u64, partition: usize) -> Option<InboxReceiver> {
        self.inbox(attempt, partition);
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.get_mut(&(attempt, partition)).and_then(|i| i.rx.take())
    }

    /// Partition `partition` of `attempt` left this worker and its receiver is gone: the
    /// network delivers nothing more for it, and its inbox is forgotten, so that if the
    /// partition comes back within the attempt, what is sent to it then waits in a new one.
    pub(crate) fn retire_inbox(&self, attempt: u64, partition: usize) {
        self.disown(attempt, partition);
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        if inboxes.get(&(attempt, partition)).is_some_and(|i| i.rx.is_none()) {
            inboxes.remove(&(attempt, partition));
        }
    }

    /// Tells the receiver tasks of every partition of `attempt` here that it is over; what
    /// still arrives for it is dropped.
    pub(crate) fn cancel_attempt(&self, attempt: u64) {
        self.change_admission(|a, _| a.stop(attempt));
        let inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        for ((a, _), inbox) in inboxes.iter() {
            if *a == attempt {
                // A full inbox has a receiver behind: it sees the attempt's cancellation
                // after its next message.
                let _ = inbox.tx.try_send(Inbound::Cancel);
            }
        }
    }

    /// From now on, drop everything of attempts older than `attempt`.
    pub(crate) fn set_floor(&self, attempt: u64) {
        let mut admission = self.inner.admission.lock().unwrap_or_else(|e| e.into_inner());
        admission.raise_floor(attempt);
        let floor = admission.floor();
        let mut inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        inboxes.retain(|(a, _), _| *a >= floor);
        drop(inboxes);
        drop(admission);
        self.inner.admission_changed.notify_waiters();
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

    /// Inboxes that exist, for tests.
    #[cfg(test)]
    fn inbox_keys(&self) -> Vec<(u64, usize)> {
        let inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = inboxes.keys().copied().collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::exchange::CREDITS_PER_CHANNEL;

    fn owner(worker: &str) -> PartitionOwner {
        PartitionOwner {
            worker: WorkerId::new(worker),
            address: "127.0.0.1:1".to_string(),
        }
    }

    /// w1's data plane in attempt 5: it owns partitions 0 and 2 of 4, w2 owns 1 and 3.
    async fn w1_in_attempt_5() -> (DataPlane, std::net::SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let plane = DataPlane::start(listener, WorkerId::new("w1"), "test".into(), 1 << 20);
        plane.begin_attempt(5, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
        (plane, addr)
    }

    /// A data connection to `addr` introduced as worker `id`.
    async fn peer(addr: std::net::SocketAddr, id: &str) -> Connection<PeerMessage, PeerMessage> {
        let hello = Hello {
            role: Role::Peer,
            cluster: "test".into(),
        };
        let mut connection = Transport::default().connect(addr, &hello).await.unwrap();
        connection
            .send(PeerMessage::Hello {
                worker: WorkerId::new(id),
            })
            .await
            .unwrap();
        connection
    }

    fn batch(attempt: u64, partition: u32) -> PeerMessage {
        PeerMessage::Batch {
            attempt,
            partition,
            from: 1,
            records: vec![0; 16],
        }
    }

    const LONG: Duration = Duration::from_secs(5);
    const SHORT: Duration = Duration::from_millis(300);

    /// Whether the plane closes the connection `within` (it sends nothing else).
    async fn closed(connection: &mut Connection<PeerMessage, PeerMessage>, within: Duration) -> bool {
        match tokio::time::timeout(within, connection.recv()).await {
            Ok(Ok(None) | Err(_)) => true,
            Ok(Ok(Some(other))) => panic!("unexpected {other:?}"),
            Err(_) => false,
        }
    }

    /// Polls `condition` until it holds or a deadline passes.
    async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    }

    #[tokio::test]
    async fn inboxes_exist_only_for_this_attempts_partitions_of_this_worker_from_its_members() {
        let (plane, addr) = w1_in_attempt_5().await;
        // A partition that does not exist, even from a member (whose next connection replaces
        // this one).
        let mut out_of_range = peer(addr, "w2").await;
        out_of_range.send(batch(5, 4)).await.unwrap();
        assert!(
            closed(&mut out_of_range, LONG).await,
            "a partition that does not exist"
        );
        // A member's records for one of our partitions make its inbox.
        let mut w2 = peer(addr, "w2").await;
        w2.send(batch(5, 0)).await.unwrap();
        assert!(eventually(|| plane.inbox_keys() == [(5, 0)]).await);
        // An older attempt is dropped; another worker's partition and a later attempt are
        // held: none makes an inbox.
        w2.send(batch(4, 2)).await.unwrap();
        w2.send(batch(6, 2)).await.unwrap();
        let mut stranger = peer(addr, "w9").await;
        stranger.send(batch(5, 2)).await.unwrap();
        assert!(
            closed(&mut stranger, LONG).await,
            "a non-member's records close its connection"
        );
        let mut w3 = peer(addr, "w3").await;
        w3.send(batch(7, 2)).await.unwrap();
        assert!(!closed(&mut w3, SHORT).await, "a later attempt is held");
        assert_eq!(plane.inbox_keys(), [(5, 0)]);
        // Attempt 6 starts here: w2's held batch goes in, attempt 5's inbox is gone.
        plane.begin_attempt(6, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
        assert!(eventually(|| plane.inbox_keys() == [(6, 2)]).await);
        // w3 owns nothing in attempt 7 either: its held batch closes it, without an inbox.
        plane.begin_attempt(7, &[owner("w1"), owner("w2"), owner("w1"), owner("w2")]);
        assert!(closed(&mut w3, LONG).await);
        assert!(plane.inbox_keys().is_empty());
    }

    #[tokio::test]
    async fn a_partition_moving_here_takes_the_records_held_for_it() {
        let (plane, addr) = w1_in_attempt_5().await;
        let mut w2 = peer(addr, "w2").await;
        w2.send(batch(5, 1)).await.unwrap();
        assert!(!closed(&mut w2, SHORT).await, "held, not refused");
        assert!(plane.inbox_keys().is_empty());
        plane.own(5, 1);
        assert!(eventually(|| plane.inbox_keys() == [(5, 1)]).await);
        let mut inbox = plane.take_inbox(5, 1).unwrap();
        assert!(matches!(inbox.recv().await, Some(Inbound::Batch { from: 1, .. })));
    }

    #[tokio::test]
    async fn a_sender_beyond_its_credits_is_disconnected() {
        let (plane, addr) = w1_in_attempt_5().await;
        let mut w2 = peer(addr, "w2").await;
        for _ in 0..CREDITS_PER_CHANNEL {
            w2.send(batch(5, 0)).await.unwrap();
        }
        let mut inbox = plane.take_inbox(5, 0).unwrap();
        // Applying one returns its credit: one more is within the grant.
        match inbox.recv().await {
            Some(Inbound::Batch { credit, .. }) => credit.release(),
            _ => panic!("expected a batch"),
        }
        match tokio::time::timeout(Duration::from_secs(5), w2.recv()).await {
            Ok(Ok(Some(PeerMessage::Credit {
                attempt: 5,
                partition: 0,
                credits: 1,
            }))) => {}
            other => panic!("expected the credit back, got {other:?}"),
        }
        w2.send(batch(5, 0)).await.unwrap();
        assert!(!closed(&mut w2, SHORT).await, "within its credits");
        w2.send(batch(5, 0)).await.unwrap();
        assert!(closed(&mut w2, LONG).await, "one batch beyond its credits");
    }

    /// A raw data connection introduced as `id`, for writing partial frames.
    async fn raw_peer(addr: std::net::SocketAddr, id: &str) -> tokio::net::TcpStream {
        use tokio_util::codec::Encoder;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let hello = Hello {
            role: Role::Peer,
            cluster: "test".into(),
        };
        crate::protocol::dial_handshake(&mut stream, &hello)
            .await
            .unwrap();
        let mut frame = bytes::BytesMut::new();
        crate::protocol::MessageCodec::<PeerMessage, ()>::new(1 << 20)
            .encode(
                PeerMessage::Hello {
                    worker: WorkerId::new(id),
                },
                &mut frame,
            )
            .unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stream, &frame)
            .await
            .unwrap();
        stream
    }

    /// Whether the plane closed `stream` (reads end) within `within`.
    async fn raw_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, tokio::io::AsyncReadExt::read(stream, &mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn a_peer_stalled_in_the_middle_of_a_frame_is_closed_an_idle_one_is_not() {
        let (_plane, addr) = w1_in_attempt_5().await;
        let mut idle = raw_peer(addr, "w2").await;
        let mut stalled = raw_peer(addr, "w3").await;
        // A header announcing 64 KiB, ten bytes of it, then nothing.
        let mut partial = (64u32 * 1024).to_be_bytes().to_vec();
        partial.extend_from_slice(&[7; 10]);
        tokio::io::AsyncWriteExt::write_all(&mut stalled, &partial)
            .await
            .unwrap();
        assert!(raw_closed(&mut stalled, LONG).await, "stalled mid-frame");
        // By now the idle link has been idle for several stall periods.
        assert!(
            !raw_closed(&mut idle, STALLED_FRAME * 3).await,
            "idle between frames"
        );
    }

    #[tokio::test]
    async fn credits_never_granted_close_the_connection() {
        let (_plane, addr) = w1_in_attempt_5().await;
        let mut w2 = peer(addr, "w2").await;
        w2.send(PeerMessage::Credit {
            attempt: 5,
            partition: 1,
            credits: u32::MAX,
        })
        .await
        .unwrap();
        assert!(closed(&mut w2, LONG).await);
    }
}
