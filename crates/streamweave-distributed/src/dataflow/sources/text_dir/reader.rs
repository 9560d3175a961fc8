//! Reading one [`Split`]: the lines whose first byte lies in its range, from a byte offset
//! within it. A line that straddles the range's end belongs to this split; the partial line at
//! its start belongs to the previous one.
//!
//! ```text
//! open: seek to the first line start at or after split.start
//! len / skip: resume from an offset counted in the share's bytes
//! emit_lines: read_until('\n') while pos < split.end, one String per line (lossy UTF-8)
//! ```

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};

use super::splits::Split;
use crate::dataflow::{DataflowError, Flow};

/// Size of the read buffer of each open file.
const READ_BUFFER: usize = 256 * 1024;

/// Reads the lines of one [`Split`].
pub(super) struct SplitReader<'a> {
    split: &'a Split,
    reader: BufReader<File>,
    /// Where the split's first line starts.
    first: u64,
    /// The reader's position in the file.
    pos: u64,
}

impl<'a> SplitReader<'a> {
    pub(super) fn open(split: &'a Split) -> Result<Self, DataflowError> {
        let file = File::open(&split.path).map_err(|e| DataflowError::io(&split.path, e))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let first =
            line_start_from(&mut reader, split.start).map_err(|e| DataflowError::io(&split.path, e))?;
        Ok(Self {
            split,
            reader,
            first,
            pos: first,
        })
    }

    /// The number of bytes of the lines that belong to the split.
    pub(super) fn len(&mut self) -> Result<u64, DataflowError> {
        let path = &self.split.path;
        let past =
            line_start_from(&mut self.reader, self.split.end).map_err(|e| DataflowError::io(path, e))?;
        self.reader
            .seek(SeekFrom::Start(self.pos))
            .map_err(|e| DataflowError::io(path, e))?;
        Ok(past.saturating_sub(self.first))
    }

    /// Moves to `bytes` (a line boundary) past the split's first line.
    pub(super) fn skip(&mut self, bytes: u64) -> Result<(), DataflowError> {
        self.pos = self.first + bytes;
        let at = SeekFrom::Start(self.pos);
        self.reader
            .seek(at)
            .map(|_| ())
            .map_err(|e| DataflowError::io(&self.split.path, e))
    }

    /// Emits the lines starting before `split.end`, adding their bytes to `consumed`.
    pub(super) fn emit_lines(
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
                .map_err(|e| DataflowError::io(&self.split.path, e))?;
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
            let file = self.split.path.display();
            tracing::warn!(%file, lines = invalid, "invalid UTF-8 replaced by U+FFFD");
        }
        Ok(flow)
    }
}

/// The first line start at or after `at`: `at` itself if it is 0 or follows a `\n`, otherwise
/// just past the next `\n` (or the end of the file).
fn line_start_from(reader: &mut BufReader<File>, at: u64) -> io::Result<u64> {
    if at == 0 {
        return Ok(0);
    }
    reader.seek(SeekFrom::Start(at - 1))?;
    Ok(at - 1 + reader.skip_until(b'\n')? as u64)
}
