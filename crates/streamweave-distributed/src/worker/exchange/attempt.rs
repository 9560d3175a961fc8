//! [`AttemptOut`]: how a source task of one attempt sends batches. Source tasks run on
//! blocking threads, so waiting for credit blocks the thread (and wakes on cancellation or a
//! closed connection).
//!
//! A partition that changes owner inside an attempt changes its destination at a checkpoint
//! barrier: the change is registered in the attempt's [`RouteChanges`] before the barrier is
//! requested, and every source applies it ([`AttemptOut::reroute`]) right after it sent that
//! barrier, so what it sent before goes to the old owner and what follows to the new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::runtime::Handle;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::inboxes::{CreditReturn, Inbound};
use super::{InboxSender, Link};
use crate::dataflow::plan::{Batch, ExchangeOut};
use crate::dataflow::DataflowError;
use crate::observe::WorkerMetrics;
use crate::protocol::PeerMessage;

/// Where one partition of an attempt lives, as seen from this worker.
#[derive(Clone)]
pub(crate) enum Destination {
    /// On this worker: its inbox and the credits of the channels to it.
    Local {
        inbox: InboxSender,
        credits: Arc<LocalCredits>,
    },
    /// On another worker, over this link.
    Remote(Arc<Link>),
}

/// The credits of the channels from this worker's sources to one partition here, a counter per
/// source partition (made at its first batch). Per source, not shared: batches that a receiver
/// holds back behind a barrier it aligns keep their credits, and must not take those of a
/// source that has yet to reach that barrier (which would then never come).
#[derive(Debug, Default)]
pub(crate) struct LocalCredits {
    /// By source partition. Locked once per batch, never across an await.
    channels: Mutex<HashMap<usize, Arc<Semaphore>>>,
}

impl LocalCredits {
    /// The credit counter of source partition `from`'s channel.
    fn of(&self, from: usize) -> Arc<Semaphore> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            channels
                .entry(from)
                .or_insert_with(|| Arc::new(Semaphore::new(super::CREDITS_PER_CHANNEL))),
        )
    }
}

/// The destination changes of one attempt, each taking effect after a checkpoint barrier.
#[derive(Default)]
pub(crate) struct RouteChanges {
    /// (barrier, partition, new destination), in the order registered. Locked once per barrier
    /// per source, never across an await.
    changes: Mutex<Vec<(u64, usize, Destination)>>,
}

impl RouteChanges {
    /// From barrier `barrier` on, records for `partition` go to `to`.
    pub(crate) fn add(&self, barrier: u64, partition: usize, to: Destination) {
        self.changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((barrier, partition, to));
    }
}

/// The router of one attempt, cloned into each source task.
#[derive(Clone)]
pub(crate) struct AttemptOut {
    pub(crate) attempt: u64,
    /// The source partition of the task using this copy (set per task).
    pub(crate) from: usize,
    destinations: Arc<Vec<Destination>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) runtime: Handle,
    routes: Arc<RouteChanges>,
    /// The newest barrier whose route changes `destinations` includes.
    routed_upto: u64,
    /// Where time spent waiting for credits is counted.
    metrics: WorkerMetrics,
}

impl AttemptOut {
    /// A router over `destinations` (by partition), which already include the route changes
    /// up to barrier `routed_upto`.
    pub(crate) fn new(
        attempt: u64,
        destinations: Vec<Destination>,
        cancel: CancellationToken,
        routes: Arc<RouteChanges>,
        routed_upto: u64,
        metrics: WorkerMetrics,
    ) -> Self {
        AttemptOut {
            attempt,
            from: 0,
            destinations: Arc::new(destinations),
            cancel,
            runtime: Handle::current(),
            routes,
            routed_upto,
            metrics,
        }
    }

    /// This router for the task of source partition `from`.
    pub(crate) fn for_source(&self, from: usize) -> Self {
        AttemptOut { from, ..self.clone() }
    }

