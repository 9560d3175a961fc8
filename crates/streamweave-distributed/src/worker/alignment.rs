//! Checkpoint barrier alignment for one receiving partition, as plain synchronous code: it takes
//! what arrives in the partition's inbox and says what to do with it. The receiver task
//! (`receiver_task.rs`) is the shell that awaits the inbox and carries the steps out.
//!
//! ```text
//! Batch from s      -> Apply (or held, if s already sent the barrier being aligned)
//! Barrier{id} from s-> s joins the alignment of id
//! Eos from s        -> s has ended
//! every source sent id or ended -> Aligned(id): the shell snapshots, then snapshot_taken()
//!                                   replays what was held, in arrival order
//! every source ended, nothing held -> Finished
//! ```
//!
//! A batch a source sends after its barrier belongs to the next epoch, so it waits until the
//! barrier is aligned (Flink's aligned checkpoints); the sources that have not reached the
//! barrier yet keep flowing. A newer barrier from a source that never sent the one being aligned
//! (that checkpoint was given up and a newer one triggered) abandons the old alignment for the
//! new one, as Flink does; a barrier older than the one being aligned is ignored.

use std::collections::VecDeque;

use super::exchange::{CreditReturn, Inbound};
use crate::dataflow::plan::Batch;
use crate::dataflow::DataflowError;

/// What the receiver task does next.
pub(crate) enum Step {
    /// Apply these records, then hand the credit back.
    Apply { batch: Batch, credit: CreditReturn },
    /// Every source has sent barrier `id` (or ended): snapshot the state now, then call
    /// [`Alignment::snapshot_taken`].
    Aligned(u64),
    /// Every source has ended and nothing waits: emit the results and commit.
    Finished,
    /// The attempt is over.
    Cancelled,
    /// Nothing until the next message.
    Wait,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Apply { batch, .. } => write!(f, "Apply({batch:?})"),
            Step::Aligned(id) => write!(f, "Aligned({id})"),
            Step::Finished => f.write_str("Finished"),
            Step::Cancelled => f.write_str("Cancelled"),
            Step::Wait => f.write_str("Wait"),
        }
    }
}

/// A set of source partitions in `0..n`: a thousand receivers each tracking a thousand sources
/// touch these for every barrier and end-of-stream, so a bitmap with a count.
#[derive(Clone, Debug, Default)]
struct SourceSet {
    members: Vec<bool>,
    len: usize,
}

impl SourceSet {
    fn new(n: usize) -> Self {
        SourceSet {
            members: vec![false; n],
            len: 0,
        }
    }

    fn contains(&self, s: usize) -> bool {
        self.members.get(s).copied().unwrap_or(false)
    }

    fn insert(&mut self, s: usize) {
        if let Some(member) = self.members.get_mut(s) {
            if !*member {
                *member = true;
                self.len += 1;
            }
        }
    }
}

/// See the module documentation.
pub(crate) struct Alignment {
    partition: usize,
    num_sources: usize,
    ended: SourceSet,
    /// The checkpoint being aligned, with the sources whose barrier arrived.
    aligning: Option<(u64, SourceSet)>,
    /// Messages of sources past the barrier being aligned, in arrival order.
    held: VecDeque<Inbound>,
    /// Messages to take again before the inbox's (released by an alignment).
    replay: VecDeque<Inbound>,
    /// Barriers up to this one were aligned or given up: a late one is ignored.
    done_upto: u64,
}

impl Alignment {
    /// Partition `partition` receiving from `num_sources` source partitions, of which `ended`
    /// had already ended (a partition adopted inside an attempt: their end-of-stream went to
    /// the previous owner).
    pub(crate) fn new(partition: usize, num_sources: usize, ended: impl IntoIterator<Item = usize>) -> Self {
        let mut ended_set = SourceSet::new(num_sources);
        ended.into_iter().for_each(|s| ended_set.insert(s));
        Alignment {
            partition,
            num_sources,
            ended: ended_set,
            aligning: None,
            held: VecDeque::new(),
            replay: VecDeque::new(),
            done_upto: 0,
        }
    }

