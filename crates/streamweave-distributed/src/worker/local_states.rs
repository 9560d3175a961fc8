//! Local recovery: the state of the partitions this worker ran, kept in memory when their
//! attempt ends, so that the next attempt, restoring a checkpoint the state can roll back to,
//! takes it from memory instead of reading it from the store (Flink keeps a copy of its
//! checkpoints on local disk for this; here the live table itself goes back, from the
//! pre-images its stage keeps: `dataflow/state/tracked.rs`).
//!
//! ```text
//! attempt n's receiver of p ends cancelled, its state whole (not loading, not handed over)
//!   --keep(p, Kept{job, points: its last two segments (checkpoint, chain index), receiver})
//! attempt n+1's receiver of p, restoring checkpoint c:
//!   take(p, n+1, job, c): waits a moment for attempt n's receiver to end, then
//!   c is point k --> receiver.roll_back(k) --> the state as of c, with c's chain: the usual
//!   load over it (state_writer::load with that index) reads nothing more, and the writer
//!   goes on with the chain as it was (its segments' entry counts too)
//! ```
//!
//! A checkpoint is restored only once committed, and committed only once every partition's
//! segment is stored, so the chain index a point recorded is the one the store holds for it;
//! the load compares the two anyway and reads whatever differs. What is kept goes when a later
//! attempt starts without the partition here or for another job, when the worker leaves, or
//! [`KEEP_FOR`] after the attempt stopped if no other started (a job stopped for good: the
//! coordinator stops an attempt the same way before it restarts the job).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::checkpoint::PartitionChain;
use crate::dataflow::plan::Receiver;

/// How long a receiver that restores waits for the previous attempt's receiver of its
/// partition to end and keep its state: it ends at its next message, unless it is sealing a
/// segment; past this the partition loads from the store as usual.
pub(crate) const PATIENCE: Duration = Duration::from_millis(300);

/// How long a stopped attempt's states wait for the next attempt: a restart comes once the
/// failed worker is declared failed (at most a heartbeat timeout) and its partitions assigned.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(60);

/// A partition's state kept when its attempt ended.
pub(crate) struct Kept {
    /// The job (by name) whose attempt kept it.
    pub(crate) job: String,
    /// That attempt.
    pub(crate) attempt: u64,
    /// The checkpoints the state can go back to, newest first (its last segment, or the
    /// checkpoint it was restored from, then the one before), with the partition's chain there
    /// as its writer had it.
    pub(crate) points: Vec<(u64, PartitionChain)>,
    /// The receiver, as its attempt left it.
    pub(crate) receiver: Box<dyn Receiver>,
}

/// What a later attempt takes: the receiver, how many segments back the checkpoint it restores
/// is, and the chain there.
pub(crate) struct Taken {
    pub(crate) receiver: Box<dyn Receiver>,
    pub(crate) back: usize,
    pub(crate) chain: PartitionChain,
}

/// The worker's kept states, shared by its attempts (see the module documentation).
#[derive(Default)]
pub(crate) struct LocalStates {
    inner: Mutex<Inner>,
    changed: Notify,
}

#[derive(Default)]
struct Inner {
    kept: HashMap<usize, Kept>,
    /// The receivers running, as (partition, attempt).
    running: BTreeSet<(usize, u64)>,
    /// The newest attempt started here, its job and the partitions whose states it wants: a
    /// state kept by an older attempt for another partition or job is dropped (an attempt's
    /// own states are for the attempt after it). After a stop that expired, or the worker
    /// leaving, an attempt past every one that ran, wanting nothing.
    latest: Option<(u64, String, BTreeSet<usize>)>,
}

/// Removes and returns the kept states for which `f` holds.
fn take_where(kept: &mut HashMap<usize, Kept>, f: impl Fn(&usize, &Kept) -> bool) -> Vec<Kept> {
    let gone: Vec<usize> = kept.iter().filter(|(p, k)| f(p, k)).map(|(p, _)| *p).collect();
    gone.into_iter().filter_map(|p| kept.remove(&p)).collect()
}

