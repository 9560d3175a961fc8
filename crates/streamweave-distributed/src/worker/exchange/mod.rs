//! The data plane: direct worker-to-worker TCP for a job's exchange, with credit-based flow
//! control. Never through the coordinator.
//!
//! ```text
//!  worker A (lower id dials)                         worker B
//!  source task --ExchangeOut::send(q)--+              +--> inbox(attempt, q) --> receiver task q
//!     local q: credit from local sem --+--> inbox      |        | after each batch: credit back
//!     remote q: credit from link sem --> Link ==TCP==> reader --+        (local: add permit;
//!                                           <== Credit{attempt, q, 1} ==  remote: Credit msg)
//! ```
//!
//! One connection per pair of workers carries batches, end-of-stream markers and credits for
//! every partition and attempt, tagged with the attempt; what belongs to an older attempt is
//! dropped. A sender needs one credit per batch per destination partition; a receiver hands
//! the credit back once it has applied the batch, so a slow receiver stops its senders and the
//! memory of a channel is bounded by `credits x batch size`.
//!
//! Nobody is trusted for memory: a worker takes records only from the workers of its current
//! attempt, for that attempt and for the partitions it owns in it ([`admission`]), before any
//! inbox exists for them; a peer sending beyond its credits, or handing back more credits than
//! it was granted, is disconnected; every queue fed from a connection is bounded, and the
//! listener takes a bounded number of connections, each with a deadline for its introduction.

mod admission;
mod attempt;
mod inboxes;
mod link;
mod plane;

use tokio::sync::mpsc;

pub(crate) use attempt::{AttemptOut, Destination, RouteChanges};
pub(crate) use inboxes::{CreditReturn, Inbound};
pub(crate) use link::Link;
pub(crate) use plane::DataPlane;

/// The sending end of a partition's inbox.
pub(crate) type InboxSender = mpsc::Sender<Inbound>;
/// The receiving end of a partition's inbox, for its receiver task.
pub(crate) type InboxReceiver = mpsc::Receiver<Inbound>;

/// Messages a partition's inbox holds at most in an attempt of `num_partitions` partitions:
/// the batches the credits allow ([`CREDITS_PER_CHANNEL`] per channel, a channel per source
/// partition and worker sending it, and across a move a source partition sends from its old
/// owner and its new one), the barriers of two checkpoints and an end of stream from every
/// source, and the cancellation. A protocol-abiding peer never fills it; one that does waits
/// (its connection is read no further).
pub(crate) fn inbox_capacity(num_partitions: usize) -> usize {
    CREDITS_PER_CHANNEL * 2 * (num_partitions + 1) + 3 * num_partitions + 8
}

/// Batches one source partition may have in flight to one partition (a channel), over a link
/// or to a partition on its own worker.
pub const CREDITS_PER_CHANNEL: usize = 8;
