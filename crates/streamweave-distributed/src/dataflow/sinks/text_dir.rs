//! [`TextDirSink`]: one part file per partition, written under a hidden temporary name and
//! renamed into place on commit. No operation of one partition lists the files of all the
//! others (with a thousand partitions that is a million directory entries per pass): the output
//! directory is listed once per sink (a sink is built per attempt) and what is pending lives in
//! the partition's own hidden working directory.
//!
//! ```text
//! open(q, attempt)  -> dir/.part-0000q.attempt-{attempt}.tmp     (hidden: not final output)
//! write(line)       -> line + '\n' through a 256 KiB buffer
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

use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};

/// Size of each writer's buffer.
const WRITE_BUFFER: usize = 256 * 1024;

/// The hidden directory holding the partitions' working directories.
pub(super) const WORK: &str = ".swd";

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

/// Whether a file name in an output directory is final output (temporary files, working
/// directories and markers start with `.` or `_`).
pub fn is_final_output(name: &str) -> bool {
    !name.starts_with('.') && !name.starts_with('_')
}

pub(super) fn final_name(partition: usize) -> String {
    format!("part-{partition:05}")
}

fn temp_prefix(partition: usize) -> String {
    format!(".part-{partition:05}.attempt-")
}

pub(super) const PENDING_PREFIX: &str = "epoch-";

pub(super) fn pending_name(epoch: u64) -> String {
    format!("{PENDING_PREFIX}{epoch:020}.pending")
}

