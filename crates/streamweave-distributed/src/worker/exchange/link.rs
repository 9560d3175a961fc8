//! One data connection to another worker: a writer task draining an outgoing queue (batched
//! writes, one flush per burst), and the credit books of both directions: the counters of the
//! partitions this worker sends to over it, and what the peer may still send here.
//!
//! ```text
//!  source tasks --(space permit) Batch--+                      +--> peer
//!  sources, checkpoints --Barrier/Eos---+--> queue --> writer -+
//!  receivers: credit returned --> to_return[(attempt, q, from)] --^   (one Credit{n} per channel)
//! ```
//!
//! A channel is one source partition sending to one partition: its credits are its own, so a
//! source whose batches a receiver holds back (they follow a barrier the receiver is still
//! aligning) can never use up the credits another source needs to reach that barrier.
//!
//! Nothing the peer sends can grow the queue: batches need a credit from the peer and a slot of
//! the queue ([`OUTGOING_BATCHES`]); barriers and ends of stream come from this worker's own
//! sources (a few per partition and checkpoint); credits handed back are counted per channel
//! and written as one message, not queued one per batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::CREDITS_PER_CHANNEL;
use crate::network::{Connection, ConnectionReader};
use crate::protocol::PeerMessage;
use crate::types::WorkerId;

/// Batches queued for one link at most; a source waits for a slot (besides its credit), so a
/// peer that hands credits back without reading cannot make the queue grow.
pub(crate) const OUTGOING_BATCHES: usize = 64;

/// One channel of an attempt: (attempt, destination partition, source partition).
pub(crate) type Channel = (u64, usize, usize);

/// What the peer may send on one channel here.
#[derive(Debug, Default)]
struct Inflow {
    /// Batches received and not yet applied: at most [`CREDITS_PER_CHANNEL`].
    outstanding: usize,
    /// Credits to write back.
    to_return: u32,
}

/// The credit counters of the channels this worker sends on over a link, of its newest
/// attempt.
#[derive(Debug, Default)]
struct Credits {
    /// The newest attempt sent on: older ones' counters are dropped.
    attempt: u64,
    channels: HashMap<Channel, Arc<Semaphore>>,
}

/// A live connection to a peer worker.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) peer: WorkerId,
    out: mpsc::UnboundedSender<(PeerMessage, Option<OwnedSemaphorePermit>)>,
    /// Slots for batches in the queue.
    space: Arc<Semaphore>,
    /// Cancelled when the connection ends: senders waiting for credit give up.
    pub(crate) closed: CancellationToken,
    /// Credits for sending on each channel over this link. Small maps touched once per batch
    /// and never held across an await, so plain mutexes are right.
    credits: Mutex<Credits>,
    /// The peer's batches on each channel here, and the credits to hand back.
    inflows: Mutex<HashMap<Channel, Inflow>>,
    /// Wakes the writer when credits are to be handed back.
    credits_due: Notify,
}

