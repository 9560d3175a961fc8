//! Where keyed state lives: in memory (hash maps inside the stages, the default) or on disk (an
//! embedded LSM-tree database, fjall, per worker and job attempt), chosen per job by its `state.backend` parameter
//! (`swd coordinator|local --state-backend memory|disk`).
//!
//! ```text
//! JobSpec params["state.backend"] --BackendKind::of--> worker launch: StateBackend::{Memory, Disk(store)}
//!   --with_state(plan)--> open_receiver(ctx) --StageFactory(&StageContext)--> Keyed | DiskKeyed
//! ```
//!
//! Both backends take the same snapshots (a base is the map of every key's accumulator, a
//! delta the keys changed since the previous segment), so a job checkpointed with one restores
//! with the other. Files: `store.rs` (the database), `disk_keyed.rs` (the keyed stage on
//! it), `changes.rs` (the keys a delta holds), `tracked.rs` (the memory backend's table, which marks the
//! keys a delta holds), `plan.rs` (the plan that hands the attempt's backend to its stages).

mod changes;
mod disk_keyed;
mod merge;
mod plan;
mod store;
pub(crate) mod tracked;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use disk_keyed::CACHE_ENTRIES;
pub(crate) use merge::{collapse_run, merge_segments};
use plan::with_state;
pub use store::{DiskStore, DISK_CACHE_BYTES, PART_BYTES};

use super::changelog::ChangelogCount;
use super::plan::ErasedPlan;
use super::stage::{Keyed, Stage, StageFactory, Update};
use super::{DataflowError, JobSpec};
use serde::{de::DeserializeOwned, Serialize};
use std::hash::Hash;

/// The job parameter naming the backend (`memory` or `disk`).
pub const STATE_BACKEND_PARAM: &str = "state.backend";

/// The job parameter setting the size of the parts a disk-backed partition's checkpoint base
/// is written in (bytes; default [`PART_BYTES`]).
pub const PART_BYTES_PARAM: &str = "state.part_bytes";

/// The part size `spec` asks for (see [`PART_BYTES_PARAM`]).
///
/// ```
/// use streamweave_distributed::dataflow::{state::part_bytes, JobSpec};
/// let mut spec = JobSpec::new("wordcount");
/// assert_eq!(part_bytes(&spec).unwrap(), 16 << 20);
/// spec.params.insert("state.part_bytes".into(), "65536".into());
/// assert_eq!(part_bytes(&spec).unwrap(), 65536);
/// spec.params.insert("state.part_bytes".into(), "0".into());
/// assert!(part_bytes(&spec).unwrap_err().to_string().contains("state.part_bytes"));
/// ```
pub fn part_bytes(spec: &JobSpec) -> Result<usize, DataflowError> {
    let Some(value) = spec.params.get(PART_BYTES_PARAM) else {
        return Ok(PART_BYTES);
    };
    match value.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(DataflowError::InvalidJob(format!(
            "{PART_BYTES_PARAM} must be a positive number of bytes, not {value:?}"
        ))),
    }
}

/// Checks the state parameters of `spec` ([`STATE_BACKEND_PARAM`], [`PART_BYTES_PARAM`]), so
/// that a bad value is refused when the job is given, not when a worker starts it.
///
/// ```
/// use streamweave_distributed::dataflow::{state::check_params, JobSpec};
/// let mut spec = JobSpec::new("wordcount");
/// spec.params.insert("state.backend".into(), "disk".into());
/// assert!(check_params(&spec).is_ok());
/// spec.params.insert("state.part_bytes".into(), "lots".into());
/// assert!(check_params(&spec).unwrap_err().to_string().contains("state.part_bytes"));
/// spec.params.insert("state.backend".into(), "rocksdb".into());
/// assert!(check_params(&spec).unwrap_err().to_string().contains("state.backend"));
/// ```
pub fn check_params(spec: &JobSpec) -> Result<(), DataflowError> {
    BackendKind::of(spec)?;
    part_bytes(spec).map(|_| ())
}

/// Which backend a job asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Hash maps in the stages.
    #[default]
    Memory,
    /// An embedded database per worker and attempt.
    Disk,
}

impl BackendKind {
    /// The backend `spec` asks for (memory without the parameter).
    ///
    /// ```
    /// use streamweave_distributed::dataflow::{state::BackendKind, JobSpec};
    /// let mut spec = JobSpec::new("wordcount");
    /// assert_eq!(BackendKind::of(&spec).unwrap(), BackendKind::Memory);
    /// spec.params.insert("state.backend".into(), "disk".into());
    /// assert_eq!(BackendKind::of(&spec).unwrap(), BackendKind::Disk);
    /// ```
    pub fn of(spec: &JobSpec) -> Result<BackendKind, DataflowError> {
        match spec.params.get(STATE_BACKEND_PARAM).map(String::as_str) {
            None | Some("memory") => Ok(BackendKind::Memory),
            Some("disk") => Ok(BackendKind::Disk),
            Some(other) => Err(DataflowError::InvalidJob(format!(
                "{STATE_BACKEND_PARAM} must be memory or disk, not {other:?}"
            ))),
        }
    }
}