/// A receiver of `attempt` running for `partition`: while it lives, a later attempt's receiver
/// of the partition waits for it ([`LocalStates::take`]).
pub(crate) struct Running {
    states: Arc<LocalStates>,
    partition: usize,
    attempt: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.states.lock().running.remove(&(self.partition, self.attempt));
        self.states.changed.notify_waiters();
    }
}

impl LocalStates {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Receiver `attempt` of `partition` runs until the guard drops.
    pub(crate) fn running(self: &Arc<Self>, partition: usize, attempt: u64) -> Running {
        self.lock().running.insert((partition, attempt));
        Running {
            states: Arc::clone(self),
            partition,
            attempt,
        }
    }

    /// Attempt `attempt` of `job` starts and wants the states of `partitions` (those it runs
    /// here, or none when it restores no checkpoint): returns what was kept for others or for
    /// another job, to free.
    pub(crate) fn started(&self, attempt: u64, job: &str, partitions: &[usize]) -> Vec<Kept> {
        let mut inner = self.lock();
        let mine: BTreeSet<usize> = partitions.iter().copied().collect();
        let dropped = take_where(&mut inner.kept, |p, kept| !mine.contains(p) || kept.job != job);
        inner.latest = Some((attempt, job.to_string(), mine));
        dropped
    }

    /// This worker runs no job any more (it leaves): returns everything kept, to free, and
    /// keeps nothing of the attempts so far.
    pub(crate) fn clear(&self) -> Vec<Kept> {
        let mut inner = self.lock();
        inner.latest = Some((u64::MAX, String::new(), BTreeSet::new()));
        inner.kept.drain().map(|(_, kept)| kept).collect()
    }

    /// [`KEEP_FOR`] after attempt `attempt` stopped: unless a later attempt started since,
    /// returns what it and earlier attempts kept, to free, and keeps nothing more of them.
    pub(crate) fn expire(&self, attempt: u64) -> Vec<Kept> {
        let mut inner = self.lock();
        if inner
            .latest
            .as_ref()
            .is_some_and(|(latest, _, _)| *latest > attempt)
        {
            return Vec::new();
        }
        inner.latest = Some((attempt.saturating_add(1), String::new(), BTreeSet::new()));
        take_where(&mut inner.kept, |_, kept| kept.attempt <= attempt)
    }

    /// Keeps `kept`, partition `partition`'s state as its attempt left it; returns what is not
    /// kept, to free: an older kept state of the partition, or this one if a later attempt
    /// runs without the partition here (or nothing may be kept any more).
    pub(crate) fn keep(&self, partition: usize, kept: Kept) -> Option<Kept> {
        let mut inner = self.lock();
        let unwanted = inner.latest.as_ref().is_some_and(|(latest, job, mine)| {
            *latest > kept.attempt && (!mine.contains(&partition) || *job != kept.job)
        });
        let freed = match unwanted {
            true => Some(kept),
            false => inner.kept.insert(partition, kept),
        };
        drop(inner);
        self.changed.notify_waiters();
        freed
    }