impl Link {
    /// Wraps a connection whose hello is done and starts its writer; the caller reads from the
    /// returned half (and cancels `closed` when it stops).
    pub(crate) fn spawn(
        peer: WorkerId,
        connection: Connection<PeerMessage, PeerMessage>,
    ) -> (Arc<Link>, ConnectionReader<PeerMessage>) {
        let (out, mut outgoing) = mpsc::unbounded_channel::<(PeerMessage, Option<OwnedSemaphorePermit>)>();
        let link = Arc::new(Link {
            peer,
            out,
            space: Arc::new(Semaphore::new(OUTGOING_BATCHES)),
            closed: CancellationToken::new(),
            credits: Mutex::new(Credits::default()),
            inflows: Mutex::new(HashMap::new()),
            credits_due: Notify::new(),
        });
        let (reader, mut writer) = connection.split();
        let writing = Arc::clone(&link);
        tokio::spawn(async move {
            'write: loop {
                let first = tokio::select! {
                    message = outgoing.recv() => match message {
                        Some(message) => Some(message),
                        None => break,
                    },
                    _ = writing.credits_due.notified() => None,
                    _ = writing.closed.cancelled() => break,
                };
                // Write whatever else is queued before one flush; a batch's slot frees once
                // it is written.
                let mut next = first.or_else(|| outgoing.try_recv().ok());
                while let Some((message, _slot)) = next {
                    if writer.feed(message).await.is_err() {
                        break 'write;
                    }
                    next = outgoing.try_recv().ok();
                }
                for message in writing.due_credits() {
                    if writer.feed(message).await.is_err() {
                        break 'write;
                    }
                }
                if writer.flush().await.is_err() {
                    break;
                }
            }
            writing.closed.cancel();
        });
        (link, reader)
    }

    /// Queues a control message (barrier, end of stream); false when the connection is gone.
    pub(crate) fn send(&self, message: PeerMessage) -> bool {
        !self.closed.is_cancelled() && self.out.send((message, None)).is_ok()
    }

    /// A slot in the queue for one batch; `None` once the connection is gone.
    pub(crate) async fn reserve(&self) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            slot = Arc::clone(&self.space).acquire_owned() => slot.ok(),
            _ = self.closed.cancelled() => None,
        }
    }

    /// Queues a batch in the slot reserved for it; false when the connection is gone.
    pub(crate) fn send_batch(&self, message: PeerMessage, slot: OwnedSemaphorePermit) -> bool {
        !self.closed.is_cancelled() && self.out.send((message, Some(slot))).is_ok()
    }

    /// The credit counter for sending on `channel`.
    pub(crate) fn credits(&self, channel: Channel) -> Arc<Semaphore> {
        let mut credits = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        if channel.0 > credits.attempt {
            // Older attempts' counters are dead weight once a newer attempt sends.
            credits.attempt = channel.0;
            credits.channels.retain(|(a, _, _), _| *a >= channel.0);
        }
        Arc::clone(
            credits
                .channels
                .entry(channel)
                .or_insert_with(|| Arc::new(Semaphore::new(CREDITS_PER_CHANNEL))),
        )
    }

    /// The peer returned `credits` for batches sent on `channel`. An error when it returns
    /// more than it was sent (the counter never grows beyond its grant), or credits for a
    /// channel of a current attempt this worker never sent on.
    pub(crate) fn add_credits(&self, channel: Channel, credits: u32) -> Result<(), String> {
        let (attempt, partition, from) = channel;
        let credits_of = self.credits.lock().unwrap_or_else(|e| e.into_inner());
        let Some(semaphore) = credits_of.channels.get(&channel) else {
            // Counters of older attempts are dropped once a newer one sends: late credits of
            // theirs are expected. Anything else was never granted.
            if credits_of.attempt > attempt {
                return Ok(());
            }
            return Err(format!(
                "{credits} credits returned for partition {partition} from {from} of attempt {attempt}, which was never sent to"
            ));
        };
        let available = semaphore.available_permits();
        if available + credits as usize > CREDITS_PER_CHANNEL {
            return Err(format!(
                "{credits} credits returned for partition {partition} from {from} of attempt {attempt} with {} outstanding",
                CREDITS_PER_CHANNEL - available.min(CREDITS_PER_CHANNEL)
            ));
        }
        semaphore.add_permits(credits as usize);
        Ok(())
    }

    /// A batch on `channel` arrived from the peer: false when it exceeds the credits granted
    /// (the peer ignores flow control).
    pub(crate) fn take_credit(&self, channel: Channel) -> bool {
        let mut inflows = self.inflows.lock().unwrap_or_else(|e| e.into_inner());
        let inflow = inflows.entry(channel).or_default();
        inflow.outstanding += 1;
        inflow.outstanding <= CREDITS_PER_CHANNEL
    }

    /// A batch from the peer was applied: its credit goes back (written by the writer, merged
    /// with others of the same channel).
    pub(crate) fn return_credit(&self, channel: Channel) {
        let mut inflows = self.inflows.lock().unwrap_or_else(|e| e.into_inner());
        // An attempt forgotten since: its sender is gone, nothing to return.
        let Some(inflow) = inflows.get_mut(&channel) else {
            return;
        };
        inflow.outstanding = inflow.outstanding.saturating_sub(1);
        inflow.to_return += 1;
        drop(inflows);
        self.credits_due.notify_one();
    }

    /// Forgets the peer's channels of attempts older than `attempt`.
    pub(crate) fn forget_before(&self, attempt: u64) {
        let mut inflows = self.inflows.lock().unwrap_or_else(|e| e.into_inner());
        inflows.retain(|(a, _, _), _| *a >= attempt);
    }

    /// The credit messages due, one per channel; resets the counts.
    fn due_credits(&self) -> Vec<PeerMessage> {
        let mut inflows = self.inflows.lock().unwrap_or_else(|e| e.into_inner());
        inflows
            .iter_mut()
            .filter(|(_, inflow)| inflow.to_return > 0)
            .map(|(&(attempt, partition, from), inflow)| PeerMessage::Credit {
                attempt,
                partition: partition as u32,
                from: from as u32,
                credits: std::mem::take(&mut inflow.to_return),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn link() -> Arc<Link> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (dialed, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        // Keep the other end open for the test's duration.
        std::mem::forget(accepted.unwrap());
        let connection = Connection::new(dialed.unwrap(), 1 << 20);
        Link::spawn(WorkerId::new("w2"), connection).0
    }

    #[tokio::test]
    async fn credits_returned_beyond_the_grant_are_refused() {
        let link = link().await;
        let credits = link.credits((3, 1, 0));
        credits.acquire().await.unwrap().forget();
        credits.acquire().await.unwrap().forget();
        assert_eq!(link.add_credits((3, 1, 0), 1), Ok(()));
        let error = link.add_credits((3, 1, 0), 2).unwrap_err();
        assert!(error.contains("with 1 outstanding"), "{error}");
        assert_eq!(credits.available_permits(), CREDITS_PER_CHANNEL - 1);
        // A channel never sent on, in the newest attempt: another partition, another source.
        assert!(link.add_credits((3, 2, 0), 1).is_err());
        assert!(link.add_credits((3, 1, 1), 1).is_err());
        assert!(link.add_credits((4, 1, 0), 1).is_err());
        // An older attempt's late credits are ignored.
        assert_eq!(link.add_credits((2, 1, 0), 5), Ok(()));
    }

    #[tokio::test]
    async fn a_batch_beyond_the_credits_granted_is_refused_and_applied_ones_free_theirs() {
        let link = link().await;
        for _ in 0..CREDITS_PER_CHANNEL {
            assert!(link.take_credit((1, 0, 0)));
        }
        link.return_credit((1, 0, 0));
        assert!(link.take_credit((1, 0, 0)), "a returned credit can be used again");
        assert!(!link.take_credit((1, 0, 0)), "one batch beyond the grant");
        // Another channel has its own credits: another partition, or another source.
        assert!(link.take_credit((1, 1, 0)));
        assert!(link.take_credit((1, 0, 1)));
    }
}