/// The keyed state backend of one job attempt on one worker.
#[derive(Clone, Debug, Default)]
pub enum StateBackend {
    /// Hash maps in the stages.
    #[default]
    Memory,
    /// Every keyed stage of the attempt keeps its state in this store.
    Disk(Arc<DiskStore>),
}

/// The factory of a changelog count (see `changelog.rs`) on either backend.
pub(super) fn changelog_factory<K>() -> StageFactory<(K, u64)>
where
    K: Clone + Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
{
    let add: Update<u64, u64> = super::stage::merging(Arc::new(|a, b| a + b));
    Arc::new(move |ctx: &StageContext| match ctx.state {
        StateBackend::Memory => Ok(ChangelogCount::<K>::boxed() as Box<dyn Stage<(K, u64)>>),
        StateBackend::Disk(store) => {
            let stage =
                disk_keyed::DiskKeyed::<K, u64, u64>::open(store, ctx.partition, &add, None, CACHE_ENTRIES)?;
            Ok(Box::new(stage.changelog()) as Box<dyn Stage<(K, u64)>>)
        }
    })
}

/// One attempt's plan on one worker: `plan` with its keyed stages on the backend `spec` asks
/// for. A disk backend's database is the directory `WORKER.PID-N.JOB.aATTEMPT.fjall` (names made safe; `N`
/// counts the databases of this process, so two jobs of one name never share one) in `dir`,
/// where the worker's databases left by earlier processes are removed first, or in a
/// temporary directory.
pub(crate) fn attempt_plan(
    plan: Arc<dyn ErasedPlan>,
    spec: &JobSpec,
    dir: Option<&Path>,
    worker: &str,
    attempt: u64,
) -> Result<Arc<dyn ErasedPlan>, DataflowError> {
    let state = match BackendKind::of(spec)? {
        BackendKind::Memory => StateBackend::Memory,
        BackendKind::Disk => {
            let worker = safe_name(worker);
            let this_process = format!("{worker}.{}-", std::process::id());
            if let Some(dir) = dir {
                remove_stale(dir, &format!("{worker}."), &this_process);
            }
            static DATABASES: AtomicU64 = AtomicU64::new(0);
            let n = DATABASES.fetch_add(1, Ordering::Relaxed);
            let name = format!("{this_process}{n}.{}.a{attempt}", safe_name(&spec.name));
            let store = DiskStore::create(dir, &name)?.with_part_bytes(part_bytes(spec)?);
            StateBackend::Disk(Arc::new(store))
        }
    };
    Ok(with_state(plan, state))
}

/// `name` with every character but ASCII letters, digits, `-` and `_` replaced by `_`.
fn safe_name(name: &str) -> String {
    (name.chars())
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            true => c,
            false => '_',
        })
        .collect()
}

/// Removes the databases in `dir` whose names start with `prefix` (this worker's) but not with
/// `keep` (this process's): left by a process that was killed.
fn remove_stale(dir: &Path, prefix: &str, keep: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && !name.starts_with(keep) && name.ends_with(".fjall") {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove old disk state");
            }
        }
    }
}

/// What a stage factory is told about the partition it builds a stage for.
#[derive(Clone, Copy, Debug)]
pub struct StageContext<'a> {
    /// The partition.
    pub partition: usize,
    /// Where its keyed state goes.
    pub state: &'a StateBackend,
}

/// The factory of a keyed stage updating accumulators with `update`, on either backend;
/// `combine` merges two accumulators where records are accumulators (see [`Keyed`]).
pub(super) fn keyed_factory<K, A, X>(
    update: Update<A, X>,
    combine: Option<Update<A, A>>,
) -> StageFactory<(K, A)>
where
    K: Eq + Hash + Serialize + DeserializeOwned + Send + 'static,
    A: Serialize + DeserializeOwned + Send + 'static,
    X: Serialize + DeserializeOwned + Send + 'static,
{
    Arc::new(move |ctx: &StageContext| match ctx.state {
        StateBackend::Memory => {
            Ok(Keyed::<K, A, X>::boxed(&update, combine.as_ref()) as Box<dyn Stage<(K, A)>>)
        }
        StateBackend::Disk(store) => {
            let stage = disk_keyed::DiskKeyed::<K, A, X>::open(
                store,
                ctx.partition,
                &update,
                combine.as_ref(),
                CACHE_ENTRIES,
            )?;
            Ok(Box::new(stage) as Box<dyn Stage<(K, A)>>)
        }
    })
}

#[cfg(test)]
mod tests;
