//! [`RangedReader`]: an object read as a seekable byte stream through ranged GETs, so that a
//! partition's share reader (`text_dir/reader.rs`) works on it as on a file.
//!
//! ```text
//! read at pos, following on from the last chunk  --> GET [pos, pos + CHUNK) (up to the split's
//!                                                    end), and start GETting the next one
//!                                                    while this one is parsed
//! read at pos after a seek (a line-start probe)  --> GET [pos, pos + PROBE): small, since a
//!                                                    probe only looks for the next '\n'
//! past the split's end (the last line's tail)    --> PROBE-sized GETs until the '\n'
//! ```
//!
//! Nothing is downloaded beyond what the split's lines need (plus one probe), and at most two
//! chunks are held at once.

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use tokio::task::JoinHandle;

use crate::storage::{block_on, spawn, Location};

/// The size of a sequential read's GET.
pub(super) const CHUNK: u64 = 8 << 20;

/// The size of a GET after a seek, or past the split's end: enough for a few lines.
pub(super) const PROBE: u64 = 64 << 10;

type Fetch = JoinHandle<Result<Bytes, object_store::Error>>;

/// Reads one object by ranged GETs.
pub(super) struct RangedReader {
    location: Location,
    key: ObjectPath,
    /// The object's size when it was listed: reads stop there.
    size: u64,
    /// Large GETs are made up to here (the split's end); small ones after it.
    large_until: u64,
    pos: u64,
    /// The bytes `chunk_start..chunk_start + chunk.len()` of the object.
    chunk: Bytes,
    chunk_start: u64,
    /// The next chunk, being fetched.
    prefetch: Option<(Range<u64>, Fetch)>,
    /// Bytes asked for so far (prefetches included).
    fetched: u64,
}

impl RangedReader {
    /// A reader of `key` (`size` bytes) that reads large chunks up to `large_until`.
    pub(super) fn new(location: Location, key: ObjectPath, size: u64, large_until: u64) -> Self {
        RangedReader {
            location,
            key,
            size,
            large_until,
            pos: 0,
            chunk: Bytes::new(),
            chunk_start: 0,
            prefetch: None,
            fetched: 0,
        }
    }

    /// Bytes asked for so far, prefetches included.
    #[cfg(test)]
    pub(super) fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The range to GET for a read at `pos`: large if it follows on from the last chunk.
    fn range_at(&self, pos: u64, sequential: bool) -> Range<u64> {
        let len = if sequential && pos < self.large_until {
            (self.large_until - pos).clamp(PROBE, CHUNK)
        } else {
            PROBE
        };
        pos..(pos + len).min(self.size)
    }

    /// Starts fetching `range` on the storage runtime, without waiting.
    fn spawn(&mut self, range: Range<u64>) -> Fetch {
        self.fetched += range.end - range.start;
        let (store, key) = (self.location.store.clone(), self.key.clone());
        spawn(async move { store.get_range(&key, range).await })
    }

    /// Makes the chunk hold `self.pos` (which is below `size`).
    fn fill(&mut self) -> io::Result<()> {
        let sequential = self.pos == self.chunk_start + self.chunk.len() as u64;
        let fetch = match self.prefetch.take() {
            Some((range, fetch)) if range.start == self.pos => Ok((range, fetch)),
            other => Err(other),
        };
        let (range, bytes) = match fetch {
            Ok((range, fetch)) => (range, block_on(fetch)),
            Err(stale) => {
                if let Some((_, fetch)) = stale {
                    fetch.abort();
                }
                let range = self.range_at(self.pos, sequential);
                (range.clone(), block_on(self.spawn(range)))
            }
        };
        let bytes = bytes
            .map_err(|e| io::Error::other(format!("GET of a range cancelled: {e}")))?
            .map_err(|e| io::Error::other(self.location.error("get", &self.key, e)))?;
        if bytes.len() as u64 != range.end - range.start {
            // The object changed since it was listed.
            let got = bytes.len();
            return Err(io::Error::other(format!(
                "{}: asked for bytes {range:?}, got {got}: the object changed while it was read",
                self.location.describe(&self.key)
            )));
        }
        self.chunk = bytes;
        self.chunk_start = range.start;
        let next = range.end;
        if next < self.size && next < self.large_until && sequential {
            let range = self.range_at(next, true);
            self.prefetch = Some((range.clone(), self.spawn(range)));
        }
        Ok(())
    }
}

impl Read for RangedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = self.chunk_start + self.chunk.len() as u64;
        if self.pos < self.chunk_start || self.pos >= end {
            self.fill()?;
        }
        let at = (self.pos - self.chunk_start) as usize;
        let n = buf.len().min(self.chunk.len() - at);
        buf[..n].copy_from_slice(&self.chunk[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(pos) => Some(pos),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
            SeekFrom::End(delta) => self.size.checked_add_signed(delta),
        };
        // Lazy: the next read fetches what it needs.
        self.pos = pos.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before 0"))?;
        Ok(self.pos)
    }
}

impl Drop for RangedReader {
    fn drop(&mut self) {
        if let Some((_, fetch)) = self.prefetch.take() {
            fetch.abort();
        }
    }
}
