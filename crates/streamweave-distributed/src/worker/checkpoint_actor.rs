//! The task that owns one attempt's checkpoint bookkeeping ([`AttemptCheckpoints`], pure) on
//! this worker: the attempt's command task, its source threads and its receivers send it
//! events over one channel through a [`CheckpointHandle`]; it feeds them to the core and
//! carries out the actions. Nothing of the bookkeeping is shared: the only state others see
//! is the sources' pause flags and record counts (atomics polled on the hot path).
//!
//! ```text
//!  command task --Connected(router), LeaveAt, Trigger, AdoptSource--+
//!  source thread --ask: SourceStarting / SourceReachedBarrier ------+--> actor: core.on_event
//!                --SourceParked / SourceExhausted -----------------+      |
//!  receiver --ask: ReceiverAligned; StateSaved (blocking pool) ----+      v
//!     PauseSource -> pause flag          StandIn -> barrier on the router for a source not
//!     Report -> the session (to the      reading; SourceLeft -> its record count to 0
//!     coordinator)                       Source / Receiver -> the answer to who asked
//! ```
//!
//! Sources and receivers ask at barriers, at the start of a slice and at its end, never per
//! record. The channel is unbounded: only this worker's own tasks feed it, a few events per
//! partition per checkpoint, and each asking task waits for its answer.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::checkpointing::{AttemptCheckpoints, CheckpointAction, CheckpointEvent, SourceGo};
use super::exchange::AttemptOut;
use crate::checkpoint::{CheckpointStore, StoredFile};
use crate::dataflow::plan::{SourceControl, LAG_UNKNOWN};
use crate::dataflow::DataflowError;
use crate::protocol::WorkerMessage;

/// The answer to a question.
type Answer = oneshot::Sender<CheckpointAction>;

enum Request {
    /// The attempt's router, then [`CheckpointEvent::Connected`].
    Connected(AttemptOut),
    Event(CheckpointEvent),
    Ask(CheckpointEvent, Answer),
}

/// How an attempt's tasks reach its checkpoint actor, and the attempt's checkpoint store.
#[derive(Clone)]
pub(crate) struct CheckpointHandle {
    requests: mpsc::UnboundedSender<Request>,
    /// Where receivers write their snapshots and read the one they restore.
    pub(crate) store: Arc<dyn CheckpointStore>,
}

/// Shared by an attempt's tasks: `None` without checkpoints.
pub(crate) type Checkpoints = Option<CheckpointHandle>;

/// The actor gone means the attempt is ending.
fn gone() -> DataflowError {
    DataflowError::Cancelled
}

impl CheckpointHandle {
    /// A handle to `store` with no actor behind it, for tests that only read the store.
    #[cfg(test)]
    pub(crate) fn detached(store: Arc<dyn CheckpointStore>) -> Self {
        let (requests, _) = mpsc::unbounded_channel();
        CheckpointHandle { requests, store }
    }

    /// [`CheckpointHandle::detached`], with what the handle sends (an acknowledgement is one).
    #[cfg(test)]
    pub(crate) fn detached_with_requests(
        store: Arc<dyn CheckpointStore>,
    ) -> (Self, mpsc::UnboundedReceiver<impl Sized>) {
        let (requests, received) = mpsc::unbounded_channel::<Request>();
        (CheckpointHandle { requests, store }, received)
    }