    /// For attempt `attempt` of `job` restoring checkpoint `checkpoint`: partition
    /// `partition`'s state kept by an earlier attempt, if it can go back to that checkpoint.
    /// Waits up to `patience` for an earlier attempt's receiver of the partition still running.
    /// A kept state that cannot serve is returned as `Err`, to free.
    pub(crate) async fn take(
        &self,
        partition: usize,
        attempt: u64,
        job: &str,
        checkpoint: u64,
        patience: Duration,
    ) -> Result<Option<Taken>, Kept> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = self.lock();
                if let Some(mut kept) = inner.kept.remove(&partition) {
                    let back = kept.points.iter().position(|(id, _)| *id == checkpoint);
                    return match back {
                        Some(back) if kept.job == job => {
                            let chain = kept.points.swap_remove(back).1;
                            Ok(Some(Taken {
                                receiver: kept.receiver,
                                back,
                                chain,
                            }))
                        }
                        _ => Err(kept),
                    };
                }
                let earlier = inner
                    .running
                    .range((partition, 0)..(partition, attempt))
                    .next()
                    .is_some();
                if !earlier {
                    return Ok(None);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataflow::sinks::CollectorSink;
    use crate::worker::test_jobs::{only_partition, word_count};

    fn kept(attempt: u64, points: &[u64]) -> Kept {
        let receiver = word_count(&CollectorSink::new())
            .plan
            .open_receiver(&only_partition(attempt))
            .unwrap();
        Kept {
            job: "wordcount".to_string(),
            attempt,
            points: (points.iter())
                .map(|&id| (id, PartitionChain::new(crate::checkpoint::ChainPolicy::default())))
                .collect(),
            receiver,
        }
    }

    async fn take(states: &LocalStates, attempt: u64, checkpoint: u64) -> Result<Option<usize>, u64> {
        match states.take(0, attempt, "wordcount", checkpoint, PATIENCE).await {
            Ok(taken) => Ok(taken.map(|t| t.back)),
            Err(unusable) => Err(unusable.attempt),
        }
    }

    #[tokio::test]
    async fn a_later_attempt_takes_the_state_at_the_checkpoint_it_restores() {
        let states = LocalStates::default();
        assert_eq!(
            take(&states, 2, 7).await,
            Ok(None),
            "nothing kept, nothing running"
        );
        assert!(states.keep(0, kept(1, &[8, 7])).is_none());
        assert_eq!(take(&states, 2, 7).await, Ok(Some(1)), "7 is one segment back");
        assert!(states.keep(0, kept(2, &[8, 7])).is_none());
        assert_eq!(take(&states, 3, 6).await, Err(2), "6 is too far back: freed");
        assert_eq!(take(&states, 3, 8).await, Ok(None), "taken once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_restoring_receiver_waits_for_the_previous_attempts_receiver_of_its_partition() {
        let states = Arc::new(LocalStates::default());
        let running = states.running(0, 1);
        let keeper = Arc::clone(&states);
        tokio::spawn(async move {
            tokio::time::sleep(PATIENCE / 2).await;
            assert!(keeper.keep(0, kept(1, &[5])).is_none());
            drop(running);
        });
        // Its own attempt's receiver running does not make it wait.
        let _own = states.running(0, 2);
        assert_eq!(take(&states, 2, 5).await, Ok(Some(0)));
        // One that never keeps anything is waited for only as long as the patience.
        let _stuck = states.running(1, 2);
        let start = tokio::time::Instant::now();
        assert!(matches!(
            states.take(1, 3, "wordcount", 5, PATIENCE).await,
            Ok(None)
        ));
        assert_eq!(start.elapsed(), PATIENCE);
    }

    #[test]
    fn states_not_wanted_by_the_latest_attempt_are_given_back_to_free() {
        let states = LocalStates::default();
        assert!(states.keep(0, kept(1, &[3])).is_none());
        assert!(states.keep(1, kept(1, &[3])).is_none());
        // Attempt 2 runs partition 1 here: partition 0's state goes, and so does one kept late.
        let freed = states.started(2, "wordcount", &[1]);
        assert_eq!(freed.len(), 1);
        assert!(states.keep(0, kept(1, &[3])).is_some());
        assert!(
            states.keep(1, kept(2, &[3])).is_some(),
            "the older state of partition 1 given back"
        );
        // Another job's attempt wants none of it.
        assert_eq!(states.started(3, "repartition", &[0, 1]).len(), 1);
        // A stopped attempt's states expire unless another started since.
        assert!(
            states.keep(1, kept(2, &[4])).is_some(),
            "an older attempt of another job"
        );
        let mut wc = kept(3, &[4]);
        wc.job = "repartition".to_string();
        assert!(states.keep(1, wc).is_none());
        assert!(states.expire(2).is_empty(), "attempt 3 started after 2 stopped");
        assert_eq!(states.expire(3).len(), 1);
        // An attempt that restores no checkpoint wants none, and none kept late either; its own
        // states are kept, for the attempt after it.
        assert!(states.keep(0, kept(4, &[5])).is_none());
        assert_eq!(states.started(5, "wordcount", &[]).len(), 1);
        assert!(states.keep(0, kept(4, &[5])).is_some());
        assert!(states.keep(0, kept(5, &[6])).is_none());
        // The worker leaves: everything goes, and nothing is kept after.
        assert_eq!(states.clear().len(), 1);
        assert!(states.keep(0, kept(6, &[7])).is_some());
    }
}
