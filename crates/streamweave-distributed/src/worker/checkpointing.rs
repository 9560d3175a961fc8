//! A worker's side of one attempt's checkpoints as a synchronous state machine: which
//! checkpoint was requested, where each of its source partitions stands, the partitions leaving
//! it at a barrier, and the two halves of each partition's acknowledgement (the source's offset,
//! the receiver's state) until both are in. It owns no channel, no router and no clock (nothing
//! in it depends on time): one task of the attempt (`checkpoint_actor.rs`) feeds it
//! [`CheckpointEvent`]s from the attempt's command task, its source threads and its receivers,
//! and carries out the [`CheckpointAction`]s it returns.
//!
//! ```text
//!  command task: Connected, LeaveAt{p, id}, Trigger{id}, AdoptSource{p, ...}
//!  source p:     SourceStarting, SourceReachedBarrier{offset}, SourceParked, SourceExhausted
//!  receiver q:   ReceiverAligned{id}, StateSaved{id, file, ended sources of a hand-over}
//!        |
//!        v
//!  AttemptCheckpoints::on_event --> PauseSource(p)          running source: stop at next record
//!                                   StandIn{p, routes, id}  barrier of a source not reading
//!                                   Report(CheckpointAck)   both halves of (id, p) are in
//!                                   SourceLeft(p)           p left at a barrier: its count goes
//!                                   Source(SourceGo)        answer to a source's question
//!                                   Receiver{hand_over}     answer to a receiver's question
//! ```
//!
//! A source that is not reading (waiting for a slot, parked) is "not started": once the
//! attempt's router exists its barriers are sent for it at its offset, so receivers never wait
//! for a source that waits for a slot.

use std::collections::BTreeMap;

use crate::checkpoint::StoredFile;
use crate::protocol::WorkerMessage;

/// Where one source partition stands on this worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct SourceProgress {
    /// Whether this worker runs the partition's source (partitions move in and out).
    owned: bool,
    /// Its offset after the last barrier, at its end, or where it parked.
    offset: u64,
    /// Whether its share is exhausted (its end-of-stream sent).
    exhausted: bool,
    /// Whether its task is reading (a task may wait for a slot, or park between slices).
    started: bool,
    /// The newest checkpoint it has acknowledged.
    acked: u64,
    /// Records it had read when it last stopped (the count goes into the acknowledgement).
    records: u64,
}

#[derive(Debug, Default)]
struct Halves {
    /// Offset, exhausted, records read.
    source: Option<(u64, bool, u64)>,
    state: Option<StoredFile>,
    /// A partition handed over at the barrier: the sources its receiver counted ended.
    ended_sources: Vec<usize>,
}

/// What happens to one attempt's checkpoints on this worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointEvent {
    /// The attempt's router exists: barriers of sources that are not reading can go out.
    Connected,
    /// The coordinator asks for checkpoint `id`.
    Trigger { id: u64 },
    /// `partition` leaves this worker at barrier `id` (registered before `id` is triggered).
    LeaveAt { partition: usize, id: u64 },
    /// A source task is about to read (answered with [`CheckpointAction::Source`]).
    SourceStarting { partition: usize },
    /// A source task stopped at `offset` for a barrier, having read `records` (answered).
    SourceReachedBarrier {
        partition: usize,
        offset: u64,
        records: u64,
    },
    /// A source task gave its slot away at `offset` (between barriers).
    SourceParked {
        partition: usize,
        offset: u64,
        records: u64,
    },
    /// A source task read everything, up to `end`.
    SourceExhausted {
        partition: usize,
        end: u64,
        records: u64,
    },
    /// Receiver `partition` aligned barrier `id` (answered with [`CheckpointAction::Receiver`]).
    ReceiverAligned { partition: usize, id: u64 },
    /// Receiver `partition`'s state for checkpoint `id` is stored as `file`; a partition
    /// handed over at `id` names the sources it had counted ended (for its new owner).
    StateSaved {
        id: u64,
        partition: usize,
        file: StoredFile,
        ended_sources: Vec<usize>,
    },
    /// This worker takes over `partition`'s source from checkpoint `checkpoint`.
    AdoptSource {
        partition: usize,
        checkpoint: u64,
        offset: u64,
        exhausted: bool,
        records: u64,
    },
}

/// What a source task does after it asked: reroute to the routes after barrier `routes`, send
/// `barrier` (then reroute to it), and read on only if `read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SourceGo {
    pub(crate) routes: u64,
    pub(crate) barrier: Option<u64>,
    pub(crate) read: bool,
}

