//! Dialing: TCP connect, TLS when configured, and the protocol handshake with the secret when
//! configured, all under the pool's deadline.

use std::net::SocketAddr;

use serde::{de::DeserializeOwned, Serialize};
use tokio::net::TcpStream;

use super::{Connection, ConnectionPool, NetStream, NetworkError};
use crate::protocol::{dial_handshake_with, Hello, ProtocolError, DEFAULT_MAX_FRAME_SIZE};
use crate::security::Security;

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
    security: Security,
}

impl Transport {
    /// A transport with the connection limit and connect timeout of `pool`, and the default
    /// maximum frame size.
    pub fn new(pool: ConnectionPool) -> Self {
        Transport {
            pool,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            security: Security::none(),
        }
    }

    /// Sets the TLS setup and secret for connections it opens.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
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
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| NetworkError::Connect { addr, source })?;
            // Before the handshakes: their small writes would otherwise wait on delayed ACKs
            // (about 40 ms per round trip with TLS).
            let _ = tcp.set_nodelay(true);
            let mut stream = match self.security.tls() {
                None => NetStream::Plain(tcp),
                Some(tls) => tls.connect(tcp, addr.ip()).await.map_err(|e| NetworkError::Tls {
                    addr,
                    reason: tls_hint(&e),
                })?,
            };
            let secret = self.security.dial_secret(hello.role);
            match dial_handshake_with(&mut stream, hello, secret).await {
                Ok(()) => {}
                Err(e) => return Err(explain(addr, &stream, e)),
            }
            Ok::<_, NetworkError>(stream)
        };
        let stream = tokio::time::timeout(after, dial)
            .await
            .map_err(|_| NetworkError::Timeout { addr, after })??;
        Ok(Connection::with_permit(stream, self.max_frame_size, Some(permit)))
    }
}

/// A TLS error with a hint when the cause is likely a plaintext listener.
fn tls_hint(e: &std::io::Error) -> String {
    let text = e.to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof || text.contains("eof") {
        format!("{text} (the listener closed the connection: does it use TLS?)")
    } else {
        text
    }
}

/// A handshake error in words that say what to fix where the cause is clear.
fn explain(addr: SocketAddr, stream: &NetStream, e: ProtocolError) -> NetworkError {
    match (&e, stream) {
        // TLS records start 0x15 (alert) or 0x16 (handshake), then version 3.x.
        (ProtocolError::NotOurProtocol { got }, NetStream::Plain(_))
            if matches!(got[0], 0x15 | 0x16) && got[1] == 3 =>
        {
            NetworkError::Tls {
                addr,
                reason: "the listener speaks TLS; give --tls-cert, --tls-key and --tls-ca".to_string(),
            }
        }
        (ProtocolError::Io(io), NetStream::Tls(_)) => NetworkError::Tls {
            addr,
            reason: format!("{io} (is this node's certificate signed by the listener's CA?)"),
        },
        _ => NetworkError::Protocol(e),
    }
}

impl Default for Transport {
    fn default() -> Self {
        Transport::new(ConnectionPool::new())
    }
}
