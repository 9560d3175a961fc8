//! [`TextDirSink`]: one part file per partition, written under a hidden temporary name and
//! renamed into place on commit. No operation of one partition lists the files of all the
//! others (with a thousand partitions that is a million directory entries per pass): the output
//! directory is listed once per sink (a sink is built per attempt) and what is pending lives in
//! the partition's own hidden working directory.
//!
//! ```text
//! open(q, attempt)  -> nothing yet
//! write(line)       -> line + '\n' through a 256 KiB buffer into
//!                      dir/.part-0000q.attempt-{attempt}.tmp (hidden: not final output)
//! commit            -> flush, fsync, rename to dir/part-0000q (replacing an older attempt's),
//!                      remove older attempts' leftover temporaries of partition q (from the
//!                      sink's one listing)
//! ```
//!
//! With checkpoints, output goes through a two-phase commit per epoch instead:
//!
//! ```text
//! pre_commit(e)      -> flush, fsync, rename the temporary to dir/.swd/0000q/epoch-{e:020}.pending
//! commit_epochs(q,u) -> every pending epoch e <= u of q becomes dir/part-0000q-{e:020} (idempotent)
//! discard_after(q,c) -> recovery from checkpoint c: pending epochs > c and temporaries of q go,
//!                       and committed epochs > c (from the sink's one listing)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::names::{epoch_name, final_name, numbered, parse_epoch_name, pending_name, PENDING_PREFIX, WORK};
use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};

/// Size of each writer's buffer.
const WRITE_BUFFER: usize = 256 * 1024;

/// Writes each record as a line of the file `part-{q:05}` of a directory, where `q` is the
/// partition. A partition's file appears only when its writer commits; a later attempt's commit
/// replaces it.
///
/// ```
/// use streamweave_distributed::dataflow::sinks::TextDirSink;
/// use streamweave_distributed::dataflow::{Sink, SinkContext};
///
/// let dir = tempfile::tempdir()?;
/// let out = dir.path().join("out");
/// let sink = TextDirSink::new(&out);
/// sink.validate()?;
/// let mut writer = sink.open(&SinkContext { partition: 3, num_partitions: 4, attempt: 1 })?;
/// writer.write("hello".to_string())?;
/// writer.commit()?;
/// assert_eq!(std::fs::read_to_string(out.join("part-00003"))?, "hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct TextDirSink {
    dir: PathBuf,
    listing: Arc<Listing>,
    dir_sync: Arc<DirSync>,
}

/// What the output directory held when the sink first needed it, by partition: committed
/// epochs and temporaries. Listed once per sink (a sink is built per attempt): recovery removes
/// committed epochs beyond the checkpoint it restores and commits remove older attempts'
/// temporaries, and both can only come from earlier attempts, so one listing serves every
/// partition.
#[derive(Debug, Default)]
struct Listing {
    /// `None` until first needed.
    by_partition: Mutex<Option<BTreeMap<usize, Found>>>,
}

/// One partition's files in a [`Listing`].
#[derive(Debug, Default)]
struct Found {
    committed: BTreeSet<u64>,
    /// Attempt numbers of temporaries.
    temporaries: BTreeSet<u64>,
}

impl Listing {
    /// Runs `f` on partition `partition`'s files, listing `dir` the first time.
    fn with<T>(
        &self,
        dir: &Path,
        partition: usize,
        f: impl FnOnce(&mut Found) -> T,
    ) -> Result<T, DataflowError> {
        let mut listing = self.by_partition.lock().unwrap_or_else(|e| e.into_inner());
        if listing.is_none() {
            *listing = Some(list_output(dir)?);
        }
        let found = listing
            .get_or_insert_with(BTreeMap::new)
            .entry(partition)
            .or_default();
        Ok(f(found))
    }

    /// This sink committed `epoch` of `partition` (kept, if the listing was taken already).
    fn committed(&self, partition: usize, epoch: u64) {
        let mut listing = self.by_partition.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(listing) = listing.as_mut() {
            listing.entry(partition).or_default().committed.insert(epoch);
        }
    }
}

impl TextDirSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            listing: Arc::default(),
            dir_sync: Arc::default(),
        }
    }

    /// The directory it writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Partition `partition`'s working directory.
    fn work_dir(&self, partition: usize) -> PathBuf {
        self.dir.join(WORK).join(format!("{partition:05}"))
    }
}

fn temp_prefix(partition: usize) -> String {
    format!(".part-{partition:05}.attempt-")
}

/// The names and paths of the entries of `dir` (none when it does not exist yet).
fn entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, DataflowError> {
    let listing = match fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DataflowError::io(dir, e)),
    };
    let mut found = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| DataflowError::io(dir, e))?;
        if let Ok(name) = entry.file_name().into_string() {
            found.push((name, entry.path()));
        }
    }
    Ok(found)
}