    /// Applies the route changes of the barriers up to `upto` (the source has sent barrier
    /// `upto`: what it sends next belongs to the partitions' new owners).
    pub(crate) fn reroute(&mut self, upto: u64) {
        if upto <= self.routed_upto {
            return;
        }
        let changes = self.routes.changes.lock().unwrap_or_else(|e| e.into_inner());
        for (barrier, q, to) in changes.iter() {
            if *barrier > self.routed_upto && *barrier <= upto && *q < self.destinations.len() {
                Arc::make_mut(&mut self.destinations)[*q] = to.clone();
            }
        }
        self.routed_upto = upto;
    }

    /// Waits for a credit of `credits` and, for a remote partition, a slot in its link's
    /// queue (the slot is returned).
    fn wait_for_credit(
        &self,
        credits: Arc<Semaphore>,
        link: Option<&Link>,
    ) -> Result<Option<OwnedSemaphorePermit>, DataflowError> {
        let never = CancellationToken::new();
        let closed = link.map_or(&never, |l| &l.closed);
        let gone = || match link {
            Some(link) => lost(link),
            None => DataflowError::Exchange("the connection to a peer worker closed".to_string()),
        };
        // The receiver returns the credit by adding a permit, not by dropping this one. The
        // clock is read only when no credit is there at once (backpressure, counted).
        let took = match Arc::clone(&credits).try_acquire_owned() {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        };
        self.runtime.block_on(async {
            if !took {
                let since = Instant::now();
                tokio::select! {
                    permit = credits.acquire_owned() => {
                        permit.map_err(|_| DataflowError::Cancelled)?.forget();
                    }
                    _ = self.cancel.cancelled() => return Err(DataflowError::Cancelled),
                    _ = closed.cancelled() => return Err(gone()),
                }
                self.metrics.add_backpressure(since.elapsed());
            }
            let Some(link) = link else { return Ok(None) };
            tokio::select! {
                slot = link.reserve() => slot.map(Some).ok_or_else(gone),
                _ = self.cancel.cancelled() => Err(DataflowError::Cancelled),
            }
        })
    }

    /// Tells every partition that source partition `from` has ended.
    pub(crate) fn end_of_stream(&self, from: usize) -> Result<(), DataflowError> {
        self.broadcast(
            |_| Inbound::Eos { from },
            |q| PeerMessage::EndOfStream {
                attempt: self.attempt,
                partition: q as u32,
                from: from as u32,
            },
        )
    }

    /// Sends checkpoint barrier `id` from this task's source partition to every partition,
    /// behind everything it sent before.
    pub(crate) fn barrier(&self, id: u64) -> Result<(), DataflowError> {
        let from = self.from;
        self.broadcast(
            |_| Inbound::Barrier { id, from },
            |q| PeerMessage::Barrier {
                attempt: self.attempt,
                id,
                partition: q as u32,
                from: from as u32,
            },
        )
    }

    fn broadcast(
        &self,
        local: impl Fn(usize) -> Inbound,
        remote: impl Fn(usize) -> PeerMessage,
    ) -> Result<(), DataflowError> {
        for (q, destination) in self.destinations.iter().enumerate() {
            let delivered = match destination {
                Destination::Local { inbox, .. } => deliver_local(inbox, local(q), q)?,
                Destination::Remote(link) => link.send(remote(q)),
            };
            if !delivered && !self.cancel.is_cancelled() {
                return Err(match destination {
                    Destination::Remote(link) => lost(link),
                    Destination::Local { .. } => {
                        DataflowError::Exchange(format!("partition {q} is unreachable"))
                    }
                });
            }
        }
        Ok(())
    }
}

/// The connection to `link`'s peer closed under a sender.
fn lost(link: &Link) -> DataflowError {
    DataflowError::PeerLost {
        peer: link.peer.clone(),
        reason: format!("the connection to worker {} closed", link.peer),
    }
}

/// Puts `message` in partition `q`'s inbox here without waiting (it may be called on the
/// runtime): false when the receiver is gone. The inbox holds every batch the local credits
/// allow and every marker of an attempt, so a full one is a bug, reported as an error.
fn deliver_local(inbox: &InboxSender, message: Inbound, q: usize) -> Result<bool, DataflowError> {
    match inbox.try_send(message) {
        Ok(()) => Ok(true),
        Err(TrySendError::Closed(_)) => Ok(false),
        Err(TrySendError::Full(_)) => Err(DataflowError::Exchange(format!("partition {q}'s inbox is full"))),
    }
}

