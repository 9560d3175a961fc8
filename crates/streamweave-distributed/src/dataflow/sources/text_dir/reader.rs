//! Reading one [`Split`]: the lines whose first byte lies in its range, from a byte offset
//! within it. A line that straddles the range's end belongs to this split; the partial line at
//! its start belongs to the previous one. Any seekable byte stream works (a file, or an object
//! read by ranged GETs), so files and objects give the same records at the same offsets.
//!
//! ```text
//! open: seek to the first line start at or after split.start
//! len / skip: resume from an offset counted in the share's bytes
//! emit_lines: read_until('\n') while pos < split.end, one String per line (lossy UTF-8)
//! ShareReader: a partition's splits in order, skipping what an offset says was consumed;
//!              it can stop after any line and go on later from where it stopped
//! ParkedShares: share readers that stopped (at a checkpoint barrier, or to give up their
//!              source slot), kept by partition and offset: the next read from that offset
//!              goes on with the open reader instead of opening the split again
//! ```
//!
//! Parking matters for objects: opening a split at an offset costs up to three GETs (a probe
//! for the first line, one for the split's end, one at the offset) before the first line, and a
//! time-sliced source (more rate-limited partitions than source slots) stops every 50 ms.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;

use super::splits::Split;
use crate::dataflow::{DataflowError, Flow, SourceContext, SourceEnd, SourceOffset};

/// Size of the read buffer of each open file.
const READ_BUFFER: usize = 256 * 1024;

/// Reads the lines of one [`Split`] from `R`.
struct SplitReader<N, R> {
    split: Split<N>,
    /// The file or object, for errors and warnings.
    name: String,
    reader: BufReader<R>,
    /// Where the split's first line starts.
    first: u64,
    /// The reader's position in the file.
    pos: u64,
}

impl<N, R: Read + Seek> SplitReader<N, R> {
    /// Reads `split` from `input` (the whole file or object); `name` names it in errors.
    fn new(split: Split<N>, name: String, input: R) -> Result<Self, DataflowError> {
        let mut reader = BufReader::with_capacity(READ_BUFFER, input);
        let first = line_start_from(&mut reader, split.start).map_err(|e| io_error(&name, e))?;
        Ok(Self {
            split,
            name,
            reader,
            first,
            pos: first,
        })
    }

    /// The number of bytes of the lines that belong to the split.
    fn len(&mut self) -> Result<u64, DataflowError> {
        let name = &self.name;
        let past = line_start_from(&mut self.reader, self.split.end).map_err(|e| io_error(name, e))?;
        self.reader
            .seek(SeekFrom::Start(self.pos))
            .map_err(|e| io_error(name, e))?;
        Ok(past.saturating_sub(self.first))
    }

    /// Moves to `bytes` (a line boundary) past the split's first line.
    fn skip(&mut self, bytes: u64) -> Result<(), DataflowError> {
        self.pos = self.first + bytes;
        let at = SeekFrom::Start(self.pos);
        self.reader
            .seek(at)
            .map(|_| ())
            .map_err(|e| io_error(&self.name, e))
    }

