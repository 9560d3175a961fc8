//! Phase two of the sinks' two-phase commit on a worker: once the coordinator has committed a
//! checkpoint, each partition's sink makes the epochs up to it visible (`CommitEpochs`); the
//! job runner runs this on a blocking thread and reports `EpochsCommitted` when all succeeded.

use super::job_tasks::TaskFailure;
use crate::dataflow::plan::ErasedPlan;

/// Commits epochs up to `upto` (`u64::MAX`: the final commit of a finished job) for each of
/// `partitions`; the first sink that fails or panics fails the commit with its partition.
pub(super) fn commit(plan: &dyn ErasedPlan, partitions: &[usize], upto: u64) -> Result<(), Box<TaskFailure>> {
    if upto == u64::MAX {
        final_commit_test_delay();
    }
    for &q in partitions {
        // The sink's commit is user code (panics.rs).
        super::panics::guarded(|| plan.commit_epochs(q, upto)).map_err(|error| {
            Box::new(TaskFailure {
                partition: Some(q),
                error,
            })
        })?;
    }
    Ok(())
}

/// Test-only, in debug builds: `SWD_TEST_FINAL_COMMIT_DELAY_MS=N` delays this worker process's
/// first final commit (the sinks' `CommitEpochs{upto: MAX}`) by N ms, so that process tests can
/// kill the coordinator between the last `PartitionDone` and the job's end
/// (`crates/swd/tests/failover_coordinator.rs`); later ones (a restarted job's) are not delayed.
/// Release builds ignore it.
fn final_commit_test_delay() {
    #[cfg(debug_assertions)]
    {
        static DELAYED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let ms = std::env::var("SWD_TEST_FINAL_COMMIT_DELAY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(ms) = ms.filter(|_| !DELAYED.swap(true, std::sync::atomic::Ordering::Relaxed)) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }
}