    /// The source partitions counted as ended so far, ascending.
    pub(crate) fn ended(&self) -> Vec<usize> {
        (0..self.num_sources)
            .filter(|&s| self.ended.contains(s))
            .collect()
    }

    /// A released message to take before the next one from the inbox.
    pub(crate) fn next_held(&mut self) -> Option<Inbound> {
        self.replay.pop_front()
    }

    /// Whether messages wait for the current alignment to complete.
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Takes one message from the inbox (or from [`Alignment::next_held`]).
    pub(crate) fn on_message(&mut self, message: Inbound) -> Result<Step, DataflowError> {
        if let Inbound::Batch { from, .. } | Inbound::Barrier { from, .. } | Inbound::Eos { from } = &message
        {
            // Source partitions come from the network: one out of range would corrupt the
            // counts that decide alignment and the end.
            if *from >= self.num_sources {
                return Err(DataflowError::Exchange(format!(
                    "partition {} got a message from source partition {from} of {}",
                    self.partition, self.num_sources
                )));
            }
        }
        match message {
            Inbound::Batch { from, .. }
                if self.aligning.as_ref().is_some_and(|(_, got)| got.contains(from)) =>
            {
                self.held.push_back(message);
                Ok(Step::Wait)
            }
            Inbound::Batch { batch, credit, .. } => Ok(Step::Apply { batch, credit }),
            Inbound::Barrier { id, .. } if id <= self.done_upto => Ok(Step::Wait),
            Inbound::Barrier { id, from } => {
                match &mut self.aligning {
                    Some((aligning, got)) if *aligning == id => {
                        got.insert(from);
                    }
                    // A source's next barrier before this one aligned: it is past the barrier
                    // being aligned, so the message waits like its batches.
                    Some((_, got)) if got.contains(from) => {
                        self.held.push_back(Inbound::Barrier { id, from });
                        return Ok(Step::Wait);
                    }
                    // A late barrier of a checkpoint given up for a newer one.
                    Some((aligning, _)) if id < *aligning => return Ok(Step::Wait),
                    // A newer checkpoint from a source that skipped the one being aligned: that
                    // one can never complete. What was held precedes this barrier: release it.
                    Some((abandoned, _)) => {
                        self.done_upto = *abandoned;
                        let held = std::mem::take(&mut self.held);
                        self.replay.extend(held);
                        self.aligning = Some((id, self.barrier_from(from)));
                    }
                    None => self.aligning = Some((id, self.barrier_from(from))),
                }
                Ok(self.progress())
            }
            Inbound::Eos { from } => {
                if self.aligning.as_ref().is_some_and(|(_, got)| got.contains(from)) {
                    self.held.push_back(message);
                    return Ok(Step::Wait);
                }
                self.ended.insert(from);
                Ok(self.progress())
            }
            Inbound::Cancel => Ok(Step::Cancelled),
        }
    }

    /// The shell has taken the snapshot of the aligned barrier: what was held may go on.
    pub(crate) fn snapshot_taken(&mut self) -> Step {
        if let Some((id, _)) = self.aligning.take() {
            self.done_upto = id;
        }
        let held = std::mem::take(&mut self.held);
        self.replay.extend(held);
        self.progress()
    }

    /// The sources of a new alignment: `from`.
    fn barrier_from(&self, from: usize) -> SourceSet {
        let mut got = SourceSet::new(self.num_sources);
        got.insert(from);
        got
    }