/// The pending epochs in a partition's working directory: (epoch, path), ascending.
fn pending_epochs(work: &Path) -> Result<Vec<(u64, PathBuf)>, DataflowError> {
    let mut found: Vec<(u64, PathBuf)> = entries(work)?
        .into_iter()
        .filter_map(|(name, path)| Some((numbered(&name, PENDING_PREFIX, ".pending")?, path)))
        .collect();
    found.sort();
    Ok(found)
}

/// The committed epochs and temporaries in the output directory, by partition.
fn list_output(dir: &Path) -> Result<BTreeMap<usize, Found>, DataflowError> {
    let mut found: BTreeMap<usize, Found> = BTreeMap::new();
    for (name, _) in entries(dir)? {
        if let Some((partition, epoch)) = parse_epoch_name(&name) {
            found.entry(partition).or_default().committed.insert(epoch);
            continue;
        }
        let temporary = name
            .strip_prefix(".part-")
            .and_then(|rest| rest.split_once(".attempt-"))
            .and_then(|(p, a)| {
                Some((
                    p.parse::<usize>().ok()?,
                    a.strip_suffix(".tmp")?.parse::<u64>().ok()?,
                ))
            });
        if let Some((partition, attempt)) = temporary {
            found.entry(partition).or_default().temporaries.insert(attempt);
        }
    }
    Ok(found)
}

/// Syncs the output directory for many partitions at once (group commit): a partition that
/// renamed a file into it needs a directory sync that *started* after its rename; when a
/// thousand partitions commit together, one sync serves all that were waiting for it.
#[derive(Debug, Default)]
struct DirSync {
    /// Syncs asked for so far.
    requested: AtomicU64,
    /// Every request up to this one is covered by a finished sync; one sync at a time.
    synced: Mutex<u64>,
}

impl DirSync {
    /// Returns once a sync of `dir` that started after this call has finished.
    fn sync(&self, dir: &Path) {
        let ticket = self.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let mut synced = self.synced.lock().unwrap_or_else(|e| e.into_inner());
        if *synced >= ticket {
            return;
        }
        // Everything requested by now was renamed before its request: this sync covers it.
        let covers = self.requested.load(Ordering::Acquire);
        sync_dir(dir);
        *synced = covers;
    }
}

fn sync_dir(dir: &Path) {
    // Makes renames durable; some file systems cannot sync a directory, which only weakens
    // durability after a power loss, so that error is ignored.
    let _ = File::open(dir).and_then(|d| d.sync_all());
}

fn remove_if_present(path: &Path) -> Result<(), DataflowError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DataflowError::io(path, e)),
        _ => Ok(()),
    }
}

impl Sink for TextDirSink {
    type Item = String;

    fn open(&self, ctx: &SinkContext) -> Result<Box<dyn SinkWriter<String>>, DataflowError> {
        fs::create_dir_all(&self.dir).map_err(|e| DataflowError::io(&self.dir, e))?;
        let temp = self
            .dir
            .join(format!("{}{}.tmp", temp_prefix(ctx.partition), ctx.attempt));
        // The temporary is created by the first write, not here: a partition moving here opens
        // its writer (same attempt, same name) as soon as the move commits, while the old
        // owner's writer may not be dropped yet, and dropping a writer that held a file removes
        // it, which would take the new owner's file with it.
        Ok(Box::new(TextDirWriter {
            dir: self.dir.clone(),
            work: self.work_dir(ctx.partition),
            listing: Arc::clone(&self.listing),
            dir_sync: Arc::clone(&self.dir_sync),
            partition: ctx.partition,
            attempt: ctx.attempt,
            temp,
            out: None,
            dirty: false,
        }))
    }

    fn commit_epochs(&self, partition: usize, upto: u64) -> Result<(), DataflowError> {
        let mut renamed = false;
        for (epoch, path) in pending_epochs(&self.work_dir(partition))? {
            if epoch <= upto {
                let target = self.dir.join(epoch_name(partition, epoch));
                match fs::rename(&path, &target) {
                    Ok(()) => {
                        renamed = true;
                        self.listing.committed(partition, epoch);
                    }
                    // Another commit of the same epochs got there first (commits overlap when
                    // checkpoints follow each other closely, or when a partition changes owner):
                    // the epoch is final either way.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(DataflowError::io(&target, e)),
                }
            }
        }
        if renamed {
            self.dir_sync.sync(&self.dir);
        }
        Ok(())
    }

