//! The byte stream under a [`Connection`](super::Connection): plain TCP or TLS over TCP, and its
//! read and write halves. Plain TCP splits into owned halves without a lock; TLS splits through
//! `tokio::io::split` (one session state, so both halves share it).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

type Tls = Box<tokio_rustls::TlsStream<TcpStream>>;

/// A connected stream, before or after TLS.
#[derive(Debug)]
pub enum NetStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (either side of it).
    Tls(Tls),
}

impl NetStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            NetStream::Plain(s) => s,
            NetStream::Tls(s) => s.get_ref().0,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Sets TCP_NODELAY on the socket.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp().set_nodelay(on)
    }

    /// The peer's TLS certificate chain (leaf first), when this is TLS and the peer sent one.
    pub fn peer_certificates(&self) -> Option<&[rustls_pki_types::CertificateDer<'static>]> {
        match self {
            NetStream::Plain(_) => None,
            NetStream::Tls(s) => s.get_ref().1.peer_certificates(),
        }
    }

    pub(crate) fn split(self) -> (NetReader, NetWriter) {
        match self {
            NetStream::Plain(s) => {
                let (r, w) = s.into_split();
                (NetReader::Plain(r), NetWriter::Plain(w))
            }
            NetStream::Tls(s) => {
                let (r, w) = tokio::io::split(s);
                (NetReader::Tls(r), NetWriter::Tls(w))
            }
        }
    }
}

impl From<TcpStream> for NetStream {
    fn from(s: TcpStream) -> Self {
        NetStream::Plain(s)
    }
}

impl AsyncRead for NetStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The reading half of a [`NetStream`].
#[derive(Debug)]
pub enum NetReader {
    /// Plain TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<Tls>),
}

/// The writing half of a [`NetStream`].
#[derive(Debug)]
pub enum NetWriter {
    /// Plain TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<Tls>),
}

impl AsyncRead for NetReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetReader::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetReader::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetWriter {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetWriter::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetWriter::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetWriter::Plain(s) => Pin::new(s).poll_flush(cx),
            NetWriter::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetWriter::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetWriter::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
