//! A cap on concurrent outbound connections and the deadline for opening one.
//!
//! Despite its name, [`ConnectionPool`] keeps no connections for reuse: every
//! [`Transport::connect`](super::Transport::connect) opens a new TCP connection. The name is the
//! seed's public API (`network::{ConnectionPool, Transport}` in the README), so it stays.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::NetworkError;

/// A connection limit and a connect timeout for a [`Transport`](super::Transport); it pools
/// nothing (the name is kept from the seed's API).
///
/// - **Limit**: at most `max_connections` connections opened through it are alive at once. Each
///   [`Connection`](super::Connection) holds one slot until it is dropped or
///   [`split`](super::Connection::split) (the halves hold none); a connect beyond the limit fails
///   at once with [`NetworkError::PoolExhausted`] rather than waiting for a slot.
/// - **Timeout**: opening a connection (TCP connect plus the protocol handshake) fails with
///   [`NetworkError::Timeout`] after `timeout`.
///
/// Cloning shares the limit; [`with_max_connections`](Self::with_max_connections) starts a new one.
///
/// ```
/// use std::time::Duration;
/// use streamweave_distributed::network::ConnectionPool;
///
/// let pool = ConnectionPool::new()
///     .with_max_connections(100)
///     .with_timeout(Duration::from_secs(30));
/// assert_eq!(pool.max_connections(), 100);
/// assert_eq!(pool.timeout(), Duration::from_secs(30));
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionPool {
    max_connections: usize,
    timeout: Duration,
    permits: Arc<Semaphore>,
}

impl ConnectionPool {
    /// Default limit: 1024 connections.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    /// Default deadline: 5 seconds.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A limit of [`Self::DEFAULT_MAX_CONNECTIONS`] and a timeout of [`Self::DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        ConnectionPool {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            timeout: Self::DEFAULT_TIMEOUT,
            permits: Arc::new(Semaphore::new(Self::DEFAULT_MAX_CONNECTIONS)),
        }
    }

    /// Sets the maximum number of connections alive at once. This starts a new limit: clones
    /// made before it keep the old one.
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self.permits = Arc::new(Semaphore::new(max));
        self
    }

    /// Sets the deadline for opening a connection.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The maximum number of connections.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The deadline for opening a connection.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Slots currently taken: connections opened through this limit and not yet dropped or split.
    pub fn in_use(&self) -> usize {
        self.max_connections - self.permits.available_permits()
    }

    /// Takes a slot for one connection; the slot is released when the permit drops.
    pub(crate) fn acquire(&self) -> Result<OwnedSemaphorePermit, NetworkError> {
        Arc::clone(&self.permits)
            .try_acquire_owned()
            .map_err(|_| NetworkError::PoolExhausted {
                max: self.max_connections,
            })
    }
}

impl Default for ConnectionPool {
    fn default() -> Self {
        ConnectionPool::new()
    }
}
