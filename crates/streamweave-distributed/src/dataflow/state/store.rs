//! [`DiskStore`]: one worker's on-disk keyed state for one job attempt, an embedded
//! log-structured merge tree (fjall, pure Rust) in a directory of its own. Each keyed stage
//! (one per partition) owns two keyspaces, so that a partition is written, snapshotted,
//! restored and dropped on its own:
//!
//! ```text
//! state-pQ-gN:   encoded key -> encoded accumulator   (the partition's whole state)
//! changed-pQ-gN: encoded key -> ()                    (changed keys spilled from memory,
//!                                                       see `changes.rs`)
//! ```
//!
//! `N` is a generation number unique in the database: a partition that moves out and back in
//! within an attempt gets fresh keyspaces, and dropping the old stage never touches the new ones.
//! Keys and values are the postcard bytes of the stage's key and accumulator, the same bytes a
//! snapshot holds, so a segment is copied out of the keyspaces without decoding anything.
//!
//! Why a log-structured tree: keyed state is written at random keys. A B-tree rewrites a whole
//! page for each key it changes once the state outgrows its cache (a flush of 64 k keys into
//! a 2 GB tree rewrote some 256 MB), where an LSM tree appends the flush sorted and merges it
//! in the background, sequentially. A lookup of a key never seen before (every key of a
//! growing state, once) is answered by the tables' Bloom filters without reading data.
//!
//! The store is scratch space: durability comes from checkpoints, so writes are never synced
//! and the directory is removed when the store is dropped (the attempt ended).

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::config::PartitioningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};

use crate::dataflow::DataflowError;

/// The block cache per database: the store's share of a worker's memory, whatever the size
/// of the state. It holds the filters and indexes that a lookup reads (partitioned, about 1.3
/// bytes a key at 10 bits a key) and the data blocks last read.
pub const DISK_CACHE_BYTES: usize = 128 << 20;

/// A partition's write buffer (memtable) for its state; the changed marks get a quarter.
/// Several partitions share a worker, each with up to 4 sealed buffers waiting to be written
/// out besides the active one, and a buffer takes several times its data in memory (a skip
/// list of small entries), so this bounds memory where fjall's default (64 MiB) would not.
const MEMTABLE_BYTES: u64 = 4 << 20;

/// The journal's bound (fjall's smallest): a full journal flushes the oldest memtables.
const JOURNAL_BYTES: u64 = 64 << 20;

/// See the module documentation.
pub struct DiskStore {
    db: Database,
    path: PathBuf,
    generations: AtomicU64,
    part_bytes: usize,
}

/// The default size of a part of a checkpoint's base ([`DiskStore::part_bytes`]): small enough
/// that a worker sealing several partitions at once holds little (each part is encoded, then
/// framed, before it is stored), large enough that an object store's requests stay few.
pub const PART_BYTES: usize = 16 << 20;

impl std::fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A stage's pair of keyspaces.
#[derive(Clone)]
pub(crate) struct Tables {
    state: Keyspace,
    changed: Keyspace,
}

