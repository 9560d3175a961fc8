//! Handshakes over scripted bytes: a stream whose reads return the fuzzer's bytes (in reads of
//! a chosen size) and whose writes are kept, and a runner for the handshake's future.
//!
//! A new handshake's target is then one file:
//!
//! ```ignore
//! fuzz_target!(|data: &[u8]| {
//!     let mut stream = Scripted::new(data);
//!     let _ = run(new_accept(&mut stream, &config));
//! });
//! ```

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that reads scripted bytes and records what is written. It never blocks: at the end
/// of the script a read returns end of file.
#[derive(Debug)]
pub struct Scripted<'a> {
    input: &'a [u8],
    read_size: usize,
    /// Everything written to the stream.
    pub written: Vec<u8>,
}

impl<'a> Scripted<'a> {
    /// A stream reading `data` after its first byte, in reads of at most that byte's value
    /// (at least 1) bytes, so that a handshake meets short reads.
    pub fn new(data: &'a [u8]) -> Self {
        let (read_size, input) = crate::take_byte(data).unwrap_or((1, &[]));
        Scripted {
            input,
            read_size: usize::from(read_size).max(1),
            written: Vec::new(),
        }
    }
}

impl AsyncRead for Scripted<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.read_size).min(self.input.len());
        let (now, later) = self.input.split_at(n);
        buf.put_slice(now);
        self.input = later;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted<'_> {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `fut` to completion in one poll: over a [`Scripted`] stream nothing ever waits, so a
/// handshake that returns `Pending` is waiting for something that never comes (a bug).
pub fn run<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a handshake over a stream that never blocks returned Pending"),
    }
}