/// What the actor carries out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointAction {
    /// Set the source's pause flag: it stops at its next record and reports the barrier.
    PauseSource(usize),
    /// Send barrier `id` for source `partition`, which is not reading, on the routes after
    /// barrier `routes` (then its routes after `id` apply).
    StandIn { partition: usize, routes: u64, id: u64 },
    /// Send this to the coordinator (a `CheckpointAck`).
    Report(WorkerMessage),
    /// `partition`'s source left this worker: its record count goes with it to the new owner.
    SourceLeft(usize),
    /// The answer to the source task that asked.
    Source(SourceGo),
    /// The answer to the receiver that asked: whether it hands its partition over here.
    Receiver { hand_over: bool },
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct AttemptCheckpoints {
    attempt: u64,
    /// The newest checkpoint requested.
    requested: u64,
    /// Whether the attempt's router exists (stand-in barriers need it).
    connected: bool,
    /// By partition.
    sources: Vec<SourceProgress>,
    /// Partitions that leave this worker at a checkpoint barrier: partition -> barrier.
    leaving: BTreeMap<usize, u64>,
    halves: BTreeMap<(u64, usize), Halves>,
}

impl AttemptCheckpoints {
    /// `start[p]`: where partition `p`'s source starts and the records it had read, `Some` for
    /// the partitions this worker owns; `restored`: the checkpoint the attempt restored (0: none).
    pub(crate) fn new(attempt: u64, start: Vec<Option<(u64, u64)>>, restored: u64) -> Self {
        let sources = start
            .into_iter()
            .map(|start| SourceProgress {
                owned: start.is_some(),
                offset: start.map_or(0, |(offset, _)| offset),
                records: start.map_or(0, |(_, records)| records),
                acked: restored,
                ..SourceProgress::default()
            })
            .collect();
        AttemptCheckpoints {
            attempt,
            requested: restored,
            connected: false,
            sources,
            leaving: BTreeMap::new(),
            halves: BTreeMap::new(),
        }
    }

    /// Takes one event, returns what to do, in order. Events about partitions out of range are
    /// ignored (questions about them are answered "stop").
    pub(crate) fn on_event(&mut self, event: CheckpointEvent) -> Vec<CheckpointAction> {
        let mut actions = Vec::new();
        match event {
            CheckpointEvent::Connected => {
                self.connected = true;
                self.stand_in_for_unstarted(&mut actions);
            }
            CheckpointEvent::Trigger { id } => {
                if id > self.requested {
                    self.requested = id;
                    self.serve_requested(&mut actions);
                }
            }
            CheckpointEvent::LeaveAt { partition, id } => {
                self.leaving.insert(partition, id);
            }
            CheckpointEvent::SourceStarting { partition } => {
                let go = self.source_starting(partition, &mut actions);
                actions.push(CheckpointAction::Source(go));
            }
            CheckpointEvent::SourceReachedBarrier {
                partition,
                offset,
                records,
            } => {
                let go = self.barrier_reached(partition, offset, records, &mut actions);
                actions.push(CheckpointAction::Source(go));
            }
            CheckpointEvent::SourceParked {
                partition,
                offset,
                records,
            } => {
                if let Some(progress) = self.sources.get_mut(partition) {
                    progress.started = false;
                    progress.offset = offset;
                    progress.records = records;
                    // A barrier requested while the task was stopping found it reading and
                    // only paused it: it goes out now.
                    self.stand_in_for_unstarted(&mut actions);
                }
            }
            CheckpointEvent::SourceExhausted {
                partition,
                end,
                records,
            } => {
                if let Some(progress) = self.sources.get_mut(partition) {
                    progress.exhausted = true;
                    progress.offset = end;
                    progress.records = records;
                    // A barrier requested while the last records went out: the end stands in
                    // for it (the end-of-stream follows).
                    if self.requested > progress.acked {
                        self.acknowledge(partition, self.requested, true, &mut actions);
                    }
                }
            }
            CheckpointEvent::ReceiverAligned { partition, id } => {
                actions.push(CheckpointAction::Receiver {
                    hand_over: self.leaves_at(partition, id),
                });
            }
            CheckpointEvent::StateSaved {
                id,
                partition,
                file,
                ended_sources,
            } => {
                self.complete(id, partition, &mut actions, |h| {
                    h.state = Some(file);
                    h.ended_sources = ended_sources;
                });
            }
            CheckpointEvent::AdoptSource {
                partition,
                checkpoint,
                offset,
                exhausted,
                records,
            } => {
                if let Some(progress) = self.sources.get_mut(partition) {
                    *progress = SourceProgress {
                        owned: true,
                        offset,
                        exhausted,
                        started: false,
                        acked: checkpoint,
                        records,
                    };
                    // A checkpoint requested since is answered at once when the source cannot
                    // answer it itself.
                    self.serve_requested(&mut actions);
                }
            }
        }
        actions
    }

    fn leaves_at(&self, partition: usize, id: u64) -> bool {
        self.leaving.get(&partition) == Some(&id)
    }

