//! Starting work on the storage runtime without waiting for it: what lets a synchronous
//! reader fetch the next chunk while it parses the current one, or a writer upload one part
//! while it fills the next.

use std::future::Future;

use tokio::task::JoinHandle;

/// Runs `future` on the storage runtime and returns its handle at once; wait for it with
/// [`block_on`](super::block_on)`(handle)`, or drop it (or `abort()` it) to stop caring.
///
/// ```
/// use streamweave_distributed::storage::{block_on, spawn};
/// let handle = spawn(async { 6 * 7 });
/// assert_eq!(block_on(handle).unwrap(), 42);
/// ```
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    super::runtime().spawn(future)
}
