//! The worker's bounded pool for blocking work of job tasks: opening and committing sinks,
//! restoring and writing snapshots. Receivers run as async tasks on the runtime's threads (one
//! per core); what they must do on a blocking thread goes through here, so that a thousand
//! partitions snapshotting at one barrier queue for a few threads instead of starting a
//! thousand.

use std::sync::LazyLock;

use tokio::sync::Semaphore;

use crate::dataflow::DataflowError;

/// Blocking jobs at once, process-wide: enough to keep a disk busy, few enough that threads do
/// not scale with partitions.
fn pool_size() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
}

static POOL: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(pool_size()));

/// Runs `f` on a blocking thread once the pool has room. A panic in `f` comes back as an error
/// naming its message (it is user code: a sink, a snapshot of user state).
pub(crate) async fn run<T, F>(f: F) -> Result<T, DataflowError>
where
    F: FnOnce() -> Result<T, DataflowError> + Send + 'static,
    T: Send + 'static,
{
    let _permit = POOL.acquire().await.map_err(|_| DataflowError::Cancelled)?;
    // Guarded on the pool's thread, where the panic's location is known.
    unpooled(f).await
}

/// Runs `f` on a blocking thread outside the pool, for work that bounds itself (state loads
/// under their own limit): a panic in `f` comes back as an error, as with [`run`].
pub(crate) async fn unpooled<T, F>(f: F) -> Result<T, DataflowError>
where
    F: FnOnce() -> Result<T, DataflowError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(move || super::panics::guarded(f)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(super::panics::panicked(e.into_panic())),
        Err(_) => Err(DataflowError::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_at_most_the_pool_size_at_once_and_returns_results() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let (now, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs: Vec<_> = (0..32)
            .map(|i| {
                let (now, peak) = (Arc::clone(&now), Arc::clone(&peak));
                tokio::spawn(run(move || {
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    now.fetch_sub(1, Ordering::SeqCst);
                    Ok(i)
                }))
            })
            .collect();
        let mut sum = 0;
        for job in jobs {
            sum += job.await.unwrap().unwrap();
        }
        assert_eq!(sum, (0..32).sum::<i32>());
        assert!(peak.load(Ordering::SeqCst) <= pool_size());
    }

    #[tokio::test]
    async fn a_panic_becomes_an_error_with_its_message() {
        let error = run(|| -> Result<(), DataflowError> { panic!("bad record 17") })
            .await
            .unwrap_err();
        assert!(error.to_string().contains("bad record 17"), "{error}");
    }
}
