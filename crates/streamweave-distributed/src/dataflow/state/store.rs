//! [`DiskStore`]: one worker's on-disk keyed state for one job attempt, a redb database in a
//! local directory. Each keyed stage (one per partition) owns two tables of its own, so that a
//! partition is written, snapshotted, restored and dropped on its own:
//!
//! ```text
//! state-pQ-gN:   encoded key -> encoded accumulator   (the partition's whole state)
//! changed-pQ-gN: encoded key -> ()                    (keys written since the last segment)
//! ```
//!
//! `N` is a generation number unique in the database: a partition that moves out and back in
//! within an attempt gets fresh tables, and dropping the old stage never touches the new ones.
//! Keys and values are the postcard bytes of the stage's key and accumulator, the same bytes a
//! snapshot holds, so a segment is copied out of the tables without decoding anything.
//!
//! The store is scratch space: durability comes from checkpoints, so commits skip the fsync
//! (redb's `Durability::None`) except every [`DURABLE_EVERY`]th, which lets redb reuse the pages
//! the others freed. The file is removed when the store is dropped (the attempt ended).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::dataflow::DataflowError;

/// redb's page cache per database: the store's share of a worker's memory, whatever the size
/// of the state (redb's default, 1 GiB, would be most of the budget).
pub const DISK_CACHE_BYTES: usize = 64 << 20;

/// One commit in this many is durable (see the module documentation).
const DURABLE_EVERY: u64 = 16;

/// See the module documentation.
#[derive(Debug)]
pub struct DiskStore {
    db: Database,
    path: PathBuf,
    /// A directory this store created (the default state directory), removed with the file.
    own_dir: Option<PathBuf>,
    generations: AtomicU64,
    commits: AtomicU64,
}

/// A stage's pair of tables.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    state: String,
    changed: String,
}

impl Tables {
    fn state(&self) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
        TableDefinition::new(&self.state)
    }

    fn changed(&self) -> TableDefinition<'_, &'static [u8], ()> {
        TableDefinition::new(&self.changed)
    }
}