impl DiskStore {
    /// Creates the database `name` (a directory `NAME.fjall`) in `dir`, or, without one, under
    /// the system's temporary directory. A database left by an earlier run (a killed worker)
    /// is replaced.
    pub fn create(dir: Option<&Path>, name: &str) -> Result<DiskStore, DataflowError> {
        let path = match dir {
            Some(dir) => dir.join(format!("{name}.fjall")),
            None => std::env::temp_dir().join(format!("swd-state-{}-{name}.fjall", std::process::id())),
        };
        let io = |path: &Path, e: std::io::Error| DataflowError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        match std::fs::remove_dir_all(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path, e)),
            _ => {}
        }
        let db = Database::builder(&path)
            .cache_size(DISK_CACHE_BYTES as u64)
            .manual_journal_persist(true)
            .max_journaling_size(JOURNAL_BYTES)
            // One background thread for flushes and compactions: with more, an idle one
            // passes a pending compaction on to the busy ones in a loop, a core spinning.
            .worker_threads(1)
            .temporary(true)
            .open()
            .map_err(|e| disk_error(&path, e))?;
        Ok(DiskStore {
            db,
            path,
            generations: AtomicU64::new(0),
            part_bytes: PART_BYTES,
        })
    }

    /// The store, whose stages write a checkpoint's base in parts of about `bytes` encoded
    /// bytes each (at least 1).
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    /// How many encoded bytes of a base a part holds: a base is written in parts of this
    /// size as it is read (see `checkpoint/chain.rs`), so it is never whole in memory.
    pub fn part_bytes(&self) -> usize {
        self.part_bytes
    }

    /// The database's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New, empty keyspaces for partition `q`'s stage.
    pub(crate) fn open_tables(&self, q: usize) -> Result<Tables, DataflowError> {
        let g = self.generations.fetch_add(1, Ordering::Relaxed);
        let open = |name: String, memtable: u64| {
            let options = move || {
                // Partitioned filters and indexes at every level: a lookup then reads a few KB
                // of a large table's filter and index, not all of it (MBs, read again each
                // time they do not fit the cache).
                KeyspaceCreateOptions::default()
                    .max_memtable_size(memtable)
                    .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                    .index_block_partitioning_policy(PartitioningPolicy::all(true))
            };
            self.db.keyspace(&name, options).map_err(|e| self.error(e))
        };
        Ok(Tables {
            state: open(format!("state-p{q}-g{g}"), MEMTABLE_BYTES)?,
            changed: open(format!("changed-p{q}-g{g}"), MEMTABLE_BYTES / 4)?,
        })
    }

    /// Removes a stage's keyspaces (its partition left, or the stage ended).
    pub(crate) fn drop_tables(&self, tables: &Tables) -> Result<(), DataflowError> {
        self.db
            .delete_keyspace(tables.state.clone())
            .map_err(|e| self.error(e))?;
        self.db
            .delete_keyspace(tables.changed.clone())
            .map_err(|e| self.error(e))
    }

    /// Empties a stage's keyspaces (before a restore).
    pub(crate) fn clear(&self, tables: &Tables) -> Result<(), DataflowError> {
        tables.state.clear().map_err(|e| self.error(e))?;
        self.reset_marks(tables)
    }

    /// Writes `entries` (encoded key, encoded value) in one batch.
    pub(crate) fn put_all<'a>(
        &self,
        tables: &Tables,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), DataflowError> {
        let mut batch = self.db.batch().durability(None);
        for (k, v) in entries {
            batch.insert(&tables.state, k, v);
        }
        batch.commit().map_err(|e| self.error(e))
    }

    /// Marks `keys` as changed (see [`DiskStore::for_each_marked`]).
    pub(crate) fn put_marks(&self, tables: &Tables, keys: Vec<&[u8]>) -> Result<(), DataflowError> {
        let mut batch = self.db.batch().durability(None);
        for k in keys {
            batch.insert(&tables.changed, k, &[][..]);
        }
        batch.commit().map_err(|e| self.error(e))
    }

    /// A reader of a stage's state, for looking keys up.
    pub(crate) fn reader<'s>(&'s self, tables: &'s Tables) -> Reader<'s> {
        Reader {
            table: &tables.state,
            path: &self.path,
        }
    }

    /// Calls `f` with every (encoded key, encoded value) of a stage's state, in key order, as
    /// of the call; returns how many there were.
    pub(crate) fn for_each(
        &self,
        tables: &Tables,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError>,
    ) -> Result<u64, DataflowError> {
        let mut n = 0;
        for entry in tables.state.iter() {
            let (k, v) = entry.into_inner().map_err(|e| self.error(e))?;
            f(&k, &v)?;
            n += 1;
        }
        Ok(n)
    }

    /// About how many entries a stage's state holds, from the tables' metadata (a key written
    /// again and not yet compacted counts twice).
    pub(crate) fn approximate_len(&self, tables: &Tables) -> u64 {
        tables.state.approximate_len() as u64
    }

    /// Removes every mark.
    pub(crate) fn reset_marks(&self, tables: &Tables) -> Result<(), DataflowError> {
        tables.changed.clear().map_err(|e| self.error(e))
    }

    /// Calls `f` with every key marked since the last [`DiskStore::reset_marks`] that is
    /// stored, and its value; returns how many there were.
    pub(crate) fn for_each_marked(
        &self,
        tables: &Tables,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError>,
    ) -> Result<u64, DataflowError> {
        let mut n = 0;
        for entry in tables.changed.iter() {
            let k = entry.key().map_err(|e| self.error(e))?;
            if let Some(v) = tables.state.get(&k).map_err(|e| self.error(e))? {
                f(&k, &v)?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn error(&self, e: impl Display) -> DataflowError {
        disk_error(&self.path, e)
    }
}

#[cfg(test)]
impl DiskStore {
    /// The keyspaces in the database.
    pub(crate) fn table_count(&self) -> usize {
        self.db.keyspace_count()
    }

    /// The number of entries in a stage's state.
    pub(crate) fn len(&self, tables: &Tables) -> Result<u64, DataflowError> {
        self.for_each(tables, |_, _| Ok(()))
    }
}

/// Looks keys up in one stage's state.
pub(crate) struct Reader<'s> {
    table: &'s Keyspace,
    path: &'s Path,
}

impl Reader<'_> {
    /// The encoded value of an encoded key, if stored.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<fjall::UserValue>, DataflowError> {
        self.table.get(key).map_err(|e| disk_error(self.path, e))
    }
}

fn disk_error(path: &Path, e: impl Display) -> DataflowError {
    DataflowError::DiskState {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
