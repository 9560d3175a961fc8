//! Binding and serving: axum on a listener that holds at most [`MAX_CONNECTIONS`] connections
//! at once (a browser tab holds one or two; a scraper one), each closed after [`IDLE_TIMEOUT`]
//! without a byte either way (a client that opens connections and stalls cannot keep the
//! console from others for long).

use std::future::Future;
use std::io;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

/// Connections served at once; the next wait in the kernel's backlog until one closes.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection that moves no byte for this long is closed (the page polls every 500 ms; a
/// background tab that polls less often just reconnects).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Binds `addr` (`flag` names it in the error).
pub async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag}: cannot listen on {addr}"))
}

/// The address to reach a listener bound to `addr` on this machine (an unspecified IP, which
/// one cannot connect to everywhere, becomes loopback).
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// One line of command output (scripts and `swd local` read the URLs there). Nothing to do
/// if stdout is gone: the node serves on.
pub fn announce(line: &str) {
    let mut stdout = io::stdout();
    let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
}

/// Serves `router` on `listener` until `stop`.
pub async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    let limited = Limited {
        listener,
        permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    if let Err(e) = axum::serve(limited, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "the HTTP server stopped");
    }
}

/// A listener that accepts a connection only while fewer than [`MAX_CONNECTIONS`] are open.
struct Limited {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for Limited {
    type Io = Held;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Held, SocketAddr) {
        loop {
            // The semaphore is never closed.
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    let held = Held {
                        stream,
                        idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                        _permit: permit,
                    };
                    return (held, addr);
                }
                // Out of file descriptors and the like: the next accept may work.
                Err(e) => tracing::debug!(error = %e, "HTTP accept failed"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection holding its slot until it is dropped, closed when idle.
pub struct Held {
    stream: TcpStream,
    /// Reset whenever a read or write makes progress.
    idle: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Held {
    /// Passes `progress` on, resetting the idle deadline when it is ready; while it is pending,
    /// fails once the connection has been idle for [`IDLE_TIMEOUT`].
    fn watch<T>(&mut self, cx: &mut Context<'_>, progress: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match progress {
            Poll::Ready(result) => {
                self.idle.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
                Poll::Ready(result)
            }
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle HTTP connection",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Held {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let progress = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.watch(cx, progress)
    }
}

impl AsyncWrite for Held {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let progress = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch(cx, progress)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let progress = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch(cx, progress)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
