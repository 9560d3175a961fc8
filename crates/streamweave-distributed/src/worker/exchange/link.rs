//! One data connection to another worker: a writer task draining an outgoing queue (batched
//! writes, one flush per burst), a reader task dispatching what arrives, and the credit
//! counters of the partitions this worker sends to over it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::CREDITS_PER_CHANNEL;
use crate::network::Connection;
use crate::protocol::PeerMessage;
use crate::types::WorkerId;

/// A live connection to a peer worker.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: WorkerId,
    out: mpsc::UnboundedSender<PeerMessage>,
    /// Cancelled when the connection ends: senders waiting for credit give up.
    pub(crate) closed: CancellationToken,
    /// Credits for sending to (attempt, partition) over this link. A small map touched once per
    /// batch and never held across an await, so a plain mutex is right.
    credits: Mutex<HashMap<(u64, usize), Arc<Semaphore>>>,
}

impl Link {
    /// Wraps a connection whose hello is done and starts its reader and writer.
    pub(crate) fn spawn(
        peer: WorkerId,
        connection: Connection<PeerMessage, PeerMessage>,
        dispatch: impl Fn(&Arc<Link>, PeerMessage) + Send + 'static,
    ) -> Arc<Link> {
        let (out, mut outgoing) = mpsc::unbounded_channel::<PeerMessage>();
        let link = Arc::new(Link {
            peer,
            out,
            closed: CancellationToken::new(),
            credits: Mutex::new(HashMap::new()),
        });
        let (mut reader, mut writer) = connection.split();
        let closed = link.closed.clone();
        tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    message = outgoing.recv() => message,
                    _ = closed.cancelled() => None,
                };
                let Some(first) = first else { break };
                if writer.feed(first).await.is_err() {
                    break;
                }
                // Write whatever else is queued before one flush.
                while let Ok(next) = outgoing.try_recv() {
                    if writer.feed(next).await.is_err() {
                        break;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
            closed.cancel();
        });
        let reading = Arc::clone(&link);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = reading.closed.cancelled() => break,
                    message = reader.recv() => match message {
                        Ok(Some(message)) => dispatch(&reading, message),
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!(peer = %reading.peer, error = %e, "closing data connection");
                            break;
                        }
                    }
                }
            }
            reading.closed.cancel();
        });
        link
    }

    /// Queues a message; false when the connection is gone.
    pub(crate) fn send(&self, message: PeerMessage) -> bool {
        !self.closed.is_cancelled() && self.out.send(message).is_ok()
    }

    /// The credit counter for sending to `partition` in `attempt`.
    pub(crate) fn credits(&self, attempt: u64, partition: usize) -> Arc<Semaphore> {
        let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        // Older attempts' counters are dead weight once a newer attempt sends.
        credits.retain(|(a, _), _| *a >= attempt);
        Arc::clone(
            credits
                .entry((attempt, partition))
                .or_insert_with(|| Arc::new(Semaphore::new(CREDITS_PER_CHANNEL))),
        )
    }

    /// The peer returned credits.
    pub(crate) fn add_credits(&self, attempt: u64, partition: usize, credits: u32) {
        let map = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(semaphore) = map.get(&(attempt, partition)) {
            semaphore.add_permits(credits as usize);
        }
    }
}