    /// Emits the lines starting before `split.end`, adding their bytes to `consumed`.
    fn emit_lines(
        &mut self,
        buf: &mut Vec<u8>,
        consumed: &mut u64,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<Flow, DataflowError> {
        let mut invalid = 0u64;
        let mut flow = Flow::Continue;
        while self.pos < self.split.end {
            buf.clear();
            let n = self
                .reader
                .read_until(b'\n', buf)
                .map_err(|e| io_error(&self.name, e))?;
            if n == 0 {
                break; // End of file (the file may be shorter than when it was listed).
            }
            self.pos += n as u64;
            *consumed += n as u64;
            let line = buf.strip_suffix(b"\n").unwrap_or(buf);
            let record = match std::str::from_utf8(line) {
                Ok(text) => text.to_owned(), // One allocation of exactly the line's length.
                Err(_) => {
                    invalid += 1;
                    String::from_utf8_lossy(line).into_owned()
                }
            };
            if emit(record) == Flow::Stop {
                flow = Flow::Stop;
                break;
            }
        }
        if invalid > 0 {
            let file = &self.name;
            tracing::warn!(%file, lines = invalid, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(flow)
    }
}

/// Reads a partition's share (its splits, in order) from `offset`: the bytes an offset counts
/// are skipped split by split, then every remaining line is emitted. `open` opens the file or
/// object of one split and names it for errors.
pub fn read_share<N: Clone, R: Read + Seek>(
    splits: &[Split<N>],
    offset: SourceOffset,
    mut open: impl FnMut(&Split<N>) -> Result<(String, R), DataflowError>,
    emit: &mut dyn FnMut(String) -> Flow,
) -> Result<SourceEnd, DataflowError> {
    ShareReader::new(splits.to_vec(), offset).read(&mut open, emit)
}

/// Opens the file or object of a split, named for errors.
pub(crate) type OpenSplit<'a, N, R> = dyn FnMut(&Split<N>) -> Result<(String, R), DataflowError> + 'a;

/// A partition's share being read: its splits in order, the one open now, and the bytes of the
/// share consumed so far. [`read`](Self::read) emits lines until the share ends or `emit`
/// asks to stop; a stopped reader goes on from the next line when read again.
pub(crate) struct ShareReader<N, R> {
    splits: Vec<Split<N>>,
    /// The next split to open.
    next: usize,
    open: Option<SplitReader<N, R>>,
    /// Bytes of the offset it started from still to skip (in splits not yet opened).
    to_skip: u64,
    /// Bytes of the share consumed (skipped or read) so far.
    consumed: u64,
    /// The offset it started from: an offset past the end of the share stays where it was.
    start: u64,
}

impl<N: Clone, R: Read + Seek> ShareReader<N, R> {
    /// A reader of `splits` from `offset`; nothing is opened until the first read.
    pub(crate) fn new(splits: Vec<Split<N>>, offset: SourceOffset) -> Self {
        ShareReader {
            splits,
            next: 0,
            open: None,
            to_skip: offset.0,
            consumed: 0,
            start: offset.0,
        }
    }

    /// Emits the share's lines from where it stands; `Stopped` at the offset just past the line
    /// `emit` stopped at, `Exhausted` at the share's end.
    pub(crate) fn read(
        &mut self,
        open: &mut OpenSplit<'_, N, R>,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        let mut buf = Vec::new();
        loop {
            if self.open.is_none() {
                let Some(split) = self.splits.get(self.next) else {
                    break;
                };
                self.next += 1;
                let (name, input) = open(split)?;
                let mut reader = SplitReader::new(split.clone(), name, input)?;
                if self.to_skip > 0 {
                    let len = reader.len()?;
                    let skip = self.to_skip.min(len);
                    self.to_skip -= skip;
                    self.consumed += skip;
                    if skip == len {
                        continue;
                    }
                    reader.skip(skip)?;
                }
                self.open = Some(reader);
            }
            if let Some(reader) = &mut self.open {
                if reader.emit_lines(&mut buf, &mut self.consumed, emit)? == Flow::Stop {
                    return Ok(SourceEnd::Stopped(SourceOffset(self.consumed)));
                }
            }
            self.open = None;
        }
        Ok(SourceEnd::Exhausted(SourceOffset(self.consumed.max(self.start))))
    }
}

/// How many stopped share readers a source keeps. Each holds its read buffer and, for an
/// object, up to two chunks (the one being read and the next, prefetched); a partition that
/// left the worker at a barrier leaves its reader here until newer ones push it out.
pub(super) const PARKED: usize = 8;

/// Share readers that stopped, by partition (and partition count) and the offset they stopped
/// at, newest last. Shared by the clones of one source, across the threads that read it.
pub(crate) struct ParkedShares<N, R> {
    parked: Mutex<VecDeque<(ShareKey, ShareReader<N, R>)>>,
}

/// A stopped reader's partition, partition count and offset.
type ShareKey = (usize, usize, u64);

impl<N, R> Default for ParkedShares<N, R> {
    fn default() -> Self {
        ParkedShares {
            parked: Mutex::new(VecDeque::new()),
        }
    }
}

impl<N, R> fmt::Debug for ParkedShares<N, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parked = self.parked.lock().map(|p| p.len()).unwrap_or_default();
        f.debug_struct("ParkedShares").field("parked", &parked).finish()
    }
}

impl<N: Clone, R: Read + Seek> ParkedShares<N, R> {
    /// Reads partition `ctx.partition`'s share from `offset`: with the reader parked there if
    /// there is one, else with a new one over the splits `plan` gives. A reader that stops is
    /// parked at its offset; one that ends or fails is dropped.
    pub(crate) fn read(
        &self,
        ctx: &SourceContext,
        offset: SourceOffset,
        plan: impl FnOnce() -> Result<Vec<Split<N>>, DataflowError>,
        open: &mut OpenSplit<'_, N, R>,
        emit: &mut dyn FnMut(String) -> Flow,
    ) -> Result<SourceEnd, DataflowError> {
        let key = (ctx.partition, ctx.num_partitions, offset.0);
        let parked = {
            let mut parked = self.lock();
            let found = parked.iter().position(|(k, _)| *k == key);
            found.and_then(|i| parked.remove(i)).map(|(_, reader)| reader)
        };
        let mut share = match parked {
            Some(share) => share,
            None => ShareReader::new(plan()?, offset),
        };
        let end = share.read(open, emit)?;
        if let SourceEnd::Stopped(at) = end {
            let mut parked = self.lock();
            // Only the newest reader of a partition can be asked for again.
            parked.retain(|((p, n, _), _)| (*p, *n) != (ctx.partition, ctx.num_partitions));
            parked.push_back(((ctx.partition, ctx.num_partitions, at.0), share));
            while parked.len() > PARKED {
                parked.pop_front();
            }
        }
        Ok(end)
    }

    /// How many readers are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(ShareKey, ShareReader<N, R>)>> {
        // A poisoned lock only means a reader panicked while the queue was being changed by
        // whole entries: what is there is intact.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An i/o error while reading `name`.
fn io_error(name: &str, e: io::Error) -> DataflowError {
    DataflowError::io(PathBuf::from(name), e)
}

/// The first line start at or after `at`: `at` itself if it is 0 or follows a `\n`, otherwise
/// just past the next `\n` (or the end of the file).
fn line_start_from<R: Read + Seek>(reader: &mut BufReader<R>, at: u64) -> io::Result<u64> {
    if at == 0 {
        return Ok(0);
    }
    reader.seek(SeekFrom::Start(at - 1))?;
    Ok(at - 1 + reader.skip_until(b'\n')? as u64)
}