    fn progress(&self) -> Step {
        if let Some((id, got)) = &self.aligning {
            // Cheap first: only a complete count can be aligned.
            if got.len + self.ended.len >= self.num_sources
                && (0..self.num_sources).all(|s| got.contains(s) || self.ended.contains(s))
            {
                return Step::Aligned(*id);
            }
            return Step::Wait;
        }
        if self.held.is_empty() && self.replay.is_empty() && self.ended.len == self.num_sources {
            Step::Finished
        } else {
            Step::Wait
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    fn batch(from: usize, value: u32) -> Inbound {
        Inbound::Batch {
            batch: Batch::Local(Box::new(vec![value])),
            credit: CreditReturn::Local(Arc::new(Semaphore::new(0))),
            from,
        }
    }

    fn applied(step: Step) -> Vec<u32> {
        match step {
            Step::Apply { batch, .. } => crate::dataflow::plan::unpack_local(batch).unwrap(),
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    /// Feeds `messages`, draining held ones as the shell would, and names every step.
    fn run(alignment: &mut Alignment, messages: Vec<Inbound>) -> Vec<String> {
        let mut steps = Vec::new();
        let mut queue: VecDeque<Inbound> = messages.into();
        loop {
            let message = match alignment.next_held() {
                Some(m) => m,
                None => match queue.pop_front() {
                    Some(m) => m,
                    None => return steps,
                },
            };
            let mut step = alignment.on_message(message).unwrap();
            loop {
                match step {
                    Step::Apply { .. } => steps.push(format!("apply {:?}", applied(step))),
                    Step::Aligned(id) => {
                        steps.push(format!("aligned {id}"));
                        step = alignment.snapshot_taken();
                        continue;
                    }
                    Step::Wait => {}
                    other => steps.push(format!("{other:?}")),
                }
                break;
            }
        }
    }

    #[test]
    fn batches_after_a_sources_barrier_wait_until_the_barrier_is_aligned() {
        let mut a = Alignment::new(0, 2, []);
        let steps = run(
            &mut a,
            vec![
                batch(0, 1),
                Inbound::Barrier { id: 1, from: 0 },
                batch(0, 2), // next epoch: held
                batch(1, 3), // source 1 has not reached the barrier: applied
                Inbound::Barrier { id: 1, from: 1 },
                batch(1, 4),
            ],
        );
        assert_eq!(
            steps,
            ["apply [1]", "apply [3]", "aligned 1", "apply [2]", "apply [4]"]
        );
    }

    #[test]
    fn an_ended_source_counts_as_aligned_and_all_ended_finishes() {
        let mut a = Alignment::new(1, 3, [2]);
        let steps = run(
            &mut a,
            vec![
                Inbound::Barrier { id: 4, from: 0 },
                Inbound::Eos { from: 1 },
                Inbound::Eos { from: 0 },
            ],
        );
        // Source 1's end completes the alignment (2 had ended before); source 0's end then
        // ends everything.
        assert_eq!(steps, ["aligned 4", "Finished"]);
    }

    #[test]
    fn a_sources_next_barrier_waits_behind_the_one_being_aligned() {
        let mut a = Alignment::new(0, 2, []);
        let steps = run(
            &mut a,
            vec![
                Inbound::Barrier { id: 1, from: 0 },
                Inbound::Barrier { id: 2, from: 0 },
                Inbound::Barrier { id: 1, from: 1 },
                Inbound::Barrier { id: 2, from: 1 },
            ],
        );
        assert_eq!(steps, ["aligned 1", "aligned 2"]);
    }

    #[test]
    fn a_newer_barrier_abandons_an_alignment_that_cannot_complete() {
        let mut a = Alignment::new(0, 2, []);
        let steps = run(
            &mut a,
            vec![
                Inbound::Barrier { id: 1, from: 0 },
                batch(0, 1),                         // after 0's barrier 1: held
                Inbound::Barrier { id: 2, from: 1 }, // 1 skipped checkpoint 1
                Inbound::Barrier { id: 2, from: 0 },
                Inbound::Barrier { id: 1, from: 1 }, // late: ignored
                batch(1, 2),
            ],
        );
        assert_eq!(steps, ["apply [1]", "aligned 2", "apply [2]"]);
    }

    #[test]
    fn a_source_out_of_range_is_an_error_not_an_end() {
        let mut a = Alignment::new(0, 2, []);
        assert!(matches!(a.on_message(Inbound::Eos { from: 0 }), Ok(Step::Wait)));
        let error = a.on_message(Inbound::Eos { from: 7 }).unwrap_err();
        assert!(error.to_string().contains("source partition 7 of 2"), "{error}");
        assert!(matches!(
            a.on_message(Inbound::Eos { from: 1 }),
            Ok(Step::Finished)
        ));
    }

    #[test]
    fn cancel_ends_the_partition() {
        let mut a = Alignment::new(0, 1, []);
        assert!(matches!(a.on_message(Inbound::Cancel), Ok(Step::Cancelled)));
    }
}
