//! [`LocalDirStore`]: checkpoints in a local directory, one subdirectory per checkpoint.
//!
//! ```text
//! dir/chk-0000000042/state-p0003
//! dir/chk-0000000042/offsets-p0003
//! dir/chk-0000000042/_MANIFEST        present once checkpoint 42 is committed
//! ```
//!
//! Every object is written to a temporary name in the same directory, fsynced, renamed into
//! place, and the directory fsynced: an object is either complete or absent after a crash. (The
//! rename is this backend's way to write an object atomically; the protocol does not rely on it.)
//! Creating an object only if absent (the manifest) hard-links the temporary file to the final
//! name instead, which fails if the name exists: of two racing writers, one wins.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{CheckpointError, CheckpointId, CheckpointStore, Listed, MANIFEST_NAME};

const DIR_PREFIX: &str = "chk-";

/// Makes temporary names unique within the process (the pid makes them unique across processes).
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Checkpoints in a local directory.
///
/// ```
/// use streamweave_distributed::checkpoint::{CheckpointId, CheckpointStore, LocalDirStore};
/// let dir = tempfile::tempdir()?;
/// let store = LocalDirStore::new(dir.path())?;
/// store.put(CheckpointId(42), "state-p0003", b"...")?;
/// assert!(dir.path().join("chk-0000000042/state-p0003").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct LocalDirStore {
    dir: PathBuf,
}

impl LocalDirStore {
    /// A store in `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, CheckpointError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, e))?;
        Ok(LocalDirStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: CheckpointId) -> PathBuf {
        self.dir.join(format!("{DIR_PREFIX}{:010}", id.0))
    }

    /// The path of object `name` of checkpoint `id`.
    pub fn object_path(&self, id: CheckpointId, name: &str) -> PathBuf {
        self.checkpoint_dir(id).join(name)
    }

    /// Creates the directory of checkpoint `id` if missing, durably.
    fn ensure_checkpoint_dir(&self, id: CheckpointId) -> Result<PathBuf, CheckpointError> {
        let dir = self.checkpoint_dir(id);
        match fs::create_dir(&dir) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::create_dir_all(&dir).map_err(|e| CheckpointError::io(&dir, e))?;
                sync_dir(&self.dir)?;
            }
            Err(e) => return Err(CheckpointError::io(&dir, e)),
        }
        Ok(dir)
    }
}

/// The checkpoint named by a directory entry, if it is one of ours (`chk-` and ten or more
/// digits, exactly as [`LocalDirStore::checkpoint_dir`] writes it).
fn parse_dir_name(name: &str) -> Option<CheckpointId> {
    let digits = name.strip_prefix(DIR_PREFIX)?;
    let id = CheckpointId(digits.parse().ok()?);
    (format!("{:010}", id.0) == digits).then_some(id)
}

/// Makes a directory's entries durable (a no-op where directories cannot be opened as files).
fn sync_dir(dir: &Path) -> Result<(), CheckpointError> {
    if cfg!(unix) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| CheckpointError::io(dir, e))?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl LocalDirStore {
    /// Writes `bytes` to a fresh temporary file beside object `name` of checkpoint `id`,
    /// fsynced; returns the checkpoint's directory and the temporary path.
    fn write_temporary(
        &self,
        id: CheckpointId,
        name: &str,
        bytes: &[u8],
    ) -> Result<(PathBuf, PathBuf), CheckpointError> {
        let dir = self.ensure_checkpoint_dir(id)?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
        if let Err(e) = write_synced(&tmp, bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(CheckpointError::io(&tmp, e));
        }
        Ok((dir, tmp))
    }
}

impl CheckpointStore for LocalDirStore {
    fn write_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<(), CheckpointError> {
        let (dir, tmp) = self.write_temporary(id, name, bytes)?;
        let path = dir.join(name);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(CheckpointError::io(&path, e));
        }
        sync_dir(&dir)
    }

    fn create_object(&self, id: CheckpointId, name: &str, bytes: &[u8]) -> Result<bool, CheckpointError> {
        let (dir, tmp) = self.write_temporary(id, name, bytes)?;
        let path = dir.join(name);
        // A hard link, unlike a rename, never replaces an existing name: atomic create-if-absent.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => sync_dir(&dir).map(|()| true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(CheckpointError::io(&path, e)),
        }
    }

    fn object_size(&self, id: CheckpointId, name: &str) -> Result<u64, CheckpointError> {
        let path = self.object_path(id, name);
        fs::metadata(&path).map(|m| m.len()).map_err(|e| match e.kind() {
            ErrorKind::NotFound => CheckpointError::NotFound {
                id,
                name: name.to_string(),
            },
            _ => CheckpointError::io(&path, e),
        })
    }

    fn read_object(&self, id: CheckpointId, name: &str) -> Result<Vec<u8>, CheckpointError> {
        let path = self.object_path(id, name);
        fs::read(&path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => CheckpointError::NotFound {
                id,
                name: name.to_string(),
            },
            _ => CheckpointError::io(&path, e),
        })
    }

    fn delete_object(&self, id: CheckpointId, name: &str) -> Result<(), CheckpointError> {
        let path = self.object_path(id, name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.checkpoint_dir(id)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CheckpointError::io(&path, e)),
        }
    }

    fn delete_checkpoint(&self, id: CheckpointId) -> Result<(), CheckpointError> {
        let dir = self.checkpoint_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CheckpointError::io(&dir, e)),
        }
    }

    fn list(&self) -> Result<Vec<Listed>, CheckpointError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CheckpointError::io(&self.dir, e)),
        };
        let mut listed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CheckpointError::io(&self.dir, e))?;
            let path = entry.path();
            let Some(id) = entry.file_name().to_str().and_then(parse_dir_name) else {
                continue;
            };
            if !entry
                .file_type()
                .map_err(|e| CheckpointError::io(&path, e))?
                .is_dir()
            {
                continue;
            }
            let manifest = path.join(MANIFEST_NAME);
            let committed = manifest
                .try_exists()
                .map_err(|e| CheckpointError::io(&manifest, e))?;
            listed.push(Listed { id, committed });
        }
        Ok(listed)
    }
}
