//! The inboxes of this worker's partitions, by attempt, and the admission changes that go with
//! them: an attempt starting or stopping here, a partition moving in or out inside one.
//!
//! ```text
//! job runner: begin_attempt / own / add_member / retire_inbox / cancel_attempt / set_floor
//!               -> Admission (what the network may deliver) + inboxes made, closed, forgotten
//! link read loops: Admission::judge -> inbox_of(attempt, q).send(Inbound)    (plane.rs)
//! local sources: inbox(attempt, q) (a clone of the sender, taken once per attempt)
//! receiver task q: take_inbox(attempt, q) (once) -> Inbound::{Batch, Barrier, Eos, Cancel}
//! ```
//!
//! The map of inboxes stays behind a mutex rather than in an actor: it is data-plane routing,
//! reached by the read loop of every link (once per message that needs a new inbox or the
//! sender of one), by the job runner's tasks and by local sources, and an actor hop there would
//! sit on the records' path. The lock is held for a map lookup, never across an await, and
//! always after `admission` where both are taken.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};

use super::admission::Admission;
use super::plane::DataPlane;
use super::{inbox_capacity, InboxReceiver, InboxSender, Link};
use crate::dataflow::plan::Batch;
use crate::protocol::PartitionOwner;
use crate::types::WorkerId;

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
        channel: super::link::Channel,
    },
}

impl CreditReturn {
    pub(crate) fn release(self) {
        match self {
            CreditReturn::Local(semaphore) => semaphore.add_permits(1),
            CreditReturn::Remote { link, channel } => link.return_credit(channel),
        }
    }
}

/// One partition's inbox of one attempt: the receiving end until its receiver task takes it.
pub(super) struct Inbox {
    tx: InboxSender,
    rx: Option<InboxReceiver>,
}

/// The inboxes, by (attempt, partition).
pub(super) type Inboxes = HashMap<(u64, usize), Inbox>;

impl DataPlane {
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
    pub(super) fn inbox_of(&self, attempt: u64, partition: usize, num_partitions: usize) -> InboxSender {
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

    /// Inboxes that exist, for tests.
    #[cfg(test)]
    pub(super) fn inbox_keys(&self) -> Vec<(u64, usize)> {
        let inboxes = self.inner.inboxes.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<_> = inboxes.keys().copied().collect();
        keys.sort_unstable();
        keys
    }
}
