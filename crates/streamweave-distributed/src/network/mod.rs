//! Connections between nodes: dialing with a deadline and the protocol handshake
//! ([`Transport`]), a cap on concurrent outbound connections and the connect deadline
//! ([`ConnectionPool`], which pools nothing: the seed's name for a limit), and a framed,
//! typed duplex [`Connection`] over TCP or TLS ([`NetStream`]). Every inbound connection goes
//! through [`accept`], every outbound one through [`Transport::connect`]: that is where TLS and
//! the shared secret ([`crate::security`]) are applied.
//!
//! ```text
//! Transport::connect(addr, hello)
//!    -> limit slot (ConnectionPool) -> TcpStream::connect -> TLS (if configured)
//!    -> dial_handshake_with(secret)                      (all under the pool's timeout)
//!    -> Connection<Out, In>: send(Out) / recv() -> In, or split() into reader and writer
//! accept(tcp, security, cluster) -> TLS (if configured) -> accept_handshake_with(keys)
//!    -> Accepted { stream, hello, credentials }
//! ```

mod accept;
mod connection;
mod error;
mod pool;
mod stream;
mod transport;

pub use accept::{accept, Accepted};
pub use connection::{Connection, ConnectionReader, ConnectionWriter};
pub use error::{describe_io_error, NetworkError};
pub use pool::ConnectionPool;
pub use stream::{NetReader, NetStream, NetWriter};
pub use transport::Transport;
