//! Dialing: TCP connect and the protocol handshake, both under the pool's deadline.

use std::net::SocketAddr;

use serde::{de::DeserializeOwned, Serialize};
use tokio::net::TcpStream;

use super::{Connection, ConnectionPool, NetworkError};
use crate::protocol::{dial_handshake, Hello, DEFAULT_MAX_FRAME_SIZE};

/// Opens connections to other nodes: connect, handshake, and wrap the stream as a typed
/// [`Connection`].
///
/// ```
/// use std::time::Duration;
/// use streamweave_distributed::network::{ConnectionPool, Transport};
///
/// let pool = ConnectionPool::new().with_timeout(Duration::from_secs(3));
/// let transport = Transport::new(pool);
/// assert_eq!(transport.pool().timeout(), Duration::from_secs(3));
/// ```
#[derive(Clone, Debug)]
pub struct Transport {
    pool: ConnectionPool,
    max_frame_size: usize,
}

impl Transport {
    /// A transport with the connection limit and connect timeout of `pool`, and the default
    /// maximum frame size.
    pub fn new(pool: ConnectionPool) -> Self {
        Transport {
            pool,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }

    /// Sets the maximum frame size for connections it opens.
    pub fn with_max_frame_size(mut self, max_frame_size: usize) -> Self {
        self.max_frame_size = max_frame_size;
        self
    }

    /// The connection limit and connect timeout it uses.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// Connects to `addr` and introduces itself with `hello`.
    pub async fn connect<Out, In>(
        &self,
        addr: SocketAddr,
        hello: &Hello,
    ) -> Result<Connection<Out, In>, NetworkError>
    where
        Out: Serialize,
        In: DeserializeOwned,
    {
        let permit = self.pool.acquire()?;
        let after = self.pool.timeout();
        let dial = async {
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|source| NetworkError::Connect { addr, source })?;
            dial_handshake(&mut stream, hello).await?;
            Ok::<_, NetworkError>(stream)
        };
        let stream = tokio::time::timeout(after, dial)
            .await
            .map_err(|_| NetworkError::Timeout { addr, after })??;
        Ok(Connection::with_permit(stream, self.max_frame_size, Some(permit)))
    }
}

impl Default for Transport {
    fn default() -> Self {
        Transport::new(ConnectionPool::new())
    }
}
