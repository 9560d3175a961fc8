//! [`AttemptOut`]: how a source task of one attempt sends batches. Source tasks run on
//! blocking threads, so waiting for credit blocks the thread (and wakes on cancellation or a
//! closed connection).

use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::plane::{CreditReturn, Inbound};
use super::Link;
use crate::dataflow::plan::{Batch, ExchangeOut};
use crate::dataflow::DataflowError;
use crate::protocol::PeerMessage;

/// Where one partition of an attempt lives, as seen from this worker.
#[derive(Clone)]
pub(crate) enum Destination {
    /// On this worker: its inbox and the worker-wide credits for it.
    Local {
        inbox: mpsc::UnboundedSender<Inbound>,
        credits: Arc<Semaphore>,
    },
    /// On another worker, over this link.
    Remote(Arc<Link>),
}

/// The router of one attempt, cloned into each source task.
#[derive(Clone)]
pub(crate) struct AttemptOut {
    pub(crate) attempt: u64,
    /// The source partition of the task using this copy (set per task).
    pub(crate) from: usize,
    pub(crate) destinations: Arc<Vec<Destination>>,
    pub(crate) cancel: CancellationToken,
    pub(crate) runtime: Handle,
}

impl AttemptOut {
    fn wait_for_credit(
        &self,
        credits: Arc<Semaphore>,
        closed: Option<&CancellationToken>,
    ) -> Result<(), DataflowError> {
        let never = CancellationToken::new();
        let closed = closed.unwrap_or(&never);
        self.runtime.block_on(async {
            tokio::select! {
                permit = credits.acquire_owned() => {
                    // The receiver returns the credit by adding a permit, not by dropping this one.
                    permit.map_err(|_| DataflowError::Cancelled)?.forget();
                    Ok(())
                }
                _ = self.cancel.cancelled() => Err(DataflowError::Cancelled),
                _ = closed.cancelled() => Err(DataflowError::Exchange("the connection to a peer worker closed".to_string())),
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
                Destination::Local { inbox, .. } => inbox.send(local(q)).is_ok(),
                Destination::Remote(link) => link.send(remote(q)),
            };
            if !delivered && !self.cancel.is_cancelled() {
                return Err(DataflowError::Exchange(format!("partition {q} is unreachable")));
            }
        }
        Ok(())
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
                self.wait_for_credit(Arc::clone(credits), None)?;
                let credit = CreditReturn::Local(Arc::clone(credits));
                inbox
                    .send(Inbound::Batch {
                        batch,
                        credit,
                        from: self.from,
                    })
                    .map_err(|_| DataflowError::Exchange(format!("partition {q}'s receiver is gone")))
            }
            (Destination::Remote(link), Batch::Encoded(records)) => {
                self.wait_for_credit(link.credits(self.attempt, q), Some(&link.closed))?;
                let message = PeerMessage::Batch {
                    attempt: self.attempt,
                    partition: q as u32,
                    from: self.from as u32,
                    records,
                };
                if link.send(message) {
                    Ok(())
                } else {
                    Err(DataflowError::Exchange(format!(
                        "the connection to worker {} closed",
                        link.peer
                    )))
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