pub(super) fn epoch_name(partition: usize, epoch: u64) -> String {
    format!("part-{partition:05}-{epoch:020}")
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

/// The partition and epoch of a committed epoch's name ([`epoch_name`]).
pub(super) fn parse_epoch_name(name: &str) -> Option<(usize, u64)> {
    let (p, e) = name.strip_prefix("part-")?.split_once('-')?;
    Some((p.parse().ok()?, e.parse().ok()?))
}

/// The number in `name` between `prefix` and `suffix`, if it has that shape.
pub(super) fn numbered(name: &str, prefix: &str, suffix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok()
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
        let file = File::create(&temp).map_err(|e| DataflowError::io(&temp, e))?;
        Ok(Box::new(TextDirWriter {
            dir: self.dir.clone(),
            work: self.work_dir(ctx.partition),
            listing: Arc::clone(&self.listing),
            dir_sync: Arc::clone(&self.dir_sync),
            partition: ctx.partition,
            attempt: ctx.attempt,
            temp,
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
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
    /// `None` once committed.
    out: Option<BufWriter<File>>,
    /// Whether anything was written since the last pre-commit.
    dirty: bool,
}

impl SinkWriter<String> for TextDirWriter {
    fn write(&mut self, item: String) -> Result<(), DataflowError> {
        let out = self.out.as_mut().expect("written after commit");
        self.dirty = true;
        out.write_all(item.as_bytes())
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| DataflowError::io(&self.temp, e))
    }

    fn commit(mut self: Box<Self>) -> Result<(), DataflowError> {
        let out = self.out.take().expect("committed twice");
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
        let out = self.out.take().expect("pre-committed after commit");
        let temp = &self.temp;
        let file = out
            .into_inner()
            .map_err(|e| DataflowError::io(temp, e.into_error()))?;
        file.sync_all().map_err(|e| DataflowError::io(temp, e))?;
        fs::create_dir_all(&self.work).map_err(|e| DataflowError::io(&self.work, e))?;
        let pending = self.work.join(pending_name(epoch));
        fs::rename(temp, &pending).map_err(|e| DataflowError::io(&pending, e))?;
        sync_dir(&self.work);
        // The next epoch starts in a fresh temporary under the same name.
        let file = File::create(temp).map_err(|e| DataflowError::io(temp, e))?;
        self.out = Some(BufWriter::with_capacity(WRITE_BUFFER, file));
        self.dirty = false;
        Ok(())
    }
}

impl TextDirWriter {
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
mod tests {
    use super::*;

    #[test]
    fn epochs_become_final_only_when_committed_and_recovery_discards_later_ones() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let sink = TextDirSink::new(&dir);
        let mut writer = sink.open(&ctx(1, 1)).unwrap();
        writer.write("a".into()).unwrap();
        writer.pre_commit(3).unwrap();
        writer.pre_commit(4).unwrap(); // Nothing written in epoch 4: no file.
        writer.write("b".into()).unwrap();
        writer.pre_commit(5).unwrap();
        assert!(
            names(&dir).iter().all(|n| !is_final_output(n)),
            "nothing final before commit: {:?}",
            names(&dir)
        );
        sink.commit_epochs(1, 3).unwrap();
        sink.commit_epochs(1, 3).unwrap(); // Idempotent.
        assert_eq!(fs::read_to_string(dir.join(epoch_name(1, 3))).unwrap(), "a\n");
        assert!(!dir.join(epoch_name(1, 5)).exists());
        // Recovery from checkpoint 3: epoch 5 never becomes output.
        drop(writer);
        sink.discard_after(1, 3).unwrap();
        sink.commit_epochs(1, u64::MAX).unwrap();
        assert_eq!(names(&dir), vec![epoch_name(1, 3)]);
        // Recovering from the beginning removes even committed epochs: they are produced again.
        sink.discard_after(1, 0).unwrap();
        assert!(names(&dir).is_empty(), "{:?}", names(&dir));
    }

    #[test]
    fn overlapping_commits_of_the_same_epochs_both_succeed() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let sink = TextDirSink::new(&dir);
        let mut writer = sink.open(&ctx(2, 1)).unwrap();
        for epoch in 1..=200 {
            writer.write(format!("line {epoch}")).unwrap();
            writer.pre_commit(epoch).unwrap();
        }
        // Two committers race over the same pending files (two CommitEpochs in quick
        // succession, or the old and new owner of a moved partition).
        let (a, b) = (sink.clone(), sink.clone());
        let first = std::thread::spawn(move || a.commit_epochs(2, 200));
        let second = std::thread::spawn(move || b.commit_epochs(2, 200));
        first.join().unwrap().unwrap();
        second.join().unwrap().unwrap();
        let finals: Vec<String> = names(&dir).into_iter().filter(|n| is_final_output(n)).collect();
        assert_eq!(finals.len(), 200);
    }

    fn ctx(partition: usize, attempt: u64) -> SinkContext {
        SinkContext {
            partition,
            num_partitions: 4,
            attempt,
        }
    }

    /// The files under `dir`, as paths relative to it (working directories included).
    fn names(dir: &Path) -> Vec<String> {
        fn walk(root: &Path, dir: &Path, names: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, names);
                } else {
                    let relative = path.strip_prefix(root).unwrap();
                    names.push(relative.to_str().unwrap().to_string());
                }
            }
        }
        let mut names = Vec::new();
        walk(dir, dir, &mut names);
        names.sort();
        names
    }

    #[test]
    fn nothing_is_final_before_commit() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        let sink = TextDirSink::new(&dir);
        let mut writer = sink.open(&ctx(2, 7)).unwrap();
        writer.write("a b".into()).unwrap();
        writer.write(String::new()).unwrap();
        assert_eq!(names(&dir), [".part-00002.attempt-7.tmp"]);
        assert!(names(&dir).iter().all(|name| !is_final_output(name)));
        writer.commit().unwrap();
        assert_eq!(names(&dir), ["part-00002"]);
        assert_eq!(fs::read_to_string(dir.join("part-00002")).unwrap(), "a b\n\n");
    }

    #[test]
    fn a_later_attempt_replaces_the_final_file_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let sink = TextDirSink::new(dir.path());
        let mut first = sink.open(&ctx(0, 1)).unwrap();
        first.write("old".into()).unwrap();
        first.commit().unwrap();
        fs::write(dir.path().join(".part-00000.attempt-2.tmp"), "crashed").unwrap();
        fs::write(dir.path().join(".part-00001.attempt-2.tmp"), "other partition").unwrap();
        // Every attempt builds its own sink.
        let sink = TextDirSink::new(dir.path());
        let mut third = sink.open(&ctx(0, 3)).unwrap();
        let fourth = sink.open(&ctx(0, 4)).unwrap(); // A newer, live attempt.
        third.write("new".into()).unwrap();
        third.commit().unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("part-00000")).unwrap(),
            "new\n"
        );
        assert_eq!(
            names(dir.path()),
            [
                ".part-00000.attempt-4.tmp",
                ".part-00001.attempt-2.tmp",
                "part-00000"
            ]
        );
        drop(fourth);
        assert_eq!(
            names(dir.path()),
            [".part-00001.attempt-2.tmp", "part-00000"],
            "dropped writers clean up"
        );
    }

    #[test]
    fn validate_wants_a_missing_or_empty_directory() {
        let root = tempfile::tempdir().unwrap();
        assert!(TextDirSink::new(root.path().join("missing")).validate().is_ok());
        assert!(TextDirSink::new(root.path()).validate().is_ok());
        fs::write(root.path().join(".hidden"), "").unwrap();
        let err = TextDirSink::new(root.path()).validate().unwrap_err();
        let expected = format!(
            "invalid job: output directory {} exists and is not empty",
            root.path().display()
        );
        assert_eq!(err.to_string(), expected);
        let file = root.path().join(".hidden");
        assert!(matches!(
            TextDirSink::new(file).validate(),
            Err(DataflowError::InvalidJob(_))
        ));
    }

    #[test]
    fn final_output_names() {
        assert!(is_final_output("part-00000"));
        assert!(!is_final_output(".swd"));
        assert!(!is_final_output("_SUCCESS"));
    }
}