    /// A source task starts reading: it sends any barrier requested but not sent yet first,
    /// so that everything it reads follows it; it does not read if the partition has left.
    fn source_starting(&mut self, partition: usize, actions: &mut Vec<CheckpointAction>) -> SourceGo {
        let requested = self.requested;
        let Some(progress) = self.sources.get_mut(partition) else {
            return SourceGo {
                routes: 0,
                barrier: None,
                read: false,
            };
        };
        progress.started = true;
        let routes = progress.acked;
        if !progress.owned {
            return SourceGo {
                routes,
                barrier: None,
                read: false,
            };
        }
        if requested > routes {
            let read = self.acknowledge(partition, requested, false, actions);
            return SourceGo {
                routes,
                barrier: Some(requested),
                read,
            };
        }
        SourceGo {
            routes,
            barrier: None,
            read: true,
        }
    }

    /// A source task stopped at `offset` for the requested barrier: it acknowledges, sends the
    /// barrier and switches to the routes after it; it ends if the partition leaves here.
    fn barrier_reached(
        &mut self,
        partition: usize,
        offset: u64,
        records: u64,
        actions: &mut Vec<CheckpointAction>,
    ) -> SourceGo {
        let requested = self.requested;
        let Some(progress) = self.sources.get_mut(partition) else {
            return SourceGo {
                routes: 0,
                barrier: None,
                read: false,
            };
        };
        progress.offset = offset;
        progress.records = records;
        let routes = progress.acked;
        if requested <= routes {
            // Stopped for another reason (its slot is wanted): nothing to send.
            return SourceGo {
                routes,
                barrier: None,
                read: true,
            };
        }
        let read = self.acknowledge(partition, requested, false, actions);
        SourceGo {
            routes,
            barrier: Some(requested),
            read,
        }
    }

    /// Makes every owned source answer the requested checkpoint: exhausted ones with their
    /// end, reading ones by pausing, the others through a stand-in barrier.
    fn serve_requested(&mut self, actions: &mut Vec<CheckpointAction>) {
        let id = self.requested;
        for partition in 0..self.sources.len() {
            let progress = &self.sources[partition];
            if !progress.owned || id <= progress.acked {
                continue;
            }
            if progress.exhausted {
                self.acknowledge(partition, id, true, actions);
            } else if progress.started {
                actions.push(CheckpointAction::PauseSource(partition));
            }
        }
        self.stand_in_for_unstarted(actions);
    }

    /// Once connected: the requested barrier for every owned source that is not reading, at its
    /// offset.
    fn stand_in_for_unstarted(&mut self, actions: &mut Vec<CheckpointAction>) {
        if !self.connected {
            return;
        }
        let id = self.requested;
        for partition in 0..self.sources.len() {
            let progress = &self.sources[partition];
            if progress.owned && !progress.started && !progress.exhausted && id > progress.acked {
                actions.push(CheckpointAction::StandIn {
                    partition,
                    routes: progress.acked,
                    id,
                });
                self.acknowledge(partition, id, false, actions);
            }
        }
    }

    /// Partition `partition`'s source has answered checkpoint `id` at its recorded offset
    /// (`exhausted`: with its end): the source half of the acknowledgement, with the records
    /// read (the source is stopped, so the count is exact). If the partition leaves this worker
    /// at `id`, the source is no longer this worker's and its count goes with it. Whether it
    /// stays.
    fn acknowledge(
        &mut self,
        partition: usize,
        id: u64,
        exhausted: bool,
        actions: &mut Vec<CheckpointAction>,
    ) -> bool {
        let stays = !self.leaves_at(partition, id);
        let progress = &mut self.sources[partition];
        progress.acked = id;
        progress.owned = stays;
        let half = (progress.offset, exhausted, progress.records);
        self.complete(id, partition, actions, |h| h.source = Some(half));
        if !stays {
            actions.push(CheckpointAction::SourceLeft(partition));
        }
        stays
    }

    fn complete(
        &mut self,
        id: u64,
        partition: usize,
        actions: &mut Vec<CheckpointAction>,
        fill: impl FnOnce(&mut Halves),
    ) {
        let entry = self.halves.entry((id, partition)).or_default();
        fill(entry);
        let (Some((source_offset, source_exhausted, source_records)), Some(state)) =
            (entry.source, entry.state.clone())
        else {
            return;
        };
        let ended_sources = std::mem::take(&mut entry.ended_sources);
        self.halves.remove(&(id, partition));
        // Older checkpoints' halves can never complete now.
        self.halves.retain(|(i, _), _| *i >= id);
        actions.push(CheckpointAction::Report(WorkerMessage::CheckpointAck {
            attempt: self.attempt,
            id,
            partition,
            state_file: state.name,
            state_bytes: state.size,
            state_crc32: state.crc32,
            source_offset,
            source_exhausted,
            source_records,
            ended_sources,
        }));
    }
}

#[cfg(test)]
#[path = "checkpointing_tests.rs"]
mod tests;
