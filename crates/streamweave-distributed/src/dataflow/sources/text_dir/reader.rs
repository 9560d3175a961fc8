//! Reading one [`Split`]: the lines whose first byte lies in its range, from a byte offset
//! within it. A line that straddles the range's end belongs to this split; the partial line at
//! its start belongs to the previous one. Any seekable byte stream works (a file, or an object
//! read by ranged GETs), so files and objects give the same records at the same offsets.
//!
//! ```text
//! open: seek to the first line start at or after split.start
//! len / skip: resume from an offset counted in the share's bytes
//! emit_lines: read_until('\n') while pos < split.end, one String per line (lossy UTF-8)
//! read_share: a partition's splits in order, skipping what an offset says was consumed
//! ```

use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::splits::Split;
use crate::dataflow::{DataflowError, Flow, SourceEnd, SourceOffset};

/// Size of the read buffer of each open file.
const READ_BUFFER: usize = 256 * 1024;

/// Reads the lines of one [`Split`] from `R`.
struct SplitReader<'a, N, R> {
    split: &'a Split<N>,
    /// The file or object, for errors and warnings.
    name: String,
    reader: BufReader<R>,
    /// Where the split's first line starts.
    first: u64,
    /// The reader's position in the file.
    pos: u64,
}

impl<'a, N, R: Read + Seek> SplitReader<'a, N, R> {
    /// Reads `split` from `input` (the whole file or object); `name` names it in errors.
    fn new(split: &'a Split<N>, name: String, input: R) -> Result<Self, DataflowError> {
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
pub fn read_share<N, R: Read + Seek>(
    splits: &[Split<N>],
    offset: SourceOffset,
    mut open: impl FnMut(&Split<N>) -> Result<(String, R), DataflowError>,
    emit: &mut dyn FnMut(String) -> Flow,
) -> Result<SourceEnd, DataflowError> {
    let mut to_skip = offset.0;
    let mut consumed = 0u64;
    let mut buf = Vec::new();
    for split in splits {
        let (name, input) = open(split)?;
        let mut reader = SplitReader::new(split, name, input)?;
        if to_skip > 0 {
            let len = reader.len()?;
            let skip = to_skip.min(len);
            to_skip -= skip;
            consumed += skip;
            if skip == len {
                continue;
            }
            reader.skip(skip)?;
        }
        if reader.emit_lines(&mut buf, &mut consumed, emit)? == Flow::Stop {
            return Ok(SourceEnd::Stopped(SourceOffset(consumed)));
        }
    }
    // An offset past the end of the share (the input shrank) stays where it was.
    Ok(SourceEnd::Exhausted(SourceOffset(consumed.max(offset.0))))
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
