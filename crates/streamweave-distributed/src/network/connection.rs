//! A typed, framed connection over TCP or TLS: send `Out` messages, receive `In` messages.

use std::net::SocketAddr;

use futures::{SinkExt, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::stream::{NetReader, NetStream, NetWriter};
use crate::protocol::{MessageCodec, ProtocolError};

/// A duplex connection after the handshake. Dropping it closes the socket.
#[derive(Debug)]
pub struct Connection<Out, In> {
    reader: ConnectionReader<In>,
    writer: ConnectionWriter<Out>,
    local: SocketAddr,
}

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionReader<In> {
    frames: FramedRead<NetReader, MessageCodec<(), In>>,
    peer: SocketAddr,
}

/// The sending half of a [`Connection`]. Holds the pool slot, if any, so the slot is freed when
/// the socket closes.
#[derive(Debug)]
pub struct ConnectionWriter<Out> {
    frames: FramedWrite<NetWriter, MessageCodec<Out, ()>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<Out: Serialize, In: DeserializeOwned> Connection<Out, In> {
    /// Wraps a stream whose handshake is done.
    pub fn new(stream: TcpStream, max_frame_size: usize) -> Self {
        Self::with_permit(NetStream::Plain(stream), max_frame_size, None)
    }

    /// Wraps a plain or TLS stream whose handshake is done.
    pub fn from_stream(stream: NetStream, max_frame_size: usize) -> Self {
        Self::with_permit(stream, max_frame_size, None)
    }

    pub(crate) fn with_permit(
        stream: NetStream,
        max_frame_size: usize,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Self {
        // Control messages are small and latency matters more than batching for them.
        let _ = stream.set_nodelay(true);
        let unknown = |_| SocketAddr::from(([0, 0, 0, 0], 0));
        let peer = stream.peer_addr().unwrap_or_else(unknown);
        let local = stream.local_addr().unwrap_or_else(unknown);
        let (read, write) = stream.split();
        Connection {
            reader: ConnectionReader {
                frames: FramedRead::new(read, MessageCodec::new(max_frame_size)),
                peer,
            },
            writer: ConnectionWriter {
                frames: FramedWrite::new(write, MessageCodec::new(max_frame_size)),
                _permit: permit,
            },
            local,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.reader.peer
    }

    /// This end's address (the interface the peer is reached through).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one message and flushes it.
    pub async fn send(&mut self, message: Out) -> Result<(), ProtocolError> {
        self.writer.send(message).await
    }

    /// The next message; `Ok(None)` when the peer closed the connection cleanly.
    pub async fn recv(&mut self) -> Result<Option<In>, ProtocolError> {
        self.reader.recv().await
    }

    /// Splits into halves that can be used from different tasks.
    pub fn split(self) -> (ConnectionReader<In>, ConnectionWriter<Out>) {
        (self.reader, self.writer)
    }
}

impl<In: DeserializeOwned> ConnectionReader<In> {
    /// The next message; `Ok(None)` when the peer closed the connection cleanly.
    pub async fn recv(&mut self) -> Result<Option<In>, ProtocolError> {
        match self.frames.next().await.transpose() {
            // A TLS peer that closes the socket without a close_notify between frames has lost
            // nothing (every message is length-framed): a clean close, as with plain TCP.
            Err(ProtocolError::Io(e))
                if e.kind() == std::io::ErrorKind::UnexpectedEof && self.frames.read_buffer().is_empty() =>
            {
                Ok(None)
            }
            other => other,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Bytes of a frame that has started arriving but is not complete (0 between frames).
    pub fn partial_frame_len(&self) -> usize {
        self.frames.read_buffer().len()
    }
}

impl<Out: Serialize> ConnectionWriter<Out> {
    /// Sends one message and flushes it.
    pub async fn send(&mut self, message: Out) -> Result<(), ProtocolError> {
        self.frames.send(message).await
    }

    /// Queues one message without flushing; call [`ConnectionWriter::flush`] after a batch.
    pub async fn feed(&mut self, message: Out) -> Result<(), ProtocolError> {
        self.frames.feed(message).await
    }

    /// Flushes queued messages.
    pub async fn flush(&mut self) -> Result<(), ProtocolError> {
        self.frames.flush().await
    }
}
