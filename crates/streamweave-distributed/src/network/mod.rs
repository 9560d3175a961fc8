//! Connections between nodes: dialing with a deadline and the protocol handshake
//! ([`Transport`]), a cap on concurrent outbound connections and the connect deadline
//! ([`ConnectionPool`], which pools nothing: the seed's name for a limit), and a framed,
//! typed duplex [`Connection`] over TCP.
//!
//! ```text
//! Transport::connect(addr, hello)
//!    -> limit slot (ConnectionPool) -> TcpStream::connect (timeout) -> dial_handshake (timeout)
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
