//! [`History`]: successive cluster snapshots in, what happened between them out.
//!
//! A [`ClusterStatus`] is a snapshot: its record counts belong to the current attempt (they go
//! back when an attempt restarts from a checkpoint), it names only the last checkpoint, and it
//! does not say who owned a partition before. The console needs rates over minutes, the
//! checkpoint history and a list of events, and Prometheus needs counters that never go down,
//! so this struct compares each snapshot with the one before. It never reads the clock: the
//! caller passes `now`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::protocol::{ClusterStatus, JobState};
use crate::types::{PartitionId, WorkerId, WorkerState};

/// How many throughput samples are kept (five minutes at two a second).
pub const MAX_SAMPLES: usize = 600;
/// How many checkpoints the history keeps.
pub const MAX_CHECKPOINTS: usize = 100;
/// How many events are kept.
pub const MAX_EVENTS: usize = 200;

/// One throughput sample.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Milliseconds since the history started.
    pub at_ms: u64,
    /// Records read per second since the sample before.
    pub records_in_per_s: f64,
    /// Records committed per second since the sample before.
    pub records_out_per_s: f64,
}

/// A completed checkpoint, as seen in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CheckpointRecord {
    /// Its id.
    pub id: u64,
    /// From trigger to the last acknowledgement, in milliseconds.
    pub duration_ms: Option<u64>,
    /// The partitions' state, in bytes.
    pub size_bytes: Option<u64>,
    /// When it was first seen completed, in milliseconds since the history started.
    pub at_ms: u64,
}

/// What an [`Event`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A worker joined, changed state or left.
    Worker,
    /// The job changed state or started an attempt.
    Job,
    /// A checkpoint completed or was abandoned.
    Checkpoint,
    /// Partitions changed owner.
    Partitions,
}

/// Something that changed between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Milliseconds since the history started.
    pub at_ms: u64,
    /// What it is about.
    pub kind: EventKind,
    /// What happened, for people.
    pub message: String,
}

/// Totals that only grow, for Prometheus counters.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Totals {
    /// Records read by the job's sources, over every attempt.
    pub records_in: u64,
    /// Records committed by the job's sinks, over every attempt.
    pub records_out: u64,
    /// Checkpoints triggered and abandoned without completing.
    pub checkpoint_failures: u64,
    /// Partitions that finished a move between two live workers.
    pub moves: u64,
    /// Seconds those partitions spent moving, summed (as observed between snapshots).
    pub move_pause_seconds: f64,
}

/// Throughput samples, checkpoint history, events and monotonic totals derived from successive
/// [`ClusterStatus`] snapshots.
///
/// ```
/// use std::time::{Duration, Instant};
/// use streamweave_distributed::observe::History;
/// use streamweave_distributed::protocol::ClusterStatus;
/// use streamweave_distributed::Generation;
///
/// let start = Instant::now();
/// let status = ClusterStatus {
///     cluster: "default".into(), generation: Generation(1), partitions: 2, strategy: "gradual".into(),
///     unassigned: vec![0, 1], moving: vec![], workers: vec![], job: None, checkpoints: None,
/// };
/// let mut history = History::new(start);
/// history.observe(status.clone(), start);
/// history.observe(status, start + Duration::from_millis(500));
/// assert_eq!(history.samples().count(), 1);
/// ```
#[derive(Debug)]
pub struct History {
    start: Instant,
    last: Option<(ClusterStatus, Instant)>,
    samples: VecDeque<Sample>,
    checkpoints: VecDeque<CheckpointRecord>,
    events: VecDeque<Event>,
    totals: Totals,
    /// Partitions seen moving, and since when.
    moving_since: HashMap<PartitionId, Instant>,
}

