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

mod attempt;
mod link;
mod plane;

pub(crate) use attempt::{AttemptOut, Destination, RouteChanges};
pub(crate) use link::Link;
pub(crate) use plane::{CreditReturn, DataPlane, Inbound};

/// Batches a sender may have in flight to one partition of one worker, per link (remote) or
/// per worker (local).
pub const CREDITS_PER_CHANNEL: usize = 8;