    /// A handle to `store` answered as the actor of an attempt that moves nothing answers a
    /// receiver (no hand-over at any barrier), for tests that drive a receiver through its
    /// barriers; the states it saves come out as (checkpoint, partition, file).
    #[cfg(test)]
    pub(crate) fn answering(
        store: Arc<dyn CheckpointStore>,
    ) -> (Self, mpsc::UnboundedReceiver<(u64, usize, StoredFile)>) {
        let (requests, mut received) = mpsc::unbounded_channel::<Request>();
        let (saved_tx, saved) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(request) = received.recv().await {
                match request {
                    Request::Ask(_, answer) => {
                        let _ = answer.send(CheckpointAction::Receiver { hand_over: false });
                    }
                    Request::Event(CheckpointEvent::StateSaved {
                        id, partition, file, ..
                    }) => {
                        let _ = saved_tx.send((id, partition, file));
                    }
                    _ => {}
                }
            }
        });
        (CheckpointHandle { requests, store }, saved)
    }

    fn send(&self, request: Request) {
        // The actor only stops with the attempt; then nothing is waiting for this.
        let _ = self.requests.send(request);
    }

    fn event(&self, event: CheckpointEvent) {
        self.send(Request::Event(event));
    }

    /// The attempt's router exists (sent by the command task).
    pub(crate) fn connected(&self, out: AttemptOut) {
        self.send(Request::Connected(out));
    }

    /// Checkpoint `id` is requested.
    pub(crate) fn trigger(&self, id: u64) {
        self.event(CheckpointEvent::Trigger { id });
    }

    /// `partition` leaves this worker at barrier `id`.
    pub(crate) fn leave_at(&self, partition: usize, id: u64) {
        self.event(CheckpointEvent::LeaveAt { partition, id });
    }

    /// This worker runs `partition`'s source from checkpoint `checkpoint` on.
    pub(crate) fn adopt_source(
        &self,
        partition: usize,
        checkpoint: u64,
        offset: u64,
        exhausted: bool,
        records: u64,
    ) {
        self.event(CheckpointEvent::AdoptSource {
            partition,
            checkpoint,
            offset,
            exhausted,
            records,
        });
    }

    /// On a source's blocking thread: asks, then carries out the answer on the task's router.
    /// Whether the task reads on.
    fn ask_source(&self, event: CheckpointEvent, out: &mut AttemptOut) -> Result<bool, DataflowError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ask(event, reply));
        let Ok(CheckpointAction::Source(SourceGo {
            routes,
            barrier,
            read,
        })) = answer.blocking_recv()
        else {
            return Err(gone());
        };
        out.reroute(routes);
        if let Some(id) = barrier {
            out.barrier(id)?;
            out.reroute(id);
        }
        Ok(read)
    }

    /// A source task starts reading with `out`: any barrier requested but not sent yet goes
    /// first. `Ok(false)`: the partition has left this worker, the task must not read.
    pub(crate) fn source_starting(
        &self,
        partition: usize,
        out: &mut AttemptOut,
    ) -> Result<bool, DataflowError> {
        self.ask_source(CheckpointEvent::SourceStarting { partition }, out)
    }

    /// A source task stopped at `offset` for a barrier: sends it and switches to the routes
    /// after it. `Ok(false)`: the partition leaves this worker at this barrier, the task ends.
    pub(crate) fn barrier_reached(
        &self,
        partition: usize,
        offset: u64,
        records: u64,
        out: &mut AttemptOut,
    ) -> Result<bool, DataflowError> {
        let event = CheckpointEvent::SourceReachedBarrier {
            partition,
            offset,
            records,
        };
        self.ask_source(event, out)
    }

    /// A source task gave its slot away at `offset`.
    pub(crate) fn source_parked(&self, partition: usize, offset: u64, records: u64) {
        self.event(CheckpointEvent::SourceParked {
            partition,
            offset,
            records,
        });
    }

    /// A source task read everything, up to `end`.
    pub(crate) fn source_exhausted(&self, partition: usize, end: u64, records: u64) {
        self.event(CheckpointEvent::SourceExhausted {
            partition,
            end,
            records,
        });
    }

    /// Receiver `partition` aligned barrier `id`: whether it hands the partition over there.
    pub(crate) async fn receiver_aligned(&self, partition: usize, id: u64) -> Result<bool, DataflowError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Ask(
            CheckpointEvent::ReceiverAligned { partition, id },
            reply,
        ));
        match answer.await {
            Ok(CheckpointAction::Receiver { hand_over }) => Ok(hand_over),
            _ => Err(gone()),
        }
    }

    /// Receiver `partition`'s state for checkpoint `id` is stored as `file` (`ended_sources`:
    /// a partition handed over at `id`, the sources it had counted ended).
    pub(crate) fn state_saved(&self, id: u64, partition: usize, file: StoredFile, ended_sources: Vec<usize>) {
        self.event(CheckpointEvent::StateSaved {
            id,
            partition,
            file,
            ended_sources,
        });
    }
}

/// See the module documentation.
pub(crate) struct CheckpointActor {
    core: AttemptCheckpoints,
    /// The attempt's router, once connected (for stand-in barriers).
    router: Option<AttemptOut>,
    /// By partition: the sources' pause flags and record counts.
    controls: Arc<Vec<SourceControl>>,
    reports: mpsc::UnboundedSender<WorkerMessage>,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl CheckpointActor {
    /// The actor around `core` and the handle that reaches it.
    pub(crate) fn new(
        core: AttemptCheckpoints,
        store: Arc<dyn CheckpointStore>,
        controls: Arc<Vec<SourceControl>>,
        reports: mpsc::UnboundedSender<WorkerMessage>,
    ) -> (Self, CheckpointHandle) {
        let (tx, requests) = mpsc::unbounded_channel();
        let actor = CheckpointActor {
            core,
            router: None,
            controls,
            reports,
            requests,
        };
        (actor, CheckpointHandle { requests: tx, store })
    }

    /// Runs until the attempt is cancelled or every handle is gone.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        loop {
            let request = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                request = self.requests.recv() => request,
            };
            // Every handle is gone: the attempt's tasks have all ended.
            let Some(request) = request else { return };
            let (event, mut answer) = match request {
                Request::Connected(out) => {
                    self.router = Some(out);
                    (CheckpointEvent::Connected, None)
                }
                Request::Event(event) => (event, None),
                Request::Ask(event, answer) => (event, Some(answer)),
            };
            for action in self.core.on_event(event) {
                match action {
                    CheckpointAction::PauseSource(p) => {
                        if let Some(control) = self.controls.get(p) {
                            control.pause.store(true, Ordering::Release);
                        }
                    }
                    CheckpointAction::StandIn {
                        partition,
                        routes,
                        id,
                    } => {
                        let Some(router) = &self.router else { continue };
                        let mut out = router.for_source(partition);
                        out.reroute(routes);
                        // Queues of links and local inboxes take markers without waiting. An
                        // error means the attempt is ending.
                        let _ = out.barrier(id);
                    }
                    CheckpointAction::Report(message) => {
                        let _ = self.reports.send(message);
                    }
                    CheckpointAction::SourceLeft(p) => {
                        if let Some(control) = self.controls.get(p) {
                            control.records_in.store(0, Ordering::Relaxed);
                            control.lag.store(LAG_UNKNOWN, Ordering::Relaxed);
                        }
                    }
                    answer_action @ (CheckpointAction::Source(_) | CheckpointAction::Receiver { .. }) => {
                        if let Some(answer) = answer.take() {
                            // The asker may have been cancelled meanwhile.
                            let _ = answer.send(answer_action);
                        }
                    }
                }
            }
        }
    }
}
