//! [`StdoutSink`]: records as lines on standard output.

use std::fmt::Display;
use std::io::{Stdout, Write};
use std::marker::PhantomData;

use crate::dataflow::{DataflowError, Sink, SinkContext, SinkWriter};

/// Lines written to stdout once this much is buffered.
const FLUSH_AT: usize = 64 * 1024;

/// Writes each record (its `Display` form) as a line on standard output. Each writer buffers
/// whole lines and writes them under the stdout lock, so lines of different partitions never
/// mix, though their order does. Stdout cannot take back what it printed: records become
/// visible before commit, which only flushes.
pub struct StdoutSink<T> {
    // `fn(T)`: the sink holds no `T`, so it is `Send + Sync` whatever `T` is.
    _records: PhantomData<fn(T)>,
}

impl<T> StdoutSink<T> {
    /// A sink printing to stdout.
    pub fn new() -> Self {
        Self {
            _records: PhantomData,
        }
    }
}

impl<T> Default for StdoutSink<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for StdoutSink<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for StdoutSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StdoutSink")
    }
}

impl<T: Display + Send + 'static> Sink for StdoutSink<T> {
    type Item = T;

    fn open(&self, _ctx: &SinkContext) -> Result<Box<dyn SinkWriter<T>>, DataflowError> {
        Ok(Box::new(StdoutWriter {
            buf: Vec::with_capacity(FLUSH_AT),
            out: std::io::stdout(),
        }))
    }
}

/// Buffers lines and writes them out in chunks. `StdoutLock` is not `Send`, so the writer holds
/// the `Stdout` handle, whose `write_all` takes the lock for a whole chunk. (`W` is a `Vec` in
/// tests.)
struct StdoutWriter<W = Stdout> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> StdoutWriter<W> {
    fn write_out(&mut self, flush: bool) -> Result<(), DataflowError> {
        let result = self
            .out
            .write_all(&self.buf)
            .and_then(|()| if flush { self.out.flush() } else { Ok(()) });
        self.buf.clear();
        result.map_err(|e| DataflowError::io("<stdout>", e))
    }
}

impl<T: Display, W: Write + Send> SinkWriter<T> for StdoutWriter<W> {
    fn write(&mut self, item: T) -> Result<(), DataflowError> {
        // Writing into a Vec cannot fail.
        let _ = writeln!(self.buf, "{item}");
        if self.buf.len() >= FLUSH_AT {
            self.write_out(false)?;
        }
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), DataflowError> {
        self.write_out(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_lines_in_chunks_and_flushes_on_commit() {
        let mut writer = StdoutWriter {
            buf: Vec::new(),
            out: Vec::new(),
        };
        let expected: String = (0..20_000u64).map(|i| format!("{i}\n")).collect();
        for i in 0..20_000u64 {
            writer.write(i).unwrap();
        }
        assert!(
            writer.out.len() >= FLUSH_AT,
            "full chunks are written before commit"
        );
        assert!(writer.out.ends_with(b"\n"), "only whole lines");
        writer.write_out(true).unwrap();
        assert_eq!(String::from_utf8(writer.out).unwrap(), expected);
    }

    #[test]
    fn commits_through_the_sink() {
        let sink = StdoutSink::<String>::new();
        let writer = sink
            .open(&SinkContext {
                partition: 0,
                num_partitions: 1,
                attempt: 0,
            })
            .unwrap();
        writer.commit().unwrap(); // Nothing written: prints nothing.
    }
}
