//! A cap on concurrent outbound connections and the deadline for opening one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::NetworkError;

/// Limits how many outbound connections a node holds at once and how long opening one
/// (TCP connect plus handshake) may take. Cloning shares the limit.
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

    /// A pool with the default limits.
    pub fn new() -> Self {
        ConnectionPool {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            timeout: Self::DEFAULT_TIMEOUT,
            permits: Arc::new(Semaphore::new(Self::DEFAULT_MAX_CONNECTIONS)),
        }
    }

    /// Sets the maximum number of connections open at once.
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

    /// Connections currently open through this pool.
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