impl DiskStore {
    /// Creates the database `name` in `dir`, or, without one, in a new directory under the
    /// system's temporary directory (removed with the store). A file left by an earlier run
    /// (a killed worker) is replaced.
    pub fn create(dir: Option<&Path>, name: &str) -> Result<DiskStore, DataflowError> {
        let (dir, own_dir) = match dir {
            Some(dir) => (dir.to_path_buf(), None),
            None => {
                let dir = std::env::temp_dir().join(format!("swd-state-{}-{name}", std::process::id()));
                (dir.clone(), Some(dir))
            }
        };
        let io = |path: &Path, e: std::io::Error| DataflowError::Io {
            path: path.to_path_buf(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(format!("{name}.redb"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&path, e)),
            _ => {}
        }
        let db = Database::builder()
            .set_cache_size(DISK_CACHE_BYTES)
            .create(&path)
            .map_err(|e| disk_error(&path, e))?;
        Ok(DiskStore {
            db,
            path,
            own_dir,
            generations: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// New, empty tables for partition `q`'s stage.
    pub(crate) fn open_tables(&self, q: usize) -> Result<Tables, DataflowError> {
        let g = self.generations.fetch_add(1, Ordering::Relaxed);
        let tables = Tables {
            state: format!("state-p{q}-g{g}"),
            changed: format!("changed-p{q}-g{g}"),
        };
        self.write(|tx| {
            tx.open_table(tables.state())?;
            tx.open_table(tables.changed())?;
            Ok(())
        })?;
        Ok(tables)
    }

    /// Removes a stage's tables (its partition left, or the stage ended).
    pub(crate) fn drop_tables(&self, tables: &Tables) -> Result<(), DataflowError> {
        self.write(|tx| {
            tx.delete_table(tables.state())?;
            tx.delete_table(tables.changed())?;
            Ok(())
        })
    }

    /// Empties a stage's tables (before a restore).
    pub(crate) fn clear(&self, tables: &Tables) -> Result<(), DataflowError> {
        self.write(|tx| {
            tx.delete_table(tables.state())?;
            tx.delete_table(tables.changed())?;
            tx.open_table(tables.state())?;
            tx.open_table(tables.changed())?;
            Ok(())
        })
    }

    /// Writes `entries` (encoded key, encoded value) in one transaction; with `changed`, the
    /// keys go into the next delta too (restored entries do not).
    pub(crate) fn put_all<'a>(
        &self,
        tables: &Tables,
        entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        changed: bool,
    ) -> Result<(), DataflowError> {
        self.write(|tx| {
            let mut state = tx.open_table(tables.state())?;
            let mut marks = tx.open_table(tables.changed())?;
            for (k, v) in entries {
                state.insert(k, v)?;
                if changed {
                    marks.insert(k, ())?;
                }
            }
            Ok(())
        })
    }

    /// A reader of a stage's committed state, for looking keys up.
    pub(crate) fn reader(&self, tables: &Tables) -> Result<Reader<'_>, DataflowError> {
        let table = self
            .db
            .begin_read()
            .map_err(redb::Error::from)
            .and_then(|tx| tx.open_table(tables.state()).map_err(redb::Error::from))
            .map_err(|e| disk_error(&self.path, e))?;
        Ok(Reader {
            table,
            path: &self.path,
        })
    }

    /// Calls `f` with every (encoded key, encoded value) of a stage's state, in key order.
    pub(crate) fn for_each(
        &self,
        tables: &Tables,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError>,
    ) -> Result<u64, DataflowError> {
        let reader = self.reader(tables)?;
        let mut n = 0;
        for entry in reader.table.iter().map_err(|e| disk_error(&self.path, e))? {
            let (k, v) = entry.map_err(|e| disk_error(&self.path, e))?;
            f(k.value(), v.value())?;
            n += 1;
        }
        Ok(n)
    }

    /// The number of entries in a stage's state.
    pub(crate) fn len(&self, tables: &Tables) -> Result<u64, DataflowError> {
        use redb::ReadableTableMetadata;
        let reader = self.reader(tables)?;
        reader.table.len().map_err(|e| disk_error(&self.path, e))
    }

    /// Forgets the keys written so far (a base holds them all).
    pub(crate) fn reset_changed(&self, tables: &Tables) -> Result<(), DataflowError> {
        self.write(|tx| {
            tx.delete_table(tables.changed())?;
            tx.open_table(tables.changed())?;
            Ok(())
        })
    }

    /// Calls `f` with every key written since the last [`DiskStore::reset_changed`] and its
    /// value.
    pub(crate) fn for_each_changed(
        &self,
        tables: &Tables,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), DataflowError>,
    ) -> Result<u64, DataflowError> {
        let e = |e: redb::Error| disk_error(&self.path, e);
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let state = tx.open_table(tables.state()).map_err(|x| e(x.into()))?;
        let marks = tx.open_table(tables.changed()).map_err(|x| e(x.into()))?;
        let mut n = 0;
        for entry in marks.iter().map_err(|x| e(x.into()))? {
            let (k, _) = entry.map_err(|x| e(x.into()))?;
            // Every marked key was written with its value in the same transaction.
            if let Some(v) = state.get(k.value()).map_err(|x| e(x.into()))? {
                f(k.value(), v.value())?;
                n += 1;
            }
        }
        Ok(n)
    }

    fn write(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), DataflowError> {
        let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
        let run = || -> Result<(), redb::Error> {
            let mut tx = self.db.begin_write()?;
            if n % DURABLE_EVERY != 0 {
                tx.set_durability(Durability::None)?;
            }
            f(&tx)?;
            tx.commit()?;
            Ok(())
        };
        run().map_err(|e| disk_error(&self.path, e))
    }
}

#[cfg(test)]
impl DiskStore {
    /// The tables in the database.
    pub(crate) fn table_count(&self) -> usize {
        use redb::ReadableDatabase as _;
        let tx = self.db.begin_read().expect("read transaction");
        tx.list_tables().expect("tables").count()
    }
}

impl Drop for DiskStore {
    fn drop(&mut self) {
        // Scratch space: what is left after a crash is replaced by the next store of that name.
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// A read transaction on one stage's state table.
pub(crate) struct Reader<'s> {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    path: &'s Path,
}

impl Reader<'_> {
    /// The encoded value of an encoded key, if stored.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, DataflowError> {
        let value = self.table.get(key).map_err(|e| disk_error(self.path, e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }
}

fn disk_error(path: &Path, e: impl Into<redb::Error>) -> DataflowError {
    DataflowError::DiskState {
        path: path.to_path_buf(),
        message: e.into().to_string(),
    }
}