    fn discard_after(&self, partition: usize, after: u64) -> Result<(), DataflowError> {
        // Recovery rewinds to `after`: pending epochs beyond it, this partition's temporaries, and
        // committed epochs beyond it (possible only when a newer checkpoint turned out damaged, or
        // when recovering from the beginning) are all produced again, so their files go.
        for (epoch, path) in pending_epochs(&self.work_dir(partition))? {
            if epoch > after {
                remove_if_present(&path)?;
            }
        }
        let (committed, temporaries) = self.listing.with(&self.dir, partition, |found| {
            (
                found.committed.split_off(&(after + 1)),
                std::mem::take(&mut found.temporaries),
            )
        })?;
        for epoch in committed {
            remove_if_present(&self.dir.join(epoch_name(partition, epoch)))?;
        }
        for attempt in temporaries {
            let name = format!("{}{attempt}.tmp", temp_prefix(partition));
            remove_if_present(&self.dir.join(name))?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), DataflowError> {
        let shown = self.dir.display();
        match fs::metadata(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DataflowError::io(&self.dir, e)),
            Ok(meta) if !meta.is_dir() => Err(DataflowError::InvalidJob(format!(
                "output path {shown} exists and is not a directory"
            ))),
            Ok(_) => {
                let mut entries = fs::read_dir(&self.dir).map_err(|e| DataflowError::io(&self.dir, e))?;
                match entries.next() {
                    None => Ok(()),
                    Some(Err(e)) => Err(DataflowError::io(&self.dir, e)),
                    Some(Ok(_)) => Err(DataflowError::InvalidJob(format!(
                        "output directory {shown} exists and is not empty"
                    ))),
                }
            }
        }
    }
}

/// The writer of one partition and attempt.
struct TextDirWriter {
    dir: PathBuf,
    /// The partition's working directory (for pending epochs).
    work: PathBuf,
    listing: Arc<Listing>,
    dir_sync: Arc<DirSync>,
    partition: usize,
    attempt: u64,
    temp: PathBuf,
    /// The temporary being written; `None` until the first write, after a pre-commit (until the
    /// next write) and once committed.
    out: Option<BufWriter<File>>,
    /// Whether anything was written since the last pre-commit.
    dirty: bool,
}

impl SinkWriter<String> for TextDirWriter {
    fn write(&mut self, item: String) -> Result<(), DataflowError> {
        self.dirty = true;
        let out = self.open_temp()?;
        out.write_all(item.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| DataflowError::io(&self.temp, e))
    }

    fn commit(mut self: Box<Self>) -> Result<(), DataflowError> {
        // Nothing written since the last pre-commit: the final file is empty.
        let out = self.take_temp()?;
        let temp = &self.temp;
        let file = out
            .into_inner()
            .map_err(|e| DataflowError::io(temp, e.into_error()))?;
        file.sync_all().map_err(|e| DataflowError::io(temp, e))?;
        let target = self.dir.join(final_name(self.partition));
        fs::rename(temp, &target).map_err(|e| DataflowError::io(&target, e))?;
        // Make the rename durable; some file systems cannot sync a directory, which only
        // weakens durability after a power loss, so that error is ignored.
        self.dir_sync.sync(&self.dir);
        self.remove_older_temporaries()
    }

    fn pre_commit(&mut self, epoch: u64) -> Result<(), DataflowError> {
        if !self.dirty {
            return Ok(());
        }
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let temp = &self.temp;
        let file = out
            .into_inner()
            .map_err(|e| DataflowError::io(temp, e.into_error()))?;
        file.sync_all().map_err(|e| DataflowError::io(temp, e))?;
        fs::create_dir_all(&self.work).map_err(|e| DataflowError::io(&self.work, e))?;
        let pending = self.work.join(pending_name(epoch));
        fs::rename(temp, &pending).map_err(|e| DataflowError::io(&pending, e))?;
        sync_dir(&self.work);
        // The next epoch starts in a fresh temporary under the same name, created by its first
        // write. Not before: when the partition moves away at this barrier, the new owner's
        // writer (same attempt, same name) may create that file before this writer is dropped,
        // and dropping a writer that held one would remove the new owner's file.
        self.dirty = false;
        Ok(())
    }
}

impl TextDirWriter {
    /// The temporary being written, taken out of the writer; created (empty) if this epoch has
    /// none yet.
    fn take_temp(&mut self) -> Result<BufWriter<File>, DataflowError> {
        match self.out.take() {
            Some(out) => Ok(out),
            None => {
                let file = File::create(&self.temp).map_err(|e| DataflowError::io(&self.temp, e))?;
                Ok(BufWriter::with_capacity(WRITE_BUFFER, file))
            }
        }
    }

    /// The temporary being written, created (empty) if this epoch has none yet.
    fn open_temp(&mut self) -> Result<&mut BufWriter<File>, DataflowError> {
        let out = self.take_temp()?;
        Ok(self.out.insert(out))
    }

    /// Removes the temporaries that earlier attempts of this partition left behind. A newer
    /// attempt's file is left alone: it belongs to a live writer, this one being the stale one.
    fn remove_older_temporaries(&self) -> Result<(), DataflowError> {
        let older = self.listing.with(&self.dir, self.partition, |found| {
            let newer = found.temporaries.split_off(&self.attempt);
            std::mem::replace(&mut found.temporaries, newer)
        })?;
        for attempt in older {
            let name = format!("{}{attempt}.tmp", temp_prefix(self.partition));
            remove_if_present(&self.dir.join(name))?;
        }
        Ok(())
    }
}

impl Drop for TextDirWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            // Abandoned before commit: its output never becomes final; best-effort cleanup.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
#[path = "text_dir_tests.rs"]
mod tests;