impl ExchangeOut for AttemptOut {
    fn num_partitions(&self) -> usize {
        self.destinations.len()
    }

    fn is_local(&self, q: usize) -> bool {
        matches!(self.destinations[q], Destination::Local { .. })
    }

    fn send(&mut self, q: usize, batch: Batch) -> Result<(), DataflowError> {
        match (&self.destinations[q], batch) {
            (Destination::Local { inbox, credits }, batch) => {
                let credits = credits.of(self.from);
                self.wait_for_credit(Arc::clone(&credits), None)?;
                let credit = CreditReturn::Local(credits);
                let batch = Inbound::Batch {
                    batch,
                    credit,
                    from: self.from,
                };
                if deliver_local(inbox, batch, q)? {
                    Ok(())
                } else {
                    Err(DataflowError::Exchange(format!(
                        "partition {q}'s receiver is gone"
                    )))
                }
            }
            (Destination::Remote(link), Batch::Encoded(records)) => {
                let channel = (self.attempt, q, self.from);
                let slot = self.wait_for_credit(link.credits(channel), Some(link))?;
                let message = PeerMessage::Batch {
                    attempt: self.attempt,
                    partition: q as u32,
                    from: self.from as u32,
                    records,
                };
                if slot.is_some_and(|slot| link.send_batch(message, slot)) {
                    Ok(())
                } else {
                    Err(lost(link))
                }
            }
            (Destination::Remote(_), Batch::Local(_)) => Err(DataflowError::Exchange(
                "an unencoded batch for another worker".to_string(),
            )),
        }
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::worker::exchange::{inbox_capacity, CREDITS_PER_CHANNEL};

    fn batch(x: u64) -> Batch {
        Batch::Local(Box::new(vec![x]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_held_behind_a_barrier_leave_the_other_sources_their_credits() {
        // Partition 0 here aligns barrier 7: source 0 sent it, so the batches source 0 sends
        // next wait in the receiver, their credits not returned. Source 1, on the same worker,
        // has not reached the barrier yet: unless it can still send, the barrier never aligns
        // and nothing returns the credits (the job stood still, its checkpoints timing out).
        let (inbox, mut received) = tokio::sync::mpsc::channel(inbox_capacity(2));
        let credits = Arc::new(LocalCredits::default());
        let destination = Destination::Local {
            inbox,
            credits: Arc::clone(&credits),
        };
        let (routes, cancel) = (Arc::new(RouteChanges::default()), CancellationToken::new());
        let metrics = WorkerMetrics::default();
        let out = AttemptOut::new(1, vec![destination], cancel.clone(), routes, 0, metrics);
        let (mut ahead, mut behind) = (out.for_source(0), out.for_source(1));
        let sent = tokio::task::spawn_blocking(move || {
            ahead.barrier(7)?;
            for x in 0..CREDITS_PER_CHANNEL as u64 {
                ahead.send(0, batch(x))?;
            }
            behind.send(0, batch(100))
        });
        let sent = tokio::time::timeout(Duration::from_secs(10), sent).await;
        // Cancelling frees a thread still waiting, so that the test fails instead of hanging.
        cancel.cancel();
        sent.expect("source 1 waits for a credit that only the alignment would return")
            .expect("the sending thread")
            .expect("sent");
        // Each source's channel holds its own credits: source 0 used all of its, no more.
        assert_eq!(credits.of(0).available_permits(), 0);
        assert_eq!(credits.of(1).available_permits(), CREDITS_PER_CHANNEL - 1);
        let mut froms = Vec::new();
        while let Ok(message) = received.try_recv() {
            match message {
                Inbound::Barrier { id: 7, from: 0 } => froms.push(None),
                Inbound::Batch { from, .. } => froms.push(Some(from)),
                _ => panic!("a message neither the barrier nor a batch"),
            }
        }
        let mut expected = vec![None];
        expected.extend(std::iter::repeat_n(Some(0), CREDITS_PER_CHANNEL));
        expected.push(Some(1));
        assert_eq!(froms, expected);
    }
}
