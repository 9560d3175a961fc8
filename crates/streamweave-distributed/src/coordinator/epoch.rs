//! The coordinator's epoch: how many coordinators started on a data directory before this one,
//! kept in `coordinator-epoch` and incremented (durably) at every start, before the coordinator
//! listens. Attempt ids are folded from it
//! ([`ATTEMPTS_PER_EPOCH`](super::job_control::ATTEMPTS_PER_EPOCH)), so a restarted coordinator
//! never reuses an attempt id of the one before it: the workers, still running the dead
//! coordinator's attempt, replace it with the new one.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

/// The epoch file's name inside the data directory.
pub const EPOCH_FILE: &str = "coordinator-epoch";

/// Reads the previous epoch (none: this is the first start, epoch 0), stores the next one and
/// returns it. The file is replaced atomically (temporary file, fsync, rename, directory
/// fsync), so a crash leaves the old epoch or the new one, never a torn file.
pub(crate) fn next_epoch(data_dir: &Path) -> std::io::Result<u64> {
    let path = data_dir.join(EPOCH_FILE);
    let epoch = match fs::read_to_string(&path) {
        Ok(text) => parse(&text)
            .and_then(|previous| previous.checked_add(1))
            .ok_or_else(|| {
                std::io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{} holds {:?}, not an epoch number", path.display(), text.trim()),
                )
            })?,
        Err(e) if e.kind() == ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let temp = data_dir.join(format!(".{EPOCH_FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(format!("{epoch}\n").as_bytes())?;
    file.sync_all()?;
    fs::rename(&temp, &path)?;
    // Makes the rename durable; a file system that cannot sync a directory only weakens this
    // after a power loss.
    let _ = File::open(data_dir).and_then(|d| d.sync_all());
    Ok(epoch)
}

fn parse(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_start_gets_a_new_epoch_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_epoch(dir.path()).unwrap(), 0);
        assert_eq!(next_epoch(dir.path()).unwrap(), 1);
        assert_eq!(next_epoch(dir.path()).unwrap(), 2);
        assert_eq!(fs::read_to_string(dir.path().join(EPOCH_FILE)).unwrap(), "2\n");
        fs::write(dir.path().join(EPOCH_FILE), "two").unwrap();
        let error = next_epoch(dir.path()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
        assert!(error.to_string().contains("not an epoch number"), "{error}");
    }
}
