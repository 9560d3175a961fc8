//! [`Hooked`]: a test store, a [`MemoryStore`] with a hook run before each operation, so a test
//! can fail a put, hold a read back or look at the store between two steps of retention
//! without writing out the seven operations of the trait again.

use std::fmt;

use super::{CheckpointError, CheckpointId, CheckpointStore, Listed, MemoryStore};

/// An operation of the store, as its hook sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Write,
    Create,
    Read,
    Size,
    Delete,
    DeleteCheckpoint,
    List,
}

/// A [`MemoryStore`] (shared with the test through its clones) whose operations first run
/// `hook(op, checkpoint, name)`: an error from the hook is the operation's (`List` gets
/// checkpoint 0 and no name, `DeleteCheckpoint` no name).
pub(crate) struct Hooked<F> {
    inner: MemoryStore,
    hook: F,
}

impl<F> Hooked<F>
where
    F: Fn(Op, CheckpointId, &str) -> Result<(), CheckpointError> + Send + Sync,
{
    pub(crate) fn new(inner: &MemoryStore, hook: F) -> Self {
        Hooked {
            inner: inner.clone(),
            hook,
        }
    }
}

impl<F> fmt::Debug for Hooked<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked").field("inner", &self.inner).finish()
    }
}

impl<F> CheckpointStore for Hooked<F>
where
    F: Fn(Op, CheckpointId, &str) -> Result<(), CheckpointError> + Send + Sync,
{
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        (self.hook)(Op::Write, id, name)?;
        self.inner.write_object(id, name, bytes)
    }
    fn create_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<bool, CheckpointError> {
        (self.hook)(Op::Create, id, name)?;
        self.inner.create_object(id, name, bytes)
    }
    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        (self.hook)(Op::Read, id, name)?;
        self.inner.read_object(id, name)
    }
    fn object_size(&self, id: CheckpointId, name: &str) -> Result<u64, CheckpointError> {
        (self.hook)(Op::Size, id, name)?;
        self.inner.object_size(id, name)
    }
    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError> {
        (self.hook)(Op::Delete, id, name)?;
        self.inner.delete_object(id, name)
    }
    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        (self.hook)(Op::DeleteCheckpoint, id, "")?;
        self.inner.delete_checkpoint(id)
    }
    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        (self.hook)(Op::List, CheckpointId(0), "")?;
        self.inner.list()
    }
}