impl History {
    /// An empty history whose times count from `start`.
    pub fn new(start: Instant) -> Self {
        History {
            start,
            last: None,
            samples: VecDeque::new(),
            checkpoints: VecDeque::new(),
            events: VecDeque::new(),
            totals: Totals::default(),
            moving_since: HashMap::new(),
        }
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&ClusterStatus> {
        self.last.as_ref().map(|(s, _)| s)
    }

    /// Throughput samples, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// Completed checkpoints, oldest first.
    pub fn checkpoints(&self) -> impl Iterator<Item = &CheckpointRecord> {
        self.checkpoints.iter()
    }

    /// Events, oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// The monotonic totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Milliseconds from the start of the history to `now`.
    pub fn ms_since_start(&self, now: Instant) -> u64 {
        millis(now.saturating_duration_since(self.start))
    }

    /// Takes a new snapshot taken at `now`; returns the events it caused (also kept).
    pub fn observe(&mut self, status: ClusterStatus, now: Instant) -> Vec<Event> {
        let at_ms = self.ms_since_start(now);
        let mut events = Vec::new();
        let mut event = |kind, message: String| events.push(Event { at_ms, kind, message });
        if let Some((before, then)) = self.last.take() {
            self.sample(&before, &status, now.saturating_duration_since(then), at_ms);
            diff_workers(&before, &status, &mut event);
            diff_job(&before, &status, &mut event);
            self.diff_checkpoints(&before, &status, at_ms, &mut event);
            diff_owners(&before, &status, &mut event);
        } else {
            for worker in &status.workers {
                event(
                    EventKind::Worker,
                    format!("worker {} {}", worker.id, worker.state),
                );
            }
            if let Some(job) = &status.job {
                event(
                    EventKind::Job,
                    format!("job {} {}", job.name, state_name(job.state)),
                );
            }
            self.totals.records_in = status.job.as_ref().map_or(0, |j| j.records_in);
            self.totals.records_out = status.job.as_ref().map_or(0, |j| j.records_out);
        }
        self.track_moves(&status, now);
        self.last = Some((status, now));
        for e in &events {
            push_bounded(&mut self.events, e.clone(), MAX_EVENTS);
        }
        events
    }

    /// A throughput sample from two snapshots `elapsed` apart; the totals grow by what the
    /// counts grew (a count that went back started a new attempt: nothing is added).
    fn sample(&mut self, before: &ClusterStatus, after: &ClusterStatus, elapsed: Duration, at_ms: u64) {
        let counts = |s: &ClusterStatus| s.job.as_ref().map_or((0, 0), |j| (j.records_in, j.records_out));
        let ((in0, out0), (in1, out1)) = (counts(before), counts(after));
        let (d_in, d_out) = (in1.saturating_sub(in0), out1.saturating_sub(out0));
        self.totals.records_in += d_in;
        self.totals.records_out += d_out;
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return;
        }
        let sample = Sample {
            at_ms,
            records_in_per_s: d_in as f64 / seconds,
            records_out_per_s: d_out as f64 / seconds,
        };
        push_bounded(&mut self.samples, sample, MAX_SAMPLES);
    }

    fn diff_checkpoints(
        &mut self,
        before: &ClusterStatus,
        after: &ClusterStatus,
        at_ms: u64,
        event: &mut impl FnMut(EventKind, String),
    ) {
        let (Some(b), Some(a)) = (&before.checkpoints, &after.checkpoints) else {
            return;
        };
        if a.last_completed.is_some() && a.last_completed != b.last_completed {
            let id = a.last_completed.unwrap_or_default();
            let record = CheckpointRecord {
                id,
                duration_ms: a.last_duration_ms,
                size_bytes: a.last_size_bytes,
                at_ms,
            };
            let took = a
                .last_duration_ms
                .map_or(String::new(), |d| format!(" in {d} ms"));
            let size = a
                .last_size_bytes
                .map_or(String::new(), |s| format!(", {s} bytes"));
            event(
                EventKind::Checkpoint,
                format!("checkpoint {id} completed{took}{size}"),
            );
            push_bounded(&mut self.checkpoints, record, MAX_CHECKPOINTS);
        }
        // A checkpoint in flight that is no longer, and not completed: abandoned (timed out, or
        // its attempt was aborted).
        if let Some(id) = b.in_flight {
            let done = a.last_completed.is_some_and(|c| c >= id);
            if a.in_flight != Some(id) && !done {
                self.totals.checkpoint_failures += 1;
                event(EventKind::Checkpoint, format!("checkpoint {id} abandoned"));
            }
        }
    }

