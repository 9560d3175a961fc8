//! Connections between nodes: dialing with a deadline and the protocol handshake
//! ([`Transport`]), a cap on concurrent outbound connections ([`ConnectionPool`]), and a framed,
//! typed duplex [`Connection`] over TCP.
//!
//! ```text
//! Transport::connect(addr, hello)
//!    -> pool permit -> TcpStream::connect (timeout) -> dial_handshake (timeout)
//!    -> Connection<Out, In>: send(Out) / recv() -> In, or split() into reader and writer
//! ```

mod connection;
mod error;
mod pool;
mod transport;

pub use connection::{Connection, ConnectionReader, ConnectionWriter};
pub use error::{describe_io_error, NetworkError};
pub use pool::ConnectionPool;
pub use transport::Transport;
