//! [`with_state`]: a job's plan whose receivers keep their keyed state in the attempt's
//! backend. The worker wraps the plan it built once per attempt; everything else passes through.

use std::sync::Arc;

use super::StateBackend;
use crate::dataflow::plan::{ErasedPlan, ExchangeOut, LoadedState, Receiver, SourceControl};
use crate::dataflow::{DataflowError, SinkContext, SourceContext, SourceEnd, SourceOffset};

/// `plan` with its keyed stages on `state` (the plan itself when it is memory).
pub(crate) fn with_state(plan: Arc<dyn ErasedPlan>, state: StateBackend) -> Arc<dyn ErasedPlan> {
    match state {
        StateBackend::Memory => plan,
        state => Arc::new(StatefulPlan { inner: plan, state }),
    }
}

struct StatefulPlan {
    inner: Arc<dyn ErasedPlan>,
    state: StateBackend,
}

impl Drop for StatefulPlan {
    /// Closing a disk store's database waits for its background compaction to stop: not on
    /// an async runtime's thread, whose other tasks (heartbeats) would wait too.
    fn drop(&mut self) {
        let state = std::mem::take(&mut self.state);
        if let (StateBackend::Disk(_), Ok(runtime)) = (&state, tokio::runtime::Handle::try_current()) {
            drop(runtime.spawn_blocking(move || drop(state)));
        }
    }
}

impl ErasedPlan for StatefulPlan {
    fn run_source(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        control: &SourceControl,
        out: &mut dyn ExchangeOut,
    ) -> Result<SourceEnd, DataflowError> {
        self.inner.run_source(ctx, offset, control, out)
    }

    fn open_receiver(&self, ctx: &SinkContext) -> Result<Box<dyn Receiver>, DataflowError> {
        self.inner.open_receiver_in(ctx, &self.state)
    }

    fn open_receiver_in(
        &self,
        ctx: &SinkContext,
        state: &StateBackend,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        self.inner.open_receiver_in(ctx, state)
    }

    fn load_state(&self, partition: usize) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        self.inner.load_state_in(partition, &self.state)
    }

    fn load_state_in(
        &self,
        partition: usize,
        state: &StateBackend,
    ) -> Result<Option<Box<dyn LoadedState>>, DataflowError> {
        self.inner.load_state_in(partition, state)
    }

    fn open_loaded(
        &self,
        ctx: &SinkContext,
        state: Box<dyn LoadedState>,
    ) -> Result<Box<dyn Receiver>, DataflowError> {
        self.inner.open_loaded(ctx, state)
    }

    fn validate(&self) -> Result<(), DataflowError> {
        self.inner.validate()
    }

    fn validate_input(&self) -> Result<(), DataflowError> {
        self.inner.validate_input()
    }

    fn bounded(&self) -> bool {
        self.inner.bounded()
    }

    fn time_sliced(&self) -> bool {
        self.inner.time_sliced()
    }

    fn empty_sources(&self, num_partitions: usize) -> Result<Option<Vec<bool>>, DataflowError> {
        self.inner.empty_sources(num_partitions)
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        self.inner.commit_epochs(partition, upto)
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        self.inner.discard_after(partition, after)
    }
}