    /// Counts finished moves and the time their partitions spent moving.
    fn track_moves(&mut self, status: &ClusterStatus, now: Instant) {
        let moving: Vec<PartitionId> = status.moving.iter().map(|m| m.partition).collect();
        for p in &moving {
            self.moving_since.entry(*p).or_insert(now);
        }
        let owned: Vec<PartitionId> = status.workers.iter().flat_map(|w| w.partitions.clone()).collect();
        let finished: Vec<PartitionId> = self
            .moving_since
            .keys()
            .filter(|p| !moving.contains(p))
            .copied()
            .collect();
        for p in finished {
            if let Some(since) = self.moving_since.remove(&p) {
                if owned.contains(&p) {
                    self.totals.moves += 1;
                    self.totals.move_pause_seconds += now.saturating_duration_since(since).as_secs_f64();
                }
            }
        }
    }
}

/// Workers that joined, changed state or health, or left.
fn diff_workers(before: &ClusterStatus, after: &ClusterStatus, event: &mut impl FnMut(EventKind, String)) {
    let old: BTreeMap<&WorkerId, (WorkerState, bool)> = before
        .workers
        .iter()
        .map(|w| (&w.id, (w.state, w.healthy)))
        .collect();
    let new: BTreeMap<&WorkerId, (WorkerState, bool)> = after
        .workers
        .iter()
        .map(|w| (&w.id, (w.state, w.healthy)))
        .collect();
    for (id, (state, healthy)) in &new {
        match old.get(id) {
            None => event(EventKind::Worker, format!("worker {id} joined ({state})")),
            Some((was, _)) if was != state => {
                event(EventKind::Worker, format!("worker {id} {was} -> {state}"))
            }
            Some((_, was_healthy)) if *was_healthy && !healthy => {
                event(EventKind::Worker, format!("worker {id} missed its heartbeats"))
            }
            Some(_) => {}
        }
    }
    for id in old.keys().filter(|id| !new.contains_key(*id)) {
        event(EventKind::Worker, format!("worker {id} left the cluster"));
    }
}

fn diff_job(before: &ClusterStatus, after: &ClusterStatus, event: &mut impl FnMut(EventKind, String)) {
    let (Some(b), Some(a)) = (&before.job, &after.job) else {
        return;
    };
    if a.state != b.state {
        let why = match (&a.error, a.state) {
            (Some(e), JobState::Restarting | JobState::Failed) => format!(": {e}"),
            _ => String::new(),
        };
        event(
            EventKind::Job,
            format!("job {} {}{why}", a.name, state_name(a.state)),
        );
    }
    if a.attempt != b.attempt && a.attempt > 0 {
        let from = a
            .last_restored_checkpoint
            .map_or("the beginning".to_string(), |c| format!("checkpoint {c}"));
        event(
            EventKind::Job,
            format!("attempt {} started from {from}", a.attempt),
        );
    }
}

/// Partitions that changed owner, grouped by (from, to).
fn diff_owners(before: &ClusterStatus, after: &ClusterStatus, event: &mut impl FnMut(EventKind, String)) {
    let owners = |s: &ClusterStatus| -> HashMap<PartitionId, WorkerId> {
        s.workers
            .iter()
            .flat_map(|w| w.partitions.iter().map(|p| (*p, w.id.clone())))
            .collect()
    };
    let (old, new) = (owners(before), owners(after));
    let mut changes: BTreeMap<(String, String), Vec<PartitionId>> = BTreeMap::new();
    for p in 0..after.partitions {
        let (from, to) = (old.get(&p), new.get(&p));
        if from != to {
            let name = |w: Option<&WorkerId>| w.map_or("nobody".to_string(), ToString::to_string);
            changes.entry((name(from), name(to))).or_default().push(p);
        }
    }
    for ((from, to), partitions) in changes {
        let list: Vec<String> = partitions.iter().map(ToString::to_string).collect();
        event(
            EventKind::Partitions,
            format!("partitions {} from {from} to {to}", list.join(",")),
        );
    }
}

/// The job state as the status's JSON names it.
pub(crate) fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Waiting => "waiting",
        JobState::Running => "running",
        JobState::Restarting => "restarting",
        JobState::Finished => "finished",
        JobState::Failed => "failed",
        JobState::Stopped => "stopped",
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() == max {
        queue.pop_front();
    }
    queue.push_back(item);
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
